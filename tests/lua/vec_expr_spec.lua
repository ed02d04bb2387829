-- Column expressions over columns that hold vecs: ls.vec functions take
-- columns, methods of the values are called with ':', arithmetic and
-- ls.sqrt / ls.abs work element-wise.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ls = require("luastream")
local vec = ls.vec

local function close(a, b)
  return math.abs(a - b) <= 1e-12 * math.max(1, math.abs(a), math.abs(b))
end

local function row(gx, gy, gz)
  return { { gX = vec.from(gx), gY = vec.from(gy), gZ = vec.from(gz), scale = 2 }, key = "k" }
end

describe("vec columns in expressions", function()
  it("builds expressions from ls.vec functions and value methods", function()
    local e = vec.magnitude(ls.col("x"), ls.col("y"), ls.col("z"))
    assert.same("expr<ls.vec.magnitude(x, y, z)>", tostring(e))
    assert.same("expr<g:max() > 3>", tostring(ls.col("g"):max():gt(3)))
    assert.same("expr<(g ^ 2):mean()>", tostring((ls.col("g") ^ 2):mean()))
    assert.same("expr<g:rolling_mean(5)>", tostring(ls.col("g"):rolling_mean(5)))
  end)

  it("computes per row: magnitude, methods, element-wise arithmetic and functions", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.g = ls.vec.magnitude(sdf.gX, sdf.gY, sdf.gZ)
sdf.peak = sdf.g:max()
sdf.at = sdf.g:argmax()
sdf.rms = ls.sqrt((sdf.g ^ 2):mean())
sdf.shifted = ls.abs(sdf.gX * sdf.scale - 1)
sdf.roots = ls.sqrt(sdf.g)
sdf = sdf[sdf.peak:gt(3)]
sdf:to_topic(app:topic("out"))
]])
    local outs = H.run({ row({ 0, 3 }, { 0, 4 }, { 1, 0 }), row({ 1, 1 }, { 0, 0 }, { 0, 0 }) })
    assert.same(1, #outs)                       -- the second row peaks at 1: filtered out
    local v = outs[1].val
    assert.is_true(vec.is(v.g))
    assert.same({ 1, 5 }, v.g:totable())
    assert.same(5, v.peak)
    assert.same(2, v.at)
    assert.is_true(close(math.sqrt(13), v.rms))
    assert.same({ 1, 5 }, v.shifted:totable())  -- |{0, 3} * 2 - 1|
    assert.same({ 1, math.sqrt(5) }, v.roots:totable())
  end)

  it("reports a length mismatch at the step that caused it", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.g = ls.vec.magnitude(sdf.gX, sdf.gY, sdf.gZ)
sdf:to_topic(app:topic("out"))
]])
    local err = H.error_of(H.run, { row({ 1, 2 }, { 1 }, { 1, 2 }) })
    assert.matches("app.lua:4: column 'g': ls.vec.magnitude: ", err, 1, true)
    assert.matches("length mismatch: 2 vs 1", err, 1, true)
  end)

  it("names the place of a method call on a value that has no such method", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.peak = sdf.scale:max()
sdf:to_topic(app:topic("out"))
]])
    local err = H.error_of(H.run, { row({ 1 }, { 1 }, { 1 }) })
    assert.matches("app.lua:4:", err, 1, true)
  end)

  it("rejects calling a column", function()
    assert.matches("a column expression is not callable",
      H.error_of(function() return ls.col("x")(1) end), 1, true)
    -- a.max(b) is not a method call on a
    assert.matches("a column expression is not callable",
      H.error_of(function() return ls.col("a").max(ls.col("b")) end), 1, true)
  end)
end)
