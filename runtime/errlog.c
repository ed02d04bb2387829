/* errlog.c - one line per distinct error per interval (see errlog.h). */
#include "errlog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_KINDS 64
#define SAMPLE_LEN 400

typedef struct kind {
  uint64_t hash;
  long repeats;              /* not logged since the first line */
  char sample[SAMPLE_LEN];   /* the start of the first message */
} kind;

struct ls_errlog {
  double interval_ms, start_ms;
  kind kinds[MAX_KINDS];
  int nkinds;
  long overflow;             /* errors past MAX_KINDS distinct ones */
};

ls_errlog *ls_errlog_new(double interval_ms) {
  ls_errlog *e = calloc(1, sizeof *e);
  if (e) {
    e->interval_ms = interval_ms;
    e->start_ms = ls_mono_ms();
  }
  return e;
}

void ls_errlog_free(ls_errlog *e) {
  if (e) ls_errlog_flush(e, 1);
  free(e);
}

/* FNV-1a over the text with every run of digits as one '#', except line
 * numbers (digits after ".lua:"): the same error at another offset or with
 * another value is the same error; at another line of the script it is not. */
static uint64_t shape_hash(const char *text) {
  uint64_t h = 1469598103934665603ULL;
  int in_num = 0, keep = 0;
  for (const char *s = text; *s; s++) {
    int digit = *s >= '0' && *s <= '9';
    if (digit && !in_num) keep = s - text >= 5 && memcmp(s - 5, ".lua:", 5) == 0;
    if (digit && in_num && !keep) continue;
    in_num = digit;
    h = (h ^ (unsigned char)(digit && !keep ? '#' : *s)) * 1099511628211ULL;
  }
  return h;
}

static kind *find(ls_errlog *e, uint64_t h) {
  for (int i = 0; i < e->nkinds; i++)
    if (e->kinds[i].hash == h) return &e->kinds[i];
  return NULL;
}

int ls_errlog_admit(ls_errlog *e, const char *text) {
  if (!e) return 1;
  ls_errlog_flush(e, 0);
  uint64_t h = shape_hash(text);
  kind *k = find(e, h);
  if (k) {
    k->repeats++;
    return 0;
  }
  if (e->nkinds == MAX_KINDS) {
    e->overflow++;
    return 0;
  }
  k = &e->kinds[e->nkinds++];
  k->hash = h;
  k->repeats = 0;
  strncpy(k->sample, text, SAMPLE_LEN - 1);
  k->sample[SAMPLE_LEN - 1] = 0;
  return 1;
}

void ls_errlog_flush(ls_errlog *e, int force) {
  if (!e) return;
  double now = ls_mono_ms();
  if (!force && now - e->start_ms < e->interval_ms) return;
  double secs = (now - e->start_ms) / 1000;
  for (int i = 0; i < e->nkinds; i++)
    if (e->kinds[i].repeats)
      ls_warn("the same error again %ld times in the last %.0f s: %s%s", e->kinds[i].repeats,
              secs, e->kinds[i].sample, strlen(e->kinds[i].sample) == SAMPLE_LEN - 1 ? "..." : "");
  if (e->overflow)
    ls_warn("%ld more errors of other kinds in the last %.0f s were not logged", e->overflow, secs);
  e->nkinds = 0;
  e->overflow = 0;
  e->start_ms = now;
}
