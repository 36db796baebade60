/* test_dynamodb.c - the DynamoDB client: how answers are classified (what a
 * caller retries, what is final, what is a lost condition), the headers a
 * request is signed and sent with, and bounded retries when the server is
 * unreachable; against a scripted local HTTP server (libmicrohttpd): what
 * goes on the wire, which answers are retried and how often, an oversized
 * answer, and concurrent callers. Signatures themselves are checked against botocore by
 * tests/integration/test_dynamodb_sign.py; the protocol against dynalite by
 * tests/integration/test_dynamodb.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "script_srv.h"
#include "server/awshttp.h"
#include "server/dynamodb.h"
#include "server/dynamodb_internal.h"
#include "server/metrics.h"

#define T "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"

/* ---- classification ---- */

struct classify_case {
    long status;
    const char *body;
    enum rz_err err;
    int retry;
    int has_body;       /* *body_out is set */
    const char *in_msg; /* substring of msg, or NULL */
};

static void test_classify_table(void **state)
{
    static const struct classify_case cases[] = {
        {200, "{\"Item\":{\"pk\":{\"S\":\"a\"}}}", RZ_OK, 0, 1, NULL},
        {200, "{}", RZ_OK, 0, 1, NULL},
        /* untrusted answers: not JSON, not an object, empty, duplicate keys */
        {200, "not json", RZ_EUPSTREAM, 0, 0, "not a JSON object"},
        {200, "[1,2]", RZ_EUPSTREAM, 0, 0, "not a JSON object"},
        {200, "", RZ_EUPSTREAM, 0, 0, NULL},
        {200, "{\"a\":1,\"a\":2}", RZ_EUPSTREAM, 0, 0, NULL},
        {400,
         T "ConditionalCheckFailedException\",\"message\":\"The conditional request failed\","
           "\"Item\":{\"pk\":{\"S\":\"k\"}}}",
         RZ_ECONFLICT, 0, 1, "ConditionalCheckFailedException: The conditional request failed"},
        {400, T "ResourceNotFoundException\",\"message\":\"Requested resource not found\"}",
         RZ_ENOTFOUND, 0, 0, "ResourceNotFoundException"},
        {400, T "ProvisionedThroughputExceededException\",\"message\":\"slow down\"}",
         RZ_EUPSTREAM, 1, 0, "ProvisionedThroughputExceededException"},
        {400, T "ThrottlingException\"}", RZ_EUPSTREAM, 1, 0, "ThrottlingException"},
        {400, "{\"__type\":\"RequestLimitExceeded\"}", RZ_EUPSTREAM, 1, 0,
         "RequestLimitExceeded"},
        {400, T "TransactionConflictException\"}", RZ_EUPSTREAM, 1, 0, NULL},
        {400,
         T "ValidationException\",\"message\":\"One or more parameter values were invalid\"}",
         RZ_EINVAL, 0, 0, "ValidationException: One or more parameter values"},
        {400, T "SerializationException\"}", RZ_EINVAL, 0, 0, "SerializationException"},
        /* authentication errors may quote the header: their text is not copied */
        {400,
         T "IncompleteSignatureException\",\"message\":\"Authorization=AWS4-HMAC-SHA256 "
           "Credential=AKIDSECRETISH\"}",
         RZ_EINVAL, 0, 0, "IncompleteSignatureException"},
        {403, T "AccessDeniedException\",\"Message\":\"not authorized to perform PutItem\"}",
         RZ_EINVAL, 0, 0, "AccessDeniedException: not authorized"},
        {429, "{}", RZ_EUPSTREAM, 1, 0, NULL},
        {413, "", RZ_EINVAL, 0, 0, "413 unknown"},
        {500, T "InternalServerError\"}", RZ_EUPSTREAM, 1, 0, "500 InternalServerError"},
        {503, "<html>Service Unavailable</html>", RZ_EUPSTREAM, 1, 0, "503 unknown"},
        {302, "", RZ_EUPSTREAM, 0, 0, NULL},
        /* a hostile __type is not copied into logs */
        {400, "{\"__type\":\"x#Bad\\nType\"}", RZ_EINVAL, 0, 0, "400 unknown"},
        {400, "{\"__type\":42}", RZ_EINVAL, 0, 0, "400 unknown"},
        /* transactions: a failed condition is a conflict; throttling is transient */
        {400,
         T "TransactionCanceledException\",\"CancellationReasons\":[{\"Code\":\"None\"},"
           "{\"Code\":\"ConditionalCheckFailed\",\"Item\":{}}]}",
         RZ_ECONFLICT, 0, 1, NULL},
        {400,
         T "TransactionCanceledException\",\"CancellationReasons\":[{\"Code\":\"None\"},"
           "{\"Code\":\"ThrottlingError\"}]}",
         RZ_EUPSTREAM, 1, 0, NULL},
        {400,
         T "TransactionCanceledException\",\"CancellationReasons\":[{\"Code\":"
           "\"ValidationError\"}]}",
         RZ_EINVAL, 0, 0, NULL},
        {400, T "TransactionCanceledException\",\"CancellationReasons\":\"junk\"}", RZ_EINVAL, 0,
         0, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct classify_case *c = &cases[i];
        json_t *body = NULL;
        char msg[256];
        int retry = -1;
        enum rz_err err = ddb_classify(c->status, c->body, strlen(c->body), &retry, &body, msg,
                                       sizeof(msg));

        if (err != c->err || retry != c->retry || (body != NULL) != c->has_body ||
            (c->in_msg && !strstr(msg, c->in_msg)))
            fail_msg("case %zu (%ld %s): got %s retry %d body %d msg '%s'", i, c->status,
                     c->body, rz_err_name(err), retry, body != NULL, msg);
        assert_null(strstr(msg, "AKIDSECRETISH"));
        json_decref(body);
    }
}

static void test_conflict_keeps_item(void **state)
{
    const char *b = T "ConditionalCheckFailedException\",\"Item\":{\"pk\":{\"S\":\"img\"},"
                      "\"state\":{\"S\":\"processing\"}}}";
    json_t *body = NULL;
    char msg[128];
    int retry;

    assert_int_equal(ddb_classify(400, b, strlen(b), &retry, &body, msg, sizeof(msg)),
                     RZ_ECONFLICT);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(body, "Item"), "state"), "S")),
                        "processing");
    json_decref(body);
}

/* ---- client construction ---- */

static struct creds_provider *static_creds(const char *token)
{
    struct creds_source src = {.access_key = "AKIDEXAMPLE",
                               .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               .session_token = token};
    struct creds_provider *p = NULL;
    char msg[128];

    assert_int_equal(creds_provider_new(&src, &p, msg, sizeof(msg)), RZ_OK);
    return p;
}

static void test_new_endpoints(void **state)
{
    struct creds_provider *p = static_creds(NULL);
    struct ddb *d = NULL;
    char msg[256];
    struct {
        const char *endpoint;
        const char *region;
        enum rz_err err;
        const char *url;
    } cases[] = {
        {NULL, "eu-west-1", RZ_OK, "https://dynamodb.eu-west-1.amazonaws.com/"},
        {"", "us-east-1", RZ_OK, "https://dynamodb.us-east-1.amazonaws.com/"},
        {"http://127.0.0.1:8000", "us-east-1", RZ_OK, "http://127.0.0.1:8000/"},
        {"http://127.0.0.1:8000/", "us-east-1", RZ_OK, "http://127.0.0.1:8000/"},
        {"https://ddb.example.com:443", "us-east-1", RZ_OK, "https://ddb.example.com/"},
        {"ftp://x", "us-east-1", RZ_EINVAL, NULL},
        {"http://h/path", "us-east-1", RZ_EINVAL, NULL},
        {"http://user@h", "us-east-1", RZ_EINVAL, NULL},
        {NULL, NULL, RZ_EINVAL, NULL},
        {NULL, "", RZ_EINVAL, NULL},
        {NULL, "eu-west-1.evil.com/x", RZ_EINVAL, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ddb_opts o = {.endpoint = cases[i].endpoint,
                             .region = cases[i].region,
                             .creds = p};
        enum rz_err err = ddb_new(&o, &d, msg, sizeof(msg));

        if (err != cases[i].err)
            fail_msg("case %zu: %s (%s)", i, rz_err_name(err), msg);
        if (err == RZ_OK)
            assert_string_equal(ddb_url(d), cases[i].url);
        else
            assert_null(d);
        ddb_free(d);
        d = NULL;
    }
    creds_provider_free(p);
}

/* ---- request building ---- */

static int has_line(const struct curl_slist *l, const char *line)
{
    for (; l; l = l->next) {
        if (strcmp(l->data, line) == 0)
            return 1;
    }
    return 0;
}

static const char *line_with(const struct curl_slist *l, const char *prefix)
{
    for (; l; l = l->next) {
        if (strncmp(l->data, prefix, strlen(prefix)) == 0)
            return l->data;
    }
    return NULL;
}

static void test_sign_headers(void **state)
{
    struct creds_provider *p = static_creds(NULL);
    struct ddb_opts o = {.endpoint = "http://127.0.0.1:8000", .region = "us-east-1", .creds = p};
    struct sigv4_creds plain = {"AKIDEXAMPLE", "secret", NULL};
    struct sigv4_creds temp = {"ASIAEXAMPLE", "secret", "token/with+slash=="};
    const char *body = "{\"TableName\":\"t\"}";
    struct ddb *d = NULL;
    struct curl_slist *l;
    enum rz_err err;
    char msg[128];
    const char *auth;

    assert_int_equal(ddb_new(&o, &d, msg, sizeof(msg)), RZ_OK);
    l = ddb_sign(d, "PutItem", body, strlen(body), &plain, 1369353600, &err);
    assert_int_equal(err, RZ_OK);
    assert_true(has_line(l, "Content-Type: application/x-amz-json-1.0"));
    assert_true(has_line(l, "X-Amz-Target: DynamoDB_20120810.PutItem"));
    assert_true(has_line(l, "x-amz-date: 20130524T000000Z"));
    assert_true(has_line(l, "Expect: "));
    assert_null(line_with(l, "x-amz-security-token"));
    auth = line_with(l, "Authorization: ");
    assert_non_null(auth);
    assert_non_null(strstr(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20130524/us-east-1/"
                                 "dynamodb/aws4_request, SignedHeaders=content-type;host;"
                                 "x-amz-date;x-amz-target, Signature="));
    awshttp_headers_free(l);

    /* a session token is sent and signed */
    l = ddb_sign(d, "Query", body, strlen(body), &temp, 1369353600, &err);
    assert_int_equal(err, RZ_OK);
    assert_true(has_line(l, "x-amz-security-token: token/with+slash=="));
    assert_true(has_line(l, "X-Amz-Target: DynamoDB_20120810.Query"));
    assert_non_null(strstr(line_with(l, "Authorization: "),
                           "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
                           "x-amz-target, "));
    awshttp_headers_free(l);
    ddb_free(d);
    creds_provider_free(p);
}

static void test_op_names(void **state)
{
    assert_true(ddb_op_valid("PutItem"));
    assert_true(ddb_op_valid("UpdateTimeToLive"));
    assert_false(ddb_op_valid(""));
    assert_false(ddb_op_valid(NULL));
    assert_false(ddb_op_valid("Put Item"));
    assert_false(ddb_op_valid("PutItem\r\nX-Evil: 1"));
    assert_false(ddb_op_valid("Get\"Item"));
}

/* ---- calls that never reach a server ---- */

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_unreachable_bounded(void **state)
{
    struct creds_provider *p = static_creds(NULL);
    struct metrics *m = metrics_new();
    char endpoint[64];
    struct ddb_opts o = {.endpoint = endpoint,
                         .region = "us-east-1",
                         .creds = p,
                         .max_attempts = 3,
                         .backoff_base_ms = 20,
                         .connect_timeout_ms = 500,
                         .timeout_ms = 1000,
                         .metrics = m};
    struct ddb *d = NULL;
    json_t *req = json_pack("{s:s}", "TableName", "images");
    json_t *resp = (json_t *)1;
    char msg[256];
    double start;

    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", closed_port());
    assert_int_equal(ddb_new(&o, &d, msg, sizeof(msg)), RZ_OK);
    start = awshttp_now_secs();
    assert_int_equal(ddb_call(d, "GetItem", req, &resp, msg, sizeof(msg)), RZ_EUPSTREAM);
    assert_true(awshttp_now_secs() - start < 3.0);
    assert_null(resp);
    assert_non_null(strstr(msg, "unreachable"));
    assert_true(metrics_get(m, "resizer_dynamodb_requests_total",
                            "op=\"GetItem\",outcome=\"EUPSTREAM\"") == 3.0);

    /* refused before anything is sent */
    assert_int_equal(ddb_call(d, "Get Item", req, &resp, msg, sizeof(msg)), RZ_EINVAL);
    json_decref(req);
    req = json_integer(1);
    assert_int_equal(ddb_call(d, "GetItem", req, NULL, NULL, 0), RZ_EINVAL);
    json_decref(req);
    req = json_pack("{s:s}", "TableName", "x");
    {
        size_t big = DDB_MAX_REQUEST + 10;
        char *s = malloc(big + 1);

        memset(s, 'a', big);
        s[big] = '\0';
        json_object_set_new(req, "Pad", json_string(s));
        free(s);
    }
    assert_int_equal(ddb_call(d, "PutItem", req, &resp, msg, sizeof(msg)), RZ_ETOOBIG);
    assert_true(metrics_get(m, "resizer_dynamodb_requests_total",
                            "op=\"PutItem\",outcome=\"ETOOBIG\"") == 0.0);
    json_decref(req);
    ddb_free(d);
    metrics_free(m);
    creds_provider_free(p);
}

/* ---- a scripted DynamoDB stand-in (libmicrohttpd) ---- */

static size_t srv_huge_len; /* > 0: the success answer is this many bytes */

static ssize_t srv_huge(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= srv_huge_len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > srv_huge_len - pos)
        max = (size_t)(srv_huge_len - pos);
    memset(buf, pos == 0 ? '{' : ' ', max);
    return (ssize_t)max;
}

static struct MHD_Response *srv_answer(struct script_srv *s, const char *method)
{
    static const char ok[] = "{\"Item\":{}}\n";

    (void)s;
    (void)method;
    if (srv_huge_len)
        return MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, srv_huge, NULL, NULL);
    return MHD_create_response_from_buffer(sizeof(ok) - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
}

static int srv_setup(void **state)
{
    static struct script_srv s;

    memset(&s, 0, sizeof(s));
    s.record[0] = "X-Amz-Target";
    s.record[1] = "Content-Type";
    s.record[2] = "Authorization";
    s.answer = srv_answer;
    *state = &s;
    return script_srv_start(&s);
}

static int srv_teardown(void **state)
{
    script_srv_stop(*state);
    return 0;
}

/* A client of the scripted server: 3 attempts, short waits. */
struct client {
    struct creds_provider *creds;
    struct metrics *metrics;
    struct ddb *ddb;
};

static void client_open(struct client *c, const struct script_srv *s)
{
    char endpoint[64];
    char msg[256];
    struct ddb_opts o = {.endpoint = endpoint,
                         .region = "eu-west-1",
                         .max_attempts = 3,
                         .backoff_base_ms = 5,
                         .timeout_ms = 5000};

    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%u", s->port);
    c->creds = static_creds(NULL);
    c->metrics = metrics_new();
    o.creds = c->creds;
    o.metrics = c->metrics;
    assert_int_equal(ddb_new(&o, &c->ddb, msg, sizeof(msg)), RZ_OK);
}

static void client_close(struct client *c)
{
    ddb_free(c->ddb);
    metrics_free(c->metrics);
    creds_provider_free(c->creds);
}

static void srv_script(struct script_srv *s, int fail_first, unsigned status, const char *body,
                       size_t huge)
{
    script_srv_script(s, fail_first, status, body);
    pthread_mutex_lock(&s->lock);
    srv_huge_len = huge;
    pthread_mutex_unlock(&s->lock);
}

static void test_wire_request(void **state)
{
    struct script_srv *s = *state;
    struct client c;
    json_t *req = json_pack("{s:s,s:{s:{s:s}},s:b}", "TableName", "state", "Key", "pk", "S",
                            "caf\u00e9 \"q\"", "ConsistentRead", 1);
    char *want = json_dumps(req, JSON_COMPACT);
    json_t *resp = NULL;
    char msg[256];

    client_open(&c, s);
    srv_script(s, 0, 0, NULL, 0);
    assert_int_equal(ddb_call(c.ddb, "GetItem", req, &resp, msg, sizeof(msg)), RZ_OK);
    assert_true(json_is_object(json_object_get(resp, "Item")));
    assert_int_equal(s->hits, 1);
    assert_string_equal(script_srv_value(s, "X-Amz-Target"), "DynamoDB_20120810.GetItem");
    assert_string_equal(script_srv_value(s, "Content-Type"), "application/x-amz-json-1.0");
    assert_string_equal(s->body, want);
    assert_non_null(strstr(script_srv_value(s, "Authorization"), "Credential=AKIDEXAMPLE/"));
    assert_non_null(
        strstr(script_srv_value(s, "Authorization"), "/eu-west-1/dynamodb/aws4_request"));
    free(want);
    json_decref(resp);
    json_decref(req);
    client_close(&c);
}

struct retry_case {
    int fail_first;
    unsigned status;
    const char *body;
    enum rz_err err;
    int hits;
};

static void test_retries_by_answer(void **state)
{
    static const struct retry_case cases[] = {
        /* throttled twice, then through: the caller sees success */
        {2, 400, T "ThrottlingException\"}", RZ_OK, 3},
        {1, 400, T "ProvisionedThroughputExceededException\"}", RZ_OK, 2},
        {2, 503, "", RZ_OK, 3},
        /* failing every time: bounded by max_attempts */
        {9, 500, T "InternalServerError\"}", RZ_EUPSTREAM, 3},
        {9, 400, "{\"__type\":\"RequestLimitExceeded\"}", RZ_EUPSTREAM, 3},
        /* final at once */
        {9, 400, T "ValidationException\"}", RZ_EINVAL, 1},
        {9, 400, T "ConditionalCheckFailedException\"}", RZ_ECONFLICT, 1},
        {9, 400, T "ResourceNotFoundException\"}", RZ_ENOTFOUND, 1},
    };
    struct script_srv *s = *state;
    struct client c;
    json_t *req = json_pack("{s:s}", "TableName", "state");

    client_open(&c, s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *resp = NULL;
        char msg[256];
        enum rz_err err;

        srv_script(s, cases[i].fail_first, cases[i].status, cases[i].body, 0);
        err = ddb_call(c.ddb, "PutItem", req, &resp, msg, sizeof(msg));
        if (err != cases[i].err || s->hits != cases[i].hits)
            fail_msg("case %zu: %s after %d requests (%s)", i, rz_err_name(err), s->hits, msg);
        json_decref(resp);
    }
    assert_true(metrics_get(c.metrics, "resizer_dynamodb_requests_total",
                            "op=\"PutItem\",outcome=\"ok\"") == 3.0);
    json_decref(req);
    client_close(&c);
}

static void test_oversized_answer(void **state)
{
    struct script_srv *s = *state;
    struct client c;
    json_t *req = json_pack("{s:s}", "TableName", "state");
    json_t *resp = (json_t *)1;
    char msg[256];

    client_open(&c, s);
    srv_script(s, 0, 0, NULL, (size_t)DDB_MAX_RESPONSE + 65536);
    assert_int_equal(ddb_call(c.ddb, "Query", req, &resp, msg, sizeof(msg)), RZ_EUPSTREAM);
    assert_null(resp);
    assert_non_null(strstr(msg, "larger than"));
    assert_int_equal(s->hits, 1);
    json_decref(req);
    client_close(&c);
}

#define CALLERS 8
#define CALLS 24

static void *caller(void *arg)
{
    struct ddb *d = arg;
    json_t *req = json_pack("{s:s}", "TableName", "state");
    long bad = 0;

    for (int i = 0; i < CALLS; i++) {
        json_t *resp = NULL;
        char msg[128];

        bad += ddb_call(d, i % 2 ? "GetItem" : "UpdateItem", req, &resp, msg, sizeof(msg)) !=
               RZ_OK;
        bad += !json_is_object(resp);
        json_decref(resp);
    }
    json_decref(req);
    return (void *)bad;
}

static void test_concurrent_callers(void **state)
{
    struct script_srv *s = *state;
    pthread_t t[CALLERS];
    struct client c;

    client_open(&c, s);
    srv_script(s, 0, 0, NULL, 0);
    for (int i = 0; i < CALLERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, caller, c.ddb), 0);
    for (int i = 0; i < CALLERS; i++) {
        void *bad;

        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((long)bad, 0);
    }
    assert_int_equal(s->hits, CALLERS * CALLS);
    assert_true(metrics_get(c.metrics, "resizer_dynamodb_requests_total",
                            "op=\"GetItem\",outcome=\"ok\"") == CALLERS * CALLS / 2);
    client_close(&c);
}

static void test_backoff_bounds(void **state)
{
    for (int attempt = 1; attempt < 12; attempt++) {
        for (int k = 0; k < 50; k++) {
            long ms = awshttp_backoff_ms(50, 2000, attempt);

            assert_true(ms >= 0 && ms <= 2000);
            if (attempt == 1)
                assert_true(ms <= 100);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_conflict_keeps_item),
        cmocka_unit_test(test_new_endpoints),
        cmocka_unit_test(test_sign_headers),
        cmocka_unit_test(test_op_names),
        cmocka_unit_test(test_unreachable_bounded),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test_setup_teardown(test_wire_request, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_retries_by_answer, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_oversized_answer, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_callers, srv_setup, srv_teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
