/* ids.h - random identifiers (request ids, image ids). */
#ifndef RESIZER_IDS_H
#define RESIZER_IDS_H

#define IDS_UUID_LEN 36

/* Writes a new random (version 4) UUID, lowercase, NUL-terminated. */
void ids_new_uuid(char out[IDS_UUID_LEN + 1]);

#endif
