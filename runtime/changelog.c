/* changelog.c - changelog topics: produce and replay (see changelog.h). */
#include "changelog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

#define INPUT_OFFSET_HEADER "luastream.input.offset"
#define EXPIRE_HEADER "luastream.expire.ms"
#define OFFSETS_HEADER "luastream.input.offsets" /* stores serving several inputs */

struct ls_changelog {
  ls_kafka *k;
  const ls_spec *spec;
  ls_state *state;
  char **names;              /* per store */
  rd_kafka_topic_t **rkt;    /* per store */
  int64_t **acked;           /* per store, per partition: next changelog offset */
};

static void *dup_bytes(const void *p, size_t n) {
  void *d = malloc(n ? n : 1);
  if (d && n) memcpy(d, p, n);
  return d;
}

/* ---- topics ---------------------------------------------------------------- */

/* Changelogs are compacted: the latest record of every key is kept forever,
 * so a store rebuilt from its changelog is complete however old its keys. */
static const char *const CHANGELOG_CONFIGS[] = {"cleanup.policy", "compact", NULL};

/* Creates changelog `name` like input topic `like` (on the dev broker through
 * its side channel, see ls_kafka_ensure_topic_like), or checks that an existing
 * one is compacted (when the cluster describes configs; the dev broker does not).
 * One with fewer partitions than its input stopped the app at start already
 * (app.c, check_changelogs); here that can only be a race, so a warning. */
static void prepare(ls_changelog *c, const char *name, const char *like) {
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


void ls_changelog_close(ls_changelog *c) {
  if (!c) return;
  for (int i = 0; i < c->spec->nstores; i++) {
    if (c->names) free(c->names[i]);
    if (c->acked) free(c->acked[i]);
  }
  free(c->names);
  free(c->rkt);
  free(c->acked);
  free(c);
}

ls_changelog *ls_changelog_open(ls_kafka *k, const ls_spec *spec, ls_state *state, char *err,
                                size_t errlen) {
  ls_changelog *c = calloc(1, sizeof *c);
  int n = spec->nstores;
  if (c) {
    c->k = k, c->spec = spec, c->state = state;
    c->names = calloc((size_t)n, sizeof *c->names);
    c->rkt = calloc((size_t)n, sizeof *c->rkt);
    c->acked = calloc((size_t)n, sizeof *c->acked);
  }
  if (!c || !c->names || !c->rkt || !c->acked) {
    ls_changelog_close(c);
    return snprintf(err, errlen, "out of memory"), NULL;
  }
  for (int i = 0; i < n; i++) {
    const char *name = spec->stores[i].changelog;
    int source = spec->stores[i].source; /* its topic is its changelog: nothing to make or produce */
    c->names[i] = strdup(name);
    if (c->names[i] && !source) prepare(c, name, spec->inputs[spec->stores[i].topic].name);
    c->rkt[i] = c->names[i] && !source ? ls_kafka_topic(k, name) : NULL;
    c->acked[i] = malloc(LS_CHANGELOG_MAX_PARTITIONS * sizeof **c->acked);
    if (!c->names[i] || (!c->rkt[i] && !source) || !c->acked[i]) {
      snprintf(err, errlen, "cannot set up %s", name);
      ls_changelog_close(c);
      return NULL;
    }
    for (int p = 0; p < LS_CHANGELOG_MAX_PARTITIONS; p++) c->acked[i][p] = -1;
  }
  return c;
}

const char *ls_changelog_name(const ls_changelog *c, int store) { return c->names[store]; }

int64_t ls_changelog_acked(const ls_changelog *c, int store, int32_t p) { return c->acked[store][p]; }

void ls_changelog_forget(ls_changelog *c, int store, int32_t p) { c->acked[store][p] = -1; }

/* ---- produce ----------------------------------------------------------------- */

/* The headers of a change: the input offset(s) it reflects and its expiry.
 * offsets[t] is the next offset of the store's topic t in this partition. */
static rd_kafka_headers_t *change_headers(const ls_changelog *c, int store, const int64_t *offsets,
                                          int64_t expire_ms) {
  const ls_store_spec *ss = &c->spec->stores[store];
  char num[32];
  rd_kafka_headers_t *h = rd_kafka_headers_new(3);
  snprintf(num, sizeof num, "%lld", (long long)offsets[0]);
  rd_kafka_header_add(h, INPUT_OFFSET_HEADER, -1, num, -1);
  if (ss->ntopics > 1) { /* "topic=offset,topic=offset" */
    char few[1024];
    size_t size = 1;
    for (int t = 0; t < ss->ntopics; t++) size += strlen(c->spec->inputs[ss->topics[t]].name) + 24;
    char *text = size <= sizeof few ? few : ls_xmalloc(size);
    size_t o = 0;
    for (int t = 0; t < ss->ntopics; t++)
      o += (size_t)snprintf(text + o, size - o, "%s%s=%lld", t ? "," : "", c->spec->inputs[ss->topics[t]].name,
                            (long long)offsets[t]);
    rd_kafka_header_add(h, OFFSETS_HEADER, -1, text, (ssize_t)o);
    if (text != few) free(text);
  }
  if (expire_ms > 0) {
    snprintf(num, sizeof num, "%lld", (long long)expire_ms);
    rd_kafka_header_add(h, EXPIRE_HEADER, -1, num, -1);
  }
  return h;
}

int ls_changelog_produce(ls_changelog *c, int store, int32_t p, const void *key, size_t klen,
                         const void *val, size_t vlen, const int64_t *offsets, int64_t expire_ms,
                         char *err, size_t errlen) {
  ls_record r = {c->rkt[store], p, key, klen, val, val ? vlen : 0, 0,
                 change_headers(c, store, offsets, val ? expire_ms : 0), &c->acked[store][p]};
  char why[512];
  int e = ls_kafka_produce(c->k, &r, why, sizeof why);
  if (e == 0) return 0;
  const char *like = c->spec->inputs[c->spec->stores[store].topic].name;
  if (e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    snprintf(err, errlen, "changelog %s[%d]: %s (it needs as many partitions as topic %s)",
             c->names[store], (int)p, why, like);
  else
    snprintf(err, errlen, "changelog %s[%d]: %s", c->names[store], (int)p, why);
  return -1;
}

/* ---- replay ------------------------------------------------------------------- */

typedef struct restore_ctx {
  ls_changelog *c;
  int store;
  int n;                 /* partitions being restored */
  const int32_t *parts;
  const int64_t *committed;
  int64_t *next;         /* per partition: next changelog offset */
  int64_t *watermark;    /* per partition: the stored mark's watermark (-1: none), kept */
  long *pseen, *papplied; /* per partition */
  const int64_t *ends;   /* per partition: where the replay stops (set before the first record) */
  double t0, last_log;   /* for progress lines */
  long seen, applied;
  ls_state_put *puts;
  size_t np, cap;
  char err[512];
} restore_ctx;

/* A decimal header of the record, or -1 when it has none. */
static int64_t number_header(const rd_kafka_message_t *m, const char *name) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t len;
  if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, name, &v, &len) || !v ||
      len > 20)
    return -1;
  char num[24];
  memcpy(num, v, len);
  num[len] = 0;
  return strtoll(num, NULL, 10);
}

/* The committed offset of the store's topic t for partition index i. */
static int64_t committed_of(const restore_ctx *r, int t, int i) { return r->committed[t * r->n + i]; }

/* Does a change that reflects topic t up to offset `in` (the next offset; -1:
 * nothing of t was processed since the partition was assigned, so the change
 * holds nothing of t that is not committed) fit the committed state? */
static int covers(const restore_ctx *r, int t, int i, int64_t in) {
  return in < 0 || (committed_of(r, t, i) >= 0 && in <= committed_of(r, t, i));
}

/* The offset of topic `name` in an OFFSETS_HEADER value ("topic=offset,..."),
 * or -1 when it is not there. */
static int64_t listed_offset(const char *v, size_t len, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = v, *end = v + len; p + nl + 1 < end; p++)
    if (memcmp(p, name, nl) == 0 && p[nl] == '=' && (p == v || p[-1] == ','))
      return strtoll(p + nl + 1, NULL, 10);
  return -1;
}

/* Is the change m, of partition index i, part of the committed state? Every
 * input it reflects must be covered by the group's committed offset, and at
 * least one by a real offset: a change made with nothing processed since the
 * assignment (an expiry, an idle window closed) is not known to have been
 * committed with its outputs, so it is left out and made again. */
static int covered(const restore_ctx *r, const rd_kafka_message_t *m, int i) {
  const ls_store_spec *ss = &r->c->spec->stores[r->store];
  int64_t in = number_header(m, INPUT_OFFSET_HEADER);
  if (!covers(r, 0, i, in)) return 0;
  int anchored = in >= 0;
  if (ss->ntopics == 1) return anchored;
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t len;
  if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, OFFSETS_HEADER, &v, &len) || !v)
    return 0;
  for (int t = 1; t < ss->ntopics; t++) {
    int64_t off = listed_offset(v, len, r->c->spec->inputs[ss->topics[t]].name);
    if (!covers(r, t, i, off)) return 0;
    anchored |= off >= 0;
  }
  return anchored;
}

/* Writes the collected entries and every partition's progress in one transaction. */
static int restore_flush(restore_ctx *r) {
  ls_changelog *c = r->c;
  const char *store = c->spec->stores[r->store].name;
  ls_state_mark *marks = calloc((size_t)r->n, sizeof *marks);
  if (!marks) return snprintf(r->err, sizeof r->err, "out of memory"), -1;
  for (int i = 0; i < r->n; i++)
    marks[i] = (ls_state_mark){store, r->parts[i], r->next[i], committed_of(r, 0, i), r->watermark[i]};
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

static int restore_visit(void *ud, rd_kafka_message_t *m) {
  restore_ctx *r = ud;
  int i = 0;
  while (i < r->n && r->parts[i] != m->partition) i++;
  if (i == r->n) return 0;
  r->seen++;
  r->pseen[i]++;
  r->next[i] = m->offset + 1;
  if (!m->key || !covered(r, m, i)) return 0;
  r->papplied[i]++;
  if ((r->seen & 0x3fff) == 0) log_progress(r);
  if (r->np == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 1024;
    ls_state_put *p = realloc(r->puts, cap * sizeof *p);
    if (!p) return -1;
    r->puts = p;
    r->cap = cap;
  }
  int64_t expire = m->payload ? number_header(m, EXPIRE_HEADER) : 0;
  void *key = dup_bytes(m->key, m->key_len), *val = m->payload ? dup_bytes(m->payload, m->len) : NULL;
  if (!key || (m->payload && !val)) {
    free(key), free(val);
    return -1;
  }
  r->puts[r->np++] = (ls_state_put){r->c->spec->stores[r->store].name, m->partition, key, m->key_len,
                                    val, m->len, expire > 0 ? expire : 0};
  r->applied++;
  return r->np >= 20000 ? restore_flush(r) : 0;
}

/* Where partition p of store s replays from: its mark. A changelog that ends
 * before the mark is not the one the local state was built from (a new or
 * reset cluster, a deleted topic): that state is stale, so it is dropped and
 * rebuilt from the whole changelog, as Kafka Streams does on an out-of-range
 * offset. (Committed input offsets are no evidence either way: a real Kafka
 * expires them, and good state must survive that.) */
static int replay_start(ls_changelog *c, int s, int32_t p, int64_t *from, int64_t *wm, char *err,
                        size_t errlen) {
  const char *store = c->spec->stores[s].name;
  int64_t io, lo, hi;
  *wm = -1;
  if (ls_state_get_mark_ex(c->state, store, p, from, &io, wm) <= 0 || *from <= 0) return *from = 0, 0;
  if (ls_kafka_watermarks(c->k, c->names[s], p, &lo, &hi, err, errlen)) return -1;
  if (*from <= hi) return 0;
  *wm = -1;
  ls_warn("state %s[%d]: the local state was saved up to changelog offset %lld, but %s[%d] ends at "
          "%lld: it belongs to other data (a new or reset cluster?); dropping it and rebuilding "
          "from the changelog", store, (int)p, (long long)*from, c->names[s], (int)p, (long long)hi);
  *from = 0;
  return ls_state_drop_partition(c->state, store, p, err, errlen);
}

int ls_changelog_restore(ls_changelog *c, int s, const int32_t *parts, int n, const int64_t *committed,
                         char *err, size_t errlen) {
  int64_t *from = calloc((size_t)n, sizeof *from), *ends = calloc((size_t)n, sizeof *ends);
  restore_ctx r = {.c = c, .store = s, .n = n, .parts = parts, .committed = committed,
                   .next = calloc((size_t)n, sizeof(int64_t)),
                   .watermark = calloc((size_t)n, sizeof(int64_t)),
                   .pseen = calloc((size_t)n, sizeof(long)),
                   .papplied = calloc((size_t)n, sizeof(long))};
  int rc = (!from || !ends || !r.next || !r.watermark || !r.pseen || !r.papplied)
               ? (snprintf(err, errlen, "out of memory"), -1) : 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    rc = replay_start(c, s, parts[i], &from[i], &r.watermark[i], err, errlen);
    r.next[i] = from[i];
  }
  double t0 = ls_mono_ms();
  r.ends = ends;
  r.t0 = r.last_log = t0;
  if (rc == 0) rc = ls_kafka_replay(c->k, c->names[s], parts, from, NULL, n, ends, restore_visit, &r, err, errlen);
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
  free(r.watermark);
  free(r.pseen);
  free(r.papplied);
  free(from);
  free(ends);
  return rc;
}

