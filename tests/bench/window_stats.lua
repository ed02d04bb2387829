-- The windowed side of the window benchmark (tests/bench/windows.sh): 10 s
-- tumbling windows per device by the row's ts, with the mean and peak of the
-- total acceleration and a row count, one current() update out per row, the
-- same work as tests/bench/py_window.py does by hand with a dict of windows.
--
--   luastream run tests/bench/window_stats.lua --broker B --count N [--name GROUP]
--
-- The topics are phone-data and out-ls unless LS_BENCH_INPUT / LS_BENCH_OUTPUT
-- name others. tests/bench/bench_pipeline.c runs this same script in process
-- (--script), with the state in memory only.
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "phone-data"
local output = os.getenv("LS_BENCH_OUTPUT") or "out-ls"

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-window-stats" }

local phones = app:topic(input, { value = "json", key = "string", timestamp = "ts" })
local out = app:topic(output, { value = "json", key = "string" })

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf:tumbling_window(10000)
  :agg{ n = ls.agg.count(), mean = ls.agg.mean("gTotal"), peak = ls.agg.max("gTotal") }
  :current()
  :to_topic(out)
