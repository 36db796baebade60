/* buf.h - a growable byte buffer with a hard size cap.
 *
 * Every buffer that holds outside input (request bodies, S3 responses) or
 * text we build from it (canonical requests, JSON) is one of these, so no
 * input can grow memory past the cap its owner chose. The data is always
 * NUL-terminated (the NUL is not counted in len), so text can be used as a
 * C string directly. */
#ifndef RESIZER_BUF_H
#define RESIZER_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "err.h"

struct buf {
    char *data; /* NULL until the first append */
    size_t len; /* bytes used, not counting the trailing NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* len may never exceed this */
};

/* Sets up an empty buffer that may hold at most max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes. RZ_ETOOBIG if len would pass max (b is left unchanged),
 * RZ_ENOMEM if allocation fails. */
enum rz_err buf_append(struct buf *b, const void *p, size_t n);

/* The capacity an empty buffer grows to while n bytes are appended to it
 * (the allocation, NUL included), whatever the pieces: for callers that
 * account for memory before it is used. */
size_t buf_capacity_for(size_t n);

/* Appends a C string. Same errors as buf_append. */
enum rz_err buf_appends(struct buf *b, const char *s);

/* Appends printf-formatted text. Same errors as buf_append. */
enum rz_err buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* Returns the NUL-terminated data and leaves b empty; the caller frees the
 * result with free(). Never NULL unless allocation fails. */
char *buf_steal(struct buf *b);

/* Frees the data; b may be reused after buf_init. Safe on a zeroed buf. */
void buf_cleanup(struct buf *b);

#endif
