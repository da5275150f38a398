/*
 * Integration tests of dw-writer against the real broker and PostgreSQL and the emulators:
 * commands are produced to dw.<map>.to-dv|to-fo of a copy of the currencies map renamed for the
 * test (its own topics, groups and ledger rows), the writer runs as a child process and the rows
 * are read back from the emulator. Dataverse (writer_dv): the happy path (rows, ledger, offsets),
 * one invalid record among 1,000 plus a poison pill (only they are dead-lettered, with the
 * writer's headers; offsets committed), echo and stale commands not written, a 503 outage with
 * on_unavailable=queue (nothing lost, resumes by itself) and with fail (dead letters after the
 * budget), a 429 storm (retried, nothing dead-lettered), memory bounded by pausing, kill -9 in
 * mid-stream and restart (every record present once), a second instance joining under load, a
 * missing lookup retried until the referenced record arrives (or dead-lettered) while other keys
 * flow. F&O (writer_fo): creates and updates,
 * a delete by Dataverse row id resolved through the ledger (and one that cannot be), and a
 * bidirectional exchange through both writers where each change is written once (no ping-pong).
 * Every writer's log is checked for sanitizer reports when it stops. The writer process, its
 * log, committed offsets, dead letters and ledger rows are handled by tests/support/dw_testwriter.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_kafka.h"
#include "dw_testemu.h"
#include "dw_testkafka.h"
#include "dw_testutil.h"
#include "dw_testwriter.h"
#include "dw_time.h"

#define ADMIN      "test-admin-secret"
#define TIMEOUT_MS 20000
#define HASH_A     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HASH_C     "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static dw_conf_t *conf;
static rd_kafka_t *admin, *producer;
static dw_testemu_t *emu, *emu2; /* emu2: the other system's, when a test needs both */
static char suffix[64], map[96], topic[160], dlq[160], group[160];
static char pmap[96]; /* the products map of the test (its topics only made by the test that
                         uses it) */
static char dir[256], maps_dir[300], wlog[400];
static pid_t writer = -1;
static const char *sys = "dv";        /* the target of the suite */
static int32_t produce_partition = 0; /* RD_KAFKA_PARTITION_UA: by key */
static int committed_partitions = 1;  /* partitions whose committed offsets wait_committed sums */

static void setup(void)
{
    bool fo = strcmp(sys, "fo") == 0;
    char errstr[1024] = "";
    cr_assert_eq(dw_testkafka_clients(&conf, &admin, &producer, errstr, sizeof(errstr)), 0, "%s",
                 errstr);

    snprintf(suffix, sizeof(suffix), "%s", dw_test_unique("wr"));
    snprintf(map, sizeof(map), "currencies_%s", suffix);
    snprintf(pmap, sizeof(pmap), "products_%s", suffix);
    snprintf(topic, sizeof(topic), "dw.%s.to-%s", map, sys);
    snprintf(dlq, sizeof(dlq), "dw.%s.dlq", map);
    snprintf(group, sizeof(group), "dw-writer-%s", suffix);
    snprintf(dir, sizeof(dir), "%s", dw_test_tmpdir_new());
    snprintf(maps_dir, sizeof(maps_dir), "%s/maps", dir);
    snprintf(wlog, sizeof(wlog), "%s/writer.log", dir);
    const char *bases[] = {"currencies", NULL};
    cr_assert_eq(dw_test_maps_copy(maps_dir, bases, suffix, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    /* products, renamed by hand (its entity set has the map's name), looking up the currencies
     * map of the test */
    json_error_t jerr;
    json_t *pm = json_load_file(DW_SOURCE_DIR "/schemas/maps/products.json", 0, &jerr);
    cr_assert_not_null(pm, "%s", jerr.text);
    json_object_set_new(pm, "name", json_string(pmap));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(pm, "fields"), i, f)
    {
        json_t *lk = json_object_get(json_object_get(f, "transform"), "lookup");
        const char *lm = json_string_value(json_object_get(lk, "map"));
        if (lm && strcmp(lm, "currencies") == 0)
            json_object_set_new(lk, "map", json_string(map));
    }
    char ppath[512];
    snprintf(ppath, sizeof(ppath), "%s/%s.json", maps_dir, pmap);
    cr_assert_eq(json_dump_file(pm, ppath, JSON_INDENT(1)), 0);
    json_decref(pm);

    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[2] = {{topic, 1, 1, tconf, false, DW_OK},
                                      {dlq, 1, 1, tconf, false, DW_OK}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 2, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);

    const char *args[] = {"--limits", "off", "-X", "emulator.admin_secret=" ADMIN, NULL};
    emu = dw_testemu_start(sys, fo ? "emu_wrfo" : "emu_wr", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
}

static void stop_writer_kill(void)
{
    if (writer > 0) {
        kill(writer, SIGKILL);
        waitpid(writer, NULL, 0);
        writer = -1;
    }
}

static void teardown(void)
{
    stop_writer_kill();
    dw_testemu_destroy(emu);
    dw_testemu_destroy(emu2);
    emu = emu2 = NULL;
    if (producer) {
        rd_kafka_flush(producer, 5000);
        rd_kafka_destroy(producer);
        producer = NULL;
    }
    if (admin) {
        char other[200];
        snprintf(other, sizeof(other), "dw.%s.to-%s", map, strcmp(sys, "fo") == 0 ? "dv" : "fo");
        char ptopic[200], pdlq[200];
        snprintf(ptopic, sizeof(ptopic), "dw.%s.to-dv", pmap);
        snprintf(pdlq, sizeof(pdlq), "dw.%s.dlq", pmap);
        const char *names[] = {topic, dlq, other, ptopic, pdlq};
        char errstr[512];
        dw_kafka_topics_delete(admin, names, 5, TIMEOUT_MS, errstr, sizeof(errstr));
        rd_kafka_destroy(admin);
        admin = NULL;
    }
    dw_testwriter_ledger_clear(map);
    dw_test_tmpdir_remove();
    dw_conf_destroy(conf);
    conf = NULL;
    produce_partition = 0;
    committed_partitions = 1;
}

static void setup_dv(void)
{
    sys = "dv";
    setup();
}

static void setup_fo(void)
{
    sys = "fo";
    setup();
}

TestSuite(writer_dv, .init = setup_dv, .fini = teardown, .timeout = 90);
TestSuite(writer_fo, .init = setup_fo, .fini = teardown, .timeout = 90);

/* ---------------------------------------------------------------- helpers */

static void start_writer_on(const char *target, dw_testemu_t *e, const char *const *extra)
{
    char g[200], errstr[512];
    snprintf(g, sizeof(g), "%s%s", group, strcmp(target, "fo") == 0 ? "-fo" : "");
    dw_testwriter_t w;
    dw_testwriter_init(&w, wlog, maps_dir, g, map);
    cr_assert_eq(dw_testwriter_start(&w, target, e, extra, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    writer = w.pid;
}

static void start_writer(const char *const *extra)
{
    start_writer_on(sys, emu, extra);
}

static void dump_log(void);

static int stop_writer(void)
{
    dw_testwriter_t w;
    dw_testwriter_init(&w, wlog, maps_dir, group, map);
    w.pid = writer;
    bool sanitizer = false;
    int st = dw_testwriter_stop(&w, 30000, &sanitizer);
    writer = -1;
    if (sanitizer)
        dump_log();
    cr_assert_not(sanitizer, "dw-writer: sanitizer report");
    return st;
}

static bool log_has(const char *needle)
{
    dw_testwriter_t w;
    dw_testwriter_init(&w, wlog, maps_dir, group, map);
    return dw_testwriter_log_has(&w, needle);
}

/* The value of counter name in the writer's last counters line (-1: none). */
static long log_counter(const char *name)
{
    dw_testwriter_t w;
    dw_testwriter_init(&w, wlog, maps_dir, group, map);
    return dw_testwriter_log_counter(&w, name);
}

static void dump_log(void)
{
    dw_testwriter_t w;
    dw_testwriter_init(&w, wlog, maps_dir, group, map);
    char *text = dw_testwriter_log_tail(&w, 6000);
    cr_log_info("writer log (tail):\n%s", text);
    free(text);
}

/* Produce an upsert of currency code (the key) with name and symbol. */
static void produce_cmd(const char *code, const char *version, const char *hash, const char *name,
                        const char *symbol)
{
    char value[2048];
    snprintf(value, sizeof(value),
             "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"dv\",\"op\":\"upsert\","
             "\"target_key\":{\"isocurrencycode\":\"%s\"},\"fields\":{\"isocurrencycode\":\"%s\","
             "\"currencyname\":\"%s\",\"currencysymbol\":\"%s\",\"exchangerate\":1.0},"
             "\"source_version\":\"%s\",\"content_hash\":\"%s\",\"correlation_id\":\"it-%s\","
             "\"source_ts\":\"2024-01-01T00:00:00Z\"}",
             map, code, code, name, symbol, version, hash, code);
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = topic;
    m.partition = 0;
    m.key = code;
    m.key_len = strlen(code);
    m.value = value;
    m.value_len = strlen(value);
    char errstr[512];
    cr_assert_eq(dw_kafka_produce(producer, &m, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

static void produce_to(const char *to, const char *key, const char *value)
{
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = to;
    m.partition = produce_partition;
    m.key = key;
    m.key_len = strlen(key);
    m.value = value;
    m.value_len = strlen(value);
    char errstr[512];
    cr_assert_eq(dw_kafka_produce(producer, &m, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

static void produce_raw(const char *key, const char *value)
{
    produce_to(topic, key, value);
}

static void flush_producer(void)
{
    cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* The test's currencies at the Dataverse emulator (dw_testwriter_currency_*). */
static long count_rows(const char *sym)
{
    return dw_testwriter_currency_count(emu, "dv", sym);
}

static bool wait_rows(const char *sym, long want, int ms)
{
    long n = -1;
    bool ok = dw_testwriter_currency_wait(emu, "dv", sym, want, ms, &n);
    if (!ok)
        cr_log_warn("rows with symbol %s: %ld, want %ld", sym, n, want);
    return ok;
}

static const char *row_name(const char *code, char *out, size_t size)
{
    return dw_testwriter_currency_name(emu, "dv", code, out, size);
}

/* The currencyname of code, into out ("" when absent). */
static void admin_post(const char *path, const char *body)
{
    const char *h[] = {"Authorization: Bearer " ADMIN, NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", path, body, h);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
}

/* The group's committed offset of partition 0 of the command topic (-1: none); with
 * committed_partitions > 1, the sum over the partitions (those without one count 0). */
static int64_t committed_offset(void)
{
    char g[200];
    snprintf(g, sizeof(g), "%s%s", group, strcmp(sys, "fo") == 0 ? "-fo" : ""); /* fo's group */
    return dw_testwriter_committed(g, topic, committed_partitions);
}

static bool wait_committed(int64_t want, int ms)
{
    int64_t deadline = dw_time_mono_ms() + ms, off = -1;
    while (dw_time_mono_ms() < deadline) {
        if ((off = committed_offset()) == want)
            return true;
        dw_time_sleep_ms(200);
    }
    cr_log_warn("committed offset %lld, want %lld", (long long)off, (long long)want);
    return false;
}

typedef dw_testwriter_dl_t dl_t;

/* Read up to max dead letters (partition 0, from the start) for up to ms. */
static size_t read_dlq(dl_t *out, size_t max, size_t want, int ms)
{
    return dw_testwriter_read_dlq(dlq, out, max, want, ms);
}

static void free_dl(dl_t *d, size_t n)
{
    dw_testwriter_dl_free(d, n);
}

static long ledger_rows(void)
{
    return dw_testwriter_ledger_rows(map);
}

/* ---------------------------------------------------------------- tests */

Test(writer_dv, writes_commands_as_rows_and_records_the_ledger)
{
    char code[16];
    for (int i = 0; i < 300; i++) {
        snprintf(code, sizeof(code), "A%04d", i);
        produce_cmd(code, "10", HASH_A, "first", "hp");
    }
    snprintf(code, sizeof(code), "A%04d", 7);
    produce_cmd(code, "11", HASH_B, "second", "hp"); /* an update of one of them */
    flush_producer();
    start_writer(NULL);
    bool ok = wait_rows("hp", 300, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok);
    char name[64];
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (strcmp(row_name("A0007", name, sizeof(name)), "second") != 0 &&
           dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(100);
    cr_assert_str_eq(name, "second");
    cr_assert(wait_committed(301, TIMEOUT_MS));
    cr_assert_eq(ledger_rows(), 300);
    cr_assert_eq(stop_writer(), 0);
    long written = log_counter("written");
    cr_assert(written == 300 || written == 301, "counters at exit: written=%ld", written);
}

Test(writer_dv, one_invalid_record_among_1000_is_the_only_dead_letter)
{
    char code[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(code, sizeof(code), "B%04d", i);
        /* currencysymbol is at most 10 characters */
        produce_cmd(code, "5", HASH_A, "batch", i == 500 ? "much-too-long-symbol" : "bt");
    }
    produce_raw("P1", "{\"not\":\"a command\"}"); /* a poison pill at offset 1000 */
    flush_producer();
    start_writer(NULL);
    bool ok = wait_rows("bt", 999, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok);
    dl_t d[4];
    size_t n = read_dlq(d, 4, 2, 15000);
    cr_assert_eq(n, 2, "dead letters: %zu", n);
    if (strcmp(d[0].key, "P1") == 0) { /* the poison pill is dead-lettered as it is read */
        dl_t t = d[0];
        d[0] = d[1];
        d[1] = t;
    }
    cr_assert_str_eq(d[0].key, "B0500");
    cr_assert_str_eq(d[0].cls, "validation");
    cr_assert_str_eq(d[0].stage, "writer");
    cr_assert_str_eq(d[0].status, "400");
    cr_assert_str_eq(d[0].offset, "500");
    cr_assert_str_eq(d[0].attempts, "1");
    cr_assert_str_eq(d[0].instance, "it-1");
    cr_assert(strstr(d[0].value, "much-too-long-symbol"), "the original value unchanged");
    cr_assert_str_eq(d[1].key, "P1");
    cr_assert_str_eq(d[1].cls, "poison");
    cr_assert_str_eq(d[1].offset, "1000");
    free_dl(d, n);
    cr_assert(wait_committed(1001, TIMEOUT_MS));
    cr_assert_eq(stop_writer(), 0);
}

Test(writer_dv, echoes_and_stale_versions_are_not_written)
{
    produce_cmd("E1", "10", HASH_A, "original", "ec");
    flush_producer();
    start_writer(NULL);
    cr_assert(wait_rows("ec", 1, TIMEOUT_MS));
    /* someone edits the row at the target: a rewrite would be visible */
    const char *h[] = {"If-Match: *", NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "PATCH", "transactioncurrencies(isocurrencycode='E1')",
                       "{\"currencyname\":\"edited\"}", h);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
    /* the same content again (an echo), newer version: not written, but version 20 is recorded */
    produce_cmd("E1", "20", HASH_A, "original", "ec");
    produce_cmd("E2", "1", HASH_A, "marker", "ec");
    flush_producer();
    cr_assert(wait_rows("ec", 2, TIMEOUT_MS));
    /* an older version with other content (a snapshot older than the live change; newer than
     * the first write, older than the echo) */
    produce_cmd("E1", "15", HASH_B, "stale", "ec");
    produce_cmd("E3", "1", HASH_A, "marker", "ec");
    flush_producer();
    cr_assert(wait_rows("ec", 3, TIMEOUT_MS));
    char name[64];
    cr_assert_str_eq(row_name("E1", name, sizeof(name)), "edited");
    cr_assert(wait_committed(5, TIMEOUT_MS));
    cr_assert_eq(stop_writer(), 0);
    cr_assert_eq(log_counter("echo_dropped"), 1, "echo counted");
    cr_assert_eq(log_counter("stale_dropped"), 1, "stale counted");
    cr_assert_eq(log_counter("written"), 3);
}

Test(writer_dv, outage_with_queue_loses_nothing_and_resumes)
{
    start_writer(NULL);
    admin_post("/_admin/faults", "{\"unavailable\":true}");
    char code[16];
    for (int i = 0; i < 100; i++) {
        snprintf(code, sizeof(code), "Q%04d", i);
        produce_cmd(code, "1", HASH_A, "queued", "qu");
    }
    flush_producer();
    /* the outage: every write answered 503, retried with backoff. It lasts at least 3 s and
     * until the writer has counted retries (a slow machine may take longer than 3 s to join the
     * group and make its first write), so the queueing path is always exercised */
    int64_t until = dw_time_mono_ms() + 3000, deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while ((dw_time_mono_ms() < until || log_counter("retries") < 3) &&
           dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(100);
    long retried = log_counter("retries");
    cr_assert_geq(retried, 3, "the writer retried during the outage (%ld)", retried);
    admin_post("/_admin/faults", "{\"unavailable\":false}");
    bool ok = wait_rows("qu", 100, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok);
    cr_assert(wait_committed(100, TIMEOUT_MS));
    dl_t d[2];
    cr_assert_eq(read_dlq(d, 2, 1, 1500), 0, "nothing dead-lettered");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_gt(log_counter("retries"), 0);
}

Test(writer_dv, outage_with_fail_dead_letters_after_the_budget)
{
    char ou[200];
    snprintf(ou, sizeof(ou), "maps.%s.on_unavailable=fail", map);
    const char *extra[] = {"-X", ou, "-X", "writer.retry_budget=3", NULL};
    admin_post("/_admin/faults", "{\"unavailable\":true}");
    start_writer(extra);
    char code[16];
    for (int i = 0; i < 20; i++) {
        snprintf(code, sizeof(code), "F%04d", i);
        produce_cmd(code, "1", HASH_A, "failing", "fa");
    }
    flush_producer();
    dl_t d[24];
    size_t n = read_dlq(d, 24, 20, TIMEOUT_MS);
    if (n != 20)
        dump_log();
    cr_assert_eq(n, 20);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(d[i].cls, "unavailable");
        cr_assert_str_eq(d[i].status, "503");
        cr_assert_str_eq(d[i].attempts, "3");
    }
    free_dl(d, n);
    cr_assert(wait_committed(20, TIMEOUT_MS));
    admin_post("/_admin/faults", "{\"unavailable\":false}");
    cr_assert_eq(stop_writer(), 0);
}

Test(writer_dv, kill_9_mid_stream_and_restart_loses_and_duplicates_nothing)
{
    char code[16];
    /* one call of 100 at a time, each held 150 ms by the emulator: about 650 records/s,
       so the kill lands mid-stream on any machine (the writer alone drains 3000 in well
       under the 20 ms poll on a fast one) */
    admin_post("/_admin/faults", "{\"latency_ms\":150}");
    const char *extra[] = {"-X", "writer.batch_max=100", "-X", "writer.concurrency=1", NULL};
    start_writer(extra);
    for (int i = 0; i < 3000; i++) {
        snprintf(code, sizeof(code), "K%04d", i);
        produce_cmd(code, "1", HASH_A, "crash", "kc");
    }
    flush_producer();
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    long n = 0;
    while (dw_time_mono_ms() < deadline && (n = count_rows("kc")) < 300)
        dw_time_sleep_ms(20);
    cr_assert_lt(n, 3000, "the writer was too fast to be killed mid-stream (%ld)", n);
    stop_writer_kill();
    admin_post("/_admin/faults", "{\"latency_ms\":0}");
    start_writer(extra);
    bool ok = wait_rows("kc", 3000, 25000);
    if (!ok)
        dump_log();
    cr_assert(ok);
    cr_assert(wait_committed(3000, TIMEOUT_MS));
    cr_assert_eq(ledger_rows(), 3000);
    cr_assert_eq(stop_writer(), 0);
}

Test(writer_dv, a_429_storm_is_retried_without_dead_letters)
{
    /* 3 requests per second at most: most write calls are answered 429 + Retry-After */
    admin_post("/_admin/limits", "{\"spec\":\"3/1\"}");
    const char *extra[] = {"-X", "writer.batch_max=25", "-X", "writer.concurrency=4", NULL};
    char code[16];
    for (int i = 0; i < 300; i++) {
        snprintf(code, sizeof(code), "T%04d", i);
        produce_cmd(code, "1", HASH_A, "throttled", "th");
    }
    flush_producer();
    start_writer(extra);
    bool ok = wait_rows("th", 300, 25000);
    if (!ok)
        dump_log();
    cr_assert(ok);
    cr_assert(wait_committed(300, TIMEOUT_MS));
    dl_t d[2];
    cr_assert_eq(read_dlq(d, 2, 1, 1000), 0, "nothing dead-lettered");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_gt(log_counter("throttled"), 0, "the writer saw the throttling");
    cr_assert_gt(log_counter("retries"), 0);
}

/* The commands held never exceed writer.max_pending (+1: the message polled while every partition
 * is paused): the loop stops taking messages at the bound, and pauses when it must poll. */
Test(writer_dv, memory_stays_bounded_by_max_pending)
{
    const char *extra[] = {"-X", "writer.max_pending=40", "-X", "writer.batch_max=10", NULL};
    char code[16];
    for (int i = 0; i < 400; i++) {
        snprintf(code, sizeof(code), "M%04d", i);
        produce_cmd(code, "1", HASH_A, "bounded", "mb");
    }
    flush_producer();
    start_writer(extra);
    bool ok = wait_rows("mb", 400, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok);
    cr_assert(wait_committed(400, TIMEOUT_MS));
    cr_assert_eq(stop_writer(), 0);
    long peak = log_counter("pending_max");
    cr_assert(peak > 0 && peak <= 41, "commands held at most: %ld (writer.max_pending=40)", peak);
}

/* Grow the command topic to n partitions. */
static void grow_topic(int n)
{
    char errstr[512];
    rd_kafka_NewPartitions_t *np =
        rd_kafka_NewPartitions_new(topic, (size_t)n, errstr, sizeof(errstr));
    cr_assert_not_null(np, "%s", errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(admin);
    rd_kafka_CreatePartitions(admin, &np, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
    cr_assert_not_null(ev, "CreatePartitions: no answer");
    const rd_kafka_CreatePartitions_result_t *res = rd_kafka_event_CreatePartitions_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreatePartitions_result_topics(res, &cnt);
    cr_assert_eq(cnt, 1);
    cr_assert_eq(rd_kafka_topic_result_error(tr[0]), RD_KAFKA_RESP_ERR_NO_ERROR, "%s",
                 rd_kafka_topic_result_error_string(tr[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewPartitions_destroy(np);
    /* the metadata catches up: wait (instead of a fixed 1 s) until the broker reports n
     * partitions to the test's producer (its cache too: it partitions by key over them) */
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    int seen = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, topic, NULL);
    cr_assert_not_null(rkt);
    while (dw_time_mono_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(producer, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            seen = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
            rd_kafka_metadata_destroy(md);
        }
        if (seen == n)
            break;
        dw_time_sleep_ms(100);
    }
    rd_kafka_topic_destroy(rkt);
    cr_assert_eq(seen, n, "the topic has %d partition(s), want %d", seen, n);
}

Test(writer_dv, a_second_instance_takes_over_partitions_under_load)
{
    grow_topic(3);
    committed_partitions = 3;
    admin_post("/_admin/faults", "{\"latency_ms\":100}"); /* slow enough to be mid-stream */
    produce_partition = RD_KAFKA_PARTITION_UA;
    const char *extra1[] = {"-X", "writer.batch_max=50", "-X", "writer.instance_id=it-a", NULL};
    const char *extra2[] = {"-X", "writer.batch_max=50", "-X", "writer.instance_id=it-b", NULL};
    start_writer(extra1);
    pid_t first = writer;
    char code[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(code, sizeof(code), "R%04d", i);
        produce_cmd(code, "1", HASH_A, "rebalanced", "rb");
    }
    flush_producer();
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (dw_time_mono_ms() < deadline && count_rows("rb") < 300)
        dw_time_sleep_ms(20);
    start_writer(extra2); /* joins: the group rebalances (cooperative) while the first works */
    pid_t second = writer;
    bool ok = wait_rows("rb", 3000, 25000);
    if (!ok)
        dump_log();
    cr_assert(ok);
    cr_assert(wait_committed(3000, 15000));
    cr_assert_eq(ledger_rows(), 3000);
    writer = first;
    cr_assert_eq(stop_writer(), 0);
    writer = second;
    cr_assert_eq(stop_writer(), 0);
    cr_assert(log_has("revoked"), "a partition moved");
    cr_assert(log_has("[writer] instance it-b"));
}

/* ---------------------------------------------------------------- F&O */

/* A three-letter currency code (F&O's CurrencyCode is at most 3 characters). */
static void fo_code(char *out, char first, int i)
{
    out[0] = first;
    out[1] = (char)('A' + (i / 26) % 26);
    out[2] = (char)('A' + i % 26);
    out[3] = '\0';
}

static void produce_fo(const char *code, const char *op, const char *record_id, const char *version,
                       const char *name, const char *symbol)
{
    char value[2048], tk[128], fields[512], rid[96] = "";
    bool del = strcmp(op, "delete") == 0;
    if (record_id) {
        snprintf(tk, sizeof(tk), "{}");
        snprintf(rid, sizeof(rid), "\"record_id\":\"%s\",", record_id);
    } else {
        snprintf(tk, sizeof(tk), "{\"CurrencyCode\":\"%s\"}", code);
    }
    if (del)
        snprintf(fields, sizeof(fields), "{}");
    else
        snprintf(fields, sizeof(fields),
                 "{\"CurrencyCode\":\"%s\",\"Name\":\"%s\",\"Symbol\":\"%s\"}", code, name, symbol);
    snprintf(value, sizeof(value),
             "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"fo\",\"op\":\"%s\","
             "\"target_key\":%s,%s\"fields\":%s,\"source_version\":\"%s\",\"content_hash\":\"%s\","
             "\"correlation_id\":\"it-%s\",\"source_ts\":\"2024-01-01T00:00:00Z\"}",
             map, op, tk, rid, fields, version,
             del ? HASH_B : (strcmp(version, "1") == 0 ? HASH_A : HASH_C), code);
    produce_raw(code, value);
}

/* The test's currencies at the F&O emulator. */
static long fo_count(const char *sym)
{
    return dw_testwriter_currency_count(emu, "fo", sym);
}

static bool fo_wait(const char *sym, long want, int ms)
{
    long n = -1;
    bool ok = dw_testwriter_currency_wait(emu, "fo", sym, want, ms, &n);
    if (!ok)
        cr_log_warn("F&O rows with symbol %s: %ld, want %ld", sym, n, want);
    return ok;
}

static const char *fo_name(const char *code, char *out, size_t size)
{
    return dw_testwriter_currency_name(emu, "fo", code, out, size);
}

Test(writer_fo, creates_new_records_and_updates_known_ones)
{
    char code[8];
    for (int i = 0; i < 200; i++) {
        fo_code(code, 'W', i);
        produce_fo(code, "upsert", NULL, "1", "first", "fw");
    }
    flush_producer();
    start_writer(NULL);
    bool ok = fo_wait("fw", 200, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok);
    for (int i = 0; i < 20; i++) {
        fo_code(code, 'W', i);
        produce_fo(code, "upsert", NULL, "2", "updated", "fw");
    }
    flush_producer();
    cr_assert(wait_committed(220, TIMEOUT_MS));
    char name[64];
    fo_code(code, 'W', 7);
    cr_assert_str_eq(fo_name(code, name, sizeof(name)), "updated");
    fo_code(code, 'W', 100);
    cr_assert_str_eq(fo_name(code, name, sizeof(name)), "first");
    cr_assert_eq(fo_count("fw"), 200, "no duplicates");
    cr_assert_eq(stop_writer(), 0);
}

Test(writer_fo, a_delete_by_record_id_resolves_through_the_ledger)
{
    start_writer(NULL);
    produce_fo("DLA", "upsert", NULL, "1", "to delete", "dl");
    produce_fo("DLB", "upsert", NULL, "1", "to keep", "dl");
    flush_producer();
    cr_assert(fo_wait("dl", 2, TIMEOUT_MS));
    /* capture recorded the Dataverse row id of DLA (dw_record_ids) */
    const char *rid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    PGconn *pg = PQconnectdb(getenv("DW_PG_DSN"));
    cr_assert_eq(PQstatus(pg), CONNECTION_OK);
    const char *p[3] = {map, rid, "DLA"};
    PGresult *res = PQexecParams(pg,
                                 "INSERT INTO dw_record_ids (map, record_id, canonical_key,"
                                 " source_key) VALUES ($1, $2, $3, '{}')",
                                 3, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(pg));
    PQclear(res);
    PQfinish(pg);
    produce_fo(rid, "delete", rid, "2", NULL, NULL);
    /* a delete of a row dwfleet never knew */
    produce_fo("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "delete",
               "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "3", NULL, NULL);
    produce_fo("DLC", "upsert", NULL, "1", "marker", "dl");
    flush_producer();
    cr_assert(wait_committed(5, TIMEOUT_MS));
    char name[64];
    cr_assert_str_eq(fo_name("DLA", name, sizeof(name)), "", "deleted");
    cr_assert_str_eq(fo_name("DLB", name, sizeof(name)), "to keep");
    cr_assert_str_eq(fo_name("DLC", name, sizeof(name)), "marker");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_eq(log_counter("delete_unresolved"), 1);
}

/* One command of the bidirectional test: target, key, content hash, origin hash, version,
 * the name field's value. */
static void produce_bi(const char *target, const char *code, char hc, char ho, const char *version,
                       const char *name)
{
    char to[200], value[2048], h[65], o[65];
    memset(h, hc, 64);
    memset(o, ho, 64);
    h[64] = o[64] = '\0';
    bool dv = strcmp(target, "dv") == 0;
    snprintf(to, sizeof(to), "dw.%s.to-%s", map, target);
    if (dv)
        snprintf(value, sizeof(value),
                 "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"dv\","
                 "\"op\":\"upsert\",\"target_key\":{\"isocurrencycode\":\"%s\"},"
                 "\"fields\":{\"isocurrencycode\":\"%s\",\"currencyname\":\"%s\","
                 "\"currencysymbol\":\"bi\",\"exchangerate\":1.0},\"source_version\":\"%s\","
                 "\"content_hash\":\"%s\",\"correlation_id\":\"bi\",\"source_ts\":\"t\","
                 "\"origin_hash\":\"%s\",\"origin_key\":{\"CurrencyCode\":\"%s\"}}",
                 map, code, code, name, version, h, o, code);
    else
        snprintf(value, sizeof(value),
                 "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"fo\","
                 "\"op\":\"upsert\",\"target_key\":{\"CurrencyCode\":\"%s\"},"
                 "\"fields\":{\"CurrencyCode\":\"%s\",\"Name\":\"%s\",\"Symbol\":\"bi\"},"
                 "\"source_version\":\"%s\",\"content_hash\":\"%s\",\"correlation_id\":\"bi\","
                 "\"source_ts\":\"t\",\"origin_hash\":\"%s\","
                 "\"origin_key\":{\"isocurrencycode\":\"%s\"}}",
                 map, code, code, name, version, h, o, code);
    produce_to(to, code, value);
}

Test(writer_fo, bidirectional_edits_are_written_once_without_ping_pong)
{
    char errstr[1024], to_dv[200], name[64];
    snprintf(to_dv, sizeof(to_dv), "dw.%s.to-dv", map);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t spec = {to_dv, 1, 1, tconf, false, DW_OK};
    cr_assert_eq(dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    const char *args[] = {"--limits", "off", "-X", "emulator.admin_secret=" ADMIN, NULL};
    emu2 = dw_testemu_start("dv", "emu_wrbi", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu2, "%s", errstr);

    /* 1. an F&O change (fo version 100) reaches Dataverse; its F&O form is recorded */
    start_writer_on("dv", emu2, NULL);
    produce_bi("dv", "BID", '1', '2', "100", "from fo");
    flush_producer();
    dw_testemu_t *fo_emu = emu;
    emu = emu2;
    cr_assert(wait_rows("bi", 1, TIMEOUT_MS));
    emu = fo_emu;
    cr_assert_eq(stop_writer(), 0);

    /* 2. Dataverse's capture of that write comes back for F&O: an echo, not written; then a real
     *    edit on Dataverse (dv version 600) is written to F&O once */
    start_writer_on("fo", emu, NULL);
    produce_bi("fo", "BID", '2', '1', "555", "echo to fo");
    produce_bi("fo", "BIM", '3', '4', "556", "marker");
    flush_producer();
    cr_assert(fo_wait("bi", 1, TIMEOUT_MS));
    cr_assert_str_eq(fo_name("BID", name, sizeof(name)), "", "the echo was not written to F&O");
    produce_bi("fo", "BID", '5', '6', "600", "from dv");
    flush_producer();
    cr_assert(fo_wait("bi", 2, TIMEOUT_MS));
    cr_assert_str_eq(fo_name("BID", name, sizeof(name)), "from dv");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_eq(log_counter("echo_dropped"), 1);
    cr_assert_eq(log_counter("written"), 2);

    /* 3. F&O's capture of the dv edit comes back for Dataverse (fo version 101): an echo */
    start_writer_on("dv", emu2, NULL);
    produce_bi("dv", "BID", '6', '5', "101", "echo to dv");
    produce_bi("dv", "BIN", '7', '8', "102", "marker");
    flush_producer();
    emu = emu2;
    bool ok = wait_rows("bi", 2, TIMEOUT_MS);
    const char *dvname = row_name("BID", name, sizeof(name));
    emu = fo_emu;
    cr_assert(ok);
    cr_assert_str_eq(dvname, "from fo", "the echo was not written to Dataverse");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_eq(log_counter("echo_dropped"), 1);
    cr_assert_eq(log_counter("written"), 1);
}

/* ---------------------------------------------------------------- lookups */

static void produce_product(const char *to, const char *num, const char *currency)
{
    char value[2048], bind[160] = "";
    if (currency)
        snprintf(bind, sizeof(bind),
                 ",\"transactioncurrencyid@odata.bind\":\"transactioncurrencies(isocurrencycode="
                 "'%s')\"",
                 currency);
    snprintf(value, sizeof(value),
             "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"dv\","
             "\"op\":\"upsert\",\"target_key\":{\"msdyn_productnumber\":\"%s\"},"
             "\"fields\":{\"msdyn_productnumber\":\"%s\",\"productnumber\":\"%s\","
             "\"name\":\"lookup test\",\"quantitydecimal\":0%s},\"source_version\":\"1\","
             "\"content_hash\":\"" HASH_A "\",\"correlation_id\":\"lk\",\"source_ts\":\"t\"}",
             pmap, num, num, num, bind);
    produce_to(to, num, value);
}

static bool product_exists(const char *num)
{
    char path[160];
    snprintf(path, sizeof(path), "products(msdyn_productnumber='%s')?$select=name", num);
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, NULL);
    bool found = r.status == 200;
    dw_testemu_resp_free(&r);
    return found;
}

Test(writer_dv, a_missing_lookup_is_retried_then_dead_lettered_other_keys_flow)
{
    char errstr[1024], ptopic[200], a_maps[200];
    snprintf(ptopic, sizeof(ptopic), "dw.%s.to-dv", pmap);
    snprintf(dlq, sizeof(dlq), "dw.%s.dlq", pmap); /* read_dlq reads this map's */
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[2] = {{ptopic, 1, 1, tconf, false, DW_OK},
                                      {dlq, 1, 1, tconf, false, DW_OK}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 2, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    snprintf(a_maps, sizeof(a_maps), "writer.maps=%s", pmap);
    const char *extra[] = {
        "-X", a_maps, "-X", "writer.lookup_retries=3", "-X", "writer.retry_initial_ms=2000",
        "-X", "writer.retry_max_ms=4000", NULL};
    /* the retries of P-LATE span 1+2+2 s at least (backoff 2, 4, 4 s with jitter taking half to
     * all of each) before it would be dead-lettered: time enough, on a loaded machine, for the
     * test to see P-FREE and create LKA (it was 1.1 s with 400 ms, a race on a slow machine) */
    start_writer(extra);
    produce_product(ptopic, "P-LATE", "LKA");  /* its currency arrives during the retries */
    produce_product(ptopic, "P-NEVER", "LKZ"); /* its currency never does */
    produce_product(ptopic, "P-FREE", NULL);
    flush_producer();
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (!product_exists("P-FREE") && dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(50);
    if (!product_exists("P-FREE"))
        dump_log();
    cr_assert(product_exists("P-FREE"), "a record without the missing lookup is not held back");
    cr_assert_not(product_exists("P-LATE"));
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", "transactioncurrencies",
                       "{\"isocurrencycode\":\"LKA\",\"currencyname\":\"Late\","
                       "\"currencysymbol\":\"L\",\"exchangerate\":1.0}",
                       NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
    deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (!product_exists("P-LATE") && dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(50);
    bool late = product_exists("P-LATE");
    if (!late)
        dump_log();
    cr_assert(late, "written once the referenced record exists");
    dl_t d[2];
    size_t n = read_dlq(d, 2, 1, TIMEOUT_MS);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(d[0].key, "P-NEVER");
    cr_assert_str_eq(d[0].cls, "lookup_missing");
    cr_assert_str_eq(d[0].attempts, "4");
    free_dl(d, n);
    cr_assert_not(product_exists("P-NEVER"));
    cr_assert_eq(stop_writer(), 0);
}
