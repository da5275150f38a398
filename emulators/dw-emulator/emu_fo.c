/*
 * emu_fo: the F&O OData emulator. Behaviour follows Microsoft Learn:
 *   "Open Data Protocol (OData)" (finance and operations: /data/<PublicCollectionName>, full-key
 *     addressing, cross-company=true, $filter $select $top $skip $orderby $count, enum literals
 *     Microsoft.Dynamics.DataEntities.NoYes'Yes', server-driven paging of 10,000 rows),
 *   "Data events" (create/update/delete events sent only when the transaction commits),
 *   OData v4 JSON/CSDL conventions (201 + Location on create, 204 on update/delete, enums as
 *     member names).
 * Errors use F&O's body shape {"error":{"code":"","message":...,"innererror":{...}}}.
 * Rows go in and out of PostgreSQL through jsonb_populate_record / to_jsonb (collection pages
 * without $filter: each column as text, written straight into the page, fo_page_text): no value
 * ever enters SQL text; identifiers come from the metadata and are quoted.
 */
#include "emu_fo.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dw_buf.h"
#include "dw_filter.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_pg.h"
#include "emu_batch.h"
#include "emu_ctx.h"
#include "emu_fo_events.h"
#include "emu_fo_store.h"
#include "emu_odata.h"
#include "emu_service.h"

#define FO_SQL_MAX 16384
#define FO_CHUNK   1000

#define FO_T_WRITE   "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
#define FO_T_ODATA   "Microsoft.OData.ODataException"
#define FO_T_URI     "Microsoft.OData.UriParser.ODataUnrecognizedPathException"
#define FO_T_CONTENT "Microsoft.OData.ODataContentTypeException"
#define FO_T_NOTIMPL "System.NotImplementedException"
#define FO_T_DB      "System.Data.SqlClient.SqlException"

typedef struct {
    emu_ctx_t *ctx;
    emu_req_t *req;
    emu_resp_t *resp;
    dw_pg_t *pg;
    emu_table_t *t;
    bool cross;
} fo_t;

typedef struct {
    const char *cols[EMU_ODATA_MAX_KEYS];
    char vals[EMU_ODATA_MAX_KEYS][512]; /* storage form as text */
    size_t n;
} fo_key_t;

#define sqlf(buf, ...) emu_store_sqlcat(buf, FO_SQL_MAX, __VA_ARGS__)

void emu_fo_error(emu_resp_t *resp, unsigned status, const char *type, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emu_resp_json(resp, status,
                  json_pack("{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code", "", "message", msg,
                            "innererror", "message", msg, "type", type, "stacktrace", ""));
}

void emu_fo_throttled(emu_resp_t *resp)
{
    json_t *old = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *detail =
        json_string_value(json_object_get(json_object_get(old, "error"), "message"));
    json_t *j = json_pack(
        "{s:{s:s,s:s,s:{s:s,s:s,s:s}}}", "error", "code", "", "message", "Too many requests",
        "innererror", "message", detail ? detail : "Too many requests", "type",
        "Microsoft.Dynamics.Ax.Services.ServiceProtectionException", "stacktrace", "");
    json_decref(old);
    emu_resp_json(resp, 429, j);
}

int emu_fo_prefer_maxpagesize(const char *prefer)
{
    if (!prefer)
        return 0;
    const char *p = strstr(prefer, "odata.maxpagesize=");
    if (!p)
        return 0;
    p += strlen("odata.maxpagesize=");
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v <= 0 || (*end && *end != ',' && *end != ';' && *end != ' '))
        return 0;
    return v > 1000000 ? 1000000 : (int)v;
}

int emu_fo_prefer_return(const char *prefer)
{
    if (!prefer)
        return 0;
    if (strstr(prefer, "return=minimal"))
        return -1;
    if (strstr(prefer, "return=representation"))
        return 1;
    return 0;
}

static void fo_pg_error(fo_t *d, dw_err_t err, const char *errstr)
{
    const char *state = d->pg ? dw_pg_last_sqlstate(d->pg) : "08006";
    if (err == DW_ERR_PG && strcmp(state, "23505") == 0)
        emu_fo_error(d->resp, 400, FO_T_WRITE,
                     "Write failed for table row of type '%s'. Infolog: Error: Cannot create a "
                     "record in %s. The record already exists.",
                     d->t ? d->t->name : "?", d->t ? d->t->entity_set : "?");
    else if (err == DW_ERR_PG && strncmp(state, "22", 2) == 0)
        emu_fo_error(
            d->resp, 400, FO_T_WRITE,
            "Write failed for table row of type '%s'. Infolog: Error: a value is out of range.",
            d->t ? d->t->name : "?");
    else if (err == DW_ERR_PG_CONN)
        emu_fo_error(d->resp, 503, FO_T_DB, "The database is unavailable.");
    else {
        DW_ERROR("fo", "database error: %s", errstr);
        emu_fo_error(d->resp, 500, FO_T_DB, "An error has occurred.");
    }
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static bool is_key_col(const emu_table_t *t, const char *name)
{
    json_t *key = json_object_get(t->meta, "key");
    for (size_t i = 0; i < json_array_size(key); i++)
        if (strcmp(json_string_value(json_array_get(key, i)), name) == 0)
            return true;
    return false;
}

static const char *edm_type(const emu_table_t *t, const emu_col_t *c, char *buf, size_t size)
{
    switch (c->type) {
    case EMU_T_STRING:
        return "Edm.String";
    case EMU_T_INTEGER:
        return "Edm.Int64";
    case EMU_T_DECIMAL:
        return "Edm.Decimal";
    case EMU_T_BOOLEAN:
        return "Edm.Boolean";
    case EMU_T_DATE:
        return "Edm.Date";
    case EMU_T_DATETIME:
        return "Edm.DateTimeOffset";
    case EMU_T_ENUM: {
        const char *en = emu_fo_col_enum(t, c);
        if (!en)
            return "Edm.Int32";
        snprintf(buf, size, EMU_FO_NS ".%s", en);
        return buf;
    }
    case EMU_T_GUID:
    case EMU_T_LOOKUP:
        return "Edm.Guid";
    }
    return "Edm.String";
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* Resolve a path key: every key column of t named once. Fills resp on error. */
static bool fo_key_from_path(fo_t *d, const emu_odata_path_t *p, fo_key_t *k)
{
    const emu_table_t *t = d->t;
    json_t *key = json_object_get(t->meta, "key");
    memset(k, 0, sizeof(*k));
    if (p->nkeys != json_array_size(key)) {
        emu_fo_error(d->resp, 400, FO_T_ODATA,
                     "The number of keys specified in the URI does not match number of key "
                     "properties for the resource '" EMU_FO_NS ".%s'.",
                     t->name);
        return false;
    }
    for (size_t i = 0; i < p->nkeys; i++) {
        const emu_odata_key_t *pk = &p->keys[i];
        emu_col_t *c = pk->name ? emu_table_col(t, pk->name) : NULL;
        if (!c || !is_key_col(t, c->name)) {
            emu_fo_error(
                d->resp, 400, FO_T_ODATA,
                "Bad Request - Error in query syntax: '%s' is not a key property of '" EMU_FO_NS
                ".%s'.",
                pk->name ? pk->name : "(unnamed)", t->name);
            return false;
        }
        bool ok = true;
        char *v = k->vals[k->n];
        size_t vs = sizeof(k->vals[0]);
        switch (c->type) {
        case EMU_T_STRING:
        case EMU_T_DATE:
        case EMU_T_DATETIME:
            ok = pk->quoted && strlen(pk->value) < vs;
            if (ok)
                snprintf(v, vs, "%s", pk->value);
            break;
        case EMU_T_ENUM: {
            long long ev = 0;
            ok = pk->quoted && emu_fo_enum_value(t, c, pk->value, &ev);
            snprintf(v, vs, "%lld", ev);
            break;
        }
        case EMU_T_INTEGER:
        case EMU_T_DECIMAL: {
            char *end = NULL;
            (void)strtod(pk->value, &end);
            ok = !pk->quoted && *pk->value && *end == '\0' && strlen(pk->value) < 64;
            if (ok)
                snprintf(v, vs, "%s", pk->value);
            break;
        }
        case EMU_T_BOOLEAN:
            ok = !pk->quoted && (strcmp(pk->value, "true") == 0 || strcmp(pk->value, "false") == 0);
            if (ok)
                snprintf(v, vs, "%s", pk->value);
            break;
        case EMU_T_GUID:
        case EMU_T_LOOKUP:
            ok = emu_odata_is_guid(pk->value);
            if (ok)
                snprintf(v, vs, "%s", pk->value);
            break;
        }
        if (!ok) {
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "Bad Request - Error in query syntax: the value of key property '%s' is "
                         "not a valid literal of its type.",
                         c->name);
            return false;
        }
        if (strcmp(c->name, "dataAreaId") == 0)
            lower(v);
        k->cols[k->n++] = c->name;
    }
    return true;
}

/* The company a key names, "" when the table is shared. */
static const char *fo_key_company(const fo_key_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->cols[i], "dataAreaId") == 0)
            return k->vals[i];
    return "";
}

static void fo_key_describe(const fo_key_t *k, char *out, size_t size)
{
    out[0] = '\0';
    for (size_t i = 0; i < k->n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, size > l ? size - l : 0, "%s%s='%s'", i ? "," : "", k->cols[i],
                 k->vals[i]);
    }
}

static void fo_not_found(fo_t *d, const fo_key_t *k)
{
    char kd[2048];
    fo_key_describe(k, kd, sizeof(kd));
    emu_fo_error(d->resp, 404, FO_T_ODATA, "No resource was found for %s(%s).", d->t->entity_set,
                 kd);
}

/* The key of a stored row (storage form), for the WHERE of update and delete. */
static void fo_key_of_row(const emu_table_t *t, json_t *row, fo_key_t *k)
{
    json_t *key = json_object_get(t->meta, "key");
    memset(k, 0, sizeof(*k));
    for (size_t i = 0; i < json_array_size(key) && i < EMU_ODATA_MAX_KEYS; i++) {
        const char *cn = json_string_value(json_array_get(key, i));
        json_t *v = json_object_get(row, cn);
        if (json_is_string(v))
            snprintf(k->vals[k->n], sizeof(k->vals[0]), "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(k->vals[k->n], sizeof(k->vals[0]), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(k->vals[k->n], sizeof(k->vals[0]), "%.17g", json_real_value(v));
        else if (json_is_boolean(v))
            snprintf(k->vals[k->n], sizeof(k->vals[0]), "%s", json_is_true(v) ? "true" : "false");
        k->cols[k->n++] = emu_table_col(t, cn)->name;
    }
}

static void fo_where(char *sql, const fo_key_t *k, const char *const **params, const char **pbuf,
                     int *np)
{
    for (size_t i = 0; i < k->n; i++) {
        pbuf[*np] = k->vals[i];
        (*np)++;
        sqlf(sql, "%sx.\"%s\" = $%d", i ? " AND " : " WHERE ", k->cols[i], *np);
    }
    *params = pbuf;
}

static dw_err_t fo_fetch(dw_pg_t *pg, const emu_table_t *t, const fo_key_t *k, bool lock,
                         json_t **row, char *errstr, size_t n)
{
    char sql[FO_SQL_MAX] = "";
    PGresult *res = NULL;
    const char *pbuf[EMU_ODATA_MAX_KEYS];
    const char *const *params = NULL;
    int np = 0;
    *row = NULL;
    sqlf(sql, "SELECT to_jsonb(x) FROM %s x", t->qname);
    fo_where(sql, k, &params, pbuf, &np);
    if (lock)
        sqlf(sql, " FOR UPDATE");
    dw_err_t err = dw_pg_exec(pg, sql, np, params, &res, errstr, n);
    if (!err && PQntuples(res) > 0) {
        *row = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        if (!*row)
            err = dw_errf(DW_ERR_INTERNAL, errstr, n, "bad row json");
    }
    PQclear(res);
    return err;
}

/* ---- relations ------------------------------------------------------------------------------- */

/* s, or def when s is NULL. */
static const char *str_or(const char *s, const char *def)
{
    return s ? s : def;
}

/* Every relation of the metadata names an entity with a key (checked once, at start). */
static dw_err_t fo_relations_check_meta(emu_store_t *st, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < emu_store_ntables(st); i++) {
        const emu_table_t *t = emu_store_table_at(st, i);
        for (size_t j = 0; j < t->ncols; j++) {
            json_t *rel = emu_table_relation(t, t->cols[j].name);
            const emu_col_t *kc;
            if (rel && !emu_store_relation_target(st, rel, &kc))
                return dw_errf(DW_ERR_CONFIG, errstr, errstr_size,
                               "metadata %s.%s: relation names entity \"%s\", which is not loaded "
                               "or has no key",
                               t->name, t->cols[j].name,
                               str_or(json_string_value(json_object_get(rel, "entity")), "?"));
        }
    }
    return DW_OK;
}

/* F&O validates the fields a write sets against their table relations: a value naming no record
 * of the related table (in the row's company when that table is company-specific) fails the
 * write. set: the columns the request sets (storage form); row: the row's dataAreaId. Empty
 * values name nothing (F&O leaves an empty foreign key alone; "must be filled in" is checked by
 * fo_in). Fills the response and returns false on a failure. */
static bool fo_check_relations(fo_t *d, json_t *set, json_t *row)
{
    const emu_table_t *t = d->t;
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        json_t *v = json_object_get(set, c->name), *rel;
        if (c->dropped || !json_is_string(v) || !*json_string_value(v) ||
            !(rel = emu_table_relation(t, c->name)))
            continue;
        const emu_col_t *kc;
        const emu_table_t *rt = emu_store_relation_target(d->ctx->store, rel, &kc);
        if (!rt)
            continue; /* refused at start (fo_relations_check_meta) */
        fo_key_t k = {.n = 0};
        if (emu_fo_company_specific(rt)) {
            k.cols[k.n] = "dataAreaId";
            snprintf(k.vals[k.n++], sizeof(k.vals[0]), "%s",
                     str_or(json_string_value(json_object_get(row, "dataAreaId")), ""));
        }
        k.cols[k.n] = kc->name;
        snprintf(k.vals[k.n++], sizeof(k.vals[0]), "%s", json_string_value(v));
        json_t *found = NULL;
        char errstr[512];
        dw_err_t err = fo_fetch(d->pg, rt, &k, false, &found, errstr, sizeof(errstr));
        json_decref(found);
        if (err) {
            fo_pg_error(d, err, errstr);
            return false;
        }
        if (!found) {
            emu_fo_error(
                d->resp, 400, FO_T_WRITE,
                "Write failed for table row of type '%s'. Infolog: Error: The value '%.100s' "
                "in field '%s' is not found in the related table '%s'.",
                t->name, json_string_value(v),
                str_or(json_string_value(json_object_get(rel, "label")), c->name),
                str_or(json_string_value(json_object_get(rel, "table_label")), rt->name));
            return false;
        }
    }
    return true;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void fo_entity_url(const fo_t *d, json_t *row, char *out, size_t size)
{
    fo_key_t k;
    fo_key_of_row(d->t, row, &k);
    snprintf(out, size, "%s%s(", d->ctx->base_url, d->t->entity_set);
    for (size_t i = 0; i < k.n; i++) {
        const emu_col_t *c = emu_table_col(d->t, k.cols[i]);
        char lit[1100];
        if (c->type == EMU_T_STRING || c->type == EMU_T_DATE || c->type == EMU_T_DATETIME)
            emu_odata_quote(k.vals[i], lit, sizeof(lit));
        else if (c->type == EMU_T_ENUM) {
            const char *m = emu_fo_enum_member(d->t, c, strtoll(k.vals[i], NULL, 10));
            emu_odata_quote(m ? m : k.vals[i], lit, sizeof(lit));
        } else
            snprintf(lit, sizeof(lit), "%s", k.vals[i]);
        size_t l = strlen(out);
        snprintf(out + l, size > l ? size - l : 0, "%s%s=", i ? "," : "", k.cols[i]);
        emu_odata_url_encode(out, size, lit);
    }
    strncat(out, ")", size - strlen(out) - 1);
}

/* Output form with @odata.etag, restricted to $select (q NULL: all). */
static json_t *fo_out(const emu_table_t *t, json_t *db, const emu_odata_query_t *q)
{
    json_t *all = emu_fo_row_out(t, db, false), *o = json_object();
    char etag[48];
    snprintf(etag, sizeof(etag), "W/\"%lld\"", emu_fo_row_version(db));
    json_object_set_new(o, "@odata.etag", json_string(etag));
    if (!q || !q->nselect) {
        json_object_update(o, all);
    } else {
        for (size_t i = 0; i < q->nselect; i++) {
            json_t *v = json_object_get(all, q->select[i]);
            if (v)
                json_object_set(o, q->select[i], v);
        }
    }
    json_decref(all);
    return o;
}

static bool fo_col_ok(const emu_table_t *t, const char *name)
{
    const emu_col_t *c = emu_table_col(t, name);
    return c && !c->dropped;
}

static bool fo_check_query_cols(fo_t *d, const emu_odata_query_t *q)
{
    for (size_t i = 0; i < q->nselect + q->norderby; i++) {
        const char *n = i < q->nselect ? q->select[i] : q->orderby[i - q->nselect].col;
        if (!fo_col_ok(d->t, n)) {
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "Could not find a property named '%s' on type '" EMU_FO_NS ".%s'.", n,
                         d->t->name);
            return false;
        }
    }
    return true;
}

/* ---- input validation ------------------------------------------------------------------------ */

/* Convert a request body (borrowed) into storage form in store. */
static bool fo_in(fo_t *d, json_t *body, bool create, json_t *store)
{
    const char *name;
    json_t *v;
    const emu_table_t *t = d->t;
    json_object_foreach(body, name, v)
    {
        if (strchr(name, '@'))
            continue; /* annotations: @odata.etag, @odata.type, ... */
        emu_col_t *c = emu_table_col(t, name);
        if (!c || c->dropped) {
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "The property '%.200s' does not exist on type '" EMU_FO_NS
                         ".%s'. Make sure to only use property names that are defined by the type.",
                         name, t->name);
            return false;
        }
        if (c->read_only) {
            emu_fo_error(d->resp, 400, FO_T_WRITE,
                         "Write failed for table row of type '%s'. Infolog: Error: Field '%s' is "
                         "read-only and cannot be %s.",
                         t->name, c->name, create ? "set" : "changed");
            return false;
        }
        if (json_is_null(v)) {
            if (c->required) {
                emu_fo_error(d->resp, 400, FO_T_WRITE,
                             "Write failed for table row of type '%s'. Infolog: Error: Field '%s' "
                             "must be filled in.",
                             t->name, c->name);
                return false;
            }
            json_object_set(store, c->name, v);
            continue;
        }
        bool ok = true;
        json_t *conv = NULL;
        switch (c->type) {
        case EMU_T_STRING:
            ok = json_is_string(v);
            if (ok && c->max_length > 0 &&
                emu_odata_utf8_len(json_string_value(v)) > (size_t)c->max_length) {
                emu_fo_error(d->resp, 400, FO_T_WRITE,
                             "Write failed for table row of type '%s'. Infolog: Error: The value "
                             "of field '%s' is longer than its maximum length of %lld characters.",
                             t->name, c->name, c->max_length);
                return false;
            }
            if (ok && c->required && !*json_string_value(v)) {
                emu_fo_error(d->resp, 400, FO_T_WRITE,
                             "Write failed for table row of type '%s'. Infolog: Error: Field '%s' "
                             "must be filled in.",
                             t->name, c->name);
                return false;
            }
            if (ok && strcmp(c->name, "dataAreaId") == 0) {
                char buf[64];
                snprintf(buf, sizeof(buf), "%s", json_string_value(v));
                lower(buf);
                conv = json_string(buf);
            }
            break;
        case EMU_T_INTEGER:
            ok = json_is_integer(v);
            break;
        case EMU_T_DECIMAL: /* a number, or its string form (IEEE754Compatible=true) */
            ok = json_is_number(v) ||
                 (json_is_string(v) && emu_odata_decimal_ok(json_string_value(v)));
            break;
        case EMU_T_BOOLEAN:
            ok = json_is_boolean(v);
            break;
        case EMU_T_DATE:
        case EMU_T_DATETIME:
            ok = json_is_string(v) &&
                 emu_odata_datetime_ok(json_string_value(v), c->type == EMU_T_DATE);
            break;
        case EMU_T_GUID:
        case EMU_T_LOOKUP:
            ok = json_is_string(v) && emu_odata_is_guid(json_string_value(v));
            break;
        case EMU_T_ENUM: {
            long long ev = 0;
            const char *en = emu_fo_col_enum(t, c);
            if (!json_is_string(v) || !emu_fo_enum_value(t, c, json_string_value(v), &ev)) {
                char *text = dw_mapper_dumps(v, 0, NULL);
                emu_fo_error(
                    d->resp, 400, FO_T_ODATA,
                    "The value %.100s of property '%s' is not a member of enum type '" EMU_FO_NS
                    ".%s'.",
                    text ? text : "?", c->name, en ? en : "?");
                free(text);
                return false;
            }
            conv = json_integer(ev);
            break;
        }
        }
        if (!ok) {
            char *text = dw_mapper_dumps(v, 0, NULL);
            char tb[200];
            emu_fo_error(
                d->resp, 400, FO_T_ODATA,
                "Cannot convert the literal '%.100s' to the expected type '%s' of property '%s'.",
                text ? text : "?", edm_type(t, c, tb, sizeof(tb)), c->name);
            free(text);
            return false;
        }
        if (conv)
            json_object_set_new(store, c->name, conv);
        else
            json_object_set(store, c->name, v);
    }
    return true;
}

/* Defaults, generated values (company, number sequences) and required columns of a new row. */
static bool fo_complete_create(fo_t *d, json_t *store)
{
    const emu_table_t *t = d->t;
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped)
            continue;
        json_t *v = json_object_get(store, c->name);
        if (v && !json_is_null(v))
            continue;
        if (c->generated && strcmp(c->generated, "company") == 0 && !v) {
            json_object_set_new(store, c->name, json_string(d->ctx->fo_company));
        } else if (c->generated && strcmp(c->generated, "autonumber") == 0 && !v) {
            char sql[300], errstr[256];
            PGresult *res = NULL;
            snprintf(sql, sizeof(sql), "SELECT nextval('\"%s\".\"_version_seq\"')",
                     emu_store_schema(d->ctx->store));
            dw_err_t err = dw_pg_exec(d->pg, sql, 0, NULL, &res, errstr, sizeof(errstr));
            if (err) {
                fo_pg_error(d, err, errstr);
                return false;
            }
            char num[48];
            snprintf(num, sizeof(num), "%09lld", strtoll(PQgetvalue(res, 0, 0), NULL, 10));
            PQclear(res);
            json_object_set_new(store, c->name, json_string(num));
        } else if (c->defval && !v) {
            if (c->type == EMU_T_ENUM && json_is_string(c->defval)) {
                long long ev = 0;
                if (emu_fo_enum_value(t, c, json_string_value(c->defval), &ev))
                    json_object_set_new(store, c->name, json_integer(ev));
            } else {
                json_object_set(store, c->name, c->defval);
            }
        } else if (c->required) {
            emu_fo_error(d->resp, 400, FO_T_WRITE,
                         "Write failed for table row of type '%s'. Infolog: Error: Field '%s' must "
                         "be filled in.",
                         t->name, c->name);
            return false;
        }
    }
    return true;
}

/* ---- writes ---------------------------------------------------------------------------------- */

static json_t *fo_parse_body(fo_t *d)
{
    const char *ct = emu_req_header(d->req, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        emu_fo_error(d->resp, 415, FO_T_CONTENT,
                     "The content type '%.200s' is not supported; use application/json.", ct);
        return NULL;
    }
    json_error_t je;
    json_t *body = json_loadb(d->req->body, d->req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body || !json_is_object(body)) {
        if (body)
            emu_fo_error(d->resp, 400, FO_T_ODATA, "The request body is not a JSON object.");
        else
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "The request body is not valid JSON (line %d, column %d): %s", je.line,
                         je.column, je.text);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Writes run in their own transaction, or inside a $batch change set's (req->txn), which the
 * batch executor begins, commits (then wakes the event delivery) and rolls back: the events of a
 * change set are in its transaction like its changes. */
static bool fo_begin(fo_t *d)
{
    char errstr[512];
    if (d->req->txn)
        return true;
    dw_err_t err = emu_store_begin_write(d->ctx->store, d->pg, errstr, sizeof(errstr));
    if (err)
        fo_pg_error(d, err, errstr);
    return !err;
}

static const char *fo_correlation(const fo_t *d)
{
    return emu_req_header(d->req, "x-ms-correlation-request-id");
}

static bool fo_etag_ok(fo_t *d, json_t *existing)
{
    const char *im = emu_req_header(d->req, "If-Match");
    if (!im || strcmp(im, "*") == 0)
        return true;
    char cur[48];
    snprintf(cur, sizeof(cur), "W/\"%lld\"", emu_fo_row_version(existing));
    if (strcmp(im, cur) == 0 || strcmp(im, cur + 2) == 0)
        return true;
    emu_fo_error(d->resp, 412, FO_T_WRITE,
                 "The record was changed by another user: the ETag in If-Match does not match the "
                 "current version.");
    return false;
}

/* Commit; then wake the event delivery. */
static bool fo_commit(fo_t *d)
{
    char errstr[512];
    if (d->req->txn)
        return true;
    dw_err_t err = dw_pg_commit(d->pg, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        return false;
    }
    emu_fo_events_notify(d->ctx->fo_events);
    return true;
}

static void fo_rollback(fo_t *d)
{
    if (!d->req->txn)
        dw_pg_rollback(d->pg, NULL, 0);
}

static bool fo_record(fo_t *d, const char *message, json_t *after, json_t *before)
{
    char errstr[512];
    dw_err_t err = emu_fo_events_record(d->ctx->fo_events, d->pg, d->t, message, after, before,
                                        fo_correlation(d), errstr, sizeof(errstr));
    if (err)
        fo_pg_error(d, err, errstr);
    return !err;
}

static void fo_send_row(fo_t *d, unsigned status, json_t *row)
{
    char ctxs[1024], url[4096], etag[48];
    emu_service_context(d->ctx, d->t, NULL, "/$entity", ctxs, sizeof(ctxs));
    json_t *full = json_pack("{s:s}", "@odata.context", ctxs), *o = fo_out(d->t, row, NULL);
    json_object_update(full, o);
    json_decref(o);
    snprintf(etag, sizeof(etag), "W/\"%lld\"", emu_fo_row_version(row));
    fo_entity_url(d, row, url, sizeof(url));
    emu_resp_json(d->resp, status, full);
    emu_resp_header(d->resp, "ETag", etag);
    if (status == 201)
        emu_resp_header(d->resp, "Location", url);
}

static void fo_create(fo_t *d)
{
    char errstr[512], sql[FO_SQL_MAX] = "";
    json_t *body = fo_parse_body(d), *store = json_object(), *row = NULL;
    PGresult *res = NULL;
    if (!body)
        goto out;
    if (!fo_in(d, body, true, store))
        goto out;
    if (emu_faults_take_write(d->ctx->faults, d->req, d->resp) || !fo_begin(d))
        goto out;
    if (!fo_complete_create(d, store) || !fo_check_relations(d, store, store))
        goto rollback;
    sqlf(sql,
         "INSERT INTO %s AS x SELECT * FROM jsonb_populate_record(NULL::%s, $1::jsonb) RETURNING "
         "to_jsonb(x)",
         d->t->qname, d->t->qname);
    char *text = dw_mapper_dumps(store, 0, NULL);
    const char *p[1] = {text};
    dw_err_t err = text ? dw_pg_exec(d->pg, sql, 1, p, &res, errstr, sizeof(errstr)) : DW_ERR_NOMEM;
    free(text);
    if (err) {
        fo_pg_error(d, err, errstr);
        goto rollback;
    }
    row = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!row || !fo_record(d, "Create", row, NULL) || !fo_commit(d))
        goto rollback;
    if (emu_fo_prefer_return(emu_req_header(d->req, "Prefer")) < 0) {
        char url[4096];
        fo_entity_url(d, row, url, sizeof(url));
        emu_resp_raw(d->resp, 204, "application/json", "", 0);
        emu_resp_header(d->resp, "Location", url);
        emu_resp_header(d->resp, "OData-EntityId", url);
        emu_resp_header(d->resp, "Preference-Applied", "return=minimal");
    } else {
        fo_send_row(d, 201, row);
    }
    goto out;
rollback:
    if (d->resp->status == 0)
        emu_fo_error(d->resp, 500, FO_T_DB, "An error has occurred.");
    fo_rollback(d);
out:
    PQclear(res);
    json_decref(row);
    json_decref(store);
    json_decref(body);
}

static void fo_update(fo_t *d, const fo_key_t *k)
{
    char errstr[512], sql[FO_SQL_MAX] = "";
    json_t *body = fo_parse_body(d), *store = json_object(), *existing = NULL, *row = NULL;
    PGresult *res = NULL;
    if (!body)
        goto out;
    if (!fo_in(d, body, false, store))
        goto out;
    for (size_t i = 0; i < k->n; i++) {
        json_t *v = json_object_get(store, k->cols[i]);
        if (!v)
            continue;
        bool same = false;
        if (json_is_string(v))
            same = strcmp(json_string_value(v), k->vals[i]) == 0;
        else if (json_is_integer(v))
            same = json_integer_value(v) == strtoll(k->vals[i], NULL, 10);
        if (!same) {
            emu_fo_error(d->resp, 400, FO_T_WRITE,
                         "Write failed for table row of type '%s'. Infolog: Error: The key field "
                         "'%s' cannot be changed.",
                         d->t->name, k->cols[i]);
            goto out;
        }
    }
    if (emu_faults_take_write(d->ctx->faults, d->req, d->resp) || !fo_begin(d))
        goto out;
    dw_err_t err = fo_fetch(d->pg, d->t, k, true, &existing, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        goto rollback;
    }
    if (!existing) {
        fo_not_found(d, k);
        goto rollback;
    }
    if (!fo_etag_ok(d, existing) || !fo_check_relations(d, store, existing))
        goto rollback;
    json_t *full = json_deep_copy(existing);
    json_object_update(full, store);
    char cols[FO_SQL_MAX / 2] = "", rcols[FO_SQL_MAX / 2] = "";
    for (size_t i = 0; i < d->t->ncols; i++) {
        const emu_col_t *c = &d->t->cols[i];
        if (c->dropped)
            continue;
        size_t l = strlen(cols), rl = strlen(rcols);
        snprintf(cols + l, sizeof(cols) - l, "%s\"%s\"", l ? ", " : "", c->name);
        snprintf(rcols + rl, sizeof(rcols) - rl, "%sr.\"%s\"", rl ? ", " : "", c->name);
    }
    sqlf(sql,
         "UPDATE %s AS x SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1::jsonb) r)",
         d->t->qname, cols, rcols, d->t->qname);
    const char *pbuf[EMU_ODATA_MAX_KEYS + 1];
    const char *const *params = NULL;
    char *text = dw_mapper_dumps(full, 0, NULL);
    json_decref(full);
    pbuf[0] = text;
    int np = 1;
    fo_where(sql, k, &params, pbuf, &np);
    sqlf(sql, " RETURNING to_jsonb(x)");
    err = text ? dw_pg_exec(d->pg, sql, np, params, &res, errstr, sizeof(errstr)) : DW_ERR_NOMEM;
    free(text);
    if (err) {
        fo_pg_error(d, err, errstr);
        goto rollback;
    }
    row = PQntuples(res) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (!row || !fo_record(d, "Update", row, existing) || !fo_commit(d))
        goto rollback;
    if (emu_fo_prefer_return(emu_req_header(d->req, "Prefer")) > 0) {
        fo_send_row(d, 200, row);
        emu_resp_header(d->resp, "Preference-Applied", "return=representation");
    } else {
        char etag[48];
        snprintf(etag, sizeof(etag), "W/\"%lld\"", emu_fo_row_version(row));
        emu_resp_raw(d->resp, 204, "application/json", "", 0);
        emu_resp_header(d->resp, "ETag", etag);
    }
    goto out;
rollback:
    if (d->resp->status == 0)
        emu_fo_error(d->resp, 500, FO_T_DB, "An error has occurred.");
    fo_rollback(d);
out:
    PQclear(res);
    json_decref(row);
    json_decref(existing);
    json_decref(store);
    json_decref(body);
}

static void fo_delete(fo_t *d, const fo_key_t *k)
{
    char errstr[512], sql[FO_SQL_MAX] = "";
    json_t *existing = NULL;
    if (emu_faults_take_write(d->ctx->faults, d->req, d->resp) || !fo_begin(d))
        return;
    dw_err_t err = fo_fetch(d->pg, d->t, k, true, &existing, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        goto rollback;
    }
    if (!existing) {
        fo_not_found(d, k);
        goto rollback;
    }
    if (!fo_etag_ok(d, existing))
        goto rollback;
    sqlf(sql, "DELETE FROM %s x", d->t->qname);
    const char *pbuf[EMU_ODATA_MAX_KEYS];
    const char *const *params = NULL;
    int np = 0;
    fo_where(sql, k, &params, pbuf, &np);
    err = dw_pg_exec(d->pg, sql, np, params, NULL, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        goto rollback;
    }
    if (!fo_record(d, "Delete", NULL, existing) || !fo_commit(d))
        goto rollback;
    emu_resp_raw(d->resp, 204, "application/json", "", 0);
    json_decref(existing);
    return;
rollback:
    if (d->resp->status == 0)
        emu_fo_error(d->resp, 500, FO_T_DB, "An error has occurred.");
    fo_rollback(d);
    json_decref(existing);
}

/* ---- reads ----------------------------------------------------------------------------------- */

static void fo_get_one(fo_t *d, const fo_key_t *k, const emu_odata_query_t *q)
{
    char errstr[512], ctxs[1024], etag[48];
    json_t *row = NULL;
    if (!fo_check_query_cols(d, q))
        return;
    dw_err_t err = fo_fetch(d->pg, d->t, k, false, &row, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        return;
    }
    if (!row) {
        fo_not_found(d, k);
        return;
    }
    emu_service_context(d->ctx, d->t, q, "/$entity", ctxs, sizeof(ctxs));
    json_t *full = json_pack("{s:s}", "@odata.context", ctxs), *o = fo_out(d->t, row, q);
    json_object_update(full, o);
    json_decref(o);
    snprintf(etag, sizeof(etag), "W/\"%lld\"", emu_fo_row_version(row));
    emu_resp_json(d->resp, 200, full);
    emu_resp_header(d->resp, "ETag", etag);
    json_decref(row);
}

/* Compile and check $filter against the table: columns and enum literals. NULL + resp on error. */
static bool fo_filter(fo_t *d, const char *text, dw_filter_t **out)
{
    char errstr[512];
    *out = NULL;
    if (!text)
        return true;
    dw_filter_t *f = dw_filter_compile(text, errstr, sizeof(errstr));
    if (!f) {
        emu_fo_error(d->resp, 400, FO_T_ODATA, "Syntax error in $filter: %s", errstr);
        return false;
    }
    const char *cols[64];
    size_t nc = dw_filter_columns(f, cols, 64);
    for (size_t i = 0; i < nc && i < 64; i++) {
        if (!fo_col_ok(d->t, cols[i])) {
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "Could not find a property named '%s' on type '" EMU_FO_NS ".%s'.",
                         cols[i], d->t->name);
            dw_filter_destroy(f);
            return false;
        }
    }
    dw_filter_enum_t en[32];
    size_t ne = dw_filter_enums(f, en, 32);
    for (size_t i = 0; i < ne && i < 32; i++) {
        const emu_col_t *c = en[i].column ? emu_table_col(d->t, en[i].column) : NULL;
        const char *et = c ? emu_fo_col_enum(d->t, c) : NULL;
        char want[200];
        long long v;
        snprintf(want, sizeof(want), EMU_FO_NS ".%s", et ? et : "");
        if (!c || !et || strcmp(en[i].type, want) != 0 ||
            !emu_fo_enum_value(d->t, c, en[i].member, &v)) {
            emu_fo_error(d->resp, 400, FO_T_ODATA,
                         "The enum literal %s'%s' is not valid for property '%s'.", en[i].type,
                         en[i].member, en[i].column ? en[i].column : "?");
            dw_filter_destroy(f);
            return false;
        }
    }
    *out = f;
    return true;
}

/* Server-driven paging is keyset paging: without $orderby the rows come in key order (the primary
 * key's index) and the nextLink carries an opaque $skiptoken, "k" + hex of the JSON array of the
 * page's last key, so each page is an index range scan whatever its depth (OFFSET made a run over
 * n rows O(n^2)). With $orderby the nextLink carries $skip (and the remaining $top) as before. */
#define FO_TOKEN_MAX 2048

/* The key values of row (a to_jsonb row), new array; NULL when a key column is missing. */
static json_t *fo_row_keyvals(const emu_table_t *t, json_t *row)
{
    json_t *key = json_object_get(t->meta, "key"), *a = json_array();
    if (!json_array_size(key)) {
        json_decref(a);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(key); i++) {
        json_t *v = json_object_get(row, json_string_value(json_array_get(key, i)));
        if (!v || json_is_null(v) || json_is_object(v) || json_is_array(v)) {
            json_decref(a);
            return NULL;
        }
        json_array_append(a, v);
    }
    return a;
}

/* "k" + hex(JSON of keyvals) into out; false when it does not fit. */
static bool fo_token_encode(json_t *keyvals, char *out, size_t size)
{
    char *text = dw_mapper_dumps(keyvals, 0, NULL);
    bool ok = text && 1 + 2 * strlen(text) + 1 <= size;
    if (ok) {
        out[0] = 'k';
        for (size_t i = 0; text[i]; i++)
            snprintf(out + 1 + 2 * i, 3, "%02x", (unsigned char)text[i]);
    }
    free(text);
    return ok;
}

/* The key values in a $skiptoken (new array), or NULL when it is not one of ours for t. */
static json_t *fo_token_decode(const emu_table_t *t, const char *token)
{
    size_t l = strlen(token);
    if (l < 3 || token[0] != 'k' || (l - 1) % 2 || l > FO_TOKEN_MAX)
        return NULL;
    char text[FO_TOKEN_MAX / 2 + 1];
    size_t n = 0;
    for (size_t i = 1; i < l; i += 2) {
        unsigned v;
        if (!strchr("0123456789abcdef", token[i]) || !strchr("0123456789abcdef", token[i + 1]) ||
            sscanf(token + i, "%2x", &v) != 1 || v == 0)
            return NULL;
        text[n++] = (char)v;
    }
    text[n] = '\0';
    json_t *a = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    size_t nk = json_array_size(json_object_get(t->meta, "key"));
    bool ok = nk > 0 && json_is_array(a) && json_array_size(a) == nk;
    for (size_t i = 0; ok && i < nk; i++) {
        json_t *v = json_array_get(a, i);
        ok = json_is_string(v) || json_is_integer(v) || json_is_real(v) || json_is_boolean(v);
    }
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* A key value as the text of a query parameter (PostgreSQL casts it to the column's type). */
static void fo_keyval_text(json_t *v, char *out, size_t size)
{
    if (json_is_string(v))
        snprintf(out, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, size, "%.17g", json_real_value(v));
    else
        snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
}

/* nextLink: the request's own options with $skip / $top / $skiptoken replaced by skiptoken (when
 * not NULL) or skip, and the remaining top (when >= 0). */
static void fo_next_link(fo_t *d, const char *skiptoken, long long skip, long long top, char *out,
                         size_t size)
{
    snprintf(out, size, "%s%s?", d->ctx->base_url, d->t->entity_set);
    for (size_t i = 0; i < d->req->nargs; i++) {
        if (strcmp(d->req->arg_names[i], "$skip") == 0 ||
            strcmp(d->req->arg_names[i], "$top") == 0 ||
            strcmp(d->req->arg_names[i], "$skiptoken") == 0)
            continue;
        emu_odata_url_encode(out, size, d->req->arg_names[i]);
        strncat(out, "=", size - strlen(out) - 1);
        emu_odata_url_encode(out, size, d->req->arg_values[i]);
        strncat(out, "&", size - strlen(out) - 1);
    }
    char tail[64];
    if (top >= 0) {
        snprintf(tail, sizeof(tail), "$top=%lld&", top);
        strncat(out, tail, size - strlen(out) - 1);
    }
    if (skiptoken) {
        strncat(out, "$skiptoken=", size - strlen(out) - 1);
        strncat(out, skiptoken, size - strlen(out) - 1);
    } else {
        snprintf(tail, sizeof(tail), "$skip=%lld", skip);
        strncat(out, tail, size - strlen(out) - 1);
    }
}

/* Scan matching rows in key order (after $orderby); call back for each (output form + row).
 * sql_offset rows are skipped in SQL first. after (borrowed, or NULL): key values from a
 * $skiptoken, only rows after that key. Without $orderby the scan walks the primary key in
 * chunks, each starting after the last key of the one before (keyset); with $orderby it pages
 * with OFFSET. Returns false with resp filled on a database error. */
typedef bool(fo_row_cb)(void *opaque, json_t *db);

static bool fo_scan(fo_t *d, const emu_odata_query_t *q, const dw_filter_t *f, long long sql_offset,
                    json_t *after, fo_row_cb *cb, void *opaque)
{
    char errstr[512];
    bool company = emu_fo_company_specific(d->t) && !d->cross;
    json_t *key = json_object_get(d->t->meta, "key");
    size_t nk = json_array_size(key);
    bool keyset = (!q || q->norderby == 0) && nk > 0;
    json_t *last = after ? json_incref(after) : NULL;
    long long offset = sql_offset;
    bool ok = true;
    enum { FO_MAXK = 16 };
    char kbuf[FO_MAXK][512];
    if (nk > FO_MAXK) {
        emu_fo_error(d->resp, 500, FO_T_ODATA, "Too many key fields on '%s'.", d->t->name);
        return false;
    }
    for (bool more = true; more;) {
        char sql[FO_SQL_MAX] = "", lim[32], off[32];
        const char *p[3 + FO_MAXK] = {lim, off, d->ctx->fo_company};
        int np = company ? 3 : 2;
        sqlf(sql, "SELECT to_jsonb(x) FROM %s x WHERE true", d->t->qname);
        if (company)
            sqlf(sql, " AND x.\"dataAreaId\" = $3");
        if (keyset && last) {
            sqlf(sql, " AND (");
            for (size_t i = 0; i < nk; i++)
                sqlf(sql, "%sx.\"%s\"", i ? ", " : "", json_string_value(json_array_get(key, i)));
            sqlf(sql, ") > (");
            for (size_t i = 0; i < nk; i++) {
                fo_keyval_text(json_array_get(last, i), kbuf[i], sizeof(kbuf[i]));
                p[np++] = kbuf[i];
                sqlf(sql, "%s$%d", i ? ", " : "", np);
            }
            sqlf(sql, ")");
        }
        sqlf(sql, " ORDER BY ");
        for (size_t i = 0; q && i < q->norderby; i++)
            sqlf(sql, "x.\"%s\" %s, ", q->orderby[i].col,
                 q->orderby[i].desc ? "DESC NULLS LAST" : "ASC NULLS FIRST");
        for (size_t i = 0; i < nk; i++)
            sqlf(sql, "%sx.\"%s\"", i ? ", " : "", json_string_value(json_array_get(key, i)));
        sqlf(sql, " LIMIT $1 OFFSET $2");
        PGresult *res = NULL;
        snprintf(lim, sizeof(lim), "%d", FO_CHUNK);
        snprintf(off, sizeof(off), "%lld", offset);
        dw_err_t err = dw_pg_exec(d->pg, sql, np, p, &res, errstr, sizeof(errstr));
        if (err) {
            fo_pg_error(d, err, errstr);
            ok = false;
            break;
        }
        int nt = PQntuples(res);
        more = nt == FO_CHUNK;
        for (int i = 0; i < nt; i++) {
            json_t *row = json_loads(PQgetvalue(res, i, 0), 0, NULL);
            bool go = true;
            if (row) {
                json_t *o = f ? emu_fo_row_out(d->t, row, false) : NULL;
                if (!f || dw_filter_match(f, o))
                    go = cb(opaque, row);
                json_decref(o);
            }
            if (keyset && i == nt - 1) {
                json_decref(last);
                last = row ? fo_row_keyvals(d->t, row) : NULL;
                if (!last)
                    more = false;
            }
            json_decref(row);
            if (!go) {
                more = false;
                break;
            }
        }
        offset = keyset ? 0 : offset + nt;
        PQclear(res);
    }
    json_decref(last);
    return ok;
}

typedef struct {
    fo_t *d;
    const emu_odata_query_t *q;
    json_t *value;
    json_t *last; /* the last row of the page (to_jsonb form), for the $skiptoken */
    long long skip_left, page, got, extra, count;
    bool counting;
} fo_page_t;

static bool page_cb(void *opaque, json_t *db)
{
    fo_page_t *pg = opaque;
    if (pg->counting) {
        pg->count++;
        return true;
    }
    if (pg->skip_left > 0) {
        pg->skip_left--;
        return true;
    }
    if (pg->got < pg->page) {
        json_array_append_new(pg->value, fo_out(pg->d->t, db, pg->q));
        json_decref(pg->last);
        pg->last = json_incref(db);
        pg->got++;
        return true;
    }
    pg->extra = 1; /* at least one more row: there is a next page */
    return false;
}

/* ---- a page without $filter: JSON text straight from the columns' text ------------------------
 * A page of 10,000 rows went through to_jsonb (PostgreSQL sorting each row's keys), json_loads,
 * the output form and json_dumps of the whole page. Without a filter nothing needs the rows as
 * JSON values: PostgreSQL returns each column as text in one query (LIMIT page + 1, the keyset
 * range or OFFSET as fo_scan) and the page text is written from it, the same members in the same
 * order as fo_out (@odata.etag, then the columns or the $select list), the values in the form
 * emu_fo_row_out gives them: enums as member names, datetimes YYYY-MM-DDTHH:MM:SSZ, decimals as
 * PostgreSQL's numeric text (the exact value, where jansson printed 17 digits). */

/* A numeric's text as a JSON number when it is one (NaN, Infinity: a string). */
static bool ft_is_number(const char *s)
{
    if (*s == '-')
        s++;
    return *s >= '0' && *s <= '9';
}

/* Column i of result row r as a JSON value in the output form. */
static void ft_value(dw_buf_t *b, const emu_table_t *t, const emu_col_t *c, PGresult *res, int r,
                     int i)
{
    if (PQgetisnull(res, r, i)) {
        DW_BUF_LIT(b, "null");
        return;
    }
    const char *v = PQgetvalue(res, r, i);
    size_t n = (size_t)PQgetlength(res, r, i);
    switch (c->type) {
    case EMU_T_INTEGER:
        dw_buf_put(b, v, n);
        return;
    case EMU_T_DECIMAL:
        if (ft_is_number(v))
            dw_buf_put(b, v, n);
        else
            dw_buf_json_str(b, v, n);
        return;
    case EMU_T_BOOLEAN:
        if (v[0] == 't')
            DW_BUF_LIT(b, "true");
        else
            DW_BUF_LIT(b, "false");
        return;
    case EMU_T_ENUM: {
        const char *m = emu_fo_enum_member(t, c, strtoll(v, NULL, 10));
        if (m)
            dw_buf_json_str(b, m, strlen(m));
        else
            dw_buf_put(b, v, n);
        return;
    }
    case EMU_T_DATETIME:
        if (n >= 19) {
            dw_buf_put(b, "\"", 1);
            dw_buf_put(b, v, 19);
            DW_BUF_LIT(b, "Z\"");
            return;
        }
        dw_buf_json_str(b, v, n);
        return;
    default:
        dw_buf_json_str(b, v, n);
        return;
    }
}

/* Column i of result row r as the JSON value to_jsonb gives it (new), for the $skiptoken. */
static json_t *ft_keyval(const emu_col_t *c, PGresult *res, int r, int i)
{
    if (PQgetisnull(res, r, i))
        return json_null();
    const char *v = PQgetvalue(res, r, i);
    switch (c->type) {
    case EMU_T_INTEGER:
    case EMU_T_ENUM:
        return json_integer(strtoll(v, NULL, 10));
    case EMU_T_DECIMAL:
        if (!ft_is_number(v))
            return json_string(v);
        return strpbrk(v, ".eE") ? json_real(strtod(v, NULL)) : json_integer(strtoll(v, NULL, 10));
    case EMU_T_BOOLEAN:
        return json_boolean(v[0] == 't');
    default:
        return json_string(v);
    }
}

/* The page of a collection request without $filter into out (text of the "value" array's
 * members, without brackets); got/extra/last as page_cb fills them (last: the last row's key
 * columns as to_jsonb gives them). False with d->resp filled on a database error. */
static bool fo_page_text(fo_t *d, const emu_odata_query_t *q, long long sql_offset, json_t *after,
                         fo_page_t *pg, dw_buf_t *out)
{
    char errstr[512], sql[FO_SQL_MAX] = "", lim[32], off[32];
    const emu_table_t *t = d->t;
    bool company = emu_fo_company_specific(t) && !d->cross;
    json_t *key = json_object_get(t->meta, "key");
    size_t nk = json_array_size(key);
    bool keyset = q->norderby == 0 && nk > 0;
    enum { FO_MAXK = 16 };
    char kbuf[FO_MAXK][512];
    const char *p[3 + FO_MAXK] = {lim, off, d->ctx->fo_company};
    int np = company ? 3 : 2;
    const emu_col_t **cols = calloc(t->ncols ? t->ncols : 1, sizeof(*cols));
    int *outcol = calloc(t->ncols + q->nselect + 1, sizeof(*outcol)); /* result columns to write */
    size_t ncols = 0, nout = 0;
    PGresult *res = NULL;
    bool ok = false;
    if (!cols || !outcol) {
        emu_fo_error(d->resp, 500, FO_T_ODATA, "Out of memory.");
        goto out;
    }
    if (nk > FO_MAXK) {
        emu_fo_error(d->resp, 500, FO_T_ODATA, "Too many key fields on '%s'.", t->name);
        goto out;
    }
    /* column 0: the row version; then every column that was not dropped */
    sqlf(sql, "SELECT x.\"" EMU_FO_ROWVERSION "\"::text");
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped)
            continue;
        if (c->type == EMU_T_DATE || c->type == EMU_T_DATETIME)
            sqlf(sql, ", to_jsonb(x.\"%s\") #>> '{}'", c->name);
        else
            sqlf(sql, ", x.\"%s\"::text", c->name);
        cols[ncols++] = c;
    }
    if (!q->nselect) {
        for (size_t i = 0; i < ncols; i++)
            outcol[nout++] = (int)i + 1;
    } else {
        for (size_t s = 0; s < q->nselect; s++) {
            for (size_t i = 0; i < ncols; i++) {
                if (strcmp(cols[i]->name, q->select[s]) != 0)
                    continue;
                bool dup = false;
                for (size_t j = 0; j < nout && !dup; j++)
                    dup = outcol[j] == (int)i + 1;
                if (!dup)
                    outcol[nout++] = (int)i + 1;
                break;
            }
        }
    }
    sqlf(sql, " FROM %s x WHERE true", t->qname);
    if (company)
        sqlf(sql, " AND x.\"dataAreaId\" = $3");
    if (keyset && after) {
        sqlf(sql, " AND (");
        for (size_t i = 0; i < nk; i++)
            sqlf(sql, "%sx.\"%s\"", i ? ", " : "", json_string_value(json_array_get(key, i)));
        sqlf(sql, ") > (");
        for (size_t i = 0; i < nk; i++) {
            fo_keyval_text(json_array_get(after, i), kbuf[i], sizeof(kbuf[i]));
            p[np++] = kbuf[i];
            sqlf(sql, "%s$%d", i ? ", " : "", np);
        }
        sqlf(sql, ")");
    }
    sqlf(sql, " ORDER BY ");
    for (size_t i = 0; i < q->norderby; i++)
        sqlf(sql, "x.\"%s\" %s, ", q->orderby[i].col,
             q->orderby[i].desc ? "DESC NULLS LAST" : "ASC NULLS FIRST");
    for (size_t i = 0; i < nk; i++)
        sqlf(sql, "%sx.\"%s\"", i ? ", " : "", json_string_value(json_array_get(key, i)));
    sqlf(sql, " LIMIT $1 OFFSET $2");
    snprintf(lim, sizeof(lim), "%lld", pg->page + 1);
    snprintf(off, sizeof(off), "%lld", sql_offset); /* a client's own $skip */
    dw_err_t err = dw_pg_exec(d->pg, sql, np, p, &res, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        goto out;
    }
    int nt = PQntuples(res);
    for (int r = 0; r < nt; r++) {
        if (pg->got == pg->page) {
            pg->extra = 1;
            break;
        }
        if (pg->got)
            DW_BUF_LIT(out, ",");
        DW_BUF_LIT(out, "{\"@odata.etag\":\"W/\\\"");
        if (PQgetisnull(res, r, 0))
            DW_BUF_LIT(out, "0");
        else
            dw_buf_put(out, PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0));
        DW_BUF_LIT(out, "\\\"\"");
        for (size_t o = 0; o < nout; o++) {
            const emu_col_t *c = cols[outcol[o] - 1];
            DW_BUF_LIT(out, ",");
            dw_buf_json_str(out, c->name, strlen(c->name));
            DW_BUF_LIT(out, ":");
            ft_value(out, t, c, res, r, outcol[o]);
        }
        DW_BUF_LIT(out, "}");
        pg->got++;
    }
    /* the last row's key values, for the nextLink's $skiptoken */
    if (pg->got && nk) {
        json_t *last = json_object();
        for (size_t i = 0; i < ncols && last; i++)
            for (size_t k = 0; k < nk; k++)
                if (strcmp(cols[i]->name, json_string_value(json_array_get(key, k))) == 0)
                    json_object_set_new(last, cols[i]->name,
                                        ft_keyval(cols[i], res, (int)pg->got - 1, (int)i + 1));
        json_decref(pg->last);
        pg->last = last;
    }
    if (out->fail) {
        emu_fo_error(d->resp, 500, FO_T_ODATA, "Out of memory.");
        goto out;
    }
    ok = true;
out:
    PQclear(res);
    free(cols);
    free(outcol);
    return ok;
}

/* The number of matching rows: count(*) in SQL without a filter, a scan with one. */
static bool fo_count(fo_t *d, const emu_odata_query_t *q, const dw_filter_t *f, long long *count)
{
    if (f) {
        fo_page_t cnt;
        memset(&cnt, 0, sizeof(cnt));
        cnt.d = d;
        cnt.q = q;
        cnt.counting = true;
        bool ok = fo_scan(d, q, f, 0, NULL, page_cb, &cnt);
        *count = cnt.count;
        return ok;
    }
    char errstr[512], sql[FO_SQL_MAX] = "";
    bool company = emu_fo_company_specific(d->t) && !d->cross;
    sqlf(sql, "SELECT count(*) FROM %s x%s", d->t->qname,
         company ? " WHERE x.\"dataAreaId\" = $1" : "");
    const char *p[1] = {d->ctx->fo_company};
    PGresult *res = NULL;
    dw_err_t err = dw_pg_exec(d->pg, sql, company ? 1 : 0, p, &res, errstr, sizeof(errstr));
    if (err) {
        fo_pg_error(d, err, errstr);
        PQclear(res);
        return false;
    }
    *count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return true;
}

static void fo_collection(fo_t *d, const emu_odata_query_t *q, bool count_only)
{
    dw_filter_t *f = NULL;
    json_t *after = NULL;
    dw_buf_t text = {0};
    fo_page_t pg;
    memset(&pg, 0, sizeof(pg));
    pg.d = d;
    pg.q = q;
    pg.value = json_array();
    if (!fo_check_query_cols(d, q) || !fo_filter(d, q->filter, &f))
        goto out;
    if (q->expand) {
        emu_fo_error(d->resp, 501, FO_T_NOTIMPL, "$expand is not implemented by dw-emulator.");
        goto out;
    }
    if (q->skiptoken && (q->norderby || !(after = fo_token_decode(d->t, q->skiptoken)))) {
        emu_fo_error(d->resp, 400, FO_T_ODATA, "The $skiptoken is not valid.");
        goto out;
    }
    if (count_only || q->count) {
        if (!fo_count(d, q, f, &pg.count))
            goto out;
        if (count_only) {
            char num[32];
            snprintf(num, sizeof(num), "%lld", pg.count);
            emu_resp_raw(d->resp, 200, "text/plain", num, strlen(num));
            goto out;
        }
    }
    int pref = emu_fo_prefer_maxpagesize(emu_req_header(d->req, "Prefer"));
    long long maxp = d->ctx->max_page_size > 0 ? d->ctx->max_page_size : EMU_FO_MAX_PAGE;
    pg.page = pref > 0 && pref < maxp ? pref : maxp;
    if (q->top >= 0 && q->top < pg.page)
        pg.page = q->top;
    /* without a filter, $skip goes to SQL; with one, skipped rows must be matched first */
    long long sql_offset = f ? 0 : q->skip;
    pg.skip_left = f ? q->skip : 0;
    char ctxs[1024];
    emu_service_context(d->ctx, d->t, q, "", ctxs, sizeof(ctxs));
    if (!f) {
        /* no filter: the page's text is written from the columns (fo_page_text) */
        DW_BUF_LIT(&text, "{\"@odata.context\":");
        dw_buf_json_str(&text, ctxs, strlen(ctxs));
        if (q->count) {
            char num[48];
            dw_buf_put(&text, num,
                       (size_t)snprintf(num, sizeof(num), ",\"@odata.count\":%lld", pg.count));
        }
        DW_BUF_LIT(&text, ",\"value\":[");
        if (pg.page > 0 && !fo_page_text(d, q, sql_offset, after, &pg, &text))
            goto out;
        DW_BUF_LIT(&text, "]");
    } else if (pg.page > 0 && !fo_scan(d, q, f, sql_offset, after, page_cb, &pg)) {
        goto out;
    }
    json_t *o = NULL;
    if (f) {
        o = json_pack("{s:s}", "@odata.context", ctxs);
        if (q->count)
            json_object_set_new(o, "@odata.count", json_integer(pg.count));
        json_object_set(o, "value", pg.value);
    }
    if (pg.extra && (q->top < 0 || pg.got < q->top)) {
        char link[8192], token[FO_TOKEN_MAX + 1];
        json_t *kv = q->norderby == 0 && pg.last ? fo_row_keyvals(d->t, pg.last) : NULL;
        bool keyset = kv && fo_token_encode(kv, token, sizeof(token));
        json_decref(kv);
        fo_next_link(d, keyset ? token : NULL, q->skip + pg.got, q->top >= 0 ? q->top - pg.got : -1,
                     link, sizeof(link));
        if (o) {
            json_object_set_new(o, "@odata.nextLink", json_string(link));
        } else {
            DW_BUF_LIT(&text, ",\"@odata.nextLink\":");
            dw_buf_json_str(&text, link, strlen(link));
        }
    }
    if (o) {
        emu_resp_json(d->resp, 200, o);
    } else {
        DW_BUF_LIT(&text, "}");
        if (text.fail) {
            emu_fo_error(d->resp, 500, FO_T_ODATA, "Out of memory.");
            goto out;
        }
        emu_resp_raw(d->resp, 200, "application/json; odata.metadata=minimal", text.p, text.n);
    }
    if (pref > 0) {
        char pa[64];
        snprintf(pa, sizeof(pa), "odata.maxpagesize=%lld", pref < maxp ? (long long)pref : maxp);
        emu_resp_header(d->resp, "Preference-Applied", pa);
    }
out:
    free(text.p);
    json_decref(pg.value);
    json_decref(pg.last);
    json_decref(after);
    dw_filter_destroy(f);
}

/* ---- $metadata ------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return;
        b->buf = nb;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void xml_escape(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s && o + 7 < size; s++) {
        const char *r = NULL;
        switch (*s) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '"':
            r = "&quot;";
            break;
        case '\'':
            r = "&apos;";
            break;
        default:
            break;
        }
        if (r) {
            memcpy(out + o, r, strlen(r));
            o += strlen(r);
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

static void fo_metadata(emu_ctx_t *ctx, emu_resp_t *resp)
{
    sbuf_t b = {NULL, 0, 0};
    json_t *seen = json_object();
    sb_add(&b,
           "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
           "<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n"
           "<edmx:DataServices>\n"
           "<Schema Namespace=\"" EMU_FO_NS
           "\" xmlns=\"http://docs.oasis-open.org/odata/ns/edm\">\n");
    for (size_t i = 0; i < emu_store_ntables(ctx->store); i++) {
        emu_table_t *t = emu_store_table_at(ctx->store, i);
        sb_add(&b, "<EntityType Name=\"%s\">\n<Key>", t->name);
        json_t *key = json_object_get(t->meta, "key");
        for (size_t k = 0; k < json_array_size(key); k++)
            sb_add(&b, "<PropertyRef Name=\"%s\"/>", json_string_value(json_array_get(key, k)));
        sb_add(&b, "</Key>\n");
        for (size_t c = 0; c < t->ncols; c++) {
            const emu_col_t *col = &t->cols[c];
            if (col->dropped)
                continue;
            char tb[200];
            sb_add(&b, "<Property Name=\"%s\" Type=\"%s\"", col->name,
                   edm_type(t, col, tb, sizeof(tb)));
            if (col->required || is_key_col(t, col->name))
                sb_add(&b, " Nullable=\"false\"");
            if (col->max_length > 0)
                sb_add(&b, " MaxLength=\"%lld\"", col->max_length);
            if (col->type == EMU_T_DECIMAL)
                sb_add(&b, " Precision=\"32\" Scale=\"6\"");
            sb_add(&b, "/>\n");
        }
        sb_add(&b, "</EntityType>\n");
        const char *en;
        json_t *members;
        json_object_foreach(json_object_get(t->meta, "enums"), en, members)
        {
            if (json_object_get(seen, en) || !emu_odata_is_ident(en))
                continue;
            json_object_set_new(seen, en, json_true());
            sb_add(&b, "<EnumType Name=\"%s\">\n", en);
            for (size_t m = 0; m < json_array_size(members); m++) {
                json_t *mj = json_array_get(members, m);
                char name[512];
                xml_escape(json_string_value(json_object_get(mj, "name"))
                               ? json_string_value(json_object_get(mj, "name"))
                               : "",
                           name, sizeof(name));
                sb_add(&b, "<Member Name=\"%s\" Value=\"%lld\"/>\n", name,
                       (long long)json_integer_value(json_object_get(mj, "value")));
            }
            sb_add(&b, "</EnumType>\n");
        }
    }
    sb_add(&b, "<EntityContainer Name=\"Resources\">\n");
    for (size_t i = 0; i < emu_store_ntables(ctx->store); i++) {
        emu_table_t *t = emu_store_table_at(ctx->store, i);
        sb_add(&b, "<EntitySet Name=\"%s\" EntityType=\"" EMU_FO_NS ".%s\"/>\n", t->entity_set,
               t->name);
    }
    sb_add(&b, "</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n");
    json_decref(seen);
    if (b.buf)
        emu_resp_raw(resp, 200, "application/xml", b.buf, b.len);
    else
        emu_fo_error(resp, 500, FO_T_DB, "out of memory");
    free(b.buf);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

dw_err_t emu_fo_init(emu_ctx_t *ctx, char *errstr, size_t errstr_size)
{
    dw_err_t err = fo_relations_check_meta(ctx->store, errstr, errstr_size);
    return err ? err : emu_fo_store_prepare(ctx->store, errstr, errstr_size);
}

dw_err_t emu_fo_after_reset(emu_ctx_t *ctx, char *errstr, size_t errstr_size)
{
    dw_err_t err = emu_fo_store_prepare(ctx->store, errstr, errstr_size);
    if (!err && ctx->fo_events)
        err = emu_fo_events_reset(ctx->fo_events, errstr, errstr_size);
    return err;
}

/* ---- $batch ---------------------------------------------------------------------------------- */

static bool fo_batch_begin(void *opaque, void **txn, emu_resp_t *err_resp)
{
    emu_ctx_t *ctx = opaque;
    char errstr[512];
    *txn = emu_store_acquire_write(ctx->store, errstr, sizeof(errstr));
    if (!*txn) {
        DW_ERROR("fo", "could not begin a change set: %s", errstr);
        emu_fo_error(err_resp, 503, FO_T_DB, "The database is unavailable.");
    }
    return *txn != NULL;
}

/* Commit a change set: its changes and their outbox rows become visible together; then wake the
 * event delivery. */
static bool fo_batch_commit(void *opaque, void *txn, emu_resp_t *err_resp)
{
    emu_ctx_t *ctx = opaque;
    char errstr[512];
    dw_err_t err = emu_store_commit_release(ctx->store, txn, errstr, sizeof(errstr));
    if (err) {
        DW_ERROR("fo", "change set commit failed: %s", errstr);
        emu_fo_error(err_resp, 500, FO_T_DB, "An error has occurred.");
    }
    if (!err)
        emu_fo_events_notify(ctx->fo_events);
    return !err;
}

static void fo_batch_dispatch(void *opaque, emu_req_t *req, emu_resp_t *resp)
{
    emu_ctx_t *ctx = opaque;
    size_t pl = strlen(ctx->api_prefix);
    if (strncmp(req->path, ctx->api_prefix, pl) != 0)
        emu_fo_error(resp, 404, FO_T_URI,
                     "No HTTP resource was found that matches the request URI '%.300s'.",
                     req->path);
    else
        emu_fo_handle(ctx, req, resp, req->path + pl);
}

static const emu_batch_ops_t fo_batch_ops = {
    .root_path = "/data/",
    .begin = fo_batch_begin,
    .commit = fo_batch_commit,
    .rollback = emu_service_batch_rollback,
    .dispatch = fo_batch_dispatch,
};

/* POST /data/$batch. F&O's documentation describes batches with atomic change sets but not
 * Prefer: odata.continue-on-error, so the preference is not applied (no Preference-Applied):
 * processing stops at the first failure. */
static void fo_batch(emu_ctx_t *ctx, emu_req_t *req, emu_resp_t *resp)
{
    char errstr[512];
    emu_batch_t b;
    dw_err_t err = emu_batch_parse(emu_req_header(req, "Content-Type"), req->body, req->body_len,
                                   EMU_BATCH_MAX_REQUESTS, &b, errstr, sizeof(errstr));
    if (err == DW_ERR_NOMEM)
        emu_fo_error(resp, 500, FO_T_DB, "An error has occurred.");
    else if (err)
        emu_fo_error(resp, 400, FO_T_ODATA, "%s", errstr);
    else
        emu_batch_execute(&b, &fo_batch_ops, ctx, req, false, resp);
    emu_batch_clear(&b);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

void emu_fo_handle(emu_ctx_t *ctx, emu_req_t *req, emu_resp_t *resp, const char *rel)
{
    char errstr[512];
    emu_odata_path_t p;
    emu_odata_query_t q;
    fo_t d = {ctx, req, resp, NULL, NULL, false};
    bool have_path = false, have_q = false;
    const char *m = req->method;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0,
         patch = strcmp(m, "PATCH") == 0, del = strcmp(m, "DELETE") == 0;
    memset(&q, 0, sizeof(q));
    q.top = -1;
    for (size_t i = 0; i < req->nargs; i++) {
        if (strcasecmp(req->arg_names[i], "cross-company") == 0) {
            if (strcasecmp(req->arg_values[i], "true") == 0)
                d.cross = true;
            else if (strcasecmp(req->arg_values[i], "false") != 0) {
                emu_fo_error(resp, 400, FO_T_ODATA,
                             "The value of cross-company must be true or false.");
                return;
            }
        }
    }
    if (*rel == '\0') {
        if (!get) {
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on the service root.",
                         m);
            return;
        }
        emu_service_document(ctx, resp);
        return;
    }
    if (strcmp(rel, "$metadata") == 0) {
        if (get)
            fo_metadata(ctx, resp);
        else
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on $metadata.", m);
        return;
    }
    if (strcmp(rel, "$batch") == 0) {
        if (!post)
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on $batch.", m);
        else if (req->txn)
            emu_fo_error(resp, 400, FO_T_ODATA,
                         "A batch request cannot contain another batch request.");
        else
            fo_batch(ctx, req, resp);
        return;
    }
    if (emu_odata_path_parse(rel, &p, errstr, sizeof(errstr))) {
        emu_fo_error(resp, 400, FO_T_ODATA, "%s", errstr);
        return;
    }
    have_path = true;
    d.t = emu_store_table_by_set(ctx->store, p.segment);
    if (!d.t) {
        emu_fo_error(resp, 404, FO_T_URI,
                     "No HTTP resource was found that matches the request URI '%s%.200s'.",
                     ctx->base_url, p.segment);
        goto out;
    }
    bool count_seg = p.rest && strcmp(p.rest, "$count") == 0 && !p.has_key;
    if (p.rest && !count_seg) {
        emu_fo_error(resp, 501, FO_T_NOTIMPL,
                     "Navigation to '%s' is not implemented by dw-emulator.", p.rest);
        goto out;
    }
    unsigned allowed = EMU_Q_SELECT;
    if (!p.has_key)
        allowed |= EMU_Q_FILTER | EMU_Q_TOP | EMU_Q_SKIP | EMU_Q_ORDERBY | EMU_Q_COUNT |
                   EMU_Q_EXPAND | EMU_Q_SKIPTOKEN;
    if (emu_odata_query_parse(req->arg_names, req->arg_values, req->nargs, allowed, &q, errstr,
                              sizeof(errstr))) {
        emu_fo_error(resp, 400, FO_T_ODATA, "%s", errstr);
        goto out;
    }
    have_q = true;
    fo_key_t k;
    if (p.has_key) {
        if (!fo_key_from_path(&d, &p, &k))
            goto out;
        const char *co = fo_key_company(&k);
        if (*co && !d.cross && strcmp(co, ctx->fo_company) != 0) {
            fo_not_found(&d, &k); /* another company: only with cross-company=true */
            goto out;
        }
    }
    d.pg = req->txn ? req->txn : emu_store_acquire(ctx->store, errstr, sizeof(errstr));
    if (!d.pg) {
        emu_fo_error(resp, 503, FO_T_DB, "The database is unavailable.");
        goto out;
    }
    if (p.has_key) {
        if (get)
            fo_get_one(&d, &k, &q);
        else if (patch)
            fo_update(&d, &k);
        else if (del)
            fo_delete(&d, &k);
        else
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on a single record.",
                         m);
    } else if (count_seg) {
        if (get)
            fo_collection(&d, &q, true);
        else
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on $count.", m);
    } else {
        if (get)
            fo_collection(&d, &q, false);
        else if (post)
            fo_create(&d);
        else
            emu_fo_error(resp, 405, FO_T_ODATA, "The method %s is not allowed on an entity set.",
                         m);
    }
out:
    if (d.pg && !req->txn)
        emu_store_release(ctx->store, d.pg);
    if (have_q)
        emu_odata_query_clear(&q);
    if (have_path)
        emu_odata_path_clear(&p);
}
