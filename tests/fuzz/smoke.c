/* smoke.c - a libFuzzer target run without libFuzzer: the short smoke test
 * that the normal and the sanitizer builds run (ctest unit.fuzz_*_smoke).
 *
 *   fuzz_mpack_smoke CORPUS_DIR [MUTATIONS]
 *
 * Feeds the target every file of CORPUS_DIR (in name order), every prefix of
 * each, then MUTATIONS (default 20000) inputs made from them by a fixed
 * pseudo-random sequence: bit flips, bytes set to random or boundary values,
 * inserted, deleted or repeated ranges, truncation and splices of two seeds.
 * The same inputs every run, so a failure reproduces; the target aborts on a
 * failed check. The real fuzzing is libFuzzer's (tests/fuzz/fuzz_*.c). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SMOKE_MAX 4096

typedef struct seed {
  unsigned char *data;
  size_t len;
} seed;

static uint64_t rng_state = 0x6c7375666675ULL;

static uint64_t rng(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static size_t below(size_t n) { return n ? (size_t)(rng() % n) : 0; }

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir, in name order; exits on errors. */
static seed *load_corpus(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) {
    perror(dir);
    exit(2);
  }
  char **names = NULL;
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    names = realloc(names, (n + 1) * sizeof *names);
    if (!names || !(names[n] = strdup(e->d_name))) abort();
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  seed *seeds = calloc(n ? n : 1, sizeof *seeds);
  if (!seeds) abort();
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    FILE *f = fopen(path, "rb");
    if (!f) {
      perror(path);
      exit(2);
    }
    seeds[i].data = malloc(SMOKE_MAX);
    if (!seeds[i].data) abort();
    seeds[i].len = fread(seeds[i].data, 1, SMOKE_MAX, f);
    fclose(f);
    free(names[i]);
  }
  free(names);
  *count = n;
  return seeds;
}

static const unsigned char boundary[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xc2, 0xc7, 0xca,
                                         0xcb, 0xcf, 0xd3, 0xd7, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0x90,
                                         0x9f, 0x80, 0x8f, 0xa0, 0xbf, 0xe0, '"', '[', ']', '{',
                                         '}', ',', ':', '-', '.', 'e', '0', '9', '\\', 'u'};

/* One random change of buf (len bytes, room for SMOKE_MAX). */
static size_t mutate(unsigned char *buf, size_t len, const seed *seeds, size_t nseeds) {
  size_t at = below(len + 1), k;
  switch (rng() % 8) {
  case 0: /* flip a bit */
    if (len) buf[below(len)] ^= (unsigned char)(1u << (rng() % 8));
    break;
  case 1: /* a random byte */
    if (len) buf[below(len)] = (unsigned char)rng();
    break;
  case 2: /* a boundary byte */
    if (len) buf[below(len)] = boundary[below(sizeof boundary)];
    break;
  case 3: /* insert a byte */
    if (len < SMOKE_MAX) {
      memmove(buf + at + 1, buf + at, len - at);
      buf[at] = rng() % 2 ? boundary[below(sizeof boundary)] : (unsigned char)rng();
      len++;
    }
    break;
  case 4: /* delete a range */
    k = 1 + below(len - at < 8 ? len - at : 8);
    if (at < len) {
      memmove(buf + at, buf + at + k, len - at - k);
      len -= k;
    }
    break;
  case 5: /* repeat a range */
    k = 1 + below(16);
    if (at + k <= len && len + k <= SMOKE_MAX) {
      memmove(buf + at + 2 * k, buf + at + k, len - at - k);
      memcpy(buf + at + k, buf + at, k);
      len += k;
    }
    break;
  case 6: /* truncate */
    len = at;
    break;
  default: { /* splice in a piece of another seed */
    const seed *s = &seeds[below(nseeds)];
    size_t from = below(s->len + 1), n = below(s->len - from + 1);
    if (at + n <= SMOKE_MAX) {
      memcpy(buf + at, s->data + from, n);
      if (at + n > len) len = at + n;
    }
    break;
  }
  }
  return len;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS]\n", argv[0]);
    return 2;
  }
  long mutations = argc == 3 ? strtol(argv[2], NULL, 10) : 20000;
  size_t nseeds;
  seed *seeds = load_corpus(argv[1], &nseeds);
  if (nseeds == 0) {
    fprintf(stderr, "%s: no seed files in %s\n", argv[0], argv[1]);
    return 2;
  }
  unsigned char *buf = malloc(SMOKE_MAX);
  if (!buf) abort();
  long runs = 0;
  for (size_t i = 0; i < nseeds; i++)
    for (size_t n = 0; n <= seeds[i].len; n++, runs++) {
      memcpy(buf, seeds[i].data, n);
      LLVMFuzzerTestOneInput(buf, n);
    }
  for (long m = 0; m < mutations; m++, runs++) {
    const seed *s = &seeds[below(nseeds)];
    size_t len = s->len;
    memcpy(buf, s->data, len);
    for (int k = 1 + (int)below(4); k > 0; k--) len = mutate(buf, len, seeds, nseeds);
    LLVMFuzzerTestOneInput(buf, len);
  }
  for (size_t i = 0; i < nseeds; i++) free(seeds[i].data);
  free(seeds);
  free(buf);
  printf("%s: %ld inputs from %zu seeds\n", argv[0], runs, nseeds);
  printf("%ld passed, 0 failed\n", runs);
  return 0;
}
