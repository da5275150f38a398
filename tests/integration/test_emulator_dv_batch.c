/*
 * Integration tests of $batch on dw-emulator --system dv against the real PostgreSQL (DW_PG_DSN),
 * over real HTTP, following Microsoft Learn's "Execute batch operations using the Web API": change
 * sets are atomic (a failure rolls the whole change set back and is its only response), Content-ID
 * references ("$1" in a URL and in @odata.bind), Prefer: odata.continue-on-error, malformed
 * multipart and the 1,000-request limit. The harness is the one of test_emulator_dv.c.
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
    emu = dw_testemu_start("dv", "emu_dvb", args, NULL, errstr, sizeof(errstr));
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

TestSuite(emulator_dv_batch, .init = start_emulator, .fini = stop_emulator, .timeout = 60);

#define BCT "Content-Type: multipart/mixed; boundary=batch_t1"

/* count occurrences of needle in hay */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static long count_accounts(const char *name)
{
    resp_t r;
    char path[256];
    snprintf(path, sizeof(path), "accounts?$filter=name eq '%s'&$count=true", name);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    long n = (long)json_integer_value(json_object_get(r.json, "@odata.count"));
    resp_free(&r);
    return n;
}

Test(emulator_dv_batch, change_set_with_content_id_references)
{
    const char *body =
        "--batch_t1\r\n"
        "Content-Type: multipart/mixed; boundary=changeset_c1\r\n"
        "\r\n"
        "--changeset_c1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n"
        "\r\n"
        "POST /api/data/v9.2/cdm_companies HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"cdm_companycode\":\"BT1\",\"cdm_name\":\"Batch company\"}\r\n"
        "--changeset_c1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 2\r\n"
        "\r\n"
        "POST accounts HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"name\":\"Batch account\",\"accountnumber\":\"BA-1\",\"msdyn_company@odata.bind\":\"$1\"}\r\n"
        "--changeset_c1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 3\r\n"
        "\r\n"
        "PATCH $2 HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"telephone1\":\"555-0100\"}\r\n"
        "--changeset_c1--\r\n"
        "--batch_t1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "GET accounts?$select=name,telephone1,_msdyn_company_value&$filter=name%20eq%20'Batch%20account' HTTP/1.1\r\n"
        "Accept: application/json\r\n"
        "\r\n"
        "--batch_t1--\r\n";
    const char *h[] = {BCT, NULL};
    resp_t r;
    char v[512];
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    hdr(&r, "Content-Type", v, sizeof(v));
    cr_assert(strncmp(v, "multipart/mixed; boundary=batchresponse_", 40) == 0, "%s", v);
    char bnd[600];
    snprintf(bnd, sizeof(bnd), "--%s", v + strlen("multipart/mixed; boundary="));
    cr_assert_eq(count(r.body, bnd), 3, "two parts and the close delimiter: %s", r.body);
    cr_assert(strstr(r.body, "Content-Type: multipart/mixed; boundary=changesetresponse_"), "%s", r.body);
    cr_assert_eq(count(r.body, "HTTP/1.1 204 No Content\r\n"), 3, "%s", r.body);
    cr_assert_eq(count(r.body, "OData-EntityId: "), 3, "%s", r.body);
    cr_assert_eq(count(r.body, "Content-ID: "), 3, "%s", r.body);
    cr_assert(strstr(r.body, "HTTP/1.1 200 OK\r\n"), "%s", r.body);
    const char *js = strstr(r.body, "{\"@odata.context\"");
    cr_assert(js, "%s", r.body);
    json_t *page = json_loadb(js, strcspn(js, "\r"), 0, NULL);
    cr_assert(page, "%s", js);
    json_t *row = json_array_get(json_object_get(page, "value"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(row, "telephone1")), "555-0100");
    const char *company = json_string_value(json_object_get(row, "_msdyn_company_value"));
    cr_assert(company);
    resp_free(&r);
    req(&r, "GET", "cdm_companies(cdm_companycode='BT1')?$select=cdm_companyid", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "cdm_companyid")), company);
    resp_free(&r);
    json_decref(page);
}

Test(emulator_dv_batch, a_failing_change_set_rolls_back_entirely)
{
    const char *body =
        "--batch_t1\r\n"
        "Content-Type: multipart/mixed; boundary=changeset_c1\r\n"
        "\r\n"
        "--changeset_c1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n"
        "\r\n"
        "POST accounts HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"name\":\"Rolled back\"}\r\n"
        "--changeset_c1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 2\r\n"
        "\r\n"
        "POST accounts HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"name\":\"Rolled back too\",\"nosuchcolumn\":1}\r\n"
        "--changeset_c1--\r\n"
        "--batch_t1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "POST accounts HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"name\":\"Never run\"}\r\n"
        "--batch_t1--\r\n";
    const char *h[] = {BCT, NULL};
    resp_t r;
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "stops at the first error: %ld %s", r.status, r.body);
    cr_assert_null(strstr(r.body, "changesetresponse_"), "only the failing request answers: %s", r.body);
    cr_assert_eq(count(r.body, "HTTP/1.1 "), 1, "%s", r.body);
    cr_assert(strstr(r.body, "Content-ID: 2\r\n"), "%s", r.body);
    cr_assert(strstr(r.body, "HTTP/1.1 400 Bad Request\r\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\"code\":\"0x80048d19\""), "%s", r.body);
    resp_free(&r);
    cr_assert_eq(count_accounts("Rolled back"), 0, "the first create of the change set is rolled back");
    cr_assert_eq(count_accounts("Never run"), 0);
}

static char *three_posts(const char *second_name_json, const char *run)
{
    static char body[4096];
    snprintf(body, sizeof(body),
             "--batch_t1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
             "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"Coe first\",\"accountnumber\":\"C1-%s\"}\r\n"
             "--batch_t1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
             "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n%s\r\n"
             "--batch_t1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
             "POST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"Coe third\",\"accountnumber\":\"C3-%s\"}\r\n"
             "--batch_t1--\r\n", run, second_name_json, run);
    return body;
}

Test(emulator_dv_batch, continue_on_error_runs_every_request)
{
    resp_t r;
    char v[256];
    const char *stop[] = {BCT, NULL};
    req(&r, "POST", "$batch", three_posts("{\"accountnumber\":\"no name\"}", "a"), stop);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert_eq(count(r.body, "HTTP/1.1 "), 2, "stops after the failure: %s", r.body);
    resp_free(&r);
    cr_assert_eq(count_accounts("Coe first"), 1, "requests outside change sets are not rolled back");
    cr_assert_eq(count_accounts("Coe third"), 0);
    const char *cont[] = {BCT, "Prefer: odata.continue-on-error", NULL};
    req(&r, "POST", "$batch", three_posts("{\"accountnumber\":\"no name\"}", "b"), cont);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(hdr(&r, "Preference-Applied", v, sizeof(v)), "odata.continue-on-error");
    cr_assert_eq(count(r.body, "HTTP/1.1 204 No Content"), 2, "%s", r.body);
    cr_assert_eq(count(r.body, "HTTP/1.1 400 Bad Request"), 1, "%s", r.body);
    resp_free(&r);
    cr_assert_eq(count_accounts("Coe first"), 2);
    cr_assert_eq(count_accounts("Coe third"), 1);
}

Test(emulator_dv_batch, malformed_multipart_and_limits)
{
    resp_t r;
    const char *h[] = {BCT, NULL};
    req(&r, "POST", "$batch", "--batch_t1\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n", h);
    cr_assert_eq(r.status, 400, "no close delimiter: %ld %s", r.status, r.body);
    cr_assert_str_eq(err_code(&r), "0x80048d19");
    resp_free(&r);
    const char *json[] = {"Content-Type: application/json", NULL};
    req(&r, "POST", "$batch", "{}", json);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "POST", "$batch", "--batch_t1\r\nContent-Type: application/http\r\n\r\nBREW coffee HTTP/1.1\r\n\r\n--batch_t1--\r\n", h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "$batch", NULL, NULL);
    cr_assert_eq(r.status, 405, "%ld %s", r.status, r.body);
    resp_free(&r);
    /* nested $batch inside a batch */
    req(&r, "POST", "$batch", "--batch_t1\r\nContent-Type: application/http\r\n\r\nPOST $batch HTTP/1.1\r\n\r\n--batch_t1--\r\n", h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "cannot contain another batch"), "%s", r.body);
    resp_free(&r);
    /* 1,001 requests */
    const char *part = "--batch_t1\r\nContent-Type: application/http\r\n\r\nGET WhoAmI HTTP/1.1\r\n\r\n";
    size_t pl = strlen(part);
    char *big = malloc(pl * 1001 + 32);
    size_t o = 0;
    for (int i = 0; i < 1001; i++, o += pl)
        memcpy(big + o, part, pl);
    strcpy(big + o, "--batch_t1--\r\n");
    req(&r, "POST", "$batch", big, h);
    cr_assert_eq(r.status, 400, "%ld %.300s", r.status, r.body);
    cr_assert(strstr(json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
                     "maximum number of '1000'"), "%s", r.body);
    resp_free(&r);
    big[o - pl] = '\0';
    strcat(big, "--batch_t1--\r\n"); /* 1,000 requests are accepted */
    req(&r, "POST", "$batch", big, h);
    cr_assert_eq(r.status, 200, "%ld %.300s", r.status, r.body);
    cr_assert_eq(count(r.body, "HTTP/1.1 200 OK"), 1000);
    resp_free(&r);
    free(big);
}
