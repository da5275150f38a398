/*
 * emu_odata: OData resource path and query option parsing for the emulators. A small recursive
 * descent over the path text; no allocation beyond the parts it returns, no recursion depth that
 * input controls.
 */
#include "emu_odata.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool seg_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '$';
}

static bool bare_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == ':' || c == '+';
}

bool emu_odata_is_ident(const char *s)
{
    size_t n = 0;
    if (!s || !*s)
        return false;
    for (; s[n]; n++) {
        if (!(isalnum((unsigned char)s[n]) || s[n] == '_'))
            return false;
    }
    return n <= 128;
}

bool emu_odata_is_guid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool want_dash = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
        if (want_dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

void emu_odata_path_clear(emu_odata_path_t *p)
{
    free(p->segment);
    for (size_t i = 0; i < p->nkeys; i++) {
        free(p->keys[i].name);
        free(p->keys[i].value);
    }
    free(p->rest);
    memset(p, 0, sizeof(*p));
}

/* Parse a value at *sp: 'quoted' or bare. New string in *out. */
static dw_err_t parse_value(const char **sp, char **out, bool *quoted, char *errstr, size_t n)
{
    const char *s = *sp;
    *out = NULL;
    if (*s == '\'') {
        size_t cap = strlen(s) + 1, len = 0;
        char *v = malloc(cap);
        if (!v)
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
        s++;
        for (;;) {
            if (*s == '\0') {
                free(v);
                return dw_errf(DW_ERR_PARSE, errstr, n,
                               "Bad Request - Error in query syntax: unterminated string literal in key");
            }
            if (*s == '\'') {
                if (s[1] == '\'') {
                    v[len++] = '\'';
                    s += 2;
                    continue;
                }
                s++;
                break;
            }
            v[len++] = *s++;
        }
        v[len] = '\0';
        *out = v;
        *quoted = true;
    } else {
        const char *b = s;
        while (bare_char(*s))
            s++;
        if (s == b)
            return dw_errf(DW_ERR_PARSE, errstr, n,
                           "Bad Request - Error in query syntax: expected a key value");
        *out = strndup(b, (size_t)(s - b));
        if (!*out)
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
        *quoted = false;
    }
    *sp = s;
    return DW_OK;
}

dw_err_t emu_odata_path_parse(const char *path, emu_odata_path_t *out, char *errstr,
                              size_t errstr_size)
{
    dw_err_t err = DW_OK;
    const char *s = path;
    memset(out, 0, sizeof(*out));
    const char *b = s;
    while (seg_char(*s))
        s++;
    if (s == b) {
        err = dw_errf(DW_ERR_PARSE, errstr, errstr_size, "Resource not found for the segment ''.");
        goto fail;
    }
    out->segment = strndup(b, (size_t)(s - b));
    if (!out->segment) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (*s == '(') {
        out->has_key = true;
        s++;
        for (;;) {
            if (out->nkeys == EMU_ODATA_MAX_KEYS) {
                err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                              "Bad Request - Error in query syntax: too many key parts");
                goto fail;
            }
            emu_odata_key_t *k = &out->keys[out->nkeys];
            /* name=value or value */
            const char *nb = s;
            while (isalnum((unsigned char)*s) || *s == '_')
                s++;
            if (s > nb && *s == '=') {
                k->name = strndup(nb, (size_t)(s - nb));
                if (!k->name) {
                    err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
                    goto fail;
                }
                s++;
            } else {
                s = nb;
            }
            out->nkeys++;
            err = parse_value(&s, &k->value, &k->quoted, errstr, errstr_size);
            if (err)
                goto fail;
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s == ')') {
                s++;
                break;
            }
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "Bad Request - Error in query syntax: expected ',' or ')' in key");
            goto fail;
        }
        /* an unnamed part is only valid alone */
        for (size_t i = 0; i < out->nkeys; i++) {
            if (!out->keys[i].name && out->nkeys > 1) {
                err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                              "Bad Request - Error in query syntax: mixed named and unnamed key parts");
                goto fail;
            }
            for (size_t j = 0; j < i; j++) {
                if (out->keys[i].name && strcmp(out->keys[i].name, out->keys[j].name) == 0) {
                    err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                                  "Bad Request - Error in query syntax: duplicate key part '%s'",
                                  out->keys[i].name);
                    goto fail;
                }
            }
        }
    }
    if (*s == '/') {
        s++;
        const char *rb = s;
        while (seg_char(*s) || *s == '/')
            s++;
        if (s == rb || *s != '\0') {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "Bad Request - Error in query syntax: bad path segment");
            goto fail;
        }
        out->rest = strdup(rb);
        if (!out->rest) {
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto fail;
        }
    } else if (*s != '\0') {
        err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                      "Bad Request - Error in query syntax: unexpected text after the resource");
        goto fail;
    }
    return DW_OK;
fail:
    emu_odata_path_clear(out);
    return err;
}

const char *emu_odata_key_get(const emu_odata_path_t *p, const char *name)
{
    for (size_t i = 0; i < p->nkeys; i++) {
        if (p->keys[i].name && strcmp(p->keys[i].name, name) == 0)
            return p->keys[i].value;
    }
    return NULL;
}

void emu_odata_query_clear(emu_odata_query_t *q)
{
    for (size_t i = 0; i < q->nselect; i++)
        free(q->select[i]);
    for (size_t i = 0; i < q->norderby; i++)
        free(q->orderby[i].col);
    free(q->filter);
    free(q->skiptoken);
    free(q->deltatoken);
    free(q->expand);
    memset(q, 0, sizeof(*q));
    q->top = -1;
}

static const struct {
    const char *name;
    unsigned bit;
} emu_q_names[] = {
    {"$select", EMU_Q_SELECT},       {"$filter", EMU_Q_FILTER},   {"$top", EMU_Q_TOP},
    {"$orderby", EMU_Q_ORDERBY},     {"$count", EMU_Q_COUNT},     {"$skiptoken", EMU_Q_SKIPTOKEN},
    {"$deltatoken", EMU_Q_DELTATOKEN}, {"$skip", EMU_Q_SKIP},     {"$expand", EMU_Q_EXPAND},
};

static dw_err_t parse_nonneg(const char *name, const char *v, long long *out, char *errstr,
                             size_t n)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < 0 || !isdigit((unsigned char)*v))
        return dw_errf(DW_ERR_PARSE, errstr, n,
                       "Invalid value for the %s query option: a non-negative integer is expected", name);
    *out = x;
    return DW_OK;
}

/* Split a comma list into trimmed items; each item checked by cb. */
static dw_err_t parse_list(const char *v, const char *opt, char **items, size_t max, size_t *count,
                           bool orderby, emu_odata_order_t *ob, char *errstr, size_t n)
{
    const char *s = v;
    for (;;) {
        while (*s == ' ')
            s++;
        const char *b = s;
        while (isalnum((unsigned char)*s) || *s == '_')
            s++;
        if (s == b)
            return dw_errf(DW_ERR_PARSE, errstr, n, "Syntax error in the %s query option", opt);
        if (*count == max)
            return dw_errf(DW_ERR_PARSE, errstr, n, "Too many items in the %s query option", opt);
        char *name = strndup(b, (size_t)(s - b));
        if (!name)
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
        bool desc = false;
        if (orderby) {
            while (*s == ' ')
                s++;
            if (strncmp(s, "asc", 3) == 0 && !isalnum((unsigned char)s[3])) {
                s += 3;
            } else if (strncmp(s, "desc", 4) == 0 && !isalnum((unsigned char)s[4])) {
                s += 4;
                desc = true;
            }
            ob[*count].col = name;
            ob[*count].desc = desc;
        } else {
            items[*count] = name;
        }
        (*count)++;
        while (*s == ' ')
            s++;
        if (*s == '\0')
            return DW_OK;
        if (*s != ',')
            return dw_errf(DW_ERR_PARSE, errstr, n, "Syntax error in the %s query option", opt);
        s++;
    }
}

dw_err_t emu_odata_query_parse(const char *const *names, const char *const *values, size_t n,
                               unsigned allowed, emu_odata_query_t *q, char *errstr,
                               size_t errstr_size)
{
    dw_err_t err = DW_OK;
    memset(q, 0, sizeof(*q));
    q->top = -1;
    for (size_t i = 0; i < n; i++) {
        const char *name = names[i], *v = values[i] ? values[i] : "";
        if (name[0] != '$')
            continue;
        unsigned bit = 0;
        for (size_t j = 0; j < sizeof(emu_q_names) / sizeof(emu_q_names[0]); j++) {
            if (strcmp(name, emu_q_names[j].name) == 0)
                bit = emu_q_names[j].bit;
        }
        if (!bit) {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "The query parameter %.100s is not supported", name);
            goto fail;
        }
        if (!(allowed & bit)) {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "The query parameter %s is not supported on this resource", name);
            goto fail;
        }
        if (q->present & bit) {
            err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                          "Query option '%s' was specified more than once, but it must be specified at most once.",
                          name);
            goto fail;
        }
        q->present |= bit;
        switch (bit) {
        case EMU_Q_SELECT:
            err = parse_list(v, name, q->select, EMU_ODATA_MAX_SELECT, &q->nselect, false, NULL,
                             errstr, errstr_size);
            break;
        case EMU_Q_ORDERBY:
            err = parse_list(v, name, NULL, EMU_ODATA_MAX_ORDERBY, &q->norderby, true, q->orderby,
                             errstr, errstr_size);
            break;
        case EMU_Q_TOP:
            err = parse_nonneg(name, v, &q->top, errstr, errstr_size);
            break;
        case EMU_Q_SKIP:
            err = parse_nonneg(name, v, &q->skip, errstr, errstr_size);
            break;
        case EMU_Q_COUNT:
            if (strcmp(v, "true") == 0)
                q->count = true;
            else if (strcmp(v, "false") != 0)
                err = dw_errf(DW_ERR_PARSE, errstr, errstr_size,
                              "Invalid value for the $count query option: true or false is expected");
            break;
        case EMU_Q_FILTER:
            q->filter = strdup(v);
            break;
        case EMU_Q_SKIPTOKEN:
            q->skiptoken = strdup(v);
            break;
        case EMU_Q_DELTATOKEN:
            q->deltatoken = strdup(v);
            break;
        case EMU_Q_EXPAND:
            q->expand = strdup(v);
            break;
        default:
            break;
        }
        if (err)
            goto fail;
        if ((bit == EMU_Q_FILTER && !q->filter) || (bit == EMU_Q_SKIPTOKEN && !q->skiptoken) ||
            (bit == EMU_Q_DELTATOKEN && !q->deltatoken) || (bit == EMU_Q_EXPAND && !q->expand)) {
            err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
            goto fail;
        }
    }
    return DW_OK;
fail:
    emu_odata_query_clear(q);
    return err;
}

size_t emu_odata_quote(const char *s, char *out, size_t out_size)
{
    size_t len = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (len + 1 < out_size)                                                                    \
            out[len] = (c);                                                                        \
        len++;                                                                                     \
    } while (0)
    PUT('\'');
    for (; *s; s++) {
        if (*s == '\'')
            PUT('\'');
        PUT(*s);
    }
    PUT('\'');
#undef PUT
    if (out_size)
        out[len < out_size ? len : out_size - 1] = '\0';
    return len;
}

size_t emu_odata_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

void emu_odata_url_encode(char *out, size_t size, const char *s)
{
    size_t o = strlen(out);
    for (; *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-_.~$,()'!:/", c)) {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, size - o, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = '\0';
}

bool emu_odata_datetime_ok(const char *s, bool date_only)
{
    size_t l = strlen(s);
    if (l < 10)
        return false;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-')
                return false;
        } else if (!isdigit((unsigned char)s[i])) {
            return false;
        }
    }
    if (l == 10)
        return true;
    if (date_only || s[10] != 'T')
        return false;
    for (size_t i = 11; i < l; i++)
        if (!(isdigit((unsigned char)s[i]) || strchr(":.Z+-", s[i])))
            return false;
    return l >= 16;
}

bool emu_odata_decimal_ok(const char *s)
{
    size_t digits = 0;
    if (*s == '-' || *s == '+')
        s++;
    for (; isdigit((unsigned char)*s); s++)
        digits++;
    if (*s == '.')
        for (s++; isdigit((unsigned char)*s); s++)
            digits++;
    if (digits == 0)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (!isdigit((unsigned char)*s))
            return false;
        while (isdigit((unsigned char)*s))
            s++;
    }
    return *s == '\0';
}
