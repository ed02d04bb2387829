/* errors.c - the on_error policy of a record that failed (see errors.h). */
#include "errors.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "log.h"

static const ls_inmsg *record(const ls_engine *e, int mi) { return &e->in[mi]; }

static const char *topic_name(const ls_engine *e, const ls_inmsg *m) {
  const ls_spec *s = e->batch->spec;
  return m->topic >= 0 && m->topic < s->ninputs ? s->inputs[m->topic].name : "?";
}

void ls_errors_where(const ls_engine *e, int mi, char *out, size_t len) {
  const ls_inmsg *m = record(e, mi);
  snprintf(out, len, "%s[%d]@%lld", topic_name(e, m), (int)m->partition, (long long)m->offset);
}

/* Pushes the msg table handed to an on_error function. */
static void push_msg_table(ls_engine *e, const ls_inmsg *m) {
  lua_State *L = e->batch->L;
  lua_createtable(L, 0, 6);
  if (m->key) {
    lua_pushlstring(L, m->key, m->key_len);
    lua_setfield(L, -2, "key");
  }
  lua_pushstring(L, topic_name(e, m));
  lua_setfield(L, -2, "topic");
  lua_pushinteger(L, m->partition);
  lua_setfield(L, -2, "partition");
  lua_pushnumber(L, (double)m->offset);
  lua_setfield(L, -2, "offset");
  lua_pushnumber(L, (double)m->timestamp);
  lua_setfield(L, -2, "timestamp");
  e->batch->push_headers(L, m->source);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_setfield(L, -2, "headers");
}

/* Asks the user's on_error function (through rt.handle_error, which returns
 * the policy and, when its answer became "stop", why). Returns the policy;
 * the reason, if any, is copied into reason[0..len). */
static ls_on_error ask_on_error(ls_engine *e, const char *err, int row, int mi, char *reason,
                                size_t len) {
  lua_State *L = e->batch->L;
  int top = lua_gettop(L);
  ls_batch_push_handler(e->batch);
  lua_pushstring(L, err);
  if (row > 0) ls_batch_push_row(e->batch, row);
  else lua_pushnil(L);
  push_msg_table(e, record(e, mi));
  ls_on_error policy = LS_ON_ERROR_STOP;
  reason[0] = 0;
  if (lua_pcall(L, 3, 2, 0) == 0) {
    const char *p = lua_tostring(L, -2);
    ls_on_error chosen;
    if (p && ls_on_error_parse(p, &chosen) == 0 && chosen != LS_ON_ERROR_FUNCTION) policy = chosen;
    if (lua_isstring(L, -1)) snprintf(reason, len, "%s", lua_tostring(L, -1));
  } else {
    snprintf(reason, len, "the on_error function failed: %s", lua_tostring(L, -1));
    ls_error("%s", reason);
  }
  lua_settop(L, top);
  if (policy == LS_ON_ERROR_DEAD_LETTER && !e->batch->spec->dead_letter) {
    snprintf(reason, len, "on_error chose dead-letter, but no dead_letter topic is set");
    ls_error("%s; stopping", reason);
    policy = LS_ON_ERROR_STOP;
  }
  return policy;
}

static rd_kafka_headers_t *dead_letter_headers(ls_engine *e, const ls_inmsg *m, const char *stage,
                                               const char *err) {
  rd_kafka_headers_t *h = e->io.copy_headers ? e->io.copy_headers(m->source) : NULL;
  if (!h) h = rd_kafka_headers_new(6);
  char num[32];
  rd_kafka_header_add(h, "luastream.error", -1, err, -1);
  rd_kafka_header_add(h, "luastream.error.stage", -1, stage, -1);
  rd_kafka_header_add(h, "luastream.source.topic", -1, topic_name(e, m), -1);
  snprintf(num, sizeof num, "%d", (int)m->partition);
  rd_kafka_header_add(h, "luastream.source.partition", -1, num, -1);
  snprintf(num, sizeof num, "%lld", (long long)m->offset);
  rd_kafka_header_add(h, "luastream.source.offset", -1, num, -1);
  return h;
}

static int dead_letter(ls_engine *e, int mi, const char *stage, const char *err) {
  const ls_inmsg *m = record(e, mi);
  char why[512];
  ls_out o = {LS_OUT_DEAD_LETTER, m->key, m->key_len, m->payload, m->len, m->timestamp,
              dead_letter_headers(e, m, stage, err), mi};
  if (e->io.produce(e->io.ud, &o, why, sizeof why)) {
    ls_engine_fail(e, 1, "cannot write to the dead-letter topic: %s", why);
    if (e->stop_at > mi) e->stop_at = mi; /* the record is not done */
    return LS_DONE_STOP;
  }
  e->dead_lettered++;
  return LS_DONE_OK;
}

/* Appends p[0..n) to out (capacity len), escaped, cut at about max bytes. */
static void append_escaped(char *out, size_t len, const char *p, size_t n, size_t max) {
  size_t o = strlen(out);
  for (size_t i = 0; i < n && o + 8 < len; i++) {
    if (i == max) {
      snprintf(out + o, len - o, "...");
      return;
    }
    unsigned char c = (unsigned char)p[i];
    if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
    else out[o++] = (char)c, out[o] = 0;
  }
}

/* "row: {...}" (the row as the failing step left it, as JSON) or, for a
 * record that did not decode, "value: <raw bytes>"; cut to fit one line. */
static void describe_row(ls_engine *e, int mi, int row, char *out, size_t len) {
  const ls_inmsg *m = record(e, mi);
  char err[256];
  snprintf(out, len, row > 0 ? "row: " : "value: ");
  if (row <= 0) {
    if (m->payload) append_escaped(out, len, m->payload, m->len, 200);
    else snprintf(out, len, "value: null");
    return;
  }
  lua_State *L = e->batch->L;
  ls_buf b;
  ls_buf_init(&b);
  ls_batch_push_row(e->batch, row);
  if (ls_encode(L, lua_gettop(L), LS_FMT_JSON, &b, err, sizeof err) == 0)
    append_escaped(out, len, b.data, b.len, 200);
  else
    snprintf(out, len, "row: (cannot show it as JSON: %s)", err);
  lua_pop(L, 1);
  ls_buf_free(&b);
}

/* How to get past a record that stopped the app. */
#define STOP_HINT                                                                            \
  "to get past it: fix the pipeline and run again (or save it under --watch), or skip bad "   \
  "records (--set on_error=skip), or send them to a dead-letter topic (--set "               \
  "on_error=dead-letter --set dead_letter=TOPIC)"
#define STOP_HINT_FN "the on_error function chose to stop; return \"skip\" or \"dead-letter\" to get past it"

int ls_errors_handle(ls_engine *e, int mi, int row, const char *stage, const char *err) {
  char where[600];
  ls_errors_where(e, mi, where, sizeof where);
  ls_on_error policy = e->batch->spec->on_error;
  char reason[1024] = "";
  if (policy == LS_ON_ERROR_FUNCTION) policy = ask_on_error(e, err, row, mi, reason, sizeof reason);
  if (e->io.on_error) {
    ls_error_event ev = {mi, stage, err, ls_on_error_name(policy), reason[0] ? reason : NULL};
    e->io.on_error(e->io.ud, &ev);
  }
  char text[1200], row_desc[300];
  snprintf(text, sizeof text, "%s error: %s", stage, err);
  int log = policy == LS_ON_ERROR_STOP || ls_errlog_admit(e->errlog, text);
  if (log) describe_row(e, mi, row, row_desc, sizeof row_desc);
  if (policy == LS_ON_ERROR_SKIP) {
    e->skipped++;
    if (log) ls_warn("%s: %s error, skipped: %s\n  %s", where, stage, err, row_desc);
    return LS_DONE_OK;
  }
  if (policy == LS_ON_ERROR_DEAD_LETTER) {
    if (log) ls_warn("%s: %s error, sent to %s: %s\n  %s", where, stage, e->batch->spec->dead_letter, err, row_desc);
    return dead_letter(e, mi, stage, err);
  }
  ls_engine_fail(e, 1, "%s: %s error: %s (stopping; this offset is not committed)\n  %s\n  %s", where,
                 stage, err, row_desc, e->batch->spec->on_error == LS_ON_ERROR_FUNCTION ? STOP_HINT_FN : STOP_HINT);
  if (e->stop_at > mi) e->stop_at = mi;
  return LS_DONE_STOP;
}
