/* fuzz_sigv4.c - SigV4 canonicalisation and presigning on hostile paths,
 * query parameters and headers (keys and filenames come from clients).
 *
 * Input: one flags byte, then NUL-separated fields: the path first, then
 * "?name=value" for a query parameter ("?name" for a NULL value) and
 * "name:value" for a header. Credentials, host and time are fixed. */
#include <string.h>

#include "server/buf.h"
#include "server/sigv4.h"
#include "server/sigv4_internal.h"
#include "tests/fuzz/fuzz.h"

#define MAX_PAIRS 80 /* past SIGV4_MAX_PAIRS (64), so the cap is exercised too */
#define HOST "examplebucket.s3.amazonaws.com"
#define NOW ((time_t)1369353600) /* 20130524T000000Z */

struct input {
    int normalize;
    int double_encode;
    int session;
    int put;
    char *path;
    struct sigv4_pair query[MAX_PAIRS];
    size_t nquery;
    struct sigv4_pair headers[MAX_PAIRS];
    size_t nheaders;
    char *text; /* the fields, NUL-terminated in place */
};

static int is_unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static int is_upper_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* 1 if s[0..n) holds only unreserved characters, bytes of extra and %XX
 * with uppercase hex: everything SigV4 and S3 agree on. */
static int encoded_ok(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        if (is_unreserved(s[i]) || (s[i] && strchr(extra, s[i])))
            continue;
        if (s[i] != '%' || i + 2 >= n || !is_upper_hex(s[i + 1]) || !is_upper_hex(s[i + 2]))
            return 0;
        i += 2;
    }
    return 1;
}

static int hex_value(char c)
{
    return c <= '9' ? c - '0' : c - 'A' + 10;
}

/* Decodes s[0..n), already checked by encoded_ok; caller frees. */
static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    FUZZ_CHECK(out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            out[o++] = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static void add_field(struct input *in, char *f)
{
    struct sigv4_pair *p;
    char *sep;

    if (f[0] == '?' && in->nquery < MAX_PAIRS) {
        p = &in->query[in->nquery++];
        p->name = f + 1;
        sep = strchr(f + 1, '=');
        p->value = sep ? sep + 1 : NULL;
    } else if (f[0] != '?' && in->nheaders < MAX_PAIRS) {
        p = &in->headers[in->nheaders++];
        p->name = f;
        sep = strchr(f, ':');
        p->value = sep ? sep + 1 : "";
    } else {
        return;
    }
    if (sep)
        *sep = '\0';
}

static void split_input(const uint8_t *data, size_t size, struct input *in)
{
    memset(in, 0, sizeof(*in));
    in->text = calloc(size + 1, 1);
    FUZZ_CHECK(in->text);
    if (size == 0) {
        in->path = in->text;
        return;
    }
    in->normalize = data[0] & 1;
    in->double_encode = (data[0] >> 1) & 1;
    in->session = (data[0] >> 2) & 1;
    in->put = (data[0] >> 3) & 1;
    memcpy(in->text, data + 1, size - 1);
    in->path = in->text;
    for (char *f = in->text + strlen(in->text) + 1; f < in->text + size - 1;) {
        char *next = f + strlen(f) + 1; /* before add_field cuts f in two */

        if (f[0])
            add_field(in, f);
        f = next;
    }
}

/* After normalising, no segment is empty (but a trailing '/'), "." or "..". */
static void check_normalized(const char *uri)
{
    size_t n = strlen(uri);

    FUZZ_CHECK(uri[0] == '/');
    FUZZ_CHECK(!strstr(uri, "//") && !strstr(uri, "/./") && !strstr(uri, "/../"));
    FUZZ_CHECK(!(n >= 2 && strcmp(uri + n - 2, "/.") == 0));
    FUZZ_CHECK(!(n >= 3 && strcmp(uri + n - 3, "/..") == 0));
}

/* The canonical URI: encoded once, it decodes back to the (normalised)
 * path; encoded twice, it decodes to the once-encoded form. */
static void fuzz_uri(const struct input *in)
{
    struct buf once;
    struct buf out;
    int normalize = in->normalize && in->path[0] == '/'; /* the step's precondition */
    enum rz_err err;
    char *back;

    buf_init(&once, 1 << 20);
    buf_init(&out, 1 << 20);
    err = sigv4_canonical_uri(in->path, 0, normalize, &once);
    FUZZ_CHECK(err == RZ_OK);
    FUZZ_CHECK(encoded_ok(once.data ? once.data : "", once.len, "/"));
    if (normalize) {
        check_normalized(once.data);
    } else {
        back = decode(once.data ? once.data : "", once.len);
        FUZZ_CHECK(strcmp(back, in->path) == 0);
        free(back);
    }
    err = sigv4_canonical_uri(in->path, 1, normalize, &out);
    FUZZ_CHECK(err == RZ_OK);
    FUZZ_CHECK(encoded_ok(out.data ? out.data : "", out.len, "/"));
    back = decode(out.data ? out.data : "", out.len);
    FUZZ_CHECK(strcmp(back, once.data ? once.data : "") == 0);
    free(back);
    buf_cleanup(&once);
    buf_cleanup(&out);
}

static int pair_given(const struct input *in, const char *name, const char *value)
{
    for (size_t i = 0; i < in->nquery; i++) {
        const char *v = in->query[i].value ? in->query[i].value : "";

        if (strcmp(in->query[i].name, name) == 0 && strcmp(v, value) == 0)
            return 1;
    }
    return 0;
}

/* strcmp order of a[0..alen) and b[0..blen). */
static int span_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    return c ? c : (alen > blen) - (alen < blen);
}

/* One "name=value" per input pair, each decoding to a given pair, sorted
 * by encoded name then encoded value. */
static void check_query(const struct input *in, const char *q)
{
    const char *prev = NULL;
    size_t prev_name = 0;
    size_t prev_len = 0;
    size_t count = 0;

    FUZZ_CHECK(encoded_ok(q, strlen(q), "=&"));
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        size_t nlen;
        char *name;
        char *value;

        FUZZ_CHECK(eq);
        nlen = (size_t)(eq - q);
        name = decode(q, nlen);
        value = decode(eq + 1, n - nlen - 1);
        FUZZ_CHECK(pair_given(in, name, value));
        if (prev) {
            int c = span_cmp(prev, prev_name, q, nlen);

            FUZZ_CHECK(c < 0 ||
                       (c == 0 && span_cmp(prev + prev_name + 1, prev_len - prev_name - 1,
                                           eq + 1, n - nlen - 1) <= 0));
        }
        free(name);
        free(value);
        count++;
        prev = q;
        prev_name = nlen;
        prev_len = n;
        q += n + (q[n] == '&');
    }
    FUZZ_CHECK(count == in->nquery);
}

static void fuzz_query(const struct input *in)
{
    struct buf out;
    enum rz_err err;

    buf_init(&out, 1 << 20);
    err = sigv4_canonical_query(in->query, in->nquery, &out);
    FUZZ_CHECK(err == RZ_OK);
    check_query(in, out.data ? out.data : "");
    buf_cleanup(&out);
}

/* "name:value\n" lines whose names are signed_out, sorted and unique,
 * with trimmed values free of control characters. */
static void check_headers(const char *canon, const char *signed_names)
{
    const char *prev = NULL;
    size_t prevlen = 0;

    while (*canon) {
        const char *colon = strchr(canon, ':');
        const char *nl = strchr(canon, '\n');
        size_t n;

        FUZZ_CHECK(colon && nl && colon < nl);
        n = (size_t)(colon - canon);
        FUZZ_CHECK(strncmp(signed_names, canon, n) == 0);
        FUZZ_CHECK(signed_names[n] == ';' || signed_names[n] == '\0');
        signed_names += n + (signed_names[n] == ';');
        for (const char *c = canon; c < colon; c++)
            FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'));
        if (prev) {
            int c = strncmp(prev, canon, prevlen < n ? prevlen : n);

            FUZZ_CHECK(c < 0 || (c == 0 && prevlen < n));
        }
        for (const char *c = colon + 1; c < nl; c++)
            FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f && !(c[0] == ' ' && c[1] == ' '));
        FUZZ_CHECK(nl == colon + 1 || (colon[1] != ' ' && nl[-1] != ' '));
        prev = canon;
        prevlen = n;
        canon = nl + 1;
    }
    FUZZ_CHECK(*signed_names == '\0');
}

static void fuzz_headers(const struct input *in)
{
    struct buf canon;
    struct buf signed_names;

    buf_init(&canon, 1 << 20);
    buf_init(&signed_names, 1 << 20);
    if (in->nheaders &&
        sigv4_canonical_headers(in->headers, in->nheaders, &canon, &signed_names) == RZ_OK)
        check_headers(canon.data, signed_names.data);
    buf_cleanup(&canon);
    buf_cleanup(&signed_names);
}

static void check_url(const struct input *in, const char *url)
{
    const char *path = url + strlen("https://" HOST);
    const char *q = strchr(url, '?');
    size_t qlen;
    char *back;

    FUZZ_CHECK(strncmp(url, "https://" HOST "/", strlen("https://" HOST "/")) == 0);
    FUZZ_CHECK(q);
    FUZZ_CHECK(encoded_ok(path, (size_t)(q - path), "/"));
    back = decode(path, (size_t)(q - path));
    FUZZ_CHECK(strcmp(back, in->path) == 0);
    free(back);
    q++;
    qlen = strlen(q);
    FUZZ_CHECK(encoded_ok(q, qlen, "=&"));
    FUZZ_CHECK(strstr(q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    FUZZ_CHECK(qlen > 81 && strncmp(q + qlen - 81, "&X-Amz-Signature=", 17) == 0);
    for (const char *c = q + qlen - 64; *c; c++)
        FUZZ_CHECK((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
}

static void fuzz_sign(const struct input *in)
{
    struct sigv4_creds creds = {"AKIAIOSFODNN7EXAMPLE",
                                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                in->session ? "FQoGZXIvYXdzEXAMPLE" : NULL};
    struct sigv4_request req = {
        .method = in->put ? "PUT" : "GET",
        .scheme = "https",
        .host = HOST,
        .path = in->path,
        .query = in->query,
        .nquery = in->nquery,
        .headers = in->headers,
        .nheaders = in->nheaders,
        .payload_hash = "UNSIGNED-PAYLOAD",
        .region = "us-east-1",
        .service = "s3",
        .double_encode_path = in->double_encode,
        .normalize_path = in->normalize,
    };
    struct sigv4_signed s;
    char *url = NULL;
    char *again = NULL;
    enum rz_err err = sigv4_presign_url(&req, &creds, NOW, 86400, &url);

    /* Any path a client can send (keys are at most 1 KiB) must presign. */
    if (in->path[0] == '/' && strlen(in->path) <= 1024 && !in->nquery && !in->nheaders)
        FUZZ_CHECK(err == RZ_OK);
    FUZZ_CHECK((err == RZ_OK) == (url != NULL));
    if (url) {
        check_url(in, url);
        FUZZ_CHECK(sigv4_presign_url(&req, &creds, NOW, 86400, &again) == RZ_OK);
        FUZZ_CHECK(strcmp(url, again) == 0);
    }
    free(url);
    free(again);
    if (sigv4_sign_headers(&req, &creds, NOW, &s) == RZ_OK) {
        static const char want[] = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/";

        FUZZ_CHECK(strncmp(s.authorization, want, sizeof(want) - 1) == 0);
        FUZZ_CHECK(strlen(s.signature) == 64 && strstr(s.signed_headers, "x-amz-date"));
        FUZZ_CHECK(!strpbrk(s.authorization, "\r\n"));
        sigv4_signed_cleanup(&s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in;

    /* Keys are at most 1 KiB; past 64 KiB the signer's own text caps
     * (256 KiB after encoding) refuse the request, which is not a bug. */
    if (size > 64 * 1024)
        return 0;
    split_input(data, size, &in);
    fuzz_uri(&in);
    fuzz_query(&in);
    fuzz_headers(&in);
    fuzz_sign(&in);
    free(in.text);
    return 0;
}
