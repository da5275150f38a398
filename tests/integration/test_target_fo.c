/*
 * Integration tests of the F&O write connector (common/dw_target.c) against dw-emulator
 * --system fo (a fresh emulator and schema per test, the real PostgreSQL of DW_PG_DSN): $batch
 * with one change set per record, POST/PATCH chosen by exists_hint and corrected by the answer,
 * a failure in the middle of a batch that stops F&O's processing, schema drift, deletes, 503 and
 * 429 as transient.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_config.h"
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
    cr_assert_eq(dw_testsys_start(&ts, "fo", ADMIN, limits, chunk_max, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    emu = ts.emu;
    /* the currencies and groups the customers name (F&O checks relations) */
    cr_assert_eq(dw_testemu_fo_refdata(emu, "usmf,usrt", errstr, sizeof(errstr)), 0, "%s", errstr);
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

TestSuite(target_fo, .fini = stop, .timeout = 120);

static void admin(const char *path, const char *body)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", path, body, ADMIN_H);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    dw_testemu_resp_free(&r);
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

static void customers(recs_t *rs, size_t n, const char *name_prefix, bool exists_hint)
{
    recs_init(rs, n);
    for (size_t i = 0; i < n; i++) {
        char num[32], name[64];
        snprintf(num, sizeof(num), "C-%05zu", i);
        snprintf(name, sizeof(name), "%s %zu", name_prefix, i);
        set_rec(rs, i, "CustomersV3", "CustomerV3", DW_WOP_UPSERT,
                json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerAccount", num),
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:f}", "CustomerAccount", num, "OrganizationName",
                          name, "PartyType", "Organization", "CustomerGroupId", "10",
                          "SalesCurrencyCode", "USD", "CreditLimit", 250.25));
        rs->r[i].exists_hint = exists_hint;
    }
}

static long fo_count(const char *path)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    long c = strtol(r.body, NULL, 10);
    dw_testemu_resp_free(&r);
    return c;
}

static void expect_all(const recs_t *rs, dw_wclass_t cls)
{
    for (size_t i = 0; i < rs->n; i++)
        cr_assert_eq(rs->r[i].cls, cls, "record %zu: %s (want %s) %ld %s %s", i,
                     dw_wclass_name(rs->r[i].cls), dw_wclass_name(cls), rs->r[i].status,
                     rs->r[i].code, rs->r[i].message);
}

Test(target_fo, thousand_posts_land_and_a_rewrite_without_hint_ends_as_patch)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, N, "Name", false);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[0].status, 201);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), N);

    /* the same records again, the ledger not knowing them: POST "already exists" -> PATCH */
    customers(&rs, N, "Renamed", false);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[999].status, 204);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), N);
    cr_assert_eq(fo_count("CustomersV3/$count?$filter=OrganizationName eq 'Renamed 7'"), 1);
    dw_target_stats_t s;
    dw_target_stats(tgt, &s);
    cr_assert_eq(s.records_ok, 2 * N);
    cr_assert_lt(s.requests, 10);
}

Test(target_fo, patch_of_a_missing_record_ends_as_post_and_hinted_patches_update)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, 3, "Name", true);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[0].status, 201);
    recs_free(&rs);
    customers(&rs, 3, "Renamed", true);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[0].status, 204);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count?$filter=OrganizationName eq 'Renamed 2'"), 1);
}

/* Records of a company other than the caller's default one (the emulator's is usmf): F&O answers
 * by-key requests for them only with cross-company=true, so the updates (a hinted PATCH, and a
 * POST "already exists" corrected to PATCH) and the deletes must carry it. */
Test(target_fo, records_of_another_company_are_updated_and_deleted_by_key)
{
    start(NULL, 1000);
    for (int round = 0; round < 3; round++) {
        recs_t rs;
        customers(&rs, 20, round ? "Renamed" : "Name", round == 1);
        for (size_t i = 0; i < rs.n; i++)
            json_object_set_new(rs.keys[i], "dataAreaId", json_string("usrt"));
        write_all(&rs);
        expect_all(&rs, DW_WCLASS_OK);
        cr_assert_eq(rs.r[3].status, round ? 204 : 201, "round %d: %ld", round, rs.r[3].status);
        recs_free(&rs);
    }
    cr_assert_eq(fo_count("CustomersV3/$count?cross-company=true&$filter=dataAreaId eq 'usrt'"), 20);
    cr_assert_eq(fo_count("CustomersV3/$count"), 0, "nothing landed in the default company");
    cr_assert_eq(fo_count("CustomersV3/$count?cross-company=true&$filter=OrganizationName eq "
                          "'Renamed 19'"),
                 1);
    recs_t del;
    recs_init(&del, 2);
    for (size_t i = 0; i < 2; i++) {
        char num[32];
        snprintf(num, sizeof(num), "C-%05zu", i);
        set_rec(&del, i, "CustomersV3", "CustomerV3", DW_WOP_DELETE,
                json_pack("{s:s,s:s}", "dataAreaId", "usrt", "CustomerAccount", num), NULL);
    }
    write_all(&del);
    expect_all(&del, DW_WCLASS_OK);
    recs_free(&del);
    cr_assert_eq(fo_count("CustomersV3/$count?cross-company=true&$filter=dataAreaId eq 'usrt'"), 18);
}

Test(target_fo, a_failure_in_the_middle_of_a_batch_does_not_stop_the_others)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, N, "Name", false);
    char longname[120];
    memset(longname, 'x', 119);
    longname[119] = '\0';
    json_object_set_new(rs.fields[300], "OrganizationName", json_string(longname));
    json_object_set_new(rs.fields[700], "OrganizationName", json_string(longname));
    write_all(&rs);
    for (size_t i = 0; i < N; i++) {
        dw_wclass_t want = i == 300 || i == 700 ? DW_WCLASS_VALIDATION : DW_WCLASS_OK;
        cr_assert_eq(rs.r[i].cls, want, "record %zu: %s %ld %s", i, dw_wclass_name(rs.r[i].cls),
                     rs.r[i].status, rs.r[i].message);
    }
    cr_assert_eq(rs.r[300].status, 400);
    cr_assert(strstr(rs.r[300].message, "maximum length"), "%s", rs.r[300].message);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), N - 2);
}

/* F&O checks relations: a customer naming a group that is not there yet is lookup_missing (the
 * group may still be on its way), the records around it land, and once the group exists the same
 * record lands. */
Test(target_fo, a_missing_related_record_is_lookup_missing_until_it_exists)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, 10, "Name", false);
    json_object_set_new(rs.fields[4], "CustomerGroupId", json_string("NEW"));
    write_all(&rs);
    for (size_t i = 0; i < rs.n; i++) {
        dw_wclass_t want = i == 4 ? DW_WCLASS_LOOKUP_MISSING : DW_WCLASS_OK;
        cr_assert_eq(rs.r[i].cls, want, "record %zu: %s %ld %s", i, dw_wclass_name(rs.r[i].cls),
                     rs.r[i].status, rs.r[i].message);
    }
    cr_assert_eq(rs.r[4].status, 400);
    cr_assert(strstr(rs.r[4].message, "'NEW' in field 'Customer group' is not found"), "%s",
              rs.r[4].message);
    cr_assert_eq(fo_count("CustomersV3/$count"), 9);
    recs_free(&rs);

    recs_t g;
    recs_init(&g, 1);
    set_rec(&g, 0, "CustomerGroups", "CustomerGroup", DW_WOP_UPSERT,
            json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerGroupId", "NEW"),
            json_pack("{s:s,s:s}", "CustomerGroupId", "NEW", "Description", "arrived later"));
    write_all(&g);
    expect_all(&g, DW_WCLASS_OK);
    recs_free(&g);
    customers(&rs, 10, "Name", true);
    json_object_set_new(rs.fields[4], "CustomerGroupId", json_string("NEW"));
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), 10);
}

Test(target_fo, dropped_column_is_schema_drift_and_deletes_are_ok)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, 2, "Name", false);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    admin("/_admin/drop-column", "{\"table\":\"CustomersV3\",\"column\":\"SalesMemo\"}");
    customers(&rs, 1, "Name", true);
    json_object_set_new(rs.fields[0], "SalesMemo", json_string("memo"));
    write_all(&rs);
    cr_assert_eq(rs.r[0].cls, DW_WCLASS_SCHEMA_DRIFT, "%s %s", dw_wclass_name(rs.r[0].cls),
                 rs.r[0].message);
    recs_free(&rs);

    recs_init(&rs, 2);
    set_rec(&rs, 0, "CustomersV3", "CustomerV3", DW_WOP_DELETE,
            json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerAccount", "C-00001"), NULL);
    set_rec(&rs, 1, "CustomersV3", "CustomerV3", DW_WOP_DELETE,
            json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerAccount", "O'Neil (x)/y"), NULL);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    cr_assert_eq(rs.r[0].status, 204);
    cr_assert_eq(rs.r[1].status, 404);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), 1);
}

Test(target_fo, hostile_key_values_round_trip)
{
    start(NULL, 1000);
    const char *vals[] = {"O'Neil", "a(b)c", "x/y?z#", "ü'ñ''", "%27) or 1 eq 1"};
    recs_t rs;
    recs_init(&rs, 5);
    for (size_t i = 0; i < 5; i++)
        set_rec(&rs, i, "CustomersV3", "CustomerV3", DW_WOP_UPSERT,
                json_pack("{s:s,s:s}", "dataAreaId", "usmf", "CustomerAccount", vals[i]),
                json_pack("{s:s,s:s,s:s,s:s}", "PartyType", "Organization", "CustomerGroupId", "10",
                          "SalesCurrencyCode", "USD", "OrganizationName", "first"));
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    for (size_t i = 0; i < 5; i++) {
        json_object_set_new(rs.fields[i], "OrganizationName", json_string("second"));
        rs.r[i].exists_hint = true;
    }
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(rs.r[i].status, 204, "%zu: %ld", i, rs.r[i].status);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), 5);
    cr_assert_eq(fo_count("CustomersV3/$count?$filter=OrganizationName eq 'second'"), 5);
}

Test(target_fo, unavailable_service_makes_every_record_transient)
{
    start(NULL, 100);
    admin("/_admin/faults", "{\"unavailable\":true}");
    recs_t rs;
    customers(&rs, 250, "Name", false);
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_TRANSIENT);
    for (size_t i = 0; i < rs.n; i++) {
        cr_assert_eq(rs.r[i].status, 503);
        cr_assert_eq(rs.r[i].retry_after_ms, 1000);
    }
    recs_free(&rs);
}

Test(target_fo, throttled_batches_are_transient_with_retry_after)
{
    start("2/60", 10);
    recs_t rs;
    customers(&rs, 50, "Name", false);
    dw_target_set_concurrency(tgt, 1);
    write_all(&rs);
    size_t ok = 0;
    for (size_t i = 0; i < rs.n; i++) {
        if (rs.r[i].cls == DW_WCLASS_OK) {
            ok++;
            continue;
        }
        cr_assert_eq(rs.r[i].cls, DW_WCLASS_TRANSIENT, "%zu: %s %s", i, dw_wclass_name(rs.r[i].cls),
                     rs.r[i].message);
        cr_assert_eq(rs.r[i].status, 429);
        cr_assert_gt(rs.r[i].retry_after_ms, 0);
    }
    cr_assert_eq(ok, 20, "%zu ok", ok);
    recs_free(&rs);
}

Test(target_fo, mixed_existing_and_new_records_with_wrong_hints_all_land)
{
    start(NULL, 1000);
    recs_t rs;
    customers(&rs, 100, "Name", false);
    /* every third record exists already */
    recs_t pre;
    customers(&pre, 100, "Old", false);
    pre.n = 100;
    for (size_t i = 0; i < 100; i++)
        if (i % 3)
            pre.r[i].op = DW_WOP_DELETE;
    write_all(&pre);
    expect_all(&pre, DW_WCLASS_OK);
    recs_free(&pre);
    cr_assert_eq(fo_count("CustomersV3/$count"), 34);
    /* hints all wrong: the existing ones said new, the new ones said existing */
    for (size_t i = 0; i < 100; i++)
        rs.r[i].exists_hint = i % 3 != 0;
    json_object_set_new(rs.fields[50], "CreditLimit", json_string("12345678.125"));
    write_all(&rs);
    expect_all(&rs, DW_WCLASS_OK);
    recs_free(&rs);
    cr_assert_eq(fo_count("CustomersV3/$count"), 100);
    cr_assert_eq(fo_count("CustomersV3/$count?$filter=startswith(OrganizationName,'Name')"), 100);
}
