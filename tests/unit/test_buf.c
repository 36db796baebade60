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
        cmocka_unit_test(test_steal_empty_gives_empty_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
