local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local rt = H.rt
local ffi = require("ffi")

local CRASH = [[
local ls = require("luastream")

local app = ls.app{ name = "crash-detector" }

local phones = app:topic("phone-data", { value = "json", key = "string", timestamp = "ts" })
local alerts = app:topic("crash-alerts", { value = "json" })

local sdf = app:dataframe(phones)
sdf.dG = sdf.prev - 0
sdf = sdf:update(function(row, msg) row.seen = true end)
sdf = sdf[{ "device", "ts", "gX", "gY", "gZ", "dG" }]
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf = sdf[ls.abs(sdf.gTotal - 9.81):gt(3)]
sdf:to_topic(alerts)
]]

local function row(i, extra)
  local r = { device = "phone-" .. (i % 4), ts = 1000 + i, gX = 0, gY = 0, gZ = 9.81, prev = 0 }
  for k, v in pairs(extra or {}) do r[k] = v end
  return { r, key = r.device, p = i % 4, off = i }
end

describe("rt.load", function()
  it("returns the spec with every option and the topic tables", function()
    local spec = H.load_source(CRASH, {}, "crash.lua")
    assert.same("crash-detector", spec.name)
    assert.same("at-least-once", spec.guarantee)
    assert.same(5.0, spec.commit_interval)
    assert.same(0, spec.commit_every)
    assert.same("earliest", spec.offset_reset)
    assert.same("state", spec.state_dir)
    assert.same(1000, spec.batch_size)
    assert.same(100, spec.batch_ms)
    assert.same("stop", spec.on_error)
    assert.is_nil(spec.dead_letter)
    assert.same({}, spec.kafka)
    assert.same({ { name = "phone-data", key = "string", value = "json", arrays = "table", tombstones = false,
      global = false } },
      spec.inputs)
    assert.same({ { name = "crash-alerts", key = "bytes", value = "json" } }, spec.outputs)
    assert.same({}, spec.sources)
    assert.equal(spec, rt.spec)
  end)

  it("raises a syntax error starting with file:line", function()
    local path = H.write_script("local ls = require('luastream')\nlocal x = = 1\n", "bad.lua")
    local err = H.error_of(rt.load, path, {})
    assert.same(path .. ":2:", err:sub(1, #path + 3))
  end)

  it("raises a runtime error at load starting with file:line", function()
    local path = H.write_script("local ls = require('luastream')\n\nlocal x = nil + 1\n", "bad2.lua")
    local err = H.error_of(rt.load, path, {})
    assert.same(path .. ":3: attempt to perform arithmetic on a nil value", err)
    path = H.write_script("error({})\n", "bad3.lua")
    err = H.error_of(rt.load, path, {})
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ":1: %(error object is a table value", err)
  end)

  it("names a missing file", function()
    local err = H.error_of(rt.load, H.tmpdir() .. "/nope.lua", {})
    assert.same(H.tmpdir() .. "/nope.lua: cannot open the script (No such file or directory)", err)
  end)

  it("puts the script's directory on package.path", function()
    H.write_script("return { answer = 42 }\n", "sibling_mod_for_spec.lua")
    local spec = H.load_source([[
local ls = require("luastream")
local m = require("sibling_mod_for_spec")
local app = ls.app{ name = "n" .. m.answer }
app:dataframe(app:topic("in")):to_topic(app:topic("out"))]])
    assert.same("n42", spec.name)
  end)

  it("requires an app and something to run", function()
    local err = H.error_of(H.load_source, "local x = 1\n", {}, "noapp.lua")
    assert.same(H.tmpdir() .. "/noapp.lua: the script declares no app (local app = ls.app{ ... })", err)
    err = H.error_of(H.load_source, "local ls = require('luastream')\nlocal app = ls.app{}\n", {}, "empty.lua")
    assert.same(H.tmpdir() .. "/empty.lua:2: ls.app: nothing to run: declare app:dataframe(topic) " ..
      "or app:source(topic, fn)", err)
  end)

  it("applies cli overrides, converting --set strings to the option's type", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "a", commit_interval = 1,
  kafka = { ["fetch.min.bytes"] = 10, ["enable.idempotence"] = true } }
app:dataframe(app:topic("in")):to_topic(app:topic("out"))]], {
      name = "b", state_dir = "/tmp/st", broker = "h:9092",
      set = { commit_interval = "2.5", batch_size = "10", on_error = "skip", ["kafka.linger.ms"] = "5",
        guarantee = "exactly-once" },
    })
    assert.same("b", spec.name)
    assert.same("/tmp/st", spec.state_dir)
    assert.same("h:9092", spec.broker)
    assert.same(2.5, spec.commit_interval)
    assert.same(10, spec.batch_size)
    assert.same("skip", spec.on_error)
    assert.same("exactly-once", spec.guarantee)
    assert.same({ ["fetch.min.bytes"] = "10", ["enable.idempotence"] = "true", ["linger.ms"] = "5" }, spec.kafka)
  end)

  it("rejects bad --set values", function()
    local src = 'local ls = require("luastream")\nlocal app = ls.app{}\n' ..
      'app:dataframe(app:topic("in")):to_topic(app:topic("out"))\n'
    assert.same("--set comit_interval=1: unknown app option 'comit_interval' (did you mean 'commit_interval'?)",
      H.error_of(H.load_source, src, { set = { comit_interval = "1" } }))
    assert.same("--set batch_size=ten: expected a number",
      H.error_of(H.load_source, src, { set = { batch_size = "ten" } }))
    assert.same("--set guarantee=maybe: option 'guarantee' must be one of 'at-least-once', 'exactly-once'",
      H.error_of(H.load_source, src, { set = { guarantee = "maybe" } }))
  end)

  it("accepts a function that declares the app (for tests)", function()
    local spec = rt.load(function()
      local ls = require("luastream")
      local app = ls.app{ name = "fn-app" }
      app:dataframe(app:topic("in")):to_topic(app:topic("out"))
    end)
    assert.same("fn-app", spec.name)
  end)
end)

describe("rt.run_batch", function()
  before_each(function()
    H.load_source(CRASH, {}, "crash.lua")
  end)

  it("runs the pipeline and fills the outputs", function()
    local outs, nout = H.run({ row(1), row(2, { gX = 10 }), row(3, { gZ = 0 }) })
    assert.same(2, nout)
    assert.same({ device = "phone-2", ts = 1002, gX = 10, gY = 0, gZ = 9.81, dG = 0,
      gTotal = math.sqrt(100 + 9.81 ^ 2) }, outs[1].val)
    assert.same("phone-2", outs[1].key)
    assert.same("crash-alerts", outs[1].topic)
    assert.same(1002, outs[1].ts)
    assert.same(2, outs[1].row)
    assert.is_nil(outs[1].hdr)
    assert.same(3, outs[2].row)
    assert.same(1, rt.out_topic[1])
  end)

  it("runs only rows first..last", function()
    local n, meta = H.feed({ row(1, { gX = 10 }), row(2, { gX = 10 }), row(3, { gX = 10 }) })
    assert.same(1, rt.run_batch(n, meta, 2, 2))
    assert.same(2, rt.out_row[1])
    assert.same(2, rt.run_batch(n, meta, 2))
    assert.same({ 2, 3 }, { rt.out_row[1], rt.out_row[2] })
  end)

  it("clears outputs past nout", function()
    H.run({ row(1, { gX = 10 }), row(2, { gX = 10 }), row(3, { gX = 10 }) })
    local _, nout = H.run({ row(1, { gX = 10 }) })
    assert.same(1, nout)
    assert.is_nil(rt.out_val[2]); assert.is_nil(rt.out_val[3])
    assert.is_nil(rt.out_topic[2]); assert.is_nil(rt.out_row[3])
  end)

  it("maps an expression error to the script line of its step", function()
    local err = H.error_of(H.run, { row(1), row(2, { gX = false }) })
    assert.same(H.tmpdir() .. "/crash.lua:12: column 'gTotal': attempt to perform arithmetic on " ..
      "field 'gX' (a boolean value)", err)
    err = H.error_of(H.run, { row(1, { prev = "x" }) })
    assert.same(H.tmpdir() .. "/crash.lua:9: column 'dG': attempt to perform arithmetic on " ..
      "field 'prev' (a string value)", err)
  end)

  it("maps errors correctly once the loop is compiled", function()
    local list = {}
    for i = 1, 20000 do list[i] = row(i) end
    list[20001] = row(20001, { gY = "bad" })
    local err = H.error_of(H.run, list)
    assert.same(H.tmpdir() .. "/crash.lua:12: column 'gTotal': attempt to perform arithmetic on " ..
      "field 'gY' (a string value)", err)
    err = H.error_of(H.run, { row(1, { gTotal = 1, gX = { } }) })
    assert.matches("crash.lua:12: column 'gTotal'", err, 1, true)
  end)

  it("clears the outputs of a failed batch", function()
    local err = H.error_of(H.run, { row(1, { gX = 10 }), row(2, { gX = "x" }) })
    assert.is_string(err)
    assert.is_nil(rt.out_val[1])
  end)

  it("keeps the location of an error inside a user function", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
local function check(row)
  if row.bad then error("bad row " .. row.bad) end
  return row
end
sdf = sdf:apply(check)
local b = sdf:apply(function(row) return { row } end, { expand = true })
b:update(function(row) local x = row.nope.deeper end)
b:to_topic(app:topic("out"))
sdf:filter(function(row) error({ code = 1 }) end):to_topic(app:topic("out"))
]])
    local p = H.tmpdir() .. "/app.lua"
    assert.same(p .. ":8: apply: " .. p .. ":5: bad row 7", H.error_of(H.run, { { { bad = 7 } } }))
    local err = H.error_of(H.run, { { { nope = false } } })
    assert.same(p .. ":10: update: " .. p .. ":10: attempt to index field 'nope' (a boolean value)", err)
    err = H.error_of(H.run, { { { nope = {} } } })
    assert.matches("^" .. p:gsub("%p", "%%%0") .. ":12: filter: %(error object is a table value", err)
  end)

  it("does not apply in-place steps twice when a failed batch is replayed row by row", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in"))
sdf.n = sdf.n + 1
sdf:update(function(row) row.seen = (row.seen or 0) + 1 end)
sdf:to_topic(app:topic("out"))
sdf:to_topic(app:topic("out2"))]])
    local n, meta = H.feed({ { { n = 1 } }, { { n = 2 } }, { { n = "x" } }, { { n = 4 } } })
    assert.is_string(H.error_of(rt.run_batch, n, meta, 1, n))
    local got = {}
    for r = 1, n do
      local ok, nout = pcall(rt.run_batch, n, meta, r, r)
      if ok then
        for _, o in ipairs(H.outputs(nout)) do
          got[#got + 1] = { o.row, o.topic, o.val.n, o.val.seen }
        end
      else
        got[#got + 1] = { r, "error" }
      end
    end
    assert.same({ { 1, "out", 2, 1 }, { 1, "out2", 2, 1 }, { 2, "out", 3, 1 }, { 2, "out2", 3, 1 },
      { 3, "error" }, { 4, "out", 5, 1 }, { 4, "out2", 5, 1 } }, got)
    -- a new batch with the same row table runs normally
    local n2, meta2 = H.feed({ { { n = 10 } } })
    assert.same(2, rt.run_batch(n2, meta2, 1, 1))
    assert.same({ n = 11, seen = 1 }, rt.out_val[1])
  end)

  it("knows the failing row from the loop's own record, across topics and once the loop is compiled", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local a, b = app:topic("a"), app:topic("b")
local out = app:topic("out")
local sa = app:dataframe(a)
sa.n = sa.n + 1
sa:to_topic(out)
local sb = app:dataframe(b)
sb.n = sb.n * 2
sb:to_topic(out)
sb:to_topic(out)]])
    local list = {}
    for i = 1, 3000 do list[i] = { { n = i }, topic = i <= 2000 and 1 or 2 } end
    list[2500][1].n = "x"
    local n, meta = H.feed(list)
    assert.matches("app.lua:9: column 'n': attempt to perform arithmetic", H.error_of(rt.run_batch, n, meta), 1, true)
    -- the rows before the failing one are replayed from the failed batch's outputs, not run again
    for _, r in ipairs({ 1, 2000, 2001, 2499 }) do
      local nout = rt.run_batch(n, meta, r, r)
      local want = r <= 2000 and r + 1 or 2 * r
      assert.same(r <= 2000 and 1 or 2, nout)
      assert.same({ want, r }, { rt.out_val[1].n, rt.out_row[1] })
      assert.same(want, list[r][1].n)
    end
    assert.matches("app.lua:9: column 'n'", H.error_of(rt.run_batch, n, meta, 2500, 2500), 1, true)
    assert.same(2, rt.run_batch(n, meta, 2501, 2501))
    assert.same(5002, rt.out_val[1].n)
  end)

  it("dispatches rows to the pipeline of their topic", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local a, b = app:topic("a"), app:topic("b")
local out = app:topic("out")
local sa = app:dataframe(a)
sa.from = "a"
sa:to_topic(out)
local sb = app:dataframe(b)
sb.from = "b"
sb:to_topic(out)
sb:to_topic(a)]])
    assert.same({ "a", "b" }, { spec.inputs[1].name, spec.inputs[2].name })
    assert.same({ "out", "a" }, { spec.outputs[1].name, spec.outputs[2].name })
    local outs = H.run({ { { n = 1 }, topic = 1 }, { { n = 2 }, topic = 2 }, { { n = 3 }, topic = 2 },
      { { n = 4 }, topic = 1 } })
    local got = {}
    for j, o in ipairs(outs) do got[j] = o.val.from .. o.val.n .. ">" .. o.topic .. "@" .. o.row end
    assert.same({ "a1>out@1", "b2>out@2", "b2>a@2", "b3>out@3", "b3>a@3", "a4>out@4" }, got)
    local n, meta = H.feed({ { { n = 1 }, topic = 3 } })
    assert.same("run_batch: row 1 has topic id 3, which is not in spec.inputs (1..2)",
      H.error_of(rt.run_batch, n, meta))
  end)

  it("accepts a pointer to ls_meta_t", function()
    local n, meta = H.feed({ row(1, { gX = 10 }) })
    local ptr = ffi.cast("ls_meta_t *", meta)
    assert.same(1, rt.run_batch(n, ptr))
  end)
end)

describe("rt.run_source", function()
  local SRC = [[
local ls = require("luastream")
local app = ls.app{}
local phones = app:topic("phone-data", { key = "string" })
local n = 0
app:source(phones, function(emit, now)
  n = n + 1
  emit({ n = n }, "phone-1")
  emit({ n = n, at = now }, nil, 12345)
  if n == 3 then error("source broke") end
  if n == 4 then emit(nil) end
end, { every = 250 })
app:source(phones, function(emit) _G.saved_emit = emit end)
local sdf = app:dataframe(phones)
sdf:to_topic(app:topic("seen"))
]]

  it("emits values to the source's topic", function()
    local spec = H.load_source(SRC)
    assert.same({ { every = 250, topic = "phone-data", output = 1 },
      { every = 1000, topic = "phone-data", output = 1 } }, spec.sources)
    assert.same("phone-data", spec.inputs[1].name)
    assert.same("phone-data", spec.outputs[1].name)
    assert.same("seen", spec.outputs[2].name)
    local nout = rt.run_source(1, 5000)
    assert.same(2, nout)
    local outs = H.outputs(nout)
    assert.same({ val = { n = 1 }, key = "phone-1", topic = "phone-data", ts = 5000, row = 0 }, outs[1])
    assert.same({ val = { n = 1, at = 5000 }, topic = "phone-data", ts = 12345, row = 0 }, outs[2])
  end)

  it("names the source in errors", function()
    H.load_source(SRC)
    rt.run_source(1, 1)
    rt.run_source(1, 2)
    local p = H.tmpdir() .. "/app.lua"
    assert.same(p .. ":5: source 'phone-data': " .. p .. ":9: source broke", H.error_of(rt.run_source, 1, 3))
    assert.is_nil(rt.out_val[1])
    assert.same(p .. ":5: source 'phone-data': " .. p .. ":10: emit: value is nil (use ls.null for a JSON null)",
      H.error_of(rt.run_source, 1, 4))
  end)

  it("refuses emit outside the source function", function()
    H.load_source(SRC)
    assert.same(0, rt.run_source(2, 1))
    assert.matches("emit: called outside its source function", H.error_of(_G.saved_emit, { 1 }), 1, true)
    _G.saved_emit = nil
    assert.same("run_source: no source 9 (spec.sources has 2)", H.error_of(rt.run_source, 9, 1))
  end)
end)

describe("rt.handle_error", function()
  local function with_on_error(fn_src)
    return H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "h", on_error = ]] .. fn_src .. [[ }
app:dataframe(app:topic("in")):to_topic(app:topic("out"))]])
  end

  it("returns a string policy as is", function()
    local spec = with_on_error('"skip"')
    assert.same("skip", spec.on_error)
    assert.same("skip", rt.handle_error("e", {}, {}))
    spec = with_on_error('"dead-letter"')
    assert.same("h__dead-letter", spec.dead_letter)
    assert.same("dead-letter", rt.handle_error("e", {}, {}))
  end)

  it("calls the function and maps its answer", function()
    local spec = with_on_error("function(err, row, msg) _G.seen_err = { err, row, msg }; return row.answer end")
    assert.same("function", spec.on_error)
    assert.same("h__dead-letter", spec.dead_letter)
    local r, msg = { answer = "skip" }, { key = "k" }
    assert.same("skip", rt.handle_error("boom", r, msg))
    assert.same({ "boom", r, msg }, _G.seen_err)
    assert.same("dead-letter", rt.handle_error("e", { answer = "dead-letter" }, {}))
    assert.same("stop", rt.handle_error("e", { answer = "stop" }, {}))
    assert.same("skip", rt.handle_error("e", { answer = true }, {}))
    assert.same("stop", rt.handle_error("e", { answer = false }, {}))
    assert.same("stop", rt.handle_error("e", {}, {}))
    local logged = H.capture_log(function()
      local policy, m = rt.handle_error("e", { answer = "retry" }, {})
      assert.same("stop", policy)
      assert.same(H.tmpdir() .. "/app.lua:2: on_error function returned 'retry'; expected 'skip', 'stop' " ..
        "or 'dead-letter' (stopping)", m)
    end)
    assert.same("error", logged[1][1])
    _G.seen_err = nil
  end)

  it("stops when the function fails", function()
    with_on_error("function(err) error('handler broke') end")
    H.capture_log(function()
      local policy, m = rt.handle_error("first", {}, {})
      assert.same("stop", policy)
      local p = H.tmpdir() .. "/app.lua"
      assert.same(p .. ":2: on_error function failed: " .. p .. ":2: handler broke (while handling: first)", m)
    end)
  end)
end)
