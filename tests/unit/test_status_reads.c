/* test_status_reads.c - a status read on a replica that did not run the
 * job (memory store: the other replica's record in S3 is the only copy),
 * over the fake object store: found by id and by key and then answered
 * from memory, and every way the record can be missing, refused, damaged,
 * forged or stuck behind a stalled S3, each with the answer a client gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <vips/vips.h>

#include "fixtures.h"
#include "server/clock.h"
#include "server/keys.h"

#define KEY "images/a.jpg"
#define OTHER_ID "0f0e0d0c-0b0a-4908-8706-050403020100"

struct two_replicas {
    struct fix_service a; /* ran the job */
    struct fix_service b; /* is asked */
    char id[INDEX_ID_LEN + 1];
};

static int setup(void **state)
{
    static struct two_replicas r;
    struct index_entry e = {0};
    size_t len;
    void *jpeg;

    memset(&r, 0, sizeof(r));
    fix_service_start(&r.a, &(struct fix_service_opts){.owner = "a"});
    fix_service_start(&r.b, &(struct fix_service_opts){.owner = "b", .objects = r.a.objects});
    jpeg = fix_jpeg(32, 24, &len);
    fake_objstore_add(r.a.objects, FIX_SRC, KEY, jpeg, len, NULL);
    g_free(jpeg);
    assert_int_equal(fix_submit(&r.a, KEY, NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&r.a, KEY, 5000));
    assert_int_equal(jobs_drain(r.a.jobs, 5), 0);
    assert_true(fix_record(&r.a, KEY, &e));
    memcpy(r.id, e.id, sizeof(r.id));
    index_entry_cleanup(&e);
    *state = &r;
    return 0;
}

static int teardown(void **state)
{
    struct two_replicas *r = *state;

    fix_service_stop(&r->b);
    fix_service_stop(&r->a);
    return 0;
}

static void lookup_done(void *arg)
{
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
}

static int flag_set(void *arg)
{
    return __atomic_load_n((int *)arg, __ATOMIC_ACQUIRE);
}

/* What an HTTP thread does: answered now, or a look-up waited for.
 * *waited_out: 1 if it needed the look-up. */
static enum rz_err find(struct fix_service *s, const char *id, const char *key,
                        struct index_entry *out, int *waited_out)
{
    struct status_lookup *l = NULL;
    enum rz_err err = status_find(s->status, id, key ? FIX_SRC : NULL, key, out, &l);
    int done = 0;

    *waited_out = l != NULL;
    if (!l)
        return err;
    status_lookup_start(l, lookup_done, &done);
    assert_true(fix_wait(flag_set, &done, 5000));
    return status_lookup_result(l, out);
}

static void test_found_by_id_then_from_memory(void **state)
{
    struct two_replicas *r = *state;
    struct index_entry e = {0};
    size_t gets = fake_objstore_calls(r->b.objects, "get");
    int waited;

    assert_int_equal(find(&r->b, r->id, NULL, &e, &waited), RZ_OK);
    assert_true(waited);
    assert_int_equal(e.state, INDEX_DONE);
    assert_string_equal(e.key, KEY);
    assert_int_equal(e.nvariants, 1);
    index_entry_cleanup(&e);
    assert_int_equal(fake_objstore_calls(r->b.objects, "get"), gets + 1);
    /* Now a copy in memory: answered at once, S3 not asked again. */
    assert_int_equal(find(&r->b, r->id, NULL, &e, &waited), RZ_OK);
    assert_false(waited);
    assert_int_equal(e.state, INDEX_DONE);
    index_entry_cleanup(&e);
    assert_int_equal(fake_objstore_calls(r->b.objects, "get"), gets + 1);
}

static void test_found_by_key(void **state)
{
    struct two_replicas *r = *state;
    struct index_entry e = {0};
    int waited;

    assert_int_equal(find(&r->b, NULL, KEY, &e, &waited), RZ_OK);
    assert_true(waited);
    assert_string_equal(e.id, r->id);
    assert_int_equal(e.state, INDEX_DONE);
    index_entry_cleanup(&e);
}

/* What the record in S3 is (or what S3 does), and what the client gets. */
struct read_case {
    const char *name;
    const char *record; /* put at _status/ids/OTHER_ID: "copy" of a's, "big", text */
    struct fake_fault fault;
    enum rz_err want;
    int negative_cached; /* asked again at once: RZ_ENOTFOUND without S3 */
};

static const struct read_case read_cases[] = {
    {"no record", NULL, {0}, RZ_ENOTFOUND, 1},
    {"403 (no s3:ListBucket)", NULL, {"get", "_status/", 1, 0, RZ_EDENIED, 0}, RZ_ENOTFOUND, 1},
    {"503", "copy", {"get", "_status/", 1, 0, RZ_EUPSTREAM, 0}, RZ_EUPSTREAM, 0},
    {"not JSON", "{\"id\": ", {0}, RZ_ENOTFOUND, 1},
    {"another id's record", "copy", {0}, RZ_ENOTFOUND, 1},
    {"over 64 KiB", "big", {0}, RZ_ENOTFOUND, 1},
};

static void put_record(struct two_replicas *r, const char *what)
{
    char *mine = keys_status_by_id(r->id);
    char *other = keys_status_by_id(OTHER_ID);
    const struct fake_object *o = fake_objstore_find(r->a.objects, FIX_DEST, mine);
    char *big;

    if (!what)
        ;
    else if (strcmp(what, "copy") == 0) {
        assert_non_null(o);
        fake_objstore_add(r->a.objects, FIX_DEST, other, o->data, o->len, NULL);
    } else if (strcmp(what, "big") == 0) {
        big = malloc(65 * 1024);
        memset(big, ' ', 65 * 1024);
        memcpy(big, o->data, o->len);
        fake_objstore_add(r->a.objects, FIX_DEST, other, big, 65 * 1024, NULL);
        free(big);
    } else {
        fake_objstore_add(r->a.objects, FIX_DEST, other, what, strlen(what), NULL);
    }
    free(mine);
    free(other);
}

static void test_records_that_are_not_there(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(read_cases) / sizeof(read_cases[0]); i++) {
        const struct read_case *c = &read_cases[i];
        struct index_entry e = {0};
        struct two_replicas *r;
        void *st;
        size_t gets;
        int waited;

        print_message("case: %s\n", c->name);
        setup(&st);
        r = st;
        put_record(r, c->record);
        if (c->fault.op)
            fake_objstore_fail(r->b.objects, &c->fault);
        assert_int_equal(find(&r->b, OTHER_ID, NULL, &e, &waited), c->want);
        assert_true(waited);
        assert_int_equal(e.id[0], '\0');
        gets = fake_objstore_calls(r->b.objects, "get");
        /* "No such image" is remembered a moment; "try again" is not. */
        assert_int_equal(find(&r->b, OTHER_ID, NULL, &e, &waited), c->want);
        assert_int_equal(!waited, c->negative_cached);
        assert_int_equal(fake_objstore_calls(r->b.objects, "get"), gets + !c->negative_cached);
        index_entry_cleanup(&e);
        teardown(&st);
    }
}

struct state_wait {
    struct fix_service *s;
    enum index_state state;
};

static int in_state(void *arg)
{
    struct state_wait *w = arg;
    struct index_entry e = {0};
    int in = fix_record(w->s, KEY, &e) && e.state == w->state;

    index_entry_cleanup(&e);
    return in;
}

/* b holds a copy of a's S3 record, read a while ago (stale), when a newer
 * object's event reaches b: b's claim makes it b's own record, and a
 * status poll then (or any refresh) must not put the stale copy back over
 * the running job, which would answer "done" with the old object and let
 * the next redelivery run it twice. */
static void test_claimed_copy_not_replaced_by_a_refresh(void **state)
{
    struct two_replicas *r = *state;
    struct state_wait w = {&r->b, INDEX_PROCESSING};
    struct index_entry e = {0};
    size_t gets;
    int waited;

    assert_int_equal(find(&r->b, r->id, NULL, &e, &waited), RZ_OK);
    assert_true(waited);
    e.cached_ms -= 20000; /* read 20 s ago */
    assert_int_equal(index_put(r->b.idx, &e), RZ_OK);
    index_entry_cleanup(&e);
    /* The newer object's read is held up: the job stays processing. */
    fake_objstore_fail(r->b.objects, &(struct fake_fault){"get", "images/", 1, 1, RZ_OK, 1500});
    assert_int_equal(fix_submit(&r->b, KEY, "e2", 0), RZ_OK);
    assert_true(fix_wait(in_state, &w, 2000));
    gets = fake_objstore_calls(r->b.objects, "get");
    assert_int_equal(find(&r->b, r->id, NULL, &e, &waited), RZ_OK);
    assert_false(waited);
    assert_int_equal(e.state, INDEX_PROCESSING);
    assert_true(e.cached_ms == 0);
    index_entry_cleanup(&e);
    /* Whatever a background refresh would have read has landed by now. */
    usleep(300 * 1000);
    assert_int_equal(fake_objstore_calls(r->b.objects, "get"), gets);
    assert_true(fix_record(&r->b, KEY, &e));
    assert_int_equal(e.state, INDEX_PROCESSING);
    assert_string_equal(e.etag, "e2");
    index_entry_cleanup(&e);
    /* And the job ends done with the new object. */
    assert_true(fix_wait_finished(&r->b, KEY, 5000));
    assert_true(fix_record(&r->b, KEY, &e));
    assert_int_equal(e.state, INDEX_DONE);
    index_entry_cleanup(&e);
}

/* A read stuck on a stalled S3 is answered when the look-ups stop (the
 * drain), not after S3's timeouts. */
static void test_stalled_read_cut_by_the_drain(void **state)
{
    struct two_replicas *r = *state;
    struct index_entry e = {0};
    struct status_lookup *l = NULL;
    size_t gets = fake_objstore_calls(r->b.objects, "get");
    int done = 0;
    int64_t start;

    fake_objstore_fail(r->b.objects,
                       &(struct fake_fault){"get", "_status/", 1, 0, RZ_OK, 30000});
    assert_int_equal(status_find(r->b.status, r->id, NULL, NULL, &e, &l), RZ_OK);
    assert_non_null(l);
    status_lookup_start(l, lookup_done, &done);
    while (fake_objstore_calls(r->b.objects, "get") == gets)
        ;
    start = clock_wall_ms();
    status_stop_lookups(r->b.status);
    assert_true(fix_wait(flag_set, &done, 2000));
    assert_true(clock_wall_ms() - start < 2000);
    assert_int_equal(status_lookup_result(l, &e), RZ_EUPSTREAM);
    index_entry_cleanup(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_found_by_id_then_from_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_found_by_key, setup, teardown),
        cmocka_unit_test(test_records_that_are_not_there),
        cmocka_unit_test_setup_teardown(test_stalled_read_cut_by_the_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claimed_copy_not_replaced_by_a_refresh, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
