"""Join state moving between instances: the as-of and interval joins of
scripts/join_crash.lua (with its table) on two instances that share the
partitions, then on one again, must give exactly the joined rows docs/joins.md
defines.

  A alone     reads the side topics (the table, the fixes, the views) and the
              first half of the clicks; those clicks wait in A's interval state
              (its grace is 1 h) for views to come or their intervals to close;
  A and B     B joins with an empty state directory and takes half the
              partitions: their as-of and interval state comes from the
              changelogs A wrote, their table values from the table's topic.
              The second half of the clicks meets, on B, the fixes and views A
              processed; then newer fixes (after every click so far) arrive,
              half of them processed by B;
  A again     B stops; A takes its partitions back and replays what B wrote to
              their changelogs since A had them. A third set of clicks, after
              the newer fixes, must see those B kept. Then one view per device
              far in the future closes every click's interval: the clicks that
              met no view, wherever they waited, go out alone (how = "left").

Each phase's records are committed before the next phase's are produced, so
the order across inputs does not depend on timing (as in test_join_crash.py,
whose reference this test uses). A clean hand-over commits what was processed,
so no output repeats.
"""

import random

from conftest import end_offsets, jloads, produce, read_all, wait_held, wait_until
from test_join_crash import (AFTER, ASOF_GRACE, BASE, BEFORE, CHANGELOG_STORES, DEVICES, END_TS,
                             IV_GRACE, NO_FIXES, PARTS, SCRIPT, SPAN, TOLERANCE, asof_kept, canon, check_log,
                             history, make_inputs, rec, reference, replayed, state_values,
                             wait_processed)

SEED = 20261205
NEW_FIX_TS = BASE + SPAN + 5000  # the newer fixes: after every click of the first two halves


def newer_fixes(rnd):
    """One fix per device that has fixes, NEW_FIX_TS .. +2000; and per device three
    clicks after it: at the fix, at the tolerance after it, 1 ms past that."""
    fixes, clicks = [], []
    for d in DEVICES:
        if d in NO_FIXES:
            continue
        t = NEW_FIX_TS + rnd.randrange(0, 2000)
        fixes.append((d, {"ts": t, "fid": f"{d}/new", "lat": round(rnd.uniform(-90, 90), 5)}))
        for dt in (0, TOLERANCE, TOLERANCE + 1):
            clicks.append((d, {"ts": t + dt, "x": dt}))
    return fixes, clicks


def test_asof_and_interval_state_moves_between_instances(broker_factory, run_app, tmp_path):
    broker = broker_factory({t: PARTS for t in ("clicks", "profiles", "fixes", "views", "out")})
    addr = broker.addr
    rnd = random.Random(SEED)
    prof_recs, fixes, views, clicks = make_inputs(SEED)
    fixes2, clicks3 = newer_fixes(rnd)
    for i, (_, c) in enumerate(clicks3):
        c["id"] = len(clicks) + i
    half = len(clicks) // 2

    # A alone: the side topics, then the first half of the clicks
    a = run_app(SCRIPT, addr, "--state-dir", str(tmp_path / "a"))
    produce(addr, "profiles", [rec(d, v) for d, v in prof_recs])
    produce(addr, "fixes", [rec(d, f) for d, f in fixes])
    produce(addr, "views", [rec(d, v) for d, v in views])
    wait_processed(addr, ("profiles", "fixes", "views"), 60, a)
    produce(addr, "clicks", [rec(d, c) for d, c in clicks[:half]])
    wait_processed(addr, ("clicks",), 60, a)

    # B joins with nothing and takes half the partitions, their state from the changelogs
    b = run_app(SCRIPT, addr, "--state-dir", str(tmp_path / "b"))
    _, moved = wait_held([a, b], "clicks", PARTS, 60)
    wait_until(lambda: all(replayed(b.stderr()).get(s, [0])[0] >= len(moved) for s in CHANGELOG_STORES), 30,
               "B to read the changelogs of its partitions", app=b)
    got_b = replayed(b.stderr())
    assert all(got_b[s][2] > 0 for s in CHANGELOG_STORES), got_b
    produce(addr, "clicks", [rec(d, c) for d, c in clicks[half:]])
    wait_processed(addr, ("clicks",), 60, b)
    produce(addr, "fixes", [rec(d, f) for d, f in fixes2])
    wait_processed(addr, ("fixes",), 60, b)
    before_b_left = replayed(a.stderr())
    assert b.stop() == 0, b.stderr()
    check_log(b, "B")

    # A again: B's partitions back, with what B changed
    wait_held([a], "clicks", PARTS, 60)
    wait_until(lambda: all(replayed(a.stderr()).get(s, [0])[0] > before_b_left.get(s, [0])[0]
                           for s in CHANGELOG_STORES), 30, "A to replay the changelogs of B's partitions", app=a)
    produce(addr, "clicks", [rec(d, c) for d, c in clicks3])
    wait_processed(addr, ("clicks",), 60, a)
    produce(addr, "views", [rec(d, {"ts": END_TS, "vid": "end"}) for d in DEVICES])
    wait_processed(addr, ("views",), 60, a)
    assert a.stop() == 0, a.stderr()
    check_log(a, "A")

    # the outputs: exactly the reference's, each once
    all_views = views + [(d, {"ts": END_TS, "vid": "end"}) for d in DEVICES]
    want = reference(prof_recs, fixes, all_views, clicks) | reference(prof_recs, fixes + fixes2, all_views,
                                                                      clicks3)
    outs = [(r.key.decode(), canon(jloads(r.value)), r.timestamp) for r in read_all(addr, "out")]
    got = set(outs)
    missing, wrong = sorted(want - got), sorted(got - want)
    assert not missing and not wrong, (f"{len(missing)} missing, e.g. {missing[:5]}; "
                                       f"{len(wrong)} not in the reference, e.g. {wrong[:5]}")
    assert len(outs) == len(got), f"{len(outs) - len(got)} outputs repeated"
    # the third clicks saw the newer fixes, B's half included: at the fix and at the
    # tolerance after it, not 1 ms past
    news = {jloads(r.value)["id"]: jloads(r.value).get("fid") for r in read_all(addr, "out")
            if jloads(r.value)["id"] >= len(clicks)}
    assert sorted(news.values(), key=str) == sorted([f"{d}/new" for d, _ in fixes2] * 2 + [None] * len(fixes2),
                                                    key=str)

    # A's state: the fixes kept (the newer ones now the newest), every interval closed
    kept = asof_kept(fixes + fixes2)
    asof = state_values(tmp_path / "a", "__asof__1")
    assert set(asof) == set(kept)
    for d, st in asof.items():
        items = history(st, "h", 2)
        limit = items[-1][0] - ASOF_GRACE
        assert {(t, canon(r)) for t, r, *_ in items if t >= limit} == {(f["ts"], canon(f)) for f in kept[d]}, d
    close = END_TS - AFTER - IV_GRACE
    for d, st in state_values(tmp_path / "a", "__interval__1").items():
        assert st["wm"] == END_TS, (d, st)
        assert [x for x in history(st, "L", 3) if x[0] > close] == [], (d, st)
        assert [t for t, _ in history(st, "R", 2) if t > close - BEFORE] == [END_TS], (d, st)
    assert all(e > 0 for e in end_offsets(addr, "clicks").values())
