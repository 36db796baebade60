/* test_s3_list.c - the ListObjectsV2 parser against what a faulty or
 * hostile S3 could send: empty keys, bad escapes, truncated pages whose
 * continuation token is missing, empty or the one that asked for them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/s3_list.h"

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>"
#define ITEM(k) "<Contents><Key>" k "</Key><Size>5</Size><ETag>&quot;e&quot;</ETag></Contents>"
#define TAIL "</ListBucketResult>"

static enum rz_err parse(const char *xml, const char *prev, struct s3_list *out)
{
    memset(out, 0, sizeof(*out));
    /* An exact-size heap copy: ASan sees any read past the end. */
    size_t len = strlen(xml);
    char *copy = malloc(len ? len : 1);
    enum rz_err err;

    assert_non_null(copy);
    memcpy(copy, xml, len);
    err = s3_list_parse(copy, len, prev, out);
    free(copy);
    return err;
}

static void test_page(void **state)
{
    struct s3_list l;

    (void)state;
    assert_int_equal(
        parse(HEAD ITEM("images/a%20b.jpg") ITEM(
                  "images/c+d.jpg") "<IsTruncated>true</IsTruncated>"
                                    "<NextContinuationToken>t2</NextContinuationToken>" TAIL,
              "t1", &l),
        RZ_OK);
    assert_int_equal(l.nitems, 2);
    assert_string_equal(l.items[0].key, "images/a b.jpg");
    assert_string_equal(l.items[1].key, "images/c d.jpg");
    assert_string_equal(l.items[0].etag, "e");
    assert_int_equal(l.items[0].size, 5);
    assert_string_equal(l.next_token, "t2");
    s3_list_cleanup(&l);
}

static void test_empty_keys_are_skipped(void **state)
{
    struct s3_list l;

    (void)state;
    assert_int_equal(parse(HEAD ITEM("") ITEM("images/a.jpg")
                               ITEM("") "<IsTruncated>false</IsTruncated>" TAIL,
                           NULL, &l),
                     RZ_OK);
    assert_int_equal(l.nitems, 1);
    assert_string_equal(l.items[0].key, "images/a.jpg");
    assert_null(l.next_token);
    s3_list_cleanup(&l);
    /* Only empty keys: an empty page, not an error. */
    assert_int_equal(parse(HEAD ITEM("") TAIL, NULL, &l), RZ_OK);
    assert_int_equal(l.nitems, 0);
    s3_list_cleanup(&l);
}

static void test_repeated_or_bad_tokens_refused(void **state)
{
    static const char *const pages[] = {
        /* The token that asked for this page: the sweep would loop. */
        HEAD ITEM("images/a.jpg") "<IsTruncated>true</IsTruncated>"
                                  "<NextContinuationToken>same</NextContinuationToken>" TAIL,
        /* Truncated with an empty token, or none. */
        HEAD
        "<IsTruncated>true</IsTruncated><NextContinuationToken></NextContinuationToken>" TAIL,
        HEAD ITEM("images/a.jpg") "<IsTruncated>true</IsTruncated>" TAIL,
    };
    struct s3_list l;

    (void)state;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        assert_int_equal(parse(pages[i], "same", &l), RZ_EINVAL);
        s3_list_cleanup(&l);
    }
}

static void test_malformed_items(void **state)
{
    static const char *const pages[] = {
        HEAD ITEM("images/%") TAIL, /* escape cut at the end of the key */
        HEAD ITEM("images/%4") TAIL,
        HEAD ITEM("images/%zz") TAIL,
        HEAD ITEM("images/%00x") TAIL,                            /* a NUL inside the key */
        HEAD "<Contents><Key>images/a.jpg</Key></Contents>" TAIL, /* no Size */
    };
    struct s3_list l;

    (void)state;
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        assert_int_equal(parse(pages[i], NULL, &l), RZ_EINVAL);
        s3_list_cleanup(&l);
    }
}

/* Cut anywhere, a page never makes the parser read past its end. */
static void test_every_truncation(void **state)
{
    static const char page[] = HEAD ITEM("images/&amp;%41.jpg") ITEM(
        "") "<IsTruncated>true</IsTruncated><NextContinuationToken>t&lt;</NextContinuationToken>" TAIL;
    struct s3_list l;

    (void)state;
    for (size_t n = 0; n <= sizeof(page) - 1; n++) {
        char *copy = malloc(n ? n : 1);

        memcpy(copy, page, n);
        memset(&l, 0, sizeof(l));
        (void)s3_list_parse(copy, n, NULL, &l);
        s3_list_cleanup(&l);
        free(copy);
    }
    assert_int_equal(parse(page, NULL, &l), RZ_OK);
    assert_int_equal(l.nitems, 1);
    assert_string_equal(l.items[0].key, "images/&A.jpg");
    assert_string_equal(l.next_token, "t<");
    s3_list_cleanup(&l);
}

/* What the sweep reads from an item: size, unquoted ETag, the time it was
 * last written (0 when absent or unreadable); an over-long key is skipped. */
static void test_item_fields(void **state)
{
    char page[4096];
    char longkey[1100];
    struct s3_list l;

    (void)state;
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    snprintf(page, sizeof(page),
             HEAD "<Contents><Key>a</Key><LastModified>2026-11-26T15:44:36.000Z</LastModified>"
                  "<ETag>&quot;9b2c&quot;</ETag><Size>18446744073709551615</Size></Contents>"
                  "<Contents><Key>b</Key><LastModified>yesterday</LastModified><Size>0</Size>"
                  "</Contents><Contents><Key>%s</Key><Size>1</Size></Contents>" TAIL,
             longkey);
    assert_int_equal(parse(page, NULL, &l), RZ_OK);
    assert_int_equal(l.nitems, 2);
    assert_int_equal(l.items[0].last_modified, 1795707876);
    assert_string_equal(l.items[0].etag, "9b2c");
    assert_true(l.items[0].size == UINT64_MAX);
    assert_int_equal(l.items[1].last_modified, 0);
    assert_null(l.items[1].etag);
    s3_list_cleanup(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_empty_keys_are_skipped),
        cmocka_unit_test(test_repeated_or_bad_tokens_refused),
        cmocka_unit_test(test_malformed_items),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_item_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
