/* s3_internal.h - the ListObjectsV2 parser of s3.c, for unit tests. */
#ifndef RESIZER_S3_INTERNAL_H
#define RESIZER_S3_INTERNAL_H

#include "s3.h"

#ifdef RESIZER_UNITTEST

/* Parses one ListObjectsV2 page (encoding-type=url) of len bytes into *out
 * (zeroed by the caller; s3_list_cleanup frees it, also after an error).
 * Items with an empty key are skipped. RZ_EINVAL for a malformed item, or
 * a truncated page whose NextContinuationToken is missing, empty or equal
 * to prev_token (the token that asked for this page, may be NULL). */
enum rz_err s3_list_parse(const char *xml, size_t len, const char *prev_token,
                          struct s3_list *out);

#endif

#endif
