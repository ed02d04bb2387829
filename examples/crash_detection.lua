-- Crash detection: phones send accelerometer readings {device, ts, gX, gY, gZ}
-- (in g) to `phone-data`. The pipeline computes the total acceleration gTotal,
-- keeps the previous gTotal of each phone as state, and sends an alert to
-- `crash-alerts` when it changes by more than CRASH_DG between two readings:
-- a fall or a crash.
--
--   luastream run examples/crash_detection.lua                      (dev broker + simulated phones)
--   luastream run examples/crash_detection.lua --broker kafka:9092  (real data)
local ls = require("luastream")

local CRASH_DG = 3.0 -- alert when gTotal changes by more than this, in g

local app = ls.app{
  name = "crash-detector",
  commit_interval = 2.0,
}

local phones = app:topic("phone-data", { value = "json", key = "string", timestamp = "ts" })
local alerts = app:topic("crash-alerts", { value = "json", key = "string" })

-- With no broker configured there is no real data: simulate 20 phones.
if app:is_dev_broker() then
  require("phones_sim").attach(app, phones, { phones = 20, every = 100, crash_rate = 0.005 })
end

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf = sdf:update(function(row, state)                 -- state is scoped to the phone (the key)
  local prev = state:get("gTotal", row.gTotal)
  row.dG = row.gTotal - prev
  state:set("gTotal", row.gTotal)
end, { stateful = true })
sdf = sdf[ls.abs(sdf.dG):gt(CRASH_DG)]
sdf = sdf[{ "device", "ts", "gTotal", "dG" }]
sdf:print()
sdf:to_topic(alerts)
