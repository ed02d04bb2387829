/* codec.c - serializer dispatch and the simple formats (see codec.h).
 *
 * json and msgpack are forwarded to json.c and mpack.c. The other formats
 * match Kafka's stock serializers, so topics shared with Java or Python
 * producers read the same: string (UTF-8, checked), bytes (anything), int
 * (big-endian two's complement; 1, 2, 4 or 8 bytes in, always 8 out, like
 * Short/Integer/LongSerializer) and double (8-byte big-endian IEEE-754).
 * Option flags (luavalue.h) reach json and msgpack only; the Lua functions
 * take them as an options table. */
#include "codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "dtoa.h"
#include "json.h"
#include "luavalue.h"
#include "mpack.h"

#define TWO63 9223372036854775808.0

/* The canonical names, the only ones C knows: aliases ("str", "integer")
 * are resolved by the Lua side (luastream's init.lua) before a name gets
 * here, so the spec and luastream.core's encode/decode take these only. */
static const char *const FORMAT_NAMES[] = {
  [LS_FMT_JSON] = "json",   [LS_FMT_STRING] = "string", [LS_FMT_BYTES] = "bytes",
  [LS_FMT_MSGPACK] = "msgpack", [LS_FMT_INT] = "int",   [LS_FMT_DOUBLE] = "double",
};
#define NFORMATS (sizeof FORMAT_NAMES / sizeof FORMAT_NAMES[0])

int ls_format_parse(const char *name, ls_format *out) {
  if (!name) return -1;
  for (size_t i = 0; i < NFORMATS; i++) {
    if (strcmp(name, FORMAT_NAMES[i]) == 0) {
      *out = (ls_format)i;
      return 0;
    }
  }
  return -1;
}

const char *ls_format_name(ls_format f) {
  return ((unsigned)f < NFORMATS) ? FORMAT_NAMES[f] : "unknown";
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* Returns the offset of the first byte that does not start a valid UTF-8
 * sequence (overlong forms, surrogates and code points above U+10FFFF are
 * invalid), or n when all of s is valid. */
static size_t utf8_check(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) len = 3;
    else if (c >= 0xf0 && c <= 0xf4) len = 4;
    else return i;
    if (c == 0xe0) lo = 0xa0;      /* overlong */
    else if (c == 0xed) hi = 0x9f; /* surrogates */
    else if (c == 0xf0) lo = 0x90; /* overlong */
    else if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if ((s[i + k] & 0xc0) != 0x80) return i;
    i += len;
  }
  return n;
}

/* "nil", "null", or "a <type>", for error messages. */
static const char *describe(lua_State *L, int idx, char *out, size_t cap) {
  if (lua_isnil(L, idx)) return "nil";
  if (ls_is_null(L, idx)) return "null";
  snprintf(out, cap, "a %s", lua_typename(L, lua_type(L, idx)));
  return out;
}

static int cannot_encode(lua_State *L, int idx, ls_format f, char *err, size_t errlen) {
  char what[32];
  snprintf(err, errlen, "cannot encode %s as %s", describe(L, idx, what, sizeof what), ls_format_name(f));
  return -1;
}

static int is_int64_double(double v) {
  return v >= -TWO63 && v < TWO63 && v == floor(v);
}

static int be_put64(ls_buf *out, uint64_t v, char *err, size_t errlen) {
  unsigned char b[8];
  for (int i = 7; i >= 0; i--, v >>= 8) b[i] = (unsigned char)(v & 0xff);
  if (ls_buf_put(out, b, sizeof b) == 0) return 0;
  snprintf(err, errlen, "out of memory");
  return -1;
}

static int put_bytes(ls_buf *out, const char *p, size_t n, char *err, size_t errlen) {
  if (n == 0 || ls_buf_put(out, p, n) == 0) return 0; /* an empty buffer has no data yet */
  snprintf(err, errlen, "out of memory");
  return -1;
}

/* Formats like Lua's tostring, but exact: integral values in int64 range with
 * all their digits, others in the shortest text that reads back the same
 * double ("0.1", "1e+300"); "nan", "inf" and "-inf" for the rest. out holds
 * LS_DTOA_BUFSIZE bytes. */
static size_t format_double(double v, char *out) {
  if (is_int64_double(v) && !(v == 0 && signbit(v)))
    return (size_t)snprintf(out, LS_DTOA_BUFSIZE, "%" PRId64, (int64_t)v);
  if (isfinite(v)) return (size_t)ls_dtoa(v, out);
  const char *s = isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  strcpy(out, s);
  return strlen(s);
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

static int decode_string(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  size_t bad = utf8_check((const unsigned char *)p, n);
  if (bad < n) {
    snprintf(err, errlen, "invalid UTF-8 at byte %zu", bad);
    return -1;
  }
  lua_pushlstring(L, n ? p : "", n);
  return 0;
}

static int decode_int(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  if (n != 1 && n != 2 && n != 4 && n != 8) {
    snprintf(err, errlen, "int needs 1, 2, 4 or 8 bytes, got %zu", n);
    return -1;
  }
  ls_push_integer(L, ls_be_read_signed((const unsigned char *)p, n));
  return 0;
}

static int decode_double(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  if (n != 8) {
    snprintf(err, errlen, "double needs 8 bytes, got %zu", n);
    return -1;
  }
  uint64_t bits = ls_be_read((const unsigned char *)p, 8);
  double d;
  memcpy(&d, &bits, sizeof d);
  lua_pushnumber(L, d);
  return 0;
}

int ls_decode(lua_State *L, ls_format f, const char *p, size_t n, char *err, size_t errlen) {
  return ls_decode_opts(L, f, 0, p, n, err, errlen);
}

int ls_decode_opts(lua_State *L, ls_format f, int flags, const char *p, size_t n, char *err,
                   size_t errlen) {
  switch (f) {
  case LS_FMT_JSON: return ls_json_decode_opts(L, p, n, flags, err, errlen);
  case LS_FMT_STRING: return decode_string(L, p, n, err, errlen);
  case LS_FMT_BYTES: lua_pushlstring(L, n ? p : "", n); return 0;
  case LS_FMT_MSGPACK: return ls_mpack_decode_opts(L, p, n, flags, err, errlen);
  case LS_FMT_INT: return decode_int(L, p, n, err, errlen);
  case LS_FMT_DOUBLE: return decode_double(L, p, n, err, errlen);
  }
  snprintf(err, errlen, "unknown format %d", (int)f);
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

static int encode_string(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  char num[LS_DTOA_BUFSIZE];
  int64_t v;
  int is_unsigned;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    size_t bad = utf8_check((const unsigned char *)s, n);
    if (bad < n) {
      snprintf(err, errlen, "invalid UTF-8 at byte %zu", bad);
      return -1;
    }
    return put_bytes(out, s, n, err, errlen);
  }
  case LUA_TNUMBER: {
    size_t n = format_double(lua_tonumber(L, idx), num);
    return put_bytes(out, num, n, err, errlen);
  }
  case LS_LUA_TCDATA:
    if (!ls_to_int64(L, idx, &v, &is_unsigned)) break;
    if (is_unsigned) snprintf(num, sizeof num, "%" PRIu64, (uint64_t)v);
    else snprintf(num, sizeof num, "%" PRId64, v);
    return put_bytes(out, num, strlen(num), err, errlen);
  }
  return cannot_encode(L, idx, LS_FMT_STRING, err, errlen);
}

static int encode_bytes(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  if (lua_type(L, idx) != LUA_TSTRING) return cannot_encode(L, idx, LS_FMT_BYTES, err, errlen);
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  return put_bytes(out, s, n, err, errlen);
}

static int encode_int(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  int64_t v;
  int is_unsigned;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double d = lua_tonumber(L, idx);
    if (!is_int64_double(d)) {
      char num[LS_DTOA_BUFSIZE];
      format_double(d, num);
      const char *why = (d == floor(d)) ? "out of int64 range" : "not an integer";
      snprintf(err, errlen, "cannot encode %s as int: %s", num, why);
      return -1;
    }
    v = (int64_t)d;
  } else if (ls_to_int64(L, idx, &v, &is_unsigned)) {
    if (is_unsigned && v < 0) {
      snprintf(err, errlen, "cannot encode %" PRIu64 " as int: out of int64 range", (uint64_t)v);
      return -1;
    }
  } else {
    return cannot_encode(L, idx, LS_FMT_INT, err, errlen);
  }
  return be_put64(out, (uint64_t)v, err, errlen);
}

static int encode_double(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  int64_t v;
  int is_unsigned;
  double d;
  if (lua_type(L, idx) == LUA_TNUMBER) d = lua_tonumber(L, idx);
  else if (ls_to_int64(L, idx, &v, &is_unsigned)) d = is_unsigned ? (double)(uint64_t)v : (double)v;
  else return cannot_encode(L, idx, LS_FMT_DOUBLE, err, errlen);
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  return be_put64(out, bits, err, errlen);
}

static int encode_format(lua_State *L, int idx, ls_format f, int flags, ls_buf *out, char *err,
                         size_t errlen) {
  switch (f) {
  case LS_FMT_JSON: return ls_json_encode(L, idx, out, err, errlen);
  case LS_FMT_STRING: return encode_string(L, idx, out, err, errlen);
  case LS_FMT_BYTES: return encode_bytes(L, idx, out, err, errlen);
  case LS_FMT_MSGPACK: return ls_mpack_encode_opts(L, idx, flags, out, err, errlen);
  case LS_FMT_INT: return encode_int(L, idx, out, err, errlen);
  case LS_FMT_DOUBLE: return encode_double(L, idx, out, err, errlen);
  }
  snprintf(err, errlen, "unknown format %d", (int)f);
  return -1;
}

int ls_encode(lua_State *L, int idx, ls_format f, ls_buf *out, char *err, size_t errlen) {
  return ls_encode_opts(L, idx, f, 0, out, err, errlen);
}

int ls_encode_opts(lua_State *L, int idx, ls_format f, int flags, ls_buf *out, char *err,
                   size_t errlen) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  size_t start = out->len;
  int rc = encode_format(L, idx, f, flags, out, err, errlen);
  if (rc) out->len = start;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Lua functions                                                            */

static const char KEY_BOX_MT[] = "luastream.codec_buf";

/* encode()'s output buffer, reused between calls and freed by the GC. */
typedef struct enc_box {
  ls_buf buf;
  int busy;
} enc_box;

static int box_gc(lua_State *L) {
  enc_box *b = lua_touserdata(L, 1);
  ls_buf_free(&b->buf);
  return 0;
}

static enc_box *push_box(lua_State *L) {
  enc_box *b = lua_newuserdata(L, sizeof *b);
  ls_buf_init(&b->buf);
  b->busy = 0;
  if (luaL_newmetatable(L, KEY_BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static ls_format check_format(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  ls_format f = LS_FMT_JSON;
  if (ls_format_parse(name, &f)) luaL_error(L, "unknown format '%s'", name);
  return f;
}

/* Option `name` of the options table at arg (or nil): flag when its value is
 * `on`, 0 when it is nil or `off`, else an error naming fn. */
static int check_option(lua_State *L, int arg, const char *fn, const char *name, const char *off,
                        const char *on, int flag) {
  if (lua_isnoneornil(L, arg)) return 0;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, name);
  const char *v = lua_tostring(L, -1);
  int rc = lua_isnil(L, -1) || (v && strcmp(v, off) == 0) ? 0 : (v && strcmp(v, on) == 0) ? flag : -1;
  lua_pop(L, 1);
  if (rc < 0) luaL_error(L, "%s: option '%s' must be '%s' or '%s'", fn, name, off, on);
  return rc;
}

static int l_encode(lua_State *L) {
  ls_format f = check_format(L, 1);
  int flags = check_option(L, 3, "encode", "vecs", "array", "ext", LS_VEC_EXT);
  lua_settop(L, 2);
  enc_box *b = lua_touserdata(L, lua_upvalueindex(1));
  if (b->busy) b = push_box(L); /* a nested call: use a fresh buffer */
  b->busy = 1;
  b->buf.len = 0;
  char err[256];
  int rc = ls_encode_opts(L, 2, f, flags, &b->buf, err, sizeof err);
  b->busy = 0;
  if (rc) return luaL_error(L, "encode %s: %s", ls_format_name(f), err);
  lua_pushlstring(L, b->buf.len ? b->buf.data : "", b->buf.len);
  if (b->buf.cap > (1u << 20)) ls_buf_free(&b->buf); /* don't keep a huge buffer */
  return 1;
}

static int l_decode(lua_State *L) {
  ls_format f = check_format(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  int flags = check_option(L, 3, "decode", "arrays", "table", "vec", LS_ARRAYS_VEC);
  char err[256];
  if (ls_decode_opts(L, f, flags, s, n, err, sizeof err))
    return luaL_error(L, "decode %s: %s", ls_format_name(f), err);
  return 1;
}

static int l_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  ls_mark_array(L);
  return 1;
}

void ls_codec_open(lua_State *L) {
  ls_value_init(L);
  push_box(L);
  lua_pushcclosure(L, l_encode, 1);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "decode");
  ls_push_null(L);
  lua_setfield(L, -2, "null");
  ls_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  lua_pushcfunction(L, l_array);
  lua_setfield(L, -2, "array");
}
