/* test_spec.c - the spec contract between the Lua side and spec.c.
 *
 * The Lua side (luastream's init.lua and runtime.lua) defines the options,
 * their defaults, the names they accept and what those resolve to; spec.c
 * reads the spec it builds without defaults or aliases of its own. Checked
 * here, with specs built by the real rt.load:
 *   - a full spec reads back with every value (changelog topics, the
 *     dead-letter topic, formats, batch_ms as resolved, kafka strings);
 *   - every field Lua sets is required: the spec without it is refused with
 *     a message naming it (only broker and dead_letter may be nil), and a
 *     wrong type is refused too;
 *   - for each kind of name (guarantee, offset_reset, on_error, formats with
 *     their aliases, arrays): every name Lua accepts reads in C as what Lua
 *     resolved it to; a name C takes as is, Lua accepts as that same
 *     canonical name; a name Lua refuses, C refuses when put in the spec;
 *   - C's format names are exactly Lua's canonical ones, and its policy
 *     names Lua's policies plus "function";
 *   - the broker: --broker, else the option, else LUASTREAM_BROKER, else
 *     NULL (the dev broker). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "check.h"
#include "codec.h"
#include "lua_vm.h"
#include "spec.h"

static lua_State *L;

static const char PRELUDE[] =
    "local rt = require('luastream.runtime')\n"
    "ls = require('luastream')\n"
    "function load_app(src, cli)\n"
    "  return rt.load(assert(load(src, '=app.lua')), cli or {})\n"
    "end\n"
    "FULL = load_app([[\n"
    "local ls = require('luastream')\n"
    "local app = ls.app{ name = 'full', on_error = 'dead-letter', commit_every = 10, batch_ms = 2.5,\n"
    "  kafka = { ['linger.ms'] = 5, ['enable.idempotence'] = true }, broker = 'k:9092' }\n"
    "local a = app:topic('a', { key = 'str', value = 'msgpack', arrays = 'vec' })\n"
    "local b = app:topic('b', { key = 'integer', value = 'double' })\n"
    "local out = app:topic('out', { key = 'string', value = 'json' })\n"
    "app:dataframe(a):update(function(row, state) end, { stateful = true, store = 'counts' }):to_topic(out)\n"
    "app:dataframe(b):to_topic(out)\n"
    "app:source(out, function(emit) end, { every = 250 })\n"
    "]])\n"
    /* Fields luastream.testing uses and C does not read. */
    "LUA_ONLY = { ['sources[1].topic'] = true, ['sources[1].output'] = true }\n"
    "local function copy(t)\n"
    "  if type(t) ~= 'table' then return t end\n"
    "  local c = {}\n"
    "  for k, v in pairs(t) do c[k] = copy(v) end\n"
    "  return c\n"
    "end\n"
    /* FIELDS[k] = { path = 'inputs[1].key', get = fn(spec) -> the table, key = 'key' } */
    "FIELDS = {}\n"
    "local function keys(t)\n"
    "  local l = {}\n"
    "  for k in pairs(t) do l[#l + 1] = k end\n"
    "  table.sort(l)\n"
    "  return l\n"
    "end\n"
    "for _, k in ipairs(keys(FULL)) do\n"
    "  FIELDS[#FIELDS + 1] = { path = k, get = function(s) return s end, key = k }\n"
    "end\n"
    "for _, list in ipairs({ 'inputs', 'outputs', 'sources', 'stores' }) do\n"
    "  for _, k in ipairs(keys(FULL[list][1])) do\n"
    "    local path = list .. '[1].' .. k\n"
    "    if not LUA_ONLY[path] then\n"
    "      FIELDS[#FIELDS + 1] = { path = path, get = function(s) return s[list][1] end, key = k }\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* FULL with field k set to v. */
    "function variant(k, v)\n"
    "  local s = copy(FULL)\n"
    "  local f = FIELDS[k]\n"
    "  f.get(s)[f.key] = v\n"
    "  return s\n"
    "end\n"
    "function field_path(k) return FIELDS[k].path end\n"
    /* A value of another type than field k's. */
    "function wrong_type(k)\n"
    "  local f = FIELDS[k]\n"
    "  local v = f.get(FULL)[f.key]\n"
    "  if type(v) == 'string' then return 1 end\n"
    "  return 'x'\n"
    "end\n"
    /* The names Lua accepts for a kind, and how it resolves each. */
    "ACCEPTED = {\n"
    "  guarantee = ls.GUARANTEES, offset_reset = ls.OFFSET_RESETS, arrays = ls.ARRAYS, format = ls.FORMATS,\n"
    "  on_error = (function()\n"
    "    local t = { ['function'] = true }\n"
    "    for k in pairs(ls.ON_ERROR_POLICIES) do t[k] = true end\n"
    "    return t\n"
    "  end)(),\n"
    "}\n"
    "function candidates(kind)\n"
    "  local seen, l = {}, {}\n"
    "  local function add(n) if not seen[n] then seen[n] = true; l[#l + 1] = n end end\n"
    "  for _, n in ipairs(keys(ACCEPTED[kind])) do add(n) end\n"
    "  if kind == 'format' then for _, n in ipairs(keys(ls.FORMAT_ALIASES)) do add(n) end end\n"
    "  for _, n in ipairs({ '', 'JSON', 'xml', 'str ', 'long', 'float', 'once', 'exactly_once', 'at_least_once',\n"
    "    'newest', 'ignore', 'retry', 'Vec', 'vecs', 'array', 'STOP', 'Skip', 'deadletter', 'none' }) do\n"
    "    add(n)\n"
    "  end\n"
    "  return l\n"
    "end\n"
    "local APP = \"local ls = require('luastream')\\nlocal app = ls.app{ name = 'v'%s }\\n\" ..\n"
    "  \"local t = app:topic('in'%s)\\napp:dataframe(t):to_topic(app:topic('out'))\\n\"\n"
    /* rt.load with option kind = name; returns the spec, or raises. */
    "function with_option(kind, name)\n"
    "  local q = string.format('%q', name)\n"
    "  local app, topic = '', ''\n"
    "  if kind == 'format' then topic = ', { key = ' .. q .. ', value = ' .. q .. ' }'\n"
    "  elseif kind == 'arrays' then topic = ', { arrays = ' .. q .. ' }'\n"
    "  elseif kind == 'on_error' and name == 'function' then app = ', on_error = function() end'\n"
    "  else app = ', ' .. kind .. ' = ' .. q end\n"
    "  return load_app(string.format(APP, app, topic))\n"
    "end\n"
    /* FULL with the raw name where C reads kind. */
    "function raw(kind, name)\n"
    "  local s = copy(FULL)\n"
    "  if kind == 'format' then s.inputs[1].key = name\n"
    "  elseif kind == 'arrays' then s.inputs[1].arrays = name\n"
    "  else s[kind] = name end\n"
    "  return s\n"
    "end\n"
    "function resolved(kind, name)\n"
    "  if kind == 'format' then return ls._format(name) end\n"
    "  return ACCEPTED[kind][name] and name or nil\n"
    "end\n";

/* Calls global function fn with string arguments (NULL: none) and nresults
 * results; returns 0, or -1 with the error message popped into err. */
static int call(const char *fn, const char *a, const char *b, int nresults, char *err, size_t errlen) {
  lua_getglobal(L, fn);
  int nargs = 0;
  if (a) lua_pushstring(L, a), nargs++;
  if (b) lua_pushstring(L, b), nargs++;
  if (lua_pcall(L, nargs, nresults, 0) != 0) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

static int count_fields(void) {
  lua_getglobal(L, "FIELDS");
  int n = (int)lua_objlen(L, -1);
  lua_pop(L, 1);
  return n;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- a full spec ---- */

static void test_full_spec(void) {
  ls_spec s;
  char err[512];
  lua_getglobal(L, "FULL");
  CHECK(ls_spec_read(L, &s, err, sizeof err) == 0);
  lua_pop(L, 1);
  CHECK_STR(s.name, "full");
  CHECK_STR(s.broker, "k:9092");
  CHECK_STR(s.guarantee, "at-least-once");
  CHECK_STR(s.offset_reset, "earliest");
  CHECK_STR(s.state_dir, "state");
  CHECK_STR(s.dead_letter, "full__dead-letter");
  CHECK(s.on_error == LS_ON_ERROR_DEAD_LETTER);
  CHECK(s.commit_interval_s == 5.0 && s.commit_every == 10 && s.batch_size == 1000 && s.batch_ms == 2);
  CHECK(s.wait_for_topics == 0);
  CHECK(s.ninputs == 2 && s.noutputs == 1 && s.nsources == 1 && s.nstores == 1);
  CHECK_STR(s.inputs[0].name, "a");
  CHECK(s.inputs[0].key == LS_FMT_STRING && s.inputs[0].value == LS_FMT_MSGPACK);
  CHECK(s.inputs[0].value_flags == LS_ARRAYS_VEC);
  CHECK(s.inputs[1].key == LS_FMT_INT && s.inputs[1].value == LS_FMT_DOUBLE && s.inputs[1].value_flags == 0);
  CHECK_STR(s.outputs[0].name, "out");
  CHECK(s.outputs[0].key == LS_FMT_STRING && s.outputs[0].value == LS_FMT_JSON);
  CHECK(s.source_every_ms[0] == 250);
  CHECK_STR(s.stores[0].name, "counts");
  CHECK(s.stores[0].topic == 0);
  CHECK_STR(s.stores[0].changelog, "full__counts__changelog");
  CHECK(s.nkafka == 4);
  for (int i = 0; i + 1 < s.nkafka; i += 2) {
    if (strcmp(s.kafka[i], "linger.ms") == 0) CHECK_STR(s.kafka[i + 1], "5");
    else if (strcmp(s.kafka[i], "enable.idempotence") == 0) CHECK_STR(s.kafka[i + 1], "true");
    else CHECK(!"an unexpected kafka property");
  }
  ls_spec_free(&s);
  CHECK(s.name == NULL && s.inputs == NULL && s.stores == NULL);
}

/* ---- every field is required ---- */

static void test_every_field_required(void) {
  int n = count_fields();
  CHECK(n >= 28); /* 16 top-level fields, 4 + 3 + 1 + 3 in the lists */
  int optional = 0;
  for (int k = 1; k <= n; k++) {
    char err[512], want[256], path[128];
    ls_spec s;
    lua_getglobal(L, "field_path");
    lua_pushinteger(L, k);
    lua_call(L, 1, 1);
    snprintf(path, sizeof path, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);

    /* without the field */
    lua_getglobal(L, "variant");
    lua_pushinteger(L, k);
    lua_pushnil(L);
    lua_call(L, 2, 1);
    int top = lua_gettop(L);
    int rc = ls_spec_read(L, &s, err, sizeof err);
    CHECK(lua_gettop(L) == top);
    lua_pop(L, 1);
    if (strcmp(path, "broker") == 0) { /* nil: the dev broker */
      optional++;
      CHECK(rc == 0 && s.broker == NULL);
      ls_spec_free(&s);
    } else if (strcmp(path, "dead_letter") == 0) { /* nil: none, which on_error = dead-letter needs */
      optional++;
      CHECK(rc == -1);
      CHECK_STR(err, "spec.dead_letter: missing, and on_error is 'dead-letter'");
    } else {
      snprintf(want, sizeof want, "spec.%s: missing (luastream.runtime sets every field of the spec)", path);
      CHECK(rc == -1);
      if (rc == -1) CHECK_STR(err, want);
      else ls_spec_free(&s);
    }
    CHECK(rc == 0 || (s.name == NULL && s.inputs == NULL && s.kafka == NULL)); /* nothing left to free */

    /* with a value of another type */
    lua_getglobal(L, "variant");
    lua_pushinteger(L, k);
    lua_getglobal(L, "wrong_type");
    lua_pushinteger(L, k);
    lua_call(L, 1, 1);
    lua_call(L, 2, 1);
    rc = ls_spec_read(L, &s, err, sizeof err);
    lua_pop(L, 1);
    snprintf(want, sizeof want, "spec.%s: expected a ", path);
    CHECK(rc == -1 && starts_with(err, want));
    if (rc == -1 && !starts_with(err, want)) fprintf(stderr, "  %s: %s\n", path, err);
    if (rc == 0) ls_spec_free(&s);
  }
  CHECK(optional == 2);
}

/* ---- the names Lua accepts and C reads ---- */

/* The name C holds for kind in s. */
static const char *c_name(const ls_spec *s, const char *kind) {
  if (strcmp(kind, "guarantee") == 0) return s->guarantee;
  if (strcmp(kind, "offset_reset") == 0) return s->offset_reset;
  if (strcmp(kind, "on_error") == 0) return ls_on_error_name(s->on_error);
  if (strcmp(kind, "format") == 0) return ls_format_name(s->inputs[0].key);
  return (s->inputs[0].value_flags & LS_ARRAYS_VEC) ? "vec" : "table";
}

static void check_kind(const char *kind) {
  char err[512];
  CHECK(call("candidates", kind, NULL, 1, err, sizeof err) == 0);
  int n = (int)lua_objlen(L, -1), accepted = 0, refused = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    char name[64];
    snprintf(name, sizeof name, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);

    CHECK(call("resolved", kind, name, 1, err, sizeof err) == 0);
    char canonical[64] = "";
    if (lua_isstring(L, -1)) snprintf(canonical, sizeof canonical, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);

    ls_spec s;
    int lua_ok = call("with_option", kind, name, 1, err, sizeof err) == 0;
    if (lua_ok) {
      accepted++;
      CHECK(canonical[0] != 0); /* Lua accepts exactly the names it resolves */
      int rc = ls_spec_read(L, &s, err, sizeof err);
      lua_pop(L, 1);
      CHECK(rc == 0);
      if (rc == 0) {
        CHECK_STR(c_name(&s, kind), canonical);
        ls_spec_free(&s);
      } else {
        fprintf(stderr, "  %s '%s': Lua accepts it, C refuses its spec: %s\n", kind, name, err);
      }
    } else {
      refused++;
      CHECK(canonical[0] == 0);
    }

    /* The raw name in the spec: C takes it only as a canonical name Lua accepts. */
    CHECK(call("raw", kind, name, 1, err, sizeof err) == 0);
    int c_ok = ls_spec_read(L, &s, err, sizeof err) == 0;
    lua_pop(L, 1);
    if (c_ok) {
      CHECK(lua_ok && strcmp(canonical, name) == 0);
      if (!(lua_ok && strcmp(canonical, name) == 0)) fprintf(stderr, "  %s '%s': C takes it, Lua does not\n", kind, name);
      ls_spec_free(&s);
    } else {
      CHECK(!lua_ok || strcmp(canonical, name) != 0); /* refused by C: refused by Lua, or an alias */
      if (lua_ok && strcmp(canonical, name) == 0) fprintf(stderr, "  %s '%s': Lua takes it, C refuses: %s\n", kind, name, err);
      CHECK(strstr(err, name) != NULL);
    }
  }
  lua_pop(L, 1);
  CHECK(accepted >= 2 && refused >= 10);
}

static void test_names_agree(void) {
  static const char *const kinds[] = {"guarantee", "offset_reset", "on_error", "format", "arrays"};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) check_kind(kinds[i]);
}

/* C's format names are Lua's canonical ones, no more, no fewer. */
static void test_format_names(void) {
  lua_getglobal(L, "ls");
  lua_getfield(L, -1, "FORMATS");
  int lua_count = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) lua_count++, lua_pop(L, 1);
  int c_count = 0;
  for (int f = 0; strcmp(ls_format_name((ls_format)f), "unknown") != 0; f++) {
    c_count++;
    lua_getfield(L, -1, ls_format_name((ls_format)f));
    CHECK(lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  CHECK(c_count == lua_count && c_count == 6);
  lua_pop(L, 2);
}

/* ls_on_error_name and ls_on_error_parse (for the answer of rt.handle_error)
 * agree with each other and with Lua's policies. */
static void test_on_error_names(void) {
  static const ls_on_error all[] = {LS_ON_ERROR_STOP, LS_ON_ERROR_SKIP, LS_ON_ERROR_DEAD_LETTER,
                                    LS_ON_ERROR_FUNCTION};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    ls_on_error p = LS_ON_ERROR_STOP;
    CHECK(ls_on_error_parse(ls_on_error_name(all[i]), &p) == 0 && p == all[i]);
    lua_getglobal(L, "ls");
    lua_getfield(L, -1, "ON_ERROR_POLICIES");
    lua_getfield(L, -1, ls_on_error_name(all[i]));
    CHECK(lua_toboolean(L, -1) == (all[i] != LS_ON_ERROR_FUNCTION)); /* a function is not a string policy */
    lua_pop(L, 3);
  }
  ls_on_error p = LS_ON_ERROR_SKIP;
  CHECK(ls_on_error_parse("Stop", &p) == -1 && ls_on_error_parse("", &p) == -1 && ls_on_error_parse(NULL, &p) == -1);
  CHECK(p == LS_ON_ERROR_SKIP);
  CHECK_STR(ls_on_error_name((ls_on_error)9), "unknown");
}

/* ---- the broker, resolved once in Lua ---- */

static char *broker_of(const char *opts, const char *cli_broker) {
  char src[512], err[512];
  snprintf(src, sizeof src,
           "local ls = require('luastream')\nlocal app = ls.app{ name = 'b'%s }\n"
           "app:dataframe(app:topic('in')):to_topic(app:topic('out'))\n", opts);
  lua_getglobal(L, "load_app");
  lua_pushstring(L, src);
  lua_createtable(L, 0, 1);
  if (cli_broker) lua_pushstring(L, cli_broker), lua_setfield(L, -2, "broker");
  if (lua_pcall(L, 2, 1, 0) != 0) {
    fprintf(stderr, "load_app: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return strdup("(error)");
  }
  ls_spec s;
  char *b = NULL;
  if (ls_spec_read(L, &s, err, sizeof err) == 0) {
    b = s.broker ? strdup(s.broker) : NULL;
    ls_spec_free(&s);
  } else {
    b = strdup(err);
  }
  lua_pop(L, 1);
  return b;
}

static void check_broker(const char *opts, const char *cli, const char *want) {
  char *got = broker_of(opts, cli);
  if (want) CHECK_STR(got, want);
  else CHECK(got == NULL);
  free(got);
}

static void test_broker(void) {
  const char *saved = getenv("LUASTREAM_BROKER");
  char *keep = saved ? strdup(saved) : NULL;
  unsetenv("LUASTREAM_BROKER");
  check_broker(", broker = 'opt:1'", "cli:1", "cli:1");
  check_broker(", broker = 'opt:1'", NULL, "opt:1");
  check_broker("", "cli:1", "cli:1");
  check_broker("", "", NULL);
  check_broker("", NULL, NULL); /* the dev broker */
  setenv("LUASTREAM_BROKER", "env:1", 1);
  check_broker("", NULL, "env:1");
  check_broker(", broker = 'opt:1'", NULL, "opt:1");
  check_broker("", "cli:1", "cli:1");
  setenv("LUASTREAM_BROKER", "", 1);
  check_broker("", NULL, NULL);
  if (keep) setenv("LUASTREAM_BROKER", keep, 1);
  else unsetenv("LUASTREAM_BROKER");
  free(keep);
}

/* ---- not a spec at all ---- */

static void test_not_a_table(void) {
  ls_spec s;
  char err[256];
  lua_pushliteral(L, "x");
  CHECK(ls_spec_read(L, &s, err, sizeof err) == -1);
  CHECK_STR(err, "spec: expected a table, got string");
  lua_pop(L, 1);
  /* a list entry that is not a table, and a store of no input */
  CHECK(luaL_dostring(L, "local s = variant(1, FULL[FIELDS[1].key]); s.inputs[2] = 5; return s") == 0);
  CHECK(ls_spec_read(L, &s, err, sizeof err) == -1);
  CHECK_STR(err, "spec.inputs[2]: expected a table, got number");
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "local s = variant(1, FULL[FIELDS[1].key]); s.stores[1].topic = 'b2'; return s") == 0);
  CHECK(ls_spec_read(L, &s, err, sizeof err) == -1);
  CHECK_STR(err, "spec.stores[1].topic: 'b2' is not in spec.inputs");
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "local s = variant(1, FULL[FIELDS[1].key]); s.batch_size = 0.5; return s") == 0);
  CHECK(ls_spec_read(L, &s, err, sizeof err) == -1);
  CHECK_STR(err, "spec.batch_size: expected a whole number in [1, 2147483647], got 0.5");
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "local s = variant(1, FULL[FIELDS[1].key]); s.kafka.x = true; return s") == 0);
  CHECK(ls_spec_read(L, &s, err, sizeof err) == -1);
  CHECK_STR(err, "spec.kafka: expected string names and string values, got string = boolean");
  lua_pop(L, 1);
}

int main(void) {
  L = ls_vm_new();
  if (!L || luaL_loadstring(L, PRELUDE) != 0 || lua_pcall(L, 0, 0, 0) != 0) {
    fprintf(stderr, "cannot set up Lua: %s\n", L ? lua_tostring(L, -1) : "no state");
    return 1;
  }
  int top = lua_gettop(L);
  test_full_spec();
  test_every_field_required();
  test_names_agree();
  test_format_names();
  test_on_error_names();
  test_broker();
  test_not_a_table();
  CHECK(lua_gettop(L) == top);
  ls_vm_close(L);
  CHECK_DONE();
}
