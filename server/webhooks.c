/* webhooks.c - Standard Webhooks delivery: sign, POST, classify, retry.
 *
 * Delivery threads lease due deliveries from the outbox, so however slow a
 * receiver is, only these threads wait on it; the image workers only render
 * a message and add it. One curl handle per thread keeps connections to a
 * receiver alive between messages. */
#include "webhooks.h"
#include "unittest.h"
#include "webhooks_internal.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base64.h"
#include "buf.h"
#include "clock.h"
#include "log.h"
#include "timefmt.h"

#define WEBHOOKS_URL_MAX 2048
#define WEBHOOKS_RESPONSE_CAP 4096 /* response body bytes read, then the answer is cut */

/* Waits before attempts 2..8, in units of WEBHOOK_RETRY_BASE_MS (5 s):
 * 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, the schedule of the Standard
 * Webhooks reference implementation (Svix). */
static const int webhooks_schedule[WEBHOOKS_MAX_ATTEMPTS - 1] = {1,    60,   360, 1440,
                                                                 3600, 7200, 7200};
static const double webhooks_latency_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                  1,    2.5,   5,    10,  30};

struct webhooks_endpoint {
    char *url;
    char *log_url; /* without the query, which may carry a receiver's token */
};

struct webhooks_thread {
    struct webhooks *w;
    CURL *curl;
    pthread_t thread;
    int started;
};

struct webhooks {
    struct webhooks_opts opts; /* urls and secrets are not kept: see endpoints, keys */
    struct webhooks_endpoint endpoints[WEBHOOKS_MAX_URLS];
    size_t nendpoints;
    struct webhooks_key keys[WEBHOOKS_MAX_SECRETS];
    size_t nkeys;
    struct outbox *outbox;
    pthread_mutex_t lock;
    pthread_cond_t wake;                /* a delivery was added, or stopping */
    pthread_cond_t settled;             /* a thread found nothing due (for drain) */
    uint64_t gen;                       /* bumped by every notify */
    uint64_t seen_gen;                  /* gen when a thread last found nothing due */
    int64_t next_due_ms;                /* what that thread saw due next */
    size_t busy;                        /* threads leasing or attempting */
    size_t inflight[WEBHOOKS_MAX_URLS]; /* attempts in flight per endpoint */
    size_t per_endpoint;                /* the most one endpoint may have */
    int stopping;                       /* also read by curl's progress callback */
    struct webhooks_thread *threads;
};

static enum rz_err webhooks_fail(char *msg, size_t msglen, const char *name, const char *what)
{
    snprintf(msg, msglen, "%s: %s", name, what);
    return RZ_EINVAL;
}

/* ---- configuration ---- */

/* The next comma-separated item of *p, spaces around it trimmed; 0 at the end. */
static int webhooks_next_item(const char **p, const char **item_out, size_t *len_out)
{
    const char *s = *p;
    size_t len;

    s += strspn(s, " ,");
    if (*s == '\0')
        return 0;
    len = strcspn(s, ",");
    *p = s + len;
    while (len > 0 && s[len - 1] == ' ')
        len--;
    *item_out = s;
    *len_out = len;
    return 1;
}

static int webhooks_host_is_loopback(const char *host, size_t len)
{
    char copy[64];
    struct in_addr a;

    if (len >= sizeof(copy))
        return 0;
    memcpy(copy, host, len);
    copy[len] = '\0';
    if (strcasecmp(copy, "localhost") == 0 || strcmp(copy, "[::1]") == 0)
        return 1;
    return inet_pton(AF_INET, copy, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static const char *webhooks_port_problem(const char *p, const char *end)
{
    long port = 0;

    if (p == end)
        return NULL;
    if (*p != ':' || end - p < 2 || end - p > 6)
        return "has a malformed port";
    for (p++; p < end; p++) {
        if (*p < '0' || *p > '9')
            return "has a malformed port";
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535 ? NULL : "has a malformed port";
}

/* Why u[0..len) is not a URL we deliver to, or NULL. */
static const char *webhooks_url_problem(const char *u, size_t len)
{
    const char *end = u + len;
    const char *host;
    const char *auth_end;
    const char *host_end;
    int https;

    if (len > WEBHOOKS_URL_MAX)
        return "each URL must be at most 2048 bytes";
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return "must not hold spaces or control characters";
    }
    if (memchr(u, '#', len))
        return "must not hold a fragment";
    https = len >= 8 && strncasecmp(u, "https://", 8) == 0;
    if (!https && !(len >= 7 && strncasecmp(u, "http://", 7) == 0))
        return "each URL must be https:// (or http:// to a loopback host)";
    host = u + (https ? 8 : 7);
    for (auth_end = host; auth_end < end && *auth_end != '/' && *auth_end != '?'; auth_end++)
        ;
    if (memchr(host, '@', (size_t)(auth_end - host)))
        return "must not hold credentials (user@host)";
    if (host < auth_end && host[0] == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end)
            return "has a malformed IPv6 host";
        host_end++;
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (!host_end)
            host_end = auth_end;
    }
    if (host_end == host)
        return "must name a host";
    if (webhooks_port_problem(host_end, auth_end))
        return webhooks_port_problem(host_end, auth_end);
    if (!https && !webhooks_host_is_loopback(host, (size_t)(host_end - host)))
        return "may use http:// only to a loopback host (127.0.0.1, localhost, [::1]); "
               "use https://";
    return NULL;
}

enum rz_err webhooks_check_urls(const char *value, char *msg, size_t msglen)
{
    const char *p = value;
    const char *item;
    size_t len;
    size_t n = 0;

    while (webhooks_next_item(&p, &item, &len)) {
        const char *why = webhooks_url_problem(item, len);

        if (why)
            return webhooks_fail(msg, msglen, "WEBHOOK_URLS", why);
        if (++n > WEBHOOKS_MAX_URLS)
            return webhooks_fail(msg, msglen, "WEBHOOK_URLS", "must list at most 8 URLs");
    }
    if (n == 0)
        return webhooks_fail(msg, msglen, "WEBHOOK_URLS", "must list at least one URL");
    return RZ_OK;
}

UNITTEST enum rz_err webhooks_parse_secrets(const char *value, struct webhooks_key *keys,
                                            size_t *n_out, char *msg, size_t msglen)
{
    const char *p = value;
    size_t n = 0;
    enum rz_err err = RZ_OK;

    while (err == RZ_OK) {
        size_t len;

        p += strspn(p, " ,");
        if (*p == '\0')
            break;
        len = strcspn(p, " ,");
        if (n == WEBHOOKS_MAX_SECRETS)
            err = webhooks_fail(msg, msglen, "WEBHOOK_SECRET",
                                "must hold one secret, or two (space- or comma-separated) "
                                "while rotating");
        else if (len < 6 || strncmp(p, "whsec_", 6) != 0)
            err = webhooks_fail(msg, msglen, "WEBHOOK_SECRET",
                                "each secret must start with whsec_");
        else if (base64_decode(p + 6, len - 6, BASE64_STD, keys[n].bytes, sizeof(keys[n].bytes),
                               &keys[n].len) != RZ_OK ||
                 keys[n].len < 24)
            err = webhooks_fail(msg, msglen, "WEBHOOK_SECRET",
                                "after whsec_, each secret must be base64 of 24 to 64 bytes");
        else
            n++;
        p += len;
    }
    if (err == RZ_OK && n == 0)
        err = webhooks_fail(msg, msglen, "WEBHOOK_SECRET", "must hold a whsec_ secret");
    if (err != RZ_OK)
        OPENSSL_cleanse(keys, sizeof(*keys) * WEBHOOKS_MAX_SECRETS);
    *n_out = err == RZ_OK ? n : 0;
    return err;
}

enum rz_err webhooks_check_secrets(const char *value, char *msg, size_t msglen)
{
    struct webhooks_key keys[WEBHOOKS_MAX_SECRETS];
    size_t n;
    enum rz_err err = webhooks_parse_secrets(value, keys, &n, msg, msglen);

    OPENSSL_cleanse(keys, sizeof(keys));
    return err;
}

/* ---- messages ---- */

UNITTEST enum rz_err webhooks_sign(const struct webhooks_key *keys, size_t nkeys, const char *id,
                                   int64_t timestamp, const char *body, size_t body_len,
                                   char out[WEBHOOKS_SIGNATURE_MAX])
{
    struct buf content;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t pos = 0;
    enum rz_err err;

    out[0] = '\0';
    if (nkeys > WEBHOOKS_MAX_SECRETS)
        return RZ_EINVAL;
    buf_init(&content, body_len + OUTBOX_MSG_ID_MAX + 32);
    err = buf_printf(&content, "%s.%lld.", id, (long long)timestamp);
    if (err == RZ_OK)
        err = buf_append(&content, body, body_len);
    for (size_t i = 0; i < nkeys && err == RZ_OK; i++) {
        if (!HMAC(EVP_sha256(), keys[i].bytes, (int)keys[i].len,
                  (const unsigned char *)content.data, content.len, mac, &maclen)) {
            err = RZ_EINTERNAL;
            break;
        }
        if (i > 0)
            out[pos++] = ' ';
        memcpy(out + pos, "v1,", 3);
        pos += 3;
        base64_encode(mac, maclen, BASE64_STD, out + pos);
        pos += strlen(out + pos);
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    buf_cleanup(&content);
    if (err != RZ_OK)
        out[0] = '\0';
    return err;
}

UNITTEST enum webhooks_verdict webhooks_classify(long status)
{
    if (status >= 200 && status < 300)
        return WEBHOOKS_DELIVERED;
    if (status >= 400 && status < 500 && status != 408 && status != 429)
        return WEBHOOKS_FINAL;
    return WEBHOOKS_RETRY;
}

UNITTEST int64_t webhooks_retry_delay_ms(long base_ms, int attempts_made, double jitter)
{
    int step = attempts_made < 1 ? 1 : attempts_made;

    if (step > WEBHOOKS_MAX_ATTEMPTS - 1)
        step = WEBHOOKS_MAX_ATTEMPTS - 1;
    return (int64_t)((double)webhooks_schedule[step - 1] * (double)base_ms *
                     (0.8 + 0.4 * jitter));
}

UNITTEST char *webhooks_body(const struct index_entry *e, const char **type_out)
{
    const char *type = e->state == INDEX_DONE     ? "image.done"
                       : e->state == INDEX_FAILED ? "image.failed"
                                                  : NULL;
    char ts[TIMEFMT_MAX];
    json_t *data;
    json_t *msg;
    char *text;

    *type_out = type;
    if (!type)
        return NULL;
    /* The status record as the API gives it, minus the presigned URLs the
     * handlers add: a URL is a credential, and receivers ask for them. */
    data = index_entry_to_json(e);
    if (!data)
        return NULL;
    timefmt_iso_ms(e->finished_ms > 0 ? e->finished_ms : clock_wall_ms(), ts);
    msg = json_pack("{s:s,s:s,s:o}", "type", type, "timestamp", ts, "data", data);
    text = msg ? json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(msg);
    return text;
}

UNITTEST void webhooks_msg_id(const struct index_entry *e, const char *type,
                              char out[OUTBOX_MSG_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char attempts[16];
    /* The error code too: an image failed by its job and, later, at intake
     * (the variants changed) are two outcomes, not one sent twice. */
    const char *parts[5] = {e->id, e->etag ? e->etag : "", type, attempts,
                            e->state == INDEX_FAILED ? e->error_code : ""};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);

    snprintf(attempts, sizeof(attempts), "%d", e->attempts);
    for (size_t i = 0; i < 5 && ok; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1); /* the NUL separates */
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Only an allocation can fail here; a random id still works, it
         * just cannot be deduplicated across a restart. */
        for (size_t i = 0; i < 16; i++)
            md[i] = (unsigned char)arc4random_uniform(256);
    }
    memcpy(out, "msg_", 4);
    for (size_t i = 0; i < 16; i++) {
        out[4 + 2 * i] = hex[md[i] >> 4];
        out[5 + 2 * i] = hex[md[i] & 15];
    }
    out[36] = '\0';
}

/* ---- metrics ---- */

static void webhooks_count_outcome(struct webhooks *w, const char *outcome)
{
    char labels[48];

    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    metrics_add(w->opts.metrics, "resizer_webhook_deliveries_total", labels, 1);
}

static void webhooks_count_attempt(struct webhooks *w, CURLcode rc, long status, double secs)
{
    char labels[48];

    if (status > 0)
        snprintf(labels, sizeof(labels), "result=\"%ldxx\"", status / 100 % 10);
    else
        snprintf(labels, sizeof(labels), "result=\"%s\"",
                 rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "error");
    metrics_add(w->opts.metrics, "resizer_webhook_attempts_total", labels, 1);
    metrics_observe(w->opts.metrics, "resizer_webhook_attempt_seconds", "", secs);
}

static double webhooks_depth_gauge(void *arg)
{
    struct webhooks *w = arg;

    return (double)w->outbox->ops->depth(w->outbox);
}

static enum rz_err webhooks_metrics_register(struct webhooks *w)
{
    struct metrics *m = w->opts.metrics;
    enum rz_err err;

    err = metrics_register(m, "resizer_webhook_deliveries_total", METRICS_COUNTER,
                           "Webhook deliveries ended, by outcome (delivered, rejected: a final "
                           "4xx, expired: retries used up, dropped: the outbox was full)",
                           NULL, 0);
    if (err == RZ_OK)
        err = metrics_register(m, "resizer_webhook_attempts_total", METRICS_COUNTER,
                               "Webhook POSTs made, by result (2xx..5xx, timeout, error)", NULL,
                               0);
    if (err == RZ_OK)
        err = metrics_register(m, "resizer_webhook_attempt_seconds", METRICS_HISTOGRAM,
                               "Seconds one webhook POST took, until its answer or its timeout",
                               webhooks_latency_buckets,
                               sizeof(webhooks_latency_buckets) /
                                   sizeof(webhooks_latency_buckets[0]));
    if (err == RZ_OK)
        err = metrics_register_gauge_fn(m, "resizer_webhook_queue_depth",
                                        "Webhook deliveries waiting in the outbox (due or "
                                        "waiting to retry)",
                                        "", webhooks_depth_gauge, w);
    return err;
}

/* ---- notify ---- */

static void webhooks_wake(struct webhooks *w)
{
    pthread_mutex_lock(&w->lock);
    w->gen++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

static void webhooks_add(struct webhooks *w, struct outbox_delivery *d, const char *image_id)
{
    size_t dropped = 0;
    enum rz_err err = w->outbox->ops->add(w->outbox, d, &dropped);

    if (err != RZ_OK) {
        webhooks_count_outcome(w, "dropped");
        log_fields(LOG_WARN, "webhook_dropped",
                   json_pack("{s:s,s:s,s:s}", "id", image_id, "msg_id", d->msg_id, "why",
                             err == RZ_EFULL ? "outbox full of deliveries in flight"
                                             : rz_err_name(err)));
    } else if (dropped) {
        webhooks_count_outcome(w, "dropped");
        log_fields(LOG_WARN, "webhook_dropped",
                   json_pack("{s:s,s:s}", "why", "outbox full: its oldest delivery dropped",
                             "for_msg_id", d->msg_id));
    }
}

void webhooks_notify(struct webhooks *w, const struct index_entry *e)
{
    struct outbox_delivery d;
    const char *type = NULL;
    char *body;

    if (!w)
        return;
    body = webhooks_body(e, &type);
    if (!body) {
        if (type)
            log_fields(LOG_ERROR, "webhook_dropped",
                       json_pack("{s:s,s:s}", "id", e->id, "why", "out of memory"));
        return;
    }
    memset(&d, 0, sizeof(d));
    webhooks_msg_id(e, type, d.msg_id);
    d.body = body;
    d.body_len = strlen(body);
    d.created_ms = d.due_ms = clock_wall_ms();
    for (size_t i = 0; i < w->nendpoints; i++) {
        d.endpoint = i;
        webhooks_add(w, &d, e->id);
    }
    free(body);
    log_fields(LOG_DEBUG, "webhook_queued",
               json_pack("{s:s,s:s,s:s,s:i}", "id", e->id, "msg_id", d.msg_id, "type", type,
                         "endpoints", (int)w->nendpoints));
    webhooks_wake(w);
}

/* ---- one attempt ---- */

/* Counts the answer's bytes and cuts the transfer past a small cap: only
 * the status matters, and a receiver must not make us read without end. */
static size_t webhooks_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    size_t *got = arg;

    (void)ptr;
    *got += size * nmemb;
    return *got > WEBHOOKS_RESPONSE_CAP ? 0 : size * nmemb;
}

static int webhooks_on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                                curl_off_t ultotal, curl_off_t ulnow)
{
    struct webhooks *w = arg;

    return __atomic_load_n(&w->stopping, __ATOMIC_RELAXED);
}

static struct curl_slist *webhooks_headers(const char *msg_id, int64_t ts, const char *sig)
{
    char line[WEBHOOKS_SIGNATURE_MAX + 32];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *next;
    const char *more[4];
    char id_line[OUTBOX_MSG_ID_MAX + 16];
    char ts_line[48];

    snprintf(id_line, sizeof(id_line), "webhook-id: %s", msg_id);
    snprintf(ts_line, sizeof(ts_line), "webhook-timestamp: %lld", (long long)ts);
    snprintf(line, sizeof(line), "webhook-signature: %s", sig);
    more[0] = id_line;
    more[1] = ts_line;
    more[2] = line;
    more[3] = "Expect:"; /* no 100-continue round trip per message */
    for (size_t i = 0; i < 4 && h; i++) {
        next = curl_slist_append(h, more[i]);
        if (!next) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = next;
    }
    return h;
}

/* POSTs d once, signed for now; *status_out gets the HTTP status or 0. */
static CURLcode webhooks_post(struct webhooks_thread *t, const struct outbox_delivery *d,
                              long *status_out)
{
    struct webhooks *w = t->w;
    int64_t ts = clock_wall_ms() / 1000;
    char sig[WEBHOOKS_SIGNATURE_MAX];
    struct curl_slist *h = NULL;
    CURL *c = t->curl;
    size_t got = 0;
    CURLcode rc = CURLE_OUT_OF_MEMORY;

    *status_out = 0;
    /* The timestamp is the attempt's, so a retry hours later still passes
     * the receiver's replay window; the id and body stay the message's. */
    if (webhooks_sign(w->keys, w->nkeys, d->msg_id, ts, d->body, d->body_len, sig) != RZ_OK)
        return rc;
    h = webhooks_headers(d->msg_id, ts, sig);
    OPENSSL_cleanse(sig, sizeof(sig));
    if (!h)
        return rc;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, w->endpoints[d->endpoint].url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, w->opts.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, w->opts.timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, webhooks_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "resizer/" RESIZER_VERSION " (Standard Webhooks)");
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, webhooks_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, w);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status_out);
    curl_slist_free_all(h);
    return rc;
}

static void webhooks_log_end(struct webhooks *w, const struct outbox_delivery *d,
                             enum log_level level, const char *event, CURLcode rc, long status,
                             double secs)
{
    log_fields(level, event,
               json_pack("{s:s,s:s,s:i,s:i,s:s,s:f}", "msg_id", d->msg_id, "url",
                         w->endpoints[d->endpoint].log_url, "attempt", d->attempts, "status",
                         (int)status, "error", rc == CURLE_OK ? "" : curl_easy_strerror(rc),
                         "ms", secs * 1000.0));
}

/* Decides what happens to d after an attempt that got verdict v. */
static void webhooks_settle(struct webhooks *w, struct outbox_delivery *d,
                            enum webhooks_verdict v, CURLcode rc, long status, double secs)
{
    struct outbox *o = w->outbox;
    int64_t delay;

    if (v == WEBHOOKS_DELIVERED) {
        o->ops->settle(o, d, -1);
        webhooks_count_outcome(w, "delivered");
        webhooks_log_end(w, d, LOG_INFO, "webhook_delivered", rc, status, secs);
    } else if (v == WEBHOOKS_FINAL) {
        o->ops->settle(o, d, -1);
        webhooks_count_outcome(w, "rejected");
        webhooks_log_end(w, d, LOG_WARN, status == 410 ? "webhook_gone" : "webhook_rejected", rc,
                         status, secs);
    } else if (d->attempts >= w->opts.max_attempts) {
        o->ops->settle(o, d, -1);
        webhooks_count_outcome(w, "expired");
        webhooks_log_end(w, d, LOG_WARN, "webhook_expired", rc, status, secs);
    } else {
        delay = webhooks_retry_delay_ms(w->opts.retry_base_ms, d->attempts,
                                        (double)arc4random_uniform(1000000) / 1e6);
        o->ops->settle(o, d, clock_wall_ms() + delay);
        webhooks_log_end(w, d, LOG_INFO, "webhook_retry", rc, status, secs);
    }
}

static void webhooks_attempt(struct webhooks_thread *t, struct outbox_delivery *d)
{
    struct webhooks *w = t->w;
    int64_t start = clock_wall_ms();
    long status = 0;
    CURLcode rc;
    double secs;

    if (d->endpoint >= w->nendpoints) {
        w->outbox->ops->settle(w->outbox, d, -1); /* an outbox older than WEBHOOK_URLS */
        return;
    }
    d->attempts++;
    rc = webhooks_post(t, d, &status);
    secs = (double)(clock_wall_ms() - start) / 1000.0;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        d->attempts--; /* stopping: not the receiver's fault, and not sent */
        w->outbox->ops->settle(w->outbox, d, start);
        return;
    }
    webhooks_count_attempt(w, rc, status, secs);
    /* An answer cut at WEBHOOKS_RESPONSE_CAP still has its status. */
    webhooks_settle(w, d, status > 0 ? webhooks_classify(status) : WEBHOOKS_RETRY, rc, status,
                    secs);
}

/* ---- threads ---- */

static void webhooks_timespec_at(int64_t ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

/* Called with nothing due: sleeps until next_due_ms, a notify, or stop. */
static void webhooks_idle(struct webhooks *w, uint64_t gen, int64_t next_due_ms)
{
    int64_t until = clock_wall_ms() + w->outbox->poll_ms;
    struct timespec ts;

    if (next_due_ms < until)
        until = next_due_ms;
    webhooks_timespec_at(until, &ts);
    pthread_mutex_lock(&w->lock);
    w->busy--;
    w->seen_gen = gen;
    w->next_due_ms = next_due_ms;
    pthread_cond_broadcast(&w->settled);
    if (!w->stopping && w->gen == gen)
        pthread_cond_timedwait(&w->wake, &w->lock, &ts);
    pthread_mutex_unlock(&w->lock);
}

/* The endpoints with as many attempts in flight as they may have: a
 * receiver that hangs holds at most per_endpoint threads, and the others
 * keep theirs. Called with the lock held. */
static uint32_t webhooks_full_endpoints(const struct webhooks *w)
{
    uint32_t skip = 0;

    for (size_t i = 0; i < w->nendpoints; i++) {
        if (w->inflight[i] >= w->per_endpoint)
            skip |= 1u << i;
    }
    return skip;
}

/* One attempt of a leased delivery, counted against its endpoint. Another
 * thread may have leased for the same endpoint meanwhile and taken its last
 * place: then the delivery goes back, unchanged, for a later look. */
static void webhooks_run_leased(struct webhooks_thread *t, struct outbox_delivery *d)
{
    struct webhooks *w = t->w;
    size_t ep = d->endpoint < w->nendpoints ? d->endpoint : 0;
    int full;

    pthread_mutex_lock(&w->lock);
    full = w->inflight[ep] >= w->per_endpoint;
    if (full)
        w->busy--;
    else
        w->inflight[ep]++;
    pthread_mutex_unlock(&w->lock);
    if (full) {
        w->outbox->ops->settle(w->outbox, d, d->due_ms);
        return;
    }
    webhooks_attempt(t, d);
    pthread_mutex_lock(&w->lock);
    w->inflight[ep]--;
    w->busy--;
    /* Its endpoint may take another attempt now: idle threads look again. */
    w->gen++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

static void *webhooks_thread_main(void *arg)
{
    struct webhooks_thread *t = arg;
    struct webhooks *w = t->w;
    struct outbox_delivery d;
    int64_t next_due;
    uint64_t gen;
    uint32_t skip;

    for (;;) {
        pthread_mutex_lock(&w->lock);
        if (w->stopping) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        gen = w->gen;
        skip = webhooks_full_endpoints(w);
        w->busy++;
        pthread_mutex_unlock(&w->lock);
        if (w->outbox->ops->lease(w->outbox, clock_wall_ms(), skip, &d, &next_due) != RZ_OK) {
            webhooks_idle(w, gen, next_due);
            continue;
        }
        webhooks_run_leased(t, &d);
        outbox_delivery_cleanup(&d);
    }
    return NULL;
}

/* ---- lifecycle ---- */

static enum rz_err webhooks_parse_urls(struct webhooks *w, const char *value)
{
    const char *p = value;
    const char *item;
    size_t len;

    while (webhooks_next_item(&p, &item, &len) && w->nendpoints < WEBHOOKS_MAX_URLS) {
        struct webhooks_endpoint *ep = &w->endpoints[w->nendpoints];

        ep->url = strndup(item, len);
        ep->log_url = strndup(item, strcspn(ep->url ? ep->url : "", "?"));
        if (!ep->url || !ep->log_url)
            return RZ_ENOMEM;
        w->nendpoints++;
    }
    return RZ_OK;
}

static enum rz_err webhooks_start_threads(struct webhooks *w)
{
    w->threads = calloc(w->opts.threads, sizeof(*w->threads));
    if (!w->threads)
        return RZ_ENOMEM;
    for (size_t i = 0; i < w->opts.threads; i++) {
        struct webhooks_thread *t = &w->threads[i];

        t->w = w;
        t->curl = curl_easy_init();
        if (!t->curl)
            return RZ_ENOMEM;
        if (pthread_create(&t->thread, NULL, webhooks_thread_main, t) != 0)
            return RZ_EINTERNAL;
        t->started = 1;
    }
    return RZ_OK;
}

/* A shared outbox keeps deliveries by receiver, not by place in the list. */
static enum rz_err webhooks_bind_outbox(struct webhooks *w)
{
    const char *urls[WEBHOOKS_MAX_URLS];

    if (!w->outbox->ops->bind)
        return RZ_OK;
    for (size_t i = 0; i < w->nendpoints; i++)
        urls[i] = w->endpoints[i].url;
    return w->outbox->ops->bind(w->outbox, urls, w->nendpoints);
}

enum rz_err webhooks_new(const struct webhooks_opts *opts, struct webhooks **out, char *msg,
                         size_t msglen)
{
    struct webhooks *w = calloc(1, sizeof(*w));
    enum rz_err err = RZ_ENOMEM;

    if (!w) {
        if (opts->outbox)
            opts->outbox->ops->free(opts->outbox);
        return RZ_ENOMEM;
    }
    w->opts = *opts;
    w->outbox = opts->outbox;
    w->opts.urls = w->opts.secrets = NULL;
    if (w->opts.threads == 0)
        w->opts.threads = 1;
    /* One endpoint may use every thread; with several, a dead one gets half. */
    w->per_endpoint = w->opts.threads / 2 > 0 ? w->opts.threads / 2 : 1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->settled, NULL);
    err = webhooks_check_urls(opts->urls, msg, msglen);
    if (err == RZ_OK)
        err = webhooks_parse_secrets(opts->secrets, w->keys, &w->nkeys, msg, msglen);
    if (err == RZ_OK)
        err = webhooks_parse_urls(w, opts->urls);
    if (err != RZ_OK)
        goto fail;
    if (w->nendpoints == 1)
        w->per_endpoint = w->opts.threads;
    err = RZ_ENOMEM;
    if (!w->outbox)
        w->outbox = outbox_memory_new(opts->queue_size);
    if (!w->outbox)
        goto fail;
    err = webhooks_bind_outbox(w);
    if (err != RZ_OK)
        goto fail;
    err = webhooks_metrics_register(w);
    if (err == RZ_OK)
        err = webhooks_start_threads(w);
    if (err != RZ_OK)
        goto fail;
    *out = w;
    return RZ_OK;
fail:
    webhooks_free(w);
    return err;
}

size_t webhooks_drain(struct webhooks *w, long grace_ms)
{
    int64_t deadline;
    struct timespec ts;
    size_t left;

    if (!w)
        return 0;
    deadline = clock_wall_ms() + grace_ms;
    pthread_mutex_lock(&w->lock);
    /* Done when no thread is attempting, and the last look, taken after the
     * last notify, found nothing due before now. */
    while (!(w->busy == 0 && w->seen_gen == w->gen && w->next_due_ms > clock_wall_ms())) {
        int64_t until = clock_wall_ms() + 100;

        if (clock_wall_ms() >= deadline)
            break;
        webhooks_timespec_at(until < deadline ? until : deadline, &ts);
        pthread_cond_timedwait(&w->settled, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    left = w->outbox->ops->depth(w->outbox);
    log_fields(LOG_INFO, "webhooks_drained", json_pack("{s:I}", "pending", (json_int_t)left));
    return left;
}

static void webhooks_stop_threads(struct webhooks *w)
{
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; w->threads && i < w->opts.threads; i++) {
        if (w->threads[i].started) {
            pthread_join(w->threads[i].thread, NULL);
            w->threads[i].started = 0;
        }
    }
}

void webhooks_free(struct webhooks *w)
{
    size_t left;

    if (!w)
        return;
    webhooks_stop_threads(w);
    for (size_t i = 0; w->threads && i < w->opts.threads; i++)
        curl_easy_cleanup(w->threads[i].curl);
    free(w->threads);
    if (w->outbox) {
        left = w->outbox->ops->depth(w->outbox);
        /* The memory outbox ends with the process: say what is lost. A
         * shared one keeps them for the other replicas. */
        if (left && !w->outbox->shared)
            log_fields(LOG_WARN, "webhooks_lost",
                       json_pack("{s:I}", "pending", (json_int_t)left));
        w->outbox->ops->free(w->outbox);
    }
    for (size_t i = 0; i < w->nendpoints; i++) {
        free(w->endpoints[i].url);
        free(w->endpoints[i].log_url);
    }
    OPENSSL_cleanse(w->keys, sizeof(w->keys));
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->settled);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
