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
-- as their values are nil, pairs, next and the encoders never see them. When
-- padding would take more nodes than a table made with room for width has,
-- the rows are made with table.new and one insert per field instead, as C's
-- decoder would make them.
local ffi = require("ffi")
local core = require("luastream.core")

local SHAPES_MAX = 16 -- LS_JSON_SHAPES_MAX

if not pcall(ffi.typeof, "ls_json_flat_rows") then
  ffi.cdef(string.format([[
typedef struct ls_json_slot { double v; const char *s; uint32_t n; uint32_t null; } ls_json_slot;
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
  ffi.offsetof("ls_json_flat_rows", "slot") == 8 + 3 * ffi.sizeof("void *") and
  ffi.offsetof("ls_json_flat_rows", "serial") == 8 + 4 * ffi.sizeof("void *"),
  "luastream.jsonin: ls_json_flat is declared with another layout than runtime/json.h's")

local C = ffi.C
local flat_t = ffi.typeof("ls_json_flat_rows *")
local len_t = ffi.typeof("size_t[1]")
local fmt, concat = string.format, table.concat
local bit = require("bit")
local band, lshift = bit.band, bit.lshift
local tnew = require("table.new")

local M = {}

-- The kinds of runtime/json.h. A null can be in a field of any kind (the
-- slot says so); a NULL field holds nothing else.
local NUM, STR, BOOL, NULL = 1, 2, 3, 4
local PLACEHOLDER = { [NUM] = "0", [STR] = '""', [BOOL] = "false", [NULL] = "false" }
local WIDTH_MAX = 255 -- LS_ROW_WIDTH_MAX: the room C's decoder makes at most
local BUILT_MAX = 256 -- builders kept before all are dropped (rebuilt as needed)

-- The hash part of a table made with room for n keys (lua_createtable,
-- table.new): the smallest power of two not below n.
local function hsize(n)
  local size = 1
  while size < n do size = size * 2 end
  return size
end

-- How many padding keys give a row of nf fields room for width fields in
-- all, in no more nodes than a table made with room for width has: a template
-- is as large as its keys, and the nodes padding keys hold are not free for
-- new keys. nil when padding cannot; such rows are made with table.new.
function M.padding(nf, width)
  if width <= hsize(nf) then return 0 end
  local size = hsize(width)
  local pad = size / 2 + 1 - nf -- the least that makes the template this size
  if pad < 0 then pad = 0 end
  if size - nf - pad >= width - nf then return pad end
  return nil
end

-- The statement storing field i (key k, kind kind) of a row into t.
local function store(k, kind, i)
  local slot = fmt("slot[o + %d]", i - 1)
  if kind == NULL then return fmt("t[%s] = null", k) end
  local value = kind == NUM and slot .. ".v" or kind == STR and fmt("fs(%s.s, %s.n)", slot, slot) or
    slot .. ".v ~= 0"
  return fmt("if %s.null ~= 0 then t[%s] = null else t[%s] = %s end", slot, k, k, value)
end

-- The Lua source of the builder of shape s (nf fields): each row a copy of a template
-- with pad padding keys, or (pad nil) a table.new with room for width.
local function source(f, s, nf, pad, width)
  local len = len_t()
  local template, stores = {}, {}
  for i = 1, nf do
    local p = C.ls_ffi_json_shape_key(f, s, i - 1, len)
    local k, kind = fmt("%q", ffi.string(p, len[0])), C.ls_ffi_json_shape_kind(f, s, i - 1)
    template[i] = fmt("[%s] = %s", k, PLACEHOLDER[kind])
    stores[i] = store(k, kind, i)
  end
  for i = 1, pad or 0 do
    local k = fmt("%q", "\0pad" .. i)
    template[#template + 1] = fmt("[%s] = false", k)
    stores[#stores + 1] = fmt("t[%s] = nil", k)
  end
  local make = pad and "{ " .. concat(template, ", ") .. " }" or fmt("tnew(0, %d)", width)
  return concat({
    "local fs, null, tnew = ...\n",
    "return function(f, rows, S)\n",
    "  local row, shape, first, slot = f.row, f.shape, f.first, f.slot\n",
    "  for j = 0, f.n - 1 do\n",
    "    if shape[j] == S then\n",
    "      local o = first[j]\n",
    "      local t = ", make, "\n",
    "      ", concat(stores, "\n      "), "\n",
    "      rows[row[j]] = t\n",
    "    end\n",
    "  end\n",
    "end\n" })
end

-- Per Lua state: a shape's serial -> its builders, by padding (>= 0) or by
-- the negated room of table.new. A batch's decoder numbers its shapes from 1;
-- the serial tells one batch's shape 1 from another's, whose batch may be
-- gone: past BUILT_MAX builders, all are dropped.
local built, nbuilt = {}, 0

local function builder(f, s, width)
  local nf = C.ls_ffi_json_shape_fields(f, s)
  local pad = M.padding(nf, width)
  local room = pad == nil and hsize(width) or nil
  local variant = pad or -room
  local serial = f.serial[s - 1]
  local by = built[serial]
  local fn = by and by[variant]
  if fn then return fn end
  if nbuilt >= BUILT_MAX then built, nbuilt, by = {}, 0, nil end
  fn = assert(loadstring(source(f, s, nf, pad, room), "=[luastream.jsonin shape " .. s .. "]"))(ffi.string, core.null,
    tnew)
  if not by then
    by = {}
    built[serial] = by
  end
  by[variant], nbuilt = fn, nbuilt + 1
  return fn
end

-- Builds the table of every row in flat (a light userdata: runtime/json.h's
-- ls_json_flat) into rows, with room for width fields (rt.row_width).
function M.build(flat, rows, width)
  local f = ffi.cast(flat_t, flat)
  if width > WIDTH_MAX then width = WIDTH_MAX end
  local used = f.used
  for s = 1, SHAPES_MAX do
    if band(used, lshift(1, s - 1)) ~= 0 then builder(f, s, width)(f, rows, s) end
  end
end

M.SHAPES_MAX = SHAPES_MAX

return M
