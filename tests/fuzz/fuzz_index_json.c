/* fuzz_index_json.c - status records read back from S3 (_status/...) may
 * be damaged or forged: JSON -> index_entry_from_json ->
 * index_entry_to_json, and what was written must read back the same. */
#include <string.h>

#include <jansson.h>

#include "server/index.h"
#include "tests/fuzz/fuzz.h"

/* j1 = to_json(from_json(input)) must be a fixed point: another replica
 * reading j1 answers exactly j1. */
static void check_round_trip(const struct index_entry *e)
{
    struct index_entry again;
    json_t *j1 = index_entry_to_json(e);
    json_t *j2;

    FUZZ_CHECK(j1);
    FUZZ_CHECK(index_entry_from_json(j1, &again) == RZ_OK);
    j2 = index_entry_to_json(&again);
    FUZZ_CHECK(j2);
    if (!json_equal(j1, j2)) {
        char *a = json_dumps(j1, JSON_SORT_KEYS);
        char *b = json_dumps(j2, JSON_SORT_KEYS);

        fprintf(stderr, "written: %s\nread back: %s\n", a, b);
        FUZZ_CHECK(!"round trip changed the record");
    }
    FUZZ_CHECK(strcmp(again.id, e->id) == 0 && again.state == e->state);
    FUZZ_CHECK(again.nvariants == e->nvariants);
    index_entry_cleanup(&again);
    json_decref(j1);
    json_decref(j2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct index_entry e;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

    if (!j)
        return 0;
    if (index_entry_from_json(j, &e) == RZ_OK) {
        FUZZ_CHECK(strlen(e.id) == INDEX_ID_LEN);
        FUZZ_CHECK(e.nvariants <= IMAGE_MAX_VARIANTS);
        check_round_trip(&e);
        index_entry_cleanup(&e);
    }
    json_decref(j);
    return 0;
}
