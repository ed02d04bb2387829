/* bench_pipeline.c - the batch path of `luastream run` in process, no broker.
 *
 * Loads tests/bench/crash_stateless.lua exactly as app.c does (ls_vm_new,
 * ls_batch_load, ls_batch_alloc), then feeds it pre-generated accelerometer
 * rows from memory in batches of 1000 messages spread over 16 partitions, and
 * times three stages on one core:
 *   decode    ls_batch_decode                (JSON -> Lua tables)
 *   +pipeline ls_batch_decode + ls_batch_call (the compiled pipeline, which
 *                                             ends by writing the JSON text
 *                                             of flat output rows:
 *                                             luastream.jsonout)
 *   full      + ls_batch_emit                (encode every output; the emit
 *                                             callback only counts bytes)
 * What Kafka costs (librdkafka, the broker) is not in these numbers.
 *
 *   build/bench_pipeline [--rows N] [--batch N] [--repeat N] [--script FILE] [--fresh-state]
 *                        [--stage all|decode|pipeline|full] [--input FILE]
 *
 * A warm-up pass over the distinct rows checks every output (a gTotal, the
 * crash flag where expected). Prints one line per stage (rows/s and ns per
 * row, best of --repeat runs) and a last line `full_rows_per_s N` for
 * scripts. --stage full runs only the full path (for profiling).
 * --input FILE feeds the records of FILE instead (one per line, key TAB
 * value, as `kcat -K '\t'` reads them), for any one-input script; the
 * warm-up then only checks that nothing failed. --fresh-state forgets the
 * pipeline's state (kept in memory here: no LMDB) before every run, so a
 * stateful script (a window) meets the same rows as new each time rather
 * than as late ones. --alloc also prints the Lua heap's growth per row in each
 * stage of the first run (the collector stopped meanwhile): what the stage
 * allocates per row.
 *
 * --table FILE runs a script with two inputs, a stream and an app:table
 * (tests/bench/join_table.lua): the records of FILE (key TAB value; an empty
 * value is a tombstone) go once to the table's topic, untimed, before the
 * warm-up (and again after each forgetting of the state), then the rows go to
 * the other input. Every record goes to the partition its key hashes to, the
 * same for both inputs, as co-partitioned topics have it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "batch.h"
#include "lua_vm.h"
#include "mem.h"
#include "spec.h"

#define NPART 16
#define NDEV 200
#define NDISTINCT 100000 /* distinct payloads, reused cyclically */

/* The partition of a key (FNV-1a): the same for a stream and a table. */
static int key_partition(const char *k, int n) {
  uint32_t h = 2166136261u;
  for (int i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 16777619u;
  return (int)(h % NPART);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- rows like tests/bench/gen_rows.py --------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void) { /* xorshift64*, uniform in [0, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(double sigma) {
  double u = rnd(), v = rnd();
  return sigma * sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

typedef struct row {
  char key[16];
  int key_len;
  char *value;
  int value_len;
  int partition;
} row;

static row *make_rows(int n, int *crashes) {
  row *rows = calloc((size_t)n, sizeof *rows);
  if (!rows) return NULL;
  double dir[NDEV][3];
  int burst[NDEV] = {0};
  for (int d = 0; d < NDEV; d++) {
    double th = rnd() * M_PI, ph = rnd() * 2 * M_PI;
    dir[d][0] = sin(th) * cos(ph);
    dir[d][1] = sin(th) * sin(ph);
    dir[d][2] = cos(th);
  }
  *crashes = 0;
  for (int i = 0; i < n; i++) {
    int d = i % NDEV;
    double g[3];
    if (burst[d] == 0 && rnd() < 0.002) burst[d] = 3 + (int)(rnd() * 5);
    if (burst[d] > 0) {
      burst[d]--;
      double m = 4.0 + rnd() * 5.0, x = gauss(1), y = gauss(1), z = gauss(1);
      double s = sqrt(x * x + y * y + z * z);
      g[0] = x / s * m, g[1] = y / s * m, g[2] = z / s * m;
      (*crashes)++;
    } else {
      double s = rnd() < 0.9 ? 0.03 : 0.4;
      for (int k = 0; k < 3; k++) g[k] = dir[d][k] + gauss(s);
    }
    char buf[256];
    row *r = &rows[i];
    r->key_len = snprintf(r->key, sizeof r->key, "phone-%04d", d);
    r->value_len = snprintf(buf, sizeof buf,
                            "{\"device\":\"%s\",\"ts\":%lld,\"gX\":%.6f,\"gY\":%.6f,\"gZ\":%.6f}",
                            r->key, 1764160000000LL + (long long)(i / NDEV) * 20 + (i % 3), g[0],
                            g[1], g[2]);
    if (!(r->value = malloc((size_t)r->value_len))) return NULL;
    memcpy(r->value, buf, (size_t)r->value_len);
    r->partition = key_partition(r->key, r->key_len);
  }
  return rows;
}

/* Reads "key\tvalue" lines; returns the rows (*n of them) or NULL. With
 * empty_null, an empty value is a tombstone (value NULL). */
static row *read_rows(const char *path, int *n, int empty_null) {
  FILE *f = fopen(path, "r");
  if (!f) return perror(path), NULL;
  row *rows = NULL;
  int cap = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  *n = 0;
  while ((len = getline(&line, &lcap, f)) > 0) {
    if (line[len - 1] == '\n') line[--len] = 0;
    char *tab = memchr(line, '\t', (size_t)len);
    if (!tab || tab - line >= (ssize_t)sizeof rows->key) continue;
    if (*n == cap) {
      row *more = realloc(rows, (size_t)(cap = cap ? cap * 2 : 1024) * sizeof *rows);
      if (!more) return fprintf(stderr, "bench_pipeline: out of memory\n"), NULL;
      rows = more;
    }
    row *r = &rows[(*n)++];
    r->key_len = (int)(tab - line);
    memcpy(r->key, line, (size_t)r->key_len);
    r->value_len = (int)(len - r->key_len - 1);
    r->value = NULL;
    if (r->value_len > 0 || !empty_null) {
      if (!(r->value = malloc((size_t)r->value_len + 1)))
        return fprintf(stderr, "bench_pipeline: out of memory\n"), NULL;
      memcpy(r->value, tab + 1, (size_t)r->value_len);
    }
    r->partition = key_partition(r->key, r->key_len);
  }
  free(line);
  fclose(f);
  return rows;
}

/* ---- the batch path ---------------------------------------------------------- */

static int push_cli(lua_State *L, void *ud) {
  (void)ud;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, "bench:0"); /* a broker, so the script attaches no source */
  lua_setfield(L, -2, "broker");
  lua_createtable(L, 0, 0);
  lua_setfield(L, -2, "set");
  return 1;
}

typedef struct counts {
  long outputs;
  long bytes;
  long crashes;
} counts;

static int count_output(void *ud, lua_State *L, const ls_outrec *o) {
  (void)L;
  counts *c = ud;
  c->outputs++;
  c->bytes += (long)(o->key_len + o->value_len);
  return 0;
}

/* The warm-up run also checks that the pipeline ran. */
static int check_output(void *ud, lua_State *L, const ls_outrec *o) {
  counts *c = ud;
  if (!o->value || !memmem(o->value, o->value_len, "\"gTotal\":", 9)) {
    fprintf(stderr, "bench_pipeline: an output has no gTotal: %.*s\n", (int)o->value_len,
            o->value ? o->value : "");
    return 1;
  }
  if (memmem(o->value, o->value_len, "\"crash\":true", 12)) c->crashes++;
  return count_output(ud, L, o);
}

static ls_emit_fn emit_fn = check_output;

static int count_error(void *ud, int row, const char *err) {
  (void)ud;
  fprintf(stderr, "bench_pipeline: row %d: %s\n", row, err);
  return 1;
}

enum { STAGE_DECODE, STAGE_CALL, STAGE_FULL };
static const char *const STAGE_NAMES[] = {"decode", "decode+pipeline", "full (decode+pipeline+encode)"};

/* Runs nrows rows through the stage, as records of input topic `topic`;
 * returns seconds, or -1 on error. */
static double run_stage(ls_batch *b, int stage, const row *rows, int ndistinct, long nrows,
                        int batch, int topic, counts *c) {
  ls_inmsg *msgs = calloc((size_t)batch, sizeof *msgs);
  if (!msgs) return fprintf(stderr, "bench_pipeline: out of memory\n"), -1;
  int64_t offsets[NPART] = {0};
  char err[2048];
  long done = 0;
  int next = 0;
  memset(c, 0, sizeof *c);
  double t0 = now_s();
  while (done < nrows) {
    int n = (int)(nrows - done < batch ? nrows - done : batch);
    for (int i = 0; i < n; i++) {
      const row *r = &rows[next];
      next = next + 1 == ndistinct ? 0 : next + 1;
      ls_inmsg *m = &msgs[i];
      m->payload = r->value;
      m->len = (size_t)r->value_len;
      m->key = r->key;
      m->key_len = (size_t)r->key_len;
      m->partition = r->partition;
      m->offset = offsets[r->partition]++;
      m->timestamp = 1764160000000LL + done + i;
      m->topic = topic;
      m->source = NULL;
    }
    if (ls_batch_decode(b, msgs, n, err, sizeof err)) {
      fprintf(stderr, "bench_pipeline: decode: %s\n", err);
      return -1;
    }
    for (int i = 0; i < n; i++)
      if (b->msg_err[i]) {
        fprintf(stderr, "bench_pipeline: row %ld: %s\n", done + i, b->msg_err[i]);
        return -1;
      }
    if (stage >= STAGE_CALL) {
      int nout = ls_batch_call(b, 1, b->nrows, err, sizeof err);
      if (nout < 0) {
        fprintf(stderr, "bench_pipeline: pipeline: %s\n", err);
        return -1;
      }
      if (stage == STAGE_FULL) {
        int rc = ls_batch_emit(b, nout, emit_fn, count_error, c, err, sizeof err);
        if (rc) {
          fprintf(stderr, "bench_pipeline: emit: %s\n", rc < 0 ? err : "encode error");
          return -1;
        }
      } else {
        c->outputs += nout;
      }
    }
    done += n;
  }
  double t = now_s() - t0;
  free(msgs);
  return t;
}

/* The table's records, once through the whole path (untimed): a table's
 * records make no outputs. Returns 0, or 1 after a message. */
static int feed_table(ls_batch *b, const row *trows, int n, int batch, int table_topic) {
  counts c;
  if (run_stage(b, STAGE_FULL, trows, n, n, batch, table_topic, &c) < 0) return 1;
  if (c.outputs != 0) {
    fprintf(stderr, "bench_pipeline: the table's %d records made %ld outputs\n", n, c.outputs);
    return 1;
  }
  return 0;
}

/* After the warm-up: the crash scripts' outputs are checked (one per row, the
 * crash flag where expected); other inputs only report what came out. */
static int report_warmup(const char *script, int input, const counts *c, int ndistinct,
                         int crashes) {
  if (input) {
    printf("  outputs: %.2f per record, %.0f B per output (key + value)\n",
           (double)c->outputs / ndistinct, c->outputs ? (double)c->bytes / c->outputs : 0.0);
    return 0;
  }
  /* The stateful script flags changes of gTotal, not totals: only its count is checked. */
  int stateful = strstr(script, "stateful") != NULL;
  if (c->outputs != ndistinct || (!stateful && c->crashes != crashes)) {
    fprintf(stderr, "bench_pipeline: %ld outputs with %ld crashes for %d rows with %d crashes\n",
            c->outputs, c->crashes, ndistinct, crashes);
    return 1;
  }
  printf("  outputs: %.0f B per record (key + value), crash=true on %d of %d distinct rows\n",
         (double)c->bytes / c->outputs, crashes, ndistinct);
  return 0;
}

int main(int argc, char **argv) {
  ls_mem_policy(1); /* luastream's heap policy at a high input rate */
  long nrows = 2000000;
  int batch = 1000, repeat = 3, first_stage = STAGE_DECODE, last_stage = STAGE_FULL, fresh_state = 0,
      alloc = 0;
  double alloc_b[3] = {0, 0, 0};
  const char *script = NULL, *input = NULL, *table = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--rows") == 0 && v) nrows = atol(argv[++i]);
    else if (strcmp(argv[i], "--batch") == 0 && v) batch = atoi(argv[++i]);
    else if (strcmp(argv[i], "--repeat") == 0 && v) repeat = atoi(argv[++i]);
    else if (strcmp(argv[i], "--script") == 0 && v) script = argv[++i];
    else if (strcmp(argv[i], "--input") == 0 && v) input = argv[++i];
    else if (strcmp(argv[i], "--table") == 0 && v) table = argv[++i];
    else if (strcmp(argv[i], "--fresh-state") == 0) fresh_state = 1;
    else if (strcmp(argv[i], "--alloc") == 0) alloc = 1;
    else if (strcmp(argv[i], "--stage") == 0 && v && strcmp(v, "all") == 0) i++;
    else if (strcmp(argv[i], "--stage") == 0 && v && strcmp(v, "decode") == 0)
      first_stage = last_stage = STAGE_DECODE, i++;
    else if (strcmp(argv[i], "--stage") == 0 && v && strcmp(v, "pipeline") == 0)
      first_stage = last_stage = STAGE_CALL, i++;
    else if (strcmp(argv[i], "--stage") == 0 && v && strcmp(v, "full") == 0)
      first_stage = last_stage = STAGE_FULL, i++;
    else {
      fprintf(stderr,
              "usage: %s [--rows N] [--batch N] [--repeat N] [--script FILE] "
              "[--stage all|decode|pipeline|full] [--input FILE] [--table FILE] [--fresh-state] "
              "[--alloc]\n",
              argv[0]);
      return 2;
    }
  }
  if (nrows < 1 || batch < 1 || repeat < 1) {
    fprintf(stderr, "bench_pipeline: --rows, --batch and --repeat must be >= 1\n");
    return 2;
  }
  char default_script[4096];
  if (!script) { /* the script next to this source file */
    snprintf(default_script, sizeof default_script, "%s", __FILE__);
    char *slash = strrchr(default_script, '/');
    size_t dir = slash ? (size_t)(slash + 1 - default_script) : 0;
    snprintf(default_script + dir, sizeof default_script - dir, "crash_stateless.lua");
    script = default_script;
  }

  lua_State *L = ls_vm_new();
  if (!L) return 1;
  ls_vm_add_script_dir(L, script);
  ls_spec spec;
  ls_batch b;
  char err[4096];
  memset(&spec, 0, sizeof spec);
  if (ls_batch_load(&b, L, &spec, script, push_cli, NULL, err, sizeof err)) {
    fprintf(stderr, "bench_pipeline: %s\n", err);
    return 1;
  }
  int topic = 0, table_topic = -1;
  if (table) { /* the table's input is the one that takes tombstones, the rows go to the other */
    table_topic = spec.ninputs == 2 ? (spec.inputs[0].tombstones ? 0 : 1) : -1;
    if (table_topic < 0 || !spec.inputs[table_topic].tombstones || spec.inputs[1 - table_topic].tombstones) {
      fprintf(stderr, "bench_pipeline: %s: --table expects two inputs, one of them an app:table\n", script);
      return 1;
    }
    topic = 1 - table_topic;
  } else if (spec.ninputs != 1 || (!input && spec.noutputs != 1)) {
    fprintf(stderr, "bench_pipeline: %s: expected one input and one output topic\n", script);
    return 1;
  }
  ls_batch_alloc(&b, batch);
  int ntable = 0;
  row *trows = table ? read_rows(table, &ntable, 1) : NULL;
  if (table && !trows) return 1;

  int ndistinct = nrows < NDISTINCT ? (int)nrows : NDISTINCT, crashes = 0;
  row *rows = input ? read_rows(input, &ndistinct, 0) : make_rows(ndistinct, &crashes);
  if (!rows || ndistinct == 0) {
    fprintf(stderr, "bench_pipeline: no records in %s\n", input);
    return 1;
  }
  long bytes_in = 0;
  for (int i = 0; i < ndistinct; i++) bytes_in += rows[i].value_len;
  printf("bench_pipeline: %s, %ld rows (%d distinct, %.0f B JSON on average), batches of %d, "
         "%d partitions, best of %d\n",
         script, nrows, ndistinct, (double)bytes_in / ndistinct, batch, NPART, repeat);

  /* Warm up (LuaJIT compiles its traces) over every distinct row, checking the outputs. */
  counts c;
  if (input || table) emit_fn = count_output;
  if (table && feed_table(&b, trows, ntable, batch, table_topic)) return 1;
  if (run_stage(&b, STAGE_FULL, rows, ndistinct, ndistinct, batch, topic, &c) < 0) return 1;
  if (report_warmup(script, input || table, &c, ndistinct, crashes)) return 1;
  emit_fn = count_output;

  double best[3] = {0, 0, 0};
  for (int r = 0; r < repeat; r++)
    for (int s = first_stage; s <= last_stage; s++) {
      if (fresh_state && luaL_dostring(L, "require('luastream.state').forget_all()")) {
        fprintf(stderr, "bench_pipeline: %s\n", lua_tostring(L, -1));
        return 1;
      }
      if (fresh_state && table && feed_table(&b, trows, ntable, batch, table_topic)) return 1;
      double kb0 = 0;
      if (alloc) { /* the Lua heap's growth over the run, with the collector stopped */
        lua_gc(L, LUA_GCCOLLECT, 0);
        lua_gc(L, LUA_GCSTOP, 0);
        kb0 = lua_gc(L, LUA_GCCOUNT, 0) + lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0;
      }
      double t = run_stage(&b, s, rows, ndistinct, nrows, batch, topic, &c);
      if (alloc) {
        double kb1 = lua_gc(L, LUA_GCCOUNT, 0) + lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0;
        lua_gc(L, LUA_GCRESTART, 0);
        if (r == 0) alloc_b[s] = (kb1 - kb0) * 1024 / nrows;
      }
      if (t < 0) return 1;
      if (best[s] == 0 || t < best[s]) best[s] = t;
      if (s == STAGE_FULL && !input && c.outputs != nrows) {
        fprintf(stderr, "bench_pipeline: %ld outputs for %ld rows\n", c.outputs, nrows);
        return 1;
      }
    }
  for (int s = first_stage; s <= last_stage; s++)
    printf("  %-30s %10.0f rows/s  %7.0f ns/row\n", STAGE_NAMES[s], nrows / best[s],
           best[s] / nrows * 1e9);
  if (first_stage == STAGE_DECODE && last_stage == STAGE_FULL)
    printf("  per stage: decode %.0f ns, pipeline %.0f ns, encode+emit %.0f ns per row\n",
           best[0] / nrows * 1e9, (best[1] - best[0]) / nrows * 1e9,
           (best[2] - best[1]) / nrows * 1e9);
  if (alloc && first_stage == STAGE_DECODE && last_stage == STAGE_FULL)
    printf("  Lua heap allocated per row: decode %.1f B, pipeline %.1f B, encode+emit %.1f B\n", alloc_b[0],
           alloc_b[1] - alloc_b[0], alloc_b[2] - alloc_b[1]);
  if (best[STAGE_FULL] > 0) printf("full_rows_per_s %.0f\n", nrows / best[STAGE_FULL]);

  for (int i = 0; i < ndistinct; i++) free(rows[i].value);
  free(rows);
  for (int i = 0; i < ntable; i++) free(trows[i].value);
  free(trows);
  ls_batch_free(&b);
  ls_spec_free(&spec);
  ls_vm_close(L);
  return 0;
}
