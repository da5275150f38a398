/*
 * Integration tests of dw-emulator --system dv against the real PostgreSQL (DW_PG_DSN): each test
 * starts the emulator as a child process (posix_spawn) on a free loopback port with its own
 * schema, talks HTTP with libcurl and drops the schema at the end. The expected statuses, headers
 * and error bodies follow the request/response examples of Microsoft Learn (Dataverse Web API:
 * "Update and delete table rows", "Perform conditional operations", "Use an alternate key",
 * "Use UpsertMultiple", "Use change tracking", "Service protection API limits").
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_testutil.h"

extern char **environ;

#define ADMIN "test-admin-secret"
#define ACC_COMPANY "00000000-0000-0000-0000-000000000000"

static pid_t emu_pid = -1;
static int emu_port;
static char emu_schema[128];
static char emu_token[128];
static char base[256];

typedef struct {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    json_t *json;
} resp_t;

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    resp_t *r = ud;
    char *nb = realloc(r->body, r->len + s * n + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, s * n);
    r->len += s * n;
    r->body[r->len] = '\0';
    return s * n;
}

static size_t on_header(char *p, size_t s, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t l = strlen(r->headers);
    if (l + s * n + 1 < sizeof(r->headers)) {
        memcpy(r->headers + l, p, s * n);
        r->headers[l + s * n] = '\0';
    }
    return s * n;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* The value of response header name (case-insensitive), copied into out; "" when absent. */
static const char *hdr(const resp_t *r, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(e - v), v);
        }
        p = e + 2;
    }
    return out;
}

/* One request; path relative to the service root unless it starts with '/' or "http". */
static void req(resp_t *r, const char *method, const char *path, const char *body,
                const char *const *headers)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    char url[8192];
    if (strncmp(path, "http", 4) == 0)
        snprintf(url, sizeof(url), "%s", path);
    else if (path[0] == '/')
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", emu_port, path);
    else
        snprintf(url, sizeof(url), "%s%s", base, path);
    for (char *sp = strchr(url, ' '); sp; sp = strchr(url, ' ')) {
        size_t at = (size_t)(sp - url), len = strlen(url);
        if (len + 3 >= sizeof(url))
            break;
        memmove(sp + 3, sp + 1, len - at);
        memcpy(sp, "%20", 3);
    }
    struct curl_slist *hl = NULL;
    char auth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", emu_token);
    bool has_auth = false, has_ct = false;
    for (int i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        if (strncasecmp(headers[i], "Authorization:", 14) == 0)
            has_auth = true;
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_ct = true;
    }
    if (!has_auth && emu_token[0])
        hl = curl_slist_append(hl, auth);
    if (!has_ct && body)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "OData-MaxVersion: 4.0");
    hl = curl_slist_append(hl, "OData-Version: 4.0");
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (r->body && r->len)
        r->json = json_loads(r->body, 0, NULL);
}

static const char *err_code(const resp_t *r)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

static void get_token(void)
{
    resp_t r;
    emu_token[0] = '\0';
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    req(&r, "POST", "/contoso.onmicrosoft.com/oauth2/v2.0/token",
        "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=client_credentials&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default",
        h);
    cr_assert_eq(r.status, 200, "token: %ld %s", r.status, r.body);
    snprintf(emu_token, sizeof(emu_token), "%s", json_string_value(json_object_get(r.json, "access_token")));
    resp_free(&r);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static void start_emulator(const char *limits, const char *max_body)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn, "DW_PG_DSN is not set (eval \"$(scripts/services.sh env)\")");
    emu_port = free_port();
    snprintf(emu_schema, sizeof(emu_schema), "%s", dw_test_unique("emu_dv"));
    char listen[64], schema[160], lim[128], body[128], log[256];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", emu_port);
    snprintf(schema, sizeof(schema), "%s", emu_schema);
    snprintf(lim, sizeof(lim), "%s", limits ? limits : "off");
    snprintf(body, sizeof(body), "emulator.max_body_bytes=%s", max_body ? max_body : "1048576");
    snprintf(log, sizeof(log), "/tmp/%s.log", emu_schema);
    const char *argv[] = {"dw-emulator", "--system", "dv", "--listen", listen, "--pg", dsn,
                          "--schema", schema, "--limits", lim, "-X", "emulator.admin_secret=" ADMIN,
                          "-X", body, "-X", "emulator.change_retention_s=3600", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&emu_pid, DW_BIN_DIR "/dw-emulator", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-emulator: %s", strerror(e));
    snprintf(base, sizeof(base), "http://127.0.0.1:%d/api/data/v9.2/", emu_port);
    for (int i = 0; i < 200; i++) {
        resp_t r;
        req(&r, "GET", "/api/data/v9.2/", NULL, NULL);
        long st = r.status;
        resp_free(&r);
        if (st == 401)
            break;
        int status;
        cr_assert_eq(waitpid(emu_pid, &status, WNOHANG), 0, "dw-emulator exited early, see %s", log);
        usleep(50000);
    }
    get_token();
}

static void stop_emulator(void)
{
    if (emu_pid > 0) {
        kill(emu_pid, SIGTERM);
        int status = 0;
        waitpid(emu_pid, &status, 0);
        emu_pid = -1;
        cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "dw-emulator did not exit cleanly");
    }
    PGconn *c = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(c) == CONNECTION_OK) {
        char *id = PQescapeIdentifier(c, emu_schema, strlen(emu_schema));
        char sql[300];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", id);
        PQclear(PQexec(c, "SET client_min_messages TO warning"));
        PQclear(PQexec(c, sql));
        PQfreemem(id);
    }
    PQfinish(c);
    char log[256];
    snprintf(log, sizeof(log), "/tmp/%s.log", emu_schema);
    unlink(log);
}

static void setup(void)
{
    start_emulator(NULL, NULL);
}

TestSuite(emulator_dv, .init = setup, .fini = stop_emulator, .timeout = 60);

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
