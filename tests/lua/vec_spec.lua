-- ls.vec (lua/luastream/vec.lua over runtime/vec.c): every kernel against a
-- plain Lua reference on random data of several lengths, the error messages,
-- bounds checks, NaN and infinities, empty vecs, out-parameters, metamethods,
-- tostring and totable. The kernels are in the luastream executable, so this
-- spec runs under `luastream test` (elsewhere it is pending).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ffi = require("ffi")
local ls = require("luastream")
local vec = ls.vec

local nan, inf = 0 / 0, math.huge
-- -0 is written tonumber("-0") here, never -0.0: LuaJIT on arm64 keeps numbers
-- in its dual-number mode, where the literal -0.0 is the integer 0 (x86-64 has a
-- double -0); tonumber("-0") is the double -0 on every architecture.
local negz = tonumber("-0")
local LENGTHS = { 0, 1, 2, 3, 7, 8, 9, 33, 64, 65, 1500, 1501 }

if not pcall(function() return ffi.C.ls_ffi_vec_sum end) then
  describe("ls.vec", function()
    pending("needs the luastream binary (run with `luastream test`)")
  end)
  return
end

---------------------------------------------------------------------------
-- Data and comparisons
---------------------------------------------------------------------------

math.randomseed(20240611)

local function random_table(n, lo, hi)
  lo, hi = lo or -100, hi or 100
  local t = {}
  for i = 1, n do t[i] = lo + (hi - lo) * math.random() end
  return t
end

local function is_nan(x) return x ~= x end

-- Same value: NaN equals NaN, otherwise ==.
local function same(a, b) return (is_nan(a) and is_nan(b)) or a == b end

-- |got - want| <= 1e-12 * scale, NaN and infinities exact.
local function near(got, want, scale)
  if is_nan(want) or want == inf or want == -inf then return same(got, want) end
  return math.abs(got - want) <= 1e-12 * (scale or (1 + math.abs(want)))
end

local function abs_sum(t, i, j)
  local s = 1
  for k = i or 1, j or #t do s = s + math.abs(t[k]) end
  return s
end

-- Asserts vec v equals table want elementwise; cmp(got, want, i) -> bool.
local function assert_vec(v, want, cmp, what)
  assert.is_true(vec.is(v), what)
  assert.equal(#want, #v, what)
  for i = 1, #want do
    local ok = (cmp or same)(v[i], want[i], i)
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", what or "vec", i, v[i], want[i]), 2)
    end
  end
end

---------------------------------------------------------------------------
-- Plain Lua references
---------------------------------------------------------------------------

local R = {}

function R.sum(t)
  local s = 0
  for i = 1, #t do s = s + t[i] end
  return s
end

function R.mean(t) return #t == 0 and nan or R.sum(t) / #t end

function R.var(t, ddof)
  ddof = ddof or 0
  local n = #t
  if n - ddof <= 0 then return nan end
  local m, s = R.mean(t), 0
  for i = 1, n do s = s + (t[i] - m) ^ 2 end
  return s / (n - ddof)
end

function R.std(t, ddof) return math.sqrt(R.var(t, ddof)) end

local function extreme(t, better)
  if #t == 0 then return nan, nil end
  local best, at = t[1], 1
  for i = 1, #t do
    if is_nan(t[i]) then return nan, i end
    if better(t[i], best) then best, at = t[i], i end
  end
  return best, at
end

function R.min(t) return (extreme(t, function(a, b) return a < b end)) end
function R.max(t) return (extreme(t, function(a, b) return a > b end)) end
function R.argmin(t) return select(2, extreme(t, function(a, b) return a < b end)) end
function R.argmax(t) return select(2, extreme(t, function(a, b) return a > b end)) end

function R.dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

function R.norm(t) return math.sqrt(R.dot(t, t)) end

local function map(t, f)
  local r = {}
  for i = 1, #t do r[i] = f(t[i], i) end
  return r
end

function R.cumsum(t)
  local s, r = 0, {}
  for i = 1, #t do s = s + t[i]; r[i] = s end
  return r
end

function R.diff(t)
  local r = {}
  for i = 1, #t - 1 do r[i] = t[i + 1] - t[i] end
  return r
end

function R.resample(t, f)
  local r = {}
  for j = 1, math.ceil(#t / f) do
    local s, c = 0, 0
    for i = (j - 1) * f + 1, math.min(j * f, #t) do s = s + t[i]; c = c + 1 end
    r[j] = s / c
  end
  return r
end

-- The window of element i: t[max(1, i - w + 1) .. i].
function R.rolling(t, w, kind)
  local r = {}
  for i = 1, #t do
    local lo = math.max(1, i - w + 1)
    local win = {}
    for k = lo, i do win[#win + 1] = t[k] end
    if kind == "sum" then r[i] = R.sum(win)
    elseif kind == "mean" then r[i] = R.mean(win)
    elseif kind == "max" then r[i] = R.max(win)
    else r[i] = R.min(win) end
  end
  return r
end

function R.clip(t, lo, hi)
  return map(t, function(x)
    if x < lo then x = lo end
    if x > hi then x = hi end
    return x
  end)
end

---------------------------------------------------------------------------
-- Construction, indexing, conversions
---------------------------------------------------------------------------

describe("ls.vec construction", function()
  it("is exposed as ls.vec", function()
    assert.equal(require("luastream.vec"), ls.vec)
  end)

  it("new(n) makes n zeros", function()
    for _, n in ipairs(LENGTHS) do
      local v = vec.new(n)
      assert.equal(n, #v)
      for i = 1, n do assert.equal(0, v[i]) end
    end
  end)

  it("from(table) and totable round-trip", function()
    for _, n in ipairs(LENGTHS) do
      local t = random_table(n)
      local v = vec.from(t)
      assert.equal(n, #v)
      assert.same(t, v:totable())
      assert.same(t, vec.totable(vec.from(v:totable())))
    end
  end)

  it("totable marks the result as an array", function()
    assert.equal(H.core.array_mt, getmetatable(vec.new(0):totable()))
    assert.equal("[]", H.core.encode("json", vec.new(0):totable()))
    assert.equal("[1,2.5]", H.core.encode("json", vec.from({ 1, 2.5 }):totable()))
  end)

  it("keeps the elements 32-byte aligned", function()
    for n = 0, 40 do
      assert.equal(0, tonumber(ffi.cast("uintptr_t", vec.new(n).d)) % 32)
      assert.equal(0, tonumber(ffi.cast("uintptr_t", (vec.new(n) + 1).d)) % 32)
    end
  end)

  it("from(vec) copies", function()
    local v = vec.from({ 1, 2, 3 })
    local w = vec.from(v)
    w[1] = 10
    assert.same({ 1, 2, 3 }, v:totable())
    assert.same({ 10, 2, 3 }, w:totable())
    local c = v:copy()
    c[2] = 20
    assert.same({ 1, 2, 3 }, v:totable())
  end)

  it("is(x) is true for vecs only", function()
    assert.is_true(vec.is(vec.new(0)))
    assert.is_false(vec.is({}))
    assert.is_false(vec.is(1))
    assert.is_false(vec.is(nil))
    assert.is_false(vec.is(ffi.new("double[3]")))
  end)

  it("rejects bad lengths and elements", function()
    assert.matches("ls.vec.new: length must be a whole number >= 0, got %-1",
      H.error_of(vec.new, -1))
    assert.matches("ls.vec.new: length must be a whole number >= 0, got 1.5",
      H.error_of(vec.new, 1.5))
    assert.matches("ls.vec.new: length must be a whole number >= 0, got string",
      H.error_of(vec.new, "3"))
    assert.matches("ls.vec.from: element 2 must be a number, got string",
      H.error_of(vec.from, { 1, "x" }))
    assert.matches("ls.vec.from: expected a table of numbers or a vec, got number",
      H.error_of(vec.from, 5))
  end)

  it("loads once per Lua state", function()
    local saved = package.loaded["luastream.vec"]
    package.loaded["luastream.vec"] = nil
    local again = require("luastream.vec")
    package.loaded["luastream.vec"] = saved
    assert.equal(vec, again)
    assert.equal(6, again.from({ 1, 2, 3 }):sum())
  end)
end)

describe("ls.vec indexing", function()
  it("reads and writes 1-based", function()
    local v = vec.new(3)
    v[1], v[2], v[3] = 1.5, -2, inf
    assert.same({ 1.5, -2, inf }, v:totable())
    assert.equal(3, #v)
    assert.equal(1.5, v.d[0]) -- the raw array is 0-based
  end)

  it("raises on out-of-range and non-integer indexes", function()
    local v = vec.from({ 1, 2, 3 })
    local function get(i) return v[i] end
    local function set(i, x) v[i] = x end
    for _, i in ipairs({ 0, 4, -1, 1e10 }) do
      assert.matches("ls.vec: index " .. string.format("%d", i):gsub("%-", "%%-") .. " out of range %(length 3%)",
        H.error_of(get, i))
      assert.matches("out of range %(length 3%)", H.error_of(set, i, 1))
    end
    assert.matches("ls.vec: index must be a whole number, got 1.5", H.error_of(get, 1.5))
    assert.matches("ls.vec: index must be a whole number, got nan", H.error_of(get, nan))
    assert.matches("ls.vec: index must be a whole number, got 2.5", H.error_of(set, 2.5, 1))
    assert.matches("ls.vec: element 1 must be set to a number, got string", H.error_of(set, 1, "x"))
    assert.matches("ls.vec: no method or field 'nope'", H.error_of(function() return v.nope end))
    assert.matches("ls.vec: cannot set 'x'", H.error_of(function() v.x = 1 end))
    assert.matches("constant", H.error_of(function() v.n = 100 end))
    assert.equal(3, #v)
    local e = vec.new(0)
    assert.matches("index 1 out of range %(length 0%)", H.error_of(function() return e[1] end))
  end)

  it("names the caller's line in errors", function()
    local err = H.error_of(function() return vec.from({ 1 }) + vec.new(2) end)
    assert.matches("^[^:]*vec_spec%.lua:%d+: ls%.vec%.add: length mismatch: 1 vs 2$", err)
    err = H.error_of(function() return vec.new(1)[2] end)
    assert.matches("^[^:]*vec_spec%.lua:%d+: ls%.vec: index 2", err)
    err = H.error_of(function() local r = vec.new(1):rolling_mean(0); return r end)
    assert.matches("^[^:]*vec_spec%.lua:%d+: ls%.vec%.rolling_mean: window", err)
  end)
end)

describe("ls.vec tostring", function()
  it("shows the length and the elements", function()
    assert.equal("vec(3){1, 2, 3}", tostring(vec.from({ 1, 2, 3 })))
    assert.equal("vec(0){}", tostring(vec.new(0)))
    assert.equal("vec(6){0.1, -0, nan, inf, -inf, 1e+300}",
      tostring(vec.from({ 0.1, negz, nan, inf, -inf, 1e300 })))
    assert.equal("vec(10){1, 2, 3, 4, 5, 6, 7, 8, 9, 10}", tostring(vec.from(R.cumsum(
      { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }))))
  end)

  it("truncates long vecs", function()
    assert.equal("vec(1500){0, 0, 0, 0, 0, 0, 0, 0, ...}", tostring(vec.new(1500)))
  end)

  it("prints numbers that read back exactly", function()
    for _, x in ipairs({ 1 / 3, 0.1 + 0.2, 2 ^ 60, -1e-300, math.pi }) do
      local s = tostring(vec.from({ x })):match("{(.*)}")
      assert.equal(x, tonumber(s))
    end
  end)
end)

---------------------------------------------------------------------------
-- Kernels against the references
---------------------------------------------------------------------------

describe("ls.vec reductions", function()
  it("match the references on random data", function()
    for _, n in ipairs(LENGTHS) do
      local t = random_table(n)
      local v = vec.from(t)
      local scale = abs_sum(t)
      assert.is_true(near(v:sum(), R.sum(t), scale), "sum " .. n)
      assert.is_true(near(vec.sum(v), R.sum(t), scale), "vec.sum " .. n)
      assert.is_true(near(v:mean(), R.mean(t)), "mean " .. n)
      assert.is_true(near(v:var(), R.var(t), 1e3), "var " .. n)
      assert.is_true(near(v:var(1), R.var(t, 1), 1e3), "var ddof=1 " .. n)
      assert.is_true(near(v:std(), R.std(t)), "std " .. n)
      assert.is_true(near(v:std(1), R.std(t, 1)), "std ddof=1 " .. n)
      assert.is_true(same(v:min(), R.min(t)), "min " .. n)
      assert.is_true(same(v:max(), R.max(t)), "max " .. n)
      assert.equal(R.argmin(t), v:argmin())
      assert.equal(R.argmax(t), v:argmax())
      assert.is_true(near(v:norm(), R.norm(t)), "norm " .. n)
      local u = random_table(n)
      assert.is_true(near(v:dot(vec.from(u)), R.dot(t, u), abs_sum(t) * 100), "dot " .. n)
    end
  end)

  it("of an empty vec", function()
    local e = vec.new(0)
    assert.equal(0, e:sum())
    assert.equal(0, e:norm())
    assert.equal(0, e:dot(vec.new(0)))
    for _, f in ipairs({ "mean", "var", "std", "min", "max" }) do
      assert.is_true(is_nan(e[f](e)), f)
    end
    assert.is_nil(e:argmin())
    assert.is_nil(e:argmax())
  end)

  it("var is numerically sound and takes ddof", function()
    local v = vec.from({ 1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4 })
    assert.equal(1.25, v:var())
    assert.equal(5 / 3, v:var(1))
    assert.is_true(is_nan(vec.from({ 1 }):var(1)))
    assert.equal(0, vec.from({ 0.1, 0.1, 0.1 }):var())
    assert.matches("ls.vec.var: ddof must be a number >= 0, got %-1", H.error_of(vec.var, v, -1))
    assert.matches("ls.vec.std: ddof must be a number >= 0, got x", H.error_of(vec.std, v, "x"))
  end)

  it("propagate NaN; min, max, argmin and argmax too", function()
    local v = vec.from({ 3, nan, 1, nan, 5 })
    for _, f in ipairs({ "sum", "mean", "var", "std", "min", "max", "norm" }) do
      assert.is_true(is_nan(v[f](v)), f)
    end
    assert.equal(2, v:argmin())
    assert.equal(2, v:argmax())
    assert.is_true(is_nan(v:dot(vec.from({ 1, 1, 1, 1, 1 }))))
    for _, n in ipairs({ 1, 7, 64, 65, 1500 }) do
      local t = random_table(n)
      local at = math.random(n)
      t[at] = nan
      local w = vec.from(t)
      assert.is_true(is_nan(w:min()) and is_nan(w:max()))
      assert.equal(at, w:argmin())
      assert.equal(at, w:argmax())
    end
  end)

  it("follow IEEE for infinities", function()
    local v = vec.from({ 1, inf, -2 })
    assert.equal(inf, v:sum())
    assert.equal(inf, v:max())
    assert.equal(-2, v:min())
    assert.equal(2, v:argmax())
    assert.equal(inf, v:norm())
    assert.is_true(is_nan(v:var()))
    assert.is_true(is_nan(vec.from({ inf, -inf }):sum()))
    assert.equal(-inf, vec.from({ 0, -inf }):min())
  end)

  it("argmin and argmax return the first of equal extremes", function()
    local v = vec.from({ 2, 0, 5, 0, 5 })
    assert.equal(2, v:argmin())
    assert.equal(3, v:argmax())
  end)

  it("dot checks its operands", function()
    assert.matches("ls.vec.dot: length mismatch: 3 vs 4", H.error_of(vec.dot, vec.new(3), vec.new(4)))
    assert.matches("ls.vec.dot: argument 2 must be a vec, got number", H.error_of(vec.dot, vec.new(3), 2))
    assert.matches("ls.vec.sum: argument 1 must be a vec, got table", H.error_of(vec.sum, { 1, 2 }))
  end)
end)

local ARITH = {
  add = function(a, b) return a + b end,
  sub = function(a, b) return a - b end,
  mul = function(a, b) return a * b end,
  div = function(a, b) return a / b end,
}

describe("ls.vec arithmetic", function()
  it("vec-vec, vec-number and number-vec match Lua arithmetic exactly", function()
    for _, n in ipairs(LENGTHS) do
      local a, b = random_table(n), random_table(n)
      local va, vb = vec.from(a), vec.from(b)
      for name, op in pairs(ARITH) do
        local s = math.random() * 10 - 5
        assert_vec(vec[name](va, vb), map(a, function(x, i) return op(x, b[i]) end), nil, name)
        assert_vec(va[name](va, s), map(a, function(x) return op(x, s) end), nil, name .. " scalar")
        assert_vec(vec[name](s, va), map(a, function(x) return op(s, x) end), nil, "scalar " .. name)
      end
      assert_vec(va:scale(3), map(a, function(x) return x * 3 end), nil, "scale")
      assert_vec(va:offset(-2), map(a, function(x) return x - 2 end), nil, "offset")
    end
  end)

  it("has metamethods that return new vecs", function()
    local a, b = vec.from({ 1, 2, 4 }), vec.from({ 3, 5, 8 })
    assert.same({ 4, 7, 12 }, (a + b):totable())
    assert.same({ -2, -3, -4 }, (a - b):totable())
    assert.same({ 3, 10, 32 }, (a * b):totable())
    assert.same({ 0.5, 1, 2 }, (a / 2):totable())
    assert.same({ 2, 3, 5 }, (a + 1):totable())
    assert.same({ 9, 8, 6 }, (10 - a):totable())
    assert.same({ 2, 4, 8 }, (2 * a):totable())
    assert.same({ 4, 2, 1 }, (4 / a):totable())
    assert.same({ -1, -2, -4 }, (-a):totable())
    assert.same({ 1, 2, 4 }, a:totable()) -- operands unchanged
    local c = a + b
    assert.are_not.equal(a, c)
    assert.is_true(vec.is(c))
  end)

  it("raises clear errors for bad operands", function()
    local a = vec.new(3)
    for name in pairs(ARITH) do
      assert.matches("ls.vec." .. name .. ": length mismatch: 3 vs 4", H.error_of(vec[name], a, vec.new(4)))
      assert.matches("ls.vec." .. name .. ": argument 2 must be a vec or a number, got string",
        H.error_of(vec[name], a, "x"))
      assert.matches("ls.vec." .. name .. ": argument 1 must be a vec or a number, got table",
        H.error_of(vec[name], {}, a))
      assert.matches("ls.vec." .. name .. ": argument 2 must be a vec, got number",
        H.error_of(vec[name], 1, 2))
    end
    assert.matches("ls.vec.add: length mismatch: 3 vs 4", H.error_of(function() return a + vec.new(4) end))
    assert.matches("ls.vec.mul: argument 2 must be a vec or a number, got boolean",
      H.error_of(function() return a * true end))
    assert.matches("ls.vec.scale: argument 2 must be a number, got vec", H.error_of(vec.scale, a, a))
  end)

  it("follows IEEE for NaN, infinities and division by zero", function()
    local a = vec.from({ 1, -1, 0, inf, nan })
    local r = a / 0
    assert.is_true(r[1] == inf and r[2] == -inf and is_nan(r[3]) and r[4] == inf and is_nan(r[5]))
    r = a + vec.from({ 1, 1, 1, -inf, 1 })
    assert.is_true(r[1] == 2 and r[2] == 0 and r[3] == 1 and is_nan(r[4]) and is_nan(r[5]))
  end)
end)

describe("ls.vec elementwise functions", function()
  it("match the references", function()
    for _, n in ipairs(LENGTHS) do
      local t = random_table(n)
      local v = vec.from(t)
      assert_vec(v:neg(), map(t, function(x) return -x end), nil, "neg")
      assert_vec(v:abs(), map(t, math.abs), nil, "abs")
      assert_vec(vec.sqrt(v:abs()), map(t, function(x) return math.sqrt(math.abs(x)) end), nil, "sqrt")
      assert_vec(v:clip(-50, 25), R.clip(t, -50, 25), nil, "clip")
      assert_vec(v:clip(nil, 0), R.clip(t, -inf, 0), nil, "clip hi")
      assert_vec(v:clip(0), R.clip(t, 0, inf), nil, "clip lo")
      assert_vec(v:cumsum(), R.cumsum(t), function(g, w, i) return near(g, w, abs_sum(t, 1, i)) end,
        "cumsum")
      assert_vec(v:diff(), R.diff(t), nil, "diff")
      local y, z = random_table(n), random_table(n)
      assert_vec(vec.magnitude(v, vec.from(y), vec.from(z)),
        map(t, function(x, i) return math.sqrt(x * x + y[i] * y[i] + z[i] * z[i]) end), nil, "magnitude")
      assert_vec(vec.magnitude(v, vec.from(y)),
        map(t, function(x, i) return math.sqrt(x * x + y[i] * y[i]) end), nil, "magnitude 2d")
    end
  end)

  it("handle NaN and infinities", function()
    local v = vec.from({ -1, 4, nan, inf, -inf, negz })
    local s = v:sqrt()
    assert.is_true(is_nan(s[1]) and s[2] == 2 and is_nan(s[3]) and s[4] == inf and is_nan(s[5]))
    assert.is_true(s[6] == 0 and 1 / s[6] == -inf) -- sqrt(-0) is -0
    local c = v:clip(0, 3)
    assert.is_true(c[1] == 0 and c[2] == 3 and is_nan(c[3]) and c[4] == 3 and c[5] == 0)
    local cs = vec.from({ 1, 2, nan, 4 }):cumsum()
    assert.is_true(cs[1] == 1 and cs[2] == 3 and is_nan(cs[3]) and is_nan(cs[4]))
    local m = vec.magnitude(vec.from({ inf, nan }), vec.from({ 1, 1 }), vec.from({ nan, 1 }))
    assert.is_true(is_nan(m[1]) and is_nan(m[2]))
    assert.equal(inf, vec.magnitude(vec.from({ inf }), vec.from({ 1 }))[1])
  end)

  it("of empty vecs are empty", function()
    local e = vec.new(0)
    for _, f in ipairs({ "neg", "abs", "sqrt", "cumsum", "diff", "copy" }) do
      assert.equal(0, #e[f](e), f)
    end
    assert.equal(0, #e:clip(0, 1))
    assert.equal(0, #vec.magnitude(e, e, e))
    assert.equal(0, #vec.from({ 5 }):diff())
  end)

  it("check their arguments", function()
    local v = vec.new(3)
    assert.matches("ls.vec.clip: lo %(2%) is greater than hi %(1%)", H.error_of(vec.clip, v, 2, 1))
    assert.matches("ls.vec.clip: lo must be a number or nil, got nan", H.error_of(vec.clip, v, nan, 1))
    assert.matches("ls.vec.clip: hi must be a number or nil, got x", H.error_of(vec.clip, v, 0, "x"))
    assert.matches("ls.vec.magnitude: length mismatch: 3 vs 4",
      H.error_of(vec.magnitude, v, vec.new(4), v))
    assert.matches("ls.vec.magnitude: length mismatch: 3 vs 2",
      H.error_of(vec.magnitude, v, v, vec.new(2)))
    assert.matches("ls.vec.magnitude: z must be a vec, got number", H.error_of(vec.magnitude, v, v, 1))
    assert.matches("ls.vec.abs: argument 1 must be a vec, got nil", H.error_of(vec.abs))
  end)
end)

describe("ls.vec windows and resampling", function()
  it("rolling_* match the references (n outputs, partial first windows)", function()
    for _, n in ipairs({ 0, 1, 2, 9, 33, 1500 }) do
      local t = random_table(n)
      local v = vec.from(t)
      for _, w in ipairs({ 1, 2, 3, 10, 64, 1500, 5000 }) do
        if w <= 100 or n <= 100 or w == 1500 then
          local function close(g, want, i)
            return near(g, want, abs_sum(t, math.max(1, i - w + 1), i) * 4)
          end
          assert_vec(v:rolling_sum(w), R.rolling(t, w, "sum"), close, "rolling_sum " .. n .. "/" .. w)
          assert_vec(v:rolling_mean(w), R.rolling(t, w, "mean"), close, "rolling_mean " .. n .. "/" .. w)
          assert_vec(v:rolling_max(w), R.rolling(t, w, "max"), nil, "rolling_max " .. n .. "/" .. w)
          assert_vec(v:rolling_min(w), R.rolling(t, w, "min"), nil, "rolling_min " .. n .. "/" .. w)
        end
      end
    end
  end)

  it("rolling_mean is rolling_sum divided by the window's count, exactly", function()
    local v = vec.from(random_table(333))
    for _, w in ipairs({ 1, 3, 10, 400 }) do
      local s, m = v:rolling_sum(w), v:rolling_mean(w)
      for i = 1, #v do assert.equal(s[i] / math.min(i, w), m[i]) end
    end
  end)

  it("rolling windows propagate NaN only to the windows that hold it", function()
    local t = { 1, 2, 3, nan, 5, 6, 7, 8 }
    local v = vec.from(t)
    for _, kind in ipairs({ "sum", "mean", "max", "min" }) do
      for w = 1, 9 do
        assert_vec(v["rolling_" .. kind](v, w), R.rolling(t, w, kind), nil, kind .. " " .. w)
      end
    end
    local m = vec.from({ 1, inf, 1, -inf, 1, 1 }):rolling_mean(2)
    assert_vec(m, { 1, inf, inf, -inf, -inf, 1 }, nil, "infinities")
    assert.same({ 1, 1.5, 2.5, 3.5 }, vec.from({ 1, 2, 3, 4 }):rolling_mean(2):totable())
  end)

  it("resample averages blocks; a trailing partial block averages what it has", function()
    assert.same({ 2, 5, 8, 10 }, vec.from({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }):resample(3):totable())
    assert.same({ 1.5, 3.5 }, vec.from({ 1, 2, 3, 4 }):resample(2):totable())
    assert.same({ 2 }, vec.from({ 1, 2, 3 }):resample(10):totable())
    for _, n in ipairs(LENGTHS) do
      local t = random_table(n)
      for _, f in ipairs({ 1, 2, 3, 4, 7, 10, 100 }) do
        assert_vec(vec.from(t):resample(f), R.resample(t, f), nil, "resample " .. n .. "/" .. f)
      end
    end
    local r = vec.from({ 1, nan, 3, 4 }):resample(2)
    assert.is_true(is_nan(r[1]) and r[2] == 3.5)
  end)

  it("check window and factor", function()
    local v = vec.new(4)
    for _, f in ipairs({ "rolling_sum", "rolling_mean", "rolling_max", "rolling_min" }) do
      assert.matches("ls.vec." .. f .. ": window must be a whole number >= 1, got 0", H.error_of(vec[f], v, 0))
      assert.matches("ls.vec." .. f .. ": window must be a whole number >= 1, got 2.5",
        H.error_of(vec[f], v, 2.5))
      assert.matches("ls.vec." .. f .. ": window must be a whole number >= 1, got nil", H.error_of(vec[f], v))
    end
    assert.matches("ls.vec.resample: factor must be a whole number >= 1, got 0", H.error_of(vec.resample, v, 0))
    assert.matches("ls.vec.resample: factor must be a whole number >= 1, got 1.5",
      H.error_of(vec.resample, v, 1.5))
  end)
end)

---------------------------------------------------------------------------
-- Out-parameters
---------------------------------------------------------------------------

describe("ls.vec out-parameters", function()
  it("write into out and return it", function()
    local a, b = vec.from({ 1, 2, 3 }), vec.from({ 4, 5, 6 })
    local out = vec.new(3)
    local cases = {
      { function() return a:add(b, out) end, { 5, 7, 9 } },
      { function() return vec.sub(a, b, out) end, { -3, -3, -3 } },
      { function() return vec.mul(2, a, out) end, { 2, 4, 6 } },
      { function() return a:div(2, out) end, { 0.5, 1, 1.5 } },
      { function() return a:scale(10, out) end, { 10, 20, 30 } },
      { function() return a:offset(1, out) end, { 2, 3, 4 } },
      { function() return a:neg(out) end, { -1, -2, -3 } },
      { function() return a:abs(out) end, { 1, 2, 3 } },
      { function() return vec.from({ 1, 4, 9 }):sqrt(out) end, { 1, 2, 3 } },
      { function() return a:cumsum(out) end, { 1, 3, 6 } },
      { function() return a:clip(2, 2, out) end, { 2, 2, 2 } },
      { function() return a:copy(out) end, { 1, 2, 3 } },
      { function() return vec.magnitude(a, a, a, out) end,
        { math.sqrt(3), math.sqrt(12), math.sqrt(27) } },
      { function() return vec.magnitude(a, a, nil, out) end, { math.sqrt(2), math.sqrt(8), math.sqrt(18) } },
      { function() return a:rolling_mean(2, out) end, { 1, 1.5, 2.5 } },
      { function() return a:rolling_sum(2, out) end, { 1, 3, 5 } },
      { function() return a:rolling_max(2, out) end, { 1, 2, 3 } },
      { function() return a:rolling_min(2, out) end, { 1, 1, 2 } },
      { function() return vec.from({ 1, 2, 3, 4, 5, 6 }):resample(2, out) end, { 1.5, 3.5, 5.5 } },
      { function() return vec.from({ 1, 2, 4, 8 }):diff(out) end, { 1, 2, 4 } },
    }
    for j, c in ipairs(cases) do
      local r = c[1]()
      assert.equal(out, r, "case " .. j)
      assert.same(c[2], out:totable(), "case " .. j)
    end
  end)

  it("may alias an input for elementwise kernels", function()
    local a = vec.from({ 1, 2, 3 })
    assert.equal(a, a:add(a, a))
    assert.same({ 2, 4, 6 }, a:totable())
    a:sub(1, a); a:mul(a, a); a:div(vec.from({ 1, 9, 25 }), a)
    assert.same({ 1, 1, 1 }, a:totable())
    local x, y, z = vec.from({ 3, 0 }), vec.from({ 4, 3 }), vec.from({ 12, 4 })
    vec.magnitude(x, y, z, x)
    assert.same({ 13, 5 }, x:totable())
    local c = vec.from({ 1, 2, 3, 4, 5 })
    c:cumsum(c)
    assert.same({ 1, 3, 6, 10, 15 }, c:totable())
    c:clip(2, 10, c); c:neg(c); c:abs(c); c:sqrt(c)
    assert.same({ math.sqrt(2), math.sqrt(3), math.sqrt(6), math.sqrt(10), math.sqrt(10) }, c:totable())
  end)

  it("must not alias the input of windows and resample", function()
    local v = vec.new(4)
    for _, f in ipairs({ "rolling_sum", "rolling_mean", "rolling_max", "rolling_min" }) do
      assert.matches("ls.vec." .. f .. ": out must not be the input vec", H.error_of(vec[f], v, 2, v))
    end
    assert.matches("ls.vec.resample: out must not be the input vec", H.error_of(vec.resample, v, 1, v))
  end)

  it("must have the right length", function()
    local a = vec.new(3)
    assert.matches("ls.vec.add: out has length 2, expected 3", H.error_of(vec.add, a, a, vec.new(2)))
    assert.matches("ls.vec.diff: out has length 3, expected 2", H.error_of(vec.diff, a, vec.new(3)))
    assert.matches("ls.vec.resample: out has length 3, expected 2", H.error_of(vec.resample, a, 2, vec.new(3)))
    assert.matches("ls.vec.sqrt: out must be a vec, got table", H.error_of(vec.sqrt, a, {}))
    assert.matches("ls.vec.magnitude: out has length 1, expected 3",
      H.error_of(vec.magnitude, a, a, nil, vec.new(1)))
  end)
end)

---------------------------------------------------------------------------
-- The JIT
---------------------------------------------------------------------------

describe("ls.vec under the JIT", function()
  it("compiles a row loop of v[i], v:sum() and out-parameter kernels without NYI aborts", function()
    local jit_v = require("jit")
    if not jit_v.status() then return end
    local traceerr = require("jit.vmdef").traceerr
    -- Where traces start depends on the hot counters (shared by all code, per
    -- bytecode address hash) that earlier specs left: start afresh, or a trace
    -- may begin inside a kernel's wrapper and abort on returning from it.
    jit_v.flush()
    jit_v.opt.start("hotloop=56") -- the default; setting it resets the counters
    local aborts = {}
    local function on_trace(what, _, _, _, code, info)
      if what == "abort" then
        local msg = type(code) == "number" and traceerr[code] or tostring(code)
        if msg:find("NYI") then aborts[#aborts + 1] = msg:format(info) end
      end
    end
    jit_v.attach(on_trace, "trace")
    local ok, err = pcall(function()
      local v, w, out = vec.new(64), vec.new(64), vec.new(64)
      for i = 1, #v do v[i] = i; w[i] = -i end
      local acc = 0
      for j = 1, 3000 do
        local k = j % 64 + 1
        v[k] = v[k] + 1
        acc = acc + v:sum() + v[k] + v:max() + (v:argmin() or 0) + v:dot(w)
        v:add(w, out)
        vec.magnitude(v, w, nil, out)
        out:rolling_mean(4, w)
        acc = acc + #(v * 2)
      end
      return acc
    end)
    jit_v.attach(on_trace)
    assert.is_true(ok, err)
    assert.same({}, aborts)
  end)
end)
