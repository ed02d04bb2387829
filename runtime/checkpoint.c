/* checkpoint.c - the state side of a checkpoint, in order (see checkpoint.h).
 *
 * The order and nothing else: the changes come from Lua through the bridge
 * (statebridge.c), go to the changelogs (changelog.c) and stay pending until
 * LMDB has them (state.c); recovery asks the group for its committed offsets
 * and has the changelog replayed up to them. */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "buf.h"
#include "changelog.h"
#include "log.h"
#include "lua_vm.h"
#include "mem.h"
#include "state.h"
#include "statebridge.h"

typedef struct pending {
  int store;
  int32_t part;
  char *key;
  size_t klen;
  char *val;   /* NULL: delete */
  size_t vlen;
  int64_t expire; /* ms since the epoch, 0: never */
} pending;

struct ls_ckpt {
  lua_State *L;
  int rt_ref;
  const ls_spec *spec;
  ls_kafka *k;
  ls_state *state;
  ls_changelog *cl;          /* NULL when ephemeral */
  uint8_t **owned;           /* per store, per partition: assigned here (expiry sweeps) */
  int64_t **marked;          /* per table store, per partition: the offset its last mark holds (-1: none) */
  pending *pend;
  size_t npend, cap;
  int ephemeral;             /* no changelogs */
};

static void *dup_bytes(const void *p, size_t n) {
  void *d = malloc(n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

/* ---- open / close --------------------------------------------------------- */

static int open_state(ls_ckpt *c, char *err, size_t errlen) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", c->spec->state_dir, c->spec->name);
  ls_state_opts o;
  ls_state_opts_init(&o);
  c->state = ls_state_open(dir, &o, err, errlen);
  return c->state ? 0 : -1;
}

/* ---- core.state_expired: windows closed on idleness (luastream.window) ------ */

/* Records of (partition, message key) found expired, gathered in C before
 * anything is pushed, so no Lua error can leave an LMDB scan open:
 * 4-byte partition, 2-byte key length, key bytes. */
typedef struct expired_ctx {
  ls_buf out;
  int32_t part;
  int oom;
} expired_ctx;

static int expired_one(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  (void)val, (void)vlen;
  expired_ctx *x = ud;
  const unsigned char *k = key;
  size_t n = klen >= 2 ? ((size_t)k[0] << 8 | k[1]) : klen;
  if (n + 2 > klen) return 0; /* not an entry key of a stateful step */
  unsigned char head[6] = {(unsigned char)(x->part >> 24), (unsigned char)(x->part >> 16),
                           (unsigned char)(x->part >> 8), (unsigned char)x->part, k[0], k[1]};
  if (ls_buf_put(&x->out, head, sizeof head) || ls_buf_put(&x->out, k + 2, n)) return x->oom = 1;
  return 0;
}

typedef struct expired_scan {
  ls_ckpt *c;
  const char *store;
  int64_t now;
  size_t max;
  expired_ctx *x;
  int rc;
  int32_t only; /* one partition, or -1 for all */
} expired_scan;

static int expired_part(expired_scan *e, int32_t p) {
  e->x->part = p;
  if (ls_state_scan_expired(e->c->state, e->store, p, e->now, e->max, expired_one, e->x) < 0) return e->rc = -1;
  return e->x->oom ? (e->rc = -1) : 0;
}

static int expired_listed(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                          int64_t changelog_offset, int64_t input_offset) {
  (void)keys, (void)bytes, (void)changelog_offset, (void)input_offset;
  expired_scan *e = ud;
  if (e->only >= 0 && partition != e->only) return 0;
  return strcmp(store, e->store) == 0 ? expired_part(e, partition) : 0;
}

/* core.state_expired(store, now_ms, max[, partition]) -> { p1, key1, p2, key2,
 * ... }: the message keys with an entry whose expiry is <= now_ms in LMDB, in
 * the partitions this instance owns (every partition when ephemeral), or in
 * `partition` only, at most max per partition. */
static int state_expired(lua_State *L) {
  ls_ckpt *c = lua_touserdata(L, lua_upvalueindex(1));
  const char *store = luaL_checkstring(L, 1);
  int64_t now = (int64_t)luaL_checknumber(L, 2);
  size_t max = (size_t)luaL_optinteger(L, 3, 10000);
  int32_t only = (int32_t)luaL_optinteger(L, 4, -1);
  int s = -1;
  for (int i = 0; i < c->spec->nstores; i++)
    if (strcmp(c->spec->stores[i].name, store) == 0) s = i;
  if (s < 0) return luaL_error(L, "unknown state store %s", store);
  expired_ctx x = {{0}, 0, 0};
  ls_buf_init(&x.out);
  expired_scan e = {c, store, now, max, &x, 0, only};
  if (c->ephemeral) {
    if (ls_state_list(c->state, expired_listed, &e)) e.rc = -1;
  } else {
    for (int32_t p = 0; p < LS_CHANGELOG_MAX_PARTITIONS && e.rc == 0; p++)
      if (c->owned[s][p] && (only < 0 || p == only)) expired_part(&e, p);
  }
  if (e.rc) {
    ls_buf_free(&x.out);
    if (x.oom) return luaL_error(L, "out of memory");
    return luaL_error(L, "state %s: %s", store, ls_state_error(c->state));
  }
  lua_newtable(L);
  int n = 0;
  for (size_t off = 0; off + 6 <= x.out.len;) {
    const unsigned char *h = (const unsigned char *)x.out.data + off;
    int32_t p = (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
    size_t klen = (size_t)h[4] << 8 | h[5];
    lua_pushinteger(L, p);
    lua_rawseti(L, -2, ++n);
    lua_pushlstring(L, (const char *)h + 6, klen);
    lua_rawseti(L, -2, ++n);
    off += 6 + klen;
  }
  ls_buf_free(&x.out);
  return 1;
}

/* Protected: require("luastream.core").state_expired = closure over c. */
static int install_expired(lua_State *L) {
  void *c = lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.core");
  lua_call(L, 1, 1);
  lua_pushlightuserdata(L, c);
  lua_pushcclosure(L, state_expired, 1);
  lua_setfield(L, -2, "state_expired");
  return 0;
}

static int install(ls_ckpt *c, char *err, size_t errlen) {
  if (ls_bridge_install(c->L, c->state, c->spec, err, errlen)) return -1;
  lua_pushcfunction(c->L, install_expired);
  lua_pushlightuserdata(c->L, c);
  if (lua_pcall(c->L, 1, 0, 0) == 0) return 0;
  ls_vm_pop_error(c->L, err, errlen);
  return -1;
}

ls_ckpt *ls_ckpt_open(lua_State *L, int rt_ref, const ls_spec *spec, ls_kafka *k, int ephemeral,
                      char *err, size_t errlen) {
  err[0] = 0;
  if (spec->nstores == 0) return NULL;
  ls_ckpt *c = calloc(1, sizeof *c);
  if (!c) return snprintf(err, errlen, "out of memory"), NULL;
  c->L = L;
  c->rt_ref = rt_ref;
  c->spec = spec;
  c->k = k;
  c->ephemeral = ephemeral;
  c->owned = ls_xcalloc((size_t)spec->nstores, sizeof *c->owned);
  for (int i = 0; i < spec->nstores; i++) c->owned[i] = ls_xcalloc(LS_CHANGELOG_MAX_PARTITIONS, 1);
  c->marked = ls_xcalloc((size_t)spec->nstores, sizeof *c->marked);
  for (int i = 0; i < spec->nstores; i++) {
    if (!spec->stores[i].source) continue;
    c->marked[i] = ls_xmalloc(LS_CHANGELOG_MAX_PARTITIONS * sizeof **c->marked);
    for (int p = 0; p < LS_CHANGELOG_MAX_PARTITIONS; p++) c->marked[i][p] = -1;
  }
  if (open_state(c, err, errlen) ||
      (!ephemeral && !(c->cl = ls_changelog_open(k, spec, c->state, err, errlen))) ||
      install(c, err, errlen)) {
    ls_ckpt_close(c);
    return NULL;
  }
  return c;
}

int ls_ckpt_rebind(ls_ckpt *c, lua_State *L, int rt_ref, char *err, size_t errlen) {
  if (!c) return 0;
  c->L = L;
  c->rt_ref = rt_ref;
  return install(c, err, errlen);
}

size_t ls_ckpt_pending(const ls_ckpt *c) { return c ? c->npend : 0; }

ls_state *ls_ckpt_state(ls_ckpt *c) { return c->state; }

static int count_entries(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                         int64_t changelog_offset, int64_t input_offset) {
  (void)store, (void)partition, (void)bytes, (void)changelog_offset, (void)input_offset;
  *(int64_t *)ud += (int64_t)keys;
  return 0;
}

typedef struct store_count {
  const char *store;
  int64_t n;
} store_count;

static int count_store(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                       int64_t changelog_offset, int64_t input_offset) {
  (void)partition, (void)bytes, (void)changelog_offset, (void)input_offset;
  store_count *x = ud;
  if (strcmp(store, x->store) == 0) x->n += (int64_t)keys;
  return 0;
}

int ls_ckpt_owns(const ls_ckpt *c, int s, int32_t p) {
  return c && s >= 0 && s < c->spec->nstores && p >= 0 && p < LS_CHANGELOG_MAX_PARTITIONS && c->owned[s][p];
}

int64_t ls_ckpt_store_entries(ls_ckpt *c, int s) {
  if (!c || s < 0 || s >= c->spec->nstores) return -1;
  store_count x = {c->spec->stores[s].name, 0};
  return ls_state_list(c->state, count_store, &x) ? -1 : x.n;
}

int64_t ls_ckpt_entries(ls_ckpt *c) {
  int64_t n = 0;
  if (!c || ls_state_list(c->state, count_entries, &n)) return -1;
  return n;
}

static void free_pending(ls_ckpt *c) {
  for (size_t i = 0; i < c->npend; i++) {
    free(c->pend[i].key);
    free(c->pend[i].val);
  }
  c->npend = 0;
}

void ls_ckpt_close(ls_ckpt *c) {
  if (!c) return;
  free_pending(c);
  free(c->pend);
  for (int i = 0; c->owned && i < c->spec->nstores; i++) free(c->owned[i]);
  free(c->owned);
  for (int i = 0; c->marked && i < c->spec->nstores; i++) free(c->marked[i]);
  free(c->marked);
  ls_changelog_close(c->cl);
  ls_state_close(c->state);
  free(c);
}

const char *ls_ckpt_changelog(const ls_ckpt *c, int store) {
  return c->cl ? ls_changelog_name(c->cl, store) : NULL;
}

/* ---- step 1: take the changes, produce them to the changelogs -------------- */

static pending *add_pending(ls_ckpt *c) {
  if (c->npend == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    pending *p = realloc(c->pend, cap * sizeof *p);
    if (!p) return NULL;
    c->pend = p;
    c->cap = cap;
  }
  return &c->pend[c->npend++];
}

/* A change from Lua: copied into pending. */
static int take_one(void *ud, const ls_change *ch, char *err, size_t errlen) {
  ls_ckpt *c = ud;
  pending *p = add_pending(c);
  if (!p) return snprintf(err, errlen, "out of memory"), -1;
  *p = (pending){ch->store, ch->partition, dup_bytes(ch->key, ch->klen), ch->klen,
                 ch->val ? dup_bytes(ch->val, ch->vlen) : NULL, ch->vlen, ch->expire_ms};
  if (!p->key || (ch->val && !p->val)) {
    free(p->key), free(p->val);
    c->npend--;
    return snprintf(err, errlen, "out of memory"), -1;
  }
  return 0;
}

/* ---- expiry: entries past their time are deleted at a checkpoint ----------- */

/* Most expired entries deleted per partition and checkpoint (the rest go at
 * the next one), so a checkpoint's pause stays bounded. */
#define SWEEP_MAX 10000

typedef struct sweep_ctx {
  ls_ckpt *c;
  int store;
  int32_t part;
  int oom;
} sweep_ctx;

static int sweep_one(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  (void)val, (void)vlen;
  sweep_ctx *x = ud;
  pending *p = add_pending(x->c);
  if (p) *p = (pending){x->store, x->part, dup_bytes(key, klen), klen, NULL, 0, 0};
  if (!p || !p->key) {
    if (p) x->c->npend--;
    return x->oom = 1;
  }
  return 0;
}

static int sweep(ls_ckpt *c, int s, int32_t p, int64_t now, char *err, size_t errlen) {
  if (!c->spec->stores[s].sweep) return 0;
  sweep_ctx x = {c, s, p, 0};
  if (ls_state_scan_expired(c->state, c->spec->stores[s].name, p, now, SWEEP_MAX, sweep_one, &x) < 0)
    return snprintf(err, errlen, "state %s[%d]: %s", c->spec->stores[s].name, (int)p,
                    ls_state_error(c->state)), -1;
  return x.oom ? (snprintf(err, errlen, "out of memory"), -1) : 0;
}

typedef struct parts_ctx {
  ls_ckpt *c;
  int64_t now;
  char *err;
  size_t errlen;
  int rc;
} parts_ctx;

static int sweep_listed(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                        int64_t changelog_offset, int64_t input_offset) {
  (void)keys, (void)bytes, (void)changelog_offset, (void)input_offset;
  parts_ctx *x = ud;
  for (int s = 0; s < x->c->spec->nstores; s++)
    if (strcmp(x->c->spec->stores[s].name, store) == 0)
      x->rc = sweep(x->c, s, partition, x->now, x->err, x->errlen);
  return x->rc;
}

/* Deletes (as pending changes: changelog tombstones, then LMDB) the entries
 * whose expiry has passed by the pipeline's clock, in the partitions this
 * instance owns (all partitions without changelogs: the test driver). They
 * come before the checkpoint's own changes, so a key set again since wins. */
static int sweep_expired(ls_ckpt *c, char *err, size_t errlen) {
  int64_t now = (int64_t)ls_vm_now_ms(c->L);
  if (c->ephemeral) {
    parts_ctx x = {c, now, err, errlen, 0};
    if (ls_state_list(c->state, sweep_listed, &x))
      return snprintf(err, errlen, "state: %s", ls_state_error(c->state)), -1;
    return x.rc;
  }
  for (int s = 0; s < c->spec->nstores; s++)
    for (int32_t p = 0; p < LS_CHANGELOG_MAX_PARTITIONS; p++)
      if (c->owned[s][p] && sweep(c, s, p, now, err, errlen)) return -1;
  return 0;
}

/* ---- step 1 (continued) ------------------------------------------------------ */

int ls_ckpt_produce(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen) {
  size_t first = c->npend;
  /* Sweep only what LMDB has as of the last completed checkpoint: with changes
     still pending (a postponed checkpoint), a key set again since would be
     deleted after its new value. */
  if (first == 0 && sweep_expired(c, err, errlen)) return -1;
  if (ls_bridge_take(c->L, c->rt_ref, c->spec, -1, take_one, c, err, errlen) < 0) return -1;
  if (c->ephemeral) return 0;
  /* each change carries the offsets of every topic its store serves */
  int most = 1;
  for (int k = 0; k < c->spec->nstores; k++)
    if (c->spec->stores[k].ntopics > most) most = c->spec->stores[k].ntopics;
  int64_t few[LS_MAX_STORE_TOPICS], *in = most <= LS_MAX_STORE_TOPICS ? few : ls_xcalloc((size_t)most, sizeof *in);
  int rc = 0;
  for (size_t i = first; i < c->npend && rc == 0; i++) {
    pending *p = &c->pend[i];
    const ls_store_spec *ss = &c->spec->stores[p->store];
    if (ss->source) continue; /* its topic already holds the change */
    for (int t = 0; t < ss->ntopics; t++) in[t] = ls_offsets_get(offsets, ss->topics[t], p->part);
    rc = ls_changelog_produce(c->cl, p->store, p->part, p->key, p->klen, p->val, p->vlen, in, p->expire, err,
                              errlen);
  }
  if (in != few) free(in);
  return rc ? -1 : 0;
}

/* ---- step 4: one LMDB transaction ----------------------------------------- */

/* Adds a mark for (store, part) unless there is one already. */
static void add_mark(ls_ckpt *c, ls_state_mark *marks, size_t *n, int s, int32_t part,
                     const ls_offsets *offsets) {
  for (size_t i = 0; i < *n; i++)
    if (marks[i].partition == part && strcmp(marks[i].store, c->spec->stores[s].name) == 0) return;
  int64_t input = ls_offsets_get(offsets, c->spec->stores[s].topic, part); /* the first topic's */
  /* a source store's changelog is its first topic: the mark is where its next record is */
  int64_t changelog = c->spec->stores[s].source ? input : ls_changelog_acked(c->cl, s, part);
  if (changelog < 0) return;
  ls_state_mark *m = &marks[(*n)++];
  memset(m, 0, sizeof *m);
  m->store = c->spec->stores[s].name;
  m->partition = part;
  m->changelog_offset = changelog;
  m->input_offset = input;
  m->watermark = -1; /* none yet: windows will keep theirs here */
}

/* Has partition p of table store s (a store whose changelog is its topic),
 * held here, moved on since its last mark? Each such partition gets a mark,
 * changed or not: records that change nothing (a dead letter, a tombstone
 * for an absent key) move the topic's offset too, and a mark left behind the
 * commit would have them read, and handled, again at the next assignment. */
static int table_moved(const ls_ckpt *c, int s, int32_t p, const ls_offsets *offsets) {
  const ls_store_spec *ss = &c->spec->stores[s];
  if (!c->cl || !ss->source || !c->owned[s][p]) return 0;
  int64_t at = ls_offsets_get(offsets, ss->topic, p);
  return at >= 0 && at != c->marked[s][p];
}

static size_t tables_moved(const ls_ckpt *c, const ls_offsets *offsets) {
  size_t n = 0;
  for (int s = 0; s < c->spec->nstores; s++)
    for (int32_t p = 0; c->spec->stores[s].source && p < LS_CHANGELOG_MAX_PARTITIONS; p++)
      n += (size_t)table_moved(c, s, p, offsets);
  return n;
}

static void add_table_marks(ls_ckpt *c, ls_state_mark *marks, size_t *n, const ls_offsets *offsets) {
  for (int s = 0; s < c->spec->nstores; s++)
    for (int32_t p = 0; c->spec->stores[s].source && p < LS_CHANGELOG_MAX_PARTITIONS; p++)
      if (table_moved(c, s, p, offsets)) add_mark(c, marks, n, s, p, offsets);
}

/* After a checkpoint's transaction: the marks it moved are where their topics are. */
static void tables_marked(ls_ckpt *c, const ls_offsets *offsets) {
  for (int s = 0; s < c->spec->nstores; s++)
    for (int32_t p = 0; c->spec->stores[s].source && p < LS_CHANGELOG_MAX_PARTITIONS; p++)
      if (table_moved(c, s, p, offsets)) c->marked[s][p] = ls_offsets_get(offsets, c->spec->stores[s].topic, p);
}

int ls_ckpt_store(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen) {
  size_t nsource = tables_moved(c, offsets);
  if (c->npend == 0 && nsource == 0) return 0;
  ls_state_put *puts = calloc(c->npend + 1, sizeof *puts);
  ls_state_mark *marks = calloc(c->npend + nsource, sizeof *marks);
  size_t nmarks = 0;
  if (!puts || !marks) {
    free(puts);
    free(marks);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  for (size_t i = 0; i < c->npend; i++) {
    pending *p = &c->pend[i];
    puts[i] = (ls_state_put){c->spec->stores[p->store].name, p->part, p->key, p->klen, p->val, p->vlen,
                             p->val ? p->expire : 0};
    int same = i > 0 && p[-1].store == p->store && p[-1].part == p->part;
    if (!same && c->cl) add_mark(c, marks, &nmarks, p->store, p->part, offsets);
  }
  add_table_marks(c, marks, &nmarks, offsets);
  int rc = ls_state_commit(c->state, puts, c->npend, marks, nmarks, err, errlen);
  free(puts);
  free(marks);
  if (rc == 0) {
    free_pending(c);
    tables_marked(c, offsets);
  }
  return rc;
}

/* ---- recovery ------------------------------------------------------------- */

/* Does store s serve input topic? */
static int serves(const ls_store_spec *ss, int topic) {
  for (int t = 0; t < ss->ntopics; t++)
    if (ss->topics[t] == topic) return 1;
  return 0;
}

/* The group's committed offsets of store s's topics for partitions
 * parts[0..n): committed[t * n + i]. */
static int read_committed(ls_ckpt *c, const ls_store_spec *ss, const int32_t *parts, int n,
                          int64_t *committed, char *err, size_t errlen) {
  for (int t = 0; t < ss->ntopics; t++) {
    const char *topic = c->spec->inputs[ss->topics[t]].name;
    for (int i = 0; i < n; i++) {
      if (parts[i] < 0 || parts[i] >= LS_CHANGELOG_MAX_PARTITIONS)
        return snprintf(err, errlen, "partition %d out of range", (int)parts[i]), -1;
      committed[t * n + i] = ls_kafka_committed(c->k, topic, parts[i], 10000);
      if (committed[t * n + i] == -2)
        return snprintf(err, errlen, "cannot read the committed offset of %s[%d]", topic, (int)parts[i]), -1;
    }
  }
  return 0;
}

/* A store is restored once, when the partitions of its first topic are
 * assigned (the range assignor hands partition p of every input over
 * together); its other topics' committed offsets come along. */
/* Partitions parts[0..n) of topic are this instance's (expiry sweeps run there). */
static void own(ls_ckpt *c, int topic, const int32_t *parts, int n) {
  for (int s = 0; s < c->spec->nstores; s++)
    for (int i = 0; serves(&c->spec->stores[s], topic) && i < n; i++)
      if (parts[i] >= 0 && parts[i] < LS_CHANGELOG_MAX_PARTITIONS) c->owned[s][parts[i]] = 1;
}

int ls_ckpt_restore(ls_ckpt *c, int topic, const int32_t *parts, int n, char *err, size_t errlen) {
  if (c->ephemeral) return own(c, topic, parts, n), 0;
  int rc = 0, restored = 0;
  for (int s = 0; rc == 0 && s < c->spec->nstores; s++) {
    const ls_store_spec *ss = &c->spec->stores[s];
    if (ss->topic != topic) continue;
    restored = 1;
    if (ss->source) continue; /* the caller replays its topic (ls_ckpt_source_range) */
    int64_t *committed = ls_xcalloc((size_t)ss->ntopics * (size_t)n + 1, sizeof *committed);
    rc = read_committed(c, ss, parts, n, committed, err, errlen);
    if (rc == 0) rc = ls_changelog_restore(c->cl, s, parts, n, committed, err, errlen);
    free(committed);
  }
  for (int i = 0; rc == 0 && restored && i < n; i++) ls_ckpt_forget(c, parts[i]);
  if (rc == 0) own(c, topic, parts, n); /* not before: an unrestored copy may be stale */
  return rc;
}

/* Where the local copy of source store s's partition p ends: its mark, or 0
 * with none. A mark past the topic's end belongs to other data (a new or reset
 * cluster, a re-created topic): that copy is dropped and rebuilt from 0. */
static int source_mark(ls_ckpt *c, int s, int32_t p, int64_t *from, char *err, size_t errlen) {
  const char *store = c->spec->stores[s].name, *topic = c->spec->inputs[c->spec->stores[s].topic].name;
  int64_t lo, hi;
  if (ls_state_get_mark_ex(c->state, store, p, from, NULL, NULL) <= 0 || *from <= 0) return *from = 0, 0;
  if (ls_kafka_watermarks(c->k, topic, p, &lo, &hi, err, errlen)) return -1;
  if (*from <= hi) return 0;
  ls_warn("state %s[%d]: the local copy of the table was saved up to offset %lld, but %s[%d] ends at "
          "%lld: it belongs to other data (a new or reset cluster?); dropping it and reading the topic "
          "again", store, (int)p, (long long)*from, topic, (int)p, (long long)hi);
  *from = 0;
  return ls_state_drop_partition(c->state, store, p, err, errlen);
}

int ls_ckpt_source_range(ls_ckpt *c, int s, int32_t p, int64_t *from, int64_t *to, char *err,
                         size_t errlen) {
  const char *topic = c->spec->inputs[c->spec->stores[s].topic].name;
  *from = *to = 0;
  if (c->ephemeral) return 0;
  *to = ls_kafka_committed(c->k, topic, p, 10000);
  if (*to == -2) return snprintf(err, errlen, "cannot read the committed offset of %s[%d]", topic, (int)p), -1;
  if (*to < 0) return *to = 0, 0; /* nothing committed: the consumer reads it from offset_reset's end */
  if (source_mark(c, s, p, from, err, errlen)) return -1;
  if (*from > *to) *from = *to; /* the group went back: the consumer reads it again */
  return 0;
}

int ls_ckpt_store_table(ls_ckpt *c, int s, const int32_t *parts, const int64_t *to, int n, char *err,
                        size_t errlen) {
  size_t first = c->npend;
  if (ls_bridge_take(c->L, c->rt_ref, c->spec, s, take_one, c, err, errlen) < 0) return -1;
  size_t np = c->npend - first;
  ls_state_put *puts = calloc(np + 1, sizeof *puts);
  ls_state_mark *marks = calloc((size_t)n + 1, sizeof *marks);
  int rc = puts && marks ? 0 : (snprintf(err, errlen, "out of memory"), -1);
  for (size_t i = 0; rc == 0 && i < np; i++) {
    pending *p = &c->pend[first + i];
    puts[i] = (ls_state_put){c->spec->stores[s].name, p->part, p->key, p->klen, p->val, p->vlen,
                             p->val ? p->expire : 0};
  }
  for (int i = 0; rc == 0 && i < n; i++)
    marks[i] = (ls_state_mark){c->spec->stores[s].name, parts[i], to[i], to[i], -1};
  if (rc == 0) rc = ls_state_commit(c->state, puts, np, marks, (size_t)n, err, errlen);
  free(puts);
  free(marks);
  for (size_t i = first; i < c->npend; i++) { /* in LMDB now, or lost with the error */
    free(c->pend[i].key);
    free(c->pend[i].val);
  }
  c->npend = first;
  return rc;
}

void ls_ckpt_forget(ls_ckpt *c, int32_t p) {
  char err[512];
  if (ls_bridge_forget(c->L, c->rt_ref, p, err, sizeof err)) ls_warn("forgetting partition %d: %s", (int)p, err);
}

void ls_ckpt_revoke(ls_ckpt *c, int topic, int32_t p, int clean) {
  ls_ckpt_forget(c, p);
  for (int s = 0; s < c->spec->nstores; s++)
    if (serves(&c->spec->stores[s], topic) && p >= 0 && p < LS_CHANGELOG_MAX_PARTITIONS) {
      c->owned[s][p] = 0;
      if (c->marked[s]) c->marked[s][p] = -1;
    }
  if (clean) return;
  size_t keep = 0;
  for (size_t i = 0; i < c->npend; i++) {
    pending *e = &c->pend[i];
    if (e->part == p && serves(&c->spec->stores[e->store], topic)) {
      free(e->key);
      free(e->val);
    } else {
      c->pend[keep++] = *e;
    }
  }
  c->npend = keep;
  for (int s = 0; s < c->spec->nstores; s++) {
    char err[512];
    if (!serves(&c->spec->stores[s], topic)) continue;
    if (ls_state_drop_partition(c->state, c->spec->stores[s].name, p, err, sizeof err))
      ls_warn("%s", err);
    if (c->cl) ls_changelog_forget(c->cl, s, p);
  }
}

void ls_ckpt_discard(ls_ckpt *c) {
  char err[512];
  free_pending(c);
  if (ls_bridge_forget_all(c->L, err, sizeof err)) ls_warn("discarding state: %s", err);
}
