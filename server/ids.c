/* ids.c - version 4 UUIDs from OpenSSL's CSPRNG.
 *
 * libuuid's uuid_generate_random reseeds random(3) and may read
 * /dev/urandom on every call; at two ids per request that showed in
 * profiles. RAND_bytes is thread-safe and cheap; libuuid still formats. */
#include "ids.h"

#include <openssl/rand.h>
#include <uuid/uuid.h>

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
