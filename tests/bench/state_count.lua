-- The many-keys pipeline of the state benchmark (tests/bench/state.sh): counts the
-- messages of every message key, one state entry per key, and writes each message
-- out with its key's count so far.
--
--   luastream run tests/bench/state_count.lua --broker B --count N [--name APP]
--
-- Topics: LS_BENCH_INPUT (default count-in, string values) and LS_BENCH_OUTPUT
-- (default count-out). With LS_BENCH_GAPS=MS set, every pause of at least MS
-- milliseconds between two consecutive rows is logged on stderr as
-- "gap <start> <end> <ms>" (wall-clock times, seconds since the epoch): the main
-- loop runs checkpoints between batches, so a checkpoint shows up as such a gap.
-- With LS_BENCH_LAST=N also set, the time of the N-th row is logged as "last <t>".
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "count-in"
local output = os.getenv("LS_BENCH_OUTPUT") or "count-out"
local gap_ms = tonumber(os.getenv("LS_BENCH_GAPS") or "")
local last_row = tonumber(os.getenv("LS_BENCH_LAST") or "")

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-state-count" }

local inp = app:topic(input, { value = "string", key = "string" })
local out = app:topic(output, { value = "json", key = "string" })

local now
if gap_ms then
  local ffi = require("ffi")
  -- Declared unless the Lua state has the type already; a declaration error
  -- is raised, and a type of that name with another layout than struct
  -- timespec's on Linux is refused.
  if not pcall(ffi.typeof, "ls_bench_timespec") then
    ffi.cdef([[
      typedef struct { long tv_sec; long tv_nsec; } ls_bench_timespec;
      int clock_gettime(int clk, ls_bench_timespec *ts);
    ]])
  end
  assert(ffi.sizeof("ls_bench_timespec") == 2 * ffi.sizeof("long") and
    ffi.offsetof("ls_bench_timespec", "tv_nsec") == ffi.sizeof("long"),
    "state_count.lua: ls_bench_timespec is declared with another layout than struct timespec")
  local ts = ffi.new("ls_bench_timespec")
  now = function()
    ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME, comparable with the log's times
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
end
local last, rows = nil, 0

local sdf = app:dataframe(inp)
sdf = sdf:apply(function(value, state)
  if now then
    local t = now()
    if last and (t - last) * 1000 >= gap_ms then
      io.stderr:write(string.format("gap %.6f %.6f %.3f\n", last, t, (t - last) * 1000))
    end
    last = t
    rows = rows + 1
    if rows == last_row then io.stderr:write(string.format("last %.6f\n", t)) end
  end
  local n = state:get("n", 0) + 1
  state:set("n", n)
  return { n = n }
end, { stateful = true })
sdf:to_topic(out)
