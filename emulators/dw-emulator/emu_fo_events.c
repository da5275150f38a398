/*
 * emu_fo_events: the data-events outbox and its delivery thread (libcurl, one easy handle per
 * endpoint, used by that thread only). The payload follows the Dataverse RemoteExecutionContext
 * JSON that data events use: MessageName, PrimaryEntityName, PrimaryEntityId, InputParameters
 * [Target] (the record, an Entity; an EntityReference for Delete), PreEntityImages [PreImage]
 * for updates and deletes; date fields that are null are omitted.
 */
#include "emu_fo_events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_time.h"
#include "emu_fo_store.h"

#define EV_MAX_ENDPOINTS 16
#define EV_BATCH         100
#define EV_SQL_MAX       1024

typedef struct {
    char *url;
    long long position;  /* last delivered outbox seq */
    long long delivered;
    long long attempts;  /* consecutive failures of the row at position+1 */
    char last_error[256];
    char last_error_at[32];
    long long next_ms;   /* monotonic ms of the next attempt */
    int backoff_ms;
    CURL *curl;          /* delivery thread only */
} ev_endpoint_t;

struct emu_fo_events_s {
    emu_store_t *st;
    char *auth_header;
    int retry_initial_ms, retry_max_ms, timeout_ms;
    ev_endpoint_t ep[EV_MAX_ENDPOINTS];
    size_t nep;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, stop, wake, started;
    unsigned long long gen; /* bumped by reset: a pass of an older generation changes nothing */
    pthread_t thread;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void uuid_new(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static void table_name(const emu_store_t *st, const char *table, char *out, size_t size)
{
    snprintf(out, size, "\"%s\".\"%s\"", emu_store_schema(st), table);
}

static dw_err_t ev_ddl(emu_fo_events_t *ev, char *errstr, size_t n)
{
    dw_pg_t *pg = emu_store_acquire(ev->st, errstr, n);
    if (!pg)
        return DW_ERR_PG_CONN;
    char ob[300], cu[300], sql[EV_SQL_MAX];
    table_name(ev->st, "_fo_outbox", ob, sizeof(ob));
    table_name(ev->st, "_fo_event_cursor", cu, sizeof(cu));
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS %s (seq bigserial PRIMARY KEY, entity text NOT NULL,"
             " message text NOT NULL, payload jsonb NOT NULL, created timestamptz NOT NULL DEFAULT now())",
             ob);
    dw_err_t err = dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, n);
    if (!err) {
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS %s (endpoint text PRIMARY KEY, seq bigint NOT NULL)", cu);
        err = dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, n);
    }
    for (size_t i = 0; i < ev->nep && !err; i++) {
        PGresult *res = NULL;
        snprintf(sql, sizeof(sql), "SELECT seq FROM %s WHERE endpoint = $1", cu);
        const char *p[1] = {ev->ep[i].url};
        err = dw_pg_exec(pg, sql, 1, p, &res, errstr, n);
        if (!err) {
            pthread_mutex_lock(&ev->mu);
            ev->ep[i].position = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
            pthread_mutex_unlock(&ev->mu);
        }
        PQclear(res);
    }
    emu_store_release(ev->st, pg);
    return err;
}

emu_fo_events_t *emu_fo_events_new(emu_store_t *st, const emu_fo_events_conf_t *conf, char *errstr,
                                   size_t errstr_size)
{
    emu_fo_events_t *ev = calloc(1, sizeof(*ev));
    if (!ev) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&ev->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ev->cv, &ca);
    pthread_condattr_destroy(&ca);
    ev->st = st;
    ev->retry_initial_ms = conf->retry_initial_ms > 0 ? conf->retry_initial_ms : 200;
    ev->retry_max_ms = conf->retry_max_ms >= ev->retry_initial_ms ? conf->retry_max_ms : 30000;
    ev->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 10000;
    if (conf->auth_header && *conf->auth_header) {
        const char *colon = strchr(conf->auth_header, ':');
        if (!colon || colon == conf->auth_header) {
            dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                    "emulator.fo.event_auth_header must be \"Name: value\"");
            goto fail;
        }
        ev->auth_header = strdup(conf->auth_header);
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (*v)
            dw_log_add_secret(v);
    }
    if (conf->endpoints && *conf->endpoints) {
        char *copy = strdup(conf->endpoints), *save = NULL;
        for (char *u = copy ? strtok_r(copy, ",", &save) : NULL; u; u = strtok_r(NULL, ",", &save)) {
            while (*u == ' ')
                u++;
            size_t l = strlen(u);
            while (l && u[l - 1] == ' ')
                u[--l] = '\0';
            if (!l)
                continue;
            if (ev->nep == EV_MAX_ENDPOINTS || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)) {
                dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                        "emulator.fo.event_endpoints: '%s' is not an http(s) URL (at most %d endpoints)",
                        u, EV_MAX_ENDPOINTS);
                free(copy);
                goto fail;
            }
            ev->ep[ev->nep].url = strdup(u);
            ev->ep[ev->nep].backoff_ms = ev->retry_initial_ms;
            ev->nep++;
        }
        free(copy);
    }
    if (ev_ddl(ev, errstr, errstr_size))
        goto fail;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return ev;
fail:
    emu_fo_events_destroy(ev);
    return NULL;
}

/* ---- payload ---------------------------------------------------------------------------------- */

static json_t *kv(const char *key, json_t *value)
{
    return json_pack("{s:s,s:o}", "key", key, "value", value ? value : json_null());
}

static json_t *key_attributes(const emu_table_t *t, json_t *out)
{
    json_t *ka = json_array(), *key = json_object_get(t->meta, "key");
    for (size_t i = 0; i < json_array_size(key); i++) {
        const char *k = json_string_value(json_array_get(key, i));
        json_t *v = json_object_get(out, k);
        json_array_append_new(ka, kv(k, v ? json_incref(v) : NULL));
    }
    return ka;
}

static json_t *entity(const emu_table_t *t, json_t *db, const char *guid)
{
    json_t *out = emu_fo_row_out(t, db, true), *attrs = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(out, k, v)
    {
        json_array_append_new(attrs, kv(k, json_incref(v)));
    }
    char rv[32];
    snprintf(rv, sizeof(rv), "%lld", emu_fo_row_version(db));
    json_t *e = json_pack("{s:s,s:o,s:n,s:[],s:s,s:o,s:s,s:[],s:s}", "__type",
                          "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "Attributes", attrs,
                          "EntityState", "FormattedValues", "Id", guid, "KeyAttributes",
                          key_attributes(t, out), "LogicalName", t->name, "RelatedEntities",
                          "RowVersion", rv);
    json_decref(out);
    return e;
}

static json_t *entity_reference(const emu_table_t *t, json_t *db, const char *guid)
{
    json_t *out = emu_fo_row_out(t, db, true);
    json_t *e = json_pack("{s:s,s:s,s:o,s:s,s:n,s:n}", "__type",
                          "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts", "Id", guid,
                          "KeyAttributes", key_attributes(t, out), "LogicalName", t->name, "Name",
                          "RowVersion");
    json_decref(out);
    return e;
}

json_t *emu_fo_event_build(const emu_table_t *t, const char *message, json_t *after, json_t *before,
                           const char *correlation_id, long long now_ms)
{
    char guid[37], corr[37], op[37], req[37], created[48];
    json_t *rec = after ? after : before;
    emu_fo_record_guid(t, rec, guid);
    uuid_new(op);
    uuid_new(req);
    if (correlation_id && *correlation_id)
        snprintf(corr, sizeof(corr), "%.36s", correlation_id);
    else
        uuid_new(corr);
    snprintf(created, sizeof(created), "/Date(%lld)/", now_ms);
    bool del = strcmp(message, "Delete") == 0;
    json_t *target = del ? entity_reference(t, before, guid) : entity(t, after, guid);
    json_t *pre = json_array();
    if (before)
        json_array_append_new(pre, kv("PreImage", entity(t, before, guid)));
    const char *zero = "00000000-0000-0000-0000-000000000000";
    json_t *e = json_pack(
        "{s:s,s:s,s:i,s:s,s:[o],s:b,s:b,s:b,s:i,s:s,s:i,s:s,s:s,s:s,s:s,s:[],s:n,s:[],s:o,s:s,s:s,s:s,s:s,s:[],s:i,s:s}",
        "BusinessUnitId", zero, "CorrelationId", corr, "Depth", 1, "InitiatingUserId", zero,
        "InputParameters", kv("Target", target), "IsExecutingOffline", 0, "IsInTransaction", 0,
        "IsOfflinePlayback", 0, "IsolationMode", 1, "MessageName", message, "Mode", 1,
        "OperationCreatedOn", created, "OperationId", op, "OrganizationId", zero,
        "OrganizationName", "dw-emulator", "OutputParameters", "ParentContext", "PostEntityImages",
        "PreEntityImages", pre, "PrimaryEntityId", guid, "PrimaryEntityName", t->name, "RequestId",
        req, "SecondaryEntityName", "none", "SharedVariables", "Stage", 40, "UserId", zero);
    return e;
}

dw_err_t emu_fo_events_record(emu_fo_events_t *ev, dw_pg_t *pg, const emu_table_t *t,
                              const char *message, json_t *after, json_t *before,
                              const char *correlation_id, char *errstr, size_t errstr_size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *e = emu_fo_event_build(t, message, after, before, correlation_id,
                                   (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    char *text = e ? dw_mapper_dumps(e, 0, NULL) : NULL;
    json_decref(e);
    if (!text)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    char ob[300], sql[EV_SQL_MAX];
    table_name(ev->st, "_fo_outbox", ob, sizeof(ob));
    snprintf(sql, sizeof(sql), "INSERT INTO %s (entity, message, payload) VALUES ($1, $2, $3::jsonb)", ob);
    const char *p[3] = {t->name, message, text};
    dw_err_t err = dw_pg_exec(pg, sql, 3, p, NULL, errstr, errstr_size);
    free(text);
    return err;
}

void emu_fo_events_notify(emu_fo_events_t *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->wake = true;
    pthread_cond_signal(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

/* ---- delivery --------------------------------------------------------------------------------- */

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

/* POST one payload; 0 on a 2xx, otherwise an error text in err. */
static int post_one(emu_fo_events_t *ev, ev_endpoint_t *ep, const char *payload, const char *corr,
                    char *err, size_t err_size)
{
    if (!ep->curl && !(ep->curl = curl_easy_init())) {
        snprintf(err, err_size, "could not create a curl handle");
        return -1;
    }
    CURL *c = ep->curl;
    char ebuf[CURL_ERROR_SIZE] = "", ch[128];
    struct curl_slist *hl = NULL;
    hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    snprintf(ch, sizeof(ch), "x-ms-correlation-request-id: %s", corr ? corr : "");
    hl = curl_slist_append(hl, ch);
    if (ev->auth_header)
        hl = curl_slist_append(hl, ev->auth_header);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, ep->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ev->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(ev->timeout_ms < 5000 ? ev->timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    int rc = -1;
    if (cc != CURLE_OK) {
        snprintf(err, err_size, "%s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
            rc = 0;
        else
            snprintf(err, err_size, "HTTP %ld", status);
    }
    curl_slist_free_all(hl);
    return rc;
}

static void now_iso(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void ep_fail(emu_fo_events_t *ev, ev_endpoint_t *ep, unsigned long long gen, const char *why)
{
    pthread_mutex_lock(&ev->mu);
    if (gen == ev->gen) {
        ep->attempts++;
        snprintf(ep->last_error, sizeof(ep->last_error), "%s", why);
        now_iso(ep->last_error_at, sizeof(ep->last_error_at));
        ep->next_ms = mono_ms() + ep->backoff_ms;
        ep->backoff_ms = ep->backoff_ms * 2 > ev->retry_max_ms ? ev->retry_max_ms : ep->backoff_ms * 2;
    }
    pthread_mutex_unlock(&ev->mu);
}

/* Deliver what is pending for one endpoint, in order, stopping at the first failure. */
static void deliver(emu_fo_events_t *ev, ev_endpoint_t *ep)
{
    char errstr[512], ob[300], cu[300], sql[EV_SQL_MAX], pos[32];
    pthread_mutex_lock(&ev->mu);
    unsigned long long gen = ev->gen;
    long long position = ep->position;
    bool due = mono_ms() >= ep->next_ms;
    pthread_mutex_unlock(&ev->mu);
    if (!due)
        return;
    dw_pg_t *pg = emu_store_acquire(ev->st, errstr, sizeof(errstr));
    if (!pg) {
        ep_fail(ev, ep, gen, "the database is unavailable");
        return;
    }
    table_name(ev->st, "_fo_outbox", ob, sizeof(ob));
    table_name(ev->st, "_fo_event_cursor", cu, sizeof(cu));
    for (bool more = true; more;) {
        PGresult *res = NULL;
        snprintf(sql, sizeof(sql),
                 "SELECT seq, payload::text, payload->>'CorrelationId' FROM %s WHERE seq > $1 ORDER BY seq LIMIT %d",
                 ob, EV_BATCH);
        snprintf(pos, sizeof(pos), "%lld", position);
        const char *p[1] = {pos};
        if (dw_pg_exec(pg, sql, 1, p, &res, errstr, sizeof(errstr))) {
            ep_fail(ev, ep, gen, "could not read the outbox");
            PQclear(res);
            break;
        }
        int nt = PQntuples(res);
        more = nt == EV_BATCH;
        for (int i = 0; i < nt; i++) {
            char why[300];
            pthread_mutex_lock(&ev->mu);
            bool stop = ev->stop || gen != ev->gen;
            pthread_mutex_unlock(&ev->mu);
            if (stop) {
                more = false;
                break;
            }
            if (post_one(ev, ep, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), why, sizeof(why))) {
                DW_WARN("events", "delivery to %s failed: %s (outbox row %s)", ep->url, why,
                        PQgetvalue(res, i, 0));
                ep_fail(ev, ep, gen, why);
                more = false;
                break;
            }
            position = strtoll(PQgetvalue(res, i, 0), NULL, 10);
            /* the position is stored under the lock, so a reset cannot interleave */
            pthread_mutex_lock(&ev->mu);
            if (gen == ev->gen) {
                char q[EV_SQL_MAX];
                snprintf(q, sizeof(q),
                         "INSERT INTO %s (endpoint, seq) VALUES ($1, $2) ON CONFLICT (endpoint) DO UPDATE SET seq = EXCLUDED.seq",
                         cu);
                char sv[32];
                snprintf(sv, sizeof(sv), "%lld", position);
                const char *cp[2] = {ep->url, sv};
                if (dw_pg_exec(pg, q, 2, cp, NULL, errstr, sizeof(errstr)))
                    DW_WARN("events", "could not store the position of %s: %s", ep->url, errstr);
                ep->position = position;
                ep->delivered++;
                ep->attempts = 0;
                ep->backoff_ms = ev->retry_initial_ms;
                ep->next_ms = 0;
            } else {
                more = false;
            }
            bool stale = gen != ev->gen;
            pthread_mutex_unlock(&ev->mu);
            if (stale)
                break;
        }
        PQclear(res);
    }
    emu_store_release(ev->st, pg);
}

static void *ev_thread(void *arg)
{
    emu_fo_events_t *ev = arg;
    for (;;) {
        pthread_mutex_lock(&ev->mu);
        bool stop = ev->stop;
        ev->wake = false;
        pthread_mutex_unlock(&ev->mu);
        if (stop)
            break;
        for (size_t i = 0; i < ev->nep; i++)
            deliver(ev, &ev->ep[i]);
        pthread_mutex_lock(&ev->mu);
        long long wait = 1000, now = mono_ms();
        for (size_t i = 0; i < ev->nep; i++)
            if (ev->ep[i].next_ms > now && ev->ep[i].next_ms - now < wait)
                wait = ev->ep[i].next_ms - now;
        if (!ev->wake && !ev->stop) {
            struct timespec ts = dw_time_deadline(CLOCK_MONOTONIC, wait);
            pthread_cond_timedwait(&ev->cv, &ev->mu, &ts);
        }
        pthread_mutex_unlock(&ev->mu);
    }
    for (size_t i = 0; i < ev->nep; i++) {
        if (ev->ep[i].curl)
            curl_easy_cleanup(ev->ep[i].curl);
        ev->ep[i].curl = NULL;
    }
    return NULL;
}

dw_err_t emu_fo_events_start(emu_fo_events_t *ev, char *errstr, size_t errstr_size)
{
    if (ev->nep == 0)
        return DW_OK;
    if (pthread_create(&ev->thread, NULL, ev_thread, ev) != 0)
        return dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "could not start the delivery thread");
    ev->started = true;
    return DW_OK;
}

void emu_fo_events_destroy(emu_fo_events_t *ev)
{
    if (!ev)
        return;
    if (ev->started) {
        pthread_mutex_lock(&ev->mu);
        ev->stop = true;
        pthread_cond_signal(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        pthread_join(ev->thread, NULL);
    }
    for (size_t i = 0; i < ev->nep; i++)
        free(ev->ep[i].url);
    free(ev->auth_header);
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    free(ev);
}

dw_err_t emu_fo_events_reset(emu_fo_events_t *ev, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&ev->mu);
    ev->gen++;
    for (size_t i = 0; i < ev->nep; i++) {
        ev->ep[i].position = 0;
        ev->ep[i].attempts = 0;
        ev->ep[i].next_ms = 0;
        ev->ep[i].backoff_ms = ev->retry_initial_ms;
        ev->ep[i].last_error[0] = '\0';
        ev->ep[i].last_error_at[0] = '\0';
    }
    pthread_mutex_unlock(&ev->mu);
    dw_err_t err = ev_ddl(ev, errstr, errstr_size);
    emu_fo_events_notify(ev);
    return err;
}

json_t *emu_fo_events_state(emu_fo_events_t *ev)
{
    char errstr[256], ob[300], sql[EV_SQL_MAX];
    long long total = -1, maxseq = 0;
    json_t *eps = json_array();
    table_name(ev->st, "_fo_outbox", ob, sizeof(ob));
    dw_pg_t *pg = emu_store_acquire(ev->st, errstr, sizeof(errstr));
    long long pending[EV_MAX_ENDPOINTS];
    pthread_mutex_lock(&ev->mu);
    long long pos[EV_MAX_ENDPOINTS];
    for (size_t i = 0; i < ev->nep; i++)
        pos[i] = ev->ep[i].position;
    pthread_mutex_unlock(&ev->mu);
    for (size_t i = 0; i < ev->nep; i++)
        pending[i] = -1;
    if (pg) {
        PGresult *res = NULL;
        snprintf(sql, sizeof(sql), "SELECT count(*), coalesce(max(seq), 0) FROM %s", ob);
        if (!dw_pg_exec(pg, sql, 0, NULL, &res, errstr, sizeof(errstr))) {
            total = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            maxseq = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        }
        PQclear(res);
        for (size_t i = 0; i < ev->nep; i++) {
            res = NULL;
            char p0[32];
            snprintf(p0, sizeof(p0), "%lld", pos[i]);
            snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE seq > $1", ob);
            const char *p[1] = {p0};
            if (!dw_pg_exec(pg, sql, 1, p, &res, errstr, sizeof(errstr)))
                pending[i] = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            PQclear(res);
        }
        emu_store_release(ev->st, pg);
    }
    pthread_mutex_lock(&ev->mu);
    long long now = mono_ms();
    for (size_t i = 0; i < ev->nep; i++) {
        ev_endpoint_t *ep = &ev->ep[i];
        json_array_append_new(
            eps, json_pack("{s:s,s:I,s:I,s:I,s:I,s:s?,s:s?,s:I}", "url", ep->url, "delivered",
                           (json_int_t)ep->delivered, "pending", (json_int_t)pending[i], "position",
                           (json_int_t)ep->position, "attempts", (json_int_t)ep->attempts,
                           "last_error", ep->last_error[0] ? ep->last_error : NULL, "last_error_at",
                           ep->last_error_at[0] ? ep->last_error_at : NULL, "retry_in_ms",
                           (json_int_t)(ep->next_ms > now ? ep->next_ms - now : 0)));
    }
    pthread_mutex_unlock(&ev->mu);
    return json_pack("{s:I,s:I,s:o}", "outbox_rows", (json_int_t)total, "last_seq",
                     (json_int_t)maxseq, "endpoints", eps);
}
