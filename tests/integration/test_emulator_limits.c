/*
 * Integration tests of the service protection limits of dw-emulator ("Service protection API
 * limits", learn.microsoft.com/power-apps/developer/data-platform/api-limits): concurrent requests
 * (0x80072326) and combined execution time (0x80072321) over a limit get 429 with Retry-After and
 * Microsoft's message; the limits are set small at start (--limits R/W,C,E_ms) or at run time
 * (POST /_admin/limits), and server time is made long with the admin's injected latency. F&O
 * answers the same limits in its own error shape. Against the real PostgreSQL (DW_PG_DSN).
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_testutil.h"

extern char **environ;

#define ADMIN "test-admin-secret"

static pid_t emu_pid = -1;
static int emu_port;
static char emu_schema[128];
static char emu_token[128];
static char base[256];
static const char *emu_system = "dv";

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


/* ---- the emulator ----------------------------------------------------------------------------- */

static void start_emulator(const char *system, const char *limits)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn, "DW_PG_DSN is not set (eval \"$(scripts/services.sh env)\")");
    emu_system = system;
    emu_port = free_port();
    snprintf(emu_schema, sizeof(emu_schema), "%s", dw_test_unique("emu_lim"));
    char listen[64], schema[160], lim[128], log[256];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", emu_port);
    snprintf(schema, sizeof(schema), "%s", emu_schema);
    snprintf(lim, sizeof(lim), "%s", limits);
    snprintf(log, sizeof(log), "/tmp/%s.log", emu_schema);
    const char *argv[] = {"dw-emulator", "--system", system, "--listen", listen, "--pg", dsn,
                          "--schema", schema, "--limits", lim, "-X", "emulator.admin_secret=" ADMIN, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&emu_pid, DW_BIN_DIR "/dw-emulator", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-emulator: %s", strerror(e));
    const char *root = strcmp(system, "fo") == 0 ? "/data/" : "/api/data/v9.2/";
    snprintf(base, sizeof(base), "http://127.0.0.1:%d%s", emu_port, root);
    for (int i = 0; i < 200; i++) {
        resp_t r;
        req(&r, "GET", root, NULL, NULL);
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
    admin("/_admin/faults", "{\"latency_ms\":600}");  /* every request stays in flight 600 ms */
    resp_t rs[NPAR];
    CURL *h[NPAR];
    struct curl_slist *hl = NULL;
    char auth[256], url[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", emu_token);
    hl = curl_slist_append(hl, auth);
    snprintf(url, sizeof(url), "%sWhoAmI", base);
    CURLM *m = curl_multi_init();
    for (int i = 0; i < NPAR; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &rs[i]);
        curl_easy_setopt(h[i], CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h[i], CURLOPT_HEADERDATA, &rs[i]);
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
    /* the first two are admitted; the others arrive while both are in flight (600 ms) */
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
