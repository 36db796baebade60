/* http_guard.h - what bounds the cost of hostile HTTP clients, beyond the
 * per-route body caps and the idle timeout of http.c:
 *
 *  - a process-wide budget of buffered request-body bytes, so many slow
 *    uploads together cannot grow memory past it (503 + Retry-After once
 *    it is spent);
 *  - an absolute deadline per request: its line, headers and body must
 *    arrive within request_timeout seconds however steadily they trickle
 *    (libmicrohttpd's idle timeout restarts with every byte). A watchdog
 *    thread shuts down the socket of a request past its deadline, which
 *    makes libmicrohttpd close the connection and free its request.
 *
 * The deadline runs from accept for a connection's first request and from
 * its request line for the next ones on a kept-alive connection (an idle
 * kept-alive connection is left to the idle timeout); it stops once the
 * response is queued. */
#ifndef RESIZER_HTTP_GUARD_H
#define RESIZER_HTTP_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "err.h"
#include "metrics.h"

struct http_guard;

/* Starts the watchdog. metrics (borrowed, may be NULL) gets the gauge
 * resizer_http_body_bytes_buffered and the counters
 * resizer_http_body_budget_refusals_total and
 * resizer_http_request_deadline_cuts_total. Frees with http_guard_free. */
enum rz_err http_guard_new(uint64_t body_budget, unsigned request_timeout_s,
                           struct metrics *metrics, struct http_guard **out);

/* Stops the watchdog; call after the HTTP daemon is stopped. NULL: no-op. */
void http_guard_free(struct http_guard *g);

/* Takes n bytes from the budget: 1 on success, 0 (and nothing taken) when
 * that would pass it. n == 0 always succeeds. Thread-safe. */
int http_guard_reserve(struct http_guard *g, size_t n);

/* Gives back n bytes taken by http_guard_reserve. */
void http_guard_release(struct http_guard *g, size_t n);

/* Bytes of the budget in use now. */
uint64_t http_guard_used(struct http_guard *g);

/* libmicrohttpd callbacks, registered by http.c with g as their cls:
 * MHD_OPTION_NOTIFY_CONNECTION and MHD_OPTION_URI_LOG_CALLBACK (which
 * returns NULL, the initial per-request state http.c expects). */
void http_guard_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code);
void *http_guard_on_request_line(void *cls, const char *uri, struct MHD_Connection *conn);

/* The request on conn has its response queued: its deadline stops. */
/* Whether the path of conn's current request line held a percent escape.
 * libmicrohttpd routes on the decoded path, so "/%6detrics" and
 * "/metrics%00x" would reach /metrics past a balancer's rule that matches
 * the literal path; no route of ours needs an escape in its path (the query
 * is not concerned). 0 for a connection the guard could not track (out of
 * memory when it was accepted): a 404 there would drop EventBridge's
 * events, which it does not deliver again. */
int http_guard_path_escaped(struct http_guard *g, struct MHD_Connection *conn);

void http_guard_request_answered(struct http_guard *g, struct MHD_Connection *conn);

#endif
