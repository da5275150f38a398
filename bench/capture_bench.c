/*
 * capture_bench: how fast changes enter Kafka, end to end against dw-emulator and the local
 * Kafka and PostgreSQL (DW_KAFKA_BOOTSTRAP, DW_PG_DSN):
 *
 *   1. F&O push: EVENTS Customers V3 creates through the emulator's OData API pile up in its
 *      outbox; then dw-capture --system fo starts and the outbox is delivered to it. Events/s from
 *      capture ready to the last record on dw.<map>.fo.
 *   2. Dataverse pull: DV_ROWS accounts seeded (`dw-emulator seed`); dw-capture --system dv reads
 *      them (change tracking, lookups resolved). Records/s from capture start to the last record.
 *   3. Initial sync: ROWS Customers V3 seeded in the F&O emulator, `dwctl initial-sync --from fo`
 *      (pages of 10,000). Records/s over the whole command; the goal is >= 20,000/s.
 *
 * It starts the emulators and capture itself (binaries next to it), uses a renamed copy of the
 * customers_accounts map and its dependencies, and removes its topics, schemas and run rows at
 * the end. Numbers only, never a test.
 *
 *   build/bin/capture_bench [--sync-only] [ROWS (default 1000000)] [EVENTS (default 2000)] [DV_ROWS
 * (default 20000)]
 */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "dw_bench.h"

#ifndef DW_SOURCE_DIR
#define DW_SOURCE_DIR "."
#endif
#ifndef DW_BIN_DIR
#define DW_BIN_DIR "."
#endif

#define GOAL_SYNC 20000.0


static const char *const maps[] = {"customers_accounts", "currencies",    "customer_groups",
                                   "legal_entities",     "payment_terms", NULL};
static char suffix[32], maps_dir[256], mapsx[300];
static const char *dsn, *boot;

/* CPU seconds of every process whose command line contains needle (the Kafka broker's java, the
 * PostgreSQL server and its backends); the sum over processes alive now. */
static double procs_cpu(const char *needle)
{
    double sum = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], cmd[4096];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        cmd[n] = '\0';
        double c;
        if (strstr(cmd, needle) && (c = dw_bench_proc_cpu_s((pid_t)atoi(e->d_name))) > 0)
            sum += c;
    }
    if (d)
        closedir(d);
    return sum;
}

static void make_maps(void)
{
    mkdir(maps_dir, 0755);
    for (int i = 0; maps[i]; i++) {
        char path[512], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", maps[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(f);
        fclose(m);
        for (int j = 0; maps[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", maps[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", maps[j], suffix);
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
        snprintf(path, sizeof(path), "%s/%s_%s.json", maps_dir, maps[i], suffix);
        f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        free(text);
    }
}

/* The high watermark of partition 0 of dw.<customers_accounts copy>.<src>. */
static long long topic_count(rd_kafka_t *rk, const char *src)
{
    char topic[300];
    int64_t lo = 0, hi = 0;
    snprintf(topic, sizeof(topic), "dw.customers_accounts_%s.%s", suffix, src);
    if (rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 5000))
        return 0;
    return hi;
}

static int wait_count(rd_kafka_t *rk, const char *src, long long n, double timeout_s)
{
    double t0 = dw_bench_now();
    while (topic_count(rk, src) < n) {
        if (dw_bench_now() - t0 > timeout_s)
            return -1;
        usleep(100000);
    }
    return 0;
}

static void cleanup(rd_kafka_t *rk)
{
    const char *names[16];
    char buf[16][300];
    size_t n = 0;
    for (int i = 0; maps[i]; i++)
        for (int s = 0; s < 2; s++, n++) {
            snprintf(buf[n], sizeof(buf[n]), "dw.%s_%s.%s", maps[i], suffix, s ? "dv" : "fo");
            names[n] = buf[n];
        }
    rd_kafka_DeleteTopic_t *dt[16];
    for (size_t i = 0; i < n; i++)
        dt[i] = rd_kafka_DeleteTopic_new(names[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, dt, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(dt, n);
    PGconn *pc = PQconnectdb(dsn);
    if (PQstatus(pc) == CONNECTION_OK) {
        char like[64], sql[256];
        snprintf(like, sizeof(like), "%%_%s", suffix);
        const char *p[1] = {like};
        PQclear(PQexec(pc, "SET client_min_messages TO warning"));
        PQclear(PQexecParams(pc, "DELETE FROM dw_initial_sync WHERE map LIKE $1", 1, NULL, p, NULL,
                             NULL, 0));
        PQclear(PQexecParams(pc, "DELETE FROM dw_record_ids WHERE map LIKE $1", 1, NULL, p, NULL,
                             NULL, 0));
        PQclear(PQexecParams(pc, "DELETE FROM dw_checkpoint WHERE map LIKE $1", 1, NULL, p, NULL,
                             NULL, 0));
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS bench_fo_%s CASCADE", suffix);
        PQclear(PQexec(pc, sql));
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS bench_dv_%s CASCADE", suffix);
        PQclear(PQexec(pc, sql));
    }
    PQfinish(pc);
    DIR *d = opendir(maps_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", maps_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(maps_dir);
}

/* 1. F&O data events: writes pile up in the outbox, then capture drains it. */
static void bench_fo_push(rd_kafka_t *rk, const char *log, long events)
{
    char schema[64], listen[64], endpoint[160], caplisten[80], url[256], token[4096];
    snprintf(schema, sizeof(schema), "bench_fo_%s", suffix);
    int eport = dw_bench_free_port(), cport = dw_bench_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", eport);
    snprintf(endpoint, sizeof(endpoint), "emulator.fo.event_endpoints=http://127.0.0.1:%d/events",
             cport);
    const char *eargv[] = {"dw-emulator",
                           "--system",
                           "fo",
                           "--listen",
                           listen,
                           "--pg",
                           dsn,
                           "--schema",
                           schema,
                           "-X",
                           endpoint,
                           "-X",
                           "emulator.fo.event_auth_header=Authorization: Bearer bench",
                           "-X",
                           "emulator.fo.event_retry_initial_ms=50",
                           "-X",
                           "emulator.fo.event_retry_max_ms=100",
                           NULL};
    pid_t emu = dw_bench_spawn(DW_BIN_DIR, "dw-emulator", eargv, log), cap = -1;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/data/", eport);
    if (emu < 0 || dw_bench_wait_http(url, 20) || dw_bench_token(eport, token, sizeof(token))) {
        printf("fo push: the emulator did not start (see %s)\n", log);
        goto out;
    }
    /* the group and currency the customers name (F&O checks relations), written straight into
     * the emulator's tables so they make no data event */
    PGconn *pc = PQconnectdb(dsn);
    const char *refs[] = {"Currency", "{\"CurrencyCode\":\"USD\",\"Name\":\"US dollar\"}",
                          "CustomerGroup", "{\"dataAreaId\":\"usmf\",\"CustomerGroupId\":\"10\"}"};
    bool refs_ok = PQstatus(pc) == CONNECTION_OK;
    for (int r = 0; r < 2 && refs_ok; r++) {
        char sql[300];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO \"%s\".\"%s\" SELECT * FROM jsonb_populate_record(NULL::\"%s\".\"%s\", "
                 "$1::jsonb)",
                 schema, refs[2 * r], schema, refs[2 * r]);
        const char *p[1] = {refs[2 * r + 1]};
        PGresult *res = PQexecParams(pc, sql, 1, NULL, p, NULL, NULL, 0);
        refs_ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!refs_ok)
            printf("fo push: reference rows: %s", PQerrorMessage(pc));
        PQclear(res);
    }
    PQfinish(pc);
    if (!refs_ok)
        goto out;
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/data/CustomersV3", eport);
    double t0 = dw_bench_now();
    for (long i = 0; i < events; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"CustomerAccount\":\"B-%06ld\",\"PartyType\":\"Organization\","
                 "\"CustomerGroupId\":\"10\",\"SalesCurrencyCode\":\"USD\"}",
                 i);
        long st = dw_bench_http(c, "POST", url, body, token, NULL);
        if (st != 201) {
            printf("fo push: write %ld failed with %ld\n", i, st);
            curl_easy_cleanup(c);
            goto out;
        }
    }
    curl_easy_cleanup(c);
    double tw = dw_bench_now() - t0;
    snprintf(caplisten, sizeof(caplisten), "capture.listen=127.0.0.1:%d", cport);
    const char *cargv[] = {"dw-capture",
                           "--system",
                           "fo",
                           "-X",
                           caplisten,
                           "-X",
                           mapsx,
                           "-X",
                           "capture.fo_secret=bench",
                           "-X",
                           "topics.partitions=1",
                           NULL};
    t0 = dw_bench_now();
    cap = dw_bench_spawn(DW_BIN_DIR, "dw-capture", cargv, log);
    if (cap < 0 || wait_count(rk, "fo", events, 600)) {
        printf("fo push: not every event arrived (see %s)\n", log);
        goto out;
    }
    double el = dw_bench_now() - t0;
    printf("capture fo (push)      %8ld events  %7.2f s  %9.0f events/s  (outbox filled by %ld "
           "OData creates at %.0f/s; capture start included)\n",
           events, el, (double)events / el, events, (double)events / tw);
out:
    dw_bench_stop(&cap, NULL);
    dw_bench_stop(&emu, NULL);
}

/* 2. Dataverse change tracking: a seeded table read by capture. */
static void bench_dv_pull(rd_kafka_t *rk, const char *log, long rows)
{
    char schema[64], listen[64], url[256], recs[64], dvurl[128], tok[160], comp[128];
    snprintf(schema, sizeof(schema), "bench_dv_%s", suffix);
    snprintf(recs, sizeof(recs), "accounts=%ld", rows);
    const char *sargv[] = {"dw-emulator", "seed", "--system",  "dv", "--pg", dsn,
                           "--schema",    schema, "--records", recs, NULL};
    pid_t emu = -1, cap = -1;
    if (dw_bench_run_wait(DW_BIN_DIR, "dw-emulator", sargv, log) != 0) {
        printf("dv pull: seeding failed (see %s)\n", log);
        return;
    }
    int eport = dw_bench_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", eport);
    const char *eargv[] = {"dw-emulator", "--system", "dv",       "--listen", listen,
                           "--pg",        dsn,        "--schema", schema,     NULL};
    emu = dw_bench_spawn(DW_BIN_DIR, "dw-emulator", eargv, log);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/data/v9.2/", eport);
    if (emu < 0 || dw_bench_wait_http(url, 20)) {
        printf("dv pull: the emulator did not start (see %s)\n", log);
        goto out;
    }
    snprintf(dvurl, sizeof(dvurl), "dv.url=http://127.0.0.1:%d", eport);
    snprintf(tok, sizeof(tok), "dv.token_url=http://127.0.0.1:%d/b/oauth2/v2.0/token", eport);
    snprintf(comp, sizeof(comp), "capture.maps=customers_accounts_%s", suffix);
    const char *cargv[] = {"dw-capture",
                           "--system",
                           "dv",
                           "-X",
                           dvurl,
                           "-X",
                           tok,
                           "-X",
                           "dv.client_id=dwfleet",
                           "-X",
                           "dv.client_secret=dwfleet-local-secret",
                           "-X",
                           mapsx,
                           "-X",
                           comp,
                           "-X",
                           "topics.partitions=1",
                           "-X",
                           "capture.request_budget_per_min=0",
                           NULL};
    double t0 = dw_bench_now();
    cap = dw_bench_spawn(DW_BIN_DIR, "dw-capture", cargv, log);
    if (cap < 0 || wait_count(rk, "dv", rows, 600)) {
        printf("dv pull: not every row arrived (see %s)\n", log);
        goto out;
    }
    double el = dw_bench_now() - t0;
    printf("capture dv (pull)      %8ld records %7.2f s  %9.0f records/s (snapshot round, "
           "lookups resolved; capture start included)\n",
           rows, el, (double)rows / el);
out:
    dw_bench_stop(&cap, NULL);
    dw_bench_stop(&emu, NULL);
}

/* 3. dwctl initial-sync of a seeded Customers V3 table. */
static void bench_initial_sync(const char *log, long rows)
{
    char schema[64], listen[64], url[256], recs[64], fourl[128], tok[160], map[128];
    snprintf(schema, sizeof(schema), "bench_fo_%s", suffix);
    snprintf(recs, sizeof(recs), "CustomersV3=%ld", rows);
    const char *sargv[] = {"dw-emulator", "seed", "--system",  "fo", "--pg", dsn,
                           "--schema",    schema, "--records", recs, NULL};
    int eport = dw_bench_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", eport);
    const char *eargv[] = {"dw-emulator", "--system", "fo",       "--listen", listen,
                           "--pg",        dsn,        "--schema", schema,     NULL};
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/data/", eport);
    /* the emulator first creates the schema with its row-version triggers, so the seeded rows
     * carry row versions as every F&O row does (@odata.etag W/"<n>", not 0) */
    pid_t emu = dw_bench_spawn(DW_BIN_DIR, "dw-emulator", eargv, log);
    if (emu < 0 || dw_bench_wait_http(url, 20)) {
        printf("initial sync: the emulator did not start (see %s)\n", log);
        dw_bench_stop(&emu, NULL);
        return;
    }
    dw_bench_stop(&emu, NULL);
    double t0 = dw_bench_now();
    if (dw_bench_run_wait(DW_BIN_DIR, "dw-emulator", sargv, log) != 0) {
        printf("initial sync: seeding failed (see %s)\n", log);
        return;
    }
    double ts = dw_bench_now() - t0;
    emu = dw_bench_spawn(DW_BIN_DIR, "dw-emulator", eargv, log);
    if (emu < 0 || dw_bench_wait_http(url, 20)) {
        printf("initial sync: the emulator did not start (see %s)\n", log);
        dw_bench_stop(&emu, NULL);
        return;
    }
    snprintf(fourl, sizeof(fourl), "fo.url=http://127.0.0.1:%d", eport);
    snprintf(tok, sizeof(tok), "fo.token_url=http://127.0.0.1:%d/b/oauth2/v2.0/token", eport);
    snprintf(map, sizeof(map), "customers_accounts_%s", suffix);
    const char *dargv[] = {"dwctl",  "initial-sync",
                           "--map",  map,
                           "--from", "fo",
                           "-X",     fourl,
                           "-X",     tok,
                           "-X",     "fo.client_id=dwfleet",
                           "-X",     "fo.client_secret=dwfleet-local-secret",
                           "-X",     mapsx,
                           "-X",     "topics.partitions=1",
                           NULL};
    /* CPU seconds of each process over the command: dwctl from its rusage, the emulator, the
     * broker and PostgreSQL (all its processes: shared with anything else using it) from /proc */
    double emu0 = dw_bench_proc_cpu_s(emu), kafka0 = procs_cpu("kafka.Kafka"), pg0 = procs_cpu("postgres");
    t0 = dw_bench_now();
    pid_t dw = dw_bench_spawn(DW_BIN_DIR, "dwctl", dargv, log);
    int st = 0, rc = -1;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    if (dw > 0 && wait4(dw, &st, 0, &ru) == dw)
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    double el = dw_bench_now() - t0;
    double emu_cpu = dw_bench_proc_cpu_s(emu) - emu0, kafka_cpu = procs_cpu("kafka.Kafka") - kafka0,
           pg_cpu = procs_cpu("postgres") - pg0;
    double dw_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    dw_bench_stop(&emu, NULL);
    if (rc != 0) {
        printf("initial sync: dwctl failed with %d (see %s)\n", rc, log);
        return;
    }
    double rate = (double)rows / el, per = 100000.0 / (double)rows;
    printf("initial sync fo        %8ld records %7.2f s  %9.0f records/s  goal >= %.0f: %s "
           "(seeding took %.1f s)\n",
           rows, el, rate, GOAL_SYNC, rate >= GOAL_SYNC ? "met" : "NOT met", ts);
    printf("initial sync CPU s per 100,000 records: dwctl %.2f  dw-emulator %.2f  kafka %.2f  "
           "postgresql %.2f (all of its processes)\n",
           dw_cpu * per, emu_cpu * per, kafka_cpu * per, pg_cpu * per);
}

int main(int argc, char **argv)
{
    int rc =
        dw_bench_std_args(argc, argv, "capture_bench",
                          "[--sync-only] [ROWS (default 1000000)] [EVENTS (default 2000)] "
                          "[DV_ROWS (default 20000)]\n"
                          "Capture throughput emulator -> Kafka (F&O push, Dataverse pull) "
                          "and dwctl initial-sync of ROWS Customers V3 (goal >= 20,000/s).\n"
                          "--sync-only: the initial sync alone. It prints the CPU seconds per "
                          "100,000 records of dwctl, the emulator, the broker and PostgreSQL.\n"
                          "Needs DW_PG_DSN and DW_KAFKA_BOOTSTRAP; starts the emulators and "
                          "capture itself.\n");
    if (rc >= 0)
        return rc;
    bool sync_only = argc > 1 && strcmp(argv[1], "--sync-only") == 0;
    if (sync_only) {
        argv++;
        argc--;
    }
    long rows = argc > 1 ? atol(argv[1]) : 1000000;
    long events = argc > 2 ? atol(argv[2]) : 2000;
    long dv_rows = argc > 3 ? atol(argv[3]) : 20000;
    dsn = getenv("DW_PG_DSN");
    boot = getenv("DW_KAFKA_BOOTSTRAP");
    if (!dsn || !boot || rows < 1 || events < 1 || dv_rows < 1) {
        fprintf(stderr, "capture_bench: DW_PG_DSN and DW_KAFKA_BOOTSTRAP must be set "
                        "(eval \"$(scripts/services.sh env)\"); counts must be positive\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(suffix, sizeof(suffix), "b%x", (unsigned)getpid());
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/capture_bench_maps_%s", suffix);
    snprintf(mapsx, sizeof(mapsx), "maps.dir=%s", maps_dir);
    char log[256], errstr[512];
    snprintf(log, sizeof(log), "/tmp/capture_bench_%s.log", suffix);
    make_maps();
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", boot, NULL, 0);
    /* topics appear while it waits: do not keep "unknown topic" for minutes */
    rd_kafka_conf_set(kc, "topic.metadata.refresh.interval.ms", "500", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "capture_bench: %s\n", errstr);
        return 1;
    }
    printf("capture_bench (logs: %s)\n", log);
    fflush(stdout);
    if (!sync_only) {
        bench_fo_push(rk, log, events);
        fflush(stdout);
        bench_dv_pull(rk, log, dv_rows);
        fflush(stdout);
    }
    bench_initial_sync(log, rows);
    cleanup(rk);
    rd_kafka_destroy(rk);
    curl_global_cleanup();
    return 0;
}
