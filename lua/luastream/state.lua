-- luastream.state: per-key state for stateful steps.
--
-- A stateful step's function gets a State object, re-pointed before each call
-- at the message key of the row: state:get/set/delete/exists act on that
-- key's entries only. Entries live in a cache per store and partition:
-- cache[key] is the key's table {state_key = value}, loaded from LMDB (through
-- core.state_load, in C) the first time the key is seen. Writes go to the
-- cache and mark the key dirty; at a checkpoint the runtime takes the dirty
-- entries (take_changes), produces them to the changelog, commits offsets and
-- writes them to LMDB in one transaction. Reads therefore see the buffer
-- first. A deleted entry stays in the cache as DELETED until it is taken.
local core = require("luastream.core")
local util = require("luastream.util")

local M = {}

local DELETED = setmetatable({}, { __tostring = function() return "<deleted>" end })
local type, tostring, format = type, tostring, string.format
local char, byte = string.char, string.byte

local stores = {}       -- name -> State
local store_list = {}   -- index -> State

local State = {}
State.__index = State

-- The key's bytes in LMDB and in the changelog: strings as they are,
-- numbers in a form that reads back to the same number.
local function key_bytes(key)
  if type(key) == "string" then return key end
  if type(key) == "number" then return format("%.17g", key) end
  return tostring(key) -- int64 cdata: "123LL"
end

local function load_key(st, p, key)
  local load = core.state_load
  if not load then return {} end
  return load(st.name, p, key_bytes(key)) or {}
end

local function part_of(st, p)
  local part = st.parts[p]
  if not part then
    part = { cache = {}, dirty = {}, n = 0 }
    st.parts[p] = part
  end
  return part
end

-- The journal of this batch's writes, so a row that fails leaves the state
-- as it found it: (key table, state key, previous value or NONE) triples,
-- and where the current row's writes begin. rt.run_batch starts it afresh
-- (begin_batch) and rolls the failing row back (undo_row). A value changed
-- in place (a table taken with get and modified) is not rolled back.
local J = { n = 0, mark = 0, row = nil }
local NONE = setmetatable({}, { __tostring = function() return "<none>" end })

local function journal(kt, k)
  local n = J.n
  local old = kt[k]
  if old == nil then old = NONE end
  J[n + 1], J[n + 2], J[n + 3] = kt, k, old
  J.n = n + 3
end

function M.begin_batch()
  for j = 1, J.n do J[j] = nil end -- no references kept to values of earlier batches
  J.n, J.mark, J.row = 0, 0, nil
end

-- Undoes the writes of row i, if it is the row that wrote last.
function M.undo_row(i)
  if i == nil or J.row ~= i then return end
  for j = J.n, J.mark + 3, -3 do
    local kt, k, old = J[j - 2], J[j - 1], J[j]
    if old == NONE then kt[k] = nil else kt[k] = old end
  end
  J.n = J.mark
end

-- Points st at the entries of message key `key` in partition p, for row i.
function M.at(st, p, key, i)
  if i ~= J.row then
    J.row, J.mark = i, J.n
  end
  if key == nil then
    error("a stateful step needs a message key, and this record has none", 0)
  end
  local part = st.parts[p] or part_of(st, p)
  local kt = part.cache[key]
  if kt == nil then
    kt = load_key(st, p, key)
    part.cache[key] = kt
    part.n = part.n + 1
  end
  st.kt, st.key, st.dirty = kt, key, part.dirty
end

local function check_name(k)
  if type(k) ~= "string" then
    error("state keys must be strings, got " .. type(k), 3)
  end
end

function State:get(k, default)
  local v = self.kt[k]
  if v == nil or v == DELETED then return default end
  return v
end

function State:set(k, v)
  check_name(k)
  journal(self.kt, k)
  if v == nil then
    self.kt[k] = DELETED
  else
    self.kt[k] = v
  end
  self.dirty[self.key] = self.kt
end

function State:delete(k)
  check_name(k)
  if self.kt[k] ~= nil then
    journal(self.kt, k)
    self.kt[k] = DELETED
    self.dirty[self.key] = self.kt
  end
end

function State:exists(k)
  local v = self.kt[k]
  return v ~= nil and v ~= DELETED
end

State.__tostring = function(self)
  return "state(" .. self.name .. ", key " .. tostring(self.key) .. ")"
end

-- A stateless step gets msg where a stateful one gets state: msg answers
-- every State method (get, set, delete, exists) with an error saying the
-- step lacks { stateful = true } (luastream.util.msg_mt). Derived from State
-- so a new State method is covered too.
for name, f in pairs(State) do
  if type(f) == "function" and name:sub(1, 2) ~= "__" then
    util.msg_state_hints[name] = util.not_stateful
  end
end

-- The State object of a store (created on first use).
function M.store(name)
  local st = stores[name]
  if not st then
    st = setmetatable({ name = name, index = #store_list + 1, parts = {},
      kt = {}, key = nil, dirty = {} }, State)
    stores[name] = st
    store_list[st.index] = st
  end
  return st
end

function M.stores() return store_list end

-- Forgets everything (a new script load).
function M.reset()
  for k in pairs(stores) do stores[k] = nil end
  for j = #store_list, 1, -1 do store_list[j] = nil end
end

-- The LMDB key of one entry: 2-byte big-endian length of the message key,
-- the message key, then the state key.
local function entry_key(kb, k)
  local n = #kb
  if n > 65535 then error("message key longer than 65535 bytes", 0) end
  return char(n / 256 - (n / 256) % 1, n % 256) .. kb .. key_bytes(k)
end
M.entry_key = entry_key

-- The dirty entries of every store, appended to the arrays of `ch`
-- (store index, partition, LMDB key, msgpack value or false for a delete);
-- they become clean. Returns the count. Vecs are written as msgpack's vec
-- ext type, so they load back as vecs.
local VEC_EXT = { vecs = "ext" }
function M.take_changes(ch)
  local n = 0
  local encode = core.encode
  for _, st in ipairs(store_list) do
    for p, part in pairs(st.parts) do
      for key, kt in pairs(part.dirty) do
        local kb = key_bytes(key)
        for k, v in pairs(kt) do
          n = n + 1
          ch.store[n], ch.part[n], ch.key[n] = st.index, p, entry_key(kb, k)
          if v == DELETED then
            ch.val[n] = false
            kt[k] = nil
          else
            ch.val[n] = encode("msgpack", v, VEC_EXT)
          end
        end
        part.dirty[key] = nil
      end
    end
  end
  for j = n + 1, #ch.key do
    ch.store[j], ch.part[j], ch.key[j], ch.val[j] = nil, nil, nil, nil
  end
  return n
end

-- Drops the cached entries of partition p (revoked, or restored from the
-- changelog): the next access reads LMDB again.
function M.forget_partition(p)
  for _, st in ipairs(store_list) do st.parts[p] = nil end
end

-- Drops every cached entry and every pending change (an aborted transaction).
function M.forget_all()
  for _, st in ipairs(store_list) do st.parts = {} end
end

-- Splits an LMDB key into message key bytes and state key (for tools).
function M.split_key(s)
  local hi, lo = byte(s, 1, 2)
  local n = hi * 256 + lo
  return s:sub(3, 2 + n), s:sub(3 + n)
end

M.DELETED = DELETED
M.key_bytes = key_bytes
util.state_at = M.at

return M
