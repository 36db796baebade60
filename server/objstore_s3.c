/* objstore_s3.c - the object store as S3: each call is the s3.h call of
 * the same name, its results moved (not copied) into the objstore's. */
#include "objstore.h"

#include <stdlib.h>
#include <string.h>

#include "s3.h"

struct objstore_s3 {
    struct objstore base;
    struct s3 *s3; /* borrowed */
};

struct objstore_s3_conn {
    struct objstore_conn base;
    struct s3_conn *conn;
};

static struct s3_conn *objstore_s3_curl(struct objstore_conn *c)
{
    return ((struct objstore_s3_conn *)c)->conn;
}

static struct objstore_conn *objstore_s3_conn_new(struct objstore *os)
{
    struct objstore_s3_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->base.os = os;
    c->conn = s3_conn_new(((struct objstore_s3 *)os)->s3);
    if (!c->conn) {
        free(c);
        return NULL;
    }
    return &c->base;
}

static void objstore_s3_conn_free(struct objstore_conn *c)
{
    s3_conn_free(objstore_s3_curl(c));
    free(c);
}

static enum rz_err objstore_s3_get(struct objstore_conn *c, const char *bucket, const char *key,
                                   size_t max_bytes, struct objstore_object *out, char *msg,
                                   size_t msglen)
{
    struct s3_object o = {0};
    enum rz_err err = s3_get_object(objstore_s3_curl(c), bucket, key, max_bytes, &o, msg,
                                    msglen);

    if (err == RZ_OK)
        *out = (struct objstore_object){o.data, o.len, o.etag, o.content_type};
    else
        s3_object_cleanup(&o);
    return err;
}

static enum rz_err objstore_s3_put(struct objstore_conn *c, const char *bucket, const char *key,
                                   const void *data, size_t len, const struct objstore_put *p,
                                   char *msg, size_t msglen)
{
    struct s3_field meta[OBJSTORE_MAX_META];

    /* s3_field owns its strings elsewhere; here they are only read. */
    for (size_t i = 0; i < p->nmeta; i++)
        meta[i] = (struct s3_field){(char *)p->meta[i].name, (char *)p->meta[i].value};
    return s3_put_object(objstore_s3_curl(c), bucket, key, data, len, p->content_type,
                         p->cache_control, meta, p->nmeta, msg, msglen);
}

static enum rz_err objstore_s3_head(struct objstore_conn *c, const char *bucket, const char *key,
                                    struct objstore_head *out, char *msg, size_t msglen)
{
    struct s3_head h = {0};
    enum rz_err err = s3_head_object(objstore_s3_curl(c), bucket, key, &h, msg, msglen);

    if (err == RZ_OK)
        *out = (struct objstore_head){h.size, h.etag, h.content_type};
    else
        s3_head_cleanup(&h);
    return err;
}

/* The page's strings change owner; only s3's item array is freed. */
static enum rz_err objstore_s3_take_page(struct s3_list *page, struct objstore_list *out)
{
    out->items = calloc(page->nitems ? page->nitems : 1, sizeof(*out->items));
    if (!out->items) {
        s3_list_cleanup(page);
        return RZ_ENOMEM;
    }
    for (size_t i = 0; i < page->nitems; i++) {
        struct s3_list_item *it = &page->items[i];

        out->items[i] = (struct objstore_item){it->key, it->size, it->etag, it->last_modified};
        it->key = NULL;
        it->etag = NULL;
    }
    out->nitems = page->nitems;
    out->next_token = page->next_token;
    page->next_token = NULL;
    s3_list_cleanup(page);
    return RZ_OK;
}

static enum rz_err objstore_s3_list(struct objstore_conn *c, const char *bucket,
                                    const char *prefix, const char *start_after,
                                    const char *token, int max_keys, struct objstore_list *out,
                                    char *msg, size_t msglen)
{
    struct s3_list page = {0};
    enum rz_err err = s3_list_objects(objstore_s3_curl(c), bucket, prefix, start_after, token,
                                      max_keys, &page, msg, msglen);

    if (err != RZ_OK) {
        s3_list_cleanup(&page);
        return err;
    }
    return objstore_s3_take_page(&page, out);
}

static void objstore_s3_abort(struct objstore *os)
{
    s3_abort(((struct objstore_s3 *)os)->s3);
}

static void objstore_s3_free(struct objstore *os)
{
    free(os);
}

static const struct objstore_ops objstore_s3_ops = {
    .name = "s3",
    .conn_new = objstore_s3_conn_new,
    .conn_free = objstore_s3_conn_free,
    .get = objstore_s3_get,
    .put = objstore_s3_put,
    .head = objstore_s3_head,
    .list = objstore_s3_list,
    .abort = objstore_s3_abort,
    .free = objstore_s3_free,
};

enum rz_err objstore_s3_new(struct s3 *s3, struct objstore **out)
{
    struct objstore_s3 *os = calloc(1, sizeof(*os));

    if (!os)
        return RZ_ENOMEM;
    os->base.ops = &objstore_s3_ops;
    os->s3 = s3;
    *out = &os->base;
    return RZ_OK;
}
