/* fuzz_json.c - libFuzzer target for the JSON codec (runtime/json.c).
 *
 * Decodes the input; when that succeeds, encodes the value, decodes that text
 * and encodes again. The second value must equal the first and both encodings
 * must have the same length (object key order may differ, as tables built with
 * different size hints iterate differently). Encoding may only fail for an
 * infinity (1e400 decodes to one). Any other difference, a crash, a sanitizer
 * report or an unbalanced Lua stack aborts.
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
#define ls_json_encode fuzz_json_encode
#define ls_dtoa fuzz_dtoa
#define ls_u64toa fuzz_u64toa
#define ls_decimal_to_double fuzz_decimal_to_double
#include "../../runtime/dtoa.c"
#include "../../runtime/json.c"

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

static int fuzz_tables_equal(lua_State *L, int a, int b) {
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
    int same = fuzz_equal(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 2);
    if (!same) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return na == nb;
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

/* Encodes the value at idx into out (reset first); 0, or -1 with err set. */
static int fuzz_encode(lua_State *L, int idx, ls_buf *out, char *err, size_t errlen) {
  int top = lua_gettop(L);
  out->len = 0;
  int rc = fuzz_json_encode(L, idx, out, err, errlen);
  if (lua_gettop(L) != top) abort();
  return rc;
}

/* Runs in lua_pcall: the whole check for one input. */
static int fuzz_one(lua_State *L) {
  const fuzz_input *in = lua_touserdata(L, 1);
  char err[256];
  int top = lua_gettop(L);
  if (fuzz_json_decode(L, in->data, in->size, err, sizeof err) != 0) {
    if (lua_gettop(L) != top || err[0] == '\0') fuzz_fail("unbalanced stack or no message after an error", in);
    return 0;
  }
  if (lua_gettop(L) != top + 1) fuzz_fail("decode pushed more than one value", in);
  ls_buf first, second;
  ls_buf_init(&first);
  ls_buf_init(&second);
  if (fuzz_encode(L, top + 1, &first, err, sizeof err) != 0) {
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
