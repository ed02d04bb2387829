-- In-place steps (column assignment, update) before a step that fails on some rows.
-- Input {id, n}; output {id, n = n + 1, m = (n + 1) * 10, seen = 1}.
-- A row whose n is a string fails in the first step.
local ls = require("luastream")

local app = ls.app{ name = "inplace-e2e", commit_interval = 1.0, on_error = "skip" }
local input = app:topic("inplace-in", { key = "string", value = "json" })
local output = app:topic("inplace-out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf.n = sdf.n + 1
sdf = sdf:update(function(row) row.seen = (row.seen or 0) + 1 end)
sdf.m = sdf.n * 10
sdf:to_topic(output)
