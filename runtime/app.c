/* app.c - the loop of `luastream run` (see app.h and docs/internals.md).
 *
 * Read top to bottom, one turn of the loop is:
 *   consume a batch from Kafka (joined inputs' records in timestamp order,
 *   align.c) → the engine runs it (engine.c: decode, the
 *   pipeline call, on_error, encode; outputs come back to kafka_produce) →
 *   record the offsets of the records done → sources that are due →
 *   checkpoint when due → a live reload when asked.
 * A checkpoint flushes the producer and only then commits the offsets, so a
 * committed offset never runs ahead of an unacknowledged output. Start-up
 * (connect_kafka), the checkpoint order and live reload with its roll-back
 * are further down, in that order. */
#include "app.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "align.h"
#include "devbroker.h"
#include "driver.h"
#include "engine.h"
#include "errlog.h"
#include "globals.h"
#include "http.h"
#include "kafka.h"
#include "log.h"
#include "lua_vm.h"
#include "mem.h"
#include "metrics.h"
#include "batch.h"
#include "checkpoint.h"
#include "offsets.h"
#include "spec.h"
#include "statebridge.h"
#include "statedir.h"
#include "status.h"
#include "reload.h"
#include "sdnotify.h"
#include "watch.h"
#include "watchdog.h"

enum { DONE_OK, DONE_STOP };


typedef struct ls_app {
  const ls_run_opts *opts;
  ls_pipeline pl;    /* the running pipeline: Lua state, spec, batch */
  ls_engine eng;     /* the batch path over pl.batch (engine.c) */
  ls_devbroker *devbroker;
  ls_kafka *kafka;
  ls_ckpt *ckpt;     /* NULL without state stores */
  ls_statedir *statedir; /* state_dir/<name>, locked; NULL when neither state nor exactly-once */
  rd_kafka_topic_t **out_rkt;
  rd_kafka_topic_t *dlq_rkt;
  ls_offsets offsets;
  char **input_names;
  /* the current batch */
  rd_kafka_message_t **msgs;
  ls_inmsg *in;
  int nmsgs;
  rd_kafka_topic_t *last_rkt; /* cache for input_index() */
  int last_index;
  /* bookkeeping */
  long in_total, since_commit;
  double last_commit_ms, start_ms, last_nudge_ms, *source_next;
  double idle_next; /* when windows closing on idleness are next checked */
  double heap_window_ms; /* the input rate's window for the heap policy (pace_heap) */
  long heap_count, heap_calm;
  double purge_next; /* when group_by topics' consumed records are next deleted */
  ls_align *align;   /* joined inputs taken in timestamp order (align.c), or NULL */
  int align_full;    /* the last batch was filled from it: more may be ready */
  ls_globals *globals; /* the consumer of global tables' topics (globals.c), or NULL */
  long globals_read;   /* records of theirs read since the last catch-up */
  ls_status *status;
  int exactly_once;
  int stopping;      /* the final checkpoint: no new transaction after it */
  int last_ckpt_ok;  /* the last checkpoint committed everything it took */
  int txn_open;
  int tmp_state;     /* state_dir is a temporary directory (dev broker) */
  int replaying;     /* a table is being read from its topic (restore_table) */
  int batch_cap;     /* capacity of msgs and in */
  ls_reloader reload; /* live reload (reload.c) */
  ls_metrics *metrics; /* what --http serves (metrics.c) */
  ls_http *http;     /* --http, or NULL */
  long *out_counts;  /* per output topic (and the dead-letter topic last), since published */
  int nout_counts;
  long reloads_seen[3]; /* ok, failed, rolled back: as last published */
  double last_state_keys_ms;
  ls_sdnotify *sd;   /* NOTIFY_SOCKET: ready, watchdog pings, stopping (sdnotify.c) */
  ls_watchdog *watchdog; /* batch_time_limit (watchdog.c) */
} ls_app;

static volatile sig_atomic_t stop_signal, reload_signal;
static volatile sig_atomic_t stop_signal_s; /* CLOCK_MONOTONIC second of the first one */

/* How long repeats of a stop signal are ignored: `timeout` and process-group
 * kills deliver SIGTERM/SIGINT twice at once, and the first one must still
 * get its flush and commit. A person pressing Ctrl-C again later means it. */
#define STOP_REPEAT_GRACE_S 2

static void on_signal(int sig) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
  if (!stop_signal) {
    stop_signal = sig;
    stop_signal_s = (sig_atomic_t)ts.tv_sec;
    return;
  }
  if (ts.tv_sec - stop_signal_s >= STOP_REPEAT_GRACE_S) _exit(128 + sig); /* leave now */
}

/* Says once, on a terminal, how the stop goes on and how to cut it short. */
static void announce_stop(void) {
  static int said;
  if (said || !stop_signal) return;
  said = 1;
  if (isatty(STDERR_FILENO))
    ls_info("stopping: finishing the batch, flushing and committing (press Ctrl-C again to quit now)");
}

static void on_hup(int sig) {
  (void)sig;
  reload_signal = 1;
}

/* Records the first fatal error (see ls_engine_fail). */
#define set_fatal(a, ...) ls_engine_fail(&(a)->eng, __VA_ARGS__)

/* The same, for a failure after which nothing may be committed: the outputs
 * since the last checkpoint are not known to be safe. */
#define fail_uncommitted(a, ...)                                        \
  do {                                                                  \
    if (!(a)->eng.exit_code) (a)->eng.keep_uncommitted = 1;             \
    ls_engine_fail(&(a)->eng, __VA_ARGS__);                             \
  } while (0)

/* ---- input ---------------------------------------------------------------- */

static int input_index(ls_app *a, rd_kafka_topic_t *rkt) {
  if (rkt != a->last_rkt) {
    a->last_index = ls_offsets_topic_index(&a->offsets, rd_kafka_topic_name(rkt));
    a->last_rkt = rkt;
  }
  return a->last_index;
}

/* rt.hdrs[i]: { {name, value}, ... } or nil. */
static void push_headers(lua_State *L, const void *source) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(source, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) h = NULL;
  ls_engine_push_headers(L, h);
}

/* A copy of a consumed message's headers, for its dead letter. */
static rd_kafka_headers_t *copy_headers(const void *source) {
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(source, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h) return NULL;
  return rd_kafka_headers_copy(h);
}

/* Consumed messages as the batch sees them. */
static void describe(ls_app *a, rd_kafka_message_t **msgs, ls_inmsg *ins, int n) {
  for (int i = 0; i < n; i++) {
    const rd_kafka_message_t *m = msgs[i];
    ls_inmsg *in = &ins[i];
    in->payload = m->payload;
    in->len = m->len;
    in->key = m->key;
    in->key_len = m->key_len;
    in->offset = m->offset;
    in->timestamp = rd_kafka_message_timestamp(m, NULL);
    in->partition = m->partition;
    in->topic = m->err ? -1 : input_index(a, m->rkt);
    in->source = m;
    if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && ls_errlog_admit(a->eng.errlog, rd_kafka_err2str(m->err)))
      ls_warn("consumer: %s", rd_kafka_message_errstr(m));
  }
}

static void describe_inputs(ls_app *a) { describe(a, a->msgs, a->in, a->nmsgs); }

/* ---- output --------------------------------------------------------------- */

/* The engine's produce: outputs and dead letters to Kafka, keyed partitioning. */
static int kafka_produce(void *ud, const ls_out *o, char *err, size_t errlen) {
  ls_app *a = ud;
  rd_kafka_topic_t *rkt = o->topic == LS_OUT_DEAD_LETTER ? a->dlq_rkt : a->out_rkt[o->topic];
  int slot = o->topic == LS_OUT_DEAD_LETTER ? a->pl.spec.noutputs : o->topic;
  if (slot < a->nout_counts) a->out_counts[slot]++;
  ls_record r = {rkt, RD_KAFKA_PARTITION_UA, o->key, o->key_len, o->value, o->value_len,
                 o->timestamp, o->hdrs, NULL};
  return ls_kafka_produce(a->kafka, &r, err, errlen);
}

static int try_roll_back(void *ud, const char *err);

/* ---- offsets and checkpoints ---------------------------------------------- */

static void record_offsets(ls_app *a, int done) {
  for (int i = 0; i < done; i++) {
    const rd_kafka_message_t *m = a->msgs[i];
    if (m->err) continue;
    int ti = input_index(a, m->rkt);
    if (ti >= 0) ls_offsets_set(&a->offsets, ti, m->partition, m->offset + 1);
    a->since_commit++;
  }
}

static ls_txn_result begin_txn(ls_app *a) {
  char err[1024];
  ls_txn_result b = ls_kafka_txn_begin(a->kafka, err, sizeof err);
  if (b != LS_TXN_OK) set_fatal(a, 1, "exactly-once: %s", err);
  a->txn_open = b == LS_TXN_OK;
  return b;
}

/* Exactly-once: outputs, changelog records and offsets commit as one Kafka
 * transaction; LMDB after it. An abortable error rewinds to the committed
 * offsets and drops the uncommitted state; a fatal one stops the app. */
static int checkpoint_txn(ls_app *a) {
  char err[1024];
  if (!a->txn_open) return 0;
  a->txn_open = 0;
  if (a->ckpt && ls_ckpt_produce(a->ckpt, &a->offsets, err, sizeof err)) {
    fail_uncommitted(a, 1, "state: %s; stopping without committing", err);
    return -1;
  }
  rd_kafka_topic_partition_list_t *l = ls_offsets_take_dirty(&a->offsets);
  ls_txn_result r = ls_kafka_txn_commit(a->kafka, l, err, sizeof err);
  if (l) rd_kafka_topic_partition_list_destroy(l);
  if (r == LS_TXN_OK && a->ckpt && ls_ckpt_store(a->ckpt, &a->offsets, err, sizeof err)) {
    set_fatal(a, 1, "%s; stopping (the changelog holds the changes; a restart restores them)", err);
    return -1;
  }
  if (r == LS_TXN_ABORTABLE) {
    char why[1024];
    ls_warn("%s: aborting the transaction and going back to the committed offsets", err);
    if (ls_kafka_txn_abort(a->kafka, why, sizeof why) != LS_TXN_OK ||
        ls_kafka_rewind(a->kafka, why, sizeof why)) {
      set_fatal(a, 1, "exactly-once: %s", why);
      return -1;
    }
    ls_offsets_clear(&a->offsets);
    ls_align_clear(a->align); /* the consumer reads them again */
    if (a->ckpt) ls_ckpt_discard(a->ckpt);
  } else if (r == LS_TXN_FATAL) {
    set_fatal(a, 1, "exactly-once: %s", err);
    return -1;
  }
  if (a->stopping) return r == LS_TXN_OK ? 0 : -1;
  ls_txn_result b = begin_txn(a);
  return r == LS_TXN_OK && b == LS_TXN_OK ? 0 : -1;
}

/* The checkpoint order (docs/internals.md): state changes to the changelogs, flush, commit the
 * offsets, then the state to LMDB. Returns 0, or -1 when nothing could be
 * committed. */
static int checkpoint_timed(ls_app *a);

/* How often the records of group_by topics before the committed offsets are
 * deleted (on a cluster that takes admin requests). */
#define PURGE_EVERY_MS 30000.0

/* group_by topics are read by this app alone: once their offsets are
 * committed, the records before them are deleted (DeleteRecords), as Kafka
 * Streams does, so the topics do not grow without bound. Not on the dev
 * broker, which takes no admin requests. */
static void purge_repartitions(ls_app *a) {
  double now = ls_mono_ms();
  if (a->pl.spec.nreparts == 0 || now < a->purge_next || !ls_kafka_has_admin(a->kafka)) return;
  a->purge_next = now + PURGE_EVERY_MS;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  if (!l) ls_out_of_memory(sizeof *l);
  for (int i = 0; i < a->pl.spec.nreparts; i++) {
    int ti = a->pl.spec.reparts[i].topic;
    for (int32_t p = 0; p < a->offsets.t[ti].cap; p++) {
      int64_t next = ls_offsets_get(&a->offsets, ti, p);
      if (next > 0) rd_kafka_topic_partition_list_add(l, a->pl.spec.inputs[ti].name, p)->offset = next;
    }
  }
  char err[512];
  if (l->cnt > 0 && ls_kafka_purge_before(a->kafka, l, err, sizeof err))
    ls_warn("group_by topics: deleting the consumed records failed (tried again in %.0f s): %s",
            PURGE_EVERY_MS / 1000, err);
  rd_kafka_topic_partition_list_destroy(l);
}

/* A checkpoint, timed for luastream_checkpoint_seconds. */
static int checkpoint(ls_app *a) {
  double t0 = ls_mono_ms();
  int rc = checkpoint_timed(a);
  if (rc == 0) purge_repartitions(a);
  a->last_ckpt_ok = rc == 0 && ls_ckpt_pending(a->ckpt) == 0;
  ls_metrics_observe(a->metrics, LS_HIST_CHECKPOINT, (ls_mono_ms() - t0) / 1000);
  return rc;
}

static int checkpoint_timed(ls_app *a) {
  char err[1024];
  int fatal = 0;
  a->last_commit_ms = ls_mono_ms();
  a->since_commit = 0;
  if (a->exactly_once) return checkpoint_txn(a);
  if (a->ckpt && ls_ckpt_produce(a->ckpt, &a->offsets, err, sizeof err)) {
    fail_uncommitted(a, 1, "state: %s; stopping without committing", err);
    return -1;
  }
  if (ls_kafka_flush(a->kafka, 30000, &fatal, err, sizeof err)) {
    if (fatal) fail_uncommitted(a, 1, "%s; stopping without committing", err);
    else if (ls_kafka_outage_ms(a->kafka, ls_mono_ms()) > 0) ls_debug("checkpoint postponed: %s", err);
    else ls_warn("checkpoint postponed: %s", err);
    return -1;
  }
  rd_kafka_topic_partition_list_t *l = ls_offsets_take_dirty(&a->offsets);
  int rc = l && !a->opts->from_beginning ? ls_kafka_commit(a->kafka, l, err, sizeof err) : 0;
  if (rc) {
    if (ls_kafka_outage_ms(a->kafka, ls_mono_ms()) > 0) ls_debug("%s (will retry at the next checkpoint)", err);
    else ls_warn("%s (will retry at the next checkpoint)", err);
    ls_offsets_restore(&a->offsets, l);
  } else if (l && ls_log_get_level() <= LS_LOG_DEBUG) {
    char desc[1024];
    ls_kafka_describe(l, desc, sizeof desc);
    ls_debug("committed %s", desc);
  }
  if (l) rd_kafka_topic_partition_list_destroy(l);
  if (rc == 0 && a->ckpt && ls_ckpt_store(a->ckpt, &a->offsets, err, sizeof err)) {
    set_fatal(a, 1, "%s; stopping (the changelog holds the changes; a restart restores them)", err);
    return -1;
  }
  return rc;
}

static void on_revoke(void *ud, const rd_kafka_topic_partition_list_t *parts, int lost) {
  ls_app *a = ud;
  ls_metrics_set_ready(a->metrics, 0); /* until the next assignment is restored */
  /* Clean: LMDB holds what the committed offsets cover. While stopping, the
     final checkpoint has run (or was skipped on purpose): its outcome says. */
  int clean = a->stopping ? !lost && a->last_ckpt_ok
                          : !lost && !a->eng.exit_code && checkpoint(a) == 0;
  for (int i = 0; a->ckpt && i < parts->cnt; i++) {
    int ti = ls_offsets_topic_index(&a->offsets, parts->elems[i].topic);
    if (ti >= 0) ls_ckpt_revoke(a->ckpt, ti, parts->elems[i].partition, clean);
  }
  ls_offsets_forget(&a->offsets, parts);
  ls_align_revoke(a->align, parts);
}

static void restore_assigned(ls_app *a, const rd_kafka_topic_partition_list_t *parts);

/* Partitions handed over: restored, then ready (/ready). */
static void on_assign(void *ud, const rd_kafka_topic_partition_list_t *parts) {
  ls_app *a = ud;
  ls_metrics_set_restoring(a->metrics, 1); /* /health: a long restore is not a stuck loop */
  restore_assigned(a, parts);
  ls_align_assign(a->align, parts);
  ls_metrics_set_restoring(a->metrics, 0);
  ls_metrics_heartbeat(a->metrics, ls_mono_ms());
  if (!a->eng.exit_code) ls_metrics_set_ready(a->metrics, 1);
}

/* ---- tables read from their own topic ---------------------------------------- */

/* Records of a table's topic read again, run through the pipeline in batches
 * (a table's topic only sets the table). */
typedef struct table_replay {
  ls_app *a;
  int topic;
  rd_kafka_message_t **msgs;
  ls_inmsg *in;
  int n;
  long total;
} table_replay;

static void run_replayed(table_replay *r) {
  ls_app *a = r->a;
  describe(a, r->msgs, r->in, r->n);
  for (int i = 0; i < r->n; i++) r->in[i].topic = r->msgs[i]->err ? -1 : r->topic;
  a->last_rkt = NULL; /* the replay consumer's topic handle is not the group's */
  a->replaying = 1;
  ls_engine_process(&a->eng, r->in, r->n);
  a->replaying = 0;
  for (int i = 0; i < r->n; i++) rd_kafka_message_destroy(r->msgs[i]);
  r->total += r->n;
  r->n = 0;
}

static int table_visit(void *ud, rd_kafka_message_t *m) {
  table_replay *r = ud;
  if (r->a->eng.exit_code) return -1;
  r->msgs[r->n++] = m;
  /* the running pipeline's batch holds pl.batch.cap records: a reload may
     have made that smaller than batch_cap, the size of msgs */
  if (r->n == r->a->pl.batch.cap) run_replayed(r);
  return LS_REPLAY_KEPT;
}

/* A table's store s has no changelog: its partitions ps[0..n) are brought up
 * to the group's committed offsets from the table's topic itself. */
static void restore_table(ls_app *a, int s, const int32_t *ps, int n) {
  const ls_store_spec *ss = &a->pl.spec.stores[s];
  const char *topic = a->pl.spec.inputs[ss->topic].name;
  char err[1024];
  int64_t *from = ls_xcalloc((size_t)n, sizeof *from), *to = ls_xcalloc((size_t)n, sizeof *to),
          *ends = ls_xcalloc((size_t)n, sizeof *ends);
  int32_t *ps_read = ls_xcalloc((size_t)n, sizeof *ps_read);
  table_replay r = {a, ss->topic, ls_xcalloc((size_t)a->batch_cap, sizeof *r.msgs),
                    ls_xcalloc((size_t)a->batch_cap, sizeof *r.in), 0, 0};
  double t0 = ls_mono_ms();
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++)
    rc = ls_ckpt_source_range(a->ckpt, s, ps[i], &from[i], &to[i], err, sizeof err);
  if (rc == 0) rc = ls_kafka_replay(a->kafka, topic, ps, from, to, n, ends, table_visit, &r, err, sizeof err);
  if (r.n) run_replayed(&r);
  int nread = 0; /* the partitions read, compacted to the front with their ends */
  for (int i = 0; i < n; i++)
    if (to[i] > from[i]) ps_read[nread] = ps[i], to[nread++] = to[i];
  /* straight to LMDB: a later rewind or discard must not lose what was read */
  if (rc == 0 && !a->eng.exit_code && nread)
    rc = ls_ckpt_store_table(a->ckpt, s, ps_read, to, nread, err, sizeof err);
  if (rc && !a->eng.exit_code) set_fatal(a, 1, "state: reading table %s from its topic: %s", topic, err);
  if (r.total)
    ls_info("state %s: read %ld records of %d partition%s from %s in %.0f ms", ss->name, r.total, nread,
            nread == 1 ? "" : "s", topic, ls_mono_ms() - t0);
  free(ps_read);
  free(r.msgs);
  free(r.in);
  free(from);
  free(to);
  free(ends);
}

/* Brings the state of newly assigned partitions up to date from the changelogs. */
static void restore_assigned(ls_app *a, const rd_kafka_topic_partition_list_t *parts) {
  if (!a->ckpt || parts->cnt == 0) return;
  char err[1024];
  int32_t *ps = ls_xcalloc((size_t)parts->cnt, sizeof *ps);
  for (int ti = 0; ti < a->pl.spec.ninputs && !a->eng.exit_code; ti++) {
    int n = 0;
    for (int i = 0; i < parts->cnt; i++)
      if (strcmp(parts->elems[i].topic, a->pl.spec.inputs[ti].name) == 0) ps[n++] = parts->elems[i].partition;
    if (n && ls_ckpt_restore(a->ckpt, ti, ps, n, err, sizeof err))
      set_fatal(a, 1, "state: restoring %s: %s", a->pl.spec.inputs[ti].name, err);
  }
  /* Tables last: a restore above drops the cached state of its partitions,
     and a table read from its topic is cached until the next checkpoint. */
  for (int s = 0; s < a->pl.spec.nstores && !a->eng.exit_code; s++) {
    const ls_store_spec *ss = &a->pl.spec.stores[s];
    int n = 0;
    for (int i = 0; ss->source && i < parts->cnt; i++)
      if (strcmp(parts->elems[i].topic, a->pl.spec.inputs[ss->topic].name) == 0)
        ps[n++] = parts->elems[i].partition;
    if (n) restore_table(a, s, ps, n);
  }
  free(ps);
}

/* ---- metrics (published once per batch) ------------------------------------ */

/* Records out since the last call, per topic, to the metrics. */
static void publish_outputs(ls_app *a) {
  for (int i = 0; i < a->nout_counts; i++) {
    if (!a->out_counts[i]) continue;
    const char *t = i < a->pl.spec.noutputs ? a->pl.spec.outputs[i].name : a->pl.spec.dead_letter;
    if (t) ls_metrics_add_out(a->metrics, t, a->out_counts[i]);
    a->out_counts[i] = 0;
  }
}

/* Messages in, per run of one topic and partition (batches come grouped so). */
static void publish_inputs(ls_app *a) {
  for (int i = 0, j; i < a->nmsgs; i = j) {
    const rd_kafka_message_t *m = a->msgs[i];
    for (j = i + 1; j < a->nmsgs && a->msgs[j]->rkt == m->rkt && a->msgs[j]->partition == m->partition; j++) {}
    long n = 0;
    for (int k = i; k < j; k++) n += !a->msgs[k]->err;
    if (n) ls_metrics_add_in(a->metrics, rd_kafka_topic_name(m->rkt), m->partition, n);
  }
}

static void publish_reloads(ls_app *a) {
  static const char *const results[3] = {"ok", "failed", "rolled_back"};
  long now[3] = {a->reload.reloads, a->reload.failed, a->reload.rolled_back};
  for (int i = 0; i < 3; i++)
    for (; a->reloads_seen[i] < now[i]; a->reloads_seen[i]++) ls_metrics_add_reload(a->metrics, results[i]);
}

/* The rows windows dropped as late, per store: luastream.window's
 * late_counts() (when the script has windows), summed per store. */
static void publish_late_rows(ls_app *a) {
  lua_State *L = a->pl.L;
  int top = lua_gettop(L);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "loaded");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "luastream.window");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "late_counts");
  if (lua_isfunction(L, -1) && lua_pcall(L, 0, 1, 0) == 0 && lua_istable(L, -1)) {
    int list = lua_gettop(L), n = (int)lua_objlen(L, list);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, list, i);
      lua_getfield(L, -1, "store");
      const char *store = lua_tostring(L, -1);
      double late = 0;
      int first = 1;
      for (int j = 1; store && j <= n; j++) { /* the step's store: summed over its window steps */
        lua_rawgeti(L, list, j);
        lua_getfield(L, -1, "store");
        if (lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), store) == 0) {
          first &= j >= i;
          lua_getfield(L, -2, "late");
          late += lua_tonumber(L, -1);
          lua_pop(L, 1);
        }
        lua_pop(L, 2);
      }
      if (store && first) ls_metrics_set_late_rows(a->metrics, store, late);
      lua_pop(L, 2);
    }
  }
  lua_settop(L, top);
}

/* Every 5 s: the keys of each store (a scan of LMDB's page counts, not of the keys). */
static void publish_state_keys(ls_app *a, double now) {
  if (!a->ckpt || now - a->last_state_keys_ms < 5000) return;
  a->last_state_keys_ms = now;
  for (int s = 0; s < a->pl.spec.nstores; s++)
    ls_metrics_set_state_keys(a->metrics, a->pl.spec.stores[s].name, ls_ckpt_store_entries(a->ckpt, s));
  publish_late_rows(a);
}

/* The engine's hook: each record that met on_error, by stage and action. */
static void count_error(void *ud, const ls_error_event *ev) {
  ls_metrics_add_error(((ls_app *)ud)->metrics, ev->stage, ev->policy);
}

/* Output counters follow the output topics (they change on reload). */
static void size_out_counts(ls_app *a) {
  free(a->out_counts);
  a->nout_counts = a->pl.spec.noutputs + 1;
  a->out_counts = ls_xcalloc((size_t)a->nout_counts, sizeof *a->out_counts);
}

/* ---- one batch ------------------------------------------------------------ */

static void process_batch(ls_app *a) {
  double t0 = ls_mono_ms();
  describe_inputs(a);
  int done = ls_engine_process(&a->eng, a->in, a->nmsgs);
  if (done == a->nmsgs && a->eng.exit_code == 0) ls_reload_passed(&a->reload);
  record_offsets(a, done);
  publish_inputs(a);
  publish_outputs(a);
  ls_metrics_observe(a->metrics, LS_HIST_BATCH, (ls_mono_ms() - t0) / 1000);
  for (int i = 0; i < a->nmsgs; i++)
    if (!a->msgs[i]->err) a->in_total++;
  ls_kafka_release(a->kafka, a->msgs, a->nmsgs);
}

/* ---- global tables --------------------------------------------------------- */

/* Records of global tables' topics through the pipeline (which puts them in
 * their tables); no offset of theirs is recorded: every instance reads them
 * all, from the beginning. */
static void process_global_batch(ls_app *a, ssize_t n) {
  a->nmsgs = (int)n;
  describe_inputs(a);
  ls_engine_process(&a->eng, a->in, a->nmsgs);
  publish_outputs(a);
  for (int i = 0; i < a->nmsgs; i++) {
    if (!a->msgs[i]->err) a->in_total++;
    rd_kafka_message_destroy(a->msgs[i]);
  }
  a->nmsgs = 0;
}

/* Reads the global tables up to the ends their topics had at the rewind,
 * before anything else is processed (at start, after a reload). */
static void catch_up_globals(ls_app *a) {
  if (!a->globals) return;
  double t0 = ls_mono_ms();
  long n_total = 0;
  while (!ls_globals_caught_up(a->globals) && !stop_signal && !a->eng.exit_code) {
    ssize_t n = ls_globals_poll(a->globals, a->msgs, (size_t)a->pl.spec.batch_size, 100);
    if (n > 0) {
      n_total += n;
      process_global_batch(a, n);
    }
  }
  ls_info("global tables: caught up, %ld records in %.1f s", n_total, (ls_mono_ms() - t0) / 1000);
  a->globals_read = 0;
}

static void poll_globals(ls_app *a) {
  if (!a->globals || a->eng.exit_code) return;
  ssize_t n = ls_globals_poll(a->globals, a->msgs, (size_t)a->pl.spec.batch_size, 0);
  if (n <= 0) return;
  process_global_batch(a, n);
  a->globals_read += n;
  ls_debug("global tables: %ld records read since the catch-up", a->globals_read);
}

/* ---- input order ------------------------------------------------------------ */

static int align_topic_of(void *ud, const rd_kafka_message_t *m) { return input_index(ud, m->rkt); }

static void align_pause(void *ud, const char *topic, int32_t partition, int pause) {
  ls_kafka_pause(((ls_app *)ud)->kafka, topic, partition, pause);
}

/* Records held per joined partition before it is paused: two batches. */
static int align_cap(const ls_spec *s) { return s->batch_size > INT_MAX / 2 ? INT_MAX : 2 * s->batch_size; }

/* The aligner of joined inputs (align.c), when the app joins co-partitioned topics. */
static void open_align(ls_app *a) {
  ls_align_opts o = {.wait_ms = a->pl.spec.join_wait_ms, .lag_wait_ms = LS_ALIGN_LAG_WAIT_MS,
                     .cap = align_cap(&a->pl.spec), .pause = align_pause, .ud = a};
  a->align = ls_align_new(&a->pl.spec, &o);
}

/* A batch: what the consumer has (up to batch_size), the joined inputs'
 * records held back until they may go in timestamp order. */
static ssize_t consume(ls_app *a, int timeout) {
  int max = a->pl.spec.batch_size;
  ssize_t n = ls_kafka_consume(a->kafka, a->msgs, (size_t)max, timeout);
  if (!a->align) return n;
  int kept = n > 0 ? ls_align_push(a->align, a->msgs, (int)n, align_topic_of, a) : 0;
  int got = ls_align_take(a->align, a->msgs + kept, max - kept, ls_mono_ms());
  a->align_full = kept + got == max && ls_align_held(a->align) > 0;
  return kept + got;
}

/* ---- sources -------------------------------------------------------------- */

static void run_sources(ls_app *a, double now) {
  for (int k = 0; k < a->pl.spec.nsources && !a->eng.exit_code; k++) {
    if (now < a->source_next[k]) continue;
    a->source_next[k] = now + a->pl.spec.source_every_ms[k];
    ls_engine_run_source(&a->eng, k, ls_vm_now_ms(a->pl.L));
  }
  publish_outputs(a);
}

/* Windows closed on idleness (close_on_idle), every spec.idle_check_ms. */
static void run_idle(ls_app *a, double now) {
  if (a->pl.spec.idle_check_ms <= 0 || now < a->idle_next || a->eng.exit_code) return;
  a->idle_next = now + a->pl.spec.idle_check_ms;
  ls_engine_run_idle(&a->eng, ls_vm_now_ms(a->pl.L));
  publish_outputs(a);
}

static int next_timeout_ms(ls_app *a, double now) {
  double t = a->pl.spec.batch_ms, wait = ls_align_deadline(a->align);
  if (a->align_full) return 0;
  if (wait >= 0 && wait - now < t) t = wait - now + 1;
  if (a->pl.spec.idle_check_ms > 0 && a->idle_next - now < t) t = a->idle_next - now;
  for (int k = 0; k < a->pl.spec.nsources; k++)
    if (a->source_next[k] - now < t) t = a->source_next[k] - now;
  return t < 0 ? 0 : (int)t;
}

/* ---- set-up --------------------------------------------------------------- */

static int push_cli(lua_State *L, void *ud) {
  const ls_run_opts *o = ud;
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, 1); /* this process connects: read kafka values from env/files */
  lua_setfield(L, -2, "secrets");
  if (o->broker) lua_pushstring(L, o->broker), lua_setfield(L, -2, "broker");
  if (o->name) lua_pushstring(L, o->name), lua_setfield(L, -2, "name");
  if (o->state_dir) lua_pushstring(L, o->state_dir), lua_setfield(L, -2, "state_dir");
  lua_createtable(L, 0, o->nsets);
  for (int i = 0; i < o->nsets; i++) {
    const char *eq = strchr(o->sets[i], '=');
    lua_pushlstring(L, o->sets[i], (size_t)(eq - o->sets[i]));
    lua_pushstring(L, eq + 1);
    lua_settable(L, -3);
  }
  lua_setfield(L, -2, "set");
  return 1;
}

/* Runs the script and reads the spec. Returns an exit code, or 0. */
static int load_script(ls_app *a) {
  char err[4096];
  if (access(a->opts->script, R_OK) != 0) {
    fprintf(stderr, "luastream: cannot open script %s: %s\n", a->opts->script, strerror(errno));
    return 2;
  }
  ls_vm_add_script_dir(a->pl.L, a->opts->script);
  int rc = ls_batch_load(&a->pl.batch, a->pl.L, &a->pl.spec, a->opts->script, push_cli, (void *)a->opts,
                         err, sizeof err);
  if (rc) fprintf(stderr, "luastream: %s\n", err);
  a->pl.batch.push_headers = push_headers;
  return rc;
}

/* --watch after the watchdog stopped a run: does the script load now? */
static int try_load(void *ud, char *err, size_t errlen) {
  const ls_run_opts *o = ((ls_app *)ud)->opts;
  ls_pipeline p = {0};
  if (!(p.L = ls_vm_new())) return snprintf(err, errlen, "cannot create a Lua state"), -1;
  ls_vm_add_script_dir(p.L, o->script);
  int rc = ls_batch_load(&p.batch, p.L, &p.spec, o->script, push_cli, (void *)o, err, errlen);
  ls_batch_free(&p.batch);
  ls_spec_free(&p.spec);
  ls_vm_close(p.L);
  return rc;
}
/* Whether topic `name` is a group_by's own (created by create_repartitions). */
static int is_repartition(const ls_spec *s, const char *name) {
  for (int i = 0; i < s->nreparts; i++)
    if (strcmp(s->inputs[s->reparts[i].topic].name, name) == 0) return 1;
  return 0;
}

static void create_dev_topics(ls_app *a) {
  char err[512];
  for (int i = 0; i < a->pl.spec.ninputs; i++)
    if (!is_repartition(&a->pl.spec, a->pl.spec.inputs[i].name))
      ls_devbroker_create_topic(a->devbroker, a->pl.spec.inputs[i].name, 4, err, sizeof err);
  for (int i = 0; i < a->pl.spec.noutputs; i++)
    if (!is_repartition(&a->pl.spec, a->pl.spec.outputs[i].name))
      ls_devbroker_create_topic(a->devbroker, a->pl.spec.outputs[i].name, 4, err, sizeof err);
  if (a->pl.spec.dead_letter) ls_devbroker_create_topic(a->devbroker, a->pl.spec.dead_letter, 4, err, sizeof err);
  for (int i = 0; i < a->pl.spec.nstores; i++)
    ls_devbroker_create_topic(a->devbroker, a->pl.spec.stores[i].changelog, 4, err, sizeof err);
}

/* The dev broker's data lives in memory, so state kept from an earlier run
 * would describe data that is gone: with it (and with --from-beginning, which
 * starts from empty state), state goes to a fresh temporary directory,
 * removed at exit. */
static void use_temporary_state(ls_app *a) {
  if (a->pl.spec.nstores == 0) return;
  char tmpl[] = "/tmp/luastream-dev-XXXXXX";
  if (!mkdtemp(tmpl)) {
    ls_warn("cannot make a temporary state directory: %s; using %s", strerror(errno), a->pl.spec.state_dir);
    return;
  }
  free(a->pl.spec.state_dir);
  a->pl.spec.state_dir = ls_xstrdup(tmpl);
  a->tmp_state = 1;
  ls_info("state goes to %s (temporary, removed at exit)", tmpl);
}

static void remove_temporary_state(ls_app *a) {
  if (a->tmp_state) ls_statedir_remove(a->pl.spec.state_dir, a->pl.spec.name);
}

/* Takes state_dir/<name> for this instance (it holds the state and the
 * instance id behind the transactional id). Returns an exit code, or 0. */
static int open_state_dir(ls_app *a) {
  if (a->pl.spec.nstores == 0 && (!a->exactly_once || a->devbroker)) return 0;
  char dir[4096], err[4352];
  snprintf(dir, sizeof dir, "%s/%s", a->pl.spec.state_dir, a->pl.spec.name);
  ls_statedir_rc rc;
  a->statedir = ls_statedir_open(dir, &rc, err, sizeof err);
  if (!a->statedir) {
    fprintf(stderr, "luastream: %s\n", err);
    return rc == LS_STATEDIR_LOCKED ? 2 : 1;
  }
  return 0;
}

/* A misspelled input topic is an error at start, not an app that reads
 * nothing; with wait_for_topics the app waits for it instead (signals stop
 * the wait). Returns an exit code, or 0 to go on. */
static int check_inputs(ls_app *a, const char *brokers) {
  char hint[256];
  int said = -1;
  for (int i; (i = ls_kafka_find_missing(a->kafka, a->input_names, a->pl.spec.ninputs, hint, sizeof hint)) >= 0;) {
    const char *name = a->input_names[i];
    if (!a->pl.spec.wait_for_topics) {
      fprintf(stderr, "luastream: input topic '%s' does not exist on %s%s%s%s; create it, or set "
              "wait_for_topics = true to wait until it exists\n", name, brokers,
              hint[0] ? " (did you mean '" : "", hint, hint[0] ? "'?)" : "");
      return 2;
    }
    if (said != i) ls_info("waiting for input topic '%s' to be created on %s%s%s%s", name, brokers,
                           hint[0] ? " (did you mean '" : "", hint, hint[0] ? "'?)" : "");
    said = i;
    for (int t = 0; t < 10 && !stop_signal; t++) usleep(100 * 1000);
    if (stop_signal) return 0; /* the loop stops at once */
  }
  return 0;
}

/* The topics of group_by: created with the partition count of the topic the
 * rows come from (or the group_by's `partitions`) before the inputs are
 * checked, since they are inputs too. An existing one is used as it is. */
static int create_repartitions(ls_app *a) {
  for (int i = 0; i < a->pl.spec.nreparts && !stop_signal; i++) {
    const ls_repart_spec *rp = &a->pl.spec.reparts[i];
    const char *name = a->pl.spec.inputs[rp->topic].name, *like = a->pl.spec.inputs[rp->like].name;
    int want = rp->partitions, have = ls_kafka_partition_count(a->kafka, name);
    if (want == 0) want = ls_kafka_partition_count(a->kafka, like);
    if (want < 1) continue; /* its input is missing: check_inputs says so */
    char err[1024];
    if (have > 0) {
      if (have != want)
        ls_info("group_by topic '%s' exists with %d partitions (%d asked): used as it is", name, have, want);
      continue;
    }
    int rc = a->devbroker ? ls_devbroker_create_topic(a->devbroker, name, want, err, sizeof err)
                          : ls_kafka_ensure_topic(a->kafka, name, want, NULL, err, sizeof err);
    if (rc) {
      fprintf(stderr, "luastream: cannot create the group_by topic '%s' with %d partitions: %s; create it "
              "(kafka-topics --create --topic %s --partitions %d)\n", name, want, err, name, want);
      return 2;
    }
    ls_info("created the group_by topic '%s' with %d partitions", name, want);
  }
  return 0;
}

/* A store serving several inputs needs them co-partitioned: partition p of
 * each holds the same keys. Returns an exit code, or 0. */
static int check_copartitioned(ls_app *a) {
  for (int s = 0; s < a->pl.spec.nstores; s++) {
    const ls_store_spec *ss = &a->pl.spec.stores[s];
    const char *first = a->pl.spec.inputs[ss->topics[0]].name;
    int n0 = ss->ntopics > 1 ? ls_kafka_partition_count(a->kafka, first) : 0;
    for (int t = 1; t < ss->ntopics; t++) {
      const char *other = a->pl.spec.inputs[ss->topics[t]].name;
      int n = ls_kafka_partition_count(a->kafka, other);
      if (n == n0) continue;
      /* a join's store ("__" names) cannot be split; a store of the app's can */
      int own = strncmp(ss->name, "__", 2) != 0;
      fprintf(stderr, "luastream: state store '%s' serves topics '%s' (%d partitions) and '%s' (%d "
              "partitions): they must have the same partition count (re-key the rows of '%s' into %d "
              "partitions with sdf:group_by(..., { partitions = %d })%s)\n",
              ss->name, first, n0, other, n, other, n0, n0, own ? ", or give each its own store" : "");
      return 2;
    }
  }
  return 0;
}

/* A store's changelog holds the state of input partition p in its partition p,
 * so one with fewer partitions than its input fails on the first change of a
 * higher partition: an error at start instead. More is fine (unused). A
 * changelog not there yet is created later (ls_changelog_open). Returns an
 * exit code, or 0. */
static int check_changelogs(ls_app *a) {
  for (int s = 0; s < a->pl.spec.nstores && !a->opts->from_beginning; s++) {
    const ls_store_spec *ss = &a->pl.spec.stores[s];
    if (ss->source) continue; /* its changelog is its input */
    const char *input = a->pl.spec.inputs[ss->topic].name;
    int have = ls_kafka_partition_count(a->kafka, ss->changelog);
    int want = have > 0 ? ls_kafka_partition_count(a->kafka, input) : -1;
    if (have < 1 || want < 1 || have >= want) continue;
    fprintf(stderr, "luastream: changelog topic '%s' has %d partitions but input topic '%s' has %d: "
            "a changelog needs at least as many partitions as its input (its partition p holds the "
            "state of input partition p); add partitions to it (kafka-topics --alter --topic %s "
            "--partitions %d), or delete it to have it created anew (the state it holds is lost; "
            "on the dev broker: restart it)\n",
            ss->changelog, have, input, want, ss->changelog, want);
    return 2;
  }
  return 0;
}

/* State built against another cluster describes data that is not there: it
 * is dropped, to be rebuilt from this cluster's changelogs. 0, or 1. */
static int check_cluster(ls_app *a) {
  if (!a->statedir || a->pl.spec.nstores == 0) return 0;
  char id[256], err[4352];
  const char *prev;
  if (ls_kafka_cluster_id(a->kafka, id, sizeof id, 10000, err, sizeof err)) {
    ls_warn("cannot check that the local state belongs to this cluster: %s", err);
    return 0;
  }
  int changed = ls_statedir_cluster_changed(a->statedir, id, &prev, err, sizeof err);
  if (changed == 1) {
    ls_warn("the local state in %s was built against Kafka cluster %s, but the broker is cluster "
            "%s: dropping it and rebuilding the state from the changelogs",
            ls_statedir_path(a->statedir), prev, id);
    if (ls_statedir_wipe_store(a->statedir, err, sizeof err)) changed = -1;
  }
  if (changed < 0 || ls_statedir_set_cluster(a->statedir, id, err, sizeof err)) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  return 0;
}

/* The broker the spec chose (--broker, the script's, LUASTREAM_BROKER), or
 * with none an in-process dev broker. Returns the bootstrap address or NULL. */
static const char *choose_broker(ls_app *a) {
  if (a->pl.spec.broker) return a->pl.spec.broker;
  char err[512];
  a->devbroker = ls_devbroker_start(1, err, sizeof err);
  if (!a->devbroker) {
    fprintf(stderr, "luastream: cannot start the dev broker: %s\n", err);
    return NULL;
  }
  create_dev_topics(a);
  use_temporary_state(a);
  ls_info("no broker configured: started an in-process dev broker on %s (in memory, gone on exit; "
          "use --broker or LUASTREAM_BROKER for a real Kafka)",
          ls_devbroker_bootstraps(a->devbroker));
  return ls_devbroker_bootstraps(a->devbroker);
}

static int connect_kafka(ls_app *a) {
  const char *brokers = choose_broker(a);
  if (!brokers) return 1;
  a->exactly_once = strcmp(a->pl.spec.guarantee, "exactly-once") == 0;
  char group[512];
  const char *reset = a->pl.spec.offset_reset;
  snprintf(group, sizeof group, "%s", a->pl.spec.name);
  if (a->opts->from_beginning) { /* a throwaway group: the app's own stays as it is */
    snprintf(group, sizeof group, "%s.from-beginning.%ld.%d", a->pl.spec.name, (long)ls_now_ms(), (int)getpid());
    reset = "earliest";
    ls_info("--from-beginning: reading every input from its first offset as group %s; nothing is "
            "committed and state starts empty in a temporary directory", group);
    if (!a->tmp_state) use_temporary_state(a);
  }
  int rc = open_state_dir(a);
  if (rc) return rc;
  char err[1024];
  const char *instance = a->statedir ? ls_statedir_instance_id(a->statedir, err, sizeof err) : NULL;
  if (a->statedir && !instance) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  open_align(a);
  ls_kafka_conf kc = {brokers, group, reset, a->pl.spec.kafka,
                      a->pl.spec.nkafka, a->devbroker != NULL, a->exactly_once, a->align != NULL, instance,
                      on_revoke, on_assign, a};
  a->kafka = ls_kafka_new(&kc, err, sizeof err);
  if (!a->kafka) {
    fprintf(stderr, "luastream: %s\n", err);
    return 2;
  }
  if (ls_kafka_check_reachable(a->kafka, 10000, err, sizeof err)) {
    fprintf(stderr, "luastream: cannot reach the Kafka broker at %s within 10 s: %s\n", brokers, err);
    return 1;
  }
  a->input_names = ls_xcalloc((size_t)a->pl.spec.ninputs + 1, sizeof *a->input_names);
  for (int i = 0; i < a->pl.spec.ninputs; i++) a->input_names[i] = a->pl.spec.inputs[i].name;
  if ((rc = create_repartitions(a)) || (rc = check_inputs(a, brokers)) || (rc = check_copartitioned(a)) ||
      (rc = check_changelogs(a)) ||
      (rc = check_cluster(a)))
    return rc;
  a->globals = ls_globals_open(&a->pl.spec, brokers, err, sizeof err);
  if (!a->globals && err[0]) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  if (a->globals && ls_globals_rewind(a->globals, err, sizeof err)) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  a->ckpt = ls_ckpt_open(a->pl.L, a->pl.batch.rt_ref, &a->pl.spec, a->kafka, a->opts->from_beginning, err,
                         sizeof err);
  if (!a->ckpt && err[0]) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  a->out_rkt = ls_xcalloc((size_t)a->pl.spec.noutputs + 1, sizeof *a->out_rkt);
  for (int i = 0; i < a->pl.spec.noutputs; i++)
    a->out_rkt[i] = ls_kafka_topic(a->kafka, a->pl.spec.outputs[i].name);
  if (a->pl.spec.dead_letter) a->dlq_rkt = ls_kafka_topic(a->kafka, a->pl.spec.dead_letter);
  if (ls_offsets_init(&a->offsets, a->input_names, a->pl.spec.ninputs))
    return fprintf(stderr, "luastream: out of memory\n"), 1;
  if (a->exactly_once && begin_txn(a) != LS_TXN_OK) {
    fprintf(stderr, "luastream: %s\n", a->eng.fatal);
    return 1;
  }
  /* the group reads every input but the global tables' topics (globals.c reads those) */
  char **group_topics = ls_xcalloc((size_t)a->pl.spec.ninputs + 1, sizeof *group_topics);
  int ngroup = 0;
  for (int i = 0; i < a->pl.spec.ninputs; i++)
    if (!a->pl.spec.inputs[i].global) group_topics[ngroup++] = a->input_names[i];
  int sub = ngroup ? ls_kafka_subscribe(a->kafka, group_topics, ngroup, err, sizeof err) : 0;
  free(group_topics);
  if (sub) {
    fprintf(stderr, "luastream: %s\n", err);
    return 1;
  }
  return 0;
}

static void alloc_batch(ls_app *a) {
  size_t n = (size_t)a->pl.spec.batch_size;
  a->batch_cap = a->pl.spec.batch_size;
  a->msgs = ls_xcalloc(n, sizeof *a->msgs);
  a->in = ls_xcalloc(n, sizeof *a->in);
  a->source_next = ls_xcalloc((size_t)a->pl.spec.nsources + 1, sizeof *a->source_next);
  if (ls_batch_alloc(&a->pl.batch, a->pl.spec.batch_size)) ls_out_of_memory(0);
}

/* ---- live reload (reload.c) ------------------------------------------------ */

static void wake_consumer(void *ud) { ls_kafka_wake(((ls_app *)ud)->kafka); }

static int reload_push_cli(lua_State *L, void *ud) { return push_cli(L, (void *)((ls_app *)ud)->opts); }

/* Before a swap: everything committed and nothing pending. */
static int reload_checkpoint(void *ud) {
  ls_app *a = ud;
  publish_outputs(a); /* counted under the outputs of the pipeline that made them */
  return checkpoint(a) != 0 || ls_ckpt_pending(a->ckpt) ? -1 : 0;
}

/* The producer holds a bounded number of topic handles. */
static const char *reload_refuse(void *ud, const ls_spec *next, char *buf, size_t len) {
  ls_app *a = ud;
  for (int i = 0; i <= next->noutputs; i++) {
    const char *t = i < next->noutputs ? next->outputs[i].name : next->dead_letter;
    if (t && !ls_kafka_topic(a->kafka, t))
      return snprintf(buf, len, "too many distinct output topics since the start (%s): a restart "
                      "is needed", t), buf;
  }
  return NULL;
}

static int has_output(const ls_spec *s, const char *name) {
  for (int i = 0; i < s->noutputs; i++)
    if (strcmp(s->outputs[i].name, name) == 0) return 1;
  return s->dead_letter && strcmp(s->dead_letter, name) == 0;
}

/* The embedded dev broker gets the output topics the new pipeline adds. */
static void create_new_dev_topics(ls_app *a, const ls_spec *before) {
  char err[512];
  const ls_spec *now = &a->pl.spec;
  for (int i = 0; a->devbroker && i < now->noutputs; i++)
    if (!has_output(before, now->outputs[i].name))
      ls_devbroker_create_topic(a->devbroker, now->outputs[i].name, 4, err, sizeof err);
  if (a->devbroker && now->dead_letter && !has_output(before, now->dead_letter))
    ls_devbroker_create_topic(a->devbroker, now->dead_letter, 4, err, sizeof err);
}

/* Output topic handles, sources and batch arrays for the spec now running. */
static void adopt_outputs(ls_app *a, double now) {
  free(a->out_rkt);
  a->out_rkt = ls_xcalloc((size_t)a->pl.spec.noutputs + 1, sizeof *a->out_rkt);
  for (int i = 0; i < a->pl.spec.noutputs; i++)
    a->out_rkt[i] = ls_kafka_topic(a->kafka, a->pl.spec.outputs[i].name);
  a->dlq_rkt = a->pl.spec.dead_letter ? ls_kafka_topic(a->kafka, a->pl.spec.dead_letter) : NULL;
  free(a->source_next);
  a->source_next = ls_xcalloc((size_t)a->pl.spec.nsources + 1, sizeof *a->source_next);
  for (int k = 0; k < a->pl.spec.nsources; k++) a->source_next[k] = now;
  if (a->pl.spec.batch_size > a->batch_cap) {
    free(a->msgs);
    free(a->in);
    a->batch_cap = a->pl.spec.batch_size;
    a->msgs = ls_xcalloc((size_t)a->batch_cap, sizeof *a->msgs);
    a->in = ls_xcalloc((size_t)a->batch_cap, sizeof *a->in);
  }
}

/* Another pipeline runs now: its state reads LMDB, its outputs get handles. */
static void reload_adopted(void *ud, const ls_spec *before, int rolled_back, double now) {
  ls_app *a = ud;
  char err[1024];
  create_new_dev_topics(a, before);
  if (ls_ckpt_rebind(a->ckpt, a->pl.L, a->pl.batch.rt_ref, err, sizeof err))
    set_fatal(a, 1, "state: after the reload: %s", err);
  if (rolled_back && a->ckpt) ls_ckpt_discard(a->ckpt); /* its cache predates the other's writes */
  ls_watchdog_set_limit(a->watchdog, a->pl.spec.batch_time_limit_s);
  ls_align_set_limits(a->align, a->pl.spec.join_wait_ms, align_cap(&a->pl.spec));
  ls_watchdog_set_heap_limit(a->pl.L, a->pl.spec.heap_limit_mb);
  adopt_outputs(a, now);
  size_out_counts(a);
  /* the new Lua state has empty global tables: read them again */
  if (a->globals && ls_globals_rewind(a->globals, err, sizeof err) == 0) catch_up_globals(a);
  else if (a->globals) set_fatal(a, 1, "global tables: after the reload: %s", err);
}

/* The engine's hook: a failed batch may roll a reload back. */
static int try_roll_back(void *ud, const char *err) {
  ls_app *a = ud;
  if (a->replaying) return 0; /* not a batch of the loop's */
  return ls_reload_roll_back(&a->reload, &a->eng, a->in, a->nmsgs, err);
}

/* GET /state/<store>?key=K, on the loop thread: the key's state as of the last
 * checkpoint, from the partitions this instance owns. When none holds it and
 * the partition a murmur2 partitioner gives the key is elsewhere, 421 names it. */
static int state_query(void *ud, const char *store, const char *key, size_t klen, ls_buf *body) {
  ls_app *a = ud;
  char err[512], line[1024];
  int s = 0, n = 0;
  while (a->ckpt && s < a->pl.spec.nstores && strcmp(a->pl.spec.stores[s].name, store) != 0) s++;
  if (!a->ckpt || s == a->pl.spec.nstores) {
    snprintf(line, sizeof line, "no state store '%s' in this app\n", store);
    return ls_buf_put(body, line, strlen(line)), 404;
  }
  for (int32_t p = 0; n == 0 && p < LS_MAX_PARTITIONS; p++) {
    if (!ls_ckpt_owns(a->ckpt, s, p)) continue;
    n = ls_bridge_key_json(a->pl.L, store, p, key, klen, body, err, sizeof err);
    if (n < 0) {
      snprintf(line, sizeof line, "state %s[%d]: %s\n", store, (int)p, err);
      return ls_buf_put(body, line, strlen(line)), 500;
    }
  }
  if (n > 0) return 200;
  const char *topic = a->pl.spec.inputs[a->pl.spec.stores[s].topic].name;
  int32_t parts = ls_kafka_partition_count(a->kafka, topic);
  int32_t p = parts > 0 ? ls_ffi_partition(key, klen, parts) : -1;
  int here = p < 0 || ls_ckpt_owns(a->ckpt, s, p);
  if (here)
    snprintf(line, sizeof line, "no state for key '%.*s' in store '%s'\n", (int)(klen > 200 ? 200 : klen),
             key, store);
  else
    snprintf(line, sizeof line, "no state for key '%.*s' here: with murmur2 partitioning it is in "
             "partition %d of %s, which is not on this instance\n", (int)(klen > 200 ? 200 : klen), key,
             (int)p, topic);
  ls_buf_put(body, line, strlen(line));
  return here ? 404 : 421;
}

/* luastream_consumer_lag, asked of librdkafka when /metrics is rendered (the
 * HTTP thread): nothing on the loop's path. */
static void lag_source(void *ud, ls_metrics_lag_emit emit, void *ctx) {
  ls_kafka_each_lag(((ls_app *)ud)->kafka, emit, ctx);
}

/* --http ADDR, else the app's http option, else LUASTREAM_HTTP: the metrics
 * and probes endpoint. The loop
 * counts as stuck after 60 s without a turn (a long state restore included).
 * Returns an exit code, or 0. */
static int start_http(ls_app *a) {
  const char *addr = a->opts->http;
  if (!addr || !*addr) addr = a->pl.spec.http;
  if (!addr || !*addr) addr = getenv("LUASTREAM_HTTP");
  if (!addr || !*addr) return 0;
  char err[512];
  ls_metrics_set_lag_source(a->metrics, lag_source, a);
  a->http = ls_http_start(addr, a->metrics, 60000, wake_consumer, a, err, sizeof err);
  if (!a->http) fprintf(stderr, "luastream: %s\n", err);
  return a->http ? 0 : 2;
}

static void free_app(ls_app *a) {
  ls_globals_close(a->globals);
  ls_watchdog_stop(a->watchdog);
  ls_http_stop(a->http);
  ls_sdnotify_close(a->sd);
  ls_reload_free(&a->reload);
  ls_engine_free(&a->eng);
  ls_status_free(a->status);
  ls_align_clear(a->align); /* its records go before the consumer they came from */
  ls_kafka_close(a->kafka);
  ls_align_free(a->align);
  ls_ckpt_close(a->ckpt);
  remove_temporary_state(a);
  ls_statedir_close(a->statedir);
  ls_devbroker_stop(a->devbroker);
  ls_offsets_free(&a->offsets);
  ls_batch_free(&a->pl.batch);
  free(a->msgs);
  free(a->in);
  free(a->source_next);
  free(a->out_rkt);
  free(a->input_names);
  ls_spec_free(&a->pl.spec);
  ls_vm_close(a->pl.L);
  free(a->out_counts);
  ls_metrics_free(a->metrics); /* last: closing Kafka above may still count */
}

/* ---- the loop ------------------------------------------------------------- */

static void show_status(ls_app *a, double now) {
  ls_status_sample x = {a->in_total, a->eng.out_total, a->pl.spec.ninputs ? ls_kafka_lag(a->kafka) : -1,
                        ls_ckpt_entries(a->ckpt), now > a->last_commit_ms ? now - a->last_commit_ms : 0, a->reload.reloads,
                        ls_kafka_outage_ms(a->kafka, now)};
  ls_status_show(a->status, &x, now);
}

static int should_stop(ls_app *a, double now) {
  if (stop_signal || a->eng.exit_code) return 1;
  if (a->opts->timeout_s > 0 && now - a->start_ms >= a->opts->timeout_s * 1000) return 1;
  if (a->opts->count > 0 && a->eng.out_total >= a->opts->count) return 1;
  return 0;
}

static int checkpoint_due(ls_app *a, double now) {
  if (a->pl.spec.commit_every > 0 && a->since_commit >= a->pl.spec.commit_every) return 1;
  return now - a->last_commit_ms >= a->pl.spec.commit_interval_s * 1000;
}

/* The heap policy follows the input rate (mem.h): fast as soon as a quarter
 * second holds HEAP_FAST_PER_S messages per second's worth, small again after
 * HEAP_SMALL_AFTER quarters in a row under HEAP_SMALL_PER_S. */
#define HEAP_WINDOW_MS 250
#define HEAP_FAST_PER_S 50000
#define HEAP_SMALL_PER_S 20000
#define HEAP_SMALL_AFTER 20 /* 5 s */

static void pace_heap(ls_app *a, ssize_t n, double now) {
  if (n > 0) a->heap_count += n;
  /* A window of at least HEAP_WINDOW_MS at the fast rate reaches this count. */
  if (a->heap_count >= HEAP_FAST_PER_S / 1000 * HEAP_WINDOW_MS) {
    a->heap_calm = 0;
    ls_mem_policy(1);
  }
  if (now - a->heap_window_ms < HEAP_WINDOW_MS) return;
  double rate = a->heap_count * 1000.0 / (now - a->heap_window_ms);
  a->heap_window_ms = now;
  a->heap_count = 0;
  if (rate < HEAP_SMALL_PER_S && ++a->heap_calm == HEAP_SMALL_AFTER) ls_mem_policy(0);
}

static void loop(ls_app *a) {
  catch_up_globals(a);
  double now = ls_mono_ms();
  while (!should_stop(a, now)) {
    int timeout = next_timeout_ms(a, now);
    ssize_t n = a->pl.spec.ninputs ? consume(a, timeout) : 0;
    if (!a->pl.spec.ninputs && timeout > 0) usleep((useconds_t)timeout * 1000);
    if (n > 0) {
      a->nmsgs = (int)n;
      process_batch(a);
    }
    now = ls_mono_ms();
    /* A short batch with a backlog behind it may mean the prefetch ran dry while
       librdkafka sleeps. The nudge is a broker round trip, so not when the
       consumer has caught up (a batch's worth of lag or less). */
    if (a->pl.spec.ninputs && n < a->pl.spec.batch_size && now - a->last_nudge_ms >= 10) {
      ls_kafka_nudge(a->kafka, a->pl.spec.batch_size);
      a->last_nudge_ms = now;
    }
    run_sources(a, now);
    run_idle(a, now);
    pace_heap(a, n, now);
    poll_globals(a);
    ls_kafka_poll(a->kafka);
    /* With the uplink down a checkpoint could only wait for it: later. */
    if (!a->eng.exit_code && checkpoint_due(a, now) && !ls_kafka_outage_ms(a->kafka, now)) checkpoint(a);
    if (!a->eng.exit_code && !stop_signal) {
      int hup = reload_signal;
      reload_signal = 0;
      ls_reload_poll(&a->reload, hup);
    }
    publish_reloads(a);
    publish_state_keys(a, now);
    if (a->align) ls_metrics_set_join_waiting(a->metrics, ls_align_held(a->align));
    ls_metrics_heartbeat(a->metrics, now);
    ls_http_serve(a->http, state_query, a);
    ls_errlog_flush(a->eng.errlog, 0);
    if (ls_status_due(a->status, now)) show_status(a, now);
    ls_sdnotify_tick(a->sd, now, a->in_total, a->eng.out_total); /* a stuck loop stops the pings */
  }
}

int ls_app_run(const ls_run_opts *opts) {
  /* Outputs printed by --print, --count and sdf:print() show up as they
     happen, on a pipe or in a file too. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  ls_app app, *a = &app;
  memset(a, 0, sizeof *a);
  a->opts = opts;
  ls_engine_io io = {.ud = a, .produce = kafka_produce, .copy_headers = copy_headers,
                     .on_error = count_error, .batch_failed = try_roll_back};
  if (ls_engine_init(&a->eng, &a->pl.batch, &io, opts->print)) return 1;
  if (!(a->metrics = ls_metrics_new())) ls_out_of_memory(sizeof(ls_metrics *));
  a->pl.L = ls_vm_new();
  if (!a->pl.L) {
    ls_engine_free(&a->eng);
    return 1;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN); /* a closed stdout (| head) must not kill us mid-checkpoint */
  signal(SIGHUP, on_hup);
  /* --watch, restarted by the watchdog: only once the script is fixed */
  if (opts->watch && ls_watchdog_wait_for_fix(opts->script, try_load, a, &stop_signal) < 0) {
    free_app(a);
    return 0;
  }
  int rc = load_script(a);
  if (rc == 0) {
    alloc_batch(a);
    rc = connect_kafka(a);
  }
  if (rc) {
    free_app(a);
    return rc;
  }
  ls_reload_host host = {.ud = a, .push_cli = reload_push_cli, .checkpoint = reload_checkpoint,
                         .refuse = reload_refuse, .adopted = reload_adopted, .wake = wake_consumer};
  ls_reload_init(&a->reload, opts->script, opts->watch, !a->tmp_state, &a->pl, &host);
  ls_reload_watch(&a->reload);
  size_out_counts(a);
  if ((rc = start_http(a)) != 0) {
    free_app(a);
    return rc;
  }
  if (a->pl.spec.ninputs == 0) ls_metrics_set_ready(a->metrics, 1); /* nothing to be assigned */
  a->start_ms = a->last_commit_ms = a->heap_window_ms = ls_mono_ms();
  if (ls_log_get_level() <= LS_LOG_INFO) /* a terminal's status line, else a log line now and then */
    a->status = ls_status_new(isatty(STDERR_FILENO) && !ls_log_is_json());
  ls_info("%s: running %s (%d input topic%s, on_error=%s)", a->pl.spec.name, opts->script,
          a->pl.spec.ninputs, a->pl.spec.ninputs == 1 ? "" : "s",
          ls_on_error_name(a->pl.spec.on_error));
  a->sd = ls_sdnotify_open(a->pl.spec.name);
  ls_sdnotify_ready(a->sd);
  ls_watchdog_set_heap_limit(a->pl.L, a->pl.spec.heap_limit_mb);
  a->watchdog = ls_watchdog_start(a->pl.spec.batch_time_limit_s, opts->watch, opts->script);
  loop(a);
  announce_stop();
  ls_sdnotify_stopping(a->sd);
  /* Whatever stopped us, commit what is done; a stop-policy error commits up to the bad offset. */
  a->stopping = 1;
  if (!a->eng.keep_uncommitted) checkpoint(a);
  ls_status_free(a->status);
  a->status = NULL;
  ls_errlog_flush(a->eng.errlog, 1);
  if (a->eng.exit_code) ls_error("%s", a->eng.fatal);
  ls_info("%s: stopped: %ld messages in, %ld records out, %ld skipped, %ld dead-lettered",
          a->pl.spec.name, a->in_total, a->eng.out_total, a->eng.skipped, a->eng.dead_lettered);
  rc = a->eng.exit_code;
  int restart = opts->watch && ls_watchdog_heap_tripped(NULL, 0);
  free_app(a);
  if (restart) { /* --watch: wait for a fixed script rather than exit (watchdog.h) */
    ls_info("watchdog: --watch: restarting in place to wait for a fixed script");
    ls_watchdog_restart_waiting(opts->script);
    ls_error("watchdog: cannot restart (exec failed)");
  }
  return rc;
}
