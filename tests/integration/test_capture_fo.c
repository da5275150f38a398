/*
 * Integration tests of dw-capture --system fo against the real Kafka (DW_KAFKA_BOOTSTRAP): data
 * events (RemoteExecutionContext documents shaped like the F&O data events and the emulator's
 * outbox) POSTed with libcurl land on dw.<map>.fo keyed by the canonical key, answered 200 only
 * after Kafka acknowledged; a malformed body gets 400 and is kept on dw._capture.dlq; wrong
 * credentials 401; an oversized body 413; Kafka unreachable 503. Maps are renamed copies, topics
 * are deleted at the end.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dw_testutil.h"

extern char **environ;

#define SECRET "fo-event-secret"

static pid_t cap_pid = -1;
static int cap_port;
static char cap_log[256];

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, (struct sockaddr *)&a, sizeof(a));
    socklen_t l = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static char suffix[32];
static char maps_dir[256];


/* Copy the standard maps named in bases to maps_dir, renamed "<name>_<suffix>" everywhere. */
static void make_maps(const char *const *bases)
{
    snprintf(suffix, sizeof(suffix), "t%x%x", (unsigned)getpid() & 0xffff,
             (unsigned)time(NULL) & 0xffffff);
    snprintf(maps_dir, sizeof(maps_dir), "/tmp/dwcap_maps_%s", suffix);
    mkdir(maps_dir, 0755);
    for (int i = 0; bases[i]; i++) {
        char path[512], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", bases[i]);
        FILE *f = fopen(path, "r");
        cr_assert(f, "%s", path);
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(f);
        fclose(m);
        for (int j = 0; bases[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", bases[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", bases[j], suffix);
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
        snprintf(path, sizeof(path), "%s/%s_%s.json", maps_dir, bases[i], suffix);
        f = fopen(path, "w");
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

typedef struct {
    char *key;
    json_t *ev;
    char op_hdr[16];
    char *raw;
} rec_t;

typedef struct {
    rec_t *r;
    size_t n, cap;
    rd_kafka_t *rk;
    char topic[256];
} recs_t;

static void recs_open_topic(recs_t *rs, const char *topic, bool from_end)
{
    memset(rs, 0, sizeof(*rs));
    char errstr[512];
    snprintf(rs->topic, sizeof(rs->topic), "%s", topic);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_conf_set(c, "group.id", dw_test_unique("capt"), NULL, 0);
    rd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(c, "auto.offset.reset", "earliest", NULL, 0);
    rd_kafka_conf_set(c, "topic.metadata.refresh.interval.ms", "500", NULL, 0);
    rs->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    cr_assert(rs->rk, "%s", errstr);
    rd_kafka_poll_set_consumer(rs->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rs->topic, 0)->offset = from_end ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rs->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Read until pred holds or timeout_ms passed. */
static void recs_read(recs_t *rs, int timeout_ms, bool (*pred)(recs_t *, void *), void *arg)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (pred && pred(rs, arg))
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            if (rs->n == rs->cap) {
                rs->cap = rs->cap ? rs->cap * 2 : 64;
                rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
            }
            rec_t *r = &rs->r[rs->n++];
            r->key = strndup(m->key ? (const char *)m->key : "", m->key_len);
            r->ev = json_loadb(m->payload, m->len, 0, NULL);
            r->op_hdr[0] = '\0';
            r->raw = strndup(m->payload ? (const char *)m->payload : "", m->len);
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                dw_kafka_header_get(h, DW_KAFKA_HDR_OP, r->op_hdr, sizeof(r->op_hdr));
        }
        rd_kafka_message_destroy(m);
    }
}

static void recs_open(recs_t *rs, const char *map)
{
    char t[300];
    snprintf(t, sizeof(t), "dw.%s.fo", map);
    recs_open_topic(rs, t, false);
}

static void recs_close(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].key);
        free(rs->r[i].raw);
        json_decref(rs->r[i].ev);
    }
    free(rs->r);
    rd_kafka_consumer_close(rs->rk);
    rd_kafka_destroy(rs->rk);
}


static void start_capture(const char *bootstrap, const char *const *extra)
{
    char listen[64], mapsx[300], boot[300];
    cap_port = free_port();
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
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, cap_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *const env[] = {NULL};
    int e = posix_spawn(&cap_pid, DW_BIN_DIR "/dw-capture", &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(e, 0, "spawn dw-capture: %s", strerror(e));
}

static long post(const char *path, const char *body, size_t len, const char *auth, char *out,
                 size_t out_size);

static void wait_ready(void)
{
    for (int i = 0; i < 200; i++) {
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
    make_maps(test_maps);
}

static void teardown(void)
{
    stop_capture(SIGKILL);
    remove_maps();
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (rk) {
        const char *names[3];
        char buf[3][256];
        for (int i = 0; i < 3; i++) {
            snprintf(buf[i], sizeof(buf[i]), "dw.%s_%s.fo", test_maps[i], suffix);
            names[i] = buf[i];
        }
        dw_kafka_topics_delete(rk, names, 3, 10000, errstr, sizeof(errstr));
        rd_kafka_destroy(rk);
    }
    if (!getenv("DW_TEST_KEEP_LOGS"))
        unlink(cap_log);
}

TestSuite(capture_fo, .init = setup, .fini = teardown, .timeout = 90);

static bool have_n(recs_t *rs, void *arg)
{
    return rs->n >= *(size_t *)arg;
}

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
    recs_t rs;
    recs_open(&rs, grp);
    size_t three = 3;
    recs_read(&rs, 15000, have_n, &three);
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
    recs_close(&rs);
    free(c1);
    free(u1);
    free(d1);
    free(batch);
    free(other);
    cr_assert_eq(WEXITSTATUS(stop_capture(SIGTERM)), 0);
}

static bool have_marker(recs_t *rs, void *arg)
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
    recs_t dlq;
    recs_open_topic(&dlq, "dw._capture.dlq", true);
    snprintf(marker, sizeof(marker), "marker-%s", suffix);
    snprintf(body, sizeof(body), "{\"MessageName\":\"Create\",\"broken\":\"%s\"", marker);
    cr_assert_eq(post("/events", body, strlen(body), auth, out, sizeof(out)), 400, "%s", out);
    recs_read(&dlq, 15000, have_marker, marker);
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
    recs_close(&dlq);
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
