/* driver.c - the engine fed from memory, for the test driver (see driver.h). */
#include "driver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>

#include "batch.h"
#include "buf.h"
#include "checkpoint.h"
#include "codec.h"
#include "engine.h"
#include "log.h"
#include "lua_vm.h"
#include "offsets.h"
#include "spec.h"
#include "state.h"
#include "statedir.h"

/* An output or error entry owns its bytes. */
typedef struct out_entry {
  ls_driver_out pub;
  char *topic, *key, *value;
  char **hnames, **hvalues;
  size_t *hlens;
} out_entry;

typedef struct err_entry {
  ls_driver_err pub;
  char *stage, *error, *policy, *reason;
} err_entry;

typedef struct state_entry {
  char *name, *val;
  size_t nlen, vlen;
} state_entry;

struct ls_driver {
  char *script;
  char *name;
  char **sets;
  int nsets;
  int dev_broker, echo, partitions;
  double clock;
  char state_dir[64];        /* temporary, removed at free */
  /* the pipeline */
  lua_State *L;
  ls_spec spec;
  ls_batch batch;
  ls_engine eng;
  ls_ckpt *ckpt;
  ls_offsets offsets;
  char **input_names;
  int loaded, stopped;
  /* the batch being processed */
  ls_inmsg *in;
  rd_kafka_headers_t **in_hdrs;
  int in_cap;
  /* results */
  out_entry *outs;
  int nout, out_cap;
  err_entry *errs;
  int nerr, err_cap;
  ls_buf printed, printed_ret;
  state_entry *st;
  int nst, st_cap;
  ls_buf spec_json;
  char err[4096];
};

static int fail(ls_driver *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ls_driver *d, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->err, sizeof d->err, fmt, ap);
  va_end(ap);
  return code;
}

static char *dup_bytes(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = 0;
  return s;
}

static char *dup_str(const char *s) { return s ? dup_bytes(s, strlen(s)) : NULL; }

/* Grows *arr (of *cap elements of size sz) to hold n. 0 or -1. */
static int grow(void **arr, int *cap, int n, size_t sz) {
  if (n <= *cap) return 0;
  int c = *cap ? *cap : 16;
  while (c < n) c *= 2;
  void *p = realloc(*arr, (size_t)c * sz);
  if (!p) return -1;
  *arr = p;
  *cap = c;
  return 0;
}

/* ---- the engine's io: memory ------------------------------------------------ */

int32_t ls_ffi_partition(const char *key, size_t klen, int32_t n) {
  if (n <= 1) return 0;
  if (!key) return (int32_t)(rand() % n); /* murmur2_random: a null key goes anywhere */
  return rd_kafka_msg_partitioner_murmur2(NULL, key, klen, n, NULL, NULL);
}

static void free_out(out_entry *o) {
  for (int i = 0; i < o->pub.nheaders; i++) {
    free(o->hnames[i]);
    free(o->hvalues[i]);
  }
  free(o->hnames);
  free(o->hvalues);
  free(o->hlens);
  free(o->topic);
  free(o->key);
  free(o->value);
}

/* Copies header list h into o. 0 or -1. */
static int copy_out_headers(out_entry *o, const rd_kafka_headers_t *h) {
  size_t n = h ? rd_kafka_header_cnt(h) : 0;
  if (n == 0) return 0;
  o->hnames = calloc(n, sizeof *o->hnames);
  o->hvalues = calloc(n, sizeof *o->hvalues);
  o->hlens = calloc(n, sizeof *o->hlens);
  if (!o->hnames || !o->hvalues || !o->hlens) return -1;
  const char *name;
  const void *val;
  size_t len;
  for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++) {
    o->pub.nheaders = (int32_t)i + 1;
    o->hnames[i] = dup_str(name);
    o->hvalues[i] = val ? dup_bytes(val, len) : NULL;
    o->hlens[i] = len;
    if (!o->hnames[i] || (val && !o->hvalues[i])) return -1;
  }
  return 0;
}

static int mem_produce(void *ud, const ls_out *o, char *err, size_t errlen) {
  ls_driver *d = ud;
  const char *topic = o->topic == LS_OUT_DEAD_LETTER ? d->spec.dead_letter : d->spec.outputs[o->topic].name;
  if (grow((void **)&d->outs, &d->out_cap, d->nout + 1, sizeof *d->outs)) {
    if (o->hdrs) rd_kafka_headers_destroy(o->hdrs);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  out_entry *e = &d->outs[d->nout];
  memset(e, 0, sizeof *e);
  e->topic = dup_str(topic);
  e->key = o->key ? dup_bytes(o->key, o->key_len) : NULL;
  e->value = o->value ? dup_bytes(o->value, o->value_len) : NULL;
  int bad = !e->topic || (o->key && !e->key) || (o->value && !e->value) || copy_out_headers(e, o->hdrs);
  if (o->hdrs) rd_kafka_headers_destroy(o->hdrs);
  if (bad) {
    free_out(e);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  e->pub = (ls_driver_out){e->topic, ls_ffi_partition(o->key, o->key_len, d->partitions),
                           o->timestamp, e->key, o->key_len, e->value, o->value_len,
                           e->pub.nheaders, (const char *const *)e->hnames,
                           (const char *const *)e->hvalues, e->hlens, o->msg};
  d->nout++;
  return 0;
}

static rd_kafka_headers_t *mem_copy_headers(const void *source) {
  return source ? rd_kafka_headers_copy(source) : NULL;
}

static void mem_push_headers(lua_State *L, const void *source) { ls_engine_push_headers(L, source); }

static void mem_on_error(void *ud, const ls_error_event *ev) {
  ls_driver *d = ud;
  if (grow((void **)&d->errs, &d->err_cap, d->nerr + 1, sizeof *d->errs)) return;
  err_entry *e = &d->errs[d->nerr];
  memset(e, 0, sizeof *e);
  e->stage = dup_str(ev->stage);
  e->error = dup_str(ev->error);
  e->policy = dup_str(ev->policy);
  e->reason = dup_str(ev->reason);
  if (!e->stage || !e->error || !e->policy || (ev->reason && !e->reason)) {
    free(e->stage), free(e->error), free(e->policy), free(e->reason);
    return;
  }
  e->pub = (ls_driver_err){ev->msg, e->stage, e->error, e->policy, e->reason};
  d->nerr++;
}

/* ---- the pipeline's Lua state ------------------------------------------------ */

static double driver_clock(void *ud) { return ((ls_driver *)ud)->clock; }

/* io.write in the pipeline's state: captured for ls_ffi_driver_printed. */
static int capture_write(lua_State *L) {
  ls_driver *d = lua_touserdata(L, lua_upvalueindex(1));
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = luaL_checklstring(L, i, &len);
    if (ls_buf_put(&d->printed, s, len)) return luaL_error(L, "out of memory");
    if (d->echo) fwrite(s, 1, len, stdout);
  }
  lua_getglobal(L, "io");
  lua_getfield(L, -1, "stdout");
  return 1;
}

static void install_capture(ls_driver *d) {
  lua_getglobal(d->L, "io");
  lua_pushlightuserdata(d->L, d);
  lua_pushcclosure(d->L, capture_write, 1);
  lua_setfield(d->L, -2, "write");
  lua_pop(d->L, 1);
}

/* The command-line table rt.load takes: name, set, state_dir, broker. */
static int push_cli(lua_State *L, void *ud) {
  ls_driver *d = ud;
  lua_createtable(L, 0, 4);
  if (d->name) lua_pushstring(L, d->name), lua_setfield(L, -2, "name");
  lua_pushstring(L, d->state_dir);
  lua_setfield(L, -2, "state_dir");
  if (!d->dev_broker) { /* what app:is_dev_broker() looks at */
    lua_pushliteral(L, "test-driver");
    lua_setfield(L, -2, "broker");
  }
  lua_createtable(L, 0, d->nsets);
  for (int i = 0; i < d->nsets; i++) {
    const char *eq = strchr(d->sets[i], '=');
    if (!eq) continue;
    lua_pushlstring(L, d->sets[i], (size_t)(eq - d->sets[i]));
    lua_pushstring(L, eq + 1);
    lua_settable(L, -3);
  }
  lua_setfield(L, -2, "set");
  return 1;
}

static void unload(ls_driver *d) {
  ls_engine_free(&d->eng);
  ls_ckpt_close(d->ckpt);
  d->ckpt = NULL;
  ls_offsets_free(&d->offsets);
  free(d->input_names);
  d->input_names = NULL;
  ls_batch_free(&d->batch);
  memset(&d->batch, 0, sizeof d->batch);
  ls_spec_free(&d->spec);
  ls_vm_close(d->L);
  d->L = NULL;
  d->loaded = 0;
}

/* Runs the script in a new Lua state and sets up engine and state. */
static int load(ls_driver *d) {
  char err[4096];
  if (!(d->L = ls_vm_new())) return fail(d, LS_DRV_ERR, "cannot create a Lua state");
  ls_vm_set_clock(d->L, driver_clock, d);
  ls_vm_add_script_dir(d->L, d->script);
  int rc = ls_batch_load(&d->batch, d->L, &d->spec, d->script, push_cli, d, err, sizeof err);
  if (rc) return fail(d, rc == 2 ? LS_DRV_SCRIPT : LS_DRV_ERR, "%s", err);
  d->batch.push_headers = mem_push_headers;
  install_capture(d);
  ls_engine_io io = {.ud = d, .produce = mem_produce, .copy_headers = mem_copy_headers,
                     .on_error = mem_on_error};
  if (ls_batch_alloc(&d->batch, d->spec.batch_size) || ls_engine_init(&d->eng, &d->batch, &io, 0))
    return fail(d, LS_DRV_ERR, "out of memory");
  d->input_names = calloc((size_t)d->spec.ninputs + 1, sizeof *d->input_names);
  if (!d->input_names) return fail(d, LS_DRV_ERR, "out of memory");
  for (int i = 0; i < d->spec.ninputs; i++) d->input_names[i] = d->spec.inputs[i].name;
  if (ls_offsets_init(&d->offsets, d->input_names, d->spec.ninputs)) return fail(d, LS_DRV_ERR, "out of memory");
  d->ckpt = ls_ckpt_open(d->L, d->batch.rt_ref, &d->spec, NULL, 1, err, sizeof err);
  if (!d->ckpt && err[0]) return fail(d, LS_DRV_ERR, "%s", err);
  d->loaded = 1;
  d->stopped = 0;
  return LS_DRV_OK;
}

/* ---- life cycle --------------------------------------------------------------- */

static int copy_opts(ls_driver *d, const char *script, const ls_driver_opts *o) {
  d->script = dup_str(script);
  d->name = o && o->name ? dup_str(o->name) : NULL;
  if (!d->script || (o && o->name && !d->name)) return -1;
  if (o && o->nsets > 0) {
    d->sets = calloc((size_t)o->nsets, sizeof *d->sets);
    if (!d->sets) return -1;
    for (int i = 0; i < o->nsets; i++, d->nsets++)
      if (!(d->sets[i] = dup_str(o->sets[i]))) return -1;
  }
  d->dev_broker = o ? o->dev_broker : 0;
  d->echo = o ? o->echo : 0;
  d->partitions = o && o->partitions > 0 ? o->partitions : 1;
  d->clock = o ? o->start_ms : 0;
  return 0;
}

ls_driver *ls_ffi_driver_new(const char *script, const ls_driver_opts *opts, int *code, char *err,
                             size_t errlen) {
  ls_driver *d = calloc(1, sizeof *d);
  *code = LS_DRV_ERR;
  if (!d || copy_opts(d, script ? script : "", opts)) {
    ls_ffi_driver_free(d);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ls_buf_init(&d->printed);
  ls_buf_init(&d->printed_ret);
  ls_buf_init(&d->spec_json);
  snprintf(d->state_dir, sizeof d->state_dir, "/tmp/luastream-test-XXXXXX");
  if (!mkdtemp(d->state_dir)) {
    snprintf(err, errlen, "cannot make a temporary state directory: %s", strerror(errno));
    d->state_dir[0] = 0;
    ls_ffi_driver_free(d);
    return NULL;
  }
  *code = load(d);
  if (*code != LS_DRV_OK) {
    snprintf(err, errlen, "%s", d->err);
    ls_ffi_driver_free(d);
    return NULL;
  }
  return d;
}

/* Removes the temporary state directory. */
static void remove_state_dir(ls_driver *d) {
  if (d->state_dir[0]) ls_statedir_remove(d->state_dir, d->spec.name ? d->spec.name : d->name);
}

void ls_ffi_driver_clear(ls_driver *d) {
  for (int i = 0; i < d->nout; i++) free_out(&d->outs[i]);
  for (int i = 0; i < d->nerr; i++) {
    err_entry *e = &d->errs[i];
    free(e->stage), free(e->error), free(e->policy), free(e->reason);
  }
  d->nout = d->nerr = 0;
}

static void free_state_entries(ls_driver *d) {
  for (int i = 0; i < d->nst; i++) free(d->st[i].name), free(d->st[i].val);
  d->nst = 0;
}

static void free_inputs(ls_driver *d) {
  for (int i = 0; d->in_hdrs && i < d->in_cap; i++)
    if (d->in_hdrs[i]) rd_kafka_headers_destroy(d->in_hdrs[i]), d->in_hdrs[i] = NULL;
}

void ls_ffi_driver_free(ls_driver *d) {
  if (!d) return;
  char *app = d->spec.name ? dup_str(d->spec.name) : NULL;
  if (d->loaded || d->L) unload(d);
  d->spec.name = app;
  remove_state_dir(d);
  d->spec.name = NULL;
  free(app);
  ls_ffi_driver_clear(d);
  free_state_entries(d);
  free_inputs(d);
  free(d->outs), free(d->errs), free(d->st), free(d->in), free(d->in_hdrs);
  ls_buf_free(&d->printed), ls_buf_free(&d->printed_ret), ls_buf_free(&d->spec_json);
  for (int i = 0; i < d->nsets; i++) free(d->sets[i]);
  free(d->sets), free(d->script), free(d->name);
  free(d);
}

const char *ls_ffi_driver_error(const ls_driver *d) { return d ? d->err : "no driver"; }

int ls_ffi_driver_restart(ls_driver *d) {
  if (d->loaded || d->L) unload(d);
  d->err[0] = 0;
  return load(d);
}

void ls_ffi_driver_set_clock(ls_driver *d, double now_ms) { d->clock = now_ms; }

/* ---- running -------------------------------------------------------------------- */

/* The engine logs each skipped or dead-lettered record; a test reads them
 * from ls_ffi_driver_err instead, so only errors reach stderr meanwhile.
 * Returns the level to restore. */
static ls_log_level quiet(void) {
  ls_log_level level = ls_log_get_level();
  if (level < LS_LOG_ERROR) ls_log_set_level(LS_LOG_ERROR);
  return level;
}

/* Fills d->in from recs: headers become librdkafka header lists. 0 or -1. */
static int take_inputs(ls_driver *d, const ls_driver_rec *recs, int n) {
  free_inputs(d);
  int cap = d->in_cap;
  if (grow((void **)&d->in, &cap, n, sizeof *d->in)) return -1;
  cap = d->in_cap;
  if (grow((void **)&d->in_hdrs, &cap, n, sizeof *d->in_hdrs)) return -1;
  for (int i = d->in_cap; i < cap; i++) d->in_hdrs[i] = NULL;
  d->in_cap = cap;
  for (int i = 0; i < n; i++) {
    const ls_driver_rec *r = &recs[i];
    rd_kafka_headers_t *h = NULL;
    if (r->nheaders > 0) {
      if (!(h = rd_kafka_headers_new((size_t)r->nheaders))) return -1;
      for (int j = 0; j < r->nheaders; j++)
        rd_kafka_header_add(h, r->header_names[j], -1, r->header_values[j],
                            r->header_values[j] ? (ssize_t)r->header_lens[j] : 0);
    }
    d->in_hdrs[i] = h;
    int ok = r->topic >= 0 && r->topic < d->spec.ninputs;
    d->in[i] = (ls_inmsg){r->value, r->value_len, r->key, r->key_len, r->offset, r->timestamp,
                          r->partition, ok ? r->topic : -1, h};
  }
  return 0;
}

/* State to LMDB, as a checkpoint does (no changelogs here). */
static int checkpoint(ls_driver *d) {
  char err[1024];
  if (!d->ckpt) return 0;
  if (ls_ckpt_produce(d->ckpt, &d->offsets, err, sizeof err) ||
      ls_ckpt_store(d->ckpt, &d->offsets, err, sizeof err))
    return fail(d, LS_DRV_ERR, "state: %s", err);
  return 0;
}

int ls_ffi_driver_process(ls_driver *d, const ls_driver_rec *recs, int n) {
  if (!d->loaded) return fail(d, LS_DRV_ERR, "the script is not loaded");
  if (d->stopped) return LS_DRV_STOPPED;
  if (n < 0 || (n > 0 && !recs)) return fail(d, LS_DRV_ERR, "bad record list");
  if (n > d->batch.cap) { /* a send_batch larger than batch_size: one batch all the same */
    ls_batch_free(&d->batch);
    if (ls_batch_alloc(&d->batch, n)) return fail(d, LS_DRV_ERR, "out of memory");
  }
  if (take_inputs(d, recs, n)) return fail(d, LS_DRV_ERR, "out of memory");
  ls_log_level level = quiet();
  int done = ls_engine_process(&d->eng, d->in, n);
  ls_log_set_level(level);
  for (int i = 0; i < done; i++)
    if (d->in[i].topic >= 0) ls_offsets_set(&d->offsets, d->in[i].topic, d->in[i].partition, d->in[i].offset + 1);
  int rc = checkpoint(d);
  free_inputs(d);
  if (d->eng.exit_code) {
    d->stopped = 1;
    snprintf(d->err, sizeof d->err, "%s", d->eng.fatal);
    d->eng.exit_code = 0; /* a restart starts afresh */
    return LS_DRV_STOPPED;
  }
  return rc ? rc : done;
}

int ls_ffi_driver_run_source(ls_driver *d, int k) {
  if (!d->loaded) return fail(d, LS_DRV_ERR, "the script is not loaded");
  if (k < 0 || k >= d->spec.nsources) return fail(d, LS_DRV_ERR, "no source %d", k + 1);
  ls_log_level level = quiet();
  ls_engine_run_source(&d->eng, k, ls_vm_now_ms(d->L));
  ls_log_set_level(level);
  return checkpoint(d);
}

int ls_ffi_driver_run_idle(ls_driver *d) {
  if (!d->loaded) return fail(d, LS_DRV_ERR, "the script is not loaded");
  if (d->spec.idle_check_ms <= 0) return 0;
  ls_log_level level = quiet();
  ls_engine_run_idle(&d->eng, ls_vm_now_ms(d->L));
  ls_log_set_level(level);
  return checkpoint(d);
}

/* ---- results --------------------------------------------------------------------- */

int ls_ffi_driver_nout(const ls_driver *d) { return d->nout; }
const ls_driver_out *ls_ffi_driver_out(const ls_driver *d, int i) {
  return i >= 0 && i < d->nout ? &d->outs[i].pub : NULL;
}
int ls_ffi_driver_nerr(const ls_driver *d) { return d->nerr; }
const ls_driver_err *ls_ffi_driver_err(const ls_driver *d, int i) {
  return i >= 0 && i < d->nerr ? &d->errs[i].pub : NULL;
}

const char *ls_ffi_driver_printed(ls_driver *d, size_t *len) {
  ls_buf t = d->printed_ret;
  d->printed_ret = d->printed;
  d->printed = t;
  d->printed.len = 0;
  *len = d->printed_ret.len;
  return d->printed_ret.len ? d->printed_ret.data : "";
}

const char *ls_ffi_driver_spec_json(ls_driver *d) {
  if (!d->loaded) return NULL;
  lua_State *L = d->L;
  char err[256];
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->batch.rt_ref);
  int rt = lua_gettop(L);
  lua_newtable(L); /* a copy of rt.spec, plus topics = rt.topics */
  int copy = lua_gettop(L);
  lua_getfield(L, rt, "spec");
  for (lua_pushnil(L); lua_istable(L, -2) && lua_next(L, -2);) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, copy);
  }
  lua_pop(L, 1);
  lua_getfield(L, rt, "topics");
  lua_setfield(L, copy, "topics");
  d->spec_json.len = 0;
  int rc = ls_encode(L, copy, LS_FMT_JSON, &d->spec_json, err, sizeof err);
  lua_settop(L, top);
  if (rc || ls_buf_put(&d->spec_json, "", 1)) return fail(d, LS_DRV_ERR, "spec: %s", rc ? err : "out of memory"), NULL;
  return d->spec_json.data;
}

/* ---- state ------------------------------------------------------------------------ */

typedef struct scan_ctx {
  ls_driver *d;
  size_t prefix;
  int oom;
} scan_ctx;

static int take_entry(void *ud, const void *key, size_t klen, const void *val, size_t vlen) {
  scan_ctx *c = ud;
  ls_driver *d = c->d;
  if (grow((void **)&d->st, &d->st_cap, d->nst + 1, sizeof *d->st)) return c->oom = 1;
  state_entry *e = &d->st[d->nst];
  e->name = dup_bytes((const char *)key + c->prefix, klen - c->prefix);
  e->val = dup_bytes(val, vlen);
  if (!e->name || !e->val) {
    free(e->name), free(e->val);
    return c->oom = 1;
  }
  e->nlen = klen - c->prefix;
  e->vlen = vlen;
  d->nst++;
  return 0;
}

typedef struct parts_ctx {
  const char *store;
  int32_t *parts;
  int n, cap;
} parts_ctx;

static int list_part(void *ud, const char *store, int32_t partition, size_t keys, size_t bytes,
                     int64_t changelog_offset, int64_t input_offset) {
  (void)keys, (void)bytes, (void)changelog_offset, (void)input_offset;
  parts_ctx *c = ud;
  if (strcmp(store, c->store) != 0) return 0;
  if (grow((void **)&c->parts, &c->cap, c->n + 1, sizeof *c->parts)) return 1;
  c->parts[c->n++] = partition;
  return 0;
}

/* Scans one partition for the key's entries; 0 or -1. */
static int scan_key(ls_driver *d, ls_state *s, const char *store, int32_t p, const char *key, size_t klen) {
  char *prefix = malloc(klen + 2);
  if (!prefix) return -1;
  prefix[0] = (char)(klen >> 8);
  prefix[1] = (char)(klen & 0xff);
  memcpy(prefix + 2, key, klen);
  scan_ctx c = {d, klen + 2, 0};
  int rc = ls_state_scan(s, store, p, prefix, klen + 2, take_entry, &c);
  free(prefix);
  return rc || c.oom ? -1 : 0;
}

int ls_ffi_driver_state(ls_driver *d, const char *store, int32_t partition, const char *key,
                        size_t klen, int *nparts, int32_t *part) {
  free_state_entries(d);
  *nparts = 0;
  *part = -1;
  if (!d->ckpt) return 0;
  if (klen > 65535) return fail(d, LS_DRV_ERR, "key longer than 65535 bytes");
  ls_state *s = ls_ckpt_state(d->ckpt);
  parts_ctx pc = {store, NULL, 0, 0};
  if (partition >= 0) {
    if (grow((void **)&pc.parts, &pc.cap, 1, sizeof *pc.parts)) return fail(d, LS_DRV_ERR, "out of memory");
    pc.parts[pc.n++] = partition;
  } else if (ls_state_list(s, list_part, &pc)) {
    free(pc.parts);
    return fail(d, LS_DRV_ERR, "state: %s", ls_state_error(s));
  }
  int rc = 0;
  for (int i = 0; i < pc.n && rc == 0; i++) {
    int before = d->nst;
    if (*nparts > 0) { /* only count further partitions holding the key */
      rc = scan_key(d, s, store, pc.parts[i], key, klen);
      if (d->nst > before) (*nparts)++;
      for (int j = before; j < d->nst; j++) free(d->st[j].name), free(d->st[j].val);
      d->nst = before;
      continue;
    }
    rc = scan_key(d, s, store, pc.parts[i], key, klen);
    if (d->nst > before) *nparts = 1, *part = pc.parts[i];
  }
  free(pc.parts);
  if (rc) return fail(d, LS_DRV_ERR, "state: %s", ls_state_error(s));
  return d->nst;
}

int ls_ffi_driver_state_entry(const ls_driver *d, int i, const char **name, size_t *nlen,
                              const char **val, size_t *vlen) {
  if (i < 0 || i >= d->nst) return LS_DRV_ERR;
  *name = d->st[i].name;
  *nlen = d->st[i].nlen;
  *val = d->st[i].val;
  *vlen = d->st[i].vlen;
  return LS_DRV_OK;
}
