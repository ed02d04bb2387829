/* spec.h - the app's declaration, as C sees it.
 *
 * After the script runs, luastream.runtime returns a `spec` table (see
 * docs/internals.md); spec.c copies it into this struct once, so the loop in
 * app.c never reads configuration from Lua. */
#ifndef LS_SPEC_H
#define LS_SPEC_H

#include <lua.h>

#include "codec.h"

typedef struct ls_topic_spec {
  char *name;
  ls_format key;
  ls_format value;
} ls_topic_spec;

typedef struct ls_store_spec {
  char *name;
  int topic;           /* 0-based index into inputs */
} ls_store_spec;

typedef enum { LS_ON_ERROR_STOP, LS_ON_ERROR_SKIP, LS_ON_ERROR_DEAD_LETTER, LS_ON_ERROR_FUNCTION } ls_on_error;

typedef struct ls_spec {
  char *name;
  char *broker;        /* NULL: use the dev broker */
  char *guarantee;
  char *offset_reset;
  char *state_dir;
  char *dead_letter;   /* topic, or NULL */
  ls_on_error on_error;
  double commit_interval_s;
  long commit_every;
  int batch_size;
  int batch_ms;
  ls_topic_spec *inputs;
  int ninputs;
  ls_topic_spec *outputs;
  int noutputs;
  double *source_every_ms;
  int nsources;
  ls_store_spec *stores;
  int nstores;
  char **kafka;        /* key, value, key, value, ... */
  int nkafka;
} ls_spec;

/* Reads the spec table at the top of the stack (left there). Returns 0, or
 * -1 with a message in err. Call inside a protected call. */
int ls_spec_read(lua_State *L, ls_spec *spec, char *err, size_t errlen);
void ls_spec_free(ls_spec *spec);

#endif
