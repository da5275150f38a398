/*
 * test_event: common/dw_event, the envelope text producers write. dw_event_build writes the text
 * member by member; it must give the same bytes as dumping the envelope object.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dw_event.h"
#include "dw_mapper.h"

/* The envelope as an object, dumped: what dw_event_build wrote before it wrote text directly. */
static char *reference(const char *event_id, const char *map, const char *source, const char *op,
                       const json_t *key, const char *record_id, const json_t *data,
                       const char *version, const char *ts, const char *capture_ts,
                       const char *correlation_id)
{
    json_t *ev = json_pack("{s:i, s:s, s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:s}", "version", 1,
                           "event_id", event_id, "map", map, "source", source, "op", op, "key",
                           (json_t *)key, "source_version", version, "source_ts", ts, "capture_ts",
                           capture_ts, "correlation_id", correlation_id);
    cr_assert_not_null(ev);
    if (record_id)
        json_object_set_new(ev, "record_id", json_string(record_id));
    json_object_set_new(ev, "data", data ? json_incref((json_t *)data) : json_null());
    char *text = dw_mapper_dumps(ev, 0, NULL);
    json_decref(ev);
    return text;
}

Test(event, build_gives_the_bytes_of_the_dumped_envelope)
{
    dw_mapper_error_t merr;
    const char *row_text = "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"C-\\\"1\\\\\\n\\u0001\","
                           "\"CreditLimit\":96548.84,\"Big\":12345678901234567890,\"Ratio\":0.1,"
                           "\"Name\":\"M\\u00fcller \\u2603\",\"Nested\":{\"a\":[1,true,null]},"
                           "\"Empty\":\"\",\"Null\":null}";
    json_t *row = dw_mapper_loadb(row_text, strlen(row_text), &merr);
    cr_assert_not_null(row, "%s", merr.message);
    json_t *key = json_pack("{s:s, s:s}", "dataAreaId", "usmf", "CustomerAccount", "C-\"1\\\n\x01");
    struct {
        const char *record_id;
        const json_t *data;
        const char *map;
    } cases[] = {
        {NULL, row, "customers_accounts"},
        {"5f1c8a33-0000-4000-8000-000000000001", row, "accounts"},
        {NULL, NULL, "odd \"map\"\t\\"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = 0;
        char *got = dw_event_build("0c9e4f1e-2b7b-8c3d-9a1e-7f00d5c2a111", cases[i].map, "fo",
                                   "snapshot", key, cases[i].record_id, cases[i].data, "42",
                                   "2026-01-02T03:04:05Z", "2026-01-02T03:04:06.007Z",
                                   "6b0568a4-711c-460d-b3a2-1118383313a9", &len);
        char *want = reference("0c9e4f1e-2b7b-8c3d-9a1e-7f00d5c2a111", cases[i].map, "fo",
                               "snapshot", key, cases[i].record_id, cases[i].data, "42",
                               "2026-01-02T03:04:05Z", "2026-01-02T03:04:06.007Z",
                               "6b0568a4-711c-460d-b3a2-1118383313a9");
        cr_assert_not_null(got);
        cr_assert_not_null(want);
        cr_assert_str_eq(got, want);
        cr_assert_eq(len, strlen(want));
        free(got);
        free(want);
    }
    json_decref(key);
    json_decref(row);
}

Test(event, build_refuses_missing_members)
{
    json_t *key = json_pack("{s:s}", "k", "v");
    size_t len = 0;
    cr_assert_null(dw_event_build("id", "m", "fo", "snapshot", key, NULL, NULL, "1", NULL,
                                  "2026-01-02T03:04:06.007Z", "c", &len));
    json_decref(key);
}
