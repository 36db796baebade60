/* s3.c - the S3 client and its object calls: GetObject, PutObject,
 * HeadObject, ListObjectsV2.
 *
 * Each call is addressed (s3_addr.c), then handed to the AWS transport
 * (awshttp.c) with this client's policy; what S3's answers mean (its XML
 * error codes, which of them are worth another try) is decided here. */
#include "s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "s3_list.h"
#include "text.h"

#define S3_MAX_ERROR_BODY (64 * 1024)
#define S3_MAX_LIST_BODY (4 * 1024 * 1024)
#define S3_BACKOFF_CAP_MS 5000

struct s3_conn {
    struct s3 *s3;
    struct awshttp_conn *conn;
};

/* One S3 request, before addressing. */
struct s3_call {
    const char *op; /* metrics label: "GetObject", ... */
    const char *method;
    const char *bucket;
    const char *key; /* NULL for bucket-level calls */
    const struct sigv4_pair *query;
    size_t nquery;
    const struct sigv4_pair *headers; /* signed and sent */
    size_t nheaders;
    const void *body;
    size_t body_len;
    size_t max_response; /* cap on a 2xx body */
};

static const double s3_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,    2.5,   5,    10,  30};

/* ---- client lifecycle ---- */

static struct awshttp_policy s3_policy_of(const struct s3_opts *o)
{
    return (struct awshttp_policy){
        .timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000,
        .connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 3000,
        .max_attempts = o->max_attempts > 0 ? o->max_attempts : 4,
        .backoff_base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 100,
        .backoff_cap_ms = S3_BACKOFF_CAP_MS,
    };
}

enum rz_err s3_new(const struct s3_opts *opts, struct s3 **out, char *msg, size_t msglen)
{
    struct s3 *s3 = calloc(1, sizeof(*s3));
    enum rz_err err = RZ_ENOMEM;

    snprintf(msg, msglen, "out of memory");
    if (!s3)
        goto fail;
    err = s3_addr_init(&s3->addr, opts->endpoint, opts->force_path_style, msg, msglen);
    if (err == RZ_OK)
        err = s3_addr_init(&s3->public_addr,
                           opts->public_endpoint ? opts->public_endpoint : opts->endpoint,
                           opts->force_path_style, msg, msglen);
    if (err == RZ_OK)
        err = text_dup(opts->region, &s3->region);
    if (err == RZ_OK)
        err = text_dup(opts->sse, &s3->sse);
    if (err == RZ_OK)
        err = text_dup(opts->sse_kms_key_id, &s3->sse_kms_key_id);
    if (err == RZ_OK)
        err = awshttp_new_unless(opts->transport,
                                 &(struct awshttp_opts){opts->creds, opts->metrics},
                                 &s3->transport, &s3->owns_transport);
    if (err == RZ_OK)
        err = awshttp_register(s3->transport, "s3", "S3", s3_latency_buckets,
                               sizeof(s3_latency_buckets) / sizeof(s3_latency_buckets[0]));
    if (err != RZ_OK)
        goto fail;
    s3->policy = s3_policy_of(opts);
    *out = s3;
    return RZ_OK;
fail:
    s3_free(s3);
    return err;
}

enum rz_err s3_view_new(const struct s3 *base, const struct awshttp_policy *policy,
                        struct s3 **out)
{
    struct s3 *v = malloc(sizeof(*v));

    *out = NULL;
    if (!v)
        return RZ_ENOMEM;
    *v = *base;
    v->base = base->base ? base->base : base;
    v->owns_transport = 0;
    v->policy = *policy;
    v->aborted = 0;
    *out = v;
    return RZ_OK;
}

void s3_free(struct s3 *s3)
{
    if (!s3)
        return;
    if (!s3->base) {
        s3_addr_cleanup(&s3->addr);
        s3_addr_cleanup(&s3->public_addr);
        free(s3->region);
        free(s3->sse);
        free(s3->sse_kms_key_id);
        if (s3->owns_transport)
            awshttp_free(s3->transport);
    }
    free(s3);
}

struct s3_conn *s3_conn_new(struct s3 *s3)
{
    struct s3_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->s3 = s3;
    c->conn = awshttp_conn_get(s3->transport);
    if (!c->conn) {
        free(c);
        return NULL;
    }
    return c;
}

void s3_conn_free(struct s3_conn *c)
{
    if (!c)
        return;
    awshttp_conn_put(c->s3->transport, c->conn);
    free(c);
}

void s3_abort(struct s3 *s3)
{
    __atomic_store_n(&s3->aborted, 1, __ATOMIC_RELAXED);
}

/* ---- what S3 answered ---- */

/* Copies S3's <Code> and <Message> from an error body into msg. */
static void s3_error_message(const struct awshttp_response *r, char *msg, size_t msglen)
{
    const char *body = r->body.data ? r->body.data : "";
    const char *code = strstr(body, "<Code>");
    const char *message = strstr(body, "<Message>");
    int codelen = 0;
    int textlen = 0;

    if (!code) {
        snprintf(msg, msglen, "S3 answered %ld", r->status);
        return;
    }
    code += 6;
    codelen = (int)strcspn(code, "<");
    if (message) {
        message += 9;
        textlen = (int)strcspn(message, "<");
        if (textlen > 160)
            textlen = 160;
    }
    snprintf(msg, msglen, "%.*s: %.*s", codelen, code, textlen, message ? message : "");
}

/* S3 error codes that mean "try again" even though the status is 400:
 * the next attempt is signed anew, with the clock read again. */
static int s3_error_retryable(const struct awshttp_response *r)
{
    static const char *const codes[] = {"<Code>RequestTimeout<", "<Code>SlowDown<",
                                        "<Code>RequestTimeTooSkewed<"};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (r->body.data && strstr(r->body.data, codes[i]))
            return 1;
    }
    return 0;
}

static enum rz_err s3_classify(const struct awshttp_response *r, void *arg, int *retry,
                               char *msg, size_t msglen)
{
    (void)arg;
    *retry = 0;
    if (r->status >= 200 && r->status < 300)
        return RZ_OK;
    s3_error_message(r, msg, msglen);
    if (r->status == 404)
        return RZ_ENOTFOUND;
    if (r->status == 403)
        return RZ_EDENIED;
    if (r->status == 429 || r->status >= 500 || s3_error_retryable(r)) {
        *retry = 1;
        return RZ_EUPSTREAM;
    }
    return RZ_EINVAL;
}

/* ---- one call ---- */

static enum rz_err s3_perform(struct s3_conn *c, const struct s3_call *call,
                              struct awshttp_response *resp, char *msg, size_t msglen)
{
    struct s3 *s3 = c->s3;
    struct buf host, path;
    struct awshttp_request req;
    enum rz_err err;

    buf_init(&host, 512);
    buf_init(&path, S3_MAX_KEY + 256);
    memset(resp, 0, sizeof(*resp));
    err = s3_addr_resolve(&s3->addr, call->bucket, call->key, &host, &path);
    if (err != RZ_OK) {
        if (msg && msglen)
            snprintf(msg, msglen, "cannot address %s: %s", call->op, rz_err_name(err));
        goto done;
    }
    req = (struct awshttp_request){
        .service = "s3",
        .label = "S3",
        .metric = "s3",
        .op = call->op,
        .region = s3->region,
        .method = call->method,
        .scheme = s3->addr.ep.scheme,
        .host = host.data,
        .path = path.data,
        .query = call->query,
        .nquery = call->nquery,
        .headers = call->headers,
        .nheaders = call->nheaders,
        .body = call->body,
        .body_len = call->body_len,
        .content_sha256 = 1,
        .max_response = call->max_response,
        .max_error = S3_MAX_ERROR_BODY,
        .body_name = "object",
        .abort = &s3->aborted,
        .classify = s3_classify,
    };
    err = awshttp_call(s3->transport, c->conn, &req, &s3->policy, resp, msg, msglen);
done:
    buf_cleanup(&host);
    buf_cleanup(&path);
    return err;
}

size_t s3_sse_headers(const struct s3 *s3, struct sigv4_pair *h)
{
    size_t n = 0;

    if (!s3->sse)
        return 0;
    h[n++] = (struct sigv4_pair){"x-amz-server-side-encryption", s3->sse};
    if (s3->sse_kms_key_id)
        h[n++] = (struct sigv4_pair){"x-amz-server-side-encryption-aws-kms-key-id",
                                     s3->sse_kms_key_id};
    return n;
}

/* ---- operations ---- */

enum rz_err s3_get_object(struct s3_conn *c, const char *bucket, const char *key,
                          size_t max_bytes, struct s3_object *out, char *msg, size_t msglen)
{
    struct s3_call call = {.op = "GetObject",
                           .method = "GET",
                           .bucket = bucket,
                           .key = key,
                           .max_response = max_bytes};
    struct awshttp_response r;
    enum rz_err err = s3_perform(c, &call, &r, msg, msglen);

    memset(out, 0, sizeof(*out));
    if (err == RZ_OK) {
        out->len = r.body.len;
        out->data = buf_steal(&r.body);
        out->etag = r.etag;
        out->content_type = r.content_type;
        r.etag = NULL;
        r.content_type = NULL;
        if (!out->data)
            err = RZ_ENOMEM;
    }
    awshttp_response_cleanup(&r);
    return err;
}

enum rz_err s3_put_object(struct s3_conn *c, const char *bucket, const char *key,
                          const void *data, size_t len, const char *content_type,
                          const char *cache_control, const struct s3_field *meta, size_t nmeta,
                          char *msg, size_t msglen)
{
    struct sigv4_pair headers[4 + S3_MAX_META];
    char names[S3_MAX_META][128];
    struct s3_call call = {.op = "PutObject",
                           .method = "PUT",
                           .bucket = bucket,
                           .key = key,
                           .body = data,
                           .body_len = len,
                           .max_response = 0};
    struct awshttp_response r;
    size_t n = 0;
    enum rz_err err;

    headers[n++] = (struct sigv4_pair){"content-type", content_type};
    if (cache_control)
        headers[n++] = (struct sigv4_pair){"cache-control", cache_control};
    for (size_t i = 0; i < nmeta && i < S3_MAX_META; i++) {
        snprintf(names[i], sizeof(names[i]), "x-amz-meta-%s", meta[i].name);
        headers[n++] = (struct sigv4_pair){names[i], meta[i].value};
    }
    n += s3_sse_headers(c->s3, headers + n);
    call.headers = headers;
    call.nheaders = n;
    err = s3_perform(c, &call, &r, msg, msglen);
    awshttp_response_cleanup(&r);
    return err;
}

enum rz_err s3_head_object(struct s3_conn *c, const char *bucket, const char *key,
                           struct s3_head *out, char *msg, size_t msglen)
{
    struct s3_call call = {.op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key};
    struct awshttp_response r;
    enum rz_err err = s3_perform(c, &call, &r, msg, msglen);

    memset(out, 0, sizeof(*out));
    if (err == RZ_OK) {
        out->size = r.content_length;
        out->etag = r.etag;
        out->content_type = r.content_type;
        r.etag = NULL;
        r.content_type = NULL;
    }
    awshttp_response_cleanup(&r);
    return err;
}

enum rz_err s3_list_objects(struct s3_conn *c, const char *bucket, const char *prefix,
                            const char *start_after, const char *token, int max_keys,
                            struct s3_list *out, char *msg, size_t msglen)
{
    struct sigv4_pair query[6];
    char maxk[16];
    size_t n = 0;
    struct s3_call call = {.op = "ListObjectsV2",
                           .method = "GET",
                           .bucket = bucket,
                           .max_response = S3_MAX_LIST_BODY};
    struct awshttp_response r;
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    snprintf(maxk, sizeof(maxk), "%d", max_keys);
    query[n++] = (struct sigv4_pair){"list-type", "2"};
    query[n++] = (struct sigv4_pair){"encoding-type", "url"};
    query[n++] = (struct sigv4_pair){"max-keys", maxk};
    if (prefix)
        query[n++] = (struct sigv4_pair){"prefix", prefix};
    if (start_after)
        query[n++] = (struct sigv4_pair){"start-after", start_after};
    if (token)
        query[n++] = (struct sigv4_pair){"continuation-token", token};
    call.query = query;
    call.nquery = n;
    err = s3_perform(c, &call, &r, msg, msglen);
    if (err == RZ_OK) {
        err = s3_list_parse(r.body.data ? r.body.data : "", r.body.len, token, out);
        if (err != RZ_OK && msg && msglen)
            snprintf(msg, msglen, "S3 sent a listing that does not parse");
        if (err != RZ_OK)
            s3_list_cleanup(out);
    }
    awshttp_response_cleanup(&r);
    return err;
}

void s3_object_cleanup(struct s3_object *o)
{
    free(o->data);
    free(o->etag);
    free(o->content_type);
    memset(o, 0, sizeof(*o));
}

void s3_head_cleanup(struct s3_head *h)
{
    free(h->etag);
    free(h->content_type);
    memset(h, 0, sizeof(*h));
}
