/*
 * capture_dv: dw-capture --system dv. Dataverse change tracking per map (Prefer:
 * odata.track-changes, pages via @odata.nextLink, @odata.deltaLink between rounds, $deletedEntity
 * rows), every map polled concurrently over one libcurl multi handle in one thread.
 *
 * Each page's rows become event envelopes on dw.<map>.dv keyed by the canonical key; the next
 * page is fetched, and a round's delta link stored in dw_checkpoint, only after Kafka acknowledged
 * every record of the page (so a crash at any point re-reads, never skips). Lookups are resolved
 * to their key values (cached) so the canonical key and the transform need no Dataverse read;
 * deletes, which carry the row id only, are resolved through dw_record_ids.
 *
 * Failures: an expired or invalid delta token (400 0x80044352 / 0x80040203) -> warning and a new
 * snapshot of that map; 401 -> a new token; 429/5xx/timeouts -> backoff honouring Retry-After for
 * that map only; the poll interval adapts per map (the minimum while changes flow, doubling up to
 * the maximum while idle) and all requests share one budget (requests per minute).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "dw_dlq.h"
#include "dw_auth.h"
#include "dw_cli.h"
#include "dw_dvlookup.h"
#include "dw_http.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_signal.h"
#include "dw_system.h"

#define DV_FAC "capture.dv"
#define DV_E_EXPIRED "0x80044352"
#define DV_E_BADTOKEN "0x80040203"
#define DV_RECENT_MAX 100000
#define DV_LOOKUP_CACHE_MAX 200000

typedef enum { DV_IDLE = 0, DV_FETCH, DV_ACK } dv_state_t;

typedef struct dv_map_s {
    const dw_map_t *map;
    const char *name;
    char topic[DW_KAFKA_TOPIC_MAX + 1];
    char *initial;  /* the URL of a full read */
    char *position; /* the delta link as stored (NULL: none yet) */
    char *url;      /* what to fetch next */
    bool snapshot;  /* the current round is a full read */
    long rows_in_round;
    dv_state_t state;
    dw_http_req_t *req;
    double next_at;
    long interval_ms, backoff_ms;
    capture_ack_t ack;
    char *ack_position; /* a delta link to store once the page is acknowledged */
    char *ack_next;     /* the next page to fetch once the page is acknowledged */
    json_t *ids;        /* this page's row ids: [{"id","ck","key"}] */
    json_t *recent;     /* row id -> [ck, key], the rows seen lately (bounded) */
    unsigned long long max_version;
    int auth_retries;
} dv_map_t;

typedef struct dv_s {
    capture_t *cap;
    dw_system_t *sys;  /* dv.* connection */
    dw_auth_t *auth;   /* borrowed from sys */
    dw_http_multi_t *multi;
    dw_http_req_t *lookup_req;
    const char *api;   /* "<dv.url>/<dv.api_path>/" (borrowed from sys) */
    dw_dvlookup_t *lookups; /* lookup GUIDs -> key values, read on lookup_req */
    dv_map_t *m;
    size_t n;
    double budget, budget_cap, budget_rate, budget_at;
    long page_size, min_ms, max_ms, backoff_init, backoff_max;
    char token[16384];
} dv_t;

static double dv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dv_set(char **dst, char *src)
{
    free(*dst);
    *dst = src;
}

static char *dv_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- request budget ---------------------------------------------------------------------- */

static void dv_budget_refill(dv_t *dv, double now)
{
    if (dv->budget_rate <= 0)
        return;
    dv->budget += (now - dv->budget_at) * dv->budget_rate;
    if (dv->budget > dv->budget_cap)
        dv->budget = dv->budget_cap;
    dv->budget_at = now;
}

static bool dv_budget_take(dv_t *dv)
{
    if (dv->budget_rate <= 0)
        return true;
    if (dv->budget < 1.0)
        return false;
    dv->budget -= 1.0;
    return true;
}

/* ---- backoff -------------------------------------------------------------------------------- */

static void dv_backoff(dv_t *dv, dv_map_t *m, long retry_after_ms, const char *why)
{
    long wait = m->backoff_ms ? m->backoff_ms : dv->backoff_init;
    if (retry_after_ms > wait)
        wait = retry_after_ms;
    m->backoff_ms = wait * 2 > dv->backoff_max ? dv->backoff_max : wait * 2;
    m->next_at = dv_now() + (double)wait / 1000.0;
    m->state = DV_IDLE;
    DW_WARN(DV_FAC, "map %s: %s; retrying in %ld ms", m->name, why, wait);
}

/* ---- lookups --------------------------------------------------------------------------------- */

/* One GET of the API (blocking, on the lookup handle): the parsed 200 body, or NULL. The
 * request function of the lookup resolver (common/dw_dvlookup). */
static json_t *dv_get_row(const char *path, void *opaque)
{
    dv_t *dv = opaque;
    char errstr[512];
    char *url = NULL;
    json_t *doc = NULL;
    long status = 0;
    size_t n = strlen(dv->api) + strlen(path) + 1;
    if (!(url = malloc(n)))
        return NULL;
    snprintf(url, n, "%s%s", dv->api, path);
    if (dw_auth_token(dv->auth, dv->token, sizeof(dv->token), errstr, sizeof(errstr))) {
        DW_WARN(DV_FAC, "no access token: %s", errstr);
        goto out;
    }
    if (dw_http_req_setup(dv->lookup_req, "GET", url, NULL, 0) ||
        dw_http_req_odata_headers(dv->lookup_req) ||
        dw_http_req_bearer(dv->lookup_req, dv->token))
        goto out;
    atomic_fetch_add(&dv->cap->requests, 1);
    dv->budget -= 1.0;
    if (dw_http_req_perform(dv->lookup_req, errstr, sizeof(errstr))) {
        DW_WARN(DV_FAC, "lookup read failed: %s", errstr);
        goto out;
    }
    status = dw_http_req_status(dv->lookup_req);
    if (status == 401)
        dw_auth_invalidate(dv->auth);
    if (status == 200) {
        size_t len;
        const char *body = dw_http_req_body(dv->lookup_req, &len);
        doc = json_loadb(body, len, 0, NULL);
    }
out:
    free(url);
    return doc;
}

/* ---- rows -> events ------------------------------------------------------------------------- */

/* The version in a delta token "<version>!<time>" of url (0 when none or unreadable). */
static unsigned long long dv_token_version(const char *url)
{
    const char *t = url ? strstr(url, "$deltatoken=") : NULL;
    if (!t)
        return 0;
    t += strlen("$deltatoken=");
    char *end;
    unsigned long long v = strtoull(t, &end, 10);
    return end != t ? v : 0;
}

static void dv_version_text(const json_t *v, char *out, size_t size)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_string(v) && strspn(json_string_value(v), "0123456789") ==
                                      strlen(json_string_value(v)) &&
             json_string_length(v) > 0)
        snprintf(out, size, "%s", json_string_value(v));
    else
        snprintf(out, size, "0");
    /* the schema's decimal string: no leading zeros */
    size_t z = strspn(out, "0");
    if (z && out[z])
        memmove(out, out + z, strlen(out + z) + 1);
    else if (z)
        snprintf(out, size, "0");
}

/* Produce a row that cannot be made into an event to dw._capture.dlq. */
static void dv_dead_letter(dv_t *dv, dv_map_t *m, const json_t *row, const char *why)
{
    char errstr[256];
    char *text = json_dumps(row, JSON_COMPACT);
    if (!text)
        return;
    dw_dlq_info_t info = {.cls = DW_DLQ_CLASS_POISON,
                          .reason = "no_record_key",
                          .message = why,
                          .stage = "capture"};
    rd_kafka_headers_t *h = dw_dlq_headers(NULL, &info);
    if (capture_produce(dv->cap, &m->ack, dv->cap->dlq_topic, m->name, strlen(m->name), text,
                        strlen(text), m->name, "dv", "upsert", NULL, h, 1000, errstr,
                        sizeof(errstr)) == DW_OK)
        atomic_fetch_add(&dv->cap->dlq, 1);
    free(text);
}

static dw_err_t dv_row(dv_t *dv, dv_map_t *m, json_t *row, const char *capture_ts,
                       unsigned long long delete_version)
{
    char errstr[512], version[48], event_id[37], corr[37];
    const char *ctx = json_string_value(json_object_get(row, "@odata.context"));
    char *ck = NULL, *text = NULL;
    json_t *key = NULL;
    dw_err_t rc = DW_OK;
    size_t len = 0;
    dw_http_uuid4(corr);

    if (ctx && strstr(ctx, "$deletedEntity")) {
        const char *id = json_string_value(json_object_get(row, "id"));
        if (!dw_dvlookup_guid_ok(id)) {
            dv_dead_letter(dv, m, row, "a deleted entity without a row id");
            return DW_OK;
        }
        json_t *r = json_object_get(m->recent, id);
        if (r) {
            ck = dv_strdup(json_string_value(json_array_get(r, 0)));
            key = json_incref(json_array_get(r, 1));
        } else {
            dw_err_t e = capture_record_id_get(dv->cap, m->name, id, &ck, &key, errstr,
                                               sizeof(errstr));
            if (e && e != DW_ERR_NOT_FOUND)
                DW_WARN(DV_FAC, "map %s: could not read the key of row %s: %s", m->name, id,
                        errstr);
        }
        if (!key) {
            DW_WARN(DV_FAC, "map %s: deleted row %s has no known key; sent with its row id only",
                    m->name, id);
            key = json_object();
            free(ck);
            ck = dv_strdup(id);
        }
        snprintf(version, sizeof(version), "%llu", delete_version);
        const char *parts[] = {m->name, "dv", "delete", id, version, NULL};
        dw_event_uuid_from(event_id, parts);
        text = dw_event_build(event_id, m->name, "dv", "delete", key, id, NULL, version,
                              capture_ts, capture_ts, corr, &len);
        if (text && ck)
            rc = capture_produce(dv->cap, &m->ack, m->topic, ck, strlen(ck), text, len, m->name,
                                 "dv", "delete", corr, NULL, 5000, errstr, sizeof(errstr));
        else
            rc = DW_ERR_NOMEM;
        json_object_del(m->recent, id);
        goto out;
    }

    const char *id = json_string_value(json_object_get(row, dw_map_dv_id_column(m->map)));
    dw_dvlookup_fill_row(dv->lookups, m->map, row);
    dw_mapper_error_t merr;
    if (dw_mapper_source_key(m->map, DW_MAP_DV_TO_FO, row, &key, &ck, &merr)) {
        char why[700];
        snprintf(why, sizeof(why), "no record key: %s", merr.message);
        DW_WARN(DV_FAC, "map %s: row %s: %s (dead-lettered)", m->name, id ? id : "?", why);
        dv_dead_letter(dv, m, row, why);
        goto out;
    }
    dv_version_text(json_object_get(row, "versionnumber"), version, sizeof(version));
    unsigned long long vn = strtoull(version, NULL, 10);
    if (vn > m->max_version)
        m->max_version = vn;
    const char *ts = json_string_value(json_object_get(row, "modifiedon"));
    const char *op = m->snapshot ? "snapshot" : "upsert";
    const char *parts[] = {m->name, "dv", op, id ? id : ck, version, NULL};
    dw_event_uuid_from(event_id, parts);
    json_object_del(row, "@odata.etag");
    text = dw_event_build(event_id, m->name, "dv", op, key, dw_dvlookup_guid_ok(id) ? id : NULL,
                          row, version, ts ? ts : capture_ts, capture_ts, corr, &len);
    if (!text) {
        rc = DW_ERR_NOMEM;
        goto out;
    }
    rc = capture_produce(dv->cap, &m->ack, m->topic, ck, strlen(ck), text, len, m->name, "dv",
                         op, corr, NULL, 5000, errstr, sizeof(errstr));
    if (rc == DW_OK && dw_dvlookup_guid_ok(id)) {
        json_array_append_new(m->ids, json_pack("{s:s, s:s, s:O}", "id", id, "ck", ck, "key", key));
        if (json_object_size(m->recent) > DV_RECENT_MAX)
            json_object_clear(m->recent);
        json_object_set_new(m->recent, id, json_pack("[s, O]", ck, key));
    }
out:
    if (rc)
        DW_WARN(DV_FAC, "map %s: could not produce: %s", m->name, errstr);
    free(text);
    free(ck);
    json_decref(key);
    return rc;
}

/* A 200 page: produce its rows, remember where to go once they are acknowledged. */
static void dv_page(dv_t *dv, dv_map_t *m)
{
    size_t len;
    const char *body = dw_http_req_body(m->req, &len);
    dw_mapper_error_t merr;
    json_t *doc = dw_mapper_loadb(body, len, &merr);
    json_t *rows = json_object_get(doc, "value");
    if (!json_is_array(rows)) {
        dv_backoff(dv, m, -1, "the change tracking response is not an OData collection");
        json_decref(doc);
        return;
    }
    const char *next = json_string_value(json_object_get(doc, "@odata.nextLink"));
    const char *delta = json_string_value(json_object_get(doc, "@odata.deltaLink"));
    if (!next && !delta) {
        dv_backoff(dv, m, -1, "the response has neither @odata.nextLink nor @odata.deltaLink "
                              "(change tracking not enabled for the table?)");
        json_decref(doc);
        return;
    }
    char capture_ts[32];
    dw_event_now_rfc3339(capture_ts);
    unsigned long long tv = dv_token_version(m->url);
    unsigned long long delete_version = (tv > m->max_version ? tv : m->max_version) + 1;
    capture_ack_reset(&m->ack);
    json_array_clear(m->ids);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if (json_is_object(row) && dv_row(dv, m, row, capture_ts, delete_version))
            break; /* the ack group holds the failure: the page is read again */
    }
    m->rows_in_round += (long)json_array_size(rows);
    dv_set(&m->ack_next, dv_strdup(next));
    dv_set(&m->ack_position, next ? NULL : dv_strdup(delta));
    m->state = DV_ACK;
    DW_DEBUG(DV_FAC, "map %s: %zu rows, %s", m->name, json_array_size(rows),
             next ? "more pages" : "end of round");
    json_decref(doc);
}

/* Every record of the page is acknowledged (or failed): move on. */
static void dv_acked(dv_t *dv, dv_map_t *m)
{
    char errstr[512];
    dw_err_t rc = capture_ack_wait(&m->ack, 0);
    if (rc) {
        char why[400];
        snprintf(why, sizeof(why), "Kafka did not acknowledge the page (%s); reading it again",
                 m->ack.errstr[0] ? m->ack.errstr : dw_err2str(rc));
        dv_set(&m->url, dv_strdup(m->position ? m->position : m->initial));
        m->snapshot = m->position == NULL;
        m->rows_in_round = 0;
        dv_set(&m->ack_next, NULL);
        dv_set(&m->ack_position, NULL);
        dv_backoff(dv, m, -1, why);
        return;
    }
    if (json_array_size(m->ids) || m->ack_position) {
        rc = capture_checkpoint_put(dv->cap, m->name, "dv", m->ack_position, m->ids, errstr,
                                    sizeof(errstr));
        if (rc == DW_ERR_PG_CONN && dw_pg_reset(dv->cap->pg, NULL, 0) == DW_OK)
            rc = capture_checkpoint_put(dv->cap, m->name, "dv", m->ack_position, m->ids, errstr,
                                        sizeof(errstr));
        if (rc)
            DW_WARN(DV_FAC, "map %s: could not store the checkpoint (continuing; a restart "
                    "re-reads from the last stored one): %s", m->name, errstr);
    }
    json_array_clear(m->ids);
    m->backoff_ms = 0;
    m->auth_retries = 0;
    m->state = DV_IDLE;
    if (m->ack_next) {
        dv_set(&m->url, m->ack_next);
        m->ack_next = NULL;
        m->next_at = dv_now();
        return;
    }
    if (m->snapshot)
        DW_INFO(DV_FAC, "map %s: snapshot done, %ld rows", m->name, m->rows_in_round);
    dv_set(&m->position, m->ack_position);
    m->ack_position = NULL;
    dv_set(&m->url, dv_strdup(m->position));
    m->snapshot = false;
    if (m->rows_in_round > 0)
        m->interval_ms = dv->min_ms;
    else
        m->interval_ms = m->interval_ms * 2 > dv->max_ms ? dv->max_ms : m->interval_ms * 2;
    m->rows_in_round = 0;
    m->next_at = dv_now() + (double)m->interval_ms / 1000.0;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void dv_start(dv_t *dv, dv_map_t *m)
{
    char errstr[512], corr[37], prefer[96];
    if (dw_auth_token(dv->auth, dv->token, sizeof(dv->token), errstr, sizeof(errstr))) {
        dv_backoff(dv, m, -1, errstr);
        return;
    }
    snprintf(prefer, sizeof(prefer), "odata.track-changes,odata.maxpagesize=%ld", dv->page_size);
    dw_http_uuid4(corr);
    if (dw_http_req_setup(m->req, "GET", m->url, NULL, 0) || dw_http_req_odata_headers(m->req) ||
        dw_http_req_bearer(m->req, dv->token) || dw_http_req_header(m->req, "Prefer", prefer) ||
        dw_http_req_correlation_id(m->req, corr) || dw_http_multi_add(dv->multi, m->req)) {
        dv_backoff(dv, m, -1, "could not start the request (out of memory?)");
        return;
    }
    atomic_fetch_add(&dv->cap->requests, 1);
    m->state = DV_FETCH;
}

static void dv_done(dw_http_req_t *req, dw_err_t err, void *opaque)
{
    dv_t *dv = opaque;
    dv_map_t *m = dw_http_req_opaque(req);
    char why[600];
    if (err) {
        snprintf(why, sizeof(why), "request failed: %s (%s)", dw_http_req_errbuf(req),
                 dw_err2str(err));
        dv_backoff(dv, m, -1, why);
        return;
    }
    long status = dw_http_req_status(req);
    if (status == 200) {
        dv_page(dv, m);
        return;
    }
    size_t len;
    const char *body = dw_http_req_body(req, &len);
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(doc, "error"), "code"));
    const char *msg =
        json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    snprintf(why, sizeof(why), "HTTP %ld%s%s%s%.300s", status, code ? " " : "", code ? code : "",
             msg ? ": " : "", msg ? msg : "");
    if (status == 400 && code && m->position && m->url && strcmp(m->url, m->position) == 0 &&
        (strcmp(code, DV_E_EXPIRED) == 0 || strcmp(code, DV_E_BADTOKEN) == 0)) {
        DW_WARN(DV_FAC, "map %s: the change tracking token is no longer valid (%s); reading the "
                "whole table again (snapshot)", m->name, why);
        dv_set(&m->url, dv_strdup(m->initial));
        m->snapshot = true;
        m->rows_in_round = 0;
        m->state = DV_IDLE;
        m->next_at = dv_now();
    } else if (status == 401 && m->auth_retries++ < 2) {
        dw_auth_invalidate(dv->auth);
        m->state = DV_IDLE;
        m->next_at = dv_now();
    } else {
        dw_err_t cls = dw_http_status_err(status);
        if (!dw_err_is_retriable(cls))
            DW_ERROR(DV_FAC, "map %s: %s", m->name, why);
        dv_backoff(dv, m, dw_http_req_retry_after_ms(req), why);
        if (!dw_err_is_retriable(cls))
            m->backoff_ms = dv->backoff_max;
    }
    json_decref(doc);
}

/* ---- setup and loop ----------------------------------------------------------------------- */

static int dv_setup(dv_t *dv, capture_t *cap)
{
    char errstr[1024];
    const dw_conf_t *conf = cap->conf;
    dv->cap = cap;
    dw_err_t err;
    if (!(dv->sys = dw_system_new(conf, "dv", &err, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dw-capture: %s\n", errstr);
        return err == DW_ERR_CONFIG ? DW_EXIT_USAGE : DW_EXIT_FAILURE;
    }
    dv->auth = dw_system_auth(dv->sys);
    dv->api = dw_system_base(dv->sys);
    if (!(dv->multi = dw_http_multi_new(dw_conf_get_int(conf, "capture.max_concurrent"), errstr,
                                        sizeof(errstr))) ||
        !(dv->lookup_req = dw_http_req_new(dw_system_http_opts(dv->sys), errstr, sizeof(errstr))) ||
        !(dv->lookups = dw_dvlookup_new(cap->maps, DV_LOOKUP_CACHE_MAX, dv_get_row, dv))) {
        fprintf(stderr, "dw-capture: %s\n", errstr);
        return DW_EXIT_FAILURE;
    }
    dv->page_size = dw_conf_get_int(conf, "capture.page_size");
    dv->min_ms = dw_conf_get_int(conf, "capture.poll_interval_ms");
    dv->max_ms = dw_conf_get_int(conf, "capture.poll_max_interval_ms");
    if (dv->max_ms < dv->min_ms)
        dv->max_ms = dv->min_ms;
    dv->backoff_init = dw_conf_get_int(conf, "capture.backoff_initial_ms");
    dv->backoff_max = dw_conf_get_int(conf, "capture.backoff_max_ms");
    long budget = dw_conf_get_int(conf, "capture.request_budget_per_min");
    dv->budget_rate = (double)budget / 60.0;
    dv->budget_cap = dv->budget_rate * 10.0 > (double)cap->nactive ? dv->budget_rate * 10.0
                                                                    : (double)cap->nactive;
    dv->budget = dv->budget_cap;
    dv->budget_at = dv_now();

    if (!(dv->m = calloc(cap->nactive ? cap->nactive : 1, sizeof(*dv->m))))
        return DW_EXIT_FAILURE;
    dv->n = cap->nactive;
    for (size_t i = 0; i < dv->n; i++) {
        dv_map_t *m = &dv->m[i];
        m->map = cap->active[i];
        m->name = dw_map_name(m->map);
        capture_ack_init(&m->ack);
        dw_kafka_topic_name(m->topic, sizeof(m->topic), m->name, DW_KAFKA_TOPIC_DV, NULL, 0);
        size_t l = strlen(dv->api) + strlen(dw_map_dv_entity_set(m->map)) + 1;
        if (!(m->initial = malloc(l)) || !(m->req = dw_http_req_new(dw_system_http_opts(dv->sys), errstr, sizeof(errstr))) ||
            !(m->ids = json_array()) || !(m->recent = json_object()))
            return DW_EXIT_FAILURE;
        snprintf(m->initial, l, "%s%s", dv->api, dw_map_dv_entity_set(m->map));
        dw_http_req_set_opaque(m->req, m);
        if (capture_checkpoint_get(cap, m->name, "dv", &m->position, errstr, sizeof(errstr))) {
            fprintf(stderr, "dw-capture: could not read the checkpoint of %s: %s\n", m->name,
                    errstr);
            return DW_EXIT_FAILURE;
        }
        m->snapshot = m->position == NULL;
        m->url = dv_strdup(m->position ? m->position : m->initial);
        m->interval_ms = dv->min_ms;
        m->next_at = dv_now();
        m->max_version = dv_token_version(m->position);
        DW_INFO(DV_FAC, "map %s: %s", m->name,
                m->position ? "resuming from the stored delta link" : "no checkpoint: full read");
    }
    return DW_CLI_CONTINUE;
}

static void dv_teardown(dv_t *dv)
{
    for (size_t i = 0; i < dv->n; i++) {
        dv_map_t *m = &dv->m[i];
        if (m->state == DV_FETCH && m->req)
            dw_http_multi_remove(dv->multi, m->req);
        dw_http_req_destroy(m->req);
        capture_ack_destroy(&m->ack);
        free(m->initial);
        free(m->position);
        free(m->url);
        free(m->ack_position);
        free(m->ack_next);
        json_decref(m->ids);
        json_decref(m->recent);
    }
    free(dv->m);
    dw_http_multi_destroy(dv->multi);
    dw_http_req_destroy(dv->lookup_req);
    dw_system_destroy(dv->sys);
    dw_dvlookup_destroy(dv->lookups);
    memset(dv->token, 0, sizeof(dv->token));
}

int capture_dv_run(capture_t *cap)
{
    dv_t dv = {0};
    int rc = dv_setup(&dv, cap);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    rc = DW_EXIT_OK;
    DW_INFO(DV_FAC, "capturing %zu map(s) from %s", dv.n, dv.api);
    double stop_deadline = 0;
    for (;;) {
        bool stopping = dw_signal_stop_requested();
        double now = dv_now();
        if (stopping && stop_deadline == 0) {
            stop_deadline = now + 15.0;
            DW_INFO(DV_FAC, "stopping: finishing the requests and pages in flight");
        }
        dv_budget_refill(&dv, now);
        bool busy = false;
        for (size_t i = 0; i < dv.n; i++) {
            dv_map_t *m = &dv.m[i];
            if (m->state == DV_ACK && capture_ack_pending(&m->ack) == 0)
                dv_acked(&dv, m);
            if (m->state == DV_IDLE && !stopping && now >= m->next_at) {
                if (dv_budget_take(&dv))
                    dv_start(&dv, m);
            }
            if (m->state != DV_IDLE)
                busy = true;
        }
        if (stopping && (!busy || now > stop_deadline))
            break;
        int running = dw_http_multi_run(dv.multi, 20, dv_done, &dv);
        rd_kafka_poll(cap->rk, running ? 0 : 20);
    }
out:
    dv_teardown(&dv);
    return rc;
}
