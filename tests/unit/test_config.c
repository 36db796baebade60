/* test_config.c - every variable's happy path and at least one bad value,
 * plus the rules that span variables. A bad value must name the variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/config.h"

#define MAX_ENV 64

/* A minimal valid environment; cases add or override one variable. */
static const char *const base_env[] = {
    "DEST_BUCKET=manara-image-resize-reciever",
    "SRC_BUCKET=manara-image-resize-uploader",
    "AWS_REGION=us-east-1",
    "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY=secretsecretsecret",
    "API_TOKENS=0123456789abcdef0123",
    "EVENTS_API_KEY=events-key-123",
};

struct env {
    const char *vars[MAX_ENV];
};

/* base_env with `extra` applied: "NAME=VALUE" overrides, "NAME" removes. */
static void env_build(struct env *e, const char *extra)
{
    size_t n = 0;
    size_t namelen = extra ? strcspn(extra, "=") : 0;

    for (size_t i = 0; i < sizeof(base_env) / sizeof(base_env[0]); i++) {
        if (extra && strncmp(base_env[i], extra, namelen) == 0 && base_env[i][namelen] == '=')
            continue;
        e->vars[n++] = base_env[i];
    }
    if (extra && extra[namelen] == '=')
        e->vars[n++] = extra;
    e->vars[n] = NULL;
}

static enum rz_err load_with(const char *extra, struct config *c, char *msg, size_t msglen)
{
    struct env e;

    env_build(&e, extra);
    return config_load(e.vars, c, msg, msglen);
}

#define R64 "abcdefghijklmnopqrstuvwxyz-abcdefghijklmnopqrstuvwxyz-0123456789"

struct bad_case {
    const char *setting; /* "NAME=VALUE" or "NAME" to remove a required one */
    const char *named;   /* the variable the message must name */
};

static const struct bad_case bad_cases[] = {
    {"DEST_BUCKET", "DEST_BUCKET"},
    {"DEST_BUCKET=Bad_Bucket", "DEST_BUCKET"},
    {"DEST_BUCKET=ab", "DEST_BUCKET"},
    {"SRC_BUCKET", "SRC_BUCKET"},
    {"SRC_BUCKET=-leading-dash", "SRC_BUCKET"},
    {"SRC_BUCKET=manara-image-resize-reciever", "SRC_BUCKET"},
    {"SRC_PREFIX=/images/", "SRC_PREFIX"},
    {"AWS_REGION", "AWS_REGION"},
    {"AWS_REGION=", "AWS_REGION"},
    {"AWS_REGION=us east 1", "AWS_REGION"},
    /* found by tests/fuzz: a long region overflowed the default endpoint's
     * buffer and config_load failed with an empty message */
    {"AWS_REGION=" R64 R64 R64 R64 R64 R64 R64 R64, "AWS_REGION"},
    {"AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"},
    {"AWS_CONTAINER_CREDENTIALS_FULL_URI=ftp://x", "AWS_CONTAINER_CREDENTIALS_FULL_URI"},
    {"S3_ENDPOINT=localhost:9000", "S3_ENDPOINT"},
    {"S3_ENDPOINT=http://", "S3_ENDPOINT"},
    {"S3_PUBLIC_ENDPOINT=http://user:pw@host", "S3_PUBLIC_ENDPOINT"},
    {"S3_FORCE_PATH_STYLE=maybe", "S3_FORCE_PATH_STYLE"},
    {"SSE=AES128", "SSE"},
    {"SSE_KMS_KEY_ID=alias/x", "SSE_KMS_KEY_ID"},
    {"LISTEN_ADDR=", "LISTEN_ADDR"},
    {"PORT=0", "PORT"},
    {"PORT=70000", "PORT"},
    {"PORT=80a", "PORT"},
    {"HTTP_THREADS=0", "HTTP_THREADS"},
    {"SHUTDOWN_GRACE=-1", "SHUTDOWN_GRACE"},
    {"S3_TIMEOUT=0", "S3_TIMEOUT"},
    {"S3_TIMEOUT=601", "S3_TIMEOUT"},
    {"API_TOKENS", "API_TOKENS"},
    {"API_TOKENS=short", "API_TOKENS"},
    {"API_TOKENS=alice:short", "API_TOKENS"},
    {"API_TOKENS=al ice:0123456789abcdef0123", "API_TOKENS"},
    {"API_TOKENS=:0123456789abcdef0123", "API_TOKENS"},
    {"ADMIN_TOKENS=root:short", "ADMIN_TOKENS"},
    {"JWT_JWKS_URL=http://idp.example.com/jwks", "JWT_JWKS_URL"},
    {"JWT_JWKS_URL=http://localhost.evil.com/jwks", "JWT_JWKS_URL"},
    {"JWT_JWKS_URL=http://127.0.0.1@evil.com/jwks", "JWT_JWKS_URL"},
    {"JWT_JWKS_URL=ftp://idp/jwks", "JWT_JWKS_URL"},
    {"JWT_JWKS_URL=https://idp.example.com/jwks", "JWT_ISSUER"},
    {"JWT_ISSUER=https://idp.example.com", "JWT_ISSUER"},
    {"JWT_JWKS_REFRESH_MIN=0", "JWT_JWKS_REFRESH_MIN"},
    {"EVENTS_API_KEY", "EVENTS_API_KEY"},
    {"EVENTS_API_KEY=a,b,c", "EVENTS_API_KEY"},
    {"EVENTS_API_KEY=a,", "EVENTS_API_KEY"},
    {"EVENTS_API_KEY=,a", "EVENTS_API_KEY"},
    {"EVENTS_API_KEY_HEADER=x api key", "EVENTS_API_KEY_HEADER"},
    {"EVENTS_BASIC_AUTH=nocolon", "EVENTS_BASIC_AUTH"},
    {"VARIANTS=", "VARIANTS"},
    {"VARIANTS=desktop", "VARIANTS"},
    {"VARIANTS=desktop:0", "VARIANTS"},
    {"VARIANTS=desktop:wide", "VARIANTS"},
    {"VARIANTS=Desktop:100", "VARIANTS"},
    {"VARIANTS=a:1,a:2", "VARIANTS"},
    {"VARIANTS=a:1,", "VARIANTS"},
    {"VARIANTS=a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1", "VARIANTS"},
    {"OUTPUT_FORMAT=bmp", "OUTPUT_FORMAT"},
    /* the new grammar: each message names the part that is wrong */
    {"VARIANTS=a:1,thumb:256x0:cover", "VARIANTS: \"thumb:256x0:cover\": the height"},
    {"VARIANTS=thumb:256x256:fill", "VARIANTS: \"thumb:256x256:fill\": the fit must be"},
    {"VARIANTS=thumb:256:cover", "VARIANTS: \"thumb:256:cover\": a fit needs WIDTHxHEIGHT"},
    {"VARIANTS=thumb:0x256", "VARIANTS: \"thumb:0x256\": the width"},
    {"VARIANTS=thumb:256x", "VARIANTS: \"thumb:256x\": the height"},
    {"VARIANTS=thumb:256x99999", "VARIANTS: \"thumb:256x99999\": the height"},
    {"VARIANTS=thumb:+256", "VARIANTS: \"thumb:+256\": the width"},
    {"VARIANTS=_status:100", "VARIANTS: \"_status:100\": the name"},
    {"VARIANTS=images:100", "VARIANTS: \"images\": is the first segment of SRC_PREFIX"},
    {"OUTPUT_FORMATS=jpeg,webp,jpeg", "OUTPUT_FORMATS: \"jpeg\": is listed twice"},
    {"OUTPUT_FORMATS=jpeg,bmp", "OUTPUT_FORMATS: \"bmp\": must be"},
    {"OUTPUT_FORMATS=jpeg,", "OUTPUT_FORMATS: \"\": must be"},
    {"OUTPUT_FORMAT=jpeg,webp", "OUTPUT_FORMAT: takes one format"},
    {"WEBP_QUALITY=0", "WEBP_QUALITY"},
    {"AVIF_QUALITY=101", "AVIF_QUALITY"},
    {"AVIF_EFFORT=10", "AVIF_EFFORT"},
    {"BLURHASH_COMPONENTS=10x3", "BLURHASH_COMPONENTS"},
    {"BLURHASH_COMPONENTS=4", "BLURHASH_COMPONENTS"},
    {"JPEG_QUALITY=0", "JPEG_QUALITY"},
    {"JPEG_QUALITY=101", "JPEG_QUALITY"},
    {"WATERMARK_TEXT=line\nbreak", "WATERMARK_TEXT"},
    {"WATERMARK_IMAGE=/nonexistent.png", "WATERMARK_IMAGE"},
    {"MAX_UPLOAD_BYTES=0", "MAX_UPLOAD_BYTES"},
    {"MAX_PIXELS=-5", "MAX_PIXELS"},
    {"WORKERS=1000", "WORKERS"},
    {"QUEUE_SIZE=0", "QUEUE_SIZE"},
    {"PRESIGN_PUT_EXPIRES=604801", "PRESIGN_PUT_EXPIRES"},
    {"PRESIGN_GET_EXPIRES=0", "PRESIGN_GET_EXPIRES"},
    {"RECONCILE_INTERVAL=-1", "RECONCILE_INTERVAL"},
    {"INDEX_MAX_ENTRIES=10", "INDEX_MAX_ENTRIES"},
    {"LOG_LEVEL=verbose", "LOG_LEVEL"},
    {"WEBHOOK_URLS=http://hooks.example.com/x", "WEBHOOK_URLS"},
    /* Each alone: URLs without a secret, a secret without URLs. */
    {"WEBHOOK_URLS=https://hooks.example.com/x", "WEBHOOK_SECRET"},
    {"WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "WEBHOOK_URLS"},
    {"WEBHOOK_SECRET=MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "WEBHOOK_SECRET"},
    {"WEBHOOK_TIMEOUT=0", "WEBHOOK_TIMEOUT"},
    {"WEBHOOK_QUEUE_SIZE=0", "WEBHOOK_QUEUE_SIZE"},
    {"WEBHOOK_RETRY_BASE_MS=0", "WEBHOOK_RETRY_BASE_MS"},
    {"WEBHOOK_MAX_ATTEMPTS=9", "WEBHOOK_MAX_ATTEMPTS"},
    {"HTTP_MAX_CONNECTIONS=0", "HTTP_MAX_CONNECTIONS"},
    {"HTTP_BODY_BUDGET=1000", "HTTP_BODY_BUDGET"},
    {"HTTP_REQUEST_TIMEOUT=0", "HTTP_REQUEST_TIMEOUT"},
    {"HTTP_CONNECTION_MEMORY=100", "HTTP_CONNECTION_MEMORY"},
    {"METRICS_TOKEN=short", "METRICS_TOKEN"},
    {"METRICS_TOKEN=has a space in it, long", "METRICS_TOKEN"},
    /* Browsers send Origin as scheme://host[:port], lowercase: anything else never matches. */
    {"CORS_ALLOWED_ORIGINS=*", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=null", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=app.example.com", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://app.example.com/", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://*.example.com", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://App.example.com", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://a.example:", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://a.example,", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=https://a,,https://b", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=ftp://files.example.com", "CORS_ALLOWED_ORIGINS"},
    {"CORS_ALLOWED_ORIGINS=http://1,http://2,http://3,http://4,http://5,http://6,http://7,"
     "http://8,http://9,http://10,http://11,http://12,http://13,http://14,http://15,"
     "http://16,http://17",
     "CORS_ALLOWED_ORIGINS"},
};

static void test_bad_values_name_the_variable(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct config c;
        char msg[256];
        enum rz_err err = load_with(bad_cases[i].setting, &c, msg, sizeof(msg));

        if (err != RZ_EINVAL ||
            strncmp(msg, bad_cases[i].named, strlen(bad_cases[i].named)) != 0)
            fail_msg("case %s: err %d, msg \"%s\"", bad_cases[i].setting, err, msg);
    }
}

static void test_defaults(void **state)
{
    struct config c;
    char msg[256];

    (void)state;
    assert_int_equal(load_with(NULL, &c, msg, sizeof(msg)), RZ_OK);
    assert_string_equal(c.src_prefix, "images/");
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.listen_addr, "0.0.0.0");
    assert_string_equal(c.s3_endpoint, "https://s3.us-east-1.amazonaws.com");
    assert_null(c.s3_public_endpoint);
    assert_int_equal(c.force_path_style, 0);
    assert_int_equal(c.nvariants, 3);
    assert_string_equal(c.variants[0].name, "desktop");
    assert_int_equal(c.variants[0].width, 1920);
    assert_string_equal(c.variants[1].name, "tablet");
    assert_int_equal(c.variants[1].width, 1024);
    assert_string_equal(c.variants[2].name, "phone");
    assert_int_equal(c.variants[2].width, 640);
    assert_int_equal(c.noutputs, 1);
    assert_int_equal(c.outputs[0], IMAGE_OUTPUT_SAME);
    assert_int_equal(c.jpeg_quality, 85);
    assert_int_equal(c.blurhash_x, 4);
    assert_int_equal(c.blurhash_y, 3);
    assert_int_equal(c.max_upload_bytes, 52428800);
    assert_int_equal(c.max_pixels, 100000000);
    assert_int_equal(c.queue_size, 1024);
    assert_int_equal(c.presign_put_expires, 900);
    assert_int_equal(c.presign_get_expires, 3600);
    assert_int_equal(c.reconcile_interval, 300);
    assert_int_equal(c.index_max_entries, 100000);
    assert_int_equal(c.shutdown_grace, 25);
    assert_int_equal(c.s3_timeout, 30);
    assert_int_equal(c.http_max_connections, 4096);
    assert_int_equal(c.http_body_budget, 33554432);
    assert_int_equal(c.http_request_timeout, 30);
    assert_int_equal(c.http_connection_memory, 32768);
    assert_null(c.metrics_token);
    assert_string_equal(c.events_api_key_header, "x-api-key");
    assert_int_equal(c.sse, CONFIG_SSE_NONE);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_null(c.webhook_urls);
    assert_null(c.webhook_secret);
    assert_int_equal(c.webhook_timeout, 5);
    assert_int_equal(c.webhook_queue_size, 10000);
    assert_int_equal(c.webhook_retry_base_ms, 5000);
    assert_int_equal(c.webhook_max_attempts, 8);
    config_cleanup(&c);
}

struct good_case {
    const char *setting;
    void (*check)(const struct config *c);
};

static void check_prefix(const struct config *c)
{
    assert_string_equal(c->src_prefix, "uploads/x/");
}
static void check_endpoint(const struct config *c)
{
    assert_string_equal(c->s3_endpoint, "http://127.0.0.1:9000");
}
static void check_public(const struct config *c)
{
    assert_string_equal(c->s3_public_endpoint, "https://files.example.com");
}
static void check_path_style(const struct config *c)
{
    assert_int_equal(c->force_path_style, 1);
}
static void check_sse(const struct config *c)
{
    assert_int_equal(c->sse, CONFIG_SSE_KMS);
}
static void check_port(const struct config *c)
{
    assert_int_equal(c->port, 9090);
}
static void check_tokens(const struct config *c)
{
    assert_int_equal(c->napi_tokens, 2);
    assert_string_equal(c->api_tokens[1], "fedcba9876543210fedc");
}
static void check_header(const struct config *c)
{
    assert_string_equal(c->events_api_key_header, "x-events-key");
}
static void check_variants(const struct config *c)
{
    assert_int_equal(c->nvariants, 2);
    assert_string_equal(c->variants[1].name, "thumb_2");
    assert_int_equal(c->variants[1].width, 150);
}
static void check_output(const struct config *c)
{
    assert_int_equal(c->noutputs, 1);
    assert_int_equal(c->outputs[0], IMAGE_OUTPUT_WEBP);
}
static void check_outputs(const struct config *c)
{
    assert_int_equal(c->noutputs, 3);
    assert_int_equal(c->outputs[0], IMAGE_OUTPUT_JPEG);
    assert_int_equal(c->outputs[1], IMAGE_OUTPUT_WEBP);
    assert_int_equal(c->outputs[2], IMAGE_OUTPUT_AVIF);
}
static void check_boxes(const struct config *c)
{
    assert_int_equal(c->nvariants, 4);
    assert_int_equal(c->variants[0].width, 1920);
    assert_int_equal(c->variants[0].height, 0);
    assert_int_equal(c->variants[1].height, 768);
    assert_int_equal(c->variants[1].fit, IMAGE_FIT_INSIDE);
    assert_int_equal(c->variants[2].fit, IMAGE_FIT_INSIDE);
    assert_string_equal(c->variants[3].name, "thumb");
    assert_int_equal(c->variants[3].width, 256);
    assert_int_equal(c->variants[3].height, 200);
    assert_int_equal(c->variants[3].fit, IMAGE_FIT_COVER);
}
static void check_web_quality(const struct config *c)
{
    assert_int_equal(c->webp_quality, 60);
}
static void check_blurhash(const struct config *c)
{
    assert_int_equal(c->blurhash_x, 9);
    assert_int_equal(c->blurhash_y, 1);
}
static void check_quality(const struct config *c)
{
    assert_int_equal(c->jpeg_quality, 70);
}
static void check_watermark(const struct config *c)
{
    assert_string_equal(c->watermark_text, "(c) me");
}
static void check_upload(const struct config *c)
{
    assert_int_equal(c->max_upload_bytes, 1000);
}
static void check_pixels(const struct config *c)
{
    assert_int_equal(c->max_pixels, 5000);
}
static void check_workers(const struct config *c)
{
    assert_int_equal(c->workers, 3);
}
static void check_queue(const struct config *c)
{
    assert_int_equal(c->queue_size, 7);
}
static void check_put(const struct config *c)
{
    assert_int_equal(c->presign_put_expires, 60);
}
static void check_get(const struct config *c)
{
    assert_int_equal(c->presign_get_expires, 604800);
}
static void check_reconcile(const struct config *c)
{
    assert_int_equal(c->reconcile_interval, 0);
}
static void check_index(const struct config *c)
{
    assert_int_equal(c->index_max_entries, 500);
}
static void check_level(const struct config *c)
{
    assert_int_equal(c->log_level, LOG_DEBUG);
}
static void check_grace(const struct config *c)
{
    assert_int_equal(c->shutdown_grace, 5);
}
static void check_threads(const struct config *c)
{
    assert_int_equal(c->http_threads, 8);
}
static void check_s3_timeout(const struct config *c)
{
    assert_int_equal(c->s3_timeout, 2);
}
static void check_listen(const struct config *c)
{
    assert_string_equal(c->listen_addr, "127.0.0.1");
}
static void check_event_keys(const struct config *c)
{
    assert_int_equal(c->nevents_api_keys, 2);
    assert_string_equal(c->events_api_keys[0], "old-key");
    assert_string_equal(c->events_api_keys[1], "new-key");
}
static void check_basic(const struct config *c)
{
    assert_string_equal(c->events_basic_auth, "eb:secret");
}

static void check_named_tokens(const struct config *c)
{
    assert_int_equal(c->napi_tokens, 2);
    assert_string_equal(c->api_tokens[0], "alice:0123456789abcdef0123");
    assert_string_equal(c->api_tokens[1], "bob.b@x-y_:0123456789abcdef0124");
}
static void check_admin_tokens(const struct config *c)
{
    assert_int_equal(c->nadmin_tokens, 1);
    assert_string_equal(c->admin_tokens[0], "ops@corp:fedcba9876543210fedc");
    assert_int_equal(c->napi_tokens, 1);
}

static void check_origins(const struct config *c)
{
    assert_int_equal(c->ncors_origins, 2);
    assert_string_equal(c->cors_origins[0], "https://app.example.com");
    assert_string_equal(c->cors_origins[1], "http://127.0.0.1:3000");
}
static void check_no_origins(const struct config *c)
{
    assert_int_equal(c->ncors_origins, 0);
}

static const struct good_case good_cases[] = {
    {"API_TOKENS=alice:0123456789abcdef0123,bob.b@x-y_:0123456789abcdef0124",
     check_named_tokens},
    {"ADMIN_TOKENS=ops@corp:fedcba9876543210fedc", check_admin_tokens},
    {"CORS_ALLOWED_ORIGINS=https://app.example.com, http://127.0.0.1:3000", check_origins},
    {"CORS_ALLOWED_ORIGINS=", check_no_origins},
    {"SRC_PREFIX=uploads/x/", check_prefix},
    {"S3_ENDPOINT=http://127.0.0.1:9000", check_endpoint},
    {"S3_PUBLIC_ENDPOINT=https://files.example.com", check_public},
    {"S3_FORCE_PATH_STYLE=true", check_path_style},
    {"SSE=aws:kms", check_sse},
    {"PORT=9090", check_port},
    {"API_TOKENS=0123456789abcdef0123,fedcba9876543210fedc", check_tokens},
    {"EVENTS_API_KEY_HEADER=X-Events-Key", check_header},
    {"EVENTS_API_KEY=old-key,new-key", check_event_keys},
    {"VARIANTS=big:3000,thumb_2:150", check_variants},
    {"OUTPUT_FORMAT=webp", check_output},
    {"OUTPUT_FORMATS=jpeg,webp,avif", check_outputs},
    {"VARIANTS=desktop:1920,tablet:1024x768,phone:640x640:inside,thumb:256x200:cover",
     check_boxes},
    {"WEBP_QUALITY=60", check_web_quality},
    {"BLURHASH_COMPONENTS=9x1", check_blurhash},
    {"JPEG_QUALITY=70", check_quality},
    {"WATERMARK_TEXT=(c) me", check_watermark},
    {"MAX_UPLOAD_BYTES=1000", check_upload},
    {"MAX_PIXELS=5000", check_pixels},
    {"WORKERS=3", check_workers},
    {"QUEUE_SIZE=7", check_queue},
    {"PRESIGN_PUT_EXPIRES=60", check_put},
    {"PRESIGN_GET_EXPIRES=604800", check_get},
    {"RECONCILE_INTERVAL=0", check_reconcile},
    {"INDEX_MAX_ENTRIES=500", check_index},
    {"LOG_LEVEL=debug", check_level},
    {"SHUTDOWN_GRACE=5", check_grace},
    {"HTTP_THREADS=8", check_threads},
    {"S3_TIMEOUT=2", check_s3_timeout},
    {"LISTEN_ADDR=127.0.0.1", check_listen},
    {"EVENTS_BASIC_AUTH=eb:secret", check_basic},
};

static void test_good_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        struct config c;
        char msg[256];

        if (load_with(good_cases[i].setting, &c, msg, sizeof(msg)) != RZ_OK)
            fail_msg("case %s: %s", good_cases[i].setting, msg);
        good_cases[i].check(&c);
        config_cleanup(&c);
    }
}

static void test_container_credentials_replace_static_keys(void **state)
{
    const char *env[] = {
        "DEST_BUCKET=dest-bucket",
        "SRC_BUCKET=src-bucket",
        "AWS_REGION=eu-west-1",
        "API_TOKENS=0123456789abcdef0123",
        "EVENTS_BASIC_AUTH=u:p",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/x",
        NULL,
    };
    struct config c;
    char msg[256];

    (void)state;
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_OK);
    assert_null(c.access_key);
    assert_string_equal(c.container_relative_uri, "/v2/credentials/x");
    assert_string_equal(c.s3_endpoint, "https://s3.eu-west-1.amazonaws.com");
    config_cleanup(&c);
}

/* JWTs alone are enough callers; issuer and audience come with a JWKS. */
static void test_jwt_without_tokens(void **state)
{
    const char *env[] = {
        "DEST_BUCKET=dest-bucket",
        "SRC_BUCKET=src-bucket",
        "EVENTS_API_KEY=k",
        "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY=secretsecretsecret",
        "JWT_JWKS_URL=http://127.0.0.1:8443/jwks",
        "JWT_ISSUER=https://idp.example.com/",
        "JWT_AUDIENCE=resizer",
        "AWS_REGION=eu-west-1",
        NULL,
        NULL,
    };
    struct config c;
    char msg[256];

    (void)state;
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(c.napi_tokens + c.nadmin_tokens, 0);
    assert_string_equal(c.jwt_jwks_url, "http://127.0.0.1:8443/jwks");
    assert_string_equal(c.jwt_issuer, "https://idp.example.com/");
    assert_string_equal(c.jwt_audience, "resizer");
    assert_string_equal(c.jwt_admin_scope, "resizer:admin");
    assert_int_equal(c.jwt_jwks_refresh_min, 30);
    config_cleanup(&c);
    env[5] = "JWT_JWKS_URL=file:///etc/resizer/jwks.json";
    env[7] = "JWT_ADMIN_SCOPE=ops";
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "JWT_AUDIENCE"));
    env[9] = "JWT_AUDIENCE=resizer";
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_OK);
    assert_string_equal(c.jwt_admin_scope, "ops");
    config_cleanup(&c);
    env[5] = "API_TOKENS=0123456789abcdef0123"; /* an issuer without a JWKS is a mistake */
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "JWT_ISSUER"));
}

static void test_no_credentials_at_all(void **state)
{
    const char *env[] = {
        "DEST_BUCKET=dest-bucket",         "SRC_BUCKET=src-bucket", "AWS_REGION=eu-west-1",
        "API_TOKENS=0123456789abcdef0123", "EVENTS_API_KEY=k",      NULL,
    };
    struct config c;
    char msg[256];

    (void)state;
    assert_int_equal(config_load(env, &c, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "AWS_ACCESS_KEY_ID"));
}

static void test_secrets_never_in_messages(void **state)
{
    struct config c;
    char msg[256];

    (void)state;
    assert_int_equal(load_with("API_TOKENS=topsecretvalue", &c, msg, sizeof(msg)), RZ_EINVAL);
    assert_null(strstr(msg, "topsecretvalue"));
}

static void test_help_lists_every_variable(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    static const char *const names[] = {
        "DEST_BUCKET",
        "SRC_BUCKET",
        "SRC_PREFIX",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "S3_ENDPOINT",
        "S3_PUBLIC_ENDPOINT",
        "S3_FORCE_PATH_STYLE",
        "LISTEN_ADDR",
        "PORT",
        "VARIANTS",
        "OUTPUT_FORMAT",
        "OUTPUT_FORMATS",
        "JPEG_QUALITY",
        "WEBP_QUALITY",
        "AVIF_QUALITY",
        "AVIF_EFFORT",
        "BLURHASH_COMPONENTS",
        "WATERMARK_TEXT",
        "WATERMARK_IMAGE",
        "MAX_UPLOAD_BYTES",
        "MAX_PIXELS",
        "WORKERS",
        "QUEUE_SIZE",
        "PRESIGN_PUT_EXPIRES",
        "PRESIGN_GET_EXPIRES",
        "SSE",
        "SSE_KMS_KEY_ID",
        "RECONCILE_INTERVAL",
        "INDEX_MAX_ENTRIES",
        "LOG_LEVEL",
        "API_TOKENS",
        "EVENTS_API_KEY_HEADER",
        "EVENTS_API_KEY",
        "EVENTS_BASIC_AUTH",
        "ADMIN_TOKENS",
        "JWT_JWKS_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_ADMIN_SCOPE",
        "JWT_JWKS_REFRESH_MIN",
        "HTTP_MAX_CONNECTIONS",
        "HTTP_BODY_BUDGET",
        "HTTP_REQUEST_TIMEOUT",
        "HTTP_CONNECTION_MEMORY",
        "METRICS_TOKEN",
        "CORS_ALLOWED_ORIGINS",
    };

    (void)state;
    config_print_help(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strstr(text, names[i]))
            fail_msg("--help lacks %s", names[i]);
    }
    assert_non_null(strstr(text, "[default: desktop:1920,tablet:1024,phone:640]"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_good_values),
        cmocka_unit_test(test_bad_values_name_the_variable),
        cmocka_unit_test(test_container_credentials_replace_static_keys),
        cmocka_unit_test(test_no_credentials_at_all),
        cmocka_unit_test(test_jwt_without_tokens),
        cmocka_unit_test(test_secrets_never_in_messages),
        cmocka_unit_test(test_help_lists_every_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
