/*
 * dw_config: the declarative configuration of a dwfleet binary. Holds one value per key with
 * the source it came from, checks every value when it is set (type, range, choices, librdkafka
 * for kafka.*), loads the JSON file and the DW_* environment, registers secrets with dw_log and
 * prints the effective configuration with secrets masked.
 */
#include "dw_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "dw_log.h"

#ifndef DW_DEFAULT_SCHEMAS_DIR
#define DW_DEFAULT_SCHEMAS_DIR "schemas"
#endif

#define DW_CONF_KAFKA_PREFIX "kafka."
#define DW_CONF_MSG_MAX      1024 /* one problem line */
#define DW_CONF_SHOW_MAX     200  /* longest value quoted in a message */

const dw_conf_def_t dw_conf_common_defs[] = {
    {"log.level", DW_CONF_ENUM, "info", 0, 0, "debug|info|warn|error", 0, NULL,
     "lowest level of the log lines written to stderr"},
    {"log.format", DW_CONF_ENUM, "text", 0, 0, "text|json", 0, NULL,
     "log line format: human-readable text or one JSON object per line"},
    {"kafka.bootstrap.servers", DW_CONF_STR, NULL, 0, 0, NULL, 0, "DW_KAFKA_BOOTSTRAP",
     "Kafka brokers, host:port[,host:port...] (passed to librdkafka)"},
    {"pg.dsn", DW_CONF_STR, NULL, 0, 0, NULL, DW_CONF_F_DSN, NULL,
     "PostgreSQL connection string (libpq keyword/value or URI); its password is masked"},
    {"pg.connect_timeout_ms", DW_CONF_INT, "30000", 100, 600000, NULL, 0, NULL,
     "how long to wait for a PostgreSQL connection, in milliseconds"},
    {"pg.migrations_dir", DW_CONF_STR, DW_DEFAULT_SCHEMAS_DIR "/sql", 0, 0, NULL, 0, NULL,
     "folder of the versioned SQL migrations (NNN_name.sql) applied at start"},
    {"maps.dir", DW_CONF_STR, DW_DEFAULT_SCHEMAS_DIR "/maps", 0, 0, NULL, 0, NULL,
     "directory holding the map files (*.json)"},
    {"maps.metadata_dir", DW_CONF_STR, DW_DEFAULT_SCHEMAS_DIR "/metadata", 0, 0, NULL, 0, NULL,
     "folder of the table metadata (fo/, dv/) the maps are checked against"},
    DW_CONF_END,
};

typedef struct dw_conf_entry_s {
    char *name;               /* concrete key (owned) */
    char *value;              /* normalised text (owned); NULL = unset */
    dw_conf_src_t src;        /* where value came from */
    const dw_conf_def_t *def; /* borrowed from a table; NULL for an undeclared kafka.* key */
    long long i;              /* typed views of value, for the getters */
    double d;
    bool b;
} dw_conf_entry_t;

struct dw_conf_s {
    const dw_conf_def_t **defs; /* every declared key in table order (array owned, defs borrowed) */
    size_t ndefs;
    const char *const *foreign; /* borrowed */
    dw_conf_entry_t *entries;   /* owned, sorted by name */
    size_t nentries, cap;
    rd_kafka_conf_t *rk_scratch; /* owned: checks kafka.* values with librdkafka's own rules */
};

/* A list of problem lines that ends up in a caller's errstr. */
typedef struct dw_conf_errs_s {
    char *buf; /* owned; lines joined by '\n' */
    size_t len, cap;
    int count;
} dw_conf_errs_t;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static const char *dw_conf_src_name(dw_conf_src_t src)
{
    switch (src) {
    case DW_CONF_SRC_DEFAULT:
        return "default";
    case DW_CONF_SRC_FILE:
        return "file";
    case DW_CONF_SRC_ENV:
        return "env";
    case DW_CONF_SRC_FLAG:
        return "flag";
    }
    return "?";
}

static bool dw_conf_is_pattern(const dw_conf_def_t *def)
{
    return strchr(def->name, '*') != NULL;
}

static bool dw_conf_is_kafka_name(const char *name)
{
    size_t l = strlen(DW_CONF_KAFKA_PREFIX);
    return strncmp(name, DW_CONF_KAFKA_PREFIX, l) == 0 && name[l] != '\0';
}

/* A pattern's "*" segment matches exactly one non-empty concrete segment. */
static bool dw_conf_pattern_match(const char *pat, const char *name)
{
    const char *p = pat, *n = name;
    for (;;) {
        size_t pl = strcspn(p, "."), nl = strcspn(n, ".");
        if (nl == 0)
            return false;
        bool star = pl == 1 && p[0] == '*';
        if (!star && (pl != nl || strncmp(p, n, pl) != 0))
            return false;
        p += pl;
        n += nl;
        if (*p == '\0' || *n == '\0')
            return *p == *n;
        p++;
        n++;
    }
}

/* The declaration of a concrete name: exact first, then patterns. NULL when undeclared. */
static const dw_conf_def_t *dw_conf_find_def(const dw_conf_t *conf, const char *name)
{
    if (strchr(name, '*'))
        return NULL;
    for (size_t k = 0; k < conf->ndefs; k++) {
        if (!dw_conf_is_pattern(conf->defs[k]) && strcmp(conf->defs[k]->name, name) == 0)
            return conf->defs[k];
    }
    for (size_t k = 0; k < conf->ndefs; k++) {
        if (dw_conf_is_pattern(conf->defs[k]) && dw_conf_pattern_match(conf->defs[k]->name, name))
            return conf->defs[k];
    }
    return NULL;
}

/* Binary search; *pos receives the insertion point when not found. */
static dw_conf_entry_t *dw_conf_lookup(const dw_conf_t *conf, const char *name, size_t *pos)
{
    size_t lo = 0, hi = conf->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(conf->entries[mid].name, name);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return &conf->entries[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

/* The entry for name, inserted (unset) when missing. NULL on allocation failure. */
static dw_conf_entry_t *dw_conf_entry_get(dw_conf_t *conf, const char *name,
                                          const dw_conf_def_t *def)
{
    size_t pos = 0;
    dw_conf_entry_t *e = dw_conf_lookup(conf, name, &pos);
    if (e)
        return e;
    if (conf->nentries == conf->cap) {
        size_t cap = conf->cap ? conf->cap * 2 : 16;
        dw_conf_entry_t *n = realloc(conf->entries, cap * sizeof(*n));
        if (!n)
            return NULL;
        conf->entries = n;
        conf->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    memmove(&conf->entries[pos + 1], &conf->entries[pos],
            (conf->nentries - pos) * sizeof(conf->entries[0]));
    conf->nentries++;
    e = &conf->entries[pos];
    memset(e, 0, sizeof(*e));
    e->name = copy;
    e->def = def;
    return e;
}

static void dw_conf_errs_add(dw_conf_errs_t *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void dw_conf_errs_add(dw_conf_errs_t *errs, const char *fmt, ...)
{
    char line[DW_CONF_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    errs->count++;
    size_t l = strlen(line);
    size_t need = errs->len + l + 2;
    if (need > errs->cap) {
        size_t cap = errs->cap ? errs->cap : 256;
        while (cap < need)
            cap *= 2;
        char *n = realloc(errs->buf, cap);
        if (!n)
            return; /* counted, text lost: the summary still says how many */
        errs->buf = n;
        errs->cap = cap;
    }
    if (errs->len > 0)
        errs->buf[errs->len++] = '\n';
    memcpy(errs->buf + errs->len, line, l + 1);
    errs->len += l;
}

/* Copy the collected lines into errstr, cut at a line boundary with a note of how many lines
 * did not fit; frees the list. DW_OK when there was no problem. */
static dw_err_t dw_conf_errs_finish(dw_conf_errs_t *errs, char *errstr, size_t errstr_size)
{
    dw_err_t err = errs->count ? DW_ERR_CONFIG : DW_OK;
    const char *text = errs->buf ? errs->buf : "";

    if (!errs->count || !errstr || errstr_size == 0)
        goto out;
    if (errs->len < errstr_size) {
        memcpy(errstr, text, errs->len + 1);
        if (errs->len == 0)
            snprintf(errstr, errstr_size, "%d configuration problems (out of memory)", errs->count);
        goto out;
    }
    /* Keep whole lines and say how many were left out. */
    char suffix[64];
    int kept = 0;
    size_t cut = 0;
    for (size_t k = 0; k < errs->len; k++) {
        if (text[k] != '\n')
            continue;
        snprintf(suffix, sizeof(suffix), "\n... and %d more problems", errs->count - (kept + 1));
        if (k + strlen(suffix) + 1 > errstr_size)
            break;
        cut = k;
        kept++;
    }
    if (kept == 0) {
        /* Not even one line fits whole: keep what fits of it. */
        snprintf(errstr, errstr_size, "%s", text);
        goto out;
    }
    snprintf(suffix, sizeof(suffix), "\n... and %d more problems", errs->count - kept);
    memcpy(errstr, text, cut);
    snprintf(errstr + cut, errstr_size - cut, "%s", suffix);
out:
    free(errs->buf);
    memset(errs, 0, sizeof(*errs));
    return err;
}

/* Quote at most DW_CONF_SHOW_MAX characters of a value in a message; "***" for a secret. */
static void dw_conf_show(char *dst, size_t n, const char *value, bool secret)
{
    if (secret)
        snprintf(dst, n, "***");
    else if (strlen(value) > DW_CONF_SHOW_MAX)
        snprintf(dst, n, "%.*s...", DW_CONF_SHOW_MAX, value);
    else
        snprintf(dst, n, "%s", value);
}

/* Replace every occurrence of needle in buf (size n) by "***" in place. */
static void dw_conf_mask_in(char *buf, size_t n, const char *needle)
{
    size_t nl = needle ? strlen(needle) : 0;
    char *out = NULL;
    if (nl == 0 || !strstr(buf, needle))
        return;
    out = malloc(n);
    if (!out) {
        snprintf(buf, n, "(message withheld: it held a secret)");
        return;
    }
    size_t o = 0;
    for (const char *s = buf; *s && o + 1 < n;) {
        if (strncmp(s, needle, nl) == 0) {
            for (const char *m = "***"; *m && o + 1 < n; m++)
                out[o++] = *m;
            s += nl;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    memcpy(buf, out, o + 1);
    free(out);
}

/* ---------------------------------------------------------------------------------------------
 * DSN password spans
 */

typedef struct dw_conf_span_s {
    size_t off, len;
} dw_conf_span_t;

#define DW_CONF_MAX_SPANS 8

static void dw_conf_span_add(dw_conf_span_t *spans, int *n, size_t off, size_t len)
{
    if (len > 0 && *n < DW_CONF_MAX_SPANS) {
        spans[*n].off = off;
        spans[*n].len = len;
        (*n)++;
    }
}

/* "scheme://" at the start (RFC 3986 scheme)? Returns the length of "scheme://" or 0. */
static size_t dw_conf_uri_scheme_len(const char *s)
{
    size_t k = 0;
    if (!isalpha((unsigned char)s[0]))
        return 0;
    while (isalnum((unsigned char)s[k]) || s[k] == '+' || s[k] == '-' || s[k] == '.')
        k++;
    return strncmp(s + k, "://", 3) == 0 ? k + 3 : 0;
}

static int dw_conf_dsn_uri_spans(const char *dsn, size_t start, dw_conf_span_t *spans)
{
    int n = 0;
    const char *rest = dsn + start;
    size_t limit = strcspn(rest, "?#");
    size_t slash = strcspn(rest, "/?#");
    const char *at = NULL;
    /* The user info ends at the last '@' of the authority; a password holding a raw '/' still
     * ends at an '@' before the query, so look further when the authority has none. */
    for (size_t k = 0; k < slash; k++)
        if (rest[k] == '@')
            at = rest + k;
    if (!at)
        for (size_t k = 0; k < limit; k++)
            if (rest[k] == '@')
                at = rest + k;
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon)
            dw_conf_span_add(spans, &n, (size_t)(colon + 1 - dsn), (size_t)(at - colon - 1));
    }
    if (rest[limit] == '?') {
        const char *q = rest + limit + 1;
        while (*q && *q != '#') {
            size_t plen = strcspn(q, "&#");
            if (plen > 9 && strncmp(q, "password=", 9) == 0)
                dw_conf_span_add(spans, &n, (size_t)(q + 9 - dsn), plen - 9);
            q += plen;
            if (*q == '&')
                q++;
        }
    }
    return n;
}

/* libpq keyword/value: keyword = value, value bare or in single quotes, backslash escapes. */
static int dw_conf_dsn_kv_spans(const char *dsn, dw_conf_span_t *spans)
{
    int n = 0;
    const char *p = dsn;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *kw = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t kwlen = (size_t)(p - kw);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=')
            break; /* not keyword/value: nothing more to find */
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        if (*p == '\'') {
            val = ++p;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
        }
        if (kwlen == 8 && strncmp(kw, "password", 8) == 0)
            dw_conf_span_add(spans, &n, (size_t)(val - dsn), (size_t)(p - val));
        if (*p == '\'')
            p++;
    }
    return n;
}

static int dw_conf_dsn_spans(const char *dsn, dw_conf_span_t *spans)
{
    size_t scheme = dw_conf_uri_scheme_len(dsn);
    return scheme ? dw_conf_dsn_uri_spans(dsn, scheme, spans) : dw_conf_dsn_kv_spans(dsn, spans);
}

char *dw_conf_dsn_mask(const char *dsn)
{
    dw_conf_span_t spans[DW_CONF_MAX_SPANS];
    char *out = NULL;
    if (!dsn)
        return NULL;
    int n = dw_conf_dsn_spans(dsn, spans);
    out = malloc(strlen(dsn) + (size_t)n * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0, from = 0;
    for (int k = 0; k < n; k++) { /* spans come in increasing order */
        memcpy(out + o, dsn + from, spans[k].off - from);
        o += spans[k].off - from;
        memcpy(out + o, "***", 3);
        o += 3;
        from = spans[k].off + spans[k].len;
    }
    strcpy(out + o, dsn + from);
    return out;
}

static void dw_conf_dsn_register(const char *dsn)
{
    dw_conf_span_t spans[DW_CONF_MAX_SPANS];
    int n = dw_conf_dsn_spans(dsn, spans);
    for (int k = 0; k < n; k++) {
        char *pw = strndup(dsn + spans[k].off, spans[k].len);
        if (pw)
            dw_log_add_secret(pw);
        free(pw);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

static const char *dw_conf_type_desc(const dw_conf_def_t *def)
{
    switch (def ? def->type : DW_CONF_STR) {
    case DW_CONF_STR:
        return "a string";
    case DW_CONF_INT:
        return "an integer";
    case DW_CONF_DOUBLE:
        return "a number";
    case DW_CONF_BOOL:
        return "a boolean";
    case DW_CONF_ENUM:
        return "one of the choices";
    }
    return "a value";
}

static bool dw_conf_choice_ok(const char *choices, const char *text)
{
    size_t tl = strlen(text);
    for (const char *c = choices; c && *c;) {
        size_t l = strcspn(c, "|");
        if (l == tl && strncmp(c, text, l) == 0)
            return true;
        c += l;
        if (*c == '|')
            c++;
    }
    return false;
}

static bool dw_conf_parse_bool(const char *text, bool *b)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t k = 0; k < 4; k++) {
        if (strcasecmp(text, yes[k]) == 0) {
            *b = true;
            return true;
        }
        if (strcasecmp(text, no[k]) == 0) {
            *b = false;
            return true;
        }
    }
    return false;
}

/* Check text against def (NULL: an undeclared kafka.* string). On success *norm is the text to
 * store (new) and the typed views are filled; otherwise why holds the reason. */
static bool dw_conf_parse_value(const dw_conf_def_t *def, const char *text, bool secret,
                                char **norm, dw_conf_entry_t *typed, char *why, size_t whysz)
{
    char shown[DW_CONF_SHOW_MAX + 8], buf[64];
    const char *store = text;
    bool ranged = def && def->min < def->max;
    dw_conf_show(shown, sizeof(shown), text, secret);
    typed->i = 0;
    typed->d = 0;
    typed->b = false;

    switch (def ? def->type : DW_CONF_STR) {
    case DW_CONF_STR:
        break;
    case DW_CONF_INT: {
        char *end = NULL;
        errno = 0;
        long long v = (*text && !isspace((unsigned char)*text)) ? strtoll(text, &end, 10) : 0;
        if (!end || end == text || *end != '\0') {
            snprintf(why, whysz, "'%s' is not an integer", shown);
            return false;
        }
        if (errno == ERANGE) {
            snprintf(why, whysz, "'%s' does not fit in a 64-bit integer", shown);
            return false;
        }
        if (ranged && ((double)v < def->min || (double)v > def->max)) {
            snprintf(why, whysz, "%s is out of range [%.15g, %.15g]", secret ? "***" : text,
                     def->min, def->max);
            return false;
        }
        typed->i = v;
        typed->d = (double)v;
        typed->b = v != 0;
        snprintf(buf, sizeof(buf), "%lld", v);
        store = buf;
        break;
    }
    case DW_CONF_DOUBLE: {
        char *end = NULL;
        errno = 0;
        double v = (*text && !isspace((unsigned char)*text)) ? strtod(text, &end) : 0;
        if (!end || end == text || *end != '\0') {
            snprintf(why, whysz, "'%s' is not a number", shown);
            return false;
        }
        if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) {
            snprintf(why, whysz, "'%s' is not a finite number", shown);
            return false;
        }
        if (ranged && (v < def->min || v > def->max)) {
            snprintf(why, whysz, "%s is out of range [%.15g, %.15g]", shown, def->min, def->max);
            return false;
        }
        typed->d = v;
        typed->i = (v >= -9.2e18 && v <= 9.2e18) ? (long long)v : 0;
        typed->b = v != 0;
        break;
    }
    case DW_CONF_BOOL:
        if (!dw_conf_parse_bool(text, &typed->b)) {
            snprintf(why, whysz, "'%s' is not a boolean (true|false|yes|no|on|off|1|0)", shown);
            return false;
        }
        typed->i = typed->b;
        typed->d = typed->b;
        store = typed->b ? "true" : "false";
        break;
    case DW_CONF_ENUM:
        if (!dw_conf_choice_ok(def->choices, text)) {
            snprintf(why, whysz, "'%s' is not one of %s", shown, def->choices ? def->choices : "");
            return false;
        }
        break;
    }
    *norm = strdup(store);
    if (!*norm) {
        snprintf(why, whysz, "out of memory");
        return false;
    }
    return true;
}

/* Typed view of name: its entry, else the default of the pattern it matches. */
static bool dw_conf_typed(const dw_conf_t *conf, const char *name, dw_conf_entry_t *out)
{
    const dw_conf_entry_t *e = dw_conf_lookup(conf, name, NULL);
    if (e) {
        *out = *e;
        return e->value != NULL;
    }
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    if (!def) {
        if (!dw_conf_is_kafka_name(name))
            DW_ERROR("config", "BUG: '%s' is not a declared configuration key", name);
        return false;
    }
    if (!def->defval)
        return false;
    char *norm = NULL, why[DW_CONF_MSG_MAX];
    bool ok = dw_conf_parse_value(def, def->defval, false, &norm, out, why, sizeof(why));
    free(norm);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * The configuration object
 */

dw_conf_t *dw_conf_new(const dw_conf_def_t *const *tables, const char *const *foreign, char *errstr,
                       size_t errstr_size)
{
    static const dw_conf_def_t *const dw_conf_only_common[] = {dw_conf_common_defs, NULL};
    dw_conf_t *conf = NULL;
    dw_conf_errs_t errs = {0};
    size_t n = 0;

    if (!tables)
        tables = dw_conf_only_common;
    for (size_t t = 0; tables[t]; t++)
        for (const dw_conf_def_t *d = tables[t]; d->name; d++)
            n++;

    conf = calloc(1, sizeof(*conf));
    if (!conf || !(conf->defs = calloc(n ? n : 1, sizeof(*conf->defs))) ||
        !(conf->rk_scratch = rd_kafka_conf_new())) {
        dw_conf_errs_add(&errs, "out of memory");
        goto out;
    }
    conf->foreign = foreign;
    for (size_t t = 0; tables[t]; t++) {
        for (const dw_conf_def_t *d = tables[t]; d->name; d++) {
            const char *star = strchr(d->name, '*');
            for (size_t k = 0; k < conf->ndefs; k++)
                if (strcmp(conf->defs[k]->name, d->name) == 0)
                    dw_conf_errs_add(&errs, "%s: declared twice", d->name);
            if (star && strchr(star + 1, '*'))
                dw_conf_errs_add(&errs, "%s: only one segment may be '*'", d->name);
            conf->defs[conf->ndefs++] = d;
        }
    }
    if (errs.count)
        goto out;

    /* Every concrete key starts with its default (checked like any other value). */
    for (size_t k = 0; k < conf->ndefs; k++) {
        const dw_conf_def_t *d = conf->defs[k];
        char why[DW_CONF_MSG_MAX];
        if (dw_conf_is_pattern(d)) {
            dw_conf_entry_t typed;
            char *norm = NULL;
            if (d->defval &&
                !dw_conf_parse_value(d, d->defval, false, &norm, &typed, why, sizeof(why)))
                dw_conf_errs_add(&errs, "default: %s: %s", d->name, why);
            free(norm);
        } else if (d->defval) {
            if (dw_conf_set(conf, d->name, d->defval, DW_CONF_SRC_DEFAULT, "default", why,
                            sizeof(why)) != DW_OK)
                dw_conf_errs_add(&errs, "%s", why);
        } else if (!dw_conf_entry_get(conf, d->name, d)) {
            dw_conf_errs_add(&errs, "out of memory");
        }
    }
out:
    if (dw_conf_errs_finish(&errs, errstr, errstr_size) != DW_OK) {
        dw_conf_destroy(conf);
        conf = NULL;
    }
    return conf;
}

void dw_conf_destroy(dw_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t k = 0; k < conf->nentries; k++) {
        free(conf->entries[k].name);
        free(conf->entries[k].value);
    }
    free(conf->entries);
    free(conf->defs);
    if (conf->rk_scratch)
        rd_kafka_conf_destroy(conf->rk_scratch);
    free(conf);
}

bool dw_conf_is_secret(const dw_conf_t *conf, const char *name)
{
    static const char *const hints[] = {"password", "secret", ".key.pem", "sasl.oauthbearer.config",
                                        "sasl.jaas"};
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    if (def && (def->flags & DW_CONF_F_SECRET))
        return true;
    if (!dw_conf_is_kafka_name(name))
        return false;
    for (size_t k = 0; k < sizeof(hints) / sizeof(hints[0]); k++)
        if (strstr(name, hints[k]))
            return true;
    return false;
}

dw_err_t dw_conf_set(dw_conf_t *conf, const char *name, const char *value, dw_conf_src_t src,
                     const char *origin, char *errstr, size_t errstr_size)
{
    const char *org = origin ? origin : dw_conf_src_name(src);
    char why[DW_CONF_MSG_MAX];
    char *norm = NULL;
    dw_conf_entry_t typed;
    dw_err_t err = DW_OK;

    if (!name || !*name) {
        err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: empty configuration key", org);
        goto out;
    }
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    bool kafka = dw_conf_is_kafka_name(name) && !strchr(name, '*');
    bool secret = dw_conf_is_secret(conf, name);
    if (!def && !kafka) {
        err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: %s: unknown configuration key", org,
                      name);
        goto out;
    }
    if (!value) {
        err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: %s: no value", org, name);
        goto out;
    }
    if (!dw_conf_parse_value(def, value, secret, &norm, &typed, why, sizeof(why))) {
        err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: %s: %s", org, name, why);
        goto out;
    }
    if (kafka) {
        /* librdkafka has the last word on its own properties. */
        if (rd_kafka_conf_set(conf->rk_scratch, name + strlen(DW_CONF_KAFKA_PREFIX), norm, why,
                              sizeof(why)) != RD_KAFKA_CONF_OK) {
            if (secret)
                dw_conf_mask_in(why, sizeof(why), norm);
            err = dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "%s: %s: %s", org, name, why);
            goto out;
        }
    }
    dw_conf_entry_t *e = dw_conf_entry_get(conf, name, def);
    if (!e) {
        err = dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "%s: %s: out of memory", org, name);
        goto out;
    }
    free(e->value);
    e->value = norm;
    norm = NULL;
    e->src = src;
    e->i = typed.i;
    e->d = typed.d;
    e->b = typed.b;
    if (secret)
        dw_log_add_secret(e->value);
    if (def && (def->flags & DW_CONF_F_DSN))
        dw_conf_dsn_register(e->value);
out:
    free(norm);
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * JSON file
 */

static bool dw_conf_is_foreign(const dw_conf_t *conf, const char *name)
{
    size_t l = strcspn(name, ".");
    for (size_t k = 0; conf->foreign && conf->foreign[k]; k++)
        if (strlen(conf->foreign[k]) == l && strncmp(conf->foreign[k], name, l) == 0)
            return true;
    return false;
}

static const char *dw_conf_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_NULL:
        return "null";
    default:
        return "a scalar";
    }
}

/* The text of a JSON scalar as a config value (new), or NULL when v is not a scalar. */
static char *dw_conf_json_text(const json_t *v)
{
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    case JSON_REAL: {
        double d = json_real_value(v);
        /* The shortest text that reads back as the same double: 0.1 stays "0.1". */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return strdup(buf);
    }
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    default:
        return NULL;
    }
}

static void dw_conf_load_member(dw_conf_t *conf, const char *path, const char *name, json_t *v,
                                json_t *seen, dw_conf_errs_t *errs);

static void dw_conf_load_object(dw_conf_t *conf, const char *path, const char *prefix, json_t *obj,
                                json_t *seen, dw_conf_errs_t *errs)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char *name = NULL;
        size_t l = strlen(prefix) + strlen(key) + 2;
        name = malloc(l);
        if (!name) {
            dw_conf_errs_add(errs, "%s: out of memory", path);
            return;
        }
        snprintf(name, l, "%s%s%s", prefix, *prefix ? "." : "", key);
        dw_conf_load_member(conf, path, name, v, seen, errs);
        free(name);
    }
}

static void dw_conf_load_member(dw_conf_t *conf, const char *path, const char *name, json_t *v,
                                json_t *seen, dw_conf_errs_t *errs)
{
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    bool kafka = dw_conf_is_kafka_name(name);
    char *text = NULL;
    char why[DW_CONF_MSG_MAX];

    if (!def && json_is_object(v)) {
        dw_conf_load_object(conf, path, name, v, seen, errs);
        goto out;
    }
    if (!def && !kafka) {
        if (!dw_conf_is_foreign(conf, name))
            dw_conf_errs_add(errs, "%s: %s: unknown configuration key", path, name);
        goto out;
    }
    text = dw_conf_json_text(v);
    if (!text) {
        if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
            dw_conf_errs_add(errs, "%s: %s: out of memory", path, name);
        else
            dw_conf_errs_add(errs, "%s: %s: expected %s, got %s", path, name,
                             dw_conf_type_desc(def), dw_conf_json_kind(v));
        goto out;
    }
    if (json_is_string(v) && strlen(text) != json_string_length(v)) {
        dw_conf_errs_add(errs, "%s: %s: the value holds a NUL character", path, name);
        goto out;
    }
    if (json_object_get(seen, name)) {
        /* {"pg": {"dsn": ...}} and {"pg.dsn": ...} in one file */
        dw_conf_errs_add(errs, "%s: %s: set more than once in this file", path, name);
        goto out;
    }
    json_object_set_new(seen, name, json_true());
    if (dw_conf_set(conf, name, text, DW_CONF_SRC_FILE, path, why, sizeof(why)) != DW_OK)
        dw_conf_errs_add(errs, "%s", why);
out:
    free(text);
}

dw_err_t dw_conf_load_file(dw_conf_t *conf, const char *path, char *errstr, size_t errstr_size)
{
    dw_conf_errs_t errs = {0};
    FILE *fp = NULL;
    json_t *root = NULL, *seen = NULL;
    json_error_t jerr;

    fp = fopen(path, "r");
    if (!fp) {
        dw_conf_errs_add(&errs, "%s: could not open configuration file: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        dw_conf_errs_add(&errs, "%s: could not read configuration file: %s", path,
                         strerror(EISDIR));
        goto out;
    }
    root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            dw_conf_errs_add(&errs, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        else
            dw_conf_errs_add(&errs, "%s: %s", path, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        dw_conf_errs_add(&errs, "%s: the configuration must be a JSON object, not %s", path,
                         json_is_array(root) ? "an array" : "a scalar");
        goto out;
    }
    seen = json_object();
    if (!seen) {
        dw_conf_errs_add(&errs, "%s: out of memory", path);
        goto out;
    }
    dw_conf_load_object(conf, path, "", root, seen, &errs);
out:
    if (fp)
        fclose(fp);
    json_decref(root);
    json_decref(seen);
    return dw_conf_errs_finish(&errs, errstr, errstr_size);
}

/* ---------------------------------------------------------------------------------------------
 * Environment
 */

/* "DW_" + name upper-cased with '.' and '-' as '_' (new). */
static char *dw_conf_env_name(const char *name)
{
    size_t l = strlen(name);
    char *env = malloc(l + 4);
    if (!env)
        return NULL;
    memcpy(env, "DW_", 3);
    for (size_t k = 0; k <= l; k++) {
        char c = name[k];
        env[3 + k] = (c == '.' || c == '-') ? '_' : (char)toupper((unsigned char)c);
    }
    return env;
}

static bool dw_conf_env_is_alias(const dw_conf_t *conf, const char *var, size_t varlen)
{
    for (size_t k = 0; k < conf->ndefs; k++) {
        const char *a = conf->defs[k]->env;
        if (a && strlen(a) == varlen && strncmp(a, var, varlen) == 0)
            return true;
    }
    return false;
}

/* The concrete key for an environment variable name (new), or NULL when it names nothing. */
static char *dw_conf_env_key(const dw_conf_t *conf, const char *var, size_t varlen)
{
    char *key = NULL, *env = NULL;
    for (size_t k = 0; k < conf->ndefs && !key; k++) {
        const dw_conf_def_t *d = conf->defs[k];
        env = dw_conf_env_name(d->name);
        if (!env)
            break;
        const char *star = strchr(env, '*');
        if (!star) {
            if (strlen(env) == varlen && strncmp(env, var, varlen) == 0)
                key = strdup(d->name);
        } else {
            /* DW_MAPS_*_PARTITIONS: the middle, lower-cased, is the "*" segment. */
            size_t pre = (size_t)(star - env), suf = strlen(star + 1);
            if (varlen > pre + suf && strncmp(env, var, pre) == 0 &&
                strncmp(star + 1, var + varlen - suf, suf) == 0) {
                const char *dstar = strchr(d->name, '*');
                size_t mid = varlen - pre - suf, dpre = (size_t)(dstar - d->name);
                key = malloc(strlen(d->name) + mid + 1);
                if (key) {
                    memcpy(key, d->name, dpre);
                    for (size_t m = 0; m < mid; m++)
                        key[dpre + m] = (char)tolower((unsigned char)var[pre + m]);
                    strcpy(key + dpre + mid, dstar + 1);
                }
            }
        }
        free(env);
        env = NULL;
    }
    if (!key && varlen > 9 && strncmp(var, "DW_KAFKA_", 9) == 0) {
        /* DW_KAFKA_SASL_PASSWORD is the librdkafka property kafka.sasl.password */
        key = malloc(varlen - 9 + 7);
        if (key) {
            memcpy(key, DW_CONF_KAFKA_PREFIX, 6);
            for (size_t m = 9; m < varlen; m++)
                key[6 + m - 9] = var[m] == '_' ? '.' : (char)tolower((unsigned char)var[m]);
            key[varlen - 9 + 6] = '\0';
        }
    }
    return key;
}

dw_err_t dw_conf_load_env(dw_conf_t *conf, char *const *envp, char *errstr, size_t errstr_size)
{
    dw_conf_errs_t errs = {0};
    char why[DW_CONF_MSG_MAX], origin[256];

    /* Pass 0: declared aliases (DW_KAFKA_BOOTSTRAP); pass 1: canonical names, which win. */
    for (int pass = 0; pass < 2 && envp; pass++) {
        for (size_t k = 0; envp[k]; k++) {
            const char *var = envp[k], *eq = strchr(var, '=');
            char *key = NULL;
            if (!eq || strncmp(var, "DW_", 3) != 0 || eq[1] == '\0')
                continue; /* not ours, or empty: an empty variable counts as unset */
            size_t varlen = (size_t)(eq - var);
            snprintf(origin, sizeof(origin), "environment %.*s", (int)varlen, var);
            if (pass == 0) {
                for (size_t d = 0; d < conf->ndefs; d++) {
                    const char *a = conf->defs[d]->env;
                    if (a && !dw_conf_is_pattern(conf->defs[d]) && strlen(a) == varlen &&
                        strncmp(a, var, varlen) == 0 &&
                        dw_conf_set(conf, conf->defs[d]->name, eq + 1, DW_CONF_SRC_ENV, origin, why,
                                    sizeof(why)) != DW_OK)
                        dw_conf_errs_add(&errs, "%s", why);
                }
                continue;
            }
            if (dw_conf_env_is_alias(conf, var, varlen))
                continue;
            key = dw_conf_env_key(conf, var, varlen);
            if (key &&
                dw_conf_set(conf, key, eq + 1, DW_CONF_SRC_ENV, origin, why, sizeof(why)) != DW_OK)
                dw_conf_errs_add(&errs, "%s", why);
            free(key);
        }
    }
    return dw_conf_errs_finish(&errs, errstr, errstr_size);
}

dw_err_t dw_conf_check(const dw_conf_t *conf, char *errstr, size_t errstr_size)
{
    dw_conf_errs_t errs = {0};
    for (size_t k = 0; k < conf->ndefs; k++) {
        const dw_conf_def_t *d = conf->defs[k];
        if (!(d->flags & DW_CONF_F_REQUIRED) || dw_conf_is_pattern(d))
            continue;
        if (!dw_conf_is_set(conf, d->name)) {
            char *env = dw_conf_env_name(d->name);
            dw_conf_errs_add(&errs, "%s: required but not set (config file, %s%s%s or -X %s=...)",
                             d->name, env ? env : "DW_...", d->env ? ", " : "",
                             d->env ? d->env : "", d->name);
            free(env);
        }
    }
    return dw_conf_errs_finish(&errs, errstr, errstr_size);
}

/* ---------------------------------------------------------------------------------------------
 * Getters
 */

const char *dw_conf_get_str(const dw_conf_t *conf, const char *name)
{
    const dw_conf_entry_t *e = dw_conf_lookup(conf, name, NULL);
    if (e)
        return e->value;
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    if (!def && !dw_conf_is_kafka_name(name))
        DW_ERROR("config", "BUG: '%s' is not a declared configuration key", name);
    return def ? def->defval : NULL;
}

long long dw_conf_get_int(const dw_conf_t *conf, const char *name)
{
    dw_conf_entry_t t;
    return dw_conf_typed(conf, name, &t) ? t.i : 0;
}

double dw_conf_get_double(const dw_conf_t *conf, const char *name)
{
    dw_conf_entry_t t;
    return dw_conf_typed(conf, name, &t) ? t.d : 0.0;
}

bool dw_conf_get_bool(const dw_conf_t *conf, const char *name)
{
    dw_conf_entry_t t;
    return dw_conf_typed(conf, name, &t) ? t.b : false;
}

bool dw_conf_is_set(const dw_conf_t *conf, const char *name)
{
    const dw_conf_entry_t *e = dw_conf_lookup(conf, name, NULL);
    if (e)
        return e->value != NULL;
    const dw_conf_def_t *def = dw_conf_find_def(conf, name);
    return def && def->defval;
}

dw_conf_src_t dw_conf_source(const dw_conf_t *conf, const char *name)
{
    const dw_conf_entry_t *e = dw_conf_lookup(conf, name, NULL);
    return e && e->value ? e->src : DW_CONF_SRC_DEFAULT;
}

int dw_conf_foreach(const dw_conf_t *conf, const char *prefix, dw_conf_foreach_cb *cb, void *opaque)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    for (size_t k = 0; k < conf->nentries; k++) {
        const dw_conf_entry_t *e = &conf->entries[k];
        if (!e->value || strncmp(e->name, prefix ? prefix : "", pl) != 0)
            continue;
        int rc = cb(e->name, e->value, opaque);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Output
 */

/* The value as shown to people: secrets "***", DSN passwords masked. New string or NULL. */
static char *dw_conf_display(const dw_conf_t *conf, const dw_conf_entry_t *e)
{
    if (!e->value)
        return NULL;
    if (dw_conf_is_secret(conf, e->name))
        return strdup("***");
    if (e->def && (e->def->flags & DW_CONF_F_DSN))
        return dw_conf_dsn_mask(e->value);
    return strdup(e->value);
}

static json_t *dw_conf_display_json(const dw_conf_t *conf, const dw_conf_entry_t *e,
                                    const char *shown)
{
    if (!shown)
        return json_null();
    if (e->def && strcmp(shown, "***") != 0) {
        switch (e->def->type) {
        case DW_CONF_INT:
            return json_integer(e->i);
        case DW_CONF_DOUBLE:
            return json_real(e->d);
        case DW_CONF_BOOL:
            return json_boolean(e->b);
        default:
            break;
        }
    }
    return json_string(shown);
}

void dw_conf_dump(const dw_conf_t *conf, FILE *out, bool json)
{
    json_t *root = json ? json_object() : NULL;
    for (size_t k = 0; k < conf->nentries; k++) {
        const dw_conf_entry_t *e = &conf->entries[k];
        char *shown = dw_conf_display(conf, e);
        if (root)
            json_object_set_new(root, e->name, dw_conf_display_json(conf, e, shown));
        else if (!e->value)
            fprintf(out, "# %s is not set\n", e->name);
        else
            fprintf(out, "%s = %s  # %s\n", e->name, shown ? shown : "(out of memory)",
                    dw_conf_src_name(e->src));
        free(shown);
    }
    if (root) {
        json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', out);
        json_decref(root);
    }
    fflush(out);
}

void dw_conf_print_help(const dw_conf_t *conf, FILE *out)
{
    static const char *const types[] = {"string", "integer", "number", "boolean", "enum"};
    for (size_t k = 0; k < conf->ndefs; k++) {
        const dw_conf_def_t *d = conf->defs[k];
        char *env = dw_conf_env_name(d->name);
        fprintf(out, "  %s (%s", d->name, types[d->type]);
        if (d->type == DW_CONF_ENUM && d->choices)
            fprintf(out, ": %s", d->choices);
        if (d->min < d->max)
            fprintf(out, ", range [%.15g, %.15g]", d->min, d->max);
        if (d->defval)
            fprintf(out, ", default %s", d->defval);
        if (d->flags & DW_CONF_F_REQUIRED)
            fprintf(out, ", required");
        if (d->flags & (DW_CONF_F_SECRET | DW_CONF_F_DSN))
            fprintf(out, ", %s", (d->flags & DW_CONF_F_SECRET) ? "secret" : "password masked");
        fprintf(out, ")\n      %s\n      environment: %s%s%s\n", d->desc ? d->desc : "",
                env ? env : "-", d->env ? ", " : "", d->env ? d->env : "");
        free(env);
    }
    fprintf(out, "  kafka.<property>\n      any librdkafka property, checked by librdkafka\n"
                 "      environment: DW_KAFKA_<PROPERTY> ('.' as '_')\n");
}
