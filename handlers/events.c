/* events.c - POST /v1/events, the EventBridge API destination.
 *
 * Must answer well inside EventBridge's 5 s: parse, filter, queue, 202.
 * Statuses follow EventBridge's retry rules: 400/413 for what will never
 * be valid (not retried), 429/503 with Retry-After for back-pressure
 * (retried), 401 only for bad credentials. */
#include "handlers.h"

#include <string.h>

#include <openssl/crypto.h>

#include "server/base64.h"
#include "server/clock.h"
#include "server/events.h"

/* "user:pass" of EVENTS_BASIC_AUTH is at most 4096 bytes (config), so a
 * longer header cannot match and is refused before decoding. */
#define EVENTS_MAX_BASIC 4096

/* Compares "Basic base64(user:pass)" with EVENTS_BASIC_AUTH. */
static int events_basic_ok(const char *header, const char *expected)
{
    unsigned char decoded[EVENTS_MAX_BASIC + 1];
    size_t inlen, n = 0;
    int ok;

    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return 0;
    header += 6;
    inlen = strlen(header);
    if (inlen == 0 ||
        base64_decode(header, inlen, BASE64_STD, decoded, EVENTS_MAX_BASIC, &n) != RZ_OK)
        return 0;
    decoded[n] = '\0';
    /* A NUL inside would end the comparison early: never a match. */
    ok = memchr(decoded, '\0', n) == NULL && http_secret_equal((const char *)decoded, expected);
    OPENSSL_cleanse(decoded, n);
    return ok;
}

int handlers_events_auth(struct http_request *req, void *ctx, struct http_response *res)
{
    const struct app *app = ctx;
    const struct config *cfg = app->cfg;
    const char *key = http_header(req, cfg->events_api_key_header);
    int ok = 0;

    /* Every key is compared, so timing does not tell which one matched. */
    for (size_t i = 0; i < cfg->nevents_api_keys; i++)
        ok |= http_secret_equal(key, cfg->events_api_keys[i]);
    if (cfg->events_basic_auth)
        ok |= events_basic_ok(http_header(req, "Authorization"), cfg->events_basic_auth);
    if (!ok)
        http_reply_error(res, req, 401, "unauthorized", "event credentials missing or wrong");
    return ok;
}

static void events_reply_queued(struct http_response *res, const struct jobs_submit_result *r,
                                size_t ignored)
{
    http_reply_json(res, 202,
                    json_pack("{s:I,s:I,s:I}", "accepted", (json_int_t)r->accepted, "duplicates",
                              (json_int_t)r->duplicates, "ignored", (json_int_t)ignored));
}

void handlers_events_post(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    const struct config *cfg = app->cfg;
    struct event_batch batch = {0};
    struct jobs_submit_result r;
    char msg[256];
    enum rz_err err;

    if (readiness_draining(app->readiness)) {
        http_reply_rz_error(res, req, RZ_ESHUTDOWN, "shutting down; deliver again later");
        return;
    }
    err = events_parse(req->body.data ? req->body.data : "", req->body.len, &batch, msg,
                       sizeof(msg));
    if (err != RZ_OK) {
        metrics_add(app->metrics, "resizer_events_total", "outcome=\"malformed\"", 1);
        http_reply_error(res, req, err == RZ_ETOOBIG ? 413 : 400,
                         err == RZ_ETOOBIG ? "too_large" : "invalid_event", msg);
        return;
    }
    events_filter(&batch, cfg->src_bucket, cfg->src_prefix, cfg->dest_bucket);
    if (batch.ignored)
        metrics_add(app->metrics, "resizer_events_total", "outcome=\"ignored\"",
                    (double)batch.ignored);
    err = jobs_submit(app->jobs, &batch, clock_wall_ms(), &r);
    /* Counted here, not in jobs_submit: objects the reconcile sweep queues
     * are not events (they have their own resizer_reconcile_objects_total). */
    if (r.accepted)
        metrics_add(app->metrics, "resizer_events_total", "outcome=\"accepted\"",
                    (double)r.accepted);
    if (r.duplicates)
        metrics_add(app->metrics, "resizer_events_total", "outcome=\"duplicate\"",
                    (double)r.duplicates);
    if (err == RZ_OK)
        events_reply_queued(res, &r, batch.ignored);
    else if (err == RZ_EFULL)
        http_reply_rz_error(res, req, RZ_EFULL, "queue is full; deliver again later");
    else
        http_reply_rz_error(res, req, err, "cannot queue the event now");
    events_batch_cleanup(&batch);
}

/* MinIO probes its webhook target with HEAD before sending. */
void handlers_events_head(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_bytes(res, 200, "application/json", "", 0);
}
