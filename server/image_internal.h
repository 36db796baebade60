/* image_internal.h - internal steps of image.c that unit tests call. */
#ifndef RESIZER_IMAGE_INTERNAL_H
#define RESIZER_IMAGE_INTERNAL_H

#ifdef RESIZER_UNITTEST

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* 1 if width x height x pages is over max_pixels (no overflow). */
int image_over_limit(uint64_t width, uint64_t height, uint64_t pages, uint64_t max_pixels);

/* The JPEG/WebP shrink-on-load factor (1, 2, 4, 8) for src_width -> target_width. */
int image_shrink_factor(int src_width, int target_width);

/* A variant's size: target_width, never above src_width, height to keep
 * the aspect ratio (at least 1). */
void image_variant_size(int src_width, int src_height, int target_width, int *width_out,
                        int *height_out);

/* Removes EXIF, XMP and ICCP chunks from a WebP file in place; returns
 * the new length (len unchanged if buf is not a WebP it understands). */
size_t image_webp_strip_chunks(unsigned char *buf, size_t len);

struct image_info;

/* Reads the header only. RZ_EUNSUPPORTED, RZ_EPIXELS (over max_pixels),
 * RZ_ECORRUPT. On error, msg (if not NULL) gets a human sentence. */
enum rz_err image_probe(const void *data, size_t len, uint64_t max_pixels,
                        struct image_info *info_out, char *msg, size_t msglen);

#endif
#endif
