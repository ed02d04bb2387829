-- Unit tests for telemetry.lua, run without Kafka:
--
--   luastream test examples
--
-- Messages go through the topic's JSON serializer with arrays = "vec", as
-- they would from Kafka, so the pipeline sees its channels as ls.vec values.
local testing = require("luastream.testing")

local RATE = 1500

local function channel(f)
  local t = {}
  for i = 1, RATE do t[i] = f(i) end
  return t
end

local function const(x) return function() return x end end

-- One second of a car: speed(i) in km/h and rpm(i) for sample i = 1..RATE.
local function second(car, t0, speed, rpm)
  return {
    key = car,
    value = { car = car, t0 = t0, rate_hz = RATE, channels = {
      speed = channel(speed), rpm = channel(rpm), throttle = channel(const(0.4)), brake = channel(const(0)),
    } },
  }
end

local function near(want, got)
  assert(math.abs(want - got) <= 1e-9 * math.max(1, math.abs(want)),
    string.format("expected %.17g, got %.17g", want, got))
end

describe("telemetry", function()
  local d

  before_each(function()
    d = testing.driver("telemetry.lua") -- next to this file
  end)

  it("sends a summary of every channel and of the derived acceleration", function()
    d:send("car-telemetry", second("car-1", 5000, const(100), function(i) return 3000 + (i % 2) * 200 end))
    local stats = d:read_values("car-stats")
    assert.equal(1, #stats)
    local s = stats[1].summary
    assert.same({ "car-1", 5000 }, { stats[1].car, stats[1].t0 })
    assert.same({ mean = 100, max = 100, rms = 100 }, s.speed)
    assert.same({ mean = 3100, max = 3200 }, { mean = s.rpm.mean, max = s.rpm.max })
    near(math.sqrt((3000 ^ 2 + 3200 ^ 2) / 2), s.rpm.rms)
    near(0.4, s.throttle.mean)
    assert.same({ mean = 0, max = 0, rms = 0, min = 0 }, s.accel) -- constant speed
    assert.same({}, d:read("car-alerts"))
  end)

  it("alerts on hard braking: 36 km/h lost per second is 10 m/s^2", function()
    d:send("car-telemetry", second("car-2", 6000, function(i) return 100 - 36 * (i - 1) / RATE end, const(2500)))
    local s = d:read_values("car-stats")[1].summary
    near(-10, s.accel.mean)
    near(-10, s.accel.min)
    assert.same({ { car = "car-2", t0 = 6000, alert = "hard-braking" } }, d:read_values("car-alerts"))
  end)

  it("alerts on over-rev, and names that first when both happen", function()
    d:send("car-telemetry", second("car-3", 7000, const(60), function(i) return i == 700 and 7200 or 6000 end))
    assert.same({ { car = "car-3", t0 = 7000, alert = "over-rev" } }, d:read_values("car-alerts"))
    d:send("car-telemetry", second("car-3", 8000, function(i) return 100 - 0.03 * i end, const(7500)))
    assert.same({ { car = "car-3", t0 = 8000, alert = "over-rev" } }, d:read_values("car-alerts"))
  end)

  it("keeps the cars apart and stays quiet when nothing happens", function()
    for k = 1, 3 do
      d:send("car-telemetry", second("car-" .. k, 1000 * k, const(50 + k), const(2000 + k)))
    end
    local stats = d:read_values("car-stats")
    assert.equal(3, #stats)
    for k = 1, 3 do
      assert.same({ "car-" .. k, 50 + k, 2000 + k },
        { stats[k].car, stats[k].summary.speed.max, stats[k].summary.rpm.max })
    end
    assert.same({}, d:read("car-alerts"))
  end)
end)
