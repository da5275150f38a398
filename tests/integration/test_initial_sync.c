/*
 * Integration tests of `dwctl initial-sync` against dw-emulator (F&O seeded with `dw-emulator
 * seed`, Dataverse filled through its API), the real Kafka (DW_KAFKA_BOOTSTRAP) and PostgreSQL
 * (DW_PG_DSN): every record is published once per run as a snapshot keyed by its canonical key;
 * a run stopped after some pages (--max-pages) and resumed publishes every record (the page in
 * flight at the stop may repeat; nothing is missing); --company filters; a bad map or run is a
 * usage error (exit 2). Maps are renamed copies, so topics and run rows are unique; they are
 * deleted at the end with the emulator schemas.
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

#define FO_ROWS 3000

static pid_t emu_pid = -1;
static int emu_port;
static char emu_schema[128];
static char emu_system[4];
static char suffix[32];
static char maps_dir[256];

static const char *const test_maps[] = {"customers_accounts", "currencies", "customer_groups",
                                        "legal_entities", "payment_terms", NULL};

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

/* ---- HTTP ------------------------------------------------------------------------------------ */

typedef struct {
    long status;
    char *body;
    size_t len;
} resp_t;

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    resp_t *r = ud;
    r->body = realloc(r->body, r->len + s * n + 1);
    memcpy(r->body + r->len, p, s * n);
    r->len += s * n;
    r->body[r->len] = '\0';
    return s * n;
}

static char token[4096];

static void req(resp_t *r, const char *method, const char *path, const char *body,
                const char *content_type)
{
    memset(r, 0, sizeof(*r));
    char url[2048], auth[4200];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", emu_port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    if (token[0]) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type ? content_type : "application/json");
    if (body)
        h = curl_slist_append(h, ct);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void get_token(void)
{
    resp_t r;
    token[0] = '\0';
    req(&r, "POST", "/contoso/oauth2/v2.0/token",
        "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type=client_credentials"
        "&scope=https%3A%2F%2Fx.example%2F.default",
        "application/x-www-form-urlencoded");
    cr_assert_eq(r.status, 200, "token: %ld %s", r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(j, "access_token")));
    json_decref(j);
    free(r.body);
}

/* ---- emulator --------------------------------------------------------------------------------- */

static void start_emulator(const char *system)
{
    const char *dsn = getenv("DW_PG_DSN");
    cr_assert(dsn, "DW_PG_DSN is not set (eval \"$(scripts/services.sh env)\")");
    snprintf(emu_system, sizeof(emu_system), "%s", system);
    emu_port = free_port();
    char listen[64], log[256];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", emu_port);
    snprintf(log, sizeof(log), "/tmp/%s.log", emu_schema);
    const char *argv[] = {"dw-emulator", "--system", system, "--listen", listen, "--pg", dsn,
                          "--schema", emu_schema, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&emu_pid, DW_BIN_DIR "/dw-emulator", &fa, NULL, (char *const *)argv,
                        environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-emulator: %s", strerror(e));
    for (int i = 0; i < 200; i++) {
        resp_t r;
        req(&r, "GET", strcmp(system, "fo") == 0 ? "/data/" : "/api/data/v9.2/", NULL, NULL);
        free(r.body);
        if (r.status == 401)
            break;
        int status;
        cr_assert_eq(waitpid(emu_pid, &status, WNOHANG), 0, "dw-emulator exited early, see %s",
                     log);
        usleep(50000);
    }
    get_token();
}

static void seed_fo(void)
{
    dw_test_run_t *r = malloc(sizeof(*r));
    char records[64];
    snprintf(records, sizeof(records), "CustomersV3=%d", FO_ROWS);
    const char *args[] = {"seed", "--system", "fo", "--pg", getenv("DW_PG_DSN"), "--schema",
                          emu_schema, "--records", records, NULL};
    dw_test_run(r, DW_BIN_DIR "/dw-emulator", args, NULL, 1);
    cr_assert_eq(r->status, 0, "seed: %s", r->err);
    free(r);
}

/* ---- maps, Kafka ------------------------------------------------------------------------------ */

static void map_name(char *out, size_t size, const char *basename)
{
    snprintf(out, size, "%s_%s", basename, suffix);
}

/* Copy the standard maps to maps_dir, renamed "<name>_<suffix>" everywhere. */
static void make_maps(void)
{
    mkdir(maps_dir, 0755);
    for (int i = 0; test_maps[i]; i++) {
        char path[512], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", test_maps[i]);
        FILE *f = fopen(path, "r");
        cr_assert(f, "%s", path);
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(f);
        fclose(m);
        for (int j = 0; test_maps[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", test_maps[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", test_maps[j], suffix);
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
        snprintf(path, sizeof(path), "%s/%s_%s.json", maps_dir, test_maps[i], suffix);
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

typedef struct {
    char **keys;
    json_t **evs;
    size_t n, cap;
} recs_t;

/* Every record on dw.<map>.<src> (one partition): read until count records or timeout_ms. */
static void recs_read(recs_t *rs, const char *map, const char *src, size_t count, int timeout_ms)
{
    memset(rs, 0, sizeof(*rs));
    char errstr[512], topic[300];
    snprintf(topic, sizeof(topic), "dw.%s.%s", map, src);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_conf_set(c, "group.id", dw_test_unique("isync"), NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    cr_assert(rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        /* at least count, then what else arrives within a short quiet period */
        if (el > timeout_ms || (rs->n >= count && el > 300))
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            if (rs->n == rs->cap) {
                rs->cap = rs->cap ? rs->cap * 2 : 1024;
                rs->keys = realloc(rs->keys, rs->cap * sizeof(*rs->keys));
                rs->evs = realloc(rs->evs, rs->cap * sizeof(*rs->evs));
            }
            rs->keys[rs->n] = strndup(m->key ? (const char *)m->key : "", m->key_len);
            rs->evs[rs->n] = json_loadb(m->payload, m->len, 0, NULL);
            rs->n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void recs_free(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->keys[i]);
        json_decref(rs->evs[i]);
    }
    free(rs->keys);
    free(rs->evs);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The number of distinct keys among rs's records from index `from`. */
static size_t distinct_keys(const recs_t *rs, size_t from)
{
    size_t n = rs->n - from, d = 0;
    char **k = malloc((n ? n : 1) * sizeof(*k));
    memcpy(k, rs->keys + from, n * sizeof(*k));
    qsort(k, n, sizeof(*k), cmp_str);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(k[i], k[i - 1]) != 0)
            d++;
    free(k);
    return d;
}

/* ---- dwctl --------------------------------------------------------------------------------------- */

static dw_test_run_t *dwctl(const char *const *args)
{
    dw_test_run_t *r = malloc(sizeof(*r));
    char mapsx[300], url[128], tok[160], topics[] = "topics.partitions=1";
    snprintf(mapsx, sizeof(mapsx), "maps.dir=%s", maps_dir);
    snprintf(url, sizeof(url), "%s.url=http://127.0.0.1:%d", emu_system, emu_port);
    snprintf(tok, sizeof(tok), "%s.token_url=http://127.0.0.1:%d/contoso/oauth2/v2.0/token",
             emu_system, emu_port);
    char cid[32], secret[64];
    snprintf(cid, sizeof(cid), "%s.client_id=dwfleet", emu_system);
    snprintf(secret, sizeof(secret), "%s.client_secret=dwfleet-local-secret", emu_system);
    const char *argv[48] = {"initial-sync", "-X", mapsx, "-X", url, "-X", tok, "-X", cid,
                            "-X", secret, "-X", topics};
    int a = 0;
    while (argv[a])
        a++;
    for (int i = 0; args[i] && a < 46; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    dw_test_run(r, DW_BIN_DIR "/dwctl", argv, NULL, 1);
    return r;
}

/* The run id of a --json result. */
static void run_id_of(const dw_test_run_t *r, char out[64])
{
    json_t *j = json_loads(r->out, 0, NULL);
    cr_assert(j, "not JSON: %s", r->out);
    snprintf(out, 64, "%s", json_string_value(json_object_get(j, "run")));
    json_decref(j);
}

static void setup_common(void)
{
    snprintf(suffix, sizeof(suffix), "i%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwisync_maps_%s", suffix);
    snprintf(emu_schema, sizeof(emu_schema), "emu_is_%s", suffix);
    make_maps();
}

static void teardown(void)
{
    if (emu_pid > 0) {
        kill(emu_pid, SIGTERM);
        waitpid(emu_pid, NULL, 0);
        emu_pid = -1;
    }
    remove_maps();
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (rk) {
        const char *names[16];
        char buf[16][256];
        size_t n = 0;
        for (size_t i = 0; test_maps[i]; i++)
            for (int s = 0; s < 2; s++, n++) {
                snprintf(buf[n], sizeof(buf[n]), "dw.%s_%s.%s", test_maps[i], suffix,
                         s ? "dv" : "fo");
                names[n] = buf[n];
            }
        dw_kafka_topics_delete(rk, names, n, 10000, errstr, sizeof(errstr));
        rd_kafka_destroy(rk);
    }
    PGconn *pc = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(pc) == CONNECTION_OK) {
        char like[64];
        snprintf(like, sizeof(like), "%%_%s", suffix);
        const char *p[1] = {like};
        PQclear(PQexec(pc, "SET client_min_messages TO warning"));
        PQclear(PQexecParams(pc, "DELETE FROM dw_initial_sync WHERE map LIKE $1", 1, NULL, p, NULL,
                             NULL, 0));
        PQclear(PQexecParams(pc, "DELETE FROM dw_record_ids WHERE map LIKE $1", 1, NULL, p, NULL,
                             NULL, 0));
        char *id = PQescapeIdentifier(pc, emu_schema, strlen(emu_schema));
        char sql[300];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", id);
        PQclear(PQexec(pc, sql));
        PQfreemem(id);
    }
    PQfinish(pc);
    char log[256];
    snprintf(log, sizeof(log), "/tmp/%s.log", emu_schema);
    unlink(log);
}

static void setup_fo(void)
{
    setup_common();
    seed_fo();
    start_emulator("fo");
}

static void setup_dv(void)
{
    setup_common();
    start_emulator("dv");
}

TestSuite(initial_sync_fo, .init = setup_fo, .fini = teardown, .timeout = 120);
TestSuite(initial_sync_dv, .init = setup_dv, .fini = teardown, .timeout = 60);
TestSuite(initial_sync_usage, .init = setup_common, .fini = teardown, .timeout = 30);

Test(initial_sync_fo, every_record_once_then_company_filter_then_resume)
{
    char map[128], run[64];
    map_name(map, sizeof(map), "customers_accounts");

    /* a whole run: every record once, as a snapshot keyed by the canonical key */
    const char *a1[] = {"--map", map, "--from", "fo", "--page-size", "700", "--json", NULL};
    dw_test_run_t *r = dwctl(a1);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    cr_assert(strstr(r->err, "\"final\":true"), "no JSON progress lines: %s", r->err);
    run_id_of(r, run);
    free(r);
    recs_t rs;
    recs_read(&rs, map, "fo", FO_ROWS, 20000);
    cr_assert_eq(rs.n, FO_ROWS, "%zu records", rs.n);
    cr_assert_eq(distinct_keys(&rs, 0), FO_ROWS);
    json_t *ev = rs.evs[0];
    cr_assert_str_eq(json_string_value(json_object_get(ev, "op")), "snapshot");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "source")), "fo");
    cr_assert_str_eq(json_string_value(json_object_get(ev, "correlation_id")), run);
    cr_assert(json_is_object(json_object_get(ev, "data")));
    cr_assert_null(json_object_get(json_object_get(ev, "data"), "@odata.etag"));
    /* the row version (W/"<n>"; seeded rows carry 0) */
    cr_assert(json_string_value(json_object_get(ev, "source_version")));
    /* the key is the canonical key of the record: ["<company>","<account lower-case>"] */
    const char *area = json_string_value(json_object_get(json_object_get(ev, "data"), "dataAreaId"));
    cr_assert(area);
    char company[16];
    snprintf(company, sizeof(company), "%s", area);
    char lower[16];
    for (size_t i = 0; i <= strlen(company); i++)
        lower[i] = (char)(company[i] >= 'A' && company[i] <= 'Z' ? company[i] + 32 : company[i]);
    cr_assert(strncmp(rs.keys[0], "[\"", 2) == 0 && strstr(rs.keys[0], lower), "%s", rs.keys[0]);
    size_t in_company = 0;
    for (size_t i = 0; i < rs.n; i++) {
        const char *ar = json_string_value(json_object_get(json_object_get(rs.evs[i], "data"),
                                                           "dataAreaId"));
        in_company += ar && strcmp(ar, company) == 0;
    }
    cr_assert_lt(in_company, (size_t)FO_ROWS, "the seed should spread rows over companies");
    size_t base = rs.n;
    recs_free(&rs);
    PGconn *pc = PQconnectdb(getenv("DW_PG_DSN"));
    const char *p1[1] = {run};
    PGresult *res = PQexecParams(pc, "SELECT status, pages, records, position IS NULL FROM"
                                     " dw_initial_sync WHERE run_id = $1",
                                 1, NULL, p1, NULL, NULL, 0);
    cr_assert_eq(PQntuples(res), 1);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "done");
    cr_assert_str_eq(PQgetvalue(res, 0, 1), "5"); /* 3000 / 700 */
    cr_assert_eq(atoi(PQgetvalue(res, 0, 2)), FO_ROWS);
    cr_assert_str_eq(PQgetvalue(res, 0, 3), "t");
    PQclear(res);

    /* --company: that company's records only */
    const char *a2[] = {"--map", map, "--from", "fo", "--company", company, "--no-progress", NULL};
    r = dwctl(a2);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    free(r);
    recs_read(&rs, map, "fo", base + in_company, 20000);
    cr_assert_eq(rs.n, base + in_company, "%zu records after the company run", rs.n);
    for (size_t i = base; i < rs.n; i++) {
        const char *ar = json_string_value(json_object_get(json_object_get(rs.evs[i], "data"),
                                                           "dataAreaId"));
        cr_assert_str_eq(ar, company);
    }
    base = rs.n;
    recs_free(&rs);

    /* stopped after 2 pages of 400 (resumable, exit 1), then resumed: every record, at most
     * one page repeated */
    const char *a3[] = {"--map", map, "--from", "fo", "--page-size", "400", "--max-pages", "2",
                        "--json", NULL};
    r = dwctl(a3);
    cr_assert_eq(r->status, 1, "%s\n%s", r->out, r->err);
    cr_assert(strstr(r->err, "--resume"), "%s", r->err);
    run_id_of(r, run);
    free(r);
    res = PQexecParams(pc, "SELECT status, pages, records FROM dw_initial_sync WHERE run_id = $1",
                       1, NULL, p1, NULL, NULL, 0);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "stopped");
    cr_assert_str_eq(PQgetvalue(res, 0, 1), "2");
    cr_assert_str_eq(PQgetvalue(res, 0, 2), "800");
    PQclear(res);
    const char *a4[] = {"--resume", run, "--json", NULL};
    r = dwctl(a4);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    free(r);
    recs_read(&rs, map, "fo", base + FO_ROWS, 20000);
    cr_assert_geq(rs.n, base + FO_ROWS, "%zu records", rs.n);
    cr_assert_leq(rs.n, base + FO_ROWS + 400, "%zu records", rs.n);
    cr_assert_eq(distinct_keys(&rs, base), FO_ROWS);
    recs_free(&rs);
    res = PQexecParams(pc, "SELECT status, records FROM dw_initial_sync WHERE run_id = $1", 1,
                       NULL, p1, NULL, NULL, 0);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "done");
    cr_assert_eq(atoi(PQgetvalue(res, 0, 1)), FO_ROWS);
    PQclear(res);
    PQfinish(pc);
    /* a finished run resumed again publishes nothing */
    r = dwctl(a4);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    free(r);
}

Test(initial_sync_dv, dataverse_pages_with_lookups_resolved)
{
    char map[128];
    map_name(map, sizeof(map), "currencies");
    for (int i = 0; i < 7; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"isocurrencycode\":\"C%02d\",\"currencyname\":\"Currency %d\","
                 "\"currencysymbol\":\"$\",\"exchangerate\":1,\"currencyprecision\":2}",
                 i, i);
        resp_t rr;
        req(&rr, "POST", "/api/data/v9.2/transactioncurrencies", body, NULL);
        cr_assert_eq(rr.status, 204, "%ld %s", rr.status, rr.body);
        free(rr.body);
    }
    const char *a1[] = {"--map", map, "--from", "dv", "--page-size", "3", "--json", NULL};
    dw_test_run_t *r = dwctl(a1);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    cr_assert(strstr(r->out, "\"pages\":3"), "%s", r->out);
    free(r);
    recs_t rs;
    recs_read(&rs, map, "dv", 7, 20000);
    cr_assert_eq(rs.n, 7);
    cr_assert_eq(distinct_keys(&rs, 0), 7);
    cr_assert_str_eq(json_string_value(json_object_get(rs.evs[0], "op")), "snapshot");
    cr_assert(json_is_string(json_object_get(rs.evs[0], "record_id")));
    recs_free(&rs);
    /* the row ids are recorded for dw-capture's delete resolution */
    PGconn *pc = PQconnectdb(getenv("DW_PG_DSN"));
    const char *p[1] = {map};
    PGresult *res = PQexecParams(pc, "SELECT count(*) FROM dw_record_ids WHERE map = $1", 1, NULL,
                                 p, NULL, NULL, 0);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "7");
    PQclear(res);
    PQfinish(pc);
}

Test(initial_sync_usage, bad_map_run_or_options_exit_2)
{
    emu_port = 1;
    snprintf(emu_system, sizeof(emu_system), "fo");
    const char *a1[] = {"--map", "no_such_map", "--from", "fo", NULL};
    dw_test_run_t *r = dwctl(a1);
    cr_assert_eq(r->status, 2, "%s", r->err);
    cr_assert(strstr(r->err, "no_such_map"), "%s", r->err);
    free(r);
    const char *a2[] = {"--resume", "00000000-0000-4000-8000-000000000000", NULL};
    r = dwctl(a2);
    cr_assert_eq(r->status, 2, "%s", r->err);
    free(r);
    const char *a3[] = {"--all", NULL};
    r = dwctl(a3);
    cr_assert_eq(r->status, 2, "%s", r->err);
    free(r);
    char map[128];
    map_name(map, sizeof(map), "currencies");
    const char *a4[] = {"--map", map, "--from", "dv", "--company", "usmf", NULL};
    r = dwctl(a4);
    cr_assert_eq(r->status, 2, "%s", r->err);
    free(r);
}
