/* test_text.c - the shared string helpers: optional copies, percent
 * decoding (S3 event keys, url-encoded listings), ETag quotes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/text.h"

static void test_dup(void **state)
{
    char *out = (char *)1;
    const char *src = "images/a.jpg";

    (void)state;
    assert_int_equal(text_dup(NULL, &out), RZ_OK);
    assert_null(out);
    assert_int_equal(text_dup(src, &out), RZ_OK);
    assert_string_equal(out, src);
    assert_ptr_not_equal(out, src);
    free(out);
    assert_int_equal(text_dup("", &out), RZ_OK);
    assert_string_equal(out, "");
    free(out);
}

static void test_url_decode(void **state)
{
    static const struct {
        const char *in;
        int form;
        const char *out;
    } cases[] = {
        {"images/a+b%2Bc.jpg", 1, "images/a b+c.jpg"},
        {"images/a+b%2Bc.jpg", 0, "images/a+b+c.jpg"},
        {"images%2Fx%2f", 1, "images/x/"},
        {"caf%C3%A9", 1, "caf\xc3\xa9"},
        {"%41", 1, "A"},
        {"", 1, ""},
        {"plain", 1, "plain"},
        {"%", 1, NULL},
        {"%4", 1, NULL},
        {"a%g1", 1, NULL},
        {"a%1g", 1, NULL},
        {"a%00b", 1, NULL},
        {"%%41", 1, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = text_url_decode(cases[i].in, cases[i].form);

        if (cases[i].out) {
            assert_non_null(got);
            assert_string_equal(got, cases[i].out);
        } else if (got) {
            fail_msg("\"%s\" decoded to \"%s\", want an error", cases[i].in, got);
        }
        free(got);
    }
    assert_null(text_url_decode(NULL, 1));
}

static void test_unquote(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"\"9b2cf535f27731c974343645a3985328\"", "9b2cf535f27731c974343645a3985328"},
        {"9b2cf535f27731c974343645a3985328", "9b2cf535f27731c974343645a3985328"},
        {"\"\"", ""},
        {"\"", "\""},
        {"\"abc", "\"abc"},
        {"abc\"", "abc\""},
        {"\"\"x\"\"", "\"x\""}, /* one pair only */
        {"W/\"abc\"", "W/\"abc\""},
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);
        const char *s = text_unquote(cases[i].in, &len);

        assert_int_equal(len, strlen(cases[i].out));
        assert_memory_equal(s, cases[i].out, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dup),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_unquote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
