/*
 * dw_testemu: start, talk to and stop a dw-emulator child process in the integration tests
 * (see dw_testemu.h). Uses posix_spawn (the Criterion worker never forks), libcurl easy
 * handles (one per request, never shared) and libpq for the schema drop.
 */
#include "dw_testemu.h"

#include "dw_testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define EMU_ARGS_MAX 64
#define EMU_ENV_MAX 512
#define EMU_READY_TRIES 600 /* of 50 ms: 30 s (a loaded machine, PostgreSQL schema setup) */
#define EMU_STOP_TRIES 200  /* of 50 ms: 10 s */

struct dw_testemu_s {
    pid_t pid; /* -1 when not running */
    int port;
    char schema[128];
    char base[256];
    char token[4096];
    char log[256];
};

__attribute__((format(printf, 3, 4))) static void set_err(char *errstr, size_t errstr_size,
                                                          const char *fmt, ...)
{
    if (!errstr || !errstr_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* Can port be bound on the loopback now? */
static bool port_bindable(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return false;
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(s);
    return ok;
}

/* A port below the kernel's ephemeral range: the port stays free between this call and the
 * emulator's bind, since no outgoing connection and no bind to port 0 (the clients of the tests
 * running beside) is given one there. */
int dw_testemu_free_port(void)
{
    int lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &lo) != 1)
            lo = 32768;
        fclose(f);
    }
    if (lo <= 12000)
        lo = 32768;
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int i = 0; i < 200; i++) {
        int port = 10000 + (int)(rand_r(&seed) % (unsigned)(lo - 10000));
        if (port_bindable(port))
            return port;
    }
    return 0;
}

/* The test's environment without the keys that extra sets, then extra; envp has EMU_ENV_MAX. */
static void build_env(const char **envp, const char *const *extra)
{
    size_t n = 0;
    for (char **e = environ; *e && n < EMU_ENV_MAX / 2; e++) {
        const char *eq = strchr(*e, '=');
        size_t kl = eq ? (size_t)(eq - *e) + 1 : strlen(*e);
        bool replaced = false;
        for (int i = 0; extra && extra[i] && !replaced; i++)
            replaced = strncmp(extra[i], *e, kl) == 0;
        if (!replaced)
            envp[n++] = *e;
    }
    for (int i = 0; extra && extra[i] && n < EMU_ENV_MAX - 1; i++)
        envp[n++] = extra[i];
    envp[n] = NULL;
}

dw_testemu_t *dw_testemu_start(const char *system, const char *schema_prefix,
                               const char *const *args, const char *const *env, char *errstr,
                               size_t errstr_size)
{
    dw_testemu_t *emu = NULL;
    const char *dsn = getenv("DW_PG_DSN");
    if (!dsn) {
        set_err(errstr, errstr_size, "DW_PG_DSN is not set (eval \"$(scripts/services.sh env)\")");
        return NULL;
    }
    emu = calloc(1, sizeof(*emu));
    if (!emu) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    emu->pid = -1;
    emu->port = dw_testemu_free_port();
    if (!emu->port) {
        set_err(errstr, errstr_size, "could not find a free port: %s", strerror(errno));
        free(emu);
        return NULL;
    }
    snprintf(emu->schema, sizeof(emu->schema), "%s", dw_test_unique(schema_prefix));
    snprintf(emu->log, sizeof(emu->log), "/tmp/%s.log", emu->schema);
    const char *root = strcmp(system, "fo") == 0 ? "/data/" : "/api/data/v9.2/";
    snprintf(emu->base, sizeof(emu->base), "http://127.0.0.1:%d%s", emu->port, root);

    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", emu->port);
    const char *argv[EMU_ARGS_MAX] = {"dw-emulator", "--system", system, "--listen", listen,
                                      "--pg", dsn, "--schema", emu->schema};
    int a = 9;
    for (int i = 0; args && args[i] && a < EMU_ARGS_MAX - 1; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    const char *envp[EMU_ENV_MAX];
    build_env(envp, env);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, emu->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&emu->pid, DW_BIN_DIR "/dw-emulator", &fa, NULL, (char *const *)argv,
                        (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        emu->pid = -1;
        set_err(errstr, errstr_size, "spawn dw-emulator: %s", strerror(e));
        goto fail;
    }

    /* the root answers (401 without a token) once the store is open and the server listens */
    for (int i = 0;; i++) {
        dw_testemu_resp_t r;
        dw_testemu_request(emu, &r, "GET", root, NULL, NULL);
        long st = r.status;
        dw_testemu_resp_free(&r);
        if (st != 0)
            break;
        int status;
        if (waitpid(emu->pid, &status, WNOHANG) != 0) {
            emu->pid = -1;
            set_err(errstr, errstr_size, "dw-emulator exited early, see %s", emu->log);
            goto fail;
        }
        if (i == EMU_READY_TRIES) {
            set_err(errstr, errstr_size, "dw-emulator did not answer within 10 s, see %s", emu->log);
            goto fail;
        }
        usleep(50000);
    }
    if (dw_testemu_token_fetch(emu, errstr, errstr_size) != 0)
        goto fail;
    return emu;

fail:
    dw_testemu_stop(emu);
    dw_testemu_schema_drop(dsn, emu->schema, NULL, 0);
    free(emu); /* the log stays, for the message */
    return NULL;
}

int dw_testemu_stop(dw_testemu_t *emu)
{
    if (!emu || emu->pid <= 0)
        return -1;
    int status = 0;
    kill(emu->pid, SIGTERM);
    pid_t w = 0;
    for (int i = 0; i < EMU_STOP_TRIES && (w = waitpid(emu->pid, &status, WNOHANG)) == 0; i++)
        usleep(50000);
    if (w == 0) {
        kill(emu->pid, SIGKILL);
        w = waitpid(emu->pid, &status, 0);
    }
    emu->pid = -1;
    if (w < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void dw_testemu_destroy(dw_testemu_t *emu)
{
    if (!emu)
        return;
    dw_testemu_stop(emu);
    dw_testemu_schema_drop(getenv("DW_PG_DSN"), emu->schema, NULL, 0);
    unlink(emu->log);
    free(emu);
}

int dw_testemu_port(const dw_testemu_t *emu)
{
    return emu->port;
}

const char *dw_testemu_schema(const dw_testemu_t *emu)
{
    return emu->schema;
}

const char *dw_testemu_base(const dw_testemu_t *emu)
{
    return emu->base;
}

const char *dw_testemu_token(const dw_testemu_t *emu)
{
    return emu->token;
}

const char *dw_testemu_log_path(const dw_testemu_t *emu)
{
    return emu->log;
}

int dw_testemu_token_fetch(dw_testemu_t *emu, char *errstr, size_t errstr_size)
{
    dw_testemu_resp_t r;
    int rc = -1;
    emu->token[0] = '\0';
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    dw_testemu_request(emu, &r, "POST", "/contoso.onmicrosoft.com/oauth2/v2.0/token",
                       "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=client_credentials"
                       "&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default",
                       h);
    const char *tok = json_string_value(json_object_get(r.json, "access_token"));
    if (r.status != 200 || !tok) {
        set_err(errstr, errstr_size, "token: %ld %s", r.status, r.body ? r.body : "");
        goto done;
    }
    snprintf(emu->token, sizeof(emu->token), "%s", tok);
    rc = 0;
done:
    dw_testemu_resp_free(&r);
    return rc;
}

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    dw_testemu_resp_t *r = ud;
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
    dw_testemu_resp_t *r = ud;
    size_t l = strlen(r->headers);
    if (l + s * n + 1 < sizeof(r->headers)) {
        memcpy(r->headers + l, p, s * n);
        r->headers[l + s * n] = '\0';
    }
    return s * n;
}

void dw_testemu_resp_capture(CURL *c, dw_testemu_resp_t *r)
{
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
}

void dw_testemu_resp_free(dw_testemu_resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

const char *dw_testemu_resp_header(const dw_testemu_resp_t *r, const char *name, char *out,
                                   size_t size)
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

json_t *dw_testemu_admin_get(dw_testemu_t *emu, const char *path, const char *admin_secret,
                             long *status)
{
    char auth[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin_secret);
    const char *const headers[] = {auth, NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, headers);
    if (status)
        *status = r.status;
    json_t *j = r.status == 200 ? json_incref(r.json) : NULL;
    dw_testemu_resp_free(&r);
    return j;
}

int dw_testemu_request(dw_testemu_t *emu, dw_testemu_resp_t *r, const char *method,
                       const char *path, const char *body, const char *const *headers)
{
    memset(r, 0, sizeof(*r));
    char url[8192];
    if (strncmp(path, "http", 4) == 0)
        snprintf(url, sizeof(url), "%s", path);
    else if (path[0] == '/')
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", emu->port, path);
    else
        snprintf(url, sizeof(url), "%s%s", emu->base, path);
    for (char *sp = strchr(url, ' '); sp; sp = strchr(url, ' ')) {
        size_t at = (size_t)(sp - url), len = strlen(url);
        if (len + 3 >= sizeof(url))
            break;
        memmove(sp + 3, sp + 1, len - at);
        memcpy(sp, "%20", 3);
    }
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    struct curl_slist *hl = NULL;
    bool has_auth = false, has_ct = false;
    for (int i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        if (strncasecmp(headers[i], "Authorization:", 14) == 0)
            has_auth = true;
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_ct = true;
    }
    if (!has_auth && emu->token[0]) {
        char auth[sizeof(emu->token) + 32];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", emu->token);
        hl = curl_slist_append(hl, auth);
    }
    if (!has_ct && body)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "OData-MaxVersion: 4.0");
    hl = curl_slist_append(hl, "OData-Version: 4.0");
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    dw_testemu_resp_capture(c, r);
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
    return cc == CURLE_OK ? 0 : -1;
}

/* A connection to dsn (DW_PG_DSN), or NULL with errstr filled. */
static PGconn *pg_open(const char *dsn, char *errstr, size_t errstr_size)
{
    if (!dsn) {
        set_err(errstr, errstr_size, "DW_PG_DSN is not set");
        return NULL;
    }
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        set_err(errstr, errstr_size, "could not connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

int dw_testemu_schema_drop(const char *dsn, const char *schema, char *errstr, size_t errstr_size)
{
    int rc = -1;
    char *id = NULL;
    PGresult *res = NULL;
    PGconn *c = pg_open(dsn, errstr, errstr_size);
    if (!c)
        return -1;
    /* an identifier cannot be a parameter: it is quoted by libpq */
    id = PQescapeIdentifier(c, schema, strlen(schema));
    if (!id) {
        set_err(errstr, errstr_size, "could not quote the schema name: %s", PQerrorMessage(c));
        goto done;
    }
    char sql[300];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", id);
    PQclear(PQexec(c, "SET client_min_messages TO warning"));
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_err(errstr, errstr_size, "could not drop the schema: %s", PQerrorMessage(c));
        goto done;
    }
    rc = 0;
done:
    PQclear(res);
    PQfreemem(id);
    PQfinish(c);
    return rc;
}

int dw_testemu_insert_rows(dw_testemu_t *emu, const char *table, const char *rows, char *errstr,
                           size_t errstr_size)
{
    int rc = -1;
    char *qs = NULL, *qt = NULL, sql[600];
    PGresult *res = NULL;
    PGconn *c = pg_open(getenv("DW_PG_DSN"), errstr, errstr_size);
    if (!c)
        return -1;
    qs = PQescapeIdentifier(c, emu->schema, strlen(emu->schema));
    qt = PQescapeIdentifier(c, table, strlen(table));
    if (!qs || !qt ||
        (size_t)snprintf(sql, sizeof(sql),
                         "INSERT INTO %s.%s SELECT * FROM jsonb_populate_recordset(NULL::%s.%s, "
                         "$1::jsonb)",
                         qs, qt, qs, qt) >= sizeof(sql)) {
        set_err(errstr, errstr_size, "could not build the insert: %s", PQerrorMessage(c));
        goto done;
    }
    const char *p[1] = {rows};
    res = PQexecParams(c, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_err(errstr, errstr_size, "insert into %s: %s", table, PQerrorMessage(c));
        goto done;
    }
    rc = 0;
done:
    PQclear(res);
    PQfreemem(qs);
    PQfreemem(qt);
    PQfinish(c);
    return rc;
}

int dw_testemu_fo_refdata(dw_testemu_t *emu, const char *companies, char *errstr,
                          size_t errstr_size)
{
    if (dw_testemu_insert_rows(emu, "Currency",
                               "[{\"CurrencyCode\":\"USD\",\"Name\":\"US dollar\"},"
                               "{\"CurrencyCode\":\"EUR\",\"Name\":\"Euro\"},"
                               "{\"CurrencyCode\":\"GBP\",\"Name\":\"Pound sterling\"}]",
                               errstr, errstr_size))
        return -1;
    char co[64], groups[3][1024] = {"[", "["};
    const char *s = companies;
    size_t n = 0;
    while (*s) {
        size_t l = strcspn(s, ",");
        snprintf(co, sizeof(co), "%.*s", (int)(l < sizeof(co) - 1 ? l : sizeof(co) - 1), s);
        for (int g = 10; g <= 30; g += 10) {
            for (int k = 0; k < 2; k++) {
                size_t u = strlen(groups[k]);
                snprintf(groups[k] + u, sizeof(groups[k]) - u,
                         "%s{\"dataAreaId\":\"%s\",\"%s\":\"%d\",\"Description\":\"Group %d\"}",
                         n ? "," : "", co, k ? "VendorGroupId" : "CustomerGroupId", g, g);
            }
            n++;
        }
        s += l;
        if (*s == ',')
            s++;
    }
    strcat(groups[0], "]");
    strcat(groups[1], "]");
    if (dw_testemu_insert_rows(emu, "CustomerGroup", groups[0], errstr, errstr_size) ||
        dw_testemu_insert_rows(emu, "VendorGroup", groups[1], errstr, errstr_size))
        return -1;
    return 0;
}
