/* app.h - `luastream run`: one consumer-group member running one script.
 *
 * app.c owns the loop (docs/internals.md): poll a batch, decode it into Lua, run the
 * compiled pipeline with one lua_pcall, encode and produce the outputs, apply
 * on_error, and checkpoint (flush, then commit) on schedule and on stop.
 * With --watch or on SIGHUP it reloads the script between two batches,
 * keeping the consumer, its assignment and the state. */
#ifndef LS_APP_H
#define LS_APP_H

typedef struct ls_run_opts {
  const char *script;
  const char *broker;     /* --broker, or NULL */
  const char *name;       /* --name, or NULL */
  const char *state_dir;  /* --state-dir, or NULL */
  const char **sets;      /* --set k=v, nsets of them */
  int nsets;
  double timeout_s;       /* --timeout: stop after this many seconds (0 = never) */
  long count;             /* --count: stop after this many outputs (0 = never) */
  int watch;              /* --watch: reload when the script or its modules change */
  int from_beginning;     /* --from-beginning: ignore committed offsets and saved state */
  int print;              /* print every output record on stdout (--count/--timeout) */
  const char *http;       /* --http ADDR: /metrics, /health, /ready (NULL: LUASTREAM_HTTP, else off) */
} ls_run_opts;

/* Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad script. */
int ls_app_run(const ls_run_opts *opts);

#endif
