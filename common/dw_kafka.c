/*
 * dw_kafka: topic names, client construction from the configuration, produce with a bounded wait
 * on a full queue, headers, admin (topics, metadata) and transaction helpers over librdkafka.
 * See dw_kafka.h for the contracts and docs/kafka.md for the defaults and why.
 */
#include "dw_kafka.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_log.h"

#define DW_KAFKA_FAC "kafka"

/* ---------------------------------------------------------------- small helpers */

static int64_t dw_kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dw_kafka_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Milliseconds left until deadline, at least 0, at most cap (when cap > 0). */
static int dw_kafka_left(int64_t deadline, int cap)
{
    int64_t left = deadline - dw_kafka_now_ms();
    if (left < 0)
        left = 0;
    if (cap > 0 && left > cap)
        left = cap;
    return (int)left;
}

/* Append a formatted message to errstr, separated from what is there by "; ". */
static void dw_kafka_errappend(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dw_kafka_errappend(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    size_t len = strnlen(errstr, errstr_size);
    if (len >= errstr_size - 1)
        return;
    if (len > 0) {
        snprintf(errstr + len, errstr_size - len, "; ");
        len = strnlen(errstr, errstr_size);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr + len, errstr_size - len, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- topic names */

static const char *const dw_kafka_kind_names[DW_KAFKA_TOPIC__COUNT] = {
    [DW_KAFKA_TOPIC_FO] = "fo",         [DW_KAFKA_TOPIC_DV] = "dv",
    [DW_KAFKA_TOPIC_TO_DV] = "to-dv",   [DW_KAFKA_TOPIC_TO_FO] = "to-fo",
    [DW_KAFKA_TOPIC_DLQ] = "dlq",
};

const char *dw_kafka_topic_kind_name(dw_kafka_topic_kind_t kind)
{
    if ((int)kind < 0 || kind >= DW_KAFKA_TOPIC__COUNT)
        return NULL;
    return dw_kafka_kind_names[kind];
}

dw_err_t dw_kafka_topic_kind_parse(const char *s, dw_kafka_topic_kind_t *kind)
{
    for (int k = 0; k < DW_KAFKA_TOPIC__COUNT; k++) {
        if (strcmp(s, dw_kafka_kind_names[k]) == 0) {
            *kind = (dw_kafka_topic_kind_t)k;
            return DW_OK;
        }
    }
    return DW_ERR_INVALID_ARG;
}

/* Check the len bytes of map (not necessarily NUL-terminated there). */
static dw_err_t dw_kafka_map_check_n(const char *map, size_t len, bool allow_reserved,
                                     char *errstr, size_t errstr_size)
{
    if (len == 0)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "map name is empty");
    if (len > DW_KAFKA_MAP_MAX)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "map name is %zu characters long, at most %d allowed (Kafka limits a "
                       "topic name to %d)",
                       len, DW_KAFKA_MAP_MAX, DW_KAFKA_TOPIC_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = map[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "map name \"%.*s\": character %zu ('%c') is not one of [a-z0-9_]",
                           (int)(len > 64 ? 64 : len), map, i + 1,
                           (c >= 0x20 && c < 0x7f) ? c : '?');
    }
    if (map[0] == '_' && !allow_reserved)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "map name \"%.*s\": names starting with '_' are reserved for dwfleet",
                       (int)(len > 64 ? 64 : len), map);
    return DW_OK;
}

dw_err_t dw_kafka_map_name_check(const char *map, bool allow_reserved, char *errstr,
                                 size_t errstr_size)
{
    return dw_kafka_map_check_n(map, strnlen(map, DW_KAFKA_MAP_MAX + 1), allow_reserved, errstr,
                                errstr_size);
}

dw_err_t dw_kafka_topic_name(char *buf, size_t size, const char *map, dw_kafka_topic_kind_t kind,
                             char *errstr, size_t errstr_size)
{
    const char *kname = dw_kafka_topic_kind_name(kind);
    if (!kname)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "unknown topic kind %d",
                       (int)kind);
    dw_err_t err = dw_kafka_map_name_check(map, true, errstr, errstr_size);
    if (err)
        return err;
    int n = snprintf(buf, size, "dw.%s.%s", map, kname);
    if (n < 0 || (size_t)n >= size)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "topic name for map \"%s\" needs %d bytes, the buffer has %zu", map, n + 1,
                       size);
    return DW_OK;
}

dw_err_t dw_kafka_topic_parse(const char *topic, char *map_buf, size_t map_size,
                              dw_kafka_topic_kind_t *kind, char *errstr, size_t errstr_size)
{
    size_t len = strnlen(topic, DW_KAFKA_TOPIC_MAX + 1);
    if (len > DW_KAFKA_TOPIC_MAX)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "topic name longer than %d characters", DW_KAFKA_TOPIC_MAX);
    if (strncmp(topic, "dw.", 3) != 0)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "topic \"%s\" is not a dwfleet topic (dw.<map>.<kind>)", topic);
    const char *map = topic + 3;
    const char *dot = strrchr(map, '.');
    if (!dot)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "topic \"%s\" has no kind (dw.<map>.<kind>)", topic);
    dw_kafka_topic_kind_t k;
    if (dw_kafka_topic_kind_parse(dot + 1, &k) != DW_OK)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "topic \"%s\": unknown kind \"%s\" (fo, dv, to-dv, to-fo, dlq)", topic,
                       dot + 1);
    size_t map_len = (size_t)(dot - map);
    char why[256];
    if (dw_kafka_map_check_n(map, map_len, true, why, sizeof(why)) != DW_OK)
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "topic \"%s\": %s", topic, why);
    if (map_buf) {
        if (map_len >= map_size)
            return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                           "topic \"%s\": map name does not fit in %zu bytes", topic, map_size);
        memcpy(map_buf, map, map_len);
        map_buf[map_len] = '\0';
    }
    if (kind)
        *kind = k;
    return DW_OK;
}

/* ---------------------------------------------------------------- errors */

static bool dw_kafka_err_is_fencing(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
        return true;
    default:
        return false;
    }
}

dw_err_t dw_kafka_err_map(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return DW_OK;

    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return DW_ERR_QUEUE_FULL;

    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return DW_ERR_TIMEOUT;

    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        return DW_ERR_UNAVAILABLE;

    /* the cluster is moving things around, or is busy: the same request succeeds later */
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__WAIT_CACHE:
    case RD_KAFKA_RESP_ERR__RETRY:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__ISR_INSUFF:
    case RD_KAFKA_RESP_ERR__IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR__OUTDATED:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_INVALID_FETCH_SESSION_EPOCH:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_PREFERRED_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_ELIGIBLE_LEADERS_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
    case RD_KAFKA_RESP_ERR_REASSIGNMENT_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_LISTENER_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_INVALID_MSG: /* CORRUPT_MESSAGE: Kafka retries it */
        return DW_ERR_KAFKA_RETRIABLE;

    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
    case RD_KAFKA_RESP_ERR_TRANSACTION_COORDINATOR_FENCED:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
        return DW_ERR_FENCED;

    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__NOENT:
    case RD_KAFKA_RESP_ERR__UNKNOWN_GROUP:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND:
    case RD_KAFKA_RESP_ERR_RESOURCE_NOT_FOUND:
        return DW_ERR_NOT_FOUND;

    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_INVALID_GROUP_ID:
        return DW_ERR_INVALID_ARG;

    case RD_KAFKA_RESP_ERR__DESTROY:
        return DW_ERR_INTERRUPTED;

    default:
        return DW_ERR_KAFKA;
    }
}

dw_err_t dw_kafka_error_map(const rd_kafka_error_t *error)
{
    if (!error)
        return DW_OK;
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    if (rd_kafka_error_is_fatal(error))
        return dw_kafka_err_is_fencing(code) ? DW_ERR_FENCED : DW_ERR_KAFKA;
    if (rd_kafka_error_txn_requires_abort(error) || rd_kafka_error_is_retriable(error)) {
        dw_err_t err = dw_kafka_err_map(code);
        return dw_err_is_retriable(err) ? err : DW_ERR_KAFKA_RETRIABLE;
    }
    /* librdkafka says it is not worth retrying: trust it over our table */
    dw_err_t err = dw_kafka_err_map(code);
    return dw_err_is_retriable(err) ? DW_ERR_KAFKA : err;
}

/* A librdkafka error on rk: when it is the fatal-error signal, the underlying cause (its text
 * replaces buf's). */
static rd_kafka_resp_err_t dw_kafka_cause(rd_kafka_t *rk, rd_kafka_resp_err_t err, char *buf,
                                          size_t size)
{
    if (err != RD_KAFKA_RESP_ERR__FATAL)
        return err;
    rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, buf, size);
    return cause ? cause : err;
}

/* ---------------------------------------------------------------- callbacks */

/* librdkafka's error callback, served by rd_kafka_poll on the application's thread. Most errors
 * are informational: librdkafka recovers by itself. A fatal one means the handle is done. */
static void dw_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char cause[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, cause, sizeof(cause));
        DW_ERROR(DW_KAFKA_FAC, "%s: fatal error %s: %s", rd_kafka_name(rk),
                 rd_kafka_err2name(code), cause);
        return;
    }
    dw_log_level_t level =
        err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? DW_LOG_ERROR : DW_LOG_WARN;
    DW_LOG(level, DW_KAFKA_FAC, "%s: %s: %s", rd_kafka_name(rk),
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* "topic[0,1] other[3]" (truncated with "..."). */
static void dw_kafka_parts_str(const rd_kafka_topic_partition_list_t *parts, char *buf,
                               size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; parts && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        bool same = i > 0 && strcmp(parts->elems[i - 1].topic, p->topic) == 0;
        int n = same ? snprintf(buf + len, size - len, ",%d", (int)p->partition)
                     : snprintf(buf + len, size - len, "%s%s[%d", i > 0 ? "] " : "", p->topic,
                                (int)p->partition);
        if (n < 0 || (size_t)n >= size - len) {
            if (size > 4)
                snprintf(buf + size - 4, 4, "...");
            return;
        }
        len += (size_t)n;
    }
    if (len > 0 && len + 1 < size)
        snprintf(buf + len, size - len, "]");
}

/* The built-in rebalance callback: assign what the group gives, in the protocol it speaks. */
static void dw_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    bool coop = proto && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    char list[512];
    dw_kafka_parts_str(parts, list, sizeof(list));

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        DW_INFO(DW_KAFKA_FAC, "%s: assigned %d partition(s): %s", rd_kafka_name(rk),
                parts ? parts->cnt : 0, list);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        DW_INFO(DW_KAFKA_FAC, "%s: %s %d partition(s): %s", rd_kafka_name(rk),
                rd_kafka_assignment_lost(rk) ? "lost" : "revoked", parts ? parts->cnt : 0,
                list);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
        break;
    default:
        DW_ERROR(DW_KAFKA_FAC, "%s: rebalance failed: %s", rd_kafka_name(rk),
                 rd_kafka_err2str(err));
        ret = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error) {
        DW_ERROR(DW_KAFKA_FAC, "%s: could not apply the rebalance: %s", rd_kafka_name(rk),
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (ret) {
        DW_ERROR(DW_KAFKA_FAC, "%s: could not apply the rebalance: %s", rd_kafka_name(rk),
                 rd_kafka_err2str(ret));
    }
}

/* ---------------------------------------------------------------- configuration */

/* One librdkafka property. In an "essential" list, value NULL means "never passed through and
 * not set" (e.g. transactional.id on a non-transactional producer). */
typedef struct {
    const char *name;
    const char *value;
} dw_kafka_prop_t;

#define DW_KAFKA_PROPS_MAX 8

typedef struct {
    const dw_conf_t *conf;
    rd_kafka_conf_t *kc;
    const dw_kafka_prop_t *essential;
    size_t essential_cnt;
    char *errstr;
    size_t errstr_size;
} dw_kafka_pass_t;

static int dw_kafka_pass_cb(const char *name, const char *value, void *opaque)
{
    dw_kafka_pass_t *pass = opaque;
    const char *prop = name + strlen("kafka.");
    if (strncmp(name, "kafka.", 6) != 0 || *prop == '\0')
        return 0;
    for (size_t i = 0; i < pass->essential_cnt; i++) {
        const dw_kafka_prop_t *e = &pass->essential[i];
        if (strcmp(prop, e->name) != 0)
            continue;
        if (!e->value)
            DW_WARN(DW_KAFKA_FAC, "%s is ignored here: dwfleet sets %s per instance", name,
                    e->name);
        else if (strcmp(value, e->value) != 0)
            DW_WARN(DW_KAFKA_FAC, "%s is ignored: dwfleet relies on %s=%s", name, e->name,
                    e->value);
        return 0;
    }
    char why[512];
    if (rd_kafka_conf_set(pass->kc, prop, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        /* librdkafka's text quotes the value: keep a secret out of it */
        dw_errf(DW_ERR_CONFIG, pass->errstr, pass->errstr_size, "%s: %s", name,
                dw_conf_is_secret(pass->conf, name) ? "invalid value (a secret, not shown)" : why);
        return 1;
    }
    return 0;
}

static bool dw_kafka_props_set(rd_kafka_conf_t *kc, const dw_kafka_prop_t *props, size_t cnt,
                               char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < cnt; i++) {
        char why[512];
        if (!props[i].value)
            continue;
        if (rd_kafka_conf_set(kc, props[i].name, props[i].value, why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
            dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: %s", props[i].name, why);
            return false;
        }
    }
    return true;
}

/* The layering every client shares: callbacks to our log, defaults, kafka.* from conf (minus the
 * essential names), essentials. New conf or NULL (errstr). */
static rd_kafka_conf_t *dw_kafka_conf_build(const dw_conf_t *conf, const dw_kafka_prop_t *defaults,
                                            size_t defaults_cnt, const dw_kafka_prop_t *essential,
                                            size_t essential_cnt, char *errstr,
                                            size_t errstr_size)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(kc, dw_log_rdkafka_cb);
    rd_kafka_conf_set_error_cb(kc, dw_kafka_error_cb);

    if (!dw_kafka_props_set(kc, defaults, defaults_cnt, errstr, errstr_size))
        goto fail;
    if (conf) {
        dw_kafka_pass_t pass = {conf, kc, essential, essential_cnt, errstr, errstr_size};
        if (dw_conf_foreach(conf, "kafka.", dw_kafka_pass_cb, &pass) != 0)
            goto fail;
    }
    if (!dw_kafka_props_set(kc, essential, essential_cnt, errstr, errstr_size))
        goto fail;
    return kc;

fail:
    rd_kafka_conf_destroy(kc);
    return NULL;
}

rd_kafka_conf_t *dw_kafka_conf_new(const dw_conf_t *conf, char *errstr, size_t errstr_size)
{
    return dw_kafka_conf_build(conf, NULL, 0, NULL, 0, errstr, errstr_size);
}

void dw_kafka_producer_opts_init(dw_kafka_producer_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->idempotence = true;
}

void dw_kafka_consumer_opts_init(dw_kafka_consumer_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->cooperative = true;
}

rd_kafka_conf_t *dw_kafka_producer_conf_new(const dw_conf_t *conf,
                                            const dw_kafka_producer_opts_t *opts, char *errstr,
                                            size_t errstr_size)
{
    dw_kafka_producer_opts_t defopts;
    if (!opts) {
        dw_kafka_producer_opts_init(&defopts);
        opts = &defopts;
    }
    char interval[32];
    snprintf(interval, sizeof(interval), "%d", opts->stats_interval_ms);

    dw_kafka_prop_t defaults[DW_KAFKA_PROPS_MAX];
    size_t nd = 0;
    if (opts->idempotence)
        defaults[nd++] = (dw_kafka_prop_t){"enable.idempotence", "true"};
    if (opts->client_id)
        defaults[nd++] = (dw_kafka_prop_t){"client.id", opts->client_id};

    dw_kafka_prop_t essential[DW_KAFKA_PROPS_MAX];
    size_t ne = 0;
    essential[ne++] = (dw_kafka_prop_t){"transactional.id", opts->transactional_id};
    if (opts->stats_cb && opts->stats_interval_ms > 0)
        essential[ne++] = (dw_kafka_prop_t){"statistics.interval.ms", interval};

    rd_kafka_conf_t *kc =
        dw_kafka_conf_build(conf, defaults, nd, essential, ne, errstr, errstr_size);
    if (!kc)
        return NULL;

    if (opts->idempotence) {
        char val[16];
        size_t val_size = sizeof(val);
        if (rd_kafka_conf_get(kc, "enable.idempotence", val, &val_size) == RD_KAFKA_CONF_OK &&
            strcmp(val, "false") == 0)
            DW_WARN(DW_KAFKA_FAC, "kafka.enable.idempotence=false: a retried batch may be "
                                  "duplicated or reordered");
    }
    if (opts->dr_msg_cb)
        rd_kafka_conf_set_dr_msg_cb(kc, opts->dr_msg_cb);
    if (opts->stats_cb)
        rd_kafka_conf_set_stats_cb(kc, opts->stats_cb);
    rd_kafka_conf_set_opaque(kc, opts->opaque);
    return kc;
}

rd_kafka_conf_t *dw_kafka_consumer_conf_new(const dw_conf_t *conf,
                                            const dw_kafka_consumer_opts_t *opts, char *errstr,
                                            size_t errstr_size)
{
    dw_kafka_consumer_opts_t defopts;
    if (!opts) {
        dw_kafka_consumer_opts_init(&defopts);
        opts = &defopts;
    }
    char interval[32];
    snprintf(interval, sizeof(interval), "%d", opts->stats_interval_ms);

    dw_kafka_prop_t defaults[DW_KAFKA_PROPS_MAX];
    size_t nd = 0;
    defaults[nd++] = (dw_kafka_prop_t){"auto.offset.reset", "earliest"};
    if (!opts->isolation_level)
        defaults[nd++] = (dw_kafka_prop_t){"isolation.level", "read_committed"};
    if (opts->cooperative)
        defaults[nd++] = (dw_kafka_prop_t){"partition.assignment.strategy", "cooperative-sticky"};
    if (opts->client_id)
        defaults[nd++] = (dw_kafka_prop_t){"client.id", opts->client_id};

    dw_kafka_prop_t essential[DW_KAFKA_PROPS_MAX];
    size_t ne = 0;
    essential[ne++] = (dw_kafka_prop_t){"enable.auto.commit", "false"};
    essential[ne++] = (dw_kafka_prop_t){"enable.auto.offset.store", "false"};
    if (opts->group_id)
        essential[ne++] = (dw_kafka_prop_t){"group.id", opts->group_id};
    if (opts->isolation_level)
        essential[ne++] = (dw_kafka_prop_t){"isolation.level", opts->isolation_level};
    if (opts->stats_cb && opts->stats_interval_ms > 0)
        essential[ne++] = (dw_kafka_prop_t){"statistics.interval.ms", interval};

    rd_kafka_conf_t *kc =
        dw_kafka_conf_build(conf, defaults, nd, essential, ne, errstr, errstr_size);
    if (!kc)
        return NULL;
    /* librdkafka 2.0.2's consumer API (assign, consumer_poll) answers _UNKNOWN_GROUP without one */
    char group[8] = "";
    size_t group_size = sizeof(group);
    rd_kafka_conf_res_t res = rd_kafka_conf_get(kc, "group.id", group, &group_size);
    if ((res != RD_KAFKA_CONF_OK && res != RD_KAFKA_CONF_INVALID) || group_size <= 1) {
        rd_kafka_conf_destroy(kc);
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                "a consumer needs a group: set kafka.group.id or pass one");
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(kc, opts->rebalance_cb ? opts->rebalance_cb
                                                          : dw_kafka_rebalance_cb);
    if (opts->stats_cb)
        rd_kafka_conf_set_stats_cb(kc, opts->stats_cb);
    rd_kafka_conf_set_opaque(kc, opts->opaque);
    return kc;
}

/* rd_kafka_new, which takes kc only when it succeeds: destroy it otherwise. */
static rd_kafka_t *dw_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *kc, char *errstr,
                                size_t errstr_size)
{
    if (!kc)
        return NULL;
    char why[512] = "";
    rd_kafka_t *rk = rd_kafka_new(type, kc, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "could not create Kafka %s: %s",
                type == RD_KAFKA_PRODUCER ? "producer" : "consumer", why);
    }
    return rk;
}

rd_kafka_t *dw_kafka_producer_new(const dw_conf_t *conf, const dw_kafka_producer_opts_t *opts,
                                  char *errstr, size_t errstr_size)
{
    return dw_kafka_new(RD_KAFKA_PRODUCER,
                        dw_kafka_producer_conf_new(conf, opts, errstr, errstr_size), errstr,
                        errstr_size);
}

rd_kafka_t *dw_kafka_consumer_new(const dw_conf_t *conf, const dw_kafka_consumer_opts_t *opts,
                                  char *errstr, size_t errstr_size)
{
    rd_kafka_t *rk = dw_kafka_new(RD_KAFKA_CONSUMER,
                                  dw_kafka_consumer_conf_new(conf, opts, errstr, errstr_size),
                                  errstr, errstr_size);
    if (rk)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

rd_kafka_t *dw_kafka_admin_new(const dw_conf_t *conf, char *errstr, size_t errstr_size)
{
    static const dw_kafka_prop_t essential[] = {{"transactional.id", NULL}};
    return dw_kafka_new(RD_KAFKA_PRODUCER,
                        dw_kafka_conf_build(conf, NULL, 0, essential, 1, errstr, errstr_size),
                        errstr, errstr_size);
}

void dw_kafka_consumer_destroy(rd_kafka_t *rk)
{
    if (!rk)
        return;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk);
    if (err)
        DW_WARN(DW_KAFKA_FAC, "%s: could not close the consumer cleanly: %s", rd_kafka_name(rk),
                rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
}

/* ---------------------------------------------------------------- produce */

dw_err_t dw_kafka_produce(rd_kafka_t *rk, const dw_kafka_msg_t *msg, rd_kafka_headers_t *headers,
                          int block_ms, char *errstr, size_t errstr_size)
{
    dw_err_t ret = DW_OK;
    int64_t deadline = dw_kafka_now_ms() + (block_ms > 0 ? block_ms : 0);
    bool last = false;

    for (;;) {
        rd_kafka_vu_t vus[7];
        size_t n = 0;
        vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vus[n++].u.cstr = msg->topic;
        vus[n].vtype = RD_KAFKA_VTYPE_PARTITION;
        vus[n++].u.i32 = msg->partition;
        vus[n].vtype = RD_KAFKA_VTYPE_KEY;
        vus[n].u.mem.ptr = (void *)msg->key;
        vus[n++].u.mem.size = msg->key_len;
        vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
        vus[n].u.mem.ptr = (void *)msg->value;
        vus[n++].u.mem.size = msg->value_len;
        vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
        vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vus[n++].u.ptr = msg->msg_opaque;
        if (headers) {
            vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
            vus[n++].u.headers = headers;
        }

        rd_kafka_error_t *error = rd_kafka_produceva(rk, vus, n);
        if (!error) {
            headers = NULL; /* librdkafka owns them now */
            break;
        }
        rd_kafka_resp_err_t code = rd_kafka_error_code(error);
        char why[512];
        snprintf(why, sizeof(why), "%s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);

        if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_resp_err_t cause = dw_kafka_cause(rk, code, why, sizeof(why));
            ret = dw_kafka_err_map(cause);
            if (code == RD_KAFKA_RESP_ERR__FATAL)
                ret = ret == DW_ERR_FENCED ? DW_ERR_FENCED : DW_ERR_KAFKA;
            dw_errf(ret, errstr, errstr_size, "could not produce to \"%s\": %s%s", msg->topic,
                    code == RD_KAFKA_RESP_ERR__FATAL ? "fatal error: " : "", why);
            break;
        }
        if (last) {
            ret = dw_errf(DW_ERR_QUEUE_FULL, errstr, errstr_size,
                          "could not produce to \"%s\": the producer queue stayed full for %d ms",
                          msg->topic, block_ms > 0 ? block_ms : 0);
            break;
        }
        int wait = dw_kafka_left(deadline, 100);
        if (wait == 0)
            last = true;
        rd_kafka_poll(rk, wait); /* serve delivery reports: they free queue slots */
    }

    if (headers)
        rd_kafka_headers_destroy(headers);
    return ret;
}

dw_err_t dw_kafka_flush(rd_kafka_t *rk, int timeout_ms, int *remaining, char *errstr,
                        size_t errstr_size)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(rk, timeout_ms);
    int left = rd_kafka_outq_len(rk);
    if (remaining)
        *remaining = left;
    if (err == RD_KAFKA_RESP_ERR__TIMED_OUT || left > 0)
        return dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size,
                       "%d message(s) or request(s) still queued after %d ms", left, timeout_ms);
    if (err)
        return dw_errf(dw_kafka_err_map(err), errstr, errstr_size, "could not flush: %s",
                       rd_kafka_err2str(err));
    return DW_OK;
}

/* ---------------------------------------------------------------- headers */

rd_kafka_headers_t *dw_kafka_headers_new(const char *name, ...)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    va_list ap;
    va_start(ap, name);
    for (const char *n = name; n; n = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (v)
            rd_kafka_header_add(hdrs, n, -1, v, -1);
    }
    va_end(ap);
    return hdrs;
}

rd_kafka_headers_t *dw_kafka_headers_dw(const char *map, const char *source, const char *op,
                                        const char *correlation_id)
{
    return dw_kafka_headers_new(DW_KAFKA_HDR_MAP, map, DW_KAFKA_HDR_SOURCE, source,
                                DW_KAFKA_HDR_OP, op, DW_KAFKA_HDR_CORRELATION_ID, correlation_id,
                                (const char *)NULL);
}

dw_err_t dw_kafka_header_get(const rd_kafka_headers_t *hdrs, const char *name, char *buf,
                             size_t size)
{
    const void *val = NULL;
    size_t len = 0;
    if (size > 0)
        buf[0] = '\0';
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return DW_ERR_NOT_FOUND;
    if (!val)
        len = 0;
    if (len >= size) {
        if (size > 0) {
            memcpy(buf, val, size - 1);
            buf[size - 1] = '\0';
        }
        return DW_ERR_INVALID_ARG;
    }
    if (len > 0)
        memcpy(buf, val, len);
    buf[len] = '\0';
    return DW_OK;
}

/* ---------------------------------------------------------------- admin */

static dw_err_t dw_kafka_metadata(rd_kafka_t *rk, int timeout_ms,
                                  const struct rd_kafka_metadata **md, char *errstr,
                                  size_t errstr_size)
{
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, md, timeout_ms > 0 ? timeout_ms : 1);
    if (err) {
        *md = NULL;
        return dw_errf(dw_kafka_err_map(err), errstr, errstr_size,
                       "could not get the cluster's metadata: %s", rd_kafka_err2str(err));
    }
    return DW_OK;
}

static const struct rd_kafka_metadata_topic *
dw_kafka_md_topic(const struct rd_kafka_metadata *md, const char *name)
{
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0)
            return &md->topics[i];
    return NULL;
}

/* A topic is usable when the metadata knows it and every partition has a leader. */
static bool dw_kafka_md_topic_ready(const struct rd_kafka_metadata_topic *t)
{
    if (!t || t->err || t->partition_cnt == 0)
        return false;
    for (int p = 0; p < t->partition_cnt; p++)
        if (t->partitions[p].err || t->partitions[p].leader < 0)
            return false;
    return true;
}

/* Wait until every name is usable (present) or gone (!present), until deadline. */
static dw_err_t dw_kafka_topics_wait(rd_kafka_t *rk, const char *const *names, size_t count,
                                     bool present, int64_t deadline, char *errstr,
                                     size_t errstr_size)
{
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        const char *pending = NULL;
        dw_err_t err = dw_kafka_metadata(rk, dw_kafka_left(deadline, 5000), &md, errstr,
                                         errstr_size);
        if (err == DW_OK) {
            for (size_t i = 0; i < count && !pending; i++) {
                const struct rd_kafka_metadata_topic *t = dw_kafka_md_topic(md, names[i]);
                if (present ? !dw_kafka_md_topic_ready(t) : t != NULL)
                    pending = names[i];
            }
            rd_kafka_metadata_destroy(md);
            if (!pending)
                return DW_OK;
        } else if (!dw_err_is_retriable(err)) {
            return err;
        }
        if (dw_kafka_left(deadline, 0) == 0) {
            if (!pending)
                return err;
            return dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size,
                           present ? "topic \"%s\" does not show in the metadata yet"
                                   : "topic \"%s\" still shows in the metadata",
                           pending);
        }
        dw_kafka_sleep_ms(dw_kafka_left(deadline, 100));
    }
}

/* Run one admin request whose options were prepared, and wait for its result event (new, the
 * caller destroys it) of type ev_type. NULL on timeout or request error (errstr, *ret). */
static rd_kafka_event_t *dw_kafka_admin_wait(rd_kafka_queue_t *q, int ev_type, int timeout_ms,
                                             const char *what, dw_err_t *ret, char *errstr,
                                             size_t errstr_size)
{
    /* librdkafka's request timeout fires first; the margin covers its bookkeeping */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (!ev) {
        *ret = dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size, "could not %s: no answer within %d ms",
                       what, timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_type(ev) != ev_type || rd_kafka_event_error(ev)) {
        rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
        *ret = dw_errf(err ? dw_kafka_err_map(err) : DW_ERR_INTERNAL, errstr, errstr_size,
                       "could not %s: %s", what,
                       err ? rd_kafka_event_error_string(ev) : "unexpected admin result");
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

dw_err_t dw_kafka_topics_create(rd_kafka_t *rk, dw_kafka_topic_spec_t *specs, size_t count,
                                int timeout_ms, char *errstr, size_t errstr_size)
{
    dw_err_t ret = DW_OK;
    rd_kafka_NewTopic_t **nts = NULL;
    rd_kafka_AdminOptions_t *aopts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    const char **names = NULL;
    size_t nnames = 0;
    char why[512];
    int64_t deadline = dw_kafka_now_ms() + timeout_ms;

    if (errstr && errstr_size > 0)
        errstr[0] = '\0';
    if (count == 0)
        goto done;
    nts = calloc(count, sizeof(*nts));
    names = calloc(count, sizeof(*names));
    if (!nts || !names) {
        ret = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        specs[i].existed = false;
        specs[i].err = DW_OK;
    }
    for (size_t i = 0; i < count; i++) {
        dw_kafka_topic_spec_t *s = &specs[i];
        nts[i] = rd_kafka_NewTopic_new(s->name, s->partitions, s->replication_factor, why,
                                       sizeof(why));
        if (!nts[i]) {
            ret = s->err = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                                   "could not create topic \"%s\": %s", s->name, why);
            goto done;
        }
        for (const char *const *c = s->config; c && c[0]; c += 2) {
            rd_kafka_resp_err_t err =
                c[1] ? rd_kafka_NewTopic_set_config(nts[i], c[0], c[1])
                     : RD_KAFKA_RESP_ERR__INVALID_ARG;
            if (err) {
                ret = s->err = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                                       "could not create topic \"%s\": config %s: %s", s->name,
                                       c[0], c[1] ? rd_kafka_err2str(err) : "no value");
                goto done;
            }
        }
    }

    aopts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_request_timeout(aopts, timeout_ms, why, sizeof(why)) ||
        rd_kafka_AdminOptions_set_operation_timeout(aopts, timeout_ms, why, sizeof(why))) {
        ret = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "could not create topics: %s",
                      why);
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nts, count, aopts, q);
    ev = dw_kafka_admin_wait(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, timeout_ms, "create topics",
                             &ret, errstr, errstr_size);
    if (!ev) {
        for (size_t i = 0; i < count; i++)
            specs[i].err = ret;
        goto done;
    }

    size_t nres = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
    for (size_t i = 0; i < count; i++) {
        dw_kafka_topic_spec_t *s = &specs[i];
        const rd_kafka_topic_result_t *r = NULL;
        for (size_t j = 0; j < nres && !r; j++)
            if (strcmp(rd_kafka_topic_result_name(res[j]), s->name) == 0)
                r = res[j];
        rd_kafka_resp_err_t err = r ? rd_kafka_topic_result_error(r) : RD_KAFKA_RESP_ERR__NOENT;
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            s->existed = true;
            DW_DEBUG(DW_KAFKA_FAC, "topic \"%s\" exists already", s->name);
        } else if (err) {
            const char *msg = r ? rd_kafka_topic_result_error_string(r) : NULL;
            s->err = dw_kafka_err_map(err);
            if (!ret)
                ret = s->err;
            dw_kafka_errappend(errstr, errstr_size, "could not create topic \"%s\": %s", s->name,
                               r ? (msg ? msg : rd_kafka_err2str(err)) : "no result for it");
            continue;
        } else {
            DW_INFO(DW_KAFKA_FAC, "created topic \"%s\" (%d partition(s))", s->name,
                    s->partitions);
        }
        names[nnames++] = s->name;
    }
    if (ret)
        goto done;
    ret = dw_kafka_topics_wait(rk, names, nnames, true, deadline, errstr, errstr_size);

done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (aopts)
        rd_kafka_AdminOptions_destroy(aopts);
    for (size_t i = 0; nts && i < count; i++)
        if (nts[i])
            rd_kafka_NewTopic_destroy(nts[i]);
    free(nts);
    free(names);
    return ret;
}

dw_err_t dw_kafka_topics_delete(rd_kafka_t *rk, const char *const *names, size_t count,
                                int timeout_ms, char *errstr, size_t errstr_size)
{
    dw_err_t ret = DW_OK;
    rd_kafka_DeleteTopic_t **dts = NULL;
    rd_kafka_AdminOptions_t *aopts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    char why[512];
    int64_t deadline = dw_kafka_now_ms() + timeout_ms;

    if (errstr && errstr_size > 0)
        errstr[0] = '\0';
    if (count == 0)
        goto done;
    dts = calloc(count, sizeof(*dts));
    if (!dts) {
        ret = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++)
        dts[i] = rd_kafka_DeleteTopic_new(names[i]);

    aopts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    if (rd_kafka_AdminOptions_set_request_timeout(aopts, timeout_ms, why, sizeof(why)) ||
        rd_kafka_AdminOptions_set_operation_timeout(aopts, timeout_ms, why, sizeof(why))) {
        ret = dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "could not delete topics: %s",
                      why);
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, dts, count, aopts, q);
    ev = dw_kafka_admin_wait(q, RD_KAFKA_EVENT_DELETETOPICS_RESULT, timeout_ms, "delete topics",
                             &ret, errstr, errstr_size);
    if (!ev)
        goto done;

    size_t nres = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &nres);
    for (size_t j = 0; j < nres; j++) {
        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[j]);
        if (!err || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue;
        const char *msg = rd_kafka_topic_result_error_string(res[j]);
        if (!ret)
            ret = dw_kafka_err_map(err);
        dw_kafka_errappend(errstr, errstr_size, "could not delete topic \"%s\": %s",
                           rd_kafka_topic_result_name(res[j]), msg ? msg : rd_kafka_err2str(err));
    }
    if (ret)
        goto done;
    ret = dw_kafka_topics_wait(rk, names, count, false, deadline, errstr, errstr_size);

done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (aopts)
        rd_kafka_AdminOptions_destroy(aopts);
    if (dts) {
        rd_kafka_DeleteTopic_destroy_array(dts, count);
        free(dts);
    }
    return ret;
}

static int dw_kafka_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void dw_kafka_topics_free(char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

dw_err_t dw_kafka_topics_list(rd_kafka_t *rk, const char *prefix, int timeout_ms, char ***names,
                              size_t *count, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    char **out = NULL;
    size_t n = 0;
    *names = NULL;
    *count = 0;

    dw_err_t ret = dw_kafka_metadata(rk, timeout_ms, &md, errstr, errstr_size);
    if (ret)
        goto done;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (md->topic_cnt > 0) {
        out = calloc((size_t)md->topic_cnt, sizeof(*out));
        if (!out) {
            ret = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto done;
        }
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            continue;
        if (plen && strncmp(t->topic, prefix, plen) != 0)
            continue;
        out[n] = strdup(t->topic);
        if (!out[n]) {
            ret = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto done;
        }
        n++;
    }
    if (n > 1)
        qsort(out, n, sizeof(*out), dw_kafka_strcmp);
    if (n == 0) {
        free(out);
        out = NULL;
    }
    *names = out;
    *count = n;
    out = NULL;
    n = 0;

done:
    dw_kafka_topics_free(out, n);
    if (md)
        rd_kafka_metadata_destroy(md);
    return ret;
}

dw_err_t dw_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                   int *partitions, char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    *partitions = 0;
    dw_err_t ret = dw_kafka_metadata(rk, timeout_ms, &md, errstr, errstr_size);
    if (ret)
        return ret;
    const struct rd_kafka_metadata_topic *t = dw_kafka_md_topic(md, topic);
    if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        ret = dw_errf(DW_ERR_NOT_FOUND, errstr, errstr_size, "topic \"%s\" does not exist", topic);
    else if (t->err)
        ret = dw_errf(dw_kafka_err_map(t->err), errstr, errstr_size, "topic \"%s\": %s", topic,
                      rd_kafka_err2str(t->err));
    else
        *partitions = t->partition_cnt;
    rd_kafka_metadata_destroy(md);
    return ret;
}

dw_err_t dw_kafka_wait_ready(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errstr_size)
{
    int64_t deadline = dw_kafka_now_ms() + timeout_ms;
    rd_kafka_resp_err_t err;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        /* all_topics=0 and no topic: brokers only, the cheapest request there is */
        err = rd_kafka_metadata(rk, 0, NULL, &md, dw_kafka_left(deadline, 2000) + 1);
        if (!err) {
            rd_kafka_metadata_destroy(md);
            return DW_OK;
        }
        if (dw_kafka_left(deadline, 0) == 0)
            break;
        dw_kafka_sleep_ms(dw_kafka_left(deadline, 100));
    }
    char servers[512] = "?";
    size_t ssize = sizeof(servers);
    const rd_kafka_conf_t *kc = rd_kafka_conf(rk);
    if (rd_kafka_conf_get(kc, "bootstrap.servers", servers, &ssize) != RD_KAFKA_CONF_OK ||
        !servers[0])
        snprintf(servers, sizeof(servers), "(no bootstrap.servers)");
    return dw_errf(DW_ERR_UNAVAILABLE, errstr, errstr_size,
                   "Kafka at %s did not answer within %d ms: %s", servers, timeout_ms,
                   rd_kafka_err2str(err));
}

/* ---------------------------------------------------------------- transactions */

dw_kafka_txn_action_t dw_kafka_txn_classify(const rd_kafka_error_t *error)
{
    if (!error)
        return DW_KAFKA_TXN_OK;
    if (rd_kafka_error_is_fatal(error))
        return DW_KAFKA_TXN_FATAL;
    if (rd_kafka_error_txn_requires_abort(error))
        return DW_KAFKA_TXN_ABORT;
    if (rd_kafka_error_is_retriable(error))
        return DW_KAFKA_TXN_RETRY;
    /* neither: a wrong call order or argument, a bug the producer will not get over */
    return DW_KAFKA_TXN_FATAL;
}

const char *dw_kafka_txn_action_name(dw_kafka_txn_action_t action)
{
    switch (action) {
    case DW_KAFKA_TXN_OK:
        return "ok";
    case DW_KAFKA_TXN_RETRY:
        return "retry";
    case DW_KAFKA_TXN_ABORT:
        return "abort";
    case DW_KAFKA_TXN_FATAL:
        return "fatal";
    }
    return "unknown";
}

/* Take error (destroyed here), set *action, return the mapped code with errstr filled. */
static dw_err_t dw_kafka_txn_result(rd_kafka_error_t *error, const char *what,
                                    dw_kafka_txn_action_t *action, char *errstr,
                                    size_t errstr_size)
{
    dw_kafka_txn_action_t act = dw_kafka_txn_classify(error);
    dw_err_t ret = DW_OK;
    if (error) {
        ret = dw_errf(dw_kafka_error_map(error), errstr, errstr_size, "could not %s: %s%s", what,
                      rd_kafka_error_is_fatal(error) ? "fatal error: " : "",
                      rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    if (action)
        *action = act;
    return ret;
}

dw_err_t dw_kafka_txn_init(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                           char *errstr, size_t errstr_size)
{
    return dw_kafka_txn_result(rd_kafka_init_transactions(rk, timeout_ms),
                               "initialise transactions", action, errstr, errstr_size);
}

dw_err_t dw_kafka_txn_begin(rd_kafka_t *rk, dw_kafka_txn_action_t *action, char *errstr,
                            size_t errstr_size)
{
    return dw_kafka_txn_result(rd_kafka_begin_transaction(rk), "begin transaction", action,
                               errstr, errstr_size);
}

dw_err_t dw_kafka_txn_send_offsets(rd_kafka_t *rk, rd_kafka_t *consumer,
                                   const rd_kafka_topic_partition_list_t *offsets, int timeout_ms,
                                   dw_kafka_txn_action_t *action, char *errstr,
                                   size_t errstr_size)
{
    rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(consumer);
    if (!cgmd) {
        if (action)
            *action = DW_KAFKA_TXN_FATAL;
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "could not send offsets to transaction: the consumer has no group.id");
    }
    rd_kafka_error_t *error =
        rd_kafka_send_offsets_to_transaction(rk, offsets, cgmd, timeout_ms);
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    return dw_kafka_txn_result(error, "send offsets to transaction", action, errstr, errstr_size);
}

dw_err_t dw_kafka_txn_commit(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                             char *errstr, size_t errstr_size)
{
    return dw_kafka_txn_result(rd_kafka_commit_transaction(rk, timeout_ms), "commit transaction",
                               action, errstr, errstr_size);
}

dw_err_t dw_kafka_txn_abort(rd_kafka_t *rk, int timeout_ms, dw_kafka_txn_action_t *action,
                            char *errstr, size_t errstr_size)
{
    return dw_kafka_txn_result(rd_kafka_abort_transaction(rk, timeout_ms), "abort transaction",
                               action, errstr, errstr_size);
}

/* auto.offset.reset's end for a partition without a committed offset. */
static int64_t dw_kafka_reset_offset(rd_kafka_t *rk)
{
    char val[32];
    size_t size = sizeof(val);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "auto.offset.reset", val, &size) ==
            RD_KAFKA_CONF_OK &&
        (strcmp(val, "latest") == 0 || strcmp(val, "largest") == 0 || strcmp(val, "end") == 0))
        return RD_KAFKA_OFFSET_END;
    return RD_KAFKA_OFFSET_BEGINNING;
}

dw_err_t dw_kafka_consumer_rewind(rd_kafka_t *consumer, int timeout_ms, char *errstr,
                                  size_t errstr_size)
{
    dw_err_t ret = DW_OK;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_error_t *error = NULL;

    rd_kafka_resp_err_t err = rd_kafka_assignment(consumer, &parts);
    if (err) {
        ret = dw_errf(dw_kafka_err_map(err), errstr, errstr_size,
                      "could not get the consumer's assignment: %s", rd_kafka_err2str(err));
        goto done;
    }
    if (parts->cnt == 0)
        goto done;
    err = rd_kafka_committed(consumer, parts, timeout_ms);
    if (err) {
        ret = dw_errf(dw_kafka_err_map(err), errstr, errstr_size,
                      "could not get the committed offsets: %s", rd_kafka_err2str(err));
        goto done;
    }
    int64_t reset = dw_kafka_reset_offset(consumer);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (p->err) {
            ret = dw_errf(dw_kafka_err_map(p->err), errstr, errstr_size,
                          "could not get the committed offset of %s [%d]: %s", p->topic,
                          (int)p->partition, rd_kafka_err2str(p->err));
            goto done;
        }
        if (p->offset < 0)
            p->offset = reset;
    }
    error = rd_kafka_seek_partitions(consumer, parts, timeout_ms);
    if (error) {
        ret = dw_errf(dw_kafka_error_map(error), errstr, errstr_size, "could not rewind: %s",
                      rd_kafka_error_string(error));
        goto done;
    }
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (p->err) {
            ret = dw_errf(dw_kafka_err_map(p->err), errstr, errstr_size,
                          "could not rewind %s [%d]: %s", p->topic, (int)p->partition,
                          rd_kafka_err2str(p->err));
            goto done;
        }
    }

done:
    if (error)
        rd_kafka_error_destroy(error);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    return ret;
}
