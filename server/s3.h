/* s3.h - the S3 calls the service makes, signed with SigV4.
 *
 * struct s3 is shared and thread-safe (addressing, SSE, a retry policy);
 * struct s3_conn is one connection, used by one thread at a time, kept
 * alive between calls. Calls go through the AWS transport (awshttp.h):
 * transient failures (5xx, 429, SlowDown, RequestTimeout, clock skew,
 * timeouts, connection errors) are retried with exponential backoff and
 * full jitter, a bounded number of times; other 4xx are not retried.
 * Addressing is s3_addr.h, the listing parser s3_list.h, presigned URLs
 * s3_presign.c. */
#ifndef RESIZER_S3_H
#define RESIZER_S3_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "creds.h"
#include "err.h"
#include "metrics.h"

#define S3_MAX_FIELDS 12
#define S3_MAX_META 4

struct s3;
struct s3_conn;
struct awshttp;
struct awshttp_policy;

struct s3_opts {
    const char *endpoint; /* "https://s3.us-east-1.amazonaws.com", "http://127.0.0.1:8090" */
    const char *public_endpoint; /* for presigned URLs; NULL: endpoint */
    const char *region;
    int force_path_style;
    const char *sse;            /* NULL, "AES256" or "aws:kms" */
    const char *sse_kms_key_id; /* NULL: the bucket's default key */
    /* The client's retry policy (s3_view_new: another one over the same
     * client); waits between attempts are capped at 5 s. */
    long timeout_ms;              /* whole request, per attempt; <= 0: 30000 */
    long connect_timeout_ms;      /* <= 0: 3000 */
    int max_attempts;             /* <= 0: 4 */
    long backoff_base_ms;         /* first retry waits up to this, doubling; <= 0: 100 */
    struct creds_provider *creds; /* borrowed; unused with a transport */
    struct metrics *metrics;      /* borrowed; NULL for none; unused with a transport */
    struct awshttp *transport;    /* borrowed, shared with other clients (its credentials
                                     and metrics); NULL: s3_new makes one of its own from
                                     creds and metrics */
};

/* A name/value pair owned by the struct that holds it. */
struct s3_field {
    char *name;
    char *value;
};

/* What a client needs to make a presigned request. */
struct s3_presigned {
    char *url;
    struct s3_field fields[S3_MAX_FIELDS]; /* headers (PUT/GET) or form fields (POST) */
    size_t nfields;
    time_t expires_at;
};

/* An object read into memory. */
struct s3_object {
    void *data; /* malloc'd, len bytes (NUL-terminated for convenience) */
    size_t len;
    char *etag; /* without quotes */
    char *content_type;
};

/* HeadObject's answer. */
struct s3_head {
    uint64_t size;
    char *etag;
    char *content_type;
};

/* One page of ListObjectsV2. */
struct s3_list_item {
    char *key;
    uint64_t size;
    char *etag;
    time_t last_modified; /* 0 if S3 sent none */
};

struct s3_list {
    struct s3_list_item *items;
    size_t nitems;
    char *next_token; /* NULL on the last page */
};

/* Builds a client. RZ_EINVAL with msg when an endpoint cannot be parsed.
 * Frees with s3_free. */
enum rz_err s3_new(const struct s3_opts *opts, struct s3 **out, char *msg, size_t msglen);

/* A client over base's endpoints, SSE and transport whose calls follow
 * policy instead (probes: one short attempt; the sweep: its own abort
 * switch). base must outlive it. RZ_ENOMEM. Free with s3_free. */
enum rz_err s3_view_new(const struct s3 *base, const struct awshttp_policy *policy,
                        struct s3 **out);

/* NULL is a no-op. All connections, and views of it, must be freed first. */
void s3_free(struct s3 *s3);

/* From now on every call made with this client (not its base or other
 * views) fails at once with
 * RZ_EUPSTREAM, and transfers in flight are cut within about a second:
 * the end of the drain's grace period, so that a stalled S3 cannot hold
 * the process past its stop timeout. Thread-safe. */
void s3_abort(struct s3 *s3);

/* One connection (curl handle) for one thread; NULL if out of memory. */
struct s3_conn *s3_conn_new(struct s3 *s3);

/* NULL is a no-op. */
void s3_conn_free(struct s3_conn *c);

/* Reads bucket/key into *out, refusing objects over max_bytes (from
 * Content-Length before the body, and by counting while streaming):
 * RZ_ETOOBIG. RZ_ENOTFOUND (404), RZ_EDENIED (403), RZ_EUPSTREAM.
 * msg gets S3's error code and message. Release with s3_object_cleanup. */
enum rz_err s3_get_object(struct s3_conn *c, const char *bucket, const char *key,
                          size_t max_bytes, struct s3_object *out, char *msg, size_t msglen);

/* Writes bucket/key with the given Content-Type and optional Cache-Control
 * and x-amz-meta-* pairs (names without the prefix), plus the configured
 * SSE headers. The body is sent with its SHA-256 signed. */
enum rz_err s3_put_object(struct s3_conn *c, const char *bucket, const char *key,
                          const void *data, size_t len, const char *content_type,
                          const char *cache_control, const struct s3_field *meta, size_t nmeta,
                          char *msg, size_t msglen);

/* HeadObject. Same errors as s3_get_object. */
enum rz_err s3_head_object(struct s3_conn *c, const char *bucket, const char *key,
                           struct s3_head *out, char *msg, size_t msglen);

/* One page of ListObjectsV2 (prefix, start_after and token may be NULL;
 * max_keys 1..1000), keys in S3's (UTF-8 binary) order. */
enum rz_err s3_list_objects(struct s3_conn *c, const char *bucket, const char *prefix,
                            const char *start_after, const char *token, int max_keys,
                            struct s3_list *out, char *msg, size_t msglen);

/* Presigned URLs for clients, signed for the public endpoint. The expiry
 * is cut to the credentials' own expiry, so a URL never outlives them.
 * PUT: fields are the headers the client must send (Content-Type, SSE). */
enum rz_err s3_presign_put(struct s3 *s3, const char *bucket, const char *key,
                           const char *content_type, long expires, time_t now,
                           struct s3_presigned *out);

/* GET of bucket/key; no fields. */
enum rz_err s3_presign_get(struct s3 *s3, const char *bucket, const char *key, long expires,
                           time_t now, struct s3_presigned *out);

/* Browser form upload: url is the bucket's URL, fields the form fields
 * (key, Content-Type, policy, x-amz-*), the policy pinning the exact key
 * and Content-Type and content-length-range 1..max_bytes. */
enum rz_err s3_presign_post(struct s3 *s3, const char *bucket, const char *key,
                            const char *content_type, uint64_t max_bytes, long expires,
                            time_t now, struct s3_presigned *out);

void s3_presigned_cleanup(struct s3_presigned *p);
void s3_object_cleanup(struct s3_object *o);
void s3_head_cleanup(struct s3_head *h);
void s3_list_cleanup(struct s3_list *l);

#endif
