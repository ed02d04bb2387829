-- Simulated phones for the crash-detection demo.
--
-- attach(app, topic, opts) adds a source that, every `every` ms, emits one
-- accelerometer reading per phone: {device, ts, gX, gY, gZ} in g. Phones mostly
-- rest or get carried around (|g| close to 1, some jolts up to ~2.5 g); now and
-- then one is dropped or crashes, a short burst of 4-9 g readings.
local M = {}

local sqrt, random, floor = math.sqrt, math.random, math.floor

-- A normally distributed number (Box-Muller).
local function gauss(sigma)
  return sigma * sqrt(-2 * math.log(1 - random())) * math.cos(2 * math.pi * random())
end

local function reading(phone, now)
  local gx, gy, gz = phone.ax + gauss(0.08), phone.ay + gauss(0.08), phone.az + gauss(0.08)
  if phone.burst > 0 then
    -- mid-crash: a large acceleration in a random direction
    phone.burst = phone.burst - 1
    local g = 4 + random() * 5
    local x, y, z = gauss(1), gauss(1), gauss(1)
    local n = sqrt(x * x + y * y + z * z)
    gx, gy, gz = x / n * g, y / n * g, z / n * g
  elseif random() < phone.jolt then
    gx, gy, gz = gx * 1.8, gy * 1.8, gz * 1.8 -- a bump in the road, a step on stairs
  end
  local r = function(v) return floor(v * 10000 + 0.5) / 10000 end
  return { device = phone.id, ts = now, gX = r(gx), gY = r(gy), gZ = r(gz) }
end

local now_ms = require("luastream").now_ms

function M.attach(app, topic, opts)
  opts = opts or {}
  local n, every = opts.phones or 20, opts.every or 100
  local crash_rate = opts.crash_rate or 0.002 -- per reading
  math.randomseed(opts.seed or os.time())
  local phones = {}
  for i = 1, n do
    -- gravity mostly along one axis, as a phone lies on a table or sits in a pocket
    local tilt = random() * math.pi / 3
    phones[i] = {
      id = string.format("phone-%02d", i),
      ax = math.sin(tilt) * 0.7, ay = math.sin(tilt) * 0.7, az = math.cos(tilt),
      jolt = 0.02, burst = 0,
    }
  end
  app:source(topic, function(emit)
    local now = now_ms()
    for i = 1, n do
      local phone = phones[i]
      if phone.burst == 0 and random() < crash_rate then phone.burst = 3 end
      emit(reading(phone, now), phone.id)
    end
  end, { every = every })
end

return M
