/* blurhash.c - the BlurHash encoder, after the authors' TypeScript encoder
 * (woltapp/blurhash, the npm package "blurhash"); tests/blurhash/check.mjs
 * checks that both give the same strings. */
#include "blurhash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char blurhash_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

/* Appends value as `digits` base83 characters, most significant first. */
static char *blurhash_base83(char *p, int value, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        int div = 1;

        for (int k = 0; k < i; k++)
            div *= 83;
        *p++ = blurhash_digits[(value / div) % 83];
    }
    return p;
}

static double blurhash_to_linear(unsigned char v)
{
    double x = v / 255.0;

    return x <= 0.04045 ? x / 12.92 : pow((x + 0.055) / 1.055, 2.4);
}

static int blurhash_to_srgb(double v)
{
    double x = v < 0 ? 0 : v > 1 ? 1 : v;

    if (x <= 0.0031308)
        return (int)(x * 12.92 * 255 + 0.5);
    return (int)((1.055 * pow(x, 1 / 2.4) - 0.055) * 255 + 0.5);
}

static double blurhash_sign_pow(double v, double e)
{
    return (v < 0 ? -1 : 1) * pow(fabs(v), e);
}

/* The (i, j) cosine component of the image in linear light, per channel.
 * Summed in the npm package's order (columns outer, rows inner; the
 * normalisation inside the basis): the sums are rounded alike, so a
 * component on a quantisation boundary falls on the same side. */
static void blurhash_factor(const double *lin, int width, int height, int i, int j,
                            double f_out[3])
{
    double norm = (i == 0 && j == 0) ? 1.0 : 2.0;
    double r = 0, g = 0, b = 0;
    double scale = 1.0 / ((double)width * height);

    for (int x = 0; x < width; x++) {
        for (int y = 0; y < height; y++) {
            double basis = norm * cos(M_PI * i * x / width) * cos(M_PI * j * y / height);
            const double *px = lin + ((size_t)y * width + x) * 3;

            r += basis * px[0];
            g += basis * px[1];
            b += basis * px[2];
        }
    }
    f_out[0] = r * scale;
    f_out[1] = g * scale;
    f_out[2] = b * scale;
}

static int blurhash_quant_ac(double v, double max)
{
    int q = (int)floor(blurhash_sign_pow(v / max, 0.5) * 9 + 9.5);

    return q < 0 ? 0 : q > 18 ? 18 : q;
}

/* Writes the string from the cx*cy factors (DC first). */
static void blurhash_write(const double (*f)[3], int cx, int cy, char *out)
{
    int n = cx * cy;
    double actual = 0, max = 1;
    char *p = out;

    p = blurhash_base83(p, (cx - 1) + (cy - 1) * 9, 1);
    /* The largest AC value, signed: the npm package's rule (the authors'
     * C encoder takes magnitudes; both decode alike, and a client decodes
     * with the package, so its strings are the ones to match). */
    for (int k = 1; k < n; k++) {
        for (int c = 0; c < 3; c++)
            actual = (k == 1 && c == 0) ? f[k][c] : fmax(actual, f[k][c]);
    }
    if (n > 1) {
        int q = (int)floor(actual * 166 - 0.5);

        q = q < 0 ? 0 : q > 82 ? 82 : q;
        max = (q + 1) / 166.0;
        p = blurhash_base83(p, q, 1);
    } else {
        p = blurhash_base83(p, 0, 1);
    }
    p = blurhash_base83(p,
                        (blurhash_to_srgb(f[0][0]) << 16) + (blurhash_to_srgb(f[0][1]) << 8) +
                            blurhash_to_srgb(f[0][2]),
                        4);
    for (int k = 1; k < n; k++)
        p = blurhash_base83(p,
                            blurhash_quant_ac(f[k][0], max) * 19 * 19 +
                                blurhash_quant_ac(f[k][1], max) * 19 +
                                blurhash_quant_ac(f[k][2], max),
                            2);
    *p = '\0';
}

enum rz_err blurhash_encode(const unsigned char *pixels, int width, int height, size_t stride,
                            int channels, int cx, int cy, char out[BLURHASH_MAX_LEN])
{
    double f[BLURHASH_MAX_COMPONENTS * BLURHASH_MAX_COMPONENTS][3];
    double *lin = NULL;

    if (!pixels || !out || width < 1 || height < 1 || width > 1024 || height > 1024 ||
        (channels != 3 && channels != 4) || stride < (size_t)width * channels ||
        cx < BLURHASH_MIN_COMPONENTS || cx > BLURHASH_MAX_COMPONENTS ||
        cy < BLURHASH_MIN_COMPONENTS || cy > BLURHASH_MAX_COMPONENTS)
        return RZ_EINVAL;
    /* Linear light once per pixel, not once per pixel and component. */
    lin = malloc(sizeof(*lin) * 3 * (size_t)width * height);
    if (!lin)
        return RZ_ENOMEM;
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            const unsigned char *px = pixels + (size_t)y * stride + (size_t)x * channels;

            for (int c = 0; c < 3; c++)
                lin[((size_t)y * width + x) * 3 + c] = blurhash_to_linear(px[c]);
        }
    }
    for (int j = 0; j < cy; j++) {
        for (int i = 0; i < cx; i++)
            blurhash_factor(lin, width, height, i, j, f[j * cx + i]);
    }
    free(lin);
    blurhash_write((const double(*)[3])f, cx, cy, out);
    return RZ_OK;
}
