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

#include "text.h"

#define INDEX_MAX_STRING 4096

struct index_node {
    struct index_entry e;
    struct index_node *prev;    /* newer */
    struct index_node *next;    /* older */
    struct index_node *id_next; /* hash chains */
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
    size_t nbuckets; /* a power of two */
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

/* A record's strings are capped: one oversized field must not grow the
 * index without bound. */
static enum rz_err index_strdup(char **dst, const char *src)
{
    *dst = NULL;
    if (src && strlen(src) > INDEX_MAX_STRING)
        return RZ_EINVAL;
    return text_dup(src, dst);
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
    free(e->uploader);
    index_output_cleanup(e);
    memset(e, 0, sizeof(*e));
}

enum rz_err index_entry_copy(struct index_entry *dst, const struct index_entry *src)
{
    enum rz_err err = RZ_OK;

    *dst = *src;
    dst->bucket = dst->key = dst->filename = dst->content_type = NULL;
    dst->etag = dst->sequencer = dst->error_message = dst->uploader = NULL;
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
    if (err == RZ_OK)
        err = index_strdup(&dst->uploader, src->uploader);
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

static void index_evict(struct index *idx, struct index_node *n)
{
    index_unlink(idx, n);
    index_entry_cleanup(&n->e);
    free(n);
}

/* Makes room for one entry; RZ_EFULL when everything left is in flight. */
static enum rz_err index_make_room(struct index *idx, int64_t now_ms)
{
    struct index_node *n;

    if (idx->count < idx->max)
        return RZ_OK;
    for (n = idx->oldest; n; n = n->prev) {
        if (index_evictable(&n->e, now_ms)) {
            index_evict(idx, n);
            return RZ_OK;
        }
    }
    for (n = idx->oldest; n; n = n->prev) {
        if (n->e.state == INDEX_PENDING) {
            index_evict(idx, n);
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

/* Whether e, put over held, is to be kept out. A copy older than the one
 * held (two readers of a shared store racing) never replaces it. A copy
 * of version 0 (another replica's S3 record, memory store) replaces only
 * another unversioned copy: over a record of this replica's store (a
 * claimed job, an upload; versions start at 1) it would undo a live state
 * with a stale one. */
static int index_put_keeps_old(const struct index_entry *held, const struct index_entry *e)
{
    if (!e->version)
        return held->version != 0;
    return held->version > e->version;
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
    if (old && index_put_keeps_old(&old->e, e)) {
        pthread_rwlock_unlock(&idx->lock);
        return RZ_OK;
    }
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

/* ---- compare-and-swap writes ---- */

enum rz_err index_insert_new(struct index *idx, const struct index_entry *e)
{
    enum rz_err err = RZ_ECONFLICT;

    pthread_rwlock_wrlock(&idx->lock);
    if (!index_find_id(idx, e->id) && !index_find_key(idx, e->bucket, e->key))
        err = index_insert_locked(idx, e, e->updated_ms, NULL);
    pthread_rwlock_unlock(&idx->lock);
    return err;
}

static void index_key_unchain(struct index *idx, struct index_node *node)
{
    struct index_node **pp;

    if (!node->e.bucket || !node->e.key)
        return;
    for (pp = index_key_slot(idx, node->e.bucket, node->e.key); *pp; pp = &(*pp)->key_next) {
        if (*pp == node) {
            *pp = node->key_next;
            break;
        }
    }
}

static void index_key_chain(struct index *idx, struct index_node *node)
{
    struct index_node **slot;

    if (!node->e.bucket || !node->e.key)
        return;
    slot = index_key_slot(idx, node->e.bucket, node->e.key);
    node->key_next = *slot;
    *slot = node;
}

/* Swaps the contents of node for fresh (a deep copy), keeping its place in
 * the list and its seq; write lock held. The old contents end in fresh,
 * for the caller to free. */
static void index_swap_locked(struct index *idx, struct index_node *node,
                              struct index_entry *fresh)
{
    struct index_entry old = node->e;

    index_key_unchain(idx, node);
    node->e = *fresh;
    node->e.seq = old.seq;
    index_key_chain(idx, node);
    index_state_moved(idx, old.state, node->e.state);
    *fresh = old;
}

enum rz_err index_replace(struct index *idx, const struct index_entry *e,
                          uint64_t expected_version)
{
    struct index_entry fresh;
    struct index_node *n;
    enum rz_err err = index_entry_copy(&fresh, e);

    if (err != RZ_OK)
        return err;
    pthread_rwlock_wrlock(&idx->lock);
    n = index_find_id(idx, e->id);
    if (!n)
        err = RZ_ENOTFOUND;
    else if (n->e.version != expected_version)
        err = RZ_ECONFLICT;
    else
        index_swap_locked(idx, n, &fresh);
    pthread_rwlock_unlock(&idx->lock);
    index_entry_cleanup(&fresh);
    return err;
}

size_t index_expired(struct index *idx, int64_t now_ms, size_t max,
                     char (*ids_out)[INDEX_ID_LEN + 1])
{
    size_t n = 0;

    pthread_rwlock_rdlock(&idx->lock);
    for (struct index_node *node = idx->oldest; node && n < max; node = node->prev) {
        const struct index_entry *e = &node->e;

        if ((e->state == INDEX_QUEUED || e->state == INDEX_PROCESSING) && e->lease_ms &&
            e->lease_ms < now_ms)
            memcpy(ids_out[n++], e->id, INDEX_ID_LEN + 1);
    }
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

/* ---- listing and counting ---- */

enum rz_err index_list(struct index *idx, int state, const char *uploader, uint64_t before_seq,
                       size_t limit, struct index_entry *out, size_t *n_out, uint64_t *next_out)
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
        if (uploader && (!node->e.uploader || strcmp(node->e.uploader, uploader) != 0))
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
