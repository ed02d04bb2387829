"""examples/telemetry.lua end to end: car messages with one second of samples per
channel (arrays decoded straight into vecs) in, a summary per channel and the
derived acceleration out, plus an alert when a car over-revs or brakes hard.
The reference is computed here in plain Python from the same messages."""

import importlib.util
import json
import math

from conftest import EXAMPLES, ROOT, jloads, produce, read_all, wait_until

SCRIPT = EXAMPLES / "telemetry.lua"
RPM_LIMIT, HARD_BRAKE, SMOOTH = 7000, -8.0, 15


def generator():
    spec = importlib.util.spec_from_file_location("gen_telemetry", ROOT / "tests" / "bench" / "gen_telemetry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def summary(xs):
    n = len(xs)
    return {"mean": math.fsum(xs) / n, "max": max(xs), "rms": math.sqrt(math.fsum(x * x for x in xs) / n)}


def accel(speed, rate):
    d = [(speed[i + 1] - speed[i]) * (rate / 3.6) for i in range(len(speed) - 1)]
    out = []
    for i in range(len(d)):
        w = d[max(0, i - SMOOTH + 1):i + 1]
        out.append(math.fsum(w) / len(w))
    return out


def reference(msg):
    s = {k: summary(v) for k, v in msg["channels"].items()}
    a = accel(msg["channels"]["speed"], msg["rate_hz"])
    s["accel"] = summary(a)
    s["accel"]["min"] = min(a)
    alert = None
    if s["rpm"]["max"] > RPM_LIMIT or s["accel"]["min"] < HARD_BRAKE:
        alert = "over-rev" if s["rpm"]["max"] > RPM_LIMIT else "hard-braking"
    return s, alert


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def test_telemetry_example_summaries_and_alerts(broker_factory, run_app):
    broker = broker_factory({"car-telemetry": 4, "car-stats": 4, "car-alerts": 4,
                             "telemetry__default__changelog": 4})
    msgs = list(generator().messages(40, rate=1500, seed=11))
    produce(broker.addr, "car-telemetry",
            [(k.encode(), json.dumps(m).encode(), None) for k, m in msgs])
    app = run_app(SCRIPT, broker.addr)
    wait_until(lambda: len(read_all(broker.addr, "car-stats")) >= len(msgs), 60, "40 summaries", app=app)
    assert app.stop() == 0
    stats = {(v["car"], v["t0"]): v for v in (jloads(r.value) for r in read_all(broker.addr, "car-stats"))}
    alerts = {(v["car"], v["t0"]): v["alert"] for v in (jloads(r.value) for r in read_all(broker.addr, "car-alerts"))}
    assert len(stats) == len(msgs)
    expected_alerts = {}
    for key, m in msgs:
        ref, alert = reference(m)
        got = stats[(m["car"], m["t0"])]["summary"]
        assert set(got) == {"speed", "rpm", "throttle", "brake", "accel"}
        for ch, fields in ref.items():
            for name, want in fields.items():
                assert close(got[ch][name], want), (m["car"], m["t0"], ch, name, got[ch][name], want)
        if alert:
            expected_alerts[(m["car"], m["t0"])] = alert
    assert expected_alerts, "the data holds no alert: the test would prove little"
    assert set(expected_alerts.values()) == {"over-rev", "hard-braking"}
    assert alerts == expected_alerts
