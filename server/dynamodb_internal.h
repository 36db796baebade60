/* dynamodb_internal.h - the steps of dynamodb.c, visible to unit tests and
 * the signing oracle's driver only (RESIZER_UNITTEST). */
#ifndef RESIZER_DYNAMODB_INTERNAL_H
#define RESIZER_DYNAMODB_INTERNAL_H

#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "dynamodb.h"
#include "sigv4.h"

#ifdef RESIZER_UNITTEST

/* 1 when op is an operation name DynamoDB could know: 1..64 ASCII letters
 * (it goes into a header, a signed string and a metrics label). */
int ddb_op_valid(const char *op);

/* The headers one request is sent with, signed for time now: Content-Type,
 * X-Amz-Target, x-amz-date, x-amz-security-token (when creds carry one),
 * Authorization, then an empty Expect (not signed: no 100-continue). The
 * list is curl's ("Name: value" lines); the caller frees it with
 * awshttp_headers_free, which wipes the signature and token. NULL with
 * *err_out set on failure. */
struct curl_slist *ddb_sign(const struct ddb *d, const char *op, const char *body, size_t len,
                            const struct sigv4_creds *creds, time_t now, enum rz_err *err_out);

/* The URL requests are POSTed to: scheme://host/. Borrowed from d. */
const char *ddb_url(const struct ddb *d);

/* Maps one answer (status, body) to an error; transport failures are not
 * seen here. *retry is set for transient failures; *body_out (may be NULL)
 * gets the parsed body for RZ_OK and RZ_ECONFLICT. msg says what failed. */
enum rz_err ddb_classify(long status, const char *body, size_t len, int *retry,
                         json_t **body_out, char *msg, size_t msglen);

#endif /* RESIZER_UNITTEST */

#endif
