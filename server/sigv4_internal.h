/* sigv4_internal.h - the steps of sigv4.c, visible to unit tests only.
 *
 * Each step builds one line (or block) of the canonical request, so a test
 * can compare it with a golden file and point at the step that is wrong. */
#ifndef RESIZER_SIGV4_INTERNAL_H
#define RESIZER_SIGV4_INTERNAL_H

#include "buf.h"
#include "sigv4.h"

/* Everything one signing run builds; every pointer is owned by the struct
 * and released by sigv4_parts_cleanup() (safe on a zeroed struct). */
struct sigv4_parts {
    char amz_date[17]; /* 20130524T000000Z */
    char *scope;       /* 20130524/us-east-1/s3/aws4_request */
    char *canonical_uri;
    char *canonical_query;   /* also the URL's query string for presigning */
    char *canonical_headers; /* "name:value\n" per header */
    char *signed_headers;    /* host;x-amz-date */
    char *canonical_request;
    char *string_to_sign;
    char signature[65];
};

#ifdef RESIZER_UNITTEST

/* Removes "." and ".." segments and empty segments ("//") from path, which
 * starts with '/', the way the generic SigV4 suite (and botocore) does.
 * Appends the result to out. */
enum rz_err sigv4_normalize_path(const char *path, struct buf *out);

/* Appends the canonical URI of the raw path: normalised when normalize,
 * then percent-encoded once (S3) or twice (double_encode). */
enum rz_err sigv4_canonical_uri(const char *path, int double_encode, int normalize,
                                struct buf *out);

/* Appends the canonical query string of n raw pairs (value NULL means ""):
 * names and values encoded, sorted by name then value, joined with '&'. */
enum rz_err sigv4_canonical_query(const struct sigv4_pair *q, size_t n, struct buf *out);

/* Appends "name:value\n" per header to canon_out and "a;b;c" to signed_out:
 * names lowercased, values trimmed with inner runs of blanks collapsed,
 * sorted by name, repeated names joined with ','. RZ_EINVAL for a name
 * that is not an HTTP token or a value with control characters. */
enum rz_err sigv4_canonical_headers(const struct sigv4_pair *h, size_t n, struct buf *canon_out,
                                    struct buf *signed_out);

/* Appends "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(creq)>". */
enum rz_err sigv4_string_to_sign(const char *amz_date, const char *scope, const char *creq,
                                 struct buf *out);

/* The HMAC chain: "AWS4"+secret -> date8 -> region -> service -> "aws4_request".
 * The caller wipes key_out with OPENSSL_cleanse when done. */
enum rz_err sigv4_signing_key(const char *secret, const char *date8, const char *region,
                              const char *service, unsigned char key_out[32]);

/* Lookups of the signing key cache since the last sigv4_key_cache_clear():
 * found, and derived. */
void sigv4_key_cache_stats(unsigned long long *hits_out, unsigned long long *misses_out);

/* Runs every step for req. expires > 0 presigns (X-Amz-* parameters in the
 * query, UNSIGNED-PAYLOAD); expires == 0 signs for the Authorization header
 * (x-amz-date and x-amz-security-token become signed headers). */
enum rz_err sigv4_build(const struct sigv4_request *req, const struct sigv4_creds *creds,
                        time_t now, long expires, struct sigv4_parts *out);

void sigv4_parts_cleanup(struct sigv4_parts *p);

#endif /* RESIZER_UNITTEST */

#endif
