/* reconcile.h - the sweep that finds uploads no job has finished.
 *
 * With a shared store (STATE_STORE=dynamodb) claims and leases recover
 * everything that was acknowledged; the sweep is then a repair pass for
 * events that never came (EventBridge gave up), off by default, run by one
 * replica at a time (the store's lease item "sweep"), resumable from the
 * cursor saved with that item, and paced at RECONCILE_LIST_RATE LISTs a
 * second.
 *
 * S3 is the source of truth: an object under SRC_PREFIX whose status record
 * (_status/keys/<relative key>) is missing or older than the object has not
 * been processed, whatever happened to its event (lost to a crash after the
 * 202, never sent, dropped by a full queue). The sweep walks the source
 * listing and the status listing side by side (both sorted, one page of
 * each in memory) and queues what is missing, a little at a time: it stops
 * when the queue is half full and goes on at the next interval. */
#ifndef RESIZER_RECONCILE_H
#define RESIZER_RECONCILE_H

#include <stddef.h>

#include "config.h"
#include "err.h"
#include "index.h"
#include "jobs.h"
#include "metrics.h"
#include "objstore.h"
#include "status.h"

struct reconcile;

struct reconcile_opts {
    const struct config *cfg; /* SRC_BUCKET must be set */
    struct objstore *objects; /* the sweep's own: reconcile_stop aborts it */
    struct index *index;
    struct status *status; /* what is known of an object, without S3 */
    struct jobs *jobs;
    struct metrics *metrics;
    long interval_secs; /* > 0 */
};

struct reconcile_stats {
    size_t scanned; /* source objects looked at */
    size_t queued;  /* jobs queued */
    int complete;   /* 1 when the whole prefix was walked */
};

/* Starts the sweep thread: one sweep now, then one every interval. */
enum rz_err reconcile_start(const struct reconcile_opts *opts, struct reconcile **out);

/* Asks the thread to stop after the object it is on, without waiting
 * (the drain: jobs get the grace period, not a stalled sweep). NULL: no-op. */
void reconcile_halt(struct reconcile *r);

/* Stops the thread, cutting its S3 calls (opts.objects must be the sweep's
 * own), and frees; NULL is a no-op. */
void reconcile_stop(struct reconcile *r);

#endif
