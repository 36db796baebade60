/* fuzz_config.c - config_load on an environment made of the input: lines
 * (split on NUL or newline) become "NAME=VALUE" strings, then
 * config_cleanup. A bad value must give one clear line, never a crash. */
#include <ctype.h>
#include <string.h>

#include "server/config.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ENV 256

/* WATERMARK_IMAGE is a path config_load opens: a fuzzed one could name a
 * FIFO or /dev/stdin and block, which says nothing about the parser. */
static int env_allowed(const char *s)
{
    return strncmp(s, "WATERMARK_IMAGE=", strlen("WATERMARK_IMAGE=")) != 0;
}

static size_t split_env(char *text, size_t size, const char **env)
{
    size_t n = 0;
    char *p = text;

    for (size_t i = 0; i < size; i++)
        if (text[i] == '\n')
            text[i] = '\0';
    while (p < text + size && n < MAX_ENV) {
        if (env_allowed(p))
            env[n++] = p;
        p += strlen(p) + 1;
    }
    env[n] = NULL;
    return n;
}

/* "NAME: what is wrong", NAME being a variable, in printable ASCII. */
static void check_msg(const char *msg)
{
    const char *p = msg;

    if (strcmp(msg, "out of memory") == 0)
        return;
    while (isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_')
        p++;
    if (!(p > msg && p[0] == ':'))
        fprintf(stderr, "config_load said: %s\n", msg);
    FUZZ_CHECK(p > msg && p[0] == ':' && p[1] == ' ' && p[2]);
    for (p = msg; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p <= 0x7e);
}

/* "name:token" or a bare token: the secret part is never short. */
static void check_tokens(char *const *tokens, size_t n)
{
    FUZZ_CHECK(n <= CONFIG_MAX_TOKENS);
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(tokens[i], ':');

        FUZZ_CHECK(strlen(colon ? colon + 1 : tokens[i]) >= 16);
    }
}

/* What the rest of the service relies on after a successful load. A caller
 * can be known by an API token, an admin token or a JWT: any one will do. */
static void check_config(const struct config *c)
{
    FUZZ_CHECK(c->dest_bucket && c->region && c->s3_endpoint && c->src_prefix);
    FUZZ_CHECK(!c->src_bucket || strcmp(c->src_bucket, c->dest_bucket) != 0);
    FUZZ_CHECK(c->napi_tokens + c->nadmin_tokens >= 1 || c->jwt_jwks_url);
    FUZZ_CHECK(!c->jwt_jwks_url || (c->jwt_issuer && c->jwt_audience));
    check_tokens(c->api_tokens, c->napi_tokens);
    check_tokens(c->admin_tokens, c->nadmin_tokens);
    FUZZ_CHECK(c->nevents_api_keys || c->events_basic_auth);
    FUZZ_CHECK(c->access_key || c->container_relative_uri || c->container_full_uri);
    FUZZ_CHECK(c->nvariants >= 1 && c->nvariants <= IMAGE_MAX_VARIANTS);
    for (size_t i = 0; i < c->nvariants; i++) {
        FUZZ_CHECK(c->variants[i].width > 0);
        FUZZ_CHECK(memchr(c->variants[i].name, '\0', IMAGE_VARIANT_NAME_MAX));
    }
    FUZZ_CHECK(c->port >= 1 && c->port <= 65535);
    FUZZ_CHECK(c->jpeg_quality >= 1 && c->jpeg_quality <= 100);
    FUZZ_CHECK(c->max_pixels >= 1 && c->max_upload_bytes >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *env[MAX_ENV + 1];
    char *text = malloc(size + 1);
    struct config c;
    char msg[256];
    enum rz_err err;

    FUZZ_CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    split_env(text, size, env);
    err = config_load(env, &c, msg, sizeof(msg));
    if (err == RZ_OK)
        check_config(&c);
    else
        check_msg(msg);
    config_cleanup(&c);
    free(text);
    return 0;
}
