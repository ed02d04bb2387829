-- A session window under a chosen guarantee (tests/e2e/test_windows_kinds.py).
--
-- Input {ts = ms, x = int, null or absent} (JSON, string keys) on "in";
-- session windows per message key, gap 500 ms, grace 400 ms, emitted when
-- they close as {start, end, n, s, lo, hi, c, run} on "out", keyed like the
-- input; run is E2E_RUN (which process wrote the window). Late rows are
-- printed as "late <run> <key> <ts>". commit_interval is E2E_COMMIT_INTERVAL
-- (default 0.5 s).
local ls = require("luastream")

local app = ls.app{
  name = "wk-eos", -- tests pass --name
  commit_interval = tonumber(os.getenv("E2E_COMMIT_INTERVAL") or "0.5"),
}

local input = app:topic("in", { key = "string", value = "json", timestamp = "ts" })
local output = app:topic("out", { key = "string", value = "json" })

local run = os.getenv("E2E_RUN") or "-"

local sdf = app:dataframe(input)
local w = sdf:session_window(500, { grace = 400, on_late = function(row, msg)
  io.stdout:write(string.format("late %s %s %d\n", run, msg.key, row.ts))
  io.stdout:flush()
end })
w = w:agg{ n = ls.agg.count(), s = ls.agg.sum("x"), lo = ls.agg.min("x"), hi = ls.agg.max("x"),
           c = ls.agg.collect("x") }:final()
w.run = run
w:to_topic(output)
