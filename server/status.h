/* status.h - the one owner of an image's processing state.
 *
 *   pending --event--> queued --worker--> processing --> done | failed
 *      ^ upload URL      ^  ^ retry (failed)    |  newer object: queued again
 *                        |  +-- lease expired --+  transient error: queued
 *                        |                         after a backoff
 *                        |   lease expired after the last attempt: failed
 *                        |   (worker_lost)
 *
 * Handlers, jobs and the sweep call this module; none changes a record
 * itself. Every change is a compare-and-swap on the record in the store
 * (memory or DynamoDB), so two replicas deciding at once end with one
 * winner. A claim (an event taken, a retry, a re-claim) gives this replica
 * a lease on the record, renewed while the job waits or runs; a replica
 * that dies stops renewing, and any live replica re-claims the record once
 * the lease has run out (a query over in-flight records only).
 *
 * With a shared store the index is this replica's cache: finished records
 * are served from it for a few seconds, anything that can still change is
 * read from the store, strongly consistent. */
#ifndef RESIZER_STATUS_H
#define RESIZER_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "image.h"
#include "index.h"
#include "metrics.h"
#include "objstore.h"
#include "store.h"

struct status;

/* Where claimed jobs go: the job queue (jobs.c) implements this. */
struct status_queue {
    int (*reserve)(void *arg);                 /* 1 if a slot is now held for us */
    void (*commit)(void *arg, const char *id); /* fills the held slot */
    void (*cancel)(void *arg);                 /* gives the held slot back */
    void *arg;
};

struct status_opts {
    const struct config *cfg; /* borrowed */
    struct store *store;      /* borrowed */
    struct index *cache;      /* with a shared store; NULL when the store is the index */
    struct index *index;      /* the index (the memory store's, or the cache) */
    struct objstore *s3_read; /* status records in S3 (memory store): one short attempt */
    struct metrics *metrics;
    const char *owner;    /* this replica's id */
    long lease_ms;        /* > 0 */
    int max_attempts;     /* runs of a job with transient failures, >= 1 */
    long backoff_base_ms; /* before a transient failure runs again: base * 2^(n-1) */
};

/* An object of an event (strings borrowed). permanent_code: a failure
 * known at intake (a key too long for S3), recorded without a job. */
struct status_event {
    const char *bucket;
    const char *key;
    const char *etag;
    const char *sequencer;
    uint64_t size;
    int try_decoded_key;
    const char *permanent_code;
    const char *permanent_message;
    int repair; /* from the sweep: a transient failure may run again (status_sweep_may_retry) */
};

enum status_claim {
    STATUS_CLAIM_NEW = 0,   /* queue a job for the id */
    STATUS_CLAIM_DUPLICATE, /* already queued, processing or done for this object */
    STATUS_CLAIM_FAILED,    /* taken, and recorded failed at once (permanent_code) */
};

/* What a worker needs of a record it began (strings owned). */
struct status_task {
    char *bucket;
    char *key;
    char *etag;
    int try_decoded_key;
};

/* What a job ended with (strings borrowed). */
struct status_outcome {
    enum rz_err err;
    const char *msg;
    uint64_t bytes;
    const char *etag;     /* of the object read; NULL: keep */
    const char *real_key; /* the key found in S3 when it differs; NULL: same */
    const struct image_info *info;
    const struct index_variant *variants;
    size_t nvariants;
};

/* Called after a record ends done or failed, by its job or at intake (a
 * key whose variants could not be stored): the place for webhooks. */
typedef void (*status_finished_fn)(void *arg, const struct index_entry *e);

enum rz_err status_new(const struct status_opts *opts, struct status **out);

/* Stops the keeper thread (before the job queue it feeds goes away);
 * NULL is a no-op. */
void status_stop(struct status *st);

/* Stops the keeper and frees; NULL is a no-op. */
void status_free(struct status *st);

/* Registers a hook for finished records; at most 8. Before status_start. */
enum rz_err status_on_finished(struct status *st, status_finished_fn fn, void *arg);

/* Starts the keeper thread (lease renewals, re-claims of expired leases,
 * the store's health), feeding re-claimed jobs to q. */
enum rz_err status_start(struct status *st, const struct status_queue *q);

/* ---- transitions ---- */

/* Decides, atomically across replicas, whether an event needs a job; see
 * status.c for the table. room: a queue slot is held for a new job; without
 * one, a duplicate is still answered and anything else gets RZ_EFULL.
 * new_id is used when the object has no record. RZ_EUPSTREAM: the store is
 * unreachable (nothing was claimed); at once, without a request, while it
 * is known to be (status_store_ok is 0). */
enum rz_err status_claim_event(struct status *st, const struct status_event *ev, int room,
                               const char *new_id, int64_t now_ms, enum status_claim *claim_out,
                               char id_out[INDEX_ID_LEN + 1]);

/* Records a pending upload (TTL past expires_ms in a shared store).
 * Strings borrowed; uploader/filename may be NULL. RZ_EUPSTREAM as for
 * status_claim_event. */
enum rz_err status_add_upload(struct status *st, const char *id, const char *bucket,
                              const char *key, const char *filename, const char *content_type,
                              const char *uploader, int64_t expires_ms, int64_t now_ms);

/* queued (and ours) -> processing; fills *task (release with
 * status_task_cleanup). RZ_ECONFLICT: not ours or not queued any more. */
enum rz_err status_begin(struct status *st, const char *id, int64_t now_ms,
                         struct status_task *task);
void status_task_cleanup(struct status_task *t);

/* processing -> done | failed, or queued again (a newer object arrived:
 * *again_out = 1, queue it; a transient failure under max_attempts: queued
 * for anyone after a backoff). final_out (may be NULL) gets the record as
 * written. RZ_ECONFLICT: the lease was lost to another replica. */
enum rz_err status_finish(struct status *st, const char *id, const struct status_outcome *o,
                          int64_t now_ms, struct index_entry *final_out, int *again_out);

/* failed -> queued (ours). RZ_ENOTFOUND, RZ_ECONFLICT if not failed. */
enum rz_err status_retry(struct status *st, const char *id, int64_t now_ms);

/* Gives up a claim this replica will not run (draining, no room): the
 * record stays queued, with a lease that has already ended, so any replica
 * takes it at once. */
void status_release(struct status *st, const char *id, int64_t now_ms);

/* ---- reads ---- */

/* For the HTTP threads, which must never wait on S3 or the store: the
 * record by id (key NULL) or by (bucket, key) from memory, answered now,
 * or *pending_out set (return RZ_OK) to a look-up to start with
 * status_lookup_start once the caller is ready to wait for it. An id or
 * key found missing is remembered for a few seconds (RZ_ENOTFOUND at
 * once). RZ_EUPSTREAM: too many look-ups waiting (S3 or the store is
 * not keeping up). */
struct status_lookup;
enum rz_err status_find(struct status *st, const char *id, const char *bucket, const char *key,
                        struct index_entry *out, struct status_lookup **pending_out);

/* Runs the look-up on a look-up thread; done(arg) is called from there
 * when it has finished (then call status_lookup_result). */
void status_lookup_start(struct status_lookup *l, void (*done)(void *arg), void *arg);

/* The look-up's answer (RZ_OK, RZ_ENOTFOUND, RZ_EUPSTREAM, RZ_EINTERNAL
 * for a stored record that is not one, RZ_ESHUTDOWN); frees l. */
enum rz_err status_lookup_result(struct status_lookup *l, struct index_entry *out);

/* Frees a look-up whose answer nobody will read (void *: a cleanup hook). */
void status_lookup_cancel(void *l);

/* Stops the look-up threads (queued look-ups end RZ_ESHUTDOWN, stalled
 * S3 reads are cut): before the HTTP server stops. */
void status_stop_lookups(struct status *st);

/* The record by key from the store alone (the index, for the memory
 * store), never S3: what the sweep knows of an object. With a shared
 * store, a cached record finished for etag (may be NULL) is answered
 * without a store read: only a newer object or a retry changes it. */
enum rz_err status_peek_by_key(struct status *st, const char *bucket, const char *key,
                               const char *etag, struct index_entry *out);

/* A page of records (see store_ops.list). RZ_EINVAL: a bad cursor. */
enum rz_err status_list(struct status *st, int state, const char *uploader, const char *cursor,
                        size_t limit, struct index_entry *out, size_t *n_out,
                        char next_out[STORE_CURSOR_MAX]);

/* The sweep's lease item: taken (or renewed) for this replica until
 * until_ms, with the cursor saved by the last holder in cursor_out.
 * RZ_ECONFLICT while another replica holds it. */
enum rz_err status_lease_sweep(struct status *st, int64_t now_ms, int64_t until_ms,
                               char cursor_out[STORE_SWEEP_CURSOR_MAX]);

/* Saves where the sweep got to ("" : start over), if we still hold it. */
enum rz_err status_save_sweep_cursor(struct status *st, const char *cursor);

/* 1 when the store answered recently; else 0 with a reason. */
int status_store_ok(struct status *st, char *why, size_t whylen);

/* ---- the failure taxonomy ---- */

/* The failure code of a record for an error from the pipeline. */
const char *status_failure_code(enum rz_err err);

/* 1 for codes worth another attempt (S3 or the network failing, being
 * throttled); 0 for permanent ones (the bytes, a limit, a refusal), which
 * no retry or sweep will change. */
int status_code_transient(const char *code);

/* A job whose replica stopped (its lease ran out while processing) after
 * the last of its attempts: a poison image that crashes every replica it
 * reaches ends here instead of taking each one down in turn. Permanent. */
#define STATUS_CODE_WORKER_LOST "worker_lost"

/* 1 when the repair sweep may queue the failed record e again: a
 * transient failure with fewer than twice max_attempts runs so far. */
int status_sweep_may_retry(const struct status *st, const struct index_entry *e);

#endif
