/*
 * Integration tests of $batch on dw-emulator --system dv against the real PostgreSQL (DW_PG_DSN),
 * over real HTTP, following Microsoft Learn's "Execute batch operations using the Web API": change
 * sets are atomic (a failure rolls the whole change set back and is its only response), Content-ID
 * references ("$1" in a URL and in @odata.bind), Prefer: odata.continue-on-error, malformed
 * multipart and the 1,000-request limit. The harness is the one of test_emulator_dv.c.
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
    snprintf(emu_schema, sizeof(emu_schema), "%s", dw_test_unique("emu_dvb"));
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

TestSuite(emulator_dv_batch, .init = setup, .fini = stop_emulator, .timeout = 60);

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
