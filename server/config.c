/* config.c - read and validate the environment once, at start.
 *
 * One table lists every variable with its default, its help line and its
 * parser, so --help and validation can never disagree. Cross-variable rules
 * (credentials, SSE, event auth) run after every single value parsed. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "webhooks.h"
#include "variants.h"

#define CONFIG_MAX_WATERMARK (4 * 1024 * 1024)

struct config_var;
typedef enum rz_err (*config_parse_fn)(const struct config_var *v, const char *value,
                                       struct config *c, char *msg, size_t msglen);

struct config_var {
    const char *name;
    const char *def; /* NULL: unset unless given */
    const char *help;
    config_parse_fn parse;
    size_t offset; /* of the field parse writes */
    long min;      /* for numbers */
    long max;
    int secret; /* never echo the value */
};

#define FIELD(f) offsetof(struct config, f)
#define AT(c, v, type) ((type *)((char *)(c) + (v)->offset))

static enum rz_err config_fail(char *msg, size_t msglen, const char *name, const char *what)
{
    snprintf(msg, msglen, "%s: %s", name, what);
    return RZ_EINVAL;
}

static enum rz_err parse_string(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    char **field = AT(c, v, char *);

    if (value[0] == '\0')
        return config_fail(msg, msglen, v->name, "must not be empty");
    *field = strdup(value);
    return *field ? RZ_OK : RZ_ENOMEM;
}

/* S3's bucket naming rules: 3-63 of [a-z0-9.-], starting and ending with a
 * letter or digit. Checked here so a typo fails at start, not at the first
 * upload. */
static enum rz_err parse_bucket(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    size_t len = strlen(value);

    if (len < 3 || len > 63)
        return config_fail(msg, msglen, v->name, "must be a bucket name of 3 to 63 characters");
    for (size_t i = 0; i < len; i++) {
        char ch = value[i];

        if (!(islower((unsigned char)ch) || isdigit((unsigned char)ch) || ch == '.' ||
              ch == '-'))
            return config_fail(msg, msglen, v->name,
                               "may hold only lowercase letters, digits, '.' and '-'");
    }
    if (!isalnum((unsigned char)value[0]) || !isalnum((unsigned char)value[len - 1]))
        return config_fail(msg, msglen, v->name, "must start and end with a letter or digit");
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_prefix(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    if (value[0] == '/')
        return config_fail(msg, msglen, v->name, "must not start with '/' (S3 keys do not)");
    if (strlen(value) > 512)
        return config_fail(msg, msglen, v->name, "must be at most 512 bytes");
    return parse_string(v, value, c, msg, msglen);
}

/* The region goes into every signature's scope and the default endpoint's
 * host name: AWS's are lowercase letters, digits and '-', and S3-compatible
 * servers (MinIO, Ceph, Garage) name theirs with letters, digits, '-', '_'. */
static enum rz_err parse_region(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    size_t len = strlen(value);

    if (len > 64 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789-_") != len)
        return config_fail(msg, msglen, v->name,
                           "must be at most 64 letters, digits, '-' or '_'");
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_long_value(const struct config_var *v, const char *value, long *out,
                                    char *msg, size_t msglen)
{
    char *end = NULL;
    long n;
    char what[128];

    errno = 0;
    n = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0' || n < v->min || n > v->max) {
        snprintf(what, sizeof(what), "must be an integer from %ld to %ld", v->min, v->max);
        return config_fail(msg, msglen, v->name, what);
    }
    *out = n;
    return RZ_OK;
}

static enum rz_err parse_long(const struct config_var *v, const char *value, struct config *c,
                              char *msg, size_t msglen)
{
    return parse_long_value(v, value, AT(c, v, long), msg, msglen);
}

static enum rz_err parse_u64(const struct config_var *v, const char *value, struct config *c,
                             char *msg, size_t msglen)
{
    long n;
    enum rz_err err = parse_long_value(v, value, &n, msg, msglen);

    if (err == RZ_OK)
        *AT(c, v, uint64_t) = (uint64_t)n;
    return err;
}

static enum rz_err parse_bool(const struct config_var *v, const char *value, struct config *c,
                              char *msg, size_t msglen)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *AT(c, v, int) = 1;
            return RZ_OK;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *AT(c, v, int) = 0;
            return RZ_OK;
        }
    }
    return config_fail(msg, msglen, v->name, "must be true or false");
}

/* An http(s) URL with a host and nothing after it but an optional port and
 * path; this is what S3 endpoints look like. */
static enum rz_err parse_url(const struct config_var *v, const char *value, struct config *c,
                             char *msg, size_t msglen)
{
    const char *host;
    size_t hostlen;

    if (strncmp(value, "https://", 8) == 0)
        host = value + 8;
    else if (strncmp(value, "http://", 7) == 0)
        host = value + 7;
    else
        return config_fail(msg, msglen, v->name, "must be an http:// or https:// URL");
    hostlen = strcspn(host, "/?#");
    if (hostlen == 0 || host[0] == ':')
        return config_fail(msg, msglen, v->name, "must name a host");
    if (strpbrk(value, " \t\r\n@?#"))
        return config_fail(msg, msglen, v->name,
                           "must not hold spaces, credentials, a query or a fragment");
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_store(const struct config_var *v, const char *value, struct config *c,
                               char *msg, size_t msglen)
{
    if (strcmp(value, "memory") == 0)
        c->state_store = CONFIG_STORE_MEMORY;
    else if (strcmp(value, "dynamodb") == 0)
        c->state_store = CONFIG_STORE_DYNAMODB;
    else
        return config_fail(msg, msglen, v->name, "must be memory or dynamodb");
    return RZ_OK;
}

/* DynamoDB's table naming rules: 3-255 of [A-Za-z0-9_.-]. */
static enum rz_err parse_table(const struct config_var *v, const char *value, struct config *c,
                               char *msg, size_t msglen)
{
    size_t len = strlen(value);

    if (len < 3 || len > 255 ||
        strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789_.-") != len)
        return config_fail(msg, msglen, v->name,
                           "must be 3 to 255 letters, digits, '_', '.' or '-'");
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_log_level(const struct config_var *v, const char *value,
                                   struct config *c, char *msg, size_t msglen)
{
    int level = log_level_parse(value);

    if (level < 0)
        return config_fail(msg, msglen, v->name, "must be debug, info, warn or error");
    c->log_level = (enum log_level)level;
    return RZ_OK;
}

/* OUTPUT_FORMAT (one format, the older name) and OUTPUT_FORMATS (a list)
 * fill the same list; giving both is refused rather than guessed. */
static enum rz_err parse_outputs(const struct config_var *v, const char *value, struct config *c,
                                 char *msg, size_t msglen)
{
    char why[160];
    size_t n = 0;

    if (c->noutputs)
        return config_fail(msg, msglen, v->name, "cannot be used together with OUTPUT_FORMAT");
    if (variants_parse_formats(value, c->outputs, &n, why, sizeof(why)) != RZ_OK)
        return config_fail(msg, msglen, v->name, why);
    if (n > 1 && strcmp(v->name, "OUTPUT_FORMAT") == 0)
        return config_fail(msg, msglen, v->name,
                           "takes one format; list several in "
                           "OUTPUT_FORMATS");
    c->noutputs = n;
    return RZ_OK;
}

/* "4x3": BlurHash components across and down, 1 to 9 each. */
static enum rz_err parse_blurhash(const struct config_var *v, const char *value,
                                  struct config *c, char *msg, size_t msglen)
{
    if (strlen(value) != 3 || value[1] != 'x' || value[0] < '1' || value[0] > '9' ||
        value[2] < '1' || value[2] > '9')
        return config_fail(msg, msglen, v->name, "must be XxY, each from 1 to 9 (e.g. 4x3)");
    c->blurhash_x = value[0] - '0';
    c->blurhash_y = value[2] - '0';
    return RZ_OK;
}

static enum rz_err parse_sse(const struct config_var *v, const char *value, struct config *c,
                             char *msg, size_t msglen)
{
    if (strcmp(value, "AES256") == 0)
        c->sse = CONFIG_SSE_AES256;
    else if (strcmp(value, "aws:kms") == 0)
        c->sse = CONFIG_SSE_KMS;
    else
        return config_fail(msg, msglen, v->name, "must be AES256 or aws:kms");
    return RZ_OK;
}

/* "desktop:1920,tablet:1024,phone:640,thumb:256x256:cover" (variants.h). */
static enum rz_err parse_variants(const struct config_var *v, const char *value,
                                  struct config *c, char *msg, size_t msglen)
{
    char why[200];

    if (variants_parse_list(value, c->variants, &c->nvariants, why, sizeof(why)) != RZ_OK)
        return config_fail(msg, msglen, v->name, why);
    return RZ_OK;
}

/* "name:token" (the name is the caller, [A-Za-z0-9._@-], up to 64) or a
 * bare token of 16+ characters. */
static int config_token_ok(const char *p, size_t len)
{
    const char *colon = memchr(p, ':', len);
    size_t namelen = colon ? (size_t)(colon - p) : 0;

    if (colon &&
        (namelen == 0 || namelen > 64 ||
         strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") <
             namelen))
        return 0;
    return len - (colon ? namelen + 1 : 0) >= 16;
}

static enum rz_err parse_tokens(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    int admin = strcmp(v->name, "ADMIN_TOKENS") == 0;
    char **list = admin ? c->admin_tokens : c->api_tokens;
    size_t *n = admin ? &c->nadmin_tokens : &c->napi_tokens;
    const char *p = value;

    while (*p) {
        size_t len = strcspn(p, ",");

        if (!config_token_ok(p, len))
            return config_fail(msg, msglen, v->name,
                               "each entry must be name:token or a token, and each token at "
                               "least 16 characters");
        if (*n == CONFIG_MAX_TOKENS)
            return config_fail(msg, msglen, v->name, "must list at most 16 tokens");
        list[*n] = strndup(p, len);
        if (!list[*n])
            return RZ_ENOMEM;
        (*n)++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (*n == 0)
        return config_fail(msg, msglen, v->name, "must list at least one token");
    return RZ_OK;
}

/* https, or http only to this host (tests, a sidecar), or a local file. */
static enum rz_err parse_jwks_url(const struct config_var *v, const char *value,
                                  struct config *c, char *msg, size_t msglen)
{
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost"};
    int ok = strncmp(value, "https://", 8) == 0 && value[8] && value[8] != '/';

    for (size_t i = 0; i < 2 && !ok; i++) {
        size_t n = strlen(loopback[i]);

        ok = strncmp(value, loopback[i], n) == 0 && strchr(":/", value[n]) && value[n];
    }
    if (!ok && strncmp(value, "file:///", 8) == 0)
        ok = 1;
    if (!ok)
        return config_fail(msg, msglen, v->name,
                           "must be an https:// URL, http:// on 127.0.0.1 or localhost, or "
                           "file:///path");
    if (strpbrk(value, " \t\r\n@#") || strlen(value) > 2048)
        return config_fail(msg, msglen, v->name,
                           "must not hold spaces, credentials or a fragment");
    return parse_string(v, value, c, msg, msglen);
}

/* An HTTP header name (RFC 9110 token), stored lowercase because
 * libmicrohttpd lookups are case-insensitive and logs read better. */
static enum rz_err parse_header_name(const struct config_var *v, const char *value,
                                     struct config *c, char *msg, size_t msglen)
{
    char *copy;

    for (const char *p = value; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return config_fail(msg, msglen, v->name, "must be an HTTP header name");
    }
    if (value[0] == '\0' || strlen(value) > 128)
        return config_fail(msg, msglen, v->name, "must be an HTTP header name");
    copy = strdup(value);
    if (!copy)
        return RZ_ENOMEM;
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    c->events_api_key_header = copy;
    return RZ_OK;
}

static enum rz_err parse_basic_auth(const struct config_var *v, const char *value,
                                    struct config *c, char *msg, size_t msglen)
{
    const char *colon = strchr(value, ':');

    if (!colon || colon == value || colon[1] == '\0')
        return config_fail(msg, msglen, v->name, "must be user:password");
    return parse_string(v, value, c, msg, msglen);
}

/* One key, or two while the EventBridge connection's key rotates: the
 * tasks accept both until the connection has moved to the new one. */
static enum rz_err parse_event_keys(const struct config_var *v, const char *value,
                                    struct config *c, char *msg, size_t msglen)
{
    const char *p = value;

    while (*p) {
        size_t len = strcspn(p, ",");

        if (len == 0 || len > 4096)
            return config_fail(msg, msglen, v->name, "each key must be 1 to 4096 bytes");
        if (c->nevents_api_keys == CONFIG_MAX_EVENT_KEYS)
            return config_fail(msg, msglen, v->name,
                               "must hold one key, or two (comma-separated) while rotating");
        c->events_api_keys[c->nevents_api_keys] = strndup(p, len);
        if (!c->events_api_keys[c->nevents_api_keys])
            return RZ_ENOMEM;
        c->nevents_api_keys++;
        p += len;
        if (*p == ',' && *++p == '\0')
            return config_fail(msg, msglen, v->name, "must not end with a comma");
    }
    return RZ_OK;
}

/* One origin as a browser serializes it in Origin: scheme "://" host
 * [":" port], lowercase, no path, no trailing slash. A wildcard or "null"
 * is refused: the grant is always one exact origin. */
static int config_origin_ok(const char *s, size_t len)
{
    const char *host;
    size_t hostlen;

    if (len >= 8 && strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (len >= 7 && strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return 0;
    hostlen = len - (size_t)(host - s);
    if (hostlen == 0 || len > CONFIG_MAX_ORIGIN || host[0] == ':' || host[hostlen - 1] == ':')
        return 0;
    for (size_t i = 0; i < hostlen; i++) {
        if (!islower((unsigned char)host[i]) && !isdigit((unsigned char)host[i]) &&
            !strchr(".-:[]", host[i]))
            return 0;
    }
    return 1;
}

/* "https://app.example.com,http://127.0.0.1:3000"; empty: no origin. */
static enum rz_err parse_origins(const struct config_var *v, const char *value, struct config *c,
                                 char *msg, size_t msglen)
{
    const char *p = value;

    while (*p) {
        size_t len;

        p += strspn(p, " ");
        len = strcspn(p, ", ");
        if (!config_origin_ok(p, len))
            return config_fail(msg, msglen, v->name,
                               "each origin must be scheme://host[:port] in lowercase, e.g. "
                               "https://app.example.com (no path, no '*')");
        if (c->ncors_origins == CONFIG_MAX_CORS_ORIGINS)
            return config_fail(msg, msglen, v->name, "must list at most 16 origins");
        c->cors_origins[c->ncors_origins] = strndup(p, len);
        if (!c->cors_origins[c->ncors_origins])
            return RZ_ENOMEM;
        c->ncors_origins++;
        p += len;
        p += strspn(p, " ");
        if (*p == ',' && *++p == '\0')
            return config_fail(msg, msglen, v->name, "must not end with a comma");
    }
    return RZ_OK;
}

static enum rz_err parse_secret(const struct config_var *v, const char *value, struct config *c,
                                char *msg, size_t msglen)
{
    if (strlen(value) > 4096)
        return config_fail(msg, msglen, v->name, "must be at most 4096 bytes");
    return parse_string(v, value, c, msg, msglen);
}

/* Prometheus sends it on every scrape; as short as API_TOKENS allow. */
static enum rz_err parse_metrics_token(const struct config_var *v, const char *value,
                                       struct config *c, char *msg, size_t msglen)
{
    size_t len = strlen(value);

    if (len < 16 || len > 4096)
        return config_fail(msg, msglen, v->name, "must be 16 to 4096 bytes");
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return config_fail(msg, msglen, v->name, "must be printable ASCII without spaces");
    }
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_text(const struct config_var *v, const char *value, struct config *c,
                              char *msg, size_t msglen)
{
    if (strlen(value) > 256)
        return config_fail(msg, msglen, v->name, "must be at most 256 bytes");
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p < 0x20)
            return config_fail(msg, msglen, v->name, "must not hold control characters");
    }
    return parse_string(v, value, c, msg, msglen);
}

static enum rz_err parse_webhook_urls(const struct config_var *v, const char *value,
                                      struct config *c, char *msg, size_t msglen)
{
    enum rz_err err = webhooks_check_urls(value, msg, msglen);

    return err == RZ_OK ? parse_string(v, value, c, msg, msglen) : err;
}

static enum rz_err parse_webhook_secret(const struct config_var *v, const char *value,
                                        struct config *c, char *msg, size_t msglen)
{
    enum rz_err err = webhooks_check_secrets(value, msg, msglen);

    return err == RZ_OK ? parse_string(v, value, c, msg, msglen) : err;
}

static const struct config_var config_vars[] = {
    {"DEST_BUCKET", NULL, "destination bucket for variants and status records (required)",
     parse_bucket, FIELD(dest_bucket), 0, 0, 0},
    {"SRC_BUCKET", NULL, "source bucket (required); events for any other bucket are ignored",
     parse_bucket, FIELD(src_bucket), 0, 0, 0},
    {"SRC_PREFIX", "images/", "key prefix of uploads in the source bucket", parse_prefix,
     FIELD(src_prefix), 0, 0, 0},
    {"AWS_REGION", NULL, "region of the buckets, used in signatures (required)", parse_region,
     FIELD(region), 0, 0, 0},
    {"AWS_ACCESS_KEY_ID", NULL, "static credentials (else the ECS container endpoint)",
     parse_secret, FIELD(access_key), 0, 0, 1},
    {"AWS_SECRET_ACCESS_KEY", NULL, "static credentials, with AWS_ACCESS_KEY_ID", parse_secret,
     FIELD(secret_key), 0, 0, 1},
    {"AWS_SESSION_TOKEN", NULL, "session token of temporary static credentials", parse_secret,
     FIELD(session_token), 0, 0, 1},
    {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", NULL,
     "ECS task role: path on 169.254.170.2 (set by ECS)", parse_secret,
     FIELD(container_relative_uri), 0, 0, 0},
    {"AWS_CONTAINER_CREDENTIALS_FULL_URI", NULL,
     "container credentials endpoint URL (https, or http on loopback or the ECS/EKS agent)",
     parse_url, FIELD(container_full_uri), 0, 0, 0},
    {"AWS_CONTAINER_AUTHORIZATION_TOKEN", NULL, "Authorization header for the full URI",
     parse_secret, FIELD(container_auth_token), 0, 0, 1},
    {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", NULL, "file holding that token (EKS)",
     parse_string, FIELD(container_auth_token_file), 0, 0, 0},
    {"S3_ENDPOINT", NULL, "S3 endpoint URL (default https://s3.<region>.amazonaws.com)",
     parse_url, FIELD(s3_endpoint), 0, 0, 0},
    {"S3_PUBLIC_ENDPOINT", NULL, "endpoint clients reach; presigned URLs are signed for it",
     parse_url, FIELD(s3_public_endpoint), 0, 0, 0},
    {"S3_FORCE_PATH_STYLE", "false", "address buckets as /bucket/key instead of bucket.host",
     parse_bool, FIELD(force_path_style), 0, 0, 0},
    {"SSE", NULL, "server-side encryption of variants: AES256 or aws:kms", parse_sse, FIELD(sse),
     0, 0, 0},
    {"SSE_KMS_KEY_ID", NULL, "KMS key for SSE=aws:kms (default: the bucket's aws/s3 key)",
     parse_string, FIELD(sse_kms_key_id), 0, 0, 0},
    {"S3_TIMEOUT", "30", "seconds one S3 request attempt may take before it is retried",
     parse_long, FIELD(s3_timeout), 1, 600, 0},
    {"LISTEN_ADDR", "0.0.0.0", "IPv4 address to listen on", parse_string, FIELD(listen_addr), 0,
     0, 0},
    {"PORT", "8080", "TCP port to listen on", parse_long, FIELD(port), 1, 65535, 0},
    {"HTTP_THREADS", "4", "HTTP worker threads", parse_long, FIELD(http_threads), 1, 64, 0},
    {"SHUTDOWN_GRACE", "25", "seconds to finish in-flight work after SIGTERM (ECS kills at 30)",
     parse_long, FIELD(shutdown_grace), 0, 3600, 0},
    {"HTTP_MAX_CONNECTIONS", "4096",
     "open client connections at most (lowered to fit the fd "
     "limit); more are closed at accept",
     parse_long, FIELD(http_max_connections), 16, 1000000, 0},
    {"HTTP_BODY_BUDGET", "33554432",
     "bytes of request bodies buffered at once over all "
     "requests; past it 503 + Retry-After",
     parse_u64, FIELD(http_body_budget), 262144, 17179869184L, 0},
    {"HTTP_REQUEST_TIMEOUT", "30",
     "seconds a request's line, headers and body may take to "
     "arrive, however steadily they trickle",
     parse_long, FIELD(http_request_timeout), 1, 3600, 0},
    {"HTTP_CONNECTION_MEMORY", "32768",
     "bytes per connection for the request line, headers "
     "and read buffer (bigger headers get 431)",
     parse_long, FIELD(http_connection_memory), 8192, 1048576, 0},
    {"METRICS_TOKEN", NULL, "if set, /metrics needs Authorization: Bearer <this> (16+ chars)",
     parse_metrics_token, FIELD(metrics_token), 0, 0, 1},
    {"CORS_ALLOWED_ORIGINS", NULL,
     "comma-separated browser origins that may call /v1/uploads "
     "and /v1/images (CORS), e.g. https://app.example.com; empty: none",
     parse_origins, 0, 0, 0, 0},
    {"API_TOKENS", NULL,
     "comma-separated name:token (or bare tokens) of callers of "
     "/v1/uploads and /v1/images; each sees only its own images (this, ADMIN_TOKENS or "
     "JWT_JWKS_URL is required)",
     parse_tokens, 0, 0, 0, 1},
    {"ADMIN_TOKENS", NULL,
     "name:token entries like API_TOKENS, of callers that see and act on "
     "every image",
     parse_tokens, 0, 0, 0, 1},
    {"JWT_JWKS_URL", NULL,
     "JWKS of the identity provider whose JWTs (RS256, ES256) are "
     "accepted: https://, http:// on loopback, or file:///path",
     parse_jwks_url, FIELD(jwt_jwks_url), 0, 0, 0},
    {"JWT_ISSUER", NULL, "the iss JWTs must carry (required with JWT_JWKS_URL)", parse_text,
     FIELD(jwt_issuer), 0, 0, 0},
    {"JWT_AUDIENCE", NULL, "a value the aud of JWTs must hold (required with JWT_JWKS_URL)",
     parse_text, FIELD(jwt_audience), 0, 0, 0},
    {"JWT_ADMIN_SCOPE", "resizer:admin",
     "scope (in scope or scp) that makes a JWT caller an "
     "admin",
     parse_text, FIELD(jwt_admin_scope), 0, 0, 0},
    {"JWT_JWKS_REFRESH_MIN", "30", "seconds between JWKS fetches that unknown kids may cause",
     parse_long, FIELD(jwt_jwks_refresh_min), 1, 86400, 0},
    {"EVENTS_API_KEY_HEADER", "x-api-key", "header of the EventBridge connection's API key",
     parse_header_name, 0, 0, 0, 0},
    {"EVENTS_API_KEY", NULL,
     "value of that header, or two comma-separated while it rotates "
     "(this or EVENTS_BASIC_AUTH is required)",
     parse_event_keys, 0, 0, 0, 1},
    {"EVENTS_BASIC_AUTH", NULL, "user:password for Basic auth on /v1/events", parse_basic_auth,
     FIELD(events_basic_auth), 0, 0, 1},
    {"VARIANTS", "desktop:1920,tablet:1024,phone:640",
     "name:WIDTH (fit inside that width) or name:WIDTHxHEIGHT[:inside|cover] (cover: exactly "
     "the box, attention crop), comma-separated",
     parse_variants, 0, 0, 0, 0},
    {"OUTPUT_FORMAT", NULL, "one output format (older name of OUTPUT_FORMATS)", parse_outputs, 0,
     0, 0, 0},
    {"OUTPUT_FORMATS", NULL,
     "formats of every variant: same, jpeg, webp, avif, png, "
     "comma-separated [default: same]",
     parse_outputs, 0, 0, 0, 0},
    {"JPEG_QUALITY", "85", "JPEG quality", parse_long, FIELD(jpeg_quality), 1, 100, 0},
    {"WEBP_QUALITY", "85", "WebP quality", parse_long, FIELD(webp_quality), 1, 100, 0},
    {"AVIF_QUALITY", "64", "AVIF quality (libheif's scale)", parse_long, FIELD(avif_quality), 1,
     100, 0},
    {"AVIF_EFFORT", "0", "AVIF encoder effort, 0 (fast) to 9 (small)", parse_long,
     FIELD(avif_effort), 0, 9, 0},
    {"BLURHASH_COMPONENTS", "4x3", "BlurHash components across x down, 1 to 9 each",
     parse_blurhash, 0, 0, 0, 0},
    {"WATERMARK_TEXT", NULL, "text drawn bottom-right on every variant", parse_text,
     FIELD(watermark_text), 0, 0, 0},
    {"WATERMARK_IMAGE", NULL, "PNG file drawn bottom-right on every variant", parse_string,
     FIELD(watermark_image), 0, 0, 0},
    {"MAX_UPLOAD_BYTES", "52428800", "largest upload accepted and downloaded, in bytes",
     parse_u64, FIELD(max_upload_bytes), 1, 5368709120L, 0},
    {"MAX_PIXELS", "100000000", "largest width*height*frames decoded (bomb guard)", parse_u64,
     FIELD(max_pixels), 1, 1000000000L, 0},
    {"WORKERS", "0", "image worker threads (0: one per CPU)", parse_long, FIELD(workers), 0, 256,
     0},
    {"QUEUE_SIZE", "1024", "jobs waiting for a worker before events get 429", parse_long,
     FIELD(queue_size), 1, 1000000, 0},
    {"PRESIGN_PUT_EXPIRES", "900", "lifetime of upload URLs, seconds", parse_long,
     FIELD(presign_put_expires), 1, 604800, 0},
    {"PRESIGN_GET_EXPIRES", "3600", "lifetime of variant download URLs, seconds", parse_long,
     FIELD(presign_get_expires), 1, 604800, 0},
    {"RECONCILE_INTERVAL", NULL,
     "seconds between sweeps for unprocessed uploads (0: off; "
     "unset: 300 with STATE_STORE=memory, 0 with dynamodb)",
     parse_long, FIELD(reconcile_interval), 0, 604800, 0},
    {"RECONCILE_LIST_RATE", "5", "LIST requests a second the sweep may make", parse_long,
     FIELD(reconcile_list_rate), 1, 1000, 0},
    {"STATE_STORE", "memory",
     "where status records live: memory (one replica) or dynamodb "
     "(any number of replicas)",
     parse_store, 0, 0, 0, 0},
    {"DYNAMODB_TABLE", NULL,
     "the table for STATE_STORE=dynamodb (resizer --create-table "
     "makes it)",
     parse_table, FIELD(dynamodb_table), 0, 0, 0},
    {"DYNAMODB_ENDPOINT", NULL,
     "DynamoDB endpoint URL (default "
     "https://dynamodb.<region>.amazonaws.com)",
     parse_url, FIELD(dynamodb_endpoint), 0, 0, 0},
    {"LEASE_SECONDS", "60",
     "a job's claim lapses this long after its replica stops renewing "
     "it; then another replica takes it",
     parse_long, FIELD(lease_seconds), 2, 3600, 0},
    {"JOB_ATTEMPTS", "3",
     "runs of a job whose failure is transient (S3 down, throttled) "
     "before it ends failed",
     parse_long, FIELD(job_attempts), 1, 20, 0},
    {"INDEX_MAX_ENTRIES", "100000", "status records kept in memory", parse_long,
     FIELD(index_max_entries), 100, 100000000, 0},
    {"LOG_LEVEL", "info", "debug, info, warn or error", parse_log_level, 0, 0, 0, 0},
    {"WEBHOOK_URLS", NULL,
     "comma-separated endpoints notified when an image is done or "
     "failed (https, or http on loopback)",
     parse_webhook_urls, FIELD(webhook_urls), 0, 0, 0},
    {"WEBHOOK_SECRET", NULL,
     "whsec_<base64> signing secret, or two (space- or "
     "comma-separated) while rotating; required with WEBHOOK_URLS",
     parse_webhook_secret, FIELD(webhook_secret), 0, 0, 1},
    {"WEBHOOK_TIMEOUT", "5", "seconds one webhook delivery attempt may take", parse_long,
     FIELD(webhook_timeout), 1, 60, 0},
    {"WEBHOOK_QUEUE_SIZE", "10000",
     "webhook deliveries held (when full the oldest is "
     "dropped)",
     parse_long, FIELD(webhook_queue_size), 1, 1000000, 0},
    {"WEBHOOK_RETRY_BASE_MS", "5000",
     "unit of the retry schedule: waits of 1, 60, 360, "
     "1440, 3600, 7200, 7200 units (5 s ... 10 h)",
     parse_long, FIELD(webhook_retry_base_ms), 1, 3600000, 0},
    {"WEBHOOK_MAX_ATTEMPTS", "8", "attempts per delivery before it is given up", parse_long,
     FIELD(webhook_max_attempts), 1, WEBHOOKS_MAX_ATTEMPTS, 0},
};

#define CONFIG_NVARS (sizeof(config_vars) / sizeof(config_vars[0]))

static const char *config_env_get(const char *const *env, const char *name)
{
    size_t len = strlen(name);

    for (; env && *env; env++) {
        if (strncmp(*env, name, len) == 0 && (*env)[len] == '=')
            return *env + len + 1;
    }
    return NULL;
}

static enum rz_err config_read_watermark(struct config *c, char *msg, size_t msglen)
{
    FILE *f = fopen(c->watermark_image, "rb");
    struct buf b;
    char chunk[8192];
    size_t n;
    enum rz_err err = RZ_OK;

    if (!f)
        return config_fail(msg, msglen, "WATERMARK_IMAGE", "cannot be opened");
    buf_init(&b, CONFIG_MAX_WATERMARK);
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0)
            break;
        err = buf_append(&b, chunk, n);
        if (err != RZ_OK)
            break;
    }
    fclose(f);
    if (err == RZ_OK && image_sniff(b.data, b.len) != IMAGE_FORMAT_PNG)
        err = config_fail(msg, msglen, "WATERMARK_IMAGE", "must be a PNG file");
    else if (err == RZ_ETOOBIG)
        err = config_fail(msg, msglen, "WATERMARK_IMAGE", "must be at most 4 MiB");
    if (err != RZ_OK) {
        buf_cleanup(&b);
        return err;
    }
    c->watermark_png_len = b.len;
    c->watermark_png = buf_steal(&b);
    return RZ_OK;
}

static enum rz_err config_default_endpoint(struct config *c)
{
    struct buf b;
    enum rz_err err;

    buf_init(&b, 512);
    err = buf_printf(&b, "https://s3.%s.amazonaws.com", c->region);
    if (err != RZ_OK) {
        buf_cleanup(&b);
        return err;
    }
    c->s3_endpoint = buf_steal(&b);
    return RZ_OK;
}

/* Rules that involve more than one variable. */
static enum rz_err config_check(struct config *c, char *msg, size_t msglen)
{
    char why[200];

    if (!c->dest_bucket)
        return config_fail(msg, msglen, "DEST_BUCKET", "is required");
    if (!c->region)
        return config_fail(msg, msglen, "AWS_REGION", "is required");
    /* /v1/events is always served, and variant and status keys do not
     * name the bucket: without this an event for a foreign bucket could
     * overwrite our variants and status records. */
    if (!c->src_bucket)
        return config_fail(msg, msglen, "SRC_BUCKET",
                           "is required: /v1/events takes events only for this bucket");
    /* Variants written into the source bucket would come back as events:
     * one bucket for both is refused rather than guarded key by key. */
    if (c->src_bucket && strcmp(c->src_bucket, c->dest_bucket) == 0)
        return config_fail(msg, msglen, "SRC_BUCKET", "must differ from DEST_BUCKET");
    if (!c->napi_tokens && !c->nadmin_tokens && !c->jwt_jwks_url)
        return config_fail(msg, msglen, "API_TOKENS",
                           "is required (or ADMIN_TOKENS, or JWT_JWKS_URL)");
    if (c->jwt_jwks_url && !c->jwt_issuer)
        return config_fail(msg, msglen, "JWT_ISSUER", "is required with JWT_JWKS_URL");
    if (c->jwt_jwks_url && !c->jwt_audience)
        return config_fail(msg, msglen, "JWT_AUDIENCE", "is required with JWT_JWKS_URL");
    if (!c->jwt_jwks_url && (c->jwt_issuer || c->jwt_audience))
        return config_fail(msg, msglen, c->jwt_issuer ? "JWT_ISSUER" : "JWT_AUDIENCE",
                           "needs JWT_JWKS_URL");
    if (!c->nevents_api_keys && !c->events_basic_auth)
        return config_fail(msg, msglen, "EVENTS_API_KEY",
                           "or EVENTS_BASIC_AUTH is required to authenticate events");
    if (!c->access_key != !c->secret_key)
        return config_fail(msg, msglen, "AWS_SECRET_ACCESS_KEY",
                           "must be set together with AWS_ACCESS_KEY_ID");
    if (c->session_token && !c->access_key)
        return config_fail(msg, msglen, "AWS_SESSION_TOKEN",
                           "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    if (!c->access_key && !c->container_relative_uri && !c->container_full_uri)
        return config_fail(msg, msglen, "AWS_ACCESS_KEY_ID",
                           "or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI is required");
    if (c->sse_kms_key_id && c->sse != CONFIG_SSE_KMS)
        return config_fail(msg, msglen, "SSE_KMS_KEY_ID", "needs SSE=aws:kms");
    if (!c->noutputs)
        c->outputs[c->noutputs++] = IMAGE_OUTPUT_SAME;
    if (variants_check_prefix(c->variants, c->nvariants, c->src_prefix, why, sizeof(why)) !=
        RZ_OK)
        return config_fail(msg, msglen, "VARIANTS", why);
    if (c->watermark_text && c->watermark_image)
        return config_fail(msg, msglen, "WATERMARK_IMAGE",
                           "cannot be used together with WATERMARK_TEXT");
    if (c->webhook_urls && !c->webhook_secret)
        return config_fail(msg, msglen, "WEBHOOK_SECRET",
                           "is required with WEBHOOK_URLS (deliveries are always signed)");
    if (c->webhook_secret && !c->webhook_urls)
        return config_fail(msg, msglen, "WEBHOOK_URLS", "is required with WEBHOOK_SECRET");
    if (c->state_store == CONFIG_STORE_DYNAMODB && !c->dynamodb_table)
        return config_fail(msg, msglen, "DYNAMODB_TABLE",
                           "is required with STATE_STORE=dynamodb");
    /* With a shared store every claim is durable and leases recover what a
     * dead replica held: the sweep is only a repair pass, run on demand. */
    if (c->reconcile_interval < 0)
        c->reconcile_interval = c->state_store == CONFIG_STORE_DYNAMODB ? 0 : 300;
    if (c->watermark_image)
        return config_read_watermark(c, msg, msglen);
    return RZ_OK;
}

/* Every variable, each on its own. */
static enum rz_err config_parse_all(const char *const *env, struct config *out, char *msg,
                                    size_t msglen)
{
    enum rz_err err = RZ_OK;

    memset(out, 0, sizeof(*out));
    out->reconcile_interval = -1; /* its default depends on STATE_STORE */
    msg[0] = '\0';
    for (size_t i = 0; i < CONFIG_NVARS && err == RZ_OK; i++) {
        const struct config_var *v = &config_vars[i];
        const char *value = config_env_get(env, v->name);

        if (!value)
            value = v->def;
        if (value)
            err = v->parse(v, value, out, msg, msglen);
    }
    return err;
}

/* What --create-table needs: the table, a region, credentials. */
static enum rz_err config_check_table(struct config *c, char *msg, size_t msglen)
{
    if (c->state_store != CONFIG_STORE_DYNAMODB)
        return config_fail(msg, msglen, "STATE_STORE", "must be dynamodb to create a table");
    if (!c->dynamodb_table)
        return config_fail(msg, msglen, "DYNAMODB_TABLE", "is required");
    if (!c->region)
        return config_fail(msg, msglen, "AWS_REGION", "is required");
    if (!c->access_key != !c->secret_key)
        return config_fail(msg, msglen, "AWS_SECRET_ACCESS_KEY",
                           "must be set together with AWS_ACCESS_KEY_ID");
    if (!c->access_key && !c->container_relative_uri && !c->container_full_uri)
        return config_fail(msg, msglen, "AWS_ACCESS_KEY_ID",
                           "or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI is required");
    return RZ_OK;
}

enum rz_err config_load_for_table(const char *const *env, struct config *out, char *msg,
                                  size_t msglen)
{
    enum rz_err err = config_parse_all(env, out, msg, msglen);

    if (err == RZ_OK)
        err = config_check_table(out, msg, msglen);
    if (err == RZ_ENOMEM)
        snprintf(msg, msglen, "out of memory");
    if (err != RZ_OK)
        config_cleanup(out);
    return err;
}

enum rz_err config_load(const char *const *env, struct config *out, char *msg, size_t msglen)
{
    enum rz_err err = config_parse_all(env, out, msg, msglen);

    if (err == RZ_OK)
        err = config_check(out, msg, msglen);
    if (err == RZ_OK && !out->s3_endpoint)
        err = config_default_endpoint(out);
    if (err == RZ_ENOMEM)
        snprintf(msg, msglen, "out of memory");
    if (err != RZ_OK)
        config_cleanup(out);
    return err;
}

static void config_free_secret(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void config_cleanup(struct config *c)
{
    char **plain[] = {
        &c->dest_bucket,
        &c->src_bucket,
        &c->src_prefix,
        &c->region,
        &c->container_relative_uri,
        &c->container_full_uri,
        &c->container_auth_token_file,
        &c->s3_endpoint,
        &c->s3_public_endpoint,
        &c->sse_kms_key_id,
        &c->listen_addr,
        &c->events_api_key_header,
        &c->watermark_text,
        &c->watermark_image,
        &c->jwt_jwks_url,
        &c->jwt_issuer,
        &c->jwt_audience,
        &c->jwt_admin_scope,
        &c->dynamodb_table,
        &c->dynamodb_endpoint,
    };
    char **secret[] = {
        &c->access_key,           &c->secret_key,        &c->session_token,
        &c->container_auth_token, &c->events_basic_auth, &c->metrics_token,
        &c->webhook_secret,       &c->webhook_urls, /* a receiver's query may carry its token */
    };

    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        free(*plain[i]);
        *plain[i] = NULL;
    }
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        config_free_secret(secret[i]);
    for (size_t i = 0; i < c->napi_tokens; i++)
        config_free_secret(&c->api_tokens[i]);
    c->napi_tokens = 0;
    for (size_t i = 0; i < c->nadmin_tokens; i++)
        config_free_secret(&c->admin_tokens[i]);
    c->nadmin_tokens = 0;
    for (size_t i = 0; i < c->nevents_api_keys; i++)
        config_free_secret(&c->events_api_keys[i]);
    c->nevents_api_keys = 0;
    for (size_t i = 0; i < c->ncors_origins; i++) {
        free(c->cors_origins[i]);
        c->cors_origins[i] = NULL;
    }
    c->ncors_origins = 0;
    free(c->watermark_png);
    c->watermark_png = NULL;
    c->watermark_png_len = 0;
}

void config_image_opts(const struct config *c, struct image_opts *o)
{
    *o = (struct image_opts){
        .variants = c->variants,
        .nvariants = c->nvariants,
        .noutputs = c->noutputs,
        .jpeg_quality = (int)c->jpeg_quality,
        .webp_quality = (int)c->webp_quality,
        .avif_quality = (int)c->avif_quality,
        .avif_effort = (int)c->avif_effort,
        .blurhash_x = c->blurhash_x,
        .blurhash_y = c->blurhash_y,
        .max_pixels = c->max_pixels,
        .watermark_text = c->watermark_text,
        .watermark_png = c->watermark_png,
        .watermark_png_len = c->watermark_png_len,
    };
    memcpy(o->outputs, c->outputs, sizeof(o->outputs));
}

void config_print_help(FILE *f)
{
    fprintf(f,
            "Environment (every value is checked at start; a bad one exits with status 2):\n");
    for (size_t i = 0; i < CONFIG_NVARS; i++) {
        const struct config_var *v = &config_vars[i];

        fprintf(f, "  %-40s %s", v->name, v->help);
        if (v->def)
            fprintf(f, " [default: %s]", v->def);
        fputc('\n', f);
    }
}
