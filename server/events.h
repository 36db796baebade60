/* events.h - parse the object-created notifications the service accepts.
 *
 * Shapes: the EventBridge S3 "Object Created" event, the classic S3
 * notification ({"Records":[...]}, including the s3:TestEvent message), and
 * MinIO's webhook ({"EventName":..., "Key":..., "Records":[...]}).
 * Any other valid JSON is counted as ignored. Pure parsing: no I/O. */
#ifndef RESIZER_EVENTS_H
#define RESIZER_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define EVENTS_MAX_BODY (256 * 1024) /* request body cap for POST /v1/events */
#define EVENTS_MAX_RECORDS 1000      /* records in one batch */
#define EVENTS_MAX_KEY 1024          /* S3's own limit on key length, in bytes */
#define EVENTS_MAX_DEPTH 32          /* JSON nesting; real notifications use < 8 */

/* One object-created notification; every string is owned by the batch. */
struct event_object {
    char *bucket;
    char *key;        /* decoded as the shape requires */
    char *etag;       /* without quotes; NULL if absent */
    char *sequencer;  /* NULL if absent */
    char *version_id; /* NULL if absent */
    uint64_t size;    /* 0 if absent */
    /* EventBridge does not document whether its key is percent-encoded:
     * the key is taken raw, and this is set when it holds '%' or '+', so
     * that a job that finds no object may try the decoded form once. */
    int try_decoded_key;
    /* Set by the reconcile sweep, never by a parsed event: a transient
     * failure of this object may be queued again (an event's redelivery
     * never runs a failed object a second time). */
    int repair;
};

struct event_batch {
    struct event_object *objects; /* object-created records, in body order */
    size_t nobjects;
    size_t ignored; /* records or whole messages that are valid but not ours
                             (other event kinds, test events, unknown shapes) */
};

/* Parses body (len bytes, not necessarily NUL-terminated) into *out.
 * RZ_EINVAL for malformed JSON, a record missing its bucket or key, a key
 * that is empty, over EVENTS_MAX_KEY or not valid UTF-8 after decoding, or
 * an unsupported eventVersion major; RZ_ETOOBIG for more than
 * EVENTS_MAX_RECORDS records. msg gets a sentence naming the problem.
 * On error *out is left empty. Release with events_batch_cleanup().
 * Also RZ_ETOOBIG for a body over EVENTS_MAX_BODY, and RZ_EINVAL for: JSON
 * nested deeper than EVENTS_MAX_DEPTH, duplicate keys, trailing data,
 * invalid UTF-8; a field of our records with the wrong type (msg names its
 * path, e.g. "Records[1].s3.object.key must be a string"); a size that is
 * negative, fractional or above 2^63-1; an invalid bucket name; an etag,
 * sequencer or version id that is not printable ASCII or over 1024 bytes.
 * One bad record fails the whole batch (a 400 the sender will not retry).
 * Records from a source other than aws:s3, minio:s3, ceph:s3 (or none) and
 * non-object entries of Records are ignored; an S3 record's eventVersion
 * must be 2.x whatever its eventName. An empty etag/version id is NULL. */
enum rz_err events_parse(const char *body, size_t len, struct event_batch *out, char *msg,
                         size_t msglen);

/* Removes from b the objects the service must not process, adding them to
 * b->ignored: a bucket other than src_bucket (when src_bucket is not NULL),
 * a key not under src_prefix, and any object in dest_bucket (so a single
 * bucket used as both cannot loop). Returns the number removed. */
size_t events_filter(struct event_batch *b, const char *src_bucket, const char *src_prefix,
                     const char *dest_bucket);

/* Frees everything in b; safe on a zeroed batch. */
void events_batch_cleanup(struct event_batch *b);

#endif
