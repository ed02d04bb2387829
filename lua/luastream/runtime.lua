-- luastream.runtime: the batch ABI between the C runtime and the Lua layer
-- (docs/internals.md, "The batch ABI").
--
--   spec = rt.load(script_path, cli)
--   nout = rt.run_batch(n, meta, first, last, json_buf)
--   nout = rt.run_source(k, now_ms, json_buf)
--   nout, err = rt.run_idle(now_ms, json_buf)
--   policy, message = rt.handle_error(err, row, msg)
--
-- Inputs: C fills rt.rows[i], rt.keys[i], rt.hdrs[i] (1-based; entries past
-- n are stale) and passes meta, a 0-based ls_meta_t array (cdata, or a
-- light userdata pointing at the C array). C may replace these three tables
-- between calls; they are read at the start of each call.
--
-- Outputs: each call writes its outputs to rt.out_val / out_key / out_topic /
-- out_ts / out_row / out_hdr at 1..nout and returns nout. All six entries
-- are written for every j in 1..nout (out_key and out_hdr may be nil).
-- Entries past nout are cleared before the call returns (C reads 1..nout).
-- The six tables are created once and never replaced; C must not replace
-- them either. out_topic is a 1-based index into spec.outputs; the topic id
-- in meta is a 1-based index into spec.inputs. out_ts is always set for
-- pipeline outputs (the row's timestamp unless set_timestamp changed it);
-- for sources it is the timestamp passed to emit, else now_ms.
-- json_buf (a light userdata: C's ls_buf, or nil) receives the JSON text of
-- the flat rows of JSON topics (luastream.jsonout), and out_json_end[j] where
-- output j's ends there, or -1 when C is to encode out_val[j] itself.
--
-- Rows are mutated in place by the pipeline (column assignment, update,
-- drop, fill). A batch that fails has already changed the rows before the
-- failing one; when C replays them one by one, run_batch returns the
-- outputs those rows produced in the failed batch instead of running them
-- again (see "Replays" below). The failing row itself may have been changed
-- by the steps before the failing one.
local ffi = require("ffi")
local core = require("luastream.core")
local ls = require("luastream")
local util = require("luastream.util")
local compile = require("luastream.compile")
local state = require("luastream.state")
local window = require("luastream.window")
local jsonout = require("luastream.jsonout")
local jsonin = require("luastream.jsonin")

-- ls_meta_t is declared once per Lua state (this module is loaded again by
-- each luastream.testing driver, and ffi.cdef cannot declare a type twice).
-- Any other error in the declaration is raised, and a type of that name with
-- another layout is refused: it must match runtime/batch.h.
if not pcall(ffi.typeof, "ls_meta_t") then
  ffi.cdef([[
typedef struct ls_meta {
  double offset;     /* exact up to 2^53 */
  double timestamp;  /* ms since the epoch; the record's Kafka timestamp */
  int32_t partition;
  int32_t topic;     /* index into spec.inputs (1-based) */
} ls_meta_t;
]])
end
assert(ffi.sizeof("ls_meta_t") == 24 and ffi.offsetof("ls_meta_t", "offset") == 0 and
  ffi.offsetof("ls_meta_t", "timestamp") == 8 and ffi.offsetof("ls_meta_t", "partition") == 16 and
  ffi.offsetof("ls_meta_t", "topic") == 20,
  "luastream.runtime: ls_meta_t is declared with another layout than runtime/batch.h's")

local clear = require("table.clear")

local rt = {}

rt.rows, rt.keys, rt.hdrs = {}, {}, {}

local out = { val = {}, key = {}, topic = {}, ts = {}, row = {}, hdr = {}, json_end = {} }
rt.out_val, rt.out_key, rt.out_topic = out.val, out.key, out.topic
rt.out_ts, rt.out_row, rt.out_hdr = out.ts, out.row, out.hdr
rt.out_json_end = out.json_end
local is_json = {} -- output topic id -> its values are JSON

local P = nil          -- the loaded program
local high = 0         -- highest output index written since the last finish

-- Where a pipeline is: the generated row loop sets at.i (the row) and
-- at.nout (the outputs of the rows before it) at the start of every row, and
-- at.step (an index into rt.steps) before calling a user function: stores
-- into a C struct, no allocation. When a batch fails, at.i is the failing
-- row and at.nout the outputs of the rows that completed. The runtime's
-- watchdog (runtime/watchdog.h) reads the struct from its own thread.
if not pcall(ffi.typeof, "ls_wd_row_t") then
  ffi.cdef([[
typedef struct ls_wd_row { int32_t i; int32_t nout; int32_t step; int32_t spare; } ls_wd_row_t;
]])
end
local at = ffi.cast("ls_wd_row_t *", core.watch_row())
-- "file:line: what" of every user function's step (sources included), in
-- at.step order; C copies them when the script is loaded.
rt.steps = {}

local function clear_outputs()
  clear(out.val); clear(out.key); clear(out.topic)
  clear(out.ts); clear(out.row); clear(out.hdr); clear(out.json_end)
  high = 0
end

-- rt.row_width: the most fields of a flat row that luastream.jsonout wrote
-- in the last call that wrote one. C's decoders make that much room in each
-- top-level object they decode (LS_ROW_WIDTH in runtime/luavalue.h), so that
-- the columns a pipeline adds to its rows (an assignment, a join's merge)
-- find room in the table instead of growing it (a rehash per row).
rt.row_width = 0

-- rt.build_flat(flat, rows, width): C's decoder calls it once per batch that
-- has flat JSON rows, to make their tables (luastream.jsonin).
rt.build_flat = jsonin.build

-- Ends a call that wrote outputs 1..nout: clears the entries past them and
-- writes their JSON values into json_buf.
local function finish(nout, json_buf)
  if nout > high then high = nout end
  if high > nout then
    local val, key, topic, ts, row, hdr, je = out.val, out.key, out.topic, out.ts, out.row, out.hdr, out.json_end
    for j = nout + 1, high do
      val[j] = nil; key[j] = nil; topic[j] = nil; ts[j] = nil; row[j] = nil; hdr[j] = nil; je[j] = nil
    end
  end
  high = nout
  local width = jsonout.write(json_buf, nout, out.val, out.topic, is_json, out.json_end)
  if width > 0 then rt.row_width = width end
  return nout
end

local function describe(e)
  if type(e) == "string" then return e end
  if e == nil then return "nil" end
  return "(error object is a " .. type(e) .. " value: " .. tostring(e) .. ")"
end

---------------------------------------------------------------------------
-- Loading
---------------------------------------------------------------------------

local function add_script_dir(path)
  local dir = path:match("^(.*)[/\\][^/\\]*$")
  if dir == nil or dir == "" then dir = (path:sub(1, 1) == "/") and "" or "." end
  local entry = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if package.path:sub(1, #entry) ~= entry and not package.path:find(entry, 1, true) then
    package.path = entry .. package.path
  end
end

-- A property's value from { env = "NAME" } or { file = "PATH" } (a file's one
-- trailing newline dropped), or nil and why. The value itself is never part
-- of a message.
local function read_secret(ref)
  if ref.env then
    local v = os.getenv(ref.env)
    if v == nil or v == "" then return nil, "environment variable " .. ref.env .. " is not set or empty" end
    return v
  end
  local f, err = io.open(ref.file, "rb")
  if not f then return nil, "cannot read file " .. tostring(err) end
  local v = f:read("*a")
  f:close()
  if v == nil then return nil, "cannot read file " .. ref.file end
  return (v:gsub("\r?\n$", ""))
end

-- Property values as strings. Values from the environment or a file are read
-- when the process will connect to Kafka (cli.secrets, `luastream run`); the
-- test driver, which does not, leaves those properties out.
local function stringify_kafka(k, resolve, loc)
  local t = {}
  for name, v in pairs(k) do
    if type(v) == "table" then
      if resolve then
        local value, why = read_secret(v)
        if value == nil then error(loc .. ": ls.app: kafka property '" .. name .. "': " .. why, 0) end
        t[name] = value
      end
    elseif type(v) == "number" and v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then
      t[name] = string.format("%d", v)
    else
      t[name] = tostring(v)
    end
  end
  return t
end

-- The spec handed to C (docs/internals.md, "The batch ABI"): every field
-- set, every value checked and canonical (luastream's init.lua checked the
-- options and resolved their defaults and aliases). runtime/spec.c refuses
-- a missing field; only broker and dead_letter may be nil (none).
local function build(app, script_name, cli)
  app.frozen = true
  local o = app.options
  if #app.inputs == 0 and #app.sources == 0 then
    error(app.loc .. ": ls.app: nothing to run: declare app:dataframe(topic) or app:source(topic, fn)", 0)
  end
  local spec = {
    name = app.name,
    broker = app.broker,              -- nil: the embedded dev broker
    guarantee = o.guarantee,
    commit_interval = o.commit_interval,
    commit_every = o.commit_every,
    offset_reset = o.offset_reset,
    state_dir = o.state_dir,
    batch_size = o.batch_size,
    -- whole milliseconds the loop waits for a batch; at least 1, so an
    -- idle app with batch_ms = 0 does not spin
    batch_ms = math.max(1, math.floor(o.batch_ms)),
    wait_for_topics = o.wait_for_topics,
    batch_time_limit = o.batch_time_limit, -- s, 0: none (runtime/watchdog.h)
    heap_limit_mb = o.heap_limit_mb,       -- MB, 0: none
    join_wait = o.join_wait,               -- ms (runtime/align.h)
    http = o.http,                    -- nil: --http or LUASTREAM_HTTP, else off
    on_error = type(o.on_error) == "function" and "function" or o.on_error,
    dead_letter = o.dead_letter,      -- nil: none
    kafka = stringify_kafka(o.kafka, cli.secrets, app.loc),
    inputs = {},
    outputs = {},
    sources = {},
    stores = {},
  }
  state.reset()
  state.set_cache_limit(o.state_cache_keys)
  for k, name in ipairs(app.stores) do
    local keep = app.store_keep_expired[name] or false
    state.store(name).keep_expired = keep
    local topics = app.store_topics[name]
    -- an app:table's store has no changelog of its own: its topic is one
    -- (restored from it up to the committed offset, docs/joins.md)
    local source = app.store_source[name] or false
    spec.stores[k] = { name = name, topic = topics[1], topics = topics,
      changelog = source and topics[1] or ls._changelog_topic(app.name, name), source = source,
      sweep = not keep }
  end
  local steps = {}
  rt.steps = steps
  local env = {
    out = out,
    at = at,
    steps = steps,
    output_id = function(topic) return app.output_id[topic.name] end,
  }
  local pipelines = {}
  for id, topic in ipairs(app.inputs) do
    spec.inputs[id] = { name = topic.name, key = topic.key, value = topic.value, arrays = topic.arrays,
      tombstones = app.tables[topic.name] ~= nil, global = app.tables[topic.name] ~= nil and
        app.tables[topic.name].global or false }
    local p = compile.compile_topic(topic, app.roots[topic.name], env)
    p.topic = topic.name
    pipelines[id] = p
  end
  clear(is_json)
  for id, topic in ipairs(app.outputs) do
    spec.outputs[id] = { name = topic.name, key = topic.key, value = topic.value }
    is_json[id] = topic.value == "json"
  end
  spec.repartitions = {}
  for k, r in ipairs(app.repartitions) do
    spec.repartitions[k] = { topic = r.topic, like = r.like, partitions = r.partitions }
  end
  local sources = {}
  for k, s in ipairs(app.sources) do
    local id = app.output_id[s.topic.name]
    spec.sources[k] = { every = s.every, topic = s.topic.name, output = id }
    steps[#steps + 1] = s.loc .. ": source '" .. s.topic.name .. "'"
    sources[k] = { fn = s.fn, loc = s.loc, topic = s.topic.name, output = id, step = #steps }
  end
  -- how often the loop closes idle windows: a quarter of the shortest
  -- close_on_idle, between 10 ms and 1 s (0: no window closes on idleness)
  local idle_min = nil
  for _, R in ipairs(window.idle_steps()) do
    if idle_min == nil or R.idle < idle_min then idle_min = R.idle end
  end
  spec.idle_check_ms = idle_min and math.max(10, math.min(1000, idle_min / 4)) or 0
  local step_at = {} -- chunk name -> { line -> step }, for the error handler
  for _, p in ipairs(pipelines) do step_at[p.chunkname] = p.step_at end
  P = { app = app, spec = spec, pipelines = pipelines, sources = sources, script = script_name, step_at = step_at }
  rt.spec = spec
  rt.pipelines = pipelines
  -- Every topic the script declared, with its formats (for the test driver,
  -- which decodes what the app writes as a consumer of that topic would).
  rt.topics = {}
  for name, t in pairs(app.topics) do
    rt.topics[name] = { key = t.key, value = t.value, arrays = t.arrays }
  end
  return spec
end

-- Runs a pipeline script and compiles what it declared. script is a path
-- (or, for tests, a function that declares the app). cli = { broker=,
-- name=, state_dir=, set = { option = "value" } }.
function rt.load(script, cli)
  cli = cli or {}
  if type(cli) ~= "table" then error("rt.load: cli must be a table", 2) end
  local chunk, script_name
  if type(script) == "string" then
    script_name = script
    local f, err = loadfile(script)
    if not f then
      err = tostring(err)
      if err:sub(1, 12) == "cannot open " then
        err = script .. ": cannot open the script (" .. (err:match(": ([^:]*)$") or err) .. ")"
      elseif err:sub(1, #script) ~= script then
        err = script .. ": " .. err
      end
      error(err, 0)
    end
    add_script_dir(script)
    chunk = f
  elseif type(script) == "function" then
    chunk = script
    local info = debug.getinfo(script, "S")
    script_name = info.short_src
  else
    error("rt.load: expected a script path, got " .. type(script), 2)
  end
  P = nil
  ls._begin({ script = type(script) == "string" and script or nil, cli = cli })
  local ok, err = xpcall(chunk, function(e)
    if type(e) == "string" then return e end
    local where = util.callsite()
    return where .. ": " .. describe(e)
  end)
  local app = ls._finish()
  if not ok then error(err, 0) end
  if not app then
    error(script_name .. ": the script declares no app (local app = ls.app{ ... })", 0)
  end
  return build(app, script_name, cli)
end

---------------------------------------------------------------------------
-- Batches
---------------------------------------------------------------------------

local current = nil   -- the pipeline running (for the error handler)

-- The failing step: the innermost frame in the code of any topic's pipeline
-- with a step at its line. That may be another topic's than the one running:
-- the pairs an interval join finds when a row of the other side arrives run
-- through the rest of this side's pipeline, compiled into this side's chunk.
local function batch_handler(e)
  local p = current
  local node
  local level = 2
  local step_at = P.step_at
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local lines = step_at[info.source]
    if lines then
      node = lines[info.currentline]
      if node then break end
    end
    level = level + 1
  end
  local msg = util.strip_internal_pos(describe(e))
  if node then
    return node.loc .. ": " .. node.desc .. ": " .. msg
  end
  return "pipeline of topic '" .. p.topic .. "': " .. msg
end

local xpcall = xpcall
local meta_ptr_t = ffi.typeof("ls_meta_t *")
local last_ud, last_ptr = nil, nil

-- meta may be cdata (ls_meta_t[n] or ls_meta_t *) or a light userdata
-- pointing at the C array; the cast of the last pointer seen is reused.
local function as_meta(meta)
  if type(meta) == "userdata" then
    if meta ~= last_ud then
      last_ud, last_ptr = meta, ffi.cast(meta_ptr_t, meta)
    end
    return last_ptr
  end
  return meta
end

-- Replays. Rows are changed in place, so running a row of a failed batch
-- again would apply its in-place steps twice. When a batch fails, the
-- outputs of the rows that had completed are kept; when C then replays such
-- a row alone (first = last), those outputs are returned instead of running
-- it again. A row counts as the same only if its decoded value is the very
-- same Lua value and its topic, partition and offset match.
local replay = nil

local function keep_completed(rows, meta, first, upto, nout)
  local r = { rows = rows, first = first, upto = upto, value = {}, offset = {}, partition = {},
    topic = {}, outs = {} }
  for row = first, upto do
    local m = meta[row - 1]
    r.value[row] = rows[row]
    r.offset[row], r.partition[row], r.topic[row] = m.offset, m.partition, m.topic
  end
  for j = 1, nout do
    local row = out.row[j]
    if row ~= nil and row >= first and row <= upto then
      local list = r.outs[row]
      if not list then
        list = {}
        r.outs[row] = list
      end
      list[#list + 1] = { out.val[j], out.key[j], out.topic[j], out.ts[j], out.hdr[j] }
    end
  end
  return r
end

local function replayed(rows, meta, row, json_buf)
  local r = replay
  if r.rows ~= rows or row < r.first or row > r.upto then return nil end
  local m = meta[row - 1]
  if not rawequal(r.value[row], rows[row]) or r.offset[row] ~= m.offset or
    r.partition[row] ~= m.partition or r.topic[row] ~= m.topic then
    return nil
  end
  local list = r.outs[row]
  local nout = 0
  if list then
    for j = 1, #list do
      local o = list[j]
      out.val[j], out.key[j], out.topic[j], out.ts[j], out.row[j], out.hdr[j] = o[1], o[2], o[3], o[4], row, o[5]
    end
    nout = #list
  end
  return finish(nout, json_buf)
end

-- Runs rows first..last (default 1..n) through their topics' pipelines.
function rt.run_batch(n, meta, first, last, json_buf)
  if P == nil then error("run_batch: no script loaded (call rt.load first)", 0) end
  meta = as_meta(meta)
  first = first or 1
  last = last or n
  local rows, keys, hdrs = rt.rows, rt.keys, rt.hdrs
  if replay then
    if first == last then
      local nout = replayed(rows, meta, first, json_buf)
      if nout then return nout end
    else
      replay = nil
    end
  end
  local pipes = P.pipelines
  local nout = 0
  local i = first
  state.begin_batch()
  while i <= last do
    local t = meta[i - 1].topic
    local j = i
    while j < last and meta[j].topic == t do j = j + 1 end
    local p = pipes[t]
    if p == nil then
      clear_outputs()
      error(string.format("run_batch: row %d has topic id %d, which is not in spec.inputs (1..%d)",
        i, t, #pipes), 0)
    end
    current = p
    at.i = 0; at.step = 0
    local ok, res = xpcall(p.fn, batch_handler, i, j, meta, rows, keys, hdrs, nout)
    if not ok then
      current = nil
      local fi, fnout = at.i, at.nout
      if fi == 0 then fi = nil end -- failed before its first row (cannot happen today)
      state.undo_row(fi) -- the failing row leaves no state change behind
      if fi and fi > first then
        replay = keep_completed(rows, meta, first, fi - 1, fnout)
      end
      clear_outputs()
      error(res, 0)
    end
    nout = res
    i = j + 1
  end
  current = nil
  return finish(nout, json_buf)
end

---------------------------------------------------------------------------
-- Sources
---------------------------------------------------------------------------

local active = nil      -- the source whose function is running
local src_nout = 0
local src_now = 0

local function emit(value, key, ts)
  local s = active
  if s == nil then
    error("emit: called outside its source function", 2)
  end
  if value == nil then
    error("emit: value is nil (use ls.null for a JSON null)", 2)
  end
  if ts ~= nil then
    local tt = type(ts)
    if tt == "cdata" then ts = tonumber(ts) tt = "number" end
    if tt ~= "number" or ts ~= ts then
      error("emit: timestamp must be a number of milliseconds, got " .. tt, 2)
    end
  else
    ts = src_now
  end
  local j = src_nout + 1
  src_nout = j
  out.val[j] = value; out.key[j] = key; out.topic[j] = s.output
  out.ts[j] = ts; out.row[j] = 0; out.hdr[j] = nil
end

local function source_handler(e)
  local s = active
  return s.loc .. ": source '" .. s.topic .. "': " .. util.strip_internal_pos(describe(e))
end

-- Calls source k's function with emit(value, key, timestamp_ms) and now_ms.
function rt.run_source(k, now_ms, json_buf)
  if P == nil then error("run_source: no script loaded (call rt.load first)", 0) end
  local s = P.sources[k]
  if s == nil then
    error("run_source: no source " .. tostring(k) .. " (spec.sources has " .. #P.sources .. ")", 0)
  end
  src_now = now_ms or core.now_ms()
  src_nout = 0
  active = s
  at.i = 0; at.step = s.step
  local ok, err = xpcall(s.fn, source_handler, emit, src_now)
  active = nil
  if not ok then
    clear_outputs()
    error(err, 0)
  end
  return finish(src_nout, json_buf)
end

---------------------------------------------------------------------------
-- Windows closed on idleness (close_on_idle)
---------------------------------------------------------------------------

local IDLE_SCAN_MAX = 10000 -- idle keys taken per window step and partition per call
local idle_failed = {}

local function idle_error(R, key, p, err)
  idle_failed[#idle_failed + 1] = R.loc .. ": " .. R.desc .. ": closing the idle windows of key " ..
    util.tostr(key) .. " (partition " .. p .. ") failed, kept for the next try: " ..
    util.strip_internal_pos(describe(err))
end

-- Closes the windows idle at now_ms and runs the rest of their pipelines.
-- Returns nout; the outputs have out_row <= 0 (no input record). A key
-- whose close fails keeps its windows; the failures are raised together
-- after the outputs of the others are returned (nout, message).
function rt.run_idle(now_ms, json_buf)
  if P == nil then error("run_idle: no script loaded (call rt.load first)", 0) end
  now_ms = now_ms or core.now_ms()
  local nout = 0
  state.begin_batch()
  for _, R in ipairs(window.idle_steps()) do
    nout = window.close_idle(R, now_ms, nout, IDLE_SCAN_MAX, idle_error)
  end
  finish(nout, json_buf)
  if #idle_failed > 0 then
    local msg = table.concat(idle_failed, "; ")
    for j = #idle_failed, 1, -1 do idle_failed[j] = nil end
    return nout, msg
  end
  return nout
end

---------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------

local POLICIES = ls.ON_ERROR_POLICIES

-- Calls the user's on_error function (when on_error is one). Returns the
-- policy "skip" | "stop" | "dead-letter", plus a message when the function
-- failed or returned something else (then the policy is "stop").
function rt.handle_error(err, row, msg)
  if P == nil then return "stop", "handle_error: no script loaded" end
  local on_error = P.app.options.on_error
  if type(on_error) ~= "function" then return on_error end
  local info = debug.getinfo(on_error, "S")
  local src = info.source or ""
  local file = src:sub(1, 1) == "@" and src:sub(2) or info.short_src
  local where = file .. ":" .. tostring(info.linedefined)
  local ok, r = pcall(on_error, err, row, msg)
  if not ok then
    local m = where .. ": on_error function failed: " .. describe(r) ..
      " (while handling: " .. describe(err) .. ")"
    core.log("error", m)
    return "stop", m
  end
  if r == true then return "skip" end
  if r == false or r == nil then return "stop" end
  if type(r) == "string" and POLICIES[r] then return r end
  local m = where .. ": on_error function returned " ..
    (type(r) == "string" and ("'" .. r .. "'") or type(r)) ..
    "; expected 'skip', 'stop' or 'dead-letter' (stopping)"
  core.log("error", m)
  return "stop", m
end

-- The generated source of an input topic's pipeline (for debugging).
---------------------------------------------------------------------------
-- State (luastream.state), for checkpoints
---------------------------------------------------------------------------

-- The dirty state entries, taken for a checkpoint: rt.changes.store[j]
-- (index into spec.stores), .part[j], .key[j] (LMDB key), .val[j]
-- (MessagePack, or false for a delete), .expire[j] (ms since the epoch when
-- the entry expires, 0 for none), j = 1..n. Returns n.
rt.changes = { store = {}, part = {}, key = {}, val = {}, expire = {} }
function rt.take_state_changes(only)
  return state.take_changes(rt.changes, only)
end

-- Forgets the cached state of partition p (revoked or restored).
function rt.forget_partition(p)
  state.forget_partition(p)
end

function rt.source_of(topic_name)
  if P == nil then return nil end
  for id, input in ipairs(P.spec.inputs) do
    if input.name == topic_name then return P.pipelines[id].source end
  end
  return nil
end

return rt
