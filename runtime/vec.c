/* vec.c - the C kernels of ls.vec and the C helpers that create and read
 * vecs (see vec.h for the layout and the contract of every kernel).
 *
 * lua/luastream/vec.lua validates arguments (types, lengths, aliasing) and
 * calls these through ffi.C; the kernels trust their arguments. They are
 * plain C11 loops written so that the compiler's auto-vectorizer turns them
 * into SIMD code on any target (SSE2/AVX2 on x86-64, NEON on AArch64),
 * without intrinsics:
 *  - reductions keep 16 independent partial sums: floating-point adds are not
 *    reassociated without -ffast-math, so the lanes are explicit, and 16 are
 *    enough to hide the add latency behind the loads;
 *  - min/max fold into a small array with a plain select (one SIMD min/max
 *    instruction); a separate check finds NaN, which the select would drop;
 *  - elementwise loops carry an ivdep hint (LS_VECTOR_LOOP) instead of
 *    `restrict`, because out may be the same array as an input (same index
 *    only, which is safe for SIMD), and `restrict` would make that call
 *    undefined;
 *  - sqrt is declared const below so vector square roots need no
 *    -fno-math-errno: nothing here reads errno;
 *  - on x86-64 every kernel is built twice, for the baseline (SSE2) and for
 *    AVX2, and the dynamic linker binds the one the CPU runs (GCC's
 *    target_clones, an ifunc resolved once at load time). */
#include "vec.h"

#include <math.h>
#include <stddef.h>

#include <lauxlib.h>

#include "luavalue.h"

#if defined(__GNUC__) /* GCC and clang */
extern double sqrt(double) __attribute__((const));
#endif

/* Before an elementwise loop: no dependency through memory between iterations
 * (out may be an input, at the same index only), and unrolled, so that the
 * speed of these short loops does not depend on where they land in the
 * instruction cache lines. */
#if defined(__clang__)
#define LS_VECTOR_LOOP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define LS_VECTOR_LOOP _Pragma("GCC ivdep") _Pragma("GCC unroll 4")
#else
#define LS_VECTOR_LOOP
#endif

/* Helpers are forced inline so that each clone of a kernel (below) gets them
 * compiled for its own instruction set. */
#if defined(__GNUC__)
#define LS_INLINE static inline __attribute__((always_inline))
#else
#define LS_INLINE static inline
#endif

#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define LS_KERNEL __attribute__((target_clones("avx2", "default"), aligned(64)))
#endif
#endif
#ifndef LS_KERNEL
#define LS_KERNEL
#endif

#define LANES 16 /* partial sums per reduction */
#define CHUNK 32 /* accumulators of min/max */
#define ARG_CHUNK 256 /* block of argmin/argmax */
#define GROUP 4 /* blocks of a rolling window processed side by side */

/* ---- reductions ------------------------------------------------------- */

_Static_assert(LANES == 16, "fold_lanes adds 16 lanes");

LS_INLINE double fold_lanes(const double *s) {
  double t[LANES / 2];
  for (int k = 0; k < LANES / 2; k++) t[k] = s[k] + s[k + LANES / 2];
  return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

LS_INLINE double sum_of(const double *x, int32_t n) {
  double s[LANES] = {0};
  int32_t i = 0;
  for (; i <= n - LANES; i += LANES)
    for (int k = 0; k < LANES; k++) s[k] += x[i + k];
  for (int k = 0; i < n; i++, k++) s[k] += x[i];
  return fold_lanes(s);
}

LS_INLINE double dot_of(const double *x, const double *y, int32_t n) {
  double s[LANES] = {0};
  int32_t i = 0;
  for (; i <= n - LANES; i += LANES)
    for (int k = 0; k < LANES; k++) s[k] += x[i + k] * y[i + k];
  for (int k = 0; i < n; i++, k++) s[k] += x[i] * y[i];
  return fold_lanes(s);
}

LS_KERNEL double ls_ffi_vec_sum(const double *x, int32_t n) { return sum_of(x, n); }

LS_KERNEL double ls_ffi_vec_dot(const double *x, const double *y, int32_t n) {
  return dot_of(x, y, n);
}

LS_KERNEL double ls_ffi_vec_norm(const double *x, int32_t n) { return sqrt(dot_of(x, x, n)); }

LS_KERNEL double ls_ffi_vec_mean(const double *x, int32_t n) {
  if (n <= 0) return NAN;
  return sum_of(x, n) / n;
}

/* Sum of (x - m)^2 in *sq and of (x - m) in *lin, one loop each (a loop
 * carrying both sets of lanes vectorizes badly). */
LS_INLINE void deviations(const double *x, int32_t n, double m, double *sq, double *lin) {
  double q[LANES] = {0}, c[LANES] = {0};
  int32_t i = 0;
  for (; i <= n - LANES; i += LANES)
    for (int k = 0; k < LANES; k++) {
      double d = x[i + k] - m;
      q[k] += d * d;
    }
  for (int k = 0; i < n; i++, k++) q[k] += (x[i] - m) * (x[i] - m);
  for (i = 0; i <= n - LANES; i += LANES)
    for (int k = 0; k < LANES; k++) c[k] += x[i + k] - m;
  for (int k = 0; i < n; i++, k++) c[k] += x[i] - m;
  *sq = fold_lanes(q);
  *lin = fold_lanes(c);
}

/* Corrected two-pass algorithm: the second term cancels the rounding error
 * of the mean (Chan, Golub & LeVeque). */
LS_INLINE double var_of(const double *x, int32_t n, double ddof) {
  double dof = (double)n - ddof;
  if (n <= 0 || !(dof > 0)) return NAN;
  double m = sum_of(x, n) / n, sq, lin;
  deviations(x, n, m, &sq, &lin);
  double v = (sq - lin * lin / n) / dof;
  return v < 0 ? 0 : v;
}

LS_KERNEL double ls_ffi_vec_var(const double *x, int32_t n, double ddof) {
  return var_of(x, n, ddof);
}

LS_KERNEL double ls_ffi_vec_std(const double *x, int32_t n, double ddof) {
  return sqrt(var_of(x, n, ddof));
}

/* Whether x holds a NaN: a finite sum rules out NaN (and infinities). */
LS_INLINE int has_nan(const double *x, int32_t n) {
  double s = sum_of(x, n);
  if (s - s == 0) return 0;
  for (int32_t i = 0; i < n; i++)
    if (x[i] != x[i]) return 1;
  return 0;
}

LS_INLINE int32_t first_nan(const double *x, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (x[i] != x[i]) return i;
  return -1;
}

/* v if it beats a (is smaller, or larger when max), else a. A NaN v never
 * beats; a NaN a is always beaten: callers rule NaN out first. */
LS_INLINE double pick(double v, double a, int max) {
  return max ? (v > a ? v : a) : (v < a ? v : a);
}

LS_INLINE void fold(double *restrict acc, const double *restrict x, int max) {
  for (int j = 0; j < CHUNK; j++) acc[j] = pick(x[j], acc[j], max);
}

/* min or max of x[0..n), n >= 1, no NaN in x */
LS_INLINE double extreme(const double *x, int32_t n, int max) {
  double r = x[0];
  int32_t i = 0;
  if (n >= 2 * CHUNK) {
    double acc[CHUNK];
    for (int j = 0; j < CHUNK; j++) acc[j] = x[j];
    for (i = CHUNK; i <= n - CHUNK; i += CHUNK) fold(acc, x + i, max);
    for (int h = CHUNK / 2; h >= 1; h /= 2)
      for (int j = 0; j < h; j++) acc[j] = pick(acc[j + h], acc[j], max);
    r = acc[0];
  }
  for (; i < n; i++) r = pick(x[i], r, max);
  return r;
}

LS_KERNEL double ls_ffi_vec_min(const double *x, int32_t n) {
  if (n <= 0 || has_nan(x, n)) return NAN;
  return extreme(x, n, 0);
}

LS_KERNEL double ls_ffi_vec_max(const double *x, int32_t n) {
  if (n <= 0 || has_nan(x, n)) return NAN;
  return extreme(x, n, 1);
}

/* Index of the first minimum (maximum): the extreme of each block of
 * ARG_CHUNK samples, keeping the first block that holds the best value, then
 * a scan of that block. */
LS_INLINE int32_t arg_extreme(const double *x, int32_t n, int max) {
  if (n <= 0) return -1;
  if (has_nan(x, n)) return first_nan(x, n);
  double best = x[0];
  int32_t from = 0;
  for (ptrdiff_t i = 0; i < n; i += ARG_CHUNK) {
    double m = extreme(x + i, n - i < ARG_CHUNK ? (int32_t)(n - i) : ARG_CHUNK, max);
    if (pick(m, best, max) != best) best = m, from = (int32_t)i;
  }
  for (int32_t i = from; i < n; i++)
    if (x[i] == best) return i;
  return from;
}

LS_KERNEL int32_t ls_ffi_vec_argmin(const double *x, int32_t n) { return arg_extreme(x, n, 0); }

LS_KERNEL int32_t ls_ffi_vec_argmax(const double *x, int32_t n) { return arg_extreme(x, n, 1); }

/* ---- elementwise -------------------------------------------------------- */

#define VEC_VEC(name, op)                                                            \
  LS_KERNEL void ls_ffi_vec_##name(double *out, const double *a, const double *b,    \
                                   int32_t n) {                                      \
    LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++) out[i] = a[i] op b[i];            \
  }

#define VEC_SCALAR(name, expr)                                                       \
  LS_KERNEL void ls_ffi_vec_##name(double *out, const double *x, double s,           \
                                   int32_t n) {                                      \
    LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++) {                                 \
      double v = x[i];                                                               \
      out[i] = (expr);                                                               \
    }                                                                                \
  }

#define VEC_UNARY(name, expr)                                                        \
  LS_KERNEL void ls_ffi_vec_##name(double *out, const double *x, int32_t n) {        \
    LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++) {                                 \
      double v = x[i];                                                               \
      out[i] = (expr);                                                               \
    }                                                                                \
  }

VEC_VEC(add, +)
VEC_VEC(sub, -)
VEC_VEC(mul, *)
VEC_VEC(div, /)
VEC_SCALAR(add_s, v + s)
VEC_SCALAR(sub_s, v - s)
VEC_SCALAR(rsub_s, s - v)
VEC_SCALAR(mul_s, v * s)
VEC_SCALAR(div_s, v / s)
VEC_SCALAR(rdiv_s, s / v)
VEC_UNARY(neg, -v)
VEC_UNARY(abs, fabs(v))
VEC_UNARY(sqrt, sqrt(v))
VEC_UNARY(copy, v)

LS_KERNEL void ls_ffi_vec_clip(double *out, const double *x, int32_t n, double lo, double hi) {
  LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++) {
    double v = x[i];
    v = v < lo ? lo : v;
    out[i] = v > hi ? hi : v;
  }
}

LS_KERNEL void ls_ffi_vec_magnitude(double *out, const double *x, const double *y,
                                    const double *z, int32_t n) {
  if (z == NULL) {
    LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++)
      out[i] = sqrt(x[i] * x[i] + y[i] * y[i]);
    return;
  }
  LS_VECTOR_LOOP for (int32_t i = 0; i < n; i++)
    out[i] = sqrt(x[i] * x[i] + y[i] * y[i] + z[i] * z[i]);
}

/* Blocks of 4: the prefix sums inside a block do not depend on the carry, so
 * the carried dependency is one add per 4 elements instead of one per element.
 * Each block is read before it is written (out may be x). The carry starts at
 * -0.0, the identity of IEEE addition, so out[0] == x[0] bit for bit. */
LS_KERNEL void ls_ffi_vec_cumsum(double *out, const double *x, int32_t n) {
  double c = -0.0;
  int32_t i = 0;
  for (; i <= n - 4; i += 4) {
    double p0 = x[i], p1 = p0 + x[i + 1], p2 = p1 + x[i + 2], p3 = p2 + x[i + 3];
    out[i] = c + p0;
    out[i + 1] = c + p1;
    out[i + 2] = c + p2;
    out[i + 3] = c + p3;
    c += p3;
  }
  for (; i < n; i++) out[i] = c += x[i];
}

/* ---- shape-changing ------------------------------------------------------ */

LS_KERNEL void ls_ffi_vec_diff(double *restrict out, const double *restrict x, int32_t n) {
  LS_VECTOR_LOOP for (int32_t i = 1; i < n; i++) out[i - 1] = x[i] - x[i - 1];
}

LS_INLINE double block_sum(const double *x, int32_t len) {
  double s = 0;
  for (int32_t t = 0; t < len; t++) s += x[t];
  return s;
}

/* Four blocks of f samples at once: four independent left-to-right sums, so
 * every mean equals the naive one exactly. */
LS_INLINE void block_means4(double *restrict out, const double *restrict x, int32_t f) {
  const double *x0 = x, *x1 = x + f, *x2 = x1 + f, *x3 = x2 + f;
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int32_t t = 0; t < f; t++) {
    s0 += x0[t];
    s1 += x1[t];
    s2 += x2[t];
    s3 += x3[t];
  }
  out[0] = s0 / f;
  out[1] = s1 / f;
  out[2] = s2 / f;
  out[3] = s3 / f;
}

LS_KERNEL void ls_ffi_vec_resample(double *restrict out, const double *restrict x, int32_t n,
                                   int32_t factor) {
  if (n <= 0 || factor < 1) return;
  int32_t blocks = n / factor, rest = n % factor, b = 0;
  for (; b <= blocks - 4; b += 4) block_means4(out + b, x + (ptrdiff_t)b * factor, factor);
  for (; b < blocks; b++) out[b] = block_sum(x + (ptrdiff_t)b * factor, factor) / factor;
  if (rest) out[blocks] = block_sum(x + (ptrdiff_t)blocks * factor, rest) / rest;
}

/* ---- rolling windows ---------------------------------------------------- *
 * van Herk / Gil-Werman: cut x into blocks of w samples starting at 0. The
 * window ending at i = b + t (block start b, 0 <= t < w) is the suffix of the
 * previous block after position t, followed by the prefix of its own block up
 * to t. Pass 1 writes, for every block but the first, the suffixes of the
 * previous block into out[b + t]; pass 2 runs the prefixes forward and
 * combines. Two passes of one operation per element whatever w is, and no
 * subtraction: a NaN or an infinity only reaches the windows that hold it.
 * Each pass runs GROUP blocks side by side where it can, so that GROUP
 * independent dependency chains keep the FPU busy.
 *
 * max and min use a plain select, which drops NaN; the kernels then mark the
 * windows that hold a NaN (nan_windows), only when x has one. */

#define ROLLING(name, OP, IDENT)                                                      \
  /* out[b + t] = suffix of the block before b, for the t < w that exist */           \
  LS_INLINE void name##_suffix1(double *restrict out, const double *restrict x,       \
                                ptrdiff_t n, ptrdiff_t w, ptrdiff_t b) {              \
    const double *p = x + (b - w);                                                    \
    ptrdiff_t last = n - 1 - b < w - 1 ? n - 1 - b : w - 1;                           \
    double s = IDENT;                                                                 \
    for (ptrdiff_t t = w - 1; t > last; t--) s = OP(s, p[t]);                         \
    for (ptrdiff_t t = last; t >= 0; t--) {                                           \
      out[b + t] = s;                                                                 \
      s = OP(s, p[t]);                                                                \
    }                                                                                 \
  }                                                                                   \
  /* the same for GROUP full blocks from b on, side by side */                        \
  LS_INLINE void name##_suffixes(double *restrict out, const double *restrict x,      \
                                 ptrdiff_t w, ptrdiff_t b) {                          \
    const double *p = x + (b - w);                                                    \
    double *o = out + b, s[GROUP];                                                    \
    for (int k = 0; k < GROUP; k++) s[k] = IDENT;                                     \
    for (ptrdiff_t t = w - 1; t >= 0; t--)                                            \
      for (int k = 0; k < GROUP; k++) {                                               \
        o[k * w + t] = s[k];                                                          \
        s[k] = OP(s[k], p[k * w + t]);                                                \
      }                                                                               \
  }                                                                                   \
  /* out[b + t] = OP(out[b + t], prefix of the block at b up to t), t < len */        \
  LS_INLINE void name##_prefix1(double *restrict out, const double *restrict x,       \
                                ptrdiff_t b, ptrdiff_t len) {                         \
    double s = IDENT;                                                                 \
    for (ptrdiff_t t = 0; t < len; t++) {                                             \
      s = OP(s, x[b + t]);                                                            \
      out[b + t] = OP(out[b + t], s);                                                 \
    }                                                                                 \
  }                                                                                   \
  LS_INLINE void name##_prefixes(double *restrict out, const double *restrict x,      \
                                 ptrdiff_t w, ptrdiff_t b) {                          \
    const double *p = x + b;                                                          \
    double *o = out + b, s[GROUP];                                                    \
    for (int k = 0; k < GROUP; k++) s[k] = IDENT;                                     \
    for (ptrdiff_t t = 0; t < w; t++)                                                 \
      for (int k = 0; k < GROUP; k++) {                                               \
        s[k] = OP(s[k], p[k * w + t]);                                                \
        o[k * w + t] = OP(o[k * w + t], s[k]);                                        \
      }                                                                               \
  }                                                                                   \
  LS_INLINE void name(double *restrict out, const double *restrict x, ptrdiff_t n,    \
                      ptrdiff_t w) {                                                  \
    ptrdiff_t b = w;                                                                  \
    for (; b + GROUP * w <= n; b += GROUP * w) name##_suffixes(out, x, w, b);         \
    for (; b < n; b += w) name##_suffix1(out, x, n, w, b);                            \
    double s = IDENT;                                                                 \
    for (ptrdiff_t t = 0; t < n && t < w; t++) out[t] = s = OP(s, x[t]);              \
    for (b = w; b + GROUP * w <= n; b += GROUP * w) name##_prefixes(out, x, w, b);    \
    for (; b < n; b += w) name##_prefix1(out, x, b, n - b < w ? n - b : w);           \
  }

LS_INLINE double add2(double a, double b) { return a + b; }
LS_INLINE double max2(double a, double b) { return b > a ? b : a; }
LS_INLINE double min2(double a, double b) { return b < a ? b : a; }

ROLLING(rolling_sum, add2, 0.0)
ROLLING(rolling_max, max2, -INFINITY)
ROLLING(rolling_min, min2, INFINITY)

/* out[i] = NaN for every window x[i - w + 1 .. i] holding a NaN. */
LS_INLINE void nan_windows(double *out, const double *x, ptrdiff_t n, ptrdiff_t w) {
  ptrdiff_t until = 0; /* out[i] is NaN while i < until */
  for (ptrdiff_t i = 0; i < n; i++) {
    if (x[i] != x[i]) until = i + w;
    if (i < until) out[i] = NAN;
  }
}

LS_KERNEL void ls_ffi_vec_rolling_sum(double *out, const double *x, int32_t n, int32_t w) {
  if (n > 0 && w >= 1) rolling_sum(out, x, n, w);
}

LS_KERNEL void ls_ffi_vec_rolling_mean(double *out, const double *x, int32_t n, int32_t w) {
  if (n <= 0 || w < 1) return;
  rolling_sum(out, x, n, w);
  int32_t partial = n < w ? n : w - 1;
  for (int32_t i = 0; i < partial; i++) out[i] /= i + 1;
  for (int32_t i = partial; i < n; i++) out[i] /= w;
}

LS_KERNEL void ls_ffi_vec_rolling_max(double *out, const double *x, int32_t n, int32_t w) {
  if (n <= 0 || w < 1) return;
  rolling_max(out, x, n, w);
  if (has_nan(x, n)) nan_windows(out, x, n, w);
}

LS_KERNEL void ls_ffi_vec_rolling_min(double *out, const double *x, int32_t n, int32_t w) {
  if (n <= 0 || w < 1) return;
  rolling_min(out, x, n, w);
  if (has_nan(x, n)) nan_windows(out, x, n, w);
}

/* ---- vecs from C ---------------------------------------------------------- */

static const char KEY_HELPERS[] = "luastream.vec.c_helpers";

/* { new = vec.new, is = exact type test }, cached in the registry. */
static const char HELPERS_SRC[] =
    "local ffi = require('ffi')\n"
    "local vec = require('luastream.vec')\n"
    "local ct = vec.ctype\n"
    "return { new = vec.new, is = function(x) return ffi.typeof(x) == ct end }\n";

static void push_helper(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, KEY_HELPERS);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, HELPERS_SRC, sizeof HELPERS_SRC - 1, "=vec.c") != 0) lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, KEY_HELPERS);
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

ls_vec *ls_vec_push(lua_State *L, int32_t n) {
  push_helper(L, "new");
  lua_pushnumber(L, n);
  lua_call(L, 1, 1);
  return (ls_vec *)lua_topointer(L, -1);
}

/* Whether luastream.vec is loaded in L (it registers itself under this key). */
static int vec_loaded(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "luastream.vec.module");
  int loaded = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return loaded;
}

ls_vec *ls_vec_to(lua_State *L, int idx) {
  if (lua_type(L, idx) != LS_LUA_TCDATA) return NULL;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (!vec_loaded(L)) return NULL; /* then no vec exists */
  push_helper(L, "is");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  int is = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return is ? (ls_vec *)lua_topointer(L, idx) : NULL;
}
