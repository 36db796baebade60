/* test_negotiate.c - which stored format a client gets for its Accept:
 * what browsers really send, q-values, wildcards, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/negotiate.h"

#define J IMAGE_FORMAT_JPEG
#define W IMAGE_FORMAT_WEBP
#define A IMAGE_FORMAT_AVIF
#define P IMAGE_FORMAT_PNG
#define NONE IMAGE_FORMAT_UNKNOWN /* a 406 */

struct neg_case {
    const char *accept;
    enum image_format stored[3];
    size_t n;
    enum image_format want;
};

static const struct neg_case cases[] = {
    /* Chrome, Firefox and Safari 17 for <img> */
    {"image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", {J, W, A}, 3, A},
    {"image/avif,image/webp,*/*", {J, W, A}, 3, A},
    {"image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
     "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
     {J, W, A},
     3,
     A},
    /* a browser without AVIF */
    {"image/webp,*/*", {J, W, A}, 3, W},
    /* old Safari: wildcards only, so the fallback, never WebP or AVIF */
    {"image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5", {J, W, A}, 3, J},
    {"*/*", {J, W, A}, 3, J},
    {NULL, {J, W, A}, 3, J},
    {"", {J, W, A}, 3, J},
    /* q-values: the client prefers WebP to AVIF */
    {"image/avif;q=0.5,image/webp;q=0.9,*/*;q=0.1", {J, W, A}, 3, W},
    {"image/avif;q=0.5,image/jpeg", {J, W, A}, 3, J},
    /* q=0 refuses, even when a wildcard would allow */
    {"image/avif;q=0,image/webp;q=0,image/*", {J, W, A}, 3, J},
    {"image/jpeg;q=0,image/*", {J, W, A}, 3, NONE},
    {"image/avif;q=0,image/webp;q=0,image/jpeg;q=0", {J, W, A}, 3, NONE},
    /* nothing acceptable stored: a 406 */
    {"image/webp", {J}, 1, NONE},
    {"text/html", {J, W}, 2, NONE},
    {"image/avif", {J, W}, 2, NONE},
    /* with no JPEG/PNG stored, WebP is the fallback a wildcard reaches */
    {"*/*", {W, A}, 2, W},
    {"image/avif,*/*", {W, A}, 2, A},
    {"image/*", {A}, 1, A},
    /* PNG as the fallback; spaces and case as clients write them */
    {" IMAGE/AVIF ; Q=0.9 , image/png", {P, A}, 2, P},
    {"image/avif ; q=1.0, image/png;q=0.9", {P, A}, 2, A},
    /* malformed q: that range is ignored */
    {"image/avif;q=2,image/png", {P, A}, 2, P},
    {"image/avif;q=abc", {P, A}, 2, NONE},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum image_format got = NONE;
        enum rz_err err = negotiate_format(cases[i].accept, cases[i].stored, cases[i].n, &got);

        if (err != RZ_OK)
            got = NONE;
        if (got != cases[i].want || (cases[i].want == NONE) != (err == RZ_ENOTFOUND))
            fail_msg("Accept \"%s\": got %s (err %d), want %s",
                     cases[i].accept ? cases[i].accept : "(none)", image_format_name(got), err,
                     image_format_name(cases[i].want));
    }
}

static void test_long_header_refused(void **state)
{
    static char big[NEGOTIATE_MAX_ACCEPT + 2];
    enum image_format stored[] = {J};
    enum image_format got;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    assert_int_equal(negotiate_format(big, stored, 1, &got), RZ_EINVAL);
}

static void test_format_param(void **state)
{
    (void)state;
    assert_int_equal(negotiate_format_param("avif"), A);
    assert_int_equal(negotiate_format_param("jpg"), J);
    assert_int_equal(negotiate_format_param("jpeg"), J);
    assert_int_equal(negotiate_format_param("AVIF"), NONE);
    assert_int_equal(negotiate_format_param("tiff"), NONE);
    assert_int_equal(negotiate_format_param(NULL), NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_long_header_refused),
        cmocka_unit_test(test_format_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
