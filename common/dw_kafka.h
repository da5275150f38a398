/*
 * dw_kafka: the Kafka helpers every dwfleet worker uses, on top of librdkafka.
 *
 *  - topic names: dw.<map>.<kind> (fo, dv, to-dv, to-fo, dlq), built and parsed back;
 *  - clients built from the configuration: every kafka.<property> key passes through to
 *    librdkafka, between dwfleet's defaults (which it overrides) and the few settings dwfleet
 *    relies on (which override it; see docs/kafka.md);
 *  - produce with a bounded wait on a full queue, flush, the design's headers;
 *  - admin: create (idempotent), list, describe and delete topics, wait for the cluster;
 *  - transactions: thin wrappers that classify every error as retry / abort / fatal.
 *
 * The clients are plain rd_kafka_t handles: dwfleet keeps no state of its own beside them, so the
 * whole librdkafka API stays available. librdkafka's errors become dw_err_t codes with the
 * retriable property (dw_err_is_retriable); librdkafka's own text goes to errstr.
 */
#ifndef DW_KAFKA_H
#define DW_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dw_config.h"
#include "dw_err.h"

/* ---------------------------------------------------------------- topic names */

/* Kafka's limit on a topic name. */
#define DW_KAFKA_TOPIC_MAX 249
/* A map name's limit: the longest topic of a map ("dw." + map + ".to-dv") stays within
 * DW_KAFKA_TOPIC_MAX, so a valid map name is valid for every kind. */
#define DW_KAFKA_MAP_MAX (DW_KAFKA_TOPIC_MAX - 9)

typedef enum {
    DW_KAFKA_TOPIC_FO = 0, /* dw.<map>.fo     changes captured from F&O */
    DW_KAFKA_TOPIC_DV,     /* dw.<map>.dv     changes captured from Dataverse */
    DW_KAFKA_TOPIC_TO_DV,  /* dw.<map>.to-dv  commands for Dataverse */
    DW_KAFKA_TOPIC_TO_FO,  /* dw.<map>.to-fo  commands for F&O */
    DW_KAFKA_TOPIC_DLQ,    /* dw.<map>.dlq    dead letters */
    DW_KAFKA_TOPIC__COUNT
} dw_kafka_topic_kind_t;

/* "fo", "dv", "to-dv", "to-fo", "dlq" (static storage); NULL for an unknown kind. */
const char *dw_kafka_topic_kind_name(dw_kafka_topic_kind_t kind);

/* "fo" ... "dlq" -> kind; DW_ERR_INVALID_ARG otherwise. */
dw_err_t dw_kafka_topic_kind_parse(const char *s, dw_kafka_topic_kind_t *kind);

/* Check a map name: [a-z0-9_]+, at most DW_KAFKA_MAP_MAX characters. Names starting with '_'
 * are reserved for dwfleet's own topics (dw._unknown.dlq, dw._capture.dlq) and rejected unless
 * allow_reserved (maps loaded from files pass false). DW_ERR_INVALID_ARG with the reason. */
dw_err_t dw_kafka_map_name_check(const char *map, bool allow_reserved, char *errstr,
                                 size_t errstr_size);

/* Write "dw.<map>.<kind>" into buf (size bytes; DW_KAFKA_TOPIC_MAX + 1 always suffices).
 * Reserved map names are accepted (dwfleet builds its special topics here). Invalid map name,
 * unknown kind, buf too small: DW_ERR_INVALID_ARG with a message. */
dw_err_t dw_kafka_topic_name(char *buf, size_t size, const char *map, dw_kafka_topic_kind_t kind,
                             char *errstr, size_t errstr_size);

/* Parse a dwfleet topic name back: map into map_buf (map_size bytes; DW_KAFKA_MAP_MAX + 1
 * always suffices), kind into *kind (either may be NULL). DW_ERR_INVALID_ARG when topic is not
 * "dw.<valid map>.<kind>". */
dw_err_t dw_kafka_topic_parse(const char *topic, char *map_buf, size_t map_size,
                              dw_kafka_topic_kind_t *kind, char *errstr, size_t errstr_size);

/* ---------------------------------------------------------------- clients */

/* librdkafka's statistics callback (statistics.interval.ms): returns 0 to let librdkafka free
 * json, 1 when the callback keeps it (then it must rd_kafka_mem_free it). */
typedef int(dw_kafka_stats_cb)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);

typedef struct dw_kafka_producer_opts_s {
    /* Default enable.idempotence (true): a retried batch is never duplicated nor reordered.
     * kafka.enable.idempotence=false overrides it (with a warning), for clusters that lack it. */
    bool idempotence;
    /* Not NULL: a transactional producer (essential; kafka.transactional.id is never passed
     * through, since the fleet shares one file and every instance needs its own id). Borrowed. */
    const char *transactional_id;
    /* Default client.id (NULL: librdkafka's "rdkafka"); kafka.client.id overrides it. Borrowed. */
    const char *client_id;
    /* Delivery reports (essential when not NULL), served by rd_kafka_poll / dw_kafka_produce /
     * dw_kafka_flush. rkmessage->_private is the message's msg_opaque. */
    void (*dr_msg_cb)(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque);
    /* Statistics (optional): stats_cb every stats_interval_ms when both are set. */
    dw_kafka_stats_cb *stats_cb;
    int stats_interval_ms;
    /* The handle's opaque (rd_kafka_opaque()), passed to the callbacks. Borrowed. */
    void *opaque;
} dw_kafka_producer_opts_t;

typedef struct dw_kafka_consumer_opts_s {
    /* Not NULL: the group (essential: the fleet shares one file, each component names its own
     * group). NULL: kafka.group.id, which must then be set (librdkafka's consumer API needs a
     * group even for assign(); offsets are only committed when the caller commits). */
    const char *group_id;
    /* Default client.id (NULL: librdkafka's); kafka.client.id overrides it. Borrowed. */
    const char *client_id;
    /* NULL: default read_committed (kafka.isolation.level overrides it); else essential
     * ("read_committed" | "read_uncommitted"). Borrowed. */
    const char *isolation_level;
    /* Default partition.assignment.strategy=cooperative-sticky when true (the init default):
     * a rebalance only moves the partitions that change owner. kafka.* overrides it. */
    bool cooperative;
    /* Rebalance callback (essential when not NULL). It must assign with
     * rd_kafka_incremental_assign/unassign when rd_kafka_rebalance_protocol() is
     * "COOPERATIVE", rd_kafka_assign otherwise. NULL: a built-in one that does so and logs. */
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *partitions, void *opaque);
    dw_kafka_stats_cb *stats_cb;
    int stats_interval_ms;
    void *opaque; /* borrowed */
} dw_kafka_consumer_opts_t;

/* Fill opts with the defaults: idempotence on / read_committed, cooperative, the rest NULL/0. */
void dw_kafka_producer_opts_init(dw_kafka_producer_opts_t *opts);
void dw_kafka_consumer_opts_init(dw_kafka_consumer_opts_t *opts);

/* A new rd_kafka_conf_t holding every kafka.* key of conf (prefix stripped), with the log
 * callback routed to dw_log (dw_log_rdkafka_cb) and the error callback to dw_log. conf is
 * borrowed and may be NULL (nothing passed through). NULL on error, with librdkafka's text in
 * errstr ("kafka.foo: No such configuration property: ..."). The caller owns the result: pass it
 * to rd_kafka_new (which takes it only on success) or rd_kafka_conf_destroy it. */
rd_kafka_conf_t *dw_kafka_conf_new(const dw_conf_t *conf, char *errstr, size_t errstr_size);

/* The same, layered for a producer or a consumer: dwfleet defaults, then kafka.*, then what
 * dwfleet relies on. opts NULL: the defaults. New; NULL on error (errstr). */
rd_kafka_conf_t *dw_kafka_producer_conf_new(const dw_conf_t *conf,
                                            const dw_kafka_producer_opts_t *opts, char *errstr,
                                            size_t errstr_size);
rd_kafka_conf_t *dw_kafka_consumer_conf_new(const dw_conf_t *conf,
                                            const dw_kafka_consumer_opts_t *opts, char *errstr,
                                            size_t errstr_size);

/* New clients; NULL on error with librdkafka's text in errstr. The consumer's main queue is
 * redirected to the consumer queue (rd_kafka_poll_set_consumer), so rd_kafka_consumer_poll
 * serves its callbacks; close it with dw_kafka_consumer_destroy. */
rd_kafka_t *dw_kafka_producer_new(const dw_conf_t *conf, const dw_kafka_producer_opts_t *opts,
                                  char *errstr, size_t errstr_size);
rd_kafka_t *dw_kafka_consumer_new(const dw_conf_t *conf, const dw_kafka_consumer_opts_t *opts,
                                  char *errstr, size_t errstr_size);
/* A plain producer-type handle for admin and metadata requests (no idempotence). */
rd_kafka_t *dw_kafka_admin_new(const dw_conf_t *conf, char *errstr, size_t errstr_size);

/* Close the consumer (leaves the group, revoking its partitions), then destroy it. rk: taken
 * (NULL is fine). */
void dw_kafka_consumer_destroy(rd_kafka_t *rk);

/* ---------------------------------------------------------------- errors */

/* librdkafka error code -> dw_err_t. Retriable ones (broker moves, timeouts, transport, full
 * queue, coordinator loading, ...) map to retriable codes (DW_ERR_TIMEOUT, DW_ERR_UNAVAILABLE,
 * DW_ERR_QUEUE_FULL, DW_ERR_KAFKA_RETRIABLE); fencing to DW_ERR_FENCED; an unknown topic to
 * DW_ERR_NOT_FOUND (topics are created by an operator: waiting does not help); bad arguments and
 * oversized messages to DW_ERR_INVALID_ARG; the rest to DW_ERR_KAFKA. RD_KAFKA_RESP_ERR_NO_ERROR
 * -> DW_OK. */
dw_err_t dw_kafka_err_map(rd_kafka_resp_err_t err);

/* An rd_kafka_error_t (borrowed) -> dw_err_t, trusting its own flags: fatal -> DW_ERR_FENCED or
 * DW_ERR_KAFKA; txn_requires_abort or retriable -> a retriable code; else non-retriable. */
dw_err_t dw_kafka_error_map(const rd_kafka_error_t *error);

/* ---------------------------------------------------------------- produce */

/* A message to produce. The payloads are copied; every pointer is borrowed for the call only. */
typedef struct dw_kafka_msg_s {
    const char *topic;
    int32_t partition; /* RD_KAFKA_PARTITION_UA (DW_KAFKA_MSG_INIT): the partitioner picks */
    const void *key;
    size_t key_len;
    const void *value; /* NULL: a tombstone */
    size_t value_len;
    void *msg_opaque; /* returned in the delivery report (rkmessage->_private) */
} dw_kafka_msg_t;

/* Always start from this: a zeroed struct would mean partition 0. */
#define DW_KAFKA_MSG_INIT {NULL, RD_KAFKA_PARTITION_UA, NULL, 0, NULL, 0, NULL}

/* Enqueue msg. headers: TAKEN on success AND on failure (destroyed here when not produced; the
 * caller sets its pointer to NULL either way); may be NULL. When the queue is full, serves
 * delivery reports (rd_kafka_poll) and retries until block_ms passed (0: one retry after serving
 * what is ready), then DW_ERR_QUEUE_FULL. Other failures are mapped by dw_kafka_err_map (a fatal
 * producer error by its underlying cause, e.g. DW_ERR_FENCED); errstr names the topic. */
dw_err_t dw_kafka_produce(rd_kafka_t *rk, const dw_kafka_msg_t *msg, rd_kafka_headers_t *headers,
                          int block_ms, char *errstr, size_t errstr_size);

/* Wait up to timeout_ms for every queued message to be delivered (serving delivery reports).
 * *remaining (may be NULL): what is still queued or in flight. DW_ERR_TIMEOUT when not empty. */
dw_err_t dw_kafka_flush(rd_kafka_t *rk, int timeout_ms, int *remaining, char *errstr,
                        size_t errstr_size);

/* ---------------------------------------------------------------- headers */

/* The design's header names: tools route on these without parsing the envelope. */
#define DW_KAFKA_HDR_MAP            "dw.map"
#define DW_KAFKA_HDR_SOURCE         "dw.source"
#define DW_KAFKA_HDR_OP             "dw.op"
#define DW_KAFKA_HDR_CORRELATION_ID "dw.correlation_id"

/* New headers from name, value pairs ending with a NULL name; a pair whose value is NULL is
 * skipped. dw_kafka_headers_new(DW_KAFKA_HDR_MAP, "account", DW_KAFKA_HDR_OP, "upsert", NULL).
 * The strings are copied. NULL when out of memory. */
rd_kafka_headers_t *dw_kafka_headers_new(const char *name, ...) __attribute__((sentinel));

/* The design's four headers (map, source, op, correlation id; NULL ones left out). New. */
rd_kafka_headers_t *dw_kafka_headers_dw(const char *map, const char *source, const char *op,
                                        const char *correlation_id);

/* Copy the last value of header name into buf as a string. hdrs borrowed (may be NULL).
 * DW_ERR_NOT_FOUND when absent; DW_ERR_INVALID_ARG when it does not fit (buf gets a prefix). */
dw_err_t dw_kafka_header_get(const rd_kafka_headers_t *hdrs, const char *name, char *buf,
                             size_t size);

/* ---------------------------------------------------------------- admin */

typedef struct dw_kafka_topic_spec_s {
    const char *name;          /* borrowed */
    int partitions;            /* >= 1 */
    int replication_factor;    /* >= 1, or -1 for the broker's default */
    const char *const *config; /* NULL, or name, value, ..., NULL: "retention.ms", "604800000" */
    bool existed;              /* out: the topic existed already (still success) */
    dw_err_t err;              /* out: this topic's result */
} dw_kafka_topic_spec_t;

/* Create topics and wait, up to timeout_ms in all, for the result and for every created topic to
 * show in the metadata with a leader for each partition. TOPIC_ALREADY_EXISTS is success with
 * existed = true (the existing topic's settings are not compared). On failure returns the first
 * topic's error, errstr naming every failed topic ("could not create topic \"x\": reason"). */
dw_err_t dw_kafka_topics_create(rd_kafka_t *rk, dw_kafka_topic_spec_t *specs, size_t count,
                                int timeout_ms, char *errstr, size_t errstr_size);

/* Delete topics, waiting up to timeout_ms; a topic that does not exist counts as deleted. */
dw_err_t dw_kafka_topics_delete(rd_kafka_t *rk, const char *const *names, size_t count,
                                int timeout_ms, char *errstr, size_t errstr_size);

/* The cluster's topic names starting with prefix (NULL: all), sorted. *names: a new array of new
 * strings (NULL when none); free it with dw_kafka_topics_free. */
dw_err_t dw_kafka_topics_list(rd_kafka_t *rk, const char *prefix, int timeout_ms, char ***names,
                              size_t *count, char *errstr, size_t errstr_size);
void dw_kafka_topics_free(char **names, size_t count);

/* The partition count of topic; DW_ERR_NOT_FOUND when the cluster does not know it. Asks for all
 * topics, never for this one by name, so a broker with auto-creation cannot create it. */
dw_err_t dw_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size);

/* Wait up to timeout_ms until the cluster answers a metadata request. DW_ERR_UNAVAILABLE with
 * librdkafka's last error when it did not. */
dw_err_t dw_kafka_wait_ready(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errstr_size);

/* ---------------------------------------------------------------- transactions */

/* What the caller does after a transactional call. */
typedef enum {
    DW_KAFKA_TXN_OK = 0,
    DW_KAFKA_TXN_RETRY, /* retriable (e.g. timed out): call the same function again */
    DW_KAFKA_TXN_ABORT, /* dw_kafka_txn_abort, dw_kafka_consumer_rewind, redo the work */
    DW_KAFKA_TXN_FATAL, /* the producer cannot go on: destroy it (DW_ERR_FENCED: another
                           instance took over; exit rather than fight it) */
} dw_kafka_txn_action_t;

/* The action for an rd_kafka_error_t (borrowed; NULL -> OK). */
dw_kafka_txn_action_t dw_kafka_txn_classify(const rd_kafka_error_t *error);
const char *dw_kafka_txn_action_name(dw_kafka_txn_action_t action);

/* Thin wrappers over rd_kafka_{init,begin,send_offsets_to,commit,abort}_transaction. Each
 * returns dw_kafka_error_map(error) and sets *action (may be NULL) to the classification; errstr
 * gets "could not commit transaction: <librdkafka's text>". send_offsets: offsets borrowed (the
 * next offsets to consume: last processed + 1), consumer borrowed (its group metadata). */
dw_err_t dw_kafka_txn_init(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                           char *errstr, size_t errstr_size);
dw_err_t dw_kafka_txn_begin(rd_kafka_t *rk, dw_kafka_txn_action_t *action, char *errstr,
                            size_t errstr_size);
dw_err_t dw_kafka_txn_send_offsets(rd_kafka_t *rk, rd_kafka_t *consumer,
                                   const rd_kafka_topic_partition_list_t *offsets, int timeout_ms,
                                   dw_kafka_txn_action_t *action, char *errstr,
                                   size_t errstr_size);
dw_err_t dw_kafka_txn_commit(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                             char *errstr, size_t errstr_size);
dw_err_t dw_kafka_txn_abort(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                            char *errstr, size_t errstr_size);

/* Move the consumer's position on every assigned partition back to the group's committed offset
 * (or to auto.offset.reset's end when none is committed), so work after an aborted transaction
 * is consumed again. */
dw_err_t dw_kafka_consumer_rewind(rd_kafka_t *consumer, int timeout_ms, char *errstr,
                                  size_t errstr_size);

#endif
