#!/usr/bin/python3
"""Car telemetry messages for the telemetry benchmark and tests, one per line as
`key<TAB>json`: {"car", "t0", "rate_hz", "channels": {"speed", "rpm", "throttle",
"brake"}}, each channel one second of samples at rate_hz (3 decimals; rpm whole).
Cars cruise with some noise; about one message in six holds a hard stop or an
over-rev. Deterministic for a seed.

    /usr/bin/python3 tests/bench/gen_telemetry.py --messages N [--rate 1500] [--seed 7] > FILE
"""
import argparse
import json
import math
import random
import sys


def second(rnd, car, t0, rate):
    event = rnd.choice(["brake", "rev"]) if rnd.random() < 0.15 else None
    v = car["v"]
    speed, rpm, throttle, brake = [], [], [], []
    for i in range(rate):
        th, br = 0.35 + 0.1 * math.sin(car["phase"]), 0.0
        if event == "brake" and v > 20:
            th, br = 0.0, 80.0
            v = max(0.0, v - 35.0 / rate)
        else:
            v = min(180.0, v + (th * 12 - v * 0.04) / rate)
        car["phase"] += 0.7 / rate
        ratio = 95 if event == "rev" else 38
        speed.append(round(v + (rnd.random() - 0.5) * 0.002, 3))
        rpm.append(int(900 + v * ratio * (1 + 0.02 * math.sin(car["phase"] * 40))))
        throttle.append(round(th, 3))
        brake.append(round(br * (1 - math.exp(-(i + 1) / 50)), 3))
    car["v"] = v
    return {"car": car["id"], "t0": t0, "rate_hz": rate,
            "channels": {"speed": speed, "rpm": rpm, "throttle": throttle, "brake": brake}}


def messages(n, rate=1500, seed=7, cars=10):
    rnd = random.Random(seed)
    fleet = [{"id": "car-%d" % i, "v": 40 + rnd.random() * 60, "phase": rnd.random() * 6}
             for i in range(cars)]
    for k in range(n):
        car = fleet[k % cars]
        yield car["id"], second(rnd, car, 1764160000000 + (k // cars) * 1000, rate)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    out = sys.stdout
    for key, msg in messages(a.messages, a.rate, a.seed):
        out.write(key + "\t" + json.dumps(msg, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
