/* Unit tests for reaper.c: consumed messages handed to the reaper are all
 * destroyed on its thread (drain, free), a batch larger than the ring is
 * destroyed at once past LS_REAPER_CAP, and without a reaper (NULL) every
 * message is destroyed by the caller. The messages come from librdkafka's
 * in-process mock cluster; the consumer is closed and destroyed only after
 * the reaper is done, as kafka.c does, and LeakSanitizer (the sanitizer
 * build) sees any message left behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "check.h"
#include "reaper.h"

#define TOPIC "reaped"
#define N 20000 /* more than LS_REAPER_CAP */

static rd_kafka_t *new_handle(rd_kafka_type_t type, const char *const *kv) {
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  for (; kv[0]; kv += 2)
    if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err) != RD_KAFKA_CONF_OK) {
      fprintf(stderr, "%s\n", err);
      exit(2);
    }
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "%s\n", err);
    exit(2);
  }
  return rk;
}

/* Produces N records to TOPIC on a mock cluster; returns the producer (which
 * owns the cluster) and sets *bootstraps. */
static rd_kafka_t *produce(const char **bootstraps) {
  const char *kv[] = {"test.mock.num.brokers", "1", "linger.ms", "1", NULL};
  rd_kafka_t *p = new_handle(RD_KAFKA_PRODUCER, kv);
  rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(p);
  rd_kafka_mock_topic_create(mc, TOPIC, 1, 1);
  *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
  for (int i = 0; i < N; i++) {
    char v[32];
    int len = snprintf(v, sizeof v, "record %d", i);
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE(v, (size_t)len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
  }
  CHECK(rd_kafka_flush(p, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  return p;
}

static rd_kafka_t *consumer_of(const char *bootstraps) {
  const char *kv[] = {"bootstrap.servers", bootstraps, "group.id", "reaper-test", "enable.auto.commit", "false", NULL};
  rd_kafka_t *c = new_handle(RD_KAFKA_CONSUMER, kv);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  CHECK(rd_kafka_assign(c, l) == RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(l);
  return c;
}

/* Reads n records into msgs; returns how many came within 20 s. */
static int consume(rd_kafka_t *c, rd_kafka_message_t **msgs, int n) {
  int got = 0;
  for (int idle = 0; got < n && idle < 2000;) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 10);
    if (!m) {
      idle++;
      continue;
    }
    if (m->err) {
      fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    msgs[got++] = m;
  }
  return got;
}

static void close_consumer(rd_kafka_t *c) {
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
}

int main(void) {
  static rd_kafka_message_t *msgs[N];
  alarm(120); /* a message never destroyed makes a destroy wait forever: fail instead */
  const char *bootstraps = NULL;
  rd_kafka_t *p = produce(&bootstraps);

  /* All at once: the ring takes LS_REAPER_CAP, the rest is destroyed here. */
  rd_kafka_t *c = consumer_of(bootstraps);
  if (consume(c, msgs, N) != N) {
    CHECK(!"consumed every record");
    CHECK_DONE();
  }
  CHECK(msgs[0]->offset == 0);
  ls_reaper *r = ls_reaper_new();
  CHECK(r != NULL);
  ls_reaper_put(r, msgs, N);
  CHECK(ls_reaper_pending(r) <= LS_REAPER_CAP);
  ls_reaper_drain(r);
  CHECK(ls_reaper_pending(r) == 0);

  /* Batch by batch, as the loop does, then freed without a drain first. */
  close_consumer(c);
  c = consumer_of(bootstraps);
  CHECK(consume(c, msgs, N) == N);
  for (int i = 0; i < N; i += 1000) ls_reaper_put(r, msgs + i, 1000);
  ls_reaper_free(r);

  /* No reaper: the caller destroys them. */
  close_consumer(c);
  c = consumer_of(bootstraps);
  CHECK(consume(c, msgs, 100) == 100);
  ls_reaper_put(NULL, msgs, 100);
  CHECK(ls_reaper_pending(NULL) == 0);
  ls_reaper_drain(NULL);
  ls_reaper_free(NULL);

  close_consumer(c);
  rd_kafka_destroy(p);
  CHECK(rd_kafka_wait_destroyed(5000) == 0); /* every handle, message and queue gone */
  CHECK_DONE();
}
