-- group_by (docs/windows.md, "group_by"): rows re-keyed through the internal
-- topic <app>__repartition__<name>, and the pipeline after it keyed by the new
-- key, through the test driver (which feeds that topic back as an input).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")

-- Scripts: the body starts at line 6.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "gb", on_error = "skip" }
local input = app:topic("in", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "json" })
local sdf = app:dataframe(input)
]]

local COUNT = [[
sdf = sdf:update(function(row, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  row.n = n
end, { stateful = true })
sdf:to_topic(out)]]

local nscript = 0
local function driver(body)
  nscript = nscript + 1
  return testing.driver(H.write_script(HEAD .. body, "gb" .. nscript .. ".lua"))
end

local function outs(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do res[j] = { r.key, r.timestamp, r.value } end
  return res
end

describe("group_by", function()
  it("re-keys rows by a column: state after it is per new key; event time is kept", function()
    local d = driver("sdf = sdf:group_by(\"region\")\n" .. COUNT)
    d:send("in", "dev1", { ts = 1000, region = "eu" })
    d:send("in", "dev2", { ts = 2000, region = "us" })
    d:send("in", "dev3", { ts = 3000, region = "eu" })
    d:send("in", "dev1", { ts = 4000, region = "us" })
    assert.same({
      { "eu", 1000, { ts = 1000, region = "eu", n = 1 } },
      { "us", 2000, { ts = 2000, region = "us", n = 1 } },
      { "eu", 3000, { ts = 3000, region = "eu", n = 2 } },
      { "us", 4000, { ts = 4000, region = "us", n = 2 } },
    }, outs(d))
    assert.same({ { topic = "gb__repartition__region", like = "in", partitions = 0 } }, d.spec.repartitions)
    local rec = d:read("gb__repartition__region")
    assert.same(4, #rec)
    assert.same({ "eu", 1000 }, { rec[1].key, rec[1].timestamp })
  end)

  it("re-keys by a function, with a name and a partition count for its topic", function()
    local d = driver([[
sdf = sdf:group_by(function(row) return row.id % 2 end, { name = "parity", partitions = 3 })
]] .. COUNT)
    for id = 1, 5 do d:send("in", "k", { ts = id, id = id }) end
    local got = {}
    for j, o in ipairs(outs(d)) do got[j] = { o[1], o[3].n } end
    assert.same({ { 1, 1 }, { 0, 1 }, { 1, 2 }, { 0, 2 }, { 1, 3 } }, got)
    assert.same({ { topic = "gb__repartition__parity", like = "in", partitions = 3 } }, d.spec.repartitions)
  end)

  it("feeds windows keyed by the new key", function()
    local d = driver([[
sdf:group_by("region"):tumbling_window(10000):sum("v"):final():to_topic(out)]])
    d:send("in", "dev1", { ts = 1000, region = "eu", v = 1 })
    d:send("in", "dev2", { ts = 2000, region = "eu", v = 2 })
    d:send("in", "dev3", { ts = 3000, region = "us", v = 4 })
    d:send("in", "dev4", { ts = 12000, region = "eu", v = 8 }) -- closes eu's [0, 10000), not us'
    assert.same({ { "eu", 0, { start = 0, ["end"] = 10000, value = 3 } } }, outs(d))
  end)

  it("makes a row without the column a row error (on_error), naming it", function()
    local d = driver("sdf = sdf:group_by(\"region\")\n" .. COUNT)
    d:send("in", "dev1", { ts = 1000 })
    d:send("in", "dev2", { ts = 2000, region = { "not", "a", "key" } })
    local errs = d:errors()
    assert.same(2, #errs)
    assert.matches("gb%d+%.lua:6: group_by 'region': group_by: the row has no 'region' to group by", errs[1].error)
    assert.matches("group_by: 'region' is a table, expected a string or a number", errs[2].error)
    assert.same({}, outs(d))
  end)

  local function load_error(body)
    nscript = nscript + 1
    local path = H.write_script(HEAD .. body, "gb" .. nscript .. ".lua")
    local ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    return err, path
  end

  local cases = {
    { "sdf:group_by(function(r) return r.x end)",
      "group_by: grouping by a function needs a name for its topic: group_by(fn, { name = \"...\" })" },
    { "sdf:group_by(5)", "group_by: expected a column name or a function(row, msg) -> key, got number" },
    { "sdf:group_by(\"x\", { partitions = 0 })", "group_by: option 'partitions' must be a whole number >= 1, got 0" },
    { "sdf:group_by(\"x\", { name = \"a b\" })",
      "group_by: option 'name' must be 1-249 characters of A-Z a-z 0-9 . _ -, got 'a b'" },
    { "sdf:group_by(\"x\", { partitons = 2 })", "group_by: unknown option 'partitons' (did you mean 'partitions'?)" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local err, path = load_error(case[1])
      assert.same(path .. ":6: " .. case[2], err)
    end)
  end

  it("refuses two group_by of one name", function()
    local err, path = load_error("sdf:group_by(\"x\"):to_topic(out)\nsdf:group_by(\"x\"):to_topic(out)")
    assert.same(path .. ":7: group_by: the name 'x' is taken by the group_by at " .. path ..
      ":6; give this one another: group_by(..., { name = \"...\" })", err)
  end)
end)
