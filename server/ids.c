/* ids.c - version 4 UUIDs from OpenSSL's CSPRNG.
 *
 * libuuid's uuid_generate_random reseeds random(3) and may read
 * /dev/urandom on every call; at two ids per request that showed in
 * profiles. RAND_bytes is thread-safe and cheap; libuuid still formats. */
#include "ids.h"

#include <ctype.h>
#include <string.h>

#include <openssl/rand.h>
#include <uuid/uuid.h>

int ids_uuid_ok(const char *s)
{
    if (!s || strlen(s) != IDS_UUID_LEN)
        return 0;
    for (size_t i = 0; i < IDS_UUID_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;

        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

void ids_new_uuid(char out[IDS_UUID_LEN + 1])
{
    uuid_t uu;

    if (RAND_bytes(uu, (int)sizeof(uu)) != 1) {
        uuid_generate_random(uu);
    } else {
        uu[6] = (unsigned char)((uu[6] & 0x0f) | 0x40); /* version 4 */
        uu[8] = (unsigned char)((uu[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    }
    uuid_unparse_lower(uu, out);
}
