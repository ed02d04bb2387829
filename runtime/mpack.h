/* mpack.h - MessagePack <-> Lua values.
 *
 * The "msgpack" serializer of a topic (through codec.c) and the encoding of
 * state values use these functions. Values follow luavalue.h: msgpack nil
 * is ls.null, arrays carry the array marker, integers beyond 2^53 are int64 /
 * uint64 cdata, vecs (ls.vec) are arrays of float64 or, in state values, the
 * ext type below. Encoding uses msgpack-c's packer; decoding builds the Lua
 * values straight on the stack (see mpack.c for why).
 *
 * Both functions may raise Lua errors only for out-of-memory conditions, so
 * call them inside a protected Lua call. */
#ifndef LS_MPACK_H
#define LS_MPACK_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"

/* Deepest nesting of arrays and maps either direction accepts. */
#define LS_MPACK_MAX_DEPTH 128

/* The ext type of a vec ('V'): its doubles, 8 bytes each, little-endian, as
 * the payload (so an empty vec has an empty payload). Written only with
 * LS_VEC_EXT (state values); always decoded, to a vec holding the same bits
 * (but for the NaNs LuaJIT cannot hold, which ls_vec_clean in vec.h makes
 * canonical). */
#define LS_MPACK_EXT_VEC 0x56

/* Decodes exactly one MessagePack object from p[0..n) and pushes it.
 * Returns 0, or -1 with a message in err and the stack unchanged (malformed,
 * truncated or trailing input, a nil or NaN map key, an ext type other than
 * LS_MPACK_EXT_VEC or one whose size is not a multiple of 8, too deep).
 * Messages end in the byte offset, from 0, of the value they are about:
 * "truncated input at byte 12" is a value starting at byte 12 that the input
 * ends inside. */
int ls_mpack_decode(lua_State *L, const char *p, size_t n, char *err, size_t errlen);
/* The same with option flags (luavalue.h): with LS_ARRAYS_VEC an array whose
 * elements are all integers or floats (or that is empty) becomes a vec, each
 * element the nearest double (a float32 exactly, integers beyond 2^53
 * rounded). */
int ls_mpack_decode_opts(lua_State *L, const char *p, size_t n, int flags, char *err, size_t errlen);

/* Appends the MessagePack form of the value at idx to out. Returns 0, or -1
 * with a message naming the path of the bad value, array indexes from 0
 * ("cannot encode a function at $.a[2]"), and out->len restored. */
int ls_mpack_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen);
/* The same with option flags. A vec is an array of float64 (every element,
 * NaN and infinities included), or with LS_VEC_EXT the ext type
 * LS_MPACK_EXT_VEC. */
int ls_mpack_encode_opts(lua_State *L, int idx, int flags, ls_buf *out, char *err, size_t errlen);

#endif
