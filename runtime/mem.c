/* mem.c - the runtime's one out-of-memory policy (see mem.h). */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
