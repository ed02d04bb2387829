/* globals.c - the topics of global tables, read whole by every instance (see globals.h). */
#include "globals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "mem.h"

typedef struct gpart {
  const char *topic; /* borrowed from the spec */
  int32_t partition;
  int64_t end;       /* the end at the last rewind */
  int done;          /* reached it */
} gpart;

struct ls_globals {
  rd_kafka_t *rk;
  const ls_spec *spec;
  gpart *parts;
  int nparts, cap;
};

static int set(rd_kafka_conf_t *conf, const char *key, const char *val, char *err, size_t errlen) {
  char why[512];
  if (rd_kafka_conf_set(conf, key, val, why, sizeof why) == RD_KAFKA_CONF_OK) return 0;
  snprintf(err, errlen, "global tables: kafka option '%s': %s", key, why);
  return -1;
}

ls_globals *ls_globals_open(const ls_spec *spec, const char *brokers, char *err, size_t errlen) {
  err[0] = 0;
  int any = 0;
  for (int i = 0; i < spec->ninputs; i++) any |= spec->inputs[i].global;
  if (!any) return NULL;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* assign() needs a group id; this consumer never joins, subscribes or commits */
  if (ls_kafka_set_groupless_props(conf, spec->kafka, spec->nkafka, err, errlen) ||
      set(conf, "bootstrap.servers", brokers, err, errlen) ||
      set(conf, "group.id", "luastream-global-tables", err, errlen) ||
      set(conf, "enable.auto.commit", "false", err, errlen) ||
      set(conf, "enable.partition.eof", "true", err, errlen) ||
      set(conf, "socket.nagle.disable", "true", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  ls_globals *g = ls_xcalloc(1, sizeof *g);
  g->rk = rk;
  g->spec = spec;
  return g;
}

static void add_part(ls_globals *g, const char *topic, int32_t p, int64_t end) {
  if (g->nparts == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 16;
    g->parts = ls_xrealloc(g->parts, (size_t)g->cap * sizeof *g->parts);
  }
  g->parts[g->nparts++] = (gpart){topic, p, end, 0};
}

/* Every partition of topic, with its end now, into g->parts and the assignment. */
static int add_topic(ls_globals *g, const char *topic, rd_kafka_topic_partition_list_t *l, char *err,
                     size_t errlen) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(g->rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(g->rk, 0, rkt, &md, 10000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
  if (rkt) rd_kafka_topic_destroy(rkt);
  if (!e && (!md || md->topic_cnt != 1)) e = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
  if (!e && md->topics[0].err) e = md->topics[0].err;
  if (e) {
    snprintf(err, errlen, "global table topic '%s': %s", topic, rd_kafka_err2str(e));
    if (md) rd_kafka_metadata_destroy(md);
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < md->topics[0].partition_cnt && rc == 0; i++) {
    int32_t p = md->topics[0].partitions[i].id;
    int64_t lo = 0, hi = 0;
    e = rd_kafka_query_watermark_offsets(g->rk, topic, p, &lo, &hi, 10000);
    if (e) {
      snprintf(err, errlen, "global table topic %s[%d]: %s", topic, (int)p, rd_kafka_err2str(e));
      rc = -1;
      break;
    }
    add_part(g, topic, p, hi);
    if (hi <= lo) g->parts[g->nparts - 1].done = 1;
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_metadata_destroy(md);
  return rc;
}

int ls_globals_rewind(ls_globals *g, char *err, size_t errlen) {
  g->nparts = 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  if (!l) ls_out_of_memory(sizeof *l);
  int rc = 0;
  for (int i = 0; i < g->spec->ninputs && rc == 0; i++)
    if (g->spec->inputs[i].global) rc = add_topic(g, g->spec->inputs[i].name, l, err, errlen);
  if (rc == 0) {
    rd_kafka_resp_err_t e = rd_kafka_assign(g->rk, l);
    if (e) {
      snprintf(err, errlen, "global tables: assign: %s", rd_kafka_err2str(e));
      rc = -1;
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

static gpart *find(ls_globals *g, const char *topic, int32_t p) {
  for (int i = 0; i < g->nparts; i++)
    if (g->parts[i].partition == p && strcmp(g->parts[i].topic, topic) == 0) return &g->parts[i];
  return NULL;
}

ssize_t ls_globals_poll(ls_globals *g, rd_kafka_message_t **msgs, size_t max, int timeout_ms) {
  size_t n = 0;
  while (n < max) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, n == 0 ? timeout_ms : 0);
    if (!m) break;
    gpart *gp = m->rkt ? find(g, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (gp) gp->done = 1;
      rd_kafka_message_destroy(m);
      continue;
    }
    if (m->err) {
      ls_warn("global tables: %s", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    if (gp && m->offset + 1 >= gp->end) gp->done = 1;
    msgs[n++] = m;
  }
  return (ssize_t)n;
}

int ls_globals_caught_up(const ls_globals *g) {
  for (int i = 0; i < g->nparts; i++)
    if (!g->parts[i].done) return 0;
  return 1;
}

void ls_globals_close(ls_globals *g) {
  if (!g) return;
  rd_kafka_consumer_close(g->rk);
  rd_kafka_destroy(g->rk);
  free(g->parts);
  free(g);
}
