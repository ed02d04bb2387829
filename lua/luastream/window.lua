-- luastream.window: windows and their aggregations (docs/api.md, "Windows";
-- the semantics with timelines are in docs/windows.md).
--
-- Declaring: sdf:tumbling_window(size, opts), hopping_window(size, step,
-- opts), sliding_window(size, opts), session_window(gap, opts) and the count
-- windows tumbling_count_window(n), hopping_count_window(n, step),
-- sliding_count_window(n) (luastream.dataframe) return a window definition;
-- w:agg{...} or a shortcut (w:sum("v")) adds aggregations; w:final() or
-- w:current() adds a "window" step to the dataframe's tree and returns the
-- dataframe of its output rows. luastream.compile turns the step into a call
-- of M.process per row and a continuation function (the rest of the
-- pipeline) called once per output row; M.close_idle calls the same
-- continuation for windows closed on the loop's timer (close_on_idle).
--
-- State: per message key, one entry "w<hash>" (the definition's hash,
-- def_hash) in the window's own store, a flat array of numbers and values
-- (msgpack in LMDB and the changelog):
--   W[1] = the key's watermark (largest timestamp seen), W[2] = open
--   windows, W[3] = rows seen (count windows) or unused (0), then per open
--   window, in order of start: start, end, rows, and three slots per
--   aggregation (see the aggregation codes below).
-- Sliding windows keep the key's recent rows in a second entry "r<hash>": per row
-- its timestamp and the aggregations' inputs, in order of time.
-- Open windows are updated in place; every slot write goes through the
-- state journal (luastream.state.jset), so a row that fails later in the
-- pipeline leaves the windows as it found them, like any state write. With
-- close_on_idle, "w<hash>" carries an expiry of now + close_on_idle, renewed by
-- every row: the store's time index finds the idle keys, including after a
-- restart (the store does not delete these entries, see runtime/spec.c).
local util = require("luastream.util")
local expr = require("luastream.expr")
local state = require("luastream.state")
local core = require("luastream.core")

local M = {}

local type, tostring, setmetatable, getmetatable, rawget, rawset =
  type, tostring, setmetatable, getmetatable, rawget, rawset
local null = util.null
local huge = math.huge
local sqrt = math.sqrt
local format = string.format
local tonumber = tonumber
local jset = state.jset
local state_at = state.at
local DELETED, EXP = state.DELETED, state.EXP
local deepcopy = util.deepcopy
local tnew = require("table.new")

---------------------------------------------------------------------------
-- Aggregations: ls.agg.*
---------------------------------------------------------------------------

-- Codes used in the row loop. Slots per aggregation (s1, s2, s3):
--   count: rows; sum, mean: values, sum; min, max, first, last: values, x;
--   std, var: values, mean, M2 (Welford); collect: values, list;
--   reduce: rows, accumulator.
local COUNT, SUM, MEAN, MIN, MAX, FIRST, LAST, STD, VAR, COLLECT, REDUCE = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
local KINDS = { count = COUNT, sum = SUM, mean = MEAN, min = MIN, max = MAX, first = FIRST, last = LAST,
  std = STD, var = VAR, collect = COLLECT, reduce = REDUCE }
local KIND_LIST = "count, sum, mean, min, max, first, last, collect, std, var, reduce"
local NUMERIC = { [SUM] = "sum", [MEAN] = "mean", [MIN] = "min", [MAX] = "max", [STD] = "std", [VAR] = "var" }

local AGG = {}
AGG.__index = AGG
AGG.__tostring = function(a) return "ls.agg." .. a.kind .. "(" .. (a.col_desc or "") .. ")" end

local function is_agg(x) return type(x) == "table" and getmetatable(x) == AGG end
M.is_agg = is_agg

local function make_reduce(fn, init, merge, extra)
  local where = util.callsite()
  if extra ~= nil then util.fail("ls.agg.reduce: expected (fn(acc, row) -> acc, init[, merge])", where) end
  if not util.is_callable(fn) then
    util.fail("ls.agg.reduce: expected a function(acc, row) -> acc first, got " .. type(fn), where)
  end
  if init == nil then
    util.fail("ls.agg.reduce: expected an initial value (or a function making one) after the function, " ..
      "e.g. ls.agg.reduce(fn, 0)", where)
  end
  if merge ~= nil and not util.is_callable(merge) then
    util.fail("ls.agg.reduce: the third argument, merge, must be a function(acc1, acc2) -> acc, got " ..
      type(merge), where)
  end
  return setmetatable({ kind = "reduce", code = REDUCE, loc = where, fn = fn, init = init, merge = merge,
    col_desc = "fn" }, AGG)
end

local function make_agg(kind)
  if kind == "reduce" then return make_reduce end
  return function(col, extra)
    local where = util.callsite()
    local what = "ls.agg." .. kind
    if extra ~= nil then util.fail(what .. ": expected one argument", where) end
    local a = setmetatable({ kind = kind, code = KINDS[kind], loc = where }, AGG)
    if kind == "count" then
      if col ~= nil then
        util.fail(what .. "() counts rows and takes no column (to count a column's non-null " ..
          "values use ls.agg.count() after a filter)", where)
      end
      return a
    end
    if type(col) == "string" or type(col) == "number" then
      a.col = rawget(expr.col({ col }), expr.NODE)
    elseif expr.is_expr(col) then
      a.col = rawget(col, expr.NODE)
    elseif col == nil then
      util.fail(what .. ": expected a column name or a column expression, e.g. " .. what .. "(\"v\")", where)
    else
      util.fail(what .. ": expected a column name or a column expression, got " .. type(col), where)
    end
    a.col_desc = expr.render(a.col)
    return a
  end
end

M.agg = setmetatable({}, {
  __index = function(_, k)
    local where = util.callsite()
    util.fail("ls.agg." .. tostring(k) .. ": unknown aggregation" .. util.suggest(tostring(k), KINDS) ..
      " (known: " .. KIND_LIST .. ")", where)
  end,
  __newindex = function() util.fail("ls.agg is read-only") end,
  __call = function() util.fail("ls.agg is a table of aggregations: ls.agg.count(), ls.agg.sum(\"v\"), ...") end,
})
for kind in pairs(KINDS) do rawset(M.agg, kind, make_agg(kind)) end

---------------------------------------------------------------------------
-- Window definitions
---------------------------------------------------------------------------

local WIN = {}
local win_methods = {}
local WIN_FIELDS = { aggs = true, agg_loc = true, emitted = true, on_late = true, idle = true, sliding = true,
  late_topic = true, gap = true, n = true }
WIN.__index = function(_, k)
  local m = win_methods[k]
  if m then return m end
  if WIN_FIELDS[k] then return nil end
  util.fail("unknown window method '" .. tostring(k) .. "'" .. util.suggest(tostring(k), win_methods))
end
WIN.__tostring = function(w) return "Window<" .. w.desc .. ">" end

local function is_window(x) return type(x) == "table" and getmetatable(x) == WIN end

local function fmt_ms(x)
  if x % 1 == 0 and x > -2 ^ 53 and x < 2 ^ 53 then return format("%d", x) end
  return format("%.17g", x)
end

local function check_ms(what, name, x, where, allow_zero)
  if type(x) ~= "number" or x ~= x or x == huge or x == -huge then
    util.fail(what .. ": " .. name .. " must be a number of milliseconds, got " ..
      (type(x) == "number" and tostring(x) or type(x)), where)
  end
  if allow_zero then
    if x < 0 then util.fail(what .. ": " .. name .. " must be >= 0 ms, got " .. fmt_ms(x), where) end
  elseif x <= 0 then
    util.fail(what .. ": " .. name .. " must be > 0 ms, got " .. fmt_ms(x), where)
  end
end

local function check_count(what, name, x, where)
  if type(x) ~= "number" or x % 1 ~= 0 or x < 1 or x > 2 ^ 31 then
    util.fail(what .. ": " .. name .. " must be a whole number of rows >= 1, got " ..
      (type(x) == "number" and tostring(x) or type(x)), where)
  end
end

local TIME_OPTS = { grace = true, closing = true, on_late = true, close_on_idle = true }
local TIME_KINDS = { tumbling = true, hopping = true, sliding = true, session = true }

-- on_late: a function(row, msg) or an output topic (app:topic, or its name).
local function check_on_late(what, on_late, env, where)
  if on_late == nil or util.is_callable(on_late) then return on_late, nil end
  if type(on_late) == "string" then return nil, env.app:topic(on_late) end
  if type(on_late) == "table" and rawget(on_late, "name") and env.is_topic(on_late) then return nil, on_late end
  util.fail(what .. ": option 'on_late' must be a function(row, msg) or a topic (app:topic or its name), got " ..
    type(on_late), where)
end

-- A window definition on dataframe `sdf`: kind "tumbling" | "hopping" |
-- "sliding" | "session" (time; a = size or gap, b = step) or "count" (a = n
-- rows, b = step rows, sliding = true for sliding_count_window).
-- env = { add = fn(step) -> sdf, app = app, topic = topic, is_topic = fn }.
function M.define(env, kind, a, b, opts, where, sliding_count)
  local what = (sliding_count and "sliding_count" or kind) .. "_window"
  if kind == "count" then
    what = (sliding_count and "sliding" or (b == nil and "tumbling" or "hopping")) .. "_count_window"
    check_count(what, "n", a, where)
    local step = b
    if sliding_count then
      step = 1
    elseif step == nil then
      step = a
    else
      check_count(what, "step", step, where)
      if step >= a then
        util.fail(what .. ": step (" .. fmt_ms(step) .. " rows) must be smaller than n (" .. fmt_ms(a) ..
          " rows); for windows that do not overlap use tumbling_count_window(" .. fmt_ms(a) .. ")", where)
      end
    end
    if opts ~= nil then
      util.fail(what .. ": count windows take no options (they have no grace, lateness or idle closing)", where)
    end
    local desc = what:gsub("_window", "") .. " window " .. fmt_ms(a) ..
      ((b ~= nil and not sliding_count) and (" step " .. fmt_ms(step)) or "") .. " rows"
    return setmetatable({ env = env, kind = "count", n = a, size = a, step = step, sliding = sliding_count,
      grace = 0, closing = "key", loc = where, desc = desc, what = what }, WIN)
  end
  assert(TIME_KINDS[kind], kind)
  local size, step = a, b
  check_ms(what, kind == "session" and "gap" or "size", size, where)
  if kind == "hopping" then
    check_ms(what, "step", step, where)
    if step >= size then
      util.fail(what .. ": step (" .. fmt_ms(step) .. " ms) must be smaller than size (" .. fmt_ms(size) ..
        " ms); for windows that do not overlap use tumbling_window(" .. fmt_ms(size) .. ")", where)
    end
  else
    step = size
  end
  opts = util.check_options(what, opts, TIME_OPTS, where)
  local grace = opts.grace
  if grace == nil then grace = 0 end
  check_ms(what, "option 'grace'", grace, where, true)
  local closing = opts.closing
  if closing == nil then closing = "key" end
  if closing ~= "key" and closing ~= "partition" then
    util.fail(what .. ": option 'closing' must be \"key\" or \"partition\", got " ..
      (type(closing) == "string" and ("'" .. closing .. "'") or type(closing)), where)
  end
  local idle = opts.close_on_idle
  if idle ~= nil then check_ms(what, "option 'close_on_idle'", idle, where) end
  local on_late, late_topic = check_on_late(what, opts.on_late, env, where)
  local desc = kind .. " window " .. fmt_ms(size) .. (kind == "hopping" and (" step " .. fmt_ms(step)) or "") ..
    " ms" .. (grace > 0 and (" grace " .. fmt_ms(grace)) or "")
  return setmetatable({ env = env, kind = kind, size = size, step = step, grace = grace,
    closing = closing, on_late = on_late, late_topic = late_topic, idle = idle, loc = where, desc = desc,
    what = what, aggs = nil }, WIN)
end

local function check_win(self, name)
  if not is_window(self) then
    util.fail("w:" .. name .. "() must be called with ':' on a window (sdf:tumbling_window(...))")
  end
end

local function with_aggs(self, list, where)
  if self.aggs then
    util.fail("agg: this window already has its aggregations (from " .. self.agg_loc ..
      "); put them all in one w:agg{ ... }", where)
  end
  for _, e in ipairs(list) do
    if self.kind == "session" and e.agg.code == REDUCE and not e.agg.merge then
      util.fail("agg: '" .. e.name .. "': a session window merges sessions that a row bridges, so its " ..
        "ls.agg.reduce needs a third argument, merge(acc1, acc2) -> acc", where)
    end
  end
  local w = setmetatable({}, WIN)
  for k, v in pairs(self) do w[k] = v end
  w.aggs, w.agg_loc, w.emitted = list, where, nil
  return w
end

function win_methods.agg(self, spec)
  check_win(self, "agg")
  local where = util.callsite()
  if type(spec) ~= "table" or is_agg(spec) or expr.is_expr(spec) then
    util.fail("agg: expected a table { name = ls.agg.count(), ... }, got " ..
      (is_agg(spec) and "one aggregation (name it: w:agg{ value = ... })" or type(spec)), where)
  end
  local names = {}
  for k, v in pairs(spec) do
    if type(k) ~= "string" then
      util.fail("agg: aggregations must be named, w:agg{ name = ls.agg.mean(\"v\") }, got a " ..
        type(k) .. " key", where)
    end
    if k == "start" or k == "end" then
      util.fail("agg: '" .. k .. "' is the window's own column; name the aggregation otherwise", where)
    end
    if not is_agg(v) then
      util.fail("agg: '" .. k .. "' must be an aggregation such as ls.agg.sum(\"v\"), got " ..
        (type(v) == "function" and "a function (did you forget the call, ls.agg.count()?)" or type(v)), where)
    end
    names[#names + 1] = k
  end
  if #names == 0 then
    util.fail("agg: no aggregations; e.g. w:agg{ n = ls.agg.count(), mean = ls.agg.mean(\"v\") }", where)
  end
  table.sort(names)
  local list = {}
  for j, k in ipairs(names) do list[j] = { name = k, agg = spec[k] } end
  return with_aggs(self, list, where)
end

for kind in pairs(KINDS) do
  win_methods[kind] = function(self, c1, c2, c3)
    check_win(self, kind)
    local where = util.callsite()
    local a
    if kind == "count" then a = M.agg.count()
    elseif kind == "reduce" then a = M.agg.reduce(c1, c2, c3)
    else a = M.agg[kind](c1) end
    a.loc = where
    return with_aggs(self, { { name = "value", agg = a } }, where)
  end
end

-- A short hash of a string (8 hex digits), for store names.
local function hash8(s)
  local h = 5381
  for j = 1, #s do
    h = (h * 33 + s:byte(j)) % 4294967296
  end
  return format("%08x", h)
end

-- The definition's hash names the window's entries in its store (entry "w"
-- .. hash per key, "r" .. hash for a sliding window's rows, "pwm" .. hash for
-- a partition's watermark): a reload that changes the window (type, size,
-- step, grace, closing, idle closing, aggregations) finds no state under the
-- new names and starts afresh, one that does not keeps its state; entries of
-- other definitions are deleted when their key is next met.
local function def_hash(self)
  local parts = { self.kind, self.sliding and "sliding" or "", fmt_ms(self.size), fmt_ms(self.step),
    fmt_ms(self.grace), self.closing, self.idle and fmt_ms(self.idle) or "" }
  for _, a in ipairs(self.aggs) do
    parts[#parts + 1] = a.name .. "=" .. a.agg.kind .. "(" .. (a.agg.col_desc or "") .. ")"
  end
  return hash8(table.concat(parts, ";"))
end
M.def_hash = def_hash

local function emit(self, mode)
  check_win(self, mode)
  local where = util.callsite()
  if not self.aggs then
    util.fail(mode .. "(): the window has no aggregations to emit; call w:agg{ n = ls.agg.count(), ... } " ..
      "or a shortcut like w:sum(\"v\") first: sdf:" .. self.what .. "(...):sum(\"v\"):" .. mode .. "()", where)
  end
  if self.emitted then
    util.fail(mode .. "(): this window is already emitted with " .. self.emitted.mode .. "() at " ..
      self.emitted.loc .. "; declare the window again for a second output", where)
  end
  self.emitted = { mode = mode, loc = where }
  local env = self.env
  local app = env.app
  -- the store is the app's n-th window's: a reload that changes a window keeps
  -- its store (its state is named after the definition, def_hash)
  local n = (rawget(app, "_nwindows") or 0) + 1
  rawset(app, "_nwindows", n)
  local name = "__window__" .. n
  app:_use_store(name, env.topic, where, self.idle ~= nil or self.closing == "partition")
  if self.late_topic then app:_use_output(self.late_topic) end
  local def = { kind = self.kind, size = self.size, step = self.step, grace = self.grace,
    sliding = self.sliding, idle = self.idle, on_late = self.on_late, late_topic = self.late_topic,
    closing = self.closing, hash = def_hash(self),
    aggs = self.aggs, final = mode == "final", desc = self.desc }
  return env.add({ kind = "window", def = def, store = name, loc = where,
    desc = self.desc .. " " .. mode .. "()" })
end

function win_methods.final(self) return emit(self, "final") end
function win_methods.current(self) return emit(self, "current") end

---------------------------------------------------------------------------
-- The runtime object of one window step
---------------------------------------------------------------------------

local ALIGNED, SLIDING, SESSION, COUNTW = 1, 2, 3, 4
local KIND_CODE = { tumbling = ALIGNED, hopping = ALIGNED, sliding = SLIDING, session = SESSION, count = COUNTW }

-- The window steps compiled in this Lua state, for their late counts and idle closing.
local instances = setmetatable({}, { __mode = "k" })

-- The runtime object of one window step (made when the pipeline compiles).
function M.runtime(def, st, node)
  local nagg = #def.aggs
  local codes, names, fns, inits, merges = {}, {}, {}, {}, {}
  for j, a in ipairs(def.aggs) do
    codes[j], names[j] = a.agg.code, a.name
    fns[j], inits[j], merges[j] = a.agg.fn or false, a.agg.init or false, a.agg.merge or false
  end
  local R = {
    st = st, kind = KIND_CODE[def.kind], D = def.size, S = def.step, G = def.grace,
    sliding_count = def.sliding or false, final = def.final, idle = def.idle or false,
    idle_opts = def.idle and { ttl = def.idle } or false,
    on_late = def.on_late or false, late_topic = def.late_topic and true or false, late_now = false,
    nagg = nagg, stride = 3 + 3 * nagg, rstride = 1 + nagg,
    wkey = "w" .. def.hash, rkey = "r" .. def.hash, pkey = "pwm" .. def.hash, -- its entries
    codes = codes, names = names, fns = fns, inits = inits, merges = merges,
    vals = {},            -- the aggregations' column values of the current row (set by the pipeline)
    ov = {}, ots = {},    -- output rows and their timestamps
    okeys = {},           -- and their message keys
    pmode = def.closing == "partition",
    heaps = {}, plast = {}, -- closing = "partition": per partition, the heap of keys and the last row's time
    taken = { n = 0, p = {}, row = {} }, -- heap entries taken by the rows of this batch
    tmp = {},             -- scratch: windows a row touched (sliding, session)
    late = 0,             -- rows dropped as late
    logged = false,
    cont = false,         -- the rest of the pipeline, set by luastream.compile
    loc = node.loc, desc = node.desc, store = st.name,
  }
  if R.kind == SLIDING then R.END1 = 1 else R.END1 = 0 end -- sliding windows' end is inclusive
  instances[R] = true
  return R
end

-- Rows dropped as late, per window step: { { loc =, desc =, store =, late = n }, ... }.
function M.late_counts()
  local res = {}
  for R in pairs(instances) do
    res[#res + 1] = { loc = R.loc, desc = R.desc, store = R.store, late = R.late }
  end
  table.sort(res, function(a, b) return a.loc < b.loc end)
  return res
end

local function bad_ts(ts)
  error("the row's timestamp is " .. (ts == null and "null" or ("a " .. type(ts))) ..
    ", expected milliseconds (a number)", 0)
end

local function bad_value(R, j, x)
  error("aggregation '" .. R.names[j] .. "' (" .. NUMERIC[R.codes[j]] .. "): the value is a " .. type(x) ..
    ", expected a number", 0)
end

---------------------------------------------------------------------------
-- Aggregation slots
---------------------------------------------------------------------------

-- Empty slots for the window at base (start s, end e).
local function init_window(R, W, base, s, e)
  jset(W, base, s)
  jset(W, base + 1, e)
  jset(W, base + 2, 0)
  for o = base + 3, base + 2 + 3 * R.nagg do jset(W, o, 0) end
end

-- A number from an aggregation's input, or an error naming the aggregation.
local function num(R, a, x)
  if type(x) == "number" then return x end
  local y = tonumber(x)
  if type(x) ~= "cdata" or y == nil then bad_value(R, a, x) end
  return y
end

local function new_acc(R, a)
  local init = R.inits[a]
  if type(init) == "function" then return init() end
  if type(init) == "table" then return deepcopy(init) end
  return init
end

-- Adds value x (the aggregation's input; the row for reduce) to agg a of the window at base.
local function add_value(R, W, base, a, x)
  local o = base + 3 * a
  local code = R.codes[a]
  if code == COUNT then
    jset(W, o, W[o] + 1)
    return
  end
  if code == REDUCE then
    local acc = W[o] == 0 and new_acc(R, a) or W[o + 1]
    acc = R.fns[a](acc, x)
    if acc == nil then
      error("aggregation '" .. R.names[a] .. "' (reduce): the function returned nil; return the accumulator", 0)
    end
    jset(W, o, W[o] + 1)
    jset(W, o + 1, acc)
    return
  end
  if x == nil or x == null then return end
  local n = W[o] + 1
  if code <= MAX or code == STD or code == VAR then x = num(R, a, x) end
  jset(W, o, n)
  if code == SUM or code == MEAN then
    jset(W, o + 1, W[o + 1] + x)
  elseif code == MIN then
    if n == 1 or x < W[o + 1] then jset(W, o + 1, x) end
  elseif code == MAX then
    if n == 1 or x > W[o + 1] then jset(W, o + 1, x) end
  elseif code == FIRST then
    if n == 1 then jset(W, o + 1, x) end
  elseif code == LAST then
    jset(W, o + 1, x)
  elseif code == COLLECT then
    local list = W[o + 1]
    if n == 1 then
      list = {}
      jset(W, o + 1, list)
    end
    jset(list, n, x)
  else -- STD, VAR: Welford
    local mean = W[o + 1]
    local d = x - mean
    mean = mean + d / n
    jset(W, o + 1, mean)
    jset(W, o + 2, W[o + 2] + d * (x - mean))
  end
end

-- Adds the current row (R.vals, row v, timestamp t) to the window at base.
local function add_row(R, W, base, v, t)
  local vals = R.vals
  if W[base + 2] == 0 or t < W[base] then
    if R.kind == COUNTW or R.kind == SESSION then jset(W, base, t) end
  end
  if R.kind == COUNTW and (W[base + 2] == 0 or t > W[base + 1]) then jset(W, base + 1, t) end
  jset(W, base + 2, W[base + 2] + 1)
  for a = 1, R.nagg do
    if R.codes[a] == REDUCE then add_value(R, W, base, a, v) else add_value(R, W, base, a, vals[a]) end
  end
end

-- Adds a stored row (sliding windows: entry "r" at index ri) to the window at base.
local function add_record(R, W, base, rec, ri)
  jset(W, base + 2, W[base + 2] + 1)
  for a = 1, R.nagg do add_value(R, W, base, a, rec[ri + a]) end
end

-- Merges the window at src into the one at dst (sessions; dst starts earlier).
local function merge_windows(R, W, dst, src)
  if W[src] < W[dst] then jset(W, dst, W[src]) end
  if W[src + 1] > W[dst + 1] then jset(W, dst + 1, W[src + 1]) end
  jset(W, dst + 2, W[dst + 2] + W[src + 2])
  for a = 1, R.nagg do
    local o, q = dst + 3 * a, src + 3 * a
    local code = R.codes[a]
    local n1, n2 = W[o], W[q]
    if code == COUNT then
      jset(W, o, n1 + n2)
    elseif n2 > 0 then
      local x1, x2 = W[o + 1], W[q + 1]
      local x = x1
      if n1 == 0 then x = x2
      elseif code == SUM or code == MEAN then x = x1 + x2
      elseif code == MIN then if x2 < x1 then x = x2 end
      elseif code == MAX then if x2 > x1 then x = x2 end
      elseif code == LAST then x = x2
      elseif code == COLLECT then
        local list = {}
        for j = 1, n1 do list[j] = x1[j] end
        for j = 1, n2 do list[n1 + j] = x2[j] end
        x = list
      elseif code == REDUCE then
        x = R.merges[a](x1, x2)
      elseif code == STD or code == VAR then
        local n = n1 + n2
        local d = x2 - x1
        x = x1 + d * n2 / n
        jset(W, o + 2, W[o + 2] + W[q + 2] + d * d * n1 * n2 / n)
      end
      jset(W, o, n1 + n2)
      jset(W, o + 1, x)
    end
  end
end

-- The output row of the window at base.
local function result_row(R, W, base)
  local row = tnew(0, R.nagg + 2) -- sized once: no rehash as the fields go in
  row.start, row["end"] = W[base], W[base + 1]
  local names, codes = R.names, R.codes
  for a = 1, R.nagg do
    local o = base + 3 * a
    local n, x = W[o], W[o + 1]
    local code = codes[a]
    local r
    if code == COUNT then r = n
    elseif n == 0 then r = null
    elseif code == MEAN then r = x / n
    elseif code == VAR or code == STD then
      if n < 2 then r = null
      else
        r = W[o + 2] / (n - 1)
        if r < 0 then r = 0 end
        if code == STD then r = sqrt(r) end
      end
    elseif code == COLLECT then
      r = setmetatable({}, core.array_mt)
      for j = 1, n do r[j] = x[j] end
    elseif code == REDUCE then
      r = type(x) == "table" and deepcopy(x) or x
    else r = x end
    row[names[a]] = r
  end
  return row
end

---------------------------------------------------------------------------
-- Open windows in W
---------------------------------------------------------------------------

local FIRST_BASE = 4

-- Inserts an empty window [s, e] at base (shifting the later ones up).
local function insert_at(R, W, base, s, e)
  local stride, nopen = R.stride, W[2]
  local last = FIRST_BASE - 1 + nopen * stride
  for x = last, base, -1 do jset(W, x + stride, W[x]) end
  init_window(R, W, base, s, e)
  jset(W, 2, nopen + 1)
end

-- The base of the open window starting at s, or where it would go and false.
local function find(R, W, s)
  local stride, nopen = R.stride, W[2]
  local base = FIRST_BASE
  for _ = 1, nopen do
    local ws = W[base]
    if ws == s then return base, true end
    if ws > s then return base, false end
    base = base + stride
  end
  return base, false
end

-- The open window starting at s, inserted (empty, end e) when missing: its base.
local function find_or_insert(R, W, s, e)
  local base, found = find(R, W, s)
  if not found then insert_at(R, W, base, s, e) end
  return base
end

-- Removes the open window at base.
local function remove_at(R, W, base)
  local stride, nopen = R.stride, W[2]
  local last = FIRST_BASE - 1 + nopen * stride
  for x = base, last - stride do jset(W, x, W[x + stride]) end
  for x = last - stride + 1, last do jset(W, x, nil) end
  jset(W, 2, nopen - 1)
end

-- Output nout + 1: the window at base, for message key `key`.
local function out_row(R, W, base, nout, key)
  nout = nout + 1
  R.ov[nout], R.ots[nout], R.okeys[nout] = result_row(R, W, base), W[base], key
  return nout
end

-- Closes (and for final() emits) the open windows whose end + grace <= watermark.
local function close_due(R, W, wm, nout, key)
  local G, E1 = R.G, R.END1
  while W[2] > 0 and W[FIRST_BASE + 1] + E1 + G <= wm do
    if R.final then nout = out_row(R, W, FIRST_BASE, nout, key) end
    remove_at(R, W, FIRST_BASE)
  end
  return nout
end

local function late_row(R, v, msg, t, wm, nout)
  R.late = R.late + 1
  if not R.logged then
    R.logged = true
    core.log("warn", R.loc .. ": " .. R.desc .. ": dropped a late row (timestamp " .. fmt_ms(t) ..
      ", the key's watermark " .. fmt_ms(wm) .. " had closed all its windows); later late rows " ..
      "are counted without a log line")
  end
  if R.on_late then R.on_late(v, msg) end
  if R.late_topic then R.late_now = true end -- the pipeline writes the row to the on_late topic
  return nout
end

---------------------------------------------------------------------------
-- The row loop, per kind. Each returns the number of output rows (in R.ov,
-- R.ots).
---------------------------------------------------------------------------

-- Tumbling and hopping: the windows [s, s + D) with s a multiple of S.
local function process_aligned(R, W, v, t, nout, wm, key)
  local D, S, G = R.D, R.S, R.G
  local s_hi = t - t % S
  local s = s_hi
  while s - S > t - D do s = s - S end
  local final = R.final
  while s <= s_hi do
    if s + D + G > wm then
      local base = find_or_insert(R, W, s, s + D)
      add_row(R, W, base, v, t)
      if not final then nout = out_row(R, W, base, nout, key) end
    end
    s = s + S
  end
  return nout
end

-- Sessions: rows less than gap apart; a row bridging sessions merges them.
local function process_session(R, W, v, t, nout, key)
  local gap = R.D
  local stride = R.stride
  local first, count = 0, 0
  local base = FIRST_BASE
  for _ = 1, W[2] do
    -- the session [s, e) (e = last row + gap) takes t when s - gap < t < e
    if W[base] - gap < t and t < W[base + 1] then
      if count == 0 then first = base end
      count = count + 1
    elseif W[base] - gap >= t then
      break
    end
    base = base + stride
  end
  if count == 0 then
    first = find(R, W, t)
    insert_at(R, W, first, t, t + gap)
  else
    for _ = 2, count do
      merge_windows(R, W, first, first + stride)
      remove_at(R, W, first + stride)
    end
    if t + gap > W[first + 1] then jset(W, first + 1, t + gap) end
  end
  add_row(R, W, first, v, t)
  if not R.final then nout = out_row(R, W, first, nout, key) end
  return nout
end

-- The key's recent rows (sliding windows): entry "r", in order of time.
local function records(R, st)
  local rec = st:get(R.rkey)
  if rec == nil then
    rec = { 0 }
    st:set(R.rkey, rec)
  end
  return rec
end

-- Adds the recorded rows with timestamps in [lo, hi] to the window at base.
local function add_records(R, W, base, rec, lo, hi)
  local rs = R.rstride
  for ri = 2, 1 + rec[1] * rs, rs do
    local rt = rec[ri]
    if rt > hi then break end
    if rt >= lo then add_record(R, W, base, rec, ri) end
  end
end

-- Sliding: each row's window [t - D, t]; the window [r + 1, r + 1 + D] after
-- a row r once a later row falls in it; every open window holding t.
local function process_sliding(R, W, v, t, nout, st, wm, key)
  local D, G = R.D, R.G
  local rec = records(R, st)
  local rs = R.rstride
  local touched, nt = R.tmp, 0
  -- the latest recorded row before t, and whether one is in (t, t + 1 + D]
  local prev, later = nil, false
  for ri = 2, 1 + rec[1] * rs, rs do
    local rt = rec[ri]
    if rt < t then prev = rt
    elseif rt > t then
      if rt <= t + 1 + D then later = true end
      break
    end
  end
  -- 1. the open windows holding t
  local base = FIRST_BASE
  for _ = 1, W[2] do
    local s = W[base]
    if s > t then break end
    if W[base + 1] >= t then
      add_row(R, W, base, v, t)
      nt = nt + 1
      touched[nt] = s
    end
    base = base + R.stride
  end
  -- 2. the row's own window [t - D, t]
  if t + 1 + G > wm then
    local b, found = find(R, W, t - D)
    if not found then
      insert_at(R, W, b, t - D, t)
      add_records(R, W, b, rec, t - D, t)
      add_row(R, W, b, v, t)
      nt = nt + 1
      touched[nt] = t - D
    end
  end
  -- 3. the window after the previous row, which now holds t
  if prev ~= nil and t - prev <= D + 1 and prev + 1 + D + 1 + G > wm then
    local b, found = find(R, W, prev + 1)
    if not found then
      insert_at(R, W, b, prev + 1, prev + 1 + D)
      add_records(R, W, b, rec, prev + 1, prev + 1 + D)
      add_row(R, W, b, v, t)
      nt = nt + 1
      touched[nt] = prev + 1
    end
  end
  -- a row that no open window holds and whose own window is closed is late:
  -- it is dropped, so no window after it is made either
  if nt == 0 then return nil end
  -- 4. the window after t, when rows already there fall in it
  if later and t + 1 + D + 1 + G > wm then
    local b, found = find(R, W, t + 1)
    if not found then
      insert_at(R, W, b, t + 1, t + 1 + D)
      add_records(R, W, b, rec, t + 1, t + 1 + D)
      nt = nt + 1
      touched[nt] = t + 1
    end
  end
  -- record the row (in order of time, after rows with the same timestamp)
  local n = rec[1]
  local at = 2 + n * rs
  while at > 2 and rec[at - rs] > t do at = at - rs end
  for x = 1 + n * rs, at, -1 do jset(rec, x + rs, rec[x]) end
  jset(rec, at, t)
  local vals = R.vals
  for a = 1, R.nagg do
    local x = vals[a]
    if R.codes[a] == REDUCE then x = deepcopy(v) end
    if x == nil then x = null end
    jset(rec, at + a, x)
  end
  jset(rec, 1, n + 1)
  state.touch(st, R.rkey) -- changed in place: written at the next checkpoint
  if not R.final then
    -- each window the row touched once, in order of start
    table.sort(touched)
    local last = nil
    for j = 1, nt do
      local s = touched[j]
      touched[j] = nil
      if s ~= last then
        nout = out_row(R, W, (find(R, W, s)), nout, key)
        last = s
      end
    end
  else
    for j = 1, nt do touched[j] = nil end
  end
  return nout
end

-- Drops recorded rows no later row can need (sliding windows).
local function prune_records(R, st, wm)
  local rec = st:get(R.rkey)
  if rec == nil then return end
  local keep_from = wm - 2 * R.D - 1 - R.G
  local rs = R.rstride
  local n = rec[1]
  local drop = 0
  while drop < n and rec[2 + drop * rs] <= keep_from do drop = drop + 1 end
  if drop == 0 then return end
  local last = 1 + n * rs
  for x = 2, last - drop * rs do jset(rec, x, rec[x + drop * rs]) end
  for x = last - drop * rs + 1, last do jset(rec, x, nil) end
  jset(rec, 1, n - drop)
  st:set(R.rkey, rec)
end

-- Count windows: window k holds each key's rows k*step .. k*step + n - 1.
local function process_count(R, W, v, t, nout, key)
  local n, S = R.D, R.S
  local i = W[3] -- this row's index
  jset(W, 3, i + 1)
  if i % S == 0 then
    local base = FIRST_BASE + W[2] * R.stride
    insert_at(R, W, base, t, t)
  end
  local base = FIRST_BASE
  for _ = 1, W[2] do
    add_row(R, W, base, v, t)
    base = base + R.stride
  end
  local final = R.final
  if not final then
    if R.sliding_count then
      nout = out_row(R, W, FIRST_BASE, nout, key) -- the last n rows
    else
      base = FIRST_BASE
      for _ = 1, W[2] do
        nout = out_row(R, W, base, nout, key)
        base = base + R.stride
      end
    end
  end
  -- the oldest window is full after its n-th row
  if W[2] > 0 and W[FIRST_BASE + 2] == n then
    if final then nout = out_row(R, W, FIRST_BASE, nout, key) end
    remove_at(R, W, FIRST_BASE)
  end
  return nout
end

local close_key -- closing on idleness, below

-- The key's window entry as stored, expired (idle) or not; nil when none.
local function window_entry(R, st)
  local W = st.kt[R.wkey]
  if W == nil or W == DELETED then return nil end
  return W
end

-- Deletes the key's entries of other definitions of this window (a reload
-- changed it): the key st points at has none of its own.
local function drop_stale(R, st)
  for k, v in pairs(st.kt) do
    if type(k) == "string" and v ~= DELETED and k ~= R.wkey and k ~= R.rkey and k ~= R.pkey then
      st:delete(k)
    end
  end
end

local function store_entry(R, st, W)
  if R.idle_opts then
    st:set(R.wkey, W, R.idle_opts)
  elseif st.kt[R.wkey] == W then
    state.touch(st, R.wkey) -- changed in place (journaled): marked changed again
  else
    st:set(R.wkey, W)
  end
end

-- One row: updates the row's windows in the key's state, closes the windows
-- the watermark passed. Returns the number of output rows, in R.ov / R.ots;
-- sets R.late_now for a late row the pipeline writes to the on_late topic.
---------------------------------------------------------------------------
-- closing = "partition": one watermark per input partition
---------------------------------------------------------------------------
-- The partition's watermark is an entry of a reserved key in the window's
-- store (PKEY, entry "pwm"). Each key's "w" entry carries, as its expiry, the
-- time its first open window closes (end + grace, an event time, not a
-- wall-clock deadline: the store keeps such entries); so after a restart the
-- store's time index lists the keys with open windows. In memory, a min-heap
-- per partition of (close time, key) finds the keys whose windows a rising
-- watermark closes; its entries are checked against the state when taken
-- (stale ones are skipped), and the entries taken by a row that fails are
-- put back (state.on_undo).

local PKEY = "\0luastream.partition"

local function heap_push(h, c, k)
  local n = h.n + 1
  h.n = n
  local hc, hk = h.c, h.k
  local i = n
  while i > 1 do
    local up = (i - i % 2) / 2
    if hc[up] <= c then break end
    hc[i], hk[i] = hc[up], hk[up]
    i = up
  end
  hc[i], hk[i] = c, k
end

local function heap_pop(h)
  local hc, hk = h.c, h.k
  local n = h.n
  local c, k = hc[1], hk[1]
  local lc, lk = hc[n], hk[n]
  hc[n], hk[n] = nil, nil
  n = n - 1
  h.n = n
  if n > 0 then
    local i = 1
    while true do
      local l = 2 * i
      if l > n then break end
      local m = l
      if l + 1 <= n and hc[l + 1] < hc[l] then m = l + 1 end
      if hc[m] >= lc then break end
      hc[i], hk[i] = hc[m], hk[m]
      i = m
    end
    hc[i], hk[i] = lc, lk
  end
  return c, k
end

-- The heap of partition p, built from the store's time index the first time
-- it is needed after a load, a restore or a revocation of p.
local function heap_of(R, p)
  local h = R.heaps[p]
  if h ~= nil and h.gen == state.gen and h.pgen == (state.pgen[p] or 0) then return h end
  h = { c = {}, k = {}, n = 0, gen = state.gen, pgen = state.pgen[p] or 0 }
  R.heaps[p] = h
  local list = core.state_expired and core.state_expired(R.st.name, 2 ^ 62, 2 ^ 31, p)
  if list then
    for j = 2, #list, 2 do
      if list[j] ~= PKEY then heap_push(h, -huge, list[j]) end -- checked when taken
    end
  end
  R.plast[p] = core.now_ms()
  return h
end

-- The close time of the key's first open window, or nil.
local function first_close(R, W)
  if W == nil or W[2] == 0 then return nil end
  return W[FIRST_BASE + 1] + R.END1 + R.G
end

-- Stores W for the key st points at (partition mode): deleted when no window
-- is open, else with its first close time as the expiry, and in the heap
-- when that time changed (old: the one before).
local function store_pmode(R, st, W, h, old)
  local c = first_close(R, W)
  if c == nil then
    local kt = st.kt
    if kt[R.wkey] ~= nil and kt[R.wkey] ~= DELETED then st:delete(R.wkey) end
    if kt[R.rkey] ~= nil and kt[R.rkey] ~= DELETED then st:delete(R.rkey) end
    return
  end
  local e = c < 1 and 1 or c
  state.set_expiry(st, R.wkey, W, e)
  if c ~= old then heap_push(h, c, st.key) end
end

local function partition_wm(R, st, p, i)
  state_at(st, p, PKEY, i)
  local w = st.kt[R.pkey]
  if w == nil or w == DELETED then return -huge end
  return w
end

-- Closes the windows of every key of partition p that watermark wm passed.
local function close_partition(R, p, wm, i, nout, h)
  local st = R.st
  local taken = R.taken
  while h.n > 0 and h.c[1] <= wm do
    local _, key = heap_pop(h)
    local n = taken.n + 1
    taken.n, taken[n] = n, key
    taken.p[n], taken.row[n] = p, i
    state_at(st, p, key, i)
    local W = window_entry(R, st)
    local old = first_close(R, W)
    if W == nil then drop_stale(R, st) end
    if old ~= nil and old <= wm then
      nout = close_due(R, W, wm, nout, key)
      if R.kind == SLIDING then prune_records(R, st, wm) end
      store_pmode(R, st, W, h, old)
    elseif old ~= nil then
      heap_push(h, old, key) -- an entry made before its close was known (after a restart)
    end
  end
  return nout
end

-- The entries that rolled-back rows took from the heaps go back: those of
-- row i (nil: of the whole batch); "begin": a new batch forgets them.
local function on_undo(what, i)
  for R in pairs(instances) do
    local taken = R.taken
    if R.pmode and taken.n > 0 then
      local keep = 0
      for j = 1, taken.n do
        local key, p, row = taken[j], taken.p[j], taken.row[j]
        taken[j], taken.p[j], taken.row[j] = nil, nil, nil
        if what ~= "begin" and (what == "batch" or row == i) then
          local h = R.heaps[p]
          if h then heap_push(h, -huge, key) end
        elseif what ~= "begin" then -- "begin": a new batch forgets them
          keep = keep + 1
          taken[keep], taken.p[keep], taken.row[keep] = key, p, row
        end
      end
      taken.n = keep
    end
  end
end
state.on_undo(on_undo)

local function process_partition(R, v, t, key, p, i, msg)
  local st = R.st
  local h = heap_of(R, p)
  R.plast[p] = core.now_ms()
  local wm = partition_wm(R, st, p, i)
  state_at(st, p, key, i)
  local W = window_entry(R, st)
  local old = first_close(R, W)
  if W == nil then
    drop_stale(R, st)
    W = { 0, 0, 0 }
  end
  local kind = R.kind
  local nout
  if kind == ALIGNED then
    if t - t % R.S + R.D + R.G <= wm then return late_row(R, v, msg, t, wm, 0) end
    nout = process_aligned(R, W, v, t, 0, wm, key)
  elseif kind == SESSION then
    if t + R.D + R.G <= wm then return late_row(R, v, msg, t, wm, 0) end
    nout = process_session(R, W, v, t, 0, key)
  else
    nout = process_sliding(R, W, v, t, 0, st, wm, key)
    if nout == nil then return late_row(R, v, msg, t, wm, 0) end
  end
  if t > wm then wm = t end
  nout = close_due(R, W, wm, nout, key)
  if kind == SLIDING then prune_records(R, st, wm) end
  store_pmode(R, st, W, h, old)
  if wm > partition_wm(R, st, p, i) then
    st:set(R.pkey, wm)
    nout = close_partition(R, p, wm, i, nout, h)
  end
  return nout
end

-- One row: updates the row's windows in the key's state, closes the windows
-- the watermark passed. Returns the number of output rows, in R.ov / R.ots
-- (their keys in R.okeys); sets R.late_now for a late row the pipeline
-- writes to the on_late topic.
function M.process(R, v, ts, key, p, i, msg)
  local t = ts
  if type(t) ~= "number" then
    t = tonumber(t)
    if type(ts) ~= "cdata" or t == nil then bad_ts(ts) end
  end
  if R.pmode then return process_partition(R, v, t, key, p, i, msg) end
  local st = R.st
  state_at(st, p, key, i)
  local nout = 0
  if R.idle then
    -- idle since before this row, and the timer has not closed them yet
    local ex = st.kt[EXP]
    local e = ex ~= nil and ex[R.wkey]
    if e and e <= core.now_ms() then nout = close_key(R, st, core.now_ms(), 0) end
  end
  local W = window_entry(R, st)
  local kind = R.kind
  if W == nil then
    drop_stale(R, st)
    W = { t, 0, 0 }
  end
  local wm = W[1]
  if kind == ALIGNED then
    local s_hi = t - t % R.S
    if s_hi + R.D + R.G <= wm then return late_row(R, v, msg, t, wm, nout) end -- the latest window ends last
    nout = process_aligned(R, W, v, t, nout, wm, key)
  elseif kind == SESSION then
    if t + R.D + R.G <= wm then return late_row(R, v, msg, t, wm, nout) end
    nout = process_session(R, W, v, t, nout, key)
  elseif kind == SLIDING then
    local n = process_sliding(R, W, v, t, nout, st, wm, key)
    if n == nil then return late_row(R, v, msg, t, wm, nout) end
    nout = n
  else
    nout = process_count(R, W, v, t, nout, key)
  end
  if t > wm then jset(W, 1, t) end
  if kind ~= COUNTW then nout = close_due(R, W, W[1], nout, key) end
  if kind == SLIDING then prune_records(R, st, W[1]) end
  store_entry(R, st, W)
  return nout
end

---------------------------------------------------------------------------
-- Idle closing (close_on_idle), on the loop's timer
---------------------------------------------------------------------------

-- Closes every open window of the key st points at (all idle), raising its
-- watermark to the largest end + grace closed. A key found idle with no open
-- window is forgotten. Returns the output count.
close_key = function(R, st, now, nout)
  local kt = st.kt
  local W = window_entry(R, st)
  if W == nil then
    drop_stale(R, st) -- found through another definition's expiry
    return nout
  end
  local ex = kt[EXP]
  local e = ex and ex[R.wkey]
  if e == nil or e > now then return nout end -- a row came since
  if W[2] == 0 then
    st:delete(R.wkey)
    if kt[R.rkey] ~= nil then st:delete(R.rkey) end
    return nout
  end
  local G, E1 = R.G, R.END1
  while W[2] > 0 do
    local closes = W[FIRST_BASE + 1] + E1 + G
    if closes > W[1] then jset(W, 1, closes) end
    if R.final then nout = out_row(R, W, FIRST_BASE, nout, st.key) end
    remove_at(R, W, FIRST_BASE)
  end
  if kt[R.rkey] ~= nil then st:delete(R.rkey) end
  store_entry(R, st, W)
  return nout
end

-- Closes every open window of the key st points at (an idle partition).
-- Returns the output count and the largest end + grace closed.
local function close_all(R, st, nout)
  local W = window_entry(R, st)
  local hi = -huge
  if W == nil then return nout, hi end
  while W[2] > 0 do
    local c = W[FIRST_BASE + 1] + R.END1 + R.G
    if c > hi then hi = c end
    if R.final then nout = out_row(R, W, FIRST_BASE, nout, st.key) end
    remove_at(R, W, FIRST_BASE)
  end
  st:delete(R.wkey)
  if st.kt[R.rkey] ~= nil and st.kt[R.rkey] ~= DELETED then st:delete(R.rkey) end
  return nout, hi
end

local function close_partition_idle(R, p, h, nout)
  local st, m, msg = R.st, R.m, R.msg
  local wm = partition_wm(R, st, p, 0)
  while h.n > 0 do
    local _, key = heap_pop(h)
    state_at(st, p, key, 0)
    local k, hi = close_all(R, st, 0)
    if hi > wm then wm = hi end
    m.partition, m.offset = p, -1
    msg.key, msg.partition, msg.offset = key, p, -1
    for o = 1, k do
      local row, ts = R.ov[o], R.ots[o]
      R.ov[o], R.ots[o], R.okeys[o] = nil, nil, nil
      m.timestamp = ts
      nout = R.cont(row, ts, nil, key, 0, m, nout)
    end
  end
  if wm > partition_wm(R, st, p, 0) then st:set(R.pkey, wm) end
  return nout
end

-- Closes the windows of the partitions without a row for R.idle ms
-- (closing = "partition"); a partition whose close fails keeps its windows.
local function close_idle_partitions(R, now, nout, on_error)
  local list = core.state_expired and core.state_expired(R.st.name, 2 ^ 62, 2 ^ 31)
  if list then
    for j = 1, #list, 2 do heap_of(R, list[j]) end -- after a restart: the partitions with windows
  end
  for p, h in pairs(R.heaps) do
    if h.n > 0 and now - (R.plast[p] or now) >= R.idle and h == heap_of(R, p) then
      local mark = state.journal_mark()
      local ok, res = pcall(close_partition_idle, R, p, h, nout)
      if ok then
        nout = res
      else
        state.undo_to(mark)
        R.heaps[p] = nil -- rebuilt from the store's index next time
        for o = 1, #R.ov do R.ov[o], R.ots[o], R.okeys[o] = nil, nil, nil end
        on_error(R, "(all keys)", p, res)
      end
    end
  end
  return nout
end

-- The window steps with close_on_idle, in this Lua state.
function M.idle_steps()
  local res = {}
  for R in pairs(instances) do
    if R.idle and R.cont then res[#res + 1] = R end
  end
  table.sort(res, function(a, b) return a.store < b.store end)
  return res
end

-- The idle keys of window step R at `now`: (partition, key) pairs from the
-- store's time index (LMDB, through core.state_expired) and from the
-- changes not yet checkpointed; calls fn(p, key) for each (a key may come twice).
local function each_idle_key(R, now, max, fn, ud)
  local st = R.st
  local list = core.state_expired and core.state_expired(st.name, now, max)
  if list then
    for j = 1, #list, 2 do fn(ud, list[j], list[j + 1]) end
  end
  for p, part in pairs(st.parts) do
    for key, kt in pairs(part.dirty) do
      local ex = kt[EXP]
      local e = ex and ex[R.wkey]
      if e ~= nil and e <= now then fn(ud, p, key) end
    end
  end
end

-- Closes the idle windows of step R at `now` and runs the rest of the
-- pipeline on their output rows (R.cont). Returns the new output count.
local idle_ctx = { keys = {}, parts = {}, n = 0 }
local function collect_idle(x, p, key)
  local n = x.n + 1
  x.n = n
  x.parts[n], x.keys[n] = p, key
end

local function close_one(R, key, p, i, nout)
  local st, m = R.st, R.m
  state_at(st, p, key, i)
  local k = close_key(R, st, R.now, 0)
  m.partition, m.offset = p, -1
  local msg = R.msg
  msg.key, msg.partition, msg.offset = key, p, -1
  for o = 1, k do
    local row, ts = R.ov[o], R.ots[o]
    R.ov[o], R.ots[o] = nil, nil
    m.timestamp = ts
    nout = R.cont(row, ts, nil, key, i, m, nout)
  end
  return nout
end

-- Closes the idle windows of step R at `now` and runs the rest of the
-- pipeline on their output rows (R.cont); outputs go from nout + 1 on.
-- A key whose close fails (the rest of the pipeline raised an error) keeps
-- its windows and adds no output: on_error(R, key, partition, message) is
-- called, and the next pass tries again. Returns the new output count.
function M.close_idle(R, now, nout, max, on_error)
  if R.pmode then return close_idle_partitions(R, now, nout, on_error) end
  local x = idle_ctx
  x.n = 0
  each_idle_key(R, now, max, collect_idle, x)
  R.now = now
  for j = 1, x.n do
    local p, key = x.parts[j], x.keys[j]
    x.parts[j], x.keys[j] = nil, nil
    local ok, res = pcall(close_one, R, key, p, -j, nout)
    if ok then
      nout = res
    else
      state.undo_row(-j)
      for o = 1, #R.ov do R.ov[o], R.ots[o] = nil, nil end
      on_error(R, key, p, res)
    end
  end
  return nout
end

return M
