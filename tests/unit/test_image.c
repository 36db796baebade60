/* test_image.c - what a user sees of the image module: the format is taken
 * from the bytes, hostile files get the right error, and every variant of a
 * valid file is upright, sRGB 8-bit, stripped, never upscaled, at the right
 * size, with alpha where the format keeps it, and a watermark only in its
 * corner. The corpus comes from tests/corpus/make_corpus.py. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib/gstdio.h>
#include <vips/vips.h>

#include "server/image.h"
#include "server/image_internal.h"

#define MAX_PIXELS 50000000ull

static char *corpus_dir;

static const struct image_variant_spec default_variants[] = {
    {"desktop", 1920, 0, IMAGE_FIT_INSIDE},
    {"tablet", 1024, 0, IMAGE_FIT_INSIDE},
    {"phone", 640, 0, IMAGE_FIT_INSIDE},
};
#define NDEFAULT (sizeof(default_variants) / sizeof(default_variants[0]))

/* ---- helpers ---- */

static void *read_corpus(const char *name, size_t *len)
{
    char *path = g_build_filename(corpus_dir, name, NULL);
    gchar *data = NULL;
    gsize n = 0;

    if (!g_file_get_contents(path, &data, &n, NULL))
        fail_msg("cannot read %s", path);
    g_free(path);
    *len = n;
    return data;
}

static struct image_opts default_opts(enum image_output output)
{
    struct image_opts o = {
        .variants = default_variants,
        .nvariants = NDEFAULT,
        .outputs = {output},
        .noutputs = 1,
        .jpeg_quality = 85,
        .webp_quality = 80,
        .avif_quality = 52,
        .avif_effort = 1,
        .max_pixels = MAX_PIXELS,
    };
    return o;
}

/* Decodes a result with the generic loader, as a browser would, into
 * memory, so the image outlives r->data. */
static VipsImage *decode(const struct image_result *r)
{
    VipsImage *lazy = vips_image_new_from_buffer(r->data, r->len, "", NULL);
    VipsImage *img = lazy ? vips_image_copy_memory(lazy) : NULL;

    if (!img)
        fail_msg("variant %s does not decode: %s", r->name, vips_error_buffer());
    g_object_unref(lazy);
    return img;
}

static double band_mean(VipsImage *img, int band)
{
    VipsImage *b = NULL;
    double m = -1;

    assert_int_equal(vips_extract_band(img, &b, band, NULL), 0);
    assert_int_equal(vips_avg(b, &m, NULL), 0);
    g_object_unref(b);
    return m;
}

static double pixel(VipsImage *img, int x, int y, int band)
{
    double *v = NULL;
    int n = 0;
    double out;

    assert_int_equal(vips_getpoint(img, &v, &n, x, y, NULL), 0);
    assert_true(band < n);
    out = v[band];
    g_free(v);
    return out;
}

/* ---- setup: libvips and a fresh corpus ---- */

static void remove_corpus(void)
{
    GDir *dir = g_dir_open(corpus_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir)) != NULL) {
        char *path = g_build_filename(corpus_dir, name, NULL);

        g_remove(path);
        g_free(path);
    }
    if (dir)
        g_dir_close(dir);
    g_rmdir(corpus_dir);
    g_free(corpus_dir);
    corpus_dir = NULL;
}

static int group_setup(void **state)
{
    const char *src = getenv("RESIZER_SOURCE_DIR");
    char cmd[2048];

    (void)state;
    if (image_init("test_image") != RZ_OK)
        return -1;
    corpus_dir = g_dir_make_tmp("rz-image-XXXXXX", NULL);
    if (!corpus_dir)
        return -1;
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/tests/corpus/make_corpus.py' '%s' >/dev/null",
             src ? src : ".", corpus_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "corpus script failed (is RESIZER_SOURCE_DIR set?): %s\n", cmd);
        remove_corpus();
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    remove_corpus();
    image_shutdown();
    return 0;
}

/* ---- pure helpers ---- */

static void test_sniff_from_bytes(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        enum image_format want;
    } cases[] = {
        {"\xFF\xD8\xFF\xE0\0\x10JFIF\0\1", 12, IMAGE_FORMAT_JPEG},
        {"\x89PNG\r\n\x1a\n\0\0\0\x0d", 12, IMAGE_FORMAT_PNG},
        {"GIF89a\1\0\1\0\0\0", 12, IMAGE_FORMAT_GIF},
        {"GIF87a\1\0\1\0\0\0", 12, IMAGE_FORMAT_GIF},
        {"RIFF\0\0\0\0WEBPVP8 ", 16, IMAGE_FORMAT_WEBP},
        {"RIFF\0\0\0\0WAVEfmt ", 16, IMAGE_FORMAT_UNKNOWN},
        {"II*\0\x08\0\0\0\0\0\0\0", 12, IMAGE_FORMAT_TIFF},
        {"MM\0*\0\0\0\x08\0\0\0\0", 12, IMAGE_FORMAT_TIFF},
        {"\0\0\0\x1c"
         "ftypavif\0\0\0\0mif1miaf",
         28, IMAGE_FORMAT_AVIF},
        {"\0\0\0\x1c"
         "ftypmif1\0\0\0\0mif1avif",
         28, IMAGE_FORMAT_AVIF},
        {"\0\0\0\x18"
         "ftypheic\0\0\0\0mif1",
         24, IMAGE_FORMAT_HEIF},
        {"\0\0\0\x18"
         "ftypmif1\0\0\0\0heic",
         24, IMAGE_FORMAT_HEIF},
        /* an MP4 video, and a brand past the end of the ftyp box */
        {"\0\0\0\x18"
         "ftypisom\0\0\0\0mp41",
         24, IMAGE_FORMAT_UNKNOWN},
        {"\0\0\0\x10"
         "ftypmif1\0\0\0\0heic",
         20, IMAGE_FORMAT_UNKNOWN},
        {"<?xml version=\"1.0\"?><svg", 25, IMAGE_FORMAT_UNKNOWN},
        {"<svg xmlns=\"http://www.w3.org/2000/svg\">", 40, IMAGE_FORMAT_UNKNOWN},
        {"%PDF-1.4\n%\xe2\xe3", 12, IMAGE_FORMAT_UNKNOWN},
        {"<!DOCTYPE html><html>", 21, IMAGE_FORMAT_UNKNOWN},
        {"BM\0\0\0\0\0\0\0\0\0\0", 12, IMAGE_FORMAT_UNKNOWN},
        {"\xFF\xD8\xFF", 3, IMAGE_FORMAT_UNKNOWN}, /* too short to be an image */
        {"", 0, IMAGE_FORMAT_UNKNOWN},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum image_format got = image_sniff(cases[i].bytes, cases[i].len);

        if (got != cases[i].want)
            fail_msg("case %zu: sniffed %s, want %s", i, image_format_name(got),
                     image_format_name(cases[i].want));
    }
    assert_int_equal(image_sniff(NULL, 100), IMAGE_FORMAT_UNKNOWN);
}

static void test_format_names(void **state)
{
    static const struct {
        enum image_format f;
        const char *mime, *ext, *name;
    } cases[] = {
        {IMAGE_FORMAT_JPEG, "image/jpeg", "jpg", "jpeg"},
        {IMAGE_FORMAT_PNG, "image/png", "png", "png"},
        {IMAGE_FORMAT_WEBP, "image/webp", "webp", "webp"},
        {IMAGE_FORMAT_GIF, "image/gif", "gif", "gif"},
        {IMAGE_FORMAT_TIFF, "image/tiff", "tiff", "tiff"},
        {IMAGE_FORMAT_AVIF, "image/avif", "avif", "avif"},
        {IMAGE_FORMAT_HEIF, "image/heic", "heic", "heif"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(image_format_mime(cases[i].f), cases[i].mime);
        assert_string_equal(image_format_ext(cases[i].f), cases[i].ext);
        assert_string_equal(image_format_name(cases[i].f), cases[i].name);
        assert_int_equal(image_format_from_mime(cases[i].mime), cases[i].f);
    }
    assert_string_equal(image_format_mime(IMAGE_FORMAT_UNKNOWN), "application/octet-stream");
    assert_null(image_format_ext(IMAGE_FORMAT_UNKNOWN));
    assert_string_equal(image_format_name(IMAGE_FORMAT_UNKNOWN), "unknown");
}

static void test_format_from_mime(void **state)
{
    static const struct {
        const char *mime;
        enum image_format want;
    } cases[] = {
        {"IMAGE/JPEG", IMAGE_FORMAT_JPEG},
        {"image/jpeg; charset=binary", IMAGE_FORMAT_JPEG},
        {"  image/png ;q=1", IMAGE_FORMAT_PNG},
        {"image/jpg", IMAGE_FORMAT_JPEG},
        {"image/heif", IMAGE_FORMAT_HEIF},
        {"image/svg+xml", IMAGE_FORMAT_UNKNOWN},
        {"application/pdf", IMAGE_FORMAT_UNKNOWN},
        {"text/html", IMAGE_FORMAT_UNKNOWN},
        {"image/jpegx", IMAGE_FORMAT_UNKNOWN},
        {"image/jpe", IMAGE_FORMAT_UNKNOWN},
        {"", IMAGE_FORMAT_UNKNOWN},
        {NULL, IMAGE_FORMAT_UNKNOWN},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (image_format_from_mime(cases[i].mime) != cases[i].want)
            fail_msg("case %zu (%s)", i, cases[i].mime ? cases[i].mime : "NULL");
    }
}

static void test_loadable_and_output_format(void **state)
{
    (void)state;
    assert_true(image_format_loadable(IMAGE_FORMAT_JPEG));
    assert_true(image_format_loadable(IMAGE_FORMAT_PNG));
    assert_true(image_format_loadable(IMAGE_FORMAT_WEBP));
    assert_true(image_format_loadable(IMAGE_FORMAT_GIF));
    assert_true(image_format_loadable(IMAGE_FORMAT_TIFF));
    assert_false(image_format_loadable(IMAGE_FORMAT_UNKNOWN));
    {
        /* defence in depth: after image_init no code path can reach the
         * SVG or PDF loaders, even by calling them by name */
        static const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\" "
                                  "width=\"10\" height=\"10\"/>";
        VipsImage *x = NULL;

        assert_int_not_equal(vips_svgload_buffer((void *)svg, sizeof(svg) - 1, &x, NULL), 0);
        assert_null(x);
        assert_null(vips_image_new_from_buffer(svg, sizeof(svg) - 1, "", NULL));
        vips_error_clear();
    }

    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_JPEG),
                     IMAGE_FORMAT_JPEG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_PNG), IMAGE_FORMAT_PNG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_WEBP),
                     IMAGE_FORMAT_WEBP);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_TIFF),
                     IMAGE_FORMAT_JPEG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_HEIF),
                     IMAGE_FORMAT_JPEG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_UNKNOWN),
                     IMAGE_FORMAT_JPEG);
    /* GIF stays GIF where libvips can write it (cgif), else PNG */
    assert_int_equal(image_output_format(IMAGE_OUTPUT_SAME, IMAGE_FORMAT_GIF),
                     vips_type_find("VipsOperation", "gifsave_buffer") ? IMAGE_FORMAT_GIF
                                                                       : IMAGE_FORMAT_PNG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_JPEG, IMAGE_FORMAT_PNG),
                     IMAGE_FORMAT_JPEG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_WEBP, IMAGE_FORMAT_JPEG),
                     IMAGE_FORMAT_WEBP);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_PNG, IMAGE_FORMAT_GIF), IMAGE_FORMAT_PNG);
    assert_int_equal(image_output_format(IMAGE_OUTPUT_AVIF, IMAGE_FORMAT_JPEG),
                     IMAGE_FORMAT_AVIF);
}

static void test_pixel_limit_arithmetic(void **state)
{
    static const struct {
        uint64_t w, h, pages, max;
        int over;
    } cases[] = {
        {1000, 1000, 1, 1000000, 0},
        {1000, 1001, 1, 1000000, 1},
        {1000, 500, 2, 1000000, 0},
        {1000, 500, 3, 1000000, 1},
        {60000, 60000, 1, 50000000, 1},
        /* a frame count that would overflow a plain product */
        {10000000, 10000000, 2000000000, UINT64_MAX / 2, 1},
        {0, 1000, 1, 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (image_over_limit(cases[i].w, cases[i].h, cases[i].pages, cases[i].max) !=
            cases[i].over)
            fail_msg("case %zu", i);
    }
}

static void test_shrink_factor_never_below_target(void **state)
{
    static const int cases[][3] = {
        /* src, target, factor: the decoded width src/factor stays >= target */
        {4000, 1920, 2}, {3839, 1920, 1}, {3840, 1920, 2}, {4608, 1920, 2},
        {9216, 1920, 4}, {4000, 1000, 4}, {8000, 1000, 8}, {64000, 1000, 8},
        {500, 1920, 1},  {1999, 1000, 1}, {0, 1000, 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(image_shrink_factor(cases[i][0], cases[i][1]), cases[i][2]);
}

static void test_variant_size_never_upscales(void **state)
{
    static const int cases[][5] = {
        /* src w, src h, target, w, h */
        {2000, 1500, 1920, 1920, 1440}, {2000, 1500, 640, 640, 480},
        {500, 375, 1920, 500, 375},     {1500, 2000, 1024, 1024, 1365},
        {3000, 1, 640, 640, 1},         {1001, 1000, 1000, 1000, 999},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int w = 0, h = 0;

        image_variant_size(cases[i][0], cases[i][1], cases[i][2], &w, &h);
        if (w != cases[i][3] || h != cases[i][4])
            fail_msg("case %zu: %dx%d", i, w, h);
    }
}

static void test_webp_strip_chunks(void **state)
{
    /* RIFF WEBP: VP8X (flags ICC|alpha|EXIF|XMP), ICCP (odd size, padded),
     * VP8, EXIF, XMP */
    static const unsigned char in[] = {
        'R', 'I', 'F', 'F', 66,  0,    0,   0,   'W', 'E', 'B', 'P', 'V', 'P', '8',
        'X', 10,  0,   0,   0,   0x3C, 0,   0,   0,   1,   0,   0,   1,   0,   0,
        'I', 'C', 'C', 'P', 3,   0,    0,   0,   'i', 'c', 'c', 0,   'V', 'P', '8',
        ' ', 4,   0,   0,   0,   'p',  'i', 'x', '!', 'E', 'X', 'I', 'F', 2,   0,
        0,   0,   'e', 'x', 'X', 'M',  'P', ' ', 2,   0,   0,   0,   'x', 'm',
    };
    static const unsigned char want[] = {
        'R', 'I', 'F', 'F', 34,  0,   0,    0, 'W', 'E', 'B', 'P', 'V', 'P',
        '8', 'X', 10,  0,   0,   0,   0x10, 0, 0,   0,   1,   0,   0,   1,
        0,   0,   'V', 'P', '8', ' ', 4,    0, 0,   0,   'p', 'i', 'x', '!',
    };
    unsigned char buf[sizeof(in)];
    size_t n;

    (void)state;
    memcpy(buf, in, sizeof(in));
    n = image_webp_strip_chunks(buf, sizeof(in));
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    /* a chunk running past the end: left alone */
    memcpy(buf, in, sizeof(in));
    buf[16] = 200;
    assert_int_equal(image_webp_strip_chunks(buf, sizeof(in)), sizeof(in));
    assert_int_equal(image_webp_strip_chunks((unsigned char *)"RIFF", 4), 4);
}

/* ---- the corpus, file by file ---- */

enum alpha_rule { ALPHA_ANY, ALPHA_NONE, ALPHA_KEPT };

static const struct corpus_case {
    const char *file;
    enum image_format sniffed;
    enum rz_err err;
    int width, height; /* as displayed, after EXIF orientation */
    enum image_format out;
    enum alpha_rule alpha;
} corpus[] = {
    {"photo.jpg", IMAGE_FORMAT_JPEG, RZ_OK, 2000, 1500, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"photo_orient6.jpg", IMAGE_FORMAT_JPEG, RZ_OK, 1500, 2000, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"small.jpg", IMAGE_FORMAT_JPEG, RZ_OK, 500, 375, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"alpha.png", IMAGE_FORMAT_PNG, RZ_OK, 1200, 900, IMAGE_FORMAT_PNG, ALPHA_KEPT},
    {"photo.webp", IMAGE_FORMAT_WEBP, RZ_OK, 1200, 900, IMAGE_FORMAT_WEBP, ALPHA_KEPT},
    {"anim.gif", IMAGE_FORMAT_GIF, RZ_OK, 400, 300, IMAGE_FORMAT_UNKNOWN, ALPHA_ANY},
    {"photo16.tif", IMAGE_FORMAT_TIFF, RZ_OK, 1200, 900, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"photo16.png", IMAGE_FORMAT_PNG, RZ_OK, 800, 600, IMAGE_FORMAT_PNG, ALPHA_KEPT},
    {"cmyk_icc.jpg", IMAGE_FORMAT_JPEG, RZ_OK, 800, 600, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"cmyk_noicc.jpg", IMAGE_FORMAT_JPEG, RZ_OK, 800, 600, IMAGE_FORMAT_JPEG, ALPHA_NONE},
    {"empty.jpg", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"text.jpg", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"truncated.jpg", IMAGE_FORMAT_JPEG, RZ_ECORRUPT, 0, 0, 0, 0},
    {"truncated.png", IMAGE_FORMAT_PNG, RZ_ECORRUPT, 0, 0, 0, 0},
    {"bomb.png", IMAGE_FORMAT_PNG, RZ_EPIXELS, 0, 0, 0, 0},
    {"bomb.jpg", IMAGE_FORMAT_JPEG, RZ_EPIXELS, 0, 0, 0, 0},
    {"image.svg", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"svg_as.jpg", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"doc.pdf", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"pdf_as.jpg", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
    {"page.html", IMAGE_FORMAT_UNKNOWN, RZ_EUNSUPPORTED, 0, 0, 0, 0},
};

static void check_no_metadata(const char *what, VipsImage *img)
{
    static const char *const fields[] = {"exif-data", "xmp-data", "icc-profile-data",
                                         "iptc-data", NULL};

    for (size_t i = 0; fields[i]; i++) {
        if (vips_image_get_typeof(img, fields[i]) != 0)
            fail_msg("%s still carries %s", what, fields[i]);
    }
    assert_int_equal(vips_image_get_orientation(img), 1);
}

static void check_alpha(const char *what, VipsImage *img, enum image_format out,
                        enum alpha_rule rule)
{
    if (out == IMAGE_FORMAT_JPEG || rule == ALPHA_NONE) {
        if (img->Bands != 3)
            fail_msg("%s: %d bands, want 3 (no alpha)", what, img->Bands);
    } else if (rule == ALPHA_KEPT) {
        double min = 0;
        VipsImage *a = NULL;

        if (img->Bands != 4)
            fail_msg("%s: %d bands, want alpha kept", what, img->Bands);
        assert_int_equal(vips_extract_band(img, &a, 3, NULL), 0);
        assert_int_equal(vips_min(a, &min, NULL), 0);
        g_object_unref(a);
        if (min > 10)
            fail_msg("%s: alpha is all opaque (min %.0f)", what, min);
    }
}

static void check_variant(const struct corpus_case *c, const struct image_variant_spec *spec,
                          const struct image_result *r, enum image_format want_fmt,
                          enum alpha_rule alpha)
{
    char what[192];
    VipsImage *img;
    int want_w = spec->width < c->width ? spec->width : c->width;
    double want_h = (double)c->height * r->width / c->width;

    snprintf(what, sizeof(what), "%s/%s", c->file, spec->name);
    assert_string_equal(r->name, spec->name);
    assert_non_null(r->data);
    if (r->format != want_fmt || image_sniff(r->data, r->len) != want_fmt)
        fail_msg("%s: format %s, bytes sniff as %s, want %s", what, image_format_name(r->format),
                 image_format_name(image_sniff(r->data, r->len)), image_format_name(want_fmt));
    if (r->width != want_w || r->width > spec->width)
        fail_msg("%s: width %d, want %d", what, r->width, want_w);
    if (r->height < want_h - 1 || r->height > want_h + 1)
        fail_msg("%s: height %d, want %.1f (aspect)", what, r->height, want_h);
    /* the source's EXIF camera make must not survive in any form */
    if (memmem(r->data, r->len, "ResizerTestCam", 14) != NULL)
        fail_msg("%s: the source EXIF is in the output bytes", what);
    img = decode(r);
    if (img->Xsize != r->width || img->Ysize != r->height)
        fail_msg("%s: decodes as %dx%d, result says %dx%d", what, img->Xsize, img->Ysize,
                 r->width, r->height);
    if (img->BandFmt != VIPS_FORMAT_UCHAR || img->Type != VIPS_INTERPRETATION_sRGB)
        fail_msg("%s: not 8-bit sRGB", what);
    check_no_metadata(what, img);
    check_alpha(what, img, want_fmt, alpha);
    g_object_unref(img);
}

static void test_corpus_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
        const struct corpus_case *c = &corpus[i];
        struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
        struct image_result r[NDEFAULT];
        struct image_info info;
        char msg[256] = "";
        size_t len;
        void *data = read_corpus(c->file, &len);
        enum image_format want_fmt;
        enum rz_err err;

        if (image_sniff(data, len) != c->sniffed)
            fail_msg("%s: sniffed %s", c->file, image_format_name(image_sniff(data, len)));
        err = image_make_variants(data, len, &o, &info, r, msg, sizeof(msg));
        if (err != c->err)
            fail_msg("%s: %s (%s), want %s", c->file, rz_err_name(err), msg,
                     rz_err_name(c->err));
        if (err != RZ_OK) {
            assert_true(msg[0] != '\0');
            for (size_t k = 0; k < NDEFAULT; k++)
                assert_null(r[k].data);
            g_free(data);
            continue;
        }
        assert_int_equal(info.format, c->sniffed);
        if (info.width != c->width || info.height != c->height)
            fail_msg("%s: info %dx%d, want %dx%d", c->file, info.width, info.height, c->width,
                     c->height);
        want_fmt = c->out != IMAGE_FORMAT_UNKNOWN
                       ? c->out
                       : image_output_format(IMAGE_OUTPUT_SAME, c->sniffed);
        for (size_t k = 0; k < NDEFAULT; k++)
            check_variant(c, &default_variants[k], &r[k], want_fmt, c->alpha);
        image_results_free(r, NDEFAULT);
        g_free(data);
    }
}

/* Makes only the 640 px "phone" variant of file with opts; returns it decoded. */
static VipsImage *phone_of(const char *file, const struct image_opts *opts)
{
    struct image_opts o = *opts;
    struct image_result r[1];
    struct image_info info;
    char msg[256] = "";
    size_t len;
    void *data = read_corpus(file, &len);
    VipsImage *img;

    o.variants = &default_variants[2];
    o.nvariants = 1;
    if (image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
        fail_msg("%s: %s", file, msg);
    assert_string_equal(r[0].name, "phone");
    img = decode(&r[0]);
    image_results_free(r, 1);
    g_free(data);
    return img;
}

static void test_orientation_puts_marker_top_right(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_PNG);
    VipsImage *img = phone_of("photo_orient6.jpg", &o);

    (void)state;
    assert_int_equal(img->Xsize, 640);
    assert_int_equal(img->Ysize, 853);
    /* the stored top-left red block, rotated 90 degrees clockwise */
    assert_true(pixel(img, img->Xsize - 20, 20, 0) > 200);
    assert_true(pixel(img, img->Xsize - 20, 20, 1) < 60);
    assert_false(pixel(img, 20, 20, 0) > 200 && pixel(img, 20, 20, 1) < 60);
    assert_false(pixel(img, 20, img->Ysize - 20, 0) > 200 &&
                 pixel(img, 20, img->Ysize - 20, 1) < 60);
    g_object_unref(img);
}

/* Variants small enough that the loader shrinks on load (JPEG DCT scaling,
 * WebP scale), orientation included: sizes stay exact. */
static void test_shrink_on_load_paths(void **state)
{
    static const struct {
        const char *file;
        int target, w, h, marker;
    } cases[] = {
        {"photo_orient6.jpg", 300, 300, 400, 1}, /* shrink 2, then rotate */
        {"photo.jpg", 120, 120, 90, 0},          /* shrink 8 */
        {"photo.webp", 200, 200, 150, 0},        /* scale 0.5 */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct image_variant_spec one[] = {{"one", cases[i].target, 0, IMAGE_FIT_INSIDE}};
        struct image_opts o = default_opts(IMAGE_OUTPUT_PNG);
        struct image_result r[1];
        struct image_info info;
        char msg[256] = "";
        size_t len;
        void *data = read_corpus(cases[i].file, &len);
        VipsImage *img;

        o.variants = one;
        o.nvariants = 1;
        if (image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
            fail_msg("%s: %s", cases[i].file, msg);
        img = decode(&r[0]);
        if (img->Xsize != cases[i].w || img->Ysize != cases[i].h)
            fail_msg("%s: %dx%d", cases[i].file, img->Xsize, img->Ysize);
        if (cases[i].marker)
            assert_true(pixel(img, img->Xsize - 5, 5, 0) > 200 &&
                        pixel(img, img->Xsize - 5, 5, 1) < 60);
        g_object_unref(img);
        image_results_free(r, 1);
        g_free(data);
    }
}

static void test_gif_gives_first_frame(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    VipsImage *img = phone_of("anim.gif", &o);

    (void)state;
    /* frame 0 is blue with a yellow square; the later frames are red */
    assert_true(pixel(img, 10, 10, 2) > 200);
    assert_true(pixel(img, 10, 10, 0) < 60);
    assert_true(pixel(img, 200, 150, 0) > 200 && pixel(img, 200, 150, 1) > 200);
    g_object_unref(img);
}

/* CMYK (with and without a profile) and 16-bit inputs come out with the
 * colours of the same picture saved as plain 8-bit sRGB. CMYK may move a
 * little (the round trip through ink clips the gamut); an inverted or
 * misread CMYK would be off by a hundred levels. */
static void test_colour_conversions_keep_colours(void **state)
{
    static const struct {
        const char *file, *reference;
        double tolerance;
    } cases[] = {
        {"cmyk_icc.jpg", "photo.jpg", 15},
        {"cmyk_noicc.jpg", "photo.jpg", 15},
        {"photo16.tif", "photo.jpg", 2},
        {"photo16.png", "alpha.png", 2},
    };
    struct image_opts o = default_opts(IMAGE_OUTPUT_JPEG);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        VipsImage *ref = phone_of(cases[i].reference, &o);
        VipsImage *img = phone_of(cases[i].file, &o);

        for (int b = 0; b < 3; b++) {
            double want = band_mean(ref, b), got = band_mean(img, b);

            if (got < want - cases[i].tolerance || got > want + cases[i].tolerance)
                fail_msg("%s band %d mean %.1f, the sRGB original's is %.1f", cases[i].file, b,
                         got, want);
        }
        g_object_unref(img);
        g_object_unref(ref);
    }
}

static void test_jpeg_output_flattens_alpha_on_white(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_JPEG);
    VipsImage *img = phone_of("alpha.png", &o);

    (void)state;
    assert_int_equal(img->Bands, 3);
    /* alpha is 0 at the left edge */
    for (int b = 0; b < 3; b++)
        assert_true(pixel(img, 1, img->Ysize / 2, b) > 240);
    g_object_unref(img);
}

/* An AVIF upload: read through libheif, and "same" keeps it AVIF. */
static void check_avif_input(const struct image_result *avif)
{
    struct image_variant_spec one[] = {{"one", 1000, 0, IMAGE_FIT_INSIDE}};
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    struct image_result r[1];
    struct image_info info;
    char msg[256] = "";

    o.variants = one;
    o.nvariants = 1;
    if (image_make_variants(avif->data, avif->len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
        fail_msg("AVIF input: %s", msg);
    assert_int_equal(info.format, IMAGE_FORMAT_AVIF);
    assert_int_equal(r[0].format, IMAGE_FORMAT_AVIF);
    assert_int_equal(r[0].width, 320); /* never upscaled */
    assert_int_equal(r[0].height, 240);
    image_results_free(r, 1);
}

/* Opaque white next to fully transparent black: shrunk, the edge pixels
 * must stay white (premultiplied resize), not turn grey. */
static void test_alpha_edges_have_no_dark_fringe(void **state)
{
    struct image_variant_spec one[] = {{"one", 100, 0, IMAGE_FIT_INSIDE}};
    struct image_opts o = default_opts(IMAGE_OUTPUT_PNG);
    struct image_result r[1];
    struct image_info info;
    char msg[256] = "";
    VipsImage *black = NULL, *white = NULL, *both = NULL, *img;
    void *png = NULL;
    size_t png_len = 0;
    int found = 0;

    (void)state;
    /* the edge off the 4-pixel grid of the shrink, so some pixels straddle it */
    assert_int_equal(vips_black(&black, 202, 100, "bands", 4, NULL), 0);
    assert_int_equal(vips_linear1(black, &white, 1, 255, "uchar", TRUE, NULL), 0);
    assert_int_equal(vips_join(black, white, &both, VIPS_DIRECTION_HORIZONTAL, NULL), 0);
    both->Type = VIPS_INTERPRETATION_sRGB;
    assert_int_equal(vips_pngsave_buffer(both, &png, &png_len, NULL), 0);
    o.variants = one;
    o.nvariants = 1;
    if (image_make_variants(png, png_len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
        fail_msg("%s", msg);
    img = decode(&r[0]);
    for (int x = 0; x < img->Xsize; x++) {
        double a = pixel(img, x, img->Ysize / 2, 3);

        if (a > 5 && a < 250) {
            found = 1;
            if (pixel(img, x, img->Ysize / 2, 0) < 235)
                fail_msg("x=%d alpha %.0f: red %.0f, a dark fringe", x, a,
                         pixel(img, x, img->Ysize / 2, 0));
        }
    }
    assert_true(found);
    g_object_unref(img);
    image_results_free(r, 1);
    g_free(png);
    g_object_unref(both);
    g_object_unref(white);
    g_object_unref(black);
}

static void test_forced_outputs(void **state)
{
    static const struct {
        enum image_output output;
        enum image_format want;
    } cases[] = {
        {IMAGE_OUTPUT_WEBP, IMAGE_FORMAT_WEBP},
        {IMAGE_OUTPUT_PNG, IMAGE_FORMAT_PNG},
        {IMAGE_OUTPUT_AVIF, IMAGE_FORMAT_AVIF},
    };
    const struct image_variant_spec one[] = {{"thumb", 320, 0, IMAGE_FIT_INSIDE}};
    size_t len;
    void *data = read_corpus("photo.jpg", &len);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct image_opts o = default_opts(cases[i].output);
        struct image_result r[1];
        struct image_info info;
        char msg[256] = "";
        VipsImage *img;

        if (cases[i].want == IMAGE_FORMAT_AVIF &&
            !vips_type_find("VipsOperation", "heifsave_buffer"))
            continue;
        o.variants = one;
        o.nvariants = 1;
        if (image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
            fail_msg("case %zu: %s", i, msg);
        assert_int_equal(r[0].format, cases[i].want);
        assert_int_equal(image_sniff(r[0].data, r[0].len), cases[i].want);
        assert_null(memmem(r[0].data, r[0].len, "ResizerTestCam", 14));
        img = decode(&r[0]);
        assert_int_equal(img->Xsize, 320);
        assert_int_equal(img->Ysize, 240);
        check_no_metadata(image_format_name(cases[i].want), img);
        g_object_unref(img);
        if (cases[i].want == IMAGE_FORMAT_AVIF)
            check_avif_input(&r[0]);
        image_results_free(r, 1);
    }
    g_free(data);
}

/* Absolute per-pixel difference of two decoded variants, as one band. */
static VipsImage *diff_of(VipsImage *a, VipsImage *b)
{
    VipsImage *d = NULL, *ad = NULL, *m = NULL;

    assert_int_equal(vips_subtract(a, b, &d, NULL), 0);
    assert_int_equal(vips_abs(d, &ad, NULL), 0);
    assert_int_equal(vips_bandbool(ad, &m, VIPS_OPERATION_BOOLEAN_OR, NULL), 0);
    g_object_unref(d);
    g_object_unref(ad);
    return m;
}

static double area_max(VipsImage *img, int x, int y, int w, int h)
{
    VipsImage *a = NULL;
    double m = -1;

    assert_int_equal(vips_extract_area(img, &a, x, y, w, h, NULL), 0);
    assert_int_equal(vips_max(a, &m, NULL), 0);
    g_object_unref(a);
    return m;
}

/* Runs file twice, without and with the watermark; for every variant the
 * pixels differ only in the bottom-right quarter. Returns the width of the
 * changed area of each variant in changed_w, and its width in variant_w. */
static const struct image_variant_spec watermark_variants[] = {
    {"large", 960, 0, IMAGE_FIT_INSIDE},
    {"medium", 480, 0, IMAGE_FIT_INSIDE},
    {"small", 320, 0, IMAGE_FIT_INSIDE},
};

static void check_watermark(const char *file, struct image_opts *with, int *changed_w,
                            int *variant_w)
{
    struct image_opts without;
    struct image_result a[NDEFAULT], b[NDEFAULT];
    struct image_info info;
    char msg[256] = "";
    size_t len;
    void *data = read_corpus(file, &len);

    with->variants = watermark_variants;
    with->nvariants = NDEFAULT;
    without = *with;
    without.watermark_text = NULL;
    without.watermark_png = NULL;
    without.watermark_png_len = 0;
    if (image_make_variants(data, len, &without, &info, a, msg, sizeof(msg)) != RZ_OK ||
        image_make_variants(data, len, with, &info, b, msg, sizeof(msg)) != RZ_OK)
        fail_msg("%s: %s", file, msg);
    for (size_t k = 0; k < NDEFAULT; k++) {
        VipsImage *ia = decode(&a[k]), *ib = decode(&b[k]);
        VipsImage *d;
        int w = ia->Xsize, h = ia->Ysize, left, top, tw, th;
        VipsArrayDouble *zero = vips_array_double_newv(1, 0.0);

        assert_int_equal(ib->Xsize, w);
        assert_int_equal(ib->Ysize, h);
        d = diff_of(ia, ib);
        if (area_max(d, 0, 0, w, h / 2) != 0 || area_max(d, 0, h / 2, w / 2, h - h / 2) != 0)
            fail_msg("%s/%s: the watermark changed pixels outside the bottom-right quarter",
                     file, a[k].name);
        if (area_max(d, w / 2, h / 2, w - w / 2, h - h / 2) < 40)
            fail_msg("%s/%s: no visible watermark", file, a[k].name);
        assert_int_equal(vips_find_trim(d, &left, &top, &tw, &th, "background", zero,
                                        "threshold", 20.0, NULL),
                         0);
        changed_w[k] = tw;
        variant_w[k] = w;
        vips_area_unref(VIPS_AREA(zero));
        g_object_unref(d);
        g_object_unref(ia);
        g_object_unref(ib);
    }
    image_results_free(a, NDEFAULT);
    image_results_free(b, NDEFAULT);
    g_free(data);
}

/* The mark's width follows the variant's: the same share of every one. */
static void check_scaled(const int *changed_w, const int *variant_w)
{
    double big = (double)changed_w[0] / variant_w[0];
    double small = (double)changed_w[2] / variant_w[2];

    if (big < small * 0.8 || big > small * 1.25)
        fail_msg("watermark is %d of %d px and %d of %d px wide: not scaled with the variant",
                 changed_w[0], variant_w[0], changed_w[2], variant_w[2]);
}

static void test_watermark_text_bottom_right_scaled(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    int w[NDEFAULT], vw[NDEFAULT];

    (void)state;
    /* markup characters must be drawn, not parsed */
    o.watermark_text = "(c) Resizer & Co <b>";
    check_watermark("photo.jpg", &o, w, vw);
    check_scaled(w, vw);
}

static void test_watermark_png_bottom_right_scaled(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    VipsImage *black = NULL, *mark = NULL;
    void *png = NULL;
    size_t png_len = 0;
    int w[NDEFAULT], vw[NDEFAULT];

    (void)state;
    /* a half-transparent red 200x100 logo */
    assert_int_equal(vips_black(&black, 200, 100, "bands", 4, NULL), 0);
    assert_int_equal(vips_linear(black, &mark, (double[]){1, 1, 1, 1},
                                 (double[]){255, 0, 0, 160}, 4, "uchar", TRUE, NULL),
                     0);
    mark->Type = VIPS_INTERPRETATION_sRGB;
    assert_int_equal(vips_pngsave_buffer(mark, &png, &png_len, NULL), 0);
    o.watermark_png = png;
    o.watermark_png_len = png_len;
    check_watermark("alpha.png", &o, w, vw);
    check_scaled(w, vw);
    /* the logo is a fifth of the variant's width */
    for (size_t k = 0; k < NDEFAULT; k++)
        assert_in_range(w[k], vw[k] / 5 - 3, vw[k] / 5 + 1);
    g_free(png);
    g_object_unref(mark);
    g_object_unref(black);
}

static void test_blank_watermark_text_is_no_watermark(void **state)
{
    struct image_opts plain = default_opts(IMAGE_OUTPUT_PNG);
    struct image_opts blank = default_opts(IMAGE_OUTPUT_PNG);
    VipsImage *a, *b, *d;
    double max = -1;

    (void)state;
    blank.watermark_text = " \t\n";
    a = phone_of("small.jpg", &plain);
    b = phone_of("small.jpg", &blank);
    d = diff_of(a, b);
    assert_int_equal(vips_max(d, &max, NULL), 0);
    assert_true(max == 0);
    g_object_unref(d);
    g_object_unref(a);
    g_object_unref(b);
}

static void test_bad_watermark_png_is_einval(void **state)
{
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    struct image_result r[NDEFAULT];
    struct image_info info;
    char msg[256] = "";
    size_t len;
    void *data = read_corpus("small.jpg", &len);

    (void)state;
    o.watermark_png = "<svg/>not a png";
    o.watermark_png_len = 15;
    assert_int_equal(image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)), RZ_EINVAL);
    assert_true(msg[0] != '\0');
    g_free(data);
}

static void test_probe_reads_header_only(void **state)
{
    static const struct {
        const char *file;
        uint64_t max;
        enum rz_err err;
        int w, h, pages;
    } cases[] = {
        {"photo_orient6.jpg", MAX_PIXELS, RZ_OK, 1500, 2000, 1},
        {"anim.gif", MAX_PIXELS, RZ_OK, 400, 300, 4},
        /* 400 x 300 x 4 frames = 480000 */
        {"anim.gif", 480000, RZ_OK, 400, 300, 4},
        {"anim.gif", 479999, RZ_EPIXELS, 400, 300, 4},
        {"photo.jpg", 3000000, RZ_OK, 2000, 1500, 1},
        {"photo.jpg", 2999999, RZ_EPIXELS, 2000, 1500, 1},
        {"bomb.png", MAX_PIXELS, RZ_EPIXELS, 60000, 60000, 1},
        {"svg_as.jpg", MAX_PIXELS, RZ_EUNSUPPORTED, 0, 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct image_info info;
        char msg[256] = "";
        size_t len;
        void *data = read_corpus(cases[i].file, &len);
        enum rz_err err = image_probe(data, len, cases[i].max, &info, msg, sizeof(msg));

        if (err != cases[i].err)
            fail_msg("case %zu: %s (%s)", i, rz_err_name(err), msg);
        assert_int_equal(info.width, cases[i].w);
        assert_int_equal(info.height, cases[i].h);
        assert_int_equal(info.pages, cases[i].pages);
        g_free(data);
    }
}

static void test_invalid_opts(void **state)
{
    struct image_variant_spec zero[] = {{"bad", 0, 0, IMAGE_FIT_INSIDE}};
    struct image_result r[IMAGE_MAX_VARIANTS + 1];
    struct image_info info;
    size_t len;
    void *data = read_corpus("small.jpg", &len);
    struct image_opts o;

    (void)state;
    o = default_opts(IMAGE_OUTPUT_SAME);
    o.nvariants = 0;
    assert_int_equal(image_make_variants(data, len, &o, &info, r, NULL, 0), RZ_EINVAL);
    o.nvariants = IMAGE_MAX_VARIANTS + 1;
    assert_int_equal(image_make_variants(data, len, &o, &info, r, NULL, 0), RZ_EINVAL);
    o = default_opts(IMAGE_OUTPUT_SAME);
    o.jpeg_quality = 0;
    assert_int_equal(image_make_variants(data, len, &o, &info, r, NULL, 0), RZ_EINVAL);
    o = default_opts(IMAGE_OUTPUT_SAME);
    o.variants = zero;
    o.nvariants = 1;
    assert_int_equal(image_make_variants(data, len, &o, &info, r, NULL, 0), RZ_EINVAL);
    g_free(data);
    /* freeing zeroed results is a no-op */
    memset(r, 0, sizeof(r));
    image_results_free(r, IMAGE_MAX_VARIANTS);
    image_results_free(NULL, 3);
}

/* ---- boxes, several formats, placeholders ---- */

/* A cover box is exact whatever the source's shape, even one smaller than
 * the box (scaled up to fill it); inside boxes never upscale. */
static void test_cover_boxes_are_exact(void **state)
{
    const struct image_variant_spec specs[] = {
        {"thumb", 256, 256, IMAGE_FIT_COVER},
        {"banner", 300, 50, IMAGE_FIT_COVER},
        {"box", 200, 200, IMAGE_FIT_INSIDE},
        {"big", 600, 600, IMAGE_FIT_COVER}, /* above small.jpg (500x375) */
    };
    const char *files[] = {"photo.jpg", "small.jpg", "photo_orient6.jpg", "alpha.png"};
    struct image_result r[4];
    struct image_info info;

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        size_t len;
        void *data = read_corpus(files[i], &len);
        struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
        char msg[256];

        o.variants = specs;
        o.nvariants = 4;
        if (image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
            fail_msg("%s: %s", files[i], msg);
        assert_int_equal(info.nresults, 4);
        assert_int_equal(r[0].width, 256);
        assert_int_equal(r[0].height, 256);
        assert_int_equal(r[1].width, 300);
        assert_int_equal(r[1].height, 50);
        assert_true(r[2].width <= 200 && r[2].height <= 200);
        assert_true(r[2].width == 200 || r[2].height == 200 || r[2].width == info.width);
        assert_int_equal(r[3].width, 600);
        assert_int_equal(r[3].height, 600);
        image_results_free(r, 4);
        g_free(data);
    }
}

/* A sliver (1x20000, 20000x1) in a cover box is the box, made from a window
 * of the source: scaling the whole sliver up first would have made 1.3
 * gigapixels (minutes of a worker, gigabytes) from a 100-byte PNG. */
static void test_cover_of_a_sliver_is_cheap(void **state)
{
    const struct image_variant_spec thumb[] = {{"thumb", 256, 256, IMAGE_FIT_COVER}};
    const int sizes[][2] = {{1, 20000}, {20000, 1}, {3, 9000}};

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct image_opts o = default_opts(IMAGE_OUTPUT_PNG);
        struct image_result r[1];
        struct image_info info;
        VipsImage *black = NULL, *grey = NULL;
        void *png = NULL;
        size_t png_len = 0;
        char msg[256] = "";

        assert_int_equal(vips_black(&black, sizes[i][0], sizes[i][1], "bands", 3, NULL), 0);
        assert_int_equal(vips_linear1(black, &grey, 1, 128, "uchar", TRUE, NULL), 0);
        grey->Type = VIPS_INTERPRETATION_sRGB;
        assert_int_equal(vips_pngsave_buffer(grey, &png, &png_len, NULL), 0);
        o.variants = thumb;
        o.nvariants = 1;
        if (image_make_variants(png, png_len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
            fail_msg("%dx%d: %s", sizes[i][0], sizes[i][1], msg);
        assert_int_equal(r[0].width, 256);
        assert_int_equal(r[0].height, 256);
        image_results_free(r, 1);
        g_free(png);
        g_object_unref(grey);
        g_object_unref(black);
    }
}

/* A variant WebP cannot hold (16,383 px a side) is refused before any
 * decode or encode, as a limit (encoder_limit, permanent), naming it. */
static void test_encoder_limit_is_known_before_encoding(void **state)
{
    const struct image_variant_spec wide[] = {{"wide", 16384, 0, IMAGE_FIT_INSIDE}};
    struct image_opts o = default_opts(IMAGE_OUTPUT_WEBP);
    struct image_result r[1];
    struct image_info info;
    VipsImage *black = NULL;
    void *png = NULL;
    size_t png_len = 0;
    char msg[256] = "";

    (void)state;
    assert_int_equal(vips_black(&black, 16384, 4, "bands", 3, NULL), 0);
    black->Type = VIPS_INTERPRETATION_sRGB;
    assert_int_equal(vips_pngsave_buffer(black, &png, &png_len, NULL), 0);
    o.variants = wide;
    o.nvariants = 1;
    assert_int_equal(image_make_variants(png, png_len, &o, &info, r, msg, sizeof(msg)),
                     RZ_ELIMIT);
    assert_non_null(strstr(msg, "variant wide would be 16384x4; webp allows at most 16383"));
    g_free(png);
    g_object_unref(black);
}

/* "same,jpeg,webp" on a JPEG is two files a variant, in that order, each
 * sniffing as its format; placeholders are set. */
static void test_outputs_are_distinct_formats(void **state)
{
    size_t len;
    void *data = read_corpus("photo.jpg", &len);
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    struct image_result r[3 * NDEFAULT];
    struct image_info info;
    char msg[256];

    (void)state;
    o.outputs[1] = IMAGE_OUTPUT_JPEG;
    o.outputs[2] = IMAGE_OUTPUT_WEBP;
    o.noutputs = 3;
    o.blurhash_x = 4;
    o.blurhash_y = 3;
    assert_int_equal(image_results_max(&o), 3 * NDEFAULT);
    if (image_make_variants(data, len, &o, &info, r, msg, sizeof(msg)) != RZ_OK)
        fail_msg("%s", msg);
    assert_int_equal(info.nresults, 2 * NDEFAULT);
    for (size_t i = 0; i < info.nresults; i++) {
        enum image_format want = i % 2 ? IMAGE_FORMAT_WEBP : IMAGE_FORMAT_JPEG;

        assert_string_equal(r[i].name, default_variants[i / 2].name);
        assert_int_equal(r[i].format, want);
        assert_int_equal(image_sniff(r[i].data, r[i].len), want);
        assert_int_equal(r[i].width, r[i - i % 2].width);
    }
    assert_int_equal(strlen(info.blurhash), 4 + 2 * 4 * 3);
    assert_int_equal(strlen(info.dominant), 7);
    assert_int_equal(info.dominant[0], '#');
    image_results_free(r, 3 * NDEFAULT);
    g_free(data);
}

/* ---- concurrency: workers share the module ---- */

struct worker {
    const char *file;
    size_t len;
    void *data;
    size_t out_len[NDEFAULT];
    unsigned char *first[NDEFAULT]; /* the first 4 KiB of each variant */
    enum rz_err err;
};

static gpointer worker_run(gpointer arg)
{
    struct worker *w = arg;
    struct image_opts o = default_opts(IMAGE_OUTPUT_SAME);
    struct image_result r[NDEFAULT];
    struct image_info info;
    char msg[256];

    o.watermark_text = "resizer";
    w->err = image_make_variants(w->data, w->len, &o, &info, r, msg, sizeof(msg));
    for (size_t k = 0; w->err == RZ_OK && k < NDEFAULT; k++) {
        w->out_len[k] = r[k].len;
        w->first[k] = g_memdup2(r[k].data, r[k].len < 4096 ? r[k].len : 4096);
    }
    if (w->err == RZ_OK)
        image_results_free(r, NDEFAULT);
    return NULL;
}

static void test_concurrent_workers_agree(void **state)
{
    static const char *const files[] = {"small.jpg", "anim.gif", "small.jpg", "truncated.jpg",
                                        "photo_orient6.jpg"};
    enum { N = sizeof(files) / sizeof(files[0]) };
    struct worker ref[N], par[N];
    GThread *threads[N];

    (void)state;
    memset(ref, 0, sizeof(ref));
    memset(par, 0, sizeof(par));
    for (int i = 0; i < N; i++) {
        ref[i].file = par[i].file = files[i];
        ref[i].data = read_corpus(files[i], &ref[i].len);
        par[i].data = ref[i].data;
        par[i].len = ref[i].len;
        worker_run(&ref[i]);
    }
    for (int i = 0; i < N; i++)
        threads[i] = g_thread_new("worker", worker_run, &par[i]);
    for (int i = 0; i < N; i++)
        g_thread_join(threads[i]);
    for (int i = 0; i < N; i++) {
        assert_int_equal(par[i].err, ref[i].err);
        for (size_t k = 0; k < NDEFAULT; k++) {
            assert_int_equal(par[i].out_len[k], ref[i].out_len[k]);
            if (ref[i].first[k])
                assert_memory_equal(par[i].first[k], ref[i].first[k],
                                    ref[i].out_len[k] < 4096 ? ref[i].out_len[k] : 4096);
            g_free(par[i].first[k]);
            g_free(ref[i].first[k]);
        }
        g_free(ref[i].data);
    }
    assert_int_equal(ref[3].err, RZ_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff_from_bytes),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_format_from_mime),
        cmocka_unit_test(test_loadable_and_output_format),
        cmocka_unit_test(test_pixel_limit_arithmetic),
        cmocka_unit_test(test_shrink_factor_never_below_target),
        cmocka_unit_test(test_variant_size_never_upscales),
        cmocka_unit_test(test_webp_strip_chunks),
        cmocka_unit_test(test_corpus_table),
        cmocka_unit_test(test_orientation_puts_marker_top_right),
        cmocka_unit_test(test_shrink_on_load_paths),
        cmocka_unit_test(test_gif_gives_first_frame),
        cmocka_unit_test(test_colour_conversions_keep_colours),
        cmocka_unit_test(test_jpeg_output_flattens_alpha_on_white),
        cmocka_unit_test(test_alpha_edges_have_no_dark_fringe),
        cmocka_unit_test(test_forced_outputs),
        cmocka_unit_test(test_watermark_text_bottom_right_scaled),
        cmocka_unit_test(test_watermark_png_bottom_right_scaled),
        cmocka_unit_test(test_blank_watermark_text_is_no_watermark),
        cmocka_unit_test(test_bad_watermark_png_is_einval),
        cmocka_unit_test(test_probe_reads_header_only),
        cmocka_unit_test(test_invalid_opts),
        cmocka_unit_test(test_cover_boxes_are_exact),
        cmocka_unit_test(test_cover_of_a_sliver_is_cheap),
        cmocka_unit_test(test_encoder_limit_is_known_before_encoding),
        cmocka_unit_test(test_outputs_are_distinct_formats),
        cmocka_unit_test(test_concurrent_workers_agree),
    };

    if (getenv("TF"))
        cmocka_set_test_filter(getenv("TF"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
