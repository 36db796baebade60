/* buf.c - growable byte buffer with a size cap. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

/* Doubling from 64: the growth policy, in one place. */
static size_t buf_grow(size_t cap, size_t want)
{
    cap = cap ? cap : 64;
    while (cap < want)
        cap = cap > ((size_t)-1) / 2 ? want : cap * 2;
    return cap;
}

size_t buf_capacity_for(size_t n)
{
    return n ? buf_grow(0, n + 1) : 0;
}

static enum rz_err buf_reserve(struct buf *b, size_t n)
{
    size_t want;
    size_t cap;
    char *p;

    if (n > b->max || b->len > b->max - n)
        return RZ_ETOOBIG;
    want = b->len + n + 1;
    if (want <= b->cap)
        return RZ_OK;
    cap = buf_grow(b->cap, want);
    p = realloc(b->data, cap);
    if (!p)
        return RZ_ENOMEM;
    b->data = p;
    b->cap = cap;
    return RZ_OK;
}

enum rz_err buf_append(struct buf *b, const void *p, size_t n)
{
    enum rz_err err = buf_reserve(b, n);

    if (err != RZ_OK)
        return err;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return RZ_OK;
}

enum rz_err buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Formats straight into the spare room when the text fits (the common
 * case, so one pass); otherwise grows the buffer and formats again. */
enum rz_err buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    size_t room = b->cap - b->len; /* includes the NUL's byte; 0 before the first append */
    enum rz_err err;

    va_start(ap, fmt);
    n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RZ_EINVAL;
    if ((size_t)n < room && (size_t)n <= b->max - b->len) {
        b->len += (size_t)n;
        return RZ_OK;
    }
    if (room)
        b->data[b->len] = '\0'; /* undo a partial write: b stays as it was */
    err = buf_reserve(b, (size_t)n);
    if (err != RZ_OK)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return RZ_OK;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_steal(struct buf *b)
{
    char *p = b->data;

    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void buf_cleanup(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
