/* creds.h - AWS credentials: static from the environment, or the ECS
 * container credentials endpoint, cached and refreshed before expiry.
 *
 * Thread-safe: workers and HTTP threads call creds_get concurrently.
 * Secrets are wiped (OPENSSL_cleanse) when released and never logged. */
#ifndef RESIZER_CREDS_H
#define RESIZER_CREDS_H

#include <time.h>

#include "err.h"

struct creds_provider;

/* A snapshot of credentials, owned by the caller; release with
 * creds_snapshot_cleanup(). expiration is 0 for long-term credentials. */
struct creds_snapshot {
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL when none */
    time_t expiration;
};

/* Where the credentials come from; strings borrowed for the call only. */
struct creds_source {
    /* Static: used when access_key is set. */
    const char *access_key;
    const char *secret_key;
    const char *session_token;
    /* Container endpoint: used when static keys are absent. relative_uri is
     * appended to http://169.254.170.2; full_uri must be https, or http to a
     * loopback host or the ECS/EKS agent (169.254.170.2, 169.254.170.23,
     * [fd00:ec2::23]); auth_token goes in the Authorization header. */
    const char *relative_uri;
    const char *full_uri;
    const char *auth_token;
    const char *auth_token_file; /* AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE */
};

/* Builds a provider. RZ_EINVAL (msg says why) when neither static keys nor
 * a usable endpoint is given, or full_uri is not allowed. Fetches nothing
 * yet. The caller frees with creds_provider_free(). */
enum rz_err creds_provider_new(const struct creds_source *src, struct creds_provider **out,
                               char *msg, size_t msglen);

/* Frees the provider and wipes its secrets; NULL is a no-op. */
void creds_provider_free(struct creds_provider *p);

/* Copies the current credentials into *out, fetching from the endpoint
 * when there are none or they expire within the refresh margin (5 minutes)
 * of now. RZ_EUPSTREAM when the endpoint fails and nothing valid is cached. */
enum rz_err creds_get(struct creds_provider *p, time_t now, struct creds_snapshot *out);

/* Wipes and frees the strings in *s; safe on a zeroed struct. */
void creds_snapshot_cleanup(struct creds_snapshot *s);

#endif
