-- luastream: the module a pipeline script requires.
--
--   local ls = require("luastream")
--   local app = ls.app{ name = "crash-detector" }
--   local sdf = app:dataframe(app:topic("phone-data", { key = "string" }))
--   sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
--
-- The script only declares; luastream.runtime compiles and runs what it
-- declared once the script's main chunk returns. See docs/api.md.
local core = require("luastream.core")
local util = require("luastream.util")
local expr = require("luastream.expr")
local dataframe = require("luastream.dataframe")

local ls = {}

ls.version = core.version()
ls.null = core.null
ls.array = core.array

-- ls.now_ms(): wall-clock time in milliseconds since the epoch (for sources).
ls.now_ms = core.now_ms

for name, fn in pairs(expr.functions) do ls[name] = fn end

-- ls.lit(value): a constant as an expression.
ls.lit = expr.lit

-- ls.col("x") or ls.col("pos", "lat"): a column of whatever row the
-- expression is used on.
function ls.col(...)
  local n = select("#", ...)
  if n == 0 then util.fail("ls.col: expected a column name") end
  local path = {}
  for j = 1, n do
    local p = select(j, ...)
    if type(p) ~= "string" and type(p) ~= "number" then
      util.fail("ls.col: column names must be strings, got " .. type(p))
    end
    path[j] = p
  end
  return expr.col(path, nil)
end

ls.is_expr = expr.is_expr

ls.vec = require("luastream.vec")  -- FFI-backed double arrays, docs/vec.md
ls.agg = require("luastream.window").agg -- docs/api.md, "Windows"
ls.model = require("luastream.model") -- trained models in the pipeline, docs/models.md

---------------------------------------------------------------------------
-- Loading context (set by luastream.runtime around a script run)
---------------------------------------------------------------------------

local loading = { ctx = {}, app = nil }

-- Internal: called by luastream.runtime before it runs a script.
function ls._begin(ctx)
  loading.ctx = ctx or {}
  loading.app = nil
end

-- Internal: the app the script declared (or nil); ends the loading context.
function ls._finish()
  local app = loading.app
  loading.ctx = {}
  loading.app = nil
  return app
end

---------------------------------------------------------------------------
-- The contract with the C runtime
---------------------------------------------------------------------------
-- This module (with luastream.runtime, which builds the spec) is the one
-- place that defines the app's options: their defaults, their checks, the
-- names they accept and what those resolve to. The spec handed to C
-- (docs/internals.md, "The batch ABI") holds only resolved, checked,
-- canonical values; runtime/spec.c has no defaults and no aliases of its
-- own, and refuses anything else as a bug. tests/unit/test_spec.c and
-- tests/lua/contract_spec.lua check that both sides agree on these sets.

local GUARANTEES = { ["at-least-once"] = true, ["exactly-once"] = true }
local OFFSET_RESETS = { earliest = true, latest = true }
-- on_error as a string; a function becomes the policy "function" in the spec.
local POLICIES = { skip = true, stop = true, ["dead-letter"] = true }
-- The canonical format names: the only ones the spec (and C) carries.
local FORMATS = { json = true, string = true, bytes = true, msgpack = true, int = true, double = true }
-- Other names accepted for a topic's key or value (Quix Streams' names),
-- resolved here to the canonical name.
local FORMAT_ALIASES = { str = "string", integer = "int" }
-- arrays = "vec": JSON / MessagePack arrays of numbers decode to ls.vec (docs/serialization.md).
local ARRAYS = { table = true, vec = true }
local INT_MAX = 2147483647         -- batch_size and batch_ms are C ints
local MAX_TOPIC_NAME = 249         -- Kafka's limit

ls.FORMATS = FORMATS
ls.FORMAT_ALIASES = FORMAT_ALIASES
ls.GUARANTEES = GUARANTEES
ls.OFFSET_RESETS = OFFSET_RESETS
ls.ON_ERROR_POLICIES = POLICIES
ls.ARRAYS = ARRAYS

-- The canonical name of format name `fmt`, or nil when it is not one.
function ls._format(fmt)
  if type(fmt) ~= "string" then return nil end
  if FORMATS[fmt] then return fmt end
  return FORMAT_ALIASES[fmt]
end

-- The internal topics an app uses, named once here.
function ls._dead_letter_topic(app_name)
  return app_name .. "__dead-letter"
end

function ls._changelog_topic(app_name, store)
  return app_name .. "__" .. store .. "__changelog"
end

function ls._repartition_topic(app_name, name)
  return app_name .. "__repartition__" .. name
end

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

local function one_of(set)
  local names = {}
  for k in pairs(set) do names[#names + 1] = "'" .. k .. "'" end
  table.sort(names)
  return table.concat(names, ", ")
end

-- name -> { type = "string"|"number"|"table"|..., check = fn(v) -> errmsg|nil }
local APP_OPTS = {
  name = { type = "string", check = function(v)
    if not util.valid_name(v) then return "must be 1-249 characters of A-Z a-z 0-9 . _ -" end
  end },
  broker = { type = "string", check = function(v)
    if v == "" then return "must not be empty" end
  end },
  guarantee = { type = "string", check = function(v)
    if not GUARANTEES[v] then return "must be one of " .. one_of(GUARANTEES) end
  end },
  commit_interval = { type = "number", check = function(v)
    -- not (v > 0), not v <= 0: NaN must fail the check too
    if not (v > 0) or v == math.huge then -- luacheck: ignore 581
      return "must be a positive number of seconds"
    end
  end },
  commit_every = { type = "number", check = function(v)
    if v < 0 or v % 1 ~= 0 or v == math.huge then return "must be a whole number >= 0" end
    if v > 2 ^ 53 then return "must be at most 2^53" end
  end },
  offset_reset = { type = "string", check = function(v)
    if not OFFSET_RESETS[v] then return "must be one of " .. one_of(OFFSET_RESETS) end
  end },
  state_dir = { type = "string", check = function(v)
    if v == "" then return "must not be empty" end
  end },
  on_error = { type = "string|function", check = function(v)
    if type(v) == "string" and not POLICIES[v] then
      return "must be one of " .. one_of(POLICIES) .. " or a function(err, row, msg)"
    end
  end },
  dead_letter = { type = "string", check = function(v)
    if not util.valid_name(v) then return "must be a topic name (A-Z a-z 0-9 . _ -)" end
  end },
  kafka = { type = "table", check = function(v)
    for k, x in pairs(v) do
      if type(k) ~= "string" then return "keys must be librdkafka property names (strings)" end
      local t = type(x)
      if t == "table" then
        -- a value read at start: { env = "NAME" } or { file = "PATH" } (docs/deploy.md, "Secrets")
        local n, from = 0, nil
        for f, w in pairs(x) do
          n = n + 1
          if (f ~= "env" and f ~= "file") or type(w) ~= "string" or w == "" then n = -1 break end
          from = f
        end
        if n ~= 1 or not from then
          return "property '" .. k .. "' must be a string, number or boolean, got table (a value read at " ..
            "start is { env = \"NAME\" } or { file = \"PATH\" })"
        end
      elseif t ~= "string" and t ~= "number" and t ~= "boolean" then
        return "property '" .. k .. "' must be a string, number or boolean, got " .. t
      end
    end
  end },
  batch_size = { type = "number", check = function(v)
    if v < 1 or v % 1 ~= 0 or v == math.huge then return "must be a whole number >= 1" end
    if v > INT_MAX then return "must be at most " .. INT_MAX end
  end },
  batch_ms = { type = "number", check = function(v)
    -- not (v >= 0), not v < 0: NaN must fail the check too
    if not (v >= 0) or v == math.huge then -- luacheck: ignore 581
      return "must be a number of milliseconds >= 0"
    end
    if v >= INT_MAX + 1 then return "must be less than " .. (INT_MAX + 1) .. " milliseconds" end
  end },
  -- an input topic that does not exist: wait for it (true) or stop at start (false)
  wait_for_topics = { type = "boolean" },
  -- the metrics and probes endpoint, "PORT", ":PORT" or "HOST:PORT" (--http wins)
  http = { type = "string", check = function(v)
    if not v:match("^[%w%.%-]*:?%d+$") then return "must be PORT, :PORT or HOST:PORT" end
  end },
  -- message keys whose state stays cached in Lua (least recently used go first)
  state_cache_keys = { type = "number", check = function(v)
    if v < 1 or v % 1 ~= 0 or v == math.huge then return "must be a whole number >= 1" end
  end },
  -- the watchdog (docs/api.md): the longest one call into the pipeline (a
  -- batch, a source) may run, in seconds, and the most the Lua heap may hold,
  -- in MB, before it reports where and stops the process; 0: no limit
  batch_time_limit = { type = "number", check = function(v)
    -- not (v >= 0): NaN must fail the check too
    if not (v >= 0) or v > 86400 then -- luacheck: ignore 581
      return "must be a number of seconds from 0 (no limit) to 86400"
    end
  end },
  -- joins (docs/joins.md, "Order across inputs"): how long, in ms, records of
  -- joined topics wait for a partner partition that is at its end
  join_wait = { type = "number", check = function(v)
    if not (v >= 0 and v <= 3600000) or v % 1 ~= 0 then -- luacheck: ignore 581
      return "must be a whole number of milliseconds from 0 to 3600000"
    end
  end },
  heap_limit_mb = { type = "number", check = function(v)
    if not (v == 0 or (v >= 4 and v <= 1048576)) then
      return "must be 0 (no limit) or a number of megabytes from 4 to 1048576"
    end
  end },
}
ls.APP_OPTIONS = APP_OPTS

local DEFAULTS = {
  guarantee = "at-least-once",
  commit_interval = 5.0,
  commit_every = 0,
  offset_reset = "earliest",
  state_dir = "state",
  on_error = "stop",
  batch_size = 1000,
  batch_ms = 100,
  wait_for_topics = false,
  state_cache_keys = require("luastream.state").DEFAULT_CACHE_LIMIT,
  batch_time_limit = 10,
  heap_limit_mb = 256,
  join_wait = 0,
}

local function type_ok(spec, v)
  local t = type(v)
  if spec.type == "string|function" then return t == "string" or t == "function" end
  return t == spec.type
end

local function check_value(name, v, prefix, where)
  local spec = APP_OPTS[name]
  if not type_ok(spec, v) then
    local want = spec.type == "string|function" and "a string or a function"
      or (spec.type == "table" and "a table" or ("a " .. spec.type))
    util.fail(prefix .. "option '" .. name .. "' must be " .. want .. ", got " .. type(v), where)
  end
  local msg = spec.check and spec.check(v)
  if msg then
    util.fail(prefix .. "option '" .. name .. "' " .. msg .. " (got " ..
      (type(v) == "string" and ("'" .. v .. "'") or tostring(v)) .. ")", where)
  end
end

-- --set k=v from the command line: v is a string, converted to the option's type.
local function apply_set(opts, set)
  if set == nil then return end
  local keys = {}
  for k in pairs(set) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local raw = set[k]
    local what = "--set " .. tostring(k) .. "=" .. tostring(raw)
    if type(k) ~= "string" then error(what .. ": option names are strings", 0) end
    local prop = k:match("^kafka%.(.+)$")
    if prop then
      opts.kafka = opts.kafka or {}
      opts.kafka[prop] = tostring(raw)
    else
      local spec = APP_OPTS[k]
      if not spec then
        error(what .. ": unknown app option '" .. k .. "'" .. util.suggest(k, APP_OPTS), 0)
      end
      if spec.type == "table" then
        error(what .. ": use --set kafka.<property>=<value>", 0)
      end
      local v
      if spec.type == "number" then
        v = tonumber(raw)
        if v == nil then error(what .. ": expected a number", 0) end
      elseif spec.type == "boolean" then
        if raw ~= "true" and raw ~= "false" then error(what .. ": expected true or false", 0) end
        v = raw == "true"
      else
        v = tostring(raw)
      end
      local msg = spec.check and spec.check(v)
      if msg then error(what .. ": option '" .. k .. "' " .. msg, 0) end
      opts[k] = v
    end
  end
end

local function basename_noext(path)
  local base = tostring(path):match("([^/\\]+)$") or tostring(path)
  base = base:gsub("%.lua$", "")
  base = base:gsub("[^%w%._%-]", "-")
  if base == "" then base = "luastream" end
  return base
end

---------------------------------------------------------------------------
-- Topics
---------------------------------------------------------------------------

local Topic = {}
Topic.__index = Topic
Topic.__tostring = function(t) return "Topic<" .. t.name .. ">" end

local TOPIC_OPTS = { key = true, value = true, timestamp = true, arrays = true }

---------------------------------------------------------------------------
-- The app
---------------------------------------------------------------------------

local App = {}
App.__index = App
App.__tostring = function(a) return "App<" .. a.name .. ">" end

function ls.app(opts)
  local where, file = util.callsite()
  if loading.app then
    util.fail("ls.app: only one app per script (the first was declared at " .. loading.app.loc .. ")", where)
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    util.fail("ls.app: expected a table of options, got " .. type(opts), where)
  end
  for k, v in pairs(opts) do
    if type(k) ~= "string" or not APP_OPTS[k] then
      util.fail("ls.app: unknown option '" .. tostring(k) .. "'" .. util.suggest(k, APP_OPTS), where)
    end
    check_value(k, v, "ls.app: ", where)
  end

  local ctx = loading.ctx
  local cli = ctx.cli or {}
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do
    if k == "kafka" then
      o.kafka = {}
      for p, x in pairs(v) do o.kafka[p] = x end
    else
      o[k] = v
    end
  end
  o.kafka = o.kafka or {}
  apply_set(o, cli.set)
  if cli.name ~= nil then
    if not util.valid_name(cli.name) then
      error("--name " .. tostring(cli.name) .. ": must be 1-249 characters of A-Z a-z 0-9 . _ -", 0)
    end
    o.name = cli.name
  end
  if cli.state_dir ~= nil then
    if cli.state_dir == "" then error("--state-dir: must not be empty", 0) end
    o.state_dir = tostring(cli.state_dir)
  end
  if o.name == nil then
    o.name = basename_noext(type(ctx.script) == "string" and ctx.script or file)
    if not util.valid_name(o.name) then
      util.fail("ls.app: cannot name the app after the script ('" .. o.name ..
        "' is not 1-249 characters of A-Z a-z 0-9 . _ -): set name = \"...\"", where)
    end
  end

  -- The broker: --broker, else the option (or --set broker=), else
  -- LUASTREAM_BROKER, else nil: the embedded dev broker. The spec carries
  -- the result; C does not look at LUASTREAM_BROKER itself.
  local broker = cli.broker
  if broker == nil or broker == "" then broker = o.broker end
  if broker == nil or broker == "" then
    local env = os.getenv("LUASTREAM_BROKER")
    if env ~= nil and env ~= "" then broker = env end
  end
  if broker == "" then broker = nil end

  if o.dead_letter == nil and (o.on_error == "dead-letter" or type(o.on_error) == "function") then
    o.dead_letter = ls._dead_letter_topic(o.name)
    if #o.dead_letter > MAX_TOPIC_NAME then
      util.fail("ls.app: the dead-letter topic '" .. o.dead_letter .. "' would be longer than " ..
        MAX_TOPIC_NAME .. " characters: set dead_letter = \"...\" or a shorter name", where)
    end
  end

  local app = setmetatable({
    name = o.name,
    options = o,
    broker = broker,
    loc = where,
    topics = {},        -- name -> Topic
    inputs = {},        -- Topic list, in app:dataframe order
    roots = {},         -- topic name -> list of root nodes
    outputs = {},       -- Topic list, in first-use order
    output_id = {},     -- topic name -> index in outputs
    sources = {},
    stores = {},        -- store names, in first-use order
    store_topics = {},  -- store name -> the input topics it serves, in order of first use
    store_keep_expired = {}, -- store name -> true: expiries mark idle windows (App:_use_store)
    store_source = {},  -- store name -> true: an app:table's store, its topic is its changelog
    repartitions = {},  -- group_by: { topic =, like = input topic name, partitions = n or 0, loc = }
    tables = {},        -- topic name -> Table (app:table)
    frozen = false,
  }, App)
  loading.app = app
  return app
end

local function check_app(self, name)
  if getmetatable(self) ~= App then
    util.fail("app:" .. name .. "() must be called with ':' on the app")
  end
  if self.frozen then
    util.fail("app:" .. name .. "(): the app can no longer change: declare everything while the script loads")
  end
end

function App:topic(name, opts)
  check_app(self, "topic")
  local where = util.callsite()
  if not util.valid_name(name) then
    util.fail("app:topic: topic name must be 1-249 characters of A-Z a-z 0-9 . _ -, got " ..
      (type(name) == "string" and ("'" .. name .. "'") or type(name)), where)
  end
  opts = util.check_options("app:topic", opts, TOPIC_OPTS, where)
  local key = opts.key == nil and "bytes" or opts.key
  local value = opts.value == nil and "json" or opts.value
  for _, what in ipairs({ "key", "value" }) do
    local fmt = what == "key" and key or value
    if not ls._format(fmt) then
      util.fail("app:topic: option '" .. what .. "' must be one of " .. one_of(FORMATS) .. ", got " ..
        (type(fmt) == "string" and ("'" .. fmt .. "'") or type(fmt)), where)
    end
  end
  key, value = ls._format(key), ls._format(value)
  local arrays = opts.arrays == nil and "table" or opts.arrays
  if not ARRAYS[arrays] then
    util.fail("app:topic: option 'arrays' must be one of " .. one_of(ARRAYS) .. ", got " ..
      (type(arrays) == "string" and ("'" .. arrays .. "'") or type(arrays)), where)
  end
  if arrays == "vec" and value ~= "json" and value ~= "msgpack" then
    util.fail("app:topic: option arrays = \"vec\" needs value = \"json\" or \"msgpack\", got value = '" ..
      value .. "'", where)
  end
  local ts = opts.timestamp
  if ts ~= nil and type(ts) ~= "string" and not util.is_callable(ts) then
    util.fail("app:topic: option 'timestamp' must be a field name or a function(row, msg), got " .. type(ts), where)
  end
  if ts == "" then util.fail("app:topic: option 'timestamp' must not be empty", where) end
  local old = self.topics[name]
  if old then
    if old.key ~= key or old.value ~= value or old.timestamp ~= ts or old.arrays ~= arrays then
      util.fail("app:topic: topic '" .. name .. "' was already declared at " .. old.loc ..
        " with different options", where)
    end
    return old
  end
  local t = setmetatable({ name = name, key = key, value = value, timestamp = ts, arrays = arrays,
    loc = where, app = self }, Topic)
  self.topics[name] = t
  return t
end

function App._is_table(x) return ls._is_table(x) end
function App:_is_topic(x) return getmetatable(x) == Topic and x.app == self end

function App:_check_topic(topic, what, where)
  if getmetatable(topic) ~= Topic then
    util.fail(what .. ": expected a topic from app:topic(), got " ..
      (type(topic) == "string" and ("the string '" .. topic .. "'") or type(topic)), where)
  end
  if topic.app ~= self then
    util.fail(what .. ": topic '" .. topic.name .. "' belongs to another app", where)
  end
end

-- A state store used by a stateful step on `topic`'s pipeline. A store may
-- serve several input topics (the two sides of a join); its partitions are
-- theirs, so they must have the same partition count (checked at start).
-- keep_expired: the store's entries with an expiry are not deleted when it
-- passes (windows closed on idleness act on them, luastream.window).
function App:_use_store(name, topic, where, keep_expired)
  if keep_expired then self.store_keep_expired[name] = true end
  local topics = self.store_topics[name]
  if topics == nil then
    local changelog = ls._changelog_topic(self.name, name)
    if #changelog > MAX_TOPIC_NAME and not self.store_source[name] then
      util.fail("state store '" .. name .. "': its changelog topic '" .. changelog .. "' would be longer than " ..
        MAX_TOPIC_NAME .. " characters: use a shorter store or app name", where)
    end
    self.stores[#self.stores + 1] = name
    topics = {}
    self.store_topics[name] = topics
  end
  for _, t in ipairs(topics) do
    if t == topic.name then return end
  end
  topics[#topics + 1] = topic.name
  self:_align_keys(name, where)
end

-- A group_by topic that shares a store with a topic the script declared
-- (a join) takes that topic's key format: a producer places a key by the
-- murmur2 hash of its bytes, so only keys encoded alike land in partitions
-- of the same number (JSON would quote a string key).
function App:_align_keys(store, where)
  local rep = {}
  for _, r in ipairs(self.repartitions) do rep[r.topic] = r end
  local like
  for _, n in ipairs(self.store_topics[store]) do
    if not rep[n] then like = like or self.topics[n] end
  end
  if like == nil then return end
  for _, n in ipairs(self.store_topics[store]) do
    local r, t = rep[n], self.topics[n]
    if r and r.key_like == nil then
      r.key_like, t.key = like.name, like.key
    elseif r and t.key ~= like.key then
      util.fail("group_by topic '" .. n .. "' is joined with '" .. r.key_like .. "' (key format '" .. t.key ..
        "') and '" .. like.name .. "' (key format '" .. like.key .. "'): their keys cannot land in the same " ..
        "partitions; give both topics one key format", where)
    end
  end
end

-- The internal topic of a group_by named `name` on input `like`: JSON keys
-- (the new key keeps its type; a joined topic's key format instead, see
-- _align_keys), MessagePack values, created at start with `partitions`
-- partitions (0: as many as `like`).
function App:_repartition(name, like, partitions, where)
  local tname = ls._repartition_topic(self.name, name)
  for _, r in ipairs(self.repartitions) do
    if r.topic == tname then
      util.fail("group_by: the name '" .. name .. "' is taken by the group_by at " .. r.loc ..
        "; give this one another: group_by(..., { name = \"...\" })", where)
    end
  end
  if #tname > MAX_TOPIC_NAME then
    util.fail("group_by: its topic '" .. tname .. "' would be longer than " .. MAX_TOPIC_NAME ..
      " characters: use a shorter name", where)
  end
  if self.topics[tname] then
    util.fail("group_by: topic '" .. tname .. "' is declared by the script, but it is the group_by's own", where)
  end
  local topic = self:topic(tname, { key = "json", value = "msgpack" })
  self.repartitions[#self.repartitions + 1] = { topic = tname, like = like.name, partitions = partitions,
    loc = where }
  return topic
end

function App:_use_output(topic)
  if not self.output_id[topic.name] then
    self.outputs[#self.outputs + 1] = topic
    self.output_id[topic.name] = #self.outputs
  end
  return self.output_id[topic.name]
end

function App:dataframe(topic)
  check_app(self, "dataframe")
  local where = util.callsite()
  self:_check_topic(topic, "app:dataframe", where)
  if self.tables[topic.name] then
    util.fail("app:dataframe: topic '" .. topic.name .. "' is a table (app:table at " ..
      self.tables[topic.name].loc .. "); join it with sdf:join_table", where)
  end
  local sdf, root = dataframe.new(self, topic, where)
  local list = self.roots[topic.name]
  if not list then
    list = {}
    self.roots[topic.name] = list
    self.inputs[#self.inputs + 1] = topic
  end
  list[#list + 1] = root
  return sdf
end

-- app:table(topic): the latest value per key of `topic`, kept in the state
-- store "__table__<topic>" (docs/joins.md): every record of the topic sets
-- its key's value, a null value (a tombstone) deletes the key. Dataframes join
-- it with sdf:join_table.
local Table = {}
Table.__index = Table
Table.__tostring = function(t) return "Table<" .. t.topic.name .. ">" end
function ls._is_table(x) return type(x) == "table" and getmetatable(x) == Table end

function App:table(topic, extra)
  check_app(self, "table")
  local where = util.callsite()
  self:_check_topic(topic, "app:table", where)
  if extra ~= nil then util.fail("app:table: expected (topic)", where) end
  local name = topic.name
  if self.tables[name] then
    util.fail("app:table: topic '" .. name .. "' is already a table (app:table at " .. self.tables[name].loc ..
      "); use that one", where)
  end
  if self.roots[name] then
    util.fail("app:table: topic '" .. name .. "' is already read by app:dataframe; a topic is a stream " ..
      "or a table, not both", where)
  end
  local store = "__table__" .. name
  self.store_source[store] = true -- before _use_store: no changelog topic to name
  self:_use_store(store, topic, where)
  local t = setmetatable({ app = self, topic = topic, store = store, loc = where }, Table)
  self.tables[name] = t
  local _, root = dataframe.new(self, topic, where)
  root.children[1] = { kind = "table_put", store = store, loc = where, desc = "app:table '" .. name .. "'",
    parent = root, children = {}, topic = topic }
  self.roots[name] = { root }
  self.inputs[#self.inputs + 1] = topic
  return t
end

-- app:global_table(topic) (docs/joins.md): the latest value per key of
-- every partition of `topic`, on every instance, in memory (small reference
-- data); the runtime reads the whole topic before processing anything else,
-- then keeps up with it. Joined with sdf:join_table(tbl, { on = ... }).
function App:global_table(topic, extra)
  check_app(self, "global_table")
  local where = util.callsite()
  self:_check_topic(topic, "app:global_table", where)
  if extra ~= nil then util.fail("app:global_table: expected (topic)", where) end
  local name = topic.name
  if self.tables[name] then
    util.fail("app:global_table: topic '" .. name .. "' is already a table (at " .. self.tables[name].loc ..
      "); use that one", where)
  end
  if self.roots[name] then
    util.fail("app:global_table: topic '" .. name .. "' is already read by app:dataframe; a topic is a " ..
      "stream or a table, not both", where)
  end
  local t = setmetatable({ app = self, topic = topic, global = true, loc = where }, Table)
  self.tables[name] = t
  local _, root = dataframe.new(self, topic, where)
  root.children[1] = { kind = "global_put", table = name, loc = where, desc = "app:global_table '" .. name .. "'",
    parent = root, children = {}, topic = topic }
  self.roots[name] = { root }
  self.inputs[#self.inputs + 1] = topic
  return t
end

local SOURCE_OPTS = { every = true }
function App:source(topic, fn, opts)
  check_app(self, "source")
  local where = util.callsite()
  self:_check_topic(topic, "app:source", where)
  if not util.is_callable(fn) then
    util.fail("app:source: expected a function(emit), got " .. type(fn), where)
  end
  opts = util.check_options("app:source", opts, SOURCE_OPTS, where)
  local every = opts.every == nil and 1000 or opts.every
  -- not (every > 0), not every <= 0: NaN must fail the check too
  if type(every) ~= "number" or not (every > 0) or every == math.huge then -- luacheck: ignore 581
    util.fail("app:source: option 'every' must be a positive number of milliseconds, got " ..
      tostring(every), where)
  end
  self:_use_output(topic)
  local src = { topic = topic, fn = fn, every = every, loc = where }
  self.sources[#self.sources + 1] = src
  return src
end

-- Accepted for familiarity: the runtime runs the app once the script returns.
function App:run()
end

-- True when the app talks to the embedded dev broker: no broker given by
-- option, --broker or LUASTREAM_BROKER.
function App:is_dev_broker()
  return self.broker == nil
end

return ls
