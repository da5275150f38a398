/* Unit tests of writer_command: strict command parsing and decimal version comparison. */
#include <criterion/criterion.h>
#include <string.h>

#include "writer.h"
#include "wr_test_cmd.h"

static dw_err_t parse(const char *text, wr_cmd_t *cmd, char *why, char *field)
{
    return wr_cmd_parse(text, strlen(text), "cur", "dv", cmd, why, 400, field, 64);
}

Test(writer_command, reads_a_valid_upsert)
{
    char buf[1024], why[400], field[64];
    wr_cmd_t cmd;
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", "EUR", "12345678901234567890123456789", WR_HASH_A);
    cr_assert_eq(parse(buf, &cmd, why, field), DW_OK, "%s", why);
    cr_assert_str_eq(cmd.map, "cur");
    cr_assert_eq(cmd.op, DW_WOP_UPSERT);
    cr_assert_str_eq(json_string_value(json_object_get(cmd.target_key, "code")), "EUR");
    cr_assert_null(cmd.origin_hash);
    cr_assert_null(cmd.record_id);
    wr_cmd_clear(&cmd);
}

Test(writer_command, reads_origin_members_and_a_record_id_delete)
{
    const char *text =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":2,\"target\":\"dv\",\"op\":\"delete\","
        "\"target_key\":{},\"record_id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"fields\":{},"
        "\"source_version\":\"7\",\"content_hash\":\"" WR_HASH_A "\",\"correlation_id\":\"x\","
        "\"source_ts\":\"2024-01-01T00:00:00Z\",\"origin_hash\":\"" WR_HASH_B "\","
        "\"origin_key\":{\"CurrencyCode\":\"EUR\"}}";
    char why[400], field[64];
    wr_cmd_t cmd;
    cr_assert_eq(parse(text, &cmd, why, field), DW_OK, "%s", why);
    cr_assert_eq(cmd.op, DW_WOP_DELETE);
    cr_assert_str_eq(cmd.record_id, "0f8fad5b-d9cb-469f-a165-70867728950e");
    cr_assert_str_eq(cmd.origin_hash, WR_HASH_B);
    cr_assert_not_null(cmd.origin_key);
    wr_cmd_clear(&cmd);
}

Test(writer_command, rejects_what_the_schema_rejects)
{
    char buf[1024], why[400], field[64];
    wr_cmd_t cmd;
    cr_assert_eq(parse("not json", &cmd, why, field), DW_ERR_PARSE);
    cr_assert_eq(parse("{\"version\":1,\"version\":1}", &cmd, why, field), DW_ERR_PARSE);
    wr_test_cmd(buf, sizeof(buf), "cur", "fo", "EUR", "1", WR_HASH_A);
    cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "target");
    wr_test_cmd(buf, sizeof(buf), "other", "dv", "EUR", "1", WR_HASH_A);
    cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "map");
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", "EUR", "01", WR_HASH_A);
    cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "source_version");
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", "EUR", "1234567890123456789012345678901234567890",
                WR_HASH_A);
    cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE);
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", "EUR", "1", "ABC");
    cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "content_hash");
    /* an unknown member */
    const char *extra = "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                        "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":{},"
                        "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                        "\"correlation_id\":\"c\",\"source_ts\":\"t\",\"bogus\":1}";
    cr_assert_eq(parse(extra, &cmd, why, field), DW_ERR_PARSE);
    /* empty key without record_id; record_id on an upsert */
    const char *nokey = "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                        "\"op\":\"upsert\",\"target_key\":{},\"fields\":{},"
                        "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                        "\"correlation_id\":\"c\",\"source_ts\":\"t\"}";
    cr_assert_eq(parse(nokey, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "target_key");
    /* a delete with fields */
    const char *delf = "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                       "\"op\":\"delete\",\"target_key\":{\"a\":1},\"fields\":{\"b\":2},"
                       "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                       "\"correlation_id\":\"c\",\"source_ts\":\"t\"}";
    cr_assert_eq(parse(delf, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "fields");
    cr_assert_null(cmd.root);
}

Test(writer_command, rejects_an_empty_or_nested_origin_key)
{
    char why[400], field[64];
    wr_cmd_t cmd;
    const char *empty =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\",\"op\":\"upsert\","
        "\"target_key\":{\"a\":1},\"fields\":{},\"source_version\":\"1\",\"content_hash\":"
        "\"" WR_HASH_A "\",\"correlation_id\":\"c\",\"source_ts\":\"t\",\"origin_key\":{}}";
    cr_assert_eq(parse(empty, &cmd, why, field), DW_ERR_PARSE);
    cr_assert_str_eq(field, "origin_key");
    const char *nested =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\",\"op\":\"upsert\","
        "\"target_key\":{\"a\":1},\"fields\":{},\"source_version\":\"1\",\"content_hash\":"
        "\"" WR_HASH_A "\",\"correlation_id\":\"c\",\"source_ts\":\"t\",\"origin_key\":{\"a\":{}}}";
    cr_assert_eq(parse(nested, &cmd, why, field), DW_ERR_PARSE);
}

Test(writer_command, compares_versions_as_decimals)
{
    cr_assert_lt(wr_version_cmp("9", "10"), 0);
    cr_assert_gt(wr_version_cmp("100000000000000000000000000000000000000", "99"), 0);
    cr_assert_eq(wr_version_cmp("123456789012345678901234567890", "123456789012345678901234567890"),
                 0);
    cr_assert_lt(wr_version_cmp("0", "1"), 0);
    cr_assert_gt(wr_version_cmp("18446744073709551617", "18446744073709551616"), 0);
}

Test(writer_command, keys_must_be_utf8_text)
{
    cr_assert(wr_key_valid("usmf|US-001", 11));
    cr_assert(wr_key_valid("M\xc3\xbcller", 7));
    cr_assert(wr_key_valid("\xf0\x9f\x98\x80", 4));
    cr_assert_not(wr_key_valid("", 0));
    cr_assert_not(wr_key_valid(NULL, 0));
    cr_assert_not(wr_key_valid("a\0b", 3));
    cr_assert_not(wr_key_valid("\xc3", 1), "truncated");
    cr_assert_not(wr_key_valid("\xc0\xaf", 2), "overlong");
    cr_assert_not(wr_key_valid("\xed\xa0\x80", 3), "surrogate");
    cr_assert_not(wr_key_valid("\xff", 1));
}
