-- One output per input, tagged with where the input came from:
-- {id, partition, offset, run, key, nh} on E2E_OUT, keyed like the input
-- (key = msg.key, nh = the number of msg.headers).
--
-- Environment: E2E_IN, E2E_OUT, E2E_RUN (a label copied into every output),
-- E2E_COMMIT_INTERVAL (seconds, default 1).
local ls = require("luastream")

local app = ls.app{
  name = "passthrough-e2e", -- tests pass --name
  commit_interval = tonumber(os.getenv("E2E_COMMIT_INTERVAL") or "1"),
}

local input = app:topic(os.getenv("E2E_IN") or "pt-in", { key = "string", value = "json" })
local output = app:topic(os.getenv("E2E_OUT") or "pt-out", { key = "string", value = "json" })
local run = os.getenv("E2E_RUN") or "1"

app:dataframe(input)
  :apply(function(row, msg)
    return { id = row.id, partition = msg.partition, offset = msg.offset, run = run,
             key = msg.key, nh = #msg.headers }
  end)
  :to_topic(output)
