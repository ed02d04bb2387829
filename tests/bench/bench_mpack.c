/* bench_mpack.c - MessagePack decoding: runtime/mpack.c against msgpack-c.
 *
 * mpack.c decodes with its own reader, which pushes Lua values as it parses.
 * This compares it with the two ways msgpack-c offers, each followed by the
 * walk that turns the msgpack_object tree into the same Lua values:
 *   - msgpack_unpack() into one zone reused for every message (its best case);
 *   - msgpack_unpack_next() with a msgpack_unpacked (a new zone per message).
 * Then a car telemetry message (four channels of 1500 float64 samples) is
 * decoded by mpack.c with arrays = "table" and with arrays = "vec"
 * (LS_ARRAYS_VEC: each channel one ls.vec).
 * Run: make bench && build/bench_mpack [iterations-scale] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <msgpack.h>

#include "buf.h"
#include "lua_vm.h"
#include "luavalue.h"
#include "mpack.h"

/* ---- the msgpack-c object walk ---- */

static void push_object(lua_State *L, const msgpack_object *o);

/* Stack index of the array marker, fetched once like mpack.c does. */
static int array_mt;

static void push_u64(lua_State *L, uint64_t v) {
  if (v <= ((uint64_t)1 << 53)) lua_pushnumber(L, (lua_Number)v);
  else if (v <= (uint64_t)INT64_MAX) ls_push_int64(L, (int64_t)v);
  else ls_push_uint64(L, v);
}

static void push_i64(lua_State *L, int64_t v) {
  if (v >= -(INT64_C(1) << 53)) lua_pushnumber(L, (lua_Number)v);
  else ls_push_int64(L, v);
}

static void push_array(lua_State *L, const msgpack_object_array *a) {
  lua_checkstack(L, 3);
  lua_createtable(L, (int)a->size, 0);
  for (uint32_t i = 0; i < a->size; i++) {
    push_object(L, &a->ptr[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_pushvalue(L, array_mt);
  lua_setmetatable(L, -2);
}

static void push_map(lua_State *L, const msgpack_object_map *m) {
  lua_checkstack(L, 3);
  lua_createtable(L, 0, (int)m->size);
  for (uint32_t i = 0; i < m->size; i++) {
    push_object(L, &m->ptr[i].key);
    push_object(L, &m->ptr[i].val);
    lua_rawset(L, -3);
  }
}

static void push_object(lua_State *L, const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: ls_push_null(L); break;
  case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
  case MSGPACK_OBJECT_POSITIVE_INTEGER: push_u64(L, o->via.u64); break;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: push_i64(L, o->via.i64); break;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, o->via.f64); break;
  case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
  case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); break;
  case MSGPACK_OBJECT_ARRAY: push_array(L, &o->via.array); break;
  case MSGPACK_OBJECT_MAP: push_map(L, &o->via.map); break;
  default: lua_pushnil(L); break;
  }
}

static msgpack_zone zone;

static int decode_zone(lua_State *L, const char *p, size_t n) {
  msgpack_object o;
  size_t off = 0;
  msgpack_zone_clear(&zone);
  if (msgpack_unpack(p, n, &off, &zone, &o) != MSGPACK_UNPACK_SUCCESS) return -1;
  push_object(L, &o);
  return 0;
}

static int decode_unpacked(lua_State *L, const char *p, size_t n) {
  msgpack_unpacked u;
  size_t off = 0;
  msgpack_unpacked_init(&u);
  int rc = msgpack_unpack_next(&u, p, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n ? 0 : -1;
  if (rc == 0) push_object(L, &u.data);
  msgpack_unpacked_destroy(&u);
  return rc;
}

static int decode_mpack(lua_State *L, const char *p, size_t n) {
  char err[128];
  return ls_mpack_decode(L, p, n, err, sizeof err);
}

static int decode_mpack_vec(lua_State *L, const char *p, size_t n) {
  char err[128];
  return ls_mpack_decode_opts(L, p, n, LS_ARRAYS_VEC, err, sizeof err);
}

/* ---- workloads ---- */

typedef struct workload {
  const char *name;
  const char *expr;
  long iterations;
} workload;

static const workload WORKLOADS[] = {
  { "state value {gTotal=9.81}", "{gTotal = 9.81}", 2000000 },
  { "phone row (6 fields)",
    "{device = 'phone-17', ts = 1700000000123, gX = 0.12, gY = -9.81, gZ = 0.33, gTotal = 9.82}", 1000000 },
  { "nested order (10 items)",
    "(function() local items = {} for i = 1, 10 do items[i] = {sku = 'sku-' .. i, qty = i, price = i * 1.25} end\n"
    " return {user = {id = 123, name = 'alice', tags = {'a', 'b', 'c'}}, items = items, ok = true} end)()",
    200000 },
  { "1000 doubles", "(function() local t = {} for i = 1, 1000 do t[i] = i * 0.37 end return t end)()", 20000 },
  { "small int array {1,2,3}", "{1, 2, 3}", 2000000 },
  { "100 short strings", "(function() local t = {} for i = 1, 100 do t[i] = 'value-' .. i end return t end)()", 100000 },
};

typedef int (*decode_fn)(lua_State *L, const char *p, size_t n);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Best of three runs, in ns per message. */
static double time_decode(lua_State *L, decode_fn fn, const ls_buf *b, long iterations) {
  double best = 1e30;
  for (int run = 0; run < 3; run++) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    double t0 = now();
    for (long i = 0; i < iterations; i++) {
      if (fn(L, b->data, b->len)) {
        fprintf(stderr, "decode failed\n");
        exit(1);
      }
      lua_pop(L, 1);
    }
    double ns = (now() - t0) * 1e9 / (double)iterations;
    if (ns < best) best = ns;
  }
  return best;
}

static const char TELEMETRY[] =
    "local t = { car = 'car-7', t0 = 1764160000123, rate_hz = 1500, channels = {} }\n"
    "for _, c in ipairs({ 'speed', 'rpm', 'throttle', 'brake' }) do\n"
    "  local a = {} for i = 1, 1500 do a[i] = math.random() * 300 + 0.5 end t.channels[c] = a\n"
    "end\n"
    "return t";

static void telemetry(lua_State *L, double scale) {
  if (luaL_dostring(L, TELEMETRY)) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    exit(1);
  }
  ls_buf b;
  ls_buf_init(&b);
  char err[128];
  if (ls_mpack_encode(L, -1, &b, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  lua_pop(L, 1);
  long n = (long)(2000 * scale);
  if (n < 1) n = 1;
  double tables = time_decode(L, decode_mpack, &b, n);
  double vecs = time_decode(L, decode_mpack_vec, &b, n);
  printf("\ncar telemetry, 4 x 1500 float64 (%zu bytes), mpack.c:\n"
         "  arrays = \"table\" %9.0f ns\n  arrays = \"vec\"   %9.0f ns (x%.2f)\n", b.len, tables, vecs,
         tables / vecs);
  ls_buf_free(&b);
}

int main(int argc, char **argv) {
  double scale = argc > 1 ? atof(argv[1]) : 1.0;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  ls_value_init(L);
  lua_getglobal(L, "package"); /* luastream.vec, for arrays = "vec" */
  lua_pushfstring(L, "%s/?.lua", ls_vm_lua_dir());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE);
  ls_push_array_mt(L);
  array_mt = lua_gettop(L);
  printf("%-28s %8s %12s %14s %14s\n", "workload", "bytes", "mpack.c ns", "msgpack_unpack", "unpack_next");
  for (size_t w = 0; w < sizeof WORKLOADS / sizeof WORKLOADS[0]; w++) {
    const workload *wl = &WORKLOADS[w];
    char code[1024];
    snprintf(code, sizeof code, "return %s", wl->expr);
    if (luaL_dostring(L, code)) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      return 1;
    }
    ls_buf b;
    ls_buf_init(&b);
    char err[128];
    if (ls_mpack_encode(L, -1, &b, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    lua_pop(L, 1);
    long n = (long)((double)wl->iterations * scale);
    if (n < 1) n = 1;
    double a = time_decode(L, decode_mpack, &b, n);
    double z = time_decode(L, decode_zone, &b, n);
    double u = time_decode(L, decode_unpacked, &b, n);
    printf("%-28s %8zu %12.0f %8.0f (%.2fx) %8.0f (%.2fx)\n", wl->name, b.len, a, z, z / a, u, u / a);
    ls_buf_free(&b);
  }
  telemetry(L, scale);
  msgpack_zone_destroy(&zone);
  lua_close(L);
  return 0;
}
