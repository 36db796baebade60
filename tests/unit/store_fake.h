/* store_fake.h - a shared store for unit tests: the memory store behind a
 * store that says it is shared (as DynamoDB is), so the status module
 * reads and writes through the store ops, with each op counted and the
 * whole store switchable to "unreachable" (every op RZ_EUPSTREAM), as a
 * DynamoDB that stopped answering. Thread-safe. */
#ifndef RESIZER_STORE_FAKE_H
#define RESIZER_STORE_FAKE_H

#include <stddef.h>

#include "server/store.h"

/* A shared store over the memory store of idx (borrowed). */
struct store *fake_store_new(struct index *idx);

/* Calls made of op ("get", "find_key", "create", "replace", "renew",
 * "list", "expired", "lock", "save_cursor", "ping"; NULL: all). */
size_t fake_store_calls(struct store *s, const char *op);

/* down: every call fails RZ_EUPSTREAM (still counted) after delay_ms (a
 * store timing out), until set back. */
void fake_store_set_down(struct store *s, int down, long delay_ms);

#endif
