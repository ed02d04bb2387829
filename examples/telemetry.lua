-- Car telemetry: each message carries the last second of samples of every
-- channel, {car, t0, rate_hz, channels = {speed = [...], rpm = [...], ...}}
-- (1500 samples per channel at 1.5 kHz). With arrays = "vec" the JSON arrays
-- arrive as ls.vec values, so the math runs in C kernels, not Lua loops.
--
-- The pipeline derives a channel (longitudinal acceleration, from speed),
-- sends a summary of every channel (mean, max, RMS) to `car-stats`, and an
-- alert to `car-alerts` when a car over-revs or brakes hard.
--
--   luastream run examples/telemetry.lua                      (dev broker + simulated cars)
--   luastream run examples/telemetry.lua --broker kafka:9092  (real data)
local ls = require("luastream")

local RPM_LIMIT = 7000    -- over-rev above this, in rpm
local HARD_BRAKE = -8.0   -- hard braking below this deceleration, in m/s^2 (about 0.8 g)
local SMOOTH = 15         -- samples averaged for the acceleration (10 ms at 1.5 kHz)

local app = ls.app{ name = "telemetry" }

local raw = app:topic("car-telemetry", { value = "json", key = "string", arrays = "vec" })
local stats = app:topic("car-stats", { value = "json", key = "string" })
local alerts = app:topic("car-alerts", { value = "json", key = "string" })

-- With no broker configured there is no real data: simulate five cars.
if app:is_dev_broker() then
  require("cars_sim").attach(app, raw, { cars = 5, every = 1000 })
end

local sqrt, pairs = math.sqrt, pairs

local function summary(v)
  return { mean = v:mean(), max = v:max(), rms = v:norm() / sqrt(#v) }
end

local sdf = app:dataframe(raw)

-- A derived channel: speed (km/h) -> m/s, differentiated per sample, in m/s^2, smoothed.
sdf.accel = sdf.channels.speed:diff():scale(sdf.rate_hz / 3.6):rolling_mean(SMOOTH)

sdf = sdf:update(function(row)
  local s = {}
  for name, v in pairs(row.channels) do s[name] = summary(v) end
  local a = summary(row.accel)
  a.min = row.accel:min()
  s.accel = a
  row.summary = s
end)

sdf[{ "car", "t0", "summary" }]:to_topic(stats)

local hot = sdf[ls.any(sdf.summary.rpm.max:gt(RPM_LIMIT), sdf.summary.accel.min:lt(HARD_BRAKE))]
hot.alert = function(row)
  return row.summary.rpm.max > RPM_LIMIT and "over-rev" or "hard-braking"
end
hot = hot[{ "car", "t0", "alert" }]
hot:print()
hot:to_topic(alerts)
