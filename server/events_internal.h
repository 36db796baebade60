/* events_internal.h - steps of events.c that unit tests call directly. */
#ifndef RESIZER_EVENTS_INTERNAL_H
#define RESIZER_EVENTS_INTERNAL_H

#ifdef RESIZER_UNITTEST

#include <stddef.h>

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF), else 0. */
int events_utf8_valid(const char *s, size_t len);

/* 1 if no '[' or '{' outside a JSON string in body[0..len) opens deeper
 * than limit levels, else 0. Malformed JSON is left to the parser. */
int events_depth_ok(const char *body, size_t len, size_t limit);

/* Parses an eventVersion "MAJOR" or "MAJOR.MINOR" (digits only) into
 * *major and *minor. 0 on success, -1 if s has any other form. */
int events_parse_version(const char *s, long *major, long *minor);

/* 1 if name is a bucket name S3 could have issued (1..255 bytes of
 * A-Z a-z 0-9 . _ -, the legacy us-east-1 rules being the widest), else 0. */
int events_bucket_valid(const char *name);

#endif

#endif
