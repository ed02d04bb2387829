-- The cost of the rows the joins keep per key (luastream.history), as the
-- history grows: join_asof's other side and join_interval's other side, each
-- with rows kept for a long time (grace, before), through the runtime's Lua
-- side as `luastream run` drives it (batches of rows, a checkpoint taking
-- the changed state entries and encoding them as it would for LMDB and the
-- changelog), no Kafka. Side by side in one run: segments of 64 rows (what
-- the runtime does) and one segment per key (every row in one entry, as
-- earlier builds kept it: each checkpoint rewrites the key's whole list).
--
--   build/luastream lua tests/bench/join_history.lua [keys] [minutes]
--
-- keys (default 20) each get a row a second of event time for `minutes`
-- (default 30), kept for that long (grace / before = minutes); a checkpoint
-- every 5 s of event time (commit_interval = 5 at one row a second per
-- key). Prints the time per 100 s of event time at the start, the middle and
-- the end, the total, the bytes a checkpoint encodes, and the ratios.
-- See tests/bench/README.md ("Join history").
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local H = dofile(here .. "../lua/helpers.lua")
local rt, core = H.rt, H.core
local history = require("luastream.history")

local KEYS = tonumber(arg and arg[1]) or 20
local MINUTES = tonumber(arg and arg[2]) or 30
local SPAN = MINUTES * 60000

local SCRIPTS = {
  asof = H.header .. [[
local app = ls.app{}
local fixes = app:dataframe(app:topic("fixes", { key = "string", timestamp = "ts" }))
local alerts = app:dataframe(app:topic("alerts", { key = "string", timestamp = "ts" }))
alerts:join_asof(fixes, { grace = SPAN }):to_topic(app:topic("out"))
]],
  interval = H.header .. [[
local app = ls.app{}
local views = app:dataframe(app:topic("views", { key = "string", timestamp = "ts" }))
local clicks = app:dataframe(app:topic("clicks", { key = "string", timestamp = "ts" }))
clicks:join_interval(views, { before = SPAN, after = 0, grace = 0 }):to_topic(app:topic("out"))
]],
}

local function clock()
  return os.clock()
end

-- One run: returns { per-100-s times at 3 points }, total s, encoded bytes.
local function run(join, cap)
  history.CAP = cap
  core.state_load = nil -- no LMDB behind it: every key starts empty
  H.load_source((SCRIPTS[join]:gsub("SPAN", tostring(SPAN))))
  rt.take_state_changes()
  local keys = {}
  for k = 1, KEYS do keys[k] = "dev-" .. k end
  local seconds = MINUTES * 60
  local blocks, bytes = {}, 0 -- blocks[b]: the time of event-time seconds 100 * (b - 1) + 1 .. 100 * b
  local t0 = clock()
  local lap = t0
  local list = {}
  for s = 1, seconds do
    for k = 1, KEYS do list[k] = { { ts = s * 1000, x = s, lat = 48.1, lon = 11.5 }, key = keys[k], topic = 1 } end
    local n, meta = H.feed(list)
    rt.run_batch(n, meta)
    if s % 5 == 0 then
      for j = 1, rt.take_state_changes() do
        local v = rt.changes.val[j]
        if v then bytes = bytes + #v end
      end
    end
    if s % 100 == 0 then
      local now = clock()
      blocks[#blocks + 1] = now - lap
      lap = now
    end
  end
  local nb = #blocks
  local laps = { blocks[1], blocks[math.max(1, math.floor((nb + 1) / 2))], blocks[nb] }
  return laps, clock() - t0, bytes
end

local function ms(x) return string.format("%8.1f", x * 1000) end

print(string.format("%d keys, a row a second each for %d min, kept %d min; a checkpoint every 5 s (event time)",
  KEYS, MINUTES, MINUTES))
print("join      layout          ms/100 s: start   middle      end   total s   MB encoded")
local cap = history.CAP
for _, join in ipairs({ "asof", "interval" }) do
  local res = {}
  for _, layout in ipairs({ { "segments of 64", cap }, { "one entry", 1e9 } }) do
    local laps, total, bytes = run(join, layout[2])
    res[#res + 1] = { total = total, bytes = bytes }
    print(string.format("%-9s %-15s %s %s %s %9.2f %12.1f", join, layout[1], ms(laps[1] or 0), ms(laps[2] or 0),
      ms(laps[3] or 0), total, bytes / 1e6))
  end
  print(string.format("%-9s ratio (one entry / segments): time %.1f, bytes encoded %.1f", join,
    res[2].total / res[1].total, res[2].bytes / res[1].bytes))
end
history.CAP = cap
