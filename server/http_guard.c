/* http_guard.c - body budget and request deadlines (see http_guard.h). */
#include "http_guard.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "log.h"

/* How often the watchdog looks: a request is cut at most this late. */
#define HTTP_GUARD_TICK_MS 250

/* One open connection; lives in the socket context from libmicrohttpd's
 * STARTED notification to its CLOSED one, which comes before the socket
 * is closed, so the watchdog never shuts down a reused descriptor. */
struct http_guard_conn {
    int fd;
    int in_request;     /* receiving a request: its deadline runs */
    int cut;            /* shut down already */
    int path_escaped;   /* the request line's path held a %: see http_guard.h */
    int64_t started_ms; /* monotonic: accept, or the request line */
    struct http_guard_conn *prev;
    struct http_guard_conn *next;
};

struct http_guard {
    uint64_t budget;
    uint64_t used; /* atomic */
    int64_t timeout_ms;
    struct metrics *metrics;
    pthread_mutex_t lock; /* conns, stopping */
    pthread_cond_t wake;
    struct http_guard_conn *conns;
    int stopping;
    int started;
    pthread_t thread;
};

int http_guard_reserve(struct http_guard *g, size_t n)
{
    uint64_t cur = __atomic_load_n(&g->used, __ATOMIC_RELAXED);

    if (n == 0)
        return 1;
    do {
        if (n > g->budget || cur > g->budget - n) {
            metrics_add(g->metrics, "resizer_http_body_budget_refusals_total", "", 1);
            return 0;
        }
    } while (!__atomic_compare_exchange_n(&g->used, &cur, cur + n, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return 1;
}

void http_guard_release(struct http_guard *g, size_t n)
{
    if (n)
        __atomic_fetch_sub(&g->used, (uint64_t)n, __ATOMIC_RELAXED);
}

uint64_t http_guard_used(struct http_guard *g)
{
    return __atomic_load_n(&g->used, __ATOMIC_RELAXED);
}

static double http_guard_used_gauge(void *arg)
{
    return (double)http_guard_used(arg);
}

static void http_guard_unlink(struct http_guard *g, struct http_guard_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

void http_guard_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    struct http_guard *g = cls;
    struct http_guard_conn *c = *socket_context;
    const union MHD_ConnectionInfo *info;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!c)
            return;
        pthread_mutex_lock(&g->lock);
        http_guard_unlink(g, c);
        pthread_mutex_unlock(&g->lock);
        free(c);
        *socket_context = NULL;
        return;
    }
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c = info ? calloc(1, sizeof(*c)) : NULL;
    if (!c)
        return; /* unguarded: the idle timeout still applies */
    c->fd = info->connect_fd;
    c->in_request = 1;
    c->started_ms = clock_mono_ms();
    pthread_mutex_lock(&g->lock);
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    pthread_mutex_unlock(&g->lock);
    *socket_context = c;
}

static struct http_guard_conn *http_guard_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info ? info->socket_context : NULL;
}

void *http_guard_on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_guard *g = cls;
    struct http_guard_conn *c = http_guard_conn_of(conn);

    if (!c)
        return NULL;
    pthread_mutex_lock(&g->lock);
    /* The first request's deadline runs from accept, so a slow request
     * line gains nothing. */
    if (!c->in_request) {
        c->in_request = 1;
        c->started_ms = clock_mono_ms();
    }
    c->path_escaped = memchr(uri, '%', strcspn(uri, "?")) != NULL;
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int http_guard_path_escaped(struct http_guard *g, struct MHD_Connection *conn)
{
    struct http_guard_conn *c = http_guard_conn_of(conn);
    int escaped;

    if (!c)
        return 0; /* unguarded (out of memory at accept): served as before */
    pthread_mutex_lock(&g->lock);
    escaped = c->path_escaped;
    pthread_mutex_unlock(&g->lock);
    return escaped;
}

void http_guard_request_answered(struct http_guard *g, struct MHD_Connection *conn)
{
    struct http_guard_conn *c = http_guard_conn_of(conn);

    if (!c)
        return;
    pthread_mutex_lock(&g->lock);
    c->in_request = 0;
    pthread_mutex_unlock(&g->lock);
}

/* Shuts down every connection whose request is past its deadline; the
 * daemon then reads EOF, closes it and completes its request. Called with
 * g->lock held. Returns how many were cut. */
static unsigned http_guard_sweep(struct http_guard *g)
{
    int64_t now = clock_mono_ms();
    unsigned cut = 0;

    for (struct http_guard_conn *c = g->conns; c; c = c->next) {
        if (!c->in_request || c->cut || now - c->started_ms < g->timeout_ms)
            continue;
        shutdown(c->fd, SHUT_RDWR);
        c->cut = 1;
        cut++;
    }
    return cut;
}

static void http_guard_wait(struct http_guard *g)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += HTTP_GUARD_TICK_MS * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g->wake, &g->lock, &deadline);
}

static void *http_guard_main(void *arg)
{
    struct http_guard *g = arg;

    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        unsigned cut = http_guard_sweep(g);

        if (cut) {
            metrics_add(g->metrics, "resizer_http_request_deadline_cuts_total", "", cut);
            log_fields(LOG_WARN, "request_deadline",
                       json_pack("{s:i,s:I}", "connections_cut", (int)cut, "deadline_s",
                                 (json_int_t)(g->timeout_ms / 1000)));
        }
        http_guard_wait(g);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static enum rz_err http_guard_metrics(struct http_guard *g)
{
    static const char *const counters[][2] = {
        {"resizer_http_body_budget_refusals_total",
         "requests refused with 503 because HTTP_BODY_BUDGET was spent"},
        {"resizer_http_request_deadline_cuts_total",
         "connections closed because a request passed HTTP_REQUEST_TIMEOUT"},
    };
    enum rz_err err = RZ_OK;

    if (!g->metrics)
        return RZ_OK;
    for (size_t i = 0; i < 2 && (err == RZ_OK || err == RZ_ECONFLICT); i++)
        err = metrics_register(g->metrics, counters[i][0], METRICS_COUNTER, counters[i][1], NULL,
                               0);
    if (err == RZ_OK || err == RZ_ECONFLICT)
        err =
            metrics_register_gauge_fn(g->metrics, "resizer_http_body_bytes_buffered",
                                      "request-body bytes held now (HTTP_BODY_BUDGET bounds it)",
                                      "", http_guard_used_gauge, g);
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

enum rz_err http_guard_new(uint64_t body_budget, unsigned request_timeout_s,
                           struct metrics *metrics, struct http_guard **out)
{
    struct http_guard *g = calloc(1, sizeof(*g));
    enum rz_err err = RZ_ENOMEM;

    if (!g)
        goto fail;
    g->budget = body_budget;
    g->timeout_ms = (int64_t)request_timeout_s * 1000;
    g->metrics = metrics;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    err = http_guard_metrics(g);
    if (err != RZ_OK)
        goto fail;
    err = RZ_EINTERNAL;
    if (pthread_create(&g->thread, NULL, http_guard_main, g) != 0)
        goto fail;
    g->started = 1;
    *out = g;
    return RZ_OK;
fail:
    http_guard_free(g);
    return err;
}

void http_guard_free(struct http_guard *g)
{
    if (!g)
        return;
    if (g->started) {
        pthread_mutex_lock(&g->lock);
        g->stopping = 1;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
    }
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
}
