/* log.c - JSON lines on stderr.
 *
 * A line is written straight into a buffer on the caller's stack (the
 * request line is one per request: building a jansson object for it cost
 * more than the handler's own work), and doubles print as people read
 * them (numfmt). */
#include "log.h"

#include "numfmt.h"
#include "timefmt.h"

#include <errno.h>
#include <math.h>
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

/* ---- building a line ------------------------------------------------ */

/* Past this the line is dropped, not cut: half a JSON line helps nobody,
 * and the HTTP layer bounds what a request can put in one long before. */
#define LOG_LINE_MAX (1024 * 1024)

static void log_line_reserve(struct log_line *l, size_t n)
{
    size_t cap;
    char *p;

    if (l->off || l->len + n + 2 <= l->cap) /* room for the newline and NUL */
        return;
    if (l->len + n + 2 > LOG_LINE_MAX) {
        l->off = 1;
        return;
    }
    cap = l->cap * 2 > l->len + n + 2 ? l->cap * 2 : l->len + n + 2;
    p = l->data == l->stack ? malloc(cap) : realloc(l->data, cap);
    if (!p) {
        l->off = 1;
        return;
    }
    if (l->data == l->stack)
        memcpy(p, l->stack, l->len);
    l->data = p;
    l->cap = cap;
}

static void log_line_put(struct log_line *l, const char *s, size_t n)
{
    log_line_reserve(l, n);
    if (l->off)
        return;
    memcpy(l->data + l->len, s, n);
    l->len += n;
}

static void log_line_puts(struct log_line *l, const char *s)
{
    log_line_put(l, s, strlen(s));
}

/* s[0..n) as a JSON string: quotes, backslashes and control characters
 * escaped as JSON wants; bytes that are not valid UTF-8 become the text
 * \xNN (as log_string does), so no input can make the line invalid. */
static void log_line_quote(struct log_line *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    log_line_put(l, "\"", 1);
    while (i < n && !l->off) {
        size_t run = i;
        size_t u;

        /* Copy the longest stretch that needs nothing, in one go. */
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        log_line_put(l, s + i, run - i);
        i = run;
        if (i == n)
            break;
        if (p[i] == '"' || p[i] == '\\') {
            char esc[2] = {'\\', (char)p[i]};

            log_line_put(l, esc, 2);
            i++;
        } else if (p[i] < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[p[i] >> 4], hex[p[i] & 0xf]};

            log_line_put(l, esc, 6);
            i++;
        } else if ((u = log_utf8_len(p + i)) > 0 && i + u <= n) {
            log_line_put(l, s + i, u);
            i += u;
        } else {
            char esc[5] = {'\\', '\\', 'x', hex[p[i] >> 4], hex[p[i] & 0xf]};

            log_line_put(l, esc, 5);
            i++;
        }
    }
    log_line_put(l, "\"", 1);
}

/* ,"key": */
static void log_line_key(struct log_line *l, const char *key)
{
    log_line_put(l, ",", 1);
    log_line_quote(l, key, strlen(key));
    log_line_put(l, ":", 1);
}

int log_line_begin(struct log_line *l, enum log_level level, const char *event)
{
    char ts[TIMEFMT_MAX];

    l->data = l->stack;
    l->len = 0;
    l->cap = sizeof(l->stack);
    l->off = !log_enabled(level);
    if (l->off)
        return 0;
    log_timestamp(ts);
    log_line_puts(l, "{\"time\":\"");
    log_line_puts(l, ts);
    log_line_puts(l, "\",\"level\":\"");
    log_line_puts(l, log_level_names[level]);
    log_line_puts(l, "\"");
    log_line_key(l, "event");
    log_line_quote(l, event, strlen(event));
    return !l->off;
}

void log_line_str(struct log_line *l, const char *key, const char *value)
{
    if (l->off)
        return;
    log_line_key(l, key);
    if (value)
        log_line_quote(l, value, strlen(value));
    else
        log_line_puts(l, "null");
}

static void log_line_int_text(struct log_line *l, long long value)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", value);

    log_line_put(l, num, (size_t)n);
}

void log_line_int(struct log_line *l, const char *key, long long value)
{
    if (l->off)
        return;
    log_line_key(l, key);
    log_line_int_text(l, value);
}

/* A double as JSON: the shortest text that reads back the same, with ".0"
 * on a whole number (it stays a real to whoever parses it), null for NaN
 * and the infinities, which JSON cannot say. */
static void log_line_real(struct log_line *l, double value)
{
    char num[NUMFMT_MAX];
    int n;

    if (!isfinite(value)) {
        log_line_puts(l, "null");
        return;
    }
    n = numfmt_double(value, num);
    log_line_put(l, num, (size_t)n);
    if (!strpbrk(num, ".e"))
        log_line_put(l, ".0", 2);
}

void log_line_num(struct log_line *l, const char *key, double value)
{
    if (l->off)
        return;
    log_line_key(l, key);
    log_line_real(l, value);
}

void log_line_bool(struct log_line *l, const char *key, int value)
{
    if (l->off)
        return;
    log_line_key(l, key);
    log_line_puts(l, value ? "true" : "false");
}

/* Nesting deeper than this is written as null: log fields are flat or
 * nearly so, and a bound keeps the recursion's stack bounded. */
#define LOG_MAX_DEPTH 16

static void log_line_value(struct log_line *l, const json_t *v, int depth)
{
    const char *k;
    json_t *item;
    size_t i;
    int first = 1;

    if (depth > LOG_MAX_DEPTH || !v) {
        log_line_puts(l, "null");
        return;
    }
    switch (json_typeof(v)) {
    case JSON_STRING: log_line_quote(l, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: log_line_int_text(l, (long long)json_integer_value(v)); break;
    case JSON_REAL: log_line_real(l, json_real_value(v)); break;
    case JSON_TRUE: log_line_puts(l, "true"); break;
    case JSON_FALSE: log_line_puts(l, "false"); break;
    case JSON_OBJECT:
        log_line_put(l, "{", 1);
        json_object_foreach((json_t *)v, k, item)
        {
            if (!first)
                log_line_put(l, ",", 1);
            first = 0;
            log_line_quote(l, k, strlen(k));
            log_line_put(l, ":", 1);
            log_line_value(l, item, depth + 1);
        }
        log_line_put(l, "}", 1);
        break;
    case JSON_ARRAY:
        log_line_put(l, "[", 1);
        json_array_foreach(v, i, item)
        {
            if (i)
                log_line_put(l, ",", 1);
            log_line_value(l, item, depth + 1);
        }
        log_line_put(l, "]", 1);
        break;
    default: log_line_puts(l, "null");
    }
}

void log_line_json(struct log_line *l, const char *key, const json_t *value)
{
    if (l->off)
        return;
    log_line_key(l, key);
    log_line_value(l, value, 0);
}

void log_line_end(struct log_line *l)
{
    if (!l->off) {
        log_line_put(l, "}\n", 2);
        if (!l->off)
            log_write_line(l->data, l->len);
    }
    if (l->data != l->stack)
        free(l->data);
    l->data = l->stack;
    l->len = 0;
    l->off = 1;
}

void log_fields(enum log_level level, const char *event, json_t *fields)
{
    struct log_line l;
    const char *k;
    json_t *v;

    if (log_line_begin(&l, level, event) && json_is_object(fields)) {
        json_object_foreach(fields, k, v) log_line_json(&l, k, v);
    }
    log_line_end(&l);
    json_decref(fields);
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
