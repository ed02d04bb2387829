/* reaper.h - destroys consumed Kafka messages on a thread of its own.
 *
 * librdkafka allocates a consumed message on its broker thread, and freeing it
 * takes the lock of that thread's malloc arena, which the broker thread holds
 * while it parses the next fetch response. Done on the main loop, that free
 * often found the lock taken and put the loop to sleep on a futex (about
 * 1,800 times per 300,000 messages, a fifth of its time; see
 * docs/performance.md, "Memory allocator"). The loop hands the messages it is
 * done with to the reaper instead, a batch at a time, and the reaper's thread
 * destroys them.
 *
 * Bounded: the reaper holds at most LS_REAPER_CAP messages; when it is that
 * far behind, ls_reaper_put destroys the rest at once on the caller's thread.
 * Nothing waits on the reaper but ls_reaper_drain. kafka.c owns the one reaper
 * of a consumer and drains it before the consumer closes. */
#ifndef LS_REAPER_H
#define LS_REAPER_H

#include <librdkafka/rdkafka.h>

#define LS_REAPER_CAP 16384

typedef struct ls_reaper ls_reaper;

/* A reaper and its thread; NULL when either cannot be had (no memory, no
 * thread): every call below then destroys messages on the caller's thread. */
ls_reaper *ls_reaper_new(void);
/* Takes msgs[0..n) and destroys them soon, on the reaper's thread. */
void ls_reaper_put(ls_reaper *r, rd_kafka_message_t **msgs, int n);
/* Returns once every message put so far is destroyed. */
void ls_reaper_drain(ls_reaper *r);
/* Messages put and not destroyed yet (for tests). */
int ls_reaper_pending(ls_reaper *r);
/* Drains, stops the thread and frees r (NULL: nothing). */
void ls_reaper_free(ls_reaper *r);

/* Makes the calling thread background work for the scheduler (SCHED_BATCH):
 * waking it does not preempt the main loop on its core. The reaper's thread
 * and kafka.c's nudger call it first. */
void ls_background_thread(void);

#endif
