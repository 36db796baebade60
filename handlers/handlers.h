/* handlers.h - the route table and what the handlers share.
 *
 * Each handler parses its request, calls one core module and renders
 * JSON; none talks to libcurl or libvips itself. */
#ifndef RESIZER_HANDLERS_H
#define RESIZER_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "server/auth.h"
#include "server/config.h"
#include "server/http.h"
#include "server/index.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/readiness.h"
#include "server/s3.h"
#include "server/status.h"

/* The core objects the handlers use; built and owned by main. */
struct app {
    const struct config *cfg;
    struct metrics *metrics;
    struct s3 *s3;         /* presigning */
    struct status *status; /* every record read and change */
    struct jobs *jobs;
    struct readiness *readiness;
    struct auth *auth;
};

extern const struct http_route handlers_routes[];
extern const size_t handlers_nroutes;

/* Route auth (http_auth_fn, run before the body is read): "Authorization:
 * Bearer <token>", a named token or a JWT (server/auth.h). On success the
 * caller is stored in req->caller and req->caller_admin and 1 is returned;
 * else 0 after writing the 401 (with WWW-Authenticate) that says only
 * "token is not valid", and a log line with the check that failed. ctx is
 * the struct app. */
int handlers_client_auth(struct http_request *req, void *ctx, struct http_response *res);

/* 1 when the request's caller may see an image uploaded by uploader (NULL:
 * none): admins see all, other callers only their own. */
int handlers_may_see(const struct http_request *req, const char *uploader);

/* Route auth of /v1/events: the EventBridge connection's API key or Basic
 * credentials, in constant time. Same contract. */
int handlers_events_auth(struct http_request *req, void *ctx, struct http_response *res);

/* Route auth of /metrics: open unless METRICS_TOKEN is set, then
 * "Authorization: Bearer <METRICS_TOKEN>" (Prometheus: authorization:
 * credentials), in constant time. Same contract. */
int handlers_metrics_auth(struct http_request *req, void *ctx, struct http_response *res);

/* Parses a JSON object body with duplicate keys refused. NULL after
 * writing a 400 that says what is wrong. */
json_t *handlers_json_body(struct http_request *req, struct http_response *res);

void handlers_healthz(struct http_request *req, void *ctx, struct http_response *res);
void handlers_readyz(struct http_request *req, void *ctx, struct http_response *res);
void handlers_metrics(struct http_request *req, void *ctx, struct http_response *res);
void handlers_openapi(struct http_request *req, void *ctx, struct http_response *res);
/* The upload page (GET /) and its script and style, built into the binary. */
void handlers_page_index(struct http_request *req, void *ctx, struct http_response *res);
void handlers_page_js(struct http_request *req, void *ctx, struct http_response *res);
void handlers_page_css(struct http_request *req, void *ctx, struct http_response *res);
void handlers_uploads_create(struct http_request *req, void *ctx, struct http_response *res);
void handlers_events_post(struct http_request *req, void *ctx, struct http_response *res);
void handlers_events_head(struct http_request *req, void *ctx, struct http_response *res);
void handlers_images_get(struct http_request *req, void *ctx, struct http_response *res);
void handlers_images_list(struct http_request *req, void *ctx, struct http_response *res);
void handlers_images_variant(struct http_request *req, void *ctx, struct http_response *res);
void handlers_images_retry(struct http_request *req, void *ctx, struct http_response *res);

#endif
