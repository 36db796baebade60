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
        "VARIANTS", "OUTPUT_FORMAT", "OUTPUT_FORMATS", "JPEG_QUALITY", "WEBP_QUALITY",
        "AVIF_QUALITY", "AVIF_EFFORT", "BLURHASH_COMPONENTS", "MAX_PIXELS",
        "WATERMARK_TEXT", "WATERMARK_IMAGE", NULL,
    };
    static char lines[BENCH_MAX_ENV][1024];
    const char *env[BENCH_MAX_ENV + 8] = {
        "DEST_BUCKET=bench-dest", "AWS_REGION=us-east-1",
        "API_TOKENS=bench-token-0123456789", "EVENTS_API_KEY=bench-events-key",
        "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench",
    };
    size_t n = 6;
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

        snprintf(path, sizeof(path), "%s/%s.%s", dir, rs[i].name, image_format_ext(rs[i].format));
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

static void bench_print(double *cpu, double *wall, int n, const struct image_result *rs,
                        size_t nres)
{
    printf("{\"cpu\":%.6f,\"wall\":%.6f", cpu[0], wall[0]);
    if (n > 1)
        printf(",\"cpu_warm\":%.6f,\"wall_warm\":%.6f", bench_median(cpu + 1, n - 1),
               bench_median(wall + 1, n - 1));
    printf(",\"variants\":[");
    for (size_t i = 0; i < nres; i++)
        printf("%s{\"name\":\"%s\",\"format\":\"%s\",\"width\":%d,\"height\":%d,\"bytes\":%zu}",
               i ? "," : "", rs[i].name, image_format_name(rs[i].format), rs[i].width,
               rs[i].height, rs[i].len);
    printf("]}\n");
}

/* Reads FILE, makes the variants n times, reports; 0 on success. */
static int bench_run(const struct config *cfg, const char *file, const char *outdir, int n)
{
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
    bench_print(cpu, wall, n, rs, info.nresults);
    rc = 0;
fail:
    image_results_free(rs, image_results_max(&opts));
    free(data);
    return rc;
}

static int bench_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-n N] FILE [OUTDIR] | --baseline\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct config cfg = {0};
    int baseline = argc == 2 && strcmp(argv[1], "--baseline") == 0;
    long n = 1;
    int opt, rc = 1;

    while (!baseline && (opt = getopt(argc, argv, "n:")) != -1) {
        char *end = NULL;

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
        rc = bench_run(&cfg, argv[optind], argc - optind == 2 ? argv[optind + 1] : NULL, (int)n);
    }
    image_shutdown();
done:
    config_cleanup(&cfg);
    return rc;
}
