/* statedir.c - the identity of an app's state directory (see statedir.h). */
#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ID_MAX 256

struct ls_statedir {
  char *path;
  int lock_fd;
  char instance[ID_MAX];
  char cluster[ID_MAX];
};

int ls_mkdir_p(const char *dir, int mode) {
  char *p = strdup(dir);
  if (!p) return -1;
  int rc = 0;
  for (char *c = p + 1; *c && rc == 0; c++) {
    if (*c != '/') continue;
    *c = '\0';
    if (mkdir(p, (mode_t)mode) && errno != EEXIST) rc = -1;
    *c = '/';
  }
  if (rc == 0 && mkdir(p, (mode_t)mode) && errno != EEXIST) rc = -1;
  struct stat st;
  if (rc == 0 && stat(p, &st)) rc = -1;
  if (rc == 0 && !S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    rc = -1;
  }
  int e = errno;
  free(p);
  errno = e;
  return rc;
}

static void file_path(const ls_statedir *d, const char *name, char *out, size_t len) {
  snprintf(out, len, "%s/%s", d->path, name);
}

/* Reads the first line of dir/name into out (without the newline). 1 read,
 * 0 absent, -1 error. */
static int read_line(const ls_statedir *d, const char *name, char *out, size_t len) {
  char path[4096];
  file_path(d, name, path, sizeof path);
  FILE *f = fopen(path, "r");
  if (!f) return errno == ENOENT ? 0 : -1;
  int ok = fgets(out, (int)len, f) != NULL;
  fclose(f);
  if (!ok) return 0;
  out[strcspn(out, "\r\n")] = 0;
  return out[0] ? 1 : 0;
}

/* Writes text and a newline to dir/name through a temporary file and rename. */
static int write_line(const ls_statedir *d, const char *name, const char *text, char *err,
                      size_t errlen) {
  char path[4096], tmp[4200];
  file_path(d, name, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  int ok = f && fprintf(f, "%s\n", text) > 0;
  ok = f ? (fflush(f) == 0 && fsync(fileno(f)) == 0 && ok) : 0;
  if (f) ok = (fclose(f) == 0) && ok;
  else if (fd >= 0) close(fd);
  if (!ok || rename(tmp, path) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Takes the directory's lock; on contention names the holder's pid. */
static ls_statedir_rc take_lock(ls_statedir *d, char *err, size_t errlen) {
  char path[4096];
  file_path(d, "LOCK", path, sizeof path);
  d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return LS_STATEDIR_IO;
  }
  if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int locked = errno == EWOULDBLOCK;
    char pid[32] = "";
    ssize_t n = pread(d->lock_fd, pid, sizeof pid - 1, 0);
    pid[n > 0 ? n : 0] = 0;
    pid[strcspn(pid, "\r\n")] = 0;
    snprintf(err, errlen, "state directory %s is in use by another instance%s%s%s; give each "
             "instance its own state_dir (--state-dir)", d->path, pid[0] ? " (pid " : "", pid,
             pid[0] ? ")" : "");
    return locked ? LS_STATEDIR_LOCKED : LS_STATEDIR_IO;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(d->lock_fd, 0) != 0 || pwrite(d->lock_fd, pid, (size_t)n, 0) != n) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return LS_STATEDIR_IO;
  }
  return LS_STATEDIR_OK;
}

ls_statedir *ls_statedir_open(const char *dir, ls_statedir_rc *rc, char *err, size_t errlen) {
  ls_statedir *d = calloc(1, sizeof *d);
  if (d) d->path = strdup(dir);
  if (!d || !d->path) {
    free(d);
    *rc = LS_STATEDIR_NOMEM;
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  d->lock_fd = -1;
  if (ls_mkdir_p(dir, 0700)) {
    *rc = LS_STATEDIR_IO;
    snprintf(err, errlen, "cannot create the state directory %s: %s", dir, strerror(errno));
  } else {
    *rc = take_lock(d, err, errlen);
  }
  if (*rc != LS_STATEDIR_OK) {
    ls_statedir_close(d);
    return NULL;
  }
  return d;
}

void ls_statedir_close(ls_statedir *d) {
  if (!d) return;
  if (d->lock_fd >= 0) close(d->lock_fd); /* releases the flock */
  free(d->path);
  free(d);
}

const char *ls_statedir_path(const ls_statedir *d) { return d->path; }

/* 16 random bytes as 32 hex digits. */
static int make_id(char *out, size_t len, char *err, size_t errlen) {
  unsigned char b[16];
  FILE *f = fopen("/dev/urandom", "rb");
  int ok = f && fread(b, 1, sizeof b, f) == sizeof b;
  if (f) fclose(f);
  if (!ok) return snprintf(err, errlen, "cannot read /dev/urandom: %s", strerror(errno)), -1;
  for (size_t i = 0; i < sizeof b && 2 * i + 2 < len; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
  return 0;
}

const char *ls_statedir_instance_id(ls_statedir *d, char *err, size_t errlen) {
  if (d->instance[0]) return d->instance;
  int r = read_line(d, "instance-id", d->instance, sizeof d->instance);
  if (r == 1) return d->instance;
  if (r < 0) {
    snprintf(err, errlen, "cannot read %s/instance-id: %s", d->path, strerror(errno));
    return NULL;
  }
  if (make_id(d->instance, sizeof d->instance, err, errlen) ||
      write_line(d, "instance-id", d->instance, err, errlen)) {
    d->instance[0] = 0;
    return NULL;
  }
  return d->instance;
}

int ls_statedir_cluster_changed(ls_statedir *d, const char *cluster_id, const char **previous,
                                char *err, size_t errlen) {
  int r = read_line(d, "cluster-id", d->cluster, sizeof d->cluster);
  if (r < 0) {
    snprintf(err, errlen, "cannot read %s/cluster-id: %s", d->path, strerror(errno));
    return -1;
  }
  *previous = d->cluster;
  return r == 1 && strcmp(d->cluster, cluster_id) != 0;
}

int ls_statedir_set_cluster(ls_statedir *d, const char *cluster_id, char *err, size_t errlen) {
  return write_line(d, "cluster-id", cluster_id, err, errlen);
}

/* Every file this directory may hold: LMDB's and this file's own. */
static const char *const FILES[] = {"data.mdb", "lock.mdb", "LOCK", "instance-id", "cluster-id"};

void ls_statedir_remove(const char *state_dir, const char *name) {
  char path[4096];
  for (size_t i = 0; name && i < sizeof FILES / sizeof FILES[0]; i++) {
    snprintf(path, sizeof path, "%s/%s/%s", state_dir, name, FILES[i]);
    unlink(path);
  }
  if (name) {
    snprintf(path, sizeof path, "%s/%s", state_dir, name);
    rmdir(path);
  }
  rmdir(state_dir);
}

int ls_statedir_wipe_store(ls_statedir *d, char *err, size_t errlen) {
  static const char *const files[] = {"data.mdb", "lock.mdb"};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    file_path(d, files[i], path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
      return snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno)), -1;
  }
  return 0;
}
