/*
 * fuzz_mapper: libFuzzer target for the mapping engine (dw_mapper): the exact-number JSON reader,
 * the conversions, value maps, lookups and their references, the canonical key, the writer and
 * the content hash. Not part of the CMake build; build and run by hand:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DDW_DEFAULT_SCHEMAS_DIR="\"$PWD/schemas\"" \
 *       -Icommon tests/fuzz/fuzz_mapper.c tests/fuzz/fuzz_maps.c common/dw_map.c \
 *       common/dw_mapschema.c common/dw_mapper.c common/dw_json.c common/dw_sha256.c \
 *       common/dw_filter.c common/dw_err.c -ljansson \
 *       -o build-fuzz/fuzz_mapper
 *   mkdir -p build-fuzz/corpus-mapper && cp -r tests/fuzz/corpus/mapper/. build-fuzz/corpus-mapper/
 *   build-fuzz/fuzz_mapper -dict=tests/fuzz/mapper.dict -max_len=8192 -max_total_time=120 \
 *       build-fuzz/corpus-mapper
 *
 * Input: one byte choosing the map (of the 17 standard maps) and the direction, then the source
 * record as JSON text. Besides not crashing or leaking, it checks: an error has a reason and a
 * message and leaves no result; a success has an object payload, a key object of one member per
 * key, a canonical key that is a JSON array of as many values, and a content hash equal to the
 * SHA-256 of the sorted payload; the payload written and read back has the same hash (the writer
 * and the reader agree); mapping the payload back never crashes; the scope filter never crashes;
 * every lookup reference made from the record reads back to the value it was made from.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_map.h"
#include "dw_mapper.h"
#include "dw_sha256.h"
#include "fuzz_maps.h"

#define CHECK(cond) FUZZ_CHECK("fuzz_mapper", cond)

static dw_mapset_t *set;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char maps[1024], meta[1024];
    set = fuzz_maps_load("fuzz_mapper", maps, sizeof(maps), meta, sizeof(meta));
    return 0;
}

static void check_result(const dw_map_t *m, const dw_mapper_result_t *res)
{
    CHECK(json_is_object(res->payload));
    CHECK(json_is_object(res->key));
    CHECK(json_object_size(res->key) == dw_map_key_count(m));
    json_error_t jerr;
    json_t *ck = json_loads(res->canonical_key, 0, &jerr);
    CHECK(json_is_array(ck));
    size_t want = dw_map_key_count(m) + (res->company && !dw_map_key_has_company(m) ? 1 : 0);
    CHECK(json_array_size(ck) == want);
    json_decref(ck);
    char hex[DW_SHA256_HEX_SIZE];
    size_t len = 0;
    char *text = dw_mapper_dumps(res->payload, DW_MAPPER_DUMP_SORT_KEYS, &len);
    CHECK(text);
    dw_sha256_hex(text, len, hex);
    CHECK(strcmp(hex, res->content_hash) == 0);
    /* what the writer wrote, the reader reads back to the same content */
    dw_mapper_error_t err;
    json_t *again = dw_mapper_loadb(text, len, &err);
    if (!again)
        fprintf(stderr, "written payload does not read back: %s\n%s\n", err.message, text);
    CHECK(again);
    char *text2 = dw_mapper_dumps(again, DW_MAPPER_DUMP_SORT_KEYS, NULL);
    CHECK(text2);
    if (strcmp(text, text2) != 0)
        fprintf(stderr, "unstable payload:\n  %s\n  %s\n", text, text2);
    CHECK(strcmp(text, text2) == 0);
    free(text2);
    json_decref(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t nmaps = dw_mapset_count(set);
    const dw_map_t *m = dw_mapset_get(set, (data[0] >> 1) % nmaps);
    dw_map_dir_t dir = data[0] & 1 ? DW_MAP_DV_TO_FO : DW_MAP_FO_TO_DV;
    if (!dw_map_runs(m, dir))
        dir = dir == DW_MAP_FO_TO_DV ? DW_MAP_DV_TO_FO : DW_MAP_FO_TO_DV;
    dw_mapper_error_t err;
    json_t *rec = dw_mapper_loadb((const char *)data + 1, size - 1, &err);
    if (!rec) {
        CHECK(err.reason == DW_MAPPER_MALFORMED || err.reason == DW_MAPPER_INVALID_UTF8);
        CHECK(err.message[0]);
        return 0;
    }
    bool in = false;
    if (dw_mapper_in_scope(m, dir, rec, &in, &err) != DW_OK)
        CHECK(err.reason == DW_MAPPER_WRONG_TYPE);

    dw_mapper_result_t res = {0}, back = {0};
    dw_err_t rc = dw_mapper_apply(m, dir, rec, &res, &err);
    if (rc) {
        CHECK(rc == DW_ERR_INVALID_ARG);
        CHECK(err.reason != DW_MAPPER_OK && err.reason < DW_MAPPER__COUNT);
        CHECK(err.message[0]);
        CHECK(res.payload == NULL && res.key == NULL && res.canonical_key == NULL);
    } else {
        check_result(m, &res);
        dw_map_dir_t rev = dir == DW_MAP_FO_TO_DV ? DW_MAP_DV_TO_FO : DW_MAP_FO_TO_DV;
        if (dw_map_runs(m, rev)) {
            if (dw_mapper_apply(m, rev, res.payload, &back, &err) == DW_OK)
                check_result(m, &back);
            json_t *rb = NULL;
            dw_err_t trc = dw_mapper_roundtrip(m, dir, rec, &rb, &err);
            CHECK(trc == DW_OK || trc == DW_ERR_INVALID_ARG || trc == DW_ERR_CONFLICT);
            json_decref(rb);
        }
    }
    /* references made from the record's strings read back */
    for (size_t i = 0; i < dw_map_field_count(m); i++) {
        const dw_map_field_t *f = dw_map_field(m, i);
        if (!f->lookup || !f->fo)
            continue;
        const json_t *v = json_object_get(rec, f->fo);
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            continue;
        char *bind = NULL, *value = NULL, *company = NULL;
        CHECK(dw_mapper_bind(f->lookup, json_string_value(v), "c'(/)", &bind) == DW_OK);
        CHECK(dw_mapper_bind_parse(f->lookup, bind, &value, &company, NULL, &err) == DW_OK);
        CHECK(strcmp(value, json_string_value(v)) == 0);
        CHECK(!f->lookup->company || strcmp(company, "c'(/)") == 0);
        free(bind);
        free(value);
        free(company);
    }
    dw_mapper_result_clear(&res);
    dw_mapper_result_clear(&back);
    json_decref(rec);
    return 0;
}
