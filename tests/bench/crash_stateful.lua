-- The stateful variant of crash_stateless.lua: the crash pipeline of the README,
-- keeping the previous gTotal per phone as state and emitting every row with
-- its change dG. Compared side by side with the stateless script by
-- bench_pipeline (in process) to price the state path.
--
--   build/bench_pipeline --script tests/bench/crash_stateful.lua
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "phone-data"
local output = os.getenv("LS_BENCH_OUTPUT") or "out-ls"

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-crash-stateful" }

local phones = app:topic(input, { value = "json", key = "string" })
local out = app:topic(output, { value = "json", key = "string" })

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf = sdf:update(function(row, state)
  local prev = state:get("gTotal", row.gTotal)
  row.dG = row.gTotal - prev
  state:set("gTotal", row.gTotal)
end, { stateful = true })
sdf.crash = ls.abs(sdf.dG):gt(3.0)
sdf:to_topic(out)
