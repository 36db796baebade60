/* dynamodb.h - the DynamoDB JSON protocol over the AWS transport (awshttp.h).
 *
 * One call is one operation: POST / with X-Amz-Target
 * DynamoDB_20120810.<Op> and the request as application/x-amz-json-1.0,
 * signed for service "dynamodb" with fresh credentials. Throttling, 5xx
 * and transport failures are retried with exponential backoff and full
 * jitter, a bounded number of times; other 4xx are final. Answers are
 * untrusted: capped in size, parsed as JSON, required to be objects.
 *
 * struct ddb is thread-safe: workers and HTTP threads call ddb_call
 * concurrently; the transport keeps idle connections for reuse. */
#ifndef RESIZER_DYNAMODB_H
#define RESIZER_DYNAMODB_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "creds.h"
#include "err.h"
#include "metrics.h"

struct ddb;
struct awshttp;

struct ddb_opts {
    const char *endpoint;         /* NULL or "": https://dynamodb.<region>.amazonaws.com */
    const char *region;           /* required, e.g. "eu-west-1" */
    struct creds_provider *creds; /* borrowed, must outlive the client; unused with a
                                      transport */
    long timeout_ms;              /* whole request, per attempt; <= 0: 10000 */
    long connect_timeout_ms;      /* <= 0: 2000 */
    int max_attempts;             /* <= 0: 4 */
    long backoff_base_ms;         /* first retry waits up to this, doubling; <= 0: 50 */
    struct metrics *metrics;      /* borrowed; NULL for none; unused with a transport */
    struct awshttp *transport;    /* borrowed, shared with the S3 client; NULL: ddb_new
                                      makes one of its own from creds and metrics */
};

/* Largest answer accepted (DynamoDB's own are at most a few MB: a Query
 * page holds 1 MB of items); more is RZ_EUPSTREAM. */
#define DDB_MAX_RESPONSE (8 * 1024 * 1024)
/* Largest request sent (an item is at most 400 KB); more is RZ_ETOOBIG. */
#define DDB_MAX_REQUEST (4 * 1024 * 1024)

/* Builds a client. RZ_EINVAL with msg when the region is missing or the
 * endpoint cannot be parsed. Fetches nothing yet. Free with ddb_free. */
enum rz_err ddb_new(const struct ddb_opts *o, struct ddb **out, char *msg, size_t msglen);

/* NULL is a no-op. No call may be in flight. */
void ddb_free(struct ddb *d);

/* POSTs one operation ("PutItem", "UpdateItem", "GetItem", "Query",
 * "DeleteItem", "CreateTable", "UpdateTimeToLive", "DescribeTable", ...).
 * request is borrowed; *response_out (may be NULL when the caller wants no
 * answer) is a new reference owned by the caller, NULL on error except:
 *   RZ_OK        the answer, a JSON object;
 *   RZ_ECONFLICT ConditionalCheckFailedException, or a
 *                TransactionCanceledException whose reasons include
 *                ConditionalCheckFailed; *response_out holds the error body
 *                (with "Item" when ReturnValuesOnConditionCheckFailure=ALL_OLD);
 *   RZ_ENOTFOUND ResourceNotFoundException (no such table or index);
 *   RZ_EUPSTREAM throttling (ProvisionedThroughputExceededException,
 *                ThrottlingException, RequestLimitExceeded), 5xx, transport
 *                errors and unusable answers, after bounded retries;
 *   RZ_EINVAL    any other 4xx, or op is not a plain operation name;
 *   RZ_ETOOBIG   the request is over DDB_MAX_REQUEST.
 * msg (may be NULL) gets the error's __type and, unless it concerns
 * authentication, DynamoDB's message; never credentials.
 * A call takes at most max_attempts * timeout_ms plus the waits between
 * (each at most 2 s). A write retried after a lost answer may meet its own
 * first attempt: a conditional write then answers RZ_ECONFLICT although it
 * took effect, so callers compare the item in the error body with what
 * they wrote. */
enum rz_err ddb_call(struct ddb *d, const char *op, const json_t *request, json_t **response_out,
                     char *msg, size_t msglen);

/* ddb_call for callers that build a request to send once: takes req
 * (NULL, from a failed json_pack, is RZ_ENOMEM), and logs a failure other
 * than RZ_ECONFLICT as a warning named event, with DynamoDB's message. */
enum rz_err ddb_send(struct ddb *d, const char *op, json_t *req, json_t **response_out,
                     const char *event);

/* Attribute values of DynamoDB's JSON: {"S": s} and {"N": "n"}, new
 * references (NULL when out of memory, which json_pack then reports). */
json_t *ddb_s(const char *s);
json_t *ddb_n(int64_t n);
/* The string or the number of item[name]; NULL or 0 when absent or of
 * another type. Numbers past int64 saturate (strtoll): callers bound them. */
const char *ddb_get_s(const json_t *item, const char *name);
int64_t ddb_get_n(const json_t *item, const char *name);

#endif
