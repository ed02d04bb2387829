-- The contract between the Lua side and C: the Lua side (init.lua,
-- runtime.lua) defines the options, their defaults and the names they
-- accept; the spec it hands to C holds only resolved, canonical values with
-- every field set. Here: the names Lua accepts are the ones C's codec takes
-- (after Lua resolved the aliases), the names Lua refuses C refuses too, and
-- the spec is complete. tests/unit/test_spec.c does the same through
-- ls_spec_read (spec.c).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ls = require("luastream")
local core = H.core

local describe_real = H.real_core and describe or pending

-- The spec of a script whose app has options opts_src and whose topic "t"
-- has options topic_src (Lua source).
local function spec_with(opts_src, topic_src, cli)
  return H.load_source('local ls = require("luastream")\nlocal app = ls.app' .. opts_src ..
    '\nlocal t = app:topic("t", ' .. (topic_src or "nil") .. ')\napp:dataframe(t):to_topic(app:topic("out"))\n', cli)
end

local function sorted_keys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- Names no side may take: near misses of the real ones.
local REFUSED_FORMATS = { "", "JSON", "Json", "xml", "avro", "long", "float", "utf8", "json ", " int",
  "String", "INTEGER", "Str", "bool", "strings" }

-- A value each format can encode.
local SAMPLE = { json = { a = 1 }, string = "x", bytes = "x", msgpack = { 1 }, int = 7, double = 1.5 }

describe_real("formats: Lua and the C codec agree", function()
  it("knows a sample for every canonical format (this spec is up to date)", function()
    assert.same(sorted_keys(ls.FORMATS), sorted_keys(SAMPLE))
  end)

  it("puts every canonical name Lua accepts in the spec, and C encodes and decodes with it", function()
    for _, fmt in ipairs(sorted_keys(ls.FORMATS)) do
      local spec = spec_with("{}", '{ key = "' .. fmt .. '", value = "' .. fmt .. '" }')
      assert.same({ fmt, fmt }, { spec.inputs[1].key, spec.inputs[1].value })
      local bytes = core.encode(fmt, SAMPLE[fmt])
      assert.is_string(bytes)
      assert.is_not_nil(core.decode(fmt, bytes))
    end
  end)

  it("resolves the aliases in Lua; C takes only the canonical name", function()
    local n = 0
    for alias, canonical in pairs(ls.FORMAT_ALIASES) do
      n = n + 1
      assert.is_true(ls.FORMATS[canonical], alias)
      assert.is_nil(ls.FORMATS[alias], alias)
      local spec = spec_with("{}", '{ key = "' .. alias .. '", value = "' .. alias .. '" }')
      assert.same({ canonical, canonical }, { spec.inputs[1].key, spec.inputs[1].value })
      assert.same("unknown format '" .. alias .. "'", H.error_of(core.encode, alias, SAMPLE[canonical]))
      assert.same("unknown format '" .. alias .. "'", H.error_of(core.decode, alias, "x"))
    end
    assert.same(2, n) -- str and integer
  end)

  it("an alias and its canonical name declare the same topic", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local a = app:topic("in", { key = "str", value = "integer" })
assert(app:topic("in", { key = "string", value = "int" }) == a)
app:dataframe(a):to_topic(app:topic("out"))]])
    assert.same({ "string", "int" }, { spec.inputs[1].key, spec.inputs[1].value })
  end)

  it("refuses in C every name Lua refuses", function()
    for _, name in ipairs(REFUSED_FORMATS) do
      assert.is_nil(ls._format(name), name)
      local err = H.error_of(spec_with, "{}", '{ value = "' .. name .. '" }')
      assert.matches("app:topic: option 'value' must be one of", err, 1, true)
      assert.same("unknown format '" .. name .. "'", H.error_of(core.encode, name, "x"))
      assert.same("unknown format '" .. name .. "'", H.error_of(core.decode, name, "x"))
    end
  end)
end)

describe("the spec handed to C", function()
  it("sets every field, with the defaults resolved in Lua", function()
    local spec = spec_with("{ name = 'c' }")
    for _, k in ipairs({ "name", "guarantee", "commit_interval", "commit_every", "offset_reset", "state_dir",
      "batch_size", "batch_ms", "wait_for_topics", "on_error", "kafka", "inputs", "outputs", "sources",
      "stores", "idle_check_ms", "batch_time_limit", "heap_limit_mb", "join_wait" }) do
      assert.is_not_nil(spec[k], k)
    end
    assert.same({ name = "t", key = "bytes", value = "json", arrays = "table", tombstones = false, global = false },
      spec.inputs[1])
    assert.is_false(spec.wait_for_topics)
  end)

  it("names each store's changelog topic", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "counter" }
local sdf = app:dataframe(app:topic("in"))
sdf = sdf:update(function(row, state) end, { stateful = true })
sdf = sdf:update(function(row, state) end, { stateful = true, store = "totals" })
sdf:to_topic(app:topic("out"))]])
    assert.same({
      { name = "default", topic = "in", topics = { "in" }, changelog = "counter__default__changelog", source = false,
        sweep = true },
      { name = "totals", topic = "in", topics = { "in" }, changelog = "counter__totals__changelog", source = false,
        sweep = true },
    }, spec.stores)
  end)

  it("gives an app:table's store its topic as changelog, and no changelog topic of its own", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "enrich" }
local owners = app:table(app:topic("owners", { key = "string" }))
app:dataframe(app:topic("in", { key = "string" })):join_table(owners):to_topic(app:topic("out"))]])
    assert.same({
      { name = "__table__owners", topic = "owners", topics = { "owners", "in" }, changelog = "owners", source = true,
        sweep = true },
    }, spec.stores)
    assert.same(0, spec.join_wait)
  end)

  it("names the changelog after --name", function()
    local spec = H.load_source([[
local ls = require("luastream")
local app = ls.app{ name = "counter" }
app:dataframe(app:topic("in")):update(function(row, state) end, { stateful = true }):to_topic(app:topic("out"))]],
      { name = "other" })
    assert.same("other__default__changelog", spec.stores[1].changelog)
  end)

  it("refuses names that make an internal topic longer than Kafka allows", function()
    local long = string.rep("a", 240)
    local err = H.error_of(H.load_source, [[
local ls = require("luastream")
local app = ls.app{ name = "]] .. long .. [[" }
app:dataframe(app:topic("in")):update(function(row, state) end, { stateful = true }):to_topic(app:topic("out"))]])
    assert.matches("app.lua:3: state store 'default': its changelog topic '" .. long ..
      "__default__changelog' would be longer than 249 characters", err, 1, true)
    err = H.error_of(spec_with, '{ name = "' .. long .. '", on_error = "dead-letter" }')
    assert.matches("app.lua:2: ls.app: the dead-letter topic '" .. long .. "__dead-letter' would be longer than 249",
      err, 1, true)
    assert.same(long .. "x", spec_with('{ name = "' .. long .. '", on_error = "dead-letter", dead_letter = "' ..
      long .. 'x" }').dead_letter)
  end)

  it("carries the wait C uses for batch_ms: whole milliseconds, at least 1", function()
    assert.same(1, spec_with("{ batch_ms = 0 }").batch_ms)
    assert.same(1, spec_with("{ batch_ms = 0.5 }").batch_ms)
    assert.same(2, spec_with("{ batch_ms = 2.9 }").batch_ms)
    assert.same(100, spec_with("{}").batch_ms)
    assert.same(7, spec_with("{}", nil, { set = { batch_ms = "7.5" } }).batch_ms)
  end)

  it("refuses numbers C cannot hold", function()
    assert.matches("option 'batch_size' must be at most 2147483647",
      H.error_of(spec_with, "{ batch_size = 2 ^ 31 }"), 1, true)
    assert.matches("option 'batch_ms' must be less than 2147483648 milliseconds",
      H.error_of(spec_with, "{ batch_ms = 2 ^ 31 }"), 1, true)
    assert.matches("option 'commit_every' must be at most 2^53", H.error_of(spec_with, "{ commit_every = 2 ^ 60 }"),
      1, true)
    assert.same(2147483647, spec_with("{ batch_size = 2 ^ 31 - 1 }").batch_size)
  end)

  it("writes the on_error policy as the name C maps, and a function as 'function'", function()
    for _, p in ipairs(sorted_keys(ls.ON_ERROR_POLICIES)) do
      assert.same(p, spec_with('{ on_error = "' .. p .. '" }').on_error)
    end
    assert.same("function", spec_with("{ on_error = function() end }").on_error)
  end)

  it("writes the kafka properties as strings", function()
    local spec = spec_with('{ kafka = { ["linger.ms"] = 5, ["enable.idempotence"] = true, ["x.y"] = 0.5, ' ..
      '["client.id"] = "c" } }')
    assert.same({ ["linger.ms"] = "5", ["enable.idempotence"] = "true", ["x.y"] = "0.5", ["client.id"] = "c" },
      spec.kafka)
  end)

  it("refuses an empty --state-dir", function()
    assert.same("--state-dir: must not be empty", H.error_of(spec_with, "{}", nil, { state_dir = "" }))
  end)
end)
