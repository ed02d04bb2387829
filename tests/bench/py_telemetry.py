#!/usr/bin/python3
"""The telemetry pipeline of examples/telemetry.lua in Python with json and numpy,
timed in process on the records of a file (key<TAB>json per line, as
gen_telemetry.py writes them): decode, compute the same summary and alerts,
encode the outputs. Prints `msgs_per_s N` last.

    /usr/bin/python3 tests/bench/py_telemetry.py FILE [--messages N] [--repeat 3]
"""
import argparse
import json
import time

import numpy as np

RPM_LIMIT = 7000
HARD_BRAKE = -8.0
SMOOTH = 15


def summary(v):
    return {"mean": float(v.mean()), "max": float(v.max()), "rms": float(np.sqrt(np.mean(v * v)))}


def accel(speed, rate):
    d = np.diff(speed) * (rate / 3.6)
    c = np.cumsum(d)
    out = np.empty_like(d)
    out[:SMOOTH] = c[:SMOOTH] / np.arange(1, min(SMOOTH, len(d)) + 1)
    out[SMOOTH:] = (c[SMOOTH:] - c[:-SMOOTH]) / SMOOTH
    return out


def process(key, value):
    row = json.loads(value)
    ch = {k: np.asarray(v, dtype=np.float64) for k, v in row["channels"].items()}
    a = accel(ch["speed"], row["rate_hz"])
    s = {k: summary(v) for k, v in ch.items()}
    sa = summary(a)
    sa["min"] = float(a.min())
    s["accel"] = sa
    outs = [(key, json.dumps({"car": row["car"], "t0": row["t0"], "summary": s}))]
    if s["rpm"]["max"] > RPM_LIMIT or sa["min"] < HARD_BRAKE:
        alert = "over-rev" if s["rpm"]["max"] > RPM_LIMIT else "hard-braking"
        outs.append((key, json.dumps({"car": row["car"], "t0": row["t0"], "alert": alert})))
    return outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    recs = []
    with open(a.file) as f:
        for line in f:
            k, v = line.rstrip("\n").split("\t", 1)
            recs.append((k, v))
    best = None
    nout = 0
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        nout = 0
        for i in range(a.messages):
            k, v = recs[i % len(recs)]
            nout += len(process(k, v))
        t = time.perf_counter() - t0
        best = t if best is None or t < best else best
    print("python (json + numpy): %d messages, %.2f outputs per message, best of %d" %
          (a.messages, nout / a.messages, a.repeat))
    print("msgs_per_s %.0f" % (a.messages / best))


if __name__ == "__main__":
    main()
