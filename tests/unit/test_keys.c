/* test_keys.c - where variants and status records land in the destination
 * bucket: the names the original Lambda used (images/a.jpg ->
 * desktop/a.jpg), with the extension following the output format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/keys.h"

struct variant_case {
    const char *prefix;
    const char *key;
    const char *variant;
    enum image_format format;
    const char *want;
};

static const struct variant_case variant_cases[] = {
    /* The Lambda's layout: the relative key under the variant's folder. */
    {"images/", "images/a.jpg", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpg"},
    {"images/", "images/a.jpg", "phone", IMAGE_FORMAT_JPEG, "phone/a.jpg"},
    {"images/", "images/cats/2024/a.png", "tablet", IMAGE_FORMAT_PNG, "tablet/cats/2024/a.png"},
    /* An extension that already names the format is kept as written. */
    {"images/", "images/a.jpeg", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpeg"},
    {"images/", "images/a.JPG", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.JPG"},
    {"images/", "images/a.jpe", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpe"},
    {"images/", "images/a.tif", "desktop", IMAGE_FORMAT_TIFF, "desktop/a.tif"},
    {"images/", "images/a.heif", "desktop", IMAGE_FORMAT_HEIF, "desktop/a.heif"},
    /* Another output format: the extension follows it. */
    {"images/", "images/x.png", "desktop", IMAGE_FORMAT_JPEG, "desktop/x.jpg"},
    {"images/", "images/x.jpg", "desktop", IMAGE_FORMAT_WEBP, "desktop/x.webp"},
    {"images/", "images/x.jpeg", "desktop", IMAGE_FORMAT_AVIF, "desktop/x.avif"},
    {"images/", "images/x.gif", "desktop", IMAGE_FORMAT_PNG, "desktop/x.png"},
    /* No extension: one is added. */
    {"images/", "images/noext", "desktop", IMAGE_FORMAT_JPEG, "desktop/noext.jpg"},
    {"images/", "images/a.", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpg"},
    /* Dots in folders are not extensions. */
    {"images/", "images/v1.2/a", "desktop", IMAGE_FORMAT_JPEG, "desktop/v1.2/a.jpg"},
    {"images/", "images/v1.2/a.png", "desktop", IMAGE_FORMAT_PNG, "desktop/v1.2/a.png"},
    {"images/", "images/v1.2/a.png", "desktop", IMAGE_FORMAT_JPEG, "desktop/v1.2/a.jpg"},
    /* A leading dot names the file, not its type. */
    {"images/", "images/.hidden", "phone", IMAGE_FORMAT_JPEG, "phone/.hidden.jpg"},
    {"images/", "images/d/.hidden", "phone", IMAGE_FORMAT_JPEG, "phone/d/.hidden.jpg"},
    /* A key outside the prefix keeps its whole path. */
    {"images/", "other/a.jpg", "desktop", IMAGE_FORMAT_JPEG, "desktop/other/a.jpg"},
    {"images/", "imagesX/a.jpg", "desktop", IMAGE_FORMAT_JPEG, "desktop/imagesX/a.jpg"},
    {"uploads/in/", "uploads/in/a.jpg", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpg"},
    {"", "a.jpg", "desktop", IMAGE_FORMAT_JPEG, "desktop/a.jpg"},
    /* Spaces and UTF-8 pass through untouched (S3 keys are bytes). */
    {"images/", "images/my cat \xc3\xa9.png", "phone", IMAGE_FORMAT_JPEG,
     "phone/my cat \xc3\xa9.jpg"},
    /* The API's own uploads. */
    {"images/", "images/0f8fad5b-d9cb-469f-a165-70867728950e.jpg", "desktop", IMAGE_FORMAT_JPEG,
     "desktop/0f8fad5b-d9cb-469f-a165-70867728950e.jpg"},
};

static void test_variant_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(variant_cases) / sizeof(variant_cases[0]); i++) {
        const struct variant_case *c = &variant_cases[i];
        char *got = keys_variant(c->prefix, c->key, c->variant, c->format);

        print_message("  %s -> %s\n", c->key, c->want);
        assert_non_null(got);
        assert_string_equal(got, c->want);
        free(got);
    }
}

/* A key near S3's 1024-byte limit makes a key of the same length plus the
 * variant folder, without truncation. */
static void test_variant_long_key(void **state)
{
    char key[1025];
    char *got;

    (void)state;
    memcpy(key, "images/", 7);
    memset(key + 7, 'k', sizeof(key) - 7 - 5);
    memcpy(key + sizeof(key) - 5, ".png", 5);
    got = keys_variant("images/", key, "desktop", IMAGE_FORMAT_JPEG);
    assert_non_null(got);
    assert_int_equal(strlen(got), strlen("desktop/") + (sizeof(key) - 1 - 7));
    assert_memory_equal(got, "desktop/kkkk", 12);
    assert_string_equal(got + strlen(got) - 5, "k.jpg");
    free(got);
}

static void test_status_keys(void **state)
{
    static const struct {
        const char *prefix, *key, *want;
    } cases[] = {
        {"images/", "images/a.jpg", "_status/keys/a.jpg"},
        {"images/", "images/cats/a b.png", "_status/keys/cats/a b.png"},
        {"images/", "images/v1.2/a", "_status/keys/v1.2/a"},
        {"images/", "other/a.jpg", "_status/keys/other/a.jpg"},
        {"", "a.jpg", "_status/keys/a.jpg"},
    };
    char *got;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got = keys_status_by_key(cases[i].prefix, cases[i].key);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    got = keys_status_by_id("0f8fad5b-d9cb-469f-a165-70867728950e");
    assert_string_equal(got, "_status/ids/0f8fad5b-d9cb-469f-a165-70867728950e");
    free(got);
    /* Records never collide with variants: different top folders. */
    assert_int_equal(strncmp(KEYS_STATUS_BY_KEY, "_status/", 8), 0);
    assert_int_equal(strncmp(KEYS_STATUS_BY_ID, "_status/", 8), 0);
}

static void test_relative(void **state)
{
    const char *key = "images/cats/a.jpg";

    (void)state;
    assert_ptr_equal(keys_relative("images/", key), key + 7);
    assert_ptr_equal(keys_relative("img/", key), key);
    assert_ptr_equal(keys_relative("", key), key);
    assert_string_equal(keys_relative("images/", "images/"), "");
}

/* The key an upload URL grants: the prefix, the id, the format's usual
 * extension; and its variants follow from it like any other source's. */
static void test_upload_key(void **state)
{
    const char *id = "5f0c2f53-0a5e-4d8e-9a55-1c1a3f2b7d10";
    char *key, *variant;

    (void)state;
    key = keys_upload("images/", id, IMAGE_FORMAT_JPEG);
    assert_string_equal(key, "images/5f0c2f53-0a5e-4d8e-9a55-1c1a3f2b7d10.jpg");
    variant = keys_variant("images/", key, "phone", IMAGE_FORMAT_WEBP);
    assert_string_equal(variant, "phone/5f0c2f53-0a5e-4d8e-9a55-1c1a3f2b7d10.webp");
    free(variant);
    free(key);
    key = keys_upload("uploads/2026/", id, IMAGE_FORMAT_PNG);
    assert_string_equal(key, "uploads/2026/5f0c2f53-0a5e-4d8e-9a55-1c1a3f2b7d10.png");
    free(key);
    key = keys_upload("", id, IMAGE_FORMAT_HEIF);
    assert_string_equal(key, "5f0c2f53-0a5e-4d8e-9a55-1c1a3f2b7d10.heic");
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variant_table), cmocka_unit_test(test_variant_long_key),
        cmocka_unit_test(test_status_keys),   cmocka_unit_test(test_relative),
        cmocka_unit_test(test_upload_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
