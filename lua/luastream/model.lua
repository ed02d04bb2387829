-- luastream.model: ls.model, trained models scored inside the pipeline.
--
--   local m = ls.model.load("crash_model/crash.json")       -- next to the script
--   sdf.p_crash = m:predict{ sdf.gX, sdf.gY, sdf.gZ, sdf.gTotal }
--   local p = m:predict{ 0.1, -0.2, 9.8, 9.8 }               -- plain values
--
-- Two formats, told apart by their content (docs/models.md):
--  * XGBoost's JSON model (Booster.save_model("m.json")): gbtree with
--    binary:logistic, binary:logitraw, reg:logistic, reg:squarederror,
--    multi:softprob or multi:softmax;
--  * luastream's linear format: {"format": "luastream-linear", "objective":
--    "linear"|"logistic", "weights": [...], "bias": ..., "feature_names": [...]}.
--
-- Loading reads and checks the whole file and builds the arrays that the C
-- kernels (runtime/model.c, through ffi.C) walk: every problem is an error at
-- the script's `ls.model.load` line, naming the file, so a bad model stops the
-- app at load (exit 2) or refuses a live reload. Trees become the flat arrays
-- of runtime/model.h (blocks of 8 trees, complete or linked), so scoring a row
-- is one FFI call that reproduces XGBoost's float32 arithmetic exactly.
--
-- Every model file loaded in this Lua state is listed by M.files(), which the
-- runtime adds to the files that --watch follows (runtime/lua_vm.c).
local ffi = require("ffi")
local core = require("luastream.core")
local util = require("luastream.util")
local expr = require("luastream.expr")
local vec = require("luastream.vec")

local type, tostring, tonumber, pairs, next, rawget, setmetatable, getmetatable =
  type, tostring, tonumber, pairs, next, rawget, setmetatable, getmetatable
local format, concat = string.format, table.concat
local huge = math.huge
local null = core.null
local NaN = 0 / 0

-- runtime/model.h's types, declared once per Lua state (a struct cannot be
-- declared twice), then checked against the C layout.
if not pcall(ffi.typeof, "ls_model") then
  ffi.cdef([[
typedef struct ls_model_block {
  int32_t depth, ntrees;
  const uint32_t *feat;
  const float *split;
  const float *leaf;
  const uint32_t *child;
  uint32_t root[8];
} ls_model_block;
typedef struct ls_model {
  int32_t kind, transform, nfeatures, noutputs, nblocks, present_slots;
  const ls_model_block *blocks;
  const int32_t *group;
  const float *base;
  float *row;
  const double *weights;
  const double *bias;
} ls_model;
]])
end
ffi.cdef([[
double ls_ffi_model_predict(const ls_model *m, const double *x, double *out, int32_t raw);
float logf(float x);
]])
assert(ffi.sizeof("ls_model_block") == 72 and ffi.offsetof("ls_model_block", "root") == 40 and
  ffi.sizeof("ls_model") == 72 and ffi.offsetof("ls_model", "blocks") == 24,
  "luastream.model: ls_model is declared with another layout than runtime/model.h's")

local C = ffi.C
if not pcall(function() return C.ls_ffi_model_predict end) then
  error("luastream.model: the model kernels are not in this process; run inside the luastream binary", 0)
end

local LANES = 8           -- LS_MODEL_LANES
local TREES, LINEAR = 1, 2
local IDENTITY, SIGMOID, SOFTMAX, ARGMAX = 0, 1, 2, 3
-- The expression form passes every feature as an argument of one call in the
-- compiled pipeline; Lua functions take at most ~200 arguments.
local MAX_EXPR_FEATURES = 150
-- A block of trees is laid out as complete trees (model.h) when that takes at
-- most this many cells (lanes x nodes), or at most 4 times its real nodes.
local PERFECT_CELLS = 4096
local PERFECT_MAX_DEPTH = 16

local M = {}

---------------------------------------------------------------------------
-- Files loaded in this Lua state (for --watch)
---------------------------------------------------------------------------

local files, file_seen = {}, {}

-- The model files loaded by this Lua state, in load order, as opened.
function M.files()
  local out = {}
  for i = 1, #files do out[i] = files[i] end
  return out
end

local function note_file(path)
  if not file_seen[path] then
    file_seen[path] = true
    files[#files + 1] = path
  end
end

---------------------------------------------------------------------------
-- Reading the file
---------------------------------------------------------------------------

-- A relative path is relative to the directory of the script calling
-- ls.model.load (as `require` finds the script's modules), so a model file
-- next to the script is found from any working directory.
local function resolve(path, file)
  if path:sub(1, 1) == "/" then return path end
  local dir = type(file) == "string" and file:match("^(.*)/[^/]*$")
  if dir == nil or dir == "" or dir == "." then return path end
  return dir .. "/" .. path
end

-- A checker bound to one file: every complaint names it.
local function checker(path, where)
  local ck = {}
  function ck.fail(msg) util.fail("ls.model.load: " .. path .. ": " .. msg, where) end
  function ck.int(v, what, lo, hi)
    if type(v) == "string" then v = tonumber(v) end
    if type(v) ~= "number" or v % 1 ~= 0 or v < lo or (hi and v > hi) then
      ck.fail(what .. " must be a whole number " .. (hi and ("in " .. lo .. ".." .. hi) or (">= " .. lo)) ..
        ", got " .. tostring(v))
    end
    return v
  end
  -- A JSON array of numbers (a vec after decoding), or of booleans when
  -- bools; returns a 1-based reader and the length.
  function ck.list(v, what, n, bools)
    if vec.is(v) then
      if n and #v ~= n then ck.fail(format("%s has %d entries, expected %d", what, #v, n)) end
      local d = v.d
      return function(i) return d[i - 1] end, #v
    end
    if type(v) == "table" and (bools or next(v) == nil) then
      if n and #v ~= n then ck.fail(format("%s has %d entries, expected %d", what, #v, n)) end
      for i = 1, #v do
        local x = v[i]
        if type(x) ~= "boolean" and type(x) ~= "number" then
          ck.fail(format("%s[%d] must be a number, got %s", what, i, type(x)))
        end
      end
      return function(i) local x = v[i]; if x == true then return 1 elseif x == false then return 0 end return x end, #v
    end
    ck.fail(what .. " must be an array of numbers, got " .. (type(v) == "table" and "an array with other values"
      or type(v)))
  end
  return ck
end

local function read_json(path, ck)
  local f, err = io.open(path, "rb")
  if not f then ck.fail("cannot open: " .. tostring(err):gsub("^[^:]*: ", "")) end
  local text = f:read("*a")
  f:close()
  if text == nil then ck.fail("cannot read the file") end
  local first = text:match("^%s*(.)")
  if first ~= "{" then
    ck.fail("not a supported model format: expected a JSON object (XGBoost's JSON model, saved with " ..
      "save_model(\"name.json\"), or the linear format of docs/models.md)" ..
      (first == nil and "; the file is empty" or ""))
  end
  local ok, doc = pcall(core.decode, "json", text, { arrays = "vec" })
  if not ok then
    ck.fail("not a supported model format: invalid JSON (" .. tostring(doc):gsub("^decode json: ", "") .. ")")
  end
  if type(doc) ~= "table" then ck.fail("not a supported model format: expected a JSON object") end
  return doc
end

-- Feature names: nil, or a list of distinct strings of length n.
local function check_names(ck, names, n, what)
  if names == nil or (vec.is(names) and #names == 0) or (type(names) == "table" and next(names) == nil) then
    return nil
  end
  if type(names) ~= "table" then ck.fail(what .. " must be an array of strings") end
  if #names ~= n then
    ck.fail(format("%s has %d names, but the model reads %d features", what, #names, n))
  end
  local seen, out = {}, {}
  for i = 1, n do
    local s = names[i]
    if type(s) ~= "string" or s == "" then ck.fail(format("%s[%d] must be a non-empty string", what, i)) end
    if seen[s] then ck.fail(format("%s: '%s' is named twice (features %d and %d)", what, s, seen[s], i)) end
    seen[s] = i
    out[i] = s
  end
  return out
end

---------------------------------------------------------------------------
-- XGBoost's JSON model
---------------------------------------------------------------------------

-- objective -> { transform, how base_score becomes a margin }
local XGB_OBJECTIVES = {
  ["binary:logistic"] = { SIGMOID, "logit" },
  ["reg:logistic"] = { SIGMOID, "logit" },
  ["binary:logitraw"] = { IDENTITY, "same" },
  ["reg:squarederror"] = { IDENTITY, "same" },
  ["reg:linear"] = { IDENTITY, "same" },     -- the old name of reg:squarederror
  ["multi:softprob"] = { SOFTMAX, "same", multi = true },
  ["multi:softmax"] = { ARGMAX, "same", multi = true },
}
M.XGBOOST_OBJECTIVES = {}
for k in pairs(XGB_OBJECTIVES) do M.XGBOOST_OBJECTIVES[#M.XGBOOST_OBJECTIVES + 1] = k end
table.sort(M.XGBOOST_OBJECTIVES)

local f32box = ffi.new("float[1]")
local function to_f32(x)
  f32box[0] = x
  return f32box[0]
end

-- base_score as XGBoost writes it: "5E-1" (1.x) or "[5E-1]" (2.x, one target).
local function parse_base_score(ck, s)
  if type(s) == "number" then return s end
  if type(s) ~= "string" then ck.fail("learner_model_param.base_score is missing") end
  local inner = s:match("^%s*%[%s*([^,%]]+)%s*%]%s*$") or s
  local v = tonumber(inner)
  if v == nil then ck.fail("learner_model_param.base_score is not a number: '" .. s .. "'") end
  return v
end

-- The base margin in float, as XGBoost computes it: -logf(1/b - 1) for the
-- logistic objectives.
local function base_margin(ck, how, b)
  b = to_f32(b)
  if how == "logit" then
    if not (b > 0 and b < 1) then
      ck.fail("base_score must be in (0, 1) for a logistic objective, got " .. tostring(b))
    end
    return -C.logf(to_f32(to_f32(1 / b) - 1))  -- float division and subtraction, libm's logf
  end
  return b
end

-- The slot of the row (model.h) and the split a node of feature f with the
-- split s reads; present: the third slots are read.
local function slot_of(f, s, default_left, nf)
  if s ~= s or s == -huge then            -- every present value goes right
    if default_left then return 2 * nf + f, 0.5, true end
    return nf + f, -huge
  end
  return default_left and f or nf + f, s
end

-- The blocks of LANES trees (runtime/model.h's ls_model_block), each in the
-- perfect or the linked layout. Returns the blocks (an array with .array, the
-- cdata, and .layouts, {perfect = n, linked = n}), the arrays to keep alive,
-- and whether any split reads the third slots.
local function build_blocks(trees, nf, layout)
  local ntrees = #trees
  local nblocks = math.max(1, math.ceil(ntrees / LANES))
  local array = ffi.new("ls_model_block[?]", nblocks)
  local keep, present = { array }, false
  local layouts = { perfect = 0, linked = 0 }
  local f32 = ffi.new("float[1]")
  for b = 0, nblocks - 1 do
    local blk = array[b]
    local first, count, depth, real = b * LANES + 1, 0, 0, 0
    for k = 0, LANES - 1 do
      local t = trees[first + k]
      if t then
        count = count + 1
        real = real + #t.order
        if t.depth > depth then depth = t.depth end
      end
    end
    blk.depth, blk.ntrees = depth, count
    local cells = LANES * 2 ^ (depth + 1)
    if layout ~= "linked" and depth <= PERFECT_MAX_DEPTH and cells <= math.max(PERFECT_CELLS, 4 * real) then
      layouts.perfect = layouts.perfect + 1
      local ninner = 2 ^ depth - 1
      local feat = ffi.new("uint32_t[?]", math.max(1, ninner * LANES))
      local split = ffi.new("float[?]", math.max(1, ninner * LANES))
      local leaf = ffi.new("float[?]", 2 ^ depth * LANES)
      for k = 0, LANES - 1 do
        local t = trees[first + k]
        if t then
          local lc, rc, si, sc, dl = t.lc, t.rc, t.si, t.sc, t.dl
          local function place(i, j, d)
            if d == depth then
              leaf[(j - ninner) * LANES + k] = sc(i)
            elseif lc(i) == -1 then   -- a leaf above the last level: over every leaf below
              place(i, 2 * j + 1, d + 1)
              place(i, 2 * j + 2, d + 1)
            else
              f32[0] = sc(i)
              local slot, s, p = slot_of(si(i), f32[0], dl(i) ~= 0, nf)
              feat[j * LANES + k], split[j * LANES + k] = slot, s
              present = present or p
              place(lc(i) + 1, 2 * j + 1, d + 1)
              place(rc(i) + 1, 2 * j + 2, d + 1)
            end
          end
          place(1, 0, 0)
        end
      end
      blk.feat, blk.split, blk.leaf, blk.child = feat, split, leaf, nil
      keep[#keep + 1], keep[#keep + 2], keep[#keep + 3] = feat, split, leaf
    else
      layouts.linked = layouts.linked + 1
      local n = real + 1   -- node 0: the leaf of the lanes without a tree
      local feat = ffi.new("uint32_t[?]", n)
      local split = ffi.new("float[?]", n)
      local leaf = ffi.new("float[?]", n)
      local child = ffi.new("uint32_t[?]", n)
      split[0] = NaN
      local next_id = 1
      for k = 0, LANES - 1 do
        local t = trees[first + k]
        blk.root[k] = 0
        if t then
          local lc, rc, si, sc, dl, order = t.lc, t.rc, t.si, t.sc, t.dl, t.order
          local id = { [1] = next_id }
          blk.root[k] = next_id
          next_id = next_id + 1
          for j = 1, #order do
            local i = order[j]
            local me = id[i]
            local l = lc(i)
            if l == -1 then
              feat[me], split[me], child[me], leaf[me] = 0, NaN, me, sc(i)
            else
              id[l + 1], id[rc(i) + 1] = next_id, next_id + 1
              f32[0] = sc(i)
              local slot, s, p = slot_of(si(i), f32[0], dl(i) ~= 0, nf)
              feat[me], split[me], child[me] = slot, s, next_id
              present = present or p
              next_id = next_id + 2
            end
          end
        end
      end
      blk.feat, blk.split, blk.leaf, blk.child = feat, split, leaf, child
      keep[#keep + 1], keep[#keep + 2], keep[#keep + 3], keep[#keep + 4] = feat, split, leaf, child
    end
  end
  return { array = array, layouts = layouts, n = nblocks }, keep, present
end

local function load_xgboost(doc, ck, layout)
  local L = doc.learner
  if type(L) ~= "table" then ck.fail("not an XGBoost model: 'learner' is not an object") end
  local gb = L.gradient_booster
  if type(gb) ~= "table" then ck.fail("not an XGBoost model: 'learner.gradient_booster' is missing") end
  local booster = gb.name
  if booster ~= "gbtree" then
    ck.fail("unsupported booster '" .. tostring(booster) .. "': only 'gbtree' is supported" ..
      (booster == "dart" and " (dart's tree weights are not read)" or ""))
  end
  local obj = type(L.objective) == "table" and L.objective.name
  local spec = XGB_OBJECTIVES[obj]
  if not spec then
    ck.fail("unsupported objective '" .. tostring(obj) .. "' (supported: " ..
      concat(M.XGBOOST_OBJECTIVES, ", ") .. ")")
  end
  local mp = L.learner_model_param
  if type(mp) ~= "table" then ck.fail("'learner.learner_model_param' is missing") end
  local nf = ck.int(mp.num_feature, "learner_model_param.num_feature", 1, 2 ^ 30)
  local ncls = ck.int(mp.num_class or "0", "learner_model_param.num_class", 0, 2 ^ 20)
  local ntarget = ck.int(mp.num_target or "1", "learner_model_param.num_target", 1)
  if ntarget ~= 1 then ck.fail("models with " .. ntarget .. " targets are not supported") end
  local nout = 1
  if spec.multi then
    if ncls < 2 then ck.fail("objective " .. obj .. " needs num_class >= 2, got " .. ncls) end
    nout = ncls
  elseif ncls > 1 then
    ck.fail("objective " .. obj .. " with num_class = " .. ncls .. " is not supported")
  end
  local base = base_margin(ck, spec[2], parse_base_score(ck, mp.base_score))

  local model = gb.model
  local trees = type(model) == "table" and model.trees
  if vec.is(trees) and #trees == 0 then trees = {} end  -- [] decodes as an empty vec
  if type(trees) ~= "table" then ck.fail("'gradient_booster.model.trees' must be an array of trees") end
  local ntrees = #trees
  local param = model.gbtree_model_param
  if type(param) == "table" and param.num_trees ~= nil then
    local declared = ck.int(param.num_trees, "gbtree_model_param.num_trees", 0)
    if declared ~= ntrees then
      ck.fail(format("gbtree_model_param.num_trees is %d, but the file holds %d trees", declared, ntrees))
    end
  end
  local info_at, info_n = ck.list(model.tree_info or {}, "tree_info")
  if info_n ~= ntrees then ck.fail(format("tree_info has %d entries for %d trees", info_n, ntrees)) end

  -- First pass: check every tree and count the nodes reachable from its root.
  local parsed, total, maxdepth = {}, 0, 0
  for k = 1, ntrees do
    local t = trees[k]
    local what = format("tree %d", k - 1)
    if type(t) ~= "table" then ck.fail(what .. " is not an object") end
    local tp = t.tree_param
    local n = ck.int(type(tp) == "table" and tp.num_nodes, what .. ": tree_param.num_nodes", 1, 2 ^ 31 - 2)
    if type(tp) == "table" and tp.size_leaf_vector ~= nil and tonumber(tp.size_leaf_vector) ~= 0 and
      tonumber(tp.size_leaf_vector) ~= 1 then
      ck.fail(what .. ": vector leaves (multi-target trees) are not supported")
    end
    local lc = ck.list(t.left_children, what .. ": left_children", n)
    local rc = ck.list(t.right_children, what .. ": right_children", n)
    local si = ck.list(t.split_indices, what .. ": split_indices", n)
    local sc = ck.list(t.split_conditions, what .. ": split_conditions", n)
    local dl = ck.list(t.default_left, what .. ": default_left", n, true)
    if t.split_type ~= nil then
      local st, stn = ck.list(t.split_type, what .. ": split_type", nil)
      for i = 1, stn do
        if st(i) ~= 0 then
          ck.fail(format("%s: node %d is a categorical split, which is not supported", what, i - 1))
        end
      end
    end
    local g = info_at(k)
    if type(g) ~= "number" or g % 1 ~= 0 or g < 0 or g >= nout then
      ck.fail(format("tree_info[%d] = %s: not an output of this model (0..%d)", k - 1, tostring(g), nout - 1))
    end
    -- Walk from the root, breadth first: every node reached once, children
    -- in range, both or neither present.
    local order, depth_of, seen = { 1 }, { [1] = 0 }, { [1] = true }
    local head, depth = 1, 0
    while head <= #order do
      local i = order[head]
      head = head + 1
      local l, r = lc(i), rc(i)
      if l == -1 and r == -1 then
        local v = sc(i)
        if v ~= v then ck.fail(format("%s: leaf %d has no value (NaN)", what, i - 1)) end
      else
        if l % 1 ~= 0 or r % 1 ~= 0 or l < 1 or r < 1 or l >= n or r >= n or l == r then
          ck.fail(format("%s: node %d has children %s and %s (the tree has %d nodes)", what, i - 1,
            tostring(l), tostring(r), n))
        end
        if seen[l + 1] or seen[r + 1] then
          ck.fail(format("%s: node %d is reached twice (the arrays do not form a tree)", what,
            seen[l + 1] and l or r))
        end
        local f = si(i)
        if f % 1 ~= 0 or f < 0 or f >= nf then
          ck.fail(format("%s: node %d splits on feature %s, but the model has %d features (num_feature)",
            what, i - 1, tostring(f), nf))
        end
        seen[l + 1], seen[r + 1] = true, true
        local d = depth_of[i] + 1
        depth_of[l + 1], depth_of[r + 1] = d, d
        if d > depth then depth = d end
        order[#order + 1] = l + 1
        order[#order + 1] = r + 1
      end
    end
    parsed[k] = { lc = lc, rc = rc, si = si, sc = sc, dl = dl, order = order, depth = depth, group = g }
    total = total + #order
    if depth > maxdepth then maxdepth = depth end
  end
  if total > 2 ^ 31 then ck.fail("too many nodes") end

  local names = check_names(ck, L.feature_names, nf, "feature_names")
  local blocks, keep, present = build_blocks(parsed, nf, layout)
  local group = ffi.new("int32_t[?]", blocks.n * LANES)
  for k = 1, ntrees do group[k - 1] = parsed[k].group end
  local basev = ffi.new("float[?]", nout)
  for g = 0, nout - 1 do basev[g] = base end
  local c = ffi.new("ls_model")
  c.kind, c.transform, c.nfeatures, c.noutputs = TREES, spec[1], nf, nout
  c.nblocks, c.present_slots, c.blocks, c.group, c.base = blocks.n, present and 1 or 0, blocks.array, group, basev
  keep[#keep + 1], keep[#keep + 2], keep[#keep + 3] = blocks.array, group, basev
  local version = doc.version
  local vtext
  if vec.is(version) and #version == 3 then vtext = format("%d.%d.%d", version[1], version[2], version[3]) end
  return {
    format = "xgboost", objective = obj, num_features = nf, num_outputs = nout, feature_names = names,
    num_trees = ntrees, depth = maxdepth, xgboost_version = vtext, layouts = blocks.layouts,
    _c = c, _keep = keep,
  }
end

---------------------------------------------------------------------------
-- The linear format (docs/models.md)
---------------------------------------------------------------------------

local LINEAR_KEYS = { format = true, version = true, objective = true, weights = true, bias = true,
  feature_names = true, description = true }
local LINEAR_OBJECTIVES = { linear = true, logistic = true }

local function load_linear(doc, ck)
  for k in pairs(doc) do
    if not LINEAR_KEYS[k] then ck.fail("unknown key '" .. tostring(k) .. "'" .. util.suggest(k, LINEAR_KEYS)) end
  end
  if doc.version ~= nil and doc.version ~= 1 then
    ck.fail("format version " .. tostring(doc.version) .. " is not supported (this luastream reads version 1)")
  end
  local obj = doc.objective
  if not LINEAR_OBJECTIVES[obj] then
    ck.fail("unsupported objective '" .. tostring(obj) .. "' (supported: linear, logistic)")
  end
  local w = doc.weights
  local rows = {}
  if vec.is(w) then
    rows[1] = w
  elseif type(w) == "table" and #w > 0 then
    for j = 1, #w do
      if not vec.is(w[j]) then ck.fail(format("weights[%d] must be an array of numbers", j)) end
      rows[j] = w[j]
    end
  else
    ck.fail("weights must be an array of numbers, or an array of such arrays (one per output)")
  end
  local nout, nf = #rows, #rows[1]
  if nf < 1 then ck.fail("weights must hold at least one number") end
  local weights = ffi.new("double[?]", nout * nf)
  for j = 1, nout do
    if #rows[j] ~= nf then
      ck.fail(format("weights[%d] has %d numbers, weights[1] has %d", j, #rows[j], nf))
    end
    for i = 1, nf do
      local x = rows[j][i]
      if x ~= x or x == huge or x == -huge then ck.fail(format("weight %d of output %d is not finite", i, j)) end
      weights[(j - 1) * nf + i - 1] = x
    end
  end
  local b = doc.bias
  if b == nil then b = 0 end
  local bias = ffi.new("double[?]", nout)
  if type(b) == "number" then
    if nout ~= 1 then ck.fail(format("bias must be an array of %d numbers (one per output)", nout)) end
    bias[0] = b
  elseif vec.is(b) and #b == nout then
    for j = 1, nout do bias[j - 1] = b[j] end
  else
    ck.fail(format("bias must be %s", nout == 1 and "a number" or format("an array of %d numbers", nout)))
  end
  for j = 0, nout - 1 do
    if bias[j] ~= bias[j] or bias[j] == huge or bias[j] == -huge then ck.fail("bias is not finite") end
  end
  local transform = IDENTITY
  if obj == "logistic" then transform = nout == 1 and SIGMOID or SOFTMAX end
  local c = ffi.new("ls_model")
  c.kind, c.transform, c.nfeatures, c.noutputs = LINEAR, transform, nf, nout
  c.weights, c.bias = weights, bias
  return {
    format = "linear", objective = obj, num_features = nf, num_outputs = nout,
    feature_names = check_names(ck, doc.feature_names, nf, "feature_names"),
    _c = c, _keep = { weights, bias },
  }
end

---------------------------------------------------------------------------
-- Scoring
---------------------------------------------------------------------------

local Model = {}
Model.__index = Model
Model.__tostring = function(m)
  return format("Model<%s %s, %d features%s, %s>", m.format, m.objective, m.num_features,
    m.num_trees and (", " .. m.num_trees .. " trees") or "", m.path)
end

local function is_model(x) return getmetatable(x) == Model end
M.is_model = is_model

local function describe(v)
  if type(v) == "string" then return "string " .. util.quote(#v > 40 and v:sub(1, 40) .. "..." or v) end
  return type(v)
end

local is_expr, is_sdf = expr.is_expr, function(x) return expr.hooks.is_sdf(x) end

-- A feature value as the kernels take it: numbers as they are, missing
-- (nil, ls.null, NaN) as NaN, booleans as 1 / 0. A column expression marks
-- the call as the expression form (see Model:predict). Anything else is an
-- error.
local function feature(m, v, i)
  if v == nil or v == null then return NaN end
  local t = type(v)
  if t == "boolean" then return v and 1 or 0 end
  if t == "cdata" then
    local n = tonumber(v)
    if type(n) == "number" then return n end
  elseif t == "table" and (is_expr(v) or is_sdf(v)) then
    m._expr_seen = true
    return NaN
  end
  local names = m.feature_names
  error(format("ls.model: feature %d%s must be a number, got %s", i,
    names and (" ('" .. names[i] .. "')") or "", describe(v)), 0)
end

-- (With column expressions among the values, m:predict reports the count
-- itself, at the script's line.)
local function too_many(m, what)
  if m._expr_seen then return end
  error(format("%s: the model reads %d features, got more", what, m.num_features), 0)
end

local function name_list(names, nf)
  return concat(names, ", ", 1, math.min(nf, 8)) .. (nf > 8 and ", ..." or "")
end

-- A row table with none of the model's feature names: all missing when it is
-- empty, else a mistake.
local function none_found(m, x, what)
  if next(x) ~= nil and not m._expr_seen then
    error(format("%s: the row has none of the model's features (%s)", what,
      name_list(m.feature_names, m.num_features)), 0)
  end
end

-- The functions that copy a row into m._x: by position (x[1], x[2], ...)
-- and, when the model has feature names, by name (x.gX, ...). Generated for
-- each model, unrolled up to UNROLL features: a loop over a few features
-- inside the caller's loop would be a trace of its own, and the caller's
-- loop would not compile around it.
local UNROLL = 32
local function fill_functions(m, what)
  local nf, names = m.num_features, m.feature_names
  local src = { "local type, feature, m, xb, too_many, none_found, what, names = ...\n" }
  local function add(s) src[#src + 1] = s end
  add("local by_pos, by_name\n")
  if nf <= UNROLL then
    add("by_pos = function(x)\n  local v\n")
    for i = 1, nf do
      add(format("  v = x[%d] if type(v) ~= 'number' then v = feature(m, v, %d) end xb[%d] = v\n", i, i, i - 1))
    end
    add(format("  if x[%d] ~= nil then too_many(m, what) end\nend\n", nf + 1))
    if names then
      add("by_name = function(x)\n  local v, found = nil, false\n")
      for i = 1, nf do
        add(format("  v = x[%q] if v ~= nil then found = true end " ..
          "if type(v) ~= 'number' then v = feature(m, v, %d) end xb[%d] = v\n", names[i], i, i - 1))
      end
      add("  if not found then none_found(m, x, what) end\nend\n")
    end
  else
    add(format([[
by_pos = function(x)
  for i = 1, %d do
    local v = x[i]
    if type(v) ~= 'number' then v = feature(m, v, i) end
    xb[i - 1] = v
  end
  if x[%d] ~= nil then too_many(m, what) end
end
by_name = function(x)
  local found = false
  for i = 1, %d do
    local v = x[names[i] ]
    if v ~= nil then found = true end
    if type(v) ~= 'number' then v = feature(m, v, i) end
    xb[i - 1] = v
  end
  if not found then none_found(m, x, what) end
end
]], nf, nf + 1, nf))
  end
  add("return by_pos, by_name\n")
  local chunk = assert(loadstring(concat(src), "=[model " .. m.path .. "]"))
  local by_pos, by_name = chunk(type, feature, m, m._x, too_many, none_found, what, names)
  return by_pos, names and by_name or nil
end

-- Copies the row x (an array, a row table with the model's feature names, or
-- an ls.vec) into m._x.
local function fill(m, x, what)
  if type(x) == "table" then
    if x[1] == nil and m._fill_name then
      m._fill_name(x)
    else
      m._fill_pos(x)
    end
  elseif vec.is(x) then
    if #x ~= m.num_features then
      error(format("%s: the model reads %d features, got a vec of %d", what, m.num_features, #x), 0)
    end
    ffi.copy(m._x, x.d, m.num_features * 8)
  else
    error(format("%s: expected an array of %d numbers%s, got %s", what, m.num_features,
      m.feature_names and ", or a row with the model's feature names" or "", type(x)), 0)
  end
end

-- The result of the kernel for m: a number, or for several outputs (softprob,
-- several linear outputs, margins of a multi-class model) a new vec.
local function score(m, raw)
  local nout = m.num_outputs
  if nout == 1 or (raw == 0 and m._c.transform == ARGMAX) then
    return C.ls_ffi_model_predict(m._c, m._x, m._out, raw)
  end
  local v = vec.new(nout)
  C.ls_ffi_model_predict(m._c, m._x, v.d, raw)
  return v
end

-- The function a compiled pipeline calls for m:predict{ e1, ..., en }: one
-- argument per feature, each checked inline (so the JIT keeps the row in
-- registers), then one call of the kernel.
local function row_function(m, raw)
  local nf = m.num_features
  local params, body = {}, {}
  for i = 1, nf do
    params[i] = "a" .. i
    body[i] = format("  if type(a%d) ~= 'number' then a%d = feature(m, a%d, %d) end xb[%d] = a%d",
      i, i, i, i, i - 1, i)
  end
  local multi = m.num_outputs > 1 and (raw == 1 or m._c.transform ~= ARGMAX)
  local src = "local type, feature, m, xb, out, c, kernel, vnew = ...\n" ..
    "return function(" .. concat(params, ", ") .. ")\n" .. concat(body, "\n") .. "\n" ..
    (multi and format("  local v = vnew(%d)\n  kernel(c, xb, v.d, %d)\n  return v\n", m.num_outputs, raw)
      or format("  return kernel(c, xb, out, %d)\n", raw)) ..
    "end\n"
  local chunk = assert(loadstring(src, "=[model " .. m.path .. "]"))
  return chunk(type, feature, m, m._x, m._out, m._c, C.ls_ffi_model_predict, vec.new)
end

local function check_self(m, name)
  if not is_model(m) then
    util.fail("model:" .. name .. "(x) must be called with ':' on a model (m:" .. name .. "{ ... })")
  end
end

-- The expression form, at declaration time: m:predict{ sdf.a, sdf.b, ... }
-- (by position), m:predict{ a = sdf.a, ... } or m:predict(sdf) (by the
-- model's feature names), m:predict(sdf.features) (a column holding an array
-- or a vec per row).
local function expression(m, x, raw, name)
  local nf = m.num_features
  local names = m.feature_names
  local key = raw == 1 and "_margin_fn" or "_predict_fn"
  if is_expr(x) then
    local one = rawget(m, key .. "1")
    if not one then
      local method = raw == 1 and Model.margin or Model.predict
      one = function(v) return method(m, v) end
      m[key .. "1"] = one
    end
    return expr.call(one, "model." .. name, x)
  end
  local args = {}
  if is_sdf(x) or (names and x[1] == nil) then
    if not names then
      util.fail(format("model:%s(sdf): the model file has no feature names; pass the columns in order, " ..
        "m:%s{ sdf.a, sdf.b, ... } (%d features)", name, name, nf))
    end
    local pos = {}
    for i = 1, nf do pos[names[i]] = i end
    if not is_sdf(x) then
      for k in pairs(x) do
        if not pos[k] then
          util.fail(format("model:%s: '%s' is not one of the model's features (%s)%s", name, tostring(k),
            name_list(names, nf), util.suggest(k, pos)))
        end
      end
    end
    for i = 1, nf do
      args[i] = is_sdf(x) and expr.col({ names[i] }, nil) or x[names[i]]
    end
  else
    local count, other = 0, false
    for k in pairs(x) do
      count = count + 1
      if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then other = true end
    end
    if count ~= nf or other or x[nf] == nil then
      util.fail(format("model:%s: the model reads %d features%s, got %s", name, nf,
        names and (" (" .. name_list(names, nf) .. ")") or "",
        other and "a table with other keys" or tostring(count)))
    end
    for i = 1, nf do args[i] = x[i] end
    -- A plain column named like another of the model's features is a swap.
    if names then
      local pos = {}
      for i = 1, nf do pos[names[i]] = i end
      for i = 1, nf do
        local node = is_expr(args[i]) and rawget(args[i], expr.NODE)
        local col = node and node.k == "col" and #node.path == 1 and node.path[1]
        local j = col and pos[col]
        if j and j ~= i then
          util.fail(format("model:%s: column '%s' is passed as feature %d, but the model's feature %d is '%s' " ..
            "and its feature %d is '%s': check the order", name, col, i, i, names[i], j, col))
        end
      end
    end
  end
  for i = 1, nf do
    if is_sdf(args[i]) then
      util.fail(format("model:%s: feature %d is a dataframe; pass its columns (sdf.x)", name, i))
    end
  end
  if nf > MAX_EXPR_FEATURES then
    util.fail(format("model:%s: a column expression can pass at most %d features, this model reads %d; " ..
      "score the row in a function instead: sdf:update(function(row) row.p = m:%s(row) end)",
      name, MAX_EXPR_FEATURES, nf, name))
  end
  local fn = rawget(m, key)
  if not fn then
    fn = row_function(m, raw)
    m[key] = fn
  end
  return expr.call(fn, "model." .. name, unpack(args, 1, nf))
end

-- m:predict(x): the prediction for one row: a probability (logistic
-- objectives), a value (regression), a vec of class probabilities
-- (multi:softprob, multi-output linear), a class index (multi:softmax).
-- With column expressions, an expression of that.
function Model:predict(x)
  check_self(self, "predict")
  if is_expr(x) or is_sdf(x) then return expression(self, x, 0, "predict") end
  fill(self, x, "ls.model")
  if self._expr_seen then
    self._expr_seen = nil
    return expression(self, x, 0, "predict")
  end
  return score(self, 0)
end

-- m:margin(x): the raw score before the objective's transform (a vec for
-- several outputs).
function Model:margin(x)
  check_self(self, "margin")
  if is_expr(x) or is_sdf(x) then return expression(self, x, 1, "margin") end
  fill(self, x, "ls.model")
  if self._expr_seen then
    self._expr_seen = nil
    return expression(self, x, 1, "margin")
  end
  return score(self, 1)
end

---------------------------------------------------------------------------
-- ls.model.load
---------------------------------------------------------------------------

local LOAD_OPTS = { layout = true }
local LAYOUTS = { auto = true, linked = true }

-- ls.model.load(path [, { layout = "auto" | "linked" }]): the model in the
-- file at path (relative to the calling script's directory). layout = "linked"
-- keeps every tree block in the linked layout (runtime/model.h), for
-- comparisons; "auto" (the default) picks per block.
function M.load(path, opts)
  local where, file = util.callsite()
  if type(path) ~= "string" or path == "" then
    util.fail("ls.model.load: expected the path of a model file, got " .. (path == "" and "''" or type(path)), where)
  end
  opts = util.check_options("ls.model.load", opts, LOAD_OPTS, where)
  local layout = opts.layout or "auto"
  if not LAYOUTS[layout] then
    util.fail("ls.model.load: option 'layout' must be 'auto' or 'linked', got " .. tostring(layout), where)
  end
  local full = resolve(path, file)
  note_file(full)  -- watched even when it fails: a fixed file dropped in place reloads
  local ck = checker(full, where)
  local doc = read_json(full, ck)
  local m
  if doc.learner ~= nil then
    m = load_xgboost(doc, ck, layout)
  elseif doc.format == "luastream-linear" then
    m = load_linear(doc, ck)
  else
    ck.fail("not a supported model format: neither XGBoost's JSON model (no 'learner') nor the linear format " ..
      "(\"format\": \"luastream-linear\"); see docs/models.md")
  end
  m.path = full
  m._x = ffi.new("double[?]", m.num_features)
  m._out = ffi.new("double[?]", m.num_outputs)
  m._row = ffi.new("float[?]", 3 * m.num_features)
  m._c.row = m._row
  m._fill_pos, m._fill_name = fill_functions(m, "ls.model")
  return setmetatable(m, Model)
end

return M
