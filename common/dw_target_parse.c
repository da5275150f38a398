/*
 * dw_target_parse: what the write connectors compute without a network (dw_target_int.h): the
 * classification of an error body of Dataverse or F&O, the $batch response parser, key paths and
 * $batch request bodies.
 */
#include "dw_target_int.h"

#include <ctype.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dw_buf.h"
#include "dw_http.h"
#include "dw_json.h"

/* ---- classification -------------------------------------------------------------------------- */

/* Case-insensitive substring search. */
static bool has(const char *s, const char *needle)
{
    if (!s)
        return false;
    size_t nl = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, nl) == 0)
            return true;
    return false;
}

static void copy_str(char *out, size_t size, const char *s)
{
    if (out && size)
        snprintf(out, size, "%s", s ? s : "");
}

bool dw_target_fo_already_exists(long status, const char *message)
{
    return status >= 400 && status < 500 && has(message, "already exists");
}

/* Messages that say the payload names a column the target does not know, or lacks one it
 * requires: both services' wording. */
static bool schema_drift_message(const char *m)
{
    return has(m, "does not exist on type") || has(m, "Invalid property") ||
           has(m, "undeclared property") || has(m, "Could not find a property named") ||
           has(m, "is required") || has(m, "must be filled in");
}

dw_wclass_t dw_target_classify(bool fo, long status, const char *body, size_t len, char *code,
                               size_t code_size, char *message, size_t message_size)
{
    copy_str(code, code_size, "");
    copy_str(message, message_size, "");
    if (status >= 200 && status < 400)
        return DW_WCLASS_OK;
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    const char *inner =
        json_string_value(json_object_get(json_object_get(e, "innererror"), "message"));
    /* F&O's outer message is often generic ("An error has occurred."); the innererror says more */
    const char *msg = m;
    if (fo && inner && *inner && (!m || !*m || strcmp(m, "An error has occurred.") == 0))
        msg = inner;
    copy_str(code, code_size, c);
    copy_str(message, message_size, msg);
    dw_wclass_t cls;
    if (status == 0 || status == 408 || status == 429 || (status >= 500 && status != 501) ||
        status == 401) {
        cls = DW_WCLASS_TRANSIENT;
        if (status == 0 && message && message_size && !*message)
            copy_str(message, message_size, "no response");
    } else if (status < 400 || status >= 600 || !json_is_object(e) || (!m && !inner)) {
        cls = DW_WCLASS_UNKNOWN;
        if (message && message_size && !*message)
            snprintf(message, message_size, "HTTP %ld with an unreadable body: %.200s", status,
                     body && len ? body : "");
    } else if (schema_drift_message(msg) || schema_drift_message(inner)) {
        cls = DW_WCLASS_SCHEMA_DRIFT;
    } else if (!fo && c && strcasecmp(c, "0x80040217") == 0) {
        /* ObjectDoesNotExist on an upsert: the record itself is created by a PATCH/UpsertMultiple,
         * so what is missing is a referenced row (an @odata.bind target) */
        cls = DW_WCLASS_LOOKUP_MISSING;
    } else if (fo && (has(msg, "related table") || has(inner, "related table") ||
                      (has(msg, "does not exist") && !has(msg, "already exists")))) {
        cls = DW_WCLASS_LOOKUP_MISSING;
    } else if (!fo && c &&
               (strcasecmp(c, "0x80072322") == 0 || strcasecmp(c, "0x80072321") == 0 ||
                strcasecmp(c, "0x80072326") == 0)) {
        cls = DW_WCLASS_TRANSIENT;
    } else {
        cls = DW_WCLASS_VALIDATION;
    }
    json_decref(j);
    return cls;
}

/* ---- multipart parsing ----------------------------------------------------------------------- */

static const char *find_mem(const char *h, size_t hl, const char *n, size_t nl)
{
    if (nl == 0 || hl < nl)
        return NULL;
    for (size_t i = 0; i + nl <= hl; i++)
        if (h[i] == n[0] && memcmp(h + i, n, nl) == 0)
            return h + i;
    return NULL;
}

/* boundary parameter of a multipart Content-Type into out; false when none. */
static bool boundary_of(const char *ct, char *out, size_t size)
{
    if (!ct || strncasecmp(ct, "multipart/mixed", 15) != 0)
        return false;
    const char *p = ct;
    while ((p = strchr(p, ';'))) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) == 0) {
            p += 9;
            size_t l;
            if (*p == '"') {
                p++;
                l = strcspn(p, "\"");
            } else {
                l = strcspn(p, "; \t\r\n");
            }
            if (l == 0 || l >= size)
                return false;
            memcpy(out, p, l);
            out[l] = '\0';
            return true;
        }
    }
    return false;
}

/* One header block [p, end): calls back per "Name: value" line. Returns the start of what follows
 * the blank line, NULL when there is none. */
typedef struct {
    char ctype[256];
    char content_id[64];
    char entity_id[512];
    char retry_after[64];
} hdrs_t;

static const char *parse_headers(const char *p, const char *end, hdrs_t *h)
{
    memset(h, 0, sizeof(*h));
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return NULL;
        size_t ll = (size_t)(eol - p);
        if (ll && p[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            return eol + 1;
        const char *colon = memchr(p, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + ll && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(p + ll - v);
            char *dst = NULL;
            size_t ds = 0;
            if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0)
                dst = h->ctype, ds = sizeof(h->ctype);
            else if (nl == 10 && strncasecmp(p, "Content-ID", 10) == 0)
                dst = h->content_id, ds = sizeof(h->content_id);
            else if ((nl == 14 && strncasecmp(p, "OData-EntityId", 14) == 0) ||
                     (nl == 8 && strncasecmp(p, "Location", 8) == 0 && !h->entity_id[0]))
                dst = h->entity_id, ds = sizeof(h->entity_id);
            else if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0)
                dst = h->retry_after, ds = sizeof(h->retry_after);
            if (dst) {
                if (vl >= ds)
                    vl = ds - 1;
                memcpy(dst, v, vl);
                dst[vl] = '\0';
            }
        }
        p = eol + 1;
    }
    return NULL;
}

typedef struct {
    dw_tpart_t *v;
    size_t n, cap;
} partvec_t;

static dw_err_t parse_multipart(const char *ct, const char *body, size_t len, int changeset,
                                int *nchangesets, partvec_t *out, int depth);

/* One application/http part's content [p, end). */
static dw_err_t parse_http_part(const hdrs_t *mime, const char *p, const char *end, int changeset,
                                partvec_t *out)
{
    /* HTTP/1.1 <status> <reason> */
    if ((size_t)(end - p) < 12 || strncmp(p, "HTTP/1.", 7) != 0)
        return DW_ERR_PARSE;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || sp + 4 > end || !isdigit((unsigned char)sp[1]) || !isdigit((unsigned char)sp[2]) ||
        !isdigit((unsigned char)sp[3]))
        return DW_ERR_PARSE;
    long status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
        return DW_ERR_PARSE;
    hdrs_t h;
    const char *b = parse_headers(eol + 1, end, &h);
    if (!b)
        return DW_ERR_PARSE;
    size_t bl = (size_t)(end - b);
    if (out->n == out->cap) {
        size_t nc = out->cap ? out->cap * 2 : 16;
        dw_tpart_t *nv = realloc(out->v, nc * sizeof(*nv));
        if (!nv)
            return DW_ERR_NOMEM;
        out->v = nv;
        out->cap = nc;
    }
    dw_tpart_t *pt = &out->v[out->n];
    memset(pt, 0, sizeof(*pt));
    pt->status = status;
    snprintf(pt->content_id, sizeof(pt->content_id), "%s",
             mime->content_id[0] ? mime->content_id : h.content_id);
    snprintf(pt->entity_id, sizeof(pt->entity_id), "%s", h.entity_id);
    pt->retry_after_ms =
        h.retry_after[0] ? dw_http_retry_after_parse(h.retry_after, time(NULL)) : -1;
    pt->changeset = changeset;
    pt->body = malloc(bl + 1);
    if (!pt->body)
        return DW_ERR_NOMEM;
    memcpy(pt->body, b, bl);
    pt->body[bl] = '\0';
    pt->body_len = bl;
    out->n++;
    return DW_OK;
}

static dw_err_t parse_multipart(const char *ct, const char *body, size_t len, int changeset,
                                int *nchangesets, partvec_t *out, int depth)
{
    char bnd[200], delim[210];
    if (depth > 1 || !boundary_of(ct, bnd, sizeof(bnd)))
        return DW_ERR_PARSE;
    int dl = snprintf(delim, sizeof(delim), "--%s", bnd);
    const char *end = body + len;
    const char *p = find_mem(body, len, delim, (size_t)dl);
    if (!p)
        return DW_ERR_PARSE;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return DW_OK; /* close delimiter */
        /* rest of the delimiter line */
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return DW_ERR_PARSE;
        const char *start = eol + 1;
        const char *next = find_mem(start, (size_t)(end - start), delim, (size_t)dl);
        if (!next)
            return DW_ERR_PARSE; /* truncated: the part has no end */
        /* the part ends before the CRLF that precedes the next delimiter */
        const char *pe = next;
        if (pe > start && pe[-1] == '\n')
            pe--;
        if (pe > start && pe[-1] == '\r')
            pe--;
        hdrs_t mime;
        const char *content = parse_headers(start, pe, &mime);
        if (!content)
            return DW_ERR_PARSE;
        dw_err_t err;
        if (strncasecmp(mime.ctype, "multipart/mixed", 15) == 0) {
            int cs = (*nchangesets)++;
            err = parse_multipart(mime.ctype, content, (size_t)(pe - content), cs, nchangesets, out,
                                  depth + 1);
        } else {
            err = parse_http_part(&mime, content, pe, changeset, out);
        }
        if (err)
            return err;
        p = next;
    }
}

dw_err_t dw_target_multipart_parse(const char *content_type, const char *body, size_t len,
                                   dw_tpart_t **parts, size_t *n)
{
    partvec_t v = {0};
    int ncs = 0;
    dw_err_t err = body ? parse_multipart(content_type, body, len, -1, &ncs, &v, 0) : DW_ERR_PARSE;
    *parts = v.v;
    *n = v.n;
    return err;
}

void dw_target_parts_free(dw_tpart_t *parts, size_t n)
{
    for (size_t i = 0; parts && i < n; i++)
        free(parts[i].body);
    free(parts);
}

/* ---- builders -------------------------------------------------------------------------------- */

static void sb_str(dw_buf_t *s, const char *p)
{
    dw_buf_put(s, p, strlen(p));
}

static char *sb_take(dw_buf_t *s, size_t *len)
{
    if (s->fail) {
        free(s->p);
        return NULL;
    }
    if (!s->p)
        dw_buf_put(s, "", 0);
    if (s->fail)
        return NULL;
    if (len)
        *len = s->n;
    return s->p;
}

/* 'value' with every quote doubled, raw (for @odata.id inside JSON). */
static void sb_literal_raw(dw_buf_t *s, const char *v)
{
    dw_buf_put(s, "'", 1);
    for (; *v; v++) {
        if (*v == '\'')
            dw_buf_put(s, "''", 2);
        else
            dw_buf_put(s, v, 1);
    }
    dw_buf_put(s, "'", 1);
}

char *dw_target_key_path(const char *set, const json_t *key, const json_t *guids,
                         const char *record_id, bool encode)
{
    dw_buf_t s = {0};
    sb_str(&s, set);
    dw_buf_put(&s, "(", 1);
    if (!key || json_object_size(key) == 0) {
        if (!record_id) {
            free(s.p);
            return NULL;
        }
        sb_str(&s, record_id);
    } else {
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach((json_t *)key, k, v)
        {
            if (!first)
                dw_buf_put(&s, ",", 1);
            first = false;
            sb_str(&s, k);
            dw_buf_put(&s, "=", 1);
            const char *g = json_string_value(json_object_get(guids, k));
            if (g) {
                sb_str(&s, g);
            } else if (json_is_string(v)) {
                if (encode) {
                    char *lit = dw_http_odata_literal(json_string_value(v));
                    if (!lit) {
                        s.fail = true;
                        break;
                    }
                    sb_str(&s, lit);
                    free(lit);
                } else {
                    sb_literal_raw(&s, json_string_value(v));
                }
            } else if (json_is_integer(v)) {
                dw_buf_printf(&s, "%lld", (long long)json_integer_value(v));
            } else if (json_is_real(v)) {
                dw_buf_printf(&s, "%.17g", json_real_value(v));
            } else if (json_is_boolean(v)) {
                sb_str(&s, json_is_true(v) ? "true" : "false");
            } else if (json_is_null(v)) {
                sb_str(&s, "null");
            } else {
                free(s.p);
                return NULL;
            }
        }
    }
    dw_buf_put(&s, ")", 1);
    return sb_take(&s, NULL);
}

static void put_request(dw_buf_t *s, const char *bnd, size_t i, const dw_treq_t *r)
{
    dw_buf_printf(s,
                  "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                  "Content-ID: %zu\r\n\r\n%s %s HTTP/1.1\r\n",
                  bnd, i + 1, r->method, r->url);
    sb_str(s, "Accept: application/json\r\n");
    if (r->correlation_id && *r->correlation_id && !strpbrk(r->correlation_id, "\r\n"))
        dw_buf_printf(s, "%s: %s\r\n", DW_HTTP_CORRELATION_HEADER, r->correlation_id);
    if (r->body) {
        sb_str(s, "Content-Type: application/json; type=entry; IEEE754Compatible=true\r\n\r\n");
        sb_str(s, r->body);
        sb_str(s, "\r\n");
    } else {
        sb_str(s, "\r\n");
    }
}

char *dw_target_batch_body(const char *boundary, const dw_treq_t *reqs, size_t n, bool changesets,
                           size_t *len)
{
    dw_buf_t s = {0};
    for (size_t i = 0; i < n; i++) {
        if (changesets) {
            char cs[96];
            snprintf(cs, sizeof(cs), "changeset_%zu_%.60s", i + 1, boundary);
            dw_buf_printf(&s, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n",
                          boundary, cs);
            put_request(&s, cs, i, &reqs[i]);
            dw_buf_printf(&s, "--%s--\r\n", cs);
        } else {
            put_request(&s, boundary, i, &reqs[i]);
        }
    }
    dw_buf_printf(&s, "--%s--\r\n", boundary);
    return sb_take(&s, len);
}

static bool is_guid(const char *s, size_t l)
{
    if (l != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool dw_target_entity_guid(const char *entity_id, char out[37])
{
    out[0] = '\0';
    if (!entity_id)
        return false;
    const char *open = strrchr(entity_id, '(');
    if (!open)
        return false;
    const char *close = strchr(open, ')');
    if (!close || !is_guid(open + 1, (size_t)(close - open - 1)))
        return false;
    memcpy(out, open + 1, 36);
    out[36] = '\0';
    return true;
}

const char *dw_target_row_guid(const json_t *row, const char *set)
{
    const char *k, *only = NULL;
    json_t *v;
    int count = 0;
    json_object_foreach((json_t *)row, k, v)
    {
        size_t kl = strlen(k);
        const char *s = json_string_value(v);
        if (k[0] == '_' || kl < 3 || strcmp(k + kl - 2, "id") != 0 || !s || !is_guid(s, strlen(s)))
            continue;
        size_t stem = kl - 2; /* cdm_companyid -> cdm_company(ies), accountid -> account(s) */
        if (set &&
            (strncmp(set, k, stem) == 0 || (k[stem - 1] == 'y' && strncmp(set, k, stem - 1) == 0 &&
                                            strncmp(set + stem - 1, "ies", 3) == 0)))
            return s;
        only = s;
        count++;
    }
    return count == 1 ? only : NULL;
}

/* ---- object text ------------------------------------------------------------------------------
 */

static const char *tobj_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the string starting at p (its opening quote): after the closing quote. */
static const char *tobj_str_end(const char *p, const char *end)
{
    for (p++; p < end;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return end;
        /* escaped when an odd number of backslashes precede it */
        size_t bs = 0;
        while (q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            return q + 1;
        p = q + 1;
    }
    return end;
}

/* The end of the value starting at p. */
static const char *tobj_value_end(const char *p, const char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return tobj_str_end(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = tobj_str_end(p, end);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p;
}

void dw_tobj_init(dw_tobj_t *it, const char *text, size_t len)
{
    const char *end = text + len;
    const char *p = tobj_ws(text, end);
    it->p = p < end && *p == '{' ? p + 1 : end;
    it->end = end;
}

bool dw_tobj_next(dw_tobj_t *it, const char **key, size_t *klen, bool *kesc, const char **val,
                  size_t *vlen)
{
    const char *p = tobj_ws(it->p, it->end);
    if (p < it->end && *p == ',')
        p = tobj_ws(p + 1, it->end);
    if (p >= it->end || *p != '"') {
        it->p = it->end;
        return false;
    }
    const char *ke = tobj_str_end(p, it->end);
    *key = p + 1;
    *klen = ke > p + 1 ? (size_t)(ke - p - 2) : 0;
    *kesc = memchr(*key, '\\', *klen) != NULL;
    p = tobj_ws(ke, it->end);
    if (p < it->end && *p == ':')
        p = tobj_ws(p + 1, it->end);
    const char *ve = tobj_value_end(p, it->end);
    *val = p;
    *vlen = (size_t)(ve - p);
    it->p = ve;
    return true;
}

