/* watchdog.h - a pipeline that runs away does not hang the process silently.
 *
 * What it owns: the batch time limit and the Lua heap cap (the app options
 * batch_time_limit and heap_limit_mb, docs/api.md), and what happens when one
 * is passed.
 *
 *  - Where the pipeline is: the generated row loop stores the row it is at,
 *    and the step it is in (the user function it is about to call), into one
 *    C struct (ls_wd_row, through FFI: a store per row and per function call,
 *    no hook, so it works inside compiled traces, where LuaJIT's hooks do not
 *    fire). batch.c marks when a call into the pipeline starts and ends
 *    (ls_watchdog_enter/leave) and which batch it runs (its meta array says
 *    the row's topic, partition and offset; its step list says the step's
 *    file:line).
 *  - The time limit: a thread wakes a few times per limit and, when one call
 *    has run longer than the limit, reports the step (file:line), the message
 *    (topic[partition]@offset) and exits with 1 at once (_exit: the main
 *    thread is still busy inside Lua, so nothing more is committed and the
 *    restarted process processes the message again). It writes its report
 *    with write(2), never through stdio, whose lock the busy thread may hold.
 *  - The heap cap: every Lua state made by lua_vm.c counts the bytes of its
 *    allocator (LuaJIT's own, wrapped) and refuses the allocation that would
 *    pass the limit, once; the call fails with "not enough memory", and the
 *    engine, seeing ls_watchdog_heap_tripped, stops with the same report and
 *    exit code, committing nothing of the batch. A reserve past the limit
 *    lets the error unwind; past it allocations fail again.
 *  - Under --watch neither exits: the process runs itself again (exec, same
 *    pid, same arguments) in a waiting mode that starts the app only once the
 *    script has changed and loads (ls_watchdog_wait_for_fix).
 *
 * The struct is one for the process: pipelines run on the main thread, one
 * call at a time (the test driver's Lua states write it too, harmlessly). */
#ifndef LS_WATCHDOG_H
#define LS_WATCHDOG_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "batch.h"

/* What the generated row loop records (luastream.runtime declares it for FFI:
 * keep the two in step). */
typedef struct ls_wd_row {
  int32_t i;     /* row of the batch (1-based); 0: none (a source, or not yet) */
  int32_t nout;  /* outputs of the rows before it (runtime.lua's replay) */
  int32_t step;  /* the user function's step (1-based index into rt.steps); 0: none */
  int32_t spare;
} ls_wd_row;

/* The process's ls_wd_row (core.watch_row hands it to Lua). */
ls_wd_row *ls_watchdog_row(void);

/* Around every call into a pipeline (main thread; calls may nest). */
void ls_watchdog_enter(const ls_batch *b);
void ls_watchdog_leave(void);

/* rt.steps of luastream.runtime (the table at rt_ref), as C strings
 * "file:line: what"; *n set. NULL with *n = 0 when there are none. */
char **ls_watchdog_read_steps(lua_State *L, int rt_ref, int *n);
void ls_watchdog_free_steps(char **steps, int n);

/* ---- the heap cap ---------------------------------------------------------- */

/* Wraps L's allocator with one that counts its bytes (no limit yet). 0, or -1
 * (out of memory). ls_watchdog_unwrap_alloc after lua_close frees it. */
int ls_watchdog_wrap_alloc(lua_State *L);
void *ls_watchdog_alloc_of(lua_State *L); /* before lua_close */
void ls_watchdog_unwrap_alloc(void *heap); /* after lua_close */

/* Sets the heap limit of a state wrapped above (0: none). */
void ls_watchdog_set_heap_limit(lua_State *L, double mb);

/* The bytes L's allocator holds now (0 when not wrapped). */
size_t ls_watchdog_heap_bytes(lua_State *L);

/* 1 when a state's allocator refused an allocation at its limit since the
 * process started; the report ("the Lua heap reached ... in step ..., on
 * message ...") goes to report. */
int ls_watchdog_heap_tripped(char *report, size_t len);

/* ---- the time limit -------------------------------------------------------- */

typedef struct ls_watchdog ls_watchdog;

/* Starts the thread (the calling thread is the one it watches). limit_s: the
 * batch time limit (0: none; no thread). watch: --watch (restart and wait for
 * a fixed script instead of exiting). */
ls_watchdog *ls_watchdog_start(double limit_s, int watch, const char *script);
/* A reload may change the limit (0: none: the thread idles). */
void ls_watchdog_set_limit(ls_watchdog *w, double limit_s);
void ls_watchdog_stop(ls_watchdog *w);

/* ---- --watch: restart and wait for a fixed script -------------------------- */

/* Runs this process again, same executable and arguments (exec, so the same
 * pid: a supervisor sees no exit), in the waiting mode below, after the
 * report. Returns only if exec failed. Async-signal-safe: no allocation, no
 * stdio. */
void ls_watchdog_restart_waiting(const char *script);

/* In the process started by ls_watchdog_restart_waiting: waits until script
 * differs from what it was then and try_load(ud) (a load of it in a scratch
 * Lua state) succeeds, polling every 250 ms; a script that fails to load is
 * logged and waited on again. Returns 1 when it waited and the script loads,
 * 0 when this process was not started that way, -1 when *stop became set. */
int ls_watchdog_wait_for_fix(const char *script, int (*try_load)(void *ud, char *err, size_t errlen),
                             void *ud, volatile sig_atomic_t *stop);

#endif
