/* reload.h - live reload: watch, build, swap, probation, roll back.
 *
 * What it owns: turning a changed script into the running pipeline between
 * two batches, without stopping the consumer:
 *   watch (watch.c: the script and the project modules it loaded; or SIGHUP)
 *   -> build the new pipeline in a fresh Lua state and refuse changes that
 *   need a restart -> have the host checkpoint (nothing may be pending) ->
 *   swap it in, keeping the old one on probation -> the first batches that
 *   fail in the new pipeline but pass in the old one roll the reload back.
 * The host (app.c) owns the loop, Kafka and the state; it takes part through
 * the hooks: checkpointing, extra refusals, and adopting a swapped pipeline
 * (output topic handles, sources, state rebinding). */
#ifndef LS_RELOAD_H
#define LS_RELOAD_H

#include <lua.h>

#include "batch.h"
#include "engine.h"
#include "spec.h"
#include "watch.h"

/* A pipeline built from the script: its Lua state, spec and batch. */
typedef struct ls_pipeline {
  lua_State *L;
  ls_spec spec;
  ls_batch batch;
} ls_pipeline;

typedef struct ls_reload_host {
  void *ud;
  /* The script's command-line table for rt.load (see batch.h). */
  int (*push_cli)(lua_State *L, void *ud);
  /* Checkpoints; 0 when everything is committed and nothing is pending. */
  int (*checkpoint)(void *ud);
  /* Further reasons to refuse next (e.g. no more producer topic handles):
   * NULL, or the reason written to buf. */
  const char *(*refuse)(void *ud, const ls_spec *next, char *buf, size_t len);
  /* The running pipeline was exchanged; `before` is the spec it replaced.
   * rolled_back: the previous pipeline came back, and its state caches
   * predate the writes of the one it replaces. */
  void (*adopted)(void *ud, const ls_spec *before, int rolled_back, double now_ms);
  /* Wakes the loop from the watcher thread. */
  void (*wake)(void *ud);
} ls_reload_host;

typedef struct ls_reloader {
  const char *script;
  int watch_on;              /* --watch */
  int keep_state_dir;        /* the state dir must not change (not a temporary one) */
  ls_pipeline *run;          /* the host's running pipeline */
  ls_pipeline prev;          /* the one before the last reload, while on probation */
  int probation;             /* batches the new pipeline still has to pass (0: none) */
  ls_reload_host host;
  ls_watch *watch;
  long reloads;              /* done */
  long failed;               /* refused: the script failed to build, or needs a restart */
  long rolled_back;          /* rolled back after failing where the previous version did not */
  double retry_ms;           /* a postponed reload runs again then (0: none) */
} ls_reloader;

/* After a reload, the previous pipeline is kept until the new one has run
 * this many batches without a failure. */
#define LS_PROBATION_BATCHES 5

void ls_reload_init(ls_reloader *r, const char *script, int watch_on, int keep_state_dir,
                    ls_pipeline *run, const ls_reload_host *host);
void ls_reload_free(ls_reloader *r);

/* (Re)starts watching the script and the project modules it loaded. */
void ls_reload_watch(ls_reloader *r);

/* Between two batches: reloads when the watcher saw a change, when sighup is
 * set, or when a postponed reload is due. */
void ls_reload_poll(ls_reloader *r, int sighup);

/* A batch passed in the running pipeline (probation counts down). */
void ls_reload_passed(ls_reloader *r);

/* The running pipeline, on probation, failed on the batch in[0..n) with err.
 * If the previous pipeline processes it, the reload is rolled back (the host
 * checkpoints first) and its outputs are emitted through e: returns 1. Else
 * the new pipeline stays, with the batch decoded in it again: returns 0. */
int ls_reload_roll_back(ls_reloader *r, ls_engine *e, const ls_inmsg *in, int n, const char *err);

#endif
