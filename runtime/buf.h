/* buf.h - growable byte buffer used by the encoders and the producer path.
 *
 * Owns nothing but its own bytes. Encoders append into an ls_buf; the caller
 * resets it (len = 0) between records so the allocation is reused. */
#ifndef LS_BUF_H
#define LS_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct ls_buf {
  char *data;
  size_t len;
  size_t cap;
} ls_buf;

void ls_buf_init(ls_buf *b);
void ls_buf_free(ls_buf *b);
/* Make room for n more bytes; returns 0, or -1 when out of memory. */
int ls_buf_grow(ls_buf *b, size_t n);

static inline int ls_buf_reserve(ls_buf *b, size_t n) {
  return (b->cap - b->len >= n) ? 0 : ls_buf_grow(b, n);
}
static inline int ls_buf_put(ls_buf *b, const void *p, size_t n) {
  if (ls_buf_reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
static inline int ls_buf_putc(ls_buf *b, char c) {
  if (ls_buf_reserve(b, 1)) return -1;
  b->data[b->len++] = c;
  return 0;
}

#endif
