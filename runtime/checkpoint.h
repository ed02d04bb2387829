/* checkpoint.h - the state side of a checkpoint, in order (docs/internals.md).
 *
 * The state of stateful pipeline steps lives in Lua (luastream.state) between
 * checkpoints. A checkpoint, driven by app.c, is:
 *   1. ls_ckpt_produce: take the dirty entries from Lua (statebridge.c) and
 *      produce them to the changelog topics (changelog.c), each record
 *      carrying the input offset it reflects;
 *   2. app.c flushes the producer;  3. app.c commits the consumer offsets;
 *   4. ls_ckpt_store: write the same entries and the changelog/input offsets
 *      (marks) to LMDB (state.c) in one write transaction.
 * On assignment, ls_ckpt_restore has the partitions' changelogs replayed from
 * their mark to the end into LMDB, applying only records whose input offset is
 * covered by the group's committed offset. Entries taken in step 1 stay
 * pending until step 4 succeeds, so a postponed checkpoint loses nothing.
 * This file owns that order and the pending entries; the Lua crossing, the
 * topics and LMDB each have their own file. */
#ifndef LS_CHECKPOINT_H
#define LS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "kafka.h"
#include "offsets.h"
#include "spec.h"

typedef struct ls_ckpt ls_ckpt;

/* Partitions a store can have here (0..LS_MAX_PARTITIONS-1). */
#define LS_MAX_PARTITIONS 4096

/* Input topics of one store whose offsets a checkpoint keeps on the stack
 * (a join's sides); a store serving more gets them on the heap. */
#define LS_MAX_STORE_TOPICS 8

/* NULL with err[0] == 0 when the app has no state stores. ephemeral: no
 * changelogs at all (--from-beginning: state lives in a temporary LMDB
 * only, starts empty and is neither restored nor backed up). */
ls_ckpt *ls_ckpt_open(lua_State *L, int rt_ref, const ls_spec *spec, ls_kafka *k, int ephemeral,
                      char *err, size_t errlen);
void ls_ckpt_close(ls_ckpt *c);

/* Live reload: the pipeline now runs in L (rt at rt_ref). Only valid when
 * nothing is pending (ls_ckpt_pending == 0): the new state reads LMDB.
 * 0, or -1 with err (core.state_load could not be installed in L). */
int ls_ckpt_rebind(ls_ckpt *c, lua_State *L, int rt_ref, char *err, size_t errlen);
/* Whether partition p of store s is assigned to this instance. */
int ls_ckpt_owns(const ls_ckpt *c, int s, int32_t p);
/* Entries of store s in the local store (all its partitions), or -1. */
int64_t ls_ckpt_store_entries(ls_ckpt *c, int s);
/* Entries in the local store (all stores and partitions), or -1. */
int64_t ls_ckpt_entries(ls_ckpt *c);
/* The LMDB store behind c (for reading committed state). */
struct ls_state *ls_ckpt_state(ls_ckpt *c);
/* Changes taken from Lua but not yet in LMDB. */
size_t ls_ckpt_pending(const ls_ckpt *c);

/* The changelog topic of store i, e.g. "crash-detector__default__changelog". */
const char *ls_ckpt_changelog(const ls_ckpt *c, int store);

int ls_ckpt_produce(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen);
int ls_ckpt_store(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen);

/* Brings the state of partitions parts[0..n) of input topic `topic` (index)
 * up to date, replaying their changelogs all at once. */
int ls_ckpt_restore(ls_ckpt *c, int topic, const int32_t *parts, int n, char *err, size_t errlen);
/* For source store s (an app:table's, spec.stores[s].source), partition p:
 * the records of its topic to replay after ls_ckpt_restore, [*from, *to): from
 * the local copy's mark (0 without one, or when it is stale) to the group's
 * committed offset (the consumer takes over from there). from == to: none.
 * The caller runs them through the pipeline (they only set the table) and
 * records *to as the topic's offset, so the next checkpoint marks the copy.
 * 0, or -1 with err. */
int ls_ckpt_source_range(ls_ckpt *c, int s, int32_t p, int64_t *from, int64_t *to, char *err,
                         size_t errlen);
/* After the caller ran a table's records [from, to) through the pipeline:
 * the changes of source store s (and of no other) go to LMDB at once, with
 * the marks to[i] for partitions parts[0..n), in one transaction. Nothing
 * else is committed with them: the table's topic is committed up to to[i]
 * already, so they belong to the committed state. 0, or -1 with err. */
int ls_ckpt_store_table(ls_ckpt *c, int s, const int32_t *parts, const int64_t *to, int n, char *err,
                        size_t errlen);
/* An aborted transaction (exactly-once): drops the pending entries and every
 * cached entry, so state is read again from LMDB, which never saw them. */
void ls_ckpt_discard(ls_ckpt *c);
/* Drops the Lua cache of partition p. */
void ls_ckpt_forget(ls_ckpt *c, int32_t p);
/* Partition p of input topic `topic` was revoked. clean: its last checkpoint
 * committed; if not, its unsaved changes and its local copy are dropped, so
 * the next owner (maybe this process again) rebuilds it from the changelog. */
void ls_ckpt_revoke(ls_ckpt *c, int topic, int32_t p, int clean);

#endif
