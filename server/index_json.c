/* index_json.c - the status record as JSON, one shape for the API and for
 * the copy kept in S3 (_status/...), so a replica that reads it back can
 * answer exactly as the replica that wrote it. */
#include "index.h"

#include "timefmt.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ids.h"
#include "keys.h"
#include "log.h"

/* Limits of what a record may hold: S3 keys are at most 1024 bytes, and
 * objects at most 5 TiB. Anything past them was not written by us. */
#define INDEX_JSON_KEY_MAX 1024
#define INDEX_JSON_BYTES_MAX 5497558138880LL

static json_t *index_json_time(int64_t ms)
{
    char out[TIMEFMT_MAX];

    if (ms <= 0)
        return json_null();
    timefmt_iso_ms(ms, out);
    return json_string(out);
}

/* 0 (what a null time reads as) for anything that is not a time. */
static int64_t index_json_parse_time(const json_t *j)
{
    int64_t ms;

    return timefmt_parse_iso_ms(json_string_value(j), &ms) == RZ_OK ? ms : 0;
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
    json_object_set_new(src, "bytes",
                        e->bytes ? json_integer((json_int_t)e->bytes) : json_null());
    json_object_set_new(src, "format", e->format[0] ? json_string(e->format) : json_null());
    json_object_set_new(src, "width", e->width ? json_integer(e->width) : json_null());
    json_object_set_new(src, "height", e->height ? json_integer(e->height) : json_null());
    json_object_set_new(src, "etag", index_json_str(e->etag));
    return src;
}

static json_t *index_json_files(const struct index_variant *v)
{
    json_t *arr = json_array();

    for (size_t k = 0; k < v->nfiles; k++) {
        const struct index_file *f = &v->files[k];

        json_array_append_new(arr,
                              json_pack("{s:s,s:o,s:s,s:i,s:i,s:I}", "format",
                                        image_format_name(f->format), "key",
                                        index_json_str(f->key), "content_type",
                                        image_format_mime(f->format), "width", v->width,
                                        "height", v->height, "bytes", (json_int_t)f->bytes));
    }
    return arr;
}

static json_t *index_json_variants(const struct index_entry *e)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < e->nvariants; i++) {
        const struct index_variant *v = &e->variants[i];

        json_array_append_new(arr, json_pack("{s:s,s:o,s:o,s:i,s:i,s:I,s:o}", "name", v->name,
                                             "key", index_json_str(v->key), "content_type",
                                             index_json_str(v->content_type), "width", v->width,
                                             "height", v->height, "bytes", (json_int_t)v->bytes,
                                             "files", index_json_files(v)));
    }
    return arr;
}

/* Paints before the picture loads: null until the image is done. The
 * aspect ratio (width / height, upright) sizes the box before either. */
static json_t *index_json_placeholder(const struct index_entry *e)
{
    if (!e->blurhash && !e->dominant[0])
        return json_null();
    return json_pack("{s:o,s:o,s:o}", "blurhash", index_json_str(e->blurhash), "dominant_color",
                     e->dominant[0] ? json_string(e->dominant) : json_null(), "aspect_ratio",
                     e->width > 0 && e->height > 0
                         ? json_real(round((double)e->width / e->height * 10000) / 10000)
                         : json_null());
}

json_t *index_entry_to_json(const struct index_entry *e)
{
    json_t *j = json_object();

    if (!j)
        return NULL;
    json_object_set_new(j, "id", json_string(e->id));
    json_object_set_new(j, "state", json_string(index_state_name(e->state)));
    json_object_set_new(j, "uploader", index_json_str(e->uploader));
    json_object_set_new(j, "source", index_json_source(e));
    json_object_set_new(j, "variants", index_json_variants(e));
    json_object_set_new(j, "placeholder", index_json_placeholder(e));
    if (e->error_code[0])
        json_object_set_new(j, "error",
                            json_pack("{s:s,s:o}", "code", e->error_code, "message",
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

/* A string member, or NULL when absent or null. An embedded NUL (JSON
 * allows \u0000) would make the C string differ from what was checked. */
static enum rz_err index_json_take_str(const json_t *obj, const char *name, char **out)
{
    const json_t *v = json_object_get(obj, name);

    *out = NULL;
    if (!v || json_is_null(v))
        return RZ_OK;
    if (!json_is_string(v) || json_string_length(v) > 4096 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return RZ_EINVAL;
    *out = strdup(json_string_value(v));
    return *out ? RZ_OK : RZ_ENOMEM;
}

/* A byte count: absent, null or 0 is 0 (unknown); anything else must be
 * a plausible size. -1 when it is not. */
static long long index_json_bytes(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    json_int_t n;

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return -1;
    n = json_integer_value(v);
    return n >= 0 && n <= INDEX_JSON_BYTES_MAX ? (long long)n : -1;
}

/* An S3 key we could have written: 1..1024 bytes, no control characters
 * (they would reach log lines and URLs). */
static int index_json_key_ok(const char *key)
{
    size_t len;

    if (!key)
        return 1;
    len = strlen(key);
    if (len == 0 || len > INDEX_JSON_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return 0;
    }
    return 1;
}

/* Names as VARIANTS allows them, and error codes as we write them. */
static int index_json_name_ok(const char *s, const char *extra)
{
    if (!s || !s[0])
        return 0;
    for (; *s; s++) {
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && !strchr(extra, *s))
            return 0;
    }
    return 1;
}

static int index_json_int(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;

    return n > 0 && n < 1000000000 ? (int)n : 0;
}

static enum rz_err index_json_take_source(const json_t *src, struct index_entry *out)
{
    const char *format = json_string_value(json_object_get(src, "format"));
    long long bytes = index_json_bytes(src, "bytes");
    enum rz_err err;

    if (!json_is_object(src) || bytes < 0 ||
        (format && (strlen(format) >= sizeof(out->format) ||
                    (format[0] && !index_json_name_ok(format, "")))))
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
    if (err == RZ_OK && !index_json_key_ok(out->key))
        err = RZ_EINVAL;
    out->bytes = (uint64_t)bytes;
    snprintf(out->format, sizeof(out->format), "%s", format ? format : "");
    out->width = index_json_int(src, "width");
    out->height = index_json_int(src, "height");
    return err;
}

static enum image_format index_json_format(const char *name)
{
    for (int f = IMAGE_FORMAT_JPEG; name && f <= IMAGE_FORMAT_HEIF; f++) {
        if (strcmp(name, image_format_name((enum image_format)f)) == 0)
            return (enum image_format)f;
    }
    return IMAGE_FORMAT_UNKNOWN;
}

/* A record written before variants listed their files has one: the
 * variant's own key, in the format its Content-Type names. */
static enum rz_err index_json_take_files(const json_t *arr, struct index_variant *iv)
{
    size_t k;
    const json_t *f;
    enum rz_err err = RZ_OK;
    size_t n = json_is_array(arr) ? json_array_size(arr) : 1;

    if (arr && (!json_is_array(arr) || n > IMAGE_MAX_OUTPUTS))
        return RZ_EINVAL;
    if (!arr && (!iv->key || image_format_from_mime(iv->content_type) == IMAGE_FORMAT_UNKNOWN))
        return RZ_OK; /* nothing to serve by format */
    iv->files = calloc(n ? n : 1, sizeof(*iv->files));
    if (!iv->files)
        return RZ_ENOMEM;
    if (!arr) {
        iv->files[0].format = image_format_from_mime(iv->content_type);
        iv->files[0].bytes = iv->bytes;
        iv->nfiles = 1;
        iv->files[0].key = strdup(iv->key);
        return iv->files[0].key ? RZ_OK : RZ_ENOMEM;
    }
    json_array_foreach(arr, k, f)
    {
        struct index_file *file = &iv->files[k];

        file->format = index_json_format(json_string_value(json_object_get(f, "format")));
        if (file->format == IMAGE_FORMAT_UNKNOWN)
            return RZ_EINVAL;
        iv->nfiles = k + 1;
        err = index_json_take_str(f, "key", &file->key);
        if (err != RZ_OK)
            return err;
        /* the same rule as the variant's own key: <name>/... only */
        if (!file->key || !index_json_key_ok(file->key) ||
            strncmp(file->key, iv->name, strlen(iv->name)) != 0 ||
            file->key[strlen(iv->name)] != '/' || index_json_bytes(f, "bytes") < 0)
            return RZ_EINVAL;
        file->bytes = (uint64_t)index_json_bytes(f, "bytes");
    }
    return RZ_OK;
}

static enum rz_err index_json_take_variants(const json_t *arr, struct index_entry *out)
{
    size_t i;
    const json_t *v;
    enum rz_err err = RZ_OK;

    if (!json_is_array(arr) || json_array_size(arr) > IMAGE_MAX_VARIANTS)
        return RZ_EINVAL;
    json_array_foreach(arr, i, v)
    {
        struct index_variant *iv = &out->variants[i];
        const char *name = json_string_value(json_object_get(v, "name"));
        long long bytes = index_json_bytes(v, "bytes");

        /* First a letter or digit, as VARIANTS requires: "_status" would
         * make the key check below pass for another image's record. */
        if (!name || strlen(name) >= sizeof(iv->name) || !index_json_name_ok(name, "-_") ||
            !isalnum((unsigned char)name[0]) || bytes < 0)
            return RZ_EINVAL;
        snprintf(iv->name, sizeof(iv->name), "%s", name);
        out->nvariants = i + 1;
        err = index_json_take_str(v, "key", &iv->key);
        if (err == RZ_OK)
            err = index_json_take_str(v, "content_type", &iv->content_type);
        if (err != RZ_OK)
            return err;
        /* A variant's key is <name>/...: anything else would presign a
         * download of some other object in the bucket. */
        if (!iv->key || !index_json_key_ok(iv->key) ||
            strncmp(iv->key, name, strlen(name)) != 0 || iv->key[strlen(name)] != '/')
            return RZ_EINVAL;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(out->variants[k].name, name) == 0)
                return RZ_EINVAL;
        }
        iv->width = index_json_int(v, "width");
        iv->height = index_json_int(v, "height");
        iv->bytes = (uint64_t)bytes;
        if (err == RZ_OK)
            err = index_json_take_files(json_object_get(v, "files"), iv);
        if (err != RZ_OK)
            return err;
    }
    return RZ_OK;
}

static int index_json_is_colour(const char *s)
{
    return s && strlen(s) == 7 && s[0] == '#' && strspn(s + 1, "0123456789abcdef") == 6;
}

/* A BlurHash is base83 and its length follows from its size flag. */
static int index_json_is_blurhash(const char *s)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "#$%*+,-.:;=?@[]^_{|}~";
    const char *flag = s ? strchr(digits, s[0]) : NULL;
    size_t n;

    if (!flag || !s[0])
        return 0;
    n = (size_t)(flag - digits);
    return n < 81 && strlen(s) == 4 + 2 * ((n % 9 + 1) * (n / 9 + 1)) &&
           strspn(s, digits) == strlen(s);
}

static enum rz_err index_json_take_placeholder(const json_t *p, struct index_entry *out)
{
    const char *hash = json_string_value(json_object_get(p, "blurhash"));
    const char *colour = json_string_value(json_object_get(p, "dominant_color"));

    if (!p || json_is_null(p))
        return RZ_OK;
    if (!json_is_object(p) || (hash && !index_json_is_blurhash(hash)) ||
        (colour && !index_json_is_colour(colour)))
        return RZ_EINVAL;
    if (colour)
        memcpy(out->dominant, colour, 8);
    if (!hash)
        return RZ_OK;
    out->blurhash = strdup(hash);
    return out->blurhash ? RZ_OK : RZ_ENOMEM;
}

static enum rz_err index_json_take_error(const json_t *err_obj, struct index_entry *out)
{
    const char *code;

    if (!err_obj || json_is_null(err_obj))
        return RZ_OK;
    code = json_string_value(json_object_get(err_obj, "code"));
    if (!code || strlen(code) >= sizeof(out->error_code) || !index_json_name_ok(code, "_"))
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
    if (!json_is_object(j) || !ids_uuid_ok(id) || state < 0)
        goto fail;
    memcpy(out->id, id, INDEX_ID_LEN + 1);
    out->state = (enum index_state)state;
    err = index_json_take_str(j, "uploader", &out->uploader);
    if (err == RZ_OK)
        err = index_json_take_source(json_object_get(j, "source"), out);
    if (err == RZ_OK)
        err = index_json_take_variants(json_object_get(j, "variants"), out);
    if (err == RZ_OK)
        err = index_json_take_placeholder(json_object_get(j, "placeholder"), out);
    if (err == RZ_OK)
        err = index_json_take_error(json_object_get(j, "error"), out);
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

/* 1 when record_key is where this record is filed: under its id, or
 * under its source key. A forged record copied to another image's key
 * would otherwise be served, and cached, as that image. */
static int index_record_filed_right(const struct index_entry *e, const char *record_key,
                                    const char *src_prefix)
{
    size_t n = strlen(KEYS_STATUS_BY_ID);
    char *by_key;
    int same;

    if (strncmp(record_key, KEYS_STATUS_BY_ID, n) == 0)
        return strcmp(record_key + n, e->id) == 0;
    by_key = keys_status_by_key(src_prefix ? src_prefix : "", e->key);
    same = by_key && strcmp(by_key, record_key) == 0;
    free(by_key);
    return same;
}

/* Why a record read back is refused, for the log line; NULL if it is fine
 * for this service (source in src_bucket under src_prefix, filed where it
 * was found). */
static const char *index_record_mismatch(const struct index_entry *e, const char *record_key,
                                         const char *src_bucket, const char *src_prefix)
{
    if (!e->key)
        return "no source key";
    if (src_prefix && strncmp(e->key, src_prefix, strlen(src_prefix)) != 0)
        return "source key outside SRC_PREFIX";
    if (src_bucket && e->bucket && strcmp(e->bucket, src_bucket) != 0)
        return "source bucket is not SRC_BUCKET";
    if (!index_record_filed_right(e, record_key, src_prefix))
        return "filed under another id or key";
    return NULL;
}

enum rz_err index_record_parse(const char *data, size_t len, const char *record_key,
                               const char *src_bucket, const char *src_prefix,
                               struct index_entry *out)
{
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *why = NULL;
    enum rz_err err = RZ_EINVAL;

    memset(out, 0, sizeof(*out));
    if (!j)
        why = "not JSON";
    else if (index_entry_from_json(j, out) != RZ_OK)
        why = "not a valid status record";
    else
        why = index_record_mismatch(out, record_key, src_bucket, src_prefix);
    json_decref(j);
    if (!why)
        return RZ_OK;
    index_entry_cleanup(out);
    log_fields(LOG_WARN, "status_record_rejected",
               json_pack("{s:o,s:s}", "record", log_string(record_key), "reason", why));
    return err;
}
