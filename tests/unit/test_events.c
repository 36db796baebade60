/* test_events.c - what POST /v1/events makes of each notification shape,
 * and that hostile bodies get a clear error instead of a crash or a job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/buf.h"
#include "server/events.h"
#include "server/events_internal.h"

/* The S3 user guide's EventBridge "Object Created" example, verbatim. */
#define EB_EXAMPLE                                                                        \
    "{\"version\":\"0\",\"id\":\"17793124-05d4-b198-2fde-7ededc63b103\",\"detail-type\":" \
    "\"Object Created\",\n \"source\":\"aws.s3\",\"account\":\"111122223333\",\"time\":"  \
    "\"2021-11-12T00:00:00Z\",\n \"region\":\"ca-central-1\",\"resources\":"              \
    "[\"arn:aws:s3:::example-bucket\"],\n \"detail\":{\"version\":\"0\",\"bucket\":"      \
    "{\"name\":\"example-bucket\"},\n  \"object\":{\"key\":\"example-key\",\"size\":5,"   \
    "\"etag\":\"b1946ac92492d2347c6235b4d2611184\",\n            \"version-id\":"         \
    "\"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e\",\"sequencer\":\"617f08299329d189\"},\n  "       \
    "\"request-id\":\"N4N7GDK58NMKJ12R\",\"requester\":\"123456789012\",\n  "             \
    "\"source-ip-address\":\"1.2.3.4\",\"reason\":\"PutObject\"}}"

/* An EventBridge event with the given detail-type and detail.object. */
#define EB(type, object)                                                                \
    "{\"version\":\"0\",\"detail-type\":\"" type "\",\"source\":\"aws.s3\",\"detail\":" \
    "{\"version\":\"0\",\"bucket\":{\"name\":\"src\"},\"object\":" object "}}"

/* A classic S3 record (the shape of the notification-content-structure doc). */
#define REC(ver, name, bucket, object)                                                      \
    "{\"eventVersion\":\"" ver "\",\"eventSource\":\"aws:s3\",\"awsRegion\":\"us-east-1\"," \
    "\"eventTime\":\"2024-01-01T00:00:00.000Z\",\"eventName\":\"" name "\","                \
    "\"userIdentity\":{\"principalId\":\"AWS:X\"},\"requestParameters\":"                   \
    "{\"sourceIPAddress\":\"1.2.3.4\"},\"responseElements\":{\"x-amz-request-id\":\"R\"},"  \
    "\"s3\":{\"s3SchemaVersion\":\"1.0\",\"configurationId\":\"c\",\"bucket\":"             \
    "{\"name\":\"" bucket "\",\"ownerIdentity\":{\"principalId\":\"A\"},"                   \
    "\"arn\":\"arn:aws:s3:::" bucket "\"},\"object\":" object "}}"

#define OBJ(key) "{\"key\":\"" key "\",\"size\":1}"

/* MinIO's webhook body: query-escaped key, "s3:" event names, version 2.0. */
#define MINIO_WEBHOOK                                                                       \
    "{\"EventName\":\"s3:ObjectCreated:Put\",\"Key\":\"src/images/x y.jpg\",\"Records\":"   \
    "[{\"eventVersion\":\"2.0\",\"eventSource\":\"minio:s3\",\"awsRegion\":\"\","           \
    "\"eventTime\":\"2024-01-01T00:00:00.000Z\",\"eventName\":\"s3:ObjectCreated:Put\","    \
    "\"userIdentity\":{\"principalId\":\"minio\"},\"requestParameters\":{\"region\":\"\"}," \
    "\"responseElements\":{\"x-minio-origin-endpoint\":\"http://127.0.0.1:9000\"},"         \
    "\"s3\":{\"s3SchemaVersion\":\"1.0\",\"configurationId\":\"Config\",\"bucket\":"        \
    "{\"name\":\"src\",\"ownerIdentity\":{\"principalId\":\"minio\"},"                      \
    "\"arn\":\"arn:aws:s3:::src\"},\"object\":{\"key\":\"images%2Fx+y%2B1.jpg\","           \
    "\"size\":224662,\"eTag\":\"5fc7298143efe1276d39a3466d4e255f-1\","                      \
    "\"contentType\":\"image/jpeg\",\"userMetadata\":{\"content-type\":\"image/jpeg\"},"    \
    "\"versionId\":\"\",\"sequencer\":\"15CFEDF8D5304D1A\"}},"                              \
    "\"source\":{\"host\":\"127.0.0.1\",\"port\":\"\",\"userAgent\":\"MinIO\"}}]}"

struct want_object {
    const char *bucket;
    const char *key;
    const char *etag;
    const char *sequencer;
    const char *version_id;
    uint64_t size;
    int try_decoded_key;
};

struct parse_case {
    const char *name;
    const char *body;
    enum rz_err err;
    const char *msg_has; /* for errors: a phrase the sender must see */
    size_t nobjects;
    size_t ignored;
    struct want_object want[2]; /* checked when bucket is set */
};

static const struct parse_case parse_cases[] = {
    {"eventbridge example",
     EB_EXAMPLE,
     RZ_OK,
     NULL,
     1,
     0,
     {{"example-bucket", "example-key", "b1946ac92492d2347c6235b4d2611184", "617f08299329d189",
       "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", 5, 0}}},
    {"eventbridge key is raw, decoded form offered",
     EB("Object Created", "{\"key\":\"images/a b+c%41.jpg\",\"size\":7}"),
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "images/a b+c%41.jpg", NULL, NULL, NULL, 7, 1}}},
    {"eventbridge plain key needs no second try",
     EB("Object Created", "{\"key\":\"images/caf\\u00e9.jpg\"}"),
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "images/caf\xc3\xa9.jpg", NULL, NULL, NULL, 0, 0}}},
    {"eventbridge etag quotes stripped, empty version is absent",
     EB("Object Created", "{\"key\":\"k\",\"etag\":\"\\\"abc-2\\\"\",\"version-id\":\"\"}"),
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "k", "abc-2", NULL, NULL, 0, 0}}},
    {"eventbridge object deleted is ignored",
     EB("Object Deleted", OBJ("images/a.jpg")),
     RZ_OK,
     NULL,
     0,
     1,
     {{0}}},
    {"eventbridge other source is ignored",
     "{\"detail-type\":\"Object Created\",\"source\":\"aws.ec2\",\"detail\":{}}",
     RZ_OK,
     NULL,
     0,
     1,
     {{0}}},
    {"records batch of two, form-encoded and UTF-8 keys",
     "{\"Records\":[" REC(
         "2.1", "ObjectCreated:Put", "src",
         "{\"key\":\"images/a+b%2Bc.jpg\",\"size\":1024,\"eTag\":\"d41d8cd9\","
         "\"versionId\":\"096fKKXTRTtl3on89fVO.nfljtsv6qko\",\"sequencer\":\"0055AED6DCD90281E5\"}") "," REC("2.1",
                                                                                                             "ObjectCreated:CompleteMultipartUpload",
                                                                                                             "src",
                                                                                                             "{\"key\":\"images/caf%C3%A9+%E2%9C%93.png\",\"size\":9,\"eTag\":\"ab-3\"}") "]}",
     RZ_OK,
     NULL,
     2,
     0,
     {{"src", "images/a b+c.jpg", "d41d8cd9", "0055AED6DCD90281E5",
       "096fKKXTRTtl3on89fVO.nfljtsv6qko", 1024, 0},
      {"src", "images/caf\xc3\xa9 \xe2\x9c\x93.png", "ab-3", NULL, NULL, 9, 0}}},
    {"records: other kinds and sources are ignored, created kept",
     "{\"Records\":[" REC(
         "2.1", "ObjectRemoved:Delete", "src",
         OBJ("images/a.jpg")) ","
                              "{\"eventVersion\":\"1.0\",\"eventSource\":\"aws:sqs\",\"body\":\"x\"},7," REC(
                                  "2.2", "ObjectCreated:Copy", "src", OBJ("images/b.jpg")) "]}",
     RZ_OK,
     NULL,
     1,
     3,
     {{"src", "images/b.jpg", NULL, NULL, NULL, 1, 0}}},
    {"minio webhook, %2F in key",
     MINIO_WEBHOOK,
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "images/x y+1.jpg", "5fc7298143efe1276d39a3466d4e255f-1", "15CFEDF8D5304D1A", NULL,
       224662, 0}}},
    {"record without eventSource counts as s3",
     "{\"Records\":[{\"eventVersion\":\"2.0\",\"eventName\":\"s3:ObjectCreated:Post\","
     "\"s3\":{\"bucket\":{\"name\":\"src\"},\"object\":{\"key\":\"k\"}}}]}",
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "k", NULL, NULL, NULL, 0, 0}}},
    {"s3 test event",
     "{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\",\"Time\":"
     "\"2014-10-13T15:57:02.089Z\",\"Bucket\":\"src\",\"RequestId\":\"5582815E1AEA5ADF\","
     "\"HostId\":\"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE\"}",
     RZ_OK,
     NULL,
     0,
     1,
     {{0}}},
    {"empty Records", "{\"Records\":[]}", RZ_OK, NULL, 0, 0, {{0}}},
    {"other object", "{\"hello\":\"world\"}", RZ_OK, NULL, 0, 1, {{0}}},
    {"empty object", "{}", RZ_OK, NULL, 0, 1, {{0}}},
    {"array", "[{\"Records\":[]}]", RZ_OK, NULL, 0, 1, {{0}}},
    {"number", " 42 ", RZ_OK, NULL, 0, 1, {{0}}},
    {"string", "\"x\"", RZ_OK, NULL, 0, 1, {{0}}},
    {"null", "null", RZ_OK, NULL, 0, 1, {{0}}},
    {"largest size",
     EB("Object Created", "{\"key\":\"k\",\"size\":9223372036854775807}"),
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "k", NULL, NULL, NULL, 9223372036854775807ULL, 0}}},
    {"version 2.3 is fine",
     "{\"Records\":[" REC("2.3", "ObjectCreated:Put", "src", OBJ("k")) "]}",
     RZ_OK,
     NULL,
     1,
     0,
     {{"src", "k", NULL, NULL, NULL, 1, 0}}},

    /* malformed bodies */
    {"truncated json", "{\"Records\":", RZ_EINVAL, "ends inside", 0, 0, {{0}}},
    {"not json", "hello", RZ_EINVAL, "not valid JSON", 0, 0, {{0}}},
    {"trailing garbage", "{} x", RZ_EINVAL, "after the JSON value", 0, 0, {{0}}},
    {"two values", "{}{}", RZ_EINVAL, "after the JSON value", 0, 0, {{0}}},
    {"invalid utf-8", "{\"a\":\"\xff\xfe\"}", RZ_EINVAL, "not valid UTF-8", 0, 0, {{0}}},
    {"overlong utf-8", "{\"a\":\"\xc0\xaf\"}", RZ_EINVAL, "not valid UTF-8", 0, 0, {{0}}},
    {"duplicate keys",
     "{\"Records\":[],\"Records\":[]}",
     RZ_EINVAL,
     "repeats an object key",
     0,
     0,
     {{0}}},
    {"duplicate nested keys",
     EB("Object Created", "{\"key\":\"a\",\"key\":\"b\"}"),
     RZ_EINVAL,
     "repeats an object key",
     0,
     0,
     {{0}}},
    {"escaped NUL in a string",
     EB("Object Created", "{\"key\":\"a\\u0000b\"}"),
     RZ_EINVAL,
     "not valid JSON",
     0,
     0,
     {{0}}},
    {"integer too big",
     EB("Object Created", "{\"key\":\"k\",\"size\":99999999999999999999}"),
     RZ_EINVAL,
     "number out of range",
     0,
     0,
     {{0}}},

    /* missing fields */
    {"eventbridge without detail",
     "{\"detail-type\":\"Object Created\",\"source\":\"aws.s3\"}",
     RZ_EINVAL,
     "detail.bucket.name is missing",
     0,
     0,
     {{0}}},
    {"eventbridge without key",
     EB("Object Created", "{\"size\":1}"),
     RZ_EINVAL,
     "detail.object.key is missing",
     0,
     0,
     {{0}}},
    {"record without bucket",
     "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventName\":\"ObjectCreated:Put\","
     "\"s3\":{\"object\":{\"key\":\"k\"}}}]}",
     RZ_EINVAL,
     "Records[0].s3.bucket.name is missing",
     0,
     0,
     {{0}}},
    {"second record without key",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src",
                          OBJ("a")) "," REC("2.1", "ObjectCreated:Put", "src", "{}") "]}",
     RZ_EINVAL,
     "Records[1].s3.object.key is missing",
     0,
     0,
     {{0}}},
    {"record without eventName",
     "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\"}]}",
     RZ_EINVAL,
     "Records[0].eventName is missing",
     0,
     0,
     {{0}}},
    {"record without eventVersion",
     "{\"Records\":[{\"eventSource\":\"aws:s3\",\"eventName\":\"ObjectCreated:Put\"}]}",
     RZ_EINVAL,
     "Records[0].eventVersion is missing",
     0,
     0,
     {{0}}},

    /* wrong types */
    {"key is a number",
     EB("Object Created", "{\"key\":5}"),
     RZ_EINVAL,
     "detail.object.key must be a string",
     0,
     0,
     {{0}}},
    {"bucket name is an object",
     "{\"detail-type\":\"Object Created\",\"source\":\"aws.s3\",\"detail\":{\"bucket\":"
     "{\"name\":{}},\"object\":{\"key\":\"k\"}}}",
     RZ_EINVAL,
     "detail.bucket.name must be a string",
     0,
     0,
     {{0}}},
    {"object is a string",
     EB("Object Created", "\"k\""),
     RZ_EINVAL,
     "detail.object must be an object",
     0,
     0,
     {{0}}},
    {"record key is an array",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", "{\"key\":[]}") "]}",
     RZ_EINVAL,
     "Records[0].s3.object.key must be a string",
     0,
     0,
     {{0}}},
    {"eventName is a number",
     "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventName\":5}]}",
     RZ_EINVAL,
     "Records[0].eventName must be a string",
     0,
     0,
     {{0}}},
    {"Records is an object",
     "{\"Records\":{}}",
     RZ_EINVAL,
     "Records must be an array",
     0,
     0,
     {{0}}},
    {"etag is a number",
     EB("Object Created", "{\"key\":\"k\",\"etag\":1}"),
     RZ_EINVAL,
     "detail.object.etag must be a string",
     0,
     0,
     {{0}}},
    {"size is a string",
     EB("Object Created", "{\"key\":\"k\",\"size\":\"5\"}"),
     RZ_EINVAL,
     "detail.object.size must be a non-negative integer",
     0,
     0,
     {{0}}},
    {"size is negative",
     EB("Object Created", "{\"key\":\"k\",\"size\":-1}"),
     RZ_EINVAL,
     "detail.object.size must be a non-negative integer",
     0,
     0,
     {{0}}},
    {"size is fractional",
     EB("Object Created", "{\"key\":\"k\",\"size\":1.5}"),
     RZ_EINVAL,
     "detail.object.size must be a non-negative integer",
     0,
     0,
     {{0}}},

    /* versions */
    {"eventVersion 3.0",
     "{\"Records\":[" REC("3.0", "ObjectCreated:Put", "src", OBJ("k")) "]}",
     RZ_EINVAL,
     "Records[0].eventVersion is not a supported version",
     0,
     0,
     {{0}}},
    {"eventVersion 3.0 on a deletion still fails",
     "{\"Records\":[" REC("3.0", "ObjectRemoved:Delete", "src", OBJ("k")) "]}",
     RZ_EINVAL,
     "eventVersion is not a supported version",
     0,
     0,
     {{0}}},
    {"eventVersion 1.0",
     "{\"Records\":[" REC("1.0", "ObjectCreated:Put", "src", OBJ("k")) "]}",
     RZ_EINVAL,
     "eventVersion is not a supported version",
     0,
     0,
     {{0}}},
    {"eventVersion garbage",
     "{\"Records\":[" REC("2.x", "ObjectCreated:Put", "src", OBJ("k")) "]}",
     RZ_EINVAL,
     "eventVersion is not a supported version",
     0,
     0,
     {{0}}},

    /* keys and tokens */
    {"empty key",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("")) "]}",
     RZ_EINVAL,
     "Records[0].s3.object.key is empty",
     0,
     0,
     {{0}}},
    {"empty eventbridge key",
     EB("Object Created", "{\"key\":\"\"}"),
     RZ_EINVAL,
     "detail.object.key is empty",
     0,
     0,
     {{0}}},
    {"malformed escape",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("a%zz")) "]}",
     RZ_EINVAL,
     "malformed %-escape",
     0,
     0,
     {{0}}},
    {"cut escape",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("a%4")) "]}",
     RZ_EINVAL,
     "malformed %-escape",
     0,
     0,
     {{0}}},
    {"encoded NUL",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("a%00.jpg")) "]}",
     RZ_EINVAL,
     "encoded NUL",
     0,
     0,
     {{0}}},
    {"decodes to invalid utf-8",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("images/%FF.jpg")) "]}",
     RZ_EINVAL,
     "Records[0].s3.object.key is not valid UTF-8",
     0,
     0,
     {{0}}},
    {"decodes to a surrogate",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("%ED%A0%80")) "]}",
     RZ_EINVAL,
     "not valid UTF-8",
     0,
     0,
     {{0}}},
    {"bucket with a slash",
     "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "a/b", OBJ("k")) "]}",
     RZ_EINVAL,
     "Records[0].s3.bucket.name is not a valid bucket name",
     0,
     0,
     {{0}}},
    {"etag with a line break",
     EB("Object Created", "{\"key\":\"k\",\"etag\":\"a\\r\\nX: y\"}"),
     RZ_EINVAL,
     "detail.object.etag holds characters other than printable ASCII",
     0,
     0,
     {{0}}},
};

static void check_object(const struct event_object *o, const struct want_object *w,
                         const char *name)
{
    if (strcmp(o->bucket, w->bucket) != 0 || strcmp(o->key, w->key) != 0)
        fail_msg("%s: got %s/%s, want %s/%s", name, o->bucket, o->key, w->bucket, w->key);
    if (w->etag)
        assert_string_equal(o->etag, w->etag);
    else
        assert_null(o->etag);
    if (w->sequencer)
        assert_string_equal(o->sequencer, w->sequencer);
    else
        assert_null(o->sequencer);
    if (w->version_id)
        assert_string_equal(o->version_id, w->version_id);
    else
        assert_null(o->version_id);
    assert_true(o->size == w->size);
    assert_int_equal(o->try_decoded_key, w->try_decoded_key);
}

static void run_parse_case(const struct parse_case *c)
{
    struct event_batch b;
    char msg[256];
    enum rz_err err;
    size_t i;

    err = events_parse(c->body, strlen(c->body), &b, msg, sizeof(msg));
    if (err != c->err)
        fail_msg("%s: got %s (%s), want %s", c->name, rz_err_name(err), msg,
                 rz_err_name(c->err));
    if (c->msg_has && !strstr(msg, c->msg_has))
        fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, msg, c->msg_has);
    if (c->err != RZ_OK) {
        assert_null(b.objects);
        assert_int_equal(b.nobjects, 0);
    }
    if (b.nobjects != c->nobjects || b.ignored != c->ignored)
        fail_msg("%s: %zu objects, %zu ignored; want %zu, %zu", c->name, b.nobjects, b.ignored,
                 c->nobjects, c->ignored);
    for (i = 0; i < 2 && i < b.nobjects; i++) {
        if (c->want[i].bucket)
            check_object(&b.objects[i], &c->want[i], c->name);
    }
    events_batch_cleanup(&b);
}

static void test_parse_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++)
        run_parse_case(&parse_cases[i]);
}

static enum rz_err parse_len(const char *body, size_t len, struct event_batch *b, char *msg,
                             size_t msglen)
{
    return events_parse(body, len, b, msg, msglen);
}

static void test_body_limits(void **state)
{
    struct event_batch b;
    char msg[256];
    char *big = malloc(EVENTS_MAX_BODY + 1);
    const char nul_body[] = "{\"a\":1}\0{}";

    (void)state;
    assert_non_null(big);
    memset(big, ' ', EVENTS_MAX_BODY + 1);
    big[0] = '{';
    big[EVENTS_MAX_BODY] = '}';
    assert_int_equal(parse_len(big, EVENTS_MAX_BODY + 1, &b, msg, sizeof(msg)), RZ_ETOOBIG);
    assert_non_null(strstr(msg, "limit is 262144"));
    /* exactly at the cap is parsed */
    big[EVENTS_MAX_BODY - 1] = '}';
    assert_int_equal(parse_len(big, EVENTS_MAX_BODY, &b, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(b.ignored, 1);
    events_batch_cleanup(&b);
    free(big);

    assert_int_equal(parse_len("", 0, &b, msg, sizeof(msg)), RZ_EINVAL);
    assert_string_equal(msg, "body is empty");
    assert_int_equal(parse_len(NULL, 0, &b, msg, sizeof(msg)), RZ_EINVAL);
    /* a raw NUL byte inside the body is not JSON */
    assert_int_equal(parse_len(nul_body, sizeof(nul_body) - 1, &b, msg, sizeof(msg)), RZ_EINVAL);
    /* the body need not be NUL-terminated: only len bytes are read */
    assert_int_equal(parse_len("{}garbage", 2, &b, msg, sizeof(msg)), RZ_OK);
    events_batch_cleanup(&b);
    /* no message buffer is fine */
    assert_int_equal(parse_len("{", 1, &b, NULL, 0), RZ_EINVAL);
}

static char *nested(size_t depth, const char *inner)
{
    struct buf s;
    size_t i;

    buf_init(&s, 1 << 20);
    for (i = 0; i < depth; i++)
        assert_int_equal(buf_appends(&s, "{\"a\":["), RZ_OK);
    assert_int_equal(buf_appends(&s, inner), RZ_OK);
    for (i = 0; i < depth; i++)
        assert_int_equal(buf_appends(&s, "]}"), RZ_OK);
    return buf_steal(&s);
}

static void test_nesting(void **state)
{
    struct {
        size_t pairs;
        enum rz_err err;
    } cases[] = {
        {1500, RZ_EINVAL}, /* 3000 levels: past jansson's own 2048 too */
        {17, RZ_EINVAL},   /* 34 levels */
        {16, RZ_OK},       /* 32 levels: valid, not ours */
    };
    struct event_batch b;
    char msg[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *body = nested(cases[i].pairs, "1");

        assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), cases[i].err);
        if (cases[i].err != RZ_OK)
            assert_non_null(strstr(msg, "nests deeper than 32 levels"));
        events_batch_cleanup(&b);
        free(body);
    }
}

static char *eb_with_key_len(size_t n)
{
    struct buf s;
    char *key = malloc(n + 1);

    assert_non_null(key);
    memset(key, 'k', n);
    key[n] = '\0';
    buf_init(&s, 1 << 20);
    assert_int_equal(buf_printf(&s, EB("Object Created", "{\"key\":\"%s\"}"), key), RZ_OK);
    free(key);
    return buf_steal(&s);
}

static void test_key_length(void **state)
{
    struct event_batch b;
    char msg[256];
    char *body;
    struct buf s;
    size_t i;

    (void)state;
    body = eb_with_key_len(EVENTS_MAX_KEY);
    assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(strlen(b.objects[0].key), EVENTS_MAX_KEY);
    events_batch_cleanup(&b);
    free(body);

    body = eb_with_key_len(EVENTS_MAX_KEY + 1);
    assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), RZ_EINVAL);
    assert_string_equal(msg, "detail.object.key is longer than 1024 bytes");
    free(body);

    /* the limit applies to the decoded key: 3072 encoded bytes, 1024 decoded */
    buf_init(&s, 1 << 20);
    assert_int_equal(buf_appends(&s, "{\"Records\":[{\"eventVersion\":\"2.1\",\"eventName\":"
                                     "\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":"
                                     "\"src\"},\"object\":{\"key\":\""),
                     RZ_OK);
    for (i = 0; i < EVENTS_MAX_KEY; i++)
        assert_int_equal(buf_appends(&s, "%41"), RZ_OK);
    assert_int_equal(buf_appends(&s, "\"}}}]}"), RZ_OK);
    assert_int_equal(events_parse(s.data, s.len, &b, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(strlen(b.objects[0].key), EVENTS_MAX_KEY);
    assert_int_equal(b.objects[0].key[0], 'A');
    events_batch_cleanup(&b);
    buf_cleanup(&s);
}

static char *records_body(size_t n)
{
    struct buf s;
    size_t i;

    buf_init(&s, EVENTS_MAX_BODY);
    assert_int_equal(buf_appends(&s, "{\"Records\":["), RZ_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(buf_printf(&s,
                                    "%s{\"eventVersion\":\"2.1\",\"eventName\":"
                                    "\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":"
                                    "\"src\"},\"object\":{\"key\":\"%zu\"}}}",
                                    i ? "," : "", i),
                         RZ_OK);
    assert_int_equal(buf_appends(&s, "]}"), RZ_OK);
    return buf_steal(&s);
}

static void test_record_count(void **state)
{
    struct event_batch b;
    char msg[256];
    char *body;

    (void)state;
    body = records_body(EVENTS_MAX_RECORDS);
    assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(b.nobjects, EVENTS_MAX_RECORDS);
    assert_string_equal(b.objects[999].key, "999");
    events_batch_cleanup(&b);
    free(body);

    body = records_body(EVENTS_MAX_RECORDS + 1);
    assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), RZ_ETOOBIG);
    assert_string_equal(msg, "Records holds 1001 records; the limit is 1000");
    assert_int_equal(b.nobjects, 0);
    free(body);
}

/* Every truncation and a few byte substitutions of each valid shape must
 * give a clean error or a clean batch: ASan catches leaks and overreads. */
static void test_truncations_and_mutations(void **state)
{
    static const char *const bodies[] = {
        EB_EXAMPLE,
        MINIO_WEBHOOK,
        "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src",
                             "{\"key\":\"images/a+b%2Bc.jpg\",\"size\":3,\"eTag\":\"e\"}") "]}",
    };
    static const char subst[] = {'"', '{', '[', '\\', '%', '+', '\0', (char)0xff, '9', ','};
    struct event_batch b;
    char msg[256];
    size_t i;
    size_t n;
    size_t k;
    size_t outcomes[2] = {0, 0};
    enum rz_err err;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        size_t len = strlen(bodies[i]);
        char *copy = malloc(len);

        assert_non_null(copy);
        for (n = 0; n <= len; n++) {
            /* an exact-size heap copy so ASan sees any read past len */
            memcpy(copy, bodies[i], n);
            err = events_parse(copy, n, &b, msg, sizeof(msg));
            assert_true(err == RZ_OK || err == RZ_EINVAL);
            outcomes[err == RZ_OK]++;
            if (err != RZ_OK)
                assert_true(msg[0] != '\0' && b.objects == NULL && b.nobjects == 0);
            events_batch_cleanup(&b);
        }
        for (n = 0; n < len; n++) {
            for (k = 0; k < sizeof(subst); k++) {
                memcpy(copy, bodies[i], len);
                copy[n] = subst[k];
                err = events_parse(copy, len, &b, msg, sizeof(msg));
                assert_true(err == RZ_OK || err == RZ_EINVAL);
                if (err != RZ_OK)
                    assert_true(msg[0] != '\0' && b.nobjects == 0);
                events_batch_cleanup(&b);
            }
        }
        free(copy);
    }
    /* only the full bodies parse */
    assert_int_equal(outcomes[1], 3);
}

static void test_helpers(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } utf8[] = {
        {"", 1},
        {"abc", 1},
        {"\xc3\xa9", 1},
        {"\xe2\x9c\x93", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xc0\xaf", 0},
        {"\xe0\x80\xaf", 0},
        {"\xed\xa0\x80", 0},
        {"\xf4\x90\x80\x80", 0},
        {"\xe2\x9c", 0},
        {"\x80", 0},
        {"\xff", 0},
    };
    static const struct {
        const char *s;
        int rc;
        long major;
        long minor;
    } ver[] = {
        {"2.1", 0, 2, 1},     {"2.0", 0, 2, 0},    {"2", 0, 2, 0},
        {"10.12", 0, 10, 12}, {"", -1, 0, 0},      {"2.", -1, 0, 0},
        {".1", -1, 0, 0},     {"2.1.3", -1, 0, 0}, {"-2.1", -1, 0, 0},
        {"2.x", -1, 0, 0},    {" 2.1", -1, 0, 0},  {"99999999999999999999", -1, 0, 0},
    };
    static const struct {
        const char *s;
        int ok;
    } buckets[] = {
        {"manara-image-resize-uploader", 1},
        {"Legacy_Bucket.1", 1},
        {"", 0},
        {"a/b", 0},
        {"a b", 0},
        {"a?b", 0},
        {"a\xc3\xa9", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++)
        assert_int_equal(events_utf8_valid(utf8[i].s, strlen(utf8[i].s)), utf8[i].ok);
    for (i = 0; i < sizeof(ver) / sizeof(ver[0]); i++) {
        long major = 0;
        long minor = 0;

        assert_int_equal(events_parse_version(ver[i].s, &major, &minor), ver[i].rc);
        if (ver[i].rc == 0) {
            assert_int_equal(major, ver[i].major);
            assert_int_equal(minor, ver[i].minor);
        }
    }
    for (i = 0; i < sizeof(buckets) / sizeof(buckets[0]); i++)
        assert_int_equal(events_bucket_valid(buckets[i].s), buckets[i].ok);
    /* brackets inside strings, escaped quotes included, do not count */
    assert_int_equal(events_depth_ok("{\"a\":\"[[[[\\\"[[[[\"}", 18, 2), 1);
    assert_int_equal(events_depth_ok("[[[", 3, 2), 0);
    assert_int_equal(events_depth_ok("[[]][[]]", 8, 2), 1);
}

/* A batch of five objects for the filter: each names what it stands for. */
#define FILTER_BODY                                                                                                                                                     \
    "{\"Records\":[" REC("2.1", "ObjectCreated:Put", "src", OBJ("images/ok.jpg")) "," REC("2.1", "ObjectCreated:Put", "other", OBJ("images/other-bucket.jpg")) "," REC( \
        "2.1", "ObjectCreated:Put", "src",                                                                                                                              \
        OBJ("uploads/other-prefix.jpg")) "," REC("2.1", "ObjectCreated:Put", "dest",                                                                                    \
                                                 OBJ("images/dest-bucket.jpg")) "," REC("2.1",                                                                          \
                                                                                        "ObjectCreated:Put",                                                            \
                                                                                        "src",                                                                          \
                                                                                        OBJ("imagesX.jpg")) "]}"

static void test_filter_table(void **state)
{
    static const struct {
        const char *name;
        const char *src_bucket;
        const char *src_prefix;
        const char *dest_bucket;
        size_t removed;
        const char *kept; /* keys left, space-separated */
    } cases[] = {
        {"all guards", "src", "images/", "dest", 4, "images/ok.jpg"},
        {"no src bucket guard", NULL, "images/", "dest", 3,
         "images/ok.jpg images/other-bucket.jpg"},
        {"no prefix", "src", NULL, "dest", 2,
         "images/ok.jpg uploads/other-prefix.jpg imagesX.jpg"},
        {"empty prefix", "src", "", NULL, 2,
         "images/ok.jpg uploads/other-prefix.jpg imagesX.jpg"},
        {"only dest guard", NULL, NULL, "dest", 1,
         "images/ok.jpg images/other-bucket.jpg uploads/other-prefix.jpg imagesX.jpg"},
        {"nothing", NULL, NULL, NULL, 0,
         "images/ok.jpg images/other-bucket.jpg uploads/other-prefix.jpg "
         "images/dest-bucket.jpg imagesX.jpg"},
        {"one bucket as both source and destination", "src", "images/", "src", 5, ""},
    };
    const char *body = FILTER_BODY;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct event_batch b;
        char msg[256];
        struct buf keys;
        size_t k;

        assert_int_equal(events_parse(body, strlen(body), &b, msg, sizeof(msg)), RZ_OK);
        assert_int_equal(b.nobjects, 5);
        assert_int_equal(events_filter(&b, cases[i].src_bucket, cases[i].src_prefix,
                                       cases[i].dest_bucket),
                         cases[i].removed);
        assert_int_equal(b.ignored, cases[i].removed);
        buf_init(&keys, 4096);
        for (k = 0; k < b.nobjects; k++)
            assert_int_equal(buf_printf(&keys, "%s%s", k ? " " : "", b.objects[k].key), RZ_OK);
        if (strcmp(keys.data ? keys.data : "", cases[i].kept) != 0)
            fail_msg("%s: kept \"%s\", want \"%s\"", cases[i].name, keys.data, cases[i].kept);
        buf_cleanup(&keys);
        events_batch_cleanup(&b);
    }
}

/* For an EventBridge key that may be encoded the prefix is checked on the
 * raw key, the one the job fetches first. */
static void test_filter_raw_key(void **state)
{
    static const struct {
        const char *body;
        size_t removed;
    } cases[] = {
        {EB("Object Created", "{\"key\":\"images/a b+c%41.jpg\"}"), 0},
        {EB("Object Created", "{\"key\":\"images%2Fa.jpg\"}"), 1},
        {EB("Object Created", "{\"key\":\"other/a+b.jpg\"}"), 1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct event_batch b;
        char msg[256];

        assert_int_equal(events_parse(cases[i].body, strlen(cases[i].body), &b, msg,
                                      sizeof(msg)),
                         RZ_OK);
        assert_int_equal(b.objects[0].try_decoded_key, 1);
        assert_int_equal(events_filter(&b, "src", "images/", "dest"), cases[i].removed);
        assert_int_equal(b.nobjects, 1 - cases[i].removed);
        events_batch_cleanup(&b);
    }
}

static void test_cleanup_zeroed(void **state)
{
    struct event_batch b;

    (void)state;
    memset(&b, 0, sizeof(b));
    events_batch_cleanup(&b);
    events_batch_cleanup(&b);
    assert_int_equal(events_filter(&b, "src", "images/", "dest"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),    cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_nesting),        cmocka_unit_test(test_key_length),
        cmocka_unit_test(test_record_count),   cmocka_unit_test(test_truncations_and_mutations),
        cmocka_unit_test(test_helpers),        cmocka_unit_test(test_filter_table),
        cmocka_unit_test(test_filter_raw_key), cmocka_unit_test(test_cleanup_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
