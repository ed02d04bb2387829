/* mpack.c - MessagePack <-> Lua values (see mpack.h).
 *
 * Encoding walks the Lua value and writes through msgpack-c's packer into an
 * ls_buf; msgpack-c picks the smallest integer, string and container forms.
 *
 * Decoding is a small reader that pushes each Lua value as soon as it has
 * parsed it, with no intermediate tree. It replaces msgpack-c's unpacker,
 * which does not fit here: it refuses nesting deeper than 32 containers (the
 * encoder accepts 128, so state written at depth 40 could never be read
 * back), and it allocates a container's element array before reading the
 * elements, so a 5-byte input announcing 2^32 elements asks malloc for
 * 128 GiB. This reader bounds every count by the bytes that remain and
 * allocates nothing outside the Lua heap. Measured against msgpack_unpack()
 * with a reused zone plus the walk to Lua values (tests/bench/bench_mpack.c),
 * it is as fast on small messages (a state value, a 6-field row) and 1.2-1.5x
 * faster on larger ones (nested documents, long arrays).
 *
 * Vecs: encoding writes a vec as an array of float64, or (LS_VEC_EXT, for
 * state values) as the ext type LS_MPACK_EXT_VEC holding its raw
 * little-endian doubles, which decoding always turns back into a vec, bit
 * for bit (but for the NaNs LuaJIT cannot hold, see ls_vec_clean). With
 * LS_ARRAYS_VEC the reader first checks that an array's elements are all
 * numbers held in full by the input; then it creates the vec and converts
 * the elements straight into it. Otherwise the array takes the table path,
 * which reports any error exactly as without the option. */
#include "mpack.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "luavalue.h"
#include "vec.h"

#define TWO53 9007199254740992.0

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define TOO_DEEP "nesting deeper than " STRINGIFY(LS_MPACK_MAX_DEPTH)

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

typedef struct reader {
  const unsigned char *start, *p, *end;
  const unsigned char *item; /* start of the value being read, for errors */
  int depth;
  int mt_slot;  /* stack slot for the array marker metatable */
  int mt_ready; /* whether the slot holds it yet (fetched on first use) */
  int arrays_vec; /* LS_ARRAYS_VEC: arrays of numbers become vecs */
  int row_width;  /* LS_ROW_WIDTH: the least room of a top-level map's table */
  char *err;
  size_t errlen;
} reader;

static int rd_fail(reader *r, const unsigned char *at, const char *msg) {
  snprintf(r->err, r->errlen, "%s at byte %zu", msg, (size_t)(at - r->start));
  return -1;
}

static size_t rd_left(const reader *r) { return (size_t)(r->end - r->p); }

/* Consumes k bytes, returning where they start, or NULL when input ends. */
static const unsigned char *rd_take(reader *r, size_t k) {
  if (rd_left(r) < k) {
    rd_fail(r, r->item, "truncated input");
    return NULL;
  }
  const unsigned char *at = r->p;
  r->p += k;
  return at;
}

/* Reads a k-byte big-endian length or count. */
static int rd_len(reader *r, int k, size_t *out) {
  const unsigned char *at = rd_take(r, (size_t)k);
  if (!at) return -1;
  *out = (size_t)ls_be_read(at, (size_t)k);
  return 0;
}

static void push_uint(lua_State *L, uint64_t v) {
  if (v <= ((uint64_t)1 << 53)) lua_pushnumber(L, (lua_Number)v);
  else if (v <= (uint64_t)INT64_MAX) ls_push_int64(L, (int64_t)v);
  else ls_push_uint64(L, v);
}

static int read_uint(lua_State *L, reader *r, int k) {
  const unsigned char *at = rd_take(r, (size_t)k);
  if (!at) return -1;
  push_uint(L, ls_be_read(at, (size_t)k));
  return 0;
}

static int read_int(lua_State *L, reader *r, int k) {
  const unsigned char *at = rd_take(r, (size_t)k);
  if (!at) return -1;
  ls_push_integer(L, ls_be_read_signed(at, (size_t)k));
  return 0;
}

static int read_float(lua_State *L, reader *r, int k) {
  const unsigned char *at = rd_take(r, (size_t)k);
  if (!at) return -1;
  if (k == 4) {
    uint32_t bits = (uint32_t)ls_be_read(at, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    lua_pushnumber(L, (lua_Number)f);
  } else {
    uint64_t bits = ls_be_read(at, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    lua_pushnumber(L, d);
  }
  return 0;
}

/* str and bin: both become Lua strings, without any UTF-8 check. */
static int read_str(lua_State *L, reader *r, size_t len) {
  const unsigned char *at = rd_take(r, len);
  if (!at) return -1;
  lua_pushlstring(L, (const char *)at, len);
  return 0;
}

static int read_sized_str(lua_State *L, reader *r, int k) {
  size_t len;
  return rd_len(r, k, &len) ? -1 : read_str(L, r, len);
}

/* n doubles from / to 8 little-endian bytes each. */
static void from_le_doubles(double *dst, const unsigned char *src, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n) memcpy(dst, src, 8 * n);
#else
  for (size_t i = 0; i < n; i++) {
    uint64_t bits = 0;
    for (int k = 7; k >= 0; k--) bits = (bits << 8) | src[8 * i + (size_t)k];
    memcpy(&dst[i], &bits, sizeof bits);
  }
#endif
}

static void to_le_doubles(unsigned char *dst, const double *src, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n) memcpy(dst, src, 8 * n);
#else
  for (size_t i = 0; i < n; i++) {
    uint64_t bits;
    memcpy(&bits, &src[i], sizeof bits);
    for (int k = 0; k < 8; k++, bits >>= 8) dst[8 * i + (size_t)k] = (unsigned char)(bits & 0xff);
  }
#endif
}

/* The payload of a LS_MPACK_EXT_VEC: a vec of len / 8 doubles. */
static int read_vec_ext(lua_State *L, reader *r, const unsigned char *p, size_t len) {
  if (len % 8 != 0) return rd_fail(r, r->item, "invalid vec ext: size not a multiple of 8");
  if (!lua_checkstack(L, 4)) return rd_fail(r, r->item, "out of Lua stack");
  ls_vec *v = ls_vec_push(L, (int32_t)(len / 8));
  from_le_doubles(v->d, p, len / 8);
  for (int32_t i = 0; i < v->n; i++) v->d[i] = ls_vec_clean(v->d[i]);
  return 0;
}

/* Ext values: only luastream's own vec type; any other is an error. */
static int read_ext(lua_State *L, reader *r, size_t len) {
  const unsigned char *type = rd_take(r, 1), *body = type ? rd_take(r, len) : NULL;
  if (!body) return -1;
  if (*type == LS_MPACK_EXT_VEC) return read_vec_ext(L, r, body, len);
  char msg[64];
  snprintf(msg, sizeof msg, "unsupported msgpack ext type %d", *type < 128 ? *type : *type - 256);
  return rd_fail(r, r->item, msg);
}

static int read_sized_ext(lua_State *L, reader *r, int k) {
  size_t len;
  return rd_len(r, k, &len) ? -1 : read_ext(L, r, len);
}

static int rd_enter(lua_State *L, reader *r, const unsigned char *at) {
  if (r->depth >= LS_MPACK_MAX_DEPTH) return rd_fail(r, at, TOO_DEEP);
  if (!lua_checkstack(L, 3)) return rd_fail(r, at, "out of Lua stack");
  r->depth++;
  return 0;
}

static int size_hint(size_t n) { return n < (size_t)INT_MAX ? (int)n : 0; }

static int read_value(lua_State *L, reader *r);

/* ---- arrays of numbers as vecs (LS_ARRAYS_VEC) ---- */

/* The size of the number whose type byte is c, or 0 when c starts no number. */
static size_t number_size(unsigned c) {
  if (c <= 0x7f || c >= 0xe0) return 1;
  switch (c) {
  case 0xcc: case 0xd0: return 2;
  case 0xcd: case 0xd1: return 3;
  case 0xca: case 0xce: case 0xd2: return 5;
  case 0xcb: case 0xcf: case 0xd3: return 9;
  default: return 0;
  }
}

/* Whether the n values from r->p are all numbers the input holds in full.
 * float64, the usual element, is tested first: then the position of the
 * next element does not wait for a size lookup. */
static int all_numbers(const reader *r, size_t n) {
  const unsigned char *p = r->p;
  for (size_t i = 0; i < n; i++) {
    size_t left = (size_t)(r->end - p), k = 9;
    if (left < 9 || *p != 0xcb) {
      k = left ? number_size(*p) : 0;
      if (k == 0 || left < k) return 0;
    }
    p += k;
  }
  return 1;
}

/* The number at p (checked by all_numbers) as a double (a NaN cleaned for a
 * vec, see ls_vec_clean); returns its size. float64 first, as above. */
static size_t number_at(const unsigned char *p, double *out) {
  unsigned c = *p;
  if (c == 0xcb) {
    uint64_t bits = ls_be_read(p + 1, 8);
    memcpy(out, &bits, sizeof *out);
    *out = ls_vec_clean(*out);
    return 9;
  }
  size_t k = number_size(c);
  if (c <= 0x7f) *out = c;
  else if (c >= 0xe0) *out = (int)c - 256;
  else if (c == 0xca) {
    uint32_t bits = (uint32_t)ls_be_read(p + 1, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    *out = ls_vec_clean(f);
  } else if (c <= 0xcf) {
    *out = (double)ls_be_read(p + 1, k - 1);
  } else {
    *out = (double)ls_be_read_signed(p + 1, k - 1);
  }
  return k;
}

/* An array of n numbers (all_numbers said so) as a vec. */
static int read_number_vec(lua_State *L, reader *r, size_t n) {
  if (rd_enter(L, r, r->item)) return -1;
  if (!lua_checkstack(L, 4)) return rd_fail(r, r->item, "out of Lua stack");
  ls_vec *v = ls_vec_push(L, (int32_t)n);
  const unsigned char *p = r->p;
  for (size_t i = 0; i < n; i++) p += number_at(p, &v->d[i]);
  r->p = p;
  r->depth--;
  return 0;
}

static int read_array(lua_State *L, reader *r, size_t n) {
  const unsigned char *at = r->item;
  /* Every element takes at least one byte. */
  if (n > rd_left(r) || n > (size_t)INT_MAX) return rd_fail(r, at, "truncated input");
  if (r->arrays_vec && all_numbers(r, n)) return read_number_vec(L, r, n);
  if (rd_enter(L, r, at)) return -1;
  lua_createtable(L, size_hint(n), 0);
  for (size_t i = 1; i <= n; i++) {
    if (read_value(L, r)) return -1;
    lua_rawseti(L, -2, (int)i);
  }
  if (!r->mt_ready) {
    ls_push_array_mt(L);
    lua_replace(L, r->mt_slot);
    r->mt_ready = 1;
  }
  lua_pushvalue(L, r->mt_slot);
  lua_setmetatable(L, -2);
  r->depth--;
  return 0;
}

/* A key Lua cannot hold: nil (decoded as ls.null) or NaN. */
static const char *bad_key(lua_State *L) {
  if (ls_is_null(L, -1)) return "nil map key";
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number k = lua_tonumber(L, -1);
    if (k != k) return "NaN map key";
  }
  return NULL;
}

static int read_map(lua_State *L, reader *r, size_t n) {
  const unsigned char *at = r->item;
  /* Every entry takes at least two bytes. */
  if (n > rd_left(r) / 2) return rd_fail(r, at, "truncated input");
  if (rd_enter(L, r, at)) return -1;
  int room = size_hint(n);
  if (r->depth == 1 && room < r->row_width) room = r->row_width;
  lua_createtable(L, 0, room);
  for (size_t i = 0; i < n; i++) {
    const unsigned char *key_at = r->p;
    if (read_value(L, r)) return -1;
    const char *bad = bad_key(L);
    if (bad) return rd_fail(r, key_at, bad);
    if (read_value(L, r)) return -1;
    lua_rawset(L, -3);
  }
  r->depth--;
  return 0;
}

static int read_sized_container(lua_State *L, reader *r, int k, int is_map) {
  size_t n;
  if (rd_len(r, k, &n)) return -1;
  return is_map ? read_map(L, r, n) : read_array(L, r, n);
}

/* The type bytes 0xc0..0xdf. */
static int read_tagged(lua_State *L, reader *r, unsigned c) {
  switch (c) {
  case 0xc0: ls_push_null(L); return 0;
  case 0xc2: lua_pushboolean(L, 0); return 0;
  case 0xc3: lua_pushboolean(L, 1); return 0;
  case 0xc4: case 0xd9: return read_sized_str(L, r, 1);
  case 0xc5: case 0xda: return read_sized_str(L, r, 2);
  case 0xc6: case 0xdb: return read_sized_str(L, r, 4);
  case 0xc7: return read_sized_ext(L, r, 1);
  case 0xc8: return read_sized_ext(L, r, 2);
  case 0xc9: return read_sized_ext(L, r, 4);
  case 0xca: return read_float(L, r, 4);
  case 0xcb: return read_float(L, r, 8);
  case 0xcc: return read_uint(L, r, 1);
  case 0xcd: return read_uint(L, r, 2);
  case 0xce: return read_uint(L, r, 4);
  case 0xcf: return read_uint(L, r, 8);
  case 0xd0: return read_int(L, r, 1);
  case 0xd1: return read_int(L, r, 2);
  case 0xd2: return read_int(L, r, 4);
  case 0xd3: return read_int(L, r, 8);
  case 0xd4: return read_ext(L, r, 1);
  case 0xd5: return read_ext(L, r, 2);
  case 0xd6: return read_ext(L, r, 4);
  case 0xd7: return read_ext(L, r, 8);
  case 0xd8: return read_ext(L, r, 16);
  case 0xdc: return read_sized_container(L, r, 2, 0);
  case 0xdd: return read_sized_container(L, r, 4, 0);
  case 0xde: return read_sized_container(L, r, 2, 1);
  case 0xdf: return read_sized_container(L, r, 4, 1);
  default: return rd_fail(r, r->item, "invalid byte 0xc1");
  }
}

static int read_value(lua_State *L, reader *r) {
  r->item = r->p;
  if (r->p >= r->end) return rd_fail(r, r->p, "truncated input");
  unsigned c = *r->p++;
  if (c <= 0x7f) { lua_pushnumber(L, (lua_Number)c); return 0; }
  if (c >= 0xe0) { lua_pushnumber(L, (lua_Number)((int)c - 256)); return 0; }
  if (c <= 0x8f) return read_map(L, r, c & 0x0f);
  if (c <= 0x9f) return read_array(L, r, c & 0x0f);
  if (c <= 0xbf) return read_str(L, r, c & 0x1f);
  return read_tagged(L, r, c);
}

int ls_mpack_decode(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  return ls_mpack_decode_opts(L, p, n, 0, err, errlen);
}

int ls_mpack_decode_opts(lua_State *L, const char *p, size_t n, int flags, char *err, size_t errlen) {
  if (n == 0) {
    snprintf(err, errlen, "empty input");
    return -1;
  }
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "out of Lua stack");
    return -1;
  }
  const unsigned char *s = (const unsigned char *)p;
  reader r = {s, s, s + n, s, 0, top + 1, 0, (flags & LS_ARRAYS_VEC) != 0, LS_ROW_WIDTH_OF(flags), err, errlen};
  lua_pushnil(L); /* the array marker's slot */
  int rc = read_value(L, &r);
  if (rc == 0 && r.p != r.end) rc = rd_fail(&r, r.p, "trailing bytes");
  if (rc) {
    lua_settop(L, top);
    return -1;
  }
  lua_replace(L, top + 1); /* the value takes the marker's slot */
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

/* One step of the path to the value being written: an array index (0-based
 * in messages, like JSONPath and json.c), or the stack index of a map key
 * (valid while that key is being iterated). */
typedef struct step {
  size_t index;
  int key;
} step;

typedef struct writer {
  msgpack_packer pk;
  ls_buf *out;
  int vec_ext; /* LS_VEC_EXT: vecs as the vec ext type */
  int depth;
  step path[LS_MPACK_MAX_DEPTH];
  char *err;
  size_t errlen;
} writer;

static int buf_write(void *data, const char *p, size_t n) {
  return ls_buf_put((ls_buf *)data, p, n);
}

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

/* ["key"]: at most 64 bytes of it, '"' and '\\' escaped, control bytes as '?'. */
static void quote_key(const char *k, size_t n, char *out, size_t cap) {
  size_t len = 0, shown = n > 64 ? 64 : n;
  out[len++] = '[';
  out[len++] = '"';
  for (size_t i = 0; i < shown && len + 8 < cap; i++) {
    unsigned char c = (unsigned char)k[i];
    if (c == '"' || c == '\\') out[len++] = '\\';
    out[len++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (shown < n) out[len++] = '.', out[len++] = '.', out[len++] = '.';
  out[len++] = '"';
  out[len++] = ']';
  out[len] = 0;
}

/* Appends one path step to out[*len..cap). */
static void format_step(lua_State *L, const step *s, char *out, size_t *len, size_t cap) {
  if (*len >= cap) return;
  char *o = out + *len;
  size_t room = cap - *len;
  int w;
  if (!s->key) {
    w = snprintf(o, room, "[%zu]", s->index - 1);
  } else if (lua_type(L, s->key) == LUA_TSTRING) {
    size_t n;
    const char *k = lua_tolstring(L, s->key, &n);
    char quoted[160];
    if (n <= 64 && is_identifier(k, n)) {
      w = snprintf(o, room, ".%.*s", (int)n, k);
    } else {
      quote_key(k, n, quoted, sizeof quoted);
      w = snprintf(o, room, "%s", quoted);
    }
  } else if (lua_type(L, s->key) == LUA_TNUMBER) {
    w = snprintf(o, room, "[%.14g]", lua_tonumber(L, s->key));
  } else {
    w = snprintf(o, room, "[%s]", lua_toboolean(L, s->key) ? "true" : "false");
  }
  *len += (w < 0) ? 0 : (size_t)w;
}

/* Writes "<what> at $<path>" into the error buffer. */
static int wr_fail(lua_State *L, writer *w, const char *what) {
  char path[256] = "$";
  size_t len = 1;
  for (int d = 0; d < w->depth && len < sizeof path; d++)
    format_step(L, &w->path[d], path, &len, sizeof path);
  snprintf(w->err, w->errlen, "%s at %s", what, path);
  return -1;
}

static int wr_fail_type(lua_State *L, writer *w, int idx, const char *suffix) {
  char what[96];
  snprintf(what, sizeof what, "cannot encode a %s%s", lua_typename(L, lua_type(L, idx)), suffix);
  return wr_fail(L, w, what);
}

/* msgpack-c reports a failed write (out of memory) as a nonzero return. */
static int packed(lua_State *L, writer *w, int rc) {
  return rc ? wr_fail(L, w, "out of memory") : 0;
}

/* Integral numbers within +-2^53 take msgpack-c's smallest integer form; the
 * rest are float64. Larger integral doubles stay float64 so they decode back
 * as Lua numbers: only int64 cdata decode from (and encode to) integers beyond
 * 2^53, so a value keeps its Lua type across a round trip. -0 stays float64
 * to keep its sign. */
static int write_number(lua_State *L, writer *w, double v) {
  if (v >= -TWO53 && v <= TWO53 && v == floor(v) && !(v == 0 && signbit(v)))
    return packed(L, w, msgpack_pack_int64(&w->pk, (int64_t)v));
  return packed(L, w, msgpack_pack_double(&w->pk, v));
}

static int write_value(lua_State *L, writer *w, int idx);

static int write_array(lua_State *L, writer *w, int idx, size_t n) {
  if (n > (size_t)INT_MAX) return wr_fail(L, w, "array too long");
  if (packed(L, w, msgpack_pack_array(&w->pk, n))) return -1;
  step *s = &w->path[w->depth++];
  s->key = 0;
  int rc = 0;
  for (size_t i = 1; i <= n && rc == 0; i++) {
    s->index = i;
    lua_rawgeti(L, idx, (int)i);
    rc = write_value(L, w, lua_gettop(L));
    lua_pop(L, 1);
  }
  w->depth--;
  return rc;
}

static int key_ok(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN;
}

/* Counts the entries, checking every key can be written. */
static int count_entries(lua_State *L, writer *w, int idx, size_t *n) {
  *n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!key_ok(L, -1)) {
      int rc = wr_fail_type(L, w, -1, " as a map key");
      lua_pop(L, 1);
      return rc;
    }
    (*n)++;
  }
  return 0;
}

static int write_map(lua_State *L, writer *w, int idx) {
  size_t n;
  if (count_entries(L, w, idx, &n) || packed(L, w, msgpack_pack_map(&w->pk, n))) return -1;
  step *s = &w->path[w->depth++];
  int rc = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    s->key = lua_gettop(L) - 1;
    rc = write_value(L, w, s->key);
    if (rc == 0) rc = write_value(L, w, s->key + 1);
    if (rc) {
      lua_pop(L, 2);
      break;
    }
    lua_pop(L, 1);
  }
  w->depth--;
  return rc;
}

static int write_table(lua_State *L, writer *w, int idx) {
  if (w->depth >= LS_MPACK_MAX_DEPTH) return wr_fail(L, w, TOO_DEEP);
  if (!lua_checkstack(L, 4)) return wr_fail(L, w, "out of Lua stack");
  size_t n;
  if (ls_table_is_array(L, idx, &n)) return write_array(L, w, idx, n);
  return write_map(L, w, idx);
}

/* A vec as an array of float64, every element (NaN and infinities too). It
 * is one level deeper, like any array: refused where a table would be. */
static int write_vec_array(lua_State *L, writer *w, const ls_vec *v) {
  if (w->depth >= LS_MPACK_MAX_DEPTH) return wr_fail(L, w, TOO_DEEP);
  if (packed(L, w, msgpack_pack_array(&w->pk, (size_t)v->n))) return -1;
  for (int32_t i = 0; i < v->n; i++) {
    if (ls_buf_reserve(w->out, 9)) return wr_fail(L, w, "out of memory");
    unsigned char *o = (unsigned char *)w->out->data + w->out->len;
    uint64_t bits;
    memcpy(&bits, &v->d[i], sizeof bits);
    o[0] = 0xcb;
    for (int k = 8; k >= 1; k--, bits >>= 8) o[k] = (unsigned char)(bits & 0xff);
    w->out->len += 9;
  }
  return 0;
}

/* A vec as the ext type LS_MPACK_EXT_VEC: its doubles, little-endian. */
static int write_vec_ext(lua_State *L, writer *w, const ls_vec *v) {
  size_t len = (size_t)v->n * 8;
  if (len > UINT32_MAX) return wr_fail(L, w, "vec too long for a msgpack ext");
  if (packed(L, w, msgpack_pack_ext(&w->pk, len, LS_MPACK_EXT_VEC))) return -1;
  if (ls_buf_reserve(w->out, len)) return wr_fail(L, w, "out of memory");
  to_le_doubles((unsigned char *)w->out->data + w->out->len, v->d, (size_t)v->n);
  w->out->len += len;
  return 0;
}

/* int64_t / uint64_t cdata, and vecs. */
static int write_cdata(lua_State *L, writer *w, int idx) {
  int64_t v;
  int is_unsigned;
  if (!ls_to_int64(L, idx, &v, &is_unsigned)) {
    ls_vec *vec = lua_checkstack(L, 4) ? ls_vec_to(L, idx) : NULL;
    if (!vec) return wr_fail_type(L, w, idx, "");
    return w->vec_ext ? write_vec_ext(L, w, vec) : write_vec_array(L, w, vec);
  }
  if (is_unsigned) return packed(L, w, msgpack_pack_uint64(&w->pk, (uint64_t)v));
  return packed(L, w, msgpack_pack_int64(&w->pk, v));
}

static int write_value(lua_State *L, writer *w, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return packed(L, w, msgpack_pack_nil(&w->pk));
  case LUA_TBOOLEAN:
    return packed(L, w, lua_toboolean(L, idx) ? msgpack_pack_true(&w->pk) : msgpack_pack_false(&w->pk));
  case LUA_TNUMBER:
    return write_number(L, w, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return packed(L, w, msgpack_pack_str_with_body(&w->pk, s, n));
  }
  case LUA_TTABLE:
    return write_table(L, w, idx);
  case LS_LUA_TCDATA:
    return write_cdata(L, w, idx);
  case LUA_TLIGHTUSERDATA:
    if (ls_is_null(L, idx)) return packed(L, w, msgpack_pack_nil(&w->pk));
    return wr_fail(L, w, "cannot encode a light userdata");
  default:
    return wr_fail_type(L, w, idx, "");
  }
}

int ls_mpack_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  return ls_mpack_encode_opts(L, idx, 0, out, err, errlen);
}

int ls_mpack_encode_opts(lua_State *L, int idx, int flags, ls_buf *out, char *err, size_t errlen) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  writer w;
  msgpack_packer_init(&w.pk, out, buf_write);
  w.out = out;
  w.vec_ext = (flags & LS_VEC_EXT) != 0;
  w.depth = 0;
  w.err = err;
  w.errlen = errlen;
  int top = lua_gettop(L);
  size_t start = out->len;
  int rc = write_value(L, &w, idx);
  lua_settop(L, top);
  if (rc) out->len = start;
  return rc;
}
