-- luastream.dataframe: the StreamingDataFrame.
--
-- A dataframe only records steps. Each input topic's steps form a tree:
-- a dataframe object points at one node of it; an in-place operation moves
-- that pointer to the new node, any other operation returns a new
-- dataframe pointing at the new node. Reusing a dataframe in two pipelines
-- gives a node two children: a branch. luastream.compile turns the tree
-- into one Lua function per input topic.
--
-- Which operations are in place follows Quix Streams 3: column assignment,
-- update, to_topic, print, drop and fill change the dataframe they are
-- called on (and return it); apply, filter, masks, projections,
-- set_timestamp and set_headers return a new dataframe and leave the old
-- one usable for branching.
local util = require("luastream.util")
local expr = require("luastream.expr")
local window = require("luastream.window")

local M = {}

local type, rawget, rawset, setmetatable, getmetatable, tostring =
  type, rawget, rawset, setmetatable, getmetatable, tostring

local KEY = setmetatable({}, { __tostring = function() return "<sdf state>" end })
local DF = {}          -- metatable of dataframes
local methods = {}
M.methods = methods

local function is_sdf(x)
  return type(x) == "table" and getmetatable(x) == DF
end
M.is_sdf = is_sdf

local function st_of(sdf)
  return rawget(sdf, KEY)
end

local function new_sdf(app, topic, node)
  local sdf = setmetatable({}, DF)
  rawset(sdf, KEY, { app = app, topic = topic, node = node })
  return sdf
end

-- A new root for app:dataframe(topic).
function M.new(app, topic, where)
  local root = { kind = "root", loc = where, desc = "dataframe '" .. topic.name .. "'", children = {}, topic = topic }
  return new_sdf(app, topic, root), root
end

-- The node a dataframe currently points at (used by the compiler and tests).
function M.node_of(sdf)
  return st_of(sdf).node
end

local function check_self(self, name)
  if not is_sdf(self) then
    util.fail("sdf:" .. name .. "() must be called with ':' on a dataframe")
  end
  return st_of(self)
end

local function add(sdf, step, inplace)
  local st = st_of(sdf)
  if st.app.frozen then
    util.fail("the pipeline can no longer change: declare steps while the script loads", step.loc)
  end
  step.parent = st.node
  step.children = step.children or {}
  step.topic = st.topic
  local kids = st.node.children
  kids[#kids + 1] = step
  if inplace then
    st.node = step
    return sdf
  end
  return new_sdf(st.app, st.topic, step)
end


local function check_fn(fn, what, where)
  if not util.is_callable(fn) then
    util.fail(what .. ": expected a function, got " .. type(fn), where)
  end
end

-- {stateful = true, store = "name"}: the step's function gets the state of
-- the message key (luastream.state). Returns the store name, or nil.
local function check_stateful(self, opts, what, where)
  if opts.stateful ~= nil and type(opts.stateful) ~= "boolean" then
    util.fail(what .. ": option 'stateful' must be a boolean, got " .. type(opts.stateful), where)
  end
  if opts.store ~= nil and not opts.stateful then
    util.fail(what .. ": option 'store' needs stateful = true", where)
  end
  if not opts.stateful then return nil end
  local name = opts.store or "default"
  if type(name) ~= "string" or not name:match("^[%w_.-]+$") or #name > 100 then
    util.fail(what .. ": option 'store' must be a name of letters, digits, '_', '-' or '.', got " ..
      tostring(name), where)
  end
  local st = st_of(self)
  st.app:_use_store(name, st.topic, where)
  return name
end

-- sdf:apply(fn) used as a value (sdf.x = sdf:apply(fn), sdf[sdf:apply(fn)]):
-- the apply step is taken out of the tree and its function used directly.
local function take_apply(self, other, what, where)
  local st, ost = st_of(self), st_of(other)
  local node = ost.node
  if node.kind ~= "apply" or node.expand or node.parent ~= st.node or #node.children > 0 then
    util.fail(what .. ": a dataframe used as a value must be this dataframe's own sdf:apply(fn), " ..
      "made in the same statement (sdf.x = sdf:apply(fn))", where)
  end
  local kids = node.parent.children
  for j = #kids, 1, -1 do
    if kids[j] == node then table.remove(kids, j) break end
  end
  return node.fn
end

local function assign(self, path, value, where)
  local desc = "column '" .. expr.render_path(path) .. "'"
  local step = { kind = "assign", path = path, loc = where, desc = desc }
  if expr.is_expr(value) then
    step.vk, step.expr = "expr", rawget(value, expr.NODE)
  elseif is_sdf(value) then
    step.vk, step.fn = "fn", take_apply(self, value, "assignment to " .. desc, where)
  elseif type(value) == "function" then
    step.vk, step.fn = "fn", value
  else
    step.vk, step.value = "const", value
  end
  return add(self, step, true)
end
M.assign = assign

expr.hooks.is_sdf = is_sdf
expr.hooks.assign = assign

local function projection(self, cols, where)
  local list = {}
  for j = 1, #cols do
    local c = cols[j]
    if type(c) ~= "string" and type(c) ~= "number" then
      util.fail("projection: column names must be strings, got " .. type(c) .. " at position " .. j, where)
    end
    list[j] = c
  end
  for k in pairs(cols) do
    if type(k) ~= "number" or k < 1 or k > #cols or k % 1 ~= 0 then
      util.fail("projection: expected a list of column names (sdf[{\"a\", \"b\"}])", where)
    end
  end
  return add(self, { kind = "project", cols = list, loc = where, desc = "projection" }, false)
end

---------------------------------------------------------------------------
-- Metatable: sdf.x, sdf["x"], sdf[mask], sdf[{...}], sdf.x = ...
---------------------------------------------------------------------------

DF.__index = function(self, k)
  local kt = type(k)
  if kt == "string" then
    local m = methods[k]
    if m then return m end
    return expr.col({ k }, self)
  elseif kt == "number" then
    return expr.col({ k }, self)
  elseif kt == "table" then
    local where = util.callsite()
    if expr.is_expr(k) then
      local node = rawget(k, expr.NODE)
      return add(self, { kind = "mask", expr = node, loc = where,
        desc = "filter '" .. expr.render(node) .. "'" }, false)
    elseif is_sdf(k) then
      local fn = take_apply(self, k, "filter", where)
      return add(self, { kind = "filter", fn = fn, loc = where, desc = "filter" }, false)
    else
      return projection(self, k, where)
    end
  elseif kt == "function" then
    local where = util.callsite()
    return add(self, { kind = "filter", fn = k, loc = where, desc = "filter" }, false)
  end
  util.fail("a dataframe cannot be indexed with a " .. kt)
end

DF.__newindex = function(self, k, value)
  local kt = type(k)
  if kt ~= "string" and kt ~= "number" then
    util.fail("column names must be strings, got " .. kt)
  end
  assign(self, { k }, value, util.callsite())
end

DF.__tostring = function(self)
  local st = st_of(self)
  return "StreamingDataFrame<" .. st.topic.name .. ">"
end

DF.__call = function()
  util.fail("a dataframe is not callable (did you mean sdf:apply(fn)?)")
end

---------------------------------------------------------------------------
-- Methods
---------------------------------------------------------------------------

-- sdf:col("filter"): a column whose name is also a method name. Several
-- names give a nested path: sdf:col("pos", "lat").
function methods.col(self, ...)
  check_self(self, "col")
  local n = select("#", ...)
  if n == 0 then util.fail("sdf:col: expected a column name") end
  local path = {}
  for j = 1, n do
    local p = select(j, ...)
    if type(p) ~= "string" and type(p) ~= "number" then
      util.fail("sdf:col: column names must be strings, got " .. type(p))
    end
    path[j] = p
  end
  return expr.col(path, self)
end

local APPLY_OPTS = { expand = true, stateful = true, store = true }
function methods.apply(self, fn, opts)
  check_self(self, "apply")
  local where = util.callsite()
  check_fn(fn, "apply", where)
  opts = util.check_options("apply", opts, APPLY_OPTS, where)
  local store = check_stateful(self, opts, "apply", where)
  if opts.expand ~= nil and type(opts.expand) ~= "boolean" then
    util.fail("apply: option 'expand' must be a boolean, got " .. type(opts.expand), where)
  end
  local expand = opts.expand == true
  return add(self, { kind = "apply", fn = fn, expand = expand, loc = where, store = store,
    desc = expand and "apply(expand)" or "apply" }, false)
end

local FN_OPTS = { stateful = true, store = true }
function methods.update(self, fn, opts)
  check_self(self, "update")
  local where = util.callsite()
  check_fn(fn, "update", where)
  opts = util.check_options("update", opts, FN_OPTS, where)
  local store = check_stateful(self, opts, "update", where)
  return add(self, { kind = "update", fn = fn, loc = where, store = store, desc = "update" }, true)
end

function methods.filter(self, f, opts)
  check_self(self, "filter")
  local where = util.callsite()
  opts = util.check_options("filter", opts, FN_OPTS, where)
  local store = check_stateful(self, opts, "filter", where)
  if expr.is_expr(f) then
    if store then util.fail("filter: stateful = true needs a function, not an expression", where) end
    local node = rawget(f, expr.NODE)
    return add(self, { kind = "mask", expr = node, loc = where,
      desc = "filter '" .. expr.render(node) .. "'" }, false)
  end
  if is_sdf(f) then
    f = take_apply(self, f, "filter", where)
  end
  check_fn(f, "filter", where)
  return add(self, { kind = "filter", fn = f, loc = where, store = store, desc = "filter" }, false)
end

local TO_TOPIC_OPTS = { key = true }
function methods.to_topic(self, topic, opts)
  local st = check_self(self, "to_topic")
  local where = util.callsite()
  st.app:_check_topic(topic, "to_topic", where)
  opts = util.check_options("to_topic", opts, TO_TOPIC_OPTS, where)
  local step = { kind = "to_topic", topic_out = topic, loc = where, desc = "to_topic '" .. topic.name .. "'" }
  local key = opts.key
  if key == nil then
    step.keyk = "input"
  elseif type(key) == "string" or type(key) == "number" then
    step.keyk, step.key = "expr", rawget(expr.col({ key }), expr.NODE)
  elseif expr.is_expr(key) then
    step.keyk, step.key = "expr", rawget(key, expr.NODE)
  elseif util.is_callable(key) then
    step.keyk, step.key = "fn", key
  else
    util.fail("to_topic: option 'key' must be a column name, an expression or a function, got " .. type(key), where)
  end
  st.app:_use_output(topic)
  return add(self, step, true)
end

local PRINT_OPTS = { metadata = true }
function methods.print(self, opts)
  check_self(self, "print")
  local where = util.callsite()
  opts = util.check_options("print", opts, PRINT_OPTS, where)
  if opts.metadata ~= nil and type(opts.metadata) ~= "boolean" then
    util.fail("print: option 'metadata' must be a boolean, got " .. type(opts.metadata), where)
  end
  return add(self, { kind = "print", metadata = opts.metadata ~= false, loc = where, desc = "print" }, true)
end

function methods.set_timestamp(self, fn)
  check_self(self, "set_timestamp")
  local where = util.callsite()
  check_fn(fn, "set_timestamp", where)
  return add(self, { kind = "set_ts", fn = fn, loc = where, desc = "set_timestamp" }, false)
end

function methods.set_headers(self, fn)
  check_self(self, "set_headers")
  local where = util.callsite()
  check_fn(fn, "set_headers", where)
  return add(self, { kind = "set_hdr", fn = fn, loc = where, desc = "set_headers" }, false)
end

local function name_list(cols, what, where)
  if type(cols) == "string" or type(cols) == "number" then return { cols } end
  if type(cols) ~= "table" or expr.is_expr(cols) or is_sdf(cols) then
    util.fail(what .. ": expected a list of column names, got " .. type(cols), where)
  end
  local list = {}
  for j = 1, #cols do
    local c = cols[j]
    if type(c) ~= "string" and type(c) ~= "number" then
      util.fail(what .. ": column names must be strings, got " .. type(c), where)
    end
    list[j] = c
  end
  return list
end

function methods.drop(self, cols)
  check_self(self, "drop")
  local where = util.callsite()
  local list = name_list(cols, "drop", where)
  return add(self, { kind = "drop", cols = list, loc = where, desc = "drop" }, true)
end

-- sdf:fill{"a", b = 0}: a nil or ls.null "a" becomes ls.null, "b" becomes 0.
function methods.fill(self, spec)
  check_self(self, "fill")
  local where = util.callsite()
  if type(spec) ~= "table" or expr.is_expr(spec) or is_sdf(spec) then
    util.fail("fill: expected a table {column = default, ...}, got " .. type(spec), where)
  end
  local cols = {}
  local n = #spec
  for j = 1, n do
    local c = spec[j]
    if type(c) ~= "string" then
      util.fail("fill: column names must be strings, got " .. type(c), where)
    end
    cols[#cols + 1] = { c, util.null }
  end
  local names = {}
  for k, v in pairs(spec) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
      if type(k) ~= "string" then
        util.fail("fill: column names must be strings, got " .. type(k), where)
      end
      if expr.is_expr(v) or is_sdf(v) then
        util.fail("fill: the default for '" .. k .. "' must be a plain value", where)
      end
      names[#names + 1] = k
    end
  end
  table.sort(names)
  for j = 1, #names do cols[#cols + 1] = { names[j], spec[names[j]] } end
  return add(self, { kind = "fill", cols = cols, loc = where, desc = "fill" }, true)
end

-- Windows (luastream.window, docs/api.md "Windows"): a window definition;
-- its final() or current() adds a "window" step and returns a new dataframe
-- of the window rows.
local function window_env(self)
  local st = st_of(self)
  local app = st.app
  return { app = app, topic = st.topic, add = function(step) return add(self, step, false) end,
    is_topic = function(t)
      local ok = pcall(app._check_topic, app, t, "on_late", "")
      return ok
    end }
end

local function no_extra(what, extra, usage, where)
  if extra ~= nil then util.fail(what .. ": expected " .. usage, where) end
end

function methods.tumbling_window(self, size, opts, extra)
  check_self(self, "tumbling_window")
  local where = util.callsite()
  if type(opts) == "number" then
    util.fail("tumbling_window: expected (size_ms, { grace = ms, ... }), got a second number; " ..
      "for overlapping windows use hopping_window(size_ms, step_ms)", where)
  end
  no_extra("tumbling_window", extra, "(size_ms, opts)", where)
  return window.define(window_env(self), "tumbling", size, nil, opts, where)
end

function methods.hopping_window(self, size, step, opts, extra)
  check_self(self, "hopping_window")
  local where = util.callsite()
  if type(step) == "table" or step == nil then
    util.fail("hopping_window: expected (size_ms, step_ms, opts), got no step; " ..
      "for windows that do not overlap use tumbling_window(size_ms)", where)
  end
  no_extra("hopping_window", extra, "(size_ms, step_ms, opts)", where)
  return window.define(window_env(self), "hopping", size, step, opts, where)
end

function methods.sliding_window(self, size, opts, extra)
  check_self(self, "sliding_window")
  local where = util.callsite()
  if type(opts) == "number" then
    util.fail("sliding_window: expected (size_ms, { grace = ms, ... }), got a second number; " ..
      "sliding windows have no step (for a step use hopping_window(size_ms, step_ms))", where)
  end
  no_extra("sliding_window", extra, "(size_ms, opts)", where)
  return window.define(window_env(self), "sliding", size, nil, opts, where)
end

function methods.session_window(self, gap, opts, extra)
  check_self(self, "session_window")
  local where = util.callsite()
  if type(opts) == "number" then
    util.fail("session_window: expected (gap_ms, { grace = ms, ... }), got a second number", where)
  end
  no_extra("session_window", extra, "(gap_ms, opts)", where)
  return window.define(window_env(self), "session", gap, nil, opts, where)
end

function methods.tumbling_count_window(self, n, extra)
  check_self(self, "tumbling_count_window")
  local where = util.callsite()
  if type(extra) == "number" then
    util.fail("tumbling_count_window: expected (n), got a second number; for overlapping count windows " ..
      "use hopping_count_window(n, step)", where)
  end
  return window.define(window_env(self), "count", n, nil, extra, where)
end

function methods.hopping_count_window(self, n, step, extra)
  check_self(self, "hopping_count_window")
  local where = util.callsite()
  if step == nil or type(step) == "table" then
    util.fail("hopping_count_window: expected (n, step), got no step; for count windows that do not " ..
      "overlap use tumbling_count_window(n)", where)
  end
  return window.define(window_env(self), "count", n, step, extra, where)
end

function methods.sliding_count_window(self, n, extra)
  check_self(self, "sliding_count_window")
  local where = util.callsite()
  return window.define(window_env(self), "count", n, nil, extra, where, true)
end

-- sdf:join_table(tbl, { how = "inner" | "left", merger = fn(left, right) })
-- (docs/joins.md): each row gets the table's current value for the row's
-- key. The table's store serves this dataframe's topic too, so the two
-- topics must be co-partitioned (checked at start, as for any shared store).
local JOIN_TABLE_OPTS = { how = true, merger = true, on = true }
local HOWS = { inner = true, left = true }
function methods.join_table(self, tbl, opts, extra)
  local st = check_self(self, "join_table")
  local where = util.callsite()
  if extra ~= nil then util.fail("join_table: expected (table, { how =, merger = })", where) end
  if not st.app._is_table(tbl) then
    util.fail("join_table: expected a table from app:table(topic), got " ..
      (st.app:_is_topic(tbl) and "a topic (make it a table: app:table(topic))" or type(tbl)), where)
  end
  if tbl.app ~= st.app then util.fail("join_table: the table belongs to another app", where) end
  opts = util.check_options("join_table", opts, JOIN_TABLE_OPTS, where)
  local how = opts.how == nil and "inner" or opts.how
  if not HOWS[how] then
    util.fail("join_table: option 'how' must be \"inner\" or \"left\", got " ..
      (type(how) == "string" and ("'" .. how .. "'") or type(how)), where)
  end
  if opts.merger ~= nil and not util.is_callable(opts.merger) then
    util.fail("join_table: option 'merger' must be a function(left, right) -> row, got " .. type(opts.merger), where)
  end
  local step = { kind = "join_table", how = how, merger = opts.merger, loc = where,
    desc = "join_table '" .. tbl.topic.name .. "'" }
  local on = opts.on
  if tbl.global then
    step.global, step.table = true, tbl.topic.name
    if type(on) == "string" or type(on) == "number" then
      step.onk, step.on = "expr", rawget(expr.col({ on }), expr.NODE)
    elseif expr.is_expr(on) then
      step.onk, step.on = "expr", rawget(on, expr.NODE)
    elseif util.is_callable(on) then
      step.onk, step.on = "fn", on
    elseif on ~= nil then
      util.fail("join_table: option 'on' must be a column name, an expression or a function(row, msg), got " ..
        type(on), where)
    end
    return add(self, step, false)
  end
  if on ~= nil then
    util.fail("join_table: option 'on' needs a global table (app:global_table): a table's partitions hold the " ..
      "keys of the stream's same partitions only; re-key the rows with group_by first", where)
  end
  st.app:_use_store(tbl.store, st.topic, where)
  step.store = tbl.store
  return add(self, step, false)
end

-- sdf:join_asof(other, { how, tolerance, grace, merger }) (docs/joins.md):
-- the other dataframe's rows are recorded per key in the store
-- "__asof__<n>" (a step added to its pipeline); each row of this one joins,
-- at once, the other side's latest row at or before its timestamp (and
-- within `tolerance`). Both topics must be co-partitioned.
local JOIN_ASOF_OPTS = { how = true, tolerance = true, grace = true, merger = true }
local function check_ms_opt(what, name, x, where)
  if x ~= nil and (type(x) ~= "number" or x ~= x or x < 0 or x == math.huge) then
    util.fail(what .. ": option '" .. name .. "' must be a number of milliseconds >= 0, got " ..
      (type(x) == "number" and tostring(x) or type(x)), where)
  end
end

function methods.join_asof(self, other, opts, extra)
  local st = check_self(self, "join_asof")
  local where = util.callsite()
  if extra ~= nil then
    util.fail("join_asof: expected (other_sdf, { how =, tolerance =, grace =, merger = })", where)
  end
  if not is_sdf(other) then
    util.fail("join_asof: expected the other side's dataframe (app:dataframe(topic)), got " ..
      (st.app._is_table(other) and "a table (use join_table)" or type(other)), where)
  end
  local ost = st_of(other)
  if ost.app ~= st.app then util.fail("join_asof: the other dataframe belongs to another app", where) end
  if ost.topic == st.topic then
    util.fail("join_asof: both sides read topic '" .. st.topic.name .. "'; join two topics", where)
  end
  opts = util.check_options("join_asof", opts, JOIN_ASOF_OPTS, where)
  local how = opts.how == nil and "inner" or opts.how
  if not HOWS[how] then
    util.fail("join_asof: option 'how' must be \"inner\" or \"left\", got " ..
      (type(how) == "string" and ("'" .. how .. "'") or type(how)), where)
  end
  check_ms_opt("join_asof", "tolerance", opts.tolerance, where)
  check_ms_opt("join_asof", "grace", opts.grace, where)
  if opts.merger ~= nil and not util.is_callable(opts.merger) then
    util.fail("join_asof: option 'merger' must be a function(left, right) -> row, got " .. type(opts.merger), where)
  end
  local app = st.app
  local n = (rawget(app, "_nasof") or 0) + 1
  rawset(app, "_nasof", n)
  local store = "__asof__" .. n
  -- history kept: `grace` ms behind the other side's newest row of the key
  -- (default: the tolerance, else 1 hour); the newest row is always kept
  local grace = opts.grace or opts.tolerance or 3600000
  app:_use_store(store, ost.topic, where)
  app:_use_store(store, st.topic, where)
  add(other, { kind = "asof_record", store = store, grace = grace, loc = where,
    desc = "join_asof (the other side)" }, false)
  return add(self, { kind = "join_asof", store = store, how = how, tolerance = opts.tolerance or math.huge,
    grace = grace, merger = opts.merger, loc = where, desc = "join_asof" }, false)
end

-- sdf:join_interval(other, { before, after, grace, how, merger })
-- (luastream.join, docs/joins.md): rows of the two dataframes whose
-- timestamps are within [t - before, t + after] of each other are paired as
-- soon as both are there; a left join also emits a row of this side that met
-- none when its interval closes. Both topics must be co-partitioned.
local JOIN_INTERVAL_OPTS = { before = true, after = true, grace = true, how = true, merger = true }
function methods.join_interval(self, other, opts, extra)
  local st = check_self(self, "join_interval")
  local where = util.callsite()
  if extra ~= nil then
    util.fail("join_interval: expected (other_sdf, { before =, after =, grace =, how =, merger = })", where)
  end
  if not is_sdf(other) then
    util.fail("join_interval: expected the other side's dataframe (app:dataframe(topic)), got " .. type(other), where)
  end
  local ost = st_of(other)
  if ost.app ~= st.app then util.fail("join_interval: the other dataframe belongs to another app", where) end
  if ost.topic == st.topic then
    util.fail("join_interval: both sides read topic '" .. st.topic.name .. "'; join two topics", where)
  end
  opts = util.check_options("join_interval", opts, JOIN_INTERVAL_OPTS, where)
  for _, k in ipairs({ "before", "after", "grace" }) do check_ms_opt("join_interval", k, opts[k], where) end
  if opts.before == nil and opts.after == nil then
    util.fail("join_interval: give the interval: { before = ms, after = ms } (rows of the other side " ..
      "from t - before to t + after)", where)
  end
  local how = opts.how == nil and "inner" or opts.how
  if not HOWS[how] then
    util.fail("join_interval: option 'how' must be \"inner\" or \"left\", got " ..
      (type(how) == "string" and ("'" .. how .. "'") or type(how)), where)
  end
  if opts.merger ~= nil and not util.is_callable(opts.merger) then
    util.fail("join_interval: option 'merger' must be a function(left, right) -> row, got " ..
      type(opts.merger), where)
  end
  local app = st.app
  local n = (rawget(app, "_ninterval") or 0) + 1
  rawset(app, "_ninterval", n)
  local store = "__interval__" .. n
  app:_use_store(store, st.topic, where)
  app:_use_store(store, ost.topic, where)
  local def = { before = opts.before or 0, after = opts.after or 0, grace = opts.grace or 0, how = how,
    merger = opts.merger }
  add(other, { kind = "interval_right", def = def, store = store, loc = where,
    desc = "join_interval (the other side)" }, false)
  return add(self, { kind = "interval_left", def = def, store = store, loc = where, desc = "join_interval" }, false)
end

-- group_by (docs/windows.md, "group_by"): the rows go to the internal topic
-- <app>__repartition__<name> keyed by the new key, with their event time as
-- the record timestamp, and the pipeline goes on from that topic, so state
-- after it is scoped to the new key. The topic is created at start with the
-- input's partition count (or `partitions`).
local GROUP_BY_OPTS = { name = true, partitions = true }
local function group_key(col, where)
  return function(row)
    local k = row[col]
    if k == nil or k == util.null then
      error("group_by: the row has no '" .. tostring(col) .. "' to group by", 0)
    end
    local t = type(k)
    if t ~= "string" and t ~= "number" and t ~= "boolean" and t ~= "cdata" then
      error("group_by: '" .. tostring(col) .. "' is a " .. t .. ", expected a string or a number", 0)
    end
    return k
  end, where
end

local function fn_key(fn)
  return function(row, msg)
    local k = fn(row, msg)
    if k == nil or k == util.null then error("group_by: the key function returned no key", 0) end
    return k
  end
end

function methods.group_by(self, by, opts, extra)
  local st = check_self(self, "group_by")
  local where = util.callsite()
  if extra ~= nil then util.fail("group_by: expected (column or function, { name =, partitions = })", where) end
  opts = util.check_options("group_by", opts, GROUP_BY_OPTS, where)
  local name, key = opts.name, nil
  if type(by) == "string" then
    key = group_key(by)
    if name == nil then name = by end
  elseif util.is_callable(by) then
    key = fn_key(by)
    if name == nil then
      util.fail("group_by: grouping by a function needs a name for its topic: group_by(fn, { name = \"...\" })", where)
    end
  else
    util.fail("group_by: expected a column name or a function(row, msg) -> key, got " .. type(by), where)
  end
  if type(name) ~= "string" or not util.valid_name(name) then
    util.fail("group_by: option 'name' must be 1-249 characters of A-Z a-z 0-9 . _ -, got " ..
      (type(name) == "string" and ("'" .. name .. "'") or type(name)), where)
  end
  local parts = opts.partitions
  if parts ~= nil and (type(parts) ~= "number" or parts % 1 ~= 0 or parts < 1 or parts > 100000) then
    util.fail("group_by: option 'partitions' must be a whole number >= 1, got " ..
      (type(parts) == "number" and tostring(parts) or type(parts)), where)
  end
  local app = st.app
  local topic = app:_repartition(name, st.topic, parts or 0, where)
  local step = { kind = "to_topic", topic_out = topic, loc = where, desc = "group_by '" .. name .. "'",
    keyk = "fn", key = key }
  app:_use_output(topic)
  add(self, step, true)
  return app:dataframe(topic)
end

return M
