-- A global table (tests/e2e/test_global_table.py): readings {person, x} keyed
-- by device on "readings" get their person's {name} from the global table
-- "people" (keyed by person, every partition on every instance), joined on
-- the reading's person column: a left join, {person, x, name} on "out".
local ls = require("luastream")
local app = ls.app{ name = "gt-e2e", commit_interval = 0.5 }
local people = app:global_table(app:topic("people", { key = "string", value = "json" }))
local readings = app:topic("readings", { key = "string", value = "json" })
local out = app:topic("out", { key = "string", value = "json" })
app:dataframe(readings):join_table(people, { on = "person", how = "left" }):to_topic(out)
