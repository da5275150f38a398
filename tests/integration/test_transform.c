/*
 * Integration tests of dw-transform against the real broker (DW_KAFKA_BOOTSTRAP): the worker runs
 * as a child process (posix_spawn) on a scratch maps folder holding the standard maps plus a copy
 * of customers_accounts under a name unique to the run, so every test has its own topics.
 * Events go in with a plain producer; commands and dead letters are read back with a
 * read_committed consumer. Scenarios: the happy path (content, key, headers), poison pill and
 * mapping error in the middle of a partition, kill -9 mid-transaction and restart, three workers
 * with a rebalance under load, a rebalance while a backlog waits in the mapping queue, hot reload
 * with a valid and an invalid map set, the worker creating the missing topics of a fresh map at
 * start, a zombie instance (same transform.instance_id) being fenced, a zombie of an older group
 * generation (stopped past its session while the group gave its partitions to another worker) being
 * fenced (KIP-447), and an event of a map that is not loaded going to dw._unknown.dlq.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dw_config.h"
#include "dw_dlq.h"
#include "dw_file.h"
#include "dw_kafka.h"
#include "dw_testutil.h"
#include "dw_time.h"

extern char **environ;

#define TIMEOUT_MS  20000
#define MAX_WORKERS 4

static const dw_conf_def_t *const tables[] = {dw_conf_common_defs, NULL};
static dw_conf_t *conf;
static rd_kafka_t *admin, *producer;
static char map[64];
static char dir[256];
static char maps_dir[300];
static char group[128];
static pid_t workers[MAX_WORKERS];
static const char *extra_arg;   /* one more -X for start_worker, or NULL */

static void write_text(const char *path, const char *text)
{
    cr_assert_eq(dw_file_write(path, text), 0, "%s: %s", path, strerror(errno));
}

/* The test's map file: customers_accounts renamed, at the given version. */
static void write_map(int version)
{
    char *text = dw_file_read(DW_SOURCE_DIR "/schemas/maps/customers_accounts.json");
    cr_assert_not_null(text);
    json_error_t jerr;
    json_t *m = json_loads(text, 0, &jerr);
    free(text);
    cr_assert_not_null(m);
    json_object_set_new(m, "name", json_string(map));
    json_object_set_new(m, "version", json_integer(version));
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.json", maps_dir, map);
    char *out = json_dumps(m, JSON_INDENT(1));
    write_text(path, out);
    free(out);
    json_decref(m);
}

static void setup(void)
{
    const char *bootstrap = getenv("DW_KAFKA_BOOTSTRAP");
    cr_assert(bootstrap && *bootstrap, "DW_KAFKA_BOOTSTRAP is not set (scripts/services.sh env)");
    char errstr[512] = "";
    conf = dw_conf_new(tables, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(dw_conf_set(conf, "kafka.bootstrap.servers", bootstrap, DW_CONF_SRC_ENV,
                             "DW_KAFKA_BOOTSTRAP", errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    admin = dw_kafka_admin_new(conf, errstr, sizeof(errstr));
    cr_assert_not_null(admin, "%s", errstr);
    cr_assert_eq(dw_kafka_wait_ready(admin, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    producer = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    cr_assert_not_null(producer, "%s", errstr);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(map, sizeof(map), "txit_%ld_%ld", (long)getpid(), (long)(ts.tv_nsec / 1000));
    snprintf(group, sizeof(group), "dw-transform-%s", map);
    snprintf(dir, sizeof(dir), "%s", dw_test_tmpdir_new());
    snprintf(maps_dir, sizeof(maps_dir), "%s/maps", dir);
    cr_assert_eq(mkdir(maps_dir, 0700), 0);
    cr_assert_eq(dw_file_copy_json(DW_SOURCE_DIR "/schemas/maps", maps_dir), 0, "%s",
                 strerror(errno));
    write_map(1);
}

static void delete_topics(void)
{
    char names[DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
    const char *list[DW_KAFKA_TOPIC__COUNT];
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        dw_kafka_topic_name(names[k], sizeof(names[k]), map, (dw_kafka_topic_kind_t)k, NULL, 0);
        list[k] = names[k];
    }
    char errstr[512] = "";
    if (dw_kafka_topics_delete(admin, list, DW_KAFKA_TOPIC__COUNT, TIMEOUT_MS, errstr,
                               sizeof(errstr)) != DW_OK)
        cr_log_warn("cleanup: %s", errstr);
}

static void teardown(void)
{
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (workers[i] > 0) {
            kill(workers[i], SIGKILL);
            waitpid(workers[i], NULL, 0);
            workers[i] = 0;
        }
    }
    if (producer) {
        rd_kafka_flush(producer, 5000);
        rd_kafka_destroy(producer);
        producer = NULL;
    }
    if (admin) {
        delete_topics();
        rd_kafka_destroy(admin);
        admin = NULL;
    }
    dw_test_tmpdir_remove();
    dw_conf_destroy(conf);
    conf = NULL;
    extra_arg = NULL;
}

TestSuite(transform_it, .init = setup, .fini = teardown, .timeout = 120);

static void create_topics(int partitions)
{
    static const char *const config[] = {"retention.ms", "3600000", NULL};
    char names[DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
    dw_kafka_topic_spec_t specs[DW_KAFKA_TOPIC__COUNT];
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        dw_kafka_topic_name(names[k], sizeof(names[k]), map, (dw_kafka_topic_kind_t)k, NULL, 0);
        specs[k] = (dw_kafka_topic_spec_t){names[k], partitions, 1, config, false, DW_OK};
    }
    char errstr[1024] = "";
    cr_assert_eq(dw_kafka_topics_create(admin, specs, DW_KAFKA_TOPIC__COUNT, TIMEOUT_MS, errstr,
                                        sizeof(errstr)),
                 DW_OK, "%s", errstr);
}

/* Start dw-transform as instance `inst` (slot i), output to <dir>/<inst>.log. */
static pid_t start_worker(int slot, const char *inst, int commit_messages, int commit_ms)
{
    char path[] = DW_BIN_DIR "/dw-transform";
    char a_maps[400], a_meta[400], a_map[128], a_inst[128], a_group[200], a_cm[64], a_ci[64],
        log[400];
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", maps_dir);
    snprintf(a_meta, sizeof(a_meta), "maps.metadata_dir=%s",
             DW_SOURCE_DIR "/schemas/metadata");
    snprintf(a_map, sizeof(a_map), "transform.maps=%s", map);
    snprintf(a_inst, sizeof(a_inst), "transform.instance_id=%s-%s", map, inst);
    snprintf(a_group, sizeof(a_group), "transform.group_id=%s", group);
    snprintf(a_cm, sizeof(a_cm), "transform.commit_messages=%d", commit_messages);
    snprintf(a_ci, sizeof(a_ci), "transform.commit_interval_ms=%d", commit_ms);
    snprintf(log, sizeof(log), "%s/%s.log", dir, inst);
    char *argv[] = {path,
                    "-X",
                    a_maps,
                    "-X",
                    a_meta,
                    "-X",
                    a_map,
                    "-X",
                    a_inst,
                    "-X",
                    a_group,
                    "-X",
                    a_cm,
                    "-X",
                    a_ci,
                    "-X",
                    "transform.stats_interval_ms=1000",
                    "-X",
                    "kafka.session.timeout.ms=6000",
                    "-X",
                    "kafka.transaction.timeout.ms=20000",
                    extra_arg ? "-X" : NULL,
                    (char *)extra_arg,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", path, strerror(rc));
    workers[slot] = pid;
    return pid;
}

/* SIGTERM and wait; the exit status. */
static int stop_worker(int slot)
{
    pid_t pid = workers[slot];
    kill(pid, SIGTERM);
    int st = 0;
    int64_t deadline = dw_time_mono_ms() + 30000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (dw_time_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        dw_time_sleep_ms(20);
    }
    workers[slot] = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void kill9_worker(int slot)
{
    kill(workers[slot], SIGKILL);
    waitpid(workers[slot], NULL, 0);
    workers[slot] = 0;
}

static bool log_contains(const char *inst, const char *needle)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s.log", dir, inst);
    char *text = dw_file_read(path);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

static void wait_log(const char *inst, const char *needle, int ms)
{
    int64_t deadline = dw_time_mono_ms() + ms;
    while (!log_contains(inst, needle)) {
        if (dw_time_mono_ms() > deadline) {
            char path[400];
            snprintf(path, sizeof(path), "%s/%s.log", dir, inst);
            char *text = dw_file_read(path);
            cr_log_error("%s", text ? text : "(no log)");
            free(text);
            cr_assert_fail("\"%s\" did not appear in the log of %s", needle, inst);
        }
        dw_time_sleep_ms(50);
    }
}

/* ---------------------------------------------------------------- events */

static char *event(int i, const char *party, const char *onhold, const char *op)
{
    char buf[4096];
    bool del = strcmp(op, "delete") == 0;
    char data[2048];
    snprintf(data, sizeof(data),
             "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"C%06d\",\"PartyType\":\"%s\","
             "\"OrganizationName\":\"Org %d\",\"CustomerGroupId\":\"30\",\"SalesCurrencyCode\":"
             "\"USD\",\"CreditLimit\":1000.25,\"CreditLimitIsMandatory\":\"Yes\","
             "\"IsOneTimeCustomer\":\"No\",\"OnHoldStatus\":\"%s\"}",
             i, party, i, onhold);
    snprintf(buf, sizeof(buf),
             "{\"version\":1,\"event_id\":\"00000000-0000-4000-8000-%012d\",\"map\":\"%s\","
             "\"source\":\"fo\",\"op\":\"%s\",\"key\":{\"dataAreaId\":\"usmf\","
             "\"CustomerAccount\":\"C%06d\"},\"data\":%s,\"source_version\":\"%d\","
             "\"source_ts\":\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00.125Z\","
             "\"correlation_id\":\"corr-%d\"}",
             i, map, op, i, del ? "null" : data, 1000 + i, i);
    return strdup(buf);
}

static void produce_raw(const char *value, const char *key, int partition)
{
    char topic[DW_KAFKA_TOPIC_MAX + 1];
    dw_kafka_topic_name(topic, sizeof(topic), map, DW_KAFKA_TOPIC_FO, NULL, 0);
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = topic;
    m.partition = partition;
    m.key = key;
    m.key_len = strlen(key);
    m.value = value;
    m.value_len = strlen(value);
    char errstr[512];
    rd_kafka_headers_t *h = dw_kafka_headers_new("origin", "test", NULL);
    cr_assert_eq(dw_kafka_produce(producer, &m, h, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

static void produce_event(int i, int partition)
{
    char *ev = event(i, "Organization", "No", "upsert");
    char key[64];
    snprintf(key, sizeof(key), "[\"usmf\",\"c%06d\"]", i);
    produce_raw(ev, key, partition);
    free(ev);
}

static void flush(void)
{
    char errstr[256];
    cr_assert_eq(dw_kafka_flush(producer, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

/* ---------------------------------------------------------------- reading back */

typedef struct got_s {
    char *key;
    char *value;
    rd_kafka_headers_t *hdrs;
    int32_t partition;
} got_t;

typedef struct reader_s {
    rd_kafka_t *rk;
    got_t *msgs;
    size_t n, cap;
} reader_t;

static void reader_open_topic(reader_t *r, const char *topic, int partitions)
{
    memset(r, 0, sizeof(*r));
    char errstr[512], g[DW_KAFKA_TOPIC_MAX + 100];
    snprintf(g, sizeof(g), "%s-reader-%s", map, topic);
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = g;
    opts.isolation_level = "read_committed";
    r->rk = dw_kafka_consumer_new(conf, &opts, errstr, sizeof(errstr));
    cr_assert_not_null(r->rk, "%s", errstr);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    cr_assert_eq(rd_kafka_assign(r->rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
}

static void reader_open(reader_t *r, dw_kafka_topic_kind_t kind, int partitions)
{
    char topic[DW_KAFKA_TOPIC_MAX + 1];
    dw_kafka_topic_name(topic, sizeof(topic), map, kind, NULL, 0);
    reader_open_topic(r, topic, partitions);
}

/* Read until the reader holds `want` messages or ms passed; then linger `extra_ms` more to catch
 * duplicates. */
static size_t reader_read(reader_t *r, size_t want, int ms, int extra_ms)
{
    int64_t deadline = dw_time_mono_ms() + ms;
    int64_t linger_end = 0;
    for (;;) {
        int64_t now = dw_time_mono_ms();
        if (r->n >= want && !linger_end)
            linger_end = now + extra_ms;
        if ((linger_end && now >= linger_end) || now >= deadline)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            if (r->n == r->cap) {
                r->cap = r->cap ? r->cap * 2 : 256;
                r->msgs = realloc(r->msgs, r->cap * sizeof(*r->msgs));
            }
            got_t *g = &r->msgs[r->n++];
            g->key = strndup(m->key ? m->key : "", m->key_len);
            g->value = strndup(m->payload ? m->payload : "", m->len);
            g->partition = m->partition;
            rd_kafka_headers_t *h = NULL;
            g->hdrs = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR
                          ? rd_kafka_headers_copy(h)
                          : NULL;
        }
        rd_kafka_message_destroy(m);
    }
    return r->n;
}

static void reader_close(reader_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->msgs[i].key);
        free(r->msgs[i].value);
        if (r->msgs[i].hdrs)
            rd_kafka_headers_destroy(r->msgs[i].hdrs);
    }
    free(r->msgs);
    rd_kafka_consumer_close(r->rk);
    rd_kafka_destroy(r->rk);
    memset(r, 0, sizeof(*r));
}

static const char *hdr(const got_t *g, const char *name)
{
    static char buf[8][512];
    static int slot;
    char *b = buf[slot++ % 8];
    if (dw_kafka_header_get(g->hdrs, name, b, 512) != DW_OK)
        return "";
    return b;
}

/* The event index of a command (from its event_id). */
static int command_index(const got_t *g)
{
    json_t *v = json_loads(g->value, 0, NULL);
    cr_assert_not_null(v, "a command is not JSON: %s", g->value);
    const char *id = json_string_value(json_object_get(v, "event_id"));
    cr_assert_not_null(id);
    int i = atoi(id + 24);
    json_decref(v);
    return i;
}

/* Every index in [0, n) exactly once among the commands. */
static void assert_exactly_once(const reader_t *r, int n)
{
    int *seen = calloc((size_t)n, sizeof(int));
    for (size_t k = 0; k < r->n; k++) {
        int i = command_index(&r->msgs[k]);
        cr_assert(i >= 0 && i < n, "unexpected event index %d", i);
        seen[i]++;
    }
    int missing = 0, dup = 0;
    for (int i = 0; i < n; i++) {
        missing += seen[i] == 0;
        dup += seen[i] > 1;
    }
    free(seen);
    cr_assert(missing == 0 && dup == 0,
              "%d event(s) without a command, %d with more than one (of %d; %zu commands)", missing,
              dup, n, r->n);
}

/* ---------------------------------------------------------------- tests */

Test(transform_it, maps_events_to_commands_with_key_headers_and_content)
{
    create_topics(2);
    start_worker(0, "a", 100, 50);
    produce_event(1, 0);
    char *out_of_scope = event(2, "Person", "No", "upsert");
    produce_raw(out_of_scope, "[\"usmf\",\"c000002\"]", 0);
    free(out_of_scope);
    char *del = event(3, "Organization", "No", "delete");
    produce_raw(del, "[\"usmf\",\"c000003\"]", 1);
    free(del);
    flush();

    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 2);
    cr_assert_eq(reader_read(&r, 2, 30000, 1500), 2, "commands: %zu", r.n);
    for (size_t k = 0; k < r.n; k++) {
        const got_t *g = &r.msgs[k];
        json_error_t jerr;
        json_t *c = json_loads(g->value, JSON_REJECT_DUPLICATES, &jerr);
        cr_assert_not_null(c);
        cr_assert_str_eq(hdr(g, DW_KAFKA_HDR_MAP), map);
        cr_assert_str_eq(hdr(g, DW_KAFKA_HDR_SOURCE), "fo");
        cr_assert_str_eq(json_string_value(json_object_get(c, "map")), map);
        cr_assert_eq(json_integer_value(json_object_get(c, "map_version")), 1);
        cr_assert_str_eq(json_string_value(json_object_get(c, "target")), "dv");
        const char *op = json_string_value(json_object_get(c, "op"));
        cr_assert_str_eq(hdr(g, DW_KAFKA_HDR_OP), op);
        json_t *tk = json_object_get(c, "target_key");
        cr_assert_str_eq(json_string_value(json_object_get(tk, "msdyn_company")), "usmf");
        if (strcmp(op, "upsert") == 0) {
            cr_assert_str_eq(g->key, "[\"usmf\",\"c000001\"]");
            cr_assert_str_eq(hdr(g, DW_KAFKA_HDR_CORRELATION_ID), "corr-1");
            json_t *f = json_object_get(c, "fields");
            cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "Org 1");
            cr_assert_eq(json_is_true(json_object_get(f, "msdyn_creditlimitismandatory")), 1);
            cr_assert_str_eq(json_string_value(json_object_get(c, "source_version")), "1001");
            cr_assert_eq(strlen(json_string_value(json_object_get(c, "content_hash"))), 64);
        } else {
            cr_assert_str_eq(op, "delete");
            cr_assert_str_eq(g->key, "[\"usmf\",\"c000003\"]");
            cr_assert_eq(json_object_size(json_object_get(c, "fields")), 0);
            cr_assert_str_eq(json_string_value(json_object_get(tk, "accountnumber")), "C000003");
        }
        json_decref(c);
    }
    reader_close(&r);
    wait_log("a", "dropped=1", 10000);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, poison_pill_and_mapping_error_go_to_the_dlq_and_the_partition_flows)
{
    create_topics(1);
    start_worker(0, "a", 100, 50);
    for (int i = 0; i < 10; i++) {
        if (i == 3) {
            produce_raw("{\"version\":1, this is not json", "poison-key", 0);
        } else if (i == 6) {
            char *ev = event(6, "Organization", "Bogus", "upsert");
            produce_raw(ev, "[\"usmf\",\"c000006\"]", 0);
            free(ev);
        } else {
            produce_event(i, 0);
        }
    }
    flush();
    reader_t r, d;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 1);
    reader_open(&d, DW_KAFKA_TOPIC_DLQ, 1);
    cr_assert_eq(reader_read(&r, 8, 30000, 500), 8);
    cr_assert_eq(reader_read(&d, 2, 10000, 500), 2);
    /* commands in partition order, the two failures missing */
    int expect[] = {0, 1, 2, 4, 5, 7, 8, 9};
    for (int k = 0; k < 8; k++)
        cr_assert_eq(command_index(&r.msgs[k]), expect[k]);

    char fo_topic[DW_KAFKA_TOPIC_MAX + 1];
    dw_kafka_topic_name(fo_topic, sizeof(fo_topic), map, DW_KAFKA_TOPIC_FO, NULL, 0);
    const got_t *p = &d.msgs[0];
    cr_assert_str_eq(p->value, "{\"version\":1, this is not json");
    cr_assert_str_eq(p->key, "poison-key");
    cr_assert_str_eq(hdr(p, "origin"), "test");
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_CLASS), DW_DLQ_CLASS_POISON);
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_REASON), "malformed_json");
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_STAGE), "transform");
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_ORIGIN_TOPIC), fo_topic);
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_ORIGIN_PART), "0");
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_ORIGIN_OFFSET), "3");
    cr_assert_str_eq(hdr(p, DW_DLQ_HDR_ATTEMPTS), "1");
    cr_assert(strlen(hdr(p, DW_DLQ_HDR_FIRST_FAILURE)) > 20);

    const got_t *m = &d.msgs[1];
    cr_assert_str_eq(m->key, "[\"usmf\",\"c000006\"]");
    cr_assert_eq(command_index(m), 6); /* the original event, unchanged */
    cr_assert_str_eq(hdr(m, DW_DLQ_HDR_CLASS), DW_DLQ_CLASS_MAPPING);
    cr_assert_str_eq(hdr(m, DW_DLQ_HDR_REASON), "unmapped_value");
    cr_assert_str_eq(hdr(m, DW_DLQ_HDR_FIELD), "OnHoldStatus");
    cr_assert_str_eq(hdr(m, DW_DLQ_HDR_ORIGIN_OFFSET), "6");
    reader_close(&r);
    reader_close(&d);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, kill_9_mid_transaction_then_restart_loses_and_duplicates_nothing)
{
    const int n = 4000;
    create_topics(3);
    start_worker(0, "a", 300, 400);
    /* events keep arriving while the worker runs; kill it in the middle */
    for (int i = 0; i < n; i++) {
        produce_event(i, i % 3);
        if (i % 100 == 99) {
            rd_kafka_flush(producer, 5000);
            dw_time_sleep_ms(15);
        }
        if (i == n / 2) {
            wait_log("a", "assigned", 15000);
            kill9_worker(0);
        }
    }
    flush();
    start_worker(0, "a", 300, 400); /* the same instance: init_transactions fences the old one */
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 3);
    reader_read(&r, (size_t)n, 60000, 2000);
    assert_exactly_once(&r, n);
    reader_close(&r);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, three_workers_rebalance_under_load_and_every_event_has_one_command)
{
    const int n = 6000;
    create_topics(6);
    start_worker(0, "w1", 200, 100);
    for (int i = 0; i < n; i++) {
        produce_event(i, i % 6);
        if (i % 200 == 199) {
            rd_kafka_flush(producer, 5000);
            dw_time_sleep_ms(20);
        }
        if (i == n / 4)
            start_worker(1, "w2", 200, 100);
        if (i == n / 2)
            start_worker(2, "w3", 200, 100);
    }
    flush();
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 6);
    reader_read(&r, (size_t)n, 60000, 2000);
    assert_exactly_once(&r, n);
    reader_close(&r);
    wait_log("w3", "assigned", 30000);
    cr_assert_eq(stop_worker(2), 0);
    cr_assert_eq(stop_worker(1), 0);
    cr_assert_eq(stop_worker(0), 0);
}

/* The worker takes messages from the consumer and maps them well ahead of what it produces (up
 * to transform.queue_messages): with a backlog and small transactions, thousands of taken but
 * unproduced messages are in its queue when partitions are revoked. None of them may be produced
 * after the partitions went (the new owner redoes them from the committed offsets). */
Test(transform_it,
     a_rebalance_while_a_backlog_waits_in_the_mapping_queue_loses_and_duplicates_nothing)
{
    const int n = 12000;
    create_topics(6);
    for (int i = 0; i < n; i++)
        produce_event(i, i % 6);
    flush();
    /* only the six partitions that hold events, so some of them move to the second worker */
    char pattern[256];
    snprintf(pattern, sizeof(pattern), "transform.subscribe_pattern=^dw\\.%s\\.fo$", map);
    extra_arg = pattern;
    start_worker(0, "b1", 40, 50); /* small transactions: the backlog drains slowly */
    wait_log("b1", "assigned", 15000);
    dw_time_sleep_ms(300);
    start_worker(1, "b2", 40, 50);
    wait_log("b1", "revoked", 15000);
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 6);
    reader_read(&r, (size_t)n, 90000, 2000);
    assert_exactly_once(&r, n);
    reader_close(&r);
    cr_assert_eq(stop_worker(1), 0);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, sighup_reloads_a_valid_map_set_and_keeps_the_old_one_when_invalid)
{
    create_topics(1);
    pid_t pid = start_worker(0, "a", 100, 50);
    produce_event(0, 0);
    flush();
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 1);
    cr_assert_eq(reader_read(&r, 1, 30000, 0), 1);

    write_map(2);
    kill(pid, SIGHUP);
    wait_log("a", "maps reloaded", 15000);
    produce_event(1, 0);
    flush();
    cr_assert_eq(reader_read(&r, 2, 30000, 0), 2);

    char path[512];
    snprintf(path, sizeof(path), "%s/%s.json", maps_dir, map);
    write_text(path, "{\"name\": \"broken\", ");
    kill(pid, SIGHUP);
    wait_log("a", "reload failed, keeping the maps loaded before", 15000);
    produce_event(2, 0);
    flush();
    cr_assert_eq(reader_read(&r, 3, 30000, 0), 3);
    int versions[3];
    for (int k = 0; k < 3; k++) {
        json_t *c = json_loads(r.msgs[k].value, 0, NULL);
        versions[k] = (int)json_integer_value(json_object_get(c, "map_version"));
        json_decref(c);
    }
    cr_assert_eq(versions[0], 1);
    cr_assert_eq(versions[1], 2);
    cr_assert_eq(versions[2], 2);
    cr_assert_eq(kill(pid, 0), 0, "the worker died on an invalid map set");
    reader_close(&r);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, starts_on_a_fresh_map_by_creating_its_missing_topics)
{
    /* no create_topics(): the worker makes the five of the map (and dw._unknown.dlq if needed) */
    extra_arg = "topics.partitions=2";
    start_worker(0, "a", 100, 50);
    wait_log("a", "missing topic(s) of 6", 20000);
    wait_log("a", "subscribed", 30000);
    char errstr[512], topic[DW_KAFKA_TOPIC_MAX + 1];
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        int parts = 0;
        dw_kafka_topic_name(topic, sizeof(topic), map, (dw_kafka_topic_kind_t)k, NULL, 0);
        cr_assert_eq(
            dw_kafka_topic_partitions(admin, topic, TIMEOUT_MS, &parts, errstr, sizeof(errstr)),
            DW_OK, "%s", errstr);
        cr_assert_eq(parts, 2, "%s", topic);
        cr_assert(log_contains("a", topic), "the log does not name %s", topic);
    }
    cr_assert_eq(dw_kafka_topic_partitions(admin, "dw._unknown.dlq", TIMEOUT_MS, &(int){0}, errstr,
                                           sizeof(errstr)),
                 DW_OK, "%s", errstr);
    for (int i = 0; i < 4; i++)
        produce_event(i, i % 2);
    flush();
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 2);
    reader_read(&r, 4, 30000, 300);
    assert_exactly_once(&r, 4);
    reader_close(&r);
    cr_assert_eq(stop_worker(0), 0);
}

Test(transform_it, a_zombie_with_the_same_instance_id_is_fenced_and_nothing_is_duplicated)
{
    const int n = 3000;
    create_topics(2);
    start_worker(0, "a", 100, 50);
    wait_log("a", "assigned", 15000);
    for (int i = 0; i < n / 2; i++)
        produce_event(i, i % 2);
    flush();
    /* the same transactional.id in another process: its init_transactions bumps the epoch, the
     * first one's next transactional call fails as fenced and it exits 1 */
    pid_t old = workers[0];
    workers[0] = 0;
    workers[1] = old;
    start_worker(0, "a", 100, 50);
    for (int i = n / 2; i < n; i++) {
        produce_event(i, i % 2);
        if (i % 100 == 99) {
            rd_kafka_flush(producer, 5000);
            dw_time_sleep_ms(10);
        }
    }
    flush();
    int st = 0;
    int64_t deadline = dw_time_mono_ms() + 30000;
    while (waitpid(old, &st, WNOHANG) == 0) {
        cr_assert(dw_time_mono_ms() < deadline, "the zombie did not exit");
        dw_time_sleep_ms(50);
    }
    workers[1] = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "the zombie's status: %d", st);
    cr_assert(log_contains("a", "enced"), "no fencing in the log");
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 2);
    reader_read(&r, (size_t)n, 60000, 1500);
    assert_exactly_once(&r, n);
    reader_close(&r);
    cr_assert_eq(kill(workers[0], 0), 0, "the newer instance died");
    cr_assert_eq(stop_worker(0), 0);
}

static bool exited(pid_t pid, int *st)
{
    return waitpid(pid, st, WNOHANG) == pid;
}

Test(transform_it, a_worker_of_an_older_group_generation_cannot_commit_and_nothing_is_duplicated)
{
    const int n = 3000;
    create_topics(2);
    /* A keeps its transaction open for seconds, so it is stopped in the middle of one */
    /* (10 s: SIGSTOP comes 1.2 s after the events are flushed, and must come before A commits
     * even on a loaded machine) */
    pid_t a = start_worker(0, "a", 100000, 10000);
    wait_log("a", "assigned 4 partition(s)", 15000);
    for (int i = 0; i < n / 3; i++)
        produce_event(i, i % 2);
    flush();
    dw_time_sleep_ms(1200); /* A has mapped and produced them, uncommitted */
    cr_assert_eq(kill(a, SIGSTOP), 0);
    /* B joins; the group waits for A until A's session (6 s) expires, then B owns everything
     * and starts at the offsets committed before A's open transaction */
    start_worker(1, "b", 100, 50);
    wait_log("b", "assigned 4 partition(s)", 25000);
    for (int i = n / 3; i < n; i++) {
        produce_event(i, i % 2);
        if (i % 200 == 199)
            rd_kafka_flush(producer, 5000);
    }
    flush();
    /* A wakes up with a transaction of the old generation: it must not commit it. Either
     * librdkafka notices the expired session first (assignment lost: abort, rewind, rejoin) or the
     * loop's commit comes first and the group coordinator refuses offsets of the old generation
     * (KIP-447: the transaction fails, abort or fenced exit). */
    cr_assert_eq(kill(a, SIGCONT), 0);
    int st = 0;
    bool gone = false;
    int64_t deadline = dw_time_mono_ms() + 20000;
    while (!(gone = exited(a, &st)) && !log_contains("a", "aborting the transaction")) {
        cr_assert(dw_time_mono_ms() < deadline, "the zombie neither aborted nor exited");
        dw_time_sleep_ms(50);
    }
    if (gone) {
        workers[0] = 0;
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "the zombie's status: %d", st);
        cr_assert(log_contains("a", "enced"), "the zombie exited but not as fenced");
    }
    /* its first transaction (the one it was stopped in) never committed: every counters line
     * before the abort says txn_committed=0 */
    char path[400];
    snprintf(path, sizeof(path), "%s/a.log", dir);
    char *text = dw_file_read(path);
    cr_assert_not_null(text);
    if (getenv("DW_TEST_SHOW_LOG"))
        fprintf(stderr, "%s", text);
    char *end = strstr(text, gone ? "enced" : "aborting the transaction");
    cr_assert_not_null(end);
    *end = '\0';
    cr_assert_null(strstr(text, "txn_committed=1"), "the old generation's transaction committed");
    free(text);
    reader_t r;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 2);
    reader_read(&r, (size_t)n, 30000, 1500);
    assert_exactly_once(&r, n);
    reader_close(&r);
    cr_assert_eq(stop_worker(1), 0);
    if (!gone)
        stop_worker(0); /* it rejoined: its status is its own business after the fence */
}

Test(transform_it, an_event_of_a_map_that_is_not_loaded_goes_to_the_unknown_dlq)
{
    create_topics(1);
    /* a capture topic of a map no worker has: the worker subscribes by pattern and meets it */
    char ghost[80], ghost_topic[DW_KAFKA_TOPIC_MAX + 1], pattern[256];
    snprintf(ghost, sizeof(ghost), "%sghost", map);
    dw_kafka_topic_name(ghost_topic, sizeof(ghost_topic), ghost, DW_KAFKA_TOPIC_FO, NULL, 0);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t spec = {ghost_topic, 1, 1, tconf, false, DW_OK};
    char errstr[1024] = "";
    cr_assert_eq(dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    snprintf(pattern, sizeof(pattern), "transform.subscribe_pattern=^dw\\.%s[a-z0-9_]*\\.[fd][ov]$",
             map);
    extra_arg = pattern;
    start_worker(0, "a", 100, 50);
    wait_log("a", "subscribed to the capture topics matching", 20000);

    char value[1024];
    snprintf(value, sizeof(value),
             "{\"version\":1,\"event_id\":\"00000000-0000-4000-8000-000000000999\",\"map\":\"%s\","
             "\"source\":\"fo\",\"op\":\"upsert\",\"key\":{\"dataAreaId\":\"usmf\"},"
             "\"data\":{\"dataAreaId\":\"usmf\"},\"source_version\":\"1\","
             "\"source_ts\":\"2024-03-01T10:00:00Z\",\"capture_ts\":\"2024-03-01T10:00:00Z\","
             "\"correlation_id\":\"ghost\"}",
             ghost);
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = ghost_topic;
    m.partition = 0;
    m.key = "ghost-key";
    m.key_len = strlen(m.key);
    m.value = value;
    m.value_len = strlen(value);
    cr_assert_eq(dw_kafka_produce(producer, &m, dw_kafka_headers_new("origin", "test", NULL), 5000,
                                  errstr, sizeof(errstr)),
                 DW_OK, "%s", errstr);
    produce_event(0, 0); /* and the loaded map flows beside it */
    flush();

    reader_t r, d;
    reader_open(&r, DW_KAFKA_TOPIC_TO_DV, 1);
    reader_read(&r, 1, 30000, 300);
    assert_exactly_once(&r, 1);
    int parts = 0;
    cr_assert_eq(dw_kafka_topic_partitions(admin, "dw._unknown.dlq", TIMEOUT_MS, &parts, errstr,
                                           sizeof(errstr)),
                 DW_OK, "%s", errstr);
    reader_open_topic(&d, "dw._unknown.dlq", parts);
    /* the topic is shared: ours is the one whose origin is the ghost topic */
    const got_t *g = NULL;
    int64_t deadline = dw_time_mono_ms() + 30000;
    while (!g && dw_time_mono_ms() < deadline) {
        reader_read(&d, d.n + 1, 500, 0);
        for (size_t k = 0; k < d.n && !g; k++)
            if (strcmp(hdr(&d.msgs[k], DW_DLQ_HDR_ORIGIN_TOPIC), ghost_topic) == 0)
                g = &d.msgs[k];
    }
    cr_assert_not_null(g, "no dead letter from %s in dw._unknown.dlq", ghost_topic);
    cr_assert_str_eq(g->value, value, "the original message, unchanged");
    cr_assert_str_eq(g->key, "ghost-key");
    cr_assert_str_eq(hdr(g, "origin"), "test");
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_CLASS), DW_DLQ_CLASS_UNKNOWN_MAP);
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_REASON), "unknown_map");
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_FIELD), "map");
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_STAGE), "transform");
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_ORIGIN_PART), "0");
    cr_assert_str_eq(hdr(g, DW_DLQ_HDR_ORIGIN_OFFSET), "0");
    size_t ours = 0;
    for (size_t k = 0; k < d.n; k++)
        ours += strcmp(hdr(&d.msgs[k], DW_DLQ_HDR_ORIGIN_TOPIC), ghost_topic) == 0;
    cr_assert_eq(ours, 1, "one dead letter, once");
    reader_close(&r);
    reader_close(&d);
    cr_assert_eq(stop_worker(0), 0);
    const char *list[] = {ghost_topic};
    dw_kafka_topics_delete(admin, list, 1, TIMEOUT_MS, errstr, sizeof(errstr));
}
