/* watch.c - file change notification for --watch (see watch.h). */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO)
#define SETTLE_MS 5 /* events closer than this are one change */

typedef struct watched {
  int wd;          /* inotify watch of the directory */
  char *name;      /* file name inside it */
  char *path;      /* as given */
} watched;

struct ls_watch {
  int fd, stop_pipe[2];
  watched *files;
  int n;
  pthread_t thread;
  int started;     /* the thread runs: stop joins it */
  pthread_mutex_t mu;
  int changed;
  double since_ms;
  char last[PATH_MAX];   /* written by the thread, under mu */
  char taken[PATH_MAX];  /* last, as of the last ls_watch_take */
  void (*wake)(void *ud);
  void *ud;
};

/* Splits path into its directory (made absolute by realpath when it exists)
 * and its file name. */
static int split_path(const char *path, char *dir, size_t dirlen, const char **name) {
  const char *slash = strrchr(path, '/');
  char raw[PATH_MAX];
  if (slash) snprintf(raw, sizeof raw, "%.*s", (int)(slash - path), path);
  else snprintf(raw, sizeof raw, ".");
  if (!raw[0]) snprintf(raw, sizeof raw, "/");
  *name = slash ? slash + 1 : path;
  if (!realpath(raw, dir)) return -1;
  (void)dirlen;
  return 0;
}

static int add_file(ls_watch *w, const char *path, char *err, size_t errlen) {
  char dir[PATH_MAX];
  const char *name;
  if (split_path(path, dir, sizeof dir, &name))
    return snprintf(err, errlen, "cannot watch %s: %s", path, strerror(errno)), -1;
  int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);
  if (wd < 0) return snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno)), -1;
  watched *f = &w->files[w->n++];
  f->wd = wd;
  f->name = strdup(name);
  f->path = strdup(path);
  return f->name && f->path ? 0 : (snprintf(err, errlen, "out of memory"), -1);
}

/* Kubernetes updates a mounted ConfigMap by renaming a new "..data" symlink
 * over the old one; the files are symlinks through it, so no event names them. */
#define ATOMIC_DATA_LINK "..data"

static const watched *match(const ls_watch *w, const struct inotify_event *ev) {
  if (!ev->len) return NULL;
  int swapped = strcmp(ev->name, ATOMIC_DATA_LINK) == 0;
  for (int i = 0; i < w->n; i++)
    if (w->files[i].wd == ev->wd && (swapped || strcmp(w->files[i].name, ev->name) == 0)) return &w->files[i];
  return NULL;
}

/* Reads the pending events; returns the watched file that changed, or NULL. */
static const watched *read_events(ls_watch *w) {
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  const watched *hit = NULL;
  ssize_t len = read(w->fd, buf, sizeof buf);
  for (char *p = buf; len > 0 && p < buf + len;) {
    const struct inotify_event *ev = (const struct inotify_event *)p;
    const watched *f = match(w, ev);
    if (f) hit = f;
    p += sizeof *ev + ev->len;
  }
  return hit;
}

static void signal_change(ls_watch *w, const watched *f, double first_ms) {
  pthread_mutex_lock(&w->mu);
  if (!w->changed) w->since_ms = first_ms;
  w->changed = 1;
  snprintf(w->last, sizeof w->last, "%s", f->path);
  pthread_mutex_unlock(&w->mu);
  if (w->wake) w->wake(w->ud);
}

static void *watch_thread(void *arg) {
  ls_watch *w = arg;
  struct pollfd pf[2] = {{w->fd, POLLIN, 0}, {w->stop_pipe[0], POLLIN, 0}};
  const watched *pending = NULL;
  double first_ms = 0;
  for (;;) {
    int rc = poll(pf, 2, pending ? SETTLE_MS : -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || (pf[1].revents & POLLIN)) break;
    if (rc == 0) { /* settled: no more events for SETTLE_MS */
      signal_change(w, pending, first_ms);
      pending = NULL;
      continue;
    }
    const watched *f = read_events(w);
    if (f && !pending) first_ms = ls_mono_ms();
    if (f) pending = f;
  }
  return NULL;
}

ls_watch *ls_watch_start(const char *const *files, int n, void (*wake)(void *ud), void *ud,
                         char *err, size_t errlen) {
  ls_watch *w = calloc(1, sizeof *w);
  if (!w) return snprintf(err, errlen, "out of memory"), NULL;
  w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  w->stop_pipe[0] = w->stop_pipe[1] = -1;
  w->files = calloc((size_t)n + 1, sizeof *w->files);
  w->wake = wake;
  w->ud = ud;
  pthread_mutex_init(&w->mu, NULL);
  if (w->fd < 0 || !w->files || pipe(w->stop_pipe)) {
    snprintf(err, errlen, "cannot start watching files: %s", strerror(errno));
    ls_watch_stop(w);
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (add_file(w, files[i], err, errlen)) {
      ls_watch_stop(w);
      return NULL;
    }
  if (pthread_create(&w->thread, NULL, watch_thread, w)) {
    snprintf(err, errlen, "cannot start the watcher thread");
    close(w->stop_pipe[1]);
    w->stop_pipe[1] = -1;
    ls_watch_stop(w);
    return NULL;
  }
  w->started = 1;
  return w;
}

void ls_watch_stop(ls_watch *w) {
  if (!w) return;
  if (w->stop_pipe[1] >= 0) {
    if (w->started && write(w->stop_pipe[1], "x", 1) == 1) pthread_join(w->thread, NULL);
    close(w->stop_pipe[1]);
  }
  if (w->stop_pipe[0] >= 0) close(w->stop_pipe[0]);
  if (w->fd >= 0) close(w->fd);
  for (int i = 0; w->files && i < w->n; i++) {
    free(w->files[i].name);
    free(w->files[i].path);
  }
  free(w->files);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

int ls_watch_take(ls_watch *w, double *since_ms) {
  if (!w) return 0;
  pthread_mutex_lock(&w->mu);
  int changed = w->changed;
  if (changed && since_ms) *since_ms = w->since_ms;
  if (changed) memcpy(w->taken, w->last, sizeof w->taken);
  w->changed = 0;
  pthread_mutex_unlock(&w->mu);
  return changed;
}

const char *ls_watch_last(ls_watch *w) {
  return w ? w->taken : "";
}
