/* pipeline_bench.c - resizer's image pipeline in-process, for tests/bench/run.
 *
 * Usage: pipeline_bench [-n N] FILE [OUTDIR]
 *        pipeline_bench --baseline
 *
 * Does what a worker does with a downloaded object, without S3: image_init,
 * then image_make_variants over the file's bytes with the image_opts a
 * worker builds from the configuration (server/jobs.c). The configuration
 * comes from config_load, so VARIANTS, OUTPUT_FORMATS, the qualities and
 * MAX_PIXELS are the service's defaults unless set in the environment; the
 * variables config_load requires but images never read get placeholders.
 * Makes the variants N times (default 1), timing each call alone (CPU of
 * all threads from getrusage, and wall), and prints one JSON line: the
 * first, cold, call (class init, ORC code generation) and the median of
 * the others, warm, as a long-running worker sees it:
 *   {"cpu":0.123,"wall":0.130,"cpu_warm":0.101,"wall_warm":0.104,
 *    "variants":[{"name":"desktop","format":"jpeg","width":1920,...}]}
 * With OUTDIR, writes OUTDIR/<name>.<ext> of the last call afterwards.
 * With -s, each result gets "ssim": mean SSIM (luma, 11x11 Gaussian window)
 * against the source decoded whole and resized to the result's size in one
 * Lanczos3 step, unencoded: what the pipeline and the encoder lost.
 * --baseline starts libvips and exits: its peak RSS is the process's fixed
 * cost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server/config.h"
#include "server/image.h"

#include <vips/vips.h>

#define BENCH_MAX_FILE (1024L * 1024 * 1024)
#define BENCH_MAX_ENV 16
#define BENCH_MAX_REPEAT 100

struct bench_clock {
    double cpu;
    double wall;
};

static void bench_clock_now(struct bench_clock *c)
{
    struct rusage ru;
    struct timespec ts;

    getrusage(RUSAGE_SELF, &ru);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    c->wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The image variables from our environment, over placeholders for the
 * required ones: the benchmark never talks to S3 or HTTP. */
static enum rz_err bench_config(struct config *cfg)
{
    static const char *const image_vars[] = {
        "VARIANTS",     "OUTPUT_FORMAT",  "OUTPUT_FORMATS",  "JPEG_QUALITY",
        "WEBP_QUALITY", "AVIF_QUALITY",   "AVIF_EFFORT",     "BLURHASH_COMPONENTS",
        "MAX_PIXELS",   "WATERMARK_TEXT", "WATERMARK_IMAGE", NULL,
    };
    static char lines[BENCH_MAX_ENV][1024];
    const char *env[BENCH_MAX_ENV + 8] = {
        "SRC_BUCKET=bench-src",
        "DEST_BUCKET=bench-dest",
        "AWS_REGION=us-east-1",
        "API_TOKENS=bench-token-0123456789",
        "EVENTS_API_KEY=bench-events-key",
        "AWS_ACCESS_KEY_ID=bench",
        "AWS_SECRET_ACCESS_KEY=bench",
    };
    size_t n = 7;
    char msg[256];
    enum rz_err err;

    for (size_t i = 0; image_vars[i] && i < BENCH_MAX_ENV; i++) {
        const char *v = getenv(image_vars[i]);

        if (!v)
            continue;
        snprintf(lines[i], sizeof(lines[i]), "%s=%s", image_vars[i], v);
        env[n++] = lines[i];
    }
    env[n] = NULL;
    err = config_load(env, cfg, msg, sizeof(msg));
    if (err != RZ_OK)
        fprintf(stderr, "pipeline_bench: %s\n", msg);
    return err;
}

/* Returns the file's bytes (the caller frees them) or NULL. */
static void *bench_read(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    void *data = NULL;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0)
        goto fail;
    size = ftell(f);
    if (size <= 0 || size > BENCH_MAX_FILE || fseek(f, 0, SEEK_SET) != 0)
        goto fail;
    data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
        goto fail;
    }
    *len_out = (size_t)size;
fail:
    fclose(f);
    return data;
}

static int bench_write(const char *dir, const struct image_result *rs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        FILE *f;
        int ok;

        snprintf(path, sizeof(path), "%s/%s.%s", dir, rs[i].name,
                 image_format_ext(rs[i].format));
        f = fopen(path, "wb");
        if (!f)
            return -1;
        ok = fwrite(rs[i].data, 1, rs[i].len, f) == rs[i].len;
        if (fclose(f) != 0 || !ok)
            return -1;
    }
    return 0;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median of xs[0..n), n > 0; sorts xs. */
static double bench_median(double *xs, int n)
{
    qsort(xs, (size_t)n, sizeof(*xs), bench_cmp);
    return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

/* ---- SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, on luma) ---- */

#define BENCH_MAX_TMP 64

struct bench_imgs {
    VipsImage *v[BENCH_MAX_TMP];
    int n;
};

/* Keeps *img for bench_imgs_free when rc is 0; returns it or NULL. A
 * pointer, read after the call that set it has run. */
static VipsImage *bench_keep(struct bench_imgs *k, int rc, VipsImage **img)
{
    if (rc != 0 || !*img || k->n == BENCH_MAX_TMP)
        return NULL;
    k->v[k->n++] = *img;
    return *img;
}

static void bench_imgs_free(struct bench_imgs *k)
{
    for (int i = 0; i < k->n; i++)
        g_object_unref(k->v[i]);
    k->n = 0;
}

/* 8-bit sRGB (flattened on white) -> luma as float. */
static VipsImage *bench_luma(struct bench_imgs *k, VipsImage *in)
{
    VipsImage *t = NULL;

    if (in && vips_image_hasalpha(in)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);

        in = bench_keep(k, vips_flatten(in, &t, "background", white, NULL), &t);
        vips_area_unref(VIPS_AREA(white));
    }
    if (in)
        in = bench_keep(k, vips_colourspace(in, &t, VIPS_INTERPRETATION_B_W, NULL), &t);
    if (in)
        in = bench_keep(k, vips_cast(in, &t, VIPS_FORMAT_FLOAT, NULL), &t);
    return in;
}

static VipsImage *bench_blur(struct bench_imgs *k, VipsImage *in)
{
    VipsImage *t = NULL;

    return in ? bench_keep(k,
                           vips_gaussblur(in, &t, 1.5, "precision", VIPS_PRECISION_FLOAT,
                                          "min_ampl", 0.01, NULL),
                           &t)
              : NULL;
}

static VipsImage *bench_op(struct bench_imgs *k, char op, VipsImage *a, VipsImage *b)
{
    VipsImage *t = NULL;
    int rc = -1;

    if (!a || !b)
        return NULL;
    if (op == '*')
        rc = vips_multiply(a, b, &t, NULL);
    else if (op == '-')
        rc = vips_subtract(a, b, &t, NULL);
    else if (op == '+')
        rc = vips_add(a, b, &t, NULL);
    else if (op == '/')
        rc = vips_divide(a, b, &t, NULL);
    return bench_keep(k, rc, &t);
}

static VipsImage *bench_lin(struct bench_imgs *k, VipsImage *in, double a, double b)
{
    VipsImage *t = NULL;

    return in ? bench_keep(k, vips_linear1(in, &t, a, b, NULL), &t) : NULL;
}

/* Mean SSIM of x against y (same size, float luma); -1 on failure. */
static double bench_ssim_luma(struct bench_imgs *k, VipsImage *x, VipsImage *y)
{
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    VipsImage *mx = bench_blur(k, x), *my = bench_blur(k, y);
    VipsImage *mxx = bench_op(k, '*', mx, mx), *myy = bench_op(k, '*', my, my);
    VipsImage *mxy = bench_op(k, '*', mx, my);
    VipsImage *sxx = bench_op(k, '-', bench_blur(k, bench_op(k, '*', x, x)), mxx);
    VipsImage *syy = bench_op(k, '-', bench_blur(k, bench_op(k, '*', y, y)), myy);
    VipsImage *sxy = bench_op(k, '-', bench_blur(k, bench_op(k, '*', x, y)), mxy);
    VipsImage *num = bench_op(k, '*', bench_lin(k, mxy, 2, c1), bench_lin(k, sxy, 2, c2));
    VipsImage *den = bench_op(k, '*', bench_lin(k, bench_op(k, '+', mxx, myy), 1, c1),
                              bench_lin(k, bench_op(k, '+', sxx, syy), 1, c2));
    VipsImage *map = bench_op(k, '/', num, den);
    double avg = -1;

    if (!map || vips_avg(map, &avg, NULL) != 0)
        return -1;
    return avg;
}

/* SSIM of a result against the source resized to the result's size with
 * Lanczos3 in one step from the full decode: what encoding lost. */
static double bench_ssim(const void *src, size_t len, const struct image_result *r)
{
    struct bench_imgs k = {{0}, 0};
    VipsImage *t = NULL;
    VipsImage *ref = vips_image_new_from_buffer(src, len, "", NULL);
    VipsImage *got = vips_image_new_from_buffer(r->data, r->len, "", NULL);
    double ssim = -1;

    ref = bench_keep(&k, 0, &ref);
    got = bench_keep(&k, 0, &got);
    if (ref)
        ref = bench_keep(&k, vips_autorot(ref, &t, NULL), &t);
    if (ref)
        ref = bench_keep(&k,
                         vips_resize(ref, &t, (double)r->width / ref->Xsize, "vscale",
                                     (double)r->height / ref->Ysize, NULL),
                         &t);
    /* vips_resize may round a side one pixel off: compare the overlap */
    if (ref && got && abs(ref->Xsize - got->Xsize) <= 1 && abs(ref->Ysize - got->Ysize) <= 1) {
        int w = VIPS_MIN(ref->Xsize, got->Xsize), h = VIPS_MIN(ref->Ysize, got->Ysize);

        ref = bench_keep(&k, vips_extract_area(ref, &t, 0, 0, w, h, NULL), &t);
        got = bench_keep(&k, vips_extract_area(got, &t, 0, 0, w, h, NULL), &t);
        ssim = ref && got ? bench_ssim_luma(&k, bench_luma(&k, ref), bench_luma(&k, got)) : -1;
    }
    if (ssim < 0)
        fprintf(stderr, "pipeline_bench: no SSIM for %s: %s\n", r->name, vips_error_buffer());
    bench_imgs_free(&k);
    return ssim;
}

static void bench_print(double *cpu, double *wall, int n, const struct image_result *rs,
                        size_t nres, const double *ssim)
{
    printf("{\"cpu\":%.6f,\"wall\":%.6f", cpu[0], wall[0]);
    if (n > 1)
        printf(",\"cpu_warm\":%.6f,\"wall_warm\":%.6f", bench_median(cpu + 1, n - 1),
               bench_median(wall + 1, n - 1));
    printf(",\"variants\":[");
    for (size_t i = 0; i < nres; i++)
        printf("%s{\"name\":\"%s\",\"format\":\"%s\",\"width\":%d,\"height\":%d,"
               "\"bytes\":%zu,\"ssim\":%.5f}",
               i ? "," : "", rs[i].name, image_format_name(rs[i].format), rs[i].width,
               rs[i].height, rs[i].len, ssim ? ssim[i] : -1.0);
    printf("]}\n");
}

/* Reads FILE, makes the variants n times, reports; 0 on success. */
static int bench_run(const struct config *cfg, const char *file, const char *outdir, int n,
                     int with_ssim)
{
    double ssim[IMAGE_MAX_VARIANTS * IMAGE_MAX_OUTPUTS];
    struct image_result rs[IMAGE_MAX_VARIANTS * IMAGE_MAX_OUTPUTS] = {0};
    double cpu[BENCH_MAX_REPEAT], wall[BENCH_MAX_REPEAT];
    struct image_opts opts;
    struct image_info info;
    char msg[256];
    size_t len = 0;
    void *data = bench_read(file, &len);
    int rc = 1;

    if (!data) {
        fprintf(stderr, "pipeline_bench: cannot read %s\n", file);
        return 1;
    }
    config_image_opts(cfg, &opts);
    for (int i = 0; i < n; i++) {
        struct bench_clock a, b;

        image_results_free(rs, image_results_max(&opts));
        bench_clock_now(&a);
        if (image_make_variants(data, len, &opts, &info, rs, msg, sizeof(msg)) != RZ_OK) {
            fprintf(stderr, "pipeline_bench: %s: %s\n", file, msg);
            goto fail;
        }
        bench_clock_now(&b);
        cpu[i] = b.cpu - a.cpu;
        wall[i] = b.wall - a.wall;
    }
    if (outdir && bench_write(outdir, rs, info.nresults) != 0) {
        fprintf(stderr, "pipeline_bench: cannot write into %s\n", outdir);
        goto fail;
    }
    for (size_t i = 0; with_ssim && i < info.nresults; i++)
        ssim[i] = bench_ssim(data, len, &rs[i]);
    bench_print(cpu, wall, n, rs, info.nresults, with_ssim ? ssim : NULL);
    rc = 0;
fail:
    image_results_free(rs, image_results_max(&opts));
    free(data);
    return rc;
}

static int bench_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-s] [-n N] FILE [OUTDIR] | --baseline\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct config cfg = {0};
    int baseline = argc == 2 && strcmp(argv[1], "--baseline") == 0;
    long n = 1;
    int opt, rc = 1, with_ssim = 0;

    while (!baseline && (opt = getopt(argc, argv, "sn:")) != -1) {
        char *end = NULL;

        if (opt == 's') {
            with_ssim = 1;
            continue;
        }
        n = opt == 'n' ? strtol(optarg, &end, 10) : 0;
        if (!end || *end || n < 1 || n > BENCH_MAX_REPEAT)
            return bench_usage(argv[0]);
    }
    if (!baseline && (argc - optind < 1 || argc - optind > 2))
        return bench_usage(argv[0]);
    if (bench_config(&cfg) != RZ_OK)
        return 2;
    if (image_init(argv[0]) != RZ_OK) {
        fprintf(stderr, "pipeline_bench: cannot start libvips\n");
        goto done;
    }
    if (baseline) {
        printf("{\"cpu\":0,\"wall\":0,\"variants\":[]}\n");
        rc = 0;
    } else {
        rc = bench_run(&cfg, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, (int)n,
                       with_ssim);
    }
    image_shutdown();
done:
    config_cleanup(&cfg);
    return rc;
}
