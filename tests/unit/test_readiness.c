/* test_readiness.c - what /readyz decides from, over the fake object store:
 * any answer from S3 (403 and 404 included) means reachable, a 5xx or a
 * dead network does not, the probe is a one-key listing of the source
 * prefix or a HEAD in the destination without a source bucket, S3's own
 * words never reach the public reason, and readiness comes back with S3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "objstore_fake.h"
#include "server/readiness.h"

struct probe_case {
    const char *name;
    const char *src_bucket; /* NULL: HEAD in the destination */
    enum rz_err answer;     /* of the probe call */
    int ready;
};

static const struct probe_case probe_cases[] = {
    {"listing answers", "src", RZ_OK, 1},
    {"listing 404 (no such bucket yet)", "src", RZ_ENOTFOUND, 1},
    {"listing 403", "src", RZ_EDENIED, 1},
    {"listing 400", "src", RZ_EINVAL, 1},
    {"listing 503", "src", RZ_EUPSTREAM, 0},
    {"HEAD answers 404", NULL, RZ_OK, 1},
    {"HEAD 403", NULL, RZ_EDENIED, 1},
    {"HEAD 503", NULL, RZ_EUPSTREAM, 0},
};

static void test_what_counts_as_reachable(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(probe_cases) / sizeof(probe_cases[0]); i++) {
        const struct probe_case *c = &probe_cases[i];
        struct objstore *os = fake_objstore_new();
        struct readiness_opts o = {os, c->src_bucket, "images/", "dest", 60000, 6000, NULL};
        const char *op = c->src_bucket ? "list" : "head";
        struct readiness *h = NULL;
        char why[64] = "";

        print_message("case: %s\n", c->name);
        if (c->answer != RZ_OK)
            fake_objstore_fail(os, &(struct fake_fault){op, NULL, 1, 0, c->answer, 0});
        assert_int_equal(readiness_new(&o, &h), RZ_OK);
        assert_int_equal(fake_objstore_calls(os, op), 1);
        assert_int_equal(fake_objstore_calls(os, NULL), 1);
        assert_int_equal(readiness_s3_ok(h, why, sizeof(why)), c->ready);
        /* The fake's message names the key; the public reason never does. */
        assert_string_equal(why, c->ready ? "" : "s3 unreachable");
        assert_false(readiness_draining(h));
        readiness_set_draining(h);
        assert_true(readiness_draining(h));
        readiness_free(h);
        objstore_free(os);
    }
}

/* S3 down at start, back at the third probe: ready again without a restart. */
static void test_ready_again_when_s3_is_back(void **state)
{
    struct objstore *os = fake_objstore_new();
    struct readiness_opts o = {os, "src", "images/", "dest", 20, 6000, NULL};
    struct readiness *h = NULL;
    char why[64] = "";
    int ok = 0;

    (void)state;
    fake_objstore_fail(os, &(struct fake_fault){"list", NULL, 1, 2, RZ_EUPSTREAM, 0});
    assert_int_equal(readiness_new(&o, &h), RZ_OK);
    assert_false(readiness_s3_ok(h, why, sizeof(why)));
    for (int i = 0; i < 200 && !ok; i++) {
        usleep(5000);
        ok = readiness_s3_ok(h, why, sizeof(why));
    }
    assert_true(ok);
    assert_true(fake_objstore_calls(os, "list") >= 3);
    readiness_free(h);
    objstore_free(os);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_counts_as_reachable),
        cmocka_unit_test(test_ready_again_when_s3_is_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
