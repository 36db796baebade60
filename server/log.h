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

/* Writes {"time","level","event",...fields}. fields is stolen (may be NULL);
 * reals print with the fewest digits that read back the same (0.61, not
 * 0.60999999999999999). */
void log_fields(enum log_level level, const char *event, json_t *fields);

/* Writes {"time","level","event","msg"} with msg printf-formatted. */
void log_printf(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* s as a JSON string for a log field, never NULL for a non-NULL s (NULL
 * gives JSON null): bytes that are not valid UTF-8 (jansson refuses them,
 * which would drop the whole line) are written as the text \xNN. */
json_t *log_string(const char *s);

/* A line built field by field, without a jansson object: for lines written
 * on every request. Lives on the caller's stack; longer lines move to the
 * heap. Usage: log_line_begin, any log_line_<type> calls, log_line_end
 * (always, it frees). When the level is off every call is a no-op. */
#define LOG_LINE_STACK 1024

struct log_line {
    char *data; /* stack, or the heap once the line outgrows it */
    size_t len;
    size_t cap;
    int off; /* level disabled, or the line was lost (too long, no memory) */
    char stack[LOG_LINE_STACK];
};

/* Starts {"time","level","event"}; returns 0 when the level is off. */
int log_line_begin(struct log_line *l, enum log_level level, const char *event);

/* Appends "key":value. value NULL is null; bytes that are not UTF-8 are
 * written as the text \xNN, as log_string() does. Keys are the caller's
 * constants. */
void log_line_str(struct log_line *l, const char *key, const char *value);
void log_line_int(struct log_line *l, const char *key, long long value);
/* Shortest round-trip text ("0.61"); null when not finite. */
void log_line_num(struct log_line *l, const char *key, double value);
void log_line_bool(struct log_line *l, const char *key, int value);
/* Any JSON value (borrowed), reals as log_line_num writes them. */
void log_line_json(struct log_line *l, const char *key, const json_t *value);

/* Writes the line (one write) and releases what it holds. */
void log_line_end(struct log_line *l);

#ifdef RESIZER_UNITTEST
/* Redirects lines to fd (default 2); in the unit-test core only. */
void log_set_fd(int fd);
#endif

#endif
