/* s3_internal.h - the S3 client as its own files share it (s3.c: client
 * and object calls, s3_presign.c: presigned URLs). Not for other modules:
 * they hold a struct s3 * and call s3.h. */
#ifndef RESIZER_S3_INTERNAL_H
#define RESIZER_S3_INTERNAL_H

#include "awshttp.h"
#include "s3.h"
#include "s3_addr.h"
#include "sigv4.h"

#define S3_MAX_KEY 1024

struct s3 {
    struct s3_addr addr;        /* where calls go */
    struct s3_addr public_addr; /* where presigned URLs point */
    char *region;
    char *sse;
    char *sse_kms_key_id;
    struct awshttp *transport;
    int owns_transport;           /* made by s3_new for the old s3_opts form */
    const struct s3 *base;        /* a view (s3_view_new): the strings above are base's */
    struct awshttp_policy policy; /* how hard each call of this client tries */
    int aborted;                  /* set once by s3_abort; read atomically */
};

/* The SSE headers every write carries (and presigned PUTs sign), into h
 * (room for 2); returns how many. */
size_t s3_sse_headers(const struct s3 *s3, struct sigv4_pair *h);

#endif
