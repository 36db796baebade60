/* text.h - small string helpers the modules share: copying an optional
 * string, undoing percent-encoding, taking the quotes off an ETag. */
#ifndef RESIZER_TEXT_H
#define RESIZER_TEXT_H

#include <stddef.h>

#include "err.h"

/* *out = a copy of src (the caller frees it), or NULL when src is NULL.
 * RZ_ENOMEM leaves *out NULL. */
enum rz_err text_dup(const char *src, char **out);

/* Undoes percent-encoding; form != 0 also turns '+' into a space (S3 event
 * keys and encoding-type=url listings are form-encoded). NULL when s is
 * NULL, an escape is malformed or decodes to NUL (which would cut a key
 * short wherever it is used as a C string), or memory runs out. The caller
 * frees the result. */
char *text_url_decode(const char *s, int form);

/* The span s[0..*len) without one pair of surrounding double quotes, as
 * S3 quotes ETags in headers, listings and events: returns the new start
 * and shortens *len. Anything else is returned as it is. */
const char *text_unquote(const char *s, size_t *len);

#endif
