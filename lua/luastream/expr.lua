-- luastream.expr: column expressions.
--
-- An expression is a small tree built by metamethods (sdf.gX ^ 2 + 1) and
-- methods (sdf.dG:gt(3)). It is never evaluated as a tree: the pipeline
-- compiler turns it into Lua source that reads the row directly
-- (v.gX ^ 2 + 1), so LuaJIT traces it like hand-written code.
--
-- The same functions work on plain values: ls.sqrt(4) == 2. Row-time
-- behaviour lives in luastream.util and is shared by both paths.
local util = require("luastream.util")
local core = require("luastream.core")

local M = {}

local null = core.null
local type, select, tostring, rawget, rawset, setmetatable, getmetatable =
  type, select, tostring, rawget, rawset, setmetatable, getmetatable
local concat = table.concat

-- Expression data lives under a key no user code can produce, so every
-- string key (a nested column name) reaches __index / __newindex.
local NODE = setmetatable({}, { __tostring = function() return "<expr node>" end })
M.NODE = NODE

local E = {}          -- the expression metatable
M.mt = E
local methods = {}    -- expression methods (sdf.x:gt(3))
M.methods = methods

local function is_expr(x)
  return type(x) == "table" and getmetatable(x) == E
end
M.is_expr = is_expr

local function any_expr_n(n, ...)
  for j = 1, n do
    if is_expr((select(j, ...))) then return true end
  end
  return false
end

local function mk(node)
  local e = setmetatable({}, E)
  rawset(e, NODE, node)
  return e
end
M.make = mk

-- Hooks set by luastream.dataframe (avoids a require cycle).
M.hooks = {
  is_sdf = function() return false end,
  assign = nil,          -- function(owner_sdf, path, value, where)
}

local function node_of(x)
  if is_expr(x) then return rawget(x, NODE) end
  if M.hooks.is_sdf(x) then
    util.fail("a dataframe cannot be used inside a column expression; " ..
      "use sdf:apply(fn) as a whole value (sdf.x = sdf:apply(fn)) or an expression")
  end
  return { k = "const", value = x }
end
M.node_of = node_of

function M.col(path, owner)
  return mk({ k = "col", path = path, owner = owner })
end

function M.lit(value)
  if is_expr(value) then return value end
  return mk({ k = "const", value = value })
end

---------------------------------------------------------------------------
-- Building
---------------------------------------------------------------------------

local function bin(op)
  return function(a, b)
    return mk({ k = "bin", op = op, a = node_of(a), b = node_of(b) })
  end
end
E.__add = bin("+")
E.__sub = bin("-")
E.__mul = bin("*")
E.__div = bin("/")
E.__mod = bin("%")
E.__pow = bin("^")
E.__concat = bin("..")
E.__unm = function(a) return mk({ k = "unm", a = node_of(a) }) end
E.__lt = function()
  util.fail("'<' and '>' cannot compare column expressions (Lua turns the result into a boolean); " ..
    "use :lt(x) / :gt(x)")
end
E.__le = function()
  util.fail("'<=' and '>=' cannot compare column expressions (Lua turns the result into a boolean); " ..
    "use :le(x) / :ge(x)")
end

local function field(node, key)
  if node.k == "col" then
    local path = {}
    for j = 1, #node.path do path[j] = node.path[j] end
    path[#path + 1] = key
    return mk({ k = "col", path = path, owner = node.owner })
  end
  return mk({ k = "index", a = node, key = key })
end

-- The names a column's value answers as methods (sdf.g:max() on a vec,
-- sdf.name:upper() on a string), read from the method tables themselves on
-- first use: the string metatable's __index, and every ls.vec function that a
-- vec also offers as a method (probed on an empty vec, whose __index raises
-- for names it does not know).
local value_methods
local function value_method_names()
  if value_methods then return value_methods end
  local names = {}
  local smt = getmetatable("")
  if smt and type(smt.__index) == "table" then
    for k, f in pairs(smt.__index) do
      if type(f) == "function" then names[k] = true end
    end
  end
  local vec = require("luastream.vec")
  local probe = vec.new(0)
  for k in pairs(vec) do
    local ok, m = pcall(function() return probe[k] end)
    if ok and type(m) == "function" then names[k] = true end
  end
  value_methods = names
  return names
end
M.value_methods = value_method_names

-- Names people reach for, from pandas and other languages, too far from
-- ours by edit distance to be suggested by it.
local ALIASES = {
  greater = "gt", greater_than = "gt", gte = "ge", greater_equal = "ge",
  less = "lt", less_than = "lt", lte = "le", less_equal = "le",
  equal = "eq", equals = "eq", not_equal = "ne", neq = "ne",
  is_null = "isnull", isna = "isnull", is_not_null = "notnull", not_null = "notnull",
  notna = "notnull", in_ = "isin", is_in = "isin", includes = "contains", length = "len",
}
M.ALIASES = ALIASES

-- Raises for sdf.x:name(...) when name is neither an expression method nor
-- a method of the values a column holds. Without this check the call would
-- compile to v.x:name() and fail on every row ("attempt to index a number
-- value") instead of once, here, at the user's line.
local function check_value_method(name)
  local known = value_method_names()
  if known[name] then return end
  local hint = ALIASES[name]
  if not hint then
    local all = {}
    for k in pairs(methods) do all[k] = true end
    for k in pairs(known) do all[k] = true end
    hint = util.closest(name, all)
  end
  if hint then
    util.fail("unknown method '" .. name .. "' on a column expression; did you mean '" .. hint .. "'?")
  end
  util.fail("unknown method '" .. name .. "' on a column expression: it is not an expression method " ..
    "(gt, isin, notnull, ...), nor a method of ls.vec values or strings; to run a function on " ..
    "the value use expr:apply(fn)")
end

-- sdf.g:max(): Lua reads the field "max" of sdf.g, then calls it with sdf.g
-- itself. Such a call becomes a method call on the row's value at run time
-- (v.g:max()): the methods of the value (a vec's kernels) do the work.
E.__call = function(e, self, ...)
  local node = rawget(e, NODE)
  local name = node.k == "col" and node.path[#node.path] or node.k == "index" and node.key
  local parent = is_expr(self) and rawget(self, NODE)
  local same = parent and (node.k == "index" and rawequal(node.a, parent) or
    node.k == "col" and parent.k == "col" and #parent.path == #node.path - 1)
  for k = 1, same and node.k == "col" and #parent.path or 0 do
    if parent.path[k] ~= node.path[k] then same = false end
  end
  if type(name) ~= "string" or not util.is_ident(name) or not same then
    util.fail("a column expression is not callable; to run a function on it use expr:apply(fn), " ..
      "or call a method of its values with ':' (sdf.g:max())")
  end
  check_value_method(name)
  local args = {}
  for j = 1, select("#", ...) do args[j] = node_of((select(j, ...))) end
  return mk({ k = "mcall", obj = parent, name = name, args = args })
end

-- A call of a Lua function on expressions: fn(args...) on every row. Libraries
-- whose functions accept columns (ls.vec) build their expressions with it.
function M.call(fn, name, ...)
  local args = {}
  for j = 1, select("#", ...) do args[j] = node_of((select(j, ...))) end
  return mk({ k = "fcall", fn = fn, name = name, args = args })
end
M.any_expr = function(...) return any_expr_n(select("#", ...), ...) end
E.__ls_call = M.call -- how other modules (ls.vec) tell an expression and build calls on it

E.__index = function(e, key)
  local kt = type(key)
  if kt == "string" then
    local m = methods[key]
    if m then return m end
    return field(rawget(e, NODE), key)
  elseif kt == "number" then
    return field(rawget(e, NODE), key)
  end
  util.fail("a column expression can only be indexed by a field name or number, got " .. kt)
end

E.__newindex = function(e, key, value)
  local node = rawget(e, NODE)
  if (type(key) ~= "string" and type(key) ~= "number") then
    util.fail("nested column names must be strings or numbers, got " .. type(key))
  end
  if node.k ~= "col" or not node.owner then
    util.fail("cannot assign to '" .. M.render(node) .. "." .. tostring(key) ..
      "': only columns of a dataframe can be assigned (sdf.pos.lat = ...)")
  end
  local path = {}
  for j = 1, #node.path do path[j] = node.path[j] end
  path[#path + 1] = key
  M.hooks.assign(node.owner, path, value, util.callsite())
end

local function cmp(op)
  return function(a, b)
    if not is_expr(a) then util.fail("expression method called without ':' (use expr:" .. op .. "(x))") end
    return mk({ k = "cmp", op = op, a = node_of(a), b = node_of(b) })
  end
end
methods.gt = cmp(">")
methods.ge = cmp(">=")
methods.lt = cmp("<")
methods.le = cmp("<=")
methods.eq = cmp("==")
methods.ne = cmp("~=")

local function self_check(a, name)
  if not is_expr(a) then util.fail("expression method called without ':' (use expr:" .. name .. "(...))") end
end

function methods.isin(a, list)
  self_check(a, "isin")
  if type(list) ~= "table" or is_expr(list) then
    util.fail("isin: expected a list of values, got " .. (is_expr(list) and "an expression" or type(list)))
  end
  local set = {}
  for j = 1, #list do
    local x = list[j]
    if x ~= x then util.fail("isin: NaN cannot be matched") end
    if is_expr(x) then util.fail("isin: list elements must be plain values, not expressions") end
    set[x] = true
  end
  return mk({ k = "isin", a = rawget(a, NODE), set = set, list = list })
end

function methods.isnull(a)
  self_check(a, "isnull")
  return mk({ k = "isnull", a = rawget(a, NODE) })
end

function methods.notnull(a)
  self_check(a, "notnull")
  return mk({ k = "notnull", a = rawget(a, NODE) })
end

function methods.contains(a, b)
  self_check(a, "contains")
  return mk({ k = "call", fn = "contains", args = { rawget(a, NODE), node_of(b) }, bool = true })
end

function methods.apply(a, fn)
  self_check(a, "apply")
  if not util.is_callable(fn) then
    util.fail("expr:apply: expected a function, got " .. type(fn))
  end
  return mk({ k = "apply", fn = fn, a = rawget(a, NODE) })
end

function methods.get(a, key)
  self_check(a, "get")
  if type(key) ~= "string" and type(key) ~= "number" then
    util.fail("expr:get: expected a field name or number, got " .. type(key))
  end
  return field(rawget(a, NODE), key)
end

---------------------------------------------------------------------------
-- Functions: ls.abs(x) etc. work on expressions and on plain values
---------------------------------------------------------------------------

-- name -> { impl = plain-value implementation, src = how compiled code calls it }
-- src: "math.x" for a localized math function, "util.x" for a helper,
-- or an operator form handled by the compiler.
local FUNCS = {
  abs = { impl = util.abs, lib = "util", name = "abs" },    -- numbers, or vecs element-wise
  sqrt = { impl = util.sqrt, lib = "util", name = "sqrt" },
  floor = { impl = math.floor, lib = "math", name = "floor" },
  ceil = { impl = math.ceil, lib = "math", name = "ceil" },
  exp = { impl = math.exp, lib = "math", name = "exp" },
  log = { impl = math.log, lib = "math", name = "log" },
  log10 = { impl = math.log10, lib = "math", name = "log10" },
  sin = { impl = math.sin, lib = "math", name = "sin" },
  cos = { impl = math.cos, lib = "math", name = "cos" },
  tan = { impl = math.tan, lib = "math", name = "tan" },
  atan2 = { impl = math.atan2, lib = "math", name = "atan2" },
  min = { impl = math.min, lib = "math", name = "min" },
  max = { impl = math.max, lib = "math", name = "max" },
  pow = { impl = function(a, b) return a ^ b end, op = "^" },
  round = { impl = util.round, lib = "util", name = "round" },
  tostring = { impl = util.tostr, lib = "util", name = "tostr" },
  tonumber = { impl = util.tonum, lib = "util", name = "tonum" },
  len = { impl = util.len, lib = "util", name = "len" },
  lower = { impl = util.lower, lib = "util", name = "lower" },
  upper = { impl = util.upper, lib = "util", name = "upper" },
  contains = { impl = util.contains, lib = "util", name = "contains" },
}
M.FUNCS = FUNCS

local any_expr = any_expr_n

local function make_fn(name)
  local f = FUNCS[name]
  local impl = f.impl
  return function(...)
    local n = select("#", ...)
    if any_expr(n, ...) then
      if f.op then
        local a, b = ...
        return mk({ k = "bin", op = f.op, a = node_of(a), b = node_of(b) })
      end
      local args = {}
      for j = 1, n do args[j] = node_of((select(j, ...))) end
      return mk({ k = "call", fn = name, args = args })
    end
    return impl(...)
  end
end

-- The ls.* functions, keyed by their public name.
M.functions = {}
for _, name in ipairs({ "abs", "sqrt", "floor", "ceil", "exp", "log", "log10", "sin", "cos", "tan",
  "atan2", "min", "max", "pow", "round", "tostring", "tonumber", "len", "lower", "upper" }) do
  M.functions[name] = make_fn(name)
end

for _, name in ipairs({ "abs", "round", "floor", "ceil", "sqrt" }) do
  local fn = M.functions[name]
  methods[name] = function(a, ...)
    self_check(a, name)
    return fn(a, ...)
  end
end

local truth = util.truth

function M.functions.all(...)
  local n = select("#", ...)
  if n == 0 then util.fail("ls.all: expected at least one argument") end
  if any_expr(n, ...) then
    local args = {}
    for j = 1, n do args[j] = node_of((select(j, ...))) end
    return mk({ k = "all", args = args })
  end
  for j = 1, n do
    if not truth((select(j, ...))) then return false end
  end
  return true
end

function M.functions.any(...)
  local n = select("#", ...)
  if n == 0 then util.fail("ls.any: expected at least one argument") end
  if any_expr(n, ...) then
    local args = {}
    for j = 1, n do args[j] = node_of((select(j, ...))) end
    return mk({ k = "any", args = args })
  end
  for j = 1, n do
    if truth((select(j, ...))) then return true end
  end
  return false
end

function M.functions.not_(x)
  if is_expr(x) then return mk({ k = "not", a = rawget(x, NODE) }) end
  return not truth(x)
end

function M.functions.where(c, a, b)
  if is_expr(c) or is_expr(a) or is_expr(b) then
    return mk({ k = "where", c = node_of(c), a = node_of(a), b = node_of(b) })
  end
  if truth(c) then return a end
  return b
end

---------------------------------------------------------------------------
-- Rendering (for error messages and tostring)
---------------------------------------------------------------------------

local function render_path(path)
  local parts = {}
  for j = 1, #path do
    local p = path[j]
    if type(p) == "number" then
      parts[#parts + 1] = "[" .. tostring(p) .. "]"
    else
      parts[#parts + 1] = (j > 1 and "." or "") .. p
    end
  end
  return concat(parts)
end
M.render_path = render_path

local function render_const(x)
  if x == null then return "null" end
  if type(x) == "string" then return util.quote(x) end
  if type(x) == "number" or type(x) == "boolean" or x == nil then return tostring(x) end
  return "<" .. type(x) .. ">"
end

local render
local function render_args(args)
  local parts = {}
  for j = 1, #args do parts[j] = render(args[j], true) end
  return concat(parts, ", ")
end

local function wrap(s, top) if top then return s end return "(" .. s .. ")" end

render = function(n, top)
  local k = n.k
  if k == "const" then return render_const(n.value)
  elseif k == "col" then return render_path(n.path)
  elseif k == "index" then return render(n.a) .. "[" .. render_const(n.key) .. "]"
  elseif k == "bin" then return wrap(render(n.a) .. " " .. n.op .. " " .. render(n.b), top)
  elseif k == "unm" then return "-" .. render(n.a)
  elseif k == "cmp" then return wrap(render(n.a) .. " " .. n.op .. " " .. render(n.b), top)
  elseif k == "isin" then
    local items = {}
    for j = 1, #n.list do items[j] = render_const(n.list[j]) end
    return render(n.a) .. ":isin{" .. concat(items, ", ") .. "}"
  elseif k == "isnull" then return render(n.a) .. ":isnull()"
  elseif k == "notnull" then return render(n.a) .. ":notnull()"
  elseif k == "call" then return n.fn .. "(" .. render_args(n.args) .. ")"
  elseif k == "all" then return "all(" .. render_args(n.args) .. ")"
  elseif k == "any" then return "any(" .. render_args(n.args) .. ")"
  elseif k == "not" then return "not_(" .. render(n.a, true) .. ")"
  elseif k == "where" then
    return "where(" .. render(n.c, true) .. ", " .. render(n.a, true) .. ", " .. render(n.b, true) .. ")"
  elseif k == "apply" then return render(n.a) .. ":apply(fn)"
  elseif k == "mcall" then return render(n.obj) .. ":" .. n.name .. "(" .. render_args(n.args) .. ")"
  elseif k == "fcall" then return n.name .. "(" .. render_args(n.args) .. ")"
  end
  return "?"
end
function M.render(n) return render(n, true) end

E.__tostring = function(e) return "expr<" .. render(rawget(e, NODE), true) .. ">" end

---------------------------------------------------------------------------
-- Compiling to Lua source
---------------------------------------------------------------------------
-- cx is the compiler context (see luastream.compile):
--   cx:const(value) -> source naming the value (literal or local)
--   cx:lib(lib, name) -> local name of math.<name> / util.<name>
--   cx:tmp() -> a fresh temporary name
--   cx:emit(line), cx:push(), cx:pop() -> statements evaluated before the
--   expression (only `where` needs them)

local BOOL = { cmp = true, isin = true, isnull = true, notnull = true, all = true, any = true, ["not"] = true }

local function is_bool(n)
  return BOOL[n.k] or (n.k == "call" and n.bool) or (n.k == "const" and type(n.value) == "boolean")
end
M.is_bool = is_bool

local compile

-- Source testing the truth of node n (nil, false and ls.null are false).
local function truthy(n, vname, cx)
  local s = compile(n, vname, cx)
  if is_bool(n) then return s end
  return cx:lib("util", "truth") .. "(" .. s .. ")"
end
M.truthy = function(n, vname, cx) return truthy(n, vname, cx) end

local function key_src(key, cx)
  if type(key) == "number" then return "[" .. cx:const(key) .. "]" end
  if util.is_ident(key) then return "." .. key end
  return "[" .. cx:const(key) .. "]"
end

compile = function(n, vname, cx)
  local k = n.k
  if k == "const" then
    return cx:const(n.value)
  elseif k == "col" then
    local path = n.path
    local s = vname .. key_src(path[1], cx)
    for j = 2, #path do
      s = cx:lib("util", "idx") .. "(" .. s .. ", " .. cx:const(path[j]) .. ")"
    end
    return s
  elseif k == "index" then
    return cx:lib("util", "idx") .. "(" .. compile(n.a, vname, cx) .. ", " .. cx:const(n.key) .. ")"
  elseif k == "bin" then
    return "(" .. compile(n.a, vname, cx) .. " " .. n.op .. " " .. compile(n.b, vname, cx) .. ")"
  elseif k == "unm" then
    return "(-" .. compile(n.a, vname, cx) .. ")"
  elseif k == "cmp" then
    return "(" .. compile(n.a, vname, cx) .. " " .. n.op .. " " .. compile(n.b, vname, cx) .. ")"
  elseif k == "isin" then
    return "(" .. cx:const(n.set) .. "[" .. compile(n.a, vname, cx) .. "] == true)"
  elseif k == "isnull" then
    return cx:lib("util", "isnull") .. "(" .. compile(n.a, vname, cx) .. ")"
  elseif k == "notnull" then
    return "(not " .. cx:lib("util", "isnull") .. "(" .. compile(n.a, vname, cx) .. "))"
  elseif k == "call" then
    local f = FUNCS[n.fn]
    local args = {}
    for j = 1, #n.args do args[j] = compile(n.args[j], vname, cx) end
    return cx:lib(f.lib, f.name) .. "(" .. concat(args, ", ") .. ")"
  elseif k == "all" or k == "any" then
    local parts = {}
    for j = 1, #n.args do parts[j] = truthy(n.args[j], vname, cx) end
    return "(" .. concat(parts, k == "all" and " and " or " or ") .. ")"
  elseif k == "not" then
    return "(not " .. truthy(n.a, vname, cx) .. ")"
  elseif k == "apply" then
    return cx:const(n.fn) .. "(" .. compile(n.a, vname, cx) .. ")"
  elseif k == "mcall" or k == "fcall" then
    local args = {}
    for j = 1, #n.args do args[j] = compile(n.args[j], vname, cx) end
    local head = k == "mcall" and "(" .. compile(n.obj, vname, cx) .. "):" .. n.name or cx:const(n.fn)
    return head .. "(" .. concat(args, ", ") .. ")"
  elseif k == "where" then
    local c = truthy(n.c, vname, cx)
    local t = cx:tmp()
    cx:emit("local " .. t)
    cx:emit("if " .. c .. " then")
    cx:push()
    local a = compile(n.a, vname, cx)
    cx:emit(t .. " = " .. a)
    cx:pop()
    cx:emit("else")
    cx:push()
    local b = compile(n.b, vname, cx)
    cx:emit(t .. " = " .. b)
    cx:pop()
    cx:emit("end")
    return t
  end
  error("luastream: unknown expression node '" .. tostring(k) .. "'")
end
M.compile = compile

return M
