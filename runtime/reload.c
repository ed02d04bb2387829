/* reload.c - live reload: watch, build, swap, probation, roll back (see reload.h). */
#include "reload.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "lua_vm.h"
#include "mem.h"
#include "statebridge.h"

void ls_reload_init(ls_reloader *r, const char *script, int watch_on, int keep_state_dir,
                    ls_pipeline *run, const ls_reload_host *host) {
  memset(r, 0, sizeof *r);
  r->script = script;
  r->watch_on = watch_on;
  r->keep_state_dir = keep_state_dir;
  r->run = run;
  r->host = *host;
}

static void drop(ls_pipeline *p) {
  ls_batch_free(&p->batch);
  ls_spec_free(&p->spec);
  ls_vm_close(p->L);
  memset(p, 0, sizeof *p);
}

void ls_reload_free(ls_reloader *r) {
  ls_watch_stop(r->watch);
  r->watch = NULL;
  drop(&r->prev);
}

void ls_reload_watch(ls_reloader *r) {
  if (!r->watch_on) return;
  char **files, err[1024];
  int n = ls_vm_project_files(r->run->L, r->script, &files);
  if (n < 0) {
    ls_warn("--watch: cannot list the script's modules");
    return;
  }
  ls_watch_stop(r->watch);
  r->watch = ls_watch_start((const char *const *)files, n, r->host.wake, r->host.ud, err, sizeof err);
  if (!r->watch) ls_warn("--watch: %s; reload with SIGHUP instead", err);
  else if (r->reloads == 0) ls_info("watching %s%s for changes", files[0], n > 1 ? " and the modules it loads" : "");
  for (int i = 1; i < n && r->reloads == 0 && r->watch; i++) ls_debug("watching %s", files[i]);
  ls_vm_free_files(files, n);
}

/* Runs the script in a fresh Lua state. Returns 0, or -1 with err. */
static int build_next(ls_reloader *r, ls_pipeline *np, char *err, size_t errlen) {
  memset(np, 0, sizeof *np);
  np->L = ls_vm_new();
  if (!np->L) return snprintf(err, errlen, "cannot create a Lua state"), -1;
  ls_vm_add_script_dir(np->L, r->script);
  if (ls_batch_load(&np->batch, np->L, &np->spec, r->script, r->host.push_cli, r->host.ud, err, errlen))
    return -1;
  char reason[1024];
  const char *why = ls_spec_restart_reason(&r->run->spec, &np->spec, r->keep_state_dir, reason, sizeof reason);
  if (why) return snprintf(err, errlen, "%s: a restart is needed to apply this change", why), -1;
  if (r->host.refuse && (why = r->host.refuse(r->host.ud, &np->spec, reason, sizeof reason)))
    return snprintf(err, errlen, "%s", why), -1;
  return 0;
}

/* Exchanges the running pipeline with *p. Only valid with nothing pending
 * (a checkpoint just completed), so the one taking over reads its state from
 * LMDB where the other left off. */
static void exchange(ls_reloader *r, ls_pipeline *p, int rolled_back, double now) {
  ls_spec_keep_fixed(&r->run->spec, &p->spec);
  ls_pipeline was = *r->run;
  *r->run = *p;
  *p = was;
  p->batch.spec = &p->spec;
  r->run->batch.spec = &r->run->spec;
  r->run->batch.push_headers = p->batch.push_headers;
  r->host.adopted(r->host.ud, &p->spec, rolled_back, now);
}

/* The next pipeline takes over; the one it replaces is kept on probation. */
static void swap_in(ls_reloader *r, ls_pipeline *np, double now) {
  drop(&r->prev);
  if (ls_batch_alloc(&np->batch, np->spec.batch_size)) ls_out_of_memory(0);
  exchange(r, np, 0, now);
  r->prev = *np;
  r->probation = LS_PROBATION_BATCHES;
  memset(np, 0, sizeof *np);
}

/* The running pipeline's batch (still decoded in it) called again: after its
 * state writes were undone, this puts back those of the rows before the
 * failing one, and the row-by-row replay that follows starts from there. */
static void redo_batch(ls_reloader *r) {
  char why[2048];
  if (r->run->batch.nrows > 0) ls_batch_call(&r->run->batch, 1, r->run->batch.nrows, why, sizeof why);
}

static int has_decode_errors(const ls_batch *b) {
  for (int i = 0; i < b->nmsgs; i++)
    if (b->msg_err[i]) return 1;
  return 0;
}

void ls_reload_passed(ls_reloader *r) {
  if (r->probation > 0 && --r->probation == 0) drop(&r->prev);
}

int ls_reload_roll_back(ls_reloader *r, ls_engine *e, const ls_inmsg *in, int n, const char *err) {
  char why[2048];
  /* The previous pipeline must be able to take the whole batch, and find none
     of it applied: the rows before the failing one wrote state in the new one. */
  if (r->probation == 0 || !r->prev.L || n > r->prev.batch.cap) return 0;
  if (ls_bridge_undo_batch(r->run->L, why, sizeof why)) return 0; /* nothing was undone */
  if (r->host.checkpoint(r->host.ud) != 0) {
    redo_batch(r);
    return 0;
  }
  double now = ls_mono_ms();
  exchange(r, &r->prev, 1, now);
  int nout = -1;
  if (ls_batch_decode(&r->run->batch, in, n, why, sizeof why) == 0 && !has_decode_errors(&r->run->batch))
    nout = ls_batch_call(&r->run->batch, 1, r->run->batch.nrows, why, sizeof why);
  if (nout < 0) { /* the data is bad for both (or the old one cannot decode it): the new pipeline stays */
    exchange(r, &r->prev, 0, now);
    r->probation = 0;
    drop(&r->prev);
    redo_batch(r);
    return 0;
  }
  ls_error("reload of %s rolled back: the new version failed on a batch that the previous one "
           "processes: %s; running the previous version again (fix the script and save it again)",
           r->script, err);
  r->probation = 0;
  r->rolled_back++;
  drop(&r->prev);
  ls_engine_emit(e, nout);
  return 1;
}

/* Builds the new pipeline, checkpoints, swaps. On any failure the running
 * pipeline stays. */
static void reload(ls_reloader *r, double changed_ms, const char *why) {
  char err[4096];
  double t0 = ls_mono_ms();
  ls_debug("reload: starting %.1f ms after the change", t0 - changed_ms);
  ls_pipeline np;
  if (build_next(r, &np, err, sizeof err)) {
    ls_error("reload of %s failed, still running the previous version: %s", r->script, err);
    r->failed++;
    drop(&np);
    return;
  }
  double t1 = ls_mono_ms();
  if (r->host.checkpoint(r->host.ud) != 0) {
    ls_warn("reload postponed by 1 s: the checkpoint before it did not complete");
    drop(&np);
    r->retry_ms = ls_mono_ms() + 1000;
    return;
  }
  double t2 = ls_mono_ms();
  swap_in(r, &np, t2);
  r->reloads++;
  ls_reload_watch(r);
  double t3 = ls_mono_ms();
  ls_info("reloaded %s (%s) in %.1f ms: build %.1f ms, checkpoint %.1f ms, swap %.1f ms; "
          "%.1f ms after the change", r->script, why, t3 - t0, t1 - t0, t2 - t1, t3 - t2,
          t3 - changed_ms);
}

void ls_reload_poll(ls_reloader *r, int sighup) {
  double since = 0;
  if (sighup) {
    r->retry_ms = 0;
    reload(r, ls_mono_ms(), "SIGHUP");
  } else if (r->retry_ms > 0 && ls_mono_ms() >= r->retry_ms) {
    r->retry_ms = 0;
    reload(r, ls_mono_ms(), "retry");
  } else if (ls_watch_take(r->watch, &since)) {
    char why[PATH_MAX + 16];
    snprintf(why, sizeof why, "%s changed", ls_watch_last(r->watch));
    reload(r, since, why);
  }
}
