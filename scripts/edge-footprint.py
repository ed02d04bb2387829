#!/usr/bin/python3
"""The memory of the crash pipeline at a gateway's rate (docs/edge.md, "Memory").

Starts a dev broker (`luastream broker`, its own process), produces phone
readings to phone-data at a fixed rate for a while, and runs
examples/crash_detection.lua against it, sampling the pipeline process's
resident memory (VmRSS) every 0.5 s. Prints the steady RSS (median and
maximum after the first 10 s) with its split into anonymous memory and mapped
files (the shared libraries' code, shared with other processes), the peak
(VmHWM), the CPU seconds, and checks that every produced message was consumed
(the group's committed offsets and the count of the "stopped:" line). The dev
broker keeps about 5 MB per partition: a larger --backlog loses its oldest
messages before the pipeline reads them, which the script then says. With --backlog N, N messages wait in the topic
before the pipeline starts (a restart after an outage): the peak is then the
catch-up's, where the prefetch fills.

    scripts/edge-footprint.py [--profile default|low] [--rate 10000] [--seconds 60]
        [--backlog 0] [--luastream build/luastream] [--emulator qemu-aarch64]

--emulator runs the pipeline's binary under it (an arm64 build under
qemu-user): the process measured is then the emulator, whose RSS holds its own
translated-code cache and bookkeeping besides the program's memory; the cache
(its anonymous rwx mappings) is shown on its own. (qemu-user 7.2 gives the
program no view of its own share: its /proc/self/smaps lists the emulator's
mappings too.) The broker and the producer are not part of the measured
process either way.
"""

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The low-memory profile of docs/edge.md: smaller batches, prefetch and
# producer queue than the defaults (batch_size 1000, 8 MiB prefetch with
# queued.min.messages 20000, 16 MiB producer queue).
PROFILES = {
    "default": [],
    "low": ["--set", "batch_size=200",
            "--set", "state_cache_keys=10000",
            "--set", "kafka.consumer.queued.max.messages.kbytes=1024",
            "--set", "kafka.consumer.queued.min.messages=2000",
            "--set", "kafka.producer.queue.buffering.max.kbytes=2048"],
}


def status_kb(pid, field):
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def rwx_kb(pid):
    """RSS of the anonymous rwx mappings (qemu's translated code), in kB."""
    total, rwx = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    parts = line.split()
                    rwx = parts[1] == "rwxp" and len(parts) < 6
                elif rwx and line.startswith("Rss:"):
                    total += int(line.split()[1])
    except OSError:
        return None
    return total


def cpu_seconds(pid):
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_broker(luastream, work):
    boot = work / "bootstrap"
    proc = subprocess.Popen([luastream, "broker", "--topic", "phone-data:4", "--topic", "crash-alerts:4",
                             "--bootstrap-file", str(boot)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "broker.log", "wb"),
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not boot.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the dev broker did not start: " + (work / "broker.log").read_text())
        time.sleep(0.05)
    time.sleep(0.1)
    return proc, boot.read_text().strip()


def produce(addr, rate, seconds, devices, done):
    """Phone readings at `rate` messages/s for `seconds` (rate 0: at once);
    done["acked"]: the count acknowledged."""
    p = Producer({"bootstrap.servers": addr, "linger.ms": 5, "enable.idempotence": True})
    rnd = random.Random(7)
    names = [f"phone-{i:04d}" for i in range(devices)]
    acked = [0]

    def cb(err, _msg):
        if err is None:
            acked[0] += 1

    t0 = time.monotonic()
    total = rate * seconds if rate else seconds
    tick = max(1, rate // 100) if rate else 1000  # messages every 10 ms
    sent = 0
    while sent < total:
        due = t0 + sent / rate if rate else 0
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        for _ in range(min(tick, total - sent)):
            g = (rnd.uniform(4, 9) if rnd.random() < 0.01 else 1.0)
            row = {"device": names[sent % devices], "ts": int(time.time() * 1000),
                   "gX": round(rnd.gauss(0, 0.05) * g, 6), "gY": round(-g + rnd.gauss(0, 0.05), 6),
                   "gZ": round(rnd.gauss(0, 0.05), 6)}
            while True:
                try:
                    p.produce("phone-data", key=row["device"], value=json.dumps(row), on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
            sent += 1
        p.poll(0)
    p.flush(60)
    done["acked"] = acked[0]
    done["seconds"] = time.monotonic() - t0


def log_starts(addr):
    """The low watermark of each phone-data partition."""
    c = Consumer({"bootstrap.servers": addr, "group.id": "footprint-check"})
    try:
        return [c.get_watermark_offsets(TopicPartition("phone-data", p), timeout=10)[0] for p in range(4)]
    finally:
        c.close()


def committed_total(addr):
    """The sum of the pipeline group's committed offsets on phone-data."""
    c = Consumer({"bootstrap.servers": addr, "group.id": "crash-detector", "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition("phone-data", p) for p in range(4)], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--luastream", default=os.environ.get("LUASTREAM", str(ROOT / "build" / "luastream")))
    ap.add_argument("--broker-bin", help="luastream binary for the broker (default: --luastream, or "
                    "build/luastream with --emulator)")
    ap.add_argument("--emulator", default="")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="default")
    ap.add_argument("--rate", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=0)
    args = ap.parse_args()
    broker_bin = args.broker_bin or (str(ROOT / "build" / "luastream") if args.emulator else args.luastream)

    work = pathlib.Path(tempfile.mkdtemp(prefix="luastream-footprint."))
    broker, addr = start_broker(broker_bin, work)
    backlog = {}
    if args.backlog:
        produce(addr, 0, args.backlog, args.devices, backlog)
    script = ROOT / "examples" / "crash_detection.lua"
    cmd = ([args.emulator] if args.emulator else []) + [
        args.luastream, "run", str(script), "--broker", addr,
        "--state-dir", str(work / "state"), "--quiet"] + PROFILES[args.profile]
    app = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(work / "app.log", "wb"),
                           stdin=subprocess.DEVNULL)
    ok = False
    try:
        time.sleep(3)  # the group join
        done = {}
        prod = threading.Thread(target=produce, args=(addr, args.rate, args.seconds, args.devices, done))
        t0 = time.monotonic()
        prod.start()
        samples, code = [], []
        caught_up = False
        while not caught_up and time.monotonic() - t0 < args.seconds + 180:
            if app.poll() is not None:
                raise SystemExit("the pipeline exited: " + (work / "app.log").read_text())
            rss = status_kb(app.pid, "VmRSS")
            if rss is not None:
                samples.append((time.monotonic() - t0, rss))
            if args.emulator:
                code.append(rwx_kb(app.pid) or 0)
            time.sleep(0.5)
            # Until the group has committed every message (it commits every 2 s).
            if not prod.is_alive() and "acked" in done and len(samples) % 4 == 0:
                caught_up = committed_total(addr) >= done["acked"] + backlog.get("acked", 0)
        prod.join()
        hwm = status_kb(app.pid, "VmHWM")
        anon, files = status_kb(app.pid, "RssAnon"), status_kb(app.pid, "RssFile")
        cpu = cpu_seconds(app.pid)
        app.send_signal(signal.SIGTERM)
        app.wait(60)
        log = (work / "app.log").read_text()
        m = re.search(r"stopped: (\d+) messages in, (\d+) records out", log)
        counted = int(m.group(1)) if m else -1
        consumed = committed_total(addr)
        steady = [kb for t, kb in samples if t >= 10]
        produced = done["acked"] + backlog.get("acked", 0)
        print(f"profile {args.profile}: {args.rate} msgs/s for {args.seconds} s "
              f"({done['acked']} produced in {done['seconds']:.1f} s"
              f"{', after a backlog of %d' % backlog['acked'] if backlog else ''}, {args.devices} device keys)"
              f"{' under ' + args.emulator if args.emulator else ''}")
        print(f"  RSS steady (after 10 s): median {statistics.median(steady) / 1024:.1f} MB, "
              f"max {max(steady) / 1024:.1f} MB; peak (VmHWM) {hwm / 1024:.1f} MB")
        print(f"  at the end: anonymous {anon / 1024:.1f} MB, mapped files (library code) {files / 1024:.1f} MB")
        if args.emulator:
            print(f"  of which the emulator's translated code (rwx mappings): median "
                  f"{statistics.median(code) / 1024:.1f} MB, max {max(code) / 1024:.1f} MB")
        print(f"  CPU {cpu:.1f} s = {cpu / max(consumed, 1) * 1e6:.1f} us per message")
        starts = log_starts(addr)
        print(f"  committed offsets: {consumed} of {produced} produced"
              f" ({'all' if consumed == produced else 'MISMATCH'}); the stopped line counts {counted} in")
        if counted < produced and any(starts):
            print(f"  the dev broker dropped the oldest messages before they were read (log starts "
                  f"{starts}; it keeps about 5 MB per partition): use a smaller --backlog")
        ok = consumed == produced == counted
    finally:
        if app.poll() is None:
            app.kill()
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
