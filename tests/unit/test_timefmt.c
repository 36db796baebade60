/* test_timefmt.c - the ISO 8601 times the service writes read back to the
 * same millisecond, and the reader refuses what is not such a time (an
 * expiry it misread would keep stale credentials or drop fresh ones). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "server/timefmt.h"

static int64_t utc_ms(int y, int mo, int d, int h, int mi, int s, int ms)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void test_parse_table(void **state)
{
    const struct {
        const char *s;
        int64_t want; /* 0: rejected */
    } cases[] = {
        {"2026-11-26T18:00:00Z", utc_ms(2026, 11, 26, 18, 0, 0, 0)},
        {"2026-11-26T18:00:00.123Z", utc_ms(2026, 11, 26, 18, 0, 0, 123)},
        {"2026-11-26T18:00:00.5Z", utc_ms(2026, 11, 26, 18, 0, 0, 500)},
        {"2026-11-26T18:00:00.123456789Z", utc_ms(2026, 11, 26, 18, 0, 0, 123)},
        {"2026-11-26T18:00:00+00:00", utc_ms(2026, 11, 26, 18, 0, 0, 0)},
        {"2028-02-29T23:59:59Z", utc_ms(2028, 2, 29, 23, 59, 59, 0)},
        {"1970-01-01T00:00:01Z", 1000},
        {"2026-11-26T18:00:00.1234567890Z", 0},
        {"2026-02-29T00:00:00Z", 0},
        {"2026-02-30T00:00:00Z", 0},
        {"2026-04-31T00:00:00Z", 0},
        {"2026-13-01T00:00:00Z", 0},
        {"2026-00-10T00:00:00Z", 0},
        {"2026-11-26T24:00:00Z", 0},
        {"2026-11-26T18:60:00Z", 0},
        {"2026-11-26T18:00:60Z", 0},
        {"2026-11-26 18:00:00Z", 0},
        {"2026-11-26T18:00:00", 0},
        {"2026-11-26T18:00:00+01:00", 0},
        {"2026-11-26T18:00:00.Z", 0},
        {"2026-11-26T18:00:00ZZ", 0},
        {"2026-1-26T18:00:00Z", 0},
        {"+026-11-26T18:00:00Z", 0},
        {"1970-01-01T00:00:00Z", 0}, /* reads as "no time": never a real one */
        {"1969-12-31T23:59:59Z", 0},
        {"tomorrow", 0},
        {"", 0},
        {NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 123;
        enum rz_err err = timefmt_parse_iso_ms(cases[i].s, &ms);

        if (cases[i].want) {
            if (err != RZ_OK)
                fail_msg("expected to parse: %s", cases[i].s);
            assert_int_equal(ms, cases[i].want);
        } else {
            if (err != RZ_EINVAL)
                fail_msg("expected rejection: %s", cases[i].s ? cases[i].s : "(null)");
            assert_int_equal(ms, 0);
        }
    }
}

/* What the writers print is what the reader takes back. */
static void test_round_trip(void **state)
{
    const int64_t times[] = {1000, utc_ms(2026, 11, 26, 15, 44, 36, 7),
                             utc_ms(2099, 12, 31, 23, 59, 59, 999)};
    char out[TIMEFMT_MAX];
    int64_t back;

    (void)state;
    timefmt_iso_ms(utc_ms(2026, 11, 26, 15, 44, 36, 123), out);
    assert_string_equal(out, "2026-11-26T15:44:36.123Z");
    timefmt_iso((time_t)(utc_ms(2026, 11, 26, 15, 44, 36, 0) / 1000), out);
    assert_string_equal(out, "2026-11-26T15:44:36Z");
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        timefmt_iso_ms(times[i], out);
        assert_int_equal(timefmt_parse_iso_ms(out, &back), RZ_OK);
        assert_int_equal(back, times[i]);
        timefmt_iso((time_t)(times[i] / 1000), out);
        assert_int_equal(timefmt_parse_iso_ms(out, &back), RZ_OK);
        assert_int_equal(back, times[i] / 1000 * 1000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
