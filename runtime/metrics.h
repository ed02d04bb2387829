/* metrics.h - the app's counters, histograms and probes, for the HTTP endpoint.
 *
 * What it owns: numbers the loop publishes (messages in per topic and
 * partition, records out per topic, errors per stage and action, batch and
 * checkpoint durations, reloads, state keys, whether the loop turns and
 * whether the partitions are ready) and their Prometheus text form. The loop
 * thread writes, the HTTP thread (http.c) reads: every call takes the one
 * mutex, and the loop publishes once per batch, not once per record, so the
 * hot path pays one lock per batch. Process figures (resident memory, CPU)
 * are read from the kernel when rendered. */
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

/* The loop turned at mono_ms (ls_mono_ms). */
void ls_metrics_heartbeat(ls_metrics *m, double mono_ms);
/* 1 while the loop turned within max_gap_ms of now (ls_mono_ms). */
int ls_metrics_healthy(ls_metrics *m, double now_ms, double max_gap_ms);
/* Partitions assigned and their state restored (1), or not (yet) (0). */
void ls_metrics_set_ready(ls_metrics *m, int ready);
int ls_metrics_ready(ls_metrics *m);

/* Appends the Prometheus text exposition (version 0.0.4). 0, or -1 out of memory. */
int ls_metrics_render(ls_metrics *m, ls_buf *out);

#endif
