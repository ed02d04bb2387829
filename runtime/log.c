/* log.c - log lines on stderr and the two clocks (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ls_log_level current_level = LS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static int status_line;

void ls_log_set_status_line(int on) { status_line = on; }
int ls_log_get_status_line(void) { return status_line; }

void ls_log_set_level(ls_log_level level) { current_level = level; }
ls_log_level ls_log_get_level(void) { return current_level; }

int ls_log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

void ls_log(ls_log_level level, const char *fmt, ...) {
  if (level < current_level) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char line[4096];
  int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s ", tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  /* One write per line, so lines from librdkafka's threads do not interleave. */
  fprintf(stderr, "%s%s\n", status_line ? "\r\033[K" : "", line);
}

double ls_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)(ts.tv_nsec / 1000000);
}

double ls_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
