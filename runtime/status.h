/* status.h - what a running app is doing, at a glance.
 *
 * On a terminal, one status line at the bottom of stderr, redrawn every
 * second: an uplink outage and how long it has lasted, messages in and out
 * per second, consumer lag, state entries, time since the last checkpoint,
 * reloads. Log lines erase it before they print
 * (log.c), and the next redraw brings it back. When stderr is not a terminal
 * (a container, a service manager, a pipe), the same figures go out as a
 * plain log line every 30 s. app.c gathers the figures; this file only keeps
 * the previous sample to turn totals into rates, and prints. */
#ifndef LS_STATUS_H
#define LS_STATUS_H

#include <stdint.h>

typedef struct ls_status_sample {
  long in_total, out_total;
  int64_t lag;            /* -1: unknown */
  int64_t state_entries;  /* -1: no state */
  double since_checkpoint_ms;
  long reloads;
  double outage_ms;       /* the uplink has been down this long (0: it is up) */
} ls_status_sample;

typedef struct ls_status ls_status;

/* tty: draw the refreshed line; else log every 30 s. */
ls_status *ls_status_new(int tty);
void ls_status_free(ls_status *s); /* clears the line */

/* 1 when it is time to show the figures again (now: ls_mono_ms()). */
int ls_status_due(const ls_status *s, double now);
void ls_status_show(ls_status *s, const ls_status_sample *x, double now);

#endif
