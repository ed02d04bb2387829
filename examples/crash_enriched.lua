-- Crash alerts worth acting on: the crash rule of crash_detection.lua, each
-- alert joined with the phone's last GPS fix before the crash (an as-of join)
-- and its owner's emergency contact (a table of owners keyed by phone).
--
--   phone-data     {device, ts, gX, gY, gZ}      accelerometer readings, keyed by phone
--   gps-fixes      {device, ts, lat, lon}        GPS fixes, keyed by phone
--   phone-owners   {owner, contact}              the latest per phone (null: unregistered)
--   crash-alerts   {device, ts, gTotal, dG, lat, lon, fix_ts, owner, contact}
--
--   luastream run examples/crash_enriched.lua                      (dev broker + simulated phones)
--   luastream run examples/crash_enriched.lua --broker kafka:9092  (real data)
--
-- The three input topics must have the same partition count and be keyed by
-- phone (docs/joins.md, "Co-partitioning").
local ls = require("luastream")

local CRASH_DG = 3.0        -- alert when gTotal changes by more than this, in g
local FIX_MAX_AGE = 120000  -- a fix older than 2 minutes is not where the phone is

local app = ls.app{ name = "crash-enriched", commit_interval = 2.0 }

local phones = app:topic("phone-data", { value = "json", key = "string", timestamp = "ts" })
local fixes = app:topic("gps-fixes", { value = "json", key = "string", timestamp = "ts" })
local owners = app:table(app:topic("phone-owners", { value = "json", key = "string" }))
local alerts = app:topic("crash-alerts", { value = "json", key = "string" })

if app:is_dev_broker() then
  require("phones_sim").attach(app, phones, { phones = 20, every = 100, crash_rate = 0.005 })
  require("gps_sim").attach(app, fixes, owners.topic, { phones = 20, every = 1000 })
end

local gps = app:dataframe(fixes)
gps = gps:apply(function(fix) return { lat = fix.lat, lon = fix.lon, fix_ts = fix.ts } end)

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf = sdf:update(function(row, state)
  local prev = state:get("gTotal", row.gTotal)
  row.dG = row.gTotal - prev
  state:set("gTotal", row.gTotal)
end, { stateful = true })
sdf = sdf[ls.abs(sdf.dG):gt(CRASH_DG)]
sdf = sdf[{ "device", "ts", "gTotal", "dG" }]
sdf = sdf:join_asof(gps, { how = "left", tolerance = FIX_MAX_AGE })
sdf = sdf:join_table(owners, { how = "left" })
sdf:print()
sdf:to_topic(alerts)
