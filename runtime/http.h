/* http.h - the HTTP endpoint: metrics, probes and state queries (--http ADDR).
 *
 * What it owns: a libmicrohttpd daemon on its own thread, serving
 *   GET /metrics  Prometheus text (metrics.c)
 *   GET /health   200 while the loop turns, 503 when it has not for max_gap_ms
 *   GET /ready    200 once partitions are assigned and their state restored,
 *                 503 before and while recovering
 *   GET /state/<store>?key=K   a message key's state as JSON, answered by the
 *                 loop thread between two batches (ls_http_serve): the HTTP
 *                 thread posts the query in a one-slot mailbox, wakes the
 *                 loop and waits (5 s at most)
 * and 404 for anything else (405 for other methods). It reads the metrics
 * under their mutex, and the consumer lag through the source the app gave
 * metrics.c (librdkafka's thread-safe calls), and touches nothing else of the
 * app, so it costs the loop one lock per batch. ADDR is "PORT", ":PORT" or
 * "HOST:PORT"; without a host it binds to 127.0.0.1. */
#ifndef LS_HTTP_H
#define LS_HTTP_H

#include <stddef.h>

#include "metrics.h"

typedef struct ls_http ls_http;

/* Answers a state query on the loop thread: fills body and returns the HTTP
 * status (200 with JSON, or 4xx/5xx with a text line). */
typedef int (*ls_http_query_fn)(void *ud, const char *store, const char *key, size_t klen, ls_buf *body);

/* NULL with err ("--http 127.0.0.1:9100: Address already in use") on failure.
 * wake (may be NULL) makes the loop turn at once when a query waits. */
ls_http *ls_http_start(const char *addr, ls_metrics *m, double max_gap_ms, void (*wake)(void *ud),
                       void *wake_ud, char *err, size_t errlen);
/* On the loop thread: answers the waiting state query, if any. */
void ls_http_serve(ls_http *h, ls_http_query_fn fn, void *ud);
/* The port it listens on (useful with port 0). */
int ls_http_port(const ls_http *h);
void ls_http_stop(ls_http *h);

#endif
