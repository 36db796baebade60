/* uploads.c - upload grants: an id, its key, a presigned URL, a record. */
#include "uploads.h"

#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "keys.h"

static enum rz_err uploads_presign(const struct config *cfg, struct s3 *s3,
                                   const struct uploads_request *r, time_t now,
                                   struct uploads_grant *g)
{
    const char *mime = image_format_mime(r->format);

    if (r->post)
        return s3_presign_post(s3, cfg->src_bucket, g->key, mime, cfg->max_upload_bytes,
                               cfg->presign_put_expires, now, &g->form);
    return s3_presign_put(s3, cfg->src_bucket, g->key, mime, cfg->presign_put_expires, now,
                          &g->form);
}

enum rz_err uploads_grant(const struct config *cfg, struct s3 *s3, struct status *st,
                          const struct uploads_request *r, int64_t now_ms,
                          struct uploads_grant *out)
{
    enum rz_err err = RZ_ENOMEM;

    memset(out, 0, sizeof(*out));
    ids_new_uuid(out->id);
    out->key = keys_upload(cfg->src_prefix, out->id, r->format);
    if (!out->key)
        goto fail;
    /* Signed first: a record without a URL would wait for an upload that
     * can never come. */
    err = uploads_presign(cfg, s3, r, (time_t)(now_ms / 1000), out) == RZ_OK ? RZ_OK
                                                                             : RZ_EUPSTREAM;
    if (err == RZ_OK)
        err = status_add_upload(st, out->id, cfg->src_bucket, out->key, r->filename,
                                image_format_mime(r->format), r->uploader,
                                (int64_t)out->form.expires_at * 1000, now_ms);
    if (err != RZ_OK && err != RZ_EFULL && err != RZ_ENOMEM)
        err = RZ_EUPSTREAM;
    if (err == RZ_OK)
        return RZ_OK;
fail:
    uploads_grant_cleanup(out);
    return err;
}

void uploads_grant_cleanup(struct uploads_grant *g)
{
    free(g->key);
    s3_presigned_cleanup(&g->form);
    memset(g, 0, sizeof(*g));
}
