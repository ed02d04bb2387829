-- One state store serving two inputs: every record of "a" or "b", keyed
-- k<...>, counts into the same per-key count n, written to "out" as
-- {src, x, n}. The store is restored once, and its changelog records carry
-- the offsets of both inputs.
local ls = require("luastream")

local app = ls.app{ name = "shared", commit_interval = 0.5 }
local out = app:topic("out", { key = "string", value = "json" })
for _, src in ipairs({ "a", "b" }) do
  local sdf = app:dataframe(app:topic(src, { key = "string", value = "json" }))
  sdf = sdf:update(function(row, state)
    local n = state:get("n", 0) + 1
    state:set("n", n)
    row.src, row.n = src, n
  end, { stateful = true, store = "both" })
  sdf:to_topic(out)
end
