/* negotiate.h - which stored format of a variant a client gets, from its
 * Accept header (RFC 9110 section 12.5.1).
 *
 * Modern formats are sent only to clients that name them: AVIF when Accept
 * lists image/avif, WebP when it lists image/webp. Wildcards (image/STAR
 * and STAR/STAR, STAR being the asterisk) and a missing Accept reach only
 * the fallback, the most widely shown format stored (JPEG, PNG or GIF, else
 * WebP, else AVIF), because browsers that cannot show WebP or AVIF still
 * send wildcards.
 * Among acceptable formats the highest q wins; on a tie AVIF, then WebP,
 * then the fallback. q=0 refuses a format, even one a wildcard allows. */
#ifndef RESIZER_NEGOTIATE_H
#define RESIZER_NEGOTIATE_H

#include <stddef.h>

#include "err.h"
#include "image.h"

/* Accept headers longer than this are refused (RZ_EINVAL): a client
 * cannot make the server parse an unbounded list. */
#define NEGOTIATE_MAX_ACCEPT 4096

/* Picks one of the n stored formats for accept (NULL: no header) into
 * *out. RZ_ENOTFOUND when none is acceptable (a 406), RZ_EINVAL for an
 * over-long header. */
enum rz_err negotiate_format(const char *accept, const enum image_format *stored, size_t n,
                             enum image_format *out);

/* The format a ?format= value names (jpeg, jpg, png, webp, avif, gif), or
 * UNKNOWN. */
enum image_format negotiate_format_param(const char *value);

#endif
