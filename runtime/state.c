/* state.c - the LMDB state store (see state.h).
 *
 * Owns the LMDB environment, a kept read transaction, and a cache of the
 * database handles of (store, partition) pairs. Handles opened inside a
 * transaction are private to it until it commits (LMDB closes them on
 * abort), so a handle is cached at once but remembered as pending, and
 * forgotten again when its transaction does not commit. Every write goes
 * through write_txn(), which retries the whole transaction after growing
 * the map on MDB_MAP_FULL.
 *
 * Expiry lives in the partition's own database under reserved keys (layout
 * in state.h). Each handle caches, for the current write txn, how many
 * entries have an expiry, so a put without one into a database that has
 * none costs no extra lookup. Marks are 24 bytes (changelog offset, input
 * offset, watermark; little-endian); 16-byte marks of older versions read
 * with watermark -1. */
#include "state.h"
#include "statedir.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define DEFAULT_MAP_SIZE (64 * MIB)
#define MAX_DBS 4096       /* named databases per environment, "__marks" included */
#define MARKS_DB "__marks" /* no '/', so never a "<store>/<partition>" name */
#define MARK_LEN_V1 16     /* two little-endian int64s (no watermark) */
#define MARK_LEN 24        /* three: changelog offset, input offset, watermark */
#define RES 0xFF           /* reserved keys begin RES RES tag */
#define TAG_COUNT 0x00     /* RES RES 00: count of entries with an expiry */
#define TAG_EXPIRY 0x01    /* RES RES 01 key: the key's expiry, big-endian */
#define TAG_INDEX 0x02     /* RES RES 02 expiry key: the time index */
#define EXPIRY_OVERHEAD 11 /* the index key's bytes beyond the entry key */
#define RESERVED_LEN (EXPIRY_OVERHEAD + LS_STATE_KEY_MAX)
_Static_assert(LS_STATE_EXPIRING_KEY_MAX == LS_STATE_KEY_MAX - EXPIRY_OVERHEAD,
               "an index key must fit LMDB's key limit");
#define NAME_LEN (LS_STATE_STORE_MAX + 16)
#define FAILED (-1) /* an error already described in s->err */

typedef struct handle {
  MDB_dbi dbi;      /* 0: not cached (user handles are >= 2) */
  uint32_t gen;     /* write txn that last saw the database exist */
  uint32_t ttl_gen; /* write txn in which nttl is valid (0: never) */
  uint32_t cnt_gen; /* write txn that changed nttl (its record is written at the end) */
  int64_t nttl;     /* entries with an expiry, as of this write txn */
} handle;

typedef struct store_slot { /* cached handles of one store, by partition */
  char *name;
  handle *h;
  int32_t cap;
} store_slot;

typedef struct pending { /* a handle cached by an unfinished txn */
  int store;
  int32_t partition;
} pending;

typedef struct counted { /* a database whose expiry count this txn changed */
  int store;
  int32_t partition;
  MDB_dbi dbi;
} counted;

struct ls_state {
  MDB_env *env;
  MDB_txn *rtxn; /* kept read txn, or NULL */
  int ractive;   /* rtxn is live (not reset) */
  MDB_dbi marks;
  MDB_dbi main;   /* the unnamed database: names of the others */
  uint32_t wgen;  /* write txns begun */
  size_t max_map; /* 0: no limit */
  int growth;     /* 0: growth disabled */
  int durable;
  store_slot *stores;
  int nstores, capstores;
  pending *pend;
  size_t npend, cappend;
  counted *cnt; /* of the current commit */
  size_t ncnt, capcnt;
  char err[1280];
};

/* ---- errors ------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int fail(ls_state *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  return FAILED;
}

static void copy_err(const char *msg, char *err, size_t errlen) {
  if (!err || !errlen) return;
  size_t n = strlen(msg);
  if (n >= errlen) n = errlen - 1;
  memcpy(err, msg, n);
  err[n] = '\0';
}

/* "64 MiB", "96 KiB", "1.5 MiB" or "1000 bytes", integers only. */
static void format_size(char *buf, size_t n, size_t v) {
  if (v >= MIB && v % MIB == 0)
    snprintf(buf, n, "%zu MiB", v / MIB);
  else if (v >= MIB)
    snprintf(buf, n, "%zu.%zu MiB", v / MIB, (v % MIB) * 10 / MIB);
  else if (v >= KIB && v % KIB == 0)
    snprintf(buf, n, "%zu KiB", v / KIB);
  else
    snprintf(buf, n, "%zu bytes", v);
}

/* ---- names and validation ---------------------------------------------- */

static int check_store(ls_state *s, const char *store) {
  if (!store || !*store) return fail(s, "state: empty store name");
  size_t n = strnlen(store, LS_STATE_STORE_MAX + 1);
  if (n > LS_STATE_STORE_MAX)
    return fail(s, "state: store name longer than %d bytes", LS_STATE_STORE_MAX);
  if (memchr(store, '/', n)) return fail(s, "state: store name \"%s\" contains '/'", store);
  return 0;
}

static int check_target(ls_state *s, const char *store, int32_t partition) {
  if (check_store(s, store)) return FAILED;
  if (partition < 0 || partition > LS_STATE_PARTITION_MAX)
    return fail(s, "state: %s: partition %" PRId32 " out of range", store, partition);
  return 0;
}

static int check_key(ls_state *s, const char *store, size_t klen) {
  size_t max = (size_t)mdb_env_get_maxkeysize(s->env);
  if (klen == 0) return fail(s, "state: %s: empty key", store);
  if (klen > max)
    return fail(s, "state: %s: key of %zu bytes exceeds the %zu-byte limit", store, klen, max);
  return 0;
}

/* "<store>/<partition>"; store must have passed check_store. */
static void db_name(char *buf, const char *store, int32_t partition) {
  if (snprintf(buf, NAME_LEN, "%s/%" PRId32, store, partition) >= NAME_LEN) buf[0] = '\0';
}

/* Parses a database name back; 0 on success, -1 for other names. */
static int parse_name(const char *name, size_t len, char *store, int32_t *partition) {
  const char *slash = memchr(name, '/', len);
  if (!slash || slash == name || (size_t)(slash - name) > LS_STATE_STORE_MAX) return -1;
  size_t slen = (size_t)(slash - name), dlen = len - slen - 1;
  if (dlen == 0 || dlen > 7 || (dlen > 1 && slash[1] == '0')) return -1;
  int32_t p = 0;
  for (size_t i = 0; i < dlen; i++) {
    char c = slash[1 + i];
    if (c < '0' || c > '9') return -1;
    p = p * 10 + (c - '0');
  }
  if (p > LS_STATE_PARTITION_MAX) return -1;
  memcpy(store, name, slen);
  store[slen] = '\0';
  *partition = p;
  return 0;
}

static void put_i64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t get_i64(const unsigned char *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
  return (int64_t)u;
}

/* Big-endian, so the time index sorts by expiry (expiries are > 0). */
static void put_be64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (56 - 8 * i));
}

static int64_t get_be64(const unsigned char *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = u << 8 | p[i];
  return (int64_t)u;
}

/* A mark's value: 0, or -1 when corrupt. Older 16-byte marks have no
 * watermark (-1); bytes past the third field are left for later versions. */
static int parse_mark(const MDB_val *v, int64_t *c, int64_t *in, int64_t *wm) {
  const unsigned char *p = v->mv_data;
  if (v->mv_size != MARK_LEN_V1 && v->mv_size < MARK_LEN) return -1;
  *c = get_i64(p);
  *in = get_i64(p + 8);
  *wm = v->mv_size >= MARK_LEN ? get_i64(p + 16) : -1;
  return 0;
}

/* ---- reserved keys (expiry) ---------------------------------------------- */

static int is_reserved(const void *key, size_t klen) {
  const unsigned char *k = key;
  return klen >= 2 && k[0] == RES && k[1] == RES;
}

static size_t reserved_key(unsigned char *out, int tag) {
  out[0] = out[1] = RES;
  out[2] = (unsigned char)tag;
  return 3;
}

/* RES RES 01 key: where the expiry of key is kept. */
static size_t expiry_key(unsigned char *out, const void *key, size_t klen) {
  size_t n = reserved_key(out, TAG_EXPIRY);
  memcpy(out + n, key, klen);
  return n + klen;
}

/* RES RES 02 expiry key: the key's place in the time index. */
static size_t index_key(unsigned char *out, int64_t expire_ms, const void *key, size_t klen) {
  size_t n = reserved_key(out, TAG_INDEX);
  put_be64(out + n, expire_ms);
  memcpy(out + n + 8, key, klen);
  return n + 8 + klen;
}

/* The count of entries with an expiry stored in dbi (0 when absent). */
static int read_count(MDB_txn *txn, MDB_dbi dbi, int64_t *n) {
  unsigned char kb[3];
  MDB_val k = {reserved_key(kb, TAG_COUNT), kb}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  *n = 0;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.mv_size != 8) return MDB_CORRUPTED;
  *n = get_i64(v.mv_data);
  return 0;
}

/* The stored expiry of key (0: none). */
static int read_expiry(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, int64_t *exp) {
  unsigned char kb[RESERVED_LEN];
  *exp = 0;
  if (klen > LS_STATE_KEY_MAX - EXPIRY_OVERHEAD) return 0; /* too long to have one */
  MDB_val k = {expiry_key(kb, key, klen), kb}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.mv_size != 8) return MDB_CORRUPTED;
  *exp = get_be64(v.mv_data);
  return 0;
}

/* ---- handle cache --------------------------------------------------------- */

static int find_store(const ls_state *s, const char *store) {
  for (int i = 0; i < s->nstores; i++)
    if (strcmp(s->stores[i].name, store) == 0) return i;
  return -1;
}

static int add_store(ls_state *s, const char *store) {
  if (s->nstores == s->capstores) {
    int cap = s->capstores ? s->capstores * 2 : 8;
    store_slot *n = realloc(s->stores, (size_t)cap * sizeof *n);
    if (!n) return -1;
    s->stores = n;
    s->capstores = cap;
  }
  char *name = strdup(store);
  if (!name) return -1;
  s->stores[s->nstores] = (store_slot){name, NULL, 0};
  /* Not a leak: the slot owns name now (ls_state_close frees it); cppcheck
   * does not follow the pointer into the compound literal. */
  /* cppcheck-suppress memleak */
  return s->nstores++;
}

/* The cached handle, or NULL. */
static handle *cache_get(const ls_state *s, const char *store, int32_t partition) {
  int i = find_store(s, store);
  if (i < 0 || partition >= s->stores[i].cap) return NULL;
  handle *h = &s->stores[i].h[partition];
  return h->dbi ? h : NULL;
}

/* Sets the cached handle (0 forgets it); returns the store index or -1. */
static int cache_set(ls_state *s, const char *store, int32_t partition, MDB_dbi dbi) {
  int i = find_store(s, store);
  if (i < 0 && (dbi == 0 || (i = add_store(s, store)) < 0)) return -1;
  store_slot *st = &s->stores[i];
  if (partition >= st->cap) {
    if (dbi == 0) return i;
    int32_t cap = st->cap ? st->cap : 16;
    while (cap <= partition) cap *= 2;
    handle *n = realloc(st->h, (size_t)cap * sizeof *n);
    if (!n) return -1;
    memset(n + st->cap, 0, (size_t)(cap - st->cap) * sizeof *n);
    st->h = n;
    st->cap = cap;
  }
  st->h[partition] = (handle){dbi, 0, 0, 0, 0};
  return i;
}

/* Caches a handle opened in the current txn, remembering it as pending. */
static int cache_pending(ls_state *s, const char *store, int32_t partition, MDB_dbi dbi) {
  if (s->npend == s->cappend) {
    size_t cap = s->cappend ? s->cappend * 2 : 16;
    pending *n = realloc(s->pend, cap * sizeof *n);
    if (!n) return fail(s, "state: out of memory");
    s->pend = n;
    s->cappend = cap;
  }
  int i = cache_set(s, store, partition, dbi);
  if (i < 0) return fail(s, "state: out of memory");
  s->pend[s->npend++] = (pending){i, partition};
  return 0;
}

/* The txn that opened the pending handles did not commit: LMDB closed them. */
static void forget_pending(ls_state *s) {
  for (size_t i = 0; i < s->npend; i++) {
    store_slot *st = &s->stores[s->pend[i].store];
    if (s->pend[i].partition < st->cap) st->h[s->pend[i].partition].dbi = 0;
  }
  s->npend = 0;
}

/* ---- map size ----------------------------------------------------------- */

size_t ls_state_map_size(ls_state *s) {
  MDB_envinfo info;
  if (mdb_env_info(s->env, &info)) return 0;
  return (size_t)info.me_mapsize;
}

/* Ends the kept read txn entirely: changing the map needs no live txn. */
static void read_drop(ls_state *s) {
  if (s->rtxn) mdb_txn_abort(s->rtxn);
  s->rtxn = NULL;
  s->ractive = 0;
}

/* Adopts a map grown by another process sharing the environment. */
static int adopt_map(ls_state *s) {
  read_drop(s);
  int rc = mdb_env_set_mapsize(s->env, 0);
  return rc ? fail(s, "state: cannot adopt the new map size: %s", mdb_strerror(rc)) : 0;
}

/* Doubles the map (up to the limit) after MDB_MAP_FULL. */
static int grow(ls_state *s) {
  size_t cur = ls_state_map_size(s), next = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
  char sz[48];
  format_size(sz, sizeof sz, cur);
  if (!s->growth) return fail(s, "state: map full (%s) and growth disabled", sz);
  if (s->max_map && next > s->max_map) next = s->max_map;
  if (next <= cur) return fail(s, "state: map full (%s) and limit reached", sz);
  read_drop(s);
  int rc = mdb_env_set_mapsize(s->env, next);
  if (rc == 0) return 0;
  mdb_env_set_mapsize(s->env, cur); /* map the old size again */
  return fail(s, "state: map full (%s) and cannot grow: %s", sz, mdb_strerror(rc));
}

/* ---- transactions ------------------------------------------------------- */

/* Starts every public call: releases the snapshot of the previous one. */
static void enter(ls_state *s) {
  if (s->rtxn && s->ractive) mdb_txn_reset(s->rtxn);
  s->ractive = 0;
}

static int read_begin(ls_state *s) {
  if (s->ractive) return 0;
  for (int tries = 0;; tries++) {
    int rc = s->rtxn ? mdb_txn_renew(s->rtxn) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
    if (rc == 0) break;
    if (s->rtxn) mdb_txn_abort(s->rtxn);
    s->rtxn = NULL;
    if (rc != MDB_MAP_RESIZED || tries > 0)
      return fail(s, "state: cannot begin a read: %s", mdb_strerror(rc));
    if (adopt_map(s)) return FAILED;
  }
  s->ractive = 1;
  return 0;
}

/* Commits the read txn so the handles it opened become the environment's. */
static int read_export(ls_state *s) {
  int rc = mdb_txn_commit(s->rtxn);
  s->rtxn = NULL;
  s->ractive = 0;
  if (rc) {
    forget_pending(s);
    return fail(s, "state: cannot open databases: %s", mdb_strerror(rc));
  }
  s->npend = 0;
  return 0;
}

/* The handle of store/partition with the read txn live: 1, 0 when the
 * database does not exist, -1 on error. */
static int read_dbi(ls_state *s, const char *store, int32_t partition, MDB_dbi *dbi) {
  if (read_begin(s)) return FAILED;
  const handle *h = cache_get(s, store, partition);
  if (h) {
    *dbi = h->dbi;
    return 1;
  }
  char name[NAME_LEN];
  db_name(name, store, partition);
  int rc = mdb_dbi_open(s->rtxn, name, 0, dbi);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return fail(s, "state: cannot open %s: %s", name, mdb_strerror(rc));
  if (cache_pending(s, store, partition, *dbi) || read_export(s) || read_begin(s)) return FAILED;
  return 1;
}

/* Whether a cached handle still names a database: another process sharing
 * the environment may have dropped it, and LMDB must not write through such
 * a handle. Checked once per write txn; a stale handle is closed and
 * forgotten. Returns 1 valid, 0 forgotten, or FAILED. */
static int check_handle(ls_state *s, MDB_txn *txn, const char *store, int32_t partition,
                        const char *name, handle *h) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, s->main, &k, &v);
  if (rc == 0) {
    h->gen = s->wgen;
    return 1;
  }
  if (rc != MDB_NOTFOUND) return fail(s, "state: cannot open %s: %s", name, mdb_strerror(rc));
  MDB_dbi stale = h->dbi;
  cache_set(s, store, partition, 0);
  mdb_dbi_close(s->env, stale); /* unused by this txn so far */
  return 0;
}

/* The handle of store/partition inside write txn (flags: 0 or MDB_CREATE):
 * 1, 0 when it does not exist, MDB_MAP_FULL, or FAILED. */
static int write_dbi(ls_state *s, MDB_txn *txn, const char *store, int32_t partition,
                     unsigned flags, MDB_dbi *dbi) {
  handle *h = cache_get(s, store, partition);
  if (h && h->gen == s->wgen) { /* the fast path: seen in this txn */
    *dbi = h->dbi;
    return 1;
  }
  char name[NAME_LEN];
  db_name(name, store, partition);
  if (h) {
    *dbi = h->dbi;
    int r = check_handle(s, txn, store, partition, name, h);
    if (r != 0) return r;
  }
  int rc = mdb_dbi_open(txn, name, flags, dbi);
  if (rc == MDB_NOTFOUND && !(flags & MDB_CREATE)) return 0;
  if (rc == MDB_MAP_FULL) return rc;
  if (rc == MDB_DBS_FULL)
    return fail(s, "state: cannot create %s: more than %d store partitions", name, MAX_DBS - 1);
  if (rc) return fail(s, "state: cannot open %s: %s", name, mdb_strerror(rc));
  if (cache_pending(s, store, partition, *dbi)) return FAILED;
  cache_get(s, store, partition)->gen = s->wgen;
  return 1;
}

/* Body of a write txn: returns 0, MDB_MAP_FULL (grow and retry) or FAILED. */
typedef int (*write_fn)(ls_state *s, MDB_txn *txn, const void *arg);

static int write_begin(ls_state *s, MDB_txn **txn) {
  for (int tries = 0;; tries++) {
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (rc == 0) {
      if (++s->wgen == 0) s->wgen = 1; /* gen 0 means never checked */
      return 0;
    }
    if (rc != MDB_MAP_RESIZED || tries > 0)
      return fail(s, "state: cannot begin a write: %s", mdb_strerror(rc));
    if (adopt_map(s)) return FAILED;
  }
}

/* Runs fn in one write txn, growing the map and retrying on MDB_MAP_FULL. */
static int write_txn(ls_state *s, write_fn fn, const void *arg) {
  for (;;) {
    MDB_txn *txn;
    if (write_begin(s, &txn)) return FAILED;
    int rc = fn(s, txn, arg);
    if (rc == 0)
      rc = mdb_txn_commit(txn); /* frees txn either way */
    else
      mdb_txn_abort(txn);
    if (rc == 0) {
      s->npend = 0;
      return 0;
    }
    forget_pending(s);
    if (rc == FAILED) return FAILED;
    if (rc != MDB_MAP_FULL) return fail(s, "state: cannot commit: %s", mdb_strerror(rc));
    if (grow(s)) return FAILED;
  }
}

/* ---- open and close ------------------------------------------------------ */

void ls_state_opts_init(ls_state_opts *o) {
  o->map_size = DEFAULT_MAP_SIZE;
  o->max_map_size = 0;
  o->durable = 1;
}

/* Keeps the larger of the requested map and the one stored by earlier runs
 * (LMDB would otherwise shrink it to the data's size). */
static int settle_map(ls_state *s, size_t requested) {
  int rc = mdb_env_set_mapsize(s->env, 0);
  if (rc == 0 && ls_state_map_size(s) < requested) rc = mdb_env_set_mapsize(s->env, requested);
  return rc;
}

static int open_marks(ls_state *s, MDB_txn *txn, const void *arg) {
  (void)arg;
  int rc = mdb_dbi_open(txn, NULL, 0, &s->main);
  if (rc == 0) rc = mdb_dbi_open(txn, MARKS_DB, MDB_CREATE, &s->marks);
  if (rc && rc != MDB_MAP_FULL)
    return fail(s, "state: cannot open %s: %s", MARKS_DB, mdb_strerror(rc));
  return rc;
}

static int open_env(ls_state *s, const char *dir, const ls_state_opts *o) {
  size_t map = o->map_size ? o->map_size : DEFAULT_MAP_SIZE;
  unsigned flags = MDB_NOTLS | (o->durable ? 0 : MDB_NOSYNC);
  int rc = mdb_env_create(&s->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(s->env, MAX_DBS);
  if (rc == 0) rc = mdb_env_set_mapsize(s->env, map);
  if (rc == 0) rc = mdb_env_open(s->env, dir, flags, 0600); /* state holds personal data */
  if (rc == 0) rc = settle_map(s, map);
  int dead;
  if (rc == 0) rc = mdb_reader_check(s->env, &dead); /* slots of killed processes */
  if (rc) return fail(s, "state: cannot open %s: %s", dir, mdb_strerror(rc));
  s->durable = o->durable; /* from here on, close syncs when not durable */
  s->max_map = o->max_map_size;
  s->growth = o->max_map_size == 0 || o->max_map_size > map;
  if (write_txn(s, open_marks, NULL) == 0) return 0;
  char why[sizeof s->err];
  memcpy(why, s->err, sizeof why);
  const char *p = strncmp(why, "state: ", 7) == 0 ? why + 7 : why;
  return fail(s, "state: cannot open %s: %s", dir, p);
}

ls_state *ls_state_open(const char *dir, const ls_state_opts *o, char *err, size_t errlen) {
  ls_state_opts def;
  if (!o) {
    ls_state_opts_init(&def);
    o = &def;
  }
  if (!dir || !*dir) {
    copy_err("state: no directory given", err, errlen);
    return NULL;
  }
  ls_state *s = calloc(1, sizeof *s);
  if (!s) {
    copy_err("state: out of memory", err, errlen);
    return NULL;
  }
  s->durable = 1;
  int rc = ls_mkdir_p(dir, 0700) ? fail(s, "state: cannot open %s: %s", dir, strerror(errno))
                        : open_env(s, dir, o);
  if (rc) {
    copy_err(s->err, err, errlen);
    ls_state_close(s);
    return NULL;
  }
  return s;
}

void ls_state_close(ls_state *s) {
  if (!s) return;
  read_drop(s);
  if (s->env) {
    if (!s->durable) mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
  }
  for (int i = 0; i < s->nstores; i++) {
    free(s->stores[i].name);
    free(s->stores[i].h);
  }
  free(s->stores);
  free(s->pend);
  free(s->cnt);
  free(s);
}

const char *ls_state_error(ls_state *s) { return s->err; }

/* ---- reads --------------------------------------------------------------- */

int ls_state_get_ex(ls_state *s, const char *store, int32_t partition, const void *key, size_t klen,
                    const void **val, size_t *vlen, int64_t *expire_ms) {
  enter(s);
  if (expire_ms) *expire_ms = 0;
  if (check_target(s, store, partition) || check_key(s, store, klen)) return -1;
  if (is_reserved(key, klen)) return 0; /* never a user entry */
  MDB_dbi dbi;
  int r = read_dbi(s, store, partition, &dbi);
  if (r <= 0) return r;
  MDB_val k = {klen, (void *)key}, v;
  int rc = mdb_get(s->rtxn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc == 0 && expire_ms) rc = read_expiry(s->rtxn, dbi, key, klen, expire_ms);
  if (rc) return fail(s, "state: get %s/%" PRId32 ": %s", store, partition, mdb_strerror(rc));
  if (val) *val = v.mv_data;
  if (vlen) *vlen = v.mv_size;
  return 1;
}

int ls_state_get(ls_state *s, const char *store, int32_t partition, const void *key, size_t klen,
                 const void **val, size_t *vlen) {
  return ls_state_get_ex(s, store, partition, key, klen, val, vlen, NULL);
}

int ls_state_get_expiry(ls_state *s, const char *store, int32_t partition, const void *key,
                        size_t klen, int64_t *expire_ms) {
  return ls_state_get_ex(s, store, partition, key, klen, NULL, NULL, expire_ms);
}

typedef struct scan_cb { /* one of the two visitor kinds */
  ls_state_visit_fn fn;
  ls_state_visit_ex_fn fn_ex;
  void *ud;
} scan_cb;

/* Visits the user entries beginning with prefix; they all sort before the
 * reserved keys, so the first reserved key ends the scan. */
static int visit_prefix(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *c, const void *prefix, size_t plen,
                        const scan_cb *cb) {
  int64_t nttl = 0;
  int rc = cb->fn_ex ? read_count(txn, dbi, &nttl) : 0;
  if (rc) return rc;
  MDB_val k = {plen, (void *)prefix}, v;
  rc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
  while (rc == 0) {
    if (k.mv_size < plen || (plen && memcmp(k.mv_data, prefix, plen) != 0)) break;
    if (is_reserved(k.mv_data, k.mv_size)) break;
    int stop;
    if (cb->fn_ex) {
      int64_t exp = 0;
      if (nttl > 0 && (rc = read_expiry(txn, dbi, k.mv_data, k.mv_size, &exp)) != 0) return rc;
      stop = cb->fn_ex(cb->ud, k.mv_data, k.mv_size, v.mv_data, v.mv_size, exp);
    } else {
      stop = cb->fn(cb->ud, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
    }
    if (stop) break;
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

static int scan(ls_state *s, const char *store, int32_t partition, const void *prefix, size_t plen,
                const scan_cb *cb) {
  enter(s);
  if (check_target(s, store, partition)) return -1;
  MDB_dbi dbi;
  int r = read_dbi(s, store, partition, &dbi);
  if (r <= 0) return r;
  if (plen > (size_t)mdb_env_get_maxkeysize(s->env)) return 0; /* no key that long */
  if (is_reserved(prefix, plen)) return 0;                      /* nor one like that */
  MDB_cursor *c;
  int rc = mdb_cursor_open(s->rtxn, dbi, &c);
  if (rc == 0) {
    rc = visit_prefix(s->rtxn, dbi, c, prefix, plen, cb);
    mdb_cursor_close(c);
  }
  if (rc) return fail(s, "state: scan %s/%" PRId32 ": %s", store, partition, mdb_strerror(rc));
  return 0;
}

int ls_state_scan(ls_state *s, const char *store, int32_t partition, const void *prefix,
                  size_t plen, ls_state_visit_fn fn, void *ud) {
  scan_cb cb = {fn, NULL, ud};
  return scan(s, store, partition, prefix, plen, &cb);
}

int ls_state_scan_ex(ls_state *s, const char *store, int32_t partition, const void *prefix,
                     size_t plen, ls_state_visit_ex_fn fn, void *ud) {
  scan_cb cb = {NULL, fn, ud};
  return scan(s, store, partition, prefix, plen, &cb);
}

/* Walks the time index from its start while the expiry is <= now_ms. */
static int visit_expired(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *c, int64_t now_ms, size_t max,
                         ls_state_visit_fn fn, void *ud, size_t *visited) {
  unsigned char start[3];
  MDB_val k = {reserved_key(start, TAG_INDEX), start}, v;
  int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && *visited < max) {
    const unsigned char *ik = k.mv_data;
    if (k.mv_size <= EXPIRY_OVERHEAD || memcmp(ik, start, 3) != 0) break;
    if (get_be64(ik + 3) > now_ms) break;
    MDB_val uk = {k.mv_size - EXPIRY_OVERHEAD, (void *)(ik + EXPIRY_OVERHEAD)}, uv;
    int g = mdb_get(txn, dbi, &uk, &uv);
    if (g == 0) {
      ++*visited;
      if (fn(ud, uk.mv_data, uk.mv_size, uv.mv_data, uv.mv_size)) break;
    } else if (g != MDB_NOTFOUND) { /* an index entry without its entry: skipped */
      return g;
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int ls_state_scan_expired(ls_state *s, const char *store, int32_t partition, int64_t now_ms,
                          size_t max, ls_state_visit_fn fn, void *ud) {
  enter(s);
  if (check_target(s, store, partition)) return -1;
  MDB_dbi dbi;
  int r = read_dbi(s, store, partition, &dbi);
  if (r <= 0) return r;
  if (max > INT_MAX) max = INT_MAX;
  size_t visited = 0;
  MDB_cursor *c;
  int rc = mdb_cursor_open(s->rtxn, dbi, &c);
  if (rc == 0) {
    rc = visit_expired(s->rtxn, dbi, c, now_ms, max, fn, ud, &visited);
    mdb_cursor_close(c);
  }
  if (rc)
    return fail(s, "state: expired entries of %s/%" PRId32 ": %s", store, partition,
                mdb_strerror(rc));
  return (int)visited;
}

/* The mark of store/partition into m[0..2]: 1, 0 none, or -1. */
static int read_mark(ls_state *s, const char *store, int32_t partition, int64_t m[3]) {
  if (check_target(s, store, partition) || read_begin(s)) return -1;
  char name[NAME_LEN];
  db_name(name, store, partition);
  MDB_val k = {strlen(name), name}, v;
  int rc = mdb_get(s->rtxn, s->marks, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return fail(s, "state: mark of %s: %s", name, mdb_strerror(rc));
  if (parse_mark(&v, &m[0], &m[1], &m[2])) return fail(s, "state: mark of %s is corrupt", name);
  return 1;
}

int ls_state_get_mark_ex(ls_state *s, const char *store, int32_t partition,
                         int64_t *changelog_offset, int64_t *input_offset, int64_t *watermark) {
  enter(s);
  int64_t m[3];
  int r = read_mark(s, store, partition, m);
  int64_t c = r == 1 ? m[0] : -1, in = r == 1 ? m[1] : -1, wm = r == 1 ? m[2] : -1;
  if (changelog_offset) *changelog_offset = c;
  if (input_offset) *input_offset = in;
  if (watermark) *watermark = wm;
  return r;
}

int ls_state_get_mark(ls_state *s, const char *store, int32_t partition, int64_t *changelog_offset,
                      int64_t *input_offset) {
  return ls_state_get_mark_ex(s, store, partition, changelog_offset, input_offset, NULL);
}

/* ---- commit -------------------------------------------------------------- */

typedef struct commit_arg {
  const ls_state_put *puts;
  size_t n;
  const ls_state_mark *marks;
  size_t nmarks;
} commit_arg;

/* An LMDB error of a write to p's partition: MDB_MAP_FULL (grow and retry)
 * or FAILED. */
static int write_error(ls_state *s, const ls_state_put *p, int rc) {
  if (rc == MDB_MAP_FULL) return rc;
  return fail(s, "state: write %s/%" PRId32 ": %s", p->store, p->partition, mdb_strerror(rc));
}

/* The number of entries with an expiry in h's database, read once per
 * write txn. */
static int ttl_count(ls_state *s, MDB_txn *txn, handle *h, MDB_dbi dbi, int64_t *n) {
  if (h->ttl_gen == s->wgen) {
    *n = h->nttl;
    return 0;
  }
  int rc = read_count(txn, dbi, n);
  if (rc) return rc;
  h->nttl = *n;
  h->ttl_gen = s->wgen;
  return 0;
}

/* Writes the count record of dbi (none for 0). */
static int write_count(MDB_txn *txn, MDB_dbi dbi, int64_t n) {
  unsigned char kb[3], vb[8];
  MDB_val k = {reserved_key(kb, TAG_COUNT), kb}, v = {8, vb};
  put_i64(vb, n);
  int rc = n > 0 ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
  return rc == MDB_NOTFOUND && n <= 0 ? 0 : rc;
}

/* Sets the count of p's database to n: in its handle now, in the database
 * when the commit ends (flush_counts), so a commit of many entries writes
 * each count record once. */
static int set_count(ls_state *s, MDB_txn *txn, const ls_state_put *p, handle *h, MDB_dbi dbi,
                     int64_t n) {
  h->nttl = n;
  if (h->cnt_gen == s->wgen) return 0; /* listed already */
  int i = find_store(s, p->store);
  if (i < 0 || h != cache_get(s, p->store, p->partition)) return write_count(txn, dbi, n);
  if (s->ncnt == s->capcnt) {
    size_t cap = s->capcnt ? s->capcnt * 2 : 16;
    counted *c = realloc(s->cnt, cap * sizeof *c);
    if (!c) return fail(s, "state: out of memory");
    s->cnt = c;
    s->capcnt = cap;
  }
  s->cnt[s->ncnt++] = (counted){i, p->partition, dbi};
  h->cnt_gen = s->wgen;
  return 0;
}

static int flush_counts(ls_state *s, MDB_txn *txn) {
  for (size_t i = 0; i < s->ncnt; i++) {
    const counted *c = &s->cnt[i];
    const handle *h = &s->stores[c->store].h[c->partition];
    int rc = write_count(txn, c->dbi, h->nttl);
    if (rc == MDB_MAP_FULL) return rc;
    if (rc)
      return fail(s, "state: write %s/%" PRId32 ": %s", s->stores[c->store].name, c->partition,
                  mdb_strerror(rc));
  }
  return 0;
}

/* Brings the expiry records of p's key to exp (0: none): its expiry record,
 * its place in the time index and the database's count. */
static int set_expiry(ls_state *s, MDB_txn *txn, const ls_state_put *p, MDB_dbi dbi, int64_t exp) {
  handle *h = cache_get(s, p->store, p->partition);
  handle tmp = {dbi, 0, 0, 0, 0}; /* not cached (out of memory earlier): no reuse */
  if (!h) h = &tmp;
  int64_t count;
  int rc = ttl_count(s, txn, h, dbi, &count);
  if (rc == 0 && count == 0 && exp == 0) return 0; /* the common case: no expiries here */
  int64_t old = 0;
  if (rc == 0 && count > 0) rc = read_expiry(txn, dbi, p->key, p->klen, &old);
  if (rc || old == exp) return rc ? write_error(s, p, rc) : 0;
  unsigned char kb[RESERVED_LEN], vb[8];
  if (old) {
    MDB_val ik = {index_key(kb, old, p->key, p->klen), kb};
    rc = mdb_del(txn, dbi, &ik, NULL);
    if (rc == MDB_NOTFOUND) rc = 0;
  }
  if (rc == 0 && exp) {
    MDB_val ik = {index_key(kb, exp, p->key, p->klen), kb}, iv = {0, vb};
    rc = mdb_put(txn, dbi, &ik, &iv, 0);
  }
  if (rc == 0) {
    MDB_val ek = {expiry_key(kb, p->key, p->klen), kb}, ev = {8, vb};
    put_be64(vb, exp);
    rc = exp ? mdb_put(txn, dbi, &ek, &ev, 0) : mdb_del(txn, dbi, &ek, NULL);
  }
  if (rc) return write_error(s, p, rc);
  int64_t delta = (exp != 0) - (old != 0);
  return delta ? set_count(s, txn, p, h, dbi, count + delta) : 0;
}

static int apply_put(ls_state *s, MDB_txn *txn, const ls_state_put *p) {
  if (check_target(s, p->store, p->partition) || check_key(s, p->store, p->klen)) return FAILED;
  if (is_reserved(p->key, p->klen))
    return fail(s, "state: %s: keys beginning 0xFF 0xFF are reserved", p->store);
  int64_t exp = p->val ? p->expire_ms : 0;
  if (exp < 0) return fail(s, "state: %s: negative expiry %" PRId64, p->store, exp);
  if (exp && p->klen > LS_STATE_EXPIRING_KEY_MAX)
    return fail(s, "state: %s: key of %zu bytes with an expiry exceeds the %d-byte limit", p->store,
                p->klen, LS_STATE_EXPIRING_KEY_MAX);
  MDB_dbi dbi;
  int r = write_dbi(s, txn, p->store, p->partition, p->val ? MDB_CREATE : 0, &dbi);
  if (r != 1) return r; /* 0: deleting from a partition that has nothing */
  MDB_val k = {p->klen, (void *)p->key}, v = {p->vlen, (void *)p->val};
  int rc = p->val ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
  if (rc == MDB_NOTFOUND && !p->val) return 0; /* deleting a missing key: it has no expiry */
  if (rc) return write_error(s, p, rc);
  return set_expiry(s, txn, p, dbi, exp);
}

static int apply_mark(ls_state *s, MDB_txn *txn, const ls_state_mark *m) {
  if (check_target(s, m->store, m->partition)) return FAILED;
  MDB_dbi dbi;
  int r = write_dbi(s, txn, m->store, m->partition, MDB_CREATE, &dbi);
  if (r != 1) return r;
  char name[NAME_LEN];
  unsigned char buf[MARK_LEN];
  db_name(name, m->store, m->partition);
  put_i64(buf, m->changelog_offset);
  put_i64(buf + 8, m->input_offset);
  put_i64(buf + 16, m->watermark);
  MDB_val k = {strlen(name), name}, v = {MARK_LEN, buf};
  int rc = mdb_put(txn, s->marks, &k, &v, 0);
  if (rc == 0 || rc == MDB_MAP_FULL) return rc;
  return fail(s, "state: write mark of %s: %s", name, mdb_strerror(rc));
}

static int commit_body(ls_state *s, MDB_txn *txn, const void *arg) {
  const commit_arg *a = arg;
  s->ncnt = 0;
  for (size_t i = 0; i < a->n; i++) {
    int rc = apply_put(s, txn, &a->puts[i]);
    if (rc) return rc;
  }
  int rc = flush_counts(s, txn);
  if (rc) return rc;
  for (size_t i = 0; i < a->nmarks; i++) {
    int rc = apply_mark(s, txn, &a->marks[i]);
    if (rc) return rc;
  }
  return 0;
}

int ls_state_commit(ls_state *s, const ls_state_put *puts, size_t n, const ls_state_mark *marks,
                    size_t nmarks, char *err, size_t errlen) {
  enter(s);
  commit_arg a = {puts, n, marks, nmarks};
  if (write_txn(s, commit_body, &a) == 0) return 0;
  copy_err(s->err, err, errlen);
  return -1;
}

/* ---- drop ---------------------------------------------------------------- */

typedef struct target {
  const char *store;
  int32_t partition;
} target;

static int drop_body(ls_state *s, MDB_txn *txn, const void *arg) {
  const target *t = arg;
  char name[NAME_LEN];
  db_name(name, t->store, t->partition);
  MDB_dbi dbi;
  int r = write_dbi(s, txn, t->store, t->partition, 0, &dbi);
  if (r != 0 && r != 1) return r;
  if (r == 1) {
    cache_set(s, t->store, t->partition, 0); /* mdb_drop closes the handle */
    int rc = mdb_drop(txn, dbi, 1);
    if (rc == MDB_MAP_FULL) return rc;
    if (rc) return fail(s, "state: cannot drop %s: %s", name, mdb_strerror(rc));
  }
  MDB_val k = {strlen(name), name};
  int rc = mdb_del(txn, s->marks, &k, NULL);
  if (rc == 0 || rc == MDB_NOTFOUND) return 0;
  if (rc == MDB_MAP_FULL) return rc;
  return fail(s, "state: cannot drop the mark of %s: %s", name, mdb_strerror(rc));
}

int ls_state_drop_partition(ls_state *s, const char *store, int32_t partition, char *err,
                            size_t errlen) {
  enter(s);
  target t = {store, partition};
  if (check_target(s, store, partition) == 0 && write_txn(s, drop_body, &t) == 0) return 0;
  copy_err(s->err, err, errlen);
  return -1;
}

/* ---- list ---------------------------------------------------------------- */

typedef struct list_entry {
  char store[LS_STATE_STORE_MAX + 1];
  int32_t partition;
  size_t keys, bytes;
  int64_t changelog_offset, input_offset;
} list_entry;

typedef struct list_acc {
  list_entry *e;
  size_t n, cap;
} list_acc;

static int cmp_entry(const void *a, const void *b) {
  const list_entry *x = a, *y = b;
  int c = strcmp(x->store, y->store);
  return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Fills e from the database called name (its handle opened if needed). */
static int describe(ls_state *s, const char *name, list_entry *e) {
  const handle *h = cache_get(s, e->store, e->partition);
  MDB_dbi dbi = h ? h->dbi : 0;
  int rc = 0;
  if (!dbi && (rc = mdb_dbi_open(s->rtxn, name, 0, &dbi)) == 0 &&
      cache_pending(s, e->store, e->partition, dbi))
    return FAILED;
  MDB_stat st;
  if (rc == 0) rc = mdb_stat(s->rtxn, dbi, &st);
  if (rc) return fail(s, "state: cannot read %s: %s", name, mdb_strerror(rc));
  int64_t nttl = 0; /* each has an expiry record and an index entry, plus the count */
  if ((rc = read_count(s->rtxn, dbi, &nttl)) != 0)
    return fail(s, "state: cannot read %s: %s", name, mdb_strerror(rc));
  size_t reserved = nttl > 0 ? 1 + 2 * (size_t)nttl : 0;
  e->keys = st.ms_entries > reserved ? st.ms_entries - reserved : 0;
  e->bytes = (size_t)st.ms_psize * (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
  MDB_val k = {strlen(name), (void *)name}, v;
  int64_t wm;
  e->changelog_offset = e->input_offset = -1;
  rc = mdb_get(s->rtxn, s->marks, &k, &v);
  if (rc == 0 && parse_mark(&v, &e->changelog_offset, &e->input_offset, &wm))
    e->changelog_offset = e->input_offset = -1;
  return 0;
}

static int list_add(ls_state *s, list_acc *acc, const MDB_val *key) {
  list_entry e;
  char name[NAME_LEN];
  if (key->mv_size >= NAME_LEN || parse_name(key->mv_data, key->mv_size, e.store, &e.partition))
    return 0; /* the marks database, or a name that is not ours */
  memcpy(name, key->mv_data, key->mv_size);
  name[key->mv_size] = '\0';
  if (describe(s, name, &e)) return FAILED;
  if (acc->n == acc->cap) {
    size_t cap = acc->cap ? acc->cap * 2 : 32;
    list_entry *n = realloc(acc->e, cap * sizeof *n);
    if (!n) return fail(s, "state: out of memory");
    acc->e = n;
    acc->cap = cap;
  }
  acc->e[acc->n++] = e;
  return 0;
}

/* Collects every "<store>/<partition>" database of the main database. */
static int list_collect(ls_state *s, list_acc *acc) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(s->rtxn, s->main, &c);
  if (rc) return fail(s, "state: cannot list: %s", mdb_strerror(rc));
  MDB_val k, v;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    if (list_add(s, acc, &k)) break;
  mdb_cursor_close(c);
  if (rc == 0) return FAILED; /* list_add failed */
  if (rc != MDB_NOTFOUND) return fail(s, "state: cannot list: %s", mdb_strerror(rc));
  return 0;
}

int ls_state_list(ls_state *s, ls_state_list_fn fn, void *ud) {
  enter(s);
  list_acc acc = {NULL, 0, 0};
  int rc = read_begin(s) ? FAILED : list_collect(s, &acc);
  if (rc == 0) {
    rc = read_export(s);
  } else {
    read_drop(s); /* aborting closes the handles it opened */
    forget_pending(s);
  }
  if (rc == 0 && acc.n) qsort(acc.e, acc.n, sizeof *acc.e, cmp_entry);
  for (size_t i = 0; rc == 0 && i < acc.n; i++) {
    const list_entry *e = &acc.e[i];
    if (fn(ud, e->store, e->partition, e->keys, e->bytes, e->changelog_offset, e->input_offset))
      break;
  }
  free(acc.e);
  return rc ? -1 : 0;
}

/* ---- entry keys ------------------------------------------------------------ */

size_t ls_state_entry_prefix(void *out, const void *mkey, size_t mklen) {
  if (mklen > LS_STATE_MSGKEY_MAX) return 0;
  unsigned char *o = out;
  o[0] = (unsigned char)(mklen >> 8);
  o[1] = (unsigned char)(mklen & 0xff);
  if (mklen) memcpy(o + 2, mkey, mklen);
  return mklen + 2;
}

int ls_state_entry_split(const void *key, size_t klen, const void **mkey, size_t *mklen,
                         const void **skey, size_t *sklen) {
  const unsigned char *k = key;
  if (klen < 2) return -1;
  size_t n = (size_t)k[0] << 8 | k[1];
  if (n > klen - 2) return -1;
  *mkey = k + 2;
  *mklen = n;
  *skey = k + 2 + n;
  *sklen = klen - 2 - n;
  return 0;
}
