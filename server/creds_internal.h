/* creds_internal.h - limits of creds.c and the internal steps unit tests
 * call. Not part of the contract: the prototypes exist only with
 * RESIZER_UNITTEST. */
#ifndef RESIZER_CREDS_INTERNAL_H
#define RESIZER_CREDS_INTERNAL_H

#include <stddef.h>
#include <time.h>

#include "creds.h"
#include "err.h"

/* Refresh when the cached credentials expire within this many seconds. */
#define CREDS_REFRESH_MARGIN (5 * 60)
/* After a failed refresh, a still-valid cache is used without asking the
 * endpoint again for this many seconds, so an outage does not stall every
 * caller for the full fetch timeout. */
#define CREDS_FAIL_BACKOFF 10
/* Cap on the endpoint's response body (a real one is about 1.5 KiB). */
#define CREDS_MAX_RESPONSE (64 * 1024)
/* Cap on AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (EKS tokens are ~1 KiB). */
#define CREDS_MAX_TOKEN_FILE (16 * 1024)

#ifdef RESIZER_UNITTEST

/* Checks AWS_CONTAINER_CREDENTIALS_FULL_URI: https anywhere; http only to
 * 127.0.0.0/8, [::1], localhost, 169.254.170.2, 169.254.170.23 or
 * [fd00:ec2::23]. On RZ_OK *url_out is the URL as libcurl normalised it
 * (caller frees); RZ_EINVAL with msg saying why otherwise. */
enum rz_err creds_check_full_uri(const char *uri, char **url_out, char *msg, size_t msglen);

/* The endpoint URL for src: relative_uri (must start with '/') appended to
 * http://169.254.170.2, else the checked full_uri. Caller frees *url_out. */
enum rz_err creds_endpoint_url(const struct creds_source *src, char **url_out, char *msg,
                               size_t msglen);

/* Parses the container endpoint's JSON body into *out (caller cleans up).
 * RZ_ETOOBIG over CREDS_MAX_RESPONSE; RZ_EINVAL for a bad shape, a
 * missing/mistyped/empty field or a bad Expiration. *out is zeroed on error. */
enum rz_err creds_parse_json(const char *data, size_t len, struct creds_snapshot *out);

/* Reads a token file: at most 16 KiB, surrounding whitespace trimmed,
 * non-empty, no control characters. Caller wipes and frees *token_out. */
enum rz_err creds_read_token_file(const char *path, char **token_out);

#endif /* RESIZER_UNITTEST */

#endif
