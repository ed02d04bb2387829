-- luastream.testing: a test driver that runs a pipeline script without Kafka,
-- so users unit-test their pipelines with busted (docs/testing.md).
--
--   local testing = require("luastream.testing")
--   local d = testing.driver("crash_detection.lua")
--   d:send("phone-data", { key = "phone-1", value = { gX = 0, gY = 0, gZ = 1, ts = 1 } })
--   local alerts = d:read("crash-alerts")   -- { {key=, value=, timestamp=, ...}, ... }
--   d:advance(1000)                         -- runs app:source() timers that fall due
--
-- What it owns: the part the C runtime plays around the batch ABI of
-- luastream.runtime (docs/internals.md, "The batch ABI"), done in Lua over
-- in-memory topics:
--  * loading: the script goes through rt.load, like `luastream run`;
--  * input: a sent value is encoded with the input topic's serializers
--    (luastream.core, the C codecs) and decoded again (with the topic's
--    arrays option), as runtime/batch.c does with a Kafka message;
--    tombstones (no value) are not rows;
--  * one rt.run_batch per batch; a failing batch is replayed row by row and
--    the failing row meets on_error, as in runtime/app.c (skip, stop,
--    dead-letter with the luastream.* headers, or the user's function
--    through rt.handle_error);
--  * output: every record is encoded with the output topic's serializers,
--    kept as bytes in an in-memory topic log, and decoded again when read,
--    so tests see what a consumer would; records produced to a topic the
--    app also reads are consumed by it, as from Kafka;
--  * state: core.state_load reads an in-memory store, and after each batch
--    rt.take_state_changes() is applied to it (runtime/checkpoint.c's
--    contract), so state is per store, partition and key as in production;
--  * time: a deterministic clock. d:advance(ms) runs the sources that fall
--    due; ls.now_ms() returns the driver's clock while the driver runs.
--
-- Isolation: luastream.runtime, luastream.state and the other luastream.*
-- modules keep module-level state (the loaded program, the state caches).
-- Each driver therefore has its own copies: while a driver runs (loading
-- its script, send, advance, ...) its private modules are installed in
-- package.loaded, and everything is put back when it returns. The private
-- set is every luastream.* module except luastream.core (C, stateless),
-- luastream.vec (one FFI metatype per Lua state) and this module, plus modules next to the script and any other Lua module
-- first loaded while the driver ran. Drivers can be used interleaved, and
-- code outside them (other specs) keeps its own copies.
local ffi = require("ffi")
local bit = require("bit")
local core = require("luastream.core")

local M = {}

local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local format, byte = string.format, string.byte
local floor = math.floor

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Modules shared by every driver: everything else named luastream.* is
-- loaded once per driver. Modules that cannot be loaded twice in one Lua
-- state (e.g. ones registering an FFI metatype, like luastream.vec) belong
-- here.
local SHARED = { ["luastream.core"] = true, ["luastream.testing"] = true, ["luastream.vec"] = true }

local function private_name(name)
  return type(name) == "string" and (name == "luastream" or name:sub(1, 10) == "luastream.")
    and not SHARED[name]
end

local NONE = setmetatable({}, { __tostring = function() return "<absent>" end })

local function show(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function quoted_list(names)
  local q = {}
  for j, n in ipairs(names) do q[j] = "'" .. tostring(n) .. "'" end
  if #q == 0 then return "none" end
  return table.concat(q, ", ")
end

local function levenshtein(a, b)
  local la, lb = #a, #b
  local prev, cur = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    for j = 1, lb do
      local cost = byte(a, i) == byte(b, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[lb]
end

-- " (did you mean 'x'?)" for the closest of names, or "".
local function suggest(name, names)
  if type(name) ~= "string" then return "" end
  local best, bestd
  for _, k in ipairs(names) do
    local d = levenshtein(name, k)
    if d <= 2 + floor(#k / 6) and (not bestd or d < bestd) then best, bestd = k, d end
  end
  return best and (" (did you mean '" .. best .. "'?)") or ""
end

-- core.decode's options for a topic declared with arrays = "vec".
local ARRAYS_VEC = { arrays = "vec" }
local function decode_opts(topic)
  return topic and topic.arrays == "vec" and ARRAYS_VEC or nil
end

-- Strips the "encode json: " / "decode json: " prefix of luastream.core's
-- errors, so messages read like the runtime's.
local function codec_message(e)
  e = tostring(e)
  return e:match("^[ed][ne]code [%w]+: (.*)$") or e
end

local function readable(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function dirname(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  if dir == "" then return "/" end
  return dir
end

-- CRC-32 (IEEE), librdkafka's default partitioner for keyed records.
local crc_table
local function crc32(s)
  if not crc_table then
    crc_table = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0xEDB88320)
        else c = bit.rshift(c, 1) end
      end
      crc_table[i] = c
    end
  end
  local c = bit.bnot(0)
  for i = 1, #s do
    c = bit.bxor(bit.rshift(c, 8), crc_table[bit.band(bit.bxor(c, byte(s, i)), 0xff)])
  end
  c = bit.bnot(c)
  if c < 0 then c = c + 4294967296 end
  return c
end
M._crc32 = crc32

-- A header list as Kafka carries it: { {name, value}, ... } (value a string,
-- or absent), or nil when there are none. Accepts { name = value, ... }
-- (sorted by name) or { {name, value}, ... } (kept in order).
local function header_value(v, what)
  if v == nil or v == core.null then return nil end
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" or t == "cdata" then return tostring(v) end
  error(what .. ": header values must be strings, got " .. t, 0)
end

local function norm_headers(h, what)
  if h == nil or h == core.null then return nil end
  if type(h) ~= "table" then error(what .. ": headers must be a table, got " .. type(h), 0) end
  local out = {}
  if h[1] ~= nil then
    for j = 1, #h do
      local p = h[j]
      if type(p) ~= "table" or type(p[1]) ~= "string" then
        error(what .. ": header " .. j .. " must be {name, value} with a string name", 0)
      end
      out[j] = { p[1], header_value(p[2], what) }
    end
  else
    for _, name in ipairs(sorted_keys(h)) do
      if type(name) ~= "string" then error(what .. ": header names must be strings", 0) end
      out[#out + 1] = { name, header_value(h[name], what) }
    end
  end
  if #out == 0 then return nil end
  return out
end

-- Headers of an output as runtime/app.c's encode_headers reads them: a list
-- of {name, value} pairs and/or name = value fields; values that are not
-- strings or numbers make a header without a value.
local function output_headers(h)
  if type(h) ~= "table" then return nil end
  local out = {}
  local function add(name, v)
    local tn = type(name)
    if tn ~= "string" and tn ~= "number" then return end
    local tv = type(v)
    out[#out + 1] = { tostring(name), (tv == "string" or tv == "number") and tostring(v) or nil }
  end
  for j = 1, #h do
    local p = h[j]
    if type(p) == "table" then add(p[1], p[2]) end
  end
  local names = {}
  for k in pairs(h) do if type(k) == "string" then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do add(k, h[k]) end
  if #out == 0 then return nil end
  return out
end

local function copy_headers(h)
  if h == nil then return nil end
  local c = {}
  for j, p in ipairs(h) do c[j] = { p[1], p[2] } end
  return c
end

---------------------------------------------------------------------------
-- The driver
---------------------------------------------------------------------------

local Driver = {}
Driver.__index = Driver
Driver.__tostring = function(d) return "testing.driver(" .. d.script .. ")" end

local OPTIONS = { "set", "name", "partitions", "start_ms", "dev_broker", "echo" }
local OPTION_SET = {}
for _, k in ipairs(OPTIONS) do OPTION_SET[k] = true end

local RECORD_FIELDS = { "key", "value", "timestamp", "headers", "partition", "raw_key", "raw_value" }
local RECORD_SET = {}
for _, k in ipairs(RECORD_FIELDS) do RECORD_SET[k] = true end

-- The script path as given, else relative to the file that called driver().
local function resolve(path, caller_level)
  if type(path) ~= "string" or path == "" then
    error("testing.driver: expected the path of a pipeline script, got " .. type(path), caller_level + 1)
  end
  if path:sub(1, 1) == "/" or readable(path) then return path end
  -- Next to the calling file (the first Lua file up the stack that is not
  -- this one).
  local tried = { "the current directory" }
  local own = debug.getinfo(1, "S").source
  for level = caller_level + 1, caller_level + 20 do
    local info = debug.getinfo(level, "S")
    if not info then break end
    local src = info.source or ""
    if src:sub(1, 1) == "@" and src ~= own then
      local dir = dirname(src:sub(2))
      local p = dir .. "/" .. path
      if readable(p) then return p end
      tried[#tried + 1] = dir
      break
    end
  end
  error("testing.driver: cannot find the script '" .. path .. "' (looked in " ..
    table.concat(tried, " and ") .. ")", caller_level + 1)
end

-- testing.driver(script, opts) loads a pipeline script into a new driver.
--   opts.set        = { option = value }: app options, as `--set` does
--   opts.name       = app name (as --name)
--   opts.partitions = partitions of every topic, for records sent without
--                     one (keyed records are spread by CRC-32 of the key
--                     bytes, like librdkafka; unkeyed ones go to 0). Default 1.
--   opts.start_ms   = the clock's start, ms since the epoch (default 0)
--   opts.dev_broker = what app:is_dev_broker() returns (default false, so a
--                     script does not start its development simulators)
--   opts.echo       = true to let sdf:print() output through to stdout
--                     (default: captured, see d:printed())
function M.driver(script, opts)
  opts = opts == nil and {} or opts
  if type(opts) ~= "table" then error("testing.driver: options must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not OPTION_SET[k] then
      error("testing.driver: unknown option " .. show(k) .. suggest(k, OPTIONS) ..
        "; options: " .. table.concat(OPTIONS, ", "), 2)
    end
  end
  if opts.set ~= nil and type(opts.set) ~= "table" then
    error("testing.driver: option 'set' must be a table of app options, got " .. type(opts.set), 2)
  end
  local partitions = opts.partitions == nil and 1 or opts.partitions
  if type(partitions) ~= "number" or partitions < 1 or partitions % 1 ~= 0 then
    error("testing.driver: option 'partitions' must be a whole number >= 1, got " .. tostring(partitions), 2)
  end
  local start = opts.start_ms == nil and 0 or opts.start_ms
  if type(start) ~= "number" or start ~= start then
    error("testing.driver: option 'start_ms' must be a number of milliseconds, got " .. type(start), 2)
  end
  local set = nil
  if opts.set then
    set = {}
    for k, v in pairs(opts.set) do set[k] = v end
  end
  local self = setmetatable({
    script = resolve(script, 2),
    cli = { set = set, name = opts.name },
    partitions = partitions,
    clock = start,
    dev_broker = opts.dev_broker and true or false,
    echo = opts.echo and true or false,
    mods = {},             -- private modules: name -> module
    path = package.path,   -- package.path while this driver runs
    store = {},            -- committed state: [store][partition][key bytes][state key] = msgpack
    offsets = {},          -- [topic][partition] = next offset
    logs = {},             -- [topic] = records written and not yet read
    errs = {},             -- entries for d:errors()
    out_text = {},         -- captured io.write output
    queue = {},            -- records waiting to be consumed
    stopped = nil,         -- the error that stopped the app (on_error = "stop")
    active = false,
  }, Driver)
  self.now_fn = function() return self.clock end
  self.load_fn = function(store, p, kb) return self:_state_load(store, p, kb) end
  self.write_fn = function(...)
    local buf = self.out_text
    for j = 1, select("#", ...) do buf[#buf + 1] = tostring((select(j, ...))) end
    if self.echo and self.ctx then self.ctx.write(...) end
    return io.stdout
  end
  self:_load()
  return self
end

-- Installs this driver's modules, clock, state loader and output capture.
function Driver:_enter(fresh)
  if self.active then
    error("testing: the driver was called from inside one of its own steps", 0)
  end
  local loaded = package.loaded
  local saved = {}
  for name, m in pairs(loaded) do
    if private_name(name) then saved[name] = m end
  end
  if fresh then
    -- Modules next to the script are loaded fresh for the new program.
    local dir = dirname(self.script)
    local near = dir .. "/?.lua;" .. dir .. "/?/init.lua"
    for name, m in pairs(loaded) do
      if type(name) == "string" and saved[name] == nil and package.searchpath(name, near) then
        saved[name] = m
      end
    end
  end
  for name in pairs(self.mods) do
    if saved[name] == nil then
      local m = loaded[name]
      if m == nil then m = NONE end
      saved[name] = m
    end
  end
  for name in pairs(saved) do loaded[name] = nil end
  for name, m in pairs(self.mods) do loaded[name] = m end
  local before = {}
  for name in pairs(loaded) do before[name] = true end
  self.ctx = {
    saved = saved, before = before, path = package.path,
    now = core.now_ms, load = core.state_load, write = io.write,
  }
  package.path = self.path
  core.now_ms = self.now_fn
  core.state_load = self.load_fn
  io.write = self.write_fn
  self.active = true
end

-- Puts back what _enter replaced; keeps modules first loaded meanwhile.
function Driver:_leave()
  local ctx = self.ctx
  local loaded = package.loaded
  self.path = package.path
  for name, m in pairs(loaded) do
    if not ctx.before[name] and type(name) == "string" and
      (private_name(name) or package.searchpath(name, self.path)) then
      self.mods[name] = m
    end
  end
  for name in pairs(self.mods) do loaded[name] = nil end
  for name, m in pairs(ctx.saved) do
    if m == NONE then loaded[name] = nil else loaded[name] = m end
  end
  package.path = ctx.path
  core.now_ms = ctx.now
  core.state_load = ctx.load
  io.write = ctx.write
  self.ctx = nil
  self.active = false
end

-- Runs fn(self, ...) with the driver installed; errors pass through.
function Driver:_run(fn, ...)
  self:_enter(false)
  local ok, err = pcall(fn, self, ...)
  self:_leave()
  if not ok then error(err, 0) end
  return err
end

-- Loads (or, for restart, reloads) the script into fresh modules.
function Driver:_load()
  self.mods = {}
  self:_enter(true)
  local ok, err = pcall(function()
    local rt = require("luastream.runtime")
    local ls = require("luastream")
    local app_fn = ls.app
    local driver = self
    ls.app = function(o)
      local app = app_fn(o)
      local dev = driver.dev_broker
      app.is_dev_broker = function() return dev end
      driver.app = app
      return app
    end
    ls.now_ms = self.now_fn
    self.rt, self.ls = rt, ls
    self.state_mod = require("luastream.state")
    self.spec = rt.load(self.script, self.cli)
  end)
  self:_leave()
  if not ok then error(err, 0) end
  local spec = self.spec
  self.input_id, self.output_id = {}, {}
  for id, t in ipairs(spec.inputs) do self.input_id[t.name] = id end
  for id, t in ipairs(spec.outputs) do self.output_id[t.name] = id end
  self.source_next = {}
  for k, s in ipairs(spec.sources) do self.source_next[k] = self.clock + s.every end
end

---------------------------------------------------------------------------
-- State (the in-memory stand-in for LMDB)
---------------------------------------------------------------------------

function Driver:_state_load(store, p, kb)
  local t = {}
  local parts = self.store[store]
  local entries = parts and parts[p] and parts[p][kb]
  if entries then
    for sk, bytes in pairs(entries) do t[sk] = core.decode("msgpack", bytes) end
  end
  return t
end

-- A checkpoint: the pending state changes become the committed state.
function Driver:_checkpoint()
  local rt = self.rt
  local n = rt.take_state_changes()
  local ch = rt.changes
  local split = self.state_mod.split_key
  for j = 1, n do
    local name = self.spec.stores[ch.store[j]].name
    local p = ch.part[j]
    local kb, sk = split(ch.key[j])
    local parts = self.store[name]
    if not parts then parts = {} self.store[name] = parts end
    local keys = parts[p]
    if not keys then keys = {} parts[p] = keys end
    local entries = keys[kb]
    if ch.val[j] == false then
      if entries then
        entries[sk] = nil
        if next(entries) == nil then keys[kb] = nil end
      end
    else
      if not entries then entries = {} keys[kb] = entries end
      entries[sk] = ch.val[j]
    end
  end
end

---------------------------------------------------------------------------
-- Topics
---------------------------------------------------------------------------

function Driver:_partition_for(kb)
  if self.partitions == 1 or kb == nil or kb == "" then return 0 end
  return crc32(kb) % self.partitions
end

function Driver:_next_offset(topic, p)
  local t = self.offsets[topic]
  if not t then t = {} self.offsets[topic] = t end
  local off = t[p] or 0
  t[p] = off + 1
  return off
end

-- Does the app write this topic (so d:read may read it)?
function Driver:_writes(topic)
  return self.output_id[topic] ~= nil or (self.spec.dead_letter ~= nil and topic == self.spec.dead_letter)
end

-- Appends a record to a topic: kept for d:read when the app writes the
-- topic, consumed when the app reads it.
function Driver:_append(rec)
  if self:_writes(rec.topic) then
    local log = self.logs[rec.topic]
    if not log then log = {} self.logs[rec.topic] = log end
    log[#log + 1] = rec
  end
  local tid = self.input_id[rec.topic]
  if tid then
    rec.tid = tid
    self.queue[#self.queue + 1] = rec
  end
end

-- Produces a record the way librdkafka would place it.
function Driver:_produce(topic, kb, vb, ts, headers)
  if ts <= 0 then ts = self.clock end -- librdkafka stamps timestamp 0 with the current time
  local p = self:_partition_for(kb)
  self:_append({ topic = topic, partition = p, offset = self:_next_offset(topic, p),
    key = kb, value = vb, timestamp = ts, headers = headers })
end

---------------------------------------------------------------------------
-- Errors (runtime/app.c's handle_error)
---------------------------------------------------------------------------

local STOP = "stop"

-- Applies on_error to input record m (row = its decoded value, or nil for a
-- decode error). Returns nil when the record counts as done, or the
-- message of the stop.
function Driver:_on_error(m, row, stage, err)
  local spec = self.spec
  local policy, why = spec.on_error, nil
  if policy == "function" then
    local msg = { key = m.key, topic = m.topic, partition = m.partition, offset = m.offset,
      timestamp = m.timestamp, headers = copy_headers(m.headers) or {} }
    policy, why = self.rt.handle_error(err, row, msg)
    if policy ~= "skip" and policy ~= "dead-letter" then policy = STOP end
  end
  if policy == "dead-letter" and not spec.dead_letter then
    policy, why = STOP, "on_error chose dead-letter, but no dead_letter topic is set"
  end
  self.errs[#self.errs + 1] = {
    topic = m.topic, partition = m.partition, offset = m.offset, key = m.key_value or m.key,
    value = row == nil and m.value or row, timestamp = m.timestamp,
    stage = stage, error = err, policy = policy, reason = why,
  }
  if policy == "skip" then return nil end
  if policy == "dead-letter" then
    local h = copy_headers(m.headers) or {}
    h[#h + 1] = { "luastream.error", err }
    h[#h + 1] = { "luastream.error.stage", stage }
    h[#h + 1] = { "luastream.source.topic", m.topic }
    h[#h + 1] = { "luastream.source.partition", format("%d", m.partition) }
    h[#h + 1] = { "luastream.source.offset", format("%d", m.offset) }
    self:_produce(spec.dead_letter, m.key, m.value, m.timestamp, h)
    return nil
  end
  return format("%s[%d]@%d: %s error: %s (on_error = %s%s)", m.topic, m.partition, m.offset,
    stage, err, spec.on_error == "function" and "function" or "'stop'", why and ("; " .. why) or "")
end

---------------------------------------------------------------------------
-- Batches (runtime/app.c's process_batch, runtime/batch.c)
---------------------------------------------------------------------------

-- Encodes outputs 1..nout and produces them. rows/msgs/row_msg describe
-- the batch (nil for a source). Returns the message of a stop, or nil.
function Driver:_emit(nout, batch)
  local rt, spec = self.rt, self.spec
  -- Copy first: on_error functions run user code.
  local outs = {}
  for j = 1, nout do
    outs[j] = { rt.out_val[j], rt.out_key[j], rt.out_topic[j], rt.out_ts[j], rt.out_row[j], rt.out_hdr[j] }
  end
  for j = 1, nout do
    local o = outs[j]
    local val, key, tid, ts, row, hdr = o[1], o[2], o[3], o[4], o[5] or 0, o[6]
    local t = spec.outputs[tid]
    if t == nil then error("output " .. j .. " has no topic", 0) end
    if type(ts) ~= "number" then
      ts = (batch and row > 0) and batch.meta[row - 1].timestamp or 0
    end
    ts = ts >= 0 and floor(ts) or -floor(-ts)
    local kb, vb, err
    if key ~= nil then
      local ok, r = pcall(core.encode, t.key, key)
      if ok then kb = r else err = "key for topic " .. t.name .. ": " .. codec_message(r) end
    end
    if not err and val ~= nil then
      local ok, r = pcall(core.encode, t.value, val)
      if ok then vb = r else err = "value for topic " .. t.name .. ": " .. codec_message(r) end
    end
    if err then
      if not batch or row <= 0 then
        self.errs[#self.errs + 1] = { topic = t.name, stage = "encode", error = err, policy = "dropped",
          value = val, key = key }
      elseif batch.dlq_row ~= row then
        batch.dlq_row = row
        local stop = self:_on_error(batch.msgs[batch.row_msg[row]], batch.rows[row], "encode", err)
        if stop then return stop end
      end
    else
      self:_produce(t.name, kb, vb, ts, output_headers(hdr))
    end
  end
  return nil
end

-- Runs one batch of input records (each { topic, tid, partition, offset,
-- key = bytes|nil, value = bytes|nil, timestamp, headers }).
function Driver:_batch(msgs)
  local rt, spec = self.rt, self.spec
  local rows, keys, hdrs, row_msg = {}, {}, {}, {}
  local n = 0
  for i, m in ipairs(msgs) do
    if m.value ~= nil then -- a tombstone is not a row
      local input = spec.inputs[m.tid]
      local ok, v = pcall(core.decode, input.value, m.value, decode_opts(input))
      if not ok then
        m.err = "value: " .. codec_message(v)
      else
        local k = nil
        if m.key ~= nil then
          local okk, kv = pcall(core.decode, input.key, m.key)
          if okk then k = kv else m.err = "key: " .. codec_message(kv) end
        end
        if not m.err then
          n = n + 1
          rows[n], keys[n], hdrs[n], row_msg[n] = v, k, copy_headers(m.headers), i
          m.key_value = k
        end
      end
    end
  end
  local stop
  for i, m in ipairs(msgs) do
    if m.err then
      stop = self:_on_error(m, nil, "decode", m.err)
      if stop then
        while n > 0 and row_msg[n] > i do
          rows[n], keys[n], hdrs[n], row_msg[n] = nil, nil, nil, nil
          n = n - 1
        end
        break
      end
    end
  end
  if n > 0 then
    local meta = ffi.new("ls_meta_t[?]", n)
    for r = 1, n do
      local m = msgs[row_msg[r]]
      local mt = meta[r - 1]
      mt.offset, mt.timestamp, mt.partition, mt.topic = m.offset, m.timestamp, m.partition, m.tid
    end
    local batch = { meta = meta, rows = rows, msgs = msgs, row_msg = row_msg, dlq_row = 0 }
    rt.rows, rt.keys, rt.hdrs = rows, keys, hdrs
    local ok, res = pcall(rt.run_batch, n, meta, 1, n)
    local pstop
    if ok then
      pstop = self:_emit(res, batch)
    else
      for r = 1, n do
        local ok1, res1 = pcall(rt.run_batch, n, meta, r, r)
        if ok1 then
          pstop = self:_emit(res1, batch)
        else
          pstop = self:_on_error(msgs[row_msg[r]], rows[r], "process", res1)
        end
        if pstop then break end
      end
    end
    stop = pstop or stop
    rt.rows, rt.keys, rt.hdrs = {}, {}, {}
  end
  self:_checkpoint()
  return stop
end

local MAX_FEEDBACK = 1000000

-- Consumes queued records, batch after batch, until none is left.
function Driver:_drain()
  local done = 0
  while #self.queue > 0 do
    local msgs = self.queue
    self.queue = {}
    done = done + #msgs
    local stop = self:_batch(msgs)
    if stop then
      self.queue = {}
      self.stopped = stop
      error(stop, 0)
    end
    if done > MAX_FEEDBACK then
      self.queue = {}
      error("testing: more than " .. MAX_FEEDBACK .. " records in one step: the app's outputs keep " ..
        "feeding its own inputs", 0)
    end
  end
end

---------------------------------------------------------------------------
-- The public methods
---------------------------------------------------------------------------

function Driver:_check_running(what)
  if self.stopped then
    error(what .. ": the app stopped on an error (on_error): " .. self.stopped ..
      "; call d:restart() to go on", 3)
  end
end

function Driver:_input(topic, what)
  if type(topic) ~= "string" then
    error(what .. ": expected a topic name, got " .. type(topic), 3)
  end
  local tid = self.input_id[topic]
  if tid then return tid end
  local names = {}
  for _, t in ipairs(self.spec.inputs) do names[#names + 1] = t.name end
  local hint = ""
  if self.output_id[topic] then hint = " (the app writes it but reads no dataframe from it)" end
  error(what .. ": the app reads no topic '" .. topic .. "'" .. hint .. suggest(topic, names) ..
    "; it reads " .. quoted_list(names), 3)
end

-- Builds the input record for topic `topic` from the table form.

-- The bytes of a record's key or value: raw_<field> as given, or <field>
-- written in the topic's format. Errors are raised at the caller's caller.
local function field_bytes(what, field, format, raw, value)
  if raw ~= nil then
    if type(raw) ~= "string" then error(what .. ": raw_" .. field .. " must be a string of bytes", 4) end
    return raw
  end
  if value == nil then return nil end
  local ok, b = pcall(core.encode, format, value)
  if not ok then
    error(what .. ": the " .. field .. " cannot be written in the topic's " .. field .. " format '" ..
      format .. "': " .. codec_message(b), 4)
  end
  return b
end

function Driver:_record(topic, tid, r, what)
  if type(r) ~= "table" then
    error(what .. ": expected a record table { key =, value =, ... }, got " .. type(r), 3)
  end
  for k in pairs(r) do
    if not RECORD_SET[k] then
      error(what .. ": unknown record field " .. show(k) .. suggest(k, RECORD_FIELDS) ..
        "; fields: " .. table.concat(RECORD_FIELDS, ", ") ..
        " (to send a table as the value, use d:send(topic, key, value))", 3)
    end
  end
  local input = self.spec.inputs[tid]
  local kb = field_bytes(what, "key", input.key, r.raw_key, r.key)
  local vb = field_bytes(what, "value", input.value, r.raw_value, r.value)
  local ts = r.timestamp
  if ts == nil then
    ts = self.clock
  else
    if type(ts) == "cdata" then ts = tonumber(ts) end
    if type(ts) ~= "number" or ts ~= ts then
      error(what .. ": timestamp must be a number of milliseconds, got " .. type(r.timestamp), 3)
    end
  end
  local headers = norm_headers(r.headers, what)
  local p = r.partition
  if p == nil then
    p = self:_partition_for(kb)
  elseif type(p) ~= "number" or p < 0 or p % 1 ~= 0 then
    error(what .. ": partition must be a whole number >= 0, got " .. tostring(p), 3)
  end
  return { topic = topic, partition = p, key = kb, value = vb, timestamp = ts, headers = headers }
end

local function send_records(self, topic, list)
  for _, rec in ipairs(list) do
    rec.offset = self:_next_offset(topic, rec.partition)
    self:_append(rec)
  end
  self:_drain()
end

-- d:send(topic, { key =, value =, timestamp =, headers =, partition =,
--                 raw_key =, raw_value = })
-- d:send(topic, key, value [, timestamp])
-- Writes one record to an input topic and runs it through the app.
function Driver:send(topic, ...)
  local what = "d:send(" .. show(topic) .. ")"
  self:_check_running("d:send")
  local tid = self:_input(topic, what)
  local r
  if select("#", ...) <= 1 then
    r = ...
  else
    local key, value, ts = ...
    r = { key = key, value = value, timestamp = ts }
  end
  local rec = self:_record(topic, tid, r, what)
  self:_run(send_records, topic, { rec })
end

-- d:send_batch(topic, { record, ... }): the records, in the table form of
-- d:send, run as one batch (as one poll of the consumer would give them).
function Driver:send_batch(topic, records)
  local what = "d:send_batch(" .. show(topic) .. ")"
  self:_check_running("d:send_batch")
  local tid = self:_input(topic, what)
  if type(records) ~= "table" then error(what .. ": expected a list of records", 2) end
  local list = {}
  for j, r in ipairs(records) do list[j] = self:_record(topic, tid, r, what .. " record " .. j) end
  self:_run(send_records, topic, list)
end

local function run_source(self, k)
  local ok, nout = pcall(self.rt.run_source, k, self.clock)
  if not ok then
    self.errs[#self.errs + 1] = { topic = self.spec.sources[k].topic, stage = "source", error = nout,
      policy = "logged", timestamp = self.clock }
    return
  end
  self:_emit(nout, nil)
end

local function advance(self, target)
  local next_at, sources = self.source_next, self.spec.sources
  while true do
    local due
    for k = 1, #sources do
      if next_at[k] <= target and (due == nil or next_at[k] < due) then due = next_at[k] end
    end
    if due == nil then break end
    self.clock = due
    for k = 1, #sources do
      if next_at[k] <= due then
        next_at[k] = next_at[k] + sources[k].every
        run_source(self, k)
        self:_drain()
      end
    end
  end
  self.clock = target
end

-- d:advance(ms): moves the clock forward, running each app:source() whose
-- time comes (first `every` ms after the start, then every `every` ms).
function Driver:advance(ms)
  if type(ms) ~= "number" or not (ms >= 0) or ms == math.huge then
    error("d:advance: expected a number of milliseconds >= 0, got " .. tostring(ms), 2)
  end
  self:_check_running("d:advance")
  self:_run(advance, self.clock + ms)
end

-- d:now(): the driver's clock, in ms.
function Driver:now()
  return self.clock
end

-- d:read(topic [, { raw = true }]): the records written to `topic` since the
-- last read (the list is emptied), oldest first, decoded with the topic's
-- formats: { topic, partition, offset, key, value, timestamp, headers }.
-- headers is nil or { {name, value}, ... }. With raw = true key and value
-- are the bytes as written.
function Driver:read(topic, opts)
  if type(topic) ~= "string" then error("d:read: expected a topic name, got " .. type(topic), 2) end
  if not self:_writes(topic) then
    local names = {}
    for _, t in ipairs(self.spec.outputs) do names[#names + 1] = t.name end
    if self.spec.dead_letter then names[#names + 1] = self.spec.dead_letter end
    local hint = ""
    if self.input_id[topic] then hint = " (it only reads it)" end
    error("d:read: the app writes no topic '" .. topic .. "'" .. hint .. suggest(topic, names) ..
      "; it writes " .. quoted_list(names), 2)
  end
  local raw = type(opts) == "table" and opts.raw
  local kf, vf = "bytes", "bytes"
  local oid = self.output_id[topic]
  if oid then
    kf, vf = self.spec.outputs[oid].key, self.spec.outputs[oid].value
  elseif self.app and self.app.topics and self.app.topics[topic] then
    kf, vf = self.app.topics[topic].key, self.app.topics[topic].value
  end
  local vopts = decode_opts(self.app and self.app.topics and self.app.topics[topic])
  local log = self.logs[topic] or {}
  self.logs[topic] = {}
  local res = {}
  for j, rec in ipairs(log) do
    local key, value = rec.key, rec.value
    if not raw then
      if key ~= nil then
        local ok, k = pcall(core.decode, kf, key)
        if not ok then
          error(format("d:read(%s): record %d@%d: key: %s (read it with { raw = true })",
            show(topic), rec.partition, rec.offset, codec_message(k)), 2)
        end
        key = k
      end
      if value ~= nil then
        local ok, v = pcall(core.decode, vf, value, vopts)
        if not ok then
          error(format("d:read(%s): record %d@%d: value: %s (read it with { raw = true })",
            show(topic), rec.partition, rec.offset, codec_message(v)), 2)
        end
        value = v
      end
    end
    res[j] = { topic = topic, partition = rec.partition, offset = rec.offset, key = key, value = value,
      timestamp = rec.timestamp, headers = copy_headers(rec.headers) }
  end
  return res
end

-- d:read_values(topic): like d:read, just the values.
function Driver:read_values(topic)
  local recs = self:read(topic)
  local vals = {}
  for j, r in ipairs(recs) do vals[j] = r.value end
  return vals
end

-- d:state(store, key [, name [, partition]]): the committed state of
-- message key `key` in `store` ("default" unless the step named one): the
-- value of state key `name`, or with name nil a table of all of them.
-- Without a partition, the one partition holding state for the key.
function Driver:state(store, key, name, partition)
  if store == nil then store = "default" end
  local known = {}
  for _, s in ipairs(self.spec.stores) do known[#known + 1] = s.name end
  local found = false
  for _, s in ipairs(known) do if s == store then found = true end end
  if not found then
    error("d:state: the app has no state store " .. show(store) .. suggest(store, known) ..
      "; its stores: " .. quoted_list(known), 2)
  end
  if key == nil then error("d:state: expected a message key", 2) end
  local kb = self.state_mod.key_bytes(key)
  local parts = self.store[store] or {}
  if partition == nil then
    local ps = {}
    for p, keys in pairs(parts) do if keys[kb] then ps[#ps + 1] = p end end
    if #ps == 0 then return nil end
    if #ps > 1 then
      table.sort(ps)
      error("d:state: key " .. show(key) .. " has state in partitions " .. table.concat(ps, ", ") ..
        ": pass the partition, d:state(store, key, name, partition)", 2)
    end
    partition = ps[1]
  end
  local entries = parts[partition] and parts[partition][kb]
  if entries == nil then return nil end
  if name == nil then
    local t = {}
    for sk, bytes in pairs(entries) do t[sk] = core.decode("msgpack", bytes) end
    return t
  end
  local bytes = entries[name]
  if bytes == nil then return nil end
  return core.decode("msgpack", bytes)
end

-- d:errors(): the records that met on_error since the last call (the list
-- is emptied): { topic, partition, offset, key, value, timestamp, stage =
-- "decode"|"process"|"encode", error = message, policy = "skip"|
-- "dead-letter"|"stop", reason = why an on_error function's answer
-- became "stop", or nil }. Also failures the runtime only logs: a source
-- that raised (stage "source") or a source output that cannot be encoded
-- (stage "encode"), with policy "logged" / "dropped".
function Driver:errors()
  local e = self.errs
  self.errs = {}
  return e
end

-- d:printed(): what the app wrote to stdout (sdf:print()) since the last
-- call.
function Driver:printed()
  local s = table.concat(self.out_text)
  self.out_text = {}
  return s
end

-- d:restart(): as if the process restarted: the script is loaded again
-- into fresh modules and state comes back from what was committed. Topics,
-- offsets, the clock and unread records are kept; nothing is redelivered.
function Driver:restart()
  self.stopped = nil
  self.queue = {}
  self:_load()
end

-- Header lookup in a read record: the value of the first header `name`.
function M.header(rec, name)
  for _, h in ipairs(rec.headers or {}) do
    if h[1] == name then return h[2] end
  end
  return nil
end

return M
