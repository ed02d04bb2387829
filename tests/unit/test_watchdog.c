/* test_watchdog.c - the watchdog's parts (watchdog.c), without Kafka:
 *   - the step list a loaded script hands to C ("file:line: what" of every
 *     user function's step and source), and the row and step the generated
 *     loop records (ls_wd_row) while a batch runs;
 *   - the heap count of a Lua state (LuaJIT's allocator, wrapped): it follows
 *     allocations and collections, and the cap refuses the allocation that
 *     would pass it, inside a compiled loop, with a report naming the step
 *     and the message; the state is usable again afterwards;
 *   - the time limit: a child process whose "pipeline call" never returns is
 *     ended with exit code 1 and one report line naming step and message. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "batch.h"
#include "check.h"
#include "log.h"
#include "lua_vm.h"
#include "watchdog.h"

static char dir[] = "/tmp/ls-test-wd-XXXXXX";
static char script[600];

static int push_cli(lua_State *L, void *ud) {
  (void)ud;
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "test:0");
  lua_setfield(L, -2, "broker");
  lua_newtable(L);
  lua_setfield(L, -2, "set");
  return 1;
}

static void write_script(void) {
  snprintf(script, sizeof script, "%s/wd.lua", dir);
  FILE *f = fopen(script, "w");
  fputs("local ls = require('luastream')\n"                                       /* 1 */
        "local app = ls.app{ name = 'wd', heap_limit_mb = 16 }\n"                   /* 2 */
        "local sdf = app:dataframe(app:topic('in', { value = 'json' }))\n"          /* 3 */
        "sdf.y = sdf.x * 2\n"                                                       /* 4 */
        "sdf = sdf:update(function(row)\n"                                          /* 5 */
        "  if row.grow then local t = {} while true do t[#t + 1] = { row.x } end end\n"
        "end)\n"                                                                    /* 7 */
        "sdf = sdf:filter(function(row) return row.x ~= 3 end)\n"                   /* 8 */
        "sdf:to_topic(app:topic('out', { value = 'json' }))\n"                      /* 9 */
        "app:source(app:topic('ticks'), function(emit) emit({ t = 1 }) end, { every = 1000 })\n",
        f);
  fclose(f);
}

static int count_out(void *ud, lua_State *L, const ls_outrec *o) {
  (void)L, (void)o;
  (*(int *)ud)++;
  return 0;
}

static int no_error(void *ud, int row, const char *err) {
  (void)ud, (void)row, (void)err;
  return 1;
}

/* Loads the script and runs rows {"x": 1..n} (row `grow` with grow = true). */
static void test_steps_and_heap(void) {
  lua_State *L = ls_vm_new();
  CHECK(L != NULL);
  ls_spec spec;
  ls_batch b;
  char err[2048];
  CHECK(ls_batch_load(&b, L, &spec, script, push_cli, NULL, err, sizeof err) == 0);
  CHECK(spec.heap_limit_mb == 16 && spec.batch_time_limit_s == 10);
  /* the user functions' steps in order, then the source */
  CHECK(b.nsteps == 3);
  char want[700];
  snprintf(want, sizeof want, "%s:5: update", script);
  CHECK_STR(b.steps[0], want);
  snprintf(want, sizeof want, "%s:8: filter", script);
  CHECK_STR(b.steps[1], want);
  snprintf(want, sizeof want, "%s:10: source 'ticks'", script);
  CHECK_STR(b.steps[2], want);
  CHECK(ls_batch_alloc(&b, 8) == 0);

  /* a batch of 5 rows: the loop records the last row and step it reached */
  const char *rows[5] = {"{\"x\":1}", "{\"x\":2}", "{\"x\":3}", "{\"x\":4}", "{\"x\":5}"};
  ls_inmsg in[5];
  for (int i = 0; i < 5; i++)
    in[i] = (ls_inmsg){rows[i], strlen(rows[i]), NULL, 0, 100 + i, 0, 2, 0, NULL};
  CHECK(ls_batch_decode(&b, in, 5, err, sizeof err) == 0);
  int nout = ls_batch_call(&b, 1, 5, err, sizeof err);
  CHECK(nout == 4);
  ls_wd_row *at = ls_watchdog_row();
  CHECK(at->i == 5 && at->step == 2);
  int n = 0;
  CHECK(ls_batch_emit(&b, nout, count_out, no_error, &n, err, sizeof err) == 0 && n == 4);
  CHECK(ls_batch_call_source(&b, 1, 0, err, sizeof err) == 1);
  CHECK(at->i == 0 && at->step == 3);

  /* the heap count follows 100,000 small tables (> 4 MB) and their collection */
  lua_gc(L, LUA_GCCOLLECT, 0);
  size_t base = ls_watchdog_heap_bytes(L);
  CHECK(base > 0 && base < (8u << 20));
  CHECK(luaL_dostring(L, "big = {} for i = 1, 100000 do big[i] = { i } end") == 0);
  CHECK(ls_watchdog_heap_bytes(L) >= base + (4u << 20));
  CHECK(luaL_dostring(L, "big = nil") == 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK(ls_watchdog_heap_bytes(L) < base + (1u << 20));
  CHECK(ls_watchdog_heap_tripped(NULL, 0) == 0);

  /* with the cap, row 2 of {"x":7}, {"x":8,"grow":true} is refused at 16 MB */
  ls_watchdog_set_heap_limit(L, spec.heap_limit_mb);
  const char *bad[2] = {"{\"x\":7}", "{\"x\":8,\"grow\":true}"};
  for (int i = 0; i < 2; i++) in[i] = (ls_inmsg){bad[i], strlen(bad[i]), NULL, 0, 40 + i, 0, 3, 0, NULL};
  CHECK(ls_batch_decode(&b, in, 2, err, sizeof err) == 0);
  CHECK(ls_batch_call(&b, 1, 2, err, sizeof err) == -1);
  CHECK(strstr(err, "not enough memory") != NULL);
  char report[1024];
  CHECK(ls_watchdog_heap_tripped(report, sizeof report) == 1);
  snprintf(want, sizeof want, "over heap_limit_mb = 16, in step %s:5: update, on message in[3]@41 "
           "(row 2 of a batch of 2)", script);
  CHECK(strstr(report, want) != NULL);
  CHECK(strncmp(report, "the Lua heap reached 16.0 MB", 28) == 0);
  /* the state works on after the refusal (the reserve), and gives it back */
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK(ls_watchdog_heap_bytes(L) < (16u << 20));
  CHECK(luaL_dostring(L, "local t = {} for i = 1, 1000 do t[i] = {i} end") == 0);

  ls_batch_free(&b);
  ls_spec_free(&spec);
  ls_vm_close(L);
}

/* A child enters a call of a batch whose row 1 (in[3]@42) is in step 1 and
 * never returns: the watchdog ends it with 1, reporting both. */
static void test_time_limit(void) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    ls_topic_spec input = {.name = "in"};
    ls_spec spec = {.inputs = &input, .ninputs = 1};
    ls_meta_t meta = {42, 0, 3, 1};
    char *steps[1] = {"x.lua:7: update"};
    ls_batch b = {.spec = &spec, .meta = &meta, .nrows = 1, .steps = steps, .nsteps = 1};
    ls_watchdog_start(0.2, 0, "x.lua");
    ls_watchdog_enter(&b);
    volatile ls_wd_row *at = ls_watchdog_row(); /* as the FFI stores are: not elided */
    at->i = 1;
    at->step = 1;
    for (volatile unsigned long spin = 0;; spin++) {}
  }
  close(fds[1]);
  char out[4096] = "";
  size_t got = 0;
  for (ssize_t r; got < sizeof out - 1 && (r = read(fds[0], out + got, sizeof out - 1 - got)) > 0;)
    got += (size_t)r;
  out[got] = 0;
  close(fds[0]);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  CHECK(strstr(out, " error watchdog: one call into the pipeline has run for 0.") != NULL);
  CHECK(strstr(out, "past batch_time_limit = 0.2 s, in step x.lua:7: update, on message in[3]@42 (row 1 of "
                    "a batch of 1); exiting with code 1: nothing of it is committed, a restart processes "
                    "it again\n") != NULL);
  int lines = 0;
  for (const char *p = out; *p; p++) lines += *p == '\n';
  CHECK(lines == 1);
}

int main(void) {
  ls_log_set_level(LS_LOG_WARN);
  if (!mkdtemp(dir)) return 1;
  write_script();
  test_time_limit();
  test_steps_and_heap();
  unlink(script);
  rmdir(dir);
  CHECK_DONE();
}
