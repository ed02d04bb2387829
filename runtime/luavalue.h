/* luavalue.h - the Lua values every codec shares.
 *
 * ls.null (a NULL light userdata, like cjson.null), the one array marker
 * metatable that makes [] and {} round-trip, and 64-bit integers, which Lua
 * holds as LuaJIT int64_t / uint64_t cdata. The codecs (json.c, msgpack.c,
 * codec.c) use only these helpers, so all formats agree on what a value is.
 * ls_value_init() must run once per lua_State before any codec is used.
 * Vecs (ls.vec, runtime/vec.h) are the one other value the codecs know; the
 * option flags below say how they read and write them. */
#ifndef LS_LUAVALUE_H
#define LS_LUAVALUE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* LuaJIT's type tag for cdata (not in the public lua.h). */
#define LS_LUA_TCDATA 10

/* Codec options, bit flags (ls_decode_opts / ls_encode_opts in codec.h).
 * LS_ARRAYS_VEC: decoding json or msgpack, an array whose elements are all
 *   numbers (none at all included) becomes a vec rather than a table.
 * LS_VEC_EXT: encoding msgpack, a vec is written as the ext type
 *   LS_MPACK_EXT_VEC (mpack.h), which decodes back to a vec, rather than as
 *   an array of float64. State values use it.
 * LS_ROW_WIDTH(n): decoding json or msgpack, a top-level object's table is
 *   made with room for at least n fields (at most LS_ROW_WIDTH_MAX), so that
 *   columns a pipeline adds to a row need no rehash of it. batch.c passes the
 *   widest flat row the pipeline wrote last (luastream.jsonout). */
#define LS_ARRAYS_VEC 1
#define LS_VEC_EXT 2
#define LS_ROW_WIDTH_SHIFT 8
#define LS_ROW_WIDTH_MAX 255
#define LS_ROW_WIDTH(n) (((n) < 0 ? 0 : (n) > LS_ROW_WIDTH_MAX ? LS_ROW_WIDTH_MAX : (n)) << LS_ROW_WIDTH_SHIFT)
#define LS_ROW_WIDTH_OF(flags) (((flags) >> LS_ROW_WIDTH_SHIFT) & LS_ROW_WIDTH_MAX)

/* Sets up the registry entries below. Needs the ffi library loadable. */
void ls_value_init(lua_State *L);

void ls_push_null(lua_State *L);
int ls_is_null(lua_State *L, int idx);

/* Pushes the shared array marker metatable. */
void ls_push_array_mt(lua_State *L);
/* Sets the array marker on the table at the top of the stack. */
void ls_mark_array(lua_State *L);

/* Decides how the table at idx encodes. Returns 1 for an array and stores its
 * length in *n: a table carrying the array marker (any length, even 0), or an
 * unmarked table whose keys are exactly 1..n (n >= 1). Returns 0 for an object
 * (an unmarked empty table is an object). */
int ls_table_is_array(lua_State *L, int idx, size_t *n);

/* An integer as Lua sees it: a number within +-2^53, else int64_t cdata. */
void ls_push_integer(lua_State *L, int64_t v);

/* A k-byte (k <= 8) big-endian unsigned integer, and the same sign-extended
 * from k bytes (k = 1, 2, 4 or 8). */
static inline uint64_t ls_be_read(const unsigned char *p, size_t k) {
  uint64_t v = 0;
  for (size_t i = 0; i < k; i++) v = (v << 8) | p[i];
  return v;
}
static inline int64_t ls_be_read_signed(const unsigned char *p, size_t k) {
  uint64_t u = ls_be_read(p, k);
  switch (k) {
  case 1: return (int8_t)u;
  case 2: return (int16_t)u;
  case 4: return (int32_t)u;
  default: return (int64_t)u;
  }
}

/* 64-bit integers as LuaJIT cdata. */
void ls_push_int64(lua_State *L, int64_t v);
void ls_push_uint64(lua_State *L, uint64_t v);
/* If the value at idx is int64_t/uint64_t cdata, stores it and returns 1
 * (*is_unsigned set for uint64_t); otherwise returns 0. */
int ls_to_int64(lua_State *L, int idx, int64_t *v, int *is_unsigned);

#endif
