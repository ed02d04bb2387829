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

/* The heap policy, for glibc's malloc (nothing with another C library, nor
 * when GLIBC_TUNABLES sets any glibc.malloc tunable: the user's choice).
 *
 * Fast (fast = 1), for a high input rate: free memory stays in the heap up to
 * 64 MiB per arena instead of going back to the kernel at once, heaps grow 4
 * MiB at a time, and blocks up to 32 MiB (a fetch response) come from the
 * heap, not from an mmap of their own. Under glibc's defaults librdkafka's
 * broker threads gave each message's memory back and took it again: about
 * 20,000 page faults per 300,000 messages, a quarter of the process's CPU
 * (docs/performance.md, "Memory allocator"). The cost is resident memory.
 *
 * Small (fast = 0, the start): glibc's defaults (memory goes back once
 * 128 KiB lie free at a heap's top), and every heap's free memory is given
 * back now (malloc_trim). For a gateway's rates, where the churn costs little
 * and memory is dear.
 *
 * The loop switches with the input rate (app.c); a repeated call with the
 * same mode does nothing. Any thread. Returns the mode in force. */
int ls_mem_policy(int fast);

#endif
