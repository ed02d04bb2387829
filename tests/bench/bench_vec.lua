-- bench_vec.lua - the ls.vec kernels (runtime/vec.c through lua/luastream/vec.lua)
-- against the same computation written as a LuaJIT loop over plain Lua tables.
--
--   build/luastream lua tests/bench/bench_vec.lua [samples] [rounds]
--
-- For each kernel, on `samples` doubles (default 1500): warm up, then time
-- batches of calls, sized so that a batch takes >= 20 ms, `rounds` times
-- (default 7), and keep the best batch. Kernels that return a vec use their
-- out-parameter form and the Lua loops write into a preallocated table, so
-- neither side allocates. Prints ns per call of each side and their ratio;
-- a ratio under 4 is flagged. Both sides get the same random data (no NaN).
local ffi = require("ffi")
local vec = require("luastream").vec

local N = tonumber(arg and arg[1]) or 1500
local ROUNDS = tonumber(arg and arg[2]) or 7
local TARGET = 4
local WINDOW, FACTOR = 10, 4

-- Declared unless the Lua state has the type already; a declaration error is
-- raised, and a type of that name with another layout than struct timespec's
-- on Linux is refused.
if not pcall(ffi.typeof, "ls_bench_timespec") then
  ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } ls_bench_timespec;
int clock_gettime(int clk, ls_bench_timespec *tp);
]])
end
assert(ffi.sizeof("ls_bench_timespec") == 2 * ffi.sizeof("long") and
  ffi.offsetof("ls_bench_timespec", "tv_nsec") == ffi.sizeof("long"),
  "bench_vec.lua: ls_bench_timespec is declared with another layout than struct timespec")
local ts = ffi.new("ls_bench_timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

---------------------------------------------------------------------------
-- Data
---------------------------------------------------------------------------

math.randomseed(1)
local function random_table(n)
  local t = {}
  for i = 1, n do t[i] = math.random() * 20 - 10 end
  return t
end

local ta, tb, tc = random_table(N), random_table(N), random_table(N)
local tout = random_table(N)
local va, vb, vc = vec.from(ta), vec.from(tb), vec.from(tc)
local vout = vec.new(N)
local vout_diff = vec.new(N - 1)
local nres = math.ceil(N / FACTOR)
local vout_res = vec.new(nres)
local sink = 0

---------------------------------------------------------------------------
-- The Lua-table versions (what a user would write without ls.vec)
---------------------------------------------------------------------------

local sqrt, abs = math.sqrt, math.abs
local L = {}

function L.sum(t)
  local s = 0
  for i = 1, #t do s = s + t[i] end
  return s
end

function L.mean(t) return L.sum(t) / #t end

function L.var(t)
  local n = #t
  local m = L.sum(t) / n
  local s = 0
  for i = 1, n do
    local d = t[i] - m
    s = s + d * d
  end
  return s / n
end

function L.std(t) return sqrt(L.var(t)) end

function L.min(t)
  local m = t[1]
  for i = 2, #t do
    local x = t[i]
    if x < m then m = x end
  end
  return m
end

function L.max(t)
  local m = t[1]
  for i = 2, #t do
    local x = t[i]
    if x > m then m = x end
  end
  return m
end

function L.argmin(t)
  local m, at = t[1], 1
  for i = 2, #t do
    local x = t[i]
    if x < m then m, at = x, i end
  end
  return at
end

function L.argmax(t)
  local m, at = t[1], 1
  for i = 2, #t do
    local x = t[i]
    if x > m then m, at = x, i end
  end
  return at
end

function L.dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

function L.norm(t) return sqrt(L.dot(t, t)) end

function L.add(a, b, o) for i = 1, #a do o[i] = a[i] + b[i] end end
function L.sub(a, b, o) for i = 1, #a do o[i] = a[i] - b[i] end end
function L.mul(a, b, o) for i = 1, #a do o[i] = a[i] * b[i] end end
function L.div(a, b, o) for i = 1, #a do o[i] = a[i] / b[i] end end
function L.scale(a, s, o) for i = 1, #a do o[i] = a[i] * s end end
function L.offset(a, s, o) for i = 1, #a do o[i] = a[i] + s end end
function L.abs(a, o) for i = 1, #a do o[i] = abs(a[i]) end end
function L.sqrt(a, o) for i = 1, #a do o[i] = sqrt(a[i]) end end

function L.diff(a, o)
  for i = 1, #a - 1 do o[i] = a[i + 1] - a[i] end
end

function L.cumsum(a, o)
  local s = 0
  for i = 1, #a do
    s = s + a[i]
    o[i] = s
  end
end

function L.clip(a, lo, hi, o)
  for i = 1, #a do
    local x = a[i]
    if x < lo then x = lo elseif x > hi then x = hi end
    o[i] = x
  end
end

-- Running sum: add the new sample, subtract the one leaving the window.
function L.rolling_mean(a, w, o)
  local s = 0
  for i = 1, #a do
    s = s + a[i]
    if i > w then
      s = s - a[i - w]
      o[i] = s / w
    else
      o[i] = s / i
    end
  end
end

-- Monotonic deque of indexes (values decreasing): O(n).
local dq = {}
function L.rolling_max(a, w, o)
  local head, tail = 1, 0
  for i = 1, #a do
    local x = a[i]
    while tail >= head and a[dq[tail]] <= x do tail = tail - 1 end
    tail = tail + 1
    dq[tail] = i
    if dq[head] <= i - w then head = head + 1 end
    o[i] = a[dq[head]]
  end
end

function L.resample(a, f, o)
  local n = #a
  local j = 0
  for b = 1, n, f do
    local s, c = 0, 0
    for i = b, math.min(b + f - 1, n) do
      s = s + a[i]
      c = c + 1
    end
    j = j + 1
    o[j] = s / c
  end
end

function L.magnitude(x, y, z, o)
  for i = 1, #x do
    local a, b, c = x[i], y[i], z[i]
    o[i] = sqrt(a * a + b * b + c * c)
  end
end

---------------------------------------------------------------------------
-- The cases: name, one call through ls.vec, one call of the Lua loop
---------------------------------------------------------------------------

local ta_pos = {}
for i = 1, N do ta_pos[i] = abs(ta[i]) end
local va_pos = vec.from(ta_pos)

local cases = {
  { "sum", function() sink = sink + va:sum() end, function() sink = sink + L.sum(ta) end },
  { "mean", function() sink = sink + va:mean() end, function() sink = sink + L.mean(ta) end },
  { "var", function() sink = sink + va:var() end, function() sink = sink + L.var(ta) end },
  { "std", function() sink = sink + va:std() end, function() sink = sink + L.std(ta) end },
  { "min", function() sink = sink + va:min() end, function() sink = sink + L.min(ta) end },
  { "max", function() sink = sink + va:max() end, function() sink = sink + L.max(ta) end },
  { "argmin", function() sink = sink + va:argmin() end, function() sink = sink + L.argmin(ta) end },
  { "argmax", function() sink = sink + va:argmax() end, function() sink = sink + L.argmax(ta) end },
  { "norm", function() sink = sink + va:norm() end, function() sink = sink + L.norm(ta) end },
  { "dot", function() sink = sink + va:dot(vb) end, function() sink = sink + L.dot(ta, tb) end },
  { "add", function() va:add(vb, vout) end, function() L.add(ta, tb, tout) end },
  { "sub", function() va:sub(vb, vout) end, function() L.sub(ta, tb, tout) end },
  { "mul", function() va:mul(vb, vout) end, function() L.mul(ta, tb, tout) end },
  { "div", function() va:div(vb, vout) end, function() L.div(ta, tb, tout) end },
  { "scale", function() va:scale(1.5, vout) end, function() L.scale(ta, 1.5, tout) end },
  { "offset", function() va:offset(1.5, vout) end, function() L.offset(ta, 1.5, tout) end },
  { "abs", function() va:abs(vout) end, function() L.abs(ta, tout) end },
  { "sqrt", function() va_pos:sqrt(vout) end, function() L.sqrt(ta_pos, tout) end },
  { "diff", function() va:diff(vout_diff) end, function() L.diff(ta, tout) end },
  { "cumsum", function() va:cumsum(vout) end, function() L.cumsum(ta, tout) end },
  { "clip", function() va:clip(-5, 5, vout) end, function() L.clip(ta, -5, 5, tout) end },
  { "rolling_mean(" .. WINDOW .. ")", function() va:rolling_mean(WINDOW, vout) end,
    function() L.rolling_mean(ta, WINDOW, tout) end },
  { "rolling_max(" .. WINDOW .. ")", function() va:rolling_max(WINDOW, vout) end,
    function() L.rolling_max(ta, WINDOW, tout) end },
  { "rolling_mean(100)", function() va:rolling_mean(100, vout) end,
    function() L.rolling_mean(ta, 100, tout) end },
  { "rolling_max(100)", function() va:rolling_max(100, vout) end,
    function() L.rolling_max(ta, 100, tout) end },
  { "resample(" .. FACTOR .. ")", function() va:resample(FACTOR, vout_res) end,
    function() L.resample(ta, FACTOR, tout) end },
  { "magnitude", function() vec.magnitude(va, vb, vc, vout) end,
    function() L.magnitude(ta, tb, tc, tout) end },
}

---------------------------------------------------------------------------
-- Timing
---------------------------------------------------------------------------

-- A fresh loop (its own prototype, so its own trace) for every timed function.
local RUNNER = "local f, iters = ... for _ = 1, iters do f() end"

local function time_batch(run, f, iters)
  local t0 = now_ns()
  run(f, iters)
  return now_ns() - t0
end

local function best_ns(f)
  local run = assert(loadstring(RUNNER, "=bench"))
  run(f, 300) -- warm up: compile the traces
  local iters = 16
  while time_batch(run, f, iters) < 20e6 do iters = iters * 2 end
  local best = math.huge
  for _ = 1, ROUNDS do
    local t = time_batch(run, f, iters) / iters
    if t < best then best = t end
  end
  return best
end

-- Same results on both sides before timing anything (loose tolerance:
-- the kernels sum in a different order).
local function check()
  local function close(a, b) return math.abs(a - b) <= 1e-9 * (1 + math.abs(b)) end
  assert(close(va:sum(), L.sum(ta)) and close(va:var(), L.var(ta)) and va:argmin() == L.argmin(ta))
  va:rolling_max(WINDOW, vout)
  L.rolling_max(ta, WINDOW, tout)
  for i = 1, N do assert(vout[i] == tout[i], "rolling_max differs at " .. i) end
  va:rolling_mean(WINDOW, vout)
  L.rolling_mean(ta, WINDOW, tout)
  for i = 1, N do assert(close(vout[i], tout[i]), "rolling_mean differs at " .. i) end
  va:resample(FACTOR, vout_res)
  L.resample(ta, FACTOR, tout)
  for i = 1, nres do assert(vout_res[i] == tout[i], "resample differs at " .. i) end
end

check()
print(string.format("ls.vec kernels vs LuaJIT loops over Lua tables: %d samples, best of %d rounds (%s)",
  N, ROUNDS, jit and jit.version or "?"))
print(string.format("%-18s %14s %20s %8s", "kernel", "ns/call(vec)", "ns/call(lua table)", "ratio"))
local below = 0
for _, c in ipairs(cases) do
  local tv = best_ns(c[2])
  local tl = best_ns(c[3])
  local ratio = tl / tv
  local flag = ratio < TARGET and ("  < " .. TARGET .. "x") or ""
  if ratio < TARGET then below = below + 1 end
  print(string.format("%-18s %14.1f %20.1f %8.2f%s", c[1], tv, tl, ratio, flag))
end
print(string.format("%d of %d kernels below the %dx target", below, #cases, TARGET))
if sink ~= sink then print("(sink is NaN)") end
