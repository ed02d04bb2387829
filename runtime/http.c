/* http.c - the HTTP endpoint: metrics and probes (see http.h). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "log.h"

/* The one-slot mailbox of state queries, from the HTTP thread to the loop. */
typedef struct query {
  const char *store, *key;
  size_t klen;
  ls_buf body;
  int status;
  int done;
} query;

struct ls_http {
  struct MHD_Daemon *d;
  ls_metrics *m;
  double max_gap_ms;
  int port;
  void (*wake)(void *ud);
  void *wake_ud;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  query *pending; /* the query the loop should answer, or NULL */
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *body) {
  return reply(c, status, "text/plain; charset=utf-8", body, strlen(body));
}

static enum MHD_Result metrics(ls_http *h, struct MHD_Connection *c) {
  ls_buf b;
  ls_buf_init(&b);
  enum MHD_Result ok = ls_metrics_render(h->m, &b) == 0
                           ? reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len)
                           : text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
  ls_buf_free(&b);
  return ok;
}

/* Posts q and waits for the loop's answer (5 s at most). */
static void ask_loop(ls_http *h, query *q) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  pthread_mutex_lock(&h->mu);
  while (h->pending) /* one query at a time */
    if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT) break;
  if (!h->pending) {
    h->pending = q;
    if (h->wake) h->wake(h->wake_ud);
    while (!q->done)
      if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT) break;
    if (!q->done) h->pending = NULL; /* too late: the loop will not see it */
  }
  pthread_mutex_unlock(&h->mu);
}

void ls_http_serve(ls_http *h, ls_http_query_fn fn, void *ud) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  query *q = h->pending;
  if (q) {
    q->status = fn(ud, q->store, q->key, q->klen, &q->body);
    q->done = 1;
    h->pending = NULL;
    pthread_cond_broadcast(&h->cv);
  }
  pthread_mutex_unlock(&h->mu);
}

static enum MHD_Result state_page(ls_http *h, struct MHD_Connection *c, const char *store) {
  const char *key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key");
  if (!*store || strchr(store, '/')) return text(c, MHD_HTTP_NOT_FOUND, "use /state/<store>?key=K\n");
  if (!key) return text(c, MHD_HTTP_BAD_REQUEST, "missing ?key=K (the message key)\n");
  query q = {store, key, strlen(key), {0}, 0, 0};
  ls_buf_init(&q.body);
  ask_loop(h, &q);
  enum MHD_Result ok = !q.done ? text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop did not answer within 5 s\n")
                       : reply(c, (unsigned)q.status,
                               q.status == 200 ? "application/json" : "text/plain; charset=utf-8",
                               q.body.data ? q.body.data : "", q.body.len);
  ls_buf_free(&q.body);
  return ok;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                             const char *version, const char *upload, size_t *upload_len, void **state) {
  (void)version, (void)upload, (void)upload_len, (void)state;
  ls_http *h = cls;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
  if (strcmp(url, "/metrics") == 0) return metrics(h, c);
  if (strcmp(url, "/health") == 0)
    return ls_metrics_healthy(h->m, ls_mono_ms(), h->max_gap_ms)
               ? text(c, MHD_HTTP_OK, "ok\n")
               : text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the loop has not turned recently\n");
  if (strcmp(url, "/ready") == 0)
    return ls_metrics_ready(h->m) ? text(c, MHD_HTTP_OK, "ready\n")
                                  : text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: partitions not assigned or state not restored\n");
  if (strncmp(url, "/state/", 7) == 0) return state_page(h, c, url + 7);
  return text(c, MHD_HTTP_NOT_FOUND, "not found: /metrics, /health, /ready, /state/<store>?key=K\n");
}

/* "PORT", ":PORT" or "HOST:PORT" (IPv4 or a name) into sa; 0 or -1 with err. */
static int parse_addr(const char *addr, struct sockaddr_in *sa, char *err, size_t errlen) {
  char host[256] = "127.0.0.1";
  const char *colon = strrchr(addr, ':');
  const char *port = colon ? colon + 1 : addr;
  if (colon && colon > addr) snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
  char *end;
  long p = strtol(port, &end, 10);
  if (!*port || *end || p < 0 || p > 65535)
    return snprintf(err, errlen, "--http %s: bad port (HOST:PORT, :PORT or PORT)", addr), -1;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc || !res) return snprintf(err, errlen, "--http %s: %s", addr, gai_strerror(rc)), -1;
  *sa = *(struct sockaddr_in *)res->ai_addr;
  sa->sin_port = htons((uint16_t)p);
  freeaddrinfo(res);
  return 0;
}

ls_http *ls_http_start(const char *addr, ls_metrics *m, double max_gap_ms, void (*wake)(void *ud),
                       void *wake_ud, char *err, size_t errlen) {
  struct sockaddr_in sa;
  if (parse_addr(addr, &sa, err, errlen)) return NULL;
  ls_http *h = calloc(1, sizeof *h);
  if (!h) return snprintf(err, errlen, "out of memory"), NULL;
  h->m = m;
  h->max_gap_ms = max_gap_ms;
  h->wake = wake;
  h->wake_ud = wake_ud;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, serve, h,
                          MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                          (unsigned)32, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  if (!h->d) {
    snprintf(err, errlen, "--http %s: cannot listen: %s", addr, errno ? strerror(errno) : "failed");
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return NULL;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : ntohs(sa.sin_port);
  char ip[64];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  ls_info("http: serving /metrics, /health, /ready and /state on %s:%d", ip, h->port);
  return h;
}

int ls_http_port(const ls_http *h) { return h->port; }

void ls_http_stop(ls_http *h) {
  if (!h) return;
  MHD_stop_daemon(h->d); /* joins its thread: no query waits any more */
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  free(h);
}
