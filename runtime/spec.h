/* spec.h - the app's declaration, as C sees it.
 *
 * After the script runs, luastream.runtime returns a `spec` table (see
 * docs/internals.md, "The batch ABI"); spec.c copies it into this struct
 * once, so the loop in app.c never reads configuration from Lua.
 *
 * The Lua side (luastream's init.lua and runtime.lua) is the one place that
 * defines the options: defaults, checks, format aliases, error policies,
 * the broker choice and the names of internal topics. The spec it hands
 * over holds only resolved, checked, canonical values with every field set;
 * spec.c has no defaults of its own and refuses a missing field or a value
 * it cannot interpret as a bug, naming the field. Only broker and
 * dead_letter may be nil (NULL here). */
#ifndef LS_SPEC_H
#define LS_SPEC_H

#include <lua.h>

#include "codec.h"

typedef struct ls_topic_spec {
  char *name;
  ls_format key;
  ls_format value;
  int value_flags;     /* inputs: codec flags for values, LS_ARRAYS_VEC for arrays = "vec" */
  int tombstones;      /* inputs: a record with a null value is a row (ls.null), for tables */
  int global;          /* inputs: a global table's topic, read whole by every instance (globals.c) */
} ls_topic_spec;

typedef struct ls_store_spec {
  char *name;
  int topic;           /* 0-based index into inputs: the first topic it serves */
  int *topics;         /* every input it serves (a join's two sides), topics[0] == topic */
  int ntopics;
  char *changelog;     /* its changelog topic, "<app>__<store>__changelog"; for a source store,
                          its first topic */
  int source;          /* 1: an app:table's store, whose first topic is its changelog: no
                          changelog topic; restored from that topic up to the committed offset */
  int sweep;           /* 1: entries past their expiry are deleted at checkpoints; 0: the
                          Lua side acts on them (windows closed on idleness) */
} ls_store_spec;

/* A group_by's internal topic: an output the pipeline writes and an input it
 * reads, created at start with `partitions` partitions (0: as many as `like`). */
typedef struct ls_repart_spec {
  int topic;      /* 0-based index into inputs (and the same name is an output) */
  int like;       /* 0-based index into inputs: the topic the rows came from */
  int partitions; /* >= 0 */
} ls_repart_spec;

typedef enum { LS_ON_ERROR_STOP, LS_ON_ERROR_SKIP, LS_ON_ERROR_DEAD_LETTER, LS_ON_ERROR_FUNCTION } ls_on_error;

/* The policy's name as the Lua side writes it ("stop", "skip",
 * "dead-letter", "function"), and back: 0, or -1 for any other name. */
const char *ls_on_error_name(ls_on_error p);
int ls_on_error_parse(const char *name, ls_on_error *out);

typedef struct ls_spec {
  char *name;
  char *broker;        /* bootstrap servers as resolved by Lua (--broker, the
                          option, LUASTREAM_BROKER); NULL: the dev broker */
  char *guarantee;     /* "at-least-once" | "exactly-once" */
  char *offset_reset;  /* "earliest" | "latest" */
  char *state_dir;
  char *dead_letter;   /* topic, or NULL */
  ls_on_error on_error;
  double commit_interval_s; /* > 0 */
  long commit_every;   /* >= 0; 0: by time only */
  int batch_size;      /* >= 1 */
  int batch_ms;        /* >= 1 */
  int wait_for_topics; /* missing input topics: wait for them (1) or stop at start (0) */
  double batch_time_limit_s; /* the watchdog's limit on one call into the pipeline; 0: none */
  double heap_limit_mb;      /* the Lua heap cap; 0: none */
  int join_wait_ms;    /* how long joined inputs wait for a quiet partner at its end (align.h) */
  char *http;          /* the app's http option, or NULL */
  ls_topic_spec *inputs;
  int ninputs;
  ls_topic_spec *outputs;
  int noutputs;
  double *source_every_ms;
  int nsources;
  double idle_check_ms; /* how often windows closing on idleness are checked; 0: none */
  ls_store_spec *stores;
  int nstores;
  ls_repart_spec *reparts;
  int nreparts;
  char **kafka;        /* key, value, key, value, ... */
  int nkafka;
} ls_spec;

/* Reads the spec table at the top of the stack (left there). Returns 0, or
 * -1 with a message in err naming the field ("spec.inputs[1].value: ...")
 * and *spec zeroed (nothing to free). Call inside a protected call. */
int ls_spec_read(lua_State *L, ls_spec *spec, char *err, size_t errlen);
void ls_spec_free(ls_spec *spec);

/* Live reload: why `next` cannot replace `cur` without a restart (a
 * different app name, broker, guarantee, state directory, input topics,
 * their formats or arrays option, state stores, offset_reset or Kafka
 * properties), written to buf;
 * NULL when it can. same_state_dir = 0 skips the state directory (a
 * temporary one replaced the script's). */
const char *ls_spec_restart_reason(const ls_spec *cur, const ls_spec *next, int same_state_dir,
                                   char *buf, size_t len);
/* Moves the fields a reload keeps (the ones compared above) from cur into
 * next, and next's into cur, so pointers other subsystems hold into cur's
 * inputs, stores and names stay valid once next takes cur's place. */
void ls_spec_keep_fixed(ls_spec *cur, ls_spec *next);

#endif
