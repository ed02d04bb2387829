/* crash_shim.c - SIGKILL at chosen points inside `luastream run`, for
 * test_crash_consistency.py (built by the test with cc, loaded with LD_PRELOAD).
 *
 * LS_CRASH_AT selects where, LS_CRASH_AFTER how many passes over such a point
 * go by before the kill (so each run dies at another one):
 *   lmdb      inside an LMDB write transaction's commit: pwrite, writev and
 *             fdatasync called by liblmdb (dirty pages, the meta page, their
 *             syncs), before or after the call (LS_CRASH_AFTER odd: after);
 *   changelog while a checkpoint produces its changes: rd_kafka_header_add of
 *             the changelog's input-offset header (some records of the
 *             checkpoint queued, the rest not), or rd_kafka_flush waiting for
 *             their acknowledgements.
 * Before the kill it writes one line, "crash-shim: SIGKILL in <point>", to
 * stderr with write(2). With LS_CRASH_AT unset it only passes calls through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

enum { NONE, LMDB, CHANGELOG };
static int mode = NONE;
static long after = -1; /* passes left before the kill */

__attribute__((constructor)) static void init(void) {
  const char *at = getenv("LS_CRASH_AT"), *n = getenv("LS_CRASH_AFTER");
  if (at && strcmp(at, "lmdb") == 0) mode = LMDB;
  else if (at && strcmp(at, "changelog") == 0) mode = CHANGELOG;
  after = n ? atol(n) : 0;
}

static void die(const char *point) {
  static const char head[] = "crash-shim: SIGKILL in ";
  if (write(STDERR_FILENO, head, sizeof head - 1) < 0) {}
  if (write(STDERR_FILENO, point, strlen(point)) < 0) {}
  if (write(STDERR_FILENO, "\n", 1) < 0) {}
  kill(getpid(), SIGKILL);
  for (;;) pause();
}

/* One pass over a point of the selected mode: 1 when it is the one to die at. */
static int due(int m) {
  if (mode != m || after < 0) return 0;
  return after-- == 0;
}

static int from_lmdb(const void *caller) {
  Dl_info info;
  return dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "liblmdb");
}

/* LMDB's writes: the kill comes before the call when the count left is even,
 * after it when odd. */
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  static ssize_t (*real)(int, const void *, size_t, off_t);
  if (!real) real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  if (mode == LMDB && from_lmdb(__builtin_return_address(0))) {
    int before = after % 2 == 0;
    if (before && due(LMDB)) die("lmdb pwrite (before)");
    ssize_t r = real(fd, buf, n, off);
    if (!before && due(LMDB)) die("lmdb pwrite (after)");
    return r;
  }
  return real(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  static ssize_t (*real)(int, const struct iovec *, int);
  if (!real) real = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
  if (mode == LMDB && from_lmdb(__builtin_return_address(0))) {
    int before = after % 2 == 0;
    if (before && due(LMDB)) die("lmdb writev (before)");
    ssize_t r = real(fd, iov, cnt);
    if (!before && due(LMDB)) die("lmdb writev (after)");
    return r;
  }
  return real(fd, iov, cnt);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (mode == LMDB && from_lmdb(__builtin_return_address(0))) {
    int before = after % 2 == 0;
    if (before && due(LMDB)) die("lmdb fdatasync (before)");
    int r = real(fd);
    if (!before && due(LMDB)) die("lmdb fdatasync (after)");
    return r;
  }
  return real(fd);
}

rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name, ssize_t name_size,
                                        const void *value, ssize_t value_size) {
  static rd_kafka_resp_err_t (*real)(rd_kafka_headers_t *, const char *, ssize_t, const void *, ssize_t);
  if (!real)
    real = (rd_kafka_resp_err_t(*)(rd_kafka_headers_t *, const char *, ssize_t, const void *, ssize_t))dlsym(
        RTLD_NEXT, "rd_kafka_header_add");
  if (mode == CHANGELOG && name && strcmp(name, "luastream.input.offset") == 0 && due(CHANGELOG))
    die("changelog produce");
  return real(hdrs, name, name_size, value, value_size);
}

rd_kafka_resp_err_t rd_kafka_flush(rd_kafka_t *rk, int timeout_ms) {
  static rd_kafka_resp_err_t (*real)(rd_kafka_t *, int);
  if (!real) real = (rd_kafka_resp_err_t(*)(rd_kafka_t *, int))dlsym(RTLD_NEXT, "rd_kafka_flush");
  if (mode == CHANGELOG && rd_kafka_outq_len(rk) > 0 && due(CHANGELOG)) die("checkpoint flush (changelog records in flight)");
  return real(rk, timeout_ms);
}
