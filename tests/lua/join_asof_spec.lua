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

  it("keeps the other side's rows for grace behind its newest, the newest always; survives a restart", function()
    local d = testing.driver(script([[
sdf:join_asof(fixes, { how = "left", grace = 5000 }):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("gps", "p1", { ts = 4000, lat = 4 })
    d:send("gps", "p1", { ts = 7000, lat = 7 }) -- 1000 is more than 5000 behind 7000: gone
    local h = d:state("__asof__1", "p1", "h")
    assert.same(2, h[1])
    assert.same({ 4000, 7000 }, { h[2], h[4] })
    d:restart()
    d:send("alerts", "p1", { ts = 1500, a = "old" })
    d:send("alerts", "p1", { ts = 9000, a = "new" })
    assert.same({ { ts = 1500, a = "old" }, { ts = 9000, a = "new", lat = 7 } }, outs(d))
  end)

  it("of rows of the same timestamp, joins the one that came last", function()
    local d = testing.driver(script([[sdf:join_asof(fixes):to_topic(out)]]))
    d:send("gps", "p1", { ts = 1000, lat = 1 })
    d:send("gps", "p1", { ts = 1000, lat = 2 })
    d:send("gps", "p1", { ts = 2000, lat = 3 })
    d:send("alerts", "p1", { ts = 1500, a = "x" })
    assert.same({ { ts = 1500, a = "x", lat = 2 } }, outs(d))
  end)

  it("grace: a row exactly grace behind the newest stays; the default is the tolerance, else one hour", function()
    local function kept(opts, times)
      local d = testing.driver(script("sdf:join_asof(fixes, " .. opts .. "):to_topic(out)"))
      for _, t in ipairs(times) do d:send("gps", "p1", { ts = t }) end
      local h, res = d:state("__asof__1", "p1", "h"), {}
      for j = 1, h[1] do res[j] = h[2 * j] end
      return res
    end
    assert.same({ 2000, 3000 }, kept("{ grace = 1000 }", { 1000, 1999, 2000, 3000 }))
    assert.same({ 1000, 2000 }, kept("{ tolerance = 1000 }", { 999, 1000, 2000 }))
    assert.same({ 0, 3600000 }, kept("{}", { 0, 3600000 }))
    assert.same({ 3600001 }, kept("{}", { 0, 3600001 }))
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

  local cases = {
    { "sdf:join_asof(5)", "join_asof: expected the other side's dataframe (app:dataframe(topic)), got number" },
    { "sdf:join_asof(fixes, { tolerance = -1 })",
      "join_asof: option 'tolerance' must be a number of milliseconds >= 0, got -1" },
    { "sdf:join_asof(fixes, { how = \"right\" })",
      "join_asof: option 'how' must be \"inner\" or \"left\", got 'right'" },
    { "sdf:join_asof(fixes, { tolerence = 1 })", "join_asof: unknown option 'tolerence' (did you mean 'tolerance'?)" },
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
