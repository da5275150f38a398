/*
 * Integration tests of dw-writer's retries against the emulators, the real broker and
 * PostgreSQL (issue 7, Tests): commands are produced to dw.<map>.to-dv|to-fo of a copy of the
 * currencies map renamed for the test, the writer runs as a child process (dw_testwriter) and
 * the rows are read back from the emulator.
 *  - writer_retry/a_429_storm_sends_no_request_before_retry_after: small service protection
 *    limits, a backlog drained: 429s answered, yet the emulator saw no request from the writer
 *    before a Retry-After it had answered elapsed (/_admin/state throttling.early_requests 0),
 *    nothing dead-lettered, every row present.
 *  - writer_retry/per_key_order_holds_under_retries (F&O target): versions of the same keys
 *    interleaved with other keys, transient 503s injected on writes: the F&O emulator's data
 *    events (one per committed write, in commit order) show no older version of a key written
 *    after a newer one, the final row of every key is its newest version (ledger dv_version
 *    too), and other keys were written while a failed key waited for its retry.
 *  - writer_retry/sighup_reloads_the_maps_refusing_a_broken_set: a map file that does not load
 *    makes SIGHUP's reload fail (reload_failures 1) and the loaded map keeps flowing; a second
 *    map added to maps.dir is not served until the next SIGHUP, then its waiting commands are
 *    written (ledger rows too) and the first map's still are; nothing dead-lettered.
 *  - writer_retry/a_snapshot_older_than_a_live_change_does_not_overwrite_it: through a real
 *    dw-transform, an F&O live upsert event (source version 200) is written, then the initial
 *    sync's snapshot event of the same record (version 100, other content): the row keeps the
 *    live content, stale_dropped counts it, the ledger keeps version 200.
 *  - writer_outage/a_60_s_outage_with_queue_loses_nothing_and_resumes: the target answers 503
 *    for 60 s while commands keep arriving; then it returns: the same writer process delivers
 *    everything by itself, no dead letters, every row present, offsets committed.
 * Every writer's log is checked for sanitizer reports when it stops.
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
#include "dw_file.h"
#include "dw_kafka.h"
#include "dw_testemu.h"
#include "dw_testreceiver.h"
#include "dw_testkafka.h"
#include "dw_testutil.h"
#include "dw_testwriter.h"
#include "dw_time.h"

extern char **environ;

#define ADMIN      "test-admin-secret"
#define TIMEOUT_MS 20000
#define HASH_A     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static dw_conf_t *conf;
static rd_kafka_t *admin, *producer;
static dw_testemu_t *emu;
static dw_testreceiver_t rx = DW_TESTRECEIVER_INIT;
static bool rx_used;
static dw_testwriter_t w;
static char suffix[64], map[96], topic[160], dlq[160], group[160];
static char dir[256], maps_dir[300], wlog[400];
static const char *sys = "dv"; /* the target of the test */
static pid_t transform = -1;   /* dw-transform, when a test runs one */
static bool extra_topics;      /* the test made the map's .fo, .dv and to-fo topics */

/* Topics, groups, maps and the writer's settings of one test; the emulator is started by the
 * test (start_emu), with the limits it needs. */
static void setup_for(const char *target)
{
    sys = target;
    char errstr[1024] = "";
    cr_assert_eq(dw_testkafka_clients(&conf, &admin, &producer, errstr, sizeof(errstr)), 0, "%s",
                 errstr);

    snprintf(suffix, sizeof(suffix), "%s", dw_test_unique("wrr"));
    snprintf(map, sizeof(map), "currencies_%s", suffix);
    snprintf(topic, sizeof(topic), "dw.%s.to-%s", map, sys);
    snprintf(dlq, sizeof(dlq), "dw.%s.dlq", map);
    snprintf(group, sizeof(group), "dw-writer-%s", suffix);
    snprintf(dir, sizeof(dir), "%s", dw_test_tmpdir_new());
    snprintf(maps_dir, sizeof(maps_dir), "%s/maps", dir);
    snprintf(wlog, sizeof(wlog), "%s/writer.log", dir);
    const char *bases[] = {"currencies", NULL};
    cr_assert_eq(dw_test_maps_copy(maps_dir, bases, suffix, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[2] = {{topic, 1, 1, tconf, false, DW_OK},
                                      {dlq, 1, 1, tconf, false, DW_OK}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 2, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    dw_testwriter_init(&w, wlog, maps_dir, group, map);
}

static void setup_dv(void)
{
    setup_for("dv");
}

static void setup_fo(void)
{
    setup_for("fo");
}

static void teardown(void)
{
    dw_testwriter_kill(&w);
    if (transform > 0) {
        kill(transform, SIGKILL);
        waitpid(transform, NULL, 0);
        transform = -1;
    }
    if (rx_used) {
        dw_testreceiver_stop_fo(&rx, &emu);
        rx_used = false;
    }
    dw_testemu_destroy(emu);
    emu = NULL;
    if (producer) {
        rd_kafka_flush(producer, 5000);
        rd_kafka_destroy(producer);
        producer = NULL;
    }
    if (admin) {
        char fo_t[200], dv_t[200], tofo_t[200];
        snprintf(fo_t, sizeof(fo_t), "dw.%s.fo", map);
        snprintf(dv_t, sizeof(dv_t), "dw.%s.dv", map);
        snprintf(tofo_t, sizeof(tofo_t), "dw.%s.to-fo", map);
        const char *names[] = {topic, dlq, fo_t, dv_t, tofo_t};
        char errstr[512];
        dw_kafka_topics_delete(admin, names, extra_topics ? 5 : 2, TIMEOUT_MS, errstr,
                               sizeof(errstr));
        extra_topics = false;
        rd_kafka_destroy(admin);
        admin = NULL;
    }
    dw_testwriter_ledger_clear(map);
    dw_test_tmpdir_remove();
    dw_conf_destroy(conf);
    conf = NULL;
}

TestSuite(writer_retry, .fini = teardown, .timeout = 90);
/* 60 s of outage, the backlog's delivery after it, the setup: far under the timeout */
TestSuite(writer_outage, .init = setup_dv, .fini = teardown, .timeout = 180);

/* ---------------------------------------------------------------- helpers */

static void start_emu(const char *limits)
{
    const char *args[] = {"--limits", limits, "-X", "emulator.admin_secret=" ADMIN, NULL};
    char errstr[1024];
    emu = dw_testemu_start(sys, "emu_wrr", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
}

static void dump_log(void)
{
    char *t = dw_testwriter_log_tail(&w, 6000);
    cr_log_info("writer log (tail):\n%s", t);
    free(t);
}

static void start_writer(const char *const *extra)
{
    char errstr[512];
    cr_assert_eq(dw_testwriter_start(&w, sys, emu, extra, errstr, sizeof(errstr)), 0, "%s", errstr);
}

static int stop_writer(void)
{
    bool san = false;
    int st = dw_testwriter_stop(&w, 30000, &san);
    if (san)
        dump_log();
    cr_assert_not(san, "dw-writer: sanitizer report");
    return st;
}

static void admin_post(const char *path, const char *body)
{
    const char *h[] = {"Authorization: Bearer " ADMIN, NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", path, body, h);
    cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
}

/* /_admin/state's throttling member (new reference). */
static json_t *throttling(void)
{
    long st = 0;
    json_t *s = dw_testemu_admin_get(emu, "/_admin/state", ADMIN, &st);
    cr_assert_not_null(s, "/_admin/state: %ld", st);
    json_t *t = json_incref(json_object_get(s, "throttling"));
    json_decref(s);
    cr_assert_not_null(t);
    return t;
}

static void produce(const char *key, const char *value)
{
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = topic;
    m.partition = 0;
    m.key = key;
    m.key_len = strlen(key);
    m.value = value;
    m.value_len = strlen(value);
    char errstr[512];
    cr_assert_eq(dw_kafka_produce(producer, &m, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

static void flush_producer(void)
{
    cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* A Dataverse upsert of currency code with name and symbol. */
static void produce_dv(const char *code, const char *version, const char *hash, const char *name,
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
    produce(code, value);
}

/* An F&O upsert of currency code (at most 3 characters); the content hash differs per version. */
static void produce_fo(const char *code, int version, const char *name, const char *symbol)
{
    char value[2048], hash[65];
    snprintf(hash, sizeof(hash), "%064x", (unsigned)version);
    snprintf(value, sizeof(value),
             "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"fo\",\"op\":\"upsert\","
             "\"target_key\":{\"CurrencyCode\":\"%s\"},\"fields\":{\"CurrencyCode\":\"%s\","
             "\"Name\":\"%s\",\"Symbol\":\"%s\"},\"source_version\":\"%d\","
             "\"content_hash\":\"%s\",\"correlation_id\":\"it-%s\","
             "\"source_ts\":\"2024-01-01T00:00:00Z\"}",
             map, code, code, name, symbol, version, hash, code);
    produce(code, value);
}

/* The test's currencies at its emulator (dw_testwriter_currency_*). */
static long dv_count(const char *sym)
{
    return dw_testwriter_currency_count(emu, "dv", sym);
}

static bool wait_rows(const char *sym, long want, int ms)
{
    long n = -1;
    bool ok = dw_testwriter_currency_wait(emu, sys, sym, want, ms, &n);
    if (!ok)
        cr_log_warn("rows with symbol %s: %ld, want %ld", sym, n, want);
    return ok;
}

static const char *dv_name(const char *code, char *out, size_t size)
{
    return dw_testwriter_currency_name(emu, "dv", code, out, size);
}

static const char *fo_name(const char *code, char *out, size_t size)
{
    return dw_testwriter_currency_name(emu, "fo", code, out, size);
}

/* The currencyname of code at Dataverse, into out ("" when absent). */
static bool wait_committed(int64_t want, int ms)
{
    int64_t last = -1;
    bool ok = dw_testwriter_wait_committed(group, topic, 1, want, ms, &last);
    if (!ok)
        cr_log_warn("committed offset %lld, want %lld", (long long)last, (long long)want);
    return ok;
}

static size_t dead_letters(int ms)
{
    dw_testwriter_dl_t d[4];
    size_t n = dw_testwriter_read_dlq(dlq, d, 4, 1, ms);
    for (size_t i = 0; i < n; i++)
        cr_log_warn("dead letter %s: class %s status %s", d[i].key, d[i].cls, d[i].status);
    dw_testwriter_dl_free(d, n);
    return n;
}

/* ---------------------------------------------------------------- 429 storm */

Test(writer_retry, a_429_storm_sends_no_request_before_retry_after, .init = setup_dv)
{
    /* 5 requests per 2 s per client; batches of 10: the backlog needs 30 write calls at least */
    start_emu("5/2");
    const char *extra[] = {"-X", "writer.batch_max=10", "-X", "writer.concurrency=4", NULL};
    char code[16];
    for (int i = 0; i < 300; i++) {
        snprintf(code, sizeof(code), "T%04d", i);
        produce_dv(code, "1", HASH_A, "throttled", "rs");
    }
    flush_producer();
    start_writer(extra);
    /* done when every offset is committed: watched on the broker, since a request of the test
     * (same client as the writer) would itself count as early while the writer is throttled */
    bool ok = wait_committed(300, 60000);
    if (!ok)
        dump_log();
    cr_assert(ok, "every command done");
    json_t *t = throttling();
    json_int_t throttled = json_integer_value(json_object_get(t, "throttled"));
    json_int_t early = json_integer_value(json_object_get(t, "early_requests"));
    char *dump = json_dumps(t, JSON_COMPACT);
    cr_log_info("emulator throttling: %s", dump);
    free(dump);
    json_decref(t);
    cr_assert_geq(throttled, 3, "the emulator answered 429s (%lld)", (long long)throttled);
    if (early)
        dump_log();
    cr_assert_eq(early, 0,
                 "the writer sent %lld request(s) before a Retry-After it was answered elapsed",
                 (long long)early);
    admin_post("/_admin/limits", "{\"spec\":\"off\"}"); /* the test's own reads */
    cr_assert(wait_rows("rs", 300, TIMEOUT_MS), "every row present");
    cr_assert_eq(dead_letters(1500), 0, "nothing dead-lettered");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_gt(dw_testwriter_log_counter(&w, "throttled"), 0, "the writer saw the throttling");
    cr_assert_gt(dw_testwriter_log_counter(&w, "retries"), 0);
}

/* ---------------------------------------------------------------- per-key order */

/* /_admin/state's failed_writes: the writes answered with an injected failure so far. */
static long long failed_writes(void)
{
    long st = 0;
    json_t *s = dw_testemu_admin_get(emu, "/_admin/state", ADMIN, &st);
    cr_assert_not_null(s, "/_admin/state: %ld", st);
    long long n = (long long)json_integer_value(json_object_get(s, "failed_writes"));
    json_decref(s);
    return n;
}

#define NKEYS   6
#define NVERS   4
#define NOTHERS (NKEYS * NVERS * 2)

/* The version in a name "K<i> v<version>", 0 when it is not one. */
static int name_version(const char *name)
{
    const char *v = name ? strstr(name, " v") : NULL;
    return v ? atoi(v + 2) : 0;
}

Test(writer_retry, per_key_order_holds_under_retries, .init = setup_fo)
{
    char errstr[1024];
    cr_assert_eq(dw_testreceiver_start(&rx, "wrr-event-secret", errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    rx_used = true;
    emu = dw_testreceiver_start_fo(&rx, "emu_wrro", ADMIN, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
    /* batches of 4, failed records retried after 4-8 s (the backoff's jitter takes between half
     * and all of retry_initial_ms): well after the last wave (1.2 s after the first) is produced
     * and written, so the other keys are seen to pass them even on a slow machine (with 2.5-5 s
     * a sanitizer build of the writer and the emulator wrote only 7 of them in time) */
    const char *extra[] = {"-X", "writer.batch_max=4",        "-X", "writer.retry_initial_ms=8000",
                           "-X", "writer.retry_max_ms=12000", NULL};
    start_writer(extra);
    /* the versions arrive in waves 400 ms apart, each version of a key followed by 2 other keys;
     * the first 3 record writes of waves 1 and 3 answer 503 */
    char code[16], name[64];
    int others = 0;
    for (int v = 1; v <= NVERS; v++) {
        /* wave 3's failures are armed only once wave 1's have happened: the admin call sets the
         * count (it does not add to it), and a writer slow to join its group would otherwise
         * not have taken wave 1's yet and see 3 failures instead of 6 */
        if (v == 3) {
            int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
            long long fw = 0;
            while ((fw = failed_writes()) < 3 && dw_time_mono_ms() < deadline)
                dw_time_sleep_ms(50);
            cr_assert_eq(fw, 3, "wave 1's injected failures happened (%lld)", fw);
        }
        /* the failures hit the K keys ("K0" is in their writes' paths or bodies, never in the
         * O keys'): which records a batch's first writes are depends on how the writer cut its
         * batches, and three failures on O keys only left no K key waiting for a retry (1 run
         * in 8 failed so) */
        if (v == 1 || v == 3)
            admin_post("/_admin/faults",
                       "{\"fail_writes\":{\"count\":3,\"status\":503,\"match\":\"K0\"}}");
        for (int k = 0; k < NKEYS; k++) {
            snprintf(code, sizeof(code), "K%02d", k);
            snprintf(name, sizeof(name), "K%02d v%d", k, v);
            produce_fo(code, v, name, "ko");
            for (int o = 0; o < 2; o++, others++) {
                snprintf(code, sizeof(code), "O%02d", others);
                produce_fo(code, 1, "other v1", "ot");
            }
        }
        flush_producer();
        dw_time_sleep_ms(400);
    }
    cr_assert_eq(others, NOTHERS);
    int total = NVERS * NKEYS + NOTHERS;
    bool ok = wait_committed(total, 25000);
    if (!ok)
        dump_log();
    cr_assert(ok, "every command done");
    cr_assert(wait_rows("ko", NKEYS, TIMEOUT_MS));
    cr_assert(wait_rows("ot", NOTHERS, TIMEOUT_MS));
    /* final content: the newest version of every key (row and ledger) */
    for (int k = 0; k < NKEYS; k++) {
        char want[64], got[64], ver[64];
        snprintf(code, sizeof(code), "K%02d", k);
        snprintf(want, sizeof(want), "K%02d v%d", k, NVERS);
        cr_assert_str_eq(fo_name(code, got, sizeof(got)), want);
        cr_assert_str_eq(dw_testwriter_ledger_get(map, code, "dv_version", ver, sizeof(ver)), "4",
                         "ledger dv_version of %s", code);
    }
    long st = 0;
    json_t *s = dw_testemu_admin_get(emu, "/_admin/state", ADMIN, &st);
    cr_assert_not_null(s);
    cr_assert_eq(json_integer_value(json_object_get(s, "failed_writes")), 6,
                 "the injected failures happened");
    json_decref(s);

    /* every committed write, in commit order: the F&O emulator's data events */
    s = dw_testemu_admin_get(emu, "/_admin/events", ADMIN, &st);
    cr_assert_not_null(s, "/_admin/events: %ld", st);
    int events = (int)json_integer_value(json_object_get(s, "last_seq"));
    json_decref(s);
    cr_assert_gt(events, 0);
    int n = dw_testreceiver_wait(&rx, events, TIMEOUT_MS);
    cr_assert_eq(n, events, "events delivered: %d of %d", n, events);
    int last[NKEYS] = {0}, writes[NKEYS] = {0};
    int first_ok[NKEYS];  /* event index of the key's first write */
    int other_before = 0; /* other keys written before the first write of a retried key */
    int first_retried = -1;
    char bad[256] = ""; /* the first violation (asserted after the lock is released) */
    for (int k = 0; k < NKEYS; k++)
        first_ok[k] = -1;
    pthread_mutex_lock(&rx.mu);
    for (int i = 0; i < rx.n; i++) {
        json_t *tgt = dw_testreceiver_ev_target(rx.events[i]);
        const char *c = json_string_value(dw_testreceiver_attr(tgt, "CurrencyCode"));
        const char *nm = json_string_value(dw_testreceiver_attr(tgt, "Name"));
        if (!c || c[0] != 'K')
            continue;
        int k = atoi(c + 1), v = name_version(nm);
        if (k < 0 || k >= NKEYS || v < 1) {
            if (!bad[0])
                snprintf(bad, sizeof(bad), "event %d: %s %s", i, c, nm ? nm : "");
            continue;
        }
        if (v <= last[k] && !bad[0])
            snprintf(bad, sizeof(bad), "%s: version %d written after version %d (event %d)", c, v,
                     last[k], i);
        last[k] = v;
        writes[k]++;
        if (first_ok[k] < 0)
            first_ok[k] = i;
    }
    /* the keys whose first command failed: written later than other keys produced after them */
    for (int k = 0; k < NKEYS; k++) {
        if (first_ok[k] < 0)
            continue;
        int later_others = 0;
        for (int i = 0; i < first_ok[k]; i++) {
            json_t *tgt = dw_testreceiver_ev_target(rx.events[i]);
            const char *c = json_string_value(dw_testreceiver_attr(tgt, "CurrencyCode"));
            if (c && c[0] == 'O')
                later_others++;
        }
        if (later_others > other_before) {
            other_before = later_others;
            first_retried = k;
        }
    }
    pthread_mutex_unlock(&rx.mu);
    cr_assert_str_empty(bad, "%s", bad);
    int kwrites = 0;
    for (int k = 0; k < NKEYS; k++) {
        cr_assert_eq(last[k], NVERS, "K%02d: the last write is version %d", k, last[k]);
        cr_log_info("K%02d: %d write(s)", k, writes[k]);
        kwrites += writes[k];
    }
    /* not all coalesced into one write per key: the order of writes was exercised */
    cr_assert_gt(kwrites, NKEYS, "versions written: %d", kwrites);
    cr_log_info("K%02d was first written after %d writes of other keys", first_retried,
                other_before);
    /* the first batch of wave 1 (K00 v1 first) failed; its keys were retried after 2.5 s or more, by
     * when the other keys of the waves after it were written */
    cr_assert_geq(other_before, NOTHERS / 2,
                  "other keys kept flowing while a key waited for its retry (%d written before)",
                  other_before);
    cr_assert_eq(dead_letters(1000), 0, "nothing dead-lettered");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_gt(dw_testwriter_log_counter(&w, "retries"), 0);
}

/* ---------------------------------------------------------------- snapshot vs live */

/* An F&O change event (schemas/event.schema.json) of currency code to dw.<map>.fo. */
static void produce_fo_event(const char *op, const char *code, const char *version,
                             const char *name)
{
    char to[200], value[2048], key[64];
    snprintf(to, sizeof(to), "dw.%s.fo", map);
    snprintf(key, sizeof(key), "[\"%s\"]", code);
    snprintf(value, sizeof(value),
             "{\"version\":1,\"event_id\":\"00000000-0000-4000-8000-%012d\",\"map\":\"%s\","
             "\"source\":\"fo\",\"op\":\"%s\",\"key\":{\"CurrencyCode\":\"%s\"},"
             "\"data\":{\"CurrencyCode\":\"%s\",\"Name\":\"%s\",\"Symbol\":\"sn\"},"
             "\"source_version\":\"%s\",\"source_ts\":\"2024-03-01T10:00:00Z\","
             "\"capture_ts\":\"2024-03-01T10:00:00.125Z\",\"correlation_id\":\"snap-%s\"}",
             atoi(version), map, op, code, code, name, version, code);
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = to;
    m.partition = 0;
    m.key = key;
    m.key_len = strlen(key);
    m.value = value;
    m.value_len = strlen(value);
    char errstr[512];
    cr_assert_eq(dw_kafka_produce(producer, &m, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
}

/* The ledger's column of the record whose Dataverse key is code ("" when none). */
static const char *ledger_of(const char *code, const char *column, char *out, size_t size)
{
    out[0] = '\0';
    PGconn *pg = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(pg) == CONNECTION_OK) {
        char sql[256];
        snprintf(
            sql, sizeof(sql),
            "SELECT %s::text FROM dw_ledger WHERE map = $1 AND dv_key->>'isocurrencycode' = $2",
            column);
        const char *p[2] = {map, code};
        PGresult *r = PQexecParams(pg, sql, 2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(pg);
    return out;
}

/* ---------------------------------------------------------------- SIGHUP */

/* SIGHUP reloads maps.dir: a map set that does not load is refused and the old maps keep
 * flowing; a new map's commands are then written, and the old map's still are. */
Test(writer_retry, sighup_reloads_the_maps_refusing_a_broken_set, .init = setup_dv)
{
    char code[16], errstr[1024], broken[400];
    start_emu("off");
    /* every map of the folder that writes to Dataverse: a new one is served after a reload */
    const char *extra[] = {"-X", "writer.maps=all", "-X", "writer.create_topics=true", NULL};
    start_writer(extra);
    for (int i = 0; i < 10; i++) {
        snprintf(code, sizeof(code), "A%02d", i);
        produce_dv(code, "1", HASH_A, "before", "ra");
    }
    flush_producer();
    cr_assert(wait_rows("ra", 10, TIMEOUT_MS), "the first map is written");

    /* a broken map file: the reload is refused, the loaded maps are kept */
    snprintf(broken, sizeof(broken), "%s/broken.json", maps_dir);
    FILE *f = fopen(broken, "w");
    cr_assert_not_null(f);
    fputs("{\"name\": \"broken\", ", f);
    fclose(f);
    cr_assert_eq(kill(w.pid, SIGHUP), 0);
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (dw_time_mono_ms() < deadline && dw_testwriter_log_counter(&w, "reload_failures") < 1)
        dw_time_sleep_ms(50);
    cr_assert_eq(dw_testwriter_log_counter(&w, "reload_failures"), 1, "the broken set is refused");
    cr_assert(dw_testwriter_log_has(&w, "keeping the maps loaded before"));
    for (int i = 10; i < 20; i++) {
        snprintf(code, sizeof(code), "A%02d", i);
        produce_dv(code, "1", HASH_A, "refused", "ra");
    }
    flush_producer();
    cr_assert(wait_rows("ra", 20, TIMEOUT_MS), "the loaded map keeps flowing");
    cr_assert(dw_testwriter_running(&w));
    unlink(broken);

    /* a second map (a copy of currencies under another name) and its commands, waiting */
    char suffix2[64], map_a[96], topic_a[160], map_b[96], topic_b[160], dlq_b[160];
    snprintf(suffix2, sizeof(suffix2), "%s", dw_test_unique("wrb"));
    const char *bases[] = {"currencies", NULL};
    cr_assert_eq(dw_test_maps_copy(maps_dir, bases, suffix2, errstr, sizeof(errstr)), 0, "%s", errstr);
    snprintf(map_b, sizeof(map_b), "currencies_%s", suffix2);
    snprintf(topic_b, sizeof(topic_b), "dw.%s.to-dv", map_b);
    snprintf(dlq_b, sizeof(dlq_b), "dw.%s.dlq", map_b);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[1] = {{topic_b, 1, 1, tconf, false, DW_OK}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 1, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    snprintf(map_a, sizeof(map_a), "%s", map);
    snprintf(topic_a, sizeof(topic_a), "%s", topic);
    snprintf(map, sizeof(map), "%s", map_b); /* produce_dv writes to the map and topic named here */
    snprintf(topic, sizeof(topic), "%s", topic_b);
    for (int i = 0; i < 10; i++) {
        snprintf(code, sizeof(code), "B%02d", i);
        produce_dv(code, "1", HASH_A, "new map", "rb");
    }
    snprintf(map, sizeof(map), "%s", map_a);
    snprintf(topic, sizeof(topic), "%s", topic_a);
    flush_producer();
    dw_time_sleep_ms(1500);
    cr_assert_eq(dv_count("rb"), 0, "not served before the reload");

    cr_assert_eq(kill(w.pid, SIGHUP), 0);
    bool ok = wait_rows("rb", 10, TIMEOUT_MS);
    if (!ok)
        dump_log();
    cr_assert(ok, "the new map's commands are written after the reload");
    cr_assert_eq(dw_testwriter_ledger_rows(map_b), 10);
    for (int i = 20; i < 30; i++) {
        snprintf(code, sizeof(code), "A%02d", i);
        produce_dv(code, "1", HASH_A, "after", "ra");
    }
    flush_producer();
    cr_assert(wait_rows("ra", 30, TIMEOUT_MS), "the old map still flows after the reload");
    cr_assert(wait_committed(30, TIMEOUT_MS));
    cr_assert_eq(dw_testwriter_log_counter(&w, "reloads"), 1);
    cr_assert_eq(dead_letters(1000), 0, "nothing dead-lettered");
    cr_assert_eq(stop_writer(), 0);
    const char *names[] = {topic_b, dlq_b};
    dw_kafka_topics_delete(admin, names, 2, TIMEOUT_MS, errstr, sizeof(errstr));
    dw_testwriter_ledger_clear(map_b);
}

Test(writer_retry, a_snapshot_older_than_a_live_change_does_not_overwrite_it, .init = setup_dv)
{
    /* the map's other topics: the transform reads dw.<map>.fo and .dv, writes to-dv / to-fo */
    char fo_t[200], dv_t[200], tofo_t[200], errstr[1024];
    snprintf(fo_t, sizeof(fo_t), "dw.%s.fo", map);
    snprintf(dv_t, sizeof(dv_t), "dw.%s.dv", map);
    snprintf(tofo_t, sizeof(tofo_t), "dw.%s.to-fo", map);
    static const char *const tconf[] = {"retention.ms", "3600000", NULL};
    dw_kafka_topic_spec_t specs[3] = {{fo_t, 1, 1, tconf, false, DW_OK},
                                      {dv_t, 1, 1, tconf, false, DW_OK},
                                      {tofo_t, 1, 1, tconf, false, DW_OK}};
    cr_assert_eq(dw_kafka_topics_create(admin, specs, 3, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    extra_topics = true;
    start_emu("off");
    start_writer(NULL);
    /* dw-transform of the test's map */
    char a_maps[400], a_meta[400], a_map[200], a_group[200], tlog[400];
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", maps_dir);
    snprintf(a_meta, sizeof(a_meta), "maps.metadata_dir=%s", DW_SOURCE_DIR "/schemas/metadata");
    snprintf(a_map, sizeof(a_map), "transform.maps=%s", map);
    snprintf(a_group, sizeof(a_group), "transform.group_id=dw-transform-%s", suffix);
    snprintf(tlog, sizeof(tlog), "%s/transform.log", dir);
    const char *targv[] = {"dw-transform",
                           "-X",
                           a_maps,
                           "-X",
                           a_meta,
                           "-X",
                           a_map,
                           "-X",
                           a_group,
                           "-X",
                           "transform.instance_id=it-snap",
                           "-X",
                           "transform.commit_interval_ms=100",
                           "-X",
                           "kafka.session.timeout.ms=6000",
                           NULL};
    transform = dw_test_spawn(DW_BIN_DIR "/dw-transform", targv, environ, tlog);
    cr_assert(transform > 0, "spawn dw-transform");

    /* the live change: F&O row version 200 */
    produce_fo_event("upsert", "SNP", "200", "live content");
    cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    bool ok = wait_rows("sn", 1, 25000);
    if (!ok) {
        char *t = dw_file_read(tlog);
        cr_log_info("transform log:\n%s", t ? t : "");
        free(t);
        dump_log();
    }
    cr_assert(ok, "the live change written");
    char name[64], v[96];
    cr_assert_str_eq(dv_name("SNP", name, sizeof(name)), "live content");
    /* the initial sync's snapshot of the same record, read before the live change (version 100,
     * other content), then one of a record only the snapshot has */
    produce_fo_event("snapshot", "SNP", "100", "snapshot content");
    produce_fo_event("snapshot", "SNQ", "100", "snapshot marker");
    cr_assert_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert(wait_rows("sn", 2, TIMEOUT_MS), "the snapshot marker written");
    /* the commands come in the transform's transactions (their markers take offsets too): the
     * writer's counters tell when the snapshot's command was handled */
    int64_t deadline = dw_time_mono_ms() + TIMEOUT_MS;
    while (dw_testwriter_log_counter(&w, "stale_dropped") < 1 && dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(100);
    cr_assert_eq(dw_testwriter_log_counter(&w, "stale_dropped"), 1, "the stale snapshot counted");
    cr_assert_str_eq(dv_name("SNP", name, sizeof(name)), "live content",
                     "the older snapshot did not overwrite the live change");
    cr_assert_str_eq(dv_name("SNQ", name, sizeof(name)), "snapshot marker");
    cr_assert_str_eq(ledger_of("SNP", "fo_version", v, sizeof(v)), "200");
    cr_assert_str_eq(ledger_of("SNQ", "fo_version", v, sizeof(v)), "100");
    cr_assert_eq(dead_letters(1000), 0);
    cr_assert_eq(stop_writer(), 0);
    cr_assert_eq(dw_testwriter_log_counter(&w, "stale_dropped"), 1, "the stale snapshot counted");
    cr_assert_eq(dw_testwriter_log_counter(&w, "written"), 2);
    /* the transform stops cleanly, without a sanitizer report */
    kill(transform, SIGTERM);
    int st = 0;
    deadline = dw_time_mono_ms() + 30000;
    while (waitpid(transform, &st, WNOHANG) == 0 && dw_time_mono_ms() < deadline)
        dw_time_sleep_ms(20);
    if (dw_time_mono_ms() >= deadline) {
        kill(transform, SIGKILL);
        waitpid(transform, &st, 0);
    }
    transform = -1;
    char *text = dw_file_read(tlog);
    bool san = text && (strstr(text, "Sanitizer") || strstr(text, "runtime error:"));
    if (san)
        cr_log_error("transform log:\n%s", text);
    free(text);
    cr_assert_not(san, "dw-transform: sanitizer report");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dw-transform exit status %d", st);
}

/* ---------------------------------------------------------------- 60 s outage */

Test(writer_outage, a_60_s_outage_with_queue_loses_nothing_and_resumes)
{
    start_emu("off");
    start_writer(NULL); /* on_unavailable: queue (the map's default) */
    char code[16];
    int n = 0;
    for (; n < 20; n++) {
        snprintf(code, sizeof(code), "U%04d", n);
        produce_dv(code, "1", HASH_A, "outage", "ou");
    }
    flush_producer();
    cr_assert(wait_rows("ou", 20, TIMEOUT_MS), "written before the outage");
    admin_post("/_admin/faults", "{\"unavailable\":true}");
    int64_t start = dw_time_mono_ms(), end = start + 60000;
    /* commands keep arriving during the outage: 5 a second */
    while (dw_time_mono_ms() < end) {
        for (int i = 0; i < 5; i++, n++) {
            snprintf(code, sizeof(code), "U%04d", n);
            produce_dv(code, "1", HASH_A, "outage", "ou");
        }
        flush_producer();
        cr_assert(dw_testwriter_running(&w), "the writer runs through the outage");
        dw_time_sleep_ms(1000);
    }
    admin_post("/_admin/faults", "{\"unavailable\":false}");
    cr_log_info("outage of %lld ms, %d commands", (long long)(dw_time_mono_ms() - start), n);
    cr_assert_eq(dv_count("ou"), 20, "nothing was written during the outage");
    bool ok = wait_rows("ou", n, 30000);
    if (!ok)
        dump_log();
    cr_assert(ok, "every row present after the outage");
    cr_assert(wait_committed(n, TIMEOUT_MS));
    cr_assert_eq(dw_testwriter_ledger_rows(map), n);
    cr_assert_eq(dead_letters(1500), 0, "nothing dead-lettered");
    cr_assert(dw_testwriter_running(&w), "the same writer process resumed by itself");
    cr_assert_eq(stop_writer(), 0);
    cr_assert_gt(dw_testwriter_log_counter(&w, "retries"), 0);
}
