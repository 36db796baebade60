/* health.c - /healthz, /readyz, /metrics and /openapi.yaml. */
#include "handlers.h"

#include <stdlib.h>
#include <string.h>

#include "openapi_yaml_embed.h"

void handlers_healthz(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_json(res, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready means: not draining, S3 answered recently, the queue has room.
 * The ALB stops sending to a replica that says 503 here. */
void handlers_readyz(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    char why[256] = "";
    size_t depth = jobs_depth(app->jobs);
    size_t cap = jobs_capacity(app->jobs);
    int ready = 1;

    if (readiness_draining(app->readiness)) {
        snprintf(why, sizeof(why), "draining: the service is shutting down");
        ready = 0;
    } else if (!readiness_s3_ok(app->readiness, why, sizeof(why))) {
        ready = 0;
    } else if (!status_store_ok(app->status, why, sizeof(why))) {
        ready = 0;
    } else if (depth * 10 >= cap * 9) {
        snprintf(why, sizeof(why), "queue above its high-water mark (%zu of %zu)", depth, cap);
        ready = 0;
    }
    if (ready) {
        http_reply_json(res, 200,
                        json_pack("{s:s,s:I}", "status", "ready", "queue_depth",
                                  (json_int_t)depth));
        return;
    }
    http_reply_json(res, 503,
                    json_pack("{s:s,s:s,s:I}", "status", "not_ready", "reason", why,
                              "queue_depth", (json_int_t)depth));
}

void handlers_metrics(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    char *text = metrics_render(app->metrics);

    if (!text) {
        http_reply_rz_error(res, req, RZ_ENOMEM, "cannot render metrics");
        return;
    }
    http_reply_bytes(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

void handlers_openapi(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_bytes(res, 200, "application/yaml", openapi_yaml, openapi_yaml_len);
}
