/*
 * dw_testwriter: a dw-writer child process for the integration tests, and what they read back
 * about it: the writer started against an emulator (dw_testemu) with the tests' quick settings,
 * stopped (SIGTERM, then SIGKILL) with its log checked for sanitizer reports, its counters lines,
 * the consumer group's committed offsets, the dead letters it produced (with their dw.error.*
 * headers) and the ledger rows of a map. Never depends on Criterion: failures come back as -1
 * (or NULL) with a message in the caller's errstr, for the test to assert on.
 */
#ifndef DW_TESTWRITER_H
#define DW_TESTWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dw_testemu.h"

typedef struct dw_testwriter_s {
    pid_t pid;          /* -1 when not running */
    char log[400];      /* the writer's stdout and stderr (appended) */
    char maps_dir[300]; /* maps.dir */
    char group[200];    /* writer.group_id */
    char maps[200];     /* writer.maps: the maps served (comma-separated) */
} dw_testwriter_t;

/* Fill w (not running) with its log path, maps folder, group and served maps (borrowed). */
void dw_testwriter_init(dw_testwriter_t *w, const char *log, const char *maps_dir,
                        const char *group, const char *maps);

/* Start dw-writer --target target (DW_BIN_DIR/dw-writer) against emulator e, with the tests'
 * settings: client credentials of the emulator, maps.dir / maps.metadata_dir, writer.group_id,
 * writer.maps, instance it-1, batch_linger_ms 20, stats_interval_ms 300, commit_interval_ms 200,
 * retry_initial_ms 100, retry_max_ms 1000, create_topics false, session timeout 6 s, log level
 * info; then extra (NULL-terminated, or NULL; "-X", "k=v" pairs override the settings above).
 * The test's environment is passed on. 0, or -1 with errstr filled. */
int dw_testwriter_start(dw_testwriter_t *w, const char *target, dw_testemu_t *e,
                        const char *const *extra, char *errstr, size_t errstr_size);

/* Whether the writer still runs (it did not exit). */
bool dw_testwriter_running(dw_testwriter_t *w);

/* SIGTERM, wait up to timeout_ms (then SIGKILL). Returns the exit status (the exit code, or
 * 128 + signal), -1 when it was not running. *sanitizer (may be NULL): the log holds an ASan /
 * UBSan report. DW_WRITER_TEST_LOG=1 in the environment prints the log's tail to stderr. */
int dw_testwriter_stop(dw_testwriter_t *w, int timeout_ms, bool *sanitizer);

/* SIGKILL and reap (no-op when not running). */
void dw_testwriter_kill(dw_testwriter_t *w);

/* The log contains needle. */
bool dw_testwriter_log_has(const dw_testwriter_t *w, const char *needle);

/* The value of counter name in the writer's last counters line (" name=V"), -1 when none. */
long dw_testwriter_log_counter(const dw_testwriter_t *w, const char *name);

/* The last max bytes of the log (malloc'd, "" when none; free it). */
char *dw_testwriter_log_tail(const dw_testwriter_t *w, size_t max);

/* The committed offset of group on partition 0 of topic, or with partitions > 1 the sum over
 * partitions 0..partitions-1 (those without one count 0); -1 when it cannot be read or partition
 * 0 has none (partitions == 1). */
int64_t dw_testwriter_committed(const char *group, const char *topic, int partitions);

/* Poll dw_testwriter_committed until it equals want (at most ms). true when it did; *last (may
 * be NULL) gets the last value read. */
bool dw_testwriter_wait_committed(const char *group, const char *topic, int partitions,
                                  int64_t want, int ms, int64_t *last);

/* A dead letter: its key, the dw.error.* headers the tests look at, the value (malloc'd). */
typedef struct dw_testwriter_dl_s {
    char key[64];
    char cls[32], stage[16], status[8], offset[24], attempts[16], instance[64];
    char *value;
} dw_testwriter_dl_t;

/* Read dead letters of dlq (partition 0, from its beginning, read_committed) until want were
 * read, max is reached or ms passed. Returns how many were read into out. */
size_t dw_testwriter_read_dlq(const char *dlq, dw_testwriter_dl_t *out, size_t max, size_t want,
                              int ms);
void dw_testwriter_dl_free(dw_testwriter_dl_t *d, size_t n);

/* Rows of dw_ledger for map (-1 on failure). */
long dw_testwriter_ledger_rows(const char *map);

/* The ledger's column (e.g. "dv_version", "fo_hash") of map and canonical key ck, as text, into
 * out ("" when the row or value is absent). Returns out. column must be a plain identifier. */
const char *dw_testwriter_ledger_get(const char *map, const char *ck, const char *column, char *out,
                                     size_t size);

/* Delete the dw_ledger and dw_record_ids rows of map (best effort). */
void dw_testwriter_ledger_clear(const char *map);

/* ---- the currencies the writer tests write, read back from an emulator ----
 * system: "dv" (transactioncurrencies) or "fo" (Currencies). */

/* How many currencies carry symbol sym; -1 when the request fails. */
long dw_testwriter_currency_count(dw_testemu_t *emu, const char *system, const char *sym);

/* Wait up to ms until dw_testwriter_currency_count is want; the last count into *last (may be
 * NULL). */
bool dw_testwriter_currency_wait(dw_testemu_t *emu, const char *system, const char *sym, long want,
                                 int ms, long *last);

/* The name of currency code (currencyname / Name) into out, "" when absent; returns out. */
const char *dw_testwriter_currency_name(dw_testemu_t *emu, const char *system, const char *code,
                                        char *out, size_t size);

#endif
