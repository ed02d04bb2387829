"""group_by on the dev broker (docs/windows.md, "group_by").

scripts/group_by_count.lua re-keys {region, x} rows by region through the
app's group_by topic gb-e2e__repartition__region and keeps a running count
and sum per region. The topic is created at start, on `luastream broker`
through its side channel, with the input's partition count or the group_by's
`partitions`. (Exactly-once over the group_by hop is the same transaction as
any output and input; the dev broker discards offsets sent in transactions,
see test_exactly_once.py, so these runs use at-least-once and clean stops.)
"""

import json
from collections import defaultdict

from conftest import (SCRIPTS, jloads, partitions, produce, read_all, wait_committed_to_end,
                      wait_count)

SCRIPT = SCRIPTS / "group_by_count.lua"
APP = "gb-e2e"
TOPIC = f"{APP}__repartition__region"
REGIONS = ["eu", "us", "asia", "africa", "oceania"]


def rows(n, start=0):
    """(device key, value) records: region by a fixed pattern, x = i."""
    recs = []
    for i in range(start, start + n):
        region = REGIONS[(i * 7 + i // 3) % len(REGIONS)]
        recs.append((f"dev-{i % 13}".encode(), json.dumps({"region": region, "x": i}).encode(), None))
    return recs


def expected(recs):
    """{region: (count, sum)} over the records."""
    acc = defaultdict(lambda: [0, 0])
    for _, v, _ in recs:
        r = json.loads(v)
        acc[r["region"]][0] += 1
        acc[r["region"]][1] += r["x"]
    return {k: tuple(v) for k, v in acc.items()}


def final_state(addr):
    """{region: (n, sum)} from each region's last output; checks each output's key and count order."""
    last, seen = {}, defaultdict(int)
    for r in read_all(addr, "out"):
        v = jloads(r.value)
        assert jloads(r.key) == v["region"], (r.key, v)
        seen[v["region"]] += 1
        assert v["n"] == seen[v["region"]], f"count of {v['region']} out of order: {v}"
        last[v["region"]] = (v["n"], v["sum"])
    return last


def test_group_by_counts_per_new_key_across_a_restart(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": 2, "out": 2})
    state = tmp_path / "state"
    first, second = rows(300), rows(200, start=300)
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "in", first)
    wait_count(broker.addr, "out", len(first), 60, app=app)
    wait_committed_to_end(broker.addr, APP, "in", 60, app=app)
    assert app.stop() == 0
    assert "created the group_by topic 'gb-e2e__repartition__region' with 2 partitions" in app.stderr()
    assert len(partitions(broker.addr, TOPIC)) == 2
    assert final_state(broker.addr) == expected(first)

    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "in", second)
    wait_count(broker.addr, "out", len(first) + len(second), 60, app=app)
    wait_committed_to_end(broker.addr, APP, TOPIC, 60, app=app)
    assert app.stop() == 0
    assert final_state(broker.addr) == expected(first + second)
    # the group_by topic holds every row once, keyed by the region, with the input's timestamp
    rep = read_all(broker.addr, TOPIC)
    assert len(rep) == len(first) + len(second)
    by_key = defaultdict(set)
    for r in rep:
        by_key[jloads(r.key)].add(r.partition)
    assert all(len(p) == 1 for p in by_key.values()), by_key  # one region, one partition


def test_group_by_partitions_option_makes_the_topic_with_that_count(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": 2, "out": 2})
    recs = rows(120)
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "state"), env={"GB_PARTITIONS": "3"})
    produce(broker.addr, "in", recs)
    wait_count(broker.addr, "out", len(recs), 60, app=app)
    assert app.stop() == 0
    assert len(partitions(broker.addr, TOPIC)) == 3
    assert final_state(broker.addr) == expected(recs)
    assert len(partitions(broker.addr, f"{APP}__default__changelog")) == 3
