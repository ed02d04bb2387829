/* print.h - output records as text lines on stdout (--print, --count, --timeout).
 *
 * One line per record, "topic<TAB>key<TAB>value", control bytes escaped so a
 * record stays one line; a null key is empty, a null value is "null". When
 * the status line is on a terminal, the line is cleared first. stdout is
 * line-buffered by app.c, so lines show up as records are produced. */
#ifndef LS_PRINT_H
#define LS_PRINT_H

#include "batch.h"

void ls_print_record(const char *topic, const ls_outrec *o);

#endif
