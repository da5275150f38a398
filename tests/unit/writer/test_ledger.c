/* Unit tests of writer_ledger's pure parts: the decision, the entry after a write, arrays. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "writer.h"
#include "wr_test_cmd.h"

static wr_cmd_t cmd_of(const char *version, const char *hash)
{
    char buf[1024], why[400], field[64];
    wr_cmd_t c;
    wr_test_cmd(buf, sizeof(buf), "cur", "dv", "EUR", version, hash);
    cr_assert_eq(
        wr_cmd_parse(buf, strlen(buf), "cur", "dv", &c, why, sizeof(why), field, sizeof(field)),
        DW_OK, "%s", why);
    return c;
}

static wr_ledger_row_t row_of(const char *fo_version, const char *dv_hash)
{
    wr_ledger_row_t r = {0};
    r.found = true;
    r.canonical_key = strdup("EUR");
    r.version[DW_MAP_FO] = fo_version ? strdup(fo_version) : NULL;
    r.hash[DW_MAP_DV] = dv_hash ? strdup(dv_hash) : NULL;
    return r;
}

Test(writer_ledger, writes_what_the_ledger_does_not_know)
{
    wr_cmd_t c = cmd_of("5", WR_HASH_A);
    wr_ledger_row_t none = {0};
    wr_decision_t d;
    wr_decide(&c, DW_MAP_DV, &none, &d);
    cr_assert_eq(d.kind, WR_DEC_WRITE);
    cr_assert_eq(d.key, c.target_key);
    wr_cmd_clear(&c);
}

Test(writer_ledger, drops_echoes_and_no_ops)
{
    wr_cmd_t c = cmd_of("5", WR_HASH_A);
    wr_ledger_row_t r = row_of("4", WR_HASH_A);
    wr_decision_t d;
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_ECHO);
    free(r.hash[DW_MAP_DV]);
    r.hash[DW_MAP_DV] = strdup(WR_HASH_B);
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_WRITE);
    wr_ledger_row_clear(&r);
    wr_cmd_clear(&c);
}

Test(writer_ledger, drops_stale_versions_of_the_origin_side)
{
    wr_cmd_t c = cmd_of("99999999999999999999", WR_HASH_A);
    wr_ledger_row_t r = row_of("100000000000000000000", NULL);
    wr_decision_t d;
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_STALE);
    wr_ledger_row_clear(&r);
    r = row_of("99999999999999999999", NULL);
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_STALE, "the same version was applied already");
    wr_ledger_row_clear(&r);
    /* the dv side's version does not fence a command that comes from fo */
    r = row_of(NULL, NULL);
    r.version[DW_MAP_DV] = strdup("999999");
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_WRITE);
    wr_ledger_row_clear(&r);
    wr_cmd_clear(&c);
}

Test(writer_ledger, resolves_deletes_by_record_id)
{
    const char *text =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"fo\",\"op\":\"delete\","
        "\"target_key\":{},\"record_id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"fields\":{},"
        "\"source_version\":\"7\",\"content_hash\":\"" WR_HASH_A "\",\"correlation_id\":\"x\","
        "\"source_ts\":\"t\"}";
    char why[400], field[64];
    wr_cmd_t c;
    cr_assert_eq(wr_cmd_parse(text, strlen(text), "cur", "fo", &c, why, 400, field, 64), DW_OK,
                 "%s", why);
    wr_ledger_row_t none = {0};
    wr_decision_t d;
    wr_decide(&c, DW_MAP_FO, &none, &d);
    cr_assert_eq(d.kind, WR_DEC_UNRESOLVED);
    wr_ledger_row_t r = {0};
    r.found = true;
    r.canonical_key = strdup("usmf|EUR");
    r.key[DW_MAP_FO] = json_pack("{s:s}", "CurrencyCode", "EUR");
    r.hash[DW_MAP_FO] = strdup(WR_HASH_B);
    wr_decide(&c, DW_MAP_FO, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_WRITE);
    cr_assert_eq(d.key, r.key[DW_MAP_FO]);
    cr_assert(d.exists_hint);
    /* already deleted there: an echo */
    free(r.hash[DW_MAP_FO]);
    r.hash[DW_MAP_FO] = strdup(WR_LEDGER_DELETED);
    wr_decide(&c, DW_MAP_FO, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_ECHO);
    wr_ledger_row_clear(&r);
    wr_cmd_clear(&c);
}

Test(writer_ledger, passes_the_known_row_id_on_a_dataverse_delete)
{
    const char *text =
        "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\",\"op\":\"delete\","
        "\"target_key\":{\"code\":\"EUR\"},\"fields\":{},\"source_version\":\"7\","
        "\"content_hash\":\"" WR_HASH_A "\",\"correlation_id\":\"x\",\"source_ts\":\"t\"}";
    char why[400], field[64];
    wr_cmd_t c;
    cr_assert_eq(wr_cmd_parse(text, strlen(text), "cur", "dv", &c, why, 400, field, 64), DW_OK);
    wr_ledger_row_t r = row_of("3", WR_HASH_B);
    r.dv_record_id = strdup("0f8fad5b-d9cb-469f-a165-70867728950e");
    wr_decision_t d;
    wr_decide(&c, DW_MAP_DV, &r, &d);
    cr_assert_eq(d.kind, WR_DEC_WRITE);
    cr_assert_str_eq(d.record_id, r.dv_record_id);
    wr_ledger_row_clear(&r);
    wr_cmd_clear(&c);
}

Test(writer_ledger, entry_records_both_sides)
{
    char buf[2048], why[400], field[64];
    snprintf(buf, sizeof(buf),
             "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"dv\",\"op\":\"upsert\","
             "\"target_key\":{\"code\":\"EUR\"},\"fields\":{\"a\":1},\"source_version\":\"12\","
             "\"content_hash\":\"%s\",\"correlation_id\":\"x\",\"source_ts\":\"t\","
             "\"origin_hash\":\"%s\",\"origin_key\":{\"CurrencyCode\":\"EUR\"}}",
             WR_HASH_A, WR_HASH_B);
    wr_cmd_t c;
    cr_assert_eq(wr_cmd_parse(buf, strlen(buf), "cur", "dv", &c, why, 400, field, 64), DW_OK, "%s",
                 why);
    wr_ledger_put_t put;
    cr_assert_eq(wr_ledger_entry(&c, DW_MAP_DV, "EUR", c.target_key, "rid", &put), DW_OK);
    cr_assert_str_eq(put.hash[DW_MAP_DV], WR_HASH_A);
    cr_assert_str_eq(put.hash[DW_MAP_FO], WR_HASH_B);
    cr_assert_str_eq(put.version[DW_MAP_FO], "12");
    cr_assert_null(put.version[DW_MAP_DV]);
    cr_assert_str_eq(put.key_text[DW_MAP_DV], "{\"code\":\"EUR\"}");
    cr_assert_str_eq(put.key_text[DW_MAP_FO], "{\"CurrencyCode\":\"EUR\"}");
    cr_assert_str_eq(put.dv_record_id, "rid");
    wr_ledger_put_clear(&put);
    wr_cmd_clear(&c);
}

Test(writer_ledger, an_echo_moves_the_origin_version_on)
{
    char buf[2048], why[400], field[64];
    snprintf(buf, sizeof(buf),
             "{\"version\":1,\"map\":\"cur\",\"map_version\":1,\"target\":\"fo\",\"op\":\"upsert\","
             "\"target_key\":{\"code\":\"EUR\"},\"fields\":{\"a\":1},\"source_version\":\"555\","
             "\"content_hash\":\"%s\",\"correlation_id\":\"x\",\"source_ts\":\"t\","
             "\"origin_hash\":\"%s\"}",
             WR_HASH_A, WR_HASH_B);
    wr_cmd_t c;
    cr_assert_eq(wr_cmd_parse(buf, strlen(buf), "cur", "fo", &c, why, 400, field, 64), DW_OK, "%s",
                 why);
    wr_ledger_put_t put;
    cr_assert_eq(wr_ledger_entry_seen(&c, DW_MAP_FO, "EUR", &put), DW_OK);
    cr_assert_str_eq(put.version[DW_MAP_DV], "555");
    cr_assert_str_eq(put.hash[DW_MAP_DV], WR_HASH_B);
    cr_assert_null(put.hash[DW_MAP_FO], "the target side is left as it is");
    cr_assert_null(put.key_text[DW_MAP_FO]);
    cr_assert_null(put.version[DW_MAP_FO]);
    wr_ledger_put_clear(&put);
    wr_cmd_clear(&c);
}

Test(writer_ledger, array_literals_quote_and_escape)
{
    const char *vals[] = {"a", NULL, "b\"c\\d", "", "x,y{z}"};
    char *s = wr_pg_array(vals, 5);
    cr_assert_str_eq(s, "{\"a\",NULL,\"b\\\"c\\\\d\",\"\",\"x,y{z}\"}");
    free(s);
    s = wr_pg_array(NULL, 0);
    cr_assert_str_eq(s, "{}");
    free(s);
}

Test(writer_stats, formats_the_counters)
{
    wr_counters_t c = {0};
    c.consumed = 3;
    c.dead_lettered[wr_dlq_class_index("validation")] = 2;
    wr_counters_latency(&c, 1000);
    char line[2048];
    wr_counters_format(&c, line, sizeof(line));
    cr_assert(strstr(line, "consumed=3"));
    cr_assert(strstr(line, "dead_lettered=2"));
    cr_assert(strstr(line, "dlq_validation=2"));
    cr_assert_eq(wr_dlq_class_index("nope"), 7);
}
