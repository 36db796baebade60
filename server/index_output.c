/* index_output.c - what a done record says of its output: the variants,
 * each with its stored files (one per format), and the placeholders
 * (BlurHash, dominant colour). Kept apart from the index's tables so the
 * shape of a record's output can grow without touching them. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

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

    err = text_dup(src->key, &dst->key);
    if (err == RZ_OK)
        err = text_dup(src->content_type, &dst->content_type);
    if (err != RZ_OK || src->nfiles == 0)
        return err;
    dst->files = calloc(src->nfiles, sizeof(*dst->files));
    if (!dst->files)
        return RZ_ENOMEM;
    for (size_t k = 0; k < src->nfiles && err == RZ_OK; k++) {
        dst->files[k] = src->files[k];
        err = text_dup(src->files[k].key, &dst->files[k].key);
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
        err = text_dup(src->blurhash, &dst->blurhash);
    return err;
}

size_t index_output_view(const struct image_result *results, char *const *keys, size_t n,
                         struct index_variant *vars_out, struct index_file *files_out)
{
    size_t nv = 0;
    size_t i = 0;

    while (i < n && nv < IMAGE_MAX_VARIANTS) {
        struct index_variant *v = &vars_out[nv++];
        size_t k = 0;

        memset(v, 0, sizeof(*v));
        snprintf(v->name, sizeof(v->name), "%s", results[i].name);
        v->key = keys[i];
        v->content_type = (char *)image_format_mime(results[i].format);
        v->width = results[i].width;
        v->height = results[i].height;
        v->bytes = results[i].len;
        v->files = files_out + i;
        while (i + k < n && k < IMAGE_MAX_OUTPUTS &&
               strcmp(results[i + k].name, results[i].name) == 0) {
            files_out[i + k] = (struct index_file){results[i + k].format, keys[i + k],
                                                   results[i + k].len};
            k++;
        }
        v->nfiles = k;
        i += k;
    }
    return nv;
}

enum rz_err index_output_take(struct index_entry *e, const struct index_variant *vars, size_t n,
                              const struct image_info *info)
{
    enum rz_err err = RZ_OK;

    index_output_cleanup(e);
    for (size_t i = 0; i < n && i < IMAGE_MAX_VARIANTS && err == RZ_OK; i++) {
        e->variants[i] = vars[i];
        e->variants[i].key = e->variants[i].content_type = NULL;
        e->variants[i].files = NULL;
        e->variants[i].nfiles = 0;
        e->nvariants = i + 1;
        err = index_variant_copy(&e->variants[i], &vars[i]);
    }
    if (err == RZ_OK && info && info->blurhash[0])
        err = text_dup(info->blurhash, &e->blurhash);
    if (info)
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
