-- Vecs through the codecs and the state store: core.decode's arrays option,
-- core.encode of vecs (JSON arrays, msgpack float64 arrays, the vec ext type
-- of state values), the topic option arrays = "vec" (checked when declared,
-- in the spec, and in a pipeline run by luastream.testing, which decodes like
-- runtime/batch.c), and vec state values through take_changes and a load
-- (luastream.state's encoding, read back like runtime/checkpoint.c does).
-- Needs the real luastream.core: run with `luastream test`.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ffi = require("ffi")
local core = H.core
local ls = require("luastream")
local vec = ls.vec
local testing = require("luastream.testing")

if not H.real_core or not pcall(function() return ffi.C.ls_ffi_vec_sum end) then
  describe("vecs in the codecs", function()
    pending("needs the luastream binary (run with `luastream test`)")
  end)
  return
end

local VEC = { arrays = "vec" }
local EXT = { vecs = "ext" }
local nan, inf = 0 / 0, math.huge
-- -0 is written tonumber("-0") here, never -0.0: LuaJIT on arm64 keeps numbers
-- in its dual-number mode, where the literal -0.0 is the integer 0 (x86-64 has a
-- double -0); tonumber("-0") is the double -0 on every architecture.
local negz = tonumber("-0")

local u = ffi.new("union { double d; uint64_t u; }")
local function bits(x)
  u.d = x
  return u.u
end

-- v is a vec holding exactly these doubles (bit for bit: -0, NaN).
local function holds(v, list)
  if not vec.is(v) or #v ~= #list then return false end
  for i = 1, #list do
    if bits(v[i]) ~= bits(list[i]) then return false end
  end
  return true
end

local function marked(t)
  return type(t) == "table" and getmetatable(t) == core.array_mt
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

describe("core.decode with { arrays = 'vec' }", function()
  it("makes a vec of every JSON array of numbers, at any depth", function()
    local v = core.decode("json", '{"car":"car-7","t0":1764160000123,"rate_hz":1500,' ..
      '"channels":{"speed":[12.5, 13, -0.25e1],"rpm":[3000,3010.5]},"laps":[[1,2],[3]]}', VEC)
    assert.is_true(holds(v.channels.speed, { 12.5, 13, -2.5 }))
    assert.is_true(holds(v.channels.rpm, { 3000, 3010.5 }))
    assert.equal(1764160000123, v.t0)
    assert.is_true(marked(v.laps))
    assert.is_true(holds(v.laps[1], { 1, 2 }) and holds(v.laps[2], { 3 }))
    assert.is_true(holds(core.decode("json", "[0.1, -0, 1e400]", VEC), { 0.1, negz, inf }))
  end)

  it("keeps other arrays as tables, and [] becomes an empty vec", function()
    local v = core.decode("json", '{"tags":["a","b"],"mixed":[1,"x",null],"objs":[{"a":[1]}],"e":[]}', VEC)
    assert.is_true(marked(v.tags))
    assert.same({ "a", "b" }, { v.tags[1], v.tags[2] })
    assert.is_true(marked(v.mixed))
    assert.equal(ls.null, v.mixed[3])
    assert.is_true(holds(v.objs[1].a, { 1 }))
    assert.is_true(holds(v.e, {}))
  end)

  it("rounds integers beyond 2^53 to the nearest double (no int64 in a vec)", function()
    local v = core.decode("json", "[9007199254740993, 18446744073709551615]", VEC)
    assert.is_true(holds(v, { 2 ^ 53, 2 ^ 64 }))
    assert.equal("cdata", type(core.decode("json", "[9007199254740993]")[1]))
  end)

  it("reads msgpack arrays of numbers as vecs too", function()
    local bytes = core.encode("msgpack", { a = { 1, 2.5, -3 }, b = { 1, "x" } })
    local v = core.decode("msgpack", bytes, VEC)
    assert.is_true(holds(v.a, { 1, 2.5, -3 }))
    assert.is_true(marked(v.b))
    assert.is_true(marked(core.decode("msgpack", bytes).a))
  end)

  it("gives the same errors as without the option", function()
    for _, bad in ipairs({ "[1,,2]", "[1 2]", "[1,", "[01]", "[1e]", "[1,2]x", "[-]" }) do
      local e1 = H.error_of(core.decode, "json", bad)
      local e2 = H.error_of(core.decode, "json", bad, VEC)
      assert.equal(e1, e2)
    end
    assert.matches("decode json: invalid JSON: unexpected character ',' at byte 3",
      H.error_of(core.decode, "json", "[1,,2]", VEC), 1, true)
  end)

  it("checks its options", function()
    assert.matches("decode: option 'arrays' must be 'table' or 'vec'",
      H.error_of(core.decode, "json", "[1]", { arrays = "vecs" }), 1, true)
    assert.matches("table expected", H.error_of(core.decode, "json", "[1]", "vec"), 1, true)
    assert.is_true(marked(core.decode("json", "[1]", { arrays = "table" })))
    assert.equal("[1]", core.decode("string", "[1]", VEC))
  end)
end)

describe("core.encode of vecs", function()
  it("writes JSON arrays of shortest doubles", function()
    assert.equal('{"v":[1,0.1,-0,1e+21,5e-324]}',
      core.encode("json", { v = vec.from({ 1, 0.1, negz, 1e21, 5e-324 }) }))
    assert.equal("[]", core.encode("json", vec.new(0)))
    local x = vec.new(100)
    for i = 1, #x do x[i] = (math.random() - 0.5) * 10 ^ math.random(-300, 300) end
    assert.is_true(holds(core.decode("json", core.encode("json", x), VEC), x:totable()))
  end)

  it("refuses NaN and infinities, naming the element", function()
    assert.equal("encode json: cannot encode NaN or infinity at $.ch.speed[1]",
      H.error_of(core.encode, "json", { ch = { speed = vec.from({ 1, nan }) } }))
    assert.equal("encode json: cannot encode NaN or infinity at $[0]",
      H.error_of(core.encode, "json", vec.from({ -inf })))
  end)

  it("writes msgpack arrays of float64, every element", function()
    local bytes = core.encode("msgpack", vec.from({ 1, -0.5 }))
    assert.equal("92cb3ff0000000000000cbbfe0000000000000", hex(bytes))
    local t = core.decode("msgpack", bytes)
    assert.is_true(marked(t))
    assert.same({ 1, -0.5 }, { t[1], t[2] })
    local odd = core.encode("msgpack", vec.from({ nan, inf, 3 }))
    assert.is_true(holds(core.decode("msgpack", odd, VEC), { nan, inf, 3 }))
  end)

  it("writes the vec ext type with { vecs = 'ext' }, which decodes to a vec", function()
    assert.equal("d756000000000000f03f", hex(core.encode("msgpack", vec.from({ 1 }), EXT)))
    assert.equal("c70056", hex(core.encode("msgpack", vec.new(0), EXT)))
    local v = vec.from({ 1.5, negz, nan, inf, 5e-324 })
    ffi.cast("uint64_t *", v.d)[2] = 0x7ff80000deadbeefULL -- a NaN with a payload
    local back = core.decode("msgpack", core.encode("msgpack", { w = v, n = 1 }, EXT))
    assert.equal(1, back.n)
    assert.equal(#v, #back.w)
    for i = 1, #v do assert.equal(bits(v[i]), bits(back.w[i])) end
    assert.equal(0x7ff80000deadbeefULL, ffi.cast("uint64_t *", back.w.d)[2])
    assert.equal('[1]', core.encode("json", vec.from({ 1 }), EXT))
  end)

  it("checks its options, and other formats refuse vecs", function()
    assert.matches("encode: option 'vecs' must be 'array' or 'ext'",
      H.error_of(core.encode, "msgpack", vec.new(1), { vecs = "raw" }), 1, true)
    assert.matches("encode string: cannot encode a cdata as string",
      H.error_of(core.encode, "string", vec.new(1)), 1, true)
    assert.matches("cannot encode a cdata as an object key",
      H.error_of(core.encode, "json", { [vec.new(1)] = 1 }), 1, true)
  end)
end)

local function script(topic_opts, body)
  return H.header .. "local app = ls.app{ name = 'telemetry' }\n" ..
    "local t = app:topic('telemetry', " .. topic_opts .. ")\n" ..
    "local sdf = app:dataframe(t)\n" .. (body or "sdf:to_topic(app:topic('out'))\n")
end

describe("the topic option arrays", function()
  it("is 'table' by default and 'vec' when asked, in the spec", function()
    assert.equal("table", H.load_source(script("{}")).inputs[1].arrays)
    assert.equal("vec", H.load_source(script("{ value = 'msgpack', arrays = 'vec' }")).inputs[1].arrays)
  end)

  it("refuses other values with the script's file:line", function()
    local err = H.error_of(H.load_source, script("{ arrays = 'vecs' }"))
    assert.matches("app%.lua:3: app:topic: option 'arrays' must be one of 'table', 'vec', got 'vecs'", err)
    err = H.error_of(H.load_source, script("{ arrays = true }"))
    assert.matches("app%.lua:3: app:topic: option 'arrays' must be one of 'table', 'vec', got boolean", err)
    err = H.error_of(H.load_source, script("{ value = 'string', arrays = 'vec' }"))
    assert.matches('app%.lua:3: app:topic: option arrays = "vec" needs value = "json" or "msgpack"', err)
    err = H.error_of(H.load_source, script("{ arrays = 'vec' }",
      "local again = app:topic('telemetry', { arrays = 'table' })\nsdf:to_topic(app:topic('out'))\n"))
    assert.matches("app%.lua:5: app:topic: topic 'telemetry' was already declared at .* with different options", err)
  end)
end)

local PIPELINE = [[
sdf = sdf:update(function(row)
  local ch = row.channels
  row.is_vec = ls.vec.is(ch.speed)
  row.speed_mean = ch.speed:mean()
  row.rpm_max = ch.rpm:max()
  row.speed2 = ch.speed * 2
  row.channels = nil
end)
sdf:to_topic(app:topic("stats"))
]]

describe("a pipeline on a topic with arrays = 'vec'", function()
  local value = { car = "car-7", rate_hz = 1500, tags = { "a" },
    channels = { speed = { 10, 20, 30 }, rpm = { 3000, 3100.5 } } }

  for _, fmt in ipairs({ "json", "msgpack" }) do
    it("gets vecs in its rows and writes them as arrays (" .. fmt .. ")", function()
      local d = testing.driver(H.write_script(script("{ value = '" .. fmt .. "', arrays = 'vec' }", PIPELINE)))
      d:send("telemetry", "car-7", value)
      local out = d:read_values("stats")
      assert.equal(1, #out)
      local r = out[1]
      assert.is_true(r.is_vec)
      assert.equal(20, r.speed_mean)
      assert.equal(3100.5, r.rpm_max)
      assert.is_true(marked(r.speed2)) -- "stats" reads arrays as tables
      assert.same({ 20, 40, 60 }, { r.speed2[1], r.speed2[2], r.speed2[3] })
      assert.is_true(marked(r.tags))
      assert.equal("a", r.tags[1])
    end)
  end

  it("decodes raw JSON text the same way", function()
    local d = testing.driver(H.write_script(script("{ arrays = 'vec' }", PIPELINE)))
    d:send("telemetry", { key = "car-7",
      raw_value = '{"channels":{"speed":[1.5,2.5],"rpm":[1,2]}}' })
    local r = d:read_values("stats")[1]
    assert.equal(2, r.speed_mean)
    assert.equal(2, r.rpm_max)
  end)

  it("hands vecs to the output encoder (H.run)", function()
    H.load_source(script("{ arrays = 'vec' }", PIPELINE))
    local outs = H.run({ { { channels = { speed = vec.from({ 1, 3 }), rpm = vec.from({ 5 }) } }, key = "k" } })
    assert.equal(1, #outs)
    assert.is_true(vec.is(outs[1].val.speed2))
    assert.matches('"speed2":[2,6]', core.encode("json", outs[1].val), 1, true)
  end)
end)

local STATEFUL = [[
sdf = sdf:update(function(row, state)
  local prev = state:get("window")
  row.had = prev ~= nil and ls.vec.is(prev)
  row.prev_sum = prev and prev:sum() or 0
  row.prev_len = prev and #prev or -1
  state:set("window", row.channels.speed)
  state:set("count", (state:get("count") or 0) + 1)
  row.channels = nil
end, { stateful = true })
sdf:to_topic(app:topic("stats"))
]]

describe("vecs as state values", function()
  it("are written as the vec ext type and load back as vecs, bit for bit", function()
    H.load_source(script("{ arrays = 'vec' }", STATEFUL))
    local v = vec.from({ 1.5, negz, nan, inf, -inf, 5e-324, 1e308 })
    ffi.cast("uint64_t *", v.d)[2] = 0x7ff0000000000001ULL -- a signalling NaN with a payload
    H.run({ { { channels = { speed = v } }, key = "car-7" } })
    local n = H.rt.take_state_changes()
    local window
    for j = 1, n do
      local _, sk = require("luastream.state").split_key(H.rt.changes.key[j])
      if sk == "window" then window = H.rt.changes.val[j] end
    end
    assert.equal("c738", hex(window:sub(1, 2))) -- ext 8, 56 bytes
    assert.equal("56", hex(window:sub(3, 3)))
    -- what runtime/checkpoint.c's state_load does with a stored value
    local back = core.decode("msgpack", window)
    assert.is_true(vec.is(back))
    assert.equal(#v, #back)
    local p, q = ffi.cast("uint64_t *", v.d), ffi.cast("uint64_t *", back.d)
    for i = 0, #v - 1 do assert.equal(p[i], q[i]) end
  end)

  it("survive a checkpoint and a restart (luastream.testing)", function()
    local d = testing.driver(H.write_script(script("{ arrays = 'vec' }", STATEFUL)))
    d:send("telemetry", "car-7", { channels = { speed = { 1, 2, 3.5 } } })
    local r = d:read_values("stats")[1]
    assert.is_false(r.had)
    local saved = d:state("default", "car-7", "window")
    assert.is_true(holds(saved, { 1, 2, 3.5 }))
    d:restart()
    d:send("telemetry", "car-7", { channels = { speed = { 4 } } })
    r = d:read_values("stats")[1]
    assert.is_true(r.had)
    assert.equal(6.5, r.prev_sum)
    assert.equal(3, r.prev_len)
    assert.is_true(holds(d:state("default", "car-7", "window"), { 4 }))
    assert.equal(2, d:state("default", "car-7", "count"))
  end)
end)
