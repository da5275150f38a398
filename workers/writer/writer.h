/*
 * writer: dw-writer's modules.
 *   writer_command.c  one command message -> a checked wr_cmd_t (schemas/command.schema.json);
 *                     decimal version comparison. Pure.
 *   writer_json.c     a strict JSON check that builds no tree (the command's fields stay text).
 *                     Pure.
 *   writer_queue.c    per-partition queues of commands in offset order and the contiguous
 *                     "done" watermark that is safe to commit. Pure.
 *   writer_batch.c    picking the next batch: ready commands, per-key blocking while a key is
 *                     retried, coalescing of one key's commands (newest source version wins). Pure.
 *   writer_sched.c    backoff with jitter and Retry-After, what a failure class leads to
 *                     (retry, dead letter), the AIMD concurrency controller. Pure.
 *   writer_ledger.c   the ledger decision (echo, stale, unresolved delete, write) and the ledger
 *                     entry after a write (pure), and the PostgreSQL statements (one SELECT and
 *                     one upsert per batch).
 *   writer_ledgerq.c  the ledger thread: the loop hands it the ledger statements and never
 *                     waits for PostgreSQL (jobs run in order on the thread's connection).
 *   writer_stats.c    counters and their periodic log line.
 *   writer_loop.c     the consume -> batch -> write -> ledger -> commit loop, rebalances,
 *                     dead letters, shutdown.
 * docs/writer.md is the operator's view.
 */
#ifndef DW_WRITER_H
#define DW_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dw_config.h"
#include "dw_err.h"
#include "dw_map.h"
#include "dw_pg.h"
#include "dw_target.h"

/* ---------------------------------------------------------------- commands */

/* A parsed command. The strings (and fields_text) are borrowed from root, one block the command
 * owns; target_key and origin_key are the command's own jansson objects. */
typedef struct wr_cmd_s {
    char *root;
    const char *map;
    const char *target; /* "fo" | "dv" */
    dw_wop_t op;
    json_t *target_key;      /* object, may be empty for a delete with record_id */
    const char *record_id;   /* or NULL */
    const char *fields_text; /* the fields object as the command's text (checked: valid JSON,
                                no duplicate member), NUL-terminated; sent as it is */
    size_t fields_len;
    size_t nfields; /* its members */
    const char *source_version;
    const char *content_hash;
    const char *correlation_id;
    const char *origin_hash; /* or NULL: content hash of the record in the origin side's form */
    json_t *origin_key;      /* or NULL: the record's key by origin-side column */
} wr_cmd_t;

/*
 * Read and check the command value (len bytes) read from the command topic of map for target
 * ("fo" | "dv"). DW_OK with cmd filled (wr_cmd_clear it); DW_ERR_PARSE with why (and field, the
 * member it is about, "" when the whole record) when the value is not a valid command;
 * DW_ERR_NOMEM.
 */
dw_err_t wr_cmd_parse(const void *value, size_t len, const char *map, const char *target,
                      wr_cmd_t *cmd, char *why, size_t why_size, char *field, size_t field_size);
void wr_cmd_clear(wr_cmd_t *cmd);

/* A span of a JSON text. */
typedef struct wr_jspan_s {
    const char *p;
    size_t n;
} wr_jspan_t;

/* A top-level member asked for by wr_json_check: name in, value span and member count out. */
typedef struct wr_jmember_s {
    const char *name;
    size_t namelen;
    wr_jspan_t v;    /* p NULL when absent */
    size_t nmembers; /* the members of v when it is an object */
} wr_jmember_t;

/*
 * Check text[0..len) as jansson reads a document with JSON_REJECT_DUPLICATES (an object at the
 * top), without building it. The members named in m[0..n) get their value spans; unknown (may be
 * NULL) gets the name of the first other member as written (an empty name as the two characters
 * "", so unknown is "" only when there is no other member). DW_OK, or DW_ERR_PARSE with why
 * ("line L column C: ...").
 */
dw_err_t wr_json_check(const char *text, size_t len, wr_jmember_t *m, size_t n, char *unknown,
                       size_t unknown_size, char *why, size_t why_size);
/* A checked string value unescaped into out (at least v->n bytes), NUL-terminated, *len its
 * length; false when v is not a string. */
bool wr_json_string(const wr_jspan_t *v, char *out, size_t *len);
/* "object", "array", "string", "boolean", "null", "real" or "integer" (static). */
const char *wr_json_kind(const wr_jspan_t *v);
/* A checked object whose members are strings, numbers or booleans as a new jansson object
 * (*out). DW_ERR_PARSE when a member is something else, DW_ERR_NOMEM. */
dw_err_t wr_json_flat_object(const wr_jspan_t *v, json_t **out);

/* True when key (len bytes) is a usable record key: not empty, valid UTF-8, no NUL byte. */
bool wr_key_valid(const void *key, size_t len);

/* Compare two source versions: decimal strings without leading zeros (up to 39 digits).
 * <0, 0, >0. */
int wr_version_cmp(const char *a, const char *b);

/* ---------------------------------------------------------------- queues and watermarks */

typedef enum {
    WR_ST_PENDING = 0, /* waiting to be written (not before not_before_ms) */
    WR_ST_INFLIGHT,    /* in the batch being written, or its dead letter awaits the broker */
    WR_ST_DONE,        /* written and in the ledger, dropped, coalesced, or dead-lettered */
} wr_state_t;

typedef struct wr_part_s wr_part_t;

/* The last failure of a command that is retried or dead-lettered. */
typedef struct wr_fail_s {
    dw_wclass_t cls;
    long status;
    char code[32];
    char message[512];
    int64_t first_ms; /* wall clock, ms since the epoch */
    int64_t last_ms;
    const char *reason; /* dead letter's dw.error.reason (static), or NULL */
    char field[64];     /* dead letter's dw.error.field, or "" */
} wr_fail_t;

typedef struct wr_item_s {
    wr_part_t *part;
    int64_t offset;
    char *key; /* the message key (canonical key) as a string; new */
    size_t bytes;
    void *msg;  /* the consumed message (the loop's rd_kafka_message_t), freed by the part's
                   free callback */
    bool valid; /* cmd holds a parsed command */
    wr_cmd_t cmd;
    wr_state_t state;
    int attempts;           /* failed writes so far */
    int64_t not_before_ms;  /* monotonic */
    int64_t arrived_ms;     /* monotonic */
    wr_fail_t *fail;        /* new, or NULL */
    struct wr_item_s **sup; /* the commands this one superseded in its batch (coalesced) */
    size_t nsup, supcap;
    void *ticket;          /* the loop's dead-letter delivery in flight, or NULL */
    const char *dlq_class; /* the class of the dead letter being delivered */
} wr_item_t;

typedef void(wr_item_free_cb)(wr_item_t *item, void *opaque);

/* A partition's queue. topic: copied. free_cb releases an item's msg and ticket (called for
 * every item the queue frees). NULL when out of memory. */
wr_part_t *wr_part_new(const char *topic, int32_t partition, wr_item_free_cb *free_cb,
                       void *opaque);
/* Free the queue and every item still in it. */
void wr_part_destroy(wr_part_t *part);
const char *wr_part_topic(const wr_part_t *part);
int32_t wr_part_partition(const wr_part_t *part);
/* Append item (taken; offsets must increase). DW_ERR_NOMEM (the item is not taken). */
dw_err_t wr_part_push(wr_part_t *part, wr_item_t *item);
/* Items in the queue (not yet released) and their bytes. */
size_t wr_part_count(const wr_part_t *part);
size_t wr_part_bytes(const wr_part_t *part);
/* Item i from the head (borrowed). */
wr_item_t *wr_part_at(const wr_part_t *part, size_t i);
/* Release the done items at the head. Returns the offset to commit (the offset after the last
 * released item), or -1 when nothing was ever released. */
int64_t wr_part_watermark(wr_part_t *part);
/* The offset last committed (-1: none), as the loop records it. */
int64_t wr_part_committed(const wr_part_t *part);
void wr_part_set_committed(wr_part_t *part, int64_t offset);
/* Opaque per-partition data of the loop (map configuration). */
void wr_part_set_user(wr_part_t *part, void *user);
void *wr_part_user(const wr_part_t *part);
/* Pausing state, kept by the loop. */
bool wr_part_paused(const wr_part_t *part);
void wr_part_set_paused(wr_part_t *part, bool paused);

/* A new item (zeroed, key copied: klen bytes, may hold no NUL). NULL when out of memory. */
wr_item_t *wr_item_new(int64_t offset, const void *key, size_t klen, size_t bytes);
/* Mark item done and every item it superseded. */
void wr_item_done(wr_item_t *item);
/* Record a superseded item. DW_ERR_NOMEM. */
dw_err_t wr_item_add_sup(wr_item_t *item, wr_item_t *sup);
/* Give the superseded items back (PENDING) and forget them. */
void wr_item_release_sup(wr_item_t *item);
/* Free an item (msg/ticket through free_cb, when not NULL). */
void wr_item_free(wr_item_t *item, wr_item_free_cb *free_cb, void *opaque);

/* ---------------------------------------------------------------- batches */

/* What a partition contributes to batching: its map's batch cap and its map index. */
typedef struct wr_part_batchinfo_s {
    size_t map_index; /* < nmaps */
    size_t map_batch_max;
} wr_part_batchinfo_t;

/*
 * Pick the next batch from parts[0..nparts) (visited from start round robin), at most max
 * groups overall and info[p].map_batch_max per map (map_counts: nmaps zeroed counters, scratch).
 * A key (map, message key) with a PENDING command that is not due yet (backoff) or an INFLIGHT
 * command is held back: none of its commands is picked. The due PENDING commands of one key in
 * one partition form one group: the newest source_version wins (ties: the higher offset), the
 * others are recorded as its superseded ones (wr_item_add_sup). Invalid commands are never
 * picked (the loop dead-letters them at once). Every picked item becomes INFLIGHT; out[] gets the
 * winners. Returns the number of groups, or (size_t)-1 when out of memory (nothing picked).
 */
size_t wr_batch_build(wr_part_t *const *parts, const wr_part_batchinfo_t *info, size_t nparts,
                      size_t start, int64_t now_ms, size_t max, size_t *map_counts, size_t nmaps,
                      wr_item_t **out);

/* Whether a batch should be written now: the ready PENDING commands number at least max, or the
 * oldest of them arrived linger_ms ago or more, or one of them is a retry that is due. Sets
 * *wake_ms to the monotonic time when this may change without new input (INT64_MAX: never). */
bool wr_batch_due(wr_part_t *const *parts, size_t nparts, int64_t now_ms, size_t max,
                  int64_t linger_ms, int64_t *wake_ms);

/* ---------------------------------------------------------------- retries and concurrency */

typedef struct wr_policy_s {
    int64_t initial_ms, max_ms; /* backoff */
    bool fail_when_unavailable; /* on_unavailable: fail */
    long long budget;           /* attempts (fail mode) */
    int64_t budget_ms;          /* ms since the first failure (fail mode) */
    long long lookup_retries;   /* LOOKUP_MISSING retries before the dead letter */
} wr_policy_t;

/* The delay before attempt attempts+1 (attempts >= 1 failures so far): min(max, initial *
 * 2^(attempts-1)), with jitter in [delay/2, delay] from rnd, never below retry_after_ms
 * (>= 0 when the target said). */
int64_t wr_backoff_ms(const wr_policy_t *p, int attempts, long retry_after_ms, uint64_t rnd);

/*
 * What a failed write of class cls leads to, attempts being the failures so far including this
 * one, first_ms/now_ms wall clock. Returns NULL and *delay_ms for a retry, or the dead-letter
 * class (DW_DLQ_CLASS_*, static).
 */
const char *wr_sched_failure(const wr_policy_t *p, dw_wclass_t cls, int attempts, int64_t first_ms,
                             int64_t now_ms, long retry_after_ms, uint64_t rnd, int64_t *delay_ms);

/* AIMD concurrency: halve on a throttled batch, +1 after `increase_after` good batches. */
typedef struct wr_aimd_s {
    int cur, min, max, increase_after, good;
} wr_aimd_t;

void wr_aimd_init(wr_aimd_t *a, int start, int max, int increase_after);
/* Record one batch; returns true when cur changed. */
bool wr_aimd_batch(wr_aimd_t *a, bool throttled);

/* ---------------------------------------------------------------- ledger */

/* One ledger row (dw_ledger) as read; strings new, NULL when SQL NULL. */
typedef struct wr_ledger_row_s {
    bool found;
    char *canonical_key;
    char *hash[2];    /* indexed by dw_map_side_t: fo_hash, dv_hash */
    char *version[2]; /* fo_version, dv_version (numeric as text) */
    json_t *key[2];   /* fo_key, dv_key */
    char *dv_record_id;
} wr_ledger_row_t;

void wr_ledger_row_clear(wr_ledger_row_t *row);

/* The ledger's hash value of a side whose record dwfleet deleted (or saw deleted). */
#define WR_LEDGER_DELETED "deleted"

typedef enum {
    WR_DEC_WRITE = 0,
    WR_DEC_ECHO,       /* the target side already has this content: echo or no-op */
    WR_DEC_STALE,      /* a newer source version of the origin side was applied */
    WR_DEC_UNRESOLVED, /* a delete by record id whose key the ledger does not know */
} wr_dec_kind_t;

typedef struct wr_decision_s {
    wr_dec_kind_t kind;
    const json_t *key;     /* the target key to write (borrowed: the command's or the row's) */
    const char *record_id; /* Dataverse row id to pass (borrowed), or NULL */
    bool exists_hint;      /* F&O: the ledger says the record exists there */
} wr_decision_t;

/* Decide what to do with cmd for target given its ledger row (row->found false: none). */
void wr_decide(const wr_cmd_t *cmd, dw_map_side_t target, const wr_ledger_row_t *row,
               wr_decision_t *d);

/* What one successful write (or delete) puts into the ledger. Strings borrowed; NULL = keep the
 * ledger's value. */
typedef struct wr_ledger_put_s {
    const char *map;
    const char *canonical_key;
    const char *hash[2];
    const char *version[2];
    char *key_text[2]; /* new JSON text, or NULL */
    const char *dv_record_id;
} wr_ledger_put_t;

/* Fill put for a successful write of cmd to target with key (borrowed) and the Dataverse row id
 * the target reported (record_id_out, "" or NULL when none). DW_ERR_NOMEM. */
dw_err_t wr_ledger_entry(const wr_cmd_t *cmd, dw_map_side_t target, const char *canonical_key,
                         const json_t *key, const char *record_id_out, wr_ledger_put_t *put);
/* Fill put for a command dropped as an echo or no-op: the target already has the content, but the
 * origin side's version (and hash and key, when the command carries them) advance, so an older
 * version arriving later is still fenced. DW_ERR_NOMEM. */
dw_err_t wr_ledger_entry_seen(const wr_cmd_t *cmd, dw_map_side_t target, const char *canonical_key,
                              wr_ledger_put_t *put);
void wr_ledger_put_clear(wr_ledger_put_t *put);

/* A PostgreSQL array literal ("{\"a\",NULL}") of vals[0..n) (NULL elements are SQL NULL), to
 * pass as one parameter. New string, NULL when out of memory. */
char *wr_pg_array(const char *const *vals, size_t n);

/* Prepare the ledger's session (after connecting and after every reset): JIT off. */
dw_err_t wr_ledger_session(dw_pg_t *pg, char *errstr, size_t errstr_size);

/* Read the ledger rows of n commands: maps[i], canonical keys cks[i], Dataverse record ids
 * rids[i] (may be NULL: resolved through dw_record_ids to the canonical key first). rows[i] is
 * filled (found or not). One statement. */
dw_err_t wr_ledger_fetch(dw_pg_t *pg, size_t n, const char *const *maps, const char *const *cks,
                         const char *const *rids, wr_ledger_row_t *rows, char *errstr,
                         size_t errstr_size);

/* In one transaction: upsert puts[0..n) into dw_ledger (the last entry of a key wins; NULL
 * members keep the row's value; versions only grow) and the Dataverse row ids of ids (a JSON
 * object map -> array as dw_recordids_upsert takes, may be NULL). */
dw_err_t wr_ledger_store(dw_pg_t *pg, const wr_ledger_put_t *puts, size_t n, const json_t *ids,
                         char *errstr, size_t errstr_size);

/* ---------------------------------------------------------------- the ledger thread */

typedef enum { WR_LQ_FETCH = 0, WR_LQ_STORE } wr_lq_kind_t;

/* One ledger statement handed to the ledger thread. Everything it points to is borrowed and must
 * stay untouched by the loop until the job is over (wr_lq_done). */
typedef struct wr_lq_job_s {
    wr_lq_kind_t kind;
    /* WR_LQ_FETCH: wr_ledger_fetch(n, maps, cks, rids) into rows */
    size_t n;
    const char *const *maps, *const *cks, *const *rids;
    wr_ledger_row_t *rows;
    /* WR_LQ_STORE: wr_ledger_store(puts[0..nput), ids) in one transaction */
    const wr_ledger_put_t *puts;
    size_t nput;
    const json_t *ids;
    /* outcome, valid once done: DW_OK, the statement's error (DW_ERR_PG_CONN: the thread
     * reconnects before its next job), or DW_ERR_INTERRUPTED (never run: the thread was
     * stopped) */
    dw_err_t err;
    char errstr[1024];
    int64_t run_us; /* time the statement(s) took in the thread */
    bool done;
    struct wr_lq_job_s *next; /* the thread's queue */
} wr_lq_job_t;

typedef struct wr_lq_s wr_lq_t;

/* Start the ledger thread on pg (borrowed: the thread is its only user until wr_lq_destroy).
 * NULL with errstr. */
wr_lq_t *wr_lq_new(dw_pg_t *pg, char *errstr, size_t errstr_size);
/* Stop the thread after the job it runs (the queued ones end DW_ERR_INTERRUPTED) and free it. */
void wr_lq_destroy(wr_lq_t *lq);
/* Queue job (borrowed until done); jobs run one at a time in submission order. */
void wr_lq_submit(wr_lq_t *lq, wr_lq_job_t *job);
/* Whether job is over (its outcome may be read). */
bool wr_lq_done(wr_lq_t *lq, const wr_lq_job_t *job);
/* Jobs submitted and not over; jobs over since the start. */
size_t wr_lq_outstanding(wr_lq_t *lq);
uint64_t wr_lq_completed(wr_lq_t *lq);
/* Wait at most timeout_ms until more than `seen` jobs are over (returns at once when none is
 * outstanding). True when some job ended. */
bool wr_lq_wait(wr_lq_t *lq, uint64_t seen, int timeout_ms);

/* ---------------------------------------------------------------- counters */

#define WR_LAT_BUCKETS 32

typedef struct wr_counters_s {
    uint64_t consumed;
    uint64_t written;   /* records the target accepted (ledger committed) */
    uint64_t coalesced; /* superseded by a newer command of the same key in a batch */
    uint64_t echo_dropped;
    uint64_t stale_dropped;
    uint64_t delete_unresolved;
    uint64_t dead_lettered[8]; /* by wr_dlq_class_index */
    uint64_t retries;
    uint64_t throttled; /* records answered 429 */
    uint64_t batches;
    uint64_t batch_sum, batch_max;
    uint64_t ledger_failures;
    uint64_t ledger_jobs;  /* ledger statements run (reads and batch transactions) */
    uint64_t ledger_us;    /* their time in the ledger thread, summed */
    uint64_t loop_wait_us; /* time the loop spent waiting (consumer, HTTP, ledger) */
    uint64_t stage_us[4];  /* batches in flight reading the ledger, writing, storing the
                              ledger, held back by a Retry-After, integrated over time (their
                              mean: / the run's time) */
    uint64_t run_us;       /* the loop's time running */
    uint64_t rebalances;
    uint64_t reloads, reload_failures; /* SIGHUP map reloads done, and refused (old maps kept) */
    uint64_t lat_hist[WR_LAT_BUCKETS]; /* write call latency, log2 us buckets */
    uint64_t lat_count, lat_max_us;
    uint64_t pending;     /* gauge: commands held */
    uint64_t pending_max; /* the most commands held at once */
    int concurrency;      /* gauge */
} wr_counters_t;

/* "poison", "validation", "lookup_missing", "schema_drift", "unknown", "unavailable",
 * "unknown_map", other -> 7. */
size_t wr_dlq_class_index(const char *cls);
uint64_t wr_counters_dead_lettered(const wr_counters_t *c);
void wr_counters_latency(wr_counters_t *c, uint64_t us);
uint64_t wr_counters_latency_quantile(const wr_counters_t *c, double q);
void wr_counters_format(const wr_counters_t *c, char *buf, size_t size);

/* ---------------------------------------------------------------- the loop */

extern const dw_conf_def_t wr_conf_defs[];

typedef struct wr_loop_s wr_loop_t;

/* Load the maps, connect PostgreSQL (migrations applied), create the target, the consumer and
 * the producer, and subscribe. target: "dv" | "fo". conf: borrowed, must outlive the loop; when
 * kafka.queued.max.messages.kbytes is not set, it is set from writer.prefetch_kbytes after the
 * producer was made (a consumer property). NULL with errstr; *exit_code 2 for configuration
 * problems, 1 otherwise. */
wr_loop_t *wr_loop_new(dw_conf_t *conf, const char *target, int *exit_code, char *errstr,
                       size_t errstr_size);
/* Run until stop is requested: DW_OK after a clean shutdown, or the fatal error. */
dw_err_t wr_loop_run(wr_loop_t *loop, char *errstr, size_t errstr_size);
const wr_counters_t *wr_loop_counters(const wr_loop_t *loop);
void wr_loop_destroy(wr_loop_t *loop);

#endif
