#!/usr/bin/python3
"""Trains the crash classifier that examples/crash_ml.lua scores.

Run offline (not at build time), with Debian's python3-xgboost:

    /usr/bin/python3 examples/crash_model/train.py

It writes, next to this file:

- crash.json: the XGBoost model (Booster.save_model), read by ls.model.load;
- check.json: rows and XGBoost's own predictions for them, which
  examples/crash_ml_spec.lua checks the pipeline against.

The data is synthetic, labelled phone accelerometer readings {gX, gY, gZ} in g,
like examples/phones_sim.lua sends: phones at rest or carried around (|g| close
to 1, jolts up to ~2 g), harmless hard knocks (a phone tossed onto a table or a
sofa lands flat: 2-5 g, mostly along the axis across the screen) and crashes
(bursts of 4-9 g in any direction). The classifier sees gX, gY, gZ and the total
gTotal, and learns that a strong reading is a crash unless it is mostly along
the screen's axis. Everything is seeded, so a run writes the same files.
"""
import json
import os

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES = ["gX", "gY", "gZ", "gTotal"]
SEED = 20240611


def orientation(rng, n):
    """Gravity for phones at rest: mostly along z, tilted up to 60 degrees."""
    tilt = rng.random(n) * np.pi / 3
    turn = rng.random(n) * 2 * np.pi
    return np.c_[np.sin(tilt) * np.cos(turn), np.sin(tilt) * np.sin(turn), np.cos(tilt)]


def readings(rng, n):
    """n labelled readings: (X with the four features, y = 1 for a crash)."""
    kind = rng.choice(3, size=n, p=[0.94, 0.03, 0.03])   # 0 normal, 1 knock, 2 crash
    g = orientation(rng, n) + rng.normal(scale=0.08, size=(n, 3))
    jolt = (kind == 0) & (rng.random(n) < 0.05)
    g[jolt] *= rng.uniform(1.3, 2.0, size=(jolt.sum(), 1))   # steps, bumps in the road
    knock = kind == 1
    k = knock.sum()
    g[knock] = np.c_[rng.normal(scale=0.6, size=k), rng.normal(scale=0.6, size=k),
                     rng.choice([-1, 1], size=k) * rng.uniform(2, 5, size=k)]
    crash = kind == 2
    c = crash.sum()
    d = rng.normal(size=(c, 3))
    g[crash] = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(4, 9, size=(c, 1))
    g = np.round(g, 4)
    total = np.sqrt((g ** 2).sum(axis=1))
    y = crash.astype(int)
    flip = rng.random(n) < 0.002                              # a few wrong labels
    y[flip] = 1 - y[flip]
    return np.c_[g, total], y


def main():
    rng = np.random.default_rng(SEED)
    X, y = readings(rng, 200000)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 2, "seed": 1,
              "eval_metric": "logloss"}
    train = xgb.DMatrix(X[:160000], y[:160000], feature_names=FEATURES)
    valid = xgb.DMatrix(X[160000:], y[160000:], feature_names=FEATURES)
    booster = xgb.train(params, train, num_boost_round=40, evals=[(valid, "valid")], verbose_eval=False)
    booster.save_model(os.path.join(HERE, "crash.json"))

    p = booster.inplace_predict(X[160000:])
    alert = p > 0.5
    truth = y[160000:] == 1
    print("validation: %d readings, %d crashes; alerts: %d right, %d false, %d missed"
          % (len(p), truth.sum(), (alert & truth).sum(), (alert & ~truth).sum(), (~alert & truth).sum()))

    # Rows for the spec: some of each kind, with XGBoost's predictions.
    check_rng = np.random.default_rng(SEED + 1)
    Xc, yc = readings(check_rng, 3000)
    pick = np.r_[np.nonzero(yc == 1)[0][:20], np.nonzero(Xc[:, 3] > 2)[0][:40], np.arange(20)]
    rows = Xc[np.unique(pick)]
    pc = booster.inplace_predict(rows)
    check = [{"gX": float(r[0]), "gY": float(r[1]), "gZ": float(r[2]), "p_crash": float(q)}
             for r, q in zip(rows, pc)]
    with open(os.path.join(HERE, "check.json"), "w") as f:
        json.dump({"xgboost": xgb.__version__, "rows": check}, f, indent=1)
        f.write("\n")
    print("wrote crash.json and check.json (%d rows, %d above 0.5)" % (len(check), (pc > 0.5).sum()))


if __name__ == "__main__":
    main()
