/*
 * dw_json: small jansson helpers (see dw_json.h).
 */
#include "dw_json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dw_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

bool dw_json_unescape(const char *raw, size_t n, char *out, size_t out_size, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char tmp[4];
        size_t tl = 0;
        if (raw[i] != '\\') {
            tmp[tl++] = raw[i++];
        } else if (i + 1 < n && raw[i + 1] != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = raw[i + 1] ? strchr(from, raw[i + 1]) : NULL;
            if (!f)
                return false;
            tmp[tl++] = to[f - from];
            i += 2;
        } else {
            long v = i + 6 <= n ? dw_json_hex4(raw + i + 2) : -1;
            if (v < 0)
                return false;
            i += 6;
            if (v >= 0xd800 && v <= 0xdbff) {
                long w = i + 6 <= n && raw[i] == '\\' ? dw_json_hex4(raw + i + 2) : -1;
                if (w < 0xdc00 || w > 0xdfff)
                    return false;
                v = 0x10000 + ((v - 0xd800) << 10) + (w - 0xdc00);
                i += 6;
            }
            if (v < 0x80) {
                tmp[tl++] = (char)v;
            } else if (v < 0x800) {
                tmp[tl++] = (char)(0xc0 | (v >> 6));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            } else if (v < 0x10000) {
                tmp[tl++] = (char)(0xe0 | (v >> 12));
                tmp[tl++] = (char)(0x80 | ((v >> 6) & 0x3f));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            } else {
                tmp[tl++] = (char)(0xf0 | (v >> 18));
                tmp[tl++] = (char)(0x80 | ((v >> 12) & 0x3f));
                tmp[tl++] = (char)(0x80 | ((v >> 6) & 0x3f));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            }
        }
        if (o + tl + 1 > out_size)
            return false;
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    if (o + 1 > out_size)
        return false;
    out[o] = '\0';
    if (len)
        *len = o;
    return true;
}

/* ---- strict reading -------------------------------------------------------------------------- */

size_t dw_json_utf8_len(const unsigned char *p, const unsigned char *e)
{
    unsigned char c = *p;
    size_t n;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
        n = 1;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(e - p) <= n)
        return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

static long hex4_at(const unsigned char *p, const unsigned char *e)
{
    return e - p < 4 ? -1 : dw_json_hex4((const char *)p);
}

const char *dw_json_scan_string(const unsigned char **pp, const unsigned char *e, bool *esc)
{
    const unsigned char *p = *pp + 1;
    const char *why = NULL;
    *esc = false;
    for (;;) {
        /* the common case first: a run of plain printable ASCII */
        while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= e) {
            why = "premature end of input in a string";
            break;
        }
        unsigned char c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20) {
            why = "control character in a string";
            break;
        }
        if (c == '\\') {
            *esc = true;
            if (e - p < 2) {
                why = "premature end of input in a string";
                break;
            }
            unsigned char x = p[1];
            if (x == 'u') {
                long v = hex4_at(p + 2, e);
                if (v < 0) {
                    why = "invalid \\u escape";
                    break;
                }
                if (v == 0) {
                    why = "\\u0000 is not allowed";
                    break;
                }
                p += 6;
                if (v >= 0xdc00 && v <= 0xdfff) {
                    why = "invalid Unicode (a lone low surrogate)";
                    break;
                }
                if (v >= 0xd800 && v <= 0xdbff) {
                    long w = (e - p >= 6 && p[0] == '\\' && p[1] == 'u') ? hex4_at(p + 2, e) : -1;
                    if (w < 0xdc00 || w > 0xdfff) {
                        why = "invalid Unicode (a lone high surrogate)";
                        break;
                    }
                    p += 6;
                }
                continue;
            }
            if (x == 0 || !strchr("\"\\/bfnrt", x)) {
                why = "invalid escape";
                break;
            }
            p += 2;
            continue;
        }
        size_t n = dw_json_utf8_len(p, e);
        if (!n) {
            why = "invalid UTF-8";
            break;
        }
        p += n;
    }
    *pp = p;
    return why;
}

const char *dw_json_scan_number(const unsigned char **pp, const unsigned char *e, bool *real)
{
    const unsigned char *p = *pp;
    const char *why = NULL;
    *real = false;
    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9') {
        why = "invalid token";
        goto out;
    }
    if (*p == '0') {
        p++;
        if (p < e && *p >= '0' && *p <= '9') {
            why = "invalid token (leading zero)";
            goto out;
        }
    } else {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && *p == '.') {
        *real = true;
        p++;
        if (p >= e || *p < '0' || *p > '9') {
            why = "invalid token";
            goto out;
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *real = true;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9') {
            why = "invalid token";
            goto out;
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
out:
    *pp = p;
    return why;
}

const char *dw_json_number_value(const char *s, size_t n, bool real, long long *iv, double *dv)
{
    if (!real && n <= 18) {
        /* fits: no conversion call (the common case of a short integer) */
        long long v = 0;
        size_t i = s[0] == '-';
        for (; i < n; i++)
            v = v * 10 + (s[i] - '0');
        if (iv)
            *iv = s[0] == '-' ? -v : v;
        return NULL;
    }
    char stack[64], *tmp = n < sizeof(stack) ? stack : malloc(n + 1);
    if (!tmp)
        return "out of memory";
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    const char *why = NULL;
    errno = 0;
    if (!real) {
        long long v = strtoll(tmp, NULL, 10);
        if (errno == ERANGE)
            why = "too big integer";
        else if (iv)
            *iv = v;
    } else {
        double d = strtod(tmp, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            why = "real number overflow";
        else if (dv)
            *dv = d;
    }
    if (tmp != stack)
        free(tmp);
    return why;
}

typedef struct jload_s {
    const unsigned char *s, *p, *e;
    size_t flags;
    int depth;
    const char *why;
} jload_t;

static void jl_ws(jload_t *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static json_t *jl_fail(jload_t *j, const char *why)
{
    if (!j->why)
        j->why = why;
    return NULL;
}

static json_t *jl_value(jload_t *j);

/* The string at j->p (its opening quote), unescaped: *s, *n; *buf (to free) holds it when it had
 * an escape, else it points into the text and *buf is NULL. */
static bool jl_text(jload_t *j, const char **s, size_t *n, char **buf)
{
    const unsigned char *start = j->p + 1;
    bool esc;
    const char *why = dw_json_scan_string(&j->p, j->e, &esc);
    *buf = NULL;
    if (why)
        return jl_fail(j, why), false;
    *s = (const char *)start;
    *n = (size_t)(j->p - 1 - start);
    if (esc) {
        if (!(*buf = malloc(*n + 1))) /* escapes only shrink */
            return jl_fail(j, "out of memory"), false;
        dw_json_unescape(*s, *n, *buf, *n + 1, n); /* checked by the scan */
        *s = *buf;
    }
    return true;
}

static json_t *jl_string(jload_t *j)
{
    const char *s;
    size_t n;
    char *buf;
    if (!jl_text(j, &s, &n, &buf))
        return NULL;
    json_t *v = json_stringn_nocheck(s, n);
    free(buf);
    return v ? v : jl_fail(j, "out of memory");
}

/* One member ("name": value, j->p at the name's quote) into obj. */
static bool jl_member(jload_t *j, json_t *obj)
{
    const char *key;
    size_t kl;
    char *buf;
    if (!jl_text(j, &key, &kl, &buf))
        return false;
    bool ok = false;
    jl_ws(j);
    if ((j->flags & JSON_REJECT_DUPLICATES) && json_object_getn(obj, key, kl)) {
        jl_fail(j, "duplicate object key");
    } else if (j->p >= j->e || *j->p != ':') {
        jl_fail(j, "':' expected");
    } else {
        j->p++;
        jl_ws(j);
        json_t *v = jl_value(j);
        ok = v && json_object_setn_new_nocheck(obj, key, kl, v) == 0;
        if (v && !ok)
            jl_fail(j, "out of memory");
    }
    free(buf);
    return ok;
}

static json_t *jl_object(jload_t *j)
{
    json_t *obj = json_object();
    if (!obj)
        return jl_fail(j, "out of memory");
    j->p++;
    jl_ws(j);
    if (j->p < j->e && *j->p == '}') {
        j->p++;
        return obj;
    }
    for (;;) {
        jl_ws(j);
        if (j->p >= j->e || *j->p != '"') {
            jl_fail(j, "string or '}' expected");
            break;
        }
        if (!jl_member(j, obj))
            break;
        jl_ws(j);
        if (j->p < j->e && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->e && *j->p == '}') {
            j->p++;
            return obj;
        }
        jl_fail(j, "',' or '}' expected");
        break;
    }
    json_decref(obj);
    return NULL;
}

static json_t *jl_array(jload_t *j)
{
    json_t *arr = json_array();
    if (!arr)
        return jl_fail(j, "out of memory");
    j->p++;
    jl_ws(j);
    if (j->p < j->e && *j->p == ']') {
        j->p++;
        return arr;
    }
    for (;;) {
        jl_ws(j);
        json_t *v = jl_value(j);
        if (!v || json_array_append_new(arr, v) != 0) {
            if (v)
                jl_fail(j, "out of memory");
            break;
        }
        jl_ws(j);
        if (j->p < j->e && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->e && *j->p == ']') {
            j->p++;
            return arr;
        }
        jl_fail(j, "',' or ']' expected");
        break;
    }
    json_decref(arr);
    return NULL;
}

static json_t *jl_literal(jload_t *j, const char *lit, json_t *v)
{
    size_t n = strlen(lit);
    if ((size_t)(j->e - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jl_fail(j, "invalid token");
    j->p += n;
    return v;
}

static json_t *jl_value(jload_t *j)
{
    if (j->p >= j->e)
        return jl_fail(j, "premature end of input");
    switch (*j->p) {
    case '{':
    case '[': {
        if (++j->depth > JSON_PARSER_MAX_DEPTH)
            return jl_fail(j, "maximum parsing depth reached");
        json_t *v = *j->p == '{' ? jl_object(j) : jl_array(j);
        j->depth--;
        return v;
    }
    case '"':
        return jl_string(j);
    case 't':
        return jl_literal(j, "true", json_true());
    case 'f':
        return jl_literal(j, "false", json_false());
    case 'n':
        return jl_literal(j, "null", json_null());
    default: {
        const unsigned char *start = j->p;
        bool real;
        const char *why = dw_json_scan_number(&j->p, j->e, &real);
        long long iv = 0;
        double dv = 0;
        if (!why)
            why = dw_json_number_value((const char *)start, (size_t)(j->p - start), real, &iv, &dv);
        if (why) {
            j->p = start;
            return jl_fail(j, why);
        }
        json_t *v = real ? json_real(dv) : json_integer((json_int_t)iv);
        return v ? v : jl_fail(j, "out of memory");
    }
    }
}

json_t *dw_json_loadb(const char *text, size_t len, size_t flags, json_error_t *err)
{
    if (flags & ~(size_t)(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY))
        return json_loadb(text, len, flags, err);
    jload_t j = {(const unsigned char *)text, (const unsigned char *)text,
                 (const unsigned char *)text + len, flags, 0, NULL};
    json_t *v = NULL;
    jl_ws(&j);
    if (!(flags & JSON_DECODE_ANY) && (j.p >= j.e || (*j.p != '[' && *j.p != '{')))
        jl_fail(&j, j.p >= j.e ? "premature end of input" : "'[' or '{' expected");
    else
        v = jl_value(&j);
    if (v) {
        jl_ws(&j);
        if (j.p != j.e) {
            json_decref(v);
            v = jl_fail(&j, "end of file expected");
        }
    }
    if (!v && err) {
        /* where: line and column (in characters) of the fault, as jansson counts them */
        int line = 1, col = 0;
        for (const unsigned char *q = j.s; q < j.p && q < j.e; q++) {
            if (*q == '\n') {
                line++;
                col = 0;
            } else if ((*q & 0xc0) != 0x80) {
                col++;
            }
        }
        err->line = line;
        err->column = col + 1;
        err->position = (int)(j.p - j.s);
        snprintf(err->source, sizeof(err->source), "%s", "<buffer>");
        snprintf(err->text, sizeof(err->text), "%s", j.why ? j.why : "invalid JSON");
    }
    return v;
}
