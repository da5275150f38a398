/*
 * dw_testwriter: see dw_testwriter.h.
 */
#include "dw_testwriter.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "dw_dlq.h"
#include "dw_file.h"
#include "dw_kafka.h"
#include "dw_testutil.h"
#include "dw_time.h"

extern char **environ;

void dw_testwriter_init(dw_testwriter_t *w, const char *log, const char *maps_dir,
                        const char *group, const char *maps)
{
    memset(w, 0, sizeof(*w));
    w->pid = -1;
    snprintf(w->log, sizeof(w->log), "%s", log);
    snprintf(w->maps_dir, sizeof(w->maps_dir), "%s", maps_dir);
    snprintf(w->group, sizeof(w->group), "%s", group);
    snprintf(w->maps, sizeof(w->maps), "%s", maps);
}

int dw_testwriter_start(dw_testwriter_t *w, const char *target, dw_testemu_t *e,
                        const char *const *extra, char *errstr, size_t errstr_size)
{
    char url[128], token_url[160], a_maps[400], a_meta[400], a_group[240], cid[64], secret[96],
        a_served[240];
    snprintf(url, sizeof(url), "%s.url=http://127.0.0.1:%d", target, dw_testemu_port(e));
    snprintf(token_url, sizeof(token_url),
             "%s.token_url=http://127.0.0.1:%d/contoso/oauth2/v2.0/token", target,
             dw_testemu_port(e));
    snprintf(cid, sizeof(cid), "%s.client_id=dwfleet", target);
    snprintf(secret, sizeof(secret), "%s.client_secret=dwfleet-local-secret", target);
    snprintf(a_maps, sizeof(a_maps), "maps.dir=%s", w->maps_dir);
    snprintf(a_meta, sizeof(a_meta), "maps.metadata_dir=%s", DW_SOURCE_DIR "/schemas/metadata");
    snprintf(a_group, sizeof(a_group), "writer.group_id=%s", w->group);
    snprintf(a_served, sizeof(a_served), "writer.maps=%s", w->maps);
    const char *argv[96] = {"dw-writer",
                            "--target",
                            target,
                            "-X",
                            url,
                            "-X",
                            token_url,
                            "-X",
                            cid,
                            "-X",
                            secret,
                            "-X",
                            a_maps,
                            "-X",
                            a_meta,
                            "-X",
                            a_group,
                            "-X",
                            "writer.instance_id=it-1",
                            "-X",
                            "writer.batch_linger_ms=20",
                            "-X",
                            "writer.stats_interval_ms=300",
                            "-X",
                            "writer.commit_interval_ms=200",
                            "-X",
                            "writer.retry_initial_ms=100",
                            "-X",
                            "writer.retry_max_ms=1000",
                            "-X",
                            "writer.create_topics=false",
                            "-X",
                            "kafka.session.timeout.ms=6000",
                            "-X",
                            a_served,
                            "--log-level",
                            "info"};
    int a = 0;
    while (argv[a])
        a++;
    for (int i = 0; extra && extra[i]; i++) {
        if (a >= 94) {
            snprintf(errstr, errstr_size, "too many extra arguments");
            return -1;
        }
        argv[a++] = extra[i];
    }
    argv[a] = NULL;
    w->pid = dw_test_spawn(DW_BIN_DIR "/dw-writer", argv, environ, w->log);
    if (w->pid <= 0) {
        snprintf(errstr, errstr_size, "spawn dw-writer: %s", strerror(errno));
        w->pid = -1;
        return -1;
    }
    return 0;
}

bool dw_testwriter_running(dw_testwriter_t *w)
{
    if (w->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(w->pid, &st, WNOHANG);
    if (r == w->pid) {
        w->pid = -1;
        return false;
    }
    return r == 0;
}

char *dw_testwriter_log_tail(const dw_testwriter_t *w, size_t max)
{
    char *text = dw_file_read(w->log);
    if (!text)
        return strdup("");
    size_t n = strlen(text);
    if (n > max)
        memmove(text, text + n - max, max + 1);
    return text;
}

int dw_testwriter_stop(dw_testwriter_t *w, int timeout_ms, bool *sanitizer)
{
    if (sanitizer)
        *sanitizer = false;
    if (w->pid <= 0)
        return -1;
    int st = 0;
    kill(w->pid, SIGTERM);
    int64_t deadline = dw_time_mono_ms() + timeout_ms;
    while (waitpid(w->pid, &st, WNOHANG) == 0) {
        if (dw_time_mono_ms() > deadline) {
            kill(w->pid, SIGKILL);
            waitpid(w->pid, &st, 0);
            break;
        }
        dw_time_sleep_ms(20);
    }
    w->pid = -1;
    char *text = dw_file_read(w->log);
    if (sanitizer)
        *sanitizer = text && (strstr(text, "Sanitizer") || strstr(text, "runtime error:"));
    if (getenv("DW_WRITER_TEST_LOG") && text) {
        size_t n = strlen(text);
        fprintf(stderr, "writer log (tail):\n%s\n", n > 6000 ? text + n - 6000 : text);
    }
    free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void dw_testwriter_kill(dw_testwriter_t *w)
{
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        waitpid(w->pid, NULL, 0);
        w->pid = -1;
    }
}

bool dw_testwriter_log_has(const dw_testwriter_t *w, const char *needle)
{
    char *text = dw_file_read(w->log);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

long dw_testwriter_log_counter(const dw_testwriter_t *w, const char *name)
{
    char *text = dw_file_read(w->log);
    long v = -1;
    char needle[64];
    snprintf(needle, sizeof(needle), " %s=", name);
    for (const char *p = text ? strstr(text, needle) : NULL; p; p = strstr(p + 1, needle))
        v = atol(p + strlen(needle));
    free(text);
    return v;
}

int64_t dw_testwriter_committed(const char *group, const char *topic, int partitions)
{
    char errstr[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(kc, "group.id", group, errstr, sizeof(errstr));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    if (!c)
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t off = -1;
    if (rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        off = l->elems[0].offset;
        if (partitions > 1) {
            off = 0;
            for (int p = 0; p < l->cnt; p++)
                off += l->elems[p].offset > 0 ? l->elems[p].offset : 0;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
    return off;
}

bool dw_testwriter_wait_committed(const char *group, const char *topic, int partitions,
                                  int64_t want, int ms, int64_t *last)
{
    int64_t deadline = dw_time_mono_ms() + ms, off = -1;
    bool ok = false;
    while (dw_time_mono_ms() < deadline) {
        if ((off = dw_testwriter_committed(group, topic, partitions)) == want) {
            ok = true;
            break;
        }
        dw_time_sleep_ms(200);
    }
    if (last)
        *last = off;
    return ok;
}

size_t dw_testwriter_read_dlq(const char *dlq, dw_testwriter_dl_t *out, size_t max, size_t want,
                              int ms)
{
    char errstr[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", getenv("DW_KAFKA_BOOTSTRAP"), errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(kc, "group.id", "dw-writer-it-reader", errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "isolation.level", "read_committed", errstr, sizeof(errstr));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    if (!c)
        return 0;
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, dlq, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    int64_t deadline = dw_time_mono_ms() + ms;
    while (n < want && n < max && dw_time_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m)
            continue;
        if (!m->err) {
            dw_testwriter_dl_t *d = &out[n++];
            memset(d, 0, sizeof(*d));
            snprintf(d->key, sizeof(d->key), "%.*s", (int)m->key_len,
                     m->key ? (const char *)m->key : "");
            d->value = strndup(m->payload ? (const char *)m->payload : "", m->len);
            rd_kafka_headers_t *h = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                dw_kafka_header_get(h, DW_DLQ_HDR_CLASS, d->cls, sizeof(d->cls));
                dw_kafka_header_get(h, DW_DLQ_HDR_STAGE, d->stage, sizeof(d->stage));
                dw_kafka_header_get(h, DW_DLQ_HDR_HTTP_STATUS, d->status, sizeof(d->status));
                dw_kafka_header_get(h, DW_DLQ_HDR_ORIGIN_OFFSET, d->offset, sizeof(d->offset));
                dw_kafka_header_get(h, DW_DLQ_HDR_ATTEMPTS, d->attempts, sizeof(d->attempts));
                dw_kafka_header_get(h, DW_DLQ_HDR_INSTANCE, d->instance, sizeof(d->instance));
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

void dw_testwriter_dl_free(dw_testwriter_dl_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].value);
        d[i].value = NULL;
    }
}

long dw_testwriter_ledger_rows(const char *map)
{
    PGconn *pg = PQconnectdb(getenv("DW_PG_DSN"));
    long n = -1;
    if (PQstatus(pg) == CONNECTION_OK) {
        const char *p[1] = {map};
        PGresult *r = PQexecParams(pg, "SELECT count(*) FROM dw_ledger WHERE map = $1", 1, NULL, p,
                                   NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            n = atol(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(pg);
    return n;
}

const char *dw_testwriter_ledger_get(const char *map, const char *ck, const char *column, char *out,
                                     size_t size)
{
    out[0] = '\0';
    for (const char *c = column; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || *c == '_'))
            return out;
    PGconn *pg = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(pg) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT %s::text FROM dw_ledger WHERE map = $1 AND canonical_key = $2", column);
        const char *p[2] = {map, ck};
        PGresult *r = PQexecParams(pg, sql, 2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(pg);
    return out;
}

void dw_testwriter_ledger_clear(const char *map)
{
    PGconn *pg = PQconnectdb(getenv("DW_PG_DSN"));
    if (PQstatus(pg) == CONNECTION_OK) {
        const char *p[1] = {map};
        PQclear(
            PQexecParams(pg, "DELETE FROM dw_ledger WHERE map = $1", 1, NULL, p, NULL, NULL, 0));
        PQclear(PQexecParams(pg, "DELETE FROM dw_record_ids WHERE map = $1", 1, NULL, p, NULL, NULL,
                             0));
    }
    PQfinish(pg);
}

/* ---- currencies --------------------------------------------------------------------------- */

long dw_testwriter_currency_count(dw_testemu_t *emu, const char *system, const char *sym)
{
    char path[256];
    if (strcmp(system, "fo") == 0)
        snprintf(path, sizeof(path), "Currencies?$select=CurrencyCode&$filter=Symbol eq '%s'", sym);
    else
        snprintf(path, sizeof(path),
                 "transactioncurrencies?$select=isocurrencycode&$filter=currencysymbol eq '%s'",
                 sym);
    const char *h[] = {"Prefer: odata.maxpagesize=5000", NULL};
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, h);
    long n = -1;
    if (r.status == 200 && r.json)
        n = (long)json_array_size(json_object_get(r.json, "value"));
    dw_testemu_resp_free(&r);
    return n;
}

bool dw_testwriter_currency_wait(dw_testemu_t *emu, const char *system, const char *sym, long want,
                                 int ms, long *last)
{
    int64_t deadline = dw_time_mono_ms() + ms;
    long n = -1;
    bool ok = false;
    while (dw_time_mono_ms() < deadline) {
        if ((n = dw_testwriter_currency_count(emu, system, sym)) == want) {
            ok = true;
            break;
        }
        dw_time_sleep_ms(100);
    }
    if (last)
        *last = n;
    return ok;
}

const char *dw_testwriter_currency_name(dw_testemu_t *emu, const char *system, const char *code,
                                        char *out, size_t size)
{
    bool fo = strcmp(system, "fo") == 0;
    char path[256];
    if (fo)
        snprintf(path, sizeof(path), "Currencies(CurrencyCode='%s')", code);
    else
        snprintf(path, sizeof(path),
                 "transactioncurrencies(isocurrencycode='%s')?$select=currencyname", code);
    dw_testemu_resp_t r;
    dw_testemu_request(emu, &r, "GET", path, NULL, NULL);
    const char *v = r.status == 200
                        ? json_string_value(json_object_get(r.json, fo ? "Name" : "currencyname"))
                        : NULL;
    snprintf(out, size, "%s", v ? v : "");
    dw_testemu_resp_free(&r);
    return out;
}
