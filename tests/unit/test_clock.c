/* test_clock.c - wall milliseconds agree with time(), monotonic ones never
 * go back and advance with a sleep (timeouts and rate limits rest on it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "server/clock.h"

static void test_wall_is_unix_ms(void **state)
{
    time_t before = time(NULL);
    int64_t ms = clock_wall_ms();
    time_t after = time(NULL);

    (void)state;
    assert_true(ms / 1000 >= (int64_t)before);
    assert_true(ms / 1000 <= (int64_t)after);
}

static void test_mono_advances(void **state)
{
    struct timespec pause = {0, 30 * 1000 * 1000};
    int64_t a = clock_mono_ms();
    int64_t b;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        b = clock_mono_ms();
        assert_true(b >= a);
        a = b;
    }
    a = clock_mono_ms();
    nanosleep(&pause, NULL);
    b = clock_mono_ms();
    assert_true(b - a >= 30);
    assert_true(b - a < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_is_unix_ms),
        cmocka_unit_test(test_mono_advances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
