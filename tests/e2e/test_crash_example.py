"""examples/crash_detection.lua end to end, on a separate dev broker and embedded."""

import json
import math
import random
import re
import time

from conftest import (EXAMPLES, committed, end_offsets, jloads, produce, read_all,
                      wait_committed_to_end, wait_count)

SCRIPT = EXAMPLES / "crash_detection.lua"
# One sdf:print() line: [topic] key=K p=P off=O {json}
PRINTED = re.compile(r"^\[phone-data\] key=(\S+) p=(\d+) off=(\d+) (\{.*\})$", re.M)
CRASH_G = 3.0   # the data set's notion of a crash reading
CRASH_DG = 3.0  # the example alerts when gTotal changes by more than this

# Readings right at the threshold (|g| == 3.0 exactly in doubles: no alert),
# just below it (no alert) and just above it (alert).
EDGE_READINGS = [
    (3.0, 0.0, 0.0),
    (0.0, -3.0, 0.0),
    (2.0, 2.0, 1.0),
    (-2.0, 1.0, -2.0),
    (2.9999, 0.0, 0.0),
    (1.732, 1.732, 1.732),
    (0.0, 2.9999999, 0.0001),
    (3.0001, 0.0, 0.0),
    (0.0, 0.0, -3.0000001),
    (1.7321, 1.7321, 1.7321),
]


def g_total(gx, gy, gz):
    return math.sqrt(gx * gx + gy * gy + gz * gz)


def crash_dataset(n=3000, devices=50, crashes=40, seed=20240611):
    """Deterministic phone readings: mostly |g| near 1 with bumps up to ~2.3 g,
    `crashes` readings of 4-9 g, and the EDGE_READINGS."""
    rng = random.Random(seed)
    base_ts = (int(time.time()) - 3600) * 1000
    r4 = lambda v: round(v, 4)  # noqa: E731  (like the simulator: 4 decimals)
    crash_at = set(rng.sample(range(n), crashes))
    edge_at = {}
    free = [i for i in range(n) if i not in crash_at]
    for reading, i in zip(EDGE_READINGS, rng.sample(free, len(EDGE_READINGS))):
        edge_at[i] = reading
    rows = []
    for i in range(n):
        device = f"phone-{i % devices:02d}"
        ts = base_ts + i * 10
        while True:
            if i in edge_at:
                gx, gy, gz = edge_at[i]
            elif i in crash_at:
                g = 4 + rng.random() * 5
                x, y, z = rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)
                norm = math.sqrt(x * x + y * y + z * z)
                gx, gy, gz = r4(x / norm * g), r4(y / norm * g), r4(z / norm * g)
            else:
                jolt = 1.8 if rng.random() < 0.05 else 1.0
                gx = r4((0.35 + rng.gauss(0, 0.08)) * jolt)
                gy = r4((0.35 + rng.gauss(0, 0.08)) * jolt)
                gz = r4((0.87 + rng.gauss(0, 0.08)) * jolt)
            # x^2 must mean the same double whether computed as pow(x, 2) or x*x.
            if all(v ** 2 == v * v for v in (gx, gy, gz)):
                break
            assert i not in edge_at, f"edge reading {edge_at[i]} is ambiguous"
        rows.append({"device": device, "ts": ts, "gX": gx, "gY": gy, "gZ": gz})
    return rows


def expected_alerts(rows):
    """The example's computation: per device (its readings keep their order, as one
    key stays on one partition), dG = gTotal - the previous gTotal (0 for the first
    reading); an alert when |dG| > CRASH_DG."""
    out, prev = {}, {}
    for r in rows:
        g = g_total(r["gX"], r["gY"], r["gZ"])
        dg = g - prev.get(r["device"], g)
        prev[r["device"]] = g
        if abs(dg) > CRASH_DG:
            out[(r["device"], r["ts"])] = {"device": r["device"], "ts": r["ts"], "gTotal": g, "dG": dg}
    return out


def test_crash_detection_alerts_exactly_the_reference_set(broker_factory, run_app):
    """3000 readings over 50 phones through examples/crash_detection.lua on an external
    broker: the alerts are exactly the readings whose gTotal = sqrt(gX²+gY²+gZ²)
    differs from the phone's previous one by more than 3 (equal doubles), once each,
    keyed by device, timestamped with the reading's ts, and printed once each by
    sdf:print(); all input offsets are committed."""
    broker = broker_factory({"phone-data": 4, "crash-alerts": 4,
                             "crash-detector__default__changelog": 4})
    rows = crash_dataset()
    want = expected_alerts(rows)
    # The data set exercises what it should: a crash gives an alert going up and one
    # coming back down; readings near 3 g from ~1 g give changes on both sides of 3.
    assert 60 <= len(want) <= 100, len(want)
    dgs = [abs(v["dG"]) for v in want.values()]
    assert min(dgs) > CRASH_DG

    # Kafka timestamps are the produce time, an hour after the readings' ts: the
    # topic's timestamp = "ts" option must give the alerts the readings' ts.
    produce(broker.addr, "phone-data",
            [(r["device"].encode(), json.dumps(r).encode(), None) for r in rows])
    end = end_offsets(broker.addr, "phone-data")
    assert sum(end.values()) == len(rows) and all(v > 0 for v in end.values())

    app = run_app(SCRIPT, broker.addr)
    wait_committed_to_end(broker.addr, "crash-detector", "phone-data", 60, app=app)
    wait_count(broker.addr, "crash-alerts", len(want), 30, app=app)
    assert app.stop() == 0, app.stderr()

    alerts = read_all(broker.addr, "crash-alerts")
    got = {}
    for a in alerts:
        v = jloads(a.value)
        k = (v["device"], v["ts"])
        assert k not in got, f"duplicate alert {v}"
        got[k] = v
        assert a.key == v["device"].encode(), f"alert key {a.key!r} for {v}"
        assert a.timestamp == v["ts"], f"alert timestamp {a.timestamp} for {v}"
        assert set(v) == {"device", "ts", "gTotal", "dG"}, v
    assert set(got) == set(want)
    for k, v in want.items():
        # Exact: the runtime writes the shortest round-trip form of the double.
        assert got[k]["gTotal"] == v["gTotal"], (k, got[k]["gTotal"], v["gTotal"])
        assert got[k]["dG"] == v["dG"], (k, got[k]["dG"], v["dG"])
        assert isinstance(got[k]["ts"], int)
    assert committed(broker.addr, "crash-detector", "phone-data") == end
    # sdf:print() showed each alert once, with the input's key, partition and offset.
    inputs = {(r.partition, r.offset): r for r in read_all(broker.addr, "phone-data")}
    printed = {}
    for m in PRINTED.finditer(app.stdout()):
        v = json.loads(m.group(4))
        src = inputs[(int(m.group(2)), int(m.group(3)))]
        assert src.key.decode() == m.group(1) == v["device"]
        assert jloads(src.value)["ts"] == v["ts"]
        assert (v["device"], v["ts"]) not in printed
        printed[(v["device"], v["ts"])] = v
    assert printed == got
    # Nothing is dead-lettered or skipped on clean data.
    n_in, n_out, skipped, dead = app.stats()
    assert (n_in, n_out, skipped, dead) == (len(rows), len(want), 0, 0)


def _alert_lines(text):
    return [m for m in PRINTED.finditer(text) if abs(json.loads(m.group(4))["dG"]) > CRASH_DG]


def test_crash_detection_embedded_demo(run_app):
    """`luastream run examples/crash_detection.lua --timeout 8` with no broker: starts the
    embedded dev broker, simulates phones, prints alerts, stops by itself with exit 0.

    The simulation is random (~0.4 crashes/s), so a run without any crash is possible
    (about 5%); only then is it run once more, for longer."""
    for timeout in (8, 20):
        t0 = time.monotonic()
        app = run_app(SCRIPT, None, "--timeout", str(timeout))
        rc = app.wait(timeout + 30)
        elapsed = time.monotonic() - t0
        assert rc == 0, app.stderr()
        assert timeout <= elapsed < timeout + 15, elapsed
        err = app.stderr()
        assert "dev broker" in err, err
        if _alert_lines(app.stdout()):
            break
    else:
        raise AssertionError(f"no alert printed in two runs\n--- stdout ---\n{app.stdout()}"
                             f"\n--- stderr ---\n{err}")
    n_in, n_out, skipped, dead = app.stats()
    assert n_in > 0 and skipped == 0 and dead == 0
