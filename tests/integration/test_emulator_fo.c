/*
 * Integration tests of dw-emulator --system fo against the real PostgreSQL (DW_PG_DSN): each test
 * starts the emulator as a child process (posix_spawn) on a free loopback port with its own
 * schema, talks HTTP with libcurl and drops the schema at the end. Data events are received by a
 * small libmicrohttpd server inside this process (tests/support/dw_testreceiver.c) that records
 * every POST it accepts and can be told to answer 503. Expected shapes follow Microsoft Learn ("Open Data Protocol (OData)" for
 * finance and operations, "Data events", RemoteExecutionContext).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dw_testemu.h"
#include "dw_testreceiver.h"
#include "dw_testutil.h"

#define ADMIN "test-admin-secret"
#define EVENT_SECRET "event-shared-secret"

typedef dw_testemu_resp_t resp_t;

static dw_testemu_t *emu;

#define req(r, method, path, body, headers) dw_testemu_request(emu, r, method, path, body, headers)
#define resp_free dw_testemu_resp_free
#define hdr dw_testemu_resp_header

static const char *err_msg(const resp_t *r)
{
    const char *m = json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return m ? m : "";
}

/* ---- the data events receiver (tests/support/dw_testreceiver.c) ----------------------------- */

static dw_testreceiver_t rx = DW_TESTRECEIVER_INIT;

#define rx_set_fail(on) dw_testreceiver_set_fail(&rx, on)
#define rx_wait(n, ms) dw_testreceiver_wait(&rx, n, ms)
#define kv_get dw_testreceiver_kv_get
#define ev_target dw_testreceiver_ev_target
#define ev_pre dw_testreceiver_ev_pre
#define attr dw_testreceiver_attr

/* ---- the emulator ----------------------------------------------------------------------------- */

static void stop_emulator(void)
{
    cr_expect_eq(dw_testreceiver_stop_fo(&rx, &emu), 0, "dw-emulator did not exit cleanly");
}

static void setup(void)
{
    char errstr[1024];
    cr_assert(dw_testreceiver_start(&rx, EVENT_SECRET, errstr, sizeof(errstr)) == 0, "%s", errstr);
    emu = dw_testreceiver_start_fo(&rx, "emu_fo", ADMIN, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
    /* the currencies and groups the customers name (F&O checks relations) */
    cr_assert_eq(dw_testemu_fo_refdata(emu, "usmf,usrt", errstr, sizeof(errstr)), 0, "%s", errstr);
}

TestSuite(emulator_fo, .init = setup, .fini = stop_emulator, .timeout = 60);

static const char *const ADMIN_H[] = {"Authorization: Bearer " ADMIN, NULL};

static json_t *admin_events(void)
{
    long status = 0;
    json_t *j = dw_testemu_admin_get(emu, "/_admin/events", ADMIN, &status);
    cr_assert(j, "GET /_admin/events: %ld", status);
    return j;
}

static long long outbox_rows(void)
{
    json_t *j = admin_events();
    long long n = json_integer_value(json_object_get(j, "outbox_rows"));
    json_decref(j);
    return n;
}

/* POST a customer; expect status. */
static void make_customer(const char *account, const char *company, const char *group, long expect)
{
    resp_t r;
    char body[1024];
    snprintf(body, sizeof(body),
             "{%s%s%s\"CustomerAccount\":\"%s\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"%s\","
             "\"SalesCurrencyCode\":\"USD\",\"OrganizationName\":\"Org %s\",\"OnHoldStatus\":\"No\",\"CreditLimit\":100}",
             company ? "\"dataAreaId\":\"" : "", company ? company : "", company ? "\"," : "", account,
             group, account);
    req(&r, "POST", "CustomersV3", body, NULL);
    cr_assert_eq(r.status, expect, "create %s: %ld %s", account, r.status, r.body);
    resp_free(&r);
}

Test(emulator_fo, auth_service_document_and_metadata)
{
    resp_t r;
    char v[512];
    const char *bad[] = {"Authorization: Bearer not-a-token", NULL};
    req(&r, "GET", "CustomersV3", NULL, bad);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(hdr(&r, "WWW-Authenticate", v, sizeof(v)), "Bearer") == v);
    resp_free(&r);
    req(&r, "GET", "", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(hdr(&r, "OData-Version", v, sizeof(v)), "4.0");
    bool found = false;
    json_t *val = json_object_get(r.json, "value");
    for (size_t i = 0; i < json_array_size(val); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(val, i), "name")), "CustomersV3") == 0)
            found = true;
    cr_assert(found, "CustomersV3 in the service document");
    resp_free(&r);
    req(&r, "GET", "$metadata", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(hdr(&r, "Content-Type", v, sizeof(v)), "application/xml"));
    cr_assert(strstr(r.body, "<EntitySet Name=\"CustomersV3\" EntityType=\"Microsoft.Dynamics.DataEntities.CustomerV3\"/>"));
    cr_assert(strstr(r.body, "<PropertyRef Name=\"dataAreaId\"/><PropertyRef Name=\"CustomerAccount\"/>"));
    cr_assert(strstr(r.body, "<EnumType Name=\"NoYes\">"));
    cr_assert(strstr(r.body, "Type=\"Microsoft.Dynamics.DataEntities.CustVendorBlocked\""));
    resp_free(&r);
}

Test(emulator_fo, create_read_by_full_key_and_companies)
{
    resp_t r;
    char v[1024];
    make_customer("O'Neil", NULL, "10", 201);
    make_customer("US-002", "USRT", "20", 201); /* dataAreaId is case-insensitive, stored lower-case */
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='O''Neil')", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "CustomerAccount")), "O'Neil");
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "dataAreaId")), "usmf");
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "OnHoldStatus")), "No", "enums as member names");
    cr_assert(strstr(json_string_value(json_object_get(r.json, "@odata.context")), "$metadata#CustomersV3/$entity"));
    const char *etag = json_string_value(json_object_get(r.json, "@odata.etag"));
    cr_assert(etag && strncmp(etag, "W/\"", 3) == 0);
    long long v1 = strtoll(etag + 3, NULL, 10);
    resp_free(&r);
    /* default company only */
    req(&r, "GET", "CustomersV3?$select=CustomerAccount,dataAreaId", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "value")), 1);
    resp_free(&r);
    req(&r, "GET", "CustomersV3(dataAreaId='usrt',CustomerAccount='US-002')", NULL, NULL);
    cr_assert_eq(r.status, 404, "another company needs cross-company=true: %ld", r.status);
    resp_free(&r);
    req(&r, "GET", "CustomersV3(dataAreaId='usrt',CustomerAccount='US-002')?cross-company=true", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "CustomersV3?cross-company=true&$count=true", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 2);
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$filter=dataAreaId eq 'usrt'&cross-company=true", NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "value")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r.json, "value"), 0), "CustomerAccount")), "US-002");
    resp_free(&r);
    /* update: 204, the row version grows */
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='O''Neil')", "{\"CreditLimit\":2500.5,\"OnHoldStatus\":\"All\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    long long v2 = strtoll(hdr(&r, "ETag", v, sizeof(v)) + 3, NULL, 10);
    cr_assert_gt(v2, v1, "row version must grow: %lld -> %lld", v1, v2);
    resp_free(&r);
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='O''Neil')?$select=CreditLimit,OnHoldStatus", NULL, NULL);
    cr_assert_eq(json_real_value(json_object_get(r.json, "CreditLimit")), 2500.5);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "OnHoldStatus")), "All");
    cr_assert_null(json_object_get(r.json, "OrganizationName"));
    resp_free(&r);
    /* If-Match with a stale ETag */
    char im[64];
    snprintf(im, sizeof(im), "If-Match: W/\"%lld\"", v1);
    const char *h[] = {im, NULL};
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='O''Neil')", "{\"CreditLimit\":1}", h);
    cr_assert_eq(r.status, 412, "%ld", r.status);
    resp_free(&r);
    /* Location of a create names the full key */
    req(&r, "POST", "CustomersV3", "{\"CustomerAccount\":\"A B\",\"PartyType\":\"Person\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"EUR\"}", NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert(strstr(hdr(&r, "Location", v, sizeof(v)), "CustomersV3(dataAreaId='usmf',CustomerAccount='A%20B')"), "%s", v);
    cr_assert(json_string_value(json_object_get(r.json, "PartyNumber")), "number sequence filled");
    resp_free(&r);
    req(&r, "DELETE", "CustomersV3(dataAreaId='usmf',CustomerAccount='A B')", NULL, NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "DELETE", "CustomersV3(dataAreaId='usmf',CustomerAccount='A B')", NULL, NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
}

Test(emulator_fo, query_options_enum_literals_and_paging)
{
    resp_t r;
    char v[512];
    const char *groups[] = {"10", "20", "10", "30", "10"};
    for (int i = 0; i < 5; i++) {
        char acc[32];
        snprintf(acc, sizeof(acc), "C-%03d", i);
        make_customer(acc, NULL, groups[i], 201);
    }
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='C-003')", "{\"OnHoldStatus\":\"All\"}", NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$filter=OnHoldStatus eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'All'&$select=CustomerAccount", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "value")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r.json, "value"), 0), "CustomerAccount")), "C-003");
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$filter=OnHoldStatus eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'Maybe'", NULL, NULL);
    cr_assert_eq(r.status, 400, "unknown enum member: %ld", r.status);
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$filter=OnHoldStatus eq Microsoft.Dynamics.DataEntities.NoYes'Yes'", NULL, NULL);
    cr_assert_eq(r.status, 400, "wrong enum type: %ld", r.status);
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$filter=CustomerGroupId eq '10'&$count=true&$orderby=CustomerAccount desc&$top=2&$select=CustomerAccount", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 3);
    json_t *val = json_object_get(r.json, "value");
    cr_assert_eq(json_array_size(val), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(val, 0), "CustomerAccount")), "C-004");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(val, 1), "CustomerAccount")), "C-002");
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$skip=3&$top=1&$select=CustomerAccount", NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r.json, "value"), 0), "CustomerAccount")), "C-003");
    resp_free(&r);
    req(&r, "GET", "CustomersV3/$count", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "5");
    resp_free(&r);
    /* server-driven paging: odata.maxpagesize=2 over 5 rows = 3 pages, in key order */
    const char *pref[] = {"Prefer: odata.maxpagesize=2", NULL};
    char next[2048];
    snprintf(next, sizeof(next), "CustomersV3?$select=CustomerAccount");
    int pages = 0, rows = 0;
    char seen[8][16];
    while (next[0] && pages < 10) {
        req(&r, "GET", next, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        if (pages == 0)
            cr_assert_str_eq(hdr(&r, "Preference-Applied", v, sizeof(v)), "odata.maxpagesize=2");
        val = json_object_get(r.json, "value");
        for (size_t i = 0; i < json_array_size(val) && rows < 8; i++)
            snprintf(seen[rows++], 16, "%s", json_string_value(json_object_get(json_array_get(val, i), "CustomerAccount")));
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        snprintf(next, sizeof(next), "%s", nl ? nl : "");
        pages++;
        resp_free(&r);
    }
    cr_assert_eq(pages, 3);
    cr_assert_eq(rows, 5);
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof(want), "C-%03d", i);
        cr_assert_str_eq(seen[i], want);
    }
    /* $top over pages: the last page stops at $top */
    req(&r, "GET", "CustomersV3?$top=3", NULL, pref);
    const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
    cr_assert(nl && strstr(nl, "$top=1") && strstr(nl, "$skiptoken=") && !strstr(nl, "$skip="),
              "%s", nl ? nl : "(none)");
    resp_free(&r);
    /* server-driven paging is keyset ($skiptoken); a client's $skip still counts rows */
    req(&r, "GET", "CustomersV3?$skip=2&$top=2", NULL, NULL);
    val = json_object_get(r.json, "value");
    cr_assert_eq(json_array_size(val), 2, "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(val, 0), "CustomerAccount")), "C-002");
    resp_free(&r);
    req(&r, "GET", "CustomersV3?$skiptoken=knotatoken", NULL, NULL);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    resp_free(&r);
}

Test(emulator_fo, validation_and_bad_input_never_crash)
{
    resp_t r;
    char errstr[512];
    cr_assert_eq(dw_testemu_insert_rows(emu, "CustomerGroup",
                                        "[{\"dataAreaId\":\"usrt\",\"CustomerGroupId\":\"77\"}]",
                                        errstr, sizeof(errstr)),
                 0, "%s", errstr);
    make_customer("V-1", NULL, "10", 201);
    make_customer("V-1", NULL, "10", 400); /* the record already exists */
    struct {
        const char *method, *path, *body, *ctype;
        long status;
        const char *msg;
    } cases[] = {
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"SalesCurrencyCode\":\"USD\"}", NULL, 400, "CustomerGroupId"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USDX\"}", NULL, 400, "SalesCurrencyCode"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USD\",\"OnHoldStatus\":\"Maybe\"}", NULL, 400, "CustVendorBlocked"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USD\",\"OnHoldStatus\":1}", NULL, 400, "OnHoldStatus"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"Nope\":1}", NULL, 400, "Nope"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USD\",\"CreditLimit\":\"lots\"}", NULL, 400, "Edm.Decimal"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":", NULL, 400, "JSON"},
        {"POST", "CustomersV3", "[1,2]", NULL, 400, "object"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-3\"}", "Content-Type: text/plain", 415, "content type"},
        {"PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", "{\"CustomerAccount\":\"V-9\"}", NULL, 400, "cannot be changed"},
        {"PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", "{\"CustomerGroupId\":null}", NULL, 400, "must be filled in"},
        {"PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='missing')", "{\"CreditLimit\":1}", NULL, 404, "No resource"},
        /* relations: the group and currency must exist, the group in the row's own company */
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"99\",\"SalesCurrencyCode\":\"USD\"}", NULL, 400, "The value '99' in field 'Customer group' is not found in the related table 'Customer groups'."},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"77\",\"SalesCurrencyCode\":\"USD\"}", NULL, 400, "The value '77' in field 'Customer group'"},
        {"POST", "CustomersV3", "{\"CustomerAccount\":\"V-2\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"XXX\"}", NULL, 400, "in field 'Currency' is not found in the related table 'Currency'"},
        {"PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", "{\"PaymentTerms\":\"Net99\"}", NULL, 400, "The value 'Net99' in field 'Terms of payment'"},
        {"PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", "{\"CustomerGroupId\":\"O'Neil\\\\x\"}", NULL, 400, "not found in the related table"},
        {"GET", "NoSuchEntities", NULL, NULL, 404, "No HTTP resource"},
        {"GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1)", NULL, NULL, 400, NULL},
        {"GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='')%20or%201%20eq%201')", NULL, NULL, 400, NULL},
        {"GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='x'') or 1 eq 1 or ''')", NULL, NULL, 404, NULL},
        {"GET", "CustomersV3(CustomerAccount='V-1')", NULL, NULL, 400, "number of keys"},
        {"GET", "CustomersV3(dataAreaId='usmf',Nope='V-1')", NULL, NULL, 400, "not a key property"},
        {"GET", "CustomersV3(dataAreaId='usmf',CustomerAccount=5)", NULL, NULL, 400, NULL},
        {"GET", "CustomersV3('V-1')", NULL, NULL, 400, NULL},
        {"GET", "CustomersV3?$frobnicate=1", NULL, NULL, 400, "$frobnicate"},
        {"GET", "CustomersV3?$top=-1", NULL, NULL, 400, NULL},
        {"GET", "CustomersV3?$select=Nope", NULL, NULL, 400, "Nope"},
        {"GET", "CustomersV3?$filter=(CustomerAccount eq 'x'", NULL, NULL, 400, "$filter"},
        {"GET", "CustomersV3?$filter=Nope eq 1", NULL, NULL, 400, "Nope"},
        {"GET", "CustomersV3?cross-company=maybe", NULL, NULL, 400, "cross-company"},
        {"PUT", "CustomersV3", "{}", NULL, 405, NULL},
        {"DELETE", "CustomersV3", NULL, NULL, 405, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h[] = {cases[i].ctype, NULL};
        req(&r, cases[i].method, cases[i].path, cases[i].body, cases[i].ctype ? h : NULL);
        cr_assert_eq(r.status, cases[i].status, "case %zu %s %s: %ld %s", i, cases[i].method, cases[i].path, r.status, r.body ? r.body : "");
        if (cases[i].msg)
            cr_assert(strstr(err_msg(&r), cases[i].msg), "case %zu: message '%s' lacks '%s'", i, err_msg(&r), cases[i].msg);
        if (r.status >= 400 && r.status != 405)
            cr_assert(json_is_object(json_object_get(json_object_get(r.json, "error"), "innererror")), "case %zu: F&O error shape", i);
        resp_free(&r);
    }
    /* oversized body: 413, and the emulator still answers */
    size_t big = 70000;
    char *body = malloc(big + 64);
    snprintf(body, 64, "{\"CustomerAccount\":\"");
    memset(body + strlen(body), 'x', big);
    snprintf(body + 20 + big, 40, "\"}");
    req(&r, "POST", "CustomersV3", body, NULL);
    cr_assert_eq(r.status, 413, "%ld", r.status);
    resp_free(&r);
    free(body);
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "CustomerGroupId")), "10", "failed writes changed nothing");
    resp_free(&r);
    /* a group that exists is taken; an empty terms of payment names nothing */
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='V-1')", "{\"CustomerGroupId\":\"30\",\"PaymentTerms\":\"\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body ? r.body : "");
    resp_free(&r);
}

Test(emulator_fo, data_events_for_create_update_delete)
{
    resp_t r;
    make_customer("E-1", NULL, "10", 201);
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='E-1')", "{\"CreditLimit\":750,\"OnHoldStatus\":\"Invoice\"}", NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "DELETE", "CustomersV3(dataAreaId='usmf',CustomerAccount='E-1')", NULL, NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    cr_assert_eq(rx_wait(3, 20000), 3, "three events delivered");
    const char *msgs[] = {"Create", "Update", "Delete"};
    const char *id = NULL;
    for (int i = 0; i < 3; i++) {
        json_t *ev = rx.events[i];
        cr_assert_str_eq(json_string_value(json_object_get(ev, "MessageName")), msgs[i]);
        cr_assert_str_eq(json_string_value(json_object_get(ev, "PrimaryEntityName")), "CustomerV3");
        const char *pid = json_string_value(json_object_get(ev, "PrimaryEntityId"));
        cr_assert(pid && strlen(pid) == 36);
        if (!id)
            id = pid;
        cr_assert_str_eq(pid, id, "one record, one PrimaryEntityId");
        cr_assert(json_string_value(json_object_get(ev, "CorrelationId")));
    }
    json_t *t0 = ev_target(rx.events[0]);
    cr_assert_str_eq(json_string_value(attr(t0, "CustomerAccount")), "E-1");
    cr_assert_str_eq(json_string_value(attr(t0, "dataAreaId")), "usmf");
    cr_assert_str_eq(json_string_value(attr(t0, "OnHoldStatus")), "No");
    cr_assert_str_eq(json_string_value(json_object_get(t0, "LogicalName")), "CustomerV3");
    cr_assert_eq(json_array_size(json_object_get(rx.events[0], "PreEntityImages")), 0, "no pre-image on create");
    json_t *t1 = ev_target(rx.events[1]), *p1 = ev_pre(rx.events[1]);
    cr_assert_eq(json_number_value(attr(t1, "CreditLimit")), 750);
    cr_assert_str_eq(json_string_value(attr(t1, "OnHoldStatus")), "Invoice");
    cr_assert(p1, "update has a PreImage");
    cr_assert_eq(json_number_value(attr(p1, "CreditLimit")), 100);
    cr_assert_str_eq(json_string_value(attr(p1, "OnHoldStatus")), "No");
    cr_assert_gt(strtoll(json_string_value(json_object_get(t1, "RowVersion")), NULL, 10),
                 strtoll(json_string_value(json_object_get(p1, "RowVersion")), NULL, 10));
    json_t *t2 = ev_target(rx.events[2]), *p2 = ev_pre(rx.events[2]);
    cr_assert(strncmp(json_string_value(json_object_get(t2, "__type")), "EntityReference", 15) == 0);
    cr_assert_str_eq(json_string_value(kv_get(json_object_get(t2, "KeyAttributes"), "CustomerAccount")), "E-1");
    cr_assert(p2, "delete has a PreImage");
    cr_assert_eq(json_number_value(attr(p2, "CreditLimit")), 750);
    cr_assert_eq(rx.bad_auth, 0, "the shared-secret header is sent");
    /* null dates are omitted, set dates are sent; the order's customer (F&O checks the relation)
     * is written straight into the table, so it makes no event */
    char errstr[512];
    cr_assert_eq(dw_testemu_insert_rows(emu, "CustomerV3",
                                        "[{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"E-9\"}]",
                                        errstr, sizeof(errstr)),
                 0, "%s", errstr);
    req(&r, "POST", "CDSSalesOrderHeaders", "{\"SalesOrderNumber\":\"SO-1\",\"OrderingCustomerAccountNumber\":\"E-1\",\"CurrencyCode\":\"USD\"}", NULL);
    cr_assert_eq(r.status, 400, "a deleted customer is not found: %ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "The value 'E-1' in field 'Customer account' is not found in the related table 'Customers'"), "%s", r.body);
    resp_free(&r);
    req(&r, "POST", "CDSSalesOrderHeaders", "{\"SalesOrderNumber\":\"SO-1\",\"OrderingCustomerAccountNumber\":\"E-9\",\"CurrencyCode\":\"USD\"}", NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "PATCH", "CDSSalesOrderHeaders(dataAreaId='usmf',SalesOrderNumber='SO-1')", "{\"RequestedShippingDate\":\"2026-03-01\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    cr_assert_eq(rx_wait(5, 20000), 5);
    cr_assert_null(attr(ev_target(rx.events[3]), "RequestedShippingDate"), "a null date is omitted");
    cr_assert(json_object_get(json_array_get(json_object_get(ev_target(rx.events[3]), "Attributes"), 0), "key"));
    cr_assert_str_eq(json_string_value(attr(ev_target(rx.events[4]), "RequestedShippingDate")), "2026-03-01");
    json_t *st = admin_events();
    json_t *ep = json_array_get(json_object_get(st, "endpoints"), 0);
    cr_assert_eq(json_integer_value(json_object_get(ep, "delivered")), 5);
    cr_assert_eq(json_integer_value(json_object_get(ep, "pending")), 0);
    json_decref(st);
}

Test(emulator_fo, receiver_down_loses_nothing_and_keeps_order)
{
    resp_t r;
    rx_set_fail(1);
    make_customer("D-1", NULL, "10", 201);
    for (int i = 0; i < 4; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"CreditLimit\":%d}", 1000 + i);
        req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='D-1')", body, NULL);
        cr_assert_eq(r.status, 204);
        resp_free(&r);
    }
    make_customer("D-2", NULL, "10", 201);
    /* the delivery is retried: wait (not a fixed 600 ms) until the receiver refused it twice */
    int refused = 0;
    for (int waited = 0; waited < 20000 && refused < 2; waited += 20) {
        pthread_mutex_lock(&rx.mu);
        refused = rx.refused;
        pthread_mutex_unlock(&rx.mu);
        if (refused < 2)
            usleep(20000);
    }
    cr_assert_eq(rx_wait(1, 0), 0, "nothing accepted while the receiver answers 503");
    cr_assert_geq(refused, 2, "the first event is retried (%d attempts)", refused);
    json_t *st = admin_events();
    json_t *ep = json_array_get(json_object_get(st, "endpoints"), 0);
    cr_assert_eq(json_integer_value(json_object_get(ep, "pending")), 6);
    cr_assert_eq(json_integer_value(json_object_get(ep, "delivered")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ep, "last_error")), "HTTP 503");
    json_decref(st);
    rx_set_fail(0);
    int got6 = rx_wait(6, 20000);
    cr_assert_eq(got6, 6, "all six delivered after recovery (got %d, refused %d)", got6, rx.refused);
    usleep(200000);
    cr_assert_eq(rx_wait(7, 0), 6, "no duplicates");
    cr_assert_str_eq(json_string_value(json_object_get(rx.events[0], "MessageName")), "Create");
    for (int i = 1; i <= 4; i++) {
        cr_assert_str_eq(json_string_value(json_object_get(rx.events[i], "MessageName")), "Update");
        cr_assert_eq(json_number_value(attr(ev_target(rx.events[i]), "CreditLimit")), 1000 + i - 1, "commit order");
    }
    cr_assert_str_eq(json_string_value(attr(ev_target(rx.events[5]), "CustomerAccount")), "D-2");
    st = admin_events();
    ep = json_array_get(json_object_get(st, "endpoints"), 0);
    cr_assert_eq(json_integer_value(json_object_get(ep, "pending")), 0);
    cr_assert_eq(json_integer_value(json_object_get(ep, "delivered")), 6);
    json_decref(st);
}

Test(emulator_fo, failed_writes_produce_no_event)
{
    resp_t r;
    make_customer("F-1", NULL, "10", 201);
    cr_assert_eq(outbox_rows(), 1);
    make_customer("F-1", NULL, "10", 400);                       /* duplicate key: rolled back */
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='F-1')", "{\"OnHoldStatus\":\"Bogus\"}", NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    req(&r, "POST", "/_admin/faults", "{\"fail_writes\":{\"count\":2,\"status\":503,\"code\":\"x\",\"message\":\"injected\"}}", ADMIN_H);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='F-1')", "{\"CreditLimit\":5}", NULL);
    cr_assert_eq(r.status, 503);
    resp_free(&r);
    req(&r, "DELETE", "CustomersV3(dataAreaId='usmf',CustomerAccount='F-1')", NULL, NULL);
    cr_assert_eq(r.status, 503);
    resp_free(&r);
    cr_assert_eq(outbox_rows(), 1, "no outbox row without a committed change");
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='F-1')", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_number_value(json_object_get(r.json, "CreditLimit")), 100);
    resp_free(&r);
    /* the outbox row and the change are one transaction: every committed change has its row */
    PGconn *c = PQconnectdb(getenv("DW_PG_DSN"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK);
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT (SELECT count(*) FROM \"%s\".\"_fo_outbox\" WHERE message = 'Create'),"
             " (SELECT count(*) FROM \"%s\".\"CustomerV3\")", dw_testemu_schema(emu), dw_testemu_schema(emu));
    PGresult *res = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    cr_assert_str_eq(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    PQclear(res);
    PQfinish(c);
    cr_assert_eq(rx_wait(1, 20000), 1);
    usleep(200000);
    cr_assert_eq(rx_wait(2, 0), 1, "exactly one event delivered");
}

Test(emulator_fo, admin_faults_schema_drift_and_throttling)
{
    resp_t r;
    char v[256];
    make_customer("A-1", NULL, "10", 201);
    req(&r, "POST", "/_admin/faults", "{\"unavailable\":true}", ADMIN_H);
    resp_free(&r);
    req(&r, "GET", "CustomersV3", NULL, NULL);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(hdr(&r, "Retry-After", v, sizeof(v)), "1");
    resp_free(&r);
    req(&r, "POST", "/_admin/faults", "{\"unavailable\":false}", ADMIN_H);
    resp_free(&r);
    req(&r, "POST", "/_admin/drop-column", "{\"table\":\"CustomersV3\",\"column\":\"SalesMemo\"}", ADMIN_H);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='A-1')", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_null(json_object_get(r.json, "SalesMemo"));
    resp_free(&r);
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='A-1')", "{\"SalesMemo\":\"x\"}", NULL);
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(err_msg(&r), "SalesMemo"));
    resp_free(&r);
    req(&r, "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='A-1')", "{\"CreditLimit\":7}", NULL);
    cr_assert_eq(r.status, 204, "writes without the dropped column still work: %ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "/_admin/reset", "{}", ADMIN_H);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    make_customer("A-2", NULL, "10", 400); /* the reset emptied the customer groups too */
    char errstr[512];
    cr_assert_eq(dw_testemu_fo_refdata(emu, "usmf", errstr, sizeof(errstr)), 0, "%s", errstr);
    make_customer("A-2", NULL, "10", 201);
    cr_assert_eq(outbox_rows(), 1, "the outbox starts again after a reset");
    req(&r, "POST", "/_admin/limits", "{\"spec\":\"2/60\"}", ADMIN_H);
    resp_free(&r);
    long last = 0;
    for (int i = 0; i < 3; i++) {
        req(&r, "GET", "CustomersV3?$top=1", NULL, NULL);
        last = r.status;
        if (i < 2)
            resp_free(&r);
    }
    cr_assert_eq(last, 429);
    cr_assert_gt(atoi(hdr(&r, "Retry-After", v, sizeof(v))), 0);
    cr_assert_str_eq(err_msg(&r), "Too many requests");
    cr_assert(strstr(json_string_value(json_object_get(json_object_get(json_object_get(r.json, "error"), "innererror"), "message")), "Number of requests exceeded the limit of 2"));
    resp_free(&r);
}

/* A page without $filter is written from the columns' text (emu_fo.c fo_page_text); with one it
 * goes through to_jsonb and the output form. Both must give the same rows: every column type F&O
 * tables use (strings with escapes, enums, integers, decimals, dates, nulls), $select, server
 * paging. The filter below matches every row. */
Test(emulator_fo, pages_without_filter_equal_the_filtered_form)
{
    const char *sets[] = {"CustomersV3", "CDSSalesOrderLines", "ReleasedProductsV2", NULL};
    dw_test_run_t *sr = malloc(sizeof(*sr));
    const char *args[] = {"seed", "--system", "fo", "--pg", getenv("DW_PG_DSN"), "--schema",
                          dw_testemu_schema(emu), "--records",
                          "CustomersV3=40,CDSSalesOrderLines=30,ReleasedProductsV2=20", NULL};
    dw_test_run(sr, DW_BIN_DIR "/dw-emulator", args, NULL, 1);
    cr_assert_eq(sr->status, 0, "seed: %s", sr->err);
    free(sr);
    /* the seed replaced the groups and currencies: the written customer names its own */
    char errstr[512];
    cr_assert_eq(dw_testemu_insert_rows(emu, "CustomerGroup",
                                        "[{\"dataAreaId\":\"usmf\",\"CustomerGroupId\":\"QG\"}]",
                                        errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_eq(dw_testemu_insert_rows(emu, "Currency",
                                        "[{\"CurrencyCode\":\"XQX\",\"Name\":\"Test\"}]", errstr,
                                        sizeof(errstr)),
                 0, "%s", errstr);
    resp_t r;
    req(&r, "POST", "CustomersV3",
        "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"Q\\\"t\\\\b\\tx\",\"PartyType\":"
        "\"Organization\",\"CustomerGroupId\":\"QG\",\"SalesCurrencyCode\":\"XQX\","
        "\"OrganizationName\":\"M\\u00fcller \\u2603 \\n\\u0001/\",\"OnHoldStatus\":\"No\","
        "\"CreditLimit\":12.5}",
        NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    resp_free(&r);
    const char *pref[] = {"Prefer: odata.maxpagesize=7", NULL};
    for (int i = 0; sets[i]; i++) {
        for (int sel = 0; sel < 2; sel++) {
            char plain[512], filtered[512];
            const char *select = sel ? "&$select=dataAreaId,CustomerAccount,CreditLimit" : "";
            if (strcmp(sets[i], "CustomersV3") != 0)
                select = sel ? "&$select=dataAreaId" : "";
            snprintf(plain, sizeof(plain), "%s?cross-company=true%s", sets[i], select);
            snprintf(filtered, sizeof(filtered),
                     "%s?cross-company=true&$filter=dataAreaId%%20ne%%20'zzzz'%s", sets[i], select);
            int pages = 0;
            while (plain[0] && pages++ < 20) {
                resp_t a, b;
                req(&a, "GET", plain, NULL, pref);
                req(&b, "GET", filtered, NULL, pref);
                cr_assert_eq(a.status, 200, "%s: %ld %s", plain, a.status, a.body);
                cr_assert_eq(b.status, 200, "%s: %ld %s", filtered, b.status, b.body);
                json_t *va = json_object_get(a.json, "value"), *vb = json_object_get(b.json, "value");
                cr_assert_gt(json_array_size(va), 0, "%s", plain);
                cr_assert(json_equal(va, vb), "%s:\n%s\n%s", plain, a.body, b.body);
                /* the same members in the same order */
                for (size_t k = 0; k < json_array_size(va); k++) {
                    const char *ka = json_object_iter_key(json_object_iter(json_array_get(va, k)));
                    const char *kb = json_object_iter_key(json_object_iter(json_array_get(vb, k)));
                    cr_assert_str_eq(ka, "@odata.etag");
                    cr_assert_str_eq(kb, "@odata.etag");
                }
                char cta[128], ctb[128];
                cr_assert_str_eq(hdr(&a, "Content-Type", cta, sizeof(cta)),
                                 hdr(&b, "Content-Type", ctb, sizeof(ctb)));
                const char *na = json_string_value(json_object_get(a.json, "@odata.nextLink"));
                const char *nb = json_string_value(json_object_get(b.json, "@odata.nextLink"));
                cr_assert_eq(na == NULL, nb == NULL, "%s", plain);
                plain[0] = filtered[0] = '\0';
                if (na) {
                    const char *pa = strstr(na, "/data/"), *pb = strstr(nb, "/data/");
                    cr_assert(pa && pb && strstr(na, "$skiptoken="), "%s", na);
                    snprintf(plain, sizeof(plain), "%s", pa + 6);
                    snprintf(filtered, sizeof(filtered), "%s", pb + 6);
                }
                resp_free(&a);
                resp_free(&b);
            }
            cr_assert_gt(pages, 1, "%s: one page only", sets[i]);
        }
    }
}
