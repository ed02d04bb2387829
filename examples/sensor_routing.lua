-- Sensor routing: gateways forward raw readings from mixed sensors,
--   {sensor = "t-12", kind = "temperature", value = 71.6, unit = "F", site = {id = "plant-3"}}
-- This pipeline drops readings without a value, converts every reading to SI
-- units, tags it, and routes temperatures and pressures to their own topics,
-- keyed by site. Unknown kinds go to `readings-other` unchanged.
--
--   luastream run examples/sensor_routing.lua --broker localhost:9092
local ls = require("luastream")

local app = ls.app{ name = "sensor-router", on_error = "dead-letter", dead_letter = "readings-dlq" }

local raw = app:topic("sensor-readings", { value = "json", key = "string" })
local temps = app:topic("temperatures-c", { value = "json", key = "string" })
local pressures = app:topic("pressures-kpa", { value = "json", key = "string" })
local other = app:topic("readings-other", { value = "json", key = "string" })

-- unit -> function converting to the SI-ish unit of its kind
local TO_CELSIUS = {
  C = function(v) return v end,
  F = function(v) return (v - 32) * 5 / 9 end,
  K = function(v) return v - 273.15 end,
}
local TO_KPA = {
  kPa = function(v) return v end,
  psi = function(v) return v * 6.894757 end,
  bar = function(v) return v * 100 end,
  hPa = function(v) return v / 10 end,
}

local sdf = app:dataframe(raw)
sdf = sdf:filter(sdf.value:notnull())
sdf = sdf:fill{ unit = "C" }
sdf.site_id = sdf.site.id

local t = sdf[sdf.kind:eq("temperature")]
t = t:apply(function(r)
  local conv = TO_CELSIUS[r.unit] or error("unknown temperature unit " .. tostring(r.unit))
  return { sensor = r.sensor, site = r.site_id, celsius = ls.round(conv(r.value), 2) }
end)
t:to_topic(temps, { key = "site" })

local p = sdf[sdf.kind:eq("pressure")]
p = p:apply(function(r)
  local conv = TO_KPA[r.unit] or error("unknown pressure unit " .. tostring(r.unit))
  return { sensor = r.sensor, site = r.site_id, kpa = ls.round(conv(r.value), 3) }
end)
p:to_topic(pressures, { key = "site" })

local o = sdf[ls.not_(sdf.kind:isin{ "temperature", "pressure" })]
o:drop{ "site_id" }:to_topic(other)
