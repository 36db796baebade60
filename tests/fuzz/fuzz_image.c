/* fuzz_image.c - uploads are hostile bytes: image_sniff and image_probe on
 * any input, and for small inputs image_make_variants, so the libvips
 * loaders we allow (JPEG, PNG, WebP, GIF, TIFF, HEIF) decode them. */
#include <string.h>

#include "server/image.h"
#include "server/image_internal.h"
#include "tests/fuzz/fuzz.h"

#define PROBE_MAX_PIXELS (50u * 1000 * 1000)
/* Small enough that a decompression bomb is refused, not decoded for
 * seconds; large enough for every committed seed. */
#define MAKE_MAX_PIXELS (4u * 1000 * 1000)
#define MAKE_MAX_INPUT (64 * 1024)

static const struct image_variant_spec variants[] = {
    {"small", 64, 0, IMAGE_FIT_INSIDE},
    {"tiny", 32, 0, IMAGE_FIT_INSIDE},
    {"box", 24, 16, IMAGE_FIT_COVER},
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(image_init((*argv)[0]) == RZ_OK);
    return 0;
}

static void check_info(const struct image_info *info, enum image_format sniffed,
                       uint64_t max_pixels)
{
    FUZZ_CHECK(info->format == sniffed);
    FUZZ_CHECK(info->width > 0 && info->height > 0 && info->pages >= 1);
    FUZZ_CHECK((uint64_t)info->width * (uint64_t)info->height * (uint64_t)info->pages <=
               max_pixels);
}

/* Each variant: never upscaled (a cover variant: exactly its box), in the
 * format the setting asks for, and bytes that sniff as that format. */
static void check_result(const struct image_result *r, const struct image_variant_spec *v,
                         const struct image_info *info)
{
    FUZZ_CHECK(strcmp(r->name, v->name) == 0);
    if (v->fit == IMAGE_FIT_COVER) {
        FUZZ_CHECK(r->width == v->width && r->height == v->height);
    } else {
        FUZZ_CHECK(r->width > 0 && r->width <= v->width && r->width <= info->width);
        FUZZ_CHECK(r->height > 0 && r->height <= info->height);
    }
    FUZZ_CHECK(r->format == image_output_format(IMAGE_OUTPUT_SAME, info->format));
    FUZZ_CHECK(r->data && r->len > 0);
    FUZZ_CHECK(image_sniff(r->data, r->len) == r->format);
}

static void fuzz_make(const uint8_t *data, size_t size, enum image_format sniffed)
{
    struct image_opts opts = {
        .variants = variants,
        .nvariants = NVARIANTS,
        .outputs = {IMAGE_OUTPUT_SAME},
        .noutputs = 1,
        .jpeg_quality = 80,
        .webp_quality = 80,
        .avif_quality = 50,
        .avif_effort = 0,
        .blurhash_x = 4,
        .blurhash_y = 3,
        .max_pixels = MAKE_MAX_PIXELS,
    };
    struct image_result results[NVARIANTS];
    struct image_info info;
    char msg[256];
    enum rz_err err;

    err = image_make_variants(data, size, &opts, &info, results, msg, sizeof(msg));
    if (err != RZ_OK) {
        FUZZ_CHECK(err != RZ_EINVAL && msg[0]);
        for (size_t i = 0; i < NVARIANTS; i++)
            FUZZ_CHECK(results[i].data == NULL);
        return;
    }
    check_info(&info, sniffed, MAKE_MAX_PIXELS);
    FUZZ_CHECK(info.nresults == NVARIANTS);
    FUZZ_CHECK(strlen(info.blurhash) == 4 + 2 * 4 * 3 && info.dominant[0] == '#');
    for (size_t i = 0; i < NVARIANTS; i++)
        check_result(&results[i], &variants[i], &info);
    image_results_free(results, NVARIANTS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum image_format sniffed = image_sniff(data, size);
    struct image_info info;
    char msg[256];
    enum rz_err err;

    err = image_probe(data, size, PROBE_MAX_PIXELS, &info, msg, sizeof(msg));
    if (err == RZ_OK)
        check_info(&info, sniffed, PROBE_MAX_PIXELS);
    else
        FUZZ_CHECK(err == RZ_EUNSUPPORTED || err == RZ_EPIXELS || err == RZ_ECORRUPT ||
                   err == RZ_ENOMEM);
    if (size <= MAKE_MAX_INPUT)
        fuzz_make(data, size, sniffed);
    return 0;
}
