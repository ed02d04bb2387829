"""examples/sensor_routing.lua end to end: conversion, routing, drops, dead letters."""

import json
import math

from conftest import (EXAMPLES, committed, end_offsets, hdict, jloads, produce, read_all,
                      wait_committed_to_end)

SCRIPT = EXAMPLES / "sensor_routing.lua"
TOPICS = {"sensor-readings": 2, "temperatures-c": 4, "pressures-kpa": 4,
          "readings-other": 4, "readings-dlq": 4}

TO_CELSIUS = {"C": lambda v: v, "F": lambda v: (v - 32) * 5 / 9, "K": lambda v: v - 273.15}
TO_KPA = {"kPa": lambda v: v, "psi": lambda v: v * 6.894757, "bar": lambda v: v * 100,
          "hPa": lambda v: v / 10}


def reading(sensor, kind, value, unit, site, **extra):
    r = {"sensor": sensor, "kind": kind, "value": value, "site": {"id": site}}
    if unit is not None:
        r["unit"] = unit
    r.update(extra)
    return r


READINGS = [
    reading("t-1", "temperature", 21.5, "C", "plant-1"),
    reading("t-2", "temperature", 71.6, "F", "plant-1"),
    reading("t-3", "temperature", 300.15, "K", "plant-2"),
    reading("t-4", "temperature", 18.25, None, "plant-2"),   # no unit: Celsius
    reading("t-5", "temperature", -40, "F", "plant-3"),
    reading("t-6", "temperature", 98.6, "F", "plant-3", firmware="2.1"),
    reading("p-1", "pressure", 14.7, "psi", "plant-1"),
    reading("p-2", "pressure", 1.01325, "bar", "plant-2"),
    reading("p-3", "pressure", 1013.2, "hPa", "plant-2"),
    reading("p-4", "pressure", 250, "kPa", "plant-3"),
    reading("h-1", "humidity", 45.5, "%RH", "plant-1"),
    reading("c-1", "co2", 412, "ppm", "plant-3", calibrated=True),
    reading("t-7", "temperature", None, "C", "plant-1"),      # null value: dropped
    {"sensor": "p-5", "kind": "pressure", "unit": "bar", "site": {"id": "plant-1"}},  # no value
    reading("p-6", "pressure", 1.2, "atm", "plant-2"),        # unknown unit: dead letter
]


def rounded(x, digits):
    """x rounded to `digits` decimals; asserts the result does not depend on how
    halves are rounded (x is not near a half)."""
    scale = 10 ** digits
    r = math.floor(x * scale + 0.5) / scale
    assert r == round(x, digits), (x, digits)
    assert abs(abs(x * scale - math.floor(x * scale)) - 0.5) > 1e-6, (x, digits)
    return r


def expected():
    temps, pressures, other = [], [], []
    for r in READINGS:
        v = r.get("value")
        if v is None:
            continue
        unit = r.get("unit", "C")
        site = r["site"]["id"]
        if r["kind"] == "temperature":
            temps.append((site, {"sensor": r["sensor"], "site": site,
                                 "celsius": rounded(TO_CELSIUS[unit](v), 2)}))
        elif r["kind"] == "pressure":
            if unit in TO_KPA:
                pressures.append((site, {"sensor": r["sensor"], "site": site,
                                         "kpa": rounded(TO_KPA[unit](v), 3)}))
        else:
            other.append((r["sensor"], dict(r)))
    return temps, pressures, other


def as_pairs(recs):
    return sorted(((r.key.decode(), jloads(r.value)) for r in recs),
                  key=lambda kv: (kv[0], kv[1]["sensor"]))


def test_sensor_routing_converts_routes_drops_and_dead_letters(broker_factory, run_app):
    """Temperatures (C/F/K, no unit = C) go to temperatures-c in Celsius rounded to 2
    decimals, pressures (psi/bar/hPa/kPa) to pressures-kpa rounded to 3, both keyed
    by site; other kinds go to readings-other unchanged, keyed by sensor; readings
    without a value are dropped; an unknown unit is dead-lettered (stage process)."""
    broker = broker_factory(TOPICS)
    recs = [(r["sensor"].encode(), json.dumps(r).encode(), None) for r in READINGS]
    offs = produce(broker.addr, "sensor-readings", recs)
    end = end_offsets(broker.addr, "sensor-readings")
    app = run_app(SCRIPT, broker.addr)
    wait_committed_to_end(broker.addr, "sensor-router", "sensor-readings", 60, app=app)
    assert app.stop() == 0, app.stderr()

    temps, pressures, other = expected()
    assert as_pairs(read_all(broker.addr, "temperatures-c")) == as_pairs_expected(temps)
    assert as_pairs(read_all(broker.addr, "pressures-kpa")) == as_pairs_expected(pressures)
    assert as_pairs(read_all(broker.addr, "readings-other")) == as_pairs_expected(other)

    dlq = read_all(broker.addr, "readings-dlq")
    assert len(dlq) == 1, dlq
    bad_i = next(i for i, r in enumerate(READINGS) if r.get("unit") == "atm")
    d = dlq[0]
    assert d.key == recs[bad_i][0] and d.value == recs[bad_i][1]
    h = hdict(d.headers)
    assert h["luastream.error.stage"] == [b"process"]
    assert b"unknown pressure unit atm" in h["luastream.error"][0], h
    assert h["luastream.source.topic"] == [b"sensor-readings"]
    assert (int(h["luastream.source.partition"][0]), int(h["luastream.source.offset"][0])) \
        == offs[bad_i]
    assert committed(broker.addr, "sensor-router", "sensor-readings") == end
    n_in, n_out, skipped, dead = app.stats()
    assert (n_in, n_out, skipped, dead) == (len(READINGS), len(temps) + len(pressures) + len(other), 0, 1)


def as_pairs_expected(pairs):
    return sorted(pairs, key=lambda kv: (kv[0], kv[1]["sensor"]))
