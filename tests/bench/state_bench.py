#!/usr/bin/python3
"""The per-key state benchmarks, on one dev broker. Called by tests/bench/state.sh,
which starts the broker with every topic; see tests/bench/README.md ("State").

1. Throughput of state (the method and functions of throughput.py): on the same
   phone rows, for REPEAT runs each,
     stateless  luastream run crash_stateless.lua        (no state)
     stateful   luastream run crash_stateful.lua         (previous gTotal per key,
                                                          changelog + LMDB)
     py-dict    py_crash_state.py                        (the same in a dict, no
                                                          durability)
   and check every output topic (one output per input row; for the stateful ones
   dG is the change from the key's previous row, in input order).
2. Checkpoint pause: state_count.lua counts the messages of each of K distinct keys
   (one state entry per key, each key once) with commit_every = D, so each
   checkpoint writes D changed keys. The script logs every pause between two
   consecutive rows ("gap"); the checkpoint is the gap that holds the runtime's
   debug line "committed ..." (written after the changelog produce + flush + offset
   commit, before the LMDB transaction), which splits it in two. The final checkpoint
   (at --count) is timed from the last row (logged by the script) to the "stopped"
   line; it also flushes the last outputs.
3. Recovery: the same app is started again on the same group with its state
   directory deleted; every assigned partition is rebuilt from the changelog, and
   the runtime logs "state default[p]: replayed N changelog records (M applied) in
   T ms". The restores run one after another in the assignment callback, so the
   total time is the sum of T; keys/s = applied records / total time.
"""
import argparse
import json
import math
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import throughput as tp  # noqa: E402
from throughput import log  # noqa: E402

STATEFUL_FIELDS = {"device", "ts", "gX", "gY", "gZ", "gTotal", "dG", "crash"}


# ---- 1. throughput -----------------------------------------------------------------

def check_stateful(broker, r, inp):
    """One output per input row, with gTotal, and dG / crash following each key's
    previous row (the topic's per-partition order is the key's input order)."""
    problems, dropped = tp.count_problems(broker, r, inp.rows)
    if dropped:
        return problems
    prev = {}
    digest, bad, n = 0, 0, 0
    for key, value in tp.read_topic(broker, r.topic):
        n += 1
        row = json.loads(value)
        k = key.decode()
        x, y, z = row["gX"], row["gY"], row["gZ"]
        g = math.sqrt(x * x + y * y + z * z)
        p = prev.get(k, g)
        prev[k] = g
        ok = (set(row) == STATEFUL_FIELDS and k == row["device"]
              and abs(row["gTotal"] - g) <= 1e-12 * g
              and abs(row["dG"] - (g - p)) <= 1e-9
              and row["crash"] is (abs(row["dG"]) > tp.CRASH_G))
        if not ok:
            bad += 1
            if bad <= 3:
                problems.append("wrong output: key %s value %s (previous gTotal %r)"
                                % (k, value.decode(), p))
        digest += tp.h64(tp.canonical(k, row))
    digest &= (1 << 64) - 1
    if n != inp.rows:
        problems.append("read %d records back, expected %d" % (n, inp.rows))
    if digest != inp.canon:
        problems.append("the outputs do not cover every input row exactly once")
    if bad > 3:
        problems.append("%d wrong outputs in all" % bad)
    return problems


def throughput(a, work, env):
    inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
    tp.produce_input(a.broker, "phone-data", inp)
    peers = ["stateless", "stateful", "py-dict"]
    results = {p: [] for p in peers}
    failures = []
    statedir = os.path.join(work, "state-crash")
    for rep in range(1, a.repeat + 1):
        s = "" if rep == 1 else "-%d" % rep
        for peer in peers:
            if peer == "stateless":
                topic = "out-sl" + s
                cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateless.lua"),
                       "--broker", a.broker, "--count", str(a.rows), "--quiet", "--name", "bench-crash-stateless" + s] + shlex.split(a.ls_args)
                penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
            elif peer == "stateful":
                topic = "out-sf" + s
                # the app name is also the changelog's prefix: bench-crash-stateful[-N]__default__changelog
                cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateful.lua"),
                       "--broker", a.broker, "--count", str(a.rows), "--quiet", "--name", "bench-crash-stateful" + s,
                       "--state-dir", statedir] + shlex.split(a.ls_args)
                penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
            else:
                topic = "out-pyst" + s
                cmd = ["/usr/bin/python3", os.path.join(HERE, "py_crash_state.py"), "--broker", a.broker,
                       "--count", str(a.rows), "--input", "phone-data", "--output", topic,
                       "--group", "bench-py-state" + s]
                penv = env
            r = tp.run_peer(peer, cmd, penv, a.broker, topic, a.rows, work, a.timeout)
            if a.no_check:
                r.problems = [] if r.produced == a.rows else ["%d records, expected %d" % (r.produced, a.rows)]
            elif peer == "stateless":
                r.problems = tp.check_output(a.broker, r, inp, "rows")
            else:
                r.problems = check_stateful(a.broker, r, inp)
            results[peer].append(r)
            tp.log_run(rep, peer, topic, r, "" if r.problems or a.no_check else "  output ok", failures)
    return inp, results, failures


# ---- 2 + 3. checkpoint pause and recovery ------------------------------------------

LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) (\w+)\s+(.*)$")
# Per partition: "state S[p]: replayed N changelog records (M applied)"; then one
# line per store for all its partitions, replayed together: "... in T ms".
REPLAYED = re.compile(r"state (\S+)\[(\d+)\]: replayed (\d+) changelog records \((\d+) applied\)")
REPLAYED_ALL = re.compile(r"state (\S+): replayed (\d+) changelog records of (\d+) partitions? "
                          r"\((\d+) applied\) in (\d+) ms")


def log_lines(path, day0):
    """(epoch seconds, level, text) of the runtime's log lines; 'gap' lines as is."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = LOG_TIME.match(line)
            if m:
                h, mi, s, ms = (int(x) for x in m.groups()[:4])
                t = day0 + h * 3600 + mi * 60 + s + ms / 1000
                out.append((t, m.group(5), m.group(6)))
            elif line.startswith("gap ") or line.startswith("last "):
                out.append((None, line.split()[0], line))
    return out


def day_start(t):
    return t - t % 86400


def count_input(a, work):
    path = os.path.join(work, "keys.tsv")
    with open(path, "w") as f:
        f.write("".join("k%07d\tx\n" % i for i in range(a.keys)))
    t0 = time.monotonic()
    subprocess.run(["kcat", "-P", "-q", "-b", a.broker, "-t", "count-in", "-K", "\t",
                    "-X", "partitioner=murmur2_random", "-l", path], check=True)
    wm = tp.watermarks(a.broker, "count-in")
    total = sum(hi - lo for lo, hi in wm)
    if total != a.keys or any(lo for lo, _ in wm):
        raise SystemExit("count-in holds %d records (watermarks %s), expected %d" % (total, wm, a.keys))
    log("count input: %d distinct keys produced to count-in in %.1f s (%d..%d per partition)"
        % (a.keys, time.monotonic() - t0, min(hi for _, hi in wm), max(hi for _, hi in wm)))


def checkpoint_pause(a, work, env):
    """Runs state_count.lua over the distinct keys; returns its figures."""
    statedir = os.path.join(work, "state-count")
    logpath = os.path.join(work, "count-1.log")
    cmd = [a.luastream, "run", os.path.join(HERE, "state_count.lua"), "--broker", a.broker,
           "--count", str(a.keys), "--quiet", "--name", "bench-state-count", "--state-dir", statedir,
           "--log-level", "debug", "--set", "commit_every=%d" % a.dirty, "--set", "commit_interval=600"]
    penv = dict(env, LS_BENCH_INPUT="count-in", LS_BENCH_OUTPUT="count-out", LS_BENCH_GAPS="5",
                LS_BENCH_LAST=str(a.keys))
    t0 = time.time()
    with open(logpath, "w") as out:
        rc = subprocess.run(cmd, env=penv, stdout=out, stderr=subprocess.STDOUT,
                            timeout=a.timeout).returncode
    res = {"rc": rc, "log": logpath, "statedir": statedir}
    lines = log_lines(logpath, day_start(t0))
    gaps, last_row = [], None
    for _, lvl, text in lines:
        if lvl == "gap":
            _, s, e, ms = text.split()
            gaps.append((float(s), float(e), float(ms)))
        elif lvl == "last":
            last_row = float(text.split()[1])
    commits = [t for t, lvl, text in lines if lvl == "debug" and text.startswith("committed ")]
    stopped = [t for t, lvl, text in lines if text.startswith("bench-state-count: stopped")]
    res["gaps"] = gaps
    # Mid-run checkpoints: the pause between two rows that holds a "committed" line
    # (log times have 1 ms resolution, hence the 1 ms slack).
    res["mid"] = []
    for c in commits:
        for s, e, ms in gaps:
            if s - 0.001 <= c <= e + 0.001:
                res["mid"].append((ms, (c - s) * 1000, (e - c) * 1000))
                break
    # The final checkpoint, at --count: from the last row to the "stopped" line.
    res["final"] = None
    if last_row and stopped and commits and commits[-1] >= last_row - 0.001:
        res["final"] = ((stopped[-1] - last_row) * 1000, (commits[-1] - last_row) * 1000,
                        (stopped[-1] - commits[-1]) * 1000)
    res["ncommits"] = len(commits)
    res["state_list"], res["lmdb_bytes"] = state_list(a, statedir)
    return res


def state_list(a, statedir):
    p = subprocess.run([a.luastream, "state", "list", os.path.join(statedir, "bench-state-count")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    size = 0
    for root, _, files in os.walk(statedir):
        size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return p.stdout.strip(), size


def summarize_list(text):
    """Total keys and bytes of `luastream state list` (columns: store partition keys bytes ...)."""
    keys = nbytes = parts = 0
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 4 and f[1].isdigit() and f[2].isdigit() and f[3].isdigit():
            parts += 1
            keys += int(f[2])
            nbytes += int(f[3])
    return parts, keys, nbytes


def recovery(a, work, env, statedir):
    """Restarts the counting app on a deleted state dir; parses the replay lines."""
    subprocess.run(["rm", "-rf", os.path.join(statedir, "bench-state-count")], check=True)
    logpath = os.path.join(work, "count-2.log")
    cmd = [a.luastream, "run", os.path.join(HERE, "state_count.lua"), "--broker", a.broker,
           "--name", "bench-state-count", "--state-dir", statedir, "--quiet", "--timeout", str(int(a.timeout))]
    penv = dict(env, LS_BENCH_INPUT="count-in", LS_BENCH_OUTPUT="count-out")
    t0 = time.time()
    out = open(logpath, "w")
    proc = subprocess.Popen(cmd, env=penv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    parts, total = {}, None
    try:
        deadline = time.monotonic() + a.timeout
        last_new = None
        while time.monotonic() < deadline and proc.poll() is None:
            with open(logpath, errors="replace") as f:
                text = f.read()
            for m in REPLAYED.finditer(text):
                if int(m.group(2)) not in parts:
                    parts[int(m.group(2))] = (int(m.group(3)), int(m.group(4)))
                    last_new = time.monotonic()
            total = REPLAYED_ALL.search(text)
            if total or (last_new and time.monotonic() - last_new > 5):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
    lines = log_lines(logpath, day_start(t0))
    times = [t for t, lvl, text in lines if t is not None and REPLAYED.search(text)]
    seen = sum(v[0] for v in parts.values())
    applied = sum(v[1] for v in parts.values())
    ms = int(total.group(5)) if total else 0
    res = {"log": logpath, "parts": parts, "seen": seen, "applied": applied, "ms": ms,
           "rc": proc.returncode}
    res["span_ms"] = (max(times) - min(times)) * 1000 if times else None
    res["state_list"], res["lmdb_bytes"] = state_list(a, statedir)
    return res


# ---- main --------------------------------------------------------------------------

def main():
    signal.signal(signal.SIGTERM, tp.on_term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--luastream", required=True)
    ap.add_argument("--rows", type=int, default=300000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keys", type=int, default=400000)
    ap.add_argument("--dirty", type=int, default=100000, help="changed keys per checkpoint")
    ap.add_argument("--ls-args", default="", help="extra arguments for both luastream runs of part 1")
    ap.add_argument("--parts", default="throughput,checkpoint,recovery")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    env = dict(os.environ)
    work = a.workdir
    failures = []
    log("load average before the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))

    inp = results = None
    if "throughput" in parts:
        inp, results, f = throughput(a, work, env)
        failures += f
    ck = rec = None
    if "checkpoint" in parts or "recovery" in parts:
        count_input(a, work)
        ck = checkpoint_pause(a, work, env)
        if ck["rc"] != 0:
            failures.append("state_count.lua exited with %s (log: %s)" % (ck["rc"], ck["log"]))
        if "recovery" in parts:
            rec = recovery(a, work, env, ck["statedir"])
            if rec["applied"] != a.keys:
                failures.append("recovery applied %d changelog records, expected %d (log: %s)"
                                % (rec["applied"], a.keys, rec["log"]))

    sys.stderr.flush()
    print()
    if results:
        print("1. throughput: %d rows of ~%.0f B JSON, 16 partitions, %d device keys; median of %d run(s) "
              "(steady: 10%% -> 90%% of the outputs)" % (a.rows, inp.bytes / inp.rows, a.devices, a.repeat))
        med = tp.print_peers(results, list(results), a.rows)
        tp.print_ratios(med, "stateful", [("stateless", 0.7), ("py-dict", 2)])
    if ck:
        print()
        print("2. checkpoint pause: state_count.lua, %d distinct keys once each, commit_every=%d "
              "(%d changed keys per checkpoint), at-least-once" % (a.keys, a.dirty, a.dirty))
        for i, (total, before, after) in enumerate(ck["mid"], 1):
            print("checkpoint %d: %6.1f ms pause between two rows = %4.0f ms changelog produce + flush + "
                  "offset commit, then %3.0f ms LMDB transaction (+ the next batch's decode)"
                  % (i, total, before, after))
        if ck["final"]:
            total, before, after = ck["final"]
            print("final (stop): %6.1f ms last row -> 'stopped'   = %4.0f ms last outputs + changelog produce + "
                  "flush + offset commit, then %3.0f ms LMDB transaction + close" % (total, before, after))
        if ck["mid"]:
            print("median mid-run checkpoint: %.1f ms for %d changed keys (log times: 1 ms resolution)"
                  % (statistics.median(m[0] for m in ck["mid"]), a.dirty))
        else:
            print("no pause found around a 'committed' line (log: %s)" % ck["log"])
        others = sorted((g[2] for g in ck["gaps"]
                         if not any(abs(g[2] - m[0]) < 1e-6 for m in ck["mid"])), reverse=True)
        print("other pauses between rows >= 5 ms (batch_ms waits, fetch stalls): %d, largest %s ms"
              % (len(others), ", ".join("%.0f" % g for g in others[:3]) or "-"))
        parts_, keys, nbytes = summarize_list(ck["state_list"])
        print("LMDB after the run (luastream state list): %d partitions, %d keys, %.1f MB in the "
              "stores; %.1f MB on disk" % (parts_, keys, nbytes / 1e6, ck["lmdb_bytes"] / 1e6))
    if rec:
        print()
        print("3. recovery from the changelog: %d keys (state dir deleted, same group restarted)" % a.keys)
        if rec["ms"]:
            print("%d partitions replayed together, %d changelog records (%d applied) in %d ms: "
                  "%s keys/s (target >= 500,000)"
                  % (len(rec["parts"]), rec["seen"], rec["applied"], rec["ms"],
                     "{:,.0f}".format(rec["applied"] / (rec["ms"] / 1000))))
            print("per partition: %d..%d records"
                  % (min(v[0] for v in rec["parts"].values()), max(v[0] for v in rec["parts"].values())))
        else:
            print("no replay lines (log: %s)" % rec["log"])
    sys.stdout.flush()
    if failures:
        print("FAILED CHECKS:")
        for f in failures:
            print("  " + f)
        return 1
    print("checks: all outputs complete and right" if not a.no_check else "checks: counts only")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
