/*
 * writer_command: one command (schemas/command.schema.json) read strictly: the whole text checked
 * as jansson reads it with JSON_REJECT_DUPLICATES, the members taken as a strict unpack takes
 * them (every required one there, of its type, no other), then the schema's rules. No jansson
 * tree of the whole command is built: at the writer's rate the tree cost more CPU than
 * everything else per record (jansson: about 30 us for a 1.4 KB command, writer_json.c: 3 us);
 * the strings go into one block, target_key and origin_key become small jansson objects, and the
 * fields stay text, copied into the request as they are. Also the decimal comparison of source
 * versions (up to 39 digits, wider than any integer type).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_json.h"
#include "writer.h"

static bool is_digits(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool is_version(const char *s)
{
    return is_digits(s, 1, 39) && (s[0] != '0' || s[1] == '\0');
}

static bool is_hash(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

static bool is_map_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64 || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

bool wr_key_valid(const void *key, size_t len)
{
    const unsigned char *p = key;
    if (!key || len == 0)
        return false;
    for (size_t i = 0; i < len;) {
        if (p[i] == 0)
            return false;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = dw_json_utf8_len(p + i, p + len);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

int wr_version_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

void wr_cmd_clear(wr_cmd_t *cmd)
{
    free(cmd->root);
    json_decref(cmd->target_key);
    json_decref(cmd->origin_key);
    memset(cmd, 0, sizeof(*cmd));
}

static dw_err_t bad(wr_cmd_t *cmd, char *why, size_t why_size, char *field, size_t field_size,
                    const char *f, const char *msg)
{
    snprintf(why, why_size, "%s", msg);
    snprintf(field, field_size, "%s", f);
    wr_cmd_clear(cmd);
    return DW_ERR_PARSE;
}

dw_err_t wr_cmd_parse(const void *value, size_t len, const char *map, const char *target,
                      wr_cmd_t *cmd, char *why, size_t why_size, char *field, size_t field_size)
{
    memset(cmd, 0, sizeof(*cmd));
    why[0] = '\0';
    field[0] = '\0';
    char msg[300], unknown[256];
    if (!value || len == 0)
        return bad(cmd, why, why_size, field, field_size, "", "empty value");
    enum {
        M_VERSION,
        M_COMMAND_ID,
        M_EVENT_ID,
        M_MAP,
        M_MAP_VERSION,
        M_TARGET,
        M_OP,
        M_TARGET_KEY,
        M_RECORD_ID,
        M_FIELDS,
        M_SOURCE_VERSION,
        M_CONTENT_HASH,
        M_CORRELATION_ID,
        M_SOURCE_TS,
        M_ORIGIN_HASH,
        M_ORIGIN_KEY,
        M__N
    };
    /* name, type ('I' integer, 's' string, 'o' object), required */
    static const struct {
        const char *name;
        char type;
        bool required;
    } spec[M__N] = {
        {"version", 'I', true},
        {"command_id", 's', false},
        {"event_id", 's', false},
        {"map", 's', true},
        {"map_version", 'I', true},
        {"target", 's', true},
        {"op", 's', true},
        {"target_key", 'o', true},
        {"record_id", 's', false},
        {"fields", 'o', true},
        {"source_version", 's', true},
        {"content_hash", 's', true},
        {"correlation_id", 's', true},
        {"source_ts", 's', true},
        {"origin_hash", 's', false},
        {"origin_key", 'o', false},
    };
    wr_jmember_t m[M__N];
    for (int i = 0; i < M__N; i++)
        m[i].name = spec[i].name;
    if (wr_json_check(value, len, m, M__N, unknown, sizeof(unknown), msg, sizeof(msg)) != DW_OK) {
        char m2[340];
        snprintf(m2, sizeof(m2), "not JSON: %s", msg);
        return bad(cmd, why, why_size, field, field_size, "", m2);
    }
    /* what a strict unpack checks: the required members, their types, no other member */
    for (int i = 0; i < M__N; i++) {
        const char *kind = m[i].v.p ? wr_json_kind(&m[i].v) : NULL;
        const char *want = spec[i].type == 'I' ? "integer" : spec[i].type == 's' ? "string" : NULL;
        if (!kind && spec[i].required)
            snprintf(msg, sizeof(msg), "invalid command: Object item not found: %s", spec[i].name);
        else if (kind && want && strcmp(kind, want) != 0)
            snprintf(msg, sizeof(msg), "invalid command: %s: Expected %s, got %s", spec[i].name,
                     want, kind);
        else
            continue;
        return bad(cmd, why, why_size, field, field_size, "", msg);
    }
    if (unknown[0]) {
        snprintf(msg, sizeof(msg), "invalid command: 1 object item(s) left unpacked: %.200s",
                 unknown);
        return bad(cmd, why, why_size, field, field_size, "", msg);
    }
    /* the strings, unescaped into one block (never longer than as written) */
    size_t need = 0;
    for (int i = 0; i < M__N; i++)
        if (spec[i].type == 's' && m[i].v.p)
            need += m[i].v.n + 1;
    if (m[M_FIELDS].v.p[0] == '{')
        need += m[M_FIELDS].v.n + 1;
    if (!(cmd->root = malloc(need ? need : 1))) {
        wr_cmd_clear(cmd);
        return DW_ERR_NOMEM;
    }
    const char *str[M__N] = {0};
    char *o = cmd->root;
    for (int i = 0; i < M__N; i++) {
        size_t l;
        if (spec[i].type != 's' || !m[i].v.p)
            continue;
        wr_json_string(&m[i].v, o, &l);
        str[i] = o;
        o += l + 1;
    }
    json_int_t version = strtoll(m[M_VERSION].v.p, NULL, 10);
    json_int_t map_version = strtoll(m[M_MAP_VERSION].v.p, NULL, 10);
    const char *op = str[M_OP], *command_id = str[M_COMMAND_ID], *event_id = str[M_EVENT_ID],
               *source_ts = str[M_SOURCE_TS];
    cmd->map = str[M_MAP];
    cmd->target = str[M_TARGET];
    cmd->record_id = str[M_RECORD_ID];
    cmd->source_version = str[M_SOURCE_VERSION];
    cmd->content_hash = str[M_CONTENT_HASH];
    cmd->correlation_id = str[M_CORRELATION_ID];
    cmd->origin_hash = str[M_ORIGIN_HASH];
    const wr_jspan_t *tk = &m[M_TARGET_KEY].v, *fields = &m[M_FIELDS].v, *okey = &m[M_ORIGIN_KEY].v;
    if (version != 1)
        return bad(cmd, why, why_size, field, field_size, "version", "version must be 1");
    if (!is_map_name(cmd->map))
        return bad(cmd, why, why_size, field, field_size, "map", "map is not a valid map name");
    if (map && strcmp(cmd->map, map) != 0)
        return bad(cmd, why, why_size, field, field_size, "map",
                   "map does not match the topic's map");
    if (map_version < 1)
        return bad(cmd, why, why_size, field, field_size, "map_version", "map_version below 1");
    if (strcmp(cmd->target, "fo") != 0 && strcmp(cmd->target, "dv") != 0)
        return bad(cmd, why, why_size, field, field_size, "target", "target is not fo or dv");
    if (target && strcmp(cmd->target, target) != 0)
        return bad(cmd, why, why_size, field, field_size, "target",
                   "target does not match this writer's target");
    if (strcmp(op, "upsert") == 0)
        cmd->op = DW_WOP_UPSERT;
    else if (strcmp(op, "delete") == 0)
        cmd->op = DW_WOP_DELETE;
    else
        return bad(cmd, why, why_size, field, field_size, "op", "op is not upsert or delete");
    if (command_id && !is_uuid(command_id))
        return bad(cmd, why, why_size, field, field_size, "command_id", "not a UUID");
    if (event_id && !is_uuid(event_id))
        return bad(cmd, why, why_size, field, field_size, "event_id", "not a UUID");
    if (tk->p[0] != '{')
        return bad(cmd, why, why_size, field, field_size, "target_key", "not an object");
    dw_err_t kerr = wr_json_flat_object(tk, &cmd->target_key);
    if (kerr == DW_ERR_NOMEM) {
        wr_cmd_clear(cmd);
        return DW_ERR_NOMEM;
    }
    if (kerr)
        return bad(cmd, why, why_size, field, field_size, "target_key",
                   "a key value is not a string, number or boolean");
    if (fields->p[0] != '{')
        return bad(cmd, why, why_size, field, field_size, "fields", "not an object");
    memcpy(o, fields->p, fields->n);
    o[fields->n] = '\0';
    cmd->fields_text = o;
    cmd->fields_len = fields->n;
    cmd->nfields = m[M_FIELDS].nmembers;
    if (cmd->record_id) {
        if (!is_uuid(cmd->record_id))
            return bad(cmd, why, why_size, field, field_size, "record_id", "not a UUID");
        if (cmd->op != DW_WOP_DELETE || m[M_TARGET_KEY].nmembers != 0)
            return bad(cmd, why, why_size, field, field_size, "record_id",
                       "record_id only on a delete with an empty target_key");
    } else if (m[M_TARGET_KEY].nmembers == 0) {
        return bad(cmd, why, why_size, field, field_size, "target_key", "empty target_key");
    }
    if (cmd->op == DW_WOP_DELETE && cmd->nfields != 0)
        return bad(cmd, why, why_size, field, field_size, "fields", "a delete carries fields");
    if (!is_version(cmd->source_version))
        return bad(cmd, why, why_size, field, field_size, "source_version",
                   "source_version is not a decimal of at most 39 digits");
    if (!is_hash(cmd->content_hash))
        return bad(cmd, why, why_size, field, field_size, "content_hash",
                   "content_hash is not 64 lowercase hex digits");
    size_t cl = strlen(cmd->correlation_id);
    if (cl < 1 || cl > 128)
        return bad(cmd, why, why_size, field, field_size, "correlation_id",
                   "correlation_id length is not 1..128");
    if (!*source_ts)
        return bad(cmd, why, why_size, field, field_size, "source_ts", "empty source_ts");
    if (cmd->origin_hash && !is_hash(cmd->origin_hash))
        return bad(cmd, why, why_size, field, field_size, "origin_hash",
                   "origin_hash is not 64 lowercase hex digits");
    if (okey->p) {
        if (okey->p[0] != '{' || m[M_ORIGIN_KEY].nmembers == 0)
            return bad(cmd, why, why_size, field, field_size, "origin_key",
                       "not an object with at least one member");
        kerr = wr_json_flat_object(okey, &cmd->origin_key);
        if (kerr == DW_ERR_NOMEM) {
            wr_cmd_clear(cmd);
            return DW_ERR_NOMEM;
        }
        if (kerr)
            return bad(cmd, why, why_size, field, field_size, "origin_key",
                       "a key value is not a string, number or boolean");
    }
    return DW_OK;
}
