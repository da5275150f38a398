/*
 * Integration tests of `dwctl initial-sync` against dw-emulator (F&O seeded with `dw-emulator
 * seed`, Dataverse filled through its API), the real Kafka (DW_KAFKA_BOOTSTRAP) and PostgreSQL
 * (DW_PG_DSN): every record is published once per run as a snapshot keyed by its canonical key;
 * a run stopped after some pages (--max-pages) and resumed publishes every record (the page in
 * flight at the stop may repeat; nothing is missing); --company filters; a bad map or run is a
 * usage error (exit 2). Maps are renamed copies, so topics and run rows are unique; they are
 * deleted at the end with the emulator schemas.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dw_testemu.h"
#include "dw_testkafka.h"
#include "dw_testutil.h"

#define FO_ROWS 3000

static dw_testemu_t *emu;
static int emu_port;          /* the emulator's, or a port nothing answers on (usage tests) */
static char emu_system[4];
static char suffix[32];
static char maps_dir[256];

static const char *const test_maps[] = {"customers_accounts", "currencies", "customer_groups",
                                        "legal_entities", "payment_terms", NULL};

/* ---- emulator --------------------------------------------------------------------------------- */

static void start_emulator(const char *system)
{
    char errstr[1024];
    snprintf(emu_system, sizeof(emu_system), "%s", system);
    emu = dw_testemu_start(system, "emu_is", NULL, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
    emu_port = dw_testemu_port(emu);
}

static void seed_fo(void)
{
    dw_test_run_t *r = malloc(sizeof(*r));
    char records[64];
    snprintf(records, sizeof(records), "CustomersV3=%d", FO_ROWS);
    const char *args[] = {"seed", "--system", "fo", "--pg", getenv("DW_PG_DSN"), "--schema",
                          dw_testemu_schema(emu), "--records", records, NULL};
    dw_test_run(r, DW_BIN_DIR "/dw-emulator", args, NULL, 1);
    cr_assert_eq(r->status, 0, "seed: %s", r->err);
    free(r);
}

/* ---- maps, Kafka ------------------------------------------------------------------------------ */

static void map_name(char *out, size_t size, const char *basename)
{
    snprintf(out, size, "%s_%s", basename, suffix);
}

/* a dw_testkafka_read predicate: at least count records, and what else arrives until 300 ms after
 * the start */
typedef struct {
    size_t count;
    struct timespec t0;
} enough_t;

static bool have_enough(dw_testkafka_t *rs, void *arg)
{
    enough_t *e = arg;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long el = (t.tv_sec - e->t0.tv_sec) * 1000 + (t.tv_nsec - e->t0.tv_nsec) / 1000000;
    return rs->n >= e->count && el > 300;
}

/* Every record on dw.<map>.<src> (one partition): read until count records or timeout_ms. */
static void recs_read(dw_testkafka_t *rs, const char *map, const char *src, size_t count,
                      int timeout_ms)
{
    char errstr[512], topic[300];
    snprintf(topic, sizeof(topic), "dw.%s.%s", map, src);
    cr_assert_eq(dw_testkafka_open(rs, topic, false, errstr, sizeof(errstr)), 0, "%s", errstr);
    enough_t e = {.count = count};
    clock_gettime(CLOCK_MONOTONIC, &e.t0);
    dw_testkafka_read(rs, timeout_ms, have_enough, &e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The number of distinct keys among rs's records from index `from`. */
static size_t distinct_keys(const dw_testkafka_t *rs, size_t from)
{
    size_t n = rs->n - from, d = 0;
    char **k = malloc((n ? n : 1) * sizeof(*k));
    for (size_t i = 0; i < n; i++)
        k[i] = rs->r[from + i].key;
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
    char errstr[512];
    cr_assert_eq(dw_test_maps_copy(maps_dir, test_maps, suffix, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
}

static void teardown(void)
{
    dw_testemu_destroy(emu);
    emu = NULL;
    dw_test_maps_remove(maps_dir);
    dw_testkafka_delete_topics(test_maps, suffix, (const char *const[]){"fo", "dv", NULL});
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
    }
    PQfinish(pc);
}

static void setup_fo(void)
{
    setup_common();
    start_emulator("fo");
    seed_fo();
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
    dw_testkafka_t rs;
    recs_read(&rs, map, "fo", FO_ROWS, 20000);
    cr_assert_eq(rs.n, FO_ROWS, "%zu records", rs.n);
    cr_assert_eq(distinct_keys(&rs, 0), FO_ROWS);
    json_t *ev = rs.r[0].ev;
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
    cr_assert(strncmp(rs.r[0].key, "[\"", 2) == 0 && strstr(rs.r[0].key, lower), "%s", rs.r[0].key);
    size_t in_company = 0;
    for (size_t i = 0; i < rs.n; i++) {
        const char *ar = json_string_value(json_object_get(json_object_get(rs.r[i].ev, "data"),
                                                           "dataAreaId"));
        in_company += ar && strcmp(ar, company) == 0;
    }
    cr_assert_lt(in_company, (size_t)FO_ROWS, "the seed should spread rows over companies");
    size_t base = rs.n;
    /* pages are read ahead and acknowledged in a pipeline: the records still arrive in the
     * source's order (key order, one partition) */
    PGconn *pc = PQconnectdb(getenv("DW_PG_DSN"));
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT \"dataAreaId\", \"CustomerAccount\" FROM \"%s\".\"CustomerV3\""
             " ORDER BY 1, 2", dw_testemu_schema(emu));
    PGresult *ord = PQexec(pc, sql);
    cr_assert_eq(PQntuples(ord), FO_ROWS, "%s", PQerrorMessage(pc));
    for (size_t i = 0; i < rs.n; i++) {
        json_t *d = json_object_get(rs.r[i].ev, "data");
        cr_assert_str_eq(json_string_value(json_object_get(d, "CustomerAccount")),
                         PQgetvalue(ord, (int)i, 1), "record %zu out of order", i);
        cr_assert_str_eq(json_string_value(json_object_get(d, "dataAreaId")),
                         PQgetvalue(ord, (int)i, 0), "record %zu out of order", i);
    }
    dw_testkafka_close(&rs);
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
        const char *ar = json_string_value(json_object_get(json_object_get(rs.r[i].ev, "data"),
                                                           "dataAreaId"));
        cr_assert_str_eq(ar, company);
    }
    base = rs.n;
    dw_testkafka_close(&rs);

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
    /* nothing was produced past the pages allowed (the reader read ahead, but only those): the
     * first 800 records in order, and the stored position is the third page */
    recs_read(&rs, map, "fo", base + 800, 20000);
    cr_assert_eq(rs.n, base + 800, "%zu records after the stopped run", rs.n);
    for (size_t i = base; i < rs.n; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rs.r[i].ev, "data"),
                                                           "CustomerAccount")),
                         PQgetvalue(ord, (int)(i - base), 1), "record %zu out of order", i);
    dw_testkafka_close(&rs);
    res = PQexecParams(pc, "SELECT position FROM dw_initial_sync WHERE run_id = $1", 1, NULL, p1,
                       NULL, NULL, 0);
    cr_assert(strstr(PQgetvalue(res, 0, 0), "$skiptoken="), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *a4[] = {"--resume", run, "--json", NULL};
    r = dwctl(a4);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    free(r);
    recs_read(&rs, map, "fo", base + FO_ROWS, 20000);
    cr_assert_geq(rs.n, base + FO_ROWS, "%zu records", rs.n);
    cr_assert_leq(rs.n, base + FO_ROWS + 400, "%zu records", rs.n);
    cr_assert_eq(distinct_keys(&rs, base), FO_ROWS);
    dw_testkafka_close(&rs);
    res = PQexecParams(pc, "SELECT status, records FROM dw_initial_sync WHERE run_id = $1", 1,
                       NULL, p1, NULL, NULL, 0);
    cr_assert_str_eq(PQgetvalue(res, 0, 0), "done");
    cr_assert_eq(atoi(PQgetvalue(res, 0, 1)), FO_ROWS);
    PQclear(res);
    PQclear(ord);
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
        dw_testemu_resp_t rr;
        dw_testemu_request(emu, &rr, "POST", "transactioncurrencies", body, NULL);
        cr_assert_eq(rr.status, 204, "%ld %s", rr.status, rr.body);
        dw_testemu_resp_free(&rr);
    }
    const char *a1[] = {"--map", map, "--from", "dv", "--page-size", "3", "--json", NULL};
    dw_test_run_t *r = dwctl(a1);
    cr_assert_eq(r->status, 0, "%s\n%s", r->out, r->err);
    cr_assert(strstr(r->out, "\"pages\":3"), "%s", r->out);
    free(r);
    dw_testkafka_t rs;
    recs_read(&rs, map, "dv", 7, 20000);
    cr_assert_eq(rs.n, 7);
    cr_assert_eq(distinct_keys(&rs, 0), 7);
    cr_assert_str_eq(json_string_value(json_object_get(rs.r[0].ev, "op")), "snapshot");
    cr_assert(json_is_string(json_object_get(rs.r[0].ev, "record_id")));
    dw_testkafka_close(&rs);
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
