/* errors.h - the on_error policy of a record that failed.
 *
 * What it owns: deciding what happens to a record that did not decode, raised
 * in a pipeline step, or produced an output that does not encode: the app's
 * policy (skip, stop, dead-letter) or the user's on_error function, the dead
 * letter itself (the original key, value and headers plus the luastream.*
 * headers saying where and why), and the log line naming the record
 * (topic[partition]@offset) and the row. The engine (engine.c) calls it; it
 * produces through the engine's io. */
#ifndef LS_ERRORS_H
#define LS_ERRORS_H

#include "engine.h"

enum { LS_DONE_OK = 0, LS_DONE_STOP = 1 };

/* Applies on_error to record mi (row > 0 when it decoded, 1-based) failing
 * at stage ("decode" | "process" | "encode") with err. LS_DONE_OK: the record
 * counts as done (skipped or dead-lettered); LS_DONE_STOP: the engine stops
 * with the record not done. */
int ls_errors_handle(ls_engine *e, int mi, int row, const char *stage, const char *err);

/* "topic[partition]@offset" of record mi. */
void ls_errors_where(const ls_engine *e, int mi, char *out, size_t len);

#endif
