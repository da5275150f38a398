/*
 * emu_http: the libmicrohttpd glue of the emulators. Accumulates each request body up to a limit
 * (a larger body is answered 413 without being buffered), collects query arguments and headers,
 * calls one handler per complete request and sends the response it filled. One thread per
 * connection, so a handler may block (PostgreSQL, injected latency).
 */
#ifndef EMU_HTTP_H
#define EMU_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"

#define EMU_HTTP_MAX_HEADERS 16
#define EMU_HTTP_MAX_ARGS    64

typedef struct emu_req_s {
    void *conn;          /* struct MHD_Connection * (borrowed) */
    const char *method;  /* borrowed */
    const char *path;    /* percent-decoded path, borrowed */
    char *body;          /* NUL-terminated (owned by the glue) */
    size_t body_len;
    const char *arg_names[EMU_HTTP_MAX_ARGS];
    const char *arg_values[EMU_HTTP_MAX_ARGS];
    size_t nargs;
    bool too_many_args;
    char client[128];    /* the authenticated client id ("" before auth) */
    char client_ip[64];
    /* a $batch sub-request (conn NULL): its headers, borrowed */
    char *const *hdr_names;
    char *const *hdr_values;
    size_t nhdrs;
    /* non-NULL: run inside this open write transaction (a $batch change set; a dw_pg_t *) and
     * neither begin, commit nor roll back: the batch executor does */
    void *txn;
} emu_req_t;

typedef struct emu_resp_s {
    unsigned status;
    char *body; /* owned */
    size_t body_len;
    char *hname[EMU_HTTP_MAX_HEADERS];
    char *hvalue[EMU_HTTP_MAX_HEADERS];
    int nheaders;
} emu_resp_t;

/* The value of a request header (case-insensitive name), borrowed; NULL when absent. */
const char *emu_req_header(const emu_req_t *req, const char *name);

/* Add a response header (copied). */
void emu_resp_header(emu_resp_t *resp, const char *name, const char *value);
/* Set a JSON body (steals j) with Content-Type application/json; odata.metadata=minimal. */
void emu_resp_json(emu_resp_t *resp, unsigned status, json_t *j);
/* Set a raw body (copied) with the given content type. */
void emu_resp_raw(emu_resp_t *resp, unsigned status, const char *content_type, const char *body,
                  size_t len);
/* The OData error body {"error":{"code":"...","message":"..."}}. */
void emu_resp_error(emu_resp_t *resp, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Forget body and headers (keeps nothing). */
void emu_resp_reset(emu_resp_t *resp);

typedef void(emu_http_handler_fn)(void *opaque, emu_req_t *req, emu_resp_t *resp);

typedef struct emu_http_s emu_http_t;

/* Listen on host:port (port 0 is not allowed). max_body: bytes accepted in one request body.
 * handler/opaque: borrowed. NULL with errstr on failure. */
emu_http_t *emu_http_start(const char *host, int port, size_t max_body,
                           emu_http_handler_fn *handler, void *opaque, char *errstr,
                           size_t errstr_size);
void emu_http_stop(emu_http_t *http);

/* Split "host:port" (IPv4 or [v6]) into host and port. */
dw_err_t emu_http_parse_listen(const char *listen, char *host, size_t host_size, int *port,
                               char *errstr, size_t errstr_size);

#endif
