/* blurhash.h - the BlurHash encoder (github.com/woltapp/blurhash).
 *
 * A placeholder a client paints before the picture loads: a short base83
 * string holding the DC colour and a few cosine components of the image,
 * decoded by the authors' libraries (npm "blurhash", Swift, Kotlin...).
 * Pure computation on a small 8-bit sRGB buffer; no libvips. */
#ifndef RESIZER_BLURHASH_H
#define RESIZER_BLURHASH_H

#include <stddef.h>

#include "err.h"

#define BLURHASH_MIN_COMPONENTS 1
#define BLURHASH_MAX_COMPONENTS 9
/* 1 size flag + 1 max AC + 4 DC + 2 per AC component, and the NUL. */
#define BLURHASH_MAX_LEN (1 + 1 + 4 + 2 * (9 * 9 - 1) + 1)

/* Encodes width x height pixels of `channels` bytes each (3: RGB, 4: RGBA,
 * alpha ignored), rows `stride` bytes apart, with cx x cy components
 * (1..9 each) into out (BLURHASH_MAX_LEN bytes). The cost is
 * width * height * cx * cy, so callers pass a few dozen pixels a side.
 * RZ_EINVAL on bad arguments. */
enum rz_err blurhash_encode(const unsigned char *pixels, int width, int height, size_t stride,
                            int channels, int cx, int cy, char out[BLURHASH_MAX_LEN]);

#endif
