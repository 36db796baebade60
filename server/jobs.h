/* jobs.h - the bounded work queue and the workers that turn an uploaded
 * object into its variants.
 *
 * A job is a record id; the status module holds its state. Workers each own one
 * object-store connection and run: download (capped) -> image_make_variants -> put each
 * variant -> write the status record -> mark done or failed with a code. */
#ifndef RESIZER_JOBS_H
#define RESIZER_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "events.h"
#include "index.h"
#include "metrics.h"
#include "objstore.h"
#include "status.h"

struct jobs;

struct jobs_opts {
    const struct config *cfg; /* borrowed, outlives jobs */
    struct objstore *objects; /* borrowed; jobs_drain aborts it */
    struct status *status;    /* owns every state change */
    struct metrics *metrics;
    size_t workers;    /* >= 1 */
    size_t queue_size; /* >= 1 */
};

/* How a batch of events was taken. */
struct jobs_submit_result {
    size_t accepted;   /* new jobs queued */
    size_t duplicates; /* already queued, processing or done */
};

/* Builds the queue and starts the workers. */
enum rz_err jobs_new(const struct jobs_opts *opts, struct jobs **out);

/* Claims each object in the index and queues the new ones, in order.
 * RZ_EFULL when the queue filled before the end of the batch (the objects
 * before that point are queued; a redelivery finds them as duplicates),
 * RZ_ESHUTDOWN while draining. */
enum rz_err jobs_submit(struct jobs *j, const struct event_batch *b, int64_t now_ms,
                        struct jobs_submit_result *out);

/* Queues a failed image again. RZ_ENOTFOUND, RZ_ECONFLICT if it is not
 * failed, RZ_EFULL, RZ_ESHUTDOWN. */
enum rz_err jobs_retry(struct jobs *j, const char *id, int64_t now_ms);

/* The queue as the status module feeds it (re-claimed jobs). */
struct status_queue jobs_queue(struct jobs *j);

/* Jobs waiting for a worker, and the queue's capacity. */
size_t jobs_depth(struct jobs *j);
size_t jobs_capacity(struct jobs *j);

/* Stops taking jobs, lets the workers finish what is queued and running
 * for up to grace_secs, then stops them. Jobs not started by then are
 * released (queued, lease ended): with a shared store another replica
 * takes them at once; with the memory store the sweep of the next start
 * finds their objects. Returns the number of jobs left unfinished. */
size_t jobs_drain(struct jobs *j, long grace_secs);

/* Stops the workers (if jobs_drain did not) and frees everything. */
void jobs_free(struct jobs *j);

/* The failure code of a status record for an error from the pipeline:
 * "unsupported_format", "too_large", ... */
const char *jobs_failure_code(enum rz_err err);

#endif
