-- luastream.jsonout: the JSON text of flat output rows written from Lua must
-- be the C encoder's (core.encode) byte for byte, and everything else must be
-- left to C (json_end -1). Needs the real luastream.core and the binary's FFI
-- entry points: run with `luastream test`.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "helpers.lua")
local ffi = require("ffi")
local core = H.core

if not H.real_core or not pcall(function() return ffi.C.ls_ffi_vec_sum end) then
  describe("luastream.jsonout", function()
    pending("needs the luastream binary (run with `luastream test`)")
  end)
  return
end

local jsonout = require("luastream.jsonout")
local ls = require("luastream")
ffi.cdef("void free(void *);")

-- Runs jsonout.write over vals (topic ids in topics, JSON topics in is_json);
-- returns json_end and the text of each written value (false: left to C).
-- The third result is write's: the most fields of a row it wrote.
local function write(vals, topics, is_json)
  local b = ffi.new("ls_buf[1]")
  local ends = {}
  local width = jsonout.write(ffi.cast("void *", b), #vals, vals, topics, is_json, ends)
  local texts, pos = {}, 0
  for j = 1, #vals do
    if ends[j] >= 0 then
      texts[j] = ffi.string(b[0].data + pos, ends[j] - pos)
      pos = ends[j]
    else
      texts[j] = false
    end
  end
  assert.same(pos, tonumber(b[0].len))
  ffi.C.free(b[0].data)
  return ends, texts, width
end

local function write_one(row)
  local _, texts = write({ row }, { 1 }, { true })
  return texts[1]
end

local negz = tonumber("-0")

describe("luastream.jsonout", function()
  it("writes flat rows exactly as the C encoder does", function()
    local rows = {
      { device = "phone-0007", ts = 1764160000020, gX = 0.012345, gY = -0.981234, gZ = 0.153021 },
      { gTotal = math.sqrt(2), dG = -1 / 3, crash = true, ok = false, n = 0, z = negz },
      { big = 2 ^ 53, bigger = 2 ^ 60, huge = 1.5e300, tiny = 1e-7, small = 0.000001, neg = -123456.75 },
      { quote = 'say "hi"\n', tab = "a\tb", ctl = "\1\31", uni = "héllo ☃ 😀", slash = "a/b\\c" },
      { [""] = "empty key", e = "" },
      { ['a"b'] = 1, ["tab\t"] = 2, ["é"] = 3, ["☃ key"] = "v" },
      { ['1234567"'] = 1, ["12345678"] = 2, ["1234567\\"] = 3, ["123456789"] = 4 },
      { ['a_long_key_"quoted"'] = 1, ["clé_longue_à_écrire"] = true, ["a_long_plain_key_1"] = "x" },
      { k = 9999999.12345678, j = 10000000.5, m = 0.1 + 0.2, frac8 = 1.23456789, frac9 = 0.123456789 },
    }
    for _, row in ipairs(rows) do
      assert.same(core.encode("json", row), write_one(row))
    end
  end)

  it("writes rows of many random shapes and numbers as the C encoder does", function()
    local seed = 12345
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
    local pool = { "a", "bb", "device", "gTotal", "longer_key_name_here", "x1", "é" }
    for _ = 1, 2000 do
      local row = {}
      for _ = 1, 1 + rnd(8) do
        local k, kind = pool[1 + rnd(#pool)], rnd(5)
        if kind == 0 then row[k] = rnd(2000000) / 10 ^ rnd(10) - 1000
        elseif kind == 1 then row[k] = (rnd(2147483647) / 2147483647) * 10 ^ (rnd(40) - 20)
        elseif kind == 2 then row[k] = rnd(2) == 1
        elseif kind == 3 then row[k] = string.rep("s\"", rnd(4)) .. "t"
        else row[k] = rnd(1000000) end
      end
      assert.same(core.encode("json", row), write_one(row))
    end
  end)

  it("leaves to C what is not a flat row of strings, numbers and booleans", function()
    local marked = ls.array and ls.array({}) or nil
    local bad_utf8 = "\255"
    local cases = {
      { nested = { a = 1 } },
      { n = ls.null },
      { big = ffi.new("int64_t", 1) },
      { v = ls.vec and ls.vec.new(2) or {} },
      { x = 0 / 0 },
      { x = math.huge },
      { s = bad_utf8 },
      { [bad_utf8] = 1 },
      { ["long_key_then_bad" .. bad_utf8] = 1 },
      { 1, 2, 3 },
      { [1.5] = "numeric key" },
      {},
      setmetatable({ a = 1 }, {}),
      "a string",
      42,
    }
    if marked then cases[#cases + 1] = marked end
    for i, v in ipairs(cases) do
      local ends = write({ v }, { 1 }, { true })
      assert.same(-1, ends[1], "case " .. i)
    end
  end)

  it("writes only the values of JSON topics, one after the other", function()
    local vals = { { a = 1 }, { b = 2 }, { c = { 3 } }, { d = "x" }, { e = true } }
    local ends, texts = write(vals, { 1, 2, 1, 1, 2 }, { true, false })
    assert.same({ '{"a":1}', false, false, '{"d":"x"}', false }, texts)
    assert.same({ 7, -1, -1, 16, -1 }, ends)
  end)

  it("returns the most fields of a row it wrote, for the decoder's room", function()
    local wide = { a = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7, h = 8, i = 9 }
    local _, _, width = write({ { a = 1 }, wide, { a = 1, b = 2 } }, { 1, 1, 1 }, { true })
    assert.same(9, width)
    -- rows left to C, and rows of other topics, do not count
    _, _, width = write({ { a = 1, b = { 2 } }, wide, { x = 1, y = 2 } }, { 1, 2, 1 }, { true, false })
    assert.same(2, width)
    _, _, width = write({ { a = { 1 } } }, { 1 }, { true })
    assert.same(0, width)
  end)

  it("marks every output as left to C when there is no buffer", function()
    local ends = { 5, 6 }
    assert.same(0, jsonout.write(nil, 2, { { a = 1 }, { b = 2 } }, { 1, 1 }, { true }, ends))
    assert.same({ -1, -1 }, ends)
  end)

  it("lets C report the error of a value it declined", function()
    local ok, err = pcall(core.encode, "json", { x = 0 / 0 })
    assert.is_false(ok)
    assert.matches("cannot encode NaN or infinity at %$%.x", err)
  end)
end)
