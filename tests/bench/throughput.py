#!/usr/bin/python3
"""Throughput of luastream against kcat and a Python loop, on one dev broker.

Called by tests/bench/run.sh, which starts the broker; see tests/bench/README.md
for what is measured and how. Steps:

1. generate the rows (gen_rows.py) and produce them to the input topic with kcat
   (not timed); check the input topic holds exactly those rows;
2. for each repetition, run each peer once against the same input, each writing its
   own output topic, while sampling the sum of the output topic's high watermarks
   every few ms (one ListOffsets request):
     kcat       kcat -C ... | kcat -P ...          (passthrough, no processing)
     python     tests/bench/py_crash.py            (confluent_kafka hand loop)
     luastream  luastream run tests/bench/crash_stateless.lua --count N
   - total  = N / (launch -> the N-th output is in the topic)
   - steady = 0.8 N / (time between 10 % and 90 % of the outputs being in the topic)
   - peak RSS and CPU time (user + system, all threads) of the peer's process
     tree, as /usr/bin/time reports them;
   - busy = the share of the machine's CPU time (all cores, every process: the
     broker and this sampler too) in use over the steady phase, from /proc/stat:
     near 100 % says the machine, not the peer, set the steady rate;
3. check every output topic: exactly N records, none dropped by the broker, and the
   right content (kcat: the input records byte for byte; python and luastream: one
   output per input row, with gTotal and crash right);
4. print the medians side by side, with the ratios and the in-process rate.
"""
import argparse
import collections
import hashlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_rows  # noqa: E402

PARTITIONS = 16  # of the input topics (outputs may have more: topic_partitions)
CRASH_G = 3.0
SAMPLE_S = 0.01


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def h64(data):
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def canonical(key, row):
    # JSON has one number type: 1.0 may come back as 1, so compare numbers as numbers.
    return ("%s|%s|%d|%r|%r|%r" % (key, row["device"], row["ts"], float(row["gX"]),
                                   float(row["gY"]), float(row["gZ"]))).encode()


# ---- the input ---------------------------------------------------------------------

class Input:
    def __init__(self, rows, devices, seed, path):
        self.rows = rows
        self.path = path
        self.raw = 0        # sum of h64(key \t value): what kcat must copy
        self.canon = 0      # sum of h64(canonical row): what the pipelines must cover
        self.crashes = 0
        self.bytes = 0
        with open(path, "w") as f:
            buf = []
            for k, v in gen_rows.rows(rows, devices, PARTITIONS, seed):
                line = k + "\t" + v
                self.raw += h64(line.encode())
                row = json.loads(v)
                self.canon += h64(canonical(k, row))
                x, y, z = row["gX"], row["gY"], row["gZ"]
                self.crashes += math.sqrt(x * x + y * y + z * z) > CRASH_G
                self.bytes += len(v)
                buf.append(line + "\n")
                if len(buf) == 10000:
                    f.write("".join(buf))
                    buf.clear()
            f.write("".join(buf))
        self.raw &= (1 << 64) - 1
        self.canon &= (1 << 64) - 1


def topic_partitions(c, topic):
    """The partition count of topic, from the broker's metadata (c: a Consumer)."""
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise SystemExit("topic %s: no metadata (%s)" % (topic, md.error if md else "unknown"))
    return len(md.partitions)


def watermarks(broker, topic):
    c = Consumer({"bootstrap.servers": broker, "group.id": "luastream-bench-watermarks"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in range(topic_partitions(c, topic))]
    finally:
        c.close()


def produce_input(broker, topic, inp):
    t0 = time.monotonic()
    subprocess.run(["kcat", "-P", "-q", "-b", broker, "-t", topic, "-K", "\t",
                    "-X", "partitioner=murmur2_random", "-l", inp.path], check=True)
    wm = watermarks(broker, topic)
    total = sum(hi - lo for lo, hi in wm)
    if total != inp.rows or any(lo != 0 for lo, _ in wm):
        raise SystemExit("input topic %s holds %d records (watermarks %s), expected %d"
                         % (topic, total, wm, inp.rows))
    log("input: %d rows (%.0f B JSON on average, %d crash rows) produced to %s in %.1f s; "
        "sum of high watermarks = %d, none dropped"
        % (inp.rows, inp.bytes / inp.rows, inp.crashes, topic, time.monotonic() - t0, total))


# ---- running one peer --------------------------------------------------------------

class Monitor:
    """Samples the number of records in a topic (sum of high watermarks)."""

    def __init__(self, broker, topic):
        self.c = Consumer({"bootstrap.servers": broker, "group.id": "luastream-bench-monitor"})
        self.tps = [TopicPartition(topic, p, -1)  # -1: latest
                    for p in range(topic_partitions(self.c, topic))]

    def count(self):
        res = self.c.offsets_for_times(self.tps, timeout=5)
        return sum(max(tp.offset, 0) for tp in res)

    def close(self):
        self.c.close()


def cpu_ticks():
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return sum(t) - t[3] - t[4], sum(t)  # idle and iowait are not busy


def proc_cpu_s(pid):
    """user + system seconds of pid so far (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid):
    """user + system seconds so far of the processes below pid (the peer under
    /usr/bin/time, or a shell pipeline's members), all threads; None once none
    is left."""
    total, found, todo = 0.0, False, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                kids = [int(k) for k in f.read().split()]
            if p != pid:
                total += proc_cpu_s(p)
                found = True
        except (OSError, ValueError, IndexError):  # gone meanwhile
            kids = []
        todo.extend(kids)
    return total if found else None


def steady_span(samples, t_from, t_to):
    """The first and last sample of the span t_from..t_to: the samples inside,
    or the two around it when it falls between two samples; None when there
    are not two."""
    inside = [i for i, (t, _) in enumerate(samples) if t_from <= t <= t_to]
    if len(inside) < 2:
        inside = [i for i, (t, _) in enumerate(samples) if t < t_from][-1:] + \
                 [i for i, (t, _) in enumerate(samples) if t > t_to][:1]
    return (inside[0], inside[-1]) if len(inside) >= 2 else None


def busy_share(samples, ticks, t_from, t_to):
    """The machine's busy share between t_from and t_to (steady_span)."""
    span = steady_span(samples, t_from, t_to)
    if span is None:
        return None
    (b0, a0), (b1, a1) = ticks[span[0]], ticks[span[1]]
    return (b1 - b0) / (a1 - a0) if a1 > a0 else None


def steady_cpu_rate(samples, cpus, t_from, t_to):
    """Outputs per CPU-second of the peer between t_from and t_to: the outputs
    counted at the span's first and last sample (steady_span) over the peer's
    CPU time between them; None when either sample has no CPU reading."""
    span = steady_span(samples, t_from, t_to)
    if span is None or cpus[span[0]] is None or cpus[span[1]] is None:
        return None
    n, cpu = samples[span[1]][1] - samples[span[0]][1], cpus[span[1]] - cpus[span[0]]
    return n / cpu if cpu > 0 and n > 0 else None


def crossing(samples, target):
    """When the count reached target, interpolated between samples."""
    prev_t, prev_n = samples[0]
    for t, n in samples:
        if n >= target:
            if n == prev_n:
                return t
            return prev_t + (target - prev_n) / (n - prev_n) * (t - prev_t)
        prev_t, prev_n = t, n
    return None


class Run:
    busy = None  # see busy_share
    steady_cpu = None  # see steady_cpu_rate


def run_peer(name, cmd, env, broker, topic, rows, workdir, timeout):
    mon = Monitor(broker, topic)
    if mon.count() != 0:
        raise SystemExit("output topic %s is not empty" % topic)
    out = open(os.path.join(workdir, topic + ".log"), "w")
    # The peer runs under /usr/bin/time, a small process, because a process started
    # straight from this (large) one would count this one's memory in its peak RSS.
    timefile = os.path.join(workdir, topic + ".time")
    cmd = ["/usr/bin/time", "-o", timefile, "-f", "%M %U %S"] + cmd
    if os.environ.get("LS_BENCH_PEER_CPU"):  # PIN=1 (broker.sh)
        cmd = ["taskset", "-c", os.environ["LS_BENCH_PEER_CPU"]] + cmd
    t_launch = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    samples = [(t_launch, 0)]
    ticks = [cpu_ticks()]
    cpus = [0.0]  # the peer's CPU seconds at each sample (None after it exited)
    status = rusage = None
    t_exit = None
    try:
        while True:
            if status is None:
                pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status, rusage, t_exit = st, ru, time.monotonic()
                    proc.returncode = os.waitstatus_to_exitcode(st)
            cpu = tree_cpu_s(proc.pid) if status is None else None
            n = mon.count()
            samples.append((time.monotonic(), n))
            ticks.append(cpu_ticks())
            cpus.append(cpu)
            if status is not None and (n >= rows or time.monotonic() - t_exit > 5):
                break
            if time.monotonic() - t_launch > timeout:
                log("%s: no end after %d s, stopping it" % (name, timeout))
                break
            time.sleep(SAMPLE_S)
    finally:
        if status is None:
            status, rusage = stop_group(proc)
            t_exit = time.monotonic()
            proc.returncode = os.waitstatus_to_exitcode(status)
        mon.close()
        out.close()
    with open(os.path.join(workdir, topic + ".samples"), "w") as f:
        f.write("".join("%.4f %d\n" % (t - t_launch, n) for t, n in samples))
    r = Run()
    r.name, r.topic, r.rows = name, topic, rows
    r.rc = proc.returncode
    r.produced = samples[-1][1]
    r.exit_s = t_exit - t_launch
    try:
        with open(timefile) as f:
            rss, utime, stime = f.read().split()[-3:]
        r.rss_kb, r.cpu_s = int(rss), float(utime) + float(stime)
    except (OSError, ValueError):  # stopped by a signal: no report
        r.rss_kb, r.cpu_s = rusage.ru_maxrss, rusage.ru_utime + rusage.ru_stime
    t_first = crossing(samples, 1)
    t10, t90, t_all = (crossing(samples, rows * f) for f in (0.1, 0.9, 1.0))
    r.startup_s = t_first - t_launch if t_first else None
    r.total = rows / (t_all - t_launch) if t_all else None
    r.steady = 0.8 * rows / (t90 - t10) if t10 is not None and t90 is not None and t90 > t10 else None
    r.busy = busy_share(samples, ticks, t10, t90) if r.steady else None
    r.steady_cpu = steady_cpu_rate(samples, cpus, t10, t90) if r.steady else None
    r.log = out.name
    return r


def stop_group(proc):
    """Stops the peer's process group; returns the peer's wait status and rusage."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for _ in range(50):
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
                except ProcessLookupError:
                    pass
                return status, rusage
            time.sleep(0.1)
    _, status, rusage = os.wait4(proc.pid, 0)
    return status, rusage


# ---- checking an output topic ------------------------------------------------------

def read_topic(broker, topic):
    c = Consumer({"bootstrap.servers": broker, "group.id": "luastream-bench-check",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    n = topic_partitions(c, topic)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
    eof = set()
    deadline = time.monotonic() + 120
    try:
        while len(eof) < n and time.monotonic() < deadline:
            for m in c.consume(10000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                yield m.key(), m.value()
    finally:
        c.close()


def median(vals):
    """The median of the values that are not None, or None when none is."""
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def count_problems(broker, r, rows):
    """What every peer's output topic is checked for first: rows records, none
    dropped by the broker, a clean exit. Returns (problems, dropped)."""
    problems = []
    wm = watermarks(broker, r.topic)
    count = sum(hi - lo for lo, hi in wm)
    dropped = sum(lo for lo, _ in wm)
    if dropped:
        problems.append("the broker dropped %d records (per-partition cap); use fewer rows" % dropped)
    if count != rows:
        problems.append("%d records, expected %d" % (count, rows))
    if r.rc != 0:
        problems.append("exit code %s (log: %s)" % (r.rc, r.log))
    return problems, dropped


def log_run(rep, peer, topic, r, ok, failures):
    """One timed run's line (ok: what follows it, e.g. "  output ok"), then its
    problems, which go to failures too."""
    log("run %d %-9s total %s/s  steady %s/s  busy %4s  start-up %5s s  exit after %5.1f s  "
        "CPU %5.1f s  steady %s/CPU-s  peak RSS %6.1f MB%s"
        % (rep, peer, fmt_rate(r.total), fmt_rate(r.steady), fmt_share(r.busy),
           "%.2f" % r.startup_s if r.startup_s is not None else "-", r.exit_s, r.cpu_s,
           fmt_rate(r.steady_cpu), r.rss_kb / 1024, ok))
    for prob in r.problems:
        log("  PROBLEM %s (%s): %s" % (peer, topic, prob))
        failures.append("%s run %d: %s" % (peer, rep, prob))


def print_peers(results, peers, rows):
    """The table of the peers, medians over their runs (a peer with no run:
    "failed"). Returns med(peer, attr), the median of a run attribute."""
    def med(peer, attr):
        return median(getattr(r, attr) for r in results.get(peer, []))

    print("%-10s %13s %14s %6s %10s %6s %11s %19s %10s" % (
        "peer", "msgs/s(total)", "msgs/s(steady)", "busy", "start-up s", "CPU s", "msgs/CPU-s",
        "msgs/CPU-s(steady)", "peak RSS"))
    for peer in peers:
        if not results.get(peer):
            print("%-10s failed" % peer)
            continue
        rss = max(r.rss_kb for r in results[peer]) / 1024
        su, cpu = med(peer, "startup_s"), med(peer, "cpu_s")
        print("%-10s %13s %14s %6s %10s %6.2f %11s %19s %7.1f MB" % (
            peer, fmt_rate(med(peer, "total")).strip(), fmt_rate(med(peer, "steady")).strip(),
            fmt_share(med(peer, "busy")), "%.2f" % su if su is not None else "-", cpu,
            "{:,.0f}".format(rows / cpu) if cpu else "-", fmt_rate(med(peer, "steady_cpu")).strip(), rss))
    return med


def print_ratios(med, subject, goals):
    """subject's rate over each peer's, steady and total, with the goals
    (goals: [(peer, target)]), then in messages per CPU-second."""
    def ratio(attr, x, y):
        u, v = med(x, attr), med(y, attr)
        return "%.2f" % (u / v) if u and v else "-"

    for attr in ("steady", "total"):
        print("ratios (%s):%s %s" % (attr, " " if attr == "total" else "", ", ".join(
            "%s/%s = %s (target >= %s)" % (subject, peer, ratio(attr, subject, peer), target)
            for peer, target in goals)))
    print("ratios (msgs/CPU-s): " + ", ".join(
        "%s/%s = %s" % (subject, peer, ratio("cpu_s", peer, subject)) for peer, _ in goals))
    print("ratios (msgs/CPU-s, steady): " + ", ".join(
        "%s/%s = %s" % (subject, peer, ratio("steady_cpu", subject, peer)) for peer, _ in goals))


def print_per_run(results, peers):
    """Every run's steady rate, per peer."""
    print("per run (steady msgs/s): " + "; ".join(
        "%s %s" % (peer, " ".join(fmt_rate(r.steady).strip() for r in results[peer])) for peer in peers))


def check_output(broker, r, inp, kind):
    """Returns a list of problems (empty when the topic is right)."""
    problems, dropped = count_problems(broker, r, inp.rows)
    if dropped:
        return problems
    digest, crashes, bad, n = 0, 0, 0, 0
    fields = {"device", "ts", "gX", "gY", "gZ", "gTotal", "crash"}
    for key, value in read_topic(broker, r.topic):
        n += 1
        if kind == "raw":
            digest += h64(key + b"\t" + value)
            continue
        row = json.loads(value)
        k = key.decode()
        x, y, z = row["gX"], row["gY"], row["gZ"]
        g = math.sqrt(x * x + y * y + z * z)
        if (set(row) != fields or k != row["device"] or abs(row["gTotal"] - g) > 1e-12 * g
                or row["crash"] is not (row["gTotal"] > CRASH_G)):
            bad += 1
            if bad <= 3:
                problems.append("wrong output: key %s value %s" % (k, value.decode()))
        crashes += row["crash"] is True
        digest += h64(canonical(k, row))
    digest &= (1 << 64) - 1
    if n != inp.rows:
        problems.append("read %d records back, expected %d" % (n, inp.rows))
    if kind == "raw" and digest != inp.raw:
        problems.append("the records differ from the input (keys or values changed)")
    if kind == "rows":
        if digest != inp.canon:
            problems.append("the outputs do not cover every input row exactly once: "
                            + compare_rows(broker, r.topic, inp))
        if crashes != inp.crashes:
            problems.append("%d outputs with crash=true, expected %d" % (crashes, inp.crashes))
        if bad > 3:
            problems.append("%d wrong outputs in all" % bad)
    return problems


def compare_rows(broker, topic, inp):
    """Says which rows are missing or repeated (slow; only after a failed check)."""
    want = collections.Counter()
    with open(inp.path) as f:
        for line in f:
            k, v = line.rstrip("\n").split("\t", 1)
            want[canonical(k, json.loads(v))] += 1
    got = collections.Counter(canonical(k.decode(), json.loads(v)) for k, v in read_topic(broker, topic))
    missing, extra = want - got, got - want
    return "%d input rows missing, %d outputs extra or repeated; e.g. missing %s, extra %s" % (
        sum(missing.values()), sum(extra.values()),
        [m.decode() for m in list(missing)[:3]], [e.decode() for e in list(extra)[:3]])


# ---- the in-process benchmark ------------------------------------------------------

def run_pipeline_bench(path, rows):
    if not path or not os.path.exists(path):
        log("in-process: %s not built, skipped" % path)
        return None, []
    p = subprocess.run([path, "--rows", str(rows)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    lines = p.stdout.strip().splitlines()
    rate = None
    for line in lines:
        if line.startswith("full_rows_per_s "):
            rate = float(line.split()[1])
    if p.returncode != 0 or rate is None:
        log("in-process benchmark failed (exit %d):\n%s" % (p.returncode, p.stdout))
        return None, lines
    return rate, [ln for ln in lines if not ln.startswith("full_rows_per_s")]


# ---- main --------------------------------------------------------------------------

def fmt_share(v):
    return "%.0f%%" % (100 * v) if v is not None else "-"


def fmt_rate(v):
    return "%13s" % ("{:,.0f}".format(v) if v else "-")


def on_term(signum, frame):
    raise KeyboardInterrupt  # unwinds through run_peer, which stops the peer


def main():
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--luastream", required=True)
    ap.add_argument("--bench-pipeline", help="the in-process benchmark binary")
    ap.add_argument("--pipeline-rows", type=int, default=2000000)
    ap.add_argument("--rows", type=int, default=400000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default="kcat,python,luastream")
    ap.add_argument("--ls-args", default="", help="extra arguments for luastream run")
    ap.add_argument("--input", default="phone-data")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--no-check", action="store_true", help="skip reading the outputs back")
    a = ap.parse_args()
    peers = [p for p in a.peers.split(",") if p]
    for p in peers:
        if p not in ("kcat", "python", "luastream"):
            raise SystemExit("unknown peer %s" % p)

    log("load average before the run: %s (the benchmark wants the 2 cores to itself)"
        % " ".join(open("/proc/loadavg").read().split()[:3]))
    inproc, inproc_lines = run_pipeline_bench(a.bench_pipeline, a.pipeline_rows)
    for line in inproc_lines:
        log(line)

    inp = Input(a.rows, a.devices, a.seed, os.path.join(a.workdir, "rows.tsv"))
    produce_input(a.broker, a.input, inp)

    py = "/usr/bin/python3"
    env = dict(os.environ)
    results = {p: [] for p in peers}
    failures = []
    for rep in range(1, a.repeat + 1):
        suffix = "" if rep == 1 else "-%d" % rep
        for peer in peers:
            if peer == "kcat":
                topic = "out-kcat" + suffix
                b = shlex.quote(a.broker)
                cmd = ["sh", "-c",
                       "kcat -C -q -b %s -t %s -o beginning -e -K '\\t' | "
                       "kcat -P -q -b %s -t %s -K '\\t' -X partitioner=murmur2_random"
                       % (b, shlex.quote(a.input), b, shlex.quote(topic))]
                kind, penv = "raw", env
            elif peer == "python":
                topic = "out-py" + suffix
                cmd = [py, os.path.join(HERE, "py_crash.py"), "--broker", a.broker,
                       "--count", str(a.rows), "--input", a.input, "--output", topic,
                       "--group", "bench-py-%d" % rep]
                kind, penv = "rows", env
            else:
                topic = "out-ls" + suffix
                cmd = [a.luastream, "run", os.path.join(HERE, "crash_stateless.lua"),
                       "--broker", a.broker, "--count", str(a.rows), "--quiet",
                       "--name", "bench-ls-%d" % rep] + shlex.split(a.ls_args)
                kind = "rows"
                penv = dict(env, LS_BENCH_INPUT=a.input, LS_BENCH_OUTPUT=topic)
            r = run_peer(peer, cmd, penv, a.broker, topic, a.rows, a.workdir, a.timeout)
            r.problems = [] if a.no_check else check_output(a.broker, r, inp, kind)
            if a.no_check and r.produced != a.rows:
                r.problems = ["%d records, expected %d" % (r.produced, a.rows)]
            results[peer].append(r)
            log_run(rep, peer, topic, r, "" if r.problems or a.no_check else "  output ok", failures)

    sys.stderr.flush()
    print()
    print("%d rows of ~%.0f B JSON, 16 partitions, %d device keys; median of %d runs "
          "(steady: 10%% -> 90%% of the outputs)"
          % (a.rows, inp.bytes / inp.rows, a.devices, a.repeat))
    med = print_peers(results, peers, a.rows)

    def ratio(attr, a_, b_):
        x, y = med(a_, attr), med(b_, attr)
        return "%.2f" % (x / y) if x and y else "-"

    if "luastream" in peers:
        parts = []
        if "kcat" in peers:
            parts.append("luastream/kcat = %s (target >= 0.9)" % ratio("steady", "luastream", "kcat"))
        if "python" in peers:
            parts.append("luastream/python = %s (target >= 2.5)" % ratio("steady", "luastream", "python"))
        print("ratios (steady): " + ", ".join(parts))
        parts = []
        if "kcat" in peers:
            parts.append("luastream/kcat = %s" % ratio("total", "luastream", "kcat"))
        if "python" in peers:
            parts.append("luastream/python = %s" % ratio("total", "luastream", "python"))
        print("ratios (total):  " + ", ".join(parts))
        print("peak RSS of luastream: %.1f MB (target <= 30 MB)"
              % (max(r.rss_kb for r in results["luastream"]) / 1024))
    if inproc:
        print("in-process: {:,.0f} rows/s (target >= 1,000,000)".format(inproc))
    sys.stderr.flush()
    if failures:
        print("FAILED CHECKS:")
        for f in failures:
            print("  " + f)
        return 1
    print("checks: every output topic holds exactly %d records with the expected content"
          % a.rows if not a.no_check else "checks: output counts only (--no-check)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
