/* test_offsets.c - offsets.c: the next offset to commit per topic and partition. */
#include <stdlib.h>

#include "check.h"
#include "offsets.h"

static int64_t find(const rd_kafka_topic_partition_list_t *l, const char *t, int32_t p) {
  const rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(l, t, p);
  return e ? e->offset : -99;
}

static void test_dirty_entries(void) {
  char *names[] = {"in", "other"};
  ls_offsets o;
  CHECK(ls_offsets_init(&o, names, 2) == 0);
  CHECK(ls_offsets_get(&o, 0, 3) == -1);
  CHECK(ls_offsets_take_dirty(&o) == NULL);
  CHECK(ls_offsets_set(&o, 0, 3, 10) == 0);
  CHECK(ls_offsets_set(&o, 0, 3, 12) == 0); /* the later one wins */
  CHECK(ls_offsets_set(&o, 1, 700, 5) == 0); /* grows past its first capacity */
  CHECK(ls_offsets_get(&o, 0, 3) == 12);
  CHECK(ls_offsets_get(&o, 1, 700) == 5);
  rd_kafka_topic_partition_list_t *l = ls_offsets_take_dirty(&o);
  CHECK(l && l->cnt == 2);
  CHECK(find(l, "in", 3) == 12);
  CHECK(find(l, "other", 700) == 5);
  CHECK(ls_offsets_take_dirty(&o) == NULL); /* taken: clean now */
  ls_offsets_restore(&o, l);                /* a failed commit: dirty again */
  rd_kafka_topic_partition_list_t *again = ls_offsets_take_dirty(&o);
  CHECK(again && again->cnt == 2 && find(again, "in", 3) == 12);
  rd_kafka_topic_partition_list_destroy(again);
  CHECK(ls_offsets_topic_index(&o, "other") == 1);
  CHECK(ls_offsets_topic_index(&o, "nope") == -1);
  /* revoked partitions are forgotten; the others stay */
  rd_kafka_topic_partition_list_t *gone = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(gone, "in", 3);
  ls_offsets_forget(&o, gone);
  CHECK(ls_offsets_get(&o, 0, 3) == -1);
  CHECK(ls_offsets_get(&o, 1, 700) == 5);
  ls_offsets_clear(&o);
  CHECK(ls_offsets_get(&o, 1, 700) == -1);
  rd_kafka_topic_partition_list_destroy(gone);
  rd_kafka_topic_partition_list_destroy(l);
  ls_offsets_free(&o);
}

int main(void) {
  test_dirty_entries();
  CHECK_DONE();
}
