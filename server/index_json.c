/* index_json.c - the status record as JSON, one shape for the API and for
 * the copy kept in S3 (_status/...), so a replica that reads it back can
 * answer exactly as the replica that wrote it. */
#include "index.h"

#include "timefmt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *index_json_time(int64_t ms)
{
    char out[TIMEFMT_MAX];

    if (ms <= 0)
        return json_null();
    timefmt_iso_ms(ms, out);
    return json_string(out);
}

static int64_t index_json_parse_time(const json_t *j)
{
    const char *s = json_string_value(j);
    struct tm tm;
    const char *rest;
    long ms = 0;
    time_t secs;

    if (!s)
        return 0;
    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return 0;
    if (rest[0] == '.')
        ms = strtol(rest + 1, NULL, 10);
    secs = timegm(&tm);
    /* We write three digits after 1970 (0 is written as null): anything
     * else is not ours, and a huge fraction would overflow the sum. */
    if (ms < 0 || ms > 999 || secs <= 0)
        return 0;
    return (int64_t)secs * 1000 + ms;
}

static json_t *index_json_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *index_json_source(const struct index_entry *e)
{
    json_t *src = json_object();

    json_object_set_new(src, "bucket", index_json_str(e->bucket));
    json_object_set_new(src, "key", index_json_str(e->key));
    json_object_set_new(src, "filename", index_json_str(e->filename));
    json_object_set_new(src, "content_type", index_json_str(e->content_type));
    json_object_set_new(src, "bytes", e->bytes ? json_integer((json_int_t)e->bytes) : json_null());
    json_object_set_new(src, "format", e->format[0] ? json_string(e->format) : json_null());
    json_object_set_new(src, "width", e->width ? json_integer(e->width) : json_null());
    json_object_set_new(src, "height", e->height ? json_integer(e->height) : json_null());
    json_object_set_new(src, "etag", index_json_str(e->etag));
    return src;
}

static json_t *index_json_variants(const struct index_entry *e)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < e->nvariants; i++) {
        const struct index_variant *v = &e->variants[i];

        json_array_append_new(arr, json_pack("{s:s,s:o,s:o,s:i,s:i,s:I}", "name", v->name, "key",
                                             index_json_str(v->key), "content_type",
                                             index_json_str(v->content_type), "width", v->width,
                                             "height", v->height, "bytes",
                                             (json_int_t)v->bytes));
    }
    return arr;
}

json_t *index_entry_to_json(const struct index_entry *e)
{
    json_t *j = json_object();

    if (!j)
        return NULL;
    json_object_set_new(j, "id", json_string(e->id));
    json_object_set_new(j, "state", json_string(index_state_name(e->state)));
    json_object_set_new(j, "source", index_json_source(e));
    json_object_set_new(j, "uploader", index_json_str(e->uploader));
    json_object_set_new(j, "variants", index_json_variants(e));
    if (e->error_code[0])
        json_object_set_new(j, "error", json_pack("{s:s,s:o}", "code", e->error_code, "message",
                                                  index_json_str(e->error_message)));
    else
        json_object_set_new(j, "error", json_null());
    json_object_set_new(j, "attempts", json_integer(e->attempts));
    json_object_set_new(j, "created_at", index_json_time(e->created_ms));
    json_object_set_new(j, "updated_at", index_json_time(e->updated_ms));
    json_object_set_new(j, "started_at", index_json_time(e->started_ms));
    json_object_set_new(j, "finished_at", index_json_time(e->finished_ms));
    return j;
}

static enum rz_err index_json_take_str(const json_t *obj, const char *name, char **out)
{
    const json_t *v = json_object_get(obj, name);

    *out = NULL;
    if (!v || json_is_null(v))
        return RZ_OK;
    if (!json_is_string(v) || json_string_length(v) > 4096)
        return RZ_EINVAL;
    *out = strdup(json_string_value(v));
    return *out ? RZ_OK : RZ_ENOMEM;
}

static int index_json_int(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;

    return n > 0 && n < 1000000000 ? (int)n : 0;
}

static enum rz_err index_json_take_source(const json_t *src, struct index_entry *out)
{
    const json_t *bytes = json_object_get(src, "bytes");
    const char *format = json_string_value(json_object_get(src, "format"));
    enum rz_err err;

    if (!json_is_object(src))
        return RZ_EINVAL;
    err = index_json_take_str(src, "bucket", &out->bucket);
    if (err == RZ_OK)
        err = index_json_take_str(src, "key", &out->key);
    if (err == RZ_OK)
        err = index_json_take_str(src, "filename", &out->filename);
    if (err == RZ_OK)
        err = index_json_take_str(src, "content_type", &out->content_type);
    if (err == RZ_OK)
        err = index_json_take_str(src, "etag", &out->etag);
    if (json_is_integer(bytes) && json_integer_value(bytes) > 0)
        out->bytes = (uint64_t)json_integer_value(bytes);
    snprintf(out->format, sizeof(out->format), "%s", format ? format : "");
    out->width = index_json_int(src, "width");
    out->height = index_json_int(src, "height");
    return err;
}

static enum rz_err index_json_take_variants(const json_t *arr, struct index_entry *out)
{
    size_t i;
    const json_t *v;
    enum rz_err err = RZ_OK;

    if (!json_is_array(arr) || json_array_size(arr) > IMAGE_MAX_VARIANTS)
        return RZ_EINVAL;
    json_array_foreach(arr, i, v) {
        struct index_variant *iv = &out->variants[i];
        const char *name = json_string_value(json_object_get(v, "name"));
        const json_t *bytes = json_object_get(v, "bytes");

        if (!name || strlen(name) >= sizeof(iv->name))
            return RZ_EINVAL;
        snprintf(iv->name, sizeof(iv->name), "%s", name);
        out->nvariants = i + 1;
        err = index_json_take_str(v, "key", &iv->key);
        if (err == RZ_OK)
            err = index_json_take_str(v, "content_type", &iv->content_type);
        if (err != RZ_OK)
            return err;
        iv->width = index_json_int(v, "width");
        iv->height = index_json_int(v, "height");
        iv->bytes = json_is_integer(bytes) && json_integer_value(bytes) > 0
                        ? (uint64_t)json_integer_value(bytes)
                        : 0;
    }
    return RZ_OK;
}

static enum rz_err index_json_take_error(const json_t *err_obj, struct index_entry *out)
{
    const char *code;

    if (!err_obj || json_is_null(err_obj))
        return RZ_OK;
    code = json_string_value(json_object_get(err_obj, "code"));
    if (!code || strlen(code) >= sizeof(out->error_code))
        return RZ_EINVAL;
    snprintf(out->error_code, sizeof(out->error_code), "%s", code);
    return index_json_take_str(err_obj, "message", &out->error_message);
}

enum rz_err index_entry_from_json(const json_t *j, struct index_entry *out)
{
    const char *id = json_string_value(json_object_get(j, "id"));
    int state = index_state_parse(json_string_value(json_object_get(j, "state")));
    enum rz_err err = RZ_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(j) || !id || strlen(id) != INDEX_ID_LEN || state < 0)
        goto fail;
    memcpy(out->id, id, INDEX_ID_LEN + 1);
    out->state = (enum index_state)state;
    err = index_json_take_source(json_object_get(j, "source"), out);
    if (err == RZ_OK)
        err = index_json_take_variants(json_object_get(j, "variants"), out);
    if (err == RZ_OK)
        err = index_json_take_error(json_object_get(j, "error"), out);
    if (err != RZ_OK)
        goto fail;
    err = index_json_take_str(j, "uploader", &out->uploader);
    if (err != RZ_OK)
        goto fail;
    out->attempts = index_json_int(j, "attempts");
    out->created_ms = index_json_parse_time(json_object_get(j, "created_at"));
    out->updated_ms = index_json_parse_time(json_object_get(j, "updated_at"));
    out->started_ms = index_json_parse_time(json_object_get(j, "started_at"));
    out->finished_ms = index_json_parse_time(json_object_get(j, "finished_at"));
    return RZ_OK;
fail:
    index_entry_cleanup(out);
    return err;
}
