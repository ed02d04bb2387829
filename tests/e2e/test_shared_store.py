"""A state store serving two input topics (scripts/shared_store.lua): counts
per key over both inputs are exact, also after a restart with a lost state dir
(the changelog replay applies records covered by both inputs' committed
offsets), also for a store serving ten inputs; inputs with different
partition counts are refused at start."""

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


MANY = """
local ls = require("luastream")
local app = ls.app{ name = "many", commit_interval = 0.5 }
local out = app:topic("out", { key = "string", value = "json" })
for i = 1, 10 do
  local src = "in" .. i
  app:dataframe(app:topic(src, { key = "string", value = "json" })):update(function(row, state)
    local n = state:get("n", 0) + 1
    state:set("n", n)
    row.src, row.n = src, n
  end, { stateful = true, store = "all" }):to_topic(out)
end
"""


def test_a_store_serving_ten_inputs_keeps_the_offsets_of_all_ten(broker_factory, run_app, tmp_path):
    names = [f"in{i}" for i in range(1, 11)]
    broker = broker_factory({**{n: 1 for n in names}, "out": 1, "many__all__changelog": 1})
    script, state = tmp_path / "many.lua", tmp_path / "state"
    script.write_text(MANY)

    def run_to_end():
        app = run_app(script, broker.addr, "--state-dir", str(state))
        for n in names:
            wait_committed_to_end(broker.addr, "many", n, 60, app=app)
        assert app.stop() == 0, app.stderr()
        return app.stderr()

    for i, n in enumerate(names):  # one key per input, i + 1 records each
        produce(broker.addr, n, [(f"k{i}".encode(), b"{}", None)] * (i + 1))
    run_to_end()
    listed = [dict(kv.split("=") for kv in dict(r.headers)["luastream.input.offsets"].decode().split(","))
              for r in read_all(broker.addr, "many__all__changelog")]
    assert len(listed) >= 10 and all(list(x) == names for x in listed), listed
    # the last checkpoint's changes: every input processed to its end
    assert listed[-1] == {n: str(i + 1) for i, n in enumerate(names)}, listed[-1]

    shutil.rmtree(state)  # rebuilt from the changelog: every change is covered by all ten commits
    for i, n in enumerate(names):
        produce(broker.addr, n, [(f"k{i}".encode(), b"{}", None)])
    assert "replayed" in run_to_end()
    counts = {}
    for r in read_all(broker.addr, "out"):
        counts[r.key.decode()] = jloads(r.value)["n"]
    assert counts == {f"k{i}": i + 2 for i in range(10)}
