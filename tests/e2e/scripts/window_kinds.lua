-- Every window kind on one input (tests/e2e/test_windows_kinds.py).
--
-- Input {ts = ms, x = int, null or absent} (JSON, string keys) on "in". Each
-- branch aggregates per message key by the row's ts and writes its window rows
-- ({start, end, <aggregations>}, keyed like the input, timestamp = start):
--
--   hopping_window(1000, 400), grace 300, final()   -> "hop"; late rows to the topic "hop_late"
--   sliding_window(600), grace 200, current()       -> "slide"; late rows printed
--   session_window(500), grace 400, final()         -> "sess" (+ collect, std); late rows to "sess_late"
--   session_window(500), grace 400, current()       -> "sess_cur"; late rows printed
--   tumbling_count_window(4), final()               -> "tcount"
--   hopping_count_window(5, 2), final()             -> "hcount"
--   sliding_count_window(3), final()                -> "scount"
--
-- Printed late rows are lines "late <branch> <key> <ts>".
local ls = require("luastream")

local app = ls.app{ name = "wk-e2e", commit_interval = 0.5 }

local input = app:topic("in", { key = "string", value = "json", timestamp = "ts" })
local function out(name)
  return app:topic(name, { key = "string", value = "json" })
end

local function printer(branch)
  return function(row, msg)
    io.stdout:write(string.format("late %s %s %d\n", branch, msg.key, row.ts))
    io.stdout:flush()
  end
end

-- count, sum, min, max, mean of x
local function basic(extra)
  local a = { n = ls.agg.count(), s = ls.agg.sum("x"), lo = ls.agg.min("x"), hi = ls.agg.max("x"),
              mean = ls.agg.mean("x") }
  for k, v in pairs(extra or {}) do a[k] = v end
  return a
end

local sdf = app:dataframe(input)

sdf:hopping_window(1000, 400, { grace = 300, on_late = out("hop_late") })
  :agg(basic()):final():to_topic(out("hop"))

sdf:sliding_window(600, { grace = 200, on_late = printer("slide") })
  :agg(basic()):current():to_topic(out("slide"))

sdf:session_window(500, { grace = 400, on_late = "sess_late" })
  :agg(basic{ c = ls.agg.collect("x"), sd = ls.agg.std("x") }):final():to_topic(out("sess"))

sdf:session_window(500, { grace = 400, on_late = printer("sess_cur") })
  :agg{ n = ls.agg.count(), s = ls.agg.sum("x"), c = ls.agg.collect("x") }:current():to_topic(out("sess_cur"))

sdf:tumbling_count_window(4):agg(basic()):final():to_topic(out("tcount"))
sdf:hopping_count_window(5, 2):agg(basic()):final():to_topic(out("hcount"))
sdf:sliding_count_window(3):agg(basic()):final():to_topic(out("scount"))
