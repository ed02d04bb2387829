/* lua_vm.h - the embedded LuaJIT state.
 *
 * Creates a lua_State with the standard libraries, the shared codec values and
 * the `luastream.core` module (codecs, clocks, logging) preloaded, and
 * package.path pointing at the runtime's own Lua modules, found next to the
 * binary (installed layout) or in the source tree (build tree). */
#ifndef LS_LUA_VM_H
#define LS_LUA_VM_H

#include <stddef.h>

#include <lua.h>

lua_State *ls_vm_new(void);
void ls_vm_close(lua_State *L);
/* Makes core.now_ms (ls.now_ms) in L return now_ms(ud) instead of the wall
 * clock: the one source of time for the pipeline in L (the test driver's
 * clock, moved by d:advance). */
void ls_vm_set_clock(lua_State *L, double (*now_ms)(void *ud), void *ud);
/* The clock of L, from C: what core.now_ms returns (sources, idle timers). */
double ls_vm_now_ms(lua_State *L);

/* Puts the directory of script on package.path, first. */
void ls_vm_add_script_dir(lua_State *L, const char *script);

/* The files of the app in L: the script, every module it loaded from the
 * script's directory tree (not luastream's own) and every model file it
 * loaded (ls.model.load). Returns the count and
 * a malloc'd array of malloc'd paths in *files (free with ls_vm_free_files),
 * or -1. */
int ls_vm_project_files(lua_State *L, const char *script, char ***files);
void ls_vm_free_files(char **files, int n);

/* The directory holding luastream/init.lua. */
const char *ls_vm_lua_dir(void);

/* Formats the error at the top of the stack (a string, or anything with
 * __tostring) into buf and pops it. */
void ls_vm_pop_error(lua_State *L, char *buf, size_t len);

/* Runs a Lua file as a plain program with args as the global `arg`; returns
 * the process exit code (0, or 1 after printing the error). */
int ls_vm_run_file(const char *path, int argc, char **argv);

/* Runs the busted specs under dir inside this runtime (luastream test). */
int ls_vm_run_tests(const char *dir, int argc, char **argv);

#endif
