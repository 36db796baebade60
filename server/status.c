/* status.c - every state change of a record, as a read-decide-write on the
 * store, conditional on the version read; and the keeper thread that
 * renews this replica's leases and re-claims expired ones.
 *
 * An event for an existing record (status_claim_event):
 *   pending                    -> queued (a job)
 *   queued                     -> duplicate (the queued job reads the newest object)
 *   processing, same object    -> duplicate
 *   processing, newer object   -> duplicate, marked to run again when it ends
 *   done or failed, same object -> duplicate
 *   done or failed, newer object -> queued (a job)
 * "Newer": a greater sequencer, or without sequencers another etag. The
 * recorded object only moves forward: a late old event changes nothing.
 *
 * A failure is final for its object: an EventBridge retry or the other
 * replica's copy of the event must not run the job (and its image.failed
 * webhook) a second time. A transient failure with attempts left is not
 * failed but queued for after its backoff (status_finish), so a redelivery
 * finds it queued: the keeper runs it, not the event. Only POST /retry
 * (status_retry) runs a failed object again, and the repair sweep a
 * transient failure, within status_sweep_may_retry's bound. */
#include "status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ids.h"
#include "keys.h"
#include "log.h"

#define STATUS_CAS_TRIES 8
#define STATUS_MAX_HOOKS 8
#define STATUS_CACHE_MS 10000 /* finished records served from the cache */
#define STATUS_MAX_RECORD (64 * 1024)
#define STATUS_RECLAIM_BATCH 32
#define STATUS_PING_MS 1000
#define STATUS_LOOKUP_THREADS 2
#define STATUS_LOOKUP_QUEUE 32 /* look-ups waiting; more are refused (429) */
#define STATUS_NEG_SLOTS 1024
#define STATUS_NEG_MS 2000         /* "no such image" remembered this long */
#define STATUS_LOOKUP_WAIT_MS 2000 /* queued longer: answered "unavailable" unread */

/* A read that needs S3 or the store, run on a look-up thread. */
struct status_lookup {
    struct status *st;
    int by_key;
    char id[INDEX_ID_LEN + 1];
    char *bucket;
    char *key;
    enum rz_err err;
    struct index_entry out;
    int64_t queued_ms;
    void (*done)(void *arg); /* NULL: nobody waits (a refresh) */
    void *done_arg;
    struct status_lookup *next;
};

struct status_neg {
    uint64_t hash;
    int64_t until_ms;
};

struct status_hook {
    status_finished_fn fn;
    void *arg;
};

struct status {
    struct status_opts o;
    struct status_hook hooks[STATUS_MAX_HOOKS];
    size_t nhooks;
    struct status_queue q;
    pthread_mutex_t lock; /* held set, store health, stop */
    pthread_cond_t wake;
    char (*held)[INDEX_ID_LEN + 1]; /* claims this replica holds */
    size_t nheld, capheld;
    int64_t store_ok_ms;   /* last answer from the store */
    int64_t store_fail_ms; /* last failure (0: none since the last answer) */
    int stopping;
    int started;
    pthread_t keeper;
    pthread_mutex_t lk_lock; /* the look-up queue and negative cache */
    pthread_cond_t lk_work;
    struct status_lookup *lk_head, *lk_tail;
    size_t lk_count; /* queued or reserved */
    int lk_stopping;
    size_t lk_threads;
    pthread_t lk_thread[STATUS_LOOKUP_THREADS];
    struct status_neg neg[STATUS_NEG_SLOTS];
};

/* ---- the failure taxonomy ---- */

const char *status_failure_code(enum rz_err err)
{
    switch (err) {
    case RZ_EUNSUPPORTED: return "unsupported_format";
    case RZ_ETOOBIG: return "too_large";
    case RZ_EPIXELS: return "too_many_pixels";
    case RZ_ECORRUPT: return "corrupt_image";
    case RZ_ELIMIT: return "encoder_limit";
    case RZ_ENOTFOUND: return "source_missing";
    case RZ_EDENIED: return "access_denied";
    case RZ_EINVAL: return "s3_rejected";
    default: return "upstream_error";
    }
}

int status_code_transient(const char *code)
{
    return code && strcmp(code, "upstream_error") == 0;
}

/* The job's own retries had JOB_ATTEMPTS runs; the sweep gives it as many
 * again (one a pass, so the pass interval is the backoff), then leaves it
 * to an operator: an S3 that stays broken costs a bounded number of jobs.
 * Runs count this object's only (a key overwritten often is not spent);
 * the shared store keeps them, the memory store for the process' life. */
int status_sweep_may_retry(const struct status *st, const struct index_entry *e)
{
    return e->state == INDEX_FAILED && status_code_transient(e->error_code) &&
           e->runs < 2 * st->o.max_attempts;
}

/* ---- store health and metrics ---- */

/* Counts a store request by phase (what the status module was doing) and
 * operation, and keeps the store's health. */
static enum rz_err status_seen(struct status *st, const char *phase, const char *op,
                               enum rz_err err)
{
    char labels[128];
    int64_t now = clock_wall_ms();

    pthread_mutex_lock(&st->lock);
    if (err == RZ_EUPSTREAM) {
        st->store_fail_ms = now;
    } else {
        st->store_ok_ms = now;
        st->store_fail_ms = 0;
    }
    pthread_mutex_unlock(&st->lock);
    snprintf(labels, sizeof(labels), "phase=\"%s\",op=\"%s\",outcome=\"%s\"", phase, op,
             err == RZ_OK          ? "ok"
             : err == RZ_ECONFLICT ? "conflict"
             : err == RZ_ENOTFOUND ? "not_found"
                                   : "error");
    metrics_add(st->o.metrics, "resizer_store_requests_total", labels, 1);
    return err;
}

int status_store_ok(struct status *st, char *why, size_t whylen)
{
    int ok;

    pthread_mutex_lock(&st->lock);
    ok = st->store_fail_ms == 0;
    pthread_mutex_unlock(&st->lock);
    if (!ok && why && whylen)
        snprintf(why, whylen, "the %s state store is unreachable", st->o.store->ops->name);
    return ok;
}

/* Intake while the store is known to be down (a request failed, and the
 * keeper's ping has not been answered since): refused at once, RZ_EUPSTREAM
 * (503 with Retry-After), instead of holding an HTTP thread through the
 * store's timeouts and retries for an answer that is known. Nothing is
 * claimed, so nothing is acknowledged; the keeper's next answered ping
 * opens intake again. */
static int status_intake_refused(struct status *st, const char *phase)
{
    char labels[64];

    if (status_store_ok(st, NULL, 0))
        return 0;
    snprintf(labels, sizeof(labels), "phase=\"%s\"", phase);
    metrics_add(st->o.metrics, "resizer_store_unavailable_total", labels, 1);
    return 1;
}

/* ---- the set of claims this replica holds ---- */

static void status_hold(struct status *st, const char *id)
{
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < st->nheld; i++) {
        if (strcmp(st->held[i], id) == 0)
            goto done;
    }
    if (st->nheld == st->capheld) {
        size_t cap = st->capheld ? st->capheld * 2 : 64;
        void *p = realloc(st->held, cap * sizeof(*st->held));

        if (!p)
            goto done; /* not renewed: the lease lapses and someone re-claims it */
        st->held = p;
        st->capheld = cap;
    }
    memcpy(st->held[st->nheld++], id, INDEX_ID_LEN + 1);
done:
    pthread_mutex_unlock(&st->lock);
}

static void status_unhold(struct status *st, const char *id)
{
    pthread_mutex_lock(&st->lock);
    for (size_t i = 0; i < st->nheld; i++) {
        if (strcmp(st->held[i], id) == 0) {
            memcpy(st->held[i], st->held[--st->nheld], INDEX_ID_LEN + 1);
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
}

/* ---- read-decide-write ---- */

/* Decides a change of *e; sets *write when it is to be stored. Any error
 * leaves the record as it was and is returned. */
typedef enum rz_err (*status_change_fn)(struct index_entry *e, void *arg, int *write);

static void status_neg_clear(struct status *st, const struct index_entry *e);

static void status_cache_put(struct status *st, const struct index_entry *e)
{
    struct index_entry c;

    status_neg_clear(st, e);
    if (!st->o.cache || index_entry_copy(&c, e) != RZ_OK)
        return;
    c.cached_ms = clock_wall_ms();
    index_put(st->o.cache, &c); /* a full cache only costs a later read */
    index_entry_cleanup(&c);
}

/* Reads the record, lets fn change it, writes it if its version did not
 * move meanwhile, else starts again. The record as written (or as read,
 * when fn wrote nothing) goes to *out if out is not NULL. */
static enum rz_err status_change(struct status *st, const char *phase, const char *id,
                                 status_change_fn fn, void *arg, struct index_entry *out)
{
    struct store *s = st->o.store;
    enum rz_err err = RZ_ECONFLICT;

    for (int i = 0; i < STATUS_CAS_TRIES && err == RZ_ECONFLICT; i++) {
        struct index_entry e = {0};
        uint64_t expected;
        int write = 0;

        err = status_seen(st, phase, "get", s->ops->get(s, id, &e));
        if (err == RZ_OK)
            err = fn(&e, arg, &write);
        expected = e.version;
        if (err == RZ_OK && write) {
            /* Ours from now on, not a copy of another replica's S3 record:
             * a background refresh must not replace it (index_put). */
            e.cached_ms = 0;
            e.version = expected + 1;
            err = status_seen(st, phase, "replace", s->ops->replace(s, &e, expected));
            if (err == RZ_ECONFLICT) {
                index_entry_cleanup(&e);
                continue;
            }
        }
        if (err == RZ_OK)
            status_cache_put(st, &e);
        if (err == RZ_OK && out)
            *out = e;
        else
            index_entry_cleanup(&e);
        return err;
    }
    return err;
}

/* Tells the finished hooks (webhooks) of a record that ended done or
 * failed, after the write that made it so. */
static void status_run_hooks(struct status *st, const struct index_entry *e)
{
    for (size_t i = 0; i < st->nhooks; i++)
        st->hooks[i].fn(st->hooks[i].arg, e);
}

/* ---- claiming events ---- */

/* S3 sequencers are hex strings of varying length; the shorter is padded
 * with '0' on the right before comparing (S3's documented rule). */
static int status_sequencer_cmp(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t n = la > lb ? la : lb;

    for (size_t i = 0; i < n; i++) {
        int ca = i < la ? (unsigned char)a[i] : '0';
        int cb = i < lb ? (unsigned char)b[i] : '0';

        ca = ca >= 'a' && ca <= 'f' ? ca - 32 : ca;
        cb = cb >= 'a' && cb <= 'f' ? cb - 32 : cb;
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return 0;
}

static int status_event_is_newer(const struct index_entry *e, const struct status_event *ev)
{
    if (ev->sequencer && e->sequencer)
        return status_sequencer_cmp(ev->sequencer, e->sequencer) > 0;
    if (ev->etag && e->etag)
        return strcmp(ev->etag, e->etag) != 0;
    return 0; /* nothing to compare: the same */
}

static int status_event_is_older(const struct index_entry *e, const struct status_event *ev)
{
    return ev->sequencer && e->sequencer &&
           status_sequencer_cmp(ev->sequencer, e->sequencer) < 0;
}

static int status_str_differs(const char *a, const char *b)
{
    return b && (!a || strcmp(a, b) != 0);
}

static enum rz_err status_replace_str(char **dst, const char *src)
{
    char *c;

    if (!src)
        return RZ_OK;
    c = strdup(src);
    if (!c)
        return RZ_ENOMEM;
    free(*dst);
    *dst = c;
    return RZ_OK;
}

/* Records the event's object; *changed when it differs from the record's. */
static enum rz_err status_set_object(struct index_entry *e, const struct status_event *ev,
                                     int *changed)
{
    enum rz_err err = RZ_OK;

    if (status_str_differs(e->etag, ev->etag) ||
        status_str_differs(e->sequencer, ev->sequencer) || (ev->size && ev->size != e->bytes) ||
        e->try_decoded_key != ev->try_decoded_key)
        *changed = 1;
    err = status_replace_str(&e->etag, ev->etag);
    if (err == RZ_OK)
        err = status_replace_str(&e->sequencer, ev->sequencer);
    if (ev->size)
        e->bytes = ev->size;
    e->try_decoded_key = ev->try_decoded_key;
    return err;
}

static void status_clear_error(struct index_entry *e)
{
    e->error_code[0] = '\0';
    free(e->error_message);
    e->error_message = NULL;
}

/* Ours, queued, with a lease from now. */
static void status_take(struct status *st, struct index_entry *e, int64_t now_ms)
{
    e->state = INDEX_QUEUED;
    snprintf(e->owner, sizeof(e->owner), "%s", st->o.owner);
    e->lease_ms = now_ms + st->o.lease_ms;
    e->updated_ms = now_ms;
    e->cached_ms = 0;
}

static void status_set_failure(struct index_entry *e, const char *code, const char *msg)
{
    e->state = INDEX_FAILED;
    snprintf(e->error_code, sizeof(e->error_code), "%s", code);
    free(e->error_message);
    e->error_message = strdup(msg ? msg : code);
    e->owner[0] = '\0';
    e->lease_ms = 0;
}

/* The current object is new (an event's first, a newer one, a retry): its
 * runs and lost runs, which bound retries and worker_lost, start at 0. */
static void status_count_afresh(struct index_entry *e)
{
    e->runs = 0;
    e->lost = 0;
}

struct status_claim_arg {
    struct status *st;
    const struct status_event *ev;
    int room;
    int64_t now_ms;
    enum status_claim claim;
};

static enum rz_err status_claim_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_claim_arg *a = arg;
    int newer = status_event_is_newer(e, a->ev);
    int older = status_event_is_older(e, a->ev);
    int finished = e->state == INDEX_DONE || e->state == INDEX_FAILED;
    int again = e->state == INDEX_PENDING || (finished && newer) ||
                (a->ev->repair && status_sweep_may_retry(a->st, e));

    a->claim = again ? STATUS_CLAIM_NEW : STATUS_CLAIM_DUPLICATE;
    if (again && !a->room && !a->ev->permanent_code)
        return RZ_EFULL;
    if (again) {
        /* A new object (or the first event of an upload) starts its own
         * count; the sweep's retry of a failure goes on with the old one. */
        if (e->state == INDEX_PENDING || newer)
            status_count_afresh(e);
        status_take(a->st, e, a->now_ms);
        status_clear_error(e);
        *write = 1;
    } else if (e->state == INDEX_PROCESSING && newer && !e->rerun) {
        e->rerun = 1;
        *write = 1;
    } else if (e->state == INDEX_QUEUED && newer && (e->runs || e->lost)) {
        /* Waiting out a transient failure's backoff: the run to come reads
         * the newer object, which starts its own count. */
        status_count_afresh(e);
        *write = 1;
    }
    if (again && a->ev->permanent_code) {
        status_set_failure(e, a->ev->permanent_code, a->ev->permanent_message);
        e->finished_ms = a->now_ms;
        a->claim = STATUS_CLAIM_FAILED;
    }
    /* A late old event must not make the newer object, redelivered once
     * processed, look new again (and run a second time). */
    return older ? RZ_OK : status_set_object(e, a->ev, write);
}

static enum rz_err status_create_for(struct status *st, const struct status_event *ev,
                                     const char *id, int64_t now_ms,
                                     enum status_claim *claim_out)
{
    struct index_entry e = {0};
    enum rz_err err;

    snprintf(e.id, sizeof(e.id), "%s", id);
    e.bucket = (char *)ev->bucket;
    e.key = (char *)ev->key;
    e.etag = (char *)ev->etag;
    e.sequencer = (char *)ev->sequencer;
    e.bytes = ev->size;
    e.try_decoded_key = ev->try_decoded_key;
    e.created_ms = e.updated_ms = now_ms;
    e.version = 1;
    status_take(st, &e, now_ms);
    *claim_out = STATUS_CLAIM_NEW;
    if (ev->permanent_code) {
        e.state = INDEX_FAILED;
        snprintf(e.error_code, sizeof(e.error_code), "%s", ev->permanent_code);
        e.error_message = (char *)ev->permanent_message;
        e.owner[0] = '\0';
        e.lease_ms = 0;
        e.finished_ms = now_ms;
        *claim_out = STATUS_CLAIM_FAILED;
    }
    err = status_seen(st, "claim", "create", st->o.store->ops->create(st->o.store, &e));
    if (err == RZ_OK)
        status_cache_put(st, &e);
    /* Failed at intake (a key too long for its variants, ...): as final as
     * a job's failure, and notified the same way. */
    if (err == RZ_OK && *claim_out == STATUS_CLAIM_FAILED)
        status_run_hooks(st, &e);
    return err;
}

enum rz_err status_claim_event(struct status *st, const struct status_event *ev, int room,
                               const char *new_id, int64_t now_ms, enum status_claim *claim_out,
                               char id_out[INDEX_ID_LEN + 1])
{
    struct store *s = st->o.store;
    struct status_claim_arg a = {st, ev, room, now_ms, STATUS_CLAIM_DUPLICATE};
    char id[INDEX_ID_LEN + 1];
    enum rz_err err = RZ_ECONFLICT;

    if (status_intake_refused(st, "claim"))
        return RZ_EUPSTREAM;
    for (int i = 0; i < STATUS_CAS_TRIES && err == RZ_ECONFLICT; i++) {
        err = status_seen(st, "claim", "find_key", s->ops->find_key(s, ev->bucket, ev->key, id));
        if (err == RZ_OK) {
            struct index_entry e = {0};

            err = status_change(st, "claim", id, status_claim_fn, &a, &e);
            *claim_out = a.claim;
            if (err == RZ_OK && a.claim == STATUS_CLAIM_FAILED)
                status_run_hooks(st, &e);
            index_entry_cleanup(&e);
            if (err == RZ_ENOTFOUND)
                err = RZ_ECONFLICT; /* its record went away: look again */
        } else if (err == RZ_ENOTFOUND && !room && !ev->permanent_code) {
            err = RZ_EFULL;
        } else if (err == RZ_ENOTFOUND) {
            /* The id is new_id at first; if that id is taken by another key
             * (images/<id>.png next to images/<id>.jpg) or we lost a race,
             * the next round finds the winner's record or uses a random id. */
            if (i > 0)
                ids_new_uuid(id);
            else
                snprintf(id, sizeof(id), "%s", new_id);
            err = status_create_for(st, ev, id, now_ms, claim_out);
        }
        if (err == RZ_OK)
            memcpy(id_out, id, INDEX_ID_LEN + 1);
    }
    if (err == RZ_ECONFLICT)
        err = RZ_EUPSTREAM; /* still contended after every try: deliver again later */
    if (err == RZ_OK && *claim_out == STATUS_CLAIM_NEW)
        status_hold(st, id_out);
    return err;
}

enum rz_err status_add_upload(struct status *st, const char *id, const char *bucket,
                              const char *key, const char *filename, const char *content_type,
                              const char *uploader, int64_t expires_ms, int64_t now_ms)
{
    struct index_entry e = {0};
    enum rz_err err;

    if (status_intake_refused(st, "upload"))
        return RZ_EUPSTREAM;
    snprintf(e.id, sizeof(e.id), "%s", id);
    e.state = INDEX_PENDING;
    e.bucket = (char *)bucket;
    e.key = (char *)key;
    e.filename = (char *)filename;
    e.content_type = (char *)content_type;
    e.uploader = (char *)uploader;
    e.created_ms = e.updated_ms = now_ms;
    e.upload_expires_ms = expires_ms;
    e.version = 1;
    err = status_seen(st, "upload", "create", st->o.store->ops->create(st->o.store, &e));
    if (err == RZ_OK)
        status_cache_put(st, &e);
    return err;
}

/* ---- running a job ---- */

void status_task_cleanup(struct status_task *t)
{
    free(t->bucket);
    free(t->key);
    free(t->etag);
    memset(t, 0, sizeof(*t));
}

struct status_begin_arg {
    struct status *st;
    int64_t now_ms;
    struct status_task *t;
};

static enum rz_err status_begin_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_begin_arg *a = arg;
    struct status_task *t = a->t;

    if (e->state != INDEX_QUEUED || strcmp(e->owner, a->st->o.owner) != 0)
        return RZ_ECONFLICT;
    status_task_cleanup(t);
    t->bucket = strdup(e->bucket ? e->bucket : "");
    t->key = strdup(e->key ? e->key : "");
    t->etag = e->etag ? strdup(e->etag) : NULL;
    t->try_decoded_key = e->try_decoded_key;
    if (!t->bucket || !t->key || (e->etag && !t->etag))
        return RZ_ENOMEM;
    e->state = INDEX_PROCESSING;
    e->attempts++;
    e->runs++;
    e->rerun = 0;
    e->started_ms = e->updated_ms = a->now_ms;
    e->lease_ms = a->now_ms + a->st->o.lease_ms;
    *write = 1;
    return RZ_OK;
}

enum rz_err status_begin(struct status *st, const char *id, int64_t now_ms,
                         struct status_task *task)
{
    struct status_begin_arg a = {st, now_ms, task};
    enum rz_err err;

    memset(task, 0, sizeof(*task));
    err = status_change(st, "begin", id, status_begin_fn, &a, NULL);
    /* Someone else's now, gone, or the store is not answering: not renewed
     * any more, so once its lease runs out a replica (maybe this one)
     * re-claims it. */
    if (err != RZ_OK) {
        status_task_cleanup(task);
        status_unhold(st, id);
    }
    return err;
}

struct status_finish_arg {
    struct status *st;
    const struct status_outcome *o;
    int64_t now_ms;
    int again;
    int final;
};

static void status_clear_variants(struct index_entry *e)
{
    index_output_cleanup(e); /* the variants, their files and placeholders */
}

static enum rz_err status_set_done(struct index_entry *e, const struct status_outcome *o)
{
    enum rz_err err = RZ_OK;

    e->state = INDEX_DONE;
    status_clear_error(e);
    e->bytes = o->bytes;
    err = status_replace_str(&e->etag, o->etag);
    if (o->info) {
        snprintf(e->format, sizeof(e->format), "%s", image_format_name(o->info->format));
        e->width = o->info->width;
        e->height = o->info->height;
    }
    if (err == RZ_OK)
        err = index_output_take(e, o->variants, o->nvariants, o->info);
    return err;
}

static enum rz_err status_finish_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_finish_arg *a = arg;
    struct status *st = a->st;
    const struct status_outcome *o = a->o;
    const char *code = o->err == RZ_OK ? NULL : status_failure_code(o->err);
    enum rz_err err;

    a->final = 0; /* run again on every try of the compare-and-swap */
    if (e->state != INDEX_PROCESSING || strcmp(e->owner, st->o.owner) != 0)
        return RZ_ECONFLICT;
    *write = 1;
    e->updated_ms = e->finished_ms = a->now_ms;
    status_clear_variants(e);
    err = o->real_key ? status_replace_str(&e->key, o->real_key) : RZ_OK;
    if (err != RZ_OK)
        return err;
    a->again = e->rerun;
    e->rerun = 0;
    if (a->again) {
        status_clear_error(e);
        status_count_afresh(e);
        status_take(st, e, a->now_ms);
        return RZ_OK;
    }
    if (code && status_code_transient(code) && e->runs < st->o.max_attempts) {
        /* Anyone may run it again once the backoff is over: the lease is
         * the timer, and re-claiming is how it runs. */
        long backoff = st->o.backoff_base_ms << (e->runs > 10  ? 10
                                                 : e->runs < 1 ? 0
                                                               : e->runs - 1);

        status_set_failure(e, code, o->msg);
        e->state = INDEX_QUEUED;
        e->lease_ms = a->now_ms + backoff;
        return RZ_OK;
    }
    a->final = 1;
    e->owner[0] = '\0';
    e->lease_ms = 0;
    if (code) {
        status_set_failure(e, code, o->msg && o->msg[0] ? o->msg : rz_err_name(o->err));
        return RZ_OK;
    }
    return status_set_done(e, o);
}

enum rz_err status_finish(struct status *st, const char *id, const struct status_outcome *o,
                          int64_t now_ms, struct index_entry *final_out, int *again_out)
{
    struct status_finish_arg a = {st, o, now_ms, 0, 0};
    struct index_entry e = {0};
    enum rz_err err = status_change(st, "finish", id, status_finish_fn, &a, &e);

    *again_out = err == RZ_OK && a.again;
    if (!*again_out)
        status_unhold(st, id);
    if (err == RZ_OK && a.final)
        status_run_hooks(st, &e);
    if (err == RZ_OK && final_out)
        *final_out = e;
    else
        index_entry_cleanup(&e);
    return err;
}

struct status_simple_arg {
    struct status *st;
    int64_t now_ms;
};

static enum rz_err status_retry_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_simple_arg *a = arg;

    if (e->state != INDEX_FAILED)
        return RZ_ECONFLICT;
    status_clear_error(e);
    status_count_afresh(e);
    status_take(a->st, e, a->now_ms);
    *write = 1;
    return RZ_OK;
}

enum rz_err status_retry(struct status *st, const char *id, int64_t now_ms)
{
    struct status_simple_arg a = {st, now_ms};
    enum rz_err err = status_change(st, "retry", id, status_retry_fn, &a, NULL);

    if (err == RZ_OK)
        status_hold(st, id);
    return err;
}

static enum rz_err status_release_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_simple_arg *a = arg;

    if (e->state != INDEX_QUEUED || strcmp(e->owner, a->st->o.owner) != 0)
        return RZ_OK;
    e->owner[0] = '\0';
    e->lease_ms = a->now_ms - 1;
    *write = 1;
    return RZ_OK;
}

void status_release(struct status *st, const char *id, int64_t now_ms)
{
    struct status_simple_arg a = {st, now_ms};

    status_unhold(st, id);
    status_change(st, "release", id, status_release_fn, &a, NULL);
}

/* ---- the keeper: renewals, re-claims, the store's health ---- */

struct status_reclaim_arg {
    struct status *st;
    int64_t now_ms;
    int lost; /* ended failed (worker_lost) rather than taken */
};

/* How many of an object's runs may die with their replica before it is
 * failed as worker_lost: the job's attempts, and at least 2, so that one
 * crash (a deploy's SIGKILL, an OOM kill) or a store outage longer than
 * the lease never fails a good image. */
static int status_lost_max(const struct status *st)
{
    return st->o.max_attempts < 2 ? 2 : st->o.max_attempts;
}

/* A record whose replica died while processing it status_lost_max times:
 * failed for good (an image that takes its replica down would otherwise
 * take down every replica in turn). */
static void status_fail_lost(struct status *st, struct index_entry *e, int64_t now_ms)
{
    char msg[128];

    snprintf(msg, sizeof(msg), "the replica processing it stopped, %d times", e->lost);
    status_clear_variants(e);
    status_set_failure(e, STATUS_CODE_WORKER_LOST, msg);
    e->updated_ms = e->finished_ms = now_ms;
}

static enum rz_err status_reclaim_fn(struct index_entry *e, void *arg, int *write)
{
    struct status_reclaim_arg *a = arg;

    a->lost = 0;
    if ((e->state != INDEX_QUEUED && e->state != INDEX_PROCESSING) || !e->lease_ms ||
        e->lease_ms >= a->now_ms)
        return RZ_ECONFLICT;
    *write = 1;
    if (e->state == INDEX_PROCESSING)
        log_fields(LOG_WARN, "lease_expired",
                   json_pack("{s:s,s:s,s:i}", "id", e->id, "owner", e->owner, "attempts",
                             e->attempts));
    /* A newer object is not the one that was running: it gets its run,
     * with its own count. */
    if (e->state == INDEX_PROCESSING && e->rerun) {
        status_count_afresh(e);
    } else if (e->state == INDEX_PROCESSING && ++e->lost >= status_lost_max(a->st)) {
        status_fail_lost(a->st, e, a->now_ms);
        a->lost = 1;
        return RZ_OK;
    }
    status_take(a->st, e, a->now_ms);
    return RZ_OK;
}

/* Takes records whose lease ran out, while the queue has room. */
static void status_reclaim(struct status *st, int64_t now_ms)
{
    struct store *s = st->o.store;
    char ids[STATUS_RECLAIM_BATCH][INDEX_ID_LEN + 1];
    struct status_reclaim_arg a = {st, now_ms, 0};
    size_t n = 0;
    enum rz_err err = s->ops->expired(s, now_ms, STATUS_RECLAIM_BATCH, ids, &n);

    if (status_seen(st, "reclaim", "expired", err) != RZ_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        struct index_entry e = {0};

        if (!st->q.reserve(st->q.arg))
            return;
        err = status_change(st, "reclaim", ids[i], status_reclaim_fn, &a, &e);
        if (err != RZ_OK || a.lost) {
            st->q.cancel(st->q.arg);
            if (err == RZ_OK)
                status_run_hooks(st, &e);
            index_entry_cleanup(&e);
            continue;
        }
        index_entry_cleanup(&e);
        status_hold(st, ids[i]);
        metrics_add(st->o.metrics, "resizer_reclaims_total", "", 1);
        st->q.commit(st->q.arg, ids[i]);
    }
}

static void status_renew_all(struct status *st, int64_t now_ms)
{
    struct store *s = st->o.store;
    char id[INDEX_ID_LEN + 1];

    for (size_t i = 0;; i++) {
        enum rz_err err;

        pthread_mutex_lock(&st->lock);
        if (i >= st->nheld) {
            pthread_mutex_unlock(&st->lock);
            break;
        }
        memcpy(id, st->held[i], sizeof(id));
        pthread_mutex_unlock(&st->lock);
        err = status_seen(st, "renew", "renew",
                          s->ops->renew(s, id, st->o.owner, now_ms + st->o.lease_ms));
        if (err == RZ_ECONFLICT || err == RZ_ENOTFOUND) {
            status_unhold(st, id);
            i--;
        }
    }
}

static int status_wait(struct status *st, long ms)
{
    struct timespec ts;
    int stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&st->lock);
    if (!st->stopping)
        pthread_cond_timedwait(&st->wake, &st->lock, &ts);
    stop = st->stopping;
    pthread_mutex_unlock(&st->lock);
    return stop;
}

static void *status_keeper_main(void *arg)
{
    struct status *st = arg;
    long tick = st->o.lease_ms / 3 > STATUS_PING_MS ? STATUS_PING_MS : st->o.lease_ms / 3;
    int64_t last_renew = 0;

    if (tick < 100)
        tick = 100;
    while (!status_wait(st, tick)) {
        int64_t now = clock_wall_ms();

        if (!status_store_ok(st, NULL, 0))
            status_seen(st, "ping", "ping", st->o.store->ops->ping(st->o.store));
        if (now - last_renew >= st->o.lease_ms / 3) {
            status_renew_all(st, now);
            last_renew = now;
        }
        status_reclaim(st, now);
    }
    return NULL;
}

/* ---- reads ---- */

/* Reads a status record from S3 (the memory store's shared copy, written
 * by whichever replica processed the image). */
static enum rz_err status_read_s3(struct status *st, const char *record_key,
                                  struct index_entry *out)
{
    struct objstore_conn *conn = st->o.s3_read ? objstore_conn_new(st->o.s3_read) : NULL;
    struct objstore_object obj = {0};
    enum rz_err err;

    if (!record_key || !conn) {
        objstore_conn_free(conn);
        return st->o.s3_read ? RZ_ENOMEM : RZ_ENOTFOUND;
    }
    err = objstore_get(conn, st->o.cfg->dest_bucket, record_key, STATUS_MAX_RECORD, &obj, NULL,
                       0);
    if (err == RZ_EDENIED)
        err = RZ_ENOTFOUND; /* without s3:ListBucket a missing key is a 403 */
    if (err == RZ_OK)
        err = index_record_parse(obj.data ? obj.data : "", obj.len, record_key,
                                 st->o.cfg->src_bucket, st->o.cfg->src_prefix, out);
    /* A record that is not one of ours (damaged, forged, over the cap) was
     * logged and is ignored: as far as the client knows, there is none. */
    if (err == RZ_EINVAL || err == RZ_ETOOBIG)
        err = RZ_ENOTFOUND;
    if (err == RZ_OK) {
        out->cached_ms = clock_wall_ms();
        index_put(st->o.index, out); /* a cache full of work in flight: answer from the copy */
    }
    objstore_object_cleanup(&obj);
    objstore_conn_free(conn);
    return err;
}

static int status_cache_fresh(const struct index_entry *e)
{
    return (e->state == INDEX_DONE || e->state == INDEX_FAILED) && e->cached_ms &&
           clock_wall_ms() - e->cached_ms < STATUS_CACHE_MS;
}

/* A cached record that settles what the sweep wants to know of an
 * object: finished for the object's etag. */
static int status_cache_settles(struct status *st, const char *bucket, const char *key,
                                const char *etag, struct index_entry *out)
{
    if (!etag || !st->o.cache || index_get_by_key(st->o.cache, bucket, key, out) != RZ_OK)
        return 0;
    if ((out->state == INDEX_DONE || out->state == INDEX_FAILED) && out->etag &&
        strcmp(out->etag, etag) == 0)
        return 1;
    index_entry_cleanup(out);
    return 0;
}

enum rz_err status_peek_by_key(struct status *st, const char *bucket, const char *key,
                               const char *etag, struct index_entry *out)
{
    struct store *s = st->o.store;
    char id[INDEX_ID_LEN + 1];
    enum rz_err err;

    if (!s->shared)
        return index_get_by_key(st->o.index, bucket, key, out);
    if (status_cache_settles(st, bucket, key, etag, out))
        return RZ_OK;
    err = status_seen(st, "sweep", "find_key", s->ops->find_key(s, bucket, key, id));
    if (err == RZ_OK)
        err = status_seen(st, "sweep", "get", s->ops->get(s, id, out));
    return err;
}

enum rz_err status_list(struct status *st, int state, const char *uploader, const char *cursor,
                        size_t limit, struct index_entry *out, size_t *n_out,
                        char next_out[STORE_CURSOR_MAX])
{
    struct store *s = st->o.store;

    return status_seen(st, "list", "list",
                       s->ops->list(s, state, uploader, cursor, limit, out, n_out, next_out));
}

/* ---- look-ups off the HTTP threads ---- */

static uint64_t status_neg_hash(const char *id, const char *bucket, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    const char *parts[3] = {id ? id : "", bucket ? bucket : "", key ? key : ""};

    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h | 1; /* 0 marks an empty slot */
}

static int status_neg_hit(struct status *st, uint64_t h)
{
    struct status_neg *n = &st->neg[h % STATUS_NEG_SLOTS];
    int hit;

    pthread_mutex_lock(&st->lk_lock);
    hit = n->hash == h && n->until_ms > clock_wall_ms();
    pthread_mutex_unlock(&st->lk_lock);
    return hit;
}

static void status_neg_set(struct status *st, uint64_t h, int64_t until_ms)
{
    struct status_neg *n = &st->neg[h % STATUS_NEG_SLOTS];

    pthread_mutex_lock(&st->lk_lock);
    if (until_ms || n->hash == h) {
        n->hash = h;
        n->until_ms = until_ms;
    }
    pthread_mutex_unlock(&st->lk_lock);
}

/* A record this replica just wrote is no longer unknown here. */
static void status_neg_clear(struct status *st, const struct index_entry *e)
{
    status_neg_set(st, status_neg_hash(e->id, NULL, NULL), 0);
    if (e->bucket && e->key)
        status_neg_set(st, status_neg_hash(NULL, e->bucket, e->key), 0);
}

static uint64_t status_lookup_hash(const struct status_lookup *l)
{
    if (l->by_key)
        return status_neg_hash(NULL, l->bucket, l->key);
    return status_neg_hash(l->id, NULL, NULL);
}

static void status_lookup_free(struct status_lookup *l)
{
    if (!l)
        return;
    free(l->bucket);
    free(l->key);
    index_entry_cleanup(&l->out);
    free(l);
}

/* A queue slot and a look-up for it; NULL when the queue is full. */
static struct status_lookup *status_lookup_new(struct status *st, const char *id,
                                               const char *bucket, const char *key)
{
    struct status_lookup *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->st = st;
    l->by_key = key != NULL;
    snprintf(l->id, sizeof(l->id), "%s", id ? id : "");
    l->bucket = bucket ? strdup(bucket) : NULL;
    l->key = key ? strdup(key) : NULL;
    if ((bucket && !l->bucket) || (key && !l->key)) {
        status_lookup_free(l);
        return NULL;
    }
    pthread_mutex_lock(&st->lk_lock);
    if (st->lk_count >= STATUS_LOOKUP_QUEUE || st->lk_stopping) {
        pthread_mutex_unlock(&st->lk_lock);
        metrics_add(st->o.metrics, "resizer_status_lookups_total", "outcome=\"refused\"", 1);
        status_lookup_free(l);
        return NULL;
    }
    st->lk_count++;
    pthread_mutex_unlock(&st->lk_lock);
    return l;
}

void status_lookup_start(struct status_lookup *l, void (*done)(void *arg), void *arg)
{
    struct status *st = l->st;

    l->done = done;
    l->done_arg = arg;
    l->queued_ms = clock_wall_ms();
    pthread_mutex_lock(&st->lk_lock);
    if (st->lk_tail)
        st->lk_tail->next = l;
    else
        st->lk_head = l;
    st->lk_tail = l;
    pthread_cond_signal(&st->lk_work);
    pthread_mutex_unlock(&st->lk_lock);
}

enum rz_err status_lookup_result(struct status_lookup *l, struct index_entry *out)
{
    enum rz_err err = l->err;

    *out = l->out;
    memset(&l->out, 0, sizeof(l->out));
    status_lookup_free(l);
    return err;
}

void status_lookup_cancel(void *l)
{
    status_lookup_free(l);
}

/* The I/O of a look-up: the status record in S3 (memory store) or the
 * store (shared); the negative cache learns what does not exist. */
static void status_lookup_run(struct status_lookup *l)
{
    struct status *st = l->st;
    char *record_key = NULL;

    if (st->o.store->shared) {
        l->err = l->by_key ? status_seen(st, "lookup", "find_key",
                                         st->o.store->ops->find_key(st->o.store, l->bucket,
                                                                    l->key, l->id))
                           : RZ_OK;
        if (l->err == RZ_OK)
            l->err = status_seen(st, "lookup", "get",
                                 st->o.store->ops->get(st->o.store, l->id, &l->out));
        if (l->err == RZ_OK)
            status_cache_put(st, &l->out);
        /* The store not answering: a cached copy, however old, is better
         * than nothing for someone reading a status. */
        if (l->err == RZ_EUPSTREAM && index_get(st->o.cache, l->id, &l->out) == RZ_OK)
            l->err = RZ_OK;
    } else {
        record_key = l->by_key ? keys_status_by_key(st->o.cfg->src_prefix, l->key)
                               : keys_status_by_id(l->id);
        l->err = status_read_s3(st, record_key, &l->out);
        free(record_key);
    }
    if (l->err == RZ_OK && l->by_key && (!l->out.key || strcmp(l->out.key, l->key) != 0)) {
        index_entry_cleanup(&l->out);
        l->err = RZ_ENOTFOUND;
    }
    if (l->err == RZ_ENOTFOUND)
        status_neg_set(st, status_lookup_hash(l), clock_wall_ms() + STATUS_NEG_MS);
    metrics_add(st->o.metrics, "resizer_status_lookups_total",
                l->err == RZ_OK          ? "outcome=\"found\""
                : l->err == RZ_ENOTFOUND ? "outcome=\"not_found\""
                                         : "outcome=\"error\"",
                1);
}

static void *status_lookup_main(void *arg)
{
    struct status *st = arg;

    for (;;) {
        struct status_lookup *l;
        int stopping;

        pthread_mutex_lock(&st->lk_lock);
        while (!st->lk_head && !st->lk_stopping)
            pthread_cond_wait(&st->lk_work, &st->lk_lock);
        l = st->lk_head;
        stopping = st->lk_stopping;
        if (l) {
            st->lk_head = l->next;
            if (!st->lk_head)
                st->lk_tail = NULL;
        }
        pthread_mutex_unlock(&st->lk_lock);
        if (!l)
            break;
        /* Behind a stalled S3 the queue stops moving: what waited too long
         * is answered at once rather than after everyone before it. */
        if (stopping)
            l->err = RZ_ESHUTDOWN;
        else if (clock_wall_ms() - l->queued_ms > STATUS_LOOKUP_WAIT_MS)
            l->err = RZ_EUPSTREAM;
        else
            status_lookup_run(l);
        pthread_mutex_lock(&st->lk_lock);
        st->lk_count--;
        pthread_mutex_unlock(&st->lk_lock);
        /* After done() the waiter owns l: not touched again here. */
        if (l->done)
            l->done(l->done_arg);
        else
            status_lookup_free(l);
    }
    return NULL;
}

/* Refreshes a cached copy in the background, if there is room. */
static void status_refresh_later(struct status *st, const char *id)
{
    struct status_lookup *l = status_lookup_new(st, id, NULL, NULL);

    if (l)
        status_lookup_start(l, NULL, NULL);
}

static int status_copy_stale(const struct index_entry *e)
{
    return e->cached_ms && clock_wall_ms() - e->cached_ms >= STATUS_CACHE_MS;
}

enum rz_err status_find(struct status *st, const char *id, const char *bucket, const char *key,
                        struct index_entry *out, struct status_lookup **pending_out)
{
    struct index *idx = st->o.store->shared ? st->o.cache : st->o.index;
    enum rz_err err = key ? index_get_by_key(idx, bucket, key, out) : index_get(idx, id, out);
    int shared = st->o.store->shared;

    *pending_out = NULL;
    if (err == RZ_OK && key && (!out->key || strcmp(out->key, key) != 0)) {
        index_entry_cleanup(out);
        err = RZ_ENOTFOUND;
    }
    /* Memory store: ours, or another replica's copy, refreshed behind the
     * answer once stale. Shared store: finished and fresh only. */
    if (err == RZ_OK && !shared) {
        if (status_copy_stale(out))
            status_refresh_later(st, out->id);
        return RZ_OK;
    }
    if (err == RZ_OK && status_cache_fresh(out))
        return RZ_OK;
    if (err != RZ_OK && status_neg_hit(st, key ? status_neg_hash(NULL, bucket, key)
                                               : status_neg_hash(id, NULL, NULL)))
        return RZ_ENOTFOUND;
    *pending_out = status_lookup_new(st, id, bucket, key);
    if (*pending_out) {
        if (err == RZ_OK)
            index_entry_cleanup(out);
        return RZ_OK;
    }
    /* The look-up queue is full (S3 or the store is not keeping up): a
     * cached copy if any, else "unavailable, try again". */
    return err == RZ_OK ? RZ_OK : RZ_EUPSTREAM;
}

static enum rz_err status_lookups_start(struct status *st)
{
    for (size_t i = 0; i < STATUS_LOOKUP_THREADS; i++) {
        if (pthread_create(&st->lk_thread[i], NULL, status_lookup_main, st) != 0)
            return RZ_EINTERNAL;
        st->lk_threads++;
    }
    return RZ_OK;
}

void status_stop_lookups(struct status *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lk_lock);
    st->lk_stopping = 1;
    pthread_cond_broadcast(&st->lk_work);
    pthread_mutex_unlock(&st->lk_lock);
    /* A look-up stuck on a stalled S3 is cut, not waited for. */
    if (st->o.s3_read)
        objstore_abort(st->o.s3_read);
    for (size_t i = 0; i < st->lk_threads; i++)
        pthread_join(st->lk_thread[i], NULL);
    st->lk_threads = 0;
}

/* ---- the sweep's lease ---- */

enum rz_err status_lease_sweep(struct status *st, int64_t now_ms, int64_t until_ms,
                               char cursor_out[STORE_SWEEP_CURSOR_MAX])
{
    struct store *s = st->o.store;

    return status_seen(st, "sweep", "lock",
                       s->ops->lock(s, "sweep", st->o.owner, now_ms, until_ms, cursor_out));
}

enum rz_err status_save_sweep_cursor(struct status *st, const char *cursor)
{
    struct store *s = st->o.store;

    return status_seen(st, "sweep", "save_cursor",
                       s->ops->save_cursor(s, "sweep", st->o.owner, cursor));
}

/* ---- lifecycle ---- */

static enum rz_err status_metrics_register(struct status *st)
{
    enum rz_err err = metrics_register(st->o.metrics, "resizer_store_requests_total",
                                       METRICS_COUNTER,
                                       "State store requests by phase, operation and outcome",
                                       NULL, 0);

    if (err == RZ_OK || err == RZ_ECONFLICT)
        err = metrics_register(st->o.metrics, "resizer_reclaims_total", METRICS_COUNTER,
                               "Jobs taken over after their lease ran out", NULL, 0);
    if (err == RZ_OK || err == RZ_ECONFLICT)
        err = metrics_register(st->o.metrics, "resizer_store_unavailable_total", METRICS_COUNTER,
                               "Events and uploads refused at once while the store was down",
                               NULL, 0);
    if (err == RZ_OK || err == RZ_ECONFLICT)
        err = metrics_register(st->o.metrics, "resizer_status_lookups_total", METRICS_COUNTER,
                               "Status reads that needed S3 or the store, by outcome", NULL, 0);
    return err == RZ_ECONFLICT ? RZ_OK : err; /* registered by another instance: shared */
}

enum rz_err status_new(const struct status_opts *opts, struct status **out)
{
    struct status *st = calloc(1, sizeof(*st));
    enum rz_err err;

    if (!st)
        return RZ_ENOMEM;
    st->o = *opts;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_mutex_init(&st->lk_lock, NULL);
    pthread_cond_init(&st->lk_work, NULL);
    err = status_metrics_register(st);
    if (err == RZ_OK)
        err = status_lookups_start(st);
    if (err != RZ_OK) {
        status_free(st);
        return err;
    }
    *out = st;
    return RZ_OK;
}

enum rz_err status_on_finished(struct status *st, status_finished_fn fn, void *arg)
{
    if (st->nhooks == STATUS_MAX_HOOKS || st->started)
        return RZ_EFULL;
    st->hooks[st->nhooks++] = (struct status_hook){fn, arg};
    return RZ_OK;
}

enum rz_err status_start(struct status *st, const struct status_queue *q)
{
    st->q = *q;
    if (pthread_create(&st->keeper, NULL, status_keeper_main, st) != 0)
        return RZ_EINTERNAL;
    st->started = 1;
    return RZ_OK;
}

void status_stop(struct status *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->stopping = 1;
    pthread_cond_broadcast(&st->wake);
    pthread_mutex_unlock(&st->lock);
    if (st->started)
        pthread_join(st->keeper, NULL);
    st->started = 0;
}

void status_free(struct status *st)
{
    if (!st)
        return;
    status_stop(st);
    status_stop_lookups(st);
    free(st->held);
    pthread_cond_destroy(&st->lk_work);
    pthread_mutex_destroy(&st->lk_lock);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    free(st);
}
