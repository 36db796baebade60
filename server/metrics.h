/* metrics.h - counters, gauges and histograms in the Prometheus text format.
 *
 * Families are registered at start (name, type, help, histogram buckets);
 * series are created on first use with their label string, e.g.
 * route="/v1/events",status="202". Thread-safe; an update costs a mutex and a
 * hash lookup, cheap next to any request. */
#ifndef RESIZER_METRICS_H
#define RESIZER_METRICS_H

#include <stddef.h>

#include "err.h"

enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
};

struct metrics;

/* A gauge read at scrape time (queue depth, index size...). */
typedef double (*metrics_gauge_fn)(void *arg);

/* Returns a new empty registry, or NULL if out of memory. */
struct metrics *metrics_new(void);

/* Frees the registry; NULL is a no-op. */
void metrics_free(struct metrics *m);

/* Registers a family. For histograms, buckets are the upper bounds in
 * ascending order (+Inf is implied); otherwise pass NULL, 0. Registering a
 * name twice returns RZ_ECONFLICT. */
enum rz_err metrics_register(struct metrics *m, const char *name, enum metrics_type type,
                             const char *help, const double *buckets, size_t nbuckets);

/* Registers a gauge whose value is fn(arg) at each scrape. */
enum rz_err metrics_register_gauge_fn(struct metrics *m, const char *name, const char *help,
                                      const char *labels, metrics_gauge_fn fn, void *arg);

/* Adds v to a counter (or gauge) series; labels may be "" for none.
 * Unknown family names are ignored (and caught by tests, not at run time). */
void metrics_add(struct metrics *m, const char *name, const char *labels, double v);

/* Sets a gauge series. */
void metrics_set(struct metrics *m, const char *name, const char *labels, double v);

/* Records one observation in a histogram series. */
void metrics_observe(struct metrics *m, const char *name, const char *labels, double v);

#ifdef RESIZER_UNITTEST
/* Returns the current value of a counter or gauge series (0 if none); in
 * the unit-test core only (the service reads its metrics through /metrics). */
double metrics_get(struct metrics *m, const char *name, const char *labels);
#endif

/* Renders every family as Prometheus text exposition format 0.0.4.
 * The caller frees the result; NULL if out of memory. */
char *metrics_render(struct metrics *m);

#endif
