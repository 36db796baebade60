/* base64.c - strict base64 (RFC 4648 sections 4 and 5). */
#include "base64.h"

#include <string.h>

#include <openssl/crypto.h>

static const char base64_std_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of c in the alphabet, or -1. */
static int base64_value(char c, enum base64_alphabet alphabet)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (alphabet == BASE64_STD)
        return c == '+' ? 62 : c == '/' ? 63 : -1;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

size_t base64_decoded_max(size_t inlen)
{
    return inlen / 4 * 3 + (inlen % 4 ? 3 : 0);
}

/* How many characters of data in[0..inlen) holds once its padding is
 * checked and set aside; (size_t)-1 when the padding is wrong. */
static size_t base64_data_len(const char *in, size_t inlen, enum base64_alphabet alphabet)
{
    size_t pad = 0;

    if (alphabet == BASE64_URL)
        return inlen % 4 == 1 ? (size_t)-1 : inlen;
    if (inlen % 4 != 0)
        return (size_t)-1;
    while (pad < inlen && pad < 3 && in[inlen - 1 - pad] == '=')
        pad++;
    return pad > 2 ? (size_t)-1 : inlen - pad;
}

enum rz_err base64_decode(const char *in, size_t inlen, enum base64_alphabet alphabet,
                          unsigned char *out, size_t outcap, size_t *outlen_out)
{
    size_t len = base64_data_len(in, inlen, alphabet);
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;

    *outlen_out = 0;
    if (len == (size_t)-1 || len % 4 == 1)
        return RZ_EINVAL;
    if (len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > outcap)
        return RZ_ETOOBIG;
    for (size_t i = 0; i < len; i++) {
        int v = base64_value(in[i], alphabet);

        if (v < 0)
            goto fail;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: otherwise two encodings decode alike. */
    if (acc != 0)
        goto fail;
    *outlen_out = n;
    return RZ_OK;
fail:
    OPENSSL_cleanse(out, n);
    return RZ_EINVAL;
}

size_t base64_encoded_len(size_t n, enum base64_alphabet alphabet)
{
    if (alphabet == BASE64_STD)
        return (n + 2) / 3 * 4;
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void base64_encode(const unsigned char *in, size_t n, enum base64_alphabet alphabet, char *out)
{
    const char *chars = alphabet == BASE64_STD ? base64_std_chars : base64_url_chars;
    size_t o = 0;

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        size_t left = n - i;

        if (left > 1)
            v |= (unsigned)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[o++] = chars[(v >> 18) & 63];
        out[o++] = chars[(v >> 12) & 63];
        if (left > 1)
            out[o++] = chars[(v >> 6) & 63];
        else if (alphabet == BASE64_STD)
            out[o++] = '=';
        if (left > 2)
            out[o++] = chars[v & 63];
        else if (alphabet == BASE64_STD)
            out[o++] = '=';
    }
    out[o] = '\0';
}
