/* driver.h - the engine fed from memory, for the test driver (luastream.testing).
 *
 * What it owns: a pipeline run the way `luastream run` runs it, minus Kafka:
 * its own Lua state with the script loaded through rt.load (batch.c), the
 * engine (engine.c: decode, the pipeline call, row-by-row replay, on_error,
 * dead letters, encoding), state through the real checkpointer and LMDB
 * (checkpoint.c, in a temporary directory; a checkpoint after every batch),
 * the output partitioner of the Kafka producer (murmur2_random), a clock the
 * caller moves, and the text sdf:print() writes. luastream.testing keeps the
 * in-memory topics (offsets, logs, records the app reads back) and turns
 * values into bytes and back with the topics' formats; everything between
 * bytes in and bytes out happens here, in C, on the code `run` uses.
 *
 * The entry points are FFI functions (ls_ffi_driver_*), called from the test's
 * own Lua state; the pipeline's Lua state is a separate one. Every function
 * taking a driver is safe to call after a failure: errors are returned as
 * codes with a message in ls_ffi_driver_error(). */
#ifndef LS_DRIVER_H
#define LS_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ls_driver ls_driver;

/* Result codes. */
enum {
  LS_DRV_OK = 0,
  LS_DRV_ERR = -1,      /* bad argument or internal failure: see ls_ffi_driver_error */
  LS_DRV_SCRIPT = -2,   /* the script failed to load (message begins with file:line) */
  LS_DRV_STOPPED = -3   /* on_error = "stop" stopped the app: see ls_ffi_driver_error */
};

/* Options of a driver (all may be zero/NULL). */
typedef struct ls_driver_opts {
  const char *name;         /* the app name, like --name */
  const char *const *sets;  /* "option=value" strings, like --set */
  int nsets;
  int dev_broker;           /* what app:is_dev_broker() returns */
  int echo;                 /* also write sdf:print() text to stdout */
  int partitions;           /* partitions of every topic (>= 1; 0 means 1) */
  double start_ms;          /* the clock's start */
} ls_driver_opts;

/* One input record. key/value NULL: null; headers: nheaders pairs. */
typedef struct ls_driver_rec {
  int32_t topic;            /* 0-based index into the spec's inputs */
  int32_t partition;
  int64_t offset;
  int64_t timestamp;
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
  int32_t nheaders;
  const char *const *header_names;
  const char *const *header_values; /* NULL entry: a header without value */
  const size_t *header_lens;
} ls_driver_rec;

/* One output record, valid until the next call that processes or clears. */
typedef struct ls_driver_out {
  const char *topic;        /* topic name (an output or the dead-letter topic) */
  int32_t partition;        /* as the producer's murmur2_random picks it */
  int64_t timestamp;        /* ms (the input's when the app gave none) */
  const char *key;          /* NULL: null */
  size_t key_len;
  const char *value;        /* NULL: null */
  size_t value_len;
  int32_t nheaders;
  const char *const *header_names;
  const char *const *header_values;
  const size_t *header_lens;
  int32_t input;            /* index of the input record that produced it, -1 for a source */
} ls_driver_out;

/* One record that met on_error (or a failing source), in order. */
typedef struct ls_driver_err {
  int32_t input;            /* index of the input record, -1 for a source */
  const char *stage;        /* "decode" | "process" | "encode" | "source" */
  const char *error;
  const char *policy;       /* "skip" | "stop" | "dead-letter" | "logged" | "dropped" */
  const char *reason;       /* NULL unless an on_error function's answer became "stop" */
} ls_driver_err;

/* Loads script, with state in a new temporary directory (removed by
 * ls_ffi_driver_free). On failure returns NULL and *code/err say why
 * (LS_DRV_SCRIPT for the script's own errors, beginning with file:line). */
ls_driver *ls_ffi_driver_new(const char *script, const ls_driver_opts *opts, int *code, char *err,
                             size_t errlen);
void ls_ffi_driver_free(ls_driver *d);
/* The last error's text ("" when none). */
const char *ls_ffi_driver_error(const ls_driver *d);

/* The spec as JSON (topics, formats, stores, sources, options), as rt.load made it. */
const char *ls_ffi_driver_spec_json(ls_driver *d);

/* Runs recs[0..n) as one batch (one consumer poll), then checkpoints (state
 * to LMDB). Returns how many leading records are done (n unless stopped),
 * or LS_DRV_STOPPED when on_error = "stop" stopped the app (the driver then
 * refuses more records until ls_ffi_driver_restart), or LS_DRV_ERR. Outputs
 * and errors are appended to the lists below. */
int ls_ffi_driver_process(ls_driver *d, const ls_driver_rec *recs, int n);
/* Runs source k (0-based) at the driver's clock. 0 or LS_DRV_ERR. */
int ls_ffi_driver_run_source(ls_driver *d, int k);
/* Closes the windows idle at the driver's clock (close_on_idle), then
 * checkpoints. 0 or LS_DRV_ERR. */
int ls_ffi_driver_run_idle(ls_driver *d);

/* The clock: what ls.now_ms() returns inside the pipeline, and sources' now. */
void ls_ffi_driver_set_clock(ls_driver *d, double now_ms);

/* Outputs since the last clear, in produce order. */
int ls_ffi_driver_nout(const ls_driver *d);
const ls_driver_out *ls_ffi_driver_out(const ls_driver *d, int i);
/* Errors since the last clear. */
int ls_ffi_driver_nerr(const ls_driver *d);
const ls_driver_err *ls_ffi_driver_err(const ls_driver *d, int i);
/* Empties both lists. */
void ls_ffi_driver_clear(ls_driver *d);

/* What sdf:print() (and io.write in the pipeline) wrote since the last call;
 * *len set. The text stays valid until the next call of this function. */
const char *ls_ffi_driver_printed(ls_driver *d, size_t *len);

/* Committed state of message key key[0..klen) in store/partition (partition
 * -1: every partition). Returns how many state entries were found (read them
 * with ls_ffi_driver_state_entry until the next call), or LS_DRV_ERR. *nparts
 * gets how many partitions hold state for the key, *part the first of them
 * (the entries are that partition's). */
int ls_ffi_driver_state(ls_driver *d, const char *store, int32_t partition, const char *key,
                        size_t klen, int *nparts, int32_t *part);
/* Entry i of the last ls_ffi_driver_state: the state key and its MessagePack value. */
int ls_ffi_driver_state_entry(const ls_driver *d, int i, const char **name, size_t *nlen,
                              const char **val, size_t *vlen);

/* Loads the script again on the same state, as after a process restart:
 * the stop (if any) is cleared; state comes back from what was committed.
 * LS_DRV_OK, LS_DRV_SCRIPT or LS_DRV_ERR. */
int ls_ffi_driver_restart(ls_driver *d);

/* The partition the producer picks for key[0..klen) among n (murmur2_random:
 * murmur2 of the key; a null key goes to a random partition). */
int32_t ls_ffi_partition(const char *key, size_t klen, int32_t n);

#endif
