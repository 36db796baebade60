/* readiness.h - what /readyz decides from: is S3 answering, are we draining.
 *
 * A background thread makes one cheap S3 call every couple of seconds (a
 * one-key listing of the source prefix, which the original role already
 * allows, or a HEAD in the destination when there is no source bucket).
 * Any HTTP answer counts, 403 and 404 included: the question is whether S3
 * is reachable, not whether a key exists. */
#ifndef RESIZER_READINESS_H
#define RESIZER_READINESS_H

#include "err.h"
#include "metrics.h"
#include "objstore.h"

struct readiness;

struct readiness_opts {
    struct objstore *objects; /* borrowed; should make one attempt per call */
    const char *src_bucket;   /* NULL: probe dest_bucket with a HEAD */
    const char *src_prefix;
    const char *dest_bucket;
    long interval_ms; /* between probes */
    long window_ms;   /* S3 counts as up if it answered within this */
    struct metrics *metrics;
};

/* Probes once (so readiness is known at start), then starts the thread. */
enum rz_err readiness_new(const struct readiness_opts *opts, struct readiness **out);

/* Stops the thread; NULL is a no-op. */
void readiness_free(struct readiness *h);

/* From now on /readyz answers 503. */
void readiness_set_draining(struct readiness *h);
int readiness_draining(struct readiness *h);

/* 1 when S3 answered within the window; else 0 with a reason in why. */
int readiness_s3_ok(struct readiness *h, char *why, size_t whylen);

#endif
