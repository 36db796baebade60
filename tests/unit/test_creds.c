/* test_creds.c - credentials: which endpoints are trusted, what responses
 * are accepted, and that the container provider fetches, caches, refreshes
 * and survives outages against a real local HTTP server (libmicrohttpd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "server/creds.h"
#include "server/creds_internal.h"

static time_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return timegm(&tm);
}

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- full URI allow/deny ---------------------------------------------- */

struct uri_case {
    const char *uri;
    int allowed;
};

static void test_full_uri_table(void **state)
{
    static const struct uri_case cases[] = {
        {"https://creds.example.com/v1/credentials", 1},
        {"https://203.0.113.5:8443/creds", 1},
        {"http://127.0.0.1:8080/creds", 1},
        {"http://127.200.3.4/creds", 1},
        {"http://localhost/creds", 1},
        {"http://LOCALHOST:9000/creds", 1},
        {"http://[::1]:8080/creds", 1},
        {"http://[0:0:0:0:0:0:0:1]/creds", 1},
        {"http://169.254.170.2/v2/credentials/abc", 1},
        {"http://169.254.170.23/v1/credentials", 1},
        {"http://[fd00:ec2::23]/v1/credentials", 1},
        {"http://2130706433/creds", 1}, /* libcurl reads it as 127.0.0.1 */
        {"http://creds.example.com/creds", 0},
        {"http://10.0.0.1/creds", 0},
        {"http://128.0.0.1/creds", 0},
        {"http://169.254.169.254/latest/meta-data/", 0}, /* EC2 IMDS */
        {"http://169.254.170.3/creds", 0},
        {"http://localhost.evil.example/creds", 0},
        {"http://127.0.0.1.nip.io/creds", 0},
        {"http://127.0.0.1@evil.example/creds", 0},
        {"http://[::2]/creds", 0},
        {"http://[::ffff:10.0.0.1]/creds", 0},
        {"ftp://127.0.0.1/creds", 0},
        {"file:///etc/passwd", 0},
        {"gopher://127.0.0.1/", 0},
        {"127.0.0.1/creds", 0},
        {"http://127.0.0.1/a b", 0},
        {"", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[256] = "";
        char *url = NULL;
        enum rz_err err = creds_check_full_uri(cases[i].uri, &url, msg, sizeof(msg));

        if (cases[i].allowed) {
            if (err != RZ_OK)
                fail_msg("expected allowed: %s (%s)", cases[i].uri, msg);
            assert_non_null(url);
        } else {
            if (err != RZ_EINVAL)
                fail_msg("expected denied: %s", cases[i].uri);
            assert_null(url);
            assert_non_null(strstr(msg, "AWS_CONTAINER_CREDENTIALS_FULL_URI"));
        }
        free(url);
    }
}

static void test_provider_rejects_plain_http_remote(void **state)
{
    struct creds_source src = {.full_uri = "http://creds.example.com/x"};
    struct creds_provider *p = (struct creds_provider *)1;
    char msg[256] = "";

    (void)state;
    assert_int_equal(creds_provider_new(&src, &p, msg, sizeof(msg)), RZ_EINVAL);
    assert_null(p);
    assert_non_null(strstr(msg, "https"));
    assert_non_null(strstr(msg, "creds.example.com"));
}

struct rel_case {
    const char *rel;
    const char *full;
    const char *want; /* NULL: rejected */
};

static void test_endpoint_url_table(void **state)
{
    static const struct rel_case cases[] = {
        {"/v2/credentials/1f2e", NULL, "http://169.254.170.2/v2/credentials/1f2e"},
        {"/v2/credentials?id=1", NULL, "http://169.254.170.2/v2/credentials?id=1"},
        /* relative wins over full, as in the AWS SDKs */
        {"/v2/c", "https://other.example/x", "http://169.254.170.2/v2/c"},
        {NULL, "https://other.example/x", "https://other.example/x"},
        {"", "http://127.0.0.1:1234/c", "http://127.0.0.1:1234/c"},
        {"@evil.example/x", NULL, NULL},
        {":8080/x", NULL, NULL},
        {"v2/credentials", NULL, NULL},
        {"/v2/a b", NULL, NULL},
        {"/v2/a\r\nX-Injected: 1", NULL, NULL},
        {NULL, NULL, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct creds_source src = {.relative_uri = cases[i].rel, .full_uri = cases[i].full};
        char msg[256] = "";
        char *url = NULL;
        enum rz_err err = creds_endpoint_url(&src, &url, msg, sizeof(msg));

        if (cases[i].want) {
            assert_int_equal(err, RZ_OK);
            assert_string_equal(url, cases[i].want);
        } else {
            if (err != RZ_EINVAL)
                fail_msg("expected rejection of case %zu", i);
            assert_null(url);
            assert_true(msg[0] != '\0');
        }
        free(url);
    }
}

/* ---- JSON ------------------------------------------------------------- */

#define GOOD_JSON                                                       \
    "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAEXAMPLEKEY123456\","   \
    "\"SecretAccessKey\":\"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\"," \
    "\"Token\":\"IQoJb3JpZ2luX2VjEXAMPLE==\",\"Expiration\":\"2026-11-26T18:00:00Z\"}"

static void test_parse_json_happy(void **state)
{
    struct creds_snapshot s;
    const char *notoken = "{\"AccessKeyId\":\"AKIDEXAMPLE\",\"SecretAccessKey\":\"s3cr3t\","
                          "\"Expiration\":\"2030-01-01T00:00:00.000Z\"}";
    const char *nulltoken = "{\"AccessKeyId\":\"AKIDEXAMPLE\",\"SecretAccessKey\":\"s3cr3t\","
                            "\"Token\":null,\"Expiration\":\"2030-01-01T00:00:00Z\"}";

    (void)state;
    assert_int_equal(creds_parse_json(GOOD_JSON, strlen(GOOD_JSON), &s), RZ_OK);
    assert_string_equal(s.access_key, "ASIAEXAMPLEKEY123456");
    assert_string_equal(s.secret_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    assert_string_equal(s.session_token, "IQoJb3JpZ2luX2VjEXAMPLE==");
    assert_int_equal(s.expiration, utc(2026, 11, 26, 18, 0, 0));
    creds_snapshot_cleanup(&s);
    assert_null(s.access_key);

    assert_int_equal(creds_parse_json(notoken, strlen(notoken), &s), RZ_OK);
    assert_null(s.session_token);
    assert_int_equal(s.expiration, utc(2030, 1, 1, 0, 0, 0));
    creds_snapshot_cleanup(&s);

    assert_int_equal(creds_parse_json(nulltoken, strlen(nulltoken), &s), RZ_OK);
    assert_null(s.session_token);
    creds_snapshot_cleanup(&s);
}

#define K "\"AccessKeyId\":\"AKID\""
#define S "\"SecretAccessKey\":\"sec\""
#define T "\"Token\":\"tok\""
#define E "\"Expiration\":\"2026-11-26T18:00:00Z\""

static void test_parse_json_bad_shapes(void **state)
{
    static const char *const cases[] = {
        "",
        "not json",
        "[]",
        "\""
        "AKID"
        "\"",
        "null",
        "{" K "," S "," T "," E "} trailing",
        "{" K "," S "," T "," E ",",
        "{" S "," T "," E "}",
        "{" K "," T "," E "}",
        "{" K "," S "," T "}",
        "{\"AccessKeyId\":42," S "," T "," E "}",
        "{\"AccessKeyId\":null," S "," T "," E "}",
        "{" K ",\"SecretAccessKey\":[\"sec\"]," T "," E "}",
        "{" K "," S ",\"Token\":7," E "}",
        "{" K "," S "," T ",\"Expiration\":1795716000}",
        "{" K "," S "," T ",\"Expiration\":\"2026-02-30T18:00:00Z\"}",
        "{" K "," S "," T ",\"Expiration\":\"2026-11-26T18:00:00+02:00\"}",
        "{" K "," S "," T ",\"Expiration\":\"\"}",
        "{\"AccessKeyId\":\"\"," S "," T "," E "}",
        "{" K ",\"SecretAccessKey\":\"\"," T "," E "}",
        "{" K "," S ",\"Token\":\"\"," E "}",
        "{" K ",\"SecretAccessKey\":\"a\\nb\"," T "," E "}",
        "{\"AccessKeyId\":\"AK ID\"," S "," T "," E "}",
        "{" K "," S ",\"Token\":\"t\\u00e9\"," E "}",
        "{" K "," K "," S "," T "," E "}", /* duplicate key */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct creds_snapshot s;
        enum rz_err err = creds_parse_json(cases[i], strlen(cases[i]), &s);

        if (err != RZ_EINVAL)
            fail_msg("expected RZ_EINVAL for: %s (got %d)", cases[i], err);
        assert_null(s.access_key);
        assert_null(s.secret_key);
        assert_null(s.session_token);
    }
}

static void test_parse_json_huge(void **state)
{
    size_t n = CREDS_MAX_RESPONSE + 100;
    char *big = malloc(n + 1);
    struct creds_snapshot s;
    int len;

    (void)state;
    assert_non_null(big);
    /* A well-formed body whose only fault is its size. */
    len = snprintf(big, n + 1, "{" K "," S "," T "," E ",\"Pad\":\"");
    memset(big + len, 'x', n - (size_t)len - 2);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = '\0';
    assert_int_equal(creds_parse_json(big, n, &s), RZ_ETOOBIG);
    assert_null(s.access_key);
    free(big);
}

/* ---- static provider ---------------------------------------------------- */

static void test_static_provider(void **state)
{
    struct creds_source src = {.access_key = "AKIDSTATIC",
                               .secret_key = "static/secret",
                               .session_token = "static-token",
                               .full_uri = "http://creds.example.com/ignored"};
    struct creds_provider *p = NULL;
    struct creds_snapshot a, b;
    char msg[128];

    (void)state;
    assert_int_equal(creds_provider_new(&src, &p, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(creds_get(p, utc(2026, 1, 1, 0, 0, 0), &a), RZ_OK);
    assert_int_equal(creds_get(p, utc(2099, 1, 1, 0, 0, 0), &b), RZ_OK);
    assert_string_equal(a.access_key, "AKIDSTATIC");
    assert_string_equal(a.secret_key, "static/secret");
    assert_string_equal(a.session_token, "static-token");
    assert_int_equal(a.expiration, 0);
    assert_string_equal(b.secret_key, "static/secret");
    assert_ptr_not_equal(a.secret_key, b.secret_key); /* deep copies */
    creds_snapshot_cleanup(&a);
    creds_snapshot_cleanup(&a); /* safe twice: zeroed */
    creds_snapshot_cleanup(&b);
    creds_provider_free(p);
    creds_provider_free(NULL);

    src.session_token = "";
    assert_int_equal(creds_provider_new(&src, &p, msg, sizeof(msg)), RZ_OK);
    assert_int_equal(creds_get(p, 0, &a), RZ_OK);
    assert_null(a.session_token);
    creds_snapshot_cleanup(&a);
    creds_provider_free(p);
}

static void test_provider_config_errors(void **state)
{
    struct creds_source nosecret = {.access_key = "AKID"};
    struct creds_source none = {0};
    struct creds_source badkey = {.access_key = "AK ID", .secret_key = "s"};
    struct creds_source badtok = {.full_uri = "http://127.0.0.1/x", .auth_token = "a\r\nX: y"};
    struct creds_provider *p = NULL;
    char msg[256];

    (void)state;
    assert_int_equal(creds_provider_new(&nosecret, &p, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "AWS_SECRET_ACCESS_KEY"));
    assert_null(p);
    assert_int_equal(creds_provider_new(&none, &p, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
    assert_int_equal(creds_provider_new(&badkey, &p, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "printable"));
    assert_int_equal(creds_provider_new(&badtok, &p, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    assert_null(p);
}

static void test_read_token_file(void **state)
{
    char path[] = "/tmp/test_creds_tokXXXXXX";
    int fd = mkstemp(path);
    char *tok = NULL;
    char big[CREDS_MAX_TOKEN_FILE + 10];

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, " \t tok-123 \n\n", 13), 13);
    close(fd);
    assert_int_equal(creds_read_token_file(path, &tok), RZ_OK);
    assert_string_equal(tok, "tok-123");
    free(tok);

    memset(big, 'a', sizeof(big));
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    close(fd);
    assert_int_equal(creds_read_token_file(path, &tok), RZ_ETOOBIG);
    assert_null(tok);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "a\r\nX-Evil: 1\n", 14), 14);
    close(fd);
    assert_int_equal(creds_read_token_file(path, &tok), RZ_EINVAL);

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, " \n", 2), 2);
    close(fd);
    assert_int_equal(creds_read_token_file(path, &tok), RZ_EINVAL);

    unlink(path);
    assert_int_equal(creds_read_token_file(path, &tok), RZ_EINVAL);
    assert_null(tok);
}

/* ---- a real credentials endpoint -------------------------------------- */

struct srv {
    struct MHD_Daemon *d;
    unsigned port;
    char url[128];
    pthread_mutex_t lock;
    int hits;
    unsigned status;
    char *body;       /* served as is */
    int stream_bytes; /* >0: serve this many bytes with no Content-Length instead */
    int redirect;     /* answer 302 to /elsewhere */
    unsigned delay_ms;
    char want_auth[128]; /* "" = do not check */
    char got_auth[128];  /* last Authorization seen, "-" if none */
};

static ssize_t srv_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct srv *s = cls;

    size_t blen = strlen(s->body);

    /* The body, then whitespace: still valid JSON when cut anywhere after
     * the body, so only the cap can make this response fail. */
    if (pos >= (uint64_t)s->stream_bytes)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > (uint64_t)s->stream_bytes - pos)
        max = (size_t)((uint64_t)s->stream_bytes - pos);
    if (pos < blen) {
        max = max < blen - pos ? max : blen - (size_t)pos;
        memcpy(buf, s->body + pos, max);
    } else {
        memset(buf, ' ', max);
    }
    return (ssize_t)max;
}

static struct MHD_Response *srv_make_response(struct srv *s, unsigned *status)
{
    struct MHD_Response *r;

    *status = s->status;
    if (s->want_auth[0] != '\0' && strcmp(s->got_auth, s->want_auth) != 0) {
        *status = MHD_HTTP_UNAUTHORIZED;
        return MHD_create_response_from_buffer(6, (void *)"denied", MHD_RESPMEM_PERSISTENT);
    }
    if (s->stream_bytes > 0)
        return MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, srv_stream, s, NULL);
    r = MHD_create_response_from_buffer(strlen(s->body), s->body, MHD_RESPMEM_MUST_COPY);
    if (s->redirect) {
        *status = MHD_HTTP_FOUND;
        MHD_add_response_header(r, "Location", "/elsewhere");
    }
    return r;
}

static enum MHD_Result srv_handle(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    static int first;
    struct srv *s = cls;
    struct MHD_Response *r;
    const char *auth;
    unsigned status;
    unsigned delay;
    enum MHD_Result ret;

    if (*req_cls == NULL) {
        *req_cls = &first;
        return MHD_YES;
    }
    auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&s->lock);
    s->hits++;
    snprintf(s->got_auth, sizeof(s->got_auth), "%s", auth ? auth : "-");
    delay = s->delay_ms;
    pthread_mutex_unlock(&s->lock);
    if (delay)
        usleep(delay * 1000);
    pthread_mutex_lock(&s->lock);
    r = srv_make_response(s, &status);
    pthread_mutex_unlock(&s->lock);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void srv_set_body(struct srv *s, const char *key, const char *secret, const char *tok,
                         const char *exp)
{
    char buf[512];

    snprintf(buf, sizeof(buf),
             "{\"AccessKeyId\":\"%s\",\"SecretAccessKey\":\"%s\",\"Token\":\"%s\","
             "\"Expiration\":\"%s\"}",
             key, secret, tok, exp);
    pthread_mutex_lock(&s->lock);
    free(s->body);
    s->body = strdup(buf);
    s->status = 200;
    pthread_mutex_unlock(&s->lock);
}

static int srv_hits(struct srv *s)
{
    int n;

    pthread_mutex_lock(&s->lock);
    n = s->hits;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static int srv_setup(void **state)
{
    struct srv *s = calloc(1, sizeof(*s));
    struct sockaddr_in sin;
    const union MHD_DaemonInfo *info;

    if (!s)
        return -1;
    pthread_mutex_init(&s->lock, NULL);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, srv_handle, s, MHD_OPTION_SOCK_ADDR, &sin,
                            MHD_OPTION_END);
    if (!s->d)
        return -1;
    info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info->port;
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u/v1/credentials", s->port);
    srv_set_body(s, "ASIAFIRST", "secret-1", "token-1", "2026-11-26T18:00:00Z");
    *state = s;
    return 0;
}

static int srv_teardown(void **state)
{
    struct srv *s = *state;

    if (s->d)
        MHD_stop_daemon(s->d);
    free(s->body);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return 0;
}

static struct creds_provider *provider_for(struct srv *s, const char *token,
                                           const char *token_file)
{
    struct creds_source src = {.full_uri = s->url,
                               .auth_token = token,
                               .auth_token_file = token_file};
    struct creds_provider *p = NULL;
    char msg[256] = "";

    if (creds_provider_new(&src, &p, msg, sizeof(msg)) != RZ_OK)
        fail_msg("creds_provider_new: %s", msg);
    return p;
}

static void expect_keys(struct creds_provider *p, time_t now, const char *key,
                        const char *secret, time_t exp)
{
    struct creds_snapshot c;
    enum rz_err err = creds_get(p, now, &c);

    if (err != RZ_OK)
        fail_msg("creds_get: %s", rz_err_name(err));
    assert_string_equal(c.access_key, key);
    assert_string_equal(c.secret_key, secret);
    assert_int_equal(c.expiration, exp);
    creds_snapshot_cleanup(&c);
}

static void expect_upstream_error(struct creds_provider *p, time_t now)
{
    struct creds_snapshot c;

    assert_int_equal(creds_get(p, now, &c), RZ_EUPSTREAM);
    assert_null(c.access_key);
    assert_null(c.secret_key);
    assert_null(c.session_token);
}

static void test_container_fetch_cache_refresh(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p;
    struct creds_snapshot c;
    time_t exp1 = utc(2026, 11, 26, 18, 0, 0);
    time_t exp2 = utc(2026, 11, 26, 19, 0, 0);

    snprintf(s->want_auth, sizeof(s->want_auth), "tok-abc");
    p = provider_for(s, "tok-abc", NULL);
    assert_int_equal(srv_hits(s), 0); /* nothing fetched at construction */

    assert_int_equal(creds_get(p, utc(2026, 11, 26, 17, 0, 0), &c), RZ_OK);
    assert_string_equal(c.access_key, "ASIAFIRST");
    assert_string_equal(c.secret_key, "secret-1");
    assert_string_equal(c.session_token, "token-1");
    assert_int_equal(c.expiration, exp1);
    creds_snapshot_cleanup(&c);
    assert_int_equal(srv_hits(s), 1);
    assert_string_equal(s->got_auth, "tok-abc");

    expect_keys(p, utc(2026, 11, 26, 17, 30, 0), "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 1);

    srv_set_body(s, "ASIASECOND", "secret-2", "token-2", "2026-11-26T19:00:00Z");
    /* 301 s before expiry: still outside the 5-minute margin. */
    expect_keys(p, exp1 - CREDS_REFRESH_MARGIN - 1, "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 1);
    /* exactly 5 minutes before expiry: refresh, new keys */
    expect_keys(p, exp1 - CREDS_REFRESH_MARGIN, "ASIASECOND", "secret-2", exp2);
    assert_int_equal(srv_hits(s), 2);
    expect_keys(p, exp1 + 60, "ASIASECOND", "secret-2", exp2);
    assert_int_equal(srv_hits(s), 2);
    creds_provider_free(p);
}

static void test_container_token_file(void **state)
{
    struct srv *s = *state;
    char path[] = "/tmp/test_creds_fileXXXXXX";
    int fd = mkstemp(path);
    struct creds_provider *p;
    time_t now = utc(2026, 11, 26, 17, 0, 0);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  file-tok-1\n", 13), 13);
    close(fd);
    /* The file wins over the plain token, as in the AWS SDKs. */
    p = provider_for(s, "plain-token", path);
    expect_keys(p, now, "ASIAFIRST", "secret-1", utc(2026, 11, 26, 18, 0, 0));
    assert_string_equal(s->got_auth, "file-tok-1");

    /* Rotated in place: the next fetch reads the new token. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "file-tok-2", 10), 10);
    close(fd);
    expect_keys(p, utc(2026, 11, 26, 17, 58, 0), "ASIAFIRST", "secret-1",
                utc(2026, 11, 26, 18, 0, 0));
    assert_string_equal(s->got_auth, "file-tok-2");
    assert_int_equal(srv_hits(s), 2);

    /* A vanished token file is a failed refresh, not a request without auth. */
    unlink(path);
    creds_provider_free(p);
    p = provider_for(s, NULL, path);
    expect_upstream_error(p, now);
    assert_int_equal(srv_hits(s), 2);
    creds_provider_free(p);

    /* No token at all: no Authorization header. */
    p = provider_for(s, NULL, NULL);
    expect_keys(p, now, "ASIAFIRST", "secret-1", utc(2026, 11, 26, 18, 0, 0));
    assert_string_equal(s->got_auth, "-");
    creds_provider_free(p);
}

static void test_container_wrong_token(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p;

    snprintf(s->want_auth, sizeof(s->want_auth), "right");
    p = provider_for(s, "wrong", NULL);
    expect_upstream_error(p, utc(2026, 11, 26, 17, 0, 0));
    assert_int_equal(srv_hits(s), 1); /* a 401 is not retried */
    creds_provider_free(p);
}

static void test_container_500_keeps_valid_cache(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p = provider_for(s, NULL, NULL);
    time_t exp1 = utc(2026, 11, 26, 18, 0, 0);
    time_t t;

    expect_keys(p, utc(2026, 11, 26, 17, 0, 0), "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 1);
    pthread_mutex_lock(&s->lock);
    s->status = 500;
    pthread_mutex_unlock(&s->lock);

    t = exp1 - 120; /* inside the margin, still valid */
    expect_keys(p, t, "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 3); /* 5xx retried once */
    /* Within the back-off the endpoint is left alone. */
    expect_keys(p, t + CREDS_FAIL_BACKOFF - 1, "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 3);
    expect_keys(p, t + CREDS_FAIL_BACKOFF, "ASIAFIRST", "secret-1", exp1);
    assert_int_equal(srv_hits(s), 5);
    /* Expired and the endpoint still failing: nothing to give. */
    expect_upstream_error(p, exp1);
    assert_int_equal(srv_hits(s), 7);

    /* The endpoint recovers. */
    srv_set_body(s, "ASIASECOND", "secret-2", "token-2", "2026-11-26T19:00:00Z");
    expect_keys(p, exp1 + 1, "ASIASECOND", "secret-2", utc(2026, 11, 26, 19, 0, 0));
    creds_provider_free(p);
}

static void test_container_endpoint_down(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p;
    double t0;

    MHD_stop_daemon(s->d); /* the port is now closed */
    s->d = NULL;
    p = provider_for(s, NULL, NULL);
    t0 = mono_now();
    expect_upstream_error(p, utc(2026, 11, 26, 17, 0, 0));
    assert_true(mono_now() - t0 < 3.0);
    creds_provider_free(p);
}

static void test_container_bad_responses(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p = provider_for(s, NULL, NULL);
    time_t now = utc(2026, 11, 26, 17, 0, 0);
    char *big;
    char *good;
    int hits;

    /* Wrong shape */
    pthread_mutex_lock(&s->lock);
    free(s->body);
    s->body = strdup("{\"AccessKeyId\":\"A\"}");
    pthread_mutex_unlock(&s->lock);
    expect_upstream_error(p, now);
    assert_int_equal(srv_hits(s), 1);

    /* Already expired credentials are no credentials. */
    srv_set_body(s, "ASIAOLD", "secret-old", "token-old", "2026-11-26T16:59:59Z");
    expect_upstream_error(p, now + CREDS_FAIL_BACKOFF);

    /* A redirect is not followed. */
    srv_set_body(s, "ASIAFIRST", "secret-1", "token-1", "2026-11-26T18:00:00Z");
    /* (The padded bodies below start with these good credentials.) */
    s->redirect = 1;
    hits = srv_hits(s);
    expect_upstream_error(p, now + 2 * CREDS_FAIL_BACKOFF);
    assert_int_equal(srv_hits(s), hits + 1);
    s->redirect = 0;

    /* Over the cap, with and without a Content-Length: good credentials
     * padded with whitespace past 64 KiB. */
    big = malloc(CREDS_MAX_RESPONSE + 2);
    assert_non_null(big);
    memset(big, ' ', CREDS_MAX_RESPONSE + 1);
    big[CREDS_MAX_RESPONSE + 1] = '\0';
    pthread_mutex_lock(&s->lock);
    memcpy(big, s->body, strlen(s->body));
    good = s->body;
    s->body = big;
    pthread_mutex_unlock(&s->lock);
    expect_upstream_error(p, now + 3 * CREDS_FAIL_BACKOFF);
    pthread_mutex_lock(&s->lock);
    s->body = good;
    pthread_mutex_unlock(&s->lock);
    free(big);
    s->stream_bytes = CREDS_MAX_RESPONSE * 4;
    hits = srv_hits(s);
    expect_upstream_error(p, now + 4 * CREDS_FAIL_BACKOFF);
    assert_int_equal(srv_hits(s), hits + 1); /* not retried */
    s->stream_bytes = 0;

    /* and the provider is still usable afterwards */
    srv_set_body(s, "ASIAFIRST", "secret-1", "token-1", "2026-11-26T18:00:00Z");
    expect_keys(p, now + 5 * CREDS_FAIL_BACKOFF, "ASIAFIRST", "secret-1",
                utc(2026, 11, 26, 18, 0, 0));
    creds_provider_free(p);
}

#define NTHREADS 8

struct racer {
    struct creds_provider *p;
    time_t now;
    enum rz_err err;
    struct creds_snapshot got;
    double seconds;
};

static void *racer_run(void *arg)
{
    struct racer *r = arg;
    double t0 = mono_now();

    r->err = creds_get(r->p, r->now, &r->got);
    r->seconds = mono_now() - t0;
    return NULL;
}

static void run_racers(struct creds_provider *p, time_t now, struct racer *r)
{
    pthread_t th[NTHREADS];
    int i;

    for (i = 0; i < NTHREADS; i++) {
        r[i].p = p;
        r[i].now = now;
        assert_int_equal(pthread_create(&th[i], NULL, racer_run, &r[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
}

static void test_container_concurrent_single_fetch(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p = provider_for(s, NULL, NULL);
    struct racer r[NTHREADS];
    time_t exp1 = utc(2026, 11, 26, 18, 0, 0);
    int fresh = 0;
    int i;

    memset(r, 0, sizeof(r));
    s->delay_ms = 300; /* every thread arrives while the first fetch is in flight */
    run_racers(p, utc(2026, 11, 26, 17, 0, 0), r);
    assert_int_equal(srv_hits(s), 1);
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(r[i].err, RZ_OK);
        assert_string_equal(r[i].got.access_key, "ASIAFIRST");
        assert_string_equal(r[i].got.secret_key, "secret-1");
        creds_snapshot_cleanup(&r[i].got);
    }

    /* Inside the margin with a valid cache: one thread refreshes and gets
     * the new keys; the others do not wait for the slow endpoint. */
    srv_set_body(s, "ASIASECOND", "secret-2", "token-2", "2026-11-26T19:00:00Z");
    s->delay_ms = 1000;
    memset(r, 0, sizeof(r));
    run_racers(p, exp1 - 60, r);
    assert_int_equal(srv_hits(s), 2);
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(r[i].err, RZ_OK);
        if (strcmp(r[i].got.access_key, "ASIASECOND") == 0) {
            fresh++;
        } else {
            assert_string_equal(r[i].got.access_key, "ASIAFIRST");
            assert_true(r[i].seconds < 0.5);
        }
        creds_snapshot_cleanup(&r[i].got);
    }
    assert_int_equal(fresh, 1);
    s->delay_ms = 0;
    expect_keys(p, exp1 - 60, "ASIASECOND", "secret-2", utc(2026, 11, 26, 19, 0, 0));
    assert_int_equal(srv_hits(s), 2);
    creds_provider_free(p);
}

static void test_container_concurrent_failure_shared(void **state)
{
    struct srv *s = *state;
    struct creds_provider *p = provider_for(s, NULL, NULL);
    struct racer r[NTHREADS];
    double t0;
    int i;

    pthread_mutex_lock(&s->lock);
    s->status = 503;
    s->delay_ms = 200;
    pthread_mutex_unlock(&s->lock);
    memset(r, 0, sizeof(r));
    t0 = mono_now();
    run_racers(p, utc(2026, 11, 26, 17, 0, 0), r);
    /* Waiters take the outcome of the fetch they waited for: one fetch (two
     * attempts), not eight in turn. */
    assert_int_equal(srv_hits(s), 2);
    assert_true(mono_now() - t0 < 2.0);
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(r[i].err, RZ_EUPSTREAM);
        assert_null(r[i].got.access_key);
    }
    creds_provider_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_uri_table),
        cmocka_unit_test(test_provider_rejects_plain_http_remote),
        cmocka_unit_test(test_endpoint_url_table),
        cmocka_unit_test(test_parse_json_happy),
        cmocka_unit_test(test_parse_json_bad_shapes),
        cmocka_unit_test(test_parse_json_huge),
        cmocka_unit_test(test_static_provider),
        cmocka_unit_test(test_provider_config_errors),
        cmocka_unit_test(test_read_token_file),
        cmocka_unit_test_setup_teardown(test_container_fetch_cache_refresh, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_token_file, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_wrong_token, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_500_keeps_valid_cache, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_endpoint_down, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_bad_responses, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_concurrent_single_fetch, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_container_concurrent_failure_shared, srv_setup,
                                        srv_teardown),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
