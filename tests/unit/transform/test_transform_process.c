/*
 * Unit tests for dw-transform's message step (tx_process) and counters: a valid event becomes a
 * command for the map's target keyed by the canonical key; out-of-scope events are dropped;
 * directions the map does not run are skipped; poison, envelope/topic mismatches, unknown maps
 * and mapping errors become dead letters with class, reason and field; the counters merge a
 * committed transaction and give latency quantiles.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "dw_dlq.h"
#include "transform.h"

#define MAPS     DW_SOURCE_DIR "/schemas/maps"
#define METADATA DW_SOURCE_DIR "/schemas/metadata"

static dw_mapset_t *set;

static void load(void)
{
    char errstr[1024];
    set = dw_mapset_load(MAPS, METADATA, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(set, "%s", errstr);
}

static void unload(void)
{
    dw_mapset_destroy(set);
}

TestSuite(transform, .init = load, .fini = unload);

static char *event(const char *map, const char *source, const char *party, const char *onhold)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":\"%s\","
             "\"source\":\"%s\",\"op\":\"upsert\",\"key\":{\"dataAreaId\":\"USMF\","
             "\"CustomerAccount\":\"US-001\"},\"data\":{\"dataAreaId\":\"USMF\","
             "\"CustomerAccount\":\"US-001\",\"PartyType\":\"%s\",\"OrganizationName\":\"C\","
             "\"OnHoldStatus\":\"%s\"},\"source_version\":\"5\",\"source_ts\":"
             "\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00.125Z\","
             "\"correlation_id\":\"corr\"}",
             map, source, party, onhold);
    return buf;
}

static void run(const char *topic, const char *value, tx_outcome_t *out)
{
    cr_assert_eq(tx_process(set, topic, value, strlen(value), 1 << 20, out), DW_OK);
}

Test(transform, a_valid_event_becomes_a_command)
{
    tx_outcome_t out;
    run("dw.customers_accounts.fo", event("customers_accounts", "fo", "Organization", "No"), &out);
    cr_assert_eq(out.kind, TX_OUT_COMMAND, "%s", out.message);
    cr_assert_str_eq(out.topic, "dw.customers_accounts.to-dv");
    cr_assert_str_eq(out.key, "[\"usmf\",\"us-001\"]");
    cr_assert_eq(out.key_len, strlen(out.key));
    cr_assert_str_eq(out.op, "upsert");
    cr_assert_str_eq(out.map, "customers_accounts");
    cr_assert_str_eq(out.source, "fo");
    cr_assert_str_eq(out.correlation_id, "corr");
    cr_assert_eq(out.capture_ms, 1709287200125LL);
    json_t *c = json_loadb(out.value, out.value_len, 0, NULL);
    cr_assert_not_null(c);
    cr_assert_str_eq(json_string_value(json_object_get(c, "target")), "dv");
    cr_assert_eq(json_integer_value(json_object_get(c, "map_version")), 1);
    json_decref(c);
    tx_outcome_clear(&out);
    cr_assert_null(out.value);
}

Test(transform, out_of_scope_is_dropped_and_unknown_direction_skipped)
{
    tx_outcome_t out;
    run("dw.customers_accounts.fo", event("customers_accounts", "fo", "Person", "No"), &out);
    cr_assert_eq(out.kind, TX_OUT_DROP);
    tx_outcome_clear(&out);
    /* legal_entities runs fo-to-dv only: a Dataverse event is skipped */
    char ev[1024];
    snprintf(ev, sizeof(ev),
             "{\"version\":1,\"event_id\":\"0b6f4b4e-7c1d-4c52-9d55-0c8f1f3e2a11\",\"map\":"
             "\"legal_entities\",\"source\":\"dv\",\"op\":\"upsert\",\"key\":{\"cdm_companycode\":"
             "\"usmf\"},\"data\":{\"cdm_companycode\":\"usmf\"},\"source_version\":\"5\","
             "\"source_ts\":\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00Z\","
             "\"correlation_id\":\"c\"}");
    run("dw.legal_entities.dv", ev, &out);
    cr_assert_eq(out.kind, TX_OUT_SKIP);
    tx_outcome_clear(&out);
}

Test(transform, failures_become_dead_letters)
{
    tx_outcome_t out;
    run("dw.customers_accounts.fo", "{oops", &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.topic, "dw.customers_accounts.dlq");
    cr_assert_str_eq(out.cls, DW_DLQ_CLASS_POISON);
    cr_assert_str_eq(out.reason, "malformed_json");
    tx_outcome_clear(&out);

    run("dw.customers_accounts.fo", "{\"version\":2}", &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.reason, "invalid_envelope");
    cr_assert_str_neq(out.field, "");
    tx_outcome_clear(&out);

    /* the envelope names another map, or another source, than its topic */
    run("dw.customers_accounts.fo", event("vendors", "fo", "Organization", "No"), &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.field, "map");
    tx_outcome_clear(&out);
    run("dw.customers_accounts.dv", event("customers_accounts", "fo", "Organization", "No"), &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.field, "source");
    tx_outcome_clear(&out);

    run("dw.no_such_map.fo", event("no_such_map", "fo", "Organization", "No"), &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.topic, "dw._unknown.dlq");
    cr_assert_str_eq(out.cls, DW_DLQ_CLASS_UNKNOWN_MAP);
    tx_outcome_clear(&out);

    run("dw.customers_accounts.fo", event("customers_accounts", "fo", "Organization", "Bogus"),
        &out);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.cls, DW_DLQ_CLASS_MAPPING);
    cr_assert_str_eq(out.reason, "unmapped_value");
    cr_assert_str_eq(out.field, "OnHoldStatus");
    tx_outcome_clear(&out);

    /* too large */
    const char *ev = event("customers_accounts", "fo", "Organization", "No");
    cr_assert_eq(tx_process(set, "dw.customers_accounts.fo", ev, strlen(ev), 100, &out), DW_OK);
    cr_assert_eq(out.kind, TX_OUT_DLQ);
    cr_assert_str_eq(out.reason, "too_large");
    tx_outcome_clear(&out);
}

Test(transform, counters_merge_and_quantiles)
{
    tx_counters_t c = {0};
    tx_pending_t p = {
        .consumed = 10, .produced = 7, .dropped = 1, .skipped = 1, .dead_lettered = 1};
    tx_counters_commit(&c, &p);
    p.consumed = 4;
    tx_counters_commit(&c, &p);
    cr_assert_eq(c.consumed, 14);
    cr_assert_eq(c.produced, 14);
    cr_assert_eq(c.txn_committed, 2);
    cr_assert_eq(c.batch_max, 10);
    for (int i = 0; i < 99; i++)
        tx_counters_latency(&c, 10);
    tx_counters_latency(&c, 5000);
    cr_assert_eq(c.lat_count, 100);
    cr_assert_eq(c.lat_max_us, 5000);
    cr_assert(tx_counters_latency_quantile(&c, 0.5) >= 10 &&
              tx_counters_latency_quantile(&c, 0.5) < 16);
    cr_assert_eq(tx_counters_latency_quantile(&c, 1.0), 5000);
    char line[1024];
    tx_counters_format(&c, line, sizeof(line));
    cr_assert_not_null(strstr(line, "consumed=14 "), "%s", line);
    cr_assert_not_null(strstr(line, "batch_avg=7.0"), "%s", line);
}
