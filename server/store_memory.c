/* store_memory.c - the memory store: the in-memory index is the store.
 *
 * One replica only: nothing is shared, a restart forgets everything but
 * what S3 holds (variants and status records), which the reconcile sweep
 * reads back. Cursors are "c" + hex of the last seq seen. */
#include "store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct store_memory {
    struct store base;
    struct index *idx;
    pthread_mutex_t lock; /* the sweep's lease item */
    char lock_owner[INDEX_OWNER_MAX];
    int64_t lock_until;
    char cursor[STORE_SWEEP_CURSOR_MAX];
};

static struct store_memory *mem(struct store *s)
{
    return (struct store_memory *)s;
}

static enum rz_err mem_get(struct store *s, const char *id, struct index_entry *out)
{
    return index_get(mem(s)->idx, id, out);
}

static enum rz_err mem_find_key(struct store *s, const char *bucket, const char *key,
                                char id_out[INDEX_ID_LEN + 1])
{
    struct index_entry e = {0};
    enum rz_err err = index_get_by_key(mem(s)->idx, bucket, key, &e);

    if (err == RZ_OK)
        memcpy(id_out, e.id, INDEX_ID_LEN + 1);
    index_entry_cleanup(&e);
    return err;
}

static enum rz_err mem_create(struct store *s, const struct index_entry *e)
{
    return index_insert_new(mem(s)->idx, e);
}

static enum rz_err mem_replace(struct store *s, const struct index_entry *e, uint64_t expected)
{
    return index_replace(mem(s)->idx, e, expected);
}

struct mem_renew {
    const char *owner;
    int64_t lease_ms;
};

static enum rz_err mem_renew_fn(struct index_entry *e, void *arg)
{
    const struct mem_renew *r = arg;

    if ((e->state != INDEX_QUEUED && e->state != INDEX_PROCESSING) ||
        strcmp(e->owner, r->owner) != 0)
        return RZ_ECONFLICT;
    e->lease_ms = r->lease_ms;
    return RZ_OK;
}

static enum rz_err mem_renew(struct store *s, const char *id, const char *owner,
                             int64_t lease_ms)
{
    struct mem_renew r = {owner, lease_ms};

    return index_update(mem(s)->idx, id, mem_renew_fn, &r);
}

static enum rz_err mem_parse_cursor(const char *c, uint64_t *before)
{
    size_t len = c ? strlen(c) : 0;

    *before = 0;
    if (!c)
        return RZ_OK;
    if (c[0] != 'c' || len < 2 || len > 17 || strspn(c + 1, "0123456789abcdef") != len - 1)
        return RZ_EINVAL;
    *before = strtoull(c + 1, NULL, 16);
    return RZ_OK;
}

static enum rz_err mem_list(struct store *s, int state, const char *uploader, const char *cursor,
                            size_t limit, struct index_entry *out, size_t *n_out,
                            char next_out[STORE_CURSOR_MAX])
{
    uint64_t before, next = 0;
    enum rz_err err = mem_parse_cursor(cursor, &before);

    next_out[0] = '\0';
    *n_out = 0;
    if (err == RZ_OK)
        err = index_list(mem(s)->idx, state, uploader, before, limit, out, n_out, &next);
    if (err == RZ_OK && next)
        snprintf(next_out, STORE_CURSOR_MAX, "c%llx", (unsigned long long)next);
    return err;
}

static enum rz_err mem_expired(struct store *s, int64_t now_ms, size_t max,
                               char (*ids_out)[INDEX_ID_LEN + 1], size_t *n_out)
{
    *n_out = index_expired(mem(s)->idx, now_ms, max, ids_out);
    return RZ_OK;
}

static enum rz_err mem_lock(struct store *s, const char *name, const char *owner, int64_t now_ms,
                            int64_t until_ms, char cursor_out[STORE_SWEEP_CURSOR_MAX])
{
    struct store_memory *m = mem(s);
    enum rz_err err = RZ_ECONFLICT;

    (void)name;
    pthread_mutex_lock(&m->lock);
    if (m->lock_until < now_ms || strcmp(m->lock_owner, owner) == 0) {
        snprintf(m->lock_owner, sizeof(m->lock_owner), "%s", owner);
        m->lock_until = until_ms;
        if (cursor_out)
            memcpy(cursor_out, m->cursor, STORE_SWEEP_CURSOR_MAX);
        err = RZ_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return err;
}

static enum rz_err mem_save_cursor(struct store *s, const char *name, const char *owner,
                                   const char *cursor)
{
    struct store_memory *m = mem(s);
    enum rz_err err = RZ_ECONFLICT;

    (void)name;
    pthread_mutex_lock(&m->lock);
    if (strcmp(m->lock_owner, owner) == 0) {
        snprintf(m->cursor, sizeof(m->cursor), "%s", cursor);
        err = RZ_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return err;
}

static enum rz_err mem_ping(struct store *s)
{
    (void)s;
    return RZ_OK;
}

static void mem_free(struct store *s)
{
    pthread_mutex_destroy(&mem(s)->lock);
    free(s);
}

static const struct store_ops mem_ops = {
    "memory", mem_get,     mem_find_key, mem_create,      mem_replace, mem_renew,
    mem_list, mem_expired, mem_lock,     mem_save_cursor, mem_ping,    mem_free,
};

enum rz_err store_memory_new(struct index *idx, struct store **out)
{
    struct store_memory *m = calloc(1, sizeof(*m));

    if (!m)
        return RZ_ENOMEM;
    m->base.ops = &mem_ops;
    m->idx = idx;
    pthread_mutex_init(&m->lock, NULL);
    *out = &m->base;
    return RZ_OK;
}

void store_free(struct store *s)
{
    if (s)
        s->ops->free(s);
}
