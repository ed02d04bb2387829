-- sdf:join_interval (docs/joins.md): rows of two streams within an interval of
-- each other, paired as soon as both are there, through the test driver.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")

-- Scripts: the body starts at line 8.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "ij", on_error = "skip" }
local clicks = app:topic("clicks", { key = "string", timestamp = "ts" })
local views = app:topic("views", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "string" })
local v = app:dataframe(views)
local sdf = app:dataframe(clicks)
]]

local nscript = 0
local function script(body)
  nscript = nscript + 1
  return H.write_script(HEAD .. body, "ij" .. nscript .. ".lua")
end

local function outs(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do res[j] = { r.key, r.timestamp, r.value } end
  return res
end

describe("sdf:join_interval", function()
  it("pairs rows within [t - before, t + after] as soon as both are there, whichever comes first", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 500, grace = 10000 }):to_topic(out)]]))
    d:send("views", "u1", { ts = 1000, page = "a" })
    d:send("clicks", "u1", { ts = 1500, c = 1 })  -- the view at 1000 is 500 before: a pair
    d:send("clicks", "u1", { ts = 2100, c = 2 })  -- 1100 after the view: none yet
    d:send("views", "u1", { ts = 2400, page = "b" }) -- 300 after click 2 (paired), 900 after click 1 (not)
    d:send("views", "u2", { ts = 2400, page = "z" }) -- another key
    d:send("clicks", "u1", { ts = 2900, c = 3 })      -- the view at 2400 is 500 before: a pair
    assert.same({
      { "u1", 1500, { ts = 1500, c = 1, page = "a" } },
      { "u1", 2400, { ts = 2100, c = 2, page = "b" } },
      { "u1", 2900, { ts = 2900, c = 3, page = "b" } },
    }, outs(d))
  end)

  it("a left join emits a row that met nothing when its interval closes", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 0, after = 1000, how = "left" }):to_topic(out)]]))
    d:send("clicks", "u1", { ts = 1000, c = 1 })
    d:send("clicks", "u1", { ts = 1200, c = 2 })
    d:send("views", "u1", { ts = 1900, page = "a" }) -- pairs with both
    d:send("clicks", "u1", { ts = 3000, c = 3 })
    assert.same(2, #outs(d))
    d:send("views", "u1", { ts = 4100, page = "late for 3" }) -- closes click 3's [3000, 4000]: unmatched
    assert.same({ { "u1", 3000, { ts = 3000, c = 3 } } }, outs(d))
    -- closed rows leave the state: no segment of this side's rows is left
    assert.same({ 0, 2 }, d:state("__interval__1", "u1", "Ls"))
    assert.is_nil(d:state("__interval__1", "u1", "L1"))
  end)

  it("drops a row of this side whose interval is already closed; survives a restart", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 100, after = 100, grace = 0 }):to_topic(out)]]))
    d:send("views", "u1", { ts = 5000, page = "a" })
    d:send("clicks", "u1", { ts = 1000, c = 0 }) -- 1000 + 100 <= 5000: late, dropped
    d:restart()
    d:send("clicks", "u1", { ts = 5050, c = 1 })
    assert.same({ { "u1", 5050, { ts = 5050, c = 1, page = "a" } } }, outs(d))
  end)

  it("takes both ends of [t - before, t + after] and nothing beyond", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 500, grace = 10000 }):to_topic(out)]]))
    d:send("views", "u1", { ts = 999, page = "too early" })
    d:send("views", "u1", { ts = 1000, page = "lo" })
    d:send("clicks", "u1", { ts = 2000, c = 1 })
    d:send("views", "u1", { ts = 2500, page = "hi" })
    d:send("views", "u1", { ts = 2501, page = "too late" })
    assert.same({
      { "u1", 2000, { ts = 2000, c = 1, page = "lo" } },
      { "u1", 2500, { ts = 2000, c = 1, page = "hi" } },
    }, outs(d))
  end)

  it("a left join closes an interval when the key's watermark reaches t + after + grace, not before", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 0, after = 1000, grace = 500, how = "left" }):to_topic(out)]]))
    d:send("clicks", "u1", { ts = 1000, c = 1 })
    d:send("views", "u1", { ts = 2499, page = "x" }) -- past the interval; it is still open for 1 ms
    assert.same({}, outs(d))
    d:send("views", "u1", { ts = 2500, page = "y" }) -- 1000 + 1000 + 500: closed, unmatched
    assert.same({ { "u1", 1000, { ts = 1000, c = 1 } } }, outs(d))
    d:send("clicks", "u1", { ts = 1000, c = 2 }) -- its interval closed at the watermark: late
    d:send("clicks", "u1", { ts = 1001, c = 3 }) -- still open
    d:send("views", "u1", { ts = 2001, page = "z" })
    assert.same({ { "u1", 2001, { ts = 1001, c = 3, page = "z" } } }, outs(d))
  end)

  it("gives each output row its own copy, so later steps cannot change stored rows", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 1000, grace = 10000 })
  :update(function(r) r.tags[#r.tags + 1] = r.page end)
  :to_topic(out)]]))
    d:send("clicks", "u1", { ts = 1000, tags = { "c" } })
    d:send("views", "u1", { ts = 1100, page = "a" })
    d:send("views", "u1", { ts = 1200, page = "b" })
    assert.same({
      { "u1", 1100, { ts = 1000, tags = { "c", "a" }, page = "a" } },
      { "u1", 1200, { ts = 1000, tags = { "c", "b" }, page = "b" } },
    }, outs(d))
  end)

  it("a row whose timestamp is not a number is an error under on_error and joins nothing", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 1000 }):to_topic(out)]]))
    d:send("views", "u1", { ts = "soon", page = "a" })
    d:send("clicks", "u1", { ts = 1000, c = 1 })
    local e = d:errors()
    assert.same(1, #e)
    assert.same({ "process", "views", 0, d.script .. ":4: topic 'views' timestamp: timestamp field 'ts' is a " ..
      "string, expected milliseconds (a number)" }, { e[1].stage, e[1].topic, e[1].offset, e[1].error })
    assert.same({}, outs(d))
    assert.is_nil(d:state("__interval__1", "u1", "R"))
  end)

  it("a merger builds the output row from copies", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 1000, merger = function(l, r)
  return { c = l.c, page = r and r.page or "none" }
end }):to_topic(out)]]))
    d:send("views", "u1", { ts = 1000, page = "a" })
    d:send("clicks", "u1", { ts = 1200, c = 1 })
    assert.same({ { "u1", 1200, { c = 1, page = "a" } } }, outs(d))
  end)

  it("a left join's merger gets right = nil for a row that met nothing", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 0, after = 100, grace = 0, how = "left", merger = function(l, r)
  return { c = l.c, page = r and r.page or "none" }
end }):to_topic(out)]]))
    d:send("clicks", "u1", { ts = 1000, c = 1 })
    d:send("views", "u1", { ts = 1050, page = "a" })
    d:send("clicks", "u1", { ts = 2000, c = 2 })
    d:send("views", "u1", { ts = 2100, page = "b" }) -- pairs with click 2 at the end of its interval
    d:send("clicks", "u1", { ts = 3000, c = 3 })
    d:send("views", "u1", { ts = 3101, page = "c" }) -- closes click 3's interval: unmatched
    assert.same({
      { "u1", 1050, { c = 1, page = "a" } },
      { "u1", 2100, { c = 2, page = "b" } },
      { "u1", 3000, { c = 3, page = "none" } },
    }, outs(d))
  end)

  it("steps after the join see the emitted row's msg: its timestamp, this side's row's headers", function()
    local d = testing.driver(script([[
sdf:join_interval(v, { before = 1000, after = 1000, grace = 1000, how = "left" })
  :update(function(r, msg)
    local h = msg.headers[1]
    r.m = { msg.timestamp, h and h[2] or "none", msg.topic, msg.offset, msg.key }
  end)
  :to_topic(out)]]))
    local function got()
      local res = {}
      for j, r in ipairs(d:read("out")) do
        local h = r.headers and r.headers[1]
        res[j] = { r.key, r.timestamp, h and h[2] or "none", r.value.c or "-", r.value.page or "-", r.value.m }
      end
      return res
    end
    d:send("clicks", { key = "b", value = { ts = 1000, c = "b1" }, headers = { { "h", "hb" } } }) -- offset 0
    d:send("clicks", { key = "a", value = { ts = 1000, c = "a1" }, headers = { { "h", "ha" } } }) -- offset 1
    -- pairs found by a view: click b1's headers (not a1's, the last click's), the later timestamp,
    -- this side's topic, offset -1 (no click is being processed); the view's headers are not used
    d:send("views", { key = "b", value = { ts = 1500, page = "x" }, headers = { { "h", "hv" } } })
    assert.same({ { "b", 1500, "hb", "b1", "x", { 1500, "hb", "clicks", -1, "b" } } }, got())
    d:restart() -- the stored click's headers survive it
    d:send("views", "b", { ts = 1600, page = "y" })
    assert.same({ { "b", 1600, "hb", "b1", "y", { 1600, "hb", "clicks", -1, "b" } } }, got())
    -- pairs found by a click: its own headers (none) and the later timestamp of each pair
    d:send("clicks", "b", { ts = 1200, c = "b2" }) -- offset 2
    assert.same({
      { "b", 1500, "none", "b2", "x", { 1500, "none", "clicks", 2, "b" } },
      { "b", 1600, "none", "b2", "y", { 1600, "none", "clicks", 2, "b" } },
    }, got())
    -- unmatched rows carry their own timestamp and headers, whichever side's row closes them
    d:send("clicks", "a", { ts = 3000, c = "a2" }) -- offset 3: closes a1 (1000 + 1000 + 1000 <= 3000)
    assert.same({ { "a", 1000, "ha", "a1", "-", { 1000, "ha", "clicks", 3, "a" } } }, got())
    d:send("views", { key = "a", value = { ts = 6000, page = "z" }, headers = { { "h", "hv" } } }) -- closes a2
    assert.same({ { "a", 3000, "none", "a2", "-", { 3000, "none", "clicks", -1, "a" } } }, got())
  end)

  it("a later step that fails names itself, whichever side's row found the pair", function()
    local path = script([[
sdf:join_interval(v, { before = 1000, after = 1000 })
  :update(function(r) if r.page then error("boom " .. r.page) end end)
  :to_topic(out)]])
    local d = testing.driver(path)
    d:send("clicks", "u1", { ts = 1000, c = 1 })
    d:send("views", "u1", { ts = 1100, page = "b" }) -- found by the view
    d:send("views", "u2", { ts = 1000, page = "c" })
    d:send("clicks", "u2", { ts = 1000, c = 2 })    -- found by the click
    local e = d:errors()
    assert.same({
      { "views", path .. ":9: update: " .. path .. ":9: boom b" },
      { "clicks", path .. ":9: update: " .. path .. ":9: boom c" },
    }, { { e[1].topic, e[1].error }, { e[2].topic, e[2].error } })
    assert.same(2, #e)
    assert.same({}, outs(d))
  end)

  it("a timestamp of +-inf is a row error, and the key's rows join as before", function()
    local d = testing.driver(H.write_script([[
local ls = require("luastream")
local app = ls.app{ name = "ij", on_error = "skip" }
local clicks = app:topic("clicks", { key = "string", value = "msgpack", timestamp = "ts" })
local views = app:topic("views", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "string" })
local v = app:dataframe(views)
local sdf = app:dataframe(clicks)
sdf:join_interval(v, { before = 100, after = 100 }):to_topic(out)]], "ij_inf.lua"))
    d:send("views", { key = "u1", raw_value = '{"ts":1e999,"page":"bad"}' })
    d:send("clicks", "u1", { ts = -math.huge, c = 0 })
    d:send("clicks", "u1", { ts = math.huge, c = 0 })
    local e = d:errors()
    assert.same({
      { "views", d.script .. ":4: topic 'views' timestamp: timestamp field 'ts' is inf, expected milliseconds " ..
        "(a finite number)" },
      { "clicks", d.script .. ":3: topic 'clicks' timestamp: timestamp field 'ts' is -inf, expected milliseconds " ..
        "(a finite number)" },
      { "clicks", d.script .. ":3: topic 'clicks' timestamp: timestamp field 'ts' is inf, expected milliseconds " ..
        "(a finite number)" },
    }, { { e[1].topic, e[1].error }, { e[2].topic, e[2].error }, { e[3].topic, e[3].error } })
    assert.same(3, #e)
    assert.is_nil(d:state("__interval__1", "u1", "wm"))
    d:send("views", "u1", { ts = 1000, page = "ok" })
    d:send("clicks", "u1", { ts = 1050, c = 1 })
    assert.same({ { "u1", 1050, { ts = 1050, c = 1, page = "ok" } } }, outs(d))
    assert.same(1050, d:state("__interval__1", "u1", "wm"))
  end)

  local cases = {
    { "sdf:join_interval(v)", "join_interval: give the interval: { before = ms, after = ms } (rows of the " ..
      "other side from t - before to t + after)" },
    { "sdf:join_interval(v, { before = -5 })",
      "join_interval: option 'before' must be a number of milliseconds >= 0, got -5" },
    { "sdf:join_interval(sdf, { after = 5 })", "join_interval: both sides read topic 'clicks'; join two topics" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local path = script(case[1])
      local ok, err = pcall(testing.driver, path)
      assert.is_false(ok)
      assert.same(path .. ":8: " .. case[2], err)
    end)
  end
end)

-- The rows in the store as a checkpoint takes them (luastream.state, through
-- the runtime's Lua side as `luastream run` drives it).
describe("join_interval's rows in the store", function()
  local rt, core = H.rt, H.core
  local saved_load = core.state_load
  local SRC = H.header .. [[
local app = ls.app{}
local views = app:dataframe(app:topic("views", { key = "string", timestamp = "ts" }))
local clicks = app:dataframe(app:topic("clicks", { key = "string", timestamp = "ts" }))
clicks:join_interval(views, { before = 3600000, after = 0, grace = 0 }):to_topic(app:topic("out"))
]]

  before_each(function() core.state_load = nil end)
  after_each(function() core.state_load = saved_load end)

  local taken = H.taken_state

  local function run(rows)
    local list = {}
    for j, r in ipairs(rows) do list[j] = { r[2], key = "u1", topic = r[1] == "view" and 1 or 2 } end
    return H.run(list)
  end

  it("a checkpoint writes the segment a row went to, not every row of the hour", function()
    H.load_source(SRC)
    assert.same("views", rt.spec.inputs[1].name)
    rt.take_state_changes()
    local rows = {}
    for t = 1, 590 do rows[t] = { "view", { ts = t * 1000 } } end
    run(rows) -- a view a second: segments of 64 rows
    assert.same(12, #taken()) -- "Rs", "R1" to "R10", "wm"
    run({ { "view", { ts = 591000 } } })
    assert.same({ "R10", "wm" }, (taken()))
    local out = run({ { "click", { ts = 591500, c = 1 } } })
    assert.same(591, #out) -- every view of the hour before it
    -- after = 0, grace = 0: the click's interval closes at once (written, then deleted)
    assert.same({ "L1", "Ls", "wm" }, (taken()))
  end)

  it("pairs across segments in order and drops the other side's segments no row of this side can reach", function()
    H.with_history_cap(2, function()
      H.load_source((SRC:gsub("before = 3600000, after = 0, grace = 0", "before = 5000, after = 5000, grace = 0")))
      rt.take_state_changes()
      local rows = {}
      for j, t in ipairs({ 1000, 2500, 4999, 7000, 9000 }) do rows[j] = { "view", { ts = t, page = t } } end
      run(rows)
      local out = run({ { "click", { ts = 5000, c = 1 } } }) -- [0, 10000]: five views in three segments
      local got = {}
      for j, o in ipairs(out) do got[j] = o.val.page end
      assert.same({ 1000, 2500, 4999, 7000, 9000 }, got)
      local names, vals = taken()
      assert.same({ 3, 4, 1, 1000, 2, 4999, 3, 9000 }, vals.Rs)
      assert.same({ "L1", "Ls", "R1", "R2", "R3", "Rs", "wm" }, names)
      -- a view at 13000 closes clicks at or before 8000; clicks after that reach no view at or
      -- before 3000: segment 1 (1000, 2500) goes, segment 2 (4999, 7000) stays
      run({ { "view", { ts = 13000, page = "x" } } })
      names, vals = taken()
      assert.same({ "L1", "Ls", "R1", "R3", "Rs", "wm" }, names)
      assert.same({ false, { 0, 2 }, { 2, 4, 2, 4999, 3, 9000 } }, { vals.R1, vals.Ls, vals.Rs })
    end)
  end)

  it("moves rows kept in one entry per side by an earlier build into segments when the key is next used", function()
    H.load_source(SRC)
    rt.take_state_changes()
    core.state_load = function(_, _, kb)
      if kb ~= "u1" then return {} end
      return { L = { 1, 1000, { c = 0 }, false }, R = { 2, 500, { v = 1 }, 61000, { v = 2 } }, wm = 61000 }
    end
    local out = H.run({ { { ts = 62000, c = 1 }, key = "u1", topic = 2 } })
    assert.same({ { ts = 62000, c = 1, v = 1 }, { ts = 62000, c = 1, v = 2 } }, { out[1].val, out[2].val })
    local names, vals = taken()
    assert.same({ "L", "L1", "Ls", "R", "R1", "Rs", "wm" }, names)
    -- after = 0, grace = 0: a click's interval closes at once, so both clicks went
    assert.same({ false, false, false, { 0, 2 }, { 1, 2, 1, 500 }, { 2, 500, { v = 1 }, 61000, { v = 2 } }, 62000 },
      { vals.L, vals.R, vals.L1, vals.Ls, vals.Rs, vals.R1, vals.wm })
  end)
end)
