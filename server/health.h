/* health.h - what /readyz decides from: is S3 answering, are we draining.
 *
 * A background thread makes one cheap S3 call every couple of seconds (a
 * one-key listing of the source prefix, which the original role already
 * allows, or a HEAD in the destination when there is no source bucket).
 * Any HTTP answer counts, 403 and 404 included: the question is whether S3
 * is reachable, not whether a key exists. */
#ifndef RESIZER_HEALTH_H
#define RESIZER_HEALTH_H

#include "err.h"
#include "metrics.h"
#include "objstore.h"

struct health;

struct health_opts {
    struct objstore *objects;   /* borrowed; should make one attempt per call */
    const char *src_bucket;     /* NULL: probe dest_bucket with a HEAD */
    const char *src_prefix;
    const char *dest_bucket;
    long interval_ms;           /* between probes */
    long window_ms;             /* S3 counts as up if it answered within this */
    struct metrics *metrics;
};

/* Probes once (so readiness is known at start), then starts the thread. */
enum rz_err health_new(const struct health_opts *opts, struct health **out);

/* Stops the thread; NULL is a no-op. */
void health_free(struct health *h);

/* From now on /readyz answers 503. */
void health_set_draining(struct health *h);
int health_draining(struct health *h);

/* 1 when S3 answered within the window; else 0 with a reason in why. */
int health_s3_ok(struct health *h, char *why, size_t whylen);

#endif
