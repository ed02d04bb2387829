-- luastream.testing: a test driver that runs a pipeline script without Kafka,
-- so users unit-test their pipelines with busted (docs/testing.md).
--
--   local testing = require("luastream.testing")
--   local d = testing.driver("crash_detection.lua")
--   d:send("phone-data", { key = "phone-1", value = { gX = 0, gY = 0, gZ = 1, ts = 1 } })
--   local alerts = d:read("crash-alerts")   -- { {key=, value=, timestamp=, ...}, ... }
--   d:advance(1000)                         -- runs app:source() timers that fall due
--
-- The pipeline runs in C (runtime/driver.c, through the ls_ffi_driver_* FFI
-- functions of runtime/driver.h), on the batch path `luastream run` uses: its
-- own Lua state with the script loaded by rt.load, decoding, the pipeline
-- call, the row-by-row replay, on_error and dead letters, encoding, the
-- producer's partitioner (murmur2_random), and state through the
-- checkpointer and LMDB (in a temporary directory).
--
-- What this module owns is what Kafka would do around it:
--  * option checking and the messages for bad use;
--  * in-memory topics: per topic and partition next offsets, the records
--    written and not yet read, and records the app writes to a topic it also
--    reads, fed back to it as input batches;
--  * turning sent values into bytes with the input topic's formats, and
--    output bytes into values with the output topic's formats when read;
--  * the clock: d:advance runs the sources that fall due, in order.
local ffi = require("ffi")
local core = require("luastream.core")

-- runtime/driver.h, declared once per Lua state (this module may be loaded
-- twice; ffi.cdef cannot declare a type twice) from the header's own text,
-- which the binary carries (ls_ffi_driver_header): preprocessor lines are
-- dropped, the rest is C that ffi.cdef reads. Mistakes are raised.
if not pcall(ffi.typeof, "ls_driver_opts") then
  ffi.cdef("const char *ls_ffi_driver_header(void);") -- a function may be declared again
  local header = ffi.string(ffi.C.ls_ffi_driver_header())
  ffi.cdef((header:gsub("\n#[^\n]*", "\n")))
end

local C = ffi.C

local M = {}

local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local format, byte = string.format, string.byte
local floor = math.floor

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

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

-- The bytes of a C string of n bytes, or nil for NULL.
local function bytes_or_nil(p, n)
  if p == nil then return nil end
  return ffi.string(p, n)
end

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

local function copy_headers(h)
  if h == nil then return nil end
  local c = {}
  for j, p in ipairs(h) do c[j] = { p[1], p[2] } end
  return c
end

-- Headers of a C record (names, values, lens; nheaders), as
-- { {name, value}, ... } or nil.
local function c_headers(r)
  local n = r.nheaders
  if n <= 0 then return nil end
  local h = {}
  for j = 0, n - 1 do
    h[j + 1] = { ffi.string(r.header_names[j]), bytes_or_nil(r.header_values[j], r.header_lens[j]) }
  end
  return h
end

-- A sent value as an `int64_t` field takes it: a whole number (toward zero).
local function whole(x)
  return x >= 0 and floor(x) or -floor(-x)
end

-- Message keys as luastream.state turns them into bytes (the LMDB key).
local key_bytes = require("luastream.state").key_bytes

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

-- An app option of `set` as `--set` writes it: "name=value".
local function set_string(k, v)
  if type(k) ~= "string" or k == "" or k:find("=", 1, true) then
    error("testing.driver: option 'set': app option names must be strings without '=', got " .. show(k), 3)
  end
  local tv = type(v)
  local s
  if tv == "string" then
    s = v
  elseif tv == "number" then
    s = tostring(v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
  elseif tv == "boolean" then
    s = tostring(v)
  else
    error("testing.driver: option 'set': the value of '" .. k .. "' must be a string, number or boolean " ..
      "(as --set takes it), got " .. tv, 3)
  end
  return k .. "=" .. s
end

-- Reads the spec (and what follows from it) after a load.
function Driver:_loaded()
  local json = C.ls_ffi_driver_spec_json(self.ptr)
  if json == nil then error("testing: " .. ffi.string(C.ls_ffi_driver_error(self.ptr)), 0) end
  local spec = core.decode("json", ffi.string(json))
  for _, f in ipairs({ "inputs", "outputs", "sources", "stores" }) do
    if spec[f] == nil then spec[f] = {} end
  end
  self.spec = spec
  self.input_id, self.output_id = {}, {}
  for id, t in ipairs(spec.inputs) do self.input_id[t.name] = id end
  for id, t in ipairs(spec.outputs) do self.output_id[t.name] = id end
  self.source_next = {}
  for k, s in ipairs(spec.sources) do self.source_next[k] = self.clock + s.every end
  C.ls_ffi_driver_set_clock(self.ptr, self.clock)
end

-- A driver holds a Lua state and an LMDB environment in C, which the
-- garbage collector of this state does not see: it sees a pointer. So that
-- drivers a spec dropped do not pile up, every few new drivers run a full
-- collection (cheap next to loading a script).
local COLLECT_EVERY, since_collect = 16, 0

-- testing.driver(script, opts) loads a pipeline script into a new driver.
--   opts.set        = { option = value }: app options, as `--set` does
--   opts.name       = app name (as --name)
--   opts.partitions = partitions of every topic (default 1). Records without
--                     a partition go where the producer would put them
--                     (murmur2 of the key; no key: a random partition).
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
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("testing.driver: option 'name' must be a string, got " .. type(opts.name), 2)
  end
  local partitions = opts.partitions == nil and 1 or opts.partitions
  if type(partitions) ~= "number" or partitions < 1 or partitions % 1 ~= 0 or partitions > 0x7fffffff then
    error("testing.driver: option 'partitions' must be a whole number >= 1, got " .. tostring(partitions), 2)
  end
  local start = opts.start_ms == nil and 0 or opts.start_ms
  if type(start) ~= "number" or start ~= start then
    error("testing.driver: option 'start_ms' must be a number of milliseconds, got " .. type(start), 2)
  end
  local path = resolve(script, 2)

  since_collect = since_collect + 1
  if since_collect >= COLLECT_EVERY then
    since_collect = 0
    collectgarbage()
  end

  -- The C strings live in `keep` until ls_ffi_driver_new has copied them.
  local keep = { path, opts.name }
  local sets, nsets = nil, 0
  if opts.set then
    local names = sorted_keys(opts.set)
    sets = ffi.new("const char *[?]", math.max(#names, 1))
    for _, k in ipairs(names) do
      local s = set_string(k, opts.set[k])
      keep[#keep + 1] = s
      sets[nsets] = s
      nsets = nsets + 1
    end
  end
  local copts = ffi.new("ls_driver_opts")
  copts.name = opts.name
  copts.sets = sets
  copts.nsets = nsets
  copts.dev_broker = opts.dev_broker and 1 or 0
  copts.echo = opts.echo and 1 or 0
  copts.partitions = partitions
  copts.start_ms = start
  local code = ffi.new("int[1]")
  local err = ffi.new("char[?]", 4096)
  keep[#keep + 1] = sets
  M._anchor = keep
  local ptr = C.ls_ffi_driver_new(path, copts, code, err, 4096)
  M._anchor = nil
  if ptr == nil then
    local msg = ffi.string(err)
    if code[0] == C.LS_DRV_SCRIPT then error(msg, 0) end -- file:line, as `luastream run` prints it
    error("testing.driver: " .. msg, 2)
  end
  local self = setmetatable({
    script = path,
    ptr = ffi.gc(ptr, C.ls_ffi_driver_free),
    partitions = partitions,
    clock = start,
    offsets = {},          -- [topic][partition] = next offset
    logs = {},             -- [topic] = records written and not yet read
    global_log = {},       -- records sent to global tables' topics, read again by d:restart()
    errs = {},             -- entries for d:errors()
    queue = {},            -- records waiting to be consumed
    stopped = nil,         -- the error that stopped the app (on_error = "stop")
  }, Driver)
  self:_loaded()
  return self
end

---------------------------------------------------------------------------
-- Topics
---------------------------------------------------------------------------

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

-- The formats the app declared for a topic: { key =, value =, arrays = },
-- or nil when the driver does not know them.
function Driver:_formats(topic)
  local declared = self.spec.topics
  if type(declared) == "table" and declared[topic] then return declared[topic] end
  local iid = self.input_id[topic]
  if iid then return self.spec.inputs[iid] end
  local oid = self.output_id[topic]
  if oid then return self.spec.outputs[oid] end
  return nil
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
    if self.spec.inputs[tid].global then self.global_log[#self.global_log + 1] = rec end
  end
end

-- After a load: the global tables' topics read whole before anything else,
-- as the runtime does on start (their contents live in the Lua state).
function Driver:_read_globals()
  for _, rec in ipairs(self.global_log) do
    local tid = self.input_id[rec.topic]
    if tid and self.spec.inputs[tid].global then
      rec.tid = tid
      self.queue[#self.queue + 1] = rec
    end
  end
  self:_drain()
end

-- A value as d:errors() shows it: decoded with the format, else the bytes.
local function decoded_or_bytes(fmt, bytes, opts)
  if bytes == nil then return nil end
  local ok, v = pcall(core.decode, fmt, bytes, opts)
  if ok then return v end
  return bytes
end

-- Takes what the last C call produced: errors (for d:errors(); batch is
-- the list of input records, nil for a source, k the source) and outputs
-- (into the topics). Returns the stop's error entry, if any.
function Driver:_collect(batch, k)
  local ptr = self.ptr
  local stop
  for i = 0, C.ls_ffi_driver_nerr(ptr) - 1 do
    local e = C.ls_ffi_driver_err(ptr, i)
    local entry = {
      stage = ffi.string(e.stage), error = ffi.string(e.error), policy = ffi.string(e.policy),
      reason = e.reason ~= nil and ffi.string(e.reason) or nil,
    }
    local m = batch and e.input >= 0 and batch[e.input + 1]
    if m then
      local input = self.spec.inputs[m.tid]
      entry.topic, entry.partition, entry.offset, entry.timestamp = m.topic, m.partition, m.offset, m.timestamp
      entry.key = decoded_or_bytes(input.key, m.key)
      entry.value = decoded_or_bytes(input.value, m.value, decode_opts(input))
    else
      local s = k and self.spec.sources[k]
      entry.topic, entry.timestamp = s and s.topic, self.clock
    end
    self.errs[#self.errs + 1] = entry
    if entry.policy == "stop" then stop = entry end
  end
  for i = 0, C.ls_ffi_driver_nout(ptr) - 1 do
    local o = C.ls_ffi_driver_out(ptr, i)
    local topic = ffi.string(o.topic)
    local ts = tonumber(o.timestamp)
    if ts == 0 then ts = self.clock end -- the producer stamps timestamp 0 with "now"
    self:_append({ topic = topic, partition = o.partition, offset = self:_next_offset(topic, o.partition),
      key = bytes_or_nil(o.key, o.key_len), value = bytes_or_nil(o.value, o.value_len),
      timestamp = ts, headers = c_headers(o) })
  end
  C.ls_ffi_driver_clear(ptr)
  return stop
end

-- The error a stop raises: "topic[p]@offset: stage error: ... (on_error = ...)".
function Driver:_stop_message(entry)
  if not entry or not entry.topic then
    return ffi.string(C.ls_ffi_driver_error(self.ptr))
  end
  return format("%s[%d]@%d: %s error: %s (on_error = %s%s)", entry.topic, entry.partition, entry.offset,
    entry.stage, entry.error, self.spec.on_error == "function" and "function" or "'stop'",
    entry.reason and ("; " .. entry.reason) or "")
end

-- Runs one batch of input records (each { topic, tid, partition, offset,
-- key = bytes|nil, value = bytes|nil, timestamp, headers }) through C.
-- Returns the message of a stop, or nil.
function Driver:_batch(batch)
  local n = #batch
  local recs = ffi.new("ls_driver_rec[?]", n)
  local keep = { batch, recs } -- alive until C returns
  for i, m in ipairs(batch) do
    local r = recs[i - 1]
    r.topic = m.tid - 1
    r.partition = m.partition
    r.offset = m.offset
    r.timestamp = m.timestamp
    if m.key ~= nil then r.key, r.key_len = m.key, #m.key end
    if m.value ~= nil then r.value, r.value_len = m.value, #m.value end
    local h = m.headers
    if h and #h > 0 then
      local nh = #h
      local names, vals = ffi.new("const char *[?]", nh), ffi.new("const char *[?]", nh)
      local lens = ffi.new("size_t[?]", nh)
      for j, p in ipairs(h) do
        names[j - 1] = p[1]
        if p[2] ~= nil then vals[j - 1], lens[j - 1] = p[2], #p[2] end
      end
      keep[#keep + 1], keep[#keep + 2], keep[#keep + 3] = names, vals, lens
      r.nheaders, r.header_names, r.header_values, r.header_lens = nh, names, vals, lens
    end
  end
  self.keep = keep
  local rc = C.ls_ffi_driver_process(self.ptr, recs, n)
  self.keep = nil
  local stop = self:_collect(batch, nil)
  if rc == C.LS_DRV_STOPPED then return self:_stop_message(stop) end
  if rc < 0 then error("testing: " .. ffi.string(C.ls_ffi_driver_error(self.ptr)), 0) end
  return nil
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

-- The bytes of a record's key or value: raw_<field> as given, or <field>
-- written in the topic's format. Errors are raised at the caller's caller.
local function field_bytes(what, field, fmt, raw, value)
  if raw ~= nil then
    if type(raw) ~= "string" then error(what .. ": raw_" .. field .. " must be a string of bytes", 4) end
    return raw
  end
  if value == nil then return nil end
  local ok, b = pcall(core.encode, fmt, value)
  if not ok then
    error(what .. ": the " .. field .. " cannot be written in the topic's " .. field .. " format '" ..
      fmt .. "': " .. codec_message(b), 4)
  end
  return b
end

-- Builds the input record for topic `topic` from the table form.
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
    if type(ts) ~= "number" or ts ~= ts or ts == math.huge or ts == -math.huge then
      error(what .. ": timestamp must be a number of milliseconds, got " .. type(r.timestamp), 3)
    end
  end
  local headers = norm_headers(r.headers, what)
  local p = r.partition
  if p == nil then
    p = C.ls_ffi_partition(kb, kb and #kb or 0, self.partitions)
  elseif type(p) ~= "number" or p < 0 or p % 1 ~= 0 or p > 0x7fffffff then
    error(what .. ": partition must be a whole number >= 0, got " .. tostring(p), 3)
  end
  return { topic = topic, partition = p, key = kb, value = vb, timestamp = whole(ts), headers = headers }
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
  send_records(self, topic, { self:_record(topic, tid, r, what) })
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
  send_records(self, topic, list)
end

-- d:advance(ms): moves the clock forward, running each app:source() whose
-- time comes (first `every` ms after the start, then every `every` ms), then
-- closing the windows idle at the new time (close_on_idle).
function Driver:advance(ms)
  if type(ms) ~= "number" or ms ~= ms or ms < 0 or ms == math.huge then
    error("d:advance: expected a number of milliseconds >= 0, got " .. tostring(ms), 2)
  end
  self:_check_running("d:advance")
  local target = self.clock + ms
  local next_at, sources = self.source_next, self.spec.sources
  while true do
    local due
    for k = 1, #sources do
      if next_at[k] <= target and (due == nil or next_at[k] < due) then due = next_at[k] end
    end
    if due == nil then break end
    self.clock = due
    C.ls_ffi_driver_set_clock(self.ptr, due)
    for k = 1, #sources do
      if next_at[k] <= due then
        next_at[k] = next_at[k] + sources[k].every
        if C.ls_ffi_driver_run_source(self.ptr, k - 1) < 0 then
          self:_collect(nil, k)
          error("testing: " .. ffi.string(C.ls_ffi_driver_error(self.ptr)), 0)
        end
        self:_collect(nil, k)
        self:_drain()
      end
    end
  end
  self.clock = target
  C.ls_ffi_driver_set_clock(self.ptr, target)
  -- windows with close_on_idle whose keys had no row for that long close now
  if self.spec.idle_check_ms > 0 then
    if C.ls_ffi_driver_run_idle(self.ptr) < 0 then
      self:_collect(nil, nil)
      error("testing: " .. ffi.string(C.ls_ffi_driver_error(self.ptr)), 0)
    end
    self:_collect(nil, nil)
    self:_drain()
  end
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
  local formats = self:_formats(topic)
  local kf, vf = "bytes", "bytes"
  if formats then kf, vf = formats.key, formats.value end
  local vopts = decode_opts(formats)
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

-- The committed state of key bytes kb in store/partition p (-1: the one
-- partition holding it): { state_key = value } or nil, and the number of
-- partitions holding state for the key.
function Driver:_state_of(store, p, kb)
  local nparts, part = ffi.new("int[1]"), ffi.new("int32_t[1]")
  local n = C.ls_ffi_driver_state(self.ptr, store, p, kb, #kb, nparts, part)
  if n < 0 then error("d:state: " .. ffi.string(C.ls_ffi_driver_error(self.ptr)), 3) end
  if n == 0 then return nil, nparts[0] end
  local name, nlen = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local val, vlen = ffi.new("const char *[1]"), ffi.new("size_t[1]")
  local t = {}
  for i = 0, n - 1 do
    C.ls_ffi_driver_state_entry(self.ptr, i, name, nlen, val, vlen)
    t[ffi.string(name[0], nlen[0])] = core.decode("msgpack", ffi.string(val[0], vlen[0]))
  end
  return t, nparts[0]
end

-- d:state(store, key [, name [, partition]]): the committed state of
-- message key `key` in `store` ("default" unless the step named one): the
-- value of state key `name`, or with name nil a table of all of them.
-- Without a partition, the one partition holding state for the key.
function Driver:state(store, key, name, partition)
  if store == nil then store = "default" end
  local known, owner = {}, nil
  for _, s in ipairs(self.spec.stores) do
    known[#known + 1] = s.name
    if s.name == store then owner = s.topic end
  end
  if not owner then
    error("d:state: the app has no state store " .. show(store) .. suggest(store, known) ..
      "; its stores: " .. quoted_list(known), 2)
  end
  if key == nil then error("d:state: expected a message key", 2) end
  if partition ~= nil and (type(partition) ~= "number" or partition < 0 or partition % 1 ~= 0) then
    error("d:state: partition must be a whole number >= 0, got " .. tostring(partition), 2)
  end
  local kb = key_bytes(key)
  local entries, nparts = self:_state_of(store, partition or -1, kb)
  if partition == nil and nparts > 1 then
    -- Which ones: the partitions of the store's topic that got records.
    local ps = {}
    for p in pairs(self.offsets[owner] or {}) do
      if self:_state_of(store, p, kb) then ps[#ps + 1] = p end
    end
    table.sort(ps)
    error("d:state: key " .. show(key) .. " has state in partitions " .. table.concat(ps, ", ") ..
      ": pass the partition, d:state(store, key, name, partition)", 2)
  end
  if entries == nil then return nil end
  if name == nil then return entries end
  return entries[name]
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
  local len = ffi.new("size_t[1]")
  local p = C.ls_ffi_driver_printed(self.ptr, len)
  return ffi.string(p, len[0])
end

-- d:restart(): as if the process restarted: the script is loaded again
-- and state comes back from what was committed; global tables read their
-- topics again. Topics, offsets, the clock and unread records are kept;
-- nothing else is redelivered.
function Driver:restart()
  self.stopped = nil
  self.queue = {}
  local rc = C.ls_ffi_driver_restart(self.ptr)
  if rc ~= C.LS_DRV_OK then
    local msg = ffi.string(C.ls_ffi_driver_error(self.ptr))
    self.stopped = "the script did not load again: " .. msg
    if rc == C.LS_DRV_SCRIPT then error(msg, 0) end
    error("d:restart: " .. msg, 2)
  end
  self:_loaded()
  self:_read_globals()
end

-- Header lookup in a read record: the value of the first header `name`.
function M.header(rec, name)
  for _, h in ipairs(rec.headers or {}) do
    if h[1] == name then return h[2] end
  end
  return nil
end

return M
