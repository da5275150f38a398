/*
 * dwctl groups lag | groups delete: the fleet's consumer groups. lag counts, per group, the
 * records after its committed offsets that a read_committed consumer can read: transaction
 * markers and aborted records take offsets but are no lag (the transform and the capture write
 * in transactions). delete removes groups whose members have all left; a group that does not
 * exist counts as deleted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dw_kafka.h"
#include "dwctl.h"

#define GROUPS_TIMEOUT_MS 30000 /* one admin request, one watermark query */
#define GROUPS_COUNT_MS   30000 /* reading one group's partitions to their ends */
#define GROUPS_POLL_MS    200
#define GROUPS_MAX_WAIT_S 86400

enum { OPT_WAIT = 'w' };

typedef struct groups_opts_s {
    dwctl_opts_t common;
    int wait_s; /* --wait: repeat each second until every lag is 0, for at most this long */
} groups_opts_t;

static groups_opts_t lag_opts, delete_opts;

static dw_err_t groups_opt(int opt, const char *arg, void *opaque, char *errstr, size_t errstr_size)
{
    groups_opts_t *o = opaque;
    char *end = NULL;
    switch (opt) {
    case DWCTL_OPT_JSON:
        o->common.json = true;
        return DW_OK;
    case OPT_WAIT: {
        long v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 0 || v > GROUPS_MAX_WAIT_S)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "--wait: '%s' is not a number of seconds in [0, %d]", arg,
                           GROUPS_MAX_WAIT_S);
        o->wait_s = (int)v;
        return DW_OK;
    }
    }
    return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unexpected option");
}

static const struct option lag_longopts[] = {
    {"wait", required_argument, NULL, OPT_WAIT},
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t lag_spec = {
    .name = "groups lag",
    .synopsis = "[OPTIONS] GROUP...",
    .description = "Print \"GROUP LAG\" per group: the records after the group's committed "
                   "offsets, counted with an isolation.level=read_committed consumer, so "
                   "transaction markers and aborted records are not lag. LAG is -1 when the "
                   "group has committed no offset. Records of a transaction still open are not "
                   "counted (they cannot be read yet).",
    .options_help = "  -w, --wait SECONDS       repeat each second until every lag is 0 (-1 "
                    "counts as 0),\n"
                    "                           for at most SECONDS; then print the last "
                    "values\n"
                    "      --json               one JSON object per group on stdout\n",
    .shortopts = "w:",
    .longopts = lag_longopts,
    .on_option = groups_opt,
    .opaque = &lag_opts,
    .min_args = 1,
    .max_args = -1,
};

static const struct option delete_longopts[] = {
    DWCTL_LONGOPT_JSON,
    {0},
};
static dw_cli_spec_t delete_spec = {
    .name = "groups delete",
    .synopsis = "[OPTIONS] GROUP...",
    .description = "Delete consumer groups and their committed offsets. A group that does not "
                   "exist is left alone (\"absent\"); a group that still has members is an "
                   "error (stop its consumers first). Prints \"deleted GROUP\" or \"absent "
                   "GROUP\" per group.",
    .options_help = "      --json               one JSON object per group on stdout\n",
    .longopts = delete_longopts,
    .on_option = groups_opt,
    .opaque = &delete_opts,
    .min_args = 1,
    .max_args = -1,
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The offsets group has committed. *offsets: new (empty when it committed none, or the group
 * does not exist). */
static dw_err_t group_committed(rd_kafka_t *admin, const char *group,
                                rd_kafka_topic_partition_list_t **offsets, char *errstr,
                                size_t errstr_size)
{
    dw_err_t err = DW_OK;
    char aerr[512];
    rd_kafka_queue_t *q = rd_kafka_queue_new(admin);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(admin, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
    rd_kafka_event_t *ev = NULL;
    *offsets = NULL;

    if (rd_kafka_AdminOptions_set_request_timeout(ao, GROUPS_TIMEOUT_MS, aerr, sizeof(aerr))) {
        err = dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "%s", aerr);
        goto out;
    }
    rd_kafka_ListConsumerGroupOffsets(admin, &req, 1, ao, q);
    ev = rd_kafka_queue_poll(q, GROUPS_TIMEOUT_MS + 5000);
    if (!ev) {
        err = dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size,
                      "could not read the committed offsets of group \"%s\": no answer within "
                      "%d s",
                      group, GROUPS_TIMEOUT_MS / 1000 + 5);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        err = dw_errf(dw_kafka_err_map(rd_kafka_event_error(ev)), errstr, errstr_size,
                      "could not read the committed offsets of group \"%s\": %s", group,
                      rd_kafka_event_error_string(ev));
        goto out;
    }
    const rd_kafka_ListConsumerGroupOffsets_result_t *res =
        rd_kafka_event_ListConsumerGroupOffsets_result(ev);
    size_t n = 0;
    const rd_kafka_group_result_t **gres =
        res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &n) : NULL;
    if (n != 1) {
        err =
            dw_errf(DW_ERR_KAFKA, errstr, errstr_size,
                    "could not read the committed offsets of group \"%s\": %zu results", group, n);
        goto out;
    }
    const rd_kafka_error_t *gerr = rd_kafka_group_result_error(gres[0]);
    if (gerr && rd_kafka_error_code(gerr) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
        err = dw_errf(dw_kafka_error_map(gerr), errstr, errstr_size,
                      "could not read the committed offsets of group \"%s\": %s", group,
                      rd_kafka_error_string(gerr));
        goto out;
    }
    const rd_kafka_topic_partition_list_t *parts =
        gerr ? NULL : rd_kafka_group_result_partitions(gres[0]);
    *offsets = rd_kafka_topic_partition_list_new(parts ? parts->cnt : 0);
    for (int i = 0; parts && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (p->err) {
            err = dw_errf(dw_kafka_err_map(p->err), errstr, errstr_size,
                          "could not read the committed offset of group \"%s\" on %s [%d]: %s",
                          group, p->topic, (int)p->partition, rd_kafka_err2str(p->err));
            goto out;
        }
        if (p->offset >= 0)
            rd_kafka_topic_partition_list_add(*offsets, p->topic, p->partition)->offset = p->offset;
    }
out:
    if (err && *offsets) {
        rd_kafka_topic_partition_list_destroy(*offsets);
        *offsets = NULL;
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    return err;
}

/* Count the records a read_committed consumer gets from each partition of todo, from its offset
 * up to highs[i] (the high watermark when the count started), adding them to *count. The
 * consumer (borrowed) is assigned todo for the call and unassigned after. A partition is done at
 * its high watermark or at its end for read_committed (partition EOF: the last stable offset),
 * whichever comes first. */
static dw_err_t count_records(rd_kafka_t *consumer, const char *group,
                              rd_kafka_topic_partition_list_t *todo, const int64_t *highs,
                              int64_t *count, char *errstr, size_t errstr_size)
{
    dw_err_t err = DW_OK;
    bool *done = calloc((size_t)todo->cnt, sizeof(*done));
    int remaining = todo->cnt;
    if (!done)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    rd_kafka_resp_err_t kerr = rd_kafka_assign(consumer, todo);
    if (kerr) {
        free(done);
        return dw_errf(dw_kafka_err_map(kerr), errstr, errstr_size,
                       "could not read the partitions of group \"%s\": %s", group,
                       rd_kafka_err2str(kerr));
    }
    int64_t deadline = now_ms() + GROUPS_COUNT_MS;
    while (remaining > 0) {
        if (now_ms() > deadline) {
            err = dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size,
                          "could not count the lag of group \"%s\": %d partition(s) not read to "
                          "their end within %d s",
                          group, remaining, GROUPS_COUNT_MS / 1000);
            break;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer, GROUPS_POLL_MS);
        if (!msg)
            continue;
        int i = -1;
        const char *topic = msg->rkt ? rd_kafka_topic_name(msg->rkt) : NULL;
        for (int k = 0; topic && k < todo->cnt; k++)
            if (todo->elems[k].partition == msg->partition &&
                strcmp(todo->elems[k].topic, topic) == 0) {
                i = k;
                break;
            }
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (i >= 0 && !done[i]) {
                done[i] = true;
                remaining--;
            }
        } else if (msg->err) {
            err = dw_errf(dw_kafka_err_map(msg->err), errstr, errstr_size,
                          "could not count the lag of group \"%s\" on %s [%d]: %s", group,
                          topic ? topic : "?", (int)msg->partition, rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            break;
        } else if (i >= 0 && !done[i]) {
            if (msg->offset < highs[i])
                (*count)++;
            if (msg->offset >= highs[i] - 1) {
                done[i] = true;
                remaining--;
            }
        }
        rd_kafka_message_destroy(msg);
    }
    rd_kafka_assign(consumer, NULL);
    free(done);
    return err;
}

/* The lag of group: -1 when it committed nothing, else the records after its committed offsets
 * (see count_records). admin and consumer borrowed. */
static dw_err_t group_lag(rd_kafka_t *admin, rd_kafka_t *consumer, const char *group, int64_t *lag,
                          char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *committed = NULL, *todo = NULL;
    int64_t *highs = NULL;
    dw_err_t err = group_committed(admin, group, &committed, errstr, errstr_size);
    if (err)
        goto out;
    if (committed->cnt == 0) {
        *lag = -1;
        goto out;
    }
    *lag = 0;
    todo = rd_kafka_topic_partition_list_new(committed->cnt);
    if (!(highs = calloc((size_t)committed->cnt, sizeof(*highs)))) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    for (int i = 0; i < committed->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &committed->elems[i];
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(
            consumer, p->topic, p->partition, &lo, &hi, GROUPS_TIMEOUT_MS);
        if (kerr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue; /* offsets left of a deleted topic: nothing to read */
        if (kerr) {
            err = dw_errf(dw_kafka_err_map(kerr), errstr, errstr_size,
                          "could not read the offsets of %s [%d] (group \"%s\"): %s", p->topic,
                          (int)p->partition, group, rd_kafka_err2str(kerr));
            goto out;
        }
        int64_t from = p->offset > lo ? p->offset : lo;
        if (hi <= from)
            continue;
        highs[todo->cnt] = hi;
        rd_kafka_topic_partition_list_add(todo, p->topic, p->partition)->offset = from;
    }
    if (todo->cnt > 0)
        err = count_records(consumer, group, todo, highs, lag, errstr, errstr_size);
out:
    free(highs);
    if (todo)
        rd_kafka_topic_partition_list_destroy(todo);
    if (committed)
        rd_kafka_topic_partition_list_destroy(committed);
    return err;
}

/* The counting consumer: read_committed, partition EOF on, in a group of its own that it never
 * joins nor commits to (librdkafka's consumer API needs one). New; NULL with errstr. */
static rd_kafka_t *lag_consumer_new(const dw_conf_t *conf, char *errstr, size_t errstr_size)
{
    char group[64];
    snprintf(group, sizeof(group), "dwctl-lag-%ld", (long)getpid());
    dw_kafka_consumer_opts_t opts;
    dw_kafka_consumer_opts_init(&opts);
    opts.group_id = group;
    opts.client_id = "dwctl";
    opts.isolation_level = "read_committed";
    opts.cooperative = false;
    rd_kafka_conf_t *kc = dw_kafka_consumer_conf_new(conf, &opts, errstr, errstr_size);
    if (!kc)
        return NULL;
    if (rd_kafka_conf_set(kc, "enable.partition.eof", "true", errstr, errstr_size) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int lag_run(dwctl_ctx_t *ctx, void *opaque)
{
    groups_opts_t *o = opaque;
    char errstr[1024];
    int rc = DW_EXIT_FAILURE;
    rd_kafka_t *admin = NULL, *consumer = NULL;
    int64_t *lags = calloc((size_t)ctx->argc, sizeof(*lags));
    if (!lags) {
        fprintf(stderr, "dwctl groups lag: out of memory\n");
        goto out;
    }
    for (int g = 0; g < ctx->argc; g++)
        if (!*ctx->argv[g]) {
            rc = dw_cli_usage_error(ctx->cli, &lag_spec, "a group name cannot be empty");
            goto out;
        }
    if (!(admin = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr))) ||
        !(consumer = lag_consumer_new(ctx->conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dwctl groups lag: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    int64_t deadline = now_ms() + (int64_t)o->wait_s * 1000;
    for (;;) {
        bool zero = true;
        for (int g = 0; g < ctx->argc; g++) {
            if (group_lag(admin, consumer, ctx->argv[g], &lags[g], errstr, sizeof(errstr)) !=
                DW_OK) {
                fprintf(stderr, "dwctl groups lag: %s\n", errstr);
                goto out;
            }
            zero = zero && lags[g] <= 0;
        }
        if (zero || now_ms() >= deadline)
            break;
        sleep(1);
    }
    for (int g = 0; g < ctx->argc; g++) {
        if (ctx->json)
            dwctl_print_json(
                json_pack("{s:s, s:I}", "group", ctx->argv[g], "lag", (json_int_t)lags[g]));
        else
            printf("%s %lld\n", ctx->argv[g], (long long)lags[g]);
    }
    rc = DW_EXIT_OK;
out:
    dw_kafka_consumer_destroy(consumer);
    if (admin)
        rd_kafka_destroy(admin);
    free(lags);
    return rc;
}

static int delete_run(dwctl_ctx_t *ctx, void *opaque)
{
    (void)opaque;
    char errstr[1024];
    int rc = DW_EXIT_FAILURE;
    rd_kafka_t *admin = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_AdminOptions_t *ao = NULL;
    rd_kafka_event_t *ev = NULL;
    size_t ndel = (size_t)ctx->argc;
    rd_kafka_DeleteGroup_t **dels = calloc(ndel, sizeof(*dels));
    if (!dels) {
        fprintf(stderr, "dwctl groups delete: out of memory\n");
        goto out;
    }
    for (size_t g = 0; g < ndel; g++)
        if (!*ctx->argv[g]) {
            rc = dw_cli_usage_error(ctx->cli, &delete_spec, "a group name cannot be empty");
            goto out;
        }
    if (!(admin = dw_kafka_admin_new(ctx->conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "dwctl groups delete: %s\n", errstr);
        rc = DW_EXIT_USAGE;
        goto out;
    }
    q = rd_kafka_queue_new(admin);
    ao = rd_kafka_AdminOptions_new(admin, RD_KAFKA_ADMIN_OP_DELETEGROUPS);
    if (rd_kafka_AdminOptions_set_request_timeout(ao, GROUPS_TIMEOUT_MS, errstr, sizeof(errstr))) {
        fprintf(stderr, "dwctl groups delete: %s\n", errstr);
        goto out;
    }
    for (size_t g = 0; g < ndel; g++)
        dels[g] = rd_kafka_DeleteGroup_new(ctx->argv[g]);
    rd_kafka_DeleteGroups(admin, dels, ndel, ao, q);
    if (!(ev = rd_kafka_queue_poll(q, GROUPS_TIMEOUT_MS + 5000))) {
        fprintf(stderr, "dwctl groups delete: no answer within %d s\n",
                GROUPS_TIMEOUT_MS / 1000 + 5);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "dwctl groups delete: could not delete the groups: %s\n",
                rd_kafka_event_error_string(ev));
        goto out;
    }
    size_t n = 0;
    const rd_kafka_DeleteGroups_result_t *res = rd_kafka_event_DeleteGroups_result(ev);
    const rd_kafka_group_result_t **gres =
        res ? rd_kafka_DeleteGroups_result_groups(res, &n) : NULL;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        const char *name = rd_kafka_group_result_name(gres[i]);
        const rd_kafka_error_t *gerr = rd_kafka_group_result_error(gres[i]);
        rd_kafka_resp_err_t code = gerr ? rd_kafka_error_code(gerr) : RD_KAFKA_RESP_ERR_NO_ERROR;
        const char *state = "deleted";
        if (code == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            state = "absent";
        } else if (code == RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP) {
            fprintf(stderr,
                    "dwctl groups delete: could not delete group \"%s\": it still has members "
                    "(stop its consumers first)\n",
                    name);
            state = "failed";
        } else if (code) {
            fprintf(stderr, "dwctl groups delete: could not delete group \"%s\": %s\n", name,
                    rd_kafka_error_string(gerr));
            state = "failed";
        }
        failed = failed || strcmp(state, "failed") == 0;
        if (ctx->json)
            dwctl_print_json(json_pack("{s:s, s:s}", "group", name, "state", state));
        else
            printf("%-8s %s\n", state, name);
    }
    if (n != ndel) {
        fprintf(stderr, "dwctl groups delete: %zu results for %zu groups\n", n, ndel);
        failed = true;
    }
    rc = failed ? DW_EXIT_FAILURE : DW_EXIT_OK;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (dels)
        rd_kafka_DeleteGroup_destroy_array(dels, ndel);
    free(dels);
    if (ao)
        rd_kafka_AdminOptions_destroy(ao);
    if (q)
        rd_kafka_queue_destroy(q);
    if (admin)
        rd_kafka_destroy(admin);
    return rc;
}

static const dwctl_cmd_t lag_cmd = {
    .words = "groups lag",
    .summary = "records after consumer groups' committed offsets",
    .spec = &lag_spec,
    .run = lag_run,
};
static const dwctl_cmd_t delete_cmd = {
    .words = "groups delete",
    .summary = "delete consumer groups (absent ones are fine)",
    .spec = &delete_spec,
    .run = delete_run,
};

const dwctl_cmd_t *const dwctl_groups_cmds[] = {&lag_cmd, &delete_cmd, NULL};
