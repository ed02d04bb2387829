"""A global table on the dev broker (docs/joins.md, "Global tables").

Two instances of scripts/global_table.lua share the readings' partitions; the
table's topic has other partitions than the readings', and each instance reads
all of it. The people are produced before the apps start, and so are the first
readings: an app must catch up with the table before processing them, so every
reading gets its person's name. A change made while they run reaches both, and
an instance started again reads the table whole again, changes included.
"""

import json

from conftest import SCRIPTS, jloads, produce, read_all, wait_count, wait_until

SCRIPT = SCRIPTS / "global_table.lua"
PEOPLE = [f"p{i}" for i in range(20)]


def rec(key, value):
    return (key.encode(), None if value is None else json.dumps(value).encode(), None)


def test_every_instance_reads_the_whole_table_before_it_processes(broker_factory, run_app, tmp_path):
    broker = broker_factory({"people": 3, "readings": 4, "out": 4})
    produce(broker.addr, "people", [rec(p, {"name": p.upper()}) for p in PEOPLE])
    first = [rec(f"dev-{i}", {"person": PEOPLE[i % 20], "x": i}) for i in range(40)]
    produce(broker.addr, "readings", first)
    apps = [run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / f"s{j}"), "--log-level", "debug")
            for j in range(2)]
    for a in apps:
        wait_until(lambda a=a: "global tables: caught up, 20 records" in a.stderr(), 60, "the catch-up", app=a)
    wait_count(broker.addr, "out", 40, 60, app=apps[0])
    # both instances hold partitions of the readings
    wait_until(lambda: all("partitions assigned" in a.stderr() for a in apps), 30, "both assigned")

    produce(broker.addr, "people", [rec("p3", {"name": "renamed"}), rec("p4", None)])
    for a in apps:  # the change reaches both instances' tables while they run
        wait_until(lambda a=a: "global tables: 2 records read since the catch-up" in a.stderr(), 30,
                   "the change", app=a)
    second = [rec(f"dev-{i}", {"person": PEOPLE[i % 20], "x": 100 + i}) for i in range(40)]
    produce(broker.addr, "readings", second)
    wait_count(broker.addr, "out", 80, 60, app=apps[0])
    for a in apps:
        assert a.stop() == 0

    again = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "s0"), "--log-level", "debug")
    wait_until(lambda: "global tables: caught up, 22 records" in again.stderr(), 60, "the second catch-up",
               app=again)
    third = [rec(f"dev-{i}", {"person": PEOPLE[i % 20], "x": 200 + i}) for i in range(40)]
    produce(broker.addr, "readings", third)
    wait_count(broker.addr, "out", 120, 60, app=again)
    assert again.stop() == 0

    got = {jloads(r.value)["x"]: jloads(r.value) for r in read_all(broker.addr, "out")}
    assert len(got) == 120
    for i in range(40):
        p = PEOPLE[i % 20]
        assert got[i] == {"person": p, "x": i, "name": p.upper()}, got[i]
        for base in (100, 200):
            want = {"person": p, "x": base + i}
            if p == "p3":
                want["name"] = "renamed"
            elif p != "p4":
                want["name"] = p.upper()
            assert got[base + i] == want, got[base + i]
