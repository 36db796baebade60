/* s3_list.h - the ListObjectsV2 parser: one XML page into struct s3_list.
 *
 * No I/O and no client: s3_list_objects fetches the page, this reads it,
 * so the parser can be unit-tested and fuzzed on bytes alone. */
#ifndef RESIZER_S3_LIST_H
#define RESIZER_S3_LIST_H

#include <stddef.h>

#include "err.h"
#include "s3.h"

/* Parses one ListObjectsV2 page (encoding-type=url) of len bytes (not
 * NUL-terminated: nothing past xml + len is read) into *out, which the
 * caller zeroes; s3_list_cleanup frees it, also after an error. Keys are
 * URL-decoded, ETags unquoted. Items with an empty or over-long key are
 * skipped. RZ_EINVAL for a malformed item, or a truncated page whose
 * NextContinuationToken is missing, empty or equal to prev_token (the
 * token that asked for this page, may be NULL): a caller following it
 * would loop forever. RZ_ENOMEM. */
enum rz_err s3_list_parse(const char *xml, size_t len, const char *prev_token,
                          struct s3_list *out);

#endif
