/* log.h - one JSON line per request and per notable event, on stderr.
 *
 * Lines are written whole (one write per line), so lines from different
 * threads never interleave. Nothing secret is ever passed here: callers log
 * names, ids, keys and codes, never tokens, keys or signed URLs. */
#ifndef RESIZER_LOG_H
#define RESIZER_LOG_H

#include <jansson.h>

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

/* Sets the lowest level written (default LOG_INFO). */
void log_set_level(enum log_level level);

/* 1 when lines of this level are written. */
int log_enabled(enum log_level level);

/* Parses "debug", "info", "warn", "error"; -1 for anything else. */
int log_level_parse(const char *s);

/* Writes {"time","level","event",...fields}. fields is stolen (may be NULL). */
void log_fields(enum log_level level, const char *event, json_t *fields);

/* Writes {"time","level","event","msg"} with msg printf-formatted. */
void log_printf(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* s as a JSON string for a log field, never NULL for a non-NULL s (NULL
 * gives JSON null): bytes that are not valid UTF-8 (jansson refuses them,
 * which would drop the whole line) are written as the text \xNN. */
json_t *log_string(const char *s);

#ifdef RESIZER_UNITTEST
/* Redirects lines to fd (default 2); in the unit-test core only. */
void log_set_fd(int fd);
#endif

#endif
