/* sigv4.c - AWS Signature Version 4 as a chain of small steps.
 *
 * Shaped like curl's lib/http_aws_sigv4.c and aws-c-auth's aws_signing.c:
 * validate -> timestamp and scope -> canonical headers -> canonical query ->
 * canonical URI -> canonical request -> string to sign -> signing key ->
 * signature. Each step appends to a capped buf, so no input can make us
 * allocate without bound; keys are wiped with OPENSSL_cleanse. */
#include "sigv4.h"
#include "unittest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "buf.h"
#include "sigv4_internal.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"

/* One path, name, value, host or token. S3 keys are at most 1024 bytes and
 * STS session tokens a few KiB, so this leaves room without being unbounded. */
#define SIGV4_MAX_FIELD 8192
/* A secret key, region, service, access key or method. */
#define SIGV4_MAX_SHORT 256
/* Query parameters or headers in one request. */
#define SIGV4_MAX_PAIRS 64
/* Any string built here (a field encoded twice grows at most fivefold). */
#define SIGV4_MAX_TEXT (256 * 1024)
/* A browser POST policy, base64: S3 caps the whole form at 20 KiB. */
#define SIGV4_MAX_POLICY (64 * 1024)

/* ---- small checks ---------------------------------------------------- */

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

/* RFC 9110 tchar: what an HTTP method or header name may hold. */
static int is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Non-NULL, 1..max bytes. */
static int check_len(const char *s, size_t max)
{
    size_t n;

    if (!s)
        return 0;
    n = strnlen(s, max + 1);
    return n > 0 && n <= max;
}

static int check_token(const char *s, size_t max)
{
    if (!check_len(s, max))
        return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* Printable ASCII without spaces or '/': it goes into a '/'-separated scope
 * or a header line. */
static int check_word(const char *s, size_t max)
{
    if (!check_len(s, max))
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || *s == '/')
            return 0;
    return 1;
}

/* A header value: tabs and bytes >= 0x80 pass, other control bytes (CR and
 * LF above all, which would split the header) do not. */
/* Printable ASCII without spaces: a session token goes into a header. */
static int check_printable(const char *s, size_t max)
{
    if (!check_len(s, max))
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static int check_header_value(const char *s, size_t max)
{
    if (!s || strnlen(s, max + 1) > max)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c < ' ' && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

static int check_host(const char *s)
{
    if (!check_word(s, SIGV4_MAX_SHORT))
        return 0;
    return !strpbrk(s, "?#@\\");
}

static int check_base64(const char *s, size_t max)
{
    if (!check_len(s, max))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '/' || *s == '='))
            return 0;
    return 1;
}

static enum rz_err check_creds(const struct sigv4_creds *creds)
{
    if (!creds || !check_word(creds->access_key, SIGV4_MAX_SHORT) ||
        !check_len(creds->secret_key, SIGV4_MAX_SHORT))
        return RZ_EINVAL;
    if (creds->session_token && !check_printable(creds->session_token, SIGV4_MAX_FIELD))
        return RZ_EINVAL;
    return RZ_OK;
}

static int name_is(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(name, *list) == 0)
            return 1;
    return 0;
}

/* Headers we add ourselves; a second copy from the caller would be signed
 * twice (joined with ',') and S3 would refuse the request. */
static const char *const reserved_headers[] = {
    "host", "x-amz-date", "x-amz-security-token", "authorization", NULL,
};

/* Query parameters presigning adds; the same from the caller would clash. */
static const char *const reserved_query[] = {
    "X-Amz-Algorithm",     "X-Amz-Credential",     "X-Amz-Date",      "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature", NULL,
};

/* RZ_EINVAL for NULL (unless may_be_null), RZ_ETOOBIG past max bytes. */
static enum rz_err field_size(const char *s, size_t max, int may_be_null)
{
    if (!s)
        return may_be_null ? RZ_OK : RZ_EINVAL;
    return strnlen(s, max + 1) > max ? RZ_ETOOBIG : RZ_OK;
}

static enum rz_err check_pair(const struct sigv4_pair *p, const char *const *reserved,
                              int value_may_be_null)
{
    enum rz_err err = field_size(p->name, SIGV4_MAX_FIELD, 0);

    if (err == RZ_OK)
        err = field_size(p->value, SIGV4_MAX_FIELD, value_may_be_null);
    if (err == RZ_OK && name_is(p->name, reserved))
        err = RZ_EINVAL;
    return err;
}

static enum rz_err check_pairs(const struct sigv4_request *req)
{
    enum rz_err err = RZ_OK;
    size_t i;

    if (req->nquery > SIGV4_MAX_PAIRS || req->nheaders > SIGV4_MAX_PAIRS)
        return RZ_ETOOBIG;
    if ((req->nquery && !req->query) || (req->nheaders && !req->headers))
        return RZ_EINVAL;
    for (i = 0; i < req->nquery && err == RZ_OK; i++)
        err = check_pair(&req->query[i], reserved_query, 1);
    for (i = 0; i < req->nheaders && err == RZ_OK; i++)
        err = check_pair(&req->headers[i], reserved_headers, 0);
    return err;
}

static enum rz_err check_request(const struct sigv4_request *req)
{
    enum rz_err err;

    if (!req || !check_token(req->method, SIGV4_MAX_SHORT) || !check_host(req->host) ||
        !check_word(req->region, SIGV4_MAX_SHORT) || !check_word(req->service, SIGV4_MAX_SHORT))
        return RZ_EINVAL;
    err = field_size(req->path, SIGV4_MAX_FIELD, 0);
    if (err == RZ_OK && req->path[0] != '/')
        err = RZ_EINVAL;
    return err == RZ_OK ? check_pairs(req) : err;
}

/* ---- hashing --------------------------------------------------------- */

static void hex_encode(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* SHA-256, fetched from the provider once per process. OpenSSL 3 looks the
 * algorithm up again on every implicit use (EVP_sha256(), HMAC()): with
 * five HMACs and a digest per signature that lookup cost more than the
 * hashing (1.15 us per HMAC() against 0.28 us here). The handle is
 * immutable and shared by all threads. */
static EVP_MD *sigv4_md_fetched;
static pthread_once_t sigv4_md_once = PTHREAD_ONCE_INIT;

static void sigv4_md_fetch(void)
{
    sigv4_md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sigv4_md(void)
{
    pthread_once(&sigv4_md_once, sigv4_md_fetch);
    return sigv4_md_fetched ? sigv4_md_fetched : EVP_sha256();
}

/* One SHA-256 over up to two parts; 0 on a libcrypto failure. */
static int sha256_parts(EVP_MD_CTX *ctx, const void *a, size_t alen, const void *b, size_t blen,
                        unsigned char out[32])
{
    unsigned int n = 0;

    return EVP_DigestInit_ex2(ctx, sigv4_md(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
           (!blen || EVP_DigestUpdate(ctx, b, blen)) && EVP_DigestFinal_ex(ctx, out, &n) &&
           n == 32;
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    /* EVP_Digest of SHA-256 cannot fail short of a broken libcrypto; an
     * empty string then fails every signature instead of signing garbage. */
    if (!EVP_Digest(data, len, md, &mdlen, sigv4_md(), NULL) || mdlen != sizeof(md)) {
        out[0] = '\0';
        return;
    }
    hex_encode(md, sizeof(md), out);
}

/* HMAC-SHA256 (RFC 2104) over the fetched digest. */
static enum rz_err hmac_sha256(const void *key, size_t keylen, const char *msg, size_t msglen,
                               unsigned char out[32])
{
    unsigned char k[64] = {0};
    unsigned char pad[64];
    unsigned char inner[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    enum rz_err err = RZ_EINTERNAL;

    if (!ctx)
        return RZ_ENOMEM;
    if (keylen > sizeof(k)) {
        if (!sha256_parts(ctx, key, keylen, NULL, 0, k))
            goto done;
    } else {
        memcpy(k, key, keylen);
    }
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(k[i] ^ 0x36);
    if (!sha256_parts(ctx, pad, sizeof(pad), msg, msglen, inner))
        goto done;
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(k[i] ^ 0x5c);
    if (sha256_parts(ctx, pad, sizeof(pad), inner, sizeof(inner), out))
        err = RZ_OK;
done:
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
    EVP_MD_CTX_free(ctx);
    return err;
}

UNITTEST enum rz_err sigv4_signing_key(const char *secret, const char *date8, const char *region,
                                       const char *service, unsigned char key_out[32])
{
    char k0[4 + SIGV4_MAX_SHORT];
    unsigned char a[32];
    unsigned char b[32];
    size_t n = strnlen(secret, SIGV4_MAX_SHORT + 1);
    enum rz_err err;

    if (n > SIGV4_MAX_SHORT)
        return RZ_ETOOBIG;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, n);
    /* Separate buffers in and out: HMAC() does not promise to allow aliasing. */
    err = hmac_sha256(k0, 4 + n, date8, strlen(date8), a);
    if (err == RZ_OK)
        err = hmac_sha256(a, sizeof(a), region, strlen(region), b);
    if (err == RZ_OK)
        err = hmac_sha256(b, sizeof(b), service, strlen(service), a);
    if (err == RZ_OK)
        err = hmac_sha256(a, sizeof(a), "aws4_request", strlen("aws4_request"), key_out);
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return err;
}

/* ---- signing key cache ---------------------------------------------- */

/* A signing key depends only on the secret, the day and the scope, yet
 * deriving it is four HMACs: more than the signature itself, on every
 * presigned upload. So keys are kept per (secret, day, region, service).
 * The secret is not kept: an entry is known by the SHA-256 of it, so a
 * rotated secret never matches an old entry. Keys are wiped when evicted
 * and by sigv4_key_cache_clear(). A region or service too long for an
 * entry is derived every time. */
#define SIGV4_KEY_CACHE_SLOTS 8
#define SIGV4_KEY_CACHE_SCOPE 96

struct sigv4_cached_key {
    unsigned char secret_id[32];       /* SHA-256 of the secret */
    char scope[SIGV4_KEY_CACHE_SCOPE]; /* "date8/region/service"; "" when free */
    unsigned char key[32];
    unsigned long long used; /* the cache's clock when last used */
};

static struct {
    pthread_mutex_t lock;
    struct sigv4_cached_key slot[SIGV4_KEY_CACHE_SLOTS];
    unsigned long long clock;
    unsigned long long hits, misses;
} sigv4_keys = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void sigv4_cached_key_wipe(struct sigv4_cached_key *e)
{
    OPENSSL_cleanse(e, sizeof(*e));
}

/* Copies the cached key for (id, scope) into key_out; 0 when absent. */
static int sigv4_key_cache_get(const unsigned char id[32], const char *scope,
                               unsigned char key_out[32])
{
    int found = 0;

    pthread_mutex_lock(&sigv4_keys.lock);
    for (size_t i = 0; i < SIGV4_KEY_CACHE_SLOTS && !found; i++) {
        struct sigv4_cached_key *e = &sigv4_keys.slot[i];

        if (e->scope[0] && strcmp(e->scope, scope) == 0 &&
            CRYPTO_memcmp(e->secret_id, id, 32) == 0) {
            memcpy(key_out, e->key, 32);
            e->used = ++sigv4_keys.clock;
            found = 1;
        }
    }
    if (found)
        sigv4_keys.hits++;
    else
        sigv4_keys.misses++;
    pthread_mutex_unlock(&sigv4_keys.lock);
    return found;
}

/* Keeps key for (id, scope). The slot is the one of the same scope (a
 * rotated secret replaces its predecessor's key at once), else a free one,
 * else the least recently used. */
static void sigv4_key_cache_put(const unsigned char id[32], const char *scope,
                                const unsigned char key[32])
{
    struct sigv4_cached_key *victim = NULL;

    pthread_mutex_lock(&sigv4_keys.lock);
    for (size_t i = 0; i < SIGV4_KEY_CACHE_SLOTS; i++) {
        struct sigv4_cached_key *e = &sigv4_keys.slot[i];

        if (strcmp(e->scope, scope) == 0) {
            victim = e;
            break;
        }
        if (!victim || (victim->scope[0] && (!e->scope[0] || e->used < victim->used)))
            victim = e;
    }
    sigv4_cached_key_wipe(victim);
    memcpy(victim->secret_id, id, 32);
    snprintf(victim->scope, sizeof(victim->scope), "%s", scope);
    memcpy(victim->key, key, 32);
    victim->used = ++sigv4_keys.clock;
    pthread_mutex_unlock(&sigv4_keys.lock);
}

void sigv4_key_cache_clear(void)
{
    pthread_mutex_lock(&sigv4_keys.lock);
    for (size_t i = 0; i < SIGV4_KEY_CACHE_SLOTS; i++)
        sigv4_cached_key_wipe(&sigv4_keys.slot[i]);
    sigv4_keys.hits = 0;
    sigv4_keys.misses = 0;
    pthread_mutex_unlock(&sigv4_keys.lock);
}

#ifdef RESIZER_UNITTEST
void sigv4_key_cache_stats(unsigned long long *hits_out, unsigned long long *misses_out)
{
    pthread_mutex_lock(&sigv4_keys.lock);
    *hits_out = sigv4_keys.hits;
    *misses_out = sigv4_keys.misses;
    pthread_mutex_unlock(&sigv4_keys.lock);
}
#endif

/* sigv4_signing_key through the cache. */
static enum rz_err sigv4_cached_signing_key(const char *secret, const char *date8,
                                            const char *region, const char *service,
                                            unsigned char key_out[32])
{
    char scope[SIGV4_KEY_CACHE_SCOPE];
    unsigned char id[32];
    unsigned int idlen = 0;
    size_t n = strnlen(secret, SIGV4_MAX_SHORT + 1);
    int len = snprintf(scope, sizeof(scope), "%s/%s/%s", date8, region, service);
    enum rz_err err;

    if (n > SIGV4_MAX_SHORT || len < 0 || (size_t)len >= sizeof(scope))
        return sigv4_signing_key(secret, date8, region, service, key_out);
    if (!EVP_Digest(secret, n, id, &idlen, sigv4_md(), NULL) || idlen != sizeof(id))
        return RZ_EINTERNAL;
    if (sigv4_key_cache_get(id, scope, key_out)) {
        err = RZ_OK;
        goto done;
    }
    err = sigv4_signing_key(secret, date8, region, service, key_out);
    if (err == RZ_OK)
        sigv4_key_cache_put(id, scope, key_out);
done:
    OPENSSL_cleanse(id, sizeof(id));
    return err;
}

/* hex HMAC(signing key, msg) into sig_out; the key's date is the first
 * eight characters of amz_date. */
static enum rz_err sign_string(const char *secret, const char *amz_date, const char *region,
                               const char *service, const char *msg, char sig_out[65])
{
    unsigned char key[32];
    unsigned char mac[32];
    char date8[9];
    enum rz_err err;

    snprintf(date8, sizeof(date8), "%.8s", amz_date);
    err = sigv4_cached_signing_key(secret, date8, region, service, key);
    if (err == RZ_OK)
        err = hmac_sha256(key, sizeof(key), msg, strlen(msg), mac);
    if (err == RZ_OK)
        hex_encode(mac, sizeof(mac), sig_out);
    OPENSSL_cleanse(key, sizeof(key));
    return err;
}

/* ---- time and scope -------------------------------------------------- */

/* "YYYYmmddTHHMMSSZ"; RZ_EINVAL for a time outside years 1970..9999, where
 * the format would not be 16 characters. */
static enum rz_err format_amz_date(time_t now, char out[17])
{
    struct tm tm;

    out[0] = '\0';
    if (now < 0 || !gmtime_r(&now, &tm) || tm.tm_year + 1900 > 9999)
        return RZ_EINVAL;
    if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return RZ_EINVAL;
    return RZ_OK;
}

void sigv4_amz_date(time_t now, char out[17])
{
    (void)format_amz_date(now, out);
}

static char *make_scope(const char *date8, const char *region, const char *service)
{
    struct buf b;

    buf_init(&b, 3 * SIGV4_MAX_SHORT);
    if (buf_printf(&b, "%.8s/%s/%s/aws4_request", date8, region, service) != RZ_OK) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b);
}

char *sigv4_credential_scope(const char *access_key, const char *region, const char *service,
                             time_t now)
{
    char date[17];
    struct buf b;

    if (!check_word(access_key, SIGV4_MAX_SHORT) || !check_word(region, SIGV4_MAX_SHORT) ||
        !check_word(service, SIGV4_MAX_SHORT) || format_amz_date(now, date) != RZ_OK)
        return NULL;
    buf_init(&b, 4 * SIGV4_MAX_SHORT);
    if (buf_printf(&b, "%s/%.8s/%s/%s/aws4_request", access_key, date, region, service) !=
        RZ_OK) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- encoding -------------------------------------------------------- */

static enum rz_err append_encoded(struct buf *b, const char *s, size_t len, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t i;
    size_t run = 0; /* bytes at s[i - run .. i) that need no encoding */
    enum rz_err err = RZ_OK;

    for (i = 0; i < len && err == RZ_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[3];

        if (is_unreserved(c) || (keep_slash && c == '/')) {
            run++;
            continue;
        }
        err = buf_append(b, s + i - run, run);
        run = 0;
        esc[0] = '%';
        esc[1] = digits[c >> 4];
        esc[2] = digits[c & 0xf];
        if (err == RZ_OK)
            err = buf_append(b, esc, 3);
    }
    if (err == RZ_OK)
        err = buf_append(b, s + i - run, run);
    return err;
}

char *sigv4_uri_encode(const char *s, size_t len, int keep_slash)
{
    struct buf b;

    if (!s || len > SIGV4_MAX_TEXT / 3)
        return NULL;
    buf_init(&b, 3 * len);
    if (append_encoded(&b, s, len, keep_slash) != RZ_OK) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* ---- canonical URI --------------------------------------------------- */

UNITTEST enum rz_err sigv4_normalize_path(const char *path, struct buf *out)
{
    size_t start = out->len;
    const char *seg = path;
    enum rz_err err = RZ_OK;

    while (*seg && err == RZ_OK) {
        size_t n;

        seg += *seg == '/';
        n = strcspn(seg, "/");
        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            /* Back to the last '/' we wrote, never past our own start. */
            while (out->len > start && out->data[out->len - 1] != '/')
                out->len--;
            if (out->len > start)
                out->len--;
            if (out->data)
                out->data[out->len] = '\0';
        } else if (n && !(n == 1 && seg[0] == '.')) {
            err = buf_appends(out, "/");
            if (err == RZ_OK)
                err = buf_append(out, seg, n);
        }
        seg += n;
    }
    if (err == RZ_OK && out->len == start)
        err = buf_appends(out, "/");
    else if (err == RZ_OK && path[strlen(path) - 1] == '/')
        err = buf_appends(out, "/");
    return err;
}

UNITTEST enum rz_err sigv4_canonical_uri(const char *path, int double_encode, int normalize,
                                         struct buf *out)
{
    struct buf norm;
    struct buf once;
    enum rz_err err = RZ_OK;

    buf_init(&norm, SIGV4_MAX_TEXT);
    buf_init(&once, SIGV4_MAX_TEXT);
    if (normalize) {
        err = sigv4_normalize_path(path, &norm);
        path = norm.data;
    }
    if (err != RZ_OK)
        goto done;
    if (!double_encode) {
        err = append_encoded(out, path, strlen(path), 1);
        goto done;
    }
    /* The generic suite encodes the path as it is on the wire (itself
     * encoded once); S3 takes the wire path as it is. */
    err = append_encoded(&once, path, strlen(path), 1);
    if (err == RZ_OK)
        err = append_encoded(out, once.data, once.len, 1);
done:
    buf_cleanup(&norm);
    buf_cleanup(&once);
    return err;
}

/* ---- canonical query ------------------------------------------------- */

struct encoded_pair {
    char *name;
    char *value;
};

static int compare_encoded_pairs(const void *a, const void *b)
{
    const struct encoded_pair *x = a;
    const struct encoded_pair *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : strcmp(x->value, y->value);
}

static void free_encoded_pairs(struct encoded_pair *e, size_t n)
{
    size_t i;

    if (!e)
        return;
    for (i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
}

UNITTEST enum rz_err sigv4_canonical_query(const struct sigv4_pair *q, size_t n, struct buf *out)
{
    struct encoded_pair *e = NULL;
    enum rz_err err = RZ_ENOMEM;
    size_t i;

    if (n > 2 * SIGV4_MAX_PAIRS)
        return RZ_ETOOBIG;
    if (n == 0)
        return RZ_OK;
    e = calloc(n, sizeof(*e));
    if (!e)
        goto fail;
    for (i = 0; i < n; i++) {
        const char *v = q[i].value ? q[i].value : "";

        e[i].name = sigv4_uri_encode(q[i].name, strlen(q[i].name), 0);
        e[i].value = sigv4_uri_encode(v, strlen(v), 0);
        if (!e[i].name || !e[i].value)
            goto fail;
    }
    qsort(e, n, sizeof(*e), compare_encoded_pairs);
    err = RZ_OK;
    for (i = 0; i < n && err == RZ_OK; i++)
        err = buf_printf(out, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
fail:
    free_encoded_pairs(e, n);
    return err;
}

/* ---- canonical headers ----------------------------------------------- */

struct canon_header {
    char *name;   /* lowercased */
    char *value;  /* trimmed, blanks collapsed */
    size_t order; /* position in the input, so repeated names keep their order */
};

static int compare_headers(const void *a, const void *b)
{
    const struct canon_header *x = a;
    const struct canon_header *y = b;
    int c = strcmp(x->name, y->name);

    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static char *lower_name(const char *name)
{
    char *s;
    size_t i;

    if (!check_token(name, SIGV4_MAX_SHORT))
        return NULL;
    s = strdup(name);
    for (i = 0; s && s[i]; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
    return s;
}

/* SigV4's Trimall: no blanks at either end, one space for any inner run. */
static char *trim_value(const char *v)
{
    char *s;
    size_t o = 0;

    if (!check_header_value(v, SIGV4_MAX_FIELD))
        return NULL;
    s = malloc(strlen(v) + 1);
    if (!s)
        return NULL;
    while (is_blank(*v))
        v++;
    while (*v) {
        if (is_blank(*v)) {
            while (is_blank(*v))
                v++;
            if (*v)
                s[o++] = ' ';
            continue;
        }
        s[o++] = *v++;
    }
    s[o] = '\0';
    return s;
}

static void free_headers(struct canon_header *h, size_t n)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static enum rz_err append_headers(const struct canon_header *h, size_t n, struct buf *canon_out,
                                  struct buf *signed_out)
{
    enum rz_err err = RZ_OK;
    size_t i;

    for (i = 0; i < n && err == RZ_OK; i++) {
        int same = i > 0 && strcmp(h[i - 1].name, h[i].name) == 0;

        if (same) {
            /* Replace the '\n' of the previous line: "a:v1" -> "a:v1,v2". */
            canon_out->len--;
            err = buf_printf(canon_out, ",%s\n", h[i].value);
            continue;
        }
        err = buf_printf(canon_out, "%s:%s\n", h[i].name, h[i].value);
        if (err == RZ_OK)
            err = buf_printf(signed_out, "%s%s", i ? ";" : "", h[i].name);
    }
    return err;
}

UNITTEST enum rz_err sigv4_canonical_headers(const struct sigv4_pair *h, size_t n,
                                             struct buf *canon_out, struct buf *signed_out)
{
    struct canon_header *c = NULL;
    enum rz_err err = RZ_EINVAL;
    size_t i;

    if (n == 0 || n > 2 * SIGV4_MAX_PAIRS)
        return n ? RZ_ETOOBIG : RZ_EINVAL;
    c = calloc(n, sizeof(*c));
    if (!c)
        return RZ_ENOMEM;
    for (i = 0; i < n; i++) {
        c[i].order = i;
        c[i].name = lower_name(h[i].name);
        c[i].value = trim_value(h[i].value);
        /* NULL is bad input far more often than a failed small malloc. */
        if (!c[i].name || !c[i].value)
            goto fail;
    }
    qsort(c, n, sizeof(*c), compare_headers);
    err = append_headers(c, n, canon_out, signed_out);
fail:
    free_headers(c, n);
    return err;
}

/* ---- canonical request, string to sign ------------------------------- */

UNITTEST enum rz_err sigv4_string_to_sign(const char *amz_date, const char *scope,
                                          const char *creq, struct buf *out)
{
    char hash[65];

    sigv4_sha256_hex(creq, strlen(creq), hash);
    if (!hash[0])
        return RZ_EINTERNAL;
    return buf_printf(out, SIGV4_ALGORITHM "\n%s\n%s\n%s", amz_date, scope, hash);
}

static char *steal_or_null(struct buf *b, enum rz_err *err)
{
    char *s;

    if (*err != RZ_OK)
        return NULL;
    s = buf_steal(b);
    if (!s)
        *err = RZ_ENOMEM;
    return s;
}

/* Headers to sign: the caller's, then host, then (header signing) the two
 * we send ourselves. */
static enum rz_err build_headers(const struct sigv4_request *req,
                                 const struct sigv4_creds *creds, int presign,
                                 struct sigv4_parts *p)
{
    struct sigv4_pair h[SIGV4_MAX_PAIRS + 3];
    size_t n = req->nheaders;
    struct buf canon;
    struct buf sig;
    enum rz_err err;

    if (n)
        memcpy(h, req->headers, n * sizeof(*h));
    h[n++] = (struct sigv4_pair){"host", req->host};
    if (!presign) {
        h[n++] = (struct sigv4_pair){"x-amz-date", p->amz_date};
        if (creds->session_token)
            h[n++] = (struct sigv4_pair){"x-amz-security-token", creds->session_token};
    }
    buf_init(&canon, SIGV4_MAX_TEXT);
    buf_init(&sig, SIGV4_MAX_TEXT);
    err = sigv4_canonical_headers(h, n, &canon, &sig);
    p->canonical_headers = steal_or_null(&canon, &err);
    p->signed_headers = steal_or_null(&sig, &err);
    buf_cleanup(&canon);
    buf_cleanup(&sig);
    return err;
}

/* The caller's query plus, when presigning, the X-Amz-* parameters, which
 * are part of what is signed (all but X-Amz-Signature). */
static enum rz_err build_query(const struct sigv4_request *req, const struct sigv4_creds *creds,
                               long expires, struct sigv4_parts *p)
{
    struct sigv4_pair q[SIGV4_MAX_PAIRS + 6];
    size_t n = req->nquery;
    char expires_s[24];
    struct buf cred;
    struct buf out;
    enum rz_err err = RZ_OK;

    buf_init(&cred, SIGV4_MAX_TEXT);
    buf_init(&out, SIGV4_MAX_TEXT);
    if (n)
        memcpy(q, req->query, n * sizeof(*q));
    if (expires > 0) {
        snprintf(expires_s, sizeof(expires_s), "%ld", expires);
        err = buf_printf(&cred, "%s/%s", creds->access_key, p->scope);
        q[n++] = (struct sigv4_pair){"X-Amz-Algorithm", SIGV4_ALGORITHM};
        q[n++] = (struct sigv4_pair){"X-Amz-Credential", cred.data};
        q[n++] = (struct sigv4_pair){"X-Amz-Date", p->amz_date};
        q[n++] = (struct sigv4_pair){"X-Amz-Expires", expires_s};
        q[n++] = (struct sigv4_pair){"X-Amz-SignedHeaders", p->signed_headers};
        if (creds->session_token)
            q[n++] = (struct sigv4_pair){"X-Amz-Security-Token", creds->session_token};
    }
    if (err == RZ_OK)
        err = sigv4_canonical_query(q, n, &out);
    p->canonical_query = steal_or_null(&out, &err);
    buf_cleanup(&cred);
    buf_cleanup(&out);
    return err;
}

static enum rz_err build_request_text(const struct sigv4_request *req, int presign,
                                      struct sigv4_parts *p)
{
    struct buf uri;
    struct buf creq;
    struct buf sts;
    const char *payload = presign ? SIGV4_UNSIGNED : req->payload_hash;
    enum rz_err err;

    buf_init(&uri, SIGV4_MAX_TEXT);
    buf_init(&creq, SIGV4_MAX_TEXT);
    buf_init(&sts, SIGV4_MAX_TEXT);
    err = sigv4_canonical_uri(req->path, req->double_encode_path, req->normalize_path, &uri);
    p->canonical_uri = steal_or_null(&uri, &err);
    if (err == RZ_OK)
        err = buf_printf(&creq, "%s\n%s\n%s\n%s\n%s\n%s", req->method, p->canonical_uri,
                         p->canonical_query, p->canonical_headers, p->signed_headers, payload);
    p->canonical_request = steal_or_null(&creq, &err);
    if (err == RZ_OK)
        err = sigv4_string_to_sign(p->amz_date, p->scope, p->canonical_request, &sts);
    p->string_to_sign = steal_or_null(&sts, &err);
    buf_cleanup(&uri);
    buf_cleanup(&creq);
    buf_cleanup(&sts);
    return err;
}

static enum rz_err check_build_args(const struct sigv4_request *req,
                                    const struct sigv4_creds *creds, long expires)
{
    enum rz_err err = check_request(req);

    if (err == RZ_OK)
        err = check_creds(creds);
    if (err == RZ_OK && (expires < 0 || expires > SIGV4_MAX_EXPIRES))
        err = RZ_EINVAL;
    if (err == RZ_OK && expires == 0 && !check_word(req->payload_hash, SIGV4_MAX_SHORT))
        err = RZ_EINVAL;
    return err;
}

UNITTEST void sigv4_parts_cleanup(struct sigv4_parts *p)
{
    free(p->scope);
    free(p->canonical_uri);
    free(p->canonical_query);
    free(p->canonical_headers);
    free(p->signed_headers);
    free(p->canonical_request);
    free(p->string_to_sign);
    memset(p, 0, sizeof(*p));
}

UNITTEST enum rz_err sigv4_build(const struct sigv4_request *req,
                                 const struct sigv4_creds *creds, time_t now, long expires,
                                 struct sigv4_parts *out)
{
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    err = check_build_args(req, creds, expires);
    if (err == RZ_OK)
        err = format_amz_date(now, out->amz_date);
    if (err != RZ_OK)
        goto fail;
    out->scope = make_scope(out->amz_date, req->region, req->service);
    err = out->scope ? RZ_OK : RZ_ENOMEM;
    if (err == RZ_OK)
        err = build_headers(req, creds, expires > 0, out);
    if (err == RZ_OK)
        err = build_query(req, creds, expires, out);
    if (err == RZ_OK)
        err = build_request_text(req, expires > 0, out);
    if (err == RZ_OK)
        err = sign_string(creds->secret_key, out->amz_date, req->region, req->service,
                          out->string_to_sign, out->signature);
fail:
    if (err != RZ_OK)
        sigv4_parts_cleanup(out);
    return err;
}

/* ---- public entry points --------------------------------------------- */

enum rz_err sigv4_presign_url(const struct sigv4_request *req, const struct sigv4_creds *creds,
                              time_t now, long expires, char **url_out)
{
    struct sigv4_parts p;
    struct buf url;
    enum rz_err err = RZ_EINVAL;

    *url_out = NULL;
    buf_init(&url, SIGV4_MAX_TEXT);
    memset(&p, 0, sizeof(p));
    if (expires < 1 || expires > SIGV4_MAX_EXPIRES || !req || !req->scheme ||
        (strcmp(req->scheme, "https") != 0 && strcmp(req->scheme, "http") != 0))
        goto fail;
    err = sigv4_build(req, creds, now, expires, &p);
    if (err == RZ_OK)
        err = buf_printf(&url, "%s://%s", req->scheme, req->host);
    /* The URL carries the path encoded once, whatever the canonical URI. */
    if (err == RZ_OK)
        err = append_encoded(&url, req->path, strlen(req->path), 1);
    if (err == RZ_OK)
        err = buf_printf(&url, "?%s&X-Amz-Signature=%s", p.canonical_query, p.signature);
    *url_out = steal_or_null(&url, &err);
fail:
    sigv4_parts_cleanup(&p);
    buf_cleanup(&url);
    return err;
}

enum rz_err sigv4_sign_headers(const struct sigv4_request *req, const struct sigv4_creds *creds,
                               time_t now, struct sigv4_signed *out)
{
    struct sigv4_parts p;
    struct buf auth;
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    buf_init(&auth, SIGV4_MAX_TEXT);
    err = sigv4_build(req, creds, now, 0, &p);
    if (err != RZ_OK)
        return err;
    err = buf_printf(&auth, SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                     creds->access_key, p.scope, p.signed_headers, p.signature);
    out->authorization = steal_or_null(&auth, &err);
    out->amz_date = err == RZ_OK ? strdup(p.amz_date) : NULL;
    out->signed_headers = err == RZ_OK ? strdup(p.signed_headers) : NULL;
    out->signature = err == RZ_OK ? strdup(p.signature) : NULL;
    if (err == RZ_OK && (!out->amz_date || !out->signed_headers || !out->signature))
        err = RZ_ENOMEM;
    if (err != RZ_OK)
        sigv4_signed_cleanup(out);
    sigv4_parts_cleanup(&p);
    buf_cleanup(&auth);
    return err;
}

void sigv4_signed_cleanup(struct sigv4_signed *s)
{
    free(s->authorization);
    free(s->amz_date);
    free(s->signed_headers);
    free(s->signature);
    memset(s, 0, sizeof(*s));
}

enum rz_err sigv4_sign_policy(const char *policy_b64, const struct sigv4_creds *creds,
                              const char *region, const char *service, time_t now,
                              char sig_out[65])
{
    char date[17];
    enum rz_err err = RZ_EINVAL;

    sig_out[0] = '\0';
    if (!check_base64(policy_b64, SIGV4_MAX_POLICY) || check_creds(creds) != RZ_OK ||
        !check_word(region, SIGV4_MAX_SHORT) || !check_word(service, SIGV4_MAX_SHORT))
        return err;
    err = format_amz_date(now, date);
    if (err == RZ_OK)
        err = sign_string(creds->secret_key, date, region, service, policy_b64, sig_out);
    if (err != RZ_OK)
        sig_out[0] = '\0';
    return err;
}
