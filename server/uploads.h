/* uploads.h - upload grants: the "API Gateway" role of the original design.
 *
 * A grant is a fresh image id, the source key the client may write
 * (SRC_PREFIX<id>.<ext>), a presigned PUT (or POST form) for exactly that
 * key and content type, and a pending status record that says who asked
 * for it, so the event that follows the upload finds its uploader. */
#ifndef RESIZER_UPLOADS_H
#define RESIZER_UPLOADS_H

#include <stdint.h>
#include <time.h>

#include "config.h"
#include "err.h"
#include "image.h"
#include "index.h"
#include "s3.h"
#include "status.h"

struct uploads_request {
    const char *filename;     /* the client's name for the file; NULL when not given */
    enum image_format format; /* loadable (image_format_loadable) */
    int post;                 /* a POST form instead of a PUT */
    const char *uploader;     /* the caller; NULL for none */
};

struct uploads_grant {
    char id[INDEX_ID_LEN + 1];
    char *key;
    struct s3_presigned form; /* url, then headers (PUT) or fields (POST), expires_at */
};

/* Signs and records a grant for r at now_ms (Unix ms). RZ_EFULL when the status index
 * is full of images in flight (memory store), RZ_EUPSTREAM when signing or
 * recording failed, RZ_ENOMEM. On error *out holds nothing to clean. */
enum rz_err uploads_grant(const struct config *cfg, struct s3 *s3, struct status *st,
                          const struct uploads_request *r, int64_t now_ms,
                          struct uploads_grant *out);

/* Safe on a zeroed grant. */
void uploads_grant_cleanup(struct uploads_grant *g);

#endif
