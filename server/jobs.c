/* jobs.c - bounded queue of record ids and the worker threads.
 *
 * The queue is a ring of ids under one mutex. A claim first reserves a
 * slot, then asks the status module (which may talk to a shared store,
 * without our lock held), then fills or returns the slot: "is there room"
 * and "claim" go together and a full queue never leaves a record claimed
 * with nowhere to run. */
#include "jobs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "clock.h"
#include "ids.h"
#include "keys.h"
#include "log.h"
#include "status.h"
#include "text.h"

#define JOBS_CACHE_CONTROL "max-age=86400"
#define JOBS_MAX_S3_KEY 1024

struct jobs_slot {
    char id[INDEX_ID_LEN + 1];
};

struct jobs_worker {
    struct jobs *jobs;
    struct objstore_conn *conn;
    pthread_t thread;
    int started;
};

struct jobs {
    struct jobs_opts opts;
    struct image_opts image;
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or stopping */
    pthread_cond_t idle; /* a worker finished a job */
    struct jobs_slot *ring;
    size_t head; /* next to pop */
    size_t count;
    size_t reserved; /* slots held for claims being decided */
    size_t busy;     /* jobs running */
    int draining;    /* no new jobs */
    int stopping;    /* workers exit when the queue is empty */
    struct jobs_worker *workers;
};

/* What a finished job writes back into the entry. */
struct jobs_outcome {
    enum rz_err err;
    uint64_t bytes; /* of the object actually read */
    char *etag;
    char msg[256];
    struct image_info info;
    struct image_result *results;
    char **keys;
    size_t n;
    const char *real_key; /* the key found in S3, when it differs */
};

static const double jobs_duration_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

const char *jobs_failure_code(enum rz_err err)
{
    return status_failure_code(err);
}

/* ---- the queue ---- */

static void jobs_push_locked(struct jobs *j, const char *id)
{
    size_t tail = (j->head + j->count) % j->opts.queue_size;

    memcpy(j->ring[tail].id, id, INDEX_ID_LEN + 1);
    j->count++;
    pthread_cond_signal(&j->work);
}

/* ---- slots held while a claim is decided (also status_queue) ---- */

static int jobs_reserve(void *arg)
{
    struct jobs *j = arg;
    int ok;

    pthread_mutex_lock(&j->lock);
    ok = !j->draining && j->count + j->reserved < j->opts.queue_size;
    if (ok)
        j->reserved++;
    pthread_mutex_unlock(&j->lock);
    return ok;
}

static void jobs_commit(void *arg, const char *id)
{
    struct jobs *j = arg;
    int64_t now = 0;

    pthread_mutex_lock(&j->lock);
    j->reserved--;
    if (!j->draining)
        jobs_push_locked(j, id);
    else
        now = clock_wall_ms();
    pthread_mutex_unlock(&j->lock);
    /* Draining since the slot was taken: another replica runs it. */
    if (now)
        status_release(j->opts.status, id, now);
}

static void jobs_cancel(void *arg)
{
    struct jobs *j = arg;

    pthread_mutex_lock(&j->lock);
    j->reserved--;
    pthread_mutex_unlock(&j->lock);
}

/* An upload made through POST /v1/uploads has the key <prefix><id>.<ext>:
 * its job keeps that id, so the client's status_url stays right even when
 * the event reaches another replica, or arrives after a restart. */
static int jobs_id_from_key(const char *prefix, const char *key, char id_out[INDEX_ID_LEN + 1])
{
    const char *rel = keys_relative(prefix, key);
    uuid_t uu;

    if (rel == key && prefix[0] != '\0')
        return 0;
    if (strlen(rel) < INDEX_ID_LEN + 2 || rel[INDEX_ID_LEN] != '.' ||
        strchr(rel + INDEX_ID_LEN + 1, '/') || strchr(rel + INDEX_ID_LEN + 1, '.'))
        return 0;
    memcpy(id_out, rel, INDEX_ID_LEN);
    id_out[INDEX_ID_LEN] = '\0';
    if (uuid_parse(id_out, uu) != 0)
        return 0;
    uuid_unparse_lower(uu, id_out);
    return strncmp(id_out, rel, INDEX_ID_LEN) == 0;
}

/* A variant or status key over S3's 1,024 bytes can never be written:
 * known from the key alone, so it fails at intake, once. */
static int jobs_keys_fit(const struct config *cfg, const char *key)
{
    char *status_key = keys_status_by_key(cfg->src_prefix, key);
    size_t longest = status_key ? strlen(status_key) : 0;

    const char *rel = keys_relative(cfg->src_prefix, key);
    const char *slash = strrchr(rel, '/');
    const char *dot = strrchr(slash ? slash : rel, '.');
    size_t stem = dot ? (size_t)(dot - rel) : strlen(rel);

    free(status_key);
    for (size_t i = 0; i < cfg->nvariants; i++) {
        /* <variant>/<stem>.<ext>: ".jpeg", ".webp" and ".avif" are the
         * longest extensions a variant gets, whatever the format turns out. */
        size_t n = strlen(cfg->variants[i].name) + 1 + stem + 5;

        if (n > longest)
            longest = n;
    }
    return longest <= JOBS_MAX_S3_KEY;
}

static enum rz_err jobs_claim_one(struct jobs *j, const struct event_object *o, int64_t now_ms,
                                  struct jobs_submit_result *out)
{
    int fits = jobs_keys_fit(j->opts.cfg, o->key);
    struct status_event ev = {o->bucket,
                              o->key,
                              o->etag,
                              o->sequencer,
                              o->size,
                              o->try_decoded_key,
                              fits ? NULL : "key_too_long",
                              fits ? NULL
                                   : "a variant or status key would pass S3's 1,024 bytes",
                              o->repair};
    int room = jobs_reserve(j);
    char new_id[INDEX_ID_LEN + 1];
    char id[INDEX_ID_LEN + 1];
    enum status_claim claim = STATUS_CLAIM_DUPLICATE;
    enum rz_err err;

    if (!jobs_id_from_key(j->opts.cfg->src_prefix, o->key, new_id))
        ids_new_uuid(new_id);
    /* Without room a duplicate is still answered as one (202): only work
     * that needs a new job is refused. */
    err = status_claim_event(j->opts.status, &ev, room, new_id, now_ms, &claim, id);
    if (err == RZ_OK && claim == STATUS_CLAIM_NEW) {
        jobs_commit(j, id);
        out->accepted++;
        return RZ_OK;
    }
    if (room)
        jobs_cancel(j);
    if (err == RZ_OK && claim == STATUS_CLAIM_FAILED)
        out->accepted++; /* taken, and answered for good: failed */
    else if (err == RZ_OK)
        out->duplicates++;
    return err;
}

enum rz_err jobs_submit(struct jobs *j, const struct event_batch *b, int64_t now_ms,
                        struct jobs_submit_result *out)
{
    enum rz_err err = RZ_OK;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&j->lock);
    if (j->draining)
        err = RZ_ESHUTDOWN;
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < b->nobjects && err == RZ_OK; i++)
        err = jobs_claim_one(j, &b->objects[i], now_ms, out);
    return err;
}

enum rz_err jobs_retry(struct jobs *j, const char *id, int64_t now_ms)
{
    enum rz_err err;

    if (!jobs_reserve(j))
        return j->draining ? RZ_ESHUTDOWN : RZ_EFULL;
    err = status_retry(j->opts.status, id, now_ms);
    if (err == RZ_OK)
        jobs_commit(j, id);
    else
        jobs_cancel(j);
    return err;
}

size_t jobs_depth(struct jobs *j)
{
    size_t n;

    pthread_mutex_lock(&j->lock);
    n = j->count;
    pthread_mutex_unlock(&j->lock);
    return n;
}

struct status_queue jobs_queue(struct jobs *j)
{
    return (struct status_queue){jobs_reserve, jobs_commit, jobs_cancel, j};
}

size_t jobs_capacity(struct jobs *j)
{
    return j->opts.queue_size;
}

/* ---- one job ---- */

/* Downloads the source; an EventBridge key that may be percent-encoded is
 * tried decoded once when the raw form is not there (AWS does not say
 * which form it sends). 403 counts as "not there": without s3:ListBucket S3
 * answers a missing key with 403. */
static enum rz_err jobs_download(struct jobs_worker *w, const struct status_task *t,
                                 struct objstore_object *obj, char **real_key_out, char *msg,
                                 size_t msglen)
{
    const struct config *cfg = w->jobs->opts.cfg;
    enum rz_err err = objstore_get(w->conn, t->bucket, t->key, cfg->max_upload_bytes, obj, msg,
                                   msglen);
    char *decoded;

    *real_key_out = NULL;
    if (!t->try_decoded_key || (err != RZ_ENOTFOUND && err != RZ_EDENIED))
        return err;
    decoded = text_url_decode(t->key, 1);
    if (!decoded || strcmp(decoded, t->key) == 0) {
        free(decoded);
        return err;
    }
    err = objstore_get(w->conn, t->bucket, decoded, cfg->max_upload_bytes, obj, msg, msglen);
    if (err == RZ_OK)
        *real_key_out = decoded;
    else
        free(decoded);
    return err;
}

static enum rz_err jobs_put_variants(struct jobs_worker *w, const struct status_task *t,
                                     const char *key, struct jobs_outcome *o)
{
    const struct config *cfg = w->jobs->opts.cfg;
    struct objstore_meta meta[1] = {{"source-etag", t->etag ? t->etag : ""}};
    enum rz_err err = RZ_OK;

    o->keys = calloc(o->n, sizeof(*o->keys));
    if (!o->keys)
        return RZ_ENOMEM;
    for (size_t i = 0; i < o->n && err == RZ_OK; i++) {
        const struct image_result *r = &o->results[i];
        struct objstore_put p = {image_format_mime(r->format), JOBS_CACHE_CONTROL, meta,
                                 t->etag ? 1 : 0};

        o->keys[i] = keys_variant(cfg->src_prefix, key, r->name, r->format);
        if (!o->keys[i])
            return RZ_ENOMEM;
        err = objstore_put(w->conn, cfg->dest_bucket, o->keys[i], r->data, r->len, &p, o->msg,
                           sizeof(o->msg));
    }
    return err;
}

static void jobs_process(struct jobs_worker *w, const struct status_task *t,
                         struct jobs_outcome *o)
{
    struct jobs *j = w->jobs;
    struct objstore_object obj = {0};
    char *real_key = NULL;

    o->err = jobs_download(w, t, &obj, &real_key, o->msg, sizeof(o->msg));
    if (o->err == RZ_OK) {
        o->bytes = obj.len;
        o->etag = obj.etag;
        obj.etag = NULL;
        o->results = calloc(image_results_max(&j->image), sizeof(*o->results));
        o->err = o->results ? image_make_variants(obj.data, obj.len, &j->image, &o->info,
                                                  o->results, o->msg, sizeof(o->msg))
                            : RZ_ENOMEM;
        o->n = o->info.nresults; /* every variant in each distinct format */
    }
    objstore_object_cleanup(&obj);
    if (o->err == RZ_OK)
        o->err = jobs_put_variants(w, t, real_key ? real_key : t->key, o);
    o->real_key = real_key;
}

/* The message a client reads in the status record. S3's error text (its
 * <Message> can name the account, a role or a bucket policy) stays in the
 * log line; the record gets our own words. Image errors and transport
 * failures ("S3 unreachable: <curl's reason>") are ours to show. */
static const char *jobs_client_message(const struct jobs_outcome *o)
{
    switch (o->err) {
    case RZ_EUNSUPPORTED:
    case RZ_EPIXELS:
    case RZ_ECORRUPT:
    case RZ_ELIMIT:
    case RZ_ETOOBIG: return o->msg[0] ? o->msg : rz_err_name(o->err);
    case RZ_ENOTFOUND: return "the uploaded object is not in the source bucket";
    case RZ_EDENIED: return "S3 refused access to the source or destination object";
    default:
        if (strncmp(o->msg, "S3 unreachable: ", 16) == 0)
            return o->msg;
        return "S3 failed the request; retry later";
    }
}

/* The outcome as the status module takes it; variants (each with its
 * files, one per format) borrow from o. */
static void jobs_outcome_view(const struct jobs_outcome *o, struct index_variant *vars,
                              struct index_file *files, struct status_outcome *view)
{
    size_t n = o->err == RZ_OK ? o->n : 0;

    *view = (struct status_outcome){
        o->err,      jobs_client_message(o),
        o->bytes,    o->etag,
        o->real_key, o->err == RZ_OK ? &o->info : NULL,
        vars,        n ? index_output_view(o->results, o->keys, n, vars, files) : 0};
}

/* Writes the status record under both of its keys, so any replica can
 * answer by id or by key. After a transient failure (upstream_error) only
 * the by-id record is written: a missing by-key record is what makes the
 * reconcile sweep try the object again once S3 is back. A failure here is
 * logged, not fatal: the variants are what matter, and the sweep redoes
 * an object whose record is missing. */
static void jobs_write_status(struct jobs_worker *w, const char *id, const struct index_entry *e)
{
    const struct config *cfg = w->jobs->opts.cfg;
    json_t *j;
    char *text = NULL;
    char *keys[2] = {NULL, NULL};
    char msg[256] = "";
    struct objstore_put p = {"application/json", "no-cache", NULL, 0};
    enum rz_err err;

    j = index_entry_to_json(e);
    text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    keys[0] = keys_status_by_id(id);
    if (!status_code_transient(e->error_code))
        keys[1] = keys_status_by_key(cfg->src_prefix, e->key);
    err = text && keys[0] ? RZ_OK : RZ_ENOMEM;
    for (size_t i = 0; i < 2 && keys[i] && err == RZ_OK; i++)
        err = objstore_put(w->conn, cfg->dest_bucket, keys[i], text, strlen(text), &p, msg,
                           sizeof(msg));
    if (err != RZ_OK)
        log_fields(LOG_WARN, "status_write_failed",
                   json_pack("{s:s,s:s,s:s}", "id", id, "error", rz_err_name(err), "msg", msg));
    free(text);
    free(keys[0]);
    free(keys[1]);
}

static void jobs_outcome_cleanup(struct jobs_outcome *o)
{
    image_results_free(o->results, o->n);
    free(o->results);
    for (size_t i = 0; o->keys && i < o->n; i++)
        free(o->keys[i]);
    free(o->keys);
    free((char *)o->real_key);
    free(o->etag);
}

static void jobs_count(struct jobs *j, const struct jobs_outcome *o, double secs)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "outcome=\"%s\"",
             o->err == RZ_OK ? "done" : jobs_failure_code(o->err));
    metrics_add(j->opts.metrics, "resizer_jobs_total", labels, 1);
    metrics_observe(j->opts.metrics, "resizer_job_duration_seconds", "", secs);
}

static void jobs_log(const char *id, const struct status_task *t, const struct jobs_outcome *o,
                     double secs)
{
    if (o->err == RZ_OK) {
        log_fields(LOG_INFO, "job_done",
                   json_pack("{s:s,s:s,s:s,s:f,s:i}", "id", id, "bucket", t->bucket, "key",
                             t->key, "ms", secs * 1000.0, "variants", (int)o->n));
        return;
    }
    log_fields(LOG_WARN, "job_failed",
               json_pack("{s:s,s:s,s:s,s:s,s:s,s:f}", "id", id, "bucket", t->bucket, "key",
                         t->key, "code", jobs_failure_code(o->err), "msg", o->msg, "ms",
                         secs * 1000.0));
}

/* A newer object arrived while this one was processed: run again, here
 * if the queue has room, else anywhere (the claim is given up). */
static void jobs_rerun(struct jobs *j, const char *id)
{
    if (jobs_reserve(j))
        jobs_commit(j, id);
    else
        status_release(j->opts.status, id, clock_wall_ms());
}

static void jobs_run(struct jobs_worker *w, const char *id)
{
    struct jobs *j = w->jobs;
    struct status_task t = {0};
    struct jobs_outcome o = {0};
    struct index_variant vars[IMAGE_MAX_VARIANTS];
    struct index_file files[IMAGE_MAX_VARIANTS * IMAGE_MAX_OUTPUTS];
    struct status_outcome view;
    struct index_entry final = {0};
    int64_t start = clock_wall_ms();
    int again = 0;
    double secs;
    enum rz_err err;

    if (status_begin(j->opts.status, id, start, &t) != RZ_OK)
        return; /* another replica's now, or gone: nothing to do */
    jobs_process(w, &t, &o);
    jobs_outcome_view(&o, vars, files, &view);
    err = status_finish(j->opts.status, id, &view, clock_wall_ms(), &final, &again);
    secs = (double)(clock_wall_ms() - start) / 1000.0;
    jobs_count(j, &o, secs);
    jobs_log(id, &t, &o, secs);
    if (err == RZ_OK && (final.state == INDEX_DONE || final.state == INDEX_FAILED))
        jobs_write_status(w, id, &final);
    else if (err != RZ_OK)
        log_fields(LOG_WARN, "job_unrecorded",
                   json_pack("{s:s,s:s}", "id", id, "error", rz_err_name(err)));
    if (again)
        jobs_rerun(j, id);
    index_entry_cleanup(&final);
    jobs_outcome_cleanup(&o);
    status_task_cleanup(&t);
}

/* ---- workers ---- */

static void *jobs_worker_main(void *arg)
{
    struct jobs_worker *w = arg;
    struct jobs *j = w->jobs;
    char id[INDEX_ID_LEN + 1];

    for (;;) {
        pthread_mutex_lock(&j->lock);
        while (j->count == 0 && !j->stopping)
            pthread_cond_wait(&j->work, &j->lock);
        if (j->count == 0) {
            pthread_mutex_unlock(&j->lock);
            break;
        }
        memcpy(id, j->ring[j->head].id, sizeof(id));
        j->head = (j->head + 1) % j->opts.queue_size;
        j->count--;
        j->busy++;
        pthread_mutex_unlock(&j->lock);

        jobs_run(w, id);

        pthread_mutex_lock(&j->lock);
        j->busy--;
        pthread_cond_broadcast(&j->idle);
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}

static double jobs_depth_gauge(void *arg)
{
    struct jobs *j = arg;

    return (double)jobs_depth(j);
}

static double jobs_busy_gauge(void *arg)
{
    struct jobs *j = arg;
    size_t n;

    pthread_mutex_lock(&j->lock);
    n = j->busy;
    pthread_mutex_unlock(&j->lock);
    return (double)n;
}

static enum rz_err jobs_metrics_register(struct jobs *j)
{
    struct metrics *m = j->opts.metrics;
    enum rz_err err;

    err = metrics_register(m, "resizer_jobs_total", METRICS_COUNTER,
                           "Finished jobs by outcome (done or the failure code)", NULL, 0);
    if (err == RZ_OK)
        err =
            metrics_register(m, "resizer_job_duration_seconds", METRICS_HISTOGRAM,
                             "Seconds from a job's start to its end (download, resize, upload)",
                             jobs_duration_buckets,
                             sizeof(jobs_duration_buckets) / sizeof(jobs_duration_buckets[0]));
    if (err == RZ_OK)
        err = metrics_register(m, "resizer_events_total", METRICS_COUNTER,
                               "Objects in events by outcome", NULL, 0);
    if (err == RZ_OK)
        err = metrics_register_gauge_fn(m, "resizer_queue_depth", "Jobs waiting for a worker",
                                        "", jobs_depth_gauge, j);
    if (err == RZ_OK)
        err = metrics_register_gauge_fn(m, "resizer_jobs_in_flight", "Jobs being processed", "",
                                        jobs_busy_gauge, j);
    return err;
}

static enum rz_err jobs_start_workers(struct jobs *j)
{
    j->workers = calloc(j->opts.workers, sizeof(*j->workers));
    if (!j->workers)
        return RZ_ENOMEM;
    for (size_t i = 0; i < j->opts.workers; i++) {
        struct jobs_worker *w = &j->workers[i];

        w->jobs = j;
        w->conn = objstore_conn_new(j->opts.objects);
        if (!w->conn)
            return RZ_ENOMEM;
        if (pthread_create(&w->thread, NULL, jobs_worker_main, w) != 0)
            return RZ_EINTERNAL;
        w->started = 1;
    }
    return RZ_OK;
}

enum rz_err jobs_new(const struct jobs_opts *opts, struct jobs **out)
{
    struct jobs *j = calloc(1, sizeof(*j));
    enum rz_err err = RZ_ENOMEM;

    if (!j)
        return RZ_ENOMEM;
    j->opts = *opts;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->work, NULL);
    pthread_cond_init(&j->idle, NULL);
    config_image_opts(j->opts.cfg, &j->image);
    j->ring = calloc(opts->queue_size, sizeof(*j->ring));
    if (!j->ring)
        goto fail;
    err = jobs_metrics_register(j);
    if (err == RZ_OK)
        err = jobs_start_workers(j);
    if (err != RZ_OK)
        goto fail;
    *out = j;
    return RZ_OK;
fail:
    jobs_free(j);
    return err;
}

static void jobs_stop_workers(struct jobs *j)
{
    pthread_mutex_lock(&j->lock);
    j->draining = 1;
    j->stopping = 1;
    pthread_cond_broadcast(&j->work);
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; j->workers && i < j->opts.workers; i++) {
        if (j->workers[i].started) {
            pthread_join(j->workers[i].thread, NULL);
            j->workers[i].started = 0;
        }
    }
}

/* The queued ids, taken out of the ring (caller frees); lock held. */
static struct jobs_slot *jobs_take_queued_locked(struct jobs *j)
{
    struct jobs_slot *out = calloc(j->count ? j->count : 1, sizeof(*out));

    for (size_t i = 0; out && i < j->count; i++)
        out[i] = j->ring[(j->head + i) % j->opts.queue_size];
    j->count = 0;
    return out;
}

/* Jobs this replica will not run go back to the store with their lease
 * ended, so another replica takes them at once instead of after the lease. */
static void jobs_release(struct jobs *j, struct jobs_slot *ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        status_release(j->opts.status, ids[i].id, clock_wall_ms());
    free(ids);
}

size_t jobs_drain(struct jobs *j, long grace_secs)
{
    struct timespec deadline;
    struct jobs_slot *queued;
    size_t left, nqueued;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += grace_secs;
    pthread_mutex_lock(&j->lock);
    j->draining = 1;
    while (j->count + j->busy > 0) {
        if (pthread_cond_timedwait(&j->idle, &j->lock, &deadline) != 0)
            break;
    }
    /* Whatever did not start stays queued in the index; drop it here so
     * the workers exit once their running jobs end, and cut their S3 calls
     * so that ends now rather than after a stalled S3's timeouts. Their
     * objects get no by-key record, so the sweep of the next start redoes
     * them. */
    left = j->count + j->busy;
    nqueued = j->count;
    queued = jobs_take_queued_locked(j);
    if (j->busy)
        objstore_abort(j->opts.objects);
    pthread_mutex_unlock(&j->lock);
    jobs_release(j, queued, nqueued);
    jobs_stop_workers(j);
    return left;
}

void jobs_free(struct jobs *j)
{
    if (!j)
        return;
    jobs_stop_workers(j);
    for (size_t i = 0; j->workers && i < j->opts.workers; i++)
        objstore_conn_free(j->workers[i].conn);
    free(j->workers);
    free(j->ring);
    pthread_cond_destroy(&j->work);
    pthread_cond_destroy(&j->idle);
    pthread_mutex_destroy(&j->lock);
    free(j);
}
