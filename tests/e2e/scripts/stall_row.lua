-- A pipeline that can be made to stop turning its loop for a while.
--
-- Input {x = <int>, stall = <seconds>|nil} (JSON) on "in"; a row with stall
-- keeps the row function busy that long (a CPU loop, the way a runaway
-- computation holds the loop), then every row goes on unchanged to "out".
local ls = require("luastream")

local app = ls.app{ name = "stall-row", commit_interval = 1 }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf = sdf:update(function(row)
  if row.stall then
    local deadline = ls.now_ms() + row.stall * 1000
    while ls.now_ms() < deadline do end
  end
end)
sdf:to_topic(output)
