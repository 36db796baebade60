/* http.h - the HTTP server: libmicrohttpd, a route table, request bodies
 * with per-route caps, JSON errors, request ids, one log line and metrics
 * per request.
 *
 * Handlers run on MHD's thread pool and must not block for long: they parse,
 * call one core module and render. Errors from the core are turned into
 * statuses only here (http_reply_rz_error). */
#ifndef RESIZER_HTTP_H
#define RESIZER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "err.h"
#include "metrics.h"

#define HTTP_MAX_PARAMS 4
#define HTTP_MAX_HEADERS 8
#define HTTP_REQUEST_ID_MAX 64
#define HTTP_CALLER_MAX 128

struct MHD_Connection;

/* One request, owned by the server; valid during the handler call. */
struct http_request {
    struct MHD_Connection *conn;
    const char *method;
    const char *path;  /* without the query string */
    const char *route; /* the matched pattern, for logs and metrics */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    const char *params[HTTP_MAX_PARAMS]; /* {name} segments of the pattern, in order */
    size_t nparams;
    struct buf body;
    char caller[HTTP_CALLER_MAX + 1]; /* set by the route's auth; "" on open routes */
    int caller_admin;
    int resumed;      /* the handler runs again after http_suspend */
    void *resume_arg; /* the handler's, kept across the suspension */
};

struct http_header {
    char *name;
    char *value;
};

/* What a handler fills in. Owned by the server; set through the helpers. */
struct http_response {
    int status;
    char *body; /* malloc'd */
    size_t len;
    const char *content_type; /* static string */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
};

typedef void (*http_handler_fn)(struct http_request *req, void *ctx, struct http_response *res);

/* Decides from the request line and headers alone whether the caller may
 * use the route. It runs on the first callback, before one byte of body is
 * read, so an unauthenticated client can neither make us buffer a body nor
 * learn whether it was too large. Returns 1, or 0 after writing the refusal
 * (401 and its WWW-Authenticate) into res. */
typedef int (*http_auth_fn)(struct http_request *req, void *ctx, struct http_response *res);

/* One route: method and pattern ("/v1/images/{id}"; a {name} segment matches
 * one non-empty path segment). max_body 0 refuses any body. auth NULL: the
 * route is open. cors 1: browsers on the policy's origins may call it (its
 * path answers preflights, its responses carry the grant). */
struct http_route {
    const char *method;
    const char *pattern;
    http_handler_fn handler;
    size_t max_body;
    http_auth_fn auth;
    int cors;
};

/* Which browser origins may call the cors routes. Origins are compared
 * exactly ("https://app.example.com", as browsers send Origin); none: no
 * origin gets a grant, and preflights are still answered (without one). */
struct http_cors {
    const char *const *origins; /* borrowed for the server's lifetime */
    size_t norigins;
    unsigned max_age; /* seconds a browser may cache a preflight */
};

struct http_server_opts {
    const char *listen_addr; /* IPv4 dotted quad */
    int port;                /* 0 picks a free port (tests) */
    int threads;
    unsigned connection_timeout;     /* seconds idle */
    long max_connections;            /* lowered to fit the fd limit */
    size_t connection_memory;        /* bytes per connection (line, headers, buffer) */
    uint64_t body_budget;            /* bytes of bodies buffered at once, all requests */
    unsigned request_timeout;        /* seconds for a request's line, headers and body */
    const struct http_route *routes; /* borrowed for the server's lifetime */
    size_t nroutes;
    void *ctx;               /* passed to every handler */
    struct metrics *metrics; /* borrowed; families are registered by http_server_start */
    struct http_cors cors;
};

struct http_server;

/* Starts listening and serving. *out is freed with http_server_stop.
 * RZ_EINVAL with msg on a bad address or a port in use. */
enum rz_err http_server_start(const struct http_server_opts *opts, struct http_server **out,
                              char *msg, size_t msglen);

/* The port actually bound. */
int http_server_port(const struct http_server *s);

/* Stops accepting connections, closes idle ones, waits for handlers and
 * frees everything; NULL is a no-op. */
void http_server_stop(struct http_server *s);

/* A request header (case-insensitive), or NULL. */
const char *http_header(const struct http_request *req, const char *name);

/* A query argument (decoded), or NULL. */
const char *http_query(const struct http_request *req, const char *name);

/* Sets a JSON body (steals json) with the given status. */
void http_reply_json(struct http_response *res, int status, json_t *json);

/* Sets a body from bytes (copied) with a static content type. */
void http_reply_bytes(struct http_response *res, int status, const char *content_type,
                      const void *data, size_t len);

/* Sets the error shape {"error":{"code","message","request_id"}}. */
void http_reply_error(struct http_response *res, const struct http_request *req, int status,
                      const char *code, const char *message);

/* Maps a core error to its status and error code, with message. */
void http_reply_rz_error(struct http_response *res, const struct http_request *req,
                         enum rz_err err, const char *message);

/* Adds a response header (both copied). Silently drops past HTTP_MAX_HEADERS. */
void http_response_header(struct http_response *res, const char *name, const char *value);

/* Constant-time comparison of a presented secret with an expected one. */
int http_secret_equal(const char *presented, const char *expected);

/* For a handler that must wait on I/O without holding an HTTP thread (one
 * thread serves many connections: waiting there would stall /healthz).
 * The handler stores what it waits for in req->resume_arg, calls this and
 * returns without a response. The connection is suspended, then start(arg)
 * runs; whoever finishes the work calls http_resume(req) (from any thread,
 * exactly once), and the handler is called again with req->resumed = 1.
 * cleanup(req->resume_arg) runs when the request ends if resume_arg is
 * still set then (the client went away). */
void http_suspend(struct http_request *req, void (*start)(void *arg), void *arg,
                  void (*cleanup)(void *resume_arg));
void http_resume(struct http_request *req);

#endif
