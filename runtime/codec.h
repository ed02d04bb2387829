/* codec.h - the serializers a topic's key or value can use, and their dispatch.
 *
 * batch.c decodes every consumed key and value with ls_decode_opts and
 * encodes every output with ls_encode, using the formats (and the arrays
 * option) named in the topic's options. State values are msgpack written
 * with LS_VEC_EXT (luastream.state: encode("msgpack", v, { vecs = "ext" }))
 * and read back by checkpoint.c with ls_decode.
 * JSON lives in json.c and MessagePack in mpack.c; the simple fixed-width and
 * string formats (Kafka's String/Bytes/Long/Double serializers) live here.
 * ls_codec_open exposes the same dispatch to Lua as encode(fmt, v) and
 * decode(fmt, s), with ls.null and the array marker. Vecs (ls.vec) encode
 * as arrays of numbers in json and msgpack; decoding makes them only when
 * asked (LS_ARRAYS_VEC, the topic option arrays = "vec") or from msgpack's
 * vec ext type (state values). */
#ifndef LS_CODEC_H
#define LS_CODEC_H

#include <stddef.h>

#include <lua.h>

#include "buf.h"
#include "luavalue.h" /* the option flags LS_ARRAYS_VEC, LS_VEC_EXT */

typedef enum {
  LS_FMT_JSON,
  LS_FMT_STRING,
  LS_FMT_BYTES,
  LS_FMT_MSGPACK,
  LS_FMT_INT,
  LS_FMT_DOUBLE
} ls_format;

/* The canonical names only: "json", "string", "bytes", "msgpack", "int",
 * "double" (the Lua side resolves aliases such as "str" and "integer").
 * Returns 0, or -1 for any other name. */
int ls_format_parse(const char *name, ls_format *out);
/* The canonical name of f ("json", "string", ...). */
const char *ls_format_name(ls_format f);

/* Decodes p[0..n) in format f and pushes one value. Returns 0, or -1 with a
 * message in err and nothing pushed. Must be called inside a protected Lua
 * call (out of memory raises). */
int ls_decode(lua_State *L, ls_format f, const char *p, size_t n, char *err, size_t errlen);
/* The same with option flags (luavalue.h): LS_ARRAYS_VEC applies to json and
 * msgpack, the other formats ignore it. */
int ls_decode_opts(lua_State *L, ls_format f, int flags, const char *p, size_t n, char *err,
                   size_t errlen);

/* Encodes the value at idx in format f, appending to out. Returns 0, or -1
 * with a message in err and out->len unchanged. Must be called inside a
 * protected Lua call. */
int ls_encode(lua_State *L, int idx, ls_format f, ls_buf *out, char *err, size_t errlen);
/* The same with option flags (luavalue.h): LS_VEC_EXT applies to msgpack. */
int ls_encode_opts(lua_State *L, int idx, ls_format f, int flags, ls_buf *out, char *err,
                   size_t errlen);

/* Adds to the table at the top of the stack:
 *   encode(fmt, v [, opts]) -> string   raises "encode <fmt>: <message>";
 *                                       opts.vecs = "ext" sets LS_VEC_EXT
 *   decode(fmt, s [, opts]) -> value    raises "decode <fmt>: <message>";
 *                                       opts.arrays = "vec" sets LS_ARRAYS_VEC
 *   null                         ls.null, a NULL light userdata
 *   array_mt                     the array marker metatable
 *   array([t]) -> t              marks t (or a new table) as an array
 * Calls ls_value_init, so it may be the first codec call on a lua_State. */
void ls_codec_open(lua_State *L);

#endif
