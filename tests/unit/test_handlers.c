/* test_handlers.c - the routes that reach S3 objects, served by the real
 * HTTP server on a loopback port over the fake object store (no S3): an
 * event taken (202) becomes variants, an image's status read from the
 * record another replica left in S3 (200 with signed URLs, 404, 503 with
 * Retry-After when S3 fails), and /readyz following S3's reachability. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <vips/vips.h>

#include "fixtures.h"
#include "handlers/handlers.h"
#include "server/creds.h"
#include "server/readiness.h"

#define TOKEN "0123456789abcdef0123"
#define ADMIN "admin-token-0123456789abcdef"
#define UNKNOWN_ID "0f0e0d0c-0b0a-4908-8706-050403020100"

static const char *const env[] = {"ADMIN_TOKENS=ops:" ADMIN, NULL};

struct served {
    struct fix_service a;   /* ran the job, left its records in S3 */
    struct fix_service b;   /* serves HTTP */
    struct objstore *probe; /* b's probe client */
    struct creds_provider *creds;
    struct s3 *s3; /* presigning only: never connects */
    struct readiness *readiness;
    struct auth *auth;
    struct app app;
    struct http_server *http;
    char id[INDEX_ID_LEN + 1];
    void *jpeg;
    size_t len;
};

static void start_http(struct served *s)
{
    const struct config *c = &s->b.cfg;
    struct creds_source src = {c->access_key, c->secret_key, NULL, NULL, NULL, NULL, NULL};
    struct s3_opts so = {.endpoint = "http://127.0.0.1:9",
                         .region = c->region,
                         .force_path_style = 1,
                         .timeout_ms = 100,
                         .connect_timeout_ms = 100,
                         .max_attempts = 1,
                         .backoff_base_ms = 1};
    struct readiness_opts ho = {s->probe, c->src_bucket, c->src_prefix, c->dest_bucket,
                                10,       100,           NULL};
    struct auth_opts ao = {(const char *const *)c->api_tokens,
                           c->napi_tokens,
                           (const char *const *)c->admin_tokens,
                           c->nadmin_tokens,
                           NULL,
                           NULL,
                           NULL,
                           NULL,
                           30,
                           1000};
    struct http_server_opts hs = {.listen_addr = "127.0.0.1",
                                  .port = 0,
                                  .threads = 2,
                                  .connection_timeout = 5,
                                  .max_connections = 16,
                                  .connection_memory = 65536,
                                  .body_budget = 1 << 20,
                                  .request_timeout = 5,
                                  .routes = handlers_routes,
                                  .nroutes = handlers_nroutes,
                                  .ctx = &s->app,
                                  .metrics = s->b.m};
    char msg[256] = "";

    assert_int_equal(creds_provider_new(&src, &s->creds, msg, sizeof(msg)), RZ_OK);
    so.creds = s->creds;
    assert_int_equal(s3_new(&so, &s->s3, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(readiness_new(&ho, &s->readiness), RZ_OK);
    assert_int_equal(auth_new(&ao, time(NULL), &s->auth, msg, sizeof(msg)), RZ_OK);
    s->app = (struct app){c, s->b.m, s->s3, s->b.status, s->b.jobs, s->readiness, s->auth};
    assert_int_equal(http_server_start(&hs, &s->http, msg, sizeof(msg)), RZ_OK);
}

static int setup(void **state)
{
    static struct served s;
    struct index_entry e = {0};

    memset(&s, 0, sizeof(s));
    fix_service_start(&s.a, &(struct fix_service_opts){.owner = "a"});
    fix_service_start(&s.b, &(struct fix_service_opts){.env = env,
                                                       .owner = "b",
                                                       .objects = s.a.objects});
    s.probe = fake_objstore_view(s.a.objects);
    s.jpeg = fix_jpeg(32, 24, &s.len);
    fake_objstore_add(s.a.objects, FIX_SRC, "images/a.jpg", s.jpeg, s.len, NULL);
    assert_int_equal(fix_submit(&s.a, "images/a.jpg", NULL, 0), RZ_OK);
    assert_true(fix_wait_finished(&s.a, "images/a.jpg", 5000));
    assert_int_equal(jobs_drain(s.a.jobs, 5), 0);
    assert_true(fix_record(&s.a, "images/a.jpg", &e));
    memcpy(s.id, e.id, sizeof(s.id));
    index_entry_cleanup(&e);
    start_http(&s);
    *state = &s;
    return 0;
}

static int teardown(void **state)
{
    struct served *s = *state;

    status_stop_lookups(s->b.status);
    http_server_stop(s->http);
    auth_free(s->auth);
    readiness_free(s->readiness);
    fix_service_stop(&s->b);
    fix_service_stop(&s->a);
    objstore_free(s->probe);
    s3_free(s->s3);
    creds_provider_free(s->creds);
    g_free(s->jpeg);
    return 0;
}

struct reply {
    long status;
    char body[8192];
    size_t len;
    char retry_after[16];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;

    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;

    if (len > 13 && strncasecmp(p, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof(r->retry_after), "%.*s", (int)(len - 15), p + 13);
    return len;
}

/* One request to the server; header (may be NULL) added as is. */
static struct reply request(struct served *s, const char *method, const char *path,
                            const char *header, const char *body)
{
    static struct reply r;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[256];

    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_server_port(s->http), path);
    h = curl_slist_append(h, header ? header : "X-None: 1");
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
}

static const char event_fmt[] =
    "{\"version\":\"0\",\"id\":\"6a7e8feb-b491-4cf7-a9f1-bf3703467718\","
    "\"detail-type\":\"Object Created\",\"source\":\"aws.s3\",\"account\":\"111122223333\","
    "\"time\":\"2024-01-01T00:00:00Z\",\"region\":\"us-east-1\","
    "\"resources\":[\"arn:aws:s3:::src\"],\"detail\":{\"version\":\"0\","
    "\"bucket\":{\"name\":\"src\"},\"object\":{\"key\":\"%s\",\"size\":%zu},"
    "\"request-id\":\"R\",\"requester\":\"111122223333\","
    "\"source-ip-address\":\"127.0.0.1\",\"reason\":\"PutObject\"}}";

static void test_event_becomes_variants(void **state)
{
    struct served *s = *state;
    struct index_entry e = {0};
    char body[1024];
    struct reply r;

    fake_objstore_add(s->a.objects, FIX_SRC, "images/b.jpg", s->jpeg, s->len, NULL);
    snprintf(body, sizeof(body), event_fmt, "images/b.jpg", s->len);
    r = request(s, "POST", "/v1/events", "X-Api-Key: wrong-key", body);
    assert_int_equal(r.status, 401);
    r = request(s, "POST", "/v1/events", "X-Api-Key: events-key-123", body);
    assert_int_equal(r.status, 202);
    assert_true(fix_wait_finished(&s->b, "images/b.jpg", 5000));
    assert_true(fix_record(&s->b, "images/b.jpg", &e));
    assert_int_equal(e.state, INDEX_DONE);
    index_entry_cleanup(&e);
    assert_non_null(fake_objstore_find(s->a.objects, FIX_DEST, "small/b.jpg"));
}

/* GET /v1/images/{id} on the replica that did not run the job. */
struct image_case {
    const char *name;
    int known; /* the id of a's job, else UNKNOWN_ID */
    const char *auth;
    struct fake_fault fault;
    long status;
    const char *body_has;
    const char *retry_after; /* NULL: none */
};

static const struct image_case image_cases[] = {
    {"no token", 1, NULL, {0}, 401, "\"code\":", NULL},
    {"S3 failing",
     1,
     "Authorization: Bearer " ADMIN,
     {"get", "_status/", 1, 0, RZ_EUPSTREAM, 0},
     503,
     "upstream_unavailable",
     "5"},
    {"unknown id", 0, "Authorization: Bearer " ADMIN, {0}, 404, "\"code\":", NULL},
    /* An event's image has no uploader: only admins see it. */
    {"not the caller's image", 1, "Authorization: Bearer " TOKEN, {0}, 404, "\"code\":", NULL},
    {"the other replica's record",
     1,
     "Authorization: Bearer " ADMIN,
     {0},
     200,
     "\"state\":\"done\"",
     NULL},
};

static void test_image_status_from_s3(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(image_cases) / sizeof(image_cases[0]); i++) {
        const struct image_case *c = &image_cases[i];
        struct served *s;
        struct reply r;
        char path[128];
        void *st;

        print_message("case: %s\n", c->name);
        setup(&st);
        s = st;
        if (c->fault.op)
            fake_objstore_fail(s->b.objects, &c->fault);
        snprintf(path, sizeof(path), "/v1/images/%s", c->known ? s->id : UNKNOWN_ID);
        r = request(s, "GET", path, c->auth, NULL);
        assert_int_equal(r.status, c->status);
        assert_non_null(strstr(r.body, c->body_has));
        assert_string_equal(r.retry_after, c->retry_after ? c->retry_after : "");
        if (r.status == 200) {
            /* The variant's URL is signed for the destination object. */
            assert_non_null(strstr(r.body, "/dest/small/a.jpg?"));
            assert_non_null(strstr(r.body, "X-Amz-Signature="));
        }
        teardown(&st);
    }
}

struct ready_wait {
    struct served *s;
    long want;
};

static int ready_is(void *arg)
{
    struct ready_wait *w = arg;

    return request(w->s, "GET", "/readyz", NULL, NULL).status == w->want;
}

static void test_readyz_follows_s3(void **state)
{
    struct served *s = *state;
    struct ready_wait w = {s, 200};

    assert_true(fix_wait(ready_is, &w, 2000));
    fake_objstore_fail(s->probe, &(struct fake_fault){"list", NULL, 1, 0, RZ_EUPSTREAM, 0});
    w.want = 503;
    assert_true(fix_wait(ready_is, &w, 2000));
    assert_non_null(strstr(request(s, "GET", "/readyz", NULL, NULL).body, "s3 unreachable"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_becomes_variants, setup, teardown),
        cmocka_unit_test(test_image_status_from_s3),
        cmocka_unit_test_setup_teardown(test_readyz_follows_s3, setup, teardown),
    };
    int failed;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
