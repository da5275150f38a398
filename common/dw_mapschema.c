/*
 * dw_mapschema: map.schema.json and metadata.schema.json transcribed into static tables, and the
 * checker that walks a document against them. Each table node says what one JSON value may be;
 * the conditional parts of the schemas (allOf/if/then, oneOf) are the node's `extra` function.
 * Problems are reported as the Python jsonschema library would place them, so that the golden
 * `.expect` files hold for both.
 */
#include "dw_mapschema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_json.h"

/* ---- JSON types as the schemas name them ------------------------------------------------ */

enum {
    T_OBJECT = 1 << 0,
    T_ARRAY = 1 << 1,
    T_STRING = 1 << 2,
    T_INTEGER = 1 << 3,
    T_NUMBER = 1 << 4, /* includes integers */
    T_BOOLEAN = 1 << 5,
    T_NULL = 1 << 6,
};

typedef struct sch_ctx_s sch_ctx_t;
typedef struct sch_node_s sch_node_t;

typedef struct sch_prop_s {
    const char *name;
    const sch_node_t *node;
} sch_prop_t;

struct sch_node_s {
    unsigned types;                /* allowed types; 0: any */
    const char *const *enum_strs;  /* the value must be one of these strings */
    int (*pattern)(const char *s); /* strings must match */
    const char *pattern_text;      /* for the message */
    size_t min_length, max_length; /* strings, in characters; max 0: none */
    bool has_minimum;
    long long minimum;           /* numbers */
    const sch_prop_t *props;     /* objects: known members (NULL-name terminated) */
    const char *const *required; /* objects: required members (NULL terminated) */
    bool closed;                 /* objects: additionalProperties false */
    const sch_node_t *values;    /* objects: schema of every member (additionalProperties) */
    const sch_node_t *names;     /* objects: schema of member names (propertyNames) */
    size_t min_props, max_props; /* objects; max 0: none */
    const sch_node_t *items;     /* arrays */
    size_t min_items;
    bool unique_items;
    void (*extra)(sch_ctx_t *ctx, const json_t *v); /* conditional rules */
};

/* ---- the walk: a growing JSON pointer and the report callback ---------------------------- */

struct sch_ctx_s {
    char *ptr;
    size_t len, cap;
    bool nomem;
    dw_mapschema_cb *cb;
    void *opaque;
    size_t count;
};

static void ptr_append(sch_ctx_t *c, const char *s, size_t n)
{
    if (c->nomem)
        return;
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *p = realloc(c->ptr, cap);
        if (!p) {
            c->nomem = true;
            return;
        }
        c->ptr = p;
        c->cap = cap;
    }
    memcpy(c->ptr + c->len, s, n);
    c->len += n;
    c->ptr[c->len] = '\0';
}

/* Append "/" and the member name escaped as RFC 6901 says (~ -> ~0, / -> ~1); returns the
 * previous length, for ptr_pop. */
static size_t ptr_push_key(sch_ctx_t *c, const char *key)
{
    size_t old = c->len;
    ptr_append(c, "/", 1);
    for (const char *p = key; *p; p++) {
        if (*p == '~')
            ptr_append(c, "~0", 2);
        else if (*p == '/')
            ptr_append(c, "~1", 2);
        else {
            size_t run = strcspn(p, "~/");
            ptr_append(c, p, run);
            p += run - 1;
        }
    }
    return old;
}

static size_t ptr_push_index(sch_ctx_t *c, size_t i)
{
    char buf[32];
    size_t old = c->len;
    int n = snprintf(buf, sizeof(buf), "/%zu", i);
    ptr_append(c, buf, (size_t)n);
    return old;
}

static void ptr_pop(sch_ctx_t *c, size_t old)
{
    if (c->nomem || !c->ptr)
        return;
    c->len = old;
    c->ptr[old] = '\0';
}

static void report(sch_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(sch_ctx_t *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->count++;
    c->cb(c->opaque, c->nomem || !c->ptr ? "" : c->ptr, msg);
}

/* Report at the pointer of member key of the current value. */
static void report_at_key(sch_ctx_t *c, const char *key, const char *msg)
{
    size_t old = ptr_push_key(c, key);
    report(c, "%s", msg);
    ptr_pop(c, old);
}

/* A member name shortened for a message. */
static const char *shorten(const char *s, char *buf, size_t n)
{
    size_t l = strlen(s);
    if (l < n)
        return s;
    snprintf(buf, n, "%.*s...", (int)(n - 4), s);
    return buf;
}

/* JSON Schema 2020-12 counts 1.0 as an integer. */
static bool is_integer(const json_t *v)
{
    if (json_is_integer(v))
        return true;
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d == (double)(long long)d && d > -9.2e18 && d < 9.2e18;
    }
    return false;
}

static bool type_ok(unsigned types, const json_t *v)
{
    if (!types)
        return true;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return types & T_OBJECT;
    case JSON_ARRAY:
        return types & T_ARRAY;
    case JSON_STRING:
        return types & T_STRING;
    case JSON_INTEGER:
        return types & (T_INTEGER | T_NUMBER);
    case JSON_REAL:
        return (types & T_NUMBER) || ((types & T_INTEGER) && is_integer(v));
    case JSON_TRUE:
    case JSON_FALSE:
        return types & T_BOOLEAN;
    case JSON_NULL:
        return types & T_NULL;
    }
    return false;
}

static void types_text(unsigned types, char *buf, size_t n)
{
    static const char *const names[] = {"object", "array",   "string", "integer",
                                        "number", "boolean", "null"};
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < 7; i++) {
        if (!(types & (1u << i)))
            continue;
        o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? " or " : "", names[i]);
        if (o >= n)
            break;
    }
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void check_node(sch_ctx_t *c, const sch_node_t *node, const json_t *v);

static void check_object(sch_ctx_t *c, const sch_node_t *node, const json_t *v)
{
    const char *key;
    json_t *member;
    char sbuf[80];
    for (size_t i = 0; node->required && node->required[i]; i++) {
        if (!json_object_get(v, node->required[i]))
            report(c, "required member \"%s\" is missing", node->required[i]);
    }
    size_t nprops = json_object_size(v);
    if (nprops < node->min_props)
        report(c, "needs at least %zu member%s", node->min_props, node->min_props == 1 ? "" : "s");
    if (node->max_props && nprops > node->max_props)
        report(c, "has %zu members, at most %zu allowed", nprops, node->max_props);
    json_object_foreach((json_t *)v, key, member)
    {
        const sch_node_t *sub = NULL;
        for (size_t i = 0; node->props && node->props[i].name; i++) {
            if (strcmp(node->props[i].name, key) == 0) {
                sub = node->props[i].node;
                break;
            }
        }
        if (node->names) {
            json_t *name = json_string(key);
            if (name) {
                size_t old = ptr_push_key(c, key);
                check_node(c, node->names, name);
                ptr_pop(c, old);
                json_decref(name);
            }
        }
        if (!sub && node->values)
            sub = node->values;
        if (!sub) {
            if (node->closed) {
                char msg[160];
                snprintf(msg, sizeof(msg), "unknown member \"%s\"", shorten(key, sbuf, 64));
                report_at_key(c, key, msg);
            }
            continue;
        }
        size_t old = ptr_push_key(c, key);
        check_node(c, sub, member);
        ptr_pop(c, old);
    }
}

static void check_array(sch_ctx_t *c, const sch_node_t *node, const json_t *v)
{
    size_t n = json_array_size(v);
    if (n < node->min_items)
        report(c, "needs at least %zu item%s", node->min_items, node->min_items == 1 ? "" : "s");
    if (node->unique_items) {
        for (size_t i = 1; i < n; i++) {
            for (size_t j = 0; j < i; j++) {
                if (json_equal(json_array_get(v, i), json_array_get(v, j))) {
                    report(c, "items %zu and %zu are equal; items must be unique", j, i);
                    i = n;
                    break;
                }
            }
        }
    }
    if (node->items) {
        for (size_t i = 0; i < n; i++) {
            size_t old = ptr_push_index(c, i);
            check_node(c, node->items, json_array_get(v, i));
            ptr_pop(c, old);
        }
    }
}

static void check_node(sch_ctx_t *c, const sch_node_t *node, const json_t *v)
{
    char buf[160];
    if (!type_ok(node->types, v)) {
        types_text(node->types, buf, sizeof(buf));
        report(c, "expected %s, found %s", buf, dw_json_kind(v));
        return;
    }
    if (node->enum_strs) {
        bool found = false;
        for (size_t i = 0; !found && node->enum_strs[i]; i++)
            found = json_is_string(v) && strcmp(json_string_value(v), node->enum_strs[i]) == 0;
        if (!found) {
            size_t o = 0;
            buf[0] = '\0';
            for (size_t i = 0; node->enum_strs[i] && o < sizeof(buf); i++)
                o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s\"%s\"", i ? ", " : "",
                                      node->enum_strs[i]);
            if (json_is_string(v)) {
                char sbuf[80];
                report(c, "\"%s\" is not one of %s", shorten(json_string_value(v), sbuf, 64), buf);
            } else {
                report(c, "%s is not one of %s", dw_json_kind(v), buf);
            }
            return;
        }
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t chars = utf8_chars(s);
        if (chars < node->min_length)
            report(c, "must not be empty");
        else if (node->max_length && chars > node->max_length)
            report(c, "longer than %zu characters", node->max_length);
        if (node->pattern && (strlen(s) != json_string_length(v) || !node->pattern(s))) {
            char sbuf[80];
            report(c, "\"%s\" does not match %s", shorten(s, sbuf, 64), node->pattern_text);
        }
    }
    if (node->has_minimum && json_is_number(v) && json_number_value(v) < (double)node->minimum)
        report(c, "must be at least %lld", node->minimum);
    if (json_is_object(v))
        check_object(c, node, v);
    if (json_is_array(v))
        check_array(c, node, v);
    if (node->extra)
        node->extra(c, v);
}

/* ---- patterns -------------------------------------------------------------------------- */

int dw_mapschema_is_identifier(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    }
    return 1;
}

int dw_mapschema_is_map_name(const char *s)
{
    if (!(*s >= 'a' && *s <= 'z'))
        return 0;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    }
    return 1;
}

#define IDENT_PATTERN "^[A-Za-z_][A-Za-z0-9_]*$"
#define NAME_PATTERN  "^[a-z][a-z0-9_]*$"

/* ---- shared nodes -------------------------------------------------------------------------- */

static const sch_node_t n_any_string = {.types = T_STRING};
static const sch_node_t n_boolean = {.types = T_BOOLEAN};
static const sch_node_t n_integer = {.types = T_INTEGER};
static const sch_node_t n_identifier = {
    .types = T_STRING,
    .pattern = dw_mapschema_is_identifier,
    .pattern_text = IDENT_PATTERN,
    .max_length = 128,
};
static const sch_node_t n_scalar = {.types = T_STRING | T_NUMBER | T_BOOLEAN};

/* ---- map.schema.json ------------------------------------------------------------------------- */

static const char *const e_direction[] = {"fo-to-dv", "dv-to-fo", "both", NULL};
static const char *const e_unavailable[] = {"queue", "fail", NULL};

static const sch_node_t m_name = {
    .types = T_STRING,
    .pattern = dw_mapschema_is_map_name,
    .pattern_text = NAME_PATTERN,
    .max_length = 64,
};
static const sch_node_t m_lookup_map = {
    .types = T_STRING,
    .pattern = dw_mapschema_is_map_name,
    .pattern_text = NAME_PATTERN,
};
static const sch_node_t m_version = {.types = T_INTEGER, .has_minimum = true, .minimum = 1};
static const sch_node_t m_description = {.types = T_STRING, .min_length = 1};
static const sch_node_t m_filter = {.types = T_STRING, .min_length = 1, .max_length = 4000};
static const sch_node_t m_direction = {.enum_strs = e_direction};
static const sch_node_t m_unavailable = {.enum_strs = e_unavailable};

static const sch_prop_t m_fo_props[] = {
    {"entity", &n_identifier},
    {"entity_set", &n_identifier},
    {"company_specific", &n_boolean},
    {"filter", &m_filter},
    {NULL, NULL},
};
static const char *const m_fo_required[] = {"entity", "entity_set", "company_specific", NULL};
static const sch_node_t m_fo = {
    .types = T_OBJECT, .props = m_fo_props, .required = m_fo_required, .closed = true};

static const sch_prop_t m_dv_props[] = {
    {"table", &n_identifier},         {"entity_set", &n_identifier}, {"id_column", &n_identifier},
    {"alternate_key", &n_identifier}, {"filter", &m_filter},         {NULL, NULL},
};
static const char *const m_dv_required[] = {"table", "entity_set", "id_column", "alternate_key",
                                            NULL};
static const sch_node_t m_dv = {
    .types = T_OBJECT, .props = m_dv_props, .required = m_dv_required, .closed = true};

static const sch_prop_t m_pair_props[] = {
    {"fo", &n_identifier}, {"dv", &n_identifier}, {NULL, NULL}};
static const char *const m_fo_dv[] = {"fo", "dv", NULL};
static const sch_node_t m_key = {
    .types = T_OBJECT, .props = m_pair_props, .required = m_fo_dv, .closed = true};
static const sch_node_t m_keys = {.types = T_ARRAY, .min_items = 1, .items = &m_key};

/* value_map pairs and default: scalars on each side */
static const sch_prop_t m_scalar_pair_props[] = {
    {"fo", &n_scalar}, {"dv", &n_scalar}, {NULL, NULL}};
static const sch_node_t m_vm_pair = {
    .types = T_OBJECT, .props = m_scalar_pair_props, .required = m_fo_dv, .closed = true};
static const sch_node_t m_value_map = {.types = T_ARRAY, .min_items = 1, .items = &m_vm_pair};
static const sch_node_t m_default = {
    .types = T_OBJECT, .props = m_scalar_pair_props, .closed = true, .min_props = 1};

/* lookup: oneOf {map, no table, no entity_set} | {table and entity_set, no map} */
static void lookup_extra(sch_ctx_t *c, const json_t *v)
{
    bool map = json_object_get(v, "map") != NULL;
    bool table = json_object_get(v, "table") != NULL;
    bool set = json_object_get(v, "entity_set") != NULL;
    bool by_map = map && !table && !set;
    bool by_table = table && set && !map;
    if (!by_map && !by_table)
        report(c, "a lookup names either \"map\", or both \"table\" and \"entity_set\"");
}

static const sch_node_t m_lookup;
static const sch_prop_t m_lookup_props[] = {
    {"map", &m_lookup_map}, {"table", &n_identifier},   {"entity_set", &n_identifier},
    {"key", &n_identifier}, {"company", &n_identifier}, {"fallback", &m_lookup},
    {NULL, NULL},
};
static const char *const m_lookup_required[] = {"key", NULL};
static const sch_node_t m_lookup = {
    .types = T_OBJECT,
    .props = m_lookup_props,
    .required = m_lookup_required,
    .closed = true,
    .extra = lookup_extra,
};

static const sch_prop_t m_transform_props[] = {
    {"value_map", &m_value_map},
    {"default", &m_default},
    {"constant", &n_scalar},
    {"lookup", &m_lookup},
    {NULL, NULL},
};
static const sch_node_t m_transform = {
    .types = T_OBJECT,
    .props = m_transform_props,
    .closed = true,
    .min_props = 1,
    .max_props = 1,
};

static const sch_node_t m_ident_or_null = {
    .types = T_STRING | T_NULL,
    .pattern = dw_mapschema_is_identifier,
    .pattern_text = IDENT_PATTERN,
    .max_length = 128,
};

/* The field's allOf: a null side needs a constant flowing into the other side, and a constant
 * needs a null side. */
static void field_null_side(sch_ctx_t *c, const json_t *v, const char *other, const char *dir)
{
    const json_t *t = json_object_get(v, "transform");
    const json_t *o = json_object_get(v, other);
    const json_t *d = json_object_get(v, "direction");
    if (!t)
        report(c, "required member \"transform\" is missing (a null side needs a constant)");
    if (o && !json_is_string(o)) {
        size_t old = ptr_push_key(c, other);
        report(c, "expected string, found %s (only one side may be null)", dw_json_kind(o));
        ptr_pop(c, old);
    }
    if (d && !(json_is_string(d) && strcmp(json_string_value(d), dir) == 0)) {
        size_t old = ptr_push_key(c, "direction");
        report(c, "must be \"%s\" when \"%s\" is null", dir, other[0] == 'f' ? "dv" : "fo");
        ptr_pop(c, old);
    }
    if (json_is_object(t) && !json_object_get(t, "constant")) {
        size_t old = ptr_push_key(c, "transform");
        report(c, "required member \"constant\" is missing (a null side needs a constant)");
        ptr_pop(c, old);
    }
}

static void field_extra(sch_ctx_t *c, const json_t *v)
{
    const json_t *fo = json_object_get(v, "fo");
    const json_t *dv = json_object_get(v, "dv");
    const json_t *t = json_object_get(v, "transform");
    if (fo && json_is_null(fo))
        field_null_side(c, v, "dv", "fo-to-dv");
    if (dv && json_is_null(dv))
        field_null_side(c, v, "fo", "dv-to-fo");
    if (t && (!json_is_object(t) || json_object_get(t, "constant"))) {
        bool fo_null = !fo || json_is_null(fo);
        bool dv_null = !dv || json_is_null(dv);
        if (!fo_null && !dv_null)
            report(c, "a constant needs \"fo\" or \"dv\" null (the side it is not written to)");
    }
}

static const sch_prop_t m_field_props[] = {
    {"fo", &m_ident_or_null},    {"dv", &m_ident_or_null}, {"direction", &m_direction},
    {"transform", &m_transform}, {"note", &n_any_string},  {NULL, NULL},
};
static const char *const m_field_required[] = {"fo", "dv", "direction", NULL};
static const sch_node_t m_field = {
    .types = T_OBJECT,
    .props = m_field_props,
    .required = m_field_required,
    .closed = true,
    .extra = field_extra,
};
static const sch_node_t m_fields = {.types = T_ARRAY, .min_items = 1, .items = &m_field};

static const sch_prop_t m_root_props[] = {
    {"$schema", &n_any_string},
    {"name", &m_name},
    {"version", &m_version},
    {"description", &m_description},
    {"fo", &m_fo},
    {"dv", &m_dv},
    {"direction", &m_direction},
    {"on_unavailable", &m_unavailable},
    {"keys", &m_keys},
    {"fields", &m_fields},
    {NULL, NULL},
};
static const char *const m_root_required[] = {"name",      "version", "description", "fo", "dv",
                                              "direction", "keys",    "fields",      NULL};
static const sch_node_t m_root = {
    .types = T_OBJECT, .props = m_root_props, .required = m_root_required, .closed = true};

/* ---- metadata.schema.json ------------------------------------------------------------------ */

static const char *const e_system[] = {"fo", "dv", NULL};
static const char *const e_ownership[] = {"user", "organization", NULL};
static const char *const e_col_type[] = {"string",   "integer", "decimal", "boolean", "date",
                                         "datetime", "enum",    "guid",    "lookup",  NULL};
static const char *const e_generated[] = {"id",         "version", "now", "caller",
                                          "autonumber", "company", NULL};

static const sch_node_t x_system = {.enum_strs = e_system};
static const sch_node_t x_ownership = {.enum_strs = e_ownership};
static const sch_node_t x_idents_unique = {
    .types = T_ARRAY, .min_items = 1, .unique_items = true, .items = &n_identifier};

static const sch_prop_t x_akey_props[] = {
    {"name", &n_identifier}, {"columns", &x_idents_unique}, {NULL, NULL}};
static const char *const x_akey_required[] = {"name", "columns", NULL};
static const sch_node_t x_akey = {
    .types = T_OBJECT, .props = x_akey_props, .required = x_akey_required, .closed = true};
static const sch_node_t x_akeys = {.types = T_ARRAY, .items = &x_akey};

static const sch_node_t x_member_name = {.types = T_STRING, .min_length = 1};
static const sch_prop_t x_member_props[] = {
    {"name", &x_member_name}, {"value", &n_integer}, {"state", &n_integer}, {NULL, NULL}};
static const char *const x_member_required[] = {"name", "value", NULL};
static const sch_node_t x_member = {
    .types = T_OBJECT, .props = x_member_props, .required = x_member_required, .closed = true};
static const sch_node_t x_members = {.types = T_ARRAY, .min_items = 1, .items = &x_member};
static const sch_node_t x_enums = {.types = T_OBJECT, .names = &n_identifier, .values = &x_members};

static const sch_node_t x_col_type = {.enum_strs = e_col_type};
static const sch_node_t x_max_length = {.types = T_INTEGER, .has_minimum = true, .minimum = 1};
static const sch_node_t x_generated = {.enum_strs = e_generated};
static const sch_node_t x_label = {.types = T_STRING, .min_length = 1, .max_length = 80};
static const sch_prop_t x_relation_props[] = {
    {"entity", &n_identifier}, {"label", &x_label}, {"table_label", &x_label}, {NULL, NULL}};
static const char *const x_relation_required[] = {"entity", "label", "table_label", NULL};
static const sch_node_t x_relation = {
    .types = T_OBJECT, .props = x_relation_props, .required = x_relation_required, .closed = true};

static void report_not_allowed(sch_ctx_t *c, const json_t *v, const char *member, const char *why)
{
    if (json_object_get(v, member))
        report(c, "member \"%s\" is not allowed %s", member, why);
}

static void column_extra(sch_ctx_t *c, const json_t *v)
{
    const json_t *type = json_object_get(v, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    /* "if": {"properties": {"type": {"const": X}}} also holds when type is absent */
    bool is_enum = !type || (t && strcmp(t, "enum") == 0);
    bool is_lookup = !type || (t && strcmp(t, "lookup") == 0);
    bool is_string = !type || (t && strcmp(t, "string") == 0);
    if (is_enum && !json_object_get(v, "enum"))
        report(c, "required member \"enum\" is missing (type enum)");
    if (!is_enum)
        report_not_allowed(c, v, "enum", "unless type is enum");
    if (is_lookup && !json_object_get(v, "targets"))
        report(c, "required member \"targets\" is missing (type lookup)");
    if (!is_lookup)
        report_not_allowed(c, v, "targets", "unless type is lookup");
    if (!is_string) {
        report_not_allowed(c, v, "max_length", "unless type is string");
        report_not_allowed(c, v, "relation", "unless type is string");
    }
}

static const sch_prop_t x_column_props[] = {
    {"name", &n_identifier},       {"type", &x_col_type},          {"required", &n_boolean},
    {"read_only", &n_boolean},     {"max_length", &x_max_length},  {"enum", &n_identifier},
    {"targets", &x_idents_unique}, {"default", &n_scalar},         {"generated", &x_generated},
    {"relation", &x_relation},     {"description", &n_any_string}, {NULL, NULL},
};
static const char *const x_column_required[] = {"name", "type", "required", "read_only", NULL};
static const sch_node_t x_column = {
    .types = T_OBJECT,
    .props = x_column_props,
    .required = x_column_required,
    .closed = true,
    .extra = column_extra,
};
static const sch_node_t x_columns = {.types = T_ARRAY, .min_items = 1, .items = &x_column};

static void metadata_extra(sch_ctx_t *c, const json_t *v)
{
    const json_t *system = json_object_get(v, "system");
    const char *s = json_is_string(system) ? json_string_value(system) : NULL;
    bool fo = !system || (s && strcmp(s, "fo") == 0);
    bool dv = !system || (s && strcmp(s, "dv") == 0);
    if (fo) {
        if (!json_object_get(v, "company_specific"))
            report(c, "required member \"company_specific\" is missing (system fo)");
        if (!json_object_get(v, "key"))
            report(c, "required member \"key\" is missing (system fo)");
        report_not_allowed(c, v, "id_column", "on system fo");
        report_not_allowed(c, v, "primary_name", "on system fo");
        report_not_allowed(c, v, "ownership", "on system fo");
        report_not_allowed(c, v, "alternate_keys", "on system fo");
    }
    if (dv) {
        if (!json_object_get(v, "id_column"))
            report(c, "required member \"id_column\" is missing (system dv)");
        if (!json_object_get(v, "alternate_keys"))
            report(c, "required member \"alternate_keys\" is missing (system dv)");
        if (!json_object_get(v, "ownership"))
            report(c, "required member \"ownership\" is missing (system dv)");
        report_not_allowed(c, v, "company_specific", "on system dv");
        report_not_allowed(c, v, "key", "on system dv");
    }
}

static const sch_prop_t x_root_props[] = {
    {"$schema", &n_any_string},
    {"system", &x_system},
    {"name", &n_identifier},
    {"entity_set", &n_identifier},
    {"description", &n_any_string},
    {"source", &n_any_string},
    {"company_specific", &n_boolean},
    {"key", &x_idents_unique},
    {"id_column", &n_identifier},
    {"primary_name", &n_identifier},
    {"ownership", &x_ownership},
    {"alternate_keys", &x_akeys},
    {"enums", &x_enums},
    {"columns", &x_columns},
    {NULL, NULL},
};
static const char *const x_root_required[] = {"system", "name", "entity_set", "columns", NULL};
static const sch_node_t x_root = {
    .types = T_OBJECT,
    .props = x_root_props,
    .required = x_root_required,
    .closed = true,
    .extra = metadata_extra,
};

/* ---- entry points ------------------------------------------------------------------------ */

static size_t run(const sch_node_t *root, const json_t *doc, dw_mapschema_cb *cb, void *opaque)
{
    sch_ctx_t c = {.cb = cb, .opaque = opaque};
    ptr_append(&c, "", 0);
    check_node(&c, root, doc);
    free(c.ptr);
    return c.count;
}

size_t dw_mapschema_check_map(const json_t *doc, dw_mapschema_cb *cb, void *opaque)
{
    return run(&m_root, doc, cb, opaque);
}

size_t dw_mapschema_check_metadata(const json_t *doc, dw_mapschema_cb *cb, void *opaque)
{
    return run(&x_root, doc, cb, opaque);
}
