/*
 * dwctl initial-sync: read every record of a map's source table page by page (F&O OData with
 * cross-company=true, the Dataverse Web API with odata.maxpagesize and @odata.nextLink) and
 * publish each as a `snapshot` event (the envelope dw-capture writes, common/dw_event) to the
 * capture topic dw.<map>.<source>, keyed by the canonical key. --all runs every map that reads
 * from the source in dependency order.
 *
 * The run's state lives in dw_initial_sync (migration 003): one row per map of the run with the
 * URL of the next page. It moves only after Kafka acknowledged every record of the page before
 * it, so --resume RUN continues at the first page not acknowledged: a page in flight when the run
 * stopped is published again (duplicates, same event ids), nothing is skipped. The next page is
 * fetched while Kafka acknowledges the current one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dw_auth.h"
#include "dw_dvlookup.h"
#include "dw_event.h"
#include "dw_http.h"
#include "dw_kafka.h"
#include "dw_log.h"
#include "dw_map.h"
#include "dw_mapper.h"
#include "dw_pg.h"
#include "dw_recordids.h"
#include "dw_sha256.h"
#include "dw_signal.h"
#include "dw_system.h"
#include "dwctl.h"
#include "dw_dlq.h"

#define IS_FAC          "initial-sync"
#define IS_MAX_MAPS     256
#define IS_RETRIES      8
#define IS_LOOKUP_MAX   100000
#define IS_TOKEN_MAX    8192

enum {
    OPT_MAP = 'm',
    OPT_FROM = 'f',
    OPT_COMPANY = 0x101,
    OPT_ALL,
    OPT_RESUME,
    OPT_PAGE_SIZE,
    OPT_MAX_PAGES,
    OPT_NO_PROGRESS,
};

typedef struct is_opts_s {
    dwctl_opts_t common;
    const char *maps[IS_MAX_MAPS];
    int nmaps;
    const char *from;
    const char *company;
    bool all;
    const char *resume;
    long page_size;  /* 0: the source's maximum */
    long max_pages;  /* 0: no limit (a test option: stop after N acknowledged pages) */
    bool no_progress;
} is_opts_t;

static is_opts_t is_opts;

/* One map of a run (a row of dw_initial_sync). */
typedef struct is_item_s {
    const dw_map_t *map;
    char *position; /* the next page's URL; NULL: the first */
    long long pages, records;
    char status[16];
} is_item_t;

/* What is in flight on Kafka: the records of one page. Served by the delivery report callback
 * on this thread (rd_kafka_poll), so no lock. */
typedef struct is_acks_s {
    long pending;
    long failed;
    char errstr[256];
} is_acks_t;

typedef struct is_s {
    dwctl_ctx_t *ctx;
    const is_opts_t *o;
    dw_map_side_t side;        /* the source */
    const char *source;        /* "fo" / "dv" */
    char run_id[37];
    const char *company;       /* borrowed (options or the run row) */
    dw_mapset_t *maps;
    dw_pg_t *pg;
    rd_kafka_t *rk;
    dw_system_t *sys;          /* the source's connection */
    dw_auth_t *auth;           /* borrowed from sys */
    dw_http_req_t *req;        /* pages */
    dw_http_req_t *lookup_req; /* dv lookups */
    char token[IS_TOKEN_MAX];
    const char *base;          /* <fo.url>/data/ or <dv.url>/<dv.api_path>/ (borrowed from sys) */
    long page_size;
    dw_dvlookup_t *lookups;    /* dv: lookup GUIDs -> key values, read on lookup_req */
    is_acks_t acks;
    char dlq_topic[DW_KAFKA_TOPIC_MAX + 1];
    bool tty;
    double started, last_progress;
    long long total;           /* rows of the current map, -1 when unknown */
    long long records_at_start;
    long long skipped;
} is_t;

static double is_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- options -------------------------------------------------------------------------------- */

static dw_err_t is_opt(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size)
{
    is_opts_t *o = opaque;
    char *end = NULL;
    long v;
    switch (opt) {
    case DWCTL_OPT_JSON:
        o->common.json = true;
        return DW_OK;
    case OPT_MAP:
        if (o->nmaps == IS_MAX_MAPS)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "--map: at most %d maps",
                           IS_MAX_MAPS);
        o->maps[o->nmaps++] = arg;
        return DW_OK;
    case OPT_FROM:
        if (strcmp(arg, "fo") != 0 && strcmp(arg, "dv") != 0)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--from: '%s' is not fo or dv", arg);
        o->from = arg;
        return DW_OK;
    case OPT_COMPANY:
        if (!*arg || strlen(arg) > 8)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--company: '%s' is not a company code", arg);
        o->company = arg;
        return DW_OK;
    case OPT_ALL:
        o->all = true;
        return DW_OK;
    case OPT_RESUME:
        o->resume = arg;
        return DW_OK;
    case OPT_PAGE_SIZE:
    case OPT_MAX_PAGES:
        v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 1 || v > 100000000)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--%s: '%s' is not a positive number",
                           opt == OPT_PAGE_SIZE ? "page-size" : "max-pages", arg);
        if (opt == OPT_PAGE_SIZE)
            o->page_size = v;
        else
            o->max_pages = v;
        return DW_OK;
    case OPT_NO_PROGRESS:
        o->no_progress = true;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

static const struct option is_longopts[] = {
    {"map", required_argument, NULL, OPT_MAP},
    {"from", required_argument, NULL, OPT_FROM},
    {"company", required_argument, NULL, OPT_COMPANY},
    {"all", no_argument, NULL, OPT_ALL},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
    {"max-pages", required_argument, NULL, OPT_MAX_PAGES},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    DWCTL_LONGOPT_JSON,
    {0},
};

static dw_cli_spec_t is_spec = {
    .name = "initial-sync",
    .synopsis = "--map MAP|--all --from fo|dv [--company C] | --resume RUN",
    .description =
        "Publish every record of a map's source table as a snapshot event to dw.<map>.<source> "
        "(F&O: /data/<set>?cross-company=true; Dataverse: pages of odata.maxpagesize). --all: "
        "every map that reads from the source, in dependency order. The run is recorded in "
        "PostgreSQL (dw_initial_sync) page by page once Kafka acknowledged the page; --resume "
        "RUN continues an interrupted run at its first unacknowledged page. Progress on stderr: "
        "a bar on a terminal, JSON lines otherwise. Configuration: fo.* / dv.* (URL and client "
        "credentials), kafka.*, pg.dsn. See docs/capture.md.",
    .options_help =
        "  -m, --map MAP            the map to sync; repeatable\n"
        "  -f, --from fo|dv         the source system\n"
        "      --company C          F&O only: records of one company (dataAreaId)\n"
        "      --all                every map that reads from the source\n"
        "      --resume RUN         continue run RUN (no other selection needed)\n"
        "      --page-size N        rows per page (default: F&O 10000, Dataverse 5000)\n"
        "      --max-pages N        stop after N acknowledged pages (testing; resumable)\n"
        "      --no-progress        no progress output\n"
        "      --json               the result as JSON on stdout\n",
    .shortopts = "m:f:",
    .longopts = is_longopts,
    .on_option = is_opt,
    .opaque = &is_opts,
};

/* ---- Kafka -------------------------------------------------------------------------------- */

static void is_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    is_t *s = opaque;
    if (!m->_private)
        return;
    s->acks.pending--;
    if (m->err && !s->acks.failed++)
        snprintf(s->acks.errstr, sizeof(s->acks.errstr), "%s: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
}

/* Serve delivery reports until the page is acknowledged (or failed). */
static dw_err_t is_acks_wait(is_t *s, char *errstr, size_t errstr_size)
{
    while (s->acks.pending > 0)
        rd_kafka_poll(s->rk, 100);
    if (s->acks.failed)
        return dw_errf(DW_ERR_KAFKA, errstr, errstr_size,
                       "Kafka did not acknowledge %ld record(s): %s", s->acks.failed,
                       s->acks.errstr);
    return DW_OK;
}

static dw_err_t is_topics_create(is_t *s, const is_item_t *items, size_t n, char *errstr,
                                 size_t errstr_size)
{
    const dw_conf_t *conf = s->ctx->conf;
    dw_err_t rc = DW_ERR_NOMEM;
    rd_kafka_t *admin = NULL;
    dw_kafka_topic_spec_t *specs = calloc(n + 1, sizeof(*specs));
    char(*names)[DW_KAFKA_TOPIC_MAX + 1] = calloc(n + 1, sizeof(*names));
    char retention[32], dlq_retention[32];
    snprintf(retention, sizeof(retention), "%lld", dw_conf_get_int(conf, "topics.retention_ms"));
    snprintf(dlq_retention, sizeof(dlq_retention), "%lld",
             dw_conf_get_int(conf, "topics.dlq_retention_ms"));
    const char *config[] = {"retention.ms", retention, NULL};
    const char *dlq_config[] = {"retention.ms", dlq_retention, NULL};
    int rf = (int)dw_conf_get_int(conf, "topics.replication_factor");
    if (!specs || !names)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *m = dw_map_name(items[i].map);
        char key[DW_KAFKA_MAP_MAX + 32];
        dw_kafka_topic_name(names[i], sizeof(names[i]), m,
                            s->side == DW_MAP_FO ? DW_KAFKA_TOPIC_FO : DW_KAFKA_TOPIC_DV, NULL, 0);
        snprintf(key, sizeof(key), "maps.%s.partitions", m);
        specs[i] = (dw_kafka_topic_spec_t){
            .name = names[i],
            .partitions = dw_conf_is_set(conf, key) ? (int)dw_conf_get_int(conf, key)
                                                    : (int)dw_conf_get_int(conf, "topics.partitions"),
            .replication_factor = rf,
            .config = config,
        };
    }
    snprintf(names[n], sizeof(names[n]), "%s", s->dlq_topic);
    specs[n] = (dw_kafka_topic_spec_t){
        .name = names[n], .partitions = 1, .replication_factor = rf, .config = dlq_config};
    if (!(admin = dw_kafka_admin_new(conf, errstr, errstr_size))) {
        rc = DW_ERR_CONFIG;
        goto out;
    }
    rc = dw_kafka_topics_create(admin, specs, n + 1, 30000, errstr, errstr_size);
out:
    if (admin)
        rd_kafka_destroy(admin);
    free(specs);
    free(names);
    return rc;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static json_t *is_lookup_get(const char *path, void *opaque);

/* The source's connection (common/dw_system), the two request handles and the lookup resolver. */
static dw_err_t is_connect(is_t *s, char *errstr, size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    if (!(s->sys = dw_system_new(s->ctx->conf, s->source, &rc, errstr, errstr_size)))
        return rc;
    s->auth = dw_system_auth(s->sys);
    s->base = dw_system_base(s->sys);
    const dw_http_opts_t *http = dw_system_http_opts(s->sys);
    if (!(s->req = dw_http_req_new(http, errstr, errstr_size)) ||
        !(s->lookup_req = dw_http_req_new(http, errstr, errstr_size)) ||
        !(s->lookups = dw_dvlookup_new(s->maps, IS_LOOKUP_MAX, is_lookup_get, s)))
        return DW_ERR_NOMEM;
    return DW_OK;
}

/* GET url on req with the token and OData headers, retrying retriable failures (Retry-After
 * honoured) and a 401 once with a new token. On DW_OK the body is the parsed 200 response (new). */
static dw_err_t is_get(is_t *s, dw_http_req_t *req, const char *url, bool paged, json_t **doc,
                       char *errstr, size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    long backoff = 500;
    bool reauth = false;
    *doc = NULL;
    for (int attempt = 0; attempt < IS_RETRIES; attempt++) {
        if (dw_signal_stop_requested())
            return dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size, "interrupted");
        if ((rc = dw_auth_token(s->auth, s->token, sizeof(s->token), errstr, errstr_size))) {
            if (!dw_err_is_retriable(rc))
                return rc;
            goto retry;
        }
        char prefer[64];
        snprintf(prefer, sizeof(prefer), "odata.maxpagesize=%ld", s->page_size);
        if ((rc = dw_http_req_setup(req, "GET", url, NULL, 0)) ||
            (rc = dw_http_req_odata_headers(req)) || (rc = dw_http_req_bearer(req, s->token)) ||
            (rc = dw_http_req_correlation_id(req, s->run_id)) ||
            (paged && (rc = dw_http_req_header(req, "Prefer", prefer))))
            return dw_errf(rc, errstr, errstr_size, "could not set up the request");
        if ((rc = dw_http_req_perform(req, errstr, errstr_size))) {
            if (!dw_err_is_retriable(rc))
                return rc;
            goto retry;
        }
        long status = dw_http_req_status(req);
        size_t len;
        const char *body = dw_http_req_body(req, &len);
        if (status == 200) {
            dw_mapper_error_t merr;
            if (!(*doc = dw_mapper_loadb(body, len, &merr)))
                return dw_errf(DW_ERR_PARSE, errstr, errstr_size, "GET %s: not JSON: %s", url,
                               merr.message);
            return DW_OK;
        }
        rc = dw_http_status_err(status);
        dw_errf(rc, errstr, errstr_size, "GET %s: HTTP %ld: %.300s", url, status, body);
        if (status == 401 && !reauth) {
            reauth = true;
            dw_auth_invalidate(s->auth);
            continue;
        }
        if (!dw_err_is_retriable(rc))
            return rc;
        long ra = dw_http_req_retry_after_ms(req);
        if (ra > backoff)
            backoff = ra;
    retry:
        DW_WARN(IS_FAC, "%s (retrying in %ld ms)", errstr, backoff);
        for (long waited = 0; waited < backoff && !dw_signal_stop_requested(); waited += 100) {
            if (s->rk)
                rd_kafka_poll(s->rk, 0);
            usleep(100000);
        }
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
    return rc ? rc : DW_ERR_UNAVAILABLE;
}

/* ---- Dataverse lookups ------------------------------------------------------------------------ */

/* Read one row for the lookup resolver (common/dw_dvlookup): path under the API base, on the
 * lookup handle, with is_get's retries. The parsed 200 body (new), NULL when it cannot be read. */
static json_t *is_lookup_get(const char *path, void *opaque)
{
    is_t *s = opaque;
    char url[2048], errstr[512];
    json_t *row = NULL;
    snprintf(url, sizeof(url), "%s%s", s->base, path);
    if (is_get(s, s->lookup_req, url, false, &row, errstr, sizeof(errstr)))
        return NULL;
    return row;
}

/* ---- run state ---------------------------------------------------------------------------- */

static dw_err_t is_state_put(is_t *s, const is_item_t *it, const char *status, const char *error,
                             const json_t *ids, char *errstr, size_t errstr_size)
{
    char pages[32], records[32];
    snprintf(pages, sizeof(pages), "%lld", it->pages);
    snprintf(records, sizeof(records), "%lld", it->records);
    dw_err_t rc = dw_pg_begin(s->pg, errstr, errstr_size);
    if (rc)
        return rc;
    /* Dataverse row ids -> keys, as dw-capture records them (deletes are resolved there) */
    if ((rc = dw_recordids_upsert(s->pg, dw_map_name(it->map), ids, errstr, errstr_size)))
        goto fail;
    const char *p[7] = {s->run_id, dw_map_name(it->map), status, pages, records, it->position,
                        error};
    rc = dw_pg_exec(s->pg,
                    "UPDATE dw_initial_sync SET status = $3, pages = $4::bigint, records ="
                    " $5::bigint, position = $6, error = $7, updated_at = now(), finished_at ="
                    " CASE WHEN $3 = 'done' THEN now() END WHERE run_id = $1 AND map = $2",
                    7, p, NULL, errstr, errstr_size);
    if (rc)
        goto fail;
    return dw_pg_commit(s->pg, errstr, errstr_size);
fail:
    dw_pg_rollback(s->pg, NULL, 0);
    return rc;
}

/* Store the state, reconnecting once when the connection was lost. */
static dw_err_t is_state_store(is_t *s, const is_item_t *it, const char *status,
                               const char *error, const json_t *ids, char *errstr,
                               size_t errstr_size)
{
    dw_err_t rc = is_state_put(s, it, status, error, ids, errstr, errstr_size);
    if (rc == DW_ERR_PG_CONN && dw_pg_reset(s->pg, NULL, 0) == DW_OK)
        rc = is_state_put(s, it, status, error, ids, errstr, errstr_size);
    return rc;
}

/* ---- progress ------------------------------------------------------------------------------- */

static void is_progress(is_t *s, const is_item_t *it, bool final)
{
    double now = is_now();
    if (s->o->no_progress || (!final && now - s->last_progress < (s->tty ? 0.2 : 1.0)))
        return;
    s->last_progress = now;
    double el = now - s->started;
    long long done = it->records - s->records_at_start;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = s->total >= 0 && rate > 0 && s->total > it->records
                     ? (double)(s->total - it->records) / rate
                     : 0;
    if (s->tty) {
        char bar[31];
        int fill = s->total > 0 ? (int)(30.0 * (double)it->records / (double)s->total) : 0;
        if (fill > 30)
            fill = 30;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        char total[32] = "?";
        if (s->total >= 0)
            snprintf(total, sizeof(total), "%lld", s->total);
        fprintf(stderr, "\r%-24.24s [%s] %lld/%s records %.0f/s ETA %02d:%02d:%02d %s",
                dw_map_name(it->map), s->total >= 0 ? bar : "..............................",
                it->records, total, rate, (int)(eta / 3600), (int)(eta / 60) % 60,
                (int)eta % 60, final ? "\n" : "\033[K");
        fflush(stderr);
    } else {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:b}", "run", s->run_id,
                              "map", dw_map_name(it->map), "source", s->source, "status",
                              it->status, "pages", (json_int_t)it->pages, "records",
                              (json_int_t)it->records, "rate", rate, "final", final);
        if (j && s->total >= 0) {
            json_object_set_new(j, "total", json_integer(s->total));
            json_object_set_new(j, "eta_s", json_real(eta));
        }
        char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (t)
            fprintf(stderr, "%s\n", t);
        free(t);
        json_decref(j);
    }
}

/* ---- one map -------------------------------------------------------------------------------- */

static char *is_first_url(is_t *s, const dw_map_t *map, bool count)
{
    char *url = NULL, *lit = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&url, &len);
    if (!f)
        return NULL;
    if (s->side == DW_MAP_FO) {
        fprintf(f, "%s%s%s?cross-company=true", s->base, dw_map_fo_entity_set(map),
                count ? "/$count" : "");
        /* the literal quoted (quotes doubled) and percent-encoded */
        if (s->company && (lit = dw_http_odata_literal(s->company)))
            fprintf(f, "&$filter=dataAreaId%%20eq%%20%s", lit);
    } else {
        fprintf(f, "%s%s%s", s->base, dw_map_dv_entity_set(map), count ? "?$top=1&$count=true" : "");
    }
    fclose(f);
    free(lit);
    return url;
}

/* The number of rows to read (F&O $count; Dataverse @odata.count when below its 5,000 cap), or -1. */
static long long is_count(is_t *s, const dw_map_t *map)
{
    char errstr[512];
    long long n = -1;
    char *url = is_first_url(s, map, true);
    if (!url)
        return -1;
    if (s->side == DW_MAP_FO) {
        char tok[IS_TOKEN_MAX];
        if (dw_auth_token(s->auth, tok, sizeof(tok), errstr, sizeof(errstr)) == DW_OK &&
            dw_http_req_setup(s->lookup_req, "GET", url, NULL, 0) == DW_OK &&
            dw_http_req_bearer(s->lookup_req, tok) == DW_OK &&
            dw_http_req_perform(s->lookup_req, errstr, sizeof(errstr)) == DW_OK &&
            dw_http_req_status(s->lookup_req) == 200) {
            const char *b = dw_http_req_body(s->lookup_req, NULL);
            char *end;
            long long v = strtoll(b, &end, 10);
            if (end != b)
                n = v;
        }
    } else {
        json_t *doc = NULL;
        if (is_get(s, s->lookup_req, url, false, &doc, errstr, sizeof(errstr)) == DW_OK &&
            !json_is_true(json_object_get(doc,
                                          "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded")) &&
            json_is_integer(json_object_get(doc, "@odata.count")))
            n = json_integer_value(json_object_get(doc, "@odata.count"));
        json_decref(doc);
    }
    free(url);
    return n;
}

/* The version of a row: F&O @odata.etag W/"<n>", Dataverse versionnumber. */
static void is_row_version(is_t *s, const json_t *row, char *out, size_t size)
{
    const json_t *v = json_object_get(row, s->side == DW_MAP_DV ? "versionnumber" : "@odata.etag");
    const char *t = json_string_value(v);
    snprintf(out, size, "0");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    } else if (t) {
        while (*t && !isdigit((unsigned char)*t))
            t++;
        size_t n = strspn(t, "0123456789");
        while (n > 1 && *t == '0') {
            t++;
            n--;
        }
        if (n && n < size)
            snprintf(out, size, "%.*s", (int)n, t);
    }
}

/* Produce the rows of a page; the page's acks are counted in s->acks. *ids: dv row ids. */
static dw_err_t is_produce_page(is_t *s, is_item_t *it, json_t *rows, json_t *ids, long *produced,
                                char *errstr, size_t errstr_size)
{
    const char *mname = dw_map_name(it->map);
    char topic[DW_KAFKA_TOPIC_MAX + 1], capture_ts[32], version[32], event_id[37];
    dw_kafka_topic_name(topic, sizeof(topic), mname,
                        s->side == DW_MAP_FO ? DW_KAFKA_TOPIC_FO : DW_KAFKA_TOPIC_DV, NULL, 0);
    dw_event_now_rfc3339(capture_ts);
    dw_map_dir_t dir = s->side == DW_MAP_FO ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
    const char *idcol = s->side == DW_MAP_DV ? dw_map_dv_id_column(it->map) : NULL;
    size_t i;
    json_t *row;
    dw_err_t rc = DW_OK;
    *produced = 0;
    json_array_foreach(rows, i, row)
    {
        if (!json_is_object(row))
            continue;
        json_t *key = NULL;
        char *ck = NULL, *text = NULL;
        size_t len = 0;
        const char *id = idcol ? json_string_value(json_object_get(row, idcol)) : NULL;
        if (s->side == DW_MAP_DV)
            dw_dvlookup_fill_row(s->lookups, it->map, row);
        is_row_version(s, row, version, sizeof(version));
        json_object_del(row, "@odata.etag");
        dw_mapper_error_t merr;
        if (dw_mapper_source_key(it->map, dir, row, &key, &ck, &merr)) {
            /* kept on dw._capture.dlq as dw-capture does; the run goes on */
            char *raw = json_dumps(row, JSON_COMPACT);
            rd_kafka_headers_t *orig =
                dw_kafka_headers_new(DW_KAFKA_HDR_MAP, mname, DW_KAFKA_HDR_SOURCE, s->source, NULL);
            dw_dlq_info_t info = {.cls = DW_DLQ_CLASS_POISON,
                                  .reason = dw_mapper_reason_name(merr.reason),
                                  .field = merr.field,
                                  .message = merr.message,
                                  .stage = "initial-sync"};
            rd_kafka_headers_t *h = orig ? dw_dlq_headers(orig, &info) : NULL;
            if (orig)
                rd_kafka_headers_destroy(orig);
            dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
            msg.topic = s->dlq_topic;
            msg.value = raw;
            msg.value_len = raw ? strlen(raw) : 0;
            msg.msg_opaque = &s->acks;
            s->acks.pending++;
            if ((rc = dw_kafka_produce(s->rk, &msg, h, 30000, errstr, errstr_size)))
                s->acks.pending--;
            DW_WARN(IS_FAC, "map %s: a row has no record key (%s); kept on %s", mname,
                    merr.message, s->dlq_topic);
            s->skipped++;
            free(raw);
            if (rc)
                return rc;
            continue;
        }
        const char *ts = s->side == DW_MAP_DV ? json_string_value(json_object_get(row, "modifiedon"))
                                              : NULL;
        /* as dw-capture: without a row version the content tells snapshots apart */
        char bodyhash[DW_SHA256_HEX_SIZE] = "";
        if (strcmp(version, "0") == 0) {
            char *t = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
            if (t)
                dw_sha256_hex(t, strlen(t), bodyhash);
            free(t);
        }
        const char *parts[] = {mname, s->source, "snapshot", id ? id : ck, version, bodyhash, NULL};
        dw_event_uuid_from(event_id, parts);
        text = dw_event_build(event_id, mname, s->source, "snapshot", key,
                              dw_dvlookup_guid_ok(id) ? id : NULL, row, version, ts ? ts : capture_ts,
                              capture_ts, s->run_id, &len);
        if (!text) {
            rc = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        } else {
            dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
            msg.topic = topic;
            msg.key = ck;
            msg.key_len = strlen(ck);
            msg.value = text;
            msg.value_len = len;
            msg.msg_opaque = &s->acks;
            s->acks.pending++;
            rc = dw_kafka_produce(s->rk, &msg,
                                  dw_kafka_headers_dw(mname, s->source, "snapshot", s->run_id),
                                  30000, errstr, errstr_size);
            if (rc)
                s->acks.pending--;
            else
                (*produced)++;
        }
        if (rc == DW_OK && ids && dw_dvlookup_guid_ok(id))
            json_array_append_new(ids, json_pack("{s:s, s:s, s:O}", "id", id, "ck", ck, "key", key));
        free(text);
        free(ck);
        json_decref(key);
        if (rc)
            return rc;
    }
    return DW_OK;
}

/* Sync one map from it->position (NULL: the first page). Returns DW_OK when done,
 * DW_ERR_INTERRUPTED when stopped (signal or --max-pages; resumable), another error on failure. */
static dw_err_t is_run_map(is_t *s, is_item_t *it, long long *pages_left, char *errstr,
                           size_t errstr_size)
{
    dw_err_t rc = DW_OK, fetch_rc = DW_OK;
    json_t *doc = NULL, *next_doc = NULL, *ids = NULL;
    char *url = it->position ? strdup(it->position) : is_first_url(s, it->map, false);
    char fetch_err[1024] = "";
    if (!url)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    if (s->side == DW_MAP_DV && !(ids = json_array()))
        goto nomem;
    snprintf(it->status, sizeof(it->status), "running");
    if ((rc = is_state_store(s, it, "running", NULL, NULL, errstr, errstr_size)))
        goto out;
    s->total = is_count(s, it->map);
    s->started = is_now();
    s->last_progress = 0;
    s->records_at_start = it->records;
    is_progress(s, it, false);
    if ((rc = is_get(s, s->req, url, true, &doc, errstr, errstr_size)))
        goto out;
    for (;;) {
        json_t *rows = json_object_get(doc, "value");
        if (!json_is_array(rows)) {
            rc = dw_errf(DW_ERR_PARSE, errstr, errstr_size, "GET %s: not an OData collection",
                         url);
            goto out;
        }
        const char *nl = json_string_value(json_object_get(doc, "@odata.nextLink"));
        char *next = nl ? strdup(nl) : NULL;
        if (nl && !next)
            goto nomem;
        s->acks = (is_acks_t){0};
        json_array_clear(ids);
        long produced = 0;
        rc = is_produce_page(s, it, rows, ids, &produced, errstr, errstr_size);
        /* fetch the next page while Kafka acknowledges this one */
        if (rc == DW_OK && next && *pages_left != 1 && !dw_signal_stop_requested())
            fetch_rc = is_get(s, s->req, next, true, &next_doc, fetch_err, sizeof(fetch_err));
        dw_err_t ack_rc = is_acks_wait(s, rc ? NULL : errstr, rc ? 0 : errstr_size);
        if (rc || (rc = ack_rc)) {
            free(next);
            goto out;
        }
        it->pages++;
        it->records += produced;
        free(it->position);
        it->position = next;
        bool done = next == NULL;
        if (done)
            snprintf(it->status, sizeof(it->status), "done");
        if ((rc = is_state_store(s, it, it->status, NULL, ids, errstr, errstr_size)))
            goto out;
        is_progress(s, it, done);
        if (done)
            goto out;
        if (*pages_left > 0 && --*pages_left == 0) {
            rc = dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size,
                         "stopped after --max-pages pages");
            goto out;
        }
        if (dw_signal_stop_requested()) {
            rc = dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size, "interrupted");
            goto out;
        }
        if (fetch_rc) {
            rc = fetch_rc;
            snprintf(errstr, errstr_size, "%s", fetch_err);
            goto out;
        }
        free(url);
        url = strdup(it->position);
        json_decref(doc);
        doc = next_doc;
        next_doc = NULL;
        if (!url)
            goto nomem;
    }
nomem:
    rc = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
out:
    if (rc) {
        snprintf(it->status, sizeof(it->status), "%s",
                 rc == DW_ERR_INTERRUPTED ? "stopped" : "failed");
        char e2[512];
        if (is_state_store(s, it, it->status, errstr, NULL, e2, sizeof(e2)))
            DW_WARN(IS_FAC, "could not store the run state: %s", e2);
        is_progress(s, it, true);
    }
    json_decref(doc);
    json_decref(next_doc);
    json_decref(ids);
    free(url);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------------ */

/* Load the run's items: a new run (recorded now) or --resume. */
static int is_items(is_t *s, is_item_t **itemsp, size_t *np, char *errstr, size_t errstr_size)
{
    const is_opts_t *o = s->o;
    size_t n = dw_mapset_count(s->maps);
    is_item_t *items = calloc(n ? n : 1, sizeof(*items));
    PGresult *res = NULL;
    size_t k = 0;
    int rc = DW_EXIT_FAILURE;
    if (!items)
        goto out;
    if (o->resume) {
        const char *p[1] = {o->resume};
        if (dw_pg_exec(s->pg,
                       "SELECT map, source, company, status, pages, records, position FROM"
                       " dw_initial_sync WHERE run_id = $1 ORDER BY seq",
                       1, p, &res, errstr, errstr_size))
            goto out;
        if (PQntuples(res) == 0) {
            rc = dw_cli_usage_error(s->ctx->cli, NULL, "--resume: no run '%s'", o->resume);
            goto out;
        }
        snprintf(s->run_id, sizeof(s->run_id), "%s", o->resume);
        for (int r = 0; r < PQntuples(res) && k < n; r++) {
            const dw_map_t *m = dw_mapset_find(s->maps, PQgetvalue(res, r, 0));
            if (!m) {
                rc = dw_cli_usage_error(s->ctx->cli, NULL,
                                        "--resume: map '%s' of the run is not loaded (maps.dir)",
                                        PQgetvalue(res, r, 0));
                goto out;
            }
            s->source = strcmp(PQgetvalue(res, r, 1), "fo") == 0 ? "fo" : "dv";
            if (!PQgetisnull(res, r, 2) && !s->company && !(s->company = strdup(PQgetvalue(res, r, 2))))
                goto out;
            items[k].map = m;
            snprintf(items[k].status, sizeof(items[k].status), "%s", PQgetvalue(res, r, 3));
            items[k].pages = strtoll(PQgetvalue(res, r, 4), NULL, 10);
            items[k].records = strtoll(PQgetvalue(res, r, 5), NULL, 10);
            if (!PQgetisnull(res, r, 6) && !(items[k].position = strdup(PQgetvalue(res, r, 6))))
                goto out;
            k++;
        }
        s->side = strcmp(s->source, "fo") == 0 ? DW_MAP_FO : DW_MAP_DV;
    } else {
        dw_map_dir_t dir = s->side == DW_MAP_FO ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
        const dw_map_t **order = calloc(n ? n : 1, sizeof(*order));
        if (!order || dw_mapset_order(s->maps, order)) {
            free(order);
            snprintf(errstr, errstr_size, "could not order the maps");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            bool want = o->all && dw_map_runs(order[i], dir);
            for (int j = 0; j < o->nmaps && !want; j++)
                want = strcmp(o->maps[j], dw_map_name(order[i])) == 0;
            if (want)
                items[k++].map = order[i];
        }
        free(order);
        for (int j = 0; j < o->nmaps; j++) {
            const dw_map_t *m = dw_mapset_find(s->maps, o->maps[j]);
            if (!m) {
                rc = dw_cli_usage_error(s->ctx->cli, NULL, "--map: no map '%s'", o->maps[j]);
                goto out;
            }
            if (!dw_map_runs(m, dir)) {
                rc = dw_cli_usage_error(s->ctx->cli, NULL, "--map: %s does not read from %s",
                                        o->maps[j], s->source);
                goto out;
            }
        }
        if (!k) {
            rc = dw_cli_usage_error(s->ctx->cli, NULL, "no map reads from %s", s->source);
            goto out;
        }
        dw_http_uuid4(s->run_id);
        if ((rc = dw_pg_begin(s->pg, errstr, errstr_size) ? DW_EXIT_FAILURE : DW_EXIT_OK))
            goto out;
        for (size_t i = 0; i < k; i++) {
            char seq[24];
            snprintf(seq, sizeof(seq), "%zu", i);
            snprintf(items[i].status, sizeof(items[i].status), "pending");
            const char *p[5] = {s->run_id, dw_map_name(items[i].map), s->source, s->company, seq};
            if (dw_pg_exec(s->pg,
                           "INSERT INTO dw_initial_sync (run_id, map, source, company, seq)"
                           " VALUES ($1, $2, $3, $4, $5::integer)",
                           5, p, NULL, errstr, errstr_size)) {
                dw_pg_rollback(s->pg, NULL, 0);
                rc = DW_EXIT_FAILURE;
                goto out;
            }
        }
        if (dw_pg_commit(s->pg, errstr, errstr_size)) {
            rc = DW_EXIT_FAILURE;
            goto out;
        }
    }
    *itemsp = items;
    *np = k;
    items = NULL;
    rc = DW_CLI_CONTINUE;
out:
    PQclear(res);
    for (size_t i = 0; items && i < k; i++)
        free(items[i].position);
    free(items);
    return rc;
}

static int is_run(dwctl_ctx_t *ctx, void *opaque)
{
    is_opts_t *o = opaque;
    is_t s = {.ctx = ctx, .o = o, .company = NULL, .total = -1};
    char errstr[2048];
    int rc = DW_EXIT_FAILURE;
    is_item_t *items = NULL;
    size_t n = 0;
    char *company = NULL;
    json_t *result = NULL;

    if (!o->resume) {
        if (!o->from)
            return dw_cli_usage_error(ctx->cli, &is_spec, "--from fo|dv is required");
        if (!o->all && !o->nmaps)
            return dw_cli_usage_error(ctx->cli, &is_spec, "--map MAP or --all is required");
        if (o->all && o->nmaps)
            return dw_cli_usage_error(ctx->cli, &is_spec, "--map and --all exclude each other");
        if (o->company && strcmp(o->from, "fo") != 0)
            return dw_cli_usage_error(ctx->cli, &is_spec, "--company applies to --from fo");
        s.source = o->from;
        s.side = strcmp(o->from, "fo") == 0 ? DW_MAP_FO : DW_MAP_DV;
        if (o->company && !(company = strdup(o->company)))
            return DW_EXIT_FAILURE;
        s.company = company;
    } else if (o->nmaps || o->all || o->company) {
        return dw_cli_usage_error(ctx->cli, &is_spec,
                                  "--resume takes the run's maps, source and company");
    }
    s.tty = isatty(2);
    dw_kafka_topic_name(s.dlq_topic, sizeof(s.dlq_topic), "_capture", DW_KAFKA_TOPIC_DLQ, NULL, 0);
    if (dw_signal_install()) {
        fprintf(stderr, "dwctl initial-sync: could not install signal handlers\n");
        goto out;
    }
    dw_map_report_t *report = dw_map_report_new();
    s.maps = dw_mapset_load(dw_conf_get_str(ctx->conf, "maps.dir"),
                            dw_conf_get_str(ctx->conf, "maps.metadata_dir"), report, errstr,
                            sizeof(errstr));
    if (!s.maps) {
        if (report)
            dw_map_report_print(report, stderr);
        dw_map_report_destroy(report);
        fprintf(stderr, "dwctl initial-sync: could not load the maps: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    dw_map_report_destroy(report);
    /* a bad map name is a usage error before anything is contacted */
    for (int j = 0; j < o->nmaps; j++) {
        if (!dw_mapset_find(s.maps, o->maps[j])) {
            rc = dw_cli_usage_error(ctx->cli, NULL, "--map: no map '%s'", o->maps[j]);
            goto out;
        }
    }
    const char *dsn = dw_conf_get_str(ctx->conf, "pg.dsn");
    const char *boot = dw_conf_get_str(ctx->conf, "kafka.bootstrap.servers");
    if (!dsn || !boot) {
        rc = dw_cli_usage_error(ctx->cli, NULL, "%s is required",
                                !dsn ? "pg.dsn (DW_PG_DSN)"
                                     : "kafka.bootstrap.servers (DW_KAFKA_BOOTSTRAP)");
        goto out;
    }
    dw_err_t err;
    if (!(s.pg = dw_pg_connect(dsn, "dwctl", (int)dw_conf_get_int(ctx->conf, "pg.connect_timeout_ms"),
                               &err, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        rc = dw_cli_exit_code(err);
        goto out;
    }
    if ((err = dw_pg_migrate(s.pg, dw_conf_get_str(ctx->conf, "pg.migrations_dir"), NULL, errstr,
                             sizeof(errstr)))) {
        fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        goto out;
    }
    if ((rc = is_items(&s, &items, &n, errstr, sizeof(errstr))) != DW_CLI_CONTINUE) {
        if (rc == DW_EXIT_FAILURE)
            fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        goto out;
    }
    rc = DW_EXIT_FAILURE;
    s.page_size = o->page_size ? o->page_size : s.side == DW_MAP_FO ? 10000 : 5000;
    if ((err = is_connect(&s, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        rc = dw_cli_exit_code(err);
        goto out;
    }
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.client_id = "dwctl-initial-sync";
    popts.dr_msg_cb = is_dr_cb;
    popts.opaque = &s;
    rd_kafka_conf_t *kc = dw_kafka_producer_conf_new(ctx->conf, &popts, errstr, sizeof(errstr));
    if (!kc) {
        fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (!dw_conf_is_set(ctx->conf, "kafka.linger.ms"))
        rd_kafka_conf_set(kc, "linger.ms", "20", NULL, 0);
    if (!dw_conf_is_set(ctx->conf, "kafka.message.timeout.ms"))
        rd_kafka_conf_set(kc, "message.timeout.ms", "60000", NULL, 0);
    if (!(s.rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr)))) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "dwctl initial-sync: %s\n", errstr);
        goto out;
    }
    if (is_topics_create(&s, items, n, errstr, sizeof(errstr)))
        DW_WARN(IS_FAC, "topics: %s", errstr);
    fprintf(stderr, "dwctl initial-sync: run %s, %zu map(s) from %s%s%s\n", s.run_id, n, s.source,
            s.company ? ", company " : "", s.company ? s.company : "");
    long long pages_left = o->max_pages > 0 ? o->max_pages : -1;
    result = json_pack("{s:s, s:s, s:[]}", "run", s.run_id, "source", s.source, "maps");
    rc = DW_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        is_item_t *it = &items[i];
        if (strcmp(it->status, "done") == 0)
            continue;
        err = is_run_map(&s, it, &pages_left, errstr, sizeof(errstr));
        if (err) {
            rc = DW_EXIT_FAILURE;
            fprintf(stderr, "dwctl initial-sync: map %s: %s; resume with: dwctl initial-sync "
                    "--resume %s\n", dw_map_name(it->map), errstr, s.run_id);
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (o->common.json)
            json_array_append_new(json_object_get(result, "maps"),
                                  json_pack("{s:s, s:s, s:I, s:I}", "map", dw_map_name(items[i].map),
                                            "status", items[i].status, "pages",
                                            (json_int_t)items[i].pages, "records",
                                            (json_int_t)items[i].records));
        else
            printf("%s %-8s %-32s %lld records, %lld pages\n", s.run_id, items[i].status,
                   dw_map_name(items[i].map), items[i].records, items[i].pages);
    }
    if (o->common.json) {
        json_object_set_new(result, "skipped", json_integer(s.skipped));
        dwctl_print_json(result);
        result = NULL;
    }
out:
    json_decref(result);
    if (s.rk) {
        int remaining = 0;
        if (dw_kafka_flush(s.rk, 10000, &remaining, errstr, sizeof(errstr)))
            DW_WARN(IS_FAC, "%d record(s) not delivered at exit: %s", remaining, errstr);
        rd_kafka_destroy(s.rk);
    }
    for (size_t i = 0; items && i < n; i++)
        free(items[i].position);
    free(items);
    dw_http_req_destroy(s.req);
    dw_http_req_destroy(s.lookup_req);
    dw_system_destroy(s.sys);
    dw_dvlookup_destroy(s.lookups);
    dw_pg_destroy(s.pg);
    dw_mapset_destroy(s.maps);
    if (s.company != company)
        free((char *)s.company);
    free(company);
    return rc;
}

static const dwctl_cmd_t is_cmd = {
    .words = "initial-sync",
    .summary = "publish a map's source table as snapshot events",
    .spec = &is_spec,
    .run = is_run,
};

const dwctl_cmd_t *const dwctl_initial_sync_cmds[] = {&is_cmd, NULL};
