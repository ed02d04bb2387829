/* test_state.c - unit tests of the LMDB state store (runtime/state.c).
 *
 * Every test works in a fresh directory made by mkdtemp under /tmp and
 * removes it afterwards. Covered: put/get/delete semantics, all-or-nothing
 * commits when the map is full, map growth, per-partition separation and
 * drop, marks, prefix scans, listing, reopening, open errors, name
 * validation, the entry key layout of stateful steps (prefix, split, the
 * order of scans), and the time of a 100k-key commit (printed, not asserted). */
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "state.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* ---- helpers ------------------------------------------------------------- */

static char *make_tmp(void) {
  char tmpl[] = "/tmp/ls_state_XXXXXX";
  char *d = mkdtemp(tmpl);
  if (!d) {
    perror("mkdtemp");
    exit(1);
  }
  return strdup(d);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void rm_tmp(char *dir) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

/* Opens dir (o NULL: defaults); the tests cannot go on without it. */
static ls_state *must_open(const char *dir, const ls_state_opts *o) {
  char err[256] = "";
  ls_state *s = ls_state_open(dir, o, err, sizeof err);
  if (!s) {
    fprintf(stderr, "open %s: %s\n", dir, err);
    exit(1);
  }
  return s;
}

static ls_state *open_opts(const char *dir, size_t map, size_t max, int durable) {
  ls_state_opts o = {map, max, durable};
  return must_open(dir, &o);
}

static int put_str(ls_state *s, const char *store, int32_t p, const char *k, const char *v) {
  ls_state_put put = {store, p, k, strlen(k), v, v ? strlen(v) : 0};
  char err[256];
  int rc = ls_state_commit(s, &put, 1, NULL, 0, err, sizeof err);
  if (rc) fprintf(stderr, "commit: %s\n", err);
  return rc;
}

/* The value of k as a string in a static buffer; NULL when missing. */
static const char *get_str(ls_state *s, const char *store, int32_t p, const char *k) {
  static char buf[4096];
  const void *v;
  size_t n;
  int rc = ls_state_get(s, store, p, k, strlen(k), &v, &n);
  if (rc != 1 || n >= sizeof buf) return NULL;
  memcpy(buf, v, n);
  buf[n] = '\0';
  return buf;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Deterministic value bytes of key i: length 1..3000, content from i. */
static size_t value_of(size_t i, unsigned char *buf) {
  size_t n = 1 + (i * 7919) % 3000;
  for (size_t j = 0; j < n; j++) buf[j] = (unsigned char)(i * 31 + j * 17);
  return n;
}

static int same_value(ls_state *s, const char *store, int32_t p, size_t i) {
  char key[32];
  unsigned char want[3000];
  snprintf(key, sizeof key, "k%08zu", i);
  size_t wn = value_of(i, want), n;
  const void *v;
  if (ls_state_get(s, store, p, key, strlen(key), &v, &n) != 1) return 0;
  return n == wn && memcmp(v, want, n) == 0;
}

/* Commits keys [from, to) of store "g" in partition i % 4. */
static int commit_range(ls_state *s, size_t from, size_t to, char *err, size_t errlen) {
  size_t n = to - from;
  ls_state_put *puts = calloc(n, sizeof *puts);
  unsigned char *vals = malloc(n * 3000);
  char(*keys)[32] = malloc(n * sizeof *keys);
  for (size_t j = 0; j < n; j++) {
    size_t i = from + j;
    snprintf(keys[j], sizeof keys[j], "k%08zu", i);
    size_t vn = value_of(i, vals + j * 3000);
    puts[j] = (ls_state_put){"g", (int32_t)(i % 4), keys[j], strlen(keys[j]), vals + j * 3000, vn};
  }
  int rc = ls_state_commit(s, puts, n, NULL, 0, err, errlen);
  free(puts);
  free(vals);
  free(keys);
  return rc;
}

/* ---- tests --------------------------------------------------------------- */

static void test_put_get_delete(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  CHECK(put_str(s, "counts", 0, "a", "1") == 0);
  CHECK(put_str(s, "counts", 0, "b", "2") == 0);
  CHECK_STR(get_str(s, "counts", 0, "a"), "1");
  CHECK_STR(get_str(s, "counts", 0, "b"), "2");
  CHECK(get_str(s, "counts", 0, "c") == NULL);
  const void *v;
  size_t n;
  CHECK(ls_state_get(s, "counts", 0, "c", 1, &v, &n) == 0);
  CHECK(ls_state_get(s, "counts", 1, "a", 1, &v, &n) == 0); /* no such partition */
  CHECK(ls_state_get(s, "other", 0, "a", 1, &v, &n) == 0);  /* no such store */

  CHECK(put_str(s, "counts", 0, "a", "3") == 0); /* overwrite */
  CHECK_STR(get_str(s, "counts", 0, "a"), "3");
  CHECK(put_str(s, "counts", 0, "b", NULL) == 0); /* delete */
  CHECK(ls_state_get(s, "counts", 0, "b", 1, &v, &n) == 0);
  CHECK(put_str(s, "counts", 0, "b", NULL) == 0); /* delete of a missing key */
  CHECK(put_str(s, "counts", 9, "b", NULL) == 0); /* in a missing partition */

  /* Puts apply in order within one commit. */
  ls_state_put seq[] = {
      {"counts", 0, "x", 1, "1", 1},      {"counts", 0, "x", 1, NULL, 0},
      {"counts", 0, "y", 1, NULL, 0},     {"counts", 0, "y", 1, "2", 1},
      {"counts", 0, "e", 1, "", 0}, /* empty value, not a delete */
      {"counts", 0, "k\0z", 3, "bin", 3},
  };
  CHECK(ls_state_commit(s, seq, 6, NULL, 0, NULL, 0) == 0);
  CHECK(get_str(s, "counts", 0, "x") == NULL);
  CHECK_STR(get_str(s, "counts", 0, "y"), "2");
  CHECK(ls_state_get(s, "counts", 0, "e", 1, &v, &n) == 1 && n == 0);
  CHECK(ls_state_get(s, "counts", 0, "k\0z", 3, &v, &n) == 1 && n == 3 && memcmp(v, "bin", 3) == 0);
  CHECK(ls_state_get(s, "counts", 0, "k", 1, &v, &n) == 0);

  /* Keys: 1..511 bytes. */
  char big[600];
  memset(big, 'k', sizeof big);
  ls_state_put bad = {"counts", 0, big, 512, "v", 1};
  char err[256] = "";
  CHECK(ls_state_commit(s, &bad, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: counts: key of 512 bytes exceeds the 511-byte limit");
  bad.klen = 511;
  CHECK(ls_state_commit(s, &bad, 1, NULL, 0, err, sizeof err) == 0);
  CHECK(ls_state_get(s, "counts", 0, big, 511, &v, &n) == 1);
  CHECK(ls_state_get(s, "counts", 0, "", 0, &v, &n) == -1);
  CHECK_STR(ls_state_error(s), "state: counts: empty key");
  ls_state_close(s);
  rm_tmp(dir);
}

/* A commit that cannot fit writes nothing; earlier data stays readable. */
static void test_atomic_map_full(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 64 * KIB, 64 * KIB, 1);
  CHECK(ls_state_map_size(s) == 64 * KIB);
  ls_state_put small[] = {{"w", 0, "a", 1, "old-a", 5}, {"w", 1, "b", 1, "old-b", 5}};
  ls_state_mark mark = {"w", 0, 10, 100};
  CHECK(ls_state_commit(s, small, 2, &mark, 1, NULL, 0) == 0);

  /* 1 MiB over a new partition too, plus a changed value and mark. */
  enum { N = 256 };
  static char vals[N][4096];
  char keys[N][16];
  ls_state_put puts[N + 1];
  puts[0] = (ls_state_put){"w", 0, "a", 1, "new-a", 5};
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "big%03d", i);
    memset(vals[i], 'a' + i % 26, sizeof vals[i]);
    puts[i + 1] = (ls_state_put){"w", 5, keys[i], strlen(keys[i]), vals[i], sizeof vals[i]};
  }
  ls_state_mark mark2 = {"w", 0, 20, 200};
  char err[256] = "";
  CHECK(ls_state_commit(s, puts, N + 1, &mark2, 1, err, sizeof err) == -1);
  CHECK_STR(err, "state: map full (64 KiB) and growth disabled");
  CHECK_STR(ls_state_error(s), "state: map full (64 KiB) and growth disabled");
  CHECK(ls_state_map_size(s) == 64 * KIB);
  CHECK_STR(get_str(s, "w", 0, "a"), "old-a");
  CHECK_STR(get_str(s, "w", 1, "b"), "old-b");
  CHECK(get_str(s, "w", 5, "big000") == NULL);
  int64_t c, in;
  CHECK(ls_state_get_mark(s, "w", 0, &c, &in) == 1 && c == 10 && in == 100);
  CHECK(ls_state_get_mark(s, "w", 5, &c, &in) == 0);

  /* A bad put late in a commit also leaves nothing behind. */
  ls_state_put mixed[] = {
      {"w", 0, "a", 1, "mid-a", 5}, {"w", 7, "z", 1, "z", 1}, {"bad/store", 0, "k", 1, "v", 1}};
  CHECK(ls_state_commit(s, mixed, 3, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: store name \"bad/store\" contains '/'");
  CHECK_STR(get_str(s, "w", 0, "a"), "old-a");
  CHECK(get_str(s, "w", 7, "z") == NULL);

  /* The handle still works; partition 5 can be written once it fits. */
  CHECK(put_str(s, "w", 5, "small", "fits") == 0);
  CHECK_STR(get_str(s, "w", 5, "small"), "fits");
  ls_state_close(s);

  /* A limit above the initial size: grows up to it, then stops. */
  s = open_opts(dir, 64 * KIB, 256 * KIB, 0);
  CHECK(ls_state_commit(s, puts, N + 1, &mark2, 1, err, sizeof err) == -1);
  CHECK_STR(err, "state: map full (256 KiB) and limit reached");
  CHECK(ls_state_map_size(s) == 256 * KIB);
  CHECK_STR(get_str(s, "w", 0, "a"), "old-a");
  CHECK(get_str(s, "w", 5, "big000") == NULL);
  CHECK(ls_state_get_mark(s, "w", 0, &c, &in) == 1 && c == 10 && in == 100);
  ls_state_close(s);
  rm_tmp(dir);
}

static void test_growth(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 64 * KIB, 0, 0);
  char err[256] = "";
  int ok = 1;
  for (size_t i = 0; i < 4000; i += 200) /* ~6 MiB over 20 commits */
    ok &= commit_range(s, i, i + 200, err, sizeof err) == 0;
  CHECK(ok);
  size_t after_many = ls_state_map_size(s);
  CHECK(commit_range(s, 4000, 8000, err, sizeof err) == 0); /* ~6 MiB at once */
  size_t after_one = ls_state_map_size(s);
  printf("map growth: 64 KiB -> %zu KiB after 20 commits -> %zu KiB after one big commit\n",
         after_many / KIB, after_one / KIB);
  CHECK(after_many >= 4 * MIB);
  CHECK(after_one >= 8 * MIB);
  ok = 1;
  for (size_t i = 0; i < 8000; i++) ok &= same_value(s, "g", (int32_t)(i % 4), i);
  CHECK(ok);
  ls_state_close(s);
  rm_tmp(dir);
}

static int count_visit(void *ud, const void *k, size_t kl, const void *v, size_t vl) {
  (void)k, (void)kl, (void)v, (void)vl;
  ++*(int *)ud;
  return 0;
}

static void test_partitions(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_put puts[] = {{"s", 1, "k", 1, "one", 3},
                         {"s", 2, "k", 1, "two", 3},
                         {"s", 3, "k", 1, "three", 5},
                         {"s", 3, "k2", 2, "x", 1},
                         {"t", 3, "k", 1, "t-three", 7}};
  ls_state_mark marks[] = {
      {"s", 1, 11, 101}, {"s", 2, 12, 102}, {"s", 3, 13, 103}, {"t", 3, 23, 203}};
  CHECK(ls_state_commit(s, puts, 5, marks, 4, NULL, 0) == 0);
  char err[256] = "";
  CHECK(ls_state_drop_partition(s, "s", 3, err, sizeof err) == 0);
  CHECK_STR(get_str(s, "s", 1, "k"), "one");
  CHECK_STR(get_str(s, "s", 2, "k"), "two");
  CHECK(get_str(s, "s", 3, "k") == NULL);
  CHECK(get_str(s, "s", 3, "k2") == NULL);
  CHECK_STR(get_str(s, "t", 3, "k"), "t-three");
  int64_t c, in;
  CHECK(ls_state_get_mark(s, "s", 3, &c, &in) == 0 && c == -1 && in == -1);
  CHECK(ls_state_get_mark(s, "s", 1, &c, &in) == 1 && c == 11 && in == 101);
  CHECK(ls_state_get_mark(s, "s", 2, &c, &in) == 1 && c == 12 && in == 102);
  CHECK(ls_state_get_mark(s, "t", 3, &c, &in) == 1 && c == 23 && in == 203);
  int visited = 0;
  CHECK(ls_state_scan(s, "s", 3, "", 0, count_visit, &visited) == 0 && visited == 0);

  CHECK(ls_state_drop_partition(s, "s", 3, err, sizeof err) == 0); /* again: nothing there */
  CHECK(ls_state_drop_partition(s, "s", 42, err, sizeof err) == 0);
  CHECK(ls_state_drop_partition(s, "a/b", 1, err, sizeof err) == -1);

  /* Assigned again later: starts empty. */
  CHECK(put_str(s, "s", 3, "k3", "new") == 0);
  CHECK(get_str(s, "s", 3, "k") == NULL);
  CHECK_STR(get_str(s, "s", 3, "k3"), "new");
  ls_state_close(s);
  rm_tmp(dir);
}

static void test_marks(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  int64_t c = 0, in = 0;
  CHECK(ls_state_get_mark(s, "m", 0, &c, &in) == 0 && c == -1 && in == -1);
  ls_state_mark m[] = {{"m", 0, 5, 7}, {"m", 1, INT64_MAX, INT64_MIN}, {"n", 0, 0, 1}};
  CHECK(ls_state_commit(s, NULL, 0, m, 3, NULL, 0) == 0);
  CHECK(ls_state_get_mark(s, "m", 0, &c, &in) == 1 && c == 5 && in == 7);
  CHECK(ls_state_get_mark(s, "m", 1, &c, &in) == 1 && c == INT64_MAX && in == INT64_MIN);
  CHECK(ls_state_get_mark(s, "n", 0, &c, &in) == 1 && c == 0 && in == 1);
  m[0].changelog_offset = 1000;
  m[0].input_offset = 2000;
  CHECK(ls_state_commit(s, NULL, 0, m, 1, NULL, 0) == 0);
  CHECK(ls_state_get_mark(s, "m", 0, &c, &in) == 1 && c == 1000 && in == 2000);
  CHECK(ls_state_get_mark(s, "n", 0, &c, &in) == 1 && c == 0 && in == 1);
  CHECK(ls_state_get_mark(s, "m/x", 0, &c, &in) == -1);
  ls_state_close(s);
  rm_tmp(dir);
}

typedef struct seen {
  char keys[16][16];
  size_t lens[16];
  int n, stop_after;
} seen;

static int record_visit(void *ud, const void *k, size_t kl, const void *v, size_t vl) {
  seen *sn = ud;
  (void)v, (void)vl;
  if (sn->n < 16 && kl < 16) {
    memcpy(sn->keys[sn->n], k, kl);
    sn->lens[sn->n++] = kl;
  }
  return sn->stop_after && sn->n >= sn->stop_after;
}

static int seen_is(const seen *sn, const char *const *want, const size_t *wlen, int n) {
  if (sn->n != n) return 0;
  for (int i = 0; i < n; i++)
    if (sn->lens[i] != wlen[i] || memcmp(sn->keys[i], want[i], wlen[i]) != 0) return 0;
  return 1;
}

static void test_scan(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  const char *keys[] = {"user1|y", "a", "ab",      "ab\0x",    "abd",     "abc",
                        "ac",      "b", "user1|x", "user10|z", "user2|a", "\xff\xff"};
  size_t lens[] = {7, 1, 2, 4, 3, 3, 2, 1, 7, 8, 7, 2};
  ls_state_put puts[12];
  for (int i = 0; i < 12; i++) puts[i] = (ls_state_put){"sc", 2, keys[i], lens[i], "v", 1};
  ls_state_put other = {"sc", 1, "user1|q", 7, "v", 1}; /* another partition */
  CHECK(ls_state_commit(s, puts, 12, NULL, 0, NULL, 0) == 0);
  CHECK(ls_state_commit(s, &other, 1, NULL, 0, NULL, 0) == 0);

  seen sn = {0};
  CHECK(ls_state_scan(s, "sc", 2, "user1|", 6, record_visit, &sn) == 0);
  CHECK(seen_is(&sn, (const char *[]){"user1|x", "user1|y"}, (size_t[]){7, 7}, 2));
  memset(&sn, 0, sizeof sn);
  CHECK(ls_state_scan(s, "sc", 2, "ab", 2, record_visit, &sn) == 0);
  CHECK(seen_is(&sn, (const char *[]){"ab", "ab\0x", "abc", "abd"}, (size_t[]){2, 4, 3, 3}, 4));
  memset(&sn, 0, sizeof sn);
  CHECK(ls_state_scan(s, "sc", 2, NULL, 0, record_visit, &sn) == 0);
  CHECK(seen_is(&sn,
                (const char *[]){"a", "ab", "ab\0x", "abc", "abd", "ac", "b", "user10|z", "user1|x",
                                 "user1|y", "user2|a", "\xff\xff"},
                (size_t[]){1, 2, 4, 3, 3, 2, 1, 8, 7, 7, 7, 2}, 12)); /* '0' < '|' */
  memset(&sn, 0, sizeof sn);
  CHECK(ls_state_scan(s, "sc", 2, "\xff", 1, record_visit, &sn) == 0);
  CHECK(seen_is(&sn, (const char *[]){"\xff\xff"}, (size_t[]){2}, 1));
  memset(&sn, 0, sizeof sn);
  CHECK(ls_state_scan(s, "sc", 2, "zzz", 3, record_visit, &sn) == 0 && sn.n == 0);
  CHECK(ls_state_scan(s, "sc", 2, "user1|x-longer", 14, record_visit, &sn) == 0 && sn.n == 0);
  CHECK(ls_state_scan(s, "sc", 9, "u", 1, record_visit, &sn) == 0 && sn.n == 0);
  sn.stop_after = 2;
  CHECK(ls_state_scan(s, "sc", 2, "a", 1, record_visit, &sn) == 0);
  CHECK(seen_is(&sn, (const char *[]){"a", "ab"}, (size_t[]){1, 2}, 2));
  CHECK(ls_state_scan(s, "", 2, "a", 1, record_visit, &sn) == -1);
  ls_state_close(s);
  rm_tmp(dir);
}

typedef struct listed {
  char text[512];
  size_t len;
  int stop_after, n;
} listed;

static int record_list(void *ud, const char *store, int32_t p, size_t keys, size_t bytes, int64_t c,
                       int64_t in) {
  listed *l = ud;
  int w = snprintf(l->text + l->len, sizeof l->text - l->len,
                   "%s/%" PRId32 ":%zu:%s:%" PRId64 ":%" PRId64 " ", store, p, keys,
                   bytes > 0 ? "b" : "0", c, in);
  if (w > 0 && (size_t)w < sizeof l->text - l->len) l->len += (size_t)w;
  return ++l->n == l->stop_after;
}

static void test_list(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_put puts[] = {{"win", 10, "a", 1, "v", 1},
                         {"win", 2, "a", 1, "v", 1},
                         {"win", 2, "b", 1, "v", 1},
                         {"agg", 0, "x", 1, "v", 1}};
  ls_state_mark marks[] = {{"win", 2, 5, 6}, {"empty", 4, 7, 8}};
  CHECK(ls_state_commit(s, puts, 4, marks, 2, NULL, 0) == 0);
  listed l = {.len = 0};
  CHECK(ls_state_list(s, record_list, &l) == 0);
  CHECK_STR(l.text, "agg/0:1:b:-1:-1 empty/4:0:0:7:8 win/2:2:b:5:6 win/10:1:b:-1:-1 ");
  l = (listed){.stop_after = 1};
  CHECK(ls_state_list(s, record_list, &l) == 0);
  CHECK_STR(l.text, "agg/0:1:b:-1:-1 ");
  ls_state_close(s);
  rm_tmp(dir);
}

static void test_reopen(void) {
  char *dir = make_tmp();
  char err[256] = "";
  ls_state *s = must_open(dir, NULL); /* defaults: durable, 64 MiB */
  CHECK(ls_state_map_size(s) == 64 * MIB);
  ls_state_put puts[] = {{"r", 0, "a", 1, "alpha", 5}, {"r", 7, "b", 1, "beta", 4}};
  ls_state_mark mark = {"r", 7, 70, 700};
  CHECK(ls_state_commit(s, puts, 2, &mark, 1, NULL, 0) == 0);
  ls_state_close(s);
  s = must_open(dir, NULL);
  CHECK_STR(get_str(s, "r", 0, "a"), "alpha");
  CHECK_STR(get_str(s, "r", 7, "b"), "beta");
  int64_t c, in;
  CHECK(ls_state_get_mark(s, "r", 7, &c, &in) == 1 && c == 70 && in == 700);
  ls_state_close(s);
  rm_tmp(dir);

  /* A grown map is kept across a reopen with a small initial size. */
  dir = make_tmp();
  s = open_opts(dir, 64 * KIB, 0, 0);
  CHECK(commit_range(s, 0, 1000, err, sizeof err) == 0);
  size_t grown = ls_state_map_size(s);
  CHECK(grown > 64 * KIB);
  ls_state_close(s); /* not durable: close syncs */
  s = open_opts(dir, 64 * KIB, 0, 0);
  CHECK(ls_state_map_size(s) >= grown);
  int ok = 1;
  for (size_t i = 0; i < 1000; i++) ok &= same_value(s, "g", (int32_t)(i % 4), i);
  CHECK(ok);
  ls_state_close(s);
  rm_tmp(dir);
}

static void test_open_errors(void) {
  char *dir = make_tmp();
  char file[256], path[300], err[512] = "", want[600];
  snprintf(file, sizeof file, "%s/file", dir);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  if (f) fclose(f);
  snprintf(path, sizeof path, "%s/sub/dir", file);
  CHECK(ls_state_open(path, NULL, err, sizeof err) == NULL);
  snprintf(want, sizeof want, "state: cannot open %s: Not a directory", path);
  CHECK_STR(err, want);
  CHECK(ls_state_open(file, NULL, err, sizeof err) == NULL);
  snprintf(want, sizeof want, "state: cannot open %s: Not a directory", file);
  CHECK_STR(err, want);

  err[0] = '\0';
  CHECK(ls_state_open("/proc/ls_state_test/app", NULL, err, sizeof err) == NULL);
  printf("open under /proc: %s\n", err);
  CHECK(strncmp(err, "state: cannot open /proc/ls_state_test/app: ", 44) == 0 && strlen(err) > 46);
  err[0] = '\0';
  CHECK(ls_state_open("/proc", NULL, err, sizeof err) ==
        NULL); /* exists; LMDB cannot create files */
  printf("open /proc: %s\n", err);
  CHECK(strncmp(err, "state: cannot open /proc: ", 26) == 0 && strlen(err) > 28);
  CHECK(ls_state_open("", NULL, err, sizeof err) == NULL);
  CHECK_STR(err, "state: no directory given");

  /* mkdir -p of a fresh nested path works. */
  snprintf(path, sizeof path, "%s/a/b/app", dir);
  ls_state *s = ls_state_open(path, NULL, err, sizeof err);
  CHECK(s != NULL);
  ls_state_close(s);
  rm_tmp(dir);
}

static void test_names(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  char err[256] = "";
  ls_state_put p = {"a/b", 0, "k", 1, "v", 1};
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: store name \"a/b\" contains '/'");
  const void *v;
  size_t n;
  CHECK(ls_state_get(s, "a/b", 0, "k", 1, &v, &n) == -1);
  CHECK_STR(ls_state_error(s), "state: store name \"a/b\" contains '/'");
  p.store = "";
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: empty store name");
  ls_state_mark m = {"x/y", 0, 1, 1};
  CHECK(ls_state_commit(s, NULL, 0, &m, 1, err, sizeof err) == -1);

  char name[202];
  memset(name, 's', 201);
  name[201] = '\0';
  p.store = name;
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: store name longer than 200 bytes");
  name[200] = '\0'; /* exactly 200 bytes is fine */
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == 0);
  CHECK(ls_state_get(s, name, 0, "k", 1, &v, &n) == 1);

  p.store = "ok";
  p.partition = -1;
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: ok: partition -1 out of range");
  CHECK(ls_state_get(s, "ok", -1, "k", 1, &v, &n) == -1);
  p.partition = 1000; /* sparse partition numbers are fine */
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == 0);
  CHECK(ls_state_get(s, "ok", 1000, "k", 1, &v, &n) == 1);
  ls_state_close(s);
  rm_tmp(dir);
}

/* At most 4095 (store, partition) databases; dropping one frees a place. */
static void test_many_partitions(void) {
  enum { MAXP = 4095 };
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_put *puts = calloc(MAXP, sizeof *puts);
  for (int i = 0; i < MAXP; i++) puts[i] = (ls_state_put){"many", i, "k", 1, "v", 1};
  char err[256] = "";
  double t0 = now_ms();
  CHECK(ls_state_commit(s, puts, MAXP, NULL, 0, err, sizeof err) == 0);
  printf("commit creating %d partition databases: %.1f ms\n", MAXP, now_ms() - t0);
  ls_state_put one = {"many", MAXP, "k", 1, "v", 1};
  ls_state_put two[] = {{"many", 7, "k", 1, "changed", 7}, one};
  CHECK(ls_state_commit(s, two, 2, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: cannot create many/4095: more than 4095 store partitions");
  CHECK_STR(get_str(s, "many", 7, "k"), "v");
  CHECK(ls_state_drop_partition(s, "many", 0, err, sizeof err) == 0);
  CHECK(ls_state_commit(s, &one, 1, NULL, 0, err, sizeof err) == 0);
  CHECK_STR(get_str(s, "many", MAXP, "k"), "v");
  CHECK_STR(get_str(s, "many", MAXP - 1, "k"), "v");
  free(puts);
  ls_state_close(s);
  rm_tmp(dir);
}

/* Runs fn(dir) in a child process with its own handle; its exit status. */
static int in_child(const char *dir, int (*fn)(ls_state *)) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    ls_state *c = open_opts(dir, 64 * KIB, 0, 0);
    int rc = c ? fn(c) : 1;
    ls_state_close(c);
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

static int child_drop(ls_state *c) { return ls_state_drop_partition(c, "s", 3, NULL, 0) != 0; }

static int child_grow(ls_state *c) {
  char err[256];
  return commit_range(c, 0, 2000, err, sizeof err) != 0;
}

/* Two processes sharing one directory (disjoint partitions, as after a
 * rebalance): a partition dropped by the other is recreated here, not
 * written through a stale handle, and a map grown by the other is adopted. */
static void test_shared(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 64 * KIB, 0, 0);
  ls_state_put p = {"s", 3, "old", 3, "O", 1};
  ls_state_mark m = {"s", 3, 1, 2};
  CHECK(ls_state_commit(s, &p, 1, &m, 1, NULL, 0) == 0);
  CHECK_STR(get_str(s, "s", 3, "old"), "O"); /* handle cached */
  CHECK(in_child(dir, child_drop) == 0);
  CHECK(get_str(s, "s", 3, "old") == NULL);
  int64_t c, in;
  CHECK(ls_state_get_mark(s, "s", 3, &c, &in) == 0);
  CHECK(put_str(s, "s", 3, "new", "N") == 0);
  CHECK_STR(get_str(s, "s", 3, "new"), "N");
  CHECK(get_str(s, "s", 3, "old") == NULL);

  CHECK(in_child(dir, child_grow) == 0);
  CHECK(ls_state_map_size(s) == 64 * KIB);
  CHECK(same_value(s, "g", 1, 1)); /* adopts the larger map */
  CHECK(ls_state_map_size(s) > 64 * KIB);
  CHECK(put_str(s, "s", 3, "after", "A") == 0);
  int ok = 1;
  for (size_t i = 0; i < 2000; i++) ok &= same_value(s, "g", (int32_t)(i % 4), i);
  CHECK(ok);
  CHECK_STR(get_str(s, "s", 3, "new"), "N");
  ls_state_close(s);
  rm_tmp(dir);
}

/* 100k keys over 16 partitions in one commit, as a checkpoint would write. */
static double bulk_commit(int durable, int *ok) {
  enum { N = 100000, P = 16 };
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, durable);
  ls_state_put *puts = calloc(N, sizeof *puts);
  char(*keys)[32] = malloc(N * sizeof *keys);
  double *vals = malloc(N * sizeof *vals);
  ls_state_mark marks[P];
  for (int i = 0; i < N; i++) {
    int k = snprintf(keys[i], sizeof keys[i], "device-%06d\x1fgTotal", i);
    vals[i] = i * 0.5;
    puts[i] = (ls_state_put){"update", i % P, keys[i], (size_t)k, &vals[i], sizeof vals[i]};
  }
  for (int p = 0; p < P; p++) marks[p] = (ls_state_mark){"update", p, 1000 + p, 5000 + p};
  char err[256] = "";
  double t0 = now_ms();
  *ok = ls_state_commit(s, puts, N, marks, P, err, sizeof err) == 0;
  double ms = now_ms() - t0;
  if (!*ok) fprintf(stderr, "bulk commit: %s\n", err);
  double t1 = now_ms();
  for (int i = 0; i < N; i++) {
    const void *v;
    size_t n;
    if (ls_state_get(s, "update", i % P, keys[i], strlen(keys[i]), &v, &n) != 1 ||
        n != sizeof(double) || memcmp(v, &vals[i], n) != 0)
      *ok = 0;
  }
  double gets = now_ms() - t1;
  if (durable) printf("100000 gets: %.1f ms (%.0f ns each)\n", gets, gets * 1e6 / N);
  int64_t c, in;
  *ok &= ls_state_get_mark(s, "update", 15, &c, &in) == 1 && c == 1015 && in == 5015;
  free(puts);
  free(keys);
  free(vals);
  ls_state_close(s);
  rm_tmp(dir);
  return ms;
}

static void test_bulk(void) {
  int ok1, ok2;
  double durable = bulk_commit(1, &ok1), nosync = bulk_commit(0, &ok2);
  CHECK(ok1);
  CHECK(ok2);
  printf("commit of 100000 keys over 16 partitions: %.1f ms durable, %.1f ms with MDB_NOSYNC\n",
         durable, nosync);
}

/* The entry key layout of stateful steps (2-byte length, message key, state
 * key): building a prefix, splitting keys, and the scans `luastream state`
 * relies on: a prefix finds one message key's entries only (not those of a
 * longer key it begins), and a full scan sorts shorter message keys first. */
typedef struct split_seen {
  char text[256];
  size_t len;
} split_seen;

static int record_split(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  split_seen *ss = ud;
  const void *mk, *sk;
  size_t mkl, skl;
  if (ls_state_entry_split(key, klen, &mk, &mkl, &sk, &skl)) return 1;
  int w = snprintf(ss->text + ss->len, sizeof ss->text - ss->len, "%.*s.%.*s=%.*s ", (int)mkl,
                   (const char *)mk, (int)skl, (const char *)sk, (int)vlen, (const char *)val);
  if (w > 0 && (size_t)w < sizeof ss->text - ss->len) ss->len += (size_t)w;
  return 0;
}

static void put_entry(ls_state *s, const char *mkey, const char *skey, const char *val) {
  char key[64];
  size_t n = ls_state_entry_prefix(key, mkey, strlen(mkey));
  memcpy(key + n, skey, strlen(skey));
  ls_state_put p = {"counts", 0, key, n + strlen(skey), val, strlen(val)};
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, NULL, 0) == 0);
}

static void test_entry_keys(void) {
  unsigned char buf[70000];
  const void *mk, *sk;
  size_t mkl, skl;
  CHECK(ls_state_entry_prefix(buf, "k3", 2) == 4 && memcmp(buf, "\0\2k3", 4) == 0);
  CHECK(ls_state_entry_prefix(buf, "", 0) == 2 && buf[0] == 0 && buf[1] == 0);
  static char big[65536];
  memset(big, 'x', sizeof big);
  CHECK(ls_state_entry_prefix(buf, big, 300) == 302 && buf[0] == 1 && buf[1] == 44);
  CHECK(ls_state_entry_prefix(buf, big, 65535) == 65537 && buf[0] == 0xff && buf[1] == 0xff);
  buf[0] = 7;
  CHECK(ls_state_entry_prefix(buf, big, 65536) == 0 && buf[0] == 7); /* too long: untouched */

  CHECK(ls_state_entry_split("\0\2k3sum", 7, &mk, &mkl, &sk, &skl) == 0);
  CHECK(mkl == 2 && memcmp(mk, "k3", 2) == 0 && skl == 3 && memcmp(sk, "sum", 3) == 0);
  CHECK(ls_state_entry_split("\0\2k3", 4, &mk, &mkl, &sk, &skl) == 0 && mkl == 2 && skl == 0);
  CHECK(ls_state_entry_split("\0\0n", 3, &mk, &mkl, &sk, &skl) == 0 && mkl == 0 && skl == 1);
  CHECK(ls_state_entry_split("\0", 1, &mk, &mkl, &sk, &skl) == -1);
  CHECK(ls_state_entry_split("\0\5ab", 4, &mk, &mkl, &sk, &skl) == -1);

  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  put_entry(s, "k30", "n", "1");
  put_entry(s, "k3", "sum", "215");
  put_entry(s, "k3", "n", "5");
  put_entry(s, "k10", "n", "2");
  put_entry(s, "k9", "n", "9");
  split_seen ss = {.len = 0};
  size_t plen = ls_state_entry_prefix(buf, "k3", 2);
  CHECK(ls_state_scan(s, "counts", 0, buf, plen, record_split, &ss) == 0);
  CHECK_STR(ss.text, "k3.n=5 k3.sum=215 ");
  ss = (split_seen){.len = 0};
  CHECK(ls_state_scan(s, "counts", 0, NULL, 0, record_split, &ss) == 0);
  CHECK_STR(ss.text, "k3.n=5 k3.sum=215 k9.n=9 k10.n=2 k30.n=1 ");
  ls_state_close(s);
  rm_tmp(dir);
}

int main(void) {
  test_put_get_delete();
  test_atomic_map_full();
  test_growth();
  test_partitions();
  test_marks();
  test_scan();
  test_list();
  test_reopen();
  test_open_errors();
  test_names();
  test_shared();
  test_many_partitions();
  test_entry_keys();
  test_bulk();
  CHECK_DONE();
}
