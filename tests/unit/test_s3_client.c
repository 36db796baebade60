/* test_s3_client.c - the S3 calls over the AWS transport, against a
 * scripted local HTTP server (libmicrohttpd): which answers are tried
 * again (throttling, 5xx, clock skew) and which are final, that a view's
 * policy and abort switch are its own, the size cap, and the shape of
 * what is sent (signature, payload hash, session token); DynamoDB over
 * the same transport. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <microhttpd.h>
#include <pthread.h>

#include "script_srv.h"
#include "server/awshttp.h"
#include "server/creds.h"
#include "server/dynamodb.h"
#include "server/metrics.h"
#include "server/s3.h"

static const char ok_body[] = "hello world";

/* Like S3: a GET or HEAD gets the object, a PUT an empty 200. */
static struct MHD_Response *srv_answer(struct script_srv *s, const char *method)
{
    struct MHD_Response *resp;

    (void)s;
    if (strcmp(method, "PUT") == 0)
        return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    resp = MHD_create_response_from_buffer(sizeof(ok_body) - 1, (void *)ok_body,
                                           MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "ETag", "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
    MHD_add_response_header(resp, "Content-Type", "text/plain");
    return resp;
}

static int srv_setup(void **state)
{
    static struct script_srv s = {
        .record = {"Authorization", "x-amz-content-sha256", "x-amz-security-token"},
        .answer = srv_answer,
    };

    *state = &s;
    return script_srv_start(&s);
}

static int srv_teardown(void **state)
{
    script_srv_stop(*state);
    return 0;
}

/* One transport, an S3 client of 3 attempts with short waits over it. */
struct client {
    struct creds_provider *creds;
    struct metrics *metrics;
    struct awshttp *aws;
    struct s3 *s3;
    struct s3_conn *conn;
};

static void client_open(struct client *c, const struct script_srv *s, const char *token)
{
    struct creds_source src = {.access_key = "AKIDEXAMPLE",
                               .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               .session_token = token};
    char endpoint[64];
    char msg[256];
    struct s3_opts o = {.endpoint = endpoint,
                        .region = "eu-west-1",
                        .max_attempts = 3,
                        .backoff_base_ms = 5,
                        .timeout_ms = 5000};

    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", s->port);
    assert_int_equal(creds_provider_new(&src, &c->creds, msg, sizeof(msg)), RZ_OK);
    c->metrics = metrics_new();
    assert_int_equal(awshttp_new(&(struct awshttp_opts){c->creds, c->metrics}, &c->aws), RZ_OK);
    o.transport = c->aws;
    assert_int_equal(s3_new(&o, &c->s3, msg, sizeof(msg)), RZ_OK);
    c->conn = s3_conn_new(c->s3);
    assert_non_null(c->conn);
}

static void client_close(struct client *c)
{
    s3_conn_free(c->conn);
    s3_free(c->s3);
    awshttp_free(c->aws);
    metrics_free(c->metrics);
    creds_provider_free(c->creds);
}

#define S3ERR(code) "<Error><Code>" code "</Code><Message>m</Message></Error>"

static void test_retry_table(void **state)
{
    static const struct {
        int fail_first;
        unsigned status;
        const char *body;
        enum rz_err err;
        int hits;
        const char *in_msg;
    } cases[] = {
        {1, 503, S3ERR("SlowDown"), RZ_OK, 2, NULL},
        {2, 500, S3ERR("InternalError"), RZ_OK, 3, NULL},
        {1, 429, "", RZ_OK, 2, NULL},
        /* 400s S3 means as "try again": the next attempt is signed anew */
        {1, 400, S3ERR("RequestTimeTooSkewed"), RZ_OK, 2, NULL},
        {1, 400, S3ERR("RequestTimeout"), RZ_OK, 2, NULL},
        {3, 503, S3ERR("SlowDown"), RZ_EUPSTREAM, 3, "SlowDown: m"},
        {1, 404, S3ERR("NoSuchKey"), RZ_ENOTFOUND, 1, "NoSuchKey: m"},
        {1, 403, S3ERR("AccessDenied"), RZ_EDENIED, 1, "AccessDenied: m"},
        {1, 400, S3ERR("InvalidArgument"), RZ_EINVAL, 1, "InvalidArgument: m"},
        {1, 400, "not xml", RZ_EINVAL, 1, "S3 answered 400"},
    };
    struct script_srv *s = *state;
    struct client c;

    client_open(&c, s, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct s3_object obj;
        char msg[256];
        enum rz_err err;

        script_srv_script(s, cases[i].fail_first, cases[i].status, cases[i].body);
        err = s3_get_object(c.conn, "src", "images/a.jpg", 1024, &obj, msg, sizeof(msg));
        if (err != cases[i].err || s->hits != cases[i].hits ||
            (cases[i].in_msg && !strstr(msg, cases[i].in_msg)))
            fail_msg("case %zu: %s after %d requests (%s)", i, rz_err_name(err), s->hits, msg);
        if (err == RZ_OK) {
            assert_int_equal(obj.len, sizeof(ok_body) - 1);
            assert_memory_equal(obj.data, ok_body, obj.len);
            assert_string_equal(obj.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
            assert_string_equal(obj.content_type, "text/plain");
        }
        s3_object_cleanup(&obj);
    }
    assert_true(metrics_get(c.metrics, "resizer_s3_requests_total",
                            "op=\"GetObject\",outcome=\"EUPSTREAM\"") >= 3.0);
    client_close(&c);
}

/* A view follows its own policy and is cut alone; the base is untouched. */
static void test_view_policy_and_abort(void **state)
{
    static const struct awshttp_policy once = {2000, 1000, 1, 5, 5000};
    struct script_srv *s = *state;
    struct client c;
    struct s3 *view = NULL;
    struct s3_conn *vc;
    struct s3_head h;
    char msg[256];

    client_open(&c, s, NULL);
    assert_int_equal(s3_view_new(c.s3, &once, &view), RZ_OK);
    vc = s3_conn_new(view);
    assert_non_null(vc);
    script_srv_script(s, 5, 503, S3ERR("SlowDown"));
    assert_int_equal(s3_head_object(vc, "src", "k", &h, msg, sizeof(msg)), RZ_EUPSTREAM);
    assert_int_equal(s->hits, 1);
    s3_abort(view);
    script_srv_script(s, 0, 200, NULL);
    assert_int_equal(s3_head_object(vc, "src", "k", &h, msg, sizeof(msg)), RZ_EUPSTREAM);
    assert_non_null(strstr(msg, "abandoned"));
    assert_int_equal(s->hits, 0);
    assert_int_equal(s3_head_object(c.conn, "src", "k", &h, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(h.size, sizeof(ok_body) - 1);
    assert_int_equal(s->hits, 1);
    s3_head_cleanup(&h);
    s3_conn_free(vc);
    s3_free(view);
    client_close(&c);
}

/* Over the cap: refused from Content-Length, with the caller's limit. */
static void test_size_cap(void **state)
{
    struct script_srv *s = *state;
    struct client c;
    struct s3_object obj;
    char msg[256];

    client_open(&c, s, NULL);
    script_srv_script(s, 0, 200, NULL);
    assert_int_equal(s3_get_object(c.conn, "src", "k", 4, &obj, msg, sizeof(msg)), RZ_ETOOBIG);
    assert_string_equal(msg, "object is larger than 4 bytes");
    assert_null(obj.data);
    assert_int_equal(s->hits, 1);
    client_close(&c);
}

/* What S3 receives: a SigV4 signature for s3 in the client's region, the
 * body's SHA-256, and the session token when the credentials carry one. */
static void test_request_shape(void **state)
{
    static const char token[] = "FwoGZXIvYXdzEXAMPLETOKEN";
    struct script_srv *s = *state;
    struct client c;
    char msg[256];

    client_open(&c, s, token);
    script_srv_script(s, 0, 200, NULL);
    assert_int_equal(s3_put_object(c.conn, "src", "a b.jpg", "abc", 3, "image/jpeg", NULL, NULL,
                                   0, msg, sizeof(msg)),
                     RZ_OK);
    assert_true(strncmp(script_srv_value(s, "Authorization"),
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 40) == 0);
    assert_non_null(strstr(script_srv_value(s, "Authorization"),
                           "/eu-west-1/s3/aws4_request, SignedHeaders=content-type;host;"
                           "x-amz-content-sha256;x-amz-date;x-amz-security-token, "));
    assert_string_equal(script_srv_value(s, "x-amz-content-sha256"),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(script_srv_value(s, "x-amz-security-token"), token);
    client_close(&c);
}

/* S3 and DynamoDB over one transport: one set of credentials, one pool,
 * one metrics registry, each service under its own policy and name. */
static void test_shared_transport(void **state)
{
    struct script_srv *s = *state;
    struct client c;
    struct ddb *d = NULL;
    struct s3_head h;
    json_t *req = json_pack("{s:s}", "TableName", "state");
    char endpoint[64];
    char msg[256];
    struct ddb_opts o = {.endpoint = endpoint, .region = "eu-west-1", .max_attempts = 2};

    client_open(&c, s, NULL);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", s->port);
    o.transport = c.aws;
    assert_int_equal(ddb_new(&o, &d, msg, sizeof(msg)), RZ_OK);
    script_srv_script(s, 0, 200, NULL);
    /* The stand-in answers text, not JSON: final, not retried. */
    assert_int_equal(ddb_call(d, "GetItem", req, NULL, msg, sizeof(msg)), RZ_EUPSTREAM);
    assert_non_null(strstr(msg, "not a JSON object"));
    assert_true(strstr(script_srv_value(s, "Authorization"),
                       "/eu-west-1/dynamodb/aws4_request") != NULL);
    assert_int_equal(s3_head_object(c.conn, "src", "k", &h, msg, sizeof(msg)), RZ_OK);
    assert_true(strstr(script_srv_value(s, "Authorization"), "/eu-west-1/s3/aws4_request") !=
                NULL);
    assert_int_equal(s->hits, 2);
    assert_true(metrics_get(c.metrics, "resizer_dynamodb_requests_total",
                            "op=\"GetItem\",outcome=\"EUPSTREAM\"") == 1.0);
    assert_true(metrics_get(c.metrics, "resizer_s3_requests_total",
                            "op=\"HeadObject\",outcome=\"ok\"") == 1.0);
    s3_head_cleanup(&h);
    json_decref(req);
    ddb_free(d);
    client_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_table),      cmocka_unit_test(test_view_policy_and_abort),
        cmocka_unit_test(test_size_cap),         cmocka_unit_test(test_request_shape),
        cmocka_unit_test(test_shared_transport),
    };

    return cmocka_run_group_tests(tests, srv_setup, srv_teardown);
}
