/*
 * dwctl topics create | topics list: the Kafka topics of the maps. For each map, five topics:
 * dw.<map>.fo and dw.<map>.dv (captured changes), dw.<map>.to-dv and dw.<map>.to-fo (commands),
 * dw.<map>.dlq (dead letters, kept longer). Creation is idempotent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_kafka.h"
#include "dwctl.h"

#define TOPICS_TIMEOUT_MS 30000
#define TOPICS_MAX_MAPS   256

enum { OPT_MAP = 'm', OPT_PARTITIONS = 'p', OPT_PREFIX = 0x101 };

typedef struct topics_opts_s {
    dwctl_opts_t common;
    const char *maps[TOPICS_MAX_MAPS];
    int nmaps;
    int partitions; /* 0: from the configuration */
    const char *prefix;
} topics_opts_t;

static topics_opts_t create_opts, list_opts;

static dw_err_t topics_opt(int opt, const char *arg, void *opaque, char *errstr,
                           size_t errstr_size)
{
    topics_opts_t *o = opaque;
    char *end = NULL;
    switch (opt) {
    case DWCTL_OPT_JSON:
        o->common.json = true;
        return DW_OK;
    case OPT_MAP:
        if (o->nmaps == TOPICS_MAX_MAPS)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--map: at most %d maps per call", TOPICS_MAX_MAPS);
        o->maps[o->nmaps++] = arg;
        return DW_OK;
    case OPT_PARTITIONS: {
        long v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 1 || v > 10000)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--partitions: '%s' is not a number in [1, 10000]", arg);
        o->partitions = (int)v;
        return DW_OK;
    }
    case OPT_PREFIX:
        o->prefix = arg;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

static const struct option create_longopts[] = {
    {"map", required_argument, NULL, OPT_MAP},
    {"partitions", required_argument, NULL, OPT_PARTITIONS},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t create_spec = {
    .name = "topics create",
    .synopsis = "[OPTIONS] --map MAP [--map MAP ...]",
    .description = "Create the five topics of each map (fo, dv, to-dv, to-fo, dlq). Topics that "
                   "exist are left as they are. Partitions: --partitions, else "
                   "maps.<map>.partitions, else topics.partitions; retention: "
                   "topics.retention_ms (topics.dlq_retention_ms for the dead letters).",
    .options_help = "  -m, --map MAP            a map name ([a-z0-9_]+); repeatable\n"
                    "  -p, --partitions N       partitions of every topic created\n"
                    "      --json               one JSON object per topic on stdout\n",
    .shortopts = "m:p:",
    .longopts = create_longopts,
    .on_option = topics_opt,
    .opaque = &create_opts,
};

static const struct option list_longopts[] = {
    {"prefix", required_argument, NULL, OPT_PREFIX},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t list_spec = {
    .name = "topics list",
    .synopsis = "[OPTIONS]",
    .description = "List the cluster's dwfleet topics with their partition counts.",
    .options_help = "      --prefix P           topics starting with P (default \"dw.\")\n"
                    "      --json               a JSON array on stdout\n",
    .longopts = list_longopts,
    .on_option = topics_opt,
    .opaque = &list_opts,
};

static int create_run(dwctl_ctx_t *ctx, void *opaque)
{
    topics_opts_t *o = opaque;
    char errstr[2048];
    static char names[TOPICS_MAX_MAPS * DW_KAFKA_TOPIC__COUNT][DW_KAFKA_TOPIC_MAX + 1];
    char retention[32], dlq_retention[32];
    static dw_kafka_topic_spec_t specs[TOPICS_MAX_MAPS * DW_KAFKA_TOPIC__COUNT];
    const char *config[] = {"retention.ms", retention, NULL};
    const char *dlq_config[] = {"retention.ms", dlq_retention, NULL};
    size_t n = 0;
    int rc = DW_EXIT_FAILURE;
    rd_kafka_t *rk = NULL;

    if (o->nmaps == 0)
        return dw_cli_usage_error(ctx->cli, &create_spec, "at least one --map is required");
    snprintf(retention, sizeof(retention), "%lld",
             dw_conf_get_int(ctx->conf, "topics.retention_ms"));
    snprintf(dlq_retention, sizeof(dlq_retention), "%lld",
             dw_conf_get_int(ctx->conf, "topics.dlq_retention_ms"));
    for (int m = 0; m < o->nmaps; m++) {
        if (dw_kafka_map_name_check(o->maps[m], false, errstr, sizeof(errstr)) != DW_OK)
            return dw_cli_usage_error(ctx->cli, NULL, "--map: %s", errstr);
        char key[DW_KAFKA_MAP_MAX + 32];
        snprintf(key, sizeof(key), "maps.%s.partitions", o->maps[m]);
        int partitions = o->partitions ? o->partitions
                         : dw_conf_is_set(ctx->conf, key)
                             ? (int)dw_conf_get_int(ctx->conf, key)
                             : (int)dw_conf_get_int(ctx->conf, "topics.partitions");
        for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++, n++) {
            dw_kafka_topic_name(names[n], sizeof(names[n]), o->maps[m], (dw_kafka_topic_kind_t)k,
                                NULL, 0);
            specs[n] = (dw_kafka_topic_spec_t){
                .name = names[n],
                .partitions = partitions,
                .replication_factor = (int)dw_conf_get_int(ctx->conf, "topics.replication_factor"),
                .config = k == DW_KAFKA_TOPIC_DLQ ? dlq_config : config,
            };
        }
    }
    rk = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "dwctl topics create: %s\n", errstr);
        return DW_EXIT_USAGE;
    }
    dw_err_t err = dw_kafka_topics_create(rk, specs, n, TOPICS_TIMEOUT_MS, errstr, sizeof(errstr));
    for (size_t i = 0; i < n; i++) {
        const char *state = specs[i].err ? "failed" : specs[i].existed ? "exists" : "created";
        if (ctx->json)
            dwctl_print_json(json_pack("{s:s, s:s, s:i}", "topic", specs[i].name, "state", state,
                                       "partitions", specs[i].partitions));
        else
            printf("%-8s %s\n", state, specs[i].name);
    }
    if (err) {
        fprintf(stderr, "dwctl topics create: %s\n", errstr);
        goto out;
    }
    rc = DW_EXIT_OK;
out:
    rd_kafka_destroy(rk);
    return rc;
}

static int list_run(dwctl_ctx_t *ctx, void *opaque)
{
    topics_opts_t *o = opaque;
    char errstr[1024];
    char **names = NULL;
    size_t count = 0;
    int rc = DW_EXIT_FAILURE;
    json_t *list = json_array();
    rd_kafka_t *rk = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "dwctl topics list: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (dw_kafka_topics_list(rk, o->prefix ? o->prefix : "dw.", TOPICS_TIMEOUT_MS, &names, &count,
                             errstr, sizeof(errstr)) != DW_OK) {
        fprintf(stderr, "dwctl topics list: %s\n", errstr);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        int partitions = 0;
        if (dw_kafka_topic_partitions(rk, names[i], TOPICS_TIMEOUT_MS, &partitions, errstr,
                                      sizeof(errstr)) != DW_OK) {
            fprintf(stderr, "dwctl topics list: %s\n", errstr);
            goto out;
        }
        if (ctx->json)
            json_array_append_new(list, json_pack("{s:s, s:i}", "topic", names[i], "partitions",
                                                  partitions));
        else
            printf("%-60s %d\n", names[i], partitions);
    }
    if (ctx->json) {
        dwctl_print_json(list);
        list = NULL;
    }
    rc = DW_EXIT_OK;
out:
    json_decref(list);
    dw_kafka_topics_free(names, count);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

static const dwctl_cmd_t create_cmd = {
    .words = "topics create",
    .summary = "create the topics of maps",
    .spec = &create_spec,
    .run = create_run,
};
static const dwctl_cmd_t list_cmd = {
    .words = "topics list",
    .summary = "list dwfleet topics",
    .spec = &list_spec,
    .run = list_run,
};

const dwctl_cmd_t *const dwctl_topics_cmds[] = {&create_cmd, &list_cmd, NULL};
