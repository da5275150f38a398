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
    cr_assert(strstr(why, "bogus"), "%s", why);
    /* an unknown member with an empty name is still one */
    const char *empty = "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                        "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":{},"
                        "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                        "\"correlation_id\":\"c\",\"source_ts\":\"t\",\"\":1}";
    cr_assert_eq(parse(empty, &cmd, why, field), DW_ERR_PARSE);
    cr_assert(strstr(why, "left unpacked: \"\""), "%s", why);
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

Test(writer_command, keeps_the_fields_as_their_text)
{
    const char *text =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\",\"op\":\"upsert\","
        "\"target_key\":{\"code\":\"E\\u0055R\",\"n\":7,\"r\":1.5,\"b\":true},"
        "\"fields\":{ \"name\" : \"Euro \\\"\\u20ac\\\"\", \"rate\":1.10, \"x\":{\"y\":[1,2]} },"
        "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\",\"correlation_id\":\"c\","
        "\"source_ts\":\"t\"}";
    char why[400], field[64];
    wr_cmd_t cmd;
    cr_assert_eq(parse(text, &cmd, why, field), DW_OK, "%s", why);
    cr_assert_str_eq(cmd.fields_text,
                     "{ \"name\" : \"Euro \\\"\\u20ac\\\"\", \"rate\":1.10, \"x\":{\"y\":[1,2]} }");
    cr_assert_eq(cmd.fields_len, strlen(cmd.fields_text));
    cr_assert_eq(cmd.nfields, 3);
    cr_assert_str_eq(json_string_value(json_object_get(cmd.target_key, "code")), "EUR");
    cr_assert_eq(json_integer_value(json_object_get(cmd.target_key, "n")), 7);
    cr_assert(json_is_real(json_object_get(cmd.target_key, "r")));
    cr_assert(json_is_true(json_object_get(cmd.target_key, "b")));
    cr_assert_str_eq(cmd.correlation_id, "c");
    wr_cmd_clear(&cmd);
}

Test(writer_command, rejects_what_jansson_rejects)
{
    char why[400], field[64];
    wr_cmd_t cmd;
    char buf[1024];
    /* a valid command whose fields are replaced by each case */
    static const char *const bad_fields[] = {
        "{\"a\":1,\"a\":2}",            /* duplicate member */
        "{\"a\":{\"b\":1,\"b\":1}}",    /* duplicate member, nested */
        "{\"a\\u0062\":1,\"ab\":2}",    /* duplicate member, escaped */
        "{\"a\":01}",                   /* leading zero */
        "{\"a\":1.}",                   /* no fraction digits */
        "{\"a\":\"\\u0000\"}",          /* NUL */
        "{\"a\":\"\\ud800\"}",          /* lone surrogate */
        "{\"a\":\"\\x\"}",              /* unknown escape */
        "{\"a\":\"\xc3\x28\"}",         /* invalid UTF-8 */
        "{\"a\":\"\t\"}",               /* control character */
        "{\"a\":99999999999999999999}", /* too big integer */
        "{\"a\":1e999}",                /* real overflow */
        "{\"a\":tru}",                  /* bad literal */
        "{\"a\":[1,]}",                 /* trailing comma */
        "{\"a\":1",                     /* truncated */
    };
    for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                 "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":%s,"
                 "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                 "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
                 bad_fields[i]);
        cr_assert_eq(parse(buf, &cmd, why, field), DW_ERR_PARSE, "case %zu: %s", i, bad_fields[i]);
        cr_assert(strncmp(why, "not JSON: line 1 column ", 24) == 0, "%s", why);
    }
    /* trailing garbage; wrong member types; many members with a duplicate among them */
    cr_assert_eq(parse("{\"version\":1} x", &cmd, why, field), DW_ERR_PARSE);
    cr_assert_eq(parse("{\"version\":\"1\",\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                       "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":{},"
                       "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                       "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
                       &cmd, why, field),
                 DW_ERR_PARSE);
    cr_assert(strstr(why, "Expected integer"), "%s", why);
    cr_assert_eq(parse("{\"version\":1.0,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                       "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":{},"
                       "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                       "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
                       &cmd, why, field),
                 DW_ERR_PARSE);
    cr_assert_eq(parse("{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
                       "\"op\":\"upsert\",\"target_key\":{\"a\":null},\"fields\":{},"
                       "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
                       "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
                       &cmd, why, field),
                 DW_ERR_PARSE);
    cr_assert_str_eq(field, "target_key");
    char many[4096];
    size_t o = (size_t)snprintf(many, sizeof(many), "{");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "\"c%d\":%d,", i, i);
    snprintf(many + o, sizeof(many) - o, "\"c57\":0}");
    snprintf(buf, sizeof(buf), "%s", "");
    char doc[8192];
    snprintf(doc, sizeof(doc),
             "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
             "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":%s,"
             "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
             "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
             many);
    cr_assert_eq(parse(doc, &cmd, why, field), DW_ERR_PARSE);
    cr_assert(strstr(why, "duplicate"), "%s", why);
    many[o - 1] = '}';
    many[o] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\","
             "\"op\":\"upsert\",\"target_key\":{\"a\":1},\"fields\":%s,"
             "\"source_version\":\"1\",\"content_hash\":\"" WR_HASH_A "\","
             "\"correlation_id\":\"c\",\"source_ts\":\"t\"}",
             many);
    cr_assert_eq(parse(doc, &cmd, why, field), DW_OK, "%s", why);
    cr_assert_eq(cmd.nfields, 100);
    wr_cmd_clear(&cmd);
}
