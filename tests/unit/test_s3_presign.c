/* test_s3_presign.c - presigned GET and PUT URLs and POST forms, byte for
 * byte, against golden files (tests/vectors/s3_presign/, see the README
 * there): fixed clock, fixed credentials, the S3 client as the service
 * configures it. tests/integration/test_sigv4_oracle.py checks the same
 * files against botocore, so a golden file is never just our own output.
 *
 * RESIZER_VECTORS_UPDATE=1 rewrites the .url/.fields files from the code
 * (then run the oracle test, which must still agree). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server/buf.h"
#include "server/creds.h"
#include "server/s3.h"

static const char *const cases[] = {
    "get-virtual-host",  "get-path-style-ip",     "get-public-endpoint", "put-content-type",
    "put-sse-kms-token", "put-dotted-bucket-tls", "post-plain",          "post-token-sse",
};

static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static char *vector_path(const char *name, const char *ext)
{
    const char *dir = getenv("RESIZER_VECTORS");
    char *path = malloc(4096);

    assert_non_null(dir);
    assert_non_null(path);
    snprintf(path, 4096, "%s/s3_presign/%s.%s", dir, name, ext);
    return path;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[4096];
    size_t n;

    if (!f)
        fail_msg("cannot read %s", path);
    buf_init(&b, 1 << 20);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), RZ_OK);
    fclose(f);
    if (!b.data)
        assert_int_equal(buf_appends(&b, ""), RZ_OK);
    return buf_steal(&b);
}

/* Compares got with the golden file, or rewrites it in update mode. */
static void check_golden(const char *name, const char *ext, const char *got)
{
    char *path = vector_path(name, ext);
    char *want;

    if (getenv("RESIZER_VECTORS_UPDATE")) {
        FILE *f = fopen(path, "wb");

        assert_non_null(f);
        fputs(got, f);
        fclose(f);
        free(path);
        return;
    }
    want = read_all(path);
    if (strcmp(want, got) != 0)
        fail_msg("%s.%s differs:\nwant %s\ngot  %s", name, ext, want, got);
    free(want);
    free(path);
}

/* "name: value" per line, in the order the client must send them. */
static char *fields_text(const struct s3_presigned *p)
{
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(buf_appends(&b, ""), RZ_OK);
    for (size_t i = 0; i < p->nfields; i++)
        assert_int_equal(buf_printf(&b, "%s: %s\n", p->fields[i].name, p->fields[i].value),
                         RZ_OK);
    return buf_steal(&b);
}

static enum rz_err presign(json_t *c, struct s3 *s3, struct s3_presigned *out)
{
    const char *op = str_of(c, "op");
    const char *bucket = str_of(c, "bucket");
    const char *key = str_of(c, "key");
    const char *ctype = str_of(c, "content_type");
    long expires = (long)json_integer_value(json_object_get(c, "expires"));
    time_t now = (time_t)json_integer_value(json_object_get(c, "now"));

    if (strcmp(op, "get") == 0)
        return s3_presign_get(s3, bucket, key, expires, now, out);
    if (strcmp(op, "put") == 0)
        return s3_presign_put(s3, bucket, key, ctype, expires, now, out);
    return s3_presign_post(s3, bucket, key, ctype,
                           (uint64_t)json_integer_value(json_object_get(c, "max_bytes")),
                           expires, now, out);
}

static void run_case(const char *name)
{
    char *path = vector_path(name, "json");
    json_t *c = json_load_file(path, 0, NULL);
    struct creds_source src = {0};
    struct creds_provider *creds = NULL;
    struct s3 *s3 = NULL;
    struct s3_presigned p;
    char msg[256];
    char *fields;

    if (!c)
        fail_msg("cannot parse %s", path);
    src.access_key = str_of(c, "access_key");
    src.secret_key = str_of(c, "secret_key");
    src.session_token = str_of(c, "session_token");
    assert_int_equal(creds_provider_new(&src, &creds, msg, sizeof(msg)), RZ_OK);
    struct s3_opts o = {
        .endpoint = str_of(c, "endpoint"),
        .public_endpoint = str_of(c, "public_endpoint"),
        .region = str_of(c, "region"),
        .force_path_style = json_is_true(json_object_get(c, "force_path_style")),
        .sse = str_of(c, "sse"),
        .sse_kms_key_id = str_of(c, "sse_kms_key_id"),
        .creds = creds,
    };
    assert_int_equal(s3_new(&o, &s3, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(presign(c, s3, &p), RZ_OK);
    assert_int_equal(p.expires_at, json_integer_value(json_object_get(c, "now")) +
                                       json_integer_value(json_object_get(c, "expires")));
    check_golden(name, "url", p.url);
    fields = fields_text(&p);
    check_golden(name, "fields", fields);
    free(fields);
    s3_presigned_cleanup(&p);
    s3_free(s3);
    creds_provider_free(creds);
    json_decref(c);
    free(path);
}

static void test_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
