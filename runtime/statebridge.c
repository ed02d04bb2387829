/* statebridge.c - per-key state between LMDB and Lua (see statebridge.h). */
#include "statebridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "lua_vm.h"

#define MAX_PARTITIONS 4096
#define NCOLUMNS 5 /* rt.changes: store, part, key, val, expire */

/* What core.state_load reads from: kept as its upvalue. */
typedef struct loader {
  ls_state *state;
  const ls_spec *spec;
} loader;

static int store_index(const ls_spec *spec, const char *name) {
  for (int i = 0; i < spec->nstores; i++)
    if (strcmp(spec->stores[i].name, name) == 0) return i;
  return -1;
}

/* ---- core.state_load -------------------------------------------------------- */

typedef struct load_ctx {
  lua_State *L;
  size_t prefix;
  int values, expiries;     /* stack slots of the two result tables */
  char err[256];
} load_ctx;

static int load_visit(void *ud, const void *key, size_t klen, const void *val, size_t vlen,
                      int64_t expire_ms) {
  load_ctx *lc = ud;
  lua_State *L = lc->L;
  lua_pushlstring(L, (const char *)key + lc->prefix, klen - lc->prefix);
  if (ls_decode(L, LS_FMT_MSGPACK, val, vlen, lc->err, sizeof lc->err)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_rawset(L, lc->values);
  if (expire_ms > 0) {
    if (lua_isnil(L, lc->expiries)) {
      lua_newtable(L);
      lua_replace(L, lc->expiries);
    }
    lua_pushlstring(L, (const char *)key + lc->prefix, klen - lc->prefix);
    lua_pushnumber(L, (double)expire_ms);
    lua_rawset(L, lc->expiries);
  }
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
  const loader *ld = lua_touserdata(L, lua_upvalueindex(1));
  int s = store_index(ld->spec, luaL_checkstring(L, 1));
  int32_t p = (int32_t)luaL_checkinteger(L, 2);
  size_t klen;
  const char *key = luaL_checklstring(L, 3, &klen);
  if (s < 0) return luaL_error(L, "unknown state store %s", lua_tostring(L, 1));
  if (klen > 65535) return luaL_error(L, "message key longer than 65535 bytes");
  char *prefix = malloc(klen + 2);
  if (!prefix) return luaL_error(L, "out of memory");
  lua_settop(L, 3);
  lua_newtable(L); /* 4: values */
  lua_pushnil(L);  /* 5: expiries, made on the first entry that has one */
  load_ctx lc = {L, entry_prefix(prefix, key, klen), 4, 5, ""};
  int rc = ls_state_scan_ex(ld->state, ld->spec->stores[s].name, p, prefix, lc.prefix, load_visit, &lc);
  free(prefix);
  if (rc) return luaL_error(L, "state %s[%d]: %s", lua_tostring(L, 1), (int)p, ls_state_error(ld->state));
  if (lc.err[0]) return luaL_error(L, "state %s[%d]: bad stored value: %s", lua_tostring(L, 1), (int)p, lc.err);
  return 2;
}

/* Protected: require("luastream.core").state_load = closure over the loader. */
static int install(lua_State *L) {
  loader *ld = lua_touserdata(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.core");
  lua_call(L, 1, 1);
  loader *kept = lua_newuserdata(L, sizeof *kept); /* lives as long as the closure */
  *kept = *ld;
  lua_pushcclosure(L, state_load, 1);
  lua_setfield(L, -2, "state_load");
  return 0;
}

int ls_bridge_install(lua_State *L, ls_state *s, const ls_spec *spec, char *err, size_t errlen) {
  loader ld = {s, spec};
  lua_pushcfunction(L, install);
  lua_pushlightuserdata(L, &ld);
  if (lua_pcall(L, 1, 0, 0) == 0) return 0;
  ls_vm_pop_error(L, err, errlen);
  return -1;
}

/* ---- rt.take_state_changes ----------------------------------------------------- */

/* Reads change j of rt.changes (store, part, key, val, expire tables at idx..idx+4). */
static int read_change(lua_State *L, const ls_spec *spec, int idx, int j, ls_change *c, char *err,
                       size_t errlen) {
  for (int k = 0; k < NCOLUMNS; k++) lua_rawgeti(L, idx + k, j);
  c->store = (int)lua_tointeger(L, -5) - 1;
  c->partition = (int32_t)lua_tointeger(L, -4);
  c->key = lua_tolstring(L, -3, &c->klen);
  c->val = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &c->vlen) : NULL;
  if (!c->val) c->vlen = 0;
  c->expire_ms = c->val ? (int64_t)lua_tonumber(L, -1) : 0;
  if (!c->key || c->store < 0 || c->store >= spec->nstores || c->partition < 0 ||
      c->partition >= MAX_PARTITIONS)
    return snprintf(err, errlen, "bad state change %d", j), -1;
  return 0;
}

int ls_bridge_take(lua_State *L, int rt_ref, const ls_spec *spec, int store, ls_change_fn fn, void *ud,
                   char *err, size_t errlen) {
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt_ref);
  lua_getfield(L, -1, "take_state_changes");
  if (store >= 0) lua_pushinteger(L, store + 1); /* Lua's store index */
  else lua_pushnil(L);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    ls_vm_pop_error(L, err, errlen);
    lua_settop(L, top);
    return -1;
  }
  int n = (int)lua_tointeger(L, -1);
  lua_getfield(L, top + 1, "changes");
  int ch = lua_gettop(L);
  if (!lua_istable(L, ch)) {
    lua_settop(L, top);
    return snprintf(err, errlen, "rt.changes is missing"), -1;
  }
  static const char *const names[NCOLUMNS] = {"store", "part", "key", "val", "expire"};
  for (int i = 0; i < NCOLUMNS; i++) {
    lua_getfield(L, ch, names[i]);
    if (!lua_istable(L, -1)) {
      lua_settop(L, top);
      return snprintf(err, errlen, "rt.changes.%s is missing", names[i]), -1;
    }
  }
  int rc = 0;
  for (int j = 1; j <= n && rc == 0; j++) {
    ls_change c;
    rc = read_change(L, spec, ch + 1, j, &c, err, errlen);
    if (rc == 0) rc = fn(ud, &c, err, errlen);
    lua_pop(L, NCOLUMNS);
  }
  lua_settop(L, top);
  return rc ? -1 : n;
}

/* ---- one key as JSON (state queries) ----------------------------------------------- */

int ls_bridge_key_json(lua_State *L, const char *store, int32_t p, const char *key, size_t klen,
                       ls_buf *json, char *err, size_t errlen) {
  int top = lua_gettop(L), n = -1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.core");
  if (lua_pcall(L, 1, 1, 0) == 0) {
    lua_getfield(L, -1, "state_load");
    lua_pushstring(L, store);
    lua_pushinteger(L, p);
    lua_pushlstring(L, key, klen);
    if (lua_pcall(L, 3, 1, 0) == 0) {
      n = 0;
      for (lua_pushnil(L); lua_istable(L, -2) && lua_next(L, -2); lua_pop(L, 1)) n++;
      if (n > 0 && ls_encode(L, lua_gettop(L), LS_FMT_JSON, json, err, errlen)) n = -1;
    }
  }
  if (n < 0 && lua_isstring(L, -1)) snprintf(err, errlen, "%s", lua_tostring(L, -1));
  lua_settop(L, top);
  return n;
}

/* ---- dropping caches -------------------------------------------------------------- */

int ls_bridge_forget(lua_State *L, int rt_ref, int32_t p, char *err, size_t errlen) {
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt_ref);
  lua_getfield(L, -1, "forget_partition");
  lua_pushinteger(L, p);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc) ls_vm_pop_error(L, err, errlen);
  lua_settop(L, top);
  return rc ? -1 : 0;
}

/* Protected: require("luastream.state")[name](). */
static int call_state(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luastream.state");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, name);
  lua_call(L, 0, 0);
  return 0;
}

static int state_function(lua_State *L, const char *name, char *err, size_t errlen) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, call_state);
  lua_pushstring(L, name);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc) ls_vm_pop_error(L, err, errlen);
  lua_settop(L, top);
  return rc ? -1 : 0;
}

int ls_bridge_forget_all(lua_State *L, char *err, size_t errlen) {
  return state_function(L, "forget_all", err, errlen);
}

int ls_bridge_undo_batch(lua_State *L, char *err, size_t errlen) {
  return state_function(L, "undo_batch", err, errlen);
}
