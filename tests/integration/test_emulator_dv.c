/*
 * Integration tests of dw-emulator --system dv against the real PostgreSQL (DW_PG_DSN): each test
 * starts the emulator as a child process (posix_spawn) on a free loopback port with its own
 * schema, talks HTTP with libcurl and drops the schema at the end. The expected statuses, headers
 * and error bodies follow the request/response examples of Microsoft Learn (Dataverse Web API:
 * "Update and delete table rows", "Perform conditional operations", "Use an alternate key",
 * "Use UpsertMultiple", "Use change tracking", "Service protection API limits").
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_testemu.h"

#define ADMIN "test-admin-secret"
#define ACC_COMPANY "00000000-0000-0000-0000-000000000000"

typedef dw_testemu_resp_t resp_t;

static dw_testemu_t *emu;
static const char *base; /* the service root, "http://127.0.0.1:PORT/api/data/v9.2/" */

#define req(r, method, path, body, headers) dw_testemu_request(emu, r, method, path, body, headers)
#define resp_free dw_testemu_resp_free
#define hdr dw_testemu_resp_header

static const char *err_code(const resp_t *r)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

static void start_emulator(void)
{
    const char *args[] = {"--limits", "off", "-X", "emulator.admin_secret=" ADMIN, "-X",
                          "emulator.max_body_bytes=1048576", "-X",
                          "emulator.change_retention_s=3600", NULL};
    char errstr[1024];
    emu = dw_testemu_start("dv", "emu_dv", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
    base = dw_testemu_base(emu);
}

static void stop_emulator(void)
{
    if (emu)
        cr_expect_eq(dw_testemu_stop(emu), 0, "dw-emulator did not exit cleanly");
    dw_testemu_destroy(emu);
    emu = NULL;
}

TestSuite(emulator_dv, .init = start_emulator, .fini = stop_emulator, .timeout = 60);

/* create a cdm_company and return its id in out */
static void make_company(const char *code, char *out)
{
    resp_t r;
    char body[256];
    snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\",\"cdm_name\":\"Company %s\"}", code, code);
    const char *h[] = {"Prefer: return=representation", NULL};
    req(&r, "POST", "cdm_companies", body, h);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(out, 37, "%s", json_string_value(json_object_get(r.json, "cdm_companyid")));
    resp_free(&r);
}

Test(emulator_dv, token_endpoint_and_bearer_auth)
{
    resp_t r;
    char v[512];
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    req(&r, "POST", "/t1/oauth2/v2.0/token",
        "client_id=dwfleet&client_secret=wrong&grant_type=client_credentials&scope=x/.default", form);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "error")), "invalid_client");
    resp_free(&r);
    req(&r, "POST", "/t1/oauth2/v2.0/token", "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=password&scope=x/.default", form);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "error")), "unsupported_grant_type");
    resp_free(&r);
    req(&r, "POST", "/t1/oauth2/v2.0/token", "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=client_credentials&scope=x", form);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "error")), "invalid_scope");
    resp_free(&r);
    req(&r, "POST", "/t1/oauth2/v2.0/token", "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default", form);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "token_type")), "Bearer");
    cr_assert_eq(json_integer_value(json_object_get(r.json, "expires_in")), 3599);
    resp_free(&r);
    const char *bad[] = {"Authorization: Bearer not-a-token", NULL};
    req(&r, "GET", "accounts", NULL, bad);
    cr_assert_eq(r.status, 401);
    cr_assert(strstr(hdr(&r, "WWW-Authenticate", v, sizeof(v)), "Bearer authorization_uri=") == v);
    resp_free(&r);
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(hdr(&r, "OData-Version", v, sizeof(v)), "4.0");
    resp_free(&r);
}

Test(emulator_dv, create_and_retrieve_by_id_and_alternate_key)
{
    resp_t r;
    char v[512], company[40], path[512];
    make_company("USMF", company);
    char body[512];
    snprintf(body, sizeof(body), "{\"name\":\"Contoso\",\"accountnumber\":\"O'Neil\",\"creditlimit\":1000.5,\"msdyn_company@odata.bind\":\"cdm_companies(cdm_companycode='USMF')\"}");
    req(&r, "POST", "accounts", body, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    hdr(&r, "OData-EntityId", v, sizeof(v));
    cr_assert(strncmp(v, base, strlen(base)) == 0, "%s", v);
    char id[40];
    snprintf(id, sizeof(id), "%.36s", v + strlen(base) + strlen("accounts("));
    resp_free(&r);
    snprintf(path, sizeof(path), "accounts(%s)?$select=name,accountnumber,_msdyn_company_value", id);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "name")), "Contoso");
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "_msdyn_company_value")), company);
    cr_assert_null(json_object_get(r.json, "creditlimit"), "$select must limit the columns");
    const char *etag = json_string_value(json_object_get(r.json, "@odata.etag"));
    cr_assert(etag && strncmp(etag, "W/\"", 3) == 0, "weak etag expected");
    cr_assert_str_eq(hdr(&r, "OData-Version", v, sizeof(v)), "4.0");
    resp_free(&r);
    snprintf(path, sizeof(path), "accounts(accountnumber='O''Neil',msdyn_company=%s)", company);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "accountid")), id);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "statecode")), 0, "default statecode");
    resp_free(&r);
    req(&r, "GET", "accounts(00000000-0000-0000-0000-000000000099)", NULL, NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(err_code(&r), "0x80040217");
    resp_free(&r);
}

Test(emulator_dv, patch_upsert_with_etags_and_conditions)
{
    resp_t r;
    char v[512], company[40], path[512], etag[64];
    make_company("USRT", company);
    snprintf(path, sizeof(path), "accounts(accountnumber='A-1',msdyn_company=%s)", company);
    const char *if_match_any[] = {"If-Match: *", NULL};
    req(&r, "PATCH", path, "{\"name\":\"x\"}", if_match_any);
    cr_assert_eq(r.status, 404, "If-Match: * must prevent a create");
    cr_assert_str_eq(err_code(&r), "0x80040217");
    resp_free(&r);
    req(&r, "PATCH", path, "{\"name\":\"First\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    cr_assert(strstr(hdr(&r, "OData-EntityId", v, sizeof(v)), "/accounts(") != NULL);
    resp_free(&r);
    const char *if_none[] = {"If-None-Match: *", NULL};
    req(&r, "PATCH", path, "{\"name\":\"x\"}", if_none);
    cr_assert_eq(r.status, 412);
    cr_assert_str_eq(err_code(&r), "0x80040237");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
                     "A record with matching key values already exists.");
    resp_free(&r);
    const char *repr[] = {"Prefer: return=representation", NULL};
    req(&r, "PATCH", path, "{\"name\":\"Second\"}", repr);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "name")), "Second");
    snprintf(etag, sizeof(etag), "%s", json_string_value(json_object_get(r.json, "@odata.etag")));
    cr_assert_str_eq(hdr(&r, "Preference-Applied", v, sizeof(v)), "return=representation");
    resp_free(&r);
    char ifm[96];
    snprintf(ifm, sizeof(ifm), "If-Match: %s", etag);
    const char *h_ok[] = {ifm, NULL};
    req(&r, "PATCH", path, "{\"name\":\"Third\"}", h_ok);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "PATCH", path, "{\"name\":\"Fourth\"}", h_ok);
    cr_assert_eq(r.status, 412, "a stale etag must fail");
    cr_assert_str_eq(err_code(&r), "0x80060882");
    resp_free(&r);
    /* conditional GET */
    req(&r, "GET", path, NULL, NULL);
    snprintf(etag, sizeof(etag), "%s", json_string_value(json_object_get(r.json, "@odata.etag")));
    resp_free(&r);
    char inm[96];
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    const char *h_inm[] = {inm, NULL};
    req(&r, "GET", path, NULL, h_inm);
    cr_assert_eq(r.status, 304);
    resp_free(&r);
    /* POST with a duplicate alternate key */
    char body[300];
    snprintf(body, sizeof(body), "{\"name\":\"dup\",\"accountnumber\":\"A-1\",\"msdyn_company@odata.bind\":\"/cdm_companies(%s)\"}", company);
    req(&r, "POST", "accounts", body, NULL);
    cr_assert_eq(r.status, 412, "%ld %s", r.status, r.body);
    cr_assert_str_eq(err_code(&r), "0x80040237");
    resp_free(&r);
    /* create through PATCH with representation: 201 */
    snprintf(path, sizeof(path), "accounts(accountnumber='A-2',msdyn_company=%s)", company);
    req(&r, "PATCH", path, "{\"name\":\"New\"}", repr);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "accountnumber")), "A-2");
    resp_free(&r);
}

Test(emulator_dv, delete_by_id_and_alternate_key)
{
    resp_t r;
    char company[40], path[512];
    make_company("DEL", company);
    snprintf(path, sizeof(path), "accounts(accountnumber='D1',msdyn_company=%s)", company);
    req(&r, "PATCH", path, "{\"name\":\"gone soon\"}", NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    req(&r, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(err_code(&r), "0x80040217");
    resp_free(&r);
    snprintf(path, sizeof(path), "cdm_companies(%s)", company);
    req(&r, "DELETE", path, NULL, NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
}

Test(emulator_dv, odata_bind_needs_an_existing_record)
{
    resp_t r;
    req(&r, "POST", "accounts", "{\"name\":\"n\",\"msdyn_company@odata.bind\":\"cdm_companies(00000000-0000-0000-0000-000000000042)\"}", NULL);
    cr_assert_eq(r.status, 404, "%ld %s", r.status, r.body);
    cr_assert_str_eq(err_code(&r), "0x80040217");
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"name\":\"n\",\"msdyn_company@odata.bind\":\"cdm_companies(cdm_companycode='NONE')\"}", NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"name\":\"n\",\"msdyn_company@odata.bind\":\"accounts(00000000-0000-0000-0000-000000000042)\"}", NULL);
    cr_assert_eq(r.status, 400, "a set that is not a target of the lookup");
    resp_free(&r);
    req(&r, "GET", "accounts?$select=name", NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "value")), 0, "nothing may be written");
    resp_free(&r);
}

Test(emulator_dv, validation_from_metadata)
{
    resp_t r;
    char longname[400];
    memset(longname, 'x', 161);
    longname[161] = '\0';
    char body[600];
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", longname);
    struct {
        const char *body;
        long status;
        const char *code;
    } cases[] = {
        {body, 400, "0x80044331"},
        {"{\"name\":\"n\",\"customertypecode\":999}", 400, "0x8004431a"},
        {"{\"name\":\"n\",\"nosuchcolumn\":1}", 400, "0x80048d19"},
        {"{\"name\":\"n\",\"creditlimit\":\"abc\"}", 400, "0x80048d19"},
        {"{\"name\":\"n\",\"versionnumber\":5}", 400, "0x80044331"},
        {"{\"accountnumber\":\"no name\"}", 400, "0x80044331"},
        {"{\"name\":null}", 400, "0x80044331"},
        {"{\"name\":\"n\",\"msdyn_company\":\"00000000-0000-0000-0000-000000000001\"}", 400, "0x80048d19"},
        {"{\"name\": \"unterminated", 400, "0x80048d19"},
        {"[1,2]", 400, "0x80048d19"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        req(&r, "POST", "accounts", cases[i].body, NULL);
        cr_expect_eq(r.status, cases[i].status, "case %zu: %ld %s", i, r.status, r.body);
        cr_expect(err_code(&r) && strcmp(err_code(&r), cases[i].code) == 0, "case %zu: %s", i, r.body);
        resp_free(&r);
    }
    req(&r, "GET", "accounts?$count=true", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 0);
    resp_free(&r);
}

Test(emulator_dv, hostile_keys_and_bad_requests_never_crash)
{
    resp_t r;
    const char *paths[] = {"accounts(accountnumber='') or 1 eq 1)", "accounts(accountnumber='abc)",
                           "accounts(accountnumber=abc')", "accounts((((", "accounts(1 eq 1)",
                           "accounts(accountnumber='x';DROP TABLE x)", "accounts(name='x')",
                           "accounts(not-a-guid)", "accounts('00000000-0000-0000-0000-000000000001')"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        req(&r, "GET", paths[i], NULL, NULL);
        cr_expect_eq(r.status, 400, "%s: %ld %s", paths[i], r.status, r.body);
        cr_expect(err_code(&r) != NULL, "%s: error body expected", paths[i]);
        resp_free(&r);
    }
    /* an injection attempt inside a well-formed literal is just a value that matches nothing */
    req(&r, "GET", "accounts(accountnumber=''') or 1 eq 1',msdyn_company=null)", NULL, NULL);
    cr_assert_eq(r.status, 404, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "nosuchset", NULL, NULL);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(err_code(&r), "0x8006088a");
    resp_free(&r);
    req(&r, "GET", "accounts?$foo=1", NULL, NULL);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(err_code(&r), "0x80060888");
    resp_free(&r);
    req(&r, "GET", "accounts?$select=nosuch", NULL, NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    req(&r, "GET", "accounts?$filter=name%20eq", NULL, NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    req(&r, "PUT", "accounts", "{}", NULL);
    cr_assert_eq(r.status, 405);
    resp_free(&r);
    const char *ct[] = {"Content-Type: text/plain", NULL};
    req(&r, "POST", "accounts", "{\"name\":\"x\"}", ct);
    cr_assert_eq(r.status, 415);
    resp_free(&r);
    /* oversized body: the limit is 1 MiB in these tests */
    size_t big = 2u << 20;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    req(&r, "POST", "accounts", huge, NULL);
    cr_assert_eq(r.status, 413, "%ld", r.status);
    resp_free(&r);
    free(huge);
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200, "the emulator must still answer");
    resp_free(&r);
}

Test(emulator_dv, collections_filter_order_top_count_and_paging)
{
    resp_t r;
    char body[256];
    for (int i = 0; i < 25; i++) {
        snprintf(body, sizeof(body), "{\"cdm_companycode\":\"C%02d\",\"cdm_name\":\"%s %02d\"}", i,
                 i % 2 ? "Odd" : "Even", i);
        req(&r, "POST", "cdm_companies", body, NULL);
        cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
        resp_free(&r);
    }
    req(&r, "GET", "cdm_companies?$select=cdm_companycode&$filter=startswith(cdm_name,'Odd')&$orderby=cdm_companycode%20desc&$count=true", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 12);
    json_t *val = json_object_get(r.json, "value");
    cr_assert_eq(json_array_size(val), 12);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(val, 0), "cdm_companycode")), "C23");
    resp_free(&r);
    req(&r, "GET", "cdm_companies?$top=3&$orderby=cdm_companycode", NULL, NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "value")), 3);
    cr_assert_null(json_object_get(r.json, "@odata.nextLink"));
    resp_free(&r);
    /* server-driven paging with odata.maxpagesize: follow the opaque nextLink */
    const char *pref[] = {"Prefer: odata.maxpagesize=10", NULL};
    char next[4096];
    snprintf(next, sizeof(next), "%scdm_companies?$select=cdm_companycode&$orderby=cdm_companycode", base);
    int pages = 0, rows = 0;
    char last[16] = "";
    while (next[0]) {
        req(&r, "GET", next, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        char v[128];
        cr_assert_str_eq(hdr(&r, "Preference-Applied", v, sizeof(v)), "odata.maxpagesize=10");
        json_t *value = json_object_get(r.json, "value");
        for (size_t i = 0; i < json_array_size(value); i++) {
            const char *code = json_string_value(json_object_get(json_array_get(value, i), "cdm_companycode"));
            cr_assert(strcmp(code, last) > 0, "order across pages");
            snprintf(last, sizeof(last), "%s", code);
            rows++;
        }
        pages++;
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        snprintf(next, sizeof(next), "%s", nl ? nl : "");
        resp_free(&r);
        cr_assert(pages < 10);
    }
    cr_assert_eq(rows, 25);
    cr_assert_eq(pages, 3);
}

static void follow(const char *link, json_t **out_value, char *delta, size_t dsize)
{
    resp_t r;
    const char *pref[] = {"Prefer: odata.track-changes,odata.maxpagesize=2", NULL};
    char next[4096];
    snprintf(next, sizeof(next), "%s", link);
    *out_value = json_array();
    delta[0] = '\0';
    for (int guard = 0; next[0] && guard < 50; guard++) {
        req(&r, "GET", next, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        char v[128];
        cr_assert(strstr(hdr(&r, "Preference-Applied", v, sizeof(v)), "odata.track-changes"), "%s", v);
        json_array_extend(*out_value, json_object_get(r.json, "value"));
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        const char *dl = json_string_value(json_object_get(r.json, "@odata.deltaLink"));
        snprintf(next, sizeof(next), "%s", nl ? nl : "");
        if (dl)
            snprintf(delta, dsize, "%s", dl);
        resp_free(&r);
    }
}

Test(emulator_dv, change_tracking_round_trip)
{
    resp_t r;
    char body[256], delta[4096], link[4096];
    json_t *value = NULL;
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof(body), "{\"cdm_companycode\":\"T%d\",\"cdm_name\":\"n%d\"}", i, i);
        req(&r, "POST", "cdm_companies", body, NULL);
        resp_free(&r);
    }
    snprintf(link, sizeof(link), "%scdm_companies?$select=cdm_companycode,cdm_name", base);
    follow(link, &value, delta, sizeof(delta));
    cr_assert_eq(json_array_size(value), 3);
    cr_assert(strstr(delta, "$deltatoken=") != NULL, "%s", delta);
    json_decref(value);
    /* no change: empty delta */
    follow(delta, &value, delta, sizeof(delta));
    cr_assert_eq(json_array_size(value), 0);
    json_decref(value);
    /* delete T0, update T1, create T9 */
    req(&r, "DELETE", "cdm_companies(cdm_companycode='T0')", NULL, NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "PATCH", "cdm_companies(cdm_companycode='T1')", "{\"cdm_name\":\"changed\"}", NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    req(&r, "PATCH", "cdm_companies(cdm_companycode='T9')", "{\"cdm_name\":\"new\"}", NULL);
    cr_assert_eq(r.status, 204);
    resp_free(&r);
    char old_delta[4096];
    snprintf(old_delta, sizeof(old_delta), "%s", delta);
    follow(delta, &value, delta, sizeof(delta));
    cr_assert_eq(json_array_size(value), 3, "%zu changes", json_array_size(value));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(value, 0), "cdm_name")), "changed");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(value, 1), "cdm_companycode")), "T9");
    json_t *del = json_array_get(value, 2);
    cr_assert_str_eq(json_string_value(json_object_get(del, "reason")), "deleted");
    cr_assert(strstr(json_string_value(json_object_get(del, "@odata.context")), "/$deletedEntity") != NULL);
    json_decref(value);
    /* $filter is not allowed with change tracking */
    const char *pref[] = {"Prefer: odata.track-changes", NULL};
    req(&r, "GET", "cdm_companies?$filter=cdm_name%20eq%20'x'", NULL, pref);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    /* invalid and expired tokens */
    req(&r, "GET", "cdm_companies?$deltatoken=garbage", NULL, NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    const char *adm[] = {"Authorization: Bearer " ADMIN, NULL};
    req(&r, "POST", "/_admin/expire-tokens", "{}", adm);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", old_delta, NULL, NULL);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(err_code(&r), "0x80044352");
    resp_free(&r);
    /* the newest token, issued after the last change, is expired too */
    req(&r, "GET", delta, NULL, NULL);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert_str_eq(err_code(&r), "0x80044352");
    resp_free(&r);
    /* a token issued after the admin call is valid */
    follow(link, &value, delta, sizeof(delta));
    cr_assert_eq(json_array_size(value), 3);
    json_decref(value);
    follow(delta, &value, delta, sizeof(delta));
    cr_assert_eq(json_array_size(value), 0);
    json_decref(value);
}

Test(emulator_dv, upsert_multiple_of_1000_and_bulk_messages)
{
    resp_t r;
    char company[40];
    make_company("BULK", company);
    size_t cap = 1000 * 300;
    char *body = malloc(cap);
    for (int pass = 0; pass < 2; pass++) {
        size_t o = (size_t)snprintf(body, cap, "{\"Targets\":[");
        for (int i = 0; i < 1000; i++)
            o += (size_t)snprintf(body + o, cap - o,
                                  "%s{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='B%04d',msdyn_company=%s)\",\"name\":\"Bulk %d pass %d\"}",
                                  i ? "," : "", i, company, i, pass);
        snprintf(body + o, cap - o, "]}");
        req(&r, "POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple", body, NULL);
        cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
        resp_free(&r);
    }
    free(body);
    req(&r, "GET", "accounts?$count=true&$select=name&$filter=name%20eq%20'Bulk%20999%20pass%201'", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 1, "%s", r.body);
    resp_free(&r);
    req(&r, "GET", "accounts?$count=true&$select=name", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 1000);
    resp_free(&r);
    /* pages of 500 over 1,000 rows: two full pages and no nextLink to an empty third (the page
     * ends where the emulator's read chunk does) */
    const char *pref[] = {"Prefer: odata.maxpagesize=500", NULL};
    char next[4096];
    snprintf(next, sizeof(next), "%saccounts?$select=accountid", base);
    int pages = 0, rows = 0;
    while (next[0]) {
        req(&r, "GET", next, NULL, pref);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        size_t n = json_array_size(json_object_get(r.json, "value"));
        cr_assert_gt(n, 0, "page %d is empty", pages + 1);
        rows += (int)n;
        pages++;
        const char *nl = json_string_value(json_object_get(r.json, "@odata.nextLink"));
        snprintf(next, sizeof(next), "%s", nl ? nl : "");
        resp_free(&r);
        cr_assert(pages < 5);
    }
    cr_assert_eq(rows, 1000);
    cr_assert_eq(pages, 2);
    /* all or nothing: the second target is invalid */
    req(&r, "POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='NEW1',msdyn_company=null)\",\"name\":\"ok\"},"
        "{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='NEW2',msdyn_company=null)\",\"customertypecode\":999}]}",
        NULL);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "accounts(accountnumber='NEW1',msdyn_company=null)", NULL, NULL);
    cr_assert_eq(r.status, 404, "the whole request must roll back");
    resp_free(&r);
    /* a wrong @odata.type */
    req(&r, "POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.contact\",\"name\":\"x\"}]}", NULL);
    cr_assert_eq(r.status, 400);
    resp_free(&r);
    /* CreateMultiple returns the ids */
    req(&r, "POST", "cdm_companies/Microsoft.Dynamics.CRM.CreateMultiple",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.cdm_company\",\"cdm_companycode\":\"CM1\",\"cdm_name\":\"a\"},"
        "{\"@odata.type\":\"Microsoft.Dynamics.CRM.cdm_company\",\"cdm_companycode\":\"CM2\",\"cdm_name\":\"b\"}]}",
        NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "Ids")), 2);
    resp_free(&r);
    /* UpdateMultiple of a missing row: 404, nothing changed */
    req(&r, "POST", "cdm_companies/Microsoft.Dynamics.CRM.UpdateMultiple",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.cdm_company\",\"cdm_companycode\":\"CM1\",\"cdm_name\":\"changed\"},"
        "{\"@odata.type\":\"Microsoft.Dynamics.CRM.cdm_company\",\"cdm_companycode\":\"ZZZ\",\"cdm_name\":\"c\"}]}",
        NULL);
    cr_assert_eq(r.status, 404, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "cdm_companies(cdm_companycode='CM1')?$select=cdm_name", NULL, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "cdm_name")), "a");
    resp_free(&r);
}

/* Decimals keep the digits the client wrote: 17032.2 is stored and read back as 17032.2, not as
 * jansson's 17-digit 17032.200000000001 (which made every account with such a credit limit come
 * back from change tracking as a change, and bounce once between the two sides). */
Test(emulator_dv, decimals_read_back_with_the_digits_written)
{
    resp_t r;
    req(&r, "POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
        "{\"Targets\":[{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='D1',msdyn_company=null)\",\"name\":\"d1\",\"creditlimit\":17032.2},"
        "{\"@odata.type\":\"Microsoft.Dynamics.CRM.account\",\"@odata.id\":\"accounts(accountnumber='D2',msdyn_company=null)\",\"name\":\"d2\",\"creditlimit\":0.1}]}",
        NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"accountnumber\":\"D3\",\"name\":\"d3\",\"creditlimit\":63677.07}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "PATCH", "accounts(accountnumber='D2',msdyn_company=null)", "{\"creditlimit\":1.1}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    const struct {
        const char *key, *want;
    } cases[] = {{"D1", "\"creditlimit\":17032.2}"}, {"D2", "\"creditlimit\":1.1}"}, {"D3", "\"creditlimit\":63677.07}"}};
    for (size_t i = 0; i < 3; i++) {
        char path[200];
        snprintf(path, sizeof(path), "accounts(accountnumber='%s',msdyn_company=null)?$select=creditlimit", cases[i].key);
        req(&r, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        cr_assert(strstr(r.body, cases[i].want), "%s: %s", cases[i].key, r.body);
        resp_free(&r);
    }
    /* and in a collection page, as change tracking and the capture read them */
    req(&r, "GET", "accounts?$select=creditlimit&$filter=accountnumber%20eq%20'D1'", NULL, NULL);
    cr_assert(strstr(r.body, "\"creditlimit\":17032.2}"), "%s", r.body);
    resp_free(&r);
}

Test(emulator_dv, entity_definitions_attributes)
{
    resp_t r;
    req(&r, "GET", "EntityDefinitions(LogicalName='account')/Attributes", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *v = json_object_get(r.json, "value");
    bool found = false;
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *a = json_array_get(v, i);
        if (strcmp(json_string_value(json_object_get(a, "LogicalName")), "name") == 0) {
            found = true;
            cr_assert_str_eq(json_string_value(json_object_get(a, "AttributeType")), "String");
            cr_assert_eq(json_integer_value(json_object_get(a, "MaxLength")), 160);
            cr_assert_str_eq(json_string_value(json_object_get(json_object_get(a, "RequiredLevel"), "Value")), "ApplicationRequired");
            cr_assert(json_is_true(json_object_get(a, "IsValidForCreate")));
        }
    }
    cr_assert(found);
    resp_free(&r);
    req(&r, "GET", "EntityDefinitions(LogicalName='nosuch')", NULL, NULL);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
}

Test(emulator_dv, admin_faults_and_schema_drift)
{
    resp_t r;
    const char *adm[] = {"Authorization: Bearer " ADMIN, NULL};
    const char *wrong[] = {"Authorization: Bearer nope", NULL};
    req(&r, "GET", "/_admin/state", NULL, wrong);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    req(&r, "POST", "/_admin/faults", "{\"fail_writes\":{\"count\":1,\"status\":503,\"code\":\"0x80040216\",\"message\":\"boom\"}}", adm);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "cdm_companies", "{\"cdm_companycode\":\"F1\",\"cdm_name\":\"x\"}", NULL);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(err_code(&r), "0x80040216");
    resp_free(&r);
    req(&r, "POST", "cdm_companies", "{\"cdm_companycode\":\"F1\",\"cdm_name\":\"x\"}", NULL);
    cr_assert_eq(r.status, 204, "only N writes fail");
    resp_free(&r);
    /* with match: only the writes that name it fail */
    req(&r, "POST", "/_admin/faults", "{\"fail_writes\":{\"count\":1,\"status\":503,\"match\":\"F3\"}}", adm);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "cdm_companies", "{\"cdm_companycode\":\"F2\",\"cdm_name\":\"x\"}", NULL);
    cr_assert_eq(r.status, 204, "a write not naming F3 passes: %ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "cdm_companies", "{\"cdm_companycode\":\"F3\",\"cdm_name\":\"x\"}", NULL);
    cr_assert_eq(r.status, 503, "the write naming F3 fails");
    resp_free(&r);
    req(&r, "POST", "cdm_companies", "{\"cdm_companycode\":\"F3\",\"cdm_name\":\"x\"}", NULL);
    cr_assert_eq(r.status, 204, "once");
    resp_free(&r);
    req(&r, "POST", "/_admin/faults", "{\"unavailable\":true}", adm);
    resp_free(&r);
    req(&r, "GET", "cdm_companies", NULL, NULL);
    cr_assert_eq(r.status, 503);
    resp_free(&r);
    req(&r, "POST", "/_admin/faults", "{\"unavailable\":false}", adm);
    resp_free(&r);
    req(&r, "POST", "/_admin/drop-column", "{\"table\":\"account\",\"column\":\"telephone1\"}", adm);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"name\":\"n\",\"telephone1\":\"555\"}", NULL);
    cr_assert_eq(r.status, 400);
    cr_assert_str_eq(err_code(&r), "0x80048d19");
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"name\":\"n\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "/_admin/reset", "{}", adm);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "accounts?$count=true", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "@odata.count")), 0);
    resp_free(&r);
    req(&r, "POST", "accounts", "{\"name\":\"n\",\"telephone1\":\"555\"}", NULL);
    cr_assert_eq(r.status, 204, "reset restores the column: %ld %s", r.status, r.body);
    resp_free(&r);
}

Test(emulator_dv, service_protection_limits)
{
    resp_t r;
    const char *adm[] = {"Authorization: Bearer " ADMIN, NULL};
    req(&r, "POST", "/_admin/limits", "{\"spec\":\"3/60\"}", adm);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 3; i++) {
        req(&r, "GET", "WhoAmI", NULL, NULL);
        cr_assert_eq(r.status, 200);
        resp_free(&r);
    }
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 429);
    cr_assert_str_eq(err_code(&r), "0x80072322");
    char v[64];
    cr_assert(atoi(hdr(&r, "Retry-After", v, sizeof(v))) >= 1, "Retry-After: %s", v);
    resp_free(&r);
    req(&r, "POST", "/_admin/limits", "{\"spec\":\"off\"}", adm);
    resp_free(&r);
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}
