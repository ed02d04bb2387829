"""Hopping, sliding, session and count windows, closing on idleness, and window
state across SIGKILL and a lost state dir, end to end on the dev broker
(docs/windows.md, docs/api.md "Windows").

Every expected window is computed here by an independent reference written
from the semantics in docs/windows.md, per message key, over the rows in
arrival order (a key lives in one partition, so its rows arrive in the order
produced):

- watermark: the largest ts seen for the key; a time window closes when
  end + grace <= watermark (sliding windows: end + 1 + grace), right after the
  row that raised the watermark is added; final() emits closed windows in order
  of end, current() emits after every row each window the row updated (or
  created) in order of start;
- hopping D, S: the windows [s, s + D) with s a multiple of S and
  s <= t < s + D; a row is late for a window already closed, counts in its
  other windows, and is dropped (to on_late) when late for all;
- sliding D (both ends inclusive): every row t has its window [t - D, t]; the
  window [r + 1, r + 1 + D] after a row r exists once a later row falls in it;
  a new window holds every row (not dropped) in its range; no closed window
  is updated or made again; a row is late when its own window is closed and
  no open window holds it (nor a window made after an earlier row that it
  falls in); a late row is dropped and makes no window, not even the one
  after it;
- session gap: rows less than gap apart share a session [first, last + gap);
  a row bridging sessions merges them (collect: the sessions' values in order
  of start, then the row's); a row whose own [t, t + gap) is closed is late;
- count windows: each key's rows by arrival, start/end the smallest/largest
  ts, final() emits full windows only;
- aggregations skip null and absent values and are null over none; count()
  counts rows; std is the sample standard deviation (null below two values).
"""

import json
import math
import random
import re
import shutil
import signal
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from conftest import (SCRIPTS, App, Broker, Record, _consumer, committed, end_offsets, jloads,
                      produce, wait_until)

PARTS = 4
BASE = 1_700_000_000_000
MISSING = object()  # a row without an x column

# --------------------------------------------------------------------------
# input data


# The windows of scripts/window_kinds.lua (and the session of
# scripts/window_session_eos.lua), which the data is made for.
HOP_SIZE, HOP_STEP, HOP_GRACE = 1000, 400, 300
SLIDE_SIZE, SLIDE_GRACE = 600, 200
GAP, SESS_GRACE = 500, 400


def make_rows(seed, keys, n_per_key):
    """{key: [(ts, x)]}: time moves forward (wm: the largest ts so far) in
    small steps, sometimes by 0, by exactly one session gap or by a larger
    jump; some rows come out of order (within grace or not), some far behind
    (late), and some land exactly on a closing boundary or one ms inside it
    (forward: the row closes a window exactly; backward: a row exactly late or
    just not). x is an int, None (JSON null) or MISSING. The last row of every
    key is far ahead and closes every window before it."""
    rnd = random.Random(seed)
    hop_reach = HOP_SIZE + HOP_GRACE

    def forward(wm):
        r = rnd.random()
        if r < 0.05:
            return 0
        if r < 0.55:
            return rnd.randrange(1, 250)
        if r < 0.62:
            return GAP
        if r < 0.72:  # closes a window exactly, or leaves it open by 1 ms
            d = rnd.choice([0, -1])
            target = rnd.choice([
                wm + SLIDE_GRACE + 1 + d,              # [wm - size, wm]: end + 1 + grace
                wm + GAP + SESS_GRACE + d,             # a session ending at wm + gap
                # a hopping window: its end + grace, the next one after wm
                wm + (hop_reach - wm) % HOP_STEP + d,
            ])
            return max(target - wm, 0)
        if r < 0.82:
            return rnd.randrange(GAP + 1, 2500)
        return rnd.randrange(1, 120)

    def backward(wm):
        r = rnd.random()
        if r < 0.45:
            return wm - rnd.randrange(1, 700)          # out of order, maybe within grace
        if r < 0.70:
            return wm - rnd.randrange(1200, 5000)      # far behind: mostly late
        d = rnd.choice([0, 1])                         # exactly on the boundary, or 1 ms inside
        s0 = wm - hop_reach - (wm - hop_reach) % HOP_STEP  # the latest hopping window closed
        return rnd.choice([
            wm - SLIDE_GRACE - 1 + d,                  # its own sliding window closed, or not
            wm - GAP - SESS_GRACE + d,                 # its own session closed, or not
            s0 + rnd.choice([0, HOP_STEP - 1, HOP_SIZE - 1]),  # in a hopping window just closed
        ])

    rows = {}
    for key in keys:
        wm = BASE + rnd.randrange(0, 3000)
        lst = [(wm, rnd.randrange(-20, 100))]
        while len(lst) < n_per_key:
            ts = backward(wm) if rnd.random() < 0.25 else wm + forward(wm)
            v = rnd.random()
            x = None if v < 0.06 else MISSING if v < 0.10 else rnd.randrange(-20, 100)
            lst.append((ts, x))
            wm = max(wm, ts)
        lst.append((wm + 20000, 0))
        rows[key] = lst
    return rows


def row_json(ts, x):
    d = {"ts": ts}
    if x is not MISSING:
        d["x"] = x
    return d


def records(rows, keys, lo, hi):
    """Rows lo..hi-1 of every key, interleaved across keys, as produce() records."""
    recs = []
    for j in range(lo, hi):
        for key in keys:
            if j < len(rows[key]):
                ts, x = rows[key][j]
                recs.append((key.encode(), json.dumps(row_json(ts, x)).encode(), None))
    return recs


# --------------------------------------------------------------------------
# the reference


def values(xs):
    return [x for x in xs if x is not None and x is not MISSING]


def sample_std(v):
    if len(v) < 2:
        return None
    mean = Fraction(sum(v), len(v))
    var = sum((Fraction(x) - mean) ** 2 for x in v) / (len(v) - 1)
    return math.sqrt(var)


def aggs(xs, names):
    """The aggregations named in names over the x values xs (in window order)."""
    v = values(xs)
    full = {
        "n": lambda: len(xs),
        "s": lambda: sum(v) if v else None,
        "lo": lambda: min(v) if v else None,
        "hi": lambda: max(v) if v else None,
        "mean": lambda: sum(v) / len(v) if v else None,
        "c": lambda: list(v) if v else None,
        "sd": lambda: sample_std(v),
    }
    return {k: full[k]() for k in names}


BASIC = ("n", "s", "lo", "hi", "mean")


def win(start, end, xs, names):
    return {"start": start, "end": end, **aggs(xs, names)}


def hopping_ref(rows, size, step, grace, names=BASIC, stats=None):
    """final(): ([window], [late (ts, x)]). stats counts the cases met."""
    stats = defaultdict(int) if stats is None else stats
    out, late = [], []
    wm, wins = None, {}
    for ts, x in rows:
        starts = []
        s = ts - ts % step
        while s > ts - size:
            starts.append(s)
            s -= step
        open_ = [s for s in starts if wm is None or s + size + grace > wm]
        if not open_:
            late.append((ts, x))
            continue
        stats["late for some windows only"] += len(open_) < len(starts)
        for s in open_:
            wins.setdefault(s, []).append(x)
        wm = ts if wm is None else max(wm, ts)
        for s in sorted(wins):
            if s + size + grace <= wm:
                out.append(win(s, s + size, wins.pop(s), names))
    return out, late


def sliding_ref(rows, size, grace, mode, names=BASIC, stats=None):
    """Sliding windows [s, s + size], both ends inclusive. mode "current" or
    "final". ([window], [late (ts, x)]). stats counts the cases met."""
    stats = defaultdict(int) if stats is None else stats
    out, late = [], []
    kept = []    # (ts, x) of the rows not dropped, in arrival order
    wins = {}    # start -> indexes into kept, in arrival order
    wm = None

    def closed(end):
        return wm is not None and end + 1 + grace <= wm

    def members(s):
        return [j for j, (r, _) in enumerate(kept) if s <= r <= s + size]

    for ts, x in rows:
        holding = [s for s in wins if s <= ts <= s + size]
        new = []  # windows this row makes that hold it
        if ts - size not in wins and not closed(ts):
            new.append(ts - size)                  # its own window
        for r, _ in kept:
            s = r + 1                              # the window after an earlier row
            if r < ts <= s + size and s not in wins and s not in new and not closed(s + size):
                new.append(s)
        if not holding and not new:
            late.append((ts, x))
            continue
        stats["out of order, not late"] += wm is not None and ts < wm
        stats["own window closed, counted in others"] += closed(ts)
        stats["held only by a window it makes after an earlier row"] += \
            not holding and ts - size not in new
        stats["makes the window after an earlier row"] += any(s != ts - size for s in new)
        kept.append((ts, x))
        i = len(kept) - 1
        updated = set(holding) | set(new)
        for s in holding:
            wins[s].append(i)
        for s in new:
            wins[s] = members(s)
        after = ts + 1                             # the window after this row
        if after not in wins and not closed(after + size):
            m = members(after)
            if m:
                wins[after] = m
                updated.add(after)
                stats["makes the window after itself"] += 1
        if mode == "current":
            for s in sorted(updated):
                out.append(win(s, s + size, [kept[j][1] for j in wins[s]], names))
        wm = ts if wm is None else max(wm, ts)
        for s in sorted(wins):
            if closed(s + size):
                idx = wins.pop(s)
                if mode == "final":
                    out.append(win(s, s + size, [kept[j][1] for j in idx], names))
    return out, late


def session_ref(rows, gap, grace, mode, names, stats=None):
    """([window], [late (ts, x)]). stats counts the cases met."""
    stats = defaultdict(int) if stats is None else stats
    out, late = [], []
    sessions = []  # [first, last, xs]
    wm = None
    for ts, x in rows:
        if wm is not None and ts + gap + grace <= wm:
            late.append((ts, x))
            continue
        joined = sorted((s for s in sessions if s[0] - gap < ts < s[1] + gap), key=lambda s: s[0])
        stats["merges sessions"] += len(joined) > 1
        stats["exactly gap from an open session"] += any(ts in (s[0] - gap, s[1] + gap) for s in sessions)
        stats["out of order, not late"] += wm is not None and ts < wm
        for s in joined:
            sessions.remove(s)
        merged = [min([ts] + [s[0] for s in joined]), max([ts] + [s[1] for s in joined]),
                  [v for s in joined for v in s[2]] + [x]]
        sessions.append(merged)
        if mode == "current":
            out.append(win(merged[0], merged[1] + gap, merged[2], names))
        wm = ts if wm is None else max(wm, ts)
        for s in sorted(sessions, key=lambda s: s[1]):
            if s[1] + gap + grace <= wm:
                sessions.remove(s)
                if mode == "final":
                    out.append(win(s[0], s[1] + gap, s[2], names))
    return out, late


def count_window(rs, names=BASIC):
    return win(min(t for t, _ in rs), max(t for t, _ in rs), [x for _, x in rs], names)


def tumbling_count_ref(rows, n):
    return [count_window(rows[i:i + n]) for i in range(0, len(rows) - n + 1, n)]


def hopping_count_ref(rows, n, step):
    return [count_window(rows[i:i + n]) for i in range(0, len(rows) - n + 1, step)]


def sliding_count_ref(rows, n):
    return [count_window(rows[i - n + 1:i + 1]) for i in range(n - 1, len(rows))]


def per_key(rows, fn):
    """fn(key rows) -> (windows, late) or windows, for every key:
    ({key: windows}, {key: late})."""
    wins, late = {}, {}
    for key, lst in rows.items():
        r = fn(lst)
        wins[key], late[key] = r if isinstance(r, tuple) else (r, [])
    return wins, late


# --------------------------------------------------------------------------
# comparing


FLOATS = ("mean", "sd")


def same(got, exp):
    if set(got) != set(exp):
        return False
    for k, e in exp.items():
        g = got[k]
        if k in FLOATS and e is not None and isinstance(g, (int, float)):
            if not math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif g != e:
            return False
    return True


def fmt_rows(rows):
    return " ".join(f"{ts - BASE}:{'-' if x is MISSING else x}" for ts, x in rows)


def window_problems(kind, got, ref, rows):
    """got/ref: {key: [window]} in output order. Per key that differs, a text
    naming the first window that differs, with the key's input (ts - BASE : x,
    in arrival order)."""
    problems = []
    for key in sorted(set(ref) | set(got)):
        g, e = got.get(key, []), ref.get(key, [])
        i = 0
        while i < min(len(g), len(e)) and same(g[i], e[i]):
            i += 1
        if i == len(g) == len(e):
            continue
        rel = lambda w: w if w is None else {**w, "start": w["start"] - BASE, "end": w["end"] - BASE}
        problems.append(
            f"{kind} {key}: {len(g)} windows, expected {len(e)}; first difference at #{i}:\n"
            f"  got      {rel(g[i]) if i < len(g) else None}\n"
            f"  expected {rel(e[i]) if i < len(e) else None}\n"
            f"  input (ts-{BASE}:x): {fmt_rows(rows[key])}")
    return problems


def no_problems(problems):
    assert not problems, "\n".join(problems[:4]) + (f"\n... {len(problems)} in all"
                                                    if len(problems) > 4 else "")


def check_windows(kind, got, ref, rows):
    no_problems(window_problems(kind, got, ref, rows))


def late_problems(kind, got, ref):
    """got/ref: {key: [ts]} of late rows. Per key that differs, a text."""
    return [f"{kind} {key}: late rows (ts-{BASE}) {[t - BASE for t in got.get(key, [])]}, "
            f"expected {[t - BASE for t in ref.get(key, [])]}"
            for key in sorted(set(got) | set(ref)) if got.get(key, []) != ref.get(key, [])]


def read_topics(addr, topics, timeout=30, **conf):
    """{topic: [Record]} of every record of the topics, from the beginning to
    the current end of every partition, in (partition, offset) order; one
    consumer for all (conf: more consumer properties, e.g. isolation.level)."""
    c = _consumer(addr, **conf)
    out = {t: [] for t in topics}
    try:
        md = c.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics if t in md
               for p in md[t].partitions]
        if not tps:
            return out
        c.assign(tps)
        left = {(tp.topic, tp.partition) for tp in tps}
        deadline = time.monotonic() + timeout
        while left:
            assert time.monotonic() < deadline, f"reading {topics}: no end of {sorted(left)}"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                left.discard((m.topic(), m.partition()))
                continue
            left.add((m.topic(), m.partition()))
            out[m.topic()].append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                         m.headers() or [], m.timestamp()[1]))
    finally:
        c.close()
    for recs in out.values():
        recs.sort(key=lambda r: (r.partition, r.offset))
    return out


def windows_of(recs):
    """{key: [window dict]} of window records in output order; every record is
    keyed and its timestamp is the window's start."""
    got = defaultdict(list)
    for r in recs:
        v = jloads(r.value)
        assert r.key is not None, v
        assert r.timestamp == v["start"], (r.timestamp, v)
        got[r.key.decode()].append(v)
    return dict(got)


def topic_windows(addr, topic):
    return windows_of(read_topics(addr, [topic])[topic])


def late_printed(stdout, prefix):
    """{key: [ts]} of the lines "late <prefix...> <key> <ts>"."""
    got = defaultdict(list)
    for line in stdout.splitlines():
        words = line.split()
        if words[:1 + len(prefix)] == ["late", *prefix] and len(words) == 3 + len(prefix):
            got[words[-2]].append(int(words[-1]))
    return dict(got)


def wait_processed(addr, group, topic, timeout, app):
    """Waits until group has committed the end of every partition of topic
    that holds records (an empty partition gets no commit)."""
    def done():
        end = end_offsets(addr, topic)
        got = committed(addr, group, topic)
        return all(got.get(p) == e for p, e in end.items() if e > 0)
    wait_until(done, timeout, f"group {group} to commit the end of {topic}", interval=0.3, app=app)


def wait_count(addr, topic, n, timeout, app):
    """Waits until topic holds at least n records."""
    wait_until(lambda: sum(end_offsets(addr, topic).values()) >= n, timeout,
               f"{n} records on {topic}", interval=0.2, app=app)


def late_ts(late):
    return {k: [ts for ts, _ in v] for k, v in late.items() if v}


# --------------------------------------------------------------------------
# The exactly-once scenarios (3, 4 below) spend most of their time waiting for
# the consumer group (a killed member's session to time out, the dev broker's
# 3 s delay on a first join), so they start in the background, each with its
# own broker, when the module starts, and their tests collect the results.

EOS_TESTS = ("test_sigkill_mid_window_exactly_once_same_state_dir",
             "test_lost_state_dir_rebuilt_from_the_changelog")


@pytest.fixture(scope="module", autouse=True)
def eos_runs(request, luastream_bin, tmp_path_factory):
    """{lose_state: Future of run_kill_restart's result}, started only when
    one of EOS_TESTS is among the tests to run."""
    wanted = [lose for lose, name in ((False, EOS_TESTS[0]), (True, EOS_TESTS[1]))
              if any(i.name == name and i.module is request.module for i in request.session.items)]
    tmp = tmp_path_factory.mktemp("eos")
    started = []
    pool = ThreadPoolExecutor(2)
    futures = {lose: pool.submit(run_kill_restart, tmp / ("lost" if lose else "kill"),
                                 "wk-eos-lost" if lose else "wk-eos-kill", lose, started)
               for lose in wanted}
    try:
        yield futures
    finally:
        for f in futures.values():
            f.exception()  # waits for it to end
        pool.shutdown()
        for x in started:
            x.kill() if isinstance(x, App) else x.stop()


# --------------------------------------------------------------------------
# 1. every kind against the reference, across a clean restart


KINDS_SCRIPT = SCRIPTS / "window_kinds.lua"
KINDS_APP = "wk-e2e"
KINDS_KEYS = [f"dev-{i}" for i in range(8)]
KINDS_SEED = 20240917
# One key with a chosen sequence (ts - BASE): at 3399 the watermark is 4026,
# the row's own sliding window [2799, 3399] is closed (3399 + 1 + 200 <=
# 4026) and no open window holds it, so it is late, although the window after
# it, [3400, 4000], would be open and hold the rows 3607, 3654, 3815.
EDGE_KEY = "edge-0"
EDGE_ROWS = [(BASE + t, x) for t, x in ((3607, 51), (3654, 80), (3815, 19), (4026, 35), (3399, 8),
                                        (4085, 33), (30000, 0))]


KINDS_TOPICS = ["in", "hop", "hop_late", "slide", "sess", "sess_late", "sess_cur",
                "tcount", "hcount", "scount"]
SESS_NAMES = BASIC + ("c", "sd")


def kinds_rows():
    rows = make_rows(seed=KINDS_SEED, keys=KINDS_KEYS, n_per_key=120)
    rows[EDGE_KEY] = EDGE_ROWS
    return rows


@pytest.fixture(scope="module")
def kinds(luastream_bin, tmp_path_factory):
    """Runs scripts/window_kinds.lua over kinds_rows() (8 keys x 121 rows, and
    EDGE_KEY's 7), interleaved across keys: the first half, SIGTERM, a second
    run on the same state dir for the rest. Returns ({topic: [Record]}, rows,
    [apps])."""
    tmp = tmp_path_factory.mktemp("kinds")
    broker = Broker(tmp / "broker", {t: PARTS for t in KINDS_TOPICS})
    apps = []
    try:
        rows = kinds_rows()
        n = max(map(len, rows.values()))
        state = tmp / "state"
        half = n // 2
        for lo, hi in ((0, half), (half, n)):
            app = App(tmp / f"app{len(apps)}", KINDS_SCRIPT, broker.addr,
                      ("--state-dir", str(state)))
            apps.append(app)
            produce(broker.addr, "in", records(rows, list(rows), lo, hi))
            wait_processed(broker.addr, KINDS_APP, "in", 90, app=app)
            assert app.stop() == 0, app.stderr()
        assert sum(1 for e in end_offsets(broker.addr, "in").values() if e > 0) >= 3, \
            "the keys landed in too few partitions"
        yield read_topics(broker.addr, KINDS_TOPICS), rows, apps
    finally:
        for a in apps:
            a.kill()
        broker.stop()


def late_rows_of(recs):
    """{key: [row dict]} of the records of an on_late topic."""
    got = defaultdict(list)
    for r in recs:
        got[r.key.decode()].append(jloads(r.value))
    return dict(got)


def late_printed_by(apps, branch):
    got = defaultdict(list)
    for a in apps:
        for k, v in late_printed(a.stdout(), [branch]).items():
            got[k] += v
    return dict(got)


def test_hopping_final_matches_reference(kinds):
    topics, rows, _ = kinds
    ref, late = per_key(rows, lambda r: hopping_ref(r, HOP_SIZE, HOP_STEP, HOP_GRACE))
    assert sum(map(len, late.values())) >= 10, "too few late rows in the data"
    check_windows("hopping", windows_of(topics["hop"]), ref, rows)
    # the on_late topic gets the rows as they came, keyed like them
    assert late_rows_of(topics["hop_late"]) == \
        {k: [row_json(ts, x) for ts, x in v] for k, v in late.items() if v}


def test_sliding_current_matches_reference(kinds):
    topics, rows, apps = kinds
    ref, late = per_key(rows, lambda r: sliding_ref(r, SLIDE_SIZE, SLIDE_GRACE, "current"))
    assert sum(map(len, late.values())) >= 10, "too few late rows in the data"
    assert BASE + 3399 in late_ts(late)[EDGE_KEY]
    no_problems(late_problems("sliding", late_printed_by(apps, "slide"), late_ts(late)) +
                window_problems("sliding", windows_of(topics["slide"]), ref, rows))


def test_session_final_matches_reference(kinds):
    topics, rows, _ = kinds
    ref, late = per_key(rows, lambda r: session_ref(r, GAP, SESS_GRACE, "final", SESS_NAMES))
    assert sum(map(len, late.values())) >= 10, "too few late rows in the data"
    check_windows("session", windows_of(topics["sess"]), ref, rows)
    assert late_rows_of(topics["sess_late"]) == \
        {k: [row_json(ts, x) for ts, x in v] for k, v in late.items() if v}


def test_session_current_matches_reference(kinds):
    topics, rows, apps = kinds
    ref, late = per_key(rows, lambda r: session_ref(r, GAP, SESS_GRACE, "current", ("n", "s", "c")))
    no_problems(late_problems("session current", late_printed_by(apps, "sess_cur"), late_ts(late)) +
                window_problems("session current", windows_of(topics["sess_cur"]), ref, rows))


def test_count_windows_final_match_reference(kinds):
    topics, rows, _ = kinds
    problems = []
    for kind, topic, fn in (("tumbling count", "tcount", lambda r: tumbling_count_ref(r, 4)),
                            ("hopping count", "hcount", lambda r: hopping_count_ref(r, 5, 2)),
                            ("sliding count", "scount", lambda r: sliding_count_ref(r, 3))):
        ref, _ = per_key(rows, fn)
        problems += window_problems(kind, windows_of(topics[topic]), ref, rows)
    no_problems(problems)


def test_the_data_covers_the_cases():
    """The data meets the cases these tests mean to cover (as the reference
    sees them): hopping rows late for some of their windows only; sliding rows
    out of order within grace, rows whose own window is closed but that count
    in later ones, windows made after earlier rows and after out-of-order rows;
    sessions merged by a bridging row, rows exactly one gap from an open
    session; windows whose aggregates are null (no value), sessions with one
    value (std null); rows exactly on a closing boundary."""
    rows = kinds_rows()
    hop, slide, sess = defaultdict(int), defaultdict(int), defaultdict(int)
    nulls = defaultdict(int)
    for lst in rows.values():
        nulls["hop"] += sum(w["s"] is None
                            for w in hopping_ref(lst, HOP_SIZE, HOP_STEP, HOP_GRACE, stats=hop)[0])
        nulls["slide"] += sum(w["s"] is None
                              for w in sliding_ref(lst, SLIDE_SIZE, SLIDE_GRACE, "current", stats=slide)[0])
        wins = session_ref(lst, GAP, SESS_GRACE, "final", SESS_NAMES, stats=sess)[0]
        nulls["sess"] += sum(w["s"] is None for w in wins)
        nulls["sess sd"] += sum(w["sd"] is None and w["s"] is not None for w in wins)
    assert hop["late for some windows only"] >= 5, dict(hop)
    assert all(slide[c] >= 3 for c in ("out of order, not late", "own window closed, counted in others",
                                         "makes the window after an earlier row",
                                         "makes the window after itself")), dict(slide)
    assert min(sess.values()) >= 5 and len(sess) == 3, dict(sess)
    assert min(nulls.values()) >= 1 and nulls["sess sd"] >= 5, dict(nulls)
    # closing and lateness one ms either way give other windows on this data
    for name, fn in (("hopping", lambda r, g: hopping_ref(r, HOP_SIZE, HOP_STEP, g)),
                     ("sliding", lambda r, g: sliding_ref(r, SLIDE_SIZE, g, "final")),
                     ("session", lambda r, g: session_ref(r, GAP, g, "final", ("n",)))):
        grace = {"hopping": HOP_GRACE, "sliding": SLIDE_GRACE, "session": SESS_GRACE}[name]
        exact = {k: fn(v, grace) for k, v in rows.items()}
        for g in (grace - 1, grace + 1):
            assert any(fn(v, g) != exact[k] for k, v in rows.items()), (name, g)


# --------------------------------------------------------------------------
# 2. close_on_idle through the loop's timer


IDLE_SCRIPT = SCRIPTS / "window_idle.lua"
IDLE_APP = "wk-idle"
IDLE_KEYS = [f"idle-{i}" for i in range(6)]


def idle_rows(seed):
    """{key: [(ts, x)]}: increasing ts over a few 1000 ms windows."""
    rnd = random.Random(seed)
    rows = {}
    for key in IDLE_KEYS:
        t = BASE + rnd.randrange(0, 1000)
        lst = []
        for _ in range(12):
            t += rnd.randrange(50, 450)
            lst.append((t, rnd.randrange(1, 50)))
        rows[key] = lst
    return rows


def idle_ref(rows):
    """({key: windows closed by the watermark}, {key: every window, in order of
    emission: those, then the ones an idle close flushes})."""
    by_wm, every = {}, {}
    for key, lst in rows.items():
        wm, wins, out = None, {}, []
        for ts, x in lst:
            s = ts - ts % 1000
            assert wm is None or s + 1200 > wm
            wins.setdefault(s, []).append(x)
            wm = ts if wm is None else max(wm, ts)
            for s in sorted(wins):
                if s + 1200 <= wm:
                    out.append(win(s, s + 1000, wins.pop(s), ("n", "s")))
        by_wm[key] = list(out)
        every[key] = out + [win(s, s + 1000, wins[s], ("n", "s")) for s in sorted(wins)]
    return by_wm, every


def idle_records(rows):
    return records(rows, IDLE_KEYS, 0, max(map(len, rows.values())))


def stats_in(app):
    return app.stats()[0]


def test_close_on_idle_flushes_the_last_windows_without_another_row(broker_factory, run_app):
    """close_on_idle = 1000: after the rows, with nothing more produced, every
    key's last windows come out (the loop's timer finds the idle keys), after
    those closed by the watermark, in order of end."""
    broker = broker_factory({"in": PARTS, "out": PARTS})
    rows = idle_rows(5)
    by_wm, every = idle_ref(rows)
    assert sum(map(len, every.values())) > sum(map(len, by_wm.values())) >= 8
    app = run_app(IDLE_SCRIPT, broker.addr)
    produce(broker.addr, "in", idle_records(rows))
    wait_count(broker.addr, "out", sum(map(len, every.values())), 60, app=app)
    time.sleep(0.5)  # and no more
    check_windows("idle", topic_windows(broker.addr, "out"), every, rows)
    assert app.stop() == 0, app.stderr()
    assert stats_in(app) == sum(map(len, rows.values())), app.stderr()


def test_close_on_idle_after_a_restart(broker_factory, run_app, tmp_path):
    """The idle deadlines live in the store (LMDB). close_on_idle = 6000 here,
    so that the first run stops before its rows are idle long enough, also on
    a busy machine, and the watermark an idle close leaves is still there a
    moment later (a key is forgotten one idle period after its windows closed).
    A first run processes the rows and stops; a second run on the same state
    dir, given no row at all, closes the last windows; nothing is emitted twice.
    The idle close raised the key's watermark to end + grace of the windows it
    closed: a row after the key's last one but in its last (closed) window is
    late."""
    broker = broker_factory({"in": PARTS, "out": PARTS})
    rows = idle_rows(6)
    by_wm, every = idle_ref(rows)
    state = tmp_path / "state"
    env = {"E2E_IDLE": "6000"}
    app1 = run_app(IDLE_SCRIPT, broker.addr, "--state-dir", str(state), env=env)
    produce(broker.addr, "in", idle_records(rows))
    produced = time.monotonic()
    wait_processed(broker.addr, IDLE_APP, "in", 60, app=app1)
    assert app1.stop() == 0, app1.stderr()
    took = time.monotonic() - produced
    first = topic_windows(broker.addr, "out")
    assert first == {k: v for k, v in by_wm.items() if v}, \
        f"the first run closed idle windows before its stop ({took:.1f} s after producing)"

    app2 = run_app(IDLE_SCRIPT, broker.addr, "--state-dir", str(state), env=env)
    wait_count(broker.addr, "out", sum(map(len, every.values())), 60, app=app2)
    check_windows("idle after a restart", topic_windows(broker.addr, "out"), every, rows)

    key = IDLE_KEYS[0]
    last_ts = rows[key][-1][0]
    ts = last_ts - last_ts % 1000 + 999
    assert ts > last_ts
    produce(broker.addr, "in", [(key.encode(), json.dumps({"ts": ts, "x": 1}).encode(), None)])
    wait_until(lambda: late_printed(app2.stdout(), []), 30, "the late row", app=app2)
    assert app2.stop() == 0, app2.stderr()
    assert late_printed(app2.stdout(), []) == {key: [ts]}
    assert stats_in(app2) == 1, app2.stderr()
    check_windows("idle after a restart", topic_windows(broker.addr, "out"), every, rows)


# --------------------------------------------------------------------------
# 3, 4. exactly-once: SIGKILL mid-window, on the same state dir or a lost one
#
# The dev broker accepts transactions but does not enforce them
# (docs/dev-broker.md): offsets sent in a transaction are discarded, and the
# records of an aborted (or never committed) transaction stay readable, also
# with isolation.level=read_committed. The runs are laid out so that the
# outcome is determined there, and the outputs are read with read_committed:
#   run 0, at-least-once: the first third of the input, a clean stop; its
#     offsets are a plain commit, which the dev broker keeps, and its window
#     state is checkpointed (LMDB, changelog);
#   run 1, exactly-once: the second third, SIGKILLed once its windows are out
#     (sessions still open); its outputs carry run = "1";
#   run 2, exactly-once, on the same state dir or on a new empty one: the rest.
#     The group's committed offsets are run 0's, so it must restore exactly
#     the window state of run 0's commit and re-read from there.
# The outputs of runs 0 and 2 must be the reference exactly: every window
# once, with the right aggregates, in order per key; run 1's must be the
# right windows as far as it got.
#
# With the same state dir, run 1 checkpoints nothing (commit_interval 600 s):
# the kill loses the open transaction (which a real Kafka aborts, hiding its
# records from read_committed consumers; the dev broker shows them, and they
# are told apart by run = "1") and every window change since run 0, and run 2
# goes on from the state in LMDB. With a lost state dir, run 1 checkpoints
# every 0.3 s, so the changelog also holds run 1's window state past run 0's
# commit: run 2 rebuilds the state from the changelog and must apply run 0's
# records and none of run 1's (on a real Kafka, which keeps run 1's
# transactional offsets, it would apply those too and go on after them).

EOS_SCRIPT = SCRIPTS / "window_session_eos.lua"
EOS_KEYS = [f"car-{i}" for i in range(6)]
EOS_NAMES = ("n", "s", "lo", "hi", "c")
EOS = ("--set", "guarantee=exactly-once")
# the killed member leaves the group after 4 s instead of 6. Every run of a
# group has it: the dev broker holds a join for up to the session timeout of the
# member that left last, less 1 s, and drops a joining member whose own session
# ends first, its join never answered (run 1 joining within a second of run 0's
# exit, with 6 s for run 0 and 4 s for run 1, waited forever)
QUICK_LEAVE = ("--set", "kafka.session.timeout.ms=4000", "--set", "kafka.heartbeat.interval.ms=500")


def eos_outputs(addr):
    """{run: {key: [window]}} read with isolation.level=read_committed, in
    output order."""
    got = defaultdict(lambda: defaultdict(list))
    recs = read_topics(addr, ["out"], **{"isolation.level": "read_committed"})["out"]
    for key, wins in windows_of(recs).items():
        for w in wins:
            got[w.pop("run")][key].append(w)
    return got


def n_run_outputs(addr, run):
    return sum(1 for r in read_topics(addr, ["out"])["out"] if jloads(r.value).get("run") == run)


def replayed(stderr):
    """[(partition, seen, applied)] of the 'replayed N changelog records' lines."""
    return [(int(p), int(n), int(a)) for p, n, a in re.findall(
        r"state __window__1\[(\d+)\]: replayed (\d+) changelog records \((\d+) applied\)", stderr)]


def run_kill_restart(workdir, app_name, lose_state, started):
    """Runs 0, 1 (killed) and 2 as described above, in workdir, with its own
    broker; checks the outputs and the late rows; returns the three apps.
    started: a list the broker and apps are added to (for the teardown)."""
    broker = Broker(workdir / "broker", {"in": PARTS, "out": PARTS})
    started.append(broker)

    def run_app(script, addr, *args, env=None):
        app = App(workdir / f"app{len(started)}", script, addr, args, env)
        started.append(app)
        return app

    changelog = f"{app_name}____window__1__changelog"
    rows = make_rows(seed=77 if lose_state else 78, keys=EOS_KEYS, n_per_key=90)
    n = len(rows[EOS_KEYS[0]])
    a, b = n // 3, 2 * n // 3

    def ref_upto(hi):
        return per_key({k: v[:hi] for k, v in rows.items()},
                       lambda r: session_ref(r, GAP, SESS_GRACE, "final", EOS_NAMES))

    ref, ref_late = ref_upto(n)
    n_a = sum(map(len, ref_upto(a)[0].values()))
    n_b = sum(map(len, ref_upto(b)[0].values()))
    n_all = sum(map(len, ref.values()))
    assert n_a < n_b < n_all

    state = workdir / "state"
    common = ("--name", app_name, "--state-dir", str(state), *QUICK_LEAVE)
    run0 = run_app(EOS_SCRIPT, broker.addr, *common, env={"E2E_RUN": "0"})
    produce(broker.addr, "in", records(rows, EOS_KEYS, 0, a))
    wait_processed(broker.addr, app_name, "in", 60, app=run0)
    assert run0.stop() == 0, run0.stderr()
    assert n_run_outputs(broker.addr, "0") == n_a
    log_after_run0 = sum(end_offsets(broker.addr, changelog).values())
    assert log_after_run0 > 0

    run1 = run_app(EOS_SCRIPT, broker.addr, *common, *EOS,
                   env={"E2E_RUN": "1", "E2E_COMMIT_INTERVAL": "0.3" if lose_state else "600"})
    produce(broker.addr, "in", records(rows, EOS_KEYS, a, b))
    wait_until(lambda: n_run_outputs(broker.addr, "1") >= n_b - n_a, 60,
               "the windows of the second third", interval=0.2, app=run1)
    if lose_state:  # a checkpoint of run 1 is in the changelog
        wait_until(lambda: sum(end_offsets(broker.addr, changelog).values()) > log_after_run0, 30,
                   "a checkpoint of run 1", interval=0.2, app=run1)
    run1.stop(sig=signal.SIGKILL)
    log_after_run1 = sum(end_offsets(broker.addr, changelog).values())
    if lose_state:
        shutil.rmtree(state)
    else:
        assert log_after_run1 == log_after_run0, "run 1 checkpointed before the kill"

    run2 = run_app(EOS_SCRIPT, broker.addr, *common, *EOS, env={"E2E_RUN": "2"})
    produce(broker.addr, "in", records(rows, EOS_KEYS, b, n))
    wait_until(lambda: n_run_outputs(broker.addr, "2") >= n_all - n_a, 60,
               "the windows of the restarted run", interval=0.3, app=run2)
    time.sleep(1.0)  # and no more
    assert run2.stop() == 0, run2.stderr()

    got = eos_outputs(broker.addr)
    assert set(got) <= {"0", "1", "2"}, set(got)
    kept = {k: got["0"].get(k, []) + got["2"].get(k, []) for k in set(got["0"]) | set(got["2"])}
    check_windows("session, runs 0 and 2", kept, ref, rows)
    assert sum(map(len, got["1"].values())) == n_b - n_a
    for key, wins in got["1"].items():
        done = len(got["0"].get(key, []))
        check_windows("session, the killed run 1", {key: wins},
                      {key: ref[key][done:done + len(wins)]}, rows)

    late = defaultdict(list)
    for app, run in ((run0, "0"), (run2, "2")):
        for k, v in late_printed(app.stdout(), [run]).items():
            late[k] += v
    assert dict(late) == late_ts(ref_late)
    return run0, run1, run2


def test_sigkill_mid_window_exactly_once_same_state_dir(eos_runs):
    _, _, run2 = eos_runs[False].result()
    # the state came from LMDB: nothing past its mark in the changelog
    assert all(seen == 0 for _, seen, _ in replayed(run2.stderr())), run2.stderr()


def test_lost_state_dir_rebuilt_from_the_changelog(eos_runs):
    _, _, run2 = eos_runs[True].result()
    got = replayed(run2.stderr())
    assert got, run2.stderr()
    # every partition replayed from the start; run 1's records (past run 0's
    # committed offsets) seen but not applied
    assert sum(seen for _, seen, _ in got) > sum(applied for _, _, applied in got) > 0, got
