/* devbroker.c - the dev broker (see devbroker.h).
 *
 * librdkafka's mock cluster lives inside an rd_kafka_t handle; we create a bare
 * producer handle to own it. Topics are auto-created with 4 partitions on first
 * use; `--topic NAME:PARTS` creates them up front with another count. */
#include "devbroker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "log.h"

struct ls_devbroker {
  rd_kafka_t *rk;
  rd_kafka_mock_cluster_t *mc;
};

ls_devbroker *ls_devbroker_start(int brokers, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the cluster; keep its own logging quiet. */
  rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
  if (!rk) return NULL;
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    snprintf(err, errlen, "cannot start the mock cluster");
    rd_kafka_destroy(rk);
    return NULL;
  }
  ls_devbroker *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return NULL;
  }
  b->rk = rk;
  b->mc = mc;
  return b;
}

const char *ls_devbroker_bootstraps(const ls_devbroker *b) {
  return rd_kafka_mock_cluster_bootstraps(b->mc);
}

int ls_devbroker_create_topic(ls_devbroker *b, const char *topic, int partitions, char *err,
                              size_t errlen) {
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(b->mc, topic, partitions, 1);
  if (e) {
    snprintf(err, errlen, "cannot create topic %s: %s", topic, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

void ls_devbroker_stop(ls_devbroker *b) {
  if (!b) return;
  rd_kafka_mock_cluster_destroy(b->mc);
  rd_kafka_destroy(b->rk);
  free(b);
}

/* ---- luastream broker ---------------------------------------------------- */

static volatile sig_atomic_t broker_stop;
static void on_signal(int sig) {
  (void)sig;
  broker_stop = 1;
}

static int write_file_atomic(const char *path, const char *text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  int ok = fprintf(f, "%s\n", text) > 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static int usage_error(const char *msg, const char *arg) {
  fprintf(stderr, "luastream broker: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
  fprintf(stderr, "usage: luastream broker [--partitions N] [--topic NAME[:PARTS]]... "
                  "[--bootstrap-file F]\n");
  return 2;
}

int ls_devbroker_main(int argc, char **argv) {
  int partitions = 4, brokers = 1;
  const char *bootstrap_file = NULL;
  const char *topics[256];
  int ntopics = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(a, "--partitions") == 0 && has_value) {
      if (parse_int(argv[++i], 1, 10000, &partitions)) return usage_error("bad partition count", argv[i]);
    } else if (strcmp(a, "--brokers") == 0 && has_value) {
      if (parse_int(argv[++i], 1, 16, &brokers)) return usage_error("bad broker count", argv[i]);
    } else if (strcmp(a, "--topic") == 0 && has_value) {
      if (ntopics == 256) return usage_error("too many --topic options", NULL);
      topics[ntopics++] = argv[++i];
    } else if (strcmp(a, "--bootstrap-file") == 0 && has_value) {
      bootstrap_file = argv[++i];
    } else {
      return usage_error("unknown or incomplete option", a);
    }
  }
  char err[1536];
  ls_devbroker *b = ls_devbroker_start(brokers, err, sizeof err);
  if (!b) {
    fprintf(stderr, "luastream broker: %s\n", err);
    return 1;
  }
  for (int i = 0; i < ntopics; i++) {
    char name[1024];
    snprintf(name, sizeof name, "%s", topics[i]);
    int parts = partitions;
    char *colon = strrchr(name, ':');
    if (colon) {
      *colon = 0;
      if (parse_int(colon + 1, 1, 10000, &parts)) {
        ls_devbroker_stop(b);
        return usage_error("bad --topic NAME:PARTS", topics[i]);
      }
    }
    if (!name[0] || ls_devbroker_create_topic(b, name, parts, err, sizeof err)) {
      fprintf(stderr, "luastream broker: %s\n", name[0] ? err : "empty topic name");
      ls_devbroker_stop(b);
      return 2;
    }
  }
  const char *addr = ls_devbroker_bootstraps(b);
  if (bootstrap_file && write_file_atomic(bootstrap_file, addr)) {
    fprintf(stderr, "luastream broker: cannot write %s: %s\n", bootstrap_file, strerror(errno));
    ls_devbroker_stop(b);
    return 1;
  }
  printf("%s\n", addr);
  fflush(stdout);
  ls_info("dev broker listening on %s (in memory; topics are auto-created with 4 partitions)", addr);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  while (!broker_stop) pause();
  ls_info("dev broker stopping");
  ls_devbroker_stop(b);
  return 0;
}
