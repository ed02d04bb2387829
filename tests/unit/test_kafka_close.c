/* Unit tests for ls_kafka_close (kafka.c): a consumer in a group closes with
 * its partitions revoked through on_revoke, quickly when the broker answers,
 * and within LS_KAFKA_CLOSE_MS when the broker holds the LeaveGroup request
 * for 60 s. Revocations come as events of the close's own queue (kafka.c's
 * close_consumer), not as callbacks: a close that did not serve them would
 * revoke nothing and time out. The broker is librdkafka's in-process mock cluster,
 * owned by a separate handle so that the test can delay its answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "check.h"
#include "kafka.h"

#define TOPIC "close-in"
#define RECORDS 10
#define LEAVE_GROUP 13 /* the Kafka protocol's ApiKey of LeaveGroup */

typedef struct {
  int assigned, revoked;
} counts;

static void on_assign(void *ud, const rd_kafka_topic_partition_list_t *parts) {
  ((counts *)ud)->assigned += parts->cnt;
}

static void on_revoke(void *ud, const rd_kafka_topic_partition_list_t *parts, int lost) {
  (void)lost;
  ((counts *)ud)->revoked += parts->cnt;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A handle whose only job is to own a mock cluster with TOPIC (2 partitions,
 * RECORDS records). */
static rd_kafka_t *mock_owner(rd_kafka_mock_cluster_t **mc) {
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof err) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "%s\n", err);
    exit(2);
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "%s\n", err);
    exit(2);
  }
  *mc = rd_kafka_handle_mock_cluster(rk);
  rd_kafka_mock_topic_create(*mc, TOPIC, 2, 1);
  for (int i = 0; i < RECORDS; i++)
    CHECK(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(i % 2), RD_KAFKA_V_VALUE("x", 1),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
  CHECK(rd_kafka_flush(rk, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  return rk;
}

/* A consumer of TOPIC in group, with the user properties props (NULL-ended
 * key, value pairs, or NULL), polled until it has its partitions and read
 * every record of them (30 s at most). */
static ls_kafka *joined(const char *brokers, const char *group, char **props, counts *c) {
  char err[512];
  int nprops = 0;
  while (props && props[nprops]) nprops++;
  ls_kafka_conf conf = {.brokers = brokers, .group = group, .offset_reset = "earliest", .props = props,
                        .nprops = nprops, .on_assign = on_assign, .on_revoke = on_revoke, .ud = c};
  ls_kafka *k = ls_kafka_new(&conf, err, sizeof err);
  if (!k) {
    fprintf(stderr, "ls_kafka_new: %s\n", err);
    exit(2);
  }
  char *topics[] = {TOPIC};
  CHECK(ls_kafka_subscribe(k, topics, 1, err, sizeof err) == 0);
  rd_kafka_message_t *msgs[16];
  int got = 0;
  for (double end = now_s() + 30; (c->assigned < 2 || got < RECORDS) && now_s() < end;) {
    ssize_t n = ls_kafka_consume(k, msgs, 16, 100);
    for (ssize_t i = 0; i < n; i++) {
      got += !msgs[i]->err;
      rd_kafka_message_destroy(msgs[i]);
    }
  }
  CHECK(c->assigned == 2);
  CHECK(got == RECORDS);
  return k;
}

static void test_close_revokes_and_leaves(const char *brokers, const char *group, char **props) {
  counts c = {0};
  ls_kafka *k = joined(brokers, group, props, &c);
  double t0 = now_s();
  ls_kafka_close(k);
  double took = now_s() - t0;
  CHECK(c.revoked == 2);
  CHECK(took < 5);
  if (took >= 5) fprintf(stderr, "close took %.1f s\n", took);
}

/* The broker holds the LeaveGroup for 60 s: the close still comes back within
 * the bound (librdkafka gives up on the leave after 5 s; the group drops the
 * member at its session timeout), the partitions revoked. */
static void test_close_is_bounded(rd_kafka_mock_cluster_t *mc, const char *brokers) {
  counts c = {0};
  ls_kafka *k = joined(brokers, "close-slow", NULL, &c);
  CHECK(rd_kafka_mock_broker_push_request_error_rtts(mc, 1, LEAVE_GROUP, 1, RD_KAFKA_RESP_ERR_NO_ERROR, 60000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR);
  double t0 = now_s();
  ls_kafka_close(k);
  double took = now_s() - t0;
  fprintf(stderr, "close with the LeaveGroup held: %.1f s, %d revoked\n", took, c.revoked);
  CHECK(c.revoked == 2);
  CHECK(took < LS_KAFKA_CLOSE_MS / 1000.0 + 1);
}

int main(void) {
  alarm(120); /* a close that never returns fails the test instead of hanging it */
  rd_kafka_mock_cluster_t *mc;
  rd_kafka_t *owner = mock_owner(&mc);
  const char *brokers = rd_kafka_mock_cluster_bootstraps(mc);
  test_close_revokes_and_leaves(brokers, "close-quick", NULL);
  /* incremental assign and unassign (the protocol taken from the assignors) */
  char *cooperative[] = {"consumer.partition.assignment.strategy", "cooperative-sticky", NULL};
  test_close_revokes_and_leaves(brokers, "close-coop", cooperative);
  test_close_is_bounded(mc, brokers);
  rd_kafka_destroy(owner);
  CHECK_DONE();
}
