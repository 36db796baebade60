/* base64.h - strict base64 (RFC 4648), the one decoder of the project.
 *
 * Everything that decodes base64 from outside (Basic auth, webhook secrets,
 * JWT segments) goes through base64_decode, so every caller gets the same
 * checks: only the alphabet's characters, padding only at the end and at
 * most two '=', no bits left over, and the output length checked before a
 * byte is written. */
#ifndef RESIZER_BASE64_H
#define RESIZER_BASE64_H

#include <stddef.h>

#include "err.h"

enum base64_alphabet {
    BASE64_STD = 0, /* A-Z a-z 0-9 + /, '=' padding required (Basic auth, whsec_) */
    BASE64_URL,     /* A-Z a-z 0-9 - _, no padding (JWS, RFC 7515 section 2) */
};

/* The most bytes base64_decode can write for inlen characters. */
size_t base64_decoded_max(size_t inlen);

/* Decodes in[0..inlen) into out (outcap bytes). *outlen_out gets the
 * decoded length. RZ_EINVAL when in is not strict base64 of the alphabet,
 * RZ_ETOOBIG when out is too small; on error out holds nothing useful and
 * is wiped. */
enum rz_err base64_decode(const char *in, size_t inlen, enum base64_alphabet alphabet,
                          unsigned char *out, size_t outcap, size_t *outlen_out);

/* The length of the encoding of n bytes, without the NUL. */
size_t base64_encoded_len(size_t n, enum base64_alphabet alphabet);

/* Encodes in[0..n) into out, which must hold base64_encoded_len(n) + 1
 * bytes; NUL-terminates. */
void base64_encode(const unsigned char *in, size_t n, enum base64_alphabet alphabet, char *out);

#endif
