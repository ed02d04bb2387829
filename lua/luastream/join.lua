-- luastream.join: as-of and interval joins (docs/joins.md), global tables,
-- and the default merging of stream-table joins (M.table_merge).
--
-- sdf:join_asof(other, opts): the other side's pipeline records its rows
-- per key (M.asof_record, history "h" of luastream.history); each row of
-- this side looks up the latest one at or before its timestamp
-- (M.asof_get). Rows more than `grace` behind the key's newest are not seen;
-- segments whose rows all are go.
--
-- sdf:join_interval(other, { before, after, grace, how, merger }) adds two
-- steps: "interval_left" to this dataframe's pipeline and "interval_right" to
-- the other's. Both point at one runtime object J (M.runtime, shared through
-- the step definition) and the same store; each side records its rows per
-- key and, as a row comes, pairs it with the other side's rows within the
-- interval; the pairs run through the rest of this dataframe's pipeline,
-- the continuation J.cont that luastream.compile makes, whichever side's
-- pipeline found them.
--
-- Interval state per key (journaled like all state, so a failed row leaves
-- it as it was): history "L" (this side's rows, { t, row, flag }: flag is
-- whether a pair had the row, a boolean, or { matched, headers } for a row
-- with headers, which its pairs and its unmatched output carry),
-- history "R" (the other side's, { t, row }), "wm" = the largest timestamp
-- of the key on either side. A left row's interval [t - before, t + after]
-- closes when t + after + grace <= wm: it goes (with how = "left", emitted
-- unmatched first if no pair had it); a segment of the other side's rows
-- goes once no open or future left row can reach any of them.
--
-- Earlier builds kept each of these lists in one entry ("h", "L", "R"):
-- moved into segments when their key is next used (history.index).
local util = require("luastream.util")
local state = require("luastream.state")
local history = require("luastream.history")
local core = require("luastream.core")

local M = {}

local jset, state_at = state.jset, state.at
local DELETED = state.DELETED
local deepcopy, merge_missing = util.deepcopy, util.merge_missing
local huge = math.huge
local HDR = util.HDR
local type = type

function M.runtime(def, st, node)
  local J = def.J
  if J ~= nil then return J end
  J = {
    st = st, before = def.before, after = def.after, grace = def.grace, left = def.how == "left",
    merger = def.merger or false,
    ov = {}, ots = {}, ohdr = {}, late = 0, logged = false,
    cont = false, msg = false, m = { partition = 0, offset = -1, timestamp = 0 },
    loc = node.loc, desc = node.desc,
  }
  def.J = J
  return J
end

-- The row's timestamp as a finite number (the topic's timestamp and
-- set_timestamp are checked already: this guards the join's state).
local finite_ts, ts_error = util.finite_ts, util.ts_error

local function num_ts(ts)
  local t = ts
  if type(ts) ~= "number" then t = type(ts) == "cdata" and tonumber(ts) or nil end
  if not finite_ts(t) then ts_error("join_interval: the row's timestamp", ts, t) end
  return t
end

-- Slot 3 of a row of this side: whether a pair had it, and its headers.
local function flag_of(matched, hdr)
  if hdr == nil then return matched end
  return { matched, hdr }
end

local function is_matched(f)
  if type(f) == "table" then return f[1] end
  return f
end

local function hdr_of(f)
  if type(f) == "table" then return f[2] end
  return nil
end

-- The output row of a pair (right nil: an unmatched left row): a copy all
-- the way down, as l may be a stored row and later steps may change nested
-- tables of the output.
local function pair(J, l, r)
  if J.merger then return J.merger(deepcopy(l), r ~= nil and deepcopy(r) or nil) end
  local out = deepcopy(l)
  if r ~= nil then merge_missing(out, r) end
  return out
end

-- Output nout + 1: the row, its timestamp and headers (this side's row's).
local function emit(J, nout, row, ts, hdr)
  nout = nout + 1
  J.ov[nout], J.ots[nout], J.ohdr[nout] = row, ts, hdr
  return nout
end

-- join_asof: records a row of the other side (a copy).
function M.asof_record(st, v, ts, grace)
  local n = type(ts) == "number" and ts or nil
  if not finite_ts(n) then ts_error("join_asof: the row's timestamp", ts, n) end
  local idx = history.add(st, "h", 2, ts, deepcopy(v))
  history.trim(st, "h", idx, 2, history.newest(st, "h", idx, 2) - grace, false, 1)
end

-- join_asof: the other side's latest row at or before ts, at most tolerance
-- ms before it and at most grace ms behind the newest, or nil.
function M.asof_get(st, ts, tolerance, grace)
  if type(ts) ~= "number" then return nil end
  local idx = history.index(st, "h", 2)
  if idx == nil or idx[1] == 0 then return nil end
  local oldest = history.newest(st, "h", idx, 2) - grace
  for s = history.last_at(idx, ts), 1, -1 do
    local e = history.seg(st, "h", idx, s)
    for at = 2 * e[1], 2, -2 do
      local t = e[at]
      if t <= ts then
        if ts - t > tolerance or t < oldest then return nil end
        return e[at + 1]
      end
    end
  end
  return nil
end

-- The time at or before which this side's rows are closed, by watermark wm.
local function closed_upto(J, wm)
  if wm == nil or wm == DELETED then return -huge end
  return wm - J.after - J.grace
end

-- Closes the intervals the key's watermark passed (from wm0 to wm): with
-- how = "left", the rows that closed without a pair are emitted. Closed rows
-- (t <= the close time) are not looked at again; the history drops them.
local function expire(J, st, wm0, wm, nout)
  local close = closed_upto(J, wm)
  local idx = history.index(st, "L", 3)
  if idx ~= nil and idx[1] > 0 then
    if J.left and wm ~= wm0 then
      local prev = closed_upto(J, wm0)
      for s = 1, idx[1] do
        local e = history.seg(st, "L", idx, s)
        if e[1] > 0 and e[2] > close then break end
        for j = 0, e[1] - 1 do
          local base = 2 + 3 * j
          local t = e[base]
          if t > close then break end
          local f = e[base + 2]
          if t > prev and not is_matched(f) then nout = emit(J, nout, pair(J, e[base + 1], nil), t, hdr_of(f)) end
        end
      end
    end
    history.trim(st, "L", idx, 3, close, true, 0)
  end
  -- no open or future left row reaches the other side's rows at or before this
  idx = history.index(st, "R", 2)
  if idx ~= nil then history.trim(st, "R", idx, 2, close - J.before, true, 0) end
  return nout
end

local function raise_wm(st, t)
  local wm = st.kt.wm
  if wm == nil or wm == DELETED then wm = -huge end
  if t > wm then
    st:set("wm", t)
    return t
  end
  return wm
end

local function late(J, t, wm)
  J.late = J.late + 1
  if not J.logged then
    J.logged = true
    core.log("warn", J.loc .. ": join_interval: dropped a late row (timestamp " .. tostring(t) ..
      ", the key's watermark " .. tostring(wm) .. " had closed its interval); later late rows are counted " ..
      "without a log line")
  end
  return 0
end

-- A row of this side (hdr: its headers): pairs with the other side's rows
-- in [t - before, t + after].
function M.left(J, v, ts, key, p, i, hdr)
  local t = num_ts(ts)
  local st = J.st
  state_at(st, p, key, i)
  local wm = st.kt.wm
  if wm ~= nil and wm ~= DELETED and t + J.after + J.grace <= wm then return late(J, t, wm) end
  local nout = 0
  local idx = history.index(st, "R", 2)
  if idx ~= nil then
    local lo, hi = t - J.before, t + J.after
    for s = history.first_at(idx, lo), idx[1] do
      if idx[2 + 2 * s] > hi then break end
      local e = history.seg(st, "R", idx, s)
      for j = 0, e[1] - 1 do
        local u = e[2 + 2 * j]
        if u > hi then break end
        if u >= lo then nout = emit(J, nout, pair(J, v, e[3 + 2 * j]), u > t and u or t, hdr) end
      end
    end
  end
  history.add(st, "L", 3, t, deepcopy(v), flag_of(nout > 0, hdr))
  return expire(J, st, wm, raise_wm(st, t), nout)
end

-- A row of the other side: pairs with this side's rows t with u in [t - before, t + after].
function M.right(J, v, ts, key, p, i)
  local u = num_ts(ts)
  local st = J.st
  state_at(st, p, key, i)
  local nout = 0
  local wm = st.kt.wm
  local idx = history.index(st, "L", 3)
  if idx ~= nil then
    local lo, hi = u - J.after, u + J.before
    local close = closed_upto(J, wm) -- closed rows are not paired any more
    for s = history.first_at(idx, lo), idx[1] do
      if idx[2 + 2 * s] > hi then break end
      local e = history.seg(st, "L", idx, s)
      for j = 0, e[1] - 1 do
        local base = 2 + 3 * j
        local t = e[base]
        if t > hi then break end
        if t >= lo and t > close then
          local f = e[base + 2]
          nout = emit(J, nout, pair(J, e[base + 1], v), u > t and u or t, hdr_of(f))
          if not is_matched(f) then
            if type(f) == "table" then jset(f, 1, true) else jset(e, base + 2, true) end
            st:set(history.name("L", idx[1 + 2 * s]), e)
          end
        end
      end
    end
  end
  if wm == nil or wm == DELETED or u + J.before + J.after + J.grace > wm then
    history.add(st, "R", 2, u, deepcopy(v))
  end
  return expire(J, st, wm, raise_wm(st, u), nout)
end

-- Global tables (app:global_table): name -> { key = value }, in this Lua
-- state; the runtime reads their topics again into a new state (a reload).
M.globals = {}

function M.global_put(name, key, v)
  if key == nil then error("a global table's record needs a key, and this one has none", 0) end
  local t = M.globals[name]
  if t == nil then
    t = {}
    M.globals[name] = t
  end
  if v == nil or v == util.null then t[key] = nil else t[key] = v end
end

function M.global_get(name, key)
  local t = M.globals[name]
  if t == nil or key == nil then return nil end
  return t[key]
end

-- The default merging of sdf:join_table (docs/joins.md): the columns of the
-- table's value t that the row v lacks are added to v (the row's own win),
-- nested tables as copies. A table's values are joined row after row and
-- never changed in place (each record of the table's topic decodes to a new
-- table, and no step hands the stored value itself to user code), so the
-- work is planned once per value: a merge function made for its set of
-- columns, with those keys as constants and no loop, found by the value's
-- identity in a weak table (a value replaced or deleted is not looked up
-- again, and its entry goes when it is collected). One function is made per
-- distinct set of columns (and which of them hold tables), shared by every
-- value with that set. No loop matters: LuaJIT compiles a loop of a called
-- function as a trace of its own, and the rest of the row loop then runs as
-- side traces of it; iterating with pairs costs a C call per key besides.
-- A value with a key that is not a string, with more than PLAN_MAX_KEYS
-- columns or PLAN_MAX_KEY_BYTES bytes of keys, or once PLAN_MAX_SHAPES
-- functions exist, is merged by util.merge_missing (the same semantics).
local PLAN_MAX_KEYS = 64
local PLAN_MAX_KEY_BYTES = 4096
local PLAN_MAX_SHAPES = 256
local quote = util.quote
local sort, concat = table.sort, table.concat
local null = util.null

local plans = setmetatable({}, { __mode = "k" }) -- value -> merge function
local shapes, nshapes = {}, 0                      -- shape string -> merge function

-- The merge function for the columns of t (a table), made or found by shape.
local function plan_of(t)
  local keys, n, bytes = {}, 0, 0
  for k in next, t do
    if type(k) ~= "string" then return merge_missing end
    n = n + 1
    if n > PLAN_MAX_KEYS then return merge_missing end
    bytes = bytes + #k
    if bytes > PLAN_MAX_KEY_BYTES then return merge_missing end
    keys[n] = k
  end
  sort(keys)
  -- the shape: each key with whether its value is copied (a nested table),
  -- length-prefixed so that no two sets of keys give the same string
  local parts = {}
  for j = 1, n do
    local k = keys[j]
    local x = t[k]
    parts[j] = (type(x) == "table" and x ~= null and "t" or "v") .. #k .. ":" .. k
  end
  local shape = concat(parts)
  local f = shapes[shape]
  if f ~= nil then return f end
  if nshapes >= PLAN_MAX_SHAPES then return merge_missing end
  local src = { "local deepcopy = ...\nreturn function(v, t)\n" }
  for j = 1, n do
    local q = "[" .. quote(keys[j]) .. "]"
    local x = parts[j]:sub(1, 1) == "t" and "deepcopy(t" .. q .. ")" or "t" .. q
    src[j + 1] = "  if v" .. q .. " == nil then v" .. q .. " = " .. x .. " end\n"
  end
  src[n + 2] = "end\n"
  f = assert(loadstring(concat(src), "=[pipeline join_table merge]"))(deepcopy)
  nshapes = nshapes + 1
  shapes[shape] = f
  return f
end

-- v gets the columns of t it lacks (t nil or not a table: nothing to add).
function M.table_merge(v, t)
  local f = plans[t]
  if f == nil then
    if type(t) ~= "table" then return end
    f = plan_of(t)
    plans[t] = f
  end
  f(v, t)
end

-- How many merge functions exist (for the specs).
function M.merge_shapes() return nshapes end

-- The other side's pipeline runs this side's continuation on its pairs
-- (and unmatched rows), each with its own timestamp and headers (this side's
-- row's); msg is this side's: its topic, the partition, the key, offset -1
-- (no record of this side's topic is being processed).
function M.right_emit(J, n, key, p, i, nout)
  local m, msg = J.m, J.msg
  m.partition, m.offset = p, -1
  msg.key, msg.partition, msg.offset = key, p, -1
  for o = 1, n do
    local row, ts, hdr = J.ov[o], J.ots[o], J.ohdr[o]
    J.ov[o], J.ots[o], J.ohdr[o] = nil, nil, nil
    m.timestamp = ts
    msg.timestamp, msg[HDR] = ts, hdr
    nout = J.cont(row, ts, hdr, key, i, m, nout)
  end
  return nout
end

return M
