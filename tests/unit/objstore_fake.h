/* objstore_fake.h - an in-memory object store for unit tests, with faults.
 *
 * Objects live in one sorted table (bucket, key), so listings page in S3's
 * byte order. Faults are rules matched against each call in order: the
 * call fails (or is slowed) the way a real S3 does, so jobs, the sweep and
 * the status module can be driven through 404s, 403s, 503s and stalls.
 * Thread-safe: workers call it from their own threads. */
#ifndef RESIZER_OBJSTORE_FAKE_H
#define RESIZER_OBJSTORE_FAKE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "server/objstore.h"

#define FAKE_MAX_FAULTS 8

/* A stored object, as the test reads it back. */
struct fake_object {
    char *bucket;
    char *key;
    void *data;
    size_t len;
    char etag[24];
    char *content_type;
    char *cache_control;
    char *meta_name[OBJSTORE_MAX_META];
    char *meta_value[OBJSTORE_MAX_META];
    size_t nmeta;
    time_t last_modified;
};

/* Which calls fail and how. Strings borrowed (literals in tests). */
struct fake_fault {
    const char *op;         /* "get", "put", "head", "list"; NULL: any */
    const char *key_prefix; /* for list: the prefix asked for; NULL: any */
    int nth;                /* the nth matching call is the first to fail (1-based; 0: 1) */
    int times;              /* how many matching calls fail from there (0: all) */
    enum rz_err err;        /* RZ_OK: answered normally, after delay_ms */
    long delay_ms;          /* before answering (cut short by an abort) */
};

struct objstore *fake_objstore_new(void);

/* How LIST pages end, to play a faulty S3: as S3 does; with a token that
 * starts the listing over where the last page would end it; or every page
 * empty and truncated. */
enum fake_list_mode { FAKE_LIST_NORMAL, FAKE_LIST_LOOPS, FAKE_LIST_EMPTY };
void fake_objstore_list_mode(struct objstore *os, enum fake_list_mode mode);

/* Another client of the same objects and fault rules (as main.c gives the
 * sweep and the probe their own S3 clients): aborted and freed on its own. */
struct objstore *fake_objstore_view(struct objstore *os);

/* Stores an object as if uploaded; etag NULL: one from its bytes. */
void fake_objstore_add(struct objstore *os, const char *bucket, const char *key,
                       const void *data, size_t len, const char *etag);

/* The object, or NULL (borrowed; valid until it is written again). */
const struct fake_object *fake_objstore_find(struct objstore *os, const char *bucket,
                                             const char *key);

/* Objects in bucket whose key starts with prefix. */
size_t fake_objstore_count(struct objstore *os, const char *bucket, const char *prefix);

/* Adds a fault rule (counting starts now). */
void fake_objstore_fail(struct objstore *os, const struct fake_fault *f);

/* Calls made of op (NULL: all), failed ones included, through any view. */
size_t fake_objstore_calls(struct objstore *os, const char *op);

/* The clock writes are stamped with (S3's whole seconds); 0: time(NULL). */
void fake_objstore_set_clock(struct objstore *os, time_t now);

#endif
