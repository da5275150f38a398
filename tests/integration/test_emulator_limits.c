/*
 * Integration tests of the service protection limits of dw-emulator ("Service protection API
 * limits", learn.microsoft.com/power-apps/developer/data-platform/api-limits): concurrent requests
 * (0x80072326) and combined execution time (0x80072321) over a limit get 429 with Retry-After and
 * Microsoft's message; the limits are set small at start (--limits R/W,C,E_ms) or at run time
 * (POST /_admin/limits), and server time is made long with the admin's injected latency. F&O
 * answers the same limits in its own error shape. GET /_admin/state records per client the 429s
 * answered, the last Retry-After and the requests that arrived before it elapsed
 * (early_requests). Against the real PostgreSQL (DW_PG_DSN).
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_testemu.h"

#define ADMIN "test-admin-secret"

typedef dw_testemu_resp_t resp_t;

static dw_testemu_t *emu;
static const char *base; /* the service root */

#define req(r, method, path, body, headers) dw_testemu_request(emu, r, method, path, body, headers)
#define resp_free dw_testemu_resp_free
#define hdr dw_testemu_resp_header

/* ---- the emulator ----------------------------------------------------------------------------- */

static void start_emulator(const char *system, const char *limits)
{
    const char *args[] = {"--limits", limits, "-X", "emulator.admin_secret=" ADMIN, NULL};
    char errstr[1024];
    emu = dw_testemu_start(system, "emu_lim", args, NULL, errstr, sizeof(errstr));
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

TestSuite(emulator_limits, .fini = stop_emulator, .timeout = 60);

static const char *const ADMIN_H[] = {"Authorization: Bearer " ADMIN, NULL};

static void admin(const char *path, const char *body)
{
    resp_t r;
    req(&r, "POST", path, body, ADMIN_H);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
    resp_free(&r);
}

static const char *err_code(const resp_t *r)
{
    const char *c = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return c ? c : "";
}

static const char *err_msg(const resp_t *r)
{
    const char *m = json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return m ? m : "";
}

static long retry_after(const resp_t *r)
{
    char v[64];
    hdr(r, "Retry-After", v, sizeof(v));
    return v[0] ? strtol(v, NULL, 10) : -1;
}

#define NPAR 5

Test(emulator_limits, concurrent_requests_over_the_limit_get_429_0x80072326)
{
    start_emulator("dv", "off");
    admin("/_admin/limits", "{\"spec\":\"0/60,2\"}"); /* no request or time limit, 2 concurrent */
    /* every request stays in flight 2 s: time enough, on a loaded machine, for all five to
     * arrive while the first two are in flight */
    admin("/_admin/faults", "{\"latency_ms\":2000}");
    resp_t rs[NPAR];
    CURL *h[NPAR];
    struct curl_slist *hl = NULL;
    char auth[256], url[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", dw_testemu_token(emu));
    hl = curl_slist_append(hl, auth);
    snprintf(url, sizeof(url), "%sWhoAmI", base);
    CURLM *m = curl_multi_init();
    for (int i = 0; i < NPAR; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hl);
        dw_testemu_resp_capture(h[i], &rs[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 20L);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int ok = 0, limited = 0;
    for (int i = 0; i < NPAR; i++) {
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &rs[i].status);
        if (rs[i].body)
            rs[i].json = json_loads(rs[i].body, 0, NULL);
        if (rs[i].status == 200) {
            ok++;
        } else {
            cr_assert_eq(rs[i].status, 429, "%ld %s", rs[i].status, rs[i].body);
            cr_assert_str_eq(err_code(&rs[i]), "0x80072326");
            cr_assert_str_eq(err_msg(&rs[i]), "Number of concurrent requests exceeded the limit of 2.");
            cr_assert_geq(retry_after(&rs[i]), 1, "%s", rs[i].headers);
            limited++;
        }
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(hl);
    /* the first two are admitted; the others arrive while both are in flight (2 s) */
    cr_assert(ok >= 2 && limited >= 1, "%d ok, %d limited", ok, limited);
    /* once they finished, requests are admitted again */
    admin("/_admin/faults", "{\"latency_ms\":0}");
    resp_t r;
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
}

Test(emulator_limits, execution_time_over_the_limit_gets_429_0x80072321)
{
    start_emulator("dv", "0/30,0,300"); /* 300 ms of execution time per 30 s, from the command line */
    admin("/_admin/faults", "{\"latency_ms\":400}");
    resp_t r;
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200, "the request that crosses the limit is still served: %ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "accounts", NULL, NULL);
    cr_assert_eq(r.status, 429, "%ld %s", r.status, r.body);
    cr_assert_str_eq(err_code(&r), "0x80072321");
    cr_assert_str_eq(err_msg(&r),
                     "Combined execution time of incoming requests exceeded limit of 300 milliseconds over time window of 30 seconds.");
    long ra = retry_after(&r);
    cr_assert(ra >= 1 && ra <= 30, "Retry-After %ld: until the window no longer holds the time", ra);
    resp_free(&r);
    /* limits changed at run time (counters forgotten): served again */
    admin("/_admin/limits", "{\"spec\":\"off\"}");
    req(&r, "GET", "WhoAmI", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
}

Test(emulator_limits, fo_answers_the_limits_in_its_error_shape)
{
    start_emulator("fo", "0/30,1,200");
    admin("/_admin/faults", "{\"latency_ms\":300}");
    resp_t r;
    req(&r, "GET", "CustomersV3", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    req(&r, "GET", "CustomersV3", NULL, NULL);
    cr_assert_eq(r.status, 429, "%ld %s", r.status, r.body);
    cr_assert_str_eq(err_msg(&r), "Too many requests");
    json_t *inner = json_object_get(json_object_get(r.json, "error"), "innererror");
    const char *im = json_string_value(json_object_get(inner, "message"));
    cr_assert(im && strstr(im, "Combined execution time of incoming requests exceeded limit of 200 milliseconds"), "%s", r.body);
    cr_assert_geq(retry_after(&r), 1);
    resp_free(&r);
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GET /_admin/state's throttling record (new reference). */
static json_t *throttling(void)
{
    long st = 0;
    json_t *s = dw_testemu_admin_get(emu, "/_admin/state", ADMIN, &st);
    cr_assert_not_null(s, "/_admin/state: %ld", st);
    json_t *t = json_incref(json_object_get(s, "throttling"));
    json_decref(s);
    cr_assert_not_null(t, "no throttling record in /_admin/state");
    return t;
}

static json_int_t tint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    cr_assert(json_is_integer(v), "%s is not an integer", k);
    return json_integer_value(v);
}

static void check_early_requests(const char *system, const char *path)
{
    start_emulator(system, "2/3"); /* 2 requests per 3 s */
    resp_t r;
    for (int i = 0; i < 2; i++) {
        req(&r, "GET", path, NULL, NULL);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        resp_free(&r);
    }
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 429, "%ld %s", r.status, r.body);
    long ra = retry_after(&r);
    cr_assert(ra >= 2 && ra <= 3, "Retry-After %ld", ra);
    resp_free(&r);
    json_t *t = throttling();
    cr_assert_eq(tint(t, "throttled"), 1);
    cr_assert_eq(tint(t, "early_requests"), 0, "the 429'd request itself is not early");
    cr_assert_eq(tint(t, "early_grace_ms"), 250);
    json_t *c = json_array_get(json_object_get(t, "clients"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "client")), "dwfleet");
    cr_assert_eq(tint(c, "retry_after_s"), ra);
    json_int_t wait = tint(c, "retry_wait_ms");
    cr_assert(wait > 0 && wait <= ra * 1000, "retry_wait_ms %lld", (long long)wait);
    json_decref(t);
    /* a request before the Retry-After elapsed (past the in-flight grace): early, and 429 again */
    nap_ms(400);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 429, "%ld %s", r.status, r.body);
    resp_free(&r);
    t = throttling();
    cr_assert_eq(tint(t, "early_requests"), 1);
    cr_assert_eq(tint(t, "throttled"), 2);
    c = json_array_get(json_object_get(t, "clients"), 0);
    wait = tint(c, "retry_wait_ms");
    json_decref(t);
    /* after waiting what it was told: served, not early */
    nap_ms((int)wait + 100);
    req(&r, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    t = throttling();
    cr_assert_eq(tint(t, "early_requests"), 1);
    c = json_array_get(json_object_get(t, "clients"), 0);
    cr_assert_eq(tint(c, "retry_wait_ms"), 0);
    json_decref(t);
    /* the counters are forgotten with the limits */
    admin("/_admin/limits", "{\"spec\":\"off\"}");
    t = throttling();
    cr_assert_eq(tint(t, "early_requests"), 0);
    cr_assert_eq(json_array_size(json_object_get(t, "clients")), 0);
    json_decref(t);
}

Test(emulator_limits, requests_before_retry_after_elapsed_are_counted_dv)
{
    check_early_requests("dv", "WhoAmI");
}

Test(emulator_limits, requests_before_retry_after_elapsed_are_counted_fo)
{
    check_early_requests("fo", "CustomersV3");
}
