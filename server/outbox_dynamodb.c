/* outbox_dynamodb.c - the shared outbox: deliveries as items of the state
 * table, so they survive the replica that queued them.
 *
 * Item (pk "o#<msg_id>#<receiver>"): b (the body, signed anew on every
 * attempt), att (attempts begun), cr (created ms), fl ("o#<receiver>") and
 * lease (ms), ttl (seconds). <receiver> is 16 hex digits of the SHA-256 of
 * the receiver's URL: deliveries follow their receiver, not its place in
 * WEBHOOK_URLS, so replicas whose lists differ during a rolling update never
 * send a message to another receiver, and leave the ones they do not know
 * to the replicas that do (or to the TTL).
 *
 * lease is the time the delivery is next due, or, while a replica holds
 * it, the end of that replica's lease: fl and lease put every delivery in
 * the table's sparse in_flight index, one partition per receiver (apart
 * from records' "1"), so a look at a receiver is one Query in lease order,
 * a receiver that hangs hides nothing of the others, and a delivery whose
 * replica died is due again when its lease ends. Taking a delivery counts
 * its attempt at once (att + 1), so a replica dying mid-attempt still uses
 * one.
 *
 * Taking is a write conditional on the lease value the index showed: of
 * two replicas that saw the same delivery, one wins. own and the new lease
 * value are the lease token: settling is conditional on both, so a holder
 * whose lease ran out (and was taken over) changes nothing. Adding is
 * conditional on the item being new: message ids are derived from the
 * image's outcome, so a replayed notification is stored once. Items in a
 * receiver's partition that are not deliveries of this shape are removed:
 * they would sort first in every look. */
#include "outbox.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "clock.h"
#include "dynamodb.h"
#include "ids.h"
#include "log.h"

#define OBX_PAGE 10               /* deliveries looked at per receiver and look */
#define OBX_TTL_S (3 * 24 * 3600) /* past the next attempt: renewed at each */
#define OBX_POLL_MS 5000          /* other replicas add and die unseen */
#define OBX_DEPTH_CACHE_MS 5000   /* counted again this often */
#define OBX_MAX_ATTEMPTS 1000
#define OBX_RACE_WAIT_MS 200 /* the index catches up with a lost race */
#define OBX_MAX_RECEIVERS 32
#define OBX_PART_LEN 18 /* "o#" and 16 hex digits */
#define OBX_PK_MAX (2 + OUTBOX_MSG_ID_MAX + 1 + 16 + 1)

struct outbox_ddb {
    struct outbox base;
    struct ddb *ddb;
    char *table;
    char owner[IDS_UUID_LEN + 1];
    int64_t lease_ms;
    char parts[OBX_MAX_RECEIVERS][OBX_PART_LEN + 1]; /* fl of each endpoint */
    size_t nparts;
    pthread_mutex_t lock; /* guards what follows */
    size_t next_part;     /* where the next look starts: threads spread */
    int64_t depth;
    int64_t depth_at_ms;
};

/* What a look at the index found of one delivery. */
struct obx_seen {
    const char *pk;
    const char *lease_raw; /* the number as stored: conditions compare it */
    int64_t lease;         /* 0 when not a plain integer: due now */
};

static struct outbox_ddb *od(struct outbox *o)
{
    return (struct outbox_ddb *)o;
}

static enum rz_err obx_do(struct outbox *o, const char *op, json_t *req, json_t **resp)
{
    return ddb_send(od(o)->ddb, op, req, resp, "outbox_error");
}

static json_t *obx_raw_n(const char *raw)
{
    return json_pack("{s:s}", "N", raw);
}

/* A plain non-negative integer of at most 15 digits, else -1: numbers in
 * items other writers can reach are read strictly. */
static int64_t obx_int(const char *raw)
{
    size_t n = raw ? strlen(raw) : 0;

    if (n == 0 || n > 15 || strspn(raw, "0123456789") != n)
        return -1;
    return strtoll(raw, NULL, 10);
}

static const char *obx_raw(const json_t *item, const char *name)
{
    return json_string_value(json_object_get(json_object_get(item, name), "N"));
}

static void obx_pk(struct outbox *o, const char *msg_id, size_t endpoint, char out[OBX_PK_MAX])
{
    snprintf(out, OBX_PK_MAX, "o#%s#%s", msg_id, od(o)->parts[endpoint] + 2);
}

/* The msg_id of a delivery's pk in partition part, or 0 when pk is not
 * exactly what obx_pk makes of a message id and that receiver. */
static int obx_parse_pk(struct outbox *o, const char *pk, size_t endpoint,
                        char msg_id[OUTBOX_MSG_ID_MAX])
{
    const char *rx = od(o)->parts[endpoint] + 2;
    size_t len = pk ? strlen(pk) : 0, idlen;
    char again[OBX_PK_MAX];

    if (len < 2 + 1 + 1 + 16 || strncmp(pk, "o#", 2) != 0 || pk[len - 17] != '#' ||
        strcmp(pk + len - 16, rx) != 0)
        return 0;
    idlen = len - 2 - 17;
    if (idlen >= OUTBOX_MSG_ID_MAX ||
        strspn(pk + 2, "abcdefghijklmnopqrstuvwxyz0123456789_") != idlen)
        return 0;
    memcpy(msg_id, pk + 2, idlen);
    msg_id[idlen] = '\0';
    obx_pk(o, msg_id, endpoint, again);
    return strcmp(again, pk) == 0;
}

/* ---- the depth gauge ---- */

static void obx_depth_add(struct outbox *o, int64_t n)
{
    pthread_mutex_lock(&od(o)->lock);
    od(o)->depth += n;
    if (od(o)->depth < 0)
        od(o)->depth = 0;
    pthread_mutex_unlock(&od(o)->lock);
}

/* Every replica's deliveries to our receivers, counted from one page of
 * each partition, at most every OBX_DEPTH_CACHE_MS (in between, our own
 * adds and removals move it). Called by the delivery threads: the gauge is
 * read under the metrics lock, which a DynamoDB call takes too. */
static void obx_count(struct outbox *o)
{
    struct outbox_ddb *x = od(o);
    int64_t now = clock_wall_ms(), total = 0;
    int due, ok = 1;

    pthread_mutex_lock(&x->lock);
    due = now - x->depth_at_ms >= OBX_DEPTH_CACHE_MS;
    if (due)
        x->depth_at_ms = now;
    pthread_mutex_unlock(&x->lock);
    for (size_t i = 0; due && ok && i < x->nparts; i++) {
        json_t *resp = NULL;

        ok = obx_do(o, "Query",
                    json_pack("{s:s,s:s,s:s,s:{s:o},s:s}", "TableName", x->table, "IndexName",
                              "in_flight", "KeyConditionExpression", "fl = :p",
                              "ExpressionAttributeValues", ":p", ddb_s(x->parts[i]), "Select",
                              "COUNT"),
                    &resp) == RZ_OK;
        total += json_integer_value(json_object_get(resp, "Count"));
        json_decref(resp);
    }
    if (due && ok) {
        pthread_mutex_lock(&x->lock);
        x->depth = total > 0 ? total : 0;
        pthread_mutex_unlock(&x->lock);
    }
}

static size_t obx_depth(struct outbox *o)
{
    size_t depth;

    pthread_mutex_lock(&od(o)->lock);
    depth = (size_t)od(o)->depth;
    pthread_mutex_unlock(&od(o)->lock);
    return depth;
}

/* ---- add, take, settle ---- */

static enum rz_err obx_add(struct outbox *o, const struct outbox_delivery *d,
                           size_t *dropped_out)
{
    char pk[OBX_PK_MAX];
    enum rz_err err;

    *dropped_out = 0;
    if (d->endpoint >= od(o)->nparts)
        return RZ_EINVAL;
    obx_pk(o, d->msg_id, d->endpoint, pk);
    err = obx_do(o, "PutItem",
                 json_pack("{s:s,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:s}", "TableName",
                           od(o)->table, "Item", "pk", ddb_s(pk), "b", ddb_s(d->body), "att",
                           ddb_n(d->attempts), "cr", ddb_n(d->created_ms), "fl",
                           ddb_s(od(o)->parts[d->endpoint]), "lease", ddb_n(d->due_ms), "ttl",
                           ddb_n(d->due_ms / 1000 + OBX_TTL_S), "ConditionExpression",
                           "attribute_not_exists(pk)"),
                 NULL);
    if (err == RZ_OK)
        obx_depth_add(o, 1);
    /* Already stored: the same outcome notified twice (a replayed finish). */
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

/* Removes an item of a receiver's partition that is not a delivery (a key
 * or body of another shape: the table is shared with other writers), if
 * it still holds the lease value it was seen with. */
static void obx_discard(struct outbox *o, const char *pk, const char *lease_raw)
{
    log_fields(LOG_WARN, "outbox_bad_item", json_pack("{s:s}", "pk", pk ? pk : ""));
    if (!pk || !*pk || !lease_raw)
        return;
    obx_do(o, "DeleteItem",
           json_pack("{s:s,s:{s:o},s:s,s:{s:s},s:{s:o}}", "TableName", od(o)->table, "Key", "pk",
                     ddb_s(pk), "ConditionExpression", "#l = :l", "ExpressionAttributeNames",
                     "#l", "lease", "ExpressionAttributeValues", ":l", obx_raw_n(lease_raw)),
           NULL);
}

/* The item after a take: the answer's Attributes, or, when the condition
 * failed, the item as it is if it shows our own take (a retried write whose
 * first answer was lost: dynamodb.h). NULL when another replica has it. */
static const json_t *obx_taken_item(struct outbox *o, enum rz_err err, const json_t *resp,
                                    int64_t until)
{
    const json_t *item = json_object_get(resp, "Item");
    const char *own = ddb_get_s(item, "own");

    if (err == RZ_OK)
        return json_object_get(resp, "Attributes");
    if (err != RZ_ECONFLICT || !own || strcmp(own, od(o)->owner) != 0 ||
        obx_int(obx_raw(item, "lease")) != until)
        return NULL;
    return item;
}

/* Fills *out from a taken item; 0 when the item is not a delivery. */
static int obx_fill(const json_t *item, int64_t seen, int64_t until, struct outbox_delivery *out)
{
    const char *body = ddb_get_s(item, "b");
    int64_t att = obx_int(obx_raw(item, "att"));
    int64_t cr = obx_int(obx_raw(item, "cr"));

    if (!body || att < 1 || att > OBX_MAX_ATTEMPTS)
        return 0;
    out->body = strdup(body);
    if (!out->body)
        return 0;
    out->body_len = strlen(body);
    out->attempts = (int)(att - 1); /* this one is counted when it is made */
    out->created_ms = cr > 0 ? cr : 0;
    out->due_ms = seen;
    out->ref = (uint64_t)until;
    return 1;
}

/* Takes the lease of the delivery s (to endpoint, named msg_id in *out)
 * into *out. RZ_ECONFLICT when another replica took it first. */
static enum rz_err obx_take(struct outbox *o, const struct obx_seen *s,
                            struct outbox_delivery *out)
{
    /* Read now, not at the start of the look: the calls before this one
     * may have taken seconds, and the lease must be ours for its length. */
    int64_t until = clock_wall_ms() + od(o)->lease_ms;
    json_t *resp = NULL;
    const json_t *item;
    enum rz_err err = obx_do(
        o, "UpdateItem",
        json_pack("{s:s,s:{s:o},s:s,s:s,s:{s:s},s:{s:o,s:o,s:o,s:o,s:o},s:s,s:s}", "TableName",
                  od(o)->table, "Key", "pk", ddb_s(s->pk), "UpdateExpression",
                  "SET #l = :until, own = :me, att = if_not_exists(att, :zero) + :one",
                  "ConditionExpression", "attribute_exists(pk) AND #l = :seen",
                  "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                  ":until", ddb_n(until), ":me", ddb_s(od(o)->owner), ":seen",
                  obx_raw_n(s->lease_raw), ":zero", ddb_n(0), ":one", ddb_n(1), "ReturnValues",
                  "ALL_NEW", "ReturnValuesOnConditionCheckFailure", "ALL_OLD"),
        &resp);

    item = obx_taken_item(o, err, resp, until);
    if (item && obx_fill(item, s->lease, until, out))
        err = RZ_OK;
    else if (item) {
        char raw[24];

        snprintf(raw, sizeof(raw), "%" PRId64, until);
        obx_discard(o, s->pk, raw);
        err = RZ_EUPSTREAM;
    } else if (err == RZ_OK) {
        err = RZ_EUPSTREAM; /* an answer without the item */
    }
    json_decref(resp);
    return err;
}

/* One look at endpoint's partition: takes its earliest due delivery into
 * *out (RZ_OK), or lowers *next_due to when one is due (RZ_ENOTFOUND). */
static enum rz_err obx_look(struct outbox *o, size_t endpoint, int64_t now_ms,
                            struct outbox_delivery *out, int64_t *next_due)
{
    json_t *resp = NULL;
    const json_t *item;
    enum rz_err err, taken = RZ_ENOTFOUND;
    size_t i;

    err = obx_do(o, "Query",
                 json_pack("{s:s,s:s,s:s,s:{s:o},s:b,s:i}", "TableName", od(o)->table,
                           "IndexName", "in_flight", "KeyConditionExpression", "fl = :p",
                           "ExpressionAttributeValues", ":p", ddb_s(od(o)->parts[endpoint]),
                           "ScanIndexForward", 1, "Limit", OBX_PAGE),
                 &resp);
    json_array_foreach(json_object_get(resp, "Items"), i, item)
    {
        struct obx_seen s = {ddb_get_s(item, "pk"), obx_raw(item, "lease"), 0};

        if (err != RZ_OK || taken == RZ_OK || taken == RZ_ENOMEM)
            break;
        if (!s.lease_raw || !obx_parse_pk(o, s.pk, endpoint, out->msg_id)) {
            obx_discard(o, s.pk, s.lease_raw);
            continue;
        }
        s.lease = obx_int(s.lease_raw) < 0 ? 0 : obx_int(s.lease_raw);
        if (s.lease > now_ms) {
            if (s.lease < *next_due)
                *next_due = s.lease;
            break;
        }
        out->endpoint = endpoint;
        taken = obx_take(o, &s, out);
        /* Another replica won that one: the rest of the page may be free. */
        if (taken == RZ_ECONFLICT && now_ms + OBX_RACE_WAIT_MS < *next_due)
            *next_due = now_ms + OBX_RACE_WAIT_MS;
    }
    json_decref(resp);
    return taken == RZ_OK || taken == RZ_ENOMEM ? taken : RZ_ENOTFOUND;
}

static enum rz_err obx_lease(struct outbox *o, int64_t now_ms, uint32_t skip,
                             struct outbox_delivery *out, int64_t *next_due_out)
{
    struct outbox_ddb *x = od(o);
    enum rz_err err = RZ_ENOTFOUND;
    size_t start;

    memset(out, 0, sizeof(*out));
    *next_due_out = now_ms + OBX_POLL_MS;
    obx_count(o);
    pthread_mutex_lock(&x->lock);
    start = x->next_part++;
    pthread_mutex_unlock(&x->lock);
    for (size_t k = 0; k < x->nparts && err == RZ_ENOTFOUND; k++) {
        size_t ep = (start + k) % x->nparts;

        if (ep < 32 && (skip >> ep) & 1u)
            continue;
        err = obx_look(o, ep, now_ms, out, next_due_out);
    }
    if (err != RZ_OK)
        outbox_delivery_cleanup(out);
    return err;
}

static void obx_settle(struct outbox *o, const struct outbox_delivery *d, int64_t retry_at_ms)
{
    char pk[OBX_PK_MAX];
    const char *cond = "own = :me AND #l = :tok";
    json_t *req;
    enum rz_err err;

    if (d->endpoint >= od(o)->nparts)
        return;
    obx_pk(o, d->msg_id, d->endpoint, pk);
    if (retry_at_ms < 0)
        req = json_pack("{s:s,s:{s:o},s:s,s:{s:s},s:{s:o,s:o}}", "TableName", od(o)->table,
                        "Key", "pk", ddb_s(pk), "ConditionExpression", cond,
                        "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                        ":me", ddb_s(od(o)->owner), ":tok", ddb_n((int64_t)d->ref));
    else
        req = json_pack("{s:s,s:{s:o},s:s,s:s,s:{s:s,s:s},s:{s:o,s:o,s:o,s:o,s:o}}", "TableName",
                        od(o)->table, "Key", "pk", ddb_s(pk), "UpdateExpression",
                        "SET #l = :due, att = :att, #t = :ttl REMOVE own", "ConditionExpression",
                        cond, "ExpressionAttributeNames", "#l", "lease", "#t", "ttl",
                        "ExpressionAttributeValues", ":me", ddb_s(od(o)->owner), ":tok",
                        ddb_n((int64_t)d->ref), ":due", ddb_n(retry_at_ms), ":att",
                        ddb_n(d->attempts), ":ttl", ddb_n(retry_at_ms / 1000 + OBX_TTL_S));
    err = obx_do(o, retry_at_ms < 0 ? "DeleteItem" : "UpdateItem", req, NULL);
    if (err == RZ_OK && retry_at_ms < 0)
        obx_depth_add(o, -1);
    /* A failed condition: our lease ran out and another replica holds the
     * delivery now; it is theirs to settle. */
    if (err == RZ_ECONFLICT)
        log_fields(LOG_INFO, "outbox_lease_lost",
                   json_pack("{s:s,s:I}", "msg_id", d->msg_id, "endpoint",
                             (json_int_t)d->endpoint));
}

/* ---- lifecycle ---- */

/* "o#" and 16 hex digits of SHA-256(url). */
static enum rz_err obx_part(const char *url, char out[OBX_PART_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(url, strlen(url), md, &mdlen, EVP_sha256(), NULL) || mdlen < 8)
        return RZ_ENOMEM;
    memcpy(out, "o#", 2);
    for (size_t i = 0; i < 8; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[OBX_PART_LEN] = '\0';
    return RZ_OK;
}

static enum rz_err obx_bind(struct outbox *o, const char *const *urls, size_t n)
{
    struct outbox_ddb *x = od(o);
    enum rz_err err = n <= OBX_MAX_RECEIVERS ? RZ_OK : RZ_EINVAL;

    for (size_t i = 0; i < n && err == RZ_OK; i++)
        err = obx_part(urls[i], x->parts[i]);
    x->nparts = err == RZ_OK ? n : 0;
    return err;
}

static void obx_free(struct outbox *o)
{
    struct outbox_ddb *x = od(o);

    if (!x)
        return;
    ddb_free(x->ddb);
    free(x->table);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

static const struct outbox_ops outbox_ddb_ops = {
    obx_add, obx_lease, obx_settle, obx_depth, obx_free, obx_bind,
};

enum rz_err outbox_dynamodb_new(const struct ddb_opts *opts, const char *table, long lease_ms,
                                struct outbox **out, char *msg, size_t msglen)
{
    struct outbox_ddb *x = calloc(1, sizeof(*x));
    enum rz_err err = RZ_ENOMEM;

    *out = NULL;
    if (!x || !(x->table = strdup(table)))
        goto fail;
    pthread_mutex_init(&x->lock, NULL);
    x->depth_at_ms = INT64_MIN / 2;
    err = ddb_new(opts, &x->ddb, msg, msglen);
    if (err != RZ_OK)
        goto fail;
    x->base.ops = &outbox_ddb_ops;
    x->base.poll_ms = OBX_POLL_MS;
    x->base.shared = 1;
    x->lease_ms = lease_ms > 0 ? lease_ms : 60000;
    ids_new_uuid(x->owner);
    *out = &x->base;
    return RZ_OK;
fail:
    if (x && x->table) {
        pthread_mutex_destroy(&x->lock);
        free(x->table);
    }
    free(x);
    return err;
}
