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
 * stopped is published again (duplicates, same event ids), nothing is skipped.
 *
 * Throughput: a reader thread reads and parses up to IS_PREFETCH pages ahead (F&O pages into an
 * arena, see "page memory"); the main thread builds the envelopes and produces, with up to
 * IS_INFLIGHT pages waiting for Kafka's acknowledgement, and stores each page's state in order
 * once it and every page before it were acknowledged.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
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
#define IS_PREFETCH     2 /* pages read ahead of the one being produced */
#define IS_INFLIGHT     2 /* pages produced and not yet acknowledged */

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

/* ---- page memory ------------------------------------------------------------------------------
 * A page of 10,000 F&O rows parses into about 700,000 small jansson allocations, all freed
 * together once the page is produced: most of the reader's time went to malloc and free. F&O
 * pages are parsed into an arena instead (a bump allocator over address space reserved once),
 * and the arena is reset when the page was produced and its body dropped. jansson's allocator is
 * replaced for the process (json_set_alloc_funcs): an allocation comes from the arena only while
 * the reader thread parses a page into it (is_arena_cur, thread-local), everything else from
 * malloc; freeing a pointer inside the reservation is a no-op, anything else goes to free(). The
 * reservation's bounds never change once set, so no lock is needed to tell them apart. The rows
 * of an F&O page are never kept past their page (keys and envelopes are new values, copied into
 * Kafka). Dataverse pages (lookups written into the rows) use malloc as before. */
#define IS_ARENAS     (IS_PREFETCH + 2) /* read ahead + being parsed + being produced */
#define IS_ARENA_SIZE ((size_t)256 << 20) /* address space per page; a bigger page spills to malloc */

typedef struct is_arena_s {
    char *base;
    size_t used;       /* by the thread that took it */
    atomic_bool busy;  /* taken by the reader, given back by whichever thread dropped the page */
} is_arena_t;

static is_arena_t is_arenas[IS_ARENAS];
static char *is_arena_lo, *is_arena_hi; /* the reservation, set once */
static _Thread_local is_arena_t *is_arena_cur; /* where this thread's jansson allocations go */
static _Thread_local is_arena_t *is_parse_arena; /* the arena is_get parses a page into */

static void *is_json_malloc(size_t n)
{
    is_arena_t *a = is_arena_cur;
    if (a) {
        size_t need = (n + 15) & ~(size_t)15;
        if (need >= n && need <= IS_ARENA_SIZE - a->used) {
            void *p = a->base + a->used;
            a->used += need;
            return p;
        }
    }
    return malloc(n);
}

static void is_json_free(void *p)
{
    if ((char *)p >= is_arena_lo && (char *)p < is_arena_hi)
        return;
    free(p);
}

/* Reserve the arenas and route jansson's allocations through them; false (malloc stays) when
 * the address space cannot be reserved. Once per process. */
static bool is_arenas_init(void)
{
    if (is_arena_lo)
        return true;
    size_t total = IS_ARENA_SIZE * IS_ARENAS;
    void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED)
        return false;
    for (size_t i = 0; i < IS_ARENAS; i++) {
        is_arenas[i].base = (char *)m + i * IS_ARENA_SIZE;
        is_arenas[i].used = 0;
        atomic_init(&is_arenas[i].busy, false);
    }
    is_arena_lo = m;
    is_arena_hi = (char *)m + total;
    json_set_alloc_funcs(is_json_malloc, is_json_free);
    return true;
}

/* A free arena, NULL when none (then malloc). */
static is_arena_t *is_arena_take(void)
{
    for (size_t i = 0; is_arena_lo && i < IS_ARENAS; i++) {
        if (!atomic_exchange(&is_arenas[i].busy, true)) {
            is_arenas[i].used = 0;
            return &is_arenas[i];
        }
    }
    return NULL;
}

/* The arena's page is gone (its body freed, nothing of it referenced): reuse it. NULL-safe. */
static void is_arena_give(is_arena_t *a)
{
    if (a)
        atomic_store(&a->busy, false);
}

/* One map of a run (a row of dw_initial_sync). */
typedef struct is_item_s {
    const dw_map_t *map;
    char *position; /* the next page's URL; NULL: the first */
    long long pages, records;
    char status[16];
} is_item_t;

/* What is in flight on Kafka: the records of one page (each message's opaque). Served by the
 * delivery report callback on the main thread (rd_kafka_poll), so no lock. */
typedef struct is_acks_s {
    long pending;
    long failed;
    char errstr[256];
} is_acks_t;

/* A page produced and not yet stored: its acks, the position after it, its records and (dv) the
 * row ids to record with its state. */
typedef struct is_inflight_s {
    is_acks_t acks;
    char *next;   /* the next page's URL (new), NULL after the last page */
    long produced;
    json_t *ids;  /* dv: row ids of the page; NULL for F&O */
} is_inflight_t;

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
    dw_http_req_t *lookup_req; /* dv lookups */
    char token[IS_TOKEN_MAX];
    const char *base;          /* <fo.url>/data/ or <dv.url>/<dv.api_path>/ (borrowed from sys) */
    long page_size;
    dw_dvlookup_t *lookups;    /* dv: lookup GUIDs -> key values, read on lookup_req */
    is_inflight_t fl[IS_INFLIGHT]; /* ring of pages in flight, oldest at flhead */
    size_t flhead, nfl;
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
    (void)opaque;
    is_acks_t *a = m->_private; /* the page's acks (is_inflight_t) */
    if (!a)
        return;
    a->pending--;
    if (m->err && !a->failed++)
        snprintf(a->errstr, sizeof(a->errstr), "%s: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
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

/* The source's connection (common/dw_system), the lookup request handle and the lookup resolver
 * (pages are read on the page reader's own handle). */
static dw_err_t is_connect(is_t *s, char *errstr, size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    if (!(s->sys = dw_system_new(s->ctx->conf, s->source, &rc, errstr, errstr_size)))
        return rc;
    s->auth = dw_system_auth(s->sys);
    s->base = dw_system_base(s->sys);
    const dw_http_opts_t *http = dw_system_http_opts(s->sys);
    if (!(s->lookup_req = dw_http_req_new(http, errstr, errstr_size)) ||
        !(s->lookups = dw_dvlookup_new(s->maps, IS_LOOKUP_MAX, is_lookup_get, s)))
        return DW_ERR_NOMEM;
    return DW_OK;
}

/* GET url on req with the token and OData headers, retrying retriable failures (Retry-After
 * honoured) and a 401 once with a new token. On DW_OK the body is the parsed 200 response (new).
 * token: the caller's buffer (one per thread). cancel: NULL on the main thread (delivery reports
 * are served while it backs off); the page reader's stop flag on its thread (never touches
 * Kafka there). */
static dw_err_t is_get(is_t *s, dw_http_req_t *req, char *token, size_t token_size,
                       const atomic_bool *cancel, const char *url, bool paged, json_t **doc,
                       char *errstr, size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    long backoff = 500;
    bool reauth = false;
    *doc = NULL;
    for (int attempt = 0; attempt < IS_RETRIES; attempt++) {
        if (dw_signal_stop_requested() || (cancel && atomic_load(cancel)))
            return dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size, "interrupted");
        if ((rc = dw_auth_token(s->auth, token, token_size, errstr, errstr_size))) {
            if (!dw_err_is_retriable(rc))
                return rc;
            goto retry;
        }
        char prefer[64];
        snprintf(prefer, sizeof(prefer), "odata.maxpagesize=%ld", s->page_size);
        if ((rc = dw_http_req_setup(req, "GET", url, NULL, 0)) ||
            (rc = dw_http_req_odata_headers(req)) || (rc = dw_http_req_bearer(req, token)) ||
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
            is_arena_cur = is_parse_arena; /* the page reader's arena, else malloc */
            *doc = dw_mapper_loadb(body, len, &merr);
            is_arena_cur = NULL;
            if (!*doc)
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
        for (long waited = 0; waited < backoff && !dw_signal_stop_requested() &&
                              !(cancel && atomic_load(cancel));
             waited += 100) {
            if (s->rk && !cancel)
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
    if (is_get(s, s->lookup_req, s->token, sizeof(s->token), NULL, url, false, &row, errstr,
               sizeof(errstr)))
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
        if (is_get(s, s->lookup_req, s->token, sizeof(s->token), NULL, url, false, &doc, errstr,
                   sizeof(errstr)) == DW_OK &&
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

/* Produce the rows of a page; its acks are counted in *acks (the messages' opaque). *ids: dv
 * row ids. */
static dw_err_t is_produce_page(is_t *s, is_item_t *it, json_t *rows, json_t *ids, is_acks_t *acks,
                                long *produced, char *errstr, size_t errstr_size)
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
            msg.msg_opaque = acks;
            acks->pending++;
            if ((rc = dw_kafka_produce(s->rk, &msg, h, 30000, errstr, errstr_size)))
                acks->pending--;
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
            msg.msg_opaque = acks;
            acks->pending++;
            rc = dw_kafka_produce(s->rk, &msg,
                                  dw_kafka_headers_dw(mname, s->source, "snapshot", s->run_id),
                                  30000, errstr, errstr_size);
            if (rc)
                acks->pending--;
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

/* ---- the page reader ------------------------------------------------------------------------ */

/* A page read by the reader thread: the parsed body and its @odata.nextLink, or a failure. */
typedef struct is_page_s {
    json_t *doc;  /* new; NULL when rc */
    is_arena_t *arena; /* where doc lives (NULL: malloc); back to the reader with doc */
    char *next;   /* new; NULL on the last page */
    dw_err_t rc;
    char errstr[1024];
} is_page_t;

/* Reads the pages of one map ahead of the main thread, in order, on its own connection: at most
 * IS_PREFETCH pages wait in its queue, so reading, parsing and producing overlap. It never
 * touches Kafka or PostgreSQL; the main thread alone moves the run's position. The main thread
 * hands each produced page back (trash) and the reader frees it: memory is freed by the thread
 * that allocated it (glibc malloc spent more time sorting chunks another thread freed into its
 * arena than parsing). */
typedef struct is_pager_s {
    is_t *s;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    is_page_t q[IS_PREFETCH]; /* under mu */
    size_t head, count;       /* under mu */
    char *url;                /* under mu: the next page to read; NULL: no more */
    long long left;           /* pages still to read, -1: no limit (--max-pages) */
    bool finished;            /* under mu: the thread will queue nothing more */
    struct {
        json_t *doc;
        is_arena_t *arena;
    } trash[IS_PREFETCH + 2]; /* under mu: produced pages for the reader to free */
    size_t ntrash;
    bool use_arenas; /* F&O: parse pages into arenas */
    atomic_bool stop;         /* the main thread asks it to end */
    dw_http_req_t *req;
    char token[IS_TOKEN_MAX];
} is_pager_t;

static void *is_pager_main(void *arg)
{
    is_pager_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->ntrash) {
            --p->ntrash;
            json_t *t = p->trash[p->ntrash].doc;
            is_arena_t *a = p->trash[p->ntrash].arena;
            pthread_mutex_unlock(&p->mu);
            json_decref(t);
            is_arena_give(a);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (atomic_load(&p->stop) || !p->url || p->left == 0)
            break;
        if (p->count == IS_PREFETCH) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        char *url = p->url;
        p->url = NULL;
        pthread_mutex_unlock(&p->mu);
        is_page_t pg = {.rc = DW_OK};
        pg.arena = p->use_arenas ? is_arena_take() : NULL;
        is_parse_arena = pg.arena;
        pg.rc = is_get(p->s, p->req, p->token, sizeof(p->token), &p->stop, url, true, &pg.doc,
                       pg.errstr, sizeof(pg.errstr));
        is_parse_arena = NULL;
        if (pg.rc == DW_OK) {
            const char *nl = json_string_value(json_object_get(pg.doc, "@odata.nextLink"));
            if (!json_is_array(json_object_get(pg.doc, "value")))
                pg.rc = dw_errf(DW_ERR_PARSE, pg.errstr, sizeof(pg.errstr),
                                "GET %s: not an OData collection", url);
            else if (nl && !(pg.next = strdup(nl)))
                pg.rc = dw_errf(DW_ERR_NOMEM, pg.errstr, sizeof(pg.errstr), "out of memory");
        }
        free(url);
        pthread_mutex_lock(&p->mu);
        if (pg.rc == DW_OK && pg.next && !(p->url = strdup(pg.next))) {
            free(pg.next);
            pg.next = NULL;
            pg.rc = dw_errf(DW_ERR_NOMEM, pg.errstr, sizeof(pg.errstr), "out of memory");
        }
        if (pg.rc) {
            json_decref(pg.doc);
            pg.doc = NULL;
            is_arena_give(pg.arena);
            pg.arena = NULL;
            free(p->url);
            p->url = NULL;
        }
        p->q[(p->head + p->count) % IS_PREFETCH] = pg;
        p->count++;
        if (p->left > 0)
            p->left--;
        pthread_cond_broadcast(&p->cv);
    }
    p->finished = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Start reading at url (borrowed), at most left pages (-1: all). */
static dw_err_t is_pager_start(is_t *s, is_pager_t *p, const char *url, long long left,
                               char *errstr, size_t errstr_size)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    p->left = left;
    p->use_arenas = s->side == DW_MAP_FO && is_arenas_init();
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!(p->url = strdup(url)))
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    if (!(p->req = dw_http_req_new(dw_system_http_opts(s->sys), errstr, errstr_size)))
        return DW_ERR_NOMEM;
    if (pthread_create(&p->thread, NULL, is_pager_main, p) != 0)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "could not start the page reader");
    p->started = true;
    return DW_OK;
}

/* The next page in order into *pg (taken over by the caller); false when no more will come. */
static bool is_pager_next(is_pager_t *p, is_page_t *pg)
{
    pthread_mutex_lock(&p->mu);
    while (p->count == 0 && !p->finished)
        pthread_cond_wait(&p->cv, &p->mu);
    bool got = p->count > 0;
    if (got) {
        *pg = p->q[p->head];
        p->head = (p->head + 1) % IS_PREFETCH;
        p->count--;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return got;
}

/* Hand a produced page's body and arena (taken over) back to the reader to free. */
static void is_pager_recycle(is_pager_t *p, json_t *doc, is_arena_t *arena)
{
    pthread_mutex_lock(&p->mu);
    bool queued = !p->finished && p->ntrash < sizeof(p->trash) / sizeof(p->trash[0]);
    if (queued) {
        p->trash[p->ntrash].doc = doc;
        p->trash[p->ntrash].arena = arena;
        p->ntrash++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (!queued) {
        json_decref(doc);
        is_arena_give(arena);
    }
}

/* Stop the reader (a request in progress ends first), drop what it read ahead. NULL-safe. */
static void is_pager_destroy(is_pager_t *p)
{
    if (p->started) {
        atomic_store(&p->stop, true);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    for (size_t i = 0; i < p->count; i++) {
        is_page_t *pg = &p->q[(p->head + i) % IS_PREFETCH];
        json_decref(pg->doc);
        is_arena_give(pg->arena);
        free(pg->next);
    }
    for (size_t i = 0; i < p->ntrash; i++) {
        json_decref(p->trash[i].doc);
        is_arena_give(p->trash[i].arena);
    }
    free(p->url);
    dw_http_req_destroy(p->req);
    if (p->s) { /* is_pager_start initialised them */
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
    }
    memset(p, 0, sizeof(*p));
}

/* ---- one map: the pipeline ----------------------------------------------------------------- */

/* Store the state of the pages in flight that Kafka acknowledged, oldest first, stopping at the
 * first one still waiting; while more than keep pages are in flight, wait for the oldest. The
 * position never passes a page with a record not acknowledged. *done: the last page is stored. */
static dw_err_t is_retire(is_t *s, is_item_t *it, size_t keep, long long *pages_left, bool *done,
                          char *errstr, size_t errstr_size)
{
    rd_kafka_poll(s->rk, 0);
    while (s->nfl > 0) {
        is_inflight_t *f = &s->fl[s->flhead];
        if (f->acks.pending > 0) {
            if (s->nfl <= keep)
                return DW_OK;
            rd_kafka_poll(s->rk, 100);
            continue;
        }
        if (f->acks.failed)
            return dw_errf(DW_ERR_KAFKA, errstr, errstr_size,
                           "Kafka did not acknowledge %ld record(s): %s", f->acks.failed,
                           f->acks.errstr);
        it->pages++;
        it->records += f->produced;
        free(it->position);
        it->position = f->next;
        f->next = NULL;
        *done = it->position == NULL;
        if (*done)
            snprintf(it->status, sizeof(it->status), "done");
        dw_err_t rc = is_state_store(s, it, it->status, NULL, f->ids, errstr, errstr_size);
        s->flhead = (s->flhead + 1) % IS_INFLIGHT;
        s->nfl--;
        if (rc)
            return rc;
        if (*pages_left > 0)
            --*pages_left;
        is_progress(s, it, *done);
    }
    return DW_OK;
}

/* Sync one map from it->position (NULL: the first page). Returns DW_OK when done,
 * DW_ERR_INTERRUPTED when stopped (signal or --max-pages; resumable), another error on failure.
 * The reader thread reads pages ahead; each page's rows are produced in order, up to
 * IS_INFLIGHT pages wait for Kafka's acknowledgement, and the state moves past a page only when
 * Kafka acknowledged it and every page before it. */
static dw_err_t is_run_map(is_t *s, is_item_t *it, long long *pages_left, char *errstr,
                           size_t errstr_size)
{
    dw_err_t rc = DW_OK;
    is_pager_t pager;
    is_page_t pg = {0};
    bool done = false, stopped = false;
    char *url = it->position ? strdup(it->position) : is_first_url(s, it->map, false);
    memset(&pager, 0, sizeof(pager));
    if (!url)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    s->flhead = s->nfl = 0;
    for (size_t i = 0; i < IS_INFLIGHT; i++) {
        free(s->fl[i].next);
        json_decref(s->fl[i].ids);
        s->fl[i] = (is_inflight_t){0};
        if (s->side == DW_MAP_DV && !(s->fl[i].ids = json_array())) {
            rc = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto out;
        }
    }
    snprintf(it->status, sizeof(it->status), "running");
    if ((rc = is_state_store(s, it, "running", NULL, NULL, errstr, errstr_size)))
        goto out;
    s->total = is_count(s, it->map);
    s->started = is_now();
    s->last_progress = 0;
    s->records_at_start = it->records;
    is_progress(s, it, false);
    if ((rc = is_pager_start(s, &pager, url, *pages_left, errstr, errstr_size)))
        goto out;
    while (!done) {
        if (dw_signal_stop_requested()) {
            stopped = true;
            break;
        }
        if (!is_pager_next(&pager, &pg))
            break; /* --max-pages: every page allowed was read */
        if (pg.rc) {
            rc = pg.rc;
            snprintf(errstr, errstr_size, "%s", pg.errstr);
            if (rc == DW_ERR_INTERRUPTED)
                stopped = true;
            break;
        }
        /* room for this page: wait for the oldest in flight when the window is full */
        if ((rc = is_retire(s, it, IS_INFLIGHT - 1, pages_left, &done, errstr, errstr_size)))
            goto out;
        is_inflight_t *f = &s->fl[(s->flhead + s->nfl) % IS_INFLIGHT];
        f->acks = (is_acks_t){0};
        f->produced = 0;
        json_array_clear(f->ids);
        f->next = pg.next;
        pg.next = NULL;
        s->nfl++;
        rc = is_produce_page(s, it, json_object_get(pg.doc, "value"), f->ids, &f->acks,
                             &f->produced, errstr, errstr_size);
        is_pager_recycle(&pager, pg.doc, pg.arena);
        pg.doc = NULL;
        pg.arena = NULL;
        if (rc) {
            /* the page is not stored: its records count as not acknowledged */
            f->acks.failed += !f->acks.failed;
            goto out;
        }
        bool last = f->next == NULL;
        if ((rc = is_retire(s, it, last ? 0 : IS_INFLIGHT - 1, pages_left, &done, errstr,
                            errstr_size)))
            goto out;
    }
    /* stopped, failed to read, or out of allowed pages: what was produced is stored once Kafka
     * acknowledged it (a stop ends after the current page) */
    char drain_err[1024];
    dw_err_t rc2 = is_retire(s, it, 0, pages_left, &done, drain_err, sizeof(drain_err));
    if (!rc && rc2) {
        rc = rc2;
        snprintf(errstr, errstr_size, "%s", drain_err);
    }
    if (!rc && !done)
        rc = stopped ? dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size, "interrupted")
                     : dw_errf(DW_ERR_INTERRUPTED, errstr, errstr_size,
                               "stopped after --max-pages pages");
    if (rc == DW_ERR_INTERRUPTED && done)
        rc = DW_OK;
out:
    is_pager_destroy(&pager);
    json_decref(pg.doc);
    is_arena_give(pg.arena);
    free(pg.next);
    if (rc) {
        snprintf(it->status, sizeof(it->status), "%s",
                 rc == DW_ERR_INTERRUPTED ? "stopped" : "failed");
        char e2[512];
        if (is_state_store(s, it, it->status, errstr, NULL, e2, sizeof(e2)))
            DW_WARN(IS_FAC, "could not store the run state: %s", e2);
        is_progress(s, it, true);
    }
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
    /* throughput defaults (each kafka.* setting wins): larger batches, and lz4, which halves the
     * broker's CPU per record for JSON envelopes at little cost here */
    if (!dw_conf_is_set(ctx->conf, "kafka.linger.ms"))
        rd_kafka_conf_set(kc, "linger.ms", "50", NULL, 0);
    if (!dw_conf_is_set(ctx->conf, "kafka.compression.type") &&
        !dw_conf_is_set(ctx->conf, "kafka.compression.codec") &&
        rd_kafka_conf_set(kc, "compression.type", "lz4", NULL, 0) != RD_KAFKA_CONF_OK)
        DW_DEBUG(IS_FAC, "lz4 is not available in this librdkafka: no compression");
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
    for (size_t i = 0; i < IS_INFLIGHT; i++) {
        free(s.fl[i].next);
        json_decref(s.fl[i].ids);
    }
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
