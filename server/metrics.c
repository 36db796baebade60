/* metrics.c - a small Prometheus registry.
 *
 * Families and series live in plain arrays searched linearly: there are a
 * few dozen of each, and a bounded count keeps a label explosion (a bug that
 * put ids in labels, say) from growing memory without end. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "numfmt.h"

#define METRICS_MAX_FAMILIES 64
#define METRICS_MAX_SERIES 256 /* per family */
#define METRICS_MAX_BUCKETS 20
#define METRICS_MAX_RENDER (4 * 1024 * 1024)

struct metrics_series {
    char *labels;
    double value;             /* counter/gauge value, or histogram sum */
    unsigned long long count; /* histogram observations */
    unsigned long long buckets[METRICS_MAX_BUCKETS];
    metrics_gauge_fn fn;
    void *fn_arg;
};

struct metrics_family {
    char *name;
    char *help;
    enum metrics_type type;
    double bounds[METRICS_MAX_BUCKETS];
    size_t nbounds;
    struct metrics_series *series;
    size_t nseries;
};

struct metrics {
    pthread_mutex_t lock;
    struct metrics_family families[METRICS_MAX_FAMILIES];
    size_t nfamilies;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nfamilies; i++) {
        struct metrics_family *f = &m->families[i];

        for (size_t j = 0; j < f->nseries; j++)
            free(f->series[j].labels);
        free(f->series);
        free(f->name);
        free(f->help);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct metrics_family *metrics_family_find(struct metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i].name, name) == 0)
            return &m->families[i];
    }
    return NULL;
}

enum rz_err metrics_register(struct metrics *m, const char *name, enum metrics_type type,
                             const char *help, const double *buckets, size_t nbuckets)
{
    struct metrics_family *f;
    enum rz_err err = RZ_OK;

    if (nbuckets > METRICS_MAX_BUCKETS)
        return RZ_EINVAL;
    pthread_mutex_lock(&m->lock);
    if (metrics_family_find(m, name)) {
        err = RZ_ECONFLICT;
        goto done;
    }
    if (m->nfamilies == METRICS_MAX_FAMILIES) {
        err = RZ_EFULL;
        goto done;
    }
    f = &m->families[m->nfamilies];
    memset(f, 0, sizeof(*f));
    f->name = strdup(name);
    f->help = strdup(help);
    f->series = calloc(METRICS_MAX_SERIES, sizeof(*f->series));
    if (!f->name || !f->help || !f->series) {
        free(f->name);
        free(f->help);
        free(f->series);
        err = RZ_ENOMEM;
        goto done;
    }
    f->type = type;
    f->nbounds = nbuckets;
    if (nbuckets)
        memcpy(f->bounds, buckets, nbuckets * sizeof(*buckets));
    m->nfamilies++;
done:
    pthread_mutex_unlock(&m->lock);
    return err;
}

/* Finds or creates the series; NULL when the family is unknown or full.
 * Called with the lock held. */
static struct metrics_series *metrics_series_get(struct metrics *m, const char *name,
                                                 const char *labels)
{
    struct metrics_family *f = metrics_family_find(m, name);
    struct metrics_series *s;

    if (!f)
        return NULL;
    for (size_t i = 0; i < f->nseries; i++) {
        if (strcmp(f->series[i].labels, labels) == 0)
            return &f->series[i];
    }
    if (f->nseries == METRICS_MAX_SERIES)
        return NULL;
    s = &f->series[f->nseries];
    s->labels = strdup(labels);
    if (!s->labels)
        return NULL;
    f->nseries++;
    return s;
}

enum rz_err metrics_register_gauge_fn(struct metrics *m, const char *name, const char *help,
                                      const char *labels, metrics_gauge_fn fn, void *arg)
{
    struct metrics_series *s;
    enum rz_err err = metrics_register(m, name, METRICS_GAUGE, help, NULL, 0);

    if (err != RZ_OK && err != RZ_ECONFLICT)
        return err;
    pthread_mutex_lock(&m->lock);
    s = metrics_series_get(m, name, labels);
    if (s) {
        s->fn = fn;
        s->fn_arg = arg;
    }
    pthread_mutex_unlock(&m->lock);
    return s ? RZ_OK : RZ_ENOMEM;
}

void metrics_add(struct metrics *m, const char *name, const char *labels, double v)
{
    struct metrics_series *s;

    pthread_mutex_lock(&m->lock);
    s = metrics_series_get(m, name, labels);
    if (s)
        s->value += v;
    pthread_mutex_unlock(&m->lock);
}

void metrics_set(struct metrics *m, const char *name, const char *labels, double v)
{
    struct metrics_series *s;

    pthread_mutex_lock(&m->lock);
    s = metrics_series_get(m, name, labels);
    if (s)
        s->value = v;
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe(struct metrics *m, const char *name, const char *labels, double v)
{
    struct metrics_family *f;
    struct metrics_series *s;

    pthread_mutex_lock(&m->lock);
    f = metrics_family_find(m, name);
    s = f ? metrics_series_get(m, name, labels) : NULL;
    if (s) {
        s->value += v;
        s->count++;
        for (size_t i = 0; i < f->nbounds; i++) {
            if (v <= f->bounds[i])
                s->buckets[i]++;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

#ifdef RESIZER_UNITTEST
double metrics_get(struct metrics *m, const char *name, const char *labels)
{
    struct metrics_family *f;
    double v = 0;

    pthread_mutex_lock(&m->lock);
    f = metrics_family_find(m, name);
    for (size_t i = 0; f && i < f->nseries; i++) {
        if (strcmp(f->series[i].labels, labels) == 0) {
            v = f->series[i].fn ? f->series[i].fn(f->series[i].fn_arg) : f->series[i].value;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return v;
}
#endif

/* name{labels} or name{labels,extra} or name{extra} or name. */
static enum rz_err metrics_render_name(struct buf *b, const char *name, const char *suffix,
                                       const char *labels, const char *extra)
{
    int has_labels = labels[0] != '\0';
    int has_extra = extra && extra[0] != '\0';

    if (!has_labels && !has_extra)
        return buf_printf(b, "%s%s ", name, suffix);
    return buf_printf(b, "%s%s{%s%s%s} ", name, suffix, labels,
                      has_labels && has_extra ? "," : "", has_extra ? extra : "");
}

/* Values and bounds in the fewest digits that read back the same: 0.005,
 * not 0.0050000000000000001 (numfmt writes +Inf, -Inf and NaN as the text
 * format spells them). */
static enum rz_err metrics_render_value(struct buf *b, double v)
{
    char num[NUMFMT_MAX];

    numfmt_double(v, num);
    return buf_printf(b, "%s\n", num);
}

static enum rz_err metrics_render_histogram(struct buf *b, const struct metrics_family *f,
                                            const struct metrics_series *s)
{
    enum rz_err err = RZ_OK;
    char le[NUMFMT_MAX + 8];
    char num[NUMFMT_MAX];

    for (size_t i = 0; i < f->nbounds && err == RZ_OK; i++) {
        numfmt_double(f->bounds[i], num);
        snprintf(le, sizeof(le), "le=\"%s\"", num);
        err = metrics_render_name(b, f->name, "_bucket", s->labels, le);
        if (err == RZ_OK)
            err = buf_printf(b, "%llu\n", s->buckets[i]);
    }
    if (err == RZ_OK)
        err = metrics_render_name(b, f->name, "_bucket", s->labels, "le=\"+Inf\"");
    if (err == RZ_OK)
        err = buf_printf(b, "%llu\n", s->count);
    if (err == RZ_OK)
        err = metrics_render_name(b, f->name, "_sum", s->labels, NULL);
    if (err == RZ_OK)
        err = metrics_render_value(b, s->value);
    if (err == RZ_OK)
        err = metrics_render_name(b, f->name, "_count", s->labels, NULL);
    if (err == RZ_OK)
        err = buf_printf(b, "%llu\n", s->count);
    return err;
}

static enum rz_err metrics_render_family(struct buf *b, const struct metrics_family *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    enum rz_err err = buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                                 types[f->type]);

    for (size_t i = 0; i < f->nseries && err == RZ_OK; i++) {
        const struct metrics_series *s = &f->series[i];

        if (f->type == METRICS_HISTOGRAM) {
            err = metrics_render_histogram(b, f, s);
            continue;
        }
        err = metrics_render_name(b, f->name, "", s->labels, NULL);
        if (err == RZ_OK)
            err = metrics_render_value(b, s->fn ? s->fn(s->fn_arg) : s->value);
    }
    return err;
}

char *metrics_render(struct metrics *m)
{
    struct buf b;
    enum rz_err err = RZ_OK;

    buf_init(&b, METRICS_MAX_RENDER);
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies && err == RZ_OK; i++)
        err = metrics_render_family(&b, &m->families[i]);
    pthread_mutex_unlock(&m->lock);
    if (err != RZ_OK) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_steal(&b);
}
