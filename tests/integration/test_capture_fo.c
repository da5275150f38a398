/*
 * Integration tests of dw-capture --system fo against the real Kafka (DW_KAFKA_BOOTSTRAP): data
 * events (RemoteExecutionContext documents shaped like the F&O data events and the emulator's
 * outbox) POSTed with libcurl land on dw.<map>.fo keyed by the canonical key, answered 200 only
 * after Kafka acknowledged; a malformed body gets 400 and is kept on dw._capture.dlq; wrong
 * credentials 401; an oversized body 413; Kafka unreachable 503. Maps are renamed copies, topics
 * are deleted at the end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <curl/curl.h>
#include <jansson.h>
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

#define SECRET "fo-event-secret"

static pid_t cap_pid = -1;
static int cap_port;
static char cap_log[256];

static char suffix[32];
static char maps_dir[256];

static void recs_open_topic(dw_testkafka_t *rs, const char *topic, bool from_end)
{
    char errstr[512];
    cr_assert_eq(dw_testkafka_open(rs, topic, from_end, errstr, sizeof(errstr)), 0, "%s", errstr);
}

static void recs_open(dw_testkafka_t *rs, const char *map)
{
    char t[300];
    snprintf(t, sizeof(t), "dw.%s.fo", map);
    recs_open_topic(rs, t, false);
}

static void start_capture(const char *bootstrap, const char *const *extra)
{
    char listen[64], mapsx[300], boot[300];
    cap_port = dw_testemu_free_port();
    cr_assert(cap_port > 0);
    snprintf(listen, sizeof(listen), "capture.listen=127.0.0.1:%d", cap_port);
    snprintf(mapsx, sizeof(mapsx), "maps.dir=%s", maps_dir);
    snprintf(boot, sizeof(boot), "kafka.bootstrap.servers=%s", bootstrap);
    snprintf(cap_log, sizeof(cap_log), "/tmp/dwcapfo_%s.log", suffix);
    const char *argv[48] = {"dw-capture", "--system", "fo", "-X", listen, "-X", mapsx, "-X", boot,
                            "-X", "capture.fo_secret=" SECRET, "-X", "topics.partitions=1", "-X",
                            "capture.max_body_bytes=65536", "-X", "capture.ack_timeout_ms=3000"};
    int a = 0;
    while (argv[a])
        a++;
    for (int i = 0; extra && extra[i] && a < 46; i++)
        argv[a++] = extra[i];
    argv[a] = NULL;
    char *const env[] = {NULL};
    cap_pid = dw_test_spawn(DW_BIN_DIR "/dw-capture", argv, env, cap_log);
    cr_assert(cap_pid > 0, "spawn dw-capture: %s", strerror(errno));
}

static long post(const char *path, const char *body, size_t len, const char *auth, char *out,
                 size_t out_size);

static void wait_ready(void)
{
    for (int i = 0; i < 600; i++) { /* 30 s: process start, Kafka and PostgreSQL */
        char out[256];
        if (post("/healthz", NULL, 0, NULL, out, sizeof(out)) == 200)
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

typedef struct {
    char *p;
    size_t n, cap;
} sbuf_t;

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    sbuf_t *b = ud;
    if (b->n + s * n + 1 <= b->cap) {
        memcpy(b->p + b->n, p, s * n);
        b->n += s * n;
        b->p[b->n] = '\0';
    }
    return s * n;
}

/* POST (or GET when body is NULL) to the capture endpoint; returns the status. */
static long post(const char *path, const char *body, size_t len, const char *auth, char *out,
                 size_t out_size)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", cap_port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (auth)
        h = curl_slist_append(h, auth);
    sbuf_t b = {out, 0, out_size};
    out[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* A RemoteExecutionContext as F&O data events (and dw-emulator's outbox) send it. */
static char *event_doc(const char *message, const char *entity, const char *area,
                       const char *group, const char *desc, int rowversion)
{
    json_t *attrs = json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "key", "dataAreaId", "value", area,
                              "key", "CustomerGroupId", "value", group, "key", "Description",
                              "value", desc);
    json_t *keys = json_pack("[{s:s,s:s},{s:s,s:s}]", "key", "dataAreaId", "value", area, "key",
                             "CustomerGroupId", "value", group);
    char rv[32];
    snprintf(rv, sizeof(rv), "%d", rowversion);
    bool del = strcmp(message, "Delete") == 0;
    json_t *target = del ? json_pack("{s:s, s:s, s:o, s:s}", "__type", "EntityReference", "Id",
                                     "6f1c2d3e-0000-5000-8000-000000000001", "KeyAttributes", keys,
                                     "LogicalName", entity)
                         : json_pack("{s:s, s:o, s:s, s:o, s:s, s:s}", "__type", "Entity",
                                     "Attributes", attrs, "Id",
                                     "6f1c2d3e-0000-5000-8000-000000000001", "KeyAttributes", keys,
                                     "LogicalName", entity, "RowVersion", rv);
    if (del)
        json_decref(attrs);
    json_t *doc = json_pack("{s:s, s:s, s:i, s:[{s:s,s:o}], s:s, s:s, s:s, s:[], s:i}",
                            "BusinessUnitId", "00000000-0000-0000-0000-000000000000",
                            "CorrelationId", "3b0a8a77-1c1d-4f4e-9a55-000000000042", "Depth", 1,
                            "InputParameters", "key", "Target", "value", target, "MessageName",
                            message, "OperationCreatedOn", "/Date(1714557600000)/",
                            "PrimaryEntityName", entity, "PreEntityImages", "Stage", 40);
    char *t = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return t;
}

static const char *const test_maps[] = {"customer_groups", "legal_entities", "payment_terms", NULL};

static void setup(void)
{
    char errstr[512];
    snprintf(suffix, sizeof(suffix), "t%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwcap_maps_%s", suffix);
    cr_assert_eq(dw_test_maps_copy(maps_dir, test_maps, suffix, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
}

static void teardown(void)
{
    stop_capture(SIGKILL);
    dw_test_maps_remove(maps_dir);
    dw_testkafka_delete_topics(test_maps, suffix, (const char *const[]){"fo", NULL});
    if (!getenv("DW_TEST_KEEP_LOGS"))
        unlink(cap_log);
}

TestSuite(capture_fo, .init = setup, .fini = teardown, .timeout = 90);

Test(capture_fo, events_land_on_the_topic_answered_after_the_ack)
{
    char grp[128], out[2048];
    snprintf(grp, sizeof(grp), "customer_groups_%s", suffix);
    start_capture(getenv("DW_KAFKA_BOOTSTRAP"), NULL);
    wait_ready();
    const char *auth = "Authorization: Bearer " SECRET;
    char *c1 = event_doc("Create", "CustomerGroup", "usmf", "G10", "first", 101);
    char *u1 = event_doc("Update", "CustomerGroup", "usmf", "G10", "second", 102);
    char *d1 = event_doc("Delete", "CustomerGroup", "usmf", "G10", "", 0);
    cr_assert_eq(post("/events", c1, strlen(c1), auth, out, sizeof(out)), 200, "%s; see %s", out, cap_log);
    cr_assert(strstr(out, "\"records\":1"), "%s", out);
    /* a batch: a JSON array of contexts */
    size_t bl = strlen(u1) + strlen(d1) + 4;
    char *batch = malloc(bl);
    snprintf(batch, bl, "[%s,%s]", u1, d1);
    cr_assert_eq(post("/events", batch, strlen(batch), auth, out, sizeof(out)), 200, "%s", out);
    /* an entity no map reads: accepted, nothing produced */
    char *other = event_doc("Create", "NoSuchEntity", "usmf", "X", "y", 1);
    cr_assert_eq(post("/events", other, strlen(other), auth, out, sizeof(out)), 200, "%s", out);
    cr_assert(strstr(out, "\"records\":0"), "%s", out);

    /* 200 means acknowledged: the records are there, in order, keyed by the canonical key */
    dw_testkafka_t rs;
    recs_open(&rs, grp);
    size_t three = 3;
    dw_testkafka_read(&rs, 15000, dw_testkafka_have_count, &three);
    cr_assert_eq(rs.n, 3, "%zu records", rs.n);
    const char *ops[] = {"upsert", "upsert", "delete"};
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(rs.r[i].key, "[\"usmf\",\"g10\"]");
        cr_assert_str_eq(json_string_value(json_object_get(rs.r[i].ev, "op")), ops[i]);
        cr_assert_str_eq(json_string_value(json_object_get(rs.r[i].ev, "source")), "fo");
        cr_assert_null(json_object_get(rs.r[i].ev, "record_id"));
        cr_assert_str_eq(json_string_value(json_object_get(rs.r[i].ev, "correlation_id")),
                         "3b0a8a77-1c1d-4f4e-9a55-000000000042");
        cr_assert_str_eq(json_string_value(json_object_get(rs.r[i].ev, "source_ts")),
                         "2024-05-01T10:00:00.000Z");
    }
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rs.r[1].ev, "data"), "Description")), "second");
    cr_assert_str_eq(json_string_value(json_object_get(rs.r[1].ev, "source_version")), "102");
    cr_assert(json_is_null(json_object_get(rs.r[2].ev, "data")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rs.r[2].ev, "key"), "CustomerGroupId")), "G10");
    dw_testkafka_close(&rs);
    free(c1);
    free(u1);
    free(d1);
    free(batch);
    free(other);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
}

static bool have_marker(dw_testkafka_t *rs, void *arg)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->r[i].raw && strstr(rs->r[i].raw, (const char *)arg))
            return true;
    return false;
}

Test(capture_fo, malformed_unauthorized_and_oversized_requests_are_refused)
{
    char out[2048], marker[128], body[256];
    start_capture(getenv("DW_KAFKA_BOOTSTRAP"), NULL);
    wait_ready();
    const char *auth = "Authorization: Bearer " SECRET;
    dw_testkafka_t dlq;
    recs_open_topic(&dlq, "dw._capture.dlq", true);
    snprintf(marker, sizeof(marker), "marker-%s", suffix);
    snprintf(body, sizeof(body), "{\"MessageName\":\"Create\",\"broken\":\"%s\"", marker);
    cr_assert_eq(post("/events", body, strlen(body), auth, out, sizeof(out)), 400, "%s", out);
    dw_testkafka_read(&dlq, 15000, have_marker, marker);
    cr_assert(have_marker(&dlq, marker), "the malformed body is not on dw._capture.dlq");
    /* JSON, but no RemoteExecutionContext: 400 too */
    cr_assert_eq(post("/events", "{\"a\":1}", 7, auth, out, sizeof(out)), 400, "%s", out);
    char *ok = event_doc("Create", "CustomerGroup", "usmf", "G1", "x", 1);
    cr_assert_eq(post("/events", ok, strlen(ok), NULL, out, sizeof(out)), 401);
    cr_assert_eq(post("/events", ok, strlen(ok), "Authorization: Bearer wrong", out, sizeof(out)), 401);
    cr_assert_eq(post("/other", ok, strlen(ok), auth, out, sizeof(out)), 404);
    free(ok);
    size_t big = 70000;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    cr_assert_eq(post("/events", huge, big, auth, out, sizeof(out)), 413);
    free(huge);
    dw_testkafka_close(&dlq);
    stop_capture(SIGTERM);
}

Test(capture_fo, kafka_unavailable_means_503)
{
    char out[2048];
    const char *extra[] = {"-X", "capture.create_topics=false", "-X", "capture.ack_timeout_ms=1500", NULL};
    start_capture("127.0.0.1:1", extra);
    wait_ready();
    char *ev = event_doc("Create", "CustomerGroup", "usmf", "G20", "x", 5);
    cr_assert_eq(post("/events", ev, strlen(ev), "Authorization: Bearer " SECRET, out, sizeof(out)),
                 503, "%s", out);
    free(ev);
    stop_capture(SIGTERM);
}
