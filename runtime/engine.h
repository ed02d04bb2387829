/* engine.h - one batch of records through the pipeline, whatever feeds it.
 *
 * What it owns: the batch path that `luastream run` (app.c, records from
 * Kafka) and the test driver (driver.c, records from memory) share, so both
 * behave the same by construction:
 *   decode into Lua (batch.c) -> on_error for records that did not decode ->
 *   one call of the compiled pipeline -> encode the outputs and hand them to
 *   the caller's produce function -> on failure, the batch again row by row,
 *   so only the bad row meets on_error (errors.c) -> how many leading records
 *   are done (stop_at).
 * Sources (app:source) run through it too. It knows nothing of Kafka
 * handles, offsets, checkpoints or reloads: those stay with the caller, which
 * sees them through the io callbacks.
 *
 * A record leaves as an ls_out: its topic is an index into spec.outputs, or
 * LS_OUT_DEAD_LETTER for spec.dead_letter; headers are librdkafka header
 * lists (a plain container, no handle needed), owned by the produce callback
 * from then on. */
#ifndef LS_ENGINE_H
#define LS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>

#include "batch.h"
#include "errlog.h"

#define LS_OUT_DEAD_LETTER (-1)

typedef struct ls_out {
  int topic;                /* index into spec.outputs, or LS_OUT_DEAD_LETTER */
  const void *key;          /* NULL: no key */
  size_t key_len;
  const void *value;        /* NULL: a null value */
  size_t value_len;
  int64_t timestamp;        /* ms; 0 = now */
  rd_kafka_headers_t *hdrs; /* may be NULL; the callee owns it, even on failure */
  int msg;                  /* index of the batch record it came from; -1 for a source */
} ls_out;

/* A record that met on_error, for the callers that list them (the driver). */
typedef struct ls_error_event {
  int msg;                  /* index into the batch's records; -1 for a source */
  const char *stage;        /* "decode" | "process" | "encode" | "source" */
  const char *error;
  const char *policy;       /* "skip" | "stop" | "dead-letter"; for a source's own
                               failure "logged", for its output "dropped" */
  const char *reason;       /* why an on_error function's answer became "stop", or NULL */
} ls_error_event;

typedef struct ls_engine_io {
  void *ud;
  /* Queues one record. 0, or -1 with err: the engine stops (exit code 1). */
  int (*produce)(void *ud, const ls_out *o, char *err, size_t errlen);
  /* A copy of the headers of record `source` (ls_inmsg.source), or NULL. */
  rd_kafka_headers_t *(*copy_headers)(const void *source);
  /* Optional: every record that met on_error. */
  void (*on_error)(void *ud, const ls_error_event *ev);
  /* Optional: the pipeline call failed on the whole batch. Return 1 when the
   * caller took the batch over (e.g. a reload rolled back and ran it). */
  int (*batch_failed)(void *ud, const char *err);
} ls_engine_io;

typedef struct ls_engine {
  ls_batch *batch;          /* the running pipeline: its Lua state and spec */
  ls_engine_io io;
  ls_errlog *errlog;        /* one log line per distinct error */
  int print;                /* print every output record on stdout (--print) */
  /* the batch being processed */
  const ls_inmsg *in;
  int n;
  int stop_at;              /* first record not done; n when all are */
  int dlq_row;              /* last row sent to the dead-letter topic */
  /* totals */
  long out_total, skipped, dead_lettered;
  /* the first fatal error: exit code (1 runtime, 2 usage) and its text */
  int exit_code;
  int keep_uncommitted;     /* the failure happened before the outputs were safe:
                               the stop must not checkpoint */
  char fatal[4096];
} ls_engine;

/* Sets up e over batch b. 0, or -1 (out of memory). */
int ls_engine_init(ls_engine *e, ls_batch *b, const ls_engine_io *io, int print);
void ls_engine_free(ls_engine *e);

/* Runs in[0..n) through the pipeline. Returns stop_at: records before it are
 * done (processed, skipped or dead-lettered); it is less than n only after a
 * stop (e->exit_code set). */
int ls_engine_process(ls_engine *e, const ls_inmsg *in, int n);

/* Runs source k (0-based) once at now_ms; a failure is logged, not fatal. */
void ls_engine_run_source(ls_engine *e, int k, double now_ms);

/* Closes the windows idle at now_ms (close_on_idle) and produces what the
 * rest of their pipelines output; a failure is logged (rate-limited) and the
 * failing keys keep their windows for the next call. */
void ls_engine_run_idle(ls_engine *e, double now_ms);

/* Encodes and produces outputs 1..nout of the last pipeline call. */
int ls_engine_emit(ls_engine *e, int nout);

/* Records the first fatal error; later ones are ignored. */
void ls_engine_fail(ls_engine *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Pushes the headers of a record as { {name, value}, ... }, or nil
 * (the batch's push_headers for librdkafka header lists). */
void ls_engine_push_headers(lua_State *L, const rd_kafka_headers_t *h);

#endif
