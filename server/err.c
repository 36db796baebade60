/* err.c - names of the project's error codes. */
#include "err.h"

const char *rz_err_name(enum rz_err err)
{
    switch (err) {
    case RZ_OK: return "OK";
    case RZ_ENOMEM: return "ENOMEM";
    case RZ_EINVAL: return "EINVAL";
    case RZ_ETOOBIG: return "ETOOBIG";
    case RZ_EAUTH: return "EAUTH";
    case RZ_ENOTFOUND: return "ENOTFOUND";
    case RZ_EDENIED: return "EDENIED";
    case RZ_EUPSTREAM: return "EUPSTREAM";
    case RZ_EFULL: return "EFULL";
    case RZ_ECONFLICT: return "ECONFLICT";
    case RZ_EUNSUPPORTED: return "EUNSUPPORTED";
    case RZ_EPIXELS: return "EPIXELS";
    case RZ_ECORRUPT: return "ECORRUPT";
    case RZ_ELIMIT: return "ELIMIT";
    case RZ_ESHUTDOWN: return "ESHUTDOWN";
    case RZ_EINTERNAL: return "EINTERNAL";
    }
    return "EUNKNOWN";
}
