/* mem.c - the runtime's one out-of-memory policy (see mem.h). */
#include "mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

void ls_out_of_memory(size_t n) {
  char line[96];
  int len = snprintf(line, sizeof line, "luastream: out of memory (allocating %zu bytes); exiting\n", n);
  if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0) { /* nothing else to try */ }
  _exit(1);
}

void *ls_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) ls_out_of_memory(n);
  return p;
}

void *ls_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) ls_out_of_memory(n * size);
  return p;
}

void *ls_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) ls_out_of_memory(n);
  return q;
}

char *ls_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ls_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

#define GLIBC_DEFAULT (128 << 10)

static int user_tuned(void) {
  const char *t = getenv("GLIBC_TUNABLES");
  return t && strstr(t, "glibc.malloc.") != NULL;
}

int ls_mem_policy(int fast) {
#ifdef __GLIBC__
  static _Atomic int mode; /* 0 small (glibc's defaults at start), 1 fast */
  fast = fast ? 1 : 0;
  if (atomic_load(&mode) == fast || user_tuned() || atomic_exchange(&mode, fast) == fast) return fast;
  mallopt(M_MMAP_THRESHOLD, fast ? 32 << 20 : GLIBC_DEFAULT);
  mallopt(M_TRIM_THRESHOLD, fast ? 64 << 20 : GLIBC_DEFAULT);
  mallopt(M_TOP_PAD, fast ? 4 << 20 : GLIBC_DEFAULT);
  if (!fast) malloc_trim(0);
#endif
  return fast;
}
