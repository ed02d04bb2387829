-- Unit tests for crash_enriched.lua, run without Kafka:
--
--   luastream test examples
local testing = require("luastream.testing")

local function reading(device, ts, gZ)
  return { key = device, value = { device = device, ts = ts, gX = 0, gY = 0, gZ = gZ }, timestamp = ts }
end

local function fix(device, ts, lat, lon)
  return { key = device, value = { device = device, ts = ts, lat = lat, lon = lon }, timestamp = ts }
end

describe("enriched crash alerts", function()
  local d

  before_each(function()
    d = testing.driver("crash_enriched.lua") -- next to this file
  end)

  it("carry the last fix before the crash and the owner's contact", function()
    d:send("phone-owners", "phone-1", { owner = "Ann", contact = "+49 30 1" })
    d:send("gps-fixes", fix("phone-1", 100000, 52.5, 13.4))
    d:send("gps-fixes", fix("phone-1", 130000, 52.6, 13.5))
    d:send("gps-fixes", fix("phone-1", 190000, 52.7, 13.6)) -- after the crash: not the one
    d:send("phone-data", reading("phone-1", 150000, 1.0))
    d:send("phone-data", reading("phone-1", 150100, 5.0)) -- a jolt of 4 g
    assert.same({ {
      device = "phone-1", ts = 150100, gTotal = 5, dG = 4, lat = 52.6, lon = 13.5, fix_ts = 130000,
      owner = "Ann", contact = "+49 30 1",
    } }, d:read_values("crash-alerts"))
  end)

  it("alert without a location when the last fix is too old, and without an owner when none is known", function()
    d:send("gps-fixes", fix("phone-2", 100000, 52.5, 13.4))
    d:send("phone-data", reading("phone-2", 300000, 1.0))
    d:send("phone-data", reading("phone-2", 300100, 5.0)) -- the fix is 200 s old: more than 2 minutes
    assert.same({ { device = "phone-2", ts = 300100, gTotal = 5, dG = 4 } }, d:read_values("crash-alerts"))
  end)

  it("forget an owner whose record was deleted", function()
    d:send("phone-owners", "phone-3", { owner = "Bo", contact = "+49 30 3" })
    d:send("phone-owners", { key = "phone-3" }) -- unregistered
    d:send("phone-data", reading("phone-3", 1000, 1.0))
    d:send("phone-data", reading("phone-3", 1100, 5.0))
    assert.same({ { device = "phone-3", ts = 1100, gTotal = 5, dG = 4 } }, d:read_values("crash-alerts"))
  end)
end)
