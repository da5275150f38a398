/*
 * dw_filter: compiles the OData $filter subset of map scope filters into a small immutable tree
 * and evaluates it against jansson records. Numbers are compared as exact decimals (digit strings
 * and a decimal exponent), never through binary floating point. One pass of a hand-written lexer
 * and recursive-descent parser, bounded in depth; every node lives in one arena owned by the
 * filter. The language and its semantics are in docs/filters.md.
 */
#define _GNU_SOURCE /* memmem */
#include "dw_filter.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Types
 */

/* An exact decimal: sign * 0.D1D2..Dn * 10^adj, D1 and Dn non-zero. digits points at D1 inside
 * some text and may contain one '.' between D1 and Dn, which iteration skips. Zero: sign 0. */
typedef struct {
    int sign;
    const char *digits;
    size_t ndigits;
    int64_t adj;
} dec_t;

/* A point in time: seconds since 1970-01-01T00:00:00Z plus the fraction digits (no trailing
 * zeros). */
typedef struct {
    int64_t secs;
    const char *frac;
    size_t nfrac;
} instant_t;

typedef enum { LIT_NULL, LIT_BOOL, LIT_NUM, LIT_STR, LIT_ENUM, LIT_TIME, LIT_GUID } lit_kind_t;

typedef struct {
    lit_kind_t kind;
    bool b;          /* LIT_BOOL */
    dec_t num;       /* LIT_NUM: digits normalised (no '.') */
    const char *str; /* LIT_STR value, LIT_ENUM member, LIT_TIME text, LIT_GUID lower-case text */
    size_t len;
    const char *type; /* LIT_ENUM: the type name */
    instant_t when;   /* LIT_TIME */
} lit_t;

typedef struct {
    bool is_column;
    size_t col;       /* index into dw_filter_t.cols */
    const lit_t *lit; /* when !is_column */
} operand_t;

typedef enum { OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE } cmp_op_t;
static const char *const op_names[] = {"eq", "ne", "gt", "ge", "lt", "le"};

typedef enum { FN_STARTSWITH, FN_ENDSWITH, FN_CONTAINS } fn_t;
static const char *const fn_names[] = {"startswith", "endswith", "contains"};

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_IN, N_FN } node_kind_t;

typedef struct node_s node_t;
struct node_s {
    node_kind_t kind;
    union {
        struct {
            node_t **kids;
            size_t n, cap;
        } list; /* N_OR, N_AND: never a kid of the same kind (chains are flattened) */
        node_t *kid; /* N_NOT */
        struct {
            cmp_op_t op;
            operand_t a, b;
        } cmp;
        struct {
            operand_t a;
            const lit_t **items;
            size_t n, cap;
        } in;
        struct {
            fn_t fn;
            operand_t a, b;
        } fn;
    } u;
};

typedef struct {
    char *name; /* NUL-terminated, in the arena */
    size_t len;
    bool path; /* contains '/' */
} col_t;

typedef struct blk_s {
    struct blk_s *next;
    size_t cap, used;
    max_align_t data[];
} blk_t;

struct dw_filter_s {
    char *text;
    node_t *root;
    col_t *cols;
    size_t ncols, colcap;
    dw_filter_enum_t *enums;
    size_t nenums, enumcap;
    blk_t *blocks;
};

#define BLK_SIZE      8192
#define DEC_EXP_LIMIT INT64_C(10000000000000000) /* stop reading an exponent beyond this */
#define DEC_ADJ_LIMIT INT64_C(1000000000000000)  /* |decimal exponent| accepted */

/* ---------------------------------------------------------------------------------------------
 * Arena: everything a compiled filter points to, freed at once.
 */

static void *arena_alloc(dw_filter_t *f, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    n = n ? (n + align - 1) / align * align : align;
    blk_t *b = f->blocks;
    if (b && b->cap - b->used >= n) {
        void *p = (unsigned char *)b->data + b->used;
        b->used += n;
        return p;
    }
    size_t cap = n > BLK_SIZE ? n : BLK_SIZE;
    blk_t *fresh = malloc(sizeof(*fresh) + cap);
    if (!fresh)
        return NULL;
    fresh->cap = cap;
    fresh->used = n;
    if (b && n > BLK_SIZE / 4) {
        /* a big allocation gets its own block behind the current one, which keeps its room */
        fresh->next = b->next;
        b->next = fresh;
    } else {
        fresh->next = b;
        f->blocks = fresh;
    }
    return fresh->data;
}

static char *arena_strndup(dw_filter_t *f, const char *s, size_t n)
{
    char *p = arena_alloc(f, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Character classes (ASCII, locale-independent)
 */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_ident_start(char c)
{
    return is_alpha(c) || c == '_';
}

static bool is_ident_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '_';
}

/* Characters that may not directly follow a literal. */
static bool is_glue_char(char c)
{
    return is_ident_char(c) || c == '.' || c == '/' || c == '-' || c == '\'';
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ---------------------------------------------------------------------------------------------
 * Exact decimals
 */

/* -?D+(.D+)?([eE][+-]?D+)? exactly, over s[0..n). d points into s. */
static bool dec_parse(const char *s, size_t n, dec_t *d)
{
    size_t i = 0;
    int sign = 1;
    if (i < n && s[i] == '-') {
        sign = -1;
        i++;
    }
    size_t int_start = i;
    while (i < n && is_digit(s[i]))
        i++;
    size_t nint = i - int_start;
    if (nint == 0)
        return false;
    size_t mant_end = i;
    if (i < n && s[i] == '.') {
        size_t frac_start = ++i;
        while (i < n && is_digit(s[i]))
            i++;
        if (i == frac_start)
            return false;
        mant_end = i;
    }
    int64_t expo = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        bool neg = false;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            neg = s[i] == '-';
            i++;
        }
        size_t exp_start = i;
        while (i < n && is_digit(s[i])) {
            if (expo > DEC_EXP_LIMIT)
                return false;
            expo = expo * 10 + (s[i] - '0');
            i++;
        }
        if (i == exp_start)
            return false;
        if (neg)
            expo = -expo;
    }
    if (i != n)
        return false;

    const char *first = NULL;
    size_t pos = 0, p0 = 0, p1 = 0;
    for (size_t k = int_start; k < mant_end; k++) {
        if (s[k] == '.')
            continue;
        if (s[k] != '0') {
            if (!first) {
                first = s + k;
                p0 = pos;
            }
            p1 = pos;
        }
        pos++;
    }
    if (!first) {
        *d = (dec_t){.sign = 0, .digits = "", .ndigits = 0, .adj = 0};
        return true;
    }
    int64_t adj = (int64_t)nint - (int64_t)p0 + expo;
    if (adj > DEC_ADJ_LIMIT || adj < -DEC_ADJ_LIMIT)
        return false;
    *d = (dec_t){.sign = sign, .digits = first, .ndigits = p1 - p0 + 1, .adj = adj};
    return true;
}

typedef struct {
    const char *p;
    size_t left;
} digit_iter_t;

static char digit_next(digit_iter_t *it)
{
    if (*it->p == '.')
        it->p++;
    it->left--;
    return *it->p++;
}

static int dec_cmp(const dec_t *a, const dec_t *b)
{
    if (a->sign != b->sign)
        return a->sign < b->sign ? -1 : 1;
    if (a->sign == 0)
        return 0;
    int mag = 0;
    if (a->adj != b->adj) {
        mag = a->adj < b->adj ? -1 : 1;
    } else {
        digit_iter_t x = {a->digits, a->ndigits}, y = {b->digits, b->ndigits};
        while (x.left && y.left && mag == 0) {
            char cx = digit_next(&x), cy = digit_next(&y);
            if (cx != cy)
                mag = cx < cy ? -1 : 1;
        }
        if (mag == 0 && (x.left || y.left))
            mag = x.left ? 1 : -1; /* the longer one has more non-zero digits */
    }
    return a->sign > 0 ? mag : -mag;
}

/* The shortest decimal that reads back as x (what a JSON writer would have printed), in buf. */
static bool dec_from_double(double x, char *buf, size_t bufsz, dec_t *d)
{
    char tmp[64];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* %e writes the locale's decimal point; make it '.' whatever it is */
    size_t k = 0;
    bool dot = false;
    for (const char *c = tmp; *c && k + 1 < bufsz; c++) {
        if (is_digit(*c) || *c == '-' || *c == '+' || *c == 'e') {
            buf[k++] = *c;
        } else if (!dot) {
            buf[k++] = '.';
            dot = true;
        }
    }
    buf[k] = '\0';
    return dec_parse(buf, k, d);
}

/* ---------------------------------------------------------------------------------------------
 * Dates, times and guids
 */

static bool two_digits(const char *s, int *v)
{
    if (!is_digit(s[0]) || !is_digit(s[1]))
        return false;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.f+]][Z|(+|-)hh:mm] exactly over s[0..n); no offset = UTC. */
static bool instant_parse(const char *s, size_t n, instant_t *t)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int yh, yl, mon, day, hh = 0, mi = 0, ss = 0;
    if (n < 10 || !two_digits(s, &yh) || !two_digits(s + 2, &yl) || s[4] != '-' ||
        !two_digits(s + 5, &mon) || s[7] != '-' || !two_digits(s + 8, &day))
        return false;
    int year = yh * 100 + yl;
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] || (mon == 2 && day == 29 && !leap))
        return false;
    const char *frac = NULL;
    size_t nfrac = 0, i = 10;
    int64_t offset = 0;
    if (i < n) {
        if ((s[i] != 'T' && s[i] != 't') || n - i < 6 || !two_digits(s + i + 1, &hh) ||
            s[i + 3] != ':' || !two_digits(s + i + 4, &mi) || hh > 23 || mi > 59)
            return false;
        i += 6;
        if (i < n && s[i] == ':') {
            if (n - i < 3 || !two_digits(s + i + 1, &ss) || ss > 59)
                return false;
            i += 3;
            if (i < n && s[i] == '.') {
                size_t start = ++i;
                while (i < n && is_digit(s[i]))
                    i++;
                if (i == start)
                    return false;
                frac = s + start;
                nfrac = i - start;
                while (nfrac && frac[nfrac - 1] == '0')
                    nfrac--;
            }
        }
        if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < n && (s[i] == '+' || s[i] == '-')) {
            int oh, om;
            if (n - i < 6 || !two_digits(s + i + 1, &oh) || s[i + 3] != ':' ||
                !two_digits(s + i + 4, &om) || oh > 23 || om > 59)
                return false;
            offset = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
            i += 6;
        }
        if (i != n)
            return false;
    }
    t->secs = days_from_civil(year, mon, day) * 86400 + hh * 3600 + mi * 60 + ss - offset;
    t->frac = nfrac ? frac : "";
    t->nfrac = nfrac;
    return true;
}

static int instant_cmp(const instant_t *a, const instant_t *b)
{
    if (a->secs != b->secs)
        return a->secs < b->secs ? -1 : 1;
    size_t n = a->nfrac < b->nfrac ? a->nfrac : b->nfrac;
    int c = n ? memcmp(a->frac, b->frac, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    if (a->nfrac == b->nfrac)
        return 0;
    return a->nfrac < b->nfrac ? -1 : 1;
}

/* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx at s (at least n readable bytes). */
static bool guid_at(const char *s, size_t n)
{
    if (n < 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

static bool guid_eq(const char *a, const char *b)
{
    for (size_t i = 0; i < 36; i++) {
        if (to_lower(a[i]) != to_lower(b[i]))
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Lexer
 */

typedef enum {
    T_END,
    T_LPAREN,
    T_RPAREN,
    T_COMMA,
    T_IDENT, /* a column name or path; a function name when call is set */
    T_STRING,
    T_NUMBER,
    T_ENUM,
    T_TIME,
    T_GUID,
    T_AND,
    T_OR,
    T_NOT,
    T_EQ,
    T_NE,
    T_GT,
    T_GE,
    T_LT,
    T_LE,
    T_IN,
    T_TRUE,
    T_FALSE,
    T_NULL,
} tok_kind_t;

static const struct {
    const char *word;
    tok_kind_t kind;
} keywords[] = {
    {"and", T_AND}, {"or", T_OR}, {"not", T_NOT}, {"eq", T_EQ},     {"ne", T_NE},
    {"gt", T_GT},   {"ge", T_GE}, {"lt", T_LT},   {"le", T_LE},     {"in", T_IN},
    {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL},
};

typedef struct {
    tok_kind_t kind;
    size_t off;   /* byte offset in the text */
    size_t len;   /* bytes */
    size_t split; /* T_ENUM: length of the type name */
    bool call;    /* T_IDENT followed by '(' */
} tok_t;

typedef struct {
    dw_filter_t *f;
    const char *s; /* the filter's copy of the text */
    size_t n;
    size_t pos;
    tok_t tok;
    char *errstr;
    size_t errstr_size;
    bool failed;
    size_t *ht; /* column interning: index + 1, 0 = empty */
    size_t htcap;
} parser_t;

/* 1-based column of byte offset off, counting UTF-8 characters. */
static size_t char_column(const char *s, size_t off)
{
    size_t col = 1;
    for (size_t i = 0; i < off; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            col++;
    }
    return col;
}

static void *perr(parser_t *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *perr(parser_t *p, size_t off, const char *fmt, ...)
{
    if (p->failed)
        return NULL;
    p->failed = true;
    if (!p->errstr || p->errstr_size == 0)
        return NULL;
    int k = snprintf(p->errstr, p->errstr_size, "column %zu: ", char_column(p->s, off));
    if (k >= 0 && (size_t)k < p->errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errstr + k, p->errstr_size - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static void *nomem(parser_t *p)
{
    if (!p->failed) {
        p->failed = true;
        dw_errf(DW_ERR_NOMEM, p->errstr, p->errstr_size, "out of memory");
    }
    return NULL;
}

/* At most max bytes of s[0..n), cut at a character boundary, "..." when cut. */
static void excerpt(const char *s, size_t n, char *buf, size_t bufsz)
{
    const size_t max = 40;
    size_t take = n;
    if (n > max) {
        take = max;
        while (take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80)
            take--;
    }
    snprintf(buf, bufsz, "%.*s%s", (int)take, s, take < n ? "..." : "");
}

static bool keyword_ci(const char *s, size_t n)
{
    for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
        const char *w = keywords[k].word;
        if (strlen(w) != n)
            continue;
        size_t i = 0;
        while (i < n && to_lower(s[i]) == w[i])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

/* What the current token is, for "found %s". */
static const char *tok_describe(const parser_t *p, char *buf, size_t bufsz)
{
    const tok_t *t = &p->tok;
    const char *s = p->s + t->off;
    char ex[64];
    if (t->kind == T_END)
        return "end of filter";
    excerpt(s, t->len, ex, sizeof(ex));
    switch (t->kind) {
    case T_STRING:
        snprintf(buf, bufsz, "string %s", ex);
        break;
    case T_NUMBER:
        snprintf(buf, bufsz, "number %s", ex);
        break;
    case T_ENUM:
        snprintf(buf, bufsz, "enum literal %s", ex);
        break;
    case T_TIME:
        snprintf(buf, bufsz, "date/time %s", ex);
        break;
    case T_GUID:
        snprintf(buf, bufsz, "guid %s", ex);
        break;
    case T_IDENT:
        snprintf(buf, bufsz, "'%s'%s", ex,
                 keyword_ci(s, t->len) ? " (keywords are lower case)" : "");
        break;
    default:
        snprintf(buf, bufsz, "'%s'", ex);
        break;
    }
    return buf;
}

static bool lex_string(parser_t *p, size_t start)
{
    size_t i = p->pos + 1;
    for (;;) {
        if (i >= p->n) {
            perr(p, start, "unterminated string literal");
            return false;
        }
        if (p->s[i] == '\'') {
            if (i + 1 < p->n && p->s[i + 1] == '\'') {
                i += 2;
                continue;
            }
            p->pos = i + 1;
            return true;
        }
        i++;
    }
}

static bool lex_number(parser_t *p, size_t start)
{
    const char *s = p->s;
    size_t i = p->pos;
    bool ok = true;
    if (s[i] == '-')
        i++;
    while (i < p->n && is_digit(s[i]))
        i++;
    if (i < p->n && s[i] == '.') {
        i++;
        if (!(i < p->n && is_digit(s[i])))
            ok = false;
        while (i < p->n && is_digit(s[i]))
            i++;
    }
    if (ok && i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (!(i < p->n && is_digit(s[i])))
            ok = false;
        while (i < p->n && is_digit(s[i]))
            i++;
    }
    if (!ok || (i < p->n && is_glue_char(s[i]))) {
        size_t end = i;
        while (end < p->n && is_glue_char(s[end]))
            end++;
        char ex[64];
        excerpt(s + start, end - start, ex, sizeof(ex));
        perr(p, start,
             "malformed number '%s' (expected digits, an optional fraction and exponent, no "
             "type suffix)",
             ex);
        return false;
    }
    p->pos = i;
    return true;
}

static bool lex_time(parser_t *p, size_t start)
{
    size_t i = p->pos;
    while (i < p->n && (is_ident_char(p->s[i]) || p->s[i] == ':' || p->s[i] == '.' ||
                        p->s[i] == '+' || p->s[i] == '-'))
        i++;
    instant_t t;
    if (!instant_parse(p->s + start, i - start, &t)) {
        char ex[64];
        excerpt(p->s + start, i - start, ex, sizeof(ex));
        perr(p, start,
             "malformed date/time '%s' (expected YYYY-MM-DD or "
             "YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm|-hh:mm])",
             ex);
        return false;
    }
    p->pos = i;
    return true;
}

/* A name: identifier segments joined by '/' (a column path) or by '.' (an enum type name, which
 * must be followed by a quoted member). */
static bool lex_name(parser_t *p, size_t start)
{
    const char *s = p->s;
    size_t i = p->pos;
    bool slash = false, dot = false;
    while (i < p->n && is_ident_char(s[i]))
        i++;
    while (i < p->n && (s[i] == '/' || s[i] == '.')) {
        char sep = s[i];
        if (!(i + 1 < p->n && is_ident_start(s[i + 1]))) {
            perr(p, i + 1, "expected a name after '%c'", sep);
            return false;
        }
        if (sep == '/')
            slash = true;
        else
            dot = true;
        i++;
        while (i < p->n && is_ident_char(s[i]))
            i++;
    }
    size_t len = i - start;
    char ex[64];
    if (!slash && !dot) {
        for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
            if (strlen(keywords[k].word) == len && memcmp(keywords[k].word, s + start, len) == 0) {
                p->tok.kind = keywords[k].kind;
                p->pos = i;
                return true;
            }
        }
    }
    if (i < p->n && s[i] == '\'') {
        excerpt(s + start, len, ex, sizeof(ex));
        if (slash || !dot) {
            perr(p, start,
                 "'%s' followed by a quote: an enum literal needs a namespace-qualified type "
                 "name (e.g. Microsoft.Dynamics.DataEntities.NoYes'Yes')",
                 ex);
            return false;
        }
        p->pos = i;
        if (!lex_string(p, start))
            return false;
        p->tok.kind = T_ENUM;
        p->tok.split = len;
        return true;
    }
    if (dot) {
        excerpt(s + start, len, ex, sizeof(ex));
        perr(p, i, "expected a quoted enum member after type name '%s'", ex);
        return false;
    }
    size_t j = i;
    while (j < p->n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n'))
        j++;
    p->tok.kind = T_IDENT;
    p->tok.call = j < p->n && s[j] == '(';
    p->pos = i;
    return true;
}

/* Read the next token into p->tok. False (error reported) on a lexical error. */
static bool lex(parser_t *p)
{
    const char *s = p->s;
    while (p->pos < p->n &&
           (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\r' || s[p->pos] == '\n'))
        p->pos++;
    size_t start = p->pos;
    p->tok = (tok_t){.kind = T_END, .off = start};
    if (start >= p->n)
        return true;
    char c = s[start];
    bool ok = true;
    if (c == '(' || c == ')' || c == ',') {
        p->tok.kind = c == '(' ? T_LPAREN : c == ')' ? T_RPAREN : T_COMMA;
        p->pos++;
    } else if (c == '\'') {
        p->tok.kind = T_STRING;
        ok = lex_string(p, start);
    } else if (is_hex(c) && guid_at(s + start, p->n - start) &&
               !(p->n - start > 36 && is_glue_char(s[start + 36]))) {
        p->tok.kind = T_GUID;
        p->pos += 36;
    } else if (is_digit(c) && p->n - start >= 7 && is_digit(s[start + 1]) &&
               is_digit(s[start + 2]) && is_digit(s[start + 3]) && s[start + 4] == '-' &&
               is_digit(s[start + 5]) && is_digit(s[start + 6])) {
        p->tok.kind = T_TIME;
        ok = lex_time(p, start);
    } else if (is_digit(c) || (c == '-' && start + 1 < p->n && is_digit(s[start + 1]))) {
        p->tok.kind = T_NUMBER;
        ok = lex_number(p, start);
    } else if (is_ident_start(c)) {
        ok = lex_name(p, start);
    } else {
        const char *hint = "";
        if (c == '=' || c == '<' || c == '>')
            hint = " (comparisons are eq, ne, gt, ge, lt, le)";
        else if (c == '&' || c == '|' || c == '!')
            hint = " (logical operators are and, or, not)";
        else if (c == '"')
            hint = " (strings are in single quotes)";
        if ((unsigned char)c >= 0x80)
            perr(p, start, "unexpected non-ASCII character outside a string");
        else if ((unsigned char)c < 0x20 || c == 0x7f)
            perr(p, start, "unexpected control character 0x%02x", (unsigned)(unsigned char)c);
        else
            perr(p, start, "unexpected character '%c'%s", c, hint);
        ok = false;
    }
    if (!ok) {
        p->tok = (tok_t){.kind = T_END, .off = start};
        return false;
    }
    p->tok.len = p->pos - start;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Parser
 */

static node_t *new_node(parser_t *p, node_kind_t kind)
{
    node_t *n = arena_alloc(p->f, sizeof(*n));
    if (!n)
        return nomem(p);
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    return n;
}

/* Make room for one more element in an arena array of elem-sized items. */
static bool grow(parser_t *p, void **items, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *fresh = arena_alloc(p->f, ncap * elem);
    if (!fresh) {
        nomem(p);
        return false;
    }
    if (n)
        memcpy(fresh, *items, n * elem);
    *items = fresh;
    *cap = ncap;
    return true;
}

/* Append kid to an and/or list, flattening a kid of the same kind. */
static bool list_add(parser_t *p, node_t *list, node_t *kid)
{
    size_t n = kid->kind == list->kind ? kid->u.list.n : 1;
    node_t **src = kid->kind == list->kind ? kid->u.list.kids : &kid;
    for (size_t i = 0; i < n; i++) {
        if (!grow(p, (void **)&list->u.list.kids, list->u.list.n, &list->u.list.cap,
                  sizeof(node_t *)))
            return false;
        list->u.list.kids[list->u.list.n++] = src[i];
    }
    return true;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* The index of column s[0..n) in f->cols, adding it when new. */
static bool intern_column(parser_t *p, const char *s, size_t n, size_t *idx)
{
    dw_filter_t *f = p->f;
    if ((f->ncols + 1) * 2 > p->htcap) {
        size_t ncap = p->htcap ? p->htcap * 2 : 16;
        size_t *ht = calloc(ncap, sizeof(*ht));
        if (!ht)
            return nomem(p), false;
        for (size_t i = 0; i < f->ncols; i++) {
            size_t h = (size_t)hash_bytes(f->cols[i].name, f->cols[i].len) & (ncap - 1);
            while (ht[h])
                h = (h + 1) & (ncap - 1);
            ht[h] = i + 1;
        }
        free(p->ht);
        p->ht = ht;
        p->htcap = ncap;
    }
    size_t h = (size_t)hash_bytes(s, n) & (p->htcap - 1);
    while (p->ht[h]) {
        const col_t *c = &f->cols[p->ht[h] - 1];
        if (c->len == n && memcmp(c->name, s, n) == 0) {
            *idx = p->ht[h] - 1;
            return true;
        }
        h = (h + 1) & (p->htcap - 1);
    }
    if (f->ncols == f->colcap) {
        size_t ncap = f->colcap ? f->colcap * 2 : 8;
        col_t *cols = realloc(f->cols, ncap * sizeof(*cols));
        if (!cols)
            return nomem(p), false;
        f->cols = cols;
        f->colcap = ncap;
    }
    char *name = arena_strndup(f, s, n);
    if (!name)
        return nomem(p), false;
    f->cols[f->ncols] = (col_t){.name = name, .len = n, .path = memchr(s, '/', n) != NULL};
    p->ht[h] = f->ncols + 1;
    *idx = f->ncols++;
    return true;
}

static bool add_enum_ref(parser_t *p, const operand_t *other, const lit_t *l)
{
    dw_filter_t *f = p->f;
    if (l->kind != LIT_ENUM)
        return true;
    if (f->nenums == f->enumcap) {
        size_t ncap = f->enumcap ? f->enumcap * 2 : 4;
        dw_filter_enum_t *e = realloc(f->enums, ncap * sizeof(*e));
        if (!e)
            return nomem(p), false;
        f->enums = e;
        f->enumcap = ncap;
    }
    f->enums[f->nenums++] = (dw_filter_enum_t){
        .column = other && other->is_column ? f->cols[other->col].name : NULL,
        .type = l->type,
        .member = l->str,
    };
    return true;
}

/* The unescaped contents of a quoted string s[0..n) (quotes included), in the arena. */
static char *unquote(parser_t *p, const char *s, size_t n, size_t *outlen)
{
    char *out = arena_alloc(p->f, n);
    if (!out)
        return nomem(p);
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        out[k++] = s[i];
        if (s[i] == '\'')
            i++; /* the second quote of '' */
    }
    out[k] = '\0';
    *outlen = k;
    return out;
}

static bool is_literal_tok(tok_kind_t k)
{
    return k == T_STRING || k == T_NUMBER || k == T_ENUM || k == T_TIME || k == T_GUID ||
           k == T_TRUE || k == T_FALSE || k == T_NULL;
}

/* The literal of the current token (a literal token). */
static const lit_t *make_literal(parser_t *p)
{
    const tok_t *t = &p->tok;
    const char *s = p->s + t->off;
    lit_t *l = arena_alloc(p->f, sizeof(*l));
    if (!l)
        return nomem(p);
    memset(l, 0, sizeof(*l));
    switch (t->kind) {
    case T_NULL:
        l->kind = LIT_NULL;
        break;
    case T_TRUE:
    case T_FALSE:
        l->kind = LIT_BOOL;
        l->b = t->kind == T_TRUE;
        break;
    case T_STRING:
        l->kind = LIT_STR;
        if (!(l->str = unquote(p, s, t->len, &l->len)))
            return NULL;
        break;
    case T_ENUM:
        l->kind = LIT_ENUM;
        if (!(l->type = arena_strndup(p->f, s, t->split)))
            return nomem(p);
        if (!(l->str = unquote(p, s + t->split, t->len - t->split, &l->len)))
            return NULL;
        break;
    case T_NUMBER: {
        dec_t d;
        if (!dec_parse(s, t->len, &d)) {
            char ex[64];
            excerpt(s, t->len, ex, sizeof(ex));
            return perr(p, t->off, "number %s is out of range", ex);
        }
        char *digits = arena_alloc(p->f, d.ndigits + 1);
        if (!digits)
            return nomem(p);
        digit_iter_t it = {d.digits, d.ndigits};
        for (size_t i = 0; i < d.ndigits; i++)
            digits[i] = digit_next(&it);
        digits[d.ndigits] = '\0';
        d.digits = digits;
        l->kind = LIT_NUM;
        l->num = d;
        break;
    }
    case T_TIME: {
        char *text = arena_strndup(p->f, s, t->len);
        if (!text)
            return nomem(p);
        l->kind = LIT_TIME;
        l->str = text;
        l->len = t->len;
        instant_parse(text, t->len, &l->when); /* validated by the lexer */
        break;
    }
    case T_GUID: {
        char *text = arena_strndup(p->f, s, t->len);
        if (!text)
            return nomem(p);
        for (size_t i = 0; i < t->len; i++)
            text[i] = to_lower(text[i]);
        l->kind = LIT_GUID;
        l->str = text;
        l->len = t->len;
        break;
    }
    default:
        return perr(p, t->off, "internal error: not a literal");
    }
    return l;
}

/* A column name or a literal; expected describes what was wanted, for the error. */
static bool parse_operand(parser_t *p, operand_t *o, const char *expected)
{
    char found[128];
    if (p->tok.kind == T_IDENT) {
        if (p->tok.call) {
            char ex[64];
            excerpt(p->s + p->tok.off, p->tok.len, ex, sizeof(ex));
            perr(p, p->tok.off, "expected %s, found function call '%s(...)'", expected, ex);
            return false;
        }
        o->is_column = true;
        if (!intern_column(p, p->s + p->tok.off, p->tok.len, &o->col))
            return false;
    } else if (is_literal_tok(p->tok.kind)) {
        o->is_column = false;
        if (!(o->lit = make_literal(p)))
            return false;
    } else {
        perr(p, p->tok.off, "expected %s, found %s", expected,
             tok_describe(p, found, sizeof(found)));
        return false;
    }
    return lex(p);
}

static node_t *parse_or(parser_t *p, int depth);

/* '(' expr ')' at the current token; depth already counts this group. */
static node_t *parse_group(parser_t *p, int depth)
{
    char found[128];
    size_t open = p->tok.off;
    if (!lex(p))
        return NULL;
    node_t *e = parse_or(p, depth);
    if (!e)
        return NULL;
    if (p->tok.kind != T_RPAREN)
        return perr(p, p->tok.off, "expected ')' to close '(' at column %zu, found %s",
                    char_column(p->s, open), tok_describe(p, found, sizeof(found)));
    if (!lex(p))
        return NULL;
    return e;
}

static node_t *depth_error(parser_t *p, size_t off)
{
    return perr(p, off, "expression nested deeper than %d levels of '(' and 'not'",
                DW_FILTER_MAX_DEPTH);
}

static const char *lit_kind_name(lit_kind_t k)
{
    return k == LIT_ENUM ? "enum" : "guid";
}

static node_t *parse_call(parser_t *p, int depth)
{
    char found[128], ex[64];
    const tok_t name = p->tok;
    const char *s = p->s + name.off;
    fn_t fn = FN_STARTSWITH;
    bool known = false;
    for (size_t k = 0; k < sizeof(fn_names) / sizeof(fn_names[0]); k++) {
        if (strlen(fn_names[k]) == name.len && memcmp(fn_names[k], s, name.len) == 0) {
            fn = (fn_t)k;
            known = true;
        }
    }
    if (!known) {
        excerpt(s, name.len, ex, sizeof(ex));
        return perr(p, name.off,
                    "unknown function '%s' (supported: startswith, endswith, contains)", ex);
    }
    const char *fname = fn_names[fn];
    node_t *n = new_node(p, N_FN);
    if (!n || !lex(p) || !lex(p)) /* the name, then the '(' */
        return NULL;
    n->u.fn.fn = fn;
    operand_t *args[2] = {&n->u.fn.a, &n->u.fn.b};
    for (int i = 0; i < 2; i++) {
        if (p->tok.kind != T_STRING && p->tok.kind != T_IDENT) {
            if (i == 0 && p->tok.kind == T_RPAREN)
                return perr(p, p->tok.off, "%s needs two arguments", fname);
            return perr(p, p->tok.off,
                        "expected a column name or a string literal as argument %d of %s, "
                        "found %s",
                        i + 1, fname, tok_describe(p, found, sizeof(found)));
        }
        if (!parse_operand(p, args[i], "a column name or a string literal"))
            return NULL;
        tok_kind_t want = i == 0 ? T_COMMA : T_RPAREN;
        if (p->tok.kind != want)
            return perr(p, p->tok.off, "expected '%c' after argument %d of %s, found %s",
                        i == 0 ? ',' : ')', i + 1, fname, tok_describe(p, found, sizeof(found)));
        if (!lex(p))
            return NULL;
    }
    if (p->tok.kind == T_EQ || p->tok.kind == T_NE) {
        /* startswith(..) eq true / eq false / ne true / ne false */
        bool eq = p->tok.kind == T_EQ;
        size_t opoff = p->tok.off;
        if (!lex(p))
            return NULL;
        if (p->tok.kind != T_TRUE && p->tok.kind != T_FALSE)
            return perr(p, p->tok.off,
                        "expected true or false after '%s' following %s(...), found %s",
                        eq ? "eq" : "ne", fname, tok_describe(p, found, sizeof(found)));
        bool negate = eq != (p->tok.kind == T_TRUE);
        if (!lex(p))
            return NULL;
        if (negate) {
            if (depth >= DW_FILTER_MAX_DEPTH)
                return depth_error(p, opoff);
            node_t *neg = new_node(p, N_NOT);
            if (!neg)
                return NULL;
            neg->u.kid = n;
            n = neg;
        }
    }
    return n;
}

static node_t *parse_in(parser_t *p, const operand_t *a)
{
    char found[128];
    node_t *n = new_node(p, N_IN);
    if (!n || !lex(p))
        return NULL;
    n->u.in.a = *a;
    if (p->tok.kind != T_LPAREN)
        return perr(p, p->tok.off, "expected '(' after 'in', found %s",
                    tok_describe(p, found, sizeof(found)));
    if (!lex(p))
        return NULL;
    for (;;) {
        if (!is_literal_tok(p->tok.kind))
            return perr(p, p->tok.off, "expected a literal in in-list, found %s",
                        tok_describe(p, found, sizeof(found)));
        const lit_t *l = make_literal(p);
        if (!l || !add_enum_ref(p, a, l) ||
            !grow(p, (void **)&n->u.in.items, n->u.in.n, &n->u.in.cap, sizeof(lit_t *)))
            return NULL;
        n->u.in.items[n->u.in.n++] = l;
        if (!lex(p))
            return NULL;
        if (p->tok.kind == T_RPAREN)
            break;
        if (p->tok.kind != T_COMMA)
            return perr(p, p->tok.off, "expected ')' after in-list, found %s",
                        tok_describe(p, found, sizeof(found)));
        if (!lex(p))
            return NULL;
    }
    if (!lex(p))
        return NULL;
    return n;
}

/* A comparison, an in-list, a function call or a parenthesised expression. */
static node_t *parse_primary(parser_t *p, int depth)
{
    char found[128];
    if (p->tok.kind == T_LPAREN) {
        if (depth >= DW_FILTER_MAX_DEPTH)
            return depth_error(p, p->tok.off);
        return parse_group(p, depth + 1);
    }
    if (p->tok.kind == T_IDENT && p->tok.call)
        return parse_call(p, depth);
    operand_t a = {0}, b = {0};
    if (!parse_operand(p, &a, "a column name, a literal, 'not' or '('"))
        return NULL;
    tok_kind_t k = p->tok.kind;
    if (k == T_IN)
        return parse_in(p, &a);
    if (k < T_EQ || k > T_LE)
        return perr(p, p->tok.off,
                    "expected a comparison operator (eq, ne, gt, ge, lt, le) or 'in', found %s",
                    tok_describe(p, found, sizeof(found)));
    cmp_op_t op = (cmp_op_t)(k - T_EQ);
    size_t opoff = p->tok.off;
    if (!lex(p))
        return NULL;
    char expected[64];
    snprintf(expected, sizeof(expected), "a column name or a literal after '%s'", op_names[op]);
    if (!parse_operand(p, &b, expected))
        return NULL;
    if (op != OP_EQ && op != OP_NE) {
        const operand_t *o[2] = {&a, &b};
        for (int i = 0; i < 2; i++) {
            if (!o[i]->is_column && (o[i]->lit->kind == LIT_ENUM || o[i]->lit->kind == LIT_GUID))
                return perr(p, opoff, "'%s' cannot order %s values; only eq and ne apply",
                            op_names[op], lit_kind_name(o[i]->lit->kind));
        }
    }
    if ((!a.is_column && !add_enum_ref(p, &b, a.lit)) ||
        (!b.is_column && !add_enum_ref(p, &a, b.lit)))
        return NULL;
    node_t *n = new_node(p, N_CMP);
    if (!n)
        return NULL;
    n->u.cmp.op = op;
    n->u.cmp.a = a;
    n->u.cmp.b = b;
    return n;
}

static node_t *parse_unary(parser_t *p, int depth)
{
    if (p->tok.kind != T_NOT)
        return parse_primary(p, depth);
    if (depth >= DW_FILTER_MAX_DEPTH)
        return depth_error(p, p->tok.off);
    node_t *n = new_node(p, N_NOT);
    if (!n || !lex(p))
        return NULL;
    /* `not (` counts as one level, so the canonical `not (a eq 1)` nests no deeper than
     * `not a eq 1` */
    n->u.kid = p->tok.kind == T_LPAREN ? parse_group(p, depth + 1) : parse_unary(p, depth + 1);
    return n->u.kid ? n : NULL;
}

static node_t *parse_and(parser_t *p, int depth)
{
    node_t *first = parse_unary(p, depth);
    if (!first || p->tok.kind != T_AND)
        return first;
    node_t *list = new_node(p, N_AND);
    if (!list || !list_add(p, list, first))
        return NULL;
    while (p->tok.kind == T_AND) {
        if (!lex(p))
            return NULL;
        node_t *next = parse_unary(p, depth);
        if (!next || !list_add(p, list, next))
            return NULL;
    }
    return list;
}

static node_t *parse_or(parser_t *p, int depth)
{
    node_t *first = parse_and(p, depth);
    if (!first || p->tok.kind != T_OR)
        return first;
    node_t *list = new_node(p, N_OR);
    if (!list || !list_add(p, list, first))
        return NULL;
    while (p->tok.kind == T_OR) {
        if (!lex(p))
            return NULL;
        node_t *next = parse_and(p, depth);
        if (!next || !list_add(p, list, next))
            return NULL;
    }
    return list;
}

/* ---------------------------------------------------------------------------------------------
 * Public: compile, destroy, accessors
 */

dw_filter_t *dw_filter_compile(const char *text, char *errstr, size_t errstr_size)
{
    dw_filter_t *f = NULL, *result = NULL;
    parser_t p = {.errstr = errstr, .errstr_size = errstr_size};
    char found[128];

    if (!text) {
        dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "no filter text");
        goto out;
    }
    size_t n = strnlen(text, (size_t)DW_FILTER_MAX_TEXT + 1);
    if (n > DW_FILTER_MAX_TEXT) {
        dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "filter is longer than %d bytes",
                DW_FILTER_MAX_TEXT);
        goto out;
    }
    if (!(f = calloc(1, sizeof(*f))) || !(f->text = malloc(n + 1))) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto out;
    }
    memcpy(f->text, text, n + 1);
    p.f = f;
    p.s = f->text;
    p.n = n;
    if (!lex(&p))
        goto out;
    f->root = parse_or(&p, 0);
    if (f->root && p.tok.kind != T_END) {
        if (p.tok.kind == T_RPAREN)
            perr(&p, p.tok.off, "unexpected ')' without a matching '('");
        else
            perr(&p, p.tok.off, "expected 'and', 'or' or end of filter, found %s",
                 tok_describe(&p, found, sizeof(found)));
    }
    if (p.failed || !f->root)
        goto out;
    result = f;
    f = NULL;
out:
    free(p.ht);
    dw_filter_destroy(f);
    return result;
}

void dw_filter_destroy(dw_filter_t *f)
{
    if (!f)
        return;
    blk_t *b = f->blocks;
    while (b) {
        blk_t *next = b->next;
        free(b);
        b = next;
    }
    free(f->cols);
    free(f->enums);
    free(f->text);
    free(f);
}

const char *dw_filter_text(const dw_filter_t *f)
{
    return f->text;
}

size_t dw_filter_columns(const dw_filter_t *f, const char **out, size_t max)
{
    for (size_t i = 0; i < f->ncols && i < max; i++)
        out[i] = f->cols[i].name;
    return f->ncols;
}

size_t dw_filter_enums(const dw_filter_t *f, dw_filter_enum_t *out, size_t max)
{
    for (size_t i = 0; i < f->nenums && i < max; i++)
        out[i] = f->enums[i];
    return f->nenums;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 */

/* Value kinds, in the order compare() normalises pairs to. */
typedef enum {
    V_MISSING,
    V_NULL,
    V_BOOL,
    V_NUM,
    V_STR,
    V_ENUM,
    V_TIME,
    V_GUID,
    V_OTHER, /* a JSON object or array */
} vkind_t;

typedef struct {
    vkind_t kind;
    const char *column; /* NULL for a literal */
    bool b;
    dec_t num;
    const char *str;
    size_t len;
    const lit_t *lit;  /* V_ENUM, V_TIME, V_GUID */
    const json_t *json; /* the record value, if any */
    char buf[64];       /* digits of a JSON number */
} val_t;

typedef enum { R_FALSE, R_TRUE, R_MISMATCH } res_t;

typedef struct {
    bool strict;
    bool failed;
    char *errstr;
    size_t errstr_size;
} ectx_t;

static const json_t *lookup(const col_t *c, const json_t *rec)
{
    const json_t *j = json_object_get(rec, c->name);
    if (j || !c->path)
        return j;
    /* a navigation path: walk the nested objects */
    const char *s = c->name, *end = c->name + c->len;
    j = rec;
    while (s < end) {
        if (json_is_null(j))
            return j; /* navigating through null gives null */
        if (!json_is_object(j))
            return NULL;
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *seg_end = slash ? slash : end;
        j = json_object_getn(j, s, (size_t)(seg_end - s));
        if (!j)
            return NULL;
        s = slash ? slash + 1 : end;
    }
    return j;
}

static void resolve(const dw_filter_t *f, const operand_t *o, const json_t *rec, val_t *v)
{
    v->column = NULL;
    v->json = NULL;
    v->lit = NULL;
    if (!o->is_column) {
        const lit_t *l = o->lit;
        v->lit = l;
        switch (l->kind) {
        case LIT_NULL:
            v->kind = V_NULL;
            break;
        case LIT_BOOL:
            v->kind = V_BOOL;
            v->b = l->b;
            break;
        case LIT_NUM:
            v->kind = V_NUM;
            v->num = l->num;
            break;
        case LIT_STR:
            v->kind = V_STR;
            v->str = l->str;
            v->len = l->len;
            break;
        case LIT_ENUM:
            v->kind = V_ENUM;
            break;
        case LIT_TIME:
            v->kind = V_TIME;
            break;
        case LIT_GUID:
            v->kind = V_GUID;
            break;
        }
        return;
    }
    const col_t *c = &f->cols[o->col];
    const json_t *j = lookup(c, rec);
    v->column = c->name;
    v->json = j;
    if (!j) {
        v->kind = V_MISSING;
        return;
    }
    switch (json_typeof(j)) {
    case JSON_NULL:
        v->kind = V_NULL;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind = V_BOOL;
        v->b = json_is_true(j);
        break;
    case JSON_INTEGER: {
        int k = snprintf(v->buf, sizeof(v->buf), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        v->kind = dec_parse(v->buf, (size_t)k, &v->num) ? V_NUM : V_OTHER;
        break;
    }
    case JSON_REAL:
        v->kind = dec_from_double(json_real_value(j), v->buf, sizeof(v->buf), &v->num) ? V_NUM
                                                                                        : V_OTHER;
        break;
    case JSON_STRING:
        v->kind = V_STR;
        v->str = json_string_value(j);
        v->len = json_string_length(j);
        break;
    default:
        v->kind = V_OTHER;
        break;
    }
}

static cmp_op_t flip(cmp_op_t op)
{
    switch (op) {
    case OP_GT:
        return OP_LT;
    case OP_GE:
        return OP_LE;
    case OP_LT:
        return OP_GT;
    case OP_LE:
        return OP_GE;
    default:
        return op;
    }
}

static res_t by_order(cmp_op_t op, int c)
{
    bool r = false;
    switch (op) {
    case OP_EQ:
        r = c == 0;
        break;
    case OP_NE:
        r = c != 0;
        break;
    case OP_GT:
        r = c > 0;
        break;
    case OP_GE:
        r = c >= 0;
        break;
    case OP_LT:
        r = c < 0;
        break;
    case OP_LE:
        r = c <= 0;
        break;
    }
    return r ? R_TRUE : R_FALSE;
}

static res_t by_equality(cmp_op_t op, bool equal)
{
    if (op == OP_EQ)
        return equal ? R_TRUE : R_FALSE;
    if (op == OP_NE)
        return equal ? R_FALSE : R_TRUE;
    return R_MISMATCH;
}

static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return na == nb ? 0 : (na < nb ? -1 : 1);
}

/* a op b. hint: set on some mismatches to say why. */
static res_t compare(cmp_op_t op, const val_t *a, const val_t *b, const char **hint)
{
    if (a->kind == V_MISSING || b->kind == V_MISSING) {
        /* a missing column only matches `eq null` */
        const val_t *other = a->kind == V_MISSING ? b : a;
        bool other_null = other->kind == V_NULL || other->kind == V_MISSING;
        return other_null && op == OP_EQ ? R_TRUE : R_FALSE;
    }
    if (a->kind == V_NULL || b->kind == V_NULL) {
        bool both = a->kind == b->kind;
        if (op == OP_EQ)
            return both ? R_TRUE : R_FALSE;
        if (op == OP_NE)
            return both ? R_FALSE : R_TRUE;
        return R_FALSE;
    }
    if (a->kind > b->kind)
        return compare(flip(op), b, a, hint);
    switch (a->kind) {
    case V_BOOL:
        if (b->kind == V_BOOL)
            return by_order(op, (int)a->b - (int)b->b);
        break;
    case V_NUM:
        if (b->kind == V_NUM)
            return by_order(op, dec_cmp(&a->num, &b->num));
        if (b->kind == V_STR) {
            dec_t d;
            if (dec_parse(b->str, b->len, &d))
                return by_order(op, dec_cmp(&a->num, &d));
            *hint = " (the string is not a decimal number)";
        }
        break;
    case V_STR:
        if (b->kind == V_STR)
            return by_order(op, bytes_cmp(a->str, a->len, b->str, b->len));
        if (b->kind == V_ENUM)
            return by_equality(op, bytes_cmp(a->str, a->len, b->lit->str, b->lit->len) == 0);
        if (b->kind == V_TIME) {
            instant_t t;
            if (instant_parse(a->str, a->len, &t))
                return by_order(op, instant_cmp(&t, &b->lit->when));
            *hint = " (the string is not a date/time)";
        }
        if (b->kind == V_GUID) {
            if (a->len == 36 && guid_at(a->str, a->len))
                return by_equality(op, guid_eq(a->str, b->lit->str));
            *hint = " (the string is not a guid)";
        }
        break;
    case V_ENUM:
        if (b->kind == V_ENUM)
            return by_equality(op, strcmp(a->lit->type, b->lit->type) == 0 &&
                                       bytes_cmp(a->lit->str, a->lit->len, b->lit->str,
                                                 b->lit->len) == 0);
        break;
    case V_TIME:
        if (b->kind == V_TIME)
            return by_order(op, instant_cmp(&a->lit->when, &b->lit->when));
        break;
    case V_GUID:
        if (b->kind == V_GUID)
            return by_equality(op, guid_eq(a->lit->str, b->lit->str));
        break;
    default:
        break;
    }
    return R_MISMATCH;
}

static const char *vdesc(const val_t *v)
{
    bool lit = v->column == NULL;
    switch (v->kind) {
    case V_MISSING:
        return "missing value";
    case V_NULL:
        return lit ? "null" : "null value";
    case V_BOOL:
        return lit ? "boolean literal" : "boolean value";
    case V_NUM:
        return lit ? "number literal" : "number value";
    case V_STR:
        return lit ? "string literal" : "string value";
    case V_ENUM:
        return "enum literal";
    case V_TIME:
        return "date/time literal";
    case V_GUID:
        return "guid literal";
    case V_OTHER:
        return json_is_array(v->json) ? "array value" : "object value";
    }
    return "value";
}

/* "column 'A': " / "columns 'A' and 'B': " / "" into buf. */
static const char *columns_prefix(const val_t *a, const val_t *b, char *buf, size_t bufsz)
{
    if (a->column && b->column && strcmp(a->column, b->column) != 0)
        snprintf(buf, bufsz, "columns '%s' and '%s': ", a->column, b->column);
    else if (a->column || b->column)
        snprintf(buf, bufsz, "column '%s': ", a->column ? a->column : b->column);
    else
        buf[0] = '\0';
    return buf;
}

static void mismatch(ectx_t *e, cmp_op_t op, const val_t *a, const val_t *b, const char *hint)
{
    if (!e->strict || e->failed)
        return;
    char prefix[256];
    e->failed = true;
    columns_prefix(a, b, prefix, sizeof(prefix));
    dw_errf(DW_ERR_INVALID_ARG, e->errstr, e->errstr_size,
            "%scannot compare %s with %s using '%s'%s", prefix, vdesc(a), vdesc(b), op_names[op],
            hint ? hint : "");
}

static bool eval_node(const dw_filter_t *f, const node_t *n, const json_t *rec, ectx_t *e)
{
    val_t a, b;
    const char *hint = NULL;
    switch (n->kind) {
    case N_OR:
        for (size_t i = 0; i < n->u.list.n; i++) {
            if (eval_node(f, n->u.list.kids[i], rec, e))
                return true;
            if (e->failed)
                return false;
        }
        return false;
    case N_AND:
        for (size_t i = 0; i < n->u.list.n; i++) {
            if (!eval_node(f, n->u.list.kids[i], rec, e))
                return false;
        }
        return true;
    case N_NOT: {
        bool r = eval_node(f, n->u.kid, rec, e);
        return e->failed ? false : !r;
    }
    case N_CMP: {
        resolve(f, &n->u.cmp.a, rec, &a);
        resolve(f, &n->u.cmp.b, rec, &b);
        res_t r = compare(n->u.cmp.op, &a, &b, &hint);
        if (r == R_MISMATCH)
            mismatch(e, n->u.cmp.op, &a, &b, hint);
        return r == R_TRUE;
    }
    case N_IN:
        resolve(f, &n->u.in.a, rec, &a);
        for (size_t i = 0; i < n->u.in.n; i++) {
            operand_t item = {.is_column = false, .lit = n->u.in.items[i]};
            resolve(f, &item, rec, &b);
            hint = NULL;
            res_t r = compare(OP_EQ, &a, &b, &hint);
            if (r == R_TRUE)
                return true;
            if (r == R_MISMATCH) {
                mismatch(e, OP_EQ, &a, &b, hint);
                if (e->failed)
                    return false;
            }
        }
        return false;
    case N_FN: {
        resolve(f, &n->u.fn.a, rec, &a);
        resolve(f, &n->u.fn.b, rec, &b);
        if (a.kind == V_MISSING || a.kind == V_NULL || b.kind == V_MISSING || b.kind == V_NULL)
            return false;
        if (a.kind != V_STR || b.kind != V_STR) {
            if (e->strict && !e->failed) {
                char prefix[256];
                const val_t *bad = a.kind != V_STR ? &a : &b;
                e->failed = true;
                dw_errf(DW_ERR_INVALID_ARG, e->errstr, e->errstr_size,
                        "%s%s needs string arguments, found %s",
                        columns_prefix(&a, &b, prefix, sizeof(prefix)), fn_names[n->u.fn.fn],
                        vdesc(bad));
            }
            return false;
        }
        switch (n->u.fn.fn) {
        case FN_STARTSWITH:
            return b.len <= a.len && (b.len == 0 || memcmp(a.str, b.str, b.len) == 0);
        case FN_ENDSWITH:
            return b.len <= a.len &&
                   (b.len == 0 || memcmp(a.str + a.len - b.len, b.str, b.len) == 0);
        case FN_CONTAINS:
            return b.len == 0 || (a.len && memmem(a.str, a.len, b.str, b.len) != NULL);
        }
        return false;
    }
    }
    return false;
}

bool dw_filter_match(const dw_filter_t *f, const json_t *record)
{
    ectx_t e = {.strict = false};
    if (!json_is_object(record))
        return false;
    return eval_node(f, f->root, record, &e);
}

dw_err_t dw_filter_eval(const dw_filter_t *f, const json_t *record, bool *result, char *errstr,
                        size_t errstr_size)
{
    ectx_t e = {.strict = true, .errstr = errstr, .errstr_size = errstr_size};
    *result = false;
    if (!json_is_object(record))
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size, "record is not a JSON object");
    bool r = eval_node(f, f->root, record, &e);
    if (e.failed)
        return DW_ERR_INVALID_ARG;
    *result = r;
    return DW_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical form
 */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sb_t;

static void sb_putn(sb_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->n + n + 1)
            ncap *= 2;
        char *fresh = realloc(b->s, ncap);
        if (!fresh) {
            b->oom = true;
            return;
        }
        b->s = fresh;
        b->cap = ncap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_puts(sb_t *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_zeros(sb_t *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        sb_putn(b, "0", 1);
}

static void render_quoted(sb_t *b, const char *s, size_t n)
{
    sb_putn(b, "'", 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            sb_putn(b, s + from, i + 1 - from);
            sb_putn(b, "'", 1);
            from = i + 1;
        }
    }
    sb_putn(b, s + from, n - from);
    sb_putn(b, "'", 1);
}

/* Plain notation unless that would need more than 20 padding zeros. */
static void render_number(sb_t *b, const dec_t *d)
{
    if (d->sign == 0) {
        sb_puts(b, "0");
        return;
    }
    if (d->sign < 0)
        sb_puts(b, "-");
    const char *dg = d->digits;
    int64_t n = (int64_t)d->ndigits, adj = d->adj;
    if (adj >= n && adj - n <= 20) {
        sb_putn(b, dg, (size_t)n);
        sb_zeros(b, adj - n);
    } else if (adj > 0 && adj < n) {
        sb_putn(b, dg, (size_t)adj);
        sb_puts(b, ".");
        sb_putn(b, dg + adj, (size_t)(n - adj));
    } else if (adj <= 0 && adj >= -20) {
        sb_puts(b, "0.");
        sb_zeros(b, -adj);
        sb_putn(b, dg, (size_t)n);
    } else {
        char ebuf[32];
        sb_putn(b, dg, 1);
        if (n > 1) {
            sb_puts(b, ".");
            sb_putn(b, dg + 1, (size_t)(n - 1));
        }
        snprintf(ebuf, sizeof(ebuf), "e%" PRId64, adj - 1);
        sb_puts(b, ebuf);
    }
}

static void render_literal(sb_t *b, const lit_t *l)
{
    switch (l->kind) {
    case LIT_NULL:
        sb_puts(b, "null");
        break;
    case LIT_BOOL:
        sb_puts(b, l->b ? "true" : "false");
        break;
    case LIT_NUM:
        render_number(b, &l->num);
        break;
    case LIT_STR:
        render_quoted(b, l->str, l->len);
        break;
    case LIT_ENUM:
        sb_puts(b, l->type);
        render_quoted(b, l->str, l->len);
        break;
    case LIT_TIME:
    case LIT_GUID:
        sb_putn(b, l->str, l->len);
        break;
    }
}

static void render_operand(sb_t *b, const dw_filter_t *f, const operand_t *o)
{
    if (o->is_column)
        sb_putn(b, f->cols[o->col].name, f->cols[o->col].len);
    else
        render_literal(b, o->lit);
}

static void render(sb_t *b, const dw_filter_t *f, const node_t *n)
{
    switch (n->kind) {
    case N_OR:
    case N_AND:
        for (size_t i = 0; i < n->u.list.n; i++) {
            const node_t *kid = n->u.list.kids[i];
            bool paren = n->kind == N_AND && kid->kind == N_OR;
            if (i)
                sb_puts(b, n->kind == N_OR ? " or " : " and ");
            if (paren)
                sb_puts(b, "(");
            render(b, f, kid);
            if (paren)
                sb_puts(b, ")");
        }
        break;
    case N_NOT: {
        bool paren = n->u.kid->kind != N_FN && n->u.kid->kind != N_NOT;
        sb_puts(b, paren ? "not (" : "not ");
        render(b, f, n->u.kid);
        if (paren)
            sb_puts(b, ")");
        break;
    }
    case N_CMP:
        render_operand(b, f, &n->u.cmp.a);
        sb_puts(b, " ");
        sb_puts(b, op_names[n->u.cmp.op]);
        sb_puts(b, " ");
        render_operand(b, f, &n->u.cmp.b);
        break;
    case N_IN:
        render_operand(b, f, &n->u.in.a);
        sb_puts(b, " in (");
        for (size_t i = 0; i < n->u.in.n; i++) {
            if (i)
                sb_puts(b, ", ");
            render_literal(b, n->u.in.items[i]);
        }
        sb_puts(b, ")");
        break;
    case N_FN:
        sb_puts(b, fn_names[n->u.fn.fn]);
        sb_puts(b, "(");
        render_operand(b, f, &n->u.fn.a);
        sb_puts(b, ", ");
        render_operand(b, f, &n->u.fn.b);
        sb_puts(b, ")");
        break;
    }
}

char *dw_filter_to_string(const dw_filter_t *f)
{
    sb_t b = {0};
    render(&b, f, f->root);
    if (b.oom || !b.s) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
