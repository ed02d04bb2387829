/* test_codec.c - the serializer dispatch (runtime/codec.c).
 *
 * Format names; decode and encode of every format with exact bytes (int and
 * double as Kafka's Long/DoubleSerializer write them); wrong lengths, invalid
 * UTF-8 and unencodable values; the stack and buffer left as they were on
 * errors; the room LS_ROW_WIDTH makes in decoded rows; and the Lua-facing
 * functions, driven by Lua chunks. */
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
#include "luavalue.h"

/* ---- helpers ---- */

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  ls_value_init(L);
  ls_push_null(L);
  lua_setglobal(L, "null");
  return L;
}

static void push_expr(lua_State *L, const char *expr) {
  char code[512];
  snprintf(code, sizeof code, "local ffi = require('ffi') return %s", expr);
  if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "bad expression %s: %s\n", expr, lua_tostring(L, -1));
    abort();
  }
}

/* Encodes a Lua expression in f. Returns the bytes as hex ("00 01"), or as
 * text when as_text, or "error: <message>". Checks the stack is unchanged and
 * a failed encode leaves the buffer's earlier content alone. */
static const char *encode_expr(lua_State *L, ls_format f, const char *expr, int as_text) {
  static char out[1024];
  push_expr(L, expr);
  int top = lua_gettop(L);
  ls_buf b;
  ls_buf_init(&b);
  CHECK(ls_buf_put(&b, "pre", 3) == 0);
  char err[256];
  if (ls_encode(L, -1, f, &b, err, sizeof err)) {
    snprintf(out, sizeof out, "error: %s", err);
    CHECK(b.len == 3);
  } else if (as_text) {
    snprintf(out, sizeof out, "%.*s", (int)(b.len - 3), b.data + 3);
  } else {
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 3; i < b.len && len + 4 < sizeof out; i++)
      len += (size_t)snprintf(out + len, sizeof out - len, i > 3 ? " %02x" : "%02x", (unsigned char)b.data[i]);
  }
  CHECK(memcmp(b.data, "pre", 3) == 0);
  CHECK(lua_gettop(L) == top);
  ls_buf_free(&b);
  lua_pop(L, 1);
  return out;
}

static const char *enc_hex(lua_State *L, ls_format f, const char *expr) { return encode_expr(L, f, expr, 0); }
static const char *enc_text(lua_State *L, ls_format f, const char *expr) { return encode_expr(L, f, expr, 1); }

/* Decodes n bytes in f and evaluates pred with the value as v. */
static int dec_is(lua_State *L, ls_format f, const char *p, size_t n, const char *pred) {
  int top = lua_gettop(L);
  char err[256];
  if (ls_decode(L, f, p, n, err, sizeof err)) {
    fprintf(stderr, "decode failed: %s (want %s)\n", err, pred);
    return 0;
  }
  CHECK(lua_gettop(L) == top + 1);
  char code[512];
  snprintf(code, sizeof code, "local ffi = require('ffi') local v = ... return %s", pred);
  if (luaL_loadstring(L, code) != 0) abort();
  lua_insert(L, -2);
  int ok = lua_pcall(L, 1, 1, 0) == 0 && lua_toboolean(L, -1);
  if (!ok) fprintf(stderr, "predicate failed: %s (%s)\n", pred, lua_tostring(L, -1));
  lua_settop(L, top);
  return ok;
}

/* The decode error for n bytes in f (checking nothing was pushed), or "ok". */
static const char *dec_err(lua_State *L, ls_format f, const char *p, size_t n) {
  static char err[256];
  int top = lua_gettop(L);
  if (ls_decode(L, f, p, n, err, sizeof err) == 0) {
    lua_settop(L, top);
    return "ok";
  }
  CHECK(lua_gettop(L) == top);
  return err;
}

/* Runs a chunk given the codec table as its argument; it must return true. */
static int lua_true(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  if (luaL_loadstring(L, code) != 0) {
    fprintf(stderr, "chunk does not compile: %s\n", lua_tostring(L, -1));
    lua_settop(L, top);
    return 0;
  }
  lua_newtable(L);
  ls_codec_open(L);
  int ok = lua_pcall(L, 1, 1, 0) == 0 && lua_toboolean(L, -1);
  if (!ok) fprintf(stderr, "chunk failed: %s\n", lua_tostring(L, -1));
  lua_settop(L, top);
  return ok;
}

/* ---- format names ---- */

static void test_format_names(void) {
  static const struct { const char *name; ls_format f; } names[] = {
    { "json", LS_FMT_JSON }, { "string", LS_FMT_STRING }, { "bytes", LS_FMT_BYTES },
    { "msgpack", LS_FMT_MSGPACK }, { "int", LS_FMT_INT }, { "double", LS_FMT_DOUBLE },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    ls_format f = (ls_format)-1;
    CHECK(ls_format_parse(names[i].name, &f) == 0 && f == names[i].f);
    CHECK_STR(ls_format_name(names[i].f), names[i].name);
  }
  ls_format f = LS_FMT_BYTES;
  /* Aliases are resolved by the Lua side (init.lua); C takes canonical names only. */
  CHECK(ls_format_parse("str", &f) == -1);
  CHECK(ls_format_parse("integer", &f) == -1);
  CHECK(ls_format_parse("JSON", &f) == -1);
  CHECK(ls_format_parse("", &f) == -1);
  CHECK(ls_format_parse("xml", &f) == -1);
  CHECK(ls_format_parse("json ", &f) == -1);
  CHECK(ls_format_parse(NULL, &f) == -1);
  CHECK(f == LS_FMT_BYTES); /* untouched on failure */
  CHECK_STR(ls_format_name((ls_format)99), "unknown");
}

/* ---- int ---- */

static void test_int(void) {
  lua_State *L = new_state();
  /* decoding: 1, 2, 4 and 8 bytes, big-endian, sign-extended */
  CHECK(dec_is(L, LS_FMT_INT, "\x7f", 1, "v == 127"));
  CHECK(dec_is(L, LS_FMT_INT, "\xff", 1, "v == -1"));
  CHECK(dec_is(L, LS_FMT_INT, "\x80", 1, "v == -128"));
  CHECK(dec_is(L, LS_FMT_INT, "\x01\x00", 2, "v == 256"));
  CHECK(dec_is(L, LS_FMT_INT, "\xff\xfe", 2, "v == -2"));
  CHECK(dec_is(L, LS_FMT_INT, "\x80\x00", 2, "v == -32768"));
  CHECK(dec_is(L, LS_FMT_INT, "\x7f\xff\xff\xff", 4, "v == 2^31 - 1"));
  CHECK(dec_is(L, LS_FMT_INT, "\x80\0\0\0", 4, "v == -2^31"));
  CHECK(dec_is(L, LS_FMT_INT, "\xff\xff\xfe\x0c", 4, "v == -500"));
  CHECK(dec_is(L, LS_FMT_INT, "\0\0\0\0\0\0\0\x01", 8, "v == 1 and type(v) == 'number'"));
  CHECK(dec_is(L, LS_FMT_INT, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, "v == -1"));
  CHECK(dec_is(L, LS_FMT_INT, "\0\x20\0\0\0\0\0\0", 8, "v == 2^53 and type(v) == 'number'"));
  CHECK(dec_is(L, LS_FMT_INT, "\xff\xe0\0\0\0\0\0\0", 8, "v == -2^53 and type(v) == 'number'"));
  CHECK(dec_is(L, LS_FMT_INT, "\0\x20\0\0\0\0\0\x01", 8, "ffi.istype('int64_t', v) and v == ffi.new('int64_t', 2^53) + 1"));
  CHECK(dec_is(L, LS_FMT_INT, "\x80\0\0\0\0\0\0\0", 8, "ffi.istype('int64_t', v) and v == -0x7fffffffffffffffLL - 1"));
  CHECK(dec_is(L, LS_FMT_INT, "\x7f\xff\xff\xff\xff\xff\xff\xff", 8, "ffi.istype('int64_t', v) and v == 0x7fffffffffffffffLL"));
  CHECK_STR(dec_err(L, LS_FMT_INT, "", 0), "int needs 1, 2, 4 or 8 bytes, got 0");
  CHECK_STR(dec_err(L, LS_FMT_INT, "abc", 3), "int needs 1, 2, 4 or 8 bytes, got 3");
  CHECK_STR(dec_err(L, LS_FMT_INT, "abcde", 5), "int needs 1, 2, 4 or 8 bytes, got 5");
  CHECK_STR(dec_err(L, LS_FMT_INT, "abcdefghi", 9), "int needs 1, 2, 4 or 8 bytes, got 9");
  /* encoding: always 8 bytes (LongSerializer). -0 is written tonumber('-0') in
   * these chunks: LuaJIT on arm64 keeps numbers in its dual-number mode, where
   * the literal -0.0 is the integer 0 (x86-64 has a double -0); tonumber('-0')
   * is the double -0 everywhere. */
  CHECK_STR(enc_hex(L, LS_FMT_INT, "1"), "00 00 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "0"), "00 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "tonumber('-0')"), "00 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "-1"), "ff ff ff ff ff ff ff ff");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "300"), "00 00 00 00 00 00 01 2c");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "2^53"), "00 20 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "-2^63"), "80 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "ffi.new('int64_t', 2^53) + 1"), "00 20 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "-0x7fffffffffffffffLL - 1"), "80 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "0x7fffffffffffffffULL"), "7f ff ff ff ff ff ff ff");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "0xffffffffffffffffULL"),
            "error: cannot encode 18446744073709551615 as int: out of int64 range");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "1.5"), "error: cannot encode 1.5 as int: not an integer");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "2^63"), "error: cannot encode 9223372036854776000 as int: out of int64 range");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "1/0"), "error: cannot encode inf as int: out of int64 range");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "0/0"), "error: cannot encode nan as int: not an integer");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "'1'"), "error: cannot encode a string as int");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "nil"), "error: cannot encode nil as int");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "null"), "error: cannot encode null as int");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "{}"), "error: cannot encode a table as int");
  CHECK_STR(enc_hex(L, LS_FMT_INT, "ffi.new('double', 1)"), "error: cannot encode a cdata as int");
  lua_close(L);
}

/* ---- double ---- */

static void test_double(void) {
  lua_State *L = new_state();
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "1.5"), "3f f8 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "-2"), "c0 00 00 00 00 00 00 00");
  /* -0 as tonumber('-0'), not -0.0: see test_int */
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "tonumber('-0')"), "80 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "1/0"), "7f f0 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "5e-324"), "00 00 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "ffi.new('int64_t', 2^53) + 1"), "43 40 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "0xffffffffffffffffULL"), "43 f0 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "'1.5'"), "error: cannot encode a string as double");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "nil"), "error: cannot encode nil as double");
  CHECK_STR(enc_hex(L, LS_FMT_DOUBLE, "true"), "error: cannot encode a boolean as double");
  CHECK(dec_is(L, LS_FMT_DOUBLE, "\x3f\xf8\0\0\0\0\0\0", 8, "v == 1.5"));
  CHECK(dec_is(L, LS_FMT_DOUBLE, "\x80\0\0\0\0\0\0\0", 8, "v == 0 and 1 / v < 0"));
  CHECK(dec_is(L, LS_FMT_DOUBLE, "\xff\xf0\0\0\0\0\0\0", 8, "v == -1/0"));
  CHECK(dec_is(L, LS_FMT_DOUBLE, "\x7f\xf8\0\0\0\0\0\0", 8, "v ~= v"));
  CHECK(dec_is(L, LS_FMT_DOUBLE, "\x40\x09\x21\xfb\x54\x44\x2d\x18", 8, "v == math.pi"));
  CHECK_STR(dec_err(L, LS_FMT_DOUBLE, "\x3f\xf8\0\0", 4), "double needs 8 bytes, got 4");
  CHECK_STR(dec_err(L, LS_FMT_DOUBLE, "", 0), "double needs 8 bytes, got 0");
  CHECK_STR(dec_err(L, LS_FMT_DOUBLE, "123456789", 9), "double needs 8 bytes, got 9");
  lua_close(L);
}

/* ---- string ---- */

static void test_string(void) {
  lua_State *L = new_state();
  /* valid UTF-8, including the edges of each range */
  static const char *const valid[] = {
    "", "hello", "h\xc3\xa9llo", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc2\x80", "\xdf\xbf",
    "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
    "\xf4\x8f\xbf\xbf", "a\0b",
  };
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    size_t n = (i == sizeof valid / sizeof valid[0] - 1) ? 3 : strlen(valid[i]);
    CHECK_STR(dec_err(L, LS_FMT_STRING, valid[i], n), "ok");
  }
  CHECK(dec_is(L, LS_FMT_STRING, "h\xc3\xa9llo", 6, "v == 'h\\195\\169llo'"));
  CHECK(dec_is(L, LS_FMT_STRING, NULL, 0, "v == ''"));
  /* invalid: the offset is where the bad sequence starts */
  static const struct { const char *s; const char *err; } invalid[] = {
    { "\xff", "invalid UTF-8 at byte 0" },
    { "\x80", "invalid UTF-8 at byte 0" },
    { "ab\xc3", "invalid UTF-8 at byte 2" },
    { "\xc0\xaf", "invalid UTF-8 at byte 0" },         /* overlong '/' */
    { "\xc1\xbf", "invalid UTF-8 at byte 0" },         /* overlong */
    { "\xe0\x80\xaf", "invalid UTF-8 at byte 0" },     /* overlong */
    { "x\xed\xa0\x80", "invalid UTF-8 at byte 1" },    /* surrogate U+D800 */
    { "\xf0\x80\x80\xaf", "invalid UTF-8 at byte 0" }, /* overlong */
    { "\xf4\x90\x80\x80", "invalid UTF-8 at byte 0" }, /* above U+10FFFF */
    { "\xf5\x80\x80\x80", "invalid UTF-8 at byte 0" },
    { "\xe2\x82", "invalid UTF-8 at byte 0" },
    { "\xe2\x28\xa1", "invalid UTF-8 at byte 0" },
    { "ok\xf0\x9f\x98", "invalid UTF-8 at byte 2" },
    { "\xc3\xa9\xe2\x82\xac\xc3", "invalid UTF-8 at byte 5" },
  };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
    CHECK_STR(dec_err(L, LS_FMT_STRING, invalid[i].s, strlen(invalid[i].s)), invalid[i].err);
  /* encoding strings and numbers */
  CHECK_STR(enc_text(L, LS_FMT_STRING, "'abc'"), "abc");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "'h\\195\\169'"), "h\xc3\xa9");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "'a\\255'"), "error: invalid UTF-8 at byte 1");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "42"), "42");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "-7"), "-7");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "1.5"), "1.5");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "0.1"), "0.1");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "1/3"), "0.3333333333333333");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "1e15"), "1000000000000000");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "2^53"), "9007199254740992");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "2^60"), "1152921504606846976");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "-2^63"), "-9223372036854775808");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "2^63"), "9223372036854776000");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "1e300"), "1e+300");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "5e-7"), "5e-7");
  /* -0 as tonumber('-0'), not -0.0: see test_int */
  CHECK_STR(enc_text(L, LS_FMT_STRING, "tonumber('-0')"), "-0");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "1/0"), "inf");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "-1/0"), "-inf");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "0/0"), "nan");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "ffi.new('int64_t', 2^53) + 1"), "9007199254740993");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "-0x7fffffffffffffffLL - 1"), "-9223372036854775808");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "0xffffffffffffffffULL"), "18446744073709551615");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "nil"), "error: cannot encode nil as string");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "null"), "error: cannot encode null as string");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "true"), "error: cannot encode a boolean as string");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "{}"), "error: cannot encode a table as string");
  CHECK_STR(enc_text(L, LS_FMT_STRING, "print"), "error: cannot encode a function as string");
  lua_close(L);
}

/* ---- bytes ---- */

static void test_bytes(void) {
  lua_State *L = new_state();
  CHECK(dec_is(L, LS_FMT_BYTES, "\0\xff\x80", 3, "v == '\\0\\255\\128'"));
  CHECK(dec_is(L, LS_FMT_BYTES, "", 0, "v == ''"));
  CHECK(dec_is(L, LS_FMT_BYTES, NULL, 0, "v == ''"));
  CHECK_STR(enc_hex(L, LS_FMT_BYTES, "'\\0\\255'"), "00 ff");
  CHECK_STR(enc_hex(L, LS_FMT_BYTES, "''"), "");
  /* an empty value into a buffer that has never held anything */
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  lua_pushliteral(L, "");
  CHECK(ls_encode(L, -1, LS_FMT_BYTES, &b, err, sizeof err) == 0 && b.len == 0);
  CHECK(ls_encode(L, -1, LS_FMT_STRING, &b, err, sizeof err) == 0 && b.len == 0);
  lua_pop(L, 1);
  ls_buf_free(&b);
  CHECK_STR(enc_hex(L, LS_FMT_BYTES, "1"), "error: cannot encode a number as bytes");
  CHECK_STR(enc_hex(L, LS_FMT_BYTES, "nil"), "error: cannot encode nil as bytes");
  CHECK_STR(enc_hex(L, LS_FMT_BYTES, "null"), "error: cannot encode null as bytes");
  lua_close(L);
}

/* ---- msgpack and json through the dispatch ---- */

static void test_msgpack(void) {
  lua_State *L = new_state();
  CHECK_STR(enc_hex(L, LS_FMT_MSGPACK, "{1, 2, 3}"), "93 01 02 03");
  CHECK_STR(enc_hex(L, LS_FMT_MSGPACK, "{a = {print}}"), "error: cannot encode a function at $.a[0]");
  CHECK(dec_is(L, LS_FMT_MSGPACK, "\x93\x01\x02\x03", 4, "#v == 3 and v[3] == 3 and getmetatable(v) ~= nil"));
  CHECK(dec_is(L, LS_FMT_MSGPACK, "\xc0", 1, "v == null"));
  CHECK_STR(dec_err(L, LS_FMT_MSGPACK, "\xc1", 1), "invalid byte 0xc1 at byte 0");
  CHECK_STR(dec_err(L, LS_FMT_MSGPACK, "\x01\x02", 2), "trailing bytes at byte 1");
  lua_close(L);
}

static void test_json(void) {
  lua_State *L = new_state();
  CHECK_STR(enc_text(L, LS_FMT_JSON, "{1, 2.5, 'x'}"), "[1,2.5,\"x\"]");
  CHECK_STR(enc_text(L, LS_FMT_JSON, "{}"), "{}");
  CHECK(dec_is(L, LS_FMT_JSON, "{\"a\":[1,null]}", 14, "v.a[1] == 1 and v.a[2] == null and getmetatable(v.a) ~= nil"));
  CHECK(dec_is(L, LS_FMT_JSON, "[]", 2, "next(v) == nil and getmetatable(v) ~= nil"));
  CHECK(strncmp(dec_err(L, LS_FMT_JSON, "[1,", 3), "ok", 2) != 0);
  CHECK(strncmp(enc_text(L, LS_FMT_JSON, "{f = print}"), "error: ", 7) == 0);
  lua_close(L);
}

/* ---- the Lua-facing functions ---- */

static const char LUA_TESTS[] =
    "local c = ...\n"
    "assert(c.encode('int', 1) == '\\0\\0\\0\\0\\0\\0\\0\\1')\n"
    "assert(c.encode('int', -1) == string.rep('\\255', 8))\n"
    "assert(not pcall(c.encode, 'integer', -1) and not pcall(c.decode, 'str', 'x'))\n"
    "assert(c.decode('int', '\\255\\254') == -2)\n"
    "assert(c.decode('double', c.encode('double', 1.5)) == 1.5)\n"
    "assert(c.encode('double', 1.5) == '\\63\\248\\0\\0\\0\\0\\0\\0')\n"
    "assert(c.encode('string', 42) == '42' and c.encode('string', 'x') == 'x')\n"
    "assert(c.decode('string', 'h\\195\\169') == 'h\\195\\169')\n"
    "assert(c.encode('bytes', '\\0\\255') == '\\0\\255' and c.decode('bytes', '\\0') == '\\0')\n"
    "assert(c.encode('msgpack', {1, 2, 3}) == '\\147\\1\\2\\3')\n"
    "assert(c.encode('msgpack', c.array()) == '\\144' and c.encode('msgpack', {}) == '\\128')\n"
    "assert(c.encode('msgpack') == '\\192' and c.encode('msgpack', c.null) == '\\192')\n"
    "assert(c.decode('msgpack', '\\192') == c.null)\n"
    "assert(type(c.null) == 'userdata' and getmetatable(c.array_mt) == nil)\n"
    "local a = c.array()\n"
    "assert(getmetatable(a) == c.array_mt and next(a) == nil)\n"
    "local t = {1, 2}\n"
    "assert(c.array(t) == t and getmetatable(t) == c.array_mt)\n"
    "assert(c.array(nil) ~= nil and getmetatable(c.array(nil)) == c.array_mt)\n"
    "assert(getmetatable(c.decode('msgpack', '\\145\\1')) == c.array_mt)\n"
    "assert(getmetatable(c.decode('msgpack', '\\129\\1\\1')) == nil)\n"
    "local ok, e = pcall(c.encode, 'msgpack', {f = print})\n"
    "assert(not ok and e == 'encode msgpack: cannot encode a function at $.f', e)\n"
    "ok, e = pcall(c.decode, 'int', 'abc')\n"
    "assert(not ok and e == 'decode int: int needs 1, 2, 4 or 8 bytes, got 3', e)\n"
    "ok, e = pcall(c.decode, 'string', '\\255')\n"
    "assert(not ok and e == 'decode string: invalid UTF-8 at byte 0', e)\n"
    "ok, e = pcall(c.decode, 'msgpack', '')\n"
    "assert(not ok and e == 'decode msgpack: empty input', e)\n"
    "ok, e = pcall(c.encode, 'string', nil)\n"
    "assert(not ok and e == 'encode string: cannot encode nil as string', e)\n"
    "ok, e = pcall(c.encode, 'xml', 1)\n"
    "assert(not ok and e:find(\"unknown format 'xml'\", 1, true), e)\n"
    "ok, e = pcall(c.decode, 'xml', '')\n"
    "assert(not ok and e:find(\"unknown format 'xml'\", 1, true), e)\n"
    "assert(not pcall(c.encode, nil, 1) and not pcall(c.decode, 'bytes', {}))\n"
    "assert(not pcall(c.array, 5))\n"
    /* the reused output buffer: big, then small, then after an error */
    "local big = string.rep('x', 3000000)\n"
    "assert(c.encode('bytes', big) == big and c.encode('bytes', 'y') == 'y')\n"
    "assert(not pcall(c.encode, 'bytes', 1) and c.encode('bytes', 'z') == 'z')\n"
    "for i = 1, 1000 do assert(c.decode('msgpack', c.encode('msgpack', {i, tostring(i)}))[1] == i) end\n"
    "return true\n";

static const char LUA_JSON_TESTS[] =
    "local c = ...\n"
    "local a = c.decode('json', c.encode('json', c.array()))\n"
    "assert(getmetatable(a) == c.array_mt and next(a) == nil)\n"
    "assert(c.encode('json', c.array()) == '[]' and c.encode('json', {}) == '{}')\n"
    "assert(c.decode('json', 'null') == c.null)\n"
    "local v = c.decode('json', c.encode('json', {a = {1, c.null, 'x'}}))\n"
    "assert(v.a[1] == 1 and v.a[2] == c.null and v.a[3] == 'x')\n"
    "local ok, e = pcall(c.encode, 'json', {f = print})\n"
    "assert(not ok and e:find('^encode json: '), e)\n"
    "ok, e = pcall(c.decode, 'json', '{')\n"
    "assert(not ok and e:find('^decode json: '), e)\n"
    "return true\n";

static void test_lua_functions(void) {
  lua_State *L = new_state();
  CHECK(lua_true(L, LUA_TESTS));
  CHECK(lua_true(L, LUA_JSON_TESTS));
  /* ls_codec_open adds to the table on top and leaves it there */
  lua_newtable(L);
  ls_codec_open(L);
  CHECK(lua_gettop(L) == 1 && lua_istable(L, 1));
  static const char *const fields[] = { "encode", "decode", "null", "array_mt", "array" };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    lua_getfield(L, 1, fields[i]);
    CHECK(!lua_isnil(L, -1) || strcmp(fields[i], "null") == 0);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "null");
  CHECK(ls_is_null(L, -1));
  lua_close(L);
}

/* ---- LS_ROW_WIDTH: room for the columns a pipeline adds ---- */

static double heap_bytes(lua_State *L) { return lua_gc(L, LUA_GCCOUNT, 0) * 1024.0 + lua_gc(L, LUA_GCCOUNTB, 0); }

/* Decodes the object p[0..n) in f with flags (the collector stopped), then
 * adds the fields x1..x<add> to it. Sets the Lua heap bytes each part took
 * and returns 1, or 0 when the decode failed. The same document is decoded
 * once first, so that the JSON decoder's size hint (the last document's
 * field count) is the same in every call. */
static int width_cost(lua_State *L, ls_format f, const char *p, size_t n, int flags, int add,
                      double *dec_bytes, double *add_bytes) {
  char err[256], name[16];
  int top = lua_gettop(L);
  if (ls_decode_opts(L, f, flags, p, n, err, sizeof err)) return 0;
  for (int i = 1; i <= add; i++) { /* the keys exist beforehand: pushing them allocates nothing */
    snprintf(name, sizeof name, "x%d", i);
    lua_pushstring(L, name);
  }
  lua_gc(L, LUA_GCSTOP, 0);
  double b0 = heap_bytes(L);
  int rc = ls_decode_opts(L, f, flags, p, n, err, sizeof err);
  double b1 = heap_bytes(L);
  for (int i = 1; rc == 0 && i <= add; i++) {
    lua_pushvalue(L, top + 1 + i);
    lua_pushinteger(L, i);
    lua_rawset(L, -3);
  }
  double b2 = heap_bytes(L);
  lua_gc(L, LUA_GCRESTART, 0);
  lua_settop(L, top);
  *dec_bytes = b1 - b0;
  *add_bytes = b2 - b1;
  return rc == 0;
}

static void test_row_width(void) {
  CHECK(LS_ROW_WIDTH_OF(LS_ROW_WIDTH(9)) == 9);
  CHECK(LS_ROW_WIDTH_OF(LS_ROW_WIDTH(1000)) == LS_ROW_WIDTH_MAX);
  CHECK(LS_ROW_WIDTH(-3) == 0);
  CHECK(LS_ROW_WIDTH_OF(LS_ARRAYS_VEC | LS_ROW_WIDTH(7)) == 7);
  CHECK((LS_ROW_WIDTH(LS_ROW_WIDTH_MAX) & (LS_ARRAYS_VEC | LS_VEC_EXT)) == 0);
  lua_State *L = new_state();
  static const char json[] = "{\"device\":\"p-1\",\"ts\":17,\"gX\":0.5,\"gY\":-1,\"gZ\":2}";
  static const char mpack[] = "\x85\xa6" "device" "\xa3p-1\xa2ts\x11\xa2gX\xcb\x3f\xe0\0\0\0\0\0\0"
                              "\xa2gY\xff\xa2gZ\x02";
  const struct { ls_format f; const char *p; size_t n; } docs[] = {
      {LS_FMT_JSON, json, sizeof json - 1}, {LS_FMT_MSGPACK, mpack, sizeof mpack - 1}};
  for (int d = 0; d < 2; d++) {
    double dec0, add0, dec9, add9, dec3, add3;
    CHECK(width_cost(L, docs[d].f, docs[d].p, docs[d].n, 0, 4, &dec0, &add0));
    CHECK(width_cost(L, docs[d].f, docs[d].p, docs[d].n, LS_ROW_WIDTH(9), 4, &dec9, &add9));
    CHECK(width_cost(L, docs[d].f, docs[d].p, docs[d].n, LS_ROW_WIDTH(3), 4, &dec3, &add3));
    /* 5 fields: the table grows when 4 more come, unless made with room for 9 */
    CHECK(add0 > 0);
    CHECK(add9 == 0);
    CHECK(dec9 > dec0);
    /* a width below the field count changes nothing */
    CHECK(dec3 == dec0 && add3 == add0);
    /* the values are the same */
    CHECK(dec_is(L, docs[d].f, docs[d].p, docs[d].n,
                 "v.device == 'p-1' and v.ts == 17 and v.gX == 0.5 and v.gY == -1 and v.gZ == 2"));
  }
  /* only the top level gets the room */
  static const char nested[] = "{\"a\":{\"b\":1},\"v\":[1,2]}";
  char err[256];
  for (int pass = 0; pass < 2; pass++) { /* the second with the size hints of the first */
    lua_settop(L, 0);
    CHECK(ls_decode_opts(L, LS_FMT_JSON, LS_ROW_WIDTH(40), nested, sizeof nested - 1, err, sizeof err) == 0);
  }
  lua_getfield(L, -1, "v");
  CHECK(lua_istable(L, -1) && lua_objlen(L, -1) == 2 && lua_getmetatable(L, -1)); /* an array */
  lua_pop(L, 2);
  lua_getfield(L, -1, "a");
  const char *more[] = {"c", "d", "e"};
  lua_gc(L, LUA_GCSTOP, 0);
  for (int i = 0; i < 3; i++) lua_pushstring(L, more[i]); /* made before measuring, kept (no collector) */
  lua_pop(L, 3);
  double b0 = heap_bytes(L);
  for (int i = 0; i < 3; i++) {
    lua_pushstring(L, more[i]);
    lua_pushinteger(L, i);
    lua_rawset(L, -3);
  }
  CHECK(heap_bytes(L) > b0); /* a's table had room for its one field (two slots), not four */
  lua_gc(L, LUA_GCRESTART, 0);
  lua_settop(L, 0);
  lua_close(L);
}

int main(void) {
  test_format_names();
  test_int();
  test_double();
  test_string();
  test_bytes();
  test_msgpack();
  test_json();
  test_row_width();
  test_lua_functions();
  CHECK_DONE();
}
