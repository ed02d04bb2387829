"""Delivery: clean stop under load, and at-least-once across restarts.

scripts/tagged_passthrough.lua writes one output per input, tagged with the input's
partition and offset and with a run label, so every output can be traced to its
input and to the process that wrote it. Inputs carry headers, which outputs keep.
"""

import json
import signal
import threading
import time
from collections import Counter

from confluent_kafka import Producer

from conftest import (SCRIPTS, committed, end_offsets, jloads, produce, read_all,
                      wait_committed_to_end, wait_count, wait_until)

SCRIPT = SCRIPTS / "tagged_passthrough.lua"
IN, OUT = "pt-in", "pt-out"
PARTS = 4


def env(run, commit_interval=1):
    return {"E2E_IN": IN, "E2E_OUT": OUT, "E2E_RUN": str(run),
            "E2E_COMMIT_INTERVAL": str(commit_interval)}


def headers(i):
    return [("src", b"e2e"), ("n", str(i).encode()), ("src", b"again")]


def rows(first, n):
    """n input records with ids first..first+n-1, spread over the partitions."""
    return [(f"k{i % 37}".encode(), json.dumps({"id": i}).encode(), headers(i), i % PARTS)
            for i in range(first, first + n)]


class SteadyProducer(threading.Thread):
    """Produces ids from `first` on, ~rate records/s, until stop()."""

    def __init__(self, addr, first=0, rate=400):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": addr, "linger.ms": 5})
        self.next_id, self.rate = first, rate
        self._halt = threading.Event()

    def run(self):
        batch = max(1, self.rate // 50)
        while not self._halt.is_set():
            for key, value, hdrs, part in rows(self.next_id, batch):
                self.p.produce(IN, value=value, key=key, partition=part, headers=hdrs)
            self.next_id += batch
            self.p.poll(0)
            time.sleep(0.02)
        assert self.p.flush(30) == 0

    def stop(self):
        self._halt.set()
        self.join(40)
        return self.next_id


def inputs_by_position(addr):
    return {(r.partition, r.offset): r for r in read_all(addr, IN)}


def outputs(addr):
    """[(partition, offset, run, id, key)] of every output record; checks that each
    output carries its input's headers, in order, repeats included."""
    out = []
    for r in read_all(addr, OUT):
        v = jloads(r.value)
        assert set(v) == {"id", "partition", "offset", "run", "key", "nh"}, v
        assert r.headers == headers(v["id"]), (v, r.headers)
        assert v["key"] == r.key.decode() and v["nh"] == len(headers(v["id"])), v
        out.append((v["partition"], v["offset"], v["run"], v["id"], r.key))
    return out


def check_matches_inputs(outs, ins):
    """Every output carries its input's id and key."""
    for p, o, _, i, key in outs:
        src = ins[(p, o)]
        assert jloads(src.value)["id"] == i and src.key == key, (p, o, i, key)


def test_sigterm_under_load_exits_0_and_commits_exactly_what_was_output(
        broker_factory, run_app):
    """While records keep arriving, SIGTERM stops the app with exit 0 within a few
    seconds; committed offsets then cover exactly the inputs that have an output
    (each exactly one), and the summary's counts agree."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    feeder = SteadyProducer(broker.addr)
    feeder.start()
    try:
        app = run_app(SCRIPT, broker.addr, "--name", "clean-stop", env=env(1))
        wait_count(broker.addr, OUT, 600, 60, app=app)
        rc = app.stop()
    finally:
        feeder.stop()
    assert rc == 0, app.stderr()
    assert app.stop_seconds < 5, f"stopping took {app.stop_seconds:.1f} s"

    commits = committed(broker.addr, "clean-stop", IN)
    outs = outputs(broker.addr)
    assert not [k for k, c in Counter((p, o) for p, o, *_ in outs).items() if c > 1]
    for p in range(PARTS):
        got = sorted(o for q, o, *_ in outs if q == p)
        assert commits[p] > 0, commits
        assert got == list(range(commits[p])), f"partition {p}: committed {commits[p]}"
    check_matches_inputs(outs, inputs_by_position(broker.addr))
    n_in, n_out, skipped, dead = app.stats()
    assert n_out == len(outs) and n_in == sum(commits.values()) and (skipped, dead) == (0, 0)
    # Input kept arriving after the stop: the app stopped mid-stream.
    assert sum(end_offsets(broker.addr, IN).values()) > sum(commits.values())


def test_restart_after_clean_stop_outputs_each_input_exactly_once(broker_factory, run_app):
    """Half the input, SIGTERM, the other half, a second run: every input has exactly
    one output; the first run wrote the first half, the second run the rest."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    first = produce(broker.addr, IN, rows(0, 400))
    app1 = run_app(SCRIPT, broker.addr, "--name", "restart", env=env(1))
    wait_committed_to_end(broker.addr, "restart", IN, 60, app=app1)
    assert app1.stop() == 0, app1.stderr()
    second = produce(broker.addr, IN, rows(400, 400))
    app2 = run_app(SCRIPT, broker.addr, "--name", "restart", env=env(2))
    wait_committed_to_end(broker.addr, "restart", IN, 60, app=app2)
    assert app2.stop() == 0, app2.stderr()

    outs = outputs(broker.addr)
    assert Counter((p, o) for p, o, *_ in outs) == Counter(first + second)
    assert sorted((p, o) for p, o, run, *_ in outs if run == "1") == sorted(first)
    assert sorted((p, o) for p, o, run, *_ in outs if run == "2") == sorted(second)
    check_matches_inputs(outs, inputs_by_position(broker.addr))
    assert app1.stats()[:2] == (400, 400) and app2.stats()[:2] == (400, 400)


def test_restart_after_sigkill_reprocesses_from_the_last_commit(broker_factory, run_app):
    """SIGKILL mid-stream (commits every 5 s), then a restart in the same group: every
    input has at least one output; the second run outputs exactly the inputs from the
    offsets committed before the kill to the end, once each; everything below those
    offsets had its output written by the first run."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    feeder = SteadyProducer(broker.addr)
    feeder.start()
    try:
        app1 = run_app(SCRIPT, broker.addr, "--name", "killed", env=env(1, commit_interval=5))
        wait_count(broker.addr, OUT, 300, 60, app=app1)

        # Kill without warning once a checkpoint has happened and at least 100
        # outputs were written after it (the next checkpoint is seconds away).
        def uncommitted_outputs():
            n_out = len(read_all(broker.addr, OUT))
            done = sum(max(v, 0) for v in committed(broker.addr, "killed", IN).values())
            return done > 0 and n_out - done >= 100
        wait_until(uncommitted_outputs, 30, "outputs past a first commit", interval=0.2,
                   app=app1)
        app1.stop(sig=signal.SIGKILL)
    finally:
        feeder.stop()
    before = committed(broker.addr, "killed", IN)
    end = end_offsets(broker.addr, IN)
    assert any(end[p] > max(before[p], 0) for p in end), "nothing left to reprocess"

    # The dead member holds its partitions until its session (6 s) times out.
    app2 = run_app(SCRIPT, broker.addr, "--name", "killed", env=env(2))
    wait_committed_to_end(broker.addr, "killed", IN, 60, app=app2)
    assert app2.stop() == 0, app2.stderr()

    outs = outputs(broker.addr)
    check_matches_inputs(outs, inputs_by_position(broker.addr))
    run1 = Counter((p, o) for p, o, run, *_ in outs if run == "1")
    run2 = Counter((p, o) for p, o, run, *_ in outs if run == "2")
    assert max(run1.values()) == 1 and max(run2.values()) == 1
    for p in range(PARTS):
        start = max(before[p], 0)
        assert sorted(o for q, o in run2 if q == p) == list(range(start, end[p])), p
        assert set(range(start)) <= {o for q, o in run1 if q == p}, p
    assert set(run1) | set(run2) == {(p, o) for p in range(PARTS) for o in range(end[p])}
    # The kill came after outputs that were not committed: they were written again.
    assert len(set(run1) & set(run2)) >= 100


def test_count_option_and_luastream_broker_env(broker_factory, run_app):
    """With the broker from LUASTREAM_BROKER (no --broker) and --count 50: the app stops
    by itself with exit 0 after at least 50 outputs, and its committed offsets cover
    exactly the inputs that have an output."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    produce(broker.addr, IN, rows(0, 400))
    app = run_app(SCRIPT, None, "--name", "counted", "--count", "50",
                  env={**env(1), "LUASTREAM_BROKER": broker.addr})
    assert app.wait(60) == 0, app.stderr()
    assert "dev broker" not in app.stderr()
    outs = outputs(broker.addr)
    assert len(outs) >= 50
    commits = committed(broker.addr, "counted", IN)
    assert sorted((p, o) for p, o, *_ in outs) == \
        sorted((p, o) for p in range(PARTS) for o in range(max(commits[p], 0)))
    assert app.stats()[1] == len(outs)


def test_two_instances_share_the_partitions_and_lose_nothing(broker_factory, run_app):
    """Scaling out: a second process joins the group under steady input; partitions are
    split between the two, both write outputs, and after both stop (exit 0) every
    input has at least one output and the committed offsets are the end."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    feeder = SteadyProducer(broker.addr)
    feeder.start()
    try:
        a = run_app(SCRIPT, broker.addr, "--name", "scaled", env=env("a"))
        wait_count(broker.addr, OUT, 200, 60, app=a)
        b = run_app(SCRIPT, broker.addr, "--name", "scaled", env=env("b"))
        wait_until(lambda: any(run == "b" for _, _, run, *_ in outputs(broker.addr)), 60,
                   "outputs from the second instance", interval=0.3, app=b)
    finally:
        last = feeder.stop()
    wait_committed_to_end(broker.addr, "scaled", IN, 60, app=b)
    assert a.stop() == 0, a.stderr()
    assert b.stop() == 0, b.stderr()

    outs = outputs(broker.addr)
    check_matches_inputs(outs, inputs_by_position(broker.addr))
    end = end_offsets(broker.addr, IN)
    assert sum(end.values()) == last
    assert {(p, o) for p, o, *_ in outs} == {(p, o) for p in range(PARTS) for o in range(end[p])}
    assert committed(broker.addr, "scaled", IN) == end
    b_parts = {p for p, _, run, *_ in outs if run == "b"}
    a_parts_after = {p for p, o, run, *_ in outs if run == "a" and p not in b_parts}
    assert b_parts and a_parts_after, "the partitions were not shared"
