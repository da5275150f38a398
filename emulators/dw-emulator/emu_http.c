/*
 * emu_http: libmicrohttpd daemon, per-request body buffer with a size limit, response helpers
 * and the OData error body shape {"error":{"code":"0x...","message":"..."}} (Web API error codes,
 * learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors).
 */
#include "emu_http.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "dw_log.h"
#include "dw_mapper.h"

struct emu_http_s {
    struct MHD_Daemon *daemon;
    size_t max_body;
    emu_http_handler_fn *handler;
    void *opaque;
};

typedef struct {
    char *buf;
    size_t len, cap;
    bool too_large;
} emu_conn_state_t;

const char *emu_req_header(const emu_req_t *req, const char *name)
{
    if (!req->conn) {
        for (size_t i = 0; i < req->nhdrs; i++)
            if (strcasecmp(req->hdr_names[i], name) == 0)
                return req->hdr_values[i];
        return NULL;
    }
    return MHD_lookup_connection_value((struct MHD_Connection *)req->conn, MHD_HEADER_KIND, name);
}

void emu_resp_header(emu_resp_t *resp, const char *name, const char *value)
{
    if (resp->nheaders >= EMU_HTTP_MAX_HEADERS)
        return;
    resp->hname[resp->nheaders] = strdup(name);
    resp->hvalue[resp->nheaders] = strdup(value);
    resp->nheaders++;
}

void emu_resp_reset(emu_resp_t *resp)
{
    free(resp->body);
    for (int i = 0; i < resp->nheaders; i++) {
        free(resp->hname[i]);
        free(resp->hvalue[i]);
    }
    memset(resp, 0, sizeof(*resp));
}

static void resp_set_body(emu_resp_t *resp, unsigned status, char *body, size_t len,
                          const char *ctype)
{
    free(resp->body);
    resp->body = body;
    resp->body_len = len;
    resp->status = status;
    for (int i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->hname[i], "Content-Type") == 0) {
            free(resp->hvalue[i]);
            resp->hvalue[i] = strdup(ctype);
            return;
        }
    }
    emu_resp_header(resp, "Content-Type", ctype);
}

void emu_resp_json(emu_resp_t *resp, unsigned status, json_t *j)
{
    char *text = j ? dw_mapper_dumps(j, 0, NULL) : NULL;
    json_decref(j);
    if (!text) {
        text = strdup("{\"error\":{\"code\":\"0x80040216\",\"message\":\"out of memory\"}}");
        status = 500;
    }
    resp_set_body(resp, status, text, text ? strlen(text) : 0,
                  "application/json; odata.metadata=minimal");
}

void emu_resp_raw(emu_resp_t *resp, unsigned status, const char *content_type, const char *body,
                  size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, body, len);
        copy[len] = '\0';
    }
    resp_set_body(resp, status, copy, copy ? len : 0, content_type);
}

void emu_resp_error(emu_resp_t *resp, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emu_resp_json(resp, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    emu_req_t *req = cls;
    if (req->nargs >= EMU_HTTP_MAX_ARGS) {
        req->too_many_args = true;
        return MHD_NO;
    }
    req->arg_names[req->nargs] = key;
    req->arg_values[req->nargs] = value ? value : "";
    req->nargs++;
    return MHD_YES;
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, emu_resp_t *resp)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp->body_len, resp->body ? resp->body : (void *)"", MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    bool has_ver = false;
    for (int i = 0; i < resp->nheaders; i++) {
        MHD_add_response_header(r, resp->hname[i], resp->hvalue[i]);
        if (strcasecmp(resp->hname[i], "OData-Version") == 0)
            has_ver = true;
    }
    if (!has_ver)
        MHD_add_response_header(r, "OData-Version", "4.0");
    enum MHD_Result ret = MHD_queue_response(conn, resp->status ? resp->status : 500, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    emu_http_t *http = cls;
    emu_conn_state_t *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (!st)
            return MHD_NO;
        *con_cls = st;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > http->max_body)
            st->too_large = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!st->too_large) {
            if (st->len + *upload_data_size > http->max_body) {
                st->too_large = true;
                free(st->buf);
                st->buf = NULL;
                st->len = st->cap = 0;
            } else {
                if (st->len + *upload_data_size + 1 > st->cap) {
                    size_t cap = st->cap ? st->cap : 4096;
                    while (cap < st->len + *upload_data_size + 1)
                        cap *= 2;
                    char *nb = realloc(st->buf, cap);
                    if (!nb)
                        return MHD_NO;
                    st->buf = nb;
                    st->cap = cap;
                }
                memcpy(st->buf + st->len, upload_data, *upload_data_size);
                st->len += *upload_data_size;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    emu_resp_t resp;
    memset(&resp, 0, sizeof(resp));
    if (st->too_large) {
        emu_resp_error(&resp, 413, "0x80040216",
                       "Request entity too large: the body exceeds %zu bytes", http->max_body);
        emu_resp_header(&resp, "Connection", "close");
    } else {
        emu_req_t req;
        memset(&req, 0, sizeof(req));
        req.conn = conn;
        req.method = method;
        req.path = url;
        if (!st->buf)
            st->buf = calloc(1, 1);
        else
            st->buf[st->len] = '\0';
        req.body = st->buf;
        req.body_len = st->len;
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &req);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr,
                      req.client_ip, sizeof(req.client_ip));
        if (req.too_many_args)
            emu_resp_error(&resp, 400, "0x80060888", "Too many query options");
        else
            http->handler(http->opaque, &req, &resp);
    }
    enum MHD_Result ret = send_resp(conn, &resp);
    emu_resp_reset(&resp);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    emu_conn_state_t *st = *con_cls;
    if (st) {
        free(st->buf);
        free(st);
    }
    *con_cls = NULL;
}

dw_err_t emu_http_parse_listen(const char *listen, char *host, size_t host_size, int *port,
                               char *errstr, size_t errstr_size)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen)
        return dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                       "listen address '%s' is not HOST:PORT", listen);
    size_t hl = (size_t)(colon - listen);
    if (listen[0] == '[' && hl >= 2 && listen[hl - 1] == ']') {
        listen++;
        hl -= 2;
    }
    if (hl + 1 > host_size)
        return dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "listen host too long");
    memcpy(host, listen, hl);
    host[hl] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535)
        return dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "listen port '%s' is not 1..65535",
                       colon + 1);
    *port = (int)p;
    return DW_OK;
}

emu_http_t *emu_http_start(const char *host, int port, size_t max_body,
                           emu_http_handler_fn *handler, void *opaque, char *errstr,
                           size_t errstr_size)
{
    emu_http_t *http = calloc(1, sizeof(*http));
    if (!http) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    http->max_body = max_body;
    http->handler = handler;
    http->opaque = opaque;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (strcmp(h, "0.0.0.0") != 0 && strcmp(h, "*") != 0 && inet_pton(AF_INET, h, &sa.sin_addr) != 1) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "listen host '%s' is not an IPv4 address", host);
        free(http);
        return NULL;
    }
    http->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        (uint16_t)port, NULL, NULL, on_request, http, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, http, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)120, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1, MHD_OPTION_END);
    if (!http->daemon) {
        dw_errf(DW_ERR_UNAVAILABLE, errstr, errstr_size, "could not listen on %s:%d", host, port);
        free(http);
        return NULL;
    }
    return http;
}

void emu_http_stop(emu_http_t *http)
{
    if (!http)
        return;
    if (http->daemon)
        MHD_stop_daemon(http->daemon);
    free(http);
}
