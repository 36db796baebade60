/* text.c - shared string helpers. */
#include "text.h"

#include <stdlib.h>
#include <string.h>

enum rz_err text_dup(const char *src, char **out)
{
    *out = NULL;
    if (!src)
        return RZ_OK;
    *out = strdup(src);
    return *out ? RZ_OK : RZ_ENOMEM;
}

static int text_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *text_url_decode(const char *s, int form)
{
    size_t n = 0;
    char *out;

    if (!s)
        return NULL;
    out = malloc(strlen(s) + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; s[i]; i++) {
        int hi;
        int lo;

        if (s[i] != '%') {
            out[n++] = s[i] == '+' && form ? ' ' : s[i];
            continue;
        }
        /* s[i + 1] is NUL at the end, so s[i + 2] is read only after a hex digit */
        hi = text_hex(s[i + 1]);
        lo = hi < 0 ? -1 : text_hex(s[i + 2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            goto fail;
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    return out;

fail:
    free(out);
    return NULL;
}

const char *text_unquote(const char *s, size_t *len)
{
    if (*len >= 2 && s[0] == '"' && s[*len - 1] == '"') {
        *len -= 2;
        return s + 1;
    }
    return s;
}
