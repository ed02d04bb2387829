-- luastream.compile: turns one input topic's step tree into one Lua function.
--
-- The generated function loops over a run of rows of that topic. Every step
-- of every branch becomes straight-line code inside the loop: expressions
-- become Lua expressions reading the row (v.gX ^ 2), masks and filters
-- become `if not cond then goto skipN end` with the label at the end of
-- the enclosing block, apply(expand = true) becomes a `for` loop with the
-- rest of its pipeline inside, branches become `do ... end` blocks that
-- shadow the row variables. Constants and user functions are locals of the
-- generated function, so the row loop creates no closures and no tables
-- except where the semantics need one (projections, copies for branches).
--
-- Copies: a row is a Lua table that later steps mutate in place. A step
-- that mutates (column assignment, update, drop, fill) copies the row first
-- when something else may still observe it: a to_topic that ran earlier on
-- this path (C encodes outputs after the batch), or a sibling branch that
-- runs later. This is decided here, at compile time; copies are shallow,
-- except before update(), whose function may change nested tables.
local util = require("luastream.util")
local expr = require("luastream.expr")
local core = require("luastream.core")
local state = require("luastream.state")
local window = require("luastream.window")
local join = require("luastream.join")

local M = {}

local concat, insert = table.concat, table.insert
local MAX_LOCAL_CONSTS = 120

---------------------------------------------------------------------------
-- Generator
---------------------------------------------------------------------------

local Gen = {}
Gen.__index = Gen

local function new_gen(topic)
  return setmetatable({
    topic = topic,
    lines = {}, steps = {},
    depth = 2,
    consts = {}, const_src = {}, nconst = 0,
    nan_src = nil,
    libs = {}, lib_list = {},
    ntmp = 0,
    cur = nil,
    uses_msg = false,
    sync_msg = false,
  }, Gen)
end

function Gen:emit(line)
  local n = #self.lines + 1
  self.lines[n] = string.rep("  ", self.depth) .. line
  self.steps[n] = self.cur
end

function Gen:push() self.depth = self.depth + 1 end
function Gen:pop() self.depth = self.depth - 1 end

function Gen:tmp()
  self.ntmp = self.ntmp + 1
  return "t" .. self.ntmp
end

-- Source naming a Lua library function, as a local of the generated chunk.
local LIBS = { math = math, util = util, base = { type = type }, state = state, window = window, join = join }
function Gen:lib(lib, name)
  local id = lib .. "." .. name
  local local_name = self.libs[id]
  if not local_name then
    local_name = (lib == "util" or lib == "state" or lib == "window" or lib == "join") and
      (lib:sub(1, 1) .. "_" .. name) or name
    self.libs[id] = local_name
    self.lib_list[#self.lib_list + 1] = { local_name, lib, name }
    assert(LIBS[lib][name] ~= nil, id)
  end
  return local_name
end

-- Source naming a constant: a literal when it has one, else a local bound
-- to the value (functions, tables, long strings, inf/nan, ls.null).
function Gen:const(x)
  local t = type(x)
  if x == nil then return "nil" end
  if t == "boolean" then return tostring(x) end
  if x == util.null then return self:lib("util", "null") end
  if t == "number" then
    local lit = util.number_literal(x)
    if lit then return lit end
    if x ~= x then
      if not self.nan_src then self.nan_src = self:new_const(x) end
      return self.nan_src
    end
  elseif t == "string" and #x <= 200 then
    return util.quote(x)
  end
  local src = self.const_src[x]
  if src then return src end
  src = self:new_const(x)
  self.const_src[x] = src
  return src
end

function Gen:new_const(x)
  self.nconst = self.nconst + 1
  local n = self.nconst
  self.consts[n] = x
  if n <= MAX_LOCAL_CONSTS then return "c" .. n end
  return "C[" .. n .. "]"
end

-- A call to a user function with (v, msg), or, for a stateful step on
-- `store`, with (v, state, msg) after pointing the state at the row's key.
function Gen:call_fn(fn, store)
  self.uses_msg = true
  local sid = self:watch_step()
  if sid then self:emit("at.step = " .. sid) end
  if self.sync_msg then
    self:emit("msg.timestamp = ts; msg[HDR] = hdr")
  end
  if store then
    local st = self:const(state.store(store))
    self:emit(self:lib("state", "at") .. "(" .. st .. ", m.partition, key, i)")
    return self:const(fn) .. "(v, " .. st .. ", msg)"
  end
  return self:const(fn) .. "(v, msg)"
end

-- The id of the current step in env.steps ("file:line: what", for the
-- runtime's watchdog, runtime/watchdog.h): the generated code stores it in
-- at.step before calling the step's user function.
function Gen:watch_step()
  local node, steps = self.cur, self.watch_steps
  if not node or not steps then return nil end
  local id = self.watch_ids[node]
  if not id then
    id = #steps + 1
    steps[id] = tostring(node.loc) .. ": " .. tostring(node.desc)
    self.watch_ids[node] = id
  end
  return id
end

function Gen:key_src(k)
  if util.is_ident(k) then return "." .. k end
  return "[" .. self:const(k) .. "]"
end

---------------------------------------------------------------------------
-- Identity tracking for copies (see the header comment)
---------------------------------------------------------------------------
-- An identity describes the table in `v` on the current code path:
--   held   - something else may still observe it (an earlier to_topic,
--            a later sibling branch);
--   shared - its nested tables may be shared with a held table;
--   alias  - the identity this one may be the same table as (an apply
--            result may be its input).

local function held(id)
  while id do
    if id.held then return true end
    id = id.alias
  end
  return false
end

local function shared(id)
  while id do
    if id.shared then return true end
    id = id.alias
  end
  return false
end

local function retain(id)
  while id do
    id.held = true
    id = id.alias
  end
end

function Gen:mutate(id, deep)
  if held(id) then
    self:emit("v = " .. self:lib("util", deep and "deepcopy" or "copy") .. "(v)")
    return { held = false, shared = not deep }
  end
  if deep and shared(id) then
    self:emit("v = " .. self:lib("util", "deepcopy") .. "(v)")
    return { held = false, shared = false }
  end
  return id
end

---------------------------------------------------------------------------
-- Liveness: a subtree with no output and no user function does nothing
---------------------------------------------------------------------------

local FN_KINDS = { filter = true, apply = true, update = true, set_ts = true, set_hdr = true }

local function live(node)
  if node.live ~= nil then return node.live end
  local l = false
  if node.kind == "to_topic" or node.kind == "print" or node.kind == "table_put" or node.kind == "global_put" or
    node.kind == "asof_record" or node.kind == "interval_right" then l = true
  elseif FN_KINDS[node.kind] then l = true
  elseif node.kind == "assign" and node.vk == "fn" then l = true
  elseif node.kind == "window" and (node.def.on_late or node.def.late_topic) then
    l = true -- late rows go to on_late
  end
  for _, c in ipairs(node.children) do
    if live(c) then l = true end
  end
  node.live = l
  return l
end

local function warn_dead(node)
  if not live(node) and not node.warned then
    node.warned = true
    if node.kind == "root" then
      core.log("warn", node.loc .. ": app:dataframe(" .. node.topic.name ..
        ") has no effect: no step after it produces output")
    else
      core.log("warn", node.loc .. ": " .. node.desc ..
        " has no effect: nothing after it produces output (did you mean to assign the result, sdf = sdf...?)")
    end
  end
end

---------------------------------------------------------------------------
-- Steps
---------------------------------------------------------------------------

-- Compiles expression node n reading the row in `v`; statements it needs
-- (for ls.where) are emitted before.
function Gen:expr(n)
  return expr.compile(n, "v", self)
end

function Gen:truthy(n)
  return expr.truthy(n, "v", self)
end

-- A table constant assigned to a column is copied for every row, so one
-- row's later changes cannot leak into the next.
local function const_value_src(g, x)
  if type(x) == "table" and x ~= util.null then
    return g:lib("util", "deepcopy") .. "(" .. g:const(x) .. ")"
  end
  return g:const(x)
end

local function value_src(g, node)
  if node.vk == "expr" then return g:expr(node.expr)
  elseif node.vk == "fn" then return g:call_fn(node.fn)
  else return const_value_src(g, node.value) end
end

-- Emits `line`. When statements were emitted since mark (an ls.where
-- needs some), they and the line go into their own do ... end, so their
-- temporaries do not stay live.
function Gen:finish_scoped(mark, line)
  if #self.lines == mark then
    self:emit(line)
    return
  end
  local ind = string.rep("  ", self.depth)
  for j = #self.lines, mark + 1, -1 do
    self.lines[j] = "  " .. self.lines[j]
  end
  insert(self.lines, mark + 1, ind .. "do")
  insert(self.steps, mark + 1, self.cur)
  self:push()
  self:emit(line)
  self:pop()
  self:emit("end")
end

local step = {}

step.root = function(_, _, id)
  return 0, id
end

step.assign = function(g, node, id)
  local path = node.path
  if #path == 1 then
    id = g:mutate(id, false)
    local mark = #g.lines
    local src = value_src(g, node)
    g:finish_scoped(mark, "v" .. g:key_src(path[1]) .. " = " .. src)
    return 0, id
  end
  -- nested: sdf.pos.lat = x creates missing tables, copies shared ones
  local was_held = held(id)
  id = g:mutate(id, false)
  local copy_path = was_held or shared(id)
  local typ = g:lib("base", "type")
  g:emit("do")
  g:push()
  local x = g:tmp()
  g:emit("local " .. x)
  local mark = #g.lines
  local src = value_src(g, node)
  g:finish_scoped(mark, x .. " = " .. src)
  local parent = "v"
  for j = 1, #path - 1 do
    local t = g:tmp()
    local k = g:key_src(path[j])
    g:emit("local " .. t .. " = " .. parent .. k)
    if copy_path then
      g:emit("if " .. typ .. "(" .. t .. ") ~= \"table\" then " .. t .. " = {} else " ..
        t .. " = " .. g:lib("util", "copy") .. "(" .. t .. ") end")
      g:emit(parent .. k .. " = " .. t)
    else
      g:emit("if " .. typ .. "(" .. t .. ") ~= \"table\" then " .. t .. " = {}; " ..
        parent .. k .. " = " .. t .. " end")
    end
    parent = t
  end
  g:emit(parent .. g:key_src(path[#path]) .. " = " .. x)
  g:pop()
  g:emit("end")
  return 0, id
end

-- A filter skips the rest of its block (the row loop body, a branch's
-- `do` block or an expand loop body) with a goto to one label at the end
-- of that block, so long chains of filters neither nest nor stack labels.
function Gen:open_block()
  self.blocks = self.blocks or {}
  self.blocks[#self.blocks + 1] = { label = nil }
end

function Gen:block_label()
  local b = self.blocks[#self.blocks]
  if not b.label then
    self.nlabel = (self.nlabel or 0) + 1
    b.label = "skip" .. self.nlabel
  end
  return b.label
end

function Gen:close_block()
  local b = table.remove(self.blocks)
  if b.label then
    local cur = self.cur
    self.cur = nil
    self:emit("::" .. b.label .. "::")
    self.cur = cur
  end
end

step.mask = function(g, node, id)
  g:emit("if not " .. g:truthy(node.expr) .. " then goto " .. g:block_label() .. " end")
  return 0, id
end

step.filter = function(g, node, id)
  local call = g:call_fn(node.fn, node.store)
  g:emit("if not " .. g:lib("util", "truth") .. "(" .. call .. ") then goto " .. g:block_label() .. " end")
  return 0, id
end

step.apply = function(g, node, id)
  local call = g:call_fn(node.fn, node.store)
  if not node.expand then
    g:emit("v = " .. call)
    return 0, { alias = id }
  end
  local r, j = g:tmp(), g:tmp()
  g:emit("local " .. r .. " = " .. call)
  g:emit("if " .. r .. " ~= nil and " .. r .. " ~= " .. g:lib("util", "null") .. " then")
  g:push()
  g:emit("if " .. g:lib("base", "type") .. "(" .. r .. ") ~= \"table\" then " ..
    g:lib("util", "expand_error") .. "(" .. r .. ") end")
  g:emit("for " .. j .. " = 1, #" .. r .. " do")
  g:push()
  g:emit("local v, ts, hdr, key = " .. r .. "[" .. j .. "], ts, hdr, key")
  g:open_block()
  return 2, { alias = id }
end

step.update = function(g, node, id)
  id = g:mutate(id, true)
  g:emit(g:call_fn(node.fn, node.store))
  return 0, id
end

step.project = function(g, node, id)
  local parts = {}
  for j, c in ipairs(node.cols) do
    if util.is_ident(c) then
      parts[j] = c .. " = v." .. c
    else
      local k = g:const(c)
      parts[j] = "[" .. k .. "] = v[" .. k .. "]"
    end
  end
  g:emit("v = { " .. concat(parts, ", ") .. " }")
  return 0, { shared = held(id) or shared(id) }
end

step.drop = function(g, node, id)
  id = g:mutate(id, false)
  local parts = {}
  for j, c in ipairs(node.cols) do
    parts[j] = "v" .. g:key_src(c) .. " = nil"
  end
  if #parts > 0 then g:emit(concat(parts, "; ")) end
  return 0, id
end

step.fill = function(g, node, id)
  id = g:mutate(id, false)
  local isnull = g:lib("util", "isnull")
  for _, pair in ipairs(node.cols) do
    local k = g:key_src(pair[1])
    g:emit("if " .. isnull .. "(v" .. k .. ") then v" .. k .. " = " .. const_value_src(g, pair[2]) .. " end")
  end
  return 0, id
end

step.to_topic = function(g, node, id)
  local key
  if node.keyk == "input" then
    key = "key"
  elseif node.keyk == "expr" then
    key = g:expr(node.key)
  else
    key = g:call_fn(node.key)
  end
  g:emit("nout = nout + 1")
  g:emit("out_val[nout] = v; out_key[nout] = " .. key .. "; out_topic[nout] = " ..
    g.output_id(node.topic_out) .. "; out_ts[nout] = ts; out_row[nout] = i; out_hdr[nout] = hdr")
  retain(id)
  return 0, id
end

-- A window (luastream.window): the aggregations' column values go to the
-- window's scratch array, w_process updates the key's windows and returns
-- how many rows it emitted; the rest of the pipeline is a continuation
-- function (Gen:continuation) called once per emitted row, with the row's
-- timestamp the window start. Idle closing calls the same continuation.
-- A late row for an on_late topic (w_process sets R.late_now) is written there.
step.window = function(g, node, id)
  local def = node.def
  local R = window.runtime(def, state.store(node.store), node)
  local vals = g:const(R.vals)
  for j, a in ipairs(def.aggs) do
    if a.agg.col then
      local mark = #g.lines
      local src = g:expr(a.agg.col)
      g:finish_scoped(mark, vals .. "[" .. j .. "] = " .. src)
    end
  end
  if def.on_late then
    g.uses_msg = true
    g:emit("msg.timestamp = ts; msg[HDR] = hdr")
  end
  local n, j = g:tmp(), g:tmp()
  g:emit("local " .. n .. " = " .. g:lib("window", "process") .. "(" .. g:const(R) ..
    ", v, ts, key, m.partition, i, msg)")
  if def.late_topic then
    g:emit("if " .. g:const(R) .. ".late_now then")
    g:push()
    g:emit(g:const(R) .. ".late_now = false")
    g:emit("nout = nout + 1")
    g:emit("out_val[nout] = v; out_key[nout] = key; out_topic[nout] = " .. g.output_id(def.late_topic) ..
      "; out_ts[nout] = ts; out_row[nout] = i; out_hdr[nout] = hdr")
    g:pop()
    g:emit("end")
    retain(id)
  end
  local cont = g:continuation(node, R)
  local ov, ots = g:const(R.ov) .. "[" .. j .. "]", g:const(R.ots) .. "[" .. j .. "]"
  if def.closing ~= "partition" then
    g:emit("for " .. j .. " = 1, " .. n .. " do nout = " .. cont .. "(" .. ov .. ", " .. ots ..
      ", hdr, key, i, m, nout) end")
  else
    -- a partition's watermark closes other keys' windows too: each row with its key
    -- (the headers are the row's for its own key's windows only)
    local k2 = g:tmp()
    g.uses_msg = true
    g:emit("for " .. j .. " = 1, " .. n .. " do")
    g:push()
    g:emit("local " .. k2 .. " = " .. g:const(R.okeys) .. "[" .. j .. "]")
    g:emit("msg.key = " .. k2)
    g:emit("nout = " .. cont .. "(" .. ov .. ", " .. ots .. ", " .. k2 .. " == key and hdr or nil, " .. k2 ..
      ", i, m, nout)")
    g:pop()
    g:emit("end")
    g:emit("msg.key = key")
  end
  return 0, id
end

-- app:table's topic (docs/joins.md): each record sets its key's value in
-- the table's store; a tombstone (ls.null) deletes it.
step.table_put = function(g, node, id)
  local st = g:const(state.store(node.store))
  g:emit(g:lib("state", "at") .. "(" .. st .. ", m.partition, key, i)")
  g:emit(g:lib("state", "table_put") .. "(" .. st .. ", v)")
  return 0, id
end

-- app:global_table's topic: each record sets its key's value in the table
-- (in memory, luastream.join); a tombstone deletes it.
step.global_put = function(g, node, id)
  g:emit(g:lib("join", "global_put") .. "(" .. g:const(node.table) .. ", key, v)")
  return 0, id
end

-- The end of a join step, the other side's row in local r (nil: none): an
-- inner join skips the row without one; `merger` builds the row from the row
-- and a copy of r; else `merge` (a library function's name) adds r's columns
-- the row lacks. The merger may change the row (and its nested tables) as
-- update's function may: it gets a copy all the way down when something else
-- still holds the row (an earlier to_topic, a later branch), the row itself
-- otherwise.
local function join_merge(g, node, id, r, merge)
  if node.how == "inner" then
    g:emit("if " .. r .. " == nil then goto " .. g:block_label() .. " end")
  end
  if node.merger then
    id = g:mutate(id, true)
    g:emit("v = " .. g:const(node.merger) .. "(v, " .. g:lib("util", "deepcopy") .. "(" .. r .. "))")
    return 0, { alias = id }
  end
  id = g:mutate(id, false)
  g:emit("if " .. r .. " ~= nil then " .. merge .. "(v, " .. r .. ") end")
  return 0, id
end

-- sdf:join_table: the table's value for the row's key (from the same store,
-- co-partitioned); an inner join skips a row without one; the default merger
-- adds the table value's columns the row lacks (copies of nested tables), by
-- a function made once per set of columns (luastream.join.table_merge).
step.join_table = function(g, node, id)
  local r = g:tmp()
  if node.global then
    -- a global table: the key is the row's, or what `on` gives
    local k = "key"
    if node.onk == "expr" then
      k = g:tmp()
      g:emit("local " .. k)
      local mark = #g.lines
      local src = g:expr(node.on)
      g:finish_scoped(mark, k .. " = " .. src)
    elseif node.onk == "fn" then
      k = g:tmp()
      g:emit("local " .. k .. " = " .. g:call_fn(node.on))
    end
    g:emit("local " .. r .. " = " .. g:lib("join", "global_get") .. "(" .. g:const(node.table) .. ", " .. k .. ")")
  else
    local st = g:const(state.store(node.store))
    g:emit(g:lib("state", "at") .. "(" .. st .. ", m.partition, key, i)")
    g:emit("local " .. r .. " = " .. g:lib("state", "table_get") .. "(" .. st .. ")")
  end
  return join_merge(g, node, id, r, g:lib("join", "table_merge"))
end

-- sdf:join_asof: the other side records its rows (asof_record), this side
-- looks up the latest one at or before its timestamp (join_asof).
step.asof_record = function(g, node, id)
  local st = g:const(state.store(node.store))
  g:emit(g:lib("state", "at") .. "(" .. st .. ", m.partition, key, i)")
  g:emit(g:lib("join", "asof_record") .. "(" .. st .. ", v, ts, " .. g:const(node.grace) .. ")")
  return 0, id
end

step.join_asof = function(g, node, id)
  local st = g:const(state.store(node.store))
  g:emit(g:lib("state", "at") .. "(" .. st .. ", m.partition, key, i)")
  local r = g:tmp()
  g:emit("local " .. r .. " = " .. g:lib("join", "asof_get") .. "(" .. st .. ", ts, " ..
    g:const(node.tolerance) .. ", " .. g:const(node.grace) .. ")")
  return join_merge(g, node, id, r, g:lib("util", "merge_missing"))
end

-- sdf:join_interval (luastream.join): this side's rows pair with the other
-- side's as they come; the pairs run through the continuation, which the
-- other side's pipeline calls too for the pairs its rows find. Each output
-- row goes with its timestamp and this side's row's headers (J.ohdr): the
-- arriving row's for its pairs, a stored row's for an unmatched one.
step.interval_left = function(g, node, id)
  local J = join.runtime(node.def, state.store(node.store), node)
  local n, j = g:tmp(), g:tmp()
  g:emit("local " .. n .. " = " .. g:lib("join", "left") .. "(" .. g:const(J) .. ", v, ts, key, m.partition, i, hdr)")
  local cont = g:continuation(node, J)
  g:emit("for " .. j .. " = 1, " .. n .. " do nout = " .. cont .. "(" .. g:const(J.ov) .. "[" .. j .. "], " ..
    g:const(J.ots) .. "[" .. j .. "], " .. g:const(J.ohdr) .. "[" .. j .. "], key, i, m, nout) end")
  return 0, id
end

step.interval_right = function(g, node, id)
  local J = join.runtime(node.def, state.store(node.store), node)
  local n = g:tmp()
  g:emit("local " .. n .. " = " .. g:lib("join", "right") .. "(" .. g:const(J) .. ", v, ts, key, m.partition, i)")
  g:emit("nout = " .. g:lib("join", "right_emit") .. "(" .. g:const(J) .. ", " .. n .. ", key, m.partition, i, nout)")
  return 0, id
end

step.print = function(g, node, id)
  g:emit(g:lib("util", "print_row") .. "(" .. g:const(g.topic.name) ..
    ", key, m.partition, m.offset, v, " .. tostring(node.metadata) .. ")")
  return 0, id
end

step.set_ts = function(g, node, id)
  local call = g:call_fn(node.fn)
  g:emit("ts = " .. g:lib("util", "check_ts") .. "(" .. call .. ", \"the function\")")
  return 0, id
end

step.set_hdr = function(g, node, id)
  local call = g:call_fn(node.fn)
  g:emit("hdr = " .. g:lib("util", "norm_headers") .. "(" .. call .. ")")
  return 0, id
end

---------------------------------------------------------------------------
-- Tree walk
---------------------------------------------------------------------------

local gen

-- The live children of node after its step (nid: the row's identity there).
local function gen_children(g, node, nid)
  local kids = {}
  for _, c in ipairs(node.children) do
    if live(c) then kids[#kids + 1] = c else warn_dead(c) end
  end
  if #kids == 1 then
    gen(g, kids[1], nid)
  elseif #kids > 1 then
    for j, c in ipairs(kids) do
      g.cur = nil
      g:emit("do local v, ts, hdr, key = v, ts, hdr, key")
      g:push()
      g:open_block()
      gen(g, c, { alias = nid, held = j < #kids })
      g:close_block()
      g:pop()
      g.cur = nil
      g:emit("end")
    end
  end
end

gen = function(g, node, id)
  g.cur = node
  local close, nid = step[node.kind](g, node, id)
  -- the steps after a window or an interval join are a continuation
  if node.kind ~= "window" and node.kind ~= "interval_left" then gen_children(g, node, nid) end
  g.cur = nil
  if close > 0 then g:close_block() end -- the expand loop body
  for _ = 1, close do
    g:pop()
    g:emit("end")
  end
end

-- The steps after window `node` as a function of their own,
-- wcontN(v, ts, hdr, key, i, m, nout) -> nout, generated aside and placed
-- before the row loop; R.cont is set to it once the chunk runs.
function Gen:continuation(node, R)
  local saved = { self.lines, self.steps, self.depth, self.blocks, self.cur }
  self.lines, self.steps, self.depth, self.blocks = {}, {}, 2, {}
  self:open_block()
  gen_children(self, node, { held = false })
  self:close_block()
  local lines, steps = self.lines, self.steps
  self.lines, self.steps, self.depth, self.blocks, self.cur = saved[1], saved[2], saved[3], saved[4], saved[5]
  self.conts = self.conts or {}
  local name = "wcont" .. (#self.conts + 1)
  self.conts[#self.conts + 1] = { name = name, lines = lines, steps = steps, R = R }
  return name
end

local function has_kind(node, kinds)
  if kinds[node.kind] and live(node) then return true end
  for _, c in ipairs(node.children) do
    if has_kind(c, kinds) then return true end
  end
  return false
end

-- Compiles the pipeline of one input topic.
--   topic: the Topic; roots: its root nodes (one per app:dataframe call)
--   env: { output_id = fn(topic) -> index, out = {val=, key=, topic=, ts=, row=, hdr=},
--          at = { i =, nout =, step = }, steps = {} }: the loop sets at.i = i
--          and at.nout = nout at the start of every row, so whoever catches
--          an error knows the failing row and the outputs of the rows before
--          it (no allocation, no debug.getlocal), and at.step to the index in
--          steps of a user function's step before calling it
-- Returns { fn = function(first, last, meta, rows, keys, hdrs, nout) -> nout,
--           source = string, chunkname = string, step_at = {line -> node} }
function M.compile_topic(topic, roots, env)
  local g = new_gen(topic)
  g.output_id = env.output_id
  g.watch_steps, g.watch_ids = env.steps, {}
  local root = { kind = "root", children = roots, loc = topic.loc, desc = "topic '" .. topic.name .. "'" }
  -- msg follows ts and hdr where they change: set_timestamp, set_headers, and
  -- the continuations of windows and interval joins (their rows' own)
  g.sync_msg = has_kind(root, { set_ts = true, set_hdr = true, window = true, interval_left = true })

  -- topic timestamp
  local ts_step = { kind = "topic_ts", loc = topic.loc, desc = "topic '" .. topic.name .. "' timestamp" }
  g.cur = ts_step
  local tsopt = topic.timestamp
  if type(tsopt) == "string" then
    g:emit("ts = " .. g:lib("util", "field_ts") .. "(v, " .. g:const(tsopt) .. ", ts)")
  elseif tsopt ~= nil then
    local call = g:call_fn(tsopt)
    g:emit("ts = " .. g:lib("util", "fn_ts") .. "(" .. call .. ", ts, \"the function\")")
  end
  local ts_lines = #g.lines

  g:open_block()
  gen(g, root, { held = false })
  g:close_block()

  -- the continuations (windows), then the row loop
  local all, step_at = {}, {}
  local function add(line, st)
    all[#all + 1] = line
    if st then step_at[#all] = st end
  end
  local function locals(used)
    add("  local out_val, out_key, out_topic = K.out.val, K.out.key, K.out.topic")
    add("  local out_ts, out_row, out_hdr = K.out.ts, K.out.row, K.out.hdr")
    add("  local msg, at = K.msg, K.at")
    for _, l in ipairs(g.lib_list) do
      if not used or used[l[1]] then add("  local " .. l[1] .. " = K.lib." .. l[2] .. "." .. l[3]) end
    end
    for n = 1, math.min(g.nconst, MAX_LOCAL_CONSTS) do
      if not used or used["c" .. n] then add("  local c" .. n .. " = C[" .. n .. "]") end
    end
  end
  add("local K = ...")
  add("local C, HDR = K.c, K.HDR")
  local conts = g.conts or {}
  if #conts > 0 then
    local names = {}
    for j, c in ipairs(conts) do names[j] = c.name end
    add("local " .. concat(names, ", "))
    for _, c in ipairs(conts) do
      local used = {}
      for _, l in ipairs(c.lines) do
        for w in l:gmatch("[%a_][%w_]*") do used[w] = true end
      end
      add(c.name .. " = function(v, ts, hdr, key, i, m, nout)")
      locals(used)
      add("  do")
      for j, l in ipairs(c.lines) do add(l, c.steps[j]) end
      add("  end")
      add("  return nout")
      add("end")
    end
  end
  add("local main = function(first, last, meta, rows, keys, hdrs, nout)")
  locals(nil)
  add("  for i = first, last do")
  add("    at.i = i; at.nout = nout")
  add("    local m = meta[i - 1]")
  add("    local v, key, hdr = rows[i], keys[i], hdrs[i]")
  add("    local ts = m.timestamp")
  if g.uses_msg then
    add("    msg.key = key; msg.timestamp = ts; msg.partition = m.partition; " ..
      "msg.offset = m.offset; msg[HDR] = hdr")
  end
  if g.uses_msg and ts_lines > 0 then
    -- the topic timestamp lines come first in the body; keep msg in step
    insert(g.lines, ts_lines + 1, "    msg.timestamp = ts")
    insert(g.steps, ts_lines + 1, ts_step)
  end
  for j, l in ipairs(g.lines) do add(l, g.steps[j]) end
  add("  end")
  add("  return nout")
  add("end")
  local ret = {}
  for j, c in ipairs(conts) do ret[j] = c.name .. " = " .. c.name end
  add("return main, { " .. concat(ret, ", ") .. " }")
  local source = concat(all, "\n") .. "\n"

  local chunkname = "=[pipeline " .. topic.name .. "]"
  local chunk, err = load(source, chunkname)
  if not chunk then
    error("luastream: internal error compiling the pipeline of topic '" .. topic.name .. "': " ..
      tostring(err) .. "\n" .. source, 0)
  end
  local msg = setmetatable({ topic = topic.name }, util.msg_mt)
  local K = { c = g.consts, HDR = util.HDR, out = env.out, msg = msg, lib = LIBS, at = env.at }
  local fn, cont_fns = chunk(K)
  for _, c in ipairs(conts) do
    c.R.cont, c.R.msg = cont_fns[c.name], msg
    c.R.m = { partition = 0, offset = -1, timestamp = 0 }
  end
  return { fn = fn, source = source, chunkname = chunkname, step_at = step_at, msg = msg }
end

M.live = live

return M
