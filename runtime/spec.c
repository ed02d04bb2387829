/* spec.c - copies the Lua app spec into C (see spec.h).
 *
 * Every field is required and read as it is: the Lua side resolved the
 * defaults, aliases and policies. What is checked here is only that the
 * spec is one C can interpret (types, ranges C stores, names C maps to an
 * enum); anything else is a bug in luastream.runtime, reported with the
 * field's path. Its arrays and strings are the runtime's own structures:
 * allocated with mem.h's ls_x* functions (out of memory exits). */
#include "spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* Reads one table of the spec: the Lua state, where errors go, and the
 * path of the table ("spec", "spec.inputs[2]") for messages. */
typedef struct rd {
  lua_State *L;
  char *err;
  size_t errlen;
  const char *path;
} rd;

/* "<path>.<key>: <message>" into err; returns -1. */
static int fail(const rd *r, const char *key, const char *fmt, ...) {
  int n = snprintf(r->err, r->errlen, "%s%s%s: ", r->path, key ? "." : "", key ? key : "");
  if (n >= 0 && (size_t)n < r->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Pushes field key of the table at t when it has Lua type `type` (or is nil
 * and `optional`) and returns 0; else -1 with nothing pushed. */
static int get(const rd *r, int t, const char *key, int type, int optional) {
  lua_pushstring(r->L, key);
  lua_rawget(r->L, t);
  int got = lua_type(r->L, -1);
  if (got == type || (optional && got == LUA_TNIL)) return 0;
  lua_pop(r->L, 1);
  if (got == LUA_TNIL) return fail(r, key, "missing (luastream.runtime sets every field of the spec)");
  return fail(r, key, "expected a %s, got %s", lua_typename(r->L, type), lua_typename(r->L, got));
}

/* A copy of string field key in *out (NULL for nil when optional). */
static int string_field(const rd *r, int t, const char *key, int optional, char **out) {
  *out = NULL;
  if (get(r, t, key, LUA_TSTRING, optional)) return -1;
  if (lua_isnil(r->L, -1)) {
    lua_pop(r->L, 1);
    return 0;
  }
  size_t n;
  const char *v = lua_tolstring(r->L, -1, &n);
  if (n == 0 || strlen(v) != n) {
    lua_pop(r->L, 1);
    return fail(r, key, "expected a non-empty string without NUL bytes");
  }
  *out = ls_xstrdup(v);
  lua_pop(r->L, 1);
  return 0;
}

/* Number field key in [lo, hi], a whole number when `whole`. */
static int number_field(const rd *r, int t, const char *key, double lo, double hi, int whole, double *out) {
  if (get(r, t, key, LUA_TNUMBER, 0)) return -1;
  double v = lua_tonumber(r->L, -1);
  lua_pop(r->L, 1);
  if (!(v >= lo && v <= hi) || (whole && v != floor(v)))
    return fail(r, key, "expected a %s in [%.17g, %.17g], got %.17g", whole ? "whole number" : "number", lo, hi, v);
  *out = v;
  return 0;
}

static int bool_field(const rd *r, int t, const char *key, int *out) {
  if (get(r, t, key, LUA_TBOOLEAN, 0)) return -1;
  *out = lua_toboolean(r->L, -1);
  lua_pop(r->L, 1);
  return 0;
}

/* String field key, one of names[0..n): its index in *out, and when copy
 * is not NULL a copy of the name in *copy. */
static int choice_field(const rd *r, int t, const char *key, const char *const *names, int n, int *out,
                        char **copy) {
  if (get(r, t, key, LUA_TSTRING, 0)) return -1;
  const char *v = lua_tostring(r->L, -1);
  int found = -1;
  for (int i = 0; i < n && found < 0; i++)
    if (strcmp(v, names[i]) == 0) found = i;
  if (found < 0) fail(r, key, "unknown value '%s'", v);
  lua_pop(r->L, 1);
  if (found < 0) return -1;
  *out = found;
  if (copy) *copy = ls_xstrdup(names[found]);
  return 0;
}

/* A format field: one of codec.c's canonical names (Lua resolved aliases). */
static int format_field(const rd *r, int t, const char *key, ls_format *out) {
  if (get(r, t, key, LUA_TSTRING, 0)) return -1;
  const char *v = lua_tostring(r->L, -1);
  int rc = ls_format_parse(v, out);
  if (rc) fail(r, key, "unknown format '%s'", v);
  lua_pop(r->L, 1);
  return rc;
}

/* Pushes list field key (a table) and its length in *n. */
static int list_field(const rd *r, int t, const char *key, int *n) {
  if (get(r, t, key, LUA_TTABLE, 0)) return -1;
  *n = (int)lua_objlen(r->L, -1);
  return 0;
}

/* Entry i (0-based) of the list at the top: pushed, with its reader. */
static int list_entry(const rd *r, const char *key, int i, rd *er, char *path, size_t pathlen) {
  snprintf(path, pathlen, "%s.%s[%d]", r->path, key, i + 1);
  *er = (rd){r->L, r->err, r->errlen, path};
  lua_rawgeti(r->L, -1, i + 1);
  if (lua_istable(r->L, -1)) return 0;
  fail(er, NULL, "expected a table, got %s", lua_typename(r->L, lua_type(r->L, -1)));
  lua_pop(r->L, 1);
  return -1;
}

static const char *const ARRAYS_NAMES[] = {"table", "vec"};
static const char *const GUARANTEE_NAMES[] = {"at-least-once", "exactly-once"};
static const char *const OFFSET_RESET_NAMES[] = {"earliest", "latest"};
static const char *const ON_ERROR_NAMES[] = {
  [LS_ON_ERROR_STOP] = "stop", [LS_ON_ERROR_SKIP] = "skip", [LS_ON_ERROR_DEAD_LETTER] = "dead-letter",
  [LS_ON_ERROR_FUNCTION] = "function"};
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

const char *ls_on_error_name(ls_on_error p) {
  return (unsigned)p < (unsigned)COUNT(ON_ERROR_NAMES) ? ON_ERROR_NAMES[p] : "unknown";
}

int ls_on_error_parse(const char *name, ls_on_error *out) {
  for (int i = 0; name && i < COUNT(ON_ERROR_NAMES); i++) {
    if (strcmp(name, ON_ERROR_NAMES[i]) == 0) {
      *out = (ls_on_error)i;
      return 0;
    }
  }
  return -1;
}

/* spec.inputs (with arrays) or spec.outputs (without). Leaves the stack as it was. */
static int read_topics(const rd *r, int t, const char *key, int inputs, ls_topic_spec **out, int *n) {
  int count;
  if (list_field(r, t, key, &count)) return -1;
  *out = ls_xcalloc((size_t)count + 1, sizeof **out);
  *n = count;
  for (int i = 0; i < count; i++) {
    rd er;
    char path[64];
    if (list_entry(r, key, i, &er, path, sizeof path)) return lua_pop(r->L, 1), -1;
    int tt = lua_gettop(r->L), arrays = 0;
    ls_topic_spec *ts = &(*out)[i];
    if (string_field(&er, tt, "name", 0, &ts->name) || format_field(&er, tt, "key", &ts->key) ||
        format_field(&er, tt, "value", &ts->value) ||
        (inputs && choice_field(&er, tt, "arrays", ARRAYS_NAMES, COUNT(ARRAYS_NAMES), &arrays, NULL)) ||
        (inputs && bool_field(&er, tt, "tombstones", &ts->tombstones)) ||
        (inputs && bool_field(&er, tt, "global", &ts->global)))
      return lua_pop(r->L, 2), -1;
    if (arrays == 1) ts->value_flags |= LS_ARRAYS_VEC;
    lua_pop(r->L, 1);
  }
  lua_pop(r->L, 1);
  return 0;
}

static int read_sources(const rd *r, int t, ls_spec *s) {
  int count;
  if (list_field(r, t, "sources", &count)) return -1;
  s->source_every_ms = ls_xcalloc((size_t)count + 1, sizeof *s->source_every_ms);
  s->nsources = count;
  for (int i = 0; i < count; i++) {
    rd er;
    char path[64];
    if (list_entry(r, "sources", i, &er, path, sizeof path)) return lua_pop(r->L, 1), -1;
    double *every = &s->source_every_ms[i];
    if (number_field(&er, lua_gettop(r->L), "every", 0, HUGE_VAL, 0, every)) return lua_pop(r->L, 2), -1;
    lua_pop(r->L, 1);
    if (!(*every > 0 && isfinite(*every)))
      return lua_pop(r->L, 1), fail(&er, "every", "expected a positive number of ms, got %.17g", *every);
  }
  lua_pop(r->L, 1);
  return 0;
}

static int input_index(const ls_spec *s, const char *name) {
  for (int j = 0; j < s->ninputs; j++)
    if (strcmp(s->inputs[j].name, name) == 0) return j;
  return -1;
}

/* spec.stores[i].topics: the input topics the store serves, the first being
 * spec.stores[i].topic. */
static int read_store_topics(const rd *er, int st, const ls_spec *s, ls_store_spec *ss) {
  int n;
  if (list_field(er, st, "topics", &n)) return -1;
  ss->topics = ls_xcalloc((size_t)n + 1, sizeof *ss->topics);
  ss->ntopics = n;
  int rc = n < 1 ? fail(er, "topics", "must name at least one topic") : 0;
  for (int j = 0; rc == 0 && j < n; j++) {
    lua_rawgeti(er->L, -1, j + 1);
    const char *name = lua_type(er->L, -1) == LUA_TSTRING ? lua_tostring(er->L, -1) : NULL;
    ss->topics[j] = name ? input_index(s, name) : -1;
    if (ss->topics[j] < 0) rc = fail(er, "topics", "entry %d is not a topic of spec.inputs", j + 1);
    lua_pop(er->L, 1);
  }
  if (rc == 0 && ss->topics[0] != ss->topic) rc = fail(er, "topics", "must begin with spec.stores[].topic");
  lua_pop(er->L, 1);
  return rc;
}

static int read_stores(const rd *r, int t, ls_spec *s) {
  int count;
  if (list_field(r, t, "stores", &count)) return -1;
  s->stores = ls_xcalloc((size_t)count + 1, sizeof *s->stores);
  s->nstores = count;
  for (int i = 0; i < count; i++) {
    rd er;
    char path[64];
    if (list_entry(r, "stores", i, &er, path, sizeof path)) return lua_pop(r->L, 1), -1;
    int st = lua_gettop(r->L);
    ls_store_spec *ss = &s->stores[i];
    char *topic = NULL;
    if (string_field(&er, st, "name", 0, &ss->name) || string_field(&er, st, "topic", 0, &topic) ||
        string_field(&er, st, "changelog", 0, &ss->changelog)) {
      free(topic);
      return lua_pop(r->L, 2), -1;
    }
    ss->topic = input_index(s, topic);
    int bad = ss->topic < 0;
    if (bad) fail(&er, "topic", "'%s' is not in spec.inputs", topic);
    free(topic);
    if (!bad && read_store_topics(&er, st, s, ss)) bad = 1;
    if (!bad && bool_field(&er, st, "sweep", &ss->sweep)) bad = 1;
    if (!bad && bool_field(&er, st, "source", &ss->source)) bad = 1;
    lua_pop(r->L, 1);
    if (bad) return lua_pop(r->L, 1), -1;
  }
  lua_pop(r->L, 1);
  return 0;
}

/* spec.repartitions: { topic =, like =, partitions = } per group_by. */
static int read_reparts(const rd *r, int t, ls_spec *s) {
  int count;
  if (list_field(r, t, "repartitions", &count)) return -1;
  s->reparts = ls_xcalloc((size_t)count + 1, sizeof *s->reparts);
  s->nreparts = count;
  for (int i = 0; i < count; i++) {
    rd er;
    char path[64];
    if (list_entry(r, "repartitions", i, &er, path, sizeof path)) return lua_pop(r->L, 1), -1;
    int e = lua_gettop(r->L);
    ls_repart_spec *rp = &s->reparts[i];
    char *topic = NULL, *like = NULL;
    double parts = 0;
    int rc = string_field(&er, e, "topic", 0, &topic) || string_field(&er, e, "like", 0, &like) ||
             number_field(&er, e, "partitions", 0, 100000, 1, &parts);
    if (rc == 0) {
      rp->topic = input_index(s, topic);
      rp->like = input_index(s, like);
      rp->partitions = (int)parts;
      if (rp->topic < 0) rc = fail(&er, "topic", "'%s' is not in spec.inputs", topic);
      else if (rp->like < 0) rc = fail(&er, "like", "'%s' is not in spec.inputs", like);
    }
    free(topic);
    free(like);
    lua_pop(r->L, 1);
    if (rc) return lua_pop(r->L, 1), -1;
  }
  lua_pop(r->L, 1);
  return 0;
}

/* spec.kafka: property name -> value, both strings (Lua wrote them). */
static int read_kafka(const rd *r, int t, ls_spec *s) {
  lua_State *L = r->L;
  if (get(r, t, "kafka", LUA_TTABLE, 0)) return -1;
  int kt = lua_gettop(L), count = 0;
  lua_pushnil(L);
  while (lua_next(L, kt)) {
    int bad = lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING;
    if (bad) {
      fail(r, "kafka", "expected string names and string values, got %s = %s", lua_typename(L, lua_type(L, -2)),
           lua_typename(L, lua_type(L, -1)));
      lua_settop(L, kt - 1);
      return -1;
    }
    count++;
    lua_pop(L, 1);
  }
  s->kafka = ls_xcalloc(2 * (size_t)count + 1, sizeof *s->kafka);
  lua_pushnil(L);
  while (lua_next(L, kt)) {
    s->kafka[s->nkafka++] = ls_xstrdup(lua_tostring(L, -2));
    s->kafka[s->nkafka++] = ls_xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static int read_spec(const rd *r, int t, ls_spec *s) {
  double commit_every = 0, batch_size = 0, batch_ms = 0, join_wait = 0;
  int guarantee = 0, offset_reset = 0, on_error = 0;
  if (string_field(r, t, "name", 0, &s->name) || string_field(r, t, "broker", 1, &s->broker) ||
      choice_field(r, t, "guarantee", GUARANTEE_NAMES, COUNT(GUARANTEE_NAMES), &guarantee, &s->guarantee) ||
      choice_field(r, t, "offset_reset", OFFSET_RESET_NAMES, COUNT(OFFSET_RESET_NAMES), &offset_reset,
                   &s->offset_reset) ||
      string_field(r, t, "state_dir", 0, &s->state_dir) ||
      choice_field(r, t, "on_error", ON_ERROR_NAMES, COUNT(ON_ERROR_NAMES), &on_error, NULL) ||
      string_field(r, t, "dead_letter", 1, &s->dead_letter) ||
      number_field(r, t, "commit_interval", 0, HUGE_VAL, 0, &s->commit_interval_s) ||
      number_field(r, t, "commit_every", 0, 9007199254740992.0, 1, &commit_every) ||
      number_field(r, t, "batch_size", 1, 2147483647.0, 1, &batch_size) ||
      number_field(r, t, "batch_ms", 1, 2147483647.0, 1, &batch_ms) ||
      bool_field(r, t, "wait_for_topics", &s->wait_for_topics) ||
      number_field(r, t, "batch_time_limit", 0, 86400, 0, &s->batch_time_limit_s) ||
      number_field(r, t, "heap_limit_mb", 0, 1048576, 0, &s->heap_limit_mb) ||
      number_field(r, t, "idle_check_ms", 0, 3600000, 0, &s->idle_check_ms) ||
      number_field(r, t, "join_wait", 0, 3600000, 1, &join_wait) ||
      string_field(r, t, "http", 1, &s->http))
    return -1;
  if (!(s->commit_interval_s > 0 && isfinite(s->commit_interval_s)))
    return fail(r, "commit_interval", "expected a positive number of seconds, got %.17g", s->commit_interval_s);
  s->on_error = (ls_on_error)on_error;
  s->commit_every = (long)commit_every;
  s->batch_size = (int)batch_size;
  s->batch_ms = (int)batch_ms;
  s->join_wait_ms = (int)join_wait;
  if ((s->on_error == LS_ON_ERROR_DEAD_LETTER || s->on_error == LS_ON_ERROR_FUNCTION) && !s->dead_letter)
    return fail(r, "dead_letter", "missing, and on_error is '%s'", ls_on_error_name(s->on_error));
  if (read_kafka(r, t, s) || read_topics(r, t, "inputs", 1, &s->inputs, &s->ninputs) ||
      read_topics(r, t, "outputs", 0, &s->outputs, &s->noutputs) || read_sources(r, t, s) ||
      read_stores(r, t, s) || read_reparts(r, t, s))
    return -1;
  return 0;
}

int ls_spec_read(lua_State *L, ls_spec *s, char *err, size_t errlen) {
  int t = lua_gettop(L);
  memset(s, 0, sizeof *s);
  rd r = {L, err, errlen, "spec"};
  int rc = t > 0 && lua_istable(L, t)
               ? read_spec(&r, t, s)
               : fail(&r, NULL, "expected a table, got %s", t > 0 ? lua_typename(L, lua_type(L, t)) : "nothing");
  lua_settop(L, t);
  if (rc) ls_spec_free(s);
  return rc;
}

static void free_topics(ls_topic_spec *t, int n) {
  for (int i = 0; t && i < n; i++) free(t[i].name);
  free(t);
}

void ls_spec_free(ls_spec *s) {
  free(s->name);
  free(s->broker);
  free(s->http);
  free(s->guarantee);
  free(s->offset_reset);
  free(s->state_dir);
  free(s->dead_letter);
  free_topics(s->inputs, s->ninputs);
  free_topics(s->outputs, s->noutputs);
  free(s->source_every_ms);
  for (int i = 0; s->stores && i < s->nstores; i++) {
    free(s->stores[i].name);
    free(s->stores[i].changelog);
    free(s->stores[i].topics);
  }
  free(s->stores);
  free(s->reparts);
  for (int i = 0; s->kafka && i < s->nkafka; i++) free(s->kafka[i]);
  free(s->kafka);
  memset(s, 0, sizeof *s);
}

/* ---- live reload ---------------------------------------------------------- */

static int str_eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static const char *arrays_name(const ls_topic_spec *t) {
  return (t->value_flags & LS_ARRAYS_VEC) ? "vec" : "table";
}

static const char *diff_inputs(const ls_spec *c, const ls_spec *n, char *buf, size_t len) {
  if (c->ninputs != n->ninputs)
    return snprintf(buf, len, "the number of input topics changed (%d -> %d)", c->ninputs, n->ninputs), buf;
  for (int i = 0; i < c->ninputs; i++) {
    const ls_topic_spec *a = &c->inputs[i], *b = &n->inputs[i];
    if (strcmp(a->name, b->name) != 0)
      return snprintf(buf, len, "input topic %s became %s", a->name, b->name), buf;
    if (a->key != b->key || a->value != b->value)
      return snprintf(buf, len, "the formats of input topic %s changed (key %s -> %s, value %s -> %s)",
                      a->name, ls_format_name(a->key), ls_format_name(b->key), ls_format_name(a->value),
                      ls_format_name(b->value)), buf;
    if (a->value_flags != b->value_flags)
      return snprintf(buf, len, "the arrays option of input topic %s changed (%s -> %s)", a->name,
                      arrays_name(a), arrays_name(b)), buf;
  }
  return NULL;
}

static const char *diff_stores(const ls_spec *c, const ls_spec *n, char *buf, size_t len) {
  int same = c->nstores == n->nstores;
  for (int i = 0; same && i < c->nstores; i++)
    same = strcmp(c->stores[i].name, n->stores[i].name) == 0 && c->stores[i].ntopics == n->stores[i].ntopics &&
           memcmp(c->stores[i].topics, n->stores[i].topics, (size_t)c->stores[i].ntopics * sizeof(int)) == 0;
  if (same) return NULL;
  size_t off = (size_t)snprintf(buf, len, "the state stores changed (");
  for (int i = 0; i < c->nstores && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", c->stores[i].name);
  if (off < len) off += (size_t)snprintf(buf + off, len - off, " -> ");
  for (int i = 0; i < n->nstores && off < len; i++)
    off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", n->stores[i].name);
  if (off < len) snprintf(buf + off, len - off, ")");
  return buf;
}

static int kafka_eq(const ls_spec *c, const ls_spec *n) {
  if (c->nkafka != n->nkafka) return 0;
  for (int i = 0; i < c->nkafka; i++)
    if (strcmp(c->kafka[i], n->kafka[i]) != 0) return 0;
  return 1;
}

const char *ls_spec_restart_reason(const ls_spec *c, const ls_spec *n, int same_state_dir,
                                   char *buf, size_t len) {
#define FIELD_DIFF(f, what)                                                                  \
  if (!str_eq(c->f, n->f))                                                                   \
    return snprintf(buf, len, what " changed (%s -> %s)", c->f ? c->f : "none", n->f ? n->f : "none"), buf
  FIELD_DIFF(name, "the app name");
  FIELD_DIFF(broker, "the broker");
  FIELD_DIFF(guarantee, "the guarantee");
  FIELD_DIFF(offset_reset, "offset_reset");
  FIELD_DIFF(http, "the http option");
  if (same_state_dir) {
    FIELD_DIFF(state_dir, "the state directory");
  }
#undef FIELD_DIFF
  const char *why = diff_inputs(c, n, buf, len);
  if (!why) why = diff_stores(c, n, buf, len);
  if (!why && !kafka_eq(c, n)) {
    snprintf(buf, len, "the kafka properties changed");
    why = buf;
  }
  return why;
}

#define SWAP(T, x, y) do { T tmp_ = (x); (x) = (y); (y) = tmp_; } while (0)

void ls_spec_keep_fixed(ls_spec *c, ls_spec *n) {
  SWAP(char *, c->name, n->name);
  SWAP(char *, c->broker, n->broker);
  SWAP(char *, c->guarantee, n->guarantee);
  SWAP(char *, c->offset_reset, n->offset_reset);
  SWAP(char *, c->state_dir, n->state_dir);
  SWAP(ls_topic_spec *, c->inputs, n->inputs);
  SWAP(int, c->ninputs, n->ninputs);
  SWAP(ls_store_spec *, c->stores, n->stores);
  SWAP(int, c->nstores, n->nstores);
  SWAP(ls_repart_spec *, c->reparts, n->reparts);
  SWAP(int, c->nreparts, n->nreparts);
  SWAP(char **, c->kafka, n->kafka);
  SWAP(int, c->nkafka, n->nkafka);
}
