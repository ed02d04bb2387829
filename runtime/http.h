/* http.h - the HTTP endpoint: metrics and probes (--http ADDR).
 *
 * What it owns: a libmicrohttpd daemon on its own thread, serving
 *   GET /metrics  Prometheus text (metrics.c)
 *   GET /health   200 while the loop turns, 503 when it has not for max_gap_ms
 *   GET /ready    200 once partitions are assigned and their state restored,
 *                 503 before and while recovering
 * and 404 for anything else (405 for other methods). It reads the metrics
 * under their mutex and touches nothing else of the app, so it costs the
 * loop one lock per batch. ADDR is "PORT", ":PORT" or "HOST:PORT"; without a
 * host it binds to 127.0.0.1. */
#ifndef LS_HTTP_H
#define LS_HTTP_H

#include <stddef.h>

#include "metrics.h"

typedef struct ls_http ls_http;

/* NULL with err ("--http 127.0.0.1:9100: Address already in use") on failure. */
ls_http *ls_http_start(const char *addr, ls_metrics *m, double max_gap_ms, char *err, size_t errlen);
/* The port it listens on (useful with port 0). */
int ls_http_port(const ls_http *h);
void ls_http_stop(ls_http *h);

#endif
