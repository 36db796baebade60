/* negotiate.c - content negotiation of variant formats (rules in
 * negotiate.h). */
#include "negotiate.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How specifically a media range matched: exact beats image/STAR beats STAR/STAR
 * (RFC 9110: the most specific range decides a type's q). */
enum negotiate_match {
    NEGOTIATE_NONE = 0,
    NEGOTIATE_ANY,     /* STAR/STAR */
    NEGOTIATE_SUBTYPE, /* image/STAR */
    NEGOTIATE_EXACT,
};

/* The q of one range's parameters ("; q=0.5"), 1000ths; 1000 by default,
 * -1 when malformed (such a range is ignored). */
static int negotiate_q(const char *params, size_t len)
{
    const char *p = params;
    const char *end = params + len;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;

        while (p < stop && (*p == ' ' || *p == '\t'))
            p++;
        if (stop - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            int q = 0, digits = 0;

            p += 2;
            if (p >= stop || (*p != '0' && *p != '1'))
                return -1;
            q = (*p++ - '0') * 1000;
            if (p < stop && *p == '.') {
                for (p++; p < stop && *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
                    q += (*p - '0') * (digits == 0 ? 100 : digits == 1 ? 10 : 1);
            }
            while (p < stop && (*p == ' ' || *p == '\t'))
                p++;
            return p == stop && q <= 1000 ? q : -1;
        }
        p = semi ? semi + 1 : end;
    }
    return 1000;
}

static enum negotiate_match negotiate_range(const char *r, size_t len, const char *mime)
{
    size_t mlen = strlen(mime);

    if (len == mlen && strncasecmp(r, mime, len) == 0)
        return NEGOTIATE_EXACT;
    if (len == 7 && strncasecmp(r, "image/*", 7) == 0)
        return NEGOTIATE_SUBTYPE;
    if (len == 3 && strncmp(r, "*/*", 3) == 0)
        return NEGOTIATE_ANY;
    return NEGOTIATE_NONE;
}

/* The q accept gives mime (1000ths; -1: not mentioned) and how it matched. */
static int negotiate_q_for(const char *accept, const char *mime, enum negotiate_match *how)
{
    const char *p = accept;
    int best_q = -1;

    *how = NEGOTIATE_NONE;
    while (*p) {
        size_t item = strcspn(p, ",");
        size_t semi = strcspn(p, ";,");
        size_t start = strspn(p, " \t");
        size_t rlen = semi > start ? semi - start : 0;
        enum negotiate_match m;
        int q;

        while (rlen > 0 && (p[start + rlen - 1] == ' ' || p[start + rlen - 1] == '\t'))
            rlen--;
        m = negotiate_range(p + start, rlen, mime);
        q = semi < item ? negotiate_q(p + semi + 1, item - semi - 1) : 1000;
        if (m != NEGOTIATE_NONE && q >= 0 && m > *how) {
            *how = m;
            best_q = q;
        }
        p += item;
        if (*p == ',')
            p++;
    }
    return best_q;
}

/* Lower is more widely shown: the fallback is the stored format ranked
 * lowest; ties among acceptable formats go to the highest rank. */
static int negotiate_rank(enum image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_AVIF: return 3;
    case IMAGE_FORMAT_WEBP: return 2;
    default: return 1;
    }
}

enum rz_err negotiate_format(const char *accept, const enum image_format *stored, size_t n,
                             enum image_format *out)
{
    size_t fallback = 0;
    int best_q = 0;
    int found = 0;

    if (accept && strlen(accept) > NEGOTIATE_MAX_ACCEPT)
        return RZ_EINVAL;
    if (accept && accept[strspn(accept, " \t")] == '\0')
        accept = NULL; /* an empty Accept is no preference, like none */
    for (size_t i = 1; i < n; i++) {
        if (negotiate_rank(stored[i]) < negotiate_rank(stored[fallback]))
            fallback = i;
    }
    for (size_t i = 0; i < n; i++) {
        enum negotiate_match how = NEGOTIATE_ANY; /* no Accept: as STAR/STAR */
        int q = accept ? negotiate_q_for(accept, image_format_mime(stored[i]), &how) : 1000;

        if (how != NEGOTIATE_EXACT && i != fallback)
            continue; /* modern formats only for clients that name them */
        if (q <= 0)
            continue;
        if (!found || q > best_q ||
            (q == best_q && negotiate_rank(stored[i]) > negotiate_rank(*out))) {
            *out = stored[i];
            best_q = q;
            found = 1;
        }
    }
    return found ? RZ_OK : RZ_ENOTFOUND;
}

enum image_format negotiate_format_param(const char *value)
{
    static const struct {
        const char *name;
        enum image_format f;
    } names[] = {
        {"jpeg", IMAGE_FORMAT_JPEG}, {"jpg", IMAGE_FORMAT_JPEG},  {"png", IMAGE_FORMAT_PNG},
        {"webp", IMAGE_FORMAT_WEBP}, {"avif", IMAGE_FORMAT_AVIF}, {"gif", IMAGE_FORMAT_GIF},
    };

    for (size_t i = 0; value && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(value, names[i].name) == 0)
            return names[i].f;
    }
    return IMAGE_FORMAT_UNKNOWN;
}
