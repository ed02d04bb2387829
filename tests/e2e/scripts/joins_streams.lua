-- Stream-stream joins (tests/e2e/test_joins.py): clicks {ts, c} keyed by user
-- on "clicks" join views {ts, page} on "views" two ways:
--   "asof-out":     each click with the user's latest view at or before it (left join)
--   "interval-out": each click with every view within [t - 1000, t + 500] (inner)
local ls = require("luastream")
local app = ls.app{ name = "joins-e2e", commit_interval = 0.5 }
local clicks = app:topic("clicks", { key = "string", value = "json", timestamp = "ts" })
local views = app:topic("views", { key = "string", value = "json", timestamp = "ts" })
local asof_out = app:topic("asof-out", { key = "string", value = "json" })
local interval_out = app:topic("interval-out", { key = "string", value = "json" })

local v = app:dataframe(views)
local c = app:dataframe(clicks)
c:join_asof(v, { how = "left", grace = 100000 }):to_topic(asof_out)
c:join_interval(v, { before = 1000, after = 500, grace = 100000 }):to_topic(interval_out)
