/* store.h - where status records live: an ops table with one
 * implementation per backend (like redis' connection types), chosen by
 * STATE_STORE.
 *
 * - memory: the in-memory index itself; one replica, nothing else to run.
 * - dynamodb: one table shared by every replica; conditional writes make
 *   claims and state changes atomic across them.
 *
 * Every write is a compare-and-swap on the record's version, so the status
 * module (the only caller that changes records) can read, decide and write
 * without a lock spanning replicas. Records read back are validated
 * (index_entry_from_json) before they are returned: another writer's bytes
 * are untrusted. Errors: RZ_EUPSTREAM when the backend is unreachable or
 * throttling after its retries (the caller answers 503), RZ_ECONFLICT when
 * a condition failed, RZ_ENOTFOUND, RZ_ENOMEM, RZ_EINVAL for a bad cursor. */
#ifndef RESIZER_STORE_H
#define RESIZER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "index.h"
#include "metrics.h"

#define STORE_CURSOR_MAX 96
#define STORE_SWEEP_CURSOR_MAX 1100 /* an S3 key (1,024 bytes) and some */

struct store;

struct store_ops {
    const char *name;
    /* Copies the record with this id into *out, read strongly consistent. */
    enum rz_err (*get)(struct store *s, const char *id, struct index_entry *out);
    /* The id of the record for (bucket, key), consistent. */
    enum rz_err (*find_key)(struct store *s, const char *bucket, const char *key,
                            char id_out[INDEX_ID_LEN + 1]);
    /* Creates e (its version must be 1) if no record has its id and none
     * its (bucket, key); RZ_ECONFLICT otherwise; RZ_EFULL (memory only)
     * when full of unfinished records. */
    enum rz_err (*create)(struct store *s, const struct index_entry *e);
    /* Replaces the record with e's id by e if the stored version is
     * expected (e->version is expected + 1). The key may change: the record
     * is then found by the new key too. */
    enum rz_err (*replace)(struct store *s, const struct index_entry *e, uint64_t expected);
    /* Moves the lease of a queued or processing record owned by owner to
     * lease_ms, without a new version. RZ_ECONFLICT if owned by another. */
    enum rz_err (*renew)(struct store *s, const char *id, const char *owner, int64_t lease_ms);
    /* A page of records, newest first, in state (-1: any) for uploader
     * (NULL: any), after cursor (NULL: from the newest; "" is no cursor: RZ_EINVAL). next_out
     * gets "" when there is no next page. Eventually consistent. */
    enum rz_err (*list)(struct store *s, int state, const char *uploader, const char *cursor,
                        size_t limit, struct index_entry *out, size_t *n_out,
                        char next_out[STORE_CURSOR_MAX]);
    /* Ids of queued/processing records whose lease ended before now_ms:
     * O(in flight), never a walk of everything. */
    enum rz_err (*expired)(struct store *s, int64_t now_ms, size_t max,
                           char (*ids_out)[INDEX_ID_LEN + 1], size_t *n_out);
    /* Takes or renews the named lease item (the sweep's) for owner until
     * until_ms, if free, expired or already owner's; RZ_ECONFLICT if another
     * holds it. cursor_out (may be NULL) gets the cursor stored with it. */
    enum rz_err (*lock)(struct store *s, const char *name, const char *owner, int64_t now_ms,
                        int64_t until_ms, char cursor_out[STORE_SWEEP_CURSOR_MAX]);
    /* Stores cursor with the lease item, if owner still holds it. */
    enum rz_err (*save_cursor)(struct store *s, const char *name, const char *owner,
                               const char *cursor);
    /* One cheap request: RZ_OK when the backend answers. */
    enum rz_err (*ping)(struct store *s);
    void (*free)(struct store *s);
};

struct store {
    const struct store_ops *ops;
    int shared; /* several replicas see the same records */
    struct metrics *metrics;
};

/* The memory store over idx (borrowed: it stays the caller's). */
enum rz_err store_memory_new(struct index *idx, struct store **out);

struct ddb_opts;

/* The DynamoDB store on table (see store_dynamodb.c for its items). Sends
 * nothing yet. RZ_EINVAL with msg for bad options. */
enum rz_err store_dynamodb_new(const struct ddb_opts *o, const char *table, struct store **out,
                               char *msg, size_t msglen);

/* Creates table with its indexes (on-demand billing, TTL on the ttl
 * attribute) and waits until it is active; a table already there is
 * fine. For `resizer --create-table`. */
enum rz_err store_dynamodb_create_table(const struct ddb_opts *o, const char *table, char *msg,
                                        size_t msglen);

/* NULL is a no-op. */
void store_free(struct store *s);

#endif
