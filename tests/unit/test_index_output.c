/* test_index_output.c - a done record's output as clients and other
 * replicas read it: every stored file of every variant, grouped as the
 * job made them; placeholders; the same after a copy and after a trip
 * through the JSON kept in S3; older records (no files) still served; a
 * hostile placeholder refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/index.h"

static const char *const keys[] = {
    "desktop/a.jpg", "desktop/a.webp", "desktop/a.avif",
    "thumb/a.jpg",   "thumb/a.webp",   "thumb/a.avif",
};

/* What image_make_variants gives for two variants in three formats. */
static void make_entry(struct index_entry *e)
{
    static const enum image_format fmts[] = {IMAGE_FORMAT_JPEG, IMAGE_FORMAT_WEBP,
                                             IMAGE_FORMAT_AVIF};
    struct image_result r[6];
    struct image_info info = {0};
    struct index_variant vars[IMAGE_MAX_VARIANTS];
    struct index_file files[IMAGE_MAX_VARIANTS * IMAGE_MAX_OUTPUTS];
    size_t nv;

    memset(r, 0, sizeof(r));
    for (size_t i = 0; i < 6; i++) {
        snprintf(r[i].name, sizeof(r[i].name), "%s", i < 3 ? "desktop" : "thumb");
        r[i].format = fmts[i % 3];
        r[i].width = i < 3 ? 1200 : 256;
        r[i].height = i < 3 ? 400 : 256;
        r[i].len = 1000 + i;
    }
    snprintf(info.blurhash, sizeof(info.blurhash), "%s", "LEHV6nWB2yk8pyo0adR*.7kCMdnj");
    snprintf(info.dominant, sizeof(info.dominant), "%s", "#606864");
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", "7c9e6679-7425-40de-944b-e07fc1f90ae7");
    e->state = INDEX_DONE;
    e->width = 1200;
    e->height = 400;
    /* as a job records what it made: a view of its results, then a copy */
    nv = index_output_view(r, (char *const *)keys, 6, vars, files);
    assert_int_equal(index_output_take(e, vars, nv, &info), RZ_OK);
}

static void check_entry(const struct index_entry *e)
{
    assert_int_equal(e->nvariants, 2);
    assert_string_equal(e->variants[0].name, "desktop");
    assert_string_equal(e->variants[0].key, "desktop/a.jpg");
    assert_string_equal(e->variants[0].content_type, "image/jpeg");
    assert_int_equal(e->variants[1].width, 256);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(e->variants[i].nfiles, 3);
        for (size_t k = 0; k < 3; k++)
            assert_string_equal(e->variants[i].files[k].key, keys[i * 3 + k]);
        assert_int_equal(index_variant_file(&e->variants[i], IMAGE_FORMAT_AVIF)->bytes,
                         1000 + i * 3 + 2);
        assert_null(index_variant_file(&e->variants[i], IMAGE_FORMAT_PNG));
    }
    assert_string_equal(e->blurhash, "LEHV6nWB2yk8pyo0adR*.7kCMdnj");
    assert_string_equal(e->dominant, "#606864");
}

static void test_set_copy_and_json_round_trip(void **state)
{
    struct index_entry e, copy, back;
    json_t *j;

    (void)state;
    make_entry(&e);
    check_entry(&e);
    assert_int_equal(index_entry_copy(&copy, &e), RZ_OK);
    check_entry(&copy);
    j = index_entry_to_json(&copy);
    assert_non_null(j);
    assert_true(json_real_value(
                    json_object_get(json_object_get(j, "placeholder"), "aspect_ratio")) == 3.0);
    assert_int_equal(index_entry_from_json(j, &back), RZ_OK);
    check_entry(&back);
    json_decref(j);
    index_entry_cleanup(&back);
    index_entry_cleanup(&copy);
    index_entry_cleanup(&e);
}

/* A record written before variants listed files: its one file is the
 * variant's own key, in the format its Content-Type names. */
static void test_record_without_files(void **state)
{
    const char *text =
        "{\"id\":\"7c9e6679-7425-40de-944b-e07fc1f90ae7\",\"state\":\"done\",\"source\":{},"
        "\"variants\":[{\"name\":\"phone\",\"key\":\"phone/a.jpg\",\"content_type\":"
        "\"image/jpeg\",\"width\":640,\"height\":480,\"bytes\":99}],\"error\":null}";
    json_t *j = json_loads(text, 0, NULL);
    struct index_entry e;
    const struct index_file *f;

    (void)state;
    assert_int_equal(index_entry_from_json(j, &e), RZ_OK);
    f = index_variant_file(&e.variants[0], IMAGE_FORMAT_JPEG);
    assert_non_null(f);
    assert_string_equal(f->key, "phone/a.jpg");
    assert_int_equal(f->bytes, 99);
    assert_null(e.blurhash);
    json_decref(j);
    index_entry_cleanup(&e);
}

/* Records read back from S3 are untrusted: a placeholder that is not one,
 * or a file in a format we never write, refuses the whole record. */
static void test_hostile_output_refused(void **state)
{
    static const char *const bad[] = {
        "\"placeholder\":{\"blurhash\":\"LEHV6nWB2yk8\",\"dominant_color\":null}",
        "\"placeholder\":{\"blurhash\":null,\"dominant_color\":\"red\"}",
        "\"placeholder\":{\"blurhash\":\"L HV6nWB2yk8pyo0adR*.7kCMdnj\"}",
        "\"placeholder\":[]",
        "\"variants\":[{\"name\":\"a\",\"files\":[{\"format\":\"bmp\",\"key\":\"a/x.bmp\"}]}]",
        "\"variants\":[{\"name\":\"a\",\"files\":[{\"format\":\"jpeg\"}]}]",
        "\"variants\":[{\"name\":\"a\",\"files\":{}}]",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        json_t *j;
        struct index_entry e;

        snprintf(text, sizeof(text),
                 "{\"id\":\"7c9e6679-7425-40de-944b-e07fc1f90ae7\",\"state\":\"done\","
                 "\"source\":{},%s%s,\"error\":null}",
                 bad[i], strstr(bad[i], "variants") ? "" : ",\"variants\":[]");
        j = json_loads(text, 0, NULL);
        if (!j)
            fail_msg("case %zu is not JSON: %s", i, text);
        if (index_entry_from_json(j, &e) != RZ_EINVAL)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_copy_and_json_round_trip),
        cmocka_unit_test(test_record_without_files),
        cmocka_unit_test(test_hostile_output_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
