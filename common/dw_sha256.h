/*
 * dw_sha256: SHA-256 (FIPS 180-4), for the content hash of mapped fields (schemas/README.md,
 * "content_hash") and the ids derived from event ids. A thin layer over libcrypto (OpenSSL), whose
 * block function uses the CPU's SHA extensions or AVX2 where there are: the content hash is on
 * every command's path. Incremental (init/update/final) or one-shot; hex output in lower case.
 */
#ifndef DW_SHA256_H
#define DW_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define DW_SHA256_SIZE     32 /* digest bytes */
#define DW_SHA256_HEX_SIZE 65 /* 64 hex digits and the NUL */

/* The running state of one hash; a plain value, no cleanup (libcrypto's SHA256_CTX inside). */
typedef struct dw_sha256_s {
    _Alignas(16) unsigned char state[128];
} dw_sha256_t;

void dw_sha256_init(dw_sha256_t *ctx);
/* Hash len more bytes of data (borrowed). */
void dw_sha256_update(dw_sha256_t *ctx, const void *data, size_t len);
/* Finish: the 32-byte digest into out. ctx must be initialised again before reuse. */
void dw_sha256_final(dw_sha256_t *ctx, uint8_t out[DW_SHA256_SIZE]);

/* One shot: digest of data[0..len). */
void dw_sha256(const void *data, size_t len, uint8_t out[DW_SHA256_SIZE]);
/* One shot, as 64 lower-case hex digits and a NUL in hex. */
void dw_sha256_hex(const void *data, size_t len, char hex[DW_SHA256_HEX_SIZE]);
/* A digest as 64 lower-case hex digits and a NUL. */
void dw_sha256_to_hex(const uint8_t digest[DW_SHA256_SIZE], char hex[DW_SHA256_HEX_SIZE]);

#endif
