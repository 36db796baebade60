/* fuzz.h - what every libFuzzer target here shares.
 *
 * FUZZ_CHECK aborts on a broken invariant, so libFuzzer keeps the input
 * as a crash exactly as it does for a sanitizer report. */
#ifndef RESIZER_FUZZ_H
#define RESIZER_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
