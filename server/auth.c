/* auth.c - named tokens and OIDC JWTs (RS256, ES256) against a cached JWKS.
 *
 * Static tokens are kept only as SHA-256 digests and every one is compared
 * on each request, so neither the time taken nor memory reveals them.
 *
 * A JWT is bounded and split before anything is decoded; its header must
 * name RS256 or ES256, and the key is chosen by kid among keys whose type
 * fixes the algorithm (RSA: RS256, EC P-256: ES256), so the token's alg can
 * never pick the verification (no "none", no HS256 with a public key as the
 * HMAC secret). libcjose verifies the signature; the claims are checked
 * here only after it did. */
#include "auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "base64.h"
#include "buf.h"
#include "log.h"
#include "text.h"

#define AUTH_MAX_TOKENS 32 /* API_TOKENS and ADMIN_TOKENS together */
#define AUTH_NAME_MAX 64   /* of a configured name */
#define AUTH_MAX_KEYS 32   /* kept from one JWKS */
#define AUTH_KID_MAX 128
#define AUTH_MAX_JWKS (256 * 1024) /* bytes of a JWKS document */
#define AUTH_MAX_HEADER_B64 1024
#define AUTH_MAX_PAYLOAD_B64 6144
#define AUTH_MAX_SIG_B64 700 /* RSA 4096: 512 bytes, 683 characters */
#define AUTH_MAX_AUD 32
#define AUTH_MIN_RSA_BITS 2048

enum auth_alg {
    AUTH_RS256 = 0,
    AUTH_ES256,
};

struct auth_token {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char name[AUTH_CALLER_MAX + 1];
    int admin;
};

struct auth_key {
    char kid[AUTH_KID_MAX + 1]; /* "" when the JWK has none */
    enum auth_alg alg;
    size_t sig_len; /* the only signature length this key can verify */
    cjose_jwk_t *jwk;
};

struct auth_keys {
    struct auth_key k[AUTH_MAX_KEYS];
    size_t n;
};

struct auth {
    struct auth_token tokens[AUTH_MAX_TOKENS];
    size_t ntokens;
    char *jwks_url;
    char *issuer;
    char *audience;
    char *admin_scope;
    long refresh_min;
    long timeout_ms;
    pthread_rwlock_t keys_lock; /* keys and fetched_at */
    struct auth_keys *keys;     /* NULL until a fetch succeeded */
    time_t fetched_at;
    pthread_mutex_t fetch_lock; /* one fetch at a time; tried_at */
    time_t tried_at;
};

/* A JWT after its shape was checked: header and claims parsed. */
struct auth_jwt {
    json_t *header;
    json_t *claims;
    enum auth_alg alg;
    const char *kid; /* in header; NULL when absent */
    size_t sig_len;
};

static const char *const auth_refusal_names[] = {
    "ok",        "no_token", "unknown_token", "malformed", "alg",           "unknown_kid",
    "signature", "issuer",   "audience",      "expired",   "not_yet_valid", "subject",
};

const char *auth_refusal_name(enum auth_refusal why)
{
    if ((size_t)why >= sizeof(auth_refusal_names) / sizeof(auth_refusal_names[0]))
        return "unknown";
    return auth_refusal_names[why];
}

/* ---- static tokens ---- */

void auth_token_name(const char *token, char out[19])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    static const char hex[] = "0123456789abcdef";

    SHA256((const unsigned char *)token, strlen(token), d);
    memcpy(out, "token-", 6);
    for (size_t i = 0; i < 6; i++) {
        out[6 + 2 * i] = hex[d[i] >> 4];
        out[7 + 2 * i] = hex[d[i] & 15];
    }
    out[18] = '\0';
}

static int auth_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._@-", c)))
            return 0;
    }
    return 1;
}

/* One "name:token" or bare "token" entry into a->tokens. */
static enum rz_err auth_token_add(struct auth *a, const char *entry, int admin, char *msg,
                                  size_t msglen)
{
    const char *colon = strchr(entry, ':');
    const char *secret = colon ? colon + 1 : entry;
    struct auth_token *t;

    if (a->ntokens == AUTH_MAX_TOKENS) {
        snprintf(msg, msglen, "at most %d tokens", AUTH_MAX_TOKENS);
        return RZ_EINVAL;
    }
    if ((colon && !auth_name_ok(entry, (size_t)(colon - entry))) || strlen(secret) < 16) {
        snprintf(msg, msglen, "each entry must be name:token or token (16+ characters)");
        return RZ_EINVAL;
    }
    t = &a->tokens[a->ntokens++];
    if (colon)
        snprintf(t->name, sizeof(t->name), "%.*s", (int)(colon - entry), entry);
    else
        auth_token_name(entry, t->name);
    SHA256((const unsigned char *)secret, strlen(secret), t->digest);
    t->admin = admin;
    return RZ_OK;
}

/* Every token is compared, so the time taken does not say which matched. */
static int auth_static_check(const struct auth *a, const char *credential,
                             struct auth_caller *out)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    const struct auth_token *match = NULL;

    SHA256((const unsigned char *)credential, strlen(credential), d);
    for (size_t i = 0; i < a->ntokens; i++) {
        int same = CRYPTO_memcmp(d, a->tokens[i].digest, sizeof(d)) == 0;

        match = same ? &a->tokens[i] : match;
    }
    OPENSSL_cleanse(d, sizeof(d));
    if (!match)
        return 0;
    snprintf(out->name, sizeof(out->name), "%s", match->name);
    out->admin = match->admin;
    return 1;
}

/* ---- the JWKS ---- */

static void auth_keys_free(struct auth_keys *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        cjose_jwk_release(ks->k[i].jwk);
    free(ks);
}

/* The algorithm a JWK can verify, from its own type; -1 for keys we never
 * use (oct, other curves, use other than sig, an alg that disagrees). */
static int auth_jwk_alg(const json_t *k)
{
    const char *kty = json_string_value(json_object_get(k, "kty"));
    const char *crv = json_string_value(json_object_get(k, "crv"));
    const char *use = json_string_value(json_object_get(k, "use"));
    const json_t *alg = json_object_get(k, "alg");
    int which = -1;

    if (use && strcmp(use, "sig") != 0)
        return -1;
    if (kty && strcmp(kty, "RSA") == 0)
        which = AUTH_RS256;
    else if (kty && crv && strcmp(kty, "EC") == 0 && strcmp(crv, "P-256") == 0)
        which = AUTH_ES256;
    if (which >= 0 && alg &&
        (!json_is_string(alg) ||
         strcmp(json_string_value(alg), which == AUTH_RS256 ? "RS256" : "ES256") != 0))
        return -1;
    return which;
}

/* Imports one JWK into *out; 0 when it is skipped. */
static int auth_key_import(const json_t *k, struct auth_key *out)
{
    const json_t *kid = json_object_get(k, "kid");
    int alg = auth_jwk_alg(k);
    char *text;
    cjose_err cerr;
    size_t bits;

    if (alg < 0 || (kid && (!json_is_string(kid) || json_string_length(kid) > AUTH_KID_MAX)))
        return 0;
    text = json_dumps(k, JSON_COMPACT);
    out->jwk = text ? cjose_jwk_import(text, strlen(text), &cerr) : NULL;
    free(text);
    if (!out->jwk)
        return 0;
    bits = cjose_jwk_get_keysize(out->jwk, &cerr);
    if (alg == AUTH_RS256 && bits < AUTH_MIN_RSA_BITS) {
        cjose_jwk_release(out->jwk);
        out->jwk = NULL;
        return 0;
    }
    out->alg = (enum auth_alg)alg;
    out->sig_len = alg == AUTH_ES256 ? 64 : bits / 8;
    snprintf(out->kid, sizeof(out->kid), "%s", kid ? json_string_value(kid) : "");
    return 1;
}

/* Parses a JWKS document; keys we cannot use are skipped. */
static enum rz_err auth_jwks_parse(const char *text, size_t len, struct auth_keys **out,
                                   char *msg, size_t msglen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *keys = json_object_get(doc, "keys");
    struct auth_keys *ks = NULL;
    size_t i;
    const json_t *k;
    enum rz_err err = RZ_EINVAL;

    if (!json_is_array(keys)) {
        snprintf(msg, msglen, "not a JWKS (no \"keys\" array)");
        goto fail;
    }
    ks = calloc(1, sizeof(*ks));
    err = RZ_ENOMEM;
    if (!ks)
        goto fail;
    json_array_foreach(keys, i, k)
    {
        if (ks->n < AUTH_MAX_KEYS && auth_key_import(k, &ks->k[ks->n]))
            ks->n++;
    }
    *out = ks;
    json_decref(doc);
    return RZ_OK;
fail:
    json_decref(doc);
    return err;
}

static size_t auth_curl_write(char *data, size_t size, size_t n, void *arg)
{
    return buf_append(arg, data, size * n) == RZ_OK ? size * n : 0;
}

/* GETs the JWKS into out (https, http on loopback or file://, as config
 * allowed; no redirects). */
static enum rz_err auth_jwks_fetch(const struct auth *a, struct buf *out, char *msg,
                                   size_t msglen)
{
    CURL *c = curl_easy_init();
    CURLcode rc;
    long status = 0;
    enum rz_err err = RZ_EUPSTREAM;

    if (!c)
        return RZ_ENOMEM;
    curl_easy_setopt(c, CURLOPT_URL, a->jwks_url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http,file");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, auth_curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_WRITE_ERROR)
        snprintf(msg, msglen, "JWKS over 256 KiB");
    else if (rc != CURLE_OK)
        snprintf(msg, msglen, "%s", curl_easy_strerror(rc));
    else if (strncmp(a->jwks_url, "file://", 7) != 0 && status != 200)
        snprintf(msg, msglen, "HTTP %ld", status);
    else
        err = RZ_OK;
    curl_easy_cleanup(c);
    return err;
}

/* Fetches, parses and swaps in the key set. */
static enum rz_err auth_jwks_load(struct auth *a, time_t now)
{
    struct buf b;
    struct auth_keys *fresh = NULL;
    struct auth_keys *old;
    char msg[256] = "";
    enum rz_err err;

    buf_init(&b, AUTH_MAX_JWKS);
    err = auth_jwks_fetch(a, &b, msg, sizeof(msg));
    if (err == RZ_OK)
        err = auth_jwks_parse(b.data ? b.data : "", b.len, &fresh, msg, sizeof(msg));
    buf_cleanup(&b);
    if (err != RZ_OK) {
        log_fields(LOG_WARN, "jwks_fetch_failed",
                   json_pack("{s:s,s:s,s:s}", "url", a->jwks_url, "error", rz_err_name(err),
                             "msg", msg));
        return err;
    }
    pthread_rwlock_wrlock(&a->keys_lock);
    old = a->keys;
    a->keys = fresh;
    a->fetched_at = now;
    pthread_rwlock_unlock(&a->keys_lock);
    auth_keys_free(old);
    log_fields(LOG_INFO, "jwks_loaded",
               json_pack("{s:s,s:I}", "url", a->jwks_url, "keys", (json_int_t)fresh->n));
    return RZ_OK;
}

/* Fetches the JWKS again unless a fetch was tried less than min_gap
 * seconds ago: a stream of tokens with made-up kids costs one fetch per
 * gap, not one per request. Nobody waits for a fetch under way (the
 * request goes on with the keys there are), so a slow provider holds at
 * most one HTTP thread, for at most the fetch timeout. */
static void auth_refresh(struct auth *a, time_t now, long min_gap)
{
    if (pthread_mutex_trylock(&a->fetch_lock) != 0)
        return;
    if (!a->tried_at || now < a->tried_at || now - a->tried_at >= min_gap) {
        a->tried_at = now;
        auth_jwks_load(a, now);
    }
    pthread_mutex_unlock(&a->fetch_lock);
}

static int auth_keys_stale(struct auth *a, time_t now)
{
    int stale;

    pthread_rwlock_rdlock(&a->keys_lock);
    stale = !a->keys || now - a->fetched_at >= AUTH_JWKS_MAX_AGE;
    pthread_rwlock_unlock(&a->keys_lock);
    return stale;
}

/* ---- the JWT ---- */

/* Decodes one base64url segment into a NUL-terminated malloc'd buffer. */
static enum rz_err auth_segment(const char *s, size_t len, size_t max_b64, unsigned char **out,
                                size_t *outlen)
{
    size_t cap = base64_decoded_max(len) + 1;
    enum rz_err err;

    *out = NULL;
    if (len == 0 || len > max_b64)
        return RZ_EINVAL;
    *out = malloc(cap);
    if (!*out)
        return RZ_ENOMEM;
    err = base64_decode(s, len, BASE64_URL, *out, cap - 1, outlen);
    if (err != RZ_OK) {
        free(*out);
        *out = NULL;
        return err;
    }
    (*out)[*outlen] = '\0';
    return RZ_OK;
}

/* A segment that must be a JSON object (jansson refuses NULs in strings,
 * so names from it are safe C strings). */
static json_t *auth_segment_json(const char *s, size_t len, size_t max_b64)
{
    unsigned char *raw = NULL;
    size_t n = 0;
    json_t *j = NULL;

    if (auth_segment(s, len, max_b64, &raw, &n) == RZ_OK)
        j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* The algorithm named by the header; AUTH_ALG for anything else, and for
 * a "crit" we cannot honour (RFC 7515 section 4.1.11). */
static enum auth_refusal auth_header_check(struct auth_jwt *jwt)
{
    const char *alg = json_string_value(json_object_get(jwt->header, "alg"));
    const json_t *kid = json_object_get(jwt->header, "kid");

    if (!alg || json_object_get(jwt->header, "crit"))
        return AUTH_ALG;
    if (strcmp(alg, "RS256") == 0)
        jwt->alg = AUTH_RS256;
    else if (strcmp(alg, "ES256") == 0)
        jwt->alg = AUTH_ES256;
    else
        return AUTH_ALG;
    if (kid && (!json_is_string(kid) || json_string_length(kid) > AUTH_KID_MAX))
        return AUTH_MALFORMED;
    jwt->kid = kid ? json_string_value(kid) : NULL;
    return AUTH_OK;
}

/* Splits and bounds the compact form, decodes header and claims. */
static enum auth_refusal auth_jwt_parse(const char *token, struct auth_jwt *jwt)
{
    size_t len = strnlen(token, AUTH_MAX_JWT + 1);
    const char *dot1, *dot2;
    size_t hlen, plen, slen;
    unsigned char *sig = NULL;
    enum auth_refusal why;

    if (len > AUTH_MAX_JWT)
        return AUTH_MALFORMED;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return AUTH_MALFORMED;
    hlen = (size_t)(dot1 - token);
    plen = (size_t)(dot2 - dot1 - 1);
    slen = len - (size_t)(dot2 + 1 - token);
    jwt->header = auth_segment_json(token, hlen, AUTH_MAX_HEADER_B64);
    if (!jwt->header)
        return AUTH_MALFORMED;
    why = auth_header_check(jwt);
    if (why != AUTH_OK)
        return why;
    if (auth_segment(dot2 + 1, slen, AUTH_MAX_SIG_B64, &sig, &jwt->sig_len) != RZ_OK)
        return AUTH_MALFORMED;
    free(sig);
    jwt->claims = auth_segment_json(dot1 + 1, plen, AUTH_MAX_PAYLOAD_B64);
    return jwt->claims ? AUTH_OK : AUTH_MALFORMED;
}

/* The key for the token: by kid, or the only key of the algorithm when the
 * token names none. Called with keys_lock held. */
static const struct auth_key *auth_key_find(const struct auth_keys *ks,
                                            const struct auth_jwt *jwt)
{
    const struct auth_key *only = NULL;
    size_t of_alg = 0;

    for (size_t i = 0; ks && i < ks->n; i++) {
        const struct auth_key *k = &ks->k[i];

        if (k->alg != jwt->alg)
            continue;
        if (jwt->kid && strcmp(k->kid, jwt->kid) == 0)
            return k;
        of_alg++;
        only = k;
    }
    return !jwt->kid && of_alg == 1 ? only : NULL;
}

/* Verifies the signature with the key the kid names; 1 when there is no
 * such key (yet). */
static enum auth_refusal auth_verify_locked(const struct auth *a, const char *token,
                                            const struct auth_jwt *jwt, int *no_key)
{
    const struct auth_key *k = auth_key_find(a->keys, jwt);
    cjose_jws_t *jws;
    cjose_err cerr;
    int ok;

    *no_key = !k;
    if (!k)
        return AUTH_UNKNOWN_KID;
    /* ES256 is raw r||s (64 bytes), RS256 the modulus' length: a DER
     * signature or one for another key size is refused before libcjose. */
    if (jwt->sig_len != k->sig_len)
        return AUTH_SIGNATURE;
    jws = cjose_jws_import(token, strlen(token), &cerr);
    if (!jws)
        return AUTH_MALFORMED;
    ok = cjose_jws_verify(jws, k->jwk, &cerr);
    cjose_jws_release(jws);
    return ok ? AUTH_OK : AUTH_SIGNATURE;
}

static enum auth_refusal auth_verify(struct auth *a, const char *token,
                                     const struct auth_jwt *jwt, time_t now)
{
    enum auth_refusal why;
    int no_key;

    if (auth_keys_stale(a, now))
        auth_refresh(a, now, a->refresh_min);
    pthread_rwlock_rdlock(&a->keys_lock);
    why = auth_verify_locked(a, token, jwt, &no_key);
    pthread_rwlock_unlock(&a->keys_lock);
    if (!no_key)
        return why;
    /* A kid we do not know: the provider may have rotated its keys. */
    auth_refresh(a, now, a->refresh_min);
    pthread_rwlock_rdlock(&a->keys_lock);
    why = auth_verify_locked(a, token, jwt, &no_key);
    pthread_rwlock_unlock(&a->keys_lock);
    return why;
}

static int auth_audience_ok(const json_t *aud, const char *want)
{
    size_t i;
    const json_t *v;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud) || json_array_size(aud) > AUTH_MAX_AUD)
        return 0;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return 1;
    }
    return 0;
}

/* 1 when want is one of the space-separated words of s. */
static int auth_word_in(const char *s, const char *want)
{
    size_t wlen = strlen(want);

    while (s && *s) {
        size_t n = strcspn(s, " ");

        if (n == wlen && strncmp(s, want, n) == 0)
            return 1;
        s += n;
        s += strspn(s, " ");
    }
    return 0;
}

/* scope: "a b c" (RFC 8693); scp: ["a","b"] (Azure AD, Okta) or a string. */
static int auth_has_scope(const json_t *claims, const char *want)
{
    const json_t *scp = json_object_get(claims, "scp");
    size_t i;
    const json_t *v;

    if (!want)
        return 0;
    if (auth_word_in(json_string_value(json_object_get(claims, "scope")), want))
        return 1;
    if (json_is_string(scp))
        return auth_word_in(json_string_value(scp), want);
    json_array_foreach(scp, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return 1;
    }
    return 0;
}

/* The subject becomes a caller name in records and log lines: printable,
 * bounded, nothing a log reader could mistake for structure. */
static int auth_subject_ok(const char *sub)
{
    size_t len = sub ? strlen(sub) : 0;

    if (len == 0 || len > AUTH_CALLER_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
            return 0;
    }
    return 1;
}

static enum auth_refusal auth_claims_check(const struct auth *a, const json_t *claims,
                                           time_t now, struct auth_caller *out)
{
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const json_t *exp = json_object_get(claims, "exp");
    const json_t *nbf = json_object_get(claims, "nbf");
    const char *sub = json_string_value(json_object_get(claims, "sub"));

    if (!iss || strcmp(iss, a->issuer) != 0)
        return AUTH_ISSUER;
    if (!auth_audience_ok(json_object_get(claims, "aud"), a->audience))
        return AUTH_AUDIENCE;
    /* A token without exp never expires: refused like an expired one. */
    if (!json_is_number(exp) || (double)now > json_number_value(exp) + AUTH_LEEWAY)
        return AUTH_EXPIRED;
    if (nbf && (!json_is_number(nbf) || (double)now + AUTH_LEEWAY < json_number_value(nbf)))
        return AUTH_NOT_YET_VALID;
    if (!auth_subject_ok(sub))
        return AUTH_SUBJECT;
    snprintf(out->name, sizeof(out->name), "%s", sub);
    out->admin = auth_has_scope(claims, a->admin_scope);
    return AUTH_OK;
}

static enum auth_refusal auth_jwt_check(struct auth *a, const char *token, time_t now,
                                        struct auth_caller *out)
{
    struct auth_jwt jwt = {0};
    enum auth_refusal why = auth_jwt_parse(token, &jwt);

    if (why == AUTH_OK)
        why = auth_verify(a, token, &jwt, now);
    if (why == AUTH_OK)
        why = auth_claims_check(a, jwt.claims, now, out);
    json_decref(jwt.header);
    json_decref(jwt.claims);
    return why;
}

/* Three base64url segments: anything else is not meant as a JWT. */
static int auth_looks_like_jwt(const char *s)
{
    const char *d1 = strchr(s, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;

    return d2 && !strchr(d2 + 1, '.');
}

enum rz_err auth_check(struct auth *a, const char *credential, time_t now,
                       struct auth_caller *out, enum auth_refusal *why_out)
{
    enum auth_refusal why = AUTH_UNKNOWN_TOKEN;

    memset(out, 0, sizeof(*out));
    if (!credential || !credential[0])
        why = AUTH_NO_TOKEN;
    else if (auth_static_check(a, credential, out))
        why = AUTH_OK;
    else if (a->jwks_url && auth_looks_like_jwt(credential))
        why = auth_jwt_check(a, credential, now, out);
    if (why != AUTH_OK)
        memset(out, 0, sizeof(*out));
    *why_out = why;
    return why == AUTH_OK ? RZ_OK : RZ_EAUTH;
}

/* ---- lifecycle ---- */

static enum rz_err auth_set_jwt(struct auth *a, const struct auth_opts *o, char *msg,
                                size_t msglen)
{
    enum rz_err err;

    if (!o->jwks_url)
        return RZ_OK;
    if (!o->issuer || !o->audience) {
        snprintf(msg, msglen, "JWT_ISSUER and JWT_AUDIENCE are required with JWT_JWKS_URL");
        return RZ_EINVAL;
    }
    err = text_dup(o->jwks_url, &a->jwks_url);
    if (err == RZ_OK)
        err = text_dup(o->issuer, &a->issuer);
    if (err == RZ_OK)
        err = text_dup(o->audience, &a->audience);
    if (err == RZ_OK)
        err = text_dup(o->admin_scope, &a->admin_scope);
    a->refresh_min = o->jwks_refresh_min;
    a->timeout_ms = o->fetch_timeout_ms > 0 ? o->fetch_timeout_ms : 3000;
    return err;
}

enum rz_err auth_new(const struct auth_opts *o, time_t now, struct auth **out, char *msg,
                     size_t msglen)
{
    struct auth *a = calloc(1, sizeof(*a));
    enum rz_err err = RZ_OK;

    msg[0] = '\0';
    if (!a)
        return RZ_ENOMEM;
    pthread_rwlock_init(&a->keys_lock, NULL);
    pthread_mutex_init(&a->fetch_lock, NULL);
    for (size_t i = 0; i < o->napi_tokens && err == RZ_OK; i++)
        err = auth_token_add(a, o->api_tokens[i], 0, msg, msglen);
    for (size_t i = 0; i < o->nadmin_tokens && err == RZ_OK; i++)
        err = auth_token_add(a, o->admin_tokens[i], 1, msg, msglen);
    if (err == RZ_OK)
        err = auth_set_jwt(a, o, msg, msglen);
    if (err != RZ_OK) {
        auth_free(a);
        return err;
    }
    if (a->jwks_url)
        auth_refresh(a, now, 0);
    *out = a;
    return RZ_OK;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    OPENSSL_cleanse(a->tokens, sizeof(a->tokens));
    auth_keys_free(a->keys);
    free(a->jwks_url);
    free(a->issuer);
    free(a->audience);
    free(a->admin_scope);
    pthread_rwlock_destroy(&a->keys_lock);
    pthread_mutex_destroy(&a->fetch_lock);
    free(a);
}
