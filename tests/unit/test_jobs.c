/* test_jobs.c - a job from event to variants over the fake object store:
 * what ends up in the destination bucket (variants, their headers, both
 * status records), the record's state and failure code for each way S3
 * or the bytes can fail, transient failures run again after a backoff,
 * the percent-encoded key tried decoded, and a drain that cuts a stalled
 * download. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <vips/vips.h>

#include "fixtures.h"
#include "server/clock.h"
#include "server/keys.h"

#define KEY "images/cats/a.jpg"
#define VARIANT "small/cats/a.jpg"

static const char *const env[] = {"MAX_UPLOAD_BYTES=200000", NULL};

static int setup(void **state)
{
    static struct fix_service s;

    fix_service_start(&s, &(struct fix_service_opts){.env = env, .lease_ms = 300});
    *state = &s;
    return 0;
}

static int teardown(void **state)
{
    fix_service_stop(*state);
    return 0;
}

static void add_jpeg(struct fix_service *s, const char *key, const char *etag)
{
    size_t len;
    void *jpeg = fix_jpeg(64, 48, &len);

    fake_objstore_add(s->objects, FIX_SRC, key, jpeg, len, etag);
    g_free(jpeg);
}

/* Submits KEY and waits until its job has ended and written everything. */
static struct index_entry run_job(struct fix_service *s, const char *key, int try_decoded)
{
    struct index_entry e = {0};

    assert_int_equal(fix_submit(s, key, "etag-1", try_decoded), RZ_OK);
    assert_true(fix_wait_finished(s, key, 5000));
    /* The workers finish what they run (the status records too). */
    assert_int_equal(jobs_drain(s->jobs, 5), 0);
    assert_true(fix_record(s, key, &e));
    return e;
}

static const struct fake_object *record(struct fix_service *s, const char *key, const char *id)
{
    char *k = id ? keys_status_by_id(id) : keys_status_by_key("images/", key);
    const struct fake_object *o = fake_objstore_find(s->objects, FIX_DEST, k);

    free(k);
    return o;
}

static void test_done_writes_variants_and_records(void **state)
{
    struct fix_service *s = *state;
    const struct fake_object *v, *by_id, *by_key;
    VipsImage *img;
    struct index_entry e;

    add_jpeg(s, KEY, "etag-1");
    e = run_job(s, KEY, 0);
    assert_int_equal(e.state, INDEX_DONE);
    assert_int_equal(e.attempts, 1);
    assert_string_equal(e.error_code, "");
    v = fake_objstore_find(s->objects, FIX_DEST, VARIANT);
    assert_non_null(v);
    assert_string_equal(v->content_type, "image/jpeg");
    assert_string_equal(v->cache_control, "max-age=86400");
    assert_int_equal(v->nmeta, 1);
    assert_string_equal(v->meta_name[0], "source-etag");
    assert_string_equal(v->meta_value[0], "etag-1");
    img = vips_image_new_from_buffer(v->data, v->len, "", NULL);
    assert_non_null(img);
    assert_int_equal(vips_image_get_width(img), 16);
    g_object_unref(img);
    /* Both records, the same JSON, done: any replica can answer. */
    by_id = record(s, KEY, e.id);
    by_key = record(s, KEY, NULL);
    assert_non_null(by_id);
    assert_non_null(by_key);
    assert_string_equal(by_id->content_type, "application/json");
    assert_string_equal(by_id->data, by_key->data);
    assert_non_null(strstr(by_id->data, "\"state\":\"done\""));
    /* Nothing else was written: one variant, two records. */
    assert_int_equal(fake_objstore_count(s->objects, FIX_DEST, ""), 3);
    index_entry_cleanup(&e);
}

/* How a job ends for each way the source or S3 can fail. */
struct failure_case {
    const char *name;
    const char *source;      /* "jpeg", "garbage", "big", "truncated" or NULL: none */
    struct fake_fault fault; /* .op NULL: no fault */
    enum index_state state;
    const char *code; /* "" when done */
    int attempts;
    int variants;        /* objects under small/ */
    int by_key;          /* the by-key record written */
    const char *message; /* in the record's error_message; NULL: none */
};

static const struct failure_case failure_cases[] = {
    {"no source object",
     NULL,
     {0},
     INDEX_FAILED,
     "source_missing",
     1,
     0,
     1,
     "the uploaded object is not in the source bucket"},
    {"403 on the source",
     "jpeg",
     {"get", "images/", 1, 0, RZ_EDENIED, 0},
     INDEX_FAILED,
     "access_denied",
     1,
     0,
     1,
     "S3 refused access"},
    {"not an image",
     "garbage",
     {0},
     INDEX_FAILED,
     "unsupported_format",
     1,
     0,
     1,
     "not an image format"},
    {"truncated JPEG", "truncated", {0}, INDEX_FAILED, "corrupt_image", 1, 0, 1, "cannot read"},
    {"over MAX_UPLOAD_BYTES",
     "big",
     {0},
     INDEX_FAILED,
     "too_large",
     1,
     0,
     1,
     "object is larger than 200000 bytes"},
    {"400 on a variant",
     "jpeg",
     {"put", "small/", 1, 0, RZ_EINVAL, 0},
     INDEX_FAILED,
     "s3_rejected",
     1,
     0,
     1,
     "S3 failed the request"},
    {"503 once on the source",
     "jpeg",
     {"get", "images/", 1, 1, RZ_EUPSTREAM, 0},
     INDEX_DONE,
     "",
     2,
     1,
     1,
     NULL},
    {"503 once on a variant",
     "jpeg",
     {"put", "small/", 1, 1, RZ_EUPSTREAM, 0},
     INDEX_DONE,
     "",
     2,
     1,
     1,
     NULL},
    /* Out of attempts: failed, and no by-key record, so the sweep tries
     * the object again once S3 is back. */
    {"503 on every download",
     "jpeg",
     {"get", "images/", 1, 0, RZ_EUPSTREAM, 0},
     INDEX_FAILED,
     "upstream_error",
     2,
     0,
     0,
     "S3 failed the request; retry later"},
};

static void add_source(struct fix_service *s, const char *kind)
{
    static const char garbage[] = "this is not an image at all, only some words";
    size_t len;
    char *big;
    void *jpeg;

    if (!kind)
        return;
    if (strcmp(kind, "garbage") == 0) {
        fake_objstore_add(s->objects, FIX_SRC, KEY, garbage, sizeof(garbage) - 1, NULL);
    } else if (strcmp(kind, "big") == 0) {
        big = calloc(1, 200001);
        fake_objstore_add(s->objects, FIX_SRC, KEY, big, 200001, NULL);
        free(big);
    } else {
        jpeg = fix_jpeg(64, 48, &len);
        fake_objstore_add(s->objects, FIX_SRC, KEY, jpeg,
                          strcmp(kind, "truncated") == 0 ? len / 2 : len, NULL);
        g_free(jpeg);
    }
}

static void test_failure_taxonomy(void **state)
{
    for (size_t i = 0; i < sizeof(failure_cases) / sizeof(failure_cases[0]); i++) {
        const struct failure_case *c = &failure_cases[i];
        struct fix_service s;
        struct index_entry e;

        (void)state;
        fix_service_start(&s, &(struct fix_service_opts){.env = env, .lease_ms = 300});
        add_source(&s, c->source);
        if (c->fault.op)
            fake_objstore_fail(s.objects, &c->fault);
        e = run_job(&s, KEY, 0);
        print_message("case: %s -> %s %s (%d)\n", c->name, index_state_name(e.state),
                      e.error_code, e.attempts);
        assert_int_equal(e.state, c->state);
        assert_string_equal(e.error_code, c->code);
        assert_int_equal(e.attempts, c->attempts);
        assert_int_equal(fake_objstore_count(s.objects, FIX_DEST, "small/"), c->variants);
        assert_non_null(record(&s, KEY, e.id));
        assert_int_equal(record(&s, KEY, NULL) != NULL, c->by_key);
        /* S3's own words stay in the log; the record has ours. */
        if (c->message)
            assert_non_null(strstr(e.error_message, c->message));
        else
            assert_null(e.error_message);
        index_entry_cleanup(&e);
        fix_service_stop(&s);
    }
}

/* The records cannot be written: the variants are what matter, the job
 * is done, and without a by-key record the sweep will redo it. */
static void test_status_write_failure_keeps_the_job_done(void **state)
{
    struct fix_service *s = *state;
    struct index_entry e;

    add_jpeg(s, KEY, NULL);
    fake_objstore_fail(s->objects,
                       &(struct fake_fault){"put", "_status/", 1, 0, RZ_EUPSTREAM, 0});
    e = run_job(s, KEY, 0);
    assert_int_equal(e.state, INDEX_DONE);
    assert_non_null(fake_objstore_find(s->objects, FIX_DEST, VARIANT));
    assert_null(record(s, KEY, e.id));
    assert_null(record(s, KEY, NULL));
    index_entry_cleanup(&e);
}

/* EventBridge's key may be percent-encoded: the decoded object is found,
 * its variants named after it. */
static void test_encoded_key_tried_decoded(void **state)
{
    struct fix_service *s = *state;
    struct index_entry e = {0};

    add_jpeg(s, "images/my photo.jpg", NULL);
    assert_int_equal(fix_submit(s, "images/my%20photo.jpg", NULL, 1), RZ_OK);
    assert_true(fix_wait_finished(s, "images/my photo.jpg", 5000));
    assert_true(fix_record(s, "images/my photo.jpg", &e));
    assert_int_equal(e.state, INDEX_DONE);
    assert_non_null(fake_objstore_find(s->objects, FIX_DEST, "small/my photo.jpg"));
    assert_int_equal(fake_objstore_calls(s->objects, "get"), 2);
    index_entry_cleanup(&e);
}

/* A download stalled on S3 does not hold the drain past its grace: the
 * object store is cut, the job left unfinished (another run redoes it). */
static void test_drain_cuts_a_stalled_download(void **state)
{
    struct fix_service *s = *state;
    int64_t start;

    add_jpeg(s, KEY, NULL);
    fake_objstore_fail(s->objects, &(struct fake_fault){"get", NULL, 1, 0, RZ_OK, 30000});
    assert_int_equal(fix_submit(s, KEY, NULL, 0), RZ_OK);
    while (fake_objstore_calls(s->objects, "get") == 0)
        ;
    start = clock_wall_ms();
    assert_int_equal(jobs_drain(s->jobs, 0), 1);
    assert_true(clock_wall_ms() - start < 2000);
    assert_int_equal(fake_objstore_count(s->objects, FIX_DEST, ""), 0);
}

static int store_answers(void *arg)
{
    return status_store_ok(arg, NULL, 0);
}

/* A shared store stops answering (each request times out after 300 ms):
 * the first event waits that out and is refused; while the store is known
 * down, events and uploads are refused at once (503 with Retry-After at
 * the HTTP layer) without a request, nothing claimed; once it answers the
 * keeper's ping, intake takes events again without a restart. */
static void test_store_down_refuses_intake_at_once(void **state)
{
    struct fix_service s;
    size_t calls;
    int64_t start;

    (void)state;
    fix_service_start(&s, &(struct fix_service_opts){.env = env, .shared_store = 1});
    add_jpeg(&s, KEY, NULL);
    fake_store_set_down(s.store, 1, 300);
    start = clock_wall_ms();
    assert_int_equal(fix_submit(&s, KEY, "etag-1", 0), RZ_EUPSTREAM);
    assert_true(clock_wall_ms() - start >= 300);
    calls = fake_store_calls(s.store, "find_key") + fake_store_calls(s.store, "create");
    start = clock_wall_ms();
    for (int i = 0; i < 20; i++)
        assert_int_equal(fix_submit(&s, KEY, "etag-1", 0), RZ_EUPSTREAM);
    assert_int_equal(status_add_upload(s.status, "0f0e0d0c-0b0a-4908-8706-050403020100", FIX_SRC,
                                       "images/0f0e0d0c-0b0a-4908-8706-050403020100.jpg", NULL,
                                       "image/jpeg", NULL, clock_wall_ms() + 60000,
                                       clock_wall_ms()),
                     RZ_EUPSTREAM);
    print_message("21 refusals while down: %lld ms\n", (long long)(clock_wall_ms() - start));
    assert_true(clock_wall_ms() - start < 100);
    assert_int_equal(fake_store_calls(s.store, "find_key") + fake_store_calls(s.store, "create"),
                     calls);
    assert_true(metrics_get(s.m, "resizer_store_unavailable_total", "phase=\"claim\"") == 20);
    assert_int_equal(jobs_depth(s.jobs), 0);
    fake_store_set_down(s.store, 0, 0);
    assert_true(fix_wait(store_answers, s.status, 3000));
    assert_int_equal(fix_submit(&s, KEY, "etag-1", 0), RZ_OK);
    assert_true(fix_wait_finished(&s, KEY, 5000));
    fix_service_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_done_writes_variants_and_records, setup, teardown),
        cmocka_unit_test(test_failure_taxonomy),
        cmocka_unit_test_setup_teardown(test_status_write_failure_keeps_the_job_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_encoded_key_tried_decoded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_cuts_a_stalled_download, setup, teardown),
        cmocka_unit_test(test_store_down_refuses_intake_at_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
