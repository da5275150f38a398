/*
 * dw_sha256: SHA-256 by libcrypto. The low-level SHA256_* functions keep their state in a plain
 * struct (no allocation, no provider lookup per hash, which matters for short inputs hashed on
 * every command); OpenSSL 3 marks them deprecated in favour of EVP, whose context must be
 * allocated and freed, so the deprecation warning is silenced here and only here. The unit test
 * checks the NIST example vectors, the million-'a' vector and incremental feeding at every split
 * point.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "dw_sha256.h"

#include <openssl/sha.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((dw_sha256_t *)0)->state),
               "dw_sha256_t cannot hold libcrypto's SHA256_CTX");
_Static_assert(DW_SHA256_SIZE == SHA256_DIGEST_LENGTH, "digest size");

void dw_sha256_init(dw_sha256_t *ctx)
{
    SHA256_Init((SHA256_CTX *)(void *)ctx->state);
}

void dw_sha256_update(dw_sha256_t *ctx, const void *data, size_t len)
{
    SHA256_Update((SHA256_CTX *)(void *)ctx->state, data, len);
}

void dw_sha256_final(dw_sha256_t *ctx, uint8_t out[DW_SHA256_SIZE])
{
    SHA256_Final(out, (SHA256_CTX *)(void *)ctx->state);
}

void dw_sha256(const void *data, size_t len, uint8_t out[DW_SHA256_SIZE])
{
    dw_sha256_t ctx;
    dw_sha256_init(&ctx);
    dw_sha256_update(&ctx, data, len);
    dw_sha256_final(&ctx, out);
}

void dw_sha256_to_hex(const uint8_t digest[DW_SHA256_SIZE], char hex[DW_SHA256_HEX_SIZE])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < DW_SHA256_SIZE; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0xf];
    }
    hex[64] = '\0';
}

void dw_sha256_hex(const void *data, size_t len, char hex[DW_SHA256_HEX_SIZE])
{
    uint8_t d[DW_SHA256_SIZE];
    dw_sha256(data, len, d);
    dw_sha256_to_hex(d, hex);
}
