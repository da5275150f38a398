/*
 * transform_bench: Kafka -> Kafka throughput of one dw-transform worker with transactions,
 * against the local broker (DW_KAFKA_BOOTSTRAP).
 *
 *  1. backlog: pre-produce N Customers V3 events (the map_bench record, 31 fields) to a map of
 *     its own (a renamed copy of customers_accounts in a scratch maps folder), start the worker
 *     binary, read the commands back read_committed; report events/s (first to last command
 *     produce time, and wall time from start to the last command visible), CPU seconds per
 *     100,000 events (getrusage of the worker, startup included);
 *  2. live: produce events at a steady rate while the worker runs; report the added latency
 *     p50/p99 (command produce time - event produce time, and command visible to a
 *     read_committed reader - event produce time);
 *  3. ceiling: in this process, the same record through tx_process (the worker's per-message
 *     work) and through bare jansson parse + serialise (map_bench's ceiling).
 * Not a test: numbers only. Topics are deleted at the end.
 *
 *   build/bin/transform_bench [EVENTS (200000)] [LIVE_RATE_PER_S (5000)] [LIVE_SECONDS (5)]
 *
 * Environment: DW_TRANSFORM_* settings reach the worker; TRANSFORM_BENCH_ARGS adds arguments
 * to its command line (e.g. "-X kafka.compression.type=none"); TRANSFORM_BENCH_BROKER_PID (the
 * local broker's process) adds the broker's CPU per 100,000 events during the backlog phase;
 * TRANSFORM_BENCH_KEEP=1 keeps the worker's log.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

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

extern char **environ;

#define PARTITIONS 6

static char map[64], dir[128], maps_dir[160], group[128];
static dw_conf_t *conf;

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "transform_bench: %s: %s\n", what, why);
    exit(1);
}

static char *slurp(const char *path)
{
    char *text = dw_file_read(path);
    if (!text)
        die(path, strerror(errno));
    return text;
}

static void write_text(const char *path, const char *text)
{
    if (dw_file_write(path, text) != 0)
        die(path, strerror(errno));
}

static void setup_maps(void)
{
    snprintf(dir, sizeof(dir), "/tmp/dwbench-XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp", strerror(errno));
    snprintf(maps_dir, sizeof(maps_dir), "%s/maps", dir);
    mkdir(maps_dir, 0700);
    if (dw_file_copy_json(DW_SOURCE_DIR "/schemas/maps", maps_dir) != 0)
        die("schemas/maps", strerror(errno));
    char *text = slurp(DW_SOURCE_DIR "/schemas/maps/customers_accounts.json");
    json_t *m = json_loads(text, 0, NULL);
    free(text);
    json_object_set_new(m, "name", json_string(map));
    char *out = json_dumps(m, JSON_INDENT(1));
    char path[400];
    snprintf(path, sizeof(path), "%s/%s.json", maps_dir, map);
    write_text(path, out);
    free(out);
    json_decref(m);
}

static pid_t start_worker(void)
{
    char path[] = DW_BIN_DIR "/dw-transform";
    char a_maps[300], a_meta[300], a_map[128], a_inst[128], a_group[200], log[200];
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", maps_dir);
    snprintf(a_meta, sizeof(a_meta), "maps.metadata_dir=%s", DW_SOURCE_DIR "/schemas/metadata");
    snprintf(a_map, sizeof(a_map), "transform.maps=%s", map);
    snprintf(a_inst, sizeof(a_inst), "transform.instance_id=%s", map);
    snprintf(a_group, sizeof(a_group), "transform.group_id=%s", group);
    snprintf(log, sizeof(log), "%s/worker.log", dir);
    char *argv[64] = {path, "-X", a_maps, "-X", a_meta, "-X", a_map, "-X", a_inst, "-X", a_group};
    int argc = 11;
    const char *extra_env = getenv("TRANSFORM_BENCH_ARGS");
    char *extra = strdup(extra_env ? extra_env : ""), *save = NULL;
    for (char *t = strtok_r(extra, " ", &save); t && argc < 63; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    free(extra);
    if (rc)
        die(path, strerror(rc));
    return pid;
}

static rd_kafka_t *reader(void)
{
    char errstr[512], g[160], topic[DW_KAFKA_TOPIC_MAX + 1];
    snprintf(g, sizeof(g), "%s-reader", map);
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = g;
    opts.isolation_level = "read_committed";
    rd_kafka_t *rk = dw_kafka_consumer_new(conf, &opts, errstr, sizeof(errstr));
    if (!rk)
        die("consumer", errstr);
    dw_kafka_topic_name(topic, sizeof(topic), map, DW_KAFKA_TOPIC_TO_DV, NULL, 0);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return rk;
}

static int event_index(const rd_kafka_message_t *m)
{
    static const char needle[] = "\"event_id\":\"";
    const char *v = m->payload;
    for (size_t i = 0; i + 12 + 36 <= m->len; i++)
        if (memcmp(v + i, needle, 12) == 0)
            return atoi(v + i + 12 + 24);
    return -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void produce(rd_kafka_t *p, const char *topic, int i)
{
    char buf[4096];
    int n = dw_bench_customer_event(buf, sizeof(buf), map, i);
    char key[32];
    int kl = snprintf(key, sizeof(key), "[\"usmf\",\"us-%07d\"]", i);
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = topic;
    m.key = key;
    m.key_len = (size_t)kl;
    m.value = buf;
    m.value_len = (size_t)n;
    char errstr[256];
    if (dw_kafka_produce(p, &m, NULL, 10000, errstr, sizeof(errstr)))
        die("produce", errstr);
}

/* ns per record of the worker's per-message step and of bare jansson. */
static void ceiling(double *engine_ns, double *bare_ns)
{
    char errstr[512], buf[4096], topic[DW_KAFKA_TOPIC_MAX + 1];
    dw_mapset_t *set =
        dw_mapset_load(maps_dir, DW_SOURCE_DIR "/schemas/metadata", NULL, errstr, sizeof(errstr));
    if (!set)
        die("maps", errstr);
    dw_kafka_topic_name(topic, sizeof(topic), map, DW_KAFKA_TOPIC_FO, NULL, 0);
    int len = dw_bench_customer_event(buf, sizeof(buf), map, 1);
    double best_e = 1e30, best_b = 1e30;
    for (int round = 0; round < 5; round++) {
        double t0 = dw_bench_now();
        for (int i = 0; i < 20000; i++) {
            tx_outcome_t out;
            if (tx_process(set, topic, buf, (size_t)len, 1 << 20, &out) ||
                out.kind != TX_OUT_COMMAND)
                die("tx_process", "the record does not map");
            tx_outcome_clear(&out);
        }
        double e = (dw_bench_now() - t0) * 1e9 / 20000;
        t0 = dw_bench_now();
        for (int i = 0; i < 20000; i++) {
            json_t *v = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
            char *s = json_dumps(v, JSON_COMPACT);
            free(s);
            json_decref(v);
        }
        double b = (dw_bench_now() - t0) * 1e9 / 20000;
        if (e < best_e)
            best_e = e;
        if (b < best_b)
            best_b = b;
    }
    dw_mapset_destroy(set);
    *engine_ns = best_e;
    *bare_ns = best_b;
}

int main(int argc, char **argv)
{
    if (dw_bench_std_args(argc, argv, "transform_bench",
                          "[EVENTS] [LIVE_RATE_PER_S] [LIVE_SECONDS]\n\n"
                          "One dw-transform worker against the local broker (DW_KAFKA_BOOTSTRAP):"
                          " backlog throughput\nwith transactions, CPU per 100,000 events, added "
                          "latency at a steady rate, and the\nin-process ceiling. Defaults: "
                          "200000 events, 5000/s for 5 s.\n\nEnvironment: DW_TRANSFORM_* "
                          "settings reach the worker; TRANSFORM_BENCH_ARGS adds\narguments to "
                          "its command line (\"-X kafka.compression.type=none\"); "
                          "TRANSFORM_BENCH_BROKER_PID\n(the broker's process) adds the broker's "
                          "CPU per 100,000 events; TRANSFORM_BENCH_KEEP=1\nkeeps the worker's "
                          "log.\n") == 0)
        return 0;
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    int rate = argc > 2 ? atoi(argv[2]) : 5000;
    int live_s = argc > 3 ? atoi(argv[3]) : 5;
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP");
    if (!bootstrap || n < 1 || rate < 1 || live_s < 1) {
        fprintf(stderr, "usage: transform_bench [EVENTS] [RATE] [SECONDS] "
                        "(DW_KAFKA_BOOTSTRAP must be set)\n");
        return 2;
    }
    static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};
    char errstr[1024];
    conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    dw_conf_set(conf, "kafka.bootstrap.servers", bootstrap, DW_CONF_SRC_ENV, "env", errstr,
                sizeof(errstr));
    dw_conf_set(conf, "kafka.linger.ms", "20", DW_CONF_SRC_FLAG, "bench", errstr, sizeof(errstr));
    snprintf(map, sizeof(map), "txbench_%ld_%ld", (long)getpid(), (long)time(NULL));
    snprintf(group, sizeof(group), "dw-transform-%s", map);
    setup_maps();

    rd_kafka_t *admin = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    char names[DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
    const char *list[DW_KAFKA_TOPIC__COUNT];
    dw_kafka_topic_spec_t specs[DW_KAFKA_TOPIC__COUNT];
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        dw_kafka_topic_name(names[k], sizeof(names[k]), map, (dw_kafka_topic_kind_t)k, NULL, 0);
        list[k] = names[k];
        specs[k] = (dw_kafka_topic_spec_t){names[k], PARTITIONS, 1, tconf, false, DW_OK};
    }
    if (dw_kafka_topics_create(admin, specs, DW_KAFKA_TOPIC__COUNT, 30000, errstr, sizeof(errstr)))
        die("topics", errstr);

    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    rd_kafka_t *prod = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    if (!prod)
        die("producer", errstr);
    const char *in_topic = names[DW_KAFKA_TOPIC_FO];

    /* 1. backlog */
    double t0 = dw_bench_now();
    for (int i = 0; i < n; i++)
        produce(prod, in_topic, i);
    dw_kafka_flush(prod, 60000, NULL, errstr, sizeof(errstr));
    double tprod = dw_bench_now() - t0;
    rd_kafka_t *rd = reader();
    rd_kafka_consumer_poll(rd, 500); /* settle the assignment at the end offsets */
    /* re-assign from the beginning: nothing was produced to to-dv yet */
    {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
        for (int p = 0; p < PARTITIONS; p++)
            rd_kafka_topic_partition_list_add(l, names[DW_KAFKA_TOPIC_TO_DV], p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rd, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    const char *broker_env = getenv("TRANSFORM_BENCH_BROKER_PID");
    long broker = broker_env ? atol(broker_env) : 0;
    double start = dw_bench_now();
    pid_t pid = start_worker();
    /* CPU of the worker, the broker and this process between the first command and the last
     * (the steady backlog phase, without the worker's startup) */
    double cpu_w0 = -1, cpu_b0 = -1, cpu_s0 = -1, cpu_w1 = -1, cpu_b1 = -1, cpu_s1 = -1;
    int got0 = 0, got1 = 0;
    int got = 0;
    int64_t first_ts = INT64_MAX, last_ts = 0;
    double last_seen = start;
    while (got < n && dw_bench_now() - start < 300) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 200);
        if (!m)
            continue;
        if (!m->err) {
            got++;
            if (cpu_w0 < 0) {
                cpu_w0 = dw_bench_proc_cpu_s(pid);
                cpu_b0 = broker > 0 ? dw_bench_proc_cpu_s(broker) : -1;
                cpu_s0 = self_cpu_s();
                got0 = got;
            }
            if ((got - got0) % 1000 == 0 || got == n) { /* /proc is read now and then */
                cpu_w1 = dw_bench_proc_cpu_s(pid);
                cpu_b1 = broker > 0 ? dw_bench_proc_cpu_s(broker) : -1;
                cpu_s1 = self_cpu_s();
                got1 = got;
            }
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            if (ts < first_ts)
                first_ts = ts;
            if (ts > last_ts)
                last_ts = ts;
            last_seen = dw_bench_now();
        }
        rd_kafka_message_destroy(m);
    }
    double wall = last_seen - start;

    /* 2. live: a steady rate, latency per event */
    int nlive = rate * live_s;
    int64_t *sent = calloc((size_t)nlive, sizeof(int64_t));
    int64_t *lat_prod = calloc((size_t)nlive, sizeof(int64_t));
    int64_t *lat_vis = calloc((size_t)nlive, sizeof(int64_t));
    int nprod = 0, nvis = 0;
    double lt0 = dw_bench_now();
    int i = 0;
    while (i < nlive || (nvis < nlive && dw_bench_now() - lt0 < live_s + 30)) {
        double due = lt0 + (double)i / rate;
        while (i < nlive && dw_bench_now() >= due) {
            sent[i] = wall_ms();
            produce(prod, in_topic, n + i);
            i++;
            due = lt0 + (double)i / rate;
        }
        rd_kafka_poll(prod, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rd, 1);
        if (!m)
            continue;
        if (!m->err) {
            int idx = event_index(m) - n;
            if (idx >= 0 && idx < nlive) {
                lat_prod[nprod++] = rd_kafka_message_timestamp(m, NULL) - sent[idx];
                lat_vis[nvis++] = wall_ms() - sent[idx];
            }
        }
        rd_kafka_message_destroy(m);
    }

    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    qsort(lat_prod, (size_t)nprod, sizeof(int64_t), cmp_i64);
    qsort(lat_vis, (size_t)nvis, sizeof(int64_t), cmp_i64);

    double engine_ns, bare_ns;
    ceiling(&engine_ns, &bare_ns);

    printf("transform_bench: one dw-transform worker, map %s (customers_accounts, 31-field "
           "Customers V3 events), %d partitions, transactions, the worker's defaults "
           "(DW_TRANSFORM_* in the environment override them)\n",
           map, PARTITIONS);
    printf("  backlog: %d events pre-produced in %.2f s; %d commands read back "
           "(read_committed)\n",
           n, tprod, got);
    double span = (double)(last_ts - first_ts) / 1000.0;
    printf("  throughput (first to last command produced):   %10.0f events/s\n",
           span > 0 ? got / span : 0.0);
    printf("  throughput (worker start to last visible):     %10.0f events/s  (%.2f s, startup "
           "and group join included)\n",
           wall > 0 ? got / wall : 0.0, wall);
    printf("  worker CPU: %.2f s in all = %.2f CPU s per 100,000 events (live phase included: "
           "%d events)\n",
           cpu, cpu * 100000.0 / (double)(got + nvis), nvis);
    int steady = got1 - got0;
    if (cpu_w0 >= 0 && steady > 0) {
        printf("  backlog phase (first to last command read), CPU s per 100,000 events: worker "
               "%.2f, this benchmark (reader) %.2f",
               (cpu_w1 - cpu_w0) * 100000.0 / steady, (cpu_s1 - cpu_s0) * 100000.0 / steady);
        if (cpu_b0 >= 0 && cpu_b1 >= 0)
            printf(", broker %.2f (pid %ld; with whatever else it serves)",
                   (cpu_b1 - cpu_b0) * 100000.0 / steady, broker);
        printf("\n");
    }
    if (nprod > 0)
        printf("  live at %d events/s for %d s: added latency (command produced - event "
               "produced) p50 %lld ms, p99 %lld ms; visible to read_committed p50 %lld ms, p99 "
               "%lld ms\n",
               rate, live_s, (long long)lat_prod[nprod / 2],
               (long long)lat_prod[(int)(nprod * 0.99)], (long long)lat_vis[nvis / 2],
               (long long)lat_vis[(int)(nvis * 0.99)]);
    printf("  in-process ceiling, same record: tx_process %.0f ns (%.0f events/s per core); bare "
           "jansson parse+dump %.0f ns (%.0f/s); ratio %.2f\n",
           engine_ns, 1e9 / engine_ns, bare_ns, 1e9 / bare_ns, engine_ns / bare_ns);
    printf("  worker exit status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));

    free(sent);
    free(lat_prod);
    free(lat_vis);
    rd_kafka_consumer_close(rd);
    rd_kafka_destroy(rd);
    rd_kafka_destroy(prod);
    dw_kafka_topics_delete(admin, list, DW_KAFKA_TOPIC__COUNT, 30000, errstr, sizeof(errstr));
    rd_kafka_destroy(admin);
    dw_conf_destroy(conf);
    const char *keep = getenv("TRANSFORM_BENCH_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        fprintf(stderr, "transform_bench: the worker's log and maps are kept in %s\n", dir);
        return got == n ? 0 : 1;
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "transform_bench: could not remove %s\n", dir);
    return got == n ? 0 : 1;
}
