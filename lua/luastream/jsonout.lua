-- luastream.jsonout: the JSON text of flat output rows, written from Lua
-- (docs/internals.md, "Encoding outputs").
--
--   jsonout.write(buf, nout, val, topic, is_json, json_end)
--
-- Most outputs are flat tables of strings, numbers and booleans. C's encoder
-- (runtime/json.c) reads them through the Lua C API, a lua_next, lua_type and
-- lua_tolstring per field; here a compiled loop walks the row with pairs and
-- hands each field to one FFI call (ls_ffi_json_*), which writes it with the
-- C encoder's own functions. The text is the same byte for byte, fields in the
-- same order (pairs walks a table as lua_next does). Anything else (nested
-- tables, int64 cdata, vecs, ls.null, a table with a metatable, numeric keys,
-- a NaN, invalid UTF-8) is left to C, which encodes it or reports the error
-- with its path as before.
local ffi = require("ffi")

-- ls_buf is declared once per Lua state (see luastream.runtime for why).
if not pcall(ffi.typeof, "ls_buf") then
  ffi.cdef([[
typedef struct ls_buf { char *data; size_t len; size_t cap; } ls_buf;
]])
end
ffi.cdef([[
int ls_ffi_json_num(ls_buf *out, int sep, const char *key, size_t keylen, double v);
int ls_ffi_json_str(ls_buf *out, int sep, const char *key, size_t keylen, const char *s, size_t n);
int ls_ffi_json_bool(ls_buf *out, int sep, const char *key, size_t keylen, bool v);
int ls_ffi_json_close(ls_buf *out);
]])
assert(ffi.sizeof("ls_buf") == 3 * ffi.sizeof("void *") and ffi.offsetof("ls_buf", "len") == ffi.sizeof("void *"),
  "luastream.jsonout: ls_buf is declared with another layout than runtime/buf.h's")

local C = ffi.C
local buf_ptr_t = ffi.typeof("ls_buf *")
local type, pairs, getmetatable, tonumber = type, pairs, getmetatable, tonumber

local M = {}

local OPEN, COMMA = 123, 44 -- '{', ','

-- Appends the JSON object of row to b and returns its number of fields; false
-- when C must do it (b.len is then undefined).
local function write_row(b, row)
  if getmetatable(row) ~= nil then return false end
  local sep, n = OPEN, 0
  for k, v in pairs(row) do
    if type(k) ~= "string" then return false end
    local tv = type(v)
    local rc
    if tv == "number" then
      rc = C.ls_ffi_json_num(b, sep, k, #k, v)
    elseif tv == "string" then
      rc = C.ls_ffi_json_str(b, sep, k, #k, v, #v)
    elseif tv == "boolean" then
      rc = C.ls_ffi_json_bool(b, sep, k, #k, v)
    else
      return false
    end
    if rc ~= 0 then return false end
    sep, n = COMMA, n + 1
  end
  -- {} without a metatable is an object to C too, but rare enough to leave
  return n > 0 and C.ls_ffi_json_close(b) == 0 and n
end

-- Writes the values of outputs 1..nout whose topic (topic[j]) is_json, one
-- after the other into the ls_buf buf (a light userdata, or nil: none), and
-- sets json_end[j] to where each ends, or -1 for those left to C. Returns the
-- most fields one of those rows had (0: none written), which the decoder
-- takes as the room to make in the next rows (runtime.lua's finish).
function M.write(buf, nout, val, topic, is_json, json_end)
  if buf == nil then
    for j = 1, nout do json_end[j] = -1 end
    return 0
  end
  local b = ffi.cast(buf_ptr_t, buf)
  b.len = 0
  local width = 0
  for j = 1, nout do
    local v, e = val[j], -1
    if is_json[topic[j]] and type(v) == "table" then
      local start = b.len
      local n = write_row(b, v)
      if n then
        e = tonumber(b.len)
        if n > width then width = n end
      else
        b.len = start
      end
    end
    json_end[j] = e
  end
  return width
end

return M
