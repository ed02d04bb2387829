-- Unit tests for crash_ml.lua, run without Kafka:
--
--   luastream test examples
--
-- crash_model/check.json holds readings and the crash probabilities XGBoost
-- itself gave them when crash_model/train.py trained the model; the pipeline
-- must give the same probabilities (within 1e-6) and alert exactly on those
-- above the script's threshold.
local testing = require("luastream.testing")
local core = require("luastream.core")

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"

local function read_json(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return core.decode("json", text)
end

local function reading(device, ts, gX, gY, gZ)
  return { key = device, value = { device = device, ts = ts, gX = gX, gY = gY, gZ = gZ }, timestamp = ts }
end

local P_CRASH = 0.5 -- as in crash_ml.lua

describe("crash detection with a trained model", function()
  local d

  before_each(function()
    d = testing.driver("crash_ml.lua") -- next to this file
  end)

  it("raises no alert for phones at rest or carried around", function()
    d:send("phone-data", reading("phone-1", 1000, 0.01, -0.02, 1.00))
    d:send("phone-data", reading("phone-1", 1100, 0.30, 0.40, 0.90))
    d:send("phone-data", reading("phone-2", 1100, 0.70, 0.70, 1.30)) -- a bump in the road: ~1.6 g
    assert.same({}, d:read("crash-alerts"))
  end)

  it("scores every reading as XGBoost does, and alerts above the threshold", function()
    local check = read_json(here .. "crash_model/check.json").rows
    assert.is_true(#check >= 50)
    local want = {}
    for i, r in ipairs(check) do
      d:send("phone-data", reading("phone-" .. i, 1000 + i, r.gX, r.gY, r.gZ))
      if r.p_crash > P_CRASH then want[#want + 1] = { i = i, p = r.p_crash } end
    end
    local alerts = d:read("crash-alerts")
    assert.is_true(#want >= 10 and #want < #check, "the check rows hold alerts and non-alerts")
    assert.equal(#want, #alerts)
    for j, w in ipairs(want) do
      local a = alerts[j]
      assert.equal("phone-" .. w.i, a.key)
      assert.equal(1000 + w.i, a.value.ts)
      assert.is_true(math.abs(a.value.p_crash - w.p) <= 1e-6, string.format("row %d: %.9g vs XGBoost's %.9g",
        w.i, a.value.p_crash, w.p))
      -- Within a relative 2^-50 (a few units in the last place), not to the
      -- bit: LuaJIT's compiled code (the pipeline's hot row loop) may square
      -- with x * x where the interpreter calls pow, and on arm64 it fuses a
      -- multiply and an add into one rounding (fmadd), so this line and the
      -- pipeline need not round alike.
      local r = check[w.i]
      local g = math.sqrt(r.gX ^ 2 + r.gY ^ 2 + r.gZ ^ 2)
      assert.is_true(math.abs(a.value.gTotal - g) <= g * 2 ^ -50, string.format("row %d: gTotal %.17g, want %.17g",
        w.i, a.value.gTotal, g))
    end
  end)

  it("sends a reading without numbers to on_error, which stops by default", function()
    local ok, err = pcall(d.send, d, "phone-data", reading("phone-1", 1000, "high", 0, 1))
    assert.is_false(ok)
    assert.matches("phone%-data%[0%]@0: process error: .*crash_ml%.lua:%d+:", err)
  end)
end)
