/*
 * writer_command: one command (schemas/command.schema.json) read strictly: jansson with
 * JSON_REJECT_DUPLICATES, one strict json_unpack_ex, then the schema's rules. Also the decimal
 * comparison of source versions (up to 39 digits, wider than any integer type).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
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
    json_decref(cmd->root);
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
    json_error_t jerr;
    if (!value || len == 0)
        return bad(cmd, why, why_size, field, field_size, "", "empty value");
    cmd->root = json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!cmd->root) {
        char msg[300];
        snprintf(msg, sizeof(msg), "not JSON: line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return bad(cmd, why, why_size, field, field_size, "", msg);
    }
    json_int_t version = 0, map_version = 0;
    const char *op = NULL, *command_id = NULL, *event_id = NULL, *source_ts = NULL;
    json_t *tk = NULL, *fields = NULL, *okey = NULL;
    if (json_unpack_ex(cmd->root, &jerr, JSON_STRICT,
                       "{s:I, s?:s, s?:s, s:s, s:I, s:s, s:s, s:o, s?:s, s:o, s:s, s:s, s:s, s:s,"
                       " s?:s, s?:o}",
                       "version", &version, "command_id", &command_id, "event_id", &event_id, "map",
                       &cmd->map, "map_version", &map_version, "target", &cmd->target, "op", &op,
                       "target_key", &tk, "record_id", &cmd->record_id, "fields", &fields,
                       "source_version", &cmd->source_version, "content_hash", &cmd->content_hash,
                       "correlation_id", &cmd->correlation_id, "source_ts", &source_ts,
                       "origin_hash", &cmd->origin_hash, "origin_key", &okey) != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "invalid command: %s", jerr.text);
        return bad(cmd, why, why_size, field, field_size, "", msg);
    }
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
    if (!json_is_object(tk))
        return bad(cmd, why, why_size, field, field_size, "target_key", "not an object");
    const char *k;
    json_t *v;
    json_object_foreach(tk, k, v)
    {
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
            return bad(cmd, why, why_size, field, field_size, "target_key",
                       "a key value is not a string, number or boolean");
    }
    cmd->target_key = tk;
    if (!json_is_object(fields))
        return bad(cmd, why, why_size, field, field_size, "fields", "not an object");
    cmd->fields = fields;
    if (cmd->record_id) {
        if (!is_uuid(cmd->record_id))
            return bad(cmd, why, why_size, field, field_size, "record_id", "not a UUID");
        if (cmd->op != DW_WOP_DELETE || json_object_size(tk) != 0)
            return bad(cmd, why, why_size, field, field_size, "record_id",
                       "record_id only on a delete with an empty target_key");
    } else if (json_object_size(tk) == 0) {
        return bad(cmd, why, why_size, field, field_size, "target_key", "empty target_key");
    }
    if (cmd->op == DW_WOP_DELETE && json_object_size(fields) != 0)
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
    if (okey) {
        if (!json_is_object(okey) || json_object_size(okey) == 0)
            return bad(cmd, why, why_size, field, field_size, "origin_key",
                       "not an object with at least one member");
        json_object_foreach(okey, k, v)
        {
            if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
                return bad(cmd, why, why_size, field, field_size, "origin_key",
                           "a key value is not a string, number or boolean");
        }
    }
    cmd->origin_key = okey;
    return DW_OK;
}
