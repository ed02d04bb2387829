/* errlog.h - error lines without floods.
 *
 * A bad deployment can fail on every record: the log should then say once
 * what is wrong, and how often, not repeat it a million times. app.c asks
 * ls_errlog_admit before logging a record's error; the first occurrence of
 * each distinct error (compared by its text, digits ignored, so offsets and
 * values in the message do not make every line distinct) in an interval is
 * logged, later ones are counted, and when the interval ends one line per
 * repeated error gives the count. */
#ifndef LS_ERRLOG_H
#define LS_ERRLOG_H

typedef struct ls_errlog ls_errlog;

ls_errlog *ls_errlog_new(double interval_ms);
void ls_errlog_free(ls_errlog *e);

/* 1: log this error now; 0: it was logged in this interval, counted. */
int ls_errlog_admit(ls_errlog *e, const char *text);

/* Logs the counts of the errors repeated in an interval that has ended
 * (every one with force), and starts a new interval. Call it now and then. */
void ls_errlog_flush(ls_errlog *e, int force);

#endif
