/* fixtures.h - what the unit tests of jobs, the sweep and the status
 * module share: a configuration from a few variables, a real JPEG, a
 * service (memory store, status, jobs) over the fake object store, and a
 * bounded wait. */
#ifndef RESIZER_UNIT_FIXTURES_H
#define RESIZER_UNIT_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "objstore_fake.h"
#include "store_fake.h"
#include "server/config.h"
#include "server/index.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/status.h"
#include "server/store.h"

#define FIX_SRC "src"
#define FIX_DEST "dest"

/* Loads a configuration (buckets src and dest, prefix images/, one small
 * variant), then the NULL-ended "NAME=VALUE" extras over it. Asserts. */
void fix_config(struct config *c, const char *const *extra);

/* A w x h JPEG (a gradient, so it is not a flat image); malloc'd. */
void *fix_jpeg(int w, int h, size_t *len_out);

/* Polls pred(arg) every 2 ms for up to ms; returns its last answer. */
int fix_wait(int (*pred)(void *arg), void *arg, long ms);

/* A replica: the memory store, the status module and the job queue over a
 * fake object store, all started. */
struct fix_service {
    struct config cfg;
    struct objstore *objects;
    struct index *idx;
    struct metrics *m;
    struct store *store; /* the memory store, or a fake shared one over it */
    struct index *cache; /* with a shared store: the status module's cache */
    struct status *status;
    struct jobs *jobs;
};

struct fix_service_opts {
    const char *const *env;   /* extras for fix_config; NULL: none */
    long lease_ms;            /* 0: 60 s */
    int max_attempts;         /* 0: 2 */
    long backoff_base_ms;     /* 0: 10 */
    size_t workers;           /* 0: 1 */
    size_t queue_size;        /* 0: 16 */
    struct objstore *objects; /* another replica's fake, to share its objects; NULL: new */
    const char *owner;        /* NULL: "unit" */
    int shared_store;         /* the store is store_fake's (shared, counted, breakable) */
};

void fix_service_start(struct fix_service *s, const struct fix_service_opts *o);
void fix_service_stop(struct fix_service *s);

/* The record of the object src/key, and whether it has reached a state
 * that no worker will change (done or failed, lease given up). */
int fix_record(struct fix_service *s, const char *key, struct index_entry *out);
int fix_wait_finished(struct fix_service *s, const char *key, long ms);

/* Submits one object of src as an event would. */
enum rz_err fix_submit(struct fix_service *s, const char *key, const char *etag,
                       int try_decoded);

#endif
