/* page.c - the upload page (GET /) with its script and style, built into
 * the binary from web/.
 *
 * The page runs no inline script, so it is served under a strict
 * Content-Security-Policy: scripts and styles from this origin only, and
 * connections and pictures from this origin and the S3 endpoint that the
 * presigned URLs point at (the upload PUT, the variants). */
#include "handlers.h"

#include <string.h>

#include "page_css_embed.h"
#include "page_html_embed.h"
#include "page_js_embed.h"

#define PAGE_ORIGIN_MAX 300
#define PAGE_CSP_MAX 1024

/* The origin (scheme://host[:port]) of the endpoint clients reach, or "" when
 * it holds a character a header or a CSP source could not carry as is. */
static void page_s3_origin(const struct config *cfg, char *out, size_t outlen)
{
    const char *url = cfg->s3_public_endpoint ? cfg->s3_public_endpoint : cfg->s3_endpoint;
    const char *host = url ? strstr(url, "://") : NULL;
    size_t len;

    out[0] = '\0';
    if (!host)
        return;
    host += 3;
    len = (size_t)(host - url) + strcspn(host, "/");
    if (len >= outlen || strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789.-:/[]") < len)
        return;
    memcpy(out, url, len);
    out[len] = '\0';
}

/* The S3 sources of the policy: the endpoint, and with virtual-hosted
 * addressing (bucket.s3.<region>.amazonaws.com) its subdomains too. */
static void page_s3_sources(const struct config *cfg, char *out, size_t outlen)
{
    char origin[PAGE_ORIGIN_MAX];
    const char *host;

    page_s3_origin(cfg, origin, sizeof(origin));
    out[0] = '\0';
    if (!origin[0])
        return;
    host = strstr(origin, "://") + 3;
    if (cfg->force_path_style)
        snprintf(out, outlen, " %s", origin);
    else
        snprintf(out, outlen, " %s %.*s*.%s", origin, (int)(host - origin), origin, host);
}

/* Headers of all three files: the policy, no type sniffing (a script is
 * run only if served as one), no referrer to S3, revalidated on each load
 * so a new binary's page is never mixed with an old script. */
static void page_headers(const struct app *app, struct http_response *res)
{
    char s3[2 * PAGE_ORIGIN_MAX + 8];
    char csp[PAGE_CSP_MAX];

    page_s3_sources(app->cfg, s3, sizeof(s3));
    snprintf(csp, sizeof(csp),
             "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'%s; "
             "connect-src 'self'%s; base-uri 'none'; form-action 'none'; "
             "frame-ancestors 'none'",
             s3, s3);
    http_response_header(res, "Content-Security-Policy", csp);
    http_response_header(res, "X-Content-Type-Options", "nosniff");
    http_response_header(res, "Referrer-Policy", "no-referrer");
    http_response_header(res, "Cache-Control", "no-cache");
}

void handlers_page_index(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_bytes(res, 200, "text/html; charset=utf-8", page_html, page_html_len);
    page_headers(ctx, res);
}

void handlers_page_js(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_bytes(res, 200, "text/javascript; charset=utf-8", page_js, page_js_len);
    page_headers(ctx, res);
}

void handlers_page_css(struct http_request *req, void *ctx, struct http_response *res)
{
    http_reply_bytes(res, 200, "text/css; charset=utf-8", page_css, page_css_len);
    page_headers(ctx, res);
}
