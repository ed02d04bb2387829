/* changelog.h - the changelog topics behind state stores: produce and replay.
 *
 * What it owns: one topic per store, <app>__<store>__changelog, with one
 * partition per input partition: creating it (compacted, with the input's
 * partition count, where the cluster takes CreateTopics), producing a
 * checkpoint's changes to it (each record carries the header
 * luastream.input.offset: the input partition's next offset at that
 * checkpoint; luastream.expire.ms: when the entry expires, if it does; a
 * delete is a null value), the offset up to which each
 * partition's records are acknowledged (the mark stored with the state), and
 * replaying it into LMDB when a partition is assigned. checkpoint.c decides
 * when; this file knows how. */
#ifndef LS_CHANGELOG_H
#define LS_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>

#include "kafka.h"
#include "spec.h"
#include "state.h"

#define LS_CHANGELOG_MAX_PARTITIONS 4096

typedef struct ls_changelog ls_changelog;

/* Sets up the changelogs of spec's stores (creating missing topics when the
 * cluster allows, warning when one is not compacted). NULL with err on failure. */
ls_changelog *ls_changelog_open(ls_kafka *k, const ls_spec *spec, ls_state *state, char *err,
                                size_t errlen);
void ls_changelog_close(ls_changelog *c);

/* The topic of store s, e.g. "crash-detector__default__changelog". */
const char *ls_changelog_name(const ls_changelog *c, int store);

/* Queues one change of store/partition p (val NULL: a delete; expire_ms > 0:
 * when the entry expires, in the header luastream.expire.ms). offsets[t] is
 * the next input offset of the store's topic t (spec.stores[].topics) in
 * partition p: the first goes in luastream.input.offset, and for a store
 * serving several inputs all of them in luastream.input.offsets
 * ("topic=offset,..."). 0, or -1 with err (naming the topic; a missing
 * partition says how many are needed). */
int ls_changelog_produce(ls_changelog *c, int store, int32_t p, const void *key, size_t klen,
                         const void *val, size_t vlen, const int64_t *offsets, int64_t expire_ms,
                         char *err, size_t errlen);

/* The next changelog offset of store/p acknowledged so far, -1 when none. */
int64_t ls_changelog_acked(const ls_changelog *c, int store, int32_t p);
/* Forgets it (the partition was dropped). */
void ls_changelog_forget(ls_changelog *c, int store, int32_t p);

/* Replays store s's changelog for partitions parts[0..n) into LMDB, from
 * each partition's mark (a changelog that ends before the mark means the
 * local state is stale: dropped and rebuilt from the start), applying only
 * records covered by the committed offsets: committed[t * n + i] is the
 * committed offset of the store's topic t in partition parts[i]. A record
 * applies when each input offset it carries is at most that. 0, or -1. */
int ls_changelog_restore(ls_changelog *c, int s, const int32_t *parts, int n,
                         const int64_t *committed, char *err, size_t errlen);

#endif
