/* variants.c - parsing VARIANTS and OUTPUT_FORMATS (grammar in variants.h). */
#include "variants.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    enum image_output out;
} variants_outputs[] = {
    {"same", IMAGE_OUTPUT_SAME}, {"jpeg", IMAGE_OUTPUT_JPEG}, {"webp", IMAGE_OUTPUT_WEBP},
    {"avif", IMAGE_OUTPUT_AVIF}, {"png", IMAGE_OUTPUT_PNG},
};
#define VARIANTS_NOUTPUTS (sizeof(variants_outputs) / sizeof(variants_outputs[0]))

/* why = "\"<item>\": <what>", the item cut to a readable length and
 * anything unprintable in it shown as '?': the message goes to a terminal
 * or a log, and the value is whatever the environment held. */
static enum rz_err variants_fail(char *why, size_t whylen, const char *item, size_t len,
                                 const char *what)
{
    char shown[41];
    size_t n = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;

    for (size_t i = 0; i < n; i++)
        shown[i] = item[i] >= 0x20 && item[i] <= 0x7e ? item[i] : '?';
    shown[n] = '\0';
    snprintf(why, whylen, "\"%s\": %s", shown, what);
    return RZ_EINVAL;
}

static int variants_name_ok(const char *name, size_t len)
{
    if (len == 0 || len >= IMAGE_VARIANT_NAME_MAX || !isalnum((unsigned char)name[0]))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!(islower((unsigned char)ch) || isdigit((unsigned char)ch) || ch == '-' ||
              ch == '_'))
            return 0;
    }
    return 1;
}

/* A decimal from 1 to VARIANTS_MAX_SIDE occupying exactly s[0..len). */
static int variants_side(const char *s, size_t len)
{
    char num[8];
    char *end = NULL;
    long n;

    if (len == 0 || len >= sizeof(num) || !isdigit((unsigned char)s[0]))
        return 0;
    memcpy(num, s, len);
    num[len] = '\0';
    errno = 0;
    n = strtol(num, &end, 10);
    if (errno || *end != '\0' || n < 1 || n > VARIANTS_MAX_SIDE)
        return 0;
    return (int)n;
}

/* "WIDTH[xHEIGHT[:fit]]" of one item. */
static enum rz_err variants_parse_size(const char *item, size_t len, const char *s, size_t slen,
                                       struct image_variant_spec *v, char *why, size_t whylen)
{
    const char *x = memchr(s, 'x', slen);
    const char *colon = memchr(s, ':', slen);
    const char *fit;
    size_t fitlen;

    if (colon && (!x || colon < x))
        return variants_fail(why, whylen, item, len, "a fit needs WIDTHxHEIGHT before it");
    v->width = variants_side(s, x ? (size_t)(x - s) : slen);
    if (!v->width)
        return variants_fail(why, whylen, item, len, "the width must be from 1 to 16384");
    if (!x)
        return RZ_OK;
    v->height = variants_side(x + 1,
                              colon ? (size_t)(colon - x - 1) : (size_t)(s + slen - x - 1));
    if (!v->height)
        return variants_fail(why, whylen, item, len, "the height must be from 1 to 16384");
    if (!colon)
        return RZ_OK;
    fit = colon + 1;
    fitlen = (size_t)(s + slen - fit);
    if (fitlen == 6 && memcmp(fit, "inside", 6) == 0)
        v->fit = IMAGE_FIT_INSIDE;
    else if (fitlen == 5 && memcmp(fit, "cover", 5) == 0)
        v->fit = IMAGE_FIT_COVER;
    else
        return variants_fail(why, whylen, item, len, "the fit must be inside or cover");
    return RZ_OK;
}

static enum rz_err variants_parse_item(const char *item, size_t len,
                                       struct image_variant_spec *v, char *why, size_t whylen)
{
    const char *colon = memchr(item, ':', len);

    memset(v, 0, sizeof(*v));
    if (!colon)
        return variants_fail(why, whylen, item, len,
                             "must be name:WIDTH or "
                             "name:WIDTHxHEIGHT[:inside|cover]");
    if (!variants_name_ok(item, (size_t)(colon - item)))
        return variants_fail(why, whylen, item, len,
                             "the name must be 1 to 31 of [a-z0-9_-], starting with a letter "
                             "or digit (_status is reserved)");
    memcpy(v->name, item, (size_t)(colon - item));
    return variants_parse_size(item, len, colon + 1, (size_t)(item + len - colon - 1), v, why,
                               whylen);
}

enum rz_err variants_parse_list(const char *value, struct image_variant_spec *out, size_t *n_out,
                                char *why, size_t whylen)
{
    const char *p = value;
    size_t n = 0;
    enum rz_err err;

    *n_out = 0;
    for (;;) {
        size_t len = strcspn(p, ",");

        if (n == IMAGE_MAX_VARIANTS) {
            snprintf(why, whylen, "must list at most %d variants", IMAGE_MAX_VARIANTS);
            return RZ_EINVAL;
        }
        err = variants_parse_item(p, len, &out[n], why, whylen);
        if (err != RZ_OK)
            return err;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(out[i].name, out[n].name) == 0)
                return variants_fail(why, whylen, out[n].name, strlen(out[n].name),
                                     "variant names must be unique (they are key prefixes)");
        }
        n++;
        p += len;
        if (*p == '\0')
            break;
        p++;
    }
    *n_out = n;
    return RZ_OK;
}

enum rz_err variants_parse_formats(const char *value, enum image_output *out, size_t *n_out,
                                   char *why, size_t whylen)
{
    const char *p = value;
    size_t n = 0;

    *n_out = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t k = 0;

        while (k < VARIANTS_NOUTPUTS && !(strlen(variants_outputs[k].name) == len &&
                                          memcmp(variants_outputs[k].name, p, len) == 0))
            k++;
        if (k == VARIANTS_NOUTPUTS)
            return variants_fail(why, whylen, p, len, "must be same, jpeg, webp, avif or png");
        for (size_t i = 0; i < n; i++) {
            if (out[i] == variants_outputs[k].out)
                return variants_fail(why, whylen, p, len,
                                     "is listed twice (both would write the same keys)");
        }
        out[n++] = variants_outputs[k].out;
        p += len;
        if (*p == '\0')
            break;
        p++;
    }
    *n_out = n;
    return RZ_OK;
}

enum rz_err variants_check_prefix(const struct image_variant_spec *v, size_t n,
                                  const char *src_prefix, char *why, size_t whylen)
{
    size_t seg = strcspn(src_prefix, "/");

    for (size_t i = 0; i < n; i++) {
        if (strlen(v[i].name) == seg && strncmp(v[i].name, src_prefix, seg) == 0) {
            snprintf(why, whylen,
                     "\"%s\": is the first segment of SRC_PREFIX, reserved for "
                     "uploads",
                     v[i].name);
            return RZ_EINVAL;
        }
    }
    return RZ_OK;
}
