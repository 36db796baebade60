/* test_log.c - a log line survives whatever bytes a client sends: invalid
 * UTF-8 in a path or header is escaped as \xNN, never the reason a line
 * loses its fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/log.h"

static void assert_logged_as(const char *in, const char *want)
{
    json_t *j = log_string(in);

    assert_non_null(j);
    assert_string_equal(json_string_value(j), want);
    json_decref(j);
}

static void test_log_string(void **state)
{
    (void)state;
    assert_logged_as("/v1/images", "/v1/images");
    assert_logged_as("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_logged_as("/v1/\xff\xfe", "/v1/\\xff\\xfe");
    assert_logged_as("cut \xc3", "cut \\xc3");                 /* sequence cut by the end */
    assert_logged_as("\xc0\xaf", "\\xc0\\xaf");                /* overlong '/' */
    assert_logged_as("\xed\xa0\x80", "\\xed\\xa0\\x80");       /* a surrogate */
    assert_logged_as("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    assert_logged_as("\xe2\x82x", "\\xe2\\x82x");
    assert_true(json_is_null(log_string(NULL)));
}

/* The whole line, through a pipe: every field is still there. */
static void test_line_keeps_its_fields(void **state)
{
    int fds[2];
    char line[4096];
    ssize_t n;
    json_t *j;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    log_printf(LOG_WARN, "http_server", "bad request line: GET /\xff%s", "\xc3(");
    log_set_fd(2);
    n = read(fds[0], line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = '\0';
    j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "http_server");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "bad request line: GET /\\xff\\xc3(");
    json_decref(j);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_string),
        cmocka_unit_test(test_line_keeps_its_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
