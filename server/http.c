/* http.c - libmicrohttpd server with a route table.
 *
 * Per-request state is allocated on the first callback in *req_cls and
 * freed in the completed callback (the libmicrohttpd examples' pattern).
 * Routing, the request id, the route's auth, the body cap and the body
 * budget (http_guard.h) are decided on that first call, so an
 * unauthenticated, oversized or unaffordable upload is refused from its
 * headers before a byte of it is read.
 *
 * CORS (the Fetch standard) is answered here too, for the routes marked cors:
 * a preflight OPTIONS carries no credentials, so it is answered before any
 * route's auth, and every answer on those paths (early refusals included)
 * carries the grant for an allowed origin, so a browser app can read its
 * errors. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "http_guard.h"
#include "ids.h"
#include "log.h"

#define HTTP_ALLOW_MAX 64
#define HTTP_ROUTE_UNMATCHED "unmatched"

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_opts opts;
    struct http_guard *guard;
    int port;
};

struct http_state {
    struct http_request req;
    struct http_response res;
    const struct http_route *route;
    char *path_copy;          /* holds the NUL-split params */
    int early_status;         /* 204 (preflight)/401/404/405/413/503 decided before the body */
    int cors;                 /* the path has a cors route */
    const char *cors_pattern; /* its pattern, naming a preflight in logs and metrics */
    int too_big;              /* a chunked body passed the cap */
    struct http_guard *guard;
    size_t reserved; /* of the body budget, given back when freed */
    int over_budget; /* a chunked body found the budget spent */
    struct timespec start;
    char allow[HTTP_ALLOW_MAX];
    void (*suspend_start)(void *arg); /* set by http_suspend during the handler */
    void *suspend_arg;
    void (*cleanup)(void *resume_arg);
};

static const double http_latency_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};

/* X-Request-Id from the client is kept when it is short and plain, so a
 * caller can follow its request through our logs; anything else would let a
 * client inject into log lines. */
static int http_request_id_ok(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len > HTTP_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)id[i]) && !strchr("-_.:", id[i]))
            return 0;
    }
    return 1;
}

static void http_request_id_init(struct http_state *st)
{
    const char *given = http_header(&st->req, "X-Request-Id");
    if (given && http_request_id_ok(given)) {
        snprintf(st->req.request_id, sizeof(st->req.request_id), "%s", given);
        return;
    }
    ids_new_uuid(st->req.request_id);
}

/* Matches path against pattern; on success stores {param} segments in req
 * (pointing into path_copy, which the match splits with NULs). */
static int http_route_match(const char *pattern, const char *path, char *path_copy,
                            struct http_request *req)
{
    const char *p = pattern;
    char *q = path_copy;
    size_t nparams = 0;

    strcpy(path_copy, path);
    while (*p && *q) {
        if (*p == '{') {
            size_t seglen = strcspn(q, "/");
            const char *close = strchr(p, '}');

            if (seglen == 0 || !close || nparams == HTTP_MAX_PARAMS)
                return 0;
            req->params[nparams++] = q;
            p = close + 1;
            q += seglen;
            if (*q == '/' && *p == '/') {
                *q++ = '\0';
                p++;
            }
            continue;
        }
        if (*p != *q)
            return 0;
        p++;
        q++;
    }
    if (*p != '\0' || *q != '\0')
        return 0;
    req->nparams = nparams;
    return 1;
}

static void http_allow_add(char *allow, const char *method)
{
    size_t len = strlen(allow);

    if (strstr(allow, method))
        return;
    snprintf(allow + len, HTTP_ALLOW_MAX - len, "%s%s", len ? ", " : "", method);
}

/* Picks the route for the request, or sets early_status 404/405. HEAD is
 * answered wherever GET is (libmicrohttpd drops the body). */
static void http_route_find(struct http_server *s, struct http_state *st)
{
    const char *method = st->req.method;
    int head = strcmp(method, "HEAD") == 0;

    for (size_t i = 0; i < s->opts.nroutes; i++) {
        const struct http_route *r = &s->opts.routes[i];

        if (!http_route_match(r->pattern, st->req.path, st->path_copy, &st->req))
            continue;
        http_allow_add(st->allow, r->method);
        if (strcmp(r->method, "GET") == 0)
            http_allow_add(st->allow, "HEAD");
        if (r->cors && !st->cors_pattern)
            st->cors_pattern = r->pattern;
        if (!st->route &&
            (strcmp(r->method, method) == 0 || (head && strcmp(r->method, "GET") == 0)))
            st->route = r;
    }
    if (st->cors_pattern) {
        st->cors = 1;
        http_allow_add(st->allow, "OPTIONS");
    }
    if (st->route) {
        /* Match again: a later pattern may have overwritten the params. */
        http_route_match(st->route->pattern, st->req.path, st->path_copy, &st->req);
        st->req.route = st->route->pattern;
        return;
    }
    st->req.route = HTTP_ROUTE_UNMATCHED;
    st->early_status = st->allow[0] ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
}

/* An OPTIONS on a cors path is a preflight: answered 204 before any auth,
 * since browsers send it without credentials. */
static void http_cors_preflight_check(struct http_state *st)
{
    if (st->route || !st->cors || strcmp(st->req.method, MHD_HTTP_METHOD_OPTIONS) != 0)
        return;
    st->early_status = MHD_HTTP_NO_CONTENT;
    st->req.route = st->cors_pattern;
}

static int http_cors_origin_allowed(const struct http_cors *cors, const char *origin)
{
    for (size_t i = 0; i < cors->norigins; i++) {
        if (strcmp(origin, cors->origins[i]) == 0)
            return 1;
    }
    return 0;
}

/* The requested headers (Access-Control-Request-Headers, a comma-separated
 * list) that a real request may send: only these two; anything else is left
 * out, and the browser then refuses the request itself. */
static void http_cors_allowed_headers(const char *requested, char *out, size_t outlen)
{
    static const char *const allowed[] = {"authorization", "content-type"};
    const char *p = requested;

    out[0] = '\0';
    while (p && *p) {
        size_t len;

        p += strspn(p, " \t,");
        len = strcspn(p, " \t,");
        for (size_t i = 0; len && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
            size_t used = strlen(out);

            if (len == strlen(allowed[i]) && strncasecmp(p, allowed[i], len) == 0 &&
                !strstr(out, allowed[i]))
                snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", allowed[i]);
        }
        p += len;
    }
}

static void http_cors_preflight_headers(const struct http_cors *cors,
                                        const struct http_state *st, struct MHD_Response *r)
{
    char headers[64];
    char max_age[16];

    MHD_add_response_header(r, "Access-Control-Allow-Methods", st->allow);
    http_cors_allowed_headers(http_header(&st->req, "Access-Control-Request-Headers"), headers,
                              sizeof(headers));
    if (headers[0])
        MHD_add_response_header(r, "Access-Control-Allow-Headers", headers);
    snprintf(max_age, sizeof(max_age), "%u", cors->max_age);
    MHD_add_response_header(r, "Access-Control-Max-Age", max_age);
}

/* Every answer on a cors path varies by Origin (caches must keep one per
 * origin); an allowed origin gets the grant, never "*", and may read the
 * headers a client needs. A foreign origin gets nothing, so its browser
 * hides the answer from the page. */
/* Adds field to the response's Vary, in the one header a handler may have
 * set already ("Accept"), so caches read one list. */
static void http_vary_add(struct MHD_Response *r, const char *field)
{
    const char *have = MHD_get_response_header(r, MHD_HTTP_HEADER_VARY);
    char both[128];

    if (!have || strlen(have) + strlen(field) + 3 > sizeof(both)) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, field);
        return;
    }
    snprintf(both, sizeof(both), "%s, %s", have, field);
    MHD_del_response_header(r, MHD_HTTP_HEADER_VARY, have);
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, both);
}

static void http_cors_apply(const struct http_cors *cors, const struct http_state *st,
                            struct MHD_Response *r)
{
    const char *origin;

    if (!st->cors)
        return;
    http_vary_add(r, "Origin");
    origin = http_header(&st->req, "Origin");
    if (!origin || !http_cors_origin_allowed(cors, origin))
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    if (st->early_status == MHD_HTTP_NO_CONTENT)
        http_cors_preflight_headers(cors, st, r);
    else
        MHD_add_response_header(r, "Access-Control-Expose-Headers",
                                "X-Request-Id, Location, Retry-After");
}

/* Refuses a body over the route's cap from its Content-Length. */
static void http_body_check(struct http_state *st)
{
    const char *cl = http_header(&st->req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long n;

    if (st->early_status || !cl)
        return;
    n = strtoull(cl, &end, 10);
    if (end == cl || *end != '\0' || n > st->route->max_body)
        st->early_status = MHD_HTTP_CONTENT_TOO_LARGE;
}

/* Runs the route's auth on the headers; a refusal is the early answer. */
static void http_auth_check(struct http_server *s, struct http_state *st)
{
    if (!st->route->auth || st->route->auth(&st->req, s->opts.ctx, &st->res))
        return;
    if (!st->res.status)
        http_reply_error(&st->res, &st->req, 401, "unauthorized", "credentials are not valid");
    st->early_status = st->res.status;
}

/* ---- the process-wide body budget (http_guard.h) ---- */

static void http_budget_refuse(struct http_state *st)
{
    http_reply_error(&st->res, &st->req, 503, "over_capacity",
                     "too many request bodies are being received; retry shortly");
    http_response_header(&st->res, "Retry-After", "1");
    st->early_status = st->res.status;
}

/* Takes the declared body from the budget before reading a byte of it,
 * as much as its buffer will allocate (so a granted body never needs a
 * top-up); when it is spent the request is answered 503 from its headers. */
static void http_budget_check(struct http_state *st)
{
    const char *cl = http_header(&st->req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    size_t need;

    if (st->early_status || !cl)
        return;
    /* checked by http_body_check: a number <= max_body */
    need = buf_capacity_for((size_t)strtoull(cl, NULL, 10));
    if (!http_guard_reserve(st->guard, need)) {
        http_budget_refuse(st);
        return;
    }
    st->reserved = need;
}

/* Keeps the reservation at least as large as the buffer really allocated
 * (a chunked body declares nothing; growth rounds up). 0 when the budget
 * cannot cover it. */
static int http_budget_cover(struct http_state *st)
{
    size_t need = st->req.body.cap;

    if (need <= st->reserved)
        return 1;
    if (!http_guard_reserve(st->guard, need - st->reserved))
        return 0;
    st->reserved = need;
    return 1;
}

/* The budget ran out under a chunked body: its bytes are dropped now (and
 * the rest as it comes) so the client holds nothing; 503 at the end. */
static void http_budget_drop(struct http_state *st)
{
    buf_cleanup(&st->req.body);
    http_guard_release(st->guard, st->reserved);
    st->reserved = 0;
    st->over_budget = 1;
}

static struct http_state *http_state_new(struct MHD_Connection *conn, const char *url,
                                         const char *method, struct http_server *s)
{
    struct http_state *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    st->path_copy = strdup(url);
    if (!st->path_copy) {
        free(st);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &st->start);
    st->guard = s->guard;
    st->req.conn = conn;
    st->req.method = method;
    st->req.path = url;
    buf_init(&st->req.body, 0);
    http_request_id_init(st);
    if (http_guard_path_escaped(s->guard, conn)) {
        st->req.route = HTTP_ROUTE_UNMATCHED;
        st->early_status = MHD_HTTP_NOT_FOUND;
        return st;
    }
    http_route_find(s, st);
    http_cors_preflight_check(st);
    if (st->route) {
        st->req.body.max = st->route->max_body;
        http_auth_check(s, st);
        http_body_check(st);
        http_budget_check(st);
    }
    return st;
}

static void http_response_cleanup(struct http_response *res)
{
    free(res->body);
    res->body = NULL;
    for (size_t i = 0; i < res->nheaders; i++) {
        free(res->headers[i].name);
        free(res->headers[i].value);
    }
    res->nheaders = 0;
}

static void http_state_free(struct http_state *st)
{
    if (!st)
        return;
    if (st->req.resume_arg && st->cleanup)
        st->cleanup(st->req.resume_arg);
    http_response_cleanup(&st->res);
    buf_cleanup(&st->req.body);
    http_guard_release(st->guard, st->reserved);
    free(st->path_copy);
    free(st);
}

/* The answer decided before the body; the auth check writes its own. */
static void http_early_reply(struct http_state *st)
{
    if (st->res.status)
        return;
    switch (st->early_status) {
    case MHD_HTTP_NO_CONTENT:
        http_reply_bytes(&st->res, 204, NULL, "", 0);
        http_response_header(&st->res, "Allow", st->allow);
        break;
    case MHD_HTTP_NOT_FOUND:
        http_reply_error(&st->res, &st->req, 404, "not_found", "no such route");
        break;
    case MHD_HTTP_METHOD_NOT_ALLOWED:
        http_reply_error(&st->res, &st->req, 405, "method_not_allowed",
                         "method not allowed on this route");
        http_response_header(&st->res, "Allow", st->allow);
        break;
    default:
        http_reply_error(&st->res, &st->req, 413, "too_large", "request body is too large");
        break;
    }
}

static enum MHD_Result http_send(struct http_server *s, struct MHD_Connection *conn,
                                 struct http_state *st)
{
    struct http_response *res = &st->res;
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(res->len, res->body, MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    res->body = NULL; /* MHD frees it now */
    if (res->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    MHD_add_response_header(r, "X-Request-Id", st->req.request_id);
    for (size_t i = 0; i < res->nheaders; i++)
        MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    http_cors_apply(&s->opts.cors, st, r);
    ret = MHD_queue_response(conn, (unsigned)res->status, r);
    MHD_destroy_response(r);
    http_guard_request_answered(st->guard, conn);
    return ret;
}

/* Takes a chunk of body; past the cap the rest is read and dropped so the
 * 413 can still be sent on the same connection. */
static void http_body_take(struct http_state *st, const char *data, size_t size)
{
    if (st->early_status || st->too_big || st->over_budget)
        return;
    if (buf_append(&st->req.body, data, size) != RZ_OK)
        st->too_big = 1;
    else if (!http_budget_cover(st))
        http_budget_drop(st);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_data_size,
                                   void **req_cls)
{
    struct http_server *s = cls;
    struct http_state *st = *req_cls;

    if (!st) {
        st = http_state_new(conn, url, method, s);
        if (!st)
            return MHD_NO;
        *req_cls = st;
        if (!st->early_status)
            return MHD_YES;
        /* Answer 401/404/405/413 before reading any body: libmicrohttpd then
         * sends the response and closes, instead of receiving (say) 1 GB
         * just to refuse it. */
        http_early_reply(st);
        return http_send(s, conn, st);
    }
    if (*upload_data_size) {
        http_body_take(st, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->too_big && !st->early_status)
        st->early_status = MHD_HTTP_CONTENT_TOO_LARGE;
    if (st->over_budget && !st->early_status)
        http_budget_refuse(st);
    if (st->early_status)
        http_early_reply(st);
    else
        st->route->handler(&st->req, s->opts.ctx, &st->res);
    if (st->suspend_start && !st->res.status) {
        void (*start)(void *) = st->suspend_start;

        /* Suspended before the work starts, so its resume always comes
         * after the suspension. */
        st->suspend_start = NULL;
        st->req.resumed = 1;
        MHD_suspend_connection(conn);
        start(st->suspend_arg);
        return MHD_YES;
    }
    st->suspend_start = NULL;
    if (!st->res.status)
        http_reply_error(&st->res, &st->req, 500, "internal", "handler gave no response");
    return http_send(s, conn, st);
}

static double http_elapsed(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* The one line per request, built without a jansson object: it is written
 * for every request, and an object per line cost more than the handlers. */
static void http_log_request(const struct http_state *st, double secs, int completed)
{
    struct log_line l;

    log_line_begin(&l, st->res.status >= 500 ? LOG_WARN : LOG_INFO, "request");
    log_line_str(&l, "request_id", st->req.request_id);
    log_line_str(&l, "method", st->req.method);
    log_line_str(&l, "path", st->req.path);
    log_line_str(&l, "route", st->req.route);
    log_line_int(&l, "status", st->res.status);
    log_line_num(&l, "ms", (double)(long long)(secs * 1e6) / 1000.0);
    log_line_int(&l, "bytes", (long long)st->res.len);
    log_line_bool(&l, "completed", completed);
    log_line_end(&l);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_state *st = *req_cls;
    char labels[256];
    double secs;

    if (!st)
        return;
    secs = http_elapsed(&st->start);
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", st->req.route,
             st->route ? st->route->method : "other", st->res.status);
    metrics_add(s->opts.metrics, "resizer_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", st->req.route);
    metrics_observe(s->opts.metrics, "resizer_http_request_duration_seconds", labels, secs);
    http_log_request(st, secs, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    http_state_free(st);
    *req_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void http_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_printf(LOG_WARN, "http_server", "%s", msg);
}

static enum rz_err http_metrics_register(struct metrics *m)
{
    enum rz_err err = metrics_register(m, "resizer_http_requests_total", METRICS_COUNTER,
                                       "HTTP requests by route, method and status", NULL, 0);

    if (err != RZ_OK && err != RZ_ECONFLICT)
        return err;
    err = metrics_register(m, "resizer_http_request_duration_seconds", METRICS_HISTOGRAM,
                           "HTTP request latency by route", http_latency_buckets,
                           sizeof(http_latency_buckets) / sizeof(http_latency_buckets[0]));
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

/* Descriptors kept back from client connections: S3 connections, the
 * listener, logs, libvips' files. */
#define HTTP_FD_RESERVE 128

/* The configured limit, lowered (and said so) when the fd limit could not
 * hold it: libmicrohttpd would otherwise fail accept() at random instead
 * of refusing cleanly. */
static unsigned http_connection_limit(long wanted)
{
    struct rlimit rl;
    rlim_t room;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return (unsigned)wanted;
    room = rl.rlim_cur > 2 * HTTP_FD_RESERVE ? rl.rlim_cur - HTTP_FD_RESERVE : rl.rlim_cur / 2;
    if ((rlim_t)wanted <= room)
        return (unsigned)wanted;
    log_fields(LOG_WARN, "connection_limit_lowered",
               json_pack("{s:I,s:I,s:I}", "wanted", (json_int_t)wanted, "limit",
                         (json_int_t)room, "fd_limit", (json_int_t)rl.rlim_cur));
    return (unsigned)room;
}

enum rz_err http_server_start(const struct http_server_opts *opts, struct http_server **out,
                              char *msg, size_t msglen)
{
    struct http_server *s = NULL;
    struct sockaddr_in addr;
    const union MHD_DaemonInfo *info;
    enum rz_err err = RZ_EINVAL;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opts->port);
    if (inet_pton(AF_INET, opts->listen_addr, &addr.sin_addr) != 1) {
        snprintf(msg, msglen, "LISTEN_ADDR: %s is not an IPv4 address", opts->listen_addr);
        goto fail;
    }
    err = http_metrics_register(opts->metrics);
    if (err != RZ_OK)
        goto fail;
    s = calloc(1, sizeof(*s));
    err = RZ_ENOMEM;
    if (!s)
        goto fail;
    s->opts = *opts;
    err = http_guard_new(opts->body_budget, opts->request_timeout, opts->metrics, &s->guard);
    if (err != RZ_OK)
        goto fail;
    s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME,
                                 0, NULL, NULL, http_access, s, MHD_OPTION_EXTERNAL_LOGGER,
                                 http_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
                                 (unsigned)opts->threads, MHD_OPTION_CONNECTION_TIMEOUT,
                                 opts->connection_timeout, MHD_OPTION_CONNECTION_LIMIT,
                                 http_connection_limit(opts->max_connections),
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, opts->connection_memory,
                                 MHD_OPTION_NOTIFY_CONNECTION, http_guard_on_connection,
                                 s->guard, MHD_OPTION_URI_LOG_CALLBACK,
                                 http_guard_on_request_line, s->guard,
                                 MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024U,
                                 MHD_OPTION_NOTIFY_COMPLETED, http_completed, s, MHD_OPTION_END);
    err = RZ_EINVAL;
    if (!s->daemon) {
        snprintf(msg, msglen, "cannot listen on %s:%d (in use?)", opts->listen_addr, opts->port);
        goto fail;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : opts->port;
    *out = s;
    return RZ_OK;
fail:
    if (s)
        http_guard_free(s->guard);
    free(s);
    return err;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_suspend(struct http_request *req, void (*start)(void *arg), void *arg,
                  void (*cleanup)(void *resume_arg))
{
    struct http_state *st = (struct http_state *)req; /* req is its first member */

    st->suspend_start = start;
    st->suspend_arg = arg;
    st->cleanup = cleanup;
}

void http_resume(struct http_request *req)
{
    MHD_resume_connection(req->conn);
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon);
    http_guard_free(s->guard);
    free(s);
}

const char *http_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_reply_bytes(struct http_response *res, int status, const char *content_type,
                      const void *data, size_t len)
{
    free(res->body);
    res->body = malloc(len ? len : 1);
    res->len = res->body ? len : 0;
    if (res->body && len)
        memcpy(res->body, data, len);
    res->status = res->body ? status : 500;
    res->content_type = content_type;
}

void http_reply_json(struct http_response *res, int status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(json);
    free(res->body);
    res->content_type = "application/json";
    if (!text) {
        res->body = strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
        res->len = res->body ? strlen(res->body) : 0;
        res->status = 500;
        return;
    }
    res->body = text;
    res->len = strlen(text);
    res->status = status;
}

void http_reply_error(struct http_response *res, const struct http_request *req, int status,
                      const char *code, const char *message)
{
    http_reply_json(res, status,
                    json_pack("{s:{s:s,s:s,s:s}}", "error", "code", code, "message", message,
                              "request_id", req->request_id));
}

void http_reply_rz_error(struct http_response *res, const struct http_request *req,
                         enum rz_err err, const char *message)
{
    static const struct {
        enum rz_err err;
        int status;
        const char *code;
        const char *retry_after;
    } map[] = {
        {RZ_EINVAL, 400, "invalid_request", NULL},
        {RZ_ETOOBIG, 413, "too_large", NULL},
        {RZ_EAUTH, 401, "unauthorized", NULL},
        {RZ_ENOTFOUND, 404, "not_found", NULL},
        {RZ_ECONFLICT, 409, "conflict", NULL},
        {RZ_EFULL, 429, "busy", "1"},
        {RZ_ESHUTDOWN, 503, "draining", "5"},
        {RZ_EUPSTREAM, 503, "upstream_unavailable", "5"},
        {RZ_EDENIED, 502, "upstream_denied", NULL},
        {RZ_EUNSUPPORTED, 415, "unsupported_format", NULL},
        {RZ_EPIXELS, 422, "too_many_pixels", NULL},
        {RZ_ECORRUPT, 422, "corrupt_image", NULL},
        {RZ_ELIMIT, 422, "encoder_limit", NULL},
        {RZ_ENOMEM, 503, "out_of_memory", "1"},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].err != err)
            continue;
        http_reply_error(res, req, map[i].status, map[i].code, message);
        if (map[i].retry_after)
            http_response_header(res, "Retry-After", map[i].retry_after);
        return;
    }
    http_reply_error(res, req, 500, "internal", message);
}

void http_response_header(struct http_response *res, const char *name, const char *value)
{
    struct http_header *h;

    if (res->nheaders == HTTP_MAX_HEADERS)
        return;
    h = &res->headers[res->nheaders];
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return;
    }
    res->nheaders++;
}

/* Hashing both sides first makes the comparison take the same time
 * whatever the lengths, so neither a token's length nor its prefix leaks. */
int http_secret_equal(const char *presented, const char *expected)
{
    unsigned char a[SHA256_DIGEST_LENGTH];
    unsigned char b[SHA256_DIGEST_LENGTH];
    int same;

    if (!presented || !expected)
        return 0;
    SHA256((const unsigned char *)presented, strlen(presented), a);
    SHA256((const unsigned char *)expected, strlen(expected), b);
    same = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return same;
}
