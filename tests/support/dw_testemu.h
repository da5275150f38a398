/*
 * dw_testemu: a dw-emulator child process for the integration tests. It starts the emulator
 * (posix_spawn, a free loopback port, a schema of its own in DW_PG_DSN), waits until it answers
 * and fetches a bearer token; sends HTTP requests to it with libcurl; stops it and drops its
 * schema. Depends on libcurl, jansson and libpq only, and never on Criterion: failures come back
 * as -1 or NULL with a message in the caller's errstr, for the test to assert on.
 */
#ifndef DW_TESTEMU_H
#define DW_TESTEMU_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

typedef struct dw_testemu_s dw_testemu_t;

/* One HTTP response. body is NUL-terminated (NULL when empty); headers holds the raw header
 * lines of every response received ("Name: value\r\n", truncated at its size); json is the body
 * parsed (NULL when it is not JSON). Owned by the caller: release with dw_testemu_resp_free. */
typedef struct dw_testemu_resp_s {
    long status; /* HTTP status, 0 when the transfer failed */
    char *body;
    size_t len;
    char headers[8192];
    json_t *json;
} dw_testemu_resp_t;

/* Start dw-emulator --system system (DW_BIN_DIR/dw-emulator) as
 *   dw-emulator --system S --listen 127.0.0.1:PORT --pg $DW_PG_DSN --schema <prefix>_<unique> args...
 * args: extra arguments (NULL-terminated, or NULL), borrowed. env: "K=V" strings (NULL-terminated,
 * or NULL), borrowed, added to the test's own environment (a K given here replaces the test's).
 * The emulator's stdout and stderr go to /tmp/<schema>.log. Waits up to 10 s until the service
 * root answers, then fetches a token (dw_testemu_token_fetch). Returns a new handle, or NULL with
 * errstr filled; on failure the child is stopped and its schema dropped, the log is kept. */
dw_testemu_t *dw_testemu_start(const char *system, const char *schema_prefix,
                               const char *const *args, const char *const *env, char *errstr,
                               size_t errstr_size);

/* SIGTERM, then wait up to 10 s (SIGKILL after that). Returns the exit status (the exit code,
 * or 128 + signal), or -1 when it was not running. */
int dw_testemu_stop(dw_testemu_t *emu);

/* Stop the emulator if it still runs (the status is not looked at), drop its schema, remove its
 * log and free the handle. NULL is a no-op. */
void dw_testemu_destroy(dw_testemu_t *emu);

/* Borrowed views, valid until dw_testemu_destroy. */
int dw_testemu_port(const dw_testemu_t *emu);
const char *dw_testemu_schema(const dw_testemu_t *emu);
/* The service root, "http://127.0.0.1:PORT/api/data/v9.2/" (dv) or ".../data/" (fo). */
const char *dw_testemu_base(const dw_testemu_t *emu);
/* The current bearer token ("" before one was fetched). */
const char *dw_testemu_token(const dw_testemu_t *emu);
const char *dw_testemu_log_path(const dw_testemu_t *emu);

/* Fetch a token with the client credentials grant (client dwfleet, the emulator's default
 * secret) and keep it for the requests that follow. 0, or -1 with errstr filled. */
int dw_testemu_token_fetch(dw_testemu_t *emu, char *errstr, size_t errstr_size);

/* One request. path is relative to the service root unless it starts with '/' (relative to the
 * host) or "http" (a whole URL); spaces in it are sent as %20. headers: "Name: value" strings
 * (NULL-terminated, or NULL), borrowed. Adds "Authorization: Bearer <token>" unless headers
 * name Authorization or no token was fetched, "Content-Type: application/json" when there is a
 * body and headers name no Content-Type, the OData version headers and an empty Expect. r is
 * overwritten (release it with dw_testemu_resp_free). Returns 0, or -1 when the transfer failed
 * (r->status is 0 then). */
int dw_testemu_request(dw_testemu_t *emu, dw_testemu_resp_t *r, const char *method,
                       const char *path, const char *body, const char *const *headers);

/* GET an admin endpoint of the emulator (path such as "/_admin/events") with the admin secret as
 * bearer token. Returns its JSON body (new reference), or NULL when the status is not 200 or the
 * body is not JSON; *status (may be NULL) gets the HTTP status. */
json_t *dw_testemu_admin_get(dw_testemu_t *emu, const char *path, const char *admin_secret,
                             long *status);

/* Point c's body and header callbacks at r (for handles the test drives itself, e.g. through
 * the multi interface). r must outlive the transfer; json is not filled. */
void dw_testemu_resp_capture(CURL *c, dw_testemu_resp_t *r);

/* Free what r owns and zero it. */
void dw_testemu_resp_free(dw_testemu_resp_t *r);

/* The value of response header name (case-insensitive; the last one when repeated), copied into
 * out; "" when absent. Returns out. */
const char *dw_testemu_resp_header(const dw_testemu_resp_t *r, const char *name, char *out,
                                   size_t size);

/* A port on the loopback interface that nothing listens on right now (it may be taken before
 * the caller binds it); 0 on failure. */
int dw_testemu_free_port(void);

/* Rows of an emulated table written straight into its PostgreSQL table (no request, so no data
 * event and no check), for the reference data a test's writes refer to: rows is a JSON array of
 * objects in storage form (column names of the metadata, dataAreaId in lower case). 0, or -1 with
 * errstr filled. */
int dw_testemu_insert_rows(dw_testemu_t *emu, const char *table, const char *rows, char *errstr,
                           size_t errstr_size);

/* The F&O reference rows the tests' customers and vendors name (F&O checks relations): currencies
 * USD, EUR and GBP, and customer and vendor groups 10, 20 and 30 in the companies given
 * (comma-separated, e.g. "usmf,usrt"). 0, or -1 with errstr filled. */
int dw_testemu_fo_refdata(dw_testemu_t *emu, const char *companies, char *errstr,
                          size_t errstr_size);

/* DROP SCHEMA IF EXISTS schema CASCADE in the database at dsn. 0, or -1 with errstr filled
 * (errstr may be NULL). */
int dw_testemu_schema_drop(const char *dsn, const char *schema, char *errstr, size_t errstr_size);

#endif
