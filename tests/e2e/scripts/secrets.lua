-- Kafka properties read at start (docs/deploy.md, "Secrets"): the property
-- named by E2E_PROP (default sasl.password) from the environment variable
-- E2E_SECRET, ssl.key.password from the file E2E_SECRET_FILE. Keyed counting
-- as in state_count.lua (store "counts"), so /state has something to show.
local ls = require("luastream")

local app = ls.app{ name = "secrets", commit_interval = 0.3, kafka = {
  ["sasl.username"] = "luastream",
  [os.getenv("E2E_PROP") or "sasl.password"] = { env = "E2E_SECRET" },
  ["ssl.key.password"] = { file = os.getenv("E2E_SECRET_FILE") or "/nonexistent" },
} }

local sdf = app:dataframe(app:topic("in", { key = "string", value = "json" }))
sdf = sdf:update(function(row, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  row.n = n
end, { stateful = true, store = "counts" })
sdf:to_topic(app:topic("out", { key = "string", value = "json" }))
