-- Simulated GPS fixes and owners for the enriched crash demo (crash_enriched.lua).
--
-- attach(app, fixes, owners, opts) adds a source that, every `every` ms, emits
-- one fix {device, ts, lat, lon} per phone (phones walking around Berlin), and
-- one that writes each phone's owner {owner, contact} once, at the start.
local M = {}

local random = math.random
local now_ms = require("luastream").now_ms

function M.attach(app, fixes, owners, opts)
  opts = opts or {}
  local n, every = opts.phones or 20, opts.every or 1000
  local where = {}
  for i = 1, n do where[i] = { lat = 52.52 + (random() - 0.5) * 0.1, lon = 13.40 + (random() - 0.5) * 0.1 } end
  app:source(fixes, function(emit)
    local now = now_ms()
    for i = 1, n do
      local w = where[i]
      w.lat, w.lon = w.lat + (random() - 0.5) * 1e-4, w.lon + (random() - 0.5) * 1e-4
      local id = string.format("phone-%02d", i)
      emit({ device = id, ts = now, lat = math.floor(w.lat * 1e6) / 1e6, lon = math.floor(w.lon * 1e6) / 1e6 }, id)
    end
  end, { every = every })
  local sent = false
  app:source(owners, function(emit)
    if sent then return end
    sent = true
    for i = 1, n do
      local id = string.format("phone-%02d", i)
      emit({ owner = "owner of " .. id, contact = string.format("+49 30 %07d", i) }, id)
    end
  end, { every = 500 })
end

return M
