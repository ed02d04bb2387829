-- A tumbling window per message key (tests/e2e/test_windows.py).
--
-- Input {ts = ms, x = int} (JSON, string keys) on "in"; 1000 ms tumbling
-- windows by the row's ts, grace 500 ms, emitted when they close as
-- {start, end, n, s, lo, hi} on "out", keyed like the input. Late rows are
-- printed to stdout as "late <key> <ts>".
local ls = require("luastream")

local app = ls.app{ name = "win-e2e", commit_interval = 1 }

local input = app:topic("in", { key = "string", value = "json", timestamp = "ts" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
local w = sdf:tumbling_window(1000, { grace = 500, on_late = function(row, msg)
  io.stdout:write(string.format("late %s %d\n", msg.key, row.ts))
  io.stdout:flush()
end })
w = w:agg{ n = ls.agg.count(), s = ls.agg.sum("x"), lo = ls.agg.min("x"), hi = ls.agg.max("x") }
w:final():to_topic(output)
