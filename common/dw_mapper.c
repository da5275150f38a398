/*
 * dw_mapper: the mapping engine — value conversions (strings, integers, exact decimals, booleans,
 * dates and times to UTC, guids, enums), value maps, defaults, constants, lookups as OData binds,
 * the canonical key, the content hash, an exact-number JSON reader and a compact JSON writer whose
 * reals are the shortest round-trip text. See dw_mapper.h for the contract and docs/maps.md for
 * the semantics.
 */
#include "dw_mapper.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_json.h"

#define DW_MAPPER_MAX_DEPTH       2048 /* nesting the writer follows (jansson's parser limit) */
#define DW_MAPPER_DECIMAL_MAX_INT 28   /* integer digits of a decimal (.NET decimal, SQL 38,10) */
#define DW_MAPPER_DOUBLE_DIGITS   15   /* significant digits a double always carries (DBL_DIG) */

static const char *const reason_names[DW_MAPPER__COUNT] = {
    [DW_MAPPER_OK] = "ok",
    [DW_MAPPER_MISSING_KEY] = "missing_key",
    [DW_MAPPER_WRONG_TYPE] = "wrong_type",
    [DW_MAPPER_UNMAPPED_VALUE] = "unmapped_value",
    [DW_MAPPER_OUT_OF_RANGE] = "out_of_range",
    [DW_MAPPER_INVALID_DATE] = "invalid_date",
    [DW_MAPPER_TOO_LONG] = "too_long",
    [DW_MAPPER_INVALID_UTF8] = "invalid_utf8",
    [DW_MAPPER_UNRESOLVED_LOOKUP] = "unresolved_lookup",
    [DW_MAPPER_MALFORMED] = "malformed",
    [DW_MAPPER_DIRECTION] = "direction",
    [DW_MAPPER_NOMEM] = "out_of_memory",
};

const char *dw_mapper_reason_name(dw_mapper_reason_t reason)
{
    return (unsigned)reason < DW_MAPPER__COUNT ? reason_names[reason] : "?";
}

/* Fill err (may be NULL); returns the dw_err_t the reason stands for. */
static dw_err_t fail(dw_mapper_error_t *err, dw_mapper_reason_t reason, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static dw_err_t fail(dw_mapper_error_t *err, dw_mapper_reason_t reason, const char *field,
                     const char *fmt, ...)
{
    if (err) {
        size_t o = 0;
        err->reason = reason;
        snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
        if (field && *field) {
            int n = snprintf(err->message, sizeof(err->message), "%s: ", err->field);
            o = n > 0 && (size_t)n < sizeof(err->message) ? (size_t)n : 0;
        }
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message + o, sizeof(err->message) - o, fmt, ap);
        va_end(ap);
    }
    return reason == DW_MAPPER_NOMEM ? DW_ERR_NOMEM : DW_ERR_INVALID_ARG;
}

#define NOMEM(err) fail(err, DW_MAPPER_NOMEM, NULL, "out of memory")

/* ---- a growing byte buffer ------------------------------------------------------------------ */

typedef struct buf_s {
    char *p;
    size_t n, cap;
    bool fail;
} buf_t;

static bool buf_grow(buf_t *b, size_t more)
{
    if (b->fail)
        return false;
    if (b->n + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->fail = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->fail = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static inline void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap && !buf_grow(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static inline void buf_putc(buf_t *b, char c)
{
    if (b->n + 2 > b->cap && !buf_grow(b, 1))
        return;
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
}

static void buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* ---- UTF-8 ------------------------------------------------------------------------------------
 */

/* Length of the UTF-8 sequence at s (at most n bytes) and its code point, or 0 when the bytes
 * are not well-formed UTF-8 (overlong forms, surrogates and code points beyond U+10FFFF are
 * not). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Offset of the first byte that is not UTF-8, or n when all is well-formed. */
static size_t utf8_invalid_at(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_next(p + i, n - i, &cp);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

/* The length in UTF-16 code units (what Dataverse and F&O count as characters), or -1 when s is
 * not UTF-8. */
static long long utf16_length(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    long long units = 0;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            units++;
            continue;
        }
        uint32_t cp;
        size_t l = utf8_next(p + i, n - i, &cp);
        if (!l)
            return -1;
        i += l;
        units += cp >= 0x10000 ? 2 : 1;
    }
    return units;
}

/* ---- numbers ----------------------------------------------------------------------------------
 */

typedef enum { NUM_OK = 0, NUM_NOT, NUM_RANGE } num_rc_t;

/* An optionally signed decimal integer within int64. */
static num_rc_t parse_int64(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == n)
        return NUM_NOT;
    unsigned long long v = 0, limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
    bool range = false;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return NUM_NOT;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            range = true;
        else
            v = v * 10 + d;
    }
    if (range)
        return NUM_RANGE;
    *out = neg ? (long long)(0 - v) : (long long)v;
    return NUM_OK;
}

/* A decimal literal -?D+(.D+)?([eE][+-]?D+)?: its significant digits and the decimal exponent of
 * its most significant digit (0 for zero). */
typedef struct declit_s {
    int sig;       /* significant digits (leading and trailing zeros excluded) */
    long long e10; /* exponent of the leading significant digit */
    bool zero;
    bool frac_or_exp;
} declit_t;

static bool decimal_scan(const char *s, size_t n, declit_t *d)
{
    size_t i = 0;
    *d = (declit_t){0};
    if (i < n && s[i] == '-')
        i++;
    size_t int_start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t int_end = i;
    if (int_end == int_start)
        return false;
    size_t frac_start = i, frac_end = i;
    if (i < n && s[i] == '.') {
        frac_start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        frac_end = i;
        if (frac_end == frac_start)
            return false;
        d->frac_or_exp = true;
    }
    long long exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t es = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (exp < 1000000000LL)
                exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (i == es)
            return false;
        if (eneg)
            exp = -exp;
        d->frac_or_exp = true;
    }
    if (i != n)
        return false;
    /* digits of int then frac, as one sequence; position of the first and last non-zero */
    long long first = -1, last = -1, pos = 0;
    for (size_t k = int_start; k < int_end; k++, pos++) {
        if (s[k] != '0') {
            if (first < 0)
                first = pos;
            last = pos;
        }
    }
    for (size_t k = frac_start; k < frac_end; k++, pos++) {
        if (s[k] != '0') {
            if (first < 0)
                first = pos;
            last = pos;
        }
    }
    if (first < 0) {
        d->zero = true;
        return true;
    }
    d->sig = (int)(last - first + 1 > INT_MAX ? INT_MAX : last - first + 1);
    long long int_digits = (long long)(int_end - int_start);
    d->e10 = int_digits - 1 - first + exp;
    return true;
}

/* Can a double carry this literal exactly enough that its shortest text has the same value? */
static bool literal_fits_double(const char *s, size_t n)
{
    declit_t d;
    if (!decimal_scan(s, n, &d))
        return true; /* not a number jansson accepts either: let the parser say so */
    if (!d.frac_or_exp) {
        long long v;
        return parse_int64(s, n, &v) == NUM_OK;
    }
    return d.zero || (d.sig <= DW_MAPPER_DOUBLE_DIGITS && d.e10 < 308 && d.e10 > -307);
}

/* The shortest "%.Ng" text (N <= 17) that reads back as d, in jansson's style: a ".0" when it
 * would read as an integer, no '+' and no leading zeros in the exponent. */
static size_t real_text(double d, char *out, size_t size)
{
    char buf[64];
    int prec = DW_MAPPER_DOUBLE_DIGITS;
    for (; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* "%.15g" that reads back is the shortest form: %g drops trailing zeros, and a double read
     * from at most 15 digits prints back as those digits */
    char *e = strchr(buf, 'e');
    if (e) {
        char *src = e + 1, *dst = e + 1;
        if (*src == '+')
            src++;
        else if (*src == '-')
            *dst++ = *src++;
        while (*src == '0' && src[1])
            src++;
        memmove(dst, src, strlen(src) + 1);
    } else if (!strchr(buf, '.') && !strchr(buf, 'n') && !strchr(buf, 'i')) {
        strcat(buf, ".0");
    }
    return (size_t)snprintf(out, size, "%s", buf);
}

/* ---- the writer -------------------------------------------------------------------------------
 */

/* Do the eight bytes at p hold one that a JSON string cannot carry as it is (below 0x20, a
 * quote, a backslash) or that starts a UTF-8 sequence (0x80 and above)? May say yes for a plain
 * byte after such a one (a false alarm only sends the bytes to the slow loop), never no for one. */
static inline bool json_attention8(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    return ((w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) != 0;
}

/* Bytes a JSON string carries as they are: printable ASCII but the quote and the backslash. */
static const unsigned char plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static void dump_string(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    buf_putc(b, '"');
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    size_t i = 0;
    while (i < n) {
        /* eight plain bytes at a time (a byte below 0x20, a quote, a backslash or a byte of
         * 0x80 and above stops it; a false alarm only sends the bytes to the loop below) */
        while (i + 8 <= n && !json_attention8(p + i))
            i += 8;
        if (i >= n)
            break;
        unsigned char c = p[i];
        if (plain_byte[c]) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = utf8_next(p + i, n - i, &cp);
            if (!l) {
                b->fail = true;
                return;
            }
            i += l;
            continue;
        }
        buf_put(b, s + run, i - run);
        switch (c) {
        case '"':
            buf_put(b, "\\\"", 2);
            break;
        case '\\':
            buf_put(b, "\\\\", 2);
            break;
        case '\b':
            buf_put(b, "\\b", 2);
            break;
        case '\f':
            buf_put(b, "\\f", 2);
            break;
        case '\n':
            buf_put(b, "\\n", 2);
            break;
        case '\r':
            buf_put(b, "\\r", 2);
            break;
        case '\t':
            buf_put(b, "\\t", 2);
            break;
        default: {
            char seq[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
            buf_put(b, seq, 6);
        }
        }
        i++;
        run = i;
    }
    buf_put(b, s + run, n - run);
    buf_putc(b, '"');
}

typedef struct dump_key_s {
    const char *key;
    size_t len;
    const json_t *value;
} dump_key_t;

static int dump_key_cmp(const void *a, const void *b)
{
    const dump_key_t *x = a, *y = b;
    size_t min = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->key, y->key, min);
    if (r)
        return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void dump_value(buf_t *b, const json_t *v, int flags, int depth)
{
    char num[64];
    if (depth > DW_MAPPER_MAX_DEPTH) {
        b->fail = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        buf_put(b, "null", 4);
        return;
    case JSON_TRUE:
        buf_put(b, "true", 4);
        return;
    case JSON_FALSE:
        buf_put(b, "false", 5);
        return;
    case JSON_INTEGER: {
        /* as "%lld" writes it, without printf's machinery */
        json_int_t iv = json_integer_value(v);
        unsigned long long u = iv < 0 ? 0ULL - (unsigned long long)iv : (unsigned long long)iv;
        char *e = num + sizeof(num), *q = e;
        do {
            *--q = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (iv < 0)
            *--q = '-';
        buf_put(b, q, (size_t)(e - q));
        return;
    }
    case JSON_REAL:
        buf_put(b, num, real_text(json_real_value(v), num, sizeof(num)));
        return;
    case JSON_STRING:
        dump_string(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_ARRAY: {
        buf_putc(b, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && !b->fail; i++) {
            if (i)
                buf_putc(b, ',');
            dump_value(b, json_array_get(v, i), flags, depth + 1);
        }
        buf_putc(b, ']');
        return;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        dump_key_t stack_keys[64], *keys = stack_keys;
        if (n > 64 && !(keys = malloc(n * sizeof(*keys)))) {
            b->fail = true;
            return;
        }
        size_t k = 0;
        for (void *it = json_object_iter((json_t *)v); it && k < n;
             it = json_object_iter_next((json_t *)v, it)) {
            keys[k++] = (dump_key_t){json_object_iter_key(it), json_object_iter_key_len(it),
                                     json_object_iter_value(it)};
        }
        if ((flags & DW_MAPPER_DUMP_SORT_KEYS) && k > 64) {
            qsort(keys, k, sizeof(*keys), dump_key_cmp);
        } else if (flags & DW_MAPPER_DUMP_SORT_KEYS) {
            for (size_t i = 1; i < k; i++) { /* a payload's few dozen keys: insertion sort */
                dump_key_t t = keys[i];
                size_t j = i;
                while (j > 0 && dump_key_cmp(&keys[j - 1], &t) > 0) {
                    keys[j] = keys[j - 1];
                    j--;
                }
                keys[j] = t;
            }
        }
        buf_putc(b, '{');
        for (size_t i = 0; i < k && !b->fail; i++) {
            if (i)
                buf_putc(b, ',');
            dump_string(b, keys[i].key, keys[i].len);
            buf_putc(b, ':');
            dump_value(b, keys[i].value, flags, depth + 1);
        }
        buf_putc(b, '}');
        if (keys != stack_keys)
            free(keys);
        return;
    }
    }
}

char *dw_mapper_dumps(const json_t *v, int flags, size_t *len)
{
    buf_t b = {0};
    if (!v)
        return NULL;
    dump_value(&b, v, flags, 0);
    if (!b.fail && !b.p)
        buf_put(&b, "", 0);
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.p;
}

dw_err_t dw_mapper_content_hash(const json_t *fields, char hex[DW_SHA256_HEX_SIZE])
{
    buf_t b = {0};
    dump_value(&b, fields, DW_MAPPER_DUMP_SORT_KEYS, 0);
    if (b.fail || !b.p) {
        bool nomem = !b.p || b.n + 1 > b.cap;
        free(b.p);
        hex[0] = '\0';
        return nomem ? DW_ERR_NOMEM : DW_ERR_INVALID_ARG;
    }
    dw_sha256_hex(b.p, b.n, hex);
    free(b.p);
    return DW_OK;
}

/* ---- the reader --------------------------------------------------------------------------------
 */

/* The member whose value holds offset `at` of the text (the last object key met before it), for
 * messages. Non-printable bytes of the key become '?'. */
static void member_at(const char *text, size_t len, size_t at, char *out, size_t size)
{
    size_t i = 0, key_start = 0, key_len = 0;
    bool have = false;
    out[0] = '\0';
    while (i < len && i < at) {
        if (text[i] != '"') {
            i++;
            continue;
        }
        size_t start = ++i;
        while (i < len && text[i] != '"') {
            if (text[i] == '\\')
                i++;
            i++;
        }
        size_t end = i < len ? i : len;
        if (start <= at && at <= end) {
            /* inside this string: a key whose own bytes are bad, or a value */
            size_t j = end + 1;
            while (j < len &&
                   (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r'))
                j++;
            if (j < len && text[j] == ':') {
                key_start = start;
                key_len = end - start;
                have = true;
            }
            break;
        }
        i++;
        size_t j = i;
        while (j < len && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r'))
            j++;
        if (j < len && text[j] == ':') {
            key_start = start;
            key_len = end - start;
            have = true;
        }
    }
    if (!have)
        return;
    size_t o = 0;
    for (size_t k = 0; k < key_len && o + 1 < size; k++) {
        unsigned char c = (unsigned char)text[key_start + k];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

/* The offset after the string literal opening at text[i] (or len when it does not end). */
static size_t string_end(const char *text, size_t len, size_t i)
{
    i++;
    for (;;) {
        const char *q = memchr(text + i, '"', len - i);
        if (!q)
            return len;
        size_t at = (size_t)(q - text);
        size_t bs = 0;
        while (at - bs > i && text[at - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return at + 1;
        i = at + 1;
    }
}

/* The offset after the number-like token starting at text[i]. */
static size_t number_end(const char *text, size_t len, size_t i)
{
    size_t j = i + 1;
    while (j < len && ((text[j] >= '0' && text[j] <= '9') || text[j] == '.' || text[j] == 'e' ||
                       text[j] == 'E' || text[j] == '+' || text[j] == '-'))
        j++;
    return j;
}

/* literal_fits_double, with the common case first: at most 15 characters and no exponent. */
static bool number_fits(const char *s, size_t n)
{
    if (n <= DW_MAPPER_DOUBLE_DIGITS && !memchr(s, 'e', n) && !memchr(s, 'E', n))
        return true;
    return literal_fits_double(s, n);
}

/* The fast reader: one pass over text building jansson values directly, for valid JSON only.
 * It accepts exactly what json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts, with
 * the exact-number rule applied to each literal as it is met; on anything else (a syntax error,
 * a duplicate key, invalid UTF-8, \u0000, a lone surrogate, a real that overflows, deep
 * nesting) it returns NULL and dw_mapper_loadb takes the slow road (scan, quote, json_loadb),
 * whose result and error messages are the reference. */
typedef struct fast_s {
    const char *p, *end;
    char *scratch; /* unescaped strings */
    size_t scratch_cap;
} fast_t;

#define FAST_MAX_DEPTH 256

static json_t *fast_value(fast_t *f, int depth);

static inline void fast_ws(fast_t *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\n' || *f->p == '\r' || *f->p == '\t'))
        f->p++;
}


/* A string literal at f->p (the opening quote): its bytes in *out (borrowed: the text or the
 * scratch buffer) and *n. false when it is not a string jansson accepts. */
static bool fast_string(fast_t *f, const char **out, size_t *n)
{
    const unsigned char *p = (const unsigned char *)f->p + 1, *end = (const unsigned char *)f->end;
    const unsigned char *start = p;
    /* the common case: no escape */
    for (;;) {
        if (p >= end)
            return false;
        unsigned char c = *p;
        if (c == '"') {
            *out = (const char *)start;
            *n = (size_t)(p - start);
            f->p = (const char *)p + 1;
            return true;
        }
        if (c == '\\')
            break;
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = utf8_next(p, (size_t)(end - p), &cp);
            if (!l)
                return false;
            p += l;
            continue;
        }
        p++;
    }
    /* escapes: unescape into scratch (never longer than the literal) */
    size_t need = (size_t)(end - start) + 1;
    if (need > f->scratch_cap) {
        char *b = realloc(f->scratch, need);
        if (!b)
            return false;
        f->scratch = b;
        f->scratch_cap = need;
    }
    char *o = f->scratch;
    memcpy(o, start, (size_t)(p - start));
    o += p - start;
    for (;;) {
        if (p >= end)
            return false;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            uint32_t cp;
            size_t l = utf8_next(p, (size_t)(end - p), &cp);
            if (!l)
                return false;
            memcpy(o, p, l);
            o += l;
            p += l;
            continue;
        }
        if (c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (end - p < 2)
            return false;
        c = p[1];
        p += 2;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            *o++ = (char)c;
            continue;
        case 'b':
            *o++ = '\b';
            continue;
        case 'f':
            *o++ = '\f';
            continue;
        case 'n':
            *o++ = '\n';
            continue;
        case 'r':
            *o++ = '\r';
            continue;
        case 't':
            *o++ = '\t';
            continue;
        case 'u':
            break;
        default:
            return false;
        }
        if (end - p < 4)
            return false;
        int u = (int)dw_json_hex4((const char *)p);
        p += 4;
        if (u <= 0) /* not hex, or \u0000 (jansson refuses it without JSON_ALLOW_NUL) */
            return false;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return false;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return false;
            int lo = (int)dw_json_hex4((const char *)p + 2);
            if (lo < 0xdc00 || lo > 0xdfff)
                return false;
            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xc0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xe0 | cp >> 12);
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *o++ = (char)(0xf0 | cp >> 18);
            *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *out = f->scratch;
    *n = (size_t)(o - f->scratch);
    f->p = (const char *)p + 1;
    return true;
}

/* A number literal at f->p, by JSON's grammar; a literal a double cannot carry becomes a string
 * of the literal (the exact-number rule), as the slow road's quoting does. */
static json_t *fast_number(fast_t *f)
{
    const char *s = f->p, *p = s, *end = f->end;
    bool integer = true;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && *p == '.') {
        integer = false;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t)(p - s);
    f->p = p;
    if (!number_fits(s, n))
        return json_stringn_nocheck(s, n);
    if (integer) {
        long long v;
        if (parse_int64(s, n, &v) != NUM_OK)
            return NULL;
        return json_integer(v);
    }
    char buf[64];
    if (n >= sizeof(buf))
        return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (errno == ERANGE)
        return NULL;
    return json_real(d); /* NULL for inf/nan */
}

static json_t *fast_value(fast_t *f, int depth)
{
    if (depth > FAST_MAX_DEPTH)
        return NULL;
    fast_ws(f);
    if (f->p >= f->end)
        return NULL;
    char c = *f->p;
    switch (c) {
    case '{': {
        json_t *obj = json_object();
        if (!obj)
            return NULL;
        f->p++;
        fast_ws(f);
        if (f->p < f->end && *f->p == '}') {
            f->p++;
            return obj;
        }
        for (;;) {
            fast_ws(f);
            const char *k;
            size_t kn;
            if (f->p >= f->end || *f->p != '"' || !fast_string(f, &k, &kn))
                break;
            /* a key unescaped into scratch is kept before the value reuses scratch */
            char kbuf[256], *key = (char *)k;
            if (k == f->scratch) {
                key = kbuf;
                if (kn >= sizeof(kbuf) && !(key = malloc(kn + 1)))
                    break;
                memcpy(key, k, kn);
            }
            fast_ws(f);
            bool ok = f->p < f->end && *f->p == ':';
            json_t *v = NULL;
            if (ok) {
                f->p++;
                ok = (v = fast_value(f, depth + 1)) != NULL;
            }
            if (ok && json_object_getn(obj, key, kn)) { /* a duplicate key */
                json_decref(v);
                ok = false;
            } else if (ok && json_object_setn_new_nocheck(obj, key, kn, v)) {
                ok = false; /* v was consumed */
            }
            if (key != k && key != kbuf)
                free(key);
            if (!ok)
                break;
            fast_ws(f);
            if (f->p < f->end && *f->p == ',') {
                f->p++;
                continue;
            }
            if (f->p < f->end && *f->p == '}') {
                f->p++;
                return obj;
            }
            break;
        }
        json_decref(obj);
        return NULL;
    }
    case '[': {
        json_t *arr = json_array();
        if (!arr)
            return NULL;
        f->p++;
        fast_ws(f);
        if (f->p < f->end && *f->p == ']') {
            f->p++;
            return arr;
        }
        for (;;) {
            json_t *v = fast_value(f, depth + 1);
            if (!v || json_array_append_new(arr, v))
                break;
            fast_ws(f);
            if (f->p < f->end && *f->p == ',') {
                f->p++;
                continue;
            }
            if (f->p < f->end && *f->p == ']') {
                f->p++;
                return arr;
            }
            break;
        }
        json_decref(arr);
        return NULL;
    }
    case '"': {
        const char *sv;
        size_t n;
        if (!fast_string(f, &sv, &n))
            return NULL;
        return json_stringn_nocheck(sv, n);
    }
    case 't':
        if (f->end - f->p >= 4 && memcmp(f->p, "true", 4) == 0) {
            f->p += 4;
            return json_true();
        }
        return NULL;
    case 'f':
        if (f->end - f->p >= 5 && memcmp(f->p, "false", 5) == 0) {
            f->p += 5;
            return json_false();
        }
        return NULL;
    case 'n':
        if (f->end - f->p >= 4 && memcmp(f->p, "null", 4) == 0) {
            f->p += 4;
            return json_null();
        }
        return NULL;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return fast_number(f);
        return NULL;
    }
}

/* The whole text as one value by the fast reader, or NULL (then the slow road decides). */
static json_t *fast_loadb(const char *text, size_t len)
{
    fast_t f = {text, text + len, NULL, 0};
    json_t *v = fast_value(&f, 0);
    if (v) {
        fast_ws(&f);
        if (f.p != f.end) {
            json_decref(v);
            v = NULL;
        }
    }
    free(f.scratch);
    return v;
}

/* The slow road: find the literals a double cannot carry, quote them in a copy, json_loadb. */
static json_t *slow_loadb(const char *text, size_t len, dw_mapper_error_t *err)
{
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;
    json_error_t jerr;
    json_t *v = NULL;
    char *copy = NULL;
    size_t nquote = 0;
    /* pass 1: number literals a double cannot carry */
    for (size_t i = 0; i < len;) {
        char c = text[i];
        if (c == '"') {
            i = string_end(text, len, i);
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = number_end(text, len, i);
            if (!number_fits(text + i, j - i))
                nquote++;
            i = j;
            continue;
        }
        i++;
    }
    if (nquote) {
        /* pass 2: the same text with those literals in quotes */
        if (len > SIZE_MAX - 2 * nquote - 1 || !(copy = malloc(len + 2 * nquote + 1))) {
            NOMEM(err);
            return NULL;
        }
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            char c = text[i];
            if (c == '"') {
                size_t e = string_end(text, len, i);
                memcpy(copy + o, text + i, e - i);
                o += e - i;
                i = e;
                continue;
            }
            if (c == '-' || (c >= '0' && c <= '9')) {
                size_t j = number_end(text, len, i);
                bool q = !number_fits(text + i, j - i);
                if (q)
                    copy[o++] = '"';
                memcpy(copy + o, text + i, j - i);
                o += j - i;
                if (q)
                    copy[o++] = '"';
                i = j;
                continue;
            }
            copy[o++] = text[i++];
        }
        copy[o] = '\0';
        v = json_loadb(copy, o, flags, &jerr);
        free(copy);
        if (v)
            return v;
    }
    v = json_loadb(text, len, flags, &jerr);
    if (v && nquote) {
        /* cannot happen: quoting a valid number keeps valid JSON */
        json_decref(v);
        v = NULL;
        snprintf(jerr.text, sizeof(jerr.text), "number literals could not be kept exact");
    }
    if (v)
        return v;
    size_t bad = utf8_invalid_at(text, len);
    if (bad < len) {
        char member[128];
        member_at(text, len, bad, member, sizeof(member));
        fail(err, DW_MAPPER_INVALID_UTF8, member, "invalid UTF-8 (byte 0x%02x at offset %zu%s%s)",
             (unsigned char)text[bad], bad, member[0] ? " in the value of " : "",
             member[0] ? member : "");
        return NULL;
    }
    fail(err, DW_MAPPER_MALFORMED, NULL, "malformed JSON: line %d, column %d: %s", jerr.line,
         jerr.column, jerr.text);
    return NULL;
}

json_t *dw_mapper_loadb(const char *text, size_t len, dw_mapper_error_t *err)
{
    json_t *v = fast_loadb(text, len);
    return v ? v : slow_loadb(text, len, err);
}

/* ---- dates and times ----------------------------------------------------------------------- */

typedef struct dt_s {
    int y, mo, d, h, mi, s;
    char frac[10]; /* fraction digits as written, trailing zeros dropped */
    bool has_time;
    bool has_zone;
    int offset_min; /* local = UTC + offset */
} dt_t;

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, long long *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool digits(const char *s, size_t n, size_t at, size_t count, int *out)
{
    int v = 0;
    if (at + count > n)
        return false;
    for (size_t i = at; i < at + count; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Set dt from seconds since the epoch (UTC) and a fraction. */
static bool dt_from_epoch(long long secs, dt_t *dt)
{
    long long days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    long long rem = secs - days * 86400;
    long long y;
    civil_from_days(days, &y, &dt->mo, &dt->d);
    if (y < 1 || y > 9999)
        return false;
    dt->y = (int)y;
    dt->h = (int)(rem / 3600);
    dt->mi = (int)(rem % 3600 / 60);
    dt->s = (int)(rem % 60);
    return true;
}

/* ISO 8601 / RFC 3339 ("2024-03-01", "2024-03-01T10:00Z", "2024-03-01T10:00:00.1234567+02:00")
 * or the Microsoft JSON form "/Date(1709287200000)/" ("/Date(ms+0100)/": ms is UTC). */
static bool dt_parse(const char *s, size_t n, dt_t *dt)
{
    *dt = (dt_t){0};
    if (n > 7 && memcmp(s, "/Date(", 6) == 0) {
        size_t i = 6, end = n;
        if (n < 9 || s[n - 1] != '/' || s[n - 2] != ')')
            return false;
        end = n - 2;
        size_t j = i + (s[i] == '-');
        while (j < end && s[j] >= '0' && s[j] <= '9')
            j++;
        long long ms;
        if (parse_int64(s + i, j - i, &ms) != NUM_OK)
            return false;
        if (j < end) { /* an offset, informational */
            int off;
            if (end - j != 5 || (s[j] != '+' && s[j] != '-') || !digits(s, end, j + 1, 4, &off))
                return false;
        }
        if (ms < -62135596800000LL || ms > 253402300799999LL)
            return false;
        long long secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
        int frac = (int)(ms - secs * 1000);
        if (!dt_from_epoch(secs, dt))
            return false;
        dt->has_time = dt->has_zone = true;
        if (frac) {
            snprintf(dt->frac, sizeof(dt->frac), "%03d", frac);
            for (size_t k = strlen(dt->frac); k > 0 && dt->frac[k - 1] == '0'; k--)
                dt->frac[k - 1] = '\0';
        }
        return true;
    }
    if (!digits(s, n, 0, 4, &dt->y) || n < 10 || s[4] != '-' || !digits(s, n, 5, 2, &dt->mo) ||
        s[7] != '-' || !digits(s, n, 8, 2, &dt->d))
        return false;
    if (dt->y < 1 || dt->mo < 1 || dt->mo > 12 || dt->d < 1 || dt->d > days_in_month(dt->y, dt->mo))
        return false;
    if (n == 10)
        return true;
    size_t i = 10;
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
        return false;
    i++;
    if (!digits(s, n, i, 2, &dt->h) || i + 2 >= n || s[i + 2] != ':' ||
        !digits(s, n, i + 3, 2, &dt->mi))
        return false;
    i += 5;
    if (i < n && s[i] == ':') {
        if (!digits(s, n, i + 1, 2, &dt->s))
            return false;
        i += 3;
        if (i < n && s[i] == '.') {
            size_t fs = ++i;
            while (i < n && s[i] >= '0' && s[i] <= '9')
                i++;
            size_t fl = i - fs;
            if (fl == 0 || fl > 9)
                return false;
            while (fl > 0 && s[fs + fl - 1] == '0')
                fl--;
            memcpy(dt->frac, s + fs, fl);
            dt->frac[fl] = '\0';
        }
    }
    if (dt->h > 23 || dt->mi > 59 || dt->s > 59)
        return false;
    dt->has_time = true;
    if (i == n)
        return true;
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
        dt->has_zone = true;
        return true;
    }
    if (s[i] != '+' && s[i] != '-')
        return false;
    int sign = s[i] == '-' ? -1 : 1, oh, om = 0;
    i++;
    if (!digits(s, n, i, 2, &oh))
        return false;
    i += 2;
    if (i < n && s[i] == ':')
        i++;
    if (i < n) {
        if (!digits(s, n, i, 2, &om))
            return false;
        i += 2;
    }
    if (i != n || oh > 23 || om > 59)
        return false;
    dt->has_zone = true;
    dt->offset_min = sign * (oh * 60 + om);
    return true;
}

/* Shift dt to UTC. False when the result leaves years 1..9999. */
static bool dt_to_utc(dt_t *dt)
{
    if (!dt->offset_min)
        return true;
    long long secs = days_from_civil(dt->y, dt->mo, dt->d) * 86400 + dt->h * 3600 + dt->mi * 60 +
                     dt->s - (long long)dt->offset_min * 60;
    dt->offset_min = 0;
    return dt_from_epoch(secs, dt);
}

/* ---- conversions ------------------------------------------------------------------------------
 */

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool guid_ok(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!is_hex(s[i])) {
            return false;
        }
    }
    return true;
}

/* Convert v (not null) for col on side. field: for messages. */
static dw_err_t convert(const dw_meta_column_t *col, dw_map_side_t side, const json_t *v,
                        const char *field, json_t **out, dw_mapper_error_t *err)
{
    *out = NULL;
    switch (col->type) {
    case DW_COL_STRING: {
        if (!json_is_string(v))
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected a string, found %s",
                        dw_json_kind(v));
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        long long units = utf16_length(s, n);
        if (units < 0)
            return fail(err, DW_MAPPER_INVALID_UTF8, field, "the string is not valid UTF-8");
        if (col->max_length && units > col->max_length)
            return fail(err, DW_MAPPER_TOO_LONG, field,
                        "a string of %lld characters; %s.%s holds at most %d", units,
                        dw_map_side_name(side), col->name, col->max_length);
        *out = json_incref((json_t *)v); /* unchanged: shared, read-only */
        break;
    }
    case DW_COL_INTEGER: {
        long long i = 0;
        if (json_is_integer(v)) {
            *out = json_incref((json_t *)v);
        } else if (json_is_real(v)) {
            double d = json_real_value(v);
            if (d != d || d >= 9223372036854775808.0 || d < -9223372036854775808.0)
                return fail(err, DW_MAPPER_OUT_OF_RANGE, field,
                            "a number beyond the 64-bit integer range");
            if (d != (double)(long long)d)
                return fail(err, DW_MAPPER_WRONG_TYPE, field,
                            "a number with a fraction where an integer is expected");
            *out = json_integer((json_int_t)d);
        } else if (json_is_string(v)) {
            num_rc_t rc = parse_int64(json_string_value(v), json_string_length(v), &i);
            if (rc == NUM_RANGE)
                return fail(err, DW_MAPPER_OUT_OF_RANGE, field,
                            "an integer beyond the 64-bit range (%zu digits)",
                            json_string_length(v));
            if (rc != NUM_OK)
                return fail(err, DW_MAPPER_WRONG_TYPE, field,
                            "a string that is not an integer where an integer is expected");
            *out = json_integer(i);
        } else {
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected an integer, found %s",
                        dw_json_kind(v));
        }
        break;
    }
    case DW_COL_DECIMAL: {
        if (json_is_integer(v)) {
            *out = json_incref((json_t *)v);
        } else if (json_is_real(v)) {
            *out = json_incref((json_t *)v);
        } else if (json_is_string(v)) {
            declit_t d;
            const char *s = json_string_value(v);
            size_t n = json_string_length(v);
            if (!decimal_scan(s, n, &d))
                return fail(err, DW_MAPPER_WRONG_TYPE, field,
                            "a string that is not a decimal number");
            if (!d.zero && d.e10 >= DW_MAPPER_DECIMAL_MAX_INT)
                return fail(err, DW_MAPPER_OUT_OF_RANGE, field,
                            "a decimal of more than %d integer digits", DW_MAPPER_DECIMAL_MAX_INT);
            *out = json_incref((json_t *)v); /* verbatim: exact */
        } else {
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected a decimal number, found %s",
                        dw_json_kind(v));
        }
        break;
    }
    case DW_COL_BOOLEAN:
        if (!json_is_boolean(v))
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected a boolean, found %s",
                        dw_json_kind(v));
        *out = json_boolean(json_is_true(v));
        break;
    case DW_COL_DATE:
    case DW_COL_DATETIME: {
        if (!json_is_string(v))
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected a date%s string, found %s",
                        col->type == DW_COL_DATETIME ? "-time" : "", dw_json_kind(v));
        dt_t dt;
        char text[64];
        if (!dt_parse(json_string_value(v), json_string_length(v), &dt))
            return fail(err, DW_MAPPER_INVALID_DATE, field,
                        "not a valid date or date-time (ISO 8601, e.g. 2024-03-01 or "
                        "2024-03-01T10:00:00Z)");
        if (col->type == DW_COL_DATE) {
            /* a date is the calendar day as written; F&O carries it at midnight UTC */
            if (side == DW_MAP_FO)
                snprintf(text, sizeof(text), "%04d-%02d-%02dT00:00:00Z", dt.y, dt.mo, dt.d);
            else
                snprintf(text, sizeof(text), "%04d-%02d-%02d", dt.y, dt.mo, dt.d);
        } else {
            if (!dt_to_utc(&dt))
                return fail(err, DW_MAPPER_INVALID_DATE, field,
                            "the date-time leaves the years 0001-9999 in UTC");
            snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d%s%sZ", dt.y, dt.mo, dt.d,
                     dt.h, dt.mi, dt.s, dt.frac[0] ? "." : "", dt.frac);
        }
        *out = json_string_nocheck(text);
        break;
    }
    case DW_COL_GUID: {
        if (!json_is_string(v) || !guid_ok(json_string_value(v), json_string_length(v)))
            return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected a guid, found %s",
                        json_is_string(v) ? "another string" : dw_json_kind(v));
        char g[37];
        memcpy(g, json_string_value(v), 37);
        for (int i = 0; i < 36; i++)
            g[i] = (char)(g[i] >= 'A' && g[i] <= 'F' ? g[i] + 32 : g[i]);
        *out = json_string_nocheck(g);
        break;
    }
    case DW_COL_ENUM: {
        for (size_t i = 0; i < col->nmembers; i++) {
            const dw_meta_member_t *m = &col->members[i];
            if (side == DW_MAP_FO &&
                ((json_is_string(v) && strcmp(json_string_value(v), m->name) == 0) ||
                 (json_is_integer(v) && json_integer_value(v) == m->value))) {
                *out = json_string_nocheck(m->name);
                break;
            }
            if (side == DW_MAP_DV && json_is_integer(v) && json_integer_value(v) == m->value) {
                *out = json_integer(m->value);
                break;
            }
        }
        if (!*out) {
            if (side == DW_MAP_FO ? !json_is_string(v) && !json_is_integer(v) : !json_is_integer(v))
                return fail(err, DW_MAPPER_WRONG_TYPE, field, "expected %s, found %s",
                            side == DW_MAP_FO ? "an enum member name" : "an option value",
                            dw_json_kind(v));
            return fail(err, DW_MAPPER_UNMAPPED_VALUE, field, "%s is not a member of %s",
                        dw_json_kind(v), col->enum_name ? col->enum_name : col->name);
        }
        break;
    }
    case DW_COL_LOOKUP:
        return fail(err, DW_MAPPER_WRONG_TYPE, field,
                    "a lookup column takes a lookup transform, not a plain value");
    }
    if (!*out)
        return NOMEM(err);
    return DW_OK;
}

dw_err_t dw_mapper_convert(const dw_meta_column_t *column, dw_map_side_t side, const json_t *in,
                           json_t **out, dw_mapper_error_t *err)
{
    *out = NULL;
    if (json_is_null(in)) {
        *out = json_null();
        return DW_OK;
    }
    return convert(column, side, in, column->name, out, err);
}

/* ---- lookups as OData references ------------------------------------------------------------- */

static void bind_escape(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_putc(b, (char)c);
        } else if (c == '\'') {
            buf_put(b, "''", 2);
        } else {
            char seq[3] = {'%', hex[c >> 4], hex[c & 0xf]};
            buf_put(b, seq, 3);
        }
    }
}

static void bind_build(buf_t *b, const dw_map_lookup_t *lk, const char *value, const char *company)
{
    buf_putc(b, '/');
    buf_puts(b, lk->entity_set);
    buf_putc(b, '(');
    buf_puts(b, lk->key);
    buf_put(b, "='", 2);
    bind_escape(b, value);
    buf_putc(b, '\'');
    if (lk->company && company) {
        buf_putc(b, ',');
        buf_puts(b, lk->company);
        buf_put(b, "='", 2);
        bind_escape(b, company);
        buf_putc(b, '\'');
    }
    buf_putc(b, ')');
}

dw_err_t dw_mapper_bind(const dw_map_lookup_t *lookup, const char *value, const char *company,
                        char **out)
{
    buf_t b = {0};
    *out = NULL;
    if (!lookup->entity_set || !lookup->key || !value)
        return DW_ERR_INVALID_ARG;
    bind_build(&b, lookup, value, company);
    if (b.fail) {
        free(b.p);
        return DW_ERR_NOMEM;
    }
    *out = b.p;
    return DW_OK;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10;
}

dw_err_t dw_mapper_bind_parse(const dw_map_lookup_t *lookup, const char *bind, char **value,
                              char **company, const dw_map_lookup_t **matched,
                              dw_mapper_error_t *err)
{
    dw_err_t rc = DW_OK;
    size_t n = strlen(bind);
    char *d = malloc(n + 1);
    char *val = NULL, *comp = NULL;
    const dw_map_lookup_t *lk = NULL;
    *value = NULL;
    if (company)
        *company = NULL;
    if (!d)
        return NOMEM(err);
    /* percent-decoding first (URL level), then the OData key syntax */
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (bind[i] == '%') {
            if (i + 2 >= n || !is_hex(bind[i + 1]) || !is_hex(bind[i + 2])) {
                rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "a reference with a bad %%-escape");
                goto out;
            }
            d[o++] = (char)(hexval(bind[i + 1]) << 4 | hexval(bind[i + 2]));
            i += 2;
        } else {
            d[o++] = bind[i];
        }
    }
    d[o] = '\0';
    if (memchr(d, '\0', o)) {
        rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "a reference holding a NUL byte");
        goto out;
    }
    if (utf8_invalid_at(d, o) < o) {
        rc = fail(err, DW_MAPPER_INVALID_UTF8, NULL, "a reference whose value is not UTF-8");
        goto out;
    }
    char *paren = strchr(d, '(');
    if (!paren || o < 2 || d[o - 1] != ')') {
        rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "not an OData reference (entity_set(key=...))");
        goto out;
    }
    char *set = paren;
    while (set > d && set[-1] != '/')
        set--;
    size_t setlen = (size_t)(paren - set);
    for (lk = lookup; lk; lk = lk->fallback) {
        if (lk->entity_set && strlen(lk->entity_set) == setlen &&
            memcmp(lk->entity_set, set, setlen) == 0)
            break;
    }
    if (!lk) {
        rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL,
                  "the reference names an entity set that is not a target of the lookup");
        goto out;
    }
    /* name='value'(,name='value')*  or  name=unquoted */
    char *p = paren + 1, *end = d + o - 1;
    bool named = false;
    while (p < end) {
        char *eq = p;
        while (eq < end && *eq != '=' && *eq != ',' && *eq != '\'')
            eq++;
        if (eq >= end || *eq != '=') {
            if (!named) {
                rc = fail(err, DW_MAPPER_UNRESOLVED_LOOKUP, NULL,
                          "a reference by row id; the key value needs a read of the row");
                goto out;
            }
            rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "a malformed OData key");
            goto out;
        }
        named = true;
        size_t nl = (size_t)(eq - p);
        char *name = p;
        p = eq + 1;
        char *v = NULL;
        size_t vl = 0;
        char *vbuf = NULL;
        if (p < end && *p == '\'') {
            vbuf = malloc((size_t)(end - p) + 1);
            if (!vbuf) {
                rc = NOMEM(err);
                goto out;
            }
            p++;
            bool closed = false;
            while (p < end) {
                if (*p == '\'') {
                    if (p + 1 < end && p[1] == '\'') {
                        vbuf[vl++] = '\'';
                        p += 2;
                        continue;
                    }
                    closed = true;
                    p++;
                    break;
                }
                vbuf[vl++] = *p++;
            }
            vbuf[vl] = '\0';
            if (!closed) {
                free(vbuf);
                rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "an unterminated quoted key value");
                goto out;
            }
            v = vbuf;
        } else {
            char *s = p;
            while (p < end && *p != ',')
                p++;
            vl = (size_t)(p - s);
            if (!(vbuf = malloc(vl + 1))) {
                rc = NOMEM(err);
                goto out;
            }
            memcpy(vbuf, s, vl);
            vbuf[vl] = '\0';
            v = vbuf;
        }
        if (strlen(lk->key) == nl && memcmp(name, lk->key, nl) == 0 && !val)
            val = v;
        else if (lk->company && strlen(lk->company) == nl && memcmp(name, lk->company, nl) == 0 &&
                 !comp)
            comp = v;
        else
            free(v);
        if (p < end) {
            if (*p != ',') {
                rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "a malformed OData key");
                goto out;
            }
            p++;
        }
    }
    if (!val) {
        rc = fail(err, DW_MAPPER_WRONG_TYPE, NULL, "the reference does not name the key column %s",
                  lk->key);
        goto out;
    }
    *value = val;
    val = NULL;
    if (company) {
        *company = comp;
        comp = NULL;
    }
    if (matched)
        *matched = lk;
out:
    free(val);
    free(comp);
    free(d);
    return rc;
}

/* ---- the engine --------------------------------------------------------------------------------
 */

void dw_mapper_result_clear(dw_mapper_result_t *res)
{
    if (!res)
        return;
    json_decref(res->payload);
    json_decref(res->key);
    free(res->canonical_key);
    free(res->company);
    free(res->payload_text);
    *res = (dw_mapper_result_t){0};
}

/* Scalars equal as values: 1 and 1.0 are the same option. */
static bool scalar_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_is_string(a) && json_is_string(b))
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    return json_typeof(a) == json_typeof(b) && (json_is_boolean(a) || json_is_null(a));
}

/* A reference to a scalar for a payload. jansson values are immutable unless modified through
 * the setters, and their reference counts are atomic (JSON_HAVE_ATOMIC_BUILTINS), so a payload
 * shares the record's and the map's scalars instead of copying them: the payload is read-only. */
static json_t *scalar_copy(const json_t *v)
{
    return json_incref((json_t *)v);
}

/* "<pre><col><post>" into name (size bytes), truncated as snprintf would: the lookup column
 * names of every record, without printf's machinery. */
static void col_name(char *name, size_t size, const char *pre, const char *col, const char *post)
{
    size_t o = 0;
    for (const char *parts[3] = {pre, col, post}, **q = parts; q < parts + 3; q++)
        for (const char *c = *q; *c && o + 1 < size; c++)
            name[o++] = *c;
    name[o] = '\0';
}

/* The resolved key value of a Dataverse lookup column in a Dataverse record, read from (in this
 * order) the column itself (the key value capture resolved, or an expanded row), its
 * "<col>@odata.bind" reference, or "_<col>_value" (a bare row id: unresolved).
 * *value: new string, json null, or NULL when the record has none of these. */
static dw_err_t lookup_from_dv(const dw_map_field_t *f, const json_t *record, json_t **value,
                               char **company, dw_mapper_error_t *err)
{
    const dw_map_lookup_t *lk = f->lookup;
    char name[300];
    *value = NULL;
    *company = NULL;
    const json_t *v = json_object_get(record, f->dv);
    if (v) {
        if (json_is_string(v) || json_is_null(v)) {
            *value = scalar_copy(v);
            return *value ? DW_OK : NOMEM(err);
        }
        if (json_is_object(v)) {
            for (const dw_map_lookup_t *l = lk; l; l = l->fallback) {
                const json_t *k = json_object_get(v, l->key);
                if (json_is_string(k)) {
                    *value = scalar_copy(k);
                    const json_t *c = l->company ? json_object_get(v, l->company) : NULL;
                    if (json_is_string(c) && !(*company = strdup(json_string_value(c)))) {
                        json_decref(*value);
                        *value = NULL;
                        return NOMEM(err);
                    }
                    return *value ? DW_OK : NOMEM(err);
                }
            }
            return fail(err, DW_MAPPER_UNRESOLVED_LOOKUP, f->dv, "the expanded row has no %s value",
                        lk->key);
        }
        return fail(err, DW_MAPPER_WRONG_TYPE, f->dv,
                    "a lookup is a key value, an expanded row or a reference, not %s",
                    dw_json_kind(v));
    }
    col_name(name, sizeof(name), "", f->dv, "@odata.bind");
    if ((v = json_object_get(record, name))) {
        if (json_is_null(v)) {
            *value = json_null();
            return DW_OK;
        }
        if (!json_is_string(v))
            return fail(err, DW_MAPPER_WRONG_TYPE, name, "a reference is a string, not %s",
                        dw_json_kind(v));
        char *val = NULL;
        dw_mapper_error_t e;
        dw_err_t rc = dw_mapper_bind_parse(lk, json_string_value(v), &val, company, NULL, &e);
        if (rc)
            return fail(err, e.reason, name, "%s", e.message);
        *value = json_string(val);
        free(val);
        if (!*value) {
            free(*company);
            *company = NULL;
            return fail(err, DW_MAPPER_INVALID_UTF8, name, "the key value is not UTF-8");
        }
        return DW_OK;
    }
    col_name(name, sizeof(name), "_", f->dv, "_value");
    if ((v = json_object_get(record, name))) {
        if (json_is_null(v)) {
            *value = json_null();
            return DW_OK;
        }
        return fail(err, DW_MAPPER_UNRESOLVED_LOOKUP, f->dv,
                    "only the row id (%s) is known; the referenced %s needs a read", name, lk->key);
    }
    return DW_OK;
}

/* Lower-case for the canonical key: ASCII, Latin-1 Supplement, Latin Extended-A, Greek and
 * Cyrillic capitals (simple case folding of the scripts keys are written in). */
static uint32_t fold(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3ab && c != 0x3a2) ||
        (c >= 0x410 && c <= 0x42f))
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
        c != 0x178 && c != 0x17f) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper)
            return c % 2 == 1 ? c + 1 : c;
        return c % 2 == 0 ? c + 1 : c;
    }
    if (c == 0x178)
        return 0xff;
    return c;
}

static json_t *lower_string(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bool lower = true;
    for (size_t i = 0; i < n && lower; i++)
        lower = (unsigned char)s[i] < 0x80 && !(s[i] >= 'A' && s[i] <= 'Z');
    if (lower)
        return json_incref((json_t *)v);
    buf_t b = {0};
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = p[i] < 0x80 ? (cp = p[i], 1) : utf8_next(p + i, n - i, &cp);
        if (!l) {
            free(b.p);
            return NULL;
        }
        uint32_t f = fold(cp);
        if (f == cp) {
            buf_put(&b, s + i, l);
        } else {
            char enc[4];
            size_t el;
            if (f < 0x80) {
                enc[0] = (char)f;
                el = 1;
            } else {
                enc[0] = (char)(0xc0 | f >> 6);
                enc[1] = (char)(0x80 | (f & 0x3f));
                el = 2;
            }
            buf_put(&b, enc, el);
        }
        i += l;
    }
    json_t *r = b.fail ? NULL : json_stringn_nocheck(b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

/* Is v a usable value (present and not null)? */
static bool present(const json_t *v)
{
    return v && !json_is_null(v);
}

dw_err_t dw_mapper_in_scope(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                            bool *in_scope, dw_mapper_error_t *err)
{
    char errstr[256];
    const dw_filter_t *f = dw_map_filter(map, dw_map_dir_source(dir));
    *in_scope = true;
    if (!f)
        return DW_OK;
    if (dw_filter_eval(f, record, in_scope, errstr, sizeof(errstr)) != DW_OK)
        return fail(err, DW_MAPPER_WRONG_TYPE, NULL, "scope filter: %s", errstr);
    return DW_OK;
}

#define MAPPER_MAX_KEYS 16

/* dw_mapper_apply; payload_only: the payload, its text and hash alone (no key, no canonical
 * key), for dw_mapper_origin_hash. */
static dw_err_t mapper_apply(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                             dw_mapper_result_t *res, dw_mapper_error_t *err, bool payload_only)
{
    dw_err_t rc = DW_OK;
    json_t *payload = NULL, *key = NULL, *canon = NULL, *out = NULL;
    json_t *keyvals[MAPPER_MAX_KEYS] = {0};
    char *company = NULL, *bind_company = NULL;
    char name[300];
    size_t nkeys = dw_map_key_count(map);
    *res = (dw_mapper_result_t){0};
    if (err)
        *err = (dw_mapper_error_t){0};

    if ((dir != DW_MAP_FO_TO_DV && dir != DW_MAP_DV_TO_FO) || !dw_map_runs(map, dir))
        return fail(err, DW_MAPPER_DIRECTION, NULL, "map %s runs %s, not %s", dw_map_name(map),
                    dw_map_dir_name(dw_map_direction(map)), dw_map_dir_name(dir));
    if (!json_is_object(record))
        return fail(err, DW_MAPPER_MALFORMED, NULL, "the record is %s, not a JSON object",
                    dw_json_kind(record));
    if (nkeys > MAPPER_MAX_KEYS)
        return fail(err, DW_MAPPER_MALFORMED, NULL, "more than %d key fields", MAPPER_MAX_KEYS);
    if (!(payload = json_object()) || !(key = json_object()))
        goto nomem;
    const bool to_dv = dir == DW_MAP_FO_TO_DV;
    const dw_map_side_t dst_side = to_dv ? DW_MAP_DV : DW_MAP_FO;
    if (to_dv) {
        const json_t *c = json_object_get(record, "dataAreaId");
        if (json_is_string(c) && !(company = strdup(json_string_value(c))))
            goto nomem;
    }

    size_t nfields = dw_map_field_count(map);
    for (size_t i = 0; i < nfields; i++) {
        const dw_map_field_t *f = dw_map_field(map, i);
        if (!dw_map_field_active(f, dir))
            continue;
        const char *src = to_dv ? f->fo : f->dv;
        const char *dst = to_dv ? f->dv : f->fo;
        const dw_meta_column_t *src_col = to_dv ? f->fo_column : f->dv_column;
        const dw_meta_column_t *dst_col = to_dv ? f->dv_column : f->fo_column;
        const char *dst_name = dst;
        json_t *fo_value = NULL; /* borrowed: the F&O-side value, for a key */
        out = NULL;

        if (f->transform == DW_MAP_XF_CONSTANT) {
            if (!(out = scalar_copy(f->constant)))
                goto nomem;
            goto set;
        }
        if (!dst_col) {
            rc = fail(err, DW_MAPPER_MALFORMED, dst, "the column is not in the metadata");
            goto out;
        }
        const json_t *v;
        json_t *resolved = NULL; /* dv-to-fo lookups: the key value read from the record */
        if (f->transform == DW_MAP_XF_LOOKUP && !to_dv) {
            char *c = NULL;
            if ((rc = lookup_from_dv(f, record, &resolved, &c, err)))
                goto out;
            if (c && !bind_company)
                bind_company = c;
            else
                free(c);
            v = resolved;
        } else {
            v = json_object_get(record, src);
        }
        if (!present(v)) {
            if (f->is_key) {
                json_decref(resolved);
                rc = fail(err, DW_MAPPER_MISSING_KEY, src, "the key field is %s",
                          v ? "null" : "missing");
                goto out;
            }
            const json_t *def =
                f->transform == DW_MAP_XF_DEFAULT ? (to_dv ? f->default_dv : f->default_fo) : NULL;
            if (def) {
                json_decref(resolved);
                if ((rc = convert(dst_col, dst_side, def, dst, &out, err)))
                    goto out;
                goto set;
            }
            if (!v) { /* missing: not written */
                json_decref(resolved);
                continue;
            }
            json_decref(resolved);
            if (f->transform == DW_MAP_XF_VALUE_MAP) {
                rc = fail(err, DW_MAPPER_UNMAPPED_VALUE, src,
                          "null has no pair in the value map (and there is no default)");
                goto out;
            }
            /* null clears, except that F&O strings are never null: the empty string */
            bool fo_text = !to_dv && (dst_col->type == DW_COL_STRING);
            if (!(out = fo_text ? json_string("") : json_null()))
                goto nomem;
            if (f->transform == DW_MAP_XF_LOOKUP && to_dv) {
                col_name(name, sizeof(name), "", dst, "@odata.bind");
                dst_name = name;
            }
            goto set;
        }

        switch (f->transform) {
        case DW_MAP_XF_COPY:
        case DW_MAP_XF_DEFAULT:
            if (src_col && src_col->type == DW_COL_GUID && dst_col->type != DW_COL_GUID &&
                !(json_is_string(v) && guid_ok(json_string_value(v), json_string_length(v)))) {
                rc = fail(err, DW_MAPPER_WRONG_TYPE, src, "expected a guid, found %s",
                          json_is_string(v) ? "another string" : dw_json_kind(v));
                goto out;
            }
            if (src_col && src_col->type == DW_COL_INTEGER && dst_col->type == DW_COL_DECIMAL &&
                !json_is_integer(v)) {
                json_t *tmp = NULL;
                if ((rc = convert(src_col, to_dv ? DW_MAP_FO : DW_MAP_DV, v, src, &tmp, err)))
                    goto out;
                rc = convert(dst_col, dst_side, tmp, src, &out, err);
                json_decref(tmp);
                if (rc)
                    goto out;
                break;
            }
            if ((rc = convert(dst_col, dst_side, v, src, &out, err)))
                goto out;
            break;
        case DW_MAP_XF_VALUE_MAP: {
            const json_t *sv = v;
            json_t *named = NULL;
            /* an F&O enum given by its value instead of its name */
            if (to_dv && src_col && src_col->type == DW_COL_ENUM && json_is_integer(v)) {
                for (size_t m = 0; m < src_col->nmembers; m++) {
                    if (src_col->members[m].value == json_integer_value(v)) {
                        if (!(named = json_string(src_col->members[m].name)))
                            goto nomem;
                        sv = named;
                        break;
                    }
                }
            }
            for (size_t k = 0; k < f->npairs && !out; k++) {
                const json_t *from = to_dv ? f->pairs[k].fo : f->pairs[k].dv;
                const json_t *to = to_dv ? f->pairs[k].dv : f->pairs[k].fo;
                if (scalar_equal(sv, from) && !(out = scalar_copy(to))) {
                    json_decref(named);
                    goto nomem;
                }
            }
            json_decref(named);
            if (!out) {
                if (json_is_string(v) &&
                    utf16_length(json_string_value(v), json_string_length(v)) < 0)
                    rc = fail(err, DW_MAPPER_INVALID_UTF8, src, "the string is not valid UTF-8");
                else
                    rc = fail(err, DW_MAPPER_UNMAPPED_VALUE, src,
                              "%s that no pair of the value map has", dw_json_kind(v));
                goto out;
            }
            break;
        }
        case DW_MAP_XF_LOOKUP: {
            if (!json_is_string(v)) {
                json_decref(resolved);
                rc = fail(err, DW_MAPPER_WRONG_TYPE, src,
                          "a lookup takes the referenced row's key as a string, not %s",
                          dw_json_kind(v));
                goto out;
            }
            const char *s = json_string_value(v);
            size_t sl = json_string_length(v);
            long long units = utf16_length(s, sl);
            const dw_meta_column_t *limit = to_dv ? f->lookup->key_column : dst_col;
            if (units < 0 || memchr(s, '\0', sl)) {
                json_decref(resolved);
                rc = fail(err, units < 0 ? DW_MAPPER_INVALID_UTF8 : DW_MAPPER_WRONG_TYPE, src,
                          "the key value is not valid UTF-8 text");
                goto out;
            }
            if (limit && limit->max_length && units > limit->max_length) {
                json_decref(resolved);
                rc = fail(err, DW_MAPPER_TOO_LONG, src,
                          "a key of %lld characters; %s holds at most %d", units, limit->name,
                          limit->max_length);
                goto out;
            }
            if (to_dv) {
                if (f->lookup->company && !company) {
                    rc = fail(err, DW_MAPPER_MISSING_KEY, "dataAreaId",
                              "the lookup %s needs the record's company (dataAreaId)", src);
                    goto out;
                }
                if (!f->lookup->entity_set) {
                    rc = fail(err, DW_MAPPER_MALFORMED, src, "the lookup is not resolved");
                    goto out;
                }
                buf_t b = {0};
                bind_build(&b, f->lookup, s, company);
                out = b.fail ? NULL : json_stringn_nocheck(b.p, b.n);
                free(b.p);
                if (!out)
                    goto nomem;
                col_name(name, sizeof(name), "", dst, "@odata.bind");
                dst_name = name;
                fo_value = (json_t *)v;
            } else {
                out = resolved;
                resolved = NULL;
                if (strcmp(dst, "dataAreaId") == 0 && !company && !(company = strdup(s)))
                    goto nomem;
            }
            break;
        }
        case DW_MAP_XF_CONSTANT:
            break;
        }
        json_decref(resolved);

    set:
        /* F&O keeps a company id in lower case (its OData writes dataAreaId so); Dataverse holds
         * the company code as the legal entity writes it (USMF): written to F&O, a company is
         * lower-cased, so the record captured back from F&O hashes as what was written */
        if (!to_dv && json_is_string(out) && strcmp(dst, "dataAreaId") == 0) {
            json_t *low = lower_string(out);
            json_decref(out);
            if (!(out = low))
                goto nomem;
            if (company && strcmp(company, json_string_value(out)) != 0) {
                free(company);
                if (!(company = strdup(json_string_value(out))))
                    goto nomem;
            }
        }
        /* column names come from the validated map: no UTF-8 check per record */
        if (json_object_set_new_nocheck(payload, dst_name, out)) {
            out = NULL;
            goto nomem;
        }
        json_t *placed = out; /* borrowed from payload from here on */
        out = NULL;
        if (f->is_key && !payload_only) {
            for (size_t k = 0; k < nkeys; k++) {
                if (dw_map_key(map, k)->field != f)
                    continue;
                /* target key: the plain value, or a lookup's key value */
                json_t *kv = fo_value ? fo_value : placed;
                if (json_object_set_nocheck(key, dst, kv))
                    goto nomem;
                /* canonical key: the F&O-side value, normalised for its column when it can be
                 * (a source longer than its own F&O column still has a key) */
                json_t *fv =
                    to_dv ? (fo_value ? fo_value : (json_t *)json_object_get(record, src)) : placed;
                json_t *norm = NULL;
                if (to_dv && !fo_value && f->fo_column &&
                    convert(f->fo_column, DW_MAP_FO, fv, src, &norm, NULL) != DW_OK)
                    norm = NULL;
                keyvals[k] = norm ? norm : json_incref(fv);
            }
        }
    }

    /* the company of a line comes from its parent's reference */
    if (!company && bind_company) {
        company = bind_company;
        bind_company = NULL;
        if (!to_dv) {
            for (char *p = company; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
    }
    if (payload_only)
        goto hash;
    if (!(canon = json_array()))
        goto nomem;
    /* A record whose key does not hold its company (order and invoice lines inherit it from
     * their header) is keyed by the company too, so two companies' lines never share a key. */
    if (company && !dw_map_key_has_company(map)) {
        json_t *cv = json_string(company);
        json_t *lv = cv ? lower_string(cv) : NULL;
        json_decref(cv);
        if (!lv || json_array_append_new(canon, lv))
            goto nomem;
    }
    for (size_t k = 0; k < nkeys; k++) {
        json_t *kv = keyvals[k];
        if (!kv) {
            const dw_map_key_t *mk = dw_map_key(map, k);
            rc = fail(err, DW_MAPPER_MISSING_KEY, to_dv ? mk->fo : mk->dv,
                      "the key field is not mapped in this direction");
            goto out;
        }
        json_t *lv = json_is_string(kv) ? lower_string(kv) : json_incref(kv);
        if (!lv || json_array_append_new(canon, lv))
            goto nomem;
    }
    if (!(res->canonical_key = dw_mapper_dumps(canon, 0, NULL)))
        goto nomem;
hash:
    {
        buf_t b = {0};
        dump_value(&b, payload, DW_MAPPER_DUMP_SORT_KEYS, 0);
        if (b.fail || !b.p) {
            bool nomem = !b.p || b.n + 1 > b.cap;
            free(b.p);
            rc = nomem ? NOMEM(err)
                       : fail(err, DW_MAPPER_INVALID_UTF8, NULL, "the payload is not UTF-8");
            goto out;
        }
        dw_sha256_hex(b.p, b.n, res->content_hash);
        res->payload_text = b.p;
        res->payload_len = b.n;
    }
    res->payload = payload;
    res->key = key;
    res->company = company;
    payload = key = NULL;
    company = NULL;
    goto out;
nomem:
    rc = NOMEM(err);
out:
    json_decref(out);
    json_decref(payload);
    json_decref(key);
    json_decref(canon);
    for (size_t k = 0; k < MAPPER_MAX_KEYS; k++)
        json_decref(keyvals[k]);
    free(company);
    free(bind_company);
    if (rc) {
        free(res->canonical_key);
        free(res->payload_text);
        *res = (dw_mapper_result_t){0};
    }
    return rc;
}

dw_err_t dw_mapper_apply(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                         dw_mapper_result_t *res, dw_mapper_error_t *err)
{
    return mapper_apply(map, dir, record, res, err, false);
}

/* The value of field f in a source-side record of dir, normalised for comparison: a Dataverse
 * lookup as its key value, everything else converted for its own column; F&O null text as "".
 * *out: new, or NULL when the record lacks the field. */
static dw_err_t source_value(const dw_map_field_t *f, dw_map_dir_t dir, const json_t *record,
                             json_t **out, dw_mapper_error_t *err)
{
    bool to_dv = dir == DW_MAP_FO_TO_DV;
    const dw_meta_column_t *col = to_dv ? f->fo_column : f->dv_column;
    const char *src = to_dv ? f->fo : f->dv;
    json_t *v = NULL;
    *out = NULL;
    if (f->transform == DW_MAP_XF_LOOKUP && !to_dv) {
        char *c = NULL;
        dw_err_t rc = lookup_from_dv(f, record, &v, &c, err);
        free(c);
        if (rc)
            return rc;
    } else {
        const json_t *raw = json_object_get(record, src);
        if (!raw)
            return DW_OK;
        if (json_is_null(raw) || !col || col->type == DW_COL_LOOKUP) {
            v = json_incref((json_t *)raw);
        } else if (col->type == DW_COL_ENUM) {
            v = json_incref((json_t *)raw);
        } else {
            dw_err_t rc = convert(col, to_dv ? DW_MAP_FO : DW_MAP_DV, raw, src, &v, err);
            if (rc)
                return rc;
        }
    }
    if (v && json_is_null(v) && col && (col->type == DW_COL_STRING || col->type == DW_COL_LOOKUP)) {
        json_decref(v);
        v = json_string("");
    }
    *out = v;
    return DW_OK;
}

dw_err_t dw_mapper_roundtrip(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                             json_t **back, dw_mapper_error_t *err)
{
    dw_mapper_result_t there = {0}, again = {0};
    dw_map_dir_t rev = dir == DW_MAP_FO_TO_DV ? DW_MAP_DV_TO_FO : DW_MAP_FO_TO_DV;
    dw_err_t rc;
    if (back)
        *back = NULL;
    if ((rc = dw_mapper_apply(map, dir, record, &there, err)))
        return rc;
    /* F&O emits a record with its company; the writer puts it there (dataAreaId is generated) */
    json_t *mid = there.payload;
    if (rev == DW_MAP_FO_TO_DV && there.company && !json_object_get(mid, "dataAreaId")) {
        if (!(mid = json_copy(there.payload)) ||
            json_object_set_new(mid, "dataAreaId", json_string(there.company))) {
            json_decref(mid);
            rc = NOMEM(err);
            goto out;
        }
    } else {
        json_incref(mid);
    }
    rc = dw_mapper_apply(map, rev, mid, &again, err);
    json_decref(mid);
    if (rc)
        goto out;
    for (size_t i = 0; i < dw_map_field_count(map) && !rc; i++) {
        const dw_map_field_t *f = dw_map_field(map, i);
        if (f->direction != DW_MAP_BOTH)
            continue;
        json_t *a = NULL, *b = NULL;
        if ((rc = source_value(f, dir, record, &a, err)))
            break;
        if (a && (rc = source_value(f, dir, again.payload, &b, err))) {
            json_decref(a);
            break;
        }
        bool same = !a || (b && (json_equal(a, b) || scalar_equal(a, b)));
        if (!same) {
            const char *src = dir == DW_MAP_FO_TO_DV ? f->fo : f->dv;
            rc = fail(err, DW_MAPPER_UNMAPPED_VALUE, src,
                      "the value changed on the way %s and back (%s, now %s)", dw_map_dir_name(dir),
                      dw_json_kind(a), b ? dw_json_kind(b) : "missing");
            rc = DW_ERR_CONFLICT;
        }
        json_decref(a);
        json_decref(b);
    }
    if (!rc && back) {
        *back = again.payload;
        again.payload = NULL;
    }
out:
    dw_mapper_result_clear(&there);
    dw_mapper_result_clear(&again);
    return rc;
}

dw_err_t dw_mapper_origin_hash(const dw_map_t *map, dw_map_dir_t dir, const dw_mapper_result_t *res,
                               char hex[DW_SHA256_HEX_SIZE], dw_mapper_error_t *err)
{
    dw_mapper_result_t back = {0};
    dw_map_dir_t rev = dir == DW_MAP_FO_TO_DV ? DW_MAP_DV_TO_FO : DW_MAP_FO_TO_DV;
    dw_err_t rc;
    hex[0] = '\0';
    if (!res || !res->payload)
        return fail(err, DW_MAPPER_MALFORMED, NULL, "no payload to map back");
    /* as dw_mapper_roundtrip: F&O emits a record with its company */
    json_t *mid = res->payload;
    if (rev == DW_MAP_FO_TO_DV && res->company && !json_object_get(mid, "dataAreaId")) {
        if (!(mid = json_copy(res->payload)) ||
            json_object_set_new(mid, "dataAreaId", json_string(res->company))) {
            json_decref(mid);
            return NOMEM(err);
        }
    } else {
        json_incref(mid);
    }
    rc = mapper_apply(map, rev, mid, &back, err, true);
    json_decref(mid);
    if (!rc)
        memcpy(hex, back.content_hash, DW_SHA256_HEX_SIZE);
    dw_mapper_result_clear(&back);
    return rc;
}

/* ---- source-side key (capture) ------------------------------------------------------------ */

dw_err_t dw_mapper_source_key(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                              json_t **key, char **canonical, dw_mapper_error_t *err)
{
    dw_err_t rc = DW_OK;
    json_t *sub = NULL, *out = NULL;
    dw_mapper_result_t res = {0};
    char name[300];
    if (key)
        *key = NULL;
    if (canonical)
        *canonical = NULL;
    if (!json_is_object(record))
        return fail(err, DW_MAPPER_MALFORMED, NULL, "the record is %s, not a JSON object",
                    dw_json_kind(record));
    const bool to_dv = dir == DW_MAP_FO_TO_DV;
    /* only what the key needs: the key columns (lookups in every form) and the company */
    if (!(sub = json_object()) || !(out = json_object()))
        goto nomem;
    if (to_dv) {
        const json_t *c = json_object_get(record, "dataAreaId");
        if (c && json_object_set(sub, "dataAreaId", (json_t *)c))
            goto nomem;
    }
    for (size_t k = 0; k < dw_map_key_count(map); k++) {
        const dw_map_field_t *f = dw_map_key(map, k)->field;
        const char *src = f ? (to_dv ? f->fo : f->dv) : NULL;
        if (!src)
            continue;
        const json_t *v = json_object_get(record, src);
        if (v && json_object_set(sub, src, (json_t *)v))
            goto nomem;
        if (!to_dv && f->transform == DW_MAP_XF_LOOKUP) {
            snprintf(name, sizeof(name), "%s@odata.bind", src);
            if ((v = json_object_get(record, name)) && json_object_set(sub, name, (json_t *)v))
                goto nomem;
            snprintf(name, sizeof(name), "_%s_value", src);
            if ((v = json_object_get(record, name)) && json_object_set(sub, name, (json_t *)v))
                goto nomem;
        }
    }
    if ((rc = dw_mapper_apply(map, dir, sub, &res, err)))
        goto out;
    for (size_t k = 0; k < dw_map_key_count(map); k++) {
        const dw_map_field_t *f = dw_map_key(map, k)->field;
        const char *src = to_dv ? f->fo : f->dv;
        const char *dst = to_dv ? f->dv : f->fo;
        const json_t *v = NULL;
        if (!src)
            continue;
        json_t *resolved = NULL;
        if (f->transform == DW_MAP_XF_LOOKUP && !to_dv) {
            /* the resolved key value as Dataverse has it (the target key holds it in F&O's
             * form: a company in lower case) */
            char *c = NULL;
            if ((rc = lookup_from_dv(f, record, &resolved, &c, err)))
                goto out;
            free(c);
            v = json_is_string(resolved) ? resolved : json_object_get(res.key, dst);
        } else {
            v = json_object_get(record, src);
        }
        int set_rc = v ? json_object_set(out, src, (json_t *)v) : 0;
        json_decref(resolved);
        if (set_rc)
            goto nomem;
    }
    if (key) {
        *key = out;
        out = NULL;
    }
    if (canonical) {
        *canonical = res.canonical_key;
        res.canonical_key = NULL;
    }
    goto out;
nomem:
    rc = NOMEM(err);
out:
    dw_mapper_result_clear(&res);
    json_decref(sub);
    json_decref(out);
    return rc;
}
