/* fixtures.c - see fixtures.h. */
#include "fixtures.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <vips/vips.h>

#include "server/clock.h"
#include "server/image.h"

#define FIX_MAX_ENV 32

static const char *const fix_base_env[] = {
    "DEST_BUCKET=" FIX_DEST,
    "SRC_BUCKET=" FIX_SRC,
    "SRC_PREFIX=images/",
    "AWS_REGION=us-east-1",
    "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY=secretsecretsecret",
    "API_TOKENS=0123456789abcdef0123",
    "EVENTS_API_KEY=events-key-123",
    "VARIANTS=small:16",
    "BLURHASH_COMPONENTS=1x1",
};

void fix_config(struct config *c, const char *const *extra)
{
    const char *env[FIX_MAX_ENV + 1];
    size_t n = 0;
    char msg[256] = "";

    /* config_load takes the first of a repeated name: extras go first. */
    for (size_t i = 0; extra && extra[i] && n < FIX_MAX_ENV / 2; i++)
        env[n++] = extra[i];
    for (size_t i = 0; i < sizeof(fix_base_env) / sizeof(fix_base_env[0]); i++)
        env[n++] = fix_base_env[i];
    env[n] = NULL;
    if (config_load(env, c, msg, sizeof(msg)) != RZ_OK)
        fail_msg("config: %s", msg);
}

void *fix_jpeg(int w, int h, size_t *len_out)
{
    VipsImage *img = NULL;
    void *buf = NULL;

    if (image_init("unit") != RZ_OK || vips_xyz(&img, w, h, NULL) != 0 ||
        vips_jpegsave_buffer(img, &buf, len_out, NULL) != 0)
        fail_msg("cannot make a JPEG: %s", vips_error_buffer());
    g_object_unref(img);
    return buf;
}

int fix_wait(int (*pred)(void *arg), void *arg, long ms)
{
    int64_t end = clock_wall_ms() + ms;
    int ok;

    while (!(ok = pred(arg)) && clock_wall_ms() < end)
        usleep(2000);
    return ok;
}

void fix_service_start(struct fix_service *s, const struct fix_service_opts *o)
{
    struct status_opts so = {0};
    struct jobs_opts jo = {0};
    struct status_queue q;

    memset(s, 0, sizeof(*s));
    fix_config(&s->cfg, o->env);
    s->objects = o->objects ? fake_objstore_view(o->objects) : fake_objstore_new();
    s->idx = index_new(1000);
    s->m = metrics_new();
    assert_non_null(s->idx);
    if (o->shared_store) {
        s->store = fake_store_new(s->idx);
        s->cache = index_new(1000);
        assert_non_null(s->cache);
    } else {
        assert_int_equal(store_memory_new(s->idx, &s->store), RZ_OK);
    }
    so = (struct status_opts){.cfg = &s->cfg,
                              .store = s->store,
                              .cache = s->cache,
                              .index = s->cache ? s->cache : s->idx,
                              .s3_read = s->objects,
                              .metrics = s->m,
                              .owner = o->owner ? o->owner : "unit",
                              .lease_ms = o->lease_ms ? o->lease_ms : 60000,
                              .max_attempts = o->max_attempts ? o->max_attempts : 2,
                              .backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 10};
    assert_int_equal(status_new(&so, &s->status), RZ_OK);
    jo = (struct jobs_opts){&s->cfg,
                            s->objects,
                            s->status,
                            s->m,
                            o->workers ? o->workers : 1,
                            o->queue_size ? o->queue_size : 16};
    assert_int_equal(jobs_new(&jo, &s->jobs), RZ_OK);
    q = jobs_queue(s->jobs);
    assert_int_equal(status_start(s->status, &q), RZ_OK);
}

void fix_service_stop(struct fix_service *s)
{
    status_stop_lookups(s->status);
    status_stop(s->status);
    jobs_free(s->jobs);
    status_free(s->status);
    store_free(s->store);
    objstore_free(s->objects);
    index_free(s->idx);
    index_free(s->cache);
    metrics_free(s->m);
    config_cleanup(&s->cfg);
}

int fix_record(struct fix_service *s, const char *key, struct index_entry *out)
{
    return index_get_by_key(s->idx, FIX_SRC, key, out) == RZ_OK;
}

struct fix_wait_arg {
    struct fix_service *s;
    const char *key;
};

static int fix_finished(void *arg)
{
    struct fix_wait_arg *a = arg;
    struct index_entry e = {0};
    int done;

    if (!fix_record(a->s, a->key, &e))
        return 0;
    done = (e.state == INDEX_DONE || e.state == INDEX_FAILED) && e.owner[0] == '\0';
    index_entry_cleanup(&e);
    return done;
}

int fix_wait_finished(struct fix_service *s, const char *key, long ms)
{
    struct fix_wait_arg a = {s, key};

    return fix_wait(fix_finished, &a, ms);
}

enum rz_err fix_submit(struct fix_service *s, const char *key, const char *etag, int try_decoded)
{
    struct event_object o = {.bucket = FIX_SRC,
                             .key = (char *)key,
                             .etag = (char *)etag,
                             .size = 1,
                             .try_decoded_key = try_decoded};
    struct event_batch b = {.objects = &o, .nobjects = 1};
    struct jobs_submit_result res;

    return jobs_submit(s->jobs, &b, clock_wall_ms(), &res);
}
