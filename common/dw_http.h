/*
 * dw_http: dwfleet's HTTP client helpers on libcurl, shared by capture, the writers and dwctl.
 *
 * One dw_http_req_t wraps one curl easy handle with everything a transfer needs and nothing shared:
 * its own error buffer, request header list, response body and response headers. A request is set
 * up (method, URL, body, headers), performed either blocking (dw_http_req_perform) or through a
 * dw_http_multi_t (many transfers at once, one thread), and its outcome read back: status,
 * body, headers, Retry-After, and a dw_err_t whose retriable property says what to do next.
 * A request may be reused after it finished (setup resets it, keeping the connection).
 *
 * TLS peers are verified unless the caller explicitly turns it off (opts.insecure, logged as a
 * warning once per handle). Every request carries the correlation id header
 * (x-ms-correlation-request-id) when one is set. Handles are not thread-safe; never share one
 * between threads (a multi and its requests belong to one thread).
 */
#ifndef DW_HTTP_H
#define DW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <curl/curl.h>

#include "dw_err.h"

/* The header Dataverse and F&O use to trace a request. */
#define DW_HTTP_CORRELATION_HEADER "x-ms-correlation-request-id"

typedef struct dw_http_opts_s {
    long connect_timeout_ms; /* default 10000 */
    long timeout_ms;         /* whole transfer; default 60000 (Dataverse's own timeout is 2 min) */
    bool insecure;           /* default false: verify the peer and host name */
    const char *ca_file;     /* CA bundle (borrowed, copied), NULL: the system's */
    const char *user_agent;  /* borrowed, copied; NULL: "dwfleet/<version>" */
    size_t max_body;         /* response bodies above this fail (DW_ERR_PARSE); 0: 256 MiB */
} dw_http_opts_t;

/* Fill opts with the defaults above. */
void dw_http_opts_init(dw_http_opts_t *opts);

/* curl_global_init once per process (thread-safe). DW_ERR_INTERNAL when it fails. Called by
 * dw_http_req_new and dw_http_multi_new, so callers rarely need it. */
dw_err_t dw_http_global_init(void);

/* ---- one request ---------------------------------------------------------------------------- */

typedef struct dw_http_req_s dw_http_req_t;

/* New request handle with opts (NULL: defaults; copied). NULL with errstr on failure. */
dw_http_req_t *dw_http_req_new(const dw_http_opts_t *opts, char *errstr, size_t errstr_size);
/* NULL is a no-op. A request still inside a multi must be removed first (dw_http_multi_remove). */
void dw_http_req_destroy(dw_http_req_t *req);

/* Start a new request: method ("GET", "POST", "PATCH", "DELETE", ...), absolute URL, optional
 * body (copied; NULL: none). Clears the previous request's headers, response and error. */
dw_err_t dw_http_req_setup(dw_http_req_t *req, const char *method, const char *url,
                           const char *body, size_t body_len);

/* Add "Name: value" to the request (copied). A NULL value sends "Name:" which removes a header
 * curl would add by itself. DW_ERR_INVALID_ARG when name or value holds CR/LF. */
dw_err_t dw_http_req_header(dw_http_req_t *req, const char *name, const char *value);
/* Authorization: Bearer <token>. The token never reaches a log line. */
dw_err_t dw_http_req_bearer(dw_http_req_t *req, const char *token);
/* x-ms-correlation-request-id: <id>. */
dw_err_t dw_http_req_correlation_id(dw_http_req_t *req, const char *id);
/* Accept/OData-MaxVersion/OData-Version (and Content-Type: application/json when a body is set):
 * the headers every OData call carries. */
dw_err_t dw_http_req_odata_headers(dw_http_req_t *req);

/* Perform the request now (blocking up to the timeouts). Returns the transport outcome:
 * DW_OK when an HTTP response arrived (whatever its status: see dw_http_status_err),
 * DW_ERR_TIMEOUT / DW_ERR_UNAVAILABLE (retriable) for timeouts and connection failures,
 * DW_ERR_INVALID_ARG for a bad URL or TLS verification failure (not retriable), with curl's error
 * buffer in errstr. */
dw_err_t dw_http_req_perform(dw_http_req_t *req, char *errstr, size_t errstr_size);

/* The response: status (0 before one arrived), body (NUL-terminated, borrowed, "" when none),
 * the last value of a response header (case-insensitive name; borrowed; NULL when absent). */
long dw_http_req_status(const dw_http_req_t *req);
const char *dw_http_req_body(const dw_http_req_t *req, size_t *len);
const char *dw_http_req_resp_header(const dw_http_req_t *req, const char *name);
/* The Retry-After of the response in milliseconds (seconds or an HTTP date), -1 when absent or
 * unreadable. */
long dw_http_req_retry_after_ms(const dw_http_req_t *req);
/* curl's error buffer of the last transfer (borrowed; "" when none). */
const char *dw_http_req_errbuf(const dw_http_req_t *req);
/* The underlying easy handle (borrowed) and a caller pointer carried along (for the multi). */
CURL *dw_http_req_easy(dw_http_req_t *req);
void dw_http_req_set_opaque(dw_http_req_t *req, void *opaque);
void *dw_http_req_opaque(const dw_http_req_t *req);

/* ---- pure helpers (no network) -------------------------------------------------------------- */

/* The transport outcome of a finished transfer (as dw_http_req_perform returns it). */
dw_err_t dw_http_curl_err_map(CURLcode code);

/* The class of an HTTP status: DW_OK for 2xx/3xx; retriable DW_ERR_UNAVAILABLE for 429, 502,
 * 503, 504 and DW_ERR_TIMEOUT for 408; DW_ERR_CONFLICT for 409/412; DW_ERR_NOT_FOUND for 404/410;
 * DW_ERR_CONFIG for 401/403 (credentials or permissions); DW_ERR_INVALID_ARG for other 4xx;
 * DW_ERR_UNAVAILABLE for the other 5xx (500 is usually transient on both services). */
dw_err_t dw_http_status_err(long status);

/* Parse a Retry-After value: delta seconds ("120") or an IMF-fixdate relative to now. Returns
 * milliseconds (>= 0) or -1 when unreadable. */
long dw_http_retry_after_parse(const char *value, time_t now);

/* Percent-encode s (every byte but A-Z a-z 0-9 - . _ ~) into out (size bytes, NUL-terminated).
 * form: application/x-www-form-urlencoded (space as '+'). DW_ERR_INVALID_ARG when it does not
 * fit. */
dw_err_t dw_http_urlencode(const char *s, bool form, char *out, size_t size);

/* An OData string literal for a key or a filter: the value between single quotes with every
 * quote doubled, then percent-encoded for a URL path (so no value can end the literal, the key
 * or the path): O'Neil -> 'O''Neil' encoded as %27O%27%27Neil%27. New string (free()), NULL when
 * out of memory. */
char *dw_http_odata_literal(const char *value);

/* A new random (version 4) UUID in out (37 bytes). */
void dw_http_uuid4(char out[37]);

/* ---- many requests at once ------------------------------------------------------------------ */

typedef struct dw_http_multi_s dw_http_multi_t;

/* New multi with at most max_total concurrent connections (0: unlimited). */
dw_http_multi_t *dw_http_multi_new(long max_total, char *errstr, size_t errstr_size);
/* Remove (dw_http_multi_remove) the requests still added first. NULL is a no-op. */
void dw_http_multi_destroy(dw_http_multi_t *multi);

/* Start req (set up beforehand) inside multi. req stays the caller's. */
dw_err_t dw_http_multi_add(dw_http_multi_t *multi, dw_http_req_t *req);
/* Remove a request early (cancels it). */
void dw_http_multi_remove(dw_http_multi_t *multi, dw_http_req_t *req);

/* Called for each finished request: err is the transport outcome (dw_http_curl_err_map); the
 * request has been removed from the multi and may be set up again or destroyed. */
typedef void(dw_http_done_cb)(dw_http_req_t *req, dw_err_t err, void *opaque);

/* Drive transfers, waiting at most timeout_ms for activity, and call done for each finished one.
 * Returns the number of transfers still running. */
int dw_http_multi_run(dw_http_multi_t *multi, int timeout_ms, dw_http_done_cb *done,
                      void *opaque);

#endif
