/* auth.h - who is calling: named bearer tokens and OIDC JWTs.
 *
 * A caller is a name and an admin flag. Static tokens come from
 * API_TOKENS/ADMIN_TOKENS ("name:token" or a bare token, named
 * "token-<12 hex of its SHA-256>"). JWTs are RS256 or ES256 only, verified
 * with libcjose against a JWKS fetched with libcurl (https, http on
 * loopback, or file://), cached, and fetched again when a token names a kid
 * the cache lacks (at most once per jwks_refresh_min seconds) or when the
 * cache is older than AUTH_JWKS_MAX_AGE. The caller of a JWT is its `sub`;
 * admin_scope in `scope` or `scp` makes it an admin.
 *
 * Why a token was refused goes to the caller of auth_check (for the log
 * line), never to the client. */
#ifndef RESIZER_AUTH_H
#define RESIZER_AUTH_H

#include <stddef.h>
#include <time.h>

#include "err.h"

#define AUTH_CALLER_MAX 128   /* bytes of a caller's name, without the NUL */
#define AUTH_LEEWAY 60        /* seconds of clock skew allowed on exp and nbf */
#define AUTH_JWKS_MAX_AGE 600 /* seconds before a cached JWKS is fetched again */
#define AUTH_MAX_JWT 8192     /* bytes of a whole JWT; longer ones are not decoded */

struct auth_caller {
    char name[AUTH_CALLER_MAX + 1];
    int admin;
};

/* Why auth_check refused; AUTH_OK when it did not. */
enum auth_refusal {
    AUTH_OK = 0,
    AUTH_NO_TOKEN,      /* empty */
    AUTH_UNKNOWN_TOKEN, /* not a configured token, and not a JWT */
    AUTH_MALFORMED,     /* JWT segments, base64url, JSON or sizes */
    AUTH_ALG,           /* alg other than RS256/ES256 (none, HS256, ...) */
    AUTH_UNKNOWN_KID,   /* no key for it, even after a refresh */
    AUTH_SIGNATURE,
    AUTH_ISSUER,
    AUTH_AUDIENCE,
    AUTH_EXPIRED,
    AUTH_NOT_YET_VALID, /* nbf in the future */
    AUTH_SUBJECT,       /* sub missing or not a usable name */
};

struct auth_opts {
    const char *const *api_tokens; /* "name:token" or "token" */
    size_t napi_tokens;
    const char *const *admin_tokens;
    size_t nadmin_tokens;
    const char *jwks_url;    /* NULL: JWTs are refused */
    const char *issuer;      /* required with jwks_url */
    const char *audience;    /* required with jwks_url */
    const char *admin_scope; /* NULL: no JWT caller is an admin */
    long jwks_refresh_min;   /* seconds between fetches forced by an unknown kid */
    long fetch_timeout_ms;   /* whole JWKS fetch */
};

struct auth;

/* Builds the checker and fetches the JWKS once; a failed fetch is logged
 * and retried on demand, so an identity provider that is down at start
 * does not stop the service (named tokens keep working). Every string is
 * copied. RZ_EINVAL with msg on a bad token entry or a missing issuer or
 * audience; RZ_ENOMEM. now: as for auth_check. *out is freed with auth_free. */
enum rz_err auth_new(const struct auth_opts *opts, time_t now, struct auth **out, char *msg,
                     size_t msglen);

/* Wipes the tokens and frees everything; NULL is a no-op. */
void auth_free(struct auth *a);

/* Checks a bearer credential (the text after "Bearer "). RZ_OK with the
 * caller in *out; RZ_EAUTH with the reason in *why_out; RZ_ENOMEM. Safe to
 * call from many threads. now is the current Unix time (a parameter so tests
 * can move the clock). */
enum rz_err auth_check(struct auth *a, const char *credential, time_t now,
                       struct auth_caller *out, enum auth_refusal *why_out);

/* A short stable name of a refusal for logs ("expired", "signature", ...). */
const char *auth_refusal_name(enum auth_refusal why);

/* The name a bare token goes by: "token-" and the first 12 hex digits of
 * its SHA-256. out holds at least 19 bytes. */
void auth_token_name(const char *token, char out[19]);

#endif
