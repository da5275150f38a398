/*
 * dw_http: libcurl request handles (own error buffer, headers, response), a multi driver, and
 * the pure helpers every HTTP caller needs (status classes, Retry-After, URL and OData literal
 * encoding, UUIDs). Contracts in dw_http.h.
 */
#include "dw_http.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dw_log.h"

#define DW_HTTP_FAC "http"
#define DW_HTTP_MAX_BODY_DEFAULT ((size_t)256 * 1024 * 1024)
#define DW_HTTP_RESP_HEADERS_MAX 64

struct dw_http_req_s {
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;
    char *req_body;
    bool has_body;
    char *body; /* response */
    size_t len, cap;
    bool overflow;
    char *resp_headers[DW_HTTP_RESP_HEADERS_MAX]; /* "Name: value" without CRLF */
    size_t nresp_headers;
    long status;
    dw_http_opts_t opts;
    char *ca_file, *user_agent;
    void *opaque;
};

struct dw_http_multi_s {
    CURLM *multi;
};

static pthread_once_t dw_http_once = PTHREAD_ONCE_INIT;
static CURLcode dw_http_init_rc = CURLE_OK;

static void dw_http_global_init_once(void)
{
    dw_http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

dw_err_t dw_http_global_init(void)
{
    pthread_once(&dw_http_once, dw_http_global_init_once);
    return dw_http_init_rc == CURLE_OK ? DW_OK : DW_ERR_INTERNAL;
}

void dw_http_opts_init(dw_http_opts_t *opts)
{
    *opts = (dw_http_opts_t){
        .connect_timeout_ms = 10000,
        .timeout_ms = 60000,
        .insecure = false,
        .max_body = DW_HTTP_MAX_BODY_DEFAULT,
    };
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static size_t dw_http_on_body(char *p, size_t size, size_t n, void *ud)
{
    dw_http_req_t *req = ud;
    size_t add = size * n;
    if (req->len + add > req->opts.max_body) {
        req->overflow = true;
        return 0;
    }
    if (req->len + add + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        while (cap < req->len + add + 1)
            cap *= 2;
        char *nb = realloc(req->body, cap);
        if (!nb)
            return 0;
        req->body = nb;
        req->cap = cap;
    }
    memcpy(req->body + req->len, p, add);
    req->len += add;
    req->body[req->len] = '\0';
    return add;
}

static void dw_http_clear_resp_headers(dw_http_req_t *req)
{
    for (size_t i = 0; i < req->nresp_headers; i++)
        free(req->resp_headers[i]);
    req->nresp_headers = 0;
}

static size_t dw_http_on_header(char *p, size_t size, size_t n, void *ud)
{
    dw_http_req_t *req = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue or a redirect): forget the previous headers */
        dw_http_clear_resp_headers(req);
        return len;
    }
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    if (len && memchr(p, ':', len) && req->nresp_headers < DW_HTTP_RESP_HEADERS_MAX) {
        char *h = strndup(p, len);
        if (h)
            req->resp_headers[req->nresp_headers++] = h;
    }
    return size * n;
}

/* ---- request handles --------------------------------------------------------------------- */

dw_http_req_t *dw_http_req_new(const dw_http_opts_t *opts, char *errstr, size_t errstr_size)
{
    dw_http_req_t *req = NULL;
    if (dw_http_global_init()) {
        dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "curl_global_init failed");
        return NULL;
    }
    if (!(req = calloc(1, sizeof(*req))))
        goto nomem;
    if (opts)
        req->opts = *opts;
    else
        dw_http_opts_init(&req->opts);
    if (!req->opts.max_body)
        req->opts.max_body = DW_HTTP_MAX_BODY_DEFAULT;
    if (req->opts.ca_file && !(req->ca_file = strdup(req->opts.ca_file)))
        goto nomem;
    if (req->opts.user_agent && !(req->user_agent = strdup(req->opts.user_agent)))
        goto nomem;
    req->opts.ca_file = req->ca_file;
    req->opts.user_agent = req->user_agent;
    if (!(req->easy = curl_easy_init()))
        goto nomem;
    if (req->opts.insecure)
        DW_WARN(DW_HTTP_FAC, "TLS peer verification is OFF for this client (insecure)");
    return req;
nomem:
    dw_http_req_destroy(req);
    dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    return NULL;
}

void dw_http_req_destroy(dw_http_req_t *req)
{
    if (!req)
        return;
    if (req->easy)
        curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    dw_http_clear_resp_headers(req);
    free(req->req_body);
    free(req->body);
    free(req->ca_file);
    free(req->user_agent);
    free(req);
}

dw_err_t dw_http_req_setup(dw_http_req_t *req, const char *method, const char *url,
                           const char *body, size_t body_len)
{
    CURL *c = req->easy;
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    free(req->req_body);
    req->req_body = NULL;
    req->has_body = false;
    req->len = 0;
    if (req->body)
        req->body[0] = '\0';
    req->overflow = false;
    req->status = 0;
    req->errbuf[0] = '\0';
    dw_http_clear_resp_headers(req);
    curl_easy_reset(c);

    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->opts.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->opts.timeout_ms);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, req->opts.insecure ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, req->opts.insecure ? 0L : 2L);
    if (req->opts.ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, req->opts.ca_file);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT,
                     req->opts.user_agent ? req->opts.user_agent : "dwfleet/" DW_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dw_http_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dw_http_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_PRIVATE, req);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    }
    if (body) {
        if (!(req->req_body = malloc(body_len + 1)))
            return DW_ERR_NOMEM;
        memcpy(req->req_body, body, body_len);
        req->req_body[body_len] = '\0';
        req->has_body = true;
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->req_body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    /* no "Expect: 100-continue" round trip */
    return dw_http_req_header(req, "Expect", NULL);
}

dw_err_t dw_http_req_header(dw_http_req_t *req, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || (value && strpbrk(value, "\r\n")))
        return DW_ERR_INVALID_ARG;
    size_t n = strlen(name) + (value ? strlen(value) : 0) + 3;
    char *line = malloc(n);
    if (!line)
        return DW_ERR_NOMEM;
    if (value)
        snprintf(line, n, "%s: %s", name, value);
    else
        snprintf(line, n, "%s:", name);
    struct curl_slist *l = curl_slist_append(req->headers, line);
    /* wipe the copy: it may hold a token */
    memset(line, 0, n);
    free(line);
    if (!l)
        return DW_ERR_NOMEM;
    req->headers = l;
    curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
    return DW_OK;
}

dw_err_t dw_http_req_bearer(dw_http_req_t *req, const char *token)
{
    size_t n = strlen(token) + 8;
    char *v = malloc(n);
    if (!v)
        return DW_ERR_NOMEM;
    snprintf(v, n, "Bearer %s", token);
    dw_err_t rc = dw_http_req_header(req, "Authorization", v);
    memset(v, 0, n);
    free(v);
    return rc;
}

dw_err_t dw_http_req_correlation_id(dw_http_req_t *req, const char *id)
{
    return dw_http_req_header(req, DW_HTTP_CORRELATION_HEADER, id);
}

dw_err_t dw_http_req_odata_headers(dw_http_req_t *req)
{
    dw_err_t rc;
    if ((rc = dw_http_req_header(req, "Accept", "application/json")) ||
        (rc = dw_http_req_header(req, "OData-MaxVersion", "4.0")) ||
        (rc = dw_http_req_header(req, "OData-Version", "4.0")))
        return rc;
    if (req->has_body)
        rc = dw_http_req_header(req, "Content-Type", "application/json; charset=utf-8");
    return rc;
}

static dw_err_t dw_http_req_finished(dw_http_req_t *req, CURLcode cc, char *errstr,
                                     size_t errstr_size)
{
    if (cc == CURLE_WRITE_ERROR && req->overflow)
        return dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                       "response body larger than %zu bytes", req->opts.max_body);
    if (cc != CURLE_OK)
        return dw_errf(dw_http_curl_err_map(cc), errstr, errstr_size, "%s",
                       req->errbuf[0] ? req->errbuf : curl_easy_strerror(cc));
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
    if (!req->body && dw_http_on_body("", 1, 0, req) != 0)
        return DW_ERR_NOMEM;
    return DW_OK;
}

dw_err_t dw_http_req_perform(dw_http_req_t *req, char *errstr, size_t errstr_size)
{
    CURLcode cc = curl_easy_perform(req->easy);
    return dw_http_req_finished(req, cc, errstr, errstr_size);
}

long dw_http_req_status(const dw_http_req_t *req)
{
    return req->status;
}

const char *dw_http_req_body(const dw_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->len;
    return req->body ? req->body : "";
}

const char *dw_http_req_resp_header(const dw_http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; i < req->nresp_headers; i++) {
        const char *h = req->resp_headers[i];
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            found = h + nl + 1;
            while (*found == ' ' || *found == '\t')
                found++;
        }
    }
    return found;
}

long dw_http_req_retry_after_ms(const dw_http_req_t *req)
{
    const char *v = dw_http_req_resp_header(req, "Retry-After");
    return v ? dw_http_retry_after_parse(v, time(NULL)) : -1;
}

const char *dw_http_req_errbuf(const dw_http_req_t *req)
{
    return req->errbuf;
}

CURL *dw_http_req_easy(dw_http_req_t *req)
{
    return req->easy;
}

void dw_http_req_set_opaque(dw_http_req_t *req, void *opaque)
{
    req->opaque = opaque;
}

void *dw_http_req_opaque(const dw_http_req_t *req)
{
    return req->opaque;
}

/* ---- pure helpers -------------------------------------------------------------------------- */

dw_err_t dw_http_curl_err_map(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return DW_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return DW_ERR_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_AGAIN:
        return DW_ERR_UNAVAILABLE;
    case CURLE_OUT_OF_MEMORY:
        return DW_ERR_NOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        return DW_ERR_INVALID_ARG;
    default:
        return DW_ERR_UNAVAILABLE;
    }
}

dw_err_t dw_http_status_err(long status)
{
    if (status >= 200 && status < 400)
        return DW_OK;
    switch (status) {
    case 408:
        return DW_ERR_TIMEOUT;
    case 429:
        return DW_ERR_UNAVAILABLE;
    case 401:
    case 403:
        return DW_ERR_CONFIG;
    case 404:
    case 410:
        return DW_ERR_NOT_FOUND;
    case 409:
    case 412:
        return DW_ERR_CONFLICT;
    default:
        break;
    }
    if (status >= 500 && status < 600)
        return DW_ERR_UNAVAILABLE;
    return DW_ERR_INVALID_ARG;
}

long dw_http_retry_after_parse(const char *value, time_t now)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        long long s = strtoll(value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end != '\0' || s < 0)
            return -1;
        if (s > 86400)
            s = 86400;
        return (long)(s * 1000);
    }
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    if (t <= now)
        return 0;
    long long d = (long long)(t - now);
    if (d > 86400)
        d = 86400;
    return (long)(d * 1000);
}

dw_err_t dw_http_urlencode(const char *s, bool form, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (o + 1 >= size)
                goto toolong;
            out[o++] = (char)c;
        } else if (form && c == ' ') {
            if (o + 1 >= size)
                goto toolong;
            out[o++] = '+';
        } else {
            if (o + 3 >= size)
                goto toolong;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (size == 0)
        return DW_ERR_INVALID_ARG;
    out[o] = '\0';
    return DW_OK;
toolong:
    if (size)
        out[0] = '\0';
    return DW_ERR_INVALID_ARG;
}

char *dw_http_odata_literal(const char *value)
{
    size_t n = strlen(value);
    /* worst case: every byte a doubled quote, each quote percent-encoded */
    size_t cap = 2 * 3 * n + 2 * 3 + 1;
    char *quoted = malloc(2 * n + 3), *out = malloc(cap);
    if (!quoted || !out) {
        free(quoted);
        free(out);
        return NULL;
    }
    size_t q = 0;
    quoted[q++] = '\'';
    for (size_t i = 0; i < n; i++) {
        if (value[i] == '\'')
            quoted[q++] = '\'';
        quoted[q++] = value[i];
    }
    quoted[q++] = '\'';
    quoted[q] = '\0';
    if (dw_http_urlencode(quoted, false, out, cap) != DW_OK) {
        free(out);
        out = NULL;
    }
    free(quoted);
    return out;
}

void dw_http_uuid4(char out[37])
{
    unsigned char b[16];
    bool ok = false;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ok = read(fd, b, sizeof(b)) == (ssize_t)sizeof(b);
        close(fd);
    }
    if (!ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
                               (unsigned long long)getpid() << 40;
        for (int i = 0; i < 16; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[i] = (unsigned char)x;
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* ---- multi ------------------------------------------------------------------------------- */

dw_http_multi_t *dw_http_multi_new(long max_total, char *errstr, size_t errstr_size)
{
    if (dw_http_global_init()) {
        dw_errf(DW_ERR_INTERNAL, errstr, errstr_size, "curl_global_init failed");
        return NULL;
    }
    dw_http_multi_t *m = calloc(1, sizeof(*m));
    if (!m || !(m->multi = curl_multi_init())) {
        free(m);
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (max_total > 0)
        curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
    return m;
}

void dw_http_multi_destroy(dw_http_multi_t *multi)
{
    if (!multi)
        return;
    /* requests still added are detached by curl_multi_cleanup (callers remove them first) */
    curl_multi_cleanup(multi->multi);
    free(multi);
}

dw_err_t dw_http_multi_add(dw_http_multi_t *multi, dw_http_req_t *req)
{
    CURLMcode mc = curl_multi_add_handle(multi->multi, req->easy);
    return mc == CURLM_OK ? DW_OK : (mc == CURLM_OUT_OF_MEMORY ? DW_ERR_NOMEM : DW_ERR_INTERNAL);
}

void dw_http_multi_remove(dw_http_multi_t *multi, dw_http_req_t *req)
{
    curl_multi_remove_handle(multi->multi, req->easy);
}

int dw_http_multi_run(dw_http_multi_t *multi, int timeout_ms, dw_http_done_cb *done,
                      void *opaque)
{
    int running = 0;
    curl_multi_perform(multi->multi, &running);
    if (running)
        curl_multi_poll(multi->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(multi->multi, &running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        CURLcode cc = msg->data.result;
        dw_http_req_t *req = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&req);
        curl_multi_remove_handle(multi->multi, e);
        if (!req)
            continue;
        dw_err_t err = dw_http_req_finished(req, cc, NULL, 0);
        if (done)
            done(req, err, opaque);
    }
    return running;
}
