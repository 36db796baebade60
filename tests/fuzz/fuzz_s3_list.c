/* fuzz_s3_list.c - ListObjectsV2 pages come from whatever answers at the
 * S3 endpoint: bytes -> s3_list_parse. The input's first line is the token
 * that asked for the page (empty: none), the rest the page. Whatever the
 * bytes, the parser reads nothing past them, and a page it accepts holds
 * only keys the sweep can use and a token that moves the listing on. */
#include <string.h>

#include "server/s3_list.h"
#include "tests/fuzz/fuzz.h"

static void check_page(const struct s3_list *l, const char *prev)
{
    for (size_t i = 0; i < l->nitems; i++) {
        const struct s3_list_item *it = &l->items[i];
        size_t n = strlen(it->key);

        FUZZ_CHECK(n > 0 && n <= 1024);
        if (it->etag) {
            size_t e = strlen(it->etag);

            FUZZ_CHECK(!(e >= 2 && it->etag[0] == '"' && it->etag[e - 1] == '"'));
        }
    }
    if (l->next_token) {
        FUZZ_CHECK(l->next_token[0] != '\0');
        FUZZ_CHECK(!prev || strcmp(l->next_token, prev) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    size_t plen = nl ? (size_t)(nl - (const char *)data) : 0;
    char prev[256];
    const char *page = nl ? nl + 1 : (const char *)data;
    size_t len = size - (size_t)(page - (const char *)data);
    /* An exact-size copy: ASan sees a read one byte past the page. */
    char *copy = malloc(len ? len : 1);
    struct s3_list l;

    if (!copy)
        return 0;
    if (plen >= sizeof(prev))
        plen = sizeof(prev) - 1;
    memcpy(prev, data, plen);
    prev[plen] = '\0';
    memcpy(copy, page, len);
    memset(&l, 0, sizeof(l));
    if (s3_list_parse(copy, len, plen ? prev : NULL, &l) == RZ_OK)
        check_page(&l, plen ? prev : NULL);
    s3_list_cleanup(&l);
    free(copy);
    return 0;
}
