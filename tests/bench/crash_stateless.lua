-- The luastream side of the throughput benchmark (tests/bench/run.sh): crash
-- detection without state. Every accelerometer row {device, ts, gX, gY, gZ} gets
-- its total acceleration and a crash flag, and goes to the output topic with its
-- key, the same work as tests/bench/py_crash.py does by hand.
--
--   luastream run tests/bench/crash_stateless.lua --broker B --count N [--name GROUP]
--
-- The topics are phone-data and out-ls unless LS_BENCH_INPUT / LS_BENCH_OUTPUT
-- name others. tests/bench/bench_pipeline.c runs this same script in process,
-- with no broker.
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "phone-data"
local output = os.getenv("LS_BENCH_OUTPUT") or "out-ls"

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-crash-stateless" }

local phones = app:topic(input, { value = "json", key = "string" })
local out = app:topic(output, { value = "json", key = "string" })

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf.crash = sdf.gTotal:gt(3.0)
sdf:to_topic(out)
