-- examples/telemetry.lua written with plain Lua tables and loops instead of
-- ls.vec (arrays stay Lua tables): the baseline of tests/bench/telemetry_bench.py.
-- Same topics, same outputs (up to rounding in the last bits of the rolling mean).
local ls = require("luastream")

local RPM_LIMIT = 7000
local HARD_BRAKE = -8.0
local SMOOTH = 15

local app = ls.app{ name = "telemetry-tables" }
local raw = app:topic("car-telemetry", { value = "json", key = "string" })
local stats = app:topic("car-stats", { value = "json", key = "string" })
local alerts = app:topic("car-alerts", { value = "json", key = "string" })

local sqrt, min, huge, pairs = math.sqrt, math.min, math.huge, pairs
local new_table = require("table.new")

local function summary(t)
  local n, s, mx, sq = #t, 0, -huge, 0
  for i = 1, n do
    local x = t[i]
    s = s + x
    if x > mx then mx = x end
    sq = sq + x * x
  end
  return { mean = s / n, max = mx, rms = sqrt(sq / n) }
end

-- diff, scale to m/s^2, rolling mean over SMOOTH samples (partial at the start)
local function accel(speed, rate)
  local n, k = #speed - 1, rate / 3.6
  local d, out = new_table(n, 0), new_table(n, 0)
  for i = 1, n do d[i] = (speed[i + 1] - speed[i]) * k end
  local sum = 0
  for i = 1, n do
    sum = sum + d[i]
    if i > SMOOTH then sum = sum - d[i - SMOOTH] end
    out[i] = sum / min(i, SMOOTH)
  end
  return out
end

local function minimum(t)
  local m = huge
  for i = 1, #t do if t[i] < m then m = t[i] end end
  return m
end

local sdf = app:dataframe(raw)
sdf = sdf:update(function(row)
  local a = accel(row.channels.speed, row.rate_hz)
  local s = {}
  for name, t in pairs(row.channels) do s[name] = summary(t) end
  local sa = summary(a)
  sa.min = minimum(a)
  s.accel = sa
  row.summary = s
end)
sdf[{ "car", "t0", "summary" }]:to_topic(stats)
local hot = sdf[ls.any(sdf.summary.rpm.max:gt(RPM_LIMIT), sdf.summary.accel.min:lt(HARD_BRAKE))]
hot.alert = function(row)
  return row.summary.rpm.max > RPM_LIMIT and "over-rev" or "hard-braking"
end
hot[{ "car", "t0", "alert" }]:to_topic(alerts)
