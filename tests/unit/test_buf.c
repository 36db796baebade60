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
    assert_int_equal(buf_printf(&b, "%d", 12345), RZ_OK);      /* first: allocates */
    assert_int_equal(buf_printf(&b, "-%s-", "ab"), RZ_OK);     /* fits the spare room */
    assert_string_equal(b.data, "12345-ab-");
    assert_int_equal(buf_printf(&b, "%s", "0123456789A"), RZ_OK); /* exactly 20 */
    assert_int_equal(b.len, 20);
    assert_int_equal(buf_printf(&b, "%s", ""), RZ_OK);
    assert_int_equal(buf_printf(&b, "%c", 'z'), RZ_ETOOBIG);
    assert_string_equal(b.data, "12345-ab-0123456789A");
    buf_cleanup(&b);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
