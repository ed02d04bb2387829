/* metrics.c - counters, histograms, probes and their Prometheus text (see metrics.h). */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* A labelled value: labels already in Prometheus form, e.g. topic="in",partition="3". */
typedef struct series {
  char *labels;
  double value;
} series;

typedef struct family {
  series *s;
  int n, cap;
} family;

/* Upper bounds of the duration histograms, in seconds. */
static const double BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBOUNDS ((int)(sizeof BOUNDS / sizeof BOUNDS[0]))

typedef struct histogram {
  uint64_t buckets[NBOUNDS]; /* not cumulative; made so when rendered */
  uint64_t count;
  double sum;
} histogram;

enum { F_IN, F_OUT, F_ERRORS, F_RELOADS, F_STATE_KEYS, F_LATE, NFAMILIES };

struct ls_metrics {
  pthread_mutex_t mu;
  family f[NFAMILIES];
  histogram h[LS_NHIST];
  double heartbeat_ms;
  int ready;
  int restoring;
  long join_waiting; /* records of joined inputs waiting for their turn (align.c) */
  ls_metrics_lag_source lag_fn; /* set before the HTTP thread starts */
  void *lag_ud;
};

ls_metrics *ls_metrics_new(void) {
  ls_metrics *m = calloc(1, sizeof *m);
  if (m && pthread_mutex_init(&m->mu, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

void ls_metrics_free(ls_metrics *m) {
  if (!m) return;
  for (int f = 0; f < NFAMILIES; f++) {
    for (int i = 0; i < m->f[f].n; i++) free(m->f[f].s[i].labels);
    free(m->f[f].s);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* The series of family f with these labels, made when new; NULL out of memory.
 * Called with the mutex held. */
static series *find(family *f, const char *labels) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->s[i].labels, labels) == 0) return &f->s[i];
  if (f->n == f->cap) {
    int cap = f->cap ? f->cap * 2 : 16;
    series *s = realloc(f->s, (size_t)cap * sizeof *s);
    if (!s) return NULL;
    f->s = s;
    f->cap = cap;
  }
  char *copy = strdup(labels);
  if (!copy) return NULL;
  f->s[f->n] = (series){copy, 0};
  return &f->s[f->n++];
}

/* Label values are topic and store names, stage and action words: none holds a
 * quote, a backslash or a newline (topic names are [A-Za-z0-9._-]). */
static void update(ls_metrics *m, int fam, int add, double v, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void update(ls_metrics *m, int fam, int add, double v, const char *fmt, ...) {
  char labels[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(labels, sizeof labels, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&m->mu);
  series *s = find(&m->f[fam], labels);
  if (s) s->value = add ? s->value + v : v;
  pthread_mutex_unlock(&m->mu);
}

void ls_metrics_add_in(ls_metrics *m, const char *topic, int32_t partition, long n) {
  if (m && n) update(m, F_IN, 1, (double)n, "topic=\"%s\",partition=\"%d\"", topic, (int)partition);
}

void ls_metrics_add_out(ls_metrics *m, const char *topic, long n) {
  if (m && n) update(m, F_OUT, 1, (double)n, "topic=\"%s\"", topic);
}

void ls_metrics_add_error(ls_metrics *m, const char *stage, const char *action) {
  if (m) update(m, F_ERRORS, 1, 1, "stage=\"%s\",action=\"%s\"", stage, action);
}

void ls_metrics_add_reload(ls_metrics *m, const char *result) {
  if (m) update(m, F_RELOADS, 1, 1, "result=\"%s\"", result);
}

void ls_metrics_set_state_keys(ls_metrics *m, const char *store, int64_t n) {
  if (m) update(m, F_STATE_KEYS, 0, (double)n, "store=\"%s\"", store);
}

void ls_metrics_set_late_rows(ls_metrics *m, const char *store, double n) {
  if (m) update(m, F_LATE, 0, n, "store=\"%s\"", store);
}

void ls_metrics_set_join_waiting(ls_metrics *m, long n) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->join_waiting = n;
  pthread_mutex_unlock(&m->mu);
}

void ls_metrics_observe(ls_metrics *m, ls_hist which, double seconds) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  histogram *h = &m->h[which];
  int b = 0;
  while (b < NBOUNDS && seconds > BOUNDS[b]) b++;
  if (b < NBOUNDS) h->buckets[b]++;
  h->count++;
  h->sum += seconds;
  pthread_mutex_unlock(&m->mu);
}

void ls_metrics_heartbeat(ls_metrics *m, double mono_ms) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->heartbeat_ms = mono_ms;
  pthread_mutex_unlock(&m->mu);
}

void ls_metrics_set_restoring(ls_metrics *m, int restoring) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->restoring = restoring;
  pthread_mutex_unlock(&m->mu);
}

int ls_metrics_healthy(ls_metrics *m, double now_ms, double max_gap_ms) {
  pthread_mutex_lock(&m->mu);
  int ok = m->restoring || (m->heartbeat_ms > 0 && now_ms - m->heartbeat_ms <= max_gap_ms);
  pthread_mutex_unlock(&m->mu);
  return ok;
}

void ls_metrics_set_ready(ls_metrics *m, int ready) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->ready = ready;
  pthread_mutex_unlock(&m->mu);
}

int ls_metrics_ready(ls_metrics *m) {
  pthread_mutex_lock(&m->mu);
  int r = m->ready;
  pthread_mutex_unlock(&m->mu);
  return r;
}

void ls_metrics_set_lag_source(ls_metrics *m, ls_metrics_lag_source fn, void *ud) {
  if (!m) return;
  pthread_mutex_lock(&m->mu);
  m->lag_fn = fn;
  m->lag_ud = ud;
  pthread_mutex_unlock(&m->mu);
}

/* ---- rendering --------------------------------------------------------------- */

static int put(ls_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(ls_buf *b, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  return ls_buf_put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static const struct {
  const char *name, *type, *help;
} FAMILIES[NFAMILIES] = {
    {"luastream_messages_in_total", "counter", "Input messages consumed, per topic and partition."},
    {"luastream_messages_out_total", "counter", "Records produced, per topic (dead letters included)."},
    {"luastream_errors_total", "counter", "Records that met on_error, per stage and action."},
    {"luastream_reloads_total", "counter", "Live reloads, per result."},
    {"luastream_state_keys", "gauge", "Entries in the local state store."},
    {"luastream_window_late_rows_total", "counter", "Rows windows dropped as late, per store."},
};

static int render_family(const ls_metrics *m, int f, ls_buf *out) {
  int rc = put(out, "# HELP %s %s\n# TYPE %s %s\n", FAMILIES[f].name, FAMILIES[f].help, FAMILIES[f].name,
               FAMILIES[f].type);
  for (int i = 0; rc == 0 && i < m->f[f].n; i++)
    rc = put(out, "%s{%s} %.17g\n", FAMILIES[f].name, m->f[f].s[i].labels, m->f[f].s[i].value);
  return rc;
}

static int render_histogram(const histogram *h, const char *name, const char *help, ls_buf *out) {
  int rc = put(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (int b = 0; rc == 0 && b < NBOUNDS; b++) {
    cum += h->buckets[b];
    rc = put(out, "%s_bucket{le=\"%g\"} %llu\n", name, BOUNDS[b], (unsigned long long)cum);
  }
  if (rc == 0) rc = put(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
  if (rc == 0) rc = put(out, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
  return rc;
}

/* Resident memory (bytes) and CPU time (seconds) of this process. */
static int render_process(ls_buf *out) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  struct rusage ru;
  double cpu = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
          ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
  return put(out,
             "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
             "# TYPE process_resident_memory_bytes gauge\n"
             "process_resident_memory_bytes %ld\n"
             "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
             "# TYPE process_cpu_seconds_total counter\n"
             "process_cpu_seconds_total %.6f\n",
             rss * sysconf(_SC_PAGESIZE), cpu);
}

typedef struct lag_ctx {
  ls_buf *out;
  int rc;
} lag_ctx;

static void emit_lag(void *ctx, const char *topic, int32_t partition, int64_t lag) {
  lag_ctx *c = ctx;
  if (c->rc == 0)
    c->rc = put(c->out, "luastream_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", topic, (int)partition,
                (long long)lag);
}

/* The lag of every assigned partition, asked of the source now. */
static int render_lag(ls_metrics *m, ls_buf *out) {
  pthread_mutex_lock(&m->mu);
  ls_metrics_lag_source fn = m->lag_fn;
  void *ud = m->lag_ud;
  pthread_mutex_unlock(&m->mu);
  lag_ctx c = {out, put(out, "# HELP luastream_consumer_lag Messages not yet consumed per assigned partition "
                             "(high watermark minus next offset).\n# TYPE luastream_consumer_lag gauge\n")};
  if (fn && c.rc == 0) fn(ud, emit_lag, &c);
  return c.rc;
}

int ls_metrics_render(ls_metrics *m, ls_buf *out) {
  if (render_lag(m, out)) return -1;
  pthread_mutex_lock(&m->mu);
  int rc = 0;
  for (int f = 0; rc == 0 && f < NFAMILIES; f++) rc = render_family(m, f, out);
  if (rc == 0)
    rc = put(out, "# HELP luastream_ready 1 once partitions are assigned and their state restored (/ready).\n"
                  "# TYPE luastream_ready gauge\nluastream_ready %d\n", m->ready);
  if (rc == 0)
    rc = put(out, "# HELP luastream_join_waiting_records Records of joined topics consumed and waiting to be "
                  "taken in timestamp order.\n# TYPE luastream_join_waiting_records gauge\n"
                  "luastream_join_waiting_records %ld\n", m->join_waiting);
  if (rc == 0)
    rc = render_histogram(&m->h[LS_HIST_BATCH], "luastream_batch_seconds",
                          "Time to process one batch (decode, pipeline, encode, produce).", out);
  if (rc == 0)
    rc = render_histogram(&m->h[LS_HIST_CHECKPOINT], "luastream_checkpoint_seconds",
                          "Time of one checkpoint (changelog, flush, commit, LMDB).", out);
  pthread_mutex_unlock(&m->mu);
  return rc == 0 ? render_process(out) : rc;
}
