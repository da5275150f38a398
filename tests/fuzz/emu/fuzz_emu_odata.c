/*
 * libFuzzer target for emu_odata: resource paths with keys, and query options built from the
 * input (split at '\n' into name/value pairs). Not part of the CMake build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iemulators/dw-emulator -Icommon \
 *     tests/fuzz/emu/fuzz_emu_odata.c emulators/dw-emulator/emu_odata.c common/dw_err.c -o /tmp/fuzz_emu_odata
 *   /tmp/fuzz_emu_odata -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emu_odata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char err[256];
    emu_odata_path_t p;
    if (emu_odata_path_parse(s, &p, err, sizeof(err)) == DW_OK) {
        for (size_t i = 0; i < p.nkeys; i++)
            (void)emu_odata_is_guid(p.keys[i].value);
        (void)emu_odata_key_get(&p, "accountnumber");
        emu_odata_path_clear(&p);
    }
    /* query options: "name=value" lines */
    const char *names[8], *values[8];
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line && n < 8; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (eq)
            *eq = '\0';
        names[n] = line;
        values[n] = eq ? eq + 1 : "";
        n++;
    }
    emu_odata_query_t q;
    if (emu_odata_query_parse(names, values, n, 0xffff, &q, err, sizeof(err)) == DW_OK)
        emu_odata_query_clear(&q);
    char out[64];
    (void)emu_odata_quote(s, out, sizeof(out));
    free(s);
    return 0;
}
