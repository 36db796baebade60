/* test_numfmt.c - numbers as people read them: /metrics bounds print as
 * 0.005 (not 0.0050000000000000001), and every value still reads back as
 * the same double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"
#include "server/numfmt.h"

struct num_case {
    double v;
    const char *want;
};

static void test_shortest_round_trip(void **state)
{
    static const struct num_case cases[] = {
        {0.005, "0.005"},
        {0.61, "0.61"},
        {0.1, "0.1"},
        {2.5, "2.5"},
        {10, "10"},
        {0, "0"},
        {-0.25, "-0.25"},
        {1e21, "1e+21"},
        {123456789012, "123456789012"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {5e-324, "4.94065645841247e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
    };
    char out[NUMFMT_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = numfmt_double(cases[i].v, out);

        assert_string_equal(out, cases[i].want);
        assert_int_equal(n, (int)strlen(cases[i].want));
        if (isfinite(cases[i].v))
            assert_true(strtod(out, NULL) == cases[i].v);
    }
}

/* Round trip over many values of every magnitude, never more than 17
 * digits. */
static void test_every_value_reads_back(void **state)
{
    char out[NUMFMT_MAX];
    unsigned long long x = 88172645463325252ULL;

    (void)state;
    for (int i = 0; i < 20000; i++) {
        double v;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(&v, &x, sizeof(v));
        if (!isfinite(v))
            continue;
        numfmt_double(v, out);
        assert_true(strtod(out, NULL) == v);
        assert_true(strlen(out) < NUMFMT_MAX);
    }
}

/* /metrics as Prometheus scrapes it: bounds and sums short, +Inf last,
 * every sample line "name{labels} value" with a value strtod reads whole. */
static void test_metrics_render(void **state)
{
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    struct metrics *m = metrics_new();
    char *text;
    char *line;
    char *save = NULL;
    int samples = 0;

    (void)state;
    assert_non_null(m);
    assert_int_equal(metrics_register(m, "t_seconds", METRICS_HISTOGRAM, "Time.", bounds, 9),
                     RZ_OK);
    assert_int_equal(metrics_register(m, "t_ratio", METRICS_GAUGE, "Ratio.", NULL, 0), RZ_OK);
    metrics_observe(m, "t_seconds", "route=\"x\"", 0.61);
    metrics_observe(m, "t_seconds", "route=\"x\"", 0.004);
    metrics_set(m, "t_ratio", "", 0.1 + 0.7);
    text = metrics_render(m);
    assert_non_null(text);
    assert_non_null(strstr(text, "t_seconds_bucket{route=\"x\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{route=\"x\",le=\"2.5\"} 2\n"));
    assert_non_null(strstr(text, "t_seconds_bucket{route=\"x\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(text, "t_seconds_sum{route=\"x\"} 0.614\n"));
    assert_non_null(strstr(text, "t_ratio 0.7999999999999999\n"));
    assert_null(strstr(text, "00000000"));
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(line, ' ');
        char *end;

        if (line[0] == '#')
            continue;
        assert_non_null(sp);
        if (strcmp(sp + 1, "+Inf") != 0) {
            strtod(sp + 1, &end);
            assert_true(*end == '\0' && end > sp + 1);
        }
        samples++;
    }
    assert_int_equal(samples, 9 + 1 + 2 + 1);
    free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shortest_round_trip),
        cmocka_unit_test(test_every_value_reads_back),
        cmocka_unit_test(test_metrics_render),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
