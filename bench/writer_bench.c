/*
 * writer_bench: drain a backlog of write commands into the Dataverse emulator with one
 * dw-writer --target dv, against the local broker (DW_KAFKA_BOOTSTRAP) and PostgreSQL
 * (DW_PG_DSN).
 *
 *  1. N commands of the Customers V3 -> accounts map (a renamed copy, topics of its own) are
 *     made from N distinct 31-field events by the transform's own per-message step (tx_process)
 *     and produced to dw.<map>.to-dv;
 *     The ledger's tables are vacuumed (what earlier runs deleted) before the clock starts, and
 *     again after this run's rows are deleted at the end;
 *  2. dw-emulator --system dv starts on a schema of its own (service protection limits as asked),
 *     with the company, currency, customer group and payment terms the lookups bind to;
 *  3. dw-writer starts; the group's committed offsets are read every second (a progress line)
 *     until they reach the end of every partition;
 *  4. printed: records/s (writer start to the last commit, and first to last commit), the rows
 *     the emulator holds, the writer's CPU seconds and peak RSS, the emulator's CPU seconds, the
 *     writer's last counters line; with
 *     limits, the allowance (requests per second the limit grants x the records per request the
 *     writer sends: writer.chunk_max, which the bench passes explicitly, capped by
 *     writer.batch_max) and the ratio to it;
 *  5. and, every process the drain keeps busy counting on a machine of few cores, the CPU seconds
 *     (per 100,000 records) from writer start to the end of the drain of: the PostgreSQL backends
 *     serving the writer (its ledger) and the emulator, from /proc/<pid>/stat (utime + stime),
 *     told from other clients' by their client port being one of the children's sockets, looked
 *     for every second (backends_sample); the broker, the java whose pid scripts/services.sh
 *     keeps in .state/kafka/kafka.pid (shared: others' traffic counts too); and the total of
 *     these and the writer's and emulator's, with the ceiling it implies (online cores x 100,000
 *     / CPU s per 100,000 records) next to the measured rate. PostgreSQL's background processes
 *     (WAL writer, checkpointer, autovacuum) and the bench itself are not counted.
 * Not a test: numbers only. Topics and the emulator schema are removed at the end.
 *
 *   build/bin/writer_bench [COMMANDS (1000000)] [LIMITS (off)] [PARTITIONS (6)]
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "dw_bench.h"
#include "dw_config.h"
#include "dw_file.h"
#include "dw_kafka.h"
#include "transform.h"

#ifndef DW_SOURCE_DIR
#define DW_SOURCE_DIR "."
#endif
#ifndef DW_BIN_DIR
#define DW_BIN_DIR "."
#endif

#define GOAL_ABS   20000.0 /* records/s without limits */
#define GOAL_RATIO 0.90    /* of the allowance with limits */
#define CHUNK                                                                                      \
    1000 /* records per UpsertMultiple request: the writer's default                               \
            writer.chunk_max, passed explicitly (DW_WRITER_CHUNK_MAX wins) */

static char map[64], dir[128], maps_dir[160], group[128], schema[96], log_path[200];
static dw_conf_t *conf;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "writer_bench: %s: %s\n", what, why);
    exit(1);
}

static void setup_maps(void)
{
    snprintf(dir, sizeof(dir), "/tmp/dwbench-XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp", strerror(errno));
    snprintf(maps_dir, sizeof(maps_dir), "%s/maps", dir);
    snprintf(log_path, sizeof(log_path), "%s/bench.log", dir);
    mkdir(maps_dir, 0700);
    if (dw_file_copy_json(DW_SOURCE_DIR "/schemas/maps", maps_dir) != 0)
        die("schemas/maps", strerror(errno));
    char *text = dw_file_read(DW_SOURCE_DIR "/schemas/maps/customers_accounts.json");
    if (!text)
        die("customers_accounts.json", strerror(errno));
    json_t *m = json_loads(text, 0, NULL);
    free(text);
    json_object_set_new(m, "name", json_string(map));
    char *out = json_dumps(m, JSON_INDENT(1));
    char path[400];
    snprintf(path, sizeof(path), "%s/%s.json", maps_dir, map);
    if (dw_file_write(path, out) != 0)
        die(path, strerror(errno));
    free(out);
    json_decref(m);
}

/* N commands through tx_process, produced to topic. */
static void backlog(rd_kafka_t *prod, const char *topic, int n)
{
    char errstr[512], buf[4096], fo_topic[DW_KAFKA_TOPIC_MAX + 1];
    dw_mapset_t *set =
        dw_mapset_load(maps_dir, DW_SOURCE_DIR "/schemas/metadata", NULL, errstr, sizeof(errstr));
    if (!set)
        die("maps", errstr);
    dw_kafka_topic_name(fo_topic, sizeof(fo_topic), map, DW_KAFKA_TOPIC_FO, NULL, 0);
    for (int i = 0; i < n; i++) {
        int len = dw_bench_customer_event(buf, sizeof(buf), map, i);
        tx_outcome_t out;
        if (tx_process(set, fo_topic, buf, (size_t)len, 1 << 20, &out) ||
            out.kind != TX_OUT_COMMAND)
            die("tx_process", "the record does not map");
        dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
        m.topic = topic;
        m.key = out.key;
        m.key_len = out.key_len;
        m.value = out.value;
        m.value_len = out.value_len;
        if (dw_kafka_produce(prod, &m, NULL, 10000, errstr, sizeof(errstr)))
            die("produce", errstr);
        tx_outcome_clear(&out);
        if (i % 100000 == 99999)
            fprintf(stderr, "writer_bench: %d commands produced\n", i + 1);
    }
    if (dw_kafka_flush(prod, 120000, NULL, errstr, sizeof(errstr)))
        die("flush", errstr);
    dw_mapset_destroy(set);
}

/* The company, currency, customer group and payment terms the commands bind to. */
static void reference_rows(int port)
{
    static const char *const rows[][2] = {
        {"cdm_companies", "{\"cdm_companycode\":\"usmf\",\"cdm_name\":\"Contoso USA\"}"},
        {"transactioncurrencies", "{\"isocurrencycode\":\"USD\",\"currencyname\":\"US Dollar\","
                                  "\"currencysymbol\":\"$\",\"exchangerate\":1}"},
        {"msdyn_customergroups", "{\"msdyn_groupid\":\"30\",\"msdyn_company@odata.bind\":"
                                 "\"/cdm_companies(cdm_companycode='usmf')\"}"},
        {"msdyn_paymentterms", "{\"msdyn_name\":\"Net30\",\"msdyn_company@odata.bind\":"
                               "\"/cdm_companies(cdm_companycode='usmf')\"}"},
    };
    char token[4096], url[256], out[8192];
    if (dw_bench_token(port, token, sizeof(token)))
        die("emulator", "no token");
    CURL *c = curl_easy_init();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/data/v9.2/%s", port, rows[i][0]);
        long st = dw_bench_http(c, "POST", url, rows[i][1], token, out);
        if (st / 100 != 2) {
            fprintf(stderr, "writer_bench: POST %s: %ld %s\n", rows[i][0], st, out);
            die("reference rows", "rejected");
        }
    }
    curl_easy_cleanup(c);
}

/* Sum of the group's committed offsets over the partitions of topic (-1 on error). */
static long long committed(rd_kafka_t *rk, const char *topic, int partitions)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    long long sum = -1;
    if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].offset > 0)
                sum += l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return sum;
}

static long long emulator_rows(const char *dsn)
{
    PGconn *pg = PQconnectdb(dsn);
    long long n = -1;
    if (PQstatus(pg) == CONNECTION_OK) {
        char *id = PQescapeIdentifier(pg, schema, strlen(schema));
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s.account", id ? id : "\"\"");
        PQfreemem(id);
        PGresult *r = PQexec(pg, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            n = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(pg);
    return n;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The emulator's schema, and what the writer recorded for the bench's map (ledger, row ids). */
static void drop_schema(const char *dsn)
{
    PGconn *pg = PQconnectdb(dsn);
    PQsetNoticeProcessor(pg, quiet, NULL);
    if (PQstatus(pg) == CONNECTION_OK) {
        const char *p[1] = {map};
        PQclear(
            PQexecParams(pg, "DELETE FROM dw_ledger WHERE map = $1", 1, NULL, p, NULL, NULL, 0));
        PQclear(PQexecParams(pg, "DELETE FROM dw_record_ids WHERE map = $1", 1, NULL, p, NULL, NULL,
                             0));
        char *id = PQescapeIdentifier(pg, schema, strlen(schema));
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", id ? id : "\"\"");
        PQfreemem(id);
        PQclear(PQexec(pg, sql));
    }
    PQfinish(pg);
}

/* VACUUM (ANALYZE) the ledger's tables. Every run deletes its ledger rows at the end (and the
 * writer tests leave theirs); until autovacuum comes by, the dead rows and index entries stay
 * and the statistics are stale. VACUUM keeps the file's size (a table of 249 live rows was seen
 * at 924 MB of heap and 299 MB of index; only VACUUM FULL, an exclusive lock on a table other
 * tests share, would shrink it): the writer's ledger read is written so that its plan does not
 * depend on either (docs/writer.md, Benchmark). Outside any transaction. */
static void ledger_vacuum(const char *dsn)
{
    PGconn *pg = PQconnectdb(dsn);
    PQsetNoticeProcessor(pg, quiet, NULL);
    if (PQstatus(pg) == CONNECTION_OK) {
        double t = dw_bench_now();
        PGresult *r = PQexec(pg, "VACUUM (ANALYZE) dw_ledger, dw_record_ids");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fprintf(stderr, "writer_bench: VACUUM: %s", PQerrorMessage(pg));
        else
            fprintf(stderr, "writer_bench: ledger tables vacuumed in %.1f s\n", dw_bench_now() - t);
        PQclear(r);
    }
    PQfinish(pg);
}

/* Print the writer's last "counters:" log line (batches, batch sizes, write latency). */
static void last_counters(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096], last[4096] = "";
    if (!f)
        return;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "counters:"))
            snprintf(last, sizeof(last), "%s", strstr(line, "counters:"));
    fclose(f);
    if (last[0])
        printf("  writer %s", last);
}

/* ---- CPU outside the two children: their PostgreSQL backends and the broker --------------------
 */

/* The local ports of pid's TCP sockets (IPv4 and IPv6) whose remote port is rport, or of its
 * listening sockets when rport is 0; at most max. How many, or -1 when pid's fds are unreadable. */
static int tcp_ports(pid_t pid, int rport, int *ports, int max)
{
    static const char *const tables[] = {"tcp", "tcp6"};
    unsigned long inodes[2048];
    char path[64], fd[320], link[64], line[512];
    int ni = 0, n = 0;
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) && ni < (int)(sizeof(inodes) / sizeof(inodes[0]))) {
        snprintf(fd, sizeof(fd), "%s/%.255s", path, e->d_name);
        ssize_t l = readlink(fd, link, sizeof(link) - 1);
        if (l <= 0)
            continue;
        link[l] = '\0';
        if (sscanf(link, "socket:[%lu]", &inodes[ni]) == 1)
            ni++;
    }
    closedir(d);
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        snprintf(path, sizeof(path), "/proc/%ld/net/%s", (long)pid, tables[t]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        /* "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ..." */
        while (fgets(line, sizeof(line), f) && n < max) {
            unsigned lport, rp, st;
            unsigned long ino;
            if (sscanf(line,
                       " %*[0-9]: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %x %*s %*s %*s %*s %*s %lu",
                       &lport, &rp, &st, &ino) != 4)
                continue;
            if (rport ? (int)rp != rport || st == 0x0A : st != 0x0A) /* 0x0A: TCP_LISTEN */
                continue;
            for (int i = 0; i < ni; i++)
                if (inodes[i] == ino) {
                    ports[n++] = (int)lport;
                    break;
                }
        }
        fclose(f);
    }
    return n;
}

static int has_port(const int *ports, int n, int port)
{
    for (int i = 0; i < n; i++)
        if (ports[i] == port)
            return 1;
    return 0;
}

/* A PostgreSQL backend seen serving the writer or the emulator. */
typedef struct {
    pid_t pid;
    unsigned long long start; /* its starttime: the same pid later is another process */
    unsigned long long base;  /* utime + stime when the window opened (0: born in it) */
    unsigned long long last;  /* utime + stime at the last reading */
    int emu;                  /* 1: the emulator's, 0: the writer's */
} backend_t;

#define BACKENDS_MAX 512
static backend_t backends[BACKENDS_MAX];
static int n_backends, backends_dropped;

/* Read every backend seen so far again, while it still runs (a backend that exited keeps its
 * last reading). */
static void backends_refresh(void)
{
    for (int i = 0; i < n_backends; i++) {
        unsigned long long ticks, start;
        char comm[16];
        if (dw_bench_proc_cpu(backends[i].pid, &ticks, &start, comm) == 0 &&
            start == backends[i].start && strcmp(comm, "postgres") == 0)
            backends[i].last = ticks;
    }
}

/* One look at the backends serving wr and emu (-1: not running) through mon, a connection of the
 * bench's own. A backend is theirs when its client_port in pg_stat_activity is the local port of
 * one of their sockets to the server's port pg_port: on one host the client-side ports of live
 * connections to one server address are unique, so this is exact even while other tests run
 * writers and emulators against the same cluster. The application_name is not used: a DSN may
 * set its own, and every emulator and writer on the machine shares it. Backends already open when
 * the window opens (baseline 1) count from their CPU then; later ones from their birth. A
 * backend that lives less than the one second between two looks is missed. */
static void backends_sample(PGconn *mon, int pg_port, pid_t wr, pid_t emu, int baseline)
{
    int wports[256], eports[256], nw = 0, ne = 0;
    if (wr > 0)
        nw = tcp_ports(wr, pg_port, wports, 256);
    if (emu > 0)
        ne = tcp_ports(emu, pg_port, eports, 256);
    PGresult *r = PQexecParams(mon,
                               "SELECT pid, client_port FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend' AND client_port > 0",
                               0, NULL, NULL, NULL, NULL, 0);
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        pid_t pid = (pid_t)atol(PQgetvalue(r, i, 0));
        int port = atoi(PQgetvalue(r, i, 1));
        int emu_s = has_port(eports, ne, port);
        if (!emu_s && !has_port(wports, nw, port))
            continue;
        unsigned long long ticks, start;
        char comm[16];
        if (dw_bench_proc_cpu(pid, &ticks, &start, comm) || strcmp(comm, "postgres") != 0)
            continue;
        int k = 0;
        while (k < n_backends && !(backends[k].pid == pid && backends[k].start == start))
            k++;
        if (k == n_backends) {
            if (n_backends == BACKENDS_MAX) {
                backends_dropped++;
                continue;
            }
            backends[k] = (backend_t){pid, start, baseline ? ticks : 0, ticks, emu_s};
            n_backends++;
        }
    }
    PQclear(r);
    backends_refresh();
}

/* CPU seconds of the writer's (emu 0) or the emulator's (emu 1) backends in the window; *count:
 * how many, *before: how many were open when it opened. */
static double backends_cpu(int emu, int *count, int *before)
{
    unsigned long long ticks = 0;
    *count = *before = 0;
    for (int i = 0; i < n_backends; i++)
        if (backends[i].emu == emu) {
            ticks += backends[i].last - backends[i].base;
            (*count)++;
            *before += backends[i].base > 0;
        }
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* The broker scripts/services.sh started: the pid in $DW_SERVICES_STATE_DIR (default .state/ of
 * the source tree)/kafka/kafka.pid, when that process is a java that listens on the port of
 * bootstrap (the first server). The pid, or -1 with why (size bytes) saying what is missing. */
static pid_t broker_pid(const char *bootstrap, char *why, size_t size)
{
    const char *state = getenv("DW_SERVICES_STATE_DIR");
    char path[600], server[256], comm[16];
    snprintf(path, sizeof(path), "%s/kafka/kafka.pid", state ? state : DW_SOURCE_DIR "/.state");
    snprintf(server, sizeof(server), "%s", bootstrap);
    server[strcspn(server, ",")] = '\0';
    const char *colon = strrchr(server, ':');
    int bport = colon ? atoi(colon + 1) : 0;
    long pid = -1;
    unsigned long long ticks, start;
    int ports[256], n;
    FILE *f = fopen(path, "r");
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        snprintf(why, size, "no pid in %s", path);
        pid = -1;
    } else if (dw_bench_proc_cpu((pid_t)pid, &ticks, &start, comm)) {
        snprintf(why, size, "pid %ld from %s does not run", pid, path);
        pid = -1;
    } else if (strcmp(comm, "java") != 0) {
        snprintf(why, size, "pid %ld from %s is %s, not java", pid, path, comm);
        pid = -1;
    } else if ((n = tcp_ports((pid_t)pid, 0, ports, 256)) < 0 || !has_port(ports, n, bport)) {
        snprintf(why, size, "java pid %ld from %s does not listen on %s", pid, path, server);
        pid = -1;
    }
    if (f)
        fclose(f);
    return (pid_t)pid;
}

/* Requests per second a limit spec grants: "microsoft" = 6000/300; "R/W[,...]"; 0 when off. */
static double allowance_rps(const char *spec)
{
    if (strcmp(spec, "off") == 0)
        return 0;
    if (strcmp(spec, "microsoft") == 0)
        return 6000.0 / 300.0;
    double r = 0, w = 0;
    if (sscanf(spec, "%lf/%lf", &r, &w) == 2 && r > 0 && w > 0)
        return r / w;
    return -1;
}

int main(int argc, char **argv)
{
    if (dw_bench_std_args(
            argc, argv, "writer_bench",
            "[COMMANDS] [LIMITS] [PARTITIONS]\n\n"
            "Drain COMMANDS (default 1000000) Customers V3 -> accounts commands "
            "into the Dataverse\nemulator with one dw-writer; LIMITS is the "
            "emulator's --limits (off, microsoft, R/W[,C[,E_ms]];\ndefault off); "
            "PARTITIONS of the command topic (default 6). Needs DW_KAFKA_BOOTSTRAP "
            "and\nDW_PG_DSN (eval \"$(scripts/services.sh env)\"). Prints records/s, "
            "the ratio to the\nlimits' allowance, the writer's CPU and peak RSS.\n") == 0)
        return 0;
    int n = argc > 1 ? atoi(argv[1]) : 1000000;
    const char *limits = argc > 2 ? argv[2] : "off";
    int parts = argc > 3 ? atoi(argv[3]) : 6;
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP"), *dsn = getenv("DW_PG_DSN");
    double allow_rps = allowance_rps(limits);
    /* the records per request the writer sends: chunk_max (<= batch_max) */
    long chunk = CHUNK;
    if (getenv("DW_WRITER_CHUNK_MAX"))
        chunk = atol(getenv("DW_WRITER_CHUNK_MAX"));
    if (getenv("DW_WRITER_BATCH_MAX") && atol(getenv("DW_WRITER_BATCH_MAX")) < chunk)
        chunk = atol(getenv("DW_WRITER_BATCH_MAX"));
    if (chunk < 1)
        chunk = CHUNK;
    if (!bootstrap || !dsn || n < 1 || parts < 1 || allow_rps < 0) {
        fprintf(stderr, "usage: writer_bench [COMMANDS] [LIMITS] [PARTITIONS] "
                        "(DW_KAFKA_BOOTSTRAP and DW_PG_DSN must be set)\n");
        return 2;
    }
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};
    char errstr[1024];
    conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    dw_conf_set(conf, "kafka.bootstrap.servers", bootstrap, DW_CONF_SRC_ENV, "env", errstr,
                sizeof(errstr));
    dw_conf_set(conf, "kafka.linger.ms", "20", DW_CONF_SRC_FLAG, "bench", errstr, sizeof(errstr));
    snprintf(map, sizeof(map), "wrbench_%ld_%ld", (long)getpid(), (long)time(NULL));
    snprintf(group, sizeof(group), "dw-writer-%s", map);
    snprintf(schema, sizeof(schema), "bench_%s", map);
    setup_maps();

    rd_kafka_t *admin = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    if (!admin)
        die("admin", errstr);
    char names[2][DW_KAFKA_TOPIC_MAX + 1];
    const char *list[2] = {names[0], names[1]};
    dw_kafka_topic_name(names[0], sizeof(names[0]), map, DW_KAFKA_TOPIC_TO_DV, NULL, 0);
    dw_kafka_topic_name(names[1], sizeof(names[1]), map, DW_KAFKA_TOPIC_DLQ, NULL, 0);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[2] = {{names[0], parts, 1, tconf, false, DW_OK},
                                      {names[1], 1, 1, tconf, false, DW_OK}};
    if (dw_kafka_topics_create(admin, specs, 2, 30000, errstr, sizeof(errstr)))
        die("topics", errstr);

    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    rd_kafka_t *prod = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    if (!prod)
        die("producer", errstr);
    double t0 = dw_bench_now();
    backlog(prod, names[0], n);
    double tprod = dw_bench_now() - t0;
    rd_kafka_destroy(prod);

    ledger_vacuum(dsn); /* what earlier runs deleted, before the clock starts */

    /* the emulator */
    int port = dw_bench_free_port();
    char listen[64], url[256], a_limits[96], a_dvurl[128], a_tok[160];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(a_limits, sizeof(a_limits), "emulator.limits=%s", limits);
    const char *eargv[] = {"dw-emulator", "--system", "dv",   "--listen", listen,   "--pg",
                           dsn,           "--schema", schema, "-X",       a_limits, NULL};
    pid_t emu = dw_bench_spawn(DW_BIN_DIR, "dw-emulator", eargv, log_path);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/data/v9.2/", port);
    if (emu < 0 || dw_bench_wait_http(url, 20))
        die("dw-emulator did not start, see", log_path);
    reference_rows(port);

    /* the writer */
    char a_maps[300], a_meta[300], a_map[128], a_group[200], a_inst[128], a_chunk[64];
    snprintf(a_chunk, sizeof(a_chunk), "writer.chunk_max=%ld", chunk);
    snprintf(a_dvurl, sizeof(a_dvurl), "dv.url=http://127.0.0.1:%d", port);
    snprintf(a_tok, sizeof(a_tok), "dv.token_url=http://127.0.0.1:%d/b/oauth2/v2.0/token", port);
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", maps_dir);
    snprintf(a_meta, sizeof(a_meta), "maps.metadata_dir=%s", DW_SOURCE_DIR "/schemas/metadata");
    snprintf(a_map, sizeof(a_map), "writer.maps=%s", map);
    snprintf(a_group, sizeof(a_group), "writer.group_id=%s", group);
    snprintf(a_inst, sizeof(a_inst), "writer.instance_id=%s", map);
    const char *wargv[] = {"dw-writer",
                           "--target",
                           "dv",
                           "-X",
                           a_dvurl,
                           "-X",
                           a_tok,
                           "-X",
                           "dv.client_id=dwfleet",
                           "-X",
                           "dv.client_secret=dwfleet-local-secret",
                           "-X",
                           a_maps,
                           "-X",
                           a_meta,
                           "-X",
                           a_map,
                           "-X",
                           a_group,
                           "-X",
                           a_inst,
                           "-X",
                           a_chunk,
                           NULL};
    /* CPU outside the two children, from here to the end of the drain: the PostgreSQL backends
     * serving them (looked for through a connection of the bench's own, only when the server runs
     * on this machine over TCP: see backends_sample) and the broker (see broker_pid) */
    char pg_why[200] = "", broker_why[700] = "";
    const char *const mkeys[] = {"dbname", "application_name", NULL};
    const char *const mvals[] = {dsn, "writer_bench", NULL};
    PGconn *mon = PQconnectdbParams(mkeys, mvals, 1);
    int pg_port = 0;
    if (PQstatus(mon) != CONNECTION_OK) {
        snprintf(pg_why, sizeof(pg_why), "could not connect: %s", PQerrorMessage(mon));
        pg_why[strcspn(pg_why, "\n")] = '\0';
    } else if (PQhost(mon)[0] == '/' || PQhost(mon)[0] == '@') {
        snprintf(pg_why, sizeof(pg_why),
                 "the DSN connects over a Unix socket, where a backend "
                 "cannot be told by its client port");
    } else if (strcmp(PQhost(mon), "localhost") != 0 && strncmp(PQhost(mon), "127.", 4) != 0 &&
               strcmp(PQhost(mon), "::1") != 0) {
        snprintf(pg_why, sizeof(pg_why), "PostgreSQL at %.100s is not known to run here",
                 PQhost(mon));
    } else {
        pg_port = atoi(PQport(mon)[0] ? PQport(mon) : "5432");
        backends_sample(mon, pg_port, -1, emu, 1);
    }
    unsigned long long broker0 = 0, broker1 = 0, bstart = 0, bstart1 = 0;
    pid_t kpid = broker_pid(bootstrap, broker_why, sizeof(broker_why));
    if (kpid > 0 && dw_bench_proc_cpu(kpid, &broker0, &bstart, NULL)) {
        snprintf(broker_why, sizeof(broker_why), "pid %ld went away", (long)kpid);
        kpid = -1;
    }

    double start = dw_bench_now();
    pid_t wr = dw_bench_spawn(DW_BIN_DIR, "dw-writer", wargv, log_path);
    if (wr < 0)
        die("dw-writer", "could not start");

    /* progress: the group's committed offsets */
    char gconf[300];
    snprintf(gconf, sizeof(gconf), "%s", group);
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.group_id = gconf;
    rd_kafka_t *watch = dw_kafka_consumer_new(conf, &copts, errstr, sizeof(errstr));
    if (!watch)
        die("consumer", errstr);
    long long done = 0, prev = 0;
    double first_progress = 0, last_progress = start, limit_s = 600.0 + n / 500.0;
    double last_print = start;
    while (done < n && dw_bench_now() - start < limit_s) {
        sleep(1);
        int st;
        if (waitpid(wr, &st, WNOHANG) == wr) {
            wr = -1;
            fprintf(stderr, "writer_bench: dw-writer exited early (see %s)\n", log_path);
            break;
        }
        long long c = committed(watch, names[0], parts);
        if (c > done) {
            if (done == 0)
                first_progress = dw_bench_now();
            done = c;
            last_progress = dw_bench_now();
        }
        if (dw_bench_now() - last_print >= 5) {
            double el = dw_bench_now() - start;
            fprintf(stderr,
                    "writer_bench: %lld/%d committed, %.0f records/s over the last %.0f s\n", done,
                    n, (double)(done - prev) / (dw_bench_now() - last_print), el);
            prev = done;
            last_print = dw_bench_now();
        }
        if (pg_port)
            backends_sample(mon, pg_port, wr, emu, 0);
    }
    struct rusage ru;
    int wst = dw_bench_stop(&wr, &ru);
    long long rows = emulator_rows(dsn);
    struct rusage eru;
    dw_bench_stop(&emu, &eru);
    backends_refresh(); /* the backends that outlived their client for a moment */
    if (kpid > 0 && (dw_bench_proc_cpu(kpid, &broker1, &bstart1, NULL) || bstart1 != bstart)) {
        snprintf(broker_why, sizeof(broker_why), "pid %ld went away during the drain", (long)kpid);
        kpid = -1;
    }

    double wall = last_progress - start, span = last_progress - first_progress;
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    double rate = wall > 0 ? (double)done / wall : 0;
    printf("writer_bench: one dw-writer --target dv, map %s (Customers V3 -> accounts, lookups "
           "bound), %d partitions, emulator limits %s, the writer's defaults (DW_WRITER_* in "
           "the environment override them)\n",
           map, parts, limits);
    printf("  backlog: %d commands produced in %.1f s\n", n, tprod);
    printf("  drained: %lld committed, %lld rows in the emulator\n", done, rows);
    printf("  throughput (writer start to last commit):   %10.0f records/s  (%.1f s, start and "
           "group join included)\n",
           rate, wall);
    printf("  throughput (first to last commit):          %10.0f records/s\n",
           span > 0 ? (double)done / span : 0.0);
    printf("  writer CPU %.1f s = %.2f CPU s per 100,000 records; peak RSS %.1f MiB\n", cpu,
           done ? cpu * 100000.0 / (double)done : 0.0, (double)ru.ru_maxrss / 1024.0);
    double ecpu = (double)eru.ru_utime.tv_sec + eru.ru_utime.tv_usec * 1e-6 +
                  (double)eru.ru_stime.tv_sec + eru.ru_stime.tv_usec * 1e-6;
    printf("  emulator CPU %.1f s = %.2f CPU s per 100,000 records (its PostgreSQL backends, the "
           "ledger's and the broker's are not counted)\n",
           ecpu, done ? ecpu * 100000.0 / (double)done : 0.0);
    double per = done ? 100000.0 / (double)done : 0.0, total = cpu + ecpu, wbcpu = 0, ebcpu = 0;
    if (pg_port) {
        int wn, wbefore, en, ebefore;
        wbcpu = backends_cpu(0, &wn, &wbefore);
        ebcpu = backends_cpu(1, &en, &ebefore);
        total += wbcpu + ebcpu;
        printf("  writer's PostgreSQL backends (its ledger) CPU %.1f s = %.2f CPU s per 100,000 "
               "records (%d backend%s)\n",
               wbcpu, wbcpu * per, wn, wn == 1 ? "" : "s");
        printf("  emulator's PostgreSQL backends CPU %.1f s = %.2f CPU s per 100,000 records (%d "
               "backends, %d open before the writer started: counted from then)\n",
               ebcpu, ebcpu * per, en, ebefore);
        printf("  (backends: /proc/<pid>/stat of those whose client port is one of the writer's "
               "or emulator's sockets, looked for every second: one living less than a second is "
               "missed, one exiting counts to its last look%s)\n",
               backends_dropped ? "; some were dropped: too many to track" : "");
    } else {
        printf("  PostgreSQL backends' CPU: unknown (%s)\n", pg_why);
    }
    double bcpu = 0;
    if (kpid > 0) {
        bcpu = (double)(broker1 - broker0) / (double)sysconf(_SC_CLK_TCK);
        total += bcpu;
        printf("  broker CPU %.1f s = %.2f CPU s per 100,000 records (java pid %ld, from writer "
               "start to the end of the drain; the broker is shared: other clients' traffic in "
               "that time is counted too)\n",
               bcpu, bcpu * per, (long)kpid);
    } else {
        printf("  broker CPU: unknown (%s)\n", broker_why);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("  total CPU %.1f s = %.2f CPU s per 100,000 records (writer + emulator%s%s): a "
           "ceiling of %.0f records/s on %ld cores; measured %.0f records/s (first to last "
           "commit: %.0f); not counted: PostgreSQL's WAL writer, checkpointer and autovacuum, "
           "writer_bench itself\n",
           total, total * per, pg_port ? " + their PostgreSQL backends" : "",
           kpid > 0 ? " + broker" : "",
           total > 0 && done ? (double)cores * 100000.0 / (total * per) : 0.0, cores, rate,
           span > 0 ? (double)done / span : 0.0);
    last_counters(log_path);
    if (allow_rps > 0) {
        double allowed = allow_rps * (double)chunk;
        printf("  allowance: %.2f requests/s x %ld records per UpsertMultiple (writer.chunk_max) "
               "= %.0f records/s; achieved %.0f = %.0f%% (first to last commit: %.0f%%; goal >= "
               "%.0f%%)\n",
               allow_rps, chunk, allowed, rate, 100.0 * rate / allowed,
               span > 0 ? 100.0 * (double)done / span / allowed : 0.0, 100.0 * GOAL_RATIO);
    } else {
        printf("  goal >= %.0f records/s without limits: %s\n", GOAL_ABS,
               rate >= GOAL_ABS ? "met" : "not met");
    }
    printf("  writer exit status %d; log %s\n", wst, log_path);

    PQfinish(mon);
    rd_kafka_consumer_close(watch);
    rd_kafka_destroy(watch);
    dw_kafka_topics_delete(admin, list, 2, 30000, errstr, sizeof(errstr));
    rd_kafka_destroy(admin);
    drop_schema(dsn);
    ledger_vacuum(dsn); /* the rows just deleted: leave the tables clean for the next run */
    dw_conf_destroy(conf);
    int ok = done == n && rows == n;
    if (ok) { /* the log is kept when something went wrong */
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "writer_bench: could not remove %s\n", dir);
    }
    return ok ? 0 : 1;
}
