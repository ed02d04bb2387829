-- sdf:join_asof (docs/joins.md): each crash alert joins the phone's latest GPS
-- fix at or before its timestamp, through the test driver.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")

-- Scripts: the body starts at line 8.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "asof", on_error = "skip" }
local alerts = app:topic("alerts", { key = "string", timestamp = "ts" })
local gps = app:topic("gps", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "string" })
local fixes = app:dataframe(gps)
local sdf = app:dataframe(alerts)
]]

local nscript = 0
local function script(body)
  nscript = nscript + 1
  return H.write_script(HEAD .. body, "asof" .. nscript .. ".lua")
end

local function outs(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do res[j] = r.value end
  return res
end

describe("sdf:join_asof", function()
  it("joins the other side's latest row at or before the row's timestamp", function()
    local d = testing.driver(script([[sdf:join_asof(fixes, { how = "left" }):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("gps", "p1", { ts = 3000, lat = 3 })
    d:send("gps", "p1", { ts = 2000, lat = 2 }) -- out of order: still in its place
    d:send("alerts", "p1", { ts = 2500, a = "x" })
    d:send("alerts", "p1", { ts = 3000, a = "y" }) -- at: joins the fix of the same time
    d:send("alerts", "p1", { ts = 999, a = "z" })  -- before any fix: left keeps it as it is
    d:send("alerts", "p2", { ts = 5000, a = "w" }) -- another phone: no fix
    assert.same({
      { ts = 2500, a = "x", lat = 2 },
      { ts = 3000, a = "y", lat = 3 },
      { ts = 999, a = "z" },
      { ts = 5000, a = "w" },
    }, outs(d))
  end)

  it("inner (the default) drops rows without a fix within the tolerance", function()
    local d = testing.driver(script([[sdf:join_asof(fixes, { tolerance = 1000 }):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("alerts", "p1", { ts = 2000, a = "in" })  -- 1000 ms after: within
    d:send("alerts", "p1", { ts = 2001, a = "out" }) -- 1001 ms after: not
    assert.same({ { ts = 2000, a = "in", lat = 1 } }, outs(d))
  end)

  it("keeps the other side's rows for grace behind its newest; survives a restart", function()
    local d = testing.driver(script([[
sdf:join_asof(fixes, { how = "left", grace = 5000 }):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("gps", "p1", { ts = 4000, lat = 4 })
    d:send("gps", "p1", { ts = 4500, lat = 45 })
    d:send("gps", "p1", { ts = 7000, lat = 7 }) -- 1000 is more than 5000 behind 7000: no longer seen
    -- one segment (up to 64 rows): the index { segments, next number, number, lowest time }, then the
    -- rows; the one no longer seen is a quarter of it: removed
    assert.same({ 1, 2, 1, 1000 }, d:state("__asof__1", "p1", "hs"))
    assert.same({ 3, 4000, { ts = 4000, lat = 4 }, 4500, { ts = 4500, lat = 45 }, 7000, { ts = 7000, lat = 7 } },
      d:state("__asof__1", "p1", "h1"))
    d:restart()
    d:send("alerts", "p1", { ts = 1500, a = "old" })
    d:send("alerts", "p1", { ts = 4200, a = "mid" })
    d:send("alerts", "p1", { ts = 6999, a = "late" })
    d:send("alerts", "p1", { ts = 9000, a = "new" })
    assert.same({
      { ts = 1500, a = "old" }, { ts = 4200, a = "mid", lat = 4 }, { ts = 6999, a = "late", lat = 45 },
      { ts = 9000, a = "new", lat = 7 },
    }, outs(d))
  end)

  it("of rows of the same timestamp, joins the one that came last", function()
    local d = testing.driver(script([[sdf:join_asof(fixes):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("gps", "p1", { ts = 1000, lat = 2 })
    d:send("gps", "p1", { ts = 2000, lat = 3 })
    d:send("alerts", "p1", { ts = 1500, a = "x" })
    assert.same({ { ts = 1500, a = "x", lat = 2 } }, outs(d))
  end)

  it("grace: a row exactly grace behind the newest is seen; the default is the tolerance, else one hour", function()
    local function joined(opts, times, at)
      local d = testing.driver(script("sdf:join_asof(fixes, " .. opts .. "):to_topic(out)"))
      for _, t in ipairs(times) do d:send("gps", "p1", { ts = t, fix = t }) end
      d:send("alerts", "p1", { ts = at })
      local o = outs(d)[1]
      return o and o.fix
    end
    assert.same(2000, joined("{ grace = 1000 }", { 1000, 1999, 2000, 3000 }, 2500))
    assert.same(2000, joined("{ grace = 1000 }", { 1000, 1999, 2000, 3000 }, 2000))
    assert.is_nil(joined("{ grace = 1000 }", { 1000, 1999, 2000, 3000 }, 1999))
    assert.same(1000, joined("{ tolerance = 1000 }", { 999, 1000, 2000 }, 1000))
    assert.is_nil(joined("{ tolerance = 1000 }", { 999, 1000, 2000 }, 999))
    assert.same(0, joined("{}", { 0, 3600000 }, 0))
    assert.is_nil(joined("{}", { 0, 3600001 }, 0))
    assert.same(3600001, joined("{}", { 3600001, 0 }, 3600001)) -- an old row out of order: never seen
  end)

  it("the default merging keeps the row's columns and gives each row its own copy of nested tables", function()
    local d = testing.driver(script([[
sdf:join_asof(fixes):update(function(r) r.pos[#r.pos + 1] = r.a end):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, a = "fix", pos = { 1, 2 } })
    d:send("alerts", "p1", { ts = 1000, a = "x" })
    d:send("alerts", "p1", { ts = 1001, a = "y" })
    assert.same({ { ts = 1000, a = "x", pos = { 1, 2, "x" } }, { ts = 1001, a = "y", pos = { 1, 2, "y" } } },
      outs(d))
  end)

  it("a merger gets a copy of the other side's row", function()
    local d = testing.driver(script([[
sdf:join_asof(fixes, { merger = function(alert, fix)
  fix.lat = fix.lat * 10
  return { a = alert.a, lat = fix.lat }
end }):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("alerts", "p1", { ts = 1000, a = "x" })
    d:send("alerts", "p1", { ts = 1000, a = "y" })
    assert.same({ { a = "x", lat = 10 }, { a = "y", lat = 10 } }, outs(d))
  end)

  it("a merger that changes the row leaves other branches and earlier outputs as they were", function()
    local d = testing.driver(script([[
local out2, out3 = app:topic("out2", { key = "string" }), app:topic("out3", { key = "string" })
sdf:to_topic(out3):join_asof(fixes, { merger = function(alert, fix)
  alert.lat = fix.lat
  alert.tags[#alert.tags + 1] = "fix"
  return alert
end }):to_topic(out)
sdf:to_topic(out2)]]))
    d:send("gps", "p1", { ts = 1000, lat = 5 })
    d:send("alerts", "p1", { ts = 1000, a = "x", tags = { "alert" } })
    assert.same({ { ts = 1000, a = "x", tags = { "alert", "fix" }, lat = 5 } }, outs(d))
    assert.same({ ts = 1000, a = "x", tags = { "alert" } }, d:read("out2")[1].value)
    assert.same({ ts = 1000, a = "x", tags = { "alert" } }, d:read("out3")[1].value)
  end)

  it("a fix stamped +-inf is a row error; the key's later fixes are seen", function()
    local d = testing.driver(script([[
sdf:join_asof(fixes, { how = "left" }):to_topic(out)]]))
    d:send("gps", { key = "p1", raw_value = '{"ts":1e999,"lat":0}' })
    d:send("gps", { key = "p1", raw_value = '{"ts":-1e999,"lat":0}' })
    local e = d:errors()
    assert.same({
      d.script .. ":4: topic 'gps' timestamp: timestamp field 'ts' is inf, expected milliseconds (a finite number)",
      d.script .. ":4: topic 'gps' timestamp: timestamp field 'ts' is -inf, expected milliseconds (a finite number)",
    }, { e[1].error, e[2].error })
    assert.same(2, #e)
    assert.is_nil(d:state("__asof__1", "p1", "hs"))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("alerts", "p1", { ts = 1500, a = "x" })
    assert.same({ { ts = 1500, a = "x", lat = 1 } }, outs(d))
  end)

  local cases = {
    { "sdf:join_asof(5)", "join_asof: expected the other side's dataframe (app:dataframe(topic)), got number" },
    { "sdf:join_asof(fixes, { tolerance = -1 })",
      "join_asof: option 'tolerance' must be a number of milliseconds >= 0, got -1" },
    { "sdf:join_asof(fixes, { how = \"right\" })",
      "join_asof: option 'how' must be \"inner\" or \"left\", got 'right'" },
    { "sdf:join_asof(fixes, { tolerence = 1 })", "join_asof: unknown option 'tolerence' (did you mean 'tolerance'?)" },
    { "sdf:join_asof(sdf)", "join_asof: both sides read topic 'alerts'; join two topics" },
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

-- The history's entries as a checkpoint takes them (luastream.state, through
-- the runtime's Lua side as `luastream run` drives it).
describe("join_asof's history in the store", function()
  local rt, core = H.rt, H.core
  local saved_load = core.state_load

  before_each(function() core.state_load = nil end)
  after_each(function() core.state_load = saved_load end)

  local taken = H.taken_state

  local SRC = H.header .. [[
local app = ls.app{}
local gps = app:dataframe(app:topic("gps", { key = "string", timestamp = "ts" }))
local alerts = app:dataframe(app:topic("alerts", { key = "string", timestamp = "ts" }))
alerts:join_asof(gps, { how = "left", grace = GRACE }):to_topic(app:topic("out"))
]]
  local function fixes(list)
    local rows = {}
    for j, t in ipairs(list) do rows[j] = { { ts = t, n = t }, key = "p1", topic = 1 } end
    H.run(rows)
  end
  local function alert(t)
    local out = H.run({ { { ts = t }, key = "p1", topic = 2 } })
    return out[1].val.n
  end

  it("a checkpoint writes the segment a row went to and the index when it changes, not the whole history", function()
    H.load_source((SRC:gsub("GRACE", "3600000")))
    assert.same("gps", rt.spec.inputs[1].name)
    rt.take_state_changes()
    local function secs(from, to)
      local list = {}
      for t = from, to do list[#list + 1] = t * 1000 end
      fixes(list)
    end
    secs(1, 590) -- a fix a second: segments of 64 rows
    assert.same({ "h1", "h10", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "hs" }, (taken()))
    secs(591, 591)
    assert.same({ "h10" }, (taken()))
    secs(592, 641) -- h10 is full at 640 s: 641 s starts h11
    assert.same({ "h10", "h11", "hs" }, (taken()))
    secs(3664, 3664) -- h1's rows up to 63 s are more than an hour behind: removed; its newest (64 s) stays
    assert.same({ "h1", "h11" }, (taken()))
    secs(3665, 3665)
    assert.same({ "h1", "h11", "hs" }, (taken()))
    assert.same(641000, alert(3663000)) -- the latest fix at or before it
    assert.is_nil(alert(64000)) -- gone
  end)

  it("drops a segment once all its rows are more than grace behind; finds rows across segments", function()
    H.with_history_cap(4, function()
      H.load_source((SRC:gsub("GRACE", "5000")))
      rt.take_state_changes()
      fixes({ 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000 })
      assert.same({ 3, 4, 1, 1000, 2, 5000, 3, 9000 }, select(2, taken()).hs)
      fixes({ 9500 }) -- 4000 is more than 5000 behind: segment 1 goes
      local names, vals = taken()
      assert.same({ "h1", "h3", "hs" }, names)
      assert.same({ 2, 4, 2, 5000, 3, 9000 }, vals.hs)
      assert.is_nil(alert(4400))
      assert.same(5000, alert(5500))
      assert.same(8000, alert(8999))
      fixes({ 4600 }) -- out of order, still seen: into the first segment, whose lowest time it becomes
      assert.same({ 2, 4, 2, 4600, 3, 9000 }, select(2, taken()).hs)
      assert.same(4600, alert(4700))
    end)
  end)

  it("reuses segment numbers, so that a long-lived key's entry names stay few", function()
    H.with_history_cap(1, function()
      H.load_source((SRC:gsub("GRACE", "100")))
      local list = {}
      for t = 1, 5000 do list[#list + 1] = t end
      fixes(list) -- a segment per row: 5000 made, about 100 kept at a time
      local _, vals = taken()
      local idx, seen = vals.hs, {}
      for j = 1, idx[1] do
        local id = idx[1 + 2 * j]
        assert(id >= 1 and id <= 4096 and not seen[id], "segment number " .. id)
        seen[id] = true
      end
      assert.same(101, idx[1])
      assert.same({ 4900, 5000 }, { idx[4], idx[2 + 2 * idx[1]] }) -- the lowest times of the first and last
      assert.same(4950, alert(4950))
    end)
  end)

  it("moves a history kept in one entry by an earlier build into segments when the key is next used", function()
    H.load_source(H.header .. [[
local app = ls.app{}
local gps = app:dataframe(app:topic("gps", { key = "string", timestamp = "ts" }))
local alerts = app:dataframe(app:topic("alerts", { key = "string", timestamp = "ts" }))
alerts:join_asof(gps, { how = "left" }):to_topic(app:topic("out"))
]])
    rt.take_state_changes()
    core.state_load = function(_, _, kb)
      if kb ~= "p1" then return {} end
      return { h = { 3, 1000, { lat = 1 }, 2000, { lat = 2 }, 70000, { lat = 70 } } }
    end
    local out = H.run({ { { ts = 2500 }, key = "p1", topic = 2 }, { { ts = 80000 }, key = "p1", topic = 2 } })
    assert.same({ 2, 70 }, { out[1].val.lat, out[2].val.lat })
    local names, vals = taken()
    assert.same({ "h", "h1", "hs" }, names)
    assert.same({ false, { 1, 2, 1, 1000 }, { 3, 1000, { lat = 1 }, 2000, { lat = 2 }, 70000, { lat = 70 } } },
      { vals.h, vals.hs, vals.h1 })
  end)
end)
