/* image.c - everything libvips does for the service.
 *
 * One image_make_variants() call, in order:
 *   sniff the magic bytes -> open the header with the ONE loader for that
 *   format (never the sniffing loader, so an SVG or PDF can never reach
 *   librsvg or poppler, whatever its name) -> refuse over max_pixels before
 *   any pixel is decoded -> reopen with shrink-on-load for the largest
 *   variant -> resize to the largest variant, convert to 8-bit sRGB and copy
 *   into memory: the only decode -> apply the EXIF orientation -> every
 *   variant is that master or a resize of it (COVER: scaled to cover its box,
 *   then the attention crop), kept in memory once -> per output format:
 *   flatten (JPEG) / watermark -> encode with all metadata stripped -> copy
 *   into malloc'd memory. The placeholders (BlurHash, dominant colour) come
 *   from a 32-pixel resize of the same master.
 *
 * Why decode once and derive: on a 4000x3000 JPEG -> 1920/1024/640 JPEGs
 * (Q85, one libvips thread, CPU best of 5), three vips_thumbnail_buffer
 * calls take 283 ms (three decodes); one decode to the 1920 master in
 * memory, the others resized from it, 177 ms; keeping the whole
 * shrink-on-load image in memory instead, 268 ms and 36 MB. PSNR against
 * a float Lanczos3 reference from the full image: 56.9 / 53.1 / 53.0 dB
 * derived vs 56.9 / 54.7 / 53.1 dB independent, no visible difference.
 * Memory stays one master (8 MB at 1920x1440) plus the loader's strips and
 * one variant's pixels while its formats are encoded.
 *
 * Ownership: every intermediate image of a call hangs off one struct pipe
 * (a GPtrArray that unrefs its members), like vipsthumbnail.c's local
 * arrays, so any early return leaks nothing. */
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vips/vips.h>

#include "image.h"
#include "unittest.h"
#include "blurhash.h"
#include "image_internal.h"
#include "log.h"

/* PNG: libvips' default (no row filter, zlib 6) writes photos 1.7-1.9x
 * larger than Pillow. Measured on 1024x768 photos, RGB / RGBA:
 *   Pillow default (adaptive, zlib 6)   1157 KB 277 ms / 1343 KB 404 ms
 *   libvips filter none, zlib 6         1944 KB  63 ms / 2589 KB 102 ms
 *   libvips filter all,  zlib 6         1161 KB 278 ms / 1347 KB 382 ms
 *   libvips filter all,  zlib 4         1174 KB 104 ms / 1369 KB 125 ms
 * Adaptive filtering (all) at zlib 4: within 2% of Pillow's size at a
 * third of its time. */
#define PNG_COMPRESSION 4
#define PNG_FILTER VIPS_FOREIGN_PNG_FILTER_ALL

/* A watermark PNG comes from configuration, but is still decoded with a cap. */
#define WATERMARK_MAX_PIXELS (4000u * 4000u)

struct pipe {
    GPtrArray *imgs; /* owns one reference to each image */
};

static void pipe_init(struct pipe *p)
{
    p->imgs = g_ptr_array_new_with_free_func(g_object_unref);
}

static void pipe_free(struct pipe *p)
{
    if (p->imgs)
        g_ptr_array_free(p->imgs, TRUE);
    p->imgs = NULL;
}

/* Takes the reference img holds; returns img (borrowed from the pipe from
 * now on), or NULL if img is NULL, so a failed vips call passes through. */
static VipsImage *pipe_keep(struct pipe *p, VipsImage *img)
{
    if (!img)
        return NULL;
    g_ptr_array_add(p->imgs, img);
    return img;
}

/* The libvips call convention: rc == 0 means *t is a new reference, which
 * the pipe keeps; returns it (borrowed), or NULL when the call failed. */
static VipsImage *keep(struct pipe *p, int rc, VipsImage **t)
{
    if (rc != 0)
        return NULL;
    return pipe_keep(p, *t);
}

/* ---- messages ---- */

/* Writes "what: <first line of the libvips error>" into msg and clears the
 * libvips error buffer. The buffer is process-wide, so under concurrent
 * failures a message may carry another worker's detail; the code does not. */
static enum rz_err fail_with(enum rz_err err, char *msg, size_t msglen, const char *what)
{
    char *verr = vips_error_buffer_copy();
    char *nl;

    if (verr) {
        nl = strchr(verr, '\n');
        if (nl)
            *nl = '\0';
    }
    if (msg && msglen > 0)
        snprintf(msg, msglen, "%s%s%s", what, verr && verr[0] ? ": " : "", verr ? verr : "");
    g_free(verr);
    return err;
}

/* ---- small pure helpers ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int brand_is(const unsigned char *b, const char *const *list)
{
    for (size_t i = 0; list[i]; i++) {
        if (memcmp(b, list[i], 4) == 0)
            return 1;
    }
    return 0;
}

/* ISO BMFF: AVIF and HEIF are told apart by the ftyp brands. MP4 video,
 * camera raws and anything else in that container are UNKNOWN. */
static enum image_format sniff_ftyp(const unsigned char *d, size_t len)
{
    static const char *const avif[] = {"avif", "avis", NULL};
    static const char *const heif[] = {"heic", "heix", "heim", "heis", "hevc", "hevx", NULL};
    size_t box;

    if (len < 16 || memcmp(d + 4, "ftyp", 4) != 0)
        return IMAGE_FORMAT_UNKNOWN;
    box = be32(d);
    if (box < 16)
        return IMAGE_FORMAT_UNKNOWN;
    if (box > len)
        box = len;
    if (brand_is(d + 8, avif))
        return IMAGE_FORMAT_AVIF;
    if (brand_is(d + 8, heif))
        return IMAGE_FORMAT_HEIF;
    for (size_t off = 16; off + 4 <= box; off += 4) {
        if (brand_is(d + off, avif))
            return IMAGE_FORMAT_AVIF;
        if (brand_is(d + off, heif))
            return IMAGE_FORMAT_HEIF;
    }
    return IMAGE_FORMAT_UNKNOWN;
}

enum image_format image_sniff(const void *data, size_t len)
{
    const unsigned char *d = data;

    if (!d || len < 12)
        return IMAGE_FORMAT_UNKNOWN;
    if (d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return IMAGE_FORMAT_JPEG;
    if (memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMAGE_FORMAT_PNG;
    if (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)
        return IMAGE_FORMAT_GIF;
    if (memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return IMAGE_FORMAT_WEBP;
    /* classic and BigTIFF, both byte orders */
    if (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0 || memcmp(d, "II+\0", 4) == 0 ||
        memcmp(d, "MM\0+", 4) == 0)
        return IMAGE_FORMAT_TIFF;
    return sniff_ftyp(d, len);
}

UNITTEST int image_over_limit(uint64_t width, uint64_t height, uint64_t pages,
                              uint64_t max_pixels)
{
    uint64_t px;

    if (width == 0 || height == 0)
        return 0;
    /* width and height come from libvips ints, so this cannot overflow */
    px = width * height;
    if (px > max_pixels)
        return 1;
    return pages > 1 && pages > max_pixels / px;
}

/* Shrink on load by the largest power of two (libjpeg's DCT scaling, or
 * WebP's) that keeps the decoded image at least as large as the target;
 * Lanczos3 does the rest. vips_thumbnail keeps a 2x margin instead, which
 * for a 12 MP photo and a 1920 target means decoding every pixel. Measured
 * on 12 and 48 MP JPEGs (tests/bench): 24% and 15% less CPU, for variants
 * 0.2-2.8 dB further from the Pillow reference's (44 dB, the level of
 * Pillow's own draft mode, and invisible after q85 JPEG encoding). */
UNITTEST int image_shrink_factor(int src_width, int target_width)
{
    double shrink;

    if (src_width <= 0 || target_width <= 0)
        return 1;
    shrink = (double)src_width / target_width;
    if (shrink >= 8)
        return 8;
    if (shrink >= 4)
        return 4;
    if (shrink >= 2)
        return 2;
    return 1;
}

UNITTEST void image_variant_size(int src_width, int src_height, int target_width, int *width_out,
                                 int *height_out)
{
    int w = target_width < src_width ? target_width : src_width;
    long h = lround((double)src_height * w / src_width);

    *width_out = w;
    *height_out = h < 1 ? 1 : (int)h;
}

/* ---- format table ---- */

static const char *loader_op(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "jpegload_buffer";
    case IMAGE_FORMAT_PNG: return "pngload_buffer";
    case IMAGE_FORMAT_WEBP: return "webpload_buffer";
    case IMAGE_FORMAT_GIF: return "gifload_buffer";
    case IMAGE_FORMAT_TIFF: return "tiffload_buffer";
    case IMAGE_FORMAT_AVIF:
    case IMAGE_FORMAT_HEIF: return "heifload_buffer";
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return NULL;
}

static int op_exists(const char *nickname)
{
    return nickname && vips_type_find("VipsOperation", nickname) != 0;
}

int image_format_loadable(enum image_format f)
{
    return op_exists(loader_op(f));
}

/* heifsave exists wherever libvips has libheif, also when libheif has no
 * AV1 encoder (an HEVC-only build, a missing plugin): only an encode tells. */
static int avif_encodes(void)
{
    VipsImage *black = NULL;
    void *buf = NULL;
    size_t len = 0;
    int ok;

    if (!op_exists("heifsave_buffer") || vips_black(&black, 8, 8, "bands", 3, NULL) != 0)
        return 0;
    ok = vips_heifsave_buffer(black, &buf, &len, "compression",
                              VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL) == 0 &&
         len > 0;
    g_free(buf);
    g_object_unref(black);
    vips_error_clear();
    return ok;
}

int image_output_writable(enum image_output output)
{
    switch (output) {
    case IMAGE_OUTPUT_JPEG: return op_exists("jpegsave_buffer");
    case IMAGE_OUTPUT_WEBP: return op_exists("webpsave_buffer");
    case IMAGE_OUTPUT_AVIF: return avif_encodes();
    case IMAGE_OUTPUT_PNG: return op_exists("pngsave_buffer");
    case IMAGE_OUTPUT_SAME: break;
    }
    return 1;
}

enum image_format image_output_format(enum image_output output, enum image_format input)
{
    switch (output) {
    case IMAGE_OUTPUT_JPEG: return IMAGE_FORMAT_JPEG;
    case IMAGE_OUTPUT_WEBP: return IMAGE_FORMAT_WEBP;
    case IMAGE_OUTPUT_AVIF: return IMAGE_FORMAT_AVIF;
    case IMAGE_OUTPUT_PNG: return IMAGE_FORMAT_PNG;
    case IMAGE_OUTPUT_SAME: break;
    }
    switch (input) {
    case IMAGE_FORMAT_JPEG:
    case IMAGE_FORMAT_PNG:
    case IMAGE_FORMAT_WEBP: return input;
    case IMAGE_FORMAT_GIF:
        /* Variants are the first frame. GIF stays GIF (the key keeps its
         * extension, as the Pillow Lambda did) when libvips has cgif;
         * otherwise PNG, which keeps the transparency. */
        return op_exists("gifsave_buffer") ? IMAGE_FORMAT_GIF : IMAGE_FORMAT_PNG;
    case IMAGE_FORMAT_AVIF:
        return op_exists("heifsave_buffer") ? IMAGE_FORMAT_AVIF : IMAGE_FORMAT_JPEG;
    case IMAGE_FORMAT_TIFF: /* no browser shows TIFF */
    case IMAGE_FORMAT_HEIF: /* HEIC: few browsers, patent-encumbered encoder */
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return IMAGE_FORMAT_JPEG;
}

const char *image_format_mime(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "image/jpeg";
    case IMAGE_FORMAT_PNG: return "image/png";
    case IMAGE_FORMAT_WEBP: return "image/webp";
    case IMAGE_FORMAT_GIF: return "image/gif";
    case IMAGE_FORMAT_TIFF: return "image/tiff";
    case IMAGE_FORMAT_AVIF: return "image/avif";
    case IMAGE_FORMAT_HEIF: return "image/heic";
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return "application/octet-stream";
}

const char *image_format_ext(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "jpg";
    case IMAGE_FORMAT_PNG: return "png";
    case IMAGE_FORMAT_WEBP: return "webp";
    case IMAGE_FORMAT_GIF: return "gif";
    case IMAGE_FORMAT_TIFF: return "tiff";
    case IMAGE_FORMAT_AVIF: return "avif";
    case IMAGE_FORMAT_HEIF: return "heic";
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return NULL;
}

const char *image_format_name(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "jpeg";
    case IMAGE_FORMAT_PNG: return "png";
    case IMAGE_FORMAT_WEBP: return "webp";
    case IMAGE_FORMAT_GIF: return "gif";
    case IMAGE_FORMAT_TIFF: return "tiff";
    case IMAGE_FORMAT_AVIF: return "avif";
    case IMAGE_FORMAT_HEIF: return "heif";
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

enum image_format image_format_from_mime(const char *mime)
{
    static const struct {
        const char *mime;
        enum image_format f;
    } table[] = {
        {"image/jpeg", IMAGE_FORMAT_JPEG},  {"image/jpg", IMAGE_FORMAT_JPEG},
        {"image/pjpeg", IMAGE_FORMAT_JPEG}, {"image/png", IMAGE_FORMAT_PNG},
        {"image/webp", IMAGE_FORMAT_WEBP},  {"image/gif", IMAGE_FORMAT_GIF},
        {"image/tiff", IMAGE_FORMAT_TIFF},  {"image/avif", IMAGE_FORMAT_AVIF},
        {"image/heic", IMAGE_FORMAT_HEIF},  {"image/heif", IMAGE_FORMAT_HEIF},
    };
    size_t n;

    if (!mime)
        return IMAGE_FORMAT_UNKNOWN;
    while (*mime == ' ' || *mime == '\t')
        mime++;
    n = strcspn(mime, "; \t");
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strlen(table[i].mime) == n && strncasecmp(mime, table[i].mime, n) == 0)
            return table[i].f;
    }
    return IMAGE_FORMAT_UNKNOWN;
}

/* ---- lifecycle ---- */

/* libvips reports hostile input through glib warnings ("VIPS-WARNING:
 * read gave 2 warnings"). Each bad upload already ends as a failed job with
 * its own log line, so these go to the JSON log at debug level instead of
 * raw lines on stderr that would break a log pipeline. */
static void image_glib_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
                           gpointer data)
{
    enum log_level lvl = level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL) ? LOG_WARN
                                                                            : LOG_DEBUG;

    (void)data;
    log_printf(lvl, "libvips", "%s: %s", domain ? domain : "glib", message);
}

/* glibc's malloc and libvips' buffers. A job allocates a few large
 * buffers (decoded pixels, region buffers, encoded files: 100 KiB to tens
 * of MB) and many small ones, on whichever thread runs it. Left alone,
 * glibc raises its mmap threshold to the largest block freed (up to 32 MiB),
 * so after the first job those buffers come from the per-thread arenas
 * and stay there, fragmented: a 3000x3000 PNG with alpha peaked at 125 MB
 * in one call and 193 MB after three, and a soak of mixed images held
 * 160-340 MB that never came back. A fixed threshold (which also turns the
 * dynamic one off) sends every large buffer to mmap, so it goes back to the
 * kernel when freed: 95 MB for that PNG, call after call. The CPU cost is
 * a page fault per fresh page, within noise of the per-image figures.
 * MALLOC_MMAP_THRESHOLD_ in the environment overrides it. */
#define IMAGE_MMAP_THRESHOLD (128 * 1024)

static void image_tune_allocator(void)
{
#ifdef __GLIBC__
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        mallopt(M_MMAP_THRESHOLD, IMAGE_MMAP_THRESHOLD);
#endif
}

/* Image calls running now: the arenas are trimmed when the last one ends. */
static int image_busy;

/* What jobs' small allocations leave free in the arenas goes back to the
 * kernel (glibc's malloc_trim releases free pages inside the heaps too,
 * not only at their tops) when no image is being made, so an idle worker
 * holds about what it held before its jobs. Not after every job: then
 * the next one faults its pages in again, 8-10% more CPU per image in
 * the soak; under steady load the workers overlap and trims are rare,
 * and the fixed mmap threshold already returns the large buffers. */
static void image_release_memory(void)
{
#ifdef __GLIBC__
    if (__atomic_sub_fetch(&image_busy, 1, __ATOMIC_ACQ_REL) == 0)
        malloc_trim(0);
#else
    __atomic_sub_fetch(&image_busy, 1, __ATOMIC_ACQ_REL);
#endif
}

enum rz_err image_init(const char *argv0)
{
    static const char *const ours[] = {
        "VipsForeignLoadJpeg",
        "VipsForeignLoadPng",
        "VipsForeignLoadWebp",
        "VipsForeignLoadNsgif",
        "VipsForeignLoadTiff",
        "VipsForeignLoadHeif",
        NULL,
    };

    image_tune_allocator();
    if (VIPS_INIT(argv0 ? argv0 : "resizer"))
        return RZ_EINTERNAL;
    g_log_set_default_handler(image_glib_log, NULL);
    vips_block_untrusted_set(TRUE);
    /* Defence in depth: we only ever call the six loaders above by name, so
     * every other loader (svg, pdf, magick, ...) is blocked outright. */
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; ours[i]; i++)
        vips_operation_block_set(ours[i], FALSE);
    /* Every upload is a different image: an operation cache only holds
     * memory (and file handles) that nothing will hit again. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    /* One libvips thread per pipeline: the parallelism is WORKERS images at
     * once, not N threads per image. With per-image threads, W workers x
     * cores threads oversubscribe the CPU and a single job's latency gains
     * little (JPEG decode is serial). VIPS_CONCURRENCY overrides it. */
    if (!getenv("VIPS_CONCURRENCY"))
        vips_concurrency_set(1);
    return RZ_OK;
}

void image_shutdown(void)
{
    vips_shutdown();
}

/* ---- loading ---- */

/* The one loader for f, lazily (header only until pixels are asked for),
 * sequential, and failing on the first decode error. shrink is the JPEG
 * DCT / WebP shrink-on-load factor. Returns a new reference or NULL. */
static VipsImage *load_format(enum image_format f, const void *data, size_t len, int shrink)
{
    VipsImage *out = NULL;
    void *buf = (void *)data; /* libvips takes void *, never writes */
    int rc = -1;

    switch (f) {
    case IMAGE_FORMAT_JPEG:
        rc = vips_jpegload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                  VIPS_FAIL_ON_ERROR, "shrink", shrink, NULL);
        break;
    case IMAGE_FORMAT_PNG:
        rc = vips_pngload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                 VIPS_FAIL_ON_ERROR, NULL);
        break;
    case IMAGE_FORMAT_WEBP:
        rc = vips_webpload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                  VIPS_FAIL_ON_ERROR, "scale", 1.0 / shrink, NULL);
        break;
    case IMAGE_FORMAT_GIF: /* n defaults to 1: the first frame */
        rc = vips_gifload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                 VIPS_FAIL_ON_ERROR, NULL);
        break;
    case IMAGE_FORMAT_TIFF:
        rc = vips_tiffload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                  VIPS_FAIL_ON_ERROR, NULL);
        break;
    case IMAGE_FORMAT_AVIF:
    case IMAGE_FORMAT_HEIF:
        rc = vips_heifload_buffer(buf, len, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                  VIPS_FAIL_ON_ERROR, NULL);
        break;
    case IMAGE_FORMAT_UNKNOWN: vips_error("image", "unknown format"); break;
    }
    if (rc != 0) {
        VIPS_UNREF(out);
        return NULL;
    }
    return out;
}

static void info_from_header(VipsImage *img, enum image_format f, struct image_info *info)
{
    int page_height = vips_image_get_page_height(img);
    int swap = vips_image_get_orientation_swap(img);

    info->format = f;
    info->width = swap ? page_height : img->Xsize;
    info->height = swap ? img->Xsize : page_height;
    info->pages = vips_image_get_n_pages(img);
}

/* Sniffs, opens the header with the right loader, fills info and checks the
 * pixel limit. On RZ_OK *img_out is a new, still undecoded reference. */
static enum rz_err open_checked(const void *data, size_t len, uint64_t max_pixels,
                                struct image_info *info, VipsImage **img_out, char *msg,
                                size_t msglen)
{
    enum image_format f = image_sniff(data, len);
    VipsImage *img = NULL;
    enum rz_err err;

    memset(info, 0, sizeof(*info));
    if (f == IMAGE_FORMAT_UNKNOWN || !image_format_loadable(f)) {
        if (msg && msglen > 0)
            snprintf(msg, msglen, "%s",
                     "not an image format we process "
                     "(JPEG, PNG, WebP, GIF, TIFF, AVIF, HEIF)");
        err = RZ_EUNSUPPORTED;
        goto fail;
    }
    img = load_format(f, data, len, 1);
    if (!img) {
        err = fail_with(RZ_ECORRUPT, msg, msglen, "cannot read the image header");
        goto fail;
    }
    info_from_header(img, f, info);
    if (image_over_limit((uint64_t)img->Xsize, (uint64_t)vips_image_get_page_height(img),
                         (uint64_t)info->pages, max_pixels)) {
        if (msg && msglen > 0)
            snprintf(msg, msglen, "%dx%d x %d page(s) is over the limit of %llu pixels",
                     info->width, info->height, info->pages, (unsigned long long)max_pixels);
        err = RZ_EPIXELS;
        goto fail;
    }
    *img_out = img;
    return RZ_OK;
fail:
    VIPS_UNREF(img);
    return err;
}

#ifdef RESIZER_UNITTEST
/* Only tests read a header alone: the service always goes on to decode. */
enum rz_err image_probe(const void *data, size_t len, uint64_t max_pixels,
                        struct image_info *info_out, char *msg, size_t msglen)
{
    VipsImage *img = NULL;
    enum rz_err err = open_checked(data, len, max_pixels, info_out, &img, msg, msglen);

    VIPS_UNREF(img);
    return err;
}
#endif

/* ---- pixel steps; each returns an image owned by p, or NULL ---- */

/* Resizes to exactly width x height (Lanczos3), premultiplying alpha so
 * transparent pixels do not bleed dark fringes into the edges. */
static VipsImage *resize_exact(struct pipe *p, VipsImage *in, int width, int height)
{
    VipsBandFormat fmt = in->BandFmt;
    int alpha = vips_image_hasalpha(in);
    double hscale = (double)width / in->Xsize;
    double vscale = (double)height / in->Ysize;
    VipsImage *t = NULL;

    if (in->Xsize == width && in->Ysize == height)
        return in;
    if (alpha)
        in = keep(p, vips_premultiply(in, &t, NULL), &t);
    if (in)
        in = keep(p, vips_resize(in, &t, hscale, "vscale", vscale, NULL), &t);
    if (in && alpha)
        in = keep(p, vips_unpremultiply(in, &t, NULL), &t);
    if (in && alpha)
        in = keep(p, vips_cast(in, &t, fmt, NULL), &t);
    if (in && (in->Xsize != width || in->Ysize != height)) {
        vips_error("image", "resize gave %dx%d, not %dx%d", in->Xsize, in->Ysize, width, height);
        return NULL;
    }
    return in;
}

/* ICC transform to sRGB when the image carries a profile (or is CMYK, where
 * the built-in CMYK profile stands in for a missing one). An RGB or grey
 * image whose profile lcms rejects goes on without it. */
static VipsImage *apply_icc(struct pipe *p, VipsImage *in)
{
    VipsImage *t = NULL;
    int cmyk = in->Type == VIPS_INTERPRETATION_CMYK && in->Bands >= 4;
    int rc;

    if (!cmyk && !vips_image_get_typeof(in, VIPS_META_ICC_NAME))
        return in;
    /* Black point compensation maps the deepest ink black to sRGB black,
     * as print software does; without it CMYK shadows come out grey. */
    if (cmyk)
        rc = vips_icc_transform(in, &t, "srgb", "input_profile", "cmyk", "embedded", TRUE,
                                "intent", VIPS_INTENT_RELATIVE, "black_point_compensation", TRUE,
                                "depth", 8, NULL);
    else
        rc = vips_icc_transform(in, &t, "srgb", "embedded", TRUE, "intent", VIPS_INTENT_RELATIVE,
                                "depth", 8, NULL);
    if (rc == 0)
        return pipe_keep(p, t);
    if (cmyk)
        return NULL;
    vips_error_clear();
    return in;
}

/* Keeps the colour bands and the alpha, drops extra channels (some TIFFs). */
static VipsImage *trim_bands(struct pipe *p, VipsImage *in)
{
    VipsImage *colour = NULL;
    VipsImage *alpha = NULL;
    VipsImage *t = NULL;
    int want = vips_image_hasalpha(in) ? 4 : 3;

    if (in->Bands < 3) {
        vips_error("image", "cannot make sRGB from %d band(s)", in->Bands);
        return NULL;
    }
    if (in->Bands == want)
        return in;
    if (!keep(p, vips_extract_band(in, &colour, 0, "n", 3, NULL), &colour))
        return NULL;
    if (want == 3)
        return colour;
    if (!keep(p, vips_extract_band(in, &alpha, in->Bands - 1, NULL), &alpha))
        return NULL;
    return keep(p, vips_bandjoin2(colour, alpha, &t, NULL), &t);
}

/* Everything leaves here as 8-bit sRGB with 3 bands, or 4 with alpha. */
static VipsImage *to_srgb8(struct pipe *p, VipsImage *in)
{
    VipsImage *t = NULL;

    in = apply_icc(p, in);
    if (in && (in->Type != VIPS_INTERPRETATION_sRGB || in->BandFmt != VIPS_FORMAT_UCHAR))
        in = keep(p, vips_colourspace(in, &t, VIPS_INTERPRETATION_sRGB, NULL), &t);
    if (in && in->BandFmt != VIPS_FORMAT_UCHAR)
        in = keep(p, vips_cast(in, &t, VIPS_FORMAT_UCHAR, NULL), &t);
    if (in)
        in = trim_bands(p, in);
    return in;
}

/* The largest variant, decoded once: shrink-on-load, resize, sRGB, into
 * memory (the one pass over the compressed data), then upright. */
static enum rz_err master_build(struct pipe *p, VipsImage *header, const void *data, size_t len,
                                const struct image_info *info, int width, int height,
                                VipsImage **master_out, char *msg, size_t msglen)
{
    int swap = vips_image_get_orientation_swap(header);
    int shrink = 1;
    VipsImage *in = header;
    VipsImage *t = NULL;

    if (info->format == IMAGE_FORMAT_JPEG || info->format == IMAGE_FORMAT_WEBP)
        shrink = image_shrink_factor(info->width, width);
    /* The loaders floor the shrunk size: a strip a few pixels high would
     * load 0 pixels high, which aborts the process in libvips 8.14's JPEG
     * loader (and fails WebP). Never shrink an axis below the master's. */
    while (shrink > 1 && (header->Xsize / shrink < (swap ? height : width) ||
                          header->Ysize / shrink < (swap ? width : height)))
        shrink /= 2;
    if (shrink > 1) {
        in = pipe_keep(p, load_format(info->format, data, len, shrink));
        if (!in)
            return fail_with(RZ_ECORRUPT, msg, msglen, "cannot reopen the image");
    }
    in = resize_exact(p, in, swap ? height : width, swap ? width : height);
    if (in)
        in = to_srgb8(p, in);
    if (!in)
        return fail_with(RZ_ECORRUPT, msg, msglen, "cannot convert the image");
    /* Forces the decode: truncated or corrupt data fails here. */
    in = pipe_keep(p, vips_image_copy_memory(in));
    if (!in)
        return fail_with(RZ_ECORRUPT, msg, msglen, "cannot decode the image");
    if (vips_image_get_orientation(in) != 1) {
        in = keep(p, vips_autorot(in, &t, NULL), &t);
        if (!in)
            return fail_with(RZ_EINTERNAL, msg, msglen, "cannot apply the EXIF orientation");
    }
    *master_out = in;
    return RZ_OK;
}

/* ---- watermark ---- */

/* The configured PNG, decoded once per call: sRGB, 8-bit, with alpha. */
static enum rz_err watermark_load(struct pipe *p, const struct image_opts *opts,
                                  VipsImage **wm_out, char *msg, size_t msglen)
{
    VipsImage *in = NULL;
    VipsImage *t = NULL;

    *wm_out = NULL;
    if (!opts->watermark_png)
        return RZ_OK;
    if (image_sniff(opts->watermark_png, opts->watermark_png_len) != IMAGE_FORMAT_PNG)
        return fail_with(RZ_EINVAL, msg, msglen, "the watermark is not a PNG");
    in = pipe_keep(p, load_format(IMAGE_FORMAT_PNG, opts->watermark_png, opts->watermark_png_len,
                                  1));
    if (!in)
        return fail_with(RZ_EINVAL, msg, msglen, "cannot read the watermark PNG");
    if (image_over_limit((uint64_t)in->Xsize, (uint64_t)in->Ysize, 1, WATERMARK_MAX_PIXELS))
        return fail_with(RZ_EINVAL, msg, msglen, "the watermark PNG is too large");
    in = to_srgb8(p, in);
    if (in && !vips_image_hasalpha(in))
        in = keep(p, vips_bandjoin_const1(in, &t, 255.0, NULL), &t);
    if (in)
        in = pipe_keep(p, vips_image_copy_memory(in));
    if (!in)
        return fail_with(RZ_EINVAL, msg, msglen, "cannot decode the watermark PNG");
    *wm_out = in;
    return RZ_OK;
}

/* A constant image like `like` with every colour band at v, alpha opaque. */
static VipsImage *constant_like(struct pipe *p, VipsImage *like, double v)
{
    double c[4] = {v, v, v, 255.0};

    return pipe_keep(p, vips_image_new_from_image(like, c, like->Bands));
}

/* region blended toward ink by mask (0..255) times opacity. */
static VipsImage *blend(struct pipe *p, VipsImage *region, VipsImage *mask, VipsImage *ink,
                        double opacity)
{
    VipsImage *t = NULL;

    if (!region || !mask || !ink)
        return NULL;
    if (opacity < 1.0)
        mask = keep(p, vips_linear1(mask, &t, opacity, 0.0, "uchar", TRUE, NULL), &t);
    if (!mask)
        return NULL;
    return keep(p, vips_ifthenelse(mask, ink, region, &t, "blend", TRUE, NULL), &t);
}

/* The text as a 0..255 coverage mask, its font 1/40 of the width (8 px at
 * least: smaller is unreadable); pango markup in the configured text is
 * escaped, never interpreted. */
static VipsImage *text_mask(struct pipe *p, const char *text, int width)
{
    char font[64];
    char *escaped = g_markup_escape_text(text, -1);
    VipsImage *t = NULL;
    int px = VIPS_MAX(8, width / 40);
    int rc;

    snprintf(font, sizeof(font), "sans bold %d", px);
    rc = vips_text(&t, escaped, "font", font, "dpi", 72, "width", width * 4 / 5, NULL);
    g_free(escaped);
    return keep(p, rc, &t);
}

/* Shrinks in to fit max_w x max_h keeping its aspect; never grows it. */
static VipsImage *fit_within(struct pipe *p, VipsImage *in, int max_w, int max_h)
{
    double s = 1.0;

    if (in->Xsize > max_w)
        s = (double)max_w / in->Xsize;
    if (in->Ysize * s > max_h)
        s = (double)max_h / in->Ysize;
    if (s >= 1.0)
        return in;
    return resize_exact(p, in, VIPS_MAX(1, (int)(in->Xsize * s)),
                        VIPS_MAX(1, (int)(in->Ysize * s)));
}

/* The configured PNG at a fifth of the variant's width; *mask_out gets its
 * alpha, the result its colour (plus an opaque alpha for an RGBA base). */
static VipsImage *png_ink(struct pipe *p, VipsImage *base, VipsImage *png, VipsImage **mask_out)
{
    int w = VIPS_MAX(1, base->Xsize / 5);
    int h = VIPS_MAX(1, (int)lround((double)png->Ysize * w / png->Xsize));
    VipsImage *t = NULL;
    VipsImage *ink;

    png = resize_exact(p, png, w, h);
    if (png)
        png = fit_within(p, png, base->Xsize / 2, base->Ysize / 3);
    if (!png || !keep(p, vips_extract_band(png, &t, 3, NULL), &t))
        return NULL;
    *mask_out = t;
    ink = keep(p, vips_extract_band(png, &t, 0, "n", 3, NULL), &t);
    if (ink && base->Bands == 4)
        ink = keep(p, vips_bandjoin_const1(ink, &t, 255.0, NULL), &t);
    return ink;
}

/* White text at 80% over a soft dark shadow one step down-right, which
 * keeps it legible on a white sky as on a black night. */
static VipsImage *text_blend(struct pipe *p, VipsImage *region, VipsImage *mask)
{
    int s = VIPS_MAX(1, mask->Ysize / 16);
    VipsImage *t = NULL;
    VipsImage *shadow = keep(p, vips_embed(mask, &t, s, s, mask->Xsize, mask->Ysize, NULL), &t);

    region = blend(p, region, shadow, constant_like(p, region, 0.0), 0.5);
    if (!region)
        return NULL;
    return blend(p, region, mask, constant_like(p, region, 255.0), 0.8);
}

/* Puts the watermark in the bottom-right corner, its size a fixed share of
 * the variant's width so every variant looks alike. An image too small to
 * carry one is left as it is. */
static VipsImage *watermark_apply(struct pipe *p, VipsImage *base, const char *text,
                                  VipsImage *png)
{
    int margin = VIPS_MAX(2, base->Xsize / 50);
    VipsImage *mask = NULL;
    VipsImage *ink = NULL;
    VipsImage *region = NULL;
    VipsImage *t = NULL;
    int x, y;

    if (base->Xsize < 32 || base->Ysize < 32)
        return base;
    if (png) {
        ink = png_ink(p, base, png, &mask);
    } else {
        mask = text_mask(p, text, base->Xsize);
        if (mask)
            mask = fit_within(p, mask, base->Xsize - 2 * margin, base->Ysize / 3);
    }
    if (!mask || (png && !ink))
        return NULL;
    x = base->Xsize - mask->Xsize - margin;
    y = base->Ysize - mask->Ysize - margin;
    region = keep(p, vips_extract_area(base, &t, x, y, mask->Xsize, mask->Ysize, NULL), &t);
    if (region)
        region = png ? blend(p, region, mask, ink, 1.0) : text_blend(p, region, mask);
    if (!region)
        return NULL;
    return keep(p, vips_insert(base, region, &t, x, y, NULL), &t);
}

/* ---- encoding ---- */

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xFF;
    p[1] = (v >> 8) & 0xFF;
    p[2] = (v >> 16) & 0xFF;
    p[3] = v >> 24;
}

/* Drops the EXIF, XMP and ICCP chunks from a WebP: Debian's libvips 8.14.1
 * webpsave ignores strip (fixed in 8.14.2) and writes the source's EXIF,
 * GPS included, or a made-up one. Also clears their flags in VP8X. Works in place; returns the new length.
 * Leaves anything it does not understand untouched. */
UNITTEST size_t image_webp_strip_chunks(unsigned char *buf, size_t len)
{
    unsigned char *vp8x_flags = NULL;
    size_t pos = 12;

    if (len < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WEBP", 4) != 0)
        return len;
    while (pos + 8 <= len) {
        size_t size = le32(buf + pos + 4);
        size_t whole = 8 + size + (size & 1);

        if (whole > len - pos)
            return len;
        if (memcmp(buf + pos, "VP8X", 4) == 0 && size >= 1) {
            vp8x_flags = buf + pos + 8;
        } else if (memcmp(buf + pos, "EXIF", 4) == 0 || memcmp(buf + pos, "XMP ", 4) == 0 ||
                   memcmp(buf + pos, "ICCP", 4) == 0) {
            memmove(buf + pos, buf + pos + whole, len - pos - whole);
            len -= whole;
            continue;
        }
        pos += whole;
    }
    if (vp8x_flags)
        *vp8x_flags &= (unsigned char)~(0x20 | 0x08 | 0x04); /* ICC, EXIF, XMP */
    put_le32(buf + 4, (uint32_t)(len - 8));
    return len;
}

/* WebP's effort (libwebp "method", 0..6; libvips' default 4). On a 12 MP
 * photo's three variants at Q80 (pipeline_bench, CPU of the call):
 *   effort 0: 0.20 s, 126 KB    effort 2: 0.24 s,  89 KB
 *   effort 1: 0.19 s, 115 KB    effort 4: 0.36 s,  86 KB
 * SSIM 0.978-0.979 in every case. Effort 4 alone would take most of the
 * CPU budget of three formats (2.5x the JPEG-only path); 1 is as fast as 0
 * for 9% fewer bytes. */
#define WEBP_EFFORT 1

static int encode(VipsImage *in, enum image_format f, const struct image_opts *o, void **buf,
                  size_t *len)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG:
        /* No optimize_coding: on a 1920x1440 photo it saves 1.4% of the
         * bytes and triples the encode time (Pillow does not either). */
        return vips_jpegsave_buffer(in, buf, len, "Q", o->jpeg_quality, "strip", TRUE, NULL);
    case IMAGE_FORMAT_PNG:
        return vips_pngsave_buffer(in, buf, len, "compression", PNG_COMPRESSION, "filter",
                                   PNG_FILTER, "strip", TRUE, NULL);
    case IMAGE_FORMAT_WEBP:
        return vips_webpsave_buffer(in, buf, len, "Q", o->webp_quality, "effort", WEBP_EFFORT,
                                    "strip", TRUE, NULL);
    case IMAGE_FORMAT_GIF: return vips_gifsave_buffer(in, buf, len, "strip", TRUE, NULL);
    case IMAGE_FORMAT_AVIF:
        /* AVIF's Q scale sits lower than JPEG's for the same look
         * (libvips' defaults: 75 for JPEG, 50 for AVIF); the defaults of
         * AVIF_QUALITY and AVIF_EFFORT come from the README's table. */
        return vips_heifsave_buffer(in, buf, len, "compression",
                                    VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "Q", o->avif_quality,
                                    "effort", o->avif_effort, "strip", TRUE, NULL);
    case IMAGE_FORMAT_TIFF:
    case IMAGE_FORMAT_HEIF:
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    vips_error("image", "cannot save as %s", image_format_name(f));
    return -1;
}

/* What every variant of one call shares. */
struct variant_job {
    const struct image_opts *opts;
    enum image_format formats[IMAGE_MAX_OUTPUTS]; /* distinct, in the outputs' order */
    size_t nformats;
    const char *text;  /* NULL: no text watermark */
    VipsImage *wm_png; /* NULL: no image watermark */
};

static VipsImage *flatten_white(struct pipe *p, VipsImage *in)
{
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    VipsImage *t = NULL;

    in = keep(p, vips_flatten(in, &t, "background", white, NULL), &t);
    vips_area_unref(VIPS_AREA(white));
    return in;
}

/* A variant's size for fit INSIDE: within width x height (height 0: any),
 * aspect kept, never above the source, at least 1 pixel. */
static void fit_inside(int sw, int sh, const struct image_variant_spec *v, int *w_out,
                       int *h_out)
{
    double s;

    if (v->height <= 0) {
        image_variant_size(sw, sh, v->width, w_out, h_out);
        return;
    }
    s = VIPS_MIN(1.0, VIPS_MIN((double)v->width / sw, (double)v->height / sh));
    *w_out = VIPS_MAX(1, (int)lround(sw * s));
    *h_out = VIPS_MAX(1, (int)lround(sh * s));
}

/* The smallest master a variant can be made from: its own size for
 * INSIDE; for COVER the source scaled to cover the box (never above the
 * source: a box larger than the source is filled by upscaling later). */
static void master_need(int sw, int sh, const struct image_variant_spec *v, int *w_out,
                        int *h_out)
{
    double s;

    if (v->fit != IMAGE_FIT_COVER) {
        fit_inside(sw, sh, v, w_out, h_out);
        return;
    }
    s = VIPS_MIN(1.0, VIPS_MAX((double)v->width / sw, (double)v->height / sh));
    *w_out = VIPS_MAX(1, (int)lround(sw * s));
    *h_out = VIPS_MAX(1, (int)lround(sh * s));
}

/* The master: what the most demanding variant needs. */
static void master_size(const struct image_opts *opts, int sw, int sh, int *w_out, int *h_out)
{
    *w_out = *h_out = 0;
    for (size_t i = 0; i < opts->nvariants; i++) {
        int w, h;

        master_need(sw, sh, &opts->variants[i], &w, &h);
        if (w > *w_out) {
            *w_out = w;
            *h_out = h;
        }
    }
}

/* The box-sized window of in that libvips' attention strategy picks (edges,
 * skin tones and saturated colour, so a face or a subject rather than the
 * centre); in itself when it already is the window. */
static VipsImage *attention_window(struct pipe *p, VipsImage *in, int w, int h)
{
    VipsImage *t = NULL;

    if (in->Xsize == w && in->Ysize == h)
        return in;
    return keep(p, vips_smartcrop(in, &t, w, h, "interesting", VIPS_INTERESTING_ATTENTION, NULL),
                &t);
}

/* Exactly the box. A master larger than the box is scaled down to cover it
 * and then cropped. A master smaller than the box on a side is cropped first
 * and the window scaled up: scaling first would make the whole master big
 * (a 1x20000 source in a 256x256 box would become 256x5120000) before
 * almost all of it is thrown away, and the attention pass reads every pixel. */
static VipsImage *cover_crop(struct pipe *p, VipsImage *master, int bw, int bh)
{
    double s = VIPS_MAX((double)bw / master->Xsize, (double)bh / master->Ysize);
    VipsImage *in;

    if (s > 1.0) {
        in = attention_window(p, master, (int)VIPS_CLIP(1, lround(bw / s), master->Xsize),
                              (int)VIPS_CLIP(1, lround(bh / s), master->Ysize));
        return in ? resize_exact(p, in, bw, bh) : NULL;
    }
    in = resize_exact(p, master, VIPS_MAX(bw, (int)lround(master->Xsize * s)),
                      VIPS_MAX(bh, (int)lround(master->Ysize * s)));
    return in ? attention_window(p, in, bw, bh) : NULL;
}

/* The variant's pixels before any format's treatment, in memory, so that
 * each format's encode does not redo the resize. */
static VipsImage *variant_shape(struct pipe *p, VipsImage *master, const struct image_info *info,
                                const struct image_variant_spec *v)
{
    VipsImage *in;
    int w, h;

    if (v->fit == IMAGE_FIT_COVER) {
        in = cover_crop(p, master, v->width, v->height);
    } else {
        fit_inside(info->width, info->height, v, &w, &h);
        in = resize_exact(p, master, w, h);
    }
    if (in && in != master)
        in = pipe_keep(p, vips_image_copy_memory(in));
    return in;
}

/* The pixels of one format: flattened for JPEG, watermarked. */
static VipsImage *variant_pixels(struct pipe *p, VipsImage *in, enum image_format f,
                                 const struct variant_job *job)
{
    if (in && f == IMAGE_FORMAT_JPEG && vips_image_hasalpha(in))
        in = flatten_white(p, in);
    if (in && (job->text || job->wm_png))
        in = watermark_apply(p, in, job->text, job->wm_png);
    return in;
}

/* One file of a variant, encoded and copied into malloc'd memory for the
 * caller. */
static enum rz_err variant_encode(VipsImage *shaped, enum image_format f,
                                  const struct variant_job *job, struct image_result *r,
                                  char *msg, size_t msglen)
{
    struct pipe p;
    VipsImage *in;
    void *buf = NULL;
    size_t len = 0;
    enum rz_err err = RZ_EINTERNAL;

    pipe_init(&p);
    in = variant_pixels(&p, shaped, f, job);
    if (!in) {
        err = fail_with(RZ_EINTERNAL, msg, msglen, "cannot make the variant");
        goto fail;
    }
    if (encode(in, f, job->opts, &buf, &len)) {
        err = fail_with(RZ_EINTERNAL, msg, msglen, "cannot encode the variant");
        goto fail;
    }
    r->data = malloc(len > 0 ? len : 1);
    if (!r->data) {
        err = RZ_ENOMEM;
        goto fail;
    }
    memcpy(r->data, buf, len);
    r->len = f == IMAGE_FORMAT_WEBP ? image_webp_strip_chunks(r->data, len) : len;
    r->format = f;
    r->width = in->Xsize;
    r->height = in->Ysize;
    err = RZ_OK;
fail:
    g_free(buf);
    pipe_free(&p);
    return err;
}

/* Every format of variant v into r (job->nformats entries). */
static enum rz_err variant_make(VipsImage *master, const struct image_info *info,
                                const struct image_variant_spec *v,
                                const struct variant_job *job, struct image_result *r, char *msg,
                                size_t msglen)
{
    struct pipe p;
    VipsImage *shaped;
    enum rz_err err = RZ_OK;

    pipe_init(&p);
    shaped = variant_shape(&p, master, info, v);
    if (!shaped)
        err = fail_with(RZ_EINTERNAL, msg, msglen, "cannot make the variant");
    for (size_t k = 0; k < job->nformats && err == RZ_OK; k++) {
        snprintf(r[k].name, sizeof(r[k].name), "%s", v->name);
        err = variant_encode(shaped, job->formats[k], job, &r[k], msg, msglen);
    }
    pipe_free(&p);
    return err;
}

/* ---- placeholders ---- */

/* The side of the image the placeholders are computed from: BlurHash
 * needs a few dozen pixels (its cost is pixels x components), and the
 * dominant colour is a histogram of it. */
#define PLACEHOLDER_SIDE 32
/* Colours are counted in bins of 4 bits a channel: fine enough to tell
 * shades apart, coarse enough that a photo's sky is one colour. */
#define DOMINANT_BITS 4

/* The most frequent colour bin of an RGB buffer, as the mean of its pixels. */
static void dominant_colour(const unsigned char *px, size_t npx, char out[8])
{
    enum { NBINS = 1 << (3 * DOMINANT_BITS) };
    unsigned *count = calloc(NBINS, sizeof(*count));
    unsigned long sum[3] = {0, 0, 0};
    size_t best = 0;

    snprintf(out, 8, "#000000");
    if (!count)
        return;
    for (size_t i = 0; i < npx; i++) {
        const unsigned char *c = px + 3 * i;
        size_t bin = (size_t)(c[0] >> (8 - DOMINANT_BITS)) << (2 * DOMINANT_BITS) |
                     (size_t)(c[1] >> (8 - DOMINANT_BITS)) << DOMINANT_BITS |
                     (size_t)(c[2] >> (8 - DOMINANT_BITS));

        if (++count[bin] > count[best] || (count[bin] == count[best] && bin < best))
            best = bin;
    }
    for (size_t i = 0; i < npx; i++) {
        const unsigned char *c = px + 3 * i;
        size_t bin = (size_t)(c[0] >> (8 - DOMINANT_BITS)) << (2 * DOMINANT_BITS) |
                     (size_t)(c[1] >> (8 - DOMINANT_BITS)) << DOMINANT_BITS |
                     (size_t)(c[2] >> (8 - DOMINANT_BITS));

        for (int k = 0; k < 3 && bin == best; k++)
            sum[k] += c[k];
    }
    snprintf(out, 8, "#%02x%02x%02x", (unsigned)((sum[0] + count[best] / 2) / count[best]),
             (unsigned)((sum[1] + count[best] / 2) / count[best]),
             (unsigned)((sum[2] + count[best] / 2) / count[best]));
    free(count);
}

/* BlurHash and dominant colour from the master already in memory: shrunk
 * to PLACEHOLDER_SIDE, flattened on white (as JPEG shows transparency). */
static enum rz_err placeholders_make(VipsImage *master, const struct image_opts *opts,
                                     struct image_info *info, char *msg, size_t msglen)
{
    struct pipe p;
    VipsImage *in;
    unsigned char *px = NULL;
    size_t n = 0;
    double s = VIPS_MIN(1.0, (double)PLACEHOLDER_SIDE / VIPS_MAX(master->Xsize, master->Ysize));
    enum rz_err err = RZ_OK;

    pipe_init(&p);
    in = resize_exact(&p, master, VIPS_MAX(1, (int)lround(master->Xsize * s)),
                      VIPS_MAX(1, (int)lround(master->Ysize * s)));
    if (in && vips_image_hasalpha(in))
        in = flatten_white(&p, in);
    if (in)
        px = vips_image_write_to_memory(in, &n);
    if (!px || n != (size_t)in->Xsize * in->Ysize * 3) {
        err = fail_with(RZ_EINTERNAL, msg, msglen, "cannot make the placeholder");
        goto fail;
    }
    dominant_colour(px, n / 3, info->dominant);
    err = blurhash_encode(px, in->Xsize, in->Ysize, (size_t)in->Xsize * 3, 3, opts->blurhash_x,
                          opts->blurhash_y, info->blurhash);
    if (err != RZ_OK && msg && msglen > 0)
        snprintf(msg, msglen, "cannot encode the BlurHash");
fail:
    g_free(px);
    pipe_free(&p);
    return err;
}

/* ---- the call ---- */

/* Whitespace-only text draws nothing (and vips_text refuses it). */
static int text_visible(const char *s)
{
    return s && s[strspn(s, " \t\r\n")] != '\0';
}

static int quality_ok(int q)
{
    return q >= 1 && q <= 100;
}

static int spec_valid(const struct image_variant_spec *v)
{
    if (v->width <= 0 || v->height < 0)
        return 0;
    return v->fit != IMAGE_FIT_COVER || v->height > 0;
}

static int opts_valid(const struct image_opts *opts)
{
    if (!opts || !opts->variants || opts->nvariants < 1 ||
        opts->nvariants > IMAGE_MAX_VARIANTS || opts->noutputs < 1 ||
        opts->noutputs > IMAGE_MAX_OUTPUTS)
        return 0;
    if (!quality_ok(opts->jpeg_quality) || !quality_ok(opts->webp_quality) ||
        !quality_ok(opts->avif_quality) || opts->avif_effort < 0 || opts->avif_effort > 9 ||
        opts->max_pixels == 0)
        return 0;
    if ((opts->blurhash_x || opts->blurhash_y) &&
        (opts->blurhash_x < 1 || opts->blurhash_x > 9 || opts->blurhash_y < 1 ||
         opts->blurhash_y > 9))
        return 0;
    if (opts->watermark_png && opts->watermark_png_len == 0)
        return 0;
    for (size_t i = 0; i < opts->nvariants; i++) {
        if (!spec_valid(&opts->variants[i]))
            return 0;
    }
    return 1;
}

/* The largest side each encoder can write: JPEG's 16-bit header field
 * (libjpeg stops at 65,500), WebP's 14-bit one, GIF's 16-bit one. 0: none
 * that a variant could reach. */
static int encoder_max_side(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return 65500;
    case IMAGE_FORMAT_WEBP: return 16383;
    case IMAGE_FORMAT_GIF: return 65535;
    default: return 0;
    }
}

/* A variant's final size: its box for COVER, else fitted inside. */
static void variant_final_size(const struct image_info *info, const struct image_variant_spec *v,
                               int *w_out, int *h_out)
{
    if (v->fit == IMAGE_FIT_COVER) {
        *w_out = v->width;
        *h_out = v->height;
        return;
    }
    fit_inside(info->width, info->height, v, w_out, h_out);
}

/* Checked before any pixel is decoded: an image whose variant an encoder
 * cannot write fails the same way every time, so it is a permanent
 * failure, found cheaply. */
static enum rz_err variants_fit_encoder(const struct image_info *info,
                                        const struct variant_job *job, char *msg, size_t msglen)
{
    for (size_t k = 0; k < job->nformats; k++) {
        int max = encoder_max_side(job->formats[k]);

        for (size_t i = 0; max && i < job->opts->nvariants; i++) {
            int w, h;

            variant_final_size(info, &job->opts->variants[i], &w, &h);
            if (w > max || h > max) {
                if (msg && msglen > 0)
                    snprintf(msg, msglen,
                             "variant %s would be %dx%d; %s allows at most %d px a side",
                             job->opts->variants[i].name, w, h,
                             image_format_name(job->formats[k]), max);
                return RZ_ELIMIT;
            }
        }
    }
    return RZ_OK;
}

size_t image_results_max(const struct image_opts *opts)
{
    return opts ? opts->nvariants * opts->noutputs : 0;
}

/* The distinct formats the outputs give for this input ("same,jpeg" on a
 * JPEG is one file, not two under the same key). */
static void job_formats(struct variant_job *job, enum image_format input)
{
    job->nformats = 0;
    for (size_t i = 0; i < job->opts->noutputs; i++) {
        enum image_format f = image_output_format(job->opts->outputs[i], input);
        size_t k = 0;

        while (k < job->nformats && job->formats[k] != f)
            k++;
        if (k == job->nformats)
            job->formats[job->nformats++] = f;
    }
}

/* Decodes the master, then every variant in every format. */
static enum rz_err make_all(struct pipe *p, VipsImage *header, const void *data, size_t len,
                            struct variant_job *job, struct image_info *info,
                            struct image_result *results, char *msg, size_t msglen)
{
    const struct image_opts *opts = job->opts;
    VipsImage *master = NULL;
    int mw, mh;
    enum rz_err err;

    job_formats(job, info->format);
    err = variants_fit_encoder(info, job, msg, msglen);
    if (err != RZ_OK)
        return err;
    master_size(opts, info->width, info->height, &mw, &mh);
    err = master_build(p, header, data, len, info, mw, mh, &master, msg, msglen);
    if (err == RZ_OK && opts->blurhash_x > 0)
        err = placeholders_make(master, opts, info, msg, msglen);
    for (size_t i = 0; i < opts->nvariants && err == RZ_OK; i++) {
        err = variant_make(master, info, &opts->variants[i], job, results + info->nresults, msg,
                           msglen);
        info->nresults += job->nformats;
    }
    return err;
}

enum rz_err image_make_variants(const void *data, size_t len, const struct image_opts *opts,
                                struct image_info *info_out, struct image_result *results_out,
                                char *msg, size_t msglen)
{
    struct pipe p = {0};
    VipsImage *header = NULL;
    struct variant_job job = {0};
    enum rz_err err;

    if (msg && msglen > 0)
        msg[0] = '\0';
    if (!opts_valid(opts) || !info_out || !results_out) {
        if (msg && msglen > 0)
            snprintf(msg, msglen, "invalid image options");
        return RZ_EINVAL;
    }
    memset(results_out, 0, image_results_max(opts) * sizeof(*results_out));
    __atomic_add_fetch(&image_busy, 1, __ATOMIC_ACQ_REL);
    pipe_init(&p);
    err = open_checked(data, len, opts->max_pixels, info_out, &header, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    pipe_keep(&p, header);
    job.opts = opts;
    err = watermark_load(&p, opts, &job.wm_png, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    job.text = text_visible(opts->watermark_text) ? opts->watermark_text : NULL;
    err = make_all(&p, header, data, len, &job, info_out, results_out, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    pipe_free(&p);
    image_release_memory();
    return RZ_OK;
fail:
    image_results_free(results_out, image_results_max(opts));
    info_out->nresults = 0;
    pipe_free(&p);
    image_release_memory();
    return err;
}

void image_results_free(struct image_result *results, size_t n)
{
    if (!results)
        return;
    for (size_t i = 0; i < n; i++) {
        free(results[i].data);
        results[i].data = NULL;
        results[i].len = 0;
    }
}
