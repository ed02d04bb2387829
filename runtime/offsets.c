/* offsets.c - per-partition commit positions (see offsets.h). */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>

int ls_offsets_init(ls_offsets *o, char **names, int ntopics) {
  o->t = calloc((size_t)ntopics + 1, sizeof *o->t);
  o->names = names;
  o->ntopics = ntopics;
  return o->t ? 0 : -1;
}

void ls_offsets_free(ls_offsets *o) {
  for (int i = 0; i < o->ntopics; i++) {
    free(o->t[i].next);
    free(o->t[i].dirty);
  }
  free(o->t);
  memset(o, 0, sizeof *o);
}

static int grow(ls_offsets_topic *t, int32_t partition) {
  int cap = t->cap ? t->cap : 16;
  while (cap <= partition) cap *= 2;
  int64_t *next = realloc(t->next, (size_t)cap * sizeof *next);
  if (!next) return -1;
  t->next = next;
  uint8_t *dirty = realloc(t->dirty, (size_t)cap);
  if (!dirty) return -1;
  t->dirty = dirty;
  for (int i = t->cap; i < cap; i++) {
    t->next[i] = -1;
    t->dirty[i] = 0;
  }
  t->cap = cap;
  return 0;
}

int ls_offsets_set(ls_offsets *o, int topic, int32_t partition, int64_t next) {
  if (topic < 0 || topic >= o->ntopics || partition < 0) return -1;
  ls_offsets_topic *t = &o->t[topic];
  if (partition >= t->cap && grow(t, partition)) return -1;
  if (t->next[partition] != next) {
    t->next[partition] = next;
    t->dirty[partition] = 1;
  }
  return 0;
}

rd_kafka_topic_partition_list_t *ls_offsets_take_dirty(ls_offsets *o) {
  rd_kafka_topic_partition_list_t *l = NULL;
  for (int i = 0; i < o->ntopics; i++) {
    ls_offsets_topic *t = &o->t[i];
    for (int p = 0; p < t->cap; p++) {
      if (!t->dirty[p]) continue;
      if (!l) l = rd_kafka_topic_partition_list_new(16);
      rd_kafka_topic_partition_list_add(l, o->names[i], p)->offset = t->next[p];
      t->dirty[p] = 0;
    }
  }
  return l;
}

int64_t ls_offsets_get(const ls_offsets *o, int topic, int32_t partition) {
  if (topic < 0 || topic >= o->ntopics || partition < 0 || partition >= o->t[topic].cap) return -1;
  return o->t[topic].next[partition];
}

int ls_offsets_topic_index(const ls_offsets *o, const char *name) {
  for (int i = 0; i < o->ntopics; i++)
    if (strcmp(o->names[i], name) == 0) return i;
  return -1;
}

void ls_offsets_restore(ls_offsets *o, const rd_kafka_topic_partition_list_t *list) {
  for (int i = 0; list && i < list->cnt; i++) {
    int ti = ls_offsets_topic_index(o, list->elems[i].topic);
    int32_t p = list->elems[i].partition;
    if (ti >= 0 && p < o->t[ti].cap && o->t[ti].next[p] == list->elems[i].offset)
      o->t[ti].dirty[p] = 1;
  }
}

void ls_offsets_forget(ls_offsets *o, const rd_kafka_topic_partition_list_t *parts) {
  for (int i = 0; parts && i < parts->cnt; i++) {
    int ti = ls_offsets_topic_index(o, parts->elems[i].topic);
    int32_t p = parts->elems[i].partition;
    if (ti < 0 || p >= o->t[ti].cap) continue;
    o->t[ti].next[p] = -1;
    o->t[ti].dirty[p] = 0;
  }
}

void ls_offsets_clear(ls_offsets *o) {
  for (int i = 0; i < o->ntopics; i++)
    for (int p = 0; p < o->t[i].cap; p++) {
      o->t[i].next[p] = -1;
      o->t[i].dirty[p] = 0;
    }
}
