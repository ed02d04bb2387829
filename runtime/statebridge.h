/* statebridge.h - per-key state between LMDB and the pipeline's Lua state.
 *
 * What it owns: the crossing between C and luastream.state, and nothing
 * else: core.state_load (Lua reads a message key's committed entries from
 * LMDB on a cache miss), rt.take_state_changes (the entries a checkpoint
 * writes), and dropping Lua's caches (a partition revoked, a transaction
 * aborted). Every call into Lua is a protected call: a failure comes back as
 * an error code with its text, never as a longjmp through C frames.
 * checkpoint.c drives it; it knows nothing of Kafka.
 *
 * LMDB keys are the ones luastream.state builds: a 2-byte big-endian length
 * of the message key, the message key, then the state key. Values are
 * MessagePack. */
#ifndef LS_STATEBRIDGE_H
#define LS_STATEBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buf.h"
#include "spec.h"
#include "state.h"

/* One change handed over by rt.take_state_changes; pointers are valid
 * during the callback only. val NULL: a delete. */
typedef struct ls_change {
  int store;               /* 0-based index into spec.stores */
  int32_t partition;
  const char *key;
  size_t klen;
  const char *val;
  size_t vlen;
  int64_t expire_ms;       /* when the entry expires (ms since the epoch), 0: never */
} ls_change;

typedef int (*ls_change_fn)(void *ud, const ls_change *c, char *err, size_t errlen);

/* Installs core.state_load in L, reading from s with the stores of spec:
 * core.state_load(store, partition, key) -> { state_key = value } and, when
 * some entries expire, { state_key = expire_ms }. 0, or -1 with err. */
int ls_bridge_install(lua_State *L, ls_state *s, const ls_spec *spec, char *err, size_t errlen);

/* Calls rt.take_state_changes() (rt at rt_ref) and fn for each change, in
 * order: the changes of every store (store < 0), or of spec.stores[store]
 * only. Returns the number of changes, or -1 with err (a Lua error, a bad
 * change, or fn's failure). */
int ls_bridge_take(lua_State *L, int rt_ref, const ls_spec *spec, int store, ls_change_fn fn, void *ud,
                   char *err, size_t errlen);

/* The committed state of message key key[0..klen) in store/partition p as a
 * JSON object {state_key: value} appended to json (read through
 * core.state_load, so as of the last checkpoint). Returns the number of
 * entries (0: none, nothing appended), or -1 with err. */
int ls_bridge_key_json(lua_State *L, const char *store, int32_t p, const char *key, size_t klen,
                       ls_buf *json, char *err, size_t errlen);

/* Drops Lua's cached state of partition p (rt.forget_partition). 0, or -1 with err. */
int ls_bridge_forget(lua_State *L, int rt_ref, int32_t p, char *err, size_t errlen);
/* Undoes the state writes of the last pipeline call (luastream.state's
 * undo_batch). 0, or -1 with err. */
int ls_bridge_undo_batch(lua_State *L, char *err, size_t errlen);
/* Drops every cached entry (luastream.state's forget_all). 0, or -1 with err. */
int ls_bridge_forget_all(lua_State *L, char *err, size_t errlen);

#endif
