/* events.c - parse the object-created notifications the service accepts.
 *
 * Everything here is hostile input from the network: the body is capped
 * before parsing, its nesting is bounded before jansson recurses into it,
 * and every field is checked for type, size and encoding before it is
 * copied into the batch. */
#include "events.h"
#include "unittest.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events_internal.h"
#include "text.h"

/* Optional strings (etag, sequencer, version id) are S3-issued tokens;
 * S3's own version ids are at most 1024 bytes. */
#define EVENTS_MAX_FIELD 1024
#define EVENTS_PATH_TEXT 96

/* Where a shape keeps each field, as three nested object members. */
struct event_shape {
    const char *bucket[3];
    const char *key[3];
    const char *etag[3];
    const char *sequencer[3];
    const char *version_id[3];
    const char *size[3];
    int key_form_encoded; /* Records keys are form-URL-encoded; EventBridge's are raw */
};

static const struct event_shape shape_eventbridge = {
    {"detail", "bucket", "name"},
    {"detail", "object", "key"},
    {"detail", "object", "etag"},
    {"detail", "object", "sequencer"},
    {"detail", "object", "version-id"},
    {"detail", "object", "size"},
    0,
};

static const struct event_shape shape_record = {
    {"s3", "bucket", "name"},
    {"s3", "object", "key"},
    {"s3", "object", "eTag"},
    {"s3", "object", "sequencer"},
    {"s3", "object", "versionId"},
    {"s3", "object", "size"},
    1,
};

/* Record sources that speak the S3 notification format (MinIO sends
 * "minio:s3", Ceph RGW "ceph:s3"); an absent eventSource counts as S3. */
static const char *const s3_sources[] = {"aws:s3", "minio:s3", "ceph:s3"};

/* The message goes back to the sender and into a log line: keep it one
 * line of printable ASCII whatever the input held. */
static void msg_set(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void msg_set(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;
    size_t i;

    if (!msg || msglen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    for (i = 0; msg[i]; i++) {
        unsigned char c = (unsigned char)msg[i];

        if (c < 0x20 || c > 0x7e)
            msg[i] = '?';
    }
}

/* Length of the UTF-8 sequence led by c, with the bounds its second byte
 * must respect (these exclude overlongs, surrogates and > U+10FFFF). */
static size_t utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0)
            *lo = 0xa0;
        if (c == 0xed)
            *hi = 0x9f;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0)
            *lo = 0x90;
        if (c == 0xf4)
            *hi = 0x8f;
        return 4;
    }
    return 0;
}

UNITTEST int events_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned char lo;
        unsigned char hi;
        size_t n = utf8_lead(p[i], &lo, &hi);
        size_t k;

        if (n == 0 || n > len - i)
            return 0;
        for (k = 1; k < n; k++) {
            unsigned char c = p[i + k];

            if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf))
                return 0;
        }
        i += n;
    }
    return 1;
}

UNITTEST int events_depth_ok(const char *body, size_t len, size_t limit)
{
    size_t depth = 0;
    size_t i;
    int in_string = 0;

    for (i = 0; i < len; i++) {
        char c = body[i];

        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            depth++;
            if (depth > limit)
                return 0;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 1;
}

static int parse_digits(const char **s, long *out)
{
    char *end;
    const char *p = *s;

    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    *out = strtol(p, &end, 10);
    if (errno != 0)
        return -1;
    *s = end;
    return 0;
}

UNITTEST int events_parse_version(const char *s, long *major, long *minor)
{
    *minor = 0;
    if (parse_digits(&s, major) < 0)
        return -1;
    if (*s == '\0')
        return 0;
    if (*s != '.')
        return -1;
    s++;
    if (parse_digits(&s, minor) < 0)
        return -1;
    return *s == '\0' ? 0 : -1;
}

UNITTEST int events_bucket_valid(const char *name)
{
    size_t len = strlen(name);
    size_t i;

    if (len == 0 || len > 255)
        return 0;
    for (i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';

        if (!ok)
            return 0;
    }
    return 1;
}

/* Tokens that may end up in a header or query string: printable ASCII only,
 * so nothing in an event can inject a header line. */
static int token_valid(const char *s)
{
    for (; *s; s++) {
        if (*s < 0x21 || *s > 0x7e)
            return 0;
    }
    return 1;
}

static void path_text(char *dst, const char *prefix, const char *const seg[3], size_t nseg)
{
    size_t i;
    size_t used;

    snprintf(dst, EVENTS_PATH_TEXT, "%s", prefix);
    for (i = 0; i < nseg; i++) {
        used = strlen(dst);
        snprintf(dst + used, EVENTS_PATH_TEXT - used, "%s%s", used ? "." : "", seg[i]);
    }
}

/* Finds prefix.seg0.seg1.seg2 under root. *out is NULL when a step is
 * absent or null; a step present with another type than object is an
 * error naming it. */
static enum rz_err walk(json_t *root, const char *const seg[3], const char *prefix, json_t **out,
                        char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    json_t *cur = root;
    size_t i;

    *out = NULL;
    for (i = 0; i < 3; i++) {
        cur = json_object_get(cur, seg[i]);
        if (!cur || json_is_null(cur))
            return RZ_OK;
        if (i < 2 && !json_is_object(cur)) {
            path_text(path, prefix, seg, i + 1);
            msg_set(msg, msglen, "%s must be an object", path);
            return RZ_EINVAL;
        }
    }
    *out = cur;
    return RZ_OK;
}

/* A string field; *out is borrowed from the JSON tree, NULL when absent
 * and not required. */
static enum rz_err field_string(json_t *root, const char *const seg[3], const char *prefix,
                                int required, const char **out, char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    json_t *v;
    enum rz_err err = walk(root, seg, prefix, &v, msg, msglen);

    *out = NULL;
    if (err != RZ_OK)
        return err;
    path_text(path, prefix, seg, 3);
    if (!v && required) {
        msg_set(msg, msglen, "%s is missing", path);
        return RZ_EINVAL;
    }
    if (v && !json_is_string(v)) {
        msg_set(msg, msglen, "%s must be a string", path);
        return RZ_EINVAL;
    }
    if (v)
        *out = json_string_value(v);
    return RZ_OK;
}

static enum rz_err take_bucket(json_t *root, const struct event_shape *sh, const char *prefix,
                               struct event_object *o, char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    const char *s;
    enum rz_err err = field_string(root, sh->bucket, prefix, 1, &s, msg, msglen);

    if (err != RZ_OK)
        return err;
    if (!events_bucket_valid(s)) {
        path_text(path, prefix, sh->bucket, 3);
        msg_set(msg, msglen, "%s is not a valid bucket name", path);
        return RZ_EINVAL;
    }
    o->bucket = strdup(s);
    return o->bucket ? RZ_OK : RZ_ENOMEM;
}

static enum rz_err check_key(const char *key, const char *path, char *msg, size_t msglen)
{
    size_t len = strlen(key);

    if (len == 0) {
        msg_set(msg, msglen, "%s is empty", path);
        return RZ_EINVAL;
    }
    if (len > EVENTS_MAX_KEY) {
        msg_set(msg, msglen, "%s is longer than %d bytes", path, EVENTS_MAX_KEY);
        return RZ_EINVAL;
    }
    if (!events_utf8_valid(key, len)) {
        msg_set(msg, msglen, "%s is not valid UTF-8 once decoded", path);
        return RZ_EINVAL;
    }
    return RZ_OK;
}

static enum rz_err take_key(json_t *root, const struct event_shape *sh, const char *prefix,
                            struct event_object *o, char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    const char *s;
    enum rz_err err = field_string(root, sh->key, prefix, 1, &s, msg, msglen);

    if (err != RZ_OK)
        return err;
    path_text(path, prefix, sh->key, 3);
    if (sh->key_form_encoded)
        o->key = text_url_decode(s, 1);
    else
        o->key = strdup(s);
    if (!o->key) {
        /* strdup fails only on memory; the decoder also on a bad escape */
        if (!sh->key_form_encoded)
            return RZ_ENOMEM;
        msg_set(msg, msglen, "%s has a malformed %%-escape or an encoded NUL", path);
        return RZ_EINVAL;
    }
    if (!sh->key_form_encoded)
        o->try_decoded_key = strpbrk(o->key, "%+") != NULL;
    return check_key(o->key, path, msg, msglen);
}

/* An optional S3 token; absent, null and "" all leave *out NULL (MinIO
 * sends "versionId":"" for unversioned buckets). */
static enum rz_err take_token(json_t *root, const char *const seg[3], const char *prefix,
                              int strip_quotes, char **out, char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    const char *s;
    size_t len;
    enum rz_err err = field_string(root, seg, prefix, 0, &s, msg, msglen);

    if (err != RZ_OK || !s)
        return err;
    len = strlen(s);
    if (strip_quotes)
        s = text_unquote(s, &len);
    if (len == 0)
        return RZ_OK;
    path_text(path, prefix, seg, 3);
    if (len > EVENTS_MAX_FIELD) {
        msg_set(msg, msglen, "%s is longer than %d bytes", path, EVENTS_MAX_FIELD);
        return RZ_EINVAL;
    }
    *out = strndup(s, len);
    if (!*out)
        return RZ_ENOMEM;
    if (!token_valid(*out)) {
        msg_set(msg, msglen, "%s holds characters other than printable ASCII", path);
        return RZ_EINVAL;
    }
    return RZ_OK;
}

/* The size is informational (the job reads the real one from S3), but a
 * negative or fractional size means the sender is not S3: reject it rather
 * than guess. Integers above 2^63-1 already fail in the JSON parser. */
static enum rz_err take_size(json_t *root, const struct event_shape *sh, const char *prefix,
                             struct event_object *o, char *msg, size_t msglen)
{
    char path[EVENTS_PATH_TEXT];
    json_t *v;
    enum rz_err err = walk(root, sh->size, prefix, &v, msg, msglen);

    if (err != RZ_OK || !v)
        return err;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        path_text(path, prefix, sh->size, 3);
        msg_set(msg, msglen, "%s must be a non-negative integer", path);
        return RZ_EINVAL;
    }
    o->size = (uint64_t)json_integer_value(v);
    return RZ_OK;
}

static void object_cleanup(struct event_object *o)
{
    free(o->bucket);
    free(o->key);
    free(o->etag);
    free(o->sequencer);
    free(o->version_id);
    memset(o, 0, sizeof(*o));
}

/* Fills o from one event; on error o is left empty. */
static enum rz_err object_fill(json_t *root, const struct event_shape *sh, const char *prefix,
                               struct event_object *o, char *msg, size_t msglen)
{
    enum rz_err err;

    memset(o, 0, sizeof(*o));
    err = take_bucket(root, sh, prefix, o, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = take_key(root, sh, prefix, o, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = take_token(root, sh->etag, prefix, 1, &o->etag, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = take_token(root, sh->sequencer, prefix, 0, &o->sequencer, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = take_token(root, sh->version_id, prefix, 0, &o->version_id, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = take_size(root, sh, prefix, o, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    return RZ_OK;

fail:
    if (err == RZ_ENOMEM)
        msg_set(msg, msglen, "out of memory while reading the event");
    object_cleanup(o);
    return err;
}

/* Adds an object from root to b, whose array has room for it. */
static enum rz_err batch_add(struct event_batch *b, json_t *root, const struct event_shape *sh,
                             const char *prefix, char *msg, size_t msglen)
{
    enum rz_err err = object_fill(root, sh, prefix, &b->objects[b->nobjects], msg, msglen);

    if (err == RZ_OK)
        b->nobjects++;
    return err;
}

static enum rz_err batch_reserve(struct event_batch *b, size_t n, char *msg, size_t msglen)
{
    if (n == 0)
        return RZ_OK;
    b->objects = calloc(n, sizeof(*b->objects));
    if (b->objects)
        return RZ_OK;
    msg_set(msg, msglen, "out of memory while reading the event");
    return RZ_ENOMEM;
}

static int string_is(json_t *obj, const char *name, const char *want)
{
    const char *s = json_string_value(json_object_get(obj, name));

    return s && strcmp(s, want) == 0;
}

static enum rz_err parse_eventbridge(json_t *root, struct event_batch *b, char *msg,
                                     size_t msglen)
{
    enum rz_err err;

    /* Deletions, restores, tagging and other sources are valid but not ours. */
    if (!string_is(root, "source", "aws.s3") ||
        !string_is(root, "detail-type", "Object Created")) {
        b->ignored++;
        return RZ_OK;
    }
    err = batch_reserve(b, 1, msg, msglen);
    if (err != RZ_OK)
        return err;
    return batch_add(b, root, &shape_eventbridge, "", msg, msglen);
}

/* An optional string member of a record; a present non-string is an error. */
static enum rz_err record_string(json_t *rec, const char *name, const char *prefix,
                                 const char **out, char *msg, size_t msglen)
{
    json_t *v = json_object_get(rec, name);

    *out = NULL;
    if (!v || json_is_null(v))
        return RZ_OK;
    if (!json_is_string(v)) {
        msg_set(msg, msglen, "%s.%s must be a string", prefix, name);
        return RZ_EINVAL;
    }
    *out = json_string_value(v);
    return RZ_OK;
}

static int source_is_s3(const char *source)
{
    size_t i;

    if (!source)
        return 1;
    for (i = 0; i < sizeof(s3_sources) / sizeof(s3_sources[0]); i++) {
        if (strcmp(source, s3_sources[i]) == 0)
            return 1;
    }
    return 0;
}

/* S3 documents that a newer minor only adds fields; a new major may change
 * what the fields mean, so the whole batch is refused rather than guessed. */
static enum rz_err record_check_version(json_t *rec, const char *prefix, char *msg,
                                        size_t msglen)
{
    const char *ver;
    long major;
    long minor;
    enum rz_err err = record_string(rec, "eventVersion", prefix, &ver, msg, msglen);

    if (err != RZ_OK)
        return err;
    if (!ver) {
        msg_set(msg, msglen, "%s.eventVersion is missing", prefix);
        return RZ_EINVAL;
    }
    if (events_parse_version(ver, &major, &minor) < 0 || major != 2) {
        msg_set(msg, msglen, "%s.eventVersion is not a supported version (want 2.x)", prefix);
        return RZ_EINVAL;
    }
    return RZ_OK;
}

static int name_is_created(const char *name)
{
    return strncmp(name, "ObjectCreated:", 14) == 0 ||
           strncmp(name, "s3:ObjectCreated:", 17) == 0;
}

static enum rz_err parse_record(json_t *rec, size_t idx, struct event_batch *b, char *msg,
                                size_t msglen)
{
    char prefix[32];
    const char *source;
    const char *name;
    enum rz_err err;

    snprintf(prefix, sizeof(prefix), "Records[%zu]", idx);
    if (!json_is_object(rec)) {
        b->ignored++;
        return RZ_OK;
    }
    err = record_string(rec, "eventSource", prefix, &source, msg, msglen);
    if (err != RZ_OK)
        return err;
    if (!source_is_s3(source)) {
        b->ignored++;
        return RZ_OK;
    }
    err = record_check_version(rec, prefix, msg, msglen);
    if (err != RZ_OK)
        return err;
    err = record_string(rec, "eventName", prefix, &name, msg, msglen);
    if (err != RZ_OK)
        return err;
    if (!name) {
        msg_set(msg, msglen, "%s.eventName is missing", prefix);
        return RZ_EINVAL;
    }
    if (!name_is_created(name)) {
        b->ignored++;
        return RZ_OK;
    }
    return batch_add(b, rec, &shape_record, prefix, msg, msglen);
}

static enum rz_err parse_records(json_t *records, struct event_batch *b, char *msg,
                                 size_t msglen)
{
    size_t n;
    size_t i;
    enum rz_err err;

    if (!json_is_array(records)) {
        msg_set(msg, msglen, "Records must be an array");
        return RZ_EINVAL;
    }
    n = json_array_size(records);
    if (n > EVENTS_MAX_RECORDS) {
        msg_set(msg, msglen, "Records holds %zu records; the limit is %d", n,
                EVENTS_MAX_RECORDS);
        return RZ_ETOOBIG;
    }
    err = batch_reserve(b, n, msg, msglen);
    for (i = 0; i < n && err == RZ_OK; i++)
        err = parse_record(json_array_get(records, i), i, b, msg, msglen);
    return err;
}

static enum rz_err load_error(const json_error_t *jerr, char *msg, size_t msglen)
{
    switch (json_error_code(jerr)) {
    case json_error_out_of_memory:
        msg_set(msg, msglen, "out of memory while parsing the body");
        return RZ_ENOMEM;
    case json_error_invalid_utf8:
        msg_set(msg, msglen, "body is not valid UTF-8 (byte %d)", jerr->position);
        break;
    case json_error_duplicate_key:
        msg_set(msg, msglen, "body repeats an object key (byte %d)", jerr->position);
        break;
    case json_error_end_of_input_expected:
        msg_set(msg, msglen, "body has data after the JSON value (byte %d)", jerr->position);
        break;
    case json_error_premature_end_of_input:
        msg_set(msg, msglen, "body ends inside the JSON value");
        break;
    case json_error_numeric_overflow:
        msg_set(msg, msglen, "body has a number out of range (byte %d)", jerr->position);
        break;
    case json_error_stack_overflow: msg_set(msg, msglen, "body nests too deeply"); break;
    default:
        msg_set(msg, msglen, "body is not valid JSON: %s (byte %d)", jerr->text, jerr->position);
        break;
    }
    return RZ_EINVAL;
}

static enum rz_err load_body(const char *body, size_t len, json_t **root, char *msg,
                             size_t msglen)
{
    json_error_t jerr;

    *root = NULL;
    if (len > EVENTS_MAX_BODY) {
        msg_set(msg, msglen, "body is %zu bytes; the limit is %d", len, EVENTS_MAX_BODY);
        return RZ_ETOOBIG;
    }
    if (!body || len == 0) {
        msg_set(msg, msglen, "body is empty");
        return RZ_EINVAL;
    }
    /* jansson recurses once per level up to 2048; refuse earlier, as no
     * notification nests more than a handful of levels. */
    if (!events_depth_ok(body, len, EVENTS_MAX_DEPTH)) {
        msg_set(msg, msglen, "body nests deeper than %d levels", EVENTS_MAX_DEPTH);
        return RZ_EINVAL;
    }
    /* Without JSON_DISABLE_EOF_CHECK trailing data is an error; without
     * JSON_ALLOW_NUL a \u0000 in a string is one too. */
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*root)
        return load_error(&jerr, msg, msglen);
    return RZ_OK;
}

static enum rz_err dispatch(json_t *root, struct event_batch *b, char *msg, size_t msglen)
{
    json_t *records = json_object_get(root, "Records");

    if (records)
        return parse_records(records, b, msg, msglen);
    if (json_object_get(root, "detail-type"))
        return parse_eventbridge(root, b, msg, msglen);
    /* s3:TestEvent and every other shape: valid, not ours. */
    b->ignored++;
    return RZ_OK;
}

enum rz_err events_parse(const char *body, size_t len, struct event_batch *out, char *msg,
                         size_t msglen)
{
    json_t *root = NULL;
    enum rz_err err;

    memset(out, 0, sizeof(*out));
    msg_set(msg, msglen, "%s", "");
    err = load_body(body, len, &root, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    err = dispatch(root, out, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    json_decref(root);
    return RZ_OK;

fail:
    json_decref(root);
    events_batch_cleanup(out);
    return err;
}

/* Which key the prefix applies to: the decoded one, or for an EventBridge
 * key that may be encoded, the raw one. A prefix free of '%' and '+' that
 * matches the raw key also matches its decoded form, so either way the job
 * stays under the prefix. */
static int object_wanted(const struct event_object *o, const char *src_bucket,
                         const char *src_prefix, const char *dest_bucket)
{
    if (src_bucket && strcmp(o->bucket, src_bucket) != 0)
        return 0;
    if (dest_bucket && strcmp(o->bucket, dest_bucket) == 0)
        return 0;
    if (src_prefix && strncmp(o->key, src_prefix, strlen(src_prefix)) != 0)
        return 0;
    return 1;
}

size_t events_filter(struct event_batch *b, const char *src_bucket, const char *src_prefix,
                     const char *dest_bucket)
{
    size_t kept = 0;
    size_t removed = 0;
    size_t i;

    for (i = 0; i < b->nobjects; i++) {
        if (object_wanted(&b->objects[i], src_bucket, src_prefix, dest_bucket)) {
            b->objects[kept++] = b->objects[i];
            continue;
        }
        object_cleanup(&b->objects[i]);
        removed++;
    }
    /* the tail holds stale copies of moved objects: clear them */
    if (removed)
        memset(b->objects + kept, 0, removed * sizeof(*b->objects));
    b->nobjects = kept;
    b->ignored += removed;
    return removed;
}

void events_batch_cleanup(struct event_batch *b)
{
    size_t i;

    for (i = 0; i < b->nobjects; i++)
        object_cleanup(&b->objects[i]);
    free(b->objects);
    b->objects = NULL;
    b->nobjects = 0;
    b->ignored = 0;
}
