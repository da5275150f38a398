/*
 * dw_target: the write side of one Microsoft system as dw-writer sees it. A target takes a batch
 * of write records (upserts and deletes of one or more maps' tables), sends them with the
 * system's bulk APIs and classifies every record's outcome:
 *
 *   Dataverse (dw_target_dv_new): upserts by alternate key with
 *     POST <set>/Microsoft.Dynamics.CRM.UpsertMultiple, one request per entity set and chunk;
 *     when a chunk fails as a whole with a record's fault (4xx), or the table does not support
 *     UpsertMultiple, the chunk is sent again as $batch with Prefer: odata.continue-on-error,
 *     one PATCH per record, so only the failing records fail. Deletes: DELETE by alternate key,
 *     or by row id when the record carries one, inside the same $batch mechanism.
 *   F&O (dw_target_fo_new): $batch with one change set per record (so one failure rolls back no
 *     other). F&O has no upsert: PATCH by the full key when the record is known to exist there
 *     (exists_hint), POST otherwise; a POST answered "already exists" is retried as PATCH and a
 *     PATCH answered 404 as POST in the same call. Deletes: DELETE by the full key.
 *
 * Chunks of one call are sent concurrently (libcurl multi, at most `concurrency` requests in
 * flight). OAuth2 tokens come from the system's dw_auth cache (a 401 invalidates it and the
 * chunk is retried once with a fresh token). TLS is verified unless the configuration says
 * otherwise. Every request carries a correlation id (logged with its outcome); tokens and
 * secrets never reach a log line. Not thread-safe: one target per writer thread.
 */
#ifndef DW_TARGET_H
#define DW_TARGET_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_system.h"

typedef enum {
    DW_WOP_UPSERT = 0,
    DW_WOP_DELETE,
} dw_wop_t;

/* The outcome class of one record. */
typedef enum {
    DW_WCLASS_OK = 0,         /* written (a delete of a record that is not there is OK too) */
    DW_WCLASS_TRANSIENT,      /* 429, 408, 5xx, timeout, connection failure, 401 after refresh
                                 failed: retry later (retry_after_ms when the target said) */
    DW_WCLASS_VALIDATION,     /* the target rejected the record's content (other 4xx) */
    DW_WCLASS_LOOKUP_MISSING, /* a referenced record does not exist (yet): Dataverse 0x80040217
                                 / 404 on an @odata.bind target, F&O "... does not exist" on a
                                 related field */
    DW_WCLASS_SCHEMA_DRIFT,   /* the target does not know a column, or requires one the payload
                                 lacks (Dataverse 0x80048d19 "property ... does not exist",
                                 0x80044331; F&O "The property 'X' does not exist on type") */
    DW_WCLASS_UNKNOWN,        /* anything else (unreadable response, unexpected status) */
    DW_WCLASS__COUNT
} dw_wclass_t;

/* "ok", "transient", "validation", "lookup_missing", "schema_drift", "unknown" (static). */
const char *dw_wclass_name(dw_wclass_t cls);

/* One record to write. The caller owns every input pointer for the call. */
typedef struct dw_wrec_s {
    /* ---- in ---- */
    const char *entity_set;     /* Dataverse entity set ("accounts") / F&O public collection
                                   ("CustomersV3") */
    const char *table;          /* Dataverse logical name ("account", for @odata.type); F&O:
                                   the entity name, used in logs only (may be NULL) */
    dw_wop_t op;
    const json_t *key;          /* the target key object, column -> value (the command's
                                   target_key); may be empty for a delete with record_id */
    const char *record_id;      /* Dataverse row id (GUID) when known, else NULL */
    const json_t *fields;       /* upsert payload (the command's fields); NULL for a delete */
    const char *fields_text;    /* or, when fields is NULL: the payload as the text of a JSON
                                   object (fields_len bytes) that the caller checked (valid, no
                                   duplicate member), copied into the request as it is */
    size_t fields_len;
    bool exists_hint;           /* F&O: the ledger says the record exists (PATCH first) */
    const char *correlation_id; /* sent as x-ms-correlation-request-id; may be NULL */

    /* ---- out (set by dw_target_write for every record) ---- */
    dw_wclass_t cls;
    long status;             /* HTTP status of the record's own response (0: none) */
    char code[32];           /* the target's error code ("0x80040237"), "" when none */
    char message[512];       /* the target's error message (truncated), "" when ok */
    long retry_after_ms;     /* Retry-After of a transient failure, -1 when none */
    char record_id_out[37];  /* Dataverse: the row id written or deleted when known, else "" */
} dw_wrec_t;

typedef struct dw_target_opts_s {
    size_t chunk_max;     /* records per request: UpsertMultiple targets / $batch parts
                             (default 1000; $batch is capped at 1000 parts) */
    int concurrency;      /* requests in flight at most (default 4; can be changed per call) */
    bool upsert_multiple; /* Dataverse: try UpsertMultiple first (default true) */
} dw_target_opts_t;

void dw_target_opts_init(dw_target_opts_t *opts);

typedef struct dw_target_s dw_target_t;

/* New target over sys (borrowed; must outlive the target). NULL with errstr on failure. */
dw_target_t *dw_target_dv_new(dw_system_t *sys, const dw_target_opts_t *opts, char *errstr,
                              size_t errstr_size);
dw_target_t *dw_target_fo_new(dw_system_t *sys, const dw_target_opts_t *opts, char *errstr,
                              size_t errstr_size);
void dw_target_destroy(dw_target_t *t);

/* Requests in flight at most from now on (>= 1): the writer lowers it on 429s and raises it
 * again while requests succeed. */
void dw_target_set_concurrency(dw_target_t *t, int concurrency);

/*
 * Write recs[0..n) and fill every record's out members. Records of the same key must not appear
 * twice in one call (the writer coalesces first). Returns DW_OK when every record has an outcome
 * (which may be a failure class); DW_ERR_INTERRUPTED when dw_signal asked to stop (records not
 * yet sent are TRANSIENT); DW_ERR_NOMEM / DW_ERR_INTERNAL with errstr otherwise. A token that
 * cannot be obtained makes every record TRANSIENT (credentials that are plainly wrong:
 * DW_ERR_CONFIG with errstr, since no record can ever succeed).
 */
dw_err_t dw_target_write(dw_target_t *t, dw_wrec_t *recs, size_t n, char *errstr,
                         size_t errstr_size);

/*
 * The same write, without waiting: several calls can be in flight at once, their requests
 * sharing the target's concurrency (the oldest call's requests start first). recs[0..n) are
 * borrowed until dw_target_call_end and must not be touched before it; records of one key must
 * not be in two calls at once.
 *   dw_target_call_start  checks and prepares the records (a lookup key not yet cached is read
 *                         at once, blocking) and queues the requests. New call; NULL with errstr
 *                         when out of memory.
 *   dw_target_poll        drives the requests of every call, waiting at most timeout_ms for
 *                         activity. When dw_signal asked to stop, every open call ends
 *                         (interrupted).
 *   dw_target_call_done   true when the call has nothing more to do.
 *   dw_target_call_end    fills the outcomes of the records not answered (TRANSIENT), frees the
 *                         call (taken) and returns what dw_target_write would. Ending a call that
 *                         is not done cancels its requests (DW_ERR_INTERRUPTED).
 * dw_target_write is start + poll until done + end. Every call must be ended before
 * dw_target_destroy.
 */
typedef struct dw_target_call_s dw_target_call_t;

dw_target_call_t *dw_target_call_start(dw_target_t *t, dw_wrec_t *recs, size_t n, char *errstr,
                                       size_t errstr_size);
void dw_target_poll(dw_target_t *t, int timeout_ms);
bool dw_target_call_done(const dw_target_call_t *call);
dw_err_t dw_target_call_end(dw_target_call_t *call, char *errstr, size_t errstr_size);

/* Counters since creation (metrics, tests and benchmarks). */
typedef struct dw_target_stats_s {
    unsigned long requests;       /* HTTP requests sent (bulk requests count one) */
    unsigned long throttled;      /* of which answered 429 */
    unsigned long fallbacks;      /* UpsertMultiple chunks resent as $batch */
    unsigned long held;           /* requests not sent because a Retry-After had not elapsed */
    unsigned long records_ok;
    unsigned long records_failed; /* any class but OK */
} dw_target_stats_t;

void dw_target_stats(const dw_target_t *t, dw_target_stats_t *out);

#endif
