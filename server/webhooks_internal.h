/* webhooks_internal.h - the steps of webhooks.c, visible to unit tests only. */
#ifndef RESIZER_WEBHOOKS_INTERNAL_H
#define RESIZER_WEBHOOKS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "webhooks.h"

#define WEBHOOKS_KEY_MAX 64
/* "v1," + 44 base64 characters per secret, a space between, the NUL. */
#define WEBHOOKS_SIGNATURE_MAX (WEBHOOKS_MAX_SECRETS * 48 + 1)

struct webhooks_key {
    unsigned char bytes[WEBHOOKS_KEY_MAX];
    size_t len;
};

/* What one attempt's answer means for the delivery. */
enum webhooks_verdict {
    WEBHOOKS_DELIVERED = 0, /* 2xx */
    WEBHOOKS_RETRY,         /* 3xx, 408, 429, 5xx, no answer */
    WEBHOOKS_FINAL,         /* any other 4xx: the receiver refuses this message */
};

#ifdef RESIZER_UNITTEST

/* Decodes WEBHOOK_SECRET into keys (room for WEBHOOKS_MAX_SECRETS); *n_out
 * gets the count. RZ_EINVAL with msg on a malformed value. */
enum rz_err webhooks_parse_secrets(const char *value, struct webhooks_key *keys, size_t *n_out,
                                   char *msg, size_t msglen);

/* The webhook-signature header value: "v1,<base64 HMAC-SHA256>" of
 * "<id>.<timestamp>.<body>" under each key, space-separated, into out
 * (WEBHOOKS_SIGNATURE_MAX bytes). */
enum rz_err webhooks_sign(const struct webhooks_key *keys, size_t nkeys, const char *id,
                          int64_t timestamp, const char *body, size_t body_len,
                          char out[WEBHOOKS_SIGNATURE_MAX]);

/* How an attempt ended: status is the HTTP status (0 when none came). */
enum webhooks_verdict webhooks_classify(long status);

/* The wait before the next attempt after attempts_made failed ones, for a
 * jitter in [0, 1): the schedule's step for attempts_made, times base_ms,
 * scaled by 0.8 + 0.4 * jitter. */
int64_t webhooks_retry_delay_ms(long base_ms, int attempts_made, double jitter);

/* The message's body for e (NULL unless e is done or failed, or out of
 * memory); the caller frees it. *type_out gets "image.done" or
 * "image.failed". */
char *webhooks_body(const struct index_entry *e, const char **type_out);

/* The webhook-id of e's outcome: "msg_" + 32 hex digits of SHA-256 over the
 * image id, source ETag, event type and attempt number. The same outcome
 * (notified again after a restart, or by another replica) gets the same id,
 * so receivers deduplicate it; a new attempt or a new object gets a new one. */
void webhooks_msg_id(const struct index_entry *e, const char *type, char out[OUTBOX_MSG_ID_MAX]);

#endif /* RESIZER_UNITTEST */

#endif
