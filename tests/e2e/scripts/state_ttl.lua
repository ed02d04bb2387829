-- Per-key counts that expire: each input {x} keyed k<...> counts how many
-- inputs of its key arrived within E2E_TTL ms (default 1000) of the previous
-- one; the count is set with a ttl, so a key quiet for longer starts again at 1.
local ls = require("luastream")

local app = ls.app{ name = "state-ttl", commit_interval = 0.3 }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })
local ttl = tonumber(os.getenv("E2E_TTL") or "1000")

local sdf = app:dataframe(input)
sdf = sdf:update(function(row, state)
  local n = state:get("n", 0) + 1
  state:set("n", n, { ttl = ttl })
  row.n = n
end, { stateful = true, store = "recent" })
sdf:to_topic(output)
