/*
 * Integration tests of F&O $batch in dw-emulator --system fo against the real PostgreSQL
 * (DW_PG_DSN): change sets are atomic for rows AND data events (a failed change set leaves no row
 * and no outbox row; a committed one's events are delivered in order), Content-ID references,
 * stop at the first failure. Requests follow the OData $batch format F&O serves ("Open Data
 * Protocol (OData)" for finance and operations; OData 4.0 Part 1, 11.7). The harness (emulator as
 * a child process, event receiver in this process) is the one of test_emulator_fo.c.
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

#define ADMIN "test-admin-secret"
#define EVENT_SECRET "event-shared-secret"

typedef dw_testemu_resp_t resp_t;

static dw_testemu_t *emu;

#define req(r, method, path, body, headers) dw_testemu_request(emu, r, method, path, body, headers)
#define resp_free dw_testemu_resp_free
#define hdr dw_testemu_resp_header

/* ---- the data events receiver (tests/support/dw_testreceiver.c) ----------------------------- */

static dw_testreceiver_t rx = DW_TESTRECEIVER_INIT;

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
    emu = dw_testreceiver_start_fo(&rx, "emu_fob", ADMIN, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
    /* the currencies and groups the customers name (F&O checks relations) */
    cr_assert_eq(dw_testemu_fo_refdata(emu, "usmf", errstr, sizeof(errstr)), 0, "%s", errstr);
}

TestSuite(emulator_fo_batch, .init = setup, .fini = stop_emulator, .timeout = 60);


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

#define BCT "Content-Type: multipart/mixed; boundary=batch_fo1"

/* Append one application/http part (boundary bnd) to buf. */
static void add_part(char *buf, size_t size, const char *bnd, const char *content_id, const char *method,
                     const char *url, const char *body)
{
    size_t l = strlen(buf);
    snprintf(buf + l, size - l,
             "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n%s%s%s\r\n"
             "%s %s HTTP/1.1\r\n%s\r\n%s\r\n",
             bnd, content_id ? "Content-ID: " : "", content_id ? content_id : "", content_id ? "\r\n" : "",
             method, url, body ? "Content-Type: application/json;odata.metadata=minimal\r\nAccept: application/json\r\n" : "",
             body ? body : "");
}

static void add_raw(char *buf, size_t size, const char *text)
{
    size_t l = strlen(buf);
    snprintf(buf + l, size - l, "%s", text);
}

static const char *customer_json(char *out, size_t size, const char *account, const char *onhold)
{
    snprintf(out, size,
             "{\"CustomerAccount\":\"%s\",\"PartyType\":\"Organization\",\"CustomerGroupId\":\"10\","
             "\"SalesCurrencyCode\":\"USD\",\"OrganizationName\":\"Org %s\",\"OnHoldStatus\":\"%s\",\"CreditLimit\":100}",
             account, account, onhold);
    return out;
}

static long get_status(const char *account)
{
    resp_t r;
    char path[256];
    snprintf(path, sizeof(path), "CustomersV3(dataAreaId='usmf',CustomerAccount='%s')", account);
    req(&r, "GET", path, NULL, NULL);
    long st = r.status;
    resp_free(&r);
    return st;
}

/* Count occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

Test(emulator_fo_batch, change_set_commits_rows_and_events_together)
{
    static char body[16384];
    char j[512];
    body[0] = '\0';
    add_raw(body, sizeof(body), "--batch_fo1\r\nContent-Type: multipart/mixed; boundary=changeset_a\r\n\r\n");
    add_part(body, sizeof(body), "changeset_a", "1", "POST", "CustomersV3", customer_json(j, sizeof(j), "CS-1", "No"));
    add_part(body, sizeof(body), "changeset_a", "2", "POST", "/data/CustomersV3", customer_json(j, sizeof(j), "CS-2", "No"));
    add_part(body, sizeof(body), "changeset_a", "3", "PATCH", "$1", "{\"CreditLimit\":500}");
    add_raw(body, sizeof(body), "--changeset_a--\r\n");
    /* a read after the change set sees its changes */
    add_part(body, sizeof(body), "batch_fo1", NULL, "GET", "CustomersV3?$select=CustomerAccount,CreditLimit&$orderby=CustomerAccount", NULL);
    add_raw(body, sizeof(body), "--batch_fo1--\r\n");
    const char *h[] = {BCT, NULL};
    resp_t r;
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char ct[256];
    hdr(&r, "Content-Type", ct, sizeof(ct));
    cr_assert(strncmp(ct, "multipart/mixed; boundary=batchresponse_", 40) == 0, "%s", ct);
    cr_assert(strstr(r.body, "Content-Type: multipart/mixed; boundary=changesetresponse_"), "%s", r.body);
    cr_assert_eq(count_of(r.body, "HTTP/1.1 201 Created"), 2, "%s", r.body);
    cr_assert_eq(count_of(r.body, "HTTP/1.1 204 No Content"), 1, "%s", r.body);
    cr_assert_eq(count_of(r.body, "HTTP/1.1 200 OK"), 1, "%s", r.body);
    cr_assert(strstr(r.body, "Content-ID: 3"), "%s", r.body);
    cr_assert(strstr(r.body, "\"CreditLimit\":500"), "the GET after the change set sees the update: %s", r.body);
    resp_free(&r);
    cr_assert_eq(get_status("CS-1"), 200);
    cr_assert_eq(get_status("CS-2"), 200);
    /* 2 creates + 1 update, in the change set's transaction, delivered in commit order */
    cr_assert_eq(outbox_rows(), 3);
    cr_assert_eq(rx_wait(3, 20000), 3, "the change set's events are delivered after the commit");
    pthread_mutex_lock(&rx.mu);
    const char *m0 = json_string_value(json_object_get(rx.events[0], "MessageName"));
    const char *m2 = json_string_value(json_object_get(rx.events[2], "MessageName"));
    const char *a0 = json_string_value(attr(ev_target(rx.events[0]), "CustomerAccount"));
    const char *a1 = json_string_value(attr(ev_target(rx.events[1]), "CustomerAccount"));
    json_t *pre = ev_pre(rx.events[2]);
    cr_assert_str_eq(m0, "Create");
    cr_assert_str_eq(a0, "CS-1");
    cr_assert_str_eq(a1, "CS-2");
    cr_assert_str_eq(m2, "Update");
    cr_assert_eq(json_number_value(attr(ev_target(rx.events[2]), "CreditLimit")), 500);
    cr_assert_eq(json_number_value(attr(pre, "CreditLimit")), 100, "the PreImage is the row before the update");
    pthread_mutex_unlock(&rx.mu);
}

Test(emulator_fo_batch, failed_change_set_leaves_no_row_and_no_event)
{
    static char body[16384];
    char j[512];
    const char *h[] = {BCT, NULL};
    resp_t r;
    /* 1. a validation failure (enum member) in the second request */
    body[0] = '\0';
    add_raw(body, sizeof(body), "--batch_fo1\r\nContent-Type: multipart/mixed; boundary=changeset_b\r\n\r\n");
    add_part(body, sizeof(body), "changeset_b", "1", "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-1", "No"));
    add_part(body, sizeof(body), "changeset_b", "2", "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-2", "Bogus"));
    add_raw(body, sizeof(body), "--changeset_b--\r\n--batch_fo1--\r\n");
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "HTTP/1.1 400 Bad Request"), "%s", r.body);
    cr_assert_eq(count_of(r.body, "HTTP/1.1 "), 1, "a failed change set is answered by the failing request alone: %s", r.body);
    cr_assert(strstr(r.body, "Content-ID: 2"), "%s", r.body);
    cr_assert_null(strstr(r.body, "changesetresponse_"), "%s", r.body);
    resp_free(&r);
    /* 2. a database failure (duplicate key) after a successful update of an existing record */
    req(&r, "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-0", "No"), NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    resp_free(&r);
    cr_assert_eq(rx_wait(1, 20000), 1);
    body[0] = '\0';
    add_raw(body, sizeof(body), "--batch_fo1\r\nContent-Type: multipart/mixed; boundary=changeset_c\r\n\r\n");
    add_part(body, sizeof(body), "changeset_c", "1", "PATCH", "CustomersV3(dataAreaId='usmf',CustomerAccount='RB-0')",
             "{\"CreditLimit\":999}");
    add_part(body, sizeof(body), "changeset_c", "2", "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-3", "No"));
    add_part(body, sizeof(body), "changeset_c", "3", "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-3", "No"));
    add_raw(body, sizeof(body), "--changeset_c--\r\n--batch_fo1--\r\n");
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "The record already exists."), "%s", r.body);
    resp_free(&r);
    cr_assert_eq(get_status("RB-1"), 404, "rolled back");
    cr_assert_eq(get_status("RB-2"), 404);
    cr_assert_eq(get_status("RB-3"), 404, "rolled back");
    req(&r, "GET", "CustomersV3(dataAreaId='usmf',CustomerAccount='RB-0')", NULL, NULL);
    cr_assert_eq(json_number_value(json_object_get(r.json, "CreditLimit")), 100, "the update was rolled back: %s", r.body);
    resp_free(&r);
    cr_assert_eq(outbox_rows(), 1, "no outbox row from a failed change set");
    /* the connection went back to the pool in a clean state: later writes work and are delivered */
    req(&r, "POST", "CustomersV3", customer_json(j, sizeof(j), "RB-4", "No"), NULL);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    resp_free(&r);
    cr_assert_eq(rx_wait(2, 20000), 2);
    usleep(200000);
    cr_assert_eq(rx_wait(3, 0), 2, "exactly the committed changes were delivered");
    pthread_mutex_lock(&rx.mu);
    cr_assert_str_eq(json_string_value(attr(ev_target(rx.events[1]), "CustomerAccount")), "RB-4");
    pthread_mutex_unlock(&rx.mu);
}

Test(emulator_fo_batch, stops_at_first_failure_continue_on_error_not_applied)
{
    static char body[16384];
    char j[512];
    body[0] = '\0';
    add_part(body, sizeof(body), "batch_fo1", NULL, "POST", "CustomersV3", customer_json(j, sizeof(j), "SF-1", "No"));
    add_part(body, sizeof(body), "batch_fo1", NULL, "POST", "CustomersV3", customer_json(j, sizeof(j), "SF-2", "Bogus"));
    add_part(body, sizeof(body), "batch_fo1", NULL, "POST", "CustomersV3", customer_json(j, sizeof(j), "SF-3", "No"));
    add_raw(body, sizeof(body), "--batch_fo1--\r\n");
    const char *h[] = {BCT, "Prefer: odata.continue-on-error", NULL};
    resp_t r;
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    char pa[128];
    cr_assert_str_empty(hdr(&r, "Preference-Applied", pa, sizeof(pa)), "F&O does not document continue-on-error");
    cr_assert_eq(count_of(r.body, "HTTP/1.1 "), 2, "%s", r.body);
    resp_free(&r);
    cr_assert_eq(get_status("SF-1"), 200, "requests outside change sets are not rolled back");
    cr_assert_eq(get_status("SF-3"), 404, "processing stopped at the first failure");
}

Test(emulator_fo_batch, bad_batches_get_odata_errors)
{
    const char *h[] = {BCT, NULL};
    resp_t r;
    req(&r, "POST", "$batch", "--batch_fo1\r\nContent-Type: application/http\r\n\r\nPOST", h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(json_object_get(json_object_get(json_object_get(r.json, "error"), "innererror"), "type"),
              "F&O error shape: %s", r.body);
    resp_free(&r);
    req(&r, "GET", "$batch", NULL, NULL);
    cr_assert_eq(r.status, 405, "%ld %s", r.status, r.body);
    resp_free(&r);
    /* a GET inside a change set, and a batch inside a batch */
    static char body[4096];
    body[0] = '\0';
    add_raw(body, sizeof(body), "--batch_fo1\r\nContent-Type: multipart/mixed; boundary=changeset_d\r\n\r\n");
    add_part(body, sizeof(body), "changeset_d", "1", "GET", "CustomersV3", NULL);
    add_raw(body, sizeof(body), "--changeset_d--\r\n--batch_fo1--\r\n");
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    resp_free(&r);
    body[0] = '\0';
    add_part(body, sizeof(body), "batch_fo1", NULL, "POST", "$batch", "{}");
    add_raw(body, sizeof(body), "--batch_fo1--\r\n");
    req(&r, "POST", "$batch", body, h);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "HTTP/1.1 400"), "%s", r.body);
    resp_free(&r);
    cr_assert_eq(outbox_rows(), 0);
}
