/* lua_vm.c - the embedded LuaJIT state (see lua_vm.h).
 *
 * Also hosts `luastream test` (busted run inside the runtime, so specs see the
 * same FFI entry points and codecs as pipelines) and `luastream lua FILE`. */
#include "lua_vm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

#include "codec.h"
#include "log.h"
#include "mem.h"
#include "luavalue.h"
#include "watchdog.h"

static char lua_dir[PATH_MAX];

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

static void find_lua_dir(void) {
  const char *env = getenv("LUASTREAM_LUA_DIR");
  char probe[PATH_MAX + 64];
  if (env && *env) {
    snprintf(lua_dir, sizeof lua_dir, "%s", env);
    return;
  }
  char exe[PATH_MAX - 64];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(probe, sizeof probe, "%s/../share/luastream/lua/luastream/init.lua", exe);
    if (file_exists(probe)) {
      snprintf(lua_dir, sizeof lua_dir, "%s/../share/luastream/lua", exe);
      return;
    }
  }
  snprintf(lua_dir, sizeof lua_dir, "%s", LS_LUA_SOURCE_DIR);
}

const char *ls_vm_lua_dir(void) {
  if (!lua_dir[0]) find_lua_dir();
  return lua_dir;
}

/* The clock behind core.now_ms (ls.now_ms): the wall clock, unless
 * ls_vm_set_clock gave this state another (the test driver's). */
static char clock_key;

typedef struct vm_clock {
  double (*now_ms)(void *ud);
  void *ud;
} vm_clock;

void ls_vm_set_clock(lua_State *L, double (*now_ms)(void *ud), void *ud) {
  lua_pushlightuserdata(L, &clock_key);
  vm_clock *c = lua_newuserdata(L, sizeof *c);
  c->now_ms = now_ms;
  c->ud = ud;
  lua_rawset(L, LUA_REGISTRYINDEX);
}

double ls_vm_now_ms(lua_State *L) {
  lua_pushlightuserdata(L, &clock_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  const vm_clock *c = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c ? c->now_ms(c->ud) : ls_now_ms();
}

static int core_now_ms(lua_State *L) {
  lua_pushnumber(L, ls_vm_now_ms(L));
  return 1;
}

static int core_mono_ms(lua_State *L) {
  lua_pushnumber(L, ls_mono_ms());
  return 1;
}

static int core_log(lua_State *L) {
  int level = ls_log_parse_level(luaL_checkstring(L, 1));
  if (level < 0) return luaL_argerror(L, 1, "level must be debug, info, warn or error");
  ls_log((ls_log_level)level, "%s", luaL_checkstring(L, 2));
  return 0;
}

/* True when a status line shares the terminal with stdout: a printed line
 * must erase it first. */
static int core_status_line(lua_State *L) {
  lua_pushboolean(L, ls_log_get_status_line() && isatty(STDOUT_FILENO));
  return 1;
}

/* The struct the generated row loop records its row and step in (FFI). */
static int core_watch_row(lua_State *L) {
  lua_pushlightuserdata(L, ls_watchdog_row());
  return 1;
}

static int core_version(lua_State *L) {
  lua_pushstring(L, LS_VERSION);
  return 1;
}

static int luaopen_core(lua_State *L) {
  lua_newtable(L);
  ls_codec_open(L);
  static const luaL_Reg fns[] = {{"now_ms", core_now_ms},
                                 {"monotonic_ms", core_mono_ms},
                                 {"log", core_log},
                                 {"version", core_version},
                                 {"status_line", core_status_line},
                                 {"watch_row", core_watch_row},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  return 1;
}

static void set_paths(lua_State *L) {
  const char *dir = ls_vm_lua_dir();
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_core);
  lua_setfield(L, -2, "luastream.core");
  lua_pop(L, 2);
}

static int init_state(lua_State *L) {
  luaL_openlibs(L);
  ls_value_init(L);
  set_paths(L);
  return 0;
}

lua_State *ls_vm_new(void) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  /* LuaJIT's allocator, counted, for the heap cap (watchdog.c) */
  if (ls_watchdog_wrap_alloc(L)) {
    lua_close(L);
    return NULL;
  }
  if (lua_cpcall(L, init_state, NULL) != 0) {
    ls_error("cannot initialise Lua: %s", lua_tostring(L, -1));
    ls_vm_close(L);
    return NULL;
  }
  /* LUASTREAM_JIT=off: the interpreter only (docs/edge.md: a LuaJIT code
     generation bug on arm64 that a pipeline may meet) */
  const char *jit = getenv("LUASTREAM_JIT");
  if (jit && strcmp(jit, "off") == 0) luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  return L;
}

void ls_vm_close(lua_State *L) {
  if (!L) return;
  void *heap = ls_watchdog_alloc_of(L);
  lua_close(L);
  ls_watchdog_unwrap_alloc(heap);
}

void ls_vm_add_script_dir(lua_State *L, const char *script) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", script);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, ".");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

/* Lists package.loaded's modules found under the script's directory, then the
 * model files the script loaded (luastream.model's list), wherever they are. */
static const char project_files_lua[] =
    "local script, libdir = ...\n"
    "local dir = script:match('^(.*)/[^/]*$') or '.'\n"
    "local mods, seen = {}, { [script] = true }\n"
    "for name in pairs(package.loaded) do\n"
    "  local path = type(name) == 'string' and package.searchpath(name, package.path)\n"
    "  if path and not seen[path] and path:sub(1, #dir + 1) == dir .. '/'\n"
    "     and path:sub(1, #libdir + 1) ~= libdir .. '/' then\n"
    "    seen[path] = true; mods[#mods + 1] = path\n"
    "  end\n"
    "end\n"
    "table.sort(mods)\n"
    "table.insert(mods, 1, script)\n"
    "local model = package.loaded['luastream.model']\n"
    "for _, path in ipairs(type(model) == 'table' and model.files() or {}) do\n"
    "  if not seen[path] then seen[path] = true; mods[#mods + 1] = path end\n"
    "end\n"
    "return mods\n";

int ls_vm_project_files(lua_State *L, const char *script, char ***files) {
  int top = lua_gettop(L), n = -1;
  *files = NULL;
  if (luaL_loadbuffer(L, project_files_lua, sizeof project_files_lua - 1, "=project_files") == 0) {
    lua_pushstring(L, script);
    lua_pushstring(L, ls_vm_lua_dir());
    if (lua_pcall(L, 2, 1, 0) == 0 && lua_istable(L, -1)) {
      n = (int)lua_objlen(L, -1);
      *files = ls_xcalloc((size_t)n + 1, sizeof **files);
      for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        (*files)[i] = ls_xstrdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, top);
  return n;
}

void ls_vm_free_files(char **files, int n) {
  for (int i = 0; files && i < n; i++) free(files[i]);
  free(files);
}

void ls_vm_pop_error(lua_State *L, char *buf, size_t len) {
  const char *msg = lua_tostring(L, -1);
  if (!msg) {
    if (luaL_callmeta(L, -1, "__tostring") && lua_isstring(L, -1)) {
      snprintf(buf, len, "%s", lua_tostring(L, -1));
      lua_pop(L, 2);
      return;
    }
    msg = "(error object is not a string)";
  }
  snprintf(buf, len, "%s", msg);
  lua_pop(L, 1);
}

static void set_arg(lua_State *L, const char *arg0, int argc, char **argv) {
  lua_createtable(L, argc, 1);
  lua_pushstring(L, arg0);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int ls_vm_run_file(const char *path, int argc, char **argv) {
  lua_State *L = ls_vm_new();
  if (!L) return 1;
  ls_vm_add_script_dir(L, path);
  set_arg(L, path, argc, argv);
  lua_pushcfunction(L, traceback);
  int rc = luaL_loadfile(L, path);
  if (rc == 0) rc = lua_pcall(L, 0, 0, -2);
  if (rc != 0) {
    char err[4096];
    ls_vm_pop_error(L, err, sizeof err);
    fprintf(stderr, "luastream: %s\n", err);
  }
  ls_vm_close(L);
  return rc ? 1 : 0;
}

int ls_vm_run_tests(const char *dir, int argc, char **argv) {
  lua_State *L = ls_vm_new();
  if (!L) return 1;
  /* busted reads its command line from `arg`: the spec directory, then any options. */
  lua_createtable(L, argc + 1, 1);
  lua_pushliteral(L, "luastream test");
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushstring(L, dir);
  lua_rawseti(L, -2, argc + 1);
  lua_setglobal(L, "arg");
  char probe[PATH_MAX];
  /* Puts the spec directory (dir itself, or the directory of a spec file) on package.path. */
  struct stat sb;
  if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) snprintf(probe, sizeof probe, "%s", dir);
  else snprintf(probe, sizeof probe, "%s/spec", dir);
  ls_vm_add_script_dir(L, probe);
  static const char runner[] =
      "local ok, runner = pcall(require, 'busted.runner')\n"
      "if not ok then io.stderr:write('luastream test: busted is not installed (apt-get install "
      "lua-busted)\\n') os.exit(2) end\n"
      "runner({ standalone = false })\n";
  lua_pushcfunction(L, traceback);
  int rc = luaL_loadbuffer(L, runner, sizeof runner - 1, "=luastream test");
  if (rc == 0) rc = lua_pcall(L, 0, 0, -2);
  if (rc != 0) {
    char err[4096];
    ls_vm_pop_error(L, err, sizeof err);
    fprintf(stderr, "luastream test: %s\n", err);
  }
  ls_vm_close(L);
  return rc ? 1 : 0;
}
