"""Stream-stream joins on the dev broker (docs/joins.md).

scripts/joins_streams.lua joins clicks with views per user: as-of (the latest
view at or before each click) and interval (every view within [t - 1000,
t + 500] of a click). All views are produced and processed before the clicks,
so both joins see every view; the expected pairs are computed here from the
definitions, and the state survives a restart between two halves of the clicks.
"""

import json
import random
from collections import defaultdict

from conftest import (SCRIPTS, jloads, produce, read_all, run_cli, wait_committed_to_end, wait_count)

SCRIPT = SCRIPTS / "joins_streams.lua"
APP = "joins-e2e"
USERS = [f"u{i}" for i in range(6)]
BASE = 1_700_000_000_000


def data(seed=5):
    rnd = random.Random(seed)
    views, clicks = defaultdict(list), defaultdict(list)
    for u in USERS:
        t = BASE
        for j in range(25):
            t += rnd.randrange(0, 900)
            views[u].append((t, f"p{j}"))
        t = BASE
        for j in range(30):
            t += rnd.randrange(0, 800)
            clicks[u].append((t, j))
    return views, clicks


def recs(by_user, field):
    out = []
    for u, lst in by_user.items():
        for t, x in lst:
            out.append((u.encode(), json.dumps({"ts": t, field: x}).encode(), None))
    return out


def test_asof_and_interval_joins_match_the_definitions_across_a_restart(broker_factory, run_app, tmp_path):
    broker = broker_factory({"clicks": 2, "views": 2, "asof-out": 2, "interval-out": 2})
    views, clicks = data()
    state = tmp_path / "state"
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "views", recs(views, "page"))
    wait_committed_to_end(broker.addr, APP, "views", 60, app=app)
    first = {u: lst[:15] for u, lst in clicks.items()}
    second = {u: lst[15:] for u, lst in clicks.items()}
    produce(broker.addr, "clicks", recs(first, "c"))
    wait_committed_to_end(broker.addr, APP, "clicks", 60, app=app)
    assert app.stop() == 0
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "clicks", recs(second, "c"))
    n_clicks = sum(len(v) for v in clicks.values())
    wait_count(broker.addr, "asof-out", n_clicks, 60, app=app)
    wait_committed_to_end(broker.addr, APP, "clicks", 60, app=app)
    assert app.stop() == 0

    # as-of: the latest view at or before each click (a view at the same ms counts)
    want_asof = defaultdict(list)
    for u in USERS:
        for t, c in clicks[u]:
            row = {"ts": t, "c": c}
            times = [vt for vt, _ in views[u] if vt <= t]
            if times:  # of several views at that ms, the last one produced
                row["page"] = [p for vt, p in views[u] if vt == max(times)][-1]
            want_asof[u].append(row)
    got_asof = defaultdict(list)
    for r in read_all(broker.addr, "asof-out"):
        got_asof[r.key.decode()].append(jloads(r.value))
    assert dict(got_asof) == dict(want_asof)

    # interval: every view in [t - 1000, t + 500]; pairs in the order of the views' times
    want_iv = defaultdict(list)
    for u in USERS:
        for t, c in clicks[u]:
            for vt, p in sorted(views[u], key=lambda x: x[0]):
                if t - 1000 <= vt <= t + 500:
                    want_iv[u].append(({"ts": t, "c": c, "page": p}, max(t, vt)))
    got_iv = defaultdict(list)
    for r in read_all(broker.addr, "interval-out"):
        got_iv[r.key.decode()].append((jloads(r.value), r.timestamp))
    assert dict(got_iv) == dict(want_iv)


def test_stream_joins_of_topics_with_other_partition_counts_stop_at_start(broker_factory, tmp_path):
    broker = broker_factory({"clicks": 2, "views": 3, "asof-out": 2, "interval-out": 2})
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--state-dir", str(tmp_path / "s"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert ("luastream: state store '__asof__1' serves topics 'views' (3 partitions) and 'clicks' (2 "
            "partitions): they must have the same partition count (re-key the rows of 'clicks' into 3 "
            "partitions with sdf:group_by(..., { partitions = 3 }))\n") in r.stderr, r.stderr
