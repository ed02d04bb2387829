/* vec.h - ls.vec: contiguous double arrays and their C kernels.
 *
 * Owns the vec memory layout, the numeric kernels behind lua/luastream/vec.lua
 * (exported as ls_ffi_vec_* FFI entry points, called from Lua through ffi.C)
 * and two helpers that let C code (codecs) create and read vecs.
 *
 * A vec is one LuaJIT cdata object, a variable-length struct allocated by
 * ffi.new and owned by Lua's GC (no finalizer, no separate buffer):
 *
 *     offset 0   int32_t n       number of elements, fixed at creation
 *     offset 4   int32_t flags   reserved, always 0
 *     offset 32  double  d[n]    the elements, contiguous, 32-byte aligned
 *
 * The object itself is 32-byte aligned (LuaJIT honours the alignment of the
 * type), so SIMD loads of d never straddle a cache line; that halves the time
 * of the elementwise kernels next to 8-byte-aligned data. Lua declares n as
 * `const` so scripts cannot change it (every bounds check relies on it); C
 * sees the same layout without the qualifier.
 *
 * Kernels take plain pointers and a length, so C can call them on any double
 * array. Lengths are int32_t and >= 0 (0 is an empty input). The rules for
 * empty inputs, NaN and infinities are in docs/vec.md; in short: NaN
 * propagates through every kernel (min/max/argmin/argmax included, as in
 * numpy), infinities follow IEEE 754, and the reductions of an empty input are
 * sum = norm = dot = 0, mean = var = std = min = max = NaN, argmin = argmax = -1.
 *
 * Aliasing: elementwise kernels (add ... clip, cumsum, magnitude) accept
 * out == an input. diff, resample and the rolling kernels need out distinct
 * from x (their Lua wrappers check it). */
#ifndef LS_VEC_H
#define LS_VEC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lua.h>

typedef struct ls_vec {
  int32_t n;
  int32_t flags;
  _Alignas(32) double d[];
} ls_vec;

_Static_assert(offsetof(ls_vec, d) == 32, "lua/luastream/vec.lua declares the same layout");

/* ---- C side: creating and reading vecs in a lua_State ----
 * ls_vec_push loads luastream.vec on first use (package.path must reach lua/,
 * as in ls_vm_new); ls_vec_to never loads it (without it no vec exists). Both
 * may raise a Lua error: call them inside a protected call. */

/* Pushes a new zero-filled vec of n elements (n >= 0) and returns it. The
 * memory belongs to Lua's GC: it stays valid while the value is reachable. */
ls_vec *ls_vec_push(lua_State *L, int32_t n);

/* The vec at idx, or NULL when the value there is not a vec. */
ls_vec *ls_vec_to(lua_State *L, int idx);

/* NaNs in a vec. LuaJIT reads a double from FFI memory as it is, without
 * making its NaNs canonical, and keeps a Lua value's type in the top bits of
 * its NaN space: a negative NaN with any of bits 48-50 set would read as
 * nil, a table pointer or another type (or become one once arithmetic quiets
 * it). Code filling a vec from outside data (the decoders) passes each
 * element through ls_vec_clean: such a NaN becomes the canonical NaN
 * 0xfff8000000000000; every other double, other NaN payloads included, is
 * kept bit for bit. NaNs made by Lua or by the kernels are never affected. */
static inline double ls_vec_clean(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  if ((u >> 52) == 0xfff && (u & 0x0007000000000000u)) {
    u = 0xfff8000000000000u;
    memcpy(&x, &u, sizeof x);
  }
  return x;
}

/* ---- reductions ---- */
double ls_ffi_vec_sum(const double *x, int32_t n);
double ls_ffi_vec_mean(const double *x, int32_t n);
/* Variance with n - ddof in the denominator (ddof = 0: population); NaN when
 * n - ddof <= 0. Two-pass with a correction term. */
double ls_ffi_vec_var(const double *x, int32_t n, double ddof);
double ls_ffi_vec_std(const double *x, int32_t n, double ddof);
double ls_ffi_vec_min(const double *x, int32_t n);
double ls_ffi_vec_max(const double *x, int32_t n);
/* 0-based index of the first minimum / maximum (of the first NaN if there is
 * one); -1 when n <= 0. */
int32_t ls_ffi_vec_argmin(const double *x, int32_t n);
int32_t ls_ffi_vec_argmax(const double *x, int32_t n);
/* Euclidean norm, sqrt(sum x^2), unscaled (overflows beyond ~1e154). */
double ls_ffi_vec_norm(const double *x, int32_t n);
double ls_ffi_vec_dot(const double *x, const double *y, int32_t n);

/* ---- elementwise: out[i] = f(...) for i < n ---- */
void ls_ffi_vec_add(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_sub(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_mul(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_div(double *out, const double *a, const double *b, int32_t n);
void ls_ffi_vec_add_s(double *out, const double *x, double s, int32_t n);  /* x + s */
void ls_ffi_vec_sub_s(double *out, const double *x, double s, int32_t n);  /* x - s */
void ls_ffi_vec_rsub_s(double *out, const double *x, double s, int32_t n); /* s - x */
void ls_ffi_vec_mul_s(double *out, const double *x, double s, int32_t n);  /* x * s */
void ls_ffi_vec_div_s(double *out, const double *x, double s, int32_t n);  /* x / s */
void ls_ffi_vec_rdiv_s(double *out, const double *x, double s, int32_t n); /* s / x */
void ls_ffi_vec_neg(double *out, const double *x, int32_t n);
void ls_ffi_vec_abs(double *out, const double *x, int32_t n);
void ls_ffi_vec_sqrt(double *out, const double *x, int32_t n);
void ls_ffi_vec_copy(double *out, const double *x, int32_t n);
/* min(max(x, lo), hi); NaN stays NaN. Callers ensure lo <= hi. */
void ls_ffi_vec_clip(double *out, const double *x, int32_t n, double lo, double hi);
/* sqrt(x^2 + y^2 + z^2), or sqrt(x^2 + y^2) when z is NULL. */
void ls_ffi_vec_magnitude(double *out, const double *x, const double *y, const double *z,
                          int32_t n);
/* Running sum; blocked, so it may differ from a left-to-right sum in the
 * last bits. */
void ls_ffi_vec_cumsum(double *out, const double *x, int32_t n);

/* ---- shape-changing ---- */
/* out[i] = x[i + 1] - x[i], n - 1 outputs (none when n <= 1). */
void ls_ffi_vec_diff(double *out, const double *x, int32_t n);
/* Decimation by block means: out has ceil(n / factor) elements; out[j] is the
 * mean of x[j*factor .. j*factor + factor - 1], the last block averaging the
 * samples it has. factor >= 1. */
void ls_ffi_vec_resample(double *out, const double *x, int32_t n, int32_t factor);

/* ---- rolling windows: n outputs; out[i] covers x[max(0, i-w+1) .. i], so the
 * first w - 1 outputs use the partial window. O(n) for any w >= 1. ---- */
void ls_ffi_vec_rolling_sum(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_mean(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_max(double *out, const double *x, int32_t n, int32_t w);
void ls_ffi_vec_rolling_min(double *out, const double *x, int32_t n, int32_t w);

#endif
