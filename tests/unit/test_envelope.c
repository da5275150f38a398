/*
 * Unit tests for dw_envelope: a valid event of each op and source parses; every invalid member
 * is rejected naming that member; hostile values (embedded NUL, huge integers, deep nesting,
 * invalid UTF-8, giant payloads) are rejected or carried safely; RFC 3339 times; the command
 * built from a mapper result has the schema's members, a deterministic command_id and, for a
 * key-less Dataverse delete, record_id with an empty target_key.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_envelope.h"
#include "dw_map.h"
#include "dw_mapper.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"

static const char valid[] =
    "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":"
    "\"customers_accounts\",\"source\":\"fo\",\"op\":\"upsert\",\"key\":{\"dataAreaId\":\"usmf\","
    "\"CustomerAccount\":\"US-001\"},\"data\":{\"dataAreaId\":\"usmf\",\"CustomerAccount\":"
    "\"US-001\",\"PartyType\":\"Organization\",\"OrganizationName\":\"Contoso\","
    "\"CreditLimit\":12345678901234567890.12},"
    "\"source_version\":\"1709287200000000\",\"source_ts\":\"2024-03-01T10:00:00Z\","
    "\"capture_ts\":\"2024-03-01T10:00:00.125+01:00\",\"correlation_id\":\"c-1\"}";

/* The valid envelope with member name replaced by raw JSON text (NULL: removed). */
static char *with(const char *name, const char *raw)
{
    json_t *v = json_loads(valid, 0, NULL);
    cr_assert_not_null(v);
    if (raw) {
        json_error_t jerr;
        json_t *nv = json_loads(raw, JSON_DECODE_ANY, &jerr);
        cr_assert_not_null(nv, "%s: %s", raw, jerr.text);
        json_object_set_new(v, name, nv);
    } else {
        json_object_del(v, name);
    }
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return s;
}

static void expect_invalid(const char *text, const char *field)
{
    dw_event_t ev;
    dw_envelope_error_t err;
    dw_err_t rc = dw_event_parse(text, strlen(text), 0, &ev, &err);
    cr_assert_eq(rc, DW_ERR_INVALID_ARG, "accepted or wrong error for %s: %s", field, err.message);
    cr_assert_eq(err.reason, DW_ENVELOPE_INVALID);
    cr_assert_str_eq(err.field, field, "field: %s (message %s)", err.field, err.message);
    cr_assert(strncmp(err.message, field, strlen(field)) == 0, "message: %s", err.message);
    cr_assert_null(ev.root);
}

static void expect_member_invalid(const char *name, const char *raw)
{
    char *s = with(name, raw);
    expect_invalid(s, name);
    free(s);
}

Test(envelope, valid_event_parses_with_exact_numbers)
{
    dw_event_t ev;
    dw_envelope_error_t err;
    cr_assert_eq(dw_event_parse(valid, strlen(valid), 0, &ev, &err), DW_OK, "%s", err.message);
    cr_assert_str_eq(ev.map, "customers_accounts");
    cr_assert_eq(ev.source, DW_MAP_FO);
    cr_assert_eq(ev.op, DW_EVENT_UPSERT);
    cr_assert_str_eq(ev.source_version, "1709287200000000");
    cr_assert_str_eq(ev.correlation_id, "c-1");
    cr_assert_null(ev.record_id);
    /* more than 15 significant digits: kept as the literal */
    cr_assert_str_eq(json_string_value(json_object_get(ev.data, "CreditLimit")),
                     "12345678901234567890.12");
    dw_event_clear(&ev);
    cr_assert_null(ev.root);
}

Test(envelope, dataverse_delete_with_record_id_only_is_valid)
{
    const char *t =
        "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":\"m\","
        "\"source\":\"dv\",\"op\":\"delete\",\"key\":{},\"record_id\":"
        "\"11111111-2222-3333-4444-555555555555\",\"data\":null,\"source_version\":\"0\","
        "\"source_ts\":\"2024-02-29T23:59:60Z\",\"capture_ts\":\"2024-03-01t00:00:00.5z\","
        "\"correlation_id\":\"x\"}";
    dw_event_t ev;
    dw_envelope_error_t err;
    cr_assert_eq(dw_event_parse(t, strlen(t), 0, &ev, &err), DW_OK, "%s", err.message);
    cr_assert_eq(ev.op, DW_EVENT_DELETE);
    cr_assert_null(ev.data);
    cr_assert_str_eq(ev.record_id, "11111111-2222-3333-4444-555555555555");
    dw_event_clear(&ev);
}

Test(envelope, each_invalid_member_is_named)
{
    expect_member_invalid("version", "2");
    expect_member_invalid("version", "1.0");
    expect_member_invalid("version", "4294967297");
    expect_member_invalid("version", "\"1\"");
    expect_member_invalid("event_id", "\"not-a-uuid\"");
    expect_member_invalid("event_id", "\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a1g\"");
    expect_member_invalid("event_id", "7");
    expect_member_invalid("map", "\"Customers\"");
    expect_member_invalid("map", "\"1abc\"");
    expect_member_invalid("map",
                          "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"");
    expect_member_invalid("source", "\"ax\"");
    expect_member_invalid("op", "\"merge\"");
    expect_member_invalid("key", "[]");
    expect_member_invalid("key", "{}");
    expect_member_invalid("record_id", "\"11111111-2222-3333-4444-555555555555\""); /* fo */
    expect_member_invalid("data", "[1]");
    expect_member_invalid("data", "null"); /* upsert needs data */
    expect_member_invalid("source_version", "\"007\"");
    expect_member_invalid("source_version", "\"-1\"");
    expect_member_invalid("source_version", "\"1234567890123456789012345678901234567890\"");
    expect_member_invalid("source_version", "12");
    expect_member_invalid("source_ts", "\"2024-02-30T10:00:00Z\"");
    expect_member_invalid("source_ts", "\"2024-03-01 10:00:00Z\"");
    expect_member_invalid("source_ts", "\"2024-03-01T10:00:00\"");
    expect_member_invalid("capture_ts", "\"2023-02-29T10:00:00Z\"");
    expect_member_invalid("capture_ts", "\"2024-03-01T24:00:00Z\"");
    expect_member_invalid("correlation_id", "\"\"");
    expect_member_invalid(
        "correlation_id",
        "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"");
    /* missing required members */
    const char *req[] = {"version", "event_id",       "map",       "source",     "op",
                         "key",     "source_version", "source_ts", "capture_ts", "correlation_id"};
    for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        expect_member_invalid(req[i], NULL);
    /* an unknown member */
    expect_member_invalid("extra", "1");
}

Test(envelope, key_values_must_be_scalars)
{
    char *s = with("key", "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":{\"x\":1}}");
    expect_invalid(s, "key/CustomerAccount");
    free(s);
    s = with("key", "{\"a\":null}");
    expect_invalid(s, "key/a");
    free(s);
}

Test(envelope, delete_rules)
{
    const char *base =
        "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":\"m\","
        "\"source\":\"dv\",\"op\":\"delete\",\"key\":{},%s\"source_version\":\"1\","
        "\"source_ts\":\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00Z\","
        "\"correlation_id\":\"x\"}";
    char buf[1024];
    const char *mid = strstr(base, "%s");
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(mid - base), base, "", mid + 2);
    expect_invalid(buf, "key"); /* neither key nor record_id */
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(mid - base), base,
             "\"record_id\":\"11111111-2222-3333-4444-555555555555\",\"data\":{\"a\":1},", mid + 2);
    expect_invalid(buf, "data");
}

Test(envelope, hostile_values)
{
    dw_event_t ev;
    dw_envelope_error_t err;
    /* an escaped NUL in a string: refused by the reader (never reaches a C string) */
    char nul[sizeof(valid) + 16];
    const char *c1 = strstr(valid, "\"c-1\"");
    snprintf(nul, sizeof(nul), "%.*s\"a\\u0000b\"%s", (int)(c1 - valid), valid, c1 + 5);
    cr_assert_eq(dw_event_parse(nul, strlen(nul), 0, &ev, &err), DW_ERR_PARSE, "%s", nul);
    cr_assert_eq(err.reason, DW_ENVELOPE_MALFORMED);
    /* not JSON, duplicate keys, not an object, empty */
    const char *bad[] = {"not json", "{\"version\":1,\"version\":1}", "[1,2]", "", "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dw_err_t rc = dw_event_parse(bad[i], strlen(bad[i]), 0, &ev, &err);
        cr_assert_neq(rc, DW_OK, "%s accepted", bad[i]);
        cr_assert_null(ev.root);
    }
    cr_assert_eq(dw_event_parse("not json", 8, 0, &ev, &err), DW_ERR_PARSE);
    cr_assert_eq(err.reason, DW_ENVELOPE_MALFORMED);
    cr_assert_null(strstr(err.message, "not"), "the message quotes the input: %s", err.message);
    /* invalid UTF-8 */
    char utf[] = "{\"version\":1,\"map\":\"\xff\xfe\"}";
    cr_assert_eq(dw_event_parse(utf, strlen(utf), 0, &ev, &err), DW_ERR_PARSE);
    cr_assert_eq(err.reason, DW_ENVELOPE_INVALID_UTF8);
    /* deep nesting inside data */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 16);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    cr_assert_neq(dw_event_parse(deep, depth * 2, 0, &ev, &err), DW_OK);
    free(deep);
    /* NULL / zero length */
    cr_assert_eq(dw_event_parse(NULL, 0, 0, &ev, &err), DW_ERR_PARSE);
}

Test(envelope, giant_payloads_are_bounded_or_carried)
{
    dw_event_t ev;
    dw_envelope_error_t err;
    /* a 4 MB memo field: over a 1 MB limit it is too_large without parsing */
    size_t big = 4 * 1024 * 1024;
    char *memo = malloc(big + 3);
    memo[0] = '"';
    memset(memo + 1, 'x', big);
    memo[big + 1] = '"';
    memo[big + 2] = '\0';
    json_t *v = json_loads(valid, 0, NULL);
    json_object_set_new(json_object_get(v, "data"), "SalesMemo", json_stringn(memo + 1, big));
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    free(memo);
    cr_assert_eq(dw_event_parse(s, strlen(s), 1024 * 1024, &ev, &err), DW_ERR_PARSE);
    cr_assert_eq(err.reason, DW_ENVELOPE_TOO_LARGE);
    /* without a limit it is carried whole */
    cr_assert_eq(dw_event_parse(s, strlen(s), 0, &ev, &err), DW_OK, "%s", err.message);
    cr_assert_eq(json_string_length(json_object_get(ev.data, "SalesMemo")), big);
    dw_event_clear(&ev);
    free(s);
}

Test(envelope, rfc3339_times)
{
    long long ms = 0;
    cr_assert(dw_envelope_rfc3339("1970-01-01T00:00:00Z", &ms));
    cr_assert_eq(ms, 0);
    cr_assert(dw_envelope_rfc3339("2024-03-01T10:00:00.125Z", &ms));
    cr_assert_eq(ms, 1709287200125LL);
    cr_assert(dw_envelope_rfc3339("2024-03-01T11:00:00.125+01:00", &ms));
    cr_assert_eq(ms, 1709287200125LL);
    cr_assert(dw_envelope_rfc3339("2000-02-29T00:00:00Z", NULL));
    cr_assert_not(dw_envelope_rfc3339("1900-02-29T00:00:00Z", NULL));
    cr_assert_not(dw_envelope_rfc3339("2024-03-01T10:00:00.Z", NULL));
    cr_assert_not(dw_envelope_rfc3339("2024-03-01T10:00:00+1:00", NULL));
    cr_assert_not(dw_envelope_rfc3339("2024-03-01T10:00:00Zjunk", NULL));
}

Test(envelope, command_from_a_mapper_result)
{
    char errstr[1024];
    dw_mapset_t *set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
    const dw_map_t *map = dw_mapset_find(set, "customers_accounts");
    dw_event_t ev;
    dw_envelope_error_t err;
    cr_assert_eq(dw_event_parse(valid, strlen(valid), 0, &ev, &err), DW_OK);
    dw_mapper_result_t res = {0};
    dw_mapper_error_t merr;
    cr_assert_eq(dw_mapper_apply(map, DW_MAP_FO_TO_DV, ev.data, &res, &merr), DW_OK, "%s",
                 merr.message);
    json_t *cmd = dw_command_build(&ev, map, DW_MAP_DV, &res);
    cr_assert_not_null(cmd);
    cr_assert_eq(json_integer_value(json_object_get(cmd, "version")), 1);
    cr_assert_eq(json_integer_value(json_object_get(cmd, "map_version")), dw_map_version(map));
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "target")), "dv");
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "op")), "upsert");
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "content_hash")), res.content_hash);
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "source_ts")), ev.source_ts);
    cr_assert_null(json_object_get(cmd, "record_id"));
    const char *cid = json_string_value(json_object_get(cmd, "command_id"));
    char again[37];
    dw_envelope_command_id(ev.event_id, DW_MAP_DV, again);
    cr_assert_str_eq(cid, again);
    cr_assert_eq(cid[14], '8');
    dw_envelope_command_id(ev.event_id, DW_MAP_FO, again);
    cr_assert_str_neq(cid, again);
    /* exact numbers survive to the command text */
    char *text = dw_mapper_dumps(cmd, 0, NULL);
    cr_assert_not_null(strstr(text, "12345678901234567890.12"), "%s", text);
    free(text);
    json_decref(cmd);
    dw_mapper_result_clear(&res);
    dw_event_clear(&ev);

    const char *del =
        "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":"
        "\"customers_accounts\",\"source\":\"dv\",\"op\":\"delete\",\"key\":{},\"record_id\":"
        "\"11111111-2222-3333-4444-555555555555\",\"source_version\":\"9\",\"source_ts\":"
        "\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00Z\",\"correlation_id\":"
        "\"x\"}";
    cr_assert_eq(dw_event_parse(del, strlen(del), 0, &ev, &err), DW_OK, "%s", err.message);
    cmd = dw_command_build(&ev, map, DW_MAP_FO, NULL);
    cr_assert_not_null(cmd);
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "op")), "delete");
    cr_assert_eq(json_object_size(json_object_get(cmd, "target_key")), 0);
    cr_assert_eq(json_object_size(json_object_get(cmd, "fields")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "record_id")),
                     "11111111-2222-3333-4444-555555555555");
    char hash[DW_SHA256_HEX_SIZE];
    json_t *empty = json_object();
    dw_mapper_content_hash(empty, hash);
    json_decref(empty);
    cr_assert_str_eq(json_string_value(json_object_get(cmd, "content_hash")), hash);
    json_decref(cmd);
    dw_event_clear(&ev);
    dw_mapset_destroy(set);
}

/* dw_command_text writes the command dw_command_build builds, plus the loop-prevention members,
 * with fields as the very text content_hash is the hash of. */
static void text_equals_build(const dw_event_t *ev, const dw_map_t *map, dw_map_side_t target,
                              const dw_mapper_result_t *res)
{
    json_t *cmd = dw_command_build(ev, map, target, res);
    cr_assert_not_null(cmd);
    size_t len = 0;
    char *text = dw_command_text(ev, map, target, res, "ab" "0123456789abcdef0123456789abcdef"
                                 "0123456789abcdef0123456789abcd", true, &len);
    cr_assert_not_null(text);
    cr_assert_eq(strlen(text), len);
    json_error_t jerr;
    json_t *back = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(back, "%s: %s", text, jerr.text);
    cr_assert_str_eq(json_string_value(json_object_get(back, "origin_hash")),
                     "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd");
    if (json_object_size(ev->key) > 0)
        cr_assert(json_equal(json_object_get(back, "origin_key"), ev->key));
    else
        cr_assert_null(json_object_get(back, "origin_key"));
    json_object_del(back, "origin_hash");
    json_object_del(back, "origin_key");
    cr_assert(json_equal(back, cmd), "%s", text);
    if (res && ev->op != DW_EVENT_DELETE) {
        char hash[DW_SHA256_HEX_SIZE];
        const char *f = strstr(text, "\"fields\":") + strlen("\"fields\":");
        cr_assert_eq(strncmp(f, res->payload_text, res->payload_len), 0);
        dw_sha256_hex(res->payload_text, res->payload_len, hash);
        cr_assert_str_eq(hash, res->content_hash);
    }
    json_decref(back);
    json_decref(cmd);
    free(text);
}

Test(envelope, command_text_is_the_built_command)
{
    char errstr[1024];
    dw_mapset_t *set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
    const dw_map_t *map = dw_mapset_find(set, "customers_accounts");
    dw_event_t ev;
    dw_envelope_error_t err;
    cr_assert_eq(dw_event_parse(valid, strlen(valid), 0, &ev, &err), DW_OK);
    dw_mapper_result_t res = {0};
    dw_mapper_error_t merr;
    cr_assert_eq(dw_mapper_apply(map, DW_MAP_FO_TO_DV, ev.data, &res, &merr), DW_OK, "%s",
                 merr.message);
    text_equals_build(&ev, map, DW_MAP_DV, &res);
    dw_mapper_result_clear(&res);
    dw_event_clear(&ev);

    const char *del =
        "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":"
        "\"customers_accounts\",\"source\":\"dv\",\"op\":\"delete\",\"key\":{},\"record_id\":"
        "\"11111111-2222-3333-4444-555555555555\",\"source_version\":\"9\",\"source_ts\":"
        "\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00Z\",\"correlation_id\":"
        "\"a \\\"quoted\\\"\\n\\u0001 \\u00e9 id\"}";
    cr_assert_eq(dw_event_parse(del, strlen(del), 0, &ev, &err), DW_OK, "%s", err.message);
    text_equals_build(&ev, map, DW_MAP_FO, NULL);
    dw_event_clear(&ev);
    dw_mapset_destroy(set);
}
