-- Crash detection with a trained model: phones send accelerometer readings
-- {device, ts, gX, gY, gZ} (in g) to `phone-data`; a classifier trained in
-- batch (examples/crash_model/train.py, XGBoost) scores every reading inside
-- the pipeline, and a reading whose crash probability is above P_CRASH goes to
-- `crash-alerts`. No model server: the model is read from its file when the
-- script loads, and with --watch a retrained model dropped in place is picked
-- up like an edit of the script.
--
--   luastream run examples/crash_ml.lua                       (dev broker + simulated phones)
--   luastream run examples/crash_ml.lua --watch               (reloads when crash.json changes)
--   luastream run examples/crash_ml.lua --broker kafka:9092   (real data)
local ls = require("luastream")

local P_CRASH = 0.5 -- alert above this probability

local app = ls.app{
  name = "crash-ml",
  commit_interval = 2.0,
}

local phones = app:topic("phone-data", { value = "json", key = "string", timestamp = "ts" })
local alerts = app:topic("crash-alerts", { value = "json", key = "string" })

-- With no broker configured there is no real data: simulate 20 phones.
if app:is_dev_broker() then
  require("phones_sim").attach(app, phones, { phones = 20, every = 100, crash_rate = 0.005 })
end

-- The path is relative to this script's directory.
local crash = ls.model.load("crash_model/crash.json")

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf.p_crash = crash:predict{ sdf.gX, sdf.gY, sdf.gZ, sdf.gTotal }
sdf = sdf[sdf.p_crash:gt(P_CRASH)]
sdf = sdf[{ "device", "ts", "gTotal", "p_crash" }]
sdf:print()
sdf:to_topic(alerts)
