-- luastream.vec: ls.vec, vectors of doubles on the LuaJIT FFI whose numeric
-- kernels are C functions (runtime/vec.c, reached through ffi.C).
--
--   local v = ls.vec.from{ 1, 2, 3 }
--   v[2] = 5; print(#v, v:sum(), v:mean(), tostring(v + 1))
--   local g = ls.vec.magnitude(gx, gy, gz)       -- sqrt(x^2 + y^2 + z^2)
--   gx:add(gy, out)                               -- into `out`: no allocation
--
-- Representation: a vec is one cdata object of the variable-length struct
--
--   struct ls_vec { const int32_t n; int32_t flags; double d[?] (32-byte aligned); }
--
-- made by ffi.new and owned by the garbage collector. That is one allocation
-- per vec, no finalizer and no separate buffer, where {n, cap, double *data}
-- would need a malloc, an ffi.gc finalizer per vec and one more indirection in
-- every loop; the JIT compiles ffi.new of it inline. The elements start 32
-- bytes in and LuaJIT aligns the object to 32 bytes, so the kernels' SIMD
-- loads never straddle a cache line. A vec's length never changes: n is const
-- to Lua (`v.n = 5` raises), so bounds checks can trust it. C sees the same
-- layout (runtime/vec.h) and makes vecs with ls_vec_push.
--
-- The Lua face: 1-based `v[i]` reads and writes, bounds-checked in the
-- __index/__newindex functions (which the JIT inlines into the caller's
-- trace); `#v`; methods `v:sum()`, `v:add(w, out)`, ...; `+ - * /` and unary
-- minus returning new vecs; tostring. `v.d` is the raw 0-based array, without
-- checks, for code that has checked its bounds itself.
--
-- Every function returning a vec takes an optional last argument `out`: a vec
-- of the right length that receives the result and is returned, so that form
-- allocates nothing. These wrappers check types, lengths and aliasing; the C
-- kernels trust them. Rules for NaN, infinities and empty vecs: docs/vec.md.
local ffi = require("ffi")

-- One module per Lua state: the FFI metatype can be set only once, so a
-- second load (e.g. with package.loaded cleared) returns the first module.
local registry = debug.getregistry()
local REG_KEY = "luastream.vec.module"
if registry[REG_KEY] then return registry[REG_KEY] end

local type, error, tostring, tonumber, setmetatable = type, error, tostring, tonumber, setmetatable
local floor, huge = math.floor, math.huge
local format, concat = string.format, table.concat
local new_table = require("table.new")
local istype, cast, ffi_new = ffi.istype, ffi.cast, ffi.new

-- runtime/vec.h's types, declared unless this Lua state has them already
-- (ffi.cdef cannot declare a struct twice; this module runs once per state,
-- but other code may have declared them first). Any other error in the
-- declarations is raised, and a type of either name with another layout than
-- runtime/vec.h's, or an ls_vec whose n Lua may write, is refused.
if not pcall(ffi.typeof, "ls_vec") then
  ffi.cdef([[
typedef struct ls_vec {
  const int32_t n; int32_t flags; double d[?] __attribute__((aligned(32)));
} ls_vec;
]])
end
if not pcall(ffi.typeof, "ls_vec_head") then
  ffi.cdef("typedef struct ls_vec_head { int32_t n; int32_t flags; } ls_vec_head;")
end
assert(ffi.sizeof("ls_vec", 0) == 32 and ffi.alignof("ls_vec") == 32 and ffi.offsetof("ls_vec", "n") == 0 and
  ffi.offsetof("ls_vec", "flags") == 4 and ffi.offsetof("ls_vec", "d") == 32 and ffi.sizeof("ls_vec", 3) == 56,
  "luastream.vec: ls_vec is declared with another layout than runtime/vec.h's")
assert(not pcall(function() ffi.new("ls_vec", 0).n = 1 end),
  "luastream.vec: ls_vec is declared without `const int32_t n` (bounds checks rely on it)")
assert(ffi.sizeof("ls_vec_head") == 8 and ffi.offsetof("ls_vec_head", "n") == 0 and
  ffi.offsetof("ls_vec_head", "flags") == 4,
  "luastream.vec: ls_vec_head is declared with another layout than runtime/vec.h's ls_vec")

-- The kernels (runtime/vec.h). Declaring a function again is no error for
-- ffi.cdef (the first declaration stays), so these are declared every time:
-- a syntax error here is raised.
ffi.cdef([[
double ls_ffi_vec_sum(const double *x, int32_t n);
double ls_ffi_vec_mean(const double *x, int32_t n);
double ls_ffi_vec_var(const double *x, int32_t n, double ddof);
double ls_ffi_vec_std(const double *x, int32_t n, double ddof);
double ls_ffi_vec_min(const double *x, int32_t n);
double ls_ffi_vec_max(const double *x, int32_t n);
int32_t ls_ffi_vec_argmin(const double *x, int32_t n);
int32_t ls_ffi_vec_argmax(const double *x, int32_t n);
double ls_ffi_vec_norm(const double *x, int32_t n);
double ls_ffi_vec_dot(const double *x, const double *y, int32_t n);
void ls_ffi_vec_add(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_sub(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_mul(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_div(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_add_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_sub_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_rsub_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_mul_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_div_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_rdiv_s(double *out, const double *x, double s, int32_t n);
void ls_ffi_vec_neg(double *out, const double *x, int32_t n);
void ls_ffi_vec_abs(double *out, const double *x, int32_t n);
void ls_ffi_vec_sqrt(double *out, const double *x, int32_t n);
void ls_ffi_vec_copy(double *out, const double *x, int32_t n);
void ls_ffi_vec_clip(double *out, const double *x, int32_t n, double lo, double hi);
void ls_ffi_vec_magnitude(double *out, const double *x, const double *y, const double *z, int32_t n);
void ls_ffi_vec_cumsum(double *out, const double *x, int32_t n);
void ls_ffi_vec_diff(double *out, const double *x, int32_t n);
void ls_ffi_vec_resample(double *out, const double *x, int32_t n, int32_t factor);
void ls_ffi_vec_rolling_sum(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_mean(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_max(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_min(double *out, const double *x, int32_t n, int32_t w);
]])

local VEC = ffi.typeof("ls_vec")
local HEAD = ffi.typeof("ls_vec_head *")
local MAX_LEN = 0x7fffffff

-- The kernels live in the executable (exported with -rdynamic). Outside the
-- luastream binary (plain luajit) vecs still work, the kernels raise.
local C = ffi.C
if not pcall(function() return C.ls_ffi_vec_sum end) then
  C = setmetatable({}, { __index = function(_, sym)
    local name = sym:gsub("^ls_ffi_vec_", "")
    return function()
      error("ls.vec." .. name .. ": the C kernels are not available in this process; " ..
        "run inside the luastream binary (luastream run / test / lua)", 3)
    end
  end })
end

local M = {}
M.ctype = VEC

---------------------------------------------------------------------------
-- Errors, raised at the line of the user's code that called ls.vec
---------------------------------------------------------------------------

local function typename(x)
  if istype(VEC, x) then return "vec" end
  return type(x)
end

-- depth: frames from raise's caller up to the user's code (2 when a public
-- function calls raise, 3 from a helper a public function calls).
local function raise(depth, name, msg)
  error("ls.vec." .. name .. ": " .. msg, depth + 1)
end

local function need_vec(x, name, what)
  if not istype(VEC, x) then raise(3, name, what .. " must be a vec, got " .. typename(x)) end
end

local function mismatch(name, n1, n2)
  raise(3, name, format("length mismatch: %d vs %d", n1, n2))
end

-- A whole number in [lo, MAX_LEN].
local function need_count(x, name, what, lo)
  if type(x) ~= "number" or x % 1 ~= 0 or x < lo or x > MAX_LEN then
    raise(3, name, format("%s must be a whole number >= %d, got %s", what, lo,
      type(x) == "number" and tostring(x) or type(x)))
  end
end

---------------------------------------------------------------------------
-- Allocation
---------------------------------------------------------------------------

local function alloc(n)
  local v = ffi_new(VEC, n)
  cast(HEAD, v).n = n
  return v
end

-- The vec to write a result of length n into: a new one, or `out` checked.
local function out_vec(out, n, name)
  if out == nil then return alloc(n) end
  if not istype(VEC, out) then raise(3, name, "out must be a vec, got " .. typename(out)) end
  if out.n ~= n then raise(3, name, format("out has length %d, expected %d", out.n, n)) end
  return out
end

-- For kernels that read the input after writing some output.
local function not_input(out, v, name)
  if rawequal(out, v) then raise(3, name, "out must not be the input vec") end
end

-- ls.vec.new(n): a vec of n zeros.
function M.new(n)
  need_count(n, "new", "length", 0)
  return alloc(n)
end

-- ls.vec.from(t): a vec holding t[1..#t] (numbers), or a copy of a vec.
function M.from(t)
  if istype(VEC, t) then
    local v = alloc(t.n)
    C.ls_ffi_vec_copy(v.d, t.d, t.n)
    return v
  end
  if type(t) ~= "table" then raise(2, "from", "expected a table of numbers or a vec, got " .. type(t)) end
  local n = #t
  local v = alloc(n)
  local d = v.d
  for i = 1, n do
    local x = t[i]
    if type(x) ~= "number" then
      raise(2, "from", format("element %d must be a number, got %s", i, typename(x)))
    end
    d[i - 1] = x
  end
  return v
end

-- ls.vec.is(x): true if x is a vec.
function M.is(x)
  return istype(VEC, x)
end

---------------------------------------------------------------------------
-- Reductions
---------------------------------------------------------------------------

local function reduction(name, kernel)
  return function(v)
    need_vec(v, name, "argument 1")
    return kernel(v.d, v.n)
  end
end

M.sum = reduction("sum", C.ls_ffi_vec_sum)
M.mean = reduction("mean", C.ls_ffi_vec_mean)
M.min = reduction("min", C.ls_ffi_vec_min)
M.max = reduction("max", C.ls_ffi_vec_max)
M.norm = reduction("norm", C.ls_ffi_vec_norm)

local function spread(name, kernel)
  return function(v, ddof)
    need_vec(v, name, "argument 1")
    if ddof == nil then
      ddof = 0
    -- not (ddof >= 0), not ddof < 0: NaN must fail the check too
    elseif type(ddof) ~= "number" or not (ddof >= 0) then -- luacheck: ignore 581
      raise(2, name, "ddof must be a number >= 0, got " .. tostring(ddof))
    end
    return kernel(v.d, v.n, ddof)
  end
end

M.var = spread("var", C.ls_ffi_vec_var)
M.std = spread("std", C.ls_ffi_vec_std)

local function arg_extreme(name, kernel)
  return function(v)
    need_vec(v, name, "argument 1")
    local i = kernel(v.d, v.n)
    if i < 0 then return nil end
    return i + 1
  end
end

M.argmin = arg_extreme("argmin", C.ls_ffi_vec_argmin)
M.argmax = arg_extreme("argmax", C.ls_ffi_vec_argmax)

function M.dot(a, b)
  need_vec(a, "dot", "argument 1")
  need_vec(b, "dot", "argument 2")
  if a.n ~= b.n then mismatch("dot", a.n, b.n) end
  return C.ls_ffi_vec_dot(a.d, b.d, a.n)
end

---------------------------------------------------------------------------
-- Elementwise
---------------------------------------------------------------------------

-- a op b for vec-vec, vec-number and number-vec operands.
local function binop(name, vv, vs, sv)
  return function(a, b, out)
    if istype(VEC, a) then
      local n = a.n
      if istype(VEC, b) then
        if b.n ~= n then mismatch(name, n, b.n) end
        out = out_vec(out, n, name)
        vv(out.d, a.d, b.d, n)
        return out
      elseif type(b) == "number" then
        out = out_vec(out, n, name)
        vs(out.d, a.d, b, n)
        return out
      end
      raise(2, name, "argument 2 must be a vec or a number, got " .. typename(b))
    elseif type(a) == "number" and istype(VEC, b) then
      local n = b.n
      out = out_vec(out, n, name)
      sv(out.d, b.d, a, n)
      return out
    end
    if type(a) == "number" then
      raise(2, name, "argument 2 must be a vec, got " .. typename(b))
    end
    raise(2, name, "argument 1 must be a vec or a number, got " .. typename(a))
  end
end

M.add = binop("add", C.ls_ffi_vec_add, C.ls_ffi_vec_add_s, C.ls_ffi_vec_add_s)
M.sub = binop("sub", C.ls_ffi_vec_sub, C.ls_ffi_vec_sub_s, C.ls_ffi_vec_rsub_s)
M.mul = binop("mul", C.ls_ffi_vec_mul, C.ls_ffi_vec_mul_s, C.ls_ffi_vec_mul_s)
M.div = binop("div", C.ls_ffi_vec_div, C.ls_ffi_vec_div_s, C.ls_ffi_vec_rdiv_s)

-- v op s for a number s.
local function scalar_op(name, kernel)
  return function(v, s, out)
    need_vec(v, name, "argument 1")
    if type(s) ~= "number" then raise(2, name, "argument 2 must be a number, got " .. typename(s)) end
    local n = v.n
    out = out_vec(out, n, name)
    kernel(out.d, v.d, s, n)
    return out
  end
end

M.scale = scalar_op("scale", C.ls_ffi_vec_mul_s)
M.offset = scalar_op("offset", C.ls_ffi_vec_add_s)

local function unary(name, kernel)
  return function(v, out)
    need_vec(v, name, "argument 1")
    local n = v.n
    out = out_vec(out, n, name)
    kernel(out.d, v.d, n)
    return out
  end
end

M.neg = unary("neg", C.ls_ffi_vec_neg)
M.abs = unary("abs", C.ls_ffi_vec_abs)
M.sqrt = unary("sqrt", C.ls_ffi_vec_sqrt)
M.copy = unary("copy", C.ls_ffi_vec_copy)
M.cumsum = unary("cumsum", C.ls_ffi_vec_cumsum)

-- clip(v, lo, hi, out): lo or hi may be nil (no bound).
function M.clip(v, lo, hi, out)
  need_vec(v, "clip", "argument 1")
  if lo == nil then lo = -huge elseif type(lo) ~= "number" or lo ~= lo then
    raise(2, "clip", "lo must be a number or nil, got " .. tostring(lo))
  end
  if hi == nil then hi = huge elseif type(hi) ~= "number" or hi ~= hi then
    raise(2, "clip", "hi must be a number or nil, got " .. tostring(hi))
  end
  if lo > hi then raise(2, "clip", format("lo (%s) is greater than hi (%s)", tostring(lo), tostring(hi))) end
  local n = v.n
  out = out_vec(out, n, "clip")
  C.ls_ffi_vec_clip(out.d, v.d, n, lo, hi)
  return out
end

-- magnitude(x, y, z, out): sqrt(x^2 + y^2 + z^2) elementwise; z may be nil
-- for sqrt(x^2 + y^2).
function M.magnitude(x, y, z, out)
  need_vec(x, "magnitude", "x")
  need_vec(y, "magnitude", "y")
  local n = x.n
  if y.n ~= n then mismatch("magnitude", n, y.n) end
  local zd = nil
  if z ~= nil then
    need_vec(z, "magnitude", "z")
    if z.n ~= n then mismatch("magnitude", n, z.n) end
    zd = z.d
  end
  out = out_vec(out, n, "magnitude")
  C.ls_ffi_vec_magnitude(out.d, x.d, y.d, zd, n)
  return out
end

---------------------------------------------------------------------------
-- Shape-changing and windows
---------------------------------------------------------------------------

-- diff(v, out): v[i + 1] - v[i], #v - 1 elements (0 for an empty vec).
function M.diff(v, out)
  need_vec(v, "diff", "argument 1")
  local n = v.n
  local m = n > 0 and n - 1 or 0
  not_input(out, v, "diff")
  out = out_vec(out, m, "diff")
  C.ls_ffi_vec_diff(out.d, v.d, n)
  return out
end

-- resample(v, factor, out): means of consecutive blocks of `factor` samples,
-- ceil(#v / factor) elements; a trailing partial block is the mean of the
-- samples it has.
function M.resample(v, factor, out)
  need_vec(v, "resample", "argument 1")
  need_count(factor, "resample", "factor", 1)
  local n = v.n
  not_input(out, v, "resample")
  out = out_vec(out, floor((n + factor - 1) / factor), "resample")
  C.ls_ffi_vec_resample(out.d, v.d, n, factor)
  return out
end

-- rolling_*(v, window, out): #v elements; element i covers
-- v[max(1, i - window + 1) .. i], so the first window - 1 use a partial window.
local function rolling(name, kernel)
  return function(v, window, out)
    need_vec(v, name, "argument 1")
    need_count(window, name, "window", 1)
    local n = v.n
    not_input(out, v, name)
    out = out_vec(out, n, name)
    kernel(out.d, v.d, n, window)
    return out
  end
end

M.rolling_sum = rolling("rolling_sum", C.ls_ffi_vec_rolling_sum)
M.rolling_mean = rolling("rolling_mean", C.ls_ffi_vec_rolling_mean)
M.rolling_max = rolling("rolling_max", C.ls_ffi_vec_rolling_max)
M.rolling_min = rolling("rolling_min", C.ls_ffi_vec_rolling_min)

---------------------------------------------------------------------------
-- Conversions
---------------------------------------------------------------------------

local array_mt
do
  local ok, core = pcall(require, "luastream.core")
  if ok and type(core) == "table" then array_mt = core.array_mt end
end

-- totable(v): a plain Lua array of the elements (marked as a JSON array).
function M.totable(v)
  need_vec(v, "totable", "argument 1")
  local n, d = v.n, v.d
  local t = new_table(n, 0)
  for i = 1, n do t[i] = d[i - 1] end
  if array_mt then setmetatable(t, array_mt) end
  return t
end

local SHOWN = 10 -- elements tostring shows before "..."

local function num(x)
  if x ~= x then return "nan" end
  if x == huge then return "inf" end
  if x == -huge then return "-inf" end
  local s = format("%.15g", x)
  if tonumber(s) ~= x then s = format("%.16g", x) end
  if tonumber(s) ~= x then s = format("%.17g", x) end
  return s
end

local function show(v)
  local n, d = v.n, v.d
  local parts = {}
  for i = 1, (n > SHOWN and SHOWN - 2 or n) do parts[i] = num(d[i - 1]) end
  if n > SHOWN then parts[#parts + 1] = "..." end
  return format("vec(%d){%s}", n, concat(parts, ", "))
end

---------------------------------------------------------------------------
-- The metatype
---------------------------------------------------------------------------

-- v ^ p, element-wise (p a number), and p ^ v. v ^ 2 is one multiply kernel.
local function pow(a, b)
  if type(b) == "number" and istype(VEC, a) then
    if b == 2 then return M.mul(a, a) end
    local v = alloc(a.n)
    local d, s = v.d, a.d
    for i = 0, a.n - 1 do d[i] = s[i] ^ b end
    return v
  elseif type(a) == "number" and istype(VEC, b) then
    local v = alloc(b.n)
    local d, s = v.d, b.d
    for i = 0, b.n - 1 do d[i] = a ^ s[i] end
    return v
  end
  raise(2, "pow", "expected a vec and a number, got " .. typename(a) .. " and " .. typename(b))
end
M.pow = pow

local methods = {}
for _, name in ipairs({
  "sum", "mean", "var", "std", "min", "max", "argmin", "argmax", "norm", "dot",
  "add", "sub", "mul", "div", "scale", "offset", "neg", "abs", "sqrt", "copy",
  "cumsum", "clip", "diff", "resample", "rolling_sum", "rolling_mean", "rolling_max",
  "rolling_min", "totable",
}) do
  methods[name] = M[name]
end

local function bad_index(v, k)
  if k % 1 ~= 0 or k ~= k then
    error(format("ls.vec: index must be a whole number, got %s", tostring(k)), 3)
  end
  error(format("ls.vec: index %d out of range (length %d)", k, v.n), 3)
end

local mt = {
  __index = function(v, k)
    if type(k) == "number" then
      if k >= 1 and k <= v.n and k % 1 == 0 then return v.d[k - 1] end
      bad_index(v, k)
    end
    local m = methods[k]
    if m == nil then error("ls.vec: no method or field '" .. tostring(k) .. "'", 2) end
    return m
  end,
  __newindex = function(v, k, x)
    if type(k) ~= "number" then
      error("ls.vec: cannot set '" .. tostring(k) .. "': a vec holds numbers at 1..#v", 2)
    end
    if not (k >= 1 and k <= v.n and k % 1 == 0) then bad_index(v, k) end
    if type(x) ~= "number" then
      error("ls.vec: element " .. k .. " must be set to a number, got " .. typename(x), 2)
    end
    v.d[k - 1] = x
  end,
  __len = function(v) return v.n end,
  __tostring = show,
  __add = M.add,
  __sub = M.sub,
  __mul = M.mul,
  __div = M.div,
  __unm = function(v) return M.neg(v) end,
  __pow = pow,
}
ffi.metatype(VEC, mt)

---------------------------------------------------------------------------
-- Column expressions: ls.vec.magnitude(sdf.gX, sdf.gY, sdf.gZ) in a pipeline
-- declaration builds an expression that calls the function on every row
-- (luastream.expr marks its metatable with __ls_call). Methods need nothing:
-- sdf.g:max() compiles to a method call on the row's vec.
---------------------------------------------------------------------------

local getmetatable = getmetatable

local function expr_call(x)
  if type(x) ~= "table" then return nil end
  local m = getmetatable(x)
  return m and m.__ls_call
end

local function column_aware(name, fn)
  local public = "ls.vec." .. name
  return function(a, b, c, d, e)
    local call = expr_call(a) or expr_call(b) or expr_call(c) or expr_call(d)
    if call then
      local n = e ~= nil and 5 or d ~= nil and 4 or c ~= nil and 3 or b ~= nil and 2 or 1
      return call(fn, public, unpack({ a, b, c, d, e }, 1, n))
    end
    return fn(a, b, c, d, e)
  end
end

for name, fn in pairs(M) do
  if type(fn) == "function" and name ~= "is" then M[name] = column_aware(name, fn) end
end

registry[REG_KEY] = M
return M
