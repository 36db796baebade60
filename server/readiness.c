/* readiness.c - the S3 reachability probe and the draining flag. */
#include "readiness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

struct readiness {
    struct readiness_opts opts;
    struct objstore_conn *conn;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    int draining;
    int64_t last_ok_ms; /* monotonic */
    char last_error[160];
};

/* Answers that prove S3 is there, even though they are not 200. */
static int readiness_answered(enum rz_err err)
{
    return err == RZ_OK || err == RZ_ENOTFOUND || err == RZ_EDENIED || err == RZ_EINVAL;
}

static void readiness_probe(struct readiness *h)
{
    char msg[160] = "";
    enum rz_err err;

    if (h->opts.src_bucket) {
        struct objstore_list list;

        err = objstore_list(h->conn, h->opts.src_bucket, h->opts.src_prefix, NULL, NULL, 1,
                            &list, msg, sizeof(msg));
        if (err == RZ_OK)
            objstore_list_cleanup(&list);
    } else {
        struct objstore_head head;

        err = objstore_head(h->conn, h->opts.dest_bucket, "_status/probe", &head, msg,
                            sizeof(msg));
        if (err == RZ_OK)
            objstore_head_cleanup(&head);
    }
    pthread_mutex_lock(&h->lock);
    if (readiness_answered(err)) {
        if (h->last_ok_ms == 0 || h->last_error[0])
            log_printf(LOG_INFO, "s3_reachable", "%s",
                       h->last_ok_ms ? "S3 answers again" : "S3 answers");
        h->last_ok_ms = clock_mono_ms();
        h->last_error[0] = '\0';
    } else {
        if (!h->last_error[0])
            log_printf(LOG_WARN, "s3_unreachable", "%s", msg);
        snprintf(h->last_error, sizeof(h->last_error), "%s", msg[0] ? msg : rz_err_name(err));
    }
    pthread_mutex_unlock(&h->lock);
}

static void *readiness_main(void *arg)
{
    struct readiness *h = arg;
    struct timespec deadline;

    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += h->opts.interval_ms / 1000;
        deadline.tv_nsec += (h->opts.interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->wake, &h->lock, &deadline);
        if (h->stopping)
            break;
        pthread_mutex_unlock(&h->lock);
        readiness_probe(h);
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

enum rz_err readiness_new(const struct readiness_opts *opts, struct readiness **out)
{
    struct readiness *h = calloc(1, sizeof(*h));

    if (!h)
        return RZ_ENOMEM;
    h->opts = *opts;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    h->conn = objstore_conn_new(opts->objects);
    if (!h->conn) {
        readiness_free(h);
        return RZ_ENOMEM;
    }
    readiness_probe(h);
    if (pthread_create(&h->thread, NULL, readiness_main, h) != 0) {
        readiness_free(h);
        return RZ_EINTERNAL;
    }
    h->started = 1;
    *out = h;
    return RZ_OK;
}

void readiness_free(struct readiness *h)
{
    if (!h)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->lock);
        h->stopping = 1;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
    }
    objstore_conn_free(h->conn);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void readiness_set_draining(struct readiness *h)
{
    pthread_mutex_lock(&h->lock);
    h->draining = 1;
    pthread_mutex_unlock(&h->lock);
}

int readiness_draining(struct readiness *h)
{
    int d;

    pthread_mutex_lock(&h->lock);
    d = h->draining;
    pthread_mutex_unlock(&h->lock);
    return d;
}

int readiness_s3_ok(struct readiness *h, char *why, size_t whylen)
{
    int ok;

    pthread_mutex_lock(&h->lock);
    ok = h->last_ok_ms && clock_mono_ms() - h->last_ok_ms <= h->opts.window_ms;
    /* S3's own text can name the account, role or bucket policy: it goes
     * to the log (s3_unreachable), the public probe says only this. */
    if (!ok)
        snprintf(why, whylen, "s3 unreachable");
    pthread_mutex_unlock(&h->lock);
    return ok;
}
