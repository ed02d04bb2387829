/* batch.c - one batch on the Lua side (see batch.h). */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "lua_vm.h"
#include "luavalue.h"
#include "mem.h"
#include "watchdog.h"

/* ---- set-up --------------------------------------------------------------- */

int ls_batch_load(ls_batch *b, lua_State *L, ls_spec *spec, const char *script,
                  int (*push_cli)(lua_State *L, void *ud), void *ud, char *err, size_t errlen) {
  memset(b, 0, sizeof *b);
  b->L = L;
  b->spec = spec;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.runtime");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    char why[2048];
    ls_vm_pop_error(L, why, sizeof why);
    snprintf(err, errlen, "cannot load the Lua runtime: %s", why);
    return 1;
  }
  lua_pushvalue(L, -1);
  b->rt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "run_batch");
  b->run_batch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "load");
  lua_pushstring(L, script);
  push_cli(L, ud);
  if (lua_pcall(L, 2, 1, 0) != 0) {
    ls_vm_pop_error(L, err, errlen);
    lua_settop(L, 0);
    return 2;
  }
  int rc = ls_spec_read(L, spec, err, errlen) ? 2 : 0;
  lua_settop(L, 0);
  if (rc == 0) b->steps = ls_watchdog_read_steps(L, b->rt_ref, &b->nsteps);
  return rc;
}

int ls_batch_alloc(ls_batch *b, int capacity) {
  size_t n = (size_t)capacity;
  b->meta = calloc(n, sizeof *b->meta);
  b->row_msg = calloc(n, sizeof *b->row_msg);
  b->msg_err = calloc(n, sizeof *b->msg_err);
  b->json = calloc(1, sizeof *b->json);
  ls_buf_init(&b->kbuf);
  ls_buf_init(&b->vbuf);
  memset(&b->keys, 0, sizeof b->keys);
  b->keys_ref = 0; /* made by the first decode, inside its protected call */
  b->nflat_odds = b->spec ? b->spec->ninputs : 0;
  b->flat_odds = calloc(b->nflat_odds > 0 ? (size_t)b->nflat_odds : 1, sizeof *b->flat_odds);
  int ok = b->meta && b->row_msg && b->msg_err && b->json && b->flat_odds &&
           ls_json_flat_init(&b->flat, capacity) == 0;
  b->cap = ok ? capacity : 0; /* never a capacity without its arrays */
  return ok ? 0 : -1;
}

void ls_batch_free(ls_batch *b) {
  if (b->keys_ref > 0) luaL_unref(b->L, LUA_REGISTRYINDEX, b->keys_ref);
  b->keys_ref = 0;
  for (int i = 0; b->msg_err && i < b->cap; i++) free(b->msg_err[i]);
  ls_json_flat_free(&b->flat);
  free(b->flat_odds);
  b->flat_odds = NULL;
  b->nflat_odds = 0;
  free(b->meta);
  free(b->row_msg);
  free(b->msg_err);
  ls_buf_free(&b->kbuf);
  ls_buf_free(&b->vbuf);
  if (b->json) ls_buf_free(b->json);
  free(b->json);
  b->json = NULL;
  b->meta = NULL;
  b->row_msg = NULL;
  b->msg_err = NULL;
  ls_watchdog_free_steps(b->steps, b->nsteps);
  b->steps = NULL;
  b->nsteps = 0;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct decode_ctx {
  ls_batch *b;
  const ls_inmsg *msgs;
} decode_ctx;

static void set_decode_error(ls_batch *b, int i, const char *what, const char *err) {
  char msg[600];
  snprintf(msg, sizeof msg, "%s: %s", what, err);
  b->msg_err[i] = ls_xstrdup(msg); /* NULL would read as "decoded" */
}

/* The value of a record in its topic's format, pushed; 0, or -1 with err.
 * JSON rows take their keys from b->keys (the table at stack index keys). */
static int decode_value(ls_batch *b, const ls_topic_spec *t, const ls_inmsg *m, int flags, int keys,
                        char *err, size_t errlen) {
  if (t->value == LS_FMT_JSON)
    return ls_json_decode_keys(b->L, m->payload, m->len, flags, &b->keys, keys, err, errlen);
  return ls_decode_opts(b->L, t->value, flags, m->payload, m->len, err, errlen);
}

/* Whether m's value went to b->flat as row b->nrows + 1. A topic whose last
 * 256 tries failed more than 192 times skips the next 4096 rows: each failed
 * try costs up to a third of the decode that follows it. */
static int try_flat(ls_batch *b, const ls_inmsg *m) {
  ls_flat_odds *o = m->topic < b->nflat_odds ? &b->flat_odds[m->topic] : NULL;
  if (o && o->skip) {
    o->skip--;
    return 0;
  }
  int added = ls_json_flat_add(&b->flat, m->payload, m->len, b->nrows + 1);
  if (o) {
    o->misses += !added;
    if (++o->tries == 256) {
      o->skip = o->misses > 192 ? 4096 : 0;
      o->tries = o->misses = 0;
    }
  }
  return added;
}

/* Decodes one record; on success pushes value then key and returns 1. A flat
 * JSON row's value is false for now: it goes to b->flat, and decode_cb has its
 * table built with the others. width: the room to make in a top-level object
 * (LS_ROW_WIDTH); keys: the stack index of b->keys's table. */
static int decode_one(ls_batch *b, int i, const ls_inmsg *m, int width, int keys) {
  lua_State *L = b->L;
  const ls_topic_spec *t = &b->spec->inputs[m->topic];
  char err[512];
  int flat = 0;
  if (!m->payload) {
    ls_push_null(L); /* a tombstone, for a table */
  } else if (t->value == LS_FMT_JSON && try_flat(b, m)) {
    lua_pushboolean(L, 0);
    flat = 1;
  } else if (decode_value(b, t, m, t->value_flags | LS_ROW_WIDTH(width), keys, err, sizeof err)) {
    set_decode_error(b, i, "value", err);
    return 0;
  }
  if (!m->key) {
    lua_pushnil(L);
  } else if (ls_decode(L, t->key, m->key, m->key_len, err, sizeof err)) {
    lua_pop(L, 1);
    if (flat) ls_json_flat_drop_last(&b->flat);
    set_decode_error(b, i, "key", err);
    return 0;
  }
  return 1;
}

/* rt.build_flat(flat, rows, width): the tables of the batch's flat rows
 * (luastream.jsonin), while their records' text is still there. */
static void build_flat(ls_batch *b, int rt, int rows, int width) {
  lua_State *L = b->L;
  if (b->flat.n == 0) return;
  lua_getfield(L, rt, "build_flat");
  lua_pushlightuserdata(L, &b->flat);
  lua_pushvalue(L, rows);
  lua_pushinteger(L, width);
  lua_call(L, 3, 0);
  ls_json_flat_clear(&b->flat);
}

static void add_row(ls_batch *b, int i, const ls_inmsg *m, int rows) {
  lua_State *L = b->L;
  int row = ++b->nrows;
  lua_rawseti(L, rows + 1, row); /* key */
  lua_rawseti(L, rows, row);     /* value */
  if (b->push_headers && m->source) b->push_headers(L, m->source);
  else lua_pushnil(L);
  lua_rawseti(L, rows + 2, row);
  ls_meta_t *mt = &b->meta[row - 1];
  mt->offset = (double)m->offset;
  mt->timestamp = (double)m->timestamp;
  mt->partition = m->partition;
  mt->topic = m->topic + 1;
  b->row_msg[row - 1] = i;
}

/* Runs under lua_cpcall: fills rt.rows/keys/hdrs and meta. Top-level
 * objects get room for rt.row_width fields (see runtime.lua's finish). */
static int decode_cb(lua_State *L) {
  decode_ctx *c = lua_touserdata(L, 1);
  ls_batch *b = c->b;
  if (b->keys_ref <= 0) {
    lua_newtable(L);
    b->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
  int keys = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->rt_ref);
  lua_getfield(L, -1, "row_width");
  int width = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "rows");
  lua_getfield(L, -2, "keys");
  lua_getfield(L, -3, "hdrs");
  int rows = lua_gettop(L) - 2;
  b->nrows = 0;
  ls_json_flat_clear(&b->flat);
  for (int i = 0; i < b->nmsgs; i++) {
    const ls_inmsg *m = &c->msgs[i];
    /* events are not rows, nor are tombstones, except for tables */
    if (m->topic < 0 || (!m->payload && !b->spec->inputs[m->topic].tombstones)) continue;
    if (decode_one(b, i, m, width, keys)) add_row(b, i, m, rows);
  }
  build_flat(b, rows - 1, rows, width);
  /* Let the previous batch's leftovers be collected. */
  for (int r = b->nrows + 1; r <= b->prev_nrows; r++) {
    lua_pushnil(L);
    lua_rawseti(L, rows, r);
    lua_pushnil(L);
    lua_rawseti(L, rows + 1, r);
    lua_pushnil(L);
    lua_rawseti(L, rows + 2, r);
  }
  b->prev_nrows = b->nrows;
  return 0;
}

int ls_batch_decode(ls_batch *b, const ls_inmsg *msgs, int n, char *err, size_t errlen) {
  for (int i = 0; i < b->nmsgs; i++) {
    free(b->msg_err[i]);
    b->msg_err[i] = NULL;
  }
  b->nmsgs = n < b->cap ? n : b->cap;
  decode_ctx c = {b, msgs};
  if (lua_cpcall(b->L, decode_cb, &c) != 0) {
    ls_vm_pop_error(b->L, err, errlen);
    b->nrows = 0;
    return -1;
  }
  return 0;
}

void ls_batch_truncate(ls_batch *b, int keep) {
  if (keep < b->nrows) b->nrows = keep;
}

/* ---- calls into Lua ------------------------------------------------------- */

static int finish_call(ls_batch *b, int nargs, char *err, size_t errlen) {
  lua_State *L = b->L;
  ls_watchdog_enter(b); /* the batch time limit runs from here (watchdog.c) */
  int failed = lua_pcall(L, nargs, 1, 0) != 0;
  ls_watchdog_leave();
  if (failed) {
    ls_vm_pop_error(L, err, errlen);
    return -1;
  }
  int nout = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return nout;
}

int ls_batch_call(ls_batch *b, int first, int last, char *err, size_t errlen) {
  lua_State *L = b->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->run_batch_ref);
  lua_pushinteger(L, b->nrows);
  lua_pushlightuserdata(L, b->meta);
  lua_pushinteger(L, first);
  lua_pushinteger(L, last);
  lua_pushlightuserdata(L, b->json);
  return finish_call(b, 5, err, errlen);
}

int ls_batch_call_source(ls_batch *b, int k, double now_ms, char *err, size_t errlen) {
  lua_State *L = b->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->rt_ref);
  lua_getfield(L, -1, "run_source");
  lua_remove(L, -2);
  lua_pushinteger(L, k);
  lua_pushnumber(L, now_ms);
  lua_pushlightuserdata(L, b->json);
  return finish_call(b, 3, err, errlen);
}

int ls_batch_call_idle(ls_batch *b, double now_ms, int *failed, char *err, size_t errlen) {
  lua_State *L = b->L;
  *failed = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->rt_ref);
  lua_getfield(L, -1, "run_idle");
  lua_remove(L, -2);
  lua_pushnumber(L, now_ms);
  lua_pushlightuserdata(L, b->json);
  if (lua_pcall(L, 2, 2, 0) != 0) {
    ls_vm_pop_error(L, err, errlen);
    return -1;
  }
  int nout = (int)lua_tointeger(L, -2);
  if (lua_type(L, -1) == LUA_TSTRING) {
    *failed = 1;
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
  }
  lua_pop(L, 2);
  return nout;
}

void ls_batch_push_row(ls_batch *b, int row) {
  lua_rawgeti(b->L, LUA_REGISTRYINDEX, b->rt_ref);
  lua_getfield(b->L, -1, "rows");
  lua_rawgeti(b->L, -1, row);
  lua_replace(b->L, -3);
  lua_pop(b->L, 1);
}

void ls_batch_push_handler(ls_batch *b) {
  lua_rawgeti(b->L, LUA_REGISTRYINDEX, b->rt_ref);
  lua_getfield(b->L, -1, "handle_error");
  lua_remove(b->L, -2);
}

/* ---- outputs -------------------------------------------------------------- */

/* The JSON text of one call's outputs is kept for the next up to this size. */
#define LS_BATCH_JSON_KEEP (1u << 20)

typedef struct emit_ctx {
  ls_batch *b;
  int nout;
  ls_emit_fn emit;
  ls_emit_error_fn on_error;
  void *ud;
  int rc;
} emit_ctx;

enum { T_VAL, T_KEY, T_TOPIC, T_TS, T_ROW, T_HDR, T_JSON_END, T_COUNT };

/* The value of output j when luastream.jsonout wrote it: out_json_end[j] is
 * where its text ends in b->json (the previous one's end is where it starts;
 * none is empty), or -1 when it left the value to ls_encode. Returns 1 when
 * it did. */
static int written_value(ls_batch *b, int tabs, int j, ls_outrec *o) {
  lua_State *L = b->L;
  lua_rawgeti(L, tabs + T_JSON_END, j);
  double end = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(end > (double)b->json_pos && end <= (double)b->json->len)) return 0; /* -1, nil */
  o->value = b->json->data + b->json_pos;
  o->value_len = (size_t)end - b->json_pos;
  b->json_pos = (size_t)end;
  return 1;
}

/* Encodes key and value of output j into kbuf/vbuf; 0, or 1 (key) / 2 (value) on error. */
static int encode_kv(ls_batch *b, int tabs, int j, const ls_topic_spec *t, ls_outrec *o,
                     char *err, size_t errlen) {
  lua_State *L = b->L;
  b->kbuf.len = b->vbuf.len = 0;
  lua_rawgeti(L, tabs + T_KEY, j);
  int bad = !lua_isnil(L, -1) && ls_encode(L, -1, t->key, &b->kbuf, err, errlen);
  o->key = lua_isnil(L, -1) ? NULL : b->kbuf.data ? b->kbuf.data : "";
  o->key_len = b->kbuf.len;
  lua_pop(L, 1);
  if (bad) return 1;
  if (written_value(b, tabs, j, o)) return 0;
  lua_rawgeti(L, tabs + T_VAL, j);
  bad = !lua_isnil(L, -1) && ls_encode(L, -1, t->value, &b->vbuf, err, errlen);
  o->value = lua_isnil(L, -1) ? NULL : b->vbuf.data ? b->vbuf.data : "";
  lua_pop(L, 1);
  o->value_len = b->vbuf.len;
  return bad ? 2 : 0;
}

static int emit_one(emit_ctx *c, int tabs, int j) {
  ls_batch *b = c->b;
  lua_State *L = b->L;
  ls_outrec o;
  lua_rawgeti(L, tabs + T_TOPIC, j);
  lua_rawgeti(L, tabs + T_ROW, j);
  lua_rawgeti(L, tabs + T_TS, j);
  o.topic = (int)lua_tointeger(L, -3) - 1;
  o.row = (int)lua_tointeger(L, -2);
  o.timestamp = lua_isnumber(L, -1) ? lua_tonumber(L, -1)
                : o.row > 0 && o.row <= b->nrows ? b->meta[o.row - 1].timestamp : 0;
  lua_pop(L, 3);
  if (o.topic < 0 || o.topic >= b->spec->noutputs) luaL_error(L, "output %d has no topic", j);
  const ls_topic_spec *t = &b->spec->outputs[o.topic];
  char err[512], msg[700];
  int bad = encode_kv(b, tabs, j, t, &o, err, sizeof err);
  if (bad) {
    snprintf(msg, sizeof msg, "%s for topic %s: %s", bad == 1 ? "key" : "value", t->name, err);
    return c->on_error(c->ud, o.row, msg);
  }
  lua_rawgeti(L, tabs + T_HDR, j);
  o.headers_idx = lua_gettop(L);
  int rc = c->emit(c->ud, L, &o);
  lua_pop(L, 1);
  return rc;
}

/* Runs under lua_cpcall: encoding may raise (out of memory). */
static int emit_cb(lua_State *L) {
  emit_ctx *c = lua_touserdata(L, 1);
  static const char *const names[T_COUNT] = {"out_val", "out_key", "out_topic", "out_ts",
                                             "out_row", "out_hdr", "out_json_end"};
  int tabs = lua_gettop(L) + 2;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->b->rt_ref);
  for (int i = 0; i < T_COUNT; i++) lua_getfield(L, tabs - 1, names[i]);
  for (int j = 1; j <= c->nout && c->rc == 0; j++) c->rc = emit_one(c, tabs, j);
  return 0;
}

int ls_batch_emit(ls_batch *b, int nout, ls_emit_fn emit, ls_emit_error_fn on_error, void *ud,
                  char *err, size_t errlen) {
  if (nout <= 0) return 0;
  emit_ctx c = {b, nout, emit, on_error, ud, 0};
  b->json_pos = 0;
  int failed = lua_cpcall(b->L, emit_cb, &c) != 0;
  if (b->json->cap > LS_BATCH_JSON_KEEP) ls_buf_free(b->json); /* a rare huge batch */
  if (failed) {
    ls_vm_pop_error(b->L, err, errlen);
    return -1;
  }
  return c.rc;
}
