/* watch.h - `luastream run --watch`: notices when the script or one of its
 * project modules changes on disk.
 *
 * A thread blocks on inotify, watching the directories that hold the files
 * (editors often save by writing a new file and renaming it over the old
 * one, which a watch on the file itself would miss). When a watched file is
 * closed after writing, or renamed into place, it sets a flag and calls the
 * wake callback, so the main loop leaves its consume call at once; app.c
 * then reloads at the next batch boundary. Events arriving within a few
 * milliseconds of each other count as one change. */
#ifndef LS_WATCH_H
#define LS_WATCH_H

#include <stddef.h>

typedef struct ls_watch ls_watch;

/* Watches files[0..n) (paths as given; they need not exist yet). Returns
 * NULL with a message in err. wake(ud) runs on the watcher thread. */
ls_watch *ls_watch_start(const char *const *files, int n, void (*wake)(void *ud), void *ud,
                         char *err, size_t errlen);
void ls_watch_stop(ls_watch *w);

/* 1 when a watched file changed since the last call (and clears it); the
 * wall-clock time (ms) of the first change is stored in *since_ms. */
int ls_watch_take(ls_watch *w, double *since_ms);

/* The path of the file whose change the last ls_watch_take reported. */
const char *ls_watch_last(ls_watch *w);

#endif
