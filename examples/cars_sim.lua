-- Simulated cars for the telemetry example.
--
-- attach(app, topic, opts) adds a source that, every `every` ms, emits one
-- message per car holding the last second of samples of each channel at
-- `rate_hz`: {car, t0, rate_hz, channels = {speed, rpm, throttle, brake}}.
-- Cars accelerate and cruise; now and then one brakes hard (about 1 g) or
-- revs past the limit in a low gear.
local M = {}

local random, floor, max, min, exp = math.random, math.floor, math.max, math.min, math.exp
local new_table = require("table.new")
local now_ms = require("luastream").now_ms

local function r3(x) return floor(x * 1000 + 0.5) / 1000 end

-- One second of samples for car c, advancing its state.
local function second(c, rate, now)
  local speed, rpm, throttle, brake = new_table(rate, 0), new_table(rate, 0), new_table(rate, 0), new_table(rate, 0)
  if c.event == nil and random() < c.event_rate then
    c.event = random() < 0.5 and "brake" or "rev"
  end
  local dt = 1 / rate
  for i = 1, rate do
    local th, br = 0.35 + 0.1 * math.sin(c.phase), 0
    if c.event == "brake" and c.v > 20 then
      th, br = 0, 80                                 -- ~1 g: 35 km/h per second
      c.v = max(0, c.v - 35 * dt)
    else
      c.v = min(180, c.v + (th * 12 - c.v * 0.04) * dt)
    end
    c.phase = c.phase + dt * 0.7
    local gear_ratio = c.event == "rev" and 95 or 38  -- a low gear pushes the rpm up
    local r = 900 + c.v * gear_ratio * (1 + 0.02 * math.sin(c.phase * 40))
    speed[i], rpm[i] = r3(c.v + (random() - 0.5) * 0.002), floor(r)
    throttle[i], brake[i] = r3(th), r3(br * (1 - exp(-i / 50)))
  end
  c.event = nil
  return { car = c.id, t0 = now - 1000, rate_hz = rate,
           channels = { speed = speed, rpm = rpm, throttle = throttle, brake = brake } }
end

function M.attach(app, topic, opts)
  opts = opts or {}
  local n, every, rate = opts.cars or 5, opts.every or 1000, opts.rate_hz or 1500
  math.randomseed(opts.seed or os.time())
  local cars = {}
  for i = 1, n do
    cars[i] = { id = string.format("car-%d", i), v = 40 + random() * 60, phase = random() * 6,
                event_rate = opts.event_rate or 0.15 }
  end
  app:source(topic, function(emit)
    local now = now_ms()
    for i = 1, n do emit(second(cars[i], rate, now), cars[i].id) end
  end, { every = every })
end

return M
