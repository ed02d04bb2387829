/* fuzz_mpack.c - libFuzzer target for the MessagePack codec (runtime/mpack.c).
 *
 * Decodes the input. A failure must leave the Lua stack as it was and give a
 * message; a success pushes exactly one value, which then goes through:
 *
 * - encoding: it fails exactly when the value holds a map key that MessagePack
 *   output cannot carry (a table, a vec or an int64 cdata as a key), with a
 *   message saying so;
 * - plain round trip: encode, decode, encode, decode. The first decode gives
 *   the same data (a vec comes back as a marked table of its numbers, an
 *   unmarked table with keys 1..n as a marked array); from there on the value
 *   is a fixed point: the third value equals the second exactly and both
 *   encodings have the same length (map key order may differ);
 * - vec ext round trip (LS_VEC_EXT, how state values are written): decoding
 *   the encoding gives the same value, vecs bit for bit;
 * - arrays = vec (LS_ARRAYS_VEC): decoding the input with the option fails
 *   exactly when the plain decode fails, with the same message, and otherwise
 *   gives the plain value with a vec in place of each marked array of numbers
 *   (each element the nearest double).
 * Any other outcome, a crash, a sanitizer report or an unbalanced Lua stack
 * aborts.
 *
 * As in fuzz_json.c, the codec sources are compiled into this file under
 * other names so that the fuzzer's coverage instrumentation reaches them.
 *
 * Build and run: cmake -S . -B /tmp/fuzzbuild -DLS_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   && cmake --build /tmp/fuzzbuild --target fuzz_mpack
 *   && /tmp/fuzzbuild/fuzz_mpack -max_total_time=60 tests/fuzz/corpus/mpack
 * (libFuzzer adds what it finds to the first corpus directory: give it a
 * copy to keep the checked-in seeds as they are.) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define ls_mpack_decode fuzz_mpack_decode
#define ls_mpack_decode_opts fuzz_mpack_decode_opts
#define ls_mpack_encode fuzz_mpack_encode
#define ls_mpack_encode_opts fuzz_mpack_encode_opts
#include "../../runtime/mpack.c"
#include "lua_vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_input {
  const char *data;
  size_t size;
} fuzz_input;

static void fuzz_fail(const char *what, const fuzz_input *in) {
  fprintf(stderr, "fuzz_mpack: %s for input of %zu bytes:", what, in->size);
  for (size_t i = 0; i < in->size && i < 200; i++) fprintf(stderr, " %02x", (unsigned char)in->data[i]);
  fputc('\n', stderr);
  abort();
}

/* How two values a and b are compared: exactly, or with these allowances. */
enum {
  SAME_EXACT = 0,
  /* b went through an encoding: an unmarked table of a with keys 1..n may
     come back marked */
  LOOSE_MARKS = 1,
  /* b went through a plain encoding: a vec of a comes back as a marked table
     of its numbers */
  VEC_AS_TABLE = 2,
  /* b was decoded with LS_ARRAYS_VEC: a marked table of numbers of a (int64
     cdata included) may be a vec of the same doubles in b */
  TABLE_AS_VEC = 4,
};

static int fuzz_array_marked(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  ls_push_array_mt(L);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* A Lua number or int64 cdata as a double. */
static int fuzz_as_double(lua_State *L, int idx, double *out) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    *out = lua_tonumber(L, idx);
    return 1;
  }
  int64_t v;
  int is_unsigned;
  if (!ls_to_int64(L, idx, &v, &is_unsigned)) return 0;
  *out = is_unsigned ? (double)(uint64_t)v : (double)v;
  return 1;
}

static int fuzz_same_double(double x, double y) {
  if (isnan(x) || isnan(y)) return isnan(x) && isnan(y);
  return x == y && signbit(x) == signbit(y);
}

/* The table at t is marked and holds exactly the numbers of vec. */
static int fuzz_table_is_vec(lua_State *L, int t, const ls_vec *vec) {
  if (lua_type(L, t) != LUA_TTABLE || !fuzz_array_marked(L, t) || lua_objlen(L, t) != (size_t)vec->n) return 0;
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  if (n != vec->n) return 0;
  for (int32_t i = 0; i < vec->n; i++) {
    lua_rawgeti(L, t, i + 1);
    double x;
    int ok = fuzz_as_double(L, lua_gettop(L), &x) && fuzz_same_double(ls_vec_clean(x), vec->d[i]);
    lua_pop(L, 1);
    if (!ok) return 0;
  }
  return 1;
}

static int fuzz_same(lua_State *L, int a, int b, int how);

static int fuzz_tables_same(lua_State *L, int a, int b, int how) {
  if (how & LOOSE_MARKS) {
    size_t na, nb;
    int aa = ls_table_is_array(L, a, &na), ab = ls_table_is_array(L, b, &nb);
    if (aa != ab || (aa && na != nb) || !fuzz_array_marked(L, b) != !ab) return 0;
  } else if (fuzz_array_marked(L, a) != fuzz_array_marked(L, b)) {
    return 0;
  }
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
    int same = fuzz_same(L, lua_gettop(L) - 1, lua_gettop(L), how);
    lua_pop(L, 2);
    if (!same) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return na == nb;
}

static int fuzz_same(lua_State *L, int a, int b, int how) {
  if (!lua_checkstack(L, 8)) return 0;
  ls_vec *va = ls_vec_to(L, a), *vb = ls_vec_to(L, b);
  if (va && vb) {
    if (va->n != vb->n) return 0;
    for (int32_t i = 0; i < va->n; i++)
      if (memcmp(&va->d[i], &vb->d[i], sizeof va->d[i]) != 0) return 0;
    return 1;
  }
  if (va && (how & VEC_AS_TABLE)) return fuzz_table_is_vec(L, b, va);
  if (vb && (how & TABLE_AS_VEC)) return fuzz_table_is_vec(L, a, vb);
  if (va || vb) return 0;
  int ta = lua_type(L, a), tb = lua_type(L, b);
  if (ta != tb) return 0;
  switch (ta) {
  case LUA_TNUMBER: return fuzz_same_double(lua_tonumber(L, a), lua_tonumber(L, b));
  case LUA_TSTRING: {
    size_t na, nb;
    const char *sa = lua_tolstring(L, a, &na), *sb = lua_tolstring(L, b, &nb);
    return na == nb && memcmp(sa, sb, na) == 0;
  }
  case LUA_TTABLE: return fuzz_tables_same(L, a, b, how);
  case LS_LUA_TCDATA: {
    int64_t v, w;
    int uv, uw;
    return ls_to_int64(L, a, &v, &uv) && ls_to_int64(L, b, &w, &uw) && v == w && uv == uw;
  }
  default: return lua_rawequal(L, a, b);
  }
}

/* Whether the value at idx holds, at any depth, a map key other than a
 * string, number or boolean (only such keys can be written back). */
static int fuzz_odd_keys(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  if (!lua_checkstack(L, 4)) abort();
  int odd = 0;
  lua_pushnil(L);
  while (!odd && lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    odd = (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) || fuzz_odd_keys(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  if (odd) lua_pop(L, 1); /* the key lua_next left */
  return odd;
}

/* Encodes the value at idx into out (reset first); 0, or -1 with err set. */
static int fuzz_encode(lua_State *L, int idx, int flags, ls_buf *out, char *err, size_t errlen) {
  int top = lua_gettop(L);
  out->len = 0;
  int rc = fuzz_mpack_encode_opts(L, idx, flags, out, err, errlen);
  if (lua_gettop(L) != top) abort();
  return rc;
}

/* Decodes buf, which an encoding of the value just produced: it must work. */
static void fuzz_decode_back(lua_State *L, const ls_buf *buf, const char *what, const fuzz_input *in) {
  char err[256];
  int top = lua_gettop(L);
  if (fuzz_mpack_decode(L, buf->data, buf->len, err, sizeof err) != 0) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s: decoding the encoding failed: %s", what, err);
    fuzz_fail(msg, in);
  }
  if (lua_gettop(L) != top + 1) fuzz_fail("decode pushed more than one value", in);
}

/* Plain encoding and back, twice (the value is at v). */
static void fuzz_plain_round_trip(lua_State *L, const fuzz_input *in, int v) {
  char err[256];
  ls_buf first, second;
  ls_buf_init(&first);
  ls_buf_init(&second);
  if (fuzz_encode(L, v, 0, &first, err, sizeof err) != 0) fuzz_fail(err, in);
  fuzz_decode_back(L, &first, "plain", in);
  int v2 = lua_gettop(L);
  if (!fuzz_same(L, v, v2, LOOSE_MARKS | VEC_AS_TABLE)) fuzz_fail("plain: the decoded encoding differs", in);
  if (fuzz_encode(L, v2, 0, &first, err, sizeof err) != 0) fuzz_fail(err, in);
  fuzz_decode_back(L, &first, "plain, second time", in);
  int v3 = lua_gettop(L);
  if (!fuzz_same(L, v2, v3, SAME_EXACT)) fuzz_fail("plain: the second round trip changed the value", in);
  if (fuzz_encode(L, v3, 0, &second, err, sizeof err) != 0) fuzz_fail(err, in);
  if (first.len != second.len) fuzz_fail("plain: the encodings of a fixed point differ in length", in);
  ls_buf_free(&first);
  ls_buf_free(&second);
  lua_settop(L, v);
}

/* LS_VEC_EXT encoding and back: the same value, vecs bit for bit. */
static void fuzz_ext_round_trip(lua_State *L, const fuzz_input *in, int v) {
  char err[256];
  ls_buf buf;
  ls_buf_init(&buf);
  if (fuzz_encode(L, v, LS_VEC_EXT, &buf, err, sizeof err) != 0) fuzz_fail(err, in);
  fuzz_decode_back(L, &buf, "vec ext", in);
  ls_buf_free(&buf);
  /* Only the array markers may differ; vecs and every number are compared
     exactly. */
  if (!fuzz_same(L, v, lua_gettop(L), LOOSE_MARKS)) fuzz_fail("vec ext: the decoded encoding differs", in);
  lua_settop(L, v);
}

/* The input decoded with LS_ARRAYS_VEC against the plain outcome (rc0, err0;
 * on success the plain value at top + 1). */
static void fuzz_arrays_vec(lua_State *L, const fuzz_input *in, int top, int rc0, const char *err0) {
  char err[256];
  int base = lua_gettop(L);
  int rc = fuzz_mpack_decode_opts(L, in->data, in->size, LS_ARRAYS_VEC, err, sizeof err);
  if (rc != rc0 || (rc && strcmp(err, err0) != 0)) fuzz_fail("arrays = vec: another outcome", in);
  if (lua_gettop(L) != base + (rc == 0)) fuzz_fail("arrays = vec: unbalanced stack", in);
  if (rc) return;
  /* Table keys are compared by identity: values with such keys are only
     checked for the outcome. */
  if (!fuzz_odd_keys(L, top + 1) && !fuzz_same(L, top + 1, base + 1, TABLE_AS_VEC))
    fuzz_fail("arrays = vec: another value", in);
  lua_settop(L, base);
}

/* Runs in lua_pcall: the whole check for one input. */
static int fuzz_one(lua_State *L) {
  const fuzz_input *in = lua_touserdata(L, 1);
  char err[256];
  int top = lua_gettop(L);
  err[0] = '\0';
  if (fuzz_mpack_decode(L, in->data, in->size, err, sizeof err) != 0) {
    if (lua_gettop(L) != top || err[0] == '\0') fuzz_fail("unbalanced stack or no message after an error", in);
    fuzz_arrays_vec(L, in, top, -1, err);
    return 0;
  }
  if (lua_gettop(L) != top + 1) fuzz_fail("decode pushed more than one value", in);
  int v = top + 1;
  fuzz_arrays_vec(L, in, top, 0, "");
  ls_buf buf;
  ls_buf_init(&buf);
  int odd = fuzz_odd_keys(L, v);
  int rc = fuzz_encode(L, v, 0, &buf, err, sizeof err);
  ls_buf_free(&buf);
  if (odd) {
    if (rc == 0 || !strstr(err, "as a map key")) fuzz_fail("a value with a table or cdata key encoded", in);
    return 0;
  }
  if (rc != 0 && strstr(err, "nesting deeper than")) {
    /* a vec at the deepest level decodes (an ext is not nested), but its plain
       form, an array, would be one level too deep: refused, as a table there
       would be; the ext form still round-trips */
    fuzz_ext_round_trip(L, in, v);
    return 0;
  }
  if (rc != 0) fuzz_fail(err, in);
  fuzz_plain_round_trip(L, in, v);
  fuzz_ext_round_trip(L, in, v);
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
  if (!copy) abort();
  if (size) memcpy(copy, data, size);
  fuzz_input in = {copy, size};
  lua_pushcfunction(L, fuzz_one);
  lua_pushlightuserdata(L, &in);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "fuzz_mpack: Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  free(copy);
  if (lua_gettop(L) != 0) abort();
  if (++runs % 1024 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
