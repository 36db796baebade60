/* objstore.c - the calls through the table, and the cleanups every
 * backend's results share. */
#include "objstore.h"

#include <stdlib.h>
#include <string.h>

void objstore_free(struct objstore *os)
{
    if (os)
        os->ops->free(os);
}

void objstore_abort(struct objstore *os)
{
    if (os)
        os->ops->abort(os);
}

struct objstore_conn *objstore_conn_new(struct objstore *os)
{
    return os ? os->ops->conn_new(os) : NULL;
}

void objstore_conn_free(struct objstore_conn *c)
{
    if (c)
        c->os->ops->conn_free(c);
}

enum rz_err objstore_get(struct objstore_conn *c, const char *bucket, const char *key,
                         size_t max_bytes, struct objstore_object *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof(*out));
    return c->os->ops->get(c, bucket, key, max_bytes, out, msg, msglen);
}

enum rz_err objstore_put(struct objstore_conn *c, const char *bucket, const char *key,
                         const void *data, size_t len, const struct objstore_put *p, char *msg,
                         size_t msglen)
{
    if (p->nmeta > OBJSTORE_MAX_META)
        return RZ_EINVAL;
    return c->os->ops->put(c, bucket, key, data, len, p, msg, msglen);
}

enum rz_err objstore_head(struct objstore_conn *c, const char *bucket, const char *key,
                          struct objstore_head *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof(*out));
    return c->os->ops->head(c, bucket, key, out, msg, msglen);
}

enum rz_err objstore_list(struct objstore_conn *c, const char *bucket, const char *prefix,
                          const char *start_after, const char *token, int max_keys,
                          struct objstore_list *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof(*out));
    if (max_keys < 1 || max_keys > 1000)
        return RZ_EINVAL;
    return c->os->ops->list(c, bucket, prefix, start_after, token, max_keys, out, msg, msglen);
}

void objstore_object_cleanup(struct objstore_object *o)
{
    free(o->data);
    free(o->etag);
    free(o->content_type);
    memset(o, 0, sizeof(*o));
}

void objstore_head_cleanup(struct objstore_head *h)
{
    free(h->etag);
    free(h->content_type);
    memset(h, 0, sizeof(*h));
}

void objstore_list_cleanup(struct objstore_list *l)
{
    for (size_t i = 0; l->items && i < l->nitems; i++) {
        free(l->items[i].key);
        free(l->items[i].etag);
    }
    free(l->items);
    free(l->next_token);
    memset(l, 0, sizeof(*l));
}
