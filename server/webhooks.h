/* webhooks.h - signed completion notifications (Standard Webhooks).
 *
 * When an image reaches done or failed, webhooks_notify turns its status
 * record into one message ({"type","timestamp","data"}) per endpoint of
 * WEBHOOK_URLS and puts it in the outbox; the module's own threads POST it
 * with the webhook-id, webhook-timestamp and webhook-signature headers of
 * standardwebhooks.com, and retry on the schedule below. Nothing here ever
 * waits on a receiver in the caller's thread: notify costs a JSON render
 * and a mutex, plus, with the shared outbox, one conditional PutItem per
 * endpoint (bounded by the DynamoDB client's timeouts).
 *
 * Outcomes: 2xx delivered; 4xx other than 408 and 429 final (rejected; a
 * 410 is logged as gone); anything else (3xx: redirects are not followed,
 * 408, 429, 5xx, timeouts, connection errors) retried after 5 s, 5 min,
 * 30 min, 2 h, 5 h, 10 h, 10 h (with WEBHOOK_RETRY_BASE_MS=5000; each wait
 * is that many base units, +-20% jitter), then given up (expired). */
#ifndef RESIZER_WEBHOOKS_H
#define RESIZER_WEBHOOKS_H

#include <stddef.h>

#include "err.h"
#include "index.h"
#include "metrics.h"
#include "outbox.h"

#define WEBHOOKS_MAX_URLS 8
#define WEBHOOKS_MAX_SECRETS 2  /* the current secret and the next, while it rotates */
#define WEBHOOKS_MAX_ATTEMPTS 8 /* the first and 7 retries: about 27.5 h in all */

struct webhooks;

struct webhooks_opts {
    const char *urls;      /* WEBHOOK_URLS, checked by webhooks_check_urls; copied */
    const char *secrets;   /* WEBHOOK_SECRET; decoded, copied, wiped at free */
    long timeout_ms;       /* per attempt, connect included */
    long retry_base_ms;    /* the schedule's unit (5000 in production) */
    int max_attempts;      /* 1..WEBHOOKS_MAX_ATTEMPTS */
    size_t queue_size;     /* deliveries held by the memory outbox */
    struct outbox *outbox; /* NULL: a memory outbox of queue_size; else taken
                                * over (freed by webhooks_free, or on failure) */
    size_t threads;        /* delivery threads, >= 1 */
    struct metrics *metrics;
};

/* Checks WEBHOOK_URLS: 1 to 8 comma-separated URLs, https://, or http://
 * to a loopback host (127.0.0.0/8, localhost, [::1]); no credentials, no
 * fragment, no spaces. On RZ_EINVAL msg says why, without the URL (it may
 * carry a token in its query). */
enum rz_err webhooks_check_urls(const char *value, char *msg, size_t msglen);

/* Checks WEBHOOK_SECRET: one whsec_<base64> secret, or two separated by a
 * space or a comma while rotating; each decodes (strict base64) to 24 to
 * 64 bytes. msg never holds the secret. */
enum rz_err webhooks_check_secrets(const char *value, char *msg, size_t msglen);

/* Builds the module on opts->outbox (or a memory outbox) and starts its
 * threads, or RZ_EINVAL with msg for bad urls or secrets. */
enum rz_err webhooks_new(const struct webhooks_opts *opts, struct webhooks **out, char *msg,
                         size_t msglen);

/* Queues image.done or image.failed for e (any other state is ignored) to
 * every endpoint. Never waits on a receiver; a full memory outbox drops its
 * oldest delivery, a shared one that cannot be written drops this one
 * (both counted as dropped, and logged). NULL w is a no-op. */
void webhooks_notify(struct webhooks *w, const struct index_entry *e);

/* Lets the threads send what is due now, for up to grace_ms, so the
 * notifications of the last jobs of a draining replica go out. Returns the
 * deliveries still stored (lost at exit with the memory outbox; with the
 * shared one, every replica's, and kept for them). */
size_t webhooks_drain(struct webhooks *w, long grace_ms);

/* Stops the threads (cutting attempts in flight) and frees everything;
 * NULL is a no-op. */
void webhooks_free(struct webhooks *w);

#endif
