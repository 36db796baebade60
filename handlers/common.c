/* common.c - the route table and the checks every route group shares. */
#include "handlers.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include "server/log.h"

#define HANDLERS_MAX_UPLOAD_BODY (16 * 1024)

/* Order matters only for readability: the server matches every pattern. */
const struct http_route handlers_routes[] = {
    {"GET", "/healthz", handlers_healthz, 0, NULL, 0},
    {"GET", "/readyz", handlers_readyz, 0, NULL, 0},
    {"GET", "/metrics", handlers_metrics, 0, handlers_metrics_auth, 0},
    {"GET", "/openapi.yaml", handlers_openapi, 0, NULL, 0},
    {"GET", "/", handlers_page_index, 0, NULL, 0},
    {"GET", "/app.js", handlers_page_js, 0, NULL, 0},
    {"GET", "/app.css", handlers_page_css, 0, NULL, 0},
    /* The client API is open to browsers on CORS_ALLOWED_ORIGINS (the last
     * field); events and operations are not for browsers. */
    {"POST", "/v1/uploads", handlers_uploads_create, HANDLERS_MAX_UPLOAD_BODY,
     handlers_client_auth, 1},
    {"POST", "/v1/events", handlers_events_post, EVENTS_MAX_BODY, handlers_events_auth, 0},
    /* MinIO's probe before it sends: open, it reveals nothing. */
    {"HEAD", "/v1/events", handlers_events_head, 0, NULL, 0},
    {"GET", "/v1/images", handlers_images_list, 0, handlers_client_auth, 1},
    {"GET", "/v1/images/{id}", handlers_images_get, 0, handlers_client_auth, 1},
    {"GET", "/v1/images/{id}/variants/{name}", handlers_images_variant, 0, handlers_client_auth,
     1},
    {"POST", "/v1/images/{id}/retry", handlers_images_retry, 0, handlers_client_auth, 1},
};

const size_t handlers_nroutes = sizeof(handlers_routes) / sizeof(handlers_routes[0]);

int handlers_client_auth(struct http_request *req, void *ctx, struct http_response *res)
{
    const struct app *app = ctx;
    const char *h = http_header(req, "Authorization");
    struct auth_caller caller;
    enum auth_refusal why = AUTH_NO_TOKEN;
    int bearer = h && strncasecmp(h, "Bearer ", 7) == 0;

    if (bearer && auth_check(app->auth, h + 7, time(NULL), &caller, &why) == RZ_OK) {
        snprintf(req->caller, sizeof(req->caller), "%s", caller.name);
        req->caller_admin = caller.admin;
        return 1;
    }
    /* The client learns nothing of why; the log says which check failed. */
    log_fields(LOG_INFO, "auth_refused",
               json_pack("{s:s,s:s,s:s}", "request_id", req->request_id, "route", req->route,
                         "reason",
                         !h       ? "no_authorization"
                         : bearer ? auth_refusal_name(why)
                                  : "not_bearer"));
    http_reply_error(res, req, 401, "unauthorized", "token is not valid");
    http_response_header(res, "WWW-Authenticate", "Bearer");
    return 0;
}

int handlers_may_see(const struct http_request *req, const char *uploader)
{
    if (req->caller_admin)
        return 1;
    return uploader && req->caller[0] && strcmp(uploader, req->caller) == 0;
}

int handlers_metrics_auth(struct http_request *req, void *ctx, struct http_response *res)
{
    const struct app *app = ctx;
    const char *h = http_header(req, "Authorization");

    if (!app->cfg->metrics_token)
        return 1;
    if (h && strncasecmp(h, "Bearer ", 7) == 0 &&
        http_secret_equal(h + 7, app->cfg->metrics_token))
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
