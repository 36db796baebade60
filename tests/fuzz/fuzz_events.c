/* fuzz_events.c - POST /v1/events bodies: events_parse, events_filter and
 * events_batch_cleanup on arbitrary bytes, plus text_url_decode on the
 * same bytes as a string. */
#include <string.h>

#include "server/events.h"
#include "server/text.h"
#include "tests/fuzz/fuzz.h"

/* The message goes back to the sender and into a log line. */
static void check_msg(const char *msg)
{
    FUZZ_CHECK(msg[0] != '\0');
    for (; *msg; msg++)
        FUZZ_CHECK(*msg >= 0x20 && *msg <= 0x7e);
}

/* Etags, sequencers and version ids go into S3 headers: NULL, or 1..1024
 * bytes of printable ASCII without spaces. */
static void check_token(const char *s)
{
    if (!s)
        return;
    FUZZ_CHECK(s[0] && strlen(s) <= 1024);
    for (; *s; s++)
        FUZZ_CHECK(*s > 0x20 && *s < 0x7f);
}

static void check_object(const struct event_object *o)
{
    size_t klen;

    FUZZ_CHECK(o->bucket && o->bucket[0]);
    FUZZ_CHECK(o->key);
    klen = strlen(o->key);
    FUZZ_CHECK(klen > 0 && klen <= EVENTS_MAX_KEY);
    check_token(o->etag);
    check_token(o->sequencer);
    check_token(o->version_id);
}

/* What the filter keeps is exactly what the service may process. */
static void check_filter(struct event_batch *b)
{
    size_t before = b->nobjects;
    size_t ignored = b->ignored;
    size_t removed = events_filter(b, "src", "images/", "dest");

    FUZZ_CHECK(removed == before - b->nobjects);
    FUZZ_CHECK(b->ignored == ignored + removed);
    for (size_t i = 0; i < b->nobjects; i++) {
        FUZZ_CHECK(strcmp(b->objects[i].bucket, "src") == 0);
        FUZZ_CHECK(strncmp(b->objects[i].key, "images/", 7) == 0);
    }
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    char *s = strndup((const char *)data, size);

    for (int form = 0; s && form < 2; form++) {
        char *d = text_url_decode(s, form);

        FUZZ_CHECK(!d || strlen(d) <= strlen(s));
        free(d);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event_batch b;
    char msg[256];
    enum rz_err err;

    memset(&b, 0, sizeof(b));
    err = events_parse((const char *)data, size, &b, msg, sizeof(msg));
    if (err == RZ_OK) {
        FUZZ_CHECK(b.nobjects <= EVENTS_MAX_RECORDS);
        for (size_t i = 0; i < b.nobjects; i++)
            check_object(&b.objects[i]);
        check_filter(&b);
    } else {
        FUZZ_CHECK(err == RZ_EINVAL || err == RZ_ETOOBIG || err == RZ_ENOMEM);
        FUZZ_CHECK(b.nobjects == 0 && b.objects == NULL);
        check_msg(msg);
    }
    events_batch_cleanup(&b);
    fuzz_decode(data, size);
    return 0;
}
