-- Unit tests for phone_stats.lua, run without Kafka:
--
--   luastream test examples
--
-- The driver sends readings to `phone-data` and reads `phone-stats` and
-- `crash-alerts`; d:advance(ms) moves the clock that closes idle windows.
local testing = require("luastream.testing")

local function reading(device, ts, gX, gY, gZ)
  return { key = device, value = { device = device, ts = ts, gX = gX, gY = gY, gZ = gZ }, timestamp = ts }
end

local function values(d, topic)
  local res = {}
  for j, r in ipairs(d:read(topic)) do res[j] = { r.key, r.value } end
  return res
end

describe("phone statistics", function()
  local d

  before_each(function()
    d = testing.driver("phone_stats.lua") -- next to this file
  end)

  it("emits 10 s statistics per phone when the window closes, a quiet phone's after 5 s", function()
    for j = 0, 9 do d:send("phone-data", reading("phone-1", 100000 + j * 1000, 0, 0, 1)) end
    d:send("phone-data", reading("phone-2", 100000, 0, 0, 2))
    d:send("phone-data", reading("phone-2", 105000, 0, 0, 4))
    d:send("phone-data", reading("phone-2", 111000, 0, 0, 1)) -- closes [100000, 110000) (grace 1000)
    assert.same({ { "phone-2", { start = 100000, ["end"] = 110000, n = 2, mean = 3, peak = 4,
      sd = math.sqrt(2) } } }, values(d, "phone-stats"))
    d:advance(4999)
    assert.same({}, values(d, "phone-stats"))
    d:advance(1) -- 5 s without a reading: both phones' open windows close
    local got = values(d, "phone-stats")
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.same({
      { "phone-1", { start = 100000, ["end"] = 110000, n = 10, mean = 1, peak = 1, sd = 0 } },
      { "phone-2", { start = 110000, ["end"] = 120000, n = 1, mean = 1, peak = 1, sd = require("luastream").null } },
    }, got)
  end)

  it("alerts once when gTotal varies by more than 3 g within 2 s", function()
    d:send("phone-data", reading("phone-1", 100000, 0, 0, 1))
    d:send("phone-data", reading("phone-1", 100500, 0, 0, 5)) -- a jolt of 4 g
    d:send("phone-data", reading("phone-1", 101000, 0, 0, 1))
    d:send("phone-data", reading("phone-1", 101500, 0, 3, 4)) -- still the same crash (5 g)
    assert.same({ { "phone-1", { start = 98500, ["end"] = 100500, lo = 1, hi = 5, dG = 4 } } },
      values(d, "crash-alerts"))
  end)

  it("does not alert for a phone carried around (under 3 g of change)", function()
    for j = 0, 20 do
      d:send("phone-data", reading("phone-1", 100000 + j * 100, 0, 0, 1 + (j % 3) * 0.9))
    end
    assert.same({}, values(d, "crash-alerts"))
  end)
end)
