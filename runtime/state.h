/* state.h - the per-key state store of stateful pipeline steps, on LMDB.
 *
 * Owns one LMDB environment per app (state_dir/<app name>). Each (store,
 * partition) pair is its own named database "<store>/<partition>", so a
 * revoked partition is dropped without touching the others; the database
 * "__marks" holds, per "<store>/<partition>", the changelog offset to replay
 * from, the input offset the stored state reflects and the partition's
 * event-time watermark (24 bytes; 16-byte marks of older versions read with
 * watermark -1).
 *
 * How it fits: the Lua side buffers a checkpoint's writes in memory. At a
 * checkpoint the runtime produces them to the changelog topics, flushes the
 * producer, commits the consumer offsets, then calls ls_state_commit(), which
 * writes every change and every mark in ONE write transaction (all or
 * nothing; the map grows on demand). On a partition assignment the runtime
 * reads the mark (ls_state_get_mark) and replays the changelog from there.
 *
 * Threads: a handle is for one thread only (the loop's). The environment is
 * opened with MDB_NOTLS and one read transaction is kept between calls
 * (reset/renewed), so reads cost no allocation. Several processes may share
 * one directory as long as they own disjoint partitions, as consumer-group
 * members do: LMDB serializes their writers, a map grown by another process
 * is adopted, a partition another process dropped is noticed before writing
 * to it, and reader slots left by killed processes are cleared at open.
 *
 * Expiry: an entry may carry an expiry time (ms since the epoch). Expired
 * entries are not hidden or deleted by the store: ls_state_scan_expired
 * lists them, in expiry order, for the caller to delete in a commit (and to
 * tombstone in the changelog). The expiry is kept beside the value, in the
 * same database, under keys beginning 0xFF 0xFF, which user keys may not
 * (an entry key of a stateful step begins with its message key's 2-byte
 * length, which cannot be 0xFFFF within LMDB's 511-byte key limit):
 *   FF FF 00                     8-byte LE count of entries with an expiry
 *                                (absent when 0)
 *   FF FF 01 <key>               the entry's expiry, 8 bytes big-endian
 *   FF FF 02 <expiry BE> <key>   the time index (empty value)
 * They sort after every user key; reads, scans and ls_state_list never show
 * them, and dropping a partition drops them with it. So expiry costs no
 * named database (the 4095 limit stands), nothing for entries without one,
 * and a database written by an older version reads as "no expiries".
 *
 * Limits: store names are 1..200 bytes without '/'; partitions 0..2^20-1;
 * keys 1..511 bytes (LMDB's key limit), not beginning 0xFF 0xFF; keys with
 * an expiry 1..500 bytes; at most 4095 (store, partition) databases per
 * environment. */
#ifndef LS_STATE_H
#define LS_STATE_H

#include <stddef.h>
#include <stdint.h>

#define LS_STATE_STORE_MAX 200         /* longest store name, in bytes */
#define LS_STATE_PARTITION_MAX 1048575 /* highest partition number */
#define LS_STATE_KEY_MAX 511           /* longest key (LMDB's default limit) */
#define LS_STATE_EXPIRING_KEY_MAX 500  /* longest key of an entry with an expiry */

typedef struct ls_state ls_state;

typedef struct ls_state_opts {
  size_t map_size;     /* initial map size in bytes (0 = 64 MiB) */
  size_t max_map_size; /* grow up to this on MDB_MAP_FULL (0 = no limit;
                          <= map_size: growth disabled) */
  int durable;         /* 1: fsync at every commit (default); 0: MDB_NOSYNC
                          (the changelog is the source of truth): a machine
                          crash may lose the last commits, whose changes are
                          then replayed from the changelog; a process crash
                          loses nothing */
} ls_state_opts;

/* Fills o with the defaults (64 MiB, no growth limit, durable). Passing NULL
 * to ls_state_open means the same; a zeroed struct means durable = 0. */
void ls_state_opts_init(ls_state_opts *o);

/* Opens or creates the environment in dir (mkdir -p it). On failure returns
 * NULL and writes e.g. "state: cannot open /x/y: Permission denied" to err.
 * Reopening keeps a map that grew earlier (the larger of map_size and the
 * stored size is used). */
ls_state *ls_state_open(const char *dir, const ls_state_opts *o, char *err, size_t errlen);
/* Closes the environment (syncing it first when not durable). NULL is fine. */
void ls_state_close(ls_state *s);

/* Point read of committed data: 1 found, 0 not found, -1 error
 * (ls_state_error). *val stays valid until the next ls_state_* call. */
int ls_state_get(ls_state *s, const char *store, int32_t partition, const void *key, size_t klen,
                 const void **val, size_t *vlen);

/* ls_state_get that also reports the entry's expiry (0: none) in
 * *expire_ms when found (expire_ms may be NULL). */
int ls_state_get_ex(ls_state *s, const char *store, int32_t partition, const void *key, size_t klen,
                    const void **val, size_t *vlen, int64_t *expire_ms);

/* The expiry of one entry: 1 found (*expire_ms 0 when it has none), 0 no
 * such entry (*expire_ms 0), -1 error. */
int ls_state_get_expiry(ls_state *s, const char *store, int32_t partition, const void *key,
                        size_t klen, int64_t *expire_ms);

/* Visits, in byte order, all entries of one partition whose key starts with
 * prefix (plen 0: all). Returns 0, or -1 on error; fn returning non-zero
 * stops the scan (still 0). Pointers passed to fn are valid during the call
 * only, and fn must not call other ls_state_* functions on s. */
typedef int (*ls_state_visit_fn)(void *ud, const void *key, size_t klen, const void *val,
                                 size_t vlen);
int ls_state_scan(ls_state *s, const char *store, int32_t partition, const void *prefix,
                  size_t plen, ls_state_visit_fn fn, void *ud);

/* ls_state_scan that also passes each entry's expiry (0: none), e.g. for
 * loading a message key's entries into a cache. Same rules. */
typedef int (*ls_state_visit_ex_fn)(void *ud, const void *key, size_t klen, const void *val,
                                    size_t vlen, int64_t expire_ms);
int ls_state_scan_ex(ls_state *s, const char *store, int32_t partition, const void *prefix,
                     size_t plen, ls_state_visit_ex_fn fn, void *ud);

/* Visits the entries of one partition whose expiry is <= now_ms, earliest
 * expiry first (ties in key order), at most max of them: fn gets the key and
 * the entry's value. The store deletes nothing: the caller deletes them with
 * a commit (puts with val NULL), tombstoning them in the changelog first.
 * Cost: proportional to the entries visited, not to the partition's size.
 * Returns the number visited (fn's stopping one included), or -1 on error;
 * same rules for fn as ls_state_scan. */
int ls_state_scan_expired(ls_state *s, const char *store, int32_t partition, int64_t now_ms,
                          size_t max, ls_state_visit_fn fn, void *ud);

typedef struct ls_state_put {
  const char *store;
  int32_t partition;
  const void *key;
  size_t klen;
  const void *val;
  size_t vlen;       /* val == NULL: delete the key (deleting a missing key is fine) */
  int64_t expire_ms; /* ms since the epoch when the entry expires; 0: never
                        (a put without one removes an earlier expiry); ignored
                        for a delete; negative is an error */
} ls_state_put;

typedef struct ls_state_mark { /* progress stored with the data, per store and partition */
  const char *store;
  int32_t partition;
  int64_t changelog_offset; /* next changelog offset to replay from */
  int64_t input_offset;     /* the committed input offset this state reflects */
  int64_t watermark;        /* event-time high-water mark of the partition (ms),
                               -1: none. NOTE a zeroed field stores 0, not -1 */
} ls_state_mark;

/* One write transaction: all puts/deletes (applied in order) and all marks,
 * or nothing. On MDB_MAP_FULL the map grows (doubling, up to max_map_size)
 * and the whole transaction is retried; if it cannot grow, returns -1 with
 * "state: map full (64 MiB) and growth disabled" (or "... limit reached")
 * and nothing written. A mark also creates its partition's (empty) database,
 * so ls_state_list shows it. A put keeps the entry's expiry records and time
 * index in step (overwrite, delete, a put without expiry). Errors: a key
 * beginning 0xFF 0xFF, a negative expire_ms, a key with an expiry longer
 * than LS_STATE_EXPIRING_KEY_MAX. Returns 0 or -1 (err and ls_state_error). */
int ls_state_commit(ls_state *s, const ls_state_put *puts, size_t n, const ls_state_mark *marks,
                    size_t nmarks, char *err, size_t errlen);

/* The stored mark: 1 found, 0 none (both offsets set to -1), -1 error. */
int ls_state_get_mark(ls_state *s, const char *store, int32_t partition, int64_t *changelog_offset,
                      int64_t *input_offset);
/* The same with the watermark (-1 when none, or for a mark written before
 * marks had one); any out-pointer may be NULL. */
int ls_state_get_mark_ex(ls_state *s, const char *store, int32_t partition,
                         int64_t *changelog_offset, int64_t *input_offset, int64_t *watermark);

/* Deletes one partition's database and its mark in one transaction. A
 * partition with nothing stored is fine. Returns 0 or -1. */
int ls_state_drop_partition(ls_state *s, const char *store, int32_t partition, char *err,
                            size_t errlen);

/* Calls fn for every (store, partition) present, sorted by store name then
 * partition number: its key count (entries only, expiry records excluded), the bytes of the database pages it
 * occupies, and its mark (-1/-1 when none). fn may call other ls_state_*
 * functions; returning non-zero stops. Returns 0 or -1. */
typedef int (*ls_state_list_fn)(void *ud, const char *store, int32_t partition, size_t keys,
                                size_t bytes, int64_t changelog_offset, int64_t input_offset);
int ls_state_list(ls_state *s, ls_state_list_fn fn, void *ud);

const char *ls_state_error(ls_state *s); /* last error text ("" when none) */
size_t ls_state_map_size(ls_state *s);   /* current map size in bytes */

/* ---- entry keys ------------------------------------------------------------
 * The LMDB key of one entry of a stateful step's store (built by
 * luastream.state, read back by checkpoint.c and `luastream state`): a 2-byte
 * big-endian length of the message key, the message key, then the state key.
 * So a message key's entries are adjacent, and one prefix scan finds them. */
#define LS_STATE_MSGKEY_MAX 65535 /* longest message key, in bytes */

/* Writes the prefix of message key mkey (its 2-byte length, then its bytes)
 * to out, which has room for mklen + 2 bytes. Returns the bytes written, or
 * 0 when mklen > LS_STATE_MSGKEY_MAX (nothing written). */
size_t ls_state_entry_prefix(void *out, const void *mkey, size_t mklen);

/* Splits an entry key into its message key and its state key (pointers into
 * key). Returns 0, or -1 when key is shorter than its length prefix says. */
int ls_state_entry_split(const void *key, size_t klen, const void **mkey, size_t *mklen,
                         const void **skey, size_t *sklen);

#endif
