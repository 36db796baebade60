/* reconcile.c - a streaming merge of the source and status listings. */
#include "reconcile.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "clock.h"
#include "keys.h"
#include "log.h"

#define RECONCILE_PAGE 1000
#define RECONCILE_EMPTY_PAGES_MAX 16

/* One listing walked a page at a time. */
struct reconcile_cursor {
    const char *bucket;
    const char *prefix;
    const char *start_after; /* resume after this key (NULL: from the start) */
    struct objstore_list page;
    size_t pos;
    int started;
    int done;
    unsigned empty_pages; /* truncated pages in a row without a key */
    char last[1025];      /* the greatest key listed so far ("" before the first) */
};

struct reconcile {
    struct reconcile_opts opts;
    struct objstore_conn *conn;
    int64_t next_list_ms;                /* rate limit: no LIST before this (monotonic) */
    char cursor[STORE_SWEEP_CURSOR_MAX]; /* the last source key looked at */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
};

static const double reconcile_buckets[] = {0.1, 0.5, 1, 5, 10, 30, 60, 300};

/* At most RECONCILE_LIST_RATE LIST requests a second: a repair pass must
 * not compete with the jobs for S3's request rate. */
static void reconcile_pace(struct reconcile *r)
{
    int64_t now = clock_mono_ms();
    long rate = r->opts.cfg->reconcile_list_rate;

    if (r->next_list_ms > now)
        usleep((useconds_t)(r->next_list_ms - now) * 1000);
    r->next_list_ms = clock_mono_ms() + (rate > 0 ? 1000 / rate : 0);
    metrics_add(r->opts.metrics, "resizer_reconcile_requests_total", "op=\"list\"", 1);
}

/* S3 lists keys in strictly increasing order: a page that goes back (a
 * faulty server's token cycle, A -> B -> A) or an endless run of truncated
 * empty pages would keep the sweep listing forever. Either ends the round
 * as an S3 error. Records the page's last key in c->last. */
static enum rz_err reconcile_page_check(struct reconcile_cursor *c, char *msg, size_t msglen)
{
    const char *prev = c->last[0] ? c->last : c->start_after;

    c->empty_pages = c->page.nitems ? 0 : c->empty_pages + 1;
    if (c->empty_pages > RECONCILE_EMPTY_PAGES_MAX) {
        snprintf(msg, msglen, "%u truncated pages in a row without a key",
                 RECONCILE_EMPTY_PAGES_MAX + 1);
        return RZ_EUPSTREAM;
    }
    for (size_t i = 0; i < c->page.nitems; i++) {
        const char *key = c->page.items[i].key;

        if (prev && strcmp(key, prev) <= 0) {
            snprintf(msg, msglen, "the listing went back to a key it had passed");
            return RZ_EUPSTREAM;
        }
        prev = key;
    }
    if (c->page.nitems)
        snprintf(c->last, sizeof(c->last), "%s", prev);
    return RZ_OK;
}

/* The current item, fetching the next page when this one is used up; NULL
 * at the end. RZ_* errors from S3 end the sweep. */
static enum rz_err reconcile_peek(struct reconcile *r, struct reconcile_cursor *c,
                                  const struct objstore_item **out)
{
    char msg[256];
    char *token;
    enum rz_err err;

    *out = NULL;
    while (!c->done && (!c->started || c->pos == c->page.nitems)) {
        if (c->started && !c->page.next_token) {
            c->done = 1;
            break;
        }
        token = c->page.next_token;
        c->page.next_token = NULL;
        objstore_list_cleanup(&c->page);
        reconcile_pace(r);
        err = objstore_list(r->conn, c->bucket, c->prefix, token ? NULL : c->start_after, token,
                            RECONCILE_PAGE, &c->page, msg, sizeof(msg));
        free(token);
        if (err == RZ_OK)
            err = reconcile_page_check(c, msg, sizeof(msg));
        if (err != RZ_OK) {
            log_printf(LOG_WARN, "reconcile_list_failed", "%s/%s: %s", c->bucket, c->prefix,
                       msg);
            return err;
        }
        c->started = 1;
        c->pos = 0;
    }
    if (!c->done)
        *out = &c->page.items[c->pos];
    return RZ_OK;
}

/* Whether the object needs a job, from its status record in S3 (has: one
 * at least as new as the object) and from what the store knows of it. The
 * record's time cannot settle it alone: a job that read the object before
 * it was overwritten writes its record after the overwrite, with the old
 * ETag. So the ETag decides: this replica's cache when it holds the record
 * finished for the listed ETag, else one store read. (The sweep is a
 * repair pass, off by default with the shared store, paced by
 * RECONCILE_LIST_RATE.) */
static int reconcile_wanted(struct reconcile *r, const struct objstore_item *obj, int has)
{
    struct index_entry e = {0};
    int wanted;

    if (status_peek_by_key(r->opts.status, r->opts.cfg->src_bucket, obj->key, obj->etag, &e) !=
        RZ_OK)
        return !has;
    switch (e.state) {
    case INDEX_QUEUED:
    case INDEX_PROCESSING: wanted = 0; break;
    case INDEX_DONE:
        /* Overwritten since: the ETag of the object differs from the one
         * processed. (Times would not do: S3's are whole seconds, and a job
         * often ends within the second its upload did.) */
        wanted = obj->etag && e.etag && strcmp(obj->etag, e.etag) != 0;
        break;
    case INDEX_FAILED:
        /* Only a transient failure is worth another try on its own, and
         * only so many times; bad images wait for an operator's retry. An
         * object replaced since its failure is new work. */
        wanted = status_sweep_may_retry(r->opts.status, &e) ||
                 (obj->etag && e.etag && strcmp(obj->etag, e.etag) != 0);
        break;
    default:
        wanted = 1; /* pending: uploaded, but its event never came */
        break;
    }
    index_entry_cleanup(&e);
    return wanted;
}

/* Queues the object; *queued_out is 1 only when that made a new job (the
 * claim may find it a duplicate after all). */
static enum rz_err reconcile_queue(struct reconcile *r, const struct objstore_item *obj,
                                   int *queued_out)
{
    struct event_object o = {
        .bucket = r->opts.cfg->src_bucket,
        .key = obj->key,
        .etag = obj->etag,
        .size = obj->size,
        .repair = 1,
    };
    struct event_batch b = {.objects = &o, .nobjects = 1};
    struct jobs_submit_result res = {0};
    enum rz_err err = jobs_submit(r->opts.jobs, &b, (int64_t)time(NULL) * 1000, &res);

    *queued_out = res.accepted > 0;
    return err;
}

/* Advances the status cursor up to rel; *has: a record for rel exists and
 * is at least as new as the object. */
static enum rz_err reconcile_has_record(struct reconcile *r, struct reconcile_cursor *st,
                                        const char *rel, const struct objstore_item *obj,
                                        int *has)
{
    const struct objstore_item *rec;
    enum rz_err err;
    int cmp = -1;

    *has = 0;
    for (;;) {
        err = reconcile_peek(r, st, &rec);
        if (err != RZ_OK || !rec)
            return err;
        cmp = strcmp(keys_relative(KEYS_STATUS_BY_KEY, rec->key), rel);
        if (cmp >= 0)
            break;
        st->pos++;
    }
    *has = cmp == 0 && rec->last_modified >= obj->last_modified;
    return RZ_OK;
}

static int reconcile_room(struct reconcile *r)
{
    return jobs_depth(r->opts.jobs) * 2 < jobs_capacity(r->opts.jobs);
}

/* The sweep's lease item, held for two intervals (renewed as it goes): a
 * replica that dies mid-sweep hands it on within that. */
static enum rz_err reconcile_lease(struct reconcile *r, char *cursor_out)
{
    int64_t now = clock_wall_ms();
    long hold = r->opts.interval_secs * 2 > 60 ? r->opts.interval_secs * 2 : 60;

    return status_lease_sweep(r->opts.status, now, now + hold * 1000, cursor_out);
}

/* Saves the cursor now and then, so that the next sweep (here or on
 * another replica) goes on from there instead of from the start. */
static void reconcile_checkpoint(struct reconcile *r, const char *key, size_t scanned)
{
    snprintf(r->cursor, sizeof(r->cursor), "%s", key);
    if (scanned % RECONCILE_PAGE == 0 && reconcile_lease(r, NULL) == RZ_OK)
        status_save_sweep_cursor(r->opts.status, r->cursor);
}

static enum rz_err reconcile_sweep(struct reconcile *r, struct reconcile_stats *stats)
{
    const struct config *cfg = r->opts.cfg;
    struct reconcile_cursor src = {.bucket = cfg->src_bucket, .prefix = cfg->src_prefix};
    struct reconcile_cursor st = {.bucket = cfg->dest_bucket, .prefix = KEYS_STATUS_BY_KEY};
    char *status_after = NULL;
    const struct objstore_item *obj;
    enum rz_err err;
    int has;
    int queued;

    memset(stats, 0, sizeof(*stats));
    if (r->cursor[0]) {
        src.start_after = r->cursor;
        status_after = keys_status_by_key(cfg->src_prefix, r->cursor);
        st.start_after = status_after;
    }
    for (;;) {
        err = reconcile_peek(r, &src, &obj);
        if (err != RZ_OK || !obj)
            break;
        if (!reconcile_room(r) || __atomic_load_n(&r->stopping, __ATOMIC_RELAXED))
            goto out;
        src.pos++;
        /* "images/" itself, or a folder marker: not an upload. */
        if (obj->key[strlen(obj->key) - 1] == '/')
            continue;
        stats->scanned++;
        err = reconcile_has_record(r, &st, keys_relative(cfg->src_prefix, obj->key), obj, &has);
        if (err != RZ_OK)
            break;
        if (reconcile_wanted(r, obj, has)) {
            err = reconcile_queue(r, obj, &queued);
            log_fields(LOG_DEBUG, "reconcile_queue",
                       json_pack("{s:s,s:b,s:b,s:s}", "key", obj->key, "has_record", has,
                                 "queued", queued, "result", rz_err_name(err)));
            if (err == RZ_EFULL || err == RZ_ESHUTDOWN)
                goto out;
            stats->queued += (size_t)queued;
        }
        /* Only now: a round cut short on this object (a failed listing, a
         * full queue) must not resume past it. */
        reconcile_checkpoint(r, obj->key, stats->scanned);
    }
    stats->complete = err == RZ_OK;
out:
    if (stats->complete)
        r->cursor[0] = '\0';
    if (reconcile_lease(r, NULL) == RZ_OK)
        status_save_sweep_cursor(r->opts.status, r->cursor);
    objstore_list_cleanup(&src.page);
    objstore_list_cleanup(&st.page);
    free(status_after);
    return err;
}

static void reconcile_run_once(struct reconcile *r)
{
    struct reconcile_stats stats;
    struct timespec a, b;
    double secs;
    enum rz_err err;

    /* One replica at a time: the others skip this round. */
    if (reconcile_lease(r, r->cursor) != RZ_OK) {
        metrics_add(r->opts.metrics, "resizer_reconcile_sweeps_total", "outcome=\"skipped\"", 1);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    err = reconcile_sweep(r, &stats);
    clock_gettime(CLOCK_MONOTONIC, &b);
    secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    metrics_add(r->opts.metrics, "resizer_reconcile_sweeps_total",
                err == RZ_OK ? "outcome=\"ok\"" : "outcome=\"error\"", 1);
    metrics_observe(r->opts.metrics, "resizer_reconcile_duration_seconds", "", secs);
    metrics_add(r->opts.metrics, "resizer_reconcile_objects_total", "kind=\"scanned\"",
                (double)stats.scanned);
    metrics_add(r->opts.metrics, "resizer_reconcile_objects_total", "kind=\"queued\"",
                (double)stats.queued);
    log_fields(stats.queued ? LOG_INFO : LOG_DEBUG, "reconcile",
               json_pack("{s:I,s:I,s:b,s:f,s:s}", "scanned", (json_int_t)stats.scanned, "queued",
                         (json_int_t)stats.queued, "complete", stats.complete, "ms",
                         secs * 1000.0, "result", rz_err_name(err)));
}

static void *reconcile_main(void *arg)
{
    struct reconcile *r = arg;
    struct timespec deadline;

    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        pthread_mutex_unlock(&r->lock);
        reconcile_run_once(r);
        pthread_mutex_lock(&r->lock);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += r->opts.interval_secs;
        while (!r->stopping && pthread_cond_timedwait(&r->wake, &r->lock, &deadline) == 0)
            ;
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static enum rz_err reconcile_metrics(struct metrics *m)
{
    enum rz_err err = metrics_register(m, "resizer_reconcile_sweeps_total", METRICS_COUNTER,
                                       "Reconcile sweeps by outcome", NULL, 0);

    if (err == RZ_OK)
        err = metrics_register(m, "resizer_reconcile_objects_total", METRICS_COUNTER,
                               "Source objects scanned and queued by the sweep", NULL, 0);
    if (err == RZ_OK)
        err = metrics_register(m, "resizer_reconcile_requests_total", METRICS_COUNTER,
                               "S3 requests the sweep made, by operation", NULL, 0);
    if (err == RZ_OK)
        err = metrics_register(m, "resizer_reconcile_duration_seconds", METRICS_HISTOGRAM,
                               "Duration of a sweep", reconcile_buckets,
                               sizeof(reconcile_buckets) / sizeof(reconcile_buckets[0]));
    return err;
}

enum rz_err reconcile_start(const struct reconcile_opts *opts, struct reconcile **out)
{
    struct reconcile *r;
    enum rz_err err;

    if (!opts->cfg->src_bucket || opts->interval_secs <= 0)
        return RZ_EINVAL;
    err = reconcile_metrics(opts->metrics);
    if (err != RZ_OK)
        return err;
    r = calloc(1, sizeof(*r));
    if (!r)
        return RZ_ENOMEM;
    r->opts = *opts;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->conn = objstore_conn_new(opts->objects);
    if (!r->conn || pthread_create(&r->thread, NULL, reconcile_main, r) != 0) {
        objstore_conn_free(r->conn);
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return RZ_ENOMEM;
    }
    *out = r;
    return RZ_OK;
}

void reconcile_halt(struct reconcile *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    __atomic_store_n(&r->stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

void reconcile_stop(struct reconcile *r)
{
    if (!r)
        return;
    reconcile_halt(r);
    /* A sweep stuck on a stalled S3 is cut rather than waited for. */
    objstore_abort(r->opts.objects);
    pthread_join(r->thread, NULL);
    objstore_conn_free(r->conn);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
