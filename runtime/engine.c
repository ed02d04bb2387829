/* engine.c - one batch of records through the pipeline (see engine.h).
 *
 * Read top to bottom, ls_engine_process is:
 *   decode (batch.c) -> decode errors meet on_error (a stop truncates the
 *   batch before the record) -> one pipeline call -> encode and produce the
 *   outputs -> if the call failed: the caller's batch_failed hook, else the
 *   rows again one at a time, so only the bad row meets on_error. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "print.h"
#include "watchdog.h"

int ls_engine_init(ls_engine *e, ls_batch *b, const ls_engine_io *io, int print) {
  memset(e, 0, sizeof *e);
  e->batch = b;
  e->io = *io;
  e->print = print;
  e->errlog = ls_errlog_new(10000);
  return e->errlog ? 0 : -1;
}

void ls_engine_free(ls_engine *e) {
  if (e->errlog) ls_errlog_flush(e->errlog, 1);
  ls_errlog_free(e->errlog);
  e->errlog = NULL;
}

void ls_engine_fail(ls_engine *e, int code, const char *fmt, ...) {
  if (e->exit_code) return;
  e->exit_code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->fatal, sizeof e->fatal, fmt, ap);
  va_end(ap);
}

void ls_engine_push_headers(lua_State *L, const rd_kafka_headers_t *h) {
  if (!h || rd_kafka_header_cnt(h) == 0) {
    lua_pushnil(L);
    return;
  }
  lua_createtable(L, (int)rd_kafka_header_cnt(h), 0);
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++) {
    lua_createtable(L, 2, 0);
    lua_pushstring(L, name);
    lua_rawseti(L, -2, 1);
    if (val) {
      lua_pushlstring(L, val, len);
      lua_rawseti(L, -2, 2);
    }
    lua_rawseti(L, -2, (int)i + 1);
  }
}

/* ---- output --------------------------------------------------------------- */

/* An output's Lua headers ({ {name, value}, ... } or { name = value }) as a
 * header list, or NULL. */
static rd_kafka_headers_t *encode_headers(lua_State *L, int idx) {
  if (!lua_istable(L, idx)) return NULL;
  rd_kafka_headers_t *h = rd_kafka_headers_new(4);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t vl = 0;
    if (lua_istable(L, -1)) { /* { name, value } */
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      const char *v = lua_tolstring(L, -1, &vl);
      if (lua_isstring(L, -2)) rd_kafka_header_add(h, lua_tostring(L, -2), -1, v, (ssize_t)vl);
      lua_pop(L, 2);
    } else if (lua_type(L, -2) == LUA_TSTRING) { /* name = value */
      const char *v = lua_tolstring(L, -1, &vl);
      rd_kafka_header_add(h, lua_tostring(L, -2), -1, v, (ssize_t)vl);
    }
    lua_pop(L, 1);
  }
  return h;
}

static int produce_output(void *ud, lua_State *L, const ls_outrec *o) {
  ls_engine *e = ud;
  char err[512];
  ls_out out = {o->topic, o->key, o->key_len, o->value, o->value_len, (int64_t)o->timestamp,
                encode_headers(L, o->headers_idx), o->row > 0 ? e->batch->row_msg[o->row - 1] : -1};
  if (e->io.produce(e->io.ud, &out, err, sizeof err)) {
    if (!e->exit_code) e->keep_uncommitted = 1; /* the batch's state is ahead of what was produced */
    ls_engine_fail(e, 1, "%s", err);
    if (o->row > 0 && e->stop_at > e->batch->row_msg[o->row - 1]) e->stop_at = e->batch->row_msg[o->row - 1];
    return LS_DONE_STOP;
  }
  e->out_total++;
  if (e->print) ls_print_record(e->batch->spec->outputs[o->topic].name, o);
  return LS_DONE_OK;
}

static int output_error(void *ud, int row, const char *err) {
  ls_engine *e = ud;
  if (row <= 0) {
    if (e->io.on_error) {
      ls_error_event ev = {-1, "encode", err, "dropped", NULL};
      e->io.on_error(e->io.ud, &ev);
    }
    if (ls_errlog_admit(e->errlog, err)) ls_warn("source output dropped: %s", err);
    return LS_DONE_OK;
  }
  if (e->dlq_row == row) return LS_DONE_OK; /* one dead letter per input, however many outputs failed */
  int rc = ls_errors_handle(e, e->batch->row_msg[row - 1], row, "encode", err);
  e->dlq_row = row;
  return rc;
}

int ls_engine_emit(ls_engine *e, int nout) {
  char err[1024];
  int rc = ls_batch_emit(e->batch, nout, produce_output, output_error, e, err, sizeof err);
  if (rc < 0) {
    ls_engine_fail(e, 1, "encoding outputs failed: %s", err);
    e->stop_at = 0;
  }
  return rc ? LS_DONE_STOP : LS_DONE_OK;
}

/* ---- the pipeline call ---------------------------------------------------- */

/* Decode errors, in record order; a "stop" truncates the batch before it. */
static void handle_decode_errors(ls_engine *e) {
  ls_batch *b = e->batch;
  for (int i = 0; i < e->n; i++) {
    if (!b->msg_err[i]) continue;
    if (ls_errors_handle(e, i, 0, "decode", b->msg_err[i]) == LS_DONE_OK) continue;
    int keep = 0;
    while (keep < b->nrows && b->row_msg[keep] < i) keep++;
    ls_batch_truncate(b, keep);
    return;
  }
}

/* A call failed because the Lua heap reached its cap (watchdog.c): no
 * replay, no on_error; the app stops, committing nothing of the batch. 1 then. */
static int heap_stop(ls_engine *e) {
  char why[1536];
  if (!ls_watchdog_heap_tripped(why, sizeof why)) return 0;
  if (!e->exit_code) e->keep_uncommitted = 1;
  ls_engine_fail(e, 1, "watchdog: %s; stopping: nothing of the batch is committed, a restart "
                 "processes it again", why);
  e->stop_at = 0;
  return 1;
}

/* A failed batch again, one row at a time, so only the bad row meets on_error. */
static void replay_rows(ls_engine *e) {
  char err[2048];
  for (int r = 1; r <= e->batch->nrows; r++) {
    int nout = ls_batch_call(e->batch, r, r, err, sizeof err);
    if (nout < 0 && heap_stop(e)) return;
    int rc = nout >= 0 ? ls_engine_emit(e, nout)
                       : ls_errors_handle(e, e->batch->row_msg[r - 1], r, "process", err);
    if (rc == LS_DONE_STOP) return;
  }
}

static void run_pipeline(ls_engine *e) {
  if (e->batch->nrows == 0) return;
  char err[2048];
  int nout = ls_batch_call(e->batch, 1, e->batch->nrows, err, sizeof err);
  if (nout >= 0) {
    ls_engine_emit(e, nout);
    return;
  }
  if (heap_stop(e)) return;
  if (e->io.batch_failed && e->io.batch_failed(e->io.ud, err)) return;
  ls_debug("batch of %d rows failed (%s); replaying row by row", e->batch->nrows, err);
  replay_rows(e);
}

int ls_engine_process(ls_engine *e, const ls_inmsg *in, int n) {
  char err[1024];
  e->in = in;
  e->n = n;
  e->stop_at = n;
  e->dlq_row = 0;
  if (n > e->batch->cap) { /* a caller's bug: the batch's arrays hold cap records */
    ls_engine_fail(e, 1, "internal error: a batch of %d records for a pipeline of batch_size %d", n,
                   e->batch->cap);
    e->stop_at = 0;
    return 0;
  }
  if (ls_batch_decode(e->batch, in, n, err, sizeof err)) {
    ls_engine_fail(e, 1, "decoding a batch failed: %s", err);
    e->stop_at = 0;
    return 0;
  }
  handle_decode_errors(e);
  run_pipeline(e);
  return e->stop_at;
}

void ls_engine_run_source(ls_engine *e, int k, double now_ms) {
  char err[2048];
  int nout = ls_batch_call_source(e->batch, k + 1, now_ms, err, sizeof err);
  if (nout < 0 && heap_stop(e)) return;
  if (nout < 0) {
    if (e->io.on_error) {
      ls_error_event ev = {-1, "source", err, "logged", NULL};
      e->io.on_error(e->io.ud, &ev);
    }
    if (ls_errlog_admit(e->errlog, err)) ls_warn("source %d failed: %s", k + 1, err);
    return;
  }
  ls_engine_emit(e, nout);
}

void ls_engine_run_idle(ls_engine *e, double now_ms) {
  char err[2048];
  int failed;
  int nout = ls_batch_call_idle(e->batch, now_ms, &failed, err, sizeof err);
  if (nout < 0 || failed) {
    if (e->io.on_error) {
      ls_error_event ev = {-1, "process", err, "kept", NULL};
      e->io.on_error(e->io.ud, &ev);
    }
    if (ls_errlog_admit(e->errlog, err)) ls_warn("idle windows: %s", err);
  }
  if (nout > 0) ls_engine_emit(e, nout);
}
