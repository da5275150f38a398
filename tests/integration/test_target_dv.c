/*
 * Integration tests of the Dataverse write connector (common/dw_target.c) against dw-emulator
 * --system dv (a fresh emulator and schema per test, the real PostgreSQL of DW_PG_DSN):
 * UpsertMultiple of 1,000 records with a lookup in the alternate key, idempotent rewrites, the
 * $batch fallback isolating one invalid record, schema drift, missing lookups, deletes, 503 and
 * 429 as transient, calls in flight at once (dw_target_call_start / dw_target_poll).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_auth.h"
#include "dw_config.h"
#include "dw_signal.h"
#include "dw_system.h"
#include "dw_target.h"
#include "dw_testemu.h"
#include "dw_testsys.h"

#define ADMIN "target-admin"
#define N     1000

static dw_testemu_t *emu;
static dw_conf_t *conf;
static dw_system_t *sys;
static dw_target_t *tgt;

static const char *const ADMIN_H[] = {"Authorization: Bearer " ADMIN, NULL};

static dw_testsys_t ts;

static void start(const char *limits, size_t chunk_max)
{
    char errstr[1024];
    cr_assert_eq(dw_testsys_start(&ts, "dv", ADMIN, limits, chunk_max, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    emu = ts.emu;
    conf = ts.conf;
    sys = ts.sys;
    tgt = ts.tgt;
}

static void stop(void)
{
    dw_testsys_stop(&ts);
    tgt = NULL;
    sys = NULL;
    conf = NULL;
    emu = NULL;
}

TestSuite(target_dv, .fini = stop, .timeout = 120);

static void admin(const char *path, const char *body)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", path, body, ADMIN_H);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    dw_testemu_resp_free(&r);
}

static long count_of(const char *query)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", query, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %ld %s", query, r.status, r.body);
    long c = (long)json_integer_value(json_object_get(r.json, "@odata.count"));
    dw_testemu_resp_free(&r);
    return c;
}

/* Records with their own key/fields objects. */
typedef struct {
    dw_wrec_t *r;
    json_t **keys, **fields;
    size_t n;
} recs_t;

static void recs_init(recs_t *rs, size_t n)
{
    rs->r = calloc(n, sizeof(*rs->r));
    rs->keys = calloc(n, sizeof(json_t *));
    rs->fields = calloc(n, sizeof(json_t *));
    rs->n = n;
}

static void recs_free(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        json_decref(rs->keys[i]);
        json_decref(rs->fields[i]);
    }
    free(rs->r);
    free(rs->keys);
    free(rs->fields);
}

static void set_rec(recs_t *rs, size_t i, const char *set, const char *table, dw_wop_t op,
                    json_t *key, json_t *fields)
{
    rs->keys[i] = key;
    rs->fields[i] = fields;
    rs->r[i].entity_set = set;
    rs->r[i].table = table;
    rs->r[i].op = op;
    rs->r[i].key = key;
    rs->r[i].fields = fields;
    rs->r[i].correlation_id = "test-corr";
}

static void write_all(recs_t *rs)
{
    char errstr[512];
    cr_assert_eq(dw_target_write(tgt, rs->r, rs->n, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
}

static void company(const char *code)
{
    recs_t rs;
    recs_init(&rs, 1);
    set_rec(&rs, 0, "cdm_companies", "cdm_company", DW_WOP_UPSERT,
            json_pack("{s:s}", "cdm_companycode", code),
            json_pack("{s:s,s:s}", "cdm_companycode", code, "cdm_name", "Company"));
    write_all(&rs);
    cr_assert_eq(rs.r[0].cls, DW_WCLASS_OK, "%s %s", dw_wclass_name(rs.r[0].cls), rs.r[0].message);
    recs_free(&rs);
}

static void accounts(recs_t *rs, size_t n, const char *name_prefix)
{
    recs_init(rs, n);
    for (size_t i = 0; i < n; i++) {
        char num[32], name[64];
        snprintf(num, sizeof(num), "A%05zu", i);
        snprintf(name, sizeof(name), "%s %zu", name_prefix, i);
        set_rec(rs, i, "accounts", "account", DW_WOP_UPSERT,
                json_pack("{s:s,s:s}", "accountnumber", num, "msdyn_company", "usmf"),
                json_pack("{s:s,s:s,s:s,s:f}", "accountnumber", num, "name", name,
                          "msdyn_company@odata.bind", "/cdm_companies(cdm_companycode='usmf')",
                          "creditlimit", 1000.5));
    }
}

static void expect_all(const recs_t *rs, dw_wclass_t cls)
{
    for (size_t i = 0; i < rs->n; i++)
        cr_assert_eq(rs->r[i].cls, cls, "record %zu: %s (want %s) %ld %s %s", i,
                     dw_wclass_name(rs->r[i].cls), dw_wclass_name(cls), rs->r[i].status,
                     rs->r[i].code, rs->r[i].message);
}

Test(target_dv, thousand_upserts_land_and_a_rewrite_updates_without_duplicates)
{
    start(NULL, 1000);
    company("usmf");
    recs_t rs;
    accounts(&rs, N, "Name");
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    cr_assert_eq(count_of("accounts?$count=true&$top=1"), N);
    dw_target_stats_t s;
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.fallbacks, 0);
    cr_assert_eq(s.records_ok, N + 1);

    accounts(&rs, N, "Renamed");
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    cr_assert_eq(count_of("accounts?$count=true&$top=1"), N);
    cr_assert_eq(count_of("accounts?$count=true&$top=1&$filter=name eq 'Renamed 7'"), 1);
}

Test(target_dv, one_invalid_record_in_a_thousand_is_the_only_failure)
{
    start(NULL, 1000);
    company("usmf");
    recs_t rs;
    accounts(&rs, N, "Name");
    char longname[200];
    memset(longname, 'x', 199);
    longname[199] = '\0';
    json_object_set_new(rs.fields[500], "name", json_string(longname));
    write_all(&rs);
    for (size_t i = 0; i < N; i++) {
        dw_wclass_t want = i == 500 ? DW_WCLASS_VALIDATION : DW_WCLASS_OK;
        cr_assert_eq(rs.r[i].cls, want, "record %zu: %s %ld %s", i, dw_wclass_name(rs.r[i].cls),
                     rs.r[i].status, rs.r[i].message);
    }
    cr_assert_eq(rs.r[500].status, 400);
    cr_assert_str_eq(rs.r[500].code, "0x80044331");
    cr_assert(rs.r[1].record_id_out[0], "the $batch answer names the row id");
    recs_free(&rs);
    cr_assert_eq(count_of("accounts?$count=true&$top=1"), N - 1);
    dw_target_stats_t s;
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.fallbacks, 1);
}

/* A table whose type does not bind UpsertMultiple (the action's segment is not found, 404
 * 0x8006088a): the chunk is resent as $batch, every record lands, and later writes to that table
 * go to $batch straight away (one fallback in all). */
Test(target_dv, a_table_without_upsertmultiple_is_written_through_batch)
{
    start(NULL, 1000);
    company("usmf");
    admin("/_admin/faults", "{\"no_multiple\":[\"accounts\"]}");
    recs_t rs;
    accounts(&rs, 300, "Name");
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert(rs.r[7].record_id_out[0], "the $batch answer names the row id");
    recs_free(&rs);
    dw_target_stats_t s;
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.fallbacks, 1);
    unsigned long requests = s.requests;
    accounts(&rs, 300, "Renamed");
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.fallbacks, 1, "the table is remembered: no second UpsertMultiple");
    cr_assert_eq(s.requests, requests + 1, "one $batch of 300");
    cr_assert_eq(count_of("accounts?$count=true&$top=1"), 300);
    cr_assert_eq(count_of("accounts?$count=true&$top=1&$filter=name eq 'Renamed 299'"), 1);
    /* other tables still take UpsertMultiple */
    company("usrt");
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.fallbacks, 1);
}

Test(target_dv, dropped_column_is_schema_drift_and_missing_lookups_are_lookup_missing)
{
    start(NULL, 1000);
    company("usmf");
    admin("/_admin/drop-column", "{\"table\":\"account\",\"column\":\"telephone1\"}");
    recs_t rs;
    accounts(&rs, 4, "Name");
    json_object_set_new(rs.fields[0], "telephone1", json_string("555"));
    /* the company of the key does not exist */
    json_object_set_new(rs.keys[1], "msdyn_company", json_string("nope"));
    json_object_set_new(rs.fields[1], "msdyn_company@odata.bind",
                        json_string("/cdm_companies(cdm_companycode='nope')"));
    /* a lookup outside the key does not exist */
    json_object_set_new(rs.fields[2], "msdyn_customergroupid@odata.bind",
                        json_string("/msdyn_customergroups(msdyn_groupid='zz',msdyn_company="
                                    "00000000-0000-0000-0000-000000000001)"));
    write_all(&rs);
    cr_assert_eq(rs.r[0].cls, DW_WCLASS_SCHEMA_DRIFT, "%s %s", dw_wclass_name(rs.r[0].cls),
                 rs.r[0].message);
    cr_assert_eq(rs.r[1].cls, DW_WCLASS_LOOKUP_MISSING, "%s %s", dw_wclass_name(rs.r[1].cls),
                 rs.r[1].message);
    cr_assert_eq(rs.r[2].cls, DW_WCLASS_LOOKUP_MISSING, "%s %s", dw_wclass_name(rs.r[2].cls),
                 rs.r[2].message);
    cr_assert_str_eq(rs.r[2].code, "0x80040217");
    cr_assert_eq(rs.r[3].cls, DW_WCLASS_OK, "%s %s", dw_wclass_name(rs.r[3].cls), rs.r[3].message);
    recs_free(&rs);
}

Test(target_dv, deletes_of_existing_and_missing_records_are_ok)
{
    start(NULL, 1000);
    company("usmf");
    company("usrt");
    recs_t rs;
    recs_init(&rs, 3);
    set_rec(&rs, 0, "cdm_companies", "cdm_company", DW_WOP_DELETE,
            json_pack("{s:s}", "cdm_companycode", "usrt"), NULL);
    set_rec(&rs, 1, "cdm_companies", "cdm_company", DW_WOP_DELETE,
            json_pack("{s:s}", "cdm_companycode", "gone"), NULL);
    set_rec(&rs, 2, "cdm_companies", "cdm_company", DW_WOP_DELETE, json_object(), NULL);
    rs.r[2].record_id = "00000000-0000-0000-0000-00000000abcd";
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[0].status, 204);
    cr_assert_eq(rs.r[1].status, 404);
    cr_assert_str_eq(rs.r[2].record_id_out, "00000000-0000-0000-0000-00000000abcd");
    recs_free(&rs);
    cr_assert_eq(count_of("cdm_companies?$count=true&$top=1"), 1);
}

Test(target_dv, unavailable_service_makes_every_record_transient)
{
    start(NULL, 100);
    company("usmf");
    admin("/_admin/faults", "{\"unavailable\":true}");
    recs_t rs;
    accounts(&rs, 250, "Name");
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_TRANSIENT);
    /* the first chunk's answer; the others are held back for the rest of its Retry-After */
    for (size_t i = 0; i < rs.n; i++) {
        cr_assert_eq(rs.r[i].status, 503);
        /* 1 s asked; the connector holds one millisecond more (its clock reads whole ms) */
        cr_assert(rs.r[i].retry_after_ms > 0 && rs.r[i].retry_after_ms <= 1001, "%ld",
                  rs.r[i].retry_after_ms);
    }
    cr_assert_eq(rs.r[0].retry_after_ms, 1000);
    recs_free(&rs);
}

Test(target_dv, throttled_chunks_are_transient_with_retry_after)
{
    start("3/60", 10);
    company("usmf"); /* 1 request (the key lookup of accounts is a second one) */
    recs_t rs;
    accounts(&rs, 50, "Name");
    dw_target_set_concurrency(tgt, 1);
    write_all(&rs);
    size_t ok = 0, throttled = 0;
    for (size_t i = 0; i < rs.n; i++) {
        if (rs.r[i].cls == DW_WCLASS_OK) {
            ok++;
            continue;
        }
        cr_assert_eq(rs.r[i].cls, DW_WCLASS_TRANSIENT, "%zu: %s %s", i, dw_wclass_name(rs.r[i].cls),
                     rs.r[i].message);
        cr_assert_eq(rs.r[i].status, 429);
        cr_assert_gt(rs.r[i].retry_after_ms, 0);
        throttled++;
    }
    cr_assert_eq(ok, 10, "%zu ok", ok);
    cr_assert_eq(throttled, 40);
    dw_target_stats_t s;
    dw_target_stats(tgt, &s);
    /* the first 429 answered holds the other chunks back: they are not sent before its
     * Retry-After elapsed, and end transient with the time left */
    cr_assert_geq(s.throttled, 1);
    cr_assert_geq(s.throttled + s.held, 4, "throttled %lu, held %lu", s.throttled, s.held);
    cr_assert_gt(s.held, 0);
    recs_free(&rs);
}

Test(target_dv, decimal_strings_and_a_stale_token_are_handled)
{
    start(NULL, 1000);
    company("usmf");
    /* a token the service does not know: 401, a fresh token, the same chunk again */
    cr_assert_eq(dw_auth_cache_put(dw_system_auth(sys), "not-a-valid-token", 3600), DW_OK);
    unsigned long fetched = dw_auth_fetch_count(dw_system_auth(sys));
    recs_t rs;
    accounts(&rs, 20, "Name");
    json_object_set_new(rs.fields[3], "creditlimit", json_string("1234.50"));
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    cr_assert_eq(dw_auth_fetch_count(dw_system_auth(sys)), fetched + 1);
    cr_assert_eq(count_of("accounts?$count=true&$top=1&$filter=creditlimit eq 1234.5"), 1);
}

Test(target_dv, interrupted_calls_leave_records_transient)
{
    start(NULL, 1000);
    recs_t rs;
    accounts(&rs, 5, "Name");
    dw_signal_request_stop();
    char errstr[256];
    dw_err_t err = dw_target_write(tgt, rs.r, rs.n, errstr, sizeof(errstr));
    dw_signal_reset();
    cr_assert_eq(err, DW_ERR_INTERRUPTED);
    expect_all(&rs, DW_WCLASS_TRANSIENT);
    recs_free(&rs);
}

Test(target_dv, wrong_credentials_are_a_config_error)
{
    start(NULL, 1000);
    dw_target_destroy(tgt);
    dw_system_destroy(sys);
    ts.tgt = NULL; /* the harness frees what it holds: it holds the new ones below */
    ts.sys = NULL;
    char errstr[512];
    cr_assert_eq(dw_conf_set(conf, "dv.client_secret", "wrong", DW_CONF_SRC_FLAG, "test", errstr,
                             sizeof(errstr)),
                 DW_OK);
    dw_err_t err;
    sys = dw_system_new(conf, "dv", &err, errstr, sizeof(errstr));
    cr_assert(sys, "%s", errstr);
    ts.sys = sys;
    tgt = dw_target_dv_new(sys, NULL, errstr, sizeof(errstr));
    cr_assert(tgt);
    ts.tgt = tgt;
    recs_t rs;
    recs_init(&rs, 2);
    set_rec(&rs, 0, "cdm_companies", "cdm_company", DW_WOP_UPSERT,
            json_pack("{s:s}", "cdm_companycode", "x"), json_pack("{s:s}", "cdm_name", "X"));
    set_rec(&rs, 1, "cdm_companies", "cdm_company", DW_WOP_DELETE,
            json_pack("{s:s}", "cdm_companycode", "y"), NULL);
    cr_assert_eq(dw_target_write(tgt, rs.r, rs.n, errstr, sizeof(errstr)), DW_ERR_CONFIG);
    cr_assert(strstr(errstr, "invalid_client"), "%s", errstr);
    expect_all(&rs, DW_WCLASS_TRANSIENT);
    recs_free(&rs);
}

/* A bind whose key names the company by its code (as dw_mapper_bind writes it) reaches the
 * Web API with the company row's guid; an unknown company code is lookup_missing. */
Test(target_dv, company_codes_inside_binds_are_resolved_to_the_company_row)
{
    start(NULL, 1000);
    company("usmf");
    recs_t grp;
    recs_init(&grp, 1);
    set_rec(&grp, 0, "msdyn_customergroups", "msdyn_customergroup", DW_WOP_UPSERT,
            json_pack("{s:s,s:s}", "msdyn_groupid", "O'10", "msdyn_company", "usmf"),
            json_pack("{s:s,s:s}", "msdyn_groupid", "O'10", "msdyn_company@odata.bind",
                      "/cdm_companies(cdm_companycode='usmf')"));
    write_all(&grp);
    expect_all(&grp, DW_WCLASS_OK);
    recs_free(&grp);

    recs_t rs;
    accounts(&rs, 3, "Grouped");
    json_object_set_new(rs.fields[0], "msdyn_customergroupid@odata.bind",
                        json_string("/msdyn_customergroups(msdyn_groupid='O''10',"
                                    "msdyn_company='usmf')"));
    json_object_set_new(rs.fields[1], "msdyn_customergroupid@odata.bind",
                        json_string("/msdyn_customergroups(msdyn_company='usmf',"
                                    "msdyn_groupid='O''10')"));
    json_object_set_new(rs.fields[2], "msdyn_customergroupid@odata.bind",
                        json_string("/msdyn_customergroups(msdyn_groupid='O''10',"
                                    "msdyn_company='zzzz')"));
    write_all(&rs);
    cr_assert_eq(rs.r[0].cls, DW_WCLASS_OK, "%s %s", dw_wclass_name(rs.r[0].cls), rs.r[0].message);
    cr_assert_eq(rs.r[1].cls, DW_WCLASS_OK, "%s %s", dw_wclass_name(rs.r[1].cls), rs.r[1].message);
    cr_assert_eq(rs.r[2].cls, DW_WCLASS_LOOKUP_MISSING, "%s %s", dw_wclass_name(rs.r[2].cls),
                 rs.r[2].message);
    cr_assert_eq(count_of("accounts?$count=true&$filter=_msdyn_customergroupid_value ne null"), 2);
    recs_free(&rs);
}

/* Accounts A<first>.. A<first+n-1>. */
static void accounts_from(recs_t *rs, size_t first, size_t n, const char *name_prefix)
{
    recs_init(rs, n);
    for (size_t i = 0; i < n; i++) {
        char num[32], name[64];
        snprintf(num, sizeof(num), "A%05zu", first + i);
        snprintf(name, sizeof(name), "%s %zu", name_prefix, first + i);
        set_rec(rs, i, "accounts", "account", DW_WOP_UPSERT,
                json_pack("{s:s,s:s}", "accountnumber", num, "msdyn_company", "usmf"),
                json_pack("{s:s,s:s,s:s,s:f}", "accountnumber", num, "name", name,
                          "msdyn_company@odata.bind", "/cdm_companies(cdm_companycode='usmf')",
                          "creditlimit", 1000.5));
    }
}

Test(target_dv, calls_in_flight_at_once_each_get_their_own_outcomes)
{
    start(NULL, 100);
    company("usmf");
    dw_target_set_concurrency(tgt, 3);
    recs_t a, b, c;
    accounts_from(&a, 0, 300, "A");
    accounts_from(&b, 300, 300, "B");
    accounts_from(&c, 600, 250, "C");
    char longname[200];
    memset(longname, 'x', 199);
    longname[199] = '\0';
    json_object_set_new(b.fields[42], "name", json_string(longname)); /* b's fallback only */
    char errstr[512];
    dw_target_call_t *ca = dw_target_call_start(tgt, a.r, a.n, errstr, sizeof(errstr));
    dw_target_call_t *cb = dw_target_call_start(tgt, b.r, b.n, errstr, sizeof(errstr));
    dw_target_call_t *cc = dw_target_call_start(tgt, c.r, c.n, errstr, sizeof(errstr));
    cr_assert(ca && cb && cc, "%s", errstr);
    /* the calls finish in any order; each is ended as soon as it is done */
    dw_target_call_t **calls[3] = {&ca, &cb, &cc};
    int open = 3;
    for (int rounds = 0; open > 0 && rounds < 1000; rounds++) {
        dw_target_poll(tgt, 100);
        for (int k = 0; k < 3; k++)
            if (*calls[k] && dw_target_call_done(*calls[k])) {
                cr_assert_eq(dw_target_call_end(*calls[k], errstr, sizeof(errstr)), DW_OK, "%s",
                             errstr);
                *calls[k] = NULL;
                open--;
            }
    }
    cr_assert_eq(open, 0);
    expect_all(&a, DW_WCLASS_OK);
    expect_all(&c, DW_WCLASS_OK);
    for (size_t i = 0; i < b.n; i++)
        cr_assert_eq(b.r[i].cls, i == 42 ? DW_WCLASS_VALIDATION : DW_WCLASS_OK, "record %zu: %s %s",
                     i, dw_wclass_name(b.r[i].cls), b.r[i].message);
    recs_free(&a);
    recs_free(&b);
    recs_free(&c);
    cr_assert_eq(count_of("accounts?$count=true&$top=1"), 849);
}

Test(target_dv, a_call_ended_before_it_is_done_leaves_its_records_transient)
{
    start(NULL, 100);
    company("usmf");
    dw_target_set_concurrency(tgt, 1);
    recs_t a, b;
    accounts_from(&a, 0, 300, "A");
    accounts_from(&b, 300, 10, "B");
    char errstr[512];
    dw_target_call_t *ca = dw_target_call_start(tgt, a.r, a.n, errstr, sizeof(errstr));
    cr_assert(ca, "%s", errstr);
    cr_assert_not(dw_target_call_done(ca));
    cr_assert_eq(dw_target_call_end(ca, errstr, sizeof(errstr)), DW_ERR_INTERRUPTED);
    for (size_t i = 0; i < a.n; i++)
        cr_assert(a.r[i].cls == DW_WCLASS_TRANSIENT || a.r[i].cls == DW_WCLASS_OK, "record %zu: %s",
                  i, dw_wclass_name(a.r[i].cls));
    cr_assert_eq(a.r[a.n - 1].cls, DW_WCLASS_TRANSIENT);
    /* the target is usable afterwards */
    write_all(&b);
    expect_all(&b, DW_WCLASS_OK);
    recs_free(&a);
    recs_free(&b);
}
