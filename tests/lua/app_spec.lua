local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")

local REST = '\napp:dataframe(app:topic("in")):to_topic(app:topic("out"))\n'

-- Loads a script whose line 3 declares the app with the given options.
local function app_with(opts_src, cli, name)
  return H.load_source('local ls = require("luastream")\n\nlocal app = ls.app' .. opts_src .. REST, cli, name)
end

local function app_error(opts_src)
  return H.error_of(app_with, opts_src)
end

describe("ls.app options", function()
  it("has the documented defaults", function()
    local spec = app_with("{}", {}, "my-pipeline.lua")
    assert.same("my-pipeline", spec.name)
    assert.same("at-least-once", spec.guarantee)
    assert.same(5.0, spec.commit_interval)
    assert.same(0, spec.commit_every)
    assert.same("earliest", spec.offset_reset)
    assert.same("state", spec.state_dir)
    assert.same("stop", spec.on_error)
    assert.is_nil(spec.dead_letter)
    assert.same({}, spec.kafka)
    assert.same(1000, spec.batch_size)
    assert.same(100, spec.batch_ms)
  end)

  it("accepts every option", function()
    local spec = app_with([[{
  name = "x.y_z-1", broker = "k1:9092,k2:9092", guarantee = "exactly-once", commit_interval = 0.5,
  commit_every = 100, offset_reset = "latest", state_dir = "/var/lib/st", on_error = "dead-letter",
  dead_letter = "dlq", kafka = { ["security.protocol"] = "SASL_SSL" }, batch_size = 5, batch_ms = 0 }]])
    -- batch_ms = 0: the spec carries the wait C uses, whole milliseconds, at least 1
    assert.same({ "x.y_z-1", "k1:9092,k2:9092", "exactly-once", 0.5, 100, "latest", "/var/lib/st",
      "dead-letter", "dlq", "SASL_SSL", 5, 1 },
      { spec.name, spec.broker, spec.guarantee, spec.commit_interval, spec.commit_every, spec.offset_reset,
        spec.state_dir, spec.on_error, spec.dead_letter, spec.kafka["security.protocol"], spec.batch_size,
        spec.batch_ms })
  end)

  it("names the script line for an unknown option", function()
    assert.same(H.tmpdir() .. "/app.lua:3: ls.app: unknown option 'comit_interval' (did you mean 'commit_interval'?)",
      app_error("{ comit_interval = 1 }"))
    assert.same(H.tmpdir() .. "/app.lua:3: ls.app: unknown option 'zzz'", app_error("{ zzz = 1 }"))
    assert.same(H.tmpdir() .. "/app.lua:3: ls.app: unknown option '1'", app_error('{ "name" }'))
  end)

  it("names the script line for a wrong type or value", function()
    local p = H.tmpdir() .. "/app.lua:3: ls.app: "
    assert.same(p .. "option 'commit_interval' must be a number, got string", app_error('{ commit_interval = "5" }'))
    assert.same(p .. "option 'name' must be a string, got number", app_error("{ name = 5 }"))
    assert.same(p .. "option 'name' must be 1-249 characters of A-Z a-z 0-9 . _ - (got 'a b')",
      app_error('{ name = "a b" }'))
    assert.same(p .. "option 'guarantee' must be one of 'at-least-once', 'exactly-once' (got 'once')",
      app_error('{ guarantee = "once" }'))
    assert.same(p .. "option 'offset_reset' must be one of 'earliest', 'latest' (got 'now')",
      app_error('{ offset_reset = "now" }'))
    assert.same(p .. "option 'on_error' must be one of 'dead-letter', 'skip', 'stop' or a function(err, row, msg) " ..
      "(got 'ignore')", app_error('{ on_error = "ignore" }'))
    assert.same(p .. "option 'on_error' must be a string or a function, got boolean", app_error("{ on_error = true }"))
    assert.same(p .. "option 'commit_interval' must be a positive number of seconds (got 0)",
      app_error("{ commit_interval = 0 }"))
    assert.same(p .. "option 'commit_every' must be a whole number >= 0 (got 1.5)", app_error("{ commit_every = 1.5 }"))
    assert.same(p .. "option 'batch_size' must be a whole number >= 1 (got 0)", app_error("{ batch_size = 0 }"))
    assert.same(p .. "option 'batch_ms' must be a number of milliseconds >= 0 (got -1)", app_error("{ batch_ms = -1 }"))
    assert.same(p .. "option 'kafka' must be a table, got string", app_error('{ kafka = "x" }'))
    assert.matches("option 'kafka' property 'a' must be a string, number or boolean, got table",
      app_error("{ kafka = { a = {} } }"), 1, true)
    assert.same(p .. "option 'broker' must not be empty (got '')", app_error('{ broker = "" }'))
    assert.same(p .. "expected a table of options, got string", app_error('("x")'))
  end)

  it("defaults dead_letter when on_error needs it", function()
    assert.same("t__dead-letter", app_with('{ name = "t", on_error = "dead-letter" }').dead_letter)
    assert.same("t__dead-letter", app_with('{ name = "t", on_error = function() return "skip" end }').dead_letter)
    assert.is_nil(app_with('{ name = "t", on_error = "skip" }').dead_letter)
  end)

  it("allows one app per script", function()
    local err = H.error_of(H.load_source, 'local ls = require("luastream")\nls.app{}\nls.app{}\n')
    assert.same(H.tmpdir() .. "/app.lua:3: ls.app: only one app per script (the first was declared at " ..
      H.tmpdir() .. "/app.lua:2)", err)
  end)

  it("resolves the broker: --broker, then the option, then LUASTREAM_BROKER", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ broker = "opt:1" }
_G.dev = app:is_dev_broker()
app:dataframe(app:topic("in")):to_topic(app:topic("out"))]], { broker = "cli:1" })
    assert.same("cli:1", spec.broker)
    assert.is_false(_G.dev)
    spec = app_with('{ broker = "opt:1" }')
    assert.same("opt:1", spec.broker)
    spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{}
_G.dev = app:is_dev_broker()
app:dataframe(app:topic("in")):to_topic(app:topic("out"))]])
    local env = os.getenv("LUASTREAM_BROKER")
    if env == nil or env == "" then
      assert.is_nil(spec.broker)
      assert.is_true(_G.dev)
    else
      assert.same(env, spec.broker)
      assert.is_false(_G.dev)
    end
    _G.dev = nil
  end)

  it("accepts app:run()", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "r" }
app:dataframe(app:topic("in")):to_topic(app:topic("out"))
app:run()]])
    assert.same("r", spec.name)
  end)
end)

describe("app:topic", function()
  local function topic_error(args)
    return H.error_of(H.load_source, 'local ls = require("luastream")\nlocal app = ls.app{}\nlocal t = app:topic' ..
      args .. REST)
  end

  it("defaults key to bytes and value to json", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local t = app:topic("in", { key = "string", value = "msgpack" })
local sdf = app:dataframe(t)
sdf:to_topic(app:topic("o1"))
sdf:to_topic(app:topic("o2", { key = "int", value = "double" }))
sdf:to_topic(app:topic("o3", { value = "string" }))
sdf:to_topic(app:topic("o4", { value = "bytes" }))]])
    assert.same({ name = "in", key = "string", value = "msgpack", arrays = "table", tombstones = false,
      global = false },
      spec.inputs[1])
    assert.same({ { name = "o1", key = "bytes", value = "json" }, { name = "o2", key = "int", value = "double" },
      { name = "o3", key = "bytes", value = "string" }, { name = "o4", key = "bytes", value = "bytes" } }, spec.outputs)
  end)

  it("validates names, formats and options", function()
    local p = H.tmpdir() .. "/app.lua:3: app:topic: "
    assert.same(p .. "unknown option 'valeu' (did you mean 'value'?)", topic_error('("a", { valeu = "json" })'))
    assert.same(p .. "option 'value' must be one of 'bytes', 'double', 'int', 'json', 'msgpack', 'string', got 'xml'",
      topic_error('("a", { value = "xml" })'))
    assert.same(p .. "option 'key' must be one of 'bytes', 'double', 'int', 'json', 'msgpack', 'string', got number",
      topic_error('("a", { key = 1 })'))
    assert.same(p .. "topic name must be 1-249 characters of A-Z a-z 0-9 . _ -, got 'a b'", topic_error('("a b")'))
    assert.same(p .. "topic name must be 1-249 characters of A-Z a-z 0-9 . _ -, got nil", topic_error("()"))
    assert.same(p .. "option 'timestamp' must be a field name or a function(row, msg), got number",
      topic_error('("a", { timestamp = 5 })'))
  end)

  it("returns the same topic for the same name and options; rejects different options", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local a = app:topic("in")
assert(app:topic("in") == a)
app:dataframe(a):to_topic(app:topic("out"))]])
    assert.same(1, #spec.inputs)
    local err = H.error_of(H.load_source, [[
local ls = require("luastream")
local app = ls.app{}
local a = app:topic("in")
local b = app:topic("in", { value = "string" })]])
    assert.same(H.tmpdir() .. "/app.lua:4: app:topic: topic 'in' was already declared at " .. H.tmpdir() ..
      "/app.lua:3 with different options", err)
  end)
end)

describe("app:source and app:dataframe", function()
  it("validate their arguments", function()
    local function err_of(line)
      return H.error_of(H.load_source, 'local ls = require("luastream")\nlocal app = ls.app{}\n' ..
        'local t = app:topic("t")\n' .. line .. "\n")
    end
    local p = H.tmpdir() .. "/app.lua:4: "
    assert.same(p .. "app:source: expected a function(emit), got nil", err_of("app:source(t)"))
    assert.same(p .. "app:source: option 'every' must be a positive number of milliseconds, got 0",
      err_of("app:source(t, print, { every = 0 })"))
    assert.same(p .. "app:source: unknown option 'evry' (did you mean 'every'?)",
      err_of("app:source(t, print, { evry = 1 })"))
    assert.same(p .. "app:source: expected a topic from app:topic(), got the string 't'",
      err_of('app:source("t", print)'))
    assert.same(p .. "app:dataframe: expected a topic from app:topic(), got nil", err_of("app:dataframe()"))
    assert.same(p .. "app:dataframe() must be called with ':' on the app", err_of("app.dataframe(t)"))
  end)
end)
