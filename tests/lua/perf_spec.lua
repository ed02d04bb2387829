local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local rt = H.rt

local CRASH = [[
local ls = require("luastream")
local app = ls.app{ name = "crash-detector" }
local phones = app:topic("phone-data", { key = "string", timestamp = "ts" })
local alerts = app:topic("crash-alerts")
local sdf = app:dataframe(phones)
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf = sdf:update(function(row, msg) row.dG = row.gTotal - 9.81 end)
sdf = sdf[ls.abs(sdf.dG):gt(3)]
sdf = sdf[{ "device", "ts", "gTotal", "dG" }]
sdf:to_topic(alerts)
]]

-- The part of the generated source inside the row loop.
local function loop_body(src)
  local start = src:find("for i = first, last do", 1, true)
  local stop = src:find("\n  end\n  return nout", 1, true)
  assert(start and stop, src)
  return src:sub(start, stop)
end

describe("generated code", function()
  it("creates no closures in the row loop and no tables except the projection", function()
    H.load_source(CRASH)
    local body = loop_body(rt.source_of("phone-data"))
    assert.falsy(body:find("function", 1, true))
    local tables = 0
    for _ in body:gmatch("{") do tables = tables + 1 end
    assert.same(1, tables)
    assert.truthy(body:find("v = { device = v.device, ts = v.ts, gTotal = v.gTotal, dG = v.dG }", 1, true))
    assert.truthy(body:find("v.gTotal = u_sqrt((((v.gX ^ 2) + (v.gY ^ 2)) + (v.gZ ^ 2)))", 1, true))
    assert.truthy(rt.source_of("phone-data"):find("local u_sqrt = K.lib.util.sqrt", 1, true))
  end)

  it("allocates nothing per row when no step needs a new table", function()
    H.load_source([[
local ls = require("luastream")
local app = ls.app{}
local sdf = app:dataframe(app:topic("in", { timestamp = "ts" }))
sdf.gTotal = ls.sqrt(sdf.gX ^ 2 + sdf.gY ^ 2 + sdf.gZ ^ 2)
sdf:update(function(row, msg) row.seen = msg.offset end)
sdf = sdf[ls.all(sdf.gTotal:gt(1), sdf.device:isin{ "a", "b" })]
sdf:to_topic(app:topic("out"), { key = sdf.device })
local other = sdf:set_timestamp(function(row, msg) return msg.timestamp + 1 end)
other:to_topic(app:topic("out2"))
]])
    local N = 20000
    local list = {}
    for i = 1, N do
      list[i] = { { device = (i % 2 == 0) and "a" or "c", ts = i, gX = i % 5, gY = 1, gZ = 2 }, key = "k", off = i }
    end
    local n, meta = H.feed(list)
    for _ = 1, 5 do rt.run_batch(n, meta) end
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    local nout = rt.run_batch(n, meta)
    local after = collectgarbage("count")
    collectgarbage("restart")
    assert.same(N, nout)
    -- One table per row would be well over 600 KB for 20000 rows.
    assert.is_true(after - before < 64, string.format("allocated %.1f KB", after - before))
  end)

  it("compiles long chains of filters and assignments", function()
    local lines = { 'local ls = require("luastream")', "local app = ls.app{}",
      'local sdf = app:dataframe(app:topic("in"))' }
    for j = 1, 300 do
      lines[#lines + 1] = "sdf = sdf[sdf.x:gt(" .. (-j) .. ")]"
      lines[#lines + 1] = "sdf.y" .. j .. " = sdf.x + " .. j
    end
    lines[#lines + 1] = 'sdf:to_topic(app:topic("out"))'
    H.load_source(table.concat(lines, "\n"))
    local v = H.values({ { { x = 1 } }, { { x = -5 } } })
    assert.same(1, #v)
    assert.same(301, v[1].y300)
  end)
end)
