/*
 * emu_batch: OData $batch for both emulated systems (OData 4.0 multipart/mixed format, as the
 * Dataverse Web API documents it in "Execute batch operations using the Web API" and F&O OData
 * serves it): a parser of the multipart body (pure, no I/O: the unit tests and the libFuzzer target
 * drive it) and an executor that runs every sub-request through the system's normal request
 * handler, so a request inside a batch behaves exactly like the same request sent alone.
 *   - requests outside change sets run one by one;
 *   - a change set runs inside one write transaction opened by the system (ops->begin); the first
 *     failing request rolls the whole change set back and is the only response of that change set;
 *   - "$<Content-ID>" at the start of a URL or as a whole JSON string in a body designates the
 *     record created by that request of the same change set (its OData-EntityId);
 *   - processing stops at the first failure unless the batch asked Prefer: odata.continue-on-error.
 */
#ifndef EMU_BATCH_H
#define EMU_BATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "dw_err.h"
#include "emu_http.h"

#define EMU_BATCH_MAX_REQUESTS   1000 /* Dataverse: "up to 1000 individual requests" */
#define EMU_BATCH_MAX_PART_HEADERS 32

typedef struct {
    char *method;       /* "GET", "POST", ... */
    char *url;          /* as written in the request line (absolute, /path or relative) */
    char *content_id;   /* NULL when the part has none */
    char *hname[EMU_BATCH_MAX_PART_HEADERS]; /* headers of the inner HTTP request */
    char *hvalue[EMU_BATCH_MAX_PART_HEADERS];
    size_t nheaders;
    char *body;         /* NUL-terminated, may be empty */
    size_t body_len;
    int changeset;      /* -1 outside a change set, else the index of its change set */
} emu_batch_part_t;

typedef struct {
    emu_batch_part_t *parts; /* in request order */
    size_t nparts;
    size_t nchangesets;
} emu_batch_t;

/* Parse a $batch body. content_type: the request's Content-Type (multipart/mixed; boundary=...).
 * max_requests: the most sub-requests accepted (change set members included).
 * out: caller's, cleared first; free with emu_batch_clear (also after an error).
 * DW_ERR_PARSE: malformed multipart (message fit for an OData error body);
 * DW_ERR_INVALID_ARG: more than max_requests requests; DW_ERR_NOMEM. */
dw_err_t emu_batch_parse(const char *content_type, const char *body, size_t len,
                         size_t max_requests, emu_batch_t *out, char *errstr, size_t errstr_size);
void emu_batch_clear(emu_batch_t *b);

/* What the executor needs from the system. txn: the open write transaction of a change set
 * (a dw_pg_t, passed to sub-requests as emu_req_t.txn). */
typedef struct {
    /* Path of the service root with a trailing '/', e.g. "/api/data/v9.2/" or "/data/";
     * relative sub-request URLs are resolved against it. */
    const char *root_path;
    /* Open a change set's transaction; false with err_resp filled when it cannot be opened. */
    bool (*begin)(void *opaque, void **txn, emu_resp_t *err_resp);
    /* Commit it (false with err_resp filled on failure: the change set then failed). */
    bool (*commit)(void *opaque, void *txn, emu_resp_t *err_resp);
    void (*rollback)(void *opaque, void *txn);
    /* Handle one sub-request exactly like a request of its own (same code path). */
    void (*dispatch)(void *opaque, emu_req_t *req, emu_resp_t *resp);
} emu_batch_ops_t;

/* Run a parsed batch and fill resp with the multipart/mixed batch response (200, or 400 when it
 * stopped at a failure). outer: the $batch request (its client id is inherited). */
void emu_batch_execute(const emu_batch_t *b, const emu_batch_ops_t *ops, void *opaque,
                       const emu_req_t *outer, bool continue_on_error, emu_resp_t *resp);

/* Parse and run in one call: the whole $batch endpoint. Malformed multipart → 400 with code
 * err_code; too many requests → 400. */
void emu_batch_handle(const emu_batch_ops_t *ops, void *opaque, const emu_req_t *req,
                      size_t max_requests, const char *err_code, emu_resp_t *resp);

/* The reason phrase of an HTTP status ("No Content"). */
const char *emu_http_reason(unsigned status);

#endif
