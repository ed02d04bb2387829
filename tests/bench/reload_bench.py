#!/usr/bin/python3
"""Live reload: how fast an edit is applied, and what reloads cost a busy pipeline.

    /usr/bin/python3 tests/bench/reload_bench.py [--luastream build/luastream]
                                                 [--rows N] [--edits N] [--repeat N]

Starts its own dev broker (`luastream broker`, loopback) with every topic it needs,
then (see tests/bench/README.md, "Reload"):

1. Reload latency on the crash example. A copy of examples/crash_detection.lua (and
   phones_sim.lua) runs with `--watch`, fed ~2000 phone rows/s by a producer thread
   while a consumer thread reads `crash-alerts`. Each edit atomically replaces the
   script (temporary file + rename) by a variant that alerts on every row
   (CRASH_DG = -1.0) and stamps each alert with `applied = ls.now_ms()`; the edit's
   latency is the smallest `applied` after the rename minus the wall-clock time just
   before the rename. Then the original is put back, and so on. The runtime's own
   figures come from its "reloaded ... in T ms: build B ms, checkpoint C ms, swap S ms;
   A ms after the change" lines.
2. Throughput dip. crash_stateful.lua processes a backlog of ROWS rows twice per
   repetition: without reloads, then on a new group while the bench sends SIGHUP
   every 0.25 s. The output topic's end offsets are sampled every 10 ms (as
   throughput.py does); T = time from the first to the last output, rate = ROWS / T,
   cost per reload = (T with - T without) / reloads during T.

Exits non-zero when a check fails (a reload failed or never applied, an output topic
does not hold exactly ROWS records, a run failed), and then keeps its working
directory (/tmp/luastream-reload.*) with every log.
"""
import argparse
import bisect
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import gen_rows  # noqa: E402
import throughput as tp  # noqa: E402
from throughput import PARTITIONS, crossing, log  # noqa: E402

LIVE_PARTITIONS = 4          # phone-data and crash-alerts of the example
LIVE_DEVICES = 20
LATENCY_APP = "reload-latency"
ORIGINAL_LINE = "local CRASH_DG = 3.0"
EDITED_LINE = "local CRASH_DG = -1.0"
APPLIED_LINE = "sdf.applied = function() return ls.now_ms() end\n"
PRINT_LINE = "sdf:print()"

RELOADED_RE = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) info\s+reloaded (.+?) \((.*)\) in ([\d.]+) ms: "
    r"build ([\d.]+) ms, checkpoint ([\d.]+) ms, swap ([\d.]+) ms; ([\d.]+) ms after the change")
FAILED_RE = re.compile(r"reload of .* failed")
POSTPONED_RE = re.compile(r"reload postponed")


def now_ms():
    return time.time() * 1000.0


# ---- processes -------------------------------------------------------------------

class Broker:
    """A `luastream broker` process with the given topics, on loopback."""

    def __init__(self, luastream, topics, workdir):
        self.bootstrap_file = os.path.join(workdir, "bootstrap")
        self.err = open(os.path.join(workdir, "broker.log"), "w")
        args = [luastream, "broker", "--bootstrap-file", self.bootstrap_file]
        for name, parts in topics:
            args += ["--topic", "%s:%d" % (name, parts)]
        self.proc = subprocess.Popen(args, stdout=self.err, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.bootstrap_file) and os.path.getsize(self.bootstrap_file)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the dev broker did not start (log: %s)" % self.err.name)
            time.sleep(0.05)
        with open(self.bootstrap_file) as f:
            self.address = f.read().strip()

    def stop(self):
        if self.proc.poll() is None:
            tp.stop_group(self.proc)
        self.err.close()


class LogTail:
    """Reads the lines a process appends to its log file."""

    def __init__(self, path):
        self.f = open(path, "r", errors="replace")
        self.lines = []
        self.part = ""

    def poll(self):
        data = self.f.read()
        if data:
            data = self.part + data
            lines = data.split("\n")
            self.part = lines.pop()
            self.lines.extend(lines)
        return self.lines

    def close(self):
        self.f.close()


def log_epoch_ms(line, ref_ms):
    """The wall-clock time of a log line (HH:MM:SS.mmm, UTC), near ref_ms."""
    m = re.match(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ", line)
    if not m:
        return None
    tod = ((int(m.group(1)) * 60 + int(m.group(2))) * 60 + int(m.group(3))) * 1000 + int(m.group(4))
    day = math.floor(ref_ms / 86400000.0) * 86400000.0
    t = day + tod
    if t - ref_ms > 43200000:
        t -= 86400000
    elif ref_ms - t > 43200000:
        t += 86400000
    return t


class Reload:
    pass


def parse_reloads(lines, ref_ms):
    out = []
    for line in lines:
        m = RELOADED_RE.match(line)
        if not m:
            continue
        r = Reload()
        r.at_ms = log_epoch_ms(line, ref_ms)
        r.why = m.group(6)
        r.total, r.build, r.checkpoint, r.swap, r.after = (float(m.group(i)) for i in range(7, 12))
        out.append(r)
    return out


# ---- 1. reload latency on the crash example --------------------------------------

class PhoneProducer(threading.Thread):
    """Phone rows keyed by device at a steady rate; ts is the wall clock in ms."""

    def __init__(self, broker, topic, rate, devices, seed=7):
        super().__init__(daemon=True)
        self.topic, self.rate = topic, rate
        self.p = Producer({"bootstrap.servers": broker, "linger.ms": 5,
                           "partitioner": "murmur2_random"})
        rnd = random.Random(seed)
        self.rnd = rnd
        self.phones = []
        for name in gen_rows.device_names(devices, LIVE_PARTITIONS):
            theta, phi = rnd.uniform(0, math.pi), rnd.uniform(0, 2 * math.pi)
            self.phones.append((name, math.sin(theta) * math.cos(phi),
                                math.sin(theta) * math.sin(phi), math.cos(theta)))
        self.stop_ev = threading.Event()
        self.sent = 0
        self.error = None

    def run(self):
        try:
            fmt = '{"device":"%s","ts":%d,"gX":%.6f,"gY":%.6f,"gZ":%.6f}'
            gauss = self.rnd.gauss
            t0 = time.monotonic()
            i = 0
            while not self.stop_ev.is_set():
                due = int((time.monotonic() - t0) * self.rate)
                ts = int(now_ms())
                while self.sent < due:
                    name, x, y, z = self.phones[i % len(self.phones)]
                    i += 1
                    value = fmt % (name, ts, x + gauss(0, 0.03), y + gauss(0, 0.03), z + gauss(0, 0.03))
                    try:
                        self.p.produce(self.topic, value.encode(), name.encode())
                    except BufferError:
                        self.p.poll(0.01)
                        continue
                    self.sent += 1
                self.p.poll(0)
                time.sleep(0.005)
            self.p.flush(10)
        except Exception as e:  # reported by the main thread
            self.error = e


class AlertConsumer(threading.Thread):
    """Reads crash-alerts; keeps the `applied` stamp of every alert that has one."""

    def __init__(self, broker, topic):
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": broker, "group.id": "reload-bench-alerts",
                           "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(LIVE_PARTITIONS)])
        self.lock = threading.Lock()
        self.applied = []       # (applied ms, received ms)
        self.alerts = 0
        self.stop_ev = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_ev.is_set():
                msgs = self.c.consume(1000, 0.05)
                recv = now_ms()
                got = []
                for m in msgs:
                    if m.error():
                        continue
                    row = json.loads(m.value())
                    if "applied" in row:
                        got.append((float(row["applied"]), recv))
                with self.lock:
                    self.alerts += sum(1 for m in msgs if not m.error())
                    self.applied.extend(got)
        except Exception as e:
            self.error = e
        finally:
            self.c.close()

    def first_after(self, t_ms):
        """(smallest applied >= t_ms, earliest receive time of those) or None."""
        with self.lock:
            hits = [x for x in self.applied if x[0] >= t_ms]
        if not hits:
            return None
        return min(h[0] for h in hits), min(h[1] for h in hits)


def write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), ".reload-bench.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
    t_before = now_ms()
    os.replace(tmp, path)
    return t_before, now_ms()


def wait_for(cond, timeout, step=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def edited_variant(original):
    if original.count(ORIGINAL_LINE) != 1 or original.count(PRINT_LINE) != 1:
        raise SystemExit("examples/crash_detection.lua no longer has exactly one %r and one %r"
                         % (ORIGINAL_LINE, PRINT_LINE))
    text = original.replace(ORIGINAL_LINE, EDITED_LINE)
    i = text.index(PRINT_LINE)
    i = text.rindex("\n", 0, i) + 1  # start of the sdf:print() line
    return text[:i] + APPLIED_LINE + text[i:]


def latency_part(a, broker, work, failures):
    edit_dir = os.path.join(work, "example")
    os.makedirs(edit_dir)
    for f in ("crash_detection.lua", "phones_sim.lua"):
        shutil.copy(os.path.join(ROOT, "examples", f), edit_dir)
    script = os.path.join(edit_dir, "crash_detection.lua")
    with open(script) as f:
        original = f.read()
    edited = edited_variant(original)

    producer = PhoneProducer(broker, "phone-data", a.live_rate, LIVE_DEVICES)
    consumer = AlertConsumer(broker, "crash-alerts")
    producer.start()
    consumer.start()
    logpath = os.path.join(work, "latency.log")
    errf = open(logpath, "w")
    proc = subprocess.Popen([a.luastream, "run", script, "--broker", broker, "--watch",
                             "--name", LATENCY_APP, "--state-dir", os.path.join(work, "state")]
                            + shlex.split(a.ls_args),
                            stdout=subprocess.DEVNULL, stderr=errf, start_new_session=True)
    tail = LogTail(logpath)
    edits = []   # one dict per edit: t_write, t_revert, then the figures
    res = {"edits": edits, "reloads": [], "log": logpath}
    t_ref = now_ms()

    def fail(msg):
        log("  PROBLEM reload latency: %s (log: %s)" % (msg, logpath))
        failures.append("reload latency: " + msg)

    def reload_lines():
        return [ln for ln in tail.poll() if RELOADED_RE.match(ln) or FAILED_RE.search(ln)]

    try:
        if not wait_for(lambda: any("partitions assigned" in ln for ln in tail.poll())
                        or proc.poll() is not None, 30, 0.05) or proc.poll() is not None:
            fail("the example did not start or got no partitions")
            return res
        # Let it settle: the assignment's first fetches, the first checkpoint.
        time.sleep(1.0)
        for i in range(a.edits):
            if proc.poll() is not None:
                fail("the example exited (code %s)" % proc.returncode)
                break
            n0 = len(reload_lines())
            t_write, _ = write_atomic(script, edited)
            e = {"t_write": t_write}
            edits.append(e)
            lines = wait_for(lambda: len(reload_lines()) > n0 and reload_lines(), 10)
            if not lines or not RELOADED_RE.match(lines[n0]):
                fail("edit %d: no reload (%s)" % (i + 1, lines[n0] if lines else "no log line"))
                break
            # Wait until an alert of the new version has come back (this proves it
            # applied), then put the original back.
            if not wait_for(lambda: consumer.first_after(math.floor(t_write)), 10, 0.005):
                fail("edit %d: reloaded, but no alert of the new version arrived" % (i + 1))
                break
            time.sleep(0.05)
            n1 = len(reload_lines())
            e["t_revert"], _ = write_atomic(script, original)
            lines = wait_for(lambda: len(reload_lines()) > n1 and reload_lines(), 10)
            if not lines or not RELOADED_RE.match(lines[n1]):
                fail("revert %d: no reload (%s)" % (i + 1, lines[n1] if lines else "no log line"))
                break
            time.sleep(a.pause)
        time.sleep(0.5)  # the last alerts
    finally:
        producer.stop_ev.set()
        consumer.stop_ev.set()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                tp.stop_group(proc)
        else:
            fail("the example exited early with code %s" % proc.returncode)
        errf.close()
        producer.join(15)
        consumer.join(15)
    lines = tail.poll()
    tail.close()
    for ln in lines:
        if FAILED_RE.search(ln) or POSTPONED_RE.search(ln):
            fail(ln.strip())
    if producer.error or consumer.error:
        fail("producer/consumer thread: %s" % (producer.error or consumer.error))
    if proc.returncode not in (0, None):
        fail("the example exited with code %s" % proc.returncode)
    res["reloads"] = parse_reloads(lines, t_ref)
    res["sent"], res["alerts"] = producer.sent, consumer.alerts
    # Each edit's alerts carry applied values in [its write, the next edit's write).
    for j, e in enumerate(edits):
        if "t_revert" not in e:
            continue
        end = edits[j + 1]["t_write"] if j + 1 < len(edits) else float("inf")
        with consumer.lock:
            hits = [x for x in consumer.applied if math.floor(e["t_write"]) <= x[0] < end]
        if not hits:
            fail("edit %d: no alert carries its stamp" % (j + 1))
            continue
        e["latency"] = min(h[0] for h in hits) - e["t_write"]
        # The edit's "reloaded" line is written right after the swap.
        mine = [x for x in res["reloads"] if math.floor(e["t_write"]) <= x.at_ms < e["t_revert"]]
        if mine:
            e["reload"] = mine[0]
            e["swapped_to_row"] = min(h[0] for h in hits) - mine[0].at_ms
        back = [x for x in res["reloads"] if math.floor(e["t_revert"]) <= x.at_ms]
        if back:
            e["revert_reload"] = back[0]
        e["e2e"] = min(h[1] for h in hits) - e["t_write"]
        e["alerts"] = len(hits)
        log("edit %2d: applied %6.1f ms after the rename (alert back after %6.1f ms, %d stamped alerts)"
            % (j + 1, e["latency"], e["e2e"], e["alerts"]))
    return res


# ---- 2. throughput dip ------------------------------------------------------------

def count_at(samples, t):
    """Outputs in the topic at time t, interpolated between samples."""
    ts = [s[0] for s in samples]
    i = bisect.bisect_right(ts, t)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t0, n0), (t1, n1) = samples[i - 1], samples[i]
    return n0 + (n1 - n0) * (t - t0) / (t1 - t0) if t1 > t0 else n1


def dip_run(a, broker, work, name, topic, hup_every):
    mon = tp.Monitor(broker, topic)
    if mon.count() != 0:
        raise SystemExit("output topic %s is not empty" % topic)
    logpath = os.path.join(work, name + ".log")
    out = open(logpath, "w")
    env = dict(os.environ, LS_BENCH_INPUT="phone-backlog", LS_BENCH_OUTPUT=topic, LS_BENCH_GROUP=name)
    cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateful.lua"), "--broker", broker,
           "--count", str(a.rows), "--quiet", "--name", name,
           "--state-dir", os.path.join(work, "state")] + shlex.split(a.ls_args)
    off = time.time() - time.monotonic()  # wall = monotonic + off
    t_launch = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    tail = LogTail(logpath)
    samples = [(t_launch, 0)]
    running, hups, next_hup = False, 0, None
    t_exit = None
    try:
        while True:
            if t_exit is None and proc.poll() is not None:
                t_exit = time.monotonic()
            now = time.monotonic()
            if hup_every and t_exit is None:
                if not running:
                    # SIGHUP's handler is installed before the "running" line.
                    running = any(": running " in ln for ln in tail.poll())
                    if running:
                        next_hup = now
                if running and now >= next_hup:
                    os.kill(proc.pid, signal.SIGHUP)  # not reaped yet: still our child
                    hups += 1
                    next_hup += hup_every
            n = mon.count()
            samples.append((time.monotonic(), n))
            if t_exit is not None and (n >= a.rows or time.monotonic() - t_exit > 5):
                break
            if time.monotonic() - t_launch > a.timeout:
                log("%s: no end after %d s, stopping it" % (name, a.timeout))
                break
            time.sleep(tp.SAMPLE_S)
    finally:
        if proc.poll() is None:
            tp.stop_group(proc)
        mon.close()
        out.close()
    lines = tail.poll()
    tail.close()
    with open(os.path.join(work, name + ".samples"), "w") as f:
        f.write("".join("%.4f %d\n" % (t - t_launch, n) for t, n in samples))
    r = tp.Run()
    r.name, r.topic, r.rows, r.log = name, topic, a.rows, logpath
    r.rc = proc.returncode
    r.produced = samples[-1][1]
    r.hups = hups
    r.samples = samples
    t_first, t_last = crossing(samples, 1), crossing(samples, a.rows)
    r.t_first, r.t_last = t_first, t_last
    r.T = t_last - t_first if t_first is not None and t_last is not None else None
    r.rate = a.rows / r.T if r.T else None
    r.reloads_all = parse_reloads(lines, (t_launch + off) * 1000)
    for x in r.reloads_all:
        x.at = x.at_ms / 1000.0 - off  # monotonic
    r.reloads = [x for x in r.reloads_all
                 if r.T and t_first <= x.at - x.total / 2000.0 <= t_last]
    r.failed = [ln for ln in lines if FAILED_RE.search(ln)]
    r.postponed = [ln for ln in lines if POSTPONED_RE.search(ln)]
    # 100 ms windows: outputs in each window from the first output to the last, and
    # in the window centred on each reload's middle.
    r.windows = []
    if r.T:
        t = t_first
        while t + 0.1 <= t_last:
            r.windows.append(count_at(samples, t + 0.1) - count_at(samples, t))
            t += 0.1
    r.reload_windows = [count_at(samples, x.at - x.total / 2000.0 + 0.05)
                        - count_at(samples, x.at - x.total / 2000.0 - 0.05) for x in r.reloads]
    return r


def dip_check(a, broker, r):
    problems = []
    if a.no_check:
        wm = tp.watermarks(broker, r.topic)
        count = sum(hi - lo for lo, hi in wm)
        if count != a.rows or any(lo for lo, _ in wm):
            problems.append("%d records (watermarks %s), expected %d" % (count, wm, a.rows))
        if r.rc != 0:
            problems.append("exit code %s (log: %s)" % (r.rc, r.log))
    else:
        import state_bench  # the stateful output check: every row once, dG in key order
        problems = state_bench.check_stateful(broker, r, r.inp)
    if r.failed:
        problems.append("%d failed reloads, e.g. %s" % (len(r.failed), r.failed[0].strip()))
    if r.T is None:
        problems.append("no first or last output seen")
    return problems


def dip_part(a, broker, work, failures):
    inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
    tp.produce_input(broker, "phone-backlog", inp)
    runs = {"a": [], "b": []}
    for rep in range(1, a.repeat + 1):
        s = "" if rep == 1 else "-%d" % rep
        for kind in ("a", "b"):
            name, topic = "bench-reload-%s%s" % (kind, s), "out-dip-%s%s" % (kind, s)
            r = dip_run(a, broker, work, name, topic, a.hup_every if kind == "b" else 0)
            r.inp = inp
            r.problems = dip_check(a, broker, r)
            runs[kind].append(r)
            med_total = statistics.median([x.total for x in r.reloads]) if r.reloads else None
            log("run %d %s: %s rows in %s s = %s rows/s; %d reloads (%d while processing%s)%s%s"
                % (rep, "with reloads   " if kind == "b" else "without reloads", a.rows,
                   "%.3f" % r.T if r.T else "-", tp.fmt_rate(r.rate).strip(), len(r.reloads_all),
                   len(r.reloads),
                   ", median %.1f ms each" % med_total if med_total is not None else "",
                   "; %d postponed" % len(r.postponed) if r.postponed else "",
                   "" if r.problems else "  output ok"))
            for p in r.problems:
                log("  PROBLEM %s (%s): %s" % (name, topic, p))
                failures.append("%s: %s" % (name, p))
    return inp, runs


# ---- main -------------------------------------------------------------------------

def fmt_stats(vals, unit="ms"):
    if not vals:
        return "-"
    return "median %6.1f %s, max %6.1f %s" % (statistics.median(vals), unit, max(vals), unit)


def on_term(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--luastream", default=os.path.join(ROOT, "build", "luastream"))
    ap.add_argument("--rows", type=int, default=300000, help="backlog rows for the throughput dip")
    ap.add_argument("--edits", type=int, default=10, help="edits of the crash example")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each throughput case (medians)")
    ap.add_argument("--hup-every", type=float, default=0.25, help="seconds between SIGHUPs")
    ap.add_argument("--live-rate", type=float, default=2000, help="rows/s fed to the example")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between a revert and the next edit")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ls-args", default="", help="extra arguments for every luastream run")
    ap.add_argument("--parts", default="latency,dip")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--no-check", action="store_true", help="check output counts only")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    a = ap.parse_args()
    a.luastream = os.path.abspath(a.luastream)
    parts = [p for p in a.parts.split(",") if p]
    for p in parts:
        if p not in ("latency", "dip"):
            raise SystemExit("unknown part %s" % p)
    if not os.access(a.luastream, os.X_OK):
        raise SystemExit("%s is not built" % a.luastream)
    if "dip" in parts and not shutil.which("kcat"):
        raise SystemExit("kcat is missing (scripts/install-deps.sh bench)")

    load = " ".join(open("/proc/loadavg").read().split()[:3])
    log("load average before the run: %s (2 cores wanted for the benchmark)" % load)
    work = tempfile.mkdtemp(prefix="luastream-reload.")
    topics = [("phone-data", LIVE_PARTITIONS), ("crash-alerts", LIVE_PARTITIONS),
              (LATENCY_APP + "__default__changelog", LIVE_PARTITIONS),
              ("phone-backlog", PARTITIONS)]
    for rep in range(1, a.repeat + 1):
        s = "" if rep == 1 else "-%d" % rep
        for kind in ("a", "b"):
            topics += [("out-dip-%s%s" % (kind, s), PARTITIONS),
                       ("bench-reload-%s%s__default__changelog" % (kind, s), PARTITIONS)]
    failures = []
    broker = None
    lat = runs = inp = None
    t_start = time.monotonic()
    try:
        broker = Broker(a.luastream, topics, work)
        log("dev broker: %s (pid %d); working directory %s" % (broker.address, broker.proc.pid, work))
        if "latency" in parts:
            lat = latency_part(a, broker.address, work, failures)
        if "dip" in parts:
            inp, runs = dip_part(a, broker.address, work, failures)
    except KeyboardInterrupt:
        failures.append("interrupted")
        raise
    finally:
        if broker:
            broker.stop()
        if failures or a.keep:
            log("working directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)

    sys.stderr.flush()
    print()
    print("live reload, %s; load average %s before, %s after; %.0f s"
          % ("2 cores" if os.cpu_count() == 2 else "%d cores" % os.cpu_count(), load,
             " ".join(open("/proc/loadavg").read().split()[:3]), time.monotonic() - t_start))
    if lat is not None:
        done = [e for e in lat["edits"] if "latency" in e]
        print("1. reload latency, crash example (%d edits + %d reverts, ~%.0f rows/s, %d devices, "
              "%d partitions)" % (len(done), len(done), a.live_rate, LIVE_DEVICES, LIVE_PARTITIONS))
        print("   rename -> first row of the new version  %s   (target <= 50 ms)"
              % fmt_stats([e["latency"] for e in done]))
        print("   rename -> its alert read back           %s" % fmt_stats([e["e2e"] for e in done]))
        print("   'reloaded' line -> first new row        %s"
              % fmt_stats([e["swapped_to_row"] for e in done if "swapped_to_row" in e]))
        rl = [e["reload"] for e in done if "reload" in e]
        print("   runtime, change -> swapped ('after')    %s" % fmt_stats([r.after for r in rl]))
        print("     change -> reload starts               %s" % fmt_stats([r.after - r.total for r in rl]))
        print("     reload (build + checkpoint + swap)    %s" % fmt_stats([r.total for r in rl]))
        print("     build                                 %s" % fmt_stats([r.build for r in rl]))
        print("     checkpoint                            %s" % fmt_stats([r.checkpoint for r in rl]))
        print("     swap                                  %s" % fmt_stats([r.swap for r in rl]))
        rv = [e["revert_reload"] for e in done if "revert_reload" in e]
        print("   reverts, change -> swapped ('after')    %s (reload %s)"
              % (fmt_stats([r.after for r in rv]), fmt_stats([r.total for r in rv])))
    if runs is not None:
        A, B = runs["a"], runs["b"]

        def med(rs, f):
            vals = [f(r) for r in rs if f(r) is not None]
            return statistics.median(vals) if vals else None
        ta, tb = med(A, lambda r: r.T), med(B, lambda r: r.T)
        ra, rb = med(A, lambda r: r.rate), med(B, lambda r: r.rate)
        nrel = med(B, lambda r: len(r.reloads))
        print("2. throughput dip, crash_stateful.lua, %d rows, %d partitions, SIGHUP every %.2f s; "
              "median of %d runs" % (a.rows, PARTITIONS, a.hup_every, a.repeat))
        print("   without reloads   %9s rows/s   (first -> last output %s s)"
              % (tp.fmt_rate(ra).strip(), "%.3f" % ta if ta else "-"))
        print("   with reloads      %9s rows/s   (first -> last output %s s, %s reloads in it, "
              "%s in all)" % (tp.fmt_rate(rb).strip(), "%.3f" % tb if tb else "-",
                              "%g" % nrel if nrel is not None else "-",
                              "%g" % med(B, lambda r: len(r.reloads_all))))
        print("   ratio with/without  %s" % ("%.2f" % (rb / ra) if ra and rb else "-"))
        per = []
        for r in B:  # each with-reloads run against the median without
            if r.T and ta and r.reloads:
                per.append((r.T - ta) * 1000 / len(r.reloads))
        cost = (tb - ta) * 1000 / nrel if ta and tb and nrel else None
        print("   cost per reload   %s ms  ((T with - T without) / reloads, medians; per run: %s)"
              % ("%.1f" % cost if cost is not None else "-",
                 ", ".join("%.1f" % c for c in per) or "-"))
        pauses = [x.total for r in B for x in r.reloads]
        print("   runtime's reload time while processing: %s (checkpoint %s)"
              % (fmt_stats(pauses), fmt_stats([x.checkpoint for r in B for x in r.reloads])))
        wa = [w for r in A for w in r.windows]
        wb = [w for r in B for w in r.reload_windows]
        if wa and wb:
            mwa = statistics.median(wa)
            print("   100 ms windows: median %.0f outputs without reloads; around a reload "
                  "median %.0f (%.2f), worst %.0f (%.2f); worst window without reloads %.0f"
                  % (mwa, statistics.median(wb), statistics.median(wb) / mwa if mwa else 0,
                     min(wb), min(wb) / mwa if mwa else 0, min(wa)))
    sys.stdout.flush()
    if failures:
        print("FAILED CHECKS (logs kept in %s):" % work)
        for f in failures:
            print("  " + f)
        return 1
    if runs is not None:
        print("checks: every reload applied; every output topic holds exactly %d records%s"
              % (a.rows, "" if a.no_check else ", each input row once, dG in key order"))
    else:
        print("checks: every reload applied")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
