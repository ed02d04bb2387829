/* test_mpack.c - MessagePack <-> Lua values (runtime/mpack.c).
 *
 * Exact bytes of known encodings, decoding of every wire form, round trips of
 * every value type, error messages and paths, and malformed input: every
 * truncation of valid encodings, mutated encodings and random bytes must give
 * an error (or a value), never a crash, an over-read or a changed stack. */
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
#include "lua_vm.h"
#include "luavalue.h"
#include "mpack.h"

/* ---- helpers ---- */

/* enc(v) -> string and dec(s) -> value for the Lua chunks; both raise. */
static int l_enc(lua_State *L) {
  lua_settop(L, 1);
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  int rc = ls_mpack_encode(L, 1, &b, err, sizeof err);
  if (rc == 0) lua_pushlstring(L, b.len ? b.data : "", b.len);
  ls_buf_free(&b);
  if (rc) return luaL_error(L, "%s", err);
  return 1;
}

static int l_dec(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[256];
  if (ls_mpack_decode(L, s, n, err, sizeof err)) return luaL_error(L, "%s", err);
  return 1;
}

static const char PRELUDE[] =
    "ffi = require('ffi')\n"
    "null = ...\n"
    "function deq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'table' then\n"
    "    for k, v in pairs(a) do if not deq(v, b[k]) then return false end end\n"
    "    for k in pairs(b) do if a[k] == nil then return false end end\n"
    "    return true\n"
    "  end\n"
    "  if type(a) == 'cdata' then return ffi.typeof(a) == ffi.typeof(b) and a == b end\n"
    "  if a ~= a then return b ~= b end\n"
    "  return a == b\n"
    "end\n"
    "function hex(s)\n"
    "  return (s:gsub('.', function(c) return string.format('%02x ', c:byte()) end):gsub(' $', ''))\n"
    "end\n"
    "function rt(v) return dec(enc(v)) end\n"
    "function marked(t) return getmetatable(t) ~= nil and getmetatable(t) == getmetatable(dec('\\144')) end\n";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  ls_value_init(L);
  /* luastream.vec must be loadable: the vec ext type decodes to a vec */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua", ls_vm_lua_dir());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_register(L, "enc", l_enc);
  lua_register(L, "dec", l_dec);
  if (luaL_loadstring(L, PRELUDE) != 0) abort();
  ls_push_null(L);
  lua_call(L, 1, 0);
  return L;
}

/* Runs a chunk that must return true; reports its error otherwise. */
static int lua_true(lua_State *L, const char *code) {
  int ok = luaL_loadstring(L, code) == 0 && lua_pcall(L, 0, 1, 0) == 0 && lua_toboolean(L, -1);
  if (!ok) fprintf(stderr, "chunk failed: %s\n  %s\n", lua_tostring(L, -1), code);
  lua_pop(L, 1);
  return ok;
}

/* Pushes the value of a Lua expression. */
static void push_expr(lua_State *L, const char *expr) {
  char code[512];
  snprintf(code, sizeof code, "return %s", expr);
  if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "bad expression %s: %s\n", expr, lua_tostring(L, -1));
    abort();
  }
}

static void to_hex(const char *p, size_t n, char *out, size_t cap) {
  size_t len = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && len + 4 < cap; i++)
    len += (size_t)snprintf(out + len, cap - len, i ? " %02x" : "%02x", (unsigned char)p[i]);
}

/* The encoding of a Lua expression, as hex ("93 01 02 03"), or the error. */
static const char *enc_hex(lua_State *L, const char *expr) {
  static char out[1024];
  push_expr(L, expr);
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  if (ls_mpack_encode(L, -1, &b, err, sizeof err)) snprintf(out, sizeof out, "error: %s", err);
  else to_hex(b.data, b.len, out, sizeof out);
  ls_buf_free(&b);
  lua_pop(L, 1);
  return out;
}

/* Decodes n bytes; returns 0 and leaves the value on the stack, or -1 with the
 * error in err and the stack checked unchanged. */
static int dec_raw(lua_State *L, const char *p, size_t n, char *err, size_t errlen) {
  int top = lua_gettop(L);
  int rc = ls_mpack_decode(L, p, n, err, errlen);
  if (rc) CHECK(lua_gettop(L) == top);
  else CHECK(lua_gettop(L) == top + 1);
  return rc;
}

/* The decode error for the given bytes, or "ok". */
static const char *dec_err(lua_State *L, const char *p, size_t n) {
  static char err[256];
  if (dec_raw(L, p, n, err, sizeof err) == 0) {
    lua_pop(L, 1);
    return "ok";
  }
  return err;
}

/* ---- exact encodings ---- */

static void test_encode_bytes(void) {
  lua_State *L = new_state();
  CHECK_STR(enc_hex(L, "{1, 2, 3}"), "93 01 02 03");
  CHECK_STR(enc_hex(L, "300"), "cd 01 2c");
  CHECK_STR(enc_hex(L, "-1"), "ff");
  CHECK_STR(enc_hex(L, "0"), "00");
  CHECK_STR(enc_hex(L, "127"), "7f");
  CHECK_STR(enc_hex(L, "128"), "cc 80");
  CHECK_STR(enc_hex(L, "-32"), "e0");
  CHECK_STR(enc_hex(L, "-33"), "d0 df");
  CHECK_STR(enc_hex(L, "-129"), "d1 ff 7f");
  CHECK_STR(enc_hex(L, "65536"), "ce 00 01 00 00");
  CHECK_STR(enc_hex(L, "2^32"), "cf 00 00 00 01 00 00 00 00");
  CHECK_STR(enc_hex(L, "-2^31 - 1"), "d3 ff ff ff ff 7f ff ff ff");
  CHECK_STR(enc_hex(L, "2^53"), "cf 00 20 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "-2^53"), "d3 ff e0 00 00 00 00 00 00");
  /* integral doubles beyond 2^53 stay doubles (they decode back as numbers) */
  CHECK_STR(enc_hex(L, "2^53 + 2"), "cb 43 40 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, "-2^63"), "cb c3 e0 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "2^63"), "cb 43 e0 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "1.5"), "cb 3f f8 00 00 00 00 00 00");
  /* not the literal -0.0: LuaJIT on arm64 (dual-number mode) reads it as the
   * integer 0; tonumber('-0') is the double -0 on every architecture */
  CHECK_STR(enc_hex(L, "tonumber('-0')"), "cb 80 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "1/0"), "cb 7f f0 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "true"), "c3");
  CHECK_STR(enc_hex(L, "false"), "c2");
  CHECK_STR(enc_hex(L, "nil"), "c0");
  CHECK_STR(enc_hex(L, "null"), "c0");
  CHECK_STR(enc_hex(L, "'abc'"), "a3 61 62 63");
  CHECK_STR(enc_hex(L, "''"), "a0");
  CHECK(strncmp(enc_hex(L, "string.rep('x', 32)"), "d9 20 78", 8) == 0);
  CHECK(strncmp(enc_hex(L, "string.rep('x', 256)"), "da 01 00 78", 11) == 0);
  CHECK_STR(enc_hex(L, "{}"), "80");
  CHECK_STR(enc_hex(L, "setmetatable({}, getmetatable(dec('\\144')))"), "90");
  CHECK_STR(enc_hex(L, "{a = 1}"), "81 a1 61 01");
  CHECK_STR(enc_hex(L, "{[true] = false}"), "81 c3 c2");
  CHECK_STR(enc_hex(L, "{[1.5] = 1}"), "81 cb 3f f8 00 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, "{1, null, 3}"), "93 01 c0 03");
  CHECK_STR(enc_hex(L, "{{}, {{}}}"), "92 80 91 80");
  /* int64 / uint64 cdata keep their exact value */
  CHECK_STR(enc_hex(L, "ffi.new('int64_t', 2^53) + 1"), "cf 00 20 00 00 00 00 00 01");
  CHECK_STR(enc_hex(L, "-(ffi.new('int64_t', 2^53) + 1)"), "d3 ff df ff ff ff ff ff ff");
  CHECK_STR(enc_hex(L, "-0x7fffffffffffffffLL - 1"), "d3 80 00 00 00 00 00 00 00");
  CHECK_STR(enc_hex(L, "0x7fffffffffffffffLL"), "cf 7f ff ff ff ff ff ff ff");
  CHECK_STR(enc_hex(L, "0xffffffffffffffffULL"), "cf ff ff ff ff ff ff ff ff");
  CHECK_STR(enc_hex(L, "5LL"), "05");
  CHECK_STR(enc_hex(L, "5ULL"), "05");
  lua_close(L);
}

static void test_encode_appends(void) {
  lua_State *L = new_state();
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  CHECK(ls_buf_put(&b, "xy", 2) == 0);
  lua_pushnumber(L, 1);
  lua_pushnumber(L, 300);
  CHECK(ls_mpack_encode(L, -2, &b, err, sizeof err) == 0); /* relative index */
  CHECK(ls_mpack_encode(L, 2, &b, err, sizeof err) == 0);
  CHECK(b.len == 6 && memcmp(b.data, "xy\x01\xcd\x01\x2c", 6) == 0);
  CHECK(lua_gettop(L) == 2);
  /* a failed encode leaves the buffer and the stack as they were */
  push_expr(L, "{1, 2, {a = print}}");
  CHECK(ls_mpack_encode(L, -1, &b, err, sizeof err) == -1);
  CHECK(b.len == 6);
  CHECK(lua_gettop(L) == 3);
  ls_buf_free(&b);
  lua_close(L);
}

/* ---- decoding each wire form ---- */

static void test_decode_forms(void) {
  lua_State *L = new_state();
  CHECK(lua_true(L, "local t = dec('\\147\\1\\2\\3') return deq(t, {1, 2, 3}) and marked(t)"));
  CHECK(lua_true(L, "local t = dec('\\128') return next(t) == nil and getmetatable(t) == nil"));
  CHECK(lua_true(L, "local t = dec('\\144') return next(t) == nil and getmetatable(t) ~= nil"));
  /* integers */
  CHECK(lua_true(L, "return dec('\\204\\255') == 255 and dec('\\205\\1\\44') == 300"));
  CHECK(lua_true(L, "return dec('\\206\\255\\255\\255\\255') == 2^32 - 1"));
  CHECK(lua_true(L, "return dec('\\208\\128') == -128 and dec('\\209\\255\\0') == -256"));
  CHECK(lua_true(L, "return dec('\\210\\128\\0\\0\\0') == -2^31 and dec('\\224') == -32"));
  CHECK(lua_true(L, "return dec('\\211\\255\\255\\255\\255\\255\\255\\255\\255') == -1"));
  CHECK(lua_true(L, "return dec('\\207\\0\\32\\0\\0\\0\\0\\0\\0') == 2^53"));
  CHECK(lua_true(L, "return dec('\\211\\255\\224\\0\\0\\0\\0\\0\\0') == -2^53"));
  CHECK(lua_true(L, "return deq(dec('\\207\\0\\32\\0\\0\\0\\0\\0\\1'), ffi.new('int64_t', 2^53) + 1)"));
  CHECK(lua_true(L, "return deq(dec('\\211\\255\\223\\255\\255\\255\\255\\255\\255'), -(ffi.new('int64_t', 2^53) + 1))"));
  CHECK(lua_true(L, "return deq(dec('\\211\\128\\0\\0\\0\\0\\0\\0\\0'), -0x7fffffffffffffffLL - 1)"));
  CHECK(lua_true(L, "return deq(dec('\\207\\127\\255\\255\\255\\255\\255\\255\\255'), 0x7fffffffffffffffLL)"));
  CHECK(lua_true(L, "return deq(dec('\\207\\128\\0\\0\\0\\0\\0\\0\\0'), 0x8000000000000000ULL)"));
  CHECK(lua_true(L, "return deq(dec('\\207\\255\\255\\255\\255\\255\\255\\255\\255'), 0xffffffffffffffffULL)"));
  /* floats, float32 included */
  CHECK(lua_true(L, "return dec('\\202\\63\\192\\0\\0') == 1.5"));
  CHECK(lua_true(L, "return dec('\\202\\61\\204\\204\\205') == tonumber(ffi.new('float', 0.1))"));
  CHECK(lua_true(L, "return dec('\\202\\255\\128\\0\\0') == -1/0"));
  CHECK(lua_true(L, "local v = dec('\\202\\127\\192\\0\\0') return v ~= v"));
  CHECK(lua_true(L, "return dec('\\203\\63\\248\\0\\0\\0\\0\\0\\0') == 1.5"));
  /* strings and binaries */
  CHECK(lua_true(L, "return dec('\\196\\3abc') == 'abc' and dec('\\197\\0\\3abc') == 'abc'"));
  CHECK(lua_true(L, "return dec('\\198\\0\\0\\0\\3abc') == 'abc' and dec('\\217\\3abc') == 'abc'"));
  CHECK(lua_true(L, "return dec('\\218\\0\\3abc') == 'abc' and dec('\\219\\0\\0\\0\\3abc') == 'abc'"));
  CHECK(lua_true(L, "return dec('\\162\\255\\0') == '\\255\\0' and dec('\\160') == ''"));
  /* sized containers */
  CHECK(lua_true(L, "local t = dec('\\220\\0\\2\\1\\2') return deq(t, {1, 2}) and marked(t)"));
  CHECK(lua_true(L, "return deq(dec('\\221\\0\\0\\0\\1\\192'), {null})"));
  CHECK(lua_true(L, "return deq(dec('\\222\\0\\1\\161a\\1'), {a = 1})"));
  CHECK(lua_true(L, "return deq(dec('\\223\\0\\0\\0\\1\\161a\\1'), {a = 1})"));
  /* map keys of every kind but nil and NaN */
  CHECK(lua_true(L, "local t = dec('\\132\\1\\161a\\195\\194\\203\\63\\248\\0\\0\\0\\0\\0\\0\\0\\145\\1\\2')\n"
                    "if t[1] ~= 'a' or t[true] ~= false or t[1.5] ~= 0 then return false end\n"
                    "for k, v in pairs(t) do if type(k) == 'table' then return k[1] == 1 and v == 2 end end"));
  /* bools, nil */
  CHECK(lua_true(L, "return dec('\\195') == true and dec('\\194') == false and dec('\\192') == null"));
  char err[256];
  CHECK(dec_raw(L, "\xc0", 1, err, sizeof err) == 0 && ls_is_null(L, -1));
  lua_pop(L, 1);
  lua_close(L);
}

/* ---- round trips ---- */

static void test_round_trips(void) {
  lua_State *L = new_state();
  static const char *const values[] = {
    "0", "1", "-1", "127", "128", "255", "256", "-32", "-33", "-128", "-129", "65535", "65536",
    "-32768", "-32769", "2^31", "-2^31", "2^32", "-2^32 - 1", "2^53", "-2^53", "2^60", "-2^63",
    "0.1", "-2.5", "1e300", "-1e-300", "5e-324", "1/0", "-1/0", "0/0", "2^63", "2^64", "-2^63 * 2",
    "true", "false", "null", "''", "'abc'", "'a\\0b\\255'", "string.rep('x', 31)",
    "string.rep('y', 255)", "string.rep('z', 65535)", "string.rep('w', 70000)",
    "{1, 2, 3}", "{a = 1, b = {c = {true, false, null}}}", "{{{{{}}}}}", "{[1] = 'a', [3] = 'c'}",
    "{[-1] = 1, [0] = 2, [1.5] = 3}", "{[true] = 'yes', [false] = 'no'}", "{1, null, 3}",
    "{nested = {list = {1, {x = 2}, 'three', {4.5}}, empty = {}, map = {['a b'] = 1}}}",
    "ffi.new('int64_t', 2^53) + 1", "-(ffi.new('int64_t', 2^53) + 1)", "-0x7fffffffffffffffLL - 1",
    "0x7fffffffffffffffLL", "0x8000000000000000ULL", "0xffffffffffffffffULL",
    "{big = 0xffffffffffffffffULL, small = -0x7fffffffffffffffLL - 1}",
  };
  char code[600];
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    snprintf(code, sizeof code, "local v = %s return deq(rt(v), v)", values[i]);
    CHECK(lua_true(L, code));
  }
  /* a big array and a big map */
  CHECK(lua_true(L, "local t = {} for i = 1, 100000 do t[i] = i * 0.5 end return deq(rt(t), t)"));
  CHECK(lua_true(L, "local t = {} for i = 1, 20000 do t['k' .. i] = {i} end return deq(rt(t), t)"));
  /* empty arrays stay arrays, empty maps stay maps, at any depth */
  CHECK(lua_true(L, "local a = dec('\\144') local t = rt({x = a, y = {}, z = {a}})\n"
                    "return marked(t.x) and not marked(t.y) and getmetatable(t.y) == nil and marked(t.z[1])"));
  CHECK(lua_true(L, "return enc(rt(dec('\\144'))) == '\\144' and enc(rt({})) == '\\128'"));
  /* -0 keeps its sign (tonumber('-0'), as above); 2^53 is a number, 2^53 + 1 is int64 cdata */
  CHECK(lua_true(L, "return 1 / rt(tonumber('-0')) == -1/0"));
  CHECK(lua_true(L, "return type(rt(2^60)) == 'number' and type(rt(-2^63)) == 'number'"));
  CHECK(lua_true(L, "return type(rt(2^53)) == 'number' and ffi.istype('int64_t', rt(ffi.new('int64_t', 2^53) + 1))"));
  CHECK(lua_true(L, "return ffi.istype('uint64_t', rt(0xffffffffffffffffULL)) and ffi.istype('int64_t', rt(0x7fffffffffffffffULL))"));
  CHECK(lua_true(L, "return type(rt(5LL)) == 'number' and rt(5LL) == 5"));
  lua_close(L);
}

/* ---- errors ---- */

static const char *enc_err(lua_State *L, const char *expr) { return enc_hex(L, expr); }

static void test_encode_errors(void) {
  lua_State *L = new_state();
  CHECK_STR(enc_err(L, "{a = {1, 2, function() end}}"), "error: cannot encode a function at $.a[2]");
  CHECK_STR(enc_err(L, "print"), "error: cannot encode a function at $");
  CHECK_STR(enc_err(L, "{['a b'] = {f = print}}"), "error: cannot encode a function at $[\"a b\"].f");
  CHECK_STR(enc_err(L, "{[7.5] = {[true] = coroutine.create(print)}}"), "error: cannot encode a thread at $[7.5][true]");
  CHECK_STR(enc_err(L, "{x = {[{}] = 1}}"), "error: cannot encode a table as a map key at $.x");
  CHECK_STR(enc_err(L, "{{[print] = 1}}"), "error: cannot encode a function as a map key at $[0]");
  CHECK_STR(enc_err(L, "io.stdout"), "error: cannot encode a userdata at $");
  CHECK_STR(enc_err(L, "{['q\"\\\\\\n'] = print}"), "error: cannot encode a function at $[\"q\\\"\\\\?\"]");
  CHECK_STR(enc_err(L, "{[string.rep('k', 70)] = print}"),
            "error: cannot encode a function at $[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]");
  int x = 0;
  lua_pushlightuserdata(L, &x);
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  CHECK(ls_mpack_encode(L, -1, &b, err, sizeof err) == -1);
  CHECK_STR(err, "cannot encode a light userdata at $");
  lua_pop(L, 1);
  CHECK_STR(enc_err(L, "{v = ffi.new('double[2]')}"), "error: cannot encode a cdata at $.v");
  lua_close(L);
}

static void test_decode_errors(void) {
  lua_State *L = new_state();
  CHECK_STR(dec_err(L, "", 0), "empty input");
  CHECK_STR(dec_err(L, "\x01\x02", 2), "trailing bytes at byte 1");
  CHECK_STR(dec_err(L, "\xc1", 1), "invalid byte 0xc1 at byte 0");
  CHECK_STR(dec_err(L, "\x92\x01\xc1", 3), "invalid byte 0xc1 at byte 2");
  CHECK_STR(dec_err(L, "\xcd\x01", 2), "truncated input at byte 0");
  CHECK_STR(dec_err(L, "\x92\x01", 2), "truncated input at byte 0");
  CHECK_STR(dec_err(L, "\x92\x01\xcb\0", 4), "truncated input at byte 2");
  CHECK_STR(dec_err(L, "\x81\xc0\x01", 3), "nil map key at byte 1");
  CHECK_STR(dec_err(L, "\x81\xcb\x7f\xf8\0\0\0\0\0\0\x01", 11), "NaN map key at byte 1");
  CHECK_STR(dec_err(L, "\xd4\x05\x00", 3), "unsupported msgpack ext type 5 at byte 0");
  CHECK_STR(dec_err(L, "\x91\xc7\x02\xff\x00\x00", 6), "unsupported msgpack ext type -1 at byte 1");
  CHECK_STR(dec_err(L, "\xd6\xff\0\0\0\0", 6), "unsupported msgpack ext type -1 at byte 0");
  CHECK_STR(dec_err(L, "\xd4\x05", 2), "truncated input at byte 0");
  /* counts larger than the input are refused before anything is allocated */
  CHECK_STR(dec_err(L, "\xdd\xff\xff\xff\xff", 5), "truncated input at byte 0");
  CHECK_STR(dec_err(L, "\x91\xdf\xff\xff\xff\xff\x01\x01", 8), "truncated input at byte 1");
  CHECK_STR(dec_err(L, "\xdb\xff\xff\xff\xff" "abc", 8), "truncated input at byte 0");
  CHECK_STR(dec_err(L, "\xc9\xff\xff\xff\xff\x01", 6), "truncated input at byte 0");
  lua_close(L);
}

/* ---- malformed input ---- */

/* Every proper prefix of a valid encoding must fail cleanly (for long
 * encodings: the first and last 300 prefixes and every 97th between). */
static void check_truncations(lua_State *L, const char *expr) {
  push_expr(L, expr);
  ls_buf b;
  ls_buf_init(&b);
  char err[256];
  CHECK(ls_mpack_encode(L, -1, &b, err, sizeof err) == 0);
  lua_pop(L, 1);
  int bad = 0;
  for (size_t n = 0; n < b.len; n += (n < 300 || n + 300 > b.len) ? 1 : 97) {
    char *copy = malloc(n ? n : 1); /* exact size, so ASan sees any over-read */
    memcpy(copy, b.data, n);
    if (dec_raw(L, copy, n, err, sizeof err) == 0) {
      bad++;
      lua_pop(L, 1);
    }
    free(copy);
  }
  CHECK(bad == 0);
  CHECK(dec_raw(L, b.data, b.len, err, sizeof err) == 0);
  lua_pop(L, 1);
  ls_buf_free(&b);
}

static void test_truncations(void) {
  lua_State *L = new_state();
  check_truncations(L, "{1, 2, 3}");
  check_truncations(L, "{a = 1, b = {c = {true, false, null}}, s = string.rep('x', 40)}");
  check_truncations(L, "{1.5, -2^40, 2^40, 70000, -70000, 300, -300, 0.1}");
  check_truncations(L, "{ffi.new('int64_t', 2^53) + 1, 0xffffffffffffffffULL, string.rep('y', 300)}");
  check_truncations(L, "{[false] = {[true] = dec('\\144')}, [2.5] = ''}");
  check_truncations(L, "string.rep('z', 70000)");
  lua_close(L);
}

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

/* Decodes n bytes from an exact-size copy. A decoded value must re-encode,
 * unless it has a map key the encoder refuses (a table: decodable, but not a
 * key Lua code can look up). */
static void fuzz_one(lua_State *L, const unsigned char *p, size_t n, int *decoded) {
  char *copy = malloc(n ? n : 1);
  memcpy(copy, p, n);
  char err[256];
  if (dec_raw(L, copy, n, err, sizeof err) == 0) {
    (*decoded)++;
    ls_buf b;
    ls_buf_init(&b);
    CHECK(ls_mpack_encode(L, -1, &b, err, sizeof err) == 0 || strstr(err, "as a map key"));
    ls_buf_free(&b);
    lua_pop(L, 1);
  }
  free(copy);
}

static void test_random_bytes(void) {
  lua_State *L = new_state();
  unsigned char buf[64];
  int decoded = 0;
  int before = check_passed + check_failed;
  for (int iter = 0; iter < 100000; iter++) {
    size_t n = rng() % sizeof buf;
    for (size_t i = 0; i < n; i++) {
      uint32_t r = rng();
      /* small values and type bytes are likelier, so containers get filled */
      buf[i] = (r & 0x100) ? (unsigned char)(r & 0x0f) : (unsigned char)(r >> 16);
    }
    fuzz_one(L, buf, n, &decoded);
  }
  /* mutations of a valid encoding:
   * {a = {1, 2.5, "xyz", {true, nil}}, b = UINT64_MAX, c = -70000, d = []} */
  static const unsigned char valid[] = {
    0x84, 0xa1, 'a', 0x94, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0xa3, 'x', 'y', 'z',
    0x92, 0xc3, 0xc0, 0xa1, 'b', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xa1, 'c', 0xd2, 0xff, 0xfe, 0xee, 0x90, 0xa1, 'd', 0x90,
  };
  char err[256];
  CHECK(dec_raw(L, (const char *)valid, sizeof valid, err, sizeof err) == 0);
  lua_pop(L, 1);
  for (int iter = 0; iter < 50000; iter++) {
    memcpy(buf, valid, sizeof valid);
    for (int k = 0; k < 1 + (int)(rng() % 3); k++) buf[rng() % sizeof valid] = (unsigned char)rng();
    fuzz_one(L, buf, sizeof valid - (rng() % 2), &decoded);
  }
  CHECK(decoded > 0);
  CHECK(lua_gettop(L) == 0);
  /* collapse the per-iteration stack checks into one line of output */
  int runs = check_passed + check_failed - before;
  printf("random: %d inputs checked, %d decoded\n", runs, decoded);
  lua_close(L);
}

/* ---- depth ---- */

static void test_depth(void) {
  lua_State *L = new_state();
  char buf[200];
  char err[256];
  /* decoding: 128 nested arrays are fine (msgpack-c itself stops at 32) */
  memset(buf, 0x91, 128);
  buf[128] = 0x00;
  CHECK(dec_raw(L, buf, 129, err, sizeof err) == 0);
  lua_pop(L, 1);
  memset(buf, 0x91, 129);
  buf[129] = 0x00;
  CHECK(dec_raw(L, buf, 130, err, sizeof err) == -1);
  CHECK_STR(err, "nesting deeper than 128 at byte 128");
  memset(buf, 0x81, 150);
  CHECK(dec_raw(L, buf, 150, err, sizeof err) == -1);
  /* encoding: the same limit, so whatever encodes also decodes */
  CHECK(lua_true(L, "local t = 0 for i = 1, 128 do t = {t} end return deq(rt(t), t)"));
  CHECK(lua_true(L, "local t = 0 for i = 1, 40 do t = {k = t} end return deq(rt(t), t)"));
  CHECK(lua_true(L, "local t = 0 for i = 1, 129 do t = {t} end\n"
                    "local ok, e = pcall(enc, t)\n"
                    "return not ok and e:find('^nesting deeper than 128 at %$%[0%]%[0%]') ~= nil"));
  CHECK(lua_true(L, "local t = {} t.self = t local ok, e = pcall(enc, t)\n"
                    "return not ok and e:find('^nesting deeper than 128 at %$%.self%.self') ~= nil"));
  lua_close(L);
}

int main(void) {
  test_encode_bytes();
  test_encode_appends();
  test_decode_forms();
  test_round_trips();
  test_encode_errors();
  test_decode_errors();
  test_truncations();
  test_random_bytes();
  test_depth();
  CHECK_DONE();
}
