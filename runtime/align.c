/* align.c - the order of records across a join's inputs (see align.h).
 *
 * Each aligned topic-partition is a member: a ring of the records consumed
 * and not yet taken, whether the consumer reported its end since its last
 * record, and since when a task has been waiting for it. A task is partition
 * p of one group of joined topics (topics sharing a store, transitively);
 * taking from a task pops the member head with the smallest timestamp (ties:
 * the topic first in its store's list, i.e. the table, or the side an as-of
 * join records, before the rows that look it up) for as long as no member
 * that must be waited for is empty. */
#include "align.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

typedef struct member {
  rd_kafka_message_t **q; /* ring of cap entries */
  int head, n, cap;
  int assigned;
  int eof;           /* the consumer reported the partition's end; no record since */
  int paused;
  int warned;        /* the give-up after lag_wait_ms was logged */
  double empty_from; /* when a task first waited for it; 0: none is */
} member;

struct ls_align {
  const ls_spec *spec;
  ls_align_opts o;
  int *group;        /* per input: its group, or -1 (not aligned) */
  int *rank;         /* per input: order on equal timestamps */
  int ngroups;
  member **m;        /* per input: members by partition (aligned inputs only) */
  int32_t *nparts;   /* per input: length of m[t] */
  int32_t maxpart;   /* 1 + the highest partition seen */
  long held;
  int next_task;
  double deadline;
};

/* ---- groups ---------------------------------------------------------------- */

static int find(int *parent, int x) {
  while (parent[x] != x) x = parent[x] = parent[parent[x]];
  return x;
}

/* Inputs sharing a store are one group; an input in no shared store, none. */
static int make_groups(ls_align *al) {
  const ls_spec *s = al->spec;
  int *parent = ls_xcalloc((size_t)s->ninputs, sizeof *parent);
  for (int t = 0; t < s->ninputs; t++) parent[t] = t, al->group[t] = -1, al->rank[t] = 1 << 20;
  for (int k = 0; k < s->nstores; k++) {
    const ls_store_spec *ss = &s->stores[k];
    for (int i = 0; ss->ntopics > 1 && i < ss->ntopics; i++) {
      int t = ss->topics[i];
      if (s->inputs[t].global) continue;
      parent[find(parent, t)] = find(parent, ss->topics[0]);
      al->group[t] = 0; /* aligned; numbered below */
    }
  }
  int n = 0;
  for (int t = 0; t < s->ninputs; t++) {
    if (al->group[t] < 0) continue;
    int root = find(parent, t), g = -1;
    for (int u = 0; u < t && g < 0; u++)
      if (al->group[u] >= 0 && find(parent, u) == root) g = al->group[u];
    al->group[t] = g >= 0 ? g : n++;
  }
  free(parent);
  return n;
}

/* Does some store list topic u first and v after it (u's records go first on a tie)? */
static int goes_before(const ls_spec *s, int u, int v) {
  for (int k = 0; k < s->nstores; k++) {
    const ls_store_spec *ss = &s->stores[k];
    if (ss->ntopics < 2 || ss->topics[0] != u || s->inputs[u].global) continue;
    for (int i = 1; i < ss->ntopics; i++)
      if (ss->topics[i] == v && !s->inputs[v].global) return 1;
  }
  return 0;
}

/* Ranks for ties: every store's first topic (a table, the side an as-of join
 * records) before the topics that look it up, across all stores, so a topic
 * that looks up one store and is looked up in another sits between the two
 * (a topological order; among topics the stores leave unordered, and any in
 * a cycle of them, the earlier input first). */
static void rank_inputs(ls_align *al) {
  const ls_spec *s = al->spec;
  int n = s->ninputs, next = 0;
  int *before = ls_xcalloc((size_t)n, sizeof *before); /* unranked topics that go before t */
  for (int u = 0; u < n; u++)
    for (int v = 0; v < n; v++)
      if (u != v && goes_before(s, u, v)) before[v]++;
  for (int t = 0; t < n; t++) al->rank[t] = -1;
  while (next < n) {
    int t = 0;
    while (t < n && (al->rank[t] >= 0 || before[t] > 0)) t++;
    if (t == n) /* a cycle: the earliest unranked input goes next */
      for (t = 0; al->rank[t] >= 0; t++) continue;
    al->rank[t] = next++;
    for (int v = 0; v < n; v++)
      if (al->rank[v] < 0 && goes_before(s, t, v)) before[v]--;
  }
  free(before);
}

ls_align *ls_align_new(const ls_spec *spec, const ls_align_opts *o) {
  if (spec->ninputs == 0) return NULL;
  ls_align *al = ls_xcalloc(1, sizeof *al);
  al->spec = spec;
  al->o = *o;
  if (al->o.cap < 2) al->o.cap = 2;
  al->group = ls_xcalloc((size_t)spec->ninputs, sizeof *al->group);
  al->rank = ls_xcalloc((size_t)spec->ninputs, sizeof *al->rank);
  al->m = ls_xcalloc((size_t)spec->ninputs, sizeof *al->m);
  al->nparts = ls_xcalloc((size_t)spec->ninputs, sizeof *al->nparts);
  al->ngroups = make_groups(al);
  rank_inputs(al);
  al->deadline = -1;
  if (al->ngroups == 0) {
    ls_align_free(al);
    return NULL;
  }
  return al;
}

static void drop_records(ls_align *al, member *x) {
  for (int i = 0; i < x->n; i++) rd_kafka_message_destroy(x->q[(x->head + i) % x->cap]);
  al->held -= x->n;
  x->head = x->n = 0;
}

void ls_align_free(ls_align *al) {
  if (!al) return;
  for (int t = 0; t < al->spec->ninputs; t++) {
    for (int32_t p = 0; p < al->nparts[t]; p++) {
      drop_records(al, &al->m[t][p]);
      free(al->m[t][p].q);
    }
    free(al->m[t]);
  }
  free(al->m);
  free(al->nparts);
  free(al->group);
  free(al->rank);
  free(al);
}

void ls_align_set_limits(ls_align *al, int wait_ms, int cap) {
  if (!al) return;
  al->o.wait_ms = wait_ms;
  al->o.cap = cap < 2 ? 2 : cap;
}

int ls_align_has(const ls_align *al, int t) { return al && t >= 0 && t < al->spec->ninputs && al->group[t] >= 0; }

/* ---- members --------------------------------------------------------------- */

/* The member of input t, partition p, made on first use; NULL when t is not aligned. */
static member *member_of(ls_align *al, int t, int32_t p) {
  if (!ls_align_has(al, t) || p < 0) return NULL;
  if (p >= al->nparts[t]) {
    int32_t n = p + 1;
    al->m[t] = ls_xrealloc(al->m[t], (size_t)n * sizeof *al->m[t]);
    memset(al->m[t] + al->nparts[t], 0, (size_t)(n - al->nparts[t]) * sizeof *al->m[t]);
    al->nparts[t] = n;
    if (n > al->maxpart) al->maxpart = n;
  }
  return &al->m[t][p];
}

static int input_named(const ls_align *al, const char *name) {
  for (int t = 0; t < al->spec->ninputs; t++)
    if (al->group[t] >= 0 && strcmp(al->spec->inputs[t].name, name) == 0) return t;
  return -1;
}

static void set_paused(ls_align *al, int t, int32_t p, member *x, int pause) {
  if (x->paused == pause) return;
  x->paused = pause;
  if (al->o.pause) al->o.pause(al->o.ud, al->spec->inputs[t].name, p, pause);
}

static void reset(ls_align *al, int t, int32_t p, member *x) {
  drop_records(al, x);
  set_paused(al, t, p, x, 0);
  x->eof = x->warned = 0;
  x->empty_from = 0;
}

void ls_align_assign(ls_align *al, const rd_kafka_topic_partition_list_t *parts) {
  for (int i = 0; al && i < parts->cnt; i++) {
    int t = input_named(al, parts->elems[i].topic);
    member *x = member_of(al, t, parts->elems[i].partition);
    if (!x) continue;
    reset(al, t, parts->elems[i].partition, x);
    x->assigned = 1;
  }
}

void ls_align_revoke(ls_align *al, const rd_kafka_topic_partition_list_t *parts) {
  for (int i = 0; al && i < parts->cnt; i++) {
    int t = input_named(al, parts->elems[i].topic);
    if (t < 0 || parts->elems[i].partition >= al->nparts[t] || parts->elems[i].partition < 0) continue;
    member *x = &al->m[t][parts->elems[i].partition];
    reset(al, t, parts->elems[i].partition, x);
    x->assigned = 0;
  }
}

void ls_align_clear(ls_align *al) {
  for (int t = 0; al && t < al->spec->ninputs; t++)
    for (int32_t p = 0; p < al->nparts[t]; p++) reset(al, t, p, &al->m[t][p]);
}

/* ---- in -------------------------------------------------------------------- */

static void enqueue(ls_align *al, int t, member *x, rd_kafka_message_t *m) {
  if (x->n == x->cap) {
    int cap = x->cap ? x->cap * 2 : 64;
    rd_kafka_message_t **q = ls_xcalloc((size_t)cap, sizeof *q);
    for (int i = 0; i < x->n; i++) q[i] = x->q[(x->head + i) % x->cap];
    free(x->q);
    x->q = q;
    x->head = 0;
    x->cap = cap;
  }
  x->q[(x->head + x->n++) % x->cap] = m;
  al->held++;
  x->assigned = 1;
  x->eof = x->warned = 0;
  x->empty_from = 0;
  if (x->n >= al->o.cap) set_paused(al, t, m->partition, x, 1);
}

int ls_align_push(ls_align *al, rd_kafka_message_t **msgs, int n,
                  int (*topic_of)(void *ud, const rd_kafka_message_t *m), void *ud) {
  int kept = 0;
  for (int i = 0; i < n; i++) {
    rd_kafka_message_t *m = msgs[i];
    int t = topic_of(ud, m);
    member *x = m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF ? NULL : member_of(al, t, m->partition);
    if (!x) {
      msgs[kept++] = m;
    } else if (m->err) { /* the partition's end: nothing more until a record comes */
      x->eof = 1;
      rd_kafka_message_destroy(m);
    } else {
      enqueue(al, t, x, m);
    }
  }
  return kept;
}

/* ---- out ------------------------------------------------------------------- */

static int64_t head_ts(const member *x) { return rd_kafka_message_timestamp(x->q[x->head], NULL); }

/* Does the empty member x hold task back? Starts its wait on first asking. */
static int must_wait(ls_align *al, int t, int32_t p, member *x, double now) {
  double limit = x->eof ? al->o.wait_ms : al->o.lag_wait_ms;
  if (x->empty_from == 0) x->empty_from = now;
  if (now - x->empty_from < limit) {
    double end = x->empty_from + limit;
    if (al->deadline < 0 || end < al->deadline) al->deadline = end;
    return 1;
  }
  if (!x->eof && !x->warned) {
    x->warned = 1;
    ls_info("joins: %s[%d] fetched nothing for %.0f s though it was not at its end; its partners go on "
            "without it (records of it that come later join as they are processed)",
            al->spec->inputs[t].name, (int)p, limit / 1000);
  }
  return 0;
}

/* Takes up to max records of task (g, p) into out. */
static int take_task(ls_align *al, int g, int32_t p, rd_kafka_message_t **out, int max, double now) {
  int got = 0;
  while (got < max) {
    int best = -1, blocked = 0, any = 0;
    for (int t = 0; t < al->spec->ninputs; t++)
      if (al->group[t] == g && p < al->nparts[t] && al->m[t][p].n) any = 1;
    for (int t = 0; any && t < al->spec->ninputs; t++) {
      if (al->group[t] != g || p >= al->nparts[t] || !al->m[t][p].assigned) continue;
      member *x = &al->m[t][p];
      if (x->n == 0) {
        blocked |= must_wait(al, t, p, x, now);
        continue;
      }
      if (best < 0) {
        best = t;
        continue;
      }
      int64_t a = head_ts(x), b = head_ts(&al->m[best][p]);
      if (a < b || (a == b && al->rank[t] < al->rank[best])) best = t;
    }
    if (!any) { /* drained: the next burst waits afresh */
      for (int t = 0; t < al->spec->ninputs; t++)
        if (al->group[t] == g && p < al->nparts[t]) al->m[t][p].empty_from = 0;
    }
    if (blocked || best < 0) break;
    member *x = &al->m[best][p];
    out[got++] = x->q[x->head];
    x->head = (x->head + 1) % x->cap;
    x->n--;
    al->held--;
    if (x->paused && x->n <= al->o.cap / 2) set_paused(al, best, p, x, 0);
  }
  return got;
}

int ls_align_take(ls_align *al, rd_kafka_message_t **out, int max, double now) {
  al->deadline = -1;
  if (al->held == 0 || max <= 0) return 0;
  int ntasks = al->ngroups * al->maxpart, got = 0;
  for (int k = 0; k < ntasks && got < max; k++) {
    int task = (al->next_task + k) % ntasks;
    got += take_task(al, task / al->maxpart, task % al->maxpart, out + got, max - got, now);
  }
  if (ntasks) al->next_task = (al->next_task + 1) % ntasks;
  return got;
}

long ls_align_held(const ls_align *al) { return al ? al->held : 0; }

double ls_align_deadline(const ls_align *al) { return al && al->held ? al->deadline : -1; }
