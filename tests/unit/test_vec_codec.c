/* test_vec_codec.c - vecs (ls.vec) through the codecs (json.c, mpack.c, codec.c).
 *
 * Decoding with LS_ARRAYS_VEC: JSON and MessagePack arrays of numbers become
 * vecs holding exactly the correctly rounded doubles (checked against strtod;
 * ints, floats, integers beyond 2^53, every msgpack number form), at any
 * depth and with 0, 1 and 1500 elements; every other array stays a marked
 * table equal to the decode without the option; malformed input gives the
 * same error, byte for byte, with and without it (a list of bad documents,
 * every truncation, deterministic mutations).
 * Encoding: a vec is a JSON array of shortest doubles (bit-exact round trips
 * of random doubles: subnormals, huge values, -0), NaN and infinities are
 * errors naming the element; a msgpack array of float64 (exact bytes); with
 * LS_VEC_EXT the vec ext type, which decodes back bit for bit (NaN payloads
 * included, but for those ls_vec_clean makes canonical), as the state store
 * uses it. And the topic option in the spec (spec.c): read, refused when
 * unknown, a reason to restart when it changes. An argument sets another
 * random seed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "buf.h"
#include "check.h"
#include "codec.h"
#include "lua_vm.h"
#include "mpack.h"
#include "spec.h"
#include "vec.h"

static lua_State *L;

static uint64_t rng_state = 0x6A09E667F3BCC909u;

static uint64_t rng(void) { return check_splitmix64(&rng_state); }


/* A random double of every kind: any finite bit pattern (subnormals and huge
 * values included), small integers, short decimals, zeros of both signs. */
static double random_double(void) {
  switch (rng() % 6) {
  case 0: return (double)((int64_t)(rng() % 2001) - 1000);
  case 1: return (double)(int64_t)(rng() % 2000001 - 1000000) / 1000.0;
  case 2: return check_from_bits(rng() & 0x800FFFFFFFFFFFFFu); /* subnormal or zero */
  case 3: return (rng() & 1) ? -0.0 : 0.0;
  default: {
    double x;
    do x = check_from_bits(rng());
    while (!isfinite(x));
    return x;
  }
  }
}

/* ---- running the codecs in protected calls ---- */

typedef struct job {
  ls_format f;
  int flags;
  const char *p;
  size_t n;
  ls_buf buf;
  int rc, stack_ok;
  char err[256];
} job;

static int call_decode(lua_State *L1) {
  job *j = lua_touserdata(L1, 1);
  int top = lua_gettop(L1);
  j->rc = ls_decode_opts(L1, j->f, j->flags, j->p, j->n, j->err, sizeof j->err);
  j->stack_ok = lua_gettop(L1) == top + (j->rc == 0);
  if (j->rc) lua_pushnil(L1);
  return 1;
}

/* Decodes p[0..n): 0 with the value pushed, or -1 with the message in err
 * (256 bytes) and nothing pushed. */
static int decode(ls_format f, int flags, const char *p, size_t n, char *err) {
  job j = {.f = f, .flags = flags, .p = p, .n = n, .rc = -1};
  lua_pushcfunction(L, call_decode);
  lua_pushlightuserdata(L, &j);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
    j.rc = -1;
    j.stack_ok = 0;
  }
  if (!j.stack_ok) CHECK(j.stack_ok);
  if (j.rc) lua_pop(L, 1);
  if (err) snprintf(err, 256, "%s", j.rc ? j.err : "");
  return j.rc ? -1 : 0;
}

static int json(int flags, const char *text) { return decode(LS_FMT_JSON, flags, text, strlen(text), NULL); }

static int call_encode(lua_State *L1) { /* (job, value) */
  job *j = lua_touserdata(L1, 1);
  j->rc = ls_encode_opts(L1, 2, j->f, j->flags, &j->buf, j->err, sizeof j->err);
  j->stack_ok = lua_gettop(L1) == 2;
  return 0;
}

/* Encodes the value at the top of the stack (popped) into out (reset first);
 * 0, or -1 with the message in err (256 bytes). */
static int encode_top(ls_format f, int flags, ls_buf *out, char *err) {
  job j = {.f = f, .flags = flags, .buf = *out, .rc = -1};
  j.buf.len = 0;
  lua_pushcfunction(L, call_encode);
  lua_pushlightuserdata(L, &j);
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    fprintf(stderr, "encode raised: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (!j.stack_ok) CHECK(j.stack_ok);
  *out = j.buf;
  if (err) snprintf(err, 256, "%s", j.rc ? j.err : "");
  return j.rc;
}

/* The text of the value at the top (popped) encoded in JSON, or "error: ...". */
static const char *json_of_top(int flags) {
  static char out[4096];
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  if (encode_top(LS_FMT_JSON, flags, &b, err)) snprintf(out, sizeof out, "error: %s", err);
  else snprintf(out, sizeof out, "%.*s", (int)b.len, b.len ? b.data : "");
  ls_buf_free(&b);
  return out;
}

/* The msgpack encoding of the value at the top (popped), as hex. */
static const char *mpack_hex_of_top(int flags) {
  static char out[4096];
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  if (encode_top(LS_FMT_MSGPACK, flags, &b, err)) {
    snprintf(out, sizeof out, "error: %s", err);
  } else {
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < b.len && len + 4 < sizeof out; i++)
      len += (size_t)snprintf(out + len, sizeof out - len, i ? " %02x" : "%02x", (unsigned char)b.data[i]);
  }
  ls_buf_free(&b);
  return out;
}

/* ---- Lua helpers ---- */

static const char PRELUDE[] =
    "vec = require('luastream.vec')\n"
    "core = require('luastream.core')\n"
    "ffi = require('ffi')\n"
    "function marked(t) return type(t) == 'table' and getmetatable(t) == core.array_mt end\n"
    "local u = ffi.new('union { double d; uint64_t u; }')\n"
    "function bits(x) u.d = x return u.u end\n"
    "function vals(v, ...)\n"
    "  if not vec.is(v) or #v ~= select('#', ...) then return false end\n"
    "  for i = 1, #v do if bits(v[i]) ~= bits((select(i, ...))) then return false end end\n"
    "  return true\n"
    "end\n"
    /* Lua numbers hold one NaN, vecs keep the payload */
    "function same(x, y) if x ~= x then return y ~= y end return bits(x) == bits(y) end\n"
    /* t (decoded without the option) and v (with it) hold the same data,
     * every vec in v a marked table of numbers in t (tables and cdata as
     * map keys are only counted: they are found by identity). */
    "function equiv(t, v)\n"
    "  if vec.is(v) then\n"
    "    if not marked(t) or #t ~= #v then return false end\n"
    "    for i = 1, #v do\n"
    "      local x = t[i]\n"
    "      if type(x) == 'cdata' then x = tonumber(x) end\n"
    "      if type(x) ~= 'number' or not same(x, v[i]) then return false end\n"
    "    end\n"
    "    return next(t, #t > 0 and #t or nil) == nil\n"
    "  end\n"
    "  if type(t) ~= type(v) then return false end\n"
    "  if type(t) ~= 'table' then\n"
    "    if type(t) == 'number' then return same(t, v) end\n"
    "    return t == v\n"
    "  end\n"
    "  if marked(t) ~= marked(v) then return false end\n"
    "  local odd = 0\n"
    "  for k, x in pairs(t) do\n"
    "    if type(k) == 'table' or type(k) == 'cdata' then odd = odd + 1\n"
    "    elseif not equiv(x, v[k]) then return false end\n"
    "  end\n"
    "  for k in pairs(v) do\n"
    "    if type(k) == 'table' or type(k) == 'cdata' then odd = odd - 1\n"
    "    elseif t[k] == nil then return false end\n"
    "  end\n"
    "  return odd == 0\n"
    "end\n"
    /* interpreted: compiled, LuaJIT's uint64 -> double conversion can
     * round twice (an ulp off) for values above 2^63 */
    "jit.off(equiv)\n";

/* Runs `return function(v, w) <body> end` on the top value (v) and the one
 * below it (w) when two is set; pops them. True when it returns true. */
static int lua_check2(const char *body, int two) {
  char code[2048];
  snprintf(code, sizeof code, "return function(v, w) %s end", body);
  int ok = luaL_loadstring(L, code) == 0 && lua_pcall(L, 0, 1, 0) == 0;
  if (ok) {
    lua_pushvalue(L, -2);
    if (two) lua_pushvalue(L, -4);
    ok = lua_pcall(L, 1 + two, 1, 0) == 0 && lua_toboolean(L, -1);
  }
  if (!ok) fprintf(stderr, "check failed: %s\n  %s\n", lua_tostring(L, -1), body);
  lua_pop(L, 2 + two);
  return ok;
}

static int lua_check(const char *body) { return lua_check2(body, 0); }

/* Decodes text as JSON with the option and runs body on the value. */
static int json_check(const char *text, const char *body) {
  if (json(LS_ARRAYS_VEC, text) != 0) {
    fprintf(stderr, "did not decode: %s\n", text);
    return 0;
  }
  return lua_check(body);
}

/* Pushes the value of a Lua expression. */
static void push_expr(const char *expr) {
  char code[1024];
  snprintf(code, sizeof code, "return %s", expr);
  if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "bad expression %s: %s\n", expr, lua_tostring(L, -1));
    abort();
  }
}

/* Pushes a new vec holding x[0..n). */
static ls_vec *push_vec(const double *x, int32_t n) {
  ls_vec *v = ls_vec_push(L, n);
  if (n) memcpy(v->d, x, (size_t)n * sizeof *x);
  return v;
}

/* Whether the vec at the top holds exactly the bits of x[0..n). */
static int vec_is(const double *x, int32_t n) {
  ls_vec *v = ls_vec_to(L, -1);
  if (!v || v->n != n) return 0;
  for (int32_t i = 0; i < n; i++)
    if (check_bits_of(v->d[i]) != check_bits_of(x[i])) {
      fprintf(stderr, "  element %d: got %016llx, want %016llx\n", (int)i,
              (unsigned long long)check_bits_of(v->d[i]), (unsigned long long)check_bits_of(x[i]));
      return 0;
    }
  return 1;
}

/* ---- JSON: arrays of numbers become vecs ---- */

/* Decodes a JSON array of numbers with the option; every element must be
 * strtod's (correctly rounded) value of its text. */
static int json_vec_matches_strtod(const char *text) {
  if (json(LS_ARRAYS_VEC, text) != 0) return 0;
  double want[2048];
  int32_t n = 0;
  const char *p = strchr(text, '[') + 1;
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  while (*p != ']' && n < 2048) {
    char *end;
    want[n++] = strtod(p, &end);
    p = end;
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  }
  int ok = vec_is(want, n);
  lua_pop(L, 1);
  return ok;
}

static void test_json_numeric_arrays(void) {
  CHECK(json_check("[1,2,3]", "return vals(v, 1, 2, 3)"));
  /* tonumber('-0'), not the literal -0.0: LuaJIT on arm64 (dual-number mode)
   * reads that as the integer 0; tonumber('-0') is the double -0 everywhere */
  CHECK(json_check(" [ 1 ,\t-2.5,\n3e2,0.1 , -0, 1E-3,-0.0 ] ",
                   "local z = tonumber('-0') return vals(v, 1, -2.5, 300, 0.1, z, 0.001, z)"));
  CHECK(json_check("[42]", "return vals(v, 42)"));
  CHECK(json_check("[]", "return vals(v)"));
  CHECK(json_check("[ \n\t ]", "return vals(v)"));
  CHECK(json_check("[1e400, -1e400, 1e-400]", "return vals(v, math.huge, -math.huge, 0)"));
  /* integers beyond 2^53 and 64 bits: the nearest double, no int64 */
  CHECK(json_vec_matches_strtod("[9007199254740993, -9007199254740993, 9007199254740995, 9223372036854775807,"
                                " -9223372036854775808, 18446744073709551615, 18446744073709551616,"
                                " 123456789012345678901234567890, -98765432109876543210987654321]"));
  CHECK(json_check("[9007199254740993]", "return vals(v, 2^53) and type(v[1]) == 'number'"));
  /* around the limits of the fast path (19 digits, 2^53, Clinger's 10^22) */
  CHECK(json_vec_matches_strtod("[1234567890.123456789,0.0000000000000000001,9999999999999999999,-0.5,"
                                "12345678901234567.8,1.000000000000000000,0.1234567890123456789,"
                                "9007199254740993.0,900719925474099.35,4.9406564584124654,1.7976931348623157,"
                                "0.000000000000000000000000000000001,123456789012345678,1234567890123456789,"
                                "12345678901234567890,-9007199254740992.5,0.3,2.675,1e22,1E-22,7e+0,-0e-0]"));
  CHECK(json_vec_matches_strtod("[0.1, 0.2, 0.30000000000000004, 2.2250738585072014e-308, 4.9e-324, "
                                "1.7976931348623157e308, 123456789.12345678901234567890, 1e23,"
                                " 8.98846567431158e307]"));
  /* at any depth; other arrays stay marked tables */
  CHECK(json_check("{\"car\":\"car-7\",\"channels\":{\"speed\":[1.5,2],\"rpm\":[3000,3100]},\"tags\":[\"a\"],"
                   "\"m\":[[1,2],[3]],\"mixed\":[1,\"x\"],\"objs\":[{\"a\":[1]}],\"n\":[1,null],\"b\":[true],"
                   "\"e\":[],\"o\":{}}",
                   "return vals(v.channels.speed, 1.5, 2) and vals(v.channels.rpm, 3000, 3100)"
                   " and marked(v.tags) and v.tags[1] == 'a' and #v.tags == 1"
                   " and marked(v.m) and #v.m == 2 and vals(v.m[1], 1, 2) and vals(v.m[2], 3)"
                   " and marked(v.mixed) and v.mixed[1] == 1 and v.mixed[2] == 'x'"
                   " and marked(v.objs) and vals(v.objs[1].a, 1)"
                   " and marked(v.n) and v.n[1] == 1 and v.n[2] == core.null and #v.n == 2"
                   " and marked(v.b) and v.b[1] == true and vals(v.e) and not marked(v.o) and next(v.o) == nil"));
  CHECK(json_check("[[1],[2,3],[]]",
                   "return marked(v) and #v == 3 and vals(v[1], 1) and vals(v[2], 2, 3) and vals(v[3])"));
  CHECK(json_check("[1,[2]]", "return marked(v) and v[1] == 1 and vals(v[2], 2)"));
  CHECK(json_check("[\"1\",2]", "return marked(v) and v[1] == '1' and v[2] == 2"));
  CHECK(json_check("[1,2,{}]", "return marked(v) and #v == 3"));
  CHECK(json_check("[1,2,false]", "return marked(v) and v[3] == false"));
  CHECK(json_check("[12345678901234567890, \"x\"]", "return marked(v) and type(v[1]) == 'cdata'"));
  CHECK(json_check("3", "return v == 3"));
  /* 1500 elements, random texts of every kind */
  static char text[1500 * 32 + 8];
  for (int round = 0; round < 20; round++) {
    size_t len = 0;
    text[len++] = '[';
    for (int i = 0; i < 1500; i++) {
      if (i) text[len++] = ',';
      if (rng() % 3 == 0) len += (size_t)sprintf(text + len, "%lld", (long long)(rng() % 2000000) - 1000000);
      else len += (size_t)sprintf(text + len, "%.*g", 1 + (int)(rng() % 17), random_double());
    }
    text[len++] = ']';
    text[len] = 0;
    CHECK(json_vec_matches_strtod(text));
  }
  /* without the option: tables, as always */
  CHECK(json(0, "[1,2]") == 0 && lua_check("return marked(v) and v[1] == 1 and v[2] == 2"));
  CHECK(json(0, "[]") == 0 && lua_check("return marked(v) and next(v) == nil"));
  CHECK(json(0, "[9007199254740993]") == 0 && lua_check("return type(v[1]) == 'cdata'"));
}

/* Decodes n bytes of f with and without the option: the same outcome, the
 * same message; a decoded value must equal its table form (equiv). Returns
 * 1 when it decoded. */
static int same_both_ways(ls_format f, const char *p, size_t n) {
  char e0[256], e1[256];
  int r0 = decode(f, 0, p, n, e0);
  int r1 = decode(f, LS_ARRAYS_VEC, p, n, e1);
  int ok = r0 == r1 && strcmp(e0, e1) == 0;
  if (ok && r0 == 0) ok = lua_check2("return equiv(w, v)", 1);
  else if (r0 == 0) lua_pop(L, 1);
  else if (r1 == 0) lua_pop(L, 1);
  if (!ok) {
    fprintf(stderr, "  differs for");
    for (size_t i = 0; i < n && i < 60; i++) fprintf(stderr, " %02x", (unsigned char)p[i]);
    fprintf(stderr, ": [%s] vs [%s]\n", e0, e1);
  }
  CHECK(ok);
  return r0 == 0;
}

static const char *const BAD_JSON[] = {
  "[1,2", "[1,,2]", "[,]", "[,1]", "[1 2]", "[01]", "[1.]", "[1e]", "[-]", "[+1]", "[1,]", "[.5]", "[1e+]",
  "[--1]", "[1-]", "[1.5e3.2]", "[1]x", "[1]]", "[[1,2]", "{\"a\":[1,2}", "[1,2,]", "[1e5, 2E-3, -0.0e0, x]",
  "[\t1\n,\r2 , 3 ]]", "[Infinity]", "[NaN]", "[1,2]\"", "[ - 1]", "[0x10]", "[1 , e5]", "[", "[ ", "[1",
  "[1,", "[1e5", "[-0.", "{\"a\":[1,2],\"b\":[3,}", "[1,2][3]", "[1\x01]", "[1,\"a]", "[1.e5]", "[1E+-5]",
  "[00]", "[-01.5]", "[1,2,3,4,5,6,7,8,9,1e]", "[ ]x", "[] ]", "[1 ,, ]",
};

static const char *const GOOD_JSON[] = {
  "[1,2,3]", "[ 1 , 2 ]", "[]", "[ ]", "[[]]", "[[],[1],[1,2],[\"a\"],[1,\"a\"]]",
  "{\"car\":\"car-7\",\"t0\":1764160000123,\"rate_hz\":1500,\"channels\":{\"speed\":[12.5,13.25,14],"
  "\"rpm\":[3000,3010.5],\"throttle\":[0.5,-0.25],\"brake\":[]}}",
  "[0.1,-2e-3,1E3,123456789012345678901234567890,9007199254740993,-0]",
  "[true,false,null,1]", "[{\"a\":[1,2]},[3,[4,[5,[6]]]]]",
};

static void test_json_same_errors(void) {
  for (size_t i = 0; i < sizeof BAD_JSON / sizeof *BAD_JSON; i++)
    CHECK(!same_both_ways(LS_FMT_JSON, BAD_JSON[i], strlen(BAD_JSON[i])));
  for (size_t i = 0; i < sizeof GOOD_JSON / sizeof *GOOD_JSON; i++)
    CHECK(same_both_ways(LS_FMT_JSON, GOOD_JSON[i], strlen(GOOD_JSON[i])));
  /* every truncation */
  for (size_t i = 0; i < sizeof GOOD_JSON / sizeof *GOOD_JSON; i++) {
    size_t n = strlen(GOOD_JSON[i]);
    for (size_t cut = 0; cut < n; cut++) {
      char *copy = malloc(cut ? cut : 1); /* exact size: ASan catches over-reads */
      memcpy(copy, GOOD_JSON[i], cut);
      same_both_ways(LS_FMT_JSON, copy, cut);
      free(copy);
    }
  }
  /* deterministic mutations */
  static const char interesting[] = "[]{}\",:-+.eE0123456789 \tnx";
  char buf[512];
  int decoded = 0, runs = 20000;
  for (int it = 0; it < runs; it++) {
    const char *seed = GOOD_JSON[rng() % (sizeof GOOD_JSON / sizeof *GOOD_JSON)];
    size_t len = strlen(seed);
    memcpy(buf, seed, len);
    for (int m = 1 + (int)(rng() % 3); m > 0 && len > 0; m--) {
      size_t pos = rng() % len;
      if (rng() % 4 == 0 && len + 1 < sizeof buf) {
        memmove(buf + pos + 1, buf + pos, len - pos);
        len++;
      } else if (rng() % 4 == 0) {
        memmove(buf + pos, buf + pos + 1, len - pos - 1);
        len--;
        continue;
      }
      buf[pos] = interesting[rng() % (sizeof interesting - 1)];
    }
    char *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    decoded += same_both_ways(LS_FMT_JSON, copy, len);
    free(copy);
  }
  printf("json mutations: %d inputs, %d decoded\n", runs, decoded);
  CHECK(decoded > 0 && decoded < runs);
  /* nesting limit: the same with a vec innermost */
  static char deep[2048];
  for (int levels = 510; levels <= 513; levels++) {
    size_t len = 0;
    for (int i = 0; i < levels; i++) deep[len++] = '[';
    deep[len++] = '1';
    for (int i = 0; i < levels; i++) deep[len++] = ']';
    CHECK(same_both_ways(LS_FMT_JSON, deep, len) == (levels <= 512));
  }
}

/* ---- JSON: encoding vecs ---- */

static void test_json_encode(void) {
  double a[] = {1, 2.5, -0.0, 0.1, 1e21, 5e-324, 9007199254740992.0, 1152921504606846976.0, -3, 1e-7};
  push_vec(a, 10);
  CHECK_STR(json_of_top(0), "[1,2.5,-0,0.1,1e+21,5e-324,9007199254740992,1.152921504606847e+18,-3,1e-7]");
  push_vec(a, 0);
  CHECK_STR(json_of_top(0), "[]");
  push_vec(a, 1);
  CHECK_STR(json_of_top(LS_VEC_EXT), "[1]"); /* the flag is for msgpack only */
  push_expr("{ ch = { speed = vec.from{1.5, 2} }, list = { vec.from{1}, vec.new(0), 'x' } }");
  const char *s = json_of_top(0);
  CHECK(strstr(s, "\"ch\":{\"speed\":[1.5,2]}") != NULL);
  CHECK(strstr(s, "\"list\":[[1],[],\"x\"]") != NULL);
  push_expr("{ ch = { speed = vec.from{1, 2, 0/0} } }");
  CHECK_STR(json_of_top(0), "error: cannot encode NaN or infinity at $.ch.speed[2]");
  push_expr("vec.from{-math.huge}");
  CHECK_STR(json_of_top(0), "error: cannot encode NaN or infinity at $[0]");
  push_expr("{ { 1, vec.from{1, math.huge} } }");
  CHECK_STR(json_of_top(0), "error: cannot encode NaN or infinity at $[0][1][1]");
  push_expr("{ [vec.new(1)] = 1 }");
  CHECK_STR(json_of_top(0), "error: cannot encode a cdata as an object key at $");
  push_expr("{ v = ffi.new('double[2]') }");
  CHECK_STR(json_of_top(0), "error: cannot encode a cdata value at $.v");
  /* a vec inside 128 tables (the limit): its element's path step still fits */
  push_expr("(function() local t = vec.from{1, 0/0} for i = 1, 128 do t = {t} end return t end)()");
  CHECK(strncmp(json_of_top(0), "error: cannot encode NaN or infinity at $[0][0]", 47) == 0);
}

/* vec -> JSON -> vec, bit for bit, for random doubles. */
static void test_json_round_trips(void) {
  static double x[1500];
  ls_buf b;
  ls_buf_init(&b);
  int bad = 0;
  for (int round = 0; round < 300; round++) {
    int32_t n = round == 0 ? 0 : round == 1 ? 1 : (int32_t)(rng() % 1501);
    for (int32_t i = 0; i < n; i++) x[i] = random_double();
    push_vec(x, n);
    char err[256];
    if (encode_top(LS_FMT_JSON, 0, &b, err) || decode(LS_FMT_JSON, LS_ARRAYS_VEC, b.data, b.len, err)) {
      fprintf(stderr, "round trip failed: %s\n", err);
      bad++;
      continue;
    }
    bad += !vec_is(x, n);
    lua_pop(L, 1);
  }
  CHECK(bad == 0);
  ls_buf_free(&b);
}

/* ---- MessagePack ---- */

static void test_mpack_encode(void) {
  double a[20] = {1, -0.5};
  push_vec(a, 2);
  CHECK_STR(mpack_hex_of_top(0), "92 cb 3f f0 00 00 00 00 00 00 cb bf e0 00 00 00 00 00 00");
  push_vec(a, 0);
  CHECK_STR(mpack_hex_of_top(0), "90");
  push_vec(a, 20);
  CHECK(strncmp(mpack_hex_of_top(0), "dc 00 14 cb 3f f0", 17) == 0);
  double odd[] = {NAN, INFINITY, -0.0, 3};
  push_vec(odd, 4);
  CHECK_STR(mpack_hex_of_top(0), "94 cb 7f f8 00 00 00 00 00 00 cb 7f f0 00 00 00 00 00 00 "
                                 "cb 80 00 00 00 00 00 00 00 cb 40 08 00 00 00 00 00 00");
  /* the ext type: raw little-endian doubles */
  push_vec(a, 1);
  CHECK_STR(mpack_hex_of_top(LS_VEC_EXT), "d7 56 00 00 00 00 00 00 f0 3f");
  push_vec(a, 0);
  CHECK_STR(mpack_hex_of_top(LS_VEC_EXT), "c7 00 56");
  push_vec(a, 2);
  CHECK_STR(mpack_hex_of_top(LS_VEC_EXT), "d8 56 00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 e0 bf");
  push_vec(a, 3);
  CHECK(strncmp(mpack_hex_of_top(LS_VEC_EXT), "c7 18 56 ", 9) == 0);
  push_vec(a, 20);
  CHECK(strncmp(mpack_hex_of_top(LS_VEC_EXT), "c7 a0 56 ", 9) == 0);
  push_expr("{ v = ffi.new('double[2]') }");
  CHECK_STR(mpack_hex_of_top(0), "error: cannot encode a cdata at $.v");
  push_expr("{ [vec.new(1)] = 1 }");
  CHECK_STR(mpack_hex_of_top(0), "error: cannot encode a cdata as a map key at $");
}

/* Decodes the n bytes of msgpack with flags and runs body on the value. */
static int mpack_check(int flags, const char *p, size_t n, const char *body) {
  char err[256];
  if (decode(LS_FMT_MSGPACK, flags, p, n, err) != 0) {
    fprintf(stderr, "msgpack did not decode: %s\n", err);
    return 0;
  }
  return lua_check(body);
}

static void test_mpack_decode(void) {
  /* every number form in one array */
  static const unsigned char forms[] = {
    0xdc, 0x00, 0x0c, 0x7f, 0xe0, 0xcc, 0xff, 0xcd, 0xff, 0xff, 0xce, 0xff, 0xff, 0xff, 0xff,
    0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd0, 0x80, 0xd1, 0x80, 0x00,
    0xd2, 0x80, 0x00, 0x00, 0x00, 0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xca, 0x3f, 0xc0, 0x00, 0x00, 0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a,
  };
  CHECK(mpack_check(LS_ARRAYS_VEC, (const char *)forms, sizeof forms,
                    "return vals(v, 127, -32, 255, 65535, 4294967295, 2^64,"
                    " -128, -32768, -2147483648, -2^63, 1.5, 0.1)"));
  CHECK(mpack_check(0, (const char *)forms, sizeof forms, "return marked(v) and #v == 12 and type(v[6]) == 'cdata'"));
  CHECK(mpack_check(LS_ARRAYS_VEC, "\x90", 1, "return vals(v)"));
  CHECK(mpack_check(LS_ARRAYS_VEC, "\x91\x05", 2, "return vals(v, 5)"));
  /* {a = [1, 2], b = [[1], "x"], c = [1, nil], d = [true], e = [[]], f = [1, {}]} */
  static const char doc[] = "\x86\xa1" "a\x92\x01\x02\xa1" "b\x92\x91\x01\xa1x\xa1" "c\x92\x01\xc0"
                            "\xa1" "d\x91\xc3\xa1" "e\x91\x90\xa1" "f\x92\x01\x80";
  CHECK(mpack_check(LS_ARRAYS_VEC, doc, sizeof doc - 1,
                    "return vals(v.a, 1, 2) and marked(v.b) and vals(v.b[1], 1) and v.b[2] == 'x'"
                    " and marked(v.c) and v.c[2] == core.null and marked(v.d) and v.d[1] == true"
                    " and marked(v.e) and vals(v.e[1]) and marked(v.f) and type(v.f[2]) == 'table'"));
  /* the ext type decodes to a vec with or without the option */
  CHECK(mpack_check(0, "\xd7\x56\0\0\0\0\0\0\xf0\x3f", 10, "return vals(v, 1)"));
  CHECK(mpack_check(LS_ARRAYS_VEC, "\xc7\x00\x56", 3, "return vals(v)"));
  CHECK(mpack_check(0, "\x81\xa1v\xd8\x56\0\0\0\0\0\0\xf0\x3f\0\0\0\0\0\0\xe0\xbf", 21, "return vals(v.v, 1, -0.5)"));
  char err[256];
  CHECK(decode(LS_FMT_MSGPACK, 0, "\xd4\x56\x00", 3, err) == -1);
  CHECK_STR(err, "invalid vec ext: size not a multiple of 8 at byte 0");
  CHECK(decode(LS_FMT_MSGPACK, 0, "\x91\xc7\x09\x56" "123456789", 13, err) == -1);
  CHECK_STR(err, "invalid vec ext: size not a multiple of 8 at byte 1");
  CHECK(decode(LS_FMT_MSGPACK, 0, "\xd7\x56\0\0\0", 5, err) == -1);
  CHECK_STR(err, "truncated input at byte 0");
  CHECK(decode(LS_FMT_MSGPACK, 0, "\xd4\x05\x00", 3, err) == -1);
  CHECK_STR(err, "unsupported msgpack ext type 5 at byte 0");
}

/* The bytes of the value at the top (popped) encoded with flags, into b. */
static int encode_bytes(int flags, ls_buf *b) {
  char err[256];
  int rc = encode_top(LS_FMT_MSGPACK, flags, b, err);
  if (rc) fprintf(stderr, "encode failed: %s\n", err);
  return rc;
}

/* vec -> msgpack (float64 array, and the ext type) -> vec, bit for bit,
 * NaN payloads included, but for the NaNs ls_vec_clean makes canonical. */
static void test_mpack_round_trips(void) {
  static double x[1500], want[1500];
  ls_buf b;
  ls_buf_init(&b);
  int bad = 0;
  for (int round = 0; round < 200; round++) {
    int32_t n = round == 0 ? 0 : round == 1 ? 1 : (int32_t)(rng() % 1501);
    for (int32_t i = 0; i < n; i++) {
      x[i] = (rng() % 4) ? random_double() : check_from_bits(rng());
      want[i] = ls_vec_clean(x[i]);
    }
    for (int ext = 0; ext <= 1; ext++) {
      push_vec(x, n);
      char err[256];
      if (encode_bytes(ext ? LS_VEC_EXT : 0, &b) ||
          decode(LS_FMT_MSGPACK, ext ? 0 : LS_ARRAYS_VEC, b.data, b.len, err)) {
        bad++;
        continue;
      }
      bad += !vec_is(want, n);
      lua_pop(L, 1);
    }
  }
  CHECK(bad == 0);
  /* a state value: a table holding vecs, written with the ext type and read
   * back as checkpoint.c does (ls_decode, no option) */
  uint64_t nan_bits[] = {0x7ff0000000000001u, 0xfff8deadbeef0001u, 0x7fffffffffffffffu, 0xfff0000000000001u,
                         0x8000000000000000u, 0x0000000000000001u, 0x7fefffffffffffffu, 0xfff8000000000000u,
                         /* read by LuaJIT as nil, a table, ...: made canonical */
                         0xffffffffffffffffu, 0xfffa000000001000u, 0xfff1000000000000u, 0xfff9000000000000u};
  for (int i = 0; i < 12; i++) x[i] = check_from_bits(nan_bits[i]), want[i] = check_from_bits(i < 8 ? nan_bits[i] : nan_bits[7]);
  lua_createtable(L, 0, 3);
  push_vec(x, 12);
  lua_setfield(L, -2, "v");
  push_vec(x, 0);
  lua_setfield(L, -2, "empty");
  lua_pushnumber(L, 7);
  lua_setfield(L, -2, "n");
  char err[256];
  CHECK(encode_bytes(LS_VEC_EXT, &b) == 0);
  CHECK(ls_decode(L, LS_FMT_MSGPACK, b.data, b.len, err, sizeof err) == 0);
  lua_getfield(L, -1, "v");
  CHECK(vec_is(want, 12));
  CHECK(lua_check("local n = 0 for i = 1, #v do n = n + (v[i] ~= v[i] and 1 or 0) end return n == 9"));
  lua_getfield(L, -1, "empty");
  CHECK(vec_is(x, 0));
  lua_pop(L, 1);
  CHECK(lua_check("return v.n == 7"));
  /* the plain form reads back as a table of numbers without the option */
  push_vec(want, 6);
  CHECK(encode_bytes(0, &b) == 0);
  CHECK(decode(LS_FMT_MSGPACK, 0, b.data, b.len, err) == 0);
  CHECK(lua_check("return marked(v) and #v == 6 and v[1] ~= v[1] and v[5] == 0 and 1 / v[5] < 0"));
  ls_buf_free(&b);
}

static void test_mpack_same_errors(void) {
  /* encodings holding arrays of numbers, mixed arrays and vecs */
  static const char *const exprs[] = {
    "{1, 2, 3}", "{1.5, -2^40, 2^40, 70000, -70000, 300, -300, 0.1, -1, 200}",
    "{a = {1, 2}, b = {{1}, 'x'}, c = {}, d = {1, {2, {3}}}}",
    "{ffi.new('int64_t', 2^53) + 1, 0xffffffffffffffffULL, -0.5}",
    "{vec.from{1, 2, 3}, vec.new(0), {vec.from{0.25}}}",
  };
  ls_buf b;
  ls_buf_init(&b);
  int decoded = 0, runs = 0;
  for (size_t e = 0; e < sizeof exprs / sizeof *exprs; e++) {
    push_expr(exprs[e]);
    CHECK(encode_bytes(0, &b) == 0);
    for (size_t cut = 0; cut <= b.len; cut++) {
      char *copy = malloc(cut ? cut : 1);
      memcpy(copy, b.data, cut);
      decoded += same_both_ways(LS_FMT_MSGPACK, copy, cut);
      runs++;
      free(copy);
    }
    unsigned char buf[512];
    for (int it = 0; it < 4000 && b.len <= sizeof buf; it++) {
      memcpy(buf, b.data, b.len);
      for (int k = 0; k < 1 + (int)(rng() % 3); k++) {
        unsigned char r = (unsigned char)rng();
        buf[rng() % b.len] = (rng() & 1) ? r : (unsigned char)(0xc0 + r % 0x20);
      }
      size_t n = b.len - (rng() % 2);
      char *copy = malloc(n ? n : 1);
      memcpy(copy, buf, n);
      decoded += same_both_ways(LS_FMT_MSGPACK, copy, n);
      runs++;
      free(copy);
    }
  }
  printf("msgpack truncations and mutations: %d inputs, %d decoded\n", runs, decoded);
  CHECK(decoded > 0 && decoded < runs);
  ls_buf_free(&b);
}

/* ---- the topic option in the spec (spec.c) ---- */

/* Reads the spec table of a Lua expression into s; 0, or -1 with err.
 * spec.c requires every field (luastream.runtime sets them all), so the
 * expression's fields go into a complete spec, its inputs completed too. */
static int read_spec(const char *expr, ls_spec *s, char *err, size_t errlen) {
  char full[1024];
  snprintf(full, sizeof full,
           "(function(x) local s = { name = 'a', guarantee = 'at-least-once', offset_reset = 'earliest', "
           "state_dir = 'state', on_error = 'stop', commit_interval = 5, commit_every = 0, batch_size = 1000, "
           "batch_ms = 100, wait_for_topics = false, idle_check_ms = 0, batch_time_limit = 10, heap_limit_mb = 256, "
           "join_wait = 0, "
           "kafka = {}, inputs = {}, outputs = {}, "
           "sources = {}, stores = {}, repartitions = {} } for k, v in pairs(x) do s[k] = v end for _, t in ipairs(s.inputs) do "
           "t.key = t.key or 'bytes'; t.value = t.value or 'json'; t.arrays = t.arrays or 'table'; "
           "t.tombstones = false; t.global = false end "
           "return s end)(%s)", expr);
  push_expr(full);
  int rc = ls_spec_read(L, s, err, errlen);
  lua_pop(L, 1);
  return rc;
}

static void test_spec_arrays(void) {
  ls_spec a, b, c;
  char err[256], why[256];
  CHECK(read_spec("{ inputs = { { name = 't', value = 'json', arrays = 'vec' }, { name = 'u' } } }", &a, err,
                  sizeof err) == 0);
  CHECK(a.inputs[0].value_flags == LS_ARRAYS_VEC && a.inputs[1].value_flags == 0);
  CHECK(read_spec("{ inputs = { { name = 't', value = 'json', arrays = 'table' }, { name = 'u' } } }", &b, err,
                  sizeof err) == 0);
  CHECK(b.inputs[0].value_flags == 0);
  CHECK_STR(ls_spec_restart_reason(&a, &b, 1, why, sizeof why),
            "the arrays option of input topic t changed (vec -> table)");
  CHECK(ls_spec_restart_reason(&a, &a, 1, why, sizeof why) == NULL);
  ls_spec_free(&a);
  ls_spec_free(&b);
  CHECK(read_spec("{ inputs = { { name = 't', arrays = 'vecs' } } }", &c, err, sizeof err) == -1);
  CHECK_STR(err, "spec.inputs[1].arrays: unknown value 'vecs'");
  ls_spec_free(&c);
}

/* ---- the other formats ignore the options ---- */

static void test_other_formats(void) {
  char err[256];
  CHECK(decode(LS_FMT_STRING, LS_ARRAYS_VEC, "[1,2]", 5, err) == 0);
  CHECK(lua_check("return v == '[1,2]'"));
  CHECK(decode(LS_FMT_BYTES, LS_ARRAYS_VEC, "[1]", 3, err) == 0);
  CHECK(lua_check("return v == '[1]'"));
  push_vec((const double[]){1}, 1);
  ls_buf b;
  ls_buf_init(&b);
  CHECK(encode_top(LS_FMT_STRING, 0, &b, err) == -1);
  CHECK_STR(err, "cannot encode a cdata as string");
  push_vec((const double[]){1}, 1);
  CHECK(encode_top(LS_FMT_DOUBLE, LS_VEC_EXT, &b, err) == -1);
  CHECK_STR(err, "cannot encode a cdata as double");
  ls_buf_free(&b);
}

int main(int argc, char **argv) {
  if (argc > 1) rng_state = strtoull(argv[1], NULL, 0); /* another seed */
  L = ls_vm_new();
  if (!L || luaL_loadstring(L, PRELUDE) != 0 || lua_pcall(L, 0, 0, 0) != 0) {
    fprintf(stderr, "cannot set up Lua: %s\n", L ? lua_tostring(L, -1) : "no state");
    return 1;
  }
  int top = lua_gettop(L);
  test_json_numeric_arrays();
  test_json_same_errors();
  test_json_encode();
  test_json_round_trips();
  test_mpack_encode();
  test_mpack_decode();
  test_mpack_round_trips();
  test_mpack_same_errors();
  test_other_formats();
  test_spec_arrays();
  CHECK(lua_gettop(L) == top);
  ls_vm_close(L);
  CHECK_DONE();
}
