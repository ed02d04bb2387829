#!/usr/bin/python3
"""CPU per message through Kafka: luastream against kcat and a Python loop.

    /usr/bin/python3 tests/bench/cpu_bench.py [--luastream build/luastream] [--rows 600000]
        [--repeat 3] [--peers kcat,python,stateless,stateful] [--ls-args "..."]
        [--before OTHER_LUASTREAM] [--no-check] [--keep]

It starts its own dev broker (`luastream broker`, one process on loopback) with the
input topic phone-data and one output topic per peer and run, 32 partitions each
(and the stateful app's changelog), generates ROWS phone rows with gen_rows.py
(~86 B JSON, 200 device keys spread evenly over the 32 partitions) and produces them
with kcat (not measured). Then, REPEAT times in turn, each peer reads the whole input
and writes one record per row to its own output topic:

  kcat       kcat -C ... | kcat -P ...              passthrough, no processing
  python     py_crash.py                            confluent-kafka hand loop (JSON, gTotal, crash)
  stateless  luastream run crash_stateless.lua      the same computation
  stateful   luastream run crash_stateful.lua       plus the previous gTotal per phone as state
                                                    (changelog + LMDB), dG and crash on it

(with --before, the two luastream peers run a second time with that binary, e.g. a
build of the previous commit, as stateless@before and stateful@before, in the same
repetitions), measured with throughput.py's method (/usr/bin/time for the peer's CPU, user +
system, all threads and processes; the outputs read back and checked). The broker's
own CPU during each run is read from /proc. The table gives CPU seconds and CPU
microseconds per message for each peer (medians), and the broker's share.

The outputs are ~128 B (stateless, python) and ~140 B (stateful) of JSON; 600,000
of them over 32 partitions stay under the dev broker's 5 MiB per partition.
"""
import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import state_bench  # noqa: E402
import throughput as tp  # noqa: E402
from throughput import log  # noqa: E402

tp.PARTITIONS = 32
PEERS = ("kcat", "python", "stateless", "stateful")


def start_broker(luastream, work, topics):
    boot = os.path.join(work, "bootstrap")
    args = [luastream, "broker", "--bootstrap-file", boot]
    for t in topics:
        args += ["--topic", "%s:%d" % (t, tp.PARTITIONS)]
    err = open(os.path.join(work, "broker.err"), "w")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    for _ in range(200):
        if os.path.exists(boot):
            with open(boot) as f:
                return proc, f.read().strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("the dev broker did not start (see %s)" % err.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--luastream", default=os.path.join(ROOT, "build", "luastream"))
    ap.add_argument("--rows", type=int, default=600000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--ls-args", default="", help="extra arguments for both luastream runs")
    ap.add_argument("--before", help="another luastream binary: its stateless and stateful runs come "
                    "next to this one's in every repetition (stateless@before, stateful@before)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--no-check", action="store_true", help="count the outputs only")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    a = ap.parse_args()
    peers = [p for p in a.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise SystemExit("unknown peer %s (one of %s)" % (p, ", ".join(PEERS)))
    if a.before:
        peers += [p + "@before" for p in peers if p in ("stateless", "stateful")]
    for tool in ("kcat", "/usr/bin/time"):
        if not shutil.which(tool):
            raise SystemExit("%s is missing (scripts/install-deps.sh bench)" % tool)

    work = tempfile.mkdtemp(prefix="luastream-cpu.")
    topics = ["phone-data"]
    for rep in range(1, a.repeat + 1):
        s = "" if rep == 1 else "-%d" % rep
        topics += ["out-%s%s" % (p.replace("@", "-"), s) for p in peers]
        for p in peers:
            if p.startswith("stateful"):
                topics.append("bench-cpu-%s%s__default__changelog" % (p.replace("@", "-"), s))
    log("load average before the run: %s (the benchmark wants the 2 cores to itself)"
        % " ".join(open("/proc/loadavg").read().split()[:3]))
    broker_proc, broker = start_broker(a.luastream, work, topics)
    failures, results = [], {p: [] for p in peers}
    try:
        inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
        tp.produce_input(broker, "phone-data", inp)
        env = dict(os.environ)
        for rep in range(1, a.repeat + 1):
            s = "" if rep == 1 else "-%d" % rep
            for peer in peers:
                topic = "out-%s%s" % (peer.replace("@", "-"), s)
                kind, _, which = peer.partition("@")
                binary = a.before if which else a.luastream
                penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
                if peer == "kcat":
                    b = shlex.quote(broker)
                    cmd = ["sh", "-c", "kcat -C -q -b %s -t phone-data -o beginning -e -K '\\t' | "
                           "kcat -P -q -b %s -t %s -K '\\t' -X partitioner=murmur2_random" % (b, b, topic)]
                elif peer == "python":
                    cmd = ["/usr/bin/python3", os.path.join(HERE, "py_crash.py"), "--broker", broker,
                           "--count", str(a.rows), "--input", "phone-data", "--output", topic,
                           "--group", "bench-cpu-py%s" % s]
                else:
                    cmd = [binary, "run", os.path.join(HERE, "crash_%s.lua" % kind), "--broker", broker,
                           "--count", str(a.rows), "--quiet",
                           "--name", "bench-cpu-%s%s" % (peer.replace("@", "-"), s),
                           "--state-dir", os.path.join(work, "state")] + shlex.split(a.ls_args)
                b0 = tp.proc_cpu_s(broker_proc.pid)
                r = tp.run_peer(peer, cmd, penv, broker, topic, a.rows, work, a.timeout)
                r.broker_cpu_s = tp.proc_cpu_s(broker_proc.pid) - b0
                if a.no_check:
                    r.problems = [] if r.produced == a.rows else ["%d records, expected %d" % (r.produced, a.rows)]
                elif peer == "kcat":
                    r.problems = tp.check_output(broker, r, inp, "raw")
                elif kind == "stateful":
                    r.problems = state_bench.check_stateful(broker, r, inp)
                else:
                    r.problems = tp.check_output(broker, r, inp, "rows")
                results[peer].append(r)
                log("run %d %-16s CPU %5.2f s = %5.2f us/msg (broker %5.2f s)  exit after %5.1f s  "
                    "peak RSS %6.1f MB%s" % (rep, peer, r.cpu_s, r.cpu_s / a.rows * 1e6, r.broker_cpu_s,
                                             r.exit_s, r.rss_kb / 1024,
                                             "" if r.problems or a.no_check else "  output ok"))
                for prob in r.problems:
                    log("  PROBLEM %s (%s): %s" % (peer, topic, prob))
                    failures.append("%s run %d: %s" % (peer, rep, prob))
    finally:
        broker_proc.send_signal(signal.SIGTERM)
        broker_proc.wait(10)

    def med(peer, attr):
        return statistics.median(getattr(r, attr) for r in results[peer])

    print()
    print("%d rows of ~%.0f B JSON in, %d partitions, %d device keys; median of %d runs; "
          "CPU = user + system of the peer's processes, all threads" % (
              a.rows, inp.bytes / inp.rows, tp.PARTITIONS, a.devices, a.repeat))
    print("%-16s %7s %12s %14s %16s %9s" % ("peer", "CPU s", "CPU us/msg", "msgs/CPU-s", "broker CPU s",
                                            "peak RSS"))
    for peer in peers:
        cpu = med(peer, "cpu_s")
        print("%-16s %7.2f %12.2f %14s %16.2f %6.1f MB" % (
            peer, cpu, cpu / a.rows * 1e6, "{:,.0f}".format(a.rows / cpu), med(peer, "broker_cpu_s"),
            max(r.rss_kb for r in results[peer]) / 1024))
    if failures:
        print("FAILED CHECKS:")
        for f in failures:
            print("  " + f)
        log("logs kept in %s" % work)
        return 1
    print("checks: every output topic holds exactly %d records%s" % (
        a.rows, "" if a.no_check else " with the expected content"))
    if a.keep:
        log("logs kept in %s" % work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
