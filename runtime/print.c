/* print.c - output records as text lines (see print.h). */
#include "print.h"

#include <stdio.h>
#include <unistd.h>

#include "log.h"

/* Writes p[0..n) with control bytes escaped, so one record stays one line. */
static void print_escaped(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
    else putchar(c);
  }
}

void ls_print_record(const char *topic, const ls_outrec *o) {
  if (ls_log_get_status_line() && isatty(STDOUT_FILENO)) fputs("\r\033[K", stdout);
  fputs(topic, stdout);
  putchar('\t');
  if (o->key) print_escaped(o->key, o->key_len);
  putchar('\t');
  if (o->value) print_escaped(o->value, o->value_len);
  else fputs("null", stdout);
  putchar('\n');
}
