/*
 * fuzz_map_load: libFuzzer target for map loading and validation (dw_map, dw_mapschema). Not part
 * of the CMake build; build and run by hand:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DDW_DEFAULT_SCHEMAS_DIR="\"$PWD/schemas\"" \
 *       -Icommon tests/fuzz/fuzz_map_load.c tests/fuzz/fuzz_maps.c common/dw_map.c \
 *       common/dw_mapschema.c common/dw_mapper.c common/dw_json.c common/dw_sha256.c \
 *       common/dw_filter.c common/dw_err.c -ljansson \
 *       -o build-fuzz/fuzz_map_load
 *   mkdir -p build-fuzz/corpus-map && cp schemas/maps/[a-z]*.json tests/maps/valid/[a-z]*.json \
 *       tests/maps/invalid/[a-z]*.json build-fuzz/corpus-map/
 *   build-fuzz/fuzz_map_load -dict=tests/fuzz/map.dict -max_len=16384 -max_total_time=120 \
 *       build-fuzz/corpus-map
 *
 * The input is a map file. It is validated in memory against the standard maps and metadata
 * (loaded once) as if it were schemas/maps/<its name>.json. Besides not crashing or leaking:
 * every problem has a known keyword, a JSON pointer ("" or "/..."), a message, and the file
 * name; a file with schema problems has only schema problems, and the structural checker run
 * alone finds problems exactly then. A map that validates clean is then loaded strictly with the
 * standard maps (copied once to a scratch folder, the new map standing in for its namesake) --
 * the load must succeed and agree -- and records generated from its columns, valid and hostile
 * values chosen by the input's hash, are mapped in each direction it runs: any result must be
 * well-formed and any failure typed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "dw_map.h"
#include "dw_mapper.h"
#include "dw_mapschema.h"
#include "dw_sha256.h"
#include "fuzz_maps.h"

#define CHECK(cond) FUZZ_CHECK("fuzz_map_load", cond)

static dw_mapset_t *set;
static char scratch[256]; /* the standard maps, copied */
static char meta_dir[1024];

static const char *const keywords[] = {"schema",
                                       "name-file",
                                       "unknown-entity",
                                       "unknown-table",
                                       "entity-set",
                                       "id-column",
                                       "company-specific",
                                       "alternate-key",
                                       "filter-syntax",
                                       "unknown-column",
                                       "direction",
                                       "read-only",
                                       "type-mismatch",
                                       "value-map-value",
                                       "value-map-total",
                                       "value-map-invertible",
                                       "value-map-ambiguous",
                                       "unknown-map",
                                       "lookup-target",
                                       "lookup-key",
                                       "duplicate-source",
                                       "duplicate-destination",
                                       "key-unmapped",
                                       "key-direction",
                                       "company-key",
                                       "required",
                                       "parse",
                                       "io",
                                       "cycle",
                                       "duplicate-map",
                                       NULL};

static bool known_keyword(const char *k)
{
    for (size_t i = 0; keywords[i]; i++) {
        if (strcmp(keywords[i], k) == 0)
            return true;
    }
    return false;
}

static void count_cb(void *opaque, const char *pointer, const char *message)
{
    CHECK(pointer[0] == '\0' || pointer[0] == '/');
    CHECK(message[0] != '\0');
    (*(size_t *)opaque)++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char maps[1024], cmd[2400];
    set = fuzz_maps_load("fuzz_map_load", maps, sizeof(maps), meta_dir, sizeof(meta_dir));
    strcpy(scratch, "/tmp/fuzz_map_load-XXXXXX");
    CHECK(mkdtemp(scratch));
    snprintf(cmd, sizeof(cmd), "cp %s/*.json %s/", maps, scratch);
    CHECK(system(cmd) == 0);
    return 0;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

/* A value for a source column: usually a valid one, sometimes a hostile one. */
static json_t *value_for(const dw_meta_column_t *col, dw_map_side_t side, uint64_t h)
{
    static const char *const hostile[] = {"",
                                          "O'Brien (x)/y",
                                          "\xc3\xa9\xf0\x9f\x98\x80",
                                          "2024-02-30",
                                          "99999999999999999999",
                                          "12x",
                                          "7a4814f9-b0b8-ea11-a812-000d3a122b89",
                                          "2024-03-01T10:00:00+02:00",
                                          "/salesorders(k='v')"};
    switch (h % 13) {
    case 0:
        return json_null();
    case 1:
        return json_integer((json_int_t)(h >> 8));
    case 2:
        return json_real((double)(h >> 20) / 1000.0);
    case 3:
        return json_boolean(h & 0x100);
    case 4:
    case 5:
        return json_string(hostile[(h >> 8) % (sizeof(hostile) / sizeof(hostile[0]))]);
    case 6:
        return json_pack("{s:s}", "k", "v");
    default:
        break;
    }
    switch (col ? col->type : DW_COL_STRING) {
    case DW_COL_STRING:
    case DW_COL_LOOKUP:
        return json_string(h & 0x100 ? "Contoso" : "K1");
    case DW_COL_INTEGER:
        return json_integer((json_int_t)(h >> 40));
    case DW_COL_DECIMAL:
        return h & 0x100 ? json_string("12345678901234567.25") : json_real(0.1);
    case DW_COL_BOOLEAN:
        return json_boolean(h & 0x100);
    case DW_COL_DATE:
        return json_string(side == DW_MAP_FO ? "2024-02-29T00:00:00Z" : "2024-02-29");
    case DW_COL_DATETIME:
        return json_string("2024-03-01T10:00:00Z");
    case DW_COL_GUID:
        return json_string("7A4814F9-B0B8-EA11-A812-000D3A122B89");
    case DW_COL_ENUM:
        if (!col->nmembers)
            return json_null();
        if (side == DW_MAP_FO)
            return json_string(col->members[(h >> 8) % col->nmembers].name);
        return json_integer(col->members[(h >> 8) % col->nmembers].value);
    }
    return json_null();
}

static void check_result(const dw_map_t *m, const dw_mapper_result_t *res)
{
    CHECK(json_is_object(res->payload) && json_is_object(res->key));
    CHECK(json_object_size(res->key) <= dw_map_key_count(m));
    json_error_t jerr;
    json_t *ck = json_loads(res->canonical_key, 0, &jerr);
    size_t want = dw_map_key_count(m) + (res->company && !dw_map_key_has_company(m) ? 1 : 0);
    CHECK(json_is_array(ck) && json_array_size(ck) == want);
    json_decref(ck);
    char hex[DW_SHA256_HEX_SIZE];
    CHECK(dw_mapper_content_hash(res->payload, hex) == DW_OK);
    CHECK(strcmp(hex, res->content_hash) == 0);
}

/* Load the clean map strictly with the standard maps and map generated records with it. */
static void exercise(const char *name, const char *text, size_t size, uint64_t seed)
{
    char path[1024], saved[1024], errstr[1024];
    snprintf(path, sizeof(path), "%s/%s.json", scratch, name);
    snprintf(saved, sizeof(saved), "%s/%s.json.saved", scratch, name);
    bool replaced = rename(path, saved) == 0;
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(text, 1, size, f) == size);
    fclose(f);
    dw_map_report_t *r = dw_map_report_new();
    dw_mapset_t *mine = dw_mapset_load(scratch, meta_dir, r, errstr, sizeof(errstr));
    if (!mine) {
        /* validated clean alone, so only a problem the new map causes in another map may
         * appear (a standard map that looks it up) */
        for (size_t i = 0; i < dw_map_report_count(r); i++)
            CHECK(strcmp(dw_map_report_get(r, i)->file, path) != 0);
    }
    dw_map_report_destroy(r);
    CHECK(unlink(path) == 0);
    if (replaced)
        CHECK(rename(saved, path) == 0);
    if (!mine)
        return;
    const dw_map_t *m = dw_mapset_find(mine, name);
    CHECK(m);
    const dw_map_t **order = calloc(dw_mapset_count(mine) + 1, sizeof(*order));
    CHECK(order && dw_mapset_order(mine, order) == DW_OK);
    free(order);
    for (int d = DW_MAP_FO_TO_DV; d <= DW_MAP_DV_TO_FO; d++) {
        dw_map_dir_t dir = (dw_map_dir_t)d;
        if (!dw_map_runs(m, dir))
            continue;
        for (int round = 0; round < 4; round++) {
            json_t *rec = json_object();
            uint64_t h = mix(seed + (uint64_t)round * 977 + (uint64_t)d);
            if (dir == DW_MAP_FO_TO_DV && (h & 3))
                json_object_set_new(rec, "dataAreaId", json_string("usmf"));
            for (size_t i = 0; i < dw_map_field_count(m); i++) {
                const dw_map_field_t *fl = dw_map_field(m, i);
                const char *src = dir == DW_MAP_FO_TO_DV ? fl->fo : fl->dv;
                h = mix(h + i);
                if (!src || !dw_map_field_active(fl, dir) || h % 11 == 0)
                    continue;
                const dw_meta_column_t *col =
                    dir == DW_MAP_FO_TO_DV ? fl->fo_column : fl->dv_column;
                json_t *v =
                    fl->transform == DW_MAP_XF_VALUE_MAP && h % 3
                        ? json_deep_copy(dir == DW_MAP_FO_TO_DV ? fl->pairs[h % fl->npairs].fo
                                                                : fl->pairs[h % fl->npairs].dv)
                        : value_for(col, dir == DW_MAP_FO_TO_DV ? DW_MAP_FO : DW_MAP_DV, h);
                json_object_set_new(rec, src, v);
            }
            dw_mapper_result_t res = {0};
            dw_mapper_error_t err;
            dw_err_t rc = dw_mapper_apply(m, dir, rec, &res, &err);
            if (rc == DW_OK) {
                check_result(m, &res);
                json_t *back = NULL;
                if (dw_map_direction(m) == DW_MAP_BOTH) {
                    rc = dw_mapper_roundtrip(m, dir, rec, &back, &err);
                    CHECK(rc == DW_OK || rc == DW_ERR_INVALID_ARG || rc == DW_ERR_CONFLICT);
                    json_decref(back);
                }
            } else {
                CHECK(rc == DW_ERR_INVALID_ARG && err.reason != DW_MAPPER_OK && err.message[0]);
                CHECK(!res.payload && !res.key && !res.canonical_key);
            }
            dw_mapper_result_clear(&res);
            json_decref(rec);
        }
    }
    dw_mapset_destroy(mine);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char path[256] = "fuzz/unnamed.json";
    /* name the file after the map, so that the name rule can pass */
    json_error_t jerr;
    json_t *doc = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
    const char *name = json_string_value(json_object_get(doc, "name"));
    if (name && strlen(name) < 200 && !strchr(name, '/'))
        snprintf(path, sizeof(path), "fuzz/%s.json", name);

    dw_map_report_t *r = dw_map_report_new();
    CHECK(r);
    dw_err_t err = dw_mapset_validate_text(set, path, text, size, r);
    CHECK(err == DW_OK || err == DW_ERR_INVALID_ARG);
    CHECK((err == DW_OK) == (dw_map_report_count(r) == 0));
    bool schema = false, other = false;
    for (size_t i = 0; i < dw_map_report_count(r); i++) {
        const dw_map_problem_t *p = dw_map_report_get(r, i);
        CHECK(strcmp(p->file, path) == 0);
        if (!known_keyword(p->keyword))
            fprintf(stderr, "unknown keyword %s\n", p->keyword);
        CHECK(known_keyword(p->keyword));
        CHECK(p->pointer[0] == '\0' || p->pointer[0] == '/');
        CHECK(p->message[0] != '\0');
        if (strcmp(p->keyword, "schema") == 0)
            schema = true;
        else if (strcmp(p->keyword, "parse") != 0)
            other = true;
    }
    CHECK(!(schema && other));
    /* the structural checker alone agrees: schema problems iff it finds some */
    if (doc) {
        size_t count = 0;
        CHECK((dw_mapschema_check_map(doc, count_cb, &count) > 0) == schema);
        CHECK((count > 0) == schema);
    }
    CHECK(err != DW_OK || doc != NULL);
    if (err == DW_OK && name) {
        uint64_t seed = UINT64_C(1469598103934665603);
        for (size_t i = 0; i < size; i++)
            seed = (seed ^ data[i]) * UINT64_C(1099511628211);
        exercise(name, text, size, seed);
    }
    json_decref(doc);
    dw_map_report_destroy(r);
    return 0;
}
