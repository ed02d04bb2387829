-- Three joins in one pipeline, for the SIGKILL test tests/e2e/test_join_crash.py.
-- Every topic is keyed by device (string keys, JSON values):
--   "clicks"    {id, ts, x}       the stream
--   "profiles"  {name, tier}      a table (a null value deletes the device)
--   "fixes"     {ts, fid, lat}    the as-of side: the latest fix at or before the
--                                 click, at most 4000 ms before it; fixes more than
--                                 20000 ms behind a device's newest are dropped
--   "views"     {ts, vid}         the interval side: every view within
--                                 [t - 1500, t + 1000] of the click; a click with
--                                 none goes out alone once the device's watermark
--                                 passes t + 1000 + 3600000
-- Each click, with its profile's and fix's columns (left joins), becomes one
-- record on "out" per view of its interval, or one without a view.
-- E2E_COMMIT_INTERVAL sets commit_interval (default 0.5 s).
local ls = require("luastream")

local app = ls.app{
  name = "join-crash",
  commit_interval = tonumber(os.getenv("E2E_COMMIT_INTERVAL") or "0.5"),
}

local clicks = app:topic("clicks", { key = "string", value = "json", timestamp = "ts" })
local profiles = app:table(app:topic("profiles", { key = "string", value = "json" }))
local fixes = app:topic("fixes", { key = "string", value = "json", timestamp = "ts" })
local views = app:topic("views", { key = "string", value = "json", timestamp = "ts" })
local out = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(clicks)
sdf = sdf:join_table(profiles, { how = "left" })
sdf = sdf:join_asof(app:dataframe(fixes), { how = "left", tolerance = 4000, grace = 20000 })
sdf = sdf:join_interval(app:dataframe(views), { before = 1500, after = 1000, grace = 3600000, how = "left" })
sdf:to_topic(out)
