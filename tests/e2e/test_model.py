"""ls.model against the libraries that trained the models.

XGBoost (Debian's python3-xgboost) trains models of several depths and
objectives on data with missing values; `luastream lua` scores rows with
ls.model and XGBoost's own `inplace_predict` scores the same rows. The rows mix
random values with values placed exactly at every split of the model, at the
floats on either side of it, at the midpoints where rounding to float ties
(and one double on either side of those), at 0, -0, infinities, values beyond
float's range and denormals, and with missing features passed as nil,
ls.null, NaN, or absent from a row table. Margins must be XGBoost's float32
values exactly; predictions within 1e-6 (relative, at least 1) as required,
and the test reports how many are exact.

scikit-learn's linear and logistic regressions, exported to the linear format
of docs/models.md by the snippet given there, are checked the same way.
"""

import json
import re
import subprocess

import numpy as np
import pytest
import xgboost as xgb

from conftest import LUASTREAM, ROOT

# Scores rows with ls.model: argv = model rows.bin nf out.bin layout
# Row i is passed as an array (i % 3 == 0), a table keyed by feature name
# (i % 3 == 1, models with names; arrays otherwise), or an ls.vec (i % 3 == 2).
# Missing values (NaN in the file) become nil, ls.null or NaN in turn. For
# each row it writes the margins, then the predictions (vecs flattened).
SCORER = r"""
local ls = require("luastream")
local ffi = require("ffi")
local path, rows_path, nf, out_path, layout = arg[1], arg[2], tonumber(arg[3]), arg[4], arg[5]
local m = ls.model.load(path, { layout = layout })
assert(m.num_features == nf, "num_features " .. m.num_features)
local f = assert(io.open(rows_path, "rb"))
local data = f:read("*a")
f:close()
local n = #data / (8 * nf)
local d = ffi.cast("const double *", data)
local names = m.feature_names
local out = {}
local function put(v)
  if type(v) == "number" then out[#out + 1] = v else for j = 1, #v do out[#out + 1] = v[j] end end
end
for i = 0, n - 1 do
  local x
  if i % 3 == 2 then
    x = ls.vec.new(nf)
    for j = 0, nf - 1 do x[j + 1] = d[i * nf + j] end
  else
    x = {}
    for j = 0, nf - 1 do
      local v = d[i * nf + j]
      if v ~= v then
        local k = (i + j) % 3
        v = k == 0 and ls.null or k == 1 and (0 / 0) or nil
      end
      if i % 3 == 1 and names then x[names[j + 1]] = v else x[j + 1] = v end
    end
  end
  put(m:margin(x))
  put(m:predict(x))
end
local o = assert(io.open(out_path, "wb"))
local buf = ffi.new("double[?]", #out)
for i = 1, #out do buf[i - 1] = out[i] end
o:write(ffi.string(buf, 8 * #out))
o:close()
print(string.format("scored %d rows; layouts: perfect %d, linked %d", n,
  m.layouts and m.layouts.perfect or 0, m.layouts and m.layouts.linked or 0))
"""


def score(tmp_path, model_path, X, layout="auto"):
    """(margins, predictions, scorer's stdout) from ls.model for the rows X."""
    nf = X.shape[1]
    rows = tmp_path / "rows.bin"
    out = tmp_path / "out.bin"
    script = tmp_path / "score.lua"
    script.write_text(SCORER)
    np.ascontiguousarray(X, dtype="<f8").tofile(rows)
    r = subprocess.run([LUASTREAM, "lua", str(script), str(model_path), str(rows), str(nf), str(out), layout],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = np.fromfile(out, dtype="<f8")
    return got, r.stdout


def float_neighbours(splits):
    """Values around each float32 split s: s itself, the floats on either side,
    the exact midpoints with the float below and above (where rounding to
    float ties), one double on either side of those, and the doubles next to s."""
    s = np.asarray(splits, dtype=np.float32)
    below = np.nextafter(s, np.float32(-np.inf))
    above = np.nextafter(s, np.float32(np.inf))
    s64, b64, a64 = s.astype(np.float64), below.astype(np.float64), above.astype(np.float64)
    mid_lo, mid_hi = (b64 + s64) / 2, (s64 + a64) / 2
    vals = [s64, b64, a64, mid_lo, mid_hi,
            np.nextafter(mid_lo, -np.inf), np.nextafter(mid_lo, np.inf),
            np.nextafter(mid_hi, -np.inf), np.nextafter(mid_hi, np.inf),
            np.nextafter(s64, -np.inf), np.nextafter(s64, np.inf)]
    return np.concatenate(vals)


SPECIAL = [0.0, -0.0, np.inf, -np.inf, 1e300, -1e300, 3.5e38, -3.5e38, 1e-320, -1e-320, 1e-45, 7e-46,
           np.float32(3.4028235e38), np.nan]


def model_splits(booster):
    """[(feature, split)] of every split in the booster's JSON."""
    j = json.loads(booster.save_raw("json"))
    out = []
    for t in j["learner"]["gradient_booster"]["model"]["trees"]:
        for l, f, s in zip(t["left_children"], t["split_indices"], t["split_conditions"]):
            if l != -1:
                out.append((f, s))
    return out


def make_rows(booster, nf, rng, random_rows, missing):
    """Random rows (a fraction missing), then rows that put every feature's
    split neighbourhood and the special values into one feature each."""
    X = rng.normal(size=(random_rows, nf)) * rng.choice([0.5, 1, 3], size=(random_rows, 1))
    X[rng.random(X.shape) < missing] = np.nan
    parts = [X]
    by_feature = {}
    for f, s in model_splits(booster):
        by_feature.setdefault(f, []).append(s)
    for f in range(nf):
        vals = np.concatenate([float_neighbours(np.unique(np.asarray(by_feature.get(f, [0.0]), dtype=np.float32))),
                               np.asarray(SPECIAL, dtype=np.float64)])
        B = rng.normal(size=(len(vals), nf))
        B[rng.random(B.shape) < missing] = np.nan
        B[:, f] = vals
        parts.append(B)
    return np.vstack(parts)


def train(params, rounds, X, y, names=None):
    params = dict(params, nthread=2, seed=1)
    return xgb.train(params, xgb.DMatrix(X, y, feature_names=names, missing=np.nan), rounds)


def data(rng, n, nf, kind):
    X = rng.normal(size=(n, nf))
    z = X[:, 0] * X[:, 1] + np.sin(3 * X[:, 2]) + 0.5 * X[:, 3] ** 2 - 0.3 * X[:, 4] + 0.3 * rng.normal(size=n)
    if kind == "binary":
        y = (z > 0.5).astype(int)
    elif kind.startswith("multi"):
        y = np.digitize(z, [-0.5, 0.5, 1.5][: int(kind[5:]) - 1])
    else:
        y = 10 * z + 40
    X[rng.random(X.shape) < 0.15] = np.nan
    return X, y


# name, xgboost parameters, rounds, data kind, features, feature names, test rows
MODELS = [
    ("binary-d6-100", {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1}, 100,
     "binary", 8, True, 20000),
    ("squarederror-d3-base", {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.3, "base_score": 12.5},
     60, "reg", 6, False, 15000),
    ("softprob-4-d4", {"objective": "multi:softprob", "tree_method": "hist", "num_class": 4, "max_depth": 4,
                       "eta": 0.3}, 30, "multi4", 7, True, 15000),
    ("softmax-3-d5", {"objective": "multi:softmax", "num_class": 3, "max_depth": 5, "eta": 0.3}, 20, "multi3",
     5, False, 10000),
    ("reglogistic-d2-base", {"objective": "reg:logistic", "max_depth": 2, "eta": 0.5, "base_score": 0.3}, 40,
     "binary", 5, True, 10000),
    ("logitraw-d8", {"objective": "binary:logitraw", "max_depth": 8, "eta": 0.2}, 25, "binary", 6, False, 10000),
    # lossguide trees grow deep and sparse: the linked layout
    ("lossguide-deep", {"objective": "binary:logistic", "tree_method": "hist", "grow_policy": "lossguide",
                        "max_depth": 0, "max_leaves": 48, "eta": 0.2}, 30, "binary", 6, True, 10000),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(20240611)
    work = tmp_path_factory.mktemp("models")
    out = {}
    for name, params, rounds, kind, nf, named, rows in MODELS:
        X, y = data(rng, 4000, nf, kind)
        names = [f"f_{name[:3]}_{i}" for i in range(nf)] if named else None
        b = train(params, rounds, X, y, names)
        path = work / f"{name}.json"
        b.save_model(str(path))
        out[name] = (b, path, make_rows(b, nf, rng, rows, 0.12), params)
    return out


def xgb_scores(b, X, params):
    margins = b.inplace_predict(X, predict_type="margin", missing=np.nan).astype(np.float32).reshape(len(X), -1)
    preds = b.inplace_predict(X, missing=np.nan).astype(np.float32).reshape(len(X), -1)
    return margins, preds


def check_against_xgboost(tmp_path, b, path, X, params, layout="auto"):
    margins, preds = xgb_scores(b, X, params)
    got, out = score(tmp_path, path, X, layout)
    nm, npred = margins.shape[1], preds.shape[1]
    got = got.reshape(len(X), nm + npred)
    gm, gp = got[:, :nm], got[:, nm:]
    # Margins: XGBoost's float32 values, exactly.
    assert gm.dtype == np.float64 and np.all(gm.astype(np.float32) == gm), "margins that are no float32"
    diff = np.nonzero(gm.astype(np.float32).view(np.uint32) != margins.view(np.uint32))
    assert len(diff[0]) == 0, (f"{len(diff[0])} margins differ, first at row {diff[0][0]}: "
                               f"{gm[diff[0][0]]} vs {margins[diff[0][0]]}, row {X[diff[0][0]].tolist()}")
    tol = 1e-6 * np.maximum(1.0, np.abs(preds.astype(np.float64)))
    bad = np.nonzero(np.abs(gp - preds) > tol)
    assert len(bad[0]) == 0, (f"{len(bad[0])} predictions off, first at row {bad[0][0]}: "
                              f"{gp[bad[0][0]]} vs {preds[bad[0][0]]}")
    exact = int(np.sum(np.all(gp.astype(np.float32) == preds, axis=1)))
    print(f"{path.name} ({layout}): {len(X)} rows, margins exact, predictions exact in {exact}; {out.strip()}")
    return len(X), out


def test_predictions_match_xgboost_on_every_model(trained, tmp_path):
    total = 0
    layouts = {}
    for name, (b, path, X, params) in trained.items():
        n, out = check_against_xgboost(tmp_path, b, path, X, params)
        total += n
        layouts[name] = out
    assert total >= 100000, total
    # The deep lossguide trees took the linked layout, the others the complete one.
    assert "linked 0" not in layouts["lossguide-deep"], layouts["lossguide-deep"]
    assert "linked 0" in layouts["binary-d6-100"], layouts["binary-d6-100"]


def test_linked_layout_matches_xgboost_too(trained, tmp_path):
    """The same complete trees, walked as linked nodes (layout = "linked")."""
    for name in ("binary-d6-100", "softprob-4-d4"):
        b, path, X, params = trained[name]
        _, out = check_against_xgboost(tmp_path, b, path, X, params, layout="linked")
        assert "perfect 0" in out, out


def test_every_row_of_one_feature_at_its_splits(trained, tmp_path):
    """No missing values and no noise: rows that differ only in one feature,
    stepping through the float neighbourhood of each split of that feature."""
    b, path, _, params = trained["binary-d6-100"]
    splits = model_splits(b)
    f = max(range(8), key=lambda k: sum(1 for g, _ in splits if g == k))
    vals = float_neighbours(np.unique(np.asarray([s for g, s in splits if g == f], dtype=np.float32)))
    X = np.zeros((len(vals), 8))
    X[:, f] = vals
    n, _ = check_against_xgboost(tmp_path, b, path, X, params)
    assert n > 100


# ---- scikit-learn, through the linear format --------------------------------------




def docs_exporter():
    """luastream_linear(), the scikit-learn export function of docs/models.md,
    taken from the page itself."""
    text = (ROOT / "docs" / "models.md").read_text()
    blocks = re.findall(r"\n```python\n(.*?)\n```", text, re.S)
    code = [b for b in blocks if "def luastream_linear(" in b]
    assert len(code) == 1, "docs/models.md: no python block defining luastream_linear"
    ns = {}
    exec(compile(code[0], "docs/models.md", "exec"), ns)
    return ns["luastream_linear"]


def test_sklearn_linear_and_logistic_regressions(tmp_path):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(7)
    n, nf = 5000, 6
    X = rng.normal(size=(n, nf)) * 3
    z = X @ rng.normal(size=nf) + 0.7
    cases = [
        ("linear", LinearRegression().fit(X, z + rng.normal(size=n)), "linear",
         lambda m, X: m.predict(X).reshape(len(X), -1)),
        ("linear-2", LinearRegression().fit(X, np.c_[z, -2 * z + 1]), "linear", lambda m, X: m.predict(X)),
        ("logistic", LogisticRegression(max_iter=1000).fit(X, z > 0), "logistic",
         lambda m, X: m.predict_proba(X)[:, 1:]),
        ("multinomial", LogisticRegression(max_iter=2000).fit(X, np.digitize(z, [-2, 2])), "logistic",
         lambda m, X: m.predict_proba(X)),
    ]
    Xt = rng.normal(size=(20000, nf)) * 4
    export = docs_exporter()
    for name, model, objective, expected in cases:
        path = tmp_path / f"{name}.json"
        path.write_text(export(model, objective, [f"x{i}" for i in range(nf)]))
        want = expected(model, Xt)
        got, _ = score(tmp_path, path, Xt)
        k = want.shape[1]
        got = got.reshape(len(Xt), 2 * k)[:, k:]
        err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
        assert err <= 1e-9, f"{name}: max relative error {err}"


# ---- bad model files ---------------------------------------------------------------

LOADER = """local ls = require("luastream")
local m = ls.model.load("{path}")
print(m)
local app = ls.app{{ name = "model-loader" }}
app:dataframe(app:topic("in")):to_topic(app:topic("out"))
"""


def load_error(tmp_path, content, name="bad.json"):
    """Runs `luastream run` on a script loading a model file holding content:
    (exit code, stderr)."""
    model = tmp_path / name
    if isinstance(content, bytes):
        model.write_bytes(content)
    else:
        model.write_text(content if isinstance(content, str) else json.dumps(content))
    script = tmp_path / "loads_model.lua"
    script.write_text(LOADER.format(path=name))
    r = subprocess.run([LUASTREAM, "run", str(script)], capture_output=True, text=True, timeout=30,
                       cwd=tmp_path, stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr, f"{script}:2: ls.model.load: {model}: "


def small_model(**learner):
    """A valid one-tree XGBoost model, with learner fields replaced."""
    doc = {
        "version": [1, 7, 4],
        "learner": {
            "attributes": {}, "feature_names": [], "feature_types": [],
            "gradient_booster": {"name": "gbtree", "model": {
                "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1", "size_leaf_vector": "0"},
                "tree_info": [0],
                "trees": [{"id": 0, "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                           "split_indices": [0, 0, 0], "split_conditions": [0.5, -1.0, 1.0],
                           "default_left": [1, 0, 0], "split_type": [0, 0, 0],
                           "base_weights": [0, 0, 0], "loss_changes": [0, 0, 0], "sum_hessian": [1, 1, 1],
                           "parents": [2147483647, 0, 0],
                           "categories": [], "categories_nodes": [], "categories_segments": [],
                           "categories_sizes": [],
                           "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3",
                                          "size_leaf_vector": "0"}}]}},
            "learner_model_param": {"base_score": "5E-1", "boost_from_average": "1", "num_class": "0",
                                    "num_feature": "2", "num_target": "1"},
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
    }
    for k, v in learner.items():
        doc["learner"][k] = v
    return doc


def test_the_small_model_loads(tmp_path):
    """The base of the bad files below is a good one."""
    (tmp_path / "small.json").write_text(json.dumps(small_model()))
    script = tmp_path / "loads_model.lua"
    script.write_text(LOADER.format(path="small.json"))
    r = subprocess.run([LUASTREAM, "lua", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Model<xgboost binary:logistic, 2 features, 1 trees, {tmp_path / 'small.json'}>\n"


@pytest.mark.parametrize("content, words", [
    (b"\x7bL\x00\x00\x00\x07learner", ["invalid JSON"]),                      # UBJSON
    ("", ["not a supported model format", "the file is empty"]),
    ("[1, 2, 3]", ["not a supported model format", "JSON object"]),
    ({"weights": [1, 2]}, ["not a supported model format", "luastream-linear"]),
    (small_model(objective={"name": "count:poisson"}), ["unsupported objective 'count:poisson'",
                                                        "binary:logistic"]),
    (small_model(gradient_booster={"name": "gblinear", "model": {}}), ["unsupported booster 'gblinear'"]),
    (small_model(gradient_booster={"name": "dart", "gbtree": {}}), ["unsupported booster 'dart'"]),
    (small_model(feature_names=["a", "b", "c"]), ["feature_names has 3 names", "reads 2 features"]),
    (small_model(learner_model_param={"base_score": "5E-1", "num_class": "0", "num_feature": "0",
                                      "num_target": "1"}),
     ["learner_model_param.num_feature must be a whole number in 1..", "got 0"]),
    (small_model(learner_model_param={"base_score": "1.5", "num_class": "0", "num_feature": "2",
                                      "num_target": "1"}),
     ["base_score must be in (0, 1) for a logistic objective, got 1.5"]),
    ({"format": "luastream-linear", "objective": "poisson", "weights": [1]}, ["unsupported objective 'poisson'"]),
    ({"format": "luastream-linear", "objective": "linear", "weights": [[1, 2], [3]], "bias": [0, 0]},
     ["weights[2] has 1 numbers"]),
    ({"format": "luastream-linear", "objective": "linear", "weights": [1, 2], "feature_names": ["a"]},
     ["feature_names has 1 names", "reads 2 features"]),
    ({"format": "luastream-linear", "objective": "linear", "weigths": [1, 2]}, ["unknown key 'weigths'",
                                                                               "did you mean 'weights'"]),
])
def test_bad_model_files_exit_2_naming_file_and_line(tmp_path, content, words):
    rc, err, prefix = load_error(tmp_path, content)
    assert rc == 2, err
    assert prefix in err, err
    for w in words:
        assert w in err, (w, err)


def test_bad_trees_exit_2(tmp_path):
    doc = small_model()
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["left_children"] = [1, 0, -1]      # a cycle back to the root
    rc, err, prefix = load_error(tmp_path, doc)
    assert rc == 2 and prefix in err and "node 1 has children 0 and -1" in err, err

    doc = small_model()
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"] = [5, 0, 0]
    rc, err, prefix = load_error(tmp_path, doc)
    assert rc == 2 and prefix in err, err
    assert "tree 0: node 0 splits on feature 5, but the model has 2 features (num_feature)" in err, err

    doc = small_model()
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_type"] = [1, 0, 0]
    rc, err, prefix = load_error(tmp_path, doc)
    assert rc == 2 and prefix in err and "categorical split" in err, err

    doc = small_model()
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["right_children"] = [2, -1]
    rc, err, prefix = load_error(tmp_path, doc)
    assert rc == 2 and prefix in err and "right_children has 2 entries, expected 3" in err, err


def test_missing_model_file_exit_2(tmp_path):
    script = tmp_path / "loads_model.lua"
    script.write_text(LOADER.format(path="nowhere.json"))
    r = subprocess.run([LUASTREAM, "run", str(script)], capture_output=True, text=True, timeout=30,
                       cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert f"{script}:2: ls.model.load: {tmp_path / 'nowhere.json'}: cannot open: No such file" in r.stderr
