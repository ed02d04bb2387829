-- group_by end to end (tests/e2e/test_group_by.py).
--
-- Input {region = "...", x = int} on "in" (keys: the device); the rows are
-- re-keyed by region through the app's group_by topic and counted per region:
-- {region, x, n, sum} on "out", keyed by the region, with the region's running
-- count and sum, so the last output of a region shows what its state held.
-- GB_PARTITIONS (env): the group_by topic's partition count, else the input's.
local ls = require("luastream")

local app = ls.app{ name = "gb-e2e", commit_interval = 0.5 }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "json", value = "json" })

local parts = tonumber(os.getenv("GB_PARTITIONS") or "")
local sdf = app:dataframe(input):group_by("region", { partitions = parts })
sdf = sdf:update(function(row, state)
  local n, sum = state:get("n", 0) + 1, state:get("sum", 0) + row.x
  state:set("n", n)
  state:set("sum", sum)
  row.n, row.sum = n, sum
end, { stateful = true })
sdf:to_topic(output)
