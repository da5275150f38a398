/*
 * emu_batch: the OData $batch multipart parser and executor shared by the emulated systems.
 * Format (OData 4.0 Part 1, 11.7 "Batch Requests"; Microsoft Learn, "Execute batch operations
 * using the Web API"): Content-Type multipart/mixed; boundary=batch_<id>; parts of Content-Type
 * application/http holding one request (request line, headers, blank line, body) or of
 * Content-Type multipart/mixed; boundary=changeset_<id> holding application/http parts (no
 * nesting deeper than that). Lines end in CRLF (a bare LF is accepted too). The response is
 * multipart/mixed; boundary=batchresponse_<id>, change sets answered inside
 * changesetresponse_<id> parts, every sub-response an application/http part with an
 * "HTTP/1.1 <status> <reason>" status line.
 */
#include "emu_batch.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "dw_buf.h"

/* ---- parser ---------------------------------------------------------------------------------- */

typedef struct {
    const char *p;
    size_t n;
} span_t;

typedef struct {
    span_t *v;
    size_t n, cap;
} spans_t;

static bool spans_add(spans_t *s, const char *p, size_t n)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        span_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return false;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n].p = p;
    s->v[s->n].n = n;
    s->n++;
    return true;
}

static bool ci_prefix(const char *s, size_t n, const char *pre)
{
    size_t l = strlen(pre);
    return n >= l && strncasecmp(s, pre, l) == 0;
}

/* The boundary parameter of a multipart/mixed content type, copied into out. */
static bool mp_boundary(const char *ct, size_t ctlen, char *out, size_t size)
{
    const char *end = ct + ctlen;
    while (ct < end && (*ct == ' ' || *ct == '\t'))
        ct++;
    if (!ci_prefix(ct, (size_t)(end - ct), "multipart/mixed"))
        return false;
    const char *p = ct + strlen("multipart/mixed");
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p != ';')
            return false;
        if (p < end)
            p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        if (p >= end || *p != '=')
            continue;
        size_t nl = (size_t)(p - name);
        while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
            nl--;
        p++;
        const char *v = p;
        size_t vl;
        if (p < end && *p == '"') {
            v = ++p;
            while (p < end && *p != '"')
                p++;
            if (p >= end)
                return false;
            vl = (size_t)(p - v);
            p++;
        } else {
            while (p < end && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            vl = (size_t)(p - v);
        }
        if (nl == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (vl == 0 || vl > 70 || vl + 1 > size)
                return false;
            for (size_t i = 0; i < vl; i++)
                if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                    return false;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
    }
    return false;
}

/* Split a multipart body into the contents of its parts (without the CRLF before each delimiter).
 * The preamble before the first delimiter and the epilogue after the close delimiter are ignored.
 */
static dw_err_t mp_split(const char *b, size_t len, const char *bnd, spans_t *out, char *errstr,
                         size_t n)
{
    size_t bl = strlen(bnd);
    const char *end = b + len, *cur = b, *part = NULL;
    while (cur < end) {
        const char *eol = memchr(cur, '\n', (size_t)(end - cur));
        const char *le = eol ? eol : end;
        if (le > cur && le[-1] == '\r')
            le--;
        if ((size_t)(le - cur) >= 2 + bl && cur[0] == '-' && cur[1] == '-' &&
            memcmp(cur + 2, bnd, bl) == 0) {
            const char *t = cur + 2 + bl;
            bool close = false;
            if (le - t >= 2 && t[0] == '-' && t[1] == '-') {
                close = true;
                t += 2;
            }
            while (t < le && (*t == ' ' || *t == '\t'))
                t++;
            if (t == le) {
                if (part) {
                    const char *pe = cur;
                    if (pe > part && pe[-1] == '\n')
                        pe--;
                    if (pe > part && pe[-1] == '\r')
                        pe--;
                    if (!spans_add(out, part, (size_t)(pe - part)))
                        return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
                }
                if (close)
                    return DW_OK;
                part = eol ? eol + 1 : end;
                cur = part;
                continue;
            }
        }
        cur = eol ? eol + 1 : end;
    }
    if (!part)
        return dw_errf(DW_ERR_PARSE, errstr, n,
                       "The batch request body does not contain the boundary delimiter '--%s'.",
                       bnd);
    return dw_errf(DW_ERR_PARSE, errstr, n,
                   "The batch request body does not end with the close delimiter '--%s--'.", bnd);
}

typedef struct {
    span_t name[EMU_BATCH_MAX_PART_HEADERS];
    span_t value[EMU_BATCH_MAX_PART_HEADERS];
    size_t n;
} hdrs_t;

/* Header lines from *pp up to an empty line (or the end); *pp is left after the empty line. */
static dw_err_t parse_headers(const char **pp, const char *end, hdrs_t *h, char *errstr, size_t n)
{
    const char *p = *pp;
    h->n = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *next = eol ? eol + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p) {
            p = next;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return dw_errf(DW_ERR_PARSE, errstr, n,
                           "The batch request contains a malformed header line '%.*s'.",
                           (int)(le - p > 80 ? 80 : le - p), p);
        if (h->n >= EMU_BATCH_MAX_PART_HEADERS)
            return dw_errf(DW_ERR_PARSE, errstr, n, "A batch part has more than %d headers.",
                           EMU_BATCH_MAX_PART_HEADERS);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        h->name[h->n] = (span_t){p, (size_t)(colon - p)};
        h->value[h->n] = (span_t){v, (size_t)(ve - v)};
        h->n++;
        p = next;
    }
    *pp = p;
    return DW_OK;
}

static const span_t *hdr_get(const hdrs_t *h, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        if (h->name[i].n == l && strncasecmp(h->name[i].p, name, l) == 0)
            return &h->value[i];
    return NULL;
}

static char *dup_span(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static bool is_method(const char *m, size_t n)
{
    static const char *const ok[] = {"GET", "POST", "PATCH", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strlen(ok[i]) == n && memcmp(ok[i], m, n) == 0)
            return true;
    return false;
}

/* One application/http part (its MIME headers already read into mh, content at p..end). */
static dw_err_t parse_request(const hdrs_t *mh, const char *p, const char *end, int changeset,
                              emu_batch_part_t *out, char *errstr, size_t n)
{
    memset(out, 0, sizeof(*out));
    out->changeset = changeset;
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    if (p >= end)
        return dw_errf(DW_ERR_PARSE, errstr, n,
                       "A batch part of type application/http holds no request.");
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *le = eol ? eol : end;
    if (le > p && le[-1] == '\r')
        le--;
    /* METHOD SP URL SP HTTP/1.1 */
    const char *sp1 = memchr(p, ' ', (size_t)(le - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp2 == sp1 + 1 || !is_method(p, (size_t)(sp1 - p)) ||
        !ci_prefix(sp2 + 1, (size_t)(le - sp2 - 1), "HTTP/1."))
        return dw_errf(
            DW_ERR_PARSE, errstr, n,
            "The batch part does not start with a request line 'METHOD URL HTTP/1.1': '%.*s'.",
            (int)(le - p > 80 ? 80 : le - p), p);
    out->method = dup_span(p, (size_t)(sp1 - p));
    out->url = dup_span(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    p = eol ? eol + 1 : end;
    hdrs_t h;
    dw_err_t err = parse_headers(&p, end, &h, errstr, n);
    if (err)
        return err;
    for (size_t i = 0; i < h.n; i++) {
        out->hname[i] = dup_span(h.name[i].p, h.name[i].n);
        out->hvalue[i] = dup_span(h.value[i].p, h.value[i].n);
        out->nheaders++;
        if (!out->hname[i] || !out->hvalue[i])
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
    }
    const span_t *cid = hdr_get(mh, "Content-ID");
    if (!cid)
        cid = hdr_get(&h, "Content-ID");
    if (cid)
        out->content_id = dup_span(cid->p, cid->n);
    out->body = dup_span(p, (size_t)(end - p));
    out->body_len = (size_t)(end - p);
    if (!out->method || !out->url || !out->body || (cid && !out->content_id))
        return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
    if (changeset >= 0 && strcmp(out->method, "GET") == 0)
        return dw_errf(DW_ERR_PARSE, errstr, n, "A change set must not contain a GET request.");
    return DW_OK;
}

static dw_err_t add_part(emu_batch_t *b, size_t *cap, emu_batch_part_t **slot, char *errstr,
                         size_t n)
{
    if (b->nparts == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        emu_batch_part_t *np = realloc(b->parts, nc * sizeof(*np));
        if (!np)
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
        b->parts = np;
        *cap = nc;
    }
    *slot = &b->parts[b->nparts++];
    memset(*slot, 0, sizeof(**slot));
    return DW_OK;
}

static dw_err_t too_many(size_t max, char *errstr, size_t n)
{
    return dw_errf(
        DW_ERR_INVALID_ARG, errstr, n,
        "The current batch message contains too many parts. Only batch messages with a maximum "
        "number of '%zu' query operations, including changeset operations, are allowed.",
        max);
}

dw_err_t emu_batch_parse(const char *content_type, const char *body, size_t len,
                         size_t max_requests, emu_batch_t *out, char *errstr, size_t n)
{
    char bnd[80], cbnd[80];
    spans_t top = {0}, cs = {0};
    size_t cap = 0;
    dw_err_t err = DW_OK;
    memset(out, 0, sizeof(*out));
    if (!content_type || !mp_boundary(content_type, strlen(content_type), bnd, sizeof(bnd))) {
        err = dw_errf(DW_ERR_PARSE, errstr, n,
                      "The batch request must have a Content-Type of multipart/mixed with a "
                      "boundary parameter.");
        goto out;
    }
    err = mp_split(body, len, bnd, &top, errstr, n);
    for (size_t i = 0; !err && i < top.n; i++) {
        const char *p = top.v[i].p, *end = p + top.v[i].n;
        hdrs_t mh;
        err = parse_headers(&p, end, &mh, errstr, n);
        if (err)
            break;
        const span_t *ct = hdr_get(&mh, "Content-Type");
        if (ct && ci_prefix(ct->p, ct->n, "application/http")) {
            emu_batch_part_t *slot = NULL;
            if (out->nparts >= max_requests) {
                err = too_many(max_requests, errstr, n);
                break;
            }
            err = add_part(out, &cap, &slot, errstr, n);
            if (!err)
                err = parse_request(&mh, p, end, -1, slot, errstr, n);
        } else if (ct && ci_prefix(ct->p, ct->n, "multipart/mixed")) {
            if (!mp_boundary(ct->p, ct->n, cbnd, sizeof(cbnd)) || strcmp(cbnd, bnd) == 0) {
                err = dw_errf(
                    DW_ERR_PARSE, errstr, n,
                    "A change set must have a multipart/mixed Content-Type with its own boundary.");
                break;
            }
            cs.n = 0;
            err = mp_split(p, (size_t)(end - p), cbnd, &cs, errstr, n);
            int idx = (int)out->nchangesets++;
            for (size_t k = 0; !err && k < cs.n; k++) {
                const char *q = cs.v[k].p, *qe = q + cs.v[k].n;
                hdrs_t ch;
                err = parse_headers(&q, qe, &ch, errstr, n);
                if (err)
                    break;
                const span_t *cct = hdr_get(&ch, "Content-Type");
                if (!cct || !ci_prefix(cct->p, cct->n, "application/http")) {
                    err = dw_errf(DW_ERR_PARSE, errstr, n,
                                  "A change set part must have Content-Type application/http "
                                  "(change sets cannot be nested).");
                    break;
                }
                if (out->nparts >= max_requests) {
                    err = too_many(max_requests, errstr, n);
                    break;
                }
                emu_batch_part_t *slot = NULL;
                err = add_part(out, &cap, &slot, errstr, n);
                if (!err)
                    err = parse_request(&ch, q, qe, idx, slot, errstr, n);
                for (size_t j = 0; !err && slot->content_id && j + 1 < out->nparts; j++) {
                    const emu_batch_part_t *o = &out->parts[j];
                    if (o->changeset == idx && o->content_id &&
                        strcmp(o->content_id, slot->content_id) == 0)
                        err = dw_errf(DW_ERR_PARSE, errstr, n,
                                      "The Content-ID '%s' is used more than once in a change set.",
                                      slot->content_id);
                }
            }
        } else {
            err = dw_errf(DW_ERR_PARSE, errstr, n,
                          "A batch part must have Content-Type application/http or multipart/mixed "
                          "(a change set), not '%.*s'.",
                          ct ? (int)(ct->n > 80 ? 80 : ct->n) : 0, ct ? ct->p : "");
        }
    }
out:
    free(top.v);
    free(cs.v);
    return err;
}

void emu_batch_clear(emu_batch_t *b)
{
    for (size_t i = 0; i < b->nparts; i++) {
        emu_batch_part_t *p = &b->parts[i];
        free(p->method);
        free(p->url);
        free(p->content_id);
        free(p->body);
        for (size_t k = 0; k < p->nheaders; k++) {
            free(p->hname[k]);
            free(p->hvalue[k]);
        }
    }
    free(b->parts);
    memset(b, 0, sizeof(*b));
}

/* ---- executor -------------------------------------------------------------------------------- */

const char *emu_http_reason(unsigned status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    }
    return "Unknown";
}

static void new_id(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(rand() & 0xff);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static const char *resp_header(const emu_resp_t *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->hname[i], name) == 0)
            return r->hvalue[i];
    return NULL;
}

/* One application/http response part (delimiter included). */
static void put_part(dw_buf_t *s, const char *boundary, const char *content_id, const emu_resp_t *r)
{
    unsigned st = r->status ? r->status : 500;
    dw_buf_printf(s,
                  "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
                  boundary);
    if (content_id)
        dw_buf_printf(s, "Content-ID: %s\r\n", content_id);
    dw_buf_printf(s, "\r\nHTTP/1.1 %u %s\r\n", st, emu_http_reason(st));
    bool ver = false;
    for (int i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->hname[i], "Content-Type") == 0 && r->body_len == 0)
            continue;
        if (strcasecmp(r->hname[i], "OData-Version") == 0)
            ver = true;
        dw_buf_printf(s, "%s: %s\r\n", r->hname[i], r->hvalue[i]);
    }
    if (!ver)
        dw_buf_put(s, "OData-Version: 4.0\r\n", 20);
    dw_buf_put(s, "\r\n", 2);
    if (r->body_len)
        dw_buf_put(s, r->body, r->body_len);
    dw_buf_put(s, "\r\n", 2);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into a new string. */
static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    size_t k = 0;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            o[k++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    return o;
}

typedef struct {
    const char *id;
    char *eid; /* owned */
} ref_t;

typedef struct {
    char *path;
    char *qbuf[EMU_HTTP_MAX_ARGS * 2];
    size_t nq;
    char *body;
} sub_store_t;

static void sub_store_free(sub_store_t *ss)
{
    free(ss->path);
    for (size_t i = 0; i < ss->nq; i++)
        free(ss->qbuf[i]);
    free(ss->body);
    memset(ss, 0, sizeof(*ss));
}

/* Replace every JSON string "$<id>" of a known Content-ID by "<entity URL>". */
static char *subst_body(const char *body, size_t len, const ref_t *refs, size_t nrefs,
                        size_t *out_len)
{
    dw_buf_t s = {0};
    size_t i = 0;
    while (i < len) {
        if (body[i] == '"' && i + 1 < len && body[i + 1] == '$') {
            const char *q = memchr(body + i + 2, '"', len - i - 2);
            if (q) {
                size_t il = (size_t)(q - (body + i + 2));
                const ref_t *hit = NULL;
                for (size_t r = 0; r < nrefs && !hit; r++)
                    if (strlen(refs[r].id) == il && memcmp(refs[r].id, body + i + 2, il) == 0)
                        hit = &refs[r];
                if (hit) {
                    dw_buf_put(&s, "\"", 1);
                    dw_buf_put(&s, hit->eid, strlen(hit->eid));
                    dw_buf_put(&s, "\"", 1);
                    i = (size_t)(q - body) + 1;
                    continue;
                }
            }
        }
        dw_buf_put(&s, body + i, 1);
        i++;
    }
    if (!s.p)
        s.p = calloc(1, 1);
    if (s.fail) {
        free(s.p);
        return NULL;
    }
    *out_len = s.n;
    return s.p;
}

/* Build the internal request of one part; false with resp filled when the URL cannot be used. */
static bool make_sub(const emu_batch_part_t *p, const emu_batch_ops_t *ops, const emu_req_t *outer,
                     const ref_t *refs, size_t nrefs, void *txn, emu_req_t *sub, sub_store_t *ss,
                     emu_resp_t *resp, const char *err_code)
{
    memset(sub, 0, sizeof(*sub));
    memset(ss, 0, sizeof(*ss));
    char *url = NULL;
    const char *u = p->url;
    /* $<Content-ID>[/rest]: the entity created by that request of the change set */
    if (u[0] == '$') {
        size_t il = strcspn(u + 1, "/?");
        for (size_t r = 0; r < nrefs; r++) {
            if (strlen(refs[r].id) == il && strncmp(refs[r].id, u + 1, il) == 0) {
                size_t l = strlen(refs[r].eid) + strlen(u + 1 + il) + 1;
                url = malloc(l);
                if (url)
                    snprintf(url, l, "%s%s", refs[r].eid, u + 1 + il);
                break;
            }
        }
        if (!url && strncmp(u, "$batch", 6) != 0) {
            emu_resp_error(resp, 400, err_code,
                           "The Content-ID reference '%.*s' does not designate an earlier request "
                           "of the same change set.",
                           (int)(il + 1 > 64 ? 64 : il + 1), u);
            return false;
        }
    }
    if (url)
        u = url;
    const char *path = u;
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        const char *slash = strchr(strstr(u, "://") + 3, '/');
        path = slash ? slash : "/";
    }
    size_t plen = strcspn(path, "?");
    if (path[0] == '/') {
        ss->path = pct_decode(path, plen);
    } else {
        char *rel = pct_decode(path, plen);
        size_t l = strlen(ops->root_path) + (rel ? strlen(rel) : 0) + 1;
        ss->path = rel ? malloc(l) : NULL;
        if (ss->path)
            snprintf(ss->path, l, "%s%s", ops->root_path, rel);
        free(rel);
    }
    const char *q = path[plen] == '?' ? path + plen + 1 : NULL;
    bool ok = ss->path != NULL;
    while (ok && q && *q) {
        size_t al = strcspn(q, "&");
        if (al) {
            if (sub->nargs >= EMU_HTTP_MAX_ARGS) {
                sub->too_many_args = true;
                break;
            }
            const char *eq = memchr(q, '=', al);
            size_t nl = eq ? (size_t)(eq - q) : al;
            char *name = pct_decode(q, nl);
            char *val = eq ? pct_decode(eq + 1, al - nl - 1) : strdup("");
            ss->qbuf[ss->nq++] = name;
            ss->qbuf[ss->nq++] = val;
            ok = name && val;
            sub->arg_names[sub->nargs] = name;
            sub->arg_values[sub->nargs] = val;
            sub->nargs++;
        }
        q += al;
        if (*q == '&')
            q++;
    }
    size_t blen = 0;
    if (ok)
        ss->body = subst_body(p->body, p->body_len, refs, nrefs, &blen);
    free(url);
    if (!ok || !ss->body) {
        emu_resp_error(resp, 500, err_code, "out of memory");
        return false;
    }
    size_t rl = strlen(ops->root_path);
    if (strncmp(ss->path, ops->root_path, rl) == 0 && strcmp(ss->path + rl, "$batch") == 0) {
        emu_resp_error(resp, 400, err_code,
                       "A batch request cannot contain another batch request.");
        return false;
    }
    if (sub->too_many_args) {
        emu_resp_error(resp, 400, err_code, "Too many query options");
        return false;
    }
    sub->conn = NULL;
    sub->method = p->method;
    sub->path = ss->path;
    sub->body = ss->body;
    sub->body_len = blen;
    snprintf(sub->client, sizeof(sub->client), "%s", outer->client);
    snprintf(sub->client_ip, sizeof(sub->client_ip), "%s", outer->client_ip);
    sub->hdr_names = p->hname;
    sub->hdr_values = p->hvalue;
    sub->nhdrs = p->nheaders;
    sub->txn = txn;
    return true;
}

static void run_one(const emu_batch_part_t *p, const emu_batch_ops_t *ops, void *opaque,
                    const emu_req_t *outer, const ref_t *refs, size_t nrefs, void *txn,
                    emu_resp_t *r, const char *err_code)
{
    emu_req_t sub;
    sub_store_t ss;
    memset(r, 0, sizeof(*r));
    if (make_sub(p, ops, outer, refs, nrefs, txn, &sub, &ss, r, err_code))
        ops->dispatch(opaque, &sub, r);
    sub_store_free(&ss);
}

static void batch_run(const emu_batch_t *b, const emu_batch_ops_t *ops, void *opaque,
                      const emu_req_t *outer, bool cont, emu_resp_t *resp, const char *err_code)
{
    char bid[37], cid[37], bnd[64], cbnd[64];
    dw_buf_t s = {0};
    bool failed = false;
    new_id(bid);
    snprintf(bnd, sizeof(bnd), "batchresponse_%s", bid);
    emu_resp_t *rs = calloc(b->nparts ? b->nparts : 1, sizeof(emu_resp_t));
    ref_t *refs = calloc(b->nparts ? b->nparts : 1, sizeof(ref_t));
    if (!rs || !refs) {
        emu_resp_error(resp, 500, err_code, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < b->nparts && !(failed && !cont);) {
        const emu_batch_part_t *p = &b->parts[i];
        if (p->changeset < 0) {
            run_one(p, ops, opaque, outer, NULL, 0, NULL, &rs[i], err_code);
            put_part(&s, bnd, p->content_id, &rs[i]);
            if (rs[i].status >= 400 || !rs[i].status)
                failed = true;
            i++;
            continue;
        }
        size_t j = i;
        while (j < b->nparts && b->parts[j].changeset == p->changeset)
            j++;
        size_t nrefs = 0, bad = SIZE_MAX;
        void *txn = NULL;
        emu_resp_t er;
        memset(&er, 0, sizeof(er));
        if (!ops->begin(opaque, &txn, &er)) {
            put_part(&s, bnd, NULL, &er);
            emu_resp_reset(&er);
            failed = true;
            i = j;
            continue;
        }
        for (size_t k = i; k < j && bad == SIZE_MAX; k++) {
            run_one(&b->parts[k], ops, opaque, outer, refs, nrefs, txn, &rs[k], err_code);
            if (rs[k].status >= 400 || !rs[k].status) {
                bad = k;
                break;
            }
            const char *eid = resp_header(&rs[k], "OData-EntityId");
            if (!eid)
                eid = resp_header(&rs[k], "Location");
            if (b->parts[k].content_id && eid) {
                refs[nrefs].id = b->parts[k].content_id;
                refs[nrefs].eid = strdup(eid);
                if (refs[nrefs].eid)
                    nrefs++;
            }
        }
        if (bad == SIZE_MAX && !ops->commit(opaque, txn, &er)) {
            put_part(&s, bnd, NULL, &er);
            emu_resp_reset(&er);
            failed = true;
        } else if (bad != SIZE_MAX) {
            ops->rollback(opaque, txn);
            /* a failed change set is answered by the failing request's response alone */
            put_part(&s, bnd, b->parts[bad].content_id, &rs[bad]);
            failed = true;
        } else {
            new_id(cid);
            snprintf(cbnd, sizeof(cbnd), "changesetresponse_%s", cid);
            dw_buf_printf(&s, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n", bnd,
                          cbnd);
            for (size_t k = i; k < j; k++)
                put_part(&s, cbnd, b->parts[k].content_id, &rs[k]);
            dw_buf_printf(&s, "--%s--\r\n", cbnd);
        }
        for (size_t r = 0; r < nrefs; r++)
            free(refs[r].eid);
        i = j;
    }
    dw_buf_printf(&s, "--%s--\r\n", bnd);
    if (s.fail) {
        emu_resp_error(resp, 500, err_code, "out of memory");
        goto out;
    }
    char ct[128];
    snprintf(ct, sizeof(ct), "multipart/mixed; boundary=%s", bnd);
    emu_resp_raw(resp, failed && !cont ? 400 : 200, ct, s.p ? s.p : "", s.n);
    if (cont)
        emu_resp_header(resp, "Preference-Applied", "odata.continue-on-error");
out:
    for (size_t i = 0; rs && i < b->nparts; i++)
        emu_resp_reset(&rs[i]);
    free(rs);
    free(refs);
    free(s.p);
}

void emu_batch_execute(const emu_batch_t *b, const emu_batch_ops_t *ops, void *opaque,
                       const emu_req_t *outer, bool continue_on_error, emu_resp_t *resp)
{
    batch_run(b, ops, opaque, outer, continue_on_error, resp, "0x80040216");
}

static bool prefers_continue(const char *prefer)
{
    for (const char *p = prefer; p && (p = strstr(p, "odata.continue-on-error")); p++) {
        const char *e = p + strlen("odata.continue-on-error");
        if ((p == prefer || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t') &&
            (*e == '\0' || *e == ',' || *e == ' ' || *e == ';' ||
             (*e == '=' && strncmp(e, "=true", 5) == 0)))
            return true;
    }
    return false;
}

void emu_batch_handle(const emu_batch_ops_t *ops, void *opaque, const emu_req_t *req,
                      size_t max_requests, const char *err_code, emu_resp_t *resp)
{
    char errstr[512];
    emu_batch_t b;
    dw_err_t err = emu_batch_parse(emu_req_header(req, "Content-Type"), req->body, req->body_len,
                                   max_requests, &b, errstr, sizeof(errstr));
    if (err == DW_ERR_NOMEM)
        emu_resp_error(resp, 500, err_code, "out of memory");
    else if (err)
        emu_resp_error(resp, 400, err_code, "%s", errstr);
    else
        batch_run(&b, ops, opaque, req, prefers_continue(emu_req_header(req, "Prefer")), resp,
                  err_code);
    emu_batch_clear(&b);
}
