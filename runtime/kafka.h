/* kafka.h - the app's two librdkafka handles.
 *
 * A consumer-group member (manual commits only, range assignor,
 * rebalance callback) and a producer for outputs and dead letters. kafka.c
 * owns their configuration defaults (tuned for seconds-fast failover and a
 * small memory footprint), user overrides from `kafka = {...}`, delivery
 * tracking, and the bounded reachability check at start-up. */
#ifndef LS_KAFKA_H
#define LS_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

typedef struct ls_kafka ls_kafka;

/* Called from inside ls_kafka_consume() before partitions are taken away.
 * lost is 1 when they were lost (session timeout), so committing is useless. */
typedef void (*ls_revoke_fn)(void *ud, const rd_kafka_topic_partition_list_t *parts, int lost);

/* Called from inside ls_kafka_consume() before partitions are handed over,
 * e.g. to restore their state. */
typedef void (*ls_assign_fn)(void *ud, const rd_kafka_topic_partition_list_t *parts);

typedef struct ls_kafka_conf {
  const char *brokers;
  const char *group;          /* consumer group id = app name */
  const char *offset_reset;   /* "earliest" | "latest" */
  char **props;               /* user properties: key, value, ...; "consumer.x" / "producer.x"
                                 apply to one handle only */
  int nprops;
  int dev_broker;             /* allow topic auto-creation from the consumer */
  int exactly_once;           /* transactional producer, read_committed consumer */
  int partition_eof;          /* the consumer reports each partition's end (align.c) */
  const char *instance_id;    /* exactly-once: this instance's id, stable across restarts
                                 (transactional.id = <group>-<group.instance.id>, else
                                 <group>-<instance_id>; a transactional.id property wins) */
  ls_revoke_fn on_revoke;
  ls_assign_fn on_assign;
  void *ud;
} ls_kafka_conf;

ls_kafka *ls_kafka_new(const ls_kafka_conf *c, char *err, size_t errlen);
/* Closes the consumer (its partitions revoked through on_revoke, the group
 * left), waiting at most LS_KAFKA_CLOSE_MS for it (a warning past that; the
 * consumer is then left to the process exit), flushes the producer for up to
 * 10 s, and frees k. NULL is ignored. */
#define LS_KAFKA_CLOSE_MS 10000
void ls_kafka_close(ls_kafka *k);

/* Waits up to timeout_ms for the cluster to answer a metadata request. */
int ls_kafka_check_reachable(ls_kafka *k, int timeout_ms, char *err, size_t errlen);

int ls_kafka_subscribe(ls_kafka *k, char **topics, int n, char *err, size_t errlen);
/* What is ready, up to max messages; when nothing is, waits at most
 * timeout_ms for the first one (then takes what else is ready). So a busy
 * consumer gets full batches and a quiet one handles each message at once.
 * Serves rebalance callbacks. */
/* Stops (pause = 1) or resumes fetching topic[partition]; records already
 * consumed are not affected, and fetching resumes after the last of them. A
 * failure is logged. */
void ls_kafka_pause(ls_kafka *k, const char *topic, int32_t partition, int pause);
ssize_t ls_kafka_consume(ls_kafka *k, rd_kafka_message_t **msgs, size_t max, int timeout_ms);
/* Destroys msgs[0..n), messages of ls_kafka_consume the caller is done with,
 * on a thread of their own (reaper.h) so that the loop does not wait for the
 * malloc arena of the thread that made them. */
void ls_kafka_release(ls_kafka *k, rd_kafka_message_t **msgs, int n);

/* The cluster id the brokers report (Metadata v2+), copied into out. 0, or
 * -1 with err when the cluster does not answer within timeout_ms or has none. */
int ls_kafka_cluster_id(ls_kafka *k, char *out, size_t len, int timeout_ms, char *err,
                        size_t errlen);

/* Whether the cluster takes admin requests (CreateTopics, DescribeConfigs):
 * its controller is one of its brokers. The dev broker (librdkafka's mock
 * cluster) names controller 0, which is none of them, and drops the
 * connection on those requests, so they are not sent there. */
int ls_kafka_has_admin(ls_kafka *k);

/* Makes sure topic `name` exists with at least as many partitions as topic
 * `like` (CreateTopics with the topic configs configs[0..] = key, value, ...,
 * NULL; an existing topic is fine). Without admin requests (ls_kafka_has_admin:
 * the dev broker) it asks the dev broker's side channel to create it when the
 * bootstrap address is on loopback (ls_devbroker_create_at; configs are not
 * kept there); with no side channel it only checks the count of an existing
 * topic. 0, or -1 with err. */
int ls_kafka_ensure_topic_like(ls_kafka *k, const char *name, const char *like,
                               const char *const *configs, char *err, size_t errlen);
/* Makes sure topic `name` exists, creating it with `want` partitions when it
 * does not (as above: CreateTopics, or the dev broker's side channel). An
 * existing topic is fine whatever its partition count. 0, or -1 with err. */
int ls_kafka_ensure_topic(ls_kafka *k, const char *name, int want, const char *const *configs, char *err,
                          size_t errlen);

/* DeleteRecords: deletes the records of each partition of `before` that come
 * before its offset (a group_by topic's records once their offsets are
 * committed, as Kafka Streams purges its repartition topics). Admin only (not
 * the dev broker: check ls_kafka_has_admin); waits up to 3 s. 0, or -1 with
 * err. */
int ls_kafka_purge_before(ls_kafka *k, const rd_kafka_topic_partition_list_t *before, char *err,
                          size_t errlen);

/* One config of an existing topic (DescribeConfigs), copied into out.
 * 1 found, 0 unknown, -1 error (err), e.g. "cleanup.policy" -> "delete". */
int ls_kafka_topic_config(ls_kafka *k, const char *topic, const char *key, char *out, size_t len,
                          char *err, size_t errlen);

/* Partition count of topic, -1 when it does not exist (or metadata fails). */
int ls_kafka_partition_count(ls_kafka *k, const char *topic);

/* Which of topics[0..n) do not exist: the index of the first missing one, or
 * -1 when all exist (or the metadata request failed: subscribing then says).
 * hint gets the closest existing name ("" if none is close), for "did you
 * mean". */
int ls_kafka_find_missing(ls_kafka *k, char *const *topics, int n, char *hint, size_t hintlen);

/* The topics that exist on the cluster, sorted; *n set. NULL on failure.
 * Free with ls_kafka_free_names. */
char **ls_kafka_topic_names(ls_kafka *k, int *n);
void ls_kafka_free_names(char **names, int n);

/* Wakes the fetcher of one assigned partition's broker (round robin) when the
 * consumer lag is at least min_lag. With librdkafka 2.0.x a partition whose
 * prefetch queue reached its limit is fetched again only when its broker
 * thread wakes up, which otherwise takes up to a second; a small request to
 * that broker wakes it at once. That request waits behind the fetch in
 * flight (10-20 ms with a backlog), so a thread of the handle's makes it:
 * this call only asks, and returns at once. (Synchronously when that thread
 * could not be started.) */
void ls_kafka_nudge(ls_kafka *k, int64_t min_lag);

/* Consumer lag: the sum over the assigned partitions of the high watermark
 * (as last fetched, no request) minus the position. -1 when unknown. */
int64_t ls_kafka_lag(ls_kafka *k);

/* 1 when the value of librdkafka property key is a secret, never shown: its
 * name holds password, secret, oauthbearer, ssl.key.pem, ssl_key or token. */
int ls_kafka_is_secret(const char *key);

/* The user's consumer properties (props[0..nprops): key, value, ...; plain or
 * "consumer."-prefixed) on conf, for a consumer without a group (replays,
 * global tables): security and network settings apply as to the group's
 * consumer; group membership (group.instance.id, the assignor) does not, and
 * the caller's own settings, set after, win. 0, or -1 with err (never a
 * secret's value). */
int ls_kafka_set_groupless_props(rd_kafka_conf_t *conf, char *const *props, int nprops, char *err,
                                 size_t errlen);

/* Per assigned partition whose high watermark is known: fn(ud, topic,
 * partition, lag), lag = high watermark (as last fetched) minus the next
 * offset to consume. That offset is the position; for a partition nothing was
 * consumed from since its assignment it is the group's committed offset (one
 * request for all of them, 2 s at most), else where auto.offset.reset starts.
 * Any thread: it reads the consumer through librdkafka's thread-safe calls. */
void ls_kafka_each_lag(ls_kafka *k, void (*fn)(void *ud, const char *topic, int32_t partition, int64_t lag),
                       void *ud);

/* Makes a ls_kafka_consume blocked in another thread return at once. Any thread. */
void ls_kafka_wake(ls_kafka *k);

/* A producer topic handle, created on first use and owned by k. */
rd_kafka_topic_t *ls_kafka_topic(ls_kafka *k, const char *name);

/* One record to produce. */
typedef struct ls_record {
  rd_kafka_topic_t *rkt;
  int32_t partition;         /* RD_KAFKA_PARTITION_UA: by key */
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  int64_t timestamp;         /* ms; 0 = now */
  rd_kafka_headers_t *hdrs;  /* owned by k from then on, even on failure */
  int64_t *acked_next;       /* if set: raised to offset + 1 when acknowledged */
} ls_record;

/* Queues one record (key and value are copied). Waits while the local queue
 * is full. 0, or the librdkafka error code (non-zero, e.g.
 * RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) with err. Exactly-once: a record the open transaction
 * refuses (it failed with an abortable error) is dropped and counted, and the
 * next ls_kafka_txn_commit returns LS_TXN_ABORTABLE. */
int ls_kafka_produce(ls_kafka *k, const ls_record *r, char *err, size_t errlen);

/* The group's committed offset of topic/partition: >= 0, -1 when none, or
 * -2 on error. */
int64_t ls_kafka_committed(ls_kafka *k, const char *topic, int32_t partition, int timeout_ms);

/* The low and high watermarks of topic[partition], asked of the cluster. 0,
 * or -1 with err. */
int ls_kafka_watermarks(ls_kafka *k, const char *topic, int32_t partition, int64_t *lo,
                        int64_t *hi, char *err, size_t errlen);

/* Reads partitions parts[0..n) of topic, each from from[i] to its current
 * end (or to upto[i] when that comes first; upto may be NULL), all at once,
 * with a separate group-less consumer, calling fn for each record (records of
 * different partitions interleave). fn returns 0, LS_REPLAY_KEPT when it keeps
 * the message (it destroys it later, before ls_kafka_close), or -1 to stop.
 * Stores each end offset in ends[i]. Returns 0, or -1 with err. */
#define LS_REPLAY_KEPT 1
typedef int (*ls_replay_fn)(void *ud, rd_kafka_message_t *m);
int ls_kafka_replay(ls_kafka *k, const char *topic, const int32_t *parts, const int64_t *from,
                    const int64_t *upto, int n, int64_t *ends, ls_replay_fn fn, void *ud, char *err,
                    size_t errlen);

/* Serves delivery reports without blocking; notices the end of an outage. */
void ls_kafka_poll(ls_kafka *k);
/* How long the uplink has been down (ms, at now = ls_mono_ms()), 0 when it is
 * not: a handle said every broker is down and a reconnect failed since, with
 * no delivery, message or assignment after it. Said once in the log when it
 * starts and when it ends; connection errors in between are only counted. */
double ls_kafka_outage_ms(const ls_kafka *k, double now);
/* Waits until every queued record is acknowledged. 0; -1 with err if a
 * delivery failed (fatal: *fatal = 1), or the wait timed out or an uplink
 * outage began meanwhile (*fatal = 0). */
int ls_kafka_flush(ls_kafka *k, int timeout_ms, int *fatal, char *err, size_t errlen);
/* Synchronous offset commit. */
int ls_kafka_commit(ls_kafka *k, const rd_kafka_topic_partition_list_t *offsets, char *err,
                    size_t errlen);

/* Exactly-once: outputs, changelog records and offsets in one transaction. */
typedef enum { LS_TXN_OK, LS_TXN_ABORTABLE, LS_TXN_FATAL } ls_txn_result;
ls_txn_result ls_kafka_txn_begin(ls_kafka *k, char *err, size_t errlen);
/* Sends offsets (may be NULL) with the consumer's group metadata, then commits;
 * remembers the offsets once committed (see ls_kafka_rewind). */
ls_txn_result ls_kafka_txn_commit(ls_kafka *k, const rd_kafka_topic_partition_list_t *offsets,
                                  char *err, size_t errlen);
/* Aborts; forgets the aborted records' failed deliveries and refusals. */
ls_txn_result ls_kafka_txn_abort(ls_kafka *k, char *err, size_t errlen);
/* After an abort: seeks every assigned partition back to the offset the last
 * committed transaction sent for it, or, if this process has committed none
 * since the assignment, to the group's committed offset (else the start). */
int ls_kafka_rewind(ls_kafka *k, char *err, size_t errlen);

/* The consumer's current assignment as "topic[0,1,2]" text, for logs. */
void ls_kafka_describe(const rd_kafka_topic_partition_list_t *parts, char *out, size_t len);

#endif
