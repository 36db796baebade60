/* s3.c - S3 over libcurl with SigV4 header signing, retries and caps.
 *
 * Each call is: address (path or virtual-hosted style) -> sign with fresh
 * credentials -> perform -> classify; transient failures are tried again
 * after a jittered, doubling wait. Response bodies go into capped buffers,
 * so neither a huge object nor a hostile server can grow memory past what
 * the caller allowed. */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "buf.h"
#include "s3_list.h"
#include "sigv4.h"
#include "timefmt.h"

#define S3_MAX_ERROR_BODY (64 * 1024)
#define S3_MAX_LIST_BODY (4 * 1024 * 1024)
#define S3_MAX_KEY 1024
#define S3_MAX_CURL_HEADERS 16

struct s3_endpoint {
    char *scheme;   /* "http" or "https" */
    char *host;     /* host[:port], the port only when not the scheme's default */
    int is_ip;      /* an IP address cannot take a bucket as a subdomain */
};

struct s3 {
    struct s3_endpoint endpoint;
    struct s3_endpoint public_endpoint;
    char *region;
    char *sse;
    char *sse_kms_key_id;
    int force_path_style;
    long timeout_ms;
    long connect_timeout_ms;
    int max_attempts;
    long backoff_base_ms;
    struct creds_provider *creds;
    struct metrics *metrics;
    int aborted;              /* set once by s3_abort; read atomically */
};

struct s3_conn {
    struct s3 *s3;
    CURL *curl;
};

/* One S3 request: what to send and what came back. */
struct s3_call {
    const char *op;                    /* metrics label: "GetObject", ... */
    const char *method;
    const char *bucket;
    const char *key;                   /* NULL for bucket-level calls */
    const struct sigv4_pair *query;
    size_t nquery;
    const struct sigv4_pair *headers;  /* signed and sent */
    size_t nheaders;
    const void *body;
    size_t body_len;
    size_t max_response;               /* cap on a 2xx body */

    long status;
    struct buf response;
    char *etag;
    char *content_type;
    uint64_t content_length;
    int too_big;
    char msg[256];
};

static const double s3_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                            5, 10, 30};

/* ---- endpoints and addressing ---- */

static int s3_host_is_ip(const char *host)
{
    if (host[0] == '[')
        return 1;
    for (const char *p = host; *p && *p != ':'; p++) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return 0;
    }
    return 1;
}

static enum rz_err s3_endpoint_parse(const char *url, struct s3_endpoint *ep, char *msg,
                                     size_t msglen)
{
    const char *rest;
    size_t hostlen;

    if (strncmp(url, "https://", 8) == 0) {
        ep->scheme = strdup("https");
        rest = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        ep->scheme = strdup("http");
        rest = url + 7;
    } else {
        snprintf(msg, msglen, "endpoint %s is not an http(s) URL", url);
        return RZ_EINVAL;
    }
    hostlen = strcspn(rest, "/");
    if (hostlen == 0 || (rest[hostlen] == '/' && rest[hostlen + 1] != '\0')) {
        snprintf(msg, msglen, "endpoint %s must be scheme://host[:port] with no path", url);
        return RZ_EINVAL;
    }
    ep->host = strndup(rest, hostlen);
    if (!ep->scheme || !ep->host)
        return RZ_ENOMEM;
    /* curl leaves a default port out of Host:, and the signature must match. */
    {
        size_t len = strlen(ep->host);
        const char *dflt = strcmp(ep->scheme, "https") == 0 ? ":443" : ":80";

        if (len > strlen(dflt) && strcmp(ep->host + len - strlen(dflt), dflt) == 0)
            ep->host[len - strlen(dflt)] = '\0';
    }
    ep->is_ip = s3_host_is_ip(ep->host) || strncmp(ep->host, "localhost", 9) == 0;
    return RZ_OK;
}

static void s3_endpoint_cleanup(struct s3_endpoint *ep)
{
    free(ep->scheme);
    free(ep->host);
    ep->scheme = NULL;
    ep->host = NULL;
}

/* Virtual-hosted style is S3's default; path style is needed for IP or
 * localhost endpoints, and for dotted bucket names over TLS (the wildcard
 * certificate covers one label only). */
static int s3_use_path_style(const struct s3 *s3, const struct s3_endpoint *ep,
                             const char *bucket)
{
    if (s3->force_path_style || ep->is_ip)
        return 1;
    return strchr(bucket, '.') && strcmp(ep->scheme, "https") == 0;
}

/* Fills host and the raw (unencoded) path of bucket/key. */
static enum rz_err s3_address(const struct s3 *s3, const struct s3_endpoint *ep,
                              const char *bucket, const char *key, struct buf *host,
                              struct buf *path)
{
    enum rz_err err;

    if (s3_use_path_style(s3, ep, bucket)) {
        err = buf_appends(host, ep->host);
        if (err == RZ_OK)
            err = buf_printf(path, "/%s%s%s", bucket, key ? "/" : "", key ? key : "");
        return err;
    }
    err = buf_printf(host, "%s.%s", bucket, ep->host);
    if (err == RZ_OK)
        err = buf_printf(path, "/%s", key ? key : "");
    return err;
}

/* ---- client lifecycle ---- */

static enum rz_err s3_metrics_register(struct metrics *m)
{
    enum rz_err err;

    if (!m)
        return RZ_OK;
    err = metrics_register(m, "resizer_s3_requests_total", METRICS_COUNTER,
                           "S3 requests by operation and outcome", NULL, 0);
    if (err == RZ_OK || err == RZ_ECONFLICT)
        err = metrics_register(m, "resizer_s3_request_duration_seconds", METRICS_HISTOGRAM,
                               "S3 request latency by operation", s3_latency_buckets,
                               sizeof(s3_latency_buckets) / sizeof(s3_latency_buckets[0]));
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

static enum rz_err s3_strdup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return RZ_OK;
    *out = strdup(s);
    return *out ? RZ_OK : RZ_ENOMEM;
}

enum rz_err s3_new(const struct s3_opts *opts, struct s3 **out, char *msg, size_t msglen)
{
    struct s3 *s3 = calloc(1, sizeof(*s3));
    enum rz_err err = RZ_ENOMEM;

    snprintf(msg, msglen, "out of memory");
    if (!s3)
        goto fail;
    err = s3_endpoint_parse(opts->endpoint, &s3->endpoint, msg, msglen);
    if (err == RZ_OK)
        err = s3_endpoint_parse(opts->public_endpoint ? opts->public_endpoint : opts->endpoint,
                                &s3->public_endpoint, msg, msglen);
    if (err == RZ_OK)
        err = s3_strdup_opt(opts->region, &s3->region);
    if (err == RZ_OK)
        err = s3_strdup_opt(opts->sse, &s3->sse);
    if (err == RZ_OK)
        err = s3_strdup_opt(opts->sse_kms_key_id, &s3->sse_kms_key_id);
    if (err == RZ_OK)
        err = s3_metrics_register(opts->metrics);
    if (err != RZ_OK)
        goto fail;
    s3->force_path_style = opts->force_path_style;
    s3->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    s3->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 3000;
    s3->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 4;
    s3->backoff_base_ms = opts->backoff_base_ms > 0 ? opts->backoff_base_ms : 100;
    s3->creds = opts->creds;
    s3->metrics = opts->metrics;
    *out = s3;
    return RZ_OK;
fail:
    s3_free(s3);
    return err;
}

void s3_free(struct s3 *s3)
{
    if (!s3)
        return;
    s3_endpoint_cleanup(&s3->endpoint);
    s3_endpoint_cleanup(&s3->public_endpoint);
    free(s3->region);
    free(s3->sse);
    free(s3->sse_kms_key_id);
    free(s3);
}

struct s3_conn *s3_conn_new(struct s3 *s3)
{
    struct s3_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->s3 = s3;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return NULL;
    }
    return c;
}

void s3_conn_free(struct s3_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void s3_abort(struct s3 *s3)
{
    __atomic_store_n(&s3->aborted, 1, __ATOMIC_RELAXED);
}

static int s3_aborted(const struct s3 *s3)
{
    return __atomic_load_n(&s3->aborted, __ATOMIC_RELAXED);
}

/* ---- one request ---- */

/* libcurl calls this during a transfer (at least once a second, even when
 * nothing moves); a non-zero answer cuts the transfer. */
static int s3_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                          curl_off_t ulnow)
{
    const struct s3 *s3 = arg;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return s3_aborted(s3);
}

static size_t s3_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *call = arg;
    size_t n = size * nmemb;

    if (buf_append(&call->response, data, n) != RZ_OK) {
        call->too_big = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

static char *s3_header_value(const char *line, size_t len, size_t namelen)
{
    const char *v = line + namelen;
    const char *end = line + len;

    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (end - v >= 2 && v[0] == '"' && end[-1] == '"') {
        v++;
        end--;
    }
    return strndup(v, (size_t)(end - v));
}

static size_t s3_on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *call = arg;
    size_t len = size * nmemb;

    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);

        free(call->etag);
        free(call->content_type);
        call->etag = NULL;
        call->content_type = NULL;
        call->content_length = 0;
        call->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    } else if (len > 5 && strncasecmp(line, "ETag:", 5) == 0) {
        free(call->etag);
        call->etag = s3_header_value(line, len, 5);
    } else if (len > 13 && strncasecmp(line, "Content-Type:", 13) == 0) {
        free(call->content_type);
        call->content_type = s3_header_value(line, len, 13);
    } else if (len > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
        call->content_length = strtoull(line + 15, NULL, 10);
        /* Refuse an oversized object before reading any of its bytes. */
        if (call->status >= 200 && call->status < 300 && strcmp(call->method, "HEAD") != 0 &&
            call->content_length > call->max_response) {
            call->too_big = 1;
            return 0; /* aborts the transfer */
        }
    }
    return len;
}

static enum rz_err s3_url_build(const char *scheme, const char *host, const char *path,
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

static struct curl_slist *s3_curl_header(struct curl_slist *list, const char *name,
                                         const char *value, int *ok)
{
    char line[8192];
    struct curl_slist *next;

    if (!*ok)
        return list;
    snprintf(line, sizeof(line), "%s: %s", name, value);
    next = curl_slist_append(list, line);
    if (!next) {
        *ok = 0;
        return list;
    }
    return next;
}

/* Signs the call and builds curl's header list; NULL on failure. */
static struct curl_slist *s3_sign(struct s3_conn *c, struct s3_call *call, const char *host,
                                  const char *path, time_t now, enum rz_err *err_out)
{
    struct s3 *s3 = c->s3;
    struct sigv4_pair headers[S3_MAX_CURL_HEADERS];
    struct creds_snapshot creds = {0};
    struct sigv4_creds sc;
    struct sigv4_signed sig = {0};
    struct sigv4_request req;
    struct curl_slist *list = NULL;
    char sha[65];
    size_t n = 0;
    int ok = 1;

    *err_out = creds_get(s3->creds, now, &creds);
    if (*err_out != RZ_OK)
        return NULL;
    sigv4_sha256_hex(call->body ? call->body : "", call->body_len, sha);
    headers[n++] = (struct sigv4_pair){"x-amz-content-sha256", sha};
    for (size_t i = 0; i < call->nheaders && n < S3_MAX_CURL_HEADERS; i++)
        headers[n++] = call->headers[i];
    req = (struct sigv4_request){
        .method = call->method, .scheme = s3->endpoint.scheme, .host = host, .path = path,
        .query = call->query, .nquery = call->nquery, .headers = headers, .nheaders = n,
        .payload_hash = sha, .region = s3->region, .service = "s3",
    };
    sc = (struct sigv4_creds){creds.access_key, creds.secret_key, creds.session_token};
    *err_out = sigv4_sign_headers(&req, &sc, now, &sig);
    if (*err_out == RZ_OK) {
        for (size_t i = 0; i < n; i++)
            list = s3_curl_header(list, headers[i].name, headers[i].value, &ok);
        list = s3_curl_header(list, "x-amz-date", sig.amz_date, &ok);
        list = s3_curl_header(list, "Authorization", sig.authorization, &ok);
        if (creds.session_token)
            list = s3_curl_header(list, "x-amz-security-token", creds.session_token, &ok);
        /* S3 does not need 100-continue, and it costs a round trip. */
        list = s3_curl_header(list, "Expect", "", &ok);
        if (!ok) {
            curl_slist_free_all(list);
            list = NULL;
            *err_out = RZ_ENOMEM;
        }
    }
    sigv4_signed_cleanup(&sig);
    creds_snapshot_cleanup(&creds);
    return list;
}

static void s3_curl_setup(struct s3_conn *c, struct s3_call *call, const char *url,
                          struct curl_slist *headers)
{
    CURL *h = c->curl;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->s3->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->s3->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* S3 keys may hold "./" and "../" segments; curl would squash them and
     * the path sent would no longer be the path signed. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "resizer/" RESIZER_VERSION);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, s3_on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c->s3);
    if (strcmp(call->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(call->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, call->body ? call->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    } else if (strcmp(call->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, call->method);
    }
}

/* Copies S3's <Code> and <Message> from an error body into call->msg. */
static void s3_error_message(struct s3_call *call, const char *fallback)
{
    const char *body = call->response.data ? call->response.data : "";
    const char *code = strstr(body, "<Code>");
    const char *message = strstr(body, "<Message>");
    int codelen = 0;
    int msglen = 0;

    if (code) {
        code += 6;
        codelen = (int)strcspn(code, "<");
    }
    if (message) {
        message += 9;
        msglen = (int)strcspn(message, "<");
        if (msglen > 160)
            msglen = 160;
    }
    if (!code) {
        snprintf(call->msg, sizeof(call->msg), "%s", fallback);
        return;
    }
    snprintf(call->msg, sizeof(call->msg), "%.*s: %.*s", codelen, code, msglen,
             message ? message : "");
}

/* S3 error codes that mean "try again" even though the status is 400. */
static int s3_error_retryable(const struct s3_call *call)
{
    static const char *const codes[] = {"<Code>RequestTimeout<", "<Code>SlowDown<",
                                        "<Code>RequestTimeTooSkewed<"};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (call->response.data && strstr(call->response.data, codes[i]))
            return 1;
    }
    return 0;
}

/* Maps the outcome of one attempt; *retry is set for transient failures. */
static enum rz_err s3_classify(struct s3_call *call, CURLcode rc, int *retry)
{
    char fallback[64];

    *retry = 0;
    if (call->too_big) {
        snprintf(call->msg, sizeof(call->msg), "object is larger than %zu bytes",
                 call->response.max);
        return RZ_ETOOBIG;
    }
    if (rc != CURLE_OK) {
        snprintf(call->msg, sizeof(call->msg), "S3 unreachable: %s", curl_easy_strerror(rc));
        *retry = 1;
        return RZ_EUPSTREAM;
    }
    if (call->status >= 200 && call->status < 300)
        return RZ_OK;
    snprintf(fallback, sizeof(fallback), "S3 answered %ld", call->status);
    s3_error_message(call, fallback);
    if (call->status == 404)
        return RZ_ENOTFOUND;
    if (call->status == 403)
        return RZ_EDENIED;
    if (call->status == 429 || call->status >= 500 || s3_error_retryable(call)) {
        *retry = 1;
        return RZ_EUPSTREAM;
    }
    return RZ_EINVAL;
}

/* Waits a random time up to base * 2^attempt (full jitter), capped at 5 s,
 * so replicas retrying the same outage spread out instead of stampeding. */
static void s3_backoff(const struct s3 *s3, int attempt)
{
    long cap = s3->backoff_base_ms;
    long ms;
    struct timespec ts;

    for (int i = 0; i < attempt && cap < 5000; i++)
        cap *= 2;
    if (cap > 5000)
        cap = 5000;
    ms = (long)arc4random_uniform((uint32_t)cap + 1);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void s3_count(struct s3 *s3, const struct s3_call *call, enum rz_err err, double secs)
{
    char labels[128];

    if (!s3->metrics)
        return;
    snprintf(labels, sizeof(labels), "op=\"%s\",outcome=\"%s\"", call->op,
             err == RZ_OK ? "ok" : rz_err_name(err));
    metrics_add(s3->metrics, "resizer_s3_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "op=\"%s\"", call->op);
    metrics_observe(s3->metrics, "resizer_s3_request_duration_seconds", labels, secs);
}

static double s3_now_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum rz_err s3_attempt(struct s3_conn *c, struct s3_call *call, int *retry)
{
    struct buf host, path, url;
    struct curl_slist *headers = NULL;
    enum rz_err err;
    CURLcode rc;

    buf_init(&host, 512);
    buf_init(&path, S3_MAX_KEY + 256);
    buf_init(&url, 16384);
    *retry = 0;
    err = s3_address(c->s3, &c->s3->endpoint, call->bucket, call->key, &host, &path);
    if (err == RZ_OK)
        err = s3_url_build(c->s3->endpoint.scheme, host.data, path.data, call->query,
                           call->nquery, &url);
    if (err == RZ_OK)
        headers = s3_sign(c, call, host.data, path.data, time(NULL), &err);
    if (err != RZ_OK) {
        snprintf(call->msg, sizeof(call->msg), "cannot sign the request: %s", rz_err_name(err));
        if (err == RZ_EUPSTREAM)
            *retry = 1;
        goto done;
    }
    buf_reset(&call->response);
    call->too_big = 0;
    s3_curl_setup(c, call, url.data, headers);
    rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &call->status);
    if (call->status >= 300)
        call->too_big = 0; /* an error body is not the object */
    err = s3_classify(call, rc, retry);
done:
    curl_slist_free_all(headers);
    buf_cleanup(&host);
    buf_cleanup(&path);
    buf_cleanup(&url);
    return err;
}

static enum rz_err s3_perform(struct s3_conn *c, struct s3_call *call)
{
    enum rz_err err = RZ_EUPSTREAM;
    size_t cap = call->max_response > S3_MAX_ERROR_BODY ? call->max_response : S3_MAX_ERROR_BODY;
    int retry = 1;

    buf_init(&call->response, cap);
    for (int attempt = 0; attempt < c->s3->max_attempts && retry; attempt++) {
        double start = s3_now_secs();

        if (attempt > 0)
            s3_backoff(c->s3, attempt);
        if (s3_aborted(c->s3)) {
            snprintf(call->msg, sizeof(call->msg), "S3 call abandoned: shutting down");
            err = RZ_EUPSTREAM;
            break;
        }
        err = s3_attempt(c, call, &retry);
        s3_count(c->s3, call, err, s3_now_secs() - start);
    }
    if (err == RZ_OK && call->response.len > call->max_response) {
        snprintf(call->msg, sizeof(call->msg), "object is larger than %zu bytes",
                 call->max_response);
        err = RZ_ETOOBIG;
    }
    return err;
}

static void s3_call_cleanup(struct s3_call *call)
{
    buf_cleanup(&call->response);
    free(call->etag);
    free(call->content_type);
    call->etag = NULL;
    call->content_type = NULL;
}

static void s3_copy_msg(const struct s3_call *call, char *msg, size_t msglen)
{
    if (msg && msglen)
        snprintf(msg, msglen, "%s", call->msg);
}

/* ---- operations ---- */

enum rz_err s3_get_object(struct s3_conn *c, const char *bucket, const char *key,
                          size_t max_bytes, struct s3_object *out, char *msg, size_t msglen)
{
    struct s3_call call = {.op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
                           .max_response = max_bytes};
    enum rz_err err = s3_perform(c, &call);

    memset(out, 0, sizeof(*out));
    s3_copy_msg(&call, msg, msglen);
    if (err == RZ_OK) {
        out->len = call.response.len;
        out->data = buf_steal(&call.response);
        out->etag = call.etag;
        out->content_type = call.content_type;
        call.etag = NULL;
        call.content_type = NULL;
        if (!out->data)
            err = RZ_ENOMEM;
    }
    s3_call_cleanup(&call);
    return err;
}

static size_t s3_sse_headers(const struct s3 *s3, struct sigv4_pair *h)
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

enum rz_err s3_put_object(struct s3_conn *c, const char *bucket, const char *key,
                          const void *data, size_t len, const char *content_type,
                          const char *cache_control, const struct s3_field *meta, size_t nmeta,
                          char *msg, size_t msglen)
{
    struct sigv4_pair headers[4 + S3_MAX_META];
    char names[S3_MAX_META][128];
    struct s3_call call = {.op = "PutObject", .method = "PUT", .bucket = bucket, .key = key,
                           .body = data, .body_len = len, .max_response = 0};
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
    err = s3_perform(c, &call);
    s3_copy_msg(&call, msg, msglen);
    s3_call_cleanup(&call);
    return err;
}

enum rz_err s3_head_object(struct s3_conn *c, const char *bucket, const char *key,
                           struct s3_head *out, char *msg, size_t msglen)
{
    struct s3_call call = {.op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key};
    enum rz_err err = s3_perform(c, &call);

    memset(out, 0, sizeof(*out));
    s3_copy_msg(&call, msg, msglen);
    if (err == RZ_OK) {
        out->size = call.content_length;
        out->etag = call.etag;
        out->content_type = call.content_type;
        call.etag = NULL;
        call.content_type = NULL;
    }
    s3_call_cleanup(&call);
    return err;
}

/* ---- listing ---- */

enum rz_err s3_list_objects(struct s3_conn *c, const char *bucket, const char *prefix,
                            const char *start_after, const char *token, int max_keys,
                            struct s3_list *out, char *msg, size_t msglen)
{
    struct sigv4_pair query[6];
    char maxk[16];
    size_t n = 0;
    struct s3_call call = {.op = "ListObjectsV2", .method = "GET", .bucket = bucket,
                           .max_response = S3_MAX_LIST_BODY};
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
    err = s3_perform(c, &call);
    if (err == RZ_OK) {
        err = s3_list_parse(call.response.data ? call.response.data : "", call.response.len, token,
                            out);
        if (err != RZ_OK) {
            snprintf(call.msg, sizeof(call.msg), "S3 sent a listing that does not parse");
            s3_list_cleanup(out);
        }
    }
    s3_copy_msg(&call, msg, msglen);
    s3_call_cleanup(&call);
    return err;
}

/* ---- presigning for clients ---- */

static enum rz_err s3_field_add(struct s3_presigned *p, const char *name, const char *value)
{
    struct s3_field *f;

    if (p->nfields == S3_MAX_FIELDS)
        return RZ_EINTERNAL;
    f = &p->fields[p->nfields];
    f->name = strdup(name);
    f->value = strdup(value);
    if (!f->name || !f->value) {
        free(f->name);
        free(f->value);
        return RZ_ENOMEM;
    }
    p->nfields++;
    return RZ_OK;
}

/* A URL must not outlive the credentials that signed it: S3 refuses it
 * from then on, and a client would see a confusing 403. */
static enum rz_err s3_cut_expiry(const struct creds_snapshot *creds, time_t now, long *expires)
{
    if (creds->expiration == 0)
        return RZ_OK;
    if (creds->expiration <= now + 1)
        return RZ_EUPSTREAM;
    if ((time_t)*expires > creds->expiration - now)
        *expires = (long)(creds->expiration - now);
    return RZ_OK;
}

static enum rz_err s3_presign(struct s3 *s3, const char *method, const char *bucket,
                              const char *key, const struct sigv4_pair *headers, size_t nheaders,
                              long expires, time_t now, struct s3_presigned *out)
{
    struct creds_snapshot creds = {0};
    struct sigv4_creds sc;
    struct sigv4_request req;
    struct buf host, path;
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    buf_init(&host, 512);
    buf_init(&path, S3_MAX_KEY + 256);
    err = creds_get(s3->creds, now, &creds);
    if (err == RZ_OK)
        err = s3_cut_expiry(&creds, now, &expires);
    if (err == RZ_OK)
        err = s3_address(s3, &s3->public_endpoint, bucket, key, &host, &path);
    if (err == RZ_OK) {
        req = (struct sigv4_request){
            .method = method, .scheme = s3->public_endpoint.scheme, .host = host.data,
            .path = path.data, .headers = headers, .nheaders = nheaders,
            .payload_hash = "UNSIGNED-PAYLOAD", .region = s3->region, .service = "s3",
        };
        sc = (struct sigv4_creds){creds.access_key, creds.secret_key, creds.session_token};
        err = sigv4_presign_url(&req, &sc, now, expires, &out->url);
    }
    for (size_t i = 0; i < nheaders && err == RZ_OK; i++)
        err = s3_field_add(out, headers[i].name, headers[i].value);
    out->expires_at = now + expires;
    creds_snapshot_cleanup(&creds);
    buf_cleanup(&host);
    buf_cleanup(&path);
    if (err != RZ_OK)
        s3_presigned_cleanup(out);
    return err;
}

enum rz_err s3_presign_put(struct s3 *s3, const char *bucket, const char *key,
                           const char *content_type, long expires, time_t now,
                           struct s3_presigned *out)
{
    struct sigv4_pair headers[3];
    size_t n = 0;

    /* Signed, so S3 refuses the upload unless it carries exactly this type. */
    headers[n++] = (struct sigv4_pair){"Content-Type", content_type};
    n += s3_sse_headers(s3, headers + n);
    return s3_presign(s3, "PUT", bucket, key, headers, n, expires, now, out);
}

enum rz_err s3_presign_get(struct s3 *s3, const char *bucket, const char *key, long expires,
                           time_t now, struct s3_presigned *out)
{
    return s3_presign(s3, "GET", bucket, key, NULL, 0, expires, now, out);
}

static char *s3_base64(const char *s)
{
    size_t len = strlen(s);
    unsigned char *out = malloc(4 * ((len + 2) / 3) + 1);

    if (!out)
        return NULL;
    EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
    return (char *)out;
}

/* The policy: every condition S3 must check, the key and Content-Type
 * exact, so a form cannot be reused for another object or type. */
static char *s3_post_policy(const struct s3_presigned *fields, const char *bucket,
                            uint64_t max_bytes, time_t expires_at)
{
    char expiration[TIMEFMT_MAX];
    json_t *conds = json_array();
    json_t *policy;
    char *text;

    timefmt_iso(expires_at, expiration);
    json_array_append_new(conds, json_pack("{s:s}", "bucket", bucket));
    for (size_t i = 0; i < fields->nfields; i++)
        json_array_append_new(conds, json_pack("{s:s}", fields->fields[i].name,
                                               fields->fields[i].value));
    json_array_append_new(conds, json_pack("[s,i,I]", "content-length-range", 1,
                                           (json_int_t)max_bytes));
    policy = json_pack("{s:s,s:o}", "expiration", expiration, "conditions", conds);
    text = policy ? json_dumps(policy, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(policy);
    return text;
}

static enum rz_err s3_post_fields(struct s3 *s3, const struct creds_snapshot *creds,
                                  const char *key, const char *content_type, time_t now,
                                  struct s3_presigned *out)
{
    struct sigv4_pair sse[2];
    size_t nsse = s3_sse_headers(s3, sse);
    char *scope = sigv4_credential_scope(creds->access_key, s3->region, "s3", now);
    char date[17];
    enum rz_err err;

    if (!scope)
        return RZ_ENOMEM;
    sigv4_amz_date(now, date);
    err = s3_field_add(out, "key", key);
    if (err == RZ_OK)
        err = s3_field_add(out, "Content-Type", content_type);
    for (size_t i = 0; i < nsse && err == RZ_OK; i++)
        err = s3_field_add(out, sse[i].name, sse[i].value);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-algorithm", "AWS4-HMAC-SHA256");
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-credential", scope);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-date", date);
    if (err == RZ_OK && creds->session_token)
        err = s3_field_add(out, "x-amz-security-token", creds->session_token);
    free(scope);
    return err;
}

enum rz_err s3_presign_post(struct s3 *s3, const char *bucket, const char *key,
                            const char *content_type, uint64_t max_bytes, long expires,
                            time_t now, struct s3_presigned *out)
{
    struct creds_snapshot creds = {0};
    struct buf host, path, url;
    char *policy = NULL;
    char *policy_b64 = NULL;
    char sig[65];
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    buf_init(&host, 512);
    buf_init(&path, 512);
    buf_init(&url, 1024);
    err = creds_get(s3->creds, now, &creds);
    if (err == RZ_OK)
        err = s3_cut_expiry(&creds, now, &expires);
    if (err == RZ_OK)
        err = s3_post_fields(s3, &creds, key, content_type, now, out);
    if (err == RZ_OK) {
        out->expires_at = now + expires;
        policy = s3_post_policy(out, bucket, max_bytes, out->expires_at);
        policy_b64 = policy ? s3_base64(policy) : NULL;
        err = policy_b64 ? RZ_OK : RZ_ENOMEM;
    }
    if (err == RZ_OK)
        err = sigv4_sign_policy(policy_b64, &(struct sigv4_creds){creds.access_key,
                                                                   creds.secret_key,
                                                                   creds.session_token},
                                s3->region, "s3", now, sig);
    if (err == RZ_OK)
        err = s3_field_add(out, "policy", policy_b64);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-signature", sig);
    if (err == RZ_OK)
        err = s3_address(s3, &s3->public_endpoint, bucket, NULL, &host, &path);
    if (err == RZ_OK)
        err = s3_url_build(s3->public_endpoint.scheme, host.data, path.data, NULL, 0, &url);
    if (err == RZ_OK)
        out->url = buf_steal(&url);
    free(policy);
    free(policy_b64);
    creds_snapshot_cleanup(&creds);
    buf_cleanup(&host);
    buf_cleanup(&path);
    buf_cleanup(&url);
    if (err != RZ_OK)
        s3_presigned_cleanup(out);
    return err;
}

void s3_presigned_cleanup(struct s3_presigned *p)
{
    free(p->url);
    for (size_t i = 0; i < p->nfields; i++) {
        free(p->fields[i].name);
        free(p->fields[i].value);
    }
    memset(p, 0, sizeof(*p));
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
