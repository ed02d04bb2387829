/* main.c - the luastream command line.
 *
 *   luastream run SCRIPT.lua [options]   run a pipeline (app.c)
 *   luastream broker [options]           the dev broker (devbroker.c)
 *   luastream state list|get|clear ...   inspect or drop local state (statecli.c)
 *   luastream test [DIR | FILE]          busted specs inside the runtime (lua_vm.c)
 *   luastream lua FILE [ARGS]            run a Lua file with the runtime's modules
 *   luastream version | help [COMMAND]
 *
 * Every command takes -h / --help (its usage on stdout, exit 0). An unknown
 * option, or a known one without its value, is a usage error: the message,
 * the command's usage line on stderr, exit 2.
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad script. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <luajit.h>

#include "app.h"
#include "devbroker.h"
#include "log.h"
#include "lua_vm.h"
#include "statecli.h"

/* ---- usage texts ----------------------------------------------------------- */

#define TOP_SYNOPSIS "usage: luastream <command> [options]   (luastream help: the commands)\n"

#define RUN_SYNOPSIS                                                                         \
  "usage: luastream run SCRIPT.lua [--broker B] [--name N] [--state-dir D] [--set k=v]...\n" \
  "                     [--watch] [--from-beginning] [--timeout S] [--count N]\n"            \
  "                     [--print | --quiet] [--log-level L] [--log-format F] [--http ADDR]\n"

#define RUN_OPTIONS                                                                    \
  "      --broker B        Kafka bootstrap servers (else LUASTREAM_BROKER, else an\n" \
  "                        in-process dev broker)\n"                                   \
  "      --name N          application name (consumer group, state directory)\n"       \
  "      --state-dir D     directory for local state\n"                                \
  "      --set k=v         override an ls.app option (repeatable)\n"                   \
  "      --watch           reload when the script or a module it loads changes\n"      \
  "                        (SIGHUP reloads too)\n"                                     \
  "      --from-beginning  read the inputs from their first offset, ignoring the\n"    \
  "                        group's committed offsets and saved state\n"                \
  "      --timeout S       stop cleanly after S seconds\n"                             \
  "      --count N         stop cleanly after N output records\n"                      \
  "      --print, --quiet  print each output record on stdout (default with\n"         \
  "                        --timeout or --count) or not\n"                             \
  "      --log-level L     debug | info | warn | error (default info)\n"                \
  "      --log-format F    text (default) | json: one JSON object per line on stderr\n"    \
  "      --http ADDR       serve /metrics, /health and /ready on ADDR (PORT, :PORT or\n"  \
  "                        HOST:PORT; loopback unless a host is given); LUASTREAM_HTTP\n"

#define TEST_SYNOPSIS "usage: luastream test [DIR | FILE] [-- BUSTED-OPTION...]\n"
#define LUA_SYNOPSIS "usage: luastream lua FILE [ARGS...]\n"
#define VERSION_SYNOPSIS "usage: luastream version\n"

static const char USAGE[] =
    TOP_SYNOPSIS
    "       luastream <command> --help   (one command's usage)\n"
    "\n"
    "commands:\n"
    "  run SCRIPT.lua      run a pipeline script\n" RUN_OPTIONS
    "  broker              start the dev broker (in-memory Kafka on loopback)\n"
    "      --partitions N    partitions for --topic without a count (default 4)\n"
    "      --topic NAME[:P]  create a topic up front (repeatable)\n"
    "      --bootstrap-file F  also write the bootstrap address to F\n"
    "                      with a pipe on stdin, it takes fault-injection lines\n"
    "                      (fail API ERROR [COUNT] | clear API; docs/dev-broker.md)\n"
    "  state list DIR [STORE [PARTITION]] [--keys | --values]\n"
    "                      the local state in DIR (state_dir/<app name>) per store\n"
    "                      and partition; --keys: its message keys, --values: and\n"
    "                      their state as JSON\n"
    "  state get DIR STORE KEY [--partition P]\n"
    "                      the state of message key KEY, as a JSON object\n"
    "  state clear DIR [STORE [PARTITION]]  drop local state (rebuilt from the\n"
    "                      changelog at the next assignment)\n"
    "  test [DIR | FILE] [-- BUSTED-OPTION...]\n"
    "                      run busted specs inside the runtime: the *_spec.lua files\n"
    "                      under DIR, or FILE; without DIR, spec/ if it exists, else\n"
    "                      the *_spec.lua files of the current directory\n"
    "  lua FILE [ARGS]     run a Lua file with the runtime's modules\n"
    "  version             print versions\n"
    "  help [COMMAND]      this text, or one command's\n";

static const char RUN_HELP[] =
    RUN_SYNOPSIS
    "\n"
    "Runs a pipeline script until SIGINT or SIGTERM (or --timeout, --count).\n"
    "Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad script.\n"
    "\n"
    "options:\n" RUN_OPTIONS;

static const char TEST_HELP[] =
    TEST_SYNOPSIS
    "\n"
    "Runs busted specs inside the runtime, so they have luastream.testing and the\n"
    "real codecs (docs/testing.md): the files named *_spec.lua under DIR (and its\n"
    "subdirectories), or FILE. Without DIR: spec/ when it is a directory, else the\n"
    "*_spec.lua files of the current directory (not of its subdirectories); when\n"
    "there are none either, it says what it looked for and exits 2.\n"
    "Options after -- go to busted as they are: -- --filter NAME, -- -o TAP.\n"
    "Exit codes: 0 every test passed, non-zero otherwise, 2 nothing to run or bad usage.\n";

static const char LUA_HELP[] =
    LUA_SYNOPSIS
    "\n"
    "Runs FILE as a plain Lua program with the runtime's LuaJIT and modules\n"
    "(require(\"luastream\") works), ARGS in the global `arg`. Options of luastream\n"
    "go before FILE (-- ends them); everything after FILE is FILE's.\n";

static const char VERSION_HELP[] =
    VERSION_SYNOPSIS "\nPrints the versions of luastream, LuaJIT and librdkafka.\n";

/* ---- shared helpers ------------------------------------------------------------ */

/* "luastream CMD: message", then the usage line; returns 2. */
__attribute__((format(printf, 3, 4))) static int usage_error(const char *cmd,
                                                             const char *synopsis,
                                                             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "luastream%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s", synopsis);
  return 2;
}

static int show(const char *text) {
  fputs(text, stdout);
  return 0;
}

static int is_help(const char *a) { return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0; }

static int is_option(const char *a) { return a[0] == '-' && a[1] != '\0'; }

/* Whether argv[i] has a value after it (one that is not an option). */
static int has_value(int argc, char **argv, int i) {
  return i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0;
}

static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < 0) return -1;
  *out = v;
  return 0;
}

/* ---- run -------------------------------------------------------------------------- */

#define MAX_SETS 256

typedef struct run_args {
  ls_run_opts o;
  int print; /* --print 1, --quiet 0, neither -1 */
  const char *sets[MAX_SETS];
} run_args;

static const char *const RUN_VALUED[] = {"--broker", "--name",  "--state-dir", "--set", "--timeout",
                                         "--count", "--log-level", "--log-format", "--http", NULL};

#define run_error(...) usage_error("run", RUN_SYNOPSIS, __VA_ARGS__)

static int is_valued(const char *a, const char *const *names) {
  for (; *names; names++)
    if (strcmp(a, *names) == 0) return 1;
  return 0;
}

/* A flag of run (an option without a value): 1 when a is one. */
static int run_flag(run_args *r, const char *a) {
  if (strcmp(a, "--watch") == 0) r->o.watch = 1;
  else if (strcmp(a, "--from-beginning") == 0) r->o.from_beginning = 1;
  else if (strcmp(a, "--print") == 0) r->print = 1;
  else if (strcmp(a, "--quiet") == 0) r->print = 0;
  else return 0;
  return 1;
}

/* One of RUN_VALUED with its value: 0, or 2 after a usage error. */
static int run_value(run_args *r, const char *a, const char *v) {
  ls_run_opts *o = &r->o;
  double d;
  if (strcmp(a, "--broker") == 0) {
    o->broker = v;
  } else if (strcmp(a, "--name") == 0) {
    o->name = v;
  } else if (strcmp(a, "--state-dir") == 0) {
    o->state_dir = v;
  } else if (strcmp(a, "--set") == 0) {
    if (!strchr(v, '=')) return run_error("--set wants k=v, got %s", v);
    if (o->nsets == MAX_SETS) return run_error("too many --set options");
    r->sets[o->nsets++] = v;
  } else if (strcmp(a, "--timeout") == 0) {
    if (parse_number(v, &o->timeout_s)) return run_error("bad --timeout %s", v);
  } else if (strcmp(a, "--count") == 0) {
    if (parse_number(v, &d) || d != (long)d) return run_error("bad --count %s", v);
    o->count = (long)d;
  } else if (strcmp(a, "--http") == 0) {
    o->http = v;
  } else if (strcmp(a, "--log-format") == 0) {
    if (ls_log_set_format(v)) return run_error("bad --log-format %s (text or json)", v);
  } else {
    int lvl = ls_log_parse_level(v);
    if (lvl < 0) return run_error("bad --log-level %s", v);
    ls_log_set_level((ls_log_level)lvl);
  }
  return 0;
}

static int cmd_run(int argc, char **argv) {
  run_args r = {.print = -1};
  r.o.sets = r.sets;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!is_option(a)) {
      if (r.o.script) return run_error("more than one script given: %s", a);
      r.o.script = a;
    } else if (is_help(a)) {
      return show(RUN_HELP);
    } else if (!run_flag(&r, a)) {
      if (!is_valued(a, RUN_VALUED)) return run_error("unknown option %s", a);
      if (!has_value(argc, argv, i)) return run_error("option %s needs a value", a);
      int rc = run_value(&r, a, argv[++i]);
      if (rc) return rc;
    }
  }
  if (!r.o.script) return run_error("no script given");
  /* Quick checks (--count, --timeout) show what they produced unless --quiet. */
  r.o.print = r.print >= 0 ? r.print : (r.o.count > 0 || r.o.timeout_s > 0);
  return ls_app_run(&r.o);
}

/* ---- test ------------------------------------------------------------------------- */

#define test_error(...) usage_error("test", TEST_SYNOPSIS, __VA_ARGS__)

static int is_spec_name(const char *name) {
  size_t n = strlen(name);
  return n >= 9 && strcmp(name + n - 9, "_spec.lua") == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds "./name" to the list; 0 or -1 (out of memory). */
static int add_file(char ***v, int *n, int *cap, const char *name) {
  if (*n == *cap) {
    int c = *cap ? *cap * 2 : 16;
    char **nv = realloc(*v, (size_t)c * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    *cap = c;
  }
  size_t len = strlen(name) + 3;
  if (!((*v)[*n] = malloc(len))) return -1;
  snprintf((*v)[(*n)++], len, "./%s", name);
  return 0;
}

/* The *_spec.lua files of the current directory as sorted "./NAME"s (free
 * with ls_vm_free_files). Returns their count, or -1 with errno set. */
static int spec_files(char ***out) {
  DIR *d = opendir(".");
  char **v = NULL;
  int n = 0, cap = 0, rc = 0;
  if (!d) return -1;
  for (struct dirent *e; rc == 0 && (e = readdir(d));) {
    struct stat st;
    if (is_spec_name(e->d_name) && stat(e->d_name, &st) == 0 && S_ISREG(st.st_mode))
      rc = add_file(&v, &n, &cap, e->d_name);
  }
  closedir(d);
  if (rc) {
    ls_vm_free_files(v, n);
    errno = ENOMEM;
    return -1;
  }
  if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
  *out = v;
  return n;
}

/* Runs busted on files (n >= 1) after the busted options. */
static int run_spec_files(char **files, int n, int nopts, char **opts) {
  char **argv = malloc((size_t)(nopts + n) * sizeof *argv);
  if (!argv) {
    fprintf(stderr, "luastream test: out of memory\n");
    return 1;
  }
  memcpy(argv, opts, (size_t)nopts * sizeof *argv);
  memcpy(argv + nopts, files, (size_t)(n - 1) * sizeof *argv);
  int rc = ls_vm_run_tests(files[n - 1], nopts + n - 1, argv);
  free(argv);
  return rc;
}

/* `luastream test` without DIR: spec/, else the current directory's specs. */
static int test_default(int nopts, char **opts) {
  struct stat st;
  if (stat("spec", &st) == 0 && S_ISDIR(st.st_mode)) return ls_vm_run_tests("spec", nopts, opts);
  char **files = NULL, cwd[4096];
  int n = spec_files(&files);
  if (n < 0) {
    fprintf(stderr, "luastream test: cannot list the current directory: %s\n", strerror(errno));
    return 1;
  }
  if (n == 0) {
    fprintf(stderr, "luastream test: no specs found: no spec/ directory and no *_spec.lua "
                    "file in %s\n(give a directory or a file: luastream test DIR)\n",
            getcwd(cwd, sizeof cwd) ? cwd : "the current directory");
    return 2;
  }
  int rc = run_spec_files(files, n, nopts, opts);
  ls_vm_free_files(files, n);
  return rc;
}

static int cmd_test(int argc, char **argv) {
  const char *path = NULL;
  int i = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *a = argv[i];
    if (is_help(a)) return show(TEST_HELP);
    if (is_option(a)) return test_error("unknown option %s (busted's options go after --)", a);
    if (path) return test_error("more than one DIR or FILE given: %s", a);
    path = a;
  }
  int nopts = i < argc ? argc - i - 1 : 0; /* after -- */
  char **opts = argv + (i < argc ? i + 1 : i);
  if (!path) return test_default(nopts, opts);
  if (access(path, F_OK) != 0) {
    fprintf(stderr, "luastream test: %s: %s\n", path, strerror(errno));
    return 2;
  }
  return ls_vm_run_tests(path, nopts, opts);
}

/* ---- lua, version, help ------------------------------------------------------------ */

static int cmd_lua(int argc, char **argv) {
  int i = 0;
  for (; i < argc && is_option(argv[i]); i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (is_help(argv[i])) return show(LUA_HELP);
    return usage_error("lua", LUA_SYNOPSIS, "unknown option %s", argv[i]);
  }
  if (i == argc) return usage_error("lua", LUA_SYNOPSIS, "no file given");
  return ls_vm_run_file(argv[i], argc - i - 1, argv + i + 1);
}

static int cmd_version(int argc, char **argv) {
  if (argc > 0 && is_help(argv[0])) return show(VERSION_HELP);
  if (argc > 0)
    return usage_error("version", VERSION_SYNOPSIS, "unknown %s %s",
                       is_option(argv[0]) ? "option" : "argument", argv[0]);
  printf("luastream %s (%s, librdkafka %s)\n", LS_VERSION, LUAJIT_VERSION, rd_kafka_version_str());
  return 0;
}

static int cmd_help(int argc, char **argv);

typedef struct command {
  const char *name;
  int (*main)(int argc, char **argv);
} command;

static const command COMMANDS[] = {
    {"run", cmd_run},   {"broker", ls_devbroker_main}, {"state", ls_statecli_main},
    {"test", cmd_test}, {"lua", cmd_lua},              {"version", cmd_version},
    {"help", cmd_help}, {NULL, NULL}};

static const command *find_command(const char *name) {
  for (const command *c = COMMANDS; c->name; c++)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

/* help [COMMAND]: this text, or COMMAND --help. */
static int cmd_help(int argc, char **argv) {
  static char help_flag[] = "--help";
  char *args[] = {help_flag, NULL};
  if (argc == 0 || is_help(argv[0]) || strcmp(argv[0], "help") == 0) return show(USAGE);
  const command *c = find_command(argv[0]);
  if (!c) return usage_error("help", TOP_SYNOPSIS, "unknown command %s", argv[0]);
  return c->main(1, args);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (is_help(cmd)) return show(USAGE);
  const command *c = find_command(strcmp(cmd, "--version") == 0 ? "version" : cmd);
  if (c) return c->main(argc - 2, argv + 2);
  return usage_error(NULL, TOP_SYNOPSIS, "unknown %s %s", is_option(cmd) ? "option" : "command",
                     cmd);
}
