/* devbroker.h - the dev broker: librdkafka's in-memory mock Kafka cluster.
 *
 * Used by `luastream broker` (its own process, for tests and development) and
 * by `luastream run` when no broker is configured (in-process). It listens on
 * loopback only, on a port the kernel picks. Limits and fault injection: see
 * docs/dev-broker.md. */
#ifndef LS_DEVBROKER_H
#define LS_DEVBROKER_H

#include <stddef.h>

typedef struct ls_devbroker ls_devbroker;

/* How a create request through ls_devbroker_create_at went. */
typedef enum {
  LS_DEVBROKER_OK,         /* created, or it exists with that partition count */
  LS_DEVBROKER_REFUSED,    /* the broker said no, e.g. it exists with another count */
  LS_DEVBROKER_NO_CHANNEL, /* no dev broker side channel for that address */
  LS_DEVBROKER_FAILED      /* the side channel did not answer in time, or garbled */
} ls_devbroker_rc;

ls_devbroker *ls_devbroker_start(int brokers, char *err, size_t errlen);
const char *ls_devbroker_bootstraps(const ls_devbroker *b);
/* Creates a topic; 0, or -1 with err (e.g. it exists already). */
int ls_devbroker_create_topic(ls_devbroker *b, const char *topic, int partitions, char *err,
                              size_t errlen);
void ls_devbroker_stop(ls_devbroker *b);

/* One command line (changed in place), fault injection and more:
 *   fail API ERROR [COUNT]   the next COUNT (default 1) requests of API fail with
 *                            ERROR (names as in the Kafka protocol and
 *                            rd_kafka_err2name, or numbers), e.g. fail EndTxn
 *                            PRODUCER_FENCED
 *   clear API                drops the errors still queued for API
 *   create TOPIC PARTITIONS  creates a topic (see the side channel below)
 *   down | up                every broker drops its connections and refuses new
 *                            ones / accepts them again (an uplink outage)
 *   rtt MS                   every broker answers MS milliseconds late (0: none)
 * Blank lines and lines starting with # do nothing (reply ""). Writes the
 * reply ("ok ..." or "error: ...") to reply; returns 0, or -1 on a bad command. */
int ls_devbroker_command(ls_devbroker *b, char *line, char *reply, size_t len);

/* The side channel: `luastream broker` also listens on a Unix domain socket
 * (mode 0600, removed at exit) named after the port of its first listener:
 * $XDG_RUNTIME_DIR/luastream-broker-PORT.sock, or without XDG_RUNTIME_DIR (or
 * with fallback set) /tmp/luastream-broker-UID-PORT.sock. It serves the
 * command lines of ls_devbroker_command, one reply line each, including
 *   create TOPIC PARTITIONS  "ok created T N", "ok exists T N" (it exists with
 *                            that count) or "error: ..." (another count...)
 * ls_devbroker_socket_path writes the path into out: 0, or -1 if too long. */
int ls_devbroker_socket_path(int port, int fallback, char *out, size_t len);

/* Creates topic with partitions on the dev broker at bootstraps when one of
 * its addresses is on loopback: directly when that broker runs in this
 * process, else through its side channel, waiting at most timeout_ms for the
 * answer. reply gets the broker's answer or what went wrong. */
ls_devbroker_rc ls_devbroker_create_at(const char *bootstraps, const char *topic, int partitions,
                                       int timeout_ms, char *reply, size_t len);

/* `luastream broker ...`: runs until SIGINT/SIGTERM, serving commands from
 * stdin when it is a pipe and from its side channel. Returns the exit code. */
int ls_devbroker_main(int argc, char **argv);

#endif
