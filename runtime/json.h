/* json.h - JSON <-> Lua values, built directly on the Lua stack.
 *
 * Owns the "json" serializer that codec.c dispatches to. Values follow
 * luavalue.h: null is ls.null, arrays carry the shared array marker so [] and
 * {} round-trip, integers beyond 2^53 are int64_t / uint64_t cdata. Doubles are
 * written with ls_dtoa (dtoa.h), the shortest text that reads back exactly.
 *
 * Decoding:
 *   objects -> tables (duplicate key: the last wins); arrays -> marked tables;
 *   strings -> Lua strings (escapes decoded, UTF-8 validated and kept byte-exact);
 *   integers (no '.' or exponent): |v| <= 2^53 -> number, else int64_t cdata,
 *   else uint64_t cdata, else (beyond 64 bits) the nearest double;
 *   other numbers -> the correctly rounded double (an overflow gives +-inf).
 *   Nesting deeper than LS_JSON_MAX_DEPTH is an error.
 *   With LS_ARRAYS_VEC (luavalue.h), an array whose elements are all numbers
 *   ([] included) becomes a vec (ls.vec) instead: each element is the
 *   correctly rounded double of its text, integers beyond 2^53 too (no
 *   int64). Any other array stays a marked table.
 * Encoding:
 *   tables -> arrays or objects (ls_table_is_array decides); object keys must be
 *   strings or numbers (numbers are written as their JSON text, quoted);
 *   integral numbers below 2^53 as integers; NaN and infinities are errors;
 *   int64/uint64 cdata exactly; ls.null and nil -> null; strings must be UTF-8;
 *   a vec -> an array of its elements, written like numbers (a NaN or infinite
 *   element is an error naming its index).
 *   Functions, threads, userdata other than ls.null and other cdata are errors,
 *   as are tables nested deeper than LS_JSON_MAX_ENCODE_DEPTH (a cycle, usually).
 *
 * Error messages are one line. Decode errors give the byte offset (from 0) in
 * the input; encode errors give the JSON path of the offending value, with
 * 0-based array indexes: "cannot encode a function at $.x[2]". */
#ifndef LS_JSON_H
#define LS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"

#define LS_JSON_MAX_DEPTH 512
#define LS_JSON_MAX_ENCODE_DEPTH 128

/* Decode JSON text p[0..n) and push exactly one Lua value. Returns 0, or -1 with a
 * one-line message in err (e.g. "invalid JSON: unexpected character 'x' at byte 17")
 * and the Lua stack exactly as it was. Runs inside a protected Lua call (Lua may
 * raise out-of-memory errors). */
int ls_json_decode(lua_State *L, const char *p, size_t n, char *err, size_t errlen);
/* The same with option flags: LS_ARRAYS_VEC, LS_ROW_WIDTH(n) (luavalue.h) or 0. */
int ls_json_decode_opts(lua_State *L, const char *p, size_t n, int flags, char *err, size_t errlen);

/* The keys of the last top-level object decoded, by position, for rows of one
 * shape: a key found at its position again is pushed from the Lua table that
 * holds them (at stack index `tab`, given to each call) instead of being made
 * anew with lua_pushlstring, which hashes it and looks it up among the
 * interned strings. A key is only kept when it has no escapes: the same bytes
 * then always read as the same string. s[i] and len[i] are the bytes of
 * tab[i + 1], which keeps them alive; zero the struct and give an empty table
 * to start. One per Lua state (the table belongs to it). */
#define LS_JSON_KEYS_MAX 32
typedef struct ls_json_keys {
  const char *s[LS_JSON_KEYS_MAX];
  size_t len[LS_JSON_KEYS_MAX];
} ls_json_keys;

/* ls_json_decode_opts with the keys of top-level objects taken from, and
 * kept in, keys and the table at stack index tab (absolute). */
int ls_json_decode_keys(lua_State *L, const char *p, size_t n, int flags, ls_json_keys *keys, int tab,
                        char *err, size_t errlen);

/* Flat rows, decoded in two halves (docs/internals.md, "Decoding inputs"):
 * ls_json_flat_add parses a top-level object whose values are all numbers
 * that read as doubles, strings without escapes, true, false or null, with at
 * most LS_JSON_KEYS_MAX distinct keys without escapes, into slots (no Lua
 * call); luastream.jsonin then builds the tables of all such rows of a batch
 * in one compiled loop per shape. A shape is the keys in their order with the
 * kind of each value (number, string, boolean, or null when the row that made
 * the shape had null there); a null fits a field of any kind. The first
 * LS_JSON_SHAPES_MAX shapes seen are kept for the struct's life; rows of any
 * other shape (and all other text, valid or not) are left to
 * ls_json_decode_keys. A row built from slots equals what ls_json_decode_keys
 * makes of its text: tests/fuzz/fuzz_json.c checks the slots of every text
 * the parse takes, over runs of rows that share the shapes they make, and
 * tests/lua/jsonin_spec.lua the tables built from them.
 *
 * The part Lua reads through FFI comes first (luastream/jsonin.lua declares
 * it): n rows, each with its 1-based row number, its shape (1-based) and the
 * index of its first slot; a row's fields are the slots that follow, in its
 * shape's order. Each shape also has a serial number no other shape in the
 * process has, by which Lua keeps what it made for it. A string slot points into the text given to
 * ls_json_flat_add, which must outlive the build. */
#define LS_JSON_SHAPES_MAX 16
enum { LS_JSON_NUM = 1, LS_JSON_STR, LS_JSON_BOOL, LS_JSON_NULL };
typedef struct ls_json_slot {
  double v;      /* LS_JSON_NUM; LS_JSON_BOOL: 0 or 1 */
  const char *s; /* LS_JSON_STR: n bytes, not NUL-terminated */
  uint32_t n;
  uint32_t null; /* 1: the value is null, whatever the field's kind */
} ls_json_slot;
typedef struct ls_json_shape {
  int nfields;
  unsigned char kind[LS_JSON_KEYS_MAX];
  uint32_t keylen[LS_JSON_KEYS_MAX];
  char *key[LS_JSON_KEYS_MAX]; /* one allocation from key[0] on */
} ls_json_shape;
typedef struct ls_json_flat {
  int32_t n;
  uint32_t used;        /* bit s - 1: shape s has rows in this batch */
  int32_t *row, *shape, *first;
  ls_json_slot *slot;
  uint32_t serial[LS_JSON_SHAPES_MAX]; /* of shape s at s - 1: unique in the process */
  /* C only */
  int cap;              /* rows */
  size_t nslots, slotcap;
  int nshapes, last;    /* last: the shape matched last (0-based), tried first */
  ls_json_shape shapes[LS_JSON_SHAPES_MAX];
} ls_json_flat;

/* Room for cap rows per batch; 0, or -1 when out of memory (then f holds none). */
int ls_json_flat_init(ls_json_flat *f, int cap);
void ls_json_flat_free(ls_json_flat *f);
/* Parses p[0..n) as a flat row numbered row: 1 when it was added, 0 when it is
 * not one (or when out of memory): decode it with ls_json_decode_keys. */
int ls_json_flat_add(ls_json_flat *f, const char *p, size_t n, int row);
/* Forgets the row added last (its record failed later on). */
void ls_json_flat_drop_last(ls_json_flat *f);
/* Forgets all rows (not the shapes). */
void ls_json_flat_clear(ls_json_flat *f);

/* For luastream.jsonin: field i (0-based) of shape s (1-based): its key (and
 * *len) and kind; the shape's field count. */
int ls_ffi_json_shape_fields(const ls_json_flat *f, int s);
const char *ls_ffi_json_shape_key(const ls_json_flat *f, int s, int i, size_t *len);
int ls_ffi_json_shape_kind(const ls_json_flat *f, int s, int i);

/* Append the JSON text of the Lua value at stack index idx to out. Returns 0, or -1
 * with a one-line message in err (e.g. "cannot encode NaN or infinity at $.a.b") and
 * out->len as it was. The stack is unchanged on return. Runs inside a protected call. */
int ls_json_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen);

/* Flat objects written from Lua (luastream/jsonout.lua, through FFI): one
 * field of an object, appended to out as sep ('{' before the first field, ','
 * before the others), the quoted key, ':' and the value, with the same
 * functions ls_json_encode uses, so the text is the same byte for byte. Each
 * returns 0, or -1 when ls_json_encode must do the object instead (a NaN or
 * an infinity, invalid UTF-8, out of memory: it then reports the error with
 * its path); out->len is then undefined and the caller resets it. They touch
 * no Lua state. */
int ls_ffi_json_num(ls_buf *out, int sep, const char *key, size_t keylen, double v);
int ls_ffi_json_str(ls_buf *out, int sep, const char *key, size_t keylen, const char *s, size_t n);
int ls_ffi_json_bool(ls_buf *out, int sep, const char *key, size_t keylen, bool v);
/* The closing '}' of such an object; 0, or -1 when out of memory. */
int ls_ffi_json_close(ls_buf *out);

#endif
