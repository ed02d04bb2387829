-- luastream.window: time windows and their aggregations (docs/api.md, "Windows").
--
-- Declaring: sdf:tumbling_window(size, opts) and sdf:hopping_window(size,
-- step, opts) (luastream.dataframe) return a window definition; w:agg{...}
-- or a shortcut (w:sum("v")) adds aggregations; w:final() or w:current()
-- adds a "window" step to the dataframe's tree and returns the dataframe of
-- its output rows. luastream.compile turns the step into a call of
-- M.process per row, then a loop over the rows it emitted running the rest
-- of the pipeline.
--
-- State: per message key, one entry "w" in the window's own store, a flat
-- array of numbers (and first/last values):
--   W[1] = the key's watermark (largest timestamp seen), W[2] = open windows,
--   then per open window, in order of start: start, and two slots per
--   aggregation (rows counted, value).
-- Open windows are updated in place; every slot write goes through the
-- state journal (luastream.state.jset), so a row that fails later in the
-- pipeline leaves the windows as it found them, like any state write. A row
-- allocates nothing here except a new key's table, a new window's slots
-- (the array may grow) and the output rows.
local util = require("luastream.util")
local expr = require("luastream.expr")
local state = require("luastream.state")
local core = require("luastream.core")

local M = {}

local type, tostring, setmetatable, getmetatable, rawget, rawset =
  type, tostring, setmetatable, getmetatable, rawget, rawset
local null = util.null
local huge = math.huge
local format = string.format
local tonumber = tonumber
local jset = state.jset
local state_at = state.at

---------------------------------------------------------------------------
-- Aggregations: ls.agg.*
---------------------------------------------------------------------------

-- Codes used in the row loop.
local COUNT, SUM, MEAN, MIN, MAX, FIRST, LAST = 1, 2, 3, 4, 5, 6, 7
local KINDS = { count = COUNT, sum = SUM, mean = MEAN, min = MIN, max = MAX, first = FIRST, last = LAST }
local NOT_YET_AGGS = { collect = true, std = true, var = true, reduce = true }

local AGG = {}
AGG.__index = AGG
AGG.__tostring = function(a) return "ls.agg." .. a.kind .. "(" .. (a.col_desc or "") .. ")" end

local function is_agg(x) return type(x) == "table" and getmetatable(x) == AGG end
M.is_agg = is_agg

local function make_agg(kind)
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
    if NOT_YET_AGGS[k] then
      util.fail("ls.agg." .. tostring(k) .. " is not supported yet (see docs/api.md, Windows)", where)
    end
    util.fail("ls.agg." .. tostring(k) .. ": unknown aggregation" .. util.suggest(tostring(k), KINDS) ..
      " (known: count, first, last, max, mean, min, sum)", where)
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
local WIN_FIELDS = { aggs = true, agg_loc = true, emitted = true, on_late = true }
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

local WIN_OPTS = { grace = true, closing = true, on_late = true, close_on_idle = true }

-- A window definition on dataframe `sdf`. kind "tumbling" or "hopping";
-- env = { add = fn(step) -> sdf, app = app, topic = topic }.
function M.define(env, kind, size, step, opts, where)
  local what = kind .. "_window"
  check_ms(what, "size", size, where)
  if kind == "hopping" then
    check_ms(what, "step", step, where)
    if step >= size then
      util.fail(what .. ": step (" .. fmt_ms(step) .. " ms) must be smaller than size (" .. fmt_ms(size) ..
        " ms); for windows that do not overlap use tumbling_window(" .. fmt_ms(size) .. ")", where)
    end
  else
    step = size
  end
  opts = util.check_options(what, opts, WIN_OPTS, where)
  local grace = opts.grace
  if grace == nil then grace = 0 end
  check_ms(what, "option 'grace'", grace, where, true)
  local closing = opts.closing
  if closing == nil then closing = "key" end
  if closing == "partition" then
    util.fail(what .. ": closing = \"partition\" is not supported yet; use closing = \"key\" " ..
      "(the default, see docs/api.md, Windows)", where)
  elseif closing ~= "key" then
    util.fail(what .. ": option 'closing' must be \"key\", got " ..
      (type(closing) == "string" and ("'" .. closing .. "'") or type(closing)), where)
  end
  if opts.close_on_idle ~= nil then
    util.fail(what .. ": option 'close_on_idle' is not supported yet (see docs/api.md, Windows)", where)
  end
  local on_late = opts.on_late
  if on_late ~= nil and not util.is_callable(on_late) then
    util.fail(what .. ": option 'on_late' must be a function(row, msg), got " .. type(on_late), where)
  end
  local desc = kind .. " window " .. fmt_ms(size) .. (kind == "hopping" and (" step " .. fmt_ms(step)) or "") ..
    " ms" .. (grace > 0 and (" grace " .. fmt_ms(grace)) or "")
  return setmetatable({ env = env, kind = kind, size = size, step = step, grace = grace,
    closing = closing, on_late = on_late, loc = where, desc = desc, aggs = nil }, WIN)
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
  win_methods[kind] = function(self, col)
    check_win(self, kind)
    local where = util.callsite()
    local a
    if kind == "count" then a = M.agg.count() else a = M.agg[kind](col) end
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

local function store_name(self)
  local parts = { self.closing }
  for _, a in ipairs(self.aggs) do
    parts[#parts + 1] = a.name .. "=" .. a.agg.kind .. "(" .. (a.agg.col_desc or "") .. ")"
  end
  local name = "__window__" .. self.kind .. "_" .. fmt_ms(self.size) ..
    (self.kind == "hopping" and ("_" .. fmt_ms(self.step)) or "") ..
    "_g" .. fmt_ms(self.grace) .. "_" .. hash8(table.concat(parts, ";"))
  return name
end
M.store_name = store_name

local function emit(self, mode)
  check_win(self, mode)
  local where = util.callsite()
  if not self.aggs then
    util.fail(mode .. "(): the window has no aggregations to emit; call w:agg{ n = ls.agg.count(), ... } " ..
      "or a shortcut like w:sum(\"v\") first: sdf:" .. self.kind .. "_window(...):sum(\"v\"):" .. mode .. "()", where)
  end
  if self.emitted then
    util.fail(mode .. "(): this window is already emitted with " .. self.emitted.mode .. "() at " ..
      self.emitted.loc .. "; declare the window again for a second output", where)
  end
  self.emitted = { mode = mode, loc = where }
  local env = self.env
  local app = env.app
  local name = store_name(self)
  -- two identical windows on one app get stores of their own
  local used = rawget(app, "_window_stores")
  if used == nil then
    used = {}
    rawset(app, "_window_stores", used)
  end
  local n = (used[name] or 0) + 1
  used[name] = n
  if n > 1 then name = name .. "_" .. n end
  app:_use_store(name, env.topic, where)
  local def = { kind = self.kind, size = self.size, step = self.step, grace = self.grace,
    on_late = self.on_late, aggs = self.aggs, final = mode == "final", desc = self.desc }
  return env.add({ kind = "window", def = def, store = name, loc = where,
    desc = self.desc .. " " .. mode .. "()" })
end

function win_methods.final(self) return emit(self, "final") end
function win_methods.current(self) return emit(self, "current") end

---------------------------------------------------------------------------
-- The row loop
---------------------------------------------------------------------------

-- The window steps compiled in this Lua state, for their late counts.
local instances = setmetatable({}, { __mode = "k" })

-- The runtime object of one window step (made when the pipeline compiles).
function M.runtime(def, st, node)
  local nagg = #def.aggs
  local codes, names = {}, {}
  for j, a in ipairs(def.aggs) do
    codes[j], names[j] = a.agg.code, a.name
  end
  local R = {
    st = st, D = def.size, S = def.step, G = def.grace, final = def.final,
    on_late = def.on_late, nagg = nagg, stride = 1 + 2 * nagg, codes = codes, names = names,
    vals = {},            -- the aggregations' column values of the current row (set by the pipeline)
    ov = {}, ots = {},    -- output rows and their timestamps
    late = 0,             -- rows dropped as late
    logged = false,
    loc = node.loc, desc = node.desc, store = st.name,
  }
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
  local code = R.codes[j]
  local kind = code == SUM and "sum" or code == MEAN and "mean" or code == MIN and "min" or "max"
  error("aggregation '" .. R.names[j] .. "' (" .. kind .. "): the value is a " .. type(x) ..
    ", expected a number", 0)
end

-- The open window starting at s in W, inserted (empty) when missing: its base index.
local function find_or_insert(R, W, s)
  local stride, nopen = R.stride, W[2]
  local base = 3
  local k = 1
  while k <= nopen do
    local ws = W[base]
    if ws == s then return base end
    if ws > s then break end
    k = k + 1
    base = base + stride
  end
  -- shift windows k..nopen up by one window
  local last = 2 + nopen * stride
  for x = last, base, -1 do
    jset(W, x + stride, W[x])
  end
  jset(W, base, s)
  for a = 1, R.nagg do
    local slot = base + 2 * a - 1
    jset(W, slot, 0)
    local code = R.codes[a]
    jset(W, slot + 1, (code == SUM or code == MEAN) and 0 or false)
  end
  jset(W, 2, nopen + 1)
  return base
end

local function update(R, W, base)
  local vals, codes = R.vals, R.codes
  for a = 1, R.nagg do
    local slot = base + 2 * a - 1
    local code = codes[a]
    if code == COUNT then
      jset(W, slot, W[slot] + 1)
    else
      local x = vals[a]
      if x ~= nil and x ~= null then
        local n = W[slot] + 1
        jset(W, slot, n)
        if code <= MAX then
          if type(x) ~= "number" then
            local y = tonumber(x)
            if type(x) ~= "cdata" or y == nil then bad_value(R, a, x) end
            x = y
          end
          if code == SUM or code == MEAN then
            jset(W, slot + 1, W[slot + 1] + x)
          elseif code == MIN then
            if n == 1 or x < W[slot + 1] then jset(W, slot + 1, x) end
          elseif n == 1 or x > W[slot + 1] then
            jset(W, slot + 1, x)
          end
        elseif code == FIRST then
          if n == 1 then jset(W, slot + 1, x) end
        else
          jset(W, slot + 1, x)
        end
      end
    end
  end
end

local function result_row(R, W, base)
  local s = W[base]
  local row = { start = s, ["end"] = s + R.D }
  local names, codes = R.names, R.codes
  for a = 1, R.nagg do
    local slot = base + 2 * a - 1
    local n, x = W[slot], W[slot + 1]
    local code = codes[a]
    local r
    if code == COUNT then r = n
    elseif n == 0 then r = null
    elseif code == MEAN then r = x / n
    else r = x end
    row[names[a]] = r
  end
  return row
end

-- Removes the first open window of W.
local function remove_first(R, W)
  local stride, nopen = R.stride, W[2]
  local last = 2 + nopen * stride
  for x = 3, last - stride do
    jset(W, x, W[x + stride])
  end
  for x = last - stride + 1, last do
    jset(W, x, nil)
  end
  jset(W, 2, nopen - 1)
end

local function late_row(R, v, msg, t, wm)
  R.late = R.late + 1
  if not R.logged then
    R.logged = true
    core.log("warn", R.loc .. ": " .. R.desc .. ": dropped a late row (timestamp " .. fmt_ms(t) ..
      ", the key's watermark " .. fmt_ms(wm) .. " had closed all its windows); later late rows " ..
      "are counted without a log line")
  end
  if R.on_late then R.on_late(v, msg) end
end

-- One row: updates the row's windows in the key's state, closes the windows
-- the watermark passed. Returns the number of output rows, in R.ov / R.ots.
function M.process(R, v, ts, key, p, i, msg)
  local t = ts
  if type(t) ~= "number" then
    t = tonumber(t)
    if type(ts) ~= "cdata" or t == nil then bad_ts(ts) end
  end
  local st = R.st
  state_at(st, p, key, i)
  local W = st:get("w")
  local D, S, G = R.D, R.S, R.G
  local wm = -huge
  if W ~= nil then wm = W[1] end
  local s_hi = t - t % S
  local s = s_hi
  while s - S > t - D do s = s - S end
  if s_hi + D + G <= wm then
    -- late for every window (the latest window ends last)
    late_row(R, v, msg, t, wm)
    return 0
  end
  if W == nil then
    W = { t, 0 }
  end
  local nout = 0
  local ov, ots = R.ov, R.ots
  local final = R.final
  while s <= s_hi do
    if s + D + G > wm then
      local base = find_or_insert(R, W, s)
      update(R, W, base)
      if not final then
        nout = nout + 1
        ov[nout], ots[nout] = result_row(R, W, base), s
      end
    end
    s = s + S
  end
  if t > wm then jset(W, 1, t) end
  wm = W[1]
  while W[2] > 0 and W[3] + D + G <= wm do
    if final then
      nout = nout + 1
      ov[nout], ots[nout] = result_row(R, W, 3), W[3]
    end
    remove_first(R, W)
  end
  st:set("w", W)
  return nout
end

return M
