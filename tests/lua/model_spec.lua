-- ls.model: loading, scoring plain values and column expressions, errors.
-- (Differential checks against XGBoost and scikit-learn themselves are in
-- tests/e2e/test_model.py.)
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ls = require("luastream")
local core = require("luastream.core")
local ffi = require("ffi")

local NaN = 0 / 0

local f32box = ffi.new("float[1]")
local function f32(x) f32box[0] = x; return f32box[0] end
-- The float just below the float s.
local function float_below(s)
  local bits = ffi.new("union { float f; uint32_t u; }")
  bits.f = s
  if s > 0 then bits.u = bits.u - 1 else bits.u = bits.u + 1 end
  return bits.f
end

local n_files = 0
local function write(name, text)
  n_files = n_files + 1
  local path = H.tmpdir() .. "/" .. n_files .. "-" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function json(t) return core.encode("json", t) end

-- An XGBoost JSON model, as save_model writes it, from compact trees:
-- { left = {...}, right = {...}, feat = {...}, cond = {...}, dl = {...} }
-- (0-based node indices, -1 for no child; cond holds a leaf's value).
local function xgb(o)
  local trees, info = {}, {}
  for k, t in ipairs(o.trees) do
    local n = #t.left
    local zeros = {}
    for i = 1, n do zeros[i] = 0 end
    trees[k] = {
      id = k - 1, left_children = t.left, right_children = t.right, split_indices = t.feat,
      split_conditions = t.cond, default_left = t.dl, split_type = t.split_type or zeros,
      base_weights = zeros, loss_changes = zeros, sum_hessian = zeros, parents = zeros,
      categories = ls.array{}, categories_nodes = ls.array{}, categories_segments = ls.array{},
      categories_sizes = ls.array{},
      tree_param = { num_deleted = "0", num_feature = tostring(o.num_feature), num_nodes = tostring(n),
        size_leaf_vector = "0" },
    }
    info[k] = o.tree_info and o.tree_info[k] or 0
  end
  return json({
    version = { 1, 7, 4 },
    learner = {
      attributes = {}, feature_names = ls.array(o.names or {}), feature_types = ls.array{},
      gradient_booster = { name = o.booster or "gbtree", model = {
        gbtree_model_param = { num_parallel_tree = "1", num_trees = tostring(#trees), size_leaf_vector = "0" },
        tree_info = ls.array(info), trees = ls.array(trees) } },
      learner_model_param = { base_score = o.base_score or "5E-1", boost_from_average = "1",
        num_class = tostring(o.num_class or 0), num_feature = tostring(o.num_feature), num_target = "1" },
      objective = { name = o.objective },
    },
  })
end

-- One split on feature f at s, leaves l and r.
local function stump(f, s, dl, l, r)
  return { left = { 1, -1, -1 }, right = { 2, -1, -1 }, feat = { f, 0, 0 }, cond = { s, l, r }, dl = { dl, 0, 0 } }
end

describe("ls.model", function()
  describe("the linear format", function()
    local lin = write("lin.json", json({ format = "luastream-linear", version = 1, objective = "linear",
      weights = { 1, 2, -0.5 }, bias = 0.25, feature_names = { "a", "b", "c" } }))

    it("loads and scores by position, by name and from a vec", function()
      local m = ls.model.load(lin)
      assert.same("linear", m.format)
      assert.same(3, m.num_features)
      assert.same({ "a", "b", "c" }, m.feature_names)
      assert.same(0.25 + 1 + 4 - 2, m:predict{ 1, 2, 4 })
      assert.same(0.25 + 1 + 4 - 2, m:predict{ a = 1, b = 2, c = 4 })
      assert.same(0.25 + 1 + 4 - 2, m:predict(ls.vec.from{ 1, 2, 4 }))
      assert.same(m:predict{ 1, 2, 4 }, m:margin{ 1, 2, 4 })
    end)

    it("adds nothing for a missing feature (nil, ls.null, NaN, absent)", function()
      local m = ls.model.load(lin)
      assert.same(0.25 + 1 - 2, m:predict{ 1, nil, 4 })
      assert.same(0.25 + 1 - 2, m:predict{ 1, ls.null, 4 })
      assert.same(0.25 + 1 - 2, m:predict{ 1, NaN, 4 })
      assert.same(0.25 + 1 - 2, m:predict{ a = 1, c = 4 })
      assert.same(0.25, m:predict{ a = ls.null })
      assert.same(0.25, m:predict{})
    end)

    it("takes booleans as 1 and 0", function()
      local m = ls.model.load(lin)
      assert.same(0.25 + 1 + 0 - 0.5, m:predict{ true, false, true })
    end)

    it("logistic: a probability; several outputs: softmax in a vec", function()
      local m = ls.model.load(write("logit.json", json({ format = "luastream-linear", objective = "logistic",
        weights = { 1.5, -2 }, bias = 0.5 })))
      local z = 0.5 + 1.5 * 2 - 2 * 0.25
      assert.same(z, m:margin{ 2, 0.25 })
      assert.same(1 / (1 + math.exp(-z)), m:predict{ 2, 0.25 })
      local k = ls.model.load(write("softmax.json", json({ format = "luastream-linear", objective = "logistic",
        weights = { { 1, 0 }, { 0, 1 }, { 1, 1 } }, bias = { 0, 1, 2 } })))
      local p = k:predict{ 0.5, -1 }
      local zs = { 0.5, 0, 1.5 }
      local e = { math.exp(0.5 - 1.5), math.exp(0 - 1.5), math.exp(1.5 - 1.5) }
      local sum = e[1] + e[2] + e[3]
      assert.is_true(ls.vec.is(p))
      assert.same(3, #p)
      for j = 1, 3 do assert.is_true(math.abs(p[j] - e[j] / sum) < 1e-15) end
      assert.same(zs, k:margin{ 0.5, -1 }:totable())
      local several = ls.model.load(write("multi.json", json({ format = "luastream-linear", objective = "linear",
        weights = { { 1, 0 }, { 0, 1 } }, bias = { 10, 20 } })))
      assert.same({ 13, 24 }, several:predict{ 3, 4 }:totable())
    end)
  end)

  describe("XGBoost's JSON model", function()
    -- Tree 0: feature 0 < 0.5 (missing: left) -> -1 | 1.
    -- Tree 1: feature 1 < float(0.1) (missing: right) -> 0.25 | -0.25.
    local two = write("two.json", xgb{ objective = "reg:squarederror", base_score = "0E0", num_feature = 2,
      names = { "x", "y" }, trees = { stump(0, 0.5, 1, -1, 1), stump(1, 0.1, 0, 0.25, -0.25) } })

    it("reads the trees, names and objective", function()
      local m = ls.model.load(two)
      assert.same("xgboost", m.format)
      assert.same("reg:squarederror", m.objective)
      assert.same(2, m.num_features)
      assert.same(2, m.num_trees)
      assert.same(1, m.depth)
      assert.same({ "x", "y" }, m.feature_names)
      assert.same("1.7.4", m.xgboost_version)
    end)

    it("compares features as floats: a value at the split goes right", function()
      local m = ls.model.load(two)
      assert.same(-1 + 0.25, m:predict{ 0.49, 0 })
      assert.same(1 + 0.25, m:predict{ 0.5, 0 })
      -- 0.1 is below float(0.1) in double, equal to it as a float: right.
      assert.is_true(0.1 < f32(0.1))
      assert.same(-1 - 0.25, m:predict{ 0, 0.1 })
      assert.same(-1 + 0.25, m:predict{ 0, float_below(f32(0.1)) })
    end)

    it("sends every double of a float's rounding interval the float's way, ties to even", function()
      local m = ls.model.load(two)
      local s = f32(0.1)
      local below = float_below(s)
      local mid = (below + s) / 2                    -- exact in double: rounding to float ties here
      for _, x in ipairs({ mid, mid - 2 ^ -80, mid + 2 ^ -80, (mid + s) / 2, (below + mid) / 2 }) do
        local right = not (f32(x) < s) -- luacheck: ignore 581 (XGBoost's test, as XGBoost writes it)
        assert.same(right and -0.25 or 0.25, m:predict{ 0, x } + 1, "x = " .. string.format("%.20g", x))
      end
    end)

    it("sends a missing feature the node's default way", function()
      local m = ls.model.load(two)
      for _, missing in ipairs({ ls.null, NaN }) do
        assert.same(-1 + 0.25, m:predict{ missing, 0 })   -- tree 0: default left
        assert.same(1 - 0.25, m:predict{ 1, missing })    -- tree 1: default right
      end
      assert.same(-1 - 0.25, m:predict{ nil, nil })
      assert.same(-1 - 0.25, m:predict{ y = ls.null })
      assert.same(1 + 0.25, m:predict{ x = 3, y = -1 })
    end)

    it("takes infinities as values, not as missing", function()
      local m = ls.model.load(two)
      assert.same(1 - 0.25, m:predict{ math.huge, math.huge })
      assert.same(-1 + 0.25, m:predict{ -math.huge, -math.huge })
      assert.same(1 - 0.25, m:predict{ 1e300, 1e300 })     -- beyond float's range: +inf as a float
    end)

    it("adds the leaves in float, in tree order", function()
      local m = ls.model.load(write("sum.json", xgb{ objective = "reg:squarederror", base_score = "1E8",
        num_feature = 1, trees = { stump(0, 0, 1, 3, 3), stump(0, 0, 1, 3, 3), stump(0, 0, 1, 3, 3) } }))
      -- Floats near 1e8 are 8 apart: 1e8 + 3 rounds back to 1e8, three times,
      -- where the sum in double (1e8 + 9) would round to 1e8 + 8.
      assert.same(1e8, m:predict{ 0 })
      assert.same(1e8 + 8, f32(1e8 + 3 + 3 + 3))
    end)

    it("binary:logistic: the base score as a margin, a float sigmoid", function()
      local m = ls.model.load(write("logistic.json", xgb{ objective = "binary:logistic", base_score = "2.5E-1",
        num_feature = 1, trees = { stump(0, 0, 1, -0.5, 0.75) } }))
      local base = f32(-math.log(f32(f32(1 / f32(0.25)) - 1)))    -- -log(3) as XGBoost's float
      assert.same(f32(base + 0.75), m:margin{ 1 })
      local p = m:predict{ 1 }
      assert.same(f32(p), p)
      assert.is_true(math.abs(p - 1 / (1 + math.exp(-(base + 0.75)))) < 1e-7)
    end)

    it("multi:softprob gives a vec of probabilities; multi:softmax the class", function()
      local trees = { stump(0, 0, 1, 0.5, -0.5), stump(0, 0, 1, -0.5, 0.5), stump(1, 0, 1, 0, 1) }
      local prob = ls.model.load(write("softprob.json", xgb{ objective = "multi:softprob", num_class = 3,
        num_feature = 2, trees = trees, tree_info = { 0, 1, 2 } }))
      assert.same(3, prob.num_outputs)
      local margins = prob:margin{ -1, 1 }
      assert.same({ 0.5 + 0.5, -0.5 + 0.5, 1 + 0.5 }, margins:totable())
      local p = prob:predict{ -1, 1 }
      assert.is_true(ls.vec.is(p))
      local e = { math.exp(-0.5), math.exp(-1.5), 1 }
      local sum = e[1] + e[2] + e[3]
      for j = 1, 3 do assert.is_true(math.abs(p[j] - e[j] / sum) < 1e-7) end
      local cls = ls.model.load(write("softmax.json", xgb{ objective = "multi:softmax", num_class = 3,
        num_feature = 2, trees = trees, tree_info = { 0, 1, 2 } }))
      assert.same(2, cls:predict{ -1, 1 })
      assert.same(0, cls:predict{ -1, -1 })
    end)

    it("walks deep trees in the linked layout with the same results", function()
      -- A chain of 20 splits on feature 0 at 0, 1, 2, ...: x goes right until x < k.
      local left, right, feat, cond, dl = {}, {}, {}, {}, {}
      for k = 0, 19 do
        local node = 2 * k
        left[node + 1], right[node + 1], feat[node + 1], cond[node + 1], dl[node + 1] = node + 1, node + 2, 0, k, 1
        left[node + 2], right[node + 2], feat[node + 2], cond[node + 2], dl[node + 2] = -1, -1, 0, -k, 0
      end
      left[41], right[41], feat[41], cond[41], dl[41] = -1, -1, 0, 100, 0
      local path = write("chain.json", xgb{ objective = "reg:squarederror", base_score = "0E0", num_feature = 1,
        trees = { { left = left, right = right, feat = feat, cond = cond, dl = dl } } })
      local m = ls.model.load(path)
      assert.same(20, m.depth)
      assert.same({ perfect = 0, linked = 1 }, m.layouts)
      assert.same(-0, m:predict{ -5 })
      assert.same(-3, m:predict{ 2.5 })
      assert.same(100, m:predict{ 25 })
      assert.same(-0, m:predict{ ls.null })                    -- default left at the root
      local small = ls.model.load(two, { layout = "linked" })
      assert.same({ perfect = 0, linked = 1 }, small.layouts)
      assert.same(-1 - 0.25, small:predict{ 0, 0.1 })
      assert.same(1 - 0.25, small:predict{ 1, ls.null })
    end)

    it("pads shallow leaves in the complete layout", function()
      -- Root on feature 0; its left child a leaf, its right child a split on feature 1.
      local m = ls.model.load(write("uneven.json", xgb{ objective = "reg:squarederror", base_score = "0E0",
        num_feature = 2, trees = { { left = { 1, -1, 3, -1, -1 }, right = { 2, -1, 4, -1, -1 },
          feat = { 0, 0, 1, 0, 0 }, cond = { 0, 7, 0, 8, 9 }, dl = { 0, 0, 1, 0, 0 } } } }))
      assert.same({ perfect = 1, linked = 0 }, m.layouts)
      assert.same(7, m:predict{ -1, -1 })
      assert.same(7, m:predict{ -1, 1 })
      assert.same(8, m:predict{ 1, -1 })
      assert.same(9, m:predict{ 1, 1 })
      assert.same(8, m:predict{ 1, ls.null })
      assert.same(9, m:predict{ ls.null, 1 })
    end)

    it("goes right at a split of -inf, and the default way when missing", function()
      local m = ls.model.load(write("neginf.json", xgb{ objective = "reg:squarederror", base_score = "0E0",
        num_feature = 1, trees = { stump(0, -1e300, 1, -1, 1), stump(0, -1e300, 0, -10, 10) } }))
      assert.same(11, m:predict{ -math.huge })
      assert.same(11, m:predict{ 0 })
      assert.same(-1 + 10, m:predict{ ls.null })
    end)
  end)

  describe("as a column expression", function()
    local two = write("expr.json", xgb{ objective = "reg:squarederror", base_score = "0E0", num_feature = 2,
      names = { "x", "y" }, trees = { stump(0, 0.5, 1, -1, 1), stump(1, 0.1, 0, 0.25, -0.25) } })

    it("scores every row: by position, by name, a whole dataframe, an array column", function()
      H.load_source(H.header .. [[
local m = ls.model.load("]] .. two .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ sdf.x, sdf.y }
sdf.q = m:predict{ x = sdf.y, y = sdf.x }
sdf.r = m:predict(sdf)
sdf.s = m:margin(sdf.both)
sdf.t = m:predict{ sdf.x, 0 }
sdf:to_topic(app:topic("out"))
]])
      local vals = H.values({ { { x = 1, y = 0, both = { 0, 1 } } }, { { x = 0, y = ls.null, both = { 1, 0.1 } } } })
      assert.same({ x = 1, y = 0, both = { 0, 1 }, p = 1.25, q = -1 - 0.25, r = 1.25, s = -1 - 0.25, t = 1.25 },
        vals[1])
      assert.same(-1 - 0.25, vals[2].p)
      assert.same(-1 + 0.25, vals[2].q)     -- x = null: default left; y = 0 < 0.1
      assert.same(1 - 0.25, vals[2].s)
      assert.same(-1 + 0.25, vals[2].t)
    end)

    it("fails at the script's line on a wrong feature count, a swap, a dataframe without names", function()
      local err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. two .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ sdf.x, sdf.y, sdf.z }
]])
      assert.matches("app%.lua:5: model:predict: the model reads 2 features %(x, y%), got 3", err)
      err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. two .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ sdf.y, sdf.x }
]])
      assert.matches("app%.lua:5: model:predict: column 'y' is passed as feature 1, " ..
        "but the model's feature 1 is 'x'", err)
      err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. two .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ x = sdf.x, z = sdf.y }
]])
      assert.matches("app%.lua:5: model:predict: 'z' is not one of the model's features %(x, y%)", err)
      local nameless = write("nameless.json", json({ format = "luastream-linear", objective = "linear",
        weights = { 1, 2 } }))
      err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. nameless .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict(sdf)
]])
      assert.matches("app%.lua:5: model:predict%(sdf%): the model file has no feature names", err)
      err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. nameless .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m.predict{ sdf.a, sdf.b }
]])
      assert.matches("app%.lua:5: model:predict%(x%) must be called with ':'", err)
    end)

    it("raises a row error for a value that is no number", function()
      H.load_source(H.header .. [[
local m = ls.model.load("]] .. two .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ sdf.x, sdf.y }
sdf:to_topic(app:topic("out"))
]])
      local err = H.error_of(H.run, { { { x = 1, y = "fast" } } })
      assert.matches("app%.lua:5: .*ls%.model: feature 2 %('y'%) must be a number, got string \"fast\"", err)
    end)

    it("passes at most 150 features as arguments", function()
      local w = {}
      for i = 1, 150 do w[i] = i end
      local wide = write("wide.json", json({ format = "luastream-linear", objective = "linear", weights = w }))
      local args = {}
      for i = 1, 150 do args[i] = "sdf.f" .. i end
      H.load_source(H.header .. [[
local m = ls.model.load("]] .. wide .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ ]] .. table.concat(args, ", ") .. [[ }
sdf:to_topic(app:topic("out"))
]])
      local row, want = {}, 0
      for i = 1, 150 do row["f" .. i] = 1 / i; want = want + i * (1 / i) end
      assert.same(want, H.values({ { row } })[1].p)
      w[151] = 1
      args[151] = "sdf.f151"
      local wider = write("wider.json", json({ format = "luastream-linear", objective = "linear", weights = w }))
      local err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. wider .. [[")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.p = m:predict{ ]] .. table.concat(args, ", ") .. [[ }
]])
      assert.matches("app%.lua:5: model:predict: a column expression can pass at most 150 features, " ..
        "this model reads 151", err)
    end)
  end)

  describe("plain calls", function()
    local m = ls.model.load(write("plain.json", json({ format = "luastream-linear", objective = "linear",
      weights = { 1, 2 }, feature_names = { "a", "b" } })))

    it("refuse a wrong count, a row without the features, values that are no numbers", function()
      assert.matches("the model reads 2 features, got more", H.error_of(m.predict, m, { 1, 2, 3 }))
      assert.matches("the model reads 2 features, got a vec of 3", H.error_of(m.predict, m, ls.vec.from{ 1, 2, 3 }))
      assert.matches("the row has none of the model's features %(a, b%)", H.error_of(m.predict, m, { c = 1 }))
      assert.matches("feature 1 %('a'%) must be a number, got table", H.error_of(m.predict, m, { {}, 2 }))
      assert.matches("expected an array of 2 numbers, or a row with the model's feature names, got string",
        H.error_of(m.predict, m, "1,2"))
    end)
  end)

  describe("docs/models.md", function()
    it("has lua blocks that compile", function()
      local root = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "../../"
      local fh = assert(io.open(root .. "docs/models.md"))
      local text = fh:read("*a")
      fh:close()
      local n = 0
      for code in text:gmatch("\n```lua\n(.-)\n```") do
        n = n + 1
        assert(loadstring(code, "=docs/models.md block " .. n))
      end
      assert.is_true(n >= 2)
    end)
  end)

  describe("loading", function()
    it("finds a relative path next to the calling script, and lists the files it loaded", function()
      local dir = H.tmpdir()
      local f = assert(io.open(dir .. "/beside.json", "w"))
      f:write(json({ format = "luastream-linear", objective = "linear", weights = { 3 } }))
      f:close()
      H.load_source(H.header .. [[
local m = ls.model.load("beside.json")
assert(m:predict{ 2 } == 6)
local app = ls.app{}
app:dataframe(app:topic("in")):to_topic(app:topic("out"))
]], nil, "beside_app.lua")
      local files = ls.model.files()
      local found = false
      for _, p in ipairs(files) do found = found or p == dir .. "/beside.json" end
      assert.is_true(found)
    end)

    it("fails with the script's line and the file's name", function()
      local bad = write("bad.json", json({ format = "luastream-linear", objective = "linear", weights = { 1 },
        bias = "one" }))
      local err = H.error_of(H.load_source, H.header .. [[

local m = ls.model.load("]] .. bad .. [[")
]])
      assert.same(H.tmpdir() .. "/app.lua:3: ls.model.load: " .. bad .. ": bias must be a number", err)
      err = H.error_of(H.load_source, H.header .. [[
local m = ls.model.load("]] .. bad .. [[", { layout = "fast" })
]])
      assert.matches("app%.lua:2: ls%.model%.load: option 'layout' must be 'auto' or 'linked', got fast", err)
    end)
  end)
end)
