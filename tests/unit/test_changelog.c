/* test_changelog.c - changelog.c against an in-process dev broker: records
 * produced with their input offsets replay into LMDB up to a committed input
 * offset; deletes replay as deletes; a changelog that ends before the local
 * mark means stale local state, which is dropped and rebuilt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "changelog.h"
#include "check.h"
#include "devbroker.h"
#include "kafka.h"
#include "log.h"
#include "state.h"

static char tmpdir[] = "/tmp/ls-test-changelog-XXXXXX";

static ls_state *open_state(const char *name) {
  char dir[512], err[512];
  snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
  ls_state *s = ls_state_open(dir, NULL, err, sizeof err);
  if (!s) fprintf(stderr, "%s\n", err);
  return s;
}

/* The value of key (with the 2-byte length prefix of message key "m") or NULL. */
static char *get(ls_state *s, const char *state_key) {
  char k[64];
  size_t n = strlen(state_key);
  k[0] = 0, k[1] = 1, k[2] = 'm';
  memcpy(k + 3, state_key, n);
  const void *v;
  size_t vl;
  if (ls_state_get(s, "s", 1, k, n + 3, &v, &vl) != 1) return NULL;
  char *out = malloc(vl + 1);
  memcpy(out, v, vl);
  out[vl] = 0;
  return out;
}

static int produce(ls_changelog *cl, ls_kafka *k, const char *state_key, const char *val,
                   int64_t input_offset) {
  char key[64], err[512];
  size_t n = strlen(state_key);
  key[0] = 0, key[1] = 1, key[2] = 'm';
  memcpy(key + 3, state_key, n);
  int64_t offsets[1] = {input_offset};
  int rc = ls_changelog_produce(cl, 0, 1, key, n + 3, val, val ? strlen(val) : 0, offsets, 0, err,
                                sizeof err);
  if (rc) fprintf(stderr, "%s\n", err);
  int fatal;
  if (rc == 0 && ls_kafka_flush(k, 10000, &fatal, err, sizeof err)) rc = -1;
  return rc;
}

static void check_value(ls_state *s, const char *key, const char *want) {
  char *got = get(s, key);
  if (want) CHECK_STR(got, want);
  else CHECK(got == NULL);
  free(got);
}

int main(void) {
  ls_log_set_level(LS_LOG_WARN);
  char err[1024];
  if (!mkdtemp(tmpdir)) return 1;
  ls_devbroker *b = ls_devbroker_start(1, err, sizeof err);
  CHECK(b != NULL);
  if (!b) CHECK_DONE();
  ls_devbroker_create_topic(b, "in", 4, err, sizeof err);
  ls_devbroker_create_topic(b, "app__s__changelog", 4, err, sizeof err);
  ls_topic_spec in = {.name = "in"};
  int store_topics[] = {0};
  ls_store_spec store = {.name = "s", .topic = 0, .topics = store_topics, .ntopics = 1,
                         .changelog = "app__s__changelog"};
  ls_spec spec = {.name = "app", .inputs = &in, .ninputs = 1, .stores = &store, .nstores = 1};
  ls_kafka_conf kc = {.brokers = ls_devbroker_bootstraps(b), .group = "app", .offset_reset = "earliest",
                      .dev_broker = 1};
  ls_kafka *k = ls_kafka_new(&kc, err, sizeof err);
  CHECK(k != NULL);
  ls_state *s1 = open_state("one");
  ls_changelog *cl = ls_changelog_open(k, &spec, s1, err, sizeof err);
  CHECK(cl != NULL);
  CHECK_STR(ls_changelog_name(cl, 0), "app__s__changelog");
  CHECK(ls_changelog_acked(cl, 0, 1) == -1);
  CHECK(produce(cl, k, "a", "1", 10) == 0);
  CHECK(produce(cl, k, "b", "2", 10) == 0);
  CHECK(produce(cl, k, "a", "3", 20) == 0);
  CHECK(produce(cl, k, "b", NULL, 20) == 0); /* a delete */
  CHECK(ls_changelog_acked(cl, 0, 1) == 4);   /* next offset, acknowledged */

  /* Up to input offset 10: the first two records only. */
  ls_state *s2 = open_state("two");
  ls_changelog *cl2 = ls_changelog_open(k, &spec, s2, err, sizeof err);
  int32_t parts[] = {1};
  int64_t upto10[] = {10}, upto20[] = {20};
  CHECK(ls_changelog_restore(cl2, 0, parts, 1, upto10, err, sizeof err) == 0);
  check_value(s2, "a", "1");
  check_value(s2, "b", "2");
  int64_t mark, inoff;
  CHECK(ls_state_get_mark(s2, "s", 1, &mark, &inoff) == 1);
  CHECK(mark == 4 && inoff == 10);

  /* Everything, into a fresh store: the delete applies. */
  ls_state *s3 = open_state("three");
  ls_changelog *cl3 = ls_changelog_open(k, &spec, s3, err, sizeof err);
  CHECK(ls_changelog_restore(cl3, 0, parts, 1, upto20, err, sizeof err) == 0);
  check_value(s3, "a", "3");
  check_value(s3, "b", NULL);

  /* A local mark beyond the changelog's end: stale, dropped, rebuilt. */
  ls_state *s4 = open_state("four");
  char stale_key[] = {0, 1, 'm', 'z'};
  ls_state_put put = {"s", 1, stale_key, sizeof stale_key, "9", 1, 0};
  ls_state_mark m = {.store = "s", .partition = 1, .changelog_offset = 100, .input_offset = 50, .watermark = -1};
  CHECK(ls_state_commit(s4, &put, 1, &m, 1, err, sizeof err) == 0);
  ls_changelog *cl4 = ls_changelog_open(k, &spec, s4, err, sizeof err);
  CHECK(ls_changelog_restore(cl4, 0, parts, 1, upto20, err, sizeof err) == 0);
  check_value(s4, "z", NULL); /* the stale entry is gone */
  check_value(s4, "a", "3");
  CHECK(ls_state_get_mark(s4, "s", 1, &mark, &inoff) == 1);
  CHECK(mark == 4);

  ls_changelog_close(cl4), ls_changelog_close(cl3), ls_changelog_close(cl2), ls_changelog_close(cl);
  ls_state_close(s4), ls_state_close(s3), ls_state_close(s2), ls_state_close(s1);
  ls_kafka_close(k);
  ls_devbroker_stop(b);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  CHECK_DONE();
}
