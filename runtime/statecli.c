/* statecli.c - `luastream state` (see statecli.h).
 *
 * Opens the LMDB environment with state.c, takes one survey of its (store,
 * partition) databases (ls_state_list) and answers from it: `list` prints
 * the survey's rows or scans their entries, `get` scans each partition of a
 * store for the entries of one message key, `clear` drops rows. Values are
 * turned into JSON field by field: ls_decode (MessagePack, vecs included)
 * pushes a Lua value in a lua_State of the runtime's own (ls_vm_new), and
 * ls_json_encode writes it. Entries are visited in LMDB order, so a message
 * key's fields come out sorted by state key, and keys sort shorter first
 * (the 2-byte length leads). */
#include "statecli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "buf.h"
#include "codec.h"
#include "json.h"
#include "lua_vm.h"
#include "state.h"

const char ls_statecli_synopsis[] =
    "usage: luastream state list DIR [STORE [PARTITION]] [--keys | --values]\n"
    "       luastream state get DIR STORE KEY [--partition P]\n"
    "       luastream state clear DIR [STORE [PARTITION]]\n";

static const char HELP[] =
    "\n"
    "Looks at or drops the local state of an app. DIR is its state directory,\n"
    "state_dir/<app name> (LMDB); STORE is a store name (\"default\" unless the step\n"
    "names one), PARTITION a partition number of the app's input.\n"
    "\n"
    "  list       one line per store and partition: its LMDB entries (one per state\n"
    "             key of a message key), bytes, the changelog offset a rebuild\n"
    "             replays from and the input offset the state reflects. With STORE\n"
    "             (and PARTITION), only those; naming one that has no state is an\n"
    "             error (exit 1)\n"
    "    --keys     one line per message key instead: store, partition, key\n"
    "               (tab-separated, shorter keys first)\n"
    "    --values   the same with a fourth column: the key's state as a JSON object\n"
    "               {\"state_key\": value, ...}\n"
    "  get        prints the state of message key KEY in STORE as one JSON object\n"
    "             {\"state_key\": value, ...}, searching every partition of STORE;\n"
    "             exit 1 when the key has no state\n"
    "    --partition P  only partition P\n"
    "  clear      drops the state (all of it, one STORE, or one of its partitions),\n"
    "             with the app stopped; it is rebuilt from the changelog topic at\n"
    "             the next assignment\n"
    "\n"
    "Keys are printed with control bytes and '\\' escaped (\\t, \\n, \\r, \\\\, \\xNN);\n"
    "KEY takes the same escapes, and `--` before it allows a KEY starting with '-'.\n"
    "Exit codes: 0 done, 1 no such state (or a failure), 2 bad usage.\n";

typedef struct args {
  const char *cmd;     /* "list", "get" or "clear" */
  const char *pos[3];  /* DIR STORE PARTITION (list, clear) or DIR STORE KEY (get) */
  int npos;
  const char *partition; /* get --partition */
  int keys, values;      /* list --keys, --values */
} args;

typedef struct row { /* one (store, partition) database, as ls_state_list saw it */
  char store[LS_STATE_STORE_MAX + 1];
  int32_t partition;
  size_t keys, bytes;
  int64_t changelog_offset, input_offset;
} row;

typedef struct survey {
  row *r;
  size_t n, cap;
  int oom;
} survey;

/* ---- messages ------------------------------------------------------------ */

__attribute__((format(printf, 2, 3))) static int usage_error(const char *cmd, const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "luastream state%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s", ls_statecli_synopsis);
  return 2;
}

static int help(void) {
  fputs(ls_statecli_synopsis, stdout);
  fputs(HELP, stdout);
  return 0;
}

static int is_help(const char *a) { return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0; }

/* A message or state key, with control bytes and '\' escaped. */
static void put_key(FILE *f, const void *key, size_t n) {
  const unsigned char *k = key;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = k[i];
    if (c == '\\') fputs("\\\\", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\r') fputs("\\r", f);
    else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
}

/* ---- arguments ------------------------------------------------------------ */

/* One option at argv[*i]: 0, 2 after a usage error, -1 for --help. */
static int parse_option(args *a, int argc, char **argv, int *i) {
  const char *o = argv[*i];
  int list = strcmp(a->cmd, "list") == 0;
  if (is_help(o)) return -1;
  if (list && strcmp(o, "--keys") == 0) return a->keys = 1, 0;
  if (list && strcmp(o, "--values") == 0) return a->values = 1, 0;
  if (strcmp(a->cmd, "get") != 0 || strcmp(o, "--partition") != 0)
    return usage_error(a->cmd, "unknown option %s", o);
  if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)
    return usage_error(a->cmd, "option %s needs a value", o);
  a->partition = argv[++*i];
  return 0;
}

/* The arguments after the subcommand: 0, 2 after a usage error, -1 for --help.
 * "-1" is an argument (a bad PARTITION, or a KEY), not an option. */
static int parse_args(args *a, int argc, char **argv) {
  int options = 1, get = strcmp(a->cmd, "get") == 0;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (options && strcmp(s, "--") == 0) {
      options = 0;
    } else if (options && s[0] == '-' && s[1] && !isdigit((unsigned char)s[1])) {
      int rc = parse_option(a, argc, argv, &i);
      if (rc) return rc;
    } else if (a->npos == 3) {
      return usage_error(a->cmd, "unexpected argument %s", s);
    } else {
      a->pos[a->npos++] = s;
    }
  }
  if (a->npos < (get ? 3 : 1))
    return usage_error(a->cmd, "%s", get ? "needs DIR, STORE and KEY" : "needs DIR");
  if (a->keys && a->values) return usage_error(a->cmd, "--keys and --values exclude each other");
  return 0;
}

/* A partition number: 0, or 2 after a usage error. */
static int parse_partition(const char *cmd, const char *s, int32_t *out) {
  char *end = NULL;
  errno = 0;
  long v = s[0] >= '0' && s[0] <= '9' ? strtol(s, &end, 10) : -1;
  if (v < 0 || errno || *end || v > LS_STATE_PARTITION_MAX)
    return usage_error(cmd, "bad partition %s: want a number from 0 to %d", s,
                       LS_STATE_PARTITION_MAX);
  *out = (int32_t)v;
  return 0;
}

static int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : tolower((unsigned char)c) - 'a' + 10;
}

/* The escape at s[*i] (just after a '\\') into *out, advancing *i past it;
 * -1 when it is not one of \\ \t \n \r \xNN. */
static int unescape_one(const char *s, size_t *i, char *out) {
  switch (s[*i]) {
  case '\\': *out = '\\'; break;
  case 't': *out = '\t'; break;
  case 'n': *out = '\n'; break;
  case 'r': *out = '\r'; break;
  case 'x':
    if (!isxdigit((unsigned char)s[*i + 1]) || !isxdigit((unsigned char)s[*i + 2])) return -1;
    *out = (char)(hex_digit(s[*i + 1]) * 16 + hex_digit(s[*i + 2]));
    *i += 2;
    break;
  default: return -1;
  }
  return 0;
}

/* KEY with its escapes decoded into a malloc'd buffer: 0, 1 out of memory,
 * 2 after a usage error. */
static int unescape_key(const char *s, char **out, size_t *outlen) {
  size_t n = strlen(s), j = 0;
  char *o = malloc(n + 1);
  if (!o) return fprintf(stderr, "luastream state: out of memory\n"), 1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\') {
      o[j++] = s[i];
      continue;
    }
    i++;
    if (unescape_one(s, &i, &o[j++])) {
      free(o);
      return usage_error("get", "bad escape in KEY %s (\\\\, \\t, \\n, \\r or \\xNN)", s);
    }
  }
  *out = o;
  *outlen = j;
  return 0;
}

/* ---- opening and the survey ---------------------------------------------- */

/* Says there is no state at dir, and names state directories inside it
 * (the usual mistake: state_dir instead of state_dir/<app name>). */
static void no_state(const char *dir) {
  fprintf(stderr, "luastream state: no state at %s (no data.mdb; DIR is state_dir/<app name>)",
          dir);
  DIR *d = opendir(dir);
  int found = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[4096];
    if (e->d_name[0] == '.') continue;
    if (snprintf(path, sizeof path, "%s/%s/data.mdb", dir, e->d_name) >= (int)sizeof path) continue;
    if (access(path, F_OK) == 0)
      fprintf(stderr, "%s %s/%s", found++ ? "," : "; state directories in it:", dir, e->d_name);
  }
  if (d) closedir(d);
  fputc('\n', stderr);
}

/* Opens dir when it holds state (opening would create it otherwise). */
static ls_state *open_dir(const char *dir) {
  char path[4096], err[1024];
  if (snprintf(path, sizeof path, "%s/data.mdb", dir) >= (int)sizeof path ||
      access(path, F_OK) != 0) {
    no_state(dir);
    return NULL;
  }
  ls_state *s = ls_state_open(dir, NULL, err, sizeof err);
  if (!s) fprintf(stderr, "luastream state: %s\n", err);
  return s;
}

static int survey_add(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                      int64_t changelog_offset, int64_t input_offset) {
  survey *sv = ud;
  if (sv->n == sv->cap) {
    size_t cap = sv->cap ? sv->cap * 2 : 16;
    row *r = realloc(sv->r, cap * sizeof *r);
    if (!r) return sv->oom = 1;
    sv->r = r;
    sv->cap = cap;
  }
  row *r = &sv->r[sv->n++];
  snprintf(r->store, sizeof r->store, "%s", store);
  r->partition = partition;
  r->keys = keys;
  r->bytes = bytes;
  r->changelog_offset = changelog_offset;
  r->input_offset = input_offset;
  return 0;
}

/* Every (store, partition) of s, sorted. 0, or 1 after printing the error. */
static int take_survey(ls_state *s, survey *sv) {
  if (ls_state_list(s, survey_add, sv) == 0 && !sv->oom) return 0;
  fprintf(stderr, "luastream state: %s\n", sv->oom ? "out of memory" : ls_state_error(s));
  return 1;
}

/* Whether r is selected by store (NULL: any) and partition (-1: any). */
static int selected(const row *r, const char *store, int32_t partition) {
  return (!store || strcmp(r->store, store) == 0) && (partition < 0 || r->partition == partition);
}

static int survey_has(const survey *sv, const char *store, int32_t partition) {
  for (size_t i = 0; i < sv->n; i++)
    if (selected(&sv->r[i], store, partition)) return 1;
  return 0;
}

static void print_stores(const survey *sv) {
  for (size_t i = 0; i < sv->n; i++)
    if (i == 0 || strcmp(sv->r[i].store, sv->r[i - 1].store) != 0)
      fprintf(stderr, "%s%s", i ? ", " : "", sv->r[i].store);
}

/* The partitions of store as runs: "0-3, 7". */
static void print_partitions(const survey *sv, const char *store) {
  int32_t first = -1, last = -1;
  int runs = 0;
  for (size_t i = 0; i <= sv->n; i++) {
    const row *r = i < sv->n && strcmp(sv->r[i].store, store) == 0 ? &sv->r[i] : NULL;
    if (r && first >= 0 && r->partition == last + 1) {
      last = r->partition;
      continue;
    }
    if (first >= 0 && first == last) fprintf(stderr, "%s%d", runs++ ? ", " : "", (int)first);
    else if (first >= 0) fprintf(stderr, "%s%d-%d", runs++ ? ", " : "", (int)first, (int)last);
    first = last = r ? r->partition : -1;
  }
}

/* 0 when store/partition (when given) have state; else says what there is
 * and returns 1. */
static int check_filter(const survey *sv, const char *dir, const char *store, int32_t partition) {
  if (!store || survey_has(sv, store, partition)) return 0;
  if (!survey_has(sv, store, -1)) {
    fprintf(stderr, "luastream state: no store %s in %s (", store, dir);
    if (sv->n) fputs("stores: ", stderr), print_stores(sv);
    else fputs("it holds no state", stderr);
  } else {
    fprintf(stderr, "luastream state: store %s has no partition %d in %s (partitions: ", store,
            (int)partition, dir);
    print_partitions(sv, store);
  }
  fputs(")\n", stderr);
  return 1;
}

/* ---- values as JSON -------------------------------------------------------- */

typedef struct jsonify { /* builds one JSON object {state_key: value, ...} */
  lua_State *L;
  ls_buf out;
  size_t fields;
  char err[512];
} jsonify;

typedef struct field_call {
  jsonify *j;
  const char *key, *val;
  size_t klen, vlen;
  const char *what; /* what failed, or NULL */
} field_call;

static int field_body(lua_State *L) {
  field_call *c = lua_touserdata(L, 1);
  ls_buf *b = &c->j->out;
  char *err = c->j->err;
  size_t elen = sizeof c->j->err;
  lua_settop(L, 0);
  if (ls_buf_putc(b, c->j->fields ? ',' : '{')) return luaL_error(L, "out of memory");
  lua_pushlstring(L, c->key, c->klen);
  if (ls_json_encode(L, 1, b, err, elen)) return c->what = "no JSON form", 0;
  if (ls_buf_putc(b, ':')) return luaL_error(L, "out of memory");
  if (ls_decode(L, LS_FMT_MSGPACK, c->val, c->vlen, err, elen))
    return c->what = "cannot decode its value", 0;
  if (ls_json_encode(L, 2, b, err, elen)) return c->what = "its value has no JSON form", 0;
  return 0;
}

/* Appends one field. 0, or -1 with j->err saying which state key and why:
 * state keys and values JSON cannot carry (not UTF-8, NaN) are errors. */
static int json_field(jsonify *j, const void *key, size_t klen, const void *val, size_t vlen) {
  field_call c = {j, key, val, klen, vlen, NULL};
  if (lua_cpcall(j->L, field_body, &c)) {
    const char *m = lua_tostring(j->L, -1);
    snprintf(j->err, sizeof j->err, "%s", m ? m : "Lua error");
    lua_settop(j->L, 0);
    return -1;
  }
  lua_settop(j->L, 0);
  if (!c.what) return j->fields++, 0;
  char why[sizeof j->err];
  memcpy(why, j->err, sizeof why);
  snprintf(j->err, sizeof j->err, "state key \"%.*s\": %s: %.300s", klen > 64 ? 64 : (int)klen,
           (const char *)key, c.what, why);
  return -1;
}

static void json_begin(jsonify *j) {
  j->out.len = 0;
  j->fields = 0;
}

/* Closes the object; 0 or -1 (out of memory). */
static int json_end(jsonify *j) {
  if (j->fields ? ls_buf_putc(&j->out, '}') : ls_buf_put(&j->out, "{}", 2)) {
    snprintf(j->err, sizeof j->err, "out of memory");
    return -1;
  }
  return 0;
}

static int jsonify_open(jsonify *j) {
  memset(j, 0, sizeof *j);
  ls_buf_init(&j->out);
  j->L = ls_vm_new();
  if (!j->L) fprintf(stderr, "luastream state: cannot create a Lua state\n");
  return j->L ? 0 : 1;
}

static void jsonify_close(jsonify *j) {
  ls_vm_close(j->L);
  ls_buf_free(&j->out);
}

/* ---- list ------------------------------------------------------------------ */

static int list_rows(const survey *sv, const char *store, int32_t partition) {
  printf("%-20s %9s %10s %12s %16s %14s\n", "store", "partition", "keys", "bytes",
         "changelog_next", "input_offset");
  for (size_t i = 0; i < sv->n; i++) {
    const row *r = &sv->r[i];
    if (selected(r, store, partition))
      printf("%-20s %9d %10zu %12zu %16lld %14lld\n", r->store, (int)r->partition, r->keys,
             r->bytes, (long long)r->changelog_offset, (long long)r->input_offset);
  }
  return 0;
}

typedef struct key_lister { /* list --keys / --values over one partition */
  const row *r;
  jsonify *j; /* NULL for --keys */
  ls_buf key; /* the current message key */
  int have;   /* a current key */
  int bad;    /* the current key's state cannot be shown (said so) */
  int failed; /* something could not be shown: exit 1 */
  int fatal;  /* out of memory: the scan stopped */
} key_lister;

/* Says why a key cannot be shown; the listing goes on without it. */
static void key_fail(key_lister *kl, const void *mkey, size_t mklen, const char *why) {
  fprintf(stderr, "luastream state: %s partition %d key ", kl->r->store, (int)kl->r->partition);
  put_key(stderr, mkey, mklen);
  fprintf(stderr, ": %s\n", why);
  kl->failed = 1;
}

/* Prints the line of the current message key; 0, or -1 out of memory. */
static int key_line(key_lister *kl) {
  if (!kl->have || kl->bad) return 0;
  if (kl->j && json_end(kl->j)) return -1;
  printf("%s\t%d\t", kl->r->store, (int)kl->r->partition);
  put_key(stdout, kl->key.data, kl->key.len);
  if (kl->j) {
    putchar('\t');
    fwrite(kl->j->out.data, 1, kl->j->out.len, stdout);
  }
  putchar('\n');
  return 0;
}

/* Starts message key mk: prints the previous one. 0, or -1 out of memory. */
static int key_start(key_lister *kl, const void *mk, size_t mkl) {
  if (key_line(kl)) return -1;
  kl->key.len = 0;
  if (mkl && ls_buf_put(&kl->key, mk, mkl)) return -1;
  kl->have = 1;
  kl->bad = 0;
  if (kl->j) json_begin(kl->j);
  return 0;
}

static int key_visit(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  key_lister *kl = ud;
  const void *mk, *sk;
  size_t mkl, skl;
  if (ls_state_entry_split(key, klen, &mk, &mkl, &sk, &skl)) {
    key_fail(kl, key, klen, "malformed LMDB key (shorter than its length prefix)");
    return 0;
  }
  int same = kl->have && mkl == kl->key.len && (mkl == 0 || memcmp(mk, kl->key.data, mkl) == 0);
  if (!same && key_start(kl, mk, mkl)) return kl->fatal = 1;
  if (kl->j && !kl->bad && json_field(kl->j, sk, skl, val, vlen)) {
    key_fail(kl, mk, mkl, kl->j->err);
    kl->bad = 1;
  }
  return 0;
}

/* Lists the message keys of the selected rows (with their state when j):
 * keys that cannot be shown are reported and skipped. 0, or 1. */
static int list_keys(ls_state *s, const survey *sv, jsonify *j, const char *store,
                     int32_t partition) {
  int rc = 0;
  for (size_t i = 0; i < sv->n; i++) {
    const row *r = &sv->r[i];
    if (!selected(r, store, partition)) continue;
    key_lister kl = {r, j, {NULL, 0, 0}, 0, 0, 0, 0};
    if (ls_state_scan(s, r->store, r->partition, NULL, 0, key_visit, &kl)) {
      fprintf(stderr, "luastream state: %s\n", ls_state_error(s));
      rc = 1;
    } else if (kl.fatal || key_line(&kl)) {
      fprintf(stderr, "luastream state: out of memory\n");
      rc = 1;
    }
    ls_buf_free(&kl.key);
    if (kl.failed) rc = 1;
    if (kl.fatal) break;
  }
  return rc;
}

static int cmd_list(const args *a, ls_state *s, const survey *sv) {
  const char *store = a->npos > 1 ? a->pos[1] : NULL;
  int32_t partition = -1;
  if (a->npos > 2 && parse_partition(a->cmd, a->pos[2], &partition)) return 2;
  if (check_filter(sv, a->pos[0], store, partition)) return 1;
  if (!a->keys && !a->values) return list_rows(sv, store, partition);
  jsonify j;
  if (a->values && jsonify_open(&j)) return 1;
  int rc = list_keys(s, sv, a->values ? &j : NULL, store, partition);
  if (a->values) jsonify_close(&j);
  return rc;
}

/* ---- get ------------------------------------------------------------------- */

typedef struct getter {
  jsonify *j;
  size_t plen; /* the message key's prefix, skipped to reach the state key */
  int failed;
} getter;

static int get_visit(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  getter *g = ud;
  if (json_field(g->j, (const char *)key + g->plen, klen - g->plen, val, vlen) == 0) return 0;
  g->failed = 1;
  return 1;
}

/* Scans partition r for the entries under prefix into j (j->fields of
 * them): 0, or -1 after printing the error. */
static int get_scan(ls_state *s, const row *r, jsonify *j, const char *prefix, size_t plen,
                    const char *key, size_t klen) {
  getter g = {j, plen, 0};
  json_begin(j);
  if (ls_state_scan(s, r->store, r->partition, prefix, plen, get_visit, &g) == 0 && !g.failed)
    return 0;
  fprintf(stderr, "luastream state: %s partition %d key ", r->store, (int)r->partition);
  put_key(stderr, key, klen);
  fprintf(stderr, ": %s\n", g.failed ? j->err : ls_state_error(s));
  return -1;
}

/* Says that key has no state, or state in several partitions (where). */
static void get_miss(const survey *sv, const char *store, int32_t partition, const char *key,
                     size_t klen, int nfound, const ls_buf *where) {
  fprintf(stderr, "luastream state: %s key ", nfound ? "ambiguous:" : "no state for");
  put_key(stderr, key, klen);
  fprintf(stderr, " in store %s", store);
  if (nfound)
    fprintf(stderr, " has state in partitions %.*s; choose one with --partition P\n",
            (int)where->len, where->data);
  else if (partition >= 0)
    fprintf(stderr, " partition %d\n", (int)partition);
  else
    fputs(" (partitions searched: ", stderr), print_partitions(sv, store), fputs(")\n", stderr);
}

/* Appends ", P" (or "P") to where; 0 or -1 (out of memory). */
static int add_partition(ls_buf *where, int32_t p) {
  char num[24];
  int n = snprintf(num, sizeof num, "%s%d", where->len ? ", " : "", (int)p);
  return ls_buf_put(where, num, (size_t)n);
}

/* Searches the selected partitions; prints the one object found. */
static int get_key(ls_state *s, const survey *sv, jsonify *j, const char *store,
                   int32_t partition, const char *key, size_t klen, const char *prefix,
                   size_t plen) {
  ls_buf found, where; /* the JSON found first; the partitions holding the key */
  int nfound = 0, rc = 0;
  ls_buf_init(&found);
  ls_buf_init(&where);
  for (size_t i = 0; rc == 0 && i < sv->n; i++) {
    const row *r = &sv->r[i];
    if (!selected(r, store, partition)) continue;
    if (get_scan(s, r, j, prefix, plen, key, klen) || (j->fields && json_end(j))) rc = 1;
    if (rc || !j->fields) continue;
    if (add_partition(&where, r->partition))
      rc = (fprintf(stderr, "luastream state: out of memory\n"), 1);
    if (nfound++ == 0) { /* keep it: j->out is reused for the next partition */
      ls_buf t = found;
      found = j->out;
      j->out = t;
    }
  }
  if (rc == 0 && nfound == 1) printf("%.*s\n", (int)found.len, found.data);
  if (rc == 0 && nfound != 1) {
    get_miss(sv, store, partition, key, klen, nfound, &where);
    rc = 1;
  }
  ls_buf_free(&found);
  ls_buf_free(&where);
  return rc;
}

static int cmd_get(const args *a, ls_state *s, const survey *sv) {
  const char *store = a->pos[1];
  int32_t partition = -1;
  char *key = NULL, *prefix;
  size_t klen = 0;
  if (a->partition && parse_partition(a->cmd, a->partition, &partition)) return 2;
  int rc = unescape_key(a->pos[2], &key, &klen);
  if (rc) return rc;
  if (klen > LS_STATE_MSGKEY_MAX) {
    free(key);
    return usage_error(a->cmd, "KEY longer than %d bytes", LS_STATE_MSGKEY_MAX);
  }
  jsonify j;
  if (!(prefix = malloc(klen + 2))) rc = (fprintf(stderr, "luastream state: out of memory\n"), 1);
  else if (check_filter(sv, a->pos[0], store, partition) || jsonify_open(&j)) rc = 1;
  else {
    size_t plen = ls_state_entry_prefix(prefix, key, klen);
    rc = get_key(s, sv, &j, store, partition, key, klen, prefix, plen);
    jsonify_close(&j);
  }
  free(prefix);
  free(key);
  return rc;
}

/* ---- clear ------------------------------------------------------------------ */

static int cmd_clear(const args *a, ls_state *s, const survey *sv) {
  const char *store = a->npos > 1 ? a->pos[1] : NULL;
  int32_t partition = -1;
  int dropped = 0, failed = 0;
  if (a->npos > 2 && parse_partition(a->cmd, a->pos[2], &partition)) return 2;
  for (size_t i = 0; i < sv->n; i++) {
    char err[512];
    const row *r = &sv->r[i];
    if (!selected(r, store, partition)) continue;
    if (ls_state_drop_partition(s, r->store, r->partition, err, sizeof err) == 0) dropped++;
    else failed++, fprintf(stderr, "luastream state: %s\n", err);
  }
  printf("dropped %d store partition%s\n", dropped, dropped == 1 ? "" : "s");
  return failed ? 1 : 0;
}

/* ---- the command -------------------------------------------------------------- */

static int run(const args *a) {
  ls_state *s = open_dir(a->pos[0]);
  if (!s) return 1;
  survey sv = {NULL, 0, 0, 0};
  int rc = take_survey(s, &sv);
  if (rc == 0) {
    if (strcmp(a->cmd, "list") == 0) rc = cmd_list(a, s, &sv);
    else if (strcmp(a->cmd, "get") == 0) rc = cmd_get(a, s, &sv);
    else rc = cmd_clear(a, s, &sv);
  }
  free(sv.r);
  ls_state_close(s);
  return rc;
}

int ls_statecli_main(int argc, char **argv) {
  if (argc < 1) return usage_error(NULL, "no subcommand given (list, get or clear)");
  if (is_help(argv[0])) return help();
  args a = {argv[0], {NULL, NULL, NULL}, 0, NULL, 0, 0};
  if (strcmp(a.cmd, "list") != 0 && strcmp(a.cmd, "get") != 0 && strcmp(a.cmd, "clear") != 0)
    return usage_error(NULL, "unknown %s %s", a.cmd[0] == '-' ? "option" : "subcommand", a.cmd);
  int rc = parse_args(&a, argc, argv);
  if (rc) return rc < 0 ? help() : rc;
  /* A bad PARTITION is a usage error before DIR is looked at. */
  int32_t p;
  if (a.npos > 2 && strcmp(a.cmd, "get") != 0 && parse_partition(a.cmd, a.pos[2], &p)) return 2;
  if (a.partition && parse_partition(a.cmd, a.partition, &p)) return 2;
  return run(&a);
}
