-- Shared helpers for the Lua specs.
--
-- Sets package.path so lua/ is found from any working directory, and, when
-- the specs run outside the luastream binary (plain `busted --lua=luajit`),
-- installs a pure-Lua stand-in for the C module luastream.core. Inside
-- `luastream test` the real module is used.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local root = here .. "../../"
local lua_dir = root .. "lua/"
if not package.path:find(lua_dir .. "?.lua", 1, true) then
  package.path = lua_dir .. "?.lua;" .. lua_dir .. "?/init.lua;" .. package.path
end

local ffi = require("ffi")

local H = {}

local has_core = pcall(require, "luastream.core")
H.real_core = has_core

if not has_core then
  -- Stand-in for development runs only: JSON through dkjson.
  local json = require("dkjson")
  local array_mt = { __jsontype = "array" }
  local null = json.null
  local function array(t)
    return setmetatable(t or {}, array_mt)
  end
  -- Declared unless this Lua state has the type already (this file is loaded
  -- by every spec); a declaration error is raised, and a type of that name
  -- with another layout than struct timespec's on Linux is refused.
  if not pcall(ffi.typeof, "ls_test_timespec") then
    ffi.cdef("typedef struct { long tv_sec; long tv_nsec; } ls_test_timespec; " ..
      "int clock_gettime(int clk, ls_test_timespec *tp);")
  end
  assert(ffi.sizeof("ls_test_timespec") == 2 * ffi.sizeof("long") and
    ffi.offsetof("ls_test_timespec", "tv_nsec") == ffi.sizeof("long"),
    "helpers.lua: ls_test_timespec is declared with another layout than struct timespec")
  local tsbuf = ffi.new("ls_test_timespec")
  local core = {
    null = null,
    array_mt = array_mt,
    array = array,
    encode = function(fmt, v)
      if fmt == "json" then
        local ok, s = pcall(json.encode, v)
        if not ok or s == nil then error("json: cannot encode " .. type(v), 2) end
        return s
      elseif fmt == "string" or fmt == "bytes" then
        return tostring(v)
      elseif fmt == "int" or fmt == "double" then
        return tostring(v)
      end
      error("encode: format '" .. tostring(fmt) .. "' is not available in the test stand-in", 2)
    end,
    decode = function(fmt, s)
      if fmt == "json" then
        local v, _, err = json.decode(s, 1, null, nil, array_mt)
        if err then error("json: " .. err, 2) end
        return v
      elseif fmt == "string" or fmt == "bytes" then
        return s
      elseif fmt == "int" or fmt == "double" then
        return tonumber(s)
      end
      error("decode: format '" .. tostring(fmt) .. "' is not available in the test stand-in", 2)
    end,
    now_ms = function()
      ffi.C.clock_gettime(0, tsbuf)
      return tonumber(tsbuf.tv_sec) * 1000 + math.floor(tonumber(tsbuf.tv_nsec) / 1e6)
    end,
    log = function(level, msg)
      H.logged[#H.logged + 1] = { level, msg }
    end,
  }
  package.preload["luastream.core"] = function() return core end
end

H.logged = {}

local core = require("luastream.core")
H.core = core
H.null = core.null

-- Captures core.log output during fn (works with both cores by wrapping).
function H.capture_log(fn)
  local saved = core.log
  local got = {}
  core.log = function(level, msg) got[#got + 1] = { level, msg } end
  local ok, err = pcall(fn)
  core.log = saved
  if not ok then error(err, 0) end
  return got
end

local rt = require("luastream.runtime")
H.rt = rt

-- One temporary directory per Lua state, removed when the state closes.
local tmpdir, tmpdir_guard
function H.tmpdir()
  if not tmpdir then
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    os.execute("mkdir -p '" .. tmpdir .. "'")
    local dir = tmpdir
    tmpdir_guard = newproxy(true)
    getmetatable(tmpdir_guard).__gc = function()
      os.execute("rm -rf '" .. dir .. "'")
    end
  end
  return tmpdir
end

-- Writes a script file and returns its path. name defaults to "app.lua".
function H.write_script(source, name)
  local dir = H.tmpdir()
  local path = dir .. "/" .. (name or "app.lua")
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  return path
end

-- Loads a script given as source text; returns the spec and the path.
function H.load_source(source, cli, name)
  local path = H.write_script(source, name)
  return rt.load(path, cli), path
end

-- Builds an ls_meta_t array from rows given as tables:
--   { value, key = , ts = , p = , off = , topic = , hdrs = }
-- and fills rt.rows / keys / hdrs. Returns n, meta.
function H.feed(list)
  local n = #list
  local meta = ffi.new("ls_meta_t[?]", math.max(n, 1))
  local rows, keys, hdrs = {}, {}, {}
  for i, r in ipairs(list) do
    rows[i] = r[1]
    keys[i] = r.key
    hdrs[i] = r.hdrs
    meta[i - 1].offset = r.off or (i - 1)
    meta[i - 1].timestamp = r.ts or (1000 + i)
    meta[i - 1].partition = r.p or 0
    meta[i - 1].topic = r.topic or 1
  end
  rt.rows, rt.keys, rt.hdrs = rows, keys, hdrs
  return n, meta
end

-- Collects outputs 1..nout as a list of { val, key, topic (name), ts, row, hdr }.
function H.outputs(nout)
  local res = {}
  for j = 1, nout do
    local tid = rt.out_topic[j]
    res[j] = {
      val = rt.out_val[j], key = rt.out_key[j],
      topic = tid and rt.spec.outputs[tid] and rt.spec.outputs[tid].name or tid,
      ts = rt.out_ts[j], row = rt.out_row[j], hdr = rt.out_hdr[j],
    }
  end
  return res
end

-- Runs rows through the loaded pipeline; returns the outputs list.
function H.run(list, first, last)
  local n, meta = H.feed(list)
  local nout = rt.run_batch(n, meta, first, last)
  return H.outputs(nout), nout
end

-- The state entries a checkpoint takes now (rt.take_state_changes): their
-- state keys, sorted, and { state key = value decoded, or false: a delete }.
function H.taken_state()
  local state = require("luastream.state")
  local names, vals = {}, {}
  for j = 1, rt.take_state_changes() do
    local _, sk = state.split_key(rt.changes.key[j])
    names[#names + 1] = sk
    local v = rt.changes.val[j]
    vals[sk] = v and core.decode("msgpack", v) or false
  end
  table.sort(names)
  return names, vals
end

-- Runs fn with luastream.history's segments holding at most cap rows,
-- restoring the size after (errors included).
function H.with_history_cap(cap, fn)
  local history = require("luastream.history")
  local saved = history.CAP
  history.CAP = cap
  local ok, err = pcall(fn)
  history.CAP = saved
  if not ok then error(err, 0) end
end

-- Just the output values.
function H.values(list)
  local outs = H.run(list)
  local vals = {}
  for j, o in ipairs(outs) do vals[j] = o.val end
  return vals
end

-- Runs fn with io.write captured; returns the written text.
function H.capture_stdout(fn)
  local buf = {}
  local saved = io.write
  -- io.write is replaced for the call and restored below: luacheck's 122
  -- (setting a read-only field of a standard global) is deliberate here.
  io.write = function(...) -- luacheck: ignore 122
    for j = 1, select("#", ...) do buf[#buf + 1] = tostring((select(j, ...))) end
  end
  local ok, err = pcall(fn)
  io.write = saved -- luacheck: ignore 122
  if not ok then error(err, 0) end
  return table.concat(buf)
end

-- Expects fn to raise; returns the message.
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

-- The standard header for test scripts.
H.header = 'local ls = require("luastream")\n'

return H
