-- A stream-table join (tests/e2e/test_join_table.py): readings {x} keyed by
-- device on "readings" get their device's owner from the table "owners"
-- ({owner}, keyed by device; a null value deletes the device): a left join,
-- {x, owner} on "out".
local ls = require("luastream")
local app = ls.app{ name = "jt-e2e", commit_interval = 0.5 }
local owners = app:table(app:topic("owners", { key = "string", value = "json" }))
local readings = app:topic("readings", { key = "string", value = "json" })
local out = app:topic("out", { key = "string", value = "json" })
app:dataframe(readings):join_table(owners, { how = "left" }):to_topic(out)
