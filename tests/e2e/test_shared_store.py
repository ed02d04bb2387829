"""A state store serving two input topics (scripts/shared_store.lua): counts
per key over both inputs are exact, also after a restart with a lost state dir
(the changelog replay applies records covered by both inputs' committed
offsets); inputs with different partition counts are refused at start."""

import json
import shutil
from collections import Counter

from conftest import SCRIPTS, jloads, produce, read_all, run_cli, wait_committed_to_end

SCRIPT = SCRIPTS / "shared_store.lua"
KEYS = 10
CHANGELOG = "shared__both__changelog"


def rows(first, n):
    return [(f"k{i % KEYS}".encode(), json.dumps({"x": i}).encode(), None) for i in range(first, first + n)]


def last_counts(addr):
    last = {}
    for r in read_all(addr, "out"):  # a key lives in one partition: offset order is its order
        last[r.key.decode()] = jloads(r.value)["n"]
    return last


def expected(addr):
    c = Counter()
    for t in ("a", "b"):
        c.update(r.key.decode() for r in read_all(addr, t))
    return dict(c)


def run_to_end(broker, run_app, state):
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    for t in ("a", "b"):
        wait_committed_to_end(broker.addr, "shared", t, 60, app=app)
    assert app.stop() == 0, app.stderr()
    return app.stderr()


def test_counts_over_both_inputs_survive_a_lost_state_dir(broker_factory, run_app, tmp_path):
    broker = broker_factory({"a": 4, "b": 4, "out": 4, CHANGELOG: 4})
    state = tmp_path / "state"
    produce(broker.addr, "a", rows(0, 300))
    produce(broker.addr, "b", rows(1000, 200))
    run_to_end(broker, run_app, state)
    assert last_counts(broker.addr) == expected(broker.addr)
    outs = [jloads(r.value) for r in read_all(broker.addr, "out")]
    assert Counter(o["src"] for o in outs) == {"a": 300, "b": 200}
    offsets = [dict(r.headers).get("luastream.input.offsets") for r in read_all(broker.addr, CHANGELOG)]
    assert offsets and all(o and o.startswith(b"a=") and b",b=" in o for o in offsets), offsets[:3]

    shutil.rmtree(state)
    produce(broker.addr, "a", rows(2000, 100))
    produce(broker.addr, "b", rows(3000, 100))
    err = run_to_end(broker, run_app, state)
    assert "replayed" in err, err
    assert last_counts(broker.addr) == expected(broker.addr)


def test_inputs_with_different_partition_counts_are_refused(broker_factory, tmp_path):
    broker = broker_factory({"a": 4, "b": 2, "out": 4})
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--state-dir", str(tmp_path / "s"),
                timeout=60)
    assert r.returncode == 2, r
    assert ("luastream: state store 'both' serves topics 'a' (4 partitions) and 'b' (2 partitions): they must "
            "have the same partition count (re-key the rows of 'b' into 4 partitions with sdf:group_by(..., "
            "{ partitions = 4 }), or give each its own store)\n") in r.stderr, r.stderr
