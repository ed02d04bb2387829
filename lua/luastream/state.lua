-- luastream.state: per-key state for stateful steps.
--
-- A stateful step's function gets a State object, re-pointed before each call
-- at the message key of the row: state:get/set/delete/exists act on that
-- key's entries only. Entries live in a cache per store and partition:
-- cache[key] is the key's table {state_key = value}, loaded from LMDB (through
-- core.state_load, in C) the first time the key is seen. Writes go to the
-- cache and mark the key dirty, with the names of the entries written; at a
-- checkpoint the runtime takes those entries (take_changes), produces them to
-- the changelog, commits offsets and writes them to LMDB in one transaction:
-- a key's other entries are not written again, so a key may hold many
-- entries (the joins' segments, luastream.history) at the cost of the
-- changed ones only. Reads see the cache first. A deleted entry stays in the
-- cache as DELETED until it is taken.
--
-- Expiry: state:set(k, v, { ttl = ms }) gives the entry an expiry time,
-- now + ttl by core.now_ms (the clock behind ls.now_ms, which the test
-- driver replaces). A key table keeps its entries' expiries in kt[EXP] =
-- { state_key = ms } (only when one has any); an entry whose expiry is <= now
-- reads as absent at once, while the store deletes it later (the runtime
-- sweeps LMDB's time index, ls_state_scan_expired). take_changes hands the
-- expiry over as ch.expire[j] (0: none), and turns entries already expired
-- into deletes.
--
-- Bounded memory: the key tables of all stores and partitions share one LRU
-- list of at most `limit` keys (M.set_cache_limit; DEFAULT_CACHE_LIMIT).
-- part.cache[key] is the key's slot number; the slots live in flat arrays
-- (slot_kt, slot_key, slot_part, and the links prv/nxt), so a cache hit
-- costs a few array writes and allocates nothing. Loading a key beyond the
-- limit evicts the least recently used clean key; a dirty key (changes not
-- yet taken by a checkpoint) is never evicted, so between checkpoints the
-- cache may exceed the limit by the keys written since; take_changes trims
-- it back.
local core = require("luastream.core")
local util = require("luastream.util")

local M = {}

local DELETED = setmetatable({}, { __tostring = function() return "<deleted>" end })
local type, tostring, format = type, tostring, string.format
local char, byte = string.char, string.byte

local stores = {}       -- name -> State
local store_list = {}   -- index -> State

-- Key where a key table keeps its entries' expiries: { state_key = ms }.
local EXP = setmetatable({}, { __tostring = function() return "<expiries>" end })
local ceil, huge = math.ceil, math.huge
local next = next
local EXPIRING_KEY_MAX = 500 -- LS_STATE_EXPIRING_KEY_MAX in runtime/state.h

-- The key cache (see the header comment). Slot 0 means none.
-- Measured with LuaJIT 2.1 (GC64): 270-285 bytes per cached key whose table
-- holds one number, a 12-byte message key included (tests/lua/state_cache_spec.lua
-- prints it); 100,000 keys are about 27 MiB plus the values themselves.
local DEFAULT_CACHE_LIMIT = 100000
local limit = DEFAULT_CACHE_LIMIT
local slot_kt, slot_key, slot_part = {}, {}, {}
local prv, nxt = {}, {}
local head, tail = 0, 0 -- most and least recently used
local used, nslots, free = 0, 0, 0 -- slots in use, slots ever made, free list (through nxt)

local function unlink(s)
  local a, b = prv[s], nxt[s]
  if a ~= 0 then nxt[a] = b else head = b end
  if b ~= 0 then prv[b] = a else tail = a end
end

local function push_head(s)
  prv[s], nxt[s] = 0, head
  if head ~= 0 then prv[head] = s else tail = s end
  head = s
end

-- Drops slot s: its key leaves its partition's cache.
local function free_slot(s)
  local part = slot_part[s]
  unlink(s)
  part.cache[slot_key[s]] = nil
  part.n = part.n - 1
  slot_kt[s], slot_key[s], slot_part[s] = nil, nil, nil
  prv[s], nxt[s] = 0, free
  free = s
  used = used - 1
end

local function is_clean(s)
  return slot_part[s].dirty[slot_key[s]] == nil
end

-- Evicts the least recently used clean key, looking at a few keys from the
-- tail; dirty ones met on the way move to the head (they stay until a
-- checkpoint takes them). Returns whether one was evicted.
local function evict_one()
  local s = tail
  for _ = 1, 8 do
    if s == 0 then return false end
    local before = prv[s]
    if is_clean(s) then
      free_slot(s)
      return true
    end
    if s ~= head then
      unlink(s)
      push_head(s)
    end
    s = before
  end
  return false
end

-- Evicts clean keys, least recently used first, until the limit holds.
local function trim()
  local s = tail
  while used > limit and s ~= 0 do
    local before = prv[s]
    if is_clean(s) then free_slot(s) end
    s = before
  end
end

-- A slot for key (table kt) of partition table part, at the head.
local function new_slot(part, key, kt)
  if used >= limit then evict_one() end
  local s = free
  if s ~= 0 then
    free = nxt[s]
  else
    nslots = nslots + 1
    s = nslots
  end
  slot_kt[s], slot_key[s], slot_part[s] = kt, key, part
  push_head(s)
  used = used + 1
  return s
end

local function reset_cache()
  slot_kt, slot_key, slot_part, prv, nxt = {}, {}, {}, {}, {}
  head, tail, used, nslots, free = 0, 0, 0, 0, 0
end

local State = {}
State.__index = State

-- The key's bytes in LMDB and in the changelog: strings as they are,
-- numbers in a form that reads back to the same number.
local function key_bytes(key)
  if type(key) == "string" then return key end
  if type(key) == "number" then return format("%.17g", key) end
  return tostring(key) -- int64 cdata: "123LL"
end

-- A key's entries from the store: core.state_load returns { state_key =
-- value } and, when some have an expiry, a second table { state_key = ms }.
local function load_key(st, p, key)
  local load = core.state_load
  if not load then return {} end
  local kt, ex = load(st.name, p, key_bytes(key))
  if kt == nil then kt = {} end
  if ex ~= nil and next(ex) ~= nil then kt[EXP] = ex end
  return kt
end

local function part_of(st, p)
  local part = st.parts[p]
  if not part then
    -- dirty[key] = the key table when the key has changes; dent[key] = the
    -- names of its changed entries { name = true }
    part = { cache = {}, dirty = {}, dent = {}, n = 0 }
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

-- Functions told of roll-backs, for state kept beside the store
-- (luastream.window's heaps): fn("row", i), fn("batch"), fn("begin").
local undo_hooks = {}
function M.on_undo(fn) undo_hooks[#undo_hooks + 1] = fn end
local function tell(what, i)
  for j = 1, #undo_hooks do undo_hooks[j](what, i) end
end

function M.begin_batch()
  for j = 1, J.n do J[j] = nil end -- no references kept to values of earlier batches
  J.n, J.mark, J.row = 0, 0, nil
  tell("begin")
end

-- Where the journal is now, and undoing every write since (the windows a
-- timer closes, luastream.window, roll back without a row number).
function M.journal_mark() return J.n end
function M.undo_to(mark)
  for j = J.n, mark + 3, -3 do
    local kt, k, old = J[j - 2], J[j - 1], J[j]
    if old == NONE then kt[k] = nil else kt[k] = old end
  end
  J.n = mark
  if J.mark > mark then J.mark = mark end
end

-- Undoes the writes of row i, if it is the row that wrote last.
function M.undo_row(i)
  if i == nil or J.row ~= i then return end
  for j = J.n, J.mark + 3, -3 do
    local kt, k, old = J[j - 2], J[j - 1], J[j]
    if old == NONE then kt[k] = nil else kt[k] = old end
  end
  J.n = J.mark
  tell("row", i)
end

-- Undoes every write of the last batch call (all its rows): a live reload that
-- rolls back hands the batch to the previous pipeline, which must not find
-- half of it already applied.
function M.undo_batch()
  for j = J.n, 3, -3 do
    local kt, k, old = J[j - 2], J[j - 1], J[j]
    if old == NONE then kt[k] = nil else kt[k] = old end
  end
  tell("batch")
  M.begin_batch()
end

-- t[k] = v through the journal: for a table held in state and changed in
-- place (window accumulators, luastream.window), so a row that fails leaves
-- it as it found it. The caller marks the key dirty (State:set).
function M.jset(t, k, v)
  journal(t, k)
  t[k] = v
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
  local s = part.cache[key]
  local kt
  if s == nil then
    kt = load_key(st, p, key)
    part.cache[key] = new_slot(part, key, kt)
    part.n = part.n + 1
  else
    kt = slot_kt[s]
    if s ~= head then
      unlink(s)
      push_head(s)
    end
  end
  st.kt, st.key, st.dirty, st.dent = kt, key, part.dirty, part.dent
end

-- Marks entry k of the key st points at as changed (for the next checkpoint).
local function touch(st, k)
  local key = st.key
  if st.dirty[key] == nil then
    st.dirty[key] = st.kt
    st.dent[key] = { [k] = true }
  else
    st.dent[key][k] = true
  end
end
-- For tables held in state and changed in place through M.jset.
M.touch = touch

local function check_name(k)
  if type(k) ~= "string" then
    error("state keys must be strings, got " .. type(k), 3)
  end
end

-- Whether entry k of key table kt has expired (false when it has no expiry).
local function expired(kt, k)
  local ex = kt[EXP]
  if ex == nil then return false end
  local e = ex[k]
  return e ~= nil and e <= core.now_ms()
end

function State:get(k, default)
  local kt = self.kt
  local v = kt[k]
  if v == nil or v == DELETED or (kt[EXP] ~= nil and expired(kt, k)) then return default end
  return v
end

-- The expiry (ms since the epoch) that options { ttl = ms } give an entry
-- set now; errors are raised at the line that called state:set.
local function expiry_of(st, k, opts)
  if type(opts) ~= "table" then
    error("state:set: options must be a table like { ttl = 60000 }, got " .. type(opts), 3)
  end
  local first = next(opts)
  if first ~= nil and (first ~= "ttl" or next(opts, first) ~= nil) then
    local bad = first ~= "ttl" and first or next(opts, first)
    error("state:set: unknown option '" .. tostring(bad) .. "' (known: ttl)", 3)
  end
  local ttl = opts.ttl
  if ttl == nil then return 0 end
  if type(ttl) ~= "number" or ttl ~= ttl or ttl < 0 or ttl == huge then
    error("state:set: ttl must be a number of milliseconds >= 0, got " ..
      (type(ttl) == "number" and tostring(ttl) or type(ttl)), 3)
  end
  if #key_bytes(st.key) + #k + 2 > EXPIRING_KEY_MAX then
    error("state:set: an entry with a ttl needs message key and state key of at most " ..
      (EXPIRING_KEY_MAX - 2) .. " bytes together", 3)
  end
  local e = ceil(core.now_ms() + ttl)
  if e < 1 then e = 1 end -- 0 means no expiry (a clock near the epoch, in tests)
  return e
end

function State:set(k, v, opts)
  check_name(k)
  local kt = self.kt
  local e = 0
  if opts ~= nil then e = expiry_of(self, k, opts) end
  journal(kt, k)
  if v == nil then
    kt[k] = DELETED
    e = 0
  else
    kt[k] = v
  end
  local ex = kt[EXP]
  if e ~= 0 then
    if ex == nil then
      ex = {}
      kt[EXP] = ex
    end
    journal(ex, k)
    ex[k] = e
  elseif ex ~= nil and ex[k] ~= nil then
    journal(ex, k)
    ex[k] = nil
  end
  touch(self, k)
end

-- Entry k of the key st points at, set to v with the absolute expiry e (ms
-- since the epoch, >= 1; 0: none), through the journal. For the stores whose
-- expiries are not wall-clock deadlines (windows closing by a partition's
-- watermark, luastream.window; such stores keep expired entries).
function M.set_expiry(st, k, v, e)
  local kt = st.kt
  journal(kt, k)
  kt[k] = v
  local ex = kt[EXP]
  if e ~= 0 then
    if ex == nil then
      ex = {}
      kt[EXP] = ex
    end
    journal(ex, k)
    ex[k] = e
  elseif ex ~= nil and ex[k] ~= nil then
    journal(ex, k)
    ex[k] = nil
  end
  touch(st, k)
end

-- Tables (app:table, docs/joins.md): the value of the key st points at is
-- its entry "v"; a null value (a tombstone) deletes it.
function M.table_put(st, v)
  if v == nil or v == util.null then st:delete("v") else st:set("v", v) end
end

function M.table_get(st)
  local v = st.kt.v
  if v == DELETED then return nil end
  return v
end

function State:delete(k)
  check_name(k)
  local kt = self.kt
  if kt[k] ~= nil then
    journal(kt, k)
    kt[k] = DELETED
    local ex = kt[EXP]
    if ex ~= nil and ex[k] ~= nil then
      journal(ex, k)
      ex[k] = nil
    end
    touch(self, k)
  end
end

function State:exists(k)
  local kt = self.kt
  local v = kt[k]
  return v ~= nil and v ~= DELETED and not (kt[EXP] ~= nil and expired(kt, k))
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
      kt = {}, key = nil, dirty = {}, dent = {} }, State)
    stores[name] = st
    store_list[st.index] = st
  end
  return st
end

function M.stores() return store_list end

-- Forgets everything (a new script load).
function M.reset()
  M.gen = M.gen + 1
  for k in pairs(stores) do stores[k] = nil end
  for j = #store_list, 1, -1 do store_list[j] = nil end
  reset_cache()
end

-- The most keys the cache holds (all stores and partitions together; dirty
-- keys may exceed it until the next checkpoint): an integer >= 1, or
-- math.huge for no limit. Lowering it evicts clean keys at once.
function M.set_cache_limit(n)
  if type(n) ~= "number" or n < 1 or (n ~= huge and n % 1 ~= 0) then
    error("state cache limit must be an integer >= 1 (keys) or math.huge, got " ..
      (type(n) == "number" and tostring(n) or type(n)), 2)
  end
  limit = n
  if used > limit then trim() end
end

function M.cache_limit() return limit end
function M.cache_size() return used end -- keys cached now
M.DEFAULT_CACHE_LIMIT = DEFAULT_CACHE_LIMIT

-- The LMDB key of one entry: 2-byte big-endian length of the message key,
-- the message key, then the state key.
local function entry_key(kb, k)
  local n = #kb
  if n > 65535 then error("message key longer than 65535 bytes", 0) end
  return char(n / 256 - (n / 256) % 1, n % 256) .. kb .. key_bytes(k)
end
M.entry_key = entry_key

-- The dirty entries of every store (or of store number `only` alone),
-- appended to the arrays of `ch` (store index, partition, LMDB key, msgpack
-- value or false for a delete, expiry in ms since the epoch or 0 for none);
-- they become clean. An entry
-- already expired is taken as a delete. Returns the count. Vecs are written
-- as msgpack's vec ext type, so they load back as vecs. Then the cache is
-- trimmed to its limit.
local VEC_EXT = { vecs = "ext" }
function M.take_changes(ch, only)
  local n = 0
  local encode = core.encode
  local cstore, cpart, ckey, cval, cexp = ch.store, ch.part, ch.key, ch.val, ch.expire
  if cexp == nil then
    cexp = {}
    ch.expire = cexp
  end
  local now
  local first, last = 1, #store_list
  if only ~= nil then first, last = only, only end -- one store (its index)
  for si = first, last do
    local st = store_list[si]
    for p, part in pairs(st.parts) do
      local dent = part.dent
      for key, kt in pairs(part.dirty) do
        local kb = key_bytes(key)
        local ex = kt[EXP]
        for k in pairs(dent[key]) do
          local v = kt[k]
          -- v nil: an entry written and rolled back (journal) that was not there before
          if v ~= nil then
            n = n + 1
            cstore[n], cpart[n], ckey[n] = st.index, p, entry_key(kb, k)
            local e = ex ~= nil and ex[k] or 0
            if e ~= 0 and v ~= DELETED and not st.keep_expired then
              if now == nil then now = core.now_ms() end
              if e <= now then v = DELETED end
            end
            if v == DELETED then
              cval[n], cexp[n] = false, 0
              kt[k] = nil
              if e ~= 0 then ex[k] = nil end
            else
              cval[n], cexp[n] = encode("msgpack", v, VEC_EXT), e
            end
          end
        end
        if ex ~= nil and not st.keep_expired then
          -- entries not written that expired: out of the cache (the store's
          -- sweep deletes them from LMDB and the changelog)
          if now == nil then now = core.now_ms() end
          for k, e in pairs(ex) do
            if e <= now then kt[k], ex[k] = nil, nil end
          end
        end
        if ex ~= nil and next(ex) == nil then kt[EXP] = nil end
        part.dirty[key], dent[key] = nil, nil
      end
    end
  end
  for j = n + 1, #ckey do
    cstore[j], cpart[j], ckey[j], cval[j], cexp[j] = nil, nil, nil, nil, nil
  end
  if used > limit then trim() end
  return n
end

-- Drops the cached entries of partition p (revoked, or restored from the
-- changelog): the next access reads LMDB again.
-- Generations of the cache, for those who index its keys (luastream.window):
-- M.gen changes when everything is forgotten, M.pgen[p] when partition p is.
M.gen, M.pgen = 0, {}

function M.forget_partition(p)
  M.pgen[p] = (M.pgen[p] or 0) + 1
  for _, st in ipairs(store_list) do
    local part = st.parts[p]
    if part then
      for _, s in pairs(part.cache) do free_slot(s) end
      st.parts[p] = nil
    end
  end
end

-- Drops every cached entry and every pending change (an aborted transaction).
function M.forget_all()
  M.gen = M.gen + 1
  for _, st in ipairs(store_list) do st.parts = {} end
  reset_cache()
end

-- Splits an LMDB key into message key bytes and state key (for tools).
function M.split_key(s)
  local hi, lo = byte(s, 1, 2)
  local n = hi * 256 + lo
  return s:sub(3, 2 + n), s:sub(3 + n)
end

M.DELETED = DELETED
M.EXP = EXP
M.key_bytes = key_bytes
util.state_at = M.at

return M
