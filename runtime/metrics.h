/* metrics.h - the app's counters, histograms and probes, for the HTTP endpoint.
 *
 * What it owns: numbers the loop publishes (messages in per topic and
 * partition, records out per topic, errors per stage and action, batch and
 * checkpoint durations, reloads, state keys, whether the loop turns and
 * whether the partitions are ready) and their Prometheus text form. The loop
 * thread writes, the HTTP thread (http.c) reads: every call takes the one
 * mutex, and the loop publishes once per batch, not once per record, so the
 * hot path pays one lock per batch. Process figures (resident memory, CPU)
 * are read from the kernel when rendered, and so is the consumer lag, from a
 * source the app registers (ls_metrics_set_lag_source): the loop does nothing
 * for it. */
#ifndef LS_METRICS_H
#define LS_METRICS_H

#include <stdint.h>

#include "buf.h"

typedef struct ls_metrics ls_metrics;

typedef enum { LS_HIST_BATCH, LS_HIST_CHECKPOINT, LS_NHIST } ls_hist;

ls_metrics *ls_metrics_new(void); /* NULL when out of memory */
void ls_metrics_free(ls_metrics *m);

/* Adds n to luastream_messages_in_total{topic, partition}. */
void ls_metrics_add_in(ls_metrics *m, const char *topic, int32_t partition, long n);
/* Adds n to luastream_messages_out_total{topic}. */
void ls_metrics_add_out(ls_metrics *m, const char *topic, long n);
/* Adds 1 to luastream_errors_total{stage, action}: stage decode | process |
 * encode | source, action skip | dead-letter | stop | logged | dropped. */
void ls_metrics_add_error(ls_metrics *m, const char *stage, const char *action);
/* One observation of luastream_batch_seconds or luastream_checkpoint_seconds. */
void ls_metrics_observe(ls_metrics *m, ls_hist h, double seconds);
/* luastream_reloads_total{result="ok"|"failed"|"rolled_back"} += 1. */
void ls_metrics_add_reload(ls_metrics *m, const char *result);
/* luastream_state_keys{store} = n (all partitions here). */
void ls_metrics_set_state_keys(ls_metrics *m, const char *store, int64_t n);
/* luastream_window_late_rows_total{store} = n: rows the windows of that store
 * dropped as late since the pipeline was loaded (a reload starts again at 0,
 * which Prometheus reads as a counter reset). */
void ls_metrics_set_late_rows(ls_metrics *m, const char *store, double n);

/* One luastream_consumer_lag{topic, partition} sample: the high watermark
 * minus the next offset to consume. */
typedef void (*ls_metrics_lag_emit)(void *ctx, const char *topic, int32_t partition, int64_t lag);
/* Called when /metrics is rendered, on the HTTP thread and without the
 * metrics mutex: calls emit(ctx, ...) once per assigned partition whose lag
 * is known. */
typedef void (*ls_metrics_lag_source)(void *ud, ls_metrics_lag_emit emit, void *ctx);
void ls_metrics_set_lag_source(ls_metrics *m, ls_metrics_lag_source fn, void *ud);

/* The loop turned at mono_ms (ls_mono_ms). */
void ls_metrics_heartbeat(ls_metrics *m, double mono_ms);
/* State is being restored (1) or not (0): a restore runs inside the loop's
 * turn and may take longer than any gap, so the loop counts as turning while
 * it lasts. */
void ls_metrics_set_restoring(ls_metrics *m, int restoring);
/* 1 while the loop turned within max_gap_ms of now (ls_mono_ms) or state is
 * being restored; 0 before its first turn otherwise. */
int ls_metrics_healthy(ls_metrics *m, double now_ms, double max_gap_ms);
/* Partitions assigned and their state restored (1), or not (yet) (0):
 * /ready, and the gauge luastream_ready. */
void ls_metrics_set_ready(ls_metrics *m, int ready);
/* luastream_join_waiting_records = n: records of joined inputs held back for
 * timestamp order (align.c; 0 when the app joins nothing). */
void ls_metrics_set_join_waiting(ls_metrics *m, long n);
int ls_metrics_ready(ls_metrics *m);

/* Appends the Prometheus text exposition (version 0.0.4). 0, or -1 out of memory. */
int ls_metrics_render(ls_metrics *m, ls_buf *out);

#endif
