/* test_reconcile.c - the sweep over the fake object store: it queues the
 * originals no job has recorded (none, or a record older than the
 * object), skips folder markers and processed ones, walks both listings
 * page by page, resumes from the cursor saved with its lease, leaves the
 * round to the replica that holds the lease, does not lose the object
 * it stopped on when a listing failed, and ends a round whose listing
 * would never end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <vips/vips.h>

#include "fixtures.h"
#include "server/clock.h"
#include "server/keys.h"
#include "server/reconcile.h"

#define T0 1700000000

static const char *const env[] = {"RECONCILE_LIST_RATE=1000", NULL};

struct sweep_fixture {
    struct fix_service s;
    struct reconcile *r;
    struct metrics *rm;   /* the last round's (the sweep registers its own) */
    struct objstore *own; /* the sweep's own client: stopping it aborts that */
    void *jpeg;
    size_t len;
};

static int setup(void **state)
{
    static struct sweep_fixture f;

    memset(&f, 0, sizeof(f));
    fix_service_start(&f.s, &(struct fix_service_opts){.env = env, .queue_size = 64});
    f.jpeg = fix_jpeg(32, 24, &f.len);
    fake_objstore_set_clock(f.s.objects, T0);
    *state = &f;
    return 0;
}

/* The same over a shared store (counted): as with DynamoDB, what the
 * sweep asks of the store is a request each. */
static int setup_shared(void **state)
{
    static struct sweep_fixture f;

    memset(&f, 0, sizeof(f));
    fix_service_start(&f.s, &(struct fix_service_opts){.env = env,
                                                       .queue_size = 64,
                                                       .shared_store = 1});
    f.jpeg = fix_jpeg(32, 24, &f.len);
    fake_objstore_set_clock(f.s.objects, T0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct sweep_fixture *f = *state;

    reconcile_stop(f->r);
    metrics_free(f->rm);
    objstore_free(f->own);
    fix_service_stop(&f->s);
    g_free(f->jpeg);
    return 0;
}

static void upload(struct sweep_fixture *f, const char *key, time_t at)
{
    fake_objstore_set_clock(f->s.objects, at);
    fake_objstore_add(f->s.objects, FIX_SRC, key, f->jpeg, f->len, NULL);
}

/* A by-key status record, as a finished job of another run left it. */
static void recorded(struct sweep_fixture *f, const char *key, time_t at)
{
    char *k = keys_status_by_key("images/", key);

    fake_objstore_set_clock(f->s.objects, at);
    fake_objstore_add(f->s.objects, FIX_DEST, k, "{}", 2, NULL);
    free(k);
}

static double sweeps(struct sweep_fixture *f, const char *outcome)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    return metrics_get(f->rm, "resizer_reconcile_sweeps_total", labels);
}

struct sweep_wait {
    struct sweep_fixture *f;
    const char *outcome;
};

static int swept(void *arg)
{
    struct sweep_wait *w = arg;

    return sweeps(w->f, w->outcome) >= 1 && jobs_depth(w->f->s.jobs) == 0 &&
           metrics_get(w->f->s.m, "resizer_jobs_in_flight", "") == 0;
}

/* Starts the sweep (its first round runs at once), waits for that round
 * to end with outcome and for the jobs it queued to finish. */
static void sweep_once(struct sweep_fixture *f, const char *outcome)
{
    struct reconcile_opts o = {&f->s.cfg, NULL, f->s.idx, f->s.status, f->s.jobs, NULL, 3600};
    struct sweep_wait w = {f, outcome};

    metrics_free(f->rm);
    objstore_free(f->own);
    f->rm = o.metrics = metrics_new();
    f->own = o.objects = fake_objstore_view(f->s.objects);
    assert_int_equal(reconcile_start(&o, &f->r), RZ_OK);
    assert_true(fix_wait(swept, &w, 5000));
    reconcile_stop(f->r);
    f->r = NULL;
}

static int processed(struct sweep_fixture *f, const char *key)
{
    char variant[256];

    snprintf(variant, sizeof(variant), "small/%s", keys_relative("images/", key));
    return fake_objstore_find(f->s.objects, FIX_DEST, variant) != NULL;
}

static void test_queues_what_has_no_record(void **state)
{
    struct sweep_fixture *f = *state;
    struct index_entry e = {0};

    upload(f, "images/a.jpg", T0);
    upload(f, "images/b.jpg", T0); /* recorded after: processed */
    recorded(f, "images/b.jpg", T0 + 1);
    recorded(f, "images/c.jpg", T0); /* uploaded again after its record */
    upload(f, "images/c.jpg", T0 + 5);
    upload(f, "images/d/", T0); /* a folder marker */
    sweep_once(f, "ok");
    assert_true(processed(f, "images/a.jpg"));
    assert_false(processed(f, "images/b.jpg"));
    assert_true(processed(f, "images/c.jpg"));
    assert_false(fix_record(&f->s, "images/b.jpg", &e));
    assert_false(fix_record(&f->s, "images/d/", &e));
    assert_true(fix_record(&f->s, "images/a.jpg", &e));
    assert_int_equal(e.state, INDEX_DONE);
    index_entry_cleanup(&e);
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"scanned\"") == 3);
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") == 2);
}

/* Objects this replica knows are done or failed for good are not queued
 * again, even when their records never reached S3; a bad image waits for
 * an operator's retry. */
static void test_known_objects_left_alone(void **state)
{
    struct sweep_fixture *f = *state;
    static const char garbage[] = "not an image";

    upload(f, "images/good.jpg", T0);
    fake_objstore_add(f->s.objects, FIX_SRC, "images/bad.jpg", garbage, sizeof(garbage) - 1,
                      NULL);
    fake_objstore_fail(f->s.objects,
                       &(struct fake_fault){"put", "_status/", 1, 0, RZ_EUPSTREAM, 0});
    assert_int_equal(fix_submit(&f->s, "images/good.jpg", NULL, 0), RZ_OK);
    assert_int_equal(fix_submit(&f->s, "images/bad.jpg", NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&f->s, "images/good.jpg", 5000));
    assert_true(fix_wait_finished(&f->s, "images/bad.jpg", 5000));
    sweep_once(f, "ok");
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"scanned\"") == 2);
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") == 0);
    assert_int_equal(fake_objstore_calls(f->s.objects, "get"), 2);
}

/* S3 keeps failing one object: its job's own retries end it failed
 * (upstream_error, 2 attempts), then each pass of the sweep queues it
 * once more, until it has had as many runs again (4 in all); from then on
 * the sweep leaves it to an operator instead of running it every pass. */
static void test_transient_failure_retried_a_bounded_number_of_times(void **state)
{
    struct sweep_fixture *f = *state;
    struct index_entry e = {0};

    upload(f, "images/a.jpg", T0);
    fake_objstore_fail(f->s.objects,
                       &(struct fake_fault){"get", "images/", 1, 0, RZ_EUPSTREAM, 0});
    assert_int_equal(fix_submit(&f->s, "images/a.jpg", NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&f->s, "images/a.jpg", 5000));
    for (int pass = 0; pass < 4; pass++) {
        sweep_once(f, "ok");
        assert_true(fix_record(&f->s, "images/a.jpg", &e));
        print_message("pass %d: queued %g, attempts %d\n", pass,
                      metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\""),
                      e.attempts);
        assert_int_equal(e.state, INDEX_FAILED);
        assert_string_equal(e.error_code, "upstream_error");
        assert_int_equal(e.attempts, pass < 2 ? 3 + pass : 4);
        index_entry_cleanup(&e);
        assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") ==
                    (pass < 2));
    }
}

static double sweep_reads(struct sweep_fixture *f)
{
    static const char *const labels[] = {
        "phase=\"sweep\",op=\"find_key\",outcome=\"ok\"",
        "phase=\"sweep\",op=\"find_key\",outcome=\"not_found\"",
        "phase=\"sweep\",op=\"get\",outcome=\"ok\"",
        "phase=\"sweep\",op=\"get\",outcome=\"not_found\"",
    };
    double n = 0;

    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        n += metrics_get(f->s.m, "resizer_store_requests_total", labels[i]);
    return n;
}

/* This replica's cache answers for an object it finished for the listed
 * ETag; everything else is one store read (a: no record; b: a record the
 * store does not know, written in a later second). */
static void test_objects_finished_here_cost_no_store_reads(void **state)
{
    struct sweep_fixture *f = *state;

    upload(f, "images/a.jpg", T0);
    upload(f, "images/b.jpg", T0);
    recorded(f, "images/b.jpg", T0 + 1);
    upload(f, "images/c.jpg", T0);
    fake_objstore_set_clock(f->s.objects, T0); /* c's record: the same second */
    assert_int_equal(fix_submit(&f->s, "images/c.jpg", NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&f->s, "images/c.jpg", 5000));
    assert_true(sweep_reads(f) == 0);
    sweep_once(f, "ok");
    print_message("store reads by the sweep: %g\n", sweep_reads(f));
    assert_true(sweep_reads(f) == 2);
    assert_true(processed(f, "images/a.jpg"));
    assert_false(processed(f, "images/b.jpg"));
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") == 1);
}

/* An object overwritten while its job ran (the job read the old one): the
 * record the job wrote is later than the new object but names the old
 * ETag, and the sweep queues the new object. */
static void test_overwrite_during_the_job_is_found(void **state)
{
    struct sweep_fixture *f = *state;
    size_t len;
    void *other = fix_jpeg(40, 30, &len);

    upload(f, "images/c.jpg", T0);
    assert_int_equal(fix_submit(&f->s, "images/c.jpg", NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&f->s, "images/c.jpg", 5000));
    fake_objstore_set_clock(f->s.objects, T0);
    fake_objstore_add(f->s.objects, FIX_SRC, "images/c.jpg", other, len, NULL);
    recorded(f, "images/c.jpg", T0 + 1); /* written after the overwrite, by the old job */
    sweep_once(f, "ok");
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") == 1);
    g_free(other);
}

/* 1,001 originals: the last, on the second page of both listings, is the
 * one without a record. */
static void test_walks_every_page(void **state)
{
    struct sweep_fixture *f = *state;
    char key[64];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "images/%04d.jpg", i);
        fake_objstore_add(f->s.objects, FIX_SRC, key, "x", 1, NULL);
        recorded(f, key, T0);
    }
    recorded(f, "images/zz-orphan.jpg", T0); /* a record whose object is gone */
    upload(f, "images/zz.jpg", T0);
    sweep_once(f, "ok");
    assert_true(processed(f, "images/zz.jpg"));
    assert_true(metrics_get(f->rm, "resizer_reconcile_objects_total", "kind=\"queued\"") == 1);
    assert_int_equal(fake_objstore_calls(f->s.objects, "list"), 4);
}

/* The cursor saved with the lease: the next round goes on after it, and a
 * round that walked to the end leaves it empty (start over). */
static void test_resumes_from_its_cursor(void **state)
{
    struct sweep_fixture *f = *state;
    char cursor[STORE_SWEEP_CURSOR_MAX] = "x";
    int64_t now = clock_wall_ms();

    upload(f, "images/a.jpg", T0);
    upload(f, "images/b.jpg", T0);
    upload(f, "images/c.jpg", T0);
    assert_int_equal(status_lease_sweep(f->s.status, now, now + 1000, NULL), RZ_OK);
    assert_int_equal(status_save_sweep_cursor(f->s.status, "images/a.jpg"), RZ_OK);
    sweep_once(f, "ok");
    assert_false(processed(f, "images/a.jpg"));
    assert_true(processed(f, "images/b.jpg"));
    assert_true(processed(f, "images/c.jpg"));
    now = clock_wall_ms();
    assert_int_equal(status_lease_sweep(f->s.status, now, now + 1000, cursor), RZ_OK);
    assert_string_equal(cursor, "");
}

/* Another replica holds the sweep's lease: this one lists nothing. */
static void test_skips_while_another_holds_the_lease(void **state)
{
    struct sweep_fixture *f = *state;
    struct status_opts so = {.cfg = &f->s.cfg,
                             .store = f->s.store,
                             .index = f->s.idx,
                             .metrics = f->s.m,
                             .owner = "other",
                             .lease_ms = 60000,
                             .max_attempts = 2,
                             .backoff_base_ms = 10};
    struct status *other = NULL;
    int64_t now = clock_wall_ms();

    upload(f, "images/a.jpg", T0);
    assert_int_equal(status_new(&so, &other), RZ_OK);
    assert_int_equal(status_lease_sweep(other, now, now + 60000, NULL), RZ_OK);
    sweep_once(f, "skipped");
    assert_int_equal(fake_objstore_calls(f->s.objects, "list"), 0);
    assert_false(processed(f, "images/a.jpg"));
    status_free(other);
}

/* A fixture of its own (for tests that run several) with a.jpg and b.jpg
 * uploaded, nothing processed. */
static struct sweep_fixture *with_a_and_b(void **st)
{
    struct sweep_fixture *f;

    setup(st);
    f = *st;
    upload(f, "images/a.jpg", T0);
    upload(f, "images/b.jpg", T0);
    return f;
}

/* Each listing failing on its first call: the round ends in error with
 * nothing queued, and the next round still finds the object it had
 * reached (not skipped by the cursor). */
static void test_failed_listing_loses_nothing(void **state)
{
    static const char *const prefixes[] = {"images/", KEYS_STATUS_BY_KEY};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        void *st;
        struct sweep_fixture *f = with_a_and_b(&st);

        fake_objstore_fail(f->s.objects,
                           &(struct fake_fault){"list", prefixes[i], 1, 1, RZ_EUPSTREAM, 0});
        sweep_once(f, "error");
        assert_false(processed(f, "images/a.jpg"));
        sweep_once(f, "ok");
        print_message("failing %s: a %d, b %d\n", prefixes[i], processed(f, "images/a.jpg"),
                      processed(f, "images/b.jpg"));
        assert_true(processed(f, "images/a.jpg"));
        assert_true(processed(f, "images/b.jpg"));
        teardown(&st);
    }
}

/* A faulty S3 whose listing starts over instead of ending, or pages on
 * with nothing in its pages: the round ends as an error, and the objects
 * seen before it were queued once. */
static void test_faulty_listings_end_the_round(void **state)
{
    static const enum fake_list_mode modes[] = {FAKE_LIST_LOOPS, FAKE_LIST_EMPTY};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        void *st;
        struct sweep_fixture *f = with_a_and_b(&st);

        fake_objstore_list_mode(f->s.objects, modes[i]);
        sweep_once(f, "error");
        assert_true(fake_objstore_calls(f->s.objects, "list") <= 20);
        if (modes[i] == FAKE_LIST_LOOPS) {
            assert_true(processed(f, "images/a.jpg"));
            assert_true(processed(f, "images/b.jpg"));
        }
        teardown(&st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queues_what_has_no_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_known_objects_left_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_failure_retried_a_bounded_number_of_times,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_objects_finished_here_cost_no_store_reads,
                                        setup_shared, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_during_the_job_is_found, setup_shared,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_walks_every_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumes_from_its_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skips_while_another_holds_the_lease, setup,
                                        teardown),
        cmocka_unit_test(test_failed_listing_loses_nothing),
        cmocka_unit_test(test_faulty_listings_end_the_round),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
