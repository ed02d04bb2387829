-- Keyed counting with per-key state.
--
-- Input {x = <int>} (JSON, string keys) on E2E_IN (default "in"); a stateful
-- update keeps the count n and the sum of x of each message key, and every
-- input row becomes {key, x, n, sum} on E2E_OUT (default "out"), keyed like
-- the input. The state store is "counts": its changelog topic is
-- <app name>__counts__changelog. With E2E_RUN set, every output also
-- carries that label as "run" (which process wrote it).
local ls = require("luastream")

local app = ls.app{
  name = "state-count", -- tests pass --name
  commit_interval = tonumber(os.getenv("E2E_COMMIT_INTERVAL") or "1"),
}

local input = app:topic(os.getenv("E2E_IN") or "in", { key = "string", value = "json" })
local output = app:topic(os.getenv("E2E_OUT") or "out", { key = "string", value = "json" })

local run = os.getenv("E2E_RUN")

local sdf = app:dataframe(input)
sdf = sdf:update(function(row, state, msg)
  local n = state:get("n", 0) + 1 -- E2E:count
  local sum = state:get("sum", 0) + row.x
  state:set("n", n)
  state:set("sum", sum)
  row.key, row.n, row.sum, row.run = msg.key, n, sum, run
end, { stateful = true, store = "counts" })
sdf = sdf[run and { "key", "x", "n", "sum", "run" } or { "key", "x", "n", "sum" }]
sdf:to_topic(output)
