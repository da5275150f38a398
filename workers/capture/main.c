/*
 * dw-capture: where changes enter Kafka. --system dv pulls Dataverse change tracking
 * (capture_dv.c); --system fo receives F&O data events over HTTP (capture_fo.c). Both produce
 * event envelopes to dw.<map>.<system> with an idempotent producer and move their position (delta
 * link, HTTP 2xx) only after Kafka acknowledged. Configuration keys: docs/capture.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "dw_cli.h"
#include "dw_config.h"
#include "dw_kafka.h"
#include "dw_log.h"
#include "dw_map.h"
#include "dw_pg.h"
#include "dw_signal.h"
#include "dw_system.h"
#include "dw_topics.h"

static const dw_conf_def_t capture_defs[] = {
    {"capture.system", DW_CONF_ENUM, NULL, 0, 0, "fo|dv", 0, NULL,
     "the system to capture from (same as --system)"},
    {"capture.maps", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "comma-separated maps to capture; default: every map that reads from the system"},
    {"capture.component", DW_CONF_STR, "dw-capture", 0, 0, NULL, 0, NULL,
     "the component name under which checkpoints are stored (one per independent instance)"},
    {"capture.create_topics", DW_CONF_BOOL, "true", 0, 0, NULL, 0, NULL,
     "create the capture topics and dw._capture.dlq at start when missing"},
    {"capture.topics_timeout_ms", DW_CONF_INT, "10000", 100, 600000, NULL, 0, NULL,
     "how long topic creation at start may wait for the cluster"},
    {"capture.poll_interval_ms", DW_CONF_INT, "1000", 10, 3600000, NULL, 0, NULL,
     "dv: delay between polls of a map while changes flow (the minimum)"},
    {"capture.poll_max_interval_ms", DW_CONF_INT, "15000", 10, 3600000, NULL, 0, NULL,
     "dv: the interval doubles while a map is idle, up to this"},
    {"capture.request_budget_per_min", DW_CONF_INT, "300", 0, 1000000, NULL, 0, NULL,
     "dv: Web API requests per minute all maps of this instance may spend (0: no limit)"},
    {"capture.page_size", DW_CONF_INT, "5000", 1, 5000, NULL, 0, NULL,
     "dv: Prefer: odata.maxpagesize of change tracking requests"},
    {"capture.max_concurrent", DW_CONF_INT, "8", 1, 52, NULL, 0, NULL,
     "dv: concurrent Web API connections (service protection allows 52 per user)"},
    {"capture.backoff_initial_ms", DW_CONF_INT, "1000", 10, 600000, NULL, 0, NULL,
     "dv: first backoff after a failure (doubles; Retry-After wins when longer)"},
    {"capture.backoff_max_ms", DW_CONF_INT, "60000", 10, 3600000, NULL, 0, NULL,
     "dv: longest backoff"},
    {"capture.listen", DW_CONF_STR, "127.0.0.1:8090", 0, 0, NULL, 0, NULL,
     "fo: IPv4 HOST:PORT of the data event endpoint"},
    {"capture.fo_path", DW_CONF_STR, "/events", 0, 0, NULL, 0, NULL,
     "fo: the URL path data events are POSTed to"},
    {"capture.fo_auth", DW_CONF_ENUM, "bearer", 0, 0, "bearer|header|none", 0, NULL,
     "fo: how senders authenticate: Authorization: Bearer <secret>, a shared-secret header, or "
     "nothing"},
    {"capture.fo_secret", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_SECRET, NULL,
     "fo: the bearer token or shared secret senders must present"},
    {"capture.fo_secret_header", DW_CONF_STR, "X-DW-Secret", 0, 0, NULL, 0, NULL,
     "fo: the header holding the shared secret (capture.fo_auth=header)"},
    {"capture.max_body_bytes", DW_CONF_INT, "1048576", 1024, 1073741824, NULL, 0, NULL,
     "fo: larger request bodies get 413"},
    {"capture.ack_timeout_ms", DW_CONF_INT, "10000", 100, 600000, NULL, 0, NULL,
     "fo: how long a request waits for Kafka's acknowledgement before 503"},
    DW_CONF_END,
};

/* capture.* here; dv.* / fo.* (the connection) from dw_system. */
static const dw_conf_def_t *const capture_tables[] = {dw_conf_common_defs, dw_topics_conf_defs,
                                                        dw_system_conf_defs, capture_defs, NULL};
static const char *const capture_foreign[] = {"transform", "writer", "monitor", "emulator",
                                              "initial_sync", NULL};

#define OPT_SYSTEM 's'

typedef struct {
    const char *system;
} capture_opts_t;

static dw_err_t capture_on_option(int opt, const char *arg, void *opaque, char *errstr,
                                  size_t errstr_size)
{
    capture_opts_t *o = opaque;
    if (opt == OPT_SYSTEM) {
        if (strcmp(arg, "fo") != 0 && strcmp(arg, "dv") != 0)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--system: '%s' is not fo or dv", arg);
        o->system = arg;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

/* Pick the maps that read from side: capture.maps, or every map running in that direction. */
static int capture_pick_maps(capture_t *cap, dw_map_side_t side)
{
    dw_map_dir_t dir = side == DW_MAP_FO ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
    size_t n = dw_mapset_count(cap->maps);
    if (!(cap->active = calloc(n ? n : 1, sizeof(*cap->active))))
        return DW_EXIT_FAILURE;
    const char *list = dw_conf_get_str(cap->conf, "capture.maps");
    if (list && *list) {
        char *copy = strdup(list), *save = NULL;
        if (!copy)
            return DW_EXIT_FAILURE;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            const dw_map_t *m = dw_mapset_find(cap->maps, t);
            if (!m || !dw_map_runs(m, dir)) {
                fprintf(stderr, "dw-capture: capture.maps: %s %s\n", t,
                        m ? "does not read from this system" : "is not a map");
                free(copy);
                return DW_EXIT_USAGE;
            }
            if (cap->nactive < n)
                cap->active[cap->nactive++] = m;
        }
        free(copy);
    } else {
        for (size_t i = 0; i < n; i++)
            if (dw_map_runs(dw_mapset_get(cap->maps, i), dir))
                cap->active[cap->nactive++] = dw_mapset_get(cap->maps, i);
    }
    if (!cap->nactive) {
        fprintf(stderr, "dw-capture: no map reads from %s\n", dw_map_side_name(side));
        return DW_EXIT_USAGE;
    }
    return DW_CLI_CONTINUE;
}

int main(int argc, char **argv)
{
    int rc = DW_EXIT_FAILURE;
    char errstr[2048];
    dw_conf_t *conf = NULL;
    capture_t cap = {0};
    capture_opts_t opts = {0};
    dw_cli_t *cli = dw_cli_new("dw-capture", capture_tables, capture_foreign);
    if (!cli) {
        fprintf(stderr, "dw-capture: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    static const struct option longopts[] = {{"system", required_argument, NULL, OPT_SYSTEM},
                                              {0, 0, 0, 0}};
    dw_cli_spec_t spec = {
        .synopsis = "--system fo|dv [OPTIONS]",
        .description =
            "Capture changes into Kafka: --system dv pulls Dataverse change tracking for every "
            "map that reads from Dataverse; --system fo receives F&O data events over HTTP. "
            "Events go to dw.<map>.dv / dw.<map>.fo; positions move only after Kafka "
            "acknowledged. See docs/capture.md.",
        .options_help = "  -s, --system fo|dv       the system to capture from\n",
        .shortopts = "s:",
        .longopts = longopts,
        .on_option = capture_on_option,
        .opaque = &opts,
    };
    int argi = 1;
    rc = dw_cli_parse(cli, &spec, argc, argv, &argi);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    rc = dw_cli_load(cli, NULL, &conf);
    if (rc != DW_CLI_CONTINUE)
        goto out;
    const char *system = opts.system ? opts.system : dw_conf_get_str(conf, "capture.system");
    if (!system) {
        rc = dw_cli_usage_error(cli, &spec, "--system fo|dv is required");
        goto out;
    }
    dw_map_side_t side = strcmp(system, "fo") == 0 ? DW_MAP_FO : DW_MAP_DV;
    cap.conf = conf;
    cap.component = dw_conf_get_str(conf, "capture.component");
    dw_kafka_topic_name(cap.dlq_topic, sizeof(cap.dlq_topic), CAPTURE_DLQ_MAP, DW_KAFKA_TOPIC_DLQ,
                        NULL, 0);
    if (dw_signal_install()) {
        fprintf(stderr, "dw-capture: could not install signal handlers\n");
        rc = DW_EXIT_FAILURE;
        goto out;
    }
    dw_map_report_t *report = dw_map_report_new();
    cap.maps = dw_mapset_load(dw_conf_get_str(conf, "maps.dir"),
                              dw_conf_get_str(conf, "maps.metadata_dir"), report, errstr,
                              sizeof(errstr));
    if (!cap.maps) {
        if (report)
            dw_map_report_print(report, stderr);
        fprintf(stderr, "dw-capture: could not load the maps: %s\n", errstr);
        dw_map_report_destroy(report);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    dw_map_report_destroy(report);
    if ((rc = capture_pick_maps(&cap, side)) != DW_CLI_CONTINUE)
        goto out;
    if (!dw_conf_get_str(conf, "kafka.bootstrap.servers")) {
        fprintf(stderr, "dw-capture: kafka.bootstrap.servers (DW_KAFKA_BOOTSTRAP) is required\n");
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (side == DW_MAP_DV) {
        const char *dsn = dw_conf_get_str(conf, "pg.dsn");
        if (!dsn) {
            fprintf(stderr, "dw-capture: pg.dsn (DW_PG_DSN) is required for --system dv\n");
            rc = DW_EXIT_USAGE;
            goto out;
        }
        dw_err_t err;
        cap.pg = dw_pg_connect(dsn, "dw-capture", (int)dw_conf_get_int(conf, "pg.connect_timeout_ms"),
                               &err, errstr, sizeof(errstr));
        if (!cap.pg) {
            fprintf(stderr, "dw-capture: %s\n", errstr);
            rc = dw_cli_exit_code(err);
            goto out;
        }
        if ((err = dw_pg_migrate(cap.pg, dw_conf_get_str(conf, "pg.migrations_dir"), NULL, errstr,
                                 sizeof(errstr)))) {
            fprintf(stderr, "dw-capture: %s\n", errstr);
            rc = DW_EXIT_FAILURE;
            goto out;
        }
    }

    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.client_id = "dw-capture";
    popts.dr_msg_cb = capture_dr_cb;
    popts.opaque = &cap;
    rd_kafka_conf_t *kc = dw_kafka_producer_conf_new(conf, &popts, errstr, sizeof(errstr));
    if (!kc) {
        fprintf(stderr, "dw-capture: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    /* a record Kafka could not take within the ack timeout is reported failed, not held for
     * librdkafka's default 5 minutes (the sender or the next poll retries it) */
    if (!dw_conf_is_set(conf, "kafka.message.timeout.ms")) {
        char v[32];
        snprintf(v, sizeof(v), "%lld",
                 side == DW_MAP_FO ? dw_conf_get_int(conf, "capture.ack_timeout_ms") : 60000LL);
        rd_kafka_conf_set(kc, "message.timeout.ms", v, NULL, 0);
    }
    if (!(cap.rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr)))) {
        rd_kafka_conf_destroy(kc);
        fprintf(stderr, "dw-capture: %s\n", errstr);
        rc = DW_EXIT_FAILURE;
        goto out;
    }
    capture_topics_create(&cap, side == DW_MAP_FO ? DW_KAFKA_TOPIC_FO : DW_KAFKA_TOPIC_DV);

    rc = side == DW_MAP_FO ? capture_fo_run(&cap) : capture_dv_run(&cap);

    int remaining = 0;
    if (dw_kafka_flush(cap.rk, 10000, &remaining, errstr, sizeof(errstr)))
        DW_WARN(CAPTURE_FAC, "%d record(s) not delivered at exit: %s", remaining, errstr);
    DW_INFO(CAPTURE_FAC, "stopped: %lu produced, %lu acknowledged, %lu failed, %lu dead-lettered, "
            "%lu Web API requests", (unsigned long)cap.produced, (unsigned long)cap.acked,
            (unsigned long)cap.delivery_failed, (unsigned long)cap.dlq,
            (unsigned long)cap.requests);
out:
    if (cap.rk)
        rd_kafka_destroy(cap.rk);
    dw_pg_destroy(cap.pg);
    free(cap.active);
    dw_mapset_destroy(cap.maps);
    dw_conf_destroy(conf);
    dw_cli_destroy(cli);
    return rc;
}
