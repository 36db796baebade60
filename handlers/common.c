/* common.c - the route table and the checks every route group shares. */
#include "handlers.h"

#include <string.h>
#include <time.h>

#define HANDLERS_MAX_UPLOAD_BODY (16 * 1024)

/* Order matters only for readability: the server matches every pattern. */
const struct http_route handlers_routes[] = {
    {"GET", "/healthz", handlers_healthz, 0, NULL},
    {"GET", "/readyz", handlers_readyz, 0, NULL},
    {"GET", "/metrics", handlers_metrics, 0, handlers_metrics_auth},
    {"GET", "/openapi.yaml", handlers_openapi, 0, NULL},
    {"POST", "/v1/uploads", handlers_uploads_create, HANDLERS_MAX_UPLOAD_BODY,
     handlers_client_auth},
    {"POST", "/v1/events", handlers_events_post, EVENTS_MAX_BODY, handlers_events_auth},
    /* MinIO's probe before it sends: open, it reveals nothing. */
    {"HEAD", "/v1/events", handlers_events_head, 0, NULL},
    {"GET", "/v1/images", handlers_images_list, 0, handlers_client_auth},
    {"GET", "/v1/images/{id}", handlers_images_get, 0, handlers_client_auth},
    {"GET", "/v1/images/{id}/variants/{name}", handlers_images_variant, 0,
     handlers_client_auth},
    {"POST", "/v1/images/{id}/retry", handlers_images_retry, 0, handlers_client_auth},
};

const size_t handlers_nroutes = sizeof(handlers_routes) / sizeof(handlers_routes[0]);

int64_t handlers_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int handlers_client_auth(struct http_request *req, void *ctx, struct http_response *res)
{
    const struct app *app = ctx;
    const char *h = http_header(req, "Authorization");
    int ok = 0;

    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        /* Every token is compared, so the time taken does not say which
         * (if any) matched. */
        for (size_t i = 0; i < app->cfg->napi_tokens; i++)
            ok |= http_secret_equal(h + 7, app->cfg->api_tokens[i]);
    }
    if (ok)
        return 1;
    http_reply_error(res, req, 401, "unauthorized",
                     h ? "bearer token is not valid" : "missing Authorization: Bearer <token>");
    http_response_header(res, "WWW-Authenticate", "Bearer");
    return 0;
}

int handlers_metrics_auth(struct http_request *req, void *ctx, struct http_response *res)
{
    const struct app *app = ctx;
    const char *h = http_header(req, "Authorization");

    if (!app->cfg->metrics_token)
        return 1;
    if (h && strncasecmp(h, "Bearer ", 7) == 0 && http_secret_equal(h + 7, app->cfg->metrics_token))
        return 1;
    http_reply_error(res, req, 401, "unauthorized",
                     h ? "metrics token is not valid" : "missing Authorization: Bearer <token>");
    http_response_header(res, "WWW-Authenticate", "Bearer realm=\"metrics\"");
    return 0;
}

json_t *handlers_json_body(struct http_request *req, struct http_response *res)
{
    json_error_t jerr;
    json_t *j;
    char msg[256];

    if (req->body.len == 0) {
        http_reply_error(res, req, 400, "invalid_request", "request body must be a JSON object");
        return NULL;
    }
    j = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s (at byte %d)", jerr.text,
                 jerr.position);
        http_reply_error(res, req, 400, "invalid_json", msg);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_reply_error(res, req, 400, "invalid_request", "request body must be a JSON object");
        return NULL;
    }
    return j;
}
