/* log.h - the runtime's log lines on stderr.
 *
 * Every subsystem reports through ls_log(); lines carry a wall-clock time and a
 * level, so they read well both in a terminal and in a container's log. */
#ifndef LS_LOG_H
#define LS_LOG_H

typedef enum { LS_LOG_DEBUG, LS_LOG_INFO, LS_LOG_WARN, LS_LOG_ERROR } ls_log_level;

void ls_log_set_level(ls_log_level level);
ls_log_level ls_log_get_level(void);
/* Parses "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int ls_log_parse_level(const char *name);
void ls_log(ls_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "text" (default): "HH:MM:SS.mmm level message"; "json": one object per line,
 * {"time":"2026-12-03T10:00:00.123Z","level":"info","msg":"..."}, for log
 * shippers. Returns 0, or -1 for an unknown format. */
int ls_log_set_format(const char *name);
int ls_log_is_json(void);
/* A status line is drawn on stderr (status.c): each log line erases it first. */
void ls_log_set_status_line(int on);
int ls_log_get_status_line(void);

#define ls_debug(...) ls_log(LS_LOG_DEBUG, __VA_ARGS__)
#define ls_info(...) ls_log(LS_LOG_INFO, __VA_ARGS__)
#define ls_warn(...) ls_log(LS_LOG_WARN, __VA_ARGS__)
#define ls_error(...) ls_log(LS_LOG_ERROR, __VA_ARGS__)

/* Milliseconds: wall clock (for timestamps) and monotonic (for intervals). */
double ls_now_ms(void);
double ls_mono_ms(void);

#endif
