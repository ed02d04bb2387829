/* bench_json.c - the JSON codec (runtime/json.c, runtime/dtoa.c) against
 * lua-cjson, side by side in one lua_State.
 *
 * Data sets: ~100-byte phone rows, a ~1 KB nested document, arrays of 1500
 * doubles (sensor-like 6-digit values, and full 17-digit values), and car
 * telemetry messages (four channels of 1500 samples each), which are also
 * decoded with arrays = "vec" (LS_ARRAYS_VEC: each channel one ls.vec) and
 * encoded from those vecs, next to the same with tables and with cjson. For
 * each, decode and encode are timed three ways, all called from C:
 *   ours/C      ls_json_decode / ls_json_encode called directly (as app.c does)
 *   ours/call   the same through a lua_CFunction, called with lua_call
 *   cjson/call  cjson.decode / cjson.encode, called with lua_call
 * so "ours/call" vs "cjson/call" compares like with like. Decode input comes
 * from Lua strings made beforehand (no string creation in the loop); encode
 * input is the tables our decoder built. Also times ls_dtoa against the
 * snprintf("%.15g/%.16g/%.17g") + strtod reference loop, and
 * ls_decimal_to_double against strtod.
 *
 * Build and run: cmake --build build --target bench_json && build/bench_json
 * (build/bench_json telemetry: the telemetry set only). */
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
#include "dtoa.h"
#include "json.h"
#include "lua_vm.h"
#include "luavalue.h"

#define MIN_SECONDS 0.25
#define RUNS 3

static uint64_t rng_state = 0x853C49E6748FEA9Bu;

static uint64_t rng(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static double uniform(double lo, double hi) { return lo + (hi - lo) * (double)(rng() >> 11) / 9007199254740992.0; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- data sets ---- */

typedef struct dataset {
  const char *name;
  int n;
  char **docs;
  size_t *lens, bytes;
} dataset;

static void add_doc(dataset *ds, const char *text, size_t len) {
  ds->docs[ds->n] = malloc(len + 1);
  memcpy(ds->docs[ds->n], text, len + 1);
  ds->lens[ds->n++] = len;
  ds->bytes += len;
}

static void ds_init(dataset *ds, const char *name, int cap) {
  ds->name = name;
  ds->n = 0;
  ds->bytes = 0;
  ds->docs = calloc((size_t)cap, sizeof *ds->docs);
  ds->lens = calloc((size_t)cap, sizeof *ds->lens);
}

/* {"device":"phone-17","ts":1764160000123,"gX":0.0123,"gY":-0.98,"gZ":0.153} */
static void make_rows(dataset *ds, int n) {
  ds_init(ds, "phone rows", n);
  char buf[256];
  for (int i = 0; i < n; i++) {
    int len = snprintf(buf, sizeof buf,
                       "{\"device\":\"phone-%d\",\"ts\":%lld,\"gX\":%.*g,\"gY\":%.*g,\"gZ\":%.*g,\"seq\":%d}",
                       (int)(rng() % 200), 1764160000123LL + i * 37LL, 2 + (int)(rng() % 3), uniform(-2, 2),
                       2 + (int)(rng() % 3), uniform(-2, 2), 2 + (int)(rng() % 3), uniform(-12, 12), i);
    add_doc(ds, buf, (size_t)len);
  }
}

static void make_nested(dataset *ds, int n) {
  ds_init(ds, "1 KB nested", n);
  char buf[2048];
  for (int i = 0; i < n; i++) {
    int len = snprintf(
        buf, sizeof buf,
        "{\"id\":\"evt-%08d\",\"type\":\"reading\",\"ok\":true,\"parent\":null,"
        "\"device\":{\"id\":\"phone-%d\",\"model\":\"Pixel 8\",\"os\":{\"name\":\"Android\",\"version\":\"14.0.%d\"},"
        "\"battery\":%.2f,\"charging\":false,\"tags\":[\"field\",\"crash-test\",\"caf\\u00e9\",\"\\u00fcber\"]},"
        "\"location\":{\"lat\":%.6f,\"lon\":%.6f,\"alt\":%.1f,\"accuracy\":%d},"
        "\"samples\":[{\"t\":%d,\"x\":%.4f,\"y\":%.4f,\"z\":%.4f},{\"t\":%d,\"x\":%.4f,\"y\":%.4f,\"z\":%.4f},"
        "{\"t\":%d,\"x\":%.4f,\"y\":%.4f,\"z\":%.4f},{\"t\":%d,\"x\":%.4f,\"y\":%.4f,\"z\":%.4f}],"
        "\"note\":\"Driver reported \\\"hard braking\\\" near exit %d;\\nno injuries.\","
        "\"counters\":{\"sent\":%d,\"dropped\":%d,\"retries\":%d,\"latency_ms\":[%d,%d,%d,%d,%d]},"
        "\"user\":{\"name\":\"Ren\\u00e9e M\\u00fcller\",\"email\":\"renee%d@example.com\",\"roles\":[\"driver\",\"admin\"],"
        "\"prefs\":{\"units\":\"metric\",\"lang\":\"de-CH\",\"alerts\":true}},"
        "\"firmware\":\"2024.11.%d-rc%d\",\"ts\":%lld}",
        i, i % 200, i % 10, uniform(0, 1), uniform(-90, 90), uniform(-180, 180), uniform(0, 3000),
        (int)(rng() % 50), i, uniform(-2, 2), uniform(-2, 2), uniform(-2, 2), i + 20, uniform(-2, 2),
        uniform(-2, 2), uniform(-2, 2), i + 40, uniform(-2, 2), uniform(-2, 2), uniform(-2, 2), i + 60,
        uniform(-2, 2), uniform(-2, 2), uniform(-2, 2), i % 90, i * 7, i % 13, i % 3, (int)(rng() % 100),
        (int)(rng() % 100), (int)(rng() % 100), (int)(rng() % 100), (int)(rng() % 100), i, i % 30, i % 5,
        1764160000123LL + i);
    add_doc(ds, buf, (size_t)len);
  }
}

/* 1500 doubles: with digits significant digits, or shortest round-trip (17). */
static void make_doubles(dataset *ds, int n, int digits) {
  ds_init(ds, digits < 17 ? "1500 doubles, 6 digits" : "1500 doubles, 17 digits", n);
  char *buf = malloc(1500 * 32 + 2);
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    buf[len++] = '[';
    for (int k = 0; k < 1500; k++) {
      if (k) buf[len++] = ',';
      double v = uniform(-50, 50);
      if (digits < 17) {
        len += (size_t)snprintf(buf + len, 32, "%.*g", digits, v);
      } else {
        len += (size_t)ls_dtoa(v, buf + len);
      }
    }
    buf[len++] = ']';
    buf[len] = '\0';
    add_doc(ds, buf, len);
  }
  free(buf);
}

/* {"car":"car-7","t0":...,"rate_hz":1500,"channels":{"speed":[...],"rpm":[...],
 *  "throttle":[...],"brake":[...]}}, 1500 samples per channel as a logger
 * writes them: speed in km/h with 2 decimals, rpm whole, throttle and brake
 * in [0, 1] with 3 decimals (brake mostly 0). */
static void make_telemetry(dataset *ds, int n) {
  ds_init(ds, "car telemetry, 4 x 1500 samples", n);
  char *buf = malloc(4 * 1500 * 16 + 256);
  static const char *const names[] = {"speed", "rpm", "throttle", "brake"};
  for (int i = 0; i < n; i++) {
    size_t len = (size_t)sprintf(buf, "{\"car\":\"car-%d\",\"t0\":%lld,\"rate_hz\":1500,\"channels\":{", i % 20,
                                 1764160000123LL + i * 1000LL);
    double speed = uniform(80, 250), rpm = uniform(6000, 11000);
    for (int c = 0; c < 4; c++) {
      len += (size_t)sprintf(buf + len, "%s\"%s\":[", c ? "," : "", names[c]);
      for (int k = 0; k < 1500; k++) {
        if (k) buf[len++] = ',';
        speed += uniform(-0.3, 0.3);
        rpm += uniform(-20, 20);
        if (c == 0) len += (size_t)sprintf(buf + len, "%.2f", speed);
        else if (c == 1) len += (size_t)sprintf(buf + len, "%.0f", rpm);
        else if (c == 2) len += (size_t)sprintf(buf + len, "%.3f", uniform(0, 1));
        else len += (size_t)sprintf(buf + len, "%.3f", rng() % 8 ? 0.0 : uniform(0, 1));
      }
      buf[len++] = ']';
    }
    len += (size_t)sprintf(buf + len, "}}");
    add_doc(ds, buf, len);
  }
  free(buf);
}

/* ---- the three ways of calling ---- */

static ls_buf wrap_buf;

static int l_ours_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[256];
  if (ls_json_decode(L, s, n, err, sizeof err)) return luaL_error(L, "%s", err);
  return 1;
}

static int l_ours_decode_vec(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[256];
  if (ls_json_decode_opts(L, s, n, LS_ARRAYS_VEC, err, sizeof err)) return luaL_error(L, "%s", err);
  return 1;
}

static int l_ours_encode(lua_State *L) {
  char err[256];
  wrap_buf.len = 0;
  if (ls_json_encode(L, 1, &wrap_buf, err, sizeof err)) return luaL_error(L, "%s", err);
  lua_pushlstring(L, wrap_buf.data, wrap_buf.len);
  return 1;
}

/* Registry slots: the data set's strings and tables (and values decoded
 * with arrays = "vec"), and the functions. */
static int ref_strings, ref_tables, ref_vec_values, ref_cjson_decode, ref_cjson_encode, ref_ours_decode,
    ref_ours_decode_vec, ref_ours_encode;

typedef struct timing {
  double seconds;
  long ops;
  size_t bytes;
} timing;

typedef struct bench_arg {
  const dataset *ds;
  int mode; /* 0 ours/C, 1 ours/call, 2 cjson/call */
  int encode;
  int flags; /* LS_ARRAYS_VEC: decode to vecs, or encode the values holding them */
  timing t;
} bench_arg;

/* One pass over the data set; returns the bytes read or written. */
static size_t pass_c(lua_State *L, const bench_arg *a, ls_buf *out) {
  char err[256];
  size_t bytes = 0;
  for (int i = 0; i < a->ds->n; i++) {
    if (!a->encode) {
      if (ls_json_decode_opts(L, a->ds->docs[i], a->ds->lens[i], a->flags, err, sizeof err)) luaL_error(L, "%s", err);
      bytes += a->ds->lens[i];
    } else {
      lua_rawgeti(L, LUA_REGISTRYINDEX, a->flags ? ref_vec_values : ref_tables);
      lua_rawgeti(L, -1, i + 1);
      out->len = 0;
      if (ls_json_encode(L, -1, out, err, sizeof err)) luaL_error(L, "%s", err);
      bytes += out->len;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return bytes;
}

static size_t pass_call(lua_State *L, const bench_arg *a) {
  int fn = a->mode == 1 ? (a->encode ? ref_ours_encode : a->flags ? ref_ours_decode_vec : ref_ours_decode)
                        : (a->encode ? ref_cjson_encode : ref_cjson_decode);
  size_t bytes = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->encode ? (a->flags ? ref_vec_values : ref_tables) : ref_strings);
  int src = lua_gettop(L);
  for (int i = 0; i < a->ds->n; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    lua_rawgeti(L, src, i + 1);
    lua_call(L, 1, 1);
    bytes += a->encode ? lua_objlen(L, -1) : a->ds->lens[i];
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return bytes;
}

static int run_bench(lua_State *L) {
  bench_arg *a = lua_touserdata(L, 1);
  ls_buf out;
  ls_buf_init(&out);
  timing best = {1e9, 0, 0};
  for (int run = 0; run < RUNS; run++) {
    timing t = {0, 0, 0};
    lua_gc(L, LUA_GCCOLLECT, 0);
    double t0 = now();
    while (t.seconds < MIN_SECONDS) {
      t.bytes += a->mode == 0 ? pass_c(L, a, &out) : pass_call(L, a);
      t.ops += a->ds->n;
      t.seconds = now() - t0;
    }
    if (t.seconds / (double)t.ops < best.seconds / (double)(best.ops ? best.ops : 1) || best.ops == 0) best = t;
  }
  ls_buf_free(&out);
  a->t = best;
  return 0;
}

static timing bench_flags(lua_State *L, const dataset *ds, int mode, int encode, int flags) {
  bench_arg a = {ds, mode, encode, flags, {0, 0, 0}};
  if (lua_cpcall(L, run_bench, &a) != 0) {
    fprintf(stderr, "bench failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return a.t;
}

static timing bench(lua_State *L, const dataset *ds, int mode, int encode) {
  return bench_flags(L, ds, mode, encode, 0);
}

/* Decodes every document of ds with the decoder at ref into a list, left at
 * the top of the stack. */
static void decode_all(lua_State *L, const dataset *ds, int ref) {
  lua_createtable(L, ds->n, 0);
  for (int i = 0; i < ds->n; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, ds->docs[i], ds->lens[i]);
    if (lua_pcall(L, 1, 1, 0)) {
      fprintf(stderr, "%s: %s\n", ds->name, lua_tostring(L, -1));
      exit(1);
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/* Makes the data set's Lua strings and (with our decoder) tables. */
static void load_dataset(lua_State *L, const dataset *ds) {
  char err[256];
  lua_createtable(L, ds->n, 0);
  lua_createtable(L, ds->n, 0);
  for (int i = 0; i < ds->n; i++) {
    lua_pushlstring(L, ds->docs[i], ds->lens[i]);
    lua_rawseti(L, -3, i + 1);
    lua_pushcfunction(L, l_ours_decode);
    lua_pushlstring(L, ds->docs[i], ds->lens[i]);
    if (lua_pcall(L, 1, 1, 0)) {
      fprintf(stderr, "%s: %s\n", ds->name, lua_tostring(L, -1));
      exit(1);
    }
    lua_rawseti(L, -2, i + 1);
  }
  (void)err;
  lua_rawseti(L, LUA_REGISTRYINDEX, ref_tables);
  lua_rawseti(L, LUA_REGISTRYINDEX, ref_strings);
}

static void print_row(const char *what, timing t, timing base) {
  double rate = (double)t.ops / t.seconds, mbs = (double)t.bytes / t.seconds / 1e6;
  printf("  %-12s %12.0f rows/s %9.1f MB/s", what, rate, mbs);
  if (base.ops) printf("   x%.2f vs cjson", rate / ((double)base.ops / base.seconds));
  printf("\n");
}

static double rate_of(timing t) { return (double)t.ops / t.seconds; }

static void print_vec_row(const char *what, timing t, timing cj, timing table) {
  printf("  %-22s %9.0f rows/s %7.1f MB/s", what, rate_of(t), (double)t.bytes / t.seconds / 1e6);
  if (cj.ops) printf("   x%5.2f vs cjson", rate_of(t) / rate_of(cj));
  if (table.ops) printf("   x%5.2f vs arrays=table", rate_of(t) / rate_of(table));
  printf("\n");
}

/* The telemetry set: arrays = "table" against arrays = "vec", both against
 * cjson (which makes tables). */
static void compare_arrays(lua_State *L, const dataset *ds, int have_cjson) {
  load_dataset(L, ds);
  decode_all(L, ds, ref_ours_decode_vec);
  lua_rawseti(L, LUA_REGISTRYINDEX, ref_vec_values);
  printf("%s: %d documents, %.0f bytes each on average\n", ds->name, ds->n, (double)ds->bytes / ds->n);
  timing none = {0, 0, 0};
  for (int encode = 0; encode <= 1; encode++) {
    printf(" %s\n", encode ? "encode (vecs: from the values decoded with arrays = vec)" : "decode");
    timing cj = have_cjson ? bench(L, ds, 2, encode) : none;
    for (int mode = 0; mode <= 1; mode++) {
      timing table = bench_flags(L, ds, mode, encode, 0);
      timing vecs = bench_flags(L, ds, mode, encode, LS_ARRAYS_VEC);
      print_vec_row(mode ? "ours/call arrays=table" : "ours/C arrays=table", table, cj, none);
      print_vec_row(mode ? "ours/call arrays=vec" : "ours/C arrays=vec", vecs, cj, table);
    }
    if (have_cjson) print_vec_row("cjson/call (tables)", cj, none, none);
  }
}

static void compare(lua_State *L, const dataset *ds, int have_cjson) {
  load_dataset(L, ds);
  printf("%s: %d documents, %.0f bytes each on average\n", ds->name, ds->n, (double)ds->bytes / ds->n);
  for (int encode = 0; encode <= 1; encode++) {
    printf(" %s\n", encode ? "encode" : "decode");
    timing none = {0, 0, 0};
    timing cj = have_cjson ? bench(L, ds, 2, encode) : none;
    print_row("ours/C", bench(L, ds, 0, encode), cj);
    print_row("ours/call", bench(L, ds, 1, encode), cj);
    if (have_cjson) print_row("cjson/call", cj, none);
  }
}

/* ---- dtoa ---- */

static int reference_dtoa(double v, char *out) { /* the snprintf/strtod loop */
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(out, 32, "%.*g", prec, v);
    if (strtod(out, NULL) == v) break;
  }
  return n;
}

static void bench_dtoa(const char *label, const double *vals, int n) {
  char buf[64];
  size_t sink = 0;
  double t0 = now();
  for (int r = 0; r < 5; r++)
    for (int i = 0; i < n; i++) sink += (size_t)ls_dtoa(vals[i], buf);
  double ours = (now() - t0) / (5.0 * n);
  t0 = now();
  for (int i = 0; i < n; i++) sink += (size_t)reference_dtoa(vals[i], buf);
  double ref = (now() - t0) / n;
  t0 = now();
  for (int i = 0; i < n; i++) sink += (size_t)snprintf(buf, sizeof buf, "%.17g", vals[i]);
  double g17 = (now() - t0) / n;
  printf("  %-22s ls_dtoa %6.1f ns   snprintf loop %6.1f ns (x%.1f)   one %%.17g %6.1f ns (x%.1f)%s\n", label,
         ours * 1e9, ref * 1e9, ref / ours, g17 * 1e9, g17 / ours, sink ? "" : " ");
}

static void bench_parse(const char *label, const double *vals, int n) {
  char(*texts)[32] = malloc((size_t)n * sizeof *texts);
  uint64_t *digits = malloc((size_t)n * sizeof *digits);
  int *exps = malloc((size_t)n * sizeof *exps);
  for (int i = 0; i < n; i++) { /* split the shortest text into digits and exponent */
    char tmp[40];
    snprintf(texts[i], sizeof texts[i], "%.17g", fabs(vals[i]));
    snprintf(tmp, sizeof tmp, "%.16e", fabs(vals[i]));
    digits[i] = 0;
    for (const char *p = tmp; *p != 'e'; p++)
      if (*p != '.') digits[i] = digits[i] * 10 + (uint64_t)(*p - '0');
    exps[i] = atoi(strchr(tmp, 'e') + 1) - 16;
  }
  double sink = 0, v;
  double t0 = now();
  for (int r = 0; r < 5; r++)
    for (int i = 0; i < n; i++) sink += ls_decimal_to_double(digits[i], exps[i], &v) ? strtod(texts[i], NULL) : v;
  double ours = (now() - t0) / (5.0 * n);
  t0 = now();
  for (int i = 0; i < n; i++) sink += strtod(texts[i], NULL);
  double ref = (now() - t0) / n;
  printf("  %-22s ls_decimal_to_double %6.1f ns   strtod %6.1f ns (x%.1f)%s\n", label, ours * 1e9, ref * 1e9,
         ref / ours, sink == 0.5 ? " " : "");
  free(texts);
  free(digits);
  free(exps);
}

static void numbers(void) {
  int n = 1000000;
  double *vals = malloc((size_t)n * sizeof *vals);
  printf("doubles (per value):\n");
  for (int i = 0; i < n; i++) {
    uint64_t b;
    do {
      b = rng();
      memcpy(&vals[i], &b, sizeof b);
    } while (!isfinite(vals[i]));
  }
  bench_dtoa("random bit patterns", vals, n);
  bench_parse("random bit patterns", vals, n);
  for (int i = 0; i < n; i++) vals[i] = uniform(-50, 50);
  bench_dtoa("uniform in [-50, 50]", vals, n);
  bench_parse("uniform in [-50, 50]", vals, n);
  char tmp[32];
  for (int i = 0; i < n; i++) {
    snprintf(tmp, sizeof tmp, "%.4g", uniform(-2, 2));
    vals[i] = strtod(tmp, NULL);
  }
  bench_dtoa("sensor, 4 digits", vals, n);
  free(vals);
}

/* ---- main ---- */

static int load_cjson(lua_State *L) {
  static const char setup[] =
      "package.cpath = '/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/lib/aarch64-linux-gnu/lua/5.1/?.so;'"
      " .. '/usr/lib/arm-linux-gnueabihf/lua/5.1/?.so;/usr/lib/lua/5.1/?.so;/usr/local/lib/lua/5.1/?.so;'"
      " .. package.cpath\n"
      "local ok, cjson = pcall(require, 'cjson')\n"
      "if not ok then return nil, cjson end\n"
      "return cjson.decode, cjson.encode, cjson._VERSION\n";
  if (luaL_loadstring(L, setup) || lua_pcall(L, 0, 3, 0)) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 0;
  }
  if (lua_isnil(L, -3)) {
    printf("lua-cjson not found (%s): ours only\n", lua_tostring(L, -2));
    lua_pop(L, 3);
    return 0;
  }
  printf("lua-cjson %s, default settings (encodes doubles with 14 significant digits, not round-trip)\n",
         lua_tostring(L, -1));
  lua_pop(L, 1);
  ref_cjson_encode = luaL_ref(L, LUA_REGISTRYINDEX);
  ref_cjson_decode = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

int main(int argc, char **argv) {
  int only_telemetry = argc > 1 && strcmp(argv[1], "telemetry") == 0;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  ls_value_init(L);
  lua_getglobal(L, "package"); /* luastream.vec, for arrays = "vec" */
  lua_pushfstring(L, "%s/?.lua", ls_vm_lua_dir());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  ls_buf_init(&wrap_buf);
  lua_pushcfunction(L, l_ours_decode);
  ref_ours_decode = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_ours_decode_vec);
  ref_ours_decode_vec = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_ours_encode);
  ref_ours_encode = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  ref_strings = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  ref_tables = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  ref_vec_values = luaL_ref(L, LUA_REGISTRYINDEX);
  int have_cjson = load_cjson(L);

  dataset rows, nested, d6, d17, telemetry;
  make_telemetry(&telemetry, 20);
  if (!only_telemetry) {
    make_rows(&rows, 20000);
    make_nested(&nested, 2000);
    make_doubles(&d6, 40, 6);
    make_doubles(&d17, 40, 17);
    compare(L, &rows, have_cjson);
    compare(L, &nested, have_cjson);
    compare(L, &d6, have_cjson);
    compare(L, &d17, have_cjson);
  }
  compare_arrays(L, &telemetry, have_cjson);
  if (!only_telemetry) numbers();
  ls_buf_free(&wrap_buf);
  lua_close(L);
  return 0;
}
