-- Pass-through for every serialization format: fmt-<f>-in -> fmt-<f>-out,
-- key and value both in format <f>, nothing changed on the way.
local ls = require("luastream")

local app = ls.app{ name = "formats-e2e", commit_interval = 1.0 }

for _, f in ipairs({ "string", "bytes", "int", "double", "msgpack", "json" }) do
  local src = app:topic("fmt-" .. f .. "-in", { key = f, value = f })
  local dst = app:topic("fmt-" .. f .. "-out", { key = f, value = f })
  app:dataframe(src):to_topic(dst)
end
