/* sdnotify.c - systemd's notification protocol by hand (see sdnotify.h).
 *
 * The protocol: one datagram per notification on the AF_UNIX socket named by
 * NOTIFY_SOCKET, a path, or an abstract name written with a leading '@'; the
 * payload is newline-separated VARIABLE=value lines. The watchdog interval is
 * WATCHDOG_USEC; WATCHDOG_PID, when set, names the process it is meant for.
 * Datagrams go out with MSG_DONTWAIT: a full receive queue drops a ping
 * instead of blocking the loop. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

struct ls_sdnotify {
  int fd;
  struct sockaddr_un addr;
  socklen_t addr_len;
  uint64_t watchdog_usec; /* 0: no watchdog */
  double last_ping_ms;    /* < 0: none yet */
  char *name;
  int warned;             /* a failed send was logged */
};

/* A decimal number > 0 (microseconds, a pid). */
static int parse_positive(const char *s, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v == 0) return -1;
  *out = (uint64_t)v;
  return 0;
}

int ls_sdnotify_parse_usec(const char *s, uint64_t *out) { return parse_positive(s, out); }

/* WATCHDOG_PID unset, or this process. */
static int watchdog_is_ours(void) {
  const char *pid = getenv("WATCHDOG_PID");
  uint64_t v;
  if (!pid || !*pid) return 1;
  return parse_positive(pid, &v) == 0 && v == (uint64_t)getpid();
}

/* The socket address of NOTIFY_SOCKET; -1 when it names none. */
static int parse_address(const char *path, struct sockaddr_un *sa, socklen_t *len) {
  size_t n = strlen(path);
  if (n < 2 || (path[0] != '/' && path[0] != '@') || n > sizeof sa->sun_path - 1) return -1;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, n);
  if (path[0] == '@') sa->sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
  return 0;
}

ls_sdnotify *ls_sdnotify_open(const char *name) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return NULL;
  ls_sdnotify *n = ls_xcalloc(1, sizeof *n);
  if (parse_address(path, &n->addr, &n->addr_len)) {
    ls_warn("NOTIFY_SOCKET '%s' is not a socket path or an abstract name (@name): not notifying", path);
    free(n);
    return NULL;
  }
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (n->fd < 0) {
    ls_warn("NOTIFY_SOCKET: cannot create a socket: %s; not notifying", strerror(errno));
    free(n);
    return NULL;
  }
  const char *usec = getenv("WATCHDOG_USEC");
  if (usec && *usec && ls_sdnotify_parse_usec(usec, &n->watchdog_usec))
    ls_warn("WATCHDOG_USEC '%s' is not a positive number of microseconds: no watchdog pings", usec);
  if (!watchdog_is_ours()) n->watchdog_usec = 0;
  n->last_ping_ms = -1;
  n->name = ls_xstrdup(name ? name : "luastream");
  return n;
}

uint64_t ls_sdnotify_watchdog_usec(const ls_sdnotify *n) { return n ? n->watchdog_usec : 0; }

int ls_sdnotify_send(ls_sdnotify *n, const char *text) {
  if (!n) return 0;
  ssize_t rc;
  do {
    rc = sendto(n->fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&n->addr,
                n->addr_len);
  } while (rc < 0 && errno == EINTR);
  if (rc >= 0) return 0;
  if (!n->warned) ls_warn("NOTIFY_SOCKET: cannot notify the supervisor: %s", strerror(errno));
  n->warned = 1;
  return -1;
}

void ls_sdnotify_ready(ls_sdnotify *n) {
  if (!n) return;
  char msg[512];
  snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s: running\n", n->name);
  ls_sdnotify_send(n, msg);
}

int ls_sdnotify_tick(ls_sdnotify *n, double now_ms, long in_total, long out_total) {
  if (!n || !n->watchdog_usec) return 0;
  if (n->last_ping_ms >= 0 && now_ms - n->last_ping_ms < (double)n->watchdog_usec / 2000.0) return 0;
  n->last_ping_ms = now_ms;
  char msg[512];
  snprintf(msg, sizeof msg, "WATCHDOG=1\nSTATUS=%s: %ld messages in, %ld records out\n", n->name, in_total,
           out_total);
  return ls_sdnotify_send(n, msg) == 0;
}

void ls_sdnotify_stopping(ls_sdnotify *n) {
  if (!n) return;
  char msg[512];
  snprintf(msg, sizeof msg, "STOPPING=1\nSTATUS=%s: stopping\n", n->name);
  ls_sdnotify_send(n, msg);
}

void ls_sdnotify_close(ls_sdnotify *n) {
  if (!n) return;
  close(n->fd);
  free(n->name);
  free(n);
}
