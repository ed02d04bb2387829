-- In-process part of the model benchmark (tests/bench/model_bench.py):
--
--   luastream lua tests/bench/model_score.lua MODEL ROWS NF OUT [ROUNDS]
--
-- ROWS holds NF little-endian doubles per row (NaN: missing). Scores every row,
-- one call per row as a pipeline does, with:
--   predict          m:predict{...}: ls.model's C kernel (runtime/model.c), the
--                    layout it picks (complete trees, lanes side by side)
--   predict-linked   the same with layout = "linked" (linked nodes)
--   lua-source       the alternative: the ensemble compiled to Lua source, one
--                    function of nested ifs per tree, float comparisons and
--                    float sums through FFI, traced by LuaJIT
-- Each variant is first run once and checked against predict (identical
-- results), then timed ROUNDS times (default 5) over all rows; the best round
-- counts. Prints `variant rows_per_s` lines, and writes predict's results to
-- OUT as doubles.
local ls = require("luastream")
local ffi = require("ffi")
local core = require("luastream.core")

local model_path, rows_path, nf, out_path = arg[1], arg[2], tonumber(arg[3]), arg[4]
local rounds = tonumber(arg[5] or "5")

local f = assert(io.open(rows_path, "rb"))
local data = f:read("*a")
f:close()
local n = #data / (8 * nf)
local d = ffi.cast("const double *", data)
local rows = {}
for i = 0, n - 1 do
  local r = {}
  for j = 0, nf - 1 do r[j + 1] = d[i * nf + j] end
  rows[i + 1] = r
end

local function now() return core.monotonic_ms() / 1000 end

-- The ensemble as Lua source: tree k is a function of the features (already
-- floats) returning its leaf; the score adds the leaves in float, in order.
local function lua_source(path)
  local fh = assert(io.open(path, "rb"))
  local doc = core.decode("json", fh:read("*a"))
  fh:close()
  local L = doc.learner
  assert(L.objective.name == "binary:logistic", "lua-source: binary:logistic models only")
  local trees = L.gradient_booster.model.trees
  local args = {}
  for j = 1, nf do args[j] = "x" .. j end
  local arglist = table.concat(args, ", ")
  local box = ffi.new("float[1]")
  local function f32(v) box[0] = v; return box[0] end
  local src = { "local f32, exp = ...\nlocal trees = {}\n" }
  local function add(s) src[#src + 1] = s end
  local function node(t, i, indent)
    local l = t.left_children[i + 1]
    if l == -1 then
      add(indent .. string.format("return %.17g\n", f32(t.split_conditions[i + 1])))
      return
    end
    local x = "x" .. (t.split_indices[i + 1] + 1)
    local s = string.format("%.17g", f32(t.split_conditions[i + 1]))
    if t.default_left[i + 1] == 1 then
      add(indent .. string.format("if %s < %s or %s ~= %s then\n", x, s, x, x))
    else
      add(indent .. string.format("if %s < %s then\n", x, s))
    end
    node(t, l, indent .. " ")
    add(indent .. "else\n")
    node(t, t.right_children[i + 1], indent .. " ")
    add(indent .. "end\n")
  end
  for k, t in ipairs(trees) do
    add(string.format("trees[%d] = function(%s)\n", k, arglist))
    node(t, 0, " ")
    add("end\n")
  end
  local base = tonumber((tostring(L.learner_model_param.base_score):gsub("[%[%]]", "")))
  add("local t = trees\n")
  add(string.format("return function(x)\n local %s = ", arglist))
  local conv = {}
  for j = 1, nf do conv[j] = string.format("f32(x[%d])", j) end
  add(table.concat(conv, ", ") .. "\n")
  add(string.format(" local acc = f32(%.17g)\n", -math.log(f32(1 / f32(base) - 1))))
  for k = 1, #trees do add(string.format(" acc = f32(acc + t[%d](%s))\n", k, arglist)) end
  add(" return f32(1 / (1 + exp(-acc)))\nend\n")
  return assert(loadstring(table.concat(src), "=[lua-source]"))(f32, math.exp)
end

local m = ls.model.load(model_path)
local m_linked = ls.model.load(model_path, { layout = "linked" })
local gen = lua_source(model_path)

local variants = {
  { "predict", function(x) return m:predict(x) end },
  { "predict-linked", function(x) return m_linked:predict(x) end },
  { "lua-source", gen },
}

local want = {}
for i = 1, n do want[i] = m:predict(rows[i]) end

for _, v in ipairs(variants) do
  local name, fn = v[1], v[2]
  local bad = 0
  for i = 1, n do
    local p = fn(rows[i])
    -- the generated source works in floats throughout; the kernel's float
    -- sigmoid may round differently from exp in double by one float step
    if name == "lua-source" then
      if math.abs(p - want[i]) > 1.2e-7 then bad = bad + 1 end
    elseif p ~= want[i] then
      bad = bad + 1
    end
  end
  if bad > 0 then
    io.stderr:write(string.format("%s: %d of %d predictions differ from predict's\n", name, bad, n))
    os.exit(1)
  end
  local best = math.huge
  for _ = 1, rounds do
    local t0 = now()
    local acc = 0
    for i = 1, n do acc = acc + fn(rows[i]) end
    local dt = now() - t0
    if dt < best then best = dt end
    assert(acc == acc)
  end
  print(string.format("%s %.0f", name, n / best))
end

local out = ffi.new("double[?]", n)
for i = 1, n do out[i - 1] = want[i] end
local o = assert(io.open(out_path, "wb"))
o:write(ffi.string(out, 8 * n))
o:close()
print(string.format("layouts perfect=%d linked=%d trees=%d depth=%d", m.layouts.perfect, m.layouts.linked,
  m.num_trees, m.depth))
