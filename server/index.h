/* index.h - the in-memory index of status records.
 *
 * Entries are found by id and by (bucket, key), and listed newest first.
 * Readers get deep copies under a read lock; writers change entries under
 * the write lock through short callbacks; no lock is ever held during I/O.
 * The size is bounded: when full, the oldest finished entry (done, failed,
 * or pending past its upload URL's expiry) is evicted; queued and
 * processing entries never are. */
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

enum index_state {
    INDEX_PENDING = 0,  /* upload URL handed out, nothing seen yet */
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
    char *filename;          /* given to POST /v1/uploads */
    char *content_type;      /* declared at upload */
    char *etag;              /* of the source object */
    char *sequencer;         /* S3's ordering token of the last event */
    uint64_t bytes;
    char format[16];         /* "jpeg", ... ; "" until read */
    int width;
    int height;
    struct index_variant variants[IMAGE_MAX_VARIANTS];
    size_t nvariants;
    char *blurhash;          /* placeholder of a done image; NULL before */
    char dominant[8];        /* "#rrggbb"; "" before */
    char error_code[INDEX_CODE_MAX];  /* "" when none */
    char *error_message;
    int attempts;
    int rerun;               /* a newer object arrived while processing */
    int try_decoded_key;     /* see struct event_object */
    int64_t created_ms;      /* Unix time in milliseconds */
    int64_t updated_ms;
    int64_t started_ms;
    int64_t finished_ms;
    int64_t upload_expires_ms; /* pending only: when the upload URL expires */
    int64_t cached_ms;       /* when read from another replica's S3 record; 0 if ours */
    uint64_t seq;            /* insertion order; the listing cursor */
};

/* What index_claim decided for an event. */
enum index_claim {
    INDEX_CLAIM_NEW = 0,     /* queue a job for *id_out */
    INDEX_CLAIM_DUPLICATE,   /* already queued, processing or done for this object */
};

struct index;

/* Returns an empty index holding at most max_entries, or NULL. */
struct index *index_new(size_t max_entries);

/* NULL is a no-op. */
void index_free(struct index *idx);

/* Inserts a copy of e, replacing any entry with the same id (and the
 * same bucket/key). RZ_EFULL when full of unfinished entries. */
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

/* Changes the key of the entry with this id (its bucket stays), so that it
 * is found by the new key from now on: a job that found its object under
 * the decoded form of an EventBridge key records the key that exists.
 * RZ_ENOTFOUND, RZ_ENOMEM. */
enum rz_err index_rekey(struct index *idx, const char *id, const char *key);

/* Decides whether an object-created event needs a job, atomically:
 * - no entry for (bucket, key): a new one, queued, with id new_id;
 * - pending or failed: queued;
 * - queued/processing/done with the same etag, or a sequencer not newer
 *   than the one seen: a duplicate;
 * - done with another etag or a newer sequencer: queued again;
 * - processing with a newer object: marked to run again when it ends
 *   (a duplicate for the caller: no second job runs concurrently).
 * The id of the entry goes to id_out. RZ_EFULL when full; RZ_ECONFLICT
 * when a new entry is needed but new_id belongs to another entry. */
enum rz_err index_claim(struct index *idx, const char *bucket, const char *key, const char *etag,
                        const char *sequencer, uint64_t size, int try_decoded_key,
                        const char *new_id, int64_t now_ms, enum index_claim *claim_out,
                        char id_out[INDEX_ID_LEN + 1]);

/* The object of an event, for index_claim_event (strings borrowed). */
struct index_claim_event {
    const char *bucket;
    const char *key;
    const char *etag;
    const char *sequencer;
    uint64_t size;
    int try_decoded_key;
};

/* index_claim, with room saying whether a new job can be queued: without
 * room, an event that is a duplicate is still taken as one, and one that
 * would need a job changes nothing and gets RZ_EFULL. So redeliveries of
 * work already taken are answered even while the queue is full. */
enum rz_err index_claim_event(struct index *idx, const struct index_claim_event *ev, int room,
                              const char *new_id, int64_t now_ms, enum index_claim *claim_out,
                              char id_out[INDEX_ID_LEN + 1]);

/* Copies up to limit entries, newest first, with seq below before_seq (0:
 * from the newest), in state `state` (-1: any), into out (an array of
 * limit entries; release each with index_entry_cleanup). *n_out gets the
 * count and *next_out the cursor for the next page (0 when none). */
enum rz_err index_list(struct index *idx, int state, uint64_t before_seq, size_t limit,
                       struct index_entry *out, size_t *n_out, uint64_t *next_out);

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

/* Replaces e's variants and placeholders with what a job made: results
 * (n of them, variant by variant, each variant's formats together, as
 * image_make_variants orders them), their keys (keys[i] for results[i])
 * and info's BlurHash and dominant colour. RZ_ENOMEM leaves e with none. */
enum rz_err index_output_set(struct index_entry *e, const struct image_result *results,
                             char *const *keys, size_t n, const struct image_info *info);

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
 * RZ_EINVAL if it is not one. */
enum rz_err index_entry_from_json(const json_t *j, struct index_entry *out);

#endif
