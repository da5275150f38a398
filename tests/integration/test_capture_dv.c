/*
 * Integration tests of dw-capture --system dv against dw-emulator --system dv, the real Kafka
 * (DW_KAFKA_BOOTSTRAP) and PostgreSQL (DW_PG_DSN): every change made through the Web API appears
 * on dw.<map>.dv in order per key (snapshot, upserts, deletes resolved to their key); kill -9 of
 * capture in mid-stream and a restart lose nothing (the delta link is stored only after Kafka
 * acknowledged); an expired change tracking token makes capture re-read the table. Each test
 * uses its own emulator schema, its own renamed copies of the standard maps (so topics and
 * checkpoints are unique) and deletes its topics at the end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dw_testemu.h"
#include "dw_testkafka.h"
#include "dw_testutil.h"

extern char **environ;

#define ADMIN "test-admin-secret"

static dw_testemu_t *emu;

static void start_emulator(const char *limits, const char *max_body)
{
    char body[128], errstr[1024];
    snprintf(body, sizeof(body), "emulator.max_body_bytes=%s", max_body ? max_body : "1048576");
    const char *args[] = {"--limits", limits ? limits : "off", "-X", "emulator.admin_secret=" ADMIN,
                          "-X", body, "-X", "emulator.change_retention_s=3600", NULL};
    emu = dw_testemu_start("dv", "emu_dv", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
}

static void stop_emulator(void)
{
    int status = dw_testemu_stop(emu);
    cr_expect(!emu || status == 0, "dw-emulator did not exit cleanly");
    dw_testemu_destroy(emu);
    emu = NULL;
}

static void make_company(const char *code, char *out)
{
    dw_testemu_resp_t r;
    char body[256];
    snprintf(body, sizeof(body), "{\"cdm_companycode\":\"%s\",\"cdm_name\":\"Company %s\"}", code, code);
    const char *h[] = {"Prefer: return=representation", NULL};
    dw_testemu_request(emu, &r, "POST", "cdm_companies", body, h);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    snprintf(out, 37, "%s", json_string_value(json_object_get(r.json, "cdm_companyid")));
    dw_testemu_resp_free(&r);
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

static void start_capture(const char *const *extra)
{
    char url[128], token_url[160], mapsx[300], comp[128];
    snprintf(url, sizeof(url), "dv.url=http://127.0.0.1:%d", dw_testemu_port(emu));
    snprintf(token_url, sizeof(token_url),
             "dv.token_url=http://127.0.0.1:%d/contoso/oauth2/v2.0/token", dw_testemu_port(emu));
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
    cap_pid = dw_test_spawn(DW_BIN_DIR "/dw-capture", argv, environ, cap_log);
    cr_assert(cap_pid > 0, "spawn dw-capture: %s", strerror(errno));
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

static void recs_open(dw_testkafka_t *rs, const char *map)
{
    char topic[300], errstr[512];
    snprintf(topic, sizeof(topic), "dw.%s.dv", map);
    cr_assert_eq(dw_testkafka_open(rs, topic, false, errstr, sizeof(errstr)), 0, "%s", errstr);
}

static const char *ev_op(const dw_testkafka_rec_t *r)
{
    return json_string_value(json_object_get(r->ev, "op"));
}

/* The index of the last record with key and op (NULL: any op), or -1. */
static long recs_last(const dw_testkafka_t *rs, const char *key, const char *op)
{
    for (long i = (long)rs->n - 1; i >= 0; i--)
        if (strcmp(rs->r[i].key, key) == 0 && (!op || strcmp(ev_op(&rs->r[i]), op) == 0))
            return i;
    return -1;
}


typedef struct {
    const char *key;
    const char *op;
} want_t;

static bool have_key_op(dw_testkafka_t *rs, void *arg)
{
    want_t *w = arg;
    return recs_last(rs, w->key, w->op) >= 0;
}

static void create_currency(const char *code, const char *name)
{
    dw_testemu_resp_t r;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"isocurrencycode\":\"%s\",\"currencyname\":\"%s\",\"currencysymbol\":\"$\","
             "\"exchangerate\":1,\"currencyprecision\":2}",
             code, name);
    dw_testemu_request(emu, &r, "POST", "transactioncurrencies", body, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
}

static const char *const test_maps[] = {"currencies", "customer_groups", "legal_entities", "payment_terms", NULL};

static void setup(void)
{
    char errstr[512];
    start_emulator(NULL, NULL);
    snprintf(suffix, sizeof(suffix), "t%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwcap_maps_%s", suffix);
    cr_assert_eq(dw_test_maps_copy(maps_dir, test_maps, suffix, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
}

static void teardown(void)
{
    stop_capture(SIGKILL);
    stop_emulator();
    dw_test_maps_remove(maps_dir);
    dw_testkafka_delete_topics(test_maps, suffix, (const char *const[]){"dv", NULL});
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
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", "msdyn_customergroups",
        "{\"msdyn_groupid\":\"10\",\"msdyn_description\":\"Wholesale\","
        "\"msdyn_company@odata.bind\":\"cdm_companies(cdm_companycode='USMF')\"}",
        NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);

    start_capture(NULL);
    dw_testkafka_t cs, gs;
    recs_open(&cs, cur);
    recs_open(&gs, grp);
    size_t two = 2, one = 1;
    dw_testkafka_read(&cs, 20000, dw_testkafka_have_count, &two);
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
    dw_testkafka_read(&gs, 20000, dw_testkafka_have_count, &one);
    cr_assert_geq(gs.n, 1, "customer groups: see %s", cap_log);
    cr_assert_str_eq(gs.r[0].key, "[\"usmf\",\"10\"]");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(gs.r[0].ev, "key"), "msdyn_company")), "USMF");

    /* live changes: two updates of USD in order, a delete of EUR by its key */
    dw_testemu_request(emu, &r, "PATCH", "transactioncurrencies(isocurrencycode='USD')", "{\"currencyname\":\"Dollar 1\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
    want_t w1 = {"[\"usd\"]", "upsert"};
    dw_testkafka_read(&cs, 15000, have_key_op, &w1);
    dw_testemu_request(emu, &r, "PATCH", "transactioncurrencies(isocurrencycode='USD')", "{\"currencyname\":\"Dollar 2\"}", NULL);
    dw_testemu_resp_free(&r);
    dw_testemu_request(emu, &r, "DELETE", "transactioncurrencies(isocurrencycode='EUR')", NULL, NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
    want_t w2 = {"[\"eur\"]", "delete"};
    dw_testkafka_read(&cs, 15000, have_key_op, &w2);
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
    dw_testkafka_close(&cs);
    dw_testkafka_close(&gs);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
    cr_assert(log_has("stopped:"));
}

/* The change made while capture was down has arrived. */
static bool have_after(dw_testkafka_t *rs, void *arg)
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
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", "transactioncurrencies/Microsoft.Dynamics.CRM.CreateMultiple", text, NULL);
    free(text);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);

    const char *small[] = {"-X", "capture.page_size=20", NULL};
    start_capture(small);
    dw_testkafka_t cs;
    recs_open(&cs, cur);
    size_t some = 30;
    dw_testkafka_read(&cs, 20000, dw_testkafka_have_count, &some);
    cr_assert_geq(cs.n, 30, "see %s", cap_log);
    stop_capture(SIGKILL); /* mid-stream */
    /* changes while capture is down */
    dw_testemu_request(emu, &r, "PATCH", "transactioncurrencies(isocurrencycode='Q00')", "{\"currencyname\":\"after\"}", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
    start_capture(small);
    dw_testkafka_read(&cs, 40000, have_after, NULL);
    cr_assert(have_after(&cs, NULL), "the change made while down is missing; see %s", cap_log);
    for (int i = 0; i < N; i++) {
        char key[32], code[8];
        code_of(i, code);
        snprintf(key, sizeof(key), "[\"%c%c%c\"]", code[0] + 32, code[1] >= 'A' ? code[1] + 32 : code[1], code[2] >= 'A' ? code[2] + 32 : code[2]);
        cr_assert_geq(recs_last(&cs, key, NULL), 0, "record %s lost (%zu records read)", key, cs.n);
    }
    dw_testkafka_close(&cs);
}

Test(capture_dv, expired_change_token_means_a_new_snapshot)
{
    char cur[128];
    map_name(cur, sizeof(cur), "currencies");
    create_currency("GBP", "Pound");
    start_capture(NULL);
    dw_testkafka_t cs;
    recs_open(&cs, cur);
    size_t one = 1;
    dw_testkafka_read(&cs, 20000, dw_testkafka_have_count, &one);
    cr_assert_geq(cs.n, 1, "see %s", cap_log);
    /* wait for the first delta link to be stored, stop, change, expire every token, restart:
     * the stored link is refused as expired (the emulator expires every token issued before
     * the admin call) */
    for (int i = 0; i < 300 && !log_has("snapshot done"); i++)
        usleep(100000);
    /* the checkpoint is stored before the line is logged: without it the test proves nothing */
    cr_assert(log_has("snapshot done"), "no snapshot done within 30 s; see %s", cap_log);
    usleep(300000);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
    create_currency("CHF", "Franc");
    const char *h[] = {"Authorization: Bearer " ADMIN, NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "POST", "/_admin/expire-tokens", "{}", h);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    dw_testemu_resp_free(&r);
    start_capture(NULL);
    size_t before = cs.n;
    want_t w = {"[\"chf\"]", "snapshot"};
    dw_testkafka_read(&cs, 20000, have_key_op, &w);
    cr_assert_geq(recs_last(&cs, "[\"chf\"]", "snapshot"), 0, "no re-snapshot; see %s", cap_log);
    cr_assert_gt(cs.n, before);
    cr_assert_geq(recs_last(&cs, "[\"gbp\"]", "snapshot"), (long)before, "GBP read again");
    cr_assert(log_has("no longer valid"));
    dw_testkafka_close(&cs);
}
