/* creds.c - AWS credentials: static, or fetched from the ECS/EKS container
 * credentials endpoint and cached until 5 minutes before they expire.
 *
 * One mutex guards the cache; one caller at a time fetches, without the
 * mutex held, while others use a still-valid cached value or wait for it.
 * Every copy of a secret we own (cache, snapshots, response body, token
 * file, Authorization header) is wiped with OPENSSL_cleanse before free. */
#include "creds.h"
#include "unittest.h"
#include "creds_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "text.h"
#include "timefmt.h"

/* The ECS agent's fixed address (AWS docs, "task IAM roles"). */
#define CREDS_ECS_BASE "http://169.254.170.2"
#define CREDS_FETCH_ATTEMPTS 2
#define CREDS_RETRY_PAUSE_NS (100L * 1000 * 1000)
#define CREDS_MAX_KEY_ID 128
#define CREDS_MAX_SECRET 1024

struct creds_provider {
    pthread_mutex_t lock;
    pthread_cond_t fetched;      /* broadcast when a fetch ends */
    int is_static;               /* cache never expires, nothing to fetch */
    char *url;                   /* endpoint, NULL when static */
    char *auth_token;            /* NULL when none; wiped on free */
    char *auth_token_file;       /* NULL when none; takes precedence, as in the SDKs */
    struct creds_snapshot cache; /* access_key NULL until the first fetch */
    int fetching;                /* a caller is fetching right now */
    unsigned long fetch_gen;     /* bumped when a fetch ends, so waiters know */
    int failed;                  /* the last fetch failed, at failed_at */
    time_t failed_at;
};

struct creds_resp {
    char *data; /* CREDS_MAX_RESPONSE + 1 bytes, fixed so no realloc leaves copies */
    size_t len;
};

__attribute__((format(printf, 3, 4))) static void creds_msg(char *msg, size_t msglen,
                                                            const char *fmt, ...)
{
    va_list ap;

    if (!msg || msglen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

static int creds_has(const char *s)
{
    return s && s[0] != '\0';
}

static void creds_free_secret(char *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* Printable ASCII without spaces: what S3 accepts in keys and tokens, and
 * safe to put in a header or a URL. */
static int creds_text_ok(const char *s, size_t len, size_t maxlen)
{
    size_t i;

    if (len == 0 || len > maxlen || strlen(s) != len)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    }
    return 1;
}

/* A header value must not smuggle CR/LF (botocore refuses them too). */
static int creds_header_value_ok(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    }
    return 1;
}

void creds_snapshot_cleanup(struct creds_snapshot *s)
{
    if (!s)
        return;
    free(s->access_key);
    creds_free_secret(s->secret_key);
    creds_free_secret(s->session_token);
    memset(s, 0, sizeof(*s));
}

/* Deep copy; *dst is zeroed on failure. */
static enum rz_err creds_snapshot_copy(const struct creds_snapshot *src,
                                       struct creds_snapshot *dst)
{
    enum rz_err err;

    memset(dst, 0, sizeof(*dst));
    err = text_dup(src->access_key, &dst->access_key);
    if (err != RZ_OK)
        goto fail;
    err = text_dup(src->secret_key, &dst->secret_key);
    if (err != RZ_OK)
        goto fail;
    err = text_dup(src->session_token, &dst->session_token);
    if (err != RZ_OK)
        goto fail;
    dst->expiration = src->expiration;
    return RZ_OK;
fail:
    creds_snapshot_cleanup(dst);
    return err;
}

/* ---- endpoint URL ---------------------------------------------------- */

/* ECS (169.254.170.2), EKS Pod Identity (169.254.170.23, fd00:ec2::23) or
 * loopback: the hosts the AWS SDKs accept over plain http. */
static int creds_host_allowed_plain(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    struct in6_addr eks6;
    char inner[INET6_ADDRSTRLEN + 1];
    size_t n = strlen(host);
    uint32_t ip;

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        ip = ntohl(a4.s_addr);
        return (ip >> 24) == 127 || ip == 0xA9FEAA02u || ip == 0xA9FEAA17u;
    }
    if (n < 3 || n - 2 >= sizeof(inner) || host[0] != '[' || host[n - 1] != ']')
        return 0;
    memcpy(inner, host + 1, n - 2);
    inner[n - 2] = '\0';
    if (inet_pton(AF_INET6, inner, &a6) != 1 || inet_pton(AF_INET6, "fd00:ec2::23", &eks6) != 1)
        return 0;
    return IN6_IS_ADDR_LOOPBACK(&a6) || memcmp(&a6, &eks6, sizeof(a6)) == 0;
}

/* Parses with libcurl's own parser, so what we check is what it fetches.
 * The three outputs are curl_free'd by the caller (also on error). */
static enum rz_err creds_url_parse(const char *uri, char **scheme, char **host, char **url)
{
    CURLU *u = curl_url();
    enum rz_err err = RZ_EINVAL;

    *scheme = NULL;
    *host = NULL;
    *url = NULL;
    if (!u)
        return RZ_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK)
        goto fail;
    if (curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK)
        goto fail;
    if (curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK)
        goto fail;
    if (curl_url_get(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto fail;
    err = RZ_OK;
fail:
    curl_url_cleanup(u);
    return err;
}

UNITTEST enum rz_err creds_check_full_uri(const char *uri, char **url_out, char *msg,
                                          size_t msglen)
{
    char *scheme = NULL;
    char *host = NULL;
    char *url = NULL;
    enum rz_err err;

    *url_out = NULL;
    err = creds_url_parse(uri, &scheme, &host, &url);
    if (err != RZ_OK) {
        creds_msg(msg, msglen, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a valid URL");
        goto fail;
    }
    err = RZ_EINVAL;
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        creds_msg(msg, msglen, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be http or https");
        goto fail;
    }
    if (strcmp(scheme, "http") == 0 && !creds_host_allowed_plain(host)) {
        creds_msg(msg, msglen,
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI over http must point at a loopback "
                  "host or the ECS/EKS agent (169.254.170.2, 169.254.170.23), not \"%.64s\"; "
                  "use https",
                  host);
        goto fail;
    }
    err = text_dup(url, url_out);
fail:
    curl_free(scheme);
    curl_free(host);
    curl_free(url);
    return err;
}

/* The relative URI must start with '/', so it cannot turn the fixed host
 * into userinfo ("@evil.example") or a port. */
static enum rz_err creds_relative_url(const char *rel, char **url_out, char *msg, size_t msglen)
{
    char *scheme = NULL;
    char *host = NULL;
    char *url = NULL;
    char joined[2048];
    enum rz_err err = RZ_EINVAL;
    int n;

    *url_out = NULL;
    n = snprintf(joined, sizeof(joined), "%s%s", CREDS_ECS_BASE, rel);
    if (rel[0] != '/' || n < 0 || (size_t)n >= sizeof(joined))
        goto bad;
    if (creds_url_parse(joined, &scheme, &host, &url) != RZ_OK)
        goto bad;
    if (strcmp(host, "169.254.170.2") != 0)
        goto bad;
    err = text_dup(url, url_out);
    goto out;
bad:
    creds_msg(msg, msglen,
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with '/'");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(url);
    return err;
}

UNITTEST enum rz_err creds_endpoint_url(const struct creds_source *src, char **url_out,
                                        char *msg, size_t msglen)
{
    *url_out = NULL;
    /* Relative wins over full, as in the AWS SDKs. */
    if (creds_has(src->relative_uri))
        return creds_relative_url(src->relative_uri, url_out, msg, msglen);
    if (creds_has(src->full_uri))
        return creds_check_full_uri(src->full_uri, url_out, msg, msglen);
    creds_msg(msg, msglen,
              "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / AWS_CONTAINER_CREDENTIALS_FULL_URI");
    return RZ_EINVAL;
}

/* ---- response parsing ------------------------------------------------ */

/* Expiration in whole seconds: a credential is refreshed minutes ahead,
 * so the fraction does not matter. */
static enum rz_err creds_parse_expiration(const char *s, time_t *out)
{
    int64_t ms;
    enum rz_err err = timefmt_parse_iso_ms(s, &ms);

    *out = (time_t)(ms / 1000);
    return err;
}

/* A string member: absent is RZ_OK with *out NULL only when optional. */
static enum rz_err creds_json_str(json_t *root, const char *name, int required, size_t maxlen,
                                  const char **out)
{
    json_t *v = json_object_get(root, name);

    *out = NULL;
    if (!v || (!required && json_is_null(v)))
        return required ? RZ_EINVAL : RZ_OK;
    if (!json_is_string(v) ||
        !creds_text_ok(json_string_value(v), json_string_length(v), maxlen))
        return RZ_EINVAL;
    *out = json_string_value(v);
    return RZ_OK;
}

/* jansson frees without wiping: wipe the string members ourselves first. */
static void creds_json_wipe(json_t *root)
{
    const char *name;
    json_t *v;

    json_object_foreach(root, name, v)
    {
        if (json_is_string(v))
            OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
    }
}

static enum rz_err creds_from_json(json_t *root, struct creds_snapshot *out)
{
    const char *key, *secret, *token, *exp;
    enum rz_err err;

    err = creds_json_str(root, "AccessKeyId", 1, CREDS_MAX_KEY_ID, &key);
    if (err == RZ_OK)
        err = creds_json_str(root, "SecretAccessKey", 1, CREDS_MAX_SECRET, &secret);
    if (err == RZ_OK)
        err = creds_json_str(root, "Token", 0, CREDS_MAX_RESPONSE, &token);
    if (err == RZ_OK)
        err = creds_json_str(root, "Expiration", 1, 40, &exp);
    if (err == RZ_OK)
        err = creds_parse_expiration(exp, &out->expiration);
    if (err != RZ_OK)
        return err;
    err = text_dup(key, &out->access_key);
    if (err == RZ_OK)
        err = text_dup(secret, &out->secret_key);
    if (err == RZ_OK)
        err = text_dup(token, &out->session_token);
    return err;
}

UNITTEST enum rz_err creds_parse_json(const char *data, size_t len, struct creds_snapshot *out)
{
    json_error_t jerr;
    json_t *root = NULL;
    enum rz_err err = RZ_ETOOBIG;

    memset(out, 0, sizeof(*out));
    if (len > CREDS_MAX_RESPONSE)
        goto fail;
    err = RZ_EINVAL;
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root))
        goto fail;
    err = creds_from_json(root, out);
fail:
    if (root) {
        creds_json_wipe(root);
        json_decref(root);
    }
    if (err != RZ_OK)
        creds_snapshot_cleanup(out);
    return err;
}

/* ---- fetching -------------------------------------------------------- */

UNITTEST enum rz_err creds_read_token_file(const char *path, char **token_out)
{
    char *buf = NULL;
    char *start;
    size_t n;
    FILE *f;
    enum rz_err err = RZ_EINVAL;

    *token_out = NULL;
    f = fopen(path, "re");
    if (!f)
        return RZ_EINVAL;
    buf = calloc(1, CREDS_MAX_TOKEN_FILE + 2);
    if (!buf) {
        err = RZ_ENOMEM;
        goto fail;
    }
    n = fread(buf, 1, CREDS_MAX_TOKEN_FILE + 1, f);
    if (ferror(f) || n > CREDS_MAX_TOKEN_FILE) {
        err = n > CREDS_MAX_TOKEN_FILE ? RZ_ETOOBIG : RZ_EINVAL;
        goto fail;
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    start = buf;
    while (isspace((unsigned char)*start))
        start++;
    if (*start == '\0' || strlen(start) != (size_t)(buf + n - start) ||
        !creds_header_value_ok(start))
        goto fail;
    err = text_dup(start, token_out);
fail:
    if (buf) {
        OPENSSL_cleanse(buf, CREDS_MAX_TOKEN_FILE + 2);
        free(buf);
    }
    fclose(f);
    return err;
}

static void creds_headers_free(struct curl_slist *h)
{
    struct curl_slist *it;

    for (it = h; it; it = it->next)
        OPENSSL_cleanse(it->data, strlen(it->data));
    curl_slist_free_all(h);
}

static enum rz_err creds_append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n)
        return RZ_ENOMEM;
    *list = n;
    return RZ_OK;
}

/* The token file is read on every fetch: EKS rotates it in place. */
static enum rz_err creds_build_headers(const struct creds_provider *p, struct curl_slist **out)
{
    char *token = NULL;
    char *line = NULL;
    size_t len;
    enum rz_err err;

    *out = NULL;
    err = creds_append_header(out, "Accept: application/json");
    if (err == RZ_OK && p->auth_token_file)
        err = creds_read_token_file(p->auth_token_file, &token);
    else if (err == RZ_OK)
        err = text_dup(p->auth_token, &token);
    if (err != RZ_OK || !token)
        goto out;
    len = strlen("Authorization: ") + strlen(token) + 1;
    line = malloc(len);
    if (!line) {
        err = RZ_ENOMEM;
        goto out;
    }
    snprintf(line, len, "Authorization: %s", token);
    err = creds_append_header(out, line);
out:
    creds_free_secret(token);
    creds_free_secret(line);
    if (err != RZ_OK) {
        creds_headers_free(*out);
        *out = NULL;
    }
    return err;
}

static size_t creds_on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct creds_resp *r = userdata;
    size_t n = size * nmemb;

    if (n > CREDS_MAX_RESPONSE - r->len)
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    memcpy(r->data + r->len, ptr, n);
    r->len += n;
    r->data[r->len] = '\0';
    return n;
}

static CURLcode creds_curl_setup(CURL *h, const char *url, struct curl_slist *headers,
                                 struct creds_resp *r)
{
    CURLcode rc = curl_easy_setopt(h, CURLOPT_URL, url);

    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* The endpoint is local by design: a proxy would only see the token. */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CREDS_MAX_RESPONSE);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, creds_on_body);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    return rc;
}

static int creds_curl_retryable(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_SEND_ERROR ||
           rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
}

/* One request; *retry_out says whether another attempt may help. */
static enum rz_err creds_fetch_once(const struct creds_provider *p, struct curl_slist *headers,
                                    struct creds_resp *r, int *retry_out)
{
    CURL *h = curl_easy_init();
    CURLcode rc;
    long status = 0;
    enum rz_err err = RZ_EUPSTREAM;

    *retry_out = 0;
    r->len = 0;
    r->data[0] = '\0';
    if (!h)
        return RZ_ENOMEM;
    rc = creds_curl_setup(h, p->url, headers, r);
    if (rc != CURLE_OK) {
        err = RZ_EINTERNAL;
        goto fail;
    }
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        *retry_out = creds_curl_retryable(rc);
        goto fail;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    *retry_out = status >= 500;
    if (status == 200)
        err = RZ_OK;
fail:
    curl_easy_cleanup(h);
    return err;
}

static void creds_pause(void)
{
    struct timespec ts = {0, CREDS_RETRY_PAUSE_NS};

    nanosleep(&ts, NULL);
}

/* Fetches and parses; credentials already expired at now are a failure. */
static enum rz_err creds_fetch(const struct creds_provider *p, time_t now,
                               struct creds_snapshot *out)
{
    struct curl_slist *headers = NULL;
    struct creds_resp r = {NULL, 0};
    enum rz_err err;
    int attempt;
    int retry = 1;

    memset(out, 0, sizeof(*out));
    err = creds_build_headers(p, &headers);
    if (err != RZ_OK)
        goto fail;
    r.data = malloc(CREDS_MAX_RESPONSE + 1);
    err = RZ_ENOMEM;
    if (!r.data)
        goto fail;
    err = RZ_EUPSTREAM;
    for (attempt = 0; attempt < CREDS_FETCH_ATTEMPTS && retry && err != RZ_OK; attempt++) {
        if (attempt > 0)
            creds_pause();
        err = creds_fetch_once(p, headers, &r, &retry);
    }
    if (err == RZ_OK)
        err = creds_parse_json(r.data, r.len, out);
    if (err == RZ_OK && out->expiration <= now) {
        creds_snapshot_cleanup(out);
        err = RZ_EUPSTREAM;
    }
fail:
    creds_headers_free(headers);
    if (r.data) {
        OPENSSL_cleanse(r.data, CREDS_MAX_RESPONSE + 1);
        free(r.data);
    }
    return err;
}

/* ---- provider -------------------------------------------------------- */

static enum rz_err creds_init_static(struct creds_provider *p, const struct creds_source *src,
                                     char *msg, size_t msglen)
{
    const char *token = creds_has(src->session_token) ? src->session_token : NULL;
    struct creds_snapshot s = {(char *)src->access_key, (char *)src->secret_key, (char *)token,
                               0};

    if (!creds_has(src->secret_key)) {
        creds_msg(msg, msglen, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
        return RZ_EINVAL;
    }
    if (!creds_text_ok(s.access_key, strlen(s.access_key), CREDS_MAX_KEY_ID) ||
        !creds_text_ok(s.secret_key, strlen(s.secret_key), CREDS_MAX_SECRET) ||
        (token && !creds_text_ok(token, strlen(token), CREDS_MAX_RESPONSE))) {
        creds_msg(msg, msglen,
                  "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN must be "
                  "printable ASCII without spaces");
        return RZ_EINVAL;
    }
    p->is_static = 1;
    return creds_snapshot_copy(&s, &p->cache);
}

static enum rz_err creds_init_container(struct creds_provider *p, const struct creds_source *src,
                                        char *msg, size_t msglen)
{
    enum rz_err err = creds_endpoint_url(src, &p->url, msg, msglen);

    if (err != RZ_OK)
        return err;
    if (creds_has(src->auth_token) && !creds_header_value_ok(src->auth_token)) {
        creds_msg(msg, msglen, "AWS_CONTAINER_AUTHORIZATION_TOKEN contains control characters");
        return RZ_EINVAL;
    }
    err = text_dup(creds_has(src->auth_token) ? src->auth_token : NULL, &p->auth_token);
    if (err == RZ_OK)
        err = text_dup(creds_has(src->auth_token_file) ? src->auth_token_file : NULL,
                       &p->auth_token_file);
    return err;
}

enum rz_err creds_provider_new(const struct creds_source *src, struct creds_provider **out,
                               char *msg, size_t msglen)
{
    struct creds_provider *p;
    enum rz_err err;

    *out = NULL;
    creds_msg(msg, msglen, "%s", "");
    p = calloc(1, sizeof(*p));
    if (!p)
        return RZ_ENOMEM;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return RZ_EINTERNAL;
    }
    if (pthread_cond_init(&p->fetched, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return RZ_EINTERNAL;
    }
    if (src && creds_has(src->access_key))
        err = creds_init_static(p, src, msg, msglen);
    else if (src)
        err = creds_init_container(p, src, msg, msglen);
    else
        err = RZ_EINVAL;
    if (!src)
        creds_msg(msg, msglen, "no credentials source");
    if (err != RZ_OK)
        goto fail;
    *out = p;
    return RZ_OK;
fail:
    creds_provider_free(p);
    return err;
}

void creds_provider_free(struct creds_provider *p)
{
    if (!p)
        return;
    creds_snapshot_cleanup(&p->cache);
    free(p->url);
    creds_free_secret(p->auth_token);
    free(p->auth_token_file);
    pthread_cond_destroy(&p->fetched);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Usable for signing right now (static credentials always are). */
static int creds_cache_valid(const struct creds_provider *p, time_t now)
{
    return p->cache.access_key && (p->cache.expiration == 0 || p->cache.expiration > now);
}

/* Valid and not inside the refresh margin. */
static int creds_cache_fresh(const struct creds_provider *p, time_t now)
{
    return p->cache.access_key &&
           (p->cache.expiration == 0 || p->cache.expiration - now > CREDS_REFRESH_MARGIN);
}

static int creds_in_backoff(const struct creds_provider *p, time_t now)
{
    return p->failed && now - p->failed_at < CREDS_FAIL_BACKOFF;
}

/* Called and returns with p->lock held; drops it for the network. */
static enum rz_err creds_refresh_locked(struct creds_provider *p, time_t now,
                                        struct creds_snapshot *out)
{
    struct creds_snapshot fresh;
    enum rz_err err;

    p->fetching = 1;
    pthread_mutex_unlock(&p->lock);
    err = creds_fetch(p, now, &fresh);
    pthread_mutex_lock(&p->lock);
    p->fetching = 0;
    p->fetch_gen++;
    p->failed = err != RZ_OK;
    p->failed_at = now;
    if (err == RZ_OK) {
        creds_snapshot_cleanup(&p->cache);
        p->cache = fresh;
    }
    pthread_cond_broadcast(&p->fetched);
    if (creds_cache_valid(p, now))
        return creds_snapshot_copy(&p->cache, out);
    return err == RZ_ENOMEM ? RZ_ENOMEM : RZ_EUPSTREAM;
}

/* Called and returns with p->lock held. A caller that waited for someone
 * else's fetch takes its outcome rather than fetching again, so an outage
 * costs every waiter one timeout, not one each in turn. */
static enum rz_err creds_get_locked(struct creds_provider *p, time_t now,
                                    struct creds_snapshot *out)
{
    unsigned long gen;

    if (creds_cache_fresh(p, now))
        return creds_snapshot_copy(&p->cache, out);
    if (creds_cache_valid(p, now) && (p->fetching || creds_in_backoff(p, now)))
        return creds_snapshot_copy(&p->cache, out);
    if (!p->fetching)
        return creds_refresh_locked(p, now, out);
    gen = p->fetch_gen;
    while (p->fetching && p->fetch_gen == gen)
        pthread_cond_wait(&p->fetched, &p->lock);
    if (creds_cache_valid(p, now))
        return creds_snapshot_copy(&p->cache, out);
    return RZ_EUPSTREAM;
}

enum rz_err creds_get(struct creds_provider *p, time_t now, struct creds_snapshot *out)
{
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    if (!p)
        return RZ_EINVAL;
    /* Static credentials never change after creds_provider_new. */
    if (p->is_static)
        return creds_snapshot_copy(&p->cache, out);
    pthread_mutex_lock(&p->lock);
    err = creds_get_locked(p, now, out);
    pthread_mutex_unlock(&p->lock);
    return err;
}
