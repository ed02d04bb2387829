/* fuzz_json.c - libFuzzer target for the JSON codec (runtime/json.c).
 *
 * Decodes the input; when that succeeds, encodes the value, decodes that text
 * and encodes again. The second value must equal the first and both encodings
 * must have the same length (object key order may differ, as tables built with
 * different size hints iterate differently). Encoding may only fail for an
 * infinity (1e400 decodes to one). Any other difference, a crash, a sanitizer
 * report or an unbalanced Lua stack aborts.
 *
 * The input is also decoded with LS_ARRAYS_VEC (arrays of numbers become
 * vecs): that must fail exactly when the plain decode fails, with the same
 * message, and otherwise give the same value with each vec in place of a
 * marked table of the same numbers (int64 cdata as their nearest double). The
 * vec form must then encode (unless it holds an infinity) and decode again
 * with the option to the same value, bit for bit.
 *
 * And it is decoded twice keeping top-level keys (ls_json_decode_keys), with
 * the keys kept from earlier inputs and then with its own: the outcome, the
 * message and the value must be the plain decode's.
 *
 * And it is parsed as a flat row (ls_json_flat_add), with the shapes the
 * inputs before it in its run of 64 made: when that takes it, the plain decode
 * must have succeeded, and the table made from the row's slots and shape as
 * luastream.jsonin makes it must equal the plain decode's value.
 *
 * The codec sources are compiled into this file, under other names, rather
 * than taken from the lscore objects: the build instruments only this target's
 * own sources for coverage, and the fuzzer needs coverage of the codec.
 *
 * Build and run: cmake -S . -B /tmp/fuzzbuild -DLS_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   && cmake --build /tmp/fuzzbuild --target fuzz_json
 *   && /tmp/fuzzbuild/fuzz_json -max_total_time=60 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define ls_json_decode fuzz_json_decode
#define ls_json_decode_opts fuzz_json_decode_opts
#define ls_json_decode_keys fuzz_json_decode_keys
#define ls_json_encode fuzz_json_encode
#define ls_dtoa fuzz_dtoa
#define ls_u64toa fuzz_u64toa
#define ls_decimal_to_double fuzz_decimal_to_double
#define ls_ffi_json_num fuzz_ffi_json_num
#define ls_ffi_json_str fuzz_ffi_json_str
#define ls_ffi_json_bool fuzz_ffi_json_bool
#define ls_ffi_json_close fuzz_ffi_json_close
#define ls_json_flat_init fuzz_json_flat_init
#define ls_json_flat_free fuzz_json_flat_free
#define ls_json_flat_add fuzz_json_flat_add
#define ls_json_flat_drop_last fuzz_json_flat_drop_last
#define ls_json_flat_clear fuzz_json_flat_clear
#define ls_ffi_json_shape_fields fuzz_ffi_json_shape_fields
#define ls_ffi_json_shape_key fuzz_ffi_json_shape_key
#define ls_ffi_json_shape_kind fuzz_ffi_json_shape_kind
#include "../../runtime/dtoa.c"
#include "../../runtime/json.c"
#include "lua_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_input {
  const char *data;
  size_t size;
} fuzz_input;

static void fuzz_fail(const char *what, const fuzz_input *in) {
  fprintf(stderr, "fuzz_json: %s for input of %zu bytes: %.*s\n", what, in->size,
          (int)(in->size > 200 ? 200 : in->size), in->data);
  abort();
}

static int fuzz_array_marked(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  ls_push_array_mt(L);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static int fuzz_equal(lua_State *L, int a, int b);

/* Tables a and b have the same keys and eq holds for every pair of values. */
static int fuzz_tables_equal_by(lua_State *L, int a, int b, int (*eq)(lua_State *, int, int)) {
  if (fuzz_array_marked(L, a) != fuzz_array_marked(L, b)) return 0;
  int na = 0, nb = 0;
  lua_pushnil(L);
  while (lua_next(L, b)) {
    lua_pop(L, 1);
    nb++;
  }
  lua_pushnil(L);
  while (lua_next(L, a)) { /* key -2, value -1 */
    na++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int same = eq(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 2);
    if (!same) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return na == nb;
}

static int fuzz_tables_equal(lua_State *L, int a, int b) {
  return fuzz_tables_equal_by(L, a, b, fuzz_equal);
}

/* int64/uint64 cdata as a double (an integral double at or beyond 2^53 is
 * written as an integer, which decodes to cdata that converts back to it). */
static int fuzz_int64_as_double(lua_State *L, int idx, double *out) {
  int64_t v;
  int is_unsigned;
  if (!ls_to_int64(L, idx, &v, &is_unsigned)) return 0;
  *out = is_unsigned ? (double)(uint64_t)v : (double)v;
  return 1;
}

static int fuzz_equal(lua_State *L, int a, int b) {
  int ta = lua_type(L, a), tb = lua_type(L, b);
  double x, y;
  if (ta == LUA_TNUMBER && tb == LS_LUA_TCDATA) return fuzz_int64_as_double(L, b, &y) && lua_tonumber(L, a) == y;
  if (ta == LS_LUA_TCDATA && tb == LUA_TNUMBER) return fuzz_int64_as_double(L, a, &x) && lua_tonumber(L, b) == x;
  if (ta != tb) return 0;
  switch (ta) {
  case LUA_TNUMBER:
    x = lua_tonumber(L, a);
    y = lua_tonumber(L, b);
    return x == y && signbit(x) == signbit(y);
  case LUA_TSTRING: {
    size_t na, nb;
    const char *sa = lua_tolstring(L, a, &na), *sb = lua_tolstring(L, b, &nb);
    return na == nb && memcmp(sa, sb, na) == 0;
  }
  case LUA_TTABLE: return fuzz_tables_equal(L, a, b);
  case LS_LUA_TCDATA: {
    int64_t v, w;
    int uv, uw;
    return ls_to_int64(L, a, &v, &uv) && ls_to_int64(L, b, &w, &uw) && v == w && uv == uw;
  }
  default: return lua_rawequal(L, a, b);
  }
}

/* The value at t (decoded without the option) and at v (with it) hold the
 * same data: every vec at v is a marked table at t of the same numbers. */
static int fuzz_vec_equiv(lua_State *L, int t, int v);

static int fuzz_vec_matches_table(lua_State *L, int t, const ls_vec *vec) {
  if (lua_type(L, t) != LUA_TTABLE || !fuzz_array_marked(L, t) || lua_objlen(L, t) != (size_t)vec->n) return 0;
  for (int32_t i = 0; i < vec->n; i++) {
    lua_rawgeti(L, t, i + 1);
    double x;
    int ok = lua_type(L, -1) == LUA_TNUMBER ? (x = lua_tonumber(L, -1), 1) : fuzz_int64_as_double(L, -1, &x);
    lua_pop(L, 1);
    if (!ok || memcmp(&x, &vec->d[i], sizeof x) != 0) return 0;
  }
  return 1;
}

static int fuzz_vec_tables(lua_State *L, int t, int v) {
  return lua_objlen(L, t) == lua_objlen(L, v) && fuzz_tables_equal_by(L, t, v, fuzz_vec_equiv);
}

static int fuzz_vec_equiv(lua_State *L, int t, int v) {
  ls_vec *vec = ls_vec_to(L, v);
  if (vec) return fuzz_vec_matches_table(L, t, vec);
  if (lua_type(L, t) == LUA_TTABLE && lua_type(L, v) == LUA_TTABLE) return fuzz_vec_tables(L, t, v);
  return fuzz_equal(L, t, v);
}

/* Both values bit for bit the same, vecs compared element by element. */
static int fuzz_vec_same(lua_State *L, int a, int b) {
  ls_vec *x = ls_vec_to(L, a), *y = ls_vec_to(L, b);
  if (x || y) return x && y && x->n == y->n && (x->n == 0 || memcmp(x->d, y->d, (size_t)x->n * sizeof *x->d) == 0);
  if (lua_type(L, a) == LUA_TTABLE && lua_type(L, b) == LUA_TTABLE)
    return fuzz_tables_equal_by(L, a, b, fuzz_vec_same);
  return fuzz_equal(L, a, b);
}

/* Encodes the value at idx into out (reset first); 0, or -1 with err set. */
static int fuzz_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  int top = lua_gettop(L);
  out->len = 0;
  int rc = fuzz_json_encode(L, idx, out, err, errlen);
  if (lua_gettop(L) != top) abort();
  return rc;
}

/* The value at top + 1 (decoded without the option) against the decode
 * with LS_ARRAYS_VEC (rc0, err0: the plain decode's outcome). */
static void fuzz_arrays_vec(lua_State *L, const fuzz_input *in, int top, int rc0, const char *err0) {
  char err[256];
  int base = lua_gettop(L);
  int rc = fuzz_json_decode_opts(L, in->data, in->size, LS_ARRAYS_VEC, err, sizeof err);
  if (rc != rc0 || (rc && strcmp(err, err0) != 0)) fuzz_fail("arrays = vec: another outcome", in);
  if (lua_gettop(L) != base + (rc == 0)) fuzz_fail("arrays = vec: unbalanced stack", in);
  if (rc) return;
  if (!fuzz_vec_equiv(L, top + 1, base + 1)) fuzz_fail("arrays = vec: another value", in);
  ls_buf text;
  ls_buf_init(&text);
  if (fuzz_encode(L, base + 1, &text, err, sizeof err) != 0) {
    ls_buf_free(&text);
    if (!strstr(err, "NaN or infinity")) fuzz_fail(err, in);
    lua_settop(L, base);
    return;
  }
  rc = fuzz_json_decode_opts(L, text.data, text.len, LS_ARRAYS_VEC, err, sizeof err);
  ls_buf_free(&text);
  if (rc != 0) fuzz_fail("arrays = vec: re-decode failed", in);
  if (!fuzz_vec_same(L, base + 1, base + 2)) fuzz_fail("arrays = vec: the re-decoded value differs", in);
  lua_settop(L, base);
}

/* A flat object (string keys; number, string and boolean values) written
 * field by field as luastream.jsonout does, through the FFI entry points.
 * Returns 1 when they wrote it, 0 when it is not flat or one declined. */
static int fuzz_write_flat(lua_State *L, int idx, ls_buf *out) {
  int sep = '{', ok = 1;
  out->len = 0;
  lua_pushnil(L);
  while (ok && lua_next(L, idx)) {
    size_t kn = 0, n = 0;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kn) : NULL;
    int t = lua_type(L, -1);
    const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (!k) ok = 0;
    else if (t == LUA_TNUMBER) ok = fuzz_ffi_json_num(out, sep, k, kn, lua_tonumber(L, -1)) == 0;
    else if (t == LUA_TSTRING) ok = fuzz_ffi_json_str(out, sep, k, kn, s, n) == 0;
    else if (t == LUA_TBOOLEAN) ok = fuzz_ffi_json_bool(out, sep, k, kn, lua_toboolean(L, -1)) == 0;
    else ok = 0;
    lua_pop(L, 1);
    sep = ',';
  }
  if (!ok) lua_pop(L, 1); /* the key lua_next left */
  return ok && sep == ',' && fuzz_ffi_json_close(out) == 0;
}

/* The value at idx, when it is a flat object, written field by field must be
 * the text the encoder gave (rc, text), and declined only where it failed. */
static void fuzz_flat(lua_State *L, int idx, int rc, const ls_buf *text, const fuzz_input *in) {
  if (lua_type(L, idx) != LUA_TTABLE) return;
  if (lua_getmetatable(L, idx)) { /* an array */
    lua_pop(L, 1);
    return;
  }
  ls_buf flat;
  ls_buf_init(&flat);
  int wrote = fuzz_write_flat(L, idx, &flat);
  int same = wrote && rc == 0 && flat.len == text->len && memcmp(flat.data, text->data, flat.len) == 0;
  ls_buf_free(&flat);
  if (wrote && !same) fuzz_fail("a flat object written field by field differs", in);
}

/* The top-level keys kept across inputs (ls_json_decode_keys), and their table. */
static ls_json_keys fuzz_keys;
static int fuzz_keys_ref;

/* The outcome of the plain decode (rc0, err0; its value at top + 1) against
 * two decodes keeping keys: the first with those kept from earlier inputs,
 * the second with this one's. */
static void fuzz_kept_keys(lua_State *L, const fuzz_input *in, int top, int rc0, const char *err0) {
  char err[256];
  if (fuzz_keys_ref <= 0) {
    lua_newtable(L);
    fuzz_keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_keys_ref);
  int tab = base + 1;
  for (int pass = 0; pass < 2; pass++) {
    int rc = fuzz_json_decode_keys(L, in->data, in->size, 0, &fuzz_keys, tab, err, sizeof err);
    if (rc != rc0 || (rc && strcmp(err, err0) != 0)) fuzz_fail("kept keys: another outcome", in);
    if (lua_gettop(L) != tab + (rc == 0)) fuzz_fail("kept keys: unbalanced stack", in);
    if (rc == 0 && !fuzz_equal(L, top + 1, tab + 1)) fuzz_fail("kept keys: another value", in);
    lua_settop(L, tab);
  }
  lua_settop(L, base);
}

/* The table luastream.jsonin builds for flat row j of f, made with the C API. */
static void fuzz_push_flat_row(lua_State *L, const ls_json_flat *f, int j) {
  const ls_json_shape *sh = &f->shapes[f->shape[j] - 1];
  lua_createtable(L, 0, sh->nfields);
  for (int i = 0; i < sh->nfields; i++) {
    const ls_json_slot *v = &f->slot[f->first[j] + i];
    lua_pushlstring(L, sh->key[i], sh->keylen[i]);
    if (v->null) {
      ls_push_null(L);
    } else {
      switch (sh->kind[i]) {
      case LS_JSON_NUM: lua_pushnumber(L, v->v); break;
      case LS_JSON_STR: lua_pushlstring(L, v->s, v->n); break;
      case LS_JSON_BOOL: lua_pushboolean(L, v->v != 0); break;
      default: abort(); /* a NULL field holds null only */
      }
    }
    lua_rawset(L, -3);
  }
}

/* The rows of a run of inputs share one ls_json_flat, so the shapes earlier
 * inputs made are tried first (the way a batch reads a stream); a new run
 * starts every 64 inputs, so new shapes keep being made. */
static ls_json_flat fuzz_flat_rows;
static unsigned fuzz_flat_inputs;

/* The input as a flat row against the plain decode (rc0; its value at top + 1). */
static void fuzz_flat_row(lua_State *L, const fuzz_input *in, int top, int rc0) {
  if (fuzz_flat_inputs++ % 64 == 0) {
    fuzz_json_flat_free(&fuzz_flat_rows);
    if (fuzz_json_flat_init(&fuzz_flat_rows, 1) != 0) abort();
  }
  ls_json_flat *f = &fuzz_flat_rows;
  fuzz_json_flat_clear(f);
  int added = fuzz_json_flat_add(f, in->data, in->size, 7);
  if (added && rc0 != 0) fuzz_fail("flat row: taken, but the decoder refuses it", in);
  if (added && (f->n != 1 || f->row[0] != 7 || f->used != 1u << (f->shape[0] - 1)))
    fuzz_fail("flat row: bad bookkeeping", in);
  if (!added) return;
  fuzz_push_flat_row(L, f, 0);
  if (!fuzz_equal(L, top + 1, lua_gettop(L))) fuzz_fail("flat row: another value", in);
  lua_pop(L, 1);
  fuzz_json_flat_drop_last(f);
  if (f->n != 0 || f->nslots != 0) fuzz_fail("flat row: drop_last left slots", in);
}

/* Runs in lua_pcall: the whole check for one input. */
static int fuzz_one(lua_State *L) {
  const fuzz_input *in = lua_touserdata(L, 1);
  char err[256];
  int top = lua_gettop(L);
  if (fuzz_json_decode(L, in->data, in->size, err, sizeof err) != 0) {
    if (lua_gettop(L) != top || err[0] == '\0') fuzz_fail("unbalanced stack or no message after an error", in);
    fuzz_arrays_vec(L, in, top, -1, err);
    fuzz_kept_keys(L, in, top, -1, err);
    fuzz_flat_row(L, in, top, -1);
    return 0;
  }
  fuzz_arrays_vec(L, in, top, 0, "");
  fuzz_kept_keys(L, in, top, 0, "");
  fuzz_flat_row(L, in, top, 0);
  if (lua_gettop(L) != top + 1) fuzz_fail("decode pushed more than one value", in);
  ls_buf first, second;
  ls_buf_init(&first);
  ls_buf_init(&second);
  int rc = fuzz_encode(L, top + 1, &first, err, sizeof err);
  fuzz_flat(L, top + 1, rc, &first, in);
  if (rc != 0) {
    ls_buf_free(&first);
    if (!strstr(err, "NaN or infinity")) fuzz_fail(err, in);
    return 0;
  }
  if (fuzz_json_decode(L, first.data, first.len, err, sizeof err) != 0) fuzz_fail("re-decode failed", in);
  int same = fuzz_equal(L, top + 1, top + 2);
  int encoded = fuzz_encode(L, top + 2, &second, err, sizeof err) == 0;
  int same_len = encoded && first.len == second.len;
  ls_buf_free(&first);
  ls_buf_free(&second);
  if (!same) fuzz_fail("the re-decoded value differs", in);
  if (!same_len) fuzz_fail("the second encoding differs", in);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  static unsigned runs;
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    ls_value_init(L);
    lua_getglobal(L, "package"); /* luastream.vec, for the vecs */
    lua_pushfstring(L, "%s/?.lua", ls_vm_lua_dir());
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
  }
  /* An exact-size copy, so reads past the end are caught. */
  char *copy = malloc(size ? size : 1);
  if (size) memcpy(copy, data, size);
  fuzz_input in = {copy, size};
  lua_pushcfunction(L, fuzz_one);
  lua_pushlightuserdata(L, &in);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "fuzz_json: Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  free(copy);
  if (lua_gettop(L) != 0) abort();
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
