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
    assert_logged_as("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_logged_as("/v1/\xff\xfe", "/v1/\\xff\\xfe");
    assert_logged_as("cut \xc3", "cut \\xc3");                    /* sequence cut by the end */
    assert_logged_as("\xc0\xaf", "\\xc0\\xaf");                   /* overlong '/' */
    assert_logged_as("\xed\xa0\x80", "\\xed\\xa0\\x80");          /* a surrogate */
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

/* One line written to a pipe and read back. */
static char *capture(void (*write_line)(void))
{
    int fds[2];
    char buf[8192];
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    log_set_fd(fds[1]);
    write_line();
    log_set_fd(2);
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    return strdup(buf);
}

static void write_durations(void)
{
    log_fields(LOG_INFO, "job_done",
               json_pack("{s:f,s:f,s:f,s:i,s:{s:[f]}}", "seconds", 0.61, "ms", 2.0, "sum",
                         0.1 + 0.2, "n", 3, "nested", "xs", 0.005));
}

/* Durations read as written: 0.61, not 0.60999999999999999; a whole
 * number stays a real (2.0); nothing is lost (0.1 + 0.2 reads back). */
static void test_durations_as_people_read_them(void **state)
{
    char *line = capture(write_durations);
    json_t *j = json_loads(line, 0, NULL);

    (void)state;
    assert_non_null(strstr(line, "\"seconds\":0.61,"));
    assert_non_null(strstr(line, "\"ms\":2.0,"));
    assert_non_null(strstr(line, "\"sum\":0.30000000000000004,"));
    assert_non_null(strstr(line, "\"nested\":{\"xs\":[0.005]}}\n"));
    assert_non_null(j);
    assert_true(json_real_value(json_object_get(j, "sum")) == 0.1 + 0.2);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    json_decref(j);
    free(line);
}

static void write_request(void)
{
    struct log_line l;

    log_line_begin(&l, LOG_WARN, "request");
    log_line_str(&l, "path",
                 "/v1/\xff\"q\\\n\x01"
                 "caf\xc3\xa9");
    log_line_str(&l, "method", NULL);
    log_line_int(&l, "status", 503);
    log_line_num(&l, "ms", 0.61);
    log_line_num(&l, "nan", 0.0 / 0.0);
    log_line_bool(&l, "completed", 0);
    log_line_end(&l);
}

/* The request line, field by field: valid JSON whatever the path holds,
 * in the order written, one line. */
static void test_line_built_field_by_field(void **state)
{
    char *line = capture(write_request);
    json_t *j = json_loads(line, 0, NULL);

    (void)state;
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/\\xff\"q\\\n\x01"
                                                                       "caf\xc3\xa9");
    assert_true(json_is_null(json_object_get(j, "method")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 503);
    assert_true(json_is_null(json_object_get(j, "nan")));
    assert_true(json_is_false(json_object_get(j, "completed")));
    assert_non_null(strstr(line, "\"level\":\"warn\",\"event\":\"request\",\"path\":"));
    assert_non_null(strstr(line, "\"ms\":0.61,"));
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    json_decref(j);
    free(line);
}

static char long_value[3000];

static void write_long_and_quiet(void)
{
    struct log_line l;

    log_line_begin(&l, LOG_DEBUG, "quiet"); /* below the level: nothing */
    log_line_str(&l, "x", "y");
    log_line_end(&l);
    log_line_begin(&l, LOG_INFO, "long");
    log_line_str(&l, "a", long_value);
    log_line_str(&l, "b", long_value);
    log_line_end(&l);
}

/* A line longer than its stack buffer moves to the heap whole. */
static void test_long_line_and_level(void **state)
{
    char *line;
    json_t *j;

    (void)state;
    memset(long_value, 'v', sizeof(long_value) - 1);
    line = capture(write_long_and_quiet);
    j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "long");
    assert_int_equal(strlen(json_string_value(json_object_get(j, "b"))), sizeof(long_value) - 1);
    json_decref(j);
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_string),
        cmocka_unit_test(test_line_keeps_its_fields),
        cmocka_unit_test(test_durations_as_people_read_them),
        cmocka_unit_test(test_line_built_field_by_field),
        cmocka_unit_test(test_long_line_and_level),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
