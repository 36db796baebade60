/* image.h - everything libvips does for the service.
 *
 * Sniffs the format from the bytes, checks the header against the pixel
 * limit before decoding, and makes the variants: EXIF orientation applied,
 * sRGB, metadata stripped, shrink-on-load, never upscaled, encoded per the
 * output format. Thread-safe once image_init() has run: workers call it
 * concurrently. */
#ifndef RESIZER_IMAGE_H
#define RESIZER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum image_format {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_WEBP,
    IMAGE_FORMAT_GIF,
    IMAGE_FORMAT_TIFF,
    IMAGE_FORMAT_AVIF,
    IMAGE_FORMAT_HEIF,
};

/* OUTPUT_FORMAT: "same" keeps the input's format where it can be saved. */
enum image_output {
    IMAGE_OUTPUT_SAME = 0,
    IMAGE_OUTPUT_JPEG,
    IMAGE_OUTPUT_WEBP,
    IMAGE_OUTPUT_AVIF,
    IMAGE_OUTPUT_PNG,
};

#define IMAGE_VARIANT_NAME_MAX 32
#define IMAGE_MAX_VARIANTS 8
#define IMAGE_MAX_OUTPUTS 5    /* same, jpeg, webp, avif, png */
#define IMAGE_BLURHASH_MAX 168 /* BLURHASH_MAX_LEN: 9x9 components */

/* How a variant fits its box (VARIANTS "name:WxH:fit"). */
enum image_fit {
    IMAGE_FIT_INSIDE = 0, /* within the box, aspect kept, never upscaled */
    IMAGE_FIT_COVER,      /* exactly the box, cropped where libvips' attention
                           * strategy finds the subject */
};

struct image_variant_spec {
    char name[IMAGE_VARIANT_NAME_MAX]; /* "desktop"; also the key prefix */
    int width;                         /* box width in pixels, > 0 */
    int height;                        /* box height; 0: any (width only) */
    enum image_fit fit;                /* COVER needs a height */
};

/* Borrowed by image_make_variants for the duration of the call. */
struct image_opts {
    const struct image_variant_spec *variants;
    size_t nvariants;                             /* 1..IMAGE_MAX_VARIANTS */
    enum image_output outputs[IMAGE_MAX_OUTPUTS]; /* every variant in each */
    size_t noutputs;                              /* 1..IMAGE_MAX_OUTPUTS */
    int jpeg_quality;                             /* 1..100 */
    int webp_quality;                             /* 1..100 */
    int avif_quality;                             /* 1..100, libheif's scale */
    int avif_effort;                              /* 0..9: CPU spent for fewer bytes */
    int blurhash_x;                               /* components, 1..9; 0 for no placeholder */
    int blurhash_y;
    uint64_t max_pixels;        /* width * height * pages limit */
    const char *watermark_text; /* NULL or "" for none */
    const void *watermark_png;  /* NULL for none; PNG bytes */
    size_t watermark_png_len;
};

/* What the header of the source says; the placeholder fields are set by
 * image_make_variants only (empty strings otherwise). */
struct image_info {
    enum image_format format;
    int width; /* after EXIF orientation */
    int height;
    int pages;       /* frames for GIF/WebP, 1 otherwise */
    size_t nresults; /* results image_make_variants wrote */
    char blurhash[IMAGE_BLURHASH_MAX];
    char dominant[8]; /* "#rrggbb" */
};

/* One encoded variant; data is malloc'd and owned by the struct. */
struct image_result {
    char name[IMAGE_VARIANT_NAME_MAX];
    enum image_format format;
    int width;
    int height;
    void *data;
    size_t len;
};

/* Starts libvips once per process (blocks untrusted loaders, sets cache
 * and concurrency for a server). argv0 may be NULL. RZ_EINTERNAL on failure. */
enum rz_err image_init(const char *argv0);

/* Shuts libvips down; call once at exit, after the workers have stopped. */
void image_shutdown(void);

/* Sniffs the format from the first bytes. IMAGE_FORMAT_UNKNOWN if it is
 * none we process (SVG, PDF, HTML, text, ...). */
enum image_format image_sniff(const void *data, size_t len);

/* The most results one call can write: nvariants x noutputs. */
size_t image_results_max(const struct image_opts *opts);

/* Makes every variant of the image in data in every output format, into
 * results_out (an array of image_results_max(opts) entries, to be released
 * with image_results_free): variant by variant in the order of
 * opts->variants, and for each the distinct formats the outputs give for
 * this input, in their order (info_out->nresults in all). Fills info_out
 * from the header, plus the BlurHash and dominant colour of the image,
 * taken from the decoded master (no second decode).
 * Errors: RZ_EUNSUPPORTED, RZ_EPIXELS, RZ_ECORRUPT, RZ_ENOMEM, RZ_EINTERNAL;
 * RZ_EINVAL if opts are out of range or watermark_png is not a readable PNG;
 * on error nothing is left allocated in results_out and msg says why. */
enum rz_err image_make_variants(const void *data, size_t len, const struct image_opts *opts,
                                struct image_info *info_out, struct image_result *results_out,
                                char *msg, size_t msglen);

/* Frees the data of n results; safe on zeroed entries. */
void image_results_free(struct image_result *results, size_t n);

/* The format a variant gets for this input under this output setting. */
enum image_format image_output_format(enum image_output output, enum image_format input);

/* "image/jpeg", ... ; "application/octet-stream" for UNKNOWN. */
const char *image_format_mime(enum image_format f);

/* "jpg", "png", "webp", "gif", "tiff", "avif", "heic"; NULL for UNKNOWN. */
const char *image_format_ext(enum image_format f);

/* "jpeg", "png", ... as used in status records; "unknown" for UNKNOWN. */
const char *image_format_name(enum image_format f);

/* The format for a Content-Type such as "image/jpeg" (parameters ignored,
 * case-insensitive); UNKNOWN for others. */
enum image_format image_format_from_mime(const char *mime);

/* 1 if this libvips build can load (and so we accept uploads of) f. */
int image_format_loadable(enum image_format f);

/* 1 if this libvips build can write output (same: always, it falls back). */
int image_output_writable(enum image_output output);

#endif
