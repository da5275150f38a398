/*
 * dw-emulator: faithful local emulators of the Dataverse Web API (and, on the same core, F&O
 * OData), state in PostgreSQL, for the demo, the tests and the benchmarks.
 *   dw-emulator --system dv --listen 127.0.0.1:8080 --pg DSN [--metadata DIR] [--limits microsoft]
 * Routes: /<tenant>/oauth2/v2.0/token (Entra ID v2 client credentials), /api/data/v9.2/...
 * (Dataverse, bearer token required), /_admin/... (fault injection, admin secret required).
 * Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 runtime failure, 2 bad usage/config.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_cli.h"
#include "dw_config.h"
#include "dw_log.h"
#include "dw_signal.h"
#include "emu_admin.h"
#include "emu_auth.h"
#include "emu_ctx.h"
#include "emu_dv.h"
#include "emu_fo.h"
#include "emu_fo_events.h"
#include "emu_http.h"
#include "emu_limits.h"
#include "emu_seed.h"
#include "emu_store.h"

static const dw_conf_def_t emu_defs[] = {
    {"emulator.system", DW_CONF_ENUM, NULL, 0, 0, "dv|fo", 0, NULL,
     "the emulated system: dv (Dataverse Web API) or fo (F&O OData)"},
    {"emulator.listen", DW_CONF_STR, "127.0.0.1:8080", 0, 0, NULL, 0, NULL,
     "HOST:PORT to listen on (IPv4)"},
    {"emulator.metadata_dir", DW_CONF_STR, DW_DEFAULT_SCHEMAS_DIR "/metadata", 0, 0, NULL, 0, NULL,
     "folder with the table metadata (<dir>/dv/*.json, <dir>/fo/*.json)"},
    {"emulator.pg_schema", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "PostgreSQL schema holding the emulated tables (default: the system name)"},
    {"emulator.public_url", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "scheme://host:port clients use, for @odata links (default: http://<listen>)"},
    {"emulator.clients", DW_CONF_STR, "dwfleet:dwfleet-local-secret", 0, 0, NULL, DW_CONF_F_SECRET, NULL,
     "OAuth2 clients accepted by the token endpoint, id:secret[,id:secret...]"},
    {"emulator.admin_secret", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL,
     "bearer secret of the /_admin endpoint; unset: the admin endpoint is disabled"},
    {"emulator.limits", DW_CONF_STR, "off", 0, 0, NULL, 0, NULL,
     "service protection limits: off, microsoft (6000 req/300 s, 52 concurrent, 1200 s execution) or R/W[,C[,E_ms]]"},
    {"emulator.max_body_bytes", DW_CONF_INT, "33554432", 1024, 1073741824, NULL, 0, NULL,
     "largest request body accepted; a larger one is answered 413"},
    {"emulator.page_size", DW_CONF_INT, "5000", 1, 5000, NULL, 0, NULL,
     "rows per page when the client sets no odata.maxpagesize (Dataverse: 5000)"},
    {"emulator.change_retention_s", DW_CONF_INT, "604800", 1, 315360000, NULL, 0, NULL,
     "age after which a change-tracking delta token expires (Dataverse default: 7 days)"},
    {"emulator.token_ttl_s", DW_CONF_INT, "3599", 1, 86400, NULL, 0, NULL,
     "lifetime of issued access tokens in seconds"},
    {"emulator.pool_size", DW_CONF_INT, "16", 1, 256, NULL, 0, NULL,
     "PostgreSQL connections the emulator may open"},
    {"emulator.fo.company", DW_CONF_STR, "usmf", 0, 0, NULL, 0, NULL,
     "F&O: the default company (dataAreaId) of requests without cross-company=true"},
    {"emulator.fo.page_size", DW_CONF_INT, "10000", 1, 10000, NULL, 0, NULL,
     "F&O: rows per page when the client sets no odata.maxpagesize (F&O: 10000)"},
    {"emulator.fo.event_endpoints", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "F&O: data events receivers, comma-separated http(s) URLs (unset: events stay in the outbox)"},
    {"emulator.fo.event_auth_header", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL,
     "F&O: header sent with every data event, \"Name: value\" (e.g. \"Authorization: Bearer s3cret\")"},
    {"emulator.fo.event_retry_initial_ms", DW_CONF_INT, "200", 1, 600000, NULL, 0, NULL,
     "F&O: first delay before a failed data event is sent again (doubles up to the maximum)"},
    {"emulator.fo.event_retry_max_ms", DW_CONF_INT, "30000", 1, 3600000, NULL, 0, NULL,
     "F&O: longest delay between two attempts to send a data event"},
    {"emulator.fo.event_timeout_ms", DW_CONF_INT, "10000", 100, 600000, NULL, 0, NULL,
     "F&O: timeout of one data event POST"},
    DW_CONF_END,
};

static const dw_conf_def_t *const emu_tables[] = {dw_conf_common_defs, emu_defs, NULL};
static const char *const emu_foreign[] = {"capture", "transform", "writer", "monitor", "dv", "fo",
                                          "topics", NULL};

enum { OPT_SYSTEM = 0x100, OPT_LISTEN, OPT_PG, OPT_METADATA, OPT_LIMITS, OPT_SCHEMA };

typedef struct {
    const char *key[16];
    const char *val[16];
    const char *flag[16];
    int n;
} emu_flags_t;

static dw_err_t emu_on_option(int opt, const char *arg, void *opaque, char *errstr, size_t n)
{
    emu_flags_t *f = opaque;
    static const struct {
        int opt;
        const char *key, *flag;
    } map[] = {{OPT_SYSTEM, "emulator.system", "--system"},
               {OPT_LISTEN, "emulator.listen", "--listen"},
               {OPT_PG, "pg.dsn", "--pg"},
               {OPT_METADATA, "emulator.metadata_dir", "--metadata"},
               {OPT_LIMITS, "emulator.limits", "--limits"},
               {OPT_SCHEMA, "emulator.pg_schema", "--schema"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].opt == opt && f->n < 16) {
            f->key[f->n] = map[i].key;
            f->val[f->n] = arg;
            f->flag[f->n] = map[i].flag;
            f->n++;
            return DW_OK;
        }
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, n, "unexpected option");
}


static void emu_route(void *opaque, emu_req_t *req, emu_resp_t *resp)
{
    emu_ctx_t *ctx = opaque;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t pl = strlen(ctx->api_prefix);
    if (strncmp(req->path, "/_admin/", 8) == 0) {
        emu_admin_handle(ctx, req, resp);
    } else if (emu_auth_is_token_path(req->path)) {
        emu_auth_token(ctx->auth, req, resp);
    } else if (strncmp(req->path, ctx->api_prefix, pl) == 0 ||
               strncmp(req->path, ctx->api_prefix, pl - 1) == 0) {
        const char *rel = strlen(req->path) >= pl ? req->path + pl : "";
        if (emu_faults_unavailable(ctx->faults)) {
            emu_resp_error(resp, 503, "0x80040216", "The service is temporarily unavailable.");
            emu_resp_header(resp, "Retry-After", "1");
        } else if (emu_auth_check(ctx->auth, req, resp)) {
            if (emu_limits_enter(ctx->limits, req->client, resp)) {
                /* injected latency is server time: it counts towards the concurrent requests
                 * and the execution time of the service protection limits */
                int lat = emu_faults_latency_ms(ctx->faults);
                if (lat > 0)
                    usleep((useconds_t)lat * 1000);
                if (strcmp(ctx->system, "dv") == 0)
                    emu_dv_handle(ctx, req, resp, rel);
                else
                    emu_fo_handle(ctx, req, resp, rel);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                long long ms = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
                emu_limits_leave(ctx->limits, req->client, ms);
            } else if (strcmp(ctx->system, "fo") == 0) {
                emu_fo_throttled(resp);
            }
        }
    } else {
        emu_resp_error(resp, 404, "0x8006088a", "Resource not found for the segment '%s'.", req->path);
    }
    DW_DEBUG("http", "%s %s -> %u", req->method, req->path, resp->status);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "seed") == 0)
        return emu_seed_main(argc - 1, argv + 1);
    int rc = DW_EXIT_FAILURE;
    dw_conf_t *conf = NULL;
    emu_ctx_t ctx;
    emu_http_t *http = NULL;
    emu_flags_t flags;
    char errstr[2048];
    memset(&ctx, 0, sizeof(ctx));
    memset(&flags, 0, sizeof(flags));
    dw_cli_t *cli = dw_cli_new("dw-emulator", emu_tables, emu_foreign);
    if (!cli) {
        fprintf(stderr, "dw-emulator: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    static const struct option longopts[] = {
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"pg", required_argument, NULL, OPT_PG},
        {"metadata", required_argument, NULL, OPT_METADATA},
        {"limits", required_argument, NULL, OPT_LIMITS},
        {"schema", required_argument, NULL, OPT_SCHEMA},
        {NULL, 0, NULL, 0},
    };
    dw_cli_spec_t spec = {
        .synopsis = "--system dv|fo [--listen HOST:PORT] [--pg DSN] [--metadata DIR] [OPTIONS]",
        .description = "Emulates the Dataverse Web API (v9.2) or F&O OData over PostgreSQL, with an\n"
                       "Entra ID v2 token endpoint, service protection limits and fault injection.",
        .options_help = "      --system dv|fo       the emulated system (emulator.system)\n"
                        "      --listen HOST:PORT   listen address (emulator.listen)\n"
                        "      --pg DSN             PostgreSQL connection string (pg.dsn)\n"
                        "      --metadata DIR       metadata folder (emulator.metadata_dir)\n"
                        "      --schema NAME        PostgreSQL schema (emulator.pg_schema)\n"
                        "      --limits SPEC        off | microsoft | R/W[,C[,E_ms]] (emulator.limits)\n",
        .longopts = longopts,
        .on_option = emu_on_option,
        .opaque = &flags,
    };
    int argi = 1;
    rc = dw_cli_parse(cli, &spec, argc, argv, &argi);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    if (argi < argc) {
        rc = dw_cli_usage_error(cli, &spec, "unexpected argument '%s'", argv[argi]);
        goto out;
    }
    rc = dw_cli_load(cli, NULL, &conf);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    /* the dedicated flags are settings under their own names, applied last (they are flags) */
    for (int i = 0; i < flags.n; i++) {
        if (dw_conf_set(conf, flags.key[i], flags.val[i], DW_CONF_SRC_FLAG, flags.flag[i], errstr,
                        sizeof(errstr))) {
            fprintf(stderr, "dw-emulator: %s\n", errstr);
            rc = DW_EXIT_USAGE;
            goto out;
        }
    }
    if (dw_conf_check(conf, errstr, sizeof(errstr))) {
        fprintf(stderr, "dw-emulator: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    dw_cli_apply_log(conf);
    const char *system = dw_conf_get_str(conf, "emulator.system");
    if (!system) {
        rc = dw_cli_usage_error(cli, &spec, "--system dv|fo is required");
        goto out;
    }
    const char *dsn = dw_conf_get_str(conf, "pg.dsn");
    if (!dsn) {
        fprintf(stderr, "dw-emulator: pg.dsn is not set (--pg, config file, DW_PG_DSN or -X pg.dsn=...)\n");
        rc = DW_EXIT_USAGE;
        goto out;
    }
    char host[256];
    int port = 0;
    if (emu_http_parse_listen(dw_conf_get_str(conf, "emulator.listen"), host, sizeof(host), &port,
                              errstr, sizeof(errstr))) {
        fprintf(stderr, "dw-emulator: emulator.listen: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    emu_limits_conf_t lc;
    if (!emu_limits_parse(dw_conf_get_str(conf, "emulator.limits"), &lc)) {
        fprintf(stderr, "dw-emulator: emulator.limits: expected off, microsoft or R/W[,C[,E_ms]]\n");
        rc = DW_EXIT_USAGE;
        goto out;
    }
    ctx.system = system;
    bool fo = strcmp(system, "fo") == 0;
    ctx.api_prefix = fo ? "/data/" : "/api/data/v9.2/";
    ctx.max_page_size = (int)dw_conf_get_int(conf, fo ? "emulator.fo.page_size" : "emulator.page_size");
    ctx.fo_company = dw_conf_get_str(conf, "emulator.fo.company");
    ctx.change_retention_s = dw_conf_get_int(conf, "emulator.change_retention_s");
    ctx.admin_secret = dw_conf_get_str(conf, "emulator.admin_secret");
    const char *pub = dw_conf_get_str(conf, "emulator.public_url");
    char root[300];
    if (pub)
        snprintf(root, sizeof(root), "%s", pub);
    else
        snprintf(root, sizeof(root), "http://%s:%d", host, port);
    if (root[0] && root[strlen(root) - 1] == '/')
        root[strlen(root) - 1] = '\0';
    snprintf(ctx.base_url, sizeof(ctx.base_url), "%s%s", root, ctx.api_prefix);
    if (dw_signal_install()) {
        fprintf(stderr, "dw-emulator: could not install signal handlers\n");
        goto fail;
    }
    const char *schema = dw_conf_get_str(conf, "emulator.pg_schema");
    ctx.store = emu_store_open(dsn, schema ? schema : system, dw_conf_get_str(conf, "emulator.metadata_dir"),
                               system, (int)dw_conf_get_int(conf, "emulator.pool_size"), errstr,
                               sizeof(errstr));
    if (!ctx.store) {
        fprintf(stderr, "dw-emulator: %s\n", errstr);
        goto fail;
    }
    if (fo) {
        emu_fo_events_conf_t ec = {
            .endpoints = dw_conf_get_str(conf, "emulator.fo.event_endpoints"),
            .auth_header = dw_conf_get_str(conf, "emulator.fo.event_auth_header"),
            .retry_initial_ms = (int)dw_conf_get_int(conf, "emulator.fo.event_retry_initial_ms"),
            .retry_max_ms = (int)dw_conf_get_int(conf, "emulator.fo.event_retry_max_ms"),
            .timeout_ms = (int)dw_conf_get_int(conf, "emulator.fo.event_timeout_ms"),
        };
        if (emu_fo_init(&ctx, errstr, sizeof(errstr)) ||
            !(ctx.fo_events = emu_fo_events_new(ctx.store, &ec, errstr, sizeof(errstr))) ||
            emu_fo_events_start(ctx.fo_events, errstr, sizeof(errstr))) {
            fprintf(stderr, "dw-emulator: %s\n", errstr);
            goto fail;
        }
    }
    char resource[320];
    snprintf(resource, sizeof(resource), "%s/", root);
    ctx.auth = emu_auth_new(dw_conf_get_str(conf, "emulator.clients"),
                            (int)dw_conf_get_int(conf, "emulator.token_ttl_s"), resource);
    ctx.limits = emu_limits_new(&lc);
    ctx.faults = emu_faults_new();
    if (!ctx.auth || !ctx.limits || !ctx.faults) {
        fprintf(stderr, "dw-emulator: out of memory\n");
        goto fail;
    }
    http = emu_http_start(host, port, (size_t)dw_conf_get_int(conf, "emulator.max_body_bytes"),
                          emu_route, &ctx, errstr, sizeof(errstr));
    if (!http) {
        fprintf(stderr, "dw-emulator: %s\n", errstr);
        goto fail;
    }
    DW_INFO("main", "emulating %s at %s (schema %s, %zu tables, limits %s)", system, ctx.base_url,
            emu_store_schema(ctx.store), emu_store_ntables(ctx.store),
            dw_conf_get_str(conf, "emulator.limits"));
    while (!dw_signal_stop_requested())
        usleep(100 * 1000);
    DW_INFO("main", "stopping");
    rc = DW_EXIT_OK;
    goto cleanup;
fail:
    rc = DW_EXIT_FAILURE;
cleanup:
    emu_http_stop(http);
    emu_fo_events_destroy(ctx.fo_events);
    emu_store_close(ctx.store);
    emu_auth_destroy(ctx.auth);
    emu_limits_destroy(ctx.limits);
    emu_faults_destroy(ctx.faults);
out:
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
    return rc;
}
