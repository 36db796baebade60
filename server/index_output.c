/* index_output.c - what a done record says of its output: the variants,
 * each with its stored files (one per format), and the placeholders
 * (BlurHash, dominant colour). Kept apart from the index's tables so the
 * shape of a record's output can grow without touching them. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

static enum rz_err index_output_dup(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return RZ_OK;
    *dst = strdup(src);
    return *dst ? RZ_OK : RZ_ENOMEM;
}

static void index_variant_cleanup(struct index_variant *v)
{
    free(v->key);
    free(v->content_type);
    for (size_t k = 0; k < v->nfiles; k++)
        free(v->files[k].key);
    free(v->files);
    memset(v, 0, sizeof(*v));
}

void index_output_cleanup(struct index_entry *e)
{
    for (size_t i = 0; i < e->nvariants; i++)
        index_variant_cleanup(&e->variants[i]);
    e->nvariants = 0;
    free(e->blurhash);
    e->blurhash = NULL;
    e->dominant[0] = '\0';
}

static enum rz_err index_variant_copy(struct index_variant *dst, const struct index_variant *src)
{
    enum rz_err err;

    err = index_output_dup(&dst->key, src->key);
    if (err == RZ_OK)
        err = index_output_dup(&dst->content_type, src->content_type);
    if (err != RZ_OK || src->nfiles == 0)
        return err;
    dst->files = calloc(src->nfiles, sizeof(*dst->files));
    if (!dst->files)
        return RZ_ENOMEM;
    for (size_t k = 0; k < src->nfiles && err == RZ_OK; k++) {
        dst->files[k] = src->files[k];
        err = index_output_dup(&dst->files[k].key, src->files[k].key);
        dst->nfiles = k + 1;
    }
    return err;
}

enum rz_err index_output_copy(struct index_entry *dst, const struct index_entry *src)
{
    enum rz_err err = RZ_OK;

    for (size_t i = 0; i < src->nvariants; i++) {
        dst->variants[i].key = dst->variants[i].content_type = NULL;
        dst->variants[i].files = NULL;
        dst->variants[i].nfiles = 0;
    }
    dst->blurhash = NULL;
    for (size_t i = 0; i < src->nvariants && err == RZ_OK; i++)
        err = index_variant_copy(&dst->variants[i], &src->variants[i]);
    if (err == RZ_OK)
        err = index_output_dup(&dst->blurhash, src->blurhash);
    return err;
}

/* The variant of results[first] and the nfiles results after it (the same
 * variant in other formats). */
static enum rz_err index_variant_set(struct index_variant *v, const struct image_result *r,
                                     char *const *keys, size_t nfiles)
{
    enum rz_err err;

    snprintf(v->name, sizeof(v->name), "%s", r[0].name);
    v->width = r[0].width;
    v->height = r[0].height;
    v->bytes = r[0].len;
    err = index_output_dup(&v->key, keys[0]);
    if (err == RZ_OK)
        err = index_output_dup(&v->content_type, image_format_mime(r[0].format));
    v->files = err == RZ_OK ? calloc(nfiles, sizeof(*v->files)) : NULL;
    if (!v->files)
        return RZ_ENOMEM;
    for (size_t k = 0; k < nfiles && err == RZ_OK; k++) {
        v->files[k].format = r[k].format;
        v->files[k].bytes = r[k].len;
        err = index_output_dup(&v->files[k].key, keys[k]);
        v->nfiles = k + 1;
    }
    return err;
}

enum rz_err index_output_set(struct index_entry *e, const struct image_result *results,
                             char *const *keys, size_t n, const struct image_info *info)
{
    enum rz_err err = RZ_OK;
    size_t i = 0;

    index_output_cleanup(e);
    while (i < n && e->nvariants < IMAGE_MAX_VARIANTS && err == RZ_OK) {
        size_t k = 1;

        while (i + k < n && strcmp(results[i + k].name, results[i].name) == 0)
            k++;
        err = index_variant_set(&e->variants[e->nvariants++], results + i, keys + i, k);
        i += k;
    }
    if (err == RZ_OK && info->blurhash[0])
        err = index_output_dup(&e->blurhash, info->blurhash);
    snprintf(e->dominant, sizeof(e->dominant), "%s", info->dominant);
    if (err != RZ_OK)
        index_output_cleanup(e);
    return err;
}

const struct index_file *index_variant_file(const struct index_variant *v, enum image_format f)
{
    for (size_t k = 0; k < v->nfiles; k++) {
        if (v->files[k].format == f)
            return &v->files[k];
    }
    return NULL;
}
