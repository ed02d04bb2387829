"""A stream-table join on the dev broker (docs/joins.md).

scripts/join_table.lua joins readings with the owners table of their device.
The table is filled and changed (a new owner, a deletion) before the readings
that must see each version are produced, so the expected owner of every
reading is known; state survives a restart; a table whose partition count
differs from the stream's stops the app at start, and a group_by with the
table's partition count fixes that.
"""

import json
import shutil
import signal

from conftest import (SCRIPTS, _consumer, committed, held, jloads, produce, read_all, run_cli,
                      wait_committed_to_end, wait_count, wait_held, wait_until)

SCRIPT = SCRIPTS / "join_table.lua"
APP = "jt-e2e"


def rec(key, value):
    return (key.encode(), None if value is None else json.dumps(value).encode(), None)


def topics(addr):
    """Every topic's name (asking for all: naming one may create it)."""
    c = _consumer(addr)
    try:
        return set(c.list_topics(timeout=10).topics)
    finally:
        c.close()


def outputs(addr):
    return [(r.key.decode(), jloads(r.value)) for r in read_all(addr, "out")]


def test_readings_get_the_owner_the_table_holds_then(broker_factory, run_app, tmp_path):
    broker = broker_factory({"owners": 3, "readings": 3, "out": 3})
    devices = [f"dev-{i}" for i in range(12)]
    state = tmp_path / "state"
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "owners", [rec(d, {"owner": f"o-{d}"}) for d in devices])
    wait_committed_to_end(broker.addr, APP, "owners", 60, app=app)
    produce(broker.addr, "readings", [rec(d, {"x": i}) for i, d in enumerate(devices)])
    wait_count(broker.addr, "out", 12, 60, app=app)
    assert app.stop() == 0

    # a restart: the table comes back from the state dir; change two owners, delete one
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "owners", [rec("dev-0", {"owner": "new"}), rec("dev-1", None)])
    wait_committed_to_end(broker.addr, APP, "owners", 60, app=app)
    produce(broker.addr, "readings", [rec(d, {"x": 100 + i}) for i, d in enumerate(devices)])
    wait_count(broker.addr, "out", 24, 60, app=app)
    assert app.stop() == 0

    got = sorted(outputs(broker.addr), key=lambda kv: kv[1]["x"])
    want = [(d, {"x": i, "owner": f"o-{d}"}) for i, d in enumerate(devices)]
    for i, d in enumerate(devices):
        v = {"x": 100 + i, "owner": "new" if d == "dev-0" else f"o-{d}"}
        if d == "dev-1":
            del v["owner"]
        want.append((d, v))
    assert got == want


def test_the_table_topic_is_its_own_changelog(broker_factory, run_app, tmp_path):
    # No changelog topic for the table: a lost state dir is rebuilt from the
    # owners topic itself, up to the committed offset only; the records after
    # it are the consumer's, taken in timestamp order with the readings.
    broker = broker_factory({"owners": 1, "readings": 1, "out": 1})
    state = tmp_path / "state"
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "owners", [(b"dev-0", b'{"owner":"a"}', None, None, 1000),
                                    (b"dev-1", b'{"owner":"c"}', None, None, 1000)])
    wait_committed_to_end(broker.addr, APP, "owners", 60, app=app)
    assert app.stop() == 0
    assert {t for t in topics(broker.addr) if "changelog" in t} == set()

    produce(broker.addr, "readings", [(b"dev-0", b'{"x":1}', None, None, 2000)])
    produce(broker.addr, "owners", [(b"dev-0", b'{"owner":"b"}', None, None, 3000)])
    produce(broker.addr, "readings", [(b"dev-0", b'{"x":2}', None, None, 4000),
                                      (b"dev-1", b'{"x":3}', None, None, 4000)])
    shutil.rmtree(state)
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    wait_count(broker.addr, "out", 3, 60, app=app)
    assert app.stop() == 0
    assert "state __table__owners: read 2 records of 1 partition from owners in" in app.stderr()
    got = sorted(outputs(broker.addr), key=lambda kv: kv[1]["x"])
    assert got == [("dev-0", {"x": 1, "owner": "a"}), ("dev-0", {"x": 2, "owner": "b"}),
                   ("dev-1", {"x": 3, "owner": "c"})]
    assert {t for t in topics(broker.addr) if "changelog" in t} == set()

    # the copy saved at the stop is the table's: a restart reads nothing again
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "readings", [(b"dev-0", b'{"x":4}', None, None, 5000)])
    wait_count(broker.addr, "out", 4, 60, app=app)
    assert app.stop() == 0
    assert "from owners in" not in app.stderr()
    assert sorted(outputs(broker.addr), key=lambda kv: kv[1]["x"])[-1] == ("dev-0", {"x": 4, "owner": "b"})


def test_table_partitions_move_between_instances_with_their_values(broker_factory, run_app, tmp_path):
    # A holds the whole table; B joins and takes half the partitions, reading
    # them from the topic (it has no copy); owners change while both run; B
    # leaves and A takes its partitions back, reading what changed meanwhile.
    broker = broker_factory({"owners": 4, "readings": 4, "out": 4})
    devices = [f"dev-{i}" for i in range(16)]
    a = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "a"))
    produce(broker.addr, "owners", [rec(d, {"owner": f"o-{d}"}) for d in devices])
    wait_committed_to_end(broker.addr, APP, "owners", 60, app=a)
    b = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "b"))
    _, moved = wait_held([a, b], "owners", 4, 60)
    assert len(moved) == 2, b.stderr()
    # the table's partitions are read before the assignment is taken up: logged after it
    wait_until(lambda: "state __table__owners: read " in b.stderr(), 30, "B to read its table partitions", app=b)
    produce(broker.addr, "owners", [rec(d, {"owner": f"new-{d}"}) for d in devices])
    wait_committed_to_end(broker.addr, APP, "owners", 60, app=a)
    assert b.stop() == 0
    wait_held([a], "owners", 4, 60)
    produce(broker.addr, "readings", [rec(d, {"x": i}) for i, d in enumerate(devices)])
    wait_count(broker.addr, "out", 16, 60, app=a)
    assert a.stop() == 0
    got = sorted(outputs(broker.addr), key=lambda kv: kv[1]["x"])
    assert got == [(d, {"x": i, "owner": f"new-{d}"}) for i, d in enumerate(devices)]
    # A read back only the changes B's partitions had while B held them
    assert "read 8 records of 2 partitions from owners" in a.stderr(), a.stderr()


def test_a_table_with_other_partitions_than_the_stream_stops_at_start(broker_factory, tmp_path):
    broker = broker_factory({"owners": 2, "readings": 3, "out": 3})
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--state-dir", str(tmp_path / "s"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert ("luastream: state store '__table__owners' serves topics 'owners' (2 partitions) and 'readings' "
            "(3 partitions): they must have the same partition count (re-key the rows of 'readings' into 2 "
            "partitions with sdf:group_by(..., { partitions = 2 }))\n") in r.stderr, r.stderr


def test_a_group_by_with_the_tables_partition_count_joins_a_stream_of_another(broker_factory, run_app, tmp_path):
    broker = broker_factory({"owners": 2, "readings": 3, "out": 3})
    devices = [f"dev-{i}" for i in range(12)]
    # the table's keys placed as group_by's producer places the readings (murmur2)
    produce(broker.addr, "owners", [rec(d, {"owner": f"o-{d}"}) for d in devices], partitioner="murmur2_random")
    a = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "s"), env={"JT_REGROUP": "2"})
    produce(broker.addr, "readings", [rec(d, {"x": i}) for i, d in enumerate(devices)])
    wait_count(broker.addr, "out", 12, 60, app=a)
    assert a.stop() == 0
    assert "created the group_by topic 'jt-e2e__repartition__by-device' with 2 partitions" in a.stderr(), a.stderr()
    got = sorted(outputs(broker.addr), key=lambda kv: kv[1]["x"])
    assert got == [(d, {"x": i, "owner": f"o-{d}"}) for i, d in enumerate(devices)]


SMALL_BATCH = """
local ls = require("luastream")
local app = ls.app{ name = "jt-small", commit_interval = 0.5, batch_size = %d }
local t = app:table(app:topic("t", { key = "string", value = "json" }))
local s = app:dataframe(app:topic("s", { key = "string", value = "json" }))
s:join_table(t, { how = "left" }):to_topic(app:topic("out", { key = "string", value = "json" }))
"""


def test_a_table_read_back_after_a_reload_to_a_smaller_batch_size_is_whole(broker_factory, run_app, tmp_path):
    # The table's records are read back from its topic in batches of the
    # running pipeline's batch_size, which a live reload made smaller.
    broker = broker_factory({"s": 2, "t": 2, "out": 2})
    script, other = tmp_path / "small.lua", tmp_path / "other.lua"
    script.write_text(SMALL_BATCH % 500)
    other.write_text(SMALL_BATCH % 500)
    a = run_app(script, broker.addr, "--state-dir", str(tmp_path / "sa"))
    wait_held([a], "t", 2, 60)
    script.write_text(SMALL_BATCH % 5)
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in a.stderr(), 30, "the reload", app=a)
    b = run_app(other, broker.addr, "--state-dir", str(tmp_path / "sb"))
    part = sorted(wait_held([a, b], "t", 2, 60)[1])[0]  # one of b's
    n = 100
    produce(broker.addr, "t", [(f"k{i}".encode(), json.dumps({"price": i}).encode(), None, part)
                               for i in range(n)])
    wait_until(lambda: committed(broker.addr, "jt-small", "t").get(part) == n, 60, "b to commit its partition",
               app=b)
    assert b.stop() == 0
    wait_until(lambda: held(a, "t") == {0, 1}, 60, "a to hold both partitions", app=a)
    produce(broker.addr, "s", [(f"k{i}".encode(), json.dumps({"id": i}).encode(), None, part) for i in range(n)])
    wait_count(broker.addr, "out", n, 60, app=a)
    assert a.stop() == 0, a.stderr()[-3000:]
    assert f"state __table__t: read {n} records of 1 partition from t in" in a.stderr()
    got = sorted((jloads(r.value) for r in read_all(broker.addr, "out")), key=lambda v: v["id"])
    assert got == [{"id": i, "price": i} for i in range(n)]


DEAD_LETTERS = """
local ls = require("luastream")
local app = ls.app{ name = "jt-dlq", commit_interval = 0.3, on_error = "dead-letter" }
local t = app:table(app:topic("t", { key = "string", value = "json" }))
local s = app:dataframe(app:topic("s", { key = "string", value = "json" }))
s:join_table(t, { how = "left" }):to_topic(app:topic("out", { key = "string", value = "json" }))
"""


def test_a_table_record_that_changes_nothing_is_not_handled_again_after_a_restart(broker_factory, run_app,
                                                                                     tmp_path):
    # A keyless table record goes to the dead letters and changes no key; the
    # table's mark must still move past it, or the next assignment reads it
    # back from the topic and dead-letters it a second time.
    dlq = "jt-dlq__dead-letter"
    broker = broker_factory({"t": 1, "s": 1, "out": 1, dlq: 1})
    script, state = tmp_path / "dlq.lua", str(tmp_path / "state")
    script.write_text(DEAD_LETTERS)
    app = run_app(script, broker.addr, "--state-dir", state)
    produce(broker.addr, "t", [(b"k", b'{"p":1}', None)])
    wait_committed_to_end(broker.addr, "jt-dlq", "t", 30, app=app)
    produce(broker.addr, "t", [(b"gone", None, None), (None, b'{"p":2}', None)])  # deletes nothing; no key
    wait_committed_to_end(broker.addr, "jt-dlq", "t", 30, app=app)
    assert app.stop() == 0
    assert len(read_all(broker.addr, dlq)) == 1
    app = run_app(script, broker.addr, "--state-dir", state)
    produce(broker.addr, "s", [(b"k", b'{"x":1}', None)])
    wait_count(broker.addr, "out", 1, 30, app=app)
    assert app.stop() == 0
    assert "from t in" not in app.stderr()  # nothing read back: the mark is at the commit
    assert len(read_all(broker.addr, dlq)) == 1
    assert [jloads(r.value) for r in read_all(broker.addr, "out")] == [{"x": 1, "p": 1}]
