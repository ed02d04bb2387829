#!/usr/bin/python3
"""The window benchmarks, on one dev broker. Called by tests/bench/windows.sh, which
starts the broker; see tests/bench/README.md ("Windows").

1. Throughput of windows (the method and functions of throughput.py): on the same
   phone rows, REPEAT runs each, in turn,
     stateless  luastream run crash_stateless.lua     (no state)
     windowed   luastream run window_stats.lua        (10 s tumbling windows per
                                                       device, current(); changelog
                                                       + LMDB)
     py-window  py_window.py                          (the same windows in a dict,
                                                       no durability)
   Every output topic is read back: one output per input row; for windowed and
   py-window every {start, end, n, mean, peak} equals a reference computed here from
   the input file, and each key's outputs come in its input order.
2. In process (bench_pipeline, no Kafka, one core): window_stats.lua with
   --fresh-state against crash_stateless.lua on the rows of part 1, REPEAT
   invocations each, in turn.
3. Memory of open windows: KEYS devices with KEY_ROWS rows each (1 by default; all
   in one window) through window_stats.lua, through it again with state_cache_keys
   = KEYS/10, and through crash_stateless.lua for a baseline; once the group's committed offsets cover every input row (the
   checkpoint's LMDB transaction follows the offset commit), the process's RSS is
   read from /proc, then it is stopped (SIGTERM: a clean stop) and
   `luastream state list` gives the LMDB size.
"""
import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import state_bench  # noqa: E402
import throughput as tp  # noqa: E402
from throughput import log, median  # noqa: E402

SIZE_MS = 10000  # window_stats.lua: tumbling_window(10000), grace 0
GRACE_MS = 0
WINDOW_FIELDS = {"start", "end", "n", "mean", "peak"}
REL_TOL = 1e-12


# ---- the reference -----------------------------------------------------------------

def add_exact(partials, x):
    """Adds x to a sum kept exactly as non-overlapping partials (Shewchuk's algorithm,
    the one behind math.fsum): math.fsum(partials) is then the sum correctly rounded,
    whatever the order of the additions."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


def reference(path):
    """What current() must emit for every row of the rows file, computed from the
    definition in docs/windows.md: the rows of a key in input order; row i (at ts) is
    late when its window [s, s + SIZE) ended at or before the largest ts of the
    key's earlier rows (+ grace); otherwise its output aggregates every earlier
    non-late row of the key in the same window, and itself (the mean from the exact
    sum, correctly rounded: the pipelines' running sums may differ in the last bits). A closed window never
    takes a row again (the watermark only rises), so no window needs deleting here.
    Returns ({key: [(start, n, mean, peak), ...] in input order}, late rows)."""
    out, aggs, wm = {}, {}, {}
    late = 0
    with open(path) as f:
        for line in f:
            k, v = line.rstrip("\n").split("\t", 1)
            row = json.loads(v)
            ts = int(row["ts"])
            g = math.sqrt(row["gX"] ** 2 + row["gY"] ** 2 + row["gZ"] ** 2)
            start = (ts // SIZE_MS) * SIZE_MS
            a = aggs.get((k, start))
            if a is None:
                if k in wm and start + SIZE_MS + GRACE_MS <= wm[k]:
                    late += 1
                    continue
                a = aggs[(k, start)] = [0, [], -math.inf]
            a[0] += 1
            add_exact(a[1], g)
            a[2] = max(a[2], g)
            out.setdefault(k, []).append((start, a[0], math.fsum(a[1]) / a[0], a[2]))
            wm[k] = max(wm.get(k, ts), ts)
    return out, late


def close(x, y):
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y))


def check_windows(broker, r, ref, rows):
    """One output per input row, each equal to the reference. Returns the problems,
    and sets r.exact (outputs whose mean and peak equal the reference's bit for bit),
    r.maxrel (largest relative difference of mean or peak)."""
    r.exact, r.maxrel = 0, 0.0
    problems, dropped = tp.count_problems(broker, r, rows)
    if dropped:
        return problems
    seen = {}  # key -> outputs read so far
    sets = {}

    def keyset(k):  # the (start, n) of every output the key must have
        if k not in sets:
            sets[k] = {e[:2] for e in ref[k]}
        return sets[k]

    bad = disorder = n = 0
    for key, value in tp.read_topic(broker, r.topic):
        n += 1
        k = key.decode()
        exp = ref.get(k)
        i = seen.get(k, 0)
        seen[k] = i + 1
        try:
            row = json.loads(value)
            got = (row["start"], row["n"], row["mean"], row["peak"])
            fields_ok = set(row) == WINDOW_FIELDS and row["end"] == row["start"] + SIZE_MS
        except (ValueError, KeyError, TypeError):
            got, fields_ok = None, False
        want = exp[i] if exp and i < len(exp) else None
        if got and want and got[:2] == want[:2] and fields_ok:
            if close(got[2], want[2]) and close(got[3], want[3]):
                r.exact += got[2] == want[2] and got[3] == want[3]
                r.maxrel = max(r.maxrel, abs(got[2] - want[2]) / abs(want[2]),
                               abs(got[3] - want[3]) / abs(want[3]))
                continue
        elif got and exp and fields_ok and got[:2] in keyset(k):
            disorder += 1  # a right (start, n) in the wrong place
            if disorder <= 3:
                problems.append("output %d of key %s is %s, expected the key's output in input "
                                "order %s" % (i + 1, k, value.decode(), want))
            continue
        bad += 1
        if bad <= 3:
            problems.append("wrong output %d of key %s: %s, expected (start, n, mean, peak) = %s"
                            % (i + 1, k, value.decode(), want))
    if n != rows:
        problems.append("read %d records back, expected %d" % (n, rows))
    short = {k: (len(v), seen.get(k, 0)) for k, v in ref.items() if seen.get(k, 0) != len(v)}
    if short:
        problems.append("%d keys with a number of outputs other than their input rows, e.g. %s"
                        % (len(short), ", ".join("%s: %d rows, %d outputs" % (k, a, b)
                                                 for k, (a, b) in list(short.items())[:3])))
    if bad > 3:
        problems.append("%d wrong outputs in all" % bad)
    if disorder > 3:
        problems.append("%d outputs out of their key's input order in all" % disorder)
    return problems


# ---- 1. throughput -----------------------------------------------------------------

PEERS = ["stateless", "windowed", "py-window"]


def peer_cmd(a, peer, rep, env, statedir):
    s = "" if rep == 1 else "-%d" % rep
    if peer == "stateless":
        topic = "out-sl" + s
        cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateless.lua"), "--broker", a.broker,
               "--count", str(a.rows), "--quiet", "--name", "bench-window-stateless" + s]
        cmd += shlex.split(a.ls_args)
        penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
    elif peer == "windowed":
        topic = "out-win" + s
        # the changelog, <name>____window__tumbling_10000_g0_<hash>__changelog, is
        # created by the dev broker when the runtime asks for it
        cmd = [a.luastream, "run", os.path.join(HERE, "window_stats.lua"), "--broker", a.broker,
               "--count", str(a.rows), "--quiet", "--name", "bench-window-stats" + s,
               "--state-dir", statedir] + shlex.split(a.ls_args)
        penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
    else:
        topic = "out-pywin" + s
        cmd = ["/usr/bin/python3", os.path.join(HERE, "py_window.py"), "--broker", a.broker,
               "--count", str(a.rows), "--input", "phone-data", "--output", topic,
               "--group", "bench-py-window" + s]
        penv = env
    return topic, cmd, penv


def throughput(a, work, env, inp):
    ref = None
    if not a.no_check:
        t0 = time.monotonic()
        ref, late = reference(inp.path)
        log("reference: %d outputs for %d keys (%d late rows) computed in %.1f s"
            % (sum(len(v) for v in ref.values()), len(ref), late, time.monotonic() - t0))
        if late:
            log("the input has %d late rows: they have no output, and the count check fails" % late)
    results = {p: [] for p in PEERS}
    failures = []
    statedir = os.path.join(work, "state-window")
    for rep in range(1, a.repeat + 1):
        for peer in PEERS:
            topic, cmd, penv = peer_cmd(a, peer, rep, env, statedir)
            r = tp.run_peer(peer, cmd, penv, a.broker, topic, a.rows, work, a.timeout)
            r.exact = r.maxrel = None
            if a.no_check:
                r.problems = [] if r.produced == a.rows else ["%d records, expected %d" % (r.produced, a.rows)]
            elif peer == "stateless":
                r.problems = tp.check_output(a.broker, r, inp, "rows")
            else:
                r.problems = check_windows(a.broker, r, ref, a.rows)
            results[peer].append(r)
            ok = ""
            if not r.problems and not a.no_check:
                ok = "  output ok"
                if r.exact is not None:
                    ok += " (%d of %d bit-identical to the reference, largest relative difference %.1e)" % (
                        r.exact, a.rows, r.maxrel)
            tp.log_run(rep, peer, topic, r, ok, failures)
    return results, failures


def print_throughput(a, inp, results):
    print("1. throughput: %d rows of ~%.0f B JSON, 16 partitions, %d device keys; median of %d run(s) "
          "(steady: 10%% -> 90%% of the outputs)" % (a.rows, inp.bytes / inp.rows, a.devices, a.repeat))
    med = tp.print_peers(results, PEERS, a.rows)
    tp.print_ratios(med, "windowed", [("stateless", 0.6), ("py-window", 3)])
    tp.print_per_run(results, PEERS)


# ---- 2. in process -----------------------------------------------------------------

STAGE = re.compile(r"^\s+(decode|decode\+pipeline|full \(decode\+pipeline\+encode\))\s+(\d+) rows/s")
PER_STAGE = re.compile(r"per stage: decode (\d+) ns, pipeline (-?\d+) ns, encode\+emit (-?\d+) ns")
OUTPUTS = re.compile(r"outputs: ([\d.]+) per record")


def in_process(a, work, inp):
    """bench_pipeline on the rows of part 1: REPEAT invocations of each script, in turn.
    Returns ({script: [per-invocation dict]}, failures)."""
    rows = min(a.pipeline_rows, inp.rows)  # rows <= lines: no row twice within a pass
    scripts = {
        "windowed": ["--script", os.path.join(HERE, "window_stats.lua"), "--fresh-state"],
        "stateless": ["--script", os.path.join(HERE, "crash_stateless.lua")],
    }
    res = {s: [] for s in scripts}
    failures = []
    for rep in range(1, a.repeat + 1):
        for name, args in scripts.items():
            cmd = [a.bench_pipeline] + args + ["--input", inp.path, "--rows", str(rows)]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            with open(os.path.join(work, "inprocess-%s-%d.log" % (name, rep)), "w") as f:
                f.write(" ".join(cmd) + "\n" + p.stdout)
            d = {}
            for line in p.stdout.splitlines():
                m = STAGE.match(line)
                if m:
                    d[m.group(1).split()[0]] = int(m.group(2))
                m = PER_STAGE.search(line)
                if m:
                    d["ns"] = tuple(int(x) for x in m.groups())
                m = OUTPUTS.search(line)
                if m:
                    d["outputs"] = float(m.group(1))
            if p.returncode != 0 or "full" not in d:
                failures.append("bench_pipeline %s exited %d:\n%s" % (name, p.returncode, p.stdout))
                continue
            if d.get("outputs") != 1.0:
                failures.append("bench_pipeline %s: %s outputs per input row, expected 1"
                                % (name, d.get("outputs")))
            res[name].append(d)
            log("in-process %d %-9s full %9s rows/s  (decode %s, +pipeline %s rows/s; %s outputs per row)"
                % (rep, name, "{:,}".format(d["full"]), "{:,}".format(d.get("decode", 0)),
                   "{:,}".format(d.get("decode+pipeline", 0)), d.get("outputs")))
    return rows, res, failures


def print_in_process(a, rows, res):
    print("2. in process (bench_pipeline --input: the rows above, %d per pass, batches of 1000, one core; "
          "median of %d invocations, each the best of 3 passes)" % (rows, a.repeat))
    print("%-10s %12s %14s %14s   %s" % ("script", "full rows/s", "decode rows/s", "+pipeline rows/s",
                                         "ns per row: decode / pipeline / encode+emit"))
    for name in ("windowed", "stateless"):
        runs = res[name]
        if not runs:
            print("%-10s failed" % name)
            continue
        ns = [median(r["ns"][i] for r in runs if "ns" in r) for i in range(3)]
        print("%-10s %12s %14s %14s     %s" % (
            name, "{:,.0f}".format(median(r["full"] for r in runs)),
            "{:,.0f}".format(median(r.get("decode") for r in runs)),
            "{:,.0f}".format(median(r.get("decode+pipeline") for r in runs)),
            " / ".join("%.0f" % x if x is not None else "-" for x in ns)))
    if res["windowed"] and res["stateless"]:
        w = median(r["full"] for r in res["windowed"])
        s = median(r["full"] for r in res["stateless"])
        print("ratio (full): windowed/stateless = %.2f (target >= 0.6); per invocation: %s"
              % (w / s, " ".join("%.2f" % (x["full"] / y["full"])
                                 for x, y in zip(res["windowed"], res["stateless"]))))


# ---- 3. memory of open windows -----------------------------------------------------

def proc_status(pid):
    d = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    d[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return d


def child_pid(pid):
    """The process /usr/bin/time started."""
    for _ in range(200):
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.01)
    return None


def committed(broker, group, topic):
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(tp.PARTITIONS)], timeout=10)
        return sum(max(t.offset, 0) for t in tps)
    finally:
        c.close()


def memory_run(a, work, env, label, script, name, topic, rows, extra):
    """Runs the script over mem-in until the group's committed offsets cover every row;
    then reads its RSS and stops it. Returns a Run with the figures."""
    statedir = os.path.join(work, "state-mem")
    logpath = os.path.join(work, topic + ".log")
    timefile = os.path.join(work, topic + ".time")
    cmd = ["/usr/bin/time", "-o", timefile, "-f", "%M %U %S",
           a.luastream, "run", os.path.join(HERE, script), "--broker", a.broker, "--name", name,
           "--state-dir", statedir, "--quiet", "--set", "commit_interval=0.5",
           "--timeout", str(int(a.timeout))] + extra
    penv = dict(env, LS_BENCH_INPUT="mem-in", LS_BENCH_OUTPUT=topic)
    mon = tp.Monitor(a.broker, topic)
    r = tp.Run()
    r.name, r.topic, r.log, r.statedir = label, topic, logpath, os.path.join(statedir, name)
    r.problems = []
    out = open(logpath, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=penv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid = child_pid(proc.pid)
    r.rss_running = r.status = None
    try:
        n = 0
        while proc.poll() is None and time.monotonic() - t0 < a.timeout:
            n = mon.count()
            if n >= rows:
                break
            time.sleep(0.05)
        r.outputs_s = time.monotonic() - t0
        # the final checkpoint: offsets committed for every row, then the LMDB transaction
        while proc.poll() is None and time.monotonic() - t0 < a.timeout:
            if committed(a.broker, name, "mem-in") >= rows:
                break
            time.sleep(0.1)
        r.committed_s = time.monotonic() - t0
        time.sleep(1.0)  # two commit intervals: nothing left to write
        if proc.poll() is None and pid:
            r.status = proc_status(pid)
            with open("/proc/%d/smaps_rollup" % pid) as f:
                r.smaps = f.read()
    finally:
        if proc.poll() is None and pid:
            os.kill(pid, signal.SIGTERM)  # a clean stop
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        mon.close()
        out.close()
    r.rc = proc.returncode
    r.produced = n
    try:
        with open(timefile) as f:
            rss, utime, stime = f.read().split()[-3:]
        r.rss_kb, r.cpu_s = int(rss), float(utime) + float(stime)
    except (OSError, ValueError):
        r.rss_kb, r.cpu_s = 0, 0.0
    if r.rc != 0:
        r.problems.append("exit code %s (log: %s)" % (r.rc, logpath))
    if not r.status:
        r.problems.append("no RSS read before the stop (outputs %d of %d; log: %s)" % (n, rows, logpath))
    return r


def memory(a, work, env):
    rows = a.keys * a.key_rows
    inp = tp.Input(rows, a.keys, a.seed, os.path.join(work, "mem-rows.tsv"))
    tp.produce_input(a.broker, "mem-in", inp)
    failures = []
    runs = {}
    ref = None
    cache = max(1, a.keys // 10)
    for label, script, name, topic, extra in (
            ("stateless", "crash_stateless.lua", "bench-window-mem-sl", "mem-out-sl", []),
            ("windowed", "window_stats.lua", "bench-window-mem", "mem-out", []),
            ("cache/10", "window_stats.lua", "bench-window-mem-lru", "mem-out-lru",
             ["--set", "state_cache_keys=%d" % cache])):
        r = memory_run(a, work, env, label, script, name, topic, rows, extra)
        if not a.no_check and not r.problems:
            if label == "stateless":
                r.problems += tp.check_output(a.broker, r, inp, "rows")
            else:
                if ref is None:
                    ref, _ = reference(inp.path)
                r.problems += check_windows(a.broker, r, ref, rows)
        elif not r.problems:
            wm = tp.watermarks(a.broker, topic)
            if sum(hi - lo for lo, hi in wm) != rows:
                r.problems.append("%d records, expected %d" % (sum(hi - lo for lo, hi in wm), rows))
        st = r.status or {}
        log("memory %-9s %d rows of %d keys: all outputs after %.1f s, committed after %.1f s; "
            "RSS then %.1f MB (anon %.1f MB), peak %.1f MB, CPU %.1f s%s"
            % (label, rows, a.keys, r.outputs_s, r.committed_s, st.get("VmRSS", 0) / 1024,
               st.get("RssAnon", 0) / 1024, r.rss_kb / 1024, r.cpu_s,
               "" if r.problems or a.no_check else "  output ok"))
        for prob in r.problems:
            log("  PROBLEM memory %s (%s): %s" % (label, topic, prob))
            failures.append("memory %s: %s" % (label, prob))
        runs[label] = r
        if label == "stateless":
            continue
        p = subprocess.run([a.luastream, "state", "list", r.statedir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        r.state_list = p.stdout.strip()
        r.parts, r.keys, r.store_bytes = state_bench.summarize_list(r.state_list)
        r.files = {}
        for f in sorted(os.listdir(r.statedir)) if os.path.isdir(r.statedir) else []:
            st = os.stat(os.path.join(r.statedir, f))
            r.files[f] = (st.st_size, st.st_blocks * 512)
        if p.returncode != 0 or r.keys != a.keys:
            failures.append("memory %s: luastream state list shows %d keys, expected %d (exit %d):\n%s"
                            % (label, r.keys, a.keys, p.returncode, r.state_list))
    return rows, runs, failures


def print_memory(a, rows, runs):
    s = runs["stateless"]
    base = (s.status or {}).get("VmRSS")
    print("3. memory: %d devices with an open window each (%d rows, %d per device), after the final "
          "checkpoint; 'cache/10' is windowed with --set state_cache_keys=%d"
          % (a.keys, rows, a.key_rows, max(1, a.keys // 10)))
    print("%-10s %10s %10s %10s %12s %7s %13s %12s" % ("script", "RSS", "RSS anon", "peak RSS", "RSS - stateless",
                                                      "CPU s", "LMDB keys", "LMDB bytes"))
    for r in runs.values():
        st = r.status or {}
        rss = st.get("VmRSS")
        diff = "%+.1f MB %+5.0f B/key" % ((rss - base) / 1024, (rss - base) * 1024 / a.keys) if rss and base else "-"
        lmdb = ("%13s %9.1f MB" % ("{:,}".format(r.keys), r.store_bytes / 1e6)) if hasattr(r, "keys") else ""
        print(("%-10s %7.1f MB %7.1f MB %7.1f MB %s %6.2f %s" % (
            r.name, (rss or 0) / 1024, st.get("RssAnon", 0) / 1024, r.rss_kb / 1024,
            "%22s" % diff, r.cpu_s, lmdb)).rstrip())
    w = runs["windowed"]
    if w.keys:
        print("LMDB (luastream state list): %d partitions, %.0f B per key in the store" % (
            w.parts, w.store_bytes / w.keys))
    if w.files:
        print("state directory: " + ", ".join("%s %.1f MB (%.1f MB allocated)" % (f, size / 1e6, alloc / 1e6)
                                              for f, (size, alloc) in w.files.items() if size > 4096))


# ---- main --------------------------------------------------------------------------

def main():
    signal.signal(signal.SIGTERM, tp.on_term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--luastream", required=True)
    ap.add_argument("--bench-pipeline")
    ap.add_argument("--rows", type=int, default=300000)
    ap.add_argument("--pipeline-rows", type=int, default=300000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keys", type=int, default=100000, help="devices in part 3")
    ap.add_argument("--key-rows", type=int, default=1, help="rows per device in part 3")
    ap.add_argument("--ls-args", default="", help="extra arguments for the luastream runs of part 1")
    ap.add_argument("--parts", default="throughput,inprocess,memory")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    for p in parts - {"throughput", "inprocess", "memory"}:
        raise SystemExit("unknown part %s" % p)
    env = dict(os.environ)
    work = a.workdir
    failures = []
    log("load average before the run: %s (2 cores shared: compare the ratios, not the rates)"
        % " ".join(open("/proc/loadavg").read().split()[:3]))

    inp = results = inproc = mem = None
    if parts & {"throughput", "inprocess"}:
        inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
    if "throughput" in parts:
        tp.produce_input(a.broker, "phone-data", inp)
        results, f = throughput(a, work, env, inp)
        failures += f
    if "inprocess" in parts:
        if not a.bench_pipeline or not os.path.exists(a.bench_pipeline):
            failures.append("in process: %s is not built" % a.bench_pipeline)
        else:
            pl_rows, inproc, f = in_process(a, work, inp)
            failures += f
    if "memory" in parts:
        mem_rows, mem, f = memory(a, work, env)
        failures += f
    log("load average after the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))

    sys.stderr.flush()
    print()
    if results:
        print_throughput(a, inp, results)
    if inproc:
        print()
        print_in_process(a, pl_rows, inproc)
    if mem:
        print()
        print_memory(a, mem_rows, mem)
    sys.stdout.flush()
    if failures:
        print("FAILED CHECKS:")
        for f in failures:
            print("  " + f)
        return 1
    print("checks: %s" % ("every output topic holds one output per input row, the window values equal "
                          "the reference" if not a.no_check else "counts only"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
