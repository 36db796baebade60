/* log.c - JSON lines on stderr. */
#include "log.h"

#include "timefmt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_min_level = LOG_INFO;
static int log_fd = 2;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    __atomic_store_n(&log_min_level, (int)level, __ATOMIC_RELAXED);
}

int log_enabled(enum log_level level)
{
    return (int)level >= __atomic_load_n(&log_min_level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(s, log_level_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

#ifdef RESIZER_UNITTEST
void log_set_fd(int fd)
{
    log_fd = fd;
}
#endif

static void log_timestamp(char out[TIMEFMT_MAX])
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    timefmt_iso_ms((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, out);
}

/* One write() per line: POSIX makes writes to a pipe of up to PIPE_BUF
 * atomic, and longer lines still go out in one call in practice. */
static void log_write_line(const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log_fd, s, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

/* Writes text plus its newline in one write, then frees text (may be NULL). */
static void log_emit(char *text)
{
    size_t len;
    char *line;

    if (!text)
        return;
    len = strlen(text);
    line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    log_write_line(line, len + 1);
    free(line);
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. */
static size_t log_utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned int cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

json_t *log_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out;
    size_t o = 0;
    json_t *j;

    if (!s)
        return json_null();
    j = json_string(s);
    if (j)
        return j;
    out = malloc(strlen(s) * 4 + 1);
    if (!out)
        return json_string("(unloggable)");
    while (*p) {
        size_t n = log_utf8_len(p);

        if (n == 0) {
            snprintf(out + o, 5, "\\x%02x", *p);
            o += 4;
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
    j = json_string(out);
    free(out);
    return j ? j : json_string("(unloggable)");
}

void log_fields(enum log_level level, const char *event, json_t *fields)
{
    char ts[TIMEFMT_MAX];
    json_t *line;
    char *text;

    if (!log_enabled(level)) {
        json_decref(fields);
        return;
    }
    log_timestamp(ts);
    line = json_object();
    if (!line) {
        json_decref(fields);
        return;
    }
    json_object_set_new(line, "time", json_string(ts));
    json_object_set_new(line, "level", json_string(log_level_names[level]));
    json_object_set_new(line, "event", json_string(event));
    if (fields)
        json_object_update(line, fields);
    json_decref(fields);
    text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    log_emit(text);
}

void log_printf(enum log_level level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fields(level, event, json_pack("{s:o}", "msg", log_string(msg)));
}
