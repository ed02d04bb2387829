/* kafka.c - consumer and producer handles (see kafka.h). */
#include "kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devbroker.h"
#include "log.h"
#include "mem.h"
#include "reaper.h"

#define LS_MAX_TOPICS 64

struct ls_kafka {
  rd_kafka_t *consumer;
  rd_kafka_t *producer;
  rd_kafka_t *restorer;       /* group-less consumer for replays, made on first use */
  char *brokers;
  char **props;               /* the user's properties (borrowed, as ls_kafka_conf.props) */
  int nprops;
  ls_assign_fn on_assign;
  rd_kafka_queue_t *cq;
  ls_reaper *reaper;          /* destroys consumed messages off the loop (NULL: the loop does) */
  int assigned_once;          /* an assignment arrived (see ls_kafka_close) */
  ls_revoke_fn on_revoke;
  void *ud;
  rd_kafka_topic_t *topics[LS_MAX_TOPICS];
  int ntopics;
  rd_kafka_resp_err_t delivery_failed; /* the first failed delivery's error, or 0 */
  char delivery_error[512];
  char last_error[512];
  int nudge_next;          /* round-robin position in the assignment */
  int has_admin;           /* -1 unknown, else ls_kafka_has_admin's answer */
  int cooperative;         /* the configured assignor is cooperative-sticky */
  /* the uplink: an outage is said once, when it starts and when it ends */
  double down_seen_ms;     /* a handle said every broker is down (0: not since the last answer) */
  double outage_since_ms;  /* an outage: since when (0: none) */
  long outage_errors;      /* connection errors while it lasts, not logged one by one */
  pthread_t probe;         /* asks the cluster for metadata until a broker answers */
  int probing;             /* the probe thread was started and not yet joined */
  atomic_int probe_done;   /* it ended: 1 a broker answered, 2 told to stop */
  atomic_int probe_stop;
  pthread_t nudger;        /* makes the nudges ls_kafka_nudge asks for */
  int nudger_running;
  pthread_mutex_t nudge_mu;
  pthread_cond_t nudge_cv;
  int64_t nudge_min_lag;   /* -1: no nudge asked for */
  int nudge_stop;
  int running;             /* subscribed or produced: start-up is over (before it, no outage) */
  /* exactly-once */
  int transactional;
  long txn_refused;        /* records the failed open transaction refused */
  rd_kafka_topic_partition_list_t *txn_done; /* per partition: the offset the last
                                                committed transaction sent */
};

/* ---- configuration ------------------------------------------------------- */

/* A property whose value is a secret (passwords, keys, tokens): its value is
 * never written anywhere (docs/deploy.md, "Secrets"). */
int ls_kafka_is_secret(const char *key) {
  static const char *const WORDS[] = {"password", "secret", "oauthbearer", "ssl.key.pem", "ssl_key", "token"};
  for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++)
    if (strstr(key, WORDS[i])) return 1;
  return 0;
}

/* An error names the property; it shows the value only for a known property
 * that is not a secret (librdkafka's own reason may quote the value). */
static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
                    size_t errlen) {
  char why[512];
  rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, val, why, sizeof why);
  if (r == RD_KAFKA_CONF_OK) return 0;
  if (r == RD_KAFKA_CONF_UNKNOWN) snprintf(err, errlen, "kafka option '%s': no such librdkafka property", key);
  else if (ls_kafka_is_secret(key)) snprintf(err, errlen, "kafka option '%s': invalid value (a secret: not shown)", key);
  else snprintf(err, errlen, "kafka option '%s' = '%s': %s", key, val, why);
  return -1;
}

/* Applies user properties; prefix "consumer." or "producer." targets one handle. */
static int set_user_props(rd_kafka_conf_t *conf, const ls_kafka_conf *c, const char *which,
                          char *err, size_t errlen) {
  size_t wl = strlen(which);
  for (int i = 0; i + 1 < c->nprops; i += 2) {
    const char *key = c->props[i];
    if (strncmp(key, "consumer.", 9) == 0 || strncmp(key, "producer.", 9) == 0) {
      if (strncmp(key, which, wl) != 0 || key[wl] != '.') continue;
      key += wl + 1;
    }
    if (set_prop(conf, key, c->props[i + 1], err, errlen)) return -1;
  }
  return 0;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  /* A failed connection is also an error event (on_error), said there once
     per outage; librdkafka's own line repeats at every reconnect. */
  if (strcmp(fac, "FAIL") == 0) level = 7;
  ls_log(level <= 3 ? LS_LOG_ERROR : level <= 4 ? LS_LOG_WARN : LS_LOG_DEBUG, "kafka %s: %s",
         fac, buf);
}

/* ---- the uplink ------------------------------------------------------------
 * When a handle says that every broker is down, a probe thread asks the
 * cluster for metadata (a round trip over a live connection) until a broker
 * answers. A connection error while it has not is an outage of the uplink:
 * one warning, the errors that follow are counted, not logged, and its end
 * is one line when the probe gets its answer. A handle whose idle
 * connections were closed says "all brokers down" too: its probe simply
 * connects and answers, and nothing is said. Signs of life seen by the main
 * thread prove nothing (deliveries and fetched messages may predate the
 * outage), so only the probe ends one. */

static void *probe_main(void *arg) {
  ls_kafka *k = arg;
  while (!atomic_load(&k->probe_stop)) {
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(k->producer, 0, NULL, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
      atomic_store(&k->probe_done, 1);
      return NULL;
    }
    if (!atomic_load(&k->probe_stop)) usleep(200 * 1000);
  }
  atomic_store(&k->probe_done, 2);
  return NULL;
}

static void start_probe(ls_kafka *k) {
  if (k->probing) return;
  atomic_store(&k->probe_done, 0);
  atomic_store(&k->probe_stop, 0);
  k->probing = pthread_create(&k->probe, NULL, probe_main, k) == 0;
  if (!k->probing) ls_debug("uplink: cannot start the probe thread");
}

/* Joins a probe that ended (or, with stop, tells it to end first). 1 when a
 * broker answered it. */
static int join_probe(ls_kafka *k, int stop) {
  if (!k->probing) return 0;
  if (stop) atomic_store(&k->probe_stop, 1);
  else if (!atomic_load(&k->probe_done)) return 0;
  pthread_join(k->probe, NULL);
  k->probing = 0;
  return atomic_load(&k->probe_done) == 1;
}

/* Connection errors: returns 1 when err belongs to an outage (said once). */
static int uplink_error(ls_kafka *k, int err, const char *reason) {
  if (!k->running) return 0; /* start-up says itself when it cannot reach the cluster */
  if (k->outage_since_ms > 0) return k->outage_errors++, 1;
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    if (!k->down_seen_ms) k->down_seen_ms = ls_mono_ms();
    start_probe(k);
    return 1;
  }
  if (!k->down_seen_ms || !k->probing) return 0;
  k->outage_since_ms = k->down_seen_ms;
  ls_warn("uplink: no broker of %s answers (%s); outputs wait in the producer queue (bounded), "
          "checkpoints wait, the consumer group is joined again if the session expires; "
          "reconnecting by itself", k->brokers, reason);
  return 1;
}

/* The probe got its answer: an outage ended (said once), or there was none. */
static void uplink_check(ls_kafka *k) {
  if (!k->probing || !join_probe(k, 0)) return;
  k->down_seen_ms = 0;
  if (k->outage_since_ms <= 0) return;
  ls_info("uplink: back after %.1f s (%ld connection errors meanwhile)",
          (ls_mono_ms() - k->outage_since_ms) / 1000, k->outage_errors);
  k->outage_since_ms = 0;
  k->outage_errors = 0;
}

double ls_kafka_outage_ms(const ls_kafka *k, double now) {
  return k && k->outage_since_ms > 0 ? now - k->outage_since_ms : 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  ls_kafka *k = opaque;
  snprintf(k->last_error, sizeof k->last_error, "%s", reason);
  if ((err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) &&
      uplink_error(k, err, reason))
    return;
  /* Transport errors repeat every retry; librdkafka keeps reconnecting. */
  static time_t last;
  time_t now = time(NULL);
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    if (now - last < 10) return;
    last = now;
  }
  ls_warn("kafka (%s): %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  ls_kafka *k = opaque;
  if (!m->err) {
    int64_t *next = m->_private;
    if (next && m->offset + 1 > *next) *next = m->offset + 1;
    return;
  }
  if (k->delivery_failed) return;
  k->delivery_failed = m->err; /* non-zero */
  snprintf(k->delivery_error, sizeof k->delivery_error, "delivery to %s[%d] failed: %s",
           rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  ls_kafka *k = opaque;
  /* The protocol follows from the configured assignors (librdkafka refuses a
   * mix of eager and cooperative ones). Not rd_kafka_rebalance_protocol(): a
   * request to the group's queue, which can wait forever when the callback
   * runs while the consumer closes (librdkafka issue 4041). */
  int cooperative = k->cooperative;
  char desc[1024];
  ls_kafka_describe(parts, desc, sizeof desc);
  rd_kafka_error_t *e = NULL;
  rd_kafka_resp_err_t re = 0;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    k->assigned_once = 1;
    ls_info("partitions assigned: %s", desc);
    if (k->on_assign) k->on_assign(k->ud, parts);
    if (cooperative) e = rd_kafka_incremental_assign(rk, parts);
    else re = rd_kafka_assign(rk, parts);
  } else {
    int lost = rd_kafka_assignment_lost(rk);
    ls_info("partitions %s: %s", lost ? "lost" : "revoked", desc);
    if (k->on_revoke) k->on_revoke(k->ud, parts, lost);
    for (int i = 0; k->txn_done && i < parts->cnt; i++) /* another member may commit them now */
      rd_kafka_topic_partition_list_del(k->txn_done, parts->elems[i].topic, parts->elems[i].partition);
    if (cooperative) e = rd_kafka_incremental_unassign(rk, parts);
    else re = rd_kafka_assign(rk, NULL);
  }
  if (e) {
    ls_error("rebalance: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  } else if (re) {
    ls_error("rebalance: %s", rd_kafka_err2str(re));
  }
}

static rd_kafka_conf_t *base_conf(ls_kafka *k, const ls_kafka_conf *c, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char client_id[256];
  snprintf(client_id, sizeof client_id, "luastream-%s", c->group);
  rd_kafka_conf_set_opaque(conf, k);
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_conf_set_error_cb(conf, on_error);
  if (set_prop(conf, "bootstrap.servers", c->brokers, err, errlen) ||
      set_prop(conf, "client.id", client_id, err, errlen) ||
      set_prop(conf, "log.connection.close", "false", err, errlen) ||
      /* Small requests (commits, flushes) go out at once, not after an ACK. */
      set_prop(conf, "socket.nagle.disable", "true", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return conf;
}

static const char *const CONSUMER_DEFAULTS[] = {
    "enable.auto.commit", "false",
    "enable.auto.offset.store", "false",
    /* Range: partition p of every input topic goes to the same member, which
       joins and co-partitioned state need (cooperative-sticky does not promise
       it). The cost: eager rebalancing, every member gives up all its
       partitions at each rebalance (docs/api.md, "Scaling out"). */
    "partition.assignment.strategy", "range",
    /* Failover in seconds: a dead member is noticed after 6 s (the broker minimum). */
    "session.timeout.ms", "6000",
    "heartbeat.interval.ms", "1500",
    /* Bounded prefetch (8 MiB whatever the partition count) for small gateways;
       raise both for throughput (see docs/performance.md). */
    "queued.max.messages.kbytes", "8192",
    "queued.min.messages", "20000",
    "fetch.wait.max.ms", "50",
    /* After an uplink outage, reconnect within 2 s of its end (librdkafka's
       default backs off to 10 s between tries). */
    "reconnect.backoff.max.ms", "2000",
    NULL};

static const char *const PRODUCER_DEFAULTS[] = {
    "linger.ms", "5",
    "partitioner", "murmur2_random", /* the same partition for a key as Java clients */
    "enable.idempotence", "true",
    "queue.buffering.max.kbytes", "16384",
    "queue.buffering.max.messages", "50000",
    "reconnect.backoff.max.ms", "2000",
    NULL};

static int set_defaults(rd_kafka_conf_t *conf, const char *const *kv, char *err, size_t errlen) {
  for (; kv[0]; kv += 2)
    if (set_prop(conf, kv[0], kv[1], err, errlen)) return -1;
  return 0;
}

static rd_kafka_t *new_consumer(ls_kafka *k, const ls_kafka_conf *c, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = base_conf(k, c, err, errlen);
  if (!conf) return NULL;
  rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
  if (set_defaults(conf, CONSUMER_DEFAULTS, err, errlen) ||
      set_prop(conf, "group.id", c->group, err, errlen) ||
      set_prop(conf, "auto.offset.reset", c->offset_reset, err, errlen) ||
      (c->dev_broker && set_prop(conf, "allow.auto.create.topics", "true", err, errlen)) ||
      (c->exactly_once && set_prop(conf, "isolation.level", "read_committed", err, errlen)) ||
      (c->partition_eof && set_prop(conf, "enable.partition.eof", "true", err, errlen)) ||
      set_user_props(conf, c, "consumer", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
  if (!rk) rd_kafka_conf_destroy(conf);
  return rk;
}

/* The value of user property key (plain, or with the "consumer."/"producer."
 * prefix `which`), or NULL. The last one set wins, as in set_user_props. */
static const char *user_prop(const ls_kafka_conf *c, const char *which, const char *key) {
  const char *v = NULL;
  size_t wl = strlen(which);
  for (int i = 0; i + 1 < c->nprops; i += 2) {
    const char *p = c->props[i];
    if (strncmp(p, which, wl) == 0 && p[wl] == '.') p += wl + 1;
    if (strcmp(p, key) == 0) v = c->props[i + 1];
  }
  return v;
}

/* <group>-<group.instance.id>, else <group>-<instance id>: unique per instance
 * (containers all run as PID 1) and the same after a restart, so a restarted
 * instance fences its own zombie and no other. */
static void transactional_id(const ls_kafka_conf *c, char *out, size_t len) {
  const char *member = user_prop(c, "consumer", "group.instance.id");
  snprintf(out, len, "%s-%s", c->group, member ? member : c->instance_id ? c->instance_id : "0");
  if (c->exactly_once && !user_prop(c, "producer", "transactional.id"))
    ls_info("transactional.id %s (this instance's, stable across its restarts)", out);
}

static rd_kafka_t *new_producer(ls_kafka *k, const ls_kafka_conf *c, char *err, size_t errlen) {
  rd_kafka_conf_t *conf = base_conf(k, c, err, errlen);
  if (!conf) return NULL;
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  char txn_id[512];
  transactional_id(c, txn_id, sizeof txn_id);
  if (set_defaults(conf, PRODUCER_DEFAULTS, err, errlen) ||
      (c->exactly_once && set_prop(conf, "transactional.id", txn_id, err, errlen)) ||
      set_user_props(conf, c, "producer", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
  if (!rk) rd_kafka_conf_destroy(conf);
  return rk;
}

static void start_nudger(ls_kafka *k);
static void stop_nudger(ls_kafka *k);

ls_kafka *ls_kafka_new(const ls_kafka_conf *c, char *err, size_t errlen) {
  ls_kafka *k = calloc(1, sizeof *k);
  if (!k) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  k->on_revoke = c->on_revoke;
  k->on_assign = c->on_assign;
  k->ud = c->ud;
  k->transactional = c->exactly_once;
  k->has_admin = -1;
  const char *strategy = user_prop(c, "consumer", "partition.assignment.strategy");
  k->cooperative = strategy && strstr(strategy, "cooperative") != NULL;
  k->props = c->props;
  k->nprops = c->nprops;
  k->brokers = strdup(c->brokers);
  if (!k->brokers) {
    free(k);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  k->producer = new_producer(k, c, err, errlen);
  if (!k->producer) {
    free(k->brokers);
    free(k);
    return NULL;
  }
  k->consumer = new_consumer(k, c, err, errlen);
  if (!k->consumer) {
    rd_kafka_destroy(k->producer);
    free(k->brokers);
    free(k);
    return NULL;
  }
  rd_kafka_poll_set_consumer(k->consumer);
  k->cq = rd_kafka_queue_get_consumer(k->consumer);
  k->reaper = ls_reaper_new();
  start_nudger(k);
  if (c->exactly_once) {
    rd_kafka_error_t *e = rd_kafka_init_transactions(k->producer, 30000);
    if (e) {
      snprintf(err, errlen, "exactly-once: cannot initialise transactions: %s", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
      ls_kafka_close(k);
      return NULL;
    }
  }
  return k;
}

/* Closes the consumer (its last revocation, and it leaves the group) through a
 * queue of its own, for at most LS_KAFKA_CLOSE_MS: librdkafka 2.0 can wait
 * forever in a close that meets a rebalance under way. The final checkpoint is
 * committed before this, so a close cut short loses nothing: the group moves
 * the partitions after the session timeout instead. Returns 1 once closed. */
static int close_consumer(ls_kafka *k) {
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->consumer);
  rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->consumer, q);
  int closed = 0;
  if (e) { /* e.g. a fatal error: nothing left to wait for */
    ls_warn("kafka: closing the consumer: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    closed = 1;
  }
  double deadline = ls_mono_ms() + LS_KAFKA_CLOSE_MS;
  while (!closed && !(closed = rd_kafka_consumer_closed(k->consumer)) && ls_mono_ms() < deadline) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
    if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) /* events here, not callbacks */
      on_rebalance(k->consumer, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev), k);
    if (ev) rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q);
  if (!closed)
    ls_warn("kafka: the consumer did not close within %d s (a rebalance under way?): leaving it, the group "
            "moves its partitions after session.timeout.ms",
            LS_KAFKA_CLOSE_MS / 1000);
  return closed;
}

void ls_kafka_close(ls_kafka *k) {
  if (!k) return;
  join_probe(k, 1);
  stop_nudger(k);
  ls_reaper_free(k->reaper); /* every consumed message goes before its consumer */
  k->reaper = NULL;
  /* librdkafka before 2.2.1 asserts when a cooperative-sticky consumer is
   * closed before its first assignment (its assignor state is still NULL).
   * Such a consumer holds nothing: leave it to the process exit, and the
   * group to the session timeout. (Only when a user chose that assignor.) */
  if (k->assigned_once || !k->cooperative) {
    int closed = close_consumer(k);
    rd_kafka_queue_destroy(k->cq);
    if (closed) rd_kafka_destroy(k->consumer); /* else it would wait for the close: left to the exit */
  } else {
    ls_debug("the consumer never had an assignment: not closing it");
  }
  for (int i = 0; i < k->ntopics; i++) rd_kafka_topic_destroy(k->topics[i]);
  rd_kafka_flush(k->producer, 10000);
  rd_kafka_destroy(k->producer);
  if (k->restorer) rd_kafka_destroy(k->restorer);
  if (k->txn_done) rd_kafka_topic_partition_list_destroy(k->txn_done);
  free(k->brokers);
  free(k);
}

/* ---- operations ---------------------------------------------------------- */

int ls_kafka_check_reachable(ls_kafka *k, int timeout_ms, char *err, size_t errlen) {
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  /* Short tries, serving the error callback between them for a precise reason. */
  for (int waited = 0; waited < timeout_ms; waited += 1000) {
    const struct rd_kafka_metadata *md = NULL;
    e = rd_kafka_metadata(k->producer, 0, NULL, &md, 1000);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
      k->last_error[0] = 0;
      return 0;
    }
    rd_kafka_poll(k->producer, 0);
  }
  snprintf(err, errlen, "%s", k->last_error[0] ? k->last_error : rd_kafka_err2str(e));
  return -1;
}

int ls_kafka_subscribe(ls_kafka *k, char **topics, int n, char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(k->consumer, l);
  rd_kafka_topic_partition_list_destroy(l);
  k->running = 1;
  if (e) snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
  return e ? -1 : 0;
}

void ls_kafka_pause(ls_kafka *k, const char *topic, int32_t partition, int pause) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  if (!l) ls_out_of_memory(sizeof *l);
  rd_kafka_topic_partition_list_add(l, topic, partition);
  rd_kafka_resp_err_t e =
      pause ? rd_kafka_pause_partitions(k->consumer, l) : rd_kafka_resume_partitions(k->consumer, l);
  if (e || l->elems[0].err)
    ls_warn("%s %s[%d]: %s", pause ? "pausing" : "resuming", topic, (int)partition,
            rd_kafka_err2str(e ? e : l->elems[0].err));
  else
    ls_debug("%s %s[%d]", pause ? "paused" : "resumed", topic, (int)partition);
  rd_kafka_topic_partition_list_destroy(l);
}

ssize_t ls_kafka_consume(ls_kafka *k, rd_kafka_message_t **msgs, size_t max, int timeout_ms) {
  ssize_t n = rd_kafka_consume_batch_queue(k->cq, 0, msgs, max);
  if (n != 0 || timeout_ms == 0) return n;
  n = rd_kafka_consume_batch_queue(k->cq, timeout_ms, msgs, 1);
  if (n != 1 || max < 2) return n;
  ssize_t more = rd_kafka_consume_batch_queue(k->cq, 0, msgs + 1, max - 1);
  return more > 0 ? 1 + more : 1;
}

void ls_kafka_release(ls_kafka *k, rd_kafka_message_t **msgs, int n) { ls_reaper_put(k->reaper, msgs, n); }

/* Partition count of topic, or -1 when it does not exist. Lists all topics,
 * since asking for one by name may create it with the broker's defaults. */
int ls_kafka_partition_count(ls_kafka *k, const char *topic) {
  const struct rd_kafka_metadata *md = NULL;
  int n = -1;
  if (rd_kafka_metadata(k->producer, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err) n = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  return n;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void ls_kafka_free_names(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

char **ls_kafka_topic_names(ls_kafka *k, int *n) {
  const struct rd_kafka_metadata *md = NULL;
  *n = 0;
  if (rd_kafka_metadata(k->producer, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
  char **names = calloc((size_t)md->topic_cnt + 1, sizeof *names);
  for (int i = 0; names && i < md->topic_cnt; i++) {
    if (md->topics[i].err) continue;
    if (!(names[*n] = strdup(md->topics[i].topic))) {
      ls_kafka_free_names(names, *n);
      names = NULL;
      break;
    }
    (*n)++;
  }
  rd_kafka_metadata_destroy(md);
  if (names) qsort(names, (size_t)*n, sizeof *names, cmp_names);
  else *n = 0;
  return names;
}

/* Levenshtein distance of a and b, capped at 255 (names longer than that
 * are not compared). */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 254 || lb > 254) return 255;
  int row[256];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

int ls_kafka_find_missing(ls_kafka *k, char *const *topics, int n, char *hint, size_t hintlen) {
  int have = 0, missing = -1;
  char **names = ls_kafka_topic_names(k, &have);
  hint[0] = 0;
  if (!names) return -1;
  for (int i = 0; i < n && missing < 0; i++) {
    void *found = bsearch(&topics[i], names, (size_t)have, sizeof *names, cmp_names);
    if (!found) missing = i;
  }
  int best = 4; /* at most 3 edits, and fewer than a third of the name */
  for (int j = 0; missing >= 0 && j < have; j++) {
    int d = edit_distance(topics[missing], names[j]);
    if (d < best && d * 3 < (int)strlen(topics[missing])) {
      best = d;
      snprintf(hint, hintlen, "%s", names[j]);
    }
  }
  ls_kafka_free_names(names, have);
  return missing;
}

int ls_kafka_cluster_id(ls_kafka *k, char *out, size_t len, int timeout_ms, char *err,
                        size_t errlen) {
  char *id = rd_kafka_clusterid(k->producer, timeout_ms);
  if (!id) return snprintf(err, errlen, "the cluster did not tell its id within %d ms", timeout_ms), -1;
  snprintf(out, len, "%s", id);
  rd_kafka_mem_free(k->producer, id);
  return 0;
}

int ls_kafka_has_admin(ls_kafka *k) {
  if (k->has_admin >= 0) return k->has_admin;
  int32_t controller = rd_kafka_controllerid(k->producer, 10000);
  const struct rd_kafka_metadata *md = NULL;
  int found = 0;
  if (controller >= 0 && rd_kafka_metadata(k->producer, 0, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->broker_cnt; i++) found |= md->brokers[i].id == controller;
    rd_kafka_metadata_destroy(md);
  }
  k->has_admin = found;
  if (!found) ls_debug("the cluster's controller (%d) is none of its brokers: no admin requests", (int)controller);
  return found;
}

/* Waits for the answer of an admin request on q; NULL with err on time-out. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, const char *what, char *err, size_t errlen) {
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
  if (!ev) snprintf(err, errlen, "%s: no answer in 15 s", what);
  return ev;
}

static int create_topic(ls_kafka *k, const char *name, int parts, const char *const *configs,
                        char *err, size_t errlen) {
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, parts, -1, err, errlen);
  if (!nt) return -1;
  for (; configs && configs[0]; configs += 2)
    if (rd_kafka_NewTopic_set_config(nt, configs[0], configs[1])) {
      snprintf(err, errlen, "creating %s: bad config %s=%s", name, configs[0], configs[1]);
      rd_kafka_NewTopic_destroy(nt);
      return -1;
    }
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
  rd_kafka_CreateTopics(k->producer, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = admin_wait(q, name, err, errlen);
  int rc = -1;
  if (ev) {
    size_t n = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    if (!e && n == 1) e = rd_kafka_topic_result_error(res[0]);
    rc = (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) ? 0 : -1;
    if (rc) snprintf(err, errlen, "creating %s with %d partitions: %s", name, parts, rd_kafka_err2str(e));
    else if (!e) ls_info("created %s with %d partitions", name, parts);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  return rc;
}

int ls_kafka_ensure_topic_like(ls_kafka *k, const char *name, const char *like,
                               const char *const *configs, char *err, size_t errlen) {
  int want = ls_kafka_partition_count(k, like);
  if (want < 1) return snprintf(err, errlen, "cannot read the partitions of %s", like), -1;
  int have = ls_kafka_partition_count(k, name);
  if (have > 0 && have < want)
    return snprintf(err, errlen, "%s has %d partitions, fewer than the %d of %s", name, have,
                    want, like), -1;
  return ls_kafka_ensure_topic(k, name, want, configs, err, errlen);
}

int ls_kafka_ensure_topic(ls_kafka *k, const char *name, int want, const char *const *configs, char *err,
                          size_t errlen) {
  int have = ls_kafka_partition_count(k, name);
  if (have > 0) return 0;
  if (ls_kafka_has_admin(k)) return create_topic(k, name, want, configs, err, errlen);
  /* The dev broker (no CreateTopics): through its side channel, when it has one. */
  char reply[512];
  switch (ls_devbroker_create_at(k->brokers, name, want, 2000, reply, sizeof reply)) {
  case LS_DEVBROKER_OK:
    have = ls_kafka_partition_count(k, name);
    if (have >= want) {
      ls_info("dev broker: %s", reply);
      return 0;
    }
    return snprintf(err, errlen, "the dev broker made %s, but it has %d partitions, not %d", name,
                    have, want), -1;
  case LS_DEVBROKER_REFUSED:
    return snprintf(err, errlen, "the dev broker did not create it with %d partitions: %s", want,
                    reply), -1;
  case LS_DEVBROKER_FAILED:
    return snprintf(err, errlen, "the dev broker's side channel failed (%s); it will be created on "
                    "first use with the broker's default partition count", reply), -1;
  case LS_DEVBROKER_NO_CHANNEL:
  default:
    ls_debug("no dev broker side channel: %s", reply);
    return snprintf(err, errlen, "the cluster takes no CreateTopics; it will be created on first "
                    "use with the broker's default partition count"), -1;
  }
}

int ls_kafka_topic_config(ls_kafka *k, const char *topic, const char *key, char *out, size_t len,
                          char *err, size_t errlen) {
  rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
  if (!cr) return snprintf(err, errlen, "out of memory"), -1;
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
  rd_kafka_DescribeConfigs(k->producer, &cr, 1, NULL, q);
  rd_kafka_event_t *ev = admin_wait(q, topic, err, errlen);
  int rc = -1;
  if (ev && rd_kafka_event_error(ev)) {
    snprintf(err, errlen, "describing %s: %s", topic, rd_kafka_event_error_string(ev));
  } else if (ev) {
    size_t nres = 0, nent = 0;
    const rd_kafka_ConfigResource_t **res =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
    const rd_kafka_ConfigEntry_t **ents = nres == 1 ? rd_kafka_ConfigResource_configs(res[0], &nent) : NULL;
    rc = 0;
    for (size_t i = 0; i < nent && rc == 0; i++)
      if (strcmp(rd_kafka_ConfigEntry_name(ents[i]), key) == 0 && rd_kafka_ConfigEntry_value(ents[i])) {
        snprintf(out, len, "%s", rd_kafka_ConfigEntry_value(ents[i]));
        rc = 1;
      }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_ConfigResource_destroy(cr);
  return rc;
}

/* The nudge itself, when the lag is at least min_lag. */
static void nudge_now(ls_kafka *k, int64_t min_lag) {
  if (ls_kafka_lag(k) < min_lag) return;
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(k->consumer, &a) || !a) return;
  if (a->cnt > 0) {
    const rd_kafka_topic_partition_t *p = &a->elems[k->nudge_next++ % a->cnt];
    int64_t lo, hi;
    rd_kafka_query_watermark_offsets(k->consumer, p->topic, p->partition, &lo, &hi, 100);
  }
  rd_kafka_topic_partition_list_destroy(a);
}

static void *nudger_main(void *arg) {
  ls_kafka *k = arg;
  ls_background_thread();
  pthread_mutex_lock(&k->nudge_mu);
  for (;;) {
    while (k->nudge_min_lag < 0 && !k->nudge_stop) pthread_cond_wait(&k->nudge_cv, &k->nudge_mu);
    if (k->nudge_stop) break;
    int64_t min_lag = k->nudge_min_lag;
    k->nudge_min_lag = -1;
    pthread_mutex_unlock(&k->nudge_mu);
    nudge_now(k, min_lag);
    pthread_mutex_lock(&k->nudge_mu);
  }
  pthread_mutex_unlock(&k->nudge_mu);
  return NULL;
}

static void start_nudger(ls_kafka *k) {
  pthread_mutex_init(&k->nudge_mu, NULL);
  pthread_cond_init(&k->nudge_cv, NULL);
  k->nudge_min_lag = -1;
  k->nudger_running = pthread_create(&k->nudger, NULL, nudger_main, k) == 0;
  if (k->nudger_running) pthread_setname_np(k->nudger, "ls:nudger");
  else ls_debug("cannot start the nudger thread: nudges are made by the loop");
}

static void stop_nudger(ls_kafka *k) {
  if (k->nudger_running) {
    pthread_mutex_lock(&k->nudge_mu);
    k->nudge_stop = 1;
    pthread_cond_signal(&k->nudge_cv);
    pthread_mutex_unlock(&k->nudge_mu);
    pthread_join(k->nudger, NULL);
    k->nudger_running = 0;
  }
  pthread_cond_destroy(&k->nudge_cv);
  pthread_mutex_destroy(&k->nudge_mu);
}

void ls_kafka_nudge(ls_kafka *k, int64_t min_lag) {
  if (!k->nudger_running) {
    nudge_now(k, min_lag);
    return;
  }
  pthread_mutex_lock(&k->nudge_mu);
  if (k->nudge_min_lag < 0) {
    k->nudge_min_lag = min_lag;
    pthread_cond_signal(&k->nudge_cv);
  } /* else one is asked for already and not begun */
  pthread_mutex_unlock(&k->nudge_mu);
}

int64_t ls_kafka_lag(ls_kafka *k) {
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(k->consumer, &a) || !a) return -1;
  int64_t lag = 0, known = 0;
  if (rd_kafka_position(k->consumer, a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < a->cnt; i++) {
      int64_t lo, hi, pos = a->elems[i].offset;
      if (rd_kafka_get_watermark_offsets(k->consumer, a->elems[i].topic, a->elems[i].partition, &lo, &hi) ||
          hi < 0)
        continue;
      if (pos < 0) pos = lo; /* nothing consumed yet */
      if (hi > pos) lag += hi - pos;
      known++;
    }
  }
  int cnt = a->cnt;
  rd_kafka_topic_partition_list_destroy(a);
  return known || cnt == 0 ? lag : -1;
}

/* Where consumption of a partition starts when its group committed nothing:
 * auto.offset.reset's end (1) or beginning (0). */
static int resets_to_end(ls_kafka *k) {
  char v[32];
  size_t len = sizeof v;
  if (rd_kafka_conf_get(rd_kafka_conf(k->consumer), "auto.offset.reset", v, &len) != RD_KAFKA_CONF_OK) return 0;
  return strcmp(v, "latest") == 0 || strcmp(v, "largest") == 0 || strcmp(v, "end") == 0;
}

void ls_kafka_each_lag(ls_kafka *k, void (*fn)(void *ud, const char *topic, int32_t partition, int64_t lag),
                       void *ud) {
  rd_kafka_topic_partition_list_t *a = NULL;
  if (!k || !k->consumer || rd_kafka_assignment(k->consumer, &a) || !a) return;
  if (a->cnt && rd_kafka_position(k->consumer, a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    /* Nothing consumed since the assignment: the group's committed offset. */
    rd_kafka_topic_partition_list_t *idle = rd_kafka_topic_partition_list_new(a->cnt);
    for (int i = 0; i < a->cnt; i++)
      if (a->elems[i].offset < 0) rd_kafka_topic_partition_list_add(idle, a->elems[i].topic, a->elems[i].partition);
    int asked = idle->cnt && rd_kafka_committed(k->consumer, idle, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    int to_end = idle->cnt ? resets_to_end(k) : 0;
    for (int i = 0; i < a->cnt; i++) {
      const rd_kafka_topic_partition_t *p = &a->elems[i];
      int64_t lo, hi, pos = p->offset;
      if (rd_kafka_get_watermark_offsets(k->consumer, p->topic, p->partition, &lo, &hi) || hi < 0) continue;
      if (pos < 0) {
        const rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(idle, p->topic, p->partition);
        if (!asked || !c || c->err) continue; /* unknown */
        pos = c->offset >= 0 ? c->offset : to_end ? hi : lo;
        if (pos < 0 && hi > 0) continue; /* the beginning is not known (lo is cached with statistics only) */
        if (pos < 0) pos = hi;               /* an empty partition */
      }
      fn(ud, p->topic, p->partition, hi > pos ? hi - pos : 0);
    }
    rd_kafka_topic_partition_list_destroy(idle);
  }
  rd_kafka_topic_partition_list_destroy(a);
}

void ls_kafka_wake(ls_kafka *k) {
  if (k && k->cq) rd_kafka_queue_yield(k->cq);
}

rd_kafka_topic_t *ls_kafka_topic(ls_kafka *k, const char *name) {
  for (int i = 0; i < k->ntopics; i++)
    if (strcmp(rd_kafka_topic_name(k->topics[i]), name) == 0) return k->topics[i];
  if (k->ntopics == LS_MAX_TOPICS) return NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(k->producer, name, NULL);
  if (t) k->topics[k->ntopics++] = t;
  return t;
}

int ls_kafka_produce(ls_kafka *k, const ls_record *r, char *err, size_t errlen) {
  k->running = 1;
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->producer, RD_KAFKA_V_RKT(r->rkt), RD_KAFKA_V_PARTITION(r->partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(r->key, r->key_len),
        RD_KAFKA_V_VALUE((void *)r->value, r->value_len),
        RD_KAFKA_V_TIMESTAMP(r->timestamp > 0 ? r->timestamp : 0), RD_KAFKA_V_HEADERS(r->hdrs),
        RD_KAFKA_V_OPAQUE(r->acked_next), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    if (e == RD_KAFKA_RESP_ERR__STATE && k->transactional) {
      /* The open transaction hit an abortable error and takes no more records:
         it will be aborted at the checkpoint and its input read again. */
      if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
      k->txn_refused++;
      return 0;
    }
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      char why[512] = ""; /* e.g. a fenced transactional producer */
      if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
      if (e == RD_KAFKA_RESP_ERR__FATAL) rd_kafka_fatal_error(k->producer, why, sizeof why);
      snprintf(err, errlen, "produce to %s: %s%s%s", rd_kafka_topic_name(r->rkt), rd_kafka_err2str(e),
               why[0] ? ": " : "", why);
      return (int)e;
    }
    /* The local queue is full: wait for acknowledgements, unless they failed. */
    rd_kafka_poll(k->producer, 20);
    if (k->delivery_failed) {
      if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
      snprintf(err, errlen, "%s", k->delivery_error);
      return (int)k->delivery_failed;
    }
  }
}

int64_t ls_kafka_committed(ls_kafka *k, const char *topic, int32_t partition, int timeout_ms) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition);
  rd_kafka_resp_err_t e = rd_kafka_committed(k->consumer, l, timeout_ms);
  int64_t off = e ? -2 : l->elems[0].err ? -2 : l->elems[0].offset < 0 ? -1 : l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  return off;
}

int ls_kafka_set_groupless_props(rd_kafka_conf_t *conf, char *const *props, int nprops, char *err,
                                 size_t errlen) {
  for (int i = 0; i + 1 < nprops; i += 2) {
    const char *key = props[i];
    if (strncmp(key, "producer.", 9) == 0) continue;
    if (strncmp(key, "consumer.", 9) == 0) key += 9;
    if (strcmp(key, "group.instance.id") == 0 || strcmp(key, "partition.assignment.strategy") == 0) continue;
    if (set_prop(conf, key, props[i + 1], err, errlen)) return -1;
  }
  return 0;
}

static rd_kafka_t *restorer(ls_kafka *k, char *err, size_t errlen) {
  if (k->restorer) return k->restorer;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_opaque(conf, k);
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_conf_set_error_cb(conf, on_error);
  /* assign() needs a group id; this consumer never joins, subscribes or commits. */
  if (ls_kafka_set_groupless_props(conf, k->props, k->nprops, err, errlen) || set_prop(conf, "bootstrap.servers", k->brokers, err, errlen) ||
      set_prop(conf, "group.id", "luastream-restore", err, errlen) ||
      set_prop(conf, "fetch.wait.max.ms", "10", err, errlen) ||
      /* Replay is a short burst: a deep prefetch keeps the fetcher from idling
         (librdkafka 2.0 waits up to a second once its queue limit is hit). */
      set_prop(conf, "queued.min.messages", "1000000", err, errlen) ||
      set_prop(conf, "queued.max.messages.kbytes", "131072", err, errlen) ||
      set_prop(conf, "enable.auto.commit", "false", err, errlen) ||
      set_prop(conf, "enable.partition.eof", "true", err, errlen)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  k->restorer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
  if (!k->restorer) rd_kafka_conf_destroy(conf);
  return k->restorer;
}

int ls_kafka_watermarks(ls_kafka *k, const char *topic, int32_t partition, int64_t *lo,
                        int64_t *hi, char *err, size_t errlen) {
  rd_kafka_t *rc = restorer(k, err, errlen);
  if (!rc) return -1;
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rc, topic, partition, lo, hi, 10000);
  if (e) snprintf(err, errlen, "%s[%d]: %s", topic, (int)partition, rd_kafka_err2str(e));
  return e ? -1 : 0;
}

/* Polls until every partition with a pending[i] flag has reached ends[i]. */
static int replay_until(rd_kafka_t *rc, const int32_t *parts, const int64_t *ends, int n,
                        int remaining, uint8_t *pending, ls_replay_fn fn, void *ud, char *err,
                        size_t errlen) {
  int idle = 0;
  while (remaining > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rc, 500);
    if (!m) {
      if (++idle > 60) return snprintf(err, errlen, "no progress for 30 s"), -1;
      continue;
    }
    idle = 0;
    int rc2 = 0, i = 0, kept = 0;
    while (i < n && parts[i] != m->partition) i++;
    int64_t offset = m->offset;
    int eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
    if (m->err && !eof) {
      snprintf(err, errlen, "%s", rd_kafka_message_errstr(m));
      rc2 = -1;
    } else if (!m->err && i < n && pending[i] && offset < ends[i]) {
      rc2 = fn(ud, m);
      kept = rc2 == LS_REPLAY_KEPT;
      if (kept) rc2 = 0;
      else if (rc2) snprintf(err, errlen, "applying record at offset %lld failed", (long long)offset);
    }
    int done = eof || (!m->err && offset + 1 >= (i < n ? ends[i] : 0));
    if (i < n && done && pending[i]) {
      pending[i] = 0;
      remaining--;
    }
    if (!kept) rd_kafka_message_destroy(m);
    if (rc2) return rc2;
  }
  return 0;
}

int ls_kafka_replay(ls_kafka *k, const char *topic, const int32_t *parts, const int64_t *from,
                    const int64_t *upto, int n, int64_t *ends, ls_replay_fn fn, void *ud, char *err,
                    size_t errlen) {
  rd_kafka_t *rc = restorer(k, err, errlen);
  if (!rc) return -1;
  uint8_t *pending = ls_xcalloc((size_t)n + 1, 1);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  int remaining = 0, ret = 0;
  for (int i = 0; i < n && ret == 0; i++) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rc, topic, parts[i], &lo, &hi, 10000);
    if (e) {
      snprintf(err, errlen, "%s[%d]: %s", topic, (int)parts[i], rd_kafka_err2str(e));
      ret = -1;
      break;
    }
    int64_t start = from[i];
    if (start < lo) {
      if (start > 0) ls_warn("%s[%d]: records %lld..%lld are gone; replaying from %lld", topic,
                             (int)parts[i], (long long)start, (long long)lo - 1, (long long)lo);
      start = lo;
    }
    ends[i] = upto && upto[i] < hi ? upto[i] : hi;
    if (start >= ends[i]) continue;
    rd_kafka_topic_partition_list_add(l, topic, parts[i])->offset = start;
    pending[i] = 1;
    remaining++;
  }
  if (ret == 0 && remaining > 0) {
    rd_kafka_resp_err_t e = rd_kafka_assign(rc, l);
    if (e) {
      snprintf(err, errlen, "assign %s: %s", topic, rd_kafka_err2str(e));
      ret = -1;
    } else {
      ret = replay_until(rc, parts, ends, n, remaining, pending, fn, ud, err, errlen);
      rd_kafka_assign(rc, NULL);
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
  free(pending);
  return ret;
}

void ls_kafka_poll(ls_kafka *k) {
  rd_kafka_poll(k->producer, 0);
  uplink_check(k);
}

int ls_kafka_flush(ls_kafka *k, int timeout_ms, int *fatal, char *err, size_t errlen) {
  /* In slices, so that an uplink outage noticed meanwhile ends the wait. */
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  for (int waited = 0; waited < timeout_ms && e && !k->delivery_failed; waited += 250) {
    e = rd_kafka_flush(k->producer, timeout_ms - waited < 250 ? timeout_ms - waited : 250);
    if (e && k->outage_since_ms > 0) {
      *fatal = 0;
      snprintf(err, errlen, "the uplink is down; %d records unacknowledged", rd_kafka_outq_len(k->producer));
      return -1;
    }
  }
  *fatal = k->delivery_failed != 0;
  if (k->delivery_failed) {
    snprintf(err, errlen, "%s", k->delivery_error);
    return -1;
  }
  if (e) {
    snprintf(err, errlen, "%d records still unacknowledged after %d ms",
             rd_kafka_outq_len(k->producer), timeout_ms);
    return -1;
  }
  return 0;
}

int ls_kafka_commit(ls_kafka *k, const rd_kafka_topic_partition_list_t *offsets, char *err,
                    size_t errlen) {
  rd_kafka_resp_err_t e = rd_kafka_commit(k->consumer, offsets, 0);
  if (e) snprintf(err, errlen, "commit: %s", rd_kafka_err2str(e));
  return e ? -1 : 0;
}

void ls_kafka_describe(const rd_kafka_topic_partition_list_t *parts, char *out, size_t len) {
  size_t n = 0;
  out[0] = 0;
  if (!parts || !parts->cnt) {
    snprintf(out, len, "(none)");
    return;
  }
  for (int i = 0; i < parts->cnt && n + 32 < len; i++) {
    const rd_kafka_topic_partition_t *p = &parts->elems[i];
    if (i > 0 && strcmp(parts->elems[i - 1].topic, p->topic) == 0)
      n += (size_t)snprintf(out + n, len - n, ",%d", (int)p->partition);
    else
      n += (size_t)snprintf(out + n, len - n, "%s%s[%d", i ? "] " : "", p->topic, (int)p->partition);
  }
  if (n + 2 < len) snprintf(out + n, len - n, "]");
}

/* ---- transactions (exactly-once) ------------------------------------------ */

/* Positions as "topic[p]@offset ..." text, for logs. */
static void describe_offsets(const rd_kafka_topic_partition_list_t *l, char *out, size_t len) {
  size_t n = 0;
  out[0] = 0;
  for (int i = 0; i < l->cnt && n + 32 < len; i++) {
    const rd_kafka_topic_partition_t *p = &l->elems[i];
    if (p->offset >= 0)
      n += (size_t)snprintf(out + n, len - n, "%s%s[%d]@%lld", i ? " " : "", p->topic,
                            (int)p->partition, (long long)p->offset);
    else
      n += (size_t)snprintf(out + n, len - n, "%s%s[%d]@start", i ? " " : "", p->topic,
                            (int)p->partition);
  }
}

static ls_txn_result txn_result(rd_kafka_error_t *e, const char *what, char *err, size_t errlen) {
  if (!e) return LS_TXN_OK;
  snprintf(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
  ls_txn_result r = rd_kafka_error_txn_requires_abort(e) ? LS_TXN_ABORTABLE
                    : rd_kafka_error_is_retriable(e)    ? LS_TXN_ABORTABLE
                                                        : LS_TXN_FATAL;
  if (rd_kafka_error_is_fatal(e)) r = LS_TXN_FATAL;
  rd_kafka_error_destroy(e);
  return r;
}

ls_txn_result ls_kafka_txn_begin(ls_kafka *k, char *err, size_t errlen) {
  return txn_result(rd_kafka_begin_transaction(k->producer), "begin transaction", err, errlen);
}

/* Remembers the offsets a committed transaction sent: where an abort rewinds to. */
static void remember_committed(ls_kafka *k, const rd_kafka_topic_partition_list_t *offsets) {
  if (!k->txn_done) k->txn_done = rd_kafka_topic_partition_list_new(offsets->cnt);
  for (int i = 0; i < offsets->cnt; i++) {
    const rd_kafka_topic_partition_t *o = &offsets->elems[i];
    rd_kafka_topic_partition_t *d = rd_kafka_topic_partition_list_find(k->txn_done, o->topic, o->partition);
    if (!d) d = rd_kafka_topic_partition_list_add(k->txn_done, o->topic, o->partition);
    d->offset = o->offset;
  }
}

ls_txn_result ls_kafka_txn_commit(ls_kafka *k, const rd_kafka_topic_partition_list_t *offsets,
                                  char *err, size_t errlen) {
  if (k->txn_refused) {
    snprintf(err, errlen, "the transaction failed and refused %ld records (see the kafka "
             "error above)", k->txn_refused);
    return LS_TXN_ABORTABLE;
  }
  if (offsets && offsets->cnt > 0) {
    rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(k->consumer);
    rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(k->producer, offsets, md, 30000);
    rd_kafka_consumer_group_metadata_destroy(md);
    ls_txn_result r = txn_result(e, "send offsets to transaction", err, errlen);
    if (r != LS_TXN_OK) return r;
  }
  ls_txn_result r = txn_result(rd_kafka_commit_transaction(k->producer, 60000), "commit transaction",
                               err, errlen);
  if (r == LS_TXN_OK && k->delivery_failed) {
    snprintf(err, errlen, "%s", k->delivery_error);
    return LS_TXN_FATAL;
  }
  if (r == LS_TXN_OK && offsets && offsets->cnt > 0) remember_committed(k, offsets);
  if (r == LS_TXN_OK && ls_log_get_level() <= LS_LOG_DEBUG) {
    char desc[2048] = "no input offsets";
    if (offsets && offsets->cnt > 0) describe_offsets(offsets, desc, sizeof desc);
    ls_debug("transaction committed: %s", desc);
  }
  return r;
}

/* The records of an aborted transaction are gone, failed deliveries (e.g. the
 * ones the abort purged) and refusals included: they are produced again. */
ls_txn_result ls_kafka_txn_abort(ls_kafka *k, char *err, size_t errlen) {
  ls_txn_result r = txn_result(rd_kafka_abort_transaction(k->producer, 60000), "abort transaction",
                               err, errlen);
  if (r == LS_TXN_OK) {
    k->delivery_failed = 0;
    k->delivery_error[0] = 0;
    k->txn_refused = 0;
  }
  return r;
}

/* Sets each partition of a to the offset the last committed transaction sent
 * for it. Returns how many partitions that left unknown. */
static int committed_here(ls_kafka *k, rd_kafka_topic_partition_list_t *a) {
  int unknown = 0;
  for (int i = 0; i < a->cnt; i++) {
    rd_kafka_topic_partition_t *d =
        k->txn_done ? rd_kafka_topic_partition_list_find(k->txn_done, a->elems[i].topic,
                                                         a->elems[i].partition) : NULL;
    if (d) a->elems[i].offset = d->offset;
    else unknown++;
  }
  return unknown;
}

/* The offsets this process's own last transactions committed come first:
 * they are what the state in LMDB reflects, with no broker round trip (a
 * broker before Kafka 2.5 may still answer with the position before the last
 * transaction until its markers are written, and the dev broker keeps no
 * transactional offsets at all). Partitions this process has not committed
 * since their assignment go to the group's committed offset, else the start. */
int ls_kafka_rewind(ls_kafka *k, char *err, size_t errlen) {
  rd_kafka_topic_partition_list_t *a = NULL;
  if (rd_kafka_assignment(k->consumer, &a) || !a) return snprintf(err, errlen, "no assignment"), -1;
  int rc = 0;
  if (a->cnt > 0) {
    rd_kafka_resp_err_t e = 0;
    if (committed_here(k, a) > 0 && !(e = rd_kafka_committed(k->consumer, a, 10000)))
      committed_here(k, a);
    for (int i = 0; !e && i < a->cnt; i++)
      if (a->elems[i].offset < 0) a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *se = e ? NULL : rd_kafka_seek_partitions(k->consumer, a, 10000);
    if (e || se) {
      snprintf(err, errlen, "rewind: %s", e ? rd_kafka_err2str(e) : rd_kafka_error_string(se));
      rc = -1;
    } else {
      char desc[2048];
      describe_offsets(a, desc, sizeof desc);
      ls_info("rewound to the last committed offsets: %s", desc);
    }
    if (se) rd_kafka_error_destroy(se);
  }
  rd_kafka_topic_partition_list_destroy(a);
  return rc;
}

/* ---- purging consumed records (group_by topics) ---------------------------- */

int ls_kafka_purge_before(ls_kafka *k, const rd_kafka_topic_partition_list_t *before, char *err,
                          size_t errlen) {
  rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(before);
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(k->producer, RD_KAFKA_ADMIN_OP_DELETERECORDS);
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
  if (!dr || !o || !q) {
    if (dr) rd_kafka_DeleteRecords_destroy(dr);
    if (o) rd_kafka_AdminOptions_destroy(o);
    if (q) rd_kafka_queue_destroy(q);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  rd_kafka_AdminOptions_set_request_timeout(o, 2000, NULL, 0);
  rd_kafka_DeleteRecords(k->producer, &dr, 1, o, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 3000);
  int rc = 0;
  if (!ev) {
    rc = -1;
    snprintf(err, errlen, "no answer in 3 s");
  } else if (rd_kafka_event_error(ev)) {
    rc = -1;
    snprintf(err, errlen, "%s", rd_kafka_event_error_string(ev));
  } else {
    const rd_kafka_topic_partition_list_t *res =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    for (int i = 0; res && i < res->cnt && rc == 0; i++)
      if (res->elems[i].err) {
        rc = -1;
        snprintf(err, errlen, "%s[%d]: %s", res->elems[i].topic, (int)res->elems[i].partition,
                 rd_kafka_err2str(res->elems[i].err));
      }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_DeleteRecords_destroy(dr);
  return rc;
}
