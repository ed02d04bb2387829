/* check.h - the few assertion macros the C unit tests use.
 *
 * Each test binary calls CHECK*() and ends with CHECK_DONE(), which prints
 * "N passed, N failed" and returns the exit code. */
#ifndef LS_CHECK_H
#define LS_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The next number of a splitmix64 sequence whose state is *state: each test
 * keeps its own seed, so its random inputs are the same on every run. */
static inline uint64_t check_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* A double's bits and back. */
static inline uint64_t check_bits_of(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static inline double check_from_bits(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static int check_passed, check_failed;

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (cond) {                                                             \
      check_passed++;                                                       \
    } else {                                                                \
      check_failed++;                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                       \
  } while (0)

#define CHECK_STR(got, want)                                                \
  do {                                                                      \
    const char *g_ = (got), *w_ = (want);                                   \
    if (g_ && w_ && strcmp(g_, w_) == 0) {                                  \
      check_passed++;                                                       \
    } else {                                                                \
      check_failed++;                                                       \
      fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
              g_ ? g_ : "(null)", w_ ? w_ : "(null)");                      \
    }                                                                       \
  } while (0)

#define CHECK_DONE()                                                        \
  do {                                                                      \
    printf("%d passed, %d failed\n", check_passed, check_failed);           \
    return check_failed ? 1 : 0;                                            \
  } while (0)

#endif
