/* test_status.c - the state machine over the memory store: a job's life
 * (claim, begin, finish, with the hook once), a newer object while
 * processing, transient failures retried after a backoff up to the limit
 * and permanent ones never, a lease lost to another replica, retry and
 * release, and a dead replica's claim re-claimed by another's keeper once
 * its lease has run out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/status.h"
#include "server/store.h"

#define NOW 1700000000000LL
#define LEASE 60000

static const char ID[] = "0f0e0d0c-0b0a-4908-8706-050403020100";

struct fixture {
    struct index *idx;
    struct metrics *m;
    struct store *store;
    struct status *a; /* replica "a" */
    struct status *b; /* replica "b", same store */
    int finished;     /* hook calls */
    enum index_state last_state;
};

static void on_finished(void *arg, const struct index_entry *e)
{
    struct fixture *f = arg;

    f->finished++;
    f->last_state = e->state;
}

static struct status *make_status(struct fixture *f, const char *owner, long lease_ms)
{
    struct status_opts o = {.store = f->store,
                            .index = f->idx,
                            .metrics = f->m,
                            .owner = owner,
                            .lease_ms = lease_ms,
                            .max_attempts = 2,
                            .backoff_base_ms = 1000};
    struct status *st = NULL;

    assert_int_equal(status_new(&o, &st), RZ_OK);
    assert_int_equal(status_on_finished(st, on_finished, f), RZ_OK);
    return st;
}

static int setup(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    f.idx = index_new(100);
    f.m = metrics_new();
    assert_int_equal(store_memory_new(f.idx, &f.store), RZ_OK);
    f.a = make_status(&f, "a", LEASE);
    f.b = make_status(&f, "b", LEASE);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    status_free(f->a);
    status_free(f->b);
    store_free(f->store);
    metrics_free(f->m);
    index_free(f->idx);
    return 0;
}

static enum status_claim claim(struct status *st, const char *etag, const char *seq, int64_t now)
{
    struct status_event ev = {"src", "images/a.jpg", etag, seq, 10, 0, NULL, NULL, 0};
    enum status_claim c;
    char id[INDEX_ID_LEN + 1];

    assert_int_equal(status_claim_event(st, &ev, 1, ID, now, &c, id), RZ_OK);
    assert_string_equal(id, ID);
    return c;
}

static struct index_entry get(struct fixture *f)
{
    struct index_entry e = {0};

    assert_int_equal(index_get(f->idx, ID, &e), RZ_OK);
    return e;
}

static void begin(struct status *st, int64_t now)
{
    struct status_task t;

    assert_int_equal(status_begin(st, ID, now, &t), RZ_OK);
    assert_string_equal(t.key, "images/a.jpg");
    status_task_cleanup(&t);
}

static enum rz_err finish(struct status *st, enum rz_err err, int64_t now, int *again)
{
    struct status_outcome o = {err, err ? "boom" : NULL, 10, NULL, NULL, NULL, NULL, 0};

    return status_finish(st, ID, &o, now, NULL, again);
}

static void test_life_of_a_job(void **state)
{
    struct fixture *f = *state;
    struct index_entry e;
    int again = -1;

    assert_int_equal(claim(f->a, "e1", "0A", NOW), STATUS_CLAIM_NEW);
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_string_equal(e.owner, "a");
    assert_true(e.lease_ms == NOW + LEASE);
    index_entry_cleanup(&e);
    /* Another replica may not start what "a" holds. */
    assert_int_equal(status_begin(f->b, ID, NOW, &(struct status_task){0}), RZ_ECONFLICT);
    begin(f->a, NOW + 1);
    assert_int_equal(claim(f->b, "e1", "0A", NOW + 2), STATUS_CLAIM_DUPLICATE);
    assert_int_equal(finish(f->a, RZ_OK, NOW + 3, &again), RZ_OK);
    assert_int_equal(again, 0);
    e = get(f);
    assert_int_equal(e.state, INDEX_DONE);
    assert_int_equal(e.attempts, 1);
    assert_string_equal(e.owner, "");
    assert_true(e.lease_ms == 0);
    index_entry_cleanup(&e);
    assert_int_equal(f->finished, 1);
    assert_int_equal(claim(f->b, "e1", "0A", NOW + 4), STATUS_CLAIM_DUPLICATE);
}

static void test_newer_object_while_processing(void **state)
{
    struct fixture *f = *state;
    struct index_entry e;
    int again = 0;

    claim(f->a, "e1", "0A", NOW);
    begin(f->a, NOW);
    /* The newer object's event reaches the other replica. */
    assert_int_equal(claim(f->b, "e2", "0B", NOW + 1), STATUS_CLAIM_DUPLICATE);
    assert_int_equal(finish(f->a, RZ_OK, NOW + 2, &again), RZ_OK);
    assert_int_equal(again, 1);
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_string_equal(e.etag, "e2");
    index_entry_cleanup(&e);
    assert_int_equal(f->finished, 0);
    begin(f->a, NOW + 3);
    assert_int_equal(finish(f->a, RZ_OK, NOW + 4, &again), RZ_OK);
    assert_int_equal(again, 0);
    e = get(f);
    assert_int_equal((int)e.state * 10 + e.attempts, INDEX_DONE * 10 + 2);
    index_entry_cleanup(&e);
}

/* The queue a keeper feeds: records what it was given. */
struct fake_queue {
    int committed;
    char id[INDEX_ID_LEN + 1];
};

static int fq_reserve(void *arg)
{
    (void)arg;
    return 1;
}

static void fq_commit(void *arg, const char *id)
{
    struct fake_queue *q = arg;

    q->committed++;
    memcpy(q->id, id, INDEX_ID_LEN + 1);
}

static void fq_cancel(void *arg)
{
    (void)arg;
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_transient_then_permanent(void **state)
{
    struct fixture *f = *state;
    struct store *s = f->store;
    struct fake_queue q = {0};
    struct status_queue sq = {fq_reserve, fq_commit, fq_cancel, &q};
    char ids[4][INDEX_ID_LEN + 1];
    struct index_entry e;
    size_t n = 9;
    int again = 0;

    claim(f->a, "e1", NULL, NOW);
    begin(f->a, NOW);
    assert_int_equal(finish(f->a, RZ_EUPSTREAM, NOW + 10, &again), RZ_OK);
    e = get(f);
    /* Queued for anyone once the backoff (1 s) is over, the error kept. */
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_string_equal(e.owner, "");
    assert_string_equal(e.error_code, "upstream_error");
    assert_true(e.lease_ms == NOW + 10 + 1000);
    index_entry_cleanup(&e);
    /* Redelivered meanwhile: a duplicate, left to the backoff. */
    assert_int_equal(claim(f->a, "e1", NULL, NOW + 20), STATUS_CLAIM_DUPLICATE);
    e = get(f);
    assert_string_equal(e.owner, "");
    assert_true(e.lease_ms == NOW + 10 + 1000);
    index_entry_cleanup(&e);
    assert_int_equal(s->ops->expired(s, NOW + 500, 4, ids, &n), RZ_OK);
    assert_int_equal(n, 0);
    assert_int_equal(s->ops->expired(s, NOW + 1011, 4, ids, &n), RZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->finished, 0);
    /* Another replica's keeper takes it (its clock is far past NOW). */
    assert_int_equal(status_start(f->b, &sq), RZ_OK);
    for (int i = 0; i < 40 && !q.committed; i++)
        usleep(50 * 1000);
    assert_int_equal(q.committed, 1);
    begin(f->b, NOW + 2000);
    /* The second transient failure is the last of JOB_ATTEMPTS (2). */
    assert_int_equal(finish(f->b, RZ_EUPSTREAM, NOW + 2001, &again), RZ_OK);
    e = get(f);
    assert_int_equal((int)e.state * 10 + e.attempts, INDEX_FAILED * 10 + 2);
    index_entry_cleanup(&e);
    assert_int_equal(f->finished, 1);
    /* Its attempts spent, a redelivery runs nothing. */
    assert_int_equal(claim(f->a, "e1", NULL, NOW + 2002), STATUS_CLAIM_DUPLICATE);
    e = get(f);
    assert_int_equal(e.state, INDEX_FAILED);
    index_entry_cleanup(&e);
    /* Retried by hand; a permanent failure ends failed at once. */
    assert_int_equal(status_retry(f->b, ID, NOW + 3000), RZ_OK);
    assert_int_equal(status_retry(f->b, ID, NOW + 3000), RZ_ECONFLICT);
    begin(f->b, NOW + 3001);
    assert_int_equal(finish(f->b, RZ_ECORRUPT, NOW + 3002, &again), RZ_OK);
    e = get(f);
    assert_int_equal((int)e.state * 10 + e.attempts, INDEX_FAILED * 10 + 3);
    assert_string_equal(e.error_code, "corrupt_image");
    index_entry_cleanup(&e);
    assert_int_equal(f->finished, 2);
}

static void test_lost_lease_and_release(void **state)
{
    struct fixture *f = *state;
    struct index_entry e;
    int again = 0;

    claim(f->a, "e1", NULL, NOW);
    status_release(f->a, ID, NOW + 5);
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_string_equal(e.owner, "");
    assert_true(e.lease_ms < NOW + 5);
    index_entry_cleanup(&e);
    /* Nobody's: "a" cannot start it any more, and a finish by a replica
     * that does not hold it changes nothing. */
    assert_int_equal(status_begin(f->a, ID, NOW + 6, &(struct status_task){0}), RZ_ECONFLICT);
    assert_int_equal(finish(f->b, RZ_OK, NOW + 7, &again), RZ_ECONFLICT);
}

static void test_dead_replica_reclaimed(void **state)
{
    struct fixture *f = *state;
    struct fake_queue q = {0};
    struct status_queue sq = {fq_reserve, fq_commit, fq_cancel, &q};
    struct status *c = make_status(f, "c", 300);
    struct status *dead = make_status(f, "dead", 300);
    struct index_entry e;

    /* "dead" claims and never renews (its keeper never runs). */
    claim(dead, "e1", NULL, wall_ms());
    assert_int_equal(status_start(c, &sq), RZ_OK);
    for (int i = 0; i < 40 && !q.committed; i++)
        usleep(50 * 1000);
    assert_int_equal(q.committed, 1);
    assert_string_equal(q.id, ID);
    e = get(f);
    assert_string_equal(e.owner, "c");
    index_entry_cleanup(&e);
    /* c renews what it holds: not re-claimed again. */
    usleep(600 * 1000);
    assert_int_equal(q.committed, 1);
    status_free(c);
    status_free(dead);
}

static void test_taxonomy(void **state)
{
    static const struct {
        enum rz_err err;
        const char *code;
        int transient;
    } cases[] = {
        {RZ_EUPSTREAM, "upstream_error", 1}, {RZ_EINVAL, "s3_rejected", 0},
        {RZ_ELIMIT, "encoder_limit", 0},     {RZ_ECORRUPT, "corrupt_image", 0},
        {RZ_EDENIED, "access_denied", 0},    {RZ_ENOTFOUND, "source_missing", 0},
        {RZ_EPIXELS, "too_many_pixels", 0},  {RZ_EUNSUPPORTED, "unsupported_format", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(status_failure_code(cases[i].err), cases[i].code);
        assert_int_equal(status_code_transient(cases[i].code), cases[i].transient);
    }
    assert_int_equal(status_code_transient("key_too_long"), 0);
}

static void test_key_too_long_fails_at_intake(void **state)
{
    struct fixture *f = *state;
    struct status_event ev = {"src", "images/a.jpg", "e1",   NULL, 10,
                              0,     "key_too_long", "long", 0};
    enum status_claim c;
    char id[INDEX_ID_LEN + 1];
    struct index_entry e;

    /* No queue room is needed to record a failure. */
    assert_int_equal(status_claim_event(f->a, &ev, 0, ID, NOW, &c, id), RZ_OK);
    assert_int_equal(c, STATUS_CLAIM_FAILED);
    e = get(f);
    assert_int_equal(e.state, INDEX_FAILED);
    assert_string_equal(e.error_code, "key_too_long");
    index_entry_cleanup(&e);
}

/* A failure is final for its object: EventBridge's retry, or the other
 * replica's copy of the event, answers as a duplicate, runs no job and
 * fires no second image.failed; a newer object or POST /retry runs it. */
static void test_redelivered_failure_runs_nothing(void **state)
{
    struct fixture *f = *state;
    struct index_entry e;
    int again = 0;

    assert_int_equal(claim(f->a, "e1", "0A", NOW), STATUS_CLAIM_NEW);
    begin(f->a, NOW + 1);
    assert_int_equal(finish(f->a, RZ_ECORRUPT, NOW + 2, &again), RZ_OK);
    assert_int_equal(f->finished, 1);
    assert_int_equal(claim(f->b, "e1", "0A", NOW + 3), STATUS_CLAIM_DUPLICATE);
    assert_int_equal(claim(f->a, "e1", NULL, NOW + 4), STATUS_CLAIM_DUPLICATE);
    e = get(f);
    assert_int_equal((int)e.state * 10 + e.attempts, INDEX_FAILED * 10 + 1);
    assert_string_equal(e.error_code, "corrupt_image");
    assert_string_equal(e.owner, "");
    index_entry_cleanup(&e);
    assert_int_equal(f->finished, 1);
    /* The object replaced: its event is new work. */
    assert_int_equal(claim(f->b, "e2", "0B", NOW + 5), STATUS_CLAIM_NEW);
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_string_equal(e.owner, "b");
    index_entry_cleanup(&e);
}

/* The repair sweep may queue a transient failure again, as many runs as
 * the job's own retries had, and never a permanent one. */
static void test_sweep_retry_bound(void **state)
{
    struct fixture *f = *state;
    struct index_entry e = {.state = INDEX_FAILED, .error_code = "upstream_error"};

    for (e.runs = 0; e.runs < 6; e.runs++)
        assert_int_equal(status_sweep_may_retry(f->a, &e), e.runs < 4);
    e.attempts = 9; /* runs for earlier objects: not this one's */
    e.runs = 1;
    assert_int_equal(status_sweep_may_retry(f->a, &e), 1);
    snprintf(e.error_code, sizeof(e.error_code), "corrupt_image");
    assert_int_equal(status_sweep_may_retry(f->a, &e), 0);
    snprintf(e.error_code, sizeof(e.error_code), "%s", STATUS_CODE_WORKER_LOST);
    assert_int_equal(status_sweep_may_retry(f->a, &e), 0);
    e.state = INDEX_DONE;
    snprintf(e.error_code, sizeof(e.error_code), "upstream_error");
    assert_int_equal(status_sweep_may_retry(f->a, &e), 0);
}

/* key_too_long is notified once: its event redelivered (EventBridge, or
 * the other replica) is a duplicate. */
static void test_key_too_long_redelivered(void **state)
{
    struct fixture *f = *state;
    struct status_event ev = {"src", "images/a.jpg", "e1",   "0A", 10,
                              0,     "key_too_long", "long", 0};
    enum status_claim c;
    char id[INDEX_ID_LEN + 1];

    assert_int_equal(status_claim_event(f->a, &ev, 0, ID, NOW, &c, id), RZ_OK);
    assert_int_equal(c, STATUS_CLAIM_FAILED);
    assert_int_equal(status_claim_event(f->b, &ev, 1, ID, NOW + 1, &c, id), RZ_OK);
    assert_int_equal(c, STATUS_CLAIM_DUPLICATE);
    assert_int_equal(f->finished, 1);
}

/* Polls pred every 10 ms for up to ms. */
static int wait_until(int (*pred)(void *arg), void *arg, long ms)
{
    for (long waited = 0; !pred(arg) && waited < ms; waited += 10)
        usleep(10 * 1000);
    return pred(arg);
}

static int record_failed(void *arg)
{
    struct fixture *f = arg;
    struct index_entry e = {0};
    int failed = index_get(f->idx, ID, &e) == RZ_OK && e.state == INDEX_FAILED;

    index_entry_cleanup(&e);
    return failed;
}

static int committed(void *arg)
{
    return ((struct fake_queue *)arg)->committed > 0;
}

/* An image that takes its replica down on every run: the first replica
 * dies with it, the second re-claims it and dies too (its last attempt),
 * and the third finishes it failed (worker_lost, notified) instead of
 * running it and dying in turn. */
static void test_poison_image_ends_worker_lost(void **state)
{
    struct fixture *f = *state;
    struct fake_queue q2 = {0}, q3 = {0};
    struct status_queue sq2 = {fq_reserve, fq_commit, fq_cancel, &q2};
    struct status_queue sq3 = {fq_reserve, fq_commit, fq_cancel, &q3};
    struct status *first = make_status(f, "first", 300);
    struct status *second = make_status(f, "second", 300);
    struct status *third = make_status(f, "third", 300);
    struct index_entry e;

    claim(first, "e1", NULL, wall_ms());
    begin(first, wall_ms());
    assert_int_equal(status_start(second, &sq2), RZ_OK);
    assert_true(wait_until(committed, &q2, 3000));
    begin(second, wall_ms());
    status_stop(second); /* dead: renews nothing from now on */
    assert_int_equal(status_start(third, &sq3), RZ_OK);
    assert_true(wait_until(record_failed, f, 3000));
    e = get(f);
    assert_string_equal(e.error_code, STATUS_CODE_WORKER_LOST);
    assert_int_equal(e.attempts, 2);
    assert_string_equal(e.owner, "");
    assert_true(e.lease_ms == 0 && e.finished_ms > 0);
    index_entry_cleanup(&e);
    assert_int_equal(q3.committed, 0);
    assert_int_equal(f->finished, 1);
    assert_int_equal(f->last_state, INDEX_FAILED);
    assert_int_equal(status_code_transient(STATUS_CODE_WORKER_LOST), 0);
    status_free(third);
    status_free(second);
    status_free(first);
}

/* Runs of earlier objects do not count against a new one: a key processed
 * for two objects (max_attempts here) whose replica dies on the third is
 * re-claimed and run, not failed as a lost worker. */
static void test_lost_worker_counts_only_this_objects_runs(void **state)
{
    struct fixture *f = *state;
    struct fake_queue q3 = {0};
    struct status_queue sq3 = {fq_reserve, fq_commit, fq_cancel, &q3};
    struct status *first = make_status(f, "first", 300);
    struct status *third = make_status(f, "third", 300);
    const char *const etags[] = {"e1", "e2"};
    struct index_entry e;
    int again = -1;

    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(claim(first, etags[i], NULL, wall_ms()), STATUS_CLAIM_NEW);
        begin(first, wall_ms());
        assert_int_equal(finish(first, RZ_OK, wall_ms(), &again), RZ_OK);
    }
    assert_int_equal(claim(first, "e3", NULL, wall_ms()), STATUS_CLAIM_NEW);
    begin(first, wall_ms()); /* first is never started: it renews nothing */
    assert_int_equal(status_start(third, &sq3), RZ_OK);
    assert_true(wait_until(committed, &q3, 3000));
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_int_equal(e.attempts, 3);
    assert_int_equal(e.runs, 1);
    assert_int_equal(e.lost, 1);
    assert_string_equal(e.error_code, "");
    index_entry_cleanup(&e);
    status_free(third);
    status_free(first);
}

/* A newer object that arrived while the old one ran is not the one whose
 * replica died: re-claimed with a count of its own (no run, no loss yet). */
static void test_newer_object_reclaimed_with_its_own_count(void **state)
{
    struct fixture *f = *state;
    struct fake_queue q3 = {0};
    struct status_queue sq3 = {fq_reserve, fq_commit, fq_cancel, &q3};
    struct status *first = make_status(f, "first", 300);
    struct status *third = make_status(f, "third", 300);
    struct index_entry e;

    assert_int_equal(claim(first, "e1", NULL, wall_ms()), STATUS_CLAIM_NEW);
    begin(first, wall_ms());
    assert_int_equal(claim(first, "e2", NULL, wall_ms()), STATUS_CLAIM_DUPLICATE);
    assert_int_equal(status_start(third, &sq3), RZ_OK);
    assert_true(wait_until(committed, &q3, 3000));
    e = get(f);
    assert_int_equal(e.state, INDEX_QUEUED);
    assert_int_equal(e.runs, 0);
    assert_int_equal(e.lost, 0);
    assert_string_equal(e.etag, "e2");
    index_entry_cleanup(&e);
    status_free(third);
    status_free(first);
}

/* The sweep's lease item: one holder at a time, handed on once it lapses,
 * with the cursor the last holder saved (so the next sweep resumes). */
static void test_sweep_lease_and_cursor(void **state)
{
    struct fixture *f = *state;
    char cursor[STORE_SWEEP_CURSOR_MAX];

    assert_int_equal(status_lease_sweep(f->a, NOW, NOW + 1000, cursor), RZ_OK);
    assert_string_equal(cursor, "");
    assert_int_equal(status_save_sweep_cursor(f->a, "images/m.jpg"), RZ_OK);
    assert_int_equal(status_lease_sweep(f->b, NOW + 500, NOW + 1500, cursor), RZ_ECONFLICT);
    assert_int_equal(status_save_sweep_cursor(f->b, "images/z.jpg"), RZ_ECONFLICT);
    assert_int_equal(status_lease_sweep(f->a, NOW + 600, NOW + 1600, cursor), RZ_OK);
    assert_int_equal(status_lease_sweep(f->b, NOW + 1601, NOW + 2600, cursor), RZ_OK);
    assert_string_equal(cursor, "images/m.jpg");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_life_of_a_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_object_while_processing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_then_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_lease_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_replica_reclaimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_too_long_fails_at_intake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_lease_and_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivered_failure_runs_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_retry_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_too_long_redelivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_image_ends_worker_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_worker_counts_only_this_objects_runs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_newer_object_reclaimed_with_its_own_count, setup,
                                        teardown),
        cmocka_unit_test(test_taxonomy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
