local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ls = require("luastream")
local null = ls.null

-- Compiles `sdf.r = <e>` for each expression source and returns a function
-- row -> r.
local function eval_many(exprs)
  local lines = {
    'local ls = require("luastream")',
    'local app = ls.app{ name = "e" }',
    'local sdf = app:dataframe(app:topic("in"))',
  }
  for j, e in ipairs(exprs) do
    lines[#lines + 1] = "sdf.r" .. j .. " = " .. e
  end
  lines[#lines + 1] = 'sdf:to_topic(app:topic("out"))'
  H.load_source(table.concat(lines, "\n"))
  return function(row)
    local v = H.values({ { row } })[1]
    local res = {}
    for j = 1, #exprs do res[j] = v["r" .. j] end
    return res
  end
end

local function eval1(e, row)
  return eval_many({ e })(row or {})[1]
end

describe("ls functions on plain values", function()
  it("compute directly", function()
    assert.same(2, ls.sqrt(4))
    assert.same(3, ls.abs(-3))
    assert.same(1, ls.min(3, 1, 2))
    assert.same(3, ls.max(3, 1, 2))
    assert.same(1, ls.floor(1.7))
    assert.same(2, ls.ceil(1.2))
    assert.same(3, ls.round(2.5))
    assert.same(-3, ls.round(-2.5))
    assert.same(1.23, ls.round(1.2345, 2))
    assert.same(math.exp(1), ls.exp(1))
    assert.same(0, ls.log(1))
    assert.same(3, ls.log(8, 2))
    assert.same(3, ls.log10(1000))
    assert.same(8, ls.pow(2, 3))
    assert.same(0, ls.sin(0))
    assert.same(1, ls.cos(0))
    assert.same(0, ls.tan(0))
    assert.same(math.atan2(1, 1), ls.atan2(1, 1))
    assert.same("12", ls.tostring(12))
    assert.same("null", ls.tostring(null))
    assert.same(12, ls.tonumber("12"))
    assert.same(255, ls.tonumber("ff", 16))
    assert.same(3, ls.len("abc"))
    assert.same(2, ls.len({ 1, 2 }))
    assert.same("abc", ls.lower("AbC"))
    assert.same("ABC", ls.upper("AbC"))
  end)

  it("logic treats nil, false and ls.null as false", function()
    assert.is_true(ls.all(1, "x", 0))
    assert.is_false(ls.all(1, null))
    assert.is_false(ls.all(true, nil))
    assert.is_true(ls.any(false, nil, 0))
    assert.is_false(ls.any(false, null, nil))
    assert.is_true(ls.not_(null))
    assert.is_false(ls.not_(0))
    assert.same("a", ls.where(true, "a", "b"))
    assert.same("b", ls.where(null, "a", "b"))
  end)

  it("ls.lit and ls.col build expressions", function()
    assert.is_true(ls.is_expr(ls.lit(1)))
    assert.is_true(ls.is_expr(ls.col("x")))
    assert.same("expr<pos.lat>", tostring(ls.col("pos", "lat")))
    assert.same("expr<sqrt((x ^ 2) + 1)>", tostring(ls.sqrt(ls.col("x") ^ 2 + 1)))
    assert.same("expr<abs(dG) > 3>", tostring(ls.abs(ls.col("dG")):gt(3)))
  end)
end)

describe("compiled expressions", function()
  it("arithmetic with constants on either side", function()
    local f = eval_many({ "sdf.a + 1", "1 + sdf.a", "sdf.a - sdf.b", "10 - sdf.a", "sdf.a * 3",
      "2 * sdf.b", "sdf.a / 4", "1 / sdf.b", "sdf.a % 4", "7 % sdf.b", "sdf.a ^ 2", "2 ^ sdf.b",
      "-sdf.a", "-(sdf.a + sdf.b)", "sdf.a - -3" })
    assert.same({ 7, 7, 4, 4, 18, 4, 1.5, 0.5, 2, 1, 36, 4, -6, -8, 9 }, f({ a = 6, b = 2 }))
  end)

  it("concatenation", function()
    local f = eval_many({ 'sdf.s .. "!"', '"<" .. sdf.s', "sdf.s .. sdf.n", 'sdf.s .. "\\n" .. sdf.s' })
    assert.same({ "ab!", "<ab", "ab5", "ab\nab" }, f({ s = "ab", n = 5 }))
  end)

  it("comparisons", function()
    local f = eval_many({ "sdf.x:gt(2)", "sdf.x:ge(3)", "sdf.x:lt(3)", "sdf.x:le(3)", "sdf.x:eq(3)",
      "sdf.x:ne(3)", 'sdf.s:eq("a")', "sdf.x:gt(sdf.y)" })
    assert.same({ true, true, false, true, true, false, true, false }, f({ x = 3, y = 4, s = "a" }))
  end)

  it("isin, isnull, notnull", function()
    local f = eval_many({ 'sdf.x:isin{ 1, "two", 3 }', "sdf.x:isnull()", "sdf.x:notnull()",
      "sdf.missing:isnull()" })
    assert.same({ true, false, true, true }, f({ x = "two" }))
    assert.same({ false, true, false, true }, f({ x = null }))
    assert.same({ false, true, false, true }, f({}))
  end)

  it("contains works on strings, arrays and objects", function()
    local f = eval_many({ 'sdf.s:contains("b.")', 'sdf.a:contains("x")', 'sdf.o:contains("k")',
      'sdf.none:contains("x")' })
    assert.same({ true, true, true, false }, f({ s = "ab.c", a = { "y", "x" }, o = { k = 1 } }))
    assert.same({ false, false, false, false }, f({ s = "abc", a = ls.array(), o = {} }))
  end)

  it("ls.all, ls.any, ls.not_ with expressions", function()
    local f = eval_many({ "ls.all(sdf.x:gt(1), sdf.y)", "ls.any(sdf.x:gt(5), sdf.y)", "ls.not_(sdf.y)",
      "ls.all(sdf.x:gt(1), true)", "ls.any(sdf.n, false)" })
    assert.same({ true, true, false, true, false }, f({ x = 2, y = 1, n = null }))
    assert.same({ false, false, true, true, false }, f({ x = 2, y = null }))
  end)

  it("ls.where evaluates only the chosen branch", function()
    local f = eval_many({ "ls.where(sdf.x:notnull(), sdf.x * 2, 0)",
      'ls.where(sdf.f, "yes", ls.where(sdf.g, "g", "no"))' })
    assert.same({ 10, "g" }, f({ x = 5, g = true }))
    assert.same({ 0, "no" }, f({ f = null }))
    assert.same({ 0, "yes" }, f({ f = 0 }))
  end)

  it("ls.where works in masks and keys", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf = sdf[ls.where(sdf.a:notnull(), sdf.a:gt(1), sdf.b)]
sdf:to_topic(app:topic("out"), { key = ls.where(sdf.k:isnull(), "none", sdf.k) })]])
    local outs = H.run({ { { a = 2, k = "x" } }, { { a = 1 } }, { { b = true } }, { { b = false } } })
    assert.same(2, #outs)
    assert.same({ "x", "none" }, { outs[1].key, outs[2].key })
    assert.same({ b = true }, outs[2].val)
  end)

  it("functions and methods on expressions", function()
    local f = eval_many({ "ls.sqrt(sdf.x)", "ls.abs(sdf.n)", "sdf.n:abs()", "ls.floor(sdf.f)", "sdf.f:floor()",
      "ls.ceil(sdf.f)", "sdf.f:ceil()", "sdf.x:sqrt()", "ls.round(sdf.f)", "sdf.f:round(1)",
      "ls.min(sdf.x, sdf.n, 0)", "ls.max(sdf.x, 100)", "ls.pow(sdf.x, 0.5)", "ls.exp(sdf.z)",
      "ls.log(sdf.x, 2)", "ls.log10(sdf.x)", "ls.sin(sdf.z)", "ls.cos(sdf.z)", "ls.tan(sdf.z)",
      "ls.atan2(sdf.z, 1)", "ls.tostring(sdf.x)", 'ls.tonumber(sdf.s)', "ls.len(sdf.s)",
      'ls.lower("A" .. sdf.s)', "ls.upper(sdf.s)",
      "sdf.x:apply(function(x) return x + 0.5 end)" })
    assert.same({ 4, 3, 3, 2, 2, 3, 3, 4, 3, 2.6, -3, 100, 4, 1, 4, math.log10(16), 0, 1, 0, 0, "16", 42,
      2, "a42", "42", 16.5 }, f({ x = 16, n = -3, f = 2.55, z = 0, s = "42" }))
  end)

  it("nested fields and :get for method-named fields", function()
    local f = eval_many({ "sdf.pos.lat + 1", 'sdf.pos:get("round")', "ls.col('pos', 'lat')", "sdf.arr[2]" })
    assert.same({ 2, "r", 1, "b" }, f({ pos = { lat = 1, round = "r" }, arr = { "a", "b" } }))
  end)

  it("constants keep their exact value", function()
    -- -0 as tonumber('-0'): LuaJIT on arm64 (dual-number mode) reads the literal
    -- -0.0 as the integer 0; tonumber('-0') is the double -0 on every architecture
    local f = eval_many({ "ls.lit(0.1)", "ls.lit(2^53 + 2)", "ls.lit(-3)", "ls.lit(math.huge)",
      "ls.lit(tonumber('-0'))", "ls.lit(ls.null)", 'ls.lit("q\\"uote\\0")', "ls.lit({ 1, 2 })" })
    local r = f({})
    assert.same(0.1, r[1])
    assert.same(2 ^ 53 + 2, r[2])
    assert.same(-3, r[3])
    assert.same(math.huge, r[4])
    assert.same(-math.huge, 1 / r[5])
    assert.equal(null, r[6])
    assert.same('q"uote\0', r[7])
    assert.same({ 1, 2 }, r[8])
    local nan = eval1("ls.lit(0/0)")
    assert.is_true(nan ~= nan)
  end)

  it("rejects misuse", function()
    assert.matches("isin: expected a list of values", H.error_of(function() return ls.col("x"):isin(5) end), 1, true)
    assert.matches("expr:apply: expected a function", H.error_of(function() return ls.col("x"):apply(5) end), 1, true)
    assert.matches("only columns of a dataframe can be assigned",
      H.error_of(function() local e = ls.col("x"); e.y = 1 end), 1, true)
    assert.matches("a column expression is not callable",
      H.error_of(function() return ls.col("x")() end), 1, true)
  end)
end)
