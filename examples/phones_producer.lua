-- Simulated phones writing to phone-data on any broker: the data source for
-- the crash detector when it runs against a real Kafka (docker/compose.yaml),
-- where examples/crash_detection.lua does not start its own simulator.
--   luastream run examples/phones_producer.lua --broker kafka:9092
local ls = require("luastream")

local app = ls.app{ name = "phones-producer" }
local phones = app:topic("phone-data", { value = "json", key = "string" })
require("phones_sim").attach(app, phones, { phones = 20, every = 100, crash_rate = 0.005 })
