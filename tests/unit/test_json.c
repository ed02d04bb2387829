/* test_json.c - unit tests of the JSON codec (runtime/json.c).
 *
 * Runs the codec the way the runtime does, inside protected Lua calls, and
 * checks: decoded values exactly (walked in Lua), every grammar and UTF-8 edge,
 * integers around 2^53 / 2^63 / 2^64, number rounding against strtod, error
 * messages, stack balance after errors, canonical re-encoding, the encoder's
 * type and path errors, round trips of random nested values, every truncation
 * of valid documents, and a deterministic mutation fuzz loop (fixed seed);
 * then the decoding tests again with top-level keys kept across documents
 * (ls_json_decode_keys). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "buf.h"
#include "check.h"
#include "json.h"
#include "luavalue.h"

static lua_State *L;

static uint64_t rng_state = 0x2545F4914F6CDD1Du;

static uint64_t rng(void) { return check_splitmix64(&rng_state); }

/* ---- calling the codec inside lua_pcall, checking the stack ---- */

typedef struct job {
  const char *text;
  size_t len;
  ls_buf buf;
  char err[256];
  int rc;
  int stack_ok;
} job;

/* With kept_keys, every decode keeps top-level keys (ls_json_decode_keys)
 * in one ls_json_keys and its table, across all the tests: main runs the
 * decoding tests a second time that way, so every value and every error
 * must come out the same whatever keys earlier documents left. */
static int kept_keys;
static ls_json_keys keys;
static int keys_ref;

static int call_decode(lua_State *L1) {
  job *j = lua_touserdata(L1, 1);
  int top = lua_gettop(L1);
  if (kept_keys) {
    lua_rawgeti(L1, LUA_REGISTRYINDEX, keys_ref);
    j->rc = ls_json_decode_keys(L1, j->text, j->len, 0, &keys, top + 1, j->err, sizeof j->err);
    lua_remove(L1, top + 1);
  } else {
    j->rc = ls_json_decode(L1, j->text, j->len, j->err, sizeof j->err);
  }
  j->stack_ok = lua_gettop(L1) == top + (j->rc == 0);
  if (j->rc) lua_pushnil(L1);
  return 1;
}

static int call_encode(lua_State *L1) { /* (job, value) */
  job *j = lua_touserdata(L1, 1);
  size_t len0 = j->buf.len;
  int top = lua_gettop(L1);
  lua_pushinteger(L1, 42); /* encode a value below the top, by negative index */
  j->rc = ls_json_encode(L1, -2, &j->buf, j->err, sizeof j->err);
  j->stack_ok = lua_gettop(L1) == top + 1 && lua_tointeger(L1, -1) == 42 && (j->rc == 0 || j->buf.len == len0);
  return 0;
}

/* Decodes text; on success leaves the value on the stack and returns 0. On
 * failure leaves nothing, returns -1 and the message in err. */
static int decode(const char *text, size_t len, char *err, size_t errlen) {
  job j = {.text = text, .len = len};
  int top = lua_gettop(L);
  lua_pushcfunction(L, call_decode);
  lua_pushlightuserdata(L, &j);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
    j.rc = -1;
  }
  CHECK(j.stack_ok);
  if (j.rc) lua_settop(L, top);
  if (err) snprintf(err, errlen, "%s", j.rc ? j.err : "");
  return j.rc;
}

/* Encodes the value at the top of the stack (left there) into a malloc'd NUL-
 * terminated string; returns NULL with the message in err on failure. */
static char *encode_top(char *err, size_t errlen) {
  job j = {.rc = -1};
  ls_buf_init(&j.buf);
  ls_buf_put(&j.buf, "prefix", 6); /* encode appends; errors leave the prefix */
  lua_pushcfunction(L, call_encode);
  lua_pushlightuserdata(L, &j);
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    fprintf(stderr, "encode raised: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  CHECK(j.stack_ok);
  char *out = NULL;
  if (j.rc == 0) {
    out = malloc(j.buf.len - 6 + 1);
    memcpy(out, j.buf.data + 6, j.buf.len - 6);
    out[j.buf.len - 6] = '\0';
  } else {
    CHECK(j.buf.len == 6 && memcmp(j.buf.data, "prefix", 6) == 0);
  }
  if (err) snprintf(err, errlen, "%s", j.rc ? j.err : "");
  ls_buf_free(&j.buf);
  return out;
}

/* ---- comparing Lua values ---- */

static int has_array_mark(int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  ls_push_array_mt(L);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

static int deep_equal(int a, int b, int loose);

static int count_keys(int t) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

static int tables_equal(int a, int b, int loose) {
  if (has_array_mark(a) != has_array_mark(b) || count_keys(a) != count_keys(b)) return 0;
  lua_pushnil(L);
  while (lua_next(L, a)) { /* key -2, value -1 */
    lua_pushvalue(L, -2);
    lua_rawget(L, b);
    int same = deep_equal(lua_gettop(L) - 1, lua_gettop(L), loose);
    lua_pop(L, 2);
    if (!same) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return 1;
}

/* A number and an int64_t / uint64_t cdata that converts to it. */
static int number_equals_int64(int num, int cdata) {
  int64_t v;
  int is_unsigned;
  if (!ls_to_int64(L, cdata, &v, &is_unsigned)) return 0;
  return lua_tonumber(L, num) == (is_unsigned ? (double)(uint64_t)v : (double)v);
}

/* Same value and type. With loose, an integral double at or beyond 2^53 also
 * equals an int64 cdata that converts to it: its JSON text (say
 * an int64 from the input, re-encoded) is an integer, which decodes to cdata. */
static int deep_equal(int a, int b, int loose) {
  int ta = lua_type(L, a), tb = lua_type(L, b);
  if (loose && ta == LUA_TNUMBER && tb == LS_LUA_TCDATA) return number_equals_int64(a, b);
  if (loose && ta == LS_LUA_TCDATA && tb == LUA_TNUMBER) return number_equals_int64(b, a);
  if (ta != tb) return 0;
  if (ta == LUA_TNUMBER) {
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    return x == y && signbit(x) == signbit(y);
  }
  if (ta == LUA_TSTRING) {
    size_t na, nb;
    const char *sa = lua_tolstring(L, a, &na), *sb = lua_tolstring(L, b, &nb);
    return na == nb && memcmp(sa, sb, na) == 0;
  }
  if (ta == LUA_TTABLE) return tables_equal(a, b, loose);
  if (ta == LS_LUA_TCDATA) {
    int64_t x, y;
    int ux, uy;
    return ls_to_int64(L, a, &x, &ux) && ls_to_int64(L, b, &y, &uy) && x == y && ux == uy;
  }
  return lua_rawequal(L, a, b);
}

/* ---- checks on decoded values, written in Lua ---- */

/* Decodes json and evaluates the Lua expression expr with v = the value,
 * null = ls.null, amt = the array marker, ffi = the ffi module. */
static void check_value(const char *json, size_t len, const char *expr) {
  char err[256], src[2048];
  int top = lua_gettop(L);
  if (decode(json, len, err, sizeof err) != 0) {
    CHECK(!"decode failed");
    fprintf(stderr, "  input: %s\n  error: %s\n", json, err);
    return;
  }
  snprintf(src, sizeof src, "local v, null, amt, ffi = ...; return %s", expr);
  if (luaL_loadstring(L, src) != 0) {
    fprintf(stderr, "bad check: %s\n", lua_tostring(L, -1));
    CHECK(0);
    lua_settop(L, top);
    return;
  }
  lua_pushvalue(L, -2);
  ls_push_null(L);
  ls_push_array_mt(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ffi");
  lua_call(L, 1, 1);
  int ok = lua_pcall(L, 4, 1, 0) == 0 && lua_toboolean(L, -1);
  if (!ok) fprintf(stderr, "value check failed: %s\n  input: %s\n", expr, json);
  CHECK(ok);
  lua_settop(L, top);
}

#define CHECK_VALUE(json, expr) check_value(json, sizeof(json) - 1, expr)

/* json must fail to decode with a message containing want. */
static void check_decode_error_n(const char *json, size_t len, const char *want) {
  char err[256];
  int top = lua_gettop(L);
  int rc = decode(json, len, err, sizeof err);
  CHECK(rc == -1);
  CHECK(lua_gettop(L) == top);
  if (rc == -1 && !strstr(err, want)) {
    fprintf(stderr, "error for %.*s: got \"%s\", want \"%s\"\n", (int)len, json, err, want);
    CHECK(0);
  }
  if (rc == 0) {
    fprintf(stderr, "decoded, but should fail: %.*s\n", (int)len, json);
    lua_settop(L, top);
  }
}

#define CHECK_DECODE_ERROR(json, want) check_decode_error_n(json, sizeof(json) - 1, want)

/* decode(json) then encode must give canonical. */
static void check_reencode(const char *json, const char *canonical) {
  char err[256];
  if (decode(json, strlen(json), err, sizeof err) != 0) {
    fprintf(stderr, "decode failed for %s: %s\n", json, err);
    CHECK(0);
    return;
  }
  char *out = encode_top(err, sizeof err);
  lua_pop(L, 1);
  CHECK_STR(out ? out : err, canonical);
  free(out);
}

/* Runs a Lua chunk that returns one value, then encodes that value. Returns the
 * text (malloc'd) or NULL with err set. */
static char *encode_lua(const char *chunk, char *err, size_t errlen) {
  char src[1024];
  snprintf(src, sizeof src, "local null, array, ffi = ...; %s", chunk);
  if (luaL_loadstring(L, src) != 0) {
    fprintf(stderr, "bad chunk: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    snprintf(err, errlen, "bad chunk");
    return NULL;
  }
  ls_push_null(L);
  lua_getglobal(L, "array");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ffi");
  lua_call(L, 1, 1);
  lua_call(L, 3, 1);
  char *out = encode_top(err, errlen);
  lua_pop(L, 1);
  return out;
}

static void check_encode(const char *chunk, const char *want) {
  char err[256];
  char *out = encode_lua(chunk, err, sizeof err);
  CHECK_STR(out ? out : err, want);
  free(out);
}

static void check_encode_error(const char *chunk, const char *want) {
  char err[256];
  char *out = encode_lua(chunk, err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(out ? out : err, want);
  free(out);
}

/* ---- decoding ---- */

static void test_decode_values(void) {
  CHECK_VALUE("{\"device\":\"phone-17\",\"ts\":1764160000123,\"gX\":0.0123,\"gY\":-0.98,\"gZ\":0.153}",
              "v.device == 'phone-17' and v.ts == 1764160000123 and v.gX == 0.0123 and v.gY == -0.98 "
              "and v.gZ == 0.153 and getmetatable(v) == nil");
  CHECK_VALUE("[]", "type(v) == 'table' and next(v) == nil and getmetatable(v) == amt");
  CHECK_VALUE("{}", "type(v) == 'table' and next(v) == nil and getmetatable(v) == nil");
  CHECK_VALUE("[1,\"a\",true,false,null,[],{}]",
              "#v == 7 and v[1] == 1 and v[2] == 'a' and v[3] == true and v[4] == false and v[5] == null "
              "and getmetatable(v[6]) == amt and getmetatable(v[7]) == nil and v[8] == nil");
  CHECK_VALUE("{\"a\":null}", "v.a == null and type(v.a) == 'userdata'");
  CHECK_VALUE("{\"a\":1,\"a\":2}", "v.a == 2");
  CHECK_VALUE("{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}}}", "v.a.b.c[2][2][1] == 3");
  CHECK_VALUE(" \t\r\n{ \"k\" : [ 1 , 2 ] } \n", "v.k[1] == 1 and v.k[2] == 2");
  CHECK_VALUE("true", "v == true");
  CHECK_VALUE("false", "v == false");
  CHECK_VALUE("null", "v == null");
  CHECK_VALUE("\"\"", "v == ''");
  CHECK_VALUE("\"x\"", "v == 'x'");
  CHECK_VALUE("{\"\":\"\"}", "v[''] == ''");
  CHECK_VALUE("[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]",
              "v[1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1][1] == 1");
  /* Tables of very different sizes one after another (the size hints). */
  CHECK_VALUE("{\"a\":1}", "v.a == 1");
  CHECK_VALUE("{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}", "v.i == 9 and v.a == 1");
  CHECK_VALUE("{\"a\":1}", "v.a == 1 and v.b == nil");
}

static void test_decode_strings(void) {
  CHECK_VALUE("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "v == '\"\\\\/\\b\\f\\n\\r\\t'");
  CHECK_VALUE("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"", "v == 'A\\195\\169\\226\\130\\172\\240\\159\\152\\128'");
  CHECK_VALUE("\"\\u0000\"", "v == '\\0' and #v == 1");
  CHECK_VALUE("\"a\\u0000b\"", "v == 'a\\0b'");
  CHECK_VALUE("\"\\uDBFF\\uDFFF\"", "v == '\\244\\143\\191\\191'");
  CHECK_VALUE("\"\\u07FF\\u0800\\uFFFF\"", "v == '\\223\\191\\224\\160\\128\\239\\191\\191'");
  /* Valid UTF-8 passes through byte-exact. */
  CHECK_VALUE("\"\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xEF\xBF\xBF \xF0\x90\x80\x80 \xF4\x8F\xBF\xBF\"",
              "v == '\\194\\128 \\223\\191 \\224\\160\\128 \\239\\191\\191 \\240\\144\\128\\128 \\244\\143\\191\\191'");
  CHECK_VALUE("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"", "#v == 14");
  CHECK_VALUE("\"\x7F\"", "v == '\\127'");
  CHECK_VALUE("{\"k\\u00e9y\":1}", "v['k\\195\\169y'] == 1");
  /* 8 bytes at a time: a special byte at every offset of a word. */
  for (int i = 0; i < 24; i++) {
    char json[64], expr[128];
    snprintf(json, sizeof json, "\"%.*s\\n%.*s\"", i, "abcdefghijklmnopqrstuvwxyz", 23 - i,
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    snprintf(expr, sizeof expr, "#v == 24 and v:sub(%d, %d) == '\\n'", i + 1, i + 1);
    check_value(json, strlen(json), expr);
    snprintf(json, sizeof json, "\"%.*s\xC3\xA9%.*s\"", i, "abcdefghijklmnopqrstuvwxyz", 23 - i,
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    snprintf(expr, sizeof expr, "#v == 25 and v:sub(%d, %d) == '\\195\\169'", i + 1, i + 2);
    check_value(json, strlen(json), expr);
  }
}

/* Long strings: plain ones are pushed as is; escaped ones cross the
 * luaL_Buffer block size many times. */
static void test_decode_long_strings(void) {
  size_t n = 100000;
  char *json = malloc(2 * n + 3), expr[256];
  json[0] = '"';
  for (size_t i = 0; i < n; i++) json[1 + i] = (char)('a' + i % 26);
  json[n + 1] = '"';
  snprintf(expr, sizeof expr, "#v == %zu and v:sub(1, 3) == 'abc' and v:sub(-1) == '%c'", n, 'a' + (int)((n - 1) % 26));
  check_value(json, n + 2, expr);
  size_t len = 1;
  for (size_t i = 0; i < n; i++) {
    if (i % 100 == 99) {
      memcpy(json + len, "\\n", 2);
      len += 2;
    } else {
      json[len++] = (char)('a' + i % 26);
    }
  }
  json[len++] = '"';
  snprintf(expr, sizeof expr,
           "#v == %zu and select(2, v:gsub('\\n', '')) == %zu and v:sub(100, 100) == '\\n' and v:sub(101, 101) == 'w'",
           n, n / 100);
  check_value(json, len, expr);
  free(json);
}

static void test_decode_numbers(void) {
  CHECK_VALUE("0", "v == 0 and 1/v > 0");
  CHECK_VALUE("-0", "v == 0 and 1/v < 0");
  CHECK_VALUE("-0.0", "v == 0 and 1/v < 0");
  CHECK_VALUE("0e10", "v == 0");
  CHECK_VALUE("-0E-5", "v == 0 and 1/v < 0");
  CHECK_VALUE("1", "v == 1 and type(v) == 'number'");
  CHECK_VALUE("-17", "v == -17");
  CHECK_VALUE("1.5", "v == 1.5");
  CHECK_VALUE("1e2", "v == 100");
  CHECK_VALUE("1E+2", "v == 100");
  CHECK_VALUE("12.5e-1", "v == 1.25");
  CHECK_VALUE("0.1", "v == 0.1");
  CHECK_VALUE("123.456", "v == 123.456");
  CHECK_VALUE("1e22", "v == 1e22");
  CHECK_VALUE("1e23", "v == 1e23");
  CHECK_VALUE("1e-300", "v == 1e-300");
  CHECK_VALUE("4.9e-324", "v == 4.9e-324 and v > 0");
  CHECK_VALUE("2.2250738585072011e-308", "v == 2.2250738585072011e-308");
  CHECK_VALUE("1.7976931348623157e308", "v == 1.7976931348623157e308");
  CHECK_VALUE("1e400", "v == math.huge");
  CHECK_VALUE("-1e400", "v == -math.huge");
  CHECK_VALUE("1e-400", "v == 0");
  CHECK_VALUE("1e99999999999999999999", "v == math.huge");
  CHECK_VALUE("0.000000000000000000000000000000000000000000001", "v == 1e-45");
  CHECK_VALUE("123456789012345678901234567890.5", "v == 123456789012345678901234567890.5");
  CHECK_VALUE("0.30000000000000004", "v == 0.1 + 0.2");
  CHECK_VALUE("9007199254740993.0", "v == 9007199254740992 and type(v) == 'number'");
  CHECK_VALUE("[1.0,2.50,-3e0]", "v[1] == 1 and v[2] == 2.5 and v[3] == -3");
  CHECK_VALUE("1e-99999999999", "v == 0");
  CHECK_VALUE("0.00000000000000000000000000000000000000000000000000000000001e59", "v == 1");
  /* Very long numbers go to strtod whole: 0.(100001 zeros)1e100005 is 1000. */
  size_t zeros = 100001, len = 0;
  char *json = malloc(zeros + 32);
  len += (size_t)sprintf(json, "0.");
  memset(json + len, '0', zeros);
  len += zeros;
  len += (size_t)sprintf(json + len, "1e100005");
  check_value(json, len, "v == 1000");
  memset(json, '1', 300); /* a 300-digit integer */
  check_value(json, 300, "type(v) == 'number' and v == tonumber(('1'):rep(300))");
  memset(json, '1', 400);
  check_value(json, 400, "v == math.huge");
  free(json);
}

static void test_decode_big_integers(void) {
  CHECK_VALUE("9007199254740992", "type(v) == 'number' and v == 2^53");
  CHECK_VALUE("-9007199254740992", "type(v) == 'number' and v == -2^53");
  CHECK_VALUE("9007199254740993", "ffi.istype('int64_t', v) and v == 9007199254740993LL");
  CHECK_VALUE("-9007199254740993", "ffi.istype('int64_t', v) and v == -9007199254740993LL");
  CHECK_VALUE("9223372036854775807", "ffi.istype('int64_t', v) and v == 9223372036854775807LL");
  CHECK_VALUE("-9223372036854775808", "ffi.istype('int64_t', v) and v == -9223372036854775807LL - 1");
  CHECK_VALUE("9223372036854775808", "ffi.istype('uint64_t', v) and v == 9223372036854775808ULL");
  CHECK_VALUE("18446744073709551615", "ffi.istype('uint64_t', v) and v == 18446744073709551615ULL");
  CHECK_VALUE("18446744073709551616", "type(v) == 'number' and v == 2^64");
  CHECK_VALUE("-9223372036854775809", "type(v) == 'number' and v == -2^63");
  CHECK_VALUE("99999999999999999999", "type(v) == 'number' and v == 1e20");
  CHECK_VALUE("-18446744073709551615", "type(v) == 'number' and v == -2^64");
  CHECK_VALUE("123456789012345678901234567890", "type(v) == 'number' and v == 1.2345678901234568e29");
  CHECK_VALUE("[12345678901234567890]", "ffi.istype('uint64_t', v[1]) and v[1] == 12345678901234567890ULL");
}

/* Random decimal texts must decode to exactly what strtod gives. */
static void test_decode_rounding(void) {
  static const char *hard[] = {
      "2.2250738585072012e-308", "2.2250738585072011e-308", "9007199254740993",
      "9007199254740993.0",      "0.1000000000000000055511151231257827", "1.00000000000000011102230246251565404236316680908203125",
      "7.1e-10",                 "3.0e-324",        "2.4703282292062328e-324", "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.9999999999"};
  char err[256];
  int bad = 0;
  for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++) {
    if (decode(hard[i], strlen(hard[i]), err, sizeof err) != 0) {
      bad++;
      continue;
    }
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != strtod(hard[i], NULL)) bad++;
    lua_pop(L, 1);
  }
  for (int i = 0; i < 100000; i++) {
    char text[64];
    int len = 0, ndig = 1 + (int)(rng() % 20);
    if (rng() % 2) text[len++] = '-';
    text[len++] = (char)('1' + rng() % 9);
    int point = (int)(rng() % (unsigned)(ndig + 1));
    for (int k = 1; k < ndig; k++) {
      if (k == point) text[len++] = '.';
      text[len++] = (char)('0' + rng() % 10);
    }
    if (point == 0 || point >= ndig) len += snprintf(text + len, 8, ".%d", (int)(rng() % 10));
    if (rng() % 8 == 0)
      len += snprintf(text + len, 16, "e%d", (int)(rng() % 700) - 350);
    else if (rng() % 2)
      len += snprintf(text + len, 16, "e%d", (int)(rng() % 80) - 40);
    text[len] = '\0';
    if (decode(text, (size_t)len, err, sizeof err) != 0) {
      if (bad++ < 5) fprintf(stderr, "rounding: %s: %s\n", text, err);
      continue;
    }
    double want = strtod(text, NULL);
    if (lua_tonumber(L, -1) != want && !(isnan(want))) {
      if (bad++ < 5) fprintf(stderr, "rounding: %s -> %.17g, want %.17g\n", text, lua_tonumber(L, -1), want);
    }
    lua_pop(L, 1);
  }
  CHECK(bad == 0);
}

/* Numbers read in place, with text after them: each random number is
 * decoded inside an object, followed by 0 to 9 more bytes, and must read as
 * strtod reads it alone; integers of 1 to 19 digits exactly (int64 cdata
 * beyond 2^53). */
static void test_decode_numbers_in_text(void) {
  char err[256];
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    char num[48], text[96];
    int len = 0, ndig = 1 + (int)(rng() % 19), frac = (int)(rng() % 3) ? (int)(rng() % 12) : 0;
    if (rng() % 2) num[len++] = '-';
    num[len++] = (char)((ndig > 1 || rng() % 4 ? '1' : '0') + rng() % 9);
    for (int k = 1; k < ndig; k++) num[len++] = (char)('0' + rng() % 10);
    if (frac) {
      num[len++] = '.';
      for (int k = 0; k < frac; k++) num[len++] = (char)('0' + rng() % 10);
    }
    if (rng() % 6 == 0) len += snprintf(num + len, 8, "e%d", (int)(rng() % 60) - 30);
    num[len] = '\0';
    int pad = (int)(rng() % 10);
    int n = snprintf(text, sizeof text, "{\"k\":%s%.*s}", num, pad, "          ");
    if (decode(text, (size_t)n, err, sizeof err) != 0) {
      if (bad++ < 5) fprintf(stderr, "numbers in text: %s: %s\n", text, err);
      continue;
    }
    lua_getfield(L, -1, "k");
    double want = strtod(num, NULL);
    int is_int = !strpbrk(num, ".e");
    int ok = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) == want && signbit(lua_tonumber(L, -1)) == signbit(want)
                                            : is_int && fabs(want) > 9007199254740992.0; /* int64 cdata */
    if (!ok && bad++ < 5) fprintf(stderr, "numbers in text: %s -> %.17g, want %.17g\n", text, lua_tonumber(L, -1), want);
    lua_pop(L, 2);
  }
  CHECK(bad == 0);
}

static void test_decode_errors(void) {
  CHECK_DECODE_ERROR("", "invalid JSON: empty input");
  CHECK_DECODE_ERROR(" \t\r\n", "invalid JSON: empty input");
  CHECK_DECODE_ERROR("[1, x]", "invalid JSON: unexpected character 'x' at byte 4");
  CHECK_DECODE_ERROR("{\"a\":1} x", "trailing characters at byte 8");
  CHECK_DECODE_ERROR("[1]]", "trailing characters at byte 3");
  CHECK_DECODE_ERROR("1 2", "trailing characters at byte 2");
  CHECK_DECODE_ERROR("\"\xFF\"", "invalid UTF-8 in string at byte 1");
  CHECK_DECODE_ERROR("[", "unexpected end of input at byte 1");
  CHECK_DECODE_ERROR("{", "unexpected end of input at byte 1");
  CHECK_DECODE_ERROR("{\"a\"", "unexpected end of input at byte 4");
  CHECK_DECODE_ERROR("{\"a\":", "unexpected end of input at byte 5");
  CHECK_DECODE_ERROR("\"abc", "unexpected end of input at byte 4");
  CHECK_DECODE_ERROR("[1,]", "unexpected character ']' at byte 3");
  CHECK_DECODE_ERROR("{\"a\":1,}", "unexpected character '}' at byte 7");
  CHECK_DECODE_ERROR("{,}", "unexpected character ','");
  CHECK_DECODE_ERROR("{1:2}", "unexpected character '1'");
  CHECK_DECODE_ERROR("{\"a\" 1}", "unexpected character '1'");
  CHECK_DECODE_ERROR("{'a':1}", "unexpected character '''");
  CHECK_DECODE_ERROR("[1 2]", "unexpected character '2'");
  CHECK_DECODE_ERROR("tru", "unexpected end of input at byte 3");
  CHECK_DECODE_ERROR("trUe", "unexpected character 'U' at byte 2");
  CHECK_DECODE_ERROR("nul", "unexpected end of input");
  CHECK_DECODE_ERROR("False", "unexpected character 'F'");
  CHECK_DECODE_ERROR("None", "unexpected character 'N'");
  CHECK_DECODE_ERROR("undefined", "unexpected character 'u'");
  /* Numbers JSON does not allow. */
  CHECK_DECODE_ERROR("01", "leading zero");
  CHECK_DECODE_ERROR("-01", "leading zero");
  CHECK_DECODE_ERROR("00", "leading zero");
  CHECK_DECODE_ERROR("+1", "unexpected character '+'");
  CHECK_DECODE_ERROR(".5", "unexpected character '.'");
  CHECK_DECODE_ERROR("1.", "unexpected end of input");
  CHECK_DECODE_ERROR("[1.]", "unexpected character ']'");
  CHECK_DECODE_ERROR("1.e5", "unexpected character 'e'");
  CHECK_DECODE_ERROR("1e", "invalid number");
  CHECK_DECODE_ERROR("1e+", "invalid number");
  CHECK_DECODE_ERROR("[1e-]", "invalid number");
  CHECK_DECODE_ERROR("-", "unexpected end of input");
  CHECK_DECODE_ERROR("-a", "unexpected character 'a'");
  CHECK_DECODE_ERROR("- 1", "unexpected character ' '");
  CHECK_DECODE_ERROR("NaN", "unexpected character 'N'");
  CHECK_DECODE_ERROR("-NaN", "unexpected character 'N'");
  CHECK_DECODE_ERROR("Infinity", "unexpected character 'I'");
  CHECK_DECODE_ERROR("-Infinity", "unexpected character 'I'");
  CHECK_DECODE_ERROR("0x10", "trailing characters at byte 1");
  CHECK_DECODE_ERROR("[0x10]", "unexpected character 'x'");
  CHECK_DECODE_ERROR("1_000", "trailing characters");
  /* Whitespace beyond RFC 8259's four characters. */
  CHECK_DECODE_ERROR("\f1", "unexpected byte 0x0C at byte 0");
  CHECK_DECODE_ERROR("1\v", "trailing characters");
  CHECK_DECODE_ERROR("[\xC2\xA0" "1]", "unexpected byte 0xC2");
  CHECK_DECODE_ERROR("\xEF\xBB\xBF{}", "unexpected byte 0xEF at byte 0");
  CHECK_DECODE_ERROR("[1]\0", "trailing characters at byte 3");
  CHECK_DECODE_ERROR("\0", "unexpected byte 0x00");
}

static void test_decode_string_errors(void) {
  CHECK_DECODE_ERROR("\"a\nb\"", "unescaped control character 0x0A in string at byte 2");
  CHECK_DECODE_ERROR("\"\t\"", "control character 0x09");
  CHECK_DECODE_ERROR("\"\x1F\"", "control character 0x1F");
  check_decode_error_n("\"a\0b\"", 5, "unescaped control character 0x00 in string at byte 2");
  CHECK_DECODE_ERROR("\"\\n\x01\"", "control character 0x01 in string at byte 3");
  CHECK_DECODE_ERROR("\"\\q\"", "invalid escape '\\q' in string at byte 1");
  CHECK_DECODE_ERROR("\"\\x41\"", "invalid escape '\\x'");
  CHECK_DECODE_ERROR("\"\\'\"", "invalid escape");
  CHECK_DECODE_ERROR("\"\\\xC3\xA9\"", "invalid escape in string at byte 1");
  CHECK_DECODE_ERROR("\"\\", "unexpected end of input");
  CHECK_DECODE_ERROR("\"\\u12\"", "invalid \\u escape");
  CHECK_DECODE_ERROR("\"\\u12", "unexpected end of input");
  CHECK_DECODE_ERROR("\"\\uZZZZ\"", "invalid \\u escape");
  CHECK_DECODE_ERROR("\"\\u-123\"", "invalid \\u escape");
  CHECK_DECODE_ERROR("\"\\uD800\"", "unpaired surrogate \\uD800 in string at byte 1");
  CHECK_DECODE_ERROR("\"\\uDBFF\\u0041\"", "unpaired surrogate \\uDBFF");
  CHECK_DECODE_ERROR("\"\\uD800\\uD800\"", "unpaired surrogate");
  CHECK_DECODE_ERROR("\"\\uD800x\"", "unpaired surrogate");
  CHECK_DECODE_ERROR("\"\\uD800\\n\"", "unpaired surrogate");
  CHECK_DECODE_ERROR("\"\\uDC00\"", "unpaired surrogate \\uDC00");
  CHECK_DECODE_ERROR("\"\\udfff\\ud800\"", "unpaired surrogate \\uDFFF");
  /* Malformed UTF-8, with and without escapes earlier in the string. */
  static const char *bad_utf8[] = {
      "\x80",             /* stray continuation */
      "\xBF",             /* stray continuation */
      "\xC0\x80",         /* overlong NUL */
      "\xC1\xBF",         /* overlong */
      "\xE0\x80\x80",     /* overlong */
      "\xE0\x9F\xBF",     /* overlong */
      "\xF0\x80\x80\x80", /* overlong */
      "\xF0\x8F\xBF\xBF", /* overlong */
      "\xED\xA0\x80",     /* U+D800 */
      "\xED\xBF\xBF",     /* U+DFFF */
      "\xF4\x90\x80\x80", /* U+110000 */
      "\xF5\x80\x80\x80", /* beyond */
      "\xF8\x88\x80\x80\x80",
      "\xFE",
      "\xFF",
      "\xC3",             /* truncated */
      "\xE2\x82",         /* truncated */
      "\xF0\x9F\x98",     /* truncated */
      "\xC3\x28",         /* bad continuation */
      "\xE2\x28\xA1",
      "\xF0\x28\x8C\xBC",
  };
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    char json[32];
    int n = snprintf(json, sizeof json, "\"ab%s\"", bad_utf8[i]);
    check_decode_error_n(json, (size_t)n, "invalid UTF-8 in string at byte 3");
    n = snprintf(json, sizeof json, "[\"\\n%s\"]", bad_utf8[i]);
    check_decode_error_n(json, (size_t)n, "invalid UTF-8 in string at byte 4");
    n = snprintf(json, sizeof json, "{\"k%s\":1}", bad_utf8[i]);
    check_decode_error_n(json, (size_t)n, "invalid UTF-8 in string at byte 3");
  }
  /* A string cut inside a multi-byte sequence at the very end of the input. */
  check_decode_error_n("\"\xE2\x82", 3, "invalid UTF-8 in string at byte 1");
}

static void test_decode_depth(void) {
  char *json = malloc(2 * 600 + 16);
  char err[256];
  for (int depth = 510; depth <= 514; depth++) {
    memset(json, '[', (size_t)depth);
    memset(json + depth, ']', (size_t)depth);
    int rc = decode(json, 2 * (size_t)depth, err, sizeof err);
    CHECK((rc == 0) == (depth <= LS_JSON_MAX_DEPTH));
    if (rc == 0) lua_pop(L, 1);
  }
  memset(json, '[', 600);
  check_decode_error_n(json, 600, "nesting deeper than 512 at byte 512");
  free(json);
  size_t len = 0;
  json = malloc(5 * 513 + 1 + 513);
  for (int i = 0; i < 513; i++, len += 5) memcpy(json + len, "{\"a\":", 5);
  json[len++] = '1';
  memset(json + len, '}', 513);
  check_decode_error_n(json, len + 513, "nesting deeper than 512 at byte 2560");
  check_value(json + 5, len - 5 + 512, "type(v.a.a.a) == 'table'");
  free(json);
}

/* ---- re-encoding and encoding ---- */

static void test_reencode(void) {
  static const char *cases[][2] = {
      {"[]", "[]"},
      {"{}", "{}"},
      {" [ 1 , 2 ] ", "[1,2]"},
      {"{\"a\":[]}", "{\"a\":[]}"},
      {"{\"a\":{}}", "{\"a\":{}}"},
      {"[[],{},[[]],[{}]]", "[[],{},[[]],[{}]]"},
      {"null", "null"},
      {"true", "true"},
      {"[false,null,true]", "[false,null,true]"},
      {"{\"a\":null}", "{\"a\":null}"},
      {"\"\\u00e9\"", "\"\xC3\xA9\""},
      {"\"\\/\"", "\"/\""},
      {"\"\\u001f\\u0000\\u007f\"", "\"\\u001f\\u0000\x7F\""},
      {"\"\\n\\t\\\"\\\\\\b\\f\\r\"", "\"\\n\\t\\\"\\\\\\b\\f\\r\""},
      {"\"\\ud83d\\ude00\"", "\"\xF0\x9F\x98\x80\""},
      {"\"\xE2\x80\xA8\"", "\"\xE2\x80\xA8\""},
      {"1.0", "1"},
      {"1e2", "100"},
      {"-0", "-0"},
      {"-0.0", "-0"},
      {"0.1", "0.1"},
      {"-2.5e-3", "-0.0025"},
      {"1e21", "1e+21"},
      {"1e20", "1e+20"},
      {"5e-7", "5e-7"},
      {"0.000001", "0.000001"},
      {"1E-7", "1e-7"},
      {"123456789012345678901234567890", "1.2345678901234568e+29"},
      {"9007199254740992", "9007199254740992"},
      {"9007199254740993", "9007199254740993"},
      {"-9007199254740993", "-9007199254740993"},
      {"18446744073709551615", "18446744073709551615"},
      {"18446744073709551616", "1.8446744073709552e+19"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"-9223372036854775809", "-9.223372036854776e+18"},
      {"1764160000123", "1764160000123"},
      {"[0.0123,-0.98,0.153]", "[0.0123,-0.98,0.153]"},
      {"{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}", "{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}"},
      {"{\"a\":1,\"a\":2}", "{\"a\":2}"},
      {"[[[[[[[[]]]]]]]]", "[[[[[[[[]]]]]]]]"},
      {"{\"k\\u00e9y\":\"v\"}", "{\"k\xC3\xA9y\":\"v\"}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_reencode(cases[i][0], cases[i][1]);
}

static void test_encode_values(void) {
  check_encode("return 3.0", "3");
  check_encode("return -3", "-3");
  check_encode("return 0", "0");
  /* not the literal -0.0: LuaJIT on arm64 (dual-number mode) reads it as the
   * integer 0; tonumber('-0') is the double -0 on every architecture */
  check_encode("return tonumber('-0')", "-0");
  check_encode("return 2^53", "9007199254740992");
  check_encode("return -(2^53 - 1)", "-9007199254740991");
  check_encode("return 2^60", "1.152921504606847e+18"); /* stays a double when read back */
  check_encode("return -2^60", "-1.152921504606847e+18");
  check_encode("return 2^53 + 2", "9.007199254740994e+15");
  check_encode("return 1e20", "1e+20");
  check_encode("return 1e300", "1e+300");
  check_encode("return 0.1", "0.1");
  check_encode("return 1/3", "0.3333333333333333");
  check_encode("return 5e-324", "5e-324");
  check_encode("return 1e21", "1e+21");
  check_encode("return 123456.5", "123456.5");
  check_encode("return true", "true");
  check_encode("return false", "false");
  check_encode("return nil", "null");
  check_encode("return null", "null");
  check_encode("return {a = null}", "{\"a\":null}");
  check_encode("return {}", "{}");
  check_encode("return setmetatable({}, getmetatable(array))", "[]");
  check_encode("return {1, 2, 3}", "[1,2,3]");
  check_encode("return {{}, {{}}}", "[{},[{}]]");
  check_encode("return {[5] = 'x'}", "{\"5\":\"x\"}");
  check_encode("return {[1.5] = 1}", "{\"1.5\":1}");
  check_encode("return {[-0.5] = 1}", "{\"-0.5\":1}");
  check_encode("return {[1e21] = 1}", "{\"1e+21\":1}");
  check_encode("return {[2] = 'b'}", "{\"2\":\"b\"}");
  check_encode("return {x = {y = {z = 'deep'}}}", "{\"x\":{\"y\":{\"z\":\"deep\"}}}");
  check_encode("return 'a\\0b'", "\"a\\u0000b\"");
  check_encode("return '\\1\\31\\127 /'", "\"\\u0001\\u001f\x7F /\"");
  check_encode("return '\"\\\\\\b\\f\\n\\r\\t'", "\"\\\"\\\\\\b\\f\\n\\r\\t\"");
  check_encode("return 'caf\\195\\169 \\240\\159\\152\\128'", "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"");
  check_encode("return ffi.new('int64_t', 9007199254740993LL)", "9007199254740993");
  check_encode("return -9223372036854775807LL - 1", "-9223372036854775808");
  check_encode("return 9223372036854775807LL", "9223372036854775807");
  check_encode("return 18446744073709551615ULL", "18446744073709551615");
  check_encode("return 0LL", "0");
  check_encode("return {n = 12345678901234567890ULL}", "{\"n\":12345678901234567890}");
}

static void test_encode_strings(void) {
  /* Escapes at every offset of an 8-byte word, and long strings. */
  for (int i = 0; i < 20; i++) {
    char chunk[128], want[128];
    snprintf(chunk, sizeof chunk, "return ('x'):rep(%d) .. '\\n\\195\\169' .. ('y'):rep(%d)", i, 19 - i);
    snprintf(want, sizeof want, "\"%.*s\\n\xC3\xA9%.*s\"", i, "xxxxxxxxxxxxxxxxxxxx", 19 - i, "yyyyyyyyyyyyyyyyyyyy");
    check_encode(chunk, want);
  }
  char err[256];
  char *out = encode_lua("return ('ab\\n'):rep(50000)", err, sizeof err);
  CHECK(out && strlen(out) == 200002 && strncmp(out, "\"ab\\nab\\n", 9) == 0);
  free(out);
}

static void test_encode_errors(void) {
  check_encode_error("return {a = {b = 0/0}}", "cannot encode NaN or infinity at $.a.b");
  check_encode_error("return {x = {1, 2, function() end}}", "cannot encode a function at $.x[2]");
  check_encode_error("return {name = 'bad\\255'}", "invalid UTF-8 in string at $.name");
  check_encode_error("return {['k\\192\\128'] = 1}", "invalid UTF-8 in object key at $");
  check_encode_error("return {a = {['\\237\\160\\128'] = 1}}", "invalid UTF-8 in object key at $.a");
  check_encode_error("return 'x\\244\\144\\128\\128'", "invalid UTF-8 in string at $");
  check_encode_error("return 'x\\226\\130'", "invalid UTF-8 in string at $");
  check_encode_error("return math.huge", "cannot encode NaN or infinity at $");
  check_encode_error("return {-math.huge}", "cannot encode NaN or infinity at $[0]");
  check_encode_error("return {[true] = 1}", "cannot encode a boolean as an object key at $");
  check_encode_error("return {a = {[{}] = 1}}", "cannot encode a table as an object key at $.a");
  check_encode_error("return {[math.huge] = 1}", "cannot encode an infinite object key at $");
  check_encode_error("return {a = print}", "cannot encode a function at $.a");
  check_encode_error("return {a = coroutine.create(print)}", "cannot encode a thread at $.a");
  check_encode_error("return {a = newproxy()}", "cannot encode a userdata at $.a");
  check_encode_error("return {a = ffi.new('double[1]')}", "cannot encode a cdata value at $.a");
  check_encode_error("return {a = ffi.cast('void *', 1)}", "cannot encode a cdata value at $.a");
  check_encode_error("return {['a b'] = {['x\"y'] = {[7] = {{}, {1, print}}}}}",
                     "cannot encode a function at $[\"a b\"][\"x\\\"y\"][\"7\"][1][1]");
  check_encode_error("return {['\\1\\195\\169'] = print}", "cannot encode a function at $[\"?\xC3\xA9\"]");
  /* A light userdata other than ls.null, made through the C API. */
  char err[256];
  lua_pushlightuserdata(L, &err);
  char *out = encode_top(err, sizeof err);
  lua_pop(L, 1);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot encode a light userdata at $");
}

static void test_encode_depth(void) {
  char chunk[256], err[256];
  for (int depth = 127; depth <= 129; depth++) {
    snprintf(chunk, sizeof chunk, "local t = {} for i = 2, %d do t = {t} end return t", depth);
    char *out = encode_lua(chunk, err, sizeof err);
    CHECK((out != NULL) == (depth <= LS_JSON_MAX_ENCODE_DEPTH));
    if (depth > LS_JSON_MAX_ENCODE_DEPTH) CHECK(strstr(err, "table nested deeper than 128 (a cycle?) at $[0][0]"));
    free(out);
  }
  char *out = encode_lua("local t = {} t.self = t return t", err, sizeof err);
  CHECK(out == NULL);
  CHECK(strncmp(err, "table nested deeper than 128 (a cycle?) at $.self.self.self", 59) == 0);
  CHECK(strlen(err) < sizeof err);
  free(out);
  out = encode_lua("local t = {} t[1] = t return t", err, sizeof err);
  CHECK(out == NULL && strstr(err, "(a cycle?) at $[0][0][0]"));
  free(out);
}

/* ---- random values: decode(encode(v)) == v ---- */

static void push_random_string(int allow_escapes) {
  static const char *pieces[] = {"a", "Z", "0", " ", "/", "\"", "\\", "\n", "\t", "\x01", "\x1F", "\x7F",
                                 "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xEF\xBF\xBF", "\xC2\x80",
                                 "\xF4\x8F\xBF\xBF", "key", "phone-17", "\0"};
  char s[256];
  size_t len = 0, n = rng() % 12;
  for (size_t i = 0; i < n; i++) {
    const char *p = pieces[rng() % (allow_escapes ? 21 : 3)];
    size_t k = *p ? strlen(p) : 1;
    memcpy(s + len, p, k);
    len += k;
  }
  lua_pushlstring(L, s, len);
}

static void push_random_number(void) {
  uint64_t bits;
  double v;
  switch (rng() % 8) {
  case 0: /* any finite double that is not an integer at or beyond 2^53 */
    do {
      bits = rng();
      memcpy(&v, &bits, sizeof v);
    } while (!isfinite(v) || (fabs(v) >= 9007199254740992.0 && v == floor(v)));
    lua_pushnumber(L, v);
    break;
  case 1: lua_pushnumber(L, (double)(int64_t)(rng() % 20000) - 10000); break;
  case 2: lua_pushnumber(L, (double)(rng() % 100000) / 1000.0 - 50); break;
  case 3: lua_pushnumber(L, (double)(rng() >> 11) * (rng() % 2 ? 1 : -1)); break;
  case 4: lua_pushnumber(L, rng() % 2 ? -0.0 : 0.0); break;
  case 5: { /* beyond 2^53 in magnitude */
    int64_t i = (int64_t)((rng() >> (1 + rng() % 10)) | (UINT64_C(1) << 53) | 1);
    ls_push_int64(L, rng() % 2 ? i : -i);
    break;
  }
  case 6: ls_push_uint64(L, rng() | (UINT64_C(1) << 63)); break;
  default: /* integral doubles at or beyond 2^53 would come back as int64 cdata */
    v = ldexp((double)(rng() % 1000), (int)(rng() % 200) - 100);
    lua_pushnumber(L, v >= 9007199254740992.0 && v == floor(v) ? 1 / v : v);
    break;
  }
}

static void push_random_value(int depth) {
  int kind = (int)(rng() % (depth < 6 ? 8 : 5));
  switch (kind) {
  case 0: lua_pushboolean(L, (int)(rng() % 2)); break;
  case 1: ls_push_null(L); break;
  case 2: push_random_number(); break;
  case 3:
  case 4: push_random_string(1); break;
  case 5:
  case 6: { /* array */
    int n = (int)(rng() % 6);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
      push_random_value(depth + 1);
      lua_rawseti(L, -2, i);
    }
    ls_mark_array(L);
    break;
  }
  default: { /* object */
    int n = (int)(rng() % 6);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
      push_random_string(rng() % 4 == 0);
      push_random_value(depth + 1);
      lua_rawset(L, -3);
    }
  }
  }
}

static void test_random_round_trips(int count) {
  char err[256];
  int bad = 0;
  for (int i = 0; i < count; i++) {
    int top = lua_gettop(L);
    push_random_value(0);
    char *text = encode_top(err, sizeof err);
    if (!text) {
      if (bad++ < 5) fprintf(stderr, "random value: encode failed: %s\n", err);
      lua_settop(L, top);
      continue;
    }
    if (decode(text, strlen(text), err, sizeof err) != 0) {
      if (bad++ < 5) fprintf(stderr, "random value: decode of %s failed: %s\n", text, err);
    } else if (!deep_equal(top + 1, top + 2, 0)) {
      if (bad++ < 5) fprintf(stderr, "random value: %s does not round-trip\n", text);
    }
    free(text);
    lua_settop(L, top);
  }
  CHECK(bad == 0);
}

/* ---- malformed input: truncations, mutations ---- */

static const char *corpus[] = {
    "{\"device\":\"phone-17\",\"ts\":1764160000123,\"gX\":0.0123,\"gY\":-0.98,\"gZ\":0.153}",
    "[1,-2.5e-3,\"a\\n\\u00e9\\ud83d\\ude00\",true,false,null,[],{},{\"k\":[{}]}]",
    "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"caf\xC3\xA9\"}]}},\"e\":[\"\xF0\x9F\x98\x80\",18446744073709551615]}",
    "\"plain string with \\\"quotes\\\" and \\\\ and \\/ and \\u0041\"",
    "[9007199254740993,-9223372036854775808,1e400,123456789012345678901234567890,0.1e-5]",
    "{\"\":\"\",\" \":[ ],\"x\" : { } }",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"deep\"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
};
#define CORPUS_SIZE (sizeof corpus / sizeof corpus[0])

/* If text decodes, its encoding must decode to the same value; never crash. */
static int check_any_input(const char *text, size_t len) {
  char err[256];
  int top = lua_gettop(L);
  if (decode(text, len, err, sizeof err) != 0) {
    CHECK(lua_gettop(L) == top && err[0] != '\0');
    return -1;
  }
  char *out = encode_top(err, sizeof err);
  int ok = 1;
  if (out) {
    ok = decode(out, strlen(out), err, sizeof err) == 0 && deep_equal(top + 1, top + 2, 1);
  } else {
    ok = strstr(err, "NaN or infinity") != NULL; /* 1e400 decodes to inf */
  }
  if (!ok) fprintf(stderr, "re-encoding of %.*s failed: %s\n", (int)len, text, out ? out : err);
  CHECK(ok);
  free(out);
  lua_settop(L, top);
  return 0;
}

static void test_truncations(void) {
  for (size_t i = 0; i < CORPUS_SIZE; i++) {
    size_t n = strlen(corpus[i]);
    CHECK(check_any_input(corpus[i], n) == 0);
    for (size_t cut = 0; cut < n; cut++) {
      char *copy = malloc(cut ? cut : 1); /* exact size: ASan catches over-reads */
      memcpy(copy, corpus[i], cut);
      int rc = check_any_input(copy, cut);
      if (rc == 0) fprintf(stderr, "truncated document decoded: %.*s\n", (int)cut, copy);
      CHECK(rc == -1);
      free(copy);
    }
  }
}

/* Mutates buf (len bytes, capacity cap) in place; returns the new length. */
static size_t mutate(char *buf, size_t len, size_t cap) {
  static const char interesting[] = "{}[]\",:\\-+.eE0123456789 \tnultrufase\x80\xBF\xC3\xE2\xED\xF0\xF4\xFF\x00\x1F";
  size_t pos = len ? rng() % len : 0;
  switch (rng() % 6) {
  case 0:
    if (len) buf[pos] ^= (char)(1u << (rng() % 8));
    return len;
  case 1:
    if (len) buf[pos] = interesting[rng() % (sizeof interesting - 1)];
    return len;
  case 2: { /* delete a range */
    size_t k = 1 + rng() % 4;
    if (pos + k > len) k = len - pos;
    memmove(buf + pos, buf + pos + k, len - pos - k);
    return len - k;
  }
  case 3: /* insert a byte */
    if (len >= cap) return len;
    memmove(buf + pos + 1, buf + pos, len - pos);
    buf[pos] = interesting[rng() % (sizeof interesting - 1)];
    return len + 1;
  case 4: { /* duplicate a slice */
    size_t k = 1 + rng() % 16;
    if (pos + k > len) k = len - pos;
    if (len + k > cap) return len;
    memmove(buf + pos + k, buf + pos, len - pos);
    return len + k;
  }
  default:
    return len ? rng() % len : 0; /* truncate */
  }
}

static void test_mutation_fuzz(int iterations) {
  char buf[1024];
  int decoded = 0;
  clock_t t0 = clock();
  for (int i = 0; i < iterations; i++) {
    const char *seed = corpus[rng() % CORPUS_SIZE];
    size_t len = strlen(seed);
    memcpy(buf, seed, len);
    for (int m = 1 + (int)(rng() % 4); m > 0; m--) len = mutate(buf, len, sizeof buf);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    decoded += check_any_input(copy, len) == 0;
    free(copy);
    if (i % 4096 == 0) lua_gc(L, LUA_GCSTEP, 0);
  }
  printf("mutation fuzz: %d inputs, %d decoded, %.1f s\n", iterations, decoded,
         (double)(clock() - t0) / CLOCKS_PER_SEC);
  CHECK(decoded > 0);
}

/* Kept keys: found again at their position, and only there; a key with
 * escapes is never kept; a longer key sharing a kept one's start, a key cut
 * short by the end of the input, nested objects and positions past
 * LS_JSON_KEYS_MAX read as without. */
static void test_kept_keys(void) {
  memset(&keys, 0, sizeof keys);
  CHECK_VALUE("{\"a\":1,\"bb\":2}", "v.a == 1 and v.bb == 2");
  CHECK(keys.len[0] == 1 && keys.len[1] == 2 && memcmp(keys.s[1], "bb", 2) == 0);
  const char *a = keys.s[0];
  CHECK_VALUE("{\"a\":3,\"bb\":4}", "v.a == 3 and v.bb == 4");
  CHECK(keys.s[0] == a); /* found again: the same string */
  CHECK_VALUE("{\"ab\":5,\"b\":6}", "v.ab == 5 and v.a == nil and v.b == 6 and v.bb == nil");
  CHECK(keys.len[0] == 2 && keys.len[1] == 1);
  CHECK_VALUE("{\"a\\u0062\":7}", "v.ab == 7");
  CHECK(keys.len[0] == 2); /* the escaped key was not kept: "ab" from before stays */
  CHECK_VALUE("{\"a\\\"\":8}", "v['a\"'] == 8");
  CHECK_VALUE("{\"ab\":9}", "v.ab == 9");
  CHECK_DECODE_ERROR("{\"ab", "unexpected end of input");
  CHECK_DECODE_ERROR("{\"ab\"", "unexpected end of input");
  CHECK_DECODE_ERROR("{\"ab\" 1}", "unexpected character '1'");
  CHECK_VALUE("{\"x\":{\"ab\":1,\"x\":2}}", "v.x.ab == 1 and v.x.x == 2 and v.ab == nil");
  CHECK_VALUE("{\"\":1,\"\":2}", "v[''] == 2");
  char big[2048];
  size_t n = 0;
  big[n++] = '{';
  for (int i = 0; i < LS_JSON_KEYS_MAX + 8; i++)
    n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", i, i);
  big[n++] = '}';
  big[n] = 0;
  for (int pass = 0; pass < 2; pass++)
    check_value(big, n, "v.k0 == 0 and v.k31 == 31 and v.k32 == 32 and v.k39 == 39");
  CHECK(keys.len[LS_JSON_KEYS_MAX - 1] == 3);
}

/* ---- flat rows (ls_json_flat_add) ---- */

static ls_json_flat flat;

static int flat_add(const char *text) { return ls_json_flat_add(&flat, text, strlen(text), flat.n + 1); }

/* Field i of the row added last, of kind kind, with its key. */
static int flat_field_is(int i, const char *key, int kind) {
  int s = flat.shape[flat.n - 1];
  size_t len = 0;
  const char *k = ls_ffi_json_shape_key(&flat, s, i, &len);
  return k && len == strlen(key) && memcmp(k, key, len) == 0 && ls_ffi_json_shape_kind(&flat, s, i) == kind;
}

static const ls_json_slot *flat_slot(int i) { return &flat.slot[flat.first[flat.n - 1] + i]; }

static void test_flat_rows(void) {
  CHECK(ls_json_flat_init(&flat, 64) == 0);
  const char *row = "{\"a\":1.5,\"b\":\"x\\u00e9\",\"c\":true}"; /* an escape: not flat */
  CHECK(flat_add(row) == 0 && flat.n == 0);
  row = " { \"a\" : -2.5e1 , \"b\":\"h\xc3\xa9\" ,\"c\":true,\"d\":false,\"e\":null,\"\":0}\n";
  CHECK(flat_add(row) == 1 && flat.n == 1 && flat.row[0] == 1 && flat.shape[0] == 1 && flat.used == 1u);
  CHECK(ls_ffi_json_shape_fields(&flat, 1) == 6);
  CHECK(flat_field_is(0, "a", LS_JSON_NUM) && flat_slot(0)->v == -25.0);
  CHECK(flat_field_is(1, "b", LS_JSON_STR) && flat_slot(1)->n == 3 && memcmp(flat_slot(1)->s, "h\xc3\xa9", 3) == 0);
  CHECK(flat_slot(1)->s == strstr(row, "h\xc3")); /* in the text, not copied */
  CHECK(flat_field_is(2, "c", LS_JSON_BOOL) && flat_slot(2)->v == 1 && !flat_slot(2)->null);
  CHECK(flat_field_is(3, "d", LS_JSON_BOOL) && flat_slot(3)->v == 0);
  CHECK(flat_field_is(4, "e", LS_JSON_NULL) && flat_slot(4)->null && flat_field_is(5, "", LS_JSON_NUM));
  /* The same keys, other spacing and values, true for false, a null for a
   * number, a string or a boolean: the same shape. */
  CHECK(flat_add("{\"a\":7,\"b\":\"\",\"c\":false,\"d\":true,\"e\":null,\"\":-0}") == 1);
  CHECK(flat.shape[1] == 1 && flat_slot(0)->v == 7 && flat_slot(1)->n == 0 && signbit(flat_slot(5)->v));
  CHECK(flat_slot(2)->v == 0 && flat_slot(3)->v == 1 && !flat_slot(0)->null);
  CHECK(flat_add("{\"a\":null,\"b\":null,\"c\":null,\"d\":true,\"e\":null,\"\":1}") == 1);
  CHECK(flat.shape[2] == 1 && flat_slot(0)->null && flat_slot(1)->null && flat_slot(2)->null && !flat_slot(3)->null);
  /* The same, read through the shape search instead of the last shape's. */
  CHECK(flat_add("{\"x\":1}") == 1 && flat.shape[3] == 2);
  CHECK(flat_add("{\"a\":null,\"b\":\"q\",\"c\":true,\"d\":null,\"e\":null,\"\":2}") == 1);
  CHECK(flat.shape[4] == 1 && flat_slot(0)->null && flat_slot(1)->n == 1 && flat_slot(3)->null);
  /* A field that was null in the row that made the shape holds null only. */
  CHECK(flat_add("{\"a\":1,\"b\":\"y\",\"c\":true,\"d\":false,\"e\":5,\"\":0}") == 1 && flat.shape[5] == 3);
  /* Another order, another kind: other shapes. */
  CHECK(flat_add("{\"b\":\"y\",\"a\":1}") == 1 && flat.shape[6] == 4 && flat_field_is(0, "b", LS_JSON_STR));
  CHECK(flat_add("{\"b\":true,\"a\":1}") == 1 && flat.shape[7] == 5 && flat.used == 31u);
  CHECK(flat_add("{\"b\":\"z\",\"a\":2}") == 1 && flat.shape[8] == 4);
  /* Not flat: left to the decoder, nothing added. */
  static const char *const not_flat[] = {
      "{}", "[]", "1", "\"s\"", "{\"a\":{}}", "{\"a\":[1]}", "{\"a\\u0062\":1}",
      "{\"a\":1,\"a\":2}",                        /* a repeated key: the last one wins */
      "{\"a\":9007199254740993}",                  /* an int64 */
      "{\"a\":123456789012345678901234}",          /* more than 19 digits */
      "{\"a\":1} x", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":tru}",
      "{\"a\":\"\xff\"}", "{\"a\":\"\x01\"}", "{\"a\":1", "{\"a\":\"x", "{\"a\"", "{\"a\":-}",
      "{\"a\":1e}", "{\"a\":nul}", "{\"a\":1,\"b\":\"y\\n\"}",
  };
  for (size_t i = 0; i < sizeof not_flat / sizeof not_flat[0]; i++) {
    int n = flat.n;
    if (flat_add(not_flat[i]) != 0 || flat.n != n) fprintf(stderr, "flat rows: took %s\n", not_flat[i]);
    CHECK(flat.n == n);
  }
  /* The last row dropped (its key failed to decode): its slots go too. */
  size_t slots = flat.nslots;
  CHECK(flat_add("{\"b\":\"w\",\"a\":3}") == 1);
  ls_json_flat_drop_last(&flat);
  CHECK(flat.n == 9 && flat.nslots == slots);
  /* LS_JSON_KEYS_MAX fields at most. */
  char big[1024];
  for (int nk = LS_JSON_KEYS_MAX; nk <= LS_JSON_KEYS_MAX + 1; nk++) {
    size_t n = 0;
    big[n++] = '{';
    for (int i = 0; i < nk; i++) n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[n++] = '}';
    big[n] = 0;
    CHECK(flat_add(big) == (nk == LS_JSON_KEYS_MAX));
  }
  /* LS_JSON_SHAPES_MAX shapes; then a new one is left to the decoder, known ones still taken. */
  for (int i = 0; flat.nshapes < LS_JSON_SHAPES_MAX; i++) {
    snprintf(big, sizeof big, "{\"s%d\":1}", i);
    CHECK(flat_add(big) == 1);
  }
  CHECK(flat_add("{\"new\":1}") == 0 && flat_add("{\"b\":\"v\",\"a\":4}") == 1 && flat.shape[flat.n - 1] == 4);
  CHECK(ls_ffi_json_shape_fields(&flat, 0) == 0 && ls_ffi_json_shape_fields(&flat, LS_JSON_SHAPES_MAX + 1) == 0);
  CHECK(ls_ffi_json_shape_kind(&flat, 1, 6) == 0 && ls_ffi_json_shape_kind(&flat, 1, -1) == 0);
  CHECK(ls_ffi_json_shape_kind(&flat, 1, 2) == LS_JSON_BOOL);
  /* A batch's rows at most; clearing keeps the shapes. */
  ls_json_flat_clear(&flat);
  CHECK(flat.n == 0 && flat.used == 0 && flat.nshapes == LS_JSON_SHAPES_MAX);
  int taken = 0;
  for (int i = 0; i < 70; i++) taken += flat_add("{\"a\":1,\"b\":\"y\"}") == 0 && flat_add("{\"b\":\"y\",\"a\":1}");
  CHECK(taken == 64 && flat.n == 64);
  /* Another batch's shape 1 has another serial (Lua keeps builders by it). */
  ls_json_flat other;
  CHECK(ls_json_flat_init(&other, 4) == 0);
  CHECK(ls_json_flat_add(&other, row, strlen(row), 1) == 1 && other.shape[0] == 1);
  for (int i = 0; i < flat.nshapes; i++) CHECK(other.serial[0] != flat.serial[i] && flat.serial[i] != 0);
  ls_json_flat_free(&other);
  ls_json_flat_free(&flat);
}

/* ---- main ---- */

int main(int argc, char **argv) {
  int fuzz_iterations = argc > 1 ? atoi(argv[1]) : 400000;
  L = luaL_newstate();
  luaL_openlibs(L);
  ls_value_init(L);
  lua_newtable(L); /* "array": an empty table carrying the array marker */
  ls_mark_array(L);
  lua_setglobal(L, "array");
  int top = lua_gettop(L);

  test_decode_values();
  test_decode_strings();
  test_decode_long_strings();
  test_decode_numbers();
  test_decode_big_integers();
  test_decode_rounding();
  test_decode_numbers_in_text();
  test_decode_errors();
  test_decode_string_errors();
  test_decode_depth();
  test_reencode();
  test_encode_values();
  test_encode_strings();
  test_encode_errors();
  test_encode_depth();
  test_random_round_trips(50000);
  test_truncations();
  test_mutation_fuzz(fuzz_iterations);
  test_flat_rows();

  /* The decoding tests again, keeping top-level keys across documents. */
  lua_newtable(L);
  keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  kept_keys = 1;
  test_kept_keys();
  test_decode_values();
  test_decode_strings();
  test_decode_long_strings();
  test_decode_numbers();
  test_decode_big_integers();
  test_decode_errors();
  test_decode_string_errors();
  test_decode_depth();
  test_reencode();
  test_random_round_trips(50000);
  test_truncations();
  test_mutation_fuzz(fuzz_iterations / 4);
  kept_keys = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, keys_ref);

  CHECK(lua_gettop(L) == top);
  lua_close(L);
  CHECK_DONE();
}
