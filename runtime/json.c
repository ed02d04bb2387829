/* json.c - JSON <-> Lua values, built directly on the Lua stack (see json.h).
 *
 * Owns the JSON codec that codec.c uses for topics with value = "json".
 * The decoder is a recursive-descent parser that creates tables with
 * lua_createtable (sized from the previous document's shape), pushes keys and
 * strings straight from the input with lua_pushlstring, and converts numbers
 * itself (exact integers; ls_decimal_to_double in dtoa.c for up to 19
 * significant digits; strtod, in the "C" locale, for the rest). The encoder
 * walks a Lua value and appends to an ls_buf, with doubles formatted by
 * ls_dtoa (dtoa.c). Shared values (null, the array
 * marker, int64 cdata) come from luavalue.c. Strings are scanned eight bytes
 * at a time with portable word arithmetic (SWAR), so no CPU-specific code.
 *
 * Vecs: with LS_ARRAYS_VEC, an array first gets a quick scan up to its ']'.
 * When that holds nothing but number characters, commas and whitespace, the
 * commas give the element count, the vec is created at that size
 * (ls_vec_push) and the numbers are parsed straight into its memory: no Lua
 * value per element. Anything else (a string, object, nested array, literal)
 * sends the array down the table path, which also reports any syntax error,
 * so errors read the same with or without the option. Encoding writes a
 * vec's elements with the same number formatting as plain numbers.
 *
 * Flat rows (ls_json_flat_add): a second reader of top-level objects of
 * scalars that fills slots instead of the Lua stack, with the decoder's own
 * string scan and number reader, for luastream.jsonin to build the tables. */
#include "json.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "dtoa.h"
#include "luavalue.h"
#include "vec.h"

#define TWO_POW_53 9007199254740992.0

/* ---------------------------------------------------------------------------
 * Shared helpers: UTF-8, string scanning, integer printing
 * ------------------------------------------------------------------------- */

/* Length (2..4) of the well-formed UTF-8 sequence starting at p (*p >= 0x80)
 * and ending before end, or 0 when it is malformed: a stray continuation
 * byte, an overlong form, a UTF-16 surrogate, a code point above U+10FFFF or
 * a truncated sequence (RFC 3629, section 4). */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0; /* overlong */
    if (c == 0xED) hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90; /* overlong */
    if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return n;
}

/* A byte that a JSON string holds as is: not '"', '\\', a control character
 * or part of a multi-byte UTF-8 sequence. */
static int is_plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* Nonzero when one of the eight bytes of w is not plain: the high bit of each
 * such byte is set. A borrow may also flag a byte above (later in memory on
 * little-endian) a real hit, but no hit is ever missed. */
static uint64_t word_has_special(uint64_t w) {
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t hits = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w);
  return (hits | w) & high;
}

/* The first byte in [p, end) that is not plain, or end. On little-endian
 * machines the lowest flagged byte of a word is exact (borrows only run
 * towards higher bytes), so it gives the position directly. */
static const unsigned char *scan_plain(const unsigned char *p, const unsigned char *end) {
  while (end - p >= 8) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    uint64_t hits = word_has_special(w);
    if (hits) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      return p + (__builtin_ctzll(hits) >> 3);
#else
      break;
#endif
    }
    p += 8;
  }
  while (p < end && is_plain(*p)) p++;
  return p;
}

/* Whether all n bytes at s are plain: short strings as one padded word (the
 * word scan's set-up costs more than they do), longer ones by scan_plain. */
static int all_plain(const unsigned char *s, size_t n) {
  if (n > 8) return scan_plain(s, s + n) == s + n;
  uint64_t w = 0x6161616161616161u; /* "aaaaaaaa": the bytes past s[n-1] are plain */
  memcpy(&w, s, n);
  return !word_has_special(w);
}

/* Writes v in decimal to out (at least 20 bytes); returns the length. */
static int write_u64(char *out, uint64_t v) { return ls_u64toa(v, out); }

/* Writes v in decimal to out (at least 21 bytes); returns the length. */
static int write_i64(char *out, int64_t v) {
  if (v >= 0) return write_u64(out, (uint64_t)v);
  out[0] = '-';
  return 1 + write_u64(out + 1, 0 - (uint64_t)v);
}

/* Rewrites a plain integer text of n bytes ("-1152921504606847000") in
 * exponent form ("-1.152921504606847e+18"), so that it decodes as a double
 * again rather than as an int64. Returns the new length. */
static int to_exponent_form(char *out, int n) {
  char *d = out + (out[0] == '-');
  int m = n - (int)(d - out), k = m;
  while (k > 1 && d[k - 1] == '0') k--;
  char digits[32];
  memcpy(digits, d, (size_t)k);
  char *p = d;
  *p++ = digits[0];
  if (k > 1) {
    *p++ = '.';
    memcpy(p, digits + 1, (size_t)k - 1);
    p += k - 1;
  }
  p += snprintf(p, 8, "e+%d", m - 1);
  return (int)(p - out);
}

/* JSON text of a finite double: integers below 2^53 plainly, else ls_dtoa;
 * integral doubles beyond 2^53 in exponent form, so they stay doubles. */
static int write_number(char *out, double v) {
  if (v != 0 && fabs(v) < TWO_POW_53 && v == (double)(int64_t)v) return write_i64(out, (int64_t)v);
  int n = ls_dtoa(v, out);
  if (fabs(v) > TWO_POW_53 && !memchr(out, '.', (size_t)n) && !memchr(out, 'e', (size_t)n))
    n = to_exponent_form(out, n);
  return n;
}

/* ---------------------------------------------------------------------------
 * Decoder
 * ------------------------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  const unsigned char *p, *start, *end;
  int depth;
  char *err;
  size_t errlen;
  int arrays_vec; /* LS_ARRAYS_VEC: arrays of numbers become vecs */
  int row_width;  /* LS_ROW_WIDTH: the least room of a top-level object */
  ls_json_keys *keys; /* the top-level keys by position, or NULL */
  int keys_tab;       /* stack index of the table holding them */
} dec;

/* Table size hints: the element count of the last object / array decoded at
 * each nesting level. Streams repeat one shape, so the next record's tables are
 * created at their final size instead of growing. */
#define HINT_LEVELS 8
#define HINT_MAX_FIELDS 256
#define HINT_MAX_ITEMS 4096
static _Thread_local int hint_fields[HINT_LEVELS], hint_items[HINT_LEVELS];

static int hint_level(const dec *d) { return d->depth < HINT_LEVELS ? d->depth - 1 : HINT_LEVELS - 1; }

static int dec_fail(dec *d, const unsigned char *at, const char *fmt, ...) {
  if (!d->err || d->errlen == 0) return -1;
  char msg[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(d->err, d->errlen, "%s at byte %zu", msg, (size_t)(at - d->start));
  return -1;
}

/* "unexpected character" at p, or "unexpected end of input" when p is the end. */
static int dec_unexpected(dec *d, const unsigned char *p) {
  if (p >= d->end) return dec_fail(d, d->end, "invalid JSON: unexpected end of input");
  if (*p >= 0x20 && *p < 0x7F) return dec_fail(d, p, "invalid JSON: unexpected character '%c'", *p);
  return dec_fail(d, p, "invalid JSON: unexpected byte 0x%02X", *p);
}

/* Whitespace as RFC 8259 defines it: space, tab, line feed, carriage return. */
static void skip_ws(dec *d) {
  const unsigned char *p = d->p, *e = d->end;
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  d->p = p;
}

static int dec_value(dec *d);
static long numeric_array_len(const dec *d);
static int dec_vec(dec *d, long n);

/* One more level of nesting: enforce the limit and make room on the Lua stack. */
static int dec_enter(dec *d) {
  if (++d->depth > LS_JSON_MAX_DEPTH)
    return dec_fail(d, d->p, "nesting deeper than %d", LS_JSON_MAX_DEPTH);
  if (!lua_checkstack(d->L, LUA_MINSTACK)) return dec_fail(d, d->p, "out of Lua stack space");
  return 0;
}

/* After an element: skips whitespace and a ',' (returns 1) or the closing
 * bracket (returns 0); anything else is an error (-1). */
static int dec_next_element(dec *d, unsigned char close) {
  skip_ws(d);
  if (d->p < d->end && *d->p == ',') {
    d->p++;
    skip_ws(d);
    return 1;
  }
  if (d->p < d->end && *d->p == close) {
    d->p++;
    return 0;
  }
  return dec_unexpected(d, d->p);
}

static int dec_string(dec *d);

/* The key at d->p ('"'), field i of a top-level object, pushed from d->keys
 * when it is the one kept for that position; otherwise decoded, and kept
 * there when it has no escapes (the string is as long as its text). */
static int dec_top_key(dec *d, int i) {
  ls_json_keys *k = d->keys;
  const unsigned char *s = d->p + 1;
  size_t len = i < LS_JSON_KEYS_MAX ? k->len[i] : 0;
  if (len && len < (size_t)(d->end - s) && s[len] == '"' && memcmp(s, k->s[i], len) == 0) {
    lua_rawgeti(d->L, d->keys_tab, i + 1);
    d->p = s + len + 1;
    return 0;
  }
  if (dec_string(d)) return -1;
  size_t n;
  const char *str = lua_tolstring(d->L, -1, &n);
  if (i < LS_JSON_KEYS_MAX && n > 0 && n == (size_t)(d->p - 1 - s)) {
    lua_pushvalue(d->L, -1);
    lua_rawseti(d->L, d->keys_tab, i + 1);
    k->s[i] = str;
    k->len[i] = n;
  }
  return 0;
}

/* "key" : — pushes the key (field i of its object) and leaves d->p on the
 * value. */
static int dec_key(dec *d, int i) {
  if (d->p >= d->end || *d->p != '"') return dec_unexpected(d, d->p);
  if (d->keys && d->depth == 1 ? dec_top_key(d, i) : dec_string(d)) return -1;
  skip_ws(d);
  if (d->p >= d->end || *d->p != ':') return dec_unexpected(d, d->p);
  d->p++;
  skip_ws(d);
  return 0;
}

static int dec_object(dec *d) {
  if (dec_enter(d)) return -1;
  lua_State *L = d->L;
  int level = hint_level(d), count = 0, more = 1, room = hint_fields[level];
  if (d->depth == 1 && room < d->row_width) room = d->row_width;
  lua_createtable(L, 0, room);
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    more = 0;
  }
  while (more) {
    if (dec_key(d, count) || dec_value(d)) return -1;
    lua_rawset(L, -3);
    count++;
    if ((more = dec_next_element(d, '}')) < 0) return -1;
  }
  hint_fields[level] = count < HINT_MAX_FIELDS ? count : HINT_MAX_FIELDS;
  d->depth--;
  return 0;
}

static int dec_array(dec *d) {
  if (d->arrays_vec) {
    long n = numeric_array_len(d);
    if (n >= 0) return dec_vec(d, n);
  }
  if (dec_enter(d)) return -1;
  lua_State *L = d->L;
  int level = hint_level(d), count = 0, more = 1;
  lua_createtable(L, hint_items[level], 0);
  d->p++;
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    more = 0;
  }
  while (more) {
    if (dec_value(d)) return -1;
    lua_rawseti(L, -2, ++count);
    if ((more = dec_next_element(d, ']')) < 0) return -1;
  }
  ls_mark_array(L);
  hint_items[level] = count < HINT_MAX_ITEMS ? count : HINT_MAX_ITEMS;
  d->depth--;
  return 0;
}

/* Appends s[0..n) to b, a block at a time (luaL_addlstring goes byte by byte). */
static void buffer_add(luaL_Buffer *b, const unsigned char *s, size_t n) {
  while (n > 0) {
    size_t room = (size_t)(b->buffer + LUAL_BUFFERSIZE - b->p);
    if (room == 0) {
      luaL_prepbuffer(b);
      continue;
    }
    size_t k = n < room ? n : room;
    memcpy(b->p, s, k);
    b->p += k;
    s += k;
    n -= k;
  }
}

static void buffer_add_utf8(luaL_Buffer *b, unsigned cp) {
  unsigned char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (unsigned char)(0xC0 | cp >> 6);
    u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (unsigned char)(0xE0 | cp >> 12);
    u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (unsigned char)(0xF0 | cp >> 18);
    u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  buffer_add(b, u, n);
}

/* The four hex digits at p as a number; -1 when one is not a hex digit, -2
 * when the input ends first. */
static long hex4(const unsigned char *p, const unsigned char *end) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    if (p + i >= end) return -2;
    unsigned c = p[i] | 0x20; /* lower case for letters */
    if (p[i] >= '0' && p[i] <= '9') {
      v = v * 16 + (p[i] - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = v * 16 + (c - 'a' + 10);
    } else {
      return -1;
    }
  }
  return v;
}

/* The low half of a surrogate pair: \uDC00..\uDFFF at p, or -1. */
static long low_surrogate(const unsigned char *p, const unsigned char *end) {
  if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
  long lo = hex4(p + 2, end);
  return lo >= 0xDC00 && lo <= 0xDFFF ? lo : -1;
}

/* \uXXXX at p (a surrogate pair takes two): appends its UTF-8, returns the
 * byte after it, or NULL on error. */
static const unsigned char *dec_unicode(dec *d, luaL_Buffer *b, const unsigned char *p) {
  long cp = hex4(p + 2, d->end);
  if (cp == -2) return dec_fail(d, d->end, "invalid JSON: unexpected end of input"), NULL;
  if (cp < 0) return dec_fail(d, p, "invalid JSON: invalid \\u escape in string"), NULL;
  const unsigned char *next = p + 6;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    long lo = low_surrogate(next, d->end);
    if (lo < 0) return dec_fail(d, p, "invalid JSON: unpaired surrogate \\u%04lX in string", cp), NULL;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    next += 6;
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return dec_fail(d, p, "invalid JSON: unpaired surrogate \\u%04lX in string", cp), NULL;
  }
  buffer_add_utf8(b, (unsigned)cp);
  return next;
}

/* The escape sequence at p ('\\'): appends what it stands for, returns the
 * byte after it, or NULL on error. */
static const unsigned char *dec_escape(dec *d, luaL_Buffer *b, const unsigned char *p) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  if (d->end - p < 2) return dec_fail(d, d->end, "invalid JSON: unexpected end of input"), NULL;
  if (p[1] == 'u') return dec_unicode(d, b, p);
  const char *hit = p[1] ? strchr(from, p[1]) : NULL;
  if (!hit) {
    if (p[1] >= 0x20 && p[1] < 0x7F)
      return dec_fail(d, p, "invalid JSON: invalid escape '\\%c' in string", p[1]), NULL;
    return dec_fail(d, p, "invalid JSON: invalid escape in string"), NULL;
  }
  luaL_addchar(b, to[hit - from]);
  return p + 2;
}

/* A byte that is not plain inside a string, other than '"' and '\\': the
 * length of the UTF-8 sequence it starts, or 0 after reporting the error. */
static size_t dec_string_special(dec *d, const unsigned char *p) {
  if (p == d->end) return dec_fail(d, p, "invalid JSON: unexpected end of input"), 0;
  if (*p < 0x20) return dec_fail(d, p, "invalid JSON: unescaped control character 0x%02X in string", *p), 0;
  size_t n = utf8_seq_len(p, d->end);
  if (n == 0) dec_fail(d, p, "invalid UTF-8 in string");
  return n;
}

/* The rest of a string that has escapes: s is its first byte, p its first
 * backslash. Builds the value in a luaL_Buffer (on the Lua stack). */
static int dec_string_escaped(dec *d, const unsigned char *s, const unsigned char *p) {
  luaL_Buffer b;
  luaL_buffinit(d->L, &b);
  buffer_add(&b, s, (size_t)(p - s));
  for (;;) {
    const unsigned char *run = p;
    p = scan_plain(p, d->end);
    buffer_add(&b, run, (size_t)(p - run));
    if (p < d->end && *p == '"') break;
    if (p < d->end && *p == '\\') {
      if (!(p = dec_escape(d, &b, p))) return -1;
      continue;
    }
    size_t n = dec_string_special(d, p);
    if (n == 0) return -1;
    buffer_add(&b, p, n);
    p += n;
  }
  luaL_pushresult(&b);
  d->p = p + 1;
  return 0;
}

/* A string at d->p ('"'): pushed straight from the input unless it has escapes. */
static int dec_string(dec *d) {
  const unsigned char *s = d->p + 1, *p = s;
  for (;;) {
    p = scan_plain(p, d->end);
    if (p < d->end && *p == '"') break;
    if (p < d->end && *p == '\\') return dec_string_escaped(d, s, p);
    size_t n = dec_string_special(d, p);
    if (n == 0) return -1;
    p += n;
  }
  lua_pushlstring(d->L, (const char *)s, (size_t)(p - s));
  d->p = p + 1;
  return 0;
}

/* true, false, null: lit is the expected text. */
static int dec_literal(dec *d, const char *lit, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (d->p + i >= d->end || d->p[i] != (unsigned char)lit[i]) return dec_unexpected(d, d->p + i);
  d->p += n;
  return 0;
}

/* A number's decimal digits as mant * 10^exp10. sig counts the significant
 * digits (leading zeros excluded); mant holds them exactly while sig <= 19
 * (beyond that it has wrapped around and only strtod can help). */
typedef struct numparts {
  uint64_t mant;
  int sig, exp10;
} numparts;

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Appends the digits at p to *m (wrapping when there are too many); returns
 * the first byte that is not a digit. */
static const unsigned char *add_digits(const unsigned char *p, const unsigned char *e, uint64_t *m) {
  uint64_t v = *m;
  for (; p < e && is_digit(*p); p++) v = v * 10 + (uint64_t)(*p - '0');
  *m = v;
  return p;
}

/* The fraction after the '.' at p; returns the byte after it. An absurdly
 * long one is left to strtod (sig is set beyond 19). */
static const unsigned char *scan_fraction(const unsigned char *p, const unsigned char *e, numparts *n) {
  const unsigned char *start = ++p;
  if (n->sig == 0)
    while (p < e && *p == '0') p++; /* 0.000ddd: the zeros are not significant */
  const unsigned char *digits = p;
  p = add_digits(p, e, &n->mant);
  if (p - start >= 100000) {
    n->sig = 100000;
    return p;
  }
  n->sig += (int)(p - digits);
  n->exp10 = -(int)(p - start);
  return p;
}

/* The exponent part at p ('e' or 'E'): adds it to n->exp10 (clamped, which
 * only matters for values that overflow or underflow anyway). Returns the
 * byte after it, or NULL when it has no digits. */
static const unsigned char *scan_exponent(const unsigned char *p, const unsigned char *e, numparts *n) {
  int neg = 0, v = 0;
  p++;
  if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
  if (p == e || !is_digit(*p)) return NULL;
  for (; p < e && is_digit(*p); p++)
    if (v < 100000) v = v * 10 + (*p - '0');
  n->exp10 += neg ? -v : v;
  return p;
}

/* strtod on a NUL-terminated copy of s[0..n) (the process runs in the "C"
 * locale). Returns 0, or -1 when out of memory. */
static int strtod_copy(const unsigned char *s, size_t n, double *out) {
  char small[64];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  *out = strtod(buf, NULL);
  if (buf != small) free(buf);
  return 0;
}

static int push_strtod(dec *d, const unsigned char *s, const unsigned char *e) {
  double v;
  if (strtod_copy(s, (size_t)(e - s), &v)) return dec_fail(d, s, "out of memory");
  lua_pushnumber(d->L, v);
  return 0;
}

/* The digits s[0..n) as a uint64_t; returns 0, or -1 when it does not fit. */
static int parse_u64(const unsigned char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned dig = s[i] - '0';
    if (v > (UINT64_MAX - dig) / 10) return -1;
    v = v * 10 + dig;
  }
  *out = v;
  return 0;
}

/* An integer literal s[0..e): exact number up to 2^53, then int64 / uint64
 * cdata, then the nearest double. */
static int push_integer(dec *d, const unsigned char *s, const unsigned char *e, numparts *n) {
  int neg = *s == '-';
  uint64_t m = n->mant;
  if (n->sig > 19 && parse_u64(s + neg, (size_t)(e - s - neg), &m)) return push_strtod(d, s, e);
  if (m <= (uint64_t)1 << 53) {
    lua_pushnumber(d->L, neg ? -(double)m : (double)m);
  } else if (neg && m <= (uint64_t)1 << 63) {
    ls_push_int64(d->L, m == (uint64_t)1 << 63 ? INT64_MIN : -(int64_t)m);
  } else if (neg) {
    lua_pushnumber(d->L, -(double)m);
  } else if (m <= INT64_MAX) {
    ls_push_int64(d->L, (int64_t)m);
  } else {
    ls_push_uint64(d->L, m);
  }
  return 0;
}

/* A number with a fraction or exponent, s[0..e): exactly by
 * ls_decimal_to_double when it has at most 19 significant digits (Clinger's
 * fast path or Eisel-Lemire), else by strtod. */
static int push_double(dec *d, const unsigned char *s, const unsigned char *e, numparts *n) {
  double v;
  if (n->sig > 19 || ls_decimal_to_double(n->mant, n->exp10, &v) != 0) return push_strtod(d, s, e);
  lua_pushnumber(d->L, *s == '-' ? -v : v);
  return 0;
}

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define EXACT_DIVISION 1
#else
#define EXACT_DIVISION 0
#endif

#define ONES 0x0101010101010101u
#define HIGHS 0x8080808080808080u

/* The common numbers, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with
 * at most 19 digits before the exponent, in one pass: the byte after the
 * number at p, with its value in *out; NULL for anything else (more digits, a
 * malformed number, and with exact_ints an integer literal beyond 2^53, which
 * a table keeps as int64), which dec_number then reads or reports. The digits
 * fit a uint64_t exactly, and the value is that times a power of ten: one
 * correctly rounded division when both are exact doubles (Clinger's fast
 * path), else ls_decimal_to_double, as dec_number does. */
static const unsigned char *fast_number(const unsigned char *p, const unsigned char *e, double *out,
                                        int exact_ints) {
  static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  int neg = p < e && *p == '-';
  p += neg;
  const unsigned char *s = p;
  uint64_t m = 0;
  for (; p < e && is_digit(*p); p++) m = m * 10 + (uint64_t)(*p - '0');
  long nint = p - s, nfrac = 0;
  if (nint == 0 || (*s == '0' && nint > 1)) return NULL;
  if (p < e && *p == '.') {
    const unsigned char *f = ++p;
    for (; p < e && is_digit(*p); p++) m = m * 10 + (uint64_t)(*p - '0');
    if ((nfrac = p - f) == 0) return NULL;
  }
  if (nint + nfrac > 19) return NULL;
  long exp10 = -nfrac;
  int has_exp = p < e && (*p == 'e' || *p == 'E');
  if (exact_ints && nfrac == 0 && !has_exp && m > (uint64_t)1 << 53) return NULL;
  if (has_exp) {
    int eneg = ++p < e && *p == '-';
    p += p < e && (*p == '-' || *p == '+');
    if (p == e || !is_digit(*p)) return NULL;
    long x = 0;
    for (; p < e && is_digit(*p); p++)
      if (x < 100000) x = x * 10 + (*p - '0');
    exp10 += eneg ? -x : x;
  }
  double v;
  if (EXACT_DIVISION && m <= (uint64_t)1 << 53 && exp10 <= 0 && exp10 >= -22) v = (double)m / pow10[-exp10];
  else if (ls_decimal_to_double(m, (int)exp10, &v) != 0) return NULL;
  *out = neg ? -v : v;
  return p;
}

static int dec_number(dec *d) {
  double v;
  const unsigned char *after = fast_number(d->p, d->end, &v, 1);
  if (after) {
    d->p = after;
    lua_pushnumber(d->L, v);
    return 0;
  }
  const unsigned char *s = d->p, *p = s, *e = d->end;
  numparts n = {0, 0, 0};
  int is_int = 1;
  if (*p == '-') p++;
  if (p == e || !is_digit(*p)) return dec_unexpected(d, p);
  if (*p == '0' && p + 1 < e && is_digit(p[1])) return dec_fail(d, s, "invalid JSON: leading zero in number");
  const unsigned char *int_start = p;
  p = add_digits(p, e, &n.mant);
  n.sig = *int_start == '0' ? 0 : (int)(p - int_start < 100000 ? p - int_start : 100000);
  if (p < e && *p == '.') {
    if (p + 1 == e || !is_digit(p[1])) return dec_unexpected(d, p + 1);
    p = scan_fraction(p, e, &n);
    is_int = 0;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    const unsigned char *x = scan_exponent(p, e, &n);
    if (!x) return dec_fail(d, s, "invalid JSON: invalid number");
    p = x;
    is_int = 0;
  }
  d->p = p;
  return is_int ? push_integer(d, s, p, &n) : push_double(d, s, p, &n);
}

/* ---- arrays of numbers as vecs (LS_ARRAYS_VEC) ---- */

/* Bytes that may appear between the brackets of an array of numbers. Over-
 * accepting is harmless ('/' passes the word test below): parsing stops at
 * any byte that cannot be part of a number, as the table path would. */
enum { NUM_OTHER, NUM_CHAR, NUM_COMMA, NUM_SPACE };
static const unsigned char NUM_CLASS[256] = {
  ['0'] = NUM_CHAR, ['1'] = NUM_CHAR, ['2'] = NUM_CHAR, ['3'] = NUM_CHAR, ['4'] = NUM_CHAR,
  ['5'] = NUM_CHAR, ['6'] = NUM_CHAR, ['7'] = NUM_CHAR, ['8'] = NUM_CHAR, ['9'] = NUM_CHAR,
  ['-'] = NUM_CHAR, ['+'] = NUM_CHAR, ['.'] = NUM_CHAR, ['e'] = NUM_CHAR, ['E'] = NUM_CHAR,
  [','] = NUM_COMMA, [' '] = NUM_SPACE, ['\n'] = NUM_SPACE, ['\r'] = NUM_SPACE, ['\t'] = NUM_SPACE,
};


/* Nonzero when all eight bytes of w are in 0x2B..0x39 ("+,-./" and the
 * digits: the compact text of numbers and commas). */
static int word_is_numeric(uint64_t w) {
  uint64_t below = (w - ONES * 0x2B) & ~w;      /* a byte < 0x2B (bit twiddling "hasless") */
  uint64_t above = (w + ONES * (127 - 0x39)) | w; /* a byte > 0x39 ("hasmore") */
  return ((below | above) & HIGHS) == 0;
}

/* The number of ',' bytes in w (exact, no borrows between bytes). */
static long word_commas(uint64_t w) {
  uint64_t y = w ^ (ONES * ','), t = ~(((y & ~HIGHS) + ~HIGHS) | y | ~HIGHS);
  return (long)(((t >> 7) * ONES) >> 56);
}

/* The element count of the array at d->p ('[') when everything up to its
 * first ']' is number characters, commas and whitespace (count = commas + 1,
 * or 0 for whitespace only); -1 otherwise, and for an array too long for a
 * vec. Parsing then either succeeds with exactly that many numbers or fails
 * at the same byte, with the same message, as the table path would. Runs of
 * compact numbers are checked eight bytes at a time. */
static long numeric_array_len(const dec *d) {
  long commas = 0;
  int any = 0;
  const unsigned char *p = d->p + 1, *e = d->end;
  for (;;) {
    uint64_t w;
    while (e - p >= 8 && (memcpy(&w, p, 8), word_is_numeric(w))) {
      commas += word_commas(w);
      any = 1;
      p += 8;
    }
    if (p >= e) return -1;
    switch (NUM_CLASS[*p]) {
    case NUM_CHAR: any = 1; break;
    case NUM_COMMA: any = 1; commas++; break;
    case NUM_SPACE: break;
    default:
      if (*p != ']' || commas >= INT32_MAX) return -1;
      return any ? commas + 1 : 0;
    }
    p++;
  }
}

/* A number fast_number declined (more than 19 digits, or malformed): read
 * by dec_number, as a table element would be, then taken as the nearest
 * double (an int64 / uint64 too). */
static int dec_number_double(dec *d, double *out) {
  if (d->p >= d->end || (*d->p != '-' && !is_digit(*d->p))) return dec_unexpected(d, d->p);
  if (dec_number(d)) return -1;
  int64_t v;
  int is_unsigned;
  if (ls_to_int64(d->L, -1, &v, &is_unsigned)) *out = is_unsigned ? (double)(uint64_t)v : (double)v;
  else *out = lua_tonumber(d->L, -1);
  lua_pop(d->L, 1);
  return 0;
}

/* The array at d->p, known to hold n numbers: pushes a vec of them, parsed
 * straight into its memory. */
static int dec_vec(dec *d, long n) {
  if (dec_enter(d)) return -1;
  double *x = ls_vec_push(d->L, (int32_t)n)->d;
  long i = 0;
  d->p++;
  skip_ws(d);
  int more = d->p < d->end && *d->p != ']';
  if (!more) d->p++; /* numeric_array_len saw the ']' */
  while (more) {
    if (i == n) return dec_unexpected(d, d->p); /* cannot happen: n counted the commas */
    const unsigned char *q = fast_number(d->p, d->end, &x[i], 0);
    if (q) d->p = q;
    else if (dec_number_double(d, &x[i])) return -1;
    i++;
    if (d->p + 1 < d->end && d->p[0] == ',' && (is_digit(d->p[1]) || d->p[1] == '-')) {
      d->p++; /* the compact form: straight to the next number */
      continue;
    }
    if ((more = dec_next_element(d, ']')) < 0) return -1;
  }
  d->depth--;
  return 0;
}

static int dec_value(dec *d) {
  if (d->p >= d->end) return dec_unexpected(d, d->p);
  switch (*d->p) {
  case '{': return dec_object(d);
  case '[': return dec_array(d);
  case '"': return dec_string(d);
  case 't':
    if (dec_literal(d, "true", 4)) return -1;
    lua_pushboolean(d->L, 1);
    return 0;
  case 'f':
    if (dec_literal(d, "false", 5)) return -1;
    lua_pushboolean(d->L, 0);
    return 0;
  case 'n':
    if (dec_literal(d, "null", 4)) return -1;
    ls_push_null(d->L);
    return 0;
  default:
    if (*d->p == '-' || is_digit(*d->p)) return dec_number(d);
    return dec_unexpected(d, d->p);
  }
}

int ls_json_decode(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  return ls_json_decode_opts(L, p, n, 0, err, errlen);
}

int ls_json_decode_opts(lua_State *L, const char *p, size_t n, int flags, char *err, size_t errlen) {
  return ls_json_decode_keys(L, p, n, flags, NULL, 0, err, errlen);
}

int ls_json_decode_keys(lua_State *L, const char *p, size_t n, int flags, ls_json_keys *keys, int tab,
                        char *err, size_t errlen) {
  if (n == 0 || p == NULL) {
    if (err && errlen) snprintf(err, errlen, "invalid JSON: empty input");
    return -1;
  }
  const unsigned char *u = (const unsigned char *)p;
  dec d = {.L = L,
           .p = u,
           .start = u,
           .end = u + n,
           .err = err,
           .errlen = errlen,
           .arrays_vec = (flags & LS_ARRAYS_VEC) != 0,
           .row_width = LS_ROW_WIDTH_OF(flags),
           .keys = keys,
           .keys_tab = tab};
  int top = lua_gettop(L);
  skip_ws(&d);
  if (d.p == d.end) {
    if (err && errlen) snprintf(err, errlen, "invalid JSON: empty input");
    return -1;
  }
  if (!lua_checkstack(L, LUA_MINSTACK)) {
    dec_fail(&d, d.p, "out of Lua stack space");
  } else if (dec_value(&d) == 0) {
    skip_ws(&d);
    if (d.p == d.end) return 0;
    dec_fail(&d, d.p, "trailing characters");
  }
  lua_settop(L, top);
  return -1;
}

/* ---------------------------------------------------------------------------
 * Flat rows (see json.h): parsed into slots here, built into tables by
 * luastream.jsonin. Everything the parse accepts, the decoder above reads the
 * same way: the same string scan and UTF-8 check, the same fast_number.
 * ------------------------------------------------------------------------- */

typedef struct flat_field {
  const unsigned char *key;
  uint32_t keylen;
  unsigned char kind;
  ls_json_slot val;
} flat_field;

static const unsigned char *flat_ws(const unsigned char *p, const unsigned char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* The string at p ('"') when it has no escapes and is valid UTF-8: its bytes
 * start at *s and end before the closing quote; returns the byte after that
 * quote, or NULL. */
static const unsigned char *flat_string(const unsigned char *p, const unsigned char *e,
                                        const unsigned char **s) {
  *s = ++p;
  for (;;) {
    p = scan_plain(p, e);
    if (p == e || *p == '\\' || *p < 0x20) return NULL;
    if (*p == '"') return p - *s <= (long)UINT32_MAX ? p + 1 : NULL;
    size_t n = utf8_seq_len(p, e);
    if (n == 0) return NULL;
    p += n;
  }
}

static const unsigned char *flat_literal(const unsigned char *p, const unsigned char *e, const char *lit,
                                         size_t n) {
  return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

/* The value at p (p < e) into v, its kind into *kind; returns the byte after
 * it, or NULL. */
static const unsigned char *flat_value(const unsigned char *p, const unsigned char *e, ls_json_slot *v,
                                       unsigned char *kind) {
  const unsigned char *s;
  *v = (ls_json_slot){0};
  switch (*p) {
  case '"':
    *kind = LS_JSON_STR;
    if (!(p = flat_string(p, e, &s))) return NULL;
    v->s = (const char *)s;
    v->n = (uint32_t)(p - 1 - s);
    return p;
  case 't': *kind = LS_JSON_BOOL; v->v = 1; return flat_literal(p, e, "true", 4);
  case 'f': *kind = LS_JSON_BOOL; return flat_literal(p, e, "false", 5);
  case 'n': *kind = LS_JSON_NULL; v->null = 1; return flat_literal(p, e, "null", 4);
  default: *kind = LS_JSON_NUM; return fast_number(p, e, &v->v, 1);
  }
}

/* The fields of the flat object p[0..e) (nothing after it but whitespace)
 * into fl; their count, or -1 when it is not one ({} included). */
static int flat_parse(const unsigned char *p, const unsigned char *e, flat_field *fl) {
  p = flat_ws(p, e);
  if (p == e || *p != '{') return -1;
  p = flat_ws(p + 1, e);
  int n = 0;
  for (;;) {
    if (n == LS_JSON_KEYS_MAX || p == e || *p != '"') return -1;
    flat_field *f = &fl[n];
    if (!(p = flat_string(p, e, &f->key))) return -1;
    f->keylen = (uint32_t)(p - 1 - f->key);
    p = flat_ws(p, e);
    if (p == e || *p != ':') return -1;
    p = flat_ws(p + 1, e);
    if (p == e || !(p = flat_value(p, e, &f->val, &f->kind))) return -1;
    n++;
    p = flat_ws(p, e);
    if (p == e || (*p != ',' && *p != '}')) return -1;
    if (*p == '}') break;
    p = flat_ws(p + 1, e);
  }
  return flat_ws(p + 1, e) == e ? n : -1;
}

/* Whether a value of kind `kind` fits a field of kind `field`: the same
 * kind, or null. */
static int kind_fits(int field, int kind) { return kind == field || kind == LS_JSON_NULL; }

/* Whether the row fl fits shape sh: the same keys in the same order, each
 * value of its field's kind or null. */
static int shape_is(const ls_json_shape *sh, const flat_field *fl, int n) {
  if (sh->nfields != n) return 0;
  for (int i = 0; i < n; i++)
    if (!kind_fits(sh->kind[i], fl[i].kind) || sh->keylen[i] != fl[i].keylen ||
        memcmp(sh->key[i], fl[i].key, fl[i].keylen) != 0)
      return 0;
  return 1;
}

/* A repeated key (the last one wins in a table) makes no shape. */
static int keys_distinct(const flat_field *fl, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (fl[i].keylen == fl[j].keylen && memcmp(fl[i].key, fl[j].key, fl[i].keylen) == 0) return 0;
  return 1;
}

/* A new shape for fl; its index, or -1 (no room, a repeated key, out of memory). */
static int shape_add(ls_json_flat *f, const flat_field *fl, int n) {
  if (f->nshapes == LS_JSON_SHAPES_MAX || !keys_distinct(fl, n)) return -1;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += (size_t)fl[i].keylen + 1;
  char *mem = malloc(total);
  if (!mem) return -1;
  static _Atomic uint32_t serials;
  ls_json_shape *sh = &f->shapes[f->nshapes];
  f->serial[f->nshapes] = ++serials;
  sh->nfields = n;
  for (int i = 0; i < n; i++) {
    memcpy(mem, fl[i].key, fl[i].keylen);
    mem[fl[i].keylen] = '\0';
    sh->key[i] = mem;
    sh->keylen[i] = fl[i].keylen;
    sh->kind[i] = fl[i].kind;
    mem += fl[i].keylen + 1;
  }
  return f->nshapes++;
}

/* The shape of fl (0-based), found or added; -1 when it has none. */
static int shape_find(ls_json_flat *f, const flat_field *fl, int n) {
  if (f->last < f->nshapes && shape_is(&f->shapes[f->last], fl, n)) return f->last;
  for (int s = 0; s < f->nshapes; s++)
    if (shape_is(&f->shapes[s], fl, n)) return f->last = s;
  int s = shape_add(f, fl, n);
  if (s >= 0) f->last = s;
  return s;
}

/* p at a key's opening quote: the byte after its closing quote when the key
 * is k (n bytes, a shape's: no escapes, so its closing quote is p[n + 1]),
 * else NULL. */
static const unsigned char *flat_key_is(const unsigned char *p, const unsigned char *e, const char *k,
                                        uint32_t n) {
  p++;
  if ((size_t)(e - p) <= n || p[n] != '"') return NULL;
  uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t a, b;
    memcpy(&a, p + i, 8);
    memcpy(&b, k + i, 8);
    if (a != b) return NULL;
  }
  for (; i < n; i++)
    if (p[i] != (unsigned char)k[i]) return NULL;
  return p + n + 1;
}

/* The value at p (p < e) when it fits a field of kind `field`, into v;
 * returns the byte after it, or NULL. */
static const unsigned char *flat_value_as(const unsigned char *p, const unsigned char *e, int field,
                                          ls_json_slot *v) {
  unsigned char kind;
  p = flat_value(p, e, v, &kind);
  return p && kind_fits(field, kind) ? p : NULL;
}

/* The text p[0..e) when it is a flat row of shape sh: 1 with its values in
 * out[0..nfields), else 0. The rows of a stream mostly have the shape of the
 * one before: this reads them without a key scan or a shape search. */
static int flat_parse_as(const ls_json_shape *sh, const unsigned char *p, const unsigned char *e,
                         ls_json_slot *out) {
  p = flat_ws(p, e);
  if (p == e || *p != '{') return 0;
  p++;
  for (int i = 0; i < sh->nfields; i++) {
    p = flat_ws(p, e);
    if (p == e || *p != '"' || !(p = flat_key_is(p, e, sh->key[i], sh->keylen[i]))) return 0;
    p = flat_ws(p, e);
    if (p == e || *p != ':') return 0;
    p = flat_ws(p + 1, e);
    if (p == e || !(p = flat_value_as(p, e, sh->kind[i], &out[i]))) return 0;
    p = flat_ws(p, e);
    if (p == e || *p != (i + 1 < sh->nfields ? ',' : '}')) return 0;
    p++;
  }
  return flat_ws(p, e) == e;
}

static int slots_reserve(ls_json_flat *f, size_t n) {
  if (f->nslots + n <= f->slotcap) return 0;
  size_t cap = f->slotcap ? f->slotcap : 1024;
  while (cap < f->nslots + n) cap *= 2;
  ls_json_slot *p = realloc(f->slot, cap * sizeof *p);
  if (!p) return -1;
  f->slot = p;
  f->slotcap = cap;
  return 0;
}

int ls_json_flat_init(ls_json_flat *f, int cap) {
  memset(f, 0, sizeof *f);
  size_t n = cap > 0 ? (size_t)cap : 1;
  f->row = malloc(n * sizeof *f->row);
  f->shape = malloc(n * sizeof *f->shape);
  f->first = malloc(n * sizeof *f->first);
  if (f->row && f->shape && f->first) { /* the slots come with the first row */
    f->cap = (int)n;
    return 0;
  }
  ls_json_flat_free(f);
  return -1;
}

void ls_json_flat_free(ls_json_flat *f) {
  free(f->row);
  free(f->shape);
  free(f->first);
  free(f->slot);
  for (int s = 0; s < f->nshapes; s++) free(f->shapes[s].key[0]);
  memset(f, 0, sizeof *f);
}

/* Row row of shape s, its values in the n slots from f->nslots on. */
static int flat_commit(ls_json_flat *f, int row, int s, int n) {
  f->row[f->n] = row;
  f->shape[f->n] = s + 1;
  f->first[f->n] = (int32_t)f->nslots;
  f->used |= 1u << s;
  f->nslots += (size_t)n;
  f->n++;
  return 1;
}

int ls_json_flat_add(ls_json_flat *f, const char *text, size_t len, int row) {
  if (f->n >= f->cap || !text || f->nslots + LS_JSON_KEYS_MAX > (size_t)INT32_MAX ||
      slots_reserve(f, LS_JSON_KEYS_MAX))
    return 0;
  const unsigned char *p = (const unsigned char *)text;
  ls_json_slot *out = f->slot + f->nslots;
  if (f->last < f->nshapes && flat_parse_as(&f->shapes[f->last], p, p + len, out))
    return flat_commit(f, row, f->last, f->shapes[f->last].nfields);
  flat_field fl[LS_JSON_KEYS_MAX];
  int n = flat_parse(p, p + len, fl);
  int s = n > 0 ? shape_find(f, fl, n) : -1;
  if (s < 0) return 0;
  for (int i = 0; i < n; i++) out[i] = fl[i].val;
  return flat_commit(f, row, s, n);
}

void ls_json_flat_drop_last(ls_json_flat *f) {
  if (f->n == 0) return;
  f->n--;
  f->nslots = (size_t)f->first[f->n];
}

void ls_json_flat_clear(ls_json_flat *f) {
  f->n = 0;
  f->used = 0;
  f->nslots = 0;
}

static const ls_json_shape *ffi_shape(const ls_json_flat *f, int s) {
  return f && s >= 1 && s <= f->nshapes ? &f->shapes[s - 1] : NULL;
}

int ls_ffi_json_shape_fields(const ls_json_flat *f, int s) {
  const ls_json_shape *sh = ffi_shape(f, s);
  return sh ? sh->nfields : 0;
}

const char *ls_ffi_json_shape_key(const ls_json_flat *f, int s, int i, size_t *len) {
  const ls_json_shape *sh = ffi_shape(f, s);
  if (!sh || i < 0 || i >= sh->nfields) return NULL;
  *len = sh->keylen[i];
  return sh->key[i];
}

int ls_ffi_json_shape_kind(const ls_json_flat *f, int s, int i) {
  const ls_json_shape *sh = ffi_shape(f, s);
  return sh && i >= 0 && i < sh->nfields ? sh->kind[i] : 0;
}

/* ---------------------------------------------------------------------------
 * Encoder
 * ------------------------------------------------------------------------- */

/* One step of the JSON path to the value being encoded, for error messages. */
typedef struct path_step {
  enum { STEP_INDEX, STEP_KEY, STEP_NUMBER_KEY } kind;
  size_t index;    /* STEP_INDEX: 0-based */
  const char *key; /* STEP_KEY: valid while the key is on the Lua stack */
  size_t keylen;
  double number; /* STEP_NUMBER_KEY */
} path_step;

typedef struct enc {
  lua_State *L;
  ls_buf *out;
  int depth; /* tables open */
  int steps; /* valid entries of path */
  path_step path[LS_JSON_MAX_ENCODE_DEPTH + 1];
  char *err;
  size_t errlen;
} enc;

/* Bounded appends for the path text; a full buffer ends in "...". */
typedef struct text {
  char *s;
  size_t len, cap; /* cap excludes the NUL */
} text;

static void text_add(text *t, const char *s, size_t n) {
  if (t->len + n > t->cap) {
    memcpy(t->s + t->cap - 3, "...", 3);
    t->len = t->cap;
    return;
  }
  memcpy(t->s + t->len, s, n);
  t->len += n;
}

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) return 0;
  }
  return 1;
}

/* ["key"], keeping valid UTF-8 and printable ASCII, '?' for any other byte. */
static void text_add_quoted_key(text *t, const char *key, size_t n) {
  const unsigned char *p = (const unsigned char *)key, *end = p + (n > 64 ? 64 : n);
  text_add(t, "[\"", 2);
  while (p < end) {
    size_t k = *p >= 0x80 ? utf8_seq_len(p, end) : (*p >= 0x20 && *p < 0x7F);
    if (*p == '"' || *p == '\\') text_add(t, "\\", 1);
    text_add(t, k ? (const char *)p : "?", k ? k : 1);
    p += k ? k : 1;
  }
  text_add(t, n > 64 ? "...\"]" : "\"]", n > 64 ? 5 : 2);
}

static void text_add_step(text *t, const path_step *st) {
  char num[LS_DTOA_BUFSIZE + 4];
  if (st->kind == STEP_INDEX) {
    num[0] = '[';
    int n = 1 + write_u64(num + 1, st->index);
    num[n++] = ']';
    text_add(t, num, (size_t)n);
  } else if (st->kind == STEP_NUMBER_KEY) {
    int n = write_number(num, st->number);
    text_add_quoted_key(t, num, (size_t)n);
  } else if (is_identifier(st->key, st->keylen)) {
    text_add(t, ".", 1);
    text_add(t, st->key, st->keylen);
  } else {
    text_add_quoted_key(t, st->key, st->keylen);
  }
}

/* Formats "<message> at $<path>" into e->err; returns -1. */
static int enc_fail(enc *e, const char *fmt, ...) {
  if (!e->err || e->errlen == 0) return -1;
  char path[300];
  text t = {path, 0, sizeof path - 1};
  text_add(&t, "$", 1);
  for (int i = 0; i < e->steps && t.len < t.cap; i++) text_add_step(&t, &e->path[i]);
  path[t.len] = '\0';
  char msg[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(e->err, e->errlen, "%s at %s", msg, path);
  return -1;
}

static int enc_put(enc *e, const void *p, size_t n) {
  return ls_buf_put(e->out, p, n) ? enc_fail(e, "out of memory") : 0;
}

static int enc_putc(enc *e, char c) { return ls_buf_putc(e->out, c) ? enc_fail(e, "out of memory") : 0; }

/* The escape sequence for c: \" \\ \b \f \n \r \t or \u00XX. */
static int enc_escape(enc *e, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char s[6] = {'\\', (char)c, '0', '0', 0, 0};
  size_t n = 2;
  switch (c) {
  case '"': case '\\': break;
  case '\b': s[1] = 'b'; break;
  case '\f': s[1] = 'f'; break;
  case '\n': s[1] = 'n'; break;
  case '\r': s[1] = 'r'; break;
  case '\t': s[1] = 't'; break;
  default:
    s[1] = 'u';
    s[4] = hex[c >> 4];
    s[5] = hex[c & 15];
    n = 6;
  }
  return enc_put(e, s, n);
}

/* The rest of a quoted string from p, whose plain bytes from run on are not
 * written yet: copies the plain runs, escapes, checks multi-byte sequences,
 * then the closing quote and the byte after (if any). */
static int enc_string_slow(enc *e, const unsigned char *run, const unsigned char *p,
                           const unsigned char *end, char after, const char *what) {
  for (;;) {
    p = scan_plain(p, end);
    if (p == end) break;
    if (*p >= 0x80) {
      size_t k = utf8_seq_len(p, end);
      if (k == 0) return enc_fail(e, "invalid UTF-8 in %s", what);
      p += k;
      continue;
    }
    if (enc_put(e, run, (size_t)(p - run)) || enc_escape(e, *p)) return -1;
    run = ++p;
  }
  if (enc_put(e, run, (size_t)(end - run)) || enc_putc(e, '"')) return -1;
  return after ? enc_putc(e, after) : 0;
}

/* A quoted string, then the byte after unless it is 0 (the ':' after a key).
 * what names it in the error ("string", "object key"). Strings with nothing
 * to escape, most keys and values, are one check and one copy. */
static int enc_string(enc *e, const char *str, size_t n, char after, const char *what) {
  const unsigned char *s = (const unsigned char *)str;
  if (ls_buf_reserve(e->out, n + 3)) return enc_fail(e, "out of memory");
  char *dst = e->out->data + e->out->len;
  dst[0] = '"';
  if (!all_plain(s, n)) {
    e->out->len++;
    return enc_string_slow(e, s, s, s + n, after, what);
  }
  memcpy(dst + 1, s, n);
  dst[n + 1] = '"';
  dst[n + 2] = after;
  e->out->len += n + 2 + (after != 0);
  return 0;
}

static int enc_number(enc *e, double v) {
  if (!isfinite(v)) return enc_fail(e, "cannot encode NaN or infinity");
  if (ls_buf_reserve(e->out, LS_DTOA_BUFSIZE)) return enc_fail(e, "out of memory");
  e->out->len += (size_t)write_number(e->out->data + e->out->len, v);
  return 0;
}

/* A vec: an array of its elements, each written like a number. A NaN or
 * infinite element fails with its index in the path. */
static int enc_vec(enc *e, const ls_vec *v) {
  if (enc_putc(e, '[')) return -1;
  for (int32_t i = 0; i < v->n; i++) {
    double x = v->d[i];
    if (!isfinite(x)) {
      e->path[e->depth] = (path_step){.kind = STEP_INDEX, .index = (size_t)i};
      e->steps = e->depth + 1;
      return enc_fail(e, "cannot encode NaN or infinity");
    }
    if (ls_buf_reserve(e->out, LS_DTOA_BUFSIZE + 1)) return enc_fail(e, "out of memory");
    char *dst = e->out->data + e->out->len;
    if (i > 0) *dst++ = ',';
    e->out->len += (size_t)(i > 0) + (size_t)write_number(dst, x);
  }
  return enc_putc(e, ']');
}

static int enc_cdata(enc *e, int idx) {
  int64_t v;
  int is_unsigned;
  if (!ls_to_int64(e->L, idx, &v, &is_unsigned)) {
    ls_vec *vec = lua_checkstack(e->L, 4) ? ls_vec_to(e->L, idx) : NULL;
    return vec ? enc_vec(e, vec) : enc_fail(e, "cannot encode a cdata value");
  }
  if (ls_buf_reserve(e->out, 24)) return enc_fail(e, "out of memory");
  char *dst = e->out->data + e->out->len;
  e->out->len += (size_t)(is_unsigned ? write_u64(dst, (uint64_t)v) : write_i64(dst, v));
  return 0;
}

static int enc_value(enc *e, int idx);

static int enc_array(enc *e, int idx, size_t n) {
  lua_State *L = e->L;
  path_step *st = &e->path[e->depth - 1];
  if (enc_putc(e, '[')) return -1;
  for (size_t i = 1; i <= n; i++) {
    if (i > 1 && enc_putc(e, ',')) return -1;
    st->kind = STEP_INDEX;
    st->index = i - 1;
    e->steps = e->depth;
    lua_rawgeti(L, idx, (int)i);
    if (enc_value(e, lua_gettop(L))) return -1;
    lua_pop(L, 1);
  }
  return enc_putc(e, ']');
}

/* The key at idx, quoted, followed by ':'. Leaves its path step filled in. */
static int enc_key(enc *e, int idx) {
  path_step *st = &e->path[e->depth - 1];
  int type = lua_type(e->L, idx);
  if (type == LUA_TSTRING) {
    st->kind = STEP_KEY;
    st->key = lua_tolstring(e->L, idx, &st->keylen);
    return enc_string(e, st->key, st->keylen, ':', "object key");
  } else if (type == LUA_TNUMBER) {
    double k = lua_tonumber(e->L, idx); /* not lua_tolstring: it would change the key */
    char num[LS_DTOA_BUFSIZE + 2];
    if (!isfinite(k)) return enc_fail(e, "cannot encode an infinite object key");
    st->kind = STEP_NUMBER_KEY;
    st->number = k;
    num[0] = '"';
    int n = 1 + write_number(num + 1, k);
    num[n++] = '"';
    if (enc_put(e, num, (size_t)n)) return -1;
  } else {
    return enc_fail(e, "cannot encode a %s as an object key", lua_typename(e->L, type));
  }
  return enc_putc(e, ':');
}

static int enc_object(enc *e, int idx) {
  lua_State *L = e->L;
  int first = 1;
  if (enc_putc(e, '{')) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L); /* key at top - 1, value at top */
    if (!first && enc_putc(e, ',')) return -1;
    first = 0;
    e->steps = e->depth - 1;
    if (enc_key(e, top - 1)) return -1;
    e->steps = e->depth;
    if (enc_value(e, top)) return -1;
    lua_pop(L, 1);
  }
  return enc_putc(e, '}');
}

static int enc_table(enc *e, int idx) {
  if (e->depth >= LS_JSON_MAX_ENCODE_DEPTH)
    return enc_fail(e, "table nested deeper than %d (a cycle?)", LS_JSON_MAX_ENCODE_DEPTH);
  if (!lua_checkstack(e->L, 4)) return enc_fail(e, "out of Lua stack space");
  size_t n;
  e->depth++;
  int rc = ls_table_is_array(e->L, idx, &n) ? enc_array(e, idx, n) : enc_object(e, idx);
  e->depth--;
  e->steps = e->depth;
  return rc;
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  int type = lua_type(L, idx);
  switch (type) {
  case LUA_TNIL: return enc_put(e, "null", 4);
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? enc_put(e, "true", 4) : enc_put(e, "false", 5);
  case LUA_TNUMBER: return enc_number(e, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return enc_string(e, s, n, 0, "string");
  }
  case LUA_TTABLE: return enc_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) return enc_put(e, "null", 4);
    return enc_fail(e, "cannot encode a light userdata");
  case LS_LUA_TCDATA: return enc_cdata(e, idx);
  default: return enc_fail(e, "cannot encode a %s", lua_typename(L, type));
  }
}

int ls_json_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  enc e;
  e.L = L;
  e.out = out;
  e.depth = e.steps = 0;
  e.err = err;
  e.errlen = errlen;
  int top = lua_gettop(L);
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = top + idx + 1;
  size_t len0 = out->len;
  int rc = lua_checkstack(L, LUA_MINSTACK) ? enc_value(&e, idx) : enc_fail(&e, "out of Lua stack space");
  lua_settop(L, top);
  if (rc) out->len = len0;
  return rc;
}

/* ---- Flat objects from Lua (json.h, luastream/jsonout.lua) ---- */

/* An encoder with no Lua state and no error text: enc_fail returns -1 at once
 * (it looks at err first), and nothing here reads the path. */
static void ffi_enc(enc *e, ls_buf *out) {
  e->L = NULL;
  e->out = out;
  e->depth = e->steps = 0;
  e->err = NULL;
  e->errlen = 0;
}

/* Writes sep, the quoted key and ':' with room for extra bytes after them;
 * returns where the value goes, or NULL (out of memory, invalid UTF-8). */
static char *ffi_key(ls_buf *out, int sep, const char *key, size_t keylen, size_t extra) {
  if (ls_buf_reserve(out, keylen + 4 + extra)) return NULL;
  char *d = out->data + out->len;
  *d = (char)sep;
  if (!all_plain((const unsigned char *)key, keylen)) { /* enc_string's slow way */
    enc e;
    ffi_enc(&e, out);
    out->len++;
    if (enc_string(&e, key, keylen, ':', "object key") || ls_buf_reserve(out, extra)) return NULL;
    return out->data + out->len;
  }
  d[1] = '"';
  memcpy(d + 2, key, keylen);
  d[2 + keylen] = '"';
  d[3 + keylen] = ':';
  return d + 4 + keylen;
}

int ls_ffi_json_num(ls_buf *out, int sep, const char *key, size_t keylen, double v) {
  char *d = isfinite(v) ? ffi_key(out, sep, key, keylen, LS_DTOA_BUFSIZE) : NULL;
  if (!d) return -1;
  out->len = (size_t)(d - out->data) + (size_t)write_number(d, v);
  return 0;
}

int ls_ffi_json_str(ls_buf *out, int sep, const char *key, size_t keylen, const char *s, size_t n) {
  char *d = ffi_key(out, sep, key, keylen, 0);
  if (!d) return -1;
  out->len = (size_t)(d - out->data);
  enc e;
  ffi_enc(&e, out);
  return enc_string(&e, s, n, 0, "string");
}

int ls_ffi_json_bool(ls_buf *out, int sep, const char *key, size_t keylen, bool v) {
  char *d = ffi_key(out, sep, key, keylen, 5);
  if (!d) return -1;
  memcpy(d, v ? "true" : "false", v ? 4 : 5);
  out->len = (size_t)(d - out->data) + (v ? 4 : 5);
  return 0;
}

int ls_ffi_json_close(ls_buf *out) { return ls_buf_putc(out, '}'); }
