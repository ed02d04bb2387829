-- Flat JSON rows built by luastream.jsonin (docs/internals.md, "Decoding
-- inputs"): through the test driver, the rows a pipeline sees must be what
-- the C decoder makes of the same text (core.decode), whatever mix of shapes
-- and of rows that are not flat a batch holds, with room for added columns
-- and no padding key visible.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local testing = require("luastream.testing")
local jsonin = require("luastream.jsonin")
local core = H.core

-- The pipeline describes each row as the step sees it: its fields with their
-- Lua types, the count pairs walks, whether next() sees any key with a NUL
-- byte (padding), then adds columns.
local SCRIPT = [[
local ls = require("luastream")
local app = ls.app{ name = "jin", on_error = "skip" }
local input = app:topic("in", { key = "string" })
local out = app:topic("out", { key = "string" })
local sdf = app:dataframe(input)
sdf = sdf:apply(function(row)
  local fields, n, hidden = {}, 0, false
  for k, v in pairs(row) do
    n = n + 1
    if type(k) == "string" and k:find("\0", 1, true) then hidden = true end
    fields[#fields + 1] = { k, v == ls.null and "null" or type(v), v == ls.null and "null" or v }
  end
  table.sort(fields, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  for i = 1, 12 do row["added" .. i] = i end -- past any room made: the table grows
  local m = 0
  for _ in pairs(row) do m = m + 1 end
  return { fields = fields, n = n, hidden = hidden, grown = m - n }
end)
sdf:to_topic(out)
]]

local function driver(opts) return testing.driver(H.write_script(SCRIPT, "jin.lua"), opts) end

-- What the pipeline's step must report for the JSON text `text`.
local function expected(text)
  local v = core.decode("json", text)
  local fields, n = {}, 0
  for k, x in pairs(v) do
    n = n + 1
    fields[#fields + 1] = { k, x == core.null and "null" or type(x), x == core.null and "null" or x }
  end
  table.sort(fields, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  return { fields = fields, n = n, hidden = false, grown = 12 }
end

local TEXTS = {
  '{"device":"phone-0001","ts":1764160000001,"gX":0.915075,"gY":-0.068512,"gZ":1e-3}',
  '{"device":"phone-0002","ts":1764160000002,"gX":1,"gY":-0,"gZ":2.5E+2}',
  ' { "device" : "phone-0003" , "ts" : 1764160000003 , "gX":0.1,"gY":0.2,"gZ":0.3 } \n',
  '{"ts":1764160000004,"device":"phone-0004","gX":0.1,"gY":0.2,"gZ":0.3}',            -- another order
  '{"device":"phone-0005","ts":1764160000005,"gX":null,"gY":true,"gZ":false}',          -- other kinds
  '{"device":"ph\\u006fne-0006","ts":1764160000006,"gX":0.1,"gY":0.2,"gZ":0.3}',       -- an escape
  '{"device":"phone-0007","ts":9007199254740993,"gX":0.1,"gY":0.2,"gZ":0.3}',          -- an int64
  '{"device":"phone-0008","ts":1764160000008,"gX":[1,2],"gY":{"a":1},"gZ":0.3}',       -- nested
  '{"device":"München ☃ 😀","":"empty key","ts":1764160000009}',                       -- UTF-8
  '{"a":1,"a":2}',                                                                     -- a repeated key
  '{"device":"phone-0001","ts":1764160000010,"gX":0.5,"gY":0.25,"gZ":-0.125}',         -- the first shape again
  '{"k":12345678.87654321,"l":-0.000123456789,"m":123456789012345678,"n":1e22}',
  '{"device":null,"ts":1764160000013,"gX":0.5,"gY":null,"gZ":-0.125}',               -- nulls in the first shape
  '{"device":"phone-0014","ts":true,"gX":false,"gY":0.25,"gZ":null}',               -- booleans
  '{"device":"phone-0015","ts":false,"gX":true,"gY":null,"gZ":7}',                  -- the same shape
}

describe("luastream.jsonin", function()
  it("builds every flat row as the decoder does, in a batch mixing shapes and other rows", function()
    local d = driver()
    local recs = {}
    for i, t in ipairs(TEXTS) do recs[i] = { key = "k" .. i, raw_value = t } end
    d:send_batch("in", recs)
    local got = d:read("out")
    assert.equal(#TEXTS, #got)
    for i, t in ipairs(TEXTS) do
      assert.equal("k" .. i, got[i].key)
      local want = expected(t)
      assert.same(want, got[i].value, "row " .. i .. ": " .. t)
    end
  end)

  it("builds rows right again in later batches, whatever width the outputs had", function()
    local d = driver()
    for round = 1, 3 do
      local recs = {}
      for i, t in ipairs(TEXTS) do recs[i] = { key = "k" .. i, raw_value = t } end
      d:send_batch("in", recs)
      local got = d:read("out")
      for i, t in ipairs(TEXTS) do
        assert.same(expected(t), got[#got - #TEXTS + i].value, "round " .. round .. ", row " .. i)
      end
    end
  end)

  it("drops a flat row whose key fails to decode, and builds the rows after it", function()
    local s = SCRIPT:gsub('app:topic%("in", { key = "string" }%)', 'app:topic("in", { key = "json" })')
    local d = testing.driver(H.write_script(s, "jin_key.lua"))
    local a, b = TEXTS[1], TEXTS[11]
    d:send_batch("in", {
      { raw_key = '"k1"', raw_value = a },
      { raw_key = "{bad", raw_value = b }, -- skipped (on_error = "skip")
      { raw_key = '"k3"', raw_value = b },
    })
    local got = d:read("out")
    assert.equal(2, #got)
    assert.equal("k1", got[1].key)
    assert.same(expected(a), got[1].value)
    assert.equal("k3", got[2].key)
    assert.same(expected(b), got[2].value)
  end)

  -- 6 columns added: padding keys make the room; 20: table.new does.
  for _, added in ipairs({ 6, 20 }) do
    it("makes room in later rows for " .. added .. " columns a pipeline adds, and no padding shows", function()
      local wide = ([[
local ls = require("luastream")
local app = ls.app{ name = "jin", on_error = "skip" }
local sdf = app:dataframe(app:topic("in", { key = "string" }))
sdf:update(function(row) for i = 1, ADDED do row["added" .. i] = i end end)
sdf:to_topic(app:topic("out", { key = "string" }))
]]):gsub("ADDED", added)
      local d = testing.driver(H.write_script(wide, "jin_wide" .. added .. ".lua"))
      local flat = { TEXTS[1], TEXTS[2], TEXTS[5], TEXTS[9], TEXTS[11], TEXTS[13], TEXTS[14] }
      for round = 1, 3 do -- the first round's outputs set the room the next ones get
        local recs = {}
        for i, t in ipairs(flat) do recs[i] = { key = "k" .. i, raw_value = t } end
        d:send_batch("in", recs)
        local got = d:read("out")
        for i, t in ipairs(flat) do
          local want = core.decode("json", t)
          for k = 1, added do want["added" .. k] = k end
          assert.same(want, got[#got - #flat + i].value, "round " .. round .. ", row " .. i)
        end
      end
    end)
  end

  it("builds a topic's rows right when they turn flat after many that are not", function()
    local d = driver()
    local texts = {}
    for i = 1, 1500 do -- nested rows first: the flat parse is then skipped for a while
      texts[i] = i <= 1000 and string.format('{"v":{"i":%d},"s":"x"}', i) or string.format('{"i":%d,"s":"y"}', i)
    end
    for first = 1, #texts, 250 do
      local recs = {}
      for i = first, first + 249 do recs[#recs + 1] = { key = "k", raw_value = texts[i] } end
      d:send_batch("in", recs)
    end
    local got = d:read("out")
    assert.equal(#texts, #got)
    for i, t in ipairs(texts) do assert.same(expected(t), got[i].value, "row " .. i) end
  end)

  it("builds rows of more shapes than the decoder keeps", function()
    local d = driver()
    local recs, texts = {}, {}
    for i = 1, jsonin.SHAPES_MAX + 8 do
      texts[i] = string.format('{"f%d":%d,"s":"x%d"}', i, i, i)
      recs[i] = { key = "k" .. i, raw_value = texts[i] }
    end
    d:send_batch("in", recs)
    d:send_batch("in", recs)
    local got = d:read("out")
    assert.equal(2 * #texts, #got)
    for j, r in ipairs(got) do
      assert.same(expected(texts[(j - 1) % #texts + 1]), r.value)
    end
  end)
end)

describe("jsonin.padding", function()
  local function hsize(n)
    local size = 1
    while size < n do size = size * 2 end
    return size
  end

  it("makes room for width fields in no more nodes than a table made with that room", function()
    assert.equal(0, jsonin.padding(5, 0))
    assert.equal(0, jsonin.padding(5, 5))
    assert.equal(0, jsonin.padding(5, 8))   -- 8 nodes hold 5 keys and 3 more
    assert.equal(4, jsonin.padding(5, 9))   -- 9 keys: 16 nodes, 7 free
    assert.equal(4, jsonin.padding(5, 12))
    assert.is_nil(jsonin.padding(5, 16))    -- would take 32 nodes: table.new(0, 16) instead
    assert.is_nil(jsonin.padding(3, 8))
    assert.equal(0, jsonin.padding(10, 12)) -- 16 nodes already
    local padded = 0
    for nf = 1, 32 do
      for width = 0, 255 do
        local pad = jsonin.padding(nf, width)
        if pad then
          padded = padded + 1
          local size = hsize(nf + pad)
          assert.is_true(size - nf - pad >= width - nf, nf .. " fields, width " .. width)
          assert.is_true(size <= hsize(math.max(nf, width)), nf .. " fields, width " .. width)
        end
      end
    end
    assert.equal(2358, padded) -- of the 32 * 256 cases; the others get table.new
  end)
end)
