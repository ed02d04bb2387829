"""Joins under SIGKILL: a table join, an as-of join and an interval join in one
pipeline (scripts/join_crash.lua), killed again and again while it processes,
once restarted on an empty state directory, must end with exactly the joined
rows docs/joins.md defines, and with that state in LMDB.

The app (at-least-once, a checkpoint every 0.5 s) runs on the dev broker:

  run 0     the table ("profiles": values, changes, deletions), the as-of side
            ("fixes", some out of time order) and the interval side ("views")
            are waiting when it starts; SIGKILL 0.02-0.4 s after its
            partitions are assigned, while it works through them;
  run 1     goes on from run 0's state dir until the three topics are
            committed to their ends; then the clicks start arriving (a steady
            producer, about 40/s, in the background) and it is SIGKILLed at a
            random moment;
  runs 2-6  SIGKILLed while they process clicks, in turn: by crash_shim.c
            (LD_PRELOAD, see test_crash_consistency.py) while a checkpoint
            produces its changelog records, or inside an LMDB commit, or by the
            test at a random moment; run 4 starts on an empty state directory,
            so the table comes back from its topic, and the fixes and the
            clicks waiting in the interval join from their changelogs;
  final     drains the clicks; then one view per device far in the future
            ("end") closes every click's interval, so the clicks that met no
            view go out (how = "left"); a clean stop.

Why the expected output does not depend on processing order: every record of
the three side topics is processed (committed) before the first click is
produced, and nothing of them is produced afterwards but the "end" views,
produced once every click is committed (so the side records also have the
earlier Kafka timestamps, the order docs/joins.md's "Order across inputs"
takes). So each click sees the whole table as its last records left it, the
fixes the as-of join keeps (those no more than its grace behind the device's
newest fix, whatever order they came in), and every view; the interval join's
grace (1 h) is longer than the span of all timestamps, so no click is late and
no view is dropped before the "end" views come. Replays after a kill
(at-least-once) process clicks again against the same, unchanging side state,
so a replayed click gives the same outputs again: the distinct outputs are
compared with the reference, each carrying its click's id (and its view's vid)
as identity.

The reference below is computed from the definitions in docs/joins.md alone.
Knobs: LS_JOIN_CRASH_SEED (inputs and kill moments), LS_JOIN_CRASH_LOST_RUN
(the run that starts on an empty state dir; -1: none).
"""

import json
import os
import random
import re
import shutil
import threading
import time
from collections import defaultdict

from confluent_kafka import Producer

from conftest import (SCRIPTS, committed, end_offsets, jloads, produce, read_all, run_cli,
                      wait_until)
from test_crash_consistency import build_shim

SCRIPT = SCRIPTS / "join_crash.lua"
APP = "join-crash"
PARTS = 4
SEED = int(os.environ.get("LS_JOIN_CRASH_SEED", "20260511"))
BASE = 1_700_000_000_000
SPAN = 70_000  # event time of fixes, views and clicks: BASE .. BASE + SPAN
END_TS = BASE + 10_000_000  # the "end" views

# the joins of scripts/join_crash.lua
TOLERANCE, ASOF_GRACE = 4000, 20000
BEFORE, AFTER, IV_GRACE = 1500, 1000, 3_600_000

DEVICES = [f"dev-{i:02d}" for i in range(24)]
TABLE_ONLY = ["dev-90", "dev-91"]  # in the table, never clicked
NO_PROFILE = {"dev-03", "dev-07"}
DELETED = {"dev-05", "dev-11"}  # a value, then a tombstone
REVIVED = {"dev-13"}  # a value, a tombstone, a new value
NO_FIXES = {"dev-02", "dev-09"}
NO_VIEWS = {"dev-04", "dev-10"}
CLICKS_PER_DEVICE = 40
CLICK_RATE = 40  # per second

# the kills: run -> how it is killed
MODES = ["timer", "timer", "changelog", "lmdb", "timer", "changelog", "timer"]
LOST_STATE_RUN = int(os.environ.get("LS_JOIN_CRASH_LOST_RUN", "4"))  # -1: none
QUICK_LEAVE = ("--set", "kafka.consumer.session.timeout.ms=3500",
               "--set", "kafka.consumer.heartbeat.interval.ms=1000")
# the stores with changelog topics (a table's is its own topic: the outputs and
# the state listing show it came back)
CHANGELOG_STORES = ("__asof__1", "__interval__1")


# --------------------------------------------------------------------------
# inputs


def interleave(rnd, per_device):
    """Every device's rows in its own order, the devices mixed at random:
    [(device, row)]."""
    lists = [(d, list(rows)) for d, rows in per_device.items() if rows]
    out = []
    while lists:
        i = rnd.randrange(len(lists))
        d, rows = lists[i]
        out.append((d, rows.pop(0)))
        if not rows:
            lists.pop(i)
    return out


def make_inputs(seed):
    """(profile records, fix records, view records, clicks), each a list of
    (device, value) in produce order; a profile's value None is a tombstone;
    clicks carry unique ids."""
    rnd = random.Random(seed)
    profiles = {}
    for d in DEVICES + TABLE_ONLY:
        if d in NO_PROFILE:
            continue
        versions = [{"name": f"{d}/0", "tier": rnd.randint(1, 3)}]
        if rnd.random() < 0.4:
            versions.append({"name": f"{d}/1", "tier": rnd.randint(1, 3)})
        if d in DELETED or d in REVIVED:
            versions.append(None)
        if d in REVIVED:
            versions.append({"name": f"{d}/2", "tier": 9})
        profiles[d] = versions

    fixes, views = {}, {}
    for d in DEVICES:
        fs = []
        if d not in NO_FIXES:
            t = BASE + rnd.randrange(0, 3000)
            while t <= BASE + SPAN:
                fs.append({"ts": t, "fid": f"{d}/f{len(fs)}", "lat": round(rnd.uniform(-90, 90), 5)})
                t += rnd.randrange(300, 6500)  # distinct times; some gaps beyond the tolerance
            for j in range(len(fs) - 1):  # some out of time order
                if rnd.random() < 0.3:
                    fs[j], fs[j + 1] = fs[j + 1], fs[j]
        fixes[d] = fs
        vs = []
        if d not in NO_VIEWS:
            t = BASE + rnd.randrange(0, 5000)
            while t <= BASE + SPAN:
                vs.append({"ts": t, "vid": f"{d}/v{len(vs)}"})
                t += rnd.randrange(800, 9000)
        views[d] = vs

    clicks = []
    for d in DEVICES:
        for _ in range(CLICKS_PER_DEVICE):
            clicks.append((d, {"ts": BASE + rnd.randrange(0, SPAN + 1), "x": rnd.randrange(1000)}))
    # clicks on the edges, for one device: exactly at a kept fix, at the
    # tolerance after it and 1 ms past that (no other fix in between); a view
    # exactly `before` behind and `after` ahead, and 1 ms beyond each
    d = "dev-00"
    kept = asof_kept([(d, f) for f in fixes[d]])[d]
    f = next(f for f, g in zip(kept, kept[1:] + [{"ts": END_TS}]) if g["ts"] > f["ts"] + TOLERANCE + 1)
    v = views[d][len(views[d]) // 2]
    for t in (f["ts"], f["ts"] + TOLERANCE, f["ts"] + TOLERANCE + 1,
              v["ts"] + BEFORE, v["ts"] + BEFORE + 1, v["ts"] - AFTER, v["ts"] - AFTER - 1):
        clicks.append((d, {"ts": t, "x": -1}))
    clicks.sort(key=lambda c: c[1]["ts"])  # roughly in the order they would happen
    for i, (_, c) in enumerate(clicks):
        c["id"] = i
    return interleave(rnd, profiles), interleave(rnd, fixes), interleave(rnd, views), clicks


def rec(device, value):
    return (device.encode(), None if value is None else json.dumps(value).encode(), None)


# --------------------------------------------------------------------------
# the reference (docs/joins.md)


def merged(row, other):
    """The default merging: the other side's columns the row lacks are added."""
    out = dict(row)
    for k, v in other.items():
        out.setdefault(k, v)
    return out


def table_of(prof_recs):
    """The table: the last value per key; a tombstone deletes the key."""
    table = {}
    for d, v in prof_recs:
        if v is None:
            table.pop(d, None)
        else:
            table[d] = v
    return table


def asof_kept(fixes):
    """{device: [fix]} the as-of join keeps once every fix is in: those no more
    than the grace behind the device's newest (the newest always)."""
    by_dev = defaultdict(list)
    for d, f in fixes:
        by_dev[d].append(f)
    kept = {}
    for d, fs in by_dev.items():
        newest = max(f["ts"] for f in fs)
        kept[d] = sorted((f for f in fs if f["ts"] >= newest - ASOF_GRACE), key=lambda f: f["ts"])
    return kept


def history(st, x, stride):
    """The rows [(t, row[, flag])] of history x in a key's state (lua/luastream/history.lua):
    index x + "s" = [n, next, id1, lo1, ...], then entry x + id = [m, t1, row1, ...] of each
    segment; checks the layout and the order of time on the way."""
    idx = st.get(x + "s", [0, 1])
    n = idx[0]
    assert len(idx) == 2 + 2 * n, idx
    rows = []
    for j in range(n):
        sid, lo = idx[2 + 2 * j], idx[3 + 2 * j]
        e = st[f"{x}{sid}"]
        assert len(e) == 1 + stride * e[0] and e[0] > 0, (x, sid, e)
        seg = [tuple(e[1 + stride * i: 1 + stride * (i + 1)]) for i in range(e[0])]
        assert all(r[0] >= lo for r in seg), (x, sid, lo, seg)
        rows += seg
    assert [r[0] for r in rows] == sorted(r[0] for r in rows), (x, rows)
    assert set(k for k in st if k.startswith(x) and k != x + "s") == {f"{x}{idx[2 + 2 * j]}" for j in range(n)}, st
    return rows


def reference(prof_recs, fixes, views, clicks):
    """{(device, output row as canonical JSON, record timestamp)}."""
    table, kept = table_of(prof_recs), asof_kept(fixes)
    times = [c["ts"] for _, c in clicks] + [v["ts"] for _, v in views if v["ts"] != END_TS]
    # no click is late and no view goes before the "end" views, which close every click
    assert min(times) + AFTER + IV_GRACE > max(times) and END_TS - AFTER - IV_GRACE >= max(times)
    views_of = defaultdict(list)
    for d, v in views:
        views_of[d].append(v)
    want = set()
    for d, c in clicks:
        t = c["ts"]
        row = dict(c)
        if d in table:  # join_table, how = "left"
            row = merged(row, table[d])
        before = [f for f in kept.get(d, []) if f["ts"] <= t]  # join_asof, how = "left"
        if before and t - before[-1]["ts"] <= TOLERANCE:
            row = merged(row, before[-1])
        pairs = [v for v in views_of[d] if t - BEFORE <= v["ts"] <= t + AFTER]  # join_interval
        for v in pairs:
            want.add((d, canon(merged(row, v)), max(t, v["ts"])))
        if not pairs:  # how = "left": alone, once the interval closes
            want.add((d, canon(row), t))
    return want


def canon(v):
    return json.dumps(v, sort_keys=True)


# --------------------------------------------------------------------------
# running and killing


class ClickProducer(threading.Thread):
    """Produces the clicks at about CLICK_RATE per second."""

    def __init__(self, addr, clicks):
        super().__init__(daemon=True)
        self.addr, self.clicks = addr, clicks
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            p = Producer({"bootstrap.servers": self.addr, "linger.ms": 5, "enable.idempotence": True})
            failed = []
            step = max(1, CLICK_RATE // 20)
            for i in range(0, len(self.clicks), step):
                for d, c in self.clicks[i:i + step]:
                    p.produce("clicks", key=d.encode(), value=json.dumps(c).encode(),
                              on_delivery=lambda err, _msg: err and failed.append(err))
                p.poll(0)
                time.sleep(0.05)
            left = p.flush(30)
            if left or failed:
                self.error = f"{left} clicks unacknowledged, errors {failed[:3]}"
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
        finally:
            self.done.set()


def processed(addr, topic):
    """Whether the group has committed the end of every partition of topic
    that holds records (an empty partition gets no commit)."""
    end = end_offsets(addr, topic)
    got = committed(addr, APP, topic)
    return all(got.get(p) == e for p, e in end.items() if e > 0)


def wait_processed(addr, topics, timeout, app):
    wait_until(lambda: all(processed(addr, t) for t in topics), timeout,
               f"group {APP} to commit the ends of {topics}", interval=0.2, app=app)


def wait_assigned(app, timeout=30):
    """Waits for the app's first assignment; False when it died (killed by the
    shim) before."""
    deadline = time.monotonic() + timeout
    while "partitions assigned" not in app.stderr():
        if app.proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no assignment in {timeout} s\n{app.stderr()}"
        time.sleep(0.02)
    return True


def replayed(stderr):
    """{store: [partitions, records seen, applied]} summed over the
    'replayed N changelog records' lines."""
    got = defaultdict(lambda: [0, 0, 0])
    for s, _p, n, a in re.findall(r"state (\w+)\[(\d+)\]: replayed (\d+) changelog records \((\d+) applied\)",
                                  stderr):
        got[s][0] += 1
        got[s][1] += int(n)
        got[s][2] += int(a)
    return dict(got)


def check_log(app, what):
    err = app.stderr()
    bad = [line for line in err.splitlines() if re.match(r"^\S+ error ", line)]
    assert not bad, f"{what} logged errors: {bad}\n{err}"
    assert "dropped a late row" not in err, f"{what}: a click was late\n{err}"


def state_values(state, store):
    """{key: state} of store in the app's state directory."""
    r = run_cli("state", "list", str(state / APP), store, "--values")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        _store, _part, key, value = line.split("\t")
        assert key not in out, f"{store}: key {key} in two partitions"
        out[key] = json.loads(value)
    return out


def test_joins_survive_sigkills_and_a_lost_state_dir_with_exact_outputs(broker_factory, run_app,
                                                                       tmp_path):
    t0 = time.monotonic()
    broker = broker_factory({t: PARTS for t in ("clicks", "profiles", "fixes", "views", "out")})
    addr = broker.addr
    shim = build_shim(tmp_path)
    rnd = random.Random(SEED)
    prof_recs, fixes, views, clicks = make_inputs(SEED)
    state = tmp_path / "state"
    common = ("--state-dir", str(state), *QUICK_LEAVE)

    produce(addr, "profiles", [rec(d, v) for d, v in prof_recs])
    produce(addr, "fixes", [rec(d, f) for d, f in fixes])
    produce(addr, "views", [rec(d, v) for d, v in views])
    assert all(e > 0 for t in ("profiles", "fixes", "views") for e in end_offsets(addr, t).values()), \
        "the devices landed in too few partitions"

    clicker = ClickProducer(addr, clicks)
    kills = []
    for run, mode in enumerate(MODES):
        if run == LOST_STATE_RUN:
            shutil.rmtree(state / APP)
        env = {}
        if mode != "timer":
            env = {"LD_PRELOAD": str(shim), "LS_CRASH_AT": mode,
                   "LS_CRASH_AFTER": str(rnd.randint(0, 30 if mode == "lmdb" else 60))}
        app = run_app(SCRIPT, addr, *common, env=env)
        if wait_assigned(app):
            if run == 1:  # the side topics first, then the clicks
                wait_processed(addr, ("profiles", "fixes", "views"), 30, app)
                clicker.start()
            if run == LOST_STATE_RUN:  # every store back from its changelog first
                wait_until(lambda: all(replayed(app.stderr()).get(s, [0])[0] == PARTS
                                       for s in CHANGELOG_STORES), 20, "the changelog replay", app=app)
            if mode == "timer":
                time.sleep(rnd.uniform(0.02, 0.4) if run == 0 else rnd.uniform(0.1, 1.5))
            else:  # the shim kills it at its LS_CRASH_AFTER-th point, or the test after 3 s
                deadline = time.monotonic() + 3
                while app.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
        app.kill()
        assert app.proc.returncode == -9, \
            f"run {run} ({mode}) exited with {app.proc.returncode}\n{app.stderr()}"
        check_log(app, f"run {run} ({mode})")
        shim_kill = re.search(r"^crash-shim: SIGKILL in (.+)$", app.stderr(), re.M)
        kills.append(f"run {run}: {shim_kill.group(1) if shim_kill else 'timer'}")
        if run == LOST_STATE_RUN:
            rebuilt = replayed(app.stderr())
    assert clicker.ident is not None, "the clicks never started"

    final = run_app(SCRIPT, addr, *common)
    wait_until(clicker.done.is_set, 60, "the clicks to be produced", app=final)
    assert clicker.error is None, clicker.error
    wait_processed(addr, ("clicks",), 60, final)
    produce(addr, "views", [rec(d, {"ts": END_TS, "vid": "end"}) for d in DEVICES])
    wait_processed(addr, ("views",), 30, final)
    assert final.stop() == 0, final.stderr()
    check_log(final, "the final run")

    # the outputs: every one the reference has, nothing else (repeats allowed)
    want = reference(prof_recs, fixes, views + [(d, {"ts": END_TS, "vid": "end"}) for d in DEVICES], clicks)
    outs = read_all(addr, "out")
    got = {(r.key.decode(), canon(jloads(r.value)), r.timestamp) for r in outs}
    missing, wrong = sorted(want - got), sorted(got - want)
    assert not missing and not wrong, (
        f"seed {SEED}, kills {kills}: {len(missing)} missing, e.g. {missing[:5]}; "
        f"{len(wrong)} not in the reference, e.g. {wrong[:5]}")

    # the state: the table, the fixes kept, every interval closed
    table = table_of(prof_recs)
    assert state_values(state, "__table__profiles") == {d: {"v": v} for d, v in table.items()}
    kept = asof_kept(fixes)
    asof = state_values(state, "__asof__1")
    assert set(asof) == set(kept)
    for d, st in asof.items():
        items = history(st, "h", 2)
        # what is seen: the rows no more than the grace behind the newest; older ones
        # may wait in the first segment (removed once they are a quarter of it)
        limit = items[-1][0] - ASOF_GRACE
        assert {(t, canon(r)) for t, r, *_ in items if t >= limit} == {(f["ts"], canon(f)) for f in kept[d]}, d
    iv = state_values(state, "__interval__1")
    assert set(iv) == set(DEVICES)
    for d, st in iv.items():  # no click waits; the "end" view is the one kept
        assert st["wm"] == END_TS and set(st) <= {"wm", "Ls", "Rs"} | {f"L{i}" for i in range(1, 99)} | {
            f"R{i}" for i in range(1, 99)}, (d, st)
        # every click is closed; of the views, only "end" can still be reached (rows past
        # reach may wait in a first segment until they are a quarter of it)
        close = END_TS - AFTER - IV_GRACE
        assert [x for x in history(st, "L", 3) if x[0] > close] == [], (d, st)
        assert [(t, r) for t, r in history(st, "R", 2) if t > close - BEFORE] == [
            (END_TS, {"ts": END_TS, "vid": "end"})], (d, st)
    # the run on an empty state dir rebuilt every store from its changelog
    if LOST_STATE_RUN >= 0:
        assert all(rebuilt[s][0] == PARTS and rebuilt[s][2] > 0 for s in CHANGELOG_STORES), rebuilt
    print(f"{len(outs)} outputs ({len(got)} distinct) of {len(clicks)} clicks; kills: {kills}; "
          f"{time.monotonic() - t0:.0f} s, seed {SEED}")
