/* test_base64.c - the one base64 decoder: RFC 4648's vectors, and every
 * malformed form a hostile Authorization header or token can take refused
 * without writing past the output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/base64.h"

struct good_case {
    enum base64_alphabet alphabet;
    const char *in;
    const char *want;
};

/* RFC 4648 section 10, and the URL alphabet of RFC 7515 (no padding). */
static const struct good_case good_cases[] = {
    {BASE64_STD, "", ""},
    {BASE64_STD, "Zg==", "f"},
    {BASE64_STD, "Zm8=", "fo"},
    {BASE64_STD, "Zm9v", "foo"},
    {BASE64_STD, "Zm9vYg==", "foob"},
    {BASE64_STD, "Zm9vYmE=", "fooba"},
    {BASE64_STD, "Zm9vYmFy", "foobar"},
    {BASE64_STD, "dXNlcjpwYXNz", "user:pass"},
    {BASE64_STD, "Pz8/Pz4+", "\x3f\x3f\x3f\x3f\x3e\x3e"},
    {BASE64_URL, "", ""},
    {BASE64_URL, "Zg", "f"},
    {BASE64_URL, "Zm8", "fo"},
    {BASE64_URL, "Zm9vYmFy", "foobar"},
    {BASE64_URL, "Pz8_Pz4-", "\x3f\x3f\x3f\x3f\x3e\x3e"},
    {BASE64_URL, "eyJhbGciOiJSUzI1NiJ9", "{\"alg\":\"RS256\"}"},
};

static void test_decode_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        const struct good_case *c = &good_cases[i];
        unsigned char out[64];
        size_t n = 99;
        char enc[64];

        assert_int_equal(base64_decode(c->in, strlen(c->in), c->alphabet, out, sizeof(out), &n),
                         RZ_OK);
        assert_int_equal(n, strlen(c->want));
        assert_memory_equal(out, c->want, n);
        /* And back. */
        assert_int_equal(base64_encoded_len(n, c->alphabet), strlen(c->in));
        base64_encode(out, n, c->alphabet, enc);
        assert_string_equal(enc, c->in);
    }
}

struct bad_case {
    enum base64_alphabet alphabet;
    const char *in;
};

static const struct bad_case bad_cases[] = {
    {BASE64_STD, "Zg"},                              /* padding missing */
    {BASE64_STD, "Zg="},                             /* not a multiple of 4 */
    {BASE64_STD, "Z==="},                            /* three '=' */
    {BASE64_STD, "===="},  {BASE64_STD, "Zg==Zg=="}, /* padding inside */
    {BASE64_STD, "Z=g="},  {BASE64_STD, "Zh=="},     /* leftover bits set: not canonical */
    {BASE64_STD, "Zm9="},  {BASE64_STD, "Zm9v\n"},   /* whitespace */
    {BASE64_STD, "Zm 9v"}, {BASE64_STD, "Zm9-"},     /* the other alphabet */
    {BASE64_STD, "Zm9_"},  {BASE64_URL, "Zm9+"},
    {BASE64_URL, "Zm9/"},  {BASE64_URL, "Zg=="}, /* no padding in JWS */
    {BASE64_URL, "Z"},                           /* one character is never whole */
    {BASE64_URL, "Zm9vY"}, {BASE64_STD, "\xff\xfe\xfd\xfc"},
};

static void test_decode_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        unsigned char out[64];
        size_t n = 99;

        assert_int_equal(base64_decode(c->in, strlen(c->in), c->alphabet, out, sizeof(out), &n),
                         RZ_EINVAL);
        assert_int_equal(n, 0);
    }
}

/* The crash this decoder replaces: "Basic " + 300 '=' made the old code
 * subtract one byte per '=' and write before its buffer. */
static void test_decode_padding_flood(void **state)
{
    char in[301];
    unsigned char out[8];
    size_t n;

    (void)state;
    memset(in, '=', 300);
    in[300] = '\0';
    assert_int_equal(base64_decode(in, 300, BASE64_STD, out, sizeof(out), &n), RZ_EINVAL);
    memcpy(in, "Zm9v", 4);
    assert_int_equal(base64_decode(in, 300, BASE64_STD, out, sizeof(out), &n), RZ_EINVAL);
}

/* The output size is checked before a byte is written: a guard byte past
 * the buffer stays untouched. */
static void test_decode_too_small(void **state)
{
    unsigned char out[4] = {0, 0, 0, 0xAA};
    size_t n;

    (void)state;
    assert_int_equal(base64_decode("Zm9vYg==", 8, BASE64_STD, out, 3, &n), RZ_ETOOBIG);
    assert_int_equal(out[3], 0xAA);
    assert_int_equal(base64_decode("Zm9v", 4, BASE64_STD, out, 3, &n), RZ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(base64_decoded_max(8), 6);
    assert_int_equal(base64_decoded_max(6), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_good),
        cmocka_unit_test(test_decode_bad),
        cmocka_unit_test(test_decode_padding_flood),
        cmocka_unit_test(test_decode_too_small),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
