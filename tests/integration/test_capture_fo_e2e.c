/*
 * End to end, F&O push: dw-emulator --system fo delivers its data events (the outbox) to
 * dw-capture --system fo, which produces them to dw.<map>.fo on the real Kafka
 * (DW_KAFKA_BOOTSTRAP). Changes made through the emulator's OData API (POST/PATCH/DELETE on
 * CustomerGroups) arrive in order per key; while capture cannot reach Kafka the events are
 * refused with 503 and stay in the emulator's outbox, and once capture runs against the broker
 * again they are redelivered: nothing lost, order per key kept. The map is a renamed copy of
 * customer_groups (unique topic per run); topics, maps, schema and logs are removed at the end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dw_testemu.h"
#include "dw_testutil.h"

#define SECRET "fo-e2e-event-secret"
#define ADMIN  "fo-e2e-admin"

static const char *const base_maps[] = {"customer_groups", "legal_entities", "payment_terms", NULL};

static char suffix[32];
static char maps_dir[256];
static char cap_log[256];
static pid_t cap_pid = -1;
static int cap_port;
static dw_testemu_t *emu;

/* ---- maps: renamed copies of the standard maps ------------------------------------------------ */

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "r");
    cr_assert(f, "could not open %s", path);
    FILE *m = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(f);
    fclose(m);
    return text;
}

/* Replace every occurrence of from in *text with to (new string, the old one is freed). */
static void replace_all(char **text, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    char *p = *text;
    while ((p = strstr(p, from))) {
        size_t off = (size_t)(p - *text), l = strlen(*text);
        char *nt = malloc(l - fl + tl + 1);
        cr_assert(nt);
        memcpy(nt, *text, off);
        memcpy(nt + off, to, tl);
        strcpy(nt + off + tl, *text + off + fl);
        free(*text);
        *text = nt;
        p = nt + off + tl;
    }
}

static void make_maps(void)
{
    snprintf(suffix, sizeof(suffix), "e%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwcape2e_maps_%s", suffix);
    cr_assert_eq(mkdir(maps_dir, 0755), 0, "mkdir %s", maps_dir);
    for (int i = 0; base_maps[i]; i++) {
        char path[512];
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", base_maps[i]);
        char *text = slurp(path);
        for (int j = 0; base_maps[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", base_maps[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", base_maps[j], suffix);
            replace_all(&text, from, to);
        }
        snprintf(path, sizeof(path), "%s/%s_%s.json", maps_dir, base_maps[i], suffix);
        FILE *f = fopen(path, "w");
        cr_assert(f, "could not write %s", path);
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

/* ---- dw-capture ------------------------------------------------------------------------------- */

static void start_capture(const char *bootstrap, bool create_topics)
{
    char listen[64], mapsx[300], boot[300];
    snprintf(listen, sizeof(listen), "capture.listen=127.0.0.1:%d", cap_port);
    snprintf(mapsx, sizeof(mapsx), "maps.dir=%s", maps_dir);
    snprintf(boot, sizeof(boot), "kafka.bootstrap.servers=%s", bootstrap);
    const char *argv[] = {"dw-capture", "--system", "fo", "-X", listen, "-X", mapsx, "-X", boot,
                          "-X", "capture.fo_auth=bearer", "-X", "capture.fo_secret=" SECRET,
                          "-X", "topics.partitions=1", "-X", "capture.ack_timeout_ms=1000",
                          "-X", create_topics ? "capture.create_topics=true" : "capture.create_topics=false",
                          NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, cap_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *const env[] = {NULL};
    int e = posix_spawn(&cap_pid, DW_BIN_DIR "/dw-capture", &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-capture: %s", strerror(e));
    /* ready when /healthz answers */
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", cap_port);
    for (int i = 0; i < 600; i++) { /* 30 s: process start, Kafka and PostgreSQL */
        dw_testemu_resp_t r;
        const char *noauth[] = {"Authorization:", NULL};
        dw_testemu_request(emu, &r, "GET", url, NULL, noauth);
        long st = r.status;
        dw_testemu_resp_free(&r);
        if (st == 200)
            return;
        int status;
        cr_assert_eq(waitpid(cap_pid, &status, WNOHANG), 0, "dw-capture exited early, see %s", cap_log);
        usleep(50000);
    }
    cr_assert_fail("dw-capture did not start; see %s", cap_log);
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

/* ---- the topic -------------------------------------------------------------------------------- */

typedef struct {
    char *key;
    char op[16];
    char desc[64];
} rec_t;

typedef struct {
    rec_t *r;
    size_t n, cap;
    rd_kafka_t *rk;
} recs_t;

static void recs_open(recs_t *rs, const char *topic)
{
    memset(rs, 0, sizeof(*rs));
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_conf_set(c, "group.id", dw_test_unique("cape2e"), NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(c, "topic.metadata.refresh.interval.ms", "500", NULL, 0);
    rs->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    cr_assert(rs->rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rs->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rs->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Consume until at least want records were read or timeout_ms passed. */
static void recs_read(recs_t *rs, size_t want, int timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (rs->n >= want)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            if (rs->n == rs->cap) {
                rs->cap = rs->cap ? rs->cap * 2 : 32;
                rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
                cr_assert(rs->r);
            }
            rec_t *r = &rs->r[rs->n++];
            memset(r, 0, sizeof(*r));
            r->key = strndup(m->key ? (const char *)m->key : "", m->key_len);
            json_t *ev = json_loadb(m->payload, m->len, 0, NULL);
            const char *op = json_string_value(json_object_get(ev, "op"));
            snprintf(r->op, sizeof(r->op), "%s", op ? op : "?");
            const char *d = json_string_value(json_object_get(json_object_get(ev, "data"), "Description"));
            snprintf(r->desc, sizeof(r->desc), "%s", d ? d : "-");
            json_decref(ev);
        }
        rd_kafka_message_destroy(m);
    }
}

static void recs_close(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->r[i].key);
    free(rs->r);
    rd_kafka_consumer_close(rs->rk);
    rd_kafka_destroy(rs->rk);
}

/* The records of one key as "op:desc op:desc ...", consecutive duplicates (an event delivered
 * twice: delivery is at least once) collapsed. */
static void key_history(const recs_t *rs, const char *key, char *out, size_t size)
{
    out[0] = '\0';
    char last[96] = "";
    for (size_t i = 0; i < rs->n; i++) {
        if (strcmp(rs->r[i].key, key) != 0)
            continue;
        char one[96];
        snprintf(one, sizeof(one), "%s:%s", rs->r[i].op, rs->r[i].desc);
        if (strcmp(one, last) == 0)
            continue;
        snprintf(last, sizeof(last), "%s", one);
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s%s", l ? " " : "", one);
    }
}

/* ---- the emulator ----------------------------------------------------------------------------- */

static void odata(const char *method, const char *path, const char *body, long expect)
{
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, method, path, body, NULL);
    cr_assert_eq(r.status, expect, "%s %s: %ld %s", method, path, r.status, r.body ? r.body : "");
    dw_testemu_resp_free(&r);
}

static void group_create(const char *id, const char *desc)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"CustomerGroupId\":\"%s\",\"Description\":\"%s\"}", id, desc);
    odata("POST", "CustomerGroups", body, 201);
}

static void group_update(const char *id, const char *desc)
{
    char path[256], body[256];
    snprintf(path, sizeof(path), "CustomerGroups(dataAreaId='usmf',CustomerGroupId='%s')", id);
    snprintf(body, sizeof(body), "{\"Description\":\"%s\"}", desc);
    odata("PATCH", path, body, 204);
}

static void group_delete(const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "CustomerGroups(dataAreaId='usmf',CustomerGroupId='%s')", id);
    odata("DELETE", path, NULL, 204);
}

/* The delivery state of the one endpoint (new reference). */
static json_t *endpoint_state(void)
{
    long status = 0;
    json_t *events = dw_testemu_admin_get(emu, "/_admin/events", ADMIN, &status);
    cr_assert(events, "GET /_admin/events: %ld", status);
    json_t *ep = json_incref(json_array_get(json_object_get(events, "endpoints"), 0));
    json_decref(events);
    cr_assert(ep, "no endpoint in /_admin/events");
    return ep;
}

static long long ep_int(json_t *ep, const char *name)
{
    return json_integer_value(json_object_get(ep, name));
}

/* Wait until the endpoint has nothing pending; returns the last pending count seen. */
static long long wait_drained(int timeout_ms)
{
    long long pending = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        json_t *ep = endpoint_state();
        pending = ep_int(ep, "pending");
        json_decref(ep);
        if (pending == 0)
            break;
        usleep(100000);
    }
    return pending;
}

/* ---- suite ------------------------------------------------------------------------------------ */

static void setup(void)
{
    make_maps();
    snprintf(cap_log, sizeof(cap_log), "/tmp/dwcape2e_%s.log", suffix);
    cap_port = dw_testemu_free_port();
    cr_assert(cap_port > 0);
    char evu[128], errstr[1024];
    snprintf(evu, sizeof(evu), "emulator.fo.event_endpoints=http://127.0.0.1:%d/events", cap_port);
    const char *args[] = {"--limits", "off", "-X", "emulator.admin_secret=" ADMIN, "-X",
                          "emulator.fo.company=usmf", "-X", evu, "-X",
                          "emulator.fo.event_auth_header=Authorization: Bearer " SECRET, "-X",
                          "emulator.fo.event_retry_initial_ms=100", "-X",
                          "emulator.fo.event_retry_max_ms=400", "-X",
                          "emulator.fo.event_timeout_ms=5000", NULL};
    emu = dw_testemu_start("fo", "emu_cape2e", args, NULL, errstr, sizeof(errstr));
    cr_assert(emu, "%s", errstr);
}

static void teardown(void)
{
    stop_capture(SIGKILL);
    dw_testemu_destroy(emu);
    emu = NULL;
    remove_maps();
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (rk) {
        char buf[3][256];
        const char *names[3];
        for (int i = 0; i < 3; i++) {
            snprintf(buf[i], sizeof(buf[i]), "dw.%s_%s.fo", base_maps[i], suffix);
            names[i] = buf[i];
        }
        dw_kafka_topics_delete(rk, names, 3, 10000, errstr, sizeof(errstr));
        rd_kafka_destroy(rk);
    }
    if (!getenv("DW_TEST_KEEP_LOGS"))
        unlink(cap_log);
}

TestSuite(capture_fo_e2e, .init = setup, .fini = teardown, .timeout = 150);

Test(capture_fo_e2e, emulator_changes_reach_kafka_in_order_and_survive_a_kafka_outage)
{
    char topic[256];
    snprintf(topic, sizeof(topic), "dw.customer_groups_%s.fo", suffix);
    start_capture(getenv("DW_KAFKA_BOOTSTRAP"), true);

    /* 1. capture up, Kafka up: six changes on two keys */
    group_create("E1", "a1");
    group_create("E2", "b1");
    group_update("E1", "a2");
    group_update("E2", "b2");
    group_update("E1", "a3");
    group_delete("E2");
    cr_assert_eq(wait_drained(30000), 0, "the outbox did not drain; see %s", cap_log);
    recs_t rs;
    recs_open(&rs, topic);
    recs_read(&rs, 6, 20000);
    cr_assert_eq(rs.n, 6, "%zu records on %s", rs.n, topic);
    char h[512];
    key_history(&rs, "[\"usmf\",\"e1\"]", h, sizeof(h));
    cr_assert_str_eq(h, "upsert:a1 upsert:a2 upsert:a3");
    key_history(&rs, "[\"usmf\",\"e2\"]", h, sizeof(h));
    cr_assert_str_eq(h, "upsert:b1 upsert:b2 delete:-");

    /* 2. capture cannot reach Kafka: events are refused with 503 and stay in the outbox */
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0, "dw-capture did not exit cleanly");
    int closed = dw_testemu_free_port();
    char dead[64];
    snprintf(dead, sizeof(dead), "127.0.0.1:%d", closed);
    start_capture(dead, false);
    json_t *ep = endpoint_state();
    long long delivered_before = ep_int(ep, "position");
    json_decref(ep);
    group_update("E1", "a4");
    group_create("E2", "b3");
    group_update("E2", "b4");
    group_create("E3", "c1");
    group_delete("E1");
    bool refused = false;
    long long pending = -1;
    for (int i = 0; i < 300 && !refused; i++) {
        ep = endpoint_state();
        const char *le = json_string_value(json_object_get(ep, "last_error"));
        pending = ep_int(ep, "pending");
        refused = ep_int(ep, "attempts") >= 2 && le && strstr(le, "503");
        cr_assert_eq(ep_int(ep, "position"), delivered_before, "an event was accepted without Kafka");
        json_decref(ep);
        if (!refused)
            usleep(100000);
    }
    cr_assert(refused, "the emulator's deliveries were not refused with 503; see %s", cap_log);
    cr_assert_eq(pending, 5, "pending %lld", pending);
    recs_read(&rs, 7, 500);
    cr_assert_eq(rs.n, 6, "a record reached %s while Kafka was unreachable", topic);

    /* 3. capture with the broker again: the outbox is redelivered, nothing lost, order kept */
    stop_capture(SIGTERM);
    start_capture(getenv("DW_KAFKA_BOOTSTRAP"), true);
    cr_assert_eq(wait_drained(30000), 0, "the outbox was not redelivered; see %s", cap_log);
    recs_read(&rs, 11, 20000);
    cr_assert_geq(rs.n, 11, "%zu records on %s", rs.n, topic);
    key_history(&rs, "[\"usmf\",\"e1\"]", h, sizeof(h));
    cr_assert_str_eq(h, "upsert:a1 upsert:a2 upsert:a3 upsert:a4 delete:-");
    key_history(&rs, "[\"usmf\",\"e2\"]", h, sizeof(h));
    cr_assert_str_eq(h, "upsert:b1 upsert:b2 delete:- upsert:b3 upsert:b4");
    key_history(&rs, "[\"usmf\",\"e3\"]", h, sizeof(h));
    cr_assert_str_eq(h, "upsert:c1");
    recs_close(&rs);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0, "dw-capture did not exit cleanly");
}
