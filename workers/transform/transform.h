/*
 * transform: dw-transform's modules.
 *   transform_process.c  one captured message -> its outcome (command, drop, skip, dead letter);
 *                        pure: no Kafka, no clock, unit-tested
 *   transform_pool.c     mapping threads: a ring of consumed messages mapped ahead of the loop
 *   transform_loop.c     the consume -> produce -> send offsets -> commit loop, rebalances,
 *                        reload, shutdown
 *   transform_stats.c    counters and their periodic log line
 * docs/transform.md is the operator's view.
 */
#ifndef DW_TRANSFORM_H
#define DW_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_err.h"
#include "dw_kafka.h"
#include "dw_map.h"

/* ---------------------------------------------------------------- outcome of one message */

typedef enum {
    TX_OUT_COMMAND = 0, /* produce value to topic, keyed by key */
    TX_OUT_DROP,        /* out of the map's scope: nothing produced */
    TX_OUT_SKIP,        /* the map does not run in the event's direction: nothing produced */
    TX_OUT_DLQ,         /* the original message to topic (a DLQ) with the dw.error.* headers */
} tx_kind_t;

typedef struct tx_outcome_s {
    tx_kind_t kind;
    char topic[DW_KAFKA_TOPIC_MAX + 1];
    /* TX_OUT_COMMAND */
    char *key; /* new: the canonical key; NULL: keep the input message's key */
    size_t key_len;
    char *value; /* new: the command JSON */
    size_t value_len;
    const char *op; /* "upsert" | "delete" (static) */
    char map[72];   /* header values */
    char source[4];
    char correlation_id[136];
    long long capture_ms; /* the event's capture_ts, ms since the epoch (latency) */
    /* TX_OUT_DLQ */
    const char *cls;    /* DW_DLQ_CLASS_* (static) */
    const char *reason; /* static */
    char field[192];
    char message[512];
} tx_outcome_t;

/*
 * Decide what the message value (len bytes) read from topic (a capture topic dw.<map>.fo|dv)
 * becomes, with set (borrowed) and the maps this worker serves (filter: NULL = every map of set).
 * max_bytes > 0: a longer value is poison. Fills out (tx_outcome_clear it). DW_OK, or
 * DW_ERR_NOMEM (nothing usable in out).
 */
dw_err_t tx_process(const dw_mapset_t *set, const char *topic, const void *value, size_t len,
                    size_t max_bytes, tx_outcome_t *out);
void tx_outcome_clear(tx_outcome_t *out);

/* ---------------------------------------------------------------- parallel mapping */

/* One message taken from the consumer and its outcome, in the pool's ring. */
typedef struct tx_item_s {
    rd_kafka_message_t *msg; /* owned by the pool */
    tx_outcome_t out;        /* valid once done */
    dw_err_t err;            /* tx_process's result, once done */
    bool done;               /* mapped (read it through tx_pool_ready) */
    int64_t t0_us;           /* when it was taken from the consumer (latency) */
} tx_item_t;

typedef struct tx_pool_s tx_pool_t;

/*
 * A ring of capacity messages mapped by nthreads threads (0: only by the caller, through
 * tx_pool_help) with tx_process and the maps of tx_pool_set_maps. One caller (the loop thread)
 * pushes, reads, pops and clears; the threads map the pushed messages in any order, the caller
 * takes the outcomes in push order. NULL when out of resources.
 */
tx_pool_t *tx_pool_new(int nthreads, size_t capacity, size_t max_bytes);
/* The maps the next messages are mapped with (borrowed). Only while the ring is empty. */
void tx_pool_set_maps(tx_pool_t *pool, const dw_mapset_t *set);
/* Messages held (pushed, not popped) and free slots. */
size_t tx_pool_count(const tx_pool_t *pool);
size_t tx_pool_room(const tx_pool_t *pool);
/* Append msgs[0..n) (takes ownership; the array's entries are set to NULL); n <= room. */
void tx_pool_push(tx_pool_t *pool, rd_kafka_message_t **msgs, size_t n, int64_t t0_us);
/* How many items from the head on are mapped (contiguously). */
size_t tx_pool_ready(tx_pool_t *pool);
/* Item k (< tx_pool_ready) counted from the head (borrowed, until popped). */
tx_item_t *tx_pool_item(tx_pool_t *pool, size_t k);
/* Map one message nobody has claimed on the caller's thread; false when there is none. */
bool tx_pool_help(tx_pool_t *pool);
/* Wait up to timeout_ms for the head item to be mapped by a thread; true when it is. Returns
 * at once when the pool has no threads and nobody maps it (the caller helps). */
bool tx_pool_wait_head(tx_pool_t *pool, int timeout_ms);
/* Let go of the k items from the head (mapped): outcomes cleared, messages destroyed. */
void tx_pool_pop(tx_pool_t *pool, size_t k);
/* Let go of every item held, mapped or not (waits for the ones being mapped). */
void tx_pool_clear(tx_pool_t *pool);
void tx_pool_destroy(tx_pool_t *pool);

/* ---------------------------------------------------------------- counters */

#define TX_LAT_BUCKETS 32 /* log2 microsecond buckets */

typedef struct tx_counters_s {
    uint64_t consumed;      /* messages taken from capture topics (committed transactions) */
    uint64_t produced;      /* commands produced (committed) */
    uint64_t dropped;       /* out of scope (committed) */
    uint64_t skipped;       /* direction the map does not run (committed) */
    uint64_t dead_lettered; /* dead letters produced (committed) */
    uint64_t txn_committed;
    uint64_t txn_aborted;
    uint64_t rebalances;
    uint64_t reloads;
    uint64_t reload_failures;
    uint64_t batch_max;                /* largest transaction, in messages */
    uint64_t batch_sum;                /* messages over all committed transactions */
    uint64_t lat_hist[TX_LAT_BUCKETS]; /* processing latency per message: bucket i holds
                                          [2^i, 2^(i+1)) microseconds (0: below 2) */
    uint64_t lat_count;
    uint64_t lat_sum_us;
    uint64_t lat_max_us;
} tx_counters_t;

/* What one open transaction did, merged into the totals when it commits. */
typedef struct tx_pending_s {
    uint64_t consumed, produced, dropped, skipped, dead_lettered;
} tx_pending_t;

void tx_counters_latency(tx_counters_t *c, uint64_t us);
/* Merge p after a commit (batch size = p->consumed). */
void tx_counters_commit(tx_counters_t *c, const tx_pending_t *p);
/* The latency below which fraction q (0..1) of the samples fall (upper edge of its bucket), us. */
uint64_t tx_counters_latency_quantile(const tx_counters_t *c, double q);
/* One info line "consumed=... produced=..." into buf. */
void tx_counters_format(const tx_counters_t *c, char *buf, size_t size);

/* ---------------------------------------------------------------- the loop */

extern const dw_conf_def_t tx_conf_defs[];

typedef struct tx_loop_s tx_loop_t;

/* Load the maps, create the clients, init transactions and subscribe. conf: borrowed, must
 * outlive the loop. NULL with errstr on failure; *exit_code 2 for configuration problems
 * (bad maps, unknown map names), 1 otherwise. */
tx_loop_t *tx_loop_new(const dw_conf_t *conf, int *exit_code, char *errstr, size_t errstr_size);
/* Run until dw_signal_stop_requested(): DW_OK after a clean shutdown (open transaction
 * committed, consumer closed), or the fatal error (errstr). */
dw_err_t tx_loop_run(tx_loop_t *loop, char *errstr, size_t errstr_size);
/* The counters (borrowed). */
const tx_counters_t *tx_loop_counters(const tx_loop_t *loop);
void tx_loop_destroy(tx_loop_t *loop);

#endif
