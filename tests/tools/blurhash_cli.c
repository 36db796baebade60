/* blurhash_cli.c - server/blurhash.c on raw pixels, for the reference
 * check in tests/blurhash/check.mjs.
 *
 * Usage: blurhash_cli WIDTH HEIGHT CX CY < RGBA bytes (WIDTH*HEIGHT*4)
 * Prints the BlurHash; exit 1 on bad input. */
#include <stdio.h>
#include <stdlib.h>

#include "server/blurhash.h"

static int cli_int(const char *s, int lo, int hi)
{
    char *end = NULL;
    long n = strtol(s, &end, 10);

    return end && *end == '\0' && n >= lo && n <= hi ? (int)n : -1;
}

int main(int argc, char **argv)
{
    char out[BLURHASH_MAX_LEN];
    unsigned char *px;
    int w, h, cx, cy;
    size_t n;
    int rc = 1;

    if (argc != 5)
        return 1;
    w = cli_int(argv[1], 1, 1024);
    h = cli_int(argv[2], 1, 1024);
    cx = cli_int(argv[3], 1, 9);
    cy = cli_int(argv[4], 1, 9);
    if (w < 0 || h < 0 || cx < 0 || cy < 0)
        return 1;
    n = (size_t)w * h * 4;
    px = malloc(n);
    if (px && fread(px, 1, n, stdin) == n &&
        blurhash_encode(px, w, h, (size_t)w * 4, 4, cx, cy, out) == RZ_OK) {
        printf("%s\n", out);
        rc = 0;
    }
    free(px);
    return rc;
}
