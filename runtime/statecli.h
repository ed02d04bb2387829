/* statecli.h - `luastream state`: look at and drop an app's local state.
 *
 *   luastream state list DIR [STORE [PARTITION]] [--keys | --values]
 *   luastream state get DIR STORE KEY [--partition P]
 *   luastream state clear DIR [STORE [PARTITION]]
 *
 * DIR is state_dir/<app name>, the LMDB environment of state.c. Values are
 * MessagePack in LMDB and are printed as JSON (decoded with codec.h in a
 * small lua_State, encoded with json.h). Message keys are printed with
 * control bytes and '\' escaped (\t, \n, \\, \xNN); KEY accepts the same
 * escapes, so a printed key can be pasted back.
 *
 * Exit codes: 0 done, 1 no such state (or a failure), 2 bad usage. */
#ifndef LS_STATECLI_H
#define LS_STATECLI_H

/* The synopsis of `luastream state` (also shown by `luastream help`). */
extern const char ls_statecli_synopsis[];

/* Runs `luastream state ARGS...` (argv holds what follows "state") and
 * returns the process exit code. */
int ls_statecli_main(int argc, char **argv);

#endif
