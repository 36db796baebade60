/* outbox.c - the memory outbox: a bounded list of deliveries in the order
 * they were added, under one mutex.
 *
 * Leasing scans the list for the earliest due delivery: the list is bounded
 * (WEBHOOK_QUEUE_SIZE) and a scan of a few thousand nodes costs microseconds,
 * next to an HTTP attempt of milliseconds to seconds. When full, the oldest
 * unleased delivery is dropped: a receiver that has been failing longest is
 * the one whose messages are oldest, and a fresh notification is worth more
 * than one that has waited for hours (receivers can always ask the API). */
#include "outbox.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct outbox_node {
    struct outbox_delivery d;
    int leased;
    struct outbox_node *prev;
    struct outbox_node *next;
};

struct outbox_memory {
    struct outbox base; /* first: a struct outbox * is a struct outbox_memory * */
    pthread_mutex_t lock;
    struct outbox_node *head; /* oldest */
    struct outbox_node *tail;
    size_t count;
    size_t capacity;
    uint64_t next_ref;
};

void outbox_delivery_cleanup(struct outbox_delivery *d)
{
    free(d->body);
    memset(d, 0, sizeof(*d));
}

static void outbox_unlink(struct outbox_memory *m, struct outbox_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        m->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        m->tail = n->prev;
    m->count--;
    outbox_delivery_cleanup(&n->d);
    free(n);
}

static void outbox_append(struct outbox_memory *m, struct outbox_node *n)
{
    n->prev = m->tail;
    n->next = NULL;
    if (m->tail)
        m->tail->next = n;
    else
        m->head = n;
    m->tail = n;
    m->count++;
}

/* Drops the oldest unleased delivery; 0 when all are leased. */
static int outbox_drop_oldest(struct outbox_memory *m)
{
    for (struct outbox_node *n = m->head; n; n = n->next) {
        if (!n->leased) {
            outbox_unlink(m, n);
            return 1;
        }
    }
    return 0;
}

static enum rz_err outbox_memory_add(struct outbox *o, const struct outbox_delivery *d,
                                     size_t *dropped_out)
{
    struct outbox_memory *m = (struct outbox_memory *)o;
    struct outbox_node *n = calloc(1, sizeof(*n));
    enum rz_err err = RZ_OK;

    *dropped_out = 0;
    if (!n)
        return RZ_ENOMEM;
    n->d = *d;
    n->d.body = malloc(d->body_len + 1);
    if (!n->d.body) {
        free(n);
        return RZ_ENOMEM;
    }
    memcpy(n->d.body, d->body, d->body_len);
    n->d.body[d->body_len] = '\0';
    pthread_mutex_lock(&m->lock);
    if (m->count >= m->capacity) {
        if (outbox_drop_oldest(m))
            *dropped_out = 1;
        else
            err = RZ_EFULL;
    }
    if (err == RZ_OK) {
        n->d.ref = ++m->next_ref;
        outbox_append(m, n);
        n = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    if (n) {
        outbox_delivery_cleanup(&n->d);
        free(n);
    }
    return err;
}

static int outbox_skipped(const struct outbox_delivery *d, uint32_t skip)
{
    return d->endpoint < 32 && (skip >> d->endpoint) & 1u;
}

static enum rz_err outbox_memory_lease(struct outbox *o, int64_t now_ms, uint32_t skip,
                                       struct outbox_delivery *out, int64_t *next_due_out)
{
    struct outbox_memory *m = (struct outbox_memory *)o;
    struct outbox_node *best = NULL;
    enum rz_err err = RZ_ENOTFOUND;

    memset(out, 0, sizeof(*out));
    *next_due_out = INT64_MAX;
    pthread_mutex_lock(&m->lock);
    for (struct outbox_node *n = m->head; n; n = n->next) {
        if (n->leased || outbox_skipped(&n->d, skip))
            continue;
        if (!best || n->d.due_ms < best->d.due_ms)
            best = n;
    }
    if (best && best->d.due_ms > now_ms)
        *next_due_out = best->d.due_ms;
    else if (best) {
        *out = best->d;
        out->body = malloc(best->d.body_len + 1);
        err = out->body ? RZ_OK : RZ_ENOMEM;
        if (err == RZ_OK) {
            memcpy(out->body, best->d.body, best->d.body_len + 1);
            best->leased = 1;
        } else {
            memset(out, 0, sizeof(*out));
        }
    }
    pthread_mutex_unlock(&m->lock);
    return err;
}

static void outbox_memory_settle(struct outbox *o, const struct outbox_delivery *d,
                                 int64_t retry_at_ms)
{
    struct outbox_memory *m = (struct outbox_memory *)o;

    pthread_mutex_lock(&m->lock);
    for (struct outbox_node *n = m->head; n; n = n->next) {
        if (n->d.ref != d->ref)
            continue;
        if (retry_at_ms < 0) {
            outbox_unlink(m, n);
        } else {
            n->leased = 0;
            n->d.attempts = d->attempts;
            n->d.due_ms = retry_at_ms;
        }
        break;
    }
    pthread_mutex_unlock(&m->lock);
}

static size_t outbox_memory_depth(struct outbox *o)
{
    struct outbox_memory *m = (struct outbox_memory *)o;
    size_t n;

    pthread_mutex_lock(&m->lock);
    n = m->count;
    pthread_mutex_unlock(&m->lock);
    return n;
}

static void outbox_memory_free(struct outbox *o)
{
    struct outbox_memory *m = (struct outbox_memory *)o;

    if (!m)
        return;
    while (m->head)
        outbox_unlink(m, m->head);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const struct outbox_ops outbox_memory_ops = {
    outbox_memory_add,    outbox_memory_lease,
    outbox_memory_settle, outbox_memory_depth,
    outbox_memory_free,   NULL, /* indexes are enough: nothing outlives the process */
};

struct outbox *outbox_memory_new(size_t capacity)
{
    struct outbox_memory *m = calloc(1, sizeof(*m));

    if (!m || capacity == 0) {
        free(m);
        return NULL;
    }
    m->base.ops = &outbox_memory_ops;
    m->base.poll_ms = 60000;
    m->capacity = capacity;
    pthread_mutex_init(&m->lock, NULL);
    return &m->base;
}
