/*
 * Unit tests of dw_auth (token cache expiry, token responses, form) and dw_http's pure helpers
 * (status classes, Retry-After, URL and OData literal encoding, header building): no network.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_auth.h"
#include "dw_http.h"
#include "dw_log.h"

static double fake_now;
static double fake_clock(void)
{
    return fake_now;
}

static dw_auth_t *new_auth(void)
{
    dw_auth_opts_t o;
    char errstr[256];
    dw_auth_opts_init(&o);
    o.token_url = "http://127.0.0.1:1/t/oauth2/v2.0/token"; /* closed port: fetches fail */
    o.client_id = "dwfleet";
    o.client_secret = "s3cr3t-value";
    o.scope = "https://org.crm.dynamics.com/.default";
    o.http.connect_timeout_ms = 200;
    o.http.timeout_ms = 500;
    dw_auth_t *a = dw_auth_new(&o, errstr, sizeof(errstr));
    cr_assert(a, "%s", errstr);
    dw_auth_set_clock(a, fake_clock);
    return a;
}

Test(auth, refresh_margin_is_capped_at_half_the_lifetime)
{
    cr_assert_not(dw_auth_needs_refresh(1000, 3599, 300, 1000 + 3000));
    cr_assert(dw_auth_needs_refresh(1000, 3599, 300, 1000 + 3300));
    /* a 60 s token with a 300 s margin refreshes after 30 s, not at once */
    cr_assert_not(dw_auth_needs_refresh(0, 60, 300, 29));
    cr_assert(dw_auth_needs_refresh(0, 60, 300, 30));
    cr_assert_not(dw_auth_expired(0, 60, 50));
    cr_assert(dw_auth_expired(0, 60, 56));
}

Test(auth, cached_token_is_served_until_the_margin_then_kept_while_refresh_fails)
{
    dw_auth_t *a = new_auth();
    char tok[256], errstr[256];
    fake_now = 100;
    cr_assert_eq(dw_auth_cache_put(a, "tok-1", 3599), DW_OK);
    fake_now = 100 + 3000;
    cr_assert_eq(dw_auth_token(a, tok, sizeof(tok), errstr, sizeof(errstr)), DW_OK);
    cr_assert_str_eq(tok, "tok-1");
    cr_assert_eq(dw_auth_fetch_count(a), 0);
    /* inside the margin: a refresh is tried (fails: closed port), the valid token is kept */
    fake_now = 100 + 3400;
    cr_assert_eq(dw_auth_token(a, tok, sizeof(tok), errstr, sizeof(errstr)), DW_OK);
    cr_assert_str_eq(tok, "tok-1");
    /* past expiry: the failure surfaces, retriable */
    fake_now = 100 + 3599;
    dw_err_t rc = dw_auth_token(a, tok, sizeof(tok), errstr, sizeof(errstr));
    cr_assert(rc != DW_OK);
    cr_assert(dw_err_is_retriable(rc), "%s", dw_err_name(rc));
    cr_assert_null(strstr(errstr, "s3cr3t-value"));
    /* invalidated: no token at all */
    fake_now = 200;
    dw_auth_cache_put(a, "tok-2", 3599);
    dw_auth_invalidate(a);
    cr_assert_neq(dw_auth_token(a, tok, sizeof(tok), errstr, sizeof(errstr)), DW_OK);
    /* a buffer too small */
    dw_auth_cache_put(a, "a-rather-long-token", 3599);
    cr_assert_eq(dw_auth_token(a, tok, 4, errstr, sizeof(errstr)), DW_ERR_INVALID_ARG);
    dw_auth_destroy(a);
}

Test(auth, missing_credentials_are_a_configuration_error)
{
    dw_auth_opts_t o;
    char errstr[256];
    dw_auth_opts_init(&o);
    o.token_url = "http://x/token";
    o.client_id = "id";
    o.scope = "s";
    cr_assert_null(dw_auth_new(&o, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "client secret"), "%s", errstr);
}

Test(auth, token_responses_are_parsed_and_classified)
{
    char *tok = NULL;
    long exp = 0;
    char errstr[512];
    const char *ok = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,"
                     "\"access_token\":\"eyJ0\"}";
    cr_assert_eq(dw_auth_parse_response(200, ok, strlen(ok), &tok, &exp, errstr, sizeof(errstr)),
                 DW_OK);
    cr_assert_str_eq(tok, "eyJ0");
    cr_assert_eq(exp, 3599);
    free(tok);
    const char *str = "{\"token_type\":\"Bearer\",\"expires_in\":\"3599\",\"access_token\":\"x\"}";
    cr_assert_eq(dw_auth_parse_response(200, str, strlen(str), &tok, &exp, errstr, sizeof(errstr)),
                 DW_OK);
    cr_assert_eq(exp, 3599);
    free(tok);
    const char *bad = "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: "
                      "Invalid client secret provided.\"}";
    cr_assert_eq(dw_auth_parse_response(401, bad, strlen(bad), &tok, &exp, errstr, sizeof(errstr)),
                 DW_ERR_CONFIG);
    cr_assert(strstr(errstr, "invalid_client"), "%s", errstr);
    cr_assert_null(tok);
    cr_assert_eq(dw_auth_parse_response(503, "", 0, &tok, &exp, errstr, sizeof(errstr)),
                 DW_ERR_UNAVAILABLE);
    cr_assert_eq(dw_auth_parse_response(429, "{}", 2, &tok, &exp, errstr, sizeof(errstr)),
                 DW_ERR_UNAVAILABLE);
    cr_assert_eq(dw_auth_parse_response(200, "nope", 4, &tok, &exp, errstr, sizeof(errstr)),
                 DW_ERR_PARSE);
    const char *noexp = "{\"access_token\":\"x\",\"expires_in\":0}";
    cr_assert_eq(dw_auth_parse_response(200, noexp, strlen(noexp), &tok, &exp, errstr,
                                        sizeof(errstr)),
                 DW_ERR_PARSE);
    const char *mac = "{\"access_token\":\"x\",\"expires_in\":10,\"token_type\":\"mac\"}";
    cr_assert_eq(dw_auth_parse_response(200, mac, strlen(mac), &tok, &exp, errstr, sizeof(errstr)),
                 DW_ERR_PARSE);
}

Test(auth, form_encodes_every_value)
{
    char *f = dw_auth_form("my id", "a&b=c+d%", "https://org.crm.dynamics.com/.default");
    cr_assert_str_eq(f, "grant_type=client_credentials&client_id=my+id&client_secret=a%26b%3Dc%2Bd%25"
                        "&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default");
    free(f);
}

Test(auth, scope_from_resource_url)
{
    char *s = dw_auth_scope_for("https://org.crm.dynamics.com/api/data/v9.2");
    cr_assert_str_eq(s, "https://org.crm.dynamics.com/.default");
    free(s);
    s = dw_auth_scope_for("http://127.0.0.1:8080");
    cr_assert_str_eq(s, "http://127.0.0.1:8080/.default");
    free(s);
    cr_assert_null(dw_auth_scope_for("no-scheme"));
}

Test(http, status_classes_and_retriable_property)
{
    cr_assert_eq(dw_http_status_err(200), DW_OK);
    cr_assert_eq(dw_http_status_err(204), DW_OK);
    cr_assert(dw_err_is_retriable(dw_http_status_err(429)));
    cr_assert(dw_err_is_retriable(dw_http_status_err(503)));
    cr_assert(dw_err_is_retriable(dw_http_status_err(500)));
    cr_assert(dw_err_is_retriable(dw_http_status_err(408)));
    cr_assert_not(dw_err_is_retriable(dw_http_status_err(400)));
    cr_assert_eq(dw_http_status_err(404), DW_ERR_NOT_FOUND);
    cr_assert_eq(dw_http_status_err(412), DW_ERR_CONFLICT);
    cr_assert_eq(dw_http_status_err(401), DW_ERR_CONFIG);
    cr_assert(dw_err_is_retriable(dw_http_curl_err_map(CURLE_COULDNT_CONNECT)));
    cr_assert(dw_err_is_retriable(dw_http_curl_err_map(CURLE_OPERATION_TIMEDOUT)));
    cr_assert_not(dw_err_is_retriable(dw_http_curl_err_map(CURLE_PEER_FAILED_VERIFICATION)));
}

Test(http, retry_after_seconds_and_dates)
{
    cr_assert_eq(dw_http_retry_after_parse("120", 0), 120000);
    cr_assert_eq(dw_http_retry_after_parse(" 0 ", 0), 0);
    cr_assert_eq(dw_http_retry_after_parse("abc", 0), -1);
    cr_assert_eq(dw_http_retry_after_parse("-5", 0), -1);
    cr_assert_eq(dw_http_retry_after_parse("99999999", 0), 86400000L);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    cr_assert_eq(dw_http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30),
                 30000);
    cr_assert_eq(dw_http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 30), 0);
}

Test(http, url_and_odata_literal_encoding)
{
    char out[64];
    cr_assert_eq(dw_http_urlencode("a b/c~", false, out, sizeof(out)), DW_OK);
    cr_assert_str_eq(out, "a%20b%2Fc~");
    cr_assert_eq(dw_http_urlencode("a b", true, out, sizeof(out)), DW_OK);
    cr_assert_str_eq(out, "a+b");
    cr_assert_eq(dw_http_urlencode("abcdef", false, out, 4), DW_ERR_INVALID_ARG);
    char *lit = dw_http_odata_literal("O'Neil");
    cr_assert_str_eq(lit, "%27O%27%27Neil%27");
    free(lit);
    lit = dw_http_odata_literal("') or 1 eq 1 or ('");
    cr_assert_null(strchr(lit, '\''));
    cr_assert_null(strchr(lit, ')'));
    free(lit);
}

Test(http, request_headers_reject_injection_and_uuid_is_v4)
{
    char errstr[256];
    dw_http_req_t *r = dw_http_req_new(NULL, errstr, sizeof(errstr));
    cr_assert(r, "%s", errstr);
    cr_assert_eq(dw_http_req_setup(r, "GET", "https://example.invalid/", NULL, 0), DW_OK);
    cr_assert_eq(dw_http_req_header(r, "X-A", "ok"), DW_OK);
    cr_assert_eq(dw_http_req_header(r, "X-B", "bad\r\nInjected: 1"), DW_ERR_INVALID_ARG);
    cr_assert_eq(dw_http_req_header(r, "X:C", "v"), DW_ERR_INVALID_ARG);
    cr_assert_eq(dw_http_req_bearer(r, "tok"), DW_OK);
    cr_assert_eq(dw_http_req_correlation_id(r, "c0ffee"), DW_OK);
    cr_assert_eq(dw_http_req_odata_headers(r), DW_OK);
    cr_assert_eq(dw_http_req_status(r), 0);
    cr_assert_str_eq(dw_http_req_body(r, NULL), "");
    cr_assert_null(dw_http_req_resp_header(r, "ETag"));
    dw_http_req_destroy(r);
    char u[37], v[37];
    dw_http_uuid4(u);
    dw_http_uuid4(v);
    cr_assert_eq(strlen(u), 36);
    cr_assert_eq(u[14], '4');
    cr_assert(strchr("89ab", u[19]));
    cr_assert_str_neq(u, v);
}

Test(http, closed_port_is_a_retriable_transport_error)
{
    char errstr[256];
    dw_http_opts_t o;
    dw_http_opts_init(&o);
    o.connect_timeout_ms = 500;
    dw_http_req_t *r = dw_http_req_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(dw_http_req_setup(r, "GET", "http://127.0.0.1:1/", NULL, 0), DW_OK);
    dw_err_t rc = dw_http_req_perform(r, errstr, sizeof(errstr));
    cr_assert(dw_err_is_retriable(rc), "%s: %s", dw_err_name(rc), errstr);
    cr_assert(dw_http_req_errbuf(r)[0]);
    dw_http_req_destroy(r);
}
