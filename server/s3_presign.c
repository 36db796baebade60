/* s3_presign.c - presigned URLs and POST forms that let clients talk to S3
 * directly, signed for the public endpoint with the service's credentials.
 *
 * Time is a parameter (now), so the golden-file tests get exact bytes. A
 * URL or form never outlives the credentials that signed it. */
#include "s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base64.h"
#include "buf.h"
#include "timefmt.h"

static enum rz_err s3_field_add(struct s3_presigned *p, const char *name, const char *value)
{
    struct s3_field *f;

    if (p->nfields == S3_MAX_FIELDS)
        return RZ_EINTERNAL;
    f = &p->fields[p->nfields];
    f->name = strdup(name);
    f->value = strdup(value);
    if (!f->name || !f->value) {
        free(f->name);
        free(f->value);
        return RZ_ENOMEM;
    }
    p->nfields++;
    return RZ_OK;
}

/* A URL must not outlive the credentials that signed it: S3 refuses it
 * from then on, and a client would see a confusing 403. */
static enum rz_err s3_cut_expiry(const struct creds_snapshot *creds, time_t now, long *expires)
{
    if (creds->expiration == 0)
        return RZ_OK;
    if (creds->expiration <= now + 1)
        return RZ_EUPSTREAM;
    if ((time_t)*expires > creds->expiration - now)
        *expires = (long)(creds->expiration - now);
    return RZ_OK;
}

static enum rz_err s3_presign(struct s3 *s3, const char *method, const char *bucket,
                              const char *key, const struct sigv4_pair *headers, size_t nheaders,
                              long expires, time_t now, struct s3_presigned *out)
{
    struct creds_snapshot creds = {0};
    struct sigv4_creds sc;
    struct sigv4_request req;
    struct buf host, path;
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    buf_init(&host, 512);
    buf_init(&path, S3_MAX_KEY + 256);
    err = creds_get(awshttp_creds(s3->transport), now, &creds);
    if (err == RZ_OK)
        err = s3_cut_expiry(&creds, now, &expires);
    if (err == RZ_OK)
        err = s3_addr_resolve(&s3->public_addr, bucket, key, &host, &path);
    if (err == RZ_OK) {
        req = (struct sigv4_request){
            .method = method,
            .scheme = s3->public_addr.ep.scheme,
            .host = host.data,
            .path = path.data,
            .headers = headers,
            .nheaders = nheaders,
            .payload_hash = "UNSIGNED-PAYLOAD",
            .region = s3->region,
            .service = "s3",
        };
        sc = (struct sigv4_creds){creds.access_key, creds.secret_key, creds.session_token};
        err = sigv4_presign_url(&req, &sc, now, expires, &out->url);
    }
    for (size_t i = 0; i < nheaders && err == RZ_OK; i++)
        err = s3_field_add(out, headers[i].name, headers[i].value);
    out->expires_at = now + expires;
    creds_snapshot_cleanup(&creds);
    buf_cleanup(&host);
    buf_cleanup(&path);
    if (err != RZ_OK)
        s3_presigned_cleanup(out);
    return err;
}

enum rz_err s3_presign_put(struct s3 *s3, const char *bucket, const char *key,
                           const char *content_type, long expires, time_t now,
                           struct s3_presigned *out)
{
    struct sigv4_pair headers[3];
    size_t n = 0;

    /* Signed, so S3 refuses the upload unless it carries exactly this type. */
    headers[n++] = (struct sigv4_pair){"Content-Type", content_type};
    n += s3_sse_headers(s3, headers + n);
    return s3_presign(s3, "PUT", bucket, key, headers, n, expires, now, out);
}

enum rz_err s3_presign_get(struct s3 *s3, const char *bucket, const char *key, long expires,
                           time_t now, struct s3_presigned *out)
{
    return s3_presign(s3, "GET", bucket, key, NULL, 0, expires, now, out);
}

/* The policy as S3 wants it in the form: standard base64. */
static char *s3_presign_base64(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(base64_encoded_len(len, BASE64_STD) + 1);

    if (out)
        base64_encode((const unsigned char *)s, len, BASE64_STD, out);
    return out;
}

/* The policy: every condition S3 must check, the key and Content-Type
 * exact, so a form cannot be reused for another object or type. */
static char *s3_post_policy(const struct s3_presigned *fields, const char *bucket,
                            uint64_t max_bytes, time_t expires_at)
{
    char expiration[TIMEFMT_MAX];
    json_t *conds = json_array();
    json_t *policy;
    char *text;

    timefmt_iso(expires_at, expiration);
    json_array_append_new(conds, json_pack("{s:s}", "bucket", bucket));
    for (size_t i = 0; i < fields->nfields; i++)
        json_array_append_new(conds, json_pack("{s:s}", fields->fields[i].name,
                                               fields->fields[i].value));
    json_array_append_new(conds, json_pack("[s,i,I]", "content-length-range", 1,
                                           (json_int_t)max_bytes));
    policy = json_pack("{s:s,s:o}", "expiration", expiration, "conditions", conds);
    text = policy ? json_dumps(policy, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(policy);
    return text;
}

static enum rz_err s3_post_fields(struct s3 *s3, const struct creds_snapshot *creds,
                                  const char *key, const char *content_type, time_t now,
                                  struct s3_presigned *out)
{
    struct sigv4_pair sse[2];
    size_t nsse = s3_sse_headers(s3, sse);
    char *scope = sigv4_credential_scope(creds->access_key, s3->region, "s3", now);
    char date[17];
    enum rz_err err;

    if (!scope)
        return RZ_ENOMEM;
    sigv4_amz_date(now, date);
    err = s3_field_add(out, "key", key);
    if (err == RZ_OK)
        err = s3_field_add(out, "Content-Type", content_type);
    for (size_t i = 0; i < nsse && err == RZ_OK; i++)
        err = s3_field_add(out, sse[i].name, sse[i].value);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-algorithm", "AWS4-HMAC-SHA256");
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-credential", scope);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-date", date);
    if (err == RZ_OK && creds->session_token)
        err = s3_field_add(out, "x-amz-security-token", creds->session_token);
    free(scope);
    return err;
}

enum rz_err s3_presign_post(struct s3 *s3, const char *bucket, const char *key,
                            const char *content_type, uint64_t max_bytes, long expires,
                            time_t now, struct s3_presigned *out)
{
    struct creds_snapshot creds = {0};
    struct buf host, path, url;
    char *policy = NULL;
    char *policy_b64 = NULL;
    char sig[65];
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    buf_init(&host, 512);
    buf_init(&path, 512);
    buf_init(&url, 1024);
    err = creds_get(awshttp_creds(s3->transport), now, &creds);
    if (err == RZ_OK)
        err = s3_cut_expiry(&creds, now, &expires);
    if (err == RZ_OK)
        err = s3_post_fields(s3, &creds, key, content_type, now, out);
    if (err == RZ_OK) {
        out->expires_at = now + expires;
        policy = s3_post_policy(out, bucket, max_bytes, out->expires_at);
        policy_b64 = policy ? s3_presign_base64(policy) : NULL;
        err = policy_b64 ? RZ_OK : RZ_ENOMEM;
    }
    if (err == RZ_OK)
        err = sigv4_sign_policy(policy_b64,
                                &(struct sigv4_creds){creds.access_key, creds.secret_key,
                                                      creds.session_token},
                                s3->region, "s3", now, sig);
    if (err == RZ_OK)
        err = s3_field_add(out, "policy", policy_b64);
    if (err == RZ_OK)
        err = s3_field_add(out, "x-amz-signature", sig);
    if (err == RZ_OK)
        err = s3_addr_resolve(&s3->public_addr, bucket, NULL, &host, &path);
    if (err == RZ_OK)
        err = awshttp_url_build(s3->public_addr.ep.scheme, host.data, path.data, NULL, 0, &url);
    if (err == RZ_OK)
        out->url = buf_steal(&url);
    free(policy);
    free(policy_b64);
    creds_snapshot_cleanup(&creds);
    buf_cleanup(&host);
    buf_cleanup(&path);
    buf_cleanup(&url);
    if (err != RZ_OK)
        s3_presigned_cleanup(out);
    return err;
}

void s3_presigned_cleanup(struct s3_presigned *p)
{
    free(p->url);
    for (size_t i = 0; i < p->nfields; i++) {
        free(p->fields[i].name);
        free(p->fields[i].value);
    }
    memset(p, 0, sizeof(*p));
}
