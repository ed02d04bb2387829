-- Crash detection: phones send accelerometer readings {device, ts, gX, gY, gZ}
-- (in g) to `phone-data`; a reading whose total acceleration is far above
-- gravity is a fall or a crash, and becomes an alert on `crash-alerts`.
--
--   luastream run examples/crash_detection.lua                      (dev broker + simulated phones)
--   luastream run examples/crash_detection.lua --broker kafka:9092  (real data)
local ls = require("luastream")

local CRASH_G = 3.0 -- alert above this total acceleration, in g

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
sdf = sdf[sdf.gTotal:gt(CRASH_G)]
sdf = sdf[{ "device", "ts", "gTotal" }]
sdf:print()
sdf:to_topic(alerts)
