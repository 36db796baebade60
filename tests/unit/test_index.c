/* test_index.c - the status index as the API sees it: lookups by id and by
 * key, the decision an event gets (new job or duplicate), listing pages
 * that show every image once, newest first, the size bound that never
 * drops an image in flight, the JSON record another replica reads back,
 * and parallel use. Also prints the memory one status record costs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <pthread.h>

#if defined(__SANITIZE_ADDRESS__)
/* From ASan's runtime (sanitizer/allocator_interface.h, not always
 * installed): under ASan, mallinfo2 does not see the heap. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "server/index.h"
#include "server/status.h"
#include "server/store.h"

#define NOW 1700000000000LL /* 2023-11-14T22:13:20Z, in ms */

/* Claims go through the status module over the memory store on idx, as
 * the service does. */
static enum rz_err test_claim_event(struct index *idx, const struct status_event *ev, int room,
                                    const char *new_id, int64_t now, enum status_claim *claim,
                                    char id_out[INDEX_ID_LEN + 1])
{
    struct metrics *m = metrics_new();
    struct store *s = NULL;
    struct status *st = NULL;
    struct status_opts o = {.index = idx,
                            .metrics = m,
                            .owner = "test",
                            .lease_ms = 60000,
                            .max_attempts = 1,
                            .backoff_base_ms = 1000};
    enum rz_err err = store_memory_new(idx, &s);

    o.store = s;
    if (err == RZ_OK)
        err = status_new(&o, &st);
    if (err == RZ_OK)
        err = status_claim_event(st, ev, room, new_id, now, claim, id_out);
    status_free(st);
    store_free(s);
    metrics_free(m);
    return err;
}

static enum rz_err test_claim(struct index *idx, const char *bucket, const char *key,
                              const char *etag, const char *sequencer, uint64_t size,
                              int try_decoded_key, const char *new_id, int64_t now,
                              enum status_claim *claim, char id_out[INDEX_ID_LEN + 1])
{
    struct status_event ev = {bucket, key, etag, sequencer, size, try_decoded_key, NULL, NULL};

    return test_claim_event(idx, &ev, 1, new_id, now, claim, id_out);
}

/* A lowercase UUID-shaped id made from n. */
static void make_id(char id[INDEX_ID_LEN + 1], unsigned n)
{
    snprintf(id, INDEX_ID_LEN + 1, "%08x-0000-4000-8000-%012x", n, n);
}

static void make_key(char *key, size_t len, unsigned n)
{
    snprintf(key, len, "images/%08x.jpg", n);
}

/* Puts an entry (id n, key images/<n>.jpg in bucket "src") in state st. */
static enum rz_err put_n(struct index *idx, unsigned n, enum index_state st, int64_t now_ms,
                         int64_t upload_expires_ms)
{
    struct index_entry e = {0};
    char key[64];

    make_id(e.id, n);
    make_key(key, sizeof(key), n);
    e.state = st;
    e.bucket = "src";
    e.key = key;
    e.created_ms = e.updated_ms = now_ms;
    e.upload_expires_ms = upload_expires_ms;
    return index_put(idx, &e);
}

static enum index_state state_of(struct index *idx, const char *id)
{
    struct index_entry e = {0};
    enum index_state st;

    assert_int_equal(index_get(idx, id, &e), RZ_OK);
    st = e.state;
    index_entry_cleanup(&e);
    return st;
}

/* The counts index_count keeps as entries change equal a full listing's. */
static void assert_counts_match_listing(struct index *idx)
{
    size_t counts[INDEX_NSTATES];
    size_t total = index_count(idx, counts);
    size_t sum = 0;

    for (int st = 0; st < INDEX_NSTATES; st++) {
        struct index_entry *page = calloc(total + 1, sizeof(*page));
        size_t n = 0;
        uint64_t next = 0;

        assert_int_equal(index_list(idx, st, NULL, 0, total + 1, page, &n, &next), RZ_OK);
        assert_int_equal(n, counts[st]);
        for (size_t i = 0; i < n; i++)
            index_entry_cleanup(&page[i]);
        free(page);
        sum += counts[st];
    }
    assert_int_equal(sum, total);
}

/* ---- put / get ---- */

static void test_put_get_by_id_and_key(void **state)
{
    struct index *idx = index_new(16);
    struct index_entry e = {0};
    struct index_entry got = {0};
    char id[INDEX_ID_LEN + 1];

    (void)state;
    assert_non_null(idx);
    make_id(e.id, 1);
    e.state = INDEX_PENDING;
    e.bucket = "src";
    e.key = "images/cat.jpg";
    e.filename = "cat.jpg";
    e.content_type = "image/jpeg";
    e.created_ms = NOW;
    assert_int_equal(index_put(idx, &e), RZ_OK);

    assert_int_equal(index_get(idx, e.id, &got), RZ_OK);
    assert_string_equal(got.id, e.id);
    assert_string_equal(got.key, "images/cat.jpg");
    assert_string_equal(got.filename, "cat.jpg");
    assert_int_equal(got.state, INDEX_PENDING);
    assert_ptr_not_equal(got.key, e.key); /* a deep copy */
    index_entry_cleanup(&got);

    assert_int_equal(index_get_by_key(idx, "src", "images/cat.jpg", &got), RZ_OK);
    assert_string_equal(got.id, e.id);
    index_entry_cleanup(&got);

    /* Same key in another bucket, unknown key, unknown id. */
    assert_int_equal(index_get_by_key(idx, "other", "images/cat.jpg", &got), RZ_ENOTFOUND);
    assert_int_equal(index_get_by_key(idx, "src", "images/dog.jpg", &got), RZ_ENOTFOUND);
    make_id(id, 2);
    assert_int_equal(index_get(idx, id, &got), RZ_ENOTFOUND);

    /* A new record for the same key (a new upload) replaces the old one. */
    make_id(e.id, 3);
    e.state = INDEX_DONE;
    assert_int_equal(index_put(idx, &e), RZ_OK);
    assert_int_equal(index_get_by_key(idx, "src", "images/cat.jpg", &got), RZ_OK);
    assert_string_equal(got.id, e.id);
    assert_int_equal(got.state, INDEX_DONE);
    index_entry_cleanup(&got);
    make_id(id, 1);
    assert_int_equal(index_get(idx, id, &got), RZ_ENOTFOUND);
    {
        size_t counts[INDEX_NSTATES];

        assert_int_equal(index_count(idx, counts), 1);
        assert_int_equal(counts[INDEX_DONE], 1);
    }
    index_free(idx);
    index_free(NULL);
}

static enum rz_err set_failed_fn(struct index_entry *e, void *arg)
{
    e->state = INDEX_FAILED;
    snprintf(e->error_code, sizeof(e->error_code), "%s", (const char *)arg);
    return RZ_OK;
}

static void test_update_and_hostile_strings(void **state)
{
    struct index *idx = index_new(4);
    struct index_entry e = {0};
    struct index_entry got = {0};
    char *huge = malloc(8192);
    char id[INDEX_ID_LEN + 1];

    (void)state;
    assert_int_equal(put_n(idx, 1, INDEX_PROCESSING, NOW, 0), RZ_OK);
    make_id(id, 1);
    assert_int_equal(index_update(idx, id, set_failed_fn, "corrupt_image"), RZ_OK);
    assert_int_equal(index_get(idx, id, &e), RZ_OK);
    assert_int_equal(e.state, INDEX_FAILED);
    assert_string_equal(e.error_code, "corrupt_image");
    index_entry_cleanup(&e);
    make_id(id, 2);
    assert_int_equal(index_update(idx, id, set_failed_fn, "x"), RZ_ENOTFOUND);

    /* A string over the cap is refused, not stored. */
    memset(huge, 'a', 8191);
    huge[8191] = '\0';
    make_id(e.id, 5);
    e.bucket = "src";
    e.key = huge;
    assert_int_equal(index_put(idx, &e), RZ_EINVAL);
    assert_int_equal(index_get(idx, e.id, &got), RZ_ENOTFOUND);
    free(huge);
    index_free(idx);
}

/* ---- claiming events ---- */

struct claim_step {
    const char *etag;
    const char *sequencer;
    enum status_claim want;
    enum index_state want_state; /* after the claim */
    int want_rerun;
};

struct claim_case {
    const char *name;
    int start;        /* -1: no entry; else the state it is put in */
    const char *etag; /* of the entry */
    const char *sequencer;
    struct claim_step steps[3];
    size_t nsteps;
};

static const struct claim_case claim_cases[] = {
    {"new key", -1, NULL, NULL, {{"\"e1\"", "0A", STATUS_CLAIM_NEW, INDEX_QUEUED, 0}}, 1},
    {"pending -> queued",
     INDEX_PENDING,
     NULL,
     NULL,
     {{"\"e1\"", "0A", STATUS_CLAIM_NEW, INDEX_QUEUED, 0}},
     1},
    {"failed -> queued",
     INDEX_FAILED,
     "\"e1\"",
     "0A",
     {{"\"e1\"", "0A", STATUS_CLAIM_NEW, INDEX_QUEUED, 0}},
     1},
    {"queued: duplicate",
     INDEX_QUEUED,
     "\"e1\"",
     "0A",
     {{"\"e1\"", "0A", STATUS_CLAIM_DUPLICATE, INDEX_QUEUED, 0},
      {"\"e2\"", "0B", STATUS_CLAIM_DUPLICATE, INDEX_QUEUED, 0}},
     2},
    {"done, same etag: duplicate",
     INDEX_DONE,
     "\"e1\"",
     NULL,
     {{"\"e1\"", NULL, STATUS_CLAIM_DUPLICATE, INDEX_DONE, 0}},
     1},
    {"done, other etag: requeued",
     INDEX_DONE,
     "\"e1\"",
     NULL,
     {{"\"e2\"", NULL, STATUS_CLAIM_NEW, INDEX_QUEUED, 0}},
     1},
    {"done, newer sequencer: requeued",
     INDEX_DONE,
     "\"e1\"",
     "0A",
     {{"\"e2\"", "0B", STATUS_CLAIM_NEW, INDEX_QUEUED, 0}},
     1},
    {"done, older sequencer: duplicate even with another etag",
     INDEX_DONE,
     "\"e2\"",
     "0B",
     {{"\"e1\"", "0A", STATUS_CLAIM_DUPLICATE, INDEX_DONE, 0}},
     1},
    /* S3: pad the shorter sequencer with zeros on the right, then compare.
     * "0A" vs "0A00" are the same event; "A" is "A0", newer than "0B"
     * although 0xA < 0xB as numbers. */
    {"sequencer padding: equal",
     INDEX_DONE,
     "\"e1\"",
     "0A",
     {{"\"e2\"", "0A00", STATUS_CLAIM_DUPLICATE, INDEX_DONE, 0}},
     1},
    {"sequencer padding: shorter but newer",
     INDEX_DONE,
     "\"e1\"",
     "0B",
     {{"\"e2\"", "A", STATUS_CLAIM_NEW, INDEX_QUEUED, 0}},
     1},
    {"sequencer padding: longer but older",
     INDEX_DONE,
     "\"e1\"",
     "1",
     {{"\"e2\"", "0FFFFFFF", STATUS_CLAIM_DUPLICATE, INDEX_DONE, 0}},
     1},
    {"sequencer case-insensitive",
     INDEX_DONE,
     "\"e1\"",
     "617f08299329d189",
     {{"\"e2\"", "617F08299329D189", STATUS_CLAIM_DUPLICATE, INDEX_DONE, 0}},
     1},
    {"processing, same object: no rerun",
     INDEX_PROCESSING,
     "\"e1\"",
     "0A",
     {{"\"e1\"", "0A", STATUS_CLAIM_DUPLICATE, INDEX_PROCESSING, 0}},
     1},
    {"processing, newer object: rerun",
     INDEX_PROCESSING,
     "\"e1\"",
     "0A",
     {{"\"e2\"", "0B", STATUS_CLAIM_DUPLICATE, INDEX_PROCESSING, 1}},
     1},
    {"processing, older object: no rerun",
     INDEX_PROCESSING,
     "\"e2\"",
     "0B",
     {{"\"e1\"", "0A", STATUS_CLAIM_DUPLICATE, INDEX_PROCESSING, 0}},
     1},
    /* Events arrive out of order: the late old one must not make the
     * redelivered new one look newer than what was processed. */
    {"queued: newer, then the older one late",
     INDEX_QUEUED,
     "\"e1\"",
     "0A",
     {{"\"e2\"", "0B", STATUS_CLAIM_DUPLICATE, INDEX_QUEUED, 0},
      {"\"e1\"", "0A", STATUS_CLAIM_DUPLICATE, INDEX_QUEUED, 0}},
     2},
    {"processing: newer, redelivered",
     INDEX_PROCESSING,
     "\"e1\"",
     "0A",
     {{"\"e2\"", "0B", STATUS_CLAIM_DUPLICATE, INDEX_PROCESSING, 1},
      {"\"e2\"", "0B", STATUS_CLAIM_DUPLICATE, INDEX_PROCESSING, 1}},
     2},
};

static enum rz_err finish_done_fn(struct index_entry *e, void *arg)
{
    (void)arg;
    e->state = INDEX_DONE;
    return RZ_OK;
}

static void run_claim_case(const struct claim_case *c)
{
    struct index *idx = index_new(8);
    struct index_entry e = {0};
    char first_id[INDEX_ID_LEN + 1];
    char new_id[INDEX_ID_LEN + 1];
    char id[INDEX_ID_LEN + 1];
    enum status_claim claim;

    make_id(first_id, 1);
    make_id(new_id, 99);
    if (c->start >= 0) {
        memcpy(e.id, first_id, sizeof(first_id));
        e.state = (enum index_state)c->start;
        e.bucket = "src";
        e.key = "images/a.jpg";
        e.etag = (char *)c->etag;
        e.sequencer = (char *)c->sequencer;
        if (c->start == INDEX_FAILED)
            snprintf(e.error_code, sizeof(e.error_code), "corrupt_image");
        assert_int_equal(index_put(idx, &e), RZ_OK);
    }
    for (size_t i = 0; i < c->nsteps; i++) {
        const struct claim_step *s = &c->steps[i];
        struct index_entry got = {0};

        print_message("  %s, step %zu\n", c->name, i);
        assert_int_equal(test_claim(idx, "src", "images/a.jpg", s->etag, s->sequencer, 10, 0,
                                    new_id, NOW, &claim, id),
                         RZ_OK);
        assert_int_equal(claim, s->want);
        assert_string_equal(id, c->start >= 0 ? first_id : new_id);
        assert_int_equal(index_get(idx, id, &got), RZ_OK);
        assert_int_equal(got.state, s->want_state);
        assert_int_equal(got.rerun, s->want_rerun);
        if (s->want == STATUS_CLAIM_NEW) {
            assert_string_equal(got.error_code, "");
            assert_null(got.error_message);
        }
        index_entry_cleanup(&got);
    }
    /* Whatever the steps did, the object recorded is the newest seen: once
     * processed, redelivering the newest event is a duplicate. */
    if (c->nsteps > 1) {
        assert_int_equal(index_update(idx, id, finish_done_fn, NULL), RZ_OK);
        for (size_t i = 0; i < c->nsteps; i++) {
            assert_int_equal(test_claim(idx, "src", "images/a.jpg", c->steps[i].etag,
                                        c->steps[i].sequencer, 10, 0, new_id, NOW, &claim, id),
                             RZ_OK);
            assert_int_equal(claim, STATUS_CLAIM_DUPLICATE);
        }
    }
    index_free(idx);
}

static void test_claim_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(claim_cases) / sizeof(claim_cases[0]); i++)
        run_claim_case(&claim_cases[i]);
}

static void test_claim_keeps_bucket_apart_and_full(void **state)
{
    struct index *idx = index_new(2);
    char id1[INDEX_ID_LEN + 1], id2[INDEX_ID_LEN + 1], id3[INDEX_ID_LEN + 1];
    char out[INDEX_ID_LEN + 1];
    enum status_claim claim;

    (void)state;
    make_id(id1, 1);
    make_id(id2, 2);
    make_id(id3, 3);
    assert_int_equal(test_claim(idx, "a", "images/x.jpg", "\"1\"", NULL, 1, 0, id1, NOW, &claim,
                                out),
                     RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_NEW);
    assert_int_equal(test_claim(idx, "b", "images/x.jpg", "\"1\"", NULL, 1, 0, id2, NOW, &claim,
                                out),
                     RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_NEW);
    assert_string_equal(out, id2);
    /* Two queued entries fill an index of 2: a third is refused, not evicted. */
    assert_int_equal(test_claim(idx, "c", "images/x.jpg", "\"1\"", NULL, 1, 0, id3, NOW, &claim,
                                out),
                     RZ_EFULL);
    assert_int_equal(state_of(idx, id1), INDEX_QUEUED);
    assert_int_equal(state_of(idx, id2), INDEX_QUEUED);
    index_free(idx);
}

static enum rz_err mark_done(struct index_entry *e, void *arg)
{
    (void)arg;
    e->state = INDEX_DONE;
    return RZ_OK;
}

/* A full queue (room 0) still answers duplicates, and refuses only what
 * would need a new job, changing nothing. */
static void test_claim_without_room(void **state)
{
    struct index *idx = index_new(100);
    char id1[INDEX_ID_LEN + 1], id2[INDEX_ID_LEN + 1];
    char out[INDEX_ID_LEN + 1];
    enum status_claim claim;
    struct status_event ev = {"src", "images/a.jpg", "e1", "0A", 10, 0, NULL, NULL};
    struct status_event newer = {"src", "images/a.jpg", "e2", "0B", 10, 0, NULL, NULL};
    struct status_event other = {"src", "images/b.jpg", "e1", "0A", 10, 0, NULL, NULL};

    (void)state;
    make_id(id1, 1);
    make_id(id2, 2);
    assert_int_equal(test_claim_event(idx, &ev, 0, id1, NOW, &claim, out), RZ_EFULL);
    assert_int_equal(test_claim_event(idx, &ev, 1, id1, NOW, &claim, out), RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_NEW);
    /* Queued: the same event again is a duplicate, room or not. */
    assert_int_equal(test_claim_event(idx, &ev, 0, id2, NOW, &claim, out), RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_DUPLICATE);
    assert_string_equal(out, id1);
    /* Another key needs a job: refused, and not recorded. */
    assert_int_equal(test_claim_event(idx, &other, 0, id2, NOW, &claim, out), RZ_EFULL);
    {
        struct index_entry e = {0};

        assert_int_equal(index_get_by_key(idx, "src", "images/b.jpg", &e), RZ_ENOTFOUND);
    }
    /* Done, then a newer object with no room: refused, the entry stays done. */
    assert_int_equal(index_update(idx, id1, mark_done, NULL), RZ_OK);
    assert_int_equal(test_claim_event(idx, &ev, 0, id2, NOW, &claim, out), RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_DUPLICATE);
    assert_int_equal(test_claim_event(idx, &newer, 0, id2, NOW, &claim, out), RZ_EFULL);
    assert_int_equal(state_of(idx, id1), INDEX_DONE);
    assert_int_equal(test_claim_event(idx, &newer, 1, id2, NOW, &claim, out), RZ_OK);
    assert_int_equal(claim, STATUS_CLAIM_NEW);
    assert_int_equal(state_of(idx, id1), INDEX_QUEUED);
    assert_counts_match_listing(idx);
    index_free(idx);
}

/* ---- listing ---- */

/* Follows next cursors from the start; checks order and returns the ids
 * seen (n in *n_out). */
static void list_all(struct index *idx, int st, size_t limit, char (*ids)[INDEX_ID_LEN + 1],
                     size_t max, size_t *n_out, size_t *pages_out)
{
    struct index_entry *page = calloc(limit, sizeof(*page));
    uint64_t before = 0, next = 0, last_seq = UINT64_MAX;
    size_t n, total = 0, pages = 0;

    assert_non_null(page);
    do {
        assert_int_equal(index_list(idx, st, NULL, before, limit, page, &n, &next), RZ_OK);
        assert_true(n <= limit);
        pages++;
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].seq < last_seq); /* newest first, no repeats */
            last_seq = page[i].seq;
            if (st >= 0)
                assert_int_equal(page[i].state, st);
            assert_true(total < max);
            memcpy(ids[total++], page[i].id, INDEX_ID_LEN + 1);
            index_entry_cleanup(&page[i]);
        }
        if (next)
            assert_int_equal(n, limit); /* never a short page before the end */
        before = next;
    } while (next);
    free(page);
    *n_out = total;
    *pages_out = pages;
}

static void test_list_pages_newest_first(void **state)
{
    struct index *idx = index_new(100);
    char ids[64][INDEX_ID_LEN + 1];
    char want[INDEX_ID_LEN + 1];
    size_t n, pages, ndone = 0;

    (void)state;
    for (unsigned i = 0; i < 23; i++) {
        enum index_state st = i % 3 == 0 ? INDEX_DONE : i % 3 == 1 ? INDEX_FAILED : INDEX_QUEUED;

        assert_int_equal(put_n(idx, i, st, NOW + i, 0), RZ_OK);
    }
    list_all(idx, -1, 7, ids, 64, &n, &pages);
    assert_int_equal(n, 23);
    assert_int_equal(pages, 4);
    for (unsigned i = 0; i < 23; i++) {
        make_id(want, 22 - i);
        assert_string_equal(ids[i], want);
    }
    /* Exactly one page when it fits; no empty page after an exact fit. */
    list_all(idx, -1, 23, ids, 64, &n, &pages);
    assert_int_equal(n, 23);
    assert_int_equal(pages, 1);
    list_all(idx, -1, 200, ids, 64, &n, &pages);
    assert_int_equal(pages, 1);

    /* State filter across pages: the 8 done ones (i % 3 == 0), newest first. */
    list_all(idx, INDEX_DONE, 3, ids, 64, &n, &pages);
    assert_int_equal(n, 8);
    assert_int_equal(pages, 3);
    for (unsigned i = 22; i < 23; i--) {
        if (i % 3 == 0) {
            make_id(want, i);
            assert_string_equal(ids[ndone++], want);
        }
    }
    list_all(idx, INDEX_FAILED, 5, ids, 64, &n, &pages);
    assert_int_equal(n, 8);
    list_all(idx, INDEX_PENDING, 5, ids, 64, &n, &pages);
    assert_int_equal(n, 0);
    assert_int_equal(pages, 1);
    index_free(idx);
}

/* New images arriving while a client pages do not make it see any image
 * twice or skip one it would have seen. */
static void test_list_stable_while_inserting(void **state)
{
    struct index *idx = index_new(1000);
    struct index_entry page[10];
    uint64_t before = 0, next = 0;
    size_t n, total = 0;
    unsigned extra = 1000;
    char seen[50] = {0};

    (void)state;
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(put_n(idx, i, INDEX_DONE, NOW, 0), RZ_OK);
    do {
        assert_int_equal(index_list(idx, -1, NULL, before, 10, page, &n, &next), RZ_OK);
        for (size_t i = 0; i < n; i++) {
            unsigned v = (unsigned)strtoul(page[i].id, NULL, 16);

            assert_true(v < 50); /* nothing newer than the first page shows up */
            assert_int_equal(seen[v], 0);
            seen[v] = 1;
            total++;
            index_entry_cleanup(&page[i]);
        }
        assert_int_equal(put_n(idx, extra++, INDEX_DONE, NOW, 0), RZ_OK);
        before = next;
    } while (next);
    assert_int_equal(total, 50);
    index_free(idx);
}

/* ---- the bound ---- */

#define BOUND_MAX 1000
#define BOUND_N 5000
#define BOUND_INFLIGHT 50 /* each of queued, processing, pending not yet expired */

static enum index_state bound_state(unsigned i)
{
    if (i < BOUND_INFLIGHT)
        return INDEX_QUEUED;
    if (i < 2 * BOUND_INFLIGHT)
        return INDEX_PROCESSING;
    if (i < 3 * BOUND_INFLIGHT)
        return INDEX_PENDING; /* URL still valid */
    if (i % 10 == 9)
        return INDEX_QUEUED; /* a few more in flight later on */
    switch (i % 3) {
    case 0: return INDEX_DONE;
    case 1: return INDEX_FAILED;
    default: return INDEX_PENDING; /* URL expired */
    }
}

static int bound_evictable(unsigned i)
{
    return i >= 3 * BOUND_INFLIGHT && i % 10 != 9;
}

static void test_bound_never_evicts_in_flight(void **state)
{
    struct index *idx = index_new(BOUND_MAX);
    size_t counts[INDEX_NSTATES];
    char id[INDEX_ID_LEN + 1];
    struct index_entry e = {0};
    size_t inflight = 0, present = 0;

    (void)state;
    for (unsigned i = 0; i < BOUND_N; i++) {
        enum index_state st = bound_state(i);
        /* Pending URLs of the first ones are valid for a day, the later
         * ones expired a minute before the insert. */
        int64_t expires = i < 3 * BOUND_INFLIGHT ? NOW + 86400000LL : NOW - 60000;

        assert_int_equal(put_n(idx, i, st, NOW + i, st == INDEX_PENDING ? expires : 0), RZ_OK);
        assert_true(index_count(idx, counts) <= BOUND_MAX);
        if (!bound_evictable(i))
            inflight++;
    }
    assert_int_equal(index_count(idx, counts), BOUND_MAX);
    assert_counts_match_listing(idx);
    /* Every in-flight entry is still there; everything missing was finished. */
    for (unsigned i = 0; i < BOUND_N; i++) {
        make_id(id, i);
        if (index_get(idx, id, &e) == RZ_OK) {
            present++;
            index_entry_cleanup(&e);
        } else {
            assert_true(bound_evictable(i));
        }
    }
    assert_int_equal(present, BOUND_MAX);
    assert_int_equal(counts[INDEX_QUEUED] + counts[INDEX_PROCESSING], inflight - BOUND_INFLIGHT);
    /* The oldest finished ones went first: the newest ones are all kept. */
    for (unsigned i = BOUND_N - 100; i < BOUND_N; i++) {
        make_id(id, i);
        assert_int_equal(state_of(idx, id), bound_state(i));
    }
    index_free(idx);
}

static void test_full_of_in_flight(void **state)
{
    struct index *idx = index_new(10);
    char id[INDEX_ID_LEN + 1];
    size_t counts[INDEX_NSTATES];

    (void)state;
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(put_n(idx, i, i % 2 ? INDEX_QUEUED : INDEX_PROCESSING, NOW, 0), RZ_OK);
    assert_int_equal(put_n(idx, 10, INDEX_DONE, NOW, 0), RZ_EFULL);
    assert_int_equal(index_count(idx, counts), 10);
    /* Replacing an entry already there needs no room. */
    assert_int_equal(put_n(idx, 3, INDEX_QUEUED, NOW, 0), RZ_OK);
    /* Once one finishes there is room again, and it is the one to go. */
    make_id(id, 4);
    assert_int_equal(index_update(idx, id, finish_done_fn, NULL), RZ_OK);
    assert_int_equal(put_n(idx, 11, INDEX_QUEUED, NOW, 0), RZ_OK);
    assert_int_equal(index_get(idx, id, &(struct index_entry){0}), RZ_ENOTFOUND);
    assert_int_equal(index_count(idx, counts), 10);
    index_free(idx);

    /* Upload URLs never block intake: a pending entry makes room for work
     * (its event recreates the entry from the key), an expired one first,
     * else the oldest. */
    idx = index_new(3);
    assert_int_equal(put_n(idx, 1, INDEX_PENDING, NOW, NOW + 9000), RZ_OK);
    assert_int_equal(put_n(idx, 2, INDEX_PENDING, NOW, NOW + 1000), RZ_OK);
    assert_int_equal(put_n(idx, 3, INDEX_QUEUED, NOW, 0), RZ_OK);
    assert_int_equal(put_n(idx, 4, INDEX_QUEUED, NOW + 2000, 0), RZ_OK);
    make_id(id, 2);
    assert_int_equal(index_get(idx, id, &(struct index_entry){0}), RZ_ENOTFOUND);
    assert_int_equal(put_n(idx, 5, INDEX_QUEUED, NOW + 2000, 0), RZ_OK);
    make_id(id, 1);
    assert_int_equal(index_get(idx, id, &(struct index_entry){0}), RZ_ENOTFOUND);
    /* Only work in flight left: full. */
    assert_int_equal(put_n(idx, 6, INDEX_PENDING, NOW + 2000, NOW + 9000), RZ_EFULL);
    index_free(idx);
}

/* ---- JSON ---- */

static void fill_full_entry(struct index_entry *e)
{
    static const char *const names[3] = {"desktop", "tablet", "phone"};
    static const int widths[3] = {1920, 1024, 640};

    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "0f8fad5b-d9cb-469f-a165-70867728950e");
    e->state = INDEX_DONE;
    e->bucket = strdup("manara-image-resize-uploader");
    e->key = strdup("images/cats/\xc3\xa9t\xc3\xa9 \"1\".jpg");
    e->filename = strdup("\xc3\xa9t\xc3\xa9 \"1\".jpg");
    e->content_type = strdup("image/jpeg");
    e->etag = strdup("\"9b2cf535f27731c974343645a3985328\"");
    e->bytes = 5242880000ULL; /* past 32 bits */
    snprintf(e->format, sizeof(e->format), "jpeg");
    e->width = 4000;
    e->height = 3000;
    for (size_t i = 0; i < 3; i++) {
        char key[128];

        snprintf(key, sizeof(key), "%s/cats/\xc3\xa9t\xc3\xa9 \"1\".jpg", names[i]);
        snprintf(e->variants[i].name, sizeof(e->variants[i].name), "%s", names[i]);
        e->variants[i].key = strdup(key);
        e->variants[i].content_type = strdup("image/jpeg");
        e->variants[i].width = widths[i];
        e->variants[i].height = widths[i] * 3 / 4;
        e->variants[i].bytes = 100000 + i;
    }
    e->nvariants = 3;
    e->attempts = 2;
    e->created_ms = NOW + 1;
    e->updated_ms = NOW + 999;
    e->started_ms = NOW + 500;
    e->finished_ms = NOW + 90000;
}

/* Strings that may be NULL (unknown) on both sides. */
static void assert_opt_equal(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_entries_equal(const struct index_entry *a, const struct index_entry *b)
{
    assert_string_equal(a->id, b->id);
    assert_int_equal(a->state, b->state);
    assert_opt_equal(a->bucket, b->bucket);
    assert_opt_equal(a->key, b->key);
    assert_opt_equal(a->filename, b->filename);
    assert_opt_equal(a->content_type, b->content_type);
    assert_opt_equal(a->etag, b->etag);
    assert_int_equal(a->bytes, b->bytes);
    assert_string_equal(a->format, b->format);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->nvariants, b->nvariants);
    for (size_t i = 0; i < a->nvariants; i++) {
        assert_string_equal(a->variants[i].name, b->variants[i].name);
        assert_string_equal(a->variants[i].key, b->variants[i].key);
        assert_string_equal(a->variants[i].content_type, b->variants[i].content_type);
        assert_int_equal(a->variants[i].width, b->variants[i].width);
        assert_int_equal(a->variants[i].height, b->variants[i].height);
        assert_int_equal(a->variants[i].bytes, b->variants[i].bytes);
    }
    assert_string_equal(a->error_code, b->error_code);
    assert_opt_equal(a->error_message, b->error_message);
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->created_ms, b->created_ms);
    assert_int_equal(a->updated_ms, b->updated_ms);
    assert_int_equal(a->started_ms, b->started_ms);
    assert_int_equal(a->finished_ms, b->finished_ms);
}

/* Through text, as a replica reads what another wrote to S3. */
static void round_trip(const struct index_entry *e)
{
    json_t *j = index_entry_to_json(e);
    char *text;
    json_t *back;
    struct index_entry got = {0};

    assert_non_null(j);
    text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(back);
    assert_int_equal(index_entry_from_json(back, &got), RZ_OK);
    assert_entries_equal(e, &got);
    index_entry_cleanup(&got);
    json_decref(back);
    json_decref(j);
    free(text);
}

static void test_json_round_trip(void **state)
{
    struct index_entry e;
    json_t *j;

    (void)state;
    fill_full_entry(&e);
    round_trip(&e);
    /* The API shape: times as RFC 3339 UTC with milliseconds. */
    j = index_entry_to_json(&e);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2023-11-14T22:13:20.001Z");
    assert_string_equal(json_string_value(json_object_get(j, "finished_at")),
                        "2023-11-14T22:14:50.000Z");
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_int_equal(json_array_size(json_object_get(j, "variants")), 3);
    json_decref(j);

    /* A failure, nothing known yet of the image. */
    for (size_t i = 0; i < e.nvariants; i++) {
        free(e.variants[i].key);
        free(e.variants[i].content_type);
    }
    e.nvariants = 0;
    e.state = INDEX_FAILED;
    e.format[0] = '\0';
    e.width = e.height = 0;
    snprintf(e.error_code, sizeof(e.error_code), "corrupt_image");
    e.error_message = strdup("VipsJpeg: premature end of JPEG file");
    e.started_ms = e.finished_ms = 0;
    free(e.filename);
    e.filename = NULL;
    round_trip(&e);
    j = index_entry_to_json(&e);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "corrupt_image");
    assert_true(json_is_null(json_object_get(j, "started_at")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "source"), "filename")));
    json_decref(j);
    index_entry_cleanup(&e);
}

/* Records read back from S3 are outside input: each of these is refused
 * cleanly (no crash, no leak under ASan). */
static void test_json_hostile_records(void **state)
{
    static const char *const bad[] = {
        "[]",
        "{}",
        "{\"id\":\"short\",\"state\":\"done\",\"source\":{},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"melted\",\"source\":{},"
        "\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":[],"
        "\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"key\":7},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":{}}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{},{},{},{},{},{},{},{},{}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"k\"},{\"name\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":[1]}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"failed\",\"source\":"
        "{\"bucket\":\"b\"},\"variants\":[],\"error\":{\"code\":"
        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"failed\",\"source\":"
        "{\"bucket\":\"b\"},\"variants\":[],\"error\":{\"code\":\"x\",\"message\":1}}",
        /* An id of another shape: uppercase, or no dashes. */
        "{\"id\":\"0F8FAD5B-D9CB-469F-A165-70867728950E\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[]}",
        "{\"id\":\"0f8fad5bxd9cbx469fxa165x70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[]}",
        /* A NUL inside a key: the C string would differ from what was checked. */
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"key\":\"images/a\\u0000.jpg\"},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"key\":\"images/a\\n.jpg\"},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"key\":\"\"},\"variants\":[]}",
        /* A variant whose key is not under its name: it would presign another object. */
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"_status/ids/x\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"phonex/a.jpg\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"Phone\",\"key\":\"Phone/a.jpg\"}]}",
        /* A name no VARIANTS item can have: "_status" would presign another record. */
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"_status\",\"key\":\"_status/ids/x\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"-x\",\"key\":\"-x/a.jpg\"}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"phone/a.jpg\"},"
        "{\"name\":\"phone\",\"key\":\"phone/b.jpg\"}]}",
        /* Sizes that no object has. */
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"bytes\":-1},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"bytes\":9007199254740993},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"bytes\":\"5\"},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"phone/a.jpg\",\"bytes\":-3}]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
        "{\"format\":\"jp\\\"g\"},\"variants\":[]}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"failed\",\"source\":{},"
        "\"variants\":[],\"error\":{\"code\":\"Bad Code\"}}",
    };
    struct index_entry e;
    json_t *j;
    char *big;
    size_t len = 10000;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("  record %zu\n", i);
        j = json_loads(bad[i], JSON_ALLOW_NUL, NULL); /* as a lax reader would */
        assert_non_null(j);
        memset(&e, 0x5a, sizeof(e)); /* from_json must not read what was there */
        assert_int_equal(index_entry_from_json(j, &e), RZ_EINVAL);
        assert_null(e.key);
        json_decref(j);
    }
    /* A key far over any S3 key. */
    big = malloc(len + 1);
    memset(big, 'k', len);
    big[len] = '\0';
    j = json_pack("{s:s,s:s,s:{s:s},s:[]}", "id", "0f8fad5b-d9cb-469f-a165-70867728950e",
                  "state", "done", "source", "key", big, "variants");
    assert_int_equal(index_entry_from_json(j, &e), RZ_EINVAL);
    json_decref(j);
    free(big);
    /* Unknown fields and garbage times are ignored, not fatal. */
    j = json_loads("{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\","
                   "\"source\":{\"key\":\"images/a.jpg\",\"width\":-5},\"variants\":[],"
                   "\"created_at\":\"yesterday\",\"extra\":{\"x\":1}}",
                   0, NULL);
    assert_int_equal(index_entry_from_json(j, &e), RZ_OK);
    assert_string_equal(e.key, "images/a.jpg");
    assert_int_equal(e.width, 0);
    assert_int_equal(e.created_ms, 0);
    index_entry_cleanup(&e);
    json_decref(j);
    /* Found by tests/fuzz: a huge fraction overflowed the time (UB), and a
     * time before 1970 was kept though it is written back as null. */
    j = json_loads("{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\","
                   "\"source\":{},\"variants\":[],"
                   "\"created_at\":\"2024-01-01T00:00:00.99999999999999999999Z\","
                   "\"updated_at\":\"1969-12-31T23:59:59.000Z\"}",
                   0, NULL);
    assert_int_equal(index_entry_from_json(j, &e), RZ_OK);
    assert_int_equal(e.created_ms, 0);
    assert_int_equal(e.updated_ms, 0);
    index_entry_cleanup(&e);
    json_decref(j);
}

/* A record read back from S3 must also be about this service's source. */
static void test_record_parse_checks_the_source(void **state)
{
    static const char *const cases[][2] = {
        {"{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
         "{\"bucket\":\"src\",\"key\":\"images/a.jpg\"},\"variants\":[]}",
         "ok"},
        {"{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
         "{\"bucket\":\"other\",\"key\":\"images/a.jpg\"},\"variants\":[]}",
         "bad"},
        {"{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
         "{\"bucket\":\"src\",\"key\":\"private/a.jpg\"},\"variants\":[]}",
         "bad"},
        {"{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"state\":\"done\",\"source\":"
         "{},\"variants\":[]}",
         "bad"},
        {"{\"id\":", "bad"},
    };
    static const char *const filed[][2] = {
        {"_status/keys/a.jpg", "ok"},
        {"_status/keys/b.jpg", "bad"},
        {"_status/ids/0f8fad5b-d9cb-469f-a165-70867728950f", "bad"},
    };
    struct index_entry e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum rz_err err = index_record_parse(cases[i][0], strlen(cases[i][0]),
                                             "_status/ids/0f8fad5b-d9cb-469f-a165-70867728950e",
                                             "src", "images/", &e);

        print_message("  record %zu\n", i);
        if (strcmp(cases[i][1], "ok") == 0) {
            assert_int_equal(err, RZ_OK);
            assert_string_equal(e.key, "images/a.jpg");
        } else {
            assert_int_equal(err, RZ_EINVAL);
            assert_null(e.key);
        }
        index_entry_cleanup(&e);
    }
    /* Filed where it was found: by its source key, or by its own id. */
    for (size_t i = 0; i < sizeof(filed) / sizeof(filed[0]); i++) {
        enum rz_err err = index_record_parse(cases[0][0], strlen(cases[0][0]), filed[i][0],
                                             "src", "images/", &e);

        assert_int_equal(err, strcmp(filed[i][1], "ok") == 0 ? RZ_OK : RZ_EINVAL);
        index_entry_cleanup(&e);
    }
}

/* ---- threads ---- */

#define THREAD_ITERS 3000
#define THREAD_MAX 300

struct thread_arg {
    struct index *idx;
    unsigned seed;
    int writer;
};

static enum rz_err bump_fn(struct index_entry *e, void *arg)
{
    (void)arg;
    e->attempts++;
    if (e->state == INDEX_QUEUED)
        e->state = INDEX_DONE;
    return RZ_OK;
}

static void thread_write(struct thread_arg *a, unsigned i)
{
    unsigned n = (a->seed * 7919u + i) % 2000;
    char key[64], id[INDEX_ID_LEN + 1], out[INDEX_ID_LEN + 1], etag[16];
    enum status_claim claim;
    enum rz_err err;

    make_key(key, sizeof(key), n);
    make_id(id, a->seed * 100000u + i);
    snprintf(etag, sizeof(etag), "\"%u\"", i % 3);
    if (i % 3 == 0) {
        err = put_n(a->idx, a->seed * 100000u + i, INDEX_DONE, NOW + i, 0);
    } else {
        err = test_claim(a->idx, "src", key, etag, NULL, 1, 0, id, NOW + i, &claim, out);
        if (err == RZ_OK)
            err = index_update(a->idx, out, bump_fn, NULL);
        if (err == RZ_ENOTFOUND)
            err = RZ_OK; /* evicted meanwhile by another writer: fine */
    }
    assert_true(err == RZ_OK || err == RZ_EFULL);
}

static void thread_read(struct thread_arg *a, unsigned i)
{
    struct index_entry page[20];
    struct index_entry e = {0};
    size_t counts[INDEX_NSTATES], n;
    uint64_t next;
    char key[64];

    make_key(key, sizeof(key), (a->seed + i) % 2000);
    if (index_get_by_key(a->idx, "src", key, &e) == RZ_OK) {
        assert_string_equal(e.key, key);
        index_entry_cleanup(&e);
    }
    assert_int_equal(index_list(a->idx, i % 2 ? INDEX_DONE : -1, NULL, 0, 20, page, &n, &next),
                     RZ_OK);
    for (size_t k = 0; k < n; k++)
        index_entry_cleanup(&page[k]);
    assert_true(index_count(a->idx, counts) <= THREAD_MAX);
}

static void *thread_main(void *p)
{
    struct thread_arg *a = p;

    for (unsigned i = 0; i < THREAD_ITERS; i++) {
        if (a->writer)
            thread_write(a, i);
        else
            thread_read(a, i);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct index *idx = index_new(THREAD_MAX);
    pthread_t t[6];
    struct thread_arg args[6];
    size_t counts[INDEX_NSTATES];

    (void)state;
    for (unsigned i = 0; i < 6; i++) {
        args[i] = (struct thread_arg){idx, i + 1, i < 3};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &args[i]), 0);
    }
    for (unsigned i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_true(index_count(idx, counts) <= THREAD_MAX);
    assert_counts_match_listing(idx);
    index_free(idx);
}

/* ---- memory ---- */

#define MEM_ENTRIES 100000

static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd; /* hblkhd: big blocks (the hash tables) are mmapped */
#endif
}

/* A typical done record: an API upload with three JPEG variants. */
static enum rz_err put_typical(struct index *idx, unsigned n)
{
    static const char *const names[3] = {"desktop", "tablet", "phone"};
    struct index_entry e = {0};
    char key[64], vkeys[3][64];

    make_id(e.id, n);
    snprintf(key, sizeof(key), "images/%s.jpg", e.id);
    e.state = INDEX_DONE;
    e.bucket = "manara-image-resize-uploader";
    e.key = key;
    e.filename = "IMG_20240101_120000.jpg";
    e.content_type = "image/jpeg";
    e.etag = "\"9b2cf535f27731c974343645a3985328\"";
    e.sequencer = "00617F08299329D189";
    e.bytes = 3000000;
    snprintf(e.format, sizeof(e.format), "jpeg");
    e.width = 4000;
    e.height = 3000;
    for (size_t i = 0; i < 3; i++) {
        snprintf(vkeys[i], sizeof(vkeys[i]), "%s/%s.jpg", names[i], e.id);
        snprintf(e.variants[i].name, sizeof(e.variants[i].name), "%s", names[i]);
        e.variants[i].key = vkeys[i];
        e.variants[i].content_type = "image/jpeg";
        e.variants[i].width = 640;
        e.variants[i].height = 480;
    }
    e.nvariants = 3;
    e.created_ms = e.updated_ms = NOW + n;
    return index_put(idx, &e);
}

static void test_memory_per_entry(void **state)
{
    size_t before, after;
    double per;
    struct index *idx;

    (void)state;
    before = heap_in_use();
    idx = index_new(MEM_ENTRIES);
    assert_non_null(idx);
    for (unsigned i = 0; i < MEM_ENTRIES; i++)
        assert_int_equal(put_typical(idx, i), RZ_OK);
    after = heap_in_use();
    per = (double)(after - before) / MEM_ENTRIES;
    print_message("index memory: %.0f bytes per status record (%zu records: %.1f MB)%s\n", per,
                  (size_t)MEM_ENTRIES, (double)(after - before) / 1e6,
#if defined(__SANITIZE_ADDRESS__)
                  " [ASan: bytes requested, without malloc overhead]"
#else
                  ""
#endif
    );
    /* The struct alone is about 700 bytes; a record several times that
     * would make INDEX_MAX_ENTRIES' default cost far more than documented. */
    assert_true(per > 500);
    assert_true(per < 2048);
    index_free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_by_id_and_key),
        cmocka_unit_test(test_update_and_hostile_strings),
        cmocka_unit_test(test_claim_table),
        cmocka_unit_test(test_claim_keeps_bucket_apart_and_full),
        cmocka_unit_test(test_claim_without_room),
        cmocka_unit_test(test_list_pages_newest_first),
        cmocka_unit_test(test_list_stable_while_inserting),
        cmocka_unit_test(test_bound_never_evicts_in_flight),
        cmocka_unit_test(test_full_of_in_flight),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_record_parse_checks_the_source),
        cmocka_unit_test(test_json_hostile_records),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_memory_per_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
