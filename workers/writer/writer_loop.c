/*
 * writer_loop: dw-writer's main loop. One thread; one consumer (group dw-writer-<target>,
 * cooperative-sticky, read_committed, offsets committed by hand), one idempotent producer for
 * dead letters, one target (common/dw_target) and one PostgreSQL connection for the ledger.
 *
 *   poll the consumer (bounded wait) -> each command into its partition's queue (an unreadable
 *   one is dead-lettered at once) -> when a batch is due and one of writer.batches_in_flight
 *   slots is free: pick it (writer_batch: per-key blocking, coalescing), have the ledger thread
 *   read its rows (one SELECT); when they are there, drop echoes / stale versions / unresolvable
 *   deletes, start writing the rest (dw_target_call_start) -> drive the writes in flight
 *   (dw_target_poll); a batch whose call is over: retry or dead-letter the failures, and have the
 *   ledger thread store the rest (one transaction); when it committed, they are done -> commit
 *   each partition's done watermark periodically, and synchronously on revoke and shutdown
 *   (the batches in flight are finished first). A key in flight is held back, so it is in one
 *   batch at a time.
 *
 * The loop never waits for PostgreSQL: the ledger statements run on the ledger thread
 * (writer_ledgerq), in the order submitted, while the loop keeps the HTTP transfers moving.
 *
 * Memory is bounded by writer.max_pending(_bytes): over it every partition is paused, under half
 * of it they resume. Signals only set flags; the target call returns early when stop is asked.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "dw_dlq.h"
#include "dw_kafka.h"
#include "dw_log.h"
#include "dw_signal.h"
#include "dw_system.h"
#include "dw_time.h"
#include "dw_topics.h"
#include "writer.h"

#define FAC "writer"

const dw_conf_def_t wr_conf_defs[] = {
    {"writer.maps", DW_CONF_STR, "all", 0, 0, NULL, 0, NULL,
     "maps this worker serves: \"all\" (every map of maps.dir that writes to the target) or "
     "names separated by commas"},
    {"writer.group_id", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "consumer group; default dw-writer-<target>"},
    {"writer.instance_id", DW_CONF_STR, NULL, 0, 0, NULL, 0, NULL,
     "this instance's name in dead letters and the client id; default: the host name"},
    {"writer.batch_max", DW_CONF_INT, "1000", 1, 100000, NULL, 0, NULL,
     "records per write call at most (maps.<map>.batch_max per map)"},
    {"maps.*.batch_max", DW_CONF_INT, NULL, 1, 100000, NULL, 0, NULL,
     "per-map cap of records per write call"},
    {"maps.*.on_unavailable", DW_CONF_ENUM, NULL, 0, 0, "queue|fail", 0, NULL,
     "per-map override of the map file's on_unavailable: queue (retry until the target returns) "
     "or fail (dead-letter after the retry budget)"},
    {"writer.batch_linger_ms", DW_CONF_INT, "50", 0, 600000, NULL, 0, NULL,
     "wait this long for a batch to fill before writing what is there"},
    {"writer.max_pending", DW_CONF_INT, "10000", 10, 10000000, NULL, 0, NULL,
     "commands held (queued, retried, in flight) at most before consumption pauses"},
    {"writer.max_pending_bytes", DW_CONF_INT, "134217728", 65536, 1e12, NULL, 0, NULL,
     "memory of the commands held at most (estimated: 4 x the message size, for the parsed "
     "JSON) before consumption pauses"},
    {"writer.batches_in_flight", DW_CONF_INT, "3", 1, 64, NULL, 0, NULL,
     "batches written at once: while one batch's requests run, the next is read from the "
     "ledger and sent, and the previous one's ledger transaction is stored (a key is in one "
     "batch at a time)"},
    {"writer.concurrency", DW_CONF_INT, "4", 1, 256, NULL, 0, NULL,
     "requests in flight to the target at start"},
    {"writer.concurrency_max", DW_CONF_INT, "16", 1, 256, NULL, 0, NULL,
     "requests in flight at most (AIMD: halved on throttling, +1 after good batches)"},
    {"writer.concurrency_increase_after", DW_CONF_INT, "5", 1, 100000, NULL, 0, NULL,
     "batches without throttling before the concurrency grows by one"},
    {"writer.chunk_max", DW_CONF_INT, NULL, 1, 1000, NULL, 0, NULL,
     "records per request (UpsertMultiple targets, $batch parts); default 1000 for dv (Microsoft's "
     "suggested UpsertMultiple size: under service protection limits, records per request is "
     "what the allowance multiplies), 250 for fo (change sets per $batch)"},
    {"writer.upsert_multiple", DW_CONF_BOOL, "true", 0, 0, NULL, 0, NULL,
     "Dataverse: try UpsertMultiple first (false: $batch only)"},
    {"writer.retry_initial_ms", DW_CONF_INT, "500", 1, 3600000, NULL, 0, NULL,
     "first retry delay (doubles per attempt, with jitter, never before Retry-After)"},
    {"writer.retry_max_ms", DW_CONF_INT, "60000", 1, 86400000, NULL, 0, NULL,
     "longest retry delay"},
    {"writer.retry_budget", DW_CONF_INT, "10", 1, 1000000, NULL, 0, NULL,
     "on_unavailable=fail: attempts before the dead letter (class unavailable)"},
    {"writer.retry_budget_ms", DW_CONF_INT, "300000", 0, 1e12, NULL, 0, NULL,
     "on_unavailable=fail: time since the first failure before the dead letter"},
    {"writer.lookup_retries", DW_CONF_INT, "5", 0, 1000000, NULL, 0, NULL,
     "retries of a record whose referenced record is missing, before the dead letter"},
    {"writer.commit_interval_ms", DW_CONF_INT, "1000", 10, 600000, NULL, 0, NULL,
     "commit the done offsets this often"},
    {"writer.poll_ms", DW_CONF_INT, "100", 1, 10000, NULL, 0, NULL, "longest wait for a message"},
    {"writer.flush_timeout_ms", DW_CONF_INT, "30000", 100, 600000, NULL, 0, NULL,
     "wait this long for dead letters to be acknowledged on revoke and shutdown"},
    {"writer.stats_interval_ms", DW_CONF_INT, "10000", 0, 86400000, NULL, 0, NULL,
     "log the counters at info level this often (0: never)"},
    {"writer.create_topics", DW_CONF_BOOL, "true", 0, 0, NULL, 0, NULL,
     "at start, create the missing command and dead-letter topics of the served maps"},
    {"writer.prefetch_kbytes", DW_CONF_INT, "32768", 1, 2097151, NULL, 0, NULL,
     "consumer prefetch bound, KB (kafka.queued.max.messages.kbytes; an explicit kafka.* value "
     "wins); should hold more than a second of the drain (librdkafka waits a second before "
     "fetching again when it is full)"},
    DW_CONF_END,
};

typedef struct wr_mapinfo_s {
    const dw_map_t *map;
    size_t index;
    char topic[DW_KAFKA_TOPIC_MAX + 1];
    char dlq[DW_KAFKA_TOPIC_MAX + 1];
    const char *entity_set, *table;
    size_t batch_max;
    wr_policy_t policy;
} wr_mapinfo_t;

/* One batch being written: its groups, its records, the target call sending them and the
 * ledger statement the ledger thread runs for it. Stages: FETCH (the ledger rows are read), HELD
 * (read, but the target's Retry-After has not elapsed, or its requests would wait for the
 * target's concurrency: see may_send), WRITE (the target call runs), STORE (the ledger
 * transaction runs). */
typedef enum { WR_FL_FREE = 0, WR_FL_FETCH, WR_FL_WRITE, WR_FL_STORE, WR_FL_HELD } wr_fl_stage_t;

typedef struct wr_flight_s {
    bool busy; /* stage != WR_FL_FREE */
    wr_fl_stage_t stage;
    size_t ng, nrec, nput;
    wr_item_t **batch;
    dw_wrec_t *recs;
    size_t *rec_of; /* group index of recs[k] */
    wr_decision_t *decs;
    wr_ledger_row_t *rows;
    const char **a_maps, **a_cks, **a_rids; /* the ledger read's arguments */
    wr_ledger_put_t *puts;                  /* the ledger transaction's rows */
    json_t *ids;                            /* and Dataverse row ids (new) */
    wr_lq_job_t job;
    dw_target_call_t *call; /* NULL: nothing to write (every group dropped) */
    size_t nreq;            /* the requests of the call: nrec / chunk_max, rounded up */
    int64_t t0_us;
} wr_flight_t;

/* A dead letter's delivery in flight; item NULL once the item was freed (revoke). */
typedef struct wr_ticket_s {
    wr_item_t *item;
} wr_ticket_t;

struct wr_loop_s {
    const dw_conf_t *conf;
    char target_name[3];
    dw_map_side_t target;
    dw_mapset_t *set;
    wr_mapinfo_t *maps;
    size_t nmaps;
    rd_kafka_t *consumer, *producer;
    dw_system_t *sys;
    dw_target_t *tgt;
    dw_pg_t *pg;
    char instance[256];
    /* partitions */
    wr_part_t **parts;
    wr_part_batchinfo_t *binfo;
    size_t nparts, capparts, rr;
    /* dead letters to produce again (failed delivery) */
    wr_item_t **redo;
    size_t nredo, capredo;
    /* batches being written (writer.batches_in_flight) and the scratch of one batch */
    wr_flight_t *flights;
    size_t nflights;
    wr_lq_t *lq; /* the ledger thread, on pg */
    size_t *map_counts;
    /* settings */
    long long batch_max, linger_ms, max_pending, max_pending_bytes, commit_interval_ms, poll_ms,
        flush_timeout_ms, stats_interval_ms;
    wr_aimd_t aimd;
    int64_t hold_until_ms; /* monotonic: no request to the target before (its Retry-After) */
    size_t chunk_max;      /* records per request */
    uint64_t rnd;
    bool closing;
    /* outcome */
    bool fatal;
    dw_err_t fatal_err;
    char fatal_msg[1024];
    int64_t last_consumer_warn_ms;
    int64_t tick_us;      /* stage_tick's last time */
    int64_t last_poll_ms; /* monotonic: the consumer's last poll */
    wr_counters_t counters;
};

static uint64_t rnd_next(wr_loop_t *loop)
{
    uint64_t x = loop->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return loop->rnd = x;
}

static void wr_fatal(wr_loop_t *loop, dw_err_t err, const char *msg)
{
    if (loop->fatal)
        return;
    loop->fatal = true;
    loop->fatal_err = err ? err : DW_ERR_INTERNAL;
    snprintf(loop->fatal_msg, sizeof(loop->fatal_msg), "%s", msg);
    DW_ERROR(FAC, "%s", msg);
}

/* ---------------------------------------------------------------- items and partitions */

static void item_free_cb(wr_item_t *item, void *opaque)
{
    wr_loop_t *loop = opaque;
    if (item->msg)
        rd_kafka_message_destroy(item->msg);
    item->msg = NULL;
    if (item->ticket)
        ((wr_ticket_t *)item->ticket)->item = NULL;
    item->ticket = NULL;
    for (size_t i = 0; i < loop->nredo; i++)
        if (loop->redo[i] == item)
            loop->redo[i] = NULL;
}

static wr_mapinfo_t *mapinfo_by_topic(wr_loop_t *loop, const char *topic)
{
    for (size_t i = 0; i < loop->nmaps; i++)
        if (strcmp(loop->maps[i].topic, topic) == 0)
            return &loop->maps[i];
    return NULL;
}

static wr_part_t *part_find(wr_loop_t *loop, const char *topic, int32_t partition, size_t *idx)
{
    for (size_t i = 0; i < loop->nparts; i++)
        if (wr_part_partition(loop->parts[i]) == partition &&
            strcmp(wr_part_topic(loop->parts[i]), topic) == 0) {
            if (idx)
                *idx = i;
            return loop->parts[i];
        }
    return NULL;
}

static void binfo_rebuild(wr_loop_t *loop)
{
    for (size_t i = 0; i < loop->nparts; i++) {
        const wr_mapinfo_t *mi = wr_part_user(loop->parts[i]);
        loop->binfo[i].map_index = mi->index;
        loop->binfo[i].map_batch_max = mi->batch_max;
    }
}

static void pending_totals(const wr_loop_t *loop, size_t *msgs, size_t *bytes)
{
    size_t m = 0, b = 0;
    for (size_t i = 0; i < loop->nparts; i++) {
        m += wr_part_count(loop->parts[i]);
        b += wr_part_bytes(loop->parts[i]);
    }
    *msgs = m;
    *bytes = b;
}

/* Resume the partitions under half of the bounds; with may_pause, pause every partition when
 * over them. Pausing throws librdkafka's prefetched messages away (they are fetched again after
 * the resume, and a fetch that filled the prefetch queue waits a second before the next), so the
 * loop pauses only when it must poll the consumer while over the bounds (see wr_loop_run);
 * otherwise it just stops taking messages until the batches in flight free room. */
static void check_pressure(wr_loop_t *loop, bool may_pause)
{
    size_t msgs, bytes;
    for (size_t i = 0; i < loop->nparts; i++)
        wr_part_watermark(loop->parts[i]); /* release the done ones: only the held count */
    pending_totals(loop, &msgs, &bytes);
    loop->counters.pending = msgs;
    if (msgs > loop->counters.pending_max)
        loop->counters.pending_max = msgs;
    bool over = msgs >= (size_t)loop->max_pending || bytes >= (size_t)loop->max_pending_bytes;
    bool under =
        msgs <= (size_t)loop->max_pending / 2 && bytes <= (size_t)loop->max_pending_bytes / 2;
    if (!under && !(over && may_pause))
        return;
    over = !under;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < loop->nparts; i++) {
        wr_part_t *p = loop->parts[i];
        if (wr_part_paused(p) != over) {
            rd_kafka_topic_partition_list_add(l, wr_part_topic(p), wr_part_partition(p));
            wr_part_set_paused(p, over);
        }
    }
    if (l->cnt > 0) {
        rd_kafka_resp_err_t err = over ? rd_kafka_pause_partitions(loop->consumer, l)
                                       : rd_kafka_resume_partitions(loop->consumer, l);
        if (err)
            DW_WARN(FAC, "could not %s partitions: %s", over ? "pause" : "resume",
                    rd_kafka_err2str(err));
        else
            DW_INFO(FAC, "%s %d partition(s): %zu command(s), %zu byte(s) held",
                    over ? "paused" : "resumed", l->cnt, msgs, bytes);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---------------------------------------------------------------- offsets */

/* Commit the watermark of parts[i] for every i in idx[0..n) (NULL: all), synchronously. */
static void commit_parts(wr_loop_t *loop, const size_t *idx, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    size_t count = idx ? n : loop->nparts;
    for (size_t k = 0; k < count; k++) {
        wr_part_t *p = loop->parts[idx ? idx[k] : k];
        int64_t wm = wr_part_watermark(p);
        if (wm >= 0 && wm > wr_part_committed(p))
            rd_kafka_topic_partition_list_add(l, wr_part_topic(p), wr_part_partition(p))->offset =
                wm;
    }
    if (l->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(loop->consumer, l, 0);
        if (err) {
            DW_WARN(FAC, "could not commit the offsets of %d partition(s): %s (retrying later)",
                    l->cnt, rd_kafka_err2str(err));
        } else {
            for (int i = 0; i < l->cnt; i++) {
                wr_part_t *p = part_find(loop, l->elems[i].topic, l->elems[i].partition, NULL);
                if (p)
                    wr_part_set_committed(p, l->elems[i].offset);
            }
            DW_DEBUG(FAC, "committed the offsets of %d partition(s)", l->cnt);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---------------------------------------------------------------- dead letters */

/* A dead letter to produce again later (redo_dead_letters). */
static void redo_push(wr_loop_t *loop, wr_item_t *item)
{
    if (loop->nredo == loop->capredo) {
        size_t cap = loop->capredo ? loop->capredo * 2 : 16;
        wr_item_t **n = realloc(loop->redo, cap * sizeof(*n));
        if (!n) {
            wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
            return;
        }
        loop->redo = n;
        loop->capredo = cap;
    }
    loop->redo[loop->nredo++] = item;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    (void)rk;
    wr_loop_t *loop = opaque;
    wr_ticket_t *t = rkm->_private;
    if (!t)
        return;
    wr_item_t *item = t->item;
    free(t);
    if (!item)
        return;
    item->ticket = NULL;
    if (rkm->err) {
        DW_WARN(FAC, "dead letter of %s [%" PRId32 "] @%" PRId64 " not delivered: %s (again)",
                wr_part_topic(item->part), wr_part_partition(item->part), item->offset,
                rd_kafka_err2str(rkm->err));
        redo_push(loop, item);
        return;
    }
    loop->counters.dead_lettered[wr_dlq_class_index(item->dlq_class)]++;
    loop->counters.coalesced += item->nsup;
    wr_item_done(item);
}

static wr_fail_t *item_fail(wr_item_t *item)
{
    if (!item->fail)
        item->fail = calloc(1, sizeof(*item->fail));
    return item->fail;
}

/* Produce item's original message to its map's dead-letter topic with the dw.error.* headers of
 * item->fail and class cls; the item is done when the broker acknowledged it. */
static void dead_letter(wr_loop_t *loop, wr_item_t *item, const char *cls)
{
    rd_kafka_message_t *rkm = item->msg;
    const wr_mapinfo_t *mi = wr_part_user(item->part);
    wr_fail_t *f = item->fail;
    rd_kafka_headers_t *orig = NULL;
    char errstr[512];
    if (rd_kafka_message_headers(rkm, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
        orig = NULL;
    int64_t now = dw_time_wall_ms();
    dw_dlq_info_t info = {
        .cls = cls,
        .reason = f && f->reason ? f->reason : (f ? dw_wclass_name(f->cls) : NULL),
        .field = f ? f->field : NULL,
        .message = f && f->message[0] ? f->message : NULL,
        .stage = "writer",
        .origin_topic = wr_part_topic(item->part),
        .origin_partition = wr_part_partition(item->part),
        .origin_offset = item->offset,
        .now_ms = now,
        .instance = loop->instance,
        .http_status = f ? (int)f->status : 0,
        .target_code = f && f->code[0] ? f->code : NULL,
        .attempts = item->attempts > 0 ? item->attempts : 1,
        .first_ms = f && f->first_ms ? f->first_ms : now,
    };
    rd_kafka_headers_t *hdrs = dw_dlq_headers(orig, &info);
    wr_ticket_t *t = calloc(1, sizeof(*t));
    if (!hdrs || !t) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        free(t);
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    t->item = item;
    item->ticket = t;
    item->dlq_class = cls;
    item->state = WR_ST_INFLIGHT;
    dw_kafka_msg_t m = DW_KAFKA_MSG_INIT;
    m.topic = mi->dlq;
    m.key = rkm->key;
    m.key_len = rkm->key_len;
    m.value = rkm->payload;
    m.value_len = rkm->len;
    m.msg_opaque = t;
    DW_WARN(FAC, "dead letter: %s [%" PRId32 "] @%" PRId64 " -> %s: class=%s status=%ld code=%s %s",
            wr_part_topic(item->part), wr_part_partition(item->part), item->offset, mi->dlq, cls,
            f ? f->status : 0L, f && f->code[0] ? f->code : "-", f ? f->message : "");
    dw_err_t err;
    for (;;) {
        err = dw_kafka_produce(loop->producer, &m, hdrs, 1000, errstr, sizeof(errstr));
        hdrs = NULL; /* taken */
        if (err != DW_ERR_QUEUE_FULL || dw_signal_stop_requested())
            break;
        if (!(hdrs = dw_dlq_headers(orig, &info)))
            break;
    }
    if (err) {
        /* never produced: no delivery report will come */
        if (item->ticket == t) {
            item->ticket = NULL;
            free(t);
        }
        if (err == DW_ERR_FENCED || rd_kafka_fatal_error(loop->producer, NULL, 0)) {
            wr_fatal(loop, err, errstr);
            return;
        }
        DW_WARN(FAC, "%s (the dead letter is produced again later)", errstr);
        redo_push(loop, item);
    }
}

static void redo_dead_letters(wr_loop_t *loop)
{
    if (loop->nredo == 0)
        return;
    size_t n = loop->nredo;
    wr_item_t **list = malloc(n * sizeof(*list));
    if (!list)
        return;
    memcpy(list, loop->redo, n * sizeof(*list));
    loop->nredo = 0;
    for (size_t i = 0; i < n && !loop->fatal; i++)
        if (list[i])
            dead_letter(loop, list[i], list[i]->dlq_class);
    free(list);
}

/* ---------------------------------------------------------------- rebalances */

static void on_assign(wr_loop_t *loop, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        const char *topic = parts->elems[i].topic;
        int32_t partition = parts->elems[i].partition;
        wr_mapinfo_t *mi = mapinfo_by_topic(loop, topic);
        if (!mi || part_find(loop, topic, partition, NULL))
            continue;
        if (loop->nparts == loop->capparts) {
            size_t cap = loop->capparts ? loop->capparts * 2 : 32;
            wr_part_t **np = realloc(loop->parts, cap * sizeof(*np));
            if (np)
                loop->parts = np;
            wr_part_batchinfo_t *nb = realloc(loop->binfo, cap * sizeof(*nb));
            if (nb)
                loop->binfo = nb;
            if (!np || !nb) {
                wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
                return;
            }
            loop->capparts = cap;
        }
        wr_part_t *p = wr_part_new(topic, partition, item_free_cb, loop);
        if (!p) {
            wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
            return;
        }
        wr_part_set_user(p, mi);
        loop->parts[loop->nparts++] = p;
    }
    binfo_rebuild(loop);
}

static void flights_drain(wr_loop_t *loop);

static void on_revoke(wr_loop_t *loop, rd_kafka_topic_partition_list_t *parts, bool lost)
{
    char errstr[256];
    /* the batches in flight hold items of these partitions: finish them first */
    flights_drain(loop);
    if (!lost && loop->producer) {
        /* the dead letters of these partitions count as done once acknowledged */
        int remaining = 0;
        if (dw_kafka_flush(loop->producer, (int)loop->flush_timeout_ms, &remaining, errstr,
                           sizeof(errstr)) != DW_OK)
            DW_WARN(FAC, "%d dead letter(s) still unacknowledged on revoke: %s", remaining, errstr);
    }
    size_t *idx = calloc((size_t)parts->cnt + 1, sizeof(*idx));
    size_t n = 0;
    for (int i = 0; i < parts->cnt && idx; i++) {
        size_t k;
        if (part_find(loop, parts->elems[i].topic, parts->elems[i].partition, &k))
            idx[n++] = k;
    }
    if (!lost && n > 0)
        commit_parts(loop, idx, n);
    /* drop the queued and retried commands of the revoked partitions: the next owner starts
     * at the committed offsets */
    for (int i = 0; i < parts->cnt; i++) {
        size_t k;
        wr_part_t *p = part_find(loop, parts->elems[i].topic, parts->elems[i].partition, &k);
        if (!p)
            continue;
        size_t left = wr_part_count(p);
        if (left > 0)
            DW_INFO(FAC,
                    "%s [%" PRId32 "]: dropping %zu command(s) not done (the next owner "
                    "reads them again)",
                    wr_part_topic(p), wr_part_partition(p), left);
        wr_part_destroy(p);
        loop->parts[k] = loop->parts[--loop->nparts];
    }
    free(idx);
    binfo_rebuild(loop);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    wr_loop_t *loop = opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        loop->counters.rebalances++;
        DW_INFO(FAC, "assigned %d partition(s)", parts->cnt);
        on_assign(loop, parts);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        on_revoke(loop, parts, rd_kafka_assignment_lost(rk));
        DW_INFO(FAC, "revoked %d partition(s)", parts->cnt);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
        break;
    default:
        DW_ERROR(FAC, "rebalance failed: %s", rd_kafka_err2str(err));
        on_revoke(loop, parts, true);
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

/* ---------------------------------------------------------------- consuming */

static void consumer_error(wr_loop_t *loop, const rd_kafka_message_t *rkm)
{
    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    char errstr[512];
    rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(loop->consumer, errstr, sizeof(errstr));
    if (ferr) {
        char msg[640];
        snprintf(msg, sizeof(msg), "fatal consumer error: %s", errstr);
        wr_fatal(loop, dw_kafka_err_map(ferr), msg);
        return;
    }
    int64_t now = dw_time_mono_ms();
    if (now - loop->last_consumer_warn_ms >= 30000) {
        loop->last_consumer_warn_ms = now;
        DW_WARN(FAC, "consumer: %s%s%s", rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "",
                rkm->rkt ? ": " : "", rd_kafka_message_errstr(rkm));
    }
}

/* Take one consumed message (taken). */
static void take_message(wr_loop_t *loop, rd_kafka_message_t *rkm)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    wr_part_t *p = part_find(loop, topic, rkm->partition, NULL);
    if (!p) {
        rd_kafka_message_destroy(rkm); /* not ours (any more) */
        return;
    }
    const wr_mapinfo_t *mi = wr_part_user(p);
    /* the parsed JSON costs about three times the text: count four */
    wr_item_t *it = wr_item_new(rkm->offset, rkm->key, rkm->key ? rkm->key_len : 0, rkm->len * 4);
    if (!it || wr_part_push(p, it) != DW_OK) {
        if (it)
            wr_item_free(it, NULL, NULL);
        rd_kafka_message_destroy(rkm);
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    it->msg = rkm;
    it->arrived_ms = dw_time_mono_ms();
    loop->counters.consumed++;
    char why[400], field[64];
    dw_err_t err = wr_cmd_parse(rkm->payload, rkm->len, dw_map_name(mi->map), loop->target_name,
                                &it->cmd, why, sizeof(why), field, sizeof(field));
    if (err == DW_ERR_NOMEM) {
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    if (!err && !wr_key_valid(rkm->key, rkm->key_len)) {
        wr_cmd_clear(&it->cmd);
        snprintf(why, sizeof(why),
                 "the message key (the canonical record key) is missing, or "
                 "not UTF-8 text");
        field[0] = '\0';
        err = DW_ERR_PARSE;
    }
    if (!err) {
        it->valid = true;
        return;
    }
    wr_fail_t *f = item_fail(it);
    if (!f) {
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    f->cls = DW_WCLASS_UNKNOWN;
    f->reason = "invalid_command";
    snprintf(f->field, sizeof(f->field), "%s", field);
    snprintf(f->message, sizeof(f->message), "%s", why);
    f->first_ms = f->last_ms = dw_time_wall_ms();
    dead_letter(loop, it, DW_DLQ_CLASS_POISON);
}

/* ---------------------------------------------------------------- one batch */

/* Give group g back to the queue, to be tried again after delay_ms (no attempt counted). */
static void group_release(wr_loop_t *loop, wr_item_t *it, int64_t delay_ms)
{
    (void)loop;
    wr_item_release_sup(it);
    it->state = WR_ST_PENDING;
    it->not_before_ms = dw_time_mono_ms() + delay_ms;
}

/* A ledger statement of flight f failed: count it and log it (the ledger thread reconnects after a
 * lost connection before its next job). */
static void ledger_failed(wr_loop_t *loop, const wr_flight_t *f, const char *what)
{
    loop->counters.ledger_failures++;
    DW_ERROR(FAC, "ledger: %s: %s (the batch is retried)", what, f->job.errstr);
}

static void record_failure(wr_loop_t *loop, wr_item_t *it, const dw_wrec_t *r, bool *throttled)
{
    const wr_mapinfo_t *mi = wr_part_user(it->part);
    wr_fail_t *f = item_fail(it);
    if (!f) {
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
        return;
    }
    int64_t now = dw_time_wall_ms();
    if (!f->first_ms)
        f->first_ms = now;
    f->last_ms = now;
    f->cls = r->cls;
    f->status = r->status;
    f->reason = dw_wclass_name(r->cls);
    snprintf(f->code, sizeof(f->code), "%s", r->code);
    snprintf(f->message, sizeof(f->message), "%s", r->message);
    it->attempts++;
    if (r->cls == DW_WCLASS_TRANSIENT && r->retry_after_ms > 0) {
        /* the target asked the client to wait: no request at all before then (+1: the clock
         * reads whole milliseconds, rounded down, and the target's wait began before the
         * answer arrived; without it a retry could leave up to a millisecond early) */
        int64_t until = dw_time_mono_ms() + r->retry_after_ms + 1;
        if (until > loop->hold_until_ms)
            loop->hold_until_ms = until;
    }
    if (r->status == 429) {
        loop->counters.throttled++;
        *throttled = true;
    }
    int64_t delay = 0;
    const char *cls = wr_sched_failure(&mi->policy, r->cls, it->attempts, f->first_ms, now,
                                       r->retry_after_ms, rnd_next(loop), &delay);
    if (!cls) {
        loop->counters.retries++;
        DW_DEBUG(FAC,
                 "%s [%" PRId32 "] @%" PRId64 ": %s (status %ld %s), retry %d in %" PRId64 " ms",
                 wr_part_topic(it->part), wr_part_partition(it->part), it->offset,
                 dw_wclass_name(r->cls), r->status, r->code, it->attempts, delay);
        group_release(loop, it, delay);
        return;
    }
    dead_letter(loop, it, cls);
}

/* Count the time since the last call for the batches in each stage (called before a stage
 * changes, so the counts were constant meanwhile). */
static void stage_tick(wr_loop_t *loop)
{
    int64_t t_us = dw_time_mono_us(), dt = t_us - loop->tick_us;
    for (size_t i = 0; i < loop->nflights; i++)
        if (loop->flights[i].stage != WR_FL_FREE)
            loop->counters.stage_us[loop->flights[i].stage - 1] += (uint64_t)dt;
    loop->counters.run_us += (uint64_t)dt;
    loop->tick_us = t_us;
}

/* Flight f is over: forget its rows, ledger entries and ids; the slot is free. */
static void flight_clear(wr_flight_t *f)
{
    json_decref(f->ids);
    f->ids = NULL;
    for (size_t i = 0; i < f->nput; i++)
        wr_ledger_put_clear(&f->puts[i]);
    f->nput = 0;
    for (size_t g = 0; g < f->ng; g++)
        wr_ledger_row_clear(&f->rows[g]);
    f->call = NULL;
    f->stage = WR_FL_FREE;
    f->busy = false;
}

/* The ledger rows of flight f's groups (f->batch[0..f->ng), now INFLIGHT) are read by the ledger
 * thread; the loop goes on (flight_fetched follows). */
static void flight_begin(wr_loop_t *loop, wr_flight_t *f)
{
    size_t ng = f->ng;
    stage_tick(loop);
    for (size_t g = 0; g < ng; g++) {
        wr_item_t *it = f->batch[g];
        f->a_maps[g] = it->cmd.map;
        f->a_cks[g] = it->key;
        f->a_rids[g] = it->cmd.record_id;
        memset(&f->rows[g], 0, sizeof(f->rows[g]));
    }
    f->nrec = f->nput = 0;
    f->call = NULL;
    f->ids = NULL;
    memset(&f->job, 0, sizeof(f->job));
    f->job.kind = WR_LQ_FETCH;
    f->job.n = ng;
    f->job.maps = f->a_maps;
    f->job.cks = f->a_cks;
    f->job.rids = f->a_rids;
    f->job.rows = f->rows;
    f->busy = true;
    f->stage = WR_FL_FETCH;
    wr_lq_submit(loop->lq, &f->job);
}

static void flight_store(wr_loop_t *loop, wr_flight_t *f);
static void flight_stored(wr_loop_t *loop, wr_flight_t *f);
static void flight_send(wr_loop_t *loop, wr_flight_t *f);

/* Whether flight f's call may start now: not before the target's Retry-After, and only when its
 * requests start at once within the target's concurrency (or no other call is writing). A request
 * the target queued behind others would be sent whenever a slot frees, even after a 429 answered
 * meanwhile asked to wait: the loop alone decides when a request goes out. */
static bool may_send(const wr_loop_t *loop, const wr_flight_t *f)
{
    if (dw_time_mono_ms() < loop->hold_until_ms)
        return false;
    size_t writing = 0;
    for (size_t i = 0; i < loop->nflights; i++)
        if (loop->flights[i].stage == WR_FL_WRITE)
            writing += loop->flights[i].nreq;
    return writing == 0 || writing + f->nreq <= (size_t)loop->aimd.cur;
}

/* The ledger rows of f are read: decide, and start writing the records to write (or, when every
 * group was dropped, go on to the ledger transaction). */
static void flight_fetched(wr_loop_t *loop, wr_flight_t *f)
{
    size_t ng = f->ng, nrec = 0;
    loop->counters.ledger_jobs++;
    loop->counters.ledger_us += (uint64_t)f->job.run_us;
    if (f->job.err) {
        ledger_failed(loop, f, "could not read");
        for (size_t g = 0; g < ng; g++)
            group_release(loop, f->batch[g], 1000);
        flight_clear(f);
        return;
    }
    for (size_t g = 0; g < ng; g++) {
        wr_item_t *it = f->batch[g];
        const wr_mapinfo_t *mi = wr_part_user(it->part);
        wr_decide(&it->cmd, loop->target, &f->rows[g], &f->decs[g]);
        if (f->decs[g].kind != WR_DEC_WRITE)
            continue;
        dw_wrec_t *r = &f->recs[nrec];
        memset(r, 0, sizeof(*r));
        r->entity_set = mi->entity_set;
        r->table = mi->table;
        r->op = it->cmd.op;
        r->key = f->decs[g].key;
        r->record_id = f->decs[g].record_id;
        r->fields = NULL;
        r->fields_text = it->cmd.op == DW_WOP_UPSERT ? it->cmd.fields_text : NULL;
        r->fields_len = it->cmd.op == DW_WOP_UPSERT ? it->cmd.fields_len : 0;
        r->exists_hint = f->decs[g].exists_hint;
        r->correlation_id = it->cmd.correlation_id;
        r->retry_after_ms = -1;
        f->rec_of[nrec++] = g;
    }
    f->nrec = nrec;
    if (nrec == 0) {
        flight_store(loop, f);
        return;
    }
    f->nreq = (nrec + loop->chunk_max - 1) / loop->chunk_max;
    if (!may_send(loop, f)) {
        f->stage = WR_FL_HELD; /* flight_send when may_send */
        return;
    }
    flight_send(loop, f);
}

/* Start the target call of flight f (its records are decided). */
static void flight_send(wr_loop_t *loop, wr_flight_t *f)
{
    char errstr[1024];
    f->t0_us = dw_time_mono_us();
    f->stage = WR_FL_WRITE;
    if (!(f->call = dw_target_call_start(loop->tgt, f->recs, f->nrec, errstr, sizeof(errstr)))) {
        for (size_t g = 0; g < f->ng; g++)
            group_release(loop, f->batch[g], 0);
        flight_clear(f);
        wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
    }
}

/* The write of flight f is over (or is cut short: its call is ended): the failures are retried or
 * dead-lettered at once (their Retry-After holds the next requests back from now on), the ledger
 * entries of what was written go to the ledger thread as one transaction (flight_stored
 * follows). */
static void flight_written(wr_loop_t *loop, wr_flight_t *f)
{
    char errstr[1024];
    size_t ng = f->ng, nrec = f->nrec;
    bool throttled = false;
    dw_err_t err = dw_target_call_end(f->call, errstr, sizeof(errstr));
    f->call = NULL;
    wr_counters_latency(&loop->counters, (uint64_t)(dw_time_mono_us() - f->t0_us));
    loop->counters.batches++;
    loop->counters.batch_sum += nrec;
    if (nrec > loop->counters.batch_max)
        loop->counters.batch_max = nrec;
    if (err == DW_ERR_CONFIG) {
        char msg[1100];
        snprintf(msg, sizeof(msg), "the target refuses the credentials: %s", errstr);
        wr_fatal(loop, err, msg);
    } else if (err && err != DW_ERR_INTERRUPTED) {
        DW_ERROR(FAC, "write failed: %s (the batch is retried)", errstr);
    }
    if (err && err != DW_ERR_INTERRUPTED) {
        for (size_t g = 0; g < ng; g++)
            group_release(loop, f->batch[g], 1000);
        flight_clear(f);
        return;
    }
    /* failures: retry or dead letter (these groups are no longer the flight's) */
    for (size_t k = 0; k < nrec && !loop->fatal; k++) {
        dw_wrec_t *r = &f->recs[k];
        if (r->cls == DW_WCLASS_OK)
            continue;
        wr_item_t *it = f->batch[f->rec_of[k]];
        if (dw_signal_stop_requested() && r->cls == DW_WCLASS_TRANSIENT) {
            group_release(loop, it, 0); /* interrupted: not an attempt */
            continue;
        }
        record_failure(loop, it, r, &throttled);
    }
    if (nrec > 0 && wr_aimd_batch(&loop->aimd, throttled)) {
        dw_target_set_concurrency(loop->tgt, loop->aimd.cur);
        DW_INFO(FAC, "concurrency %d%s", loop->aimd.cur, throttled ? " (throttled)" : "");
    }
    loop->counters.concurrency = loop->aimd.cur;
    if (loop->fatal) {
        flight_clear(f);
        return;
    }
    flight_store(loop, f);
}

/* The ledger entries of flight f (echoes and what was written) into one transaction, run by the
 * ledger thread; nothing to store: flight_stored at once. */
static void flight_store(wr_loop_t *loop, wr_flight_t *f)
{
    size_t ng = f->ng, nrec = f->nrec, nput = 0;
    if (!(f->ids = json_object()))
        goto nomem;
    for (size_t g = 0; g < ng; g++) {
        /* an echo still moves the origin side's version on (fencing what is older) */
        if (f->decs[g].kind != WR_DEC_ECHO)
            continue;
        wr_item_t *it = f->batch[g];
        const char *ck = f->rows[g].found ? f->rows[g].canonical_key : it->key;
        if (wr_ledger_entry_seen(&it->cmd, loop->target, ck, &f->puts[nput]) != DW_OK)
            goto nomem;
        f->nput = ++nput;
    }
    for (size_t k = 0; k < nrec; k++) {
        dw_wrec_t *r = &f->recs[k];
        size_t g = f->rec_of[k];
        wr_item_t *it = f->batch[g];
        if (r->cls != DW_WCLASS_OK)
            continue;
        const char *ck = f->rows[g].found ? f->rows[g].canonical_key : it->key;
        if (wr_ledger_entry(&it->cmd, loop->target, ck, r->key, r->record_id_out, &f->puts[nput]) !=
            DW_OK)
            goto nomem;
        f->nput = ++nput;
        if (loop->target == DW_MAP_DV && it->cmd.op == DW_WOP_UPSERT && r->record_id_out[0]) {
            json_t *list = json_object_get(f->ids, it->cmd.map);
            if (!list) {
                list = json_array();
                if (!list || json_object_set_new(f->ids, it->cmd.map, list) != 0)
                    goto nomem;
            }
            if (json_array_append_new(list, json_pack("{s:s, s:s, s:O}", "id", r->record_id_out,
                                                      "ck", ck, "key", r->key)) != 0)
                goto nomem;
        }
    }
    f->stage = WR_FL_STORE;
    memset(&f->job, 0, sizeof(f->job));
    f->job.kind = WR_LQ_STORE;
    f->job.puts = f->puts;
    f->job.nput = nput;
    f->job.ids = f->ids;
    if (nput == 0 && json_object_size(f->ids) == 0) {
        flight_stored(loop, f); /* nothing to store */
        return;
    }
    wr_lq_submit(loop->lq, &f->job);
    return;
nomem:
    flight_clear(f);
    wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
}

/* The ledger transaction of flight f is over: its written, dropped and coalesced commands are
 * done (or, when it failed, given back to be written again). f is free afterwards. */
static void flight_stored(wr_loop_t *loop, wr_flight_t *f)
{
    size_t ng = f->ng, nrec = f->nrec;
    if (f->job.nput > 0 || json_object_size(f->ids) > 0) {
        loop->counters.ledger_jobs++;
        loop->counters.ledger_us += (uint64_t)f->job.run_us;
    }
    if (f->job.err) {
        ledger_failed(loop, f, "could not store");
        for (size_t g = 0; g < ng; g++)
            if (f->decs[g].kind != WR_DEC_WRITE)
                group_release(loop, f->batch[g], 1000);
        for (size_t k = 0; k < nrec; k++)
            if (f->recs[k].cls == DW_WCLASS_OK)
                group_release(loop, f->batch[f->rec_of[k]], 1000);
        flight_clear(f);
        return;
    }
    for (size_t g = 0; g < ng; g++) {
        wr_item_t *it = f->batch[g];
        switch (f->decs[g].kind) {
        case WR_DEC_WRITE:
            continue;
        case WR_DEC_ECHO:
            loop->counters.echo_dropped++;
            break;
        case WR_DEC_STALE:
            loop->counters.stale_dropped++;
            break;
        case WR_DEC_UNRESOLVED:
            loop->counters.delete_unresolved++;
            DW_INFO(FAC,
                    "%s [%" PRId32 "] @%" PRId64 ": delete of row %s: no key known in "
                    "the ledger, nothing to delete",
                    wr_part_topic(it->part), wr_part_partition(it->part), it->offset,
                    it->cmd.record_id);
            break;
        }
        loop->counters.coalesced += it->nsup;
        wr_item_done(it);
    }
    for (size_t k = 0; k < nrec; k++) {
        if (f->recs[k].cls != DW_WCLASS_OK)
            continue;
        wr_item_t *it = f->batch[f->rec_of[k]];
        loop->counters.written++;
        loop->counters.coalesced += it->nsup;
        wr_item_done(it);
    }
    flight_clear(f);
}

static size_t flights_busy(const wr_loop_t *loop)
{
    size_t n = 0;
    for (size_t i = 0; i < loop->nflights; i++)
        n += loop->flights[i].busy;
    return n;
}

static wr_flight_t *flight_free_slot(wr_loop_t *loop)
{
    for (size_t i = 0; i < loop->nflights; i++)
        if (!loop->flights[i].busy)
            return &loop->flights[i];
    return NULL;
}

/* Move every flight whose stage is over on to the next one; true when one moved. */
static bool flights_advance(wr_loop_t *loop)
{
    bool moved = false;
    stage_tick(loop);
    for (size_t i = 0; i < loop->nflights && !loop->fatal; i++) {
        wr_flight_t *f = &loop->flights[i];
        switch (f->stage) {
        case WR_FL_FETCH:
            if (wr_lq_done(loop->lq, &f->job)) {
                flight_fetched(loop, f);
                moved = true;
            }
            break;
        case WR_FL_WRITE:
            if (dw_target_call_done(f->call)) {
                flight_written(loop, f);
                moved = true;
            }
            break;
        case WR_FL_STORE:
            if (wr_lq_done(loop->lq, &f->job)) {
                flight_stored(loop, f);
                moved = true;
            }
            break;
        case WR_FL_HELD:
            if (dw_signal_stop_requested()) {
                /* stopping: what was not sent is not an attempt; the dropped ones are stored */
                for (size_t k = 0; k < f->nrec; k++)
                    group_release(loop, f->batch[f->rec_of[k]], 0);
                f->nrec = 0;
                flight_store(loop, f);
                moved = true;
            } else if (may_send(loop, f)) {
                flight_send(loop, f);
                moved = true;
            }
            break;
        case WR_FL_FREE:
            break;
        }
    }
    return moved;
}

/* Drive the batches in flight, waiting at most timeout_ms, until one of them moved on: the HTTP
 * transfers run while the ledger thread works (the HTTP wait is cut into slices of 2 ms then, to
 * notice the ledger's answer; with no transfer running the wait is on the ledger alone). */
static void flights_step(wr_loop_t *loop, int timeout_ms)
{
    int64_t t0 = dw_time_mono_us(), end = t0 + (int64_t)timeout_ms * 1000;
    for (;;) {
        if (flights_busy(loop) == 0 || loop->fatal)
            break;
        bool writing = false, ledger = false;
        for (size_t i = 0; i < loop->nflights; i++) {
            writing |= loop->flights[i].stage == WR_FL_WRITE;
            ledger |=
                loop->flights[i].stage == WR_FL_FETCH || loop->flights[i].stage == WR_FL_STORE;
        }
        uint64_t seen = wr_lq_completed(loop->lq);
        int64_t left_us = end - dw_time_mono_us();
        int left = left_us <= 0 ? 0 : (int)((left_us + 999) / 1000);
        if (writing) {
            dw_target_poll(loop->tgt, ledger && left > 2 ? 2 : left);
        } else if (ledger && left > 0) {
            wr_lq_wait(loop->lq, seen, left);
        } else if (left > 0) {
            /* only batches held back by a Retry-After */
            int64_t hold = loop->hold_until_ms - dw_time_mono_ms();
            int ms = hold < left ? (int)(hold > 0 ? hold : 0) : left;
            if (ms > 0)
                dw_time_sleep_ms(ms);
        }
        if (flights_advance(loop) || dw_time_mono_us() >= end)
            break;
    }
    loop->counters.loop_wait_us += (uint64_t)(dw_time_mono_us() - t0);
}

/* End every write in flight without a ledger write or a state change (fatal error: the items are
 * dropped with their partitions; nothing is committed past them). The ledger thread is stopped
 * first (after the statement it runs). */
static void flights_abort(wr_loop_t *loop)
{
    wr_lq_destroy(loop->lq);
    loop->lq = NULL;
    for (size_t i = 0; loop->flights && i < loop->nflights; i++) {
        wr_flight_t *f = &loop->flights[i];
        if (!f->busy)
            continue;
        if (f->call) {
            char e[256];
            dw_target_call_end(f->call, e, sizeof(e));
            f->call = NULL;
        }
        flight_clear(f);
    }
}

/* Finish every batch in flight, its ledger transaction included (before partitions go away, at
 * shutdown). */
static void flights_drain(wr_loop_t *loop)
{
    while (flights_busy(loop) > 0 && !loop->fatal)
        flights_step(loop, 100);
    if (loop->fatal)
        flights_abort(loop); /* the ledger thread may not read items about to be freed */
}

/* ---------------------------------------------------------------- life cycle */

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The maps of set that the writer serves (writer.maps) and that write to the target, into *out
 * (new array) and *nout. */
static dw_err_t select_maps(wr_loop_t *loop, const dw_mapset_t *set, wr_mapinfo_t **out,
                            size_t *nout, char *errstr, size_t errstr_size)
{
    const char *spec = dw_conf_get_str(loop->conf, "writer.maps");
    dw_map_dir_t dir = loop->target == DW_MAP_DV ? DW_MAP_FO_TO_DV : DW_MAP_DV_TO_FO;
    size_t n = dw_mapset_count(set), nmaps = 0;
    wr_mapinfo_t *maps = calloc(n + 1, sizeof(*maps));
    *out = NULL;
    *nout = 0;
    if (!maps)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    bool all = !spec || !*spec || strcmp(spec, "all") == 0;
    char **names = NULL;
    size_t nnames = 0;
    if (!all) {
        char *copy = strdup(spec);
        names = calloc(strlen(spec) + 1, sizeof(*names));
        if (!copy || !names) {
            free(copy);
            free(names);
            free(maps);
            return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        }
        char *save = NULL;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
            names[nnames++] = strdup(t);
        free(copy);
        for (size_t i = 0; i < nnames; i++) {
            const dw_map_t *m = names[i] ? dw_mapset_find(set, names[i]) : NULL;
            if (!m) {
                free(maps);
                dw_err_t e = dw_errf(
                    DW_ERR_CONFIG, errstr, errstr_size, "writer.maps: no map named \"%s\" in %s",
                    names[i] ? names[i] : "?", dw_conf_get_str(loop->conf, "maps.dir"));
                free_names(names, nnames);
                return e;
            }
            if (!dw_map_runs(m, dir)) {
                free(maps);
                dw_err_t e =
                    dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                            "writer.maps: map \"%s\" does not write to %s (direction %s)", names[i],
                            loop->target_name, dw_map_dir_name(dw_map_direction(m)));
                free_names(names, nnames);
                return e;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const dw_map_t *m = dw_mapset_get(set, i);
        bool want = false;
        if (all)
            want = dw_map_runs(m, dir);
        for (size_t j = 0; j < nnames && !want; j++)
            want = strcmp(names[j], dw_map_name(m)) == 0;
        if (!want)
            continue;
        wr_mapinfo_t *mi = &maps[nmaps];
        mi->map = m;
        mi->index = nmaps;
        dw_kafka_topic_name(mi->topic, sizeof(mi->topic), dw_map_name(m),
                            loop->target == DW_MAP_DV ? DW_KAFKA_TOPIC_TO_DV : DW_KAFKA_TOPIC_TO_FO,
                            NULL, 0);
        dw_kafka_topic_name(mi->dlq, sizeof(mi->dlq), dw_map_name(m), DW_KAFKA_TOPIC_DLQ, NULL, 0);
        mi->entity_set =
            loop->target == DW_MAP_DV ? dw_map_dv_entity_set(m) : dw_map_fo_entity_set(m);
        mi->table = loop->target == DW_MAP_DV ? dw_map_dv_table(m) : dw_map_fo_entity(m);
        char key[300];
        snprintf(key, sizeof(key), "maps.%s.batch_max", dw_map_name(m));
        mi->batch_max = dw_conf_is_set(loop->conf, key) ? (size_t)dw_conf_get_int(loop->conf, key)
                                                        : (size_t)loop->batch_max;
        snprintf(key, sizeof(key), "maps.%s.on_unavailable", dw_map_name(m));
        const char *ou = dw_conf_get_str(loop->conf, key);
        mi->policy.fail_when_unavailable =
            ou ? strcmp(ou, "fail") == 0 : dw_map_on_unavailable(m) == DW_MAP_UNAVAILABLE_FAIL;
        mi->policy.initial_ms = dw_conf_get_int(loop->conf, "writer.retry_initial_ms");
        mi->policy.max_ms = dw_conf_get_int(loop->conf, "writer.retry_max_ms");
        mi->policy.budget = dw_conf_get_int(loop->conf, "writer.retry_budget");
        mi->policy.budget_ms = dw_conf_get_int(loop->conf, "writer.retry_budget_ms");
        mi->policy.lookup_retries = dw_conf_get_int(loop->conf, "writer.lookup_retries");
        nmaps++;
    }
    free_names(names, nnames);
    if (nmaps == 0) {
        free(maps);
        return dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "no map of %s writes to %s",
                       dw_conf_get_str(loop->conf, "maps.dir"), loop->target_name);
    }
    *out = maps;
    *nout = nmaps;
    return DW_OK;
}

static dw_err_t ensure_topics(wr_loop_t *loop, const wr_mapinfo_t *maps, size_t nmaps,
                              char *errstr, size_t errstr_size)
{
    if (!dw_conf_get_bool(loop->conf, "writer.create_topics"))
        return DW_OK;
    dw_err_t err = DW_OK;
    rd_kafka_t *rk = NULL;
    size_t created = 0;
    dw_topics_t *ts = dw_topics_new(loop->conf, 0);
    if (!ts)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    unsigned kinds =
        DW_TOPICS_KIND(loop->target == DW_MAP_DV ? DW_KAFKA_TOPIC_TO_DV : DW_KAFKA_TOPIC_TO_FO) |
        DW_TOPICS_KIND(DW_KAFKA_TOPIC_DLQ);
    for (size_t i = 0; i < nmaps && !err; i++)
        err = dw_topics_add_map(ts, dw_map_name(maps[i].map), kinds, errstr, errstr_size);
    if (err)
        goto out;
    if (!(rk = dw_kafka_admin_new(loop->conf, errstr, errstr_size))) {
        err = DW_ERR_CONFIG;
        goto out;
    }
    err = dw_topics_ensure(ts, rk, 30000, &created, errstr, errstr_size);
    if (err) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", errstr);
        err = dw_errf(err, errstr, errstr_size, "could not make sure of the topics: %s", why);
        goto out;
    }
    if (created > 0)
        DW_INFO(FAC, "created %zu missing topic(s) of %zu", created, dw_topics_count(ts));
out:
    if (rk)
        rd_kafka_destroy(rk);
    dw_topics_destroy(ts);
    return err;
}

/* Subscribe to the command topics of the served maps. */
static dw_err_t subscribe_maps(wr_loop_t *loop, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)loop->nmaps);
    if (!l)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    for (size_t i = 0; i < loop->nmaps; i++)
        rd_kafka_topic_partition_list_add(l, loop->maps[i].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(loop->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (kerr)
        return dw_errf(dw_kafka_err_map(kerr), errstr, errstr_size, "could not subscribe: %s",
                       rd_kafka_err2str(kerr));
    return DW_OK;
}

/* ---------------------------------------------------------------- reload */

/* SIGHUP: load maps.dir again and serve what it holds now. A map set that does not load, or
 * serves nothing, is refused and the maps loaded before are kept (reload_failures). Otherwise
 * the writer lets all its partitions go as in a rebalance (the batches in flight finish, their
 * ledger transaction included, the dead letters are acknowledged, the done offsets committed,
 * the commands not done yet dropped), swaps the maps, and subscribes to the new set's topics:
 * what it dropped is read again from the committed offsets, under the new maps. */
static void wr_reload(wr_loop_t *loop)
{
    char errstr[1024];
    const char *maps_dir = dw_conf_get_str(loop->conf, "maps.dir");
    DW_INFO(FAC, "reloading the maps of %s", maps_dir);
    wr_mapinfo_t *maps = NULL;
    size_t nmaps = 0;
    size_t *counts = NULL;
    dw_mapset_t *set = dw_mapset_load(maps_dir, dw_conf_get_str(loop->conf, "maps.metadata_dir"),
                                      NULL, errstr, sizeof(errstr));
    if (!set || select_maps(loop, set, &maps, &nmaps, errstr, sizeof(errstr)) != DW_OK ||
        !(counts = calloc(nmaps, sizeof(*counts)))) {
        loop->counters.reload_failures++;
        DW_ERROR(FAC, "reload failed, keeping the maps loaded before: %s",
                 counts || !maps ? errstr : "out of memory");
        free(maps);
        dw_mapset_destroy(set);
        return;
    }
    if (ensure_topics(loop, maps, nmaps, errstr, sizeof(errstr)) != DW_OK)
        DW_WARN(FAC, "reload: %s", errstr); /* a map without its topic waits for it */
    rd_kafka_resp_err_t kerr = rd_kafka_unsubscribe(loop->consumer);
    if (kerr)
        DW_WARN(FAC, "reload: unsubscribe: %s", rd_kafka_err2str(kerr));
    /* the revocation runs in the rebalance callback, from the consumer's poll */
    int64_t deadline = dw_time_mono_ms() + loop->flush_timeout_ms + 30000;
    while (!loop->fatal && dw_time_mono_ms() < deadline) {
        rd_kafka_topic_partition_list_t *a = NULL;
        bool empty = rd_kafka_assignment(loop->consumer, &a) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                     a->cnt == 0 && loop->nparts == 0;
        if (a)
            rd_kafka_topic_partition_list_destroy(a);
        if (empty)
            break;
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(loop->consumer, 100);
        if (rkm) {
            if (rkm->err)
                consumer_error(loop, rkm);
            rd_kafka_message_destroy(rkm); /* not taken: read again after the reload */
        }
        rd_kafka_poll(loop->producer, 0);
    }
    if (loop->nparts > 0 && !loop->fatal) {
        /* not revoked in time: drop what is held (the offsets are not committed past it) */
        DW_WARN(FAC, "reload: %zu partition(s) still assigned; dropping their commands",
                loop->nparts);
        for (size_t i = 0; i < loop->nparts; i++)
            wr_part_destroy(loop->parts[i]);
        loop->nparts = 0;
        binfo_rebuild(loop);
    }
    dw_mapset_destroy(loop->set);
    free(loop->maps);
    free(loop->map_counts);
    loop->set = set;
    loop->maps = maps;
    loop->nmaps = nmaps;
    loop->map_counts = counts;
    if (subscribe_maps(loop, errstr, sizeof(errstr)) != DW_OK) {
        wr_fatal(loop, DW_ERR_KAFKA, errstr);
        return;
    }
    loop->counters.reloads++;
    char names[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < nmaps && o < sizeof(names) - 1; i++) {
        int w = snprintf(names + o, sizeof(names) - o, "%s%s@%d", i ? " " : "",
                         dw_map_name(maps[i].map), dw_map_version(maps[i].map));
        if (w < 0)
            break;
        o += (size_t)w;
    }
    DW_INFO(FAC, "maps reloaded: %zu map(s): %s%s", nmaps, names,
            o >= sizeof(names) - 1 ? "..." : "");
}

wr_loop_t *wr_loop_new(dw_conf_t *conf, const char *target, int *exit_code, char *errstr,
                       size_t errstr_size)
{
    *exit_code = 1;
    wr_loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    loop->conf = conf;
    snprintf(loop->target_name, sizeof(loop->target_name), "%s", target);
    loop->target = strcmp(target, "dv") == 0 ? DW_MAP_DV : DW_MAP_FO;
    loop->batch_max = dw_conf_get_int(conf, "writer.batch_max");
    loop->linger_ms = dw_conf_get_int(conf, "writer.batch_linger_ms");
    loop->max_pending = dw_conf_get_int(conf, "writer.max_pending");
    loop->max_pending_bytes = dw_conf_get_int(conf, "writer.max_pending_bytes");
    loop->commit_interval_ms = dw_conf_get_int(conf, "writer.commit_interval_ms");
    loop->poll_ms = dw_conf_get_int(conf, "writer.poll_ms");
    loop->flush_timeout_ms = dw_conf_get_int(conf, "writer.flush_timeout_ms");
    loop->stats_interval_ms = dw_conf_get_int(conf, "writer.stats_interval_ms");
    loop->rnd = (uint64_t)dw_time_wall_ms() * 2654435761u ^ (uint64_t)getpid();
    if (!loop->rnd)
        loop->rnd = 88172645463325252ULL;
    int conc = (int)dw_conf_get_int(conf, "writer.concurrency");
    int cmax = (int)dw_conf_get_int(conf, "writer.concurrency_max");
    wr_aimd_init(&loop->aimd, conc, cmax < conc ? conc : cmax,
                 (int)dw_conf_get_int(conf, "writer.concurrency_increase_after"));
    loop->counters.concurrency = loop->aimd.cur;

    const char *inst = dw_conf_get_str(conf, "writer.instance_id");
    if (inst && *inst)
        snprintf(loop->instance, sizeof(loop->instance), "%s", inst);
    else if (gethostname(loop->instance, sizeof(loop->instance) - 1) != 0 || !loop->instance[0])
        snprintf(loop->instance, sizeof(loop->instance), "localhost");

    size_t bm = (size_t)loop->batch_max;
    loop->nflights = (size_t)dw_conf_get_int(conf, "writer.batches_in_flight");
    loop->flights = calloc(loop->nflights, sizeof(*loop->flights));
    bool ok = loop->flights != NULL;
    for (size_t i = 0; ok && i < loop->nflights; i++) {
        wr_flight_t *f = &loop->flights[i];
        f->batch = calloc(bm, sizeof(*f->batch));
        f->recs = calloc(bm, sizeof(*f->recs));
        f->rec_of = calloc(bm, sizeof(*f->rec_of));
        f->decs = calloc(bm, sizeof(*f->decs));
        f->rows = calloc(bm, sizeof(*f->rows));
        f->a_maps = calloc(bm, sizeof(*f->a_maps));
        f->a_cks = calloc(bm, sizeof(*f->a_cks));
        f->a_rids = calloc(bm, sizeof(*f->a_rids));
        f->puts = calloc(bm, sizeof(*f->puts));
        ok = f->batch && f->recs && f->rec_of && f->decs && f->rows && f->a_maps && f->a_cks &&
             f->a_rids && f->puts;
    }
    if (!ok) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }

    const char *maps_dir = dw_conf_get_str(conf, "maps.dir");
    char why[1024];
    loop->set = dw_mapset_load(maps_dir, dw_conf_get_str(conf, "maps.metadata_dir"), NULL, why,
                               sizeof(why));
    if (!loop->set) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "could not load the maps of %s: %s", maps_dir,
                why);
        *exit_code = 2;
        goto fail;
    }
    dw_err_t err = select_maps(loop, loop->set, &loop->maps, &loop->nmaps, errstr, errstr_size);
    if (err) {
        *exit_code = err == DW_ERR_NOMEM ? 1 : 2;
        goto fail;
    }
    if (!(loop->map_counts = calloc(loop->nmaps, sizeof(*loop->map_counts)))) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }

    /* the target */
    err = DW_OK;
    loop->sys = dw_system_new(conf, loop->target_name, &err, errstr, errstr_size);
    if (!loop->sys) {
        *exit_code = err == DW_ERR_CONFIG ? 2 : 1;
        goto fail;
    }
    dw_target_opts_t topts;
    dw_target_opts_init(&topts);
    topts.chunk_max = dw_conf_is_set(conf, "writer.chunk_max")
                          ? (size_t)dw_conf_get_int(conf, "writer.chunk_max")
                          : (loop->target == DW_MAP_DV ? 1000 : 250);
    topts.concurrency = loop->aimd.cur;
    topts.upsert_multiple = dw_conf_get_bool(conf, "writer.upsert_multiple");
    loop->chunk_max = topts.chunk_max;
    loop->tgt = loop->target == DW_MAP_DV
                    ? dw_target_dv_new(loop->sys, &topts, errstr, errstr_size)
                    : dw_target_fo_new(loop->sys, &topts, errstr, errstr_size);
    if (!loop->tgt) {
        *exit_code = 2;
        goto fail;
    }

    /* the ledger */
    const char *dsn = dw_conf_get_str(conf, "pg.dsn");
    if (!dsn || !*dsn) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                "pg.dsn is not set (DW_PG_DSN): the ledger "
                "needs PostgreSQL");
        *exit_code = 2;
        goto fail;
    }
    err = DW_OK;
    loop->pg = dw_pg_connect(dsn, "dw-writer", (int)dw_conf_get_int(conf, "pg.connect_timeout_ms"),
                             &err, errstr, errstr_size);
    if (!loop->pg) {
        *exit_code = err == DW_ERR_CONFIG ? 2 : 1;
        goto fail;
    }
    int applied = 0;
    if ((err = dw_pg_migrate(loop->pg, dw_conf_get_str(conf, "pg.migrations_dir"), &applied, errstr,
                             errstr_size)) != DW_OK)
        goto fail;
    if (applied > 0)
        DW_INFO(FAC, "applied %d migration(s)", applied);
    if ((err = wr_ledger_session(loop->pg, errstr, errstr_size)) != DW_OK)
        goto fail;
    /* from here on the ledger thread is the connection's only user */
    if (!(loop->lq = wr_lq_new(loop->pg, errstr, errstr_size)))
        goto fail;

    if (ensure_topics(loop, loop->maps, loop->nmaps, errstr, errstr_size) != DW_OK)
        goto fail;

    char client_id[300], group[300];
    snprintf(client_id, sizeof(client_id), "dw-writer-%s-%s", loop->target_name, loop->instance);
    const char *gid = dw_conf_get_str(conf, "writer.group_id");
    if (gid && *gid)
        snprintf(group, sizeof(group), "%s", gid);
    else
        snprintf(group, sizeof(group), "dw-writer-%s", loop->target_name);
    dw_kafka_producer_opts_t popts;
    dw_kafka_producer_opts_init(&popts);
    popts.client_id = client_id;
    popts.dr_msg_cb = dr_cb;
    popts.opaque = loop;
    if (!(loop->producer = dw_kafka_producer_new(conf, &popts, errstr, errstr_size))) {
        *exit_code = 2;
        goto fail;
    }
    if (!dw_conf_is_set(conf, "kafka.queued.max.messages.kbytes")) {
        char value[32];
        snprintf(value, sizeof(value), "%lld", dw_conf_get_int(conf, "writer.prefetch_kbytes"));
        if (dw_conf_set(conf, "kafka.queued.max.messages.kbytes", value, DW_CONF_SRC_DEFAULT,
                        "writer.prefetch_kbytes", errstr, errstr_size) != DW_OK)
            goto fail;
    }
    dw_kafka_consumer_opts_t copts;
    dw_kafka_consumer_opts_init(&copts);
    copts.group_id = group;
    copts.client_id = client_id;
    copts.isolation_level = "read_committed";
    copts.cooperative = true;
    copts.rebalance_cb = rebalance_cb;
    copts.opaque = loop;
    if (!(loop->consumer = dw_kafka_consumer_new(conf, &copts, errstr, errstr_size))) {
        *exit_code = 2;
        goto fail;
    }
    if (subscribe_maps(loop, errstr, errstr_size) != DW_OK)
        goto fail;
    DW_INFO(FAC, "instance %s: target %s (%s), group %s, %zu map(s), concurrency %d",
            loop->instance, loop->target_name, dw_system_base(loop->sys), group, loop->nmaps,
            loop->aimd.cur);
    *exit_code = 0;
    return loop;
fail:
    wr_loop_destroy(loop);
    return NULL;
}

static void log_counters(wr_loop_t *loop)
{
    size_t msgs, bytes;
    pending_totals(loop, &msgs, &bytes);
    loop->counters.pending = msgs;
    char line[1536];
    wr_counters_format(&loop->counters, line, sizeof(line));
    DW_INFO(FAC, "counters: %s", line);
}

dw_err_t wr_loop_run(wr_loop_t *loop, char *errstr, size_t errstr_size)
{
    int64_t last_stats = dw_time_mono_ms(), last_commit = dw_time_mono_ms();
    int64_t wake = INT64_MAX;
    loop->tick_us = dw_time_mono_us();
    while (!dw_signal_stop_requested() && !loop->fatal) {
        if (dw_signal_reload_take())
            wr_reload(loop);
        if (loop->fatal)
            break;
        rd_kafka_poll(loop->producer, 0);
        redo_dead_letters(loop);
        int64_t now = dw_time_mono_ms();
        int timeout = (int)loop->poll_ms;
        if (wake != INT64_MAX) {
            int64_t left = wake - now;
            timeout = left <= 0 ? 0 : (left < timeout ? (int)left : timeout);
        }
        /* take what is there (wait for the first message only), up to the pending bound. At
         * the bound, the consumer is not polled while batches are in flight (they free room
         * soon, and librdkafka keeps its prefetch); when it must be polled all the same (nothing
         * in flight, or a second since the last poll: rebalances are served there), every
         * partition is paused first */
        size_t held, held_bytes;
        pending_totals(loop, &held, &held_bytes);
        size_t room =
            held < (size_t)loop->max_pending && held_bytes < (size_t)loop->max_pending_bytes
                ? (size_t)loop->max_pending - held
                : 0;
        if (room > (size_t)loop->batch_max * 4)
            room = (size_t)loop->batch_max * 4;
        /* while batches are in flight, the wait is spent on the target's answers */
        bool busy = flights_busy(loop) > 0;
        if (room == 0 && (!busy || now - loop->last_poll_ms >= 1000)) {
            check_pressure(loop, true);
            room = 1;
        }
        rd_kafka_message_t *rkm = NULL;
        if (room > 0) {
            int64_t tw = dw_time_mono_us();
            rkm = rd_kafka_consumer_poll(loop->consumer, busy ? 0 : timeout);
            loop->counters.loop_wait_us += (uint64_t)(dw_time_mono_us() - tw);
            loop->last_poll_ms = now;
        }
        for (size_t n = 1; rkm && !loop->fatal; n++) {
            if (rkm->err) {
                consumer_error(loop, rkm);
                rd_kafka_message_destroy(rkm);
            } else {
                take_message(loop, rkm);
            }
            if (n >= room)
                break;
            rkm = rd_kafka_consumer_poll(loop->consumer, 0);
        }
        if (loop->fatal)
            break;
        check_pressure(loop, false);
        now = dw_time_mono_ms();
        wake = INT64_MAX;
        wr_flight_t *f = flight_free_slot(loop);
        if (now < loop->hold_until_ms) {
            wake = loop->hold_until_ms; /* Retry-After of the target */
        } else if (!f) {
            wake = now + loop->poll_ms; /* every slot busy: the answers wake the loop */
        } else if (wr_batch_due(loop->parts, loop->nparts, now, (size_t)loop->batch_max,
                                loop->linger_ms, &wake)) {
            size_t ng =
                wr_batch_build(loop->parts, loop->binfo, loop->nparts, loop->rr++, now,
                               (size_t)loop->batch_max, loop->map_counts, loop->nmaps, f->batch);
            if (ng == (size_t)-1) {
                wr_fatal(loop, DW_ERR_NOMEM, "out of memory");
                break;
            }
            if (ng > 0) {
                f->ng = ng;
                flight_begin(loop, f);
                wake = now; /* more may be due at once */
            } else {
                wake = now + loop->poll_ms; /* every due key is held back */
            }
        }
        if (flights_busy(loop) > 0) {
            /* wait for answers, unless another batch can start at once */
            int64_t left = wake - dw_time_mono_ms();
            int wait =
                left <= 0 ? 0 : (left < (int64_t)loop->poll_ms ? (int)left : (int)loop->poll_ms);
            if (wake == INT64_MAX)
                wait = (int)loop->poll_ms;
            if (wait > 0 && flight_free_slot(loop) == NULL)
                wait = (int)loop->poll_ms;
            flights_step(loop, wait > 20 ? 20 : wait);
            if (flight_free_slot(loop))
                wake = dw_time_mono_ms(); /* a slot came free: maybe a batch is due */
        }
        if (loop->fatal)
            break;
        now = dw_time_mono_ms();
        if (now - last_commit >= loop->commit_interval_ms) {
            rd_kafka_poll(loop->producer, 0);
            commit_parts(loop, NULL, 0);
            last_commit = now;
        }
        if (loop->stats_interval_ms > 0 && now - last_stats >= loop->stats_interval_ms) {
            log_counters(loop);
            last_stats = now;
        }
    }
    if (!loop->fatal)
        flights_drain(loop); /* interrupted: what was not sent is not an attempt */
    if (!loop->fatal) {
        DW_INFO(FAC, "stopping: waiting for dead letters, committing the done offsets");
        char e2[256];
        int remaining = 0;
        if (dw_kafka_flush(loop->producer, (int)loop->flush_timeout_ms, &remaining, e2,
                           sizeof(e2)) != DW_OK)
            DW_WARN(FAC, "%d dead letter(s) unacknowledged at exit: %s", remaining, e2);
        commit_parts(loop, NULL, 0);
    }
    loop->closing = true;
    log_counters(loop);
    if (loop->fatal)
        return dw_errf(loop->fatal_err, errstr, errstr_size, "%s", loop->fatal_msg);
    return DW_OK;
}

const wr_counters_t *wr_loop_counters(const wr_loop_t *loop)
{
    return &loop->counters;
}

void wr_loop_destroy(wr_loop_t *loop)
{
    if (!loop)
        return;
    flights_abort(loop);
    if (loop->consumer) {
        if (loop->fatal) {
            /* do not commit anything more: drop the partitions as lost */
            for (size_t i = 0; i < loop->nparts; i++)
                wr_part_destroy(loop->parts[i]);
            loop->nparts = 0;
        }
        dw_kafka_consumer_destroy(loop->consumer); /* revokes: commits the watermarks */
    }
    for (size_t i = 0; i < loop->nparts; i++)
        wr_part_destroy(loop->parts[i]);
    loop->nparts = 0;
    if (loop->producer) {
        char errstr[256];
        dw_kafka_flush(loop->producer, 5000, NULL, errstr, sizeof(errstr));
        rd_kafka_purge(loop->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(loop->producer, 100);
        rd_kafka_destroy(loop->producer);
    }
    dw_target_destroy(loop->tgt);
    dw_system_destroy(loop->sys);
    dw_pg_destroy(loop->pg);
    dw_mapset_destroy(loop->set);
    free(loop->maps);
    free(loop->parts);
    free(loop->binfo);
    free(loop->redo);
    for (size_t i = 0; loop->flights && i < loop->nflights; i++) {
        wr_flight_t *f = &loop->flights[i];
        free(f->batch);
        free(f->recs);
        free(f->rec_of);
        free(f->decs);
        free(f->rows);
        free(f->a_maps);
        free(f->a_cks);
        free(f->a_rids);
        free(f->puts);
    }
    free(loop->flights);
    free(loop->map_counts);
    free(loop);
}
