"""Models in running pipelines, on the dev broker.

- examples/crash_ml.lua scores readings with the committed crash model: its
  alerts are exactly the readings XGBoost itself scores above the threshold,
  with XGBoost's probability;
- `--watch` follows a model file the script loaded, in a directory of its own:
  a retrained model dropped in place (write + rename) is reloaded, every row
  produced after the reload is scored by the new model; a broken model dropped
  in place is refused (the log names the file) and the previous model keeps
  scoring; putting the first model back reloads again.
"""

import json
import math
import os
import re

import numpy as np
import xgboost as xgb

from conftest import EXAMPLES, jloads, produce, read_all, wait_until

P_CRASH = 0.5


def crash_rows(n, seed):
    """Readings of phones at rest, carried, knocked and crashing."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = i % 5
        if kind < 3:
            g = rng.normal(scale=0.1, size=3) + [0.1, 0.2, 0.97]
        elif kind == 3:
            g = [rng.normal(scale=0.5), rng.normal(scale=0.5), rng.uniform(2, 5)]
        else:
            d = rng.normal(size=3)
            g = d / np.linalg.norm(d) * rng.uniform(3, 9)
        rows.append({"device": f"phone-{i % 7}", "ts": 1000 + i,
                     "gX": round(float(g[0]), 4), "gY": round(float(g[1]), 4), "gZ": round(float(g[2]), 4)})
    return rows


def test_crash_ml_example_alerts_as_xgboost_scores(broker_factory, run_app):
    broker = broker_factory({"phone-data": 4, "crash-alerts": 4})
    rows = crash_rows(500, 11)
    booster = xgb.Booster(model_file=str(EXAMPLES / "crash_model" / "crash.json"))
    X = np.array([[r["gX"], r["gY"], r["gZ"], math.sqrt(r["gX"] ** 2 + r["gY"] ** 2 + r["gZ"] ** 2)]
                  for r in rows])
    p = booster.inplace_predict(X)
    want = {r["ts"]: float(q) for r, q in zip(rows, p) if q > P_CRASH}
    assert 50 < len(want) < 400, len(want)

    app = run_app(EXAMPLES / "crash_ml.lua", broker.addr)
    produce(broker.addr, "phone-data", [(r["device"], json.dumps(r), None) for r in rows])
    recs = wait_until(lambda: (lambda r: r if len(r) >= len(want) else None)(read_all(broker.addr, "crash-alerts")),
                      60, f"{len(want)} alerts", app=app)
    assert app.stop() == 0
    got = {}
    for rec in recs:
        v = jloads(rec.value)
        assert rec.key.decode() == v["device"]
        assert set(v) == {"device", "ts", "gTotal", "p_crash"}
        got[v["ts"]] = v["p_crash"]
    assert sorted(got) == sorted(want)
    for ts, q in want.items():
        assert abs(got[ts] - q) <= 1e-6, (ts, got[ts], q)


# ---- --watch ------------------------------------------------------------------------

SCRIPT = """\
local ls = require("luastream")
local app = ls.app{ name = "model-reload", commit_interval = 1 }
local m = ls.model.load("models/score.json")
local sdf = app:dataframe(app:topic("in", { key = "string", value = "json" }))
sdf.p = m:predict{ sdf.a, sdf.b }
sdf:to_topic(app:topic("out", { key = "string", value = "json" }))
"""


def train_model(path, seed, rule):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, 2))
    y = rule(X).astype(int)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.5, "nthread": 1, "seed": 1},
                  xgb.DMatrix(X, y), 10)
    b.save_model(str(path))
    return b


def drop_in_place(src, dst):
    """Like a deployment that writes the new file beside and renames it."""
    tmp = dst.with_name(dst.name + ".new")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def test_watch_reloads_a_model_dropped_in_place(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": 2, "out": 2})
    app_dir = tmp_path / "app"
    models = app_dir / "models"
    models.mkdir(parents=True)
    script = app_dir / "model_app.lua"
    script.write_text(SCRIPT)
    a = train_model(tmp_path / "a.json", 1, lambda X: X[:, 0] + X[:, 1] > 0)
    b = train_model(tmp_path / "b.json", 2, lambda X: X[:, 0] * X[:, 1] > 0)
    (tmp_path / "broken.json").write_text('{"learner": {"gradient_booster": {"name": "gblinear"}}}')
    live = models / "score.json"
    drop_in_place(tmp_path / "a.json", live)

    app = run_app(script, broker.addr, "--watch")
    wait_until(lambda: "watching" in app.stderr(), 15, "the watch", app=app)
    rng = np.random.default_rng(3)
    sent = []

    def send_phase(phase, n=200):
        X = rng.normal(size=(n, 2))
        recs = []
        for i, (x0, x1) in enumerate(X):
            sent.append((phase, float(x0), float(x1)))
            recs.append((f"k{i % 5}", json.dumps({"phase": phase, "i": len(sent) - 1, "a": float(x0), "b": float(x1)}),
                         None))
        produce(broker.addr, "in", recs)
        wait_until(lambda: len(read_all(broker.addr, "out")) >= len(sent), 60, f"{len(sent)} outputs", app=app)

    def reloads():
        return len(re.findall(r"reloaded .*score\.json changed", app.stderr()))

    send_phase(1)
    drop_in_place(tmp_path / "b.json", live)
    wait_until(lambda: reloads() == 1, 15, "the reload of model b", app=app)
    send_phase(2)
    drop_in_place(tmp_path / "broken.json", live)
    wait_until(lambda: "reload of" in app.stderr() and "failed, still running the previous version" in app.stderr(),
               15, "the refused reload", app=app)
    err = app.stderr()
    assert re.search(r"model_app\.lua:3: ls\.model\.load: .*models/score\.json: unsupported booster 'gblinear'",
                     err), err
    send_phase(3)
    drop_in_place(tmp_path / "a.json", live)
    wait_until(lambda: reloads() == 2, 15, "the reload of model a", app=app)
    send_phase(4)
    assert app.stop() == 0

    outs = [jloads(r.value) for r in read_all(broker.addr, "out")]
    assert len(outs) == len(sent) == 800
    assert sorted(o["i"] for o in outs) == list(range(800))
    by_model = {1: a, 2: b, 3: b, 4: a}
    for phase, booster in by_model.items():
        rows = [o for o in outs if o["phase"] == phase]
        X = np.array([[o["a"], o["b"]] for o in rows])
        want = booster.inplace_predict(X)
        got = np.array([o["p"] for o in rows])
        assert np.all(np.abs(got - want) <= 1e-6), f"phase {phase}: max diff {np.max(np.abs(got - want))}"
    # The two models disagree on many rows: the phases tell them apart.
    X = np.array([[s[1], s[2]] for s in sent])
    assert np.sum((a.inplace_predict(X) > 0.5) != (b.inplace_predict(X) > 0.5)) > 100
