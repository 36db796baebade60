/* awshttp.c - the AWS transport: sign, send, classify, retry.
 *
 * Each attempt takes fresh credentials (they may rotate between retries),
 * signs the exact bytes it sends and reads the answer into a capped
 * buffer; transport failures are retried here, answers are judged by the
 * service's classify callback. */
#include "awshttp.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "text.h"

#define AWSHTTP_POOL 8         /* idle curl handles kept for reuse */
#define AWSHTTP_MAX_LINE 16384 /* one header line: a session token is a few KB */
#define AWSHTTP_MAX_URL 16384

struct awshttp {
    struct creds_provider *creds;
    struct metrics *metrics;
    pthread_mutex_t lock; /* guards idle[] */
    struct awshttp_conn *idle[AWSHTTP_POOL];
    size_t nidle;
};

struct awshttp_conn {
    CURL *curl;
};

/* What the curl callbacks of one attempt share. */
struct awshttp_xfer {
    const struct awshttp_request *req;
    struct awshttp_response *resp;
};

/* ---- endpoints, waits, clock ---- */

static enum rz_err awshttp_strip_default_port(struct awshttp_endpoint *ep)
{
    /* curl leaves a default port out of Host:, and the signature must match. */
    const char *dflt = strcmp(ep->scheme, "https") == 0 ? ":443" : ":80";
    size_t len = strlen(ep->host);
    size_t dlen = strlen(dflt);

    if (len > dlen && strcmp(ep->host + len - dlen, dflt) == 0)
        ep->host[len - dlen] = '\0';
    return RZ_OK;
}

enum rz_err awshttp_endpoint_parse(const char *url, struct awshttp_endpoint *ep, char *msg,
                                   size_t msglen)
{
    const char *rest;
    size_t hostlen;

    memset(ep, 0, sizeof(*ep));
    if (strncmp(url, "https://", 8) == 0) {
        ep->scheme = strdup("https");
        rest = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        ep->scheme = strdup("http");
        rest = url + 7;
    } else {
        snprintf(msg, msglen, "endpoint %.200s is not an http(s) URL", url);
        return RZ_EINVAL;
    }
    hostlen = strcspn(rest, "/?#@ ");
    if (hostlen == 0 || (rest[hostlen] != '\0' && strcmp(rest + hostlen, "/") != 0)) {
        snprintf(msg, msglen, "endpoint %.200s must be scheme://host[:port] with no path", url);
        awshttp_endpoint_cleanup(ep);
        return RZ_EINVAL;
    }
    ep->host = strndup(rest, hostlen);
    if (!ep->scheme || !ep->host) {
        awshttp_endpoint_cleanup(ep);
        return RZ_ENOMEM;
    }
    return awshttp_strip_default_port(ep);
}

void awshttp_endpoint_cleanup(struct awshttp_endpoint *ep)
{
    free(ep->scheme);
    free(ep->host);
    ep->scheme = NULL;
    ep->host = NULL;
}

long awshttp_backoff_ms(long base_ms, long cap_ms, int attempt)
{
    long cap = base_ms > 0 ? base_ms : 1;

    for (int i = 0; i < attempt && cap < cap_ms; i++)
        cap *= 2;
    if (cap > cap_ms)
        cap = cap_ms;
    return (long)arc4random_uniform((uint32_t)cap + 1);
}

void awshttp_sleep_ms(long ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

double awshttp_now_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum rz_err awshttp_url_build(const char *scheme, const char *host, const char *path,
                              const struct sigv4_pair *query, size_t nquery, struct buf *url)
{
    char *epath = sigv4_uri_encode(path, strlen(path), 1);
    enum rz_err err;

    if (!epath)
        return RZ_ENOMEM;
    err = buf_printf(url, "%s://%s%s", scheme, host, epath);
    free(epath);
    for (size_t i = 0; i < nquery && err == RZ_OK; i++) {
        const char *value = query[i].value ? query[i].value : "";
        char *n = sigv4_uri_encode(query[i].name, strlen(query[i].name), 0);
        char *v = sigv4_uri_encode(value, strlen(value), 0);

        err = n && v ? buf_printf(url, "%c%s=%s", i ? '&' : '?', n, v) : RZ_ENOMEM;
        free(n);
        free(v);
    }
    return err;
}

/* ---- transport lifecycle and connections ---- */

enum rz_err awshttp_new(const struct awshttp_opts *o, struct awshttp **out)
{
    struct awshttp *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (!t)
        return RZ_ENOMEM;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return RZ_ENOMEM;
    }
    t->creds = o->creds;
    t->metrics = o->metrics;
    *out = t;
    return RZ_OK;
}

enum rz_err awshttp_new_unless(struct awshttp *given, const struct awshttp_opts *o,
                               struct awshttp **out, int *owned_out)
{
    *owned_out = 0;
    if (given) {
        *out = given;
        return RZ_OK;
    }
    *owned_out = 1;
    return awshttp_new(o, out);
}

static void awshttp_conn_free(struct awshttp_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void awshttp_free(struct awshttp *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nidle; i++)
        awshttp_conn_free(t->idle[i]);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

struct creds_provider *awshttp_creds(const struct awshttp *t)
{
    return t->creds;
}

enum rz_err awshttp_register(struct awshttp *t, const char *metric, const char *label,
                             const double *buckets, size_t nbuckets)
{
    char name[96];
    char help[128];
    enum rz_err err;

    if (!t->metrics)
        return RZ_OK;
    snprintf(name, sizeof(name), "resizer_%s_requests_total", metric);
    snprintf(help, sizeof(help), "%s requests by operation and outcome", label);
    err = metrics_register(t->metrics, name, METRICS_COUNTER, help, NULL, 0);
    if (err != RZ_OK && err != RZ_ECONFLICT)
        return err;
    snprintf(name, sizeof(name), "resizer_%s_request_duration_seconds", metric);
    snprintf(help, sizeof(help), "%s request latency by operation", label);
    err = metrics_register(t->metrics, name, METRICS_HISTOGRAM, help, buckets, nbuckets);
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

struct awshttp_conn *awshttp_conn_get(struct awshttp *t)
{
    struct awshttp_conn *c = NULL;

    pthread_mutex_lock(&t->lock);
    if (t->nidle > 0)
        c = t->idle[--t->nidle];
    pthread_mutex_unlock(&t->lock);
    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    if (c)
        c->curl = curl_easy_init();
    if (c && !c->curl) {
        free(c);
        c = NULL;
    }
    return c;
}

void awshttp_conn_put(struct awshttp *t, struct awshttp_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&t->lock);
    if (t->nidle < AWSHTTP_POOL) {
        t->idle[t->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    awshttp_conn_free(c);
}

/* ---- signing ---- */

/* curl copies the line; ours is wiped, it may hold a token or signature. */
static struct curl_slist *awshttp_header_add(struct curl_slist *list, const char *name,
                                             const char *value, int *ok)
{
    struct curl_slist *next = NULL;
    struct buf line;

    if (!*ok)
        return list;
    buf_init(&line, AWSHTTP_MAX_LINE);
    if (buf_printf(&line, "%s: %s", name, value) == RZ_OK)
        next = curl_slist_append(list, line.data);
    if (line.data)
        OPENSSL_cleanse(line.data, line.cap);
    buf_cleanup(&line);
    if (!next) {
        *ok = 0;
        return list;
    }
    return next;
}

void awshttp_headers_free(struct curl_slist *list)
{
    for (struct curl_slist *i = list; i; i = i->next)
        OPENSSL_cleanse(i->data, strlen(i->data));
    curl_slist_free_all(list);
}

static struct curl_slist *awshttp_header_list(const struct sigv4_pair *headers, size_t n,
                                              const struct sigv4_signed *sig,
                                              const struct sigv4_creds *creds)
{
    struct curl_slist *list = NULL;
    int ok = 1;

    for (size_t i = 0; i < n; i++)
        list = awshttp_header_add(list, headers[i].name, headers[i].value, &ok);
    list = awshttp_header_add(list, "x-amz-date", sig->amz_date, &ok);
    if (creds->session_token)
        list = awshttp_header_add(list, "x-amz-security-token", creds->session_token, &ok);
    list = awshttp_header_add(list, "Authorization", sig->authorization, &ok);
    /* A 100-continue round trip buys nothing here: the answer to a bad
     * signature comes after the body either way. */
    list = awshttp_header_add(list, "Expect", "", &ok);
    if (!ok) {
        awshttp_headers_free(list);
        return NULL;
    }
    return list;
}

struct curl_slist *awshttp_sign(const struct awshttp_request *req,
                                const struct sigv4_creds *creds, time_t now,
                                enum rz_err *err_out)
{
    struct sigv4_pair headers[AWSHTTP_MAX_HEADERS];
    struct sigv4_signed sig = {0};
    struct sigv4_request sr;
    struct curl_slist *list = NULL;
    char sha[65];
    size_t n = 0;

    sigv4_sha256_hex(req->body ? req->body : "", req->body_len, sha);
    if (req->content_sha256)
        headers[n++] = (struct sigv4_pair){"x-amz-content-sha256", sha};
    for (size_t i = 0; i < req->nheaders && n < AWSHTTP_MAX_HEADERS; i++)
        headers[n++] = req->headers[i];
    sr = (struct sigv4_request){
        .method = req->method,
        .scheme = req->scheme,
        .host = req->host,
        .path = req->path,
        .query = req->query,
        .nquery = req->nquery,
        .headers = headers,
        .nheaders = n,
        .payload_hash = sha,
        .region = req->region,
        .service = req->service,
    };
    *err_out = sigv4_sign_headers(&sr, creds, now, &sig);
    if (*err_out == RZ_OK) {
        list = awshttp_header_list(headers, n, &sig, creds);
        *err_out = list ? RZ_OK : RZ_ENOMEM;
    }
    if (sig.authorization)
        OPENSSL_cleanse(sig.authorization, strlen(sig.authorization));
    sigv4_signed_cleanup(&sig);
    return list;
}

/* Signs with credentials fetched for this attempt. */
static struct curl_slist *
awshttp_sign_fresh(struct awshttp *t, const struct awshttp_request *req, enum rz_err *err_out)
{
    struct creds_snapshot creds = {0};
    struct curl_slist *list = NULL;
    time_t now = time(NULL);

    *err_out = creds_get(t->creds, now, &creds);
    if (*err_out == RZ_OK)
        list = awshttp_sign(req,
                            &(struct sigv4_creds){creds.access_key, creds.secret_key,
                                                  creds.session_token},
                            now, err_out);
    creds_snapshot_cleanup(&creds);
    return list;
}

/* ---- one attempt ---- */

static int awshttp_aborted(const struct awshttp_request *req)
{
    return req->abort && __atomic_load_n(req->abort, __ATOMIC_RELAXED);
}

/* libcurl calls this during a transfer (at least once a second, even when
 * nothing moves); a non-zero answer cuts the transfer. */
static int awshttp_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                               curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return awshttp_aborted(arg);
}

static size_t awshttp_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct awshttp_xfer *x = arg;
    size_t n = size * nmemb;

    if (buf_append(&x->resp->body, data, n) != RZ_OK) {
        x->resp->too_big = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

/* A header's value, trimmed, without the quotes S3 puts around an ETag. */
static char *awshttp_header_value(const char *line, size_t len, size_t namelen)
{
    const char *v = line + namelen;
    const char *end = line + len;

    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    len = (size_t)(end - v);
    v = text_unquote(v, &len);
    return strndup(v, len);
}

static void awshttp_on_status_line(struct awshttp_response *r, const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);

    free(r->etag);
    free(r->content_type);
    r->etag = NULL;
    r->content_type = NULL;
    r->content_length = 0;
    r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
}

static size_t awshttp_on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct awshttp_xfer *x = arg;
    struct awshttp_response *r = x->resp;
    size_t len = size * nmemb;

    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        awshttp_on_status_line(r, line, len);
    } else if (len > 5 && strncasecmp(line, "ETag:", 5) == 0) {
        free(r->etag);
        r->etag = awshttp_header_value(line, len, 5);
    } else if (len > 13 && strncasecmp(line, "Content-Type:", 13) == 0) {
        free(r->content_type);
        r->content_type = awshttp_header_value(line, len, 13);
    } else if (len > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
        r->content_length = strtoull(line + 15, NULL, 10);
        /* Refuse an oversized body before reading any of its bytes. */
        if (r->status >= 200 && r->status < 300 && strcmp(x->req->method, "HEAD") != 0 &&
            r->content_length > x->req->max_response) {
            r->too_big = 1;
            return 0; /* aborts the transfer */
        }
    }
    return len;
}

static void awshttp_curl_method(CURL *h, const struct awshttp_request *req)
{
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        return;
    }
    if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
        if (strcmp(req->method, "PUT") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        return;
    }
    if (strcmp(req->method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
}

static void awshttp_curl_setup(CURL *h, const char *url, struct curl_slist *headers,
                               const struct awshttp_policy *p, struct awshttp_xfer *x)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, p->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* S3 keys may hold "./" and "../" segments; curl would squash them and
     * the path sent would no longer be the path signed. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, awshttp_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, awshttp_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "resizer/" RESIZER_VERSION);
    if (x->req->abort) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, awshttp_on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)x->req);
    }
    awshttp_curl_method(h, x->req);
}

/* Maps the outcome of one transfer; *retry is set for transient failures. */
static enum rz_err awshttp_classify(const struct awshttp_request *req,
                                    const struct awshttp_response *r, CURLcode rc, int *retry,
                                    char *msg, size_t msglen)
{
    *retry = 0;
    if (r->too_big) {
        snprintf(msg, msglen, "%s is larger than %zu bytes", req->body_name, req->max_response);
        return RZ_ETOOBIG;
    }
    if (rc != CURLE_OK) {
        snprintf(msg, msglen, "%s unreachable: %s", req->label, curl_easy_strerror(rc));
        *retry = 1;
        return RZ_EUPSTREAM;
    }
    return req->classify(r, req->classify_arg, retry, msg, msglen);
}

static enum rz_err awshttp_attempt(struct awshttp *t, CURL *h, const struct awshttp_request *req,
                                   const struct awshttp_policy *p, const char *url,
                                   struct awshttp_response *resp, int *retry, char *msg,
                                   size_t msglen)
{
    struct awshttp_xfer x = {req, resp};
    struct curl_slist *headers;
    enum rz_err err;
    CURLcode rc;

    headers = awshttp_sign_fresh(t, req, &err);
    if (err != RZ_OK) {
        snprintf(msg, msglen, "cannot sign the %s request: %s", req->label, rz_err_name(err));
        *retry = err == RZ_EUPSTREAM;
        return err;
    }
    buf_reset(&resp->body);
    resp->too_big = 0;
    resp->status = 0;
    awshttp_curl_setup(h, url, headers, p, &x);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->status >= 300)
        resp->too_big = 0; /* an error body is not the answer asked for */
    err = awshttp_classify(req, resp, rc, retry, msg, msglen);
    awshttp_headers_free(headers);
    return err;
}

/* ---- the call ---- */

static void awshttp_count(struct awshttp *t, const struct awshttp_request *req, enum rz_err err,
                          double secs)
{
    char name[96];
    char labels[160];

    if (!t->metrics)
        return;
    snprintf(name, sizeof(name), "resizer_%s_requests_total", req->metric);
    snprintf(labels, sizeof(labels), "op=\"%s\",outcome=\"%s\"", req->op,
             err == RZ_OK ? "ok" : rz_err_name(err));
    metrics_add(t->metrics, name, labels, 1);
    snprintf(name, sizeof(name), "resizer_%s_request_duration_seconds", req->metric);
    snprintf(labels, sizeof(labels), "op=\"%s\"", req->op);
    metrics_observe(t->metrics, name, labels, secs);
}

static enum rz_err awshttp_retry_loop(struct awshttp *t, CURL *h,
                                      const struct awshttp_request *req,
                                      const struct awshttp_policy *p, const char *url,
                                      struct awshttp_response *resp, char *msg, size_t msglen)
{
    enum rz_err err = RZ_EUPSTREAM;
    int attempts = p->max_attempts > 0 ? p->max_attempts : 1;
    int retry = 1;

    for (int attempt = 0; attempt < attempts && retry; attempt++) {
        double start;

        if (attempt > 0)
            awshttp_sleep_ms(awshttp_backoff_ms(p->backoff_base_ms, p->backoff_cap_ms, attempt));
        if (awshttp_aborted(req)) {
            snprintf(msg, msglen, "%s call abandoned: shutting down", req->label);
            return RZ_EUPSTREAM;
        }
        start = awshttp_now_secs();
        err = awshttp_attempt(t, h, req, p, url, resp, &retry, msg, msglen);
        awshttp_count(t, req, err, awshttp_now_secs() - start);
    }
    return err;
}

enum rz_err awshttp_call(struct awshttp *t, struct awshttp_conn *c,
                         const struct awshttp_request *req, const struct awshttp_policy *p,
                         struct awshttp_response *resp, char *msg, size_t msglen)
{
    char scratch[256];
    struct awshttp_conn *own = c ? NULL : awshttp_conn_get(t);
    struct buf url;
    enum rz_err err;

    if (!msg || !msglen) {
        msg = scratch;
        msglen = sizeof(scratch);
    }
    memset(resp, 0, sizeof(*resp));
    buf_init(&resp->body,
             req->max_response > req->max_error ? req->max_response : req->max_error);
    buf_init(&url, AWSHTTP_MAX_URL);
    snprintf(msg, msglen, "out of memory");
    err = c || own ? awshttp_url_build(req->scheme, req->host, req->path, req->query,
                                       req->nquery, &url)
                   : RZ_ENOMEM;
    if (err == RZ_ETOOBIG)
        snprintf(msg, msglen, "%s request URL is longer than %d bytes", req->label,
                 AWSHTTP_MAX_URL);
    if (err == RZ_OK)
        err = awshttp_retry_loop(t, c ? c->curl : own->curl, req, p, url.data, resp, msg,
                                 msglen);
    if (err == RZ_OK && resp->body.len > req->max_response) {
        snprintf(msg, msglen, "%s is larger than %zu bytes", req->body_name, req->max_response);
        err = RZ_ETOOBIG;
    }
    if (err == RZ_OK)
        msg[0] = '\0';
    awshttp_conn_put(t, own);
    buf_cleanup(&url);
    return err;
}

void awshttp_response_cleanup(struct awshttp_response *r)
{
    buf_cleanup(&r->body);
    free(r->etag);
    free(r->content_type);
    r->etag = NULL;
    r->content_type = NULL;
}
