/* variants.h - the VARIANTS and OUTPUT_FORMATS grammars.
 *
 *   VARIANTS       = item *("," item)
 *   item           = name ":" WIDTH [ "x" HEIGHT [ ":" ("inside" | "cover") ] ]
 *   OUTPUT_FORMATS = format *("," format), format = same | jpeg | webp | avif | png
 *
 * Names become key prefixes in the destination bucket: [a-z0-9_-], starting
 * with a letter or digit, so no name can be _status/ (the status records)
 * or, once checked against SRC_PREFIX, the uploads' prefix. Messages name
 * the part that is wrong. */
#ifndef RESIZER_VARIANTS_H
#define RESIZER_VARIANTS_H

#include <stddef.h>

#include "err.h"
#include "image.h"

#define VARIANTS_MAX_SIDE 16384

/* Parses a VARIANTS value into out (IMAGE_MAX_VARIANTS entries); *n_out
 * gets the count. RZ_EINVAL with why set, e.g.
 * "\"thumb:256x0:cover\": the height must be from 1 to 16384". */
enum rz_err variants_parse_list(const char *value, struct image_variant_spec *out, size_t *n_out,
                                char *why, size_t whylen);

/* Parses an OUTPUT_FORMATS value into out (IMAGE_MAX_OUTPUTS entries).
 * A format listed twice is refused: both would write the same keys. */
enum rz_err variants_parse_formats(const char *value, enum image_output *out, size_t *n_out,
                                   char *why, size_t whylen);

/* RZ_EINVAL (why names it) when a variant's name is the first segment of
 * src_prefix: its keys would sit among the uploads. */
enum rz_err variants_check_prefix(const struct image_variant_spec *v, size_t n,
                                  const char *src_prefix, char *why, size_t whylen);

#endif
