/* images.c - status of images: by id, by key, listed; variant downloads
 * through presigned redirects; retry of failures. Where a record comes
 * from (this replica's memory, the shared store, S3) is the status
 * module's business. */
#include "handlers.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/clock.h"
#include "server/ids.h"
#include "server/negotiate.h"

#define IMAGES_DEFAULT_LIMIT 50
#define IMAGES_MAX_LIMIT 200

static int images_id_ok(const char *id)
{
    return ids_uuid_ok(id);
}

/* Sets "url" on obj to a presigned GET of key. */
static void images_sign_url(const struct app *app, const char *key, json_t *obj, time_t now)
{
    struct s3_presigned p = {0};

    if (key && s3_presign_get(app->s3, app->cfg->dest_bucket, key, app->cfg->presign_get_expires,
                              now, &p) == RZ_OK)
        json_object_set_new(obj, "url", json_string(p.url));
    s3_presigned_cleanup(&p);
}

/* A url on the variant (its first file) and on each of its files. */
static void images_sign_variant(const struct app *app, const struct index_variant *v, json_t *vj,
                                time_t now)
{
    json_t *files = json_object_get(vj, "files");

    images_sign_url(app, v->key, vj, now);
    for (size_t k = 0; k < v->nfiles && k < json_array_size(files); k++)
        images_sign_url(app, v->files[k].key, json_array_get(files, k), now);
}

/* The status record with a presigned GET url on each variant of a done
 * image. */
static json_t *images_render(const struct app *app, const struct index_entry *e, time_t now)
{
    json_t *j = index_entry_to_json(e);
    json_t *variants = json_object_get(j, "variants");

    for (size_t i = 0; e->state == INDEX_DONE && i < json_array_size(variants); i++)
        images_sign_variant(app, &e->variants[i], json_array_get(variants, i), now);
    return j;
}

static void images_reply_find_error(struct http_request *req, struct http_response *res,
                                    enum rz_err err)
{
    if (err == RZ_ENOTFOUND)
        http_reply_error(res, req, 404, "not_found", "no image with this id");
    else
        http_reply_rz_error(res, req, err, "cannot read the status record");
}

/* The preamble of every /v1/images/{id} route (auth is the route's): a well-formed
 * id, and the image's record (from memory or S3) in *e. Returns 1, or 0
 * after writing the error response. */
static void images_resume(void *arg)
{
    http_resume(arg);
}

static void images_lookup_start(void *arg)
{
    struct http_request *req = arg;

    status_lookup_start(req->resume_arg, images_resume, req);
}

/* The record for id (key NULL) or (bucket, key): from memory at once, or
 * after a look-up that waits with the request suspended (this handler
 * then runs again). 0: not found (*err_out ENOTFOUND), an error, or
 * suspended (*err_out RZ_OK, no response yet). */
static int images_fetch(struct http_request *req, const struct app *app, const char *id,
                        const char *bucket, const char *key, struct index_entry *e,
                        enum rz_err *err_out)
{
    struct status_lookup *l = NULL;

    if (req->resumed && req->resume_arg) {
        *err_out = status_lookup_result(req->resume_arg, e);
        req->resume_arg = NULL;
        return *err_out == RZ_OK;
    }
    *err_out = status_find(app->status, id, bucket, key, e, &l);
    if (*err_out == RZ_OK && l) {
        req->resume_arg = l;
        http_suspend(req, images_lookup_start, req, status_lookup_cancel);
        return 0;
    }
    return *err_out == RZ_OK;
}

static int images_load(struct http_request *req, const struct app *app,
                       struct http_response *res, struct index_entry *e)
{
    enum rz_err err;

    if (!images_id_ok(req->params[0])) {
        http_reply_error(res, req, 400, "invalid_id", "id must be a lowercase UUID");
        return 0;
    }
    if (images_fetch(req, app, req->params[0], NULL, NULL, e, &err)) {
        /* Another caller's image is answered as if it did not exist, so
         * ids cannot be probed. */
        if (handlers_may_see(req, e->uploader))
            return 1;
        index_entry_cleanup(e);
        err = RZ_ENOTFOUND;
    }
    if (err != RZ_OK)
        images_reply_find_error(req, res, err);
    return 0;
}

void handlers_images_get(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    struct index_entry e = {0};

    if (!images_load(req, app, res, &e))
        return;
    http_reply_json(res, 200, images_render(app, &e, time(NULL)));
    index_entry_cleanup(&e);
}

/* Parses ?limit= (1..200); writes the 400 and returns 0 on a bad value.
 * The cursor is the store's to check. */
static int images_page_params(struct http_request *req, struct http_response *res, size_t *limit)
{
    const char *l = http_query(req, "limit");
    char *end = NULL;
    long n;

    *limit = IMAGES_DEFAULT_LIMIT;
    if (l) {
        n = strtol(l, &end, 10);
        if (end == l || *end || n < 1 || n > IMAGES_MAX_LIMIT) {
            http_reply_error(res, req, 400, "invalid_parameter", "limit: must be 1 to 200");
            return 0;
        }
        *limit = (size_t)n;
    }
    return 1;
}

static void images_reply_items(struct http_response *res, json_t *items, const char *next)
{
    http_reply_json(res, 200,
                    json_pack("{s:o,s:o}", "items", items, "next_cursor",
                              next[0] ? json_string(next) : json_null()));
}

static void images_by_key(struct http_request *req, struct app *app, const char *key,
                          struct http_response *res)
{
    struct index_entry e = {0};
    const char *bucket = app->cfg->src_bucket;
    json_t *items;
    enum rz_err err;

    if (!bucket)
        bucket = http_query(req, "bucket");
    if (!bucket || strlen(key) == 0 || strlen(key) > 1024) {
        http_reply_error(res, req, 400, "invalid_parameter",
                         bucket ? "key: must be 1 to 1024 bytes" : "bucket: required");
        return;
    }
    if (!images_fetch(req, app, NULL, bucket, key, &e, &err) && err == RZ_OK)
        return; /* suspended: runs again with the answer */
    items = json_array();
    if (err != RZ_OK && err != RZ_ENOTFOUND) {
        json_decref(items);
        http_reply_rz_error(res, req, err, "cannot read the status record");
        return;
    }
    if (err == RZ_OK && handlers_may_see(req, e.uploader))
        json_array_append_new(items, images_render(app, &e, time(NULL)));
    index_entry_cleanup(&e);
    images_reply_items(res, items, "");
}

void handlers_images_list(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    struct index_entry *page = NULL;
    const char *state = http_query(req, "state");
    const char *key = http_query(req, "key");
    int st = -1;
    size_t limit, n = 0;
    char next[STORE_CURSOR_MAX] = "";
    json_t *items;
    time_t now = time(NULL);
    enum rz_err err;

    if (key) {
        images_by_key(req, app, key, res);
        return;
    }
    if (state)
        st = index_state_parse(state);
    if (state && st < 0) {
        http_reply_error(res, req, 400, "invalid_parameter",
                         "state: must be pending, queued, processing, done or failed");
        return;
    }
    if (!images_page_params(req, res, &limit))
        return;
    page = calloc(limit, sizeof(*page));
    /* Callers list their own images only; admins everyone's. */
    err = page ? status_list(app->status, st, req->caller_admin ? NULL : req->caller,
                             http_query(req, "cursor"), limit, page, &n, next)
               : RZ_ENOMEM;
    if (err != RZ_OK) {
        free(page);
        if (err == RZ_EINVAL)
            http_reply_error(res, req, 400, "invalid_parameter",
                             "cursor: must be a next_cursor from an earlier page");
        else
            http_reply_rz_error(res, req, err, "cannot list images now");
        return;
    }
    items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(items, images_render(app, &page[i], now));
        index_entry_cleanup(&page[i]);
    }
    free(page);
    images_reply_items(res, items, next);
}

/* The file of v to send: ?format= when given, else what Accept allows.
 * Returns NULL after writing the error (400, 404 or 406). */
static const struct index_file *images_pick_file(struct http_request *req,
                                                 struct http_response *res,
                                                 const struct index_variant *v)
{
    enum image_format stored[IMAGE_MAX_OUTPUTS];
    const char *param = http_query(req, "format");
    enum image_format f = negotiate_format_param(param);
    enum rz_err err;
    size_t n = 0;

    if (param && f == IMAGE_FORMAT_UNKNOWN) {
        http_reply_error(res, req, 400, "invalid_parameter",
                         "format: must be jpeg, png, webp, avif or gif");
        return NULL;
    }
    if (param && !index_variant_file(v, f)) {
        http_reply_error(res, req, 404, "not_found",
                         "this variant is not stored in that format");
        return NULL;
    }
    for (size_t k = 0; k < v->nfiles && k < IMAGE_MAX_OUTPUTS; k++)
        stored[n++] = v->files[k].format;
    err = param ? RZ_OK : negotiate_format(http_header(req, "accept"), stored, n, &f);
    if (err == RZ_OK)
        return index_variant_file(v, f);
    if (err == RZ_EINVAL)
        http_reply_error(res, req, 400, "invalid_header", "Accept is too long");
    else
        http_reply_error(res, req, 406, "not_acceptable",
                         "no stored format of this variant is acceptable (see Accept)");
    return NULL;
}

/* 302 to a presigned GET of the variant, in the format the client can
 * show. The answer depends on Accept (Vary) and on the record, which a
 * retry changes (no-store). */
void handlers_images_variant(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    struct index_entry e = {0};
    struct s3_presigned p = {0};
    const struct index_variant *v = NULL;
    const struct index_file *file = NULL;

    if (!images_load(req, app, res, &e))
        return;
    for (size_t i = 0; e.state == INDEX_DONE && i < e.nvariants; i++) {
        if (strcmp(e.variants[i].name, req->params[1]) == 0)
            v = &e.variants[i];
    }
    if (!v)
        http_reply_error(res, req, 404, "not_found",
                         e.state == INDEX_DONE ? "no variant with this name"
                                               : "the image is not done yet");
    else
        file = images_pick_file(req, res, v);
    if (file && s3_presign_get(app->s3, app->cfg->dest_bucket, file->key,
                               app->cfg->presign_get_expires, time(NULL), &p) != RZ_OK) {
        http_reply_rz_error(res, req, RZ_EUPSTREAM, "cannot sign a download URL now");
    } else if (file) {
        http_reply_bytes(res, 302, "text/plain", "", 0);
        http_response_header(res, "Location", p.url);
        http_response_header(res, "Cache-Control", "no-store");
    }
    if (v)
        http_response_header(res, "Vary", "Accept");
    s3_presigned_cleanup(&p);
    index_entry_cleanup(&e);
}

void handlers_images_retry(struct http_request *req, void *ctx, struct http_response *res)
{
    struct app *app = ctx;
    struct index_entry e = {0};
    enum rz_err err;

    /* Loading brings in a failure another replica recorded, so it can be
     * retried here. */
    if (!images_load(req, app, res, &e))
        return;
    index_entry_cleanup(&e);
    err = jobs_retry(app->jobs, req->params[0], clock_wall_ms());
    if (err == RZ_OK)
        http_reply_json(res, 202,
                        json_pack("{s:s,s:s}", "id", req->params[0], "state", "queued"));
    else if (err == RZ_ENOTFOUND)
        images_reply_find_error(req, res, err);
    else if (err == RZ_ECONFLICT)
        http_reply_error(res, req, 409, "not_failed", "only a failed image can be retried");
    else
        http_reply_rz_error(res, req, err, "cannot queue the retry now");
}
