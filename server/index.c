/* index.c - the in-memory index: two chained hash tables (id, bucket/key)
 * over one doubly linked list in insertion order (newest at the head).
 *
 * A rwlock lets status reads run in parallel; every operation is short and
 * does no I/O. Listing walks the list, which for the bounded sizes here
 * (INDEX_MAX_ENTRIES) costs well under a millisecond a page. */
#include "index.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INDEX_MAX_STRING 4096

struct index_node {
    struct index_entry e;
    struct index_node *prev;     /* newer */
    struct index_node *next;     /* older */
    struct index_node *id_next;  /* hash chains */
    struct index_node *key_next;
};

/* What a per-state gauge reads: this index, this state. */
struct index_gauge {
    struct index *idx;
    enum index_state state;
};

struct index {
    pthread_rwlock_t lock;
    struct index_gauge gauges[INDEX_NSTATES];
    struct index_node **by_id;
    struct index_node **by_key;
    size_t nbuckets;             /* a power of two */
    struct index_node *newest;
    struct index_node *oldest;
    size_t count;
    size_t by_state[INDEX_NSTATES]; /* kept as entries change, so counting is free */
    size_t max;
    uint64_t next_seq;
};

static const char *const index_state_names[INDEX_NSTATES] = {
    "pending", "queued", "processing", "done", "failed",
};

const char *index_state_name(enum index_state s)
{
    return (unsigned)s < INDEX_NSTATES ? index_state_names[s] : "unknown";
}

int index_state_parse(const char *s)
{
    for (int i = 0; s && i < INDEX_NSTATES; i++) {
        if (strcmp(s, index_state_names[i]) == 0)
            return i;
    }
    return -1;
}

/* FNV-1a over the bytes, with the bucket and key separated by a NUL. */
static uint64_t index_hash(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (const char *p = b ? b : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

struct index *index_new(size_t max_entries)
{
    struct index *idx = calloc(1, sizeof(*idx));
    size_t n = 64;

    if (!idx)
        return NULL;
    while (n < max_entries)
        n *= 2;
    idx->nbuckets = n;
    idx->by_id = calloc(n, sizeof(*idx->by_id));
    idx->by_key = calloc(n, sizeof(*idx->by_key));
    if (!idx->by_id || !idx->by_key) {
        free(idx->by_id);
        free(idx->by_key);
        free(idx);
        return NULL;
    }
    idx->max = max_entries;
    idx->next_seq = 1;
    pthread_rwlock_init(&idx->lock, NULL);
    return idx;
}

void index_free(struct index *idx)
{
    struct index_node *n;

    if (!idx)
        return;
    n = idx->newest;
    while (n) {
        struct index_node *next = n->next;

        index_entry_cleanup(&n->e);
        free(n);
        n = next;
    }
    free(idx->by_id);
    free(idx->by_key);
    pthread_rwlock_destroy(&idx->lock);
    free(idx);
}

/* ---- entries ---- */

static enum rz_err index_strdup(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return RZ_OK;
    if (strlen(src) > INDEX_MAX_STRING)
        return RZ_EINVAL;
    *dst = strdup(src);
    return *dst ? RZ_OK : RZ_ENOMEM;
}

void index_entry_cleanup(struct index_entry *e)
{
    free(e->bucket);
    free(e->key);
    free(e->filename);
    free(e->content_type);
    free(e->etag);
    free(e->sequencer);
    free(e->error_message);
    index_output_cleanup(e);
    memset(e, 0, sizeof(*e));
}

enum rz_err index_entry_copy(struct index_entry *dst, const struct index_entry *src)
{
    enum rz_err err = RZ_OK;

    *dst = *src;
    dst->bucket = dst->key = dst->filename = dst->content_type = NULL;
    dst->etag = dst->sequencer = dst->error_message = NULL;
    err = index_output_copy(dst, src);
    if (err == RZ_OK)
        err = index_strdup(&dst->bucket, src->bucket);
    if (err == RZ_OK)
        err = index_strdup(&dst->key, src->key);
    if (err == RZ_OK)
        err = index_strdup(&dst->filename, src->filename);
    if (err == RZ_OK)
        err = index_strdup(&dst->content_type, src->content_type);
    if (err == RZ_OK)
        err = index_strdup(&dst->etag, src->etag);
    if (err == RZ_OK)
        err = index_strdup(&dst->sequencer, src->sequencer);
    if (err == RZ_OK)
        err = index_strdup(&dst->error_message, src->error_message);
    if (err != RZ_OK)
        index_entry_cleanup(dst);
    return err;
}

/* ---- tables ---- */

static struct index_node **index_id_slot(struct index *idx, const char *id)
{
    return &idx->by_id[index_hash(id, NULL) & (idx->nbuckets - 1)];
}

static struct index_node **index_key_slot(struct index *idx, const char *bucket, const char *key)
{
    return &idx->by_key[index_hash(bucket, key) & (idx->nbuckets - 1)];
}

static struct index_node *index_find_id(struct index *idx, const char *id)
{
    for (struct index_node *n = *index_id_slot(idx, id); n; n = n->id_next) {
        if (strcmp(n->e.id, id) == 0)
            return n;
    }
    return NULL;
}

static struct index_node *index_find_key(struct index *idx, const char *bucket, const char *key)
{
    if (!bucket || !key)
        return NULL;
    for (struct index_node *n = *index_key_slot(idx, bucket, key); n; n = n->key_next) {
        if (n->e.bucket && n->e.key && strcmp(n->e.key, key) == 0 &&
            strcmp(n->e.bucket, bucket) == 0)
            return n;
    }
    return NULL;
}

static void index_unlink(struct index *idx, struct index_node *node)
{
    struct index_node **pp;

    for (pp = index_id_slot(idx, node->e.id); *pp; pp = &(*pp)->id_next) {
        if (*pp == node) {
            *pp = node->id_next;
            break;
        }
    }
    if (node->e.bucket && node->e.key) {
        for (pp = index_key_slot(idx, node->e.bucket, node->e.key); *pp; pp = &(*pp)->key_next) {
            if (*pp == node) {
                *pp = node->key_next;
                break;
            }
        }
    }
    if (node->prev)
        node->prev->next = node->next;
    else
        idx->newest = node->next;
    if (node->next)
        node->next->prev = node->prev;
    else
        idx->oldest = node->prev;
    idx->count--;
    idx->by_state[node->e.state]--;
}

static void index_link(struct index *idx, struct index_node *node)
{
    struct index_node **slot = index_id_slot(idx, node->e.id);

    node->id_next = *slot;
    *slot = node;
    if (node->e.bucket && node->e.key) {
        slot = index_key_slot(idx, node->e.bucket, node->e.key);
        node->key_next = *slot;
        *slot = node;
    }
    node->prev = NULL;
    node->next = idx->newest;
    if (idx->newest)
        idx->newest->prev = node;
    idx->newest = node;
    if (!idx->oldest)
        idx->oldest = node;
    idx->count++;
    idx->by_state[node->e.state]++;
}

static int index_evictable(const struct index_entry *e, int64_t now_ms)
{
    if (e->state == INDEX_DONE || e->state == INDEX_FAILED)
        return 1;
    return e->state == INDEX_PENDING && e->upload_expires_ms && e->upload_expires_ms < now_ms;
}

/* Makes room for one entry; RZ_EFULL when everything left is in flight. */
static enum rz_err index_make_room(struct index *idx, int64_t now_ms)
{
    struct index_node *n;

    if (idx->count < idx->max)
        return RZ_OK;
    for (n = idx->oldest; n; n = n->prev) {
        if (index_evictable(&n->e, now_ms)) {
            index_unlink(idx, n);
            index_entry_cleanup(&n->e);
            free(n);
            return RZ_OK;
        }
    }
    return RZ_EFULL;
}

/* Inserts a copy of e as the newest entry; called with the write lock. */
static enum rz_err index_insert_locked(struct index *idx, const struct index_entry *e,
                                       int64_t now_ms, struct index_node **out)
{
    struct index_node *node;
    enum rz_err err = index_make_room(idx, now_ms);

    if (err != RZ_OK)
        return err;
    node = calloc(1, sizeof(*node));
    if (!node)
        return RZ_ENOMEM;
    err = index_entry_copy(&node->e, e);
    if (err != RZ_OK) {
        free(node);
        return err;
    }
    if (!node->e.seq)
        node->e.seq = idx->next_seq++;
    else if (node->e.seq >= idx->next_seq)
        idx->next_seq = node->e.seq + 1;
    index_link(idx, node);
    if (out)
        *out = node;
    return RZ_OK;
}

enum rz_err index_put(struct index *idx, const struct index_entry *e)
{
    struct index_node *old;
    struct index_entry keep = {0};
    enum rz_err err;

    pthread_rwlock_wrlock(&idx->lock);
    old = index_find_id(idx, e->id);
    if (!old)
        old = index_find_key(idx, e->bucket, e->key);
    if (old) {
        index_unlink(idx, old);
        keep = old->e;
        free(old);
    }
    err = index_insert_locked(idx, e, e->updated_ms, NULL);
    pthread_rwlock_unlock(&idx->lock);
    index_entry_cleanup(&keep);
    return err;
}

enum rz_err index_get(struct index *idx, const char *id, struct index_entry *out)
{
    struct index_node *n;
    enum rz_err err = RZ_ENOTFOUND;

    pthread_rwlock_rdlock(&idx->lock);
    n = index_find_id(idx, id);
    if (n)
        err = index_entry_copy(out, &n->e);
    pthread_rwlock_unlock(&idx->lock);
    return err;
}

enum rz_err index_get_by_key(struct index *idx, const char *bucket, const char *key,
                             struct index_entry *out)
{
    struct index_node *n;
    enum rz_err err = RZ_ENOTFOUND;

    pthread_rwlock_rdlock(&idx->lock);
    n = index_find_key(idx, bucket, key);
    if (n)
        err = index_entry_copy(out, &n->e);
    pthread_rwlock_unlock(&idx->lock);
    return err;
}

/* Keeps by_state right after an entry's state changed in place. */
static void index_state_moved(struct index *idx, enum index_state from, enum index_state to)
{
    idx->by_state[from]--;
    idx->by_state[to]++;
}

enum rz_err index_update(struct index *idx, const char *id, index_update_fn fn, void *arg)
{
    struct index_node *n;
    enum rz_err err = RZ_ENOTFOUND;

    pthread_rwlock_wrlock(&idx->lock);
    n = index_find_id(idx, id);
    if (n) {
        enum index_state before = n->e.state;

        err = fn(&n->e, arg);
        index_state_moved(idx, before, n->e.state);
    }
    pthread_rwlock_unlock(&idx->lock);
    return err;
}

/* Moves node to the by-key chain of key (which it takes); write lock held. */
static void index_relink_key(struct index *idx, struct index_node *node, char *key)
{
    struct index_node **pp;

    for (pp = index_key_slot(idx, node->e.bucket, node->e.key); *pp; pp = &(*pp)->key_next) {
        if (*pp == node) {
            *pp = node->key_next;
            break;
        }
    }
    free(node->e.key);
    node->e.key = key;
    pp = index_key_slot(idx, node->e.bucket, node->e.key);
    node->key_next = *pp;
    *pp = node;
}

enum rz_err index_rekey(struct index *idx, const char *id, const char *key)
{
    struct index_node *n;
    char *copy = strdup(key);
    enum rz_err err = RZ_ENOTFOUND;

    if (!copy)
        return RZ_ENOMEM;
    pthread_rwlock_wrlock(&idx->lock);
    n = index_find_id(idx, id);
    if (n && n->e.bucket && n->e.key) {
        index_relink_key(idx, n, copy);
        copy = NULL;
        err = RZ_OK;
    }
    pthread_rwlock_unlock(&idx->lock);
    free(copy);
    return err;
}

/* ---- claiming events ---- */

/* S3 sequencers are hex strings of varying length; the shorter is padded
 * with '0' on the right before comparing (S3's documented rule). */
static int index_sequencer_cmp(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t n = la > lb ? la : lb;

    for (size_t i = 0; i < n; i++) {
        int ca = i < la ? (unsigned char)a[i] : '0';
        int cb = i < lb ? (unsigned char)b[i] : '0';

        ca = ca >= 'a' && ca <= 'f' ? ca - 32 : ca;
        cb = cb >= 'a' && cb <= 'f' ? cb - 32 : cb;
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return 0;
}

/* 1 when the event names an object other than (newer than) the entry's. */
static int index_event_is_newer(const struct index_entry *e, const char *etag,
                                const char *sequencer)
{
    if (sequencer && e->sequencer)
        return index_sequencer_cmp(sequencer, e->sequencer) > 0;
    if (etag && e->etag)
        return strcmp(etag, e->etag) != 0;
    /* Without either there is nothing to compare: treat as the same. */
    return 0;
}

/* 1 when the event's sequencer says it is older than the entry's object:
 * a late delivery that must not replace what the entry records. */
static int index_event_is_older(const struct index_entry *e, const char *sequencer)
{
    return sequencer && e->sequencer && index_sequencer_cmp(sequencer, e->sequencer) < 0;
}

static enum rz_err index_set_object(struct index_entry *e, const char *etag,
                                    const char *sequencer, uint64_t size, int try_decoded_key)
{
    char *t = NULL;
    char *s = NULL;

    if (index_strdup(&t, etag) != RZ_OK || index_strdup(&s, sequencer) != RZ_OK) {
        free(t);
        return RZ_ENOMEM;
    }
    if (t) {
        free(e->etag);
        e->etag = t;
    }
    if (s) {
        free(e->sequencer);
        e->sequencer = s;
    }
    if (size)
        e->bytes = size;
    e->try_decoded_key = try_decoded_key;
    return RZ_OK;
}

/* What an event for an existing entry means, without changing it. */
static enum index_claim index_claim_decide(const struct index_entry *e, int newer)
{
    switch (e->state) {
    case INDEX_PENDING:
    case INDEX_FAILED:
        return INDEX_CLAIM_NEW;
    case INDEX_QUEUED:
        return INDEX_CLAIM_DUPLICATE; /* the queued job will read the newest object */
    case INDEX_PROCESSING:
        return INDEX_CLAIM_DUPLICATE; /* a newer object reruns it (see below) */
    case INDEX_DONE:
    default:
        return newer ? INDEX_CLAIM_NEW : INDEX_CLAIM_DUPLICATE;
    }
}

static void index_claim_apply(struct index_entry *e, enum index_claim claim, int newer,
                              int64_t now_ms)
{
    if (claim == INDEX_CLAIM_DUPLICATE) {
        if (e->state == INDEX_PROCESSING && newer)
            e->rerun = 1;
        return;
    }
    e->state = INDEX_QUEUED;
    e->error_code[0] = '\0';
    free(e->error_message);
    e->error_message = NULL;
    e->updated_ms = now_ms;
}

/* The claim, for an entry that exists; write lock held. Without room, an
 * event that would need a job changes nothing and gets RZ_EFULL. */
static enum rz_err index_claim_existing(struct index *idx, struct index_node *n,
                                        const struct index_claim_event *ev, int room,
                                        int64_t now_ms, enum index_claim *claim_out)
{
    int newer = index_event_is_newer(&n->e, ev->etag, ev->sequencer);
    int older = index_event_is_older(&n->e, ev->sequencer);
    enum index_state before;

    *claim_out = index_claim_decide(&n->e, newer);
    if (*claim_out == INDEX_CLAIM_NEW && !room)
        return RZ_EFULL;
    before = n->e.state;
    index_claim_apply(&n->e, *claim_out, newer, now_ms);
    index_state_moved(idx, before, n->e.state);
    /* The recorded object only moves forward, whatever the state: a late
     * old event must not make the newer one, redelivered once processed,
     * look new again (and run a second time). */
    if (older)
        return RZ_OK;
    return index_set_object(&n->e, ev->etag, ev->sequencer, ev->size, ev->try_decoded_key);
}

static enum rz_err index_claim_locked(struct index *idx, const struct index_claim_event *ev,
                                      int room, const char *new_id, int64_t now_ms,
                                      enum index_claim *claim_out, char id_out[INDEX_ID_LEN + 1])
{
    struct index_node *n = index_find_key(idx, ev->bucket, ev->key);
    struct index_entry fresh = {0};
    enum rz_err err;

    if (n) {
        memcpy(id_out, n->e.id, INDEX_ID_LEN + 1);
        return index_claim_existing(idx, n, ev, room, now_ms, claim_out);
    }
    if (!room)
        return RZ_EFULL;
    if (index_find_id(idx, new_id))
        return RZ_ECONFLICT;
    snprintf(fresh.id, sizeof(fresh.id), "%s", new_id);
    fresh.state = INDEX_QUEUED;
    fresh.bucket = (char *)ev->bucket;
    fresh.key = (char *)ev->key;
    fresh.etag = (char *)ev->etag;
    fresh.sequencer = (char *)ev->sequencer;
    fresh.bytes = ev->size;
    fresh.try_decoded_key = ev->try_decoded_key;
    fresh.created_ms = fresh.updated_ms = now_ms;
    err = index_insert_locked(idx, &fresh, now_ms, NULL);
    *claim_out = INDEX_CLAIM_NEW;
    memcpy(id_out, fresh.id, INDEX_ID_LEN + 1);
    return err;
}

enum rz_err index_claim(struct index *idx, const char *bucket, const char *key, const char *etag,
                        const char *sequencer, uint64_t size, int try_decoded_key,
                        const char *new_id, int64_t now_ms, enum index_claim *claim_out,
                        char id_out[INDEX_ID_LEN + 1])
{
    struct index_claim_event ev = {bucket, key, etag, sequencer, size, try_decoded_key};

    return index_claim_event(idx, &ev, 1, new_id, now_ms, claim_out, id_out);
}

enum rz_err index_claim_event(struct index *idx, const struct index_claim_event *ev, int room,
                              const char *new_id, int64_t now_ms, enum index_claim *claim_out,
                              char id_out[INDEX_ID_LEN + 1])
{
    enum rz_err err;

    pthread_rwlock_wrlock(&idx->lock);
    err = index_claim_locked(idx, ev, room, new_id, now_ms, claim_out, id_out);
    pthread_rwlock_unlock(&idx->lock);
    return err;
}

/* ---- listing and counting ---- */

enum rz_err index_list(struct index *idx, int state, uint64_t before_seq, size_t limit,
                       struct index_entry *out, size_t *n_out, uint64_t *next_out)
{
    size_t n = 0;
    enum rz_err err = RZ_OK;
    struct index_node *node;

    *next_out = 0;
    pthread_rwlock_rdlock(&idx->lock);
    for (node = idx->newest; node && err == RZ_OK; node = node->next) {
        if (before_seq && node->e.seq >= before_seq)
            continue;
        if (state >= 0 && node->e.state != (enum index_state)state)
            continue;
        if (n == limit) {
            *next_out = out[n - 1].seq;
            break;
        }
        err = index_entry_copy(&out[n], &node->e);
        if (err == RZ_OK)
            n++;
    }
    pthread_rwlock_unlock(&idx->lock);
    if (err != RZ_OK) {
        for (size_t i = 0; i < n; i++)
            index_entry_cleanup(&out[i]);
        n = 0;
        *next_out = 0;
    }
    *n_out = n;
    return err;
}

static double index_gauge_read(void *arg)
{
    const struct index_gauge *g = arg;
    size_t counts[INDEX_NSTATES];

    index_count(g->idx, counts);
    return (double)counts[g->state];
}

enum rz_err index_metrics_register(struct index *idx, struct metrics *m)
{
    char labels[32];
    enum rz_err err = metrics_register(m, "resizer_index_capacity", METRICS_GAUGE,
                                       "Status records the index may hold (INDEX_MAX_ENTRIES)",
                                       NULL, 0);

    if (err != RZ_OK)
        return err;
    metrics_set(m, "resizer_index_capacity", "", (double)idx->max);
    for (int st = 0; st < INDEX_NSTATES && err == RZ_OK; st++) {
        idx->gauges[st] = (struct index_gauge){idx, (enum index_state)st};
        snprintf(labels, sizeof(labels), "state=\"%s\"", index_state_names[st]);
        err = metrics_register_gauge_fn(m, "resizer_index_entries",
                                        "Status records in memory by state", labels,
                                        index_gauge_read, &idx->gauges[st]);
    }
    return err;
}

size_t index_count(struct index *idx, size_t counts[INDEX_NSTATES])
{
    size_t total;

    pthread_rwlock_rdlock(&idx->lock);
    memcpy(counts, idx->by_state, INDEX_NSTATES * sizeof(counts[0]));
    total = idx->count;
    pthread_rwlock_unlock(&idx->lock);
    return total;
}
