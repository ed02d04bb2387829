-- Unit tests for crash_detection.lua, run without Kafka:
--
--   luastream test examples
--
-- The driver loads the script as `luastream run` would, sends readings to
-- `phone-data` through the topic's JSON serializer, and reads what the
-- pipeline wrote to `crash-alerts`. With no broker to talk to, the script's
-- phone simulator stays off (app:is_dev_broker() is false under the driver).
local testing = require("luastream.testing")

-- One accelerometer reading of `device`, keyed by the device like the
-- real phones send them.
local function reading(device, ts, gX, gY, gZ)
  return { key = device, value = { device = device, ts = ts, gX = gX, gY = gY, gZ = gZ }, timestamp = ts }
end

describe("crash detection", function()
  local d

  before_each(function()
    d = testing.driver("crash_detection.lua") -- next to this file
  end)

  it("raises no alert for a phone at rest", function()
    d:send("phone-data", reading("phone-1", 1000, 0.01, -0.02, 1.00))
    d:send("phone-data", reading("phone-1", 1100, 0.02, 0.01, 0.99))
    d:send("phone-data", reading("phone-1", 1200, -0.01, 0.00, 1.02))
    d:send("phone-data", reading("phone-1", 1300, 0.30, 0.40, 1.10)) -- a bump: under 3 g of change
    assert.same({}, d:read("crash-alerts"))
  end)

  it("alerts on a sudden jump, with the change in g", function()
    d:send("phone-data", reading("phone-1", 1000, 0, 0, 1)) -- |g| = 1
    d:send("phone-data", reading("phone-1", 1100, 0, 3, 4)) -- |g| = 5
    local alerts = d:read("crash-alerts")
    assert.equal(1, #alerts)
    assert.equal("phone-1", alerts[1].key)
    assert.equal(1100, alerts[1].timestamp) -- the reading's own ts
    assert.same({ device = "phone-1", ts = 1100, gTotal = 5, dG = 4 }, alerts[1].value)
  end)

  it("alerts when the phone stops hard, too (a negative change)", function()
    d:send("phone-data", reading("phone-1", 1000, 0, 6, 8)) -- |g| = 10
    d:send("phone-data", reading("phone-1", 1100, 0, 0, 1)) -- |g| = 1
    assert.same({ { device = "phone-1", ts = 1100, gTotal = 1, dG = -9 } }, d:read_values("crash-alerts"))
  end)

  it("compares each phone with its own previous reading", function()
    d:send("phone-data", reading("phone-1", 1000, 0, 0, 1)) -- phone-1 at 1 g
    d:send("phone-data", reading("phone-2", 1000, 0, 3, 4)) -- phone-2 at 5 g: its first reading
    d:send("phone-data", reading("phone-2", 1100, 0, 4, 3)) -- still 5 g
    d:send("phone-data", reading("phone-1", 1100, 0, 0, 1))
    assert.same({}, d:read("crash-alerts"))
    assert.equal(1, d:state("default", "phone-1", "gTotal"))
    assert.equal(5, d:state("default", "phone-2", "gTotal"))

    d:send("phone-data", reading("phone-1", 1200, 0, 4, 3)) -- phone-1 jumps to 5 g
    assert.same({ { device = "phone-1", ts = 1200, gTotal = 5, dG = 4 } }, d:read_values("crash-alerts"))
  end)

  it("prints each alert", function()
    d:send("phone-data", reading("phone-1", 1000, 0, 0, 1))
    d:send("phone-data", reading("phone-1", 1100, 0, 3, 4))
    assert.matches("^%[phone%-data%] key=phone%-1 p=0 off=1 {", d:printed())
  end)

  it("sends a reading it cannot process to on_error, which stops by default", function()
    d:send("phone-data", reading("phone-1", 1000, 0, 0, 1))
    local ok, err = pcall(d.send, d, "phone-data", { key = "phone-1", value = { device = "phone-1", ts = 1100 } })
    assert.is_false(ok)
    assert.matches("phone%-data%[0%]@1: process error: .*crash_detection%.lua:%d+: column 'gTotal'", err)
  end)
end)
