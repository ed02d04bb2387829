"""Crash consistency: SIGKILL inside LMDB commits and changelog produces, in a loop.

scripts/state_count.lua (see test_state.py) counts the messages of each key
and sums their x, with a checkpoint every 20 messages (commit_every), while a
steady stream (400 rows/s, 20 keys) keeps arriving. APPS apps (each its own
consumer group, output topic, changelog and state directory) run at once,
each through CYCLES runs that all end in SIGKILL, in turn:

  lmdb       killed by crash_shim.c (LD_PRELOAD) inside a write transaction's
             commit: before or after one of liblmdb's pwrite, writev or
             fdatasync calls (dirty pages, meta page, their syncs), the
             LS_CRASH_AFTER-th such call of the run (random);
  changelog  killed by the shim while a checkpoint produces its changes (at
             the N-th changelog record's header, some of its records queued,
             the rest not) or waits for their acknowledgements (the flush);
  timer      killed by the test at a random time 0.1-1.0 s after the
             partitions were assigned (a run the shim did not kill within 5 s
             is killed this way too).

A short session timeout (3.5 s) lets each restart get its partitions back
within ~6 s. Every run must start (its LMDB opens, its state restores) and
die only by SIGKILL. Then one clean run per app drains the input and stops:
every input has an output, each key's last output carries its exact count and
sum, and LMDB holds exactly those (luastream state list --values).

Knobs: LS_CRASH_CYCLES (runs per app, default 9), LS_CRASH_APPS (default 6),
LS_CRASH_SEED (default 20261203). The default is 54 kills; the whole test takes
about 80 s. A longer run: LS_CRASH_CYCLES=60 (360 kills).
"""

import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict

from conftest import App, E2E_DIR, jloads, produce, read_all, run_cli, wait_committed_to_end
from test_state import IN, KEYS, SCRIPT, SteadyProducer, rows

CYCLES = int(os.environ.get("LS_CRASH_CYCLES", "9"))
APPS = int(os.environ.get("LS_CRASH_APPS", "6"))
SEED = int(os.environ.get("LS_CRASH_SEED", "20261203"))
MODES = ("lmdb", "changelog", "timer")


def build_shim(tmp_path):
    cc = shutil.which("cc")
    assert cc, "a C compiler (cc) is needed to build crash_shim.c"
    out = tmp_path / "crash_shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(E2E_DIR / "crash_shim.c"), "-ldl"],
                   check=True, capture_output=True)
    return out


def cycles(started, addr, j, name, work, shim, kills, failures, lock):
    """CYCLES runs of app j, each ending in SIGKILL; kills[kind] counts them.
    Each run has a working directory of its own (its stderr), the app its state
    directory work/state."""
    rnd = random.Random(SEED + j)
    out = f"out-{name}"
    for cycle in range(CYCLES):
        mode = MODES[(cycle + j) % 3]
        env = {"E2E_OUT": out, "E2E_RUN": str(cycle)}
        if mode != "timer":
            env.update(LD_PRELOAD=str(shim), LS_CRASH_AT=mode,
                       LS_CRASH_AFTER=str(rnd.randint(0, 40 if mode == "lmdb" else 200)))
        run = App(work / f"run{cycle}", SCRIPT, addr,
                  ("--name", name, "--state-dir", str(work / "state"), "--set", "commit_every=20",
                   "--set", "kafka.consumer.session.timeout.ms=3500",
                   "--set", "kafka.consumer.heartbeat.interval.ms=1000"), env)
        with lock:
            started.append(run)
        deadline = time.monotonic() + 30
        while "partitions assigned" not in run.stderr() and run.proc.poll() is None:
            if time.monotonic() > deadline:
                failures.append(f"{name} run {cycle}: no assignment in 30 s\n{run.stderr()}")
                run.kill()
                return
            time.sleep(0.05)
        if mode == "timer":
            time.sleep(rnd.uniform(0.1, 1.0))
        else:
            t = time.monotonic()
            while run.proc.poll() is None and time.monotonic() - t < 5:
                time.sleep(0.05)
        run.kill()
        err = run.stderr()
        if run.proc.returncode != -9:
            failures.append(f"{name} run {cycle} ({mode}) exited with {run.proc.returncode}\n{err}")
            return
        m = re.search(r"^crash-shim: SIGKILL in (\w+)", err, re.M)
        with lock:
            kills[("lmdb" if m.group(1) == "lmdb" else "changelog") if m else "timer"] += 1
        bad = [l for l in err.splitlines() if re.match(r"^\S+ error ", l)]
        if bad:
            failures.append(f"{name} run {cycle} ({mode}) logged errors: {bad}")
            return


def test_sigkill_in_lmdb_commits_and_changelog_produces_keeps_exact_state(broker_factory, run_app,
                                                                         tmp_path):
    names = [f"crash-{j}" for j in range(APPS)]
    topics = {IN: 4}
    for n in names:
        topics[f"out-{n}"] = 4
        topics[f"{n}__counts__changelog"] = 4
    broker = broker_factory(topics)
    shim = build_shim(tmp_path)
    produce(broker.addr, IN, rows(0, 2000))
    stream = SteadyProducer(broker.addr, first=2000, rate=400)
    stream.start()
    kills, failures, lock, started = defaultdict(int), [], threading.Lock(), []
    t0 = time.monotonic()
    try:
        threads = [threading.Thread(target=cycles, args=(started, broker.addr, j, n, tmp_path / n, shim, kills,
                                                         failures, lock))
                   for j, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    finally:
        for run in started:
            run.kill()
        last = stream.stop()
    assert not failures, f"seed {SEED}: " + "\n\n".join(failures)
    took = time.monotonic() - t0
    total = sum(kills.values())
    assert total == APPS * CYCLES, dict(kills)
    assert kills["lmdb"] >= APPS * CYCLES // 6 and kills["changelog"] >= APPS * CYCLES // 6, dict(kills)

    # one clean run per app drains the input
    finals = [run_app(SCRIPT, broker.addr, "--name", n, "--state-dir", str(tmp_path / n / "state"),
                      env={"E2E_OUT": f"out-{n}", "E2E_RUN": "final"}) for n in names]
    for n, app in zip(names, finals):
        wait_committed_to_end(broker.addr, n, IN, 90, app=app)
    for app in finals:
        assert app.stop() == 0, app.stderr()

    want = defaultdict(lambda: [0, 0])
    for r in read_all(broker.addr, IN):
        x = jloads(r.value)["x"]
        want[r.key.decode()][0] += 1
        want[r.key.decode()][1] += x
    assert sum(n for n, _ in want.values()) == last and len(want) == KEYS
    for n in names:
        outs = read_all(broker.addr, f"out-{n}")
        assert {jloads(r.value)["x"] for r in outs} == set(range(last)), n
        final = {}
        for r in outs:  # (partition, offset) order; a key lives in one partition
            v = jloads(r.value)
            final[v["key"]] = [v["n"], v["sum"]]
        assert final == dict(want), f"{n} (seed {SEED}): outputs disagree with the inputs"
        listed = run_cli("state", "list", str(tmp_path / n / "state" / n), "counts", "--values")
        assert listed.returncode == 0, listed.stderr
        stored = defaultdict(dict)
        for line in listed.stdout.splitlines():
            _store, _part, key, value = line.split("\t")
            stored[key] = json.loads(value)
        assert {k: [v["n"], v["sum"]] for k, v in stored.items()} == dict(want), f"{n}: LMDB disagrees"
    print(f"{total} kills ({dict(kills)}) in {took:.0f} s, seed {SEED}")
