/* spec.c - copies the Lua app spec into C (see spec.h). */
#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_field(lua_State *L, int t, const char *key, const char *dflt) {
  lua_getfield(L, t, key);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : dflt;
  char *copy = s ? strdup(s) : NULL;
  lua_pop(L, 1);
  return copy;
}

static double num_field(lua_State *L, int t, const char *key, double dflt) {
  lua_getfield(L, t, key);
  double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

static int read_format(lua_State *L, int t, const char *key, const char *dflt, ls_format *out,
                       const char *topic, char *err, size_t errlen) {
  char *name = dup_field(L, t, key, dflt);
  int rc = ls_format_parse(name, out);
  if (rc) snprintf(err, errlen, "topic %s: unknown %s format '%s'", topic, key, name);
  free(name);
  return rc;
}

/* The arrays option: "table" (the default) or "vec". */
static int read_arrays(lua_State *L, int t, ls_topic_spec *ts, char *err, size_t errlen) {
  char *v = dup_field(L, t, "arrays", "table");
  int rc = 0;
  if (strcmp(v, "vec") == 0) {
    ts->value_flags |= LS_ARRAYS_VEC;
  } else if (strcmp(v, "table") != 0) {
    snprintf(err, errlen, "topic %s: unknown arrays option '%s'", ts->name, v);
    rc = -1;
  }
  free(v);
  return rc;
}

static int read_topics(lua_State *L, int t, const char *key, ls_topic_spec **out, int *n,
                       char *err, size_t errlen) {
  lua_getfield(L, t, key);
  int list = lua_gettop(L);
  int count = lua_istable(L, list) ? (int)lua_objlen(L, list) : 0;
  *out = calloc((size_t)count + 1, sizeof **out);
  *n = count;
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, list, i + 1);
    int tt = lua_gettop(L);
    ls_topic_spec *ts = &(*out)[i];
    ts->name = dup_field(L, tt, "name", "");
    if (read_format(L, tt, "key", "bytes", &ts->key, ts->name, err, errlen) ||
        read_format(L, tt, "value", "json", &ts->value, ts->name, err, errlen) ||
        read_arrays(L, tt, ts, err, errlen)) {
      lua_settop(L, list - 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static void read_sources(lua_State *L, int t, ls_spec *s) {
  lua_getfield(L, t, "sources");
  int list = lua_gettop(L);
  s->nsources = lua_istable(L, list) ? (int)lua_objlen(L, list) : 0;
  s->source_every_ms = calloc((size_t)s->nsources + 1, sizeof *s->source_every_ms);
  for (int i = 0; i < s->nsources; i++) {
    lua_rawgeti(L, list, i + 1);
    s->source_every_ms[i] = num_field(L, lua_gettop(L), "every", 1000);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int read_stores(lua_State *L, int t, ls_spec *s, char *err, size_t errlen) {
  lua_getfield(L, t, "stores");
  int list = lua_gettop(L);
  s->nstores = lua_istable(L, list) ? (int)lua_objlen(L, list) : 0;
  s->stores = calloc((size_t)s->nstores + 1, sizeof *s->stores);
  for (int i = 0; i < s->nstores; i++) {
    lua_rawgeti(L, list, i + 1);
    int st = lua_gettop(L);
    s->stores[i].name = dup_field(L, st, "name", "default");
    char *topic = dup_field(L, st, "topic", "");
    s->stores[i].topic = -1;
    for (int j = 0; j < s->ninputs; j++)
      if (strcmp(s->inputs[j].name, topic) == 0) s->stores[i].topic = j;
    free(topic);
    lua_pop(L, 1);
    if (s->stores[i].topic < 0) {
      snprintf(err, errlen, "state store %s belongs to no input topic", s->stores[i].name);
      lua_pop(L, 1);
      return -1;
    }
  }
  lua_pop(L, 1);
  return 0;
}

static void read_kafka(lua_State *L, int t, ls_spec *s) {
  lua_getfield(L, t, "kafka");
  int kt = lua_gettop(L);
  int cap = 16;
  s->kafka = calloc((size_t)cap, sizeof *s->kafka);
  if (lua_istable(L, kt)) {
    lua_pushnil(L);
    while (lua_next(L, kt)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        if (s->nkafka + 2 > cap) {
          cap *= 2;
          s->kafka = realloc(s->kafka, (size_t)cap * sizeof *s->kafka);
        }
        lua_pushvalue(L, -1); /* tostring without touching the key */
        const char *v = lua_tostring(L, -1);
        s->kafka[s->nkafka++] = strdup(lua_tostring(L, -3));
        s->kafka[s->nkafka++] = strdup(v ? v : (lua_toboolean(L, -2) ? "true" : "false"));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

static int read_on_error(lua_State *L, int t, ls_spec *s, char *err, size_t errlen) {
  char *v = dup_field(L, t, "on_error", "stop");
  int rc = 0;
  if (strcmp(v, "stop") == 0) s->on_error = LS_ON_ERROR_STOP;
  else if (strcmp(v, "skip") == 0) s->on_error = LS_ON_ERROR_SKIP;
  else if (strcmp(v, "dead-letter") == 0) s->on_error = LS_ON_ERROR_DEAD_LETTER;
  else if (strcmp(v, "function") == 0) s->on_error = LS_ON_ERROR_FUNCTION;
  else rc = -1, snprintf(err, errlen, "unknown on_error policy '%s'", v);
  free(v);
  return rc;
}

int ls_spec_read(lua_State *L, ls_spec *s, char *err, size_t errlen) {
  int t = lua_gettop(L);
  memset(s, 0, sizeof *s);
  s->name = dup_field(L, t, "name", "luastream");
  s->broker = dup_field(L, t, "broker", NULL);
  s->guarantee = dup_field(L, t, "guarantee", "at-least-once");
  s->offset_reset = dup_field(L, t, "offset_reset", "earliest");
  s->state_dir = dup_field(L, t, "state_dir", "state");
  s->dead_letter = dup_field(L, t, "dead_letter", NULL);
  s->commit_interval_s = num_field(L, t, "commit_interval", 5.0);
  s->commit_every = (long)num_field(L, t, "commit_every", 0);
  s->batch_size = (int)num_field(L, t, "batch_size", 1000);
  s->batch_ms = (int)num_field(L, t, "batch_ms", 100);
  lua_getfield(L, t, "wait_for_topics");
  s->wait_for_topics = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (s->batch_size < 1) s->batch_size = 1;
  if (s->batch_ms < 1) s->batch_ms = 1;
  read_sources(L, t, s);
  read_kafka(L, t, s);
  if (read_on_error(L, t, s, err, errlen)) return -1;
  if (read_topics(L, t, "inputs", &s->inputs, &s->ninputs, err, errlen)) return -1;
  if (read_topics(L, t, "outputs", &s->outputs, &s->noutputs, err, errlen)) return -1;
  if (read_stores(L, t, s, err, errlen)) return -1;
  if (s->on_error == LS_ON_ERROR_DEAD_LETTER && !s->dead_letter) {
    snprintf(err, errlen, "on_error = \"dead-letter\" needs a dead_letter topic");
    return -1;
  }
  return 0;
}

static void free_topics(ls_topic_spec *t, int n) {
  for (int i = 0; i < n; i++) free(t[i].name);
  free(t);
}

void ls_spec_free(ls_spec *s) {
  free(s->name);
  free(s->broker);
  free(s->guarantee);
  free(s->offset_reset);
  free(s->state_dir);
  free(s->dead_letter);
  free_topics(s->inputs, s->ninputs);
  free_topics(s->outputs, s->noutputs);
  free(s->source_every_ms);
  for (int i = 0; i < s->nstores; i++) free(s->stores[i].name);
  free(s->stores);
  for (int i = 0; i < s->nkafka; i++) free(s->kafka[i]);
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
    same = strcmp(c->stores[i].name, n->stores[i].name) == 0 && c->stores[i].topic == n->stores[i].topic;
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
  SWAP(char **, c->kafka, n->kafka);
  SWAP(int, c->nkafka, n->nkafka);
}
