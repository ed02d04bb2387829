/* buf.c - growable byte buffer (see buf.h). */
#include "buf.h"

#include <stdlib.h>

void ls_buf_init(ls_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void ls_buf_free(ls_buf *b) {
  free(b->data);
  ls_buf_init(b);
}

int ls_buf_grow(ls_buf *b, size_t n) {
  size_t need = b->len + n;
  if (need < b->len) return -1; /* overflow */
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > ((size_t)-1) / 2) return -1;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}
