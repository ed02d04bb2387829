"""Windows end to end on the dev broker (docs/api.md, "Windows").

scripts/window_tumbling.lua aggregates {ts, x} rows per message key in 1000 ms
tumbling windows by the row's ts, with 500 ms of grace, and emits each window
when it closes ({start, end, n, s, lo, hi} on "out", keyed like the input, with
the window start as the record timestamp); late rows go to on_late, which
prints "late <key> <ts>".

The reference is computed here, independently, from the inputs as produced:
per key, in arrival order (one key lives in one partition), a window closes
when end + grace <= the largest ts seen for the key, and a row whose window
has closed is late.
"""

import json
import random
from collections import defaultdict

from conftest import (SCRIPTS, jloads, line_of, produce, read_all, run_cli, wait_committed_to_end,
                      wait_count)

SCRIPT = SCRIPTS / "window_tumbling.lua"
APP = "win-e2e"
SIZE, GRACE = 1000, 500
PARTS = 4
KEYS = [f"dev-{i}" for i in range(8)]
BASE = 1_700_000_000_000


def store_name():
    """The window's store: the app's first window's (its entries are named after its definition)."""
    return "__window__1"


CHANGELOG = f"{APP}__{store_name()}__changelog"


def make_rows(seed, n_per_key):
    """{key: [(ts, x)]}: time moving forward with out-of-order rows (within
    grace or not) and some rows far behind (late)."""
    rnd = random.Random(seed)
    rows = {}
    x = 0
    for key in KEYS:
        t = BASE + rnd.randrange(0, 3000)
        lst = []
        for _ in range(n_per_key):
            r = rnd.random()
            t += rnd.randrange(0, 400)
            if r < 0.1:
                ts = t - rnd.randrange(1500, 4000)  # most likely late
            elif r < 0.3:
                ts = t - rnd.randrange(0, 1400)     # out of order, maybe in grace
            else:
                ts = t
            x += 1
            lst.append((ts, x))
        rows[key] = lst
    return rows


def reference(rows):
    """({key: [window dict in emission order]}, {key: [late ts]})."""
    out, late = defaultdict(list), defaultdict(list)
    for key, lst in rows.items():
        wm = None
        windows = {}
        for ts, x in lst:
            start = ts - ts % SIZE
            if wm is not None and start + SIZE + GRACE <= wm:
                late[key].append(ts)
                continue
            windows.setdefault(start, []).append(x)
            wm = ts if wm is None else max(wm, ts)
            for s in sorted(windows):
                if s + SIZE + GRACE <= wm:
                    xs = windows.pop(s)
                    out[key].append({"start": s, "end": s + SIZE, "n": len(xs), "s": sum(xs),
                                     "lo": min(xs), "hi": max(xs)})
    return out, late


def records(rows, lo, hi):
    """The rows lo..hi-1 of every key, interleaved across keys, as produce() records."""
    recs = []
    for j in range(lo, hi):
        for key in KEYS:
            lst = rows[key]
            if j < len(lst):
                ts, x = lst[j]
                recs.append((key.encode(), json.dumps({"ts": ts, "x": x}).encode(), None))
    return recs


def outputs(addr):
    """{key: [window dict]} in output order; checks keys and record timestamps."""
    got = defaultdict(list)
    for r in read_all(addr, "out"):
        v = jloads(r.value)
        assert r.timestamp == v["start"], (r.timestamp, v)
        got[r.key.decode()].append(v)
    return got


def late_lines(*apps):
    got = defaultdict(list)
    for a in apps:
        for line in a.stdout().splitlines():
            if line.startswith("late "):
                _, key, ts = line.split()
                got[key].append(int(ts))
    return got


def test_tumbling_final_matches_reference_across_a_restart(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": PARTS, "out": PARTS, CHANGELOG: PARTS})
    rows = make_rows(seed=11, n_per_key=120)
    # a last row per key far ahead closes every window before it
    for key in KEYS:
        last = max(ts for ts, _ in rows[key])
        rows[key].append((last + 10 * SIZE, 0))
    ref, ref_late = reference(rows)
    n_out = sum(len(v) for v in ref.values())
    assert sum(len(v) for v in ref_late.values()) > 5, "the data has too few late rows"
    assert n_out > 100

    state = tmp_path / "state"
    half = 60
    app1 = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "in", records(rows, 0, half))
    wait_committed_to_end(broker.addr, APP, "in", 60, app=app1)
    assert app1.stop() == 0
    first = outputs(broker.addr)
    assert read_all(broker.addr, CHANGELOG), "no window state in the changelog"

    app2 = run_app(SCRIPT, broker.addr, "--state-dir", str(state))
    produce(broker.addr, "in", records(rows, half, len(rows[KEYS[0]])))
    wait_count(broker.addr, "out", n_out, 60, app=app2)
    wait_committed_to_end(broker.addr, APP, "in", 60, app=app2)
    assert app2.stop() == 0

    got = outputs(broker.addr)
    for key in KEYS:
        assert got[key] == ref[key], f"{key}: windows differ from the reference"
        # the windows out before the restart are a prefix, not repeated after it
        assert got[key][:len(first[key])] == first[key]
    assert late_lines(app1, app2) == dict(ref_late)
    # one log line for late rows per run at most
    for a in (app1, app2):
        assert a.stderr().count("dropped a late row") <= 1, a.stderr()


def test_bad_window_exits_2_naming_the_line():
    script = SCRIPTS / "window_bad_step.lua"
    r = run_cli("run", str(script))
    assert r.returncode == 2, r.stderr
    line = line_of(script, "E2E:bad")
    assert f"{script}:{line}: hopping_window: step (1000 ms) must be smaller than size (1000 ms)" in r.stderr
