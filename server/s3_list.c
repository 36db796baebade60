/* s3_list.c - ListObjectsV2 pages (XML, encoding-type=url) into entries.
 *
 * Pure: bytes in, entries out, no I/O, so unit tests and the fuzzer reach
 * every path. The page comes from a server we do not control: every
 * element is searched within the bytes given, never past them, and a
 * truncated page must move the listing forward. */
#include "s3_list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text.h"
#include "timefmt.h"

/* Resolves one of XML's five predefined entities at p; returns how many
 * bytes it spans (0 if none) and stores the character in *ch. */
static size_t s3_xml_entity(const char *p, size_t len, char *ch)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}};

    for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
        size_t elen = strlen(ents[k].ent);

        if (len >= elen && strncmp(p, ents[k].ent, elen) == 0) {
            *ch = ents[k].ch;
            return elen;
        }
    }
    return 0;
}

/* The text of an element's content, entities resolved; caller frees. */
static char *s3_xml_text(const char *p, size_t len)
{
    char *out = malloc(len + 1);
    size_t o = 0;
    size_t i = 0;

    if (!out)
        return NULL;
    while (i < len) {
        size_t used = p[i] == '&' ? s3_xml_entity(p + i, len - i, &out[o]) : 0;

        if (used) {
            o++;
            i += used;
        } else {
            out[o++] = p[i++];
        }
    }
    out[o] = '\0';
    return out;
}

/* The content of the first <tag>...</tag> within [p, end), or NULL. */
static char *s3_xml_child(const char *p, const char *end, const char *tag)
{
    char open[64];
    char close[64];
    const char *s;
    const char *e;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    s = memmem(p, (size_t)(end - p), open, strlen(open));
    if (!s)
        return NULL;
    s += strlen(open);
    e = memmem(s, (size_t)(end - s), close, strlen(close));
    if (!e)
        return NULL;
    return s3_xml_text(s, (size_t)(e - s));
}

/* LastModified ("2026-11-26T15:44:36.000Z") as Unix time; 0 when it does
 * not parse. */
static time_t s3_parse_time(const char *s)
{
    int64_t ms = 0;

    return timefmt_parse_iso_ms(s, &ms) == RZ_OK ? (time_t)(ms / 1000) : 0;
}

static enum rz_err s3_list_item_parse(const char *p, const char *end, struct s3_list_item *it)
{
    char *raw = s3_xml_child(p, end, "Key");
    char *size = s3_xml_child(p, end, "Size");
    char *etag = s3_xml_child(p, end, "ETag");
    char *modified = s3_xml_child(p, end, "LastModified");
    enum rz_err err = RZ_EINVAL;

    memset(it, 0, sizeof(*it));
    if (!raw || !size)
        goto done;
    /* encoding-type=url is form style: '+' is a space. */
    it->key = text_url_decode(raw, 1);
    if (!it->key)
        goto done;
    /* S3 has no empty keys: a faulty server's would reach key[len - 1]
     * in callers. The item is skipped (RZ_ENOTFOUND), not the page. */
    if (it->key[0] == '\0' || strlen(it->key) > 1024) {
        free(it->key);
        it->key = NULL;
        err = RZ_ENOTFOUND;
        goto done;
    }
    it->size = strtoull(size, NULL, 10);
    it->last_modified = modified ? s3_parse_time(modified) : 0;
    if (etag) {
        size_t n = strlen(etag);
        const char *bare = text_unquote(etag, &n);

        memmove(etag, bare, n);
        etag[n] = '\0';
        it->etag = etag;
        etag = NULL;
    }
    err = RZ_OK;
done:
    free(raw);
    free(size);
    free(etag);
    free(modified);
    return err;
}

/* A truncated page must carry a new, non-empty token: one equal to the
 * token that asked for the page would make the caller ask again forever. */
static enum rz_err s3_list_token_check(const char *next, const char *prev)
{
    if (!next || next[0] == '\0')
        return RZ_EINVAL;
    if (prev && strcmp(next, prev) == 0)
        return RZ_EINVAL;
    return RZ_OK;
}

enum rz_err s3_list_parse(const char *xml, size_t len, const char *prev_token,
                          struct s3_list *out)
{
    const char *end = xml + len;
    const char *p = xml;
    size_t cap = 0;
    char *truncated;
    enum rz_err err;

    for (;;) {
        const char *s = memmem(p, (size_t)(end - p), "<Contents>", 10);
        const char *e = s ? memmem(s, (size_t)(end - s), "</Contents>", 11) : NULL;
        struct s3_list_item *grown;

        if (!s || !e)
            break;
        if (out->nitems == cap) {
            cap = cap ? cap * 2 : 64;
            grown = realloc(out->items, cap * sizeof(*grown));
            if (!grown)
                return RZ_ENOMEM;
            out->items = grown;
        }
        p = e + 11;
        err = s3_list_item_parse(s, e, &out->items[out->nitems]);
        if (err == RZ_ENOTFOUND)
            continue;
        if (err != RZ_OK)
            return RZ_EINVAL;
        out->nitems++;
    }
    truncated = s3_xml_child(xml, end, "IsTruncated");
    err = RZ_OK;
    if (truncated && strcmp(truncated, "true") == 0) {
        out->next_token = s3_xml_child(xml, end, "NextContinuationToken");
        err = s3_list_token_check(out->next_token, prev_token);
    }
    free(truncated);
    return err;
}

void s3_list_cleanup(struct s3_list *l)
{
    for (size_t i = 0; i < l->nitems; i++) {
        free(l->items[i].key);
        free(l->items[i].etag);
    }
    free(l->items);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}
