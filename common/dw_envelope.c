/*
 * dw_envelope: strict reading of event envelopes (schemas/event.schema.json) and building of
 * write commands (schemas/command.schema.json). One strict json_unpack_ex extracts every member;
 * when it fails, a second pass over the member table finds which member is wrong, so the error
 * names it. Value checks follow the schema one rule at a time.
 */
#include "dw_envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_sha256.h"

#define ENV_MAP_MAX  64
#define ENV_CORR_MAX 128
#define ENV_VER_MAX  39

const char *dw_event_op_name(dw_event_op_t op)
{
    switch (op) {
    case DW_EVENT_UPSERT:
        return "upsert";
    case DW_EVENT_DELETE:
        return "delete";
    case DW_EVENT_SNAPSHOT:
        return "snapshot";
    }
    return "?";
}

const char *dw_envelope_reason_name(dw_envelope_reason_t reason)
{
    switch (reason) {
    case DW_ENVELOPE_OK:
        return "ok";
    case DW_ENVELOPE_MALFORMED:
        return "malformed_json";
    case DW_ENVELOPE_INVALID_UTF8:
        return "invalid_utf8";
    case DW_ENVELOPE_TOO_LARGE:
        return "too_large";
    case DW_ENVELOPE_INVALID:
        return "invalid_envelope";
    }
    return "?";
}

static dw_err_t env_fail(dw_envelope_error_t *err, dw_envelope_reason_t reason, const char *field,
                         const char *msg)
{
    if (!err)
        return reason == DW_ENVELOPE_INVALID ? DW_ERR_INVALID_ARG : DW_ERR_PARSE;
    err->reason = reason;
    size_t fl = field ? strnlen(field, sizeof(err->field) - 1) : 0; /* cut, on purpose */
    if (fl)
        memcpy(err->field, field, fl);
    err->field[fl] = '\0';
    if (err->field[0])
        snprintf(err->message, sizeof(err->message), "%.63s: %.180s", err->field, msg);
    else
        snprintf(err->message, sizeof(err->message), "%.200s", msg);
    return reason == DW_ENVELOPE_INVALID ? DW_ERR_INVALID_ARG : DW_ERR_PARSE;
}

/* ---------------------------------------------------------------- value checks */

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string member without embedded NUL. */
static bool str_clean(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool is_uuid(const json_t *v)
{
    if (!str_clean(v) || json_string_length(v) != 36)
        return false;
    const char *s = json_string_value(v);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!is_hex(s[i])) {
            return false;
        }
    }
    return true;
}

static bool is_map_name(const json_t *v)
{
    if (!str_clean(v))
        return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < 1 || n > ENV_MAP_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static bool is_version_string(const json_t *v)
{
    if (!str_clean(v))
        return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < 1 || n > ENV_VER_MAX)
        return false;
    if (s[0] == '0')
        return n == 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

bool dw_envelope_rfc3339(const char *s, long long *epoch_ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t n = strlen(s);
    if (n < 20)
        return false;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 60 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int dim = mdays[mo - 1] + (mo == 2 && leap);
    if (d > dim)
        return false;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3)
                ms = ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9)
            return false;
        for (int i = nd; i < 3; i++)
            ms *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh = digits(p + 1, 2);
        if (oh < 0 || oh > 23 || p[3] != ':')
            return false;
        int om = digits(p + 4, 2);
        if (om < 0 || om > 59)
            return false;
        off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    if (epoch_ms) {
        long long secs =
            days_from_civil(y, mo, d) * 86400LL + h * 3600 + mi * 60 + se - (long long)off * 60;
        *epoch_ms = secs * 1000 + ms;
    }
    return true;
}

/* ---------------------------------------------------------------- the member table */

typedef enum { M_INT, M_STR, M_OBJ, M_OBJ_NULL } member_type_t;

static const struct {
    const char *name;
    member_type_t type;
    bool required;
} members[] = {
    {"version", M_INT, true},    {"event_id", M_STR, true},   {"map", M_STR, true},
    {"source", M_STR, true},     {"op", M_STR, true},         {"key", M_OBJ, true},
    {"record_id", M_STR, false}, {"data", M_OBJ_NULL, false}, {"source_version", M_STR, true},
    {"source_ts", M_STR, true},  {"capture_ts", M_STR, true}, {"correlation_id", M_STR, true},
};

/* After a failed unpack: which member is wrong. */
static dw_err_t diagnose(const json_t *root, const json_error_t *jerr, dw_envelope_error_t *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)root, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(members) / sizeof(members[0]) && !known; i++)
            known = strcmp(k, members[i].name) == 0;
        if (!known) {
            char name[48];
            snprintf(name, sizeof(name), "%.40s", k);
            return env_fail(err, DW_ENVELOPE_INVALID, name, "unknown member");
        }
    }
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        v = json_object_get(root, members[i].name);
        if (!v) {
            if (members[i].required)
                return env_fail(err, DW_ENVELOPE_INVALID, members[i].name,
                                "required member missing");
            continue;
        }
        bool ok = false;
        const char *want = "";
        switch (members[i].type) {
        case M_INT:
            ok = json_is_integer(v);
            want = "must be an integer";
            break;
        case M_STR:
            ok = json_is_string(v);
            want = "must be a string";
            break;
        case M_OBJ:
            ok = json_is_object(v);
            want = "must be an object";
            break;
        case M_OBJ_NULL:
            ok = json_is_object(v) || json_is_null(v);
            want = "must be an object or null";
            break;
        }
        if (!ok)
            return env_fail(err, DW_ENVELOPE_INVALID, members[i].name, want);
    }
    return env_fail(err, DW_ENVELOPE_INVALID, "", jerr->text);
}

/* ---------------------------------------------------------------- parse */

dw_err_t dw_event_parse(const void *text, size_t len, size_t max_len, dw_event_t *ev,
                        dw_envelope_error_t *err)
{
    memset(ev, 0, sizeof(*ev));
    if (err)
        memset(err, 0, sizeof(*err));
    if (max_len > 0 && len > max_len) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%zu bytes, more than the limit of %zu", len, max_len);
        return env_fail(err, DW_ENVELOPE_TOO_LARGE, "", detail);
    }
    if (!text || len == 0)
        return env_fail(err, DW_ENVELOPE_MALFORMED, "", "empty value");

    dw_mapper_error_t merr;
    json_t *root = dw_mapper_loadb(text, len, &merr);
    if (!root) {
        if (merr.reason == DW_MAPPER_NOMEM)
            return DW_ERR_NOMEM;
        /* jansson's "near '...'" would quote the input: cut it off */
        char *near = strstr(merr.message, " near '");
        if (near)
            *near = '\0';
        return env_fail(err,
                        merr.reason == DW_MAPPER_INVALID_UTF8 ? DW_ENVELOPE_INVALID_UTF8
                                                              : DW_ENVELOPE_MALFORMED,
                        merr.reason == DW_MAPPER_INVALID_UTF8 ? merr.field : "", merr.message);
    }
    dw_err_t ret = DW_ERR_INVALID_ARG;
    if (!json_is_object(root)) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "", "the envelope is not a JSON object");
        goto fail;
    }

    json_error_t jerr;
    json_int_t version = 0;
    const char *event_id, *map, *source, *op, *record_id = NULL, *source_version, *source_ts,
                                              *capture_ts, *corr;
    json_t *key = NULL, *data = NULL;
    if (json_unpack_ex(root, &jerr, JSON_STRICT,
                       "{s:I, s:s, s:s, s:s, s:s, s:o, s?s, s?o, s:s, s:s, s:s, s:s}", "version",
                       &version, "event_id", &event_id, "map", &map, "source", &source, "op", &op,
                       "key", &key, "record_id", &record_id, "data", &data, "source_version",
                       &source_version, "source_ts", &source_ts, "capture_ts", &capture_ts,
                       "correlation_id", &corr) != 0) {
        ret = diagnose(root, &jerr, err);
        goto fail;
    }
    if (!json_is_object(key)) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "key", "must be an object");
        goto fail;
    }
    if (data && !json_is_object(data) && !json_is_null(data)) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "data", "must be an object or null");
        goto fail;
    }
    if (version != 1) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "version", "must be 1");
        goto fail;
    }
    if (!is_uuid(json_object_get(root, "event_id"))) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "event_id", "not a UUID");
        goto fail;
    }
    if (!is_map_name(json_object_get(root, "map"))) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "map",
                       "not a map name ([a-z][a-z0-9_]*, at most 64 characters)");
        goto fail;
    }
    if (strcmp(source, "fo") == 0) {
        ev->source = DW_MAP_FO;
    } else if (strcmp(source, "dv") == 0) {
        ev->source = DW_MAP_DV;
    } else {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "source", "must be \"fo\" or \"dv\"");
        goto fail;
    }
    if (strcmp(op, "upsert") == 0) {
        ev->op = DW_EVENT_UPSERT;
    } else if (strcmp(op, "delete") == 0) {
        ev->op = DW_EVENT_DELETE;
    } else if (strcmp(op, "snapshot") == 0) {
        ev->op = DW_EVENT_SNAPSHOT;
    } else {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "op",
                       "must be \"upsert\", \"delete\" or \"snapshot\"");
        goto fail;
    }
    const char *kname;
    json_t *kval;
    json_object_foreach(key, kname, kval)
    {
        if (!json_is_string(kval) && !json_is_number(kval) && !json_is_boolean(kval)) {
            char field[64];
            snprintf(field, sizeof(field), "key/%.40s", kname);
            ret = env_fail(err, DW_ENVELOPE_INVALID, field,
                           "a key value must be a string, a number or a Boolean");
            goto fail;
        }
    }
    if (record_id && !is_uuid(json_object_get(root, "record_id"))) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "record_id", "not a UUID");
        goto fail;
    }
    if (!is_version_string(json_object_get(root, "source_version"))) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "source_version",
                       "not a decimal string of at most 39 digits without leading zeros");
        goto fail;
    }
    if (!str_clean(json_object_get(root, "source_ts")) || !dw_envelope_rfc3339(source_ts, NULL)) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "source_ts", "not an RFC 3339 date-time");
        goto fail;
    }
    if (!str_clean(json_object_get(root, "capture_ts")) || !dw_envelope_rfc3339(capture_ts, NULL)) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "capture_ts", "not an RFC 3339 date-time");
        goto fail;
    }
    json_t *cv = json_object_get(root, "correlation_id");
    if (!str_clean(cv) || json_string_length(cv) < 1 || json_string_length(cv) > ENV_CORR_MAX) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "correlation_id",
                       "must be 1 to 128 characters without NUL");
        goto fail;
    }
    if (json_is_null(data))
        data = NULL;
    if (ev->op == DW_EVENT_DELETE) {
        if (data) {
            ret = env_fail(err, DW_ENVELOPE_INVALID, "data", "must be null or absent for a delete");
            goto fail;
        }
        if (json_object_size(key) == 0 && !record_id) {
            ret = env_fail(err, DW_ENVELOPE_INVALID, "key", "a delete needs a key or a record_id");
            goto fail;
        }
    } else {
        if (!data) {
            ret = env_fail(err, DW_ENVELOPE_INVALID, "data",
                           "an upsert or snapshot needs a data object");
            goto fail;
        }
        if (json_object_size(key) == 0) {
            ret = env_fail(err, DW_ENVELOPE_INVALID, "key",
                           "an upsert or snapshot needs a non-empty key");
            goto fail;
        }
    }
    if (ev->source == DW_MAP_FO && record_id) {
        ret = env_fail(err, DW_ENVELOPE_INVALID, "record_id",
                       "only a Dataverse event carries a record_id");
        goto fail;
    }
    ev->root = root;
    ev->event_id = event_id;
    ev->map = map;
    ev->source_name = ev->source == DW_MAP_FO ? "fo" : "dv";
    ev->key = key;
    ev->record_id = record_id;
    ev->data = data;
    ev->source_version = source_version;
    ev->source_ts = source_ts;
    ev->capture_ts = capture_ts;
    ev->correlation_id = corr;
    return DW_OK;
fail:
    json_decref(root);
    memset(ev, 0, sizeof(*ev));
    return ret;
}

void dw_event_clear(dw_event_t *ev)
{
    json_decref(ev->root);
    memset(ev, 0, sizeof(*ev));
}

/* ---------------------------------------------------------------- commands */

void dw_envelope_command_id(const char *event_id, dw_map_side_t target, char out[37])
{
    dw_sha256_t ctx;
    uint8_t d[DW_SHA256_SIZE];
    dw_sha256_init(&ctx);
    dw_sha256_update(&ctx, event_id, strlen(event_id));
    dw_sha256_update(&ctx, "/", 1);
    const char *t = dw_map_side_name(target);
    dw_sha256_update(&ctx, t, strlen(t));
    dw_sha256_final(&ctx, d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x80); /* version 8: custom */
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 0xf];
    }
    out[o] = '\0';
}

json_t *dw_command_build(const dw_event_t *ev, const dw_map_t *map, dw_map_side_t target,
                         const dw_mapper_result_t *res)
{
    char cid[37];
    dw_envelope_command_id(ev->event_id, target, cid);
    bool del = ev->op == DW_EVENT_DELETE;
    json_t *fields = NULL, *tkey = NULL;
    char empty_hash[DW_SHA256_HEX_SIZE];
    const char *hash = empty_hash;
    if (del) {
        fields = json_object();
        dw_sha256_hex("{}", 2, empty_hash); /* dw_mapper_content_hash of {} */
        tkey = res ? json_incref(res->key) : json_object();
    } else {
        if (!res)
            return NULL;
        fields = json_incref(res->payload);
        tkey = json_incref(res->key);
        hash = res->content_hash;
    }
    json_t *cmd = json_pack(
        "{s:i, s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:s}", "version", 1,
        "command_id", cid, "event_id", ev->event_id, "map", ev->map, "map_version",
        dw_map_version(map), "target", dw_map_side_name(target), "op", del ? "delete" : "upsert",
        "target_key", tkey, "fields", fields, "source_version", ev->source_version, "content_hash",
        hash, "correlation_id", ev->correlation_id, "source_ts", ev->source_ts);
    /* json_pack "o" steals tkey and fields, even on failure */
    if (cmd && del && !res && ev->record_id &&
        json_object_set_new(cmd, "record_id", json_string(ev->record_id)) != 0) {
        json_decref(cmd);
        cmd = NULL;
    }
    return cmd;
}

/* A growing text for dw_command_text. */
typedef struct ctext_s {
    char *p;
    size_t n, cap;
    bool fail;
} ctext_t;

static void ct_put(ctext_t *t, const char *s, size_t n)
{
    if (t->fail)
        return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->n + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->fail = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void ct_puts(ctext_t *t, const char *s)
{
    ct_put(t, s, strlen(s));
}

/* A JSON string as dw_mapper_dumps writes it (the envelope's strings are valid UTF-8 already). */
static void ct_str(ctext_t *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0, i = 0;
    ct_put(t, "\"", 1);
    for (; p[i]; i++) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        ct_put(t, s + run, i - run);
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, (char[]){'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]}, 6);
            el = 6;
        }
        ct_put(t, esc, el);
        run = i + 1;
    }
    ct_put(t, s + run, i - run);
    ct_put(t, "\"", 1);
}

static void ct_member(ctext_t *t, const char *name)
{
    ct_put(t, ",\"", 2);
    ct_puts(t, name);
    ct_put(t, "\":", 2);
}

static void ct_json(ctext_t *t, const json_t *v)
{
    size_t n = 0;
    char *text = dw_mapper_dumps(v, 0, &n);
    if (!text) {
        t->fail = true;
        return;
    }
    ct_put(t, text, n);
    free(text);
}

char *dw_command_text(const dw_event_t *ev, const dw_map_t *map, dw_map_side_t target,
                      const dw_mapper_result_t *res, const char *origin_hash, bool with_origin_key,
                      size_t *len)
{
    char cid[37], num[32], empty_hash[DW_SHA256_HEX_SIZE];
    bool del = ev->op == DW_EVENT_DELETE;
    if (!del && (!res || !res->payload_text))
        return NULL;
    ctext_t t = {0};
    t.cap = 512 + (res && !del ? res->payload_len : 0);
    if (!(t.p = malloc(t.cap)))
        return NULL;
    dw_envelope_command_id(ev->event_id, target, cid);
    ct_puts(&t, "{\"version\":1");
    ct_member(&t, "command_id");
    ct_str(&t, cid);
    ct_member(&t, "event_id");
    ct_str(&t, ev->event_id);
    ct_member(&t, "map");
    ct_str(&t, ev->map);
    ct_member(&t, "map_version");
    snprintf(num, sizeof(num), "%d", dw_map_version(map));
    ct_puts(&t, num);
    ct_member(&t, "target");
    ct_str(&t, dw_map_side_name(target));
    ct_member(&t, "op");
    ct_str(&t, del ? "delete" : "upsert");
    ct_member(&t, "target_key");
    if (res)
        ct_json(&t, res->key);
    else
        ct_put(&t, "{}", 2);
    ct_member(&t, "fields");
    const char *hash = empty_hash;
    if (del) {
        ct_put(&t, "{}", 2);
        dw_sha256_hex("{}", 2, empty_hash); /* dw_mapper_content_hash of {} */
    } else {
        ct_put(&t, res->payload_text, res->payload_len);
        hash = res->content_hash;
    }
    ct_member(&t, "source_version");
    ct_str(&t, ev->source_version);
    ct_member(&t, "content_hash");
    ct_str(&t, hash);
    ct_member(&t, "correlation_id");
    ct_str(&t, ev->correlation_id);
    ct_member(&t, "source_ts");
    ct_str(&t, ev->source_ts);
    if (del && !res && ev->record_id) {
        ct_member(&t, "record_id");
        ct_str(&t, ev->record_id);
    }
    if (origin_hash) {
        ct_member(&t, "origin_hash");
        ct_str(&t, origin_hash);
    }
    if (with_origin_key && json_object_size(ev->key) > 0) {
        ct_member(&t, "origin_key");
        ct_json(&t, ev->key);
    }
    ct_put(&t, "}", 1);
    if (t.fail) {
        free(t.p);
        return NULL;
    }
    if (len)
        *len = t.n;
    return t.p;
}
