/* test_metrics.c - metrics.c: the Prometheus text of every family, the
 * /health rule (the 60 s gap, a restore), and the lag source. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

/* The rendered exposition, NUL-terminated; free it. */
static char *render(ls_metrics *m) {
  ls_buf b;
  ls_buf_init(&b);
  CHECK(ls_metrics_render(m, &b) == 0);
  ls_buf_put(&b, "", 1);
  char *s = strdup(b.data);
  ls_buf_free(&b);
  return s;
}

/* 1 when text has this exact line. */
static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
  return 0;
}

static void test_counters_and_gauges(void) {
  ls_metrics *m = ls_metrics_new();
  ls_metrics_add_in(m, "in", 3, 5);
  ls_metrics_add_in(m, "in", 3, 2);
  ls_metrics_add_in(m, "in", 0, 0); /* nothing: no series */
  ls_metrics_add_out(m, "out", 4);
  ls_metrics_add_error(m, "decode", "skip");
  ls_metrics_add_error(m, "decode", "skip");
  ls_metrics_add_error(m, "process", "dead-letter");
  ls_metrics_add_reload(m, "ok");
  ls_metrics_set_state_keys(m, "counts", 40);
  ls_metrics_set_state_keys(m, "counts", 38); /* a gauge: set, not added */
  char *t0 = render(m);
  CHECK(has_line(t0, "luastream_join_waiting_records 0"));
  free(t0);
  ls_metrics_set_join_waiting(m, 12);
  ls_metrics_set_join_waiting(m, 5);
  char *t = render(m);
  CHECK(has_line(t, "# TYPE luastream_messages_in_total counter"));
  CHECK(has_line(t, "luastream_messages_in_total{topic=\"in\",partition=\"3\"} 7"));
  CHECK(!strstr(t, "partition=\"0\""));
  CHECK(has_line(t, "luastream_messages_out_total{topic=\"out\"} 4"));
  CHECK(has_line(t, "luastream_errors_total{stage=\"decode\",action=\"skip\"} 2"));
  CHECK(has_line(t, "luastream_errors_total{stage=\"process\",action=\"dead-letter\"} 1"));
  CHECK(has_line(t, "luastream_reloads_total{result=\"ok\"} 1"));
  CHECK(has_line(t, "# TYPE luastream_state_keys gauge"));
  CHECK(has_line(t, "luastream_state_keys{store=\"counts\"} 38"));
  CHECK(has_line(t, "# TYPE luastream_join_waiting_records gauge"));
  CHECK(has_line(t, "luastream_join_waiting_records 5"));
  CHECK(has_line(t, "# TYPE process_resident_memory_bytes gauge"));
  CHECK(has_line(t, "# TYPE process_cpu_seconds_total counter"));
  free(t);
  ls_metrics_free(m);
}

static void test_histograms_are_cumulative(void) {
  ls_metrics *m = ls_metrics_new();
  ls_metrics_observe(m, LS_HIST_BATCH, 0.0004);  /* le 0.0005 */
  ls_metrics_observe(m, LS_HIST_BATCH, 0.003);   /* le 0.005 */
  ls_metrics_observe(m, LS_HIST_BATCH, 0.005);   /* le 0.005: bounds are inclusive */
  ls_metrics_observe(m, LS_HIST_BATCH, 60);      /* +Inf only */
  ls_metrics_observe(m, LS_HIST_CHECKPOINT, 0.2);
  char *t = render(m);
  CHECK(has_line(t, "# TYPE luastream_batch_seconds histogram"));
  CHECK(has_line(t, "luastream_batch_seconds_bucket{le=\"0.0005\"} 1"));
  CHECK(has_line(t, "luastream_batch_seconds_bucket{le=\"0.0025\"} 1"));
  CHECK(has_line(t, "luastream_batch_seconds_bucket{le=\"0.005\"} 3"));
  CHECK(has_line(t, "luastream_batch_seconds_bucket{le=\"10\"} 3"));
  CHECK(has_line(t, "luastream_batch_seconds_bucket{le=\"+Inf\"} 4"));
  CHECK(has_line(t, "luastream_batch_seconds_count 4"));
  CHECK(has_line(t, "luastream_batch_seconds_sum 60.0084"));
  CHECK(has_line(t, "luastream_checkpoint_seconds_bucket{le=\"0.1\"} 0"));
  CHECK(has_line(t, "luastream_checkpoint_seconds_bucket{le=\"0.25\"} 1"));
  CHECK(has_line(t, "luastream_checkpoint_seconds_count 1"));
  free(t);
  ls_metrics_free(m);
}

static void test_health_gap_and_restore(void) {
  ls_metrics *m = ls_metrics_new();
  CHECK(!ls_metrics_healthy(m, 1000, 60000)); /* before the first turn */
  ls_metrics_heartbeat(m, 5000);
  CHECK(ls_metrics_healthy(m, 5000, 60000));
  CHECK(ls_metrics_healthy(m, 65000, 60000)); /* 60 s without a turn: still */
  CHECK(!ls_metrics_healthy(m, 65001, 60000)); /* past 60 s: stuck */
  ls_metrics_set_restoring(m, 1);              /* a long restore is no stuck loop */
  CHECK(ls_metrics_healthy(m, 500000, 60000));
  ls_metrics_set_restoring(m, 0);
  CHECK(!ls_metrics_healthy(m, 500000, 60000));
  ls_metrics_heartbeat(m, 500000);
  CHECK(ls_metrics_healthy(m, 500000, 60000));
  CHECK(!ls_metrics_ready(m));
  ls_metrics_set_ready(m, 1);
  CHECK(ls_metrics_ready(m));
  ls_metrics_free(m);
}

static int lag_calls;

static void lags(void *ud, ls_metrics_lag_emit emit, void *ctx) {
  CHECK(strcmp(ud, "source") == 0);
  lag_calls++;
  emit(ctx, "in", 0, 6);
  emit(ctx, "in", 11, 0);
  emit(ctx, "other", 2, 1234567890123LL);
}

static void test_lag_asked_at_render(void) {
  ls_metrics *m = ls_metrics_new();
  char *t = render(m); /* no source: the family, no series */
  CHECK(has_line(t, "# TYPE luastream_consumer_lag gauge"));
  CHECK(!strstr(t, "luastream_consumer_lag{"));
  free(t);
  static char ud[] = "source";
  ls_metrics_set_lag_source(m, lags, ud);
  CHECK(lag_calls == 0); /* asked only when rendered */
  t = render(m);
  CHECK(lag_calls == 1);
  CHECK(has_line(t, "luastream_consumer_lag{topic=\"in\",partition=\"0\"} 6"));
  CHECK(has_line(t, "luastream_consumer_lag{topic=\"in\",partition=\"11\"} 0"));
  CHECK(has_line(t, "luastream_consumer_lag{topic=\"other\",partition=\"2\"} 1234567890123"));
  free(t);
  ls_metrics_free(m);
}

int main(void) {
  test_counters_and_gauges();
  test_histograms_are_cumulative();
  test_health_gap_and_restore();
  test_lag_asked_at_render();
  CHECK_DONE();
}
