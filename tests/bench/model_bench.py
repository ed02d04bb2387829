#!/usr/bin/python3
"""Trained models in the stream: ls.model against XGBoost, and the crash pipeline
with and without a model. See tests/bench/README.md ("Models").

    /usr/bin/python3 tests/bench/model_bench.py [--luastream build/luastream] [--rows N] ...

1. In process, one core. A 100-tree, depth-6 binary:logistic model is trained
   with python3-xgboost on the labelled phone readings of
   examples/crash_model/train.py (features gX, gY, gZ, gTotal). The same
   SCORE_ROWS readings are scored
     - by luastream, `luastream lua tests/bench/model_score.lua`: one
       m:predict call per row, as a pipeline makes them (also the linked
       layout and the ensemble compiled to Lua source, for comparison);
     - by XGBoost's inplace_predict on batches of BATCH rows, nthread = 1;
     - by XGBoost's inplace_predict on one row at a time, as a REST handler
       scoring each request would.
   Each is timed REPEAT times, best run kept. luastream's predictions are
   checked against XGBoost's (1e-6, relative, at least 1).
2. Through the dev broker (throughput.py's method and checks): ROWS phone rows,
   16 partitions; REPEAT runs each of
     plain   luastream run crash_stateless.lua       (gTotal, crash flag)
     model   luastream run model_crash.lua           (the same + p_crash from the model)
   and every output checked (one per input row, p_crash = XGBoost's).
It ends with one table: rows/s side by side and the ratios against the goals.
The working directory (/tmp/luastream-model.*) is deleted unless a check fails
or --keep is given.
"""
import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "examples", "crash_model"))
import throughput as tp  # noqa: E402
from throughput import log  # noqa: E402
import train as crash_train  # noqa: E402  (examples/crash_model/train.py: readings())
from reload_bench import Broker  # noqa: E402

PARTITIONS = tp.PARTITIONS
MODEL_FIELDS = {"device", "ts", "gX", "gY", "gZ", "gTotal", "crash", "p_crash"}


# ---- the model ---------------------------------------------------------------------

def train_model(path, seed):
    rng = np.random.default_rng(seed)
    X, y = crash_train.readings(rng, 200000)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 1,
              "tree_method": "hist"}
    b = xgb.train(params, xgb.DMatrix(X, y, feature_names=crash_train.FEATURES), 100)
    b.save_model(path)
    trees = json.load(open(path))["learner"]["gradient_booster"]["model"]["trees"]
    nodes = sum(int(t["tree_param"]["num_nodes"]) for t in trees)
    b.set_param({"nthread": 1})
    return b, len(trees), nodes


# ---- 1. in process -----------------------------------------------------------------

def in_process(a, work, booster):
    rng = np.random.default_rng(a.seed + 1)
    X, _ = crash_train.readings(rng, a.score_rows)
    X = np.ascontiguousarray(X, dtype="<f8")
    rows_path = os.path.join(work, "score_rows.bin")
    out_path = os.path.join(work, "score_out.bin")
    X.tofile(rows_path)
    r = subprocess.run([a.luastream, "lua", os.path.join(HERE, "model_score.lua"), a.model, rows_path,
                        str(X.shape[1]), out_path, str(a.repeat)],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        raise SystemExit("model_score.lua failed:\n" + r.stdout + r.stderr)
    rates, info = {}, ""
    for line in r.stdout.splitlines():
        name, _, val = line.partition(" ")
        if name == "layouts":
            info = val
        else:
            rates[name] = float(val)
    got = np.fromfile(out_path, dtype="<f8")

    want = booster.inplace_predict(X)
    tol = 1e-6 * np.maximum(1.0, np.abs(want))
    bad = int(np.sum(np.abs(got - want) > tol))
    exact = int(np.sum(got.astype(np.float32) == want))
    log("luastream's predictions: %d of %d within 1e-6 of XGBoost's (%d identical); %s"
        % (len(X) - bad, len(X), exact, info))
    problems = ["%d predictions differ from XGBoost's" % bad] if bad else []

    # XGBoost on batches, one thread (set on the booster).
    best = math.inf
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for i in range(0, len(X), a.batch):
            booster.inplace_predict(X[i:i + a.batch])
        best = min(best, time.perf_counter() - t0)
    rates["xgboost-batch"] = len(X) / best
    # XGBoost on one row per call.
    n = min(len(X), a.per_row)
    best = math.inf
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for i in range(n):
            booster.inplace_predict(X[i:i + 1])
        best = min(best, time.perf_counter() - t0)
    rates["xgboost-per-row"] = n / best
    return rates, problems


# ---- 2. through the dev broker -----------------------------------------------------

def check_model_output(broker, r, inp, booster):
    """One output per input row, each with gTotal, crash and XGBoost's p_crash."""
    problems = []
    wm = tp.watermarks(broker, r.topic)
    count = sum(hi - lo for lo, hi in wm)
    dropped = sum(lo for lo, _ in wm)
    if dropped:
        return ["the broker dropped %d records (per-partition cap); use fewer rows" % dropped]
    if count != inp.rows:
        problems.append("%d records, expected %d" % (count, inp.rows))
    if r.rc != 0:
        problems.append("exit code %s (log: %s)" % (r.rc, r.log))
    digest, bad, rows = 0, 0, []
    for key, value in tp.read_topic(broker, r.topic):
        row = json.loads(value)
        k = key.decode()
        x, y, z = row["gX"], row["gY"], row["gZ"]
        g = math.sqrt(x * x + y * y + z * z)
        if (set(row) != MODEL_FIELDS or k != row["device"] or abs(row["gTotal"] - g) > 1e-12 * g
                or row["crash"] is not (row["gTotal"] > tp.CRASH_G)):
            bad += 1
            if bad <= 3:
                problems.append("wrong output: key %s value %s" % (k, value.decode()))
        rows.append((row["gX"], row["gY"], row["gZ"], row["gTotal"], row["p_crash"]))
        digest += tp.h64(tp.canonical(k, row))
    digest &= (1 << 64) - 1
    if len(rows) != inp.rows:
        problems.append("read %d records back, expected %d" % (len(rows), inp.rows))
    if digest != inp.canon:
        problems.append("the outputs do not cover every input row exactly once")
    if rows:
        arr = np.array(rows)
        want = booster.inplace_predict(arr[:, :4])
        off = int(np.sum(np.abs(arr[:, 4] - want) > 1e-6 * np.maximum(1.0, np.abs(want))))
        if off:
            problems.append("%d outputs with a p_crash other than XGBoost's" % off)
    if bad > 3:
        problems.append("%d wrong outputs in all" % bad)
    return problems


def pipelines(a, broker, work, booster):
    inp = tp.Input(a.rows, a.devices, a.seed, os.path.join(work, "rows.tsv"))
    tp.produce_input(broker, "phone-data", inp)
    results = {"plain": [], "model": []}
    failures = []
    env = dict(os.environ)
    for rep in range(1, a.repeat + 1):
        s = "" if rep == 1 else "-%d" % rep
        for peer in ("plain", "model"):
            topic = "out-%s%s" % (peer, s)
            script = "crash_stateless.lua" if peer == "plain" else "model_crash.lua"
            cmd = [a.luastream, "run", os.path.join(HERE, script), "--broker", broker, "--count", str(a.rows),
                   "--quiet", "--name", "bench-%s%s" % (peer, s)] + shlex.split(a.ls_args)
            penv = dict(env, LS_BENCH_INPUT="phone-data", LS_BENCH_OUTPUT=topic, LS_BENCH_MODEL=a.model)
            r = tp.run_peer(peer, cmd, penv, broker, topic, a.rows, work, a.timeout)
            if a.no_check:
                r.problems = [] if r.produced == a.rows else ["%d records, expected %d" % (r.produced, a.rows)]
            elif peer == "plain":
                r.problems = tp.check_output(broker, r, inp, "rows")
            else:
                r.problems = check_model_output(broker, r, inp, booster)
            results[peer].append(r)
            log("run %d %-5s total %s/s  steady %s/s  start-up %5s s  CPU %5.1f s  peak RSS %6.1f MB%s"
                % (rep, peer, tp.fmt_rate(r.total), tp.fmt_rate(r.steady),
                   "%.2f" % r.startup_s if r.startup_s is not None else "-", r.cpu_s, r.rss_kb / 1024,
                   "" if r.problems or a.no_check else "  output ok"))
            for prob in r.problems:
                log("  PROBLEM %s (%s): %s" % (peer, topic, prob))
                failures.append("%s run %d: %s" % (peer, rep, prob))
    return inp, results, failures


def on_term(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, on_term)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--luastream", default=os.path.join(ROOT, "build", "luastream"))
    ap.add_argument("--rows", type=int, default=300000, help="phone rows through the dev broker")
    ap.add_argument("--score-rows", type=int, default=100000, help="rows scored in process")
    ap.add_argument("--batch", type=int, default=1000, help="XGBoost's batch size")
    ap.add_argument("--per-row", type=int, default=5000, help="rows scored one per call by XGBoost")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (best in process, medians through the broker)")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--parts", default="inproc,pipeline")
    ap.add_argument("--ls-args", default="", help="extra arguments for luastream run")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--no-check", action="store_true", help="check output counts only")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    a = ap.parse_args()
    a.luastream = os.path.abspath(a.luastream)
    parts = [p for p in a.parts.split(",") if p]
    for p in parts:
        if p not in ("inproc", "pipeline"):
            raise SystemExit("unknown part %s" % p)
    if not os.access(a.luastream, os.X_OK):
        raise SystemExit("%s is not built" % a.luastream)
    if "pipeline" in parts and not shutil.which("kcat"):
        raise SystemExit("kcat is missing (scripts/install-deps.sh bench)")

    load = " ".join(open("/proc/loadavg").read().split()[:3])
    log("load average before the run: %s (the benchmark wants the 2 cores to itself)" % load)
    work = tempfile.mkdtemp(prefix="luastream-model.")
    a.model = os.path.join(work, "crash100.json")
    t0 = time.monotonic()
    booster, ntrees, nodes = train_model(a.model, a.seed)
    log("model: %d trees, %d nodes, max_depth 6, trained in %.1f s (%s)"
        % (ntrees, nodes, time.monotonic() - t0, a.model))

    failures = []
    rates = None
    results = inp = None
    broker = None
    try:
        if "inproc" in parts:
            rates, probs = in_process(a, work, booster)
            failures += probs
        if "pipeline" in parts:
            topics = [("phone-data", PARTITIONS)]
            for rep in range(1, a.repeat + 1):
                s = "" if rep == 1 else "-%d" % rep
                topics += [("out-plain" + s, PARTITIONS), ("out-model" + s, PARTITIONS)]
            broker = Broker(a.luastream, topics, work)
            log("dev broker: %s (pid %d); working directory %s" % (broker.address, broker.proc.pid, work))
            inp, results, fails = pipelines(a, broker.address, work, booster)
            failures += fails
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
    print("trained models in the stream; %s; load average %s before, %s after"
          % ("2 cores" if os.cpu_count() == 2 else "%d cores" % os.cpu_count(), load,
             " ".join(open("/proc/loadavg").read().split()[:3])))
    if rates:
        print("1. in process, one core: %d-tree depth-6 binary:logistic model (%d nodes), 4 features, %d rows, "
              "best of %d" % (ntrees, nodes, a.score_rows, a.repeat))
        rows = [("luastream m:predict, one call per row", "predict"),
                ("  the same, linked layout", "predict-linked"),
                ("  the ensemble as Lua source", "lua-source"),
                ("XGBoost inplace_predict, batches of %d, 1 thread" % a.batch, "xgboost-batch"),
                ("XGBoost inplace_predict, one row per call", "xgboost-per-row")]
        for label, key in rows:
            print("   %-52s %13s rows/s" % (label, tp.fmt_rate(rates.get(key)).strip()))
        ls_rate = rates["predict"]
        print("   luastream / XGBoost batches  = %6.2f  (goal >= 2)" % (ls_rate / rates["xgboost-batch"]))
        print("   luastream / XGBoost per row  = %6.0f  (goal >= 20)" % (ls_rate / rates["xgboost-per-row"]))
        print("   C kernel / Lua source        = %6.1f  (why the kernel is in C)" % (ls_rate / rates["lua-source"]))
    if results:
        def med(peer, attr):
            vals = [getattr(r, attr) for r in results[peer] if getattr(r, attr) is not None]
            return statistics.median(vals) if vals else None
        print("2. through the dev broker: %d rows of ~%.0f B JSON, 16 partitions, %d device keys; median of %d runs"
              % (a.rows, inp.bytes / inp.rows, a.devices, a.repeat))
        print("   %-6s %14s %14s %8s %12s %10s" % ("peer", "msgs/s(total)", "msgs/s(steady)", "CPU s", "msgs/CPU-s",
                                                   "peak RSS"))
        for peer in ("plain", "model"):
            cpu = med(peer, "cpu_s")
            rss = max(r.rss_kb for r in results[peer]) / 1024
            print("   %-6s %14s %14s %8.2f %12s %7.1f MB" % (peer, tp.fmt_rate(med(peer, "total")).strip(),
                                                              tp.fmt_rate(med(peer, "steady")).strip(), cpu,
                                                              tp.fmt_rate(a.rows / cpu).strip(), rss))
        sm, sp = med("model", "steady"), med("plain", "steady")
        tm, tpl = med("model", "total"), med("plain", "total")
        if sm and sp:
            print("   model / plain (steady) = %.2f  (goal >= 0.5); (total) = %.2f; CPU per message %.2f x"
                  % (sm / sp, tm / tpl if tm and tpl else float("nan"),
                     med("model", "cpu_s") / med("plain", "cpu_s")))
    if failures:
        print("checks FAILED:")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print("checks: predictions within 1e-6 of XGBoost's%s" % (
        "; every output topic holds one record per input row, p_crash as XGBoost scores it" if results else ""))


if __name__ == "__main__":
    main()
