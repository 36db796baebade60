/* err.h - the one error enum of the project.
 *
 * Core modules return these; only the HTTP layer maps them to statuses and
 * the job runner maps them to the failure codes of a status record. */
#ifndef RESIZER_ERR_H
#define RESIZER_ERR_H

enum rz_err {
    RZ_OK = 0,
    RZ_ENOMEM,       /* an allocation failed */
    RZ_EINVAL,       /* input is malformed (JSON, a header, a key, a value) */
    RZ_ETOOBIG,      /* input is over a size cap (body, object, field) */
    RZ_EAUTH,        /* missing or wrong credentials on a request to us */
    RZ_ENOTFOUND,    /* no such object, image or route */
    RZ_EDENIED,      /* the object store refused us (403) */
    RZ_EUPSTREAM,    /* the object store failed or was unreachable, after retries */
    RZ_EFULL,        /* a queue or table is full; try again later */
    RZ_ECONFLICT,    /* the request does not fit the current state */
    RZ_EUNSUPPORTED, /* the bytes are not an image format we process */
    RZ_EPIXELS,      /* the image has more pixels than MAX_PIXELS */
    RZ_ECORRUPT,     /* the image is truncated or corrupt */
    RZ_ELIMIT,       /* a variant is over its encoder's size limit (JPEG 65,500 px, ...) */
    RZ_ESHUTDOWN,    /* the service is draining and takes no new work */
    RZ_EINTERNAL,    /* a bug or an unexpected library failure */
};

/* A short stable name for logs, e.g. "ETOOBIG". Never NULL. */
const char *rz_err_name(enum rz_err err);

#endif
