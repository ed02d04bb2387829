/* statedir.h - the identity of an app's state directory (state_dir/<app name>).
 *
 * What it owns: the directory itself (created 0700, since state holds the
 * devices' readings), a lock that gives it to one running instance, the
 * instance id kept there, and the id of the Kafka cluster its state was built
 * against. It knows nothing of LMDB, Lua or the loop: app.c opens it before
 * connecting, uses the instance id for the transactional id, and asks after
 * connecting whether the cluster is still the same one (if not, the local
 * state describes data that is gone and is rebuilt from the changelog).
 *
 * Files in the directory:
 *   LOCK          flock()ed by the instance that uses the directory; holds its pid
 *   instance-id   32 hex digits, made on first use, kept across restarts
 *   cluster-id    the Kafka cluster id the state belongs to
 * LMDB's data.mdb and lock.mdb live beside them (state.c). */
#ifndef LS_STATEDIR_H
#define LS_STATEDIR_H

#include <stddef.h>

typedef struct ls_statedir ls_statedir;

typedef enum {
  LS_STATEDIR_OK = 0,
  LS_STATEDIR_IO,     /* cannot create, open or write (err says which file and why) */
  LS_STATEDIR_LOCKED, /* another running process holds the directory */
  LS_STATEDIR_NOMEM
} ls_statedir_rc;

/* Creates dir (mkdir -p, mode 0700) and locks it. On failure returns NULL and
 * sets *rc and err, e.g. "state directory state/app is in use by another
 * instance (pid 4711)". The lock goes away with the process, SIGKILL included. */
ls_statedir *ls_statedir_open(const char *dir, ls_statedir_rc *rc, char *err, size_t errlen);
/* Releases the lock. NULL is fine. */
void ls_statedir_close(ls_statedir *d);

/* The instance id stored in the directory, made (from /dev/urandom) and
 * stored on first use. NULL with err on I/O failure. */
const char *ls_statedir_instance_id(ls_statedir *d, char *err, size_t errlen);

/* Compares cluster_id with the one stored. Returns 1 when another cluster's id
 * is stored (*previous then holds it, valid until the next call), 0 when it
 * is the same or none is stored, -1 on I/O failure. */
int ls_statedir_cluster_changed(ls_statedir *d, const char *cluster_id, const char **previous,
                                char *err, size_t errlen);
/* Stores cluster_id (atomically: write then rename). 0 or -1 with err. */
int ls_statedir_set_cluster(ls_statedir *d, const char *cluster_id, char *err, size_t errlen);

/* Removes LMDB's files (data.mdb, lock.mdb) from the directory: the whole
 * local state, while the lock is held. 0 or -1 with err. */
int ls_statedir_wipe_store(ls_statedir *d, char *err, size_t errlen);

const char *ls_statedir_path(const ls_statedir *d);

/* Removes a temporary state directory state_dir/name (the files above and
 * LMDB's) and state_dir itself when empty. Failures are ignored. */
void ls_statedir_remove(const char *state_dir, const char *name);

/* mkdir -p with the given mode for the directories it creates; 0, or -1
 * with errno set (ENOTDIR when dir exists and is not a directory). */
int ls_mkdir_p(const char *dir, int mode);

#endif
