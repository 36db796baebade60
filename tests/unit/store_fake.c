/* store_fake.c - the memory store, counted and breakable, posing as a
 * shared store. */
#include "store_fake.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

enum fake_store_op {
    FS_GET,
    FS_FIND_KEY,
    FS_CREATE,
    FS_REPLACE,
    FS_RENEW,
    FS_LIST,
    FS_EXPIRED,
    FS_LOCK,
    FS_SAVE_CURSOR,
    FS_PING,
    FS_NOPS
};

static const char *const fs_names[FS_NOPS] = {"get",         "find_key", "create",  "replace",
                                              "renew",       "list",     "expired", "lock",
                                              "save_cursor", "ping"};

struct fake_store {
    struct store base;
    struct store *inner;
    size_t calls[FS_NOPS]; /* atomics */
    int down;              /* atomic */
    long delay_ms;         /* atomic */
};

static struct fake_store *fs(struct store *s)
{
    return (struct fake_store *)s;
}

/* Counts the call; RZ_EUPSTREAM while down, else RZ_OK to go on. */
static enum rz_err fs_enter(struct store *s, enum fake_store_op op)
{
    __atomic_add_fetch(&fs(s)->calls[op], 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&fs(s)->down, __ATOMIC_SEQ_CST))
        return RZ_OK;
    usleep((useconds_t)__atomic_load_n(&fs(s)->delay_ms, __ATOMIC_SEQ_CST) * 1000);
    return RZ_EUPSTREAM;
}

#define FS_CALL(s, op, call)                      \
    do {                                          \
        enum rz_err e_ = fs_enter(s, op);         \
        struct store *in_ = fs(s)->inner;         \
        return e_ != RZ_OK ? e_ : in_->ops->call; \
    } while (0)

static enum rz_err fs_get(struct store *s, const char *id, struct index_entry *out)
{
    FS_CALL(s, FS_GET, get(in_, id, out));
}

static enum rz_err fs_find_key(struct store *s, const char *bucket, const char *key,
                               char id_out[INDEX_ID_LEN + 1])
{
    FS_CALL(s, FS_FIND_KEY, find_key(in_, bucket, key, id_out));
}

static enum rz_err fs_create(struct store *s, const struct index_entry *e)
{
    FS_CALL(s, FS_CREATE, create(in_, e));
}

static enum rz_err fs_replace(struct store *s, const struct index_entry *e, uint64_t expected)
{
    FS_CALL(s, FS_REPLACE, replace(in_, e, expected));
}

static enum rz_err fs_renew(struct store *s, const char *id, const char *owner, int64_t lease_ms)
{
    FS_CALL(s, FS_RENEW, renew(in_, id, owner, lease_ms));
}

static enum rz_err fs_list(struct store *s, int state, const char *uploader, const char *cursor,
                           size_t limit, struct index_entry *out, size_t *n_out,
                           char next_out[STORE_CURSOR_MAX])
{
    FS_CALL(s, FS_LIST, list(in_, state, uploader, cursor, limit, out, n_out, next_out));
}

static enum rz_err fs_expired(struct store *s, int64_t now_ms, size_t max,
                              char (*ids_out)[INDEX_ID_LEN + 1], size_t *n_out)
{
    *n_out = 0;
    FS_CALL(s, FS_EXPIRED, expired(in_, now_ms, max, ids_out, n_out));
}

static enum rz_err fs_lock(struct store *s, const char *name, const char *owner, int64_t now_ms,
                           int64_t until_ms, char cursor_out[STORE_SWEEP_CURSOR_MAX])
{
    FS_CALL(s, FS_LOCK, lock(in_, name, owner, now_ms, until_ms, cursor_out));
}

static enum rz_err fs_save_cursor(struct store *s, const char *name, const char *owner,
                                  const char *cursor)
{
    FS_CALL(s, FS_SAVE_CURSOR, save_cursor(in_, name, owner, cursor));
}

static enum rz_err fs_ping(struct store *s)
{
    FS_CALL(s, FS_PING, ping(in_));
}

static void fs_free(struct store *s)
{
    store_free(fs(s)->inner);
    free(s);
}

static const struct store_ops fs_ops = {
    "fake",  fs_get,     fs_find_key, fs_create,      fs_replace, fs_renew,
    fs_list, fs_expired, fs_lock,     fs_save_cursor, fs_ping,    fs_free,
};

struct store *fake_store_new(struct index *idx)
{
    struct fake_store *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(store_memory_new(idx, &f->inner), RZ_OK);
    f->base.ops = &fs_ops;
    f->base.shared = 1;
    return &f->base;
}

size_t fake_store_calls(struct store *s, const char *op)
{
    size_t n = 0;

    for (int i = 0; i < FS_NOPS; i++) {
        if (!op || strcmp(op, fs_names[i]) == 0)
            n += __atomic_load_n(&fs(s)->calls[i], __ATOMIC_SEQ_CST);
    }
    return n;
}

void fake_store_set_down(struct store *s, int down, long delay_ms)
{
    __atomic_store_n(&fs(s)->delay_ms, delay_ms, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fs(s)->down, down, __ATOMIC_SEQ_CST);
}
