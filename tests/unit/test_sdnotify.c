/* Unit tests for sdnotify.c: the datagrams a supervisor's NOTIFY_SOCKET gets,
 * on a path socket and an abstract one, the watchdog rate limit, and the
 * environment that turns notifications or pings off. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "sdnotify.h"

/* A datagram socket bound to path ('@' first: abstract); returns its fd. */
static int listen_at(const char *path) {
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  memcpy(sa.sun_path, path, n);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  else len++;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0) {
    perror("bind");
    exit(1);
  }
  return fd;
}

/* The next datagram, or "" when none is waiting. */
static const char *next_msg(int fd) {
  static char buf[1024];
  ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

static void test_parse_usec(void) {
  uint64_t v = 0;
  CHECK(ls_sdnotify_parse_usec("30000000", &v) == 0 && v == 30000000u);
  CHECK(ls_sdnotify_parse_usec("1", &v) == 0 && v == 1);
  CHECK(ls_sdnotify_parse_usec("0", &v) == -1);
  CHECK(ls_sdnotify_parse_usec("", &v) == -1);
  CHECK(ls_sdnotify_parse_usec("-5", &v) == -1);
  CHECK(ls_sdnotify_parse_usec("12s", &v) == -1);
  CHECK(ls_sdnotify_parse_usec("99999999999999999999999", &v) == -1);
  CHECK(ls_sdnotify_parse_usec(NULL, &v) == -1);
}

static void test_no_socket(void) {
  unsetenv("NOTIFY_SOCKET");
  CHECK(ls_sdnotify_open("app") == NULL);
  /* every call takes NULL */
  ls_sdnotify_ready(NULL);
  CHECK(ls_sdnotify_tick(NULL, 0, 1, 1) == 0);
  ls_sdnotify_stopping(NULL);
  ls_sdnotify_close(NULL);
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  CHECK(ls_sdnotify_open("app") == NULL);
  setenv("NOTIFY_SOCKET", "/", 1);
  CHECK(ls_sdnotify_open("app") == NULL);
}

/* The whole life on one socket: ready, pings at half the interval, stopping. */
static void test_life(const char *where) {
  int fd = listen_at(where);
  setenv("NOTIFY_SOCKET", where, 1);
  setenv("WATCHDOG_USEC", "2000000", 1); /* 2 s: a ping every 1000 ms at most */
  unsetenv("WATCHDOG_PID");
  ls_sdnotify *n = ls_sdnotify_open("crash-detector");
  CHECK(n != NULL);
  CHECK(ls_sdnotify_watchdog_usec(n) == 2000000u);
  ls_sdnotify_ready(n);
  CHECK_STR(next_msg(fd), "READY=1\nSTATUS=crash-detector: running\n");
  CHECK(ls_sdnotify_tick(n, 5000, 0, 0) == 1); /* the first turn pings */
  CHECK_STR(next_msg(fd), "WATCHDOG=1\nSTATUS=crash-detector: 0 messages in, 0 records out\n");
  CHECK(ls_sdnotify_tick(n, 5001, 10, 2) == 0);
  CHECK(ls_sdnotify_tick(n, 5999, 10, 2) == 0);
  CHECK_STR(next_msg(fd), "");
  CHECK(ls_sdnotify_tick(n, 6000, 1500, 7) == 1);
  CHECK_STR(next_msg(fd), "WATCHDOG=1\nSTATUS=crash-detector: 1500 messages in, 7 records out\n");
  CHECK(ls_sdnotify_tick(n, 6999.5, 1500, 7) == 0);
  CHECK(ls_sdnotify_tick(n, 9000, 1600, 8) == 1); /* after a stall: at once */
  CHECK_STR(next_msg(fd), "WATCHDOG=1\nSTATUS=crash-detector: 1600 messages in, 8 records out\n");
  ls_sdnotify_stopping(n);
  CHECK_STR(next_msg(fd), "STOPPING=1\nSTATUS=crash-detector: stopping\n");
  CHECK(ls_sdnotify_send(n, "STATUS=custom") == 0);
  CHECK_STR(next_msg(fd), "STATUS=custom");
  ls_sdnotify_close(n);
  close(fd);
}

/* WATCHDOG_PID naming another process, or no WATCHDOG_USEC: notifications
 * but no pings. A bad WATCHDOG_USEC: the same, with a warning. */
static void test_watchdog_off(const char *where) {
  int fd = listen_at(where);
  setenv("NOTIFY_SOCKET", where, 1);
  const char *cases[][2] = {{"1000000", "1"}, {NULL, NULL}, {"soon", NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i][0]) setenv("WATCHDOG_USEC", cases[i][0], 1);
    else unsetenv("WATCHDOG_USEC");
    if (cases[i][1]) setenv("WATCHDOG_PID", cases[i][1], 1); /* pid 1 is not this test */
    else unsetenv("WATCHDOG_PID");
    ls_sdnotify *n = ls_sdnotify_open("x");
    CHECK(n != NULL && ls_sdnotify_watchdog_usec(n) == 0);
    CHECK(ls_sdnotify_tick(n, 1000, 0, 0) == 0);
    ls_sdnotify_ready(n);
    CHECK_STR(next_msg(fd), "READY=1\nSTATUS=x: running\n");
    CHECK_STR(next_msg(fd), "");
    ls_sdnotify_close(n);
  }
  /* WATCHDOG_PID naming this process: pings. */
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  setenv("WATCHDOG_USEC", "1000000", 1);
  setenv("WATCHDOG_PID", pid, 1);
  ls_sdnotify *n = ls_sdnotify_open("x");
  CHECK(ls_sdnotify_watchdog_usec(n) == 1000000u);
  CHECK(ls_sdnotify_tick(n, 1000, 3, 4) == 1);
  CHECK_STR(next_msg(fd), "WATCHDOG=1\nSTATUS=x: 3 messages in, 4 records out\n");
  ls_sdnotify_close(n);
  unsetenv("WATCHDOG_PID");
  close(fd);
}

/* A supervisor that went away: sends fail, nothing else happens. */
static void test_gone(const char *where) {
  setenv("NOTIFY_SOCKET", where, 1);
  setenv("WATCHDOG_USEC", "1000", 1);
  ls_sdnotify *n = ls_sdnotify_open("x");
  CHECK(n != NULL);
  CHECK(ls_sdnotify_send(n, "READY=1") == -1);
  CHECK(ls_sdnotify_send(n, "READY=1") == -1); /* warned once */
  CHECK(ls_sdnotify_tick(n, 0, 0, 0) == 0);
  ls_sdnotify_close(n);
}

int main(void) {
  char dir[] = "/tmp/ls-sdnotify-XXXXXX";
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
  char path[256], abstract[64], gone[256];
  snprintf(path, sizeof path, "%s/notify", dir);
  snprintf(abstract, sizeof abstract, "@ls-sdnotify-test-%d", (int)getpid());
  snprintf(gone, sizeof gone, "%s/nobody", dir);
  test_parse_usec();
  test_no_socket();
  test_life(path);
  unlink(path);
  test_life(abstract);
  test_watchdog_off(path);
  unlink(path);
  test_gone(gone);
  rmdir(dir);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  CHECK_DONE();
}
