/* awshttp.h - the one transport every AWS call of the service goes through.
 *
 * One call: fresh credentials -> SigV4 headers -> libcurl -> classify ->
 * maybe again after a jittered, doubling wait, under a policy the caller
 * picks per call (timeouts, attempts, backoff). The transport knows HTTP,
 * SigV4 and what a failed transfer means; what an answer means (S3's XML
 * error codes, DynamoDB's JSON "__type") the service says through its
 * classify callback. Answers go into capped buffers, so no server can grow
 * memory past what the caller allowed. Header lines that carry a signature
 * or a session token are wiped before they are freed.
 *
 * struct awshttp is shared and thread-safe: credentials, metrics and a
 * small pool of idle curl handles (connections are reused). A struct
 * awshttp_conn is one curl handle, used by one thread at a time. */
#ifndef RESIZER_AWSHTTP_H
#define RESIZER_AWSHTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "buf.h"
#include "creds.h"
#include "err.h"
#include "metrics.h"
#include "sigv4.h"

#define AWSHTTP_MAX_HEADERS 16 /* signed headers of one request */

struct awshttp;
struct awshttp_conn;

/* scheme://host[:port] of a service, as signed and sent. */
struct awshttp_endpoint {
    char *scheme; /* "http" or "https" */
    char *host;   /* host[:port], the port only when not the scheme's default */
};

/* How hard one call tries. The whole call takes at most max_attempts *
 * timeout_ms plus the waits between attempts (each at most backoff_cap_ms). */
struct awshttp_policy {
    long timeout_ms; /* whole attempt */
    long connect_timeout_ms;
    int max_attempts;     /* < 1 counts as 1 */
    long backoff_base_ms; /* the first retry waits up to this, doubling ... */
    long backoff_cap_ms;  /* ... but never more than this */
};

/* What one attempt brought back. */
struct awshttp_response {
    long status;        /* 0 when no answer came */
    struct buf body;    /* capped: max_response for 2xx, at least max_error else */
    char *etag;         /* ETag without its quotes; NULL if none */
    char *content_type; /* NULL if none */
    uint64_t content_length;
    int too_big; /* a 2xx body over max_response was cut off */
};

/* One request, borrowed by awshttp_call for the call only. */
struct awshttp_request {
    const char *service; /* signing name: "s3", "dynamodb" */
    const char *label;   /* in messages: "S3", "DynamoDB" */
    const char *metric;  /* resizer_<metric>_requests_total, ..._duration_seconds */
    const char *op;      /* metrics label: "GetObject", "PutItem" */
    const char *region;
    const char *method;
    const char *scheme;
    const char *host; /* host[:port] as signed */
    const char *path; /* raw, starting with '/'; encoded once when sent */
    const struct sigv4_pair *query;
    size_t nquery;
    const struct sigv4_pair *headers; /* signed and sent (at most AWSHTTP_MAX_HEADERS - 1) */
    size_t nheaders;
    const void *body;
    size_t body_len;
    int content_sha256;    /* also send x-amz-content-sha256 (S3 wants it) */
    size_t max_response;   /* cap on a 2xx body; a HEAD has none */
    size_t max_error;      /* cap on an error body */
    const char *body_name; /* a 2xx over the cap is "<body_name> is larger than N bytes" */
    const int *abort;      /* NULL, or a flag (read atomically): once set, no attempt
                                starts and a transfer in flight is cut within about 1 s */
    /* Maps an answer (a transfer that completed) to an error. *retry set
     * means transient (throttling, 5xx, clock skew, ...). msg says why. */
    enum rz_err (*classify)(const struct awshttp_response *r, void *arg, int *retry, char *msg,
                            size_t msglen);
    void *classify_arg;
};

struct awshttp_opts {
    struct creds_provider *creds; /* borrowed, must outlive the transport */
    struct metrics *metrics;      /* borrowed; NULL for none */
};

/* Builds a transport; fetches nothing yet. RZ_ENOMEM. Free with awshttp_free. */
enum rz_err awshttp_new(const struct awshttp_opts *o, struct awshttp **out);

/* given when a caller passed one (*owned_out = 0), else a new transport
 * over o (*owned_out = 1: the caller frees it). For clients that accept
 * an optional shared transport. RZ_ENOMEM. */
enum rz_err awshttp_new_unless(struct awshttp *given, const struct awshttp_opts *o,
                               struct awshttp **out, int *owned_out);

/* NULL is a no-op. Every connection must be back (awshttp_conn_put) first. */
void awshttp_free(struct awshttp *t);

/* The credentials calls are signed with (for presigning). Borrowed. */
struct creds_provider *awshttp_creds(const struct awshttp *t);

/* Registers the two metric families of one service (counter
 * resizer_<metric>_requests_total by op and outcome, histogram
 * resizer_<metric>_request_duration_seconds by op); registering the same
 * family twice is fine. RZ_OK without metrics. */
enum rz_err awshttp_register(struct awshttp *t, const char *metric, const char *label,
                             const double *buckets, size_t nbuckets);

/* An idle connection from the pool, or a new one; NULL if out of memory.
 * Give it back with awshttp_conn_put. */
struct awshttp_conn *awshttp_conn_get(struct awshttp *t);

/* Back to the pool, keeping its connection (or freed when the pool is
 * full). NULL is a no-op. */
void awshttp_conn_put(struct awshttp *t, struct awshttp_conn *c);

/* Sends req under policy p on connection c (NULL: one from the pool for
 * this call), retrying what is transient. *resp is set up here and holds
 * the last attempt's answer; release it with awshttp_response_cleanup
 * whatever the result. Besides what classify returns: RZ_EUPSTREAM when
 * aborted, unreachable ("<label> unreachable: <curl's reason>") or unable
 * to sign (no credentials), RZ_ETOOBIG for a 2xx body over max_response,
 * RZ_ENOMEM. msg (may be NULL) says what failed, never a secret. */
enum rz_err awshttp_call(struct awshttp *t, struct awshttp_conn *c,
                         const struct awshttp_request *req, const struct awshttp_policy *p,
                         struct awshttp_response *resp, char *msg, size_t msglen);

/* Frees what an answer holds; safe on a zeroed struct. */
void awshttp_response_cleanup(struct awshttp_response *r);

/* The header list req is sent with, signed for time now: its headers
 * (after x-amz-content-sha256 when req asks for it), x-amz-date,
 * x-amz-security-token when creds carry one, Authorization, and an empty
 * Expect (not signed: no 100-continue round trip). NULL with *err_out set
 * on failure. Free with awshttp_headers_free, which wipes it. */
struct curl_slist *awshttp_sign(const struct awshttp_request *req,
                                const struct sigv4_creds *creds, time_t now,
                                enum rz_err *err_out);

/* Wipes every line (signatures, session tokens) and frees the list. NULL
 * is a no-op. */
void awshttp_headers_free(struct curl_slist *list);

/* scheme://host + path (encoded once) + ?query (names and values encoded),
 * appended to url. */
enum rz_err awshttp_url_build(const char *scheme, const char *host, const char *path,
                              const struct sigv4_pair *query, size_t nquery, struct buf *url);

/* Parses an http(s) URL with no path ("/" allowed). RZ_EINVAL with msg
 * when it is not one; RZ_ENOMEM. Release with awshttp_endpoint_cleanup. */
enum rz_err awshttp_endpoint_parse(const char *url, struct awshttp_endpoint *ep, char *msg,
                                   size_t msglen);

/* Frees the strings; safe on a zeroed or partly filled struct. */
void awshttp_endpoint_cleanup(struct awshttp_endpoint *ep);

/* The wait before retry number attempt (1, 2, ...): uniform in
 * [0, min(base_ms * 2^attempt, cap_ms)] (full jitter), so replicas retrying
 * the same outage spread out instead of stampeding. */
long awshttp_backoff_ms(long base_ms, long cap_ms, int attempt);

/* Sleeps ms milliseconds, resuming after signals. */
void awshttp_sleep_ms(long ms);

/* Monotonic seconds, for latency metrics and deadlines. */
double awshttp_now_secs(void);

#endif
