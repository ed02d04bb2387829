/* batch.h - one batch on the Lua side: decode in, pipeline call, encode out.
 *
 * batch.c owns the arrays shared with luastream.runtime (rt.rows, rt.keys,
 * rt.hdrs and the FFI meta array), decoding consumed records into them, the
 * single lua_pcall of rt.run_batch, and encoding each output with its topic's
 * serializers (or taking the JSON text luastream.jsonout wrote for it). It knows nothing of Kafka: app.c feeds it records from the
 * consumer and produces what it emits; the in-process benchmark feeds it
 * records from memory. Error policies stay with the caller. */
#ifndef LS_BATCH_H
#define LS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "json.h"
#include "spec.h"

/* One input message as Lua sees it through FFI (see luastream/runtime.lua). */
typedef struct ls_meta {
  double offset;
  double timestamp;
  int32_t partition;
  int32_t topic; /* 1-based index into spec.inputs */
} ls_meta_t;

/* A consumed record, whatever it came from. */
typedef struct ls_inmsg {
  const void *payload; /* NULL: a tombstone, not a row */
  size_t len;
  const void *key;
  size_t key_len;
  int64_t offset;
  int64_t timestamp;
  int32_t partition;
  int32_t topic;       /* 0-based index into spec.inputs; -1: not a row */
  const void *source;  /* the caller's record (for headers), or NULL */
} ls_inmsg;

/* Pushes the headers of a record as { {name, value}, ... }, or nil. */
typedef void (*ls_push_headers_fn)(lua_State *L, const void *source);

/* One encoded output, valid during the emit callback only. */
typedef struct ls_outrec {
  int topic;           /* 0-based index into spec.outputs */
  int row;             /* 1-based input row; 0 for sources */
  double timestamp;    /* ms; 0 = now */
  const char *key;     /* NULL: no key */
  size_t key_len;
  const char *value;   /* NULL: null value */
  size_t value_len;
  int headers_idx;     /* stack index of the Lua headers value (may be nil) */
} ls_outrec;

/* Return 0 to go on, non-zero to stop emitting. */
typedef int (*ls_emit_fn)(void *ud, lua_State *L, const ls_outrec *out);
/* An output of row could not be encoded. Return 0 to go on. */
typedef int (*ls_emit_error_fn)(void *ud, int row, const char *err);

/* How the flat parse (json.h) fares on one input topic's rows: a topic whose
 * rows are mostly not flat stops trying for a while (batch.c, try_flat). */
typedef struct ls_flat_odds {
  uint32_t tries, misses, skip;
} ls_flat_odds;

typedef struct ls_batch {
  lua_State *L;
  const ls_spec *spec;
  int rt_ref, run_batch_ref;
  ls_push_headers_fn push_headers;
  int cap;
  ls_meta_t *meta;
  int *row_msg;        /* row (0-based) -> message index */
  char **msg_err;      /* message index -> decode error, or NULL */
  int nmsgs, nrows, prev_nrows;
  ls_buf kbuf, vbuf;
  ls_buf *json;        /* the JSON values luastream.jsonout wrote for this call's outputs */
  ls_json_keys keys;   /* the top-level keys of the JSON rows last decoded (json.h) */
  int keys_ref;        /* registry ref of the table holding them; <= 0: not made yet */
  ls_json_flat flat;   /* the batch's flat JSON rows, built by luastream.jsonin (json.h) */
  ls_flat_odds *flat_odds; /* per input topic (spec->inputs) */
  int nflat_odds;
  size_t json_pos;     /* emit: where the next of them starts */
  char **steps;        /* rt.steps: "file:line: what" of each user function's step (watchdog.c) */
  int nsteps;
} ls_batch;

/* Loads luastream.runtime into L and runs the script through rt.load, then
 * reads the spec. Returns 0, or an exit code (2: bad script) with a message
 * in err. */
int ls_batch_load(ls_batch *b, lua_State *L, ls_spec *spec, const char *script,
                  int (*push_cli)(lua_State *L, void *ud), void *ud, char *err, size_t errlen);
int ls_batch_alloc(ls_batch *b, int capacity);
void ls_batch_free(ls_batch *b);

/* Decodes msgs into rows; a record that fails to decode gets msg_err[i]. */
int ls_batch_decode(ls_batch *b, const ls_inmsg *msgs, int n, char *err, size_t errlen);
/* Drops rows from row `keep` + 1 on (a stop before them). */
void ls_batch_truncate(ls_batch *b, int keep);
/* rt.run_batch over rows first..last: returns nout, or -1 with err. */
int ls_batch_call(ls_batch *b, int first, int last, char *err, size_t errlen);
/* rt.run_source(k): returns nout, or -1 with err. */
int ls_batch_call_source(ls_batch *b, int k, double now_ms, char *err, size_t errlen);
/* rt.run_idle(now_ms): closes the windows idle at now_ms. Returns nout (the
 * outputs to emit), or -1 with err when the call itself failed. *failed is
 * set when some keys' closes failed (kept for the next call; err says which). */
int ls_batch_call_idle(ls_batch *b, double now_ms, int *failed, char *err, size_t errlen);
/* Encodes outputs 1..nout and hands each to emit. Returns 0, the first
 * non-zero callback result, or -1 with err when Lua itself failed. */
int ls_batch_emit(ls_batch *b, int nout, ls_emit_fn emit, ls_emit_error_fn on_error, void *ud,
                  char *err, size_t errlen);
/* Pushes rt.rows[row]. */
void ls_batch_push_row(ls_batch *b, int row);
/* Pushes rt.handle_error (the user's on_error function wrapper). */
void ls_batch_push_handler(ls_batch *b);

#endif
