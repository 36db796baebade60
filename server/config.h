/* config.h - the service's configuration, read once from the environment.
 *
 * Every variable is validated at start; a bad value stops the service with
 * one line naming the variable. After config_load the struct is read-only
 * and passed around as const. */
#ifndef RESIZER_CONFIG_H
#define RESIZER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "image.h"
#include "log.h"

#define CONFIG_MAX_TOKENS 16
#define CONFIG_MAX_EVENT_KEYS 2 /* the current key and the next, while it rotates */
#define CONFIG_MAX_CORS_ORIGINS 16
#define CONFIG_MAX_ORIGIN 256

enum config_sse {
    CONFIG_SSE_NONE = 0,
    CONFIG_SSE_AES256,
    CONFIG_SSE_KMS,
};

enum config_store {
    CONFIG_STORE_MEMORY = 0,
    CONFIG_STORE_DYNAMODB,
};

struct config {
    /* Buckets and keys. */
    char *dest_bucket;
    char *src_bucket; /* required: events for other buckets are ignored */
    char *src_prefix;

    /* AWS and S3. */
    char *region;
    char *access_key; /* secret-bearing fields are wiped on cleanup */
    char *secret_key;
    char *session_token;
    char *container_relative_uri;
    char *container_full_uri;
    char *container_auth_token;
    char *container_auth_token_file;
    char *s3_endpoint;        /* always set: the default is derived from region */
    char *s3_public_endpoint; /* NULL: presign for s3_endpoint */
    int force_path_style;
    enum config_sse sse;
    char *sse_kms_key_id;
    long s3_timeout; /* seconds per S3 request attempt */

    /* HTTP. */
    char *listen_addr;
    long port;
    long http_threads;
    long shutdown_grace;                         /* seconds */
    char *cors_origins[CONFIG_MAX_CORS_ORIGINS]; /* browser origins granted CORS, exact */
    size_t ncors_origins;

    /* Limits against hostile clients (server/http_guard.c). */
    long http_max_connections;   /* clamped to what the fd limit allows */
    uint64_t http_body_budget;   /* bytes of request bodies buffered at once, all requests */
    long http_request_timeout;   /* seconds for one request's headers and body */
    long http_connection_memory; /* bytes per connection: request line, headers, read buffer */
    char *metrics_token;         /* NULL: /metrics is open */

    /* Client and event auth. */
    char *api_tokens[CONFIG_MAX_TOKENS]; /* "name:token" or a bare token */
    size_t napi_tokens;
    char *admin_tokens[CONFIG_MAX_TOKENS]; /* same form; these callers see every image */
    size_t nadmin_tokens;
    char *jwt_jwks_url; /* NULL: no JWTs */
    char *jwt_issuer;
    char *jwt_audience;
    char *jwt_admin_scope;
    long jwt_jwks_refresh_min;   /* seconds between fetches an unknown kid may cause */
    char *events_api_key_header; /* lowercase */
    char *events_api_keys[CONFIG_MAX_EVENT_KEYS]; /* any of them is accepted */
    size_t nevents_api_keys;
    char *events_basic_auth; /* "user:pass" */

    /* Images. */
    struct image_variant_spec variants[IMAGE_MAX_VARIANTS];
    size_t nvariants;
    enum image_output outputs[IMAGE_MAX_OUTPUTS]; /* OUTPUT_FORMATS; at least one */
    size_t noutputs;
    long jpeg_quality;
    long webp_quality;
    long avif_quality;
    long avif_effort;
    int blurhash_x; /* BLURHASH_COMPONENTS */
    int blurhash_y;
    char *watermark_text;
    char *watermark_image; /* path */
    void *watermark_png;   /* the file's bytes, read at load */
    size_t watermark_png_len;
    uint64_t max_upload_bytes;
    uint64_t max_pixels;

    /* Work. */
    long workers;
    long queue_size;
    long presign_put_expires;
    long presign_get_expires;
    long reconcile_interval;  /* seconds; 0 = off */
    long reconcile_list_rate; /* LIST requests a second the sweep may make */

    /* Shared state. */
    enum config_store state_store;
    char *dynamodb_table;    /* required with STATE_STORE=dynamodb */
    char *dynamodb_endpoint; /* NULL: https://dynamodb.<region>.amazonaws.com */
    long lease_seconds;      /* a claim lapses this long after its last renewal */
    long job_attempts;       /* runs of a job that fails transiently */
    long index_max_entries;
    enum log_level log_level;

    /* Completion webhooks (off while webhook_urls is NULL). */
    char *webhook_urls;         /* checked by webhooks_check_urls */
    char *webhook_secret;       /* whsec_...; wiped on cleanup */
    long webhook_timeout;       /* seconds per delivery attempt */
    long webhook_queue_size;    /* deliveries held for sending and retrying */
    long webhook_retry_base_ms; /* unit of the retry schedule */
    long webhook_max_attempts;
};

/* Reads the configuration from env, a NULL-terminated array of "NAME=VALUE"
 * strings (environ in production), into *out. On RZ_EINVAL, msg holds one
 * line such as "PORT: must be an integer from 1 to 65535" and *out holds
 * nothing to free. Secrets never appear in msg. */
enum rz_err config_load(const char *const *env, struct config *out, char *msg, size_t msglen);

/* The same, checking only what `resizer --create-table` needs
 * (STATE_STORE=dynamodb, DYNAMODB_TABLE, AWS_REGION, credentials). */
enum rz_err config_load_for_table(const char *const *env, struct config *out, char *msg,
                                  size_t msglen);

/* Frees everything in c, wiping secrets; safe on a zeroed struct. */
void config_cleanup(struct config *c);

/* The image options the workers use, from c (borrowed: opts points into
 * c, which must outlive it). */
void config_image_opts(const struct config *c, struct image_opts *opts);

/* Writes the --help text: every variable, its default and meaning. */
void config_print_help(FILE *f);

#endif
