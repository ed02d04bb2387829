-- The luastream side of the join benchmark (tests/bench/joins.sh): a
-- stream-table join (docs/joins.md). Accelerometer rows {device, ts, gX, gY, gZ}
-- keyed by device get the fields of their device's owner {owner, plan, region}
-- from the table "phone-owners" (keyed by device; a null value deletes the
-- device): one output per row, with its key, the same work as
-- tests/bench/py_join.py does by hand with a dict. A left join: a row whose device
-- has no owner goes out as it came (the benchmark's check then finds it).
--
--   luastream run tests/bench/join_table.lua --broker B --count N [--name GROUP] [--state-dir D]
--
-- The topics are phone-data, phone-owners and out-ls unless LS_BENCH_INPUT,
-- LS_BENCH_TABLE and LS_BENCH_OUTPUT name others. The stream and the table must
-- be co-partitioned (the same partition count; the runtime checks it at start).
local ls = require("luastream")

local input = os.getenv("LS_BENCH_INPUT") or "phone-data"
local tbl = os.getenv("LS_BENCH_TABLE") or "phone-owners"
local output = os.getenv("LS_BENCH_OUTPUT") or "out-ls"

local app = ls.app{ name = os.getenv("LS_BENCH_GROUP") or "bench-join-table" }

local owners = app:table(app:topic(tbl, { value = "json", key = "string" }))
local phones = app:topic(input, { value = "json", key = "string" })
local out = app:topic(output, { value = "json", key = "string" })

app:dataframe(phones):join_table(owners, { how = "left" }):to_topic(out)
