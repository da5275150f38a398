/*
 * dwctl topics create | list | count | delete: the Kafka topics of the maps. For each map, five
 * topics: dw.<map>.fo and dw.<map>.dv (captured changes), dw.<map>.to-dv and dw.<map>.to-fo
 * (commands), dw.<map>.dlq (dead letters, kept longer); with --all every map of maps.dir.
 * dwfleet's own dead-letter topics dw._unknown.dlq and dw._capture.dlq are always created too.
 * The specs come from common/dw_topics (shared with the workers); creation is idempotent. count
 * sums the records each topic holds (high minus low watermark); delete --match removes the dw.*
 * topics whose name contains a substring (a demo's or a test's run suffix).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_kafka.h"
#include "dw_map.h"
#include "dw_topics.h"
#include "dwctl.h"

#define TOPICS_TIMEOUT_MS 30000
#define TOPICS_MAX_MAPS   256
#define TOPICS_MATCH_MIN  4 /* delete --match: shorter substrings would match too much */

enum { OPT_MAP = 'm', OPT_PARTITIONS = 'p', OPT_ALL = 'a', OPT_PREFIX = 0x101, OPT_MATCH = 0x102 };

typedef struct topics_opts_s {
    dwctl_opts_t common;
    const char *maps[TOPICS_MAX_MAPS];
    int nmaps;
    int partitions; /* 0: from the configuration */
    bool all;       /* --all: every map of maps.dir */
    const char *prefix;
    const char *match; /* delete --match */
} topics_opts_t;

static topics_opts_t create_opts, list_opts, count_opts, delete_opts;

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
    case OPT_MATCH:
        o->match = arg;
        return DW_OK;
    case OPT_ALL:
        o->all = true;
        return DW_OK;
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

static const struct option create_longopts[] = {
    {"map", required_argument, NULL, OPT_MAP},
    {"partitions", required_argument, NULL, OPT_PARTITIONS},
    {"all", no_argument, NULL, OPT_ALL},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t create_spec = {
    .name = "topics create",
    .synopsis = "[OPTIONS] --map MAP [--map MAP ...] | --all",
    .description = "Create the five topics of each map (fo, dv, to-dv, to-fo, dlq), and always "
                   "dw._unknown.dlq and dw._capture.dlq. Topics that exist are left as they "
                   "are. Partitions: --partitions, else maps.<map>.partitions, else "
                   "topics.partitions; retention: topics.retention_ms (topics.dlq_retention_ms "
                   "for the dead letters).",
    .options_help = "  -m, --map MAP            a map name ([a-z0-9_]+); repeatable\n"
                    "  -a, --all                every map of maps.dir (in dependency order)\n"
                    "  -p, --partitions N       partitions of every topic created\n"
                    "      --json               one JSON object per topic on stdout\n",
    .shortopts = "m:p:a",
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

static const struct option count_longopts[] = {
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t count_spec = {
    .name = "topics count",
    .synopsis = "[OPTIONS] TOPIC...",
    .description = "Print \"TOPIC RECORDS\" per topic: the records it holds, the sum over its "
                   "partitions of the high minus the low watermark (transaction markers "
                   "included); 0 for a topic that does not exist.",
    .options_help = "      --json               one JSON object per topic on stdout\n",
    .longopts = count_longopts,
    .on_option = topics_opt,
    .opaque = &count_opts,
    .min_args = 1,
    .max_args = -1,
};

static const struct option delete_longopts[] = {
    {"match", required_argument, NULL, OPT_MATCH},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t delete_spec = {
    .name = "topics delete",
    .synopsis = "[OPTIONS] --match SUBSTRING",
    .description = "Delete every topic whose name starts with \"dw.\" and contains SUBSTRING "
                   "(at least 4 characters), and print how many were deleted.",
    .options_help = "      --match SUBSTRING    the part of the names to delete (required)\n"
                    "      --json               {\"deleted\": N, \"topics\": [...]} on stdout\n",
    .longopts = delete_longopts,
    .on_option = topics_opt,
    .opaque = &delete_opts,
};

/* Add the maps of maps.dir to ts, in dependency order. Exit code, or DW_EXIT_OK. */
static int add_all_maps(dwctl_ctx_t *ctx, dw_topics_t *ts)
{
    char errstr[2048];
    int rc = DW_EXIT_FAILURE;
    const dw_map_t **order = NULL;
    const char *maps_dir = dw_conf_get_str(ctx->conf, "maps.dir");
    dw_mapset_t *set = dw_mapset_load(maps_dir, dw_conf_get_str(ctx->conf, "maps.metadata_dir"),
                                      NULL, errstr, sizeof(errstr));
    if (!set) {
        fprintf(stderr, "dwctl topics create: could not load the maps of %s: %s\n", maps_dir,
                errstr);
        return DW_EXIT_USAGE;
    }
    size_t n = dw_mapset_count(set);
    if (n > 0 && !(order = calloc(n, sizeof(*order)))) {
        fprintf(stderr, "dwctl topics create: out of memory\n");
        goto out;
    }
    if (n > 0 && dw_mapset_order(set, order) != DW_OK) {
        fprintf(stderr, "dwctl topics create: could not order the maps of %s\n", maps_dir);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (dw_topics_add_map(ts, dw_map_name(order[i]), DW_TOPICS_ALL, errstr, sizeof(errstr)) !=
            DW_OK) {
            fprintf(stderr, "dwctl topics create: %s\n", errstr);
            goto out;
        }
    }
    rc = DW_EXIT_OK;
out:
    free(order);
    dw_mapset_destroy(set);
    return rc;
}

static int create_run(dwctl_ctx_t *ctx, void *opaque)
{
    topics_opts_t *o = opaque;
    char errstr[2048];
    int rc = DW_EXIT_FAILURE;
    rd_kafka_t *rk = NULL;
    dw_topics_t *ts = NULL;

    if (o->nmaps == 0 && !o->all)
        return dw_cli_usage_error(ctx->cli, &create_spec,
                                  "--all or at least one --map is required");
    if (o->nmaps > 0 && o->all)
        return dw_cli_usage_error(ctx->cli, &create_spec, "--all and --map exclude each other");
    for (int m = 0; m < o->nmaps; m++)
        if (dw_kafka_map_name_check(o->maps[m], false, errstr, sizeof(errstr)) != DW_OK)
            return dw_cli_usage_error(ctx->cli, NULL, "--map: %s", errstr);
    if (!(ts = dw_topics_new(ctx->conf, o->partitions))) {
        fprintf(stderr, "dwctl topics create: out of memory\n");
        return DW_EXIT_FAILURE;
    }
    if (o->all && (rc = add_all_maps(ctx, ts)) != DW_EXIT_OK)
        goto out;
    rc = DW_EXIT_FAILURE;
    for (int m = 0; m < o->nmaps; m++) {
        if (dw_topics_add_map(ts, o->maps[m], DW_TOPICS_ALL, errstr, sizeof(errstr)) != DW_OK) {
            fprintf(stderr, "dwctl topics create: %s\n", errstr);
            goto out;
        }
    }
    if (dw_topics_add_special(ts, errstr, sizeof(errstr)) != DW_OK) {
        fprintf(stderr, "dwctl topics create: %s\n", errstr);
        goto out;
    }
    rk = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "dwctl topics create: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    dw_err_t err = dw_topics_ensure(ts, rk, TOPICS_TIMEOUT_MS, NULL, errstr, sizeof(errstr));
    dw_kafka_topic_spec_t *specs = dw_topics_specs(ts);
    for (size_t i = 0; i < dw_topics_count(ts); i++) {
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
    if (rk)
        rd_kafka_destroy(rk);
    dw_topics_destroy(ts);
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

static int count_run(dwctl_ctx_t *ctx, void *opaque)
{
    (void)opaque;
    char errstr[1024];
    int rc = DW_EXIT_FAILURE;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_t *rk = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "dwctl topics count: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    /* every topic, never the named ones: a broker with auto-creation would create them */
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 1, NULL, &md, TOPICS_TIMEOUT_MS);
    if (kerr) {
        fprintf(stderr, "dwctl topics count: could not list the topics: %s\n",
                rd_kafka_err2str(kerr));
        goto out;
    }
    for (int a = 0; a < ctx->argc; a++) {
        const char *name = ctx->argv[a];
        const rd_kafka_metadata_topic_t *t = NULL;
        for (int i = 0; i < md->topic_cnt && !t; i++)
            if (strcmp(md->topics[i].topic, name) == 0 &&
                md->topics[i].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                t = &md->topics[i];
        int64_t records = 0;
        for (int p = 0; t && p < t->partition_cnt; p++) {
            int64_t lo = 0, hi = 0;
            kerr = rd_kafka_query_watermark_offsets(rk, name, t->partitions[p].id, &lo, &hi,
                                                    TOPICS_TIMEOUT_MS);
            if (kerr) {
                fprintf(stderr, "dwctl topics count: could not read the offsets of %s [%d]: %s\n",
                        name, (int)t->partitions[p].id, rd_kafka_err2str(kerr));
                goto out;
            }
            records += hi - lo;
        }
        if (ctx->json)
            dwctl_print_json(
                json_pack("{s:s, s:I, s:b}", "topic", name, "records", (json_int_t)records,
                          "exists", t != NULL));
        else
            printf("%s %lld\n", name, (long long)records);
    }
    rc = DW_EXIT_OK;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

static int delete_run(dwctl_ctx_t *ctx, void *opaque)
{
    topics_opts_t *o = opaque;
    char errstr[2048];
    char **names = NULL;
    size_t count = 0, n = 0;
    const char **hits = NULL;
    int rc = DW_EXIT_FAILURE;
    rd_kafka_t *rk = NULL;
    if (!o->match)
        return dw_cli_usage_error(ctx->cli, &delete_spec, "--match is required");
    if (strlen(o->match) < TOPICS_MATCH_MIN)
        return dw_cli_usage_error(ctx->cli, &delete_spec,
                                  "--match '%s' is too short: at least %d characters, so that it "
                                  "cannot match unrelated topics",
                                  o->match, TOPICS_MATCH_MIN);
    if (!(rk = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dwctl topics delete: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    if (dw_kafka_topics_list(rk, "dw.", TOPICS_TIMEOUT_MS, &names, &count, errstr,
                             sizeof(errstr)) != DW_OK) {
        fprintf(stderr, "dwctl topics delete: %s\n", errstr);
        goto out;
    }
    if (count > 0 && !(hits = calloc(count, sizeof(*hits)))) {
        fprintf(stderr, "dwctl topics delete: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if (strstr(names[i], o->match))
            hits[n++] = names[i];
    if (n > 0 &&
        dw_kafka_topics_delete(rk, hits, n, TOPICS_TIMEOUT_MS, errstr, sizeof(errstr)) != DW_OK) {
        fprintf(stderr, "dwctl topics delete: %s\n", errstr);
        goto out;
    }
    if (ctx->json) {
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, json_string(hits[i]));
        dwctl_print_json(json_pack("{s:I, s:o}", "deleted", (json_int_t)n, "topics", list));
    } else {
        printf("%zu\n", n);
    }
    rc = DW_EXIT_OK;
out:
    free(hits);
    dw_kafka_topics_free(names, count);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

static const dwctl_cmd_t create_cmd = {
    .words = "topics create",
    .summary = "create the topics of maps (--all: of every map)",
    .spec = &create_spec,
    .run = create_run,
};
static const dwctl_cmd_t list_cmd = {
    .words = "topics list",
    .summary = "list dwfleet topics",
    .spec = &list_spec,
    .run = list_run,
};

static const dwctl_cmd_t count_cmd = {
    .words = "topics count",
    .summary = "records held per topic (0 when missing)",
    .spec = &count_spec,
    .run = count_run,
};
static const dwctl_cmd_t delete_cmd = {
    .words = "topics delete",
    .summary = "delete the dw.* topics containing --match",
    .spec = &delete_spec,
    .run = delete_run,
};

const dwctl_cmd_t *const dwctl_topics_cmds[] = {&create_cmd, &list_cmd, &count_cmd, &delete_cmd,
                                                NULL};
