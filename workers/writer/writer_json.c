/*
 * writer_json: a strict JSON check without a document tree, for the command's bulky member.
 * wr_json_check reads a text as jansson reads it with JSON_REJECT_DUPLICATES (RFC 8259 grammar,
 * UTF-8, no "\u0000", no lone surrogate, no duplicate member in any object, integers that fit
 * 64 bits, finite reals, at most 2048 levels) and reports the first fault with its line and
 * column, but allocates nothing on the way (but for objects of more than 32 members or with
 * escaped member names) and builds no tree: the command's `fields` are checked here and kept as
 * text, which the target writes into its request as they are (writer_command.c). Pure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_json.h"
#include "writer.h"

#define WR_JSON_MAX_DEPTH 2048

typedef struct jscan_s {
    const unsigned char *s, *p, *e;
    int depth;
    char *why;
    size_t why_size;
} jscan_t;

/* A member name: its bytes as written (esc false) or unescaped into new memory (esc true). */
typedef struct jkey_s {
    const char *p;
    size_t n;
    bool own;
} jkey_t;

static bool fail(jscan_t *j, const char *msg)
{
    int line = 1, col = 1;
    for (const unsigned char *q = j->s; q < j->p && q < j->e; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if ((*q & 0xc0) != 0x80) {
            col++;
        }
    }
    snprintf(j->why, j->why_size, "line %d column %d: %s", line, col, msg);
    return false;
}

static void ws(jscan_t *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* A string at p (the opening quote). *esc: it holds an escape. */
static bool scan_string(jscan_t *j, bool *esc)
{
    const char *why = dw_json_scan_string(&j->p, j->e, esc);
    return why ? fail(j, why) : true;
}

/* The unescaped bytes of a string's inside raw[0..n) (a checked string) into out (size bytes,
 * room for them and a NUL). Returns the length. */
static size_t unescape(const char *raw, size_t n, char *out, size_t size)
{
    size_t len = 0;
    return dw_json_unescape(raw, n, out, size, &len) ? len : 0;
}

static bool scan_number(jscan_t *j)
{
    const unsigned char *start = j->p;
    bool real;
    const char *why = dw_json_scan_number(&j->p, j->e, &real);
    if (!why)
        why = dw_json_number_value((const char *)start, (size_t)(j->p - start), real, NULL, NULL);
    return why ? fail(j, why) : true;
}

static bool scan_value(jscan_t *j);

static bool keys_equal(const jkey_t *a, const jkey_t *b)
{
    return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

static int key_cmp(const void *x, const void *y)
{
    const jkey_t *a = x, *b = y;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    return memcmp(a->p, b->p, a->n);
}

/* An object at p ('{'). want[0..nwant): the members whose value spans (and member counts, for
 * objects) are asked for (top level only; NULL for the others); unknown: the first member name
 * not among them, as written ("" in quotes for an empty name, so that it is never empty when there
 * is one; NULL: do not care). *count: its members (may be NULL). */
static bool scan_object(jscan_t *j, wr_jmember_t *want, size_t nwant, char *unknown,
                        size_t unknown_size, size_t *count)
{
    jkey_t local[32], *keys = local;
    size_t nk = 0, cap = 32;
    bool ok = false;
    j->p++;
    ws(j);
    if (j->p < j->e && *j->p == '}') {
        j->p++;
        ok = true;
        goto out;
    }
    for (;;) {
        ws(j);
        if (j->p >= j->e || *j->p != '"') {
            fail(j, "string or '}' expected");
            goto out;
        }
        const unsigned char *ks = j->p + 1;
        bool esc;
        if (!scan_string(j, &esc))
            goto out;
        jkey_t k = {(const char *)ks, (size_t)(j->p - 1 - ks), false};
        if (esc) {
            char *d = malloc(k.n ? k.n : 1);
            if (!d) {
                fail(j, "out of memory");
                goto out;
            }
            k.n = unescape(k.p, k.n, d, k.n ? k.n : 1); /* escapes only shrink */
            k.p = d;
            k.own = true;
        }
        if (nk == cap) {
            size_t nc = cap * 2;
            jkey_t *nv = keys == local ? malloc(nc * sizeof(*nv)) : realloc(keys, nc * sizeof(*nv));
            if (!nv) {
                if (k.own)
                    free((char *)k.p);
                fail(j, "out of memory");
                goto out;
            }
            if (keys == local)
                memcpy(nv, local, sizeof(local));
            keys = nv;
            cap = nc;
        }
        keys[nk++] = k;
        if (nk <= 32)
            for (size_t i = 0; i + 1 < nk; i++)
                if (keys_equal(&keys[i], &k)) {
                    fail(j, "duplicate object key");
                    goto out;
                }
        ws(j);
        if (j->p >= j->e || *j->p != ':') {
            fail(j, "':' expected");
            goto out;
        }
        j->p++;
        ws(j);
        const unsigned char *vs = j->p;
        wr_jmember_t *m = NULL;
        for (size_t w = 0; w < nwant && !m; w++)
            if (want[w].namelen == k.n && memcmp(want[w].name, k.p, k.n) == 0)
                m = &want[w];
        if (want && !m && unknown && !unknown[0]) /* an empty name is shown as "" */
            snprintf(unknown, unknown_size, "%.*s", k.n ? (int)(k.n < 200 ? k.n : 200) : 2,
                     k.n ? (const char *)k.p : "\"\"");
        if (m && j->p < j->e && *j->p == '{') {
            bool vok = ++j->depth <= WR_JSON_MAX_DEPTH
                           ? scan_object(j, NULL, 0, NULL, 0, &m->nmembers)
                           : fail(j, "maximum parsing depth reached");
            j->depth--;
            if (!vok)
                goto out;
        } else if (!scan_value(j)) {
            goto out;
        }
        if (m) {
            m->v.p = (const char *)vs;
            m->v.n = (size_t)(j->p - vs);
        }
        ws(j);
        if (j->p < j->e && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->e && *j->p == '}') {
            j->p++;
            break;
        }
        fail(j, "',' or '}' expected");
        goto out;
    }
    if (nk > 32) {
        /* many members: sort a copy and compare neighbours */
        qsort(keys, nk, sizeof(*keys), key_cmp);
        for (size_t i = 0; i + 1 < nk; i++)
            if (keys_equal(&keys[i], &keys[i + 1])) {
                fail(j, "duplicate object key");
                goto out;
            }
    }
    ok = true;
out:
    if (count)
        *count = nk;
    for (size_t i = 0; i < nk; i++)
        if (keys[i].own)
            free((char *)keys[i].p);
    if (keys != local)
        free(keys);
    return ok;
}

static bool scan_array(jscan_t *j)
{
    j->p++;
    ws(j);
    if (j->p < j->e && *j->p == ']') {
        j->p++;
        return true;
    }
    for (;;) {
        ws(j);
        if (!scan_value(j))
            return false;
        ws(j);
        if (j->p < j->e && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->e && *j->p == ']') {
            j->p++;
            return true;
        }
        return fail(j, "',' or ']' expected");
    }
}

static bool literal(jscan_t *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->e - j->p) < n || memcmp(j->p, lit, n) != 0)
        return fail(j, "invalid token");
    j->p += n;
    return true;
}

static bool scan_value(jscan_t *j)
{
    if (j->p >= j->e)
        return fail(j, "premature end of input");
    bool esc, ok;
    switch (*j->p) {
    case '{':
    case '[':
        if (++j->depth > WR_JSON_MAX_DEPTH)
            return fail(j, "maximum parsing depth reached");
        ok = *j->p == '{' ? scan_object(j, NULL, 0, NULL, 0, NULL) : scan_array(j);
        j->depth--;
        return ok;
    case '"':
        return scan_string(j, &esc);
    case 't':
        return literal(j, "true");
    case 'f':
        return literal(j, "false");
    case 'n':
        return literal(j, "null");
    default:
        return scan_number(j);
    }
}

dw_err_t wr_json_check(const char *text, size_t len, wr_jmember_t *m, size_t n, char *unknown,
                       size_t unknown_size, char *why, size_t why_size)
{
    jscan_t j = {(const unsigned char *)text,
                 (const unsigned char *)text,
                 (const unsigned char *)text + len,
                 0,
                 why,
                 why_size};
    why[0] = '\0';
    if (unknown && unknown_size)
        unknown[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        m[i].namelen = strlen(m[i].name);
        m[i].v.p = NULL;
        m[i].v.n = 0;
        m[i].nmembers = 0;
    }
    ws(&j);
    if (j.p >= j.e || *j.p != '{') {
        fail(&j, "'{' expected");
        return DW_ERR_PARSE;
    }
    j.depth = 1;
    if (!scan_object(&j, m, n, unknown, unknown_size, NULL))
        return DW_ERR_PARSE;
    ws(&j);
    if (j.p != j.e) {
        fail(&j, "end of input expected");
        return DW_ERR_PARSE;
    }
    return DW_OK;
}

bool wr_json_string(const wr_jspan_t *v, char *out, size_t *len)
{
    if (!v->p || v->n < 2 || v->p[0] != '"')
        return false;
    *len = unescape(v->p + 1, v->n - 2, out, v->n - 1);
    out[*len] = '\0';
    return true;
}

const char *wr_json_kind(const wr_jspan_t *v)
{
    switch (v->p ? v->p[0] : 0) {
    case '{':
        return "object";
    case '[':
        return "array";
    case '"':
        return "string";
    case 't':
    case 'f':
        return "boolean";
    case 'n':
        return "null";
    default:
        return memchr(v->p, '.', v->n) || memchr(v->p, 'e', v->n) || memchr(v->p, 'E', v->n)
                   ? "real"
                   : "integer";
    }
}

/* A scalar value span as a new jansson value; NULL when not a string, number or boolean (or out
 * of memory: *nomem). */
static json_t *scalar(const wr_jspan_t *v, bool *nomem)
{
    json_t *out = NULL;
    char stack[256];
    switch (v->p[0]) {
    case '"': {
        char *buf = v->n <= sizeof(stack) ? stack : malloc(v->n);
        size_t l = 0;
        if (!buf) {
            *nomem = true;
            return NULL;
        }
        wr_json_string(v, buf, &l);
        out = json_stringn_nocheck(buf, l);
        if (buf != stack)
            free(buf);
        break;
    }
    case 't':
        out = json_true();
        break;
    case 'f':
        out = json_false();
        break;
    case 'n':
    case '{':
    case '[':
        return NULL;
    default: {
        size_t n = v->n < sizeof(stack) - 1 ? v->n : sizeof(stack) - 1;
        memcpy(stack, v->p, n);
        stack[n] = '\0';
        out = strcmp(wr_json_kind(v), "integer") == 0 ? json_integer(strtoll(stack, NULL, 10))
                                                      : json_real(strtod(stack, NULL));
    }
    }
    if (!out)
        *nomem = true;
    return out;
}

dw_err_t wr_json_flat_object(const wr_jspan_t *v, json_t **out)
{
    *out = NULL;
    if (!v->p || v->p[0] != '{')
        return DW_ERR_PARSE;
    json_t *obj = json_object();
    if (!obj)
        return DW_ERR_NOMEM;
    /* walk the checked text: "name" : value , ... */
    jscan_t j = {(const unsigned char *)v->p,
                 (const unsigned char *)v->p + 1,
                 (const unsigned char *)v->p + v->n,
                 1,
                 NULL,
                 0};
    char kstack[256];
    for (;;) {
        ws(&j);
        if (j.p >= j.e || *j.p != '"')
            break; /* '}' */
        const unsigned char *ks = j.p + 1;
        bool esc;
        char tmp[8];
        j.why = tmp; /* never fails: the text was checked */
        j.why_size = sizeof(tmp);
        scan_string(&j, &esc);
        wr_jspan_t kspan = {(const char *)ks - 1, (size_t)(j.p - ks + 1)};
        ws(&j);
        j.p++; /* ':' */
        ws(&j);
        const unsigned char *vs = j.p;
        scan_value(&j);
        wr_jspan_t vspan = {(const char *)vs, (size_t)(j.p - vs)};
        bool nomem = false;
        json_t *val = scalar(&vspan, &nomem);
        char *kbuf = kspan.n <= sizeof(kstack) ? kstack : malloc(kspan.n);
        size_t kl = 0;
        if (!val || !kbuf) {
            if (kbuf && kbuf != kstack)
                free(kbuf);
            json_decref(val);
            json_decref(obj);
            return nomem || !kbuf ? DW_ERR_NOMEM : DW_ERR_PARSE;
        }
        wr_json_string(&kspan, kbuf, &kl);
        int rc = json_object_setn_new_nocheck(obj, kbuf, kl, val);
        if (kbuf != kstack)
            free(kbuf);
        if (rc != 0) {
            json_decref(obj);
            return DW_ERR_NOMEM;
        }
        ws(&j);
        if (j.p < j.e && *j.p == ',')
            j.p++;
    }
    *out = obj;
    return DW_OK;
}
