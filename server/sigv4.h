/* sigv4.h - AWS Signature Version 4, as S3 wants it.
 *
 * Pure computation: no I/O, no clock (time is a parameter); the one
 * global is a small cache of derived signing keys (sigv4_key_cache_clear).
 * Three uses: query presigning (client PUT/GET URLs), header signing (the
 * service's own S3 calls) and POST policy signing (browser form uploads).
 * Facts and vectors: tests/vectors/README.md. */
#ifndef RESIZER_SIGV4_H
#define RESIZER_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "err.h"

/* Borrowed for the duration of a call. session_token is NULL when the
 * credentials are long-term. */
struct sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *session_token;
};

/* A name/value pair, raw (not percent-encoded). */
struct sigv4_pair {
    const char *name;
    const char *value;
};

/* What is signed. Every string is borrowed. */
struct sigv4_request {
    const char *method; /* "GET", "PUT", ... */
    const char *scheme; /* "https" or "http"; used only to build URLs */
    const char *host;   /* Host header value, with ":port" when not the scheme's default */
    const char *path;   /* raw path starting with '/', e.g. "/bucket/images/a b.jpg" */
    const struct sigv4_pair *query; /* raw query parameters, any order */
    size_t nquery;
    const struct sigv4_pair *headers; /* extra headers to sign (host is always added) */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *region;       /* e.g. "us-east-1" */
    const char *service;      /* "s3" */
    /* The generic aws-sig-v4-test-suite encodes the path twice and
     * normalises it; S3 does neither. Both 0 for S3. */
    int double_encode_path;
    int normalize_path;
};

/* Result of header signing; every field is owned by the struct. */
struct sigv4_signed {
    char *authorization;  /* value of the Authorization header */
    char *amz_date;       /* value of x-amz-date, e.g. "20130524T000000Z" */
    char *signed_headers; /* e.g. "host;x-amz-content-sha256;x-amz-date" */
    char *signature;      /* 64 lowercase hex */
};

#define SIGV4_MAX_EXPIRES 604800 /* seven days: S3's limit for X-Amz-Expires */

/* Presigns req for the query string (X-Amz-* parameters, signature last)
 * and returns the whole URL, scheme://host/encoded-path?query, in *url_out,
 * which the caller frees. req->payload_hash is ignored ("UNSIGNED-PAYLOAD").
 * expires is 1..SIGV4_MAX_EXPIRES, else RZ_EINVAL. */
enum rz_err sigv4_presign_url(const struct sigv4_request *req, const struct sigv4_creds *creds,
                              time_t now, long expires, char **url_out);

/* Signs req with the Authorization header. The caller must send, besides
 * the headers in req: Authorization, x-amz-date and, when the credentials
 * carry one, x-amz-security-token (all three are signed here; the caller
 * must not list x-amz-date or x-amz-security-token in req->headers). For
 * S3, req->headers should include x-amz-content-sha256 = payload_hash.
 * On success fills *out, to be released with sigv4_signed_cleanup(). */
enum rz_err sigv4_sign_headers(const struct sigv4_request *req, const struct sigv4_creds *creds,
                               time_t now, struct sigv4_signed *out);

/* Frees what sigv4_sign_headers put in *s; safe on a zeroed struct. */
void sigv4_signed_cleanup(struct sigv4_signed *s);

/* Signs a browser POST policy: policy_b64 is the base64 of the policy JSON
 * (which is the string to sign). Writes 64 lowercase hex + NUL to sig_out. */
enum rz_err sigv4_sign_policy(const char *policy_b64, const struct sigv4_creds *creds,
                              const char *region, const char *service, time_t now,
                              char sig_out[65]);

/* "AKID/20130524/us-east-1/s3/aws4_request" for creds at time now; caller
 * frees. NULL for a bad access key, region, service or time, or no memory. */
char *sigv4_credential_scope(const char *access_key, const char *region, const char *service,
                             time_t now);

/* "20130524T000000Z" for now, into out (at least 17 bytes). A time before
 * 1970 or after 9999 gives "" (every signing call refuses it: RZ_EINVAL). */
void sigv4_amz_date(time_t now, char out[17]);

/* Percent-encodes s as SigV4 wants (unreserved A-Za-z0-9-_.~ kept, '/' kept
 * when keep_slash, everything else %XX uppercase). Caller frees. NULL when
 * out of memory or when 3 * len would pass 256 KiB, the signer's text cap. */
char *sigv4_uri_encode(const char *s, size_t len, int keep_slash);

/* Wipes every signing key kept by the signing calls (they keep one per
 * secret, day, region and service, known by a hash of the secret, so a new
 * secret never reuses an old key). For shutdown; thread-safe. */
void sigv4_key_cache_clear(void);

/* Lowercase hex SHA-256 of data into out (65 bytes with the NUL). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
