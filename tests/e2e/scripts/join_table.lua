-- A stream-table join (tests/e2e/test_join_table.py): readings {x} keyed by
-- device on "readings" get their device's owner from the table "owners"
-- ({owner}, keyed by device; a null value deletes the device): a left join,
-- {x, owner} on "out".
-- JT_REGROUP (env): a partition count; the readings are first re-keyed (by
-- their own key) into a group_by topic of that many partitions, which is how
-- a stream is joined with a table of another partition count.
local ls = require("luastream")
local app = ls.app{ name = "jt-e2e", commit_interval = 0.5 }
local owners = app:table(app:topic("owners", { key = "string", value = "json" }))
local readings = app:topic("readings", { key = "string", value = "json" })
local out = app:topic("out", { key = "string", value = "json" })
local sdf = app:dataframe(readings)
local regroup = tonumber(os.getenv("JT_REGROUP") or "")
if regroup then
  sdf = sdf:group_by(function(_, msg) return msg.key end, { name = "by-device", partitions = regroup })
end
sdf:join_table(owners, { how = "left" }):to_topic(out)
