/* keys.h - the object keys the service writes, in one place.
 *
 * A source key images/cats/a.png becomes desktop/cats/a.png (extension
 * following the output format), and its status records are
 * _status/keys/cats/a.png and _status/ids/<id>. Deterministic, so
 * reprocessing overwrites instead of duplicating, and any replica can
 * find what another wrote. */
#ifndef RESIZER_KEYS_H
#define RESIZER_KEYS_H

#include "image.h"

#define KEYS_STATUS_BY_KEY "_status/keys/"
#define KEYS_STATUS_BY_ID "_status/ids/"

/* The part of key after prefix, or key itself when it does not start with
 * prefix. Borrowed from key. */
const char *keys_relative(const char *prefix, const char *key);

/* "<variant>/<relative key>", its extension replaced by the format's unless
 * it already names that format (.jpg/.jpeg for JPEG, ...). Caller frees;
 * NULL if out of memory. */
char *keys_variant(const char *prefix, const char *key, const char *variant,
                   enum image_format format);

/* "<prefix><id>.<ext>": where an upload URL lets a client put its file
 * (images/<uuid>.jpg). Caller frees; NULL if out of memory. */
char *keys_upload(const char *prefix, const char *id, enum image_format format);

/* "_status/keys/<relative key>". Caller frees. */
char *keys_status_by_key(const char *prefix, const char *key);

/* "_status/ids/<id>". Caller frees. */
char *keys_status_by_id(const char *id);

#endif
