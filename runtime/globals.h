/* globals.h - the topics of global tables (app:global_table, docs/joins.md).
 *
 * A global table holds every partition of its topic on every instance, so its
 * topic is not part of the consumer group's subscription: a consumer of its
 * own, without a group, is assigned every partition from the beginning. Its
 * records go through the pipeline like any input's (their topic's pipeline
 * puts them in the table, in Lua), but none of their offsets is committed:
 * every instance reads them all, at start before anything else (the app
 * processes nothing until the tables have caught up with the ends their topics
 * had then), and then as they come. Knows nothing of the engine: app.c hands
 * what it polls to the batch path. */
#ifndef LS_GLOBALS_H
#define LS_GLOBALS_H

#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "spec.h"

typedef struct ls_globals ls_globals;

/* A consumer for the global inputs of spec (spec->inputs[i].global) on
 * brokers, with the spec's kafka properties (those prefixed "producer." and
 * the group's own left out). NULL with err[0] == 0 when the spec has no
 * global table; NULL with err set on failure. */
ls_globals *ls_globals_open(const ls_spec *spec, const char *brokers, char *err, size_t errlen);

/* (Re)reads every partition from its first offset: assigns them, and notes
 * each partition's end now, which ls_globals_caught_up waits for. 0, or -1
 * with err (a topic missing, metadata failing). */
int ls_globals_rewind(ls_globals *g, char *err, size_t errlen);

/* Up to max records (the caller destroys them), waiting up to timeout_ms for
 * the first. Partition EOF events are consumed here, not returned. */
ssize_t ls_globals_poll(ls_globals *g, rd_kafka_message_t **msgs, size_t max, int timeout_ms);

/* Whether every partition has reached the end it had at the last rewind. */
int ls_globals_caught_up(const ls_globals *g);

void ls_globals_close(ls_globals *g);

#endif
