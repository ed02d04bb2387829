-- Sliding, session and count windows, closing on idleness, the aggregations
-- std/var/collect/reduce and on_late topics (docs/windows.md), through the
-- test driver on the real C batch path. Expected windows are worked out by
-- hand from the definitions in docs/windows.md, in the comments.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")
local null = H.null

-- Scripts: the body starts at line 7.
local HEAD = [[
local ls = require("luastream")
local app = ls.app{ name = "wk", on_error = "skip" }
local input = app:topic("in", { key = "string", timestamp = "ts" })
local out = app:topic("out", { key = "string" })
local late = app:topic("late", { key = "string" })
local sdf = app:dataframe(input)
]]

local nscript = 0
local function script(body)
  nscript = nscript + 1
  return H.write_script(HEAD .. body, "wk" .. nscript .. ".lua")
end

local function driver(body, opts)
  return testing.driver(script(body), opts)
end

-- The outputs as { key, timestamp, value } triples.
local function outs(d, topic)
  local res = {}
  for j, r in ipairs(d:read(topic or "out")) do res[j] = { r.key, r.timestamp, r.value } end
  return res
end

local function send(d, key, ts, v)
  d:send("in", key, { ts = ts, v = v })
end

-- { start, end, value } of each output row, for short expectations.
local function wins(d)
  local res = {}
  for j, r in ipairs(d:read("out")) do
    res[j] = { r.value.start, r.value["end"], r.value.value }
  end
  return res
end

describe("sliding windows", function()
  it("give Kafka Streams' five windows for rows at 8000, 9200, 12400 (size 5000)", function()
    local d = driver([[sdf:sliding_window(5000, { grace = 100000 }):count():current():to_topic(out)]])
    send(d, "a", 8000)
    assert.same({ { 3000, 8000, 1 } }, wins(d))
    send(d, "a", 9200) -- its own [4200, 9200]; [8001, 13001] after the row at 8000 now holds a row
    assert.same({ { 4200, 9200, 2 }, { 8001, 13001, 1 } }, wins(d))
    send(d, "a", 12400) -- [7400, 12400] new; [8001, 13001] updated; [9201, 14201] after 9200
    assert.same({ { 7400, 12400, 3 }, { 8001, 13001, 2 }, { 9201, 14201, 1 } }, wins(d))
  end)

  it("keep their recorded rows across a restart", function()
    local d = driver([[sdf:sliding_window(5000, { grace = 100000 }):count():current():to_topic(out)]])
    send(d, "a", 8000)
    send(d, "a", 9200)
    d:read("out")
    d:restart()
    send(d, "a", 12400) -- as without the restart: the windows after 8000 and 9200 need their rows
    assert.same({ { 7400, 12400, 3 }, { 8001, 13001, 2 }, { 9201, 14201, 1 } }, wins(d))
  end)

  it("final() emits a window once end + 1 + grace <= the watermark, both ends inclusive", function()
    local d = driver([[sdf:sliding_window(5000):sum("v"):final():to_topic(out)]])
    send(d, "a", 8000, 1)
    send(d, "a", 9200, 2)   -- closes [3000, 8000] (8001 <= 9200)
    assert.same({ { 3000, 8000, 1 } }, wins(d))
    send(d, "a", 12400, 4)  -- closes [4200, 9200]
    assert.same({ { 4200, 9200, 3 } }, wins(d))
    send(d, "a", 14201, 8)  -- closes [7400, 12400] and [8001, 13001], not [9201, 14201] (14202 > 14201)
    assert.same({ { 7400, 12400, 7 }, { 8001, 13001, 6 } }, wins(d))
    send(d, "a", 14202, 16) -- [9201, 14201] closes; the row at 14202 is not in it
    assert.same({ { 9201, 14201, 12 } }, wins(d))
  end)

  it("place an out-of-order row in every window that holds it and make its own", function()
    local d = driver([[sdf:sliding_window(5000, { grace = 10000 }):count():current():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "a", 5000)
    assert.same({ { -4000, 1000, 1 }, { 0, 5000, 2 }, { 1001, 6001, 1 } }, wins(d))
    -- 3000 arrives late but within grace: it updates [0, 5000] and [1001, 6001], makes its
    -- own [-2000, 3000] (rows 1000, 3000) and [3001, 8001] (the row at 5000 only)
    send(d, "a", 3000)
    assert.same({ { -2000, 3000, 2 }, { 0, 5000, 3 }, { 1001, 6001, 2 }, { 3001, 8001, 1 } }, wins(d))
  end)

  it("drop a row all of whose windows are closed, and keep windows per key", function()
    local d = driver([[
sdf:sliding_window(1000, { on_late = function(row) io.write("late ", row.ts, "\n") end })
  :count():current():to_topic(out)]])
    send(d, "a", 5000)
    send(d, "b", 100) -- another key: not late
    send(d, "a", 3000) -- its own window [2000, 3000] closed (3001 <= 5000), no open window holds it
    assert.same({ { 4000, 5000, 1 }, { -900, 100, 1 } }, wins(d))
    assert.same("late 3000\n", d:printed())
  end)
end)

describe("sliding windows' late rows", function()
  it("drop a row whose own window is closed and that no open window holds: no window after it either", function()
    local d = driver([[
sdf:sliding_window(600, { grace = 200, on_late = function(row) io.write("late ", row.ts, "\n") end })
  :count():current():to_topic(out)]])
    for _, t in ipairs({ 3607, 3654, 3815, 4026 }) do send(d, "a", t) end
    d:read("out")
    send(d, "a", 3399) -- own [2799, 3399]: 3399 + 1 + 200 <= 4026; [3007, 3607] is closed too
    assert.same({}, wins(d))
    assert.same("late 3399\n", d:printed())
    send(d, "a", 4085) -- the window after 3399 ([3400, 4000]) was never made
    for _, w in ipairs(wins(d)) do assert.are_not.same(3400, w[1]) end
  end)
end)

describe("session windows", function()
  it("group rows less than gap apart; rows exactly gap apart start a new session", function()
    local d = driver([[sdf:session_window(4000):agg{ n = ls.agg.count(), s = ls.agg.sum("v") }:final():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "a", 2000, 2)  -- session [1000, 6000)
    send(d, "a", 9000, 4)  -- 6000 <= 9000: the first session closes
    assert.same({ { "a", 1000, { start = 1000, ["end"] = 6000, n = 2, s = 3 } } }, outs(d))
    send(d, "a", 13000, 8) -- exactly gap after 9000: a new session; [9000, 13000) closes
    assert.same({ { "a", 9000, { start = 9000, ["end"] = 13000, n = 1, s = 4 } } }, outs(d))
  end)

  it("merge two sessions that a late-arriving row bridges, aggregations included", function()
    local d = driver([[
sdf:session_window(4000, { grace = 10000 }):agg{
  n = ls.agg.count(), s = ls.agg.sum("v"), m = ls.agg.mean("v"), lo = ls.agg.min("v"), hi = ls.agg.max("v"),
  f = ls.agg.first("v"), l = ls.agg.last("v"), c = ls.agg.collect("v"), var = ls.agg.var("v"),
  sd = ls.agg.std("v"),
}:current():to_topic(out)]])
    send(d, "a", 1000, 1)  -- [1000, 5000)
    send(d, "a", 8000, 5)  -- [8000, 12000)
    d:read("out")
    send(d, "a", 4500, 3)  -- within 4000 of both: one session [1000, 12000)
    assert.same({ { "a", 1000, { start = 1000, ["end"] = 12000, n = 3, s = 9, m = 3, lo = 1, hi = 5,
      f = 1, l = 3, c = { 1, 5, 3 }, var = 4, sd = 2 } } }, outs(d))
  end)

  it("drop a row whose own session would be closed; a closed session is not reopened", function()
    local d = driver([[
sdf:session_window(4000, { on_late = late }):count():final():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "a", 20000) -- [1000, 5000) closes
    assert.same({ { 1000, 5000, 1 } }, wins(d))
    send(d, "a", 2000)  -- its own [2000, 6000) is closed: late, to the on_late topic
    assert.same({ { "a", 2000, { ts = 2000 } } }, outs(d, "late"))
    send(d, "a", 17000) -- not late (21000 > 20000): joins [20000, 24000) as [17000, 24000)
    send(d, "a", 30000)
    assert.same({ { 17000, 24000, 2 } }, wins(d))
  end)

  it("need a merge function for reduce", function()
    local ok, err = pcall(driver, [[
sdf:session_window(1000):agg{ r = ls.agg.reduce(function(a, row) return a + row.v end, 0) }:final():to_topic(out)]])
    assert.is_false(ok)
    assert.matches(":7: agg: 'r': a session window merges sessions that a row bridges, so its " ..
      "ls.agg.reduce needs a third argument, merge(acc1, acc2) -> acc", err, 1, true)
    local d = driver([[
sdf:session_window(4000, { grace = 10000 }):agg{
  r = ls.agg.reduce(function(a, row) return a + row.v end, 0, function(a, b) return a * 100 + b end),
}:current():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "a", 8000, 5)
    send(d, "a", 4500, 3)
    local o = outs(d)
    assert.same({ start = 8000, ["end"] = 12000, r = 5 }, o[2][3])
    assert.same({ start = 1000, ["end"] = 12000, r = 108 }, o[3][3]) -- merge(1, 5) = 105, then + 3
  end)
end)

describe("count windows", function()
  it("tumbling: rows 1..n, n+1..2n; final() emits only full ones; start/end are min/max timestamps", function()
    local d = driver([[sdf:tumbling_count_window(3):sum("v"):final():to_topic(out)]])
    send(d, "a", 300, 1)
    send(d, "a", 100, 2)
    send(d, "b", 50, 100)
    send(d, "a", 200, 4)
    assert.same({ { "a", 100, { start = 100, ["end"] = 300, value = 7 } } }, outs(d))
    send(d, "a", 400, 8)
    send(d, "a", 500, 16)
    assert.same({}, outs(d))
  end)

  it("hopping: a window every step rows, each of n rows", function()
    local d = driver([[sdf:hopping_count_window(4, 2):sum("v"):current():to_topic(out)]])
    for j = 1, 5 do send(d, "a", j * 10, j) end
    assert.same({
      { 10, 10, 1 },                  -- row 1: window of rows 1-4
      { 10, 20, 3 },
      { 10, 30, 6 }, { 30, 30, 3 },   -- row 3 starts rows 3-6
      { 10, 40, 10 }, { 30, 40, 7 },  -- row 4 fills rows 1-4
      { 30, 50, 12 }, { 50, 50, 5 },
    }, wins(d))
  end)

  it("sliding: the last n rows, after every row; final() once n rows are there", function()
    local d = driver([[
sdf:sliding_count_window(3):sum("v"):current():to_topic(out)
sdf:sliding_count_window(3):sum("v"):final():to_topic(late)]])
    for j = 1, 5 do send(d, "a", j * 10, j) end
    assert.same({ { 10, 10, 1 }, { 10, 20, 3 }, { 10, 30, 6 }, { 20, 40, 9 }, { 30, 50, 12 } }, wins(d))
    local full = {}
    for j, r in ipairs(d:read("late")) do full[j] = r.value.value end
    assert.same({ 6, 9, 12 }, full)
  end)

  it("survive a restart", function()
    local d = driver([[sdf:tumbling_count_window(3):collect("v"):final():to_topic(out)]])
    send(d, "a", 10, "x")
    send(d, "a", 20, "y")
    d:restart()
    send(d, "a", 30, "z")
    assert.same({ { 10, 30, { "x", "y", "z" } } }, wins(d))
  end)
end)

describe("close_on_idle", function()
  it("closes a key's windows after that long without a row, by the driver's clock", function()
    local d = driver([[
sdf:tumbling_window(10000, { close_on_idle = 2000 }):count():final():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "b", 1000)
    d:advance(1000)
    send(d, "b", 2000) -- b is active: its window stays open
    d:advance(999)
    assert.same({}, wins(d))
    d:advance(1) -- a: 2000 ms without a row
    local o = d:read("out")
    assert.same({ "a", { start = 0, ["end"] = 10000, value = 1 } }, { o[1].key, o[1].value })
    assert.same(1, #o)
    d:advance(1000)
    o = d:read("out")
    assert.same({ "b", { start = 0, ["end"] = 10000, value = 2 } }, { o[1].key, o[1].value })
    assert.same(1, #o)
  end)

  it("raises the watermark to what it closed: rows for those windows come late", function()
    local d = driver([[
sdf:tumbling_window(10000, { close_on_idle = 2000, grace = 500, on_late = late }):count():final():to_topic(out)]])
    send(d, "a", 1000)
    d:advance(5000)
    assert.same({ { 0, 10000, 1 } }, wins(d))
    send(d, "a", 9000)  -- its window closed on idleness: late (10000 + 500 <= the watermark 10500)
    send(d, "a", 10100) -- the next window: not late
    assert.same({ { "a", 9000, { ts = 9000 } } }, outs(d, "late"))
    d:advance(5000)
    assert.same({ { 10000, 20000, 1 } }, wins(d))
  end)

  it("finds idle keys after a restart, from the store's time index", function()
    local d = driver([[
sdf:session_window(60000, { close_on_idle = 3000 }):sum("v"):final():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "a", 2000, 2)
    d:restart()
    d:advance(2500)
    assert.same({}, wins(d))
    d:advance(500)
    assert.same({ { 1000, 62000, 3 } }, wins(d))
    d:advance(10000) -- the key's watermark entry goes after another idle period
    assert.is_nil(d:state(d.spec.stores[1].name, "a"))
  end)

  it("emits nothing more for current(), but later rows of closed windows are late", function()
    local d = driver([[
sdf:hopping_window(10000, 5000, { close_on_idle = 1000 }):count():current():to_topic(out)]])
    send(d, "a", 7000)
    assert.same({ { 0, 10000, 1 }, { 5000, 15000, 1 } }, wins(d))
    d:advance(1000)
    assert.same({}, wins(d))
    send(d, "a", 8000) -- both its windows closed on idleness
    assert.same({}, wins(d))
    send(d, "a", 15000)
    assert.same({ { 10000, 20000, 1 }, { 15000, 25000, 1 } }, wins(d))
  end)
end)

describe("closing = \"partition\"", function()
  local function keyed(d)
    local res = {}
    for j, r in ipairs(d:read("out")) do res[j] = { r.key, r.value.start, r.value["end"], r.value.value } end
    return res
  end

  it("closes every key's windows when the partition's watermark passes them", function()
    local d = driver([[
sdf:tumbling_window(10000, { closing = "partition", on_late = late }):count():final():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "b", 2000)
    send(d, "c", 9000)
    assert.same({}, keyed(d))
    send(d, "a", 12000) -- the partition's watermark: a's, b's and c's [0, 10000) close
    assert.same({ { "a", 0, 10000, 1 }, { "b", 0, 10000, 1 }, { "c", 0, 10000, 1 } }, keyed(d))
    send(d, "b", 5000) -- late by the partition's watermark, though b saw nothing after 2000
    assert.same({ { "b", 5000, { ts = 5000 } } }, outs(d, "late"))
    send(d, "b", 25000)
    assert.same({ { "a", 10000, 20000, 1 } }, keyed(d))
  end)

  it("keeps a watermark per partition", function()
    local d = driver([[
sdf:tumbling_window(10000, { closing = "partition" }):count():final():to_topic(out)]], { partitions = 2 })
    d:send("in", { key = "a", value = { ts = 1000 }, partition = 0 })
    d:send("in", { key = "b", value = { ts = 2000 }, partition = 1 })
    d:send("in", { key = "c", value = { ts = 15000 }, partition = 0 }) -- closes partition 0's only
    assert.same({ { "a", 0, 10000, 1 } }, keyed(d))
    d:send("in", { key = "d", value = { ts = 11000 }, partition = 1 })
    assert.same({ { "b", 0, 10000, 1 } }, keyed(d))
  end)

  it("finds the keys with open windows after a restart, from the store's index", function()
    local d = driver([[
sdf:session_window(3000, { closing = "partition" }):sum("v"):final():to_topic(out)]])
    send(d, "a", 1000, 1)
    send(d, "b", 2000, 2)
    send(d, "b", 4000, 4)
    d:restart()
    send(d, "c", 7500, 8) -- 1000 + 3000 and 4000 + 3000 <= 7500: a's and b's sessions close
    assert.same({ { "a", 1000, 4000, 1 }, { "b", 2000, 7000, 6 } }, keyed(d))
    assert.is_nil(d:state(d.spec.stores[1].name, "a")) -- closed: no state left for the key
  end)

  it("after a restart, keeps a key's windows that the next watermark does not close yet", function()
    local d = driver([[
sdf:tumbling_window(40, { grace = 10, closing = "partition" }):count():final():to_topic(out)]])
    send(d, "a", 980) -- [960, 1000) closes at the watermark 1010
    d:restart()
    send(d, "a", 1003) -- not yet: a's entry from the store's index goes back in line with its close
    send(d, "c", 1021)
    assert.same({ { "a", 960, 1000, 1 } }, keyed(d))
  end)

  it("closes an idle partition's windows and raises its watermark", function()
    local d = driver([[
sdf:tumbling_window(10000, { closing = "partition", close_on_idle = 1000, on_late = late })
  :count():final():to_topic(out)]])
    send(d, "a", 1000)
    send(d, "b", 2000)
    d:advance(999)
    assert.same({}, keyed(d))
    d:advance(1)
    local got = keyed(d)
    table.sort(got, function(x, y) return x[1] < y[1] end)
    assert.same({ { "a", 0, 10000, 1 }, { "b", 0, 10000, 1 } }, got)
    send(d, "c", 3000)
    assert.same({ { "c", 3000, { ts = 3000 } } }, outs(d, "late"))
  end)

  it("puts back what a failed row closed: the next row closes it again", function()
    local d = driver([[
local trigger
sdf:update(function(row) trigger = row.ts end)
  :tumbling_window(10000, { closing = "partition" }):count():final()
  :update(function(row, msg)
    if msg.key == "b" and trigger == 12000 then error("boom") end
  end)
  :to_topic(out)]])
    send(d, "a", 1000)
    send(d, "b", 2000)
    send(d, "a", 12000) -- closes a's window, then b's fails: the row is undone (on_error skip)
    assert.same(1, #d:errors())
    assert.same({}, keyed(d))
    send(d, "a", 13000)
    assert.same({ { "a", 0, 10000, 1 }, { "b", 0, 10000, 1 } }, keyed(d))
    send(d, "a", 30000)
    assert.same({ { "a", 10000, 20000, 1 } }, keyed(d))
  end)
end)

describe("close_on_idle failures", function()
  it("keep the key's windows when the steps after the window fail, for the next try", function()
    local d = driver([[
local w = sdf:tumbling_window(10000, { close_on_idle = 1000 }):count():final()
w = w:update(function(row) if row.value == 1 then error("one row only") end end)
w:to_topic(out)]])
    local store = d.spec.stores[1].name
    send(d, "a", 1000)
    d:advance(1000)
    local errs = d:errors()
    assert.same(1, #errs)
    assert.same({ "process", "kept" }, { errs[1].stage, errs[1].policy })
    assert.matches("wk%d+%.lua:7: tumbling window 10000 ms final%(%): closing the idle windows of key a " ..
      "%(partition 0%) failed, kept for the next try: .*one row only", errs[1].error)
    local wname = next(d:state(store, "a"))
    assert.same(1, d:state(store, "a", wname)[2]) -- still open
    -- a row of an idle key closes its windows first: the same failure, now a row error
    send(d, "a", 2000)
    errs = d:errors()
    assert.same(1, #errs)
    assert.same("skip", errs[1].policy)
    assert.matches("one row only", errs[1].error)
    assert.same({}, wins(d))
    assert.same(1, d:state(store, "a", wname)[2])
  end)
end)

describe("aggregations", function()
  it("std and var are sample statistics, null below two values; collect keeps order", function()
    local d = driver([[
sdf:tumbling_window(1000):agg{ sd = ls.agg.std("v"), var = ls.agg.var("v"), c = ls.agg.collect("v"),
  n = ls.agg.count() }:final():to_topic(out)]])
    for _, v in ipairs({ 2, 4, 4, 4, 5, 5, 7, 9 }) do send(d, "a", 100, v) end
    send(d, "a", 1100, 3)
    send(d, "a", 1200, null)
    send(d, "a", 2100, nil)
    local o = outs(d)
    -- mean 5, squared deviations sum to 32: var 32 / 7
    assert.same(32 / 7, o[1][3].var)
    assert.near(math.sqrt(32 / 7), o[1][3].sd, 1e-15)
    assert.same({ 2, 4, 4, 4, 5, 5, 7, 9 }, o[1][3].c)
    assert.same({ start = 1000, ["end"] = 2000, sd = null, var = null, c = { 3 }, n = 2 }, o[2][3])
  end)

  it("collect of no values is null like every aggregation; of one value a JSON array", function()
    local d = driver([[sdf:tumbling_window(1000):collect("v"):final():to_topic(out)]])
    send(d, "a", 100, nil)
    send(d, "a", 1100, 1)
    send(d, "a", 2100, nil)
    local r = d:read("out", { raw = true })
    assert.matches('"value":null', r[1].value, 1, true)
    assert.matches('"value":[1]', r[2].value, 1, true)
  end)

  it("reduce gets every row and a fresh init per window (copied, or made by a function)", function()
    local d = driver([[
sdf:tumbling_window(1000):agg{
  vs = ls.agg.reduce(function(acc, row) acc[#acc + 1] = row.v or "nil"; return acc end, {}),
  total = ls.agg.reduce(function(acc, row) return acc + (row.v or 0) end, function() return 100 end),
}:final():to_topic(out)]])
    send(d, "a", 100, 1)
    send(d, "a", 200, nil)
    send(d, "a", 1100, 5)
    send(d, "a", 2100, 0)
    local o = outs(d)
    assert.same({ start = 0, ["end"] = 1000, vs = { 1, "nil" }, total = 101 }, o[1][3])
    assert.same({ start = 1000, ["end"] = 2000, vs = { 5 }, total = 105 }, o[2][3])
  end)

  it("a reduce returning nil is a row error naming the aggregation", function()
    local d = driver([[
sdf:tumbling_window(1000):agg{ r = ls.agg.reduce(function() end, 0) }:final():to_topic(out)]])
    send(d, "a", 100, 1)
    local errs = d:errors()
    assert.same(1, #errs)
    assert.matches("aggregation 'r' %(reduce%): the function returned nil", errs[1].error)
  end)
end)

describe("window load errors", function()
  local function load_error(body)
    local path = script(body)
    local ok, err = pcall(testing.driver, path)
    assert.is_false(ok)
    return err, path
  end

  local cases = {
    { "sdf:sliding_window(1000, 500)",
      "sliding_window: expected (size_ms, { grace = ms, ... }), got a second number; sliding windows have no " ..
      "step (for a step use hopping_window(size_ms, step_ms))" },
    { "sdf:session_window(0)", "session_window: gap must be > 0 ms, got 0" },
    { "sdf:session_window(1000, { close_on_idle = -1 })",
      "session_window: option 'close_on_idle' must be > 0 ms, got -1" },
    { "sdf:tumbling_count_window(0)", "tumbling_count_window: n must be a whole number of rows >= 1, got 0" },
    { "sdf:tumbling_count_window(2.5)", "tumbling_count_window: n must be a whole number of rows >= 1, got 2.5" },
    { "sdf:hopping_count_window(4, 4)",
      "hopping_count_window: step (4 rows) must be smaller than n (4 rows); for windows that do not overlap " ..
      "use tumbling_count_window(4)" },
    { "sdf:hopping_count_window(4)",
      "hopping_count_window: expected (n, step), got no step; for count windows that do not overlap use " ..
      "tumbling_count_window(n)" },
    { "sdf:tumbling_count_window(4, { grace = 1 })",
      "tumbling_count_window: count windows take no options (they have no grace, lateness or idle closing)" },
    { "sdf:tumbling_window(1000, { on_late = 5 })",
      "tumbling_window: option 'on_late' must be a function(row, msg) or a topic (app:topic or its name), got number" },
    { "sdf:tumbling_window(1000, { closing = \"row\" })",
      "tumbling_window: option 'closing' must be \"key\" or \"partition\", got 'row'" },
    { "sdf:tumbling_window(1000):agg{ r = ls.agg.reduce(5, 0) }",
      "ls.agg.reduce: expected a function(acc, row) -> acc first, got number" },
    { "sdf:tumbling_window(1000):agg{ r = ls.agg.reduce(print) }",
      "ls.agg.reduce: expected an initial value (or a function making one) after the function, e.g. " ..
      "ls.agg.reduce(fn, 0)" },
  }
  for _, case in ipairs(cases) do
    it("refuses " .. case[1], function()
      local err, path = load_error(case[1])
      assert.same(path .. ":7: " .. case[2], err)
    end)
  end
end)
