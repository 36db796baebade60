/* objstore.h - the object operations the core makes (read, write, stat,
 * list), as an ops table with one implementation per backend, the way
 * redis' connection types put its I/O behind a table.
 *
 * - s3 (objstore_s3.c): the real one, a thin adaptor over s3.h.
 * - the in-memory fake of the unit tests (tests/unit/objstore_fake.c),
 *   which can fail a chosen call, so jobs, the sweep and the status
 *   module are tested through S3's failures without an S3.
 *
 * struct objstore is shared and thread-safe; struct objstore_conn is used
 * by one thread at a time (for S3, one kept-alive curl handle). Errors are
 * the ones s3.h documents: RZ_ENOTFOUND (404), RZ_EDENIED (403),
 * RZ_ETOOBIG (over max_bytes), RZ_EINVAL (another 4xx), RZ_EUPSTREAM (5xx,
 * throttling or the network after the backend's retries), RZ_ENOMEM. msg
 * (may be NULL when msglen is 0) gets the backend's words, for the log
 * only, except after RZ_ETOOBIG, which gets our own ("object is larger than
 * N bytes": a client reads it in the status record). Presigning is not an
 * object operation and stays on s3.h. */
#ifndef RESIZER_OBJSTORE_H
#define RESIZER_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define OBJSTORE_MAX_META 4

struct objstore;
struct objstore_conn;

/* A user metadata pair (x-amz-meta-<name> for S3); strings borrowed. */
struct objstore_meta {
    const char *name;
    const char *value;
};

/* An object read into memory; release with objstore_object_cleanup. */
struct objstore_object {
    void *data; /* malloc'd, len bytes, NUL-terminated for convenience */
    size_t len;
    char *etag;         /* without quotes; may be NULL */
    char *content_type; /* may be NULL */
};

/* What a stat (HEAD) tells; release with objstore_head_cleanup. */
struct objstore_head {
    uint64_t size;
    char *etag;
    char *content_type;
};

struct objstore_item {
    char *key;
    uint64_t size;
    char *etag;
    time_t last_modified; /* 0 if unknown */
};

/* One page of a listing; release with objstore_list_cleanup. */
struct objstore_list {
    struct objstore_item *items;
    size_t nitems;
    char *next_token; /* malloc'd; NULL on the last page */
};

/* What a write carries besides the bytes (strings borrowed). */
struct objstore_put {
    const char *content_type;
    const char *cache_control; /* NULL: none */
    const struct objstore_meta *meta;
    size_t nmeta; /* <= OBJSTORE_MAX_META */
};

struct objstore_ops {
    const char *name;
    /* A connection for one thread; NULL when out of memory. */
    struct objstore_conn *(*conn_new)(struct objstore *os);
    void (*conn_free)(struct objstore_conn *c);
    /* Reads bucket/key, refusing objects over max_bytes (RZ_ETOOBIG). */
    enum rz_err (*get)(struct objstore_conn *c, const char *bucket, const char *key,
                       size_t max_bytes, struct objstore_object *out, char *msg, size_t msglen);
    /* Writes bucket/key, replacing what was there. */
    enum rz_err (*put)(struct objstore_conn *c, const char *bucket, const char *key,
                       const void *data, size_t len, const struct objstore_put *p, char *msg,
                       size_t msglen);
    enum rz_err (*head)(struct objstore_conn *c, const char *bucket, const char *key,
                        struct objstore_head *out, char *msg, size_t msglen);
    /* One page of keys under prefix in byte order, after start_after or
     * from token (either may be NULL), at most max_keys (1..1000). */
    enum rz_err (*list)(struct objstore_conn *c, const char *bucket, const char *prefix,
                        const char *start_after, const char *token, int max_keys,
                        struct objstore_list *out, char *msg, size_t msglen);
    /* From now on every call fails at once with RZ_EUPSTREAM and calls in
     * flight are cut soon (a drain's end). Thread-safe. */
    void (*abort)(struct objstore *os);
    void (*free)(struct objstore *os);
};

struct objstore {
    const struct objstore_ops *ops;
};

/* Every connection starts with this, so a call finds its table. */
struct objstore_conn {
    struct objstore *os;
};

struct s3;

/* The S3 backend over s3 (borrowed: it stays the caller's and must
 * outlive the objstore). RZ_ENOMEM. */
enum rz_err objstore_s3_new(struct s3 *s3, struct objstore **out);

/* NULL is a no-op for all of these. */
void objstore_free(struct objstore *os);
void objstore_abort(struct objstore *os);
struct objstore_conn *objstore_conn_new(struct objstore *os);
void objstore_conn_free(struct objstore_conn *c);

/* The calls, through the connection's table (see struct objstore_ops). */
enum rz_err objstore_get(struct objstore_conn *c, const char *bucket, const char *key,
                         size_t max_bytes, struct objstore_object *out, char *msg,
                         size_t msglen);
enum rz_err objstore_put(struct objstore_conn *c, const char *bucket, const char *key,
                         const void *data, size_t len, const struct objstore_put *p, char *msg,
                         size_t msglen);
enum rz_err objstore_head(struct objstore_conn *c, const char *bucket, const char *key,
                          struct objstore_head *out, char *msg, size_t msglen);
enum rz_err objstore_list(struct objstore_conn *c, const char *bucket, const char *prefix,
                          const char *start_after, const char *token, int max_keys,
                          struct objstore_list *out, char *msg, size_t msglen);

/* Free what the struct holds and zero it; safe on a zeroed struct. */
void objstore_object_cleanup(struct objstore_object *o);
void objstore_head_cleanup(struct objstore_head *h);
void objstore_list_cleanup(struct objstore_list *l);

#endif
