/* test_vec.c - unit tests of the ls.vec kernels and C helpers (runtime/vec.c).
 *
 * Every kernel on inputs with exactly known results, at lengths that cover
 * the SIMD bodies and their scalar tails; empty inputs; NaN and infinities;
 * out == input where the kernel allows it; the rolling kernels and resample
 * against brute-force references over many lengths and windows; and
 * ls_vec_push / ls_vec_to in a runtime lua_State. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "check.h"
#include "lua_vm.h"
#include "vec.h"

#define MAXN 1100

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void) { return check_splitmix64(&rng_state); }

/* A small integer in [-50, 50]: sums of these are exact. */
static double small_int(void) { return (double)(int)(rng() % 101) - 50; }

/* A double in [-1000, 1000). */
static double uniform(void) { return ((double)(rng() >> 11) / 9007199254740992.0) * 2000 - 1000; }

/* Equal as values, with NaN equal to NaN and -0 distinct from +0. */
static int same(double a, double b) {
  if (a != a || b != b) return a != a && b != b;
  return a == b && signbit(a) == signbit(b);
}

static int close_to(double got, double want, double rel) {
  if (want != want) return got != got;
  if (isinf(want)) return got == want;
  return fabs(got - want) <= rel * (1 + fabs(want));
}

static int all_same(const double *got, const double *want, int n) {
  for (int i = 0; i < n; i++)
    if (!same(got[i], want[i])) {
      fprintf(stderr, "  element %d: got %.17g, want %.17g\n", i, got[i], want[i]);
      return 0;
    }
  return 1;
}

/* ---- reductions ---- */

static void test_sum_mean(void) {
  double x[MAXN];
  for (int i = 0; i < MAXN; i++) x[i] = i + 1;
  CHECK(same(ls_ffi_vec_sum(x, 10), 55));
  CHECK(same(ls_ffi_vec_sum(x, 0), 0));
  for (int n = 0; n <= 40; n++) CHECK(same(ls_ffi_vec_sum(x, n), n * (n + 1) / 2.0));
  CHECK(same(ls_ffi_vec_sum(x, 1001), 1001 * 1002 / 2.0));
  CHECK(same(ls_ffi_vec_mean(x, 4), 2.5));
  CHECK(same(ls_ffi_vec_mean(x, 1001), 501));
  CHECK(isnan(ls_ffi_vec_mean(x, 0)));
  for (int pos = 0; pos < 20; pos++) {
    double y[20];
    for (int i = 0; i < 20; i++) y[i] = 1;
    y[pos] = NAN;
    CHECK(isnan(ls_ffi_vec_sum(y, 20)));
    y[pos] = INFINITY;
    CHECK(same(ls_ffi_vec_sum(y, 20), INFINITY));
    y[(pos + 7) % 20] = -INFINITY;
    CHECK(isnan(ls_ffi_vec_sum(y, 20)));
  }
}

static void test_var_std(void) {
  double x[] = {2, 4, 4, 4, 5, 5, 7, 9};
  CHECK(same(ls_ffi_vec_var(x, 8, 0), 4));
  CHECK(same(ls_ffi_vec_std(x, 8, 0), 2));
  CHECK(same(ls_ffi_vec_var(x, 8, 1), 32.0 / 7));
  CHECK(same(ls_ffi_vec_std(x, 8, 1), sqrt(32.0 / 7)));
  CHECK(same(ls_ffi_vec_var(x, 1, 0), 0));
  CHECK(isnan(ls_ffi_vec_var(x, 1, 1)));
  CHECK(isnan(ls_ffi_vec_var(x, 0, 0)));
  CHECK(isnan(ls_ffi_vec_std(x, 0, 0)));
  double c[37];
  for (int i = 0; i < 37; i++) c[i] = 0.1;
  CHECK(same(ls_ffi_vec_var(c, 37, 0), 0));
  /* A large offset: the naive sum-of-squares formula loses every digit here. */
  double big[] = {1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4};
  CHECK(same(ls_ffi_vec_var(big, 4, 0), 1.25));
  double y[] = {1, 2, NAN, 4};
  CHECK(isnan(ls_ffi_vec_var(y, 4, 0)));
  y[2] = INFINITY;
  CHECK(isnan(ls_ffi_vec_var(y, 4, 0)));
  CHECK(isnan(ls_ffi_vec_std(y, 4, 0)));
}

static void test_min_max(void) {
  double x[MAXN];
  for (int n = 1; n <= 300; n += (n < 80 ? 1 : 37)) {
    for (int pos = 0; pos < n; pos += (n < 80 ? 1 : 13)) {
      for (int i = 0; i < n; i++) x[i] = (double)((i * 7919) % 1000);
      x[pos] = -5;
      CHECK(same(ls_ffi_vec_min(x, n), -5));
      CHECK(ls_ffi_vec_argmin(x, n) == pos);
      x[pos] = 5000;
      CHECK(same(ls_ffi_vec_max(x, n), 5000));
      CHECK(ls_ffi_vec_argmax(x, n) == pos);
      x[pos] = NAN;
      CHECK(isnan(ls_ffi_vec_min(x, n)) && isnan(ls_ffi_vec_max(x, n)));
      CHECK(ls_ffi_vec_argmin(x, n) == pos && ls_ffi_vec_argmax(x, n) == pos);
    }
  }
  double ties[] = {3, 1, 2, 1, 3};
  CHECK(ls_ffi_vec_argmin(ties, 5) == 1);
  CHECK(ls_ffi_vec_argmax(ties, 5) == 0);
  double nans[] = {1, NAN, 0, NAN};
  CHECK(ls_ffi_vec_argmin(nans, 4) == 1 && ls_ffi_vec_argmax(nans, 4) == 1);
  double inf[] = {INFINITY, -INFINITY, 0};
  CHECK(same(ls_ffi_vec_min(inf, 3), -INFINITY) && same(ls_ffi_vec_max(inf, 3), INFINITY));
  CHECK(ls_ffi_vec_argmin(inf, 3) == 1 && ls_ffi_vec_argmax(inf, 3) == 0);
  CHECK(isnan(ls_ffi_vec_min(x, 0)) && isnan(ls_ffi_vec_max(x, 0)));
  CHECK(ls_ffi_vec_argmin(x, 0) == -1 && ls_ffi_vec_argmax(x, 0) == -1);
  double zeros[] = {0.0, -0.0};
  CHECK(ls_ffi_vec_argmin(zeros, 2) == 0 && ls_ffi_vec_argmax(zeros, 2) == 0);
}

static void test_norm_dot(void) {
  double a[] = {3, 4}, b[] = {1, 2, 3}, c[] = {4, 5, 6};
  CHECK(same(ls_ffi_vec_norm(a, 2), 5));
  CHECK(same(ls_ffi_vec_norm(a, 0), 0));
  CHECK(same(ls_ffi_vec_dot(b, c, 3), 32));
  CHECK(same(ls_ffi_vec_dot(b, c, 0), 0));
  double x[MAXN], y[MAXN];
  for (int i = 0; i < MAXN; i++) x[i] = 1, y[i] = 2;
  for (int n = 0; n < 30; n++) CHECK(same(ls_ffi_vec_dot(x, y, n), 2.0 * n));
  CHECK(same(ls_ffi_vec_dot(x, y, 1001), 2002));
  CHECK(same(ls_ffi_vec_norm(x, 1024), 32));
  double bad[] = {1, NAN, 2};
  CHECK(isnan(ls_ffi_vec_norm(bad, 3)) && isnan(ls_ffi_vec_dot(bad, b, 3)));
  double inf[] = {1, -INFINITY};
  CHECK(same(ls_ffi_vec_norm(inf, 2), INFINITY));
}

/* ---- elementwise ---- */

typedef void (*vv_fn)(double *, const double *, const double *, int32_t);
typedef void (*vs_fn)(double *, const double *, double, int32_t);

static void check_vv(vv_fn f, double (*ref)(double, double), const char *name) {
  static double a[MAXN], b[MAXN], out[MAXN], want[MAXN];
  int ns[] = {0, 1, 2, 3, 7, 8, 17, 1001};
  for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
    int n = ns[k];
    for (int i = 0; i < n; i++) a[i] = uniform(), b[i] = uniform(), want[i] = ref(a[i], b[i]);
    out[n] = 12345;
    f(out, a, b, n);
    int ok = all_same(out, want, n) && out[n] == 12345;
    /* out == a, out == b, and all three the same array */
    memcpy(out, a, sizeof(double) * n);
    f(out, out, b, n);
    ok = ok && all_same(out, want, n);
    memcpy(out, b, sizeof(double) * n);
    f(out, a, out, n);
    ok = ok && all_same(out, want, n);
    for (int i = 0; i < n; i++) want[i] = ref(a[i], a[i]);
    memcpy(out, a, sizeof(double) * n);
    f(out, out, out, n);
    ok = ok && all_same(out, want, n);
    if (!ok) fprintf(stderr, "  %s, n = %d\n", name, n);
    CHECK(ok);
  }
}

static void check_vs(vs_fn f, double (*ref)(double, double), const char *name) {
  static double x[MAXN], out[MAXN], want[MAXN];
  int ns[] = {0, 1, 5, 16, 1001};
  double ss[] = {2.5, -3, 0, INFINITY, NAN};
  for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
    for (size_t j = 0; j < sizeof ss / sizeof *ss; j++) {
      int n = ns[k];
      for (int i = 0; i < n; i++) x[i] = uniform(), want[i] = ref(x[i], ss[j]);
      f(out, x, ss[j], n);
      int ok = all_same(out, want, n);
      f(x, x, ss[j], n); /* in place */
      ok = ok && all_same(x, want, n);
      if (!ok) fprintf(stderr, "  %s, n = %d, s = %g\n", name, n, ss[j]);
      CHECK(ok);
    }
}

static double r_add(double a, double b) { return a + b; }
static double r_sub(double a, double b) { return a - b; }
static double r_mul(double a, double b) { return a * b; }
static double r_div(double a, double b) { return a / b; }
static double r_rsub(double a, double b) { return b - a; }
static double r_rdiv(double a, double b) { return b / a; }

static void test_arith(void) {
  check_vv(ls_ffi_vec_add, r_add, "add");
  check_vv(ls_ffi_vec_sub, r_sub, "sub");
  check_vv(ls_ffi_vec_mul, r_mul, "mul");
  check_vv(ls_ffi_vec_div, r_div, "div");
  check_vs(ls_ffi_vec_add_s, r_add, "add_s");
  check_vs(ls_ffi_vec_sub_s, r_sub, "sub_s");
  check_vs(ls_ffi_vec_rsub_s, r_rsub, "rsub_s");
  check_vs(ls_ffi_vec_mul_s, r_mul, "mul_s");
  check_vs(ls_ffi_vec_div_s, r_div, "div_s");
  check_vs(ls_ffi_vec_rdiv_s, r_rdiv, "rdiv_s");
  double a[] = {1, -1, 0, INFINITY}, b[] = {0, 0, 0, INFINITY}, out[4];
  ls_ffi_vec_div(out, a, b, 4);
  CHECK(same(out[0], INFINITY) && same(out[1], -INFINITY) && isnan(out[2]) && isnan(out[3]));
  ls_ffi_vec_sub(out, a, b, 4);
  CHECK(isnan(out[3]));
}

static void test_unary(void) {
  double x[] = {4, -9, 2, -0.0, 0, INFINITY, -INFINITY, NAN, -1}, out[9];
  ls_ffi_vec_sqrt(out, x, 9);
  CHECK(same(out[0], 2) && isnan(out[1]) && same(out[2], sqrt(2.0)) && same(out[3], -0.0));
  CHECK(same(out[4], 0) && same(out[5], INFINITY) && isnan(out[6]) && isnan(out[7]) && isnan(out[8]));
  ls_ffi_vec_abs(out, x, 9);
  double want_abs[] = {4, 9, 2, 0, 0, INFINITY, INFINITY, NAN, 1};
  CHECK(all_same(out, want_abs, 9));
  ls_ffi_vec_neg(out, x, 9);
  double want_neg[] = {-4, 9, -2, 0, -0.0, -INFINITY, INFINITY, NAN, 1};
  CHECK(all_same(out, want_neg, 9));
  ls_ffi_vec_copy(out, x, 9);
  CHECK(all_same(out, x, 9));
  static double big[MAXN], want[MAXN];
  for (int i = 0; i < 1001; i++) big[i] = i * i, want[i] = i;
  ls_ffi_vec_sqrt(big, big, 1001); /* in place */
  CHECK(all_same(big, want, 1001));
  ls_ffi_vec_neg(big, big, 1001);
  ls_ffi_vec_abs(big, big, 1001);
  CHECK(all_same(big, want, 1001));
}

static void test_clip(void) {
  double x[] = {-5, 0, 5, 10, NAN, INFINITY, -INFINITY}, out[7];
  ls_ffi_vec_clip(out, x, 7, 0, 5);
  double want[] = {0, 0, 5, 5, NAN, 5, 0};
  CHECK(all_same(out, want, 7));
  ls_ffi_vec_clip(out, x, 7, -INFINITY, 1);
  double want_hi[] = {-5, 0, 1, 1, NAN, 1, -INFINITY};
  CHECK(all_same(out, want_hi, 7));
  ls_ffi_vec_clip(x, x, 7, 2, 2); /* in place, lo == hi */
  double want_eq[] = {2, 2, 2, 2, NAN, 2, 2};
  CHECK(all_same(x, want_eq, 7));
}

static void test_magnitude(void) {
  double x[] = {1, 3, 0, NAN, INFINITY, 2}, y[] = {2, 4, 0, 1, 1, 3}, z[] = {2, 12, -0.0, 1, 1, 6};
  double out[6];
  ls_ffi_vec_magnitude(out, x, y, z, 6);
  double want3[] = {3, 13, 0, NAN, INFINITY, 7};
  CHECK(all_same(out, want3, 6));
  ls_ffi_vec_magnitude(out, x, y, NULL, 6);
  double want2[] = {sqrt(5.0), 5, 0, NAN, INFINITY, sqrt(13.0)};
  CHECK(all_same(out, want2, 6));
  ls_ffi_vec_magnitude(x, x, y, z, 6); /* out == x */
  CHECK(all_same(x, want3, 6));
  static double a[MAXN], b[MAXN], c[MAXN], m[MAXN];
  for (int i = 0; i < 1001; i++) a[i] = 2 * i, b[i] = 3 * i, c[i] = 6 * i;
  ls_ffi_vec_magnitude(m, a, b, c, 1001);
  int ok = 1;
  for (int i = 0; i < 1001; i++) ok = ok && m[i] == 7 * i;
  CHECK(ok);
}

static void test_cumsum(void) {
  static double x[MAXN], out[MAXN], want[MAXN];
  for (int n = 0; n <= 40; n++) {
    double s = 0;
    for (int i = 0; i < n; i++) x[i] = small_int(), want[i] = s += x[i];
    ls_ffi_vec_cumsum(out, x, n);
    int ok = all_same(out, want, n);
    ls_ffi_vec_cumsum(x, x, n); /* in place */
    ok = ok && all_same(x, want, n);
    if (!ok) fprintf(stderr, "  cumsum n = %d\n", n);
    CHECK(ok);
  }
  double neg0[] = {-0.0};
  ls_ffi_vec_cumsum(out, neg0, 1);
  CHECK(same(out[0], -0.0));
  for (int pos = 0; pos < 11; pos++) {
    for (int i = 0; i < 11; i++) x[i] = 1;
    x[pos] = NAN;
    ls_ffi_vec_cumsum(out, x, 11);
    int ok = 1;
    for (int i = 0; i < 11; i++) ok = ok && (i < pos ? out[i] == i + 1 : isnan(out[i]));
    CHECK(ok);
  }
  double inf[] = {1, INFINITY, 1, -INFINITY, 1};
  ls_ffi_vec_cumsum(out, inf, 5);
  CHECK(out[0] == 1 && out[1] == INFINITY && out[2] == INFINITY && isnan(out[3]) && isnan(out[4]));
}

static void test_diff(void) {
  double x[] = {1, 4, 9, 16, NAN, 3}, out[6] = {0, 0, 0, 0, 0, 99};
  ls_ffi_vec_diff(out, x, 6);
  CHECK(out[0] == 3 && out[1] == 5 && out[2] == 7 && isnan(out[3]) && isnan(out[4]));
  CHECK(out[5] == 99);
  out[0] = 42;
  ls_ffi_vec_diff(out, x, 1);
  ls_ffi_vec_diff(out, x, 0);
  CHECK(out[0] == 42);
}

static void test_resample(void) {
  double x[16], out[16];
  for (int i = 0; i < 16; i++) x[i] = i + 1;
  ls_ffi_vec_resample(out, x, 10, 3);
  double want3[] = {2, 5, 8, 10};
  CHECK(all_same(out, want3, 4));
  ls_ffi_vec_resample(out, x, 16, 4);
  double want4[] = {2.5, 6.5, 10.5, 14.5};
  CHECK(all_same(out, want4, 4));
  ls_ffi_vec_resample(out, x, 5, 1);
  CHECK(all_same(out, x, 5));
  ls_ffi_vec_resample(out, x, 5, 100);
  CHECK(same(out[0], 3));
  out[0] = 7;
  ls_ffi_vec_resample(out, x, 0, 3);
  CHECK(out[0] == 7);
  /* against the naive left-to-right block means: bit-identical */
  static double y[MAXN], r[MAXN], want[MAXN];
  int ok = 1;
  for (int n = 0; n <= 1001; n += (n < 60 ? 1 : 157))
    for (int f = 1; f <= 13; f++) {
      for (int i = 0; i < n; i++) y[i] = uniform();
      int m = (n + f - 1) / f;
      for (int j = 0; j < m; j++) {
        double s = 0;
        int cnt = 0;
        for (int i = j * f; i < n && i < (j + 1) * f; i++) s += y[i], cnt++;
        want[j] = s / cnt;
      }
      ls_ffi_vec_resample(r, y, n, f);
      if (!all_same(r, want, m)) {
        fprintf(stderr, "  resample n = %d, f = %d\n", n, f);
        ok = 0;
      }
    }
  CHECK(ok);
  double nan[] = {1, 2, NAN, 4, 5, 6};
  ls_ffi_vec_resample(out, nan, 6, 2);
  CHECK(out[0] == 1.5 && isnan(out[1]) && out[2] == 5.5);
}

/* ---- rolling windows against O(n * w) references ---- */

typedef void (*roll_fn)(double *, const double *, int32_t, int32_t);

enum { R_SUM, R_MEAN, R_MAX, R_MIN };

static double roll_ref(const double *x, int i, int w, int kind) {
  int lo = i - w + 1 < 0 ? 0 : i - w + 1;
  double acc = kind == R_MAX ? -INFINITY : kind == R_MIN ? INFINITY : 0;
  int nan = 0;
  for (int j = lo; j <= i; j++) {
    nan |= x[j] != x[j];
    if (kind == R_SUM || kind == R_MEAN) acc += x[j];
    else if (kind == R_MAX) acc = x[j] > acc ? x[j] : acc;
    else acc = x[j] < acc ? x[j] : acc;
  }
  if (nan) return NAN;
  return kind == R_MEAN ? acc / (i - lo + 1) : acc;
}

/* exact: integer data (every partial sum exact), else relative 1e-12 */
static int check_rolling(roll_fn f, int kind, const double *x, int n, int w, int exact) {
  static double out[MAXN + 1];
  out[n] = 12345;
  f(out, x, n, w);
  if (out[n] != 12345) return 0;
  for (int i = 0; i < n; i++) {
    double want = roll_ref(x, i, w, kind);
    if (exact ? !same(out[i] + 0.0, want + 0.0) : !close_to(out[i], want, 1e-12)) {
      fprintf(stderr, "  rolling kind %d n = %d w = %d: out[%d] = %.17g, want %.17g\n", kind, n, w,
              i, out[i], want);
      return 0;
    }
  }
  return 1;
}

static void test_rolling(void) {
  static roll_fn fns[] = {ls_ffi_vec_rolling_sum, ls_ffi_vec_rolling_mean, ls_ffi_vec_rolling_max,
                          ls_ffi_vec_rolling_min};
  static double ints[MAXN], reals[MAXN];
  for (int i = 0; i < MAXN; i++) ints[i] = small_int(), reals[i] = uniform();
  for (int kind = 0; kind < 4; kind++) {
    int ok = 1;
    for (int n = 0; n <= 45 && ok; n++)
      for (int w = 1; w <= 50 && ok; w++) ok = check_rolling(fns[kind], kind, ints, n, w, 1);
    int ws[] = {1, 2, 3, 10, 64, 100, 333, 1000, 1001, 5000};
    for (size_t k = 0; k < sizeof ws / sizeof *ws && ok; k++) {
      ok = check_rolling(fns[kind], kind, ints, 1001, ws[k], 1) &&
           check_rolling(fns[kind], kind, reals, 1001, ws[k], kind >= R_MAX);
    }
    CHECK(ok);
  }
  /* NaN: exactly the windows holding it are NaN; infinities per IEEE */
  double x[12];
  for (int i = 0; i < 12; i++) x[i] = i;
  x[5] = NAN;
  for (int kind = 0; kind < 4; kind++)
    for (int w = 1; w <= 13; w++) CHECK(check_rolling(fns[kind], kind, x, 12, w, 1));
  x[5] = INFINITY;
  x[8] = -INFINITY;
  for (int kind = 0; kind < 4; kind++)
    for (int w = 1; w <= 13; w++) CHECK(check_rolling(fns[kind], kind, x, 12, w, 1));
  double out[4];
  double y[] = {1, 2, 3, 4};
  ls_ffi_vec_rolling_mean(out, y, 4, 2);
  double want[] = {1, 1.5, 2.5, 3.5};
  CHECK(all_same(out, want, 4));
  ls_ffi_vec_rolling_max(out, y, 4, 3);
  double want_max[] = {1, 2, 3, 4};
  CHECK(all_same(out, want_max, 4));
}

/* ---- C helpers in a lua_State ---- */

static int run_push(lua_State *L) {
  ls_vec *v = ls_vec_push(L, 5);
  for (int i = 0; i < v->n; i++) v->d[i] = i * 1.5;
  lua_setglobal(L, "v");
  ls_vec *empty = ls_vec_push(L, 0);
  lua_setglobal(L, "e");
  lua_pushinteger(L, empty->n);
  return 1;
}

static int run_push_negative(lua_State *L) {
  ls_vec_push(L, -1);
  return 0;
}

static int run_to(lua_State *L) {
  int *ok = lua_touserdata(L, 1);
  lua_getglobal(L, "v");
  ls_vec *v = ls_vec_to(L, -1);
  *ok = v != NULL && v->n == 5 && v->d[4] == 6 && v->flags == 0 && (uintptr_t)v->d % 32 == 0;
  lua_pushnumber(L, 1);
  lua_newtable(L);
  if (luaL_loadstring(L, "return require('ffi').new('int64_t', 5), require('ffi').new('double[3]')"))
    lua_error(L);
  lua_call(L, 0, 2);
  *ok = *ok && !ls_vec_to(L, -1) && !ls_vec_to(L, -2) && !ls_vec_to(L, -3) && !ls_vec_to(L, -4);
  return 0;
}

static void test_lua_helpers(void) {
  lua_State *L = ls_vm_new();
  CHECK(L != NULL);
  if (!L) return;
  lua_pushcfunction(L, run_push);
  int rc = lua_pcall(L, 0, 1, 0);
  if (rc) fprintf(stderr, "  push: %s\n", lua_tostring(L, -1));
  CHECK(rc == 0 && lua_tointeger(L, -1) == 0);
  lua_pop(L, 1);
  const char *chk =
      "local vec = require('luastream.vec')\n"
      "assert(vec.is(v) and #v == 5 and v[5] == 6 and v:sum() == 15, tostring(v))\n"
      "assert(vec.is(e) and #e == 0)\n"
      "return tostring(v)";
  rc = luaL_loadstring(L, chk) || lua_pcall(L, 0, 1, 0);
  if (rc) fprintf(stderr, "  lua side: %s\n", lua_tostring(L, -1));
  CHECK(rc == 0);
  CHECK_STR(lua_tostring(L, -1), "vec(5){0, 1.5, 3, 4.5, 6}");
  lua_pop(L, 1);
  int ok = 0;
  lua_pushcfunction(L, run_to);
  lua_pushlightuserdata(L, &ok);
  rc = lua_pcall(L, 1, 0, 0);
  if (rc) fprintf(stderr, "  to: %s\n", lua_tostring(L, -1));
  CHECK(rc == 0 && ok);
  /* a negative length is a Lua error, not a crash */
  lua_pushcfunction(L, run_push_negative);
  rc = lua_pcall(L, 0, 0, 0);
  CHECK(rc != 0 && strstr(lua_tostring(L, -1), "length must be a whole number >= 0") != NULL);
  lua_pop(L, 1);
  ls_vm_close(L);
}

int main(void) {
  test_sum_mean();
  test_var_std();
  test_min_max();
  test_norm_dot();
  test_arith();
  test_unary();
  test_clip();
  test_magnitude();
  test_cumsum();
  test_diff();
  test_resample();
  test_rolling();
  test_lua_helpers();
  CHECK_DONE();
}
