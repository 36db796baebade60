/* test_sigv4.c - SigV4 matches AWS's published vectors and S3's rules.
 *
 * Golden files under $RESIZER_VECTORS/sigv4 (see tests/vectors/README.md):
 * each case's .req is parsed into a struct sigv4_request, signed, and the
 * canonical request, string to sign and Authorization (or presigned URL)
 * compared byte for byte. Then table-driven S3 cases: keys with spaces,
 * '+', '%', '~', '//', dot segments and UTF-8, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <pthread.h>
#include <openssl/evp.h>

#include "server/buf.h"
#include "server/sigv4.h"
#include "server/sigv4_internal.h"

#define T_SUITE 1440938160L  /* 20150830T123600Z, the generic suite's time */
#define T_S3DOC 1369353600L  /* 20130524T000000Z, the S3 docs' examples */
#define T_POLICY 1451347200L /* 20151229T000000Z, the S3 POST example */

static const struct sigv4_creds suite_creds = {"AKIDEXAMPLE",
                                               "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
static const struct sigv4_creds s3doc_creds = {"AKIAIOSFODNN7EXAMPLE",
                                               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL};

/* ---- reading golden files -------------------------------------------- */

static char *read_vector(const char *rel, const char *ext, size_t *len_out)
{
    const char *dir = getenv("RESIZER_VECTORS");
    char path[1024];
    FILE *f;
    char *data;
    long n;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/sigv4/%s%s", dir, rel, ext);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open vector %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0 && n < 1 << 20);
    rewind(f);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    if (len_out)
        *len_out = (size_t)n;
    return data;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The .req holds the request as sent; our API wants raw strings. */
static void percent_decode(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (s[0] == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* A request parsed from a .req file; every string points into text. */
struct parsed_req {
    char *text;
    struct sigv4_request req;
    struct sigv4_pair query[16];
    struct sigv4_pair headers[16];
    const char *amz_date;
    const char *token;
    char payload_hash[65];
};

static void parse_query(struct parsed_req *p, char *q)
{
    while (q && *q) {
        char *next = strchr(q, '&');
        char *eq;

        if (next)
            *next++ = '\0';
        eq = strchr(q, '=');
        if (eq)
            *eq++ = '\0';
        assert_true(p->req.nquery < 16);
        percent_decode(q);
        if (eq)
            percent_decode(eq);
        p->query[p->req.nquery++] = (struct sigv4_pair){q, eq ? eq : ""};
        q = next;
    }
}

/* One "Name:value" line: Host, X-Amz-Date and X-Amz-Security-Token are
 * what the signer adds itself, so they become fields, not headers. */
static void parse_header(struct parsed_req *p, char *line)
{
    char *colon = strchr(line, ':');

    assert_non_null(colon);
    *colon = '\0';
    if (strcasecmp(line, "host") == 0)
        p->req.host = colon + 1;
    else if (strcasecmp(line, "x-amz-date") == 0)
        p->amz_date = colon + 1;
    else if (strcasecmp(line, "x-amz-security-token") == 0)
        p->token = colon + 1;
    else {
        assert_true(p->req.nheaders < 16);
        p->headers[p->req.nheaders++] = (struct sigv4_pair){line, colon + 1};
    }
}

static void parse_req(struct parsed_req *p, char *text)
{
    char *body = strstr(text, "\n\n");
    char *line;
    char *target;
    char *q;

    memset(p, 0, sizeof(*p));
    p->text = text;
    if (body) {
        *body = '\0';
        body += 2;
    }
    sigv4_sha256_hex(body ? body : "", body ? strlen(body) : 0, p->payload_hash);
    line = strtok(text, "\n");
    /* "METHOD target HTTP/1.1"; the target may hold a space (get-space). */
    target = strchr(line, ' ');
    assert_non_null(target);
    *target++ = '\0';
    *strrchr(target, ' ') = '\0';
    q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    percent_decode(target);
    parse_query(p, q);
    p->req.method = line;
    p->req.path = target;
    p->req.scheme = "https";
    while ((line = strtok(NULL, "\n")) != NULL)
        parse_header(p, line);
    p->req.query = p->query;
    p->req.headers = p->headers;
    p->req.payload_hash = p->payload_hash;
}

/* ---- golden-file cases ----------------------------------------------- */

struct vector_case {
    const char *file; /* under sigv4/, without extension */
    int s3doc;        /* credentials and time of the S3 docs, else the suite's */
    long expires;     /* > 0: presigned, compared with .url */
    int double_encode;
    int normalize;
};

/* The generic suite double-encodes and normalises; get-space and get-utf8
 * are the exception: their .req path is unencoded (a literal space, a
 * literal U+1234), and the suite's creq encodes it once. Our path is raw,
 * so for them one encoding is the suite's whole rule. */
static const struct vector_case vector_cases[] = {
    {"suite/get-header-key-duplicate/get-header-key-duplicate", 0, 0, 1, 1},
    {"suite/get-header-value-order/get-header-value-order", 0, 0, 1, 1},
    {"suite/get-header-value-trim/get-header-value-trim", 0, 0, 1, 1},
    {"suite/get-unreserved/get-unreserved", 0, 0, 1, 1},
    {"suite/get-utf8/get-utf8", 0, 0, 0, 1},
    {"suite/get-vanilla/get-vanilla", 0, 0, 1, 1},
    {"suite/get-vanilla-empty-query-key/get-vanilla-empty-query-key", 0, 0, 1, 1},
    {"suite/get-vanilla-query/get-vanilla-query", 0, 0, 1, 1},
    {"suite/get-vanilla-query-order-key/get-vanilla-query-order-key", 0, 0, 1, 1},
    {"suite/get-vanilla-query-order-key-case/get-vanilla-query-order-key-case", 0, 0, 1, 1},
    {"suite/get-vanilla-query-order-value/get-vanilla-query-order-value", 0, 0, 1, 1},
    {"suite/get-vanilla-query-unreserved/get-vanilla-query-unreserved", 0, 0, 1, 1},
    {"suite/get-vanilla-utf8-query/get-vanilla-utf8-query", 0, 0, 1, 1},
    {"suite/post-header-key-case/post-header-key-case", 0, 0, 1, 1},
    {"suite/post-header-key-sort/post-header-key-sort", 0, 0, 1, 1},
    {"suite/post-header-value-case/post-header-value-case", 0, 0, 1, 1},
    {"suite/post-vanilla/post-vanilla", 0, 0, 1, 1},
    {"suite/post-vanilla-empty-query-value/post-vanilla-empty-query-value", 0, 0, 1, 1},
    {"suite/post-vanilla-query/post-vanilla-query", 0, 0, 1, 1},
    {"suite/post-x-www-form-urlencoded/post-x-www-form-urlencoded", 0, 0, 1, 1},
    {"suite/post-x-www-form-urlencoded-parameters/post-x-www-form-urlencoded-parameters", 0, 0,
     1, 1},
    {"suite/normalize-path/get-relative/get-relative", 0, 0, 1, 1},
    {"suite/normalize-path/get-relative-relative/get-relative-relative", 0, 0, 1, 1},
    {"suite/normalize-path/get-slash/get-slash", 0, 0, 1, 1},
    {"suite/normalize-path/get-slash-dot-slash/get-slash-dot-slash", 0, 0, 1, 1},
    {"suite/normalize-path/get-slash-pointless-dot/get-slash-pointless-dot", 0, 0, 1, 1},
    {"suite/normalize-path/get-slashes/get-slashes", 0, 0, 1, 1},
    {"suite/normalize-path/get-space/get-space", 0, 0, 0, 1},
    {"suite/post-sts-token/post-sts-header-before/post-sts-header-before", 0, 0, 1, 1},
    {"s3/s3-get-object/s3-get-object", 1, 0, 0, 0},
    {"s3/s3-put-object/s3-put-object", 1, 0, 0, 0},
    {"s3/s3-get-bucket-lifecycle/s3-get-bucket-lifecycle", 1, 0, 0, 0},
    {"s3/s3-list-objects/s3-list-objects", 1, 0, 0, 0},
    {"s3/s3-presign-get/s3-presign-get", 1, 86400, 0, 0},
};

static void check_header_signing(const struct vector_case *vc, struct parsed_req *p,
                                 const struct sigv4_creds *creds, time_t now)
{
    struct sigv4_signed out;
    char *authz = read_vector(vc->file, ".authz", NULL);

    assert_int_equal(sigv4_sign_headers(&p->req, creds, now, &out), RZ_OK);
    assert_string_equal(out.authorization, authz);
    assert_non_null(p->amz_date);
    assert_string_equal(out.amz_date, p->amz_date);
    assert_non_null(strstr(authz, out.signature));
    sigv4_signed_cleanup(&out);
    free(authz);
}

static void check_presigning(const struct vector_case *vc, struct parsed_req *p,
                             const struct sigv4_creds *creds, time_t now)
{
    char *want = read_vector(vc->file, ".url", NULL);
    char *url = NULL;

    assert_int_equal(sigv4_presign_url(&p->req, creds, now, vc->expires, &url), RZ_OK);
    assert_string_equal(url, want);
    free(url);
    free(want);
}

static void test_vector(void **state)
{
    const struct vector_case *vc = *state;
    struct sigv4_creds creds = vc->s3doc ? s3doc_creds : suite_creds;
    time_t now = vc->s3doc ? T_S3DOC : T_SUITE;
    struct parsed_req p;
    struct sigv4_parts parts;
    char *creq = read_vector(vc->file, ".creq", NULL);
    char *sts = read_vector(vc->file, ".sts", NULL);

    parse_req(&p, read_vector(vc->file, ".req", NULL));
    p.req.region = "us-east-1";
    p.req.service = vc->s3doc ? "s3" : "service";
    p.req.double_encode_path = vc->double_encode;
    p.req.normalize_path = vc->normalize;
    creds.session_token = p.token;
    assert_int_equal(sigv4_build(&p.req, &creds, now, vc->expires, &parts), RZ_OK);
    assert_string_equal(parts.canonical_request, creq);
    assert_string_equal(parts.string_to_sign, sts);
    if (vc->expires)
        check_presigning(vc, &p, &creds, now);
    else
        check_header_signing(vc, &p, &creds, now);
    sigv4_parts_cleanup(&parts);
    free(p.text);
    free(creq);
    free(sts);
}

/* S3 signs the path as it is: the suite's normalisation cases must give a
 * different canonical request with S3's flags, or S3 keys like "a//b"
 * would be signed for the wrong object. */
static void test_s3_keeps_what_the_suite_normalises(void **state)
{
    static const char *const files[] = {
        "suite/normalize-path/get-slashes/get-slashes",
        "suite/normalize-path/get-relative/get-relative",
        "suite/normalize-path/get-slash-pointless-dot/get-slash-pointless-dot",
    };
    static const char *const s3_uri[] = {"//example//", "/example/..", "/./example"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct parsed_req p;
        struct sigv4_parts parts;

        parse_req(&p, read_vector(files[i], ".req", NULL));
        p.req.region = "us-east-1";
        p.req.service = "s3";
        assert_int_equal(sigv4_build(&p.req, &suite_creds, T_SUITE, 0, &parts), RZ_OK);
        assert_string_equal(parts.canonical_uri, s3_uri[i]);
        sigv4_parts_cleanup(&parts);
        free(p.text);
    }
}

static void test_post_policy_vector(void **state)
{
    char *b64 = read_vector("s3/s3-post-policy/s3-post-policy", ".b64", NULL);
    char *want = read_vector("s3/s3-post-policy/s3-post-policy", ".sig", NULL);
    size_t jlen;
    char *json = read_vector("s3/s3-post-policy/s3-post-policy", ".json", &jlen);
    unsigned char *enc = malloc(4 * (jlen / 3 + 1) + 1);
    char sig[65];

    (void)state;
    /* The policy file keeps its CRLF: its base64 must be the signed string. */
    assert_non_null(strstr(json, "\r\n"));
    assert_non_null(enc);
    EVP_EncodeBlock(enc, (const unsigned char *)json, (int)jlen);
    assert_string_equal((char *)enc, b64);
    assert_int_equal(sigv4_sign_policy(b64, &s3doc_creds, "us-east-1", "s3", T_POLICY, sig),
                     RZ_OK);
    assert_string_equal(sig, want);
    /* A day later the key, and so the signature, differ. */
    assert_int_equal(sigv4_sign_policy(b64, &s3doc_creds, "us-east-1", "s3", T_POLICY + 86400,
                                       sig),
                     RZ_OK);
    assert_string_not_equal(sig, want);
    free(enc);
    free(json);
    free(b64);
    free(want);
}

/* ---- S3 canonical URI, query and headers ----------------------------- */

struct uri_case {
    const char *path;
    int double_encode;
    int normalize;
    const char *want;
};

static void test_canonical_uri(void **state)
{
    static const struct uri_case cases[] = {
        /* S3: encoded once, nothing normalised. */
        {"/bucket/a b.jpg", 0, 0, "/bucket/a%20b.jpg"},
        {"/bucket/a+b.jpg", 0, 0, "/bucket/a%2Bb.jpg"},
        {"/bucket/100%.jpg", 0, 0, "/bucket/100%25.jpg"},
        {"/bucket/%41", 0, 0, "/bucket/%2541"},
        {"/bucket/~user/x-y_z.1", 0, 0, "/bucket/~user/x-y_z.1"},
        {"/bucket//a//b/", 0, 0, "/bucket//a//b/"},
        {"/bucket/./a/../b/..", 0, 0, "/bucket/./a/../b/.."},
        {"/bucket/\xd0\xb6\xe2\x82\xac.jpg", 0, 0, "/bucket/%D0%B6%E2%82%AC.jpg"},
        {"/b/:@=&;,$!'()*?#[]", 0, 0, "/b/%3A%40%3D%26%3B%2C%24%21%27%28%29%2A%3F%23%5B%5D"},
        {"/b/\t\n\x7f", 0, 0, "/b/%09%0A%7F"},
        /* The generic suite's rules, when the request asks for them. */
        {"/a b", 1, 0, "/a%2520b"},
        {"/a b/../c d/", 1, 1, "/c%2520d/"},
        {"/a//b/./c/", 0, 1, "/a/b/c/"},
        {"/../..", 0, 1, "/"},
        {"/a/b/../../..", 0, 1, "/"},
        {"/a/...", 0, 1, "/a/..."},
        {"/", 1, 1, "/"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;

        buf_init(&b, 4096);
        assert_int_equal(sigv4_canonical_uri(cases[i].path, cases[i].double_encode,
                                             cases[i].normalize, &b),
                         RZ_OK);
        assert_string_equal(b.data, cases[i].want);
        buf_cleanup(&b);
    }
}

struct query_case {
    struct sigv4_pair q[4];
    size_t n;
    const char *want;
};

static void test_canonical_query(void **state)
{
    static const struct query_case cases[] = {
        {{{"b", "2"}, {"a", "1"}, {"A", "0"}}, 3, "A=0&a=1&b=2"},
        {{{"lifecycle", NULL}}, 1, "lifecycle="},
        {{{"acl", ""}, {"a", NULL}}, 2, "a=&acl="},
        {{{"x", "2"}, {"x", "10"}, {"x", "1"}}, 3, "x=1&x=10&x=2"},
        {{{"k", "a b+c%d"}}, 1, "k=a%20b%2Bc%25d"},
        {{{"prefix", "images/a~b"}}, 1, "prefix=images%2Fa~b"},
        {{{"\xe1\x88\xb4", "bar"}}, 1, "%E1%88%B4=bar"},
        {{{"a b", "="}, {"a+b", "&"}}, 2, "a%20b=%3D&a%2Bb=%26"},
        {{{0}}, 0, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;

        buf_init(&b, 4096);
        assert_int_equal(sigv4_canonical_query(cases[i].q, cases[i].n, &b), RZ_OK);
        assert_string_equal(b.data ? b.data : "", cases[i].want);
        buf_cleanup(&b);
    }
}

struct header_case {
    struct sigv4_pair h[4];
    size_t n;
    enum rz_err err;
    const char *canon;
    const char *signed_;
};

static void test_canonical_headers(void **state)
{
    static const struct header_case cases[] = {
        {{{"Host", "h"}, {"Content-Type", "  image/jpeg  "}},
         2,
         RZ_OK,
         "content-type:image/jpeg\nhost:h\n",
         "content-type;host"},
        {{{"X-Amz-Meta-A", "a \t  b\t\tc"}, {"host", "h"}},
         2,
         RZ_OK,
         "host:h\nx-amz-meta-a:a b c\n",
         "host;x-amz-meta-a"},
        {{{"x-a", "2"}, {"X-A", " 1 "}, {"host", "h"}},
         3,
         RZ_OK,
         "host:h\nx-a:2,1\n",
         "host;x-a"},
        {{{"x-empty", "   "}, {"host", "h"}}, 2, RZ_OK, "host:h\nx-empty:\n", "host;x-empty"},
        {{{"bad name", "v"}}, 1, RZ_EINVAL, NULL, NULL},
        {{{"x-a", "v\r\nx-evil: 1"}}, 1, RZ_EINVAL, NULL, NULL},
        {{{"x-a", "v\x01"}}, 1, RZ_EINVAL, NULL, NULL},
        {{{"", "v"}}, 1, RZ_EINVAL, NULL, NULL},
        {{{"x-a", NULL}}, 1, RZ_EINVAL, NULL, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf c;
        struct buf s;

        buf_init(&c, 4096);
        buf_init(&s, 4096);
        assert_int_equal(sigv4_canonical_headers(cases[i].h, cases[i].n, &c, &s), cases[i].err);
        if (cases[i].err == RZ_OK) {
            assert_string_equal(c.data, cases[i].canon);
            assert_string_equal(s.data, cases[i].signed_);
        }
        buf_cleanup(&c);
        buf_cleanup(&s);
    }
}

/* ---- presigned URLs -------------------------------------------------- */

static struct sigv4_request s3_get(const char *path)
{
    struct sigv4_request r;

    memset(&r, 0, sizeof(r));
    r.method = "GET";
    r.scheme = "https";
    r.host = "examplebucket.s3.amazonaws.com";
    r.path = path;
    r.region = "us-east-1";
    r.service = "s3";
    r.payload_hash = "UNSIGNED-PAYLOAD";
    return r;
}

struct presign_case {
    const char *path;
    const char *url_prefix; /* scheme://host/encoded-path? */
};

/* The URL carries the key encoded once, exactly as it was signed. */
static void test_presign_url_path(void **state)
{
    static const struct presign_case cases[] = {
        {"/a b+c%41~d.jpg", "https://examplebucket.s3.amazonaws.com/a%20b%2Bc%2541~d.jpg?"},
        {"//x//y/./z/../w", "https://examplebucket.s3.amazonaws.com//x//y/./z/../w?"},
        {"/images/\xc3\xa9t\xc3\xa9.png",
         "https://examplebucket.s3.amazonaws.com/images/%C3%A9t%C3%A9.png?"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sigv4_request r = s3_get(cases[i].path);
        struct sigv4_parts parts;
        char *url = NULL;
        const char *q;

        assert_int_equal(sigv4_presign_url(&r, &s3doc_creds, T_S3DOC, 3600, &url), RZ_OK);
        assert_memory_equal(url, cases[i].url_prefix, strlen(cases[i].url_prefix));
        /* The query string is exactly the canonical query, then the signature. */
        assert_int_equal(sigv4_build(&r, &s3doc_creds, T_S3DOC, 3600, &parts), RZ_OK);
        q = url + strlen(cases[i].url_prefix);
        assert_memory_equal(q, parts.canonical_query, strlen(parts.canonical_query));
        q += strlen(parts.canonical_query);
        assert_memory_equal(q, "&X-Amz-Signature=", 17);
        assert_string_equal(q + 17, parts.signature);
        sigv4_parts_cleanup(&parts);
        free(url);
    }
}

/* Swift's access keys look like "test:tester": the colon is encoded inside
 * X-Amz-Credential, and the session token is signed in the query, sorted
 * between X-Amz-Expires and X-Amz-SignedHeaders. */
static void test_presign_credential_and_token(void **state)
{
    struct sigv4_creds creds = {"test:tester", "secret", "tok/en+=="};
    struct sigv4_pair ct = {"Content-Type", "image/jpeg"};
    struct sigv4_request r = s3_get("/bucket/k");
    char *url = NULL;

    (void)state;
    r.method = "PUT";
    r.scheme = "http";
    r.host = "127.0.0.1:8090";
    r.headers = &ct;
    r.nheaders = 1;
    assert_int_equal(sigv4_presign_url(&r, &creds, T_S3DOC, 900, &url), RZ_OK);
    assert_non_null(strstr(url, "http://127.0.0.1:8090/bucket/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                                "&X-Amz-Credential=test%3Atester%2F20130524%2Fus-east-1%2Fs3%2F"
                                "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=900"
                                "&X-Amz-Security-Token=tok%2Fen%2B%3D%3D"
                                "&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature="));
    free(url);
}

struct expires_case {
    long expires;
    enum rz_err err;
};

static void test_presign_expires_bounds(void **state)
{
    static const struct expires_case cases[] = {
        {0, RZ_EINVAL},
        {-1, RZ_EINVAL},
        {1, RZ_OK},
        {SIGV4_MAX_EXPIRES, RZ_OK},
        {SIGV4_MAX_EXPIRES + 1, RZ_EINVAL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sigv4_request r = s3_get("/k");
        char *url = (char *)"untouched";

        assert_int_equal(sigv4_presign_url(&r, &s3doc_creds, T_S3DOC, cases[i].expires, &url),
                         cases[i].err);
        if (cases[i].err == RZ_OK)
            free(url);
        else
            assert_null(url);
    }
}

/* The time is a parameter: another second, another signature. */
static void test_presign_depends_on_time(void **state)
{
    struct sigv4_request r = s3_get("/test.txt");
    char *a = NULL;
    char *b = NULL;

    (void)state;
    assert_int_equal(sigv4_presign_url(&r, &s3doc_creds, T_S3DOC, 86400, &a), RZ_OK);
    assert_int_equal(sigv4_presign_url(&r, &s3doc_creds, T_S3DOC + 1, 86400, &b), RZ_OK);
    assert_non_null(strstr(b, "X-Amz-Date=20130524T000001Z"));
    assert_string_not_equal(strstr(a, "X-Amz-Signature="), strstr(b, "X-Amz-Signature="));
    free(a);
    free(b);
}

/* ---- header signing -------------------------------------------------- */

static void test_sign_headers_with_token(void **state)
{
    struct sigv4_creds creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                "TOKEN"};
    struct sigv4_pair sha = {"x-amz-content-sha256",
                             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
    struct sigv4_request r = s3_get("/bucket/key");
    struct sigv4_signed out;

    (void)state;
    r.headers = &sha;
    r.nheaders = 1;
    r.payload_hash = sha.value;
    assert_int_equal(sigv4_sign_headers(&r, &creds, T_SUITE, &out), RZ_OK);
    assert_string_equal(out.amz_date, "20150830T123600Z");
    assert_string_equal(out.signed_headers,
                        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
    assert_int_equal(strlen(out.signature), 64);
    assert_non_null(strstr(out.authorization,
                           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/"
                           "aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;"
                           "x-amz-security-token, Signature="));
    sigv4_signed_cleanup(&out);
    sigv4_signed_cleanup(&out); /* safe twice: the struct is zeroed */
}

/* ---- hostile input --------------------------------------------------- */

enum bad_field {
    BAD_NULL_PATH,
    BAD_RELATIVE_PATH,
    BAD_LONG_PATH,
    BAD_HOST_SPACE,
    BAD_REGION_SLASH,
    BAD_METHOD,
    BAD_TOO_MANY_QUERY,
    BAD_RESERVED_QUERY,
    BAD_RESERVED_HEADER,
    BAD_HEADER_CRLF,
    BAD_LONG_HEADER,
    BAD_TIME_NEGATIVE,
    BAD_TIME_YEAR,
    BAD_NO_SECRET,
    BAD_ACCESS_SLASH,
    BAD_TOKEN_NEWLINE,
    BAD_SCHEME,
    BAD_PAYLOAD,
};

struct bad_case {
    enum bad_field field;
    enum rz_err err;
};

static void apply_bad(enum bad_field f, struct sigv4_request *r, struct sigv4_creds *c,
                      time_t *now, char *big, struct sigv4_pair *pairs)
{
    r->query = pairs; /* counts stay 0 unless a case sets them */
    r->headers = pairs;
    switch (f) {
    case BAD_NULL_PATH: r->path = NULL; break;
    case BAD_RELATIVE_PATH: r->path = "bucket/key"; break;
    case BAD_LONG_PATH: r->path = big; break;
    case BAD_HOST_SPACE: r->host = "a b"; break;
    case BAD_REGION_SLASH: r->region = "us/east"; break;
    case BAD_METHOD: r->method = "GE T"; break;
    case BAD_TOO_MANY_QUERY: r->nquery = 65; break;
    case BAD_RESERVED_QUERY:
        r->nquery = 1;
        pairs[0].name = "x-amz-signature";
        break;
    case BAD_RESERVED_HEADER:
        r->nheaders = 1;
        pairs[0].name = "Host";
        break;
    case BAD_HEADER_CRLF:
        r->nheaders = 1;
        pairs[0].value = "a\r\nb: c";
        break;
    case BAD_LONG_HEADER:
        r->nheaders = 1;
        pairs[0].value = big + 1;
        break;
    case BAD_TIME_NEGATIVE: *now = -1; break;
    case BAD_TIME_YEAR: *now = (time_t)253402300800LL; break; /* 10000-01-01 */
    case BAD_NO_SECRET: c->secret_key = ""; break;
    case BAD_ACCESS_SLASH: c->access_key = "AK/ID"; break;
    case BAD_TOKEN_NEWLINE: c->session_token = "to\nken"; break;
    case BAD_SCHEME: r->scheme = "ftp"; break;
    case BAD_PAYLOAD: r->payload_hash = NULL; break;
    }
}

static void test_hostile_input(void **state)
{
    static const struct bad_case cases[] = {
        {BAD_NULL_PATH, RZ_EINVAL},       {BAD_RELATIVE_PATH, RZ_EINVAL},
        {BAD_LONG_PATH, RZ_ETOOBIG},      {BAD_HOST_SPACE, RZ_EINVAL},
        {BAD_REGION_SLASH, RZ_EINVAL},    {BAD_METHOD, RZ_EINVAL},
        {BAD_TOO_MANY_QUERY, RZ_ETOOBIG}, {BAD_RESERVED_QUERY, RZ_EINVAL},
        {BAD_RESERVED_HEADER, RZ_EINVAL}, {BAD_HEADER_CRLF, RZ_EINVAL},
        {BAD_LONG_HEADER, RZ_ETOOBIG},    {BAD_TIME_NEGATIVE, RZ_EINVAL},
        {BAD_TIME_YEAR, RZ_EINVAL},       {BAD_NO_SECRET, RZ_EINVAL},
        {BAD_ACCESS_SLASH, RZ_EINVAL},    {BAD_TOKEN_NEWLINE, RZ_EINVAL},
        {BAD_SCHEME, RZ_EINVAL},          {BAD_PAYLOAD, RZ_EINVAL},
    };
    static char big[10000];
    size_t i;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sigv4_pair pairs[65];
        struct sigv4_request r = s3_get("/k");
        struct sigv4_creds c = s3doc_creds;
        time_t now = T_S3DOC;
        struct sigv4_signed out;
        char *url = (char *)"untouched";
        size_t j;

        memset(&out, 0, sizeof(out));
        for (j = 0; j < 65; j++)
            pairs[j] = (struct sigv4_pair){"x-a", "v"};
        apply_bad(cases[i].field, &r, &c, &now, big, pairs);
        if (cases[i].field == BAD_PAYLOAD) {
            assert_int_equal(sigv4_sign_headers(&r, &c, now, &out), cases[i].err);
            continue;
        }
        assert_int_equal(sigv4_presign_url(&r, &c, now, 60, &url), cases[i].err);
        assert_null(url);
        if (cases[i].field != BAD_SCHEME)
            assert_int_equal(sigv4_sign_headers(&r, &c, now, &out), cases[i].err);
        assert_null(out.authorization);
    }
}

struct policy_bad_case {
    const char *policy;
    const char *region;
};

static void test_policy_rejects_bad_input(void **state)
{
    static const struct policy_bad_case cases[] = {
        {"", "us-east-1"}, {"eyJ9\n", "us-east-1"}, {"ey J9", "us-east-1"}, {NULL, "us-east-1"},
        {"eyJ9", ""},      {"eyJ9", NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sig[65] = "x";

        assert_int_equal(sigv4_sign_policy(cases[i].policy, &s3doc_creds, cases[i].region, "s3",
                                           T_POLICY, sig),
                         RZ_EINVAL);
        assert_string_equal(sig, "");
    }
}

/* ---- small public helpers -------------------------------------------- */

static void test_helpers(void **state)
{
    char date[17];
    char hex[65];
    char *scope;
    char *enc;
    unsigned char key[32];
    char keyhex[65];
    size_t i;

    (void)state;
    sigv4_amz_date(T_S3DOC, date);
    assert_string_equal(date, "20130524T000000Z");
    sigv4_amz_date(-5, date);
    assert_string_equal(date, "");
    scope = sigv4_credential_scope("AKIAIOSFODNN7EXAMPLE", "us-east-1", "s3", T_S3DOC);
    assert_string_equal(scope, "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request");
    free(scope);
    assert_null(sigv4_credential_scope("AK", "us-east-1", "s3", -1));
    enc = sigv4_uri_encode("a/b c", 5, 1);
    assert_string_equal(enc, "a/b%20c");
    free(enc);
    enc = sigv4_uri_encode("a/b\0c", 5, 0);
    assert_string_equal(enc, "a%2Fb%00c");
    free(enc);
    sigv4_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* AWS's worked example of deriving a signing key (IAM, 20150830). */
    assert_int_equal(sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830",
                                       "us-east-1", "iam", key),
                     RZ_OK);
    for (i = 0; i < 32; i++)
        snprintf(keyhex + 2 * i, 3, "%02x", key[i]);
    assert_string_equal(keyhex,
                        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

/* ---- signing key cache ----------------------------------------------- */

/* The policy signature of secret at now, with the cache emptied first, so
 * the key is derived afresh: what every cached signature must equal. */
static void cold_policy_sig(const char *secret, const char *region, time_t now, char out[65])
{
    struct sigv4_creds c = {"AKID", secret, NULL};

    sigv4_key_cache_clear();
    assert_int_equal(sigv4_sign_policy("cG9saWN5", &c, region, "s3", now, out), RZ_OK);
}

static void policy_sig(const char *secret, const char *region, time_t now, char out[65])
{
    struct sigv4_creds c = {"AKID", secret, NULL};

    assert_int_equal(sigv4_sign_policy("cG9saWN5", &c, region, "s3", now, out), RZ_OK);
}

static void assert_cache(unsigned long long hits, unsigned long long misses)
{
    unsigned long long h, m;

    sigv4_key_cache_stats(&h, &m);
    assert_int_equal(h, hits);
    assert_int_equal(m, misses);
}

/* A key is derived once per secret, day and scope; a rotated secret (same
 * scope) or a new day never reuses an old key. */
static void test_key_cache_keys_by_secret_day_scope(void **state)
{
    char a[65], a_cold[65], b[65], b_cold[65], next_day[65], next_day_cold[65], east[65];

    (void)state;
    cold_policy_sig("secret-B", "us-east-1", T_POLICY, b_cold);
    cold_policy_sig("secret-A", "us-east-1", T_POLICY + 86400, next_day_cold);
    cold_policy_sig("secret-A", "us-east-1", T_POLICY, a_cold);
    assert_cache(0, 1);
    policy_sig("secret-A", "us-east-1", T_POLICY + 3600, a); /* same day: the kept key */
    assert_cache(1, 1);
    assert_string_equal(a, a_cold);
    policy_sig("secret-B", "us-east-1", T_POLICY, b); /* rotated: derived */
    assert_cache(1, 2);
    assert_string_equal(b, b_cold);
    assert_string_not_equal(a, b);
    policy_sig("secret-A", "us-east-1", T_POLICY + 86400, next_day);
    assert_cache(1, 3);
    assert_string_equal(next_day, next_day_cold);
    policy_sig("secret-A", "eu-west-1", T_POLICY, east);
    assert_cache(1, 4);
    assert_string_not_equal(east, a);
    /* A secret that differs in its last byte only is another secret. */
    policy_sig("secret-C", "us-east-1", T_POLICY, b);
    assert_string_not_equal(b, a);
    assert_string_not_equal(b, b_cold);
    sigv4_key_cache_clear();
    assert_cache(0, 0);
}

/* More scopes than slots, and a region too long to keep: every signature
 * still equals a freshly derived one. */
static void test_key_cache_eviction_and_bypass(void **state)
{
    char region[16], cold[20][65], warm[65];
    char long_region[200];

    (void)state;
    for (int i = 0; i < 20; i++) {
        snprintf(region, sizeof(region), "region-%d", i);
        cold_policy_sig("secret-A", region, T_POLICY, cold[i]);
    }
    sigv4_key_cache_clear();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20; i++) {
            snprintf(region, sizeof(region), "region-%d", i);
            policy_sig("secret-A", region, T_POLICY, warm);
            assert_string_equal(warm, cold[i]);
        }
    }
    memset(long_region, 'r', sizeof(long_region) - 1);
    long_region[sizeof(long_region) - 1] = '\0';
    cold_policy_sig("secret-A", long_region, T_POLICY, cold[0]);
    policy_sig("secret-A", long_region, T_POLICY, warm);
    assert_string_equal(warm, cold[0]);
    assert_cache(0, 0); /* never looked up: derived every time */
}

struct key_cache_worker {
    const char *secret;
    const char *expected;
    int bad;
};

static void *key_cache_worker_run(void *arg)
{
    struct key_cache_worker *w = arg;
    struct sigv4_creds c = {"AKID", w->secret, NULL};
    char sig[65];

    for (int i = 0; i < 2000; i++) {
        if (sigv4_sign_policy("cG9saWN5", &c, "us-east-1", "s3", T_POLICY, sig) != RZ_OK ||
            strcmp(sig, w->expected) != 0)
            w->bad++;
    }
    return NULL;
}

/* Threads signing with two secrets for the same scope (a rotation under
 * load): each always gets its own secret's signature. */
static void test_key_cache_threads(void **state)
{
    char a[65], b[65];
    struct key_cache_worker w[4] = {{"secret-A", a, 0},
                                    {"secret-B", b, 0},
                                    {"secret-A", a, 0},
                                    {"secret-B", b, 0}};
    pthread_t t[4];

    (void)state;
    cold_policy_sig("secret-A", "us-east-1", T_POLICY, a);
    cold_policy_sig("secret-B", "us-east-1", T_POLICY, b);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, key_cache_worker_run, &w[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    sigv4_key_cache_clear();
}

int main(void)
{
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_s3_keeps_what_the_suite_normalises),
        cmocka_unit_test(test_post_policy_vector),
        cmocka_unit_test(test_canonical_uri),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_canonical_headers),
        cmocka_unit_test(test_presign_url_path),
        cmocka_unit_test(test_presign_credential_and_token),
        cmocka_unit_test(test_presign_expires_bounds),
        cmocka_unit_test(test_presign_depends_on_time),
        cmocka_unit_test(test_sign_headers_with_token),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_policy_rejects_bad_input),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_key_cache_keys_by_secret_day_scope),
        cmocka_unit_test(test_key_cache_eviction_and_bypass),
        cmocka_unit_test(test_key_cache_threads),
    };
    size_t nv = sizeof(vector_cases) / sizeof(vector_cases[0]);
    size_t nf = sizeof(fixed) / sizeof(fixed[0]);
    struct CMUnitTest
        tests[sizeof(vector_cases) / sizeof(vector_cases[0]) + sizeof(fixed) / sizeof(fixed[0])];
    size_t i;

    /* One named test per golden case, so a failure names the case. */
    for (i = 0; i < nv; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_vector, (void *)&vector_cases[i]);

        t.name = vector_cases[i].file;
        tests[i] = t;
    }
    for (i = 0; i < nf; i++)
        tests[nv + i] = fixed[i];
    return _cmocka_run_group_tests("sigv4", tests, nv + nf, NULL, NULL);
}
