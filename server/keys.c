/* keys.c - deterministic key names for variants and status records. */
#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *keys_relative(const char *prefix, const char *key)
{
    size_t n = strlen(prefix);

    return strncmp(key, prefix, n) == 0 ? key + n : key;
}

/* 1 when ext (without the dot) already names format, so the original's
 * file name is kept as the Lambda kept it (images/a.jpeg -> phone/a.jpeg). */
static int keys_ext_matches(const char *ext, enum image_format format)
{
    const char *want = image_format_ext(format);

    if (!want)
        return 0;
    if (strcasecmp(ext, want) == 0)
        return 1;
    if (format == IMAGE_FORMAT_JPEG)
        return strcasecmp(ext, "jpeg") == 0 || strcasecmp(ext, "jpe") == 0;
    if (format == IMAGE_FORMAT_TIFF)
        return strcasecmp(ext, "tif") == 0;
    if (format == IMAGE_FORMAT_HEIF)
        return strcasecmp(ext, "heif") == 0;
    return 0;
}

static char *keys_join(const char *a, const char *b, size_t blen, const char *c)
{
    size_t n = strlen(a) + blen + strlen(c) + 1;
    char *out = malloc(n);

    if (out)
        snprintf(out, n, "%s%.*s%s", a, (int)blen, b, c);
    return out;
}

char *keys_variant(const char *prefix, const char *key, const char *variant,
                   enum image_format format)
{
    const char *rel = keys_relative(prefix, key);
    const char *slash = strrchr(rel, '/');
    const char *base = slash ? slash + 1 : rel;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - rel) : strlen(rel);
    char dir[IMAGE_VARIANT_NAME_MAX + 2];
    char ext[16];

    snprintf(dir, sizeof(dir), "%s/", variant);
    if (dot && dot != base && keys_ext_matches(dot + 1, format))
        return keys_join(dir, rel, strlen(rel), "");
    snprintf(ext, sizeof(ext), ".%s",
             image_format_ext(format) ? image_format_ext(format) : "bin");
    return keys_join(dir, rel, stem, ext);
}

char *keys_upload(const char *prefix, const char *id, enum image_format format)
{
    const char *ext = image_format_ext(format);
    size_t n = strlen(prefix) + strlen(id) + (ext ? strlen(ext) : 3) + 2;
    char *out = malloc(n);

    if (out)
        snprintf(out, n, "%s%s.%s", prefix, id, ext ? ext : "bin");
    return out;
}

char *keys_status_by_key(const char *prefix, const char *key)
{
    const char *rel = keys_relative(prefix, key);

    return keys_join(KEYS_STATUS_BY_KEY, rel, strlen(rel), "");
}

char *keys_status_by_id(const char *id)
{
    return keys_join(KEYS_STATUS_BY_ID, id, strlen(id), "");
}
