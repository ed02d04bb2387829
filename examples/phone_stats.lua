-- Windows over phone readings {device, ts, gX, gY, gZ} (in g) on `phone-data`:
--
--   * per phone, statistics of its total acceleration over 10 s tumbling windows
--     (readings, mean, peak, standard deviation) to `phone-stats` when each window
--     closes; a phone that goes quiet has its last window flushed after 5 s;
--   * a crash rule on the peak change of g-force within 2 s: a sliding window of
--     2 s per phone, and an alert to `crash-alerts` when the largest and the smallest
--     total acceleration in it are more than CRASH_DG apart (once per crash: the
--     windows ending within 5 s of an alert's are the same crash).
--
--   luastream run examples/phone_stats.lua                      (dev broker + simulated phones)
--   luastream run examples/phone_stats.lua --broker kafka:9092  (real data)
--
-- The window semantics (closing, grace, late rows, idle closing) are in docs/windows.md.
local ls = require("luastream")

local CRASH_DG = 3.0     -- alert when gTotal varies by more than this within 2 s, in g
local COOLDOWN_MS = 5000 -- windows within this of an alert's end belong to the same crash

local app = ls.app{ name = "phone-stats", commit_interval = 2.0 }

local phones = app:topic("phone-data", { value = "json", key = "string", timestamp = "ts" })
local stats = app:topic("phone-stats", { value = "json", key = "string" })
local alerts = app:topic("crash-alerts", { value = "json", key = "string" })

if app:is_dev_broker() then
  require("phones_sim").attach(app, phones, { phones = 20, every = 100, crash_rate = 0.005 })
end

local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)

-- 10 s statistics per phone: readings a little out of order (up to 1 s) still count
sdf:tumbling_window(10000, { grace = 1000, close_on_idle = 5000 })
  :agg{ n = ls.agg.count(), mean = ls.agg.mean("gTotal"), peak = ls.agg.max("gTotal"),
        sd = ls.agg.std("gTotal") }
  :final()
  :to_topic(stats)

-- the crash rule: the spread of gTotal within any 2 s of a phone's readings
local spread = sdf:sliding_window(2000)
  :agg{ lo = ls.agg.min("gTotal"), hi = ls.agg.max("gTotal"), n = ls.agg.count() }
  :current()
spread.dG = spread.hi - spread.lo
spread = spread[spread.dG:gt(CRASH_DG)]
-- one crash shows in every 2 s window around it: alert once per phone and crash
spread = spread:filter(function(row, state)
  local last = state:get("alert_end")
  if last and math.abs(row["end"] - last) <= COOLDOWN_MS then return false end
  state:set("alert_end", row["end"])
  return true
end, { stateful = true })
spread = spread[{ "start", "end", "lo", "hi", "dG" }]
spread:print()
spread:to_topic(alerts)
