/* mpack.h - MessagePack <-> Lua values.
 *
 * The "msgpack" serializer of a topic (through codec.c) and the encoding of
 * state values use these two functions. Values follow luavalue.h: msgpack nil
 * is ls.null, arrays carry the array marker, integers beyond 2^53 are int64 /
 * uint64 cdata. Encoding uses msgpack-c's packer; decoding builds the Lua
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

/* Decodes exactly one MessagePack object from p[0..n) and pushes it.
 * Returns 0, or -1 with a message in err and the stack unchanged (malformed,
 * truncated or trailing input, a nil or NaN map key, an ext type, too deep).
 * Messages end in the byte offset, from 0, of the value they are about:
 * "truncated input at byte 12" is a value starting at byte 12 that the input
 * ends inside. */
int ls_mpack_decode(lua_State *L, const char *p, size_t n, char *err, size_t errlen);

/* Appends the MessagePack form of the value at idx to out. Returns 0, or -1
 * with a message naming the path of the bad value, array indexes from 0
 * ("cannot encode a function at $.a[2]"), and out->len restored. */
int ls_mpack_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen);

#endif
