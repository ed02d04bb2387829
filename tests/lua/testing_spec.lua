-- Specs for luastream.testing, the driver users test their pipelines with.
-- They need the real luastream.core (run them with `luastream test`).
local H = require("helpers")
local core = H.core
local testing = require("luastream.testing")

local real = H.real_core
local describe_real = real and describe or pending

local function fixture(name)
  return "fixtures/" .. name .. ".lua"
end

local function json(v) return core.encode("json", v) end

-- Kafka's murmur2 (the Java client's default partitioner, librdkafka's
-- murmur2_random), written out here as the reference the driver must match.
local bit = require("bit")
local function mul32(a, b)
  return bit.tobit(bit.band(a, 0xffff) * b + bit.lshift(bit.rshift(a, 16) * b % 0x10000, 16))
end
local function murmur2(s)
  local m = 0x5bd1e995
  local h, i, len = bit.bxor(0x9747b28c, #s), 1, #s
  while len - i + 1 >= 4 do
    local b1, b2, b3, b4 = s:byte(i, i + 3)
    local k = mul32(bit.bor(b1, bit.lshift(b2, 8), bit.lshift(b3, 16), bit.lshift(b4, 24)), m)
    k = mul32(bit.bxor(k, bit.rshift(k, 24)), m)
    h = bit.bxor(mul32(h, m), k)
    i = i + 4
  end
  local rest = len - i + 1
  if rest == 3 then h = bit.bxor(h, bit.lshift(s:byte(i + 2), 16)) end
  if rest >= 2 then h = bit.bxor(h, bit.lshift(s:byte(i + 1), 8)) end
  if rest >= 1 then h = mul32(bit.bxor(h, s:byte(i)), m) end
  h = mul32(bit.bxor(h, bit.rshift(h, 13)), m)
  return bit.tobit(bit.bxor(h, bit.rshift(h, 15)))
end
local function murmur2_partition(key, n)
  return bit.band(murmur2(key), 0x7fffffff) % n
end

describe("murmur2 (the reference)", function()
  it("gives the values of Kafka's own tests", function()
    assert.equal(-973932308, murmur2("21"))
    assert.equal(-790332482, murmur2("foobar"))
    assert.equal(-985981536, murmur2("a-little-bit-long-string"))
    assert.equal(-1486304829, murmur2("a-little-bit-longer-string"))
    assert.equal(-58897971, murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"))
    assert.equal(479470107, murmur2("abc"))
  end)
end)

describe_real("luastream.testing", function()
  describe("loading", function()
    it("finds the script relative to the spec file and names the app's topics", function()
      local d = testing.driver(fixture("stateless"))
      assert.equal("doubler", d.spec.name)
      assert.equal("numbers", d.spec.inputs[1].name)
      assert.equal("doubled", d.spec.outputs[1].name)
    end)

    it("takes an absolute path", function()
      local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
      if here:sub(1, 1) ~= "/" then
        local pwd = io.popen("pwd"):read("*l")
        here = pwd .. "/" .. here
      end
      local d = testing.driver(here .. fixture("stateless"))
      assert.equal("doubler", d.spec.name)
    end)

    it("reports a script mistake with the script's file:line", function()
      local err = H.error_of(testing.driver, fixture("bad_option"))
      assert.matches("bad_option%.lua:4: ls%.app: unknown option 'comit_interval'", err)
      assert.matches("did you mean 'commit_interval'", err, 1, true)
    end)

    it("reports a syntax error with file:line", function()
      local path = H.write_script('local ls = require("luastream")\nlocal app = ls.app{\n')
      local err = H.error_of(testing.driver, path)
      assert.matches("app%.lua:%d+:", err)
    end)

    it("reports a missing script and unknown options", function()
      local err = H.error_of(testing.driver, "no_such_pipeline.lua")
      assert.matches("cannot find the script 'no_such_pipeline.lua'", err, 1, true)
      err = H.error_of(testing.driver, fixture("stateless"), { partition = 2 })
      assert.matches("unknown option 'partition' (did you mean 'partitions'?)", err, 1, true)
    end)

    it("applies `set` like --set", function()
      local d = testing.driver(fixture("errors"), { set = { on_error = "skip", commit_interval = 1 } })
      assert.equal("skip", d.spec.on_error)
      assert.equal(1, d.spec.commit_interval)
      local err = H.error_of(testing.driver, fixture("errors"), { set = { on_eror = "skip" } })
      assert.matches("unknown app option 'on_eror'", err, 1, true)
    end)

    it("passes `set` as --set does: strings, numbers and booleans", function()
      local d = testing.driver(fixture("errors"), { set = { on_error = "dead-letter", dead_letter = "dlq",
        commit_every = 5, wait_for_topics = true } })
      assert.same({ "dead-letter", "dlq", 5, true },
        { d.spec.on_error, d.spec.dead_letter, d.spec.commit_every, d.spec.wait_for_topics })
      local err = H.error_of(testing.driver, fixture("errors"), { set = { on_error = print } })
      assert.matches("the value of 'on_error' must be a string, number or boolean", err, 1, true)
    end)
  end)

  describe("a stateless pipeline", function()
    it("writes exactly what a consumer would read", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", { key = "a", value = { x = 1.5 }, timestamp = 1764160000000 })
      d:send("numbers", "b", { x = -1 }, 1764160000001) -- filtered out
      d:send("numbers", "c", { x = 4 }, 1764160000002)
      assert.same({
        { topic = "doubled", partition = 0, offset = 0, key = "a", timestamp = 1764160000000,
          value = { x = 1.5, double = 3, source = "numbers[0]@0" } },
        { topic = "doubled", partition = 0, offset = 1, key = "c", timestamp = 1764160000002,
          value = { x = 4, double = 8, source = "numbers[0]@2" } },
      }, d:read("doubled"))
    end)

    it("drains what it read", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", "a", { x = 1 })
      assert.equal(1, #d:read("doubled"))
      assert.same({}, d:read("doubled"))
      d:send("numbers", "a", { x = 2 })
      assert.same({ { x = 2, double = 4, source = "numbers[0]@1" } }, d:read_values("doubled"))
    end)

    it("passes headers through, as a list of {name, value}", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", { key = "a", value = { x = 1 }, headers = { trace = "t-1", n = 7 } })
      d:send("numbers", { key = "a", value = { x = 1 }, headers = { { "z", "1" }, { "a", "2" } } })
      local out = d:read("doubled")
      assert.same({ { "n", "7" }, { "trace", "t-1" } }, out[1].headers)
      assert.same({ { "z", "1" }, { "a", "2" } }, out[2].headers)
      assert.equal("t-1", testing.header(out[1], "trace"))
    end)

    it("decodes values with the topic's format, so the pipeline sees what production sees", function()
      local d = testing.driver(fixture("stateless"))
      local value = { x = 2 }
      d:send("numbers", "a", value)
      assert.is_nil(value.double) -- the pipeline got its own decoded copy
      d:send("numbers", "a", { x = 2, tags = core.array() })
      local v = d:read_values("doubled")[2]
      assert.equal("[]", json(v.tags)) -- an empty JSON array stays an array
      assert.equal(core.array_mt, getmetatable(v.tags))
    end)

    it("refuses values and keys the topic's serializers cannot write", function()
      local d = testing.driver(fixture("stateless"))
      local err = H.error_of(d.send, d, "numbers", { key = { 1 }, value = { x = 1 } })
      assert.matches("key format 'string': cannot encode a table as string", err, 1, true)
      err = H.error_of(d.send, d, "numbers", "a", { x = print })
      assert.matches("value format 'json'", err, 1, true)
      err = H.error_of(d.send, d, "numbers", { key = "a", x = 1 })
      assert.matches("unknown record field 'x'", err, 1, true)
    end)

    it("names unknown topics in send and read", function()
      local d = testing.driver(fixture("stateless"))
      local err = H.error_of(d.send, d, "number", "a", { x = 1 })
      assert.matches("the app reads no topic 'number' (did you mean 'numbers'?); it reads 'numbers'", err, 1, true)
      err = H.error_of(d.send, d, "doubled", "a", { x = 1 })
      assert.matches("the app writes it but reads no dataframe from it", err, 1, true)
      err = H.error_of(d.read, d, "doubles")
      assert.matches("the app writes no topic 'doubles' (did you mean 'doubled'?); it writes 'doubled'", err, 1, true)
      err = H.error_of(d.read, d, "numbers")
      assert.matches("(it only reads it)", err, 1, true)
    end)

    it("gives the bytes as written with { raw = true }", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", "a", { x = 1 })
      local rec = d:read("doubled", { raw = true })[1]
      assert.equal("a", rec.key)
      assert.equal("string", type(rec.value))
      assert.same({ x = 1, double = 2, source = "numbers[0]@0" }, core.decode("json", rec.value))
    end)

    it("captures sdf:print() output", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", "a", { x = 1 })
      assert.matches('^%[numbers%] key=a p=0 off=0 {.*"double":2', d:printed())
      assert.equal("", d:printed())
    end)

    it("decodes with the formats the app declared, also for topics it only writes", function()
      local path = H.write_script(H.header .. [[
local app = ls.app{ name = "declared", on_error = "dead-letter", dead_letter = "dl" }
app:topic("dl", { key = "string", value = "json" })
local sdf = app:dataframe(app:topic("in", { key = "string", value = "json" }))
sdf:update(function(row) if row.bad then error("bad row") end end)
sdf:to_topic(app:topic("out", { key = "string", value = "json", arrays = "vec" }))
]], "declared.lua")
      local d = testing.driver(path)
      d:send("in", "k", { xs = { 1, 2, 3 } })
      local v = d:read_values("out")[1]
      assert.is_true(require("luastream.vec").is(v.xs)) -- "out" reads arrays as vecs
      d:send("in", "k", { bad = true })
      assert.same({ bad = true }, d:read_values("dl")[1]) -- "dl" is JSON
    end)

    it("skips tombstones, as the runtime does", function()
      local d = testing.driver(fixture("stateless"))
      d:send("numbers", { key = "a" })
      d:send("numbers", "a", { x = 1 })
      local out = d:read("doubled")
      assert.equal(1, #out)
      assert.equal("numbers[0]@1", out[1].value.source)
    end)
  end)

  describe("a stateful pipeline", function()
    it("keeps state per key across sends", function()
      local d = testing.driver(fixture("counter"))
      d:send("events", "a", { id = 1 }, 10)
      d:send("events", "b", { id = 2 }, 20)
      d:send("events", "a", { id = 3 }, 30)
      assert.same({ { id = 1, n = 1, partition = 0 }, { id = 2, n = 1, partition = 0 },
        { id = 3, n = 2, partition = 0 } }, d:read_values("counts"))
      assert.equal(2, d:state("default", "a", "n"))
      assert.same({ id = 3, at = 30 }, d:state("default", "a", "last"))
      assert.same({ n = 1, last = { id = 2, at = 20 } }, d:state("default", "b"))
      assert.is_nil(d:state("default", "c", "n"))
      local err = H.error_of(d.state, d, "defualt", "a", "n")
      assert.matches("no state store 'defualt' (did you mean 'default'?)", err, 1, true)
    end)

    it("keeps state per partition and key", function()
      local d = testing.driver(fixture("counter"))
      d:send("events", { key = "k", value = { id = 1 }, partition = 0 })
      d:send("events", { key = "k", value = { id = 2 }, partition = 1 })
      d:send("events", { key = "k", value = { id = 3 }, partition = 1 })
      assert.same({ { id = 1, n = 1, partition = 0 }, { id = 2, n = 1, partition = 1 },
        { id = 3, n = 2, partition = 1 } }, d:read_values("counts"))
      assert.equal(1, d:state("default", "k", "n", 0))
      assert.equal(2, d:state("default", "k", "n", 1))
      local err = H.error_of(d.state, d, "default", "k", "n")
      assert.matches("has state in partitions 0, 1: pass the partition", err, 1, true)
    end)

    it("spreads keys over partitions like the producer (murmur2, as Java clients)", function()
      local d = testing.driver(fixture("counter"), { partitions = 4 })
      local keys = { "phone-1", "phone-2", "phone-3", "phone-4", "phone-5", "phone-6" }
      for j, k in ipairs(keys) do d:send("events", k, { id = j }) end
      local seen = {}
      for j, rec in ipairs(d:read("counts")) do
        local p = murmur2_partition(keys[j], 4)
        assert.equal(p, rec.value.partition)
        assert.equal(p, rec.partition) -- the output is keyed the same way
        seen[p] = true
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.is_true(n > 1)
    end)

    it("sends records without a key to any partition", function()
      local d = testing.driver(fixture("stateless"), { partitions = 3 })
      for j = 1, 30 do d:send("numbers", { value = { x = j } }) end
      local out = d:read("doubled")
      assert.equal(30, #out)
      local sent, written = {}, {}
      for _, rec in ipairs(out) do
        local p = tonumber(rec.value.source:match("^numbers%[(%d+)%]"))
        assert.is_true(p >= 0 and p < 3)
        assert.is_true(rec.partition >= 0 and rec.partition < 3)
        sent[p], written[rec.partition] = true, true
      end
      assert.is_true(next(sent, next(sent)) ~= nil) -- not all in one partition
      assert.is_true(next(written, next(written)) ~= nil)
    end)

    it("needs a message key: a record without one meets on_error", function()
      local d = testing.driver(fixture("counter"))
      d:send("events", { value = { id = 1 } })
      local errs = d:errors()
      assert.equal(1, #errs)
      assert.equal("process", errs[1].stage)
      assert.matches("needs a message key", errs[1].error, 1, true)
    end)

    it("runs a batch once per message, also when a row of it fails", function()
      local d = testing.driver(fixture("counter"))
      d:send_batch("events", {
        { key = "a", value = { id = 1 } },
        { key = "a", value = { id = 2, fail = true } },
        { key = "a", value = { id = 3 } },
      })
      assert.same({ { id = 1, n = 1, partition = 0 }, { id = 3, n = 2, partition = 0 } }, d:read_values("counts"))
      assert.equal(2, d:state("default", "a", "n"))
      local errs = d:errors()
      assert.equal(1, #errs)
      assert.equal(1, errs[1].offset)
      assert.equal("skip", errs[1].policy)
      assert.matches("counter%.lua:%d+: update: .*counter%.lua:%d+: cannot count event 2", errs[1].error)
      assert.same({}, d:errors())
    end)

    it("restores committed state after a restart", function()
      local d = testing.driver(fixture("counter"))
      d:send("events", "a", { id = 1 }, 5)
      d:send("events", "a", { id = 2 }, 6)
      d:read("counts")
      d:restart()
      d:send("events", "a", { id = 3 }, 7)
      assert.same({ { id = 3, n = 3, partition = 0 } }, d:read_values("counts"))
      assert.same({ id = 3, at = 7 }, d:state("default", "a", "last"))
    end)
  end)

  describe("on_error", function()
    it("skip: the row is recorded in d:errors() and the others go on", function()
      local d = testing.driver(fixture("errors"), { set = { on_error = "skip" } })
      d:send("readings", "k", { id = 1, bad = true })
      d:send("readings", "k", { id = 2 })
      assert.same({ { id = 2, ok = true } }, d:read_values("checked"))
      local errs = d:errors()
      assert.equal(1, #errs)
      local e = errs[1]
      assert.equal("readings", e.topic)
      assert.equal(0, e.partition)
      assert.equal(0, e.offset)
      assert.equal("k", e.key)
      assert.equal(1, e.value.id)
      assert.equal("process", e.stage)
      assert.equal("skip", e.policy)
      assert.matches("errors%.lua:13: update: .*errors%.lua:14: bad reading 1", e.error)
    end)

    it("skip: an output its topic cannot encode is an encode error of its row", function()
      local d = testing.driver(fixture("errors"), { set = { on_error = "skip" } })
      d:send("readings", "k", { id = 1, n = 2 })
      d:send("readings", "k", { id = 2, n = 2.5 })
      assert.same({ 2 }, d:read_values("ints"))
      assert.equal(2, #d:read("checked")) -- the row's other output was written before
      local errs = d:errors()
      assert.equal(1, #errs)
      assert.equal("encode", errs[1].stage)
      assert.equal("value for topic ints: cannot encode 2.5 as int: not an integer", errs[1].error)
    end)

    it("stop: send raises an error naming the record and the failure", function()
      local d = testing.driver(fixture("errors"))
      d:send("readings", "k", { id = 1 })
      local err = H.error_of(d.send, d, "readings", "k", { id = 2, bad = true })
      assert.matches("^readings%[0%]@1: process error: .*errors%.lua:14: bad reading 2 %(on_error = 'stop'%)", err)
      assert.equal("stop", d:errors()[1].policy)
      err = H.error_of(d.send, d, "readings", "k", { id = 3 })
      assert.matches("the app stopped on an error", err, 1, true)
      assert.matches("d:restart()", err, 1, true)
      d:restart()
      d:send("readings", "k", { id = 4 })
      assert.same({ { id = 1, ok = true }, { id = 4, ok = true } }, d:read_values("checked"))
    end)

    it("stop: the rows of a batch before the failing one are written", function()
      local d = testing.driver(fixture("errors"))
      H.error_of(d.send_batch, d, "readings", {
        { key = "k", value = { id = 1 } },
        { key = "k", value = { id = 2, bad = true } },
        { key = "k", value = { id = 3 } },
      })
      assert.same({ { id = 1, ok = true } }, d:read_values("checked"))
    end)

    it("dead-letter: the record goes to the dead-letter topic with the luastream.* headers", function()
      local d = testing.driver(fixture("errors"), { set = { on_error = "dead-letter" } })
      assert.equal("checker__dead-letter", d.spec.dead_letter)
      d:send("readings", { key = "k", value = { id = 1, bad = true }, timestamp = 77, headers = { trace = "x" } })
      d:send("readings", { key = "k", raw_value = "{not json" })
      local dl = d:read("checker__dead-letter")
      assert.equal(2, #dl)
      assert.equal("k", dl[1].key)
      assert.same({ id = 1, bad = true }, core.decode("json", dl[1].value)) -- the original bytes
      assert.equal(77, dl[1].timestamp)
      assert.equal("x", testing.header(dl[1], "trace"))
      assert.matches("bad reading 1", testing.header(dl[1], "luastream.error"), 1, true)
      assert.equal("process", testing.header(dl[1], "luastream.error.stage"))
      assert.equal("readings", testing.header(dl[1], "luastream.source.topic"))
      assert.equal("0", testing.header(dl[1], "luastream.source.partition"))
      assert.equal("0", testing.header(dl[1], "luastream.source.offset"))
      assert.equal("{not json", dl[2].value)
      assert.equal("decode", testing.header(dl[2], "luastream.error.stage"))
      assert.equal("1", testing.header(dl[2], "luastream.source.offset"))
      assert.matches("^value: ", testing.header(dl[2], "luastream.error"))
      assert.same({}, d:read_values("checked"))
    end)

    it("a function chooses the policy through rt.handle_error", function()
      local d = testing.driver(fixture("on_error_fn"))
      d:send("jobs", "k", { id = 1, policy = "skip" })
      d:send("jobs", "k", { id = 2, policy = "dead-letter" })
      d:send("jobs", { key = "k", raw_value = "[" })
      d:send("jobs", "k", { id = 4 })
      assert.same({ { id = 4 } }, d:read_values("done"))
      local dl = d:read("chooser__dead-letter")
      assert.equal(2, #dl)
      assert.equal("1", testing.header(dl[1], "luastream.source.offset"))
      assert.equal("2", testing.header(dl[2], "luastream.source.offset"))
      local errs = d:errors()
      assert.same({ "skip", "dead-letter", "dead-letter" }, { errs[1].policy, errs[2].policy, errs[3].policy })
      local err = H.error_of(d.send, d, "jobs", "k", { id = 5, policy = "stop" })
      assert.matches("jobs[0]@4: process error:", err, 1, true)
      assert.matches("(on_error = function)", err, 1, true)
    end)

    it("a failing on_error function stops, saying why", function()
      local d = testing.driver(fixture("on_error_fn"))
      local err
      H.capture_log(function()
        err = H.error_of(d.send, d, "jobs", "k", { id = 1, policy = "raise" })
      end)
      assert.matches("on_error function failed: .*cannot decide", err)
    end)
  end)

  describe("sources and the clock", function()
    it("runs sources as the clock passes their time, and feeds their records to the app", function()
      local d = testing.driver(fixture("ticker"), { start_ms = 1000 })
      assert.equal(1000, d:now())
      d:advance(50)
      assert.same({}, d:read("ticks"))
      d:advance(50)
      assert.same({ { n = 1, at = 1100, clock = 1100 } }, d:read_values("ticks"))
      d:advance(250)
      assert.equal(1350, d:now())
      local ticks = d:read("ticks")
      assert.same({ { n = 2, at = 1200, clock = 1200 }, { n = 3, at = 1300, clock = 1300 } },
        { ticks[1].value, ticks[2].value })
      assert.equal(1300, ticks[2].timestamp)
      assert.equal("tick", ticks[2].key)
      local tocks = d:read_values("tocks")
      assert.same({ 1100, 1200, 1300 }, { tocks[1].seen_at, tocks[2].seen_at, tocks[3].seen_at })
    end)

    it("gives ls.now_ms() the driver's clock while a step runs", function()
      local d = testing.driver(fixture("ticker"), { start_ms = 5000 })
      d:send("ticks", "manual", { n = 0 })
      assert.equal(5000, d:read_values("tocks")[1].seen_at)
      assert.equal(5000, d:read("ticks")[1].timestamp) -- sent without one: the clock
    end)

    it("records a failing source in d:errors() and keeps its timer", function()
      local d = testing.driver(fixture("failing_source"))
      d:advance(30)
      assert.same({ { call = 1 }, { call = 3 } }, d:read_values("out"))
      local errs = d:errors()
      assert.equal(1, #errs)
      assert.equal("source", errs[1].stage)
      assert.matches("failing_source%.lua:%d+: source 'out': .*sensor offline", errs[1].error)
    end)

    it("rejects a bad advance", function()
      local d = testing.driver(fixture("ticker"))
      assert.matches("expected a number of milliseconds", H.error_of(d.advance, d, -1), 1, true)
    end)
  end)

  describe("isolation", function()
    it("keeps drivers of one script apart", function()
      local a = testing.driver(fixture("counter"))
      local b = testing.driver(fixture("counter"))
      a:send("events", "k", { id = 1 })
      a:send("events", "k", { id = 2 })
      b:send("events", "k", { id = 3 })
      a:send("events", "k", { id = 4 })
      local ns = {}
      for j, v in ipairs(a:read_values("counts")) do ns[j] = v.n end
      assert.same({ 1, 2, 3 }, ns)
      assert.equal(3, a:state("default", "k", "n"))
      assert.equal(1, b:state("default", "k", "n"))
      assert.same({ { id = 3, n = 1, partition = 0 } }, b:read_values("counts"))
    end)

    it("gives each driver its own module-level variables", function()
      local a = testing.driver(fixture("ticker"))
      a:advance(200)
      local b = testing.driver(fixture("ticker"))
      b:advance(100)
      local ta = a:read_values("ticks")
      assert.same({ 1, 2 }, { ta[1].n, ta[2].n })
      assert.same({ { n = 1, at = 100, clock = 100 } }, b:read_values("ticks"))
    end)

    it("leaves the modules outside the drivers alone", function()
      local rt = require("luastream.runtime")
      local ls = require("luastream")
      local saved_path = package.path
      local before = {}
      for name, m in pairs(package.loaded) do before[name] = m end
      local d = testing.driver(fixture("counter"))
      d:send("events", "k", { id = 1 })
      assert.equal(rt, require("luastream.runtime"))
      assert.equal(ls, require("luastream"))
      assert.equal(saved_path, package.path)
      for name, m in pairs(package.loaded) do assert.equal(before[name], m, name) end -- nothing added or replaced
      assert.equal(H.rt, rt)
      -- the outer runtime still runs its own program
      H.load_source(H.header .. [[
        local app = ls.app{ name = "outer" }
        local sdf = app:dataframe(app:topic("in"))
        sdf.y = sdf.x + 1
        sdf:to_topic(app:topic("out"))
      ]])
      d:send("events", "k", { id = 2 })
      assert.same({ { x = 1, y = 2 } }, H.values({ { { x = 1 } } }))
      assert.equal(2, d:state("default", "k", "n"))
    end)

    it("runs the script in a Lua state of its own: its globals stay there", function()
      local path = H.write_script(H.header .. [[
leaked_from_script = (leaked_from_script or 0) + 1
local app = ls.app{ name = "globals" }
local sdf = app:dataframe(app:topic("in"))
sdf.seen = function() return leaked_from_script end
sdf:to_topic(app:topic("out"))
]], "globals.lua")
      local a = testing.driver(path)
      local b = testing.driver(path)
      assert.is_nil(rawget(_G, "leaked_from_script"))
      a:send("in", "k", { x = 1 })
      b:send("in", "k", { x = 1 })
      assert.equal(1, a:read_values("out")[1].seen)
      assert.equal(1, b:read_values("out")[1].seen)
    end)

    it("runs a script without its development simulator, or with it when asked", function()
      local crash = "../../examples/crash_detection.lua"
      local d = testing.driver(crash)
      assert.equal(0, #d.spec.sources)
      d:advance(1000)
      assert.same({}, d:read("crash-alerts"))
      local sim = testing.driver(crash, { dev_broker = true })
      assert.equal(1, #sim.spec.sources)
      sim:advance(100)
      local readings = sim:read("phone-data")
      assert.equal(20, #readings)
      assert.equal(100, readings[1].value.ts) -- the simulator reads the driver's clock
      assert.equal("phone-01", readings[1].key)
      sim:read("crash-alerts")
      sim:printed()
    end)
  end)
end)
