/*
 * Integration tests of dw-capture --system dv against dw-emulator --system dv, the real Kafka
 * (DW_KAFKA_BOOTSTRAP) and PostgreSQL (DW_PG_DSN): every change made through the Web API appears
 * on dw.<map>.dv in order per key (snapshot, upserts, deletes resolved to their key); kill -9 of
 * capture in mid-stream and a restart lose nothing (the delta link is stored only after Kafka
 * acknowledged); an expired change tracking token makes capture re-read the table. Each test
 * uses its own emulator schema, its own renamed copies of the standard maps (so topics and
 * checkpoints are unique) and deletes its topics at the end.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dw_testutil.h"

extern char **environ;

#define ADMIN "test-admin-secret"

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

/* ---- maps, capture process, Kafka ------------------------------------------------------------ */

static char suffix[32];
static char maps_dir[256];
static char cap_log[256];
static pid_t cap_pid = -1;

static void map_name(char *out, size_t size, const char *basename)
{
    snprintf(out, size, "%s_%s", basename, suffix);
}

/* Copy the standard maps named in bases to maps_dir, renamed "<name>_<suffix>" everywhere. */
static void make_maps(const char *const *bases)
{
    snprintf(suffix, sizeof(suffix), "t%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwcap_maps_%s", suffix);
    mkdir(maps_dir, 0755);
    for (int i = 0; bases[i]; i++) {
        char path[512], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", bases[i]);
        FILE *f = fopen(path, "r");
        cr_assert(f, "%s", path);
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(f);
        fclose(m);
        for (int j = 0; bases[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", bases[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", bases[j], suffix);
            char *p;
            while ((p = strstr(text, from))) {
                size_t fl = strlen(from), tl = strlen(to), l = strlen(text);
                char *nt = malloc(l - fl + tl + 1);
                memcpy(nt, text, (size_t)(p - text));
                memcpy(nt + (p - text), to, tl);
                strcpy(nt + (p - text) + tl, p + fl);
                free(text);
                text = nt;
            }
        }
        snprintf(path, sizeof(path), "%s/%s_%s.json", maps_dir, bases[i], suffix);
        f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        free(text);
    }
}

static void remove_maps(void)
{
    DIR *d = opendir(maps_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", maps_dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(maps_dir);
}

static void start_capture(const char *const *extra)
{
    char url[128], token_url[160], mapsx[300], comp[128];
    snprintf(url, sizeof(url), "dv.url=http://127.0.0.1:%d", emu_port);
    snprintf(token_url, sizeof(token_url),
             "dv.token_url=http://127.0.0.1:%d/contoso/oauth2/v2.0/token", emu_port);
    snprintf(mapsx, sizeof(mapsx), "maps.dir=%s", maps_dir);
    snprintf(comp, sizeof(comp), "capture.component=dw-capture-%s", suffix);
    snprintf(cap_log, sizeof(cap_log), "/tmp/dwcap_%s.log", suffix);
    const char *argv[64] = {"dw-capture", "--system", "dv", "-X", url, "-X", token_url, "-X",
                            "dv.client_id=dwfleet", "-X", "dv.client_secret=dwfleet-local-secret",
                            "-X", mapsx, "-X", comp, "-X", "capture.poll_interval_ms=100", "-X",
                            "capture.poll_max_interval_ms=400", "-X", "topics.partitions=1", "-X",
                            "capture.request_budget_per_min=0", "-X", "capture.backoff_initial_ms=200",
                            "--log-level", "debug"};
    int a = 0;
    while (argv[a])
        a++;
    for (int i = 0; extra && extra[i] && a < 62; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, cap_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&cap_pid, DW_BIN_DIR "/dw-capture", &fa, NULL, (char *const *)argv,
                        environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-capture: %s", strerror(e));
}

static int stop_capture(int sig)
{
    int status = 0;
    if (cap_pid > 0) {
        kill(cap_pid, sig);
        waitpid(cap_pid, &status, 0);
        cap_pid = -1;
    }
    return status;
}

static bool log_has(const char *needle)
{
    FILE *f = fopen(cap_log, "r");
    if (!f)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

typedef struct {
    char *key;
    json_t *ev;
    char op_hdr[16];
} rec_t;

typedef struct {
    rec_t *r;
    size_t n, cap;
    rd_kafka_t *rk;
    char topic[256];
} recs_t;

static void recs_open(recs_t *rs, const char *map)
{
    memset(rs, 0, sizeof(*rs));
    char errstr[512];
    snprintf(rs->topic, sizeof(rs->topic), "dw.%s.dv", map);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_conf_set(c, "group.id", dw_test_unique("capt"), NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(c, "auto.offset.reset", "earliest", NULL, 0);
    rd_kafka_conf_set(c, "topic.metadata.refresh.interval.ms", "500", NULL, 0);
    rs->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    cr_assert(rs->rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rs->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rs->topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rs->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Read until pred holds or timeout_ms passed. */
static void recs_read(recs_t *rs, int timeout_ms, bool (*pred)(recs_t *, void *), void *arg)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (pred && pred(rs, arg))
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            if (rs->n == rs->cap) {
                rs->cap = rs->cap ? rs->cap * 2 : 64;
                rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
            }
            rec_t *r = &rs->r[rs->n++];
            r->key = strndup(m->key ? (const char *)m->key : "", m->key_len);
            r->ev = json_loadb(m->payload, m->len, 0, NULL);
            r->op_hdr[0] = '\0';
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                dw_kafka_header_get(h, DW_KAFKA_HDR_OP, r->op_hdr, sizeof(r->op_hdr));
        }
        rd_kafka_message_destroy(m);
    }
}

static void recs_close(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        json_decref(rs->r[i].ev);
    }
    free(rs->r);
    rd_kafka_consumer_close(rs->rk);
    rd_kafka_destroy(rs->rk);
}

static const char *ev_op(const rec_t *r)
{
    return json_string_value(json_object_get(r->ev, "op"));
}

/* The index of the last record with key and op (NULL: any op), or -1. */
static long recs_last(const recs_t *rs, const char *key, const char *op)
{
    for (long i = (long)rs->n - 1; i >= 0; i--)
        if (strcmp(rs->r[i].key, key) == 0 && (!op || strcmp(ev_op(&rs->r[i]), op) == 0))
            return i;
    return -1;
}

static bool have_count(recs_t *rs, void *arg)
{
    return rs->n >= *(size_t *)arg;
}

typedef struct {
    const char *key;
    const char *op;
} want_t;

static bool have_key_op(recs_t *rs, void *arg)
{
    want_t *w = arg;
    return recs_last(rs, w->key, w->op) >= 0;
}

static void delete_topics(const char *const *maps)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (!rk)
        return;
    const char *names[16];
    char buf[16][256];
    size_t n = 0;
    for (size_t i = 0; maps[i] && n < 16; i++) {
        snprintf(buf[n], sizeof(buf[n]), "dw.%s_%s.dv", maps[i], suffix);
        names[n] = buf[n];
        n++;
    }
    dw_kafka_topics_delete(rk, names, n, 10000, errstr, sizeof(errstr));
    rd_kafka_destroy(rk);
}

static void create_currency(const char *code, const char *name)
{
    resp_t r;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"isocurrencycode\":\"%s\",\"currencyname\":\"%s\",\"currencysymbol\":\"$\","
             "\"exchangerate\":1,\"currencyprecision\":2}",
             code, name);
    req(&r, "POST", "transactioncurrencies", body, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
}

static const char *const test_maps[] = {"currencies", "customer_groups", "legal_entities", "payment_terms", NULL};

static void setup(void)
{
    start_emulator(NULL, NULL);
    make_maps(test_maps);
}

static void teardown(void)
{
    stop_capture(SIGKILL);
    stop_emulator();
    remove_maps();
    delete_topics(test_maps);
    PGconn *c = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(c) == CONNECTION_OK) {
        char comp[128], like[128];
        snprintf(comp, sizeof(comp), "dw-capture-%s", suffix);
        snprintf(like, sizeof(like), "%%_%s", suffix);
        const char *p1[1] = {comp};
        PQclear(PQexecParams(c, "DELETE FROM dw_checkpoint WHERE component = $1", 1, NULL, p1,
                             NULL, NULL, 0));
        const char *p2[1] = {like};
        PQclear(PQexecParams(c, "DELETE FROM dw_record_ids WHERE map LIKE $1", 1, NULL, p2, NULL,
                             NULL, 0));
    }
    PQfinish(c);
    if (!getenv("DW_TEST_KEEP_LOGS"))
        unlink(cap_log);
}

TestSuite(capture_dv, .init = setup, .fini = teardown, .timeout = 90);

Test(capture_dv, every_change_reaches_its_topic_in_order_with_deletes_resolved)
{
    char cur[128], grp[128], company[40];
    map_name(cur, sizeof(cur), "currencies");
    map_name(grp, sizeof(grp), "customer_groups");
    make_company("USMF", company);
    create_currency("USD", "US Dollar");
    create_currency("EUR", "Euro");
    resp_t r;
    req(&r, "POST", "msdyn_customergroups",
        "{\"msdyn_groupid\":\"10\",\"msdyn_description\":\"Wholesale\","
        "\"msdyn_company@odata.bind\":\"cdm_companies(cdm_companycode='USMF')\"}",
        NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);

    start_capture(NULL);
    recs_t cs, gs;
    recs_open(&cs, cur);
    recs_open(&gs, grp);
    size_t two = 2, one = 1;
    recs_read(&cs, 20000, have_count, &two);
    cr_assert_geq(cs.n, 2, "snapshot of currencies: %zu records, see %s", cs.n, cap_log);
    long usd = recs_last(&cs, "[\"usd\"]", "snapshot");
    cr_assert_geq(usd, 0);
    json_t *ev = cs.r[usd].ev;
    cr_assert_str_eq(json_string_value(json_object_get(ev, "source")), "dv");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "map")), cur);
    cr_assert_str_eq(cs.r[usd].op_hdr, "snapshot");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "key"), "isocurrencycode")), "USD");
    cr_assert(json_object_get(ev, "record_id"));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "data"), "currencyname")), "US Dollar");
    cr_assert_eq(json_integer_value(json_object_get(ev, "version")), 1);

    /* a company-striped table: the lookup key is resolved to the company code */
    recs_read(&gs, 20000, have_count, &one);
    cr_assert_geq(gs.n, 1, "customer groups: see %s", cap_log);
    cr_assert_str_eq(gs.r[0].key, "[\"usmf\",\"10\"]");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(gs.r[0].ev, "key"), "msdyn_company")), "USMF");

    /* live changes: two updates of USD in order, a delete of EUR by its key */
    req(&r, "PATCH", "transactioncurrencies(isocurrencycode='USD')", "{\"currencyname\":\"Dollar 1\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    want_t w1 = {"[\"usd\"]", "upsert"};
    recs_read(&cs, 15000, have_key_op, &w1);
    req(&r, "PATCH", "transactioncurrencies(isocurrencycode='USD')", "{\"currencyname\":\"Dollar 2\"}", NULL);
    resp_free(&r);
    req(&r, "DELETE", "transactioncurrencies(isocurrencycode='EUR')", NULL, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    want_t w2 = {"[\"eur\"]", "delete"};
    recs_read(&cs, 15000, have_key_op, &w2);
    long del = recs_last(&cs, "[\"eur\"]", "delete");
    cr_assert_geq(del, 0, "no delete of EUR; see %s", cap_log);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(cs.r[del].ev, "key"), "isocurrencycode")), "EUR");
    cr_assert(json_is_null(json_object_get(cs.r[del].ev, "data")));
    long last = recs_last(&cs, "[\"usd\"]", "upsert");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(cs.r[last].ev, "data"), "currencyname")), "Dollar 2");
    /* order per key: versions never go down */
    unsigned long long prev = 0;
    for (size_t i = 0; i < cs.n; i++) {
        if (strcmp(cs.r[i].key, "[\"usd\"]") != 0)
            continue;
        unsigned long long v = strtoull(json_string_value(json_object_get(cs.r[i].ev, "source_version")), NULL, 10);
        cr_assert_geq(v, prev);
        prev = v;
    }
    recs_close(&cs);
    recs_close(&gs);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
    cr_assert(log_has("stopped:"));
}

/* The change made while capture was down has arrived. */
static bool have_after(recs_t *rs, void *arg)
{
    for (size_t i = 0; i < rs->n; i++) {
        const char *n = json_string_value(json_object_get(json_object_get(rs->r[i].ev, "data"), "currencyname"));
        if (strcmp(rs->r[i].key, "[\"q00\"]") == 0 && n && strcmp(n, "after") == 0)
            return true;
    }
    return false;
}

/* Three-character currency codes (F&O's CurrencyCode holds 3): Q00, Q01, ... */
static void code_of(int i, char code[8])
{
    static const char d[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    snprintf(code, 8, "Q%c%c", d[(i / 36) % 36], d[i % 36]);
}

Test(capture_dv, kill_9_mid_stream_and_restart_loses_nothing)
{
    char cur[128];
    map_name(cur, sizeof(cur), "currencies");
    enum { N = 400 };
    /* many rows in one request */
    json_t *targets = json_array();
    for (int i = 0; i < N; i++)
        json_array_append_new(targets, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "@odata.type",
                                                 "Microsoft.Dynamics.CRM.transactioncurrency",
                                                 "isocurrencycode", "X",
                                                 "currencyname", "n", "currencysymbol", "$",
                                                 "exchangerate", 1, "currencyprecision", 2));
    for (int i = 0; i < N; i++) {
        char code[8];
        code_of(i, code);
        json_object_set_new(json_array_get(targets, (size_t)i), "isocurrencycode", json_string(code));
    }
    json_t *body = json_pack("{s:o}", "Targets", targets);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    resp_t r;
    req(&r, "POST", "transactioncurrencies/Microsoft.Dynamics.CRM.CreateMultiple", text, NULL);
    free(text);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);

    const char *small[] = {"-X", "capture.page_size=20", NULL};
    start_capture(small);
    recs_t cs;
    recs_open(&cs, cur);
    size_t some = 30;
    recs_read(&cs, 20000, have_count, &some);
    cr_assert_geq(cs.n, 30, "see %s", cap_log);
    stop_capture(SIGKILL); /* mid-stream */
    /* changes while capture is down */
    req(&r, "PATCH", "transactioncurrencies(isocurrencycode='Q00')", "{\"currencyname\":\"after\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    resp_free(&r);
    start_capture(small);
    recs_read(&cs, 40000, have_after, NULL);
    cr_assert(have_after(&cs, NULL), "the change made while down is missing; see %s", cap_log);
    for (int i = 0; i < N; i++) {
        char key[32], code[8];
        code_of(i, code);
        snprintf(key, sizeof(key), "[\"%c%c%c\"]", code[0] + 32, code[1] >= 'A' ? code[1] + 32 : code[1], code[2] >= 'A' ? code[2] + 32 : code[2]);
        cr_assert_geq(recs_last(&cs, key, NULL), 0, "record %s lost (%zu records read)", key, cs.n);
    }
    recs_close(&cs);
}

Test(capture_dv, expired_change_token_means_a_new_snapshot)
{
    char cur[128];
    map_name(cur, sizeof(cur), "currencies");
    create_currency("GBP", "Pound");
    start_capture(NULL);
    recs_t cs;
    recs_open(&cs, cur);
    size_t one = 1;
    recs_read(&cs, 20000, have_count, &one);
    cr_assert_geq(cs.n, 1, "see %s", cap_log);
    /* wait for the first delta link to be stored, stop, change, expire every token, restart:
     * the stored link is refused as expired (the emulator expires every token issued before
     * the admin call) */
    for (int i = 0; i < 100 && !log_has("snapshot done"); i++)
        usleep(100000);
    usleep(300000);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
    create_currency("CHF", "Franc");
    const char *h[] = {"Authorization: Bearer " ADMIN, NULL};
    resp_t r;
    req(&r, "POST", "/_admin/expire-tokens", "{}", h);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    resp_free(&r);
    start_capture(NULL);
    size_t before = cs.n;
    want_t w = {"[\"chf\"]", "snapshot"};
    recs_read(&cs, 20000, have_key_op, &w);
    cr_assert_geq(recs_last(&cs, "[\"chf\"]", "snapshot"), 0, "no re-snapshot; see %s", cap_log);
    cr_assert_gt(cs.n, before);
    cr_assert_geq(recs_last(&cs, "[\"gbp\"]", "snapshot"), (long)before, "GBP read again");
    cr_assert(log_has("no longer valid"));
    recs_close(&cs);
}
