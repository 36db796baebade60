/* test_auth.c - named tokens and JWT checks, table-driven.
 *
 * The keys are made here with OpenSSL (RSA 2048, EC P-256) and the tokens
 * signed here with OpenSSL, not with libcjose, so the verifier is checked
 * against an independent signer. The JWKS is a file the test writes and
 * rewrites (file://), which also exercises fetching, key rotation, the
 * refresh rate limit and the expiry of a cached JWKS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "server/auth.h"
#include "server/base64.h"
#include "server/log.h"

#define NOW 1800000000LL
#define ISS "https://idp.example.test/realms/r"
#define AUD "resizer-api"
#define ALICE "alice-token-0123456789"
#define BARE "bare-token-0123456789ab"
#define ROOT "root-token-0123456789ab"

struct tkey {
    const char *kid;
    EVP_PKEY *pkey;
    int ec;
};

static struct tkey rsa1 = {"rsa1", NULL, 0};
static struct tkey rsa2 = {"rsa2", NULL, 0}; /* joins the JWKS later (rotation) */
static struct tkey ec1 = {"ec1", NULL, 1};
static struct tkey evil = {"rsa1", NULL, 0}; /* not in the JWKS, claims rsa1's kid */
static char jwks_path[256];
static char jwks_url[300];

static char *b64url(const void *p, size_t n)
{
    char *out = malloc(base64_encoded_len(n, BASE64_URL) + 1);

    assert_non_null(out);
    base64_encode(p, n, BASE64_URL, out);
    return out;
}

static char *bn_b64(EVP_PKEY *k, const char *param, size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[600];
    int n;

    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    n = pad ? BN_bn2binpad(bn, buf, (int)pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    assert_true(n > 0);
    return b64url(buf, (size_t)n);
}

/* The public JWK of k, as JSON text (caller frees). */
static char *jwk_json(const struct tkey *k)
{
    char *a = bn_b64(k->pkey, k->ec ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_RSA_N,
                     k->ec ? 32 : 0);
    char *b = bn_b64(k->pkey, k->ec ? OSSL_PKEY_PARAM_EC_PUB_Y : OSSL_PKEY_PARAM_RSA_E,
                     k->ec ? 32 : 0);
    char *out = malloc(2048);

    assert_non_null(out);
    if (k->ec)
        snprintf(out, 2048,
                 "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"use\":\"sig\","
                 "\"x\":\"%s\",\"y\":\"%s\"}",
                 k->kid, a, b);
    else
        snprintf(out, 2048,
                 "{\"kty\":\"RSA\",\"kid\":\"%s\",\"alg\":\"RS256\",\"n\":\"%s\","
                 "\"e\":\"%s\"}",
                 k->kid, a, b);
    free(a);
    free(b);
    return out;
}

/* Writes the JWKS file with these keys, and an oct (HMAC) key with kid
 * "hmac" that must never be used. */
static void jwks_write(const struct tkey *const *keys, size_t n)
{
    FILE *f = fopen(jwks_path, "w");

    assert_non_null(f);
    fprintf(f, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0c2VjcmV0\"}");
    for (size_t i = 0; i < n; i++) {
        char *j = jwk_json(keys[i]);

        fprintf(f, ",%s", j);
        free(j);
    }
    fprintf(f, "]}");
    fclose(f);
}

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long len;
    char *out;

    PEM_write_bio_PUBKEY(bio, k);
    len = BIO_get_mem_data(bio, &data);
    out = malloc((size_t)len + 1); /* data is not NUL-terminated: no strndup */
    assert_non_null(out);
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    BIO_free(bio);
    return out;
}

enum sig {
    SIG_KEY = 0, /* RS256 or ES256 (raw r||s) with the key */
    SIG_ES_DER,  /* ES256 but DER, as OpenSSL makes it */
    SIG_HS_JWK,  /* HMAC-SHA256 keyed with the public JWK's JSON */
    SIG_HS_PEM,  /* HMAC-SHA256 keyed with the public key's PEM */
    SIG_NONE,    /* empty signature */
};

static size_t sign_key(const struct tkey *k, const char *input, int der, unsigned char *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[600];
    size_t len = sizeof(sig);
    const unsigned char *p = sig;
    ECDSA_SIG *es;

    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, strlen(input)),
                     1);
    EVP_MD_CTX_free(ctx);
    if (!k->ec || der) {
        memcpy(out, sig, len);
        return len;
    }
    es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    assert_non_null(es);
    BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32);
    ECDSA_SIG_free(es);
    return 64;
}

/* header.claims.signature, the signature made as mode says. */
static char *token_make(const char *header, const char *claims, const struct tkey *k,
                        enum sig mode)
{
    char *h = b64url(header, strlen(header));
    char *c = b64url(claims, strlen(claims));
    size_t inlen = strlen(h) + strlen(c) + 2;
    char *input = malloc(inlen);
    unsigned char sig[600];
    unsigned int siglen = 0;
    char *secret = NULL;
    char *s;
    char *out;

    snprintf(input, inlen, "%s.%s", h, c);
    if (mode == SIG_KEY || mode == SIG_ES_DER)
        siglen = (unsigned int)sign_key(k, input, mode == SIG_ES_DER, sig);
    if (mode == SIG_HS_JWK || mode == SIG_HS_PEM) {
        secret = mode == SIG_HS_JWK ? jwk_json(k) : pubkey_pem(k->pkey);
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)input,
             strlen(input), sig, &siglen);
        free(secret);
    }
    s = b64url(sig, siglen);
    out = malloc(inlen + strlen(s) + 1);
    snprintf(out, inlen + strlen(s) + 1, "%s.%s", input, s);
    free(h);
    free(c);
    free(input);
    free(s);
    return out;
}

/* Claims with exp/nbf relative to NOW; NO_TIME leaves one out. */
#define NO_TIME 999999
static char *claims_make(const char *iss, const char *aud, long exp_off, long nbf_off,
                         const char *sub, const char *extra)
{
    char *out = malloc(4096);
    int n = snprintf(out, 4096, "{\"iss\":\"%s\",\"aud\":%s", iss, aud);

    if (exp_off != NO_TIME)
        n += snprintf(out + n, 4096 - (size_t)n, ",\"exp\":%lld", NOW + exp_off);
    if (nbf_off != NO_TIME)
        n += snprintf(out + n, 4096 - (size_t)n, ",\"nbf\":%lld", NOW + nbf_off);
    if (sub)
        n += snprintf(out + n, 4096 - (size_t)n, ",\"sub\":%s", sub);
    snprintf(out + n, 4096 - (size_t)n, "%s%s}", extra ? "," : "", extra ? extra : "");
    return out;
}

static struct auth *auth_make(long refresh_min, time_t now)
{
    static const char *const api[] = {"alice:" ALICE, BARE};
    static const char *const admin[] = {"root:" ROOT};
    struct auth_opts o = {api, 2,   admin,           1,           jwks_url,
                          ISS, AUD, "resizer:admin", refresh_min, 2000};
    struct auth *a = NULL;
    char msg[256];

    assert_int_equal(auth_new(&o, now, &a, msg, sizeof(msg)), RZ_OK);
    return a;
}

static int setup(void **state)
{
    const struct tkey *keys[] = {&rsa1, &ec1};
    int fd;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_set_level(LOG_ERROR);
    rsa1.pkey = EVP_RSA_gen(2048);
    rsa2.pkey = EVP_RSA_gen(2048);
    evil.pkey = EVP_RSA_gen(2048);
    ec1.pkey = EVP_EC_gen("P-256");
    assert_non_null(rsa1.pkey);
    assert_non_null(ec1.pkey);
    snprintf(jwks_path, sizeof(jwks_path), "/tmp/test_auth_jwks_XXXXXX");
    fd = mkstemp(jwks_path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(jwks_url, sizeof(jwks_url), "file://%s", jwks_path);
    jwks_write(keys, 2);
    *state = auth_make(30, NOW);
    return 0;
}

static int teardown(void **state)
{
    auth_free(*state);
    unlink(jwks_path);
    EVP_PKEY_free(rsa1.pkey);
    EVP_PKEY_free(rsa2.pkey);
    EVP_PKEY_free(evil.pkey);
    EVP_PKEY_free(ec1.pkey);
    curl_global_cleanup();
    return 0;
}

struct jwt_case {
    const char *name;
    const char *header;
    const struct tkey *key;
    enum sig sig;
    const char *iss;
    const char *aud; /* JSON */
    long exp_off;
    long nbf_off;
    const char *sub;   /* JSON, NULL: none */
    const char *extra; /* more claims, JSON members */
    enum auth_refusal why;
    int admin;
};

#define RS "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}"
#define ES "{\"alg\":\"ES256\",\"kid\":\"ec1\"}"
#define GOOD ISS, "\"" AUD "\"", 300, NO_TIME, "\"user-1\""

static const struct jwt_case jwt_cases[] = {
    {"rs256", RS, &rsa1, SIG_KEY, GOOD, NULL, AUTH_OK, 0},
    {"es256 raw r||s", ES, &ec1, SIG_KEY, GOOD, NULL, AUTH_OK, 0},
    {"no kid, the only RSA key", "{\"alg\":\"RS256\"}", &rsa1, SIG_KEY, GOOD, NULL, AUTH_OK, 0},
    {"aud array", RS, &rsa1, SIG_KEY, ISS, "[\"other\",\"" AUD "\"]", 300, NO_TIME, "\"user-1\"",
     NULL, AUTH_OK, 0},
    {"admin by scope", RS, &rsa1, SIG_KEY, GOOD, "\"scope\":\"openid resizer:admin email\"",
     AUTH_OK, 1},
    {"admin by scp array", ES, &ec1, SIG_KEY, GOOD, "\"scp\":[\"read\",\"resizer:admin\"]",
     AUTH_OK, 1},
    {"admin by scp string", ES, &ec1, SIG_KEY, GOOD, "\"scp\":\"resizer:admin\"", AUTH_OK, 1},
    {"scope prefix is not the scope", RS, &rsa1, SIG_KEY, GOOD,
     "\"scope\":\"resizer:admins resizer\"", AUTH_OK, 0},
    {"exp 59 s ago: within leeway", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", -59, NO_TIME,
     "\"u\"", NULL, AUTH_OK, 0},
    {"exp 61 s ago", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", -61, NO_TIME, "\"u\"", NULL,
     AUTH_EXPIRED, 0},
    {"no exp", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", NO_TIME, NO_TIME, "\"u\"", NULL,
     AUTH_EXPIRED, 0},
    {"nbf in 59 s: within leeway", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", 300, 59, "\"u\"",
     NULL, AUTH_OK, 0},
    {"nbf in 61 s", ES, &ec1, SIG_KEY, ISS, "\"" AUD "\"", 300, 61, "\"u\"", NULL,
     AUTH_NOT_YET_VALID, 0},
    {"other issuer", RS, &rsa1, SIG_KEY, "https://evil.test", "\"" AUD "\"", 300, NO_TIME,
     "\"u\"", NULL, AUTH_ISSUER, 0},
    {"other audience", RS, &rsa1, SIG_KEY, ISS, "\"someone-else\"", 300, NO_TIME, "\"u\"", NULL,
     AUTH_AUDIENCE, 0},
    {"audience array without ours", RS, &rsa1, SIG_KEY, ISS, "[\"a\",\"b\"]", 300, NO_TIME,
     "\"u\"", NULL, AUTH_AUDIENCE, 0},
    {"no sub", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", 300, NO_TIME, NULL, NULL, AUTH_SUBJECT,
     0},
    {"sub with a newline", RS, &rsa1, SIG_KEY, ISS, "\"" AUD "\"", 300, NO_TIME, "\"a\\nb\"",
     NULL, AUTH_SUBJECT, 0},
    {"signed by another key with rsa1's kid", RS, &evil, SIG_KEY, GOOD, NULL, AUTH_SIGNATURE, 0},
    {"es256 as DER", ES, &ec1, SIG_ES_DER, GOOD, NULL, AUTH_SIGNATURE, 0},
    {"alg none", "{\"alg\":\"none\",\"kid\":\"rsa1\"}", &rsa1, SIG_NONE, GOOD, NULL, AUTH_ALG,
     0},
    {"alg None", "{\"alg\":\"None\"}", &rsa1, SIG_NONE, GOOD, NULL, AUTH_ALG, 0},
    {"HS256 keyed with the public JWK", "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", &rsa1,
     SIG_HS_JWK, GOOD, NULL, AUTH_ALG, 0},
    {"HS256 keyed with the public PEM", "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", &rsa1,
     SIG_HS_PEM, GOOD, NULL, AUTH_ALG, 0},
    {"HS256 with the JWKS's oct key kid", "{\"alg\":\"HS256\",\"kid\":\"hmac\"}", &rsa1,
     SIG_HS_PEM, GOOD, NULL, AUTH_ALG, 0},
    {"RS256 naming the oct key", "{\"alg\":\"RS256\",\"kid\":\"hmac\"}", &rsa1, SIG_KEY, GOOD,
     NULL, AUTH_UNKNOWN_KID, 0},
    {"ES256 header on an RSA kid", "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", &ec1, SIG_KEY, GOOD,
     NULL, AUTH_UNKNOWN_KID, 0},
    {"RS512", "{\"alg\":\"RS512\",\"kid\":\"rsa1\"}", &rsa1, SIG_KEY, GOOD, NULL, AUTH_ALG, 0},
    {"unknown kid", "{\"alg\":\"RS256\",\"kid\":\"nope\"}", &rsa1, SIG_KEY, GOOD, NULL,
     AUTH_UNKNOWN_KID, 0},
    {"crit header", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"]}", &rsa1, SIG_KEY,
     GOOD, NULL, AUTH_ALG, 0},
    {"duplicate claim", RS, &rsa1, SIG_KEY, GOOD, "\"sub\":\"root\"", AUTH_MALFORMED, 0},
    {"header not an object", "[\"RS256\"]", &rsa1, SIG_KEY, GOOD, NULL, AUTH_MALFORMED, 0},
};

static void test_jwt_table(void **state)
{
    struct auth *a = *state;

    for (size_t i = 0; i < sizeof(jwt_cases) / sizeof(jwt_cases[0]); i++) {
        const struct jwt_case *c = &jwt_cases[i];
        char *claims = claims_make(c->iss, c->aud, c->exp_off, c->nbf_off, c->sub, c->extra);
        char *tok = token_make(c->header, claims, c->key, c->sig);
        struct auth_caller who;
        enum auth_refusal why = AUTH_OK;
        enum rz_err err = auth_check(a, tok, NOW, &who, &why);

        print_message("case %s\n", c->name);
        assert_int_equal(why, c->why);
        assert_int_equal(err, c->why == AUTH_OK ? RZ_OK : RZ_EAUTH);
        if (c->why == AUTH_OK) {
            /* c->sub is a JSON string without escapes: the name is between its quotes */
            assert_int_equal(strlen(who.name), strlen(c->sub) - 2);
            assert_memory_equal(who.name, c->sub + 1, strlen(c->sub) - 2);
            assert_int_equal(who.admin, c->admin);
        } else {
            assert_string_equal(who.name, "");
        }
        free(claims);
        free(tok);
    }
}

/* Changed bytes after signing, and malformed compact forms. */
static void test_jwt_shapes(void **state)
{
    struct auth *a = *state;
    char *claims = claims_make(GOOD, NULL);
    char *tok = token_make(RS, claims, &rsa1, SIG_KEY);
    char *other = claims_make(ISS, "\"" AUD "\"", 300, NO_TIME, "\"root\"", NULL);
    char *forged = token_make(RS, other, &rsa1, SIG_KEY);
    char *dot1 = strchr(tok, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    char buf[AUTH_MAX_JWT + 64];
    struct auth_caller who;
    enum auth_refusal why;

    /* tok's header and signature with forged's claims */
    snprintf(buf, sizeof(buf), "%.*s%.*s%s", (int)(dot1 - tok), tok,
             (int)(strchr(strchr(forged, '.') + 1, '.') - strchr(forged, '.')),
             strchr(forged, '.'), dot2);
    assert_int_equal(auth_check(a, buf, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_SIGNATURE);
    snprintf(buf, sizeof(buf), "%s.", tok);
    assert_int_equal(auth_check(a, buf, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_UNKNOWN_TOKEN); /* four segments: not a JWT at all */
    snprintf(buf, sizeof(buf), "%.*s=%s", (int)(dot1 - tok), tok, dot1);
    assert_int_equal(auth_check(a, buf, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_MALFORMED); /* padding is not base64url */
    snprintf(buf, sizeof(buf), "%.*s.", (int)(dot2 - tok), tok);
    assert_int_equal(auth_check(a, buf, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_MALFORMED); /* no signature */
    memset(buf, 'A', sizeof(buf));
    buf[100] = '.';
    buf[200] = '.';
    buf[AUTH_MAX_JWT + 1] = '\0';
    assert_int_equal(auth_check(a, buf, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_MALFORMED); /* over the size cap: not decoded */
    assert_int_equal(auth_check(a, tok, NOW, &who, &why), RZ_OK);
    free(claims);
    free(tok);
    free(other);
    free(forged);
}

static void test_static_tokens(void **state)
{
    struct auth *a = *state;
    struct auth_caller who;
    enum auth_refusal why;
    char bare_name[19];

    assert_int_equal(auth_check(a, ALICE, NOW, &who, &why), RZ_OK);
    assert_string_equal(who.name, "alice");
    assert_int_equal(who.admin, 0);
    assert_int_equal(auth_check(a, ROOT, NOW, &who, &why), RZ_OK);
    assert_string_equal(who.name, "root");
    assert_int_equal(who.admin, 1);
    assert_int_equal(auth_check(a, BARE, NOW, &who, &why), RZ_OK);
    auth_token_name(BARE, bare_name);
    assert_string_equal(who.name, bare_name);
    assert_int_equal(strncmp(bare_name, "token-", 6), 0);
    assert_int_equal(strlen(bare_name), 18);
    /* The name part is not a token, nor is the whole entry. */
    assert_int_equal(auth_check(a, "alice:" ALICE, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_UNKNOWN_TOKEN);
    assert_int_equal(auth_check(a, "alice", NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(auth_check(a, "", NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_NO_TOKEN);
}

static void test_bad_opts(void **state)
{
    static const char *const bad[] = {"x:short"};
    static const char *const badname[] = {"al ice:0123456789abcdef0"};
    struct auth_opts o = {bad, 1, NULL, 0, NULL, NULL, NULL, NULL, 30, 0};
    struct auth *a = NULL;
    char msg[256];

    (void)state;
    assert_int_equal(auth_new(&o, NOW, &a, msg, sizeof(msg)), RZ_EINVAL);
    o.api_tokens = badname;
    assert_int_equal(auth_new(&o, NOW, &a, msg, sizeof(msg)), RZ_EINVAL);
    o.napi_tokens = 0;
    o.jwks_url = jwks_url;
    o.issuer = ISS;
    assert_int_equal(auth_new(&o, NOW, &a, msg, sizeof(msg)), RZ_EINVAL);
    assert_non_null(strstr(msg, "JWT_AUDIENCE"));
    assert_null(a);
}

/* A new kid in the JWKS is fetched without a restart, at most once per
 * refresh interval; a key dropped from it stops working once the cached
 * set is older than AUTH_JWKS_MAX_AGE. */
static void test_rotation(void **state)
{
    const struct tkey *both[] = {&rsa1, &ec1, &rsa2};
    const struct tkey *only2[] = {&rsa2};
    struct auth *a = auth_make(30, NOW);
    char *claims = claims_make(ISS, "\"" AUD "\"", 10000, NO_TIME, "\"user-1\"", NULL);
    char *t2 = token_make("{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", claims, &rsa2, SIG_KEY);
    char *t1 = token_make(RS, claims, &rsa1, SIG_KEY);
    struct auth_caller who;
    enum auth_refusal why;

    (void)state;
    assert_int_equal(auth_check(a, t2, NOW, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_UNKNOWN_KID);
    jwks_write(both, 3);
    /* Just tried (at start and above): the rate limit holds the fetch. */
    assert_int_equal(auth_check(a, t2, NOW + 5, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_UNKNOWN_KID);
    assert_int_equal(auth_check(a, t2, NOW + 31, &who, &why), RZ_OK);
    assert_int_equal(auth_check(a, t1, NOW + 31, &who, &why), RZ_OK);
    /* rsa1 is withdrawn: trusted until the cache is old, then refused. */
    jwks_write(only2, 1);
    assert_int_equal(auth_check(a, t1, NOW + 40, &who, &why), RZ_OK);
    assert_int_equal(auth_check(a, t2, NOW + 31 + AUTH_JWKS_MAX_AGE, &who, &why), RZ_OK);
    assert_int_equal(auth_check(a, t1, NOW + 31 + AUTH_JWKS_MAX_AGE, &who, &why), RZ_EAUTH);
    assert_int_equal(why, AUTH_UNKNOWN_KID);
    /* A broken JWKS keeps the keys we have. */
    {
        FILE *f = fopen(jwks_path, "w");

        fputs("<html>oops</html>", f);
        fclose(f);
    }
    assert_int_equal(auth_check(a, t2, NOW + 40 + 2 * AUTH_JWKS_MAX_AGE, &who, &why), RZ_OK);
    jwks_write(both, 2);
    auth_free(a);
    free(claims);
    free(t1);
    free(t2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_table),     cmocka_unit_test(test_jwt_shapes),
        cmocka_unit_test(test_static_tokens), cmocka_unit_test(test_bad_opts),
        cmocka_unit_test(test_rotation),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
