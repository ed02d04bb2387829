/* test_dtoa.c - unit tests of ls_dtoa, ls_u64toa and ls_decimal_to_double
 * (runtime/dtoa.c).
 *
 * Every output must read back (strtod) to exactly the input, be no longer than
 * the snprintf reference (the first of "%.15g", "%.16g", "%.17g" that reads
 * back), carry the same digits whenever it is as long, and follow the
 * JavaScript layout. Inputs: fixed cases, boundaries, every binary exponent,
 * small subnormals, "nice" decimals and random bit patterns (2 million by
 * default; set LS_DTOA_RANDOM=N for a longer run). ls_decimal_to_double must
 * agree with strtod whenever it answers, and answer for nearly all inputs. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dtoa.h"

/* A decimal as significant digits (no leading or trailing zeros) and the
 * position of the decimal point: value = 0.digits * 10^point. */
typedef struct decimal {
  char digits[40];
  int point;
} decimal;

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void) { return check_splitmix64(&rng_state); }


/* Parses "-ddd.ddde+x" style text into a decimal; returns 0 on success. */
static int parse_decimal(const char *s, decimal *d) {
  int nd = 0, int_digits = -1, lead = 0;
  if (*s == '-') s++;
  for (; *s && *s != 'e'; s++) {
    if (*s == '.') {
      int_digits = nd + lead;
      continue;
    }
    if (*s < '0' || *s > '9') return -1;
    if (nd == 0 && *s == '0') {
      lead++;
      continue;
    }
    if (nd >= 39) return -1;
    d->digits[nd++] = *s;
  }
  if (int_digits < 0) int_digits = nd + lead;
  int exp10 = *s == 'e' ? atoi(s + 1) : 0;
  while (nd > 0 && d->digits[nd - 1] == '0') nd--;
  d->digits[nd] = '\0';
  d->point = int_digits - lead + exp10;
  return nd == 0 ? -1 : 0;
}

/* The reference: the first of %.15g/%.16g/%.17g precision that reads back.
 * Subnormals have fewer significant bits, so for them every precision from 1
 * is tried. */
static void reference(double v, decimal *d) {
  char buf[64];
  for (int prec = fabs(v) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (strtod(buf, NULL) == v || prec == 17) break;
  }
  parse_decimal(buf, d);
}

/* Checks the JavaScript layout of s, whose decimal is d. */
static int layout_ok(const char *s, const decimal *d) {
  int k = (int)strlen(d->digits), exp10 = d->point - 1;
  int want_exp = exp10 < -6 || exp10 >= 21;
  const char *e = strchr(s, 'e'), *dot = strchr(s, '.');
  if (want_exp != (e != NULL)) return 0;
  if (want_exp) return (k > 1) == (dot != NULL) && (e[1] == '+' || e[1] == '-');
  if (d->point >= k) return dot == NULL;
  if (dot == NULL || dot[-1] < '0' || s[strlen(s) - 1] == '0') return 0;
  return d->point > 0 ? 1 : strncmp(s + (s[0] == '-'), "0.", 2) == 0;
}

static long n_checked, n_bad, n_shorter;

/* Checks ls_dtoa(v) against the reference; returns 1 when it is right. */
static int check_one(double v) {
  if (!isfinite(v)) return 1;
  char out[LS_DTOA_BUFSIZE + 8];
  memset(out, 'x', sizeof out);
  int len = ls_dtoa(v, out);
  decimal got, want;
  int ok = len > 0 && len < LS_DTOA_BUFSIZE && out[len] == '\0' && (int)strlen(out) == len;
  ok = ok && strtod(out, NULL) == v && signbit(strtod(out, NULL)) == signbit(v);
  if (ok && v != 0) {
    reference(v, &want);
    ok = parse_decimal(out, &got) == 0 && layout_ok(out, &got);
    size_t gl = strlen(got.digits), wl = strlen(want.digits);
    ok = ok && gl <= wl;
    if (ok && gl == wl) ok = strcmp(got.digits, want.digits) == 0 && got.point == want.point;
    if (ok && gl < wl) {
      /* The reference can only lose there when v is a power of two: its lower
       * neighbour is closer than its upper one, so the interval is lopsided. */
      ok = frexp(fabs(v), &(int){0}) == 0.5;
      n_shorter++;
    }
  }
  n_checked++;
  if (!ok && ++n_bad <= 20) fprintf(stderr, "ls_dtoa(%.17g) = \"%s\": wrong\n", v, out);
  return ok;
}

static void check_both_signs_and_neighbours(double v) {
  check_one(v);
  check_one(-v);
  check_one(nextafter(v, INFINITY));
  check_one(nextafter(v, -INFINITY));
}

static void test_fixed(void) {
  static const struct {
    double v;
    const char *want;
  } cases[] = {
      {0.1, "0.1"},
      {1e21, "1e+21"},
      {5e-7, "5e-7"},
      {100, "100"},
      {-0.0, "-0"},
      {0.0, "0"},
      {1e-6, "0.000001"},
      {1.5e-6, "0.0000015"},
      {1e20, "100000000000000000000"},
      {123456789012345680000.0, "123456789012345680000"},
      {1.2345678901234568e21, "1.2345678901234568e+21"},
      {123.456, "123.456"},
      {-2.5, "-2.5"},
      {1e-300, "1e-300"},
      {1.5e300, "1.5e+300"},
      {0.3, "0.3"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1.0 / 3, "0.3333333333333333"},
      {2.0 / 3, "0.6666666666666666"},
      {5e-324, "5e-324"},
      {DBL_MIN, "2.2250738585072014e-308"},
      {DBL_MAX, "1.7976931348623157e+308"},
      {9007199254740992.0, "9007199254740992"},
      {9007199254740994.0, "9007199254740994"},
      {1e22, "1e+22"},
      {1e23, "1e+23"},
      {0.0123, "0.0123"},
      {-0.98, "-0.98"},
      {1764160000123.0, "1764160000123"},
      {4.35, "4.35"},
      {2.5e-7, "2.5e-7"},
      {123e-20, "1.23e-18"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[LS_DTOA_BUFSIZE];
    int len = ls_dtoa(cases[i].v, out);
    CHECK_STR(out, cases[i].want);
    CHECK(len == (int)strlen(cases[i].want));
  }
}

static void test_boundaries(void) {
  double special[] = {DBL_MIN, DBL_MAX, DBL_EPSILON, 5e-324, 1.0, 0.5, 9007199254740991.0,
                      9007199254740992.0, 9007199254740993.0, 4503599627370496.5, 0.1, 1e21,
                      1e-7, 1e-6, 123456.789, 2.2250738585072009e-308};
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) check_both_signs_and_neighbours(special[i]);
  for (int e = -1074; e <= 1023; e++) check_both_signs_and_neighbours(ldexp(1.0, e));
  for (int e = -323; e <= 308; e++) {
    char buf[16];
    snprintf(buf, sizeof buf, "1e%d", e);
    check_both_signs_and_neighbours(strtod(buf, NULL));
  }
  CHECK(n_bad == 0);
}

/* Every binary exponent, with edge and random mantissas. */
static void test_every_exponent(void) {
  const uint64_t mask = (UINT64_C(1) << 52) - 1;
  for (uint64_t be = 0; be < 2047; be++) {
    uint64_t fracs[] = {0, 1, 2, mask, mask - 1, UINT64_C(1) << 51, rng_next() & mask, rng_next() & mask,
                        rng_next() & mask, rng_next() & mask};
    for (size_t i = 0; i < sizeof fracs / sizeof fracs[0]; i++) {
      double v = check_from_bits((be << 52) | fracs[i]);
      if (v != 0) check_one(v);
    }
  }
  for (uint64_t c = 1; c <= 20000; c++) check_one(check_from_bits(c)); /* smallest subnormals */
  CHECK(n_bad == 0);
}

/* Doubles read from short decimals must print as those decimals. */
static void test_nice_decimals(long count) {
  for (long i = 0; i < count; i++) {
    uint64_t limit = 10;
    for (int ndig = 1 + (int)(rng_next() % 15); ndig > 1; ndig--) limit *= 10;
    uint64_t m = 1 + rng_next() % (limit - 1); /* 1 to 15 digits */
    int exp10 = (int)(rng_next() % 600) - 300;
    if (rng_next() % 2) exp10 = (int)(rng_next() % 30) - 15;
    char buf[64];
    snprintf(buf, sizeof buf, "%llue%d", (unsigned long long)m, exp10);
    double v = strtod(buf, NULL);
    if (v == 0 || isinf(v) || v < DBL_MIN) continue;
    check_one(v);
    char out[LS_DTOA_BUFSIZE];
    ls_dtoa(v, out);
    decimal got, want;
    if (parse_decimal(out, &got) || parse_decimal(buf, &want) ||
        strcmp(got.digits, want.digits) != 0 || got.point != want.point) {
      if (++n_bad <= 20) fprintf(stderr, "ls_dtoa(%s) = \"%s\": not the short form\n", buf, out);
    }
  }
  for (int i = 0; i < 100000; i++) { /* cents and thousandths, like sensor values */
    check_one(i / 100.0);
    check_one(i / 1000.0);
    check_one((double)(rng_next() >> 11)); /* integers below 2^53 */
  }
  CHECK(n_bad == 0);
}

static void test_random_bits(long count) {
  for (long i = 0; i < count; i++) {
    double v = check_from_bits(rng_next());
    if (isfinite(v) && v != 0) check_one(v);
  }
  CHECK(n_bad == 0);
}

static void check_u64toa(uint64_t v) {
  char got[32], want[32];
  memset(got, 'x', sizeof got);
  int n = ls_u64toa(v, got);
  snprintf(want, sizeof want, "%llu", (unsigned long long)v);
  int ok = n == (int)strlen(want) && memcmp(got, want, (size_t)n) == 0 && got[n] == 'x';
  if (!ok && ++n_bad <= 20) fprintf(stderr, "ls_u64toa(%s) = %.*s\n", want, n, got);
}

static void test_u64toa(void) {
  uint64_t p = 1;
  for (int i = 0; i < 20; i++, p *= 10) {
    check_u64toa(p);
    check_u64toa(p - 1);
    check_u64toa(p + 1);
    check_u64toa(p * 2);
  }
  check_u64toa(0);
  check_u64toa(UINT64_MAX);
  check_u64toa(UINT64_MAX - 1);
  for (int i = 0; i < 100000; i++) check_u64toa(rng_next() >> (rng_next() % 64));
  CHECK(n_bad == 0);
}

static long n_parsed, n_parse_bad, n_parse_fallback;

/* ls_decimal_to_double(digits, exp10) against strtod. */
static void check_parse(uint64_t digits, int exp10) {
  char text[48];
  snprintf(text, sizeof text, "%llue%d", (unsigned long long)digits, exp10);
  double want = strtod(text, NULL), got = -1;
  n_parsed++;
  if (ls_decimal_to_double(digits, exp10, &got) != 0) {
    n_parse_fallback++;
    return;
  }
  if (memcmp(&got, &want, sizeof got) != 0 && ++n_parse_bad <= 20)
    fprintf(stderr, "ls_decimal_to_double(%s) = %.17g, want %.17g\n", text, got, want);
}

/* Splits the shortest digits of v and parses them back. */
static void check_parse_of_double(double v) {
  char buf[40];
  snprintf(buf, sizeof buf, "%.16e", v); /* 17 significant digits */
  uint64_t digits = 0;
  for (const char *p = buf; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits = digits * 10 + (uint64_t)(*p - '0');
  int exp10 = atoi(strchr(buf, 'e') + 1) - 16;
  check_parse(digits, exp10);
  check_parse(digits + 1, exp10); /* neighbours in the 17th digit */
  check_parse(digits - 1, exp10);
  check_parse(digits * 100 + 50, exp10 - 2); /* 19 digits, near a halfway point */
}

static void test_parse(long count) {
  const uint64_t max19 = UINT64_C(9999999999999999999);
  uint64_t edge[] = {1, 9, 10, 4503599627370496, 9007199254740991, 9007199254740992, 9007199254740993, max19};
  for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
    for (int e = -345; e <= 330; e++) check_parse(edge[i], e);
  for (long i = 0; i < count; i++) {
    uint64_t digits = rng_next() % (max19 + 1);
    digits >>= rng_next() % 64; /* all lengths */
    if (digits == 0) digits = 1;
    check_parse(digits, (int)(rng_next() % 640) - 330);
    check_parse(digits, (int)(rng_next() % 60) - 30);
    double v = check_from_bits(rng_next() >> 1);
    if (isfinite(v) && v >= DBL_MIN) check_parse_of_double(v);
  }
  double samples[] = {0.1, 0.3, 1.0 / 3, DBL_MIN, DBL_MAX, 1e23, 9007199254740993.0, 0.0123, 2.5e-7};
  for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) check_parse_of_double(samples[i]);
  double zero = -1;
  CHECK(ls_decimal_to_double(0, 5, &zero) == 0 && zero == 0 && !signbit(zero));
  printf("decimal_to_double: %ld inputs, %ld wrong, %ld left to strtod\n", n_parsed, n_parse_bad, n_parse_fallback);
  CHECK(n_parse_bad == 0);
  CHECK(n_parse_fallback * 10 < n_parsed); /* out-of-range exponents only, mostly */
}

int main(void) {
  const char *env = getenv("LS_DTOA_RANDOM");
  long random_count = env ? atol(env) : 2000000;
  test_fixed();
  test_u64toa();
  test_boundaries();
  test_every_exponent();
  test_nice_decimals(200000);
  test_random_bits(random_count);
  test_parse(random_count / 8);
  printf("dtoa: %ld values checked, %ld wrong, %ld (powers of two) shorter than the reference\n",
         n_checked, n_bad, n_shorter);
  CHECK_DONE();
}
