/* outbox_dynamodb.c - the shared outbox: deliveries as items of the state
 * table, so they survive the replica that queued them.
 *
 * Item (pk "o#<msg_id>#<endpoint>"): b (the body, signed anew on every
 * attempt), ep, att (attempts made), cr (created ms), fl ("o") and lease
 * (ms), ttl (seconds). lease is the time the delivery is next due, or, while
 * a replica holds it, the end of that replica's lease: fl and lease put
 * every delivery in the table's sparse in_flight index (partition "o", apart
 * from records' "1"), so one Query in lease order finds the due ones, and a
 * delivery whose replica died is due again when its lease ends.
 *
 * Leasing is a conditional write on the lease value the index showed: of
 * two replicas that saw the same delivery, one wins. own and the new lease
 * value are the lease token: settling is conditional on both, so a holder
 * whose lease ran out (and was taken over) changes nothing. Adding is
 * conditional on the item being new: message ids are derived from the
 * image's outcome, so a replayed notification is stored once. */
#include "outbox.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dynamodb.h"
#include "ids.h"
#include "log.h"

#define OBX_PAGE 25                    /* due deliveries looked at per lease */
#define OBX_TTL_S (3 * 24 * 3600)      /* past the whole retry schedule */
#define OBX_POLL_MS 5000               /* other replicas add and die unseen */
#define OBX_DEPTH_CACHE_MS 5000        /* a scrape must not cost a Query each */
#define OBX_MAX_ATTEMPTS 1000
#define OBX_RACE_WAIT_MS 200           /* the index catches up with a lost race */

struct outbox_ddb {
    struct outbox base;
    struct ddb *ddb;
    char *table;
    char owner[IDS_UUID_LEN + 1];
    int64_t lease_ms;
    pthread_mutex_t lock;          /* guards the depth cache */
    size_t depth;
    int64_t depth_at_ms;
};

static struct outbox_ddb *od(struct outbox *o)
{
    return (struct outbox_ddb *)o;
}

static enum rz_err obx_do(struct outbox *o, const char *op, json_t *req, json_t **resp)
{
    return ddb_send(od(o)->ddb, op, req, resp, "outbox_error");
}

static void obx_pk(const struct outbox_delivery *d, char *out, size_t len)
{
    snprintf(out, len, "o#%s#%zu", d->msg_id, d->endpoint);
}

/* The msg_id and endpoint of "o#<msg_id>#<n>", checked: keys come back
 * from a table other writers share. */
static int obx_parse_pk(const char *pk, struct outbox_delivery *d)
{
    const char *hash = pk ? strrchr(pk, '#') : NULL;
    size_t idlen = hash ? (size_t)(hash - pk) - 2 : 0;
    char *end = NULL;
    unsigned long ep;

    if (!hash || strncmp(pk, "o#", 2) != 0 || hash < pk + 3 || idlen >= OUTBOX_MSG_ID_MAX ||
        strspn(pk + 2, "abcdefghijklmnopqrstuvwxyz0123456789_") < idlen || !hash[1] ||
        strspn(hash + 1, "0123456789") != strlen(hash + 1) || strlen(hash + 1) > 2)
        return 0;
    ep = strtoul(hash + 1, &end, 10);
    if (ep >= 32)
        return 0;
    memcpy(d->msg_id, pk + 2, idlen);
    d->msg_id[idlen] = '\0';
    d->endpoint = ep;
    return 1;
}

/* Every replica's deliveries, counted from one page of the index (1 MB of
 * keys, tens of thousands). Called by the delivery threads as they look
 * for work, at most every OBX_DEPTH_CACHE_MS: the depth gauge is read
 * under the metrics lock, which a DynamoDB call takes too. */
static void obx_count(struct outbox *o, int64_t now_ms)
{
    struct outbox_ddb *x = od(o);
    json_t *resp = NULL;
    int due;

    pthread_mutex_lock(&x->lock);
    due = now_ms - x->depth_at_ms >= OBX_DEPTH_CACHE_MS;
    if (due)
        x->depth_at_ms = now_ms;
    pthread_mutex_unlock(&x->lock);
    if (!due)
        return;
    if (obx_do(o, "Query",
               json_pack("{s:s,s:s,s:s,s:{s:o},s:s}", "TableName", x->table, "IndexName",
                         "in_flight", "KeyConditionExpression", "fl = :o",
                         "ExpressionAttributeValues", ":o", ddb_s("o"), "Select", "COUNT"),
               &resp) == RZ_OK) {
        json_int_t n = json_integer_value(json_object_get(resp, "Count"));

        pthread_mutex_lock(&x->lock);
        x->depth = n > 0 ? (size_t)n : 0;
        pthread_mutex_unlock(&x->lock);
    }
    json_decref(resp);
}

static size_t obx_depth(struct outbox *o)
{
    struct outbox_ddb *x = od(o);
    size_t depth;

    pthread_mutex_lock(&x->lock);
    depth = x->depth;
    pthread_mutex_unlock(&x->lock);
    return depth;
}

/* A delivery settled for good: count again at the next look. */
static void obx_recount(struct outbox *o)
{
    pthread_mutex_lock(&od(o)->lock);
    od(o)->depth_at_ms = INT64_MIN / 2;
    pthread_mutex_unlock(&od(o)->lock);
}

static enum rz_err obx_add(struct outbox *o, const struct outbox_delivery *d, size_t *dropped_out)
{
    char pk[OUTBOX_MSG_ID_MAX + 16];
    enum rz_err err;

    *dropped_out = 0;
    obx_pk(d, pk, sizeof(pk));
    err = obx_do(o, "PutItem",
                 json_pack("{s:s,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:s}", "TableName",
                           od(o)->table, "Item", "pk", ddb_s(pk), "b", ddb_s(d->body), "ep",
                           ddb_n((int64_t)d->endpoint), "att", ddb_n(d->attempts), "cr",
                           ddb_n(d->created_ms), "fl", ddb_s("o"), "lease", ddb_n(d->due_ms),
                           "ttl", ddb_n(d->created_ms / 1000 + OBX_TTL_S),
                           "ConditionExpression", "attribute_not_exists(pk)"),
                 NULL);
    obx_recount(o);
    /* Already stored: the same outcome notified twice (a replayed finish). */
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

/* Removes an item of the outbox's partition that is not a delivery (a key
 * or body of another shape: the table is shared with other writers), if it
 * still holds lease value lease: left there, it would come first in every
 * look, and enough of them would hide the real deliveries behind. */
static void obx_discard(struct outbox *o, const char *pk, int64_t lease)
{
    log_fields(LOG_WARN, "outbox_bad_item", json_pack("{s:s}", "pk", pk ? pk : ""));
    if (!pk || !*pk)
        return;
    obx_do(o, "DeleteItem",
           json_pack("{s:s,s:{s:o},s:s,s:{s:s},s:{s:o,s:o}}", "TableName", od(o)->table, "Key",
                     "pk", ddb_s(pk), "ConditionExpression", "fl = :o AND #l = :l",
                     "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                     ":o", ddb_s("o"), ":l", ddb_n(lease)),
           NULL);
}

/* Takes the lease of the delivery under pk, seen due with lease value seen,
 * into *out. RZ_ECONFLICT when another replica took it first. */
static enum rz_err obx_take(struct outbox *o, const char *pk, int64_t seen, int64_t now_ms,
                            struct outbox_delivery *out)
{
    int64_t until = now_ms + od(o)->lease_ms;
    json_t *resp = NULL;
    const json_t *item;
    const char *body;
    int64_t att;
    enum rz_err err = obx_do(
        o, "UpdateItem",
        json_pack("{s:s,s:{s:o},s:s,s:s,s:{s:s},s:{s:o,s:o,s:o},s:s}", "TableName", od(o)->table,
                  "Key", "pk", ddb_s(pk), "UpdateExpression", "SET #l = :until, own = :me",
                  "ConditionExpression", "attribute_exists(pk) AND #l = :seen",
                  "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                  ":until", ddb_n(until), ":me", ddb_s(od(o)->owner), ":seen", ddb_n(seen),
                  "ReturnValues", "ALL_NEW"),
        &resp);

    item = json_object_get(resp, "Attributes");
    body = ddb_get_s(item, "b");
    att = ddb_get_n(item, "att");
    if (err == RZ_OK && (!body || att < 0 || att > OBX_MAX_ATTEMPTS)) {
        obx_discard(o, pk, until);
        err = RZ_EUPSTREAM;
    }
    if (err == RZ_OK) {
        out->body = strdup(body);
        err = out->body ? RZ_OK : RZ_ENOMEM;
    }
    if (err == RZ_OK) {
        out->body_len = strlen(body);
        out->attempts = (int)att;
        out->created_ms = ddb_get_n(item, "cr");
        out->due_ms = seen;
        out->ref = (uint64_t)until;
    }
    json_decref(resp);
    return err;
}

/* Deliveries in lease order: the due ones first, then the next due. */
static enum rz_err obx_query(struct outbox *o, json_t **resp)
{
    return obx_do(o, "Query",
                  json_pack("{s:s,s:s,s:s,s:{s:o},s:b,s:i}", "TableName", od(o)->table,
                            "IndexName", "in_flight", "KeyConditionExpression", "fl = :o",
                            "ExpressionAttributeValues", ":o", ddb_s("o"), "ScanIndexForward",
                            1, "Limit", OBX_PAGE),
                  resp);
}

static enum rz_err obx_lease(struct outbox *o, int64_t now_ms, uint32_t skip,
                             struct outbox_delivery *out, int64_t *next_due_out)
{
    json_t *resp = NULL;
    const json_t *item;
    enum rz_err err, taken = RZ_ENOTFOUND;
    size_t i;

    memset(out, 0, sizeof(*out));
    *next_due_out = now_ms + OBX_POLL_MS;
    obx_count(o, now_ms);
    err = obx_query(o, &resp);
    json_array_foreach(json_object_get(resp, "Items"), i, item) {
        int64_t lease = ddb_get_n(item, "lease");

        if (err != RZ_OK || taken == RZ_OK)
            break;
        if (!obx_parse_pk(ddb_get_s(item, "pk"), out)) {
            obx_discard(o, ddb_get_s(item, "pk"), lease);
            continue;
        }
        if ((skip >> out->endpoint) & 1u)
            continue;
        if (lease > now_ms) {
            if (lease < *next_due_out)
                *next_due_out = lease;
            break;
        }
        taken = obx_take(o, ddb_get_s(item, "pk"), lease, now_ms, out);
        if (taken == RZ_ENOMEM)
            break;
        /* Another replica won that one: the rest of the page may be free. */
        if (taken == RZ_ECONFLICT && now_ms + OBX_RACE_WAIT_MS < *next_due_out)
            *next_due_out = now_ms + OBX_RACE_WAIT_MS;
    }
    json_decref(resp);
    if (taken != RZ_OK) {
        outbox_delivery_cleanup(out);
        return err == RZ_ENOMEM || taken == RZ_ENOMEM ? RZ_ENOMEM : RZ_ENOTFOUND;
    }
    return RZ_OK;
}

static void obx_settle(struct outbox *o, const struct outbox_delivery *d, int64_t retry_at_ms)
{
    char pk[OUTBOX_MSG_ID_MAX + 16];
    const char *cond = "own = :me AND #l = :tok";
    json_t *req;

    obx_pk(d, pk, sizeof(pk));
    if (retry_at_ms < 0)
        req = json_pack("{s:s,s:{s:o},s:s,s:{s:s},s:{s:o,s:o}}", "TableName", od(o)->table,
                        "Key", "pk", ddb_s(pk), "ConditionExpression", cond,
                        "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                        ":me", ddb_s(od(o)->owner), ":tok", ddb_n((int64_t)d->ref));
    else
        req = json_pack("{s:s,s:{s:o},s:s,s:s,s:{s:s},s:{s:o,s:o,s:o,s:o}}", "TableName",
                        od(o)->table, "Key", "pk", ddb_s(pk), "UpdateExpression",
                        "SET #l = :due, att = :att REMOVE own", "ConditionExpression", cond,
                        "ExpressionAttributeNames", "#l", "lease", "ExpressionAttributeValues",
                        ":me", ddb_s(od(o)->owner), ":tok", ddb_n((int64_t)d->ref), ":due",
                        ddb_n(retry_at_ms), ":att", ddb_n(d->attempts));
    /* A failed condition: our lease ran out and another replica holds the
     * delivery now; it is theirs to settle. */
    if (retry_at_ms < 0)
        obx_recount(o);
    if (obx_do(o, retry_at_ms < 0 ? "DeleteItem" : "UpdateItem", req, NULL) == RZ_ECONFLICT)
        log_fields(LOG_INFO, "outbox_lease_lost",
                   json_pack("{s:s,s:I}", "msg_id", d->msg_id, "endpoint", (json_int_t)d->endpoint));
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
    obx_add, obx_lease, obx_settle, obx_depth, obx_free,
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
