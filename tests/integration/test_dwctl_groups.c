/*
 * dwctl groups lag | groups delete | topics count | topics delete against the real Kafka
 * (DW_KAFKA_BOOTSTRAP from scripts/services.sh env): a topic written in transactions (one
 * committed, one aborted, one committed), groups that committed part of it, all of it, or
 * nothing. lag counts only the records a read_committed consumer gets (no markers, no aborted
 * records); count is high minus low watermark; the deletes remove exactly what they name.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_kafka.h"
#include "dw_time.h"
#include "dw_testkafka.h"
#include "dw_testutil.h"

#define DWCTL      DW_BIN_DIR "/dwctl"
#define TIMEOUT_MS 30000

static dw_test_run_t r;
static dw_conf_t *conf;
static rd_kafka_t *admin;
static char run[96], topic[160], g_part[128], g_all[128], g_none[128], g_live[128];

static void setup(void)
{
    char errstr[512];
    cr_assert_eq(dw_testkafka_clients(&conf, &admin, NULL, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    snprintf(run, sizeof(run), "%s", dw_test_unique("itgrp"));
    snprintf(topic, sizeof(topic), "dw.%s.fo", run);
    snprintf(g_part, sizeof(g_part), "%s-part", run);
    snprintf(g_all, sizeof(g_all), "%s-all", run);
    snprintf(g_none, sizeof(g_none), "%s-none", run);
    snprintf(g_live, sizeof(g_live), "%s-live", run);
}

/* Best effort: what a failed test left behind. */
static void teardown(void)
{
    char errstr[512];
    if (admin) {
        const char *names[] = {topic};
        dw_kafka_topics_delete(admin, names, 1, TIMEOUT_MS, errstr, sizeof(errstr));
        const char *args[] = {"groups", "delete", g_part, g_all, g_none, g_live, NULL};
        dw_test_run(&r, DWCTL, args, NULL, 1);
        rd_kafka_destroy(admin);
    }
    dw_conf_destroy(conf);
}

TestSuite(dwctl_groups, .init = setup, .fini = teardown, .timeout = 180);

/* n records in one transaction, committed or aborted (flushed first, so the aborted records and
 * the abort marker are in the log). */
static void txn(rd_kafka_t *p, int n, bool commit)
{
    char errstr[512];
    cr_assert_eq(dw_kafka_txn_begin(p, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    for (int i = 0; i < n; i++) {
        char value[32];
        snprintf(value, sizeof(value), "{\"i\":%d}", i);
        dw_kafka_msg_t msg = DW_KAFKA_MSG_INIT;
        msg.topic = topic;
        msg.partition = 0;
        msg.value = value;
        msg.value_len = strlen(value);
        cr_assert_eq(dw_kafka_produce(p, &msg, NULL, 5000, errstr, sizeof(errstr)), DW_OK, "%s",
                     errstr);
    }
    cr_assert_eq(dw_kafka_flush(p, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s", errstr);
    if (commit)
        cr_assert_eq(dw_kafka_txn_commit(p, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                     errstr);
    else
        cr_assert_eq(dw_kafka_txn_abort(p, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                     errstr);
}

/* group commits offset on partition 0 of the topic, without joining. */
static void commit(const char *group, int64_t offset)
{
    char errstr[512];
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.group_id = group;
    rd_kafka_t *c = dw_kafka_consumer_new(conf, &copts, errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr);
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, topic, 0)->offset = offset;
    rd_kafka_resp_err_t kerr = rd_kafka_commit(c, offs, 0);
    rd_kafka_topic_partition_list_destroy(offs);
    dw_kafka_consumer_destroy(c);
    cr_assert_eq(kerr, RD_KAFKA_RESP_ERR_NO_ERROR, "commit %s: %s", group, rd_kafka_err2str(kerr));
}

/* The topic: offsets 0-4 committed records, 5 their marker, 6-7 aborted records, 8 the abort
 * marker, 9-11 committed records, 12 their marker: 13 offsets, 8 records, 6 of them after 2. */
static void make_topic(void)
{
    char errstr[512];
    dw_kafka_topic_spec_t spec = {.name = topic, .partitions = 1, .replication_factor = -1};
    cr_assert_eq(dw_kafka_topics_create(admin, &spec, 1, TIMEOUT_MS, errstr, sizeof(errstr)), DW_OK,
                 "%s", errstr);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.transactional_id = run;
    rd_kafka_t *p = dw_kafka_producer_new(conf, &popts, errstr, sizeof(errstr));
    cr_assert_not_null(p, "%s", errstr);
    cr_assert_eq(dw_kafka_txn_init(p, TIMEOUT_MS, NULL, errstr, sizeof(errstr)), DW_OK, "%s",
                 errstr);
    txn(p, 5, true);
    txn(p, 2, false);
    txn(p, 3, true);
    rd_kafka_destroy(p);
    /* the coordinator writes the commit markers after the commit returned, and the admin
     * client (read_committed) sees the end as the last stable offset: wait for the last one */
    int64_t lo = 0, hi = 0;
    for (int i = 0; i < 300 && hi < 13; i++) {
        if (i)
            dw_time_sleep_ms(100);
        cr_assert_eq(rd_kafka_query_watermark_offsets(admin, topic, 0, &lo, &hi, TIMEOUT_MS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    cr_assert_eq(hi, 13, "high watermark %lld: the layout the test expects is not there",
                 (long long)hi);
}

Test(dwctl_groups, lag_counts_committed_records_only_and_deletes_remove_them)
{
    make_topic();
    commit(g_part, 2);
    commit(g_all, 12); /* after the last record, before its marker: what a consumer commits */

    /* 13 - 2 = 11 offsets, of which 6 are committed records (3 + 3): markers and the aborted
     * pair are no lag */
    dw_test_run(&r, DWCTL, (const char *[]){"groups", "lag", g_part, g_all, g_none, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[512];
    snprintf(want, sizeof(want), "%s 6\n%s 0\n%s -1\n", g_part, g_all, g_none);
    cr_assert_str_eq(r.out, want);

    dw_test_run(&r, DWCTL, (const char *[]){"groups", "lag", "--json", g_part, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof(want), "{\"group\":\"%s\",\"lag\":6}\n", g_part);
    cr_assert_str_eq(r.out, want);

    /* --wait gives up after the time when the lag stays */
    time_t t0 = time(NULL);
    dw_test_run(&r, DWCTL, (const char *[]){"groups", "lag", "--wait", "2", g_part, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(time(NULL) - t0 >= 2, "--wait 2 returned at once");
    snprintf(want, sizeof(want), "%s 6\n", g_part);
    cr_assert_str_eq(r.out, want);

    /* --wait returns as soon as every lag is 0 */
    t0 = time(NULL);
    dw_test_run(&r, DWCTL, (const char *[]){"groups", "lag", "--wait", "90", g_all, g_none, NULL},
                NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(time(NULL) - t0 < 30, "--wait 90 with no lag took %lld s",
              (long long)(time(NULL) - t0));
    snprintf(want, sizeof(want), "%s 0\n%s -1\n", g_all, g_none);
    cr_assert_str_eq(r.out, want);

    /* count: offsets held, markers included; a missing topic has 0 */
    char missing[200];
    snprintf(missing, sizeof(missing), "dw.%s_missing.fo", run);
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "count", topic, missing, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof(want), "%s 13\n%s 0\n", topic, missing);
    cr_assert_str_eq(r.out, want);

    dw_test_run(&r, DWCTL, (const char *[]){"groups", "delete", g_part, g_all, g_none, NULL}, NULL,
                1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof(want), "deleted  %s\ndeleted  %s\nabsent   %s\n", g_part, g_all, g_none);
    cr_assert_str_eq(r.out, want);
    dw_test_run(&r, DWCTL, (const char *[]){"groups", "lag", g_part, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof(want), "%s -1\n", g_part);
    cr_assert_str_eq(r.out, want, "the group's offsets outlived its deletion");

    dw_test_run(&r, DWCTL, (const char *[]){"topics", "delete", "--match", run, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "1\n");
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "count", "--json", topic, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(want, sizeof(want), "{\"exists\":false,\"records\":0,\"topic\":\"%s\"}\n", topic);
    cr_assert_str_eq(r.out, want);
}

Test(dwctl_groups, topics_delete_refuses_a_short_or_missing_match)
{
    make_topic();
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "delete", "--match", "dw.", NULL}, NULL, 1);
    cr_assert_eq(r.status, 2, "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.err, "too short"), "%s", r.err);
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "delete", "--match", "", NULL}, NULL, 1);
    cr_assert_eq(r.status, 2, "%s%s", r.out, r.err);
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "delete", NULL}, NULL, 1);
    cr_assert_eq(r.status, 2, "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.err, "--match is required"), "%s", r.err);
    /* nothing was deleted */
    dw_test_run(&r, DWCTL, (const char *[]){"topics", "count", topic, NULL}, NULL, 1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    char want[256];
    snprintf(want, sizeof(want), "%s 13\n", topic);
    cr_assert_str_eq(r.out, want);
}

Test(dwctl_groups, delete_of_a_group_with_members_fails_naming_it)
{
    char errstr[512];
    make_topic();
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.group_id = g_live;
    rd_kafka_t *c = dw_kafka_consumer_new(conf, &copts, errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    cr_assert_eq(rd_kafka_subscribe(c, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(subs);
    /* a member once it has its assignment */
    bool assigned = false;
    for (int i = 0; i < 150 && !assigned; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(c, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
            assigned = a->cnt > 0;
            rd_kafka_topic_partition_list_destroy(a);
        }
    }
    dw_test_run(&r, DWCTL, (const char *[]){"groups", "delete", g_live, g_none, NULL}, NULL, 1);
    dw_kafka_consumer_destroy(c);
    cr_assert(assigned, "the consumer never got its partition");
    cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
    char want[256];
    snprintf(want, sizeof(want), "could not delete group \"%s\": it still has members", g_live);
    cr_assert_not_null(strstr(r.err, want), "%s", r.err);
    /* the other group's answer is still given */
    snprintf(want, sizeof(want), "absent   %s\n", g_none);
    cr_assert_not_null(strstr(r.out, want), "%s", r.out);
}
