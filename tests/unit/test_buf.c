/* test_buf.c - the growable buffer keeps its cap and its NUL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/buf.h"

static void test_append_and_terminate(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 100);
    assert_int_equal(buf_appends(&b, "abc"), RZ_OK);
    assert_int_equal(buf_printf(&b, "-%d-", 42), RZ_OK);
    assert_string_equal(b.data, "abc-42-");
    assert_int_equal(b.len, 7);
    buf_cleanup(&b);
}

static void test_cap_is_hard(void **state)
{
    struct buf b;
    char big[200];

    (void)state;
    memset(big, 'x', sizeof(big));
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, big, 10), RZ_OK);
    assert_int_equal(buf_append(&b, big, 1), RZ_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_int_equal(buf_printf(&b, "%s", "y"), RZ_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, big, 10);
    assert_int_equal(b.data[10], '\0');
    buf_cleanup(&b);
}

/* Formatting into spare room, past it, and up to the cap exactly. */
static void test_printf_fills_and_grows(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 20);
    assert_int_equal(buf_printf(&b, "%d", 12345), RZ_OK);  /* first: allocates */
    assert_int_equal(buf_printf(&b, "-%s-", "ab"), RZ_OK); /* fits the spare room */
    assert_string_equal(b.data, "12345-ab-");
    assert_int_equal(buf_printf(&b, "%s", "0123456789A"), RZ_OK); /* exactly 20 */
    assert_int_equal(b.len, 20);
    assert_int_equal(buf_printf(&b, "%s", ""), RZ_OK);
    assert_int_equal(buf_printf(&b, "%c", 'z'), RZ_ETOOBIG);
    assert_string_equal(b.data, "12345-ab-0123456789A");
    buf_cleanup(&b);
}

/* The HTTP body budget reserves buf_capacity_for(Content-Length) up front:
 * the buffer must never grow past it, however the body is split. */
static void test_capacity_for_matches_growth(void **state)
{
    static const size_t sizes[] = {1, 63, 64, 65, 1000, 16384, 250000, 262143, 262144};
    static const size_t pieces[] = {1, 7, 1000, 65536};
    static char chunk[65536];

    (void)state;
    assert_int_equal(buf_capacity_for(0), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
            struct buf b;
            size_t left = sizes[i];

            buf_init(&b, sizes[i]);
            while (left) {
                size_t n = left < pieces[k] ? left : pieces[k];

                assert_int_equal(buf_append(&b, chunk, n), RZ_OK);
                assert_true(b.cap <= buf_capacity_for(sizes[i]));
                left -= n;
            }
            assert_int_equal(b.cap, buf_capacity_for(sizes[i]));
            buf_cleanup(&b);
        }
    }
}

static void test_steal_empty_gives_empty_string(void **state)
{
    struct buf b;
    char *s;

    (void)state;
    buf_init(&b, 10);
    s = buf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_terminate),
        cmocka_unit_test(test_cap_is_hard),
        cmocka_unit_test(test_printf_fills_and_grows),
        cmocka_unit_test(test_steal_empty_gives_empty_string),
        cmocka_unit_test(test_capacity_for_matches_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
