/* sdnotify.h - telling a supervisor how the process is doing: systemd's
 * notification protocol (sd_notify(3)), written by hand on a Unix datagram
 * socket, so no libsystemd is linked.
 *
 * systemd (Type=notify) passes NOTIFY_SOCKET, and with WatchdogSec= also
 * WATCHDOG_USEC (and WATCHDOG_PID). Without NOTIFY_SOCKET every call here does
 * nothing. With it:
 *   READY=1 and a STATUS= line once start-up is done;
 *   WATCHDOG=1 (with STATUS= counts) from the loop, at most once per half of
 *   WATCHDOG_USEC, so a loop that stops turning stops the pings and the
 *   supervisor restarts the process;
 *   STOPPING=1 when the process begins its orderly stop.
 * Sending never blocks and never fails the caller: a supervisor that does not
 * listen any more costs a dropped datagram. */
#ifndef LS_SDNOTIFY_H
#define LS_SDNOTIFY_H

#include <stdint.h>

typedef struct ls_sdnotify ls_sdnotify;

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. Returns NULL when
 * there is no socket to notify (after a warning when NOTIFY_SOCKET is set but
 * unusable). name appears in the STATUS= lines. */
ls_sdnotify *ls_sdnotify_open(const char *name);

/* The watchdog interval asked for, in microseconds; 0 when none (or the
 * watchdog is meant for another process, WATCHDOG_PID). */
uint64_t ls_sdnotify_watchdog_usec(const ls_sdnotify *n);

/* READY=1, with a STATUS= line. */
void ls_sdnotify_ready(ls_sdnotify *n);

/* Once per turn of the loop (now: CLOCK_MONOTONIC ms): WATCHDOG=1 with a
 * STATUS= line of the counts when half the watchdog interval has passed since
 * the last ping (the first call pings). Returns 1 when it sent. */
int ls_sdnotify_tick(ls_sdnotify *n, double now_ms, long in_total, long out_total);

/* STOPPING=1, with a STATUS= line. */
void ls_sdnotify_stopping(ls_sdnotify *n);

/* Sends one notification (lines separated by '\n'); 0, or -1 when it could
 * not be sent. */
int ls_sdnotify_send(ls_sdnotify *n, const char *text);

/* Closes the socket; NULL is fine. */
void ls_sdnotify_close(ls_sdnotify *n);

/* Parses a WATCHDOG_USEC value: a decimal number of microseconds > 0.
 * Returns 0 and stores it, or -1. */
int ls_sdnotify_parse_usec(const char *s, uint64_t *out);

#endif
