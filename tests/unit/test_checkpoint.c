/* test_checkpoint.c - the order of a checkpoint (checkpoint.c) on an
 * in-process dev broker, with a real pipeline run through the engine:
 *   1. ls_ckpt_produce takes the changes from Lua and produces them to the
 *      changelog; LMDB does not have them yet, and they are pending;
 *   2-3. (the app flushes and commits);
 *   4. ls_ckpt_store writes them to LMDB with the mark (the acknowledged
 *      changelog offset), and nothing is pending any more.
 * Also: a revoke of an unclean partition drops its pending changes and its
 * local copy; a restore brings it back from the changelog. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "checkpoint.h"
#include "check.h"
#include "devbroker.h"
#include "engine.h"
#include "kafka.h"
#include "log.h"
#include "lua_vm.h"
#include "state.h"

static char dir[] = "/tmp/ls-test-ckpt-XXXXXX";
static char script[600];

static int push_cli(lua_State *L, void *ud) {
  (void)ud;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, dir);
  lua_setfield(L, -2, "state_dir");
  lua_pushliteral(L, "test");
  lua_setfield(L, -2, "broker");
  lua_newtable(L);
  lua_setfield(L, -2, "set");
  return 1;
}

static int discard(void *ud, const ls_out *o, char *err, size_t errlen) {
  (void)ud, (void)err, (void)errlen;
  if (o->hdrs) rd_kafka_headers_destroy(o->hdrs);
  return 0;
}

static void no_headers(lua_State *L, const void *source) {
  (void)source;
  lua_pushnil(L);
}

/* The committed count of key k in partition p, or -1 (values are MessagePack
 * positive fixints here). */
static int stored_count(ls_state *s, int32_t p, const char *k) {
  char key[64];
  size_t kl = strlen(k);
  key[0] = 0, key[1] = (char)kl;
  memcpy(key + 2, k, kl);
  memcpy(key + 2 + kl, "n", 1);
  const void *v;
  size_t vl;
  if (ls_state_get(s, "default", p, key, kl + 3, &v, &vl) != 1 || vl != 1) return -1;
  return *(const unsigned char *)v;
}

int main(void) {
  char err[2048];
  ls_log_set_level(LS_LOG_WARN);
  if (!mkdtemp(dir)) return 1;
  snprintf(script, sizeof script, "%s/count.lua", dir);
  FILE *f = fopen(script, "w");
  fputs("local ls = require('luastream')\n"
        "local app = ls.app{ name = 'ck' }\n"
        "local sdf = app:dataframe(app:topic('in', { key = 'string', value = 'json' }))\n"
        "sdf = sdf:update(function(row, state) state:set('n', state:get('n', 0) + 1) end,"
        " { stateful = true })\n"
        "sdf:to_topic(app:topic('out', { value = 'json' }))\n", f);
  fclose(f);

  ls_devbroker *b = ls_devbroker_start(1, err, sizeof err);
  ls_devbroker_create_topic(b, "in", 2, err, sizeof err);
  ls_devbroker_create_topic(b, "ck__default__changelog", 2, err, sizeof err);
  ls_kafka_conf kc = {.brokers = ls_devbroker_bootstraps(b), .group = "ck", .offset_reset = "earliest",
                      .dev_broker = 1};
  ls_kafka *k = ls_kafka_new(&kc, err, sizeof err);
  lua_State *L = ls_vm_new();
  ls_spec spec;
  ls_batch batch;
  CHECK(ls_batch_load(&batch, L, &spec, script, push_cli, NULL, err, sizeof err) == 0);
  batch.push_headers = no_headers;
  CHECK(ls_batch_alloc(&batch, 16) == 0);
  ls_ckpt *c = ls_ckpt_open(L, batch.rt_ref, &spec, k, 0, err, sizeof err);
  CHECK(c != NULL);
  ls_engine eng;
  ls_engine_io io = {.produce = discard};
  CHECK(ls_engine_init(&eng, &batch, &io, 0) == 0);
  char *names[] = {spec.inputs[0].name};
  ls_offsets offs;
  ls_offsets_init(&offs, names, 1);

  /* three rows of key "a" in partition 1: its count is 3 */
  ls_inmsg in[3];
  for (int i = 0; i < 3; i++)
    in[i] = (ls_inmsg){"{}", 2, "a", 1, i, 1000 + i, 1, 0, NULL};
  CHECK(ls_engine_process(&eng, in, 3) == 3);
  ls_offsets_set(&offs, 0, 1, 3);
  ls_state *s = ls_ckpt_state(c);

  /* 1. produce: pending, changelog written, LMDB not yet */
  CHECK(ls_ckpt_produce(c, &offs, err, sizeof err) == 0);
  CHECK(ls_ckpt_pending(c) == 1);
  CHECK(stored_count(s, 1, "a") == -1);
  int fatal;
  CHECK(ls_kafka_flush(k, 10000, &fatal, err, sizeof err) == 0);
  /* 3. commit the input offset (3: the three rows) */
  rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(commit, "in", 1)->offset = 3;
  CHECK(ls_kafka_commit(k, commit, err, sizeof err) == 0);
  rd_kafka_topic_partition_list_destroy(commit);
  /* 4. store: LMDB has the count and the mark */
  CHECK(ls_ckpt_store(c, &offs, err, sizeof err) == 0);
  CHECK(ls_ckpt_pending(c) == 0);
  CHECK(stored_count(s, 1, "a") == 3);
  int64_t mark, inoff;
  CHECK(ls_state_get_mark(s, "default", 1, &mark, &inoff) == 1);
  CHECK(mark == 1 && inoff == 3);

  /* an unclean revoke drops the pending change and the local copy ... */
  in[0].offset = 3;
  CHECK(ls_engine_process(&eng, in, 1) == 1);
  ls_offsets_set(&offs, 0, 1, 4);
  CHECK(ls_ckpt_produce(c, &offs, err, sizeof err) == 0);
  CHECK(ls_ckpt_pending(c) == 1);
  ls_ckpt_revoke(c, 0, 1, 0);
  CHECK(ls_ckpt_pending(c) == 0);
  CHECK(stored_count(s, 1, "a") == -1);
  /* ... and a restore rebuilds it from the changelog, up to the committed
     input offset: the first checkpoint's count (3), not the uncommitted 4th
     row's, although its change reached the changelog */
  CHECK(ls_kafka_flush(k, 10000, &fatal, err, sizeof err) == 0);
  int32_t parts[] = {1};
  CHECK(ls_ckpt_restore(c, 0, parts, 1, err, sizeof err) == 0);
  CHECK(stored_count(s, 1, "a") == 3);
  CHECK(ls_state_get_mark(s, "default", 1, &mark, &inoff) == 1);
  CHECK(mark == 2 && inoff == 3);

  ls_engine_free(&eng);
  ls_offsets_free(&offs);
  ls_ckpt_close(c);
  ls_batch_free(&batch);
  ls_spec_free(&spec);
  ls_vm_close(L);
  ls_kafka_close(k);
  ls_devbroker_stop(b);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  CHECK_DONE();
}
