/* index.h - the in-memory index of status records.
 *
 * Entries are found by id and by (bucket, key), and listed newest first.
 * Readers get deep copies under a read lock; writers change entries under
 * the write lock through short callbacks; no lock is ever held during I/O.
 * The size is bounded: when full, the oldest finished entry (done, failed,
 * or pending past its upload URL's expiry) is evicted, then the oldest
 * pending one (an upload URL handed out must never block event intake: its
 * event recreates the entry from the key); queued and processing entries
 * never are. */
#ifndef RESIZER_INDEX_H
#define RESIZER_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "image.h"
#include "metrics.h"

#define INDEX_ID_LEN 36 /* a lowercase UUID */
#define INDEX_CODE_MAX 32
#define INDEX_OWNER_MAX 40 /* a replica id */

enum index_state {
    INDEX_PENDING = 0, /* upload URL handed out, nothing seen yet */
    INDEX_QUEUED,
    INDEX_PROCESSING,
    INDEX_DONE,
    INDEX_FAILED,
    INDEX_NSTATES,
};

/* One stored file of a variant: the same pixels in one format. */
struct index_file {
    enum image_format format;
    char *key;
    uint64_t bytes;
};

/* A variant; key, content_type and bytes are those of its first file
 * (the first of OUTPUT_FORMATS), so a client that knows one format finds
 * it where it always was. */
struct index_variant {
    char name[IMAGE_VARIANT_NAME_MAX];
    char *key;
    char *content_type;
    int width;
    int height;
    uint64_t bytes;
    struct index_file *files; /* every stored format; NULL with nfiles 0 */
    size_t nfiles;
};

/* A status record. Strings are owned by the entry (NULL when unknown). */
struct index_entry {
    char id[INDEX_ID_LEN + 1];
    enum index_state state;
    char *bucket;
    char *key;
    char *filename;     /* given to POST /v1/uploads */
    char *content_type; /* declared at upload */
    char *etag;         /* of the source object */
    char *sequencer;    /* S3's ordering token of the last event */
    uint64_t bytes;
    char format[16]; /* "jpeg", ... ; "" until read */
    int width;
    int height;
    struct index_variant variants[IMAGE_MAX_VARIANTS];
    size_t nvariants;
    char *blurhash;                  /* placeholder of a done image; NULL before */
    char dominant[8];                /* "#rrggbb"; "" before */
    char error_code[INDEX_CODE_MAX]; /* "" when none */
    char *error_message;
    int attempts;        /* every run of the record, as clients see it */
    int runs;            /* runs of the current object since it was queued anew (an
                          * event, a newer object, a retry): what retries and lost
                          * workers are bounded by; not in the record clients read */
    int lost;            /* runs of the current object whose replica died (lease ran
                          * out while processing), counted with runs */
    int rerun;           /* a newer object arrived while processing */
    int try_decoded_key; /* see struct event_object */
    int64_t created_ms;  /* Unix time in milliseconds */
    int64_t updated_ms;
    int64_t started_ms;
    int64_t finished_ms;
    int64_t upload_expires_ms; /* pending only: when the upload URL expires */
    int64_t cached_ms;         /* when read from another replica's S3 record; 0 if ours */
    uint64_t seq;              /* insertion order; the listing cursor */
    char *uploader;            /* who asked for the upload URL; NULL: none */
    /* Kept by the store beside the record, not in its JSON: */
    uint64_t version;            /* bumped by every change; writes are conditional on it */
    char owner[INDEX_OWNER_MAX]; /* replica holding the job ("": nobody) */
    int64_t lease_ms;            /* queued/processing: the claim lapses after this */
};

struct index;

/* Returns an empty index holding at most max_entries, or NULL. */
struct index *index_new(size_t max_entries);

/* NULL is a no-op. */
void index_free(struct index *idx);

/* Inserts a copy of e, replacing any entry with the same id (and the
 * same bucket/key), unless that entry has a greater version (e is then
 * older: kept out, RZ_OK), or e has version 0 (a copy read from S3) and
 * that entry has a version (a record of the store): kept out too.
 * RZ_EFULL when full of unfinished entries. */
enum rz_err index_put(struct index *idx, const struct index_entry *e);

/* Copies the entry with this id into *out (release with
 * index_entry_cleanup). RZ_ENOTFOUND if none. */
enum rz_err index_get(struct index *idx, const char *id, struct index_entry *out);

/* Same, by bucket and key. */
enum rz_err index_get_by_key(struct index *idx, const char *bucket, const char *key,
                             struct index_entry *out);

/* Runs fn on the entry with this id under the write lock; fn must be quick
 * and must not call the index. Returns fn's result, or RZ_ENOTFOUND. */
typedef enum rz_err (*index_update_fn)(struct index_entry *e, void *arg);
enum rz_err index_update(struct index *idx, const char *id, index_update_fn fn, void *arg);

/* Inserts a copy of e only if no entry has its id or its (bucket, key):
 * RZ_ECONFLICT otherwise, RZ_EFULL when full of unfinished entries. */
enum rz_err index_insert_new(struct index *idx, const struct index_entry *e);

/* Replaces the entry with e's id by a copy of e if that entry's version is
 * expected_version (a compare-and-swap; its key may change). RZ_ENOTFOUND,
 * RZ_ECONFLICT when the version moved on. */
enum rz_err index_replace(struct index *idx, const struct index_entry *e,
                          uint64_t expected_version);

/* Ids of queued or processing entries whose lease ended before now_ms, at
 * most max of them, into ids_out. */
size_t index_expired(struct index *idx, int64_t now_ms, size_t max,
                     char (*ids_out)[INDEX_ID_LEN + 1]);

/* Copies up to limit entries, newest first, with seq below before_seq (0:
 * from the newest), in state `state` (-1: any), made for uploader (NULL:
 * anyone's), into out (an array of
 * limit entries; release each with index_entry_cleanup). *n_out gets the
 * count and *next_out the cursor for the next page (0 when none). */
enum rz_err index_list(struct index *idx, int state, const char *uploader, uint64_t before_seq,
                       size_t limit, struct index_entry *out, size_t *n_out, uint64_t *next_out);

/* Counts entries by state into counts[INDEX_NSTATES]; returns the total. */
size_t index_count(struct index *idx, size_t counts[INDEX_NSTATES]);

/* Registers resizer_index_entries{state=...} (read at each scrape) and
 * resizer_index_capacity. */
enum rz_err index_metrics_register(struct index *idx, struct metrics *m);

/* Deep copy of src into *dst (which is overwritten). */
enum rz_err index_entry_copy(struct index_entry *dst, const struct index_entry *src);

/* Frees the strings of e; safe on a zeroed entry. */
void index_entry_cleanup(struct index_entry *e);

/* The variants and placeholders of a record (index_output.c). Frees them
 * and leaves none; safe on a zeroed entry. */
void index_output_cleanup(struct index_entry *e);

/* Deep-copies src's variants and placeholders into dst, which holds a
 * shallow copy of src: dst's pointers are replaced first, so on RZ_ENOMEM
 * dst owns only what was copied (index_output_cleanup frees it). */
enum rz_err index_output_copy(struct index_entry *dst, const struct index_entry *src);

/* Borrowed views of a job's results as variants: results[0..n) (variant by
 * variant, each variant's formats together, as image_make_variants orders
 * them) and their keys into vars_out (IMAGE_MAX_VARIANTS entries), whose
 * files point into files_out (IMAGE_MAX_VARIANTS * IMAGE_MAX_OUTPUTS).
 * Names, keys and content types are borrowed. Returns the variant count. */
size_t index_output_view(const struct image_result *results, char *const *keys, size_t n,
                         struct index_variant *vars_out, struct index_file *files_out);

/* Replaces e's variants with deep copies of vars[0..n) (files included)
 * and its placeholders with info's (NULL: none). RZ_ENOMEM leaves e with
 * none. */
enum rz_err index_output_take(struct index_entry *e, const struct index_variant *vars, size_t n,
                              const struct image_info *info);

/* The file of variant v in format f, or NULL. Records written before
 * files were listed have one file, the variant's own key. */
const struct index_file *index_variant_file(const struct index_variant *v, enum image_format f);

/* "pending", "queued", ...; NULL-safe. -1 from parse for unknown names. */
const char *index_state_name(enum index_state s);
int index_state_parse(const char *s);

/* The status record as JSON (urls not included; handlers add them), the
 * shape both the API and the record kept in S3 use. NULL if out of memory. */
json_t *index_entry_to_json(const struct index_entry *e);

/* Parses a status record written by index_entry_to_json into *out.
 * RZ_EINVAL if it is not one: the id must be a lowercase UUID, the state
 * known, keys 1..1024 bytes without NUL or control characters (a variant's
 * under "<name>/"), names and codes [a-z0-9_-], sizes 0..5 TiB, at most
 * IMAGE_MAX_VARIANTS variants with distinct names. */
enum rz_err index_entry_from_json(const json_t *j, struct index_entry *out);

/* A status record read back from S3 (len bytes, not NUL-terminated): it is
 * outside input, so besides the checks of index_entry_from_json its source
 * must lie in src_bucket under src_prefix (either NULL: not checked), and
 * record_key must be where it is filed (_status/ids/<its id>, or the
 * by-key name of its source key). A
 * refused record is logged (status_record_rejected, naming record_key) and
 * gives RZ_EINVAL with *out empty. */
enum rz_err index_record_parse(const char *data, size_t len, const char *record_key,
                               const char *src_bucket, const char *src_prefix,
                               struct index_entry *out);

#endif
