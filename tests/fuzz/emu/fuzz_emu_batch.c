/*
 * libFuzzer target for the emu_batch multipart parser: the first input line is the Content-Type,
 * the rest the $batch body. Not part of the CMake build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iemulators/dw-emulator -Icommon \
 *     $(pkg-config --cflags jansson) tests/fuzz/emu/fuzz_emu_batch.c \
 *     emulators/dw-emulator/emu_batch.c common/dw_err.c -o /tmp/fuzz_emu_batch
 *   /tmp/fuzz_emu_batch -max_total_time=60 tests/fuzz/emu/corpus_batch
 * (emu_batch.c's executor refers to emu_http's response helpers; the stubs below stand in.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emu_batch.h"

/* stubs of emu_http (the executor is not fuzzed here) */
const char *emu_req_header(const emu_req_t *req, const char *name)
{
    (void)req;
    (void)name;
    return NULL;
}
void emu_resp_header(emu_resp_t *resp, const char *name, const char *value)
{
    (void)resp;
    (void)name;
    (void)value;
}
void emu_resp_raw(emu_resp_t *resp, unsigned status, const char *content_type, const char *body, size_t len)
{
    (void)content_type;
    (void)body;
    (void)len;
    resp->status = status;
}
void emu_resp_error(emu_resp_t *resp, unsigned status, const char *code, const char *fmt, ...)
{
    (void)code;
    (void)fmt;
    resp->status = status;
}
void emu_resp_reset(emu_resp_t *resp)
{
    memset(resp, 0, sizeof(*resp));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *nl = memchr(s, '\n', size);
    const char *ct = s, *body = "";
    size_t blen = 0;
    if (nl) {
        *nl = '\0';
        body = nl + 1;
        blen = size - (size_t)(nl + 1 - s);
    }
    emu_batch_t b;
    char err[512];
    dw_err_t e = emu_batch_parse(ct, body, blen, 50, &b, err, sizeof(err));
    if (!e) {
        for (size_t i = 0; i < b.nparts; i++)
            if (!b.parts[i].method || !b.parts[i].url || !b.parts[i].body)
                abort();
    }
    emu_batch_clear(&b);
    free(s);
    return 0;
}
