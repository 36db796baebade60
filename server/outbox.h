/* outbox.h - where webhook deliveries wait between attempts.
 *
 * The delivery threads of webhooks.c talk to the outbox only through the
 * operations below, so the store behind them can change: the memory outbox
 * (outbox.c: bounded, lost with the process) is the one of
 * STATE_STORE=memory; the DynamoDB one (outbox_dynamodb.c: items of the
 * state table, leased with a conditional write) is the one of
 * STATE_STORE=dynamodb, and survives the replica.
 *
 * A delivery is one message for one endpoint. The outbox hands out due
 * deliveries under a lease: a leased delivery is not handed out again, and
 * not dropped, until it is settled (delivered, given up, or rescheduled). */
#ifndef RESIZER_OUTBOX_H
#define RESIZER_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define OUTBOX_MSG_ID_MAX 40 /* "msg_" + 32 hex digits, and the NUL */

struct outbox_delivery {
    char msg_id[OUTBOX_MSG_ID_MAX]; /* webhook-id: the same on every attempt */
    size_t endpoint;                /* index into WEBHOOK_URLS */
    char *body;                     /* the exact bytes signed and sent each time */
    size_t body_len;
    int attempts;   /* attempts made so far */
    int64_t due_ms; /* Unix ms of the next attempt */
    int64_t created_ms;
    uint64_t ref; /* the outbox's handle; set by add and lease */
};

struct outbox;

struct outbox_ops {
    /* Stores a copy of d. When full, the memory outbox drops its oldest
     * delivery that is not leased to make room; *dropped_out gets how many
     * were dropped (0 or 1). RZ_EFULL when every stored one is leased. */
    enum rz_err (*add)(struct outbox *o, const struct outbox_delivery *d, size_t *dropped_out);
    /* Leases the delivery due earliest, if one is due at now_ms, into *out
     * (out->body belongs to the caller: release with outbox_delivery_cleanup),
     * leaving out the endpoints whose bit is set in skip (those with as many
     * attempts in flight as they may have). RZ_ENOTFOUND when none is due;
     * *next_due_out then gets the earliest due time of the unleased ones not
     * skipped, or INT64_MAX. */
    enum rz_err (*lease)(struct outbox *o, int64_t now_ms, uint32_t skip,
                         struct outbox_delivery *out, int64_t *next_due_out);
    /* Ends the lease of d (by d->ref): removed when retry_at_ms < 0, else
     * kept with d->attempts and due again at retry_at_ms. */
    void (*settle)(struct outbox *o, const struct outbox_delivery *d, int64_t retry_at_ms);
    /* Deliveries stored, leased or not. */
    size_t (*depth)(struct outbox *o);
    void (*free)(struct outbox *o);
    /* Tells the outbox which receiver each endpoint index stands for (the
     * URLs of WEBHOOK_URLS, in order), before the first add; NULL when it
     * keeps nothing past the process and indexes are enough. */
    enum rz_err (*bind)(struct outbox *o, const char *const *urls, size_t n);
};

struct outbox {
    const struct outbox_ops *ops;
    long poll_ms; /* an idle thread looks again at least this often */
    int shared;   /* other replicas see these deliveries, and take them over */
};

/* The memory outbox, holding at most capacity deliveries (>= 1), or NULL
 * if out of memory. Thread-safe. */
struct outbox *outbox_memory_new(size_t capacity);

struct ddb_opts;

/* The DynamoDB outbox: deliveries as items of the state table, shared by
 * every replica; a delivery held by a replica is due again lease_ms after
 * it was taken, so one that dies mid-attempt delays it, never loses it.
 * Sends nothing yet. See outbox_dynamodb.c for the items. */
enum rz_err outbox_dynamodb_new(const struct ddb_opts *opts, const char *table, long lease_ms,
                                struct outbox **out, char *msg, size_t msglen);

/* Frees d's body; safe on a zeroed delivery. */
void outbox_delivery_cleanup(struct outbox_delivery *d);

#endif
