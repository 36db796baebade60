/* vips_floor.c - bare libvips making the three variants: the floor for the library.
 *
 * Usage: vips_floor [-n N] thumb3|once FILE [OUTDIR]
 *        vips_floor --baseline
 *
 * Reads FILE into memory, then does the work N times (default 1), timing
 * each (CPU of all threads from getrusage, and wall), and prints one JSON
 * line: the first, cold, run (class init, ORC code generation) and the
 * median of the others, warm, as a long-running worker sees it:
 *   {"cpu":0.123,"wall":0.130,"cpu_warm":0.101,"wall_warm":0.104,
 *    "variants":[{"name":"desktop","width":1920,...}]}
 * With OUTDIR, writes OUTDIR/<name>.<ext> of the last run afterwards.
 *   thumb3  one vips_thumbnail_buffer per width, as a libvips user would
 *           write it first: three shrink-on-load decodes;
 *   once    one vips_thumbnail_buffer to the largest width, kept in
 *           memory, the smaller two thumbnailed from it.
 * Output settings are resizer's (server/image.c), so only the pipeline
 * differs: the input's format, JPEG and WebP Q85, PNG zlib 4 with adaptive
 * filtering, metadata stripped, never upscaled, widths 1920/1024/640.
 * --baseline initialises libvips and exits: its peak RSS is the process's
 * fixed cost. The operation cache is off, as in the service: a cache that
 * recognised the second thumbnail's header load would flatter the floor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#define FLOOR_NVARIANTS 3
#define FLOOR_QUALITY 85
#define FLOOR_MAX_REPEAT 100

struct floor_variant {
    const char *name;
    int width;
    void *data;
    size_t len;
    int out_w;
    int out_h;
};

enum floor_format { FLOOR_JPEG, FLOOR_PNG, FLOOR_WEBP };

struct floor_clock {
    double cpu;
    double wall;
};

static const char *const floor_ext[] = {"jpg", "png", "webp"};

static void floor_clock_now(struct floor_clock *c)
{
    struct rusage ru;
    struct timespec ts;

    getrusage(RUSAGE_SELF, &ru);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    c->wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int floor_read(const char *path, void **data_out, size_t *len_out)
{
    gchar *data = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &data, &len, NULL))
        return -1;
    *data_out = data;
    *len_out = len;
    return 0;
}

/* The loader libvips picks decides the output format, as OUTPUT_FORMAT=same does. */
static int floor_format(const void *data, size_t len, enum floor_format *out)
{
    const char *loader = vips_foreign_find_load_buffer(data, len);

    if (!loader)
        return -1;
    if (strstr(loader, "Jpeg"))
        *out = FLOOR_JPEG;
    else if (strstr(loader, "Png"))
        *out = FLOOR_PNG;
    else if (strstr(loader, "Webp"))
        *out = FLOOR_WEBP;
    else
        return -1;
    return 0;
}

static int floor_encode(VipsImage *in, enum floor_format f, struct floor_variant *v)
{
    int rc = -1;

    switch (f) {
    case FLOOR_JPEG:
        rc = vips_jpegsave_buffer(in, &v->data, &v->len, "Q", FLOOR_QUALITY, "strip", TRUE,
                                  NULL);
        break;
    case FLOOR_PNG:
        rc = vips_pngsave_buffer(in, &v->data, &v->len, "compression", 4, "filter",
                                 VIPS_FOREIGN_PNG_FILTER_ALL, "strip", TRUE, NULL);
        break;
    case FLOOR_WEBP:
        rc = vips_webpsave_buffer(in, &v->data, &v->len, "Q", FLOOR_QUALITY, "strip", TRUE,
                                  NULL);
        break;
    }
    v->out_w = in->Xsize;
    v->out_h = in->Ysize;
    return rc;
}

/* Width-bound only: the height limit is out of reach, as in the service. */
static int floor_thumb3(void *data, size_t len, enum floor_format f, struct floor_variant *vs)
{
    for (int i = 0; i < FLOOR_NVARIANTS; i++) {
        VipsImage *t = NULL;
        int rc = vips_thumbnail_buffer(data, len, &t, vs[i].width, "height", VIPS_MAX_COORD,
                                       "size", VIPS_SIZE_DOWN, NULL);

        if (rc == 0)
            rc = floor_encode(t, f, &vs[i]);
        VIPS_UNREF(t);
        if (rc)
            return -1;
    }
    return 0;
}

/* Variants are ordered largest first, so vs[0] is the master. */
static int floor_once(void *data, size_t len, enum floor_format f, struct floor_variant *vs)
{
    VipsImage *t = NULL;
    VipsImage *master = NULL;
    int rc = vips_thumbnail_buffer(data, len, &t, vs[0].width, "height", VIPS_MAX_COORD, "size",
                                   VIPS_SIZE_DOWN, NULL);

    if (rc == 0) {
        master = vips_image_copy_memory(t);
        rc = master ? 0 : -1;
    }
    VIPS_UNREF(t);
    if (rc == 0)
        rc = floor_encode(master, f, &vs[0]);
    for (int i = 1; i < FLOOR_NVARIANTS && rc == 0; i++) {
        rc = vips_thumbnail_image(master, &t, vs[i].width, "height", VIPS_MAX_COORD, "size",
                                  VIPS_SIZE_DOWN, NULL);
        if (rc == 0)
            rc = floor_encode(t, f, &vs[i]);
        VIPS_UNREF(t);
    }
    VIPS_UNREF(master);
    return rc;
}

static int floor_write(const char *dir, enum floor_format f, const struct floor_variant *vs)
{
    for (int i = 0; i < FLOOR_NVARIANTS; i++) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s.%s", dir, vs[i].name, floor_ext[f]);
        if (!g_file_set_contents(path, vs[i].data, (gssize)vs[i].len, NULL))
            return -1;
    }
    return 0;
}

static int floor_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median of xs[0..n), n > 0; sorts xs. */
static double floor_median(double *xs, int n)
{
    qsort(xs, (size_t)n, sizeof(*xs), floor_cmp);
    return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

static void floor_print(double *cpu, double *wall, int n, const struct floor_variant *vs)
{
    printf("{\"cpu\":%.6f,\"wall\":%.6f", cpu[0], wall[0]);
    if (n > 1)
        printf(",\"cpu_warm\":%.6f,\"wall_warm\":%.6f", floor_median(cpu + 1, n - 1),
               floor_median(wall + 1, n - 1));
    printf(",\"variants\":[");
    for (int i = 0; i < FLOOR_NVARIANTS; i++)
        printf("%s{\"name\":\"%s\",\"width\":%d,\"height\":%d,\"bytes\":%zu}", i ? "," : "",
               vs[i].name, vs[i].out_w, vs[i].out_h, vs[i].len);
    printf("]}\n");
}

static void floor_free(struct floor_variant *vs)
{
    for (int i = 0; i < FLOOR_NVARIANTS; i++) {
        g_free(vs[i].data);
        vs[i].data = NULL;
        vs[i].len = 0;
    }
}

/* Runs the mode n times; cpu/wall get each run's figures. */
static int floor_repeat(const char *mode, void *data, size_t len, enum floor_format f,
                        struct floor_variant *vs, int n, double *cpu, double *wall)
{
    for (int i = 0; i < n; i++) {
        struct floor_clock a, b;
        int rc;

        floor_free(vs);
        floor_clock_now(&a);
        rc = strcmp(mode, "thumb3") == 0 ? floor_thumb3(data, len, f, vs)
                                         : floor_once(data, len, f, vs);
        floor_clock_now(&b);
        if (rc)
            return -1;
        cpu[i] = b.cpu - a.cpu;
        wall[i] = b.wall - a.wall;
    }
    return 0;
}

static int floor_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [-n N] thumb3|once FILE [OUTDIR] | --baseline\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    struct floor_variant vs[FLOOR_NVARIANTS] = {
        {"desktop", 1920, NULL, 0, 0, 0},
        {"tablet", 1024, NULL, 0, 0, 0},
        {"phone", 640, NULL, 0, 0, 0},
    };
    double cpu[FLOOR_MAX_REPEAT], wall[FLOOR_MAX_REPEAT];
    enum floor_format f = FLOOR_JPEG;
    void *data = NULL;
    size_t len = 0;
    long n = 1;
    int opt, rc = 1;

    if (VIPS_INIT(argv[0]))
        vips_error_exit("cannot start libvips");
    vips_cache_set_max(0);
    if (argc == 2 && strcmp(argv[1], "--baseline") == 0) {
        printf("{\"cpu\":0,\"wall\":0,\"variants\":[]}\n");
        rc = 0;
        goto done;
    }
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        char *end = NULL;

        n = opt == 'n' ? strtol(optarg, &end, 10) : 0;
        if (!end || *end || n < 1 || n > FLOOR_MAX_REPEAT) {
            rc = floor_usage(argv[0]);
            goto done;
        }
    }
    if (argc - optind < 2 || argc - optind > 3 ||
        (strcmp(argv[optind], "thumb3") && strcmp(argv[optind], "once"))) {
        rc = floor_usage(argv[0]);
        goto done;
    }
    if (floor_read(argv[optind + 1], &data, &len) || floor_format(data, len, &f)) {
        fprintf(stderr, "vips_floor: cannot read a JPEG, PNG or WebP from %s\n",
                argv[optind + 1]);
        goto done;
    }
    if (floor_repeat(argv[optind], data, len, f, vs, (int)n, cpu, wall)) {
        fprintf(stderr, "vips_floor: %s\n", vips_error_buffer());
        goto done;
    }
    if (argc - optind == 3 && floor_write(argv[optind + 2], f, vs)) {
        fprintf(stderr, "vips_floor: cannot write into %s\n", argv[optind + 2]);
        goto done;
    }
    floor_print(cpu, wall, (int)n, vs);
    rc = 0;
done:
    floor_free(vs);
    g_free(data);
    vips_shutdown();
    return rc;
}
