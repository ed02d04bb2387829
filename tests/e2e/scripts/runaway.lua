-- A counting pipeline whose second step can be made to run away.
--
-- Input {x = <int>, spin = true|nil, grow = true|nil} (JSON, string keys) on
-- "in". The first step counts the messages of each key (state n); the second
-- loops forever on a row with spin (no allocation: a compiled trace where no
-- hook fires) and allocates without bound on a row with grow; every other
-- row becomes {x, n} on "out", keyed like the input. Tests make it well by
-- rewriting the line marked E2E:bad.
local ls = require("luastream")

local app = ls.app{
  name = "runaway", -- tests pass --name
  commit_interval = tonumber(os.getenv("E2E_COMMIT_INTERVAL") or "0.5"),
}

local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf = sdf:update(function(row, state)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  row.n = n
end, { stateful = true })
sdf = sdf:update(function(row) -- E2E:runaway-step
  local bad = true -- E2E:bad
  if bad and row.spin then
    local i = 0
    while true do i = i + 1 end
  elseif bad and row.grow then
    local t = {}
    while #t >= 0 do t[#t + 1] = { row.x, row.x } end
  end
end)
sdf = sdf[{ "x", "n" }]
sdf:to_topic(output)
