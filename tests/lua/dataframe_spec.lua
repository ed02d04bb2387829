local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local rt = H.rt
local ls = require("luastream")
local null = ls.null

-- Script preamble: the body starts at line 7.
local PRE = table.concat({
  'local ls = require("luastream")',
  'local app = ls.app{ name = "t" }',
  'local input = app:topic("in", { key = "string" })',
  'local out = app:topic("out")',
  'local out2 = app:topic("out2")',
  'local sdf = app:dataframe(input)',
}, "\n") .. "\n"

local function pipeline(body, cli)
  local spec, path = H.load_source(PRE .. body, cli)
  return spec, path
end

local function vals(rows)
  return H.values(rows)
end

describe("column assignment", function()
  it("assigns an expression", function()
    pipeline("sdf.z = sdf.x + sdf.y\nsdf:to_topic(out)")
    assert.same({ { x = 1, y = 2, z = 3 } }, vals({ { { x = 1, y = 2 } } }))
  end)

  it("assigns constants, nil (removes the column) and ls.null", function()
    pipeline([[
sdf.a = 5
sdf.b = "s"
sdf.c = true
sdf.x = nil
sdf.n = ls.null
sdf:to_topic(out)]])
    local v = vals({ { { x = 1, keep = 2 } } })[1]
    assert.same(5, v.a)
    assert.same("s", v.b)
    assert.same(true, v.c)
    assert.is_nil(v.x)
    assert.equal(null, v.n)
    assert.same(2, v.keep)
  end)

  it("gives every row its own copy of a table constant", function()
    pipeline([[
sdf.tags = ls.array{ "a" }
sdf:fill{ extra = { n = 0 } }
sdf:update(function(row) table.insert(row.tags, row.x); row.extra.n = row.x end)
sdf:to_topic(out)]])
    local v = vals({ { { x = "b" } }, { { x = "c" } } })
    assert.same({ "a", "b" }, v[1].tags)
    assert.same({ "a", "c" }, v[2].tags)
    assert.same({ n = "c" }, v[2].extra)
    assert.same({ n = "b" }, v[1].extra)
    assert.equal(H.core.array_mt, getmetatable(v[1].tags))
  end)

  it("assigns the result of a function(row, msg)", function()
    pipeline([[
sdf.k = function(row, msg) return msg.key .. ":" .. row.x end
sdf:to_topic(out)]])
    assert.same({ { x = 1, k = "a:1" } }, vals({ { { x = 1 }, key = "a" } }))
  end)

  it("assigns sdf:apply(fn) as a column (no extra branch)", function()
    pipeline([[
sdf.d = sdf:apply(function(row) return row.x * 2 end)
sdf:to_topic(out)]])
    assert.same({ { x = 4, d = 8 } }, vals({ { { x = 4 } } }))
    assert.falsy(rt.source_of("in"):find("do local v", 1, true))
  end)

  it("reads nested fields; a missing or non-table intermediate gives nil", function()
    pipeline([[
sdf.r = sdf.pos.lat
sdf.s = sdf.a.b.c
sdf:to_topic(out)]])
    local v = vals({
      { { pos = { lat = 1.5 }, a = { b = { c = "deep" } } } },
      { {} },
      { { pos = null, a = 5 } },
      { { pos = "str", a = { b = 3 } } },
    })
    assert.same(1.5, v[1].r)
    assert.same("deep", v[1].s)
    assert.is_nil(v[2].r); assert.is_nil(v[2].s)
    assert.is_nil(v[3].r); assert.is_nil(v[3].s)
    assert.is_nil(v[4].r); assert.is_nil(v[4].s)
  end)

  it("assigns nested fields, creating intermediate tables", function()
    pipeline([[
sdf.pos.lat = sdf.y * 10
sdf.a.b.c = "x"
sdf:to_topic(out)]])
    local v = vals({ { { y = 2, pos = { lon = 1 } } }, { { y = 3, pos = null, a = 7 } } })
    assert.same({ y = 2, pos = { lon = 1, lat = 20 }, a = { b = { c = "x" } } }, v[1])
    assert.same({ y = 3, pos = { lat = 30 }, a = { b = { c = "x" } } }, v[2])
  end)

  it("reaches columns named like methods with sdf:col() and assigns them with sdf.name =", function()
    pipeline([[
sdf.out = sdf:col("filter") + sdf:col("apply")
sdf.filter = 0
sdf.p = sdf:col("pos", "print")
sdf:to_topic(out)]])
    assert.same({ { filter = 0, apply = 2, out = 3, pos = { print = "p" }, p = "p" } },
      vals({ { { filter = 1, apply = 2, pos = { print = "p" } } } }))
  end)

  it("handles column names that are not Lua identifiers", function()
    pipeline([[
sdf["a b"] = sdf["end"] + 1
sdf[1] = "first"
sdf:to_topic(out)]])
    assert.same({ { ["end"] = 1, ["a b"] = 2, [1] = "first" } }, vals({ { { ["end"] = 1 } } }))
  end)
end)

describe("masks, filters and projections", function()
  it("keeps rows matching a mask", function()
    pipeline("sdf = sdf[sdf.x:gt(1)]\nsdf:to_topic(out)")
    assert.same({ { x = 2 }, { x = 3 } }, vals({ { { x = 1 } }, { { x = 2 } }, { { x = 3 } } }))
  end)

  it("treats nil, false and ls.null as false in a mask; 0 and \"\" as true", function()
    pipeline("sdf = sdf[sdf.f]\nsdf:to_topic(out)")
    local v = vals({ { { f = null, i = 1 } }, { { f = false, i = 2 } }, { { i = 3 } },
      { { f = 0, i = 4 } }, { { f = "", i = 5 } }, { { f = true, i = 6 } } })
    assert.same({ { f = 0, i = 4 }, { f = "", i = 5 }, { f = true, i = 6 } }, v)
  end)

  it("filters with a function or an expression", function()
    pipeline([[
local a = sdf:filter(function(row, msg) return row.x > 1 and msg.key == "k" end)
a:to_topic(out)
local b = sdf:filter(sdf.x:eq(1))
b:to_topic(out2)]])
    local outs = H.run({ { { x = 1 }, key = "k" }, { { x = 2 }, key = "k" }, { { x = 3 }, key = "z" } })
    assert.same(2, #outs)
    assert.same({ x = 1 }, outs[1].val); assert.same("out2", outs[1].topic)
    assert.same({ x = 2 }, outs[2].val); assert.same("out", outs[2].topic)
  end)

  it("filters with sdf[sdf:apply(fn)], sdf[fn] and sdf:filter(sdf:apply(fn))", function()
    pipeline([[
local a = sdf[sdf:apply(function(row) return row.x % 2 == 0 end)]
a:to_topic(out)
local b = sdf[function(row) return row.x == 3 end]
b:to_topic(out2)
local c = sdf:filter(sdf:apply(function(row) return row.x > 2 end))
c:to_topic(out)]])
    local outs = H.run({ { { x = 2 } }, { { x = 3 } } })
    assert.same({ { x = 2 }, { x = 3 }, { x = 3 } }, { outs[1].val, outs[2].val, outs[3].val })
    assert.same({ "out", "out2", "out" }, { outs[1].topic, outs[2].topic, outs[3].topic })
  end)

  it("projects columns; absent keys stay absent; the input row is unchanged", function()
    pipeline([[
local p = sdf[{ "a", "c", "zz" }]
p:to_topic(out)
sdf:to_topic(out2)]])
    local row = { a = 1, b = 2, c = 3 }
    local outs = H.run({ { row } })
    assert.same({ a = 1, c = 3 }, outs[1].val)
    local n = 0
    for _ in pairs(outs[1].val) do n = n + 1 end
    assert.same(2, n)
    assert.same({ a = 1, b = 2, c = 3 }, outs[2].val)
    assert.equal(row, outs[2].val)
  end)

  it("rejects a projection that is not a list of names", function()
    local err = H.error_of(pipeline, "local p = sdf[{ a = 1 }]")
    assert.matches("app.lua:7: projection: expected a list of column names", err, 1, true)
  end)
end)

describe("apply and update", function()
  it("apply returns a new value; the old dataframe is unchanged", function()
    pipeline([[
local doubled = sdf:apply(function(row, msg) return row.x * 2 end)
doubled:to_topic(out)
sdf:to_topic(out2)]])
    local outs = H.run({ { { x = 21 } } })
    assert.same(42, outs[1].val)
    assert.same({ x = 21 }, outs[2].val)
  end)

  it("apply(expand = true) emits each element as its own row", function()
    pipeline([[
local e = sdf:apply(function(row) return row.items end, { expand = true })
e = e[ls.col("n"):gt(1)]
e:to_topic(out)]])
    local v = vals({
      { { items = { { n = 1 }, { n = 2 }, { n = 3 } } } },
      { { items = nil } },
      { { items = ls.array() } },
      { { items = { { n = 5 } } } },
    })
    assert.same({ { n = 2 }, { n = 3 }, { n = 5 } }, v)
  end)

  it("apply(expand = true) keeps each element's order across branches", function()
    pipeline([[
local e = sdf:apply(function(row) return { 0, 1 } end, { expand = true })
e:apply(function(x) return x + 10 end):to_topic(out)
e:apply(function(x) return x + 20 end):to_topic(out)]])
    assert.same({ 10, 20, 11, 21 }, vals({ { {} } }))
  end)

  it("apply(expand = true) rejects a non-table result", function()
    pipeline([[
local e = sdf:apply(function(row) return 5 end, { expand = true })
e:to_topic(out)]])
    local err = H.error_of(H.run, { { {} } })
    assert.matches("app.lua:7: apply(expand): the function must return an array (a table) or nil, got number",
      err, 1, true)
  end)

  it("update mutates the row in place and ignores the return value", function()
    pipeline([[
sdf:update(function(row, msg) row.seen = msg.offset; return 99 end)
sdf:to_topic(out)]])
    assert.same({ { x = 1, seen = 7 } }, vals({ { { x = 1 }, off = 7 } }))
  end)

  it("update works with reassignment too", function()
    pipeline([[
sdf = sdf:update(function(row) row.y = 1 end)
sdf:to_topic(out)]])
    assert.same({ { y = 1 } }, vals({ { {} } }))
  end)

  it("rejects a non-function", function()
    local err = H.error_of(pipeline, "sdf:apply(5)")
    assert.matches("app.lua:7: apply: expected a function, got number", err, 1, true)
    err = H.error_of(pipeline, "sdf:apply(print, { expnad = true })")
    assert.matches("app.lua:7: apply: unknown option 'expnad' (did you mean 'expand'?)", err, 1, true)
  end)
end)

describe("to_topic", function()
  it("uses the input key by default, or a column, an expression or a function", function()
    pipeline([[
sdf:to_topic(out)
sdf:to_topic(out, { key = "device" })
sdf:to_topic(out, { key = sdf.device .. "-" .. sdf.n })
sdf:to_topic(out2, { key = function(row, msg) return msg.key .. "/" .. row.n end })]])
    local outs = H.run({ { { device = "d", n = 3 }, key = "in-key" } })
    assert.same({ "in-key", "d", "d-3", "in-key/3" },
      { outs[1].key, outs[2].key, outs[3].key, outs[4].key })
    assert.same({ "out", "out", "out", "out2" },
      { outs[1].topic, outs[2].topic, outs[3].topic, outs[4].topic })
    assert.same({ 1, 1, 1, 1 }, { outs[1].row, outs[2].row, outs[3].row, outs[4].row })
  end)

  it("passes a nil key through", function()
    pipeline("sdf:to_topic(out)")
    local outs = H.run({ { { a = 1 } } })
    assert.is_nil(outs[1].key)
  end)

  it("does not let later steps change what an earlier to_topic produced", function()
    pipeline([[
sdf:to_topic(out)
sdf.x = 2
sdf.pos.lat = 5
sdf:to_topic(out2)]])
    local outs = H.run({ { { x = 1, pos = { lat = 1 } } } })
    assert.same({ x = 1, pos = { lat = 1 } }, outs[1].val)
    assert.same({ x = 2, pos = { lat = 5 } }, outs[2].val)
  end)

  it("requires a topic object", function()
    local err = H.error_of(pipeline, 'sdf:to_topic("out")')
    assert.matches("app.lua:7: to_topic: expected a topic from app:topic(), got the string 'out'", err, 1, true)
    err = H.error_of(pipeline, 'sdf:to_topic(out, { key = true })')
    assert.matches("app.lua:7: to_topic: option 'key' must be", err, 1, true)
  end)

  it("returns the dataframe (in place) so calls chain", function()
    pipeline([[
sdf:to_topic(out):to_topic(out2)
sdf:to_topic(out)]])
    local outs = H.run({ { { a = 1 } } })
    assert.same({ "out", "out2", "out" }, { outs[1].topic, outs[2].topic, outs[3].topic })
  end)
end)

describe("print", function()
  it("prints the row with key, partition and offset", function()
    pipeline("sdf:print()")
    local text = H.capture_stdout(function()
      H.run({ { { device = "x" }, key = "phone-3", p = 2, off = 1234 } })
    end)
    assert.same('[in] key=phone-3 p=2 off=1234 {"device":"x"}\n', text)
  end)

  it("prints without metadata, and a null key", function()
    pipeline("sdf:print{ metadata = false }\nsdf:print()")
    local text = H.capture_stdout(function()
      H.run({ { { a = 1 }, off = 5 } })
    end)
    assert.same('{"a":1}\n[in] key=null p=0 off=5 {"a":1}\n', text)
  end)
end)

describe("timestamps and headers", function()
  it("set_timestamp changes the timestamp downstream only", function()
    pipeline([[
local s = sdf:set_timestamp(function(row, msg) return row.t end)
s:apply(function(row, msg) return msg.timestamp end):to_topic(out)
s:to_topic(out)
sdf:to_topic(out2)]])
    local outs = H.run({ { { t = 5000 }, ts = 42 } })
    assert.same(5000, outs[1].val)
    assert.same(5000, outs[1].ts)
    assert.same(5000, outs[2].ts)
    assert.same(42, outs[3].ts)
  end)

  it("rejects a timestamp that is not a number", function()
    pipeline([[
local s = sdf:set_timestamp(function(row) return "soon" end)
s:to_topic(out)]])
    local err = H.error_of(H.run, { { {} } })
    assert.same(H.tmpdir() .. "/app.lua:7: set_timestamp: the function returned string, " ..
      "expected a timestamp in milliseconds (a number)", err)
  end)

  it("passes input headers through and replaces them with set_headers", function()
    pipeline([[
sdf:to_topic(out)
local a = sdf:set_headers(function(row, msg) return { b = "2", a = 1 } end)
a:apply(function(row, msg) return msg.headers end):to_topic(out)
local b = sdf:set_headers(function(row) return { { "x", "y" }, { "x", "z" } } end)
b:to_topic(out2)
local c = sdf:set_headers(function(row) return nil end)
c:to_topic(out2)]])
    local hdrs = { { "h", "v" } }
    local outs = H.run({ { { n = 1 }, hdrs = hdrs } })
    assert.equal(hdrs, outs[1].hdr)
    assert.same({ { "a", "1" }, { "b", "2" } }, outs[2].hdr)
    assert.same({ { "a", "1" }, { "b", "2" } }, outs[2].val)
    assert.same({ { "x", "y" }, { "x", "z" } }, outs[3].hdr)
    assert.is_nil(outs[4].hdr)
  end)
end)

describe("drop and fill", function()
  it("drops columns in place", function()
    pipeline([[
sdf:drop{ "a", "missing" }
sdf:drop("b")
sdf:to_topic(out)]])
    assert.same({ { c = 3 } }, vals({ { { a = 1, b = 2, c = 3 } } }))
  end)

  it("fills nil and ls.null with defaults", function()
    pipeline([[
sdf:fill{ "p", x = 0, s = "none" }
sdf:to_topic(out)]])
    local v = vals({ { { x = null, s = "set" } }, { { p = 1 } } })
    assert.equal(null, v[1].p)
    assert.same(0, v[1].x)
    assert.same("set", v[1].s)
    assert.same({ p = 1, x = 0, s = "none" }, v[2])
  end)
end)

describe("branching", function()
  it("gives every branch an independent row, in declaration order", function()
    pipeline([[
local a = sdf:apply(function(row) return row end)
a.x = 1
a:to_topic(out)
local b = sdf[sdf.n:gt(0)]
b.y = 2
b:to_topic(out2)
sdf.z = 3
sdf:to_topic(out)]])
    local outs = H.run({ { { n = 1 } }, { { n = 0 } } })
    assert.same(5, #outs)
    assert.same({ n = 1, x = 1 }, outs[1].val)
    assert.same({ n = 1, y = 2 }, outs[2].val)
    assert.same({ n = 1, z = 3 }, outs[3].val)
    assert.same({ n = 0, x = 1 }, outs[4].val)
    assert.same({ n = 0, z = 3 }, outs[5].val)
  end)

  it("isolates nested tables changed by update in one branch", function()
    pipeline([[
local a = sdf:update(function(row) row.pos.lat = 99 end)
sdf = app:dataframe(input)
local b = sdf:apply(function(row) return row end)
b:update(function(row) row.pos.lat = 99 end)
b:to_topic(out)
sdf:to_topic(out2)]])
    local outs = H.run({ { { pos = { lat = 1 } } } })
    assert.same({ pos = { lat = 99 } }, outs[1].val)
    assert.same({ pos = { lat = 1 } }, outs[2].val)
  end)

  it("isolates nested assignment after a projection in a branch", function()
    pipeline([[
local p = sdf[{ "pos" }]
p.pos.lat = 7
p:to_topic(out)
sdf:to_topic(out2)]])
    local outs = H.run({ { { pos = { lat = 1 }, other = 1 } } })
    assert.same({ pos = { lat = 7 } }, outs[1].val)
    assert.same({ pos = { lat = 1 }, other = 1 }, outs[2].val)
  end)

  it("applies filters per branch", function()
    pipeline([[
local big = sdf[sdf.x:ge(10)]
big:to_topic(out)
local small = sdf[sdf.x:lt(10)]
small = small[sdf.x:ne(5)]
small:to_topic(out2)]])
    local outs = H.run({ { { x = 12 } }, { { x = 5 } }, { { x = 3 } } })
    assert.same({ { "out", 12 }, { "out2", 3 } },
      { { outs[1].topic, outs[1].val.x }, { outs[2].topic, outs[2].val.x } })
  end)

  it("copies only where needed: a linear pipeline has no copies", function()
    pipeline([[
sdf.a = 1
sdf = sdf[sdf.a:eq(1)]
sdf:update(function(row) row.b = 2 end)
sdf:to_topic(out)]])
    local src = rt.source_of("in")
    assert.falsy(src:find("copy", 1, true))
    assert.falsy(src:find("do local v", 1, true))
  end)

  it("runs several dataframes of one topic as branches", function()
    pipeline([[
sdf.a = 1
sdf:to_topic(out)
local again = app:dataframe(input)
again:to_topic(out2)]])
    local outs = H.run({ { { x = 0 } } })
    assert.same({ x = 0, a = 1 }, outs[1].val)
    assert.same({ x = 0 }, outs[2].val)
  end)
end)

describe("the msg object", function()
  it("carries key, timestamp, topic, partition, offset and headers", function()
    pipeline([[
sdf = sdf:apply(function(row, msg)
  return { key = msg.key, timestamp = msg.timestamp, topic = msg.topic,
    partition = msg.partition, offset = msg.offset, headers = msg.headers }
end)
sdf:to_topic(out)]])
    local v = vals({
      { {}, key = "k", ts = 1700000000123, p = 3, off = 2 ^ 40, hdrs = { { "a", "b" } } },
      { {}, p = 1, off = 0 },
    })
    assert.same({ key = "k", timestamp = 1700000000123, topic = "in", partition = 3, offset = 2 ^ 40,
      headers = { { "a", "b" } } }, v[1])
    assert.same({ timestamp = 1002, topic = "in", partition = 1, offset = 0, headers = {} }, v[2])
  end)
end)

describe("topic timestamps", function()
  it("reads the timestamp from a field, falling back to the Kafka timestamp", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local t = app:topic("in", { timestamp = "ts" })
local sdf = app:dataframe(t)
sdf.seen = sdf:apply(function(row, msg) return msg.timestamp end)
sdf:to_topic(app:topic("out"))]])
    local outs = H.run({ { { ts = 77 }, ts = 5 }, { {}, ts = 6 }, { { ts = ls.null }, ts = 8 } })
    assert.same({ 77, 6, 8 }, { outs[1].ts, outs[2].ts, outs[3].ts })
    assert.same({ 77, 6, 8 }, { outs[1].val.seen, outs[2].val.seen, outs[3].val.seen })
    local err = H.error_of(H.run, { { { ts = "yesterday" } } })
    assert.same(H.tmpdir() .. "/app.lua:3: topic 'in' timestamp: timestamp field 'ts' is a string, " ..
      "expected milliseconds (a number)", err)
  end)

  it("reads the timestamp from a function(row, msg)", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local t = app:topic("in", { timestamp = function(row, msg) return row.sec and row.sec * 1000 end })
app:dataframe(t):to_topic(app:topic("out"))]])
    local outs = H.run({ { { sec = 3 }, ts = 5 }, { {}, ts = 6 } })
    assert.same({ 3000, 6 }, { outs[1].ts, outs[2].ts })
  end)
end)

describe("declaration checks", function()
  it("warns about a step whose result is never used", function()
    local logged = H.capture_log(function()
      pipeline("local unused = sdf[sdf.x:gt(1)]\nsdf:to_topic(out)")
    end)
    assert.same(1, #logged)
    assert.same("warn", logged[1][1])
    assert.matches("app.lua:7: filter 'x > 1' has no effect", logged[1][2], 1, true)
  end)

  it("warns about a dataframe without outputs", function()
    local logged = H.capture_log(function()
      pipeline("sdf.x = 1")
    end)
    assert.same({ { "warn", H.tmpdir() ..
      "/app.lua:6: app:dataframe(in) has no effect: no step after it produces output" } }, logged)
  end)

  it("refuses new steps after the script has loaded", function()
    pipeline("_G.late_sdf = sdf\nsdf:to_topic(out)")
    local err = H.error_of(function() _G.late_sdf.x = 1 end)
    assert.matches("the pipeline can no longer change", err, 1, true)
    _G.late_sdf = nil
  end)

  it("rejects comparisons with < and >", function()
    local err = H.error_of(pipeline, "local m = sdf.x < sdf.y")
    assert.matches("app.lua:7: '<' and '>' cannot compare column expressions", err, 1, true)
  end)
end)

describe("step errors", function()
  local p = function() return H.tmpdir() .. "/app.lua" end

  it("name a mask, a key function, set_headers and a topic timestamp function", function()
    pipeline([[
local a = sdf[sdf.dG:gt(3)]
a:to_topic(out)
sdf:to_topic(out2, { key = function(row) return row.k.x end })
local h = sdf:set_headers(function(row) return row.h end)
h:to_topic(out2)]])
    assert.same(p() .. ":7: filter 'dG > 3': attempt to compare number with nil", H.error_of(H.run, { { {} } }))
    assert.same(p() .. ":9: to_topic 'out2': " .. p() .. ":9: attempt to index field 'k' (a nil value)",
      H.error_of(H.run, { { { dG = 1 } } }))
    assert.same(p() .. ":10: set_headers: the function returned number, expected a table or nil",
      H.error_of(H.run, { { { dG = 1, k = {}, h = 5 } } }))
    assert.same(p() .. ":10: set_headers: header value must be a string, got table",
      H.error_of(H.run, { { { dG = 1, k = {}, h = { a = {} } } } }))
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local t = app:topic("in", { timestamp = function(row) return row.when end })
app:dataframe(t):to_topic(app:topic("out"))]])
    assert.same(p() .. ":3: topic 'in' timestamp: the function returned string, expected a timestamp " ..
      "in milliseconds (a number)", H.error_of(H.run, { { { when = "now" } } }))
  end)

  it("name projections, drops and fills on a value that is not a table", function()
    pipeline([[
sdf = sdf:apply(function(row) return row.n end)
local p = sdf[{ "a" }]
p:to_topic(out)
sdf:drop{ "a" }
sdf:to_topic(out2)]])
    assert.same(p() .. ":8: projection: attempt to index local 'v' (a number value)",
      H.error_of(H.run, { { { n = 1 } } }))
  end)
end)
