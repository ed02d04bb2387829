/* offsets.h - the next offset to commit, per input topic and partition.
 *
 * app.c records, after each batch, the offset following the last message whose
 * outputs were all produced; a checkpoint turns the changed entries into a
 * commit list. Indexed by (topic index, partition) so recording costs O(1). */
#ifndef LS_OFFSETS_H
#define LS_OFFSETS_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct ls_offsets_topic {
  int64_t *next;   /* -1: nothing to commit */
  uint8_t *dirty;
  int cap;
} ls_offsets_topic;

typedef struct ls_offsets {
  ls_offsets_topic *t;
  char **names;    /* borrowed topic names */
  int ntopics;
} ls_offsets;

int ls_offsets_init(ls_offsets *o, char **names, int ntopics);
void ls_offsets_free(ls_offsets *o);
/* Records that everything before `next` in topic/partition is done. */
int ls_offsets_set(ls_offsets *o, int topic, int32_t partition, int64_t next);
/* The dirty entries as a new list (NULL when none); they become clean. */
rd_kafka_topic_partition_list_t *ls_offsets_take_dirty(ls_offsets *o);
/* Marks the entries of list dirty again (a commit failed). */
void ls_offsets_restore(ls_offsets *o, const rd_kafka_topic_partition_list_t *list);
/* Forgets every position (an aborted transaction rewound the consumer). */
void ls_offsets_clear(ls_offsets *o);
/* Forgets partitions that were revoked. */
void ls_offsets_forget(ls_offsets *o, const rd_kafka_topic_partition_list_t *parts);
/* The next offset recorded for topic/partition, or -1. */
int64_t ls_offsets_get(const ls_offsets *o, int topic, int32_t partition);
/* Index of a topic name, or -1. */
int ls_offsets_topic_index(const ls_offsets *o, const char *name);

#endif
