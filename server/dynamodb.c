/* dynamodb.c - DynamoDB's JSON protocol over the AWS transport (awshttp.c,
 * which signs, sends and retries under this client's policy). Error
 * answers are JSON with a "__type" such as
 * "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException";
 * the part after '#' decides what the caller sees. */
#include "dynamodb.h"
#include "dynamodb_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "awshttp.h"
#include "buf.h"
#include "log.h"
#include "sigv4.h"
#include "unittest.h"

#define DDB_BACKOFF_CAP_MS 2000 /* a store call sits on a request path */
#define DDB_MAX_OP 64
#define DDB_TARGET_PREFIX "DynamoDB_20120810."

struct ddb {
    struct awshttp_endpoint ep;
    char *url;
    char *region;
    struct awshttp *transport;
    int owns_transport; /* made by ddb_new when the caller gave none */
    struct awshttp_policy policy;
};

static const double ddb_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,    1,     2.5,  5,     10};

/* ---- client lifecycle ---- */

static enum rz_err ddb_endpoint(const struct ddb_opts *o, struct ddb *d, char *msg,
                                size_t msglen)
{
    char dflt[300];
    const char *url = o->endpoint;
    struct buf b;
    enum rz_err err;

    if (!url || !*url) {
        snprintf(dflt, sizeof(dflt), "https://dynamodb.%s.amazonaws.com", o->region);
        url = dflt;
    }
    err = awshttp_endpoint_parse(url, &d->ep, msg, msglen);
    if (err != RZ_OK)
        return err;
    buf_init(&b, 1024);
    err = buf_printf(&b, "%s://%s/", d->ep.scheme, d->ep.host);
    d->url = err == RZ_OK ? buf_steal(&b) : NULL;
    buf_cleanup(&b);
    return d->url ? RZ_OK : RZ_ENOMEM;
}

/* A region goes into the host name and the credential scope. */
static int ddb_region_valid(const char *r)
{
    size_t n = r ? strlen(r) : 0;

    if (n == 0 || n > 64)
        return 0;
    return strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static struct awshttp_policy ddb_policy_of(const struct ddb_opts *o)
{
    return (struct awshttp_policy){
        .timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000,
        .connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000,
        .max_attempts = o->max_attempts > 0 ? o->max_attempts : 4,
        .backoff_base_ms = o->backoff_base_ms > 0 ? o->backoff_base_ms : 50,
        .backoff_cap_ms = DDB_BACKOFF_CAP_MS,
    };
}

enum rz_err ddb_new(const struct ddb_opts *o, struct ddb **out, char *msg, size_t msglen)
{
    struct ddb *d = calloc(1, sizeof(*d));
    enum rz_err err = RZ_ENOMEM;

    *out = NULL;
    snprintf(msg, msglen, "out of memory");
    if (!d)
        return RZ_ENOMEM;
    if (!ddb_region_valid(o->region) || (!o->creds && !o->transport)) {
        snprintf(msg, msglen,
                 "DynamoDB needs a region (lowercase letters, digits, '-') and "
                 "credentials");
        err = RZ_EINVAL;
        goto fail;
    }
    d->region = strdup(o->region);
    err = d->region ? ddb_endpoint(o, d, msg, msglen) : RZ_ENOMEM;
    if (err == RZ_OK)
        err = awshttp_new_unless(o->transport, &(struct awshttp_opts){o->creds, o->metrics},
                                 &d->transport, &d->owns_transport);
    if (err == RZ_OK)
        err = awshttp_register(d->transport, "dynamodb", "DynamoDB", ddb_latency_buckets,
                               sizeof(ddb_latency_buckets) / sizeof(ddb_latency_buckets[0]));
    if (err != RZ_OK)
        goto fail;
    d->policy = ddb_policy_of(o);
    *out = d;
    snprintf(msg, msglen, "%s", "");
    return RZ_OK;
fail:
    ddb_free(d);
    return err;
}

void ddb_free(struct ddb *d)
{
    if (!d)
        return;
    if (d->owns_transport)
        awshttp_free(d->transport);
    awshttp_endpoint_cleanup(&d->ep);
    free(d->url);
    free(d->region);
    free(d);
}

#ifdef RESIZER_UNITTEST
/* For the test drivers only. */
UNITTEST const char *ddb_url(const struct ddb *d)
{
    return d->url;
}
#endif

/* ---- building and signing ---- */

UNITTEST int ddb_op_valid(const char *op)
{
    size_t n = op ? strlen(op) : 0;

    if (n == 0 || n > DDB_MAX_OP)
        return 0;
    return strspn(op, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == n;
}

/* The request of one operation; target is the caller's, at least
 * sizeof(DDB_TARGET_PREFIX) + DDB_MAX_OP bytes. The headers are botocore's
 * names (the signer lowercases them either way). */
static struct awshttp_request ddb_request(const struct ddb *d, const char *op, char *target,
                                          struct sigv4_pair *headers, const char *body,
                                          size_t len)
{
    snprintf(target, sizeof(DDB_TARGET_PREFIX) + DDB_MAX_OP, DDB_TARGET_PREFIX "%s", op);
    headers[0] = (struct sigv4_pair){"Content-Type", "application/x-amz-json-1.0"};
    headers[1] = (struct sigv4_pair){"X-Amz-Target", target};
    return (struct awshttp_request){
        .service = "dynamodb",
        .label = "DynamoDB",
        .metric = "dynamodb",
        .op = op,
        .region = d->region,
        .method = "POST",
        .scheme = d->ep.scheme,
        .host = d->ep.host,
        .path = "/",
        .headers = headers,
        .nheaders = 2,
        .body = body,
        .body_len = len,
        .max_response = DDB_MAX_RESPONSE,
        .max_error = DDB_MAX_RESPONSE,
        .body_name = "DynamoDB answer",
    };
}

#ifdef RESIZER_UNITTEST
/* For the signing oracle only (ddb_cli sign): ddb_call signs through awshttp. */
UNITTEST struct curl_slist *ddb_sign(const struct ddb *d, const char *op, const char *body,
                                     size_t len, const struct sigv4_creds *creds, time_t now,
                                     enum rz_err *err_out)
{
    char target[sizeof(DDB_TARGET_PREFIX) + DDB_MAX_OP];
    struct sigv4_pair headers[2];
    struct awshttp_request req = ddb_request(d, op, target, headers, body, len);

    return awshttp_sign(&req, creds, now, err_out);
}
#endif

/* ---- classifying an answer ---- */

/* The short name of an error's "__type" (after '#'), sanitised into out. */
static void ddb_error_type(const json_t *body, char *out, size_t outlen)
{
    const char *t = json_string_value(json_object_get(body, "__type"));
    const char *hash = t ? strrchr(t, '#') : NULL;
    size_t n;

    snprintf(out, outlen, "unknown");
    if (!t)
        return;
    t = hash ? hash + 1 : t;
    n = strlen(t);
    if (n == 0 || n >= outlen ||
        strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.") != n)
        return;
    memcpy(out, t, n + 1);
}

static int ddb_type_in(const char *type, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(type, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* Authentication errors may quote the Authorization header; their text is
 * never copied. */
static int ddb_type_is_auth(const char *type)
{
    static const char *const auth[] = {"UnrecognizedClientException",
                                       "InvalidSignatureException",
                                       "IncompleteSignatureException",
                                       "MissingAuthenticationTokenException",
                                       "ExpiredTokenException"};

    return ddb_type_in(type, auth, sizeof(auth) / sizeof(auth[0]));
}

/* DynamoDB's message, printable ASCII only and cut short, into out. */
static void ddb_error_text(const json_t *body, const char *type, char *out, size_t outlen)
{
    const char *m = json_string_value(json_object_get(body, "message"));
    size_t o = 0;

    if (!m)
        m = json_string_value(json_object_get(body, "Message"));
    if (!m || ddb_type_is_auth(type))
        m = "";
    for (size_t i = 0; m[i] && o + 1 < outlen && i < 200; i++)
        out[o++] = (m[i] >= 0x20 && m[i] < 0x7f) ? m[i] : '?';
    out[o] = '\0';
}

/* Reasons of a cancelled transaction: 2 if one is a failed condition, 1 if
 * one is transient (throttling, a conflicting transaction), else 0. */
static int ddb_cancel_reasons(const json_t *body)
{
    json_t *reasons = json_object_get(body, "CancellationReasons");
    int worst = 0;
    size_t i;
    json_t *r;

    json_array_foreach(reasons, i, r)
    {
        const char *code = json_string_value(json_object_get(r, "Code"));

        if (!code)
            continue;
        if (strcmp(code, "ConditionalCheckFailed") == 0)
            return 2;
        if (strcmp(code, "ThrottlingError") == 0 || strcmp(code, "TransactionConflict") == 0 ||
            strcmp(code, "ProvisionedThroughputExceeded") == 0 ||
            strcmp(code, "RequestLimitExceeded") == 0)
            worst = 1;
    }
    return worst;
}

/* The error of a 4xx by its type. */
static enum rz_err ddb_classify_4xx(long status, const char *type, const json_t *body,
                                    int *retry)
{
    static const char *const transient[] = {
        "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
        "TransactionConflictException", "TransactionInProgressException",
        /* the provider refreshes before expiry; the next attempt signs anew */
        "ExpiredTokenException"};

    if (strcmp(type, "ConditionalCheckFailedException") == 0)
        return RZ_ECONFLICT;
    if (strcmp(type, "ResourceNotFoundException") == 0)
        return RZ_ENOTFOUND;
    if (strcmp(type, "TransactionCanceledException") == 0) {
        int why = ddb_cancel_reasons(body);

        *retry = why == 1;
        return why == 2 ? RZ_ECONFLICT : why == 1 ? RZ_EUPSTREAM : RZ_EINVAL;
    }
    if (status == 429 ||
        ddb_type_in(type, transient, sizeof(transient) / sizeof(transient[0]))) {
        *retry = 1;
        return RZ_EUPSTREAM;
    }
    return RZ_EINVAL;
}

static json_t *ddb_parse_object(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;

    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

UNITTEST enum rz_err ddb_classify(long status, const char *body, size_t len, int *retry,
                                  json_t **body_out, char *msg, size_t msglen)
{
    json_t *j = ddb_parse_object(body, len);
    char type[96];
    char text[224];
    enum rz_err err;

    *retry = 0;
    if (body_out)
        *body_out = NULL;
    if (status >= 200 && status < 300) {
        snprintf(msg, msglen, "%s",
                 j ? "" : "DynamoDB sent an answer that is not a JSON object");
        err = j ? RZ_OK : RZ_EUPSTREAM;
        goto done;
    }
    ddb_error_type(j, type, sizeof(type));
    ddb_error_text(j, type, text, sizeof(text));
    snprintf(msg, msglen, "DynamoDB answered %ld %s%s%s", status, type, *text ? ": " : "", text);
    if (status >= 500 || status < 400) {
        *retry = status >= 500;
        err = RZ_EUPSTREAM;
        goto done;
    }
    err = ddb_classify_4xx(status, type, j, retry);
done:
    if (body_out && j && (err == RZ_OK || err == RZ_ECONFLICT)) {
        *body_out = j;
        j = NULL;
    }
    json_decref(j);
    return err;
}

/* ---- one call ---- */

/* The transport's classify callback: arg is where the body goes. */
static enum rz_err ddb_classify_answer(const struct awshttp_response *r, void *arg, int *retry,
                                       char *msg, size_t msglen)
{
    return ddb_classify(r->status, r->body.data ? r->body.data : "", r->body.len, retry, arg,
                        msg, msglen);
}

static enum rz_err ddb_perform(struct ddb *d, const char *op, const char *body, size_t len,
                               json_t **body_out, char *msg, size_t msglen)
{
    char target[sizeof(DDB_TARGET_PREFIX) + DDB_MAX_OP];
    struct sigv4_pair headers[2];
    struct awshttp_request req = ddb_request(d, op, target, headers, body, len);
    struct awshttp_response r;
    enum rz_err err;

    req.classify = ddb_classify_answer;
    req.classify_arg = body_out;
    err = awshttp_call(d->transport, NULL, &req, &d->policy, &r, msg, msglen);
    awshttp_response_cleanup(&r);
    /* An answer too big to read is DynamoDB misbehaving, not the caller. */
    return err == RZ_ETOOBIG ? RZ_EUPSTREAM : err;
}

enum rz_err ddb_call(struct ddb *d, const char *op, const json_t *request, json_t **response_out,
                     char *msg, size_t msglen)
{
    char scratch[256];
    char *body = NULL;
    json_t *answer = NULL;
    enum rz_err err = RZ_EINVAL;
    size_t len;

    if (!msg || !msglen) {
        msg = scratch;
        msglen = sizeof(scratch);
    }
    msg[0] = '\0';
    if (response_out)
        *response_out = NULL;
    if (!ddb_op_valid(op) || !json_is_object(request)) {
        snprintf(msg, msglen, "not a DynamoDB operation and request object");
        goto fail;
    }
    body = json_dumps(request, JSON_COMPACT);
    err = body ? RZ_OK : RZ_ENOMEM;
    if (err != RZ_OK)
        goto fail;
    len = strlen(body);
    if (len > DDB_MAX_REQUEST) {
        snprintf(msg, msglen, "DynamoDB %s request is larger than %d bytes", op,
                 DDB_MAX_REQUEST);
        err = RZ_ETOOBIG;
        goto fail;
    }
    err = ddb_perform(d, op, body, len, &answer, msg, msglen);
    if (response_out) {
        *response_out = answer;
        answer = NULL;
    }
fail:
    json_decref(answer);
    free(body);
    return err;
}

enum rz_err ddb_send(struct ddb *d, const char *op, json_t *req, json_t **response_out,
                     const char *event)
{
    char msg[256] = "";
    enum rz_err err;

    if (response_out)
        *response_out = NULL;
    if (!req)
        return RZ_ENOMEM;
    err = ddb_call(d, op, req, response_out, msg, sizeof(msg));
    json_decref(req);
    if (err != RZ_OK && err != RZ_ECONFLICT)
        log_fields(LOG_WARN, event,
                   json_pack("{s:s,s:s,s:s}", "op", op, "error", rz_err_name(err), "msg", msg));
    return err;
}

json_t *ddb_s(const char *s)
{
    return json_pack("{s:s}", "S", s);
}

json_t *ddb_n(int64_t n)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "%" PRId64, n);
    return json_pack("{s:s}", "N", buf);
}

const char *ddb_get_s(const json_t *item, const char *name)
{
    return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

int64_t ddb_get_n(const json_t *item, const char *name)
{
    const char *v = json_string_value(json_object_get(json_object_get(item, name), "N"));

    return v ? strtoll(v, NULL, 10) : 0;
}
