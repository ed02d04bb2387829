-- luastream.jsonin: the tables of a batch's flat JSON rows, built from what
-- C's decoder parsed (docs/internals.md, "Decoding inputs").
--
--   jsonin.build(flat, rows, width)
--
-- runtime/json.c parses each flat row (an object of numbers, strings without
-- escapes, booleans and nulls) into slots and leaves false at its place in
-- rows; build replaces each with its table. It compiles one loop per shape
-- (the keys in order, with the kind of each value) that makes every row of
-- that shape from one table template: a copy of the template, then one store
-- per field into a slot that is already there. That is cheaper than inserting
-- each key through the C API, and the loop is a JIT trace, no C call per row.
--
-- width is rt.row_width, the room to make for the columns a pipeline adds:
-- the template then holds padding keys that each row sets to nil, so that the
-- copy's hash part has room without a resize. Padding keys begin with a NUL
-- byte, which no key of a flat row can (a key with an escape is not flat), and
-- as their values are nil, pairs, next and the encoders never see them.
local ffi = require("ffi")
local core = require("luastream.core")

local SHAPES_MAX = 16 -- LS_JSON_SHAPES_MAX

if not pcall(ffi.typeof, "ls_json_flat_rows") then
  ffi.cdef(string.format([[
typedef struct ls_json_slot { double v; const char *s; uint32_t n; uint32_t spare; } ls_json_slot;
typedef struct ls_json_flat_rows {
  int32_t n;
  uint32_t used;
  int32_t *row, *shape, *first;
  ls_json_slot *slot;
  uint32_t serial[%d];
} ls_json_flat_rows;
int ls_ffi_json_shape_fields(const ls_json_flat_rows *f, int s);
const char *ls_ffi_json_shape_key(const ls_json_flat_rows *f, int s, int i, size_t *len);
int ls_ffi_json_shape_kind(const ls_json_flat_rows *f, int s, int i);
]], SHAPES_MAX))
end
assert(ffi.sizeof("ls_json_slot") == 24 and ffi.offsetof("ls_json_slot", "n") == 16 and
  ffi.offsetof("ls_json_flat_rows", "slot") == 8 + 3 * ffi.sizeof("void *"),
  "luastream.jsonin: ls_json_flat is declared with another layout than runtime/json.h's")

local C = ffi.C
local flat_t = ffi.typeof("ls_json_flat_rows *")
local len_t = ffi.typeof("size_t[1]")
local fmt, concat = string.format, table.concat
local bit = require("bit")
local band, lshift = bit.band, bit.lshift

local M = {}

-- The kinds of runtime/json.h.
local NUM, STR, TRUE, FALSE, NULL = 1, 2, 3, 4, 5
local PLACEHOLDER = { [NUM] = "0", [STR] = '""', [TRUE] = "true", [FALSE] = "false", [NULL] = "0" }
local PAD_MAX = 255   -- LS_ROW_WIDTH_MAX

-- How many padding keys give a row of nf fields room for width in all
-- without a resize: its hash part is the smallest power of two above the keys
-- of the template, and the nodes the padding holds are not free for new keys.
function M.padding(nf, width)
  if width <= nf then return 0 end
  local size = 1
  while size < nf do size = size * 2 end
  while true do
    local pad = size / 2 + 1 - nf -- the least that makes the template this size
    if pad < 0 then pad = 0 end
    if size - nf - pad >= width - nf then return pad end
    size = size * 2
    if pad > PAD_MAX then return 0 end
  end
end

-- The Lua source of the builder of shape s with pad padding keys.
local function source(f, s, pad)
  local nf = C.ls_ffi_json_shape_fields(f, s)
  local len = len_t()
  local keys, kinds = {}, {}
  for i = 0, nf - 1 do
    local p = C.ls_ffi_json_shape_key(f, s, i, len)
    keys[i + 1], kinds[i + 1] = fmt("%q", ffi.string(p, len[0])), C.ls_ffi_json_shape_kind(f, s, i)
  end
  local template, stores = {}, {}
  for i = 1, nf do
    template[#template + 1] = fmt("[%s] = %s", keys[i], PLACEHOLDER[kinds[i]])
    local slot = fmt("slot[o + %d]", i - 1)
    if kinds[i] == NUM then
      stores[#stores + 1] = fmt("t[%s] = %s.v", keys[i], slot)
    elseif kinds[i] == STR then
      stores[#stores + 1] = fmt("t[%s] = fs(%s.s, %s.n)", keys[i], slot, slot)
    elseif kinds[i] == NULL then
      stores[#stores + 1] = fmt("t[%s] = null", keys[i])
    end
  end
  for i = 1, pad do
    local k = fmt("%q", "\0pad" .. i)
    template[#template + 1] = fmt("[%s] = false", k)
    stores[#stores + 1] = fmt("t[%s] = nil", k)
  end
  return concat({
    "local fs, null = ...\n",
    "return function(f, rows, S)\n",
    "  local row, shape, first, slot = f.row, f.shape, f.first, f.slot\n",
    "  for j = 0, f.n - 1 do\n",
    "    if shape[j] == S then\n",
    "      local o = first[j]\n",
    "      local t = { ", concat(template, ", "), " }\n",
    "      ", concat(stores, "\n      "), "\n",
    "      rows[row[j]] = t\n",
    "    end\n",
    "  end\n",
    "end\n" })
end

-- Per Lua state: a shape's serial -> { fn, pad }. A batch's decoder numbers
-- its shapes from 1; the serial tells one batch's shape 1 from another's.
local built = {}

local function builder(f, s, pad)
  local serial = f.serial[s - 1]
  local b = built[serial]
  if b and b.pad == pad then return b.fn end
  local fn = assert(loadstring(source(f, s, pad), "=[luastream.jsonin shape " .. s .. "]"))(ffi.string, core.null)
  built[serial] = { fn = fn, pad = pad }
  return fn
end

-- Builds the table of every row in flat (a light userdata: runtime/json.h's
-- ls_json_flat) into rows, with room for width fields.
function M.build(flat, rows, width)
  local f = ffi.cast(flat_t, flat)
  local used = f.used
  for s = 1, SHAPES_MAX do
    if band(used, lshift(1, s - 1)) ~= 0 then
      builder(f, s, M.padding(C.ls_ffi_json_shape_fields(f, s), width))(f, rows, s)
    end
  end
end

M.SHAPES_MAX = SHAPES_MAX

return M
