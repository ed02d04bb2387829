/* test_state.c - unit tests of the LMDB state store (runtime/state.c).
 *
 * Every test works in a fresh directory made by mkdtemp under /tmp and
 * removes it afterwards. Covered: put/get/delete semantics, all-or-nothing
 * commits when the map is full, map growth, per-partition separation and
 * drop, marks, prefix scans, listing, reopening, open errors, name
 * validation, the entry key layout of stateful steps (prefix, split, the
 * order of scans), expiry (the time index: order, max, overwrite, delete,
 * drop, reopen, list counts, failed and retried commits, reserved keys),
 * marks with a watermark (and 16-byte marks of older versions), and the
 * time of a 100k-key commit (printed, not asserted). */
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

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
  ls_state_put put = {store, p, k, strlen(k), v, v ? strlen(v) : 0, 0};
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
    puts[j] = (ls_state_put){"g", (int32_t)(i % 4), keys[j], strlen(keys[j]), vals + j * 3000, vn, 0};
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
      {"counts", 0, "x", 1, "1", 1, 0},      {"counts", 0, "x", 1, NULL, 0, 0},
      {"counts", 0, "y", 1, NULL, 0, 0},     {"counts", 0, "y", 1, "2", 1, 0},
      {"counts", 0, "e", 1, "", 0, 0}, /* empty value, not a delete */
      {"counts", 0, "k\0z", 3, "bin", 3, 0},
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
  ls_state_put bad = {"counts", 0, big, 512, "v", 1, 0};
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
  ls_state_put small[] = {{"w", 0, "a", 1, "old-a", 5, 0}, {"w", 1, "b", 1, "old-b", 5, 0}};
  ls_state_mark mark = {"w", 0, 10, 100, -1};
  CHECK(ls_state_commit(s, small, 2, &mark, 1, NULL, 0) == 0);

  /* 1 MiB over a new partition too, plus a changed value and mark. */
  enum { N = 256 };
  static char vals[N][4096];
  char keys[N][16];
  ls_state_put puts[N + 1];
  puts[0] = (ls_state_put){"w", 0, "a", 1, "new-a", 5, 0};
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "big%03d", i);
    memset(vals[i], 'a' + i % 26, sizeof vals[i]);
    puts[i + 1] = (ls_state_put){"w", 5, keys[i], strlen(keys[i]), vals[i], sizeof vals[i], 0};
  }
  ls_state_mark mark2 = {"w", 0, 20, 200, -1};
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
      {"w", 0, "a", 1, "mid-a", 5, 0}, {"w", 7, "z", 1, "z", 1, 0}, {"bad/store", 0, "k", 1, "v", 1, 0}};
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
  ls_state_put puts[] = {{"s", 1, "k", 1, "one", 3, 0},
                         {"s", 2, "k", 1, "two", 3, 0},
                         {"s", 3, "k", 1, "three", 5, 0},
                         {"s", 3, "k2", 2, "x", 1, 0},
                         {"t", 3, "k", 1, "t-three", 7, 0}};
  ls_state_mark marks[] = {
      {"s", 1, 11, 101, -1}, {"s", 2, 12, 102, -1}, {"s", 3, 13, 103, -1}, {"t", 3, 23, 203, -1}};
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
  ls_state_mark m[] = {{"m", 0, 5, 7, -1}, {"m", 1, INT64_MAX, INT64_MIN, -1}, {"n", 0, 0, 1, -1}};
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
                        "ac",      "b", "user1|x", "user10|z", "user2|a", "\xff\xfe"};
  size_t lens[] = {7, 1, 2, 4, 3, 3, 2, 1, 7, 8, 7, 2};
  ls_state_put puts[12];
  for (int i = 0; i < 12; i++) puts[i] = (ls_state_put){"sc", 2, keys[i], lens[i], "v", 1, 0};
  ls_state_put other = {"sc", 1, "user1|q", 7, "v", 1, 0}; /* another partition */
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
                                 "user1|y", "user2|a", "\xff\xfe"},
                (size_t[]){1, 2, 4, 3, 3, 2, 1, 8, 7, 7, 7, 2}, 12)); /* '0' < '|' */
  memset(&sn, 0, sizeof sn);
  CHECK(ls_state_scan(s, "sc", 2, "\xff", 1, record_visit, &sn) == 0);
  CHECK(seen_is(&sn, (const char *[]){"\xff\xfe"}, (size_t[]){2}, 1));
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
  ls_state_put puts[] = {{"win", 10, "a", 1, "v", 1, 0},
                         {"win", 2, "a", 1, "v", 1, 0},
                         {"win", 2, "b", 1, "v", 1, 0},
                         {"agg", 0, "x", 1, "v", 1, 0}};
  ls_state_mark marks[] = {{"win", 2, 5, 6, -1}, {"empty", 4, 7, 8, -1}};
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
  ls_state_put puts[] = {{"r", 0, "a", 1, "alpha", 5, 0}, {"r", 7, "b", 1, "beta", 4, 0}};
  ls_state_mark mark = {"r", 7, 70, 700, -1};
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
  ls_state_put p = {"a/b", 0, "k", 1, "v", 1, 0};
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: store name \"a/b\" contains '/'");
  const void *v;
  size_t n;
  CHECK(ls_state_get(s, "a/b", 0, "k", 1, &v, &n) == -1);
  CHECK_STR(ls_state_error(s), "state: store name \"a/b\" contains '/'");
  p.store = "";
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: empty store name");
  ls_state_mark m = {"x/y", 0, 1, 1, -1};
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
  for (int i = 0; i < MAXP; i++) puts[i] = (ls_state_put){"many", i, "k", 1, "v", 1, 0};
  char err[256] = "";
  double t0 = now_ms();
  CHECK(ls_state_commit(s, puts, MAXP, NULL, 0, err, sizeof err) == 0);
  printf("commit creating %d partition databases: %.1f ms\n", MAXP, now_ms() - t0);
  ls_state_put one = {"many", MAXP, "k", 1, "v", 1, 0};
  ls_state_put two[] = {{"many", 7, "k", 1, "changed", 7, 0}, one};
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
  ls_state_put p = {"s", 3, "old", 3, "O", 1, 0};
  ls_state_mark m = {"s", 3, 1, 2, -1};
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
    puts[i] = (ls_state_put){"update", i % P, keys[i], (size_t)k, &vals[i], sizeof vals[i], 0};
  }
  for (int p = 0; p < P; p++) marks[p] = (ls_state_mark){"update", p, 1000 + p, 5000 + p, -1};
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
  ls_state_put p = {"counts", 0, key, n + strlen(skey), val, strlen(val), 0};
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


/* ---- expiry ---------------------------------------------------------------- */

static int put_exp(ls_state *s, const char *store, int32_t p, const char *k, const char *v,
                   int64_t exp) {
  ls_state_put put = {store, p, k, strlen(k), v, v ? strlen(v) : 0, exp};
  char err[256];
  int rc = ls_state_commit(s, &put, 1, NULL, 0, err, sizeof err);
  if (rc) fprintf(stderr, "commit: %s\n", err);
  return rc;
}

/* "key=value " per visited entry (and stops after stop_after, if set). */
typedef struct text_seen {
  char text[1024];
  size_t len;
  int n, stop_after;
} text_seen;

static int text_visit(void *ud, const void *k, size_t kl, const void *v, size_t vl) {
  text_seen *t = ud;
  int w = snprintf(t->text + t->len, sizeof t->text - t->len, "%.*s=%.*s ", (int)kl,
                   (const char *)k, (int)vl, (const char *)v);
  if (w > 0 && (size_t)w < sizeof t->text - t->len) t->len += (size_t)w;
  return ++t->n == t->stop_after;
}

static int text_visit_ex(void *ud, const void *k, size_t kl, const void *v, size_t vl, int64_t e) {
  text_seen *t = ud;
  int w = snprintf(t->text + t->len, sizeof t->text - t->len, "%.*s=%.*s@%" PRId64 " ", (int)kl,
                   (const char *)k, (int)vl, (const char *)v, e);
  if (w > 0 && (size_t)w < sizeof t->text - t->len) t->len += (size_t)w;
  return 0;
}

/* The entries with expiry <= now, as text; *n the returned count. */
static const char *expired(ls_state *s, const char *store, int32_t p, int64_t now, size_t max,
                           int *n) {
  static text_seen t;
  t = (text_seen){.len = 0};
  *n = ls_state_scan_expired(s, store, p, now, max, text_visit, &t);
  return t.text;
}

static const char *all_entries(ls_state *s, const char *store, int32_t p) {
  static text_seen t;
  t = (text_seen){.len = 0};
  if (ls_state_scan_ex(s, store, p, NULL, 0, text_visit_ex, &t)) return "(error)";
  return t.text;
}

static int64_t expiry_of(ls_state *s, const char *store, int32_t p, const char *k) {
  int64_t e = -42;
  int r = ls_state_get_expiry(s, store, p, k, strlen(k), &e);
  return r == 1 ? e : r == 0 ? -2 : -3;
}

/* The key count ls_state_list reports for store/partition (-1: absent). */
typedef struct count_of {
  const char *store;
  int32_t p;
  long keys;
} count_of;

static int count_list(void *ud, const char *store, int32_t p, size_t keys, size_t bytes, int64_t c,
                      int64_t in) {
  count_of *co = ud;
  (void)bytes, (void)c, (void)in;
  if (strcmp(store, co->store) == 0 && p == co->p) co->keys = (long)keys;
  return 0;
}

static long listed_keys(ls_state *s, const char *store, int32_t p) {
  count_of co = {store, p, -1};
  if (ls_state_list(s, count_list, &co)) return -2;
  return co.keys;
}

static void test_expiry(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_put puts[] = {{"t", 0, "a", 1, "A", 1, 300}, {"t", 0, "b", 1, "B", 1, 100},
                         {"t", 0, "c", 1, "C", 1, 200}, {"t", 0, "d", 1, "D", 1, 0},
                         {"t", 0, "e", 1, "E", 1, 100}, {"t", 1, "a", 1, "other", 5, 50}};
  CHECK(ls_state_commit(s, puts, 6, NULL, 0, NULL, 0) == 0);
  int n;
  CHECK_STR(expired(s, "t", 0, 99, SIZE_MAX, &n), "");
  CHECK(n == 0);
  CHECK_STR(expired(s, "t", 0, 100, SIZE_MAX, &n), "b=B e=E "); /* ties in key order */
  CHECK(n == 2);
  CHECK_STR(expired(s, "t", 0, 250, SIZE_MAX, &n), "b=B e=E c=C ");
  CHECK(n == 3);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, 2, &n), "b=B e=E "); /* at most max */
  CHECK(n == 2);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, 0, &n), "");
  CHECK(n == 0);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "b=B e=E c=C a=A ");
  CHECK(n == 4);
  CHECK_STR(expired(s, "t", 1, INT64_MAX, SIZE_MAX, &n), "a=other ");
  CHECK_STR(expired(s, "t", 7, INT64_MAX, SIZE_MAX, &n), ""); /* no such partition */
  CHECK(n == 0);
  text_seen stop = {.stop_after = 1};
  CHECK(ls_state_scan_expired(s, "t", 0, INT64_MAX, 10, text_visit, &stop) == 1);
  CHECK_STR(stop.text, "b=B ");
  CHECK(ls_state_scan_expired(s, "t/x", 0, 1, 10, text_visit, &stop) == -1);

  /* Values read back exactly; the expiry on request. */
  const void *v;
  size_t vl;
  int64_t e = -1;
  CHECK(ls_state_get(s, "t", 0, "a", 1, &v, &vl) == 1 && vl == 1 && memcmp(v, "A", 1) == 0);
  CHECK(ls_state_get_ex(s, "t", 0, "a", 1, &v, &vl, &e) == 1 && e == 300 && vl == 1);
  CHECK(ls_state_get_ex(s, "t", 0, "d", 1, &v, &vl, &e) == 1 && e == 0);
  CHECK(ls_state_get_ex(s, "t", 0, "zz", 2, &v, &vl, &e) == 0 && e == 0);
  CHECK(expiry_of(s, "t", 0, "c") == 200);
  CHECK(expiry_of(s, "t", 0, "d") == 0);
  CHECK(expiry_of(s, "t", 0, "missing") == -2);
  CHECK(expiry_of(s, "t", 9, "a") == -2);
  CHECK_STR(all_entries(s, "t", 0), "a=A@300 b=B@100 c=C@200 d=D@0 e=E@100 ");
  text_seen all = {.len = 0};
  CHECK(ls_state_scan(s, "t", 0, NULL, 0, text_visit, &all) == 0);
  CHECK_STR(all.text, "a=A b=B c=C d=D e=E "); /* no reserved records */
  CHECK(listed_keys(s, "t", 0) == 5);
  CHECK(listed_keys(s, "t", 1) == 1);

  /* Overwrites: a new expiry moves the entry; none removes it from the index. */
  CHECK(put_exp(s, "t", 0, "b", "B2", 500) == 0);
  CHECK(put_exp(s, "t", 0, "c", "C2", 0) == 0);
  CHECK(put_exp(s, "t", 0, "e", "E", 100) == 0); /* the same expiry again */
  CHECK(put_exp(s, "t", 0, "d", "D2", 0) == 0);  /* still none */
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "e=E a=A b=B2 ");
  CHECK(expiry_of(s, "t", 0, "c") == 0);
  CHECK_STR(get_str(s, "t", 0, "c"), "C2");
  CHECK(listed_keys(s, "t", 0) == 5);

  /* Deletes remove it too (a missing key in a partition with expiries is fine). */
  ls_state_put dels[] = {{"t", 0, "a", 1, NULL, 0, 0}, {"t", 0, "nope", 4, NULL, 0, 0},
                         {"t", 0, "e", 1, NULL, 0, 999}};
  CHECK(ls_state_commit(s, dels, 3, NULL, 0, NULL, 0) == 0);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "b=B2 ");
  CHECK(expiry_of(s, "t", 0, "a") == -2);
  CHECK(listed_keys(s, "t", 0) == 3);
  CHECK_STR(all_entries(s, "t", 0), "b=B2@500 c=C2@0 d=D2@0 ");

  /* Within one commit, puts apply in order: the last one decides. */
  ls_state_put seq[] = {{"t", 0, "f", 1, "F1", 2, 10}, {"t", 0, "f", 1, "F2", 2, 20},
                        {"t", 0, "g", 1, "G", 1, 30},  {"t", 0, "g", 1, NULL, 0, 0},
                        {"t", 0, "h", 1, "H", 1, 40},  {"t", 0, "h", 1, "H", 1, 0}};
  CHECK(ls_state_commit(s, seq, 6, NULL, 0, NULL, 0) == 0);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "f=F2 b=B2 ");
  CHECK(listed_keys(s, "t", 0) == 5);

  /* Persistence across a reopen. */
  ls_state_close(s);
  s = open_opts(dir, 0, 0, 0);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "f=F2 b=B2 ");
  CHECK_STR(expired(s, "t", 0, 20, SIZE_MAX, &n), "f=F2 ");
  CHECK(expiry_of(s, "t", 0, "b") == 500);
  CHECK(listed_keys(s, "t", 0) == 5);
  CHECK(put_exp(s, "t", 0, "f", NULL, 0) == 0); /* the cached count is right after reopen */
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "b=B2 ");
  CHECK(listed_keys(s, "t", 0) == 4);

  /* Removing the last expiry leaves no reserved record: plain counts again. */
  CHECK(put_exp(s, "t", 0, "b", "B3", 0) == 0);
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "");
  CHECK(listed_keys(s, "t", 0) == 4);
  CHECK_STR(all_entries(s, "t", 0), "b=B3@0 c=C2@0 d=D2@0 h=H@0 ");

  /* Dropping a partition drops its index; a new one starts without. */
  CHECK(put_exp(s, "t", 1, "z", "Z", 70) == 0);
  CHECK(listed_keys(s, "t", 1) == 2);
  char err[256] = "";
  CHECK(ls_state_drop_partition(s, "t", 1, err, sizeof err) == 0);
  CHECK_STR(expired(s, "t", 1, INT64_MAX, SIZE_MAX, &n), "");
  CHECK(n == 0);
  CHECK(listed_keys(s, "t", 1) == -1);
  CHECK(put_str(s, "t", 1, "y", "Y") == 0);
  CHECK_STR(expired(s, "t", 1, INT64_MAX, SIZE_MAX, &n), "");
  CHECK(listed_keys(s, "t", 1) == 1);
  CHECK(put_exp(s, "t", 1, "x", "X", 5) == 0);
  CHECK_STR(expired(s, "t", 1, INT64_MAX, SIZE_MAX, &n), "x=X ");
  ls_state_close(s);
  rm_tmp(dir);
}

/* Bad expiries and keys; reserved keys are out of reach of reads. */
static void test_expiry_errors(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  char err[256] = "";
  ls_state_put p = {"t", 0, "k", 1, "v", 1, -5};
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: t: negative expiry -5");
  p.val = NULL; /* a delete ignores it */
  CHECK(ls_state_commit(s, &p, 1, NULL, 0, err, sizeof err) == 0);

  char big[512];
  memset(big, 'k', sizeof big);
  ls_state_put longk = {"t", 0, big, 501, "v", 1, 1000};
  CHECK(ls_state_commit(s, &longk, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: t: key of 501 bytes with an expiry exceeds the 500-byte limit");
  longk.expire_ms = 0; /* without an expiry the key limit is LMDB's */
  CHECK(ls_state_commit(s, &longk, 1, NULL, 0, err, sizeof err) == 0);
  longk.klen = 500;
  longk.expire_ms = 1000;
  CHECK(ls_state_commit(s, &longk, 1, NULL, 0, err, sizeof err) == 0);
  int64_t e;
  CHECK(ls_state_get_expiry(s, "t", 0, big, 500, &e) == 1 && e == 1000);
  CHECK(ls_state_get_expiry(s, "t", 0, big, 501, &e) == 1 && e == 0);
  int n;
  expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n);
  CHECK(n == 1);

  ls_state_put res = {"t", 0, "\xff\xff", 2, "v", 1, 0};
  CHECK(ls_state_commit(s, &res, 1, NULL, 0, err, sizeof err) == -1);
  CHECK_STR(err, "state: t: keys beginning 0xFF 0xFF are reserved");
  res.key = "\xff\xff\x01k";
  res.klen = 4;
  res.val = NULL;
  CHECK(ls_state_commit(s, &res, 1, NULL, 0, err, sizeof err) == -1);
  const void *v;
  size_t vl;
  /* The expiry record of "k"... exists, but reads do not show it. */
  CHECK(put_exp(s, "t", 0, "k", "v", 77) == 0);
  CHECK(ls_state_get(s, "t", 0, "\xff\xff\x01k", 4, &v, &vl) == 0);
  CHECK(ls_state_get(s, "t", 0, "\xff\xff\x00", 3, &v, &vl) == 0);
  text_seen t = {.len = 0};
  CHECK(ls_state_scan(s, "t", 0, "\xff\xff", 2, text_visit, &t) == 0 && t.n == 0);
  CHECK(put_str(s, "t", 0, "\xff\xfe", "edge") == 0); /* sorts just before them */
  t = (text_seen){.len = 0};
  CHECK(ls_state_scan(s, "t", 0, "\xff", 1, text_visit, &t) == 0);
  CHECK_STR(t.text, "\xff\xfe=edge ");
  CHECK(listed_keys(s, "t", 0) == 4);
  ls_state_close(s);
  rm_tmp(dir);
}

/* A commit that fails, or is retried after growing the map, keeps the index
 * and its count consistent (the per-handle count is per transaction). */
static void test_expiry_txns(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 64 * KIB, 0, 0);
  char err[256] = "";
  CHECK(put_exp(s, "t", 0, "x", "X", 100) == 0);
  ls_state_put bad[] = {{"t", 0, "y", 1, "Y", 1, 200}, {"bad/store", 0, "k", 1, "v", 1, 0}};
  CHECK(ls_state_commit(s, bad, 2, NULL, 0, err, sizeof err) == -1);
  int n;
  CHECK_STR(expired(s, "t", 0, INT64_MAX, SIZE_MAX, &n), "x=X ");
  ls_state_put after[] = {{"t", 0, "z", 1, "Z", 1, 0}, {"t", 0, "x", 1, NULL, 0, 0}};
  CHECK(ls_state_commit(s, after, 2, NULL, 0, err, sizeof err) == 0);
  CHECK(listed_keys(s, "t", 0) == 1); /* a stale count would leave a record behind */
  CHECK_STR(all_entries(s, "t", 0), "z=Z@0 ");

  /* 3000 entries with expiries in one commit: the map grows, the commit is
   * retried, and each entry is indexed once. */
  enum { N = 3000 };
  ls_state_put *puts = calloc(N, sizeof *puts);
  char(*keys)[16] = malloc(N * sizeof *keys);
  uint64_t seed = 7;
  int64_t *exps = malloc(N * sizeof *exps);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "key%05d", i);
    exps[i] = 1 + (int64_t)(check_splitmix64(&seed) % 1000);
    puts[i] = (ls_state_put){"g", 2, keys[i], strlen(keys[i]), "value-bytes", 11, exps[i]};
  }
  size_t before = ls_state_map_size(s);
  CHECK(ls_state_commit(s, puts, N, NULL, 0, err, sizeof err) == 0);
  CHECK(ls_state_map_size(s) > before);
  CHECK(listed_keys(s, "g", 2) == N);
  int want = 0;
  for (int i = 0; i < N; i++) want += exps[i] <= 500;
  n = 0;
  CHECK(ls_state_scan_expired(s, "g", 2, 500, SIZE_MAX, count_visit, &n) == want);
  /* Delete what expired (as a checkpoint would), then nothing is left due. */
  int k = 0;
  for (int i = 0; i < N; i++)
    if (exps[i] <= 500) puts[k++] = (ls_state_put){"g", 2, keys[i], strlen(keys[i]), NULL, 0, 0};
  CHECK(ls_state_commit(s, puts, (size_t)k, NULL, 0, err, sizeof err) == 0);
  CHECK(ls_state_scan_expired(s, "g", 2, 500, SIZE_MAX, count_visit, &n) == 0);
  CHECK(ls_state_scan_expired(s, "g", 2, INT64_MAX, SIZE_MAX, count_visit, &n) == N - want);
  CHECK(listed_keys(s, "g", 2) == N - want);
  free(puts);
  free(keys);
  free(exps);
  ls_state_close(s);
  rm_tmp(dir);
}

/* Random expiries: the scan visits exactly the due entries, in expiry order
 * (then key order), and stops at max. */
typedef struct order_check {
  ls_state *s;
  int64_t last_exp;
  char last_key[16];
  int ok, n;
} order_check;

static int order_visit(void *ud, const void *k, size_t kl, const void *v, size_t vl) {
  order_check *o = ud;
  char key[16];
  (void)v, (void)vl;
  if (kl >= sizeof key) return o->ok = 0, 1;
  memcpy(key, k, kl);
  key[kl] = '\0';
  int64_t e = 0;
  sscanf(key + 1, "%" SCNd64, &e); /* keys are "e<expiry>-<i>" */
  if (e < o->last_exp || (e == o->last_exp && strcmp(key, o->last_key) <= 0)) o->ok = 0;
  o->last_exp = e;
  memcpy(o->last_key, key, kl + 1);
  o->n++;
  return 0;
}

static void test_expiry_order(void) {
  enum { N = 2000 };
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  uint64_t seed = 42;
  ls_state_put *puts = calloc(N, sizeof *puts);
  char(*keys)[16] = malloc(N * sizeof *keys);
  int64_t *exps = malloc(N * sizeof *exps);
  for (int i = 0; i < N; i++) {
    /* every fifth without expiry; large values check the big-endian order */
    int64_t e = i % 5 == 0 ? 0 : (int64_t)(check_splitmix64(&seed) % 300) * 1000003;
    if (i % 5 && e == 0) e = 1;
    exps[i] = e;
    snprintf(keys[i], sizeof keys[i], "e%" PRId64 "-%d", e, i);
    puts[i] = (ls_state_put){"o", 0, keys[i], strlen(keys[i]), "v", 1, e};
  }
  CHECK(ls_state_commit(s, puts, N, NULL, 0, NULL, 0) == 0);
  int64_t nows[] = {0, 1, 1000003, 150 * 1000003LL, INT64_MAX};
  for (size_t j = 0; j < sizeof nows / sizeof *nows; j++) {
    int want = 0;
    for (int i = 0; i < N; i++) want += exps[i] && exps[i] <= nows[j];
    order_check o = {s, 0, "", 1, 0};
    CHECK(ls_state_scan_expired(s, "o", 0, nows[j], SIZE_MAX, order_visit, &o) == want);
    CHECK(o.ok && o.n == want);
    o = (order_check){s, 0, "", 1, 0};
    int capped = want < 100 ? want : 100;
    CHECK(ls_state_scan_expired(s, "o", 0, nows[j], 100, order_visit, &o) == capped);
    CHECK(o.ok && o.n == capped);
  }
  CHECK(listed_keys(s, "o", 0) == N);
  free(puts);
  free(keys);
  free(exps);
  ls_state_close(s);
  rm_tmp(dir);
}

/* ---- marks with a watermark -------------------------------------------------- */

/* Writes a raw mark value for "<store>/<partition>" as an older version did. */
static void write_raw_mark(const char *dir, const char *name, const void *val, size_t len) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 4096);
  if (rc == 0) rc = mdb_env_open(env, dir, MDB_NOTLS, 0644);
  if (rc == 0) rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, "__marks", MDB_CREATE, &dbi);
  MDB_val k = {strlen(name), (void *)name}, v = {len, (void *)val};
  if (rc == 0) rc = mdb_put(txn, dbi, &k, &v, 0);
  if (rc == 0) rc = mdb_txn_commit(txn);
  CHECK(rc == 0);
  mdb_env_close(env);
}

typedef struct mark_seen {
  const char *store;
  int32_t p;
  int64_t c, in;
} mark_seen;

static int mark_list(void *ud, const char *store, int32_t p, size_t keys, size_t bytes, int64_t c,
                     int64_t in) {
  mark_seen *m = ud;
  (void)keys, (void)bytes;
  if (strcmp(store, m->store) == 0 && p == m->p) m->c = c, m->in = in;
  return 0;
}

static void test_watermarks(void) {
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_mark m[] = {{"w", 0, 5, 7, 1700000000123LL}, {"w", 1, 6, 8, -1}, {"w", 2, 1, 2, 0}};
  CHECK(ls_state_commit(s, NULL, 0, m, 3, NULL, 0) == 0);
  int64_t c = 0, in = 0, wm = 0;
  CHECK(ls_state_get_mark_ex(s, "w", 0, &c, &in, &wm) == 1 && c == 5 && in == 7 &&
        wm == 1700000000123LL);
  CHECK(ls_state_get_mark_ex(s, "w", 1, &c, &in, &wm) == 1 && c == 6 && in == 8 && wm == -1);
  CHECK(ls_state_get_mark_ex(s, "w", 2, &c, &in, &wm) == 1 && wm == 0);
  CHECK(ls_state_get_mark(s, "w", 0, &c, &in) == 1 && c == 5 && in == 7); /* the old call */
  CHECK(ls_state_get_mark_ex(s, "w", 0, NULL, NULL, &wm) == 1 && wm == 1700000000123LL);
  CHECK(ls_state_get_mark_ex(s, "w", 9, &c, &in, &wm) == 0 && c == -1 && in == -1 && wm == -1);
  CHECK(ls_state_get_mark_ex(s, "w/x", 0, &c, &in, &wm) == -1 && wm == -1);
  m[0].watermark = 1700000000999LL; /* a later mark replaces it */
  CHECK(ls_state_commit(s, NULL, 0, m, 1, NULL, 0) == 0);
  CHECK(ls_state_get_mark_ex(s, "w", 0, &c, &in, &wm) == 1 && wm == 1700000000999LL);
  ls_state_close(s);

  /* Reopened: still there. Marks of an older version (16 bytes) read with
   * watermark -1, in get and in list; a mark of another size is corrupt. */
  unsigned char old[16];
  for (int i = 0; i < 8; i++) old[i] = (unsigned char)(i == 0 ? 42 : 0);
  for (int i = 8; i < 16; i++) old[i] = (unsigned char)(i == 8 ? 43 : 0);
  write_raw_mark(dir, "w/3", old, sizeof old);
  unsigned char odd[20] = {0};
  write_raw_mark(dir, "w/4", odd, sizeof odd);
  unsigned char longer[32] = {0};
  longer[0] = 1, longer[8] = 2, longer[16] = 3, longer[24] = 99; /* a later version's extra field */
  write_raw_mark(dir, "w/5", longer, sizeof longer);
  s = open_opts(dir, 0, 0, 0);
  CHECK(ls_state_get_mark_ex(s, "w", 0, &c, &in, &wm) == 1 && c == 5 && wm == 1700000000999LL);
  CHECK(ls_state_get_mark_ex(s, "w", 3, &c, &in, &wm) == 1 && c == 42 && in == 43 && wm == -1);
  CHECK(ls_state_get_mark(s, "w", 3, &c, &in) == 1 && c == 42 && in == 43);
  CHECK(ls_state_get_mark_ex(s, "w", 4, &c, &in, &wm) == -1 && c == -1 && wm == -1);
  CHECK_STR(ls_state_error(s), "state: mark of w/4 is corrupt");
  CHECK(ls_state_get_mark_ex(s, "w", 5, &c, &in, &wm) == 1 && c == 1 && in == 2 && wm == 3);
  /* list shows marks whose partition has a database: give w/3 one. */
  CHECK(put_str(s, "w", 3, "k", "v") == 0);
  mark_seen ms = {"w", 3, 0, 0};
  CHECK(ls_state_list(s, mark_list, &ms) == 0 && ms.c == 42 && ms.in == 43);
  /* Rewriting an old mark writes the new format. */
  ls_state_mark m3 = {"w", 3, 50, 60, 777};
  CHECK(ls_state_commit(s, NULL, 0, &m3, 1, NULL, 0) == 0);
  CHECK(ls_state_get_mark_ex(s, "w", 3, &c, &in, &wm) == 1 && c == 50 && in == 60 && wm == 777);
  ls_state_close(s);
  rm_tmp(dir);
}

/* The cost of expiry: 100k keys with expiries in one commit, then sweeping
 * them through the time index (printed, not asserted; compare test_bulk). */
static void test_bulk_expiry(void) {
  enum { N = 100000, P = 16 };
  char *dir = make_tmp();
  ls_state *s = open_opts(dir, 0, 0, 0);
  ls_state_put *puts = calloc(N, sizeof *puts);
  char(*keys)[32] = malloc(N * sizeof *keys);
  for (int i = 0; i < N; i++) {
    int k = snprintf(keys[i], sizeof keys[i], "device-%06d\x1fgTotal", i);
    puts[i] = (ls_state_put){"update", i % P, keys[i], (size_t)k, "12345678", 8,
                             1700000000000LL + (i * 7919) % 100000};
  }
  char err[256] = "";
  double t0 = now_ms();
  CHECK(ls_state_commit(s, puts, N, NULL, 0, err, sizeof err) == 0);
  double put_ms = now_ms() - t0;
  t0 = now_ms();
  CHECK(ls_state_commit(s, puts, N, NULL, 0, err, sizeof err) == 0); /* same expiries again */
  double again_ms = now_ms() - t0;
  int total = 0, n = 0;
  t0 = now_ms();
  for (int p = 0; p < P; p++) {
    int r = ls_state_scan_expired(s, "update", p, INT64_MAX, SIZE_MAX, count_visit, &n);
    total += r > 0 ? r : 0;
  }
  double scan_ms = now_ms() - t0;
  CHECK(total == N && n == N);
  for (int i = 0; i < N; i++) puts[i].val = NULL;
  t0 = now_ms();
  CHECK(ls_state_commit(s, puts, N, NULL, 0, err, sizeof err) == 0);
  double del_ms = now_ms() - t0;
  CHECK(listed_keys(s, "update", 3) == 0);
  printf("100000 keys with expiries: commit %.1f ms (again %.1f ms), scan_expired %.1f ms, "
         "delete %.1f ms (MDB_NOSYNC)\n", put_ms, again_ms, scan_ms, del_ms);
  free(puts);
  free(keys);
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
  test_expiry();
  test_expiry_errors();
  test_expiry_txns();
  test_expiry_order();
  test_watermarks();
  test_bulk();
  test_bulk_expiry();
  CHECK_DONE();
}
