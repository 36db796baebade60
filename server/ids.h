/* ids.h - random identifiers (request ids, image ids). */
#ifndef RESIZER_IDS_H
#define RESIZER_IDS_H

#define IDS_UUID_LEN 36

/* Writes a new random (version 4) UUID, lowercase, NUL-terminated. */
void ids_new_uuid(char out[IDS_UUID_LEN + 1]);

/* 1 if s (may be NULL) has the shape ids_new_uuid writes: 36 characters,
 * lowercase hex with dashes at 8, 13, 18 and 23. Image ids are keys and
 * paths, so anything else from outside is refused, not normalised. */
int ids_uuid_ok(const char *s);

#endif
