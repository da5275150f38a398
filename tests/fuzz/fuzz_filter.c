/*
 * fuzz_filter: libFuzzer target for dw_filter. Not part of the CMake build; build and run by hand:
 *
 *   mkdir -p build-fuzz
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Icommon \
 *       tests/fuzz/fuzz_filter.c common/dw_filter.c common/dw_err.c -ljansson \
 *       -o build-fuzz/fuzz_filter
 *   mkdir -p build-fuzz/corpus && cp -r tests/fuzz/corpus/filter/. build-fuzz/corpus/
 *   build-fuzz/fuzz_filter -dict=tests/fuzz/filter.dict -max_len=4096 -max_total_time=120 \
 *       build-fuzz/corpus
 *
 * The input is the filter text (up to the first NUL). Besides not crashing, it checks:
 * a failed compile says where (every message but the length limit starts with "column N:");
 * a compiled filter's canonical form compiles to the same canonical form and matches the same
 * records; match and strict eval agree whenever eval succeeds; accessors are consistent.
 * Records are built from the filter's own columns, with values chosen from the input's hash so
 * that every type meets every literal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_filter.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_filter: check failed at line %d: %s\n", __LINE__, #cond);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static json_t *value_for(uint64_t h)
{
    switch (h % 16) {
    case 0:
        return json_null();
    case 1:
        return json_true();
    case 2:
        return json_false();
    case 3:
        return json_integer((json_int_t)(h >> 8) % 2001 - 1000);
    case 4:
        return json_real((double)((int64_t)(h >> 8) % 20001 - 10000) / 100.0);
    case 5:
        return json_string("1500.00");
    case 6:
        return json_string("-0.30");
    case 7:
        return json_string("Contoso");
    case 8:
        return json_string("");
    case 9:
        return json_string("2024-03-01T10:00:00Z");
    case 10:
        return json_string("7a4814f9-b0b8-ea11-a812-000d3a122b89");
    case 11:
        return json_string("Yes");
    case 12:
        return json_pack("{s:s,s:i}", "Name", "x", "a", 1);
    case 13:
        return json_pack("[i]", 1);
    case 14:
        return json_integer(INT64_MAX);
    default:
        return json_stringn("a\0b'", 4);
    }
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    uint64_t seed = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * UINT64_C(1099511628211);

    char err[512] = "";
    dw_filter_t *f = dw_filter_compile(text, err, sizeof(err));
    if (!f) {
        CHECK(strncmp(err, "column ", 7) == 0 ||
              strcmp(err, "filter is longer than 65536 bytes") == 0);
        /* a tiny error buffer must be safe too */
        char tiny[3];
        CHECK(dw_filter_compile(text, tiny, sizeof(tiny)) == NULL);
        CHECK(dw_filter_compile(text, NULL, 0) == NULL);
        free(text);
        return 0;
    }
    CHECK(strcmp(dw_filter_text(f), text) == 0);

    /* canonical form round-trips */
    char *canon = dw_filter_to_string(f);
    CHECK(canon != NULL);
    dw_filter_t *g = dw_filter_compile(canon, err, sizeof(err));
    if (!g)
        fprintf(stderr, "canonical \"%s\" does not compile: %s\n", canon, err);
    CHECK(g != NULL);
    char *canon2 = dw_filter_to_string(g);
    CHECK(canon2 != NULL);
    if (strcmp(canon, canon2) != 0)
        fprintf(stderr, "unstable canonical form:\n  %s\n  %s\n", canon, canon2);
    CHECK(strcmp(canon, canon2) == 0);

    /* accessors */
    size_t ncols = dw_filter_columns(f, NULL, 0);
    CHECK(dw_filter_columns(g, NULL, 0) == ncols);
    const char **cols = calloc(ncols + 1, sizeof(*cols));
    CHECK(cols != NULL);
    CHECK(dw_filter_columns(f, cols, ncols) == ncols);
    size_t nenums = dw_filter_enums(f, NULL, 0);
    dw_filter_enum_t *enums = calloc(nenums + 1, sizeof(*enums));
    CHECK(enums != NULL);
    CHECK(dw_filter_enums(f, enums, nenums) == nenums);
    for (size_t i = 0; i < nenums; i++)
        CHECK(enums[i].type != NULL && enums[i].member != NULL);

    /* evaluate against records built from the filter's columns */
    for (int round = 0; round < 4; round++) {
        json_t *rec = json_object();
        uint64_t h = mix(seed + (uint64_t)round);
        for (size_t i = 0; i < ncols; i++) {
            h = mix(h + i);
            if (h % 7 == 0)
                continue; /* leave some columns missing */
            const char *name = cols[i];
            const char *slash = strchr(name, '/');
            json_t *v = value_for(h >> 4);
            if (slash && (h & 8)) {
                /* the nested form of a navigation path: only the first level */
                json_t *inner = json_object();
                json_object_set_new(inner, slash + 1, v);
                json_object_setn_new(rec, name, (size_t)(slash - name), inner);
            } else {
                json_object_set_new(rec, name, v);
            }
        }
        bool m = dw_filter_match(f, rec);
        CHECK(dw_filter_match(g, rec) == m);
        bool r = !m;
        char eerr[512];
        dw_err_t e = dw_filter_eval(f, rec, &r, eerr, sizeof(eerr));
        CHECK(e == DW_OK || e == DW_ERR_INVALID_ARG);
        if (e == DW_OK)
            CHECK(r == m);
        else
            CHECK(!r);
        json_decref(rec);
    }

    free(enums);
    free(cols);
    free(canon2);
    free(canon);
    dw_filter_destroy(g);
    dw_filter_destroy(f);
    free(text);
    return 0;
}
