"""A stream-table join on the dev broker (docs/joins.md).

scripts/join_table.lua joins readings with the owners table of their device.
The table is filled and changed (a new owner, a deletion) before the readings
that must see each version are produced, so the expected owner of every
reading is known; state survives a restart; a table whose partition count
differs from the stream's stops the app at start.
"""

import json

from conftest import (SCRIPTS, jloads, produce, read_all, run_cli, wait_committed_to_end,
                      wait_count)

SCRIPT = SCRIPTS / "join_table.lua"
APP = "jt-e2e"


def rec(key, value):
    return (key.encode(), None if value is None else json.dumps(value).encode(), None)


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


def test_a_table_with_other_partitions_than_the_stream_stops_at_start(broker_factory, tmp_path):
    broker = broker_factory({"owners": 2, "readings": 3, "out": 3})
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--state-dir", str(tmp_path / "s"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert ("state store '__table__owners' serves topics 'owners' (2 partitions) and 'readings' "
            "(3 partitions): they must have the same partition count") in r.stderr
