/* store_dynamodb.c - the shared store: one DynamoDB table for every
 * replica (deploy/cloudformation.yaml's StateTable declares the same
 * schema resizer --create-table makes; test_deploy compares the two).
 *
 * Items (partition key pk, a string):
 *   <id>              a record: rec (the JSON of index_entry_to_json, so
 *                     fields other modules add travel untouched), ver, st,
 *                     ck (created ms, 13 digits, "#", id: the listing
 *                     order), all ("1"), up (uploader), own, and while
 *                     queued/processing fl ("1") + lease (ms); pending
 *                     uploads carry ttl (seconds) past their URL's expiry.
 *   k#<bucket>/<key>  id: which record an object belongs to (the claim);
 *                     while that record is a pending upload, the same ttl.
 *   l#<name>          own, until, cur: a lease item (the sweep's).
 * Indexes: by_state (st, ck) and by_time (all, ck) for admins' listings,
 * by_uploader (up, ck) for a caller's own (sparse: only records with an
 * uploader); in_flight (fl, lease, keys only) is sparse too: only records
 * in flight carry fl, so finding expired leases costs O(in flight). Every
 * write of a record is conditional on ver; reads of records are strongly
 * consistent (GSI queries cannot be: listings are eventually consistent). */
#include "store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dynamodb.h"
#include "log.h"

#define DDB_TTL_GRACE_S (24 * 3600) /* kept this long past an upload URL's expiry */
#define DDB_CK_LEN (13 + 1 + INDEX_ID_LEN)
#define DDB_LIST_READS 4 /* Query requests one page may take (a filtered listing) */

struct store_ddb {
    struct store base;
    struct ddb *ddb;
    char *table;
};

/* The id this thread's last find_key returned, and whether a get then
 * found its record missing: the next find_key that meets the same id
 * checks the key item (and drops it if dangling), so the check costs a
 * read only where a record was seen gone. Per thread, because a claim's
 * find_key, get and retry run on one thread, and nothing another thread
 * looks up (a flood of unknown ids) can make it forget. */
static __thread char ddb_key_id[INDEX_ID_LEN + 1];
static __thread int ddb_key_id_missing;

static struct store_ddb *sd(struct store *s)
{
    return (struct store_ddb *)s;
}

static enum rz_err ddb_do(struct store *s, const char *op, json_t *req, json_t **resp)
{
    enum rz_err err = ddb_send(sd(s)->ddb, op, req, resp, "store_error");

    /* No table (or a refused request) is the operator's to fix, and from
     * a client's side the store is just not answering. */
    if (err == RZ_ENOTFOUND || err == RZ_EINVAL || err == RZ_ETOOBIG)
        err = RZ_EUPSTREAM;
    return err;
}

static json_t *ddb_key(const char *pk)
{
    return json_pack("{s:o}", "pk", ddb_s(pk));
}

static char *ddb_key_pk(const char *bucket, const char *key)
{
    size_t n = strlen(bucket) + strlen(key) + 4;
    char *pk = malloc(n);

    if (pk)
        snprintf(pk, n, "k#%s/%s", bucket, key);
    return pk;
}

static void ddb_ck(const struct index_entry *e, char out[DDB_CK_LEN + 1])
{
    char buf[64];
    int64_t ms = e->created_ms > 0 && e->created_ms < 10000000000000LL ? e->created_ms : 0;

    snprintf(buf, sizeof(buf), "%013" PRId64 "#%.36s", ms, e->id);
    memcpy(out, buf, DDB_CK_LEN + 1);
}

/* ---- records as items ---- */

/* The ttl (seconds) of a pending upload's items, 0 for every other record:
 * TTL only tidies what no event ever came for. */
static int64_t ddb_ttl(const struct index_entry *e)
{
    if (e->state != INDEX_PENDING || !e->upload_expires_ms)
        return 0;
    return e->upload_expires_ms / 1000 + DDB_TTL_GRACE_S;
}

static json_t *ddb_item(const struct index_entry *e)
{
    json_t *rec = index_entry_to_json(e);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    char ck[DDB_CK_LEN + 1];
    json_t *item;

    json_decref(rec);
    if (!text)
        return NULL;
    ddb_ck(e, ck);
    item = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "pk", ddb_s(e->id), "rec", ddb_s(text),
                     "ver", ddb_n((int64_t)e->version), "st", ddb_s(index_state_name(e->state)),
                     "ck", ddb_s(ck), "all", ddb_s("1"), "rerun", ddb_n(e->rerun), "tdk",
                     ddb_n(e->try_decoded_key));
    free(text);
    if (!item)
        return NULL;
    if (e->sequencer)
        json_object_set_new(item, "seqr", ddb_s(e->sequencer));
    if (e->runs)
        json_object_set_new(item, "runs", ddb_n(e->runs));
    if (e->lost)
        json_object_set_new(item, "lost", ddb_n(e->lost));
    if (e->uploader)
        json_object_set_new(item, "up", ddb_s(e->uploader));
    if (e->owner[0])
        json_object_set_new(item, "own", ddb_s(e->owner));
    if ((e->state == INDEX_QUEUED || e->state == INDEX_PROCESSING) && e->lease_ms) {
        json_object_set_new(item, "fl", ddb_s("1"));
        json_object_set_new(item, "lease", ddb_n(e->lease_ms));
    }
    if (e->state == INDEX_PENDING && e->upload_expires_ms) {
        json_object_set_new(item, "uexp", ddb_n(e->upload_expires_ms));
        json_object_set_new(item, "ttl", ddb_n(ddb_ttl(e)));
    }
    return item;
}

/* An item read back is untrusted: its record must parse, and name the id
 * it is stored under. */
/* One of the record's run counts; a negative or huge number (a bad item)
 * reads as past any bound, so it bounds retries anyway. */
static int ddb_count(const json_t *item, const char *name)
{
    int64_t n = ddb_get_n(item, name);

    return n < 0 || n > 1000 ? 1000 : (int)n;
}

static enum rz_err ddb_entry(const json_t *item, struct index_entry *out)
{
    const char *pk = ddb_get_s(item, "pk");
    const char *rec = ddb_get_s(item, "rec");
    const char *seqr = ddb_get_s(item, "seqr");
    const char *own = ddb_get_s(item, "own");
    json_t *j = rec ? json_loads(rec, JSON_REJECT_DUPLICATES, NULL) : NULL;
    enum rz_err err = j ? index_entry_from_json(j, out) : RZ_EINVAL;

    json_decref(j);
    if (err == RZ_OK && (!pk || strcmp(pk, out->id) != 0))
        err = RZ_EINVAL;
    if (err == RZ_OK && seqr && strlen(seqr) <= 64)
        out->sequencer = strdup(seqr);
    if (err == RZ_OK) {
        out->version = (uint64_t)ddb_get_n(item, "ver");
        out->rerun = ddb_get_n(item, "rerun") != 0;
        out->runs = ddb_count(item, "runs");
        out->lost = ddb_count(item, "lost");
        out->try_decoded_key = ddb_get_n(item, "tdk") != 0;
        out->lease_ms = ddb_get_n(item, "lease");
        out->upload_expires_ms = ddb_get_n(item, "uexp");
        snprintf(out->owner, sizeof(out->owner), "%s",
                 own && strlen(own) < INDEX_OWNER_MAX ? own : "");
    }
    if (err != RZ_OK) {
        index_entry_cleanup(out);
        log_fields(LOG_WARN, "store_bad_record", json_pack("{s:s?}", "pk", pk));
        err = RZ_EINTERNAL;
    }
    return err;
}

/* ---- operations ---- */

static enum rz_err ddb_get_item(struct store *s, const char *pk, json_t **item_out)
{
    json_t *resp = NULL;
    enum rz_err err = ddb_do(s, "GetItem",
                             json_pack("{s:s,s:o,s:b}", "TableName", sd(s)->table, "Key",
                                       ddb_key(pk), "ConsistentRead", 1),
                             &resp);

    *item_out = NULL;
    if (err == RZ_OK) {
        *item_out = json_incref(json_object_get(resp, "Item"));
        err = *item_out ? RZ_OK : RZ_ENOTFOUND;
    }
    json_decref(resp);
    return err;
}

static enum rz_err sd_get(struct store *s, const char *id, struct index_entry *out)
{
    json_t *item = NULL;
    enum rz_err err = ddb_get_item(s, id, &item);

    if (err == RZ_OK)
        err = ddb_entry(item, out);
    if (err == RZ_ENOTFOUND && strcmp(id, ddb_key_id) == 0)
        ddb_key_id_missing = 1;
    json_decref(item);
    return err;
}

/* A key item whose record is gone (TTL took a pending upload's record
 * first, or the item predates key ttls) would send every event for its key
 * after a record that is never there: the key is unknown again, and its
 * item goes, if it still names that id. RZ_ENOTFOUND then. */
static enum rz_err ddb_check_dangling(struct store *s, const char *pk, const char *id)
{
    json_t *item = NULL;
    enum rz_err err = ddb_get_item(s, id, &item);

    json_decref(item);
    if (err != RZ_ENOTFOUND)
        return err;
    err = ddb_do(s, "DeleteItem",
                 json_pack("{s:s,s:o,s:s,s:{s:s},s:{s:o}}", "TableName", sd(s)->table, "Key",
                           ddb_key(pk), "ConditionExpression", "#i = :id",
                           "ExpressionAttributeNames", "#i", "id", "ExpressionAttributeValues",
                           ":id", ddb_s(id)),
                 NULL);
    if (err == RZ_OK || err == RZ_ECONFLICT)
        log_fields(LOG_INFO, "store_dangling_key", json_pack("{s:s}", "id", id));
    /* Relinked meanwhile: the caller looks again and finds the new one. */
    return err == RZ_OK ? RZ_ENOTFOUND : err;
}

static enum rz_err sd_find_key(struct store *s, const char *bucket, const char *key,
                               char id_out[INDEX_ID_LEN + 1])
{
    char *pk = ddb_key_pk(bucket, key);
    json_t *item = NULL;
    enum rz_err err = pk ? ddb_get_item(s, pk, &item) : RZ_ENOMEM;
    const char *id = ddb_get_s(item, "id");

    /* The id becomes a key of further requests: a lowercase UUID only. */
    if (err == RZ_OK &&
        (!id || strlen(id) != INDEX_ID_LEN || strspn(id, "0123456789abcdef-") != INDEX_ID_LEN))
        err = RZ_EINTERNAL;
    if (err == RZ_OK && ddb_key_id_missing && strcmp(id, ddb_key_id) == 0)
        err = ddb_check_dangling(s, pk, id);
    if (err == RZ_OK) {
        snprintf(ddb_key_id, sizeof(ddb_key_id), "%s", id);
        ddb_key_id_missing = 0;
    }
    if (err == RZ_OK)
        memcpy(id_out, id, INDEX_ID_LEN + 1);
    json_decref(item);
    free(pk);
    return err;
}

static enum rz_err ddb_put(struct store *s, json_t *item, const char *cond, json_t *values)
{
    json_t *req = item ? json_pack("{s:s,s:o}", "TableName", sd(s)->table, "Item", item) : NULL;

    if (req && cond)
        json_object_set_new(req, "ConditionExpression", json_string(cond));
    if (req && values)
        json_object_set_new(req, "ExpressionAttributeValues", values);
    else
        json_decref(values);
    return ddb_do(s, "PutItem", req, NULL);
}

/* The key item of a pending upload expires with its record: left alone it
 * would outlive the record and name nothing. */
static enum rz_err ddb_link_key(struct store *s, const struct index_entry *e, int only_new)
{
    char *pk = ddb_key_pk(e->bucket, e->key);
    json_t *item = pk ? json_pack("{s:o,s:o}", "pk", ddb_s(pk), "id", ddb_s(e->id)) : NULL;
    enum rz_err err;

    if (item && ddb_ttl(e))
        json_object_set_new(item, "ttl", ddb_n(ddb_ttl(e)));
    err = ddb_put(s, item, only_new ? "attribute_not_exists(pk)" : NULL, NULL);
    free(pk);
    return err;
}

/* A pending upload becomes work (its event came): its key item must stay
 * as long as the record does. Done before the record's write, so a crash
 * between the two leaves at worst a key item without ttl, which
 * ddb_check_dangling clears once its record is gone; a key item gone
 * (another replica got there first) is no error. */
static enum rz_err ddb_keep_key(struct store *s, const struct index_entry *e)
{
    char *pk = ddb_key_pk(e->bucket, e->key);
    enum rz_err err = RZ_ENOMEM;

    if (pk)
        err = ddb_do(s, "UpdateItem",
                     json_pack("{s:s,s:o,s:s,s:s,s:{s:s,s:s},s:{s:o}}", "TableName",
                               sd(s)->table, "Key", ddb_key(pk), "UpdateExpression", "REMOVE #t",
                               "ConditionExpression", "#i = :id", "ExpressionAttributeNames",
                               "#t", "ttl", "#i", "id", "ExpressionAttributeValues", ":id",
                               ddb_s(e->id)),
                     NULL);
    free(pk);
    return err == RZ_ECONFLICT ? RZ_OK : err;
}

/* The record first, then the claim on its key: a crash in between leaves a
 * record no key points to, which its lease (or TTL, when pending) clears
 * up; never a key pointing to nothing. */
static enum rz_err sd_create(struct store *s, const struct index_entry *e)
{
    enum rz_err err;

    if (!e->bucket || !e->key)
        return RZ_EINVAL;
    err = ddb_put(s, ddb_item(e), "attribute_not_exists(pk)", NULL);
    if (err != RZ_OK)
        return err;
    err = ddb_link_key(s, e, 1);
    if (err == RZ_ECONFLICT)
        ddb_do(s, "DeleteItem",
               json_pack("{s:s,s:o,s:s,s:{s:o}}", "TableName", sd(s)->table, "Key",
                         ddb_key(e->id), "ConditionExpression", "ver = :v",
                         "ExpressionAttributeValues", ":v", ddb_n((int64_t)e->version)),
               NULL);
    return err;
}

static enum rz_err sd_replace(struct store *s, const struct index_entry *e, uint64_t expected)
{
    enum rz_err err = RZ_OK;

    /* upload_expires_ms is read only from a pending record's item: set on
     * a record that is not pending now, this write ends its pending. */
    if (e->state != INDEX_PENDING && e->upload_expires_ms && e->bucket && e->key)
        err = ddb_keep_key(s, e);
    if (err == RZ_OK)
        err = ddb_put(s, ddb_item(e), "ver = :v",
                      json_pack("{s:o}", ":v", ddb_n((int64_t)expected)));

    /* A job that found its object under the decoded form of an EventBridge
     * key records that key: it is found by it from now on. */
    if (err == RZ_OK && e->try_decoded_key && e->state == INDEX_DONE && e->bucket && e->key)
        err = ddb_link_key(s, e, 0);
    return err;
}

static enum rz_err sd_renew(struct store *s, const char *id, const char *owner, int64_t lease_ms)
{
    return ddb_do(s, "UpdateItem",
                  json_pack("{s:s,s:o,s:s,s:s,s:{s:s},s:{s:o,s:o}}", "TableName", sd(s)->table,
                            "Key", ddb_key(id), "UpdateExpression", "SET #l = :l",
                            "ConditionExpression", "own = :o AND attribute_exists(fl)",
                            "ExpressionAttributeNames", "#l", "lease",
                            "ExpressionAttributeValues", ":l", ddb_n(lease_ms), ":o",
                            ddb_s(owner)),
                  NULL);
}

/* "d" + ck of the last item of a page. */
static enum rz_err ddb_parse_cursor(const char *c, char ck_out[DDB_CK_LEN + 1])
{
    size_t len = c ? strlen(c) : 0;

    ck_out[0] = '\0';
    if (!c)
        return RZ_OK;
    if (len != DDB_CK_LEN + 1 || c[0] != 'd' || strspn(c + 1, "0123456789") != 13 ||
        c[14] != '#' || strspn(c + 15, "0123456789abcdef-") != INDEX_ID_LEN)
        return RZ_EINVAL;
    memcpy(ck_out, c + 1, DDB_CK_LEN + 1);
    return RZ_OK;
}

/* Which index a listing reads: a caller's own records by_uploader (its
 * key condition, so a page and its cursor only ever hold that caller's
 * records; a state is then a filter over them), every record by_state or
 * by_time for an admin. */
static json_t *ddb_list_request(struct store *s, int state, const char *uploader, const char *ck,
                                size_t limit)
{
    const char *hash = uploader ? "up" : state >= 0 ? "st" : "all";
    const char *hv = uploader     ? uploader
                     : state >= 0 ? index_state_name((enum index_state)state)
                                  : "1";
    const char *index = uploader ? "by_uploader" : state >= 0 ? "by_state" : "by_time";
    json_t *req = json_pack("{s:s,s:s,s:s,s:{s:s},s:{s:o},s:b,s:I}", "TableName", sd(s)->table,
                            "IndexName", index, "KeyConditionExpression", "#h = :h",
                            "ExpressionAttributeNames", "#h", hash, "ExpressionAttributeValues",
                            ":h", ddb_s(hv), "ScanIndexForward", 0, "Limit", (json_int_t)limit);

    if (req && ck[0])
        json_object_set_new(req, "ExclusiveStartKey",
                            json_pack("{s:o,s:o,s:o}", "pk", ddb_s(ck + 14), "ck", ddb_s(ck),
                                      hash, ddb_s(hv)));
    if (req && uploader && state >= 0) {
        json_object_set_new(req, "FilterExpression", json_string("st = :s"));
        json_object_set_new(json_object_get(req, "ExpressionAttributeValues"), ":s",
                            ddb_s(index_state_name((enum index_state)state)));
    }
    return req;
}

static int ddb_valid_ck(const char *ck)
{
    return ck && strlen(ck) == DDB_CK_LEN;
}

/* One Query of a listing: appends what it returns to out (up to limit in
 * all) and moves ck to where the next read starts ("" when nothing is
 * left). */
static enum rz_err ddb_list_read(struct store *s, int state, const char *uploader,
                                 char ck[DDB_CK_LEN + 1], size_t limit, struct index_entry *out,
                                 size_t *n)
{
    json_t *resp = NULL;
    /* One more than the page holds: when it comes, the page is known not to
     * be the last, and a last page never hands out a cursor to nothing. */
    enum rz_err err = ddb_do(s, "Query",
                             ddb_list_request(s, state, uploader, ck, limit - *n + 1), &resp);
    const json_t *items = json_object_get(resp, "Items");
    const json_t *item;
    const char *last = NULL;
    size_t i;

    ck[0] = '\0';
    json_array_foreach(items, i, item)
    {
        if (err != RZ_OK || *n == limit)
            break;
        last = ddb_get_s(item, "ck");
        if (ddb_entry(item, &out[*n]) == RZ_OK)
            (*n)++;
    }
    /* A page full before the read's end goes on after its last item; else
     * after the last item the read looked at (LastEvaluatedKey: a filter
     * may have dropped it, but by_uploader it is the caller's own). */
    if (*n < limit || i == json_array_size(items))
        last = ddb_get_s(json_object_get(resp, "LastEvaluatedKey"), "ck");
    if (err == RZ_OK && ddb_valid_ck(last))
        memcpy(ck, last, DDB_CK_LEN + 1);
    json_decref(resp);
    return err;
}

static enum rz_err sd_list(struct store *s, int state, const char *uploader, const char *cursor,
                           size_t limit, struct index_entry *out, size_t *n_out,
                           char next_out[STORE_CURSOR_MAX])
{
    char ck[DDB_CK_LEN + 1];
    enum rz_err err = ddb_parse_cursor(cursor, ck);
    size_t n = 0;

    *n_out = 0;
    next_out[0] = '\0';
    if (err != RZ_OK)
        return err;
    /* A filter (a state over a caller's records) can leave a read short:
     * read on, a bounded number of times, rather than hand out a thin page. */
    for (int r = 0; r < DDB_LIST_READS && err == RZ_OK && n < limit; r++) {
        err = ddb_list_read(s, state, uploader, ck, limit, out, &n);
        if (!ck[0])
            break;
    }
    if (err == RZ_OK && ck[0])
        snprintf(next_out, STORE_CURSOR_MAX, "d%s", ck);
    *n_out = n;
    return err;
}

static enum rz_err sd_expired(struct store *s, int64_t now_ms, size_t max,
                              char (*ids_out)[INDEX_ID_LEN + 1], size_t *n_out)
{
    json_t *resp = NULL;
    const json_t *item;
    size_t i, n = 0;
    enum rz_err err = ddb_do(s, "Query",
                             json_pack("{s:s,s:s,s:s,s:{s:s},s:{s:o,s:o},s:I}", "TableName",
                                       sd(s)->table, "IndexName", "in_flight",
                                       "KeyConditionExpression", "fl = :one AND #l < :now",
                                       "ExpressionAttributeNames", "#l", "lease",
                                       "ExpressionAttributeValues", ":one", ddb_s("1"), ":now",
                                       ddb_n(now_ms), "Limit", (json_int_t)max),
                             &resp);

    json_array_foreach(json_object_get(resp, "Items"), i, item)
    {
        const char *pk = ddb_get_s(item, "pk");

        if (n < max && pk && strlen(pk) == INDEX_ID_LEN &&
            strspn(pk, "0123456789abcdef-") == INDEX_ID_LEN)
            memcpy(ids_out[n++], pk, INDEX_ID_LEN + 1);
    }
    *n_out = n;
    json_decref(resp);
    return err;
}

static enum rz_err sd_lock(struct store *s, const char *name, const char *owner, int64_t now_ms,
                           int64_t until_ms, char cursor_out[STORE_SWEEP_CURSOR_MAX])
{
    char pk[128];
    json_t *resp = NULL;
    enum rz_err err;

    snprintf(pk, sizeof(pk), "l#%s", name);
    err = ddb_do(s, "UpdateItem",
                 json_pack("{s:s,s:o,s:s,s:s,s:{s:s},s:{s:o,s:o,s:o},s:s}", "TableName",
                           sd(s)->table, "Key", ddb_key(pk), "UpdateExpression",
                           "SET own = :o, #u = :u", "ConditionExpression",
                           "attribute_not_exists(pk) OR own = :o OR #u < :now",
                           "ExpressionAttributeNames", "#u", "until",
                           "ExpressionAttributeValues", ":o", ddb_s(owner), ":u",
                           ddb_n(until_ms), ":now", ddb_n(now_ms), "ReturnValues", "ALL_NEW"),
                 &resp);
    if (err == RZ_OK && cursor_out) {
        const char *cur = ddb_get_s(json_object_get(resp, "Attributes"), "cur");

        snprintf(cursor_out, STORE_SWEEP_CURSOR_MAX, "%s",
                 cur && strlen(cur) < STORE_SWEEP_CURSOR_MAX ? cur : "");
    }
    json_decref(resp);
    return err;
}

static enum rz_err sd_save_cursor(struct store *s, const char *name, const char *owner,
                                  const char *cursor)
{
    char pk[128];

    snprintf(pk, sizeof(pk), "l#%s", name);
    return ddb_do(s, "UpdateItem",
                  json_pack("{s:s,s:o,s:s,s:s,s:{s:o,s:o}}", "TableName", sd(s)->table, "Key",
                            ddb_key(pk), "UpdateExpression", "SET cur = :c",
                            "ConditionExpression", "own = :o", "ExpressionAttributeValues", ":c",
                            ddb_s(cursor), ":o", ddb_s(owner)),
                  NULL);
}

static enum rz_err sd_ping(struct store *s)
{
    json_t *item = NULL;
    enum rz_err err = ddb_get_item(s, "l#ping", &item);

    json_decref(item);
    return err == RZ_ENOTFOUND ? RZ_OK : err;
}

static void sd_free(struct store *s)
{
    ddb_free(sd(s)->ddb);
    free(sd(s)->table);
    free(s);
}

static const struct store_ops sd_ops = {
    "dynamodb", sd_get,     sd_find_key, sd_create,      sd_replace, sd_renew,
    sd_list,    sd_expired, sd_lock,     sd_save_cursor, sd_ping,    sd_free,
};

enum rz_err store_dynamodb_new(const struct ddb_opts *o, const char *table, struct store **out,
                               char *msg, size_t msglen)
{
    struct store_ddb *d = calloc(1, sizeof(*d));
    enum rz_err err = RZ_ENOMEM;

    if (!d)
        return RZ_ENOMEM;
    d->base.ops = &sd_ops;
    d->base.shared = 1;
    d->table = strdup(table);
    if (d->table)
        err = ddb_new(o, &d->ddb, msg, msglen);
    if (err != RZ_OK) {
        sd_free(&d->base);
        return err;
    }
    *out = &d->base;
    return RZ_OK;
}

/* ---- the table ---- */

static json_t *ddb_gsi(const char *name, const char *hash, const char *range, const char *proj)
{
    return json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:{s:s}}", "IndexName", name, "KeySchema",
                     "AttributeName", hash, "KeyType", "HASH", "AttributeName", range, "KeyType",
                     "RANGE", "Projection", "ProjectionType", proj);
}

static json_t *ddb_table_request(const char *table)
{
    return json_pack(
        "{s:s,s:s,s:[{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},"
        "{s:s,s:s}],s:[o,o,o,o]}",
        "TableName", table, "BillingMode", "PAY_PER_REQUEST", "KeySchema", "AttributeName", "pk",
        "KeyType", "HASH", "AttributeDefinitions", "AttributeName", "pk", "AttributeType", "S",
        "AttributeName", "st", "AttributeType", "S", "AttributeName", "ck", "AttributeType", "S",
        "AttributeName", "all", "AttributeType", "S", "AttributeName", "fl", "AttributeType",
        "S", "AttributeName", "lease", "AttributeType", "N", "AttributeName", "up",
        "AttributeType", "S", "GlobalSecondaryIndexes", ddb_gsi("by_state", "st", "ck", "ALL"),
        ddb_gsi("by_time", "all", "ck", "ALL"), ddb_gsi("by_uploader", "up", "ck", "ALL"),
        ddb_gsi("in_flight", "fl", "lease", "KEYS_ONLY"));
}

/* A table made before an index was added (CreateTable on it only answers
 * ResourceInUse) would fail the queries that need the index, one request
 * at a time: --create-table names what is missing instead. */
static enum rz_err ddb_check_indexes(const json_t *desc, const char *table, char *msg,
                                     size_t msglen)
{
    static const char *const names[] = {"by_state", "by_time", "by_uploader", "in_flight"};
    const json_t *gsis = json_object_get(desc, "GlobalSecondaryIndexes");

    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        const json_t *g;
        size_t i;
        int found = 0;

        json_array_foreach(gsis, i, g)
        {
            const char *name = json_string_value(json_object_get(g, "IndexName"));

            found = found || (name && strcmp(name, names[n]) == 0);
        }
        if (!found) {
            snprintf(msg, msglen,
                     "table %s has no index %s (made by an older version?): add it as "
                     "deploy/cloudformation.yaml declares it, or use a new table",
                     table, names[n]);
            return RZ_EINVAL;
        }
    }
    return RZ_OK;
}

/* Waits (up to about a minute) until the table is ACTIVE, and checks it
 * has every index. */
static enum rz_err ddb_wait_active(struct ddb *d, const char *table, char *msg, size_t msglen)
{
    for (int i = 0; i < 120; i++) {
        json_t *req = json_pack("{s:s}", "TableName", table);
        json_t *resp = NULL;
        enum rz_err err = ddb_call(d, "DescribeTable", req, &resp, msg, msglen);
        const json_t *desc = json_object_get(resp, "Table");
        const char *st = json_string_value(json_object_get(desc, "TableStatus"));
        int active = err == RZ_OK && st && strcmp(st, "ACTIVE") == 0;

        if (active)
            err = ddb_check_indexes(desc, table, msg, msglen);
        json_decref(req);
        json_decref(resp);
        if (active || (err != RZ_OK && err != RZ_ENOTFOUND))
            return err;
        usleep(500 * 1000);
    }
    snprintf(msg, msglen, "table %s did not become ACTIVE", table);
    return RZ_EUPSTREAM;
}

enum rz_err store_dynamodb_create_table(const struct ddb_opts *o, const char *table, char *msg,
                                        size_t msglen)
{
    struct ddb *d = NULL;
    json_t *req = ddb_table_request(table);
    enum rz_err err = req ? ddb_new(o, &d, msg, msglen) : RZ_ENOMEM;

    if (err == RZ_OK)
        err = ddb_call(d, "CreateTable", req, NULL, msg, msglen);
    json_decref(req);
    if (err == RZ_EINVAL && strstr(msg, "ResourceInUse"))
        err = RZ_OK; /* already there: creating is idempotent */
    if (err == RZ_OK)
        err = ddb_wait_active(d, table, msg, msglen);
    if (err == RZ_OK) {
        req = json_pack("{s:s,s:{s:b,s:s}}", "TableName", table, "TimeToLiveSpecification",
                        "Enabled", 1, "AttributeName", "ttl");
        err = req ? ddb_call(d, "UpdateTimeToLive", req, NULL, msg, msglen) : RZ_ENOMEM;
        json_decref(req);
        /* Local servers (dynalite) do not know TTL, and a table whose TTL
         * is already on refuses it again: neither stops the start. */
        if (err == RZ_EINVAL) {
            log_printf(LOG_WARN, "ttl_not_set", "%s", msg);
            err = RZ_OK;
        }
    }
    ddb_free(d);
    return err;
}
