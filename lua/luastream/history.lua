-- luastream.history: the rows a join keeps for one message key, in order of
-- time, in the key's state (join_asof's other side and both sides of
-- join_interval, luastream.join). The rows are cut into segments of
-- at most CAP rows, each an entry of the key's state, because a checkpoint
-- writes the entries that changed (luastream.state, take_changes): a new row
-- rewrites its segment, not every row the key keeps. A key with few rows has
-- one segment, as one list would be.
--
-- For a history named X ("h", "L", "R"):
--   entry X .. "s" = { n, next, id1, lo1, id2, lo2, ... }: the n segments in
--                    order of time, each with its entry's number and the
--                    smallest time it may hold; `next`: where the number of
--                    the next new one is looked for (numbers are reused)
--   entry X .. id  = { m, t1, row1[, flag1], t2, ... }: m rows in order of
--                    time, `stride` (2 or 3) slots each
-- Segment j holds rows from lo_j up to lo_{j+1} (a row at lo_{j+1} may be in
-- either). Rows go in through the journal (state.jset), so a failed row
-- leaves the history as it was. Earlier builds kept a history in one entry
-- X = { m, t1, row1[, flag1], ... }: moved into segments when its key is
-- next used (M.index).
local state = require("luastream.state")

local M = {}

local jset = state.jset
local DELETED = state.DELETED

-- Rows per segment before a new one is started (appends at the end); a
-- segment that out-of-order rows go into may hold more.
M.CAP = 64

-- Entry names, made once: names[X][id] (ids up to NAMES_MAX).
local NAMES_MAX = 4096
local names = {}
local function name(X, id)
  local t = names[X]
  if t == nil then
    t = {}
    names[X] = t
  end
  local s = t[id]
  if s == nil then
    s = X .. id
    if type(id) ~= "number" or id <= NAMES_MAX then t[id] = s end
  end
  return s
end
M.name = name

local adopt

-- The index of history X (rows of `stride` slots) of the key st points at,
-- or nil.
function M.index(st, X, stride)
  local kt = st.kt
  local idx = kt[name(X, "s")]
  if idx ~= nil and idx ~= DELETED then return idx end
  local old = kt[X]
  if old ~= nil and old ~= DELETED then return adopt(st, X, stride, old) end
  return nil
end

-- Segment j's rows (the entry).
function M.seg(st, X, idx, j)
  return st.kt[name(X, idx[1 + 2 * j])]
end

-- Inserts (t, row[, flag]) into segment e (stride 2 or 3) in order of time,
-- after the rows of the same time.
local function insert(e, stride, t, row, flag)
  local m = e[1]
  local at = 2 + stride * m
  while at > 2 and e[at - stride] > t do at = at - stride end
  for x = 1 + stride * m, at, -1 do jset(e, x + stride, e[x]) end
  jset(e, at, t)
  jset(e, at + 1, row)
  if stride == 3 then jset(e, at + 2, flag) end
  jset(e, 1, m + 1)
end

-- A number for a new segment, unique among the index's: the next one,
-- wrapping to 1 past NAMES_MAX so that names stay made once (while fewer
-- than NAMES_MAX segments are there; beyond, one past the largest).
local function new_id(idx)
  local n, id = idx[1], idx[2]
  if n >= NAMES_MAX then
    for j = 1, n do
      if idx[1 + 2 * j] >= id then id = idx[1 + 2 * j] + 1 end
    end
    return id
  end
  while true do
    if id > NAMES_MAX then id = 1 end
    local used = false
    for j = 1, n do
      if idx[1 + 2 * j] == id then
        used = true
        break
      end
    end
    if not used then return id end
    id = id + 1
  end
end

-- The position of the last segment whose smallest time is at or before t
-- (the first when none is; 0 when there is none).
function M.last_at(idx, t)
  local j = idx[1]
  while j > 1 and idx[2 + 2 * j] > t do j = j - 1 end
  return j
end

-- Adds (t, row[, flag]) to history X (a copy of the row is the caller's);
-- returns its index.
function M.add(st, X, stride, t, row, flag)
  local kt, iname = st.kt, name(X, "s")
  local idx = M.index(st, X, stride) or { 0, 1 }
  local n = idx[1]
  local j = M.last_at(idx, t)
  local e
  if n > 0 then
    e = kt[name(X, idx[1 + 2 * j])]
    local m = e[1]
    if j == n and m >= M.CAP and t >= e[2 + stride * (m - 1)] then
      e, j = nil, n + 1 -- the last one is full: a new one after it
    elseif t < idx[2 + 2 * j] then
      jset(idx, 2 + 2 * j, t) -- before the first one's bound (j == 1)
      st:set(iname, idx)
    end
  else
    j = 1
  end
  local id
  if e == nil then
    id = new_id(idx)
    e = { 0 }
    for x = 2 + 2 * n, 1 + 2 * j, -1 do jset(idx, x + 2, idx[x]) end
    jset(idx, 1 + 2 * j, id)
    jset(idx, 2 + 2 * j, t)
    jset(idx, 1, n + 1)
    jset(idx, 2, id + 1)
    st:set(iname, idx)
  else
    id = idx[1 + 2 * j]
  end
  insert(e, stride, t, row, flag)
  st:set(name(X, id), e)
  return idx
end

-- Drops the first segment of history X (idx: its index).
local function drop_first(st, X, idx)
  local n = idx[1]
  st:delete(name(X, idx[3]))
  for x = 3, 2 * n do jset(idx, x, idx[x + 2]) end
  jset(idx, 1 + 2 * n, nil)
  jset(idx, 2 + 2 * n, nil)
  jset(idx, 1, n - 1)
  st:set(name(X, "s"), idx)
end

-- Rows below `limit` (strictly, or at or below with `inclusive`) are no
-- longer needed: drops the first segments that hold only such rows (keeping
-- at least `keep` segments), and removes them from the first one left once
-- they are a quarter of it (so a row costs a share of one rewrite, not one).
-- Until then they stay: the caller does not look at them.
function M.trim(st, X, idx, stride, limit, inclusive, keep)
  local e, m
  while true do
    if idx[1] == 0 then return end
    e = st.kt[name(X, idx[3])]
    m = e[1]
    local last = e[2 + stride * (m - 1)]
    if idx[1] <= keep or last > limit or (last == limit and not inclusive) then break end
    drop_first(st, X, idx)
  end
  local dead = 0
  while dead < m do
    local t = e[2 + stride * dead]
    if t > limit or (t == limit and not inclusive) then break end
    dead = dead + 1
  end
  if dead == 0 or dead * 4 < m then return end
  local last = 1 + stride * m
  for x = 2, last - stride * dead do jset(e, x, e[x + stride * dead]) end
  for x = last - stride * dead + 1, last do jset(e, x, nil) end
  jset(e, 1, m - dead)
  st:set(name(X, idx[3]), e)
end

-- The time of the newest row of history X (idx: its index, not empty).
function M.newest(st, X, idx, stride)
  local e = st.kt[name(X, idx[1 + 2 * idx[1]])]
  return e[2 + stride * (e[1] - 1)]
end

-- The position of the first segment that may hold a row at or after lo.
function M.first_at(idx, lo)
  local n, j = idx[1], 1
  while j < n and idx[2 + 2 * (j + 1)] < lo do j = j + 1 end
  return j
end

-- Moves history X kept by an earlier build in one entry X (the list `old`)
-- into segments; returns the index (nil for an empty list).
function adopt(st, X, stride, old)
  st:delete(X)
  local idx
  for j = 0, old[1] - 1 do
    local base = 2 + stride * j
    idx = M.add(st, X, stride, old[base], old[base + 1], old[base + 2])
  end
  return idx
end

return M
