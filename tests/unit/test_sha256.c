/*
 * Unit tests for dw_sha256: the NIST FIPS 180-4 example vectors (one block, two blocks, the
 * 896-bit message, one million 'a'), the empty message, every padding boundary against an
 * incremental computation fed at every split point, and the hex rendering.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "dw_sha256.h"

static void check(const char *msg, size_t len, const char *want)
{
    char hex[DW_SHA256_HEX_SIZE];
    dw_sha256_hex(msg, len, hex);
    cr_assert_str_eq(hex, want, "message of %zu bytes", len);
}

Test(sha256, nist_one_block_abc)
{
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(sha256, empty_message)
{
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(sha256, nist_two_blocks_448_bits)
{
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(sha256, nist_896_bits)
{
    const char *m =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        "klmnopqrlmnopqrsmnopqrstnopqrstu";
    check(m, strlen(m), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

Test(sha256, nist_one_million_a_incrementally)
{
    char chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    dw_sha256_t ctx;
    dw_sha256_init(&ctx);
    for (int i = 0; i < 1000; i++)
        dw_sha256_update(&ctx, chunk, sizeof(chunk));
    uint8_t d[DW_SHA256_SIZE];
    char hex[DW_SHA256_HEX_SIZE];
    dw_sha256_final(&ctx, d);
    dw_sha256_to_hex(d, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(sha256, known_short_messages)
{
    check("The quick brown fox jumps over the lazy dog", 43,
          "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
    check("a", 1, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
}

/* Every length around the padding boundaries (55, 56, 63, 64 ...) fed whole and in two parts at
 * every split point gives the same digest. */
Test(sha256, incremental_equals_one_shot_at_every_split)
{
    unsigned char buf[200];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(buf); len++) {
        uint8_t whole[DW_SHA256_SIZE];
        dw_sha256(buf, len, whole);
        for (size_t split = 0; split <= len; split++) {
            dw_sha256_t ctx;
            uint8_t part[DW_SHA256_SIZE];
            dw_sha256_init(&ctx);
            dw_sha256_update(&ctx, buf, split);
            dw_sha256_update(&ctx, buf + split, len - split);
            dw_sha256_final(&ctx, part);
            cr_assert(memcmp(whole, part, sizeof(whole)) == 0, "len %zu split %zu", len, split);
        }
    }
}

Test(sha256, hex_is_lower_case_64_digits)
{
    char hex[DW_SHA256_HEX_SIZE];
    dw_sha256_hex("dwfleet", 7, hex);
    cr_assert_eq(strlen(hex), 64);
    for (int i = 0; i < 64; i++)
        cr_assert((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
}
