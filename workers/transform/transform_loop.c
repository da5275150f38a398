/*
 * transform_loop: dw-transform's main loop. One thread, one consumer (group dw-transform,
 * cooperative-sticky, read_committed) and one transactional producer per instance, in the shape
 * of librdkafka's examples/transactions.c:
 *
 *   begin (lazily, at the first message) -> per message: process, produce the command or dead
 *   letter, remember the next offset -> every transform.commit_messages messages or
 *   transform.commit_interval_ms: send_offsets_to_transaction (with the consumer's group
 *   metadata, so a zombie of an older generation is fenced by the group coordinator) + commit.
 *
 * A retriable error repeats the call; an abortable one aborts, rewinds the consumer to the
 * committed offsets and redoes the work (bounded by transform.max_aborts in a row, since
 * librdkafka 2.0.2 may need a second abort to bump the epoch); a fatal one (fenced) ends the
 * process. On a revoke the open transaction is committed (aborted when the partitions were lost)
 * before the partitions go, so the next owner starts exactly where this one stopped.
 *
 * The messages taken from the consumer wait in the mapping queue (transform_pool.c), where the
 * mapping threads map them while this thread produces and commits; only produced messages belong
 * to the transaction, so whenever the consumer goes back to the committed offsets (revoke, abort,
 * reload) the queue is let go and its messages are consumed again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dw_dlq.h"
#include "dw_log.h"
#include "dw_signal.h"
#include "dw_time.h"
#include "dw_topics.h"
#include "transform.h"

#define FAC "transform"

#ifndef DW_DEFAULT_SCHEMAS_DIR
#define DW_DEFAULT_SCHEMAS_DIR "schemas"
#endif

const dw_conf_def_t tx_conf_defs[] = {
    {"transform.maps", DW_CONF_STR, "all", 0, 0, NULL, 0, NULL,
     "maps this worker serves: \"all\" (every map of maps.dir) or names separated by commas"},
    {"transform.group_id", DW_CONF_STR, "dw-transform", 0, 0, NULL, 0, NULL,
     "consumer group of the transform workers"},
    {"transform.instance_id", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "stable id of this instance, unique among running instances (pod name of a StatefulSet, "
     "host-N); default: the host name"},
    {"transform.transactional_id_prefix", DW_CONF_STR, "dw-transform", 0, 0, NULL, 0, NULL,
     "transactional.id is <prefix>-<instance_id>"},
    {"transform.commit_messages", DW_CONF_INT, "2000", 1, 1000000, NULL, 0, NULL,
     "commit the transaction after this many input messages (also the transaction's cap)"},
    {"transform.commit_interval_ms", DW_CONF_INT, "100", 1, 600000, NULL, 0, NULL,
     "commit the open transaction when it is this old (ms)"},
    {"transform.max_event_bytes", DW_CONF_INT, "1048576", 64, 1e9, NULL, 0, NULL,
     "a larger input value is dead-lettered as poison (too_large)"},
    {"transform.txn_timeout_ms", DW_CONF_INT, "30000", 1000, 600000, NULL, 0, NULL,
     "bound of one transactional call (init, send offsets, commit, abort)"},
    {"transform.max_aborts", DW_CONF_INT, "10", 1, 100000, NULL, 0, NULL,
     "transactions aborted in a row before the worker gives up (exit 1)"},
    {"transform.threads", DW_CONF_INT, "2", 0, 64, NULL, 0, NULL,
     "mapping threads besides the loop thread (0: the loop thread maps alone); Kafka I/O stays "
     "on the loop thread"},
    {"transform.batch_messages", DW_CONF_INT, "500", 1, 100000, NULL, 0, NULL,
     "messages taken from the consumer in one turn of the loop, at most"},
    {"transform.queue_messages", DW_CONF_INT, "4000", 1, 1000000, NULL, 0, NULL,
     "messages taken from the consumer and not produced yet, at most: the mapping threads map "
     "them while the loop thread produces and commits"},
    {"transform.poll_ms", DW_CONF_INT, "100", 1, 10000, NULL, 0, NULL,
     "longest wait for a message, in ms"},
    {"transform.stats_interval_ms", DW_CONF_INT, "10000", 0, 86400000, NULL, 0, NULL,
     "log the counters at info level this often (0: never)"},
    {"transform.subscribe_pattern", DW_CONF_STR, "", 0, 0, NULL, 0, NULL,
     "subscribe to the capture topics matching this regular expression (librdkafka syntax, "
     "starting with ^) instead of those of the served maps; an event of a topic whose map is not "
     "loaded goes to dw._unknown.dlq. Empty: the served maps' topics"},
    {"transform.create_topics", DW_CONF_BOOL, "true", 0, 0, NULL, 0, NULL,
     "at start and reload, create the missing topics of the served maps and dw._unknown.dlq "
     "(topics.* settings); false: only check and warn"},
    {"transform.prefetch_kbytes", DW_CONF_INT, "65536", 1, 2097151, NULL, 0, NULL,
     "consumer prefetch bound, KB (kafka.queued.max.messages.kbytes; an explicit kafka.* value "
     "wins)"},
    {"transform.linger_ms", DW_CONF_INT, "5", 0, 900000, NULL, 0, NULL,
     "producer batching delay, ms (kafka.linger.ms; an explicit kafka.* value wins)"},
    {"transform.compression", DW_CONF_ENUM, "lz4", 0, 0, "none|gzip|snappy|lz4|zstd", 0, NULL,
     "compression of the produced batches (kafka.compression.type; an explicit kafka.* value "
     "wins): lz4 costs the worker little and saves the broker CPU, disk and network"},
    DW_CONF_END,
};

struct tx_loop_s {
    const dw_conf_t *conf;
    dw_mapset_t *set;
    char **served; /* the configured map names, or NULL: every map of the set */
    size_t nserved;
    char **topics; /* the subscription */
    size_t ntopics;
    rd_kafka_t *producer, *consumer;
    char instance[256];
    char txid[512];
    /* the open transaction */
    bool txn_open;
    int64_t txn_start_ms;
    rd_kafka_topic_partition_list_t *offsets; /* next offset per partition */
    tx_pending_t pending;
    int aborts_in_row;
    bool need_rewind;
    /* the pipeline: the messages taken from the consumer wait in the pool's ring, where its
     * threads map them, while the loop thread produces the mapped ones in order and commits */
    tx_pool_t *pool;
    rd_kafka_message_t **taken; /* one turn's messages, batch_messages of them at most */
    uint64_t rebalance_epoch;   /* bumped by every assign and revoke */
    uint64_t revoke_epoch;      /* bumped by every revoke */
    uint64_t abort_epoch;       /* bumped by every abort */
    /* settings */
    long long threads, batch_messages, queue_messages;
    long long commit_messages, commit_interval_ms, max_event_bytes, txn_timeout_ms, max_aborts,
        poll_ms, stats_interval_ms;
    /* outcome */
    bool fatal;
    dw_err_t fatal_err;
    char fatal_msg[1024];
    int64_t last_consumer_warn_ms;
    tx_counters_t counters;
};

static void tx_fatal(tx_loop_t *loop, dw_err_t err, const char *msg)
{
    if (loop->fatal)
        return;
    loop->fatal = true;
    loop->fatal_err = err ? err : DW_ERR_INTERNAL;
    snprintf(loop->fatal_msg, sizeof(loop->fatal_msg), "%s", msg);
    DW_ERROR(FAC, "%s", msg);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---------------------------------------------------------------- maps and topics */

/* Every served map must be in set. */
static dw_err_t check_served(const tx_loop_t *loop, const dw_mapset_t *set, char *errstr,
                             size_t errstr_size)
{
    for (size_t i = 0; i < loop->nserved; i++)
        if (!dw_mapset_find(set, loop->served[i]))
            return dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                           "transform.maps: no map named \"%s\" in %s", loop->served[i],
                           dw_conf_get_str(loop->conf, "maps.dir"));
    return DW_OK;
}

/* The capture topics of the served maps of set: new array of new strings. */
static dw_err_t build_topics(const tx_loop_t *loop, const dw_mapset_t *set, char ***topicsp,
                             size_t *np)
{
    size_t nmaps = loop->served ? loop->nserved : dw_mapset_count(set);
    char **topics = calloc(nmaps * 2 + 1, sizeof(*topics));
    size_t n = 0;
    if (!topics)
        return DW_ERR_NOMEM;
    for (size_t i = 0; i < nmaps; i++) {
        const char *name = loop->served ? loop->served[i] : dw_map_name(dw_mapset_get(set, i));
        for (int k = 0; k < 2; k++) {
            char t[DW_KAFKA_TOPIC_MAX + 1];
            if (dw_kafka_topic_name(t, sizeof(t), name, k ? DW_KAFKA_TOPIC_DV : DW_KAFKA_TOPIC_FO,
                                    NULL, 0) != DW_OK)
                continue;
            if (!(topics[n] = strdup(t))) {
                free_names(topics, n);
                return DW_ERR_NOMEM;
            }
            n++;
        }
    }
    *topicsp = topics;
    *np = n;
    return DW_OK;
}

/* Make sure the topics of the served maps of set (the five of each map) and dw._unknown.dlq
 * exist: create the missing ones (transform.create_topics) with the topics.* settings, else warn
 * about them. A missing output topic would make every transaction abort. */
static dw_err_t ensure_topics(tx_loop_t *loop, const dw_mapset_t *set, char *errstr,
                              size_t errstr_size)
{
    bool create = dw_conf_get_bool(loop->conf, "transform.create_topics");
    size_t nmaps = loop->served ? loop->nserved : dw_mapset_count(set);
    size_t created = 0, nhave = 0;
    char **have = NULL;
    rd_kafka_t *rk = NULL;
    dw_err_t err = DW_OK;
    dw_topics_t *ts = dw_topics_new(loop->conf, 0);
    if (!ts)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    for (size_t i = 0; i < nmaps && !err; i++)
        err = dw_topics_add_map(ts,
                                loop->served ? loop->served[i] : dw_map_name(dw_mapset_get(set, i)),
                                DW_TOPICS_ALL, errstr, errstr_size);
    if (!err)
        err = dw_topics_add_map(ts, DW_DLQ_UNKNOWN_MAP, DW_TOPICS_KIND(DW_KAFKA_TOPIC_DLQ), errstr,
                                errstr_size);
    if (err)
        goto out;
    if (!(rk = dw_kafka_admin_new(loop->conf, errstr, errstr_size))) {
        err = DW_ERR_CONFIG;
        goto out;
    }
    if (create) {
        err = dw_topics_ensure(ts, rk, (int)loop->txn_timeout_ms, &created, errstr, errstr_size);
        if (err) {
            char why[1024];
            snprintf(why, sizeof(why), "%s", errstr);
            err = dw_errf(err, errstr, errstr_size, "could not make sure of the topics: %s", why);
            goto out;
        }
        if (created > 0)
            DW_INFO(FAC, "created %zu missing topic(s) of %zu", created, dw_topics_count(ts));
        goto out;
    }
    if ((err = dw_kafka_topics_list(rk, "dw.", (int)loop->txn_timeout_ms, &have, &nhave, errstr,
                                    errstr_size)) != DW_OK)
        goto out;
    const dw_kafka_topic_spec_t *specs = dw_topics_specs(ts);
    for (size_t i = 0; i < dw_topics_count(ts); i++) {
        bool found = false;
        for (size_t j = 0; j < nhave && !found; j++)
            found = strcmp(have[j], specs[i].name) == 0;
        if (!found)
            DW_WARN(FAC, "topic \"%s\" does not exist (transform.create_topics=false)",
                    specs[i].name);
    }
out:
    dw_kafka_topics_free(have, nhave);
    if (rk)
        rd_kafka_destroy(rk);
    dw_topics_destroy(ts);
    return err;
}

static dw_err_t subscribe(tx_loop_t *loop, char *errstr, size_t errstr_size)
{
    const char *pattern = dw_conf_get_str(loop->conf, "transform.subscribe_pattern");
    bool by_pattern = pattern && *pattern;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(by_pattern ? 1 : (int)loop->ntopics);
    if (by_pattern)
        rd_kafka_topic_partition_list_add(l, pattern, RD_KAFKA_PARTITION_UA);
    for (size_t i = 0; i < loop->ntopics && !by_pattern; i++)
        rd_kafka_topic_partition_list_add(l, loop->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(loop->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        return dw_errf(dw_kafka_err_map(err), errstr, errstr_size, "could not subscribe: %s",
                       rd_kafka_err2str(err));
    if (by_pattern)
        DW_INFO(FAC, "subscribed to the capture topics matching %s", pattern);
    else
        DW_INFO(FAC, "subscribed to %zu capture topic(s) of %zu map(s)", loop->ntopics,
                loop->ntopics / 2);
    return DW_OK;
}

/* ---------------------------------------------------------------- transactions */

static void offsets_reset(tx_loop_t *loop)
{
    if (loop->offsets)
        rd_kafka_topic_partition_list_destroy(loop->offsets);
    loop->offsets = rd_kafka_topic_partition_list_new(16);
}

static void rewind_now(tx_loop_t *loop)
{
    char errstr[512];
    dw_err_t err =
        dw_kafka_consumer_rewind(loop->consumer, (int)loop->txn_timeout_ms, errstr, sizeof(errstr));
    if (err) {
        DW_WARN(FAC, "%s (retrying)", errstr);
        loop->need_rewind = true;
        return;
    }
    loop->need_rewind = false;
}

/* Abort the open transaction; the consumer goes back to the committed offsets (now, or on the
 * next turn of the loop when called from the rebalance callback). */
static void tx_abort(tx_loop_t *loop, const char *why, bool in_callback)
{
    char errstr[512];
    dw_kafka_txn_action_t action = DW_KAFKA_TXN_OK;
    dw_err_t err = DW_OK;
    DW_WARN(FAC, "aborting the transaction: %s", why);
    loop->abort_epoch++;
    for (int i = 0; i < 5; i++) {
        err = dw_kafka_txn_abort(loop->producer, (int)loop->txn_timeout_ms, &action, errstr,
                                 sizeof(errstr));
        if (action != DW_KAFKA_TXN_RETRY)
            break;
    }
    loop->txn_open = false;
    memset(&loop->pending, 0, sizeof(loop->pending));
    offsets_reset(loop);
    if (err && action == DW_KAFKA_TXN_FATAL) {
        tx_fatal(loop, err, errstr);
        return;
    }
    if (err)
        DW_WARN(FAC, "%s", errstr);
    loop->counters.txn_aborted++;
    if (++loop->aborts_in_row > loop->max_aborts) {
        char msg[768];
        snprintf(msg, sizeof(msg), "giving up after %d transactions aborted in a row; last: %s",
                 loop->aborts_in_row, why);
        tx_fatal(loop, DW_ERR_KAFKA, msg);
        return;
    }
    if (in_callback)
        loop->need_rewind = true;
    else
        rewind_now(loop);
}

static dw_err_t tx_begin(tx_loop_t *loop)
{
    char errstr[512];
    dw_kafka_txn_action_t action = DW_KAFKA_TXN_OK;
    dw_err_t err = dw_kafka_txn_begin(loop->producer, &action, errstr, sizeof(errstr));
    if (err) {
        tx_fatal(loop, err, errstr);
        return err;
    }
    loop->txn_open = true;
    loop->txn_start_ms = dw_time_mono_ms();
    memset(&loop->pending, 0, sizeof(loop->pending));
    return DW_OK;
}

/* Send the offsets and commit. On failure: abort (+ rewind) or fatal. */
static void tx_commit(tx_loop_t *loop, bool in_callback)
{
    char errstr[512];
    dw_kafka_txn_action_t action = DW_KAFKA_TXN_OK;
    dw_err_t err = DW_OK;
    if (!loop->txn_open || loop->fatal)
        return;
    if (loop->offsets->cnt > 0) {
        for (int i = 0; i < 10; i++) {
            err = dw_kafka_txn_send_offsets(loop->producer, loop->consumer, loop->offsets,
                                            (int)loop->txn_timeout_ms, &action, errstr,
                                            sizeof(errstr));
            if (action != DW_KAFKA_TXN_RETRY)
                break;
            DW_WARN(FAC, "%s (retrying)", errstr);
        }
        if (err) {
            if (action == DW_KAFKA_TXN_FATAL)
                tx_fatal(loop, err, errstr);
            else
                tx_abort(loop, errstr, in_callback);
            return;
        }
    }
    for (int i = 0; i < 10; i++) {
        err = dw_kafka_txn_commit(loop->producer, (int)loop->txn_timeout_ms, &action, errstr,
                                  sizeof(errstr));
        if (action != DW_KAFKA_TXN_RETRY)
            break;
        DW_WARN(FAC, "%s (retrying)", errstr);
    }
    if (err) {
        if (action == DW_KAFKA_TXN_FATAL)
            tx_fatal(loop, err, errstr);
        else
            tx_abort(loop, errstr, in_callback);
        return;
    }
    tx_counters_commit(&loop->counters, &loop->pending);
    DW_DEBUG(FAC, "committed a transaction of %" PRIu64 " message(s)", loop->pending.consumed);
    loop->txn_open = false;
    loop->aborts_in_row = 0;
    memset(&loop->pending, 0, sizeof(loop->pending));
    offsets_reset(loop);
}

/* ---------------------------------------------------------------- rebalances */

static void tx_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    tx_loop_t *loop = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    loop->rebalance_epoch++;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        loop->counters.rebalances++;
        DW_INFO(FAC, "assigned %d partition(s)", parts->cnt);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        loop->revoke_epoch++;
        if (loop->txn_open && !loop->fatal) {
            if (rd_kafka_assignment_lost(rk)) {
                tx_abort(loop, "the partitions were lost", true);
            } else {
                DW_INFO(FAC, "committing the open transaction before %d partition(s) go",
                        parts->cnt);
                tx_commit(loop, true);
            }
        }
        DW_INFO(FAC, "revoked %d partition(s)", parts->cnt);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
        break;
    default:
        DW_ERROR(FAC, "rebalance failed: %s", rd_kafka_err2str(err));
        if (loop->txn_open && !loop->fatal)
            tx_abort(loop, "the rebalance failed", true);
        ret = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error) {
        DW_ERROR(FAC, "could not apply the rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (ret) {
        DW_ERROR(FAC, "could not apply the rebalance: %s", rd_kafka_err2str(ret));
    }
}

/* ---------------------------------------------------------------- one message */

static void tx_produce(tx_loop_t *loop, const dw_kafka_msg_t *m, rd_kafka_headers_t *hdrs)
{
    char errstr[512];
    int64_t deadline = dw_time_mono_ms() + loop->txn_timeout_ms;
    dw_err_t err;
    for (;;) {
        err = dw_kafka_produce(loop->producer, m, hdrs, 1000, errstr, sizeof(errstr));
        hdrs = NULL; /* taken */
        if (err != DW_ERR_QUEUE_FULL || dw_time_mono_ms() >= deadline || dw_signal_stop_requested())
            break;
        DW_WARN(FAC, "%s (waiting)", errstr);
    }
    if (!err)
        return;
    if (err == DW_ERR_FENCED || rd_kafka_fatal_error(loop->producer, NULL, 0))
        tx_fatal(loop, err, errstr);
    else
        tx_abort(loop, errstr, false);
}

/* Produce the outcome of one message (mapped already) in the open transaction and remember its
 * offset. out: borrowed (the caller clears it). */
static void tx_emit(tx_loop_t *loop, rd_kafka_message_t *rkm, const tx_outcome_t *outp, int64_t t0,
                    int64_t now_us)
{
    const tx_outcome_t *o = outp;
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    rd_kafka_headers_t *hdrs = NULL;
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = o->topic;
    switch (o->kind) {
    case TX_OUT_COMMAND:
        hdrs = dw_kafka_headers_dw(o->map, o->source, o->op, o->correlation_id);
        if (o->key) {
            m.key = o->key;
            m.key_len = o->key_len;
        } else {
            m.key = rkm->key;
            m.key_len = rkm->key_len;
        }
        m.value = o->value;
        m.value_len = o->value_len;
        break;
    case TX_OUT_DLQ: {
        rd_kafka_headers_t *orig = NULL;
        if (rd_kafka_message_headers(rkm, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
            orig = NULL;
        dw_dlq_info_t info = {
            .cls = o->cls,
            .reason = o->reason,
            .field = o->field,
            .message = o->message,
            .stage = "transform",
            .origin_topic = topic,
            .origin_partition = rkm->partition,
            .origin_offset = rkm->offset,
            .now_ms = dw_time_wall_ms(),
            .instance = loop->instance,
        };
        hdrs = dw_dlq_headers(orig, &info);
        m.key = rkm->key;
        m.key_len = rkm->key_len;
        m.value = rkm->payload;
        m.value_len = rkm->len;
        DW_WARN(FAC, "dead letter: %s [%" PRId32 "] @%" PRId64 " -> %s: class=%s reason=%s %s",
                topic, rkm->partition, rkm->offset, o->topic, o->cls, o->reason, o->message);
        break;
    }
    case TX_OUT_DROP:
        loop->pending.dropped++;
        break;
    case TX_OUT_SKIP:
        loop->pending.skipped++;
        break;
    }
    if (o->kind == TX_OUT_COMMAND || o->kind == TX_OUT_DLQ) {
        if (!hdrs) {
            tx_fatal(loop, DW_ERR_NOMEM, "out of memory");
            return;
        }
        bool was_open = loop->txn_open;
        tx_produce(loop, &m, hdrs);
        if (loop->fatal || !loop->txn_open || !was_open)
            return; /* aborted: the message is consumed again after the rewind */
        if (o->kind == TX_OUT_COMMAND)
            loop->pending.produced++;
        else
            loop->pending.dead_lettered++;
    }
    loop->pending.consumed++;
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(loop->offsets, topic, rkm->partition);
    if (!p)
        p = rd_kafka_topic_partition_list_add(loop->offsets, topic, rkm->partition);
    p->offset = rkm->offset + 1;
    tx_counters_latency(&loop->counters, (uint64_t)(now_us > t0 ? now_us - t0 : 0));
}

/* Produce the mapped outcomes at the head of the pool's ring, in input order, in the open
 * transaction (begun when none is), until the transaction holds transform.commit_messages input
 * messages. When the head is not mapped yet, wait briefly for a thread to map it (map it here
 * when there are no threads). An abort on the way: the caller lets go of the ring (consumed
 * again after the rewind). */
static void emit_ready(tx_loop_t *loop)
{
    uint64_t aborts = loop->abort_epoch;
    size_t k = tx_pool_ready(loop->pool);
    while (k == 0 && tx_pool_count(loop->pool) > 0) {
        /* the loop thread maps only when there are no mapping threads: its time is better
         * spent producing and committing, the serial part */
        bool mapped = loop->threads == 0 && tx_pool_help(loop->pool);
        if (!mapped && !tx_pool_wait_head(loop->pool, 5))
            break; /* a thread is still at it: back to the consumer */
        k = tx_pool_ready(loop->pool);
    }
    long long room = loop->commit_messages - (long long)loop->pending.consumed;
    if (room <= 0)
        return; /* the transaction is full: commit first */
    if ((long long)k > room)
        k = (size_t)room;
    if (k == 0 || loop->fatal)
        return;
    if (!loop->txn_open && tx_begin(loop) != DW_OK)
        return;
    int64_t now_us = dw_time_mono_us();
    size_t i = 0;
    for (; i < k; i++) {
        if (loop->fatal || !loop->txn_open || loop->abort_epoch != aborts)
            return; /* aborted and rewound: the ring is consumed again */
        tx_item_t *it = tx_pool_item(loop->pool, i);
        if (it->err) {
            tx_fatal(loop, it->err, "out of memory");
            return;
        }
        tx_emit(loop, it->msg, &it->out, it->t0_us, now_us);
    }
    if (loop->fatal || loop->abort_epoch != aborts)
        return;
    tx_pool_pop(loop->pool, i);
}

/* ---------------------------------------------------------------- reload */

static void tx_reload(tx_loop_t *loop)
{
    char errstr[1024];
    const char *maps_dir = dw_conf_get_str(loop->conf, "maps.dir");
    const char *meta_dir = dw_conf_get_str(loop->conf, "maps.metadata_dir");
    char **topics = NULL;
    size_t ntopics = 0;
    DW_INFO(FAC, "reloading the maps of %s", maps_dir);
    dw_mapset_t *set = dw_mapset_load(maps_dir, meta_dir, NULL, errstr, sizeof(errstr));
    if (!set || check_served(loop, set, errstr, sizeof(errstr)) != DW_OK) {
        loop->counters.reload_failures++;
        DW_ERROR(FAC, "reload failed, keeping the maps loaded before: %s", errstr);
        dw_mapset_destroy(set);
        return;
    }
    if (build_topics(loop, set, &topics, &ntopics) != DW_OK) {
        dw_mapset_destroy(set);
        tx_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    if (ensure_topics(loop, set, errstr, sizeof(errstr)) != DW_OK)
        DW_WARN(FAC, "reload: %s", errstr); /* a new map's commands abort until they exist */
    /* one transaction, one map set: what was produced with the old set is committed, what was
     * taken from the consumer but not produced yet is let go and consumed again (from the
     * committed offsets) to be mapped with the new set */
    tx_commit(loop, false);
    tx_pool_clear(loop->pool);
    if (!loop->fatal)
        rewind_now(loop);
    tx_pool_set_maps(loop->pool, set);
    dw_mapset_destroy(loop->set);
    loop->set = set;
    loop->counters.reloads++;
    bool changed = ntopics != loop->ntopics;
    for (size_t i = 0; i < ntopics && !changed; i++)
        changed = strcmp(topics[i], loop->topics[i]) != 0;
    free_names(loop->topics, loop->ntopics);
    loop->topics = topics;
    loop->ntopics = ntopics;
    char versions[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < dw_mapset_count(set) && o < sizeof(versions) - 1; i++) {
        const dw_map_t *m = dw_mapset_get(set, i);
        int w = snprintf(versions + o, sizeof(versions) - o, "%s%s@%d", i ? " " : "",
                         dw_map_name(m), dw_map_version(m));
        if (w < 0)
            break;
        o += (size_t)w;
    }
    DW_INFO(FAC, "maps reloaded: %zu map(s): %s%s", dw_mapset_count(set), versions,
            o >= sizeof(versions) - 1 ? "..." : "");
    const char *pattern = dw_conf_get_str(loop->conf, "transform.subscribe_pattern");
    if (pattern && *pattern)
        changed = false; /* the pattern stays; topics of maps no longer loaded: unknown_map */
    if (changed && subscribe(loop, errstr, sizeof(errstr)) != DW_OK)
        tx_fatal(loop, DW_ERR_KAFKA, errstr);
}

/* ---------------------------------------------------------------- life cycle */

static dw_err_t parse_served(tx_loop_t *loop, const char *spec, char *errstr, size_t errstr_size)
{
    if (!spec || strcmp(spec, "all") == 0 || !*spec)
        return DW_OK;
    char *copy = strdup(spec);
    if (!copy)
        return DW_ERR_NOMEM;
    size_t cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    loop->served = calloc(cap, sizeof(char *));
    dw_err_t ret = loop->served ? DW_OK : DW_ERR_NOMEM;
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t && !ret; t = strtok_r(NULL, ", ", &save)) {
        if ((ret = dw_kafka_map_name_check(t, false, errstr, errstr_size)) != DW_OK) {
            char why[256];
            snprintf(why, sizeof(why), "%s", errstr);
            ret = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "transform.maps: %s", why);
            break;
        }
        if (!(loop->served[loop->nserved] = strdup(t)))
            ret = DW_ERR_NOMEM;
        else
            loop->nserved++;
    }
    free(copy);
    if (!ret && loop->nserved == 0)
        ret = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "transform.maps: no map named");
    return ret;
}

tx_loop_t *tx_loop_new(const dw_conf_t *conf, int *exit_code, char *errstr, size_t errstr_size)
{
    *exit_code = 1;
    tx_loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    loop->conf = conf;
    loop->commit_messages = dw_conf_get_int(conf, "transform.commit_messages");
    loop->commit_interval_ms = dw_conf_get_int(conf, "transform.commit_interval_ms");
    loop->max_event_bytes = dw_conf_get_int(conf, "transform.max_event_bytes");
    loop->txn_timeout_ms = dw_conf_get_int(conf, "transform.txn_timeout_ms");
    loop->max_aborts = dw_conf_get_int(conf, "transform.max_aborts");
    loop->poll_ms = dw_conf_get_int(conf, "transform.poll_ms");
    loop->stats_interval_ms = dw_conf_get_int(conf, "transform.stats_interval_ms");
    loop->threads = dw_conf_get_int(conf, "transform.threads");
    loop->batch_messages = dw_conf_get_int(conf, "transform.batch_messages");
    loop->queue_messages = dw_conf_get_int(conf, "transform.queue_messages");
    offsets_reset(loop);
    loop->taken = calloc((size_t)loop->batch_messages, sizeof(*loop->taken));
    loop->pool = tx_pool_new((int)loop->threads, (size_t)loop->queue_messages,
                             (size_t)loop->max_event_bytes);
    if (!loop->taken || !loop->pool) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory or threads");
        tx_loop_destroy(loop);
        return NULL;
    }

    const char *inst = dw_conf_get_str(conf, "transform.instance_id");
    if (inst && *inst) {
        snprintf(loop->instance, sizeof(loop->instance), "%s", inst);
    } else if (gethostname(loop->instance, sizeof(loop->instance) - 1) != 0 || !loop->instance[0]) {
        snprintf(loop->instance, sizeof(loop->instance), "localhost");
    }
    snprintf(loop->txid, sizeof(loop->txid), "%s-%s",
             dw_conf_get_str(conf, "transform.transactional_id_prefix"), loop->instance);

    dw_err_t err = parse_served(loop, dw_conf_get_str(conf, "transform.maps"), errstr, errstr_size);
    if (err) {
        *exit_code = err == DW_ERR_NOMEM ? 1 : 2;
        goto fail;
    }
    const char *pattern = dw_conf_get_str(conf, "transform.subscribe_pattern");
    if (pattern && *pattern && pattern[0] != '^') {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                "transform.subscribe_pattern: a regular expression starts with ^ (\"%s\")",
                pattern);
        *exit_code = 2;
        goto fail;
    }
    const char *maps_dir = dw_conf_get_str(conf, "maps.dir");
    const char *meta_dir = dw_conf_get_str(conf, "maps.metadata_dir");
    char why[1024];
    loop->set = dw_mapset_load(maps_dir, meta_dir, NULL, why, sizeof(why));
    if (!loop->set) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "could not load the maps of %s: %s", maps_dir,
                why);
        *exit_code = 2;
        goto fail;
    }
    if (check_served(loop, loop->set, errstr, errstr_size) != DW_OK) {
        *exit_code = 2;
        goto fail;
    }
    tx_pool_set_maps(loop->pool, loop->set);
    if (build_topics(loop, loop->set, &loop->topics, &loop->ntopics) != DW_OK) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (loop->ntopics == 0) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "no map to serve in %s", maps_dir);
        *exit_code = 2;
        goto fail;
    }
    if (ensure_topics(loop, loop->set, errstr, errstr_size) != DW_OK)
        goto fail;

    char client_id[300];
    snprintf(client_id, sizeof(client_id), "dw-transform-%s", loop->instance);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.transactional_id = loop->txid;
    popts.client_id = client_id;
    popts.opaque = loop;
    loop->producer = dw_kafka_producer_new(conf, &popts, errstr, errstr_size);
    if (!loop->producer) {
        *exit_code = 2;
        goto fail;
    }
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.group_id = dw_conf_get_str(conf, "transform.group_id");
    copts.client_id = client_id;
    copts.isolation_level = "read_committed";
    copts.cooperative = true;
    copts.rebalance_cb = tx_rebalance_cb;
    copts.opaque = loop;
    loop->consumer = dw_kafka_consumer_new(conf, &copts, errstr, errstr_size);
    if (!loop->consumer) {
        *exit_code = 2;
        goto fail;
    }
    /* init_transactions fences an older producer with the same transactional.id and aborts or
     * completes what it left open. */
    int64_t deadline = dw_time_mono_ms() + 2 * loop->txn_timeout_ms;
    dw_kafka_txn_action_t action = DW_KAFKA_TXN_OK;
    for (;;) {
        err = dw_kafka_txn_init(loop->producer, (int)loop->txn_timeout_ms, &action, errstr,
                                errstr_size);
        if (!err || action != DW_KAFKA_TXN_RETRY || dw_time_mono_ms() >= deadline ||
            dw_signal_stop_requested())
            break;
        DW_WARN(FAC, "%s (retrying)", errstr);
    }
    if (err)
        goto fail;
    DW_INFO(FAC, "instance %s: transactional.id %s, group %s, %zu map(s)", loop->instance,
            loop->txid, copts.group_id, dw_mapset_count(loop->set));
    if (subscribe(loop, errstr, errstr_size) != DW_OK)
        goto fail;
    *exit_code = 0;
    return loop;
fail:
    tx_loop_destroy(loop);
    return NULL;
}

static void consumer_error(tx_loop_t *loop, const rd_kafka_message_t *rkm)
{
    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    char errstr[512];
    rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(loop->consumer, errstr, sizeof(errstr));
    if (ferr) {
        char msg[640];
        snprintf(msg, sizeof(msg), "fatal consumer error: %s", errstr);
        tx_fatal(loop, dw_kafka_err_map(ferr), msg);
        return;
    }
    int64_t now = dw_time_mono_ms();
    if (now - loop->last_consumer_warn_ms >= 30000) {
        loop->last_consumer_warn_ms = now;
        DW_WARN(FAC, "consumer: %s%s%s", rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "",
                rkm->rkt ? ": " : "", rd_kafka_message_errstr(rkm));
    }
}

dw_err_t tx_loop_run(tx_loop_t *loop, char *errstr, size_t errstr_size)
{
    int64_t last_stats = dw_time_mono_ms();
    while (!dw_signal_stop_requested() && !loop->fatal) {
        if (dw_signal_reload_take())
            tx_reload(loop);
        rd_kafka_poll(loop->producer, 0);
        if (loop->need_rewind) {
            rewind_now(loop);
            if (loop->need_rewind) {
                rd_kafka_message_t *skip = rd_kafka_consumer_poll(loop->consumer, 100);
                if (skip)
                    rd_kafka_message_destroy(skip); /* consumed again after the rewind */
                continue;
            }
        }
        int timeout = (int)loop->poll_ms;
        if (tx_pool_count(loop->pool) > 0) {
            timeout = 0; /* messages wait to be produced: take what is ready, no more */
        } else if (loop->txn_open) {
            int64_t left = loop->txn_start_ms + loop->commit_interval_ms - dw_time_mono_ms();
            timeout = left < 0 ? 0 : (left < timeout ? (int)left : timeout);
        }
        /* take what the ring has room for: wait for the first message, take what is ready after
         * it (while the pool's threads map the messages taken before) */
        size_t cap = tx_pool_room(loop->pool), n = 0;
        if (cap > (size_t)loop->batch_messages)
            cap = (size_t)loop->batch_messages;
        uint64_t revokes = loop->revoke_epoch, aborts = loop->abort_epoch;
        rd_kafka_message_t *rkm = cap > 0 ? rd_kafka_consumer_poll(loop->consumer, timeout) : NULL;
        while (rkm) {
            if (rkm->err) {
                consumer_error(loop, rkm);
                rd_kafka_message_destroy(rkm);
            } else {
                loop->taken[n++] = rkm;
            }
            if (n >= cap || loop->fatal)
                break;
            rkm = rd_kafka_consumer_poll(loop->consumer, 0);
        }
        if (loop->need_rewind || revokes != loop->revoke_epoch || aborts != loop->abort_epoch) {
            /* partitions went (their transaction was committed or aborted in the callback):
             * nothing taken before is produced; the consumer goes back to the committed
             * offsets of what it still owns, so no message is lost or produced twice even when
             * a partition came back in the same turn */
            for (size_t i = 0; i < n; i++)
                rd_kafka_message_destroy(loop->taken[i]);
            tx_pool_clear(loop->pool);
            if (!loop->fatal) {
                tx_commit(loop, false);
                rewind_now(loop);
            }
            continue;
        }
        if (n > 0)
            tx_pool_push(loop->pool, loop->taken, n, dw_time_mono_us());
        /* produce what is mapped, in order; commit when due, while the threads map on */
        emit_ready(loop);
        int64_t now = dw_time_mono_ms();
        if (loop->txn_open && ((long long)loop->pending.consumed >= loop->commit_messages ||
                               now - loop->txn_start_ms >= loop->commit_interval_ms))
            tx_commit(loop, false);
        if (loop->abort_epoch != aborts)
            tx_pool_clear(loop->pool); /* aborted and rewound: consumed again */
        if (loop->stats_interval_ms > 0 && now - last_stats >= loop->stats_interval_ms) {
            char line[1024];
            tx_counters_format(&loop->counters, line, sizeof(line));
            DW_INFO(FAC, "counters: %s", line);
            last_stats = now;
        }
    }
    if (!loop->fatal) {
        DW_INFO(FAC, "stopping: committing the open transaction");
        tx_commit(loop, false);
    }
    /* taken but not produced: the next owner consumes it from the committed offsets */
    tx_pool_clear(loop->pool);
    char line[1024];
    tx_counters_format(&loop->counters, line, sizeof(line));
    DW_INFO(FAC, "counters: %s", line);
    if (loop->fatal)
        return dw_errf(loop->fatal_err, errstr, errstr_size, "%s", loop->fatal_msg);
    return DW_OK;
}

const tx_counters_t *tx_loop_counters(const tx_loop_t *loop)
{
    return &loop->counters;
}

void tx_loop_destroy(tx_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->pool)
        tx_pool_clear(loop->pool); /* the messages go before their consumer */
    if (loop->consumer) {
        /* close: the revoke callback sees no open transaction (committed by tx_loop_run, or
         * left to the broker to abort after a fatal error) */
        loop->fatal = loop->fatal || loop->txn_open;
        dw_kafka_consumer_destroy(loop->consumer);
    }
    if (loop->producer) {
        char errstr[256];
        dw_kafka_flush(loop->producer, 5000, NULL, errstr, sizeof(errstr));
        rd_kafka_destroy(loop->producer);
    }
    if (loop->offsets)
        rd_kafka_topic_partition_list_destroy(loop->offsets);
    tx_pool_destroy(loop->pool);
    free(loop->taken);
    dw_mapset_destroy(loop->set);
    free_names(loop->served, loop->nserved);
    free_names(loop->topics, loop->ntopics);
    free(loop);
}
