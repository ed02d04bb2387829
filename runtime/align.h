/* align.h - the order of records across a join's inputs (docs/joins.md,
 * "Order across inputs").
 *
 * Topics that are joined (they share a state store: a table and its stream,
 * the two sides of an as-of or interval join) are aligned: their records wait
 * here, per topic-partition, and partition p of the joined topics leaves in
 * the order of the records' Kafka timestamps, as Kafka Streams takes a task's
 * records. While one joined partition has nothing waiting, the others wait
 * for it:
 *   - up to `lag_wait_ms` while it has not reported its end (records may still
 *     be on their way: the consumer has not fetched up to the end yet);
 *   - up to `wait_ms` (the app's `join_wait`, default 0) once it has (the
 *     consumer's partition-end event), for records not yet produced;
 * then the others go on without it. A partition holding `cap` records is
 * paused (the consumer stops fetching it) until it drains to half.
 * Records of other topics pass straight through. Knows the consumer only
 * through the pause callback; app.c owns the messages it hands over and the
 * offsets of those it gets back. */
#ifndef LS_ALIGN_H
#define LS_ALIGN_H

#include <librdkafka/rdkafka.h>

#include "spec.h"

typedef struct ls_align ls_align;

/* How long a joined partition that has not reported its end is waited for. */
#define LS_ALIGN_LAG_WAIT_MS 30000

/* pause = 1: stop fetching topic[partition]; 0: go on. */
typedef void (*ls_align_pause_fn)(void *ud, const char *topic, int32_t partition, int pause);

typedef struct ls_align_opts {
  int wait_ms;      /* the wait for a joined partition at its end (join_wait) */
  int lag_wait_ms;  /* the wait for one that has not reported its end */
  int cap;          /* records held per partition before it is paused */
  ls_align_pause_fn pause;
  void *ud;
} ls_align_opts;

/* The aligner of spec's joined inputs, or NULL when no two inputs share a
 * store (nothing to align). The spec must outlive it. */
ls_align *ls_align_new(const ls_spec *spec, const ls_align_opts *o);
void ls_align_free(ls_align *al);

/* A live reload changed join_wait or the batch size (cap, as in opts). */
void ls_align_set_limits(ls_align *al, int wait_ms, int cap);
/* Whether input topic index t is aligned. */
int ls_align_has(const ls_align *al, int t);

/* Partitions assigned to this instance: they take part from now on. */
void ls_align_assign(ls_align *al, const rd_kafka_topic_partition_list_t *parts);
/* Partitions revoked: their waiting records are dropped (not processed, so
 * not committed: their next owner reads them again) and they are resumed. */
void ls_align_revoke(ls_align *al, const rd_kafka_topic_partition_list_t *parts);
/* Every waiting record dropped, every partition resumed (the consumer went
 * back to the committed offsets). */
void ls_align_clear(ls_align *al);

/* Takes msgs[0..n), as consumed: records and partition-end events of aligned
 * topics stay here (topic_of gives a message's input index, -1 for none);
 * the others are moved, in order, to the front of msgs. Returns how many. */
int ls_align_push(ls_align *al, rd_kafka_message_t **msgs, int n,
                  int (*topic_of)(void *ud, const rd_kafka_message_t *m), void *ud);
/* Appends to out[0..max) the records that may go now (ms = ls_mono_ms()),
 * in order. Returns how many. */
int ls_align_take(ls_align *al, rd_kafka_message_t **out, int max, double now);
/* Records waiting here. */
long ls_align_held(const ls_align *al);
/* When a wait ends, if records wait for one (ms, as now), else -1. */
double ls_align_deadline(const ls_align *al);

#endif
