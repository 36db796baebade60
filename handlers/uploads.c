/* uploads.c - POST /v1/uploads: the "API Gateway" role. The client gets a
 * presigned PUT (or a POST form) for images/<uuid>.<ext> and uploads
 * straight into the source bucket, without credentials. The grant itself
 * (id, key, URL, pending record) is server/uploads.c's; this file parses
 * the request and renders the answer. */
#include "handlers.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/image.h"
#include "server/timefmt.h"
#include "server/uploads.h"

#define UPLOADS_MAX_FILENAME 255

/* Printable UTF-8 only: the name is shown back to clients and logged, so
 * control characters (newlines, escapes) are refused. */
static int uploads_filename_ok(const char *s)
{
    if (strlen(s) == 0 || strlen(s) > UPLOADS_MAX_FILENAME)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    }
    return 1;
}

static const char *uploads_string(json_t *body, const char *name, int *bad)
{
    json_t *v = json_object_get(body, name);

    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

/* Fills *out from the body; on a bad field writes the 400 and returns 0. */
static int uploads_parse(struct http_request *req, json_t *body, struct uploads_request *out,
                         struct http_response *res)
{
    int bad_filename = 0, bad_type = 0, bad_method = 0;
    const char *method, *content_type;

    out->filename = uploads_string(body, "filename", &bad_filename);
    content_type = uploads_string(body, "content_type", &bad_type);
    method = uploads_string(body, "method", &bad_method);
    if (bad_filename || (out->filename && !uploads_filename_ok(out->filename))) {
        http_reply_error(res, req, 400, "invalid_field",
                         "filename: must be a string of 1 to 255 bytes without control "
                         "characters");
        return 0;
    }
    if (bad_type || !content_type) {
        http_reply_error(res, req, 400, "invalid_field",
                         "content_type: required, e.g. \"image/jpeg\"");
        return 0;
    }
    out->format = image_format_from_mime(content_type);
    if (out->format == IMAGE_FORMAT_UNKNOWN || !image_format_loadable(out->format)) {
        http_reply_error(res, req, 400, "unsupported_content_type",
                         "content_type: must be an image type this service processes "
                         "(image/jpeg, image/png, image/webp, image/gif, image/tiff, "
                         "image/avif, image/heic)");
        return 0;
    }
    if (bad_method || (method && strcmp(method, "PUT") != 0 && strcmp(method, "POST") != 0)) {
        http_reply_error(res, req, 400, "invalid_field", "method: must be \"PUT\" or \"POST\"");
        return 0;
    }
    out->post = method && strcmp(method, "POST") == 0;
    return 1;
}

static json_t *uploads_time(time_t t)
{
    char s[TIMEFMT_MAX];

    timefmt_iso(t, s);
    return json_string(s);
}

static json_t *uploads_render(const struct uploads_grant *g, int post)
{
    const struct s3_presigned *p = &g->form;
    json_t *fields = json_object();
    json_t *upload;
    char status_url[64];

    for (size_t i = 0; i < p->nfields; i++)
        json_object_set_new(fields, p->fields[i].name, json_string(p->fields[i].value));
    upload = json_pack("{s:s,s:s,s:o,s:o}", "method", post ? "POST" : "PUT", "url", p->url,
                       post ? "fields" : "headers", fields, "expires_at",
                       uploads_time(p->expires_at));
    snprintf(status_url, sizeof(status_url), "/v1/images/%s", g->id);
    return json_pack("{s:s,s:s,s:o,s:s}", "id", g->id, "key", g->key, "upload", upload,
                     "status_url", status_url);
}

void handlers_uploads_create(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    struct uploads_request u;
    struct uploads_grant g = {0};
    json_t *body = NULL;
    char location[64];
    enum rz_err err;

    body = handlers_json_body(req, res);
    if (!body || !uploads_parse(req, body, &u, res))
        goto done;
    u.uploader = req->caller[0] ? req->caller : NULL;
    err = uploads_grant(app->cfg, app->s3, app->status, &u, handlers_now_ms(), &g);
    if (err != RZ_OK) {
        http_reply_err(res, req, err == RZ_EFULL ? RZ_EFULL : RZ_EUPSTREAM,
                       err == RZ_EFULL ? "status index is full of images in flight"
                                       : "cannot sign or record an upload URL now");
        goto done;
    }
    http_reply_json(res, 201, uploads_render(&g, u.post));
    snprintf(location, sizeof(location), "/v1/images/%s", g.id);
    http_response_header(res, "Location", location);
done:
    uploads_grant_cleanup(&g);
    json_decref(body);
}
