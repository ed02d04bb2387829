-- The luastream side of the model benchmark (tests/bench/model_bench.py): the
-- stateless crash pipeline of crash_stateless.lua, plus a trained model that
-- scores every row inside the pipeline (the crash probability p_crash).
--
--   LS_BENCH_MODEL=model.json luastream run tests/bench/model_crash.lua --broker B --count N
--
-- The topics are phone-data and out-model unless LS_BENCH_INPUT / LS_BENCH_OUTPUT
-- name others.
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "phone-data"
local output = os.getenv("LS_BENCH_OUTPUT") or "out-model"
local model = assert(os.getenv("LS_BENCH_MODEL"), "LS_BENCH_MODEL: the path of the model file")

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-crash-model" }

local phones = app:topic(input, { value = "json", key = "string" })
local out = app:topic(output, { value = "json", key = "string" })

local m = ls.model.load(model)

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf.crash = sdf.gTotal:gt(3.0)
sdf.p_crash = m:predict{ sdf.gX, sdf.gY, sdf.gZ, sdf.gTotal }
sdf:to_topic(out)
