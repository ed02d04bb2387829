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

ls_devbroker *ls_devbroker_start(int brokers, char *err, size_t errlen);
const char *ls_devbroker_bootstraps(const ls_devbroker *b);
/* Creates a topic; 0, or -1 with err (e.g. it exists already). */
int ls_devbroker_create_topic(ls_devbroker *b, const char *topic, int partitions, char *err,
                              size_t errlen);
void ls_devbroker_stop(ls_devbroker *b);

/* Fault injection, one command line (changed in place):
 *   fail API ERROR [COUNT]   the next COUNT (default 1) requests of API fail with
 *                            ERROR (names as in the Kafka protocol and
 *                            rd_kafka_err2name, or numbers), e.g. fail EndTxn
 *                            PRODUCER_FENCED
 *   clear API                drops the errors still queued for API
 * Blank lines and lines starting with # do nothing (reply ""). Writes the
 * reply ("ok ..." or "error: ...") to reply; returns 0, or -1 on a bad command. */
int ls_devbroker_command(ls_devbroker *b, char *line, char *reply, size_t len);

/* `luastream broker ...`: runs until SIGINT/SIGTERM, serving fault-injection
 * commands from stdin when it is a pipe. Returns the exit code. */
int ls_devbroker_main(int argc, char **argv);

#endif
