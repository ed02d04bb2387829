/* status.c - the status line and the periodic status log (see status.h). */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define TTY_EVERY_MS 1000
#define LOG_EVERY_MS 30000

struct ls_status {
  int tty;
  double last_ms;
  long last_in, last_out;
};

ls_status *ls_status_new(int tty) {
  ls_status *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->tty = tty;
  s->last_ms = ls_mono_ms();
  if (tty) ls_log_set_status_line(1);
  return s;
}

void ls_status_free(ls_status *s) {
  if (!s) return;
  if (s->tty) {
    ls_log_set_status_line(0);
    fputs("\r\033[K", stderr);
  }
  free(s);
}

int ls_status_due(const ls_status *s, double now) {
  return s && now - s->last_ms >= (s->tty ? TTY_EVERY_MS : LOG_EVERY_MS);
}

static void format_counts(char *out, size_t len, const char *what, int64_t n) {
  if (n < 0) snprintf(out, len, "%s -", what);
  else if (n >= 10000000) snprintf(out, len, "%s %.1fM", what, (double)n / 1e6);
  else snprintf(out, len, "%s %lld", what, (long long)n);
}

void ls_status_show(ls_status *s, const ls_status_sample *x, double now) {
  double secs = (now - s->last_ms) / 1000;
  double in_rate = secs > 0 ? (double)(x->in_total - s->last_in) / secs : 0;
  double out_rate = secs > 0 ? (double)(x->out_total - s->last_out) / secs : 0;
  s->last_ms = now;
  s->last_in = x->in_total;
  s->last_out = x->out_total;
  char lag[48], keys[48], down[64] = "", line[320];
  format_counts(lag, sizeof lag, "lag", x->lag);
  format_counts(keys, sizeof keys, "state", x->state_entries);
  if (x->outage_ms > 0) snprintf(down, sizeof down, "UPLINK DOWN %.0f s  ", x->outage_ms / 1000);
  snprintf(line, sizeof line, "%sin %.0f/s  out %.0f/s  %s  %s  checkpoint %.1f s ago  (%ld in, %ld out%s)",
           down, in_rate, out_rate, lag, keys, x->since_checkpoint_ms / 1000, x->in_total, x->out_total,
           x->reloads ? ", reloaded" : "");
  if (s->tty) {
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
  } else {
    ls_info("status: %s", line);
  }
}
