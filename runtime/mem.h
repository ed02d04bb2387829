/* mem.h - the runtime's one out-of-memory policy.
 *
 * Two kinds of allocation, two outcomes:
 * - the runtime's own structures (handles, per-topic arrays, batch arrays)
 *   use ls_xmalloc / ls_xcalloc / ls_xrealloc / ls_xstrdup: when memory runs
 *   out there they log "out of memory" with the size and exit with code 1 at
 *   once. Nothing more is committed, so a restart redoes the work since the
 *   last checkpoint (at-least-once; exactly-once aborts the open transaction);
 * - memory whose size comes from the data (a record, a value, a state entry)
 *   is checked where it is asked for, and failing becomes that record's or
 *   that operation's error, so one huge record does not take the process down
 *   when it can be refused instead. */
#ifndef LS_MEM_H
#define LS_MEM_H

#include <stddef.h>

void *ls_xmalloc(size_t n);
void *ls_xcalloc(size_t n, size_t size);
void *ls_xrealloc(void *p, size_t n);
char *ls_xstrdup(const char *s);
/* The policy itself, for allocators with their own error returns: logs and exits 1. */
void ls_out_of_memory(size_t n) __attribute__((noreturn));

#endif
