/* log.c - log lines on stderr and the two clocks (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static ls_log_level current_level = LS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static int status_line;
static int json_lines; /* --log-format json */

int ls_log_set_format(const char *name) {
  if (strcmp(name, "text") == 0) json_lines = 0;
  else if (strcmp(name, "json") == 0) json_lines = 1;
  else return -1;
  return 0;
}

int ls_log_is_json(void) { return json_lines; }

/* Appends s to out[*n..len) as the inside of a JSON string. */
static void json_escape(char *out, size_t len, size_t *n, const char *s) {
  for (; *s && *n + 8 < len; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') out[(*n)++] = '\\', out[(*n)++] = (char)c;
    else if (c == '\n') out[(*n)++] = '\\', out[(*n)++] = 'n';
    else if (c < 0x20) *n += (size_t)snprintf(out + *n, len - *n, "\\u%04x", c);
    else out[(*n)++] = (char)c;
  }
  out[*n] = 0;
}

static void log_json(ls_log_level level, const struct timespec *ts, const struct tm *tm,
                     const char *msg) {
  char line[8192];
  size_t n = (size_t)snprintf(line, sizeof line,
                              "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                              tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour,
                              tm->tm_min, tm->tm_sec, ts->tv_nsec / 1000000, level_names[level]);
  json_escape(line, sizeof line - 4, &n, msg);
  snprintf(line + n, sizeof line - n, "\"}");
  fprintf(stderr, "%s\n", line);
}

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
  int n = json_lines ? 0 : snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s ", tm.tm_hour,
                                    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (json_lines) {
    log_json(level, &ts, &tm, line);
    return;
  }
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
