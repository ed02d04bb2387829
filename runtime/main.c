/* main.c - the luastream command line.
 *
 *   luastream run SCRIPT.lua [options]   run a pipeline (app.c)
 *   luastream broker [options]           the dev broker (devbroker.c)
 *   luastream test [DIR]                 busted specs inside the runtime (lua_vm.c)
 *   luastream lua FILE [ARGS]            run a Lua file with the runtime's modules
 *   luastream version | help
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <luajit.h>

#include "app.h"
#include "devbroker.h"
#include "log.h"
#include "lua_vm.h"
#include "state.h"

static const char USAGE[] =
    "usage: luastream <command> [options]\n"
    "\n"
    "commands:\n"
    "  run SCRIPT.lua      run a pipeline script\n"
    "      --broker B        Kafka bootstrap servers (else LUASTREAM_BROKER, else an\n"
    "                        in-process dev broker)\n"
    "      --name N          application name (consumer group, state directory)\n"
    "      --state-dir D     directory for local state\n"
    "      --set k=v         override an ls.app option (repeatable)\n"
    "      --watch           reload when the script or a module it loads changes\n"
    "                        (SIGHUP reloads too)\n"
    "      --from-beginning  read the inputs from their first offset, ignoring the\n"
    "                        group's committed offsets and saved state\n"
    "      --timeout S       stop cleanly after S seconds\n"
    "      --count N         stop cleanly after N output records\n"
    "      --print, --quiet  print each output record on stdout (default with\n"
    "                        --timeout or --count) or not\n"
    "      --log-level L     debug | info | warn | error (default info)\n"
    "  broker              start the dev broker (in-memory Kafka on loopback)\n"
    "      --partitions N    partitions for --topic without a count (default 4)\n"
    "      --topic NAME[:P]  create a topic up front (repeatable)\n"
    "      --bootstrap-file F  also write the bootstrap address to F\n"
    "                      with a pipe on stdin, it takes fault-injection lines\n"
    "                      (fail API ERROR [COUNT] | clear API; docs/dev-broker.md)\n"
    "  state list DIR      list the local state in DIR (state_dir/<app name>)\n"
    "  state clear DIR [STORE [PARTITION]]  drop local state (rebuilt from the\n"
    "                      changelog at the next assignment)\n"
    "  test [DIR]          run busted specs (default: spec/) inside the runtime\n"
    "  lua FILE [ARGS]     run a Lua file with the runtime's modules\n"
    "  version             print versions\n"
    "  help                this text\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "luastream: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see `luastream help`)\n");
  return 2;
}

static int parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < 0) return -1;
  *out = v;
  return 0;
}

static int cmd_run(int argc, char **argv) {
  ls_run_opts o = {0};
  int print = -1;
  static const char *sets[256];
  o.sets = sets;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (o.script) return usage_error("run: more than one script given: %s", a);
      o.script = a;
      continue;
    }
    if (strcmp(a, "--watch") == 0) {
      o.watch = 1;
      continue;
    } else if (strcmp(a, "--from-beginning") == 0) {
      o.from_beginning = 1;
      continue;
    } else if (strcmp(a, "--print") == 0 || strcmp(a, "--quiet") == 0) {
      print = a[2] == 'p';
      continue;
    }
    if (!v) return usage_error("run: option %s needs a value", a);
    i++;
    if (strcmp(a, "--broker") == 0) {
      o.broker = v;
    } else if (strcmp(a, "--name") == 0) {
      o.name = v;
    } else if (strcmp(a, "--state-dir") == 0) {
      o.state_dir = v;
    } else if (strcmp(a, "--set") == 0) {
      if (!strchr(v, '=')) return usage_error("run: --set wants k=v, got %s", v);
      if (o.nsets == 256) return usage_error("run: too many --set options%s", "");
      sets[o.nsets++] = v;
    } else if (strcmp(a, "--timeout") == 0) {
      if (parse_number(v, &o.timeout_s)) return usage_error("run: bad --timeout %s", v);
    } else if (strcmp(a, "--count") == 0) {
      double c;
      if (parse_number(v, &c) || c != (long)c) return usage_error("run: bad --count %s", v);
      o.count = (long)c;
    } else if (strcmp(a, "--log-level") == 0) {
      int lvl = ls_log_parse_level(v);
      if (lvl < 0) return usage_error("run: bad --log-level %s", v);
      ls_log_set_level((ls_log_level)lvl);
    } else {
      return usage_error("run: unknown option %s", a);
    }
  }
  if (!o.script) return usage_error("run: no script given%s", "");
  /* Quick checks (--count, --timeout) show what they produced unless --quiet. */
  o.print = print >= 0 ? print : (o.count > 0 || o.timeout_s > 0);
  return ls_app_run(&o);
}

typedef struct state_cmd {
  ls_state *st;
  const char *store;  /* clear: only this store, or NULL */
  long partition;     /* clear: only this partition, or -1 */
  int dropped, failed;
} state_cmd;

static int print_entry(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                       int64_t changelog_offset, int64_t input_offset) {
  (void)ud;
  printf("%-20s %9d %10zu %12zu %16lld %14lld\n", store, (int)partition, keys, bytes,
         (long long)changelog_offset, (long long)input_offset);
  return 0;
}

static int drop_entry(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                      int64_t changelog_offset, int64_t input_offset) {
  (void)keys, (void)bytes, (void)changelog_offset, (void)input_offset;
  state_cmd *c = ud;
  char err[512];
  if (c->store && strcmp(c->store, store) != 0) return 0;
  if (c->partition >= 0 && c->partition != partition) return 0;
  if (ls_state_drop_partition(c->st, store, partition, err, sizeof err)) {
    fprintf(stderr, "luastream state: %s\n", err);
    c->failed++;
  } else {
    c->dropped++;
  }
  return 0;
}

static int cmd_state(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[0], "list") != 0 && strcmp(argv[0], "clear") != 0))
    return usage_error("state: usage: luastream state list|clear DIR [STORE [PARTITION]]%s", "");
  char err[1024];
  if (access(argv[1], F_OK) != 0) {
    fprintf(stderr, "luastream state: no state at %s\n", argv[1]);
    return 1;
  }
  state_cmd c = {ls_state_open(argv[1], NULL, err, sizeof err), argc > 2 ? argv[2] : NULL,
                 argc > 3 ? strtol(argv[3], NULL, 10) : -1, 0, 0};
  if (!c.st) {
    fprintf(stderr, "luastream state: %s\n", err);
    return 1;
  }
  int rc;
  if (strcmp(argv[0], "list") == 0) {
    printf("%-20s %9s %10s %12s %16s %14s\n", "store", "partition", "keys", "bytes",
           "changelog_next", "input_offset");
    rc = ls_state_list(c.st, print_entry, NULL);
  } else {
    rc = ls_state_list(c.st, drop_entry, &c);
    printf("dropped %d store partition%s\n", c.dropped, c.dropped == 1 ? "" : "s");
  }
  if (rc) fprintf(stderr, "luastream state: %s\n", ls_state_error(c.st));
  ls_state_close(c.st);
  return rc || c.failed ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "run") == 0) return cmd_run(argc - 2, argv + 2);
  if (strcmp(cmd, "broker") == 0) return ls_devbroker_main(argc - 2, argv + 2);
  if (strcmp(cmd, "state") == 0) return cmd_state(argc - 2, argv + 2);
  if (strcmp(cmd, "test") == 0) {
    const char *dir = argc > 2 && argv[argc - 1][0] != '-' ? argv[argc - 1] : "spec";
    int nopts = argc > 2 && argv[argc - 1][0] != '-' ? argc - 3 : argc - 2;
    return ls_vm_run_tests(dir, nopts, argv + 2);
  }
  if (strcmp(cmd, "lua") == 0) {
    if (argc < 3) return usage_error("lua: no file given%s", "");
    return ls_vm_run_file(argv[2], argc - 3, argv + 3);
  }
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("luastream %s (%s, librdkafka %s)\n", LS_VERSION, LUAJIT_VERSION, rd_kafka_version_str());
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    fputs(USAGE, stdout);
    return 0;
  }
  return usage_error("unknown command %s", cmd);
}
