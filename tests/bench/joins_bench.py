#!/usr/bin/python3
"""The join benchmarks, on one dev broker. Called by tests/bench/joins.sh, which
starts the broker; see tests/bench/README.md ("Joins").

1. Throughput of a stream-table join (the method and functions of throughput.py):
   the phone rows on phone-data (keyed by device) and a table of owners on
   phone-owners (keyed by device, the same 16 partitions, produced first: an owner
   per device, then new owners for some devices, tombstones and new owners for
   others). REPEAT runs each, in turn, of
     stateless  luastream run crash_stateless.lua    (no state)
     join       luastream run join_table.lua         (app:table + sdf:join_table;
                                                      LMDB, the table's topic as
                                                      its changelog)
     py-join    py_join.py                           (a consumer of both topics, the
                                                      table in a dict)
   Before each repetition, the join app (the group and state directory of the
   timed run) runs on an empty stream topic until its committed offsets cover the
   whole table topic, and is stopped (SIGTERM: a clean stop). Not timed: it fills
   the table first, so that the timed run measures the join alone (it finds the
   table in its state directory, saved up to the committed offsets, and reads
   none of the table's topic again); the order of the two topics is the runtime's
   (timestamp order, docs/joins.md), which the checks below verify. The timed join
   run starts at least GROUP_EMPTY_S after it.
   py_join.py reads the table again at every start, the stream paused until then
   (it keeps nothing).
   Every output topic is read back: one output per input row; for join and
   py-join, exactly the reading's fields plus its device's owner's fields, with the
   values of the owner the table holds last (a reference computed here from the
   table file) and the reading's own values where both have a field (ts).
2. In process (no Kafka, one core): join_table.lua through bench_pipeline, its
   table filled first from the owners' records (--table, not timed), against
   crash_stateless.lua (bench_pipeline) and py_join.py --in-process (the same
   per-reading function as its Kafka loop, the dict filled first, not timed) on
   the rows of part 1, REPEAT invocations each, interleaved: the join itself
   (decode, look-up, merge, encode), without the broker both share in part 1.
"""
import argparse
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_rows  # noqa: E402
import throughput as tp  # noqa: E402
import windows_bench as wb  # noqa: E402
from throughput import log, median  # noqa: E402

TABLE = "phone-owners"
EMPTY = "join-empty"  # the stream topic of the table-filling runs: never written
READING_FIELDS = {"device", "ts", "gX", "gY", "gZ"}
PEERS = ["stateless", "join", "py-join"]
# The dev broker (librdkafka's mock cluster) keeps a group whose last member left
# rebalancing for the member's session.timeout.ms - 1 s (the runtime's: 6 s); a
# member that joins meanwhile is held until then, instead of the 3 s a new or empty
# group waits. The timed join run starts this long after the filling run's exit.
GROUP_EMPTY_S = 5.5

# ---- the table ---------------------------------------------------------------------

FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena",
         "Mateo", "Nia", "Omar", "Pia"]
LAST = ["Moreau", "Okafor", "Silva", "Tanaka", "Novak", "Haddad", "Berg", "Costa", "Singh", "Walsh"]
PLANS = ["basic", "family", "pro"]
REGIONS = ["eu-west", "eu-north", "us-east", "ap-south"]


class Table:
    """The records of the owners' topic, written to path as `key<TAB>value` lines
    (an empty value: a tombstone, produced as a null value): an owner for each of
    the devices of gen_rows.py, then a new owner for a tenth of them, then a
    tombstone and a new owner for a twentieth. Each owner has a field of the
    readings' too (ts, when the owner registered), which the reading's own value
    must win. self.ref: the reference, device -> the owner it holds last (None:
    none)."""

    def __init__(self, devices, seed, path):
        rnd = random.Random(seed + 1)
        names = gen_rows.device_names(devices, tp.PARTITIONS)
        n = [0]

        def owner():
            n[0] += 1
            return {"owner_id": 1000 + n[0], "owner": rnd.choice(FIRST) + " " + rnd.choice(LAST),
                    "plan": rnd.choice(PLANS), "region": rnd.choice(REGIONS),
                    "ts": gen_rows.BASE_TS - 86400000 * rnd.randrange(1, 1000)}

        recs = [(d, owner()) for d in names]
        recs += [(d, owner()) for d in rnd.sample(names, max(1, devices // 10))]
        gone = rnd.sample(names, max(1, devices // 20))
        recs += [(d, None) for d in gone] + [(d, owner()) for d in gone]
        self.path, self.records = path, len(recs)
        self.tombstones = len(gone)
        self.ref = {}
        self.value_bytes = 0
        with open(path, "w") as f:
            for d, v in recs:
                s = "" if v is None else json.dumps(v, separators=(",", ":"))
                f.write("%s\t%s\n" % (d, s))
                self.value_bytes += len(s)
        # the reference, from the file (a tombstone deletes the key)
        with open(path) as f:
            for line in f:
                k, v = line.rstrip("\n").split("\t", 1)
                self.ref[k] = json.loads(v) if v else None
        self.owners = sum(v is not None for v in self.ref.values())


def produce_table(broker, t):
    """kcat, with -Z: an empty value goes as a null value (a tombstone). Checks the
    topic holds exactly the file's records, tombstones included."""
    t0 = time.monotonic()
    subprocess.run(["kcat", "-P", "-q", "-Z", "-b", broker, "-t", TABLE, "-K", "\t",
                    "-X", "partitioner=murmur2_random", "-l", t.path], check=True)
    wm = tp.watermarks(broker, TABLE)
    total = sum(hi - lo for lo, hi in wm)
    back = {}
    nulls = 0
    for k, v in tp.read_topic(broker, TABLE):
        nulls += v is None
        back[k.decode()] = json.loads(v) if v is not None else None
    if total != t.records or any(lo for lo, _ in wm) or nulls != t.tombstones or back != t.ref:
        raise SystemExit("table topic %s holds %d records (%d null values; watermarks %s), expected %d "
                         "(%d null values), or its last values differ from the file's"
                         % (TABLE, total, nulls, wm, t.records, t.tombstones))
    log("table: %d records (%d owners, %d tombstones, %.0f B JSON per owner) produced to %s in %.1f s; "
        "read back: the same last value per device"
        % (t.records, t.owners, t.tombstones, t.value_bytes / (t.records - t.tombstones), TABLE,
           time.monotonic() - t0))


# ---- checking a join's output ------------------------------------------------------

def check_join(broker, r, inp, table):
    """One output per input row, each the reading with its owner's fields added.
    Returns the problems (empty: the topic is right)."""
    problems, dropped = tp.count_problems(broker, r, inp.rows)
    if dropped:
        return problems
    ref = table.ref
    digest = n = bad = unowned = 0
    for key, value in tp.read_topic(broker, r.topic):
        n += 1
        k = key.decode()
        try:
            row = json.loads(value)
            digest += tp.h64(tp.canonical(k, row))  # the reading's own fields, ts included
        except (ValueError, KeyError, TypeError):
            row = None
        owner = ref.get(k) or {}
        if (row is not None and row.get("device") == k and set(row) == READING_FIELDS | set(owner)
                and all(row[f] == v for f, v in owner.items() if f not in READING_FIELDS)):
            continue
        bad += 1
        if row is not None and owner and not set(owner) - READING_FIELDS & set(row):
            unowned += 1
        if bad <= 3:
            problems.append("wrong output %d (key %s): %s; the table holds %s"
                            % (n, k, value.decode(), json.dumps(ref.get(k))))
    digest &= (1 << 64) - 1
    if n != inp.rows:
        problems.append("read %d records back, expected %d" % (n, inp.rows))
    if digest != inp.canon:
        problems.append("the outputs do not carry every input row exactly once: "
                        + tp.compare_rows(broker, r.topic, inp))
    if bad > 3:
        problems.append("%d wrong outputs in all (%d of them without their owner's fields)" % (bad, unowned))
    return problems


# ---- 1. throughput -----------------------------------------------------------------

def fill_table(a, work, env, name, statedir, topic):
    """The join app on the empty stream topic, until its committed offsets cover the
    table topic; then a clean stop. Returns (seconds, problems)."""
    logpath = os.path.join(work, topic + ".fill.log")
    cmd = [a.luastream, "run", os.path.join(HERE, "join_table.lua"), "--broker", a.broker, "--name", name,
           "--state-dir", statedir, "--quiet", "--set", "commit_interval=0.5"] + shlex.split(a.ls_args)
    penv = dict(env, LS_BENCH_INPUT=EMPTY, LS_BENCH_TABLE=TABLE, LS_BENCH_OUTPUT=topic)
    t0 = time.monotonic()
    with open(logpath, "w") as out:
        proc = subprocess.Popen(cmd, env=penv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        done = 0
        try:
            while proc.poll() is None and time.monotonic() - t0 < a.timeout:
                done = wb.committed(a.broker, name, TABLE)
                if done >= a.table.records:
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)  # a clean stop: the last checkpoint
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    problems = []
    if done < a.table.records:
        problems.append("filling the table: committed %d of %d table records (log: %s)"
                        % (done, a.table.records, logpath))
    if proc.returncode != 0:
        problems.append("filling the table: exit code %s (log: %s)" % (proc.returncode, logpath))
    return time.monotonic() - t0, problems


def peer_cmd(a, peer, rep, env):
    s = "" if rep == 1 else "-%d" % rep
    if peer == "stateless":
        topic = "out-sl" + s
        cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateless.lua"), "--broker", a.broker,
               "--count", str(a.rows), "--quiet", "--name", "bench-join-stateless" + s]
        cmd += shlex.split(a.ls_args)
        penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic)
    elif peer == "join":
        topic = "out-join" + s
        cmd = [a.luastream, "run", os.path.join(HERE, "join_table.lua"), "--broker", a.broker,
               "--count", str(a.rows), "--quiet", "--name", "bench-join-table" + s,
               "--state-dir", os.path.join(a.workdir, "state-join")] + shlex.split(a.ls_args)
        penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_TABLE=TABLE, LS_BENCH_OUTPUT=topic)
    else:
        topic = "out-pyjoin" + s
        cmd = ["/usr/bin/python3", os.path.join(HERE, "py_join.py"), "--broker", a.broker,
               "--count", str(a.rows), "--input", "phone-data", "--table", TABLE, "--output", topic,
               "--group", "bench-py-join" + s]
        penv = env
    return topic, cmd, penv


def throughput(a, work, env, inp):
    results = {p: [] for p in PEERS}
    failures = []
    fills = []
    for rep in range(1, a.repeat + 1):
        filled = None
        for peer in ["fill"] + PEERS:
            topic, cmd, penv = peer_cmd(a, "join" if peer == "fill" else peer, rep, env)
            if peer == "fill":
                # before the stateless run, which gives the dev broker the time to
                # empty the group the filling run left
                secs, probs = fill_table(a, work, env, cmd[cmd.index("--name") + 1],
                                         cmd[cmd.index("--state-dir") + 1], topic)
                filled = time.monotonic()
                fills.append(secs)
                log("run %d join      table filled in %.1f s (not timed)" % (rep, secs))
                for prob in probs:
                    log("  PROBLEM join (%s): %s" % (topic, prob))
                    failures.append("join run %d: %s" % (rep, prob))
                if probs:
                    filled = False
                continue
            if peer == "join":
                if filled is False:
                    continue
                time.sleep(max(0.0, filled + GROUP_EMPTY_S - time.monotonic()))
            r = tp.run_peer(peer, cmd, penv, a.broker, topic, a.rows, work, a.timeout)
            if a.no_check:
                r.problems = [] if r.produced == a.rows else ["%d records, expected %d" % (r.produced, a.rows)]
            elif peer == "stateless":
                r.problems = tp.check_output(a.broker, r, inp, "rows")
            else:
                r.problems = check_join(a.broker, r, inp, a.table)
            results[peer].append(r)
            tp.log_run(rep, peer, topic, r, "" if r.problems or a.no_check else "  output ok", failures)
    return results, fills, failures


def print_throughput(a, inp, results, fills):
    t = a.table
    print("1. through the dev broker: %d rows of ~%.0f B JSON keyed by %d devices, joined with a table of "
          "%d records (%d owners, ~%.0f B JSON each), the inputs in 16 partitions each; median of %d run(s) "
          "(steady: 10%% -> 90%% of the outputs)"
          % (a.rows, inp.bytes / inp.rows, a.devices, t.records, t.owners,
             t.value_bytes / (t.records - t.tombstones), a.repeat))
    med = tp.print_peers(results, PEERS, a.rows)
    if not all(results[p] for p in PEERS):
        return
    tp.print_ratios(med, "join", [("stateless", 0.5), ("py-join", 3)])
    tp.print_per_run(results, PEERS)
    if fills:
        print("join: the table filled before each timed run (not counted) in %s s"
              % " ".join("%.1f" % s for s in fills))


# ---- 2. in process -----------------------------------------------------------------

def bench_pipeline(a, work, script, rows, inp, label, repeat=3, table=None):
    cmd = [a.bench_pipeline, "--script", os.path.join(HERE, script), "--input", inp.path,
           "--rows", str(rows), "--repeat", str(repeat)]
    if table:
        cmd += ["--table", table]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(work, "inprocess-%s.log" % label), "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    d = {"rc": p.returncode, "out": p.stdout.strip()}
    for line in p.stdout.splitlines():
        m = wb.STAGE.match(line)
        if m:
            d[m.group(1).split()[0]] = int(m.group(2))
        m = wb.OUTPUTS.search(line)
        if m:
            d["outputs"] = float(m.group(1))
    return d


def py_in_process(a, work, rows, inp, label):
    cmd = [sys.executable, os.path.join(HERE, "py_join.py"), "--in-process", inp.path,
           "--table-file", a.table.path, "--rows", str(rows), "--repeat", "3"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(work, "inprocess-%s.log" % label), "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    d = {"rc": p.returncode, "out": p.stdout.strip()}
    for line in p.stdout.splitlines():
        if line.startswith("full_rows_per_s "):
            d["full"] = int(line.split()[1])
        m = re.match(r"py_join: (\d+) rows, \d+ owners, (\d+) output bytes", line)
        if m and int(m.group(2)) > 0:
            d["outputs"] = 1.0 if int(m.group(1)) == rows else int(m.group(1)) / rows
    return d


IN_PROCESS = ["join", "stateless", "py-join"]


def in_process(a, work, inp):
    """Returns (rows, {peer: [per-invocation dict]}, failures)."""
    rows = min(a.pipeline_rows, inp.rows)
    table = a.table.path
    scripts = {"join": "join_table.lua", "stateless": "crash_stateless.lua"}
    res = {s: [] for s in IN_PROCESS}
    failures = []
    for rep in range(1, a.repeat + 1):
        for name in IN_PROCESS:
            if name == "py-join":
                d = py_in_process(a, work, rows, inp, "%s-%d" % (name, rep))
            else:
                d = bench_pipeline(a, work, scripts[name], rows, inp, "%s-%d" % (name, rep),
                                   table=table if name == "join" else None)
            if d["rc"] != 0 or "full" not in d:
                failures.append("bench_pipeline %s exited %d:\n%s" % (name, d["rc"], d["out"]))
                continue
            if d.get("outputs") != 1.0:
                failures.append("bench_pipeline %s: %s outputs per input row, expected 1" % (name, d.get("outputs")))
            res[name].append(d)
            log("in-process %d %-9s full %9s rows/s  (%s outputs per row)"
                % (rep, name, "{:,}".format(d["full"]), d.get("outputs")))
    return rows, res, failures


def print_in_process(a, rows, res):
    print("2. in process (bench_pipeline --input and py_join.py --in-process: the rows above, %d per pass, "
          "one core, the join's table from the owners above, not timed; median of %d invocations, each the "
          "best of 3 passes)" % (rows, a.repeat))
    full = {}
    for name in IN_PROCESS:
        full[name] = median(r["full"] for r in res[name]) if res[name] else None
        print("%-10s %12s rows/s (full)" % (name, "{:,.0f}".format(full[name]) if full[name] else "failed"))
    for other, target in (("stateless", 0.5), ("py-join", 3)):
        if full["join"] and full[other]:
            print("ratio (full): join/%s = %.2f (target >= %g)" % (other, full["join"] / full[other], target))
    print("per invocation (rows/s): %s" % "; ".join(
        "%s %s" % (n, " ".join("{:,}".format(r["full"]) for r in res[n])) for n in IN_PROCESS))


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
    ap.add_argument("--ls-args", default="", help="extra arguments for the luastream runs of part 1")
    ap.add_argument("--parts", default="throughput,inprocess")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    for p in parts - {"throughput", "inprocess"}:
        raise SystemExit("unknown part %s" % p)
    env = dict(os.environ)
    work = a.workdir
    failures = []
    log("load average before the run: %s (2 cores shared: compare the ratios, not the rates)"
        % " ".join(open("/proc/loadavg").read().split()[:3]))

    inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
    results = inproc = None
    fills = []
    a.table = Table(a.devices, a.seed, os.path.join(work, "owners.tsv"))
    if "throughput" in parts:
        produce_table(a.broker, a.table)  # the table first, then the readings
        tp.produce_input(a.broker, "phone-data", inp)
        results, fills, f = throughput(a, work, env, inp)
        failures += f
    if "inprocess" in parts:
        if not a.bench_pipeline or not os.path.exists(a.bench_pipeline):
            failures.append("in process: %s is not built" % a.bench_pipeline)
        else:
            pl_rows, inproc, f = in_process(a, work, inp)
            failures += f
    log("load average after the run: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))

    sys.stderr.flush()
    print()
    if results:
        print_throughput(a, inp, results, fills)
    if inproc:
        print()
        print_in_process(a, pl_rows, inproc)
    sys.stdout.flush()
    if failures:
        print("FAILED CHECKS:")
        for f in failures:
            print("  " + f)
        return 1
    print("checks: %s" % ("every output topic holds one output per input row; the joins' carry the owner "
                          "the table holds last, the readings' own values where both have a field"
                          if not a.no_check else "counts only"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
