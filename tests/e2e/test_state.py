"""Per-key state: exact counts across clean restarts, crashes, a lost state
directory, a crashed group member, a state dir that cannot be created, an
LMDB write that fails mid-run (file size limit), and keyless records.

scripts/state_count.lua counts per message key: every input {"x": i} keyed
"k<i % 20>" becomes {key, x, n, sum}, where n and sum are the count and the
sum of x of that key so far (kept with state:get/state:set in the store
"counts", changelog topic <app>__counts__changelog). With E2E_RUN set, every
output also carries that label as "run".

The reference for a key is the list of its input x values: its last output
must say n == len(list) and sum == sum(list), whatever happened in between.
Records are partitioned by key (librdkafka's consistent_random partitioner,
used by both the test producer and the runtime), so one key lives in one
partition of "in" and of "out", and "the last output of a key" is the one with
the highest offset in its partition of "out".
"""

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict

from confluent_kafka import Producer

from conftest import (LUASTREAM, SCRIPTS, committed, end_offsets, jloads, line_of, produce, read_all,
                      run_cli, wait_committed_to_end, wait_until)

SCRIPT = SCRIPTS / "state_count.lua"
IN, OUT = "in", "out"
PARTS = 4
KEYS = 20


def changelog(app):
    return f"{app}__counts__changelog"


def topics(*apps):
    t = {IN: PARTS, OUT: PARTS}
    for a in apps:
        t[changelog(a)] = PARTS
    return t


def rows(first, n):
    """Inputs x = first..first+n-1, keyed k<x % KEYS>, partitioned by key."""
    return [(f"k{i % KEYS}".encode(), json.dumps({"x": i}).encode(), None)
            for i in range(first, first + n)]


def env(run=None, commit_interval=None):
    e = {}
    if run is not None:
        e["E2E_RUN"] = str(run)
    if commit_interval is not None:
        e["E2E_COMMIT_INTERVAL"] = str(commit_interval)
    return e


def reference(addr):
    """{key: [x...]} of every input on IN."""
    ref = defaultdict(list)
    for r in read_all(addr, IN):
        if r.key is None:
            continue
        ref[r.key.decode()].append(jloads(r.value)["x"])
    return ref


def outputs(addr):
    """[(partition, offset, value)] of OUT in (partition, offset) order; checks
    that every output is keyed like its input and carries that key."""
    out = []
    for r in read_all(addr, OUT):
        v = jloads(r.value)
        assert {"key", "x", "n", "sum"} <= set(v) <= {"key", "x", "n", "sum", "run"}, v
        assert r.key is not None and v["key"] == r.key.decode(), (r.key, v)
        assert v["key"] == f"k{v['x'] % KEYS}", v
        out.append((r.partition, r.offset, v))
    return out


def last_per_key(outs):
    last = {}
    for _, _, v in outs:  # sorted by (partition, offset); a key has one partition
        last[v["key"]] = v
    return last


def check_final_state(addr, outs=None):
    """The last output of every key has the exact count and sum of its inputs;
    every input x has at least one output. Returns (reference, outputs)."""
    ref = reference(addr)
    outs = outputs(addr) if outs is None else outs
    assert len({p for p, _, _ in outs}) > 1, "all keys landed in one partition"
    last = last_per_key(outs)
    assert set(last) == set(ref), (sorted(last), sorted(ref))
    wrong = {k: (last[k]["n"], last[k]["sum"], len(xs), sum(xs))
             for k, xs in ref.items() if (last[k]["n"], last[k]["sum"]) != (len(xs), sum(xs))}
    assert not wrong, f"key: (last n, last sum, expected n, expected sum): {wrong}"
    missing = {x for xs in ref.values() for x in xs} - {v["x"] for _, _, v in outs}
    assert not missing, f"{len(missing)} inputs without output, e.g. {sorted(missing)[:10]}"
    return ref, outs


def check_exactly_once(ref, outs):
    """Every input has exactly one output, and each key's outputs count 1, 2, ...
    with running sums, in input order."""
    xs = Counter(v["x"] for _, _, v in outs)
    assert xs == Counter(x for l in ref.values() for x in l), "outputs are not exactly once"
    by_key = defaultdict(list)
    for _, _, v in outs:
        by_key[v["key"]].append(v)
    for k, vs in by_key.items():
        assert [v["x"] for v in vs] == ref[k], k
        assert [v["n"] for v in vs] == list(range(1, len(vs) + 1)), k
        sums, s = [], 0
        for x in ref[k]:
            s += x
            sums.append(s)
        assert [v["sum"] for v in vs] == sums, k


class SteadyProducer(threading.Thread):
    """Produces x = first, first+1, ... at about rate records/s until stop()."""

    def __init__(self, addr, first=0, rate=200):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": addr, "linger.ms": 5})
        self.next_x, self.rate = first, rate
        self._halt = threading.Event()

    def run(self):
        batch = max(1, self.rate // 50)
        while not self._halt.is_set():
            for key, value, _ in rows(self.next_x, batch):
                self.p.produce(IN, value=value, key=key)
            self.next_x += batch
            self.p.poll(0)
            time.sleep(0.02)
        assert self.p.flush(30) == 0

    def stop(self):
        self._halt.set()
        self.join(40)
        return self.next_x


def replayed(stderr):
    """[(store, partition, seen, applied)] of the 'replayed N changelog records' lines."""
    return [(s, int(p), int(n), int(a)) for s, p, n, a in re.findall(
        r"state (\w+)\[(\d+)\]: replayed (\d+) changelog records \((\d+) applied\)", stderr)]


def n_outputs(addr):
    return sum(end_offsets(addr, OUT).values())


# --------------------------------------------------------------------------


def test_clean_restarts_keep_exact_counts_and_outputs_exactly_once(broker_factory, run_app,
                                                                   tmp_path):
    """1000 inputs, run, SIGTERM (exit 0); 1000 more, run again (same state dir);
    1000 more, run a third time: every input has exactly one output, and each
    key's outputs count 1..n with running sums, so the last output of every key
    has its exact count and sum."""
    app_name = "st-clean"
    broker = broker_factory(topics(app_name))
    state = tmp_path / "state-clean"
    for run in range(3):
        produce(broker.addr, IN, rows(run * 1000, 1000))
        app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state),
                      "--set", "commit_interval=0.5")
        wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
        assert app.stop() == 0, app.stderr()
        n_in, n_out, skipped, dead = app.stats()
        assert (n_in, n_out, skipped, dead) == (1000, 1000, 0, 0), app.stderr()
        assert not re.search(r"^\S+ (warn|error)", app.stderr(), re.M), app.stderr()
    assert (state / app_name / "data.mdb").exists()
    ref, outs = check_final_state(broker.addr)
    check_exactly_once(ref, outs)
    assert len(outs) == 3000


def test_sigkill_at_random_points_keeps_state_exactly_once(broker_factory, run_app, tmp_path):
    """While inputs keep arriving, the app is killed with SIGKILL 3 times at random
    points (seeded) and restarted; a final run drains the input. Runs 0, 1 and
    the final one use state dir A (a restart in place), run 2 uses state dir B
    (a restart on another machine): run 2 rebuilds its state from the whole
    changelog and the final run replays it from A's stale mark on. The last
    output of every key has the exact count and sum of its inputs (state
    exactly once); every input has at least one output."""
    seed = int(os.environ.get("E2E_SEED", "20240611"))
    print(f"kill seed: {seed} (set E2E_SEED to change it)")
    rnd = random.Random(seed)
    app_name = "st-kill"
    broker = broker_factory(topics(app_name))
    dirs = [tmp_path / "state-kill-a", tmp_path / "state-kill-a", tmp_path / "state-kill-b"]
    produce(broker.addr, IN, rows(0, 500))
    feeder = SteadyProducer(broker.addr, first=500, rate=150)
    feeder.start()
    kills = []
    try:
        for run in range(3):
            before = n_outputs(broker.addr)
            app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                          str(dirs[run]), "--set", "commit_interval=0.5", env=env(run))
            # Working: it has partitions and writes outputs (after a kill, the
            # dead member's session must time out first).
            wait_until(lambda: n_outputs(broker.addr) > before + 50, 40,
                       "outputs of the new run", interval=0.1, app=app)
            delay = rnd.uniform(0.2, 2.5)
            time.sleep(delay)
            assert app.proc.poll() is None, app.stderr()
            app.stop(sig=signal.SIGKILL)
            if run == 2:
                assert replayed(app.stderr()), app.stderr()
            kills.append((round(delay, 2), committed(broker.addr, app_name, IN)))
    finally:
        total = feeder.stop()
    print(f"kills (delay s, committed offsets): {kills}")
    final = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(dirs[0]),
                    "--set", "commit_interval=0.5", env=env("final"))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=final)
    assert final.stop() == 0, final.stderr()
    assert replayed(final.stderr()), final.stderr()
    ref, outs = check_final_state(broker.addr)
    assert sum(len(v) for v in ref.values()) == total
    # Outputs repeated after a kill carry the same n and sum as the first time:
    # the state each reprocessed input saw was the one before it, not a count
    # that already included it.
    seen = {}
    for _, _, v in outs:
        prev = seen.setdefault(v["x"], (v["n"], v["sum"]))
        assert prev == (v["n"], v["sum"]), (v, prev)


def test_deleted_state_dir_is_rebuilt_from_the_changelog(broker_factory, run_app, tmp_path):
    """1500 inputs, run, SIGTERM; rm -rf the state dir; 1500 more, run again: the
    second run replays every changelog record (it says so on stderr, per
    partition) and the counts continue exactly; every input has one output."""
    app_name = "st-lost"
    broker = broker_factory(topics(app_name))
    state = tmp_path / "state-lost"
    produce(broker.addr, IN, rows(0, 1500))
    app1 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app1)
    assert app1.stop() == 0, app1.stderr()
    assert (state / app_name).is_dir()
    shutil.rmtree(state)
    log_end = end_offsets(broker.addr, changelog(app_name))
    assert sum(log_end.values()) >= 2 * KEYS, log_end  # n and sum of every key

    produce(broker.addr, IN, rows(1500, 1500))
    app2 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app2)
    assert app2.stop() == 0, app2.stderr()
    err = app2.stderr()
    got = replayed(err)
    assert {(p, n, a) for s, p, n, a in got} == \
        {(p, log_end[p], log_end[p]) for p in range(PARTS) if log_end[p] > 0}, err
    assert all(s == "counts" for s, *_ in got), got
    ref, outs = check_final_state(broker.addr)
    check_exactly_once(ref, outs)


def test_survivor_takes_over_a_killed_members_partitions(broker_factory, run_app, tmp_path):
    """Two instances of one app (own state dirs) share the input; one is killed
    with SIGKILL mid-stream; the other gets all partitions once the dead
    member's session times out, restores their state from the changelog,
    drains the input: exact counts for every key, every input output."""
    app_name = "st-pair"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 400))
    feeder = SteadyProducer(broker.addr, first=400, rate=150)
    feeder.start()
    try:
        a = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                    str(tmp_path / "state-a"), "--set", "commit_interval=0.5", env=env("a"))
        b = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                    str(tmp_path / "state-b"), "--set", "commit_interval=0.5", env=env("b"))

        def both_working():
            runs = Counter(v.get("run") for _, _, v in outputs(broker.addr))
            return runs["a"] > 20 and runs["b"] > 20
        wait_until(both_working, 45, "both instances to write outputs", interval=0.3, app=b)
        time.sleep(1.0)
        a.stop(sig=signal.SIGKILL)
        killed_at = end_offsets(broker.addr, OUT)

        # The survivor takes over: after the kill it writes outputs for every key.
        def b_has_all_keys():
            keys = {v["key"] for p, o, v in outputs(broker.addr)
                    if o >= killed_at[p] and v.get("run") == "b"}
            return len(keys) == KEYS
        wait_until(b_has_all_keys, 45, "the survivor to process every key", interval=0.5,
                   app=b)
    finally:
        feeder.stop()
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=b)
    assert b.stop() == 0, b.stderr()
    assert replayed(b.stderr()), "the survivor restored nothing from the changelog"
    check_final_state(broker.addr)


def test_state_dir_that_cannot_be_created_fails_at_start(broker_factory, tmp_path):
    """--state-dir under a regular file: exit code 1 at start, with an error that
    says it is about the state and names the directory."""
    broker = broker_factory(topics("st-nodir"))
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory\n")
    bad = blocker / "state"
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--name", "st-nodir",
                "--state-dir", str(bad), timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "state" in r.stderr.lower() and str(blocker) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "stopped:" not in r.stderr, r.stderr
    assert read_all(broker.addr, OUT) == []


def test_record_without_key_is_handled_by_on_error(broker_factory, run_app):
    """A keyless record in a stateful pipeline, with on_error=skip: skipped with a
    warning naming the step's script file:line and the record's
    topic[partition]@offset; the keyed records around it are counted exactly."""
    app_name = "st-nokey"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 200))
    [(p, o)] = produce(broker.addr, IN, [(None, json.dumps({"x": 10**6}).encode(), None, 1)])
    produce(broker.addr, IN, rows(200, 200))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--set", "on_error=skip")
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    err = app.stderr()
    assert app.stats() == (401, 400, 1, 0), err
    warn = [l for l in err.splitlines() if "skipped" in l and "stopped:" not in l]
    assert len(warn) == 1, err
    step_line = line_of(SCRIPT, "sdf = sdf:update(")
    assert f"state_count.lua:{step_line}" in warn[0], warn[0]
    assert f"{IN}[{p}]@{o}" in warn[0], warn[0]
    assert "key" in warn[0], warn[0]
    outs = outputs(broker.addr)
    assert 10**6 not in {v["x"] for _, _, v in outs}
    check_exactly_once(reference(broker.addr), outs)


def _limit_file_size(limit):
    def pre():
        # Writes past `limit` bytes fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_failing_state_write_stops_with_exit_1_and_a_restart_restores(broker_factory,
                                                                      run_app, tmp_path):
    """LMDB cannot grow its data file mid-run (RLIMIT_FSIZE 256 KiB, 30000 keys):
    the checkpoint's LMDB commit fails, the app stops with exit 1 and a "state"
    error. A restart without the limit, same state dir, restores the state
    from the changelog: 1000 of the keys get a second input and their outputs
    say n == 2 and sum == both inputs."""
    app_name = "st-full"
    broker = broker_factory(topics(app_name))
    keyed = [(f"key{i}".encode(), json.dumps({"x": i}).encode(), None) for i in range(30000)]
    produce(broker.addr, IN, keyed)
    state = tmp_path / "state-full"
    r = subprocess.run([LUASTREAM, "run", str(SCRIPT), "--broker", broker.addr, "--name",
                        app_name, "--state-dir", str(state), "--set", "commit_interval=0.5"],
                       capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
                       preexec_fn=_limit_file_size(256 * 1024))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"^\S+ error +state: .+", r.stderr, re.M), r.stderr
    assert (state / app_name / "data.mdb").stat().st_size <= 256 * 1024

    more = [(f"key{i}".encode(), json.dumps({"x": 100000 + i}).encode(), None)
            for i in range(1000)]
    produce(broker.addr, IN, more)
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    assert replayed(app.stderr()), app.stderr()
    last = {}
    for rec in read_all(broker.addr, OUT):
        v = jloads(rec.value)
        last[v["key"]] = v
    assert len(last) == 30000
    wrong = [v for k, v in last.items()
             if (v["n"], v["sum"]) != ((2, 100000 + 2 * int(k[3:])) if int(k[3:]) < 1000
                                       else (1, int(k[3:])))]
    assert not wrong, wrong[:5]
