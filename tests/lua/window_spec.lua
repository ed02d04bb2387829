-- Windows (docs/api.md, "Windows"), run through the test driver on the real
-- C batch path: tumbling and hopping windows, final() and current(), grace,
-- late rows, aggregations, keys, restarts, and the load-time checks.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")
local null = H.null

-- Scripts: the body starts at line 6.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "win", on_error = os.getenv("NOPE") or "skip" }
local input = app:topic("in", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "string" })
local sdf = app:dataframe(input)
]]

local nscript = 0
local function script(body)
  nscript = nscript + 1
  return H.write_script(HEAD .. body, "win" .. nscript .. ".lua")
end

local function driver(body, opts)
  return testing.driver(script(body), opts)
end

-- The outputs as { key, timestamp, value } triples.
local function outs(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do res[j] = { r.key, r.timestamp, r.value } end
  return res
end

local function send(d, key, ts, v, extra)
  local row = { ts = ts, v = v }
  for k, x in pairs(extra or {}) do row[k] = x end
  d:send("in", key, row)
end

describe("tumbling windows", function()
  it("final() emits each window once when the key's watermark passes its end", function()
    local d = driver([[
sdf:tumbling_window(10000):agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "a", 5000, 3)
    send(d, "a", 9999, 2)
    assert.same({}, outs(d))
    send(d, "a", 10000, 4) -- end + grace <= watermark: [0, 10000) closes
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, n = 3, s = 6 } } }, outs(d))
    send(d, "a", 12000, 1)
    assert.same({}, outs(d))
    send(d, "a", 35000, 1) -- closes [10000, 20000); [20000, 30000) never had a row
    assert.same({ { "a", 10000, { start = 10000, ["end"] = 20000, n = 2, s = 5 } } }, outs(d))
  end)

  it("final() emits several windows closing at once in order of end", function()
    local d = driver([[sdf:tumbling_window(10000, { grace = 20000 }):count():final():to_topic(out)]])
    send(d, "a", 23000)
    send(d, "a", 1000)
    send(d, "a", 12000)
    send(d, "a", 2000)
    assert.same({}, outs(d))
    send(d, "a", 45000) -- closes the windows ending at 10000 and 20000, not 30000 (30000 + 20000 > 45000)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 10000, value = 2 } },
      { "a", 10000, { start = 10000, ["end"] = 20000, value = 1 } },
    }, outs(d))
  end)

  it("current() emits the row's window after every row", function()
    local d = driver([[
sdf:tumbling_window(10000):agg{ n = ls.agg.count(), hi = ls.agg.max("v") }:current():to_topic(out)]])
    send(d, "a", 1000, 5)
    send(d, "a", 2000, 3)
    send(d, "a", 11000, 1)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 10000, n = 1, hi = 5 } },
      { "a", 0, { start = 0, ["end"] = 10000, n = 2, hi = 5 } },
      { "a", 10000, { start = 10000, ["end"] = 20000, n = 1, hi = 1 } },
    }, outs(d))
  end)

  it("continues the pipeline after the window, with the window start as the timestamp", function()
    local d = driver([[
local w = sdf:tumbling_window(1000):sum("v"):final()
w = w[w.value:gt(1)]
w:update(function(row, msg) row.ts = msg.timestamp end)
w:to_topic(out)]])
    send(d, "a", 100, 1)
    send(d, "a", 1100, 2)
    send(d, "a", 2100, 3)
    send(d, "a", 3100, 4)
    assert.same({
      { "a", 1000, { start = 1000, ["end"] = 2000, value = 2, ts = 1000 } },
      { "a", 2000, { start = 2000, ["end"] = 3000, value = 3, ts = 2000 } },
    }, outs(d))
  end)
end)

describe("hopping windows", function()
  it("current() updates both windows of a row, in order of start", function()
    local d = driver([[sdf:hopping_window(10000, 5000):sum("v"):current():to_topic(out)]])
    send(d, "a", 7000, 1)
    send(d, "a", 9000, 2)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 10000, value = 1 } },
      { "a", 5000, { start = 5000, ["end"] = 15000, value = 1 } },
      { "a", 0, { start = 0, ["end"] = 10000, value = 3 } },
      { "a", 5000, { start = 5000, ["end"] = 15000, value = 3 } },
    }, outs(d))
  end)

  it("final() emits every window a row was in, in order of end", function()
    local d = driver([[sdf:hopping_window(10000, 5000):sum("v"):final():to_topic(out)]])
    send(d, "a", 7000, 1)  -- [0, 10000) and [5000, 15000)
    send(d, "a", 12000, 2) -- [5000, 15000) and [10000, 20000); closes [0, 10000)
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, value = 1 } } }, outs(d))
    send(d, "a", 30000, 4) -- closes the windows ending at 15000 and 20000
    assert.same({
      { "a", 5000, { start = 5000, ["end"] = 15000, value = 3 } },
      { "a", 10000, { start = 10000, ["end"] = 20000, value = 2 } },
    }, outs(d))
  end)

  it("still counts a row in the window it is not late for, without calling on_late", function()
    local d = driver([[
sdf:hopping_window(10000, 5000, { on_late = function(row) io.write("late ", row.v, "\n") end })
  :agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]])
    send(d, "a", 6000, 1)  -- [0, 10000), [5000, 15000)
    send(d, "a", 12000, 2) -- watermark 12000: [0, 10000) closes
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, n = 1, s = 1 } } }, outs(d))
    send(d, "a", 8000, 4)  -- late for [0, 10000), counts in [5000, 15000)
    assert.same("", d:printed())
    send(d, "a", 15000, 8)
    assert.same({ { "a", 5000, { start = 5000, ["end"] = 15000, n = 3, s = 7 } } }, outs(d))
  end)
end)

describe("grace and late rows", function()
  local BODY = [[
sdf:tumbling_window(10000, { grace = 3000, on_late = function(row, msg)
  io.write("late v=", row.v, " ts=", msg.timestamp, " key=", msg.key, "\n")
end }):agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]]

  it("keeps a window open for its grace, then drops later rows and gives them to on_late", function()
    local d = driver(BODY)
    send(d, "a", 1000, 1)
    send(d, "a", 11000, 2) -- 10000 + 3000 > 11000: still open
    send(d, "a", 9000, 4)  -- out of order, in grace: counted
    assert.same({}, outs(d))
    send(d, "a", 13000, 8) -- 10000 + 3000 <= 13000: closes
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, n = 2, s = 5 } } }, outs(d))
    send(d, "a", 5000, 16) -- late: dropped
    assert.same({}, outs(d))
    assert.same("late v=16 ts=5000 key=a\n", d:printed())
    assert.same({}, d:errors())
    send(d, "a", 23000, 0) -- closes [10000, 20000): the late row is not in any window
    assert.same({ { "a", 10000, { start = 10000, ["end"] = 20000, n = 2, s = 10 } } }, outs(d))
  end)

  it("drops late rows silently without on_late", function()
    local d = driver([[sdf:tumbling_window(1000):count():final():to_topic(out)]])
    send(d, "a", 100)
    send(d, "a", 1500)
    assert.same({ { "a", 0, { start = 0, ["end"] = 1000, value = 1 } } }, outs(d))
    send(d, "a", 200)
    send(d, "a", 2000)
    assert.same({ { "a", 1000, { start = 1000, ["end"] = 2000, value = 1 } } }, outs(d))
    assert.same({}, d:errors())
  end)
end)

describe("aggregations", function()
  it("skip nil and null values and are null when no row counted", function()
    local d = driver([[
sdf:tumbling_window(1000):agg{
  n = ls.agg.count(), s = ls.agg.sum("v"), m = ls.agg.mean("v"), lo = ls.agg.min("v"),
  hi = ls.agg.max("v"), f = ls.agg.first("v"), l = ls.agg.last("v"),
  w = ls.agg.sum(ls.where(sdf.v:notnull(), sdf.v * 2, ls.null)),
}:final():to_topic(out)]])
    send(d, "a", 100, nil)
    send(d, "a", 200, 4)
    send(d, "a", 300, null)
    send(d, "a", 400, 1)
    send(d, "a", 500, 7)
    send(d, "a", 600, nil)
    send(d, "a", 1100, nil) -- [1000, 2000): no value at all
    send(d, "a", 2100, nil)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 1000, n = 6, s = 12, m = 4, lo = 1, hi = 7, f = 4, l = 7, w = 24 } },
      { "a", 1000, { start = 1000, ["end"] = 2000, n = 1, s = null, m = null, lo = null, hi = null,
        f = null, l = null, w = null } },
    }, outs(d))
  end)

  it("first and last keep any value; shortcuts name the result 'value'", function()
    local d = driver([[
sdf:tumbling_window(1000):first("name"):final():to_topic(out)
sdf:tumbling_window(1000):last("name"):final():to_topic(out)]])
    send(d, "a", 100, nil, { name = "x" })
    send(d, "a", 200, nil, { name = "y" })
    send(d, "a", 1200, nil)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 1000, value = "x" } },
      { "a", 0, { start = 0, ["end"] = 1000, value = "y" } },
    }, outs(d))
  end)

  it("a non-number in sum is a row error and leaves the window as it was", function()
    local d = driver([[sdf:tumbling_window(1000):agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]])
    send(d, "a", 100, 1)
    send(d, "a", 200, "x")
    local errs = d:errors()
    assert.same(1, #errs)
    assert.matches("win%d+%.lua:6: tumbling window 1000 ms final%(%): aggregation 's' %(sum%): " ..
      "the value is a string, expected a number", errs[1].error)
    send(d, "a", 1100, 1)
    assert.same({ { "a", 0, { start = 0, ["end"] = 1000, n = 1, s = 1 } } }, outs(d))
  end)

  it("a row failing after the window is rolled back out of it", function()
    local d = driver([[
local w = sdf:tumbling_window(1000):agg{ n = ls.agg.count(), hi = ls.agg.max("v") }:current()
w:update(function(row) if row.hi == 99 then error("too high") end end)
w:to_topic(out)]])
    send(d, "a", 100, 1)
    send(d, "a", 200, 99)
    assert.same(1, #d:errors())
    send(d, "a", 300, 2)
    assert.same({
      { "a", 0, { start = 0, ["end"] = 1000, n = 1, hi = 1 } },
      { "a", 0, { start = 0, ["end"] = 1000, n = 2, hi = 2 } },
    }, outs(d))
  end)

  it("a timestamp that is not a number is a row error", function()
    local d = driver([[sdf:tumbling_window(1000):count():current():to_topic(out)]])
    d:send("in", "a", { ts = "soon" })
    local errs = d:errors()
    assert.same(1, #errs)
    assert.matches("timestamp", errs[1].error)
    assert.same({}, outs(d))
  end)
end)

describe("keys and state", function()
  it("keeps windows and watermarks per key", function()
    local d = driver([[sdf:tumbling_window(10000):count():final():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "b", 2000)
    send(d, "a", 50000) -- a's watermark does not close b's window
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, value = 1 } } }, outs(d))
    send(d, "b", 9000)
    send(d, "b", 10000)
    assert.same({ { "b", 0, { start = 0, ["end"] = 10000, value = 2 } } }, outs(d))
  end)

  it("lives in the app's n-th window store, named after its definition, and deletes closed windows", function()
    local d = driver([[sdf:hopping_window(10000, 5000, { grace = 3000 }):count():final():to_topic(out)]])
    local store = d.spec.stores[1].name
    assert.same("__window__1", store)
    send(d, "a", 7000)
    local entries = d:state(store, "a")
    local name = next(entries)
    assert.matches("^w%x%x%x%x%x%x%x%x$", name)
    assert.is_nil(next(entries, name))
    -- watermark, open windows, an unused slot, then per window start, end, rows and
    -- three slots per aggregation (count: rows, two unused)
    assert.same({ 7000, 2, 0, 0, 10000, 1, 1, 0, 0, 5000, 15000, 1, 1, 0, 0 }, d:state(store, "a", name))
    send(d, "a", 40000)
    assert.same({ 40000, 2, 0, 35000, 45000, 1, 1, 0, 0, 40000, 50000, 1, 1, 0, 0 }, d:state(store, "a", name))
    assert.same(2, #outs(d))
  end)

  it("starts afresh when the script changes the window, keeps its state when it does not", function()
    local path = script([[sdf:tumbling_window(10000):sum("v"):final():to_topic(out)]])
    local d = testing.driver(path)
    send(d, "a", 1000, 1)
    send(d, "a", 2000, 2)
    d:restart() -- the same definition: the windows go on
    send(d, "a", 3000, 4)
    local f = assert(io.open(path, "w"))
    f:write(HEAD, [[sdf:tumbling_window(10000):agg{ value = ls.agg.sum("v"), n = ls.agg.count() }
  :final():to_topic(out)]])
    f:close()
    d:restart() -- another definition, the same store: its state starts afresh
    assert.same("__window__1", d.spec.stores[1].name)
    send(d, "a", 5000, 8)
    send(d, "a", 20000, 0)
    assert.same({ { "a", 0, { start = 0, ["end"] = 10000, value = 8, n = 1 } } }, outs(d))
    local entries = d:state("__window__1", "a")
    local n = 0
    for _ in pairs(entries) do n = n + 1 end
    assert.same(1, n) -- the old definition's entry went when the key was next met
  end)

  it("survives a restart", function()
    local d = driver([[
sdf:tumbling_window(10000):agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "a", 2000, 2)
    send(d, "a", 12000, 10) -- closes [0, 10000)
    assert.same(1, #outs(d))
    d:restart()
    send(d, "a", 3000, 100) -- still late after the restart: the watermark is kept
    send(d, "a", 15000, 20)
    send(d, "a", 20000, 0)
    assert.same({ { "a", 10000, { start = 10000, ["end"] = 20000, n = 2, s = 30 } } }, outs(d))
  end)

  it("two identical windows have stores of their own", function()
    local d = driver([[
sdf:tumbling_window(1000):count():current():to_topic(out)
sdf:tumbling_window(1000):count():current():to_topic(out)]])
    assert.same(2, #d.spec.stores)
    send(d, "a", 100)
    assert.same({ { "a", 0, { start = 0, ["end"] = 1000, value = 1 } },
      { "a", 0, { start = 0, ["end"] = 1000, value = 1 } } }, outs(d))
  end)
end)

describe("load errors", function()
  local function load_error(body)
    local path = script(body)
    local ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    return err, path
  end

  local cases = {
    { "sdf:hopping_window(1000, 1000):count():final():to_topic(out)",
      "hopping_window: step (1000 ms) must be smaller than size (1000 ms); for windows that do not " ..
      "overlap use tumbling_window(1000)" },
    { "sdf:tumbling_window(0):count():final():to_topic(out)", "tumbling_window: size must be > 0 ms, got 0" },
    { "sdf:tumbling_window(-5):count():final():to_topic(out)", "tumbling_window: size must be > 0 ms, got -5" },
    { "sdf:hopping_window(1000, 0):count():final():to_topic(out)", "hopping_window: step must be > 0 ms, got 0" },
    { "sdf:tumbling_window(1000, { grace = -1 }):count():final():to_topic(out)",
      "tumbling_window: option 'grace' must be >= 0 ms, got -1" },
    { "sdf:tumbling_window(1000, { grase = 1 }):count():final():to_topic(out)",
      "tumbling_window: unknown option 'grase' (did you mean 'grace'?)" },
    { "sdf:tumbling_window(1000):agg{ m = ls.agg.median(\"v\") }:final():to_topic(out)",
      "ls.agg.median: unknown aggregation (did you mean 'mean'?) (known: count, sum, mean, min, max, first, " ..
      "last, collect, std, var, reduce)" },
    { "sdf:tumbling_window(1000):final():to_topic(out)",
      "final(): the window has no aggregations to emit; call w:agg{ n = ls.agg.count(), ... } or a " ..
      "shortcut like w:sum(\"v\") first: sdf:tumbling_window(...):sum(\"v\"):final()" },
    { "sdf:tumbling_window(1000):agg{}:final():to_topic(out)",
      "agg: no aggregations; e.g. w:agg{ n = ls.agg.count(), mean = ls.agg.mean(\"v\") }" },
    { "sdf:tumbling_window(1000):agg{ n = ls.agg.count }:final():to_topic(out)",
      "agg: 'n' must be an aggregation such as ls.agg.sum(\"v\"), got a function (did you forget the call, " ..
      "ls.agg.count()?)" },
    { "sdf:tumbling_window(1000):summ(\"v\"):final():to_topic(out)",
      "unknown window method 'summ' (did you mean 'sum'?)" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local err, path = load_error(case[1])
      assert.same(path .. ":6: " .. case[2], err)
    end)
  end

  it("refuses final() or current() twice on one window", function()
    local err, path = load_error([[
local w = sdf:tumbling_window(1000):count()
w:final():to_topic(out)
w:current():to_topic(out)]])
    assert.same(path .. ":8: current(): this window is already emitted with final() at " .. path ..
      ":7; declare the window again for a second output", err)
  end)

end)
