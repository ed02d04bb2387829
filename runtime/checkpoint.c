/* checkpoint.c - per-key state across checkpoints (see checkpoint.h).
 *
 * LMDB keys are the ones luastream.state builds: a 2-byte big-endian length
 * of the message key, the message key, then the state key. Values are
 * MessagePack. Changelog records use the same key and value bytes (a delete
 * is a record with a null value) plus the header luastream.input.offset: the
 * input partition's next offset at the checkpoint that produced it. */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "log.h"
#include "lua_vm.h"
#include "state.h"

#define MAX_PARTITIONS 4096
#define INPUT_OFFSET_HEADER "luastream.input.offset"

typedef struct pending {
  int store;
  int32_t part;
  char *key;
  size_t klen;
  char *val;   /* NULL: delete */
  size_t vlen;
} pending;

struct ls_ckpt {
  lua_State *L;
  int rt_ref;
  const ls_spec *spec;
  ls_kafka *k;
  ls_state *state;
  char **changelog;          /* per store */
  rd_kafka_topic_t **rkt;    /* per store */
  int64_t **acked;           /* per store, per partition: next changelog offset */
  pending *pend;
  size_t npend, cap;
  int ephemeral;             /* no changelogs */
};

static void *dup_bytes(const void *p, size_t n) {
  void *d = malloc(n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

/* ---- reading state from Lua (core.state_load) ----------------------------- */

static int store_index(const ls_ckpt *c, const char *name) {
  for (int i = 0; i < c->spec->nstores; i++)
    if (strcmp(c->spec->stores[i].name, name) == 0) return i;
  return -1;
}

typedef struct load_ctx {
  lua_State *L;
  size_t prefix;
  char err[256];
} load_ctx;

static int load_visit(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  load_ctx *lc = ud;
  lua_State *L = lc->L;
  lua_pushlstring(L, (const char *)key + lc->prefix, klen - lc->prefix);
  if (ls_decode(L, LS_FMT_MSGPACK, val, vlen, lc->err, sizeof lc->err)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_rawset(L, -3);
  return 0;
}

static size_t entry_prefix(char *out, const char *key, size_t klen) {
  out[0] = (char)(klen >> 8);
  out[1] = (char)(klen & 0xff);
  memcpy(out + 2, key, klen);
  return klen + 2;
}

/* core.state_load(store, partition, key_bytes) -> { state_key = value } */
static int state_load(lua_State *L) {
  ls_ckpt *c = lua_touserdata(L, lua_upvalueindex(1));
  int s = store_index(c, luaL_checkstring(L, 1));
  int32_t p = (int32_t)luaL_checkinteger(L, 2);
  size_t klen;
  const char *key = luaL_checklstring(L, 3, &klen);
  if (s < 0) return luaL_error(L, "unknown state store %s", lua_tostring(L, 1));
  if (klen > 65535) return luaL_error(L, "message key longer than 65535 bytes");
  char *prefix = malloc(klen + 2);
  if (!prefix) return luaL_error(L, "out of memory");
  load_ctx lc = {L, entry_prefix(prefix, key, klen), ""};
  lua_newtable(L);
  int rc = ls_state_scan(c->state, c->spec->stores[s].name, p, prefix, lc.prefix, load_visit, &lc);
  free(prefix);
  if (rc) return luaL_error(L, "state %s[%d]: %s", lua_tostring(L, 1), (int)p, ls_state_error(c->state));
  if (lc.err[0]) return luaL_error(L, "state %s[%d]: bad stored value: %s", lua_tostring(L, 1), (int)p, lc.err);
  return 1;
}

static void register_loader(ls_ckpt *c) {
  lua_State *L = c->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.core");
  lua_call(L, 1, 1);
  lua_pushlightuserdata(L, c);
  lua_pushcclosure(L, state_load, 1);
  lua_setfield(L, -2, "state_load");
  lua_pop(L, 1);
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

/* Changelogs are compacted: the latest record of every key is kept forever,
 * so a store rebuilt from its changelog is complete however old its keys. */
static const char *const CHANGELOG_CONFIGS[] = {"cleanup.policy", "compact", NULL};

/* Creates changelog `name` like input topic `like`, or checks that an existing
 * one is compacted (when the cluster describes configs; the dev broker does not). */
static void prepare_changelog(ls_ckpt *c, const char *name, const char *like) {
  char why[512], policy[128];
  if (ls_kafka_ensure_topic_like(c->k, name, like, CHANGELOG_CONFIGS, why, sizeof why)) {
    ls_warn("changelog %s: %s; create it with as many partitions as %s and cleanup.policy=compact "
            "(on the dev broker: luastream broker --topic %s:N)", name, why, like, name);
    return;
  }
  if (!ls_kafka_has_admin(c->k)) return;
  int r = ls_kafka_topic_config(c->k, name, "cleanup.policy", policy, sizeof policy, why, sizeof why);
  if (r < 0) ls_warn("changelog %s: cannot check its cleanup.policy: %s", name, why);
  else if (r == 1 && !strstr(policy, "compact"))
    ls_warn("changelog %s has cleanup.policy=%s: records older than its retention are deleted, and "
            "a store rebuilt from it loses every key not written since; set cleanup.policy=compact "
            "(kafka-configs --alter --entity-type topics --entity-name %s --add-config "
            "cleanup.policy=compact)", name, policy, name);
}

static int open_changelogs(ls_ckpt *c, char *err, size_t errlen) {
  int n = c->spec->nstores;
  c->changelog = calloc((size_t)n, sizeof *c->changelog);
  c->rkt = calloc((size_t)n, sizeof *c->rkt);
  c->acked = calloc((size_t)n, sizeof *c->acked);
  if (!c->changelog || !c->rkt || !c->acked) return snprintf(err, errlen, "out of memory"), -1;
  for (int i = 0; i < n; i++) {
    char name[512];
    snprintf(name, sizeof name, "%s__%s__changelog", c->spec->name, c->spec->stores[i].name);
    if (!(c->changelog[i] = strdup(name))) return snprintf(err, errlen, "out of memory"), -1;
    if (c->ephemeral) continue;
    prepare_changelog(c, name, c->spec->inputs[c->spec->stores[i].topic].name);
    c->rkt[i] = ls_kafka_topic(c->k, name);
    c->acked[i] = malloc(MAX_PARTITIONS * sizeof **c->acked);
    if (!c->rkt[i] || !c->acked[i]) return snprintf(err, errlen, "cannot set up %s", name), -1;
    for (int p = 0; p < MAX_PARTITIONS; p++) c->acked[i][p] = -1;
  }
  return 0;
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
  if (open_state(c, err, errlen) || open_changelogs(c, err, errlen)) {
    ls_ckpt_close(c);
    return NULL;
  }
  register_loader(c);
  return c;
}

void ls_ckpt_rebind(ls_ckpt *c, lua_State *L, int rt_ref) {
  if (!c) return;
  c->L = L;
  c->rt_ref = rt_ref;
  register_loader(c);
}

size_t ls_ckpt_pending(const ls_ckpt *c) { return c ? c->npend : 0; }

static int count_entries(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                         int64_t changelog_offset, int64_t input_offset) {
  (void)store, (void)partition, (void)bytes, (void)changelog_offset, (void)input_offset;
  *(int64_t *)ud += (int64_t)keys;
  return 0;
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
  for (int i = 0; c->changelog && i < c->spec->nstores; i++) {
    free(c->changelog[i]);
    if (c->acked) free(c->acked[i]);
  }
  free(c->changelog);
  free(c->rkt);
  free(c->acked);
  ls_state_close(c->state);
  free(c);
}

const char *ls_ckpt_changelog(const ls_ckpt *c, int store) { return c->changelog[store]; }

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

/* Copies change j of rt.changes (tables at idx..idx+3) into pending. */
static int take_one(ls_ckpt *c, int idx, int j, char *err, size_t errlen) {
  lua_State *L = c->L;
  pending *p = add_pending(c);
  if (!p) return snprintf(err, errlen, "out of memory"), -1;
  memset(p, 0, sizeof *p);
  lua_rawgeti(L, idx, j);
  lua_rawgeti(L, idx + 1, j);
  lua_rawgeti(L, idx + 2, j);
  lua_rawgeti(L, idx + 3, j);
  p->store = (int)lua_tointeger(L, -4) - 1;
  p->part = (int32_t)lua_tointeger(L, -3);
  const char *s = lua_tolstring(L, -2, &p->klen);
  p->key = dup_bytes(s, p->klen);
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &p->vlen);
    p->val = dup_bytes(s, p->vlen);
  }
  lua_pop(L, 4);
  if (!p->key || p->store < 0 || p->store >= c->spec->nstores || p->part < 0 ||
      p->part >= MAX_PARTITIONS)
    return snprintf(err, errlen, "bad state change %d", j), -1;
  return 0;
}

/* Calls rt.take_state_changes() and copies the changes; returns their count. */
static int take_changes(ls_ckpt *c, char *err, size_t errlen) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->rt_ref);
  lua_getfield(L, -1, "take_state_changes");
  if (lua_pcall(L, 0, 1, 0) != 0) {
    ls_vm_pop_error(L, err, errlen);
    lua_settop(L, top);
    return -1;
  }
  int n = (int)lua_tointeger(L, -1);
  lua_getfield(L, top + 1, "changes");
  int ch = lua_gettop(L);
  static const char *const names[] = {"store", "part", "key", "val"};
  for (int i = 0; i < 4; i++) lua_getfield(L, ch, names[i]);
  int rc = 0;
  for (int j = 1; j <= n && rc == 0; j++) rc = take_one(c, ch + 1, j, err, errlen);
  lua_settop(L, top);
  return rc ? -1 : n;
}

static rd_kafka_headers_t *offset_header(int64_t input_offset) {
  char num[32];
  snprintf(num, sizeof num, "%lld", (long long)input_offset);
  rd_kafka_headers_t *h = rd_kafka_headers_new(1);
  rd_kafka_header_add(h, INPUT_OFFSET_HEADER, -1, num, -1);
  return h;
}

int ls_ckpt_produce(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen) {
  size_t first = c->npend;
  if (take_changes(c, err, errlen) < 0) return -1;
  if (c->ephemeral) return 0;
  for (size_t i = first; i < c->npend; i++) {
    pending *p = &c->pend[i];
    int64_t in = ls_offsets_get(offsets, c->spec->stores[p->store].topic, p->part);
    ls_record r = {c->rkt[p->store], p->part, p->key, p->klen, p->val, p->val ? p->vlen : 0, 0,
                   offset_header(in), &c->acked[p->store][p->part]};
    char why[512];
    if (ls_kafka_produce(c->k, &r, why, sizeof why)) {
      int missing = strstr(why, rd_kafka_err2str(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)) != NULL;
      snprintf(err, errlen, "changelog %s[%d]: %s%s%s%s", c->changelog[p->store], (int)p->part, why,
               missing ? " (it needs as many partitions as topic " : "",
               missing ? c->spec->inputs[c->spec->stores[p->store].topic].name : "",
               missing ? ")" : "");
      return -1;
    }
  }
  return 0;
}

/* ---- step 4: one LMDB transaction ----------------------------------------- */

/* Adds a mark for (store, part) unless there is one already. */
static void add_mark(ls_ckpt *c, ls_state_mark *marks, size_t *n, int s, int32_t part,
                     const ls_offsets *offsets) {
  for (size_t i = 0; i < *n; i++)
    if (marks[i].partition == part && strcmp(marks[i].store, c->spec->stores[s].name) == 0) return;
  ls_state_mark *m = &marks[(*n)++];
  m->store = c->spec->stores[s].name;
  m->partition = part;
  m->changelog_offset = c->acked[s][part];
  m->input_offset = ls_offsets_get(offsets, c->spec->stores[s].topic, part);
}

int ls_ckpt_store(ls_ckpt *c, const ls_offsets *offsets, char *err, size_t errlen) {
  if (c->npend == 0) return 0;
  ls_state_put *puts = calloc(c->npend, sizeof *puts);
  ls_state_mark *marks = calloc(c->npend, sizeof *marks);
  size_t nmarks = 0;
  if (!puts || !marks) {
    free(puts);
    free(marks);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  for (size_t i = 0; i < c->npend; i++) {
    pending *p = &c->pend[i];
    puts[i] = (ls_state_put){c->spec->stores[p->store].name, p->part, p->key, p->klen, p->val, p->vlen};
    int same = i > 0 && p[-1].store == p->store && p[-1].part == p->part;
    if (!same && !c->ephemeral && c->acked[p->store][p->part] >= 0) add_mark(c, marks, &nmarks, p->store, p->part, offsets);
  }
  int rc = ls_state_commit(c->state, puts, c->npend, marks, nmarks, err, errlen);
  free(puts);
  free(marks);
  if (rc == 0) free_pending(c);
  return rc;
}

/* ---- recovery ------------------------------------------------------------- */

typedef struct restore_ctx {
  ls_ckpt *c;
  int store;
  int n;                 /* partitions being restored */
  const int32_t *parts;
  const int64_t *committed;
  int64_t *next;         /* per partition: next changelog offset */
  long *pseen, *papplied; /* per partition */
  const int64_t *ends;   /* per partition: where the replay stops (set before the first record) */
  double t0, last_log;   /* for progress lines */
  long seen, applied;
  ls_state_put *puts;
  size_t np, cap;
  char err[512];
} restore_ctx;

static int64_t input_offset_of(const rd_kafka_message_t *m) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t len;
  if (rd_kafka_message_headers(m, &h) || !h ||
      rd_kafka_header_get_last(h, INPUT_OFFSET_HEADER, &v, &len) || !v || len > 20)
    return -1;
  char num[24];
  memcpy(num, v, len);
  num[len] = 0;
  return strtoll(num, NULL, 10);
}

/* Writes the collected entries and every partition's progress in one transaction. */
static int restore_flush(restore_ctx *r) {
  ls_ckpt *c = r->c;
  const char *store = c->spec->stores[r->store].name;
  ls_state_mark *marks = calloc((size_t)r->n, sizeof *marks);
  if (!marks) return snprintf(r->err, sizeof r->err, "out of memory"), -1;
  for (int i = 0; i < r->n; i++)
    marks[i] = (ls_state_mark){store, r->parts[i], r->next[i], r->committed[i]};
  int rc = ls_state_commit(c->state, r->puts, r->np, marks, (size_t)r->n, r->err, sizeof r->err);
  free(marks);
  for (size_t i = 0; i < r->np; i++) {
    free((void *)r->puts[i].key);
    free((void *)r->puts[i].val);
  }
  r->np = 0;
  return rc;
}

/* Every 2 s of a long replay: records done, records left, rate. */
static void log_progress(restore_ctx *r) {
  double now = ls_mono_ms();
  if (now - r->last_log < 2000) return;
  r->last_log = now;
  long left = 0;
  for (int i = 0; i < r->n; i++) left += (long)(r->ends[i] - r->next[i]);
  double secs = (now - r->t0) / 1000;
  ls_info("state %s: replaying, %ld changelog records done, %ld left, %.0f records/s",
          r->c->spec->stores[r->store].name, r->seen, left, secs > 0 ? r->seen / secs : 0);
}

static int restore_visit(void *ud, const rd_kafka_message_t *m) {
  restore_ctx *r = ud;
  int i = 0;
  while (i < r->n && r->parts[i] != m->partition) i++;
  if (i == r->n) return 0;
  r->seen++;
  r->pseen[i]++;
  r->next[i] = m->offset + 1;
  int64_t in = input_offset_of(m);
  if (in < 0 || r->committed[i] < 0 || in > r->committed[i] || !m->key) return 0;
  r->papplied[i]++;
  if ((r->seen & 0x3fff) == 0) log_progress(r);
  if (r->np == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 1024;
    ls_state_put *p = realloc(r->puts, cap * sizeof *p);
    if (!p) return -1;
    r->puts = p;
    r->cap = cap;
  }
  r->puts[r->np++] = (ls_state_put){r->c->spec->stores[r->store].name, m->partition,
                                    dup_bytes(m->key, m->key_len), m->key_len,
                                    m->payload ? dup_bytes(m->payload, m->len) : NULL, m->len};
  r->applied++;
  return r->np >= 20000 ? restore_flush(r) : 0;
}

/* Where partition p of store s replays from: its mark. A changelog that ends
 * before the mark is not the one the local state was built from (a new or
 * reset cluster, a deleted topic): that state is stale, so it is dropped and
 * rebuilt from the whole changelog, as Kafka Streams does on an out-of-range
 * offset. (Committed input offsets are no evidence either way: a real Kafka
 * expires them, and good state must survive that.) */
static int replay_start(ls_ckpt *c, int s, int32_t p, int64_t *from, char *err, size_t errlen) {
  const char *store = c->spec->stores[s].name;
  int64_t io, lo, hi;
  if (ls_state_get_mark(c->state, store, p, from, &io) <= 0 || *from <= 0) return *from = 0, 0;
  if (ls_kafka_watermarks(c->k, c->changelog[s], p, &lo, &hi, err, errlen)) return -1;
  if (*from <= hi) return 0;
  ls_warn("state %s[%d]: the local state was saved up to changelog offset %lld, but %s[%d] ends at "
          "%lld: it belongs to other data (a new or reset cluster?); dropping it and rebuilding "
          "from the changelog", store, (int)p, (long long)*from, c->changelog[s], (int)p, (long long)hi);
  *from = 0;
  return ls_state_drop_partition(c->state, store, p, err, errlen);
}

/* Replays store s's changelog for partitions parts[0..n) into LMDB. */
static int restore_store(ls_ckpt *c, int s, const int32_t *parts, int n, const int64_t *committed,
                         char *err, size_t errlen) {
  int64_t *from = calloc((size_t)n, sizeof *from), *ends = calloc((size_t)n, sizeof *ends);
  restore_ctx r = {.c = c, .store = s, .n = n, .parts = parts, .committed = committed,
                   .next = calloc((size_t)n, sizeof(int64_t)),
                   .pseen = calloc((size_t)n, sizeof(long)),
                   .papplied = calloc((size_t)n, sizeof(long))};
  int rc = (!from || !ends || !r.next || !r.pseen || !r.papplied)
               ? (snprintf(err, errlen, "out of memory"), -1) : 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    rc = replay_start(c, s, parts[i], &from[i], err, errlen);
    r.next[i] = from[i];
  }
  double t0 = ls_mono_ms();
  r.ends = ends;
  r.t0 = r.last_log = t0;
  if (rc == 0) rc = ls_kafka_replay(c->k, c->changelog[s], parts, from, n, ends, restore_visit, &r, err, errlen);
  if (rc == 0) {
    for (int i = 0; i < n; i++) r.next[i] = ends[i];
    rc = restore_flush(&r);
    if (rc) snprintf(err, errlen, "%s", r.err);
  }
  for (size_t i = 0; i < r.np; i++) {
    free((void *)r.puts[i].key);
    free((void *)r.puts[i].val);
  }
  for (int i = 0; rc == 0 && i < n; i++) c->acked[s][parts[i]] = ends[i];
  double ms = ls_mono_ms() - t0;
  for (int i = 0; rc == 0 && i < n; i++)
    if (r.pseen[i])
      ls_info("state %s[%d]: replayed %ld changelog records (%ld applied)", c->spec->stores[s].name,
              (int)parts[i], r.pseen[i], r.papplied[i]);
  if (rc == 0 && r.seen)
    ls_info("state %s: replayed %ld changelog records of %d partition%s (%ld applied) in %.0f ms, "
            "%.0f records/s", c->spec->stores[s].name, r.seen, n, n == 1 ? "" : "s", r.applied, ms,
            r.seen / (ms > 1 ? ms / 1000 : 0.001));
  free(r.puts);
  free(r.next);
  free(r.pseen);
  free(r.papplied);
  free(from);
  free(ends);
  return rc;
}

int ls_ckpt_restore(ls_ckpt *c, int topic, const int32_t *parts, int n, char *err, size_t errlen) {
  if (c->ephemeral) return 0;
  int64_t *committed = calloc((size_t)n + 1, sizeof *committed);
  if (!committed) return snprintf(err, errlen, "out of memory"), -1;
  int rc = 0, needed = 0;
  for (int s = 0; s < c->spec->nstores; s++) needed |= c->spec->stores[s].topic == topic;
  for (int i = 0; needed && rc == 0 && i < n; i++) {
    if (parts[i] < 0 || parts[i] >= MAX_PARTITIONS) {
      rc = -1;
      snprintf(err, errlen, "partition %d out of range", (int)parts[i]);
      break;
    }
    committed[i] = ls_kafka_committed(c->k, c->spec->inputs[topic].name, parts[i], 10000);
    if (committed[i] == -2) {
      rc = -1;
      snprintf(err, errlen, "cannot read the committed offset of %s[%d]",
               c->spec->inputs[topic].name, (int)parts[i]);
    }
  }
  for (int s = 0; needed && rc == 0 && s < c->spec->nstores; s++)
    if (c->spec->stores[s].topic == topic) rc = restore_store(c, s, parts, n, committed, err, errlen);
  free(committed);
  for (int i = 0; rc == 0 && i < n; i++) ls_ckpt_forget(c, parts[i]);
  return rc;
}

void ls_ckpt_forget(ls_ckpt *c, int32_t p) {
  lua_State *L = c->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->rt_ref);
  lua_getfield(L, -1, "forget_partition");
  lua_pushinteger(L, p);
  if (lua_pcall(L, 1, 0, 0) != 0) ls_warn("forgetting partition %d: %s", (int)p, lua_tostring(L, -1));
  lua_settop(L, top);
}

void ls_ckpt_revoke(ls_ckpt *c, int topic, int32_t p, int clean) {
  ls_ckpt_forget(c, p);
  if (clean) return;
  size_t keep = 0;
  for (size_t i = 0; i < c->npend; i++) {
    pending *e = &c->pend[i];
    if (e->part == p && c->spec->stores[e->store].topic == topic) {
      free(e->key);
      free(e->val);
    } else {
      c->pend[keep++] = *e;
    }
  }
  c->npend = keep;
  for (int s = 0; s < c->spec->nstores; s++) {
    char err[512];
    if (c->spec->stores[s].topic != topic) continue;
    if (ls_state_drop_partition(c->state, c->spec->stores[s].name, p, err, sizeof err))
      ls_warn("%s", err);
    if (c->acked[s]) c->acked[s][p] = -1;
  }
}

void ls_ckpt_discard(ls_ckpt *c) {
  free_pending(c);
  lua_State *L = c->L;
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.state");
  if (lua_pcall(L, 1, 1, 0) == 0) {
    lua_getfield(L, -1, "forget_all");
    if (lua_pcall(L, 0, 0, 0) != 0) ls_warn("discarding state: %s", lua_tostring(L, -1));
  }
  lua_settop(L, top);
}
