/* watchdog.c - the batch time limit and the Lua heap cap (see watchdog.h). */
#include "watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "log.h"
#include "mem.h"

#define WAIT_ENV "LUASTREAM_WATCHDOG_WAIT"

extern char **environ;

/* ---- where the pipeline is --------------------------------------------------- */

static ls_wd_row g_row;                     /* written by the pipelines through FFI */
static _Atomic(const ls_batch *) g_batch;   /* the batch of the call running, or NULL */
static atomic_llong g_since_us;             /* when the outermost call began; 0: none */
static atomic_uint g_calls;                 /* calls begun, to tell one from the next */
static int g_depth;                         /* nesting, main thread only */

static long long mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

ls_wd_row *ls_watchdog_row(void) { return &g_row; }

void ls_watchdog_enter(const ls_batch *b) {
  if (g_depth++ > 0) return;
  g_row.i = 0;
  g_row.step = 0;
  atomic_store(&g_batch, b);
  atomic_fetch_add(&g_calls, 1);
  long long now = mono_us();
  atomic_store(&g_since_us, now > 0 ? now : 1);
}

void ls_watchdog_leave(void) {
  if (g_depth > 0 && --g_depth > 0) return;
  atomic_store(&g_since_us, 0);
  atomic_store(&g_batch, NULL);
}

char **ls_watchdog_read_steps(lua_State *L, int rt_ref, int *n) {
  *n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt_ref);
  lua_getfield(L, -1, "steps");
  int count = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
  char **steps = count > 0 ? ls_xcalloc((size_t)count, sizeof *steps) : NULL;
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, -1, i + 1);
    steps[i] = ls_xstrdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  *n = count;
  return steps;
}

void ls_watchdog_free_steps(char **steps, int n) {
  for (int i = 0; steps && i < n; i++) free(steps[i]);
  free(steps);
}

/* "in step F:L: what, on message topic[p]@offset" for the row at of batch b. */
static void describe(char *out, size_t len, const ls_wd_row *at, const ls_batch *b) {
  const char *step = b && at->step >= 1 && at->step <= b->nsteps ? b->steps[at->step - 1] : NULL;
  int n = snprintf(out, len, "in %s%s", step ? "step " : "", step ? step : "the pipeline (no user function)");
  if (n < 0 || (size_t)n >= len) return;
  if (b && b->meta && at->i >= 1 && at->i <= b->nrows) {
    const ls_meta_t *m = &b->meta[at->i - 1];
    const char *topic = b->spec && m->topic >= 1 && m->topic <= b->spec->ninputs
                            ? b->spec->inputs[m->topic - 1].name : "?";
    snprintf(out + n, len - (size_t)n, ", on message %s[%d]@%.0f (row %d of a batch of %d)", topic,
             (int)m->partition, m->offset, (int)at->i, b->nrows);
  } else {
    snprintf(out + n, len - (size_t)n, ", not on an input message");
  }
}

/* One error line written with write(2), as log.c would format it: the busy
 * thread may hold stdio's lock, and an exit must not wait for it. */
static void raw_error(const char *msg) {
  char line[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long s = (long)(ts.tv_sec % 86400);
  int n;
  if (ls_log_is_json()) {
    char esc[3000];
    size_t k = 0;
    for (const char *p = msg; *p && k + 8 < sizeof esc; p++) {
      unsigned char c = (unsigned char)*p;
      if (c == '"' || c == '\\') esc[k++] = '\\', esc[k++] = (char)c;
      else if (c >= 0x20) esc[k++] = (char)c;
    }
    esc[k] = 0;
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof line,
                 "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"error\",\"msg\":\"%s\"}\n",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, esc);
  } else {
    n = snprintf(line, sizeof line, "%s%02ld:%02ld:%02ld.%03ld error %s\n",
                 ls_log_get_status_line() ? "\r\033[K" : "", s / 3600, s / 60 % 60, s % 60,
                 ts.tv_nsec / 1000000, msg);
  }
  if (n <= 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  for (size_t off = 0; off < len;) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
}

/* ---- the heap cap ------------------------------------------------------------ */

typedef struct ls_heap {
  lua_Alloc f;       /* LuaJIT's allocator, wrapped */
  void *ud;
  size_t used;       /* bytes held */
  size_t limit;      /* 0: none */
  size_t ceiling;    /* after the limit was passed: the reserve's end */
  int tripped;
} ls_heap;

/* The first refusal (main thread only: Lua states run there). */
static struct {
  int tripped;
  ls_wd_row at;
  const ls_batch *batch;
  size_t used, limit;
} g_trip;

/* After the first refusal, a reserve of a quarter of the limit (at least 4 MB)
 * lets the error unwind and be reported; past it allocations fail again. */
static void trip(ls_heap *h, size_t wanted) {
  h->tripped = 1;
  h->ceiling = h->limit + (h->limit / 4 > (4u << 20) ? h->limit / 4 : (4u << 20));
  if (g_trip.tripped) return;
  g_trip.tripped = 1;
  g_trip.at = g_row;
  g_trip.batch = atomic_load(&g_batch);
  g_trip.used = wanted;
  g_trip.limit = h->limit;
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  ls_heap *h = ud;
  size_t old = ptr ? osize : 0;
  if (nsize > old && h->limit) {
    size_t after = h->used - old + nsize;
    if (!h->tripped && after > h->limit) return trip(h, after), NULL;
    if (h->tripped && after > h->ceiling) return NULL;
  }
  void *p = h->f(h->ud, ptr, osize, nsize);
  if (p || nsize == 0) h->used = h->used - old + nsize;
  return p;
}

int ls_watchdog_wrap_alloc(lua_State *L) {
  ls_heap *h = calloc(1, sizeof *h);
  if (!h) return -1;
  h->f = lua_getallocf(L, &h->ud);
  h->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
  lua_setallocf(L, counting_alloc, h);
  return 0;
}

static ls_heap *heap_of(lua_State *L) {
  void *ud = NULL;
  return L && lua_getallocf(L, &ud) == counting_alloc ? ud : NULL;
}

void *ls_watchdog_alloc_of(lua_State *L) { return heap_of(L); }

void ls_watchdog_unwrap_alloc(void *heap) { free(heap); }

void ls_watchdog_set_heap_limit(lua_State *L, double mb) {
  ls_heap *h = heap_of(L);
  if (h && !h->tripped) h->limit = mb > 0 ? (size_t)(mb * 1048576.0) : 0;
}

size_t ls_watchdog_heap_bytes(lua_State *L) {
  ls_heap *h = heap_of(L);
  return h ? h->used : 0;
}

int ls_watchdog_heap_tripped(char *report, size_t len) {
  if (!g_trip.tripped) return 0;
  if (report && len) {
    char where[1024];
    describe(where, sizeof where, &g_trip.at, g_trip.batch);
    snprintf(report, len, "the Lua heap reached %.1f MB, over heap_limit_mb = %g, %s",
             (double)g_trip.used / 1048576.0, (double)g_trip.limit / 1048576.0, where);
  }
  return 1;
}

/* ---- the time limit ------------------------------------------------------------ */

struct ls_watchdog {
  pthread_t thread;
  atomic_llong limit_us; /* 0: none */
  atomic_int stop;
  int watch;
  char script[PATH_MAX];
};

/* A call has run past the limit: report, then exit, or under --watch run
 * again in the waiting mode. Never returns. */
static void runaway(ls_watchdog *w, long long ran_us, const ls_wd_row *at, const ls_batch *b) {
  char where[1024], msg[2048];
  describe(where, sizeof where, at, b);
  snprintf(msg, sizeof msg,
           "watchdog: one call into the pipeline has run for %.1f s, past batch_time_limit = %g s, "
           "%s; %s", (double)ran_us / 1e6, (double)atomic_load(&w->limit_us) / 1e6, where,
           w->watch ? "nothing of it is committed; --watch: restarting in place to wait for a fixed script"
                    : "exiting with code 1: nothing of it is committed, a restart processes it again");
  raw_error(msg);
  if (w->watch) {
    ls_watchdog_restart_waiting(w->script);
    raw_error("watchdog: cannot restart (exec failed); exiting with code 1");
  }
  _exit(1);
}

static void *watchdog_main(void *arg) {
  ls_watchdog *w = arg;
  while (!atomic_load(&w->stop)) {
    long long limit = atomic_load(&w->limit_us);
    long long nap = limit > 0 ? limit / 4 : 250000;
    if (nap > 250000) nap = 250000;
    if (nap < 10000) nap = 10000;
    usleep((useconds_t)nap);
    long long since = atomic_load(&g_since_us);
    if (limit <= 0 || since <= 0 || mono_us() - since < limit) continue;
    unsigned calls = atomic_load(&g_calls);
    const ls_batch *b = atomic_load(&g_batch);
    volatile const ls_wd_row *live = &g_row;
    ls_wd_row at = {live->i, live->nout, live->step, 0};
    /* the same call still runs: it did not end while we looked */
    if (atomic_load(&g_since_us) != since || atomic_load(&g_calls) != calls) continue;
    runaway(w, mono_us() - since, &at, b);
  }
  return NULL;
}

ls_watchdog *ls_watchdog_start(double limit_s, int watch, const char *script) {
  ls_watchdog *w = ls_xcalloc(1, sizeof *w);
  atomic_store(&w->limit_us, limit_s > 0 ? (long long)(limit_s * 1e6) : 0);
  w->watch = watch;
  snprintf(w->script, sizeof w->script, "%s", script);
  if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
    ls_warn("watchdog: cannot start its thread: %s; no batch time limit", strerror(errno));
    free(w);
    return NULL;
  }
  return w;
}

void ls_watchdog_set_limit(ls_watchdog *w, double limit_s) {
  if (w) atomic_store(&w->limit_us, limit_s > 0 ? (long long)(limit_s * 1e6) : 0);
}

void ls_watchdog_stop(ls_watchdog *w) {
  if (!w) return;
  atomic_store(&w->stop, 1);
  pthread_join(w->thread, NULL);
  free(w);
}

/* ---- --watch: run again, waiting for a fixed script ------------------------------ */

/* The script's identity as the waiting process compares it. */
static int stat_text(const char *script, char *out, size_t len) {
  struct stat st;
  if (stat(script, &st) != 0) return snprintf(out, len, "missing"), 0;
  snprintf(out, len, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec);
  return 0;
}

void ls_watchdog_restart_waiting(const char *script) {
  /* static: no allocation here (the main thread may be stopped inside malloc) */
  static char cmdline[65536], env_var[PATH_MAX + 256];
  static char *argv[1024], *envp[4096];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = 0, r;
  while (n < (ssize_t)sizeof cmdline - 1 && (r = read(fd, cmdline + n, sizeof cmdline - 1 - (size_t)n)) != 0) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    n += r;
  }
  close(fd);
  if (n <= 0) return;
  cmdline[n] = 0;
  int argc = 0;
  for (ssize_t i = 0; i < n && argc < 1023; i += (ssize_t)strlen(cmdline + i) + 1) argv[argc++] = cmdline + i;
  argv[argc] = NULL;
  int k = snprintf(env_var, sizeof env_var, WAIT_ENV "=");
  stat_text(script, env_var + k, sizeof env_var - (size_t)k);
  int ne = 0;
  for (char **e = environ; e && *e && ne < 4094; e++)
    if (strncmp(*e, WAIT_ENV "=", sizeof WAIT_ENV) != 0) envp[ne++] = *e;
  envp[ne++] = env_var;
  envp[ne] = NULL;
  /* Nothing of this process (Kafka connections, the state dir's lock, LMDB,
     the metrics port) may outlive the exec. */
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) != 0)
#endif
  {
    struct rlimit rl;
    long top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1048576 ? (long)rl.rlim_cur : 65536;
    for (long f = 3; f < top; f++) fcntl((int)f, F_SETFD, FD_CLOEXEC);
  }
  execve("/proc/self/exe", argv, envp);
}

int ls_watchdog_wait_for_fix(const char *script, int (*try_load)(void *ud, char *err, size_t errlen),
                             void *ud, volatile sig_atomic_t *stop) {
  const char *v = getenv(WAIT_ENV);
  if (!v) return 0;
  char seen[512], now[512];
  snprintf(seen, sizeof seen, "%s", v);
  unsetenv(WAIT_ENV);
  ls_warn("watchdog: restarted after the error above; waiting for %s to change (--watch)", script);
  for (;;) {
    while (!*stop && (stat_text(script, now, sizeof now), strcmp(now, seen) == 0)) usleep(250 * 1000);
    if (*stop) return -1;
    usleep(50 * 1000); /* let the writes settle */
    stat_text(script, seen, sizeof seen);
    char err[4096];
    if (try_load(ud, err, sizeof err) == 0) {
      ls_info("watchdog: %s changed and loads; starting it", script);
      return 1;
    }
    ls_error("watchdog: %s still does not load: %s; waiting for the next change", script, err);
  }
}
