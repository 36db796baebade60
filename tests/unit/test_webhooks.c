/* test_webhooks.c - the Standard Webhooks signature against the
 * specification's published vector, rotation, the secrets and URLs refused
 * at start, how answers are classified, the retry schedule, the message
 * body (no presigned URLs) and its id, and the memory outbox's bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/outbox.h"
#include "server/webhooks.h"
#include "server/webhooks_internal.h"

/* standardwebhooks.com specification, "Signature scheme" example. */
#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS 1614265330
#define SPEC_BODY "{\"test\": 2432232314}"
#define SPEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* Another 32-byte secret, for rotation. */
#define OTHER_SECRET "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="

static void sign_with(const char *secrets, char out[WEBHOOKS_SIGNATURE_MAX])
{
    struct webhooks_key keys[WEBHOOKS_MAX_SECRETS];
    size_t n = 0;
    char msg[256];

    assert_int_equal(webhooks_parse_secrets(secrets, keys, &n, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(webhooks_sign(keys, n, SPEC_ID, SPEC_TS, SPEC_BODY, strlen(SPEC_BODY), out),
                     RZ_OK);
}

static void test_signature_matches_spec_vector(void **state)
{
    char sig[WEBHOOKS_SIGNATURE_MAX];

    (void)state;
    sign_with(SPEC_SECRET, sig);
    assert_string_equal(sig, SPEC_SIG);
}

static void test_rotation_signs_with_both(void **state)
{
    char one[WEBHOOKS_SIGNATURE_MAX];
    char other[WEBHOOKS_SIGNATURE_MAX];
    char both[WEBHOOKS_SIGNATURE_MAX];
    char want[2 * WEBHOOKS_SIGNATURE_MAX];

    (void)state;
    sign_with(OTHER_SECRET, other);
    assert_string_not_equal(other, SPEC_SIG);
    sign_with(SPEC_SECRET " " OTHER_SECRET, both);
    snprintf(want, sizeof(want), "%s %s", SPEC_SIG, other);
    assert_string_equal(both, want);
    sign_with(SPEC_SECRET "," OTHER_SECRET, one);
    assert_string_equal(one, want);
}

static void test_bad_secrets_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",           /* no prefix */
        "whsec_",                                     /* nothing after it */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!",     /* not base64 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",      /* not a whole quantum */
        "whsec_c2hvcnQ=",                             /* 5 bytes: too short */
        SPEC_SECRET " " OTHER_SECRET " " SPEC_SECRET, /* three */
        "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDVBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWjAx"
        "MjM0NTY3ODk=", /* 65 bytes: too long */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[256] = "";

        assert_int_equal(webhooks_check_secrets(bad[i], msg, sizeof(msg)), RZ_EINVAL);
        assert_non_null(strstr(msg, "WEBHOOK_SECRET"));
        /* The message never echoes the secret. */
        if (strlen(bad[i]) > 12)
            assert_null(strstr(msg, bad[i] + 6));
    }
    assert_int_equal(webhooks_check_secrets(SPEC_SECRET, (char[64]){0}, 64), RZ_OK);
    assert_int_equal(webhooks_check_secrets(" " SPEC_SECRET "  " OTHER_SECRET " ", (char[64]){0},
                                            64),
                     RZ_OK);
}

static void test_urls(void **state)
{
    static const char *const good[] = {
        "https://hooks.example.com/resizer",
        "https://hooks.example.com:8443/a?token=abc",
        "http://127.0.0.1:9000/hook",
        "http://127.1.2.3/",
        "http://localhost:8000",
        "http://[::1]:8000/x",
        "https://a.example/x, https://b.example/y",
    };
    static const char *const bad[] = {
        "",
        ",",
        "ftp://example.com/",
        "hooks.example.com/x",
        "http://example.com/hook", /* plain http off the machine */
        "http://10.0.0.1/hook",
        "http://127.0.0.1.example.com/", /* looks local, is not */
        "https://user:pw@example.com/",
        "https://example.com/#frag",
        "https://exa mple.com/",
        "https:///path",
        "https://example.com:0/",
        "https://example.com:99999/",
        "https://example.com:80x/",
        "https://[::1/",
        "https://a/,https://b/,https://c/,https://d/,https://e/,https://f/,https://g/,"
        "https://h/,https://i/",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char msg[256] = "";

        if (webhooks_check_urls(good[i], msg, sizeof(msg)) != RZ_OK)
            fail_msg("%s refused: %s", good[i], msg);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[256] = "";

        if (webhooks_check_urls(bad[i], msg, sizeof(msg)) != RZ_EINVAL)
            fail_msg("%s accepted", bad[i]);
        assert_non_null(strstr(msg, "WEBHOOK_URLS"));
    }
}

static void test_classify(void **state)
{
    static const struct {
        long status;
        enum webhooks_verdict want;
    } cases[] = {
        {200, WEBHOOKS_DELIVERED}, {204, WEBHOOKS_DELIVERED}, {299, WEBHOOKS_DELIVERED},
        {0, WEBHOOKS_RETRY},       {101, WEBHOOKS_RETRY},     {301, WEBHOOKS_RETRY},
        {302, WEBHOOKS_RETRY},     {408, WEBHOOKS_RETRY},     {429, WEBHOOKS_RETRY},
        {500, WEBHOOKS_RETRY},     {503, WEBHOOKS_RETRY},     {400, WEBHOOKS_FINAL},
        {401, WEBHOOKS_FINAL},     {404, WEBHOOKS_FINAL},     {410, WEBHOOKS_FINAL},
        {413, WEBHOOKS_FINAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (webhooks_classify(cases[i].status) != cases[i].want)
            fail_msg("status %ld", cases[i].status);
    }
}

static void test_retry_schedule(void **state)
{
    /* 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h at the production base. */
    static const int64_t want_s[] = {5, 300, 1800, 7200, 18000, 36000, 36000};

    (void)state;
    for (int k = 1; k <= 7; k++) {
        int64_t mid = webhooks_retry_delay_ms(5000, k, 0.5);

        assert_int_equal(mid, want_s[k - 1] * 1000);
        assert_int_equal(webhooks_retry_delay_ms(5000, k, 0.0), want_s[k - 1] * 800);
        assert_true(webhooks_retry_delay_ms(5000, k, 0.999999) < want_s[k - 1] * 1200);
        assert_true(webhooks_retry_delay_ms(5000, k, 0.999999) > want_s[k - 1] * 1199);
    }
    /* Scaled down for tests, same shape. */
    assert_int_equal(webhooks_retry_delay_ms(10, 2, 0.5), 600);
}

static void fill_entry(struct index_entry *e, enum index_state state)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", "0b5e3c9a-8d1f-4f7e-9a52-3f1d2c4b5a69");
    e->state = state;
    e->bucket = strdup("src");
    e->key = strdup("images/0b5e3c9a-8d1f-4f7e-9a52-3f1d2c4b5a69.jpg");
    e->etag = strdup("9b2cf535f27731c974343645a3985328");
    e->attempts = 1;
    e->finished_ms = 1614265330123LL;
    if (state == INDEX_DONE) {
        snprintf(e->variants[0].name, sizeof(e->variants[0].name), "phone");
        e->variants[0].key = strdup("phone/0b5e3c9a-8d1f-4f7e-9a52-3f1d2c4b5a69.jpg");
        e->variants[0].content_type = strdup("image/jpeg");
        e->variants[0].width = 640;
        e->variants[0].height = 480;
        e->variants[0].bytes = 51234;
        e->nvariants = 1;
    } else {
        snprintf(e->error_code, sizeof(e->error_code), "unsupported_format");
        e->error_message = strdup("not an image");
    }
}

static void test_body_is_the_record_without_urls(void **state)
{
    struct index_entry e;
    const char *type = NULL;
    char *text;
    json_t *j;
    json_t *v;

    (void)state;
    fill_entry(&e, INDEX_DONE);
    text = webhooks_body(&e, &type);
    assert_non_null(text);
    assert_string_equal(type, "image.done");
    j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 3);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "image.done");
    assert_string_equal(json_string_value(json_object_get(j, "timestamp")),
                        "2021-02-25T15:02:10.123Z");
    v = json_array_get(json_object_get(json_object_get(j, "data"), "variants"), 0);
    assert_string_equal(json_string_value(json_object_get(v, "key")),
                        "phone/0b5e3c9a-8d1f-4f7e-9a52-3f1d2c4b5a69.jpg");
    assert_int_equal(json_integer_value(json_object_get(v, "bytes")), 51234);
    assert_null(json_object_get(v, "url"));
    assert_null(strstr(text, "X-Amz-Signature"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "data"), "id")),
                        e.id);
    json_decref(j);
    free(text);
    index_entry_cleanup(&e);

    fill_entry(&e, INDEX_FAILED);
    text = webhooks_body(&e, &type);
    assert_string_equal(type, "image.failed");
    assert_non_null(strstr(text, "\"code\":\"unsupported_format\""));
    free(text);
    e.state = INDEX_PROCESSING;
    assert_null(webhooks_body(&e, &type));
    index_entry_cleanup(&e);
}

static void test_msg_id_stable_per_outcome(void **state)
{
    struct index_entry e;
    char a[OUTBOX_MSG_ID_MAX];
    char b[OUTBOX_MSG_ID_MAX];

    (void)state;
    fill_entry(&e, INDEX_DONE);
    webhooks_msg_id(&e, "image.done", a);
    webhooks_msg_id(&e, "image.done", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 36);
    assert_memory_equal(a, "msg_", 4);
    e.attempts = 2; /* processed again: a new message */
    webhooks_msg_id(&e, "image.done", b);
    assert_string_not_equal(a, b);
    e.attempts = 1;
    webhooks_msg_id(&e, "image.failed", b);
    assert_string_not_equal(a, b);
    index_entry_cleanup(&e);
}

static void add_one(struct outbox *o, const char *id, int64_t due, size_t *dropped)
{
    struct outbox_delivery d = {0};

    snprintf(d.msg_id, sizeof(d.msg_id), "%s", id);
    d.body = (char *)"{}";
    d.body_len = 2;
    d.due_ms = d.created_ms = due;
    assert_int_equal(o->ops->add(o, &d, dropped), RZ_OK);
}

static void test_outbox_drops_oldest_and_leases(void **state)
{
    struct outbox *o = outbox_memory_new(2);
    struct outbox_delivery d;
    struct outbox_delivery held;
    int64_t next;
    size_t dropped;

    (void)state;
    add_one(o, "a", 100, &dropped);
    add_one(o, "b", 50, &dropped);
    assert_int_equal(dropped, 0);
    /* Nothing due at 10; b is next. */
    assert_int_equal(o->ops->lease(o, 10, 0, &d, &next), RZ_ENOTFOUND);
    assert_int_equal(next, 50);
    assert_int_equal(o->ops->lease(o, 60, 0, &held, &next), RZ_OK);
    assert_string_equal(held.msg_id, "b");
    /* Full: the oldest one not leased (a) goes, not the leased b. */
    add_one(o, "c", 70, &dropped);
    assert_int_equal(dropped, 1);
    assert_int_equal(o->ops->depth(o), 2);
    assert_int_equal(o->ops->lease(o, 1000, 0, &d, &next), RZ_OK);
    assert_string_equal(d.msg_id, "c");
    /* Both leased: a new one is refused. */
    {
        struct outbox_delivery e = {0};

        snprintf(e.msg_id, sizeof(e.msg_id), "d");
        e.body = (char *)"{}";
        e.body_len = 2;
        assert_int_equal(o->ops->add(o, &e, &dropped), RZ_EFULL);
    }
    /* A retry keeps it with its new attempt count and due time. */
    held.attempts = 3;
    o->ops->settle(o, &held, 5000);
    o->ops->settle(o, &d, -1);
    outbox_delivery_cleanup(&d);
    assert_int_equal(o->ops->depth(o), 1);
    assert_int_equal(o->ops->lease(o, 4999, 0, &d, &next), RZ_ENOTFOUND);
    assert_int_equal(next, 5000);
    assert_int_equal(o->ops->lease(o, 5000, 0, &d, &next), RZ_OK);
    assert_int_equal(d.attempts, 3);
    assert_string_equal(d.body, "{}");
    outbox_delivery_cleanup(&d);
    outbox_delivery_cleanup(&held);
    o->ops->free(o);
}

static void test_outbox_skips_full_endpoints(void **state)
{
    struct outbox *o = outbox_memory_new(8);
    struct outbox_delivery d = {0};
    struct outbox_delivery got;
    int64_t next;
    size_t dropped;

    (void)state;
    d.body = (char *)"{}";
    d.body_len = 2;
    snprintf(d.msg_id, sizeof(d.msg_id), "to-0");
    d.due_ms = 10;
    assert_int_equal(o->ops->add(o, &d, &dropped), RZ_OK);
    snprintf(d.msg_id, sizeof(d.msg_id), "to-1");
    d.endpoint = 1;
    d.due_ms = 20;
    assert_int_equal(o->ops->add(o, &d, &dropped), RZ_OK);
    /* Endpoint 0 is at its limit: endpoint 1's later delivery is handed out. */
    assert_int_equal(o->ops->lease(o, 100, 1u << 0, &got, &next), RZ_OK);
    assert_string_equal(got.msg_id, "to-1");
    outbox_delivery_cleanup(&got);
    /* Only endpoint 0's is left, and it is skipped: nothing is due. */
    assert_int_equal(o->ops->lease(o, 100, 1u << 0, &got, &next), RZ_ENOTFOUND);
    assert_int_equal(next, INT64_MAX);
    assert_int_equal(o->ops->lease(o, 100, 0, &got, &next), RZ_OK);
    assert_string_equal(got.msg_id, "to-0");
    outbox_delivery_cleanup(&got);
    o->ops->free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_matches_spec_vector),
        cmocka_unit_test(test_rotation_signs_with_both),
        cmocka_unit_test(test_bad_secrets_refused),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_retry_schedule),
        cmocka_unit_test(test_body_is_the_record_without_urls),
        cmocka_unit_test(test_msg_id_stable_per_outcome),
        cmocka_unit_test(test_outbox_drops_oldest_and_leases),
        cmocka_unit_test(test_outbox_skips_full_endpoints),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
