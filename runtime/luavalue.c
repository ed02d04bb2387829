/* luavalue.c - ls.null, the array marker and 64-bit integers (see luavalue.h).
 *
 * LuaJIT's public C API cannot create or read cdata, so the int64 helpers go
 * through two tiny Lua functions kept in the registry; they run only for
 * integers beyond 2^53, which are rare in practice. */
#include "luavalue.h"

#include <lauxlib.h>

static const char KEY_ARRAY_MT[] = "luastream.array_mt";
static const char KEY_I64_PUSH[] = "luastream.i64_push";
static const char KEY_I64_READ[] = "luastream.i64_read";

static const char I64_SRC[] =
    "local ffi = require('ffi')\n"
    "local i64p, u64p = ffi.typeof('int64_t *'), ffi.typeof('uint64_t *')\n"
    "local push = function(p, u)\n"
    "  if u then return ffi.cast(u64p, p)[0] end\n"
    "  return ffi.cast(i64p, p)[0]\n"
    "end\n"
    "local read = function(v, p)\n"
    "  if ffi.istype('int64_t', v) then ffi.cast(i64p, p)[0] = v return 1 end\n"
    "  if ffi.istype('uint64_t', v) then ffi.cast(u64p, p)[0] = v return 2 end\n"
    "  return 0\n"
    "end\n"
    "return push, read\n";

void ls_value_init(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_ARRAY_MT);
  int done = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (done) return;
  lua_newtable(L);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__luastream");
  lua_setfield(L, LUA_REGISTRYINDEX, KEY_ARRAY_MT);
  if (luaL_loadbuffer(L, I64_SRC, sizeof(I64_SRC) - 1, "=luavalue") != 0) lua_error(L);
  lua_call(L, 0, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, KEY_I64_READ);
  lua_setfield(L, LUA_REGISTRYINDEX, KEY_I64_PUSH);
}

void ls_push_null(lua_State *L) { lua_pushlightuserdata(L, NULL); }

int ls_is_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

void ls_push_array_mt(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, KEY_ARRAY_MT); }

void ls_mark_array(lua_State *L) {
  ls_push_array_mt(L);
  lua_setmetatable(L, -2);
}

static int has_array_mark(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  ls_push_array_mt(L);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

int ls_table_is_array(lua_State *L, int idx, size_t *n) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (has_array_mark(L, idx)) {
    *n = lua_objlen(L, idx);
    return 1;
  }
  lua_rawgeti(L, idx, 1);
  int first = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!first) return 0;
  /* Keys must be exactly 1..len: count them and check each is an integer in range. */
  size_t len = lua_objlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) { lua_pop(L, 1); return 0; }
    lua_Number k = lua_tonumber(L, -1);
    if (k < 1 || k > (lua_Number)len || k != (lua_Number)(size_t)k) { lua_pop(L, 1); return 0; }
    count++;
  }
  if (count != len) return 0;
  *n = len;
  return 1;
}

void ls_push_integer(lua_State *L, int64_t v) {
  const int64_t lim = INT64_C(1) << 53;
  if (v >= -lim && v <= lim) lua_pushnumber(L, (lua_Number)v);
  else ls_push_int64(L, v);
}

void ls_push_int64(lua_State *L, int64_t v) {
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_I64_PUSH);
  lua_pushlightuserdata(L, &v);
  lua_call(L, 1, 1);
}

void ls_push_uint64(lua_State *L, uint64_t v) {
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_I64_PUSH);
  lua_pushlightuserdata(L, &v);
  lua_pushboolean(L, 1);
  lua_call(L, 2, 1);
}

int ls_to_int64(lua_State *L, int idx, int64_t *v, int *is_unsigned) {
  if (lua_type(L, idx) != LS_LUA_TCDATA) return 0;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  uint64_t slot = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_I64_READ);
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &slot);
  lua_call(L, 2, 1);
  int kind = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (kind == 0) return 0;
  *v = (int64_t)slot;
  *is_unsigned = (kind == 2);
  return 1;
}
