-- A hopping window whose step is not smaller than its size: refused at load (exit 2).
local ls = require("luastream")
local app = ls.app{ name = "win-bad" }
local sdf = app:dataframe(app:topic("in", { key = "string" }))
sdf:hopping_window(1000, 1000):count():final():to_topic(app:topic("out")) -- E2E:bad
