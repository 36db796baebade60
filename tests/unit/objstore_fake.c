/* objstore_fake.c - see objstore_fake.h. */
#include "objstore_fake.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fake_rule {
    struct fake_fault f;
    int seen;
};

/* The objects and rules, shared by every view. */
struct fake {
    pthread_mutex_t lock;
    int refs;
    struct fake_object *objs; /* sorted by bucket, then key */
    size_t n, cap;
    struct fake_rule rules[FAKE_MAX_FAULTS];
    size_t nrules;
    size_t calls[5]; /* get, put, head, list, all */
    time_t clock;
    enum fake_list_mode list_mode;
};

/* One client of the store: aborted on its own, like one S3 client. */
struct fake_view {
    struct objstore base;
    struct fake *f;
    int aborted;
};

static const char *const fake_ops[] = {"get", "put", "head", "list"};

static struct fake *fake_of(struct objstore *os)
{
    return ((struct fake_view *)os)->f;
}

static int *fake_aborted(struct objstore *os)
{
    return &((struct fake_view *)os)->aborted;
}

static char *fake_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int fake_cmp(const struct fake_object *o, const char *bucket, const char *key)
{
    int c = strcmp(o->bucket, bucket);

    return c ? c : strcmp(o->key, key);
}

/* Index of (bucket, key), or where it would go; *found set. Lock held. */
static size_t fake_search(struct fake *f, const char *bucket, const char *key, int *found)
{
    size_t lo = 0, hi = f->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = fake_cmp(&f->objs[mid], bucket, key);

        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void fake_object_clear(struct fake_object *o)
{
    free(o->data);
    free(o->content_type);
    free(o->cache_control);
    for (size_t i = 0; i < o->nmeta; i++) {
        free(o->meta_name[i]);
        free(o->meta_value[i]);
    }
    o->data = o->content_type = o->cache_control = NULL;
    o->nmeta = 0;
}

/* FNV-1a of the bytes: an ETag that changes with the content, as S3's MD5 does. */
static void fake_etag(const void *data, size_t len, char out[24])
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    snprintf(out, 24, "%016llx", (unsigned long long)h);
}

/* The slot for (bucket, key), made empty; lock held. */
static struct fake_object *fake_slot(struct fake *f, const char *bucket, const char *key)
{
    int found;
    size_t i = fake_search(f, bucket, key, &found);

    if (found) {
        fake_object_clear(&f->objs[i]);
        return &f->objs[i];
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->objs = realloc(f->objs, f->cap * sizeof(*f->objs));
        if (!f->objs)
            abort();
    }
    memmove(&f->objs[i + 1], &f->objs[i], (f->n - i) * sizeof(*f->objs));
    f->n++;
    memset(&f->objs[i], 0, sizeof(f->objs[i]));
    f->objs[i].bucket = strdup(bucket);
    f->objs[i].key = strdup(key);
    return &f->objs[i];
}

static struct fake_object *fake_store(struct fake *f, const char *bucket, const char *key,
                                      const void *data, size_t len)
{
    struct fake_object *o = fake_slot(f, bucket, key);

    o->data = malloc(len + 1);
    if (!o->data)
        abort();
    memcpy(o->data, data, len);
    ((char *)o->data)[len] = '\0';
    o->len = len;
    fake_etag(data, len, o->etag);
    o->last_modified = f->clock ? f->clock : time(NULL);
    return o;
}

/* ---- faults ---- */

static int fake_rule_matches(struct fake_rule *r, int op, const char *key)
{
    const struct fake_fault *ff = &r->f;
    int first = ff->nth > 0 ? ff->nth : 1;

    if (ff->op && strcmp(ff->op, fake_ops[op]) != 0)
        return 0;
    if (ff->key_prefix && (!key || strncmp(key, ff->key_prefix, strlen(ff->key_prefix)) != 0))
        return 0;
    r->seen++;
    return r->seen >= first && (ff->times == 0 || r->seen < first + ff->times);
}

/* Counts the call and applies the first rule that fires: its error (or
 * RZ_OK), after its delay. */
static enum rz_err fake_enter(struct objstore *os, int op, const char *key, char *msg,
                              size_t msglen)
{
    struct fake *f = fake_of(os);
    int *aborted = fake_aborted(os);
    enum rz_err err = RZ_OK;
    long delay = 0;

    pthread_mutex_lock(&f->lock);
    f->calls[op]++;
    f->calls[4]++;
    for (size_t i = 0; i < f->nrules; i++) {
        if (fake_rule_matches(&f->rules[i], op, key)) {
            err = f->rules[i].f.err;
            delay = f->rules[i].f.delay_ms;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    for (long waited = 0; waited < delay && !__atomic_load_n(aborted, __ATOMIC_RELAXED);
         waited += 5)
        usleep(5000);
    if (__atomic_load_n(aborted, __ATOMIC_RELAXED))
        err = RZ_EUPSTREAM;
    if (err != RZ_OK && msglen)
        snprintf(msg, msglen, "fake %s %s: %s", fake_ops[op], key ? key : "", rz_err_name(err));
    return err;
}

/* ---- the ops ---- */

static struct objstore_conn *fake_conn_new(struct objstore *os)
{
    struct objstore_conn *c = calloc(1, sizeof(*c));

    if (c)
        c->os = os;
    return c;
}

static void fake_conn_free(struct objstore_conn *c)
{
    free(c);
}

static enum rz_err fake_get(struct objstore_conn *c, const char *bucket, const char *key,
                            size_t max_bytes, struct objstore_object *out, char *msg,
                            size_t msglen)
{
    struct fake *f = fake_of(c->os);
    enum rz_err err = fake_enter(c->os, 0, key, msg, msglen);
    int found = 0;
    size_t i;

    if (err != RZ_OK)
        return err;
    pthread_mutex_lock(&f->lock);
    i = fake_search(f, bucket, key, &found);
    if (!found)
        err = RZ_ENOTFOUND;
    else if (f->objs[i].len > max_bytes)
        err = RZ_ETOOBIG;
    if (err == RZ_OK) {
        const struct fake_object *o = &f->objs[i];

        out->data = malloc(o->len + 1);
        memcpy(out->data, o->data, o->len + 1);
        out->len = o->len;
        out->etag = strdup(o->etag);
        out->content_type = fake_strdup(o->content_type);
    }
    pthread_mutex_unlock(&f->lock);
    if (err == RZ_ETOOBIG && msglen)
        snprintf(msg, msglen, "object is larger than %zu bytes", max_bytes);
    else if (err != RZ_OK && msglen)
        snprintf(msg, msglen, "fake get %s: %s", key, rz_err_name(err));
    return err;
}

static enum rz_err fake_put(struct objstore_conn *c, const char *bucket, const char *key,
                            const void *data, size_t len, const struct objstore_put *p,
                            char *msg, size_t msglen)
{
    struct fake *f = fake_of(c->os);
    enum rz_err err = fake_enter(c->os, 1, key, msg, msglen);
    struct fake_object *o;

    if (err != RZ_OK)
        return err;
    pthread_mutex_lock(&f->lock);
    o = fake_store(f, bucket, key, data, len);
    o->content_type = fake_strdup(p->content_type);
    o->cache_control = fake_strdup(p->cache_control);
    for (size_t i = 0; i < p->nmeta; i++) {
        o->meta_name[i] = strdup(p->meta[i].name);
        o->meta_value[i] = strdup(p->meta[i].value);
    }
    o->nmeta = p->nmeta;
    pthread_mutex_unlock(&f->lock);
    return RZ_OK;
}

static enum rz_err fake_head(struct objstore_conn *c, const char *bucket, const char *key,
                             struct objstore_head *out, char *msg, size_t msglen)
{
    struct fake *f = fake_of(c->os);
    enum rz_err err = fake_enter(c->os, 2, key, msg, msglen);
    int found = 0;
    size_t i;

    if (err != RZ_OK)
        return err;
    pthread_mutex_lock(&f->lock);
    i = fake_search(f, bucket, key, &found);
    if (found) {
        out->size = f->objs[i].len;
        out->etag = strdup(f->objs[i].etag);
        out->content_type = fake_strdup(f->objs[i].content_type);
    }
    pthread_mutex_unlock(&f->lock);
    return found ? RZ_OK : RZ_ENOTFOUND;
}

static int fake_listed(const struct fake_object *o, const char *bucket, const char *prefix,
                       const char *after)
{
    return strcmp(o->bucket, bucket) == 0 && strncmp(o->key, prefix, strlen(prefix)) == 0 &&
           (!after || strcmp(o->key, after) > 0);
}

/* The continuation token is the last key of the page, as opaque to the
 * caller as S3's own. */
static enum rz_err fake_list(struct objstore_conn *c, const char *bucket, const char *prefix,
                             const char *start_after, const char *token, int max_keys,
                             struct objstore_list *out, char *msg, size_t msglen)
{
    struct fake *f = fake_of(c->os);
    const char *after = token ? token : start_after;
    enum rz_err err;

    prefix = prefix ? prefix : "";
    err = fake_enter(c->os, 3, prefix, msg, msglen);
    if (err != RZ_OK)
        return err;
    pthread_mutex_lock(&f->lock);
    out->items = calloc((size_t)max_keys, sizeof(*out->items));
    if (f->list_mode == FAKE_LIST_EMPTY) {
        out->next_token = strdup(after ? after : "\x01");
        pthread_mutex_unlock(&f->lock);
        return RZ_OK;
    }
    for (size_t i = 0; i < f->n; i++) {
        const struct fake_object *o = &f->objs[i];

        if (!fake_listed(o, bucket, prefix, after))
            continue;
        if (out->nitems == (size_t)max_keys) {
            out->next_token = strdup(out->items[out->nitems - 1].key);
            break;
        }
        out->items[out->nitems++] = (struct objstore_item){strdup(o->key), o->len,
                                                           strdup(o->etag), o->last_modified};
    }
    /* "\x01" sorts before every key: the next page is the first again. */
    if (f->list_mode == FAKE_LIST_LOOPS && !out->next_token && out->nitems)
        out->next_token = strdup("\x01");
    pthread_mutex_unlock(&f->lock);
    return RZ_OK;
}

void fake_objstore_list_mode(struct objstore *os, enum fake_list_mode mode)
{
    struct fake *f = fake_of(os);

    pthread_mutex_lock(&f->lock);
    f->list_mode = mode;
    pthread_mutex_unlock(&f->lock);
}

static void fake_abort(struct objstore *os)
{
    __atomic_store_n(fake_aborted(os), 1, __ATOMIC_RELAXED);
}

static void fake_free(struct objstore *os)
{
    struct fake *f = fake_of(os);
    int last;

    pthread_mutex_lock(&f->lock);
    last = --f->refs == 0;
    pthread_mutex_unlock(&f->lock);
    free(os);
    if (!last)
        return;
    for (size_t i = 0; i < f->n; i++) {
        fake_object_clear(&f->objs[i]);
        free(f->objs[i].bucket);
        free(f->objs[i].key);
    }
    free(f->objs);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static const struct objstore_ops fake_objstore_ops = {
    .name = "fake",
    .conn_new = fake_conn_new,
    .conn_free = fake_conn_free,
    .get = fake_get,
    .put = fake_put,
    .head = fake_head,
    .list = fake_list,
    .abort = fake_abort,
    .free = fake_free,
};

/* ---- for the tests ---- */

static struct objstore *fake_view_new(struct fake *f)
{
    struct fake_view *v = calloc(1, sizeof(*v));

    if (!v)
        abort();
    v->base.ops = &fake_objstore_ops;
    v->f = f;
    pthread_mutex_lock(&f->lock);
    f->refs++;
    pthread_mutex_unlock(&f->lock);
    return &v->base;
}

struct objstore *fake_objstore_new(void)
{
    struct fake *f = calloc(1, sizeof(*f));

    if (!f)
        abort();
    pthread_mutex_init(&f->lock, NULL);
    return fake_view_new(f);
}

struct objstore *fake_objstore_view(struct objstore *os)
{
    return fake_view_new(fake_of(os));
}

void fake_objstore_add(struct objstore *os, const char *bucket, const char *key,
                       const void *data, size_t len, const char *etag)
{
    struct fake *f = fake_of(os);
    struct fake_object *o;

    pthread_mutex_lock(&f->lock);
    o = fake_store(f, bucket, key, data, len);
    if (etag)
        snprintf(o->etag, sizeof(o->etag), "%s", etag);
    pthread_mutex_unlock(&f->lock);
}

const struct fake_object *fake_objstore_find(struct objstore *os, const char *bucket,
                                             const char *key)
{
    struct fake *f = fake_of(os);
    const struct fake_object *o;
    int found;
    size_t i;

    pthread_mutex_lock(&f->lock);
    i = fake_search(f, bucket, key, &found);
    o = found ? &f->objs[i] : NULL;
    pthread_mutex_unlock(&f->lock);
    return o;
}

size_t fake_objstore_count(struct objstore *os, const char *bucket, const char *prefix)
{
    struct fake *f = fake_of(os);
    size_t n = 0;

    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n; i++)
        n += (size_t)fake_listed(&f->objs[i], bucket, prefix, NULL);
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fake_objstore_fail(struct objstore *os, const struct fake_fault *ff)
{
    struct fake *f = fake_of(os);

    pthread_mutex_lock(&f->lock);
    if (f->nrules < FAKE_MAX_FAULTS)
        f->rules[f->nrules++] = (struct fake_rule){*ff, 0};
    pthread_mutex_unlock(&f->lock);
}

size_t fake_objstore_calls(struct objstore *os, const char *op)
{
    struct fake *f = fake_of(os);
    size_t n = 0;

    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < 4; i++)
        if (!op || strcmp(op, fake_ops[i]) == 0)
            n += f->calls[i];
    pthread_mutex_unlock(&f->lock);
    return n;
}

void fake_objstore_set_clock(struct objstore *os, time_t now)
{
    struct fake *f = fake_of(os);

    pthread_mutex_lock(&f->lock);
    f->clock = now;
    pthread_mutex_unlock(&f->lock);
}
