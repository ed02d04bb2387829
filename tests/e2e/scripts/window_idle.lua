-- Windows closed on idleness (tests/e2e/test_windows_kinds.py).
--
-- Input {ts = ms, x = int} (JSON, string keys) on "in"; 1000 ms tumbling
-- windows by the row's ts, grace 200 ms, closed when the key has had no row
-- for E2E_IDLE ms of wall clock (default 1000); emitted when they close as
-- {start, end, n, s} on "out", keyed like the input. Late rows are printed as
-- "late <key> <ts>".
local ls = require("luastream")

local app = ls.app{ name = "wk-idle", commit_interval = 0.2 }

local input = app:topic("in", { key = "string", value = "json", timestamp = "ts" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf:tumbling_window(1000, {
  grace = 200,
  close_on_idle = tonumber(os.getenv("E2E_IDLE") or "1000"),
  on_late = function(row, msg)
    io.stdout:write(string.format("late %s %d\n", msg.key, row.ts))
    io.stdout:flush()
  end,
}):agg{ n = ls.agg.count(), s = ls.agg.sum("x") }:final():to_topic(output)
