/*
 * dw_dlq: the dead-letter record every stage writes to dw.<map>.dlq (dw._unknown.dlq when no map
 * claims the record): the original message unchanged (key, value, headers) plus the dw.error.*
 * headers below. The names are a contract shared by dw-transform, dw-writer and dwctl dlq; their
 * meaning is in docs/dead-letters.md.
 */
#ifndef DW_DLQ_H
#define DW_DLQ_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dw_err.h"

#define DW_DLQ_HDR_PREFIX        "dw.error."
#define DW_DLQ_HDR_CLASS         "dw.error.class"  /* poison | mapping | unknown_map | ... */
#define DW_DLQ_HDR_REASON        "dw.error.reason" /* machine code: missing_key, invalid_envelope */
#define DW_DLQ_HDR_FIELD         "dw.error.field"  /* envelope member or source column */
#define DW_DLQ_HDR_MESSAGE       "dw.error.message" /* human text, never record data */
#define DW_DLQ_HDR_STAGE         "dw.error.stage"   /* capture | transform | writer */
#define DW_DLQ_HDR_ORIGIN_TOPIC  "dw.error.origin.topic"
#define DW_DLQ_HDR_ORIGIN_PART   "dw.error.origin.partition"
#define DW_DLQ_HDR_ORIGIN_OFFSET "dw.error.origin.offset"
#define DW_DLQ_HDR_FIRST_FAILURE "dw.error.first_failure_ts" /* RFC 3339 UTC, milliseconds */
#define DW_DLQ_HDR_LAST_FAILURE  "dw.error.last_failure_ts"
#define DW_DLQ_HDR_ATTEMPTS      "dw.error.attempts"    /* decimal */
#define DW_DLQ_HDR_HTTP_STATUS   "dw.error.http_status" /* writer */
#define DW_DLQ_HDR_TARGET_CODE   "dw.error.target_code" /* writer: the target's error code */
#define DW_DLQ_HDR_INSTANCE      "dw.error.instance"    /* the worker instance that wrote it */

/* Classes (DW_DLQ_HDR_CLASS values). */
#define DW_DLQ_CLASS_POISON      "poison"       /* unreadable input: not JSON, invalid envelope */
#define DW_DLQ_CLASS_MAPPING     "mapping"      /* the map cannot map the record */
#define DW_DLQ_CLASS_UNKNOWN_MAP "unknown_map"  /* no loaded map of that name */
#define DW_DLQ_CLASS_VALIDATION  "validation"   /* the target rejected the record (4xx) */
#define DW_DLQ_CLASS_SCHEMA      "schema_drift" /* unknown or required column at the target */
#define DW_DLQ_CLASS_UNAVAILABLE "unavailable"  /* retry budget spent (on_unavailable: fail) */
#define DW_DLQ_CLASS_LOOKUP_MISSING "lookup_missing" /* a referenced record never appeared */
#define DW_DLQ_CLASS_UNKNOWN     "unknown"      /* the target's answer could not be classified */

/* The map name of dwfleet's dead-letter topic for records no map claims: dw._unknown.dlq. */
#define DW_DLQ_UNKNOWN_MAP "_unknown"

/* What one failure says. Every string is borrowed for the call; NULL ones are left out. */
typedef struct dw_dlq_info_s {
    const char *cls;
    const char *reason;
    const char *field;
    const char *message;
    const char *stage;
    const char *origin_topic;
    int32_t origin_partition;
    int64_t origin_offset;
    int64_t now_ms; /* the failure time, ms since the epoch; 0: now */
    const char *instance;
    int http_status; /* 0: none */
    const char *target_code;
    int attempts;     /* this stage's attempts (writer retries); 0: one */
    int64_t first_ms; /* this stage's first failure, ms since the epoch; 0: now_ms */
} dw_dlq_info_t;

/* Format ms since the epoch as RFC 3339 UTC with milliseconds ("2024-03-01T10:00:00.125Z").
 * buf: at least 32 bytes. */
void dw_dlq_format_ts(int64_t ms, char *buf, size_t size);

/*
 * The headers of a dead letter: a copy of orig (borrowed, may be NULL) without its dw.error.*
 * headers, then the dw.error.* headers of info. A record that failed before (orig carries
 * dw.error.first_failure_ts and dw.error.attempts: a replay that failed again) keeps its first
 * failure time and counts info->attempts (at least one) more; else attempts is info->attempts
 * (at least 1) and the first failure info->first_ms (when set). New headers (the produce call
 * takes them), or NULL when out of memory.
 */
rd_kafka_headers_t *dw_dlq_headers(const rd_kafka_headers_t *orig, const dw_dlq_info_t *info);

#endif
