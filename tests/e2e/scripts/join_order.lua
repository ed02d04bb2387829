-- Joins over inputs read side by side (tests/e2e/test_join_order.py): trades
-- {id} keyed by symbol on "trades" get the symbol's price from the table
-- "prices" ({price}) on "with-price" (left join), and the symbol's latest
-- quote ({bid}) at or before the trade on "with-quote" (as-of, left). Event
-- time is the Kafka timestamp of each record.
local ls = require("luastream")
local app = ls.app{ name = "order-e2e", commit_interval = 0.5 }
local prices = app:table(app:topic("prices", { key = "string", value = "json" }))
local quotes = app:dataframe(app:topic("quotes", { key = "string", value = "json" }))
local trades = app:dataframe(app:topic("trades", { key = "string", value = "json" }))
trades:join_table(prices, { how = "left" })
  :to_topic(app:topic("with-price", { key = "string", value = "json" }))
trades:join_asof(quotes, { how = "left", grace = 1e9 })
  :to_topic(app:topic("with-quote", { key = "string", value = "json" }))
