/*
 * emu_dv: the Dataverse Web API emulator. Behaviour follows Microsoft Learn:
 *   "Update and delete table rows using the Web API" (PATCH upsert, 204 + OData-EntityId),
 *   "Perform conditional operations using the Web API" (If-Match / If-None-Match, 412 codes
 *     0x80060882 ConcurrencyVersionMismatch and 0x80040237 DuplicateRecord),
 *   "Use an alternate key to reference a record" (accounts(accountnumber='A1'), doubled quotes),
 *   "Associate table rows on create" (@odata.bind by id or alternate key),
 *   "Query data using the Web API" / "Page results" (Prefer: odata.maxpagesize, @odata.nextLink,
 *     $count capped at 5,000),
 *   "Use UpsertMultiple / CreateMultiple / UpdateMultiple" (Targets, @odata.type, all or nothing),
 *   "Use change tracking to synchronize data with external systems" (Prefer: odata.track-changes,
 *     Preference-Applied, @odata.deltaLink, $deletedEntity, ExpiredVersionStamp 0x80044352),
 *   "Web API error codes" (code -> HTTP status).
 * Rows live in PostgreSQL (emu_store); JSON goes in and out through jsonb_populate_record and
 * to_jsonb, so no value ever enters SQL text.
 */
#include "emu_dv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dw_buf.h"
#include "dw_filter.h"
#include "dw_json.h"
#include "dw_log.h"
#include "dw_mapper.h"
#include "dw_pg.h"
#include "emu_batch.h"
#include "emu_ctx.h"
#include "emu_odata.h"
#include "emu_service.h"

#define DV_SQL_MAX   16384
#define DV_CHUNK     500
#define DV_COUNT_CAP 5000
#define DV_MAX_TARGETS 10000

/* Codes, from "Web API error codes" and the OData exception handler's code -> status map. */
#define DV_E_NOT_FOUND      "0x80040217" /* 404 ObjectDoesNotExist */
#define DV_E_SEGMENT        "0x8006088a" /* 404 resource not found for the segment */
#define DV_E_QUERY          "0x80060888" /* 400 query / URL syntax */
#define DV_E_PAYLOAD        "0x80048d19" /* 400 error identified in payload */
#define DV_E_VALIDATION     "0x80044331" /* 400 validation */
#define DV_E_OPTIONSET      "0x8004431a" /* 400 option set value out of range */
#define DV_E_INVALIDARG     "0x80040203" /* 400 invalid argument */
#define DV_E_DUPLICATE      "0x80040237" /* 412 duplicate record / matching key exists */
#define DV_E_VERSION        "0x80060882" /* 412 concurrency version mismatch */
#define DV_E_EXPIRED        "0x80044352" /* 400 ExpiredVersionStamp */
#define DV_E_UNEXPECTED     "0x80040216" /* 500 unexpected */
#define DV_E_NOTIMPL        "0x8006088b" /* 501 not implemented by the emulator */
#define DV_E_METHOD         "0x80060889" /* 405 method not allowed */

typedef struct {
    emu_ctx_t *ctx;
    emu_req_t *req;
    emu_resp_t *resp;
    dw_pg_t *pg;
    emu_table_t *t;
    json_t *bind_cache; /* bulk messages: @odata.bind reference -> id, NULL elsewhere */
    int attempt;        /* 0, or the number of times this write was already run */
    char caller[37];    /* caller_id of the request's client, once computed ("" before) */
    bool retry;         /* the write lost a race with a concurrent writer: run it again */
} dv_t;

/* Writers run side by side (no lock, see dv_changes): a write that lost a race with another
 * one (both created the same alternate key: 23505 once the other committed; a deadlock: 40P01)
 * runs again on its own, up to this many times, and then finds the other's row. */
#define DV_WRITE_ATTEMPTS 3

typedef struct {
    int maxpagesize; /* 0: not given */
    bool track;
    bool repr;
    bool cont;
} dv_prefer_t;

typedef struct {
    const char *cols[EMU_ODATA_MAX_KEYS];
    const char *vals[EMU_ODATA_MAX_KEYS];
    size_t n;
    bool by_id;
} dv_key_t;

/* ---- small helpers ---------------------------------------------------------------------------- */

#define sqlf(buf, ...) emu_store_sqlcat(buf, DV_SQL_MAX, __VA_ARGS__)

/* A random (version 4) GUID. The random bytes come from getrandom in blocks of 64 GUIDs per
 * thread (a bulk message creates thousands: one system call each was measurable). */
static void uuid_new(char out[37])
{
    static _Thread_local unsigned char pool[16 * 64];
    static _Thread_local size_t used = sizeof(pool);
    static const char hex[] = "0123456789abcdef";
    if (used == sizeof(pool)) {
        if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
            for (size_t i = 0; i < sizeof(pool); i++)
                pool[i] = (unsigned char)rand();
        }
        used = 0;
    }
    unsigned char *b = pool + used;
    used += 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

/* A GUID derived from the client id: the caller's systemuserid for ownerid. */
static void caller_id(const char *client, char out[37])
{
    unsigned long long h = 1469598103934665603ULL;
    for (const char *p = client; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(out, 37, "%08llx-%04llx-4%03llx-8%03llx-%012llx", h >> 32, (h >> 16) & 0xffff,
             h & 0xfff, (h >> 52) & 0xfff, (h * 31) & 0xffffffffffffULL);
}

static void dv_prefer_parse(const char *h, dv_prefer_t *p)
{
    memset(p, 0, sizeof(*p));
    if (!h)
        return;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", h);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (strncmp(tok, "odata.maxpagesize=", 18) == 0)
            p->maxpagesize = atoi(tok + 18);
        else if (strncmp(tok, "odata.track-changes", 19) == 0)
            p->track = true;
        else if (strncmp(tok, "return=representation", 21) == 0)
            p->repr = true;
        else if (strncmp(tok, "odata.continue-on-error", 23) == 0)
            p->cont = true;
    }
}

static void dv_pg_error(dv_t *d, dw_err_t err, const char *errstr)
{
    const char *state = d->pg ? dw_pg_last_sqlstate(d->pg) : "08006";
    if (err == DW_ERR_PG && !d->req->txn && d->attempt + 1 < DV_WRITE_ATTEMPTS &&
        (strcmp(state, "23505") == 0 || strcmp(state, "40P01") == 0))
        d->retry = true;
    if (err == DW_ERR_PG && strcmp(state, "23505") == 0) {
        emu_resp_error(d->resp, 412, DV_E_DUPLICATE,
                       "A record that has the attribute values of an alternate key of '%s' already exists. "
                       "The entity key requires that this set of attributes contains unique values.",
                       d->t ? d->t->name : "?");
    } else if (err == DW_ERR_PG && strncmp(state, "22", 2) == 0) {
        emu_resp_error(d->resp, 400, DV_E_VALIDATION, "A validation error occurred. A value is out of range.");
    } else if (err == DW_ERR_PG_CONN) {
        emu_resp_error(d->resp, 503, DV_E_UNEXPECTED, "The database is unavailable.");
    } else {
        DW_ERROR("dv", "database error: %s", errstr);
        emu_resp_error(d->resp, 500, DV_E_UNEXPECTED, "An unexpected error occurred.");
    }
}

/* The column an output/select name designates: "name" for plain columns, "_x_value" for lookups. */
static emu_col_t *dv_col_out(const emu_table_t *t, const char *name)
{
    size_t l = strlen(name);
    if (l > 7 && name[0] == '_' && strcmp(name + l - 6, "_value") == 0) {
        char inner[160];
        if (l - 7 >= sizeof(inner))
            return NULL;
        memcpy(inner, name + 1, l - 7);
        inner[l - 7] = '\0';
        emu_col_t *c = emu_table_col(t, inner);
        return c && c->type == EMU_T_LOOKUP && !c->dropped ? c : NULL;
    }
    emu_col_t *c = emu_table_col(t, name);
    return c && c->type != EMU_T_LOOKUP && !c->dropped ? c : NULL;
}

static void dv_out_name(const emu_col_t *c, char *out, size_t size)
{
    if (c->type == EMU_T_LOOKUP)
        snprintf(out, size, "_%s_value", c->name);
    else
        snprintf(out, size, "%s", c->name);
}

/* "2024-05-01T10:00:00.123+00:00" -> "2024-05-01T10:00:00Z" */
static json_t *dv_datetime_out(const char *s)
{
    char buf[32];
    if (strlen(s) < 19)
        return json_string(s);
    memcpy(buf, s, 19);
    buf[19] = 'Z';
    buf[20] = '\0';
    return json_string(buf);
}

/* Output form of a stored row (to_jsonb): @odata.etag, columns (lookups as _x_value).
 * select: NULL for all columns. */
static json_t *dv_out(const emu_table_t *t, json_t *db, const emu_odata_query_t *q)
{
    json_t *o = json_object();
    json_t *ver = t->version_col ? json_object_get(db, t->version_col) : NULL;
    if (json_is_integer(ver)) {
        char etag[48];
        snprintf(etag, sizeof(etag), "W/\"%lld\"", (long long)json_integer_value(ver));
        json_object_set_new(o, "@odata.etag", json_string(etag));
    }
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped)
            continue;
        char name[160];
        dv_out_name(c, name, sizeof(name));
        bool want = !q || !q->nselect || (t->id_column && strcmp(c->name, t->id_column) == 0);
        for (size_t k = 0; q && !want && k < q->nselect; k++)
            if (strcmp(q->select[k], name) == 0)
                want = true;
        if (!want)
            continue;
        json_t *v = json_object_get(db, c->name);
        if (!v || json_is_null(v))
            json_object_set_new(o, name, json_null());
        else if (c->type == EMU_T_DATETIME && json_is_string(v))
            json_object_set_new(o, name, dv_datetime_out(json_string_value(v)));
        else
            json_object_set(o, name, v);
    }
    return o;
}

/* Check every $select / $orderby name against the table. */
static bool dv_check_query_cols(dv_t *d, const emu_odata_query_t *q)
{
    for (size_t i = 0; i < q->nselect; i++) {
        if (!dv_col_out(d->t, q->select[i])) {
            emu_resp_error(d->resp, 400, DV_E_QUERY,
                           "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.",
                           q->select[i], d->t->name);
            return false;
        }
    }
    for (size_t i = 0; i < q->norderby; i++) {
        if (!dv_col_out(d->t, q->orderby[i].col)) {
            emu_resp_error(d->resp, 400, DV_E_QUERY,
                           "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.",
                           q->orderby[i].col, d->t->name);
            return false;
        }
    }
    return true;
}

/* ---- keys ------------------------------------------------------------------------------------ */

static bool key_value_ok(const emu_col_t *c, const char *v, bool quoted)
{
    switch (c->type) {
    case EMU_T_GUID:
    case EMU_T_LOOKUP:
        return emu_odata_is_guid(v);
    case EMU_T_STRING:
    case EMU_T_DATE:
    case EMU_T_DATETIME:
        return quoted;
    case EMU_T_INTEGER:
    case EMU_T_ENUM: {
        if (quoted || !*v)
            return false;
        char *end = NULL;
        (void)strtoll(v, &end, 10);
        return *end == '\0';
    }
    case EMU_T_DECIMAL: {
        if (quoted || !*v)
            return false;
        char *end = NULL;
        (void)strtod(v, &end);
        return *end == '\0';
    }
    case EMU_T_BOOLEAN:
        return !quoted && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0);
    }
    return false;
}

/* Resolve the key of a path on table t into k (borrows from p and t). Fills resp on error. */
static bool dv_key_from_path(const emu_table_t *t, const emu_odata_path_t *p, dv_key_t *k,
                             emu_resp_t *resp)
{
    memset(k, 0, sizeof(*k));
    if (p->nkeys == 1 && !p->keys[0].name) {
        if (p->keys[0].quoted || !emu_odata_is_guid(p->keys[0].value) || !t->id_column) {
            emu_resp_error(resp, 400, DV_E_QUERY,
                           "Bad Request - Error in query syntax: the key of %s must be a GUID or alternate key values.",
                           t->entity_set);
            return false;
        }
        k->cols[0] = t->id_column;
        k->vals[0] = p->keys[0].value;
        k->n = 1;
        k->by_id = true;
        return true;
    }
    for (size_t i = 0; i < p->nkeys; i++) {
        const char *name = p->keys[i].name;
        emu_col_t *c = emu_table_col(t, name);
        if (!c) {
            size_t l = strlen(name);
            if (l > 7 && name[0] == '_' && strcmp(name + l - 6, "_value") == 0) {
                char inner[160];
                if (l - 7 < sizeof(inner)) {
                    memcpy(inner, name + 1, l - 7);
                    inner[l - 7] = '\0';
                    c = emu_table_col(t, inner);
                }
            }
        }
        bool is_null = !p->keys[i].quoted && strcmp(p->keys[i].value, "null") == 0 &&
                       !(t->id_column && c && strcmp(c->name, t->id_column) == 0);
        if (!c || (!is_null && !key_value_ok(c, p->keys[i].value, p->keys[i].quoted))) {
            emu_resp_error(resp, 400, DV_E_QUERY,
                           "Bad Request - Error in query syntax: invalid key part '%s' for %s.", name,
                           t->entity_set);
            return false;
        }
        k->cols[k->n] = c->name;
        k->vals[k->n] = is_null ? NULL : p->keys[i].value;
        k->n++;
    }
    if (k->n == 1 && t->id_column && strcmp(k->cols[0], t->id_column) == 0) {
        k->by_id = true;
        return true;
    }
    for (size_t a = 0; a < t->nkeys; a++) {
        const emu_altkey_t *ak = &t->keys[a];
        if (ak->ncols != k->n)
            continue;
        size_t hit = 0;
        for (size_t i = 0; i < ak->ncols; i++)
            for (size_t j = 0; j < k->n; j++)
                if (strcmp(ak->cols[i], k->cols[j]) == 0)
                    hit++;
        if (hit == k->n)
            return true;
    }
    emu_resp_error(resp, 400, DV_E_QUERY,
                   "The key attributes specified for %s do not match any alternate key defined for the entity.",
                   t->name);
    return false;
}

static void dv_key_describe(const dv_key_t *k, char *out, size_t size)
{
    out[0] = '\0';
    for (size_t i = 0; i < k->n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, size - l, "%s%s:%s", i ? "," : "", k->cols[i], k->vals[i] ? k->vals[i] : "null");
    }
}

/* SELECT the row with key k; *row NULL when there is none. */
static dw_err_t dv_fetch(dw_pg_t *pg, const emu_table_t *t, const dv_key_t *k, bool lock,
                         json_t **row, char *errstr, size_t n)
{
    char sql[DV_SQL_MAX] = "";
    PGresult *res = NULL;
    *row = NULL;
    const char *params[EMU_ODATA_MAX_KEYS];
    int np = 0;
    sqlf(sql, "SELECT to_jsonb(x) FROM %s x WHERE ", t->qname);
    for (size_t i = 0; i < k->n; i++) {
        if (k->vals[i]) {
            params[np++] = k->vals[i];
            sqlf(sql, "%sx.\"%s\" = $%d", i ? " AND " : "", k->cols[i], np);
        } else {
            sqlf(sql, "%sx.\"%s\" IS NULL", i ? " AND " : "", k->cols[i]);
        }
    }
    if (lock)
        sqlf(sql, " FOR UPDATE");
    dw_err_t err = dw_pg_exec(pg, sql, np, params, &res, errstr, n);
    if (!err && PQntuples(res) > 0) {
        json_error_t je;
        *row = dw_json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &je);
        if (!*row)
            err = dw_errf(DW_ERR_INTERNAL, errstr, n, "bad row json: %s", je.text);
    }
    PQclear(res);
    return err;
}

/* ---- input validation ------------------------------------------------------------------------ */

static const char *edm_type(emu_type_t ty)
{
    switch (ty) {
    case EMU_T_STRING: return "Edm.String";
    case EMU_T_INTEGER: return "Edm.Int32";
    case EMU_T_DECIMAL: return "Edm.Decimal";
    case EMU_T_BOOLEAN: return "Edm.Boolean";
    case EMU_T_DATE: return "Edm.Date";
    case EMU_T_DATETIME: return "Edm.DateTimeOffset";
    case EMU_T_ENUM: return "Edm.Int32";
    case EMU_T_GUID:
    case EMU_T_LOOKUP: return "Edm.Guid";
    }
    return "Edm.String";
}

static bool dv_bind(dv_t *d, const emu_col_t *c, json_t *v, json_t *store)
{
    const char *ref = json_string_value(v);
    emu_odata_path_t p;
    char errstr[256];
    if (!ref) {
        emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                       "Error identified in Payload provided by the user for Entity :'%s'. The value of '%s@odata.bind' must be a string.",
                       d->t->name, c->name);
        return false;
    }
    /* a bulk message binds the same few rows over and over: a reference this column already
     * resolved in this request is taken from the cache before any parsing */
    char ck[600];
    int ckl = d->bind_cache ? snprintf(ck, sizeof(ck), "%s\x1f%s", c->name, ref) : -1;
    json_t *hit = ckl > 0 && (size_t)ckl < sizeof(ck) ? json_object_get(d->bind_cache, ck) : NULL;
    if (hit) {
        json_object_set(store, c->name, hit);
        return true;
    }
    size_t bl = strlen(d->ctx->base_url);
    if (strncmp(ref, d->ctx->base_url, bl) == 0)
        ref += bl;
    else if (strncmp(ref, d->ctx->api_prefix, strlen(d->ctx->api_prefix)) == 0)
        ref += strlen(d->ctx->api_prefix);
    else if (ref[0] == '/')
        ref++;
    if (emu_odata_path_parse(ref, &p, errstr, sizeof(errstr)) || !p.has_key || p.rest) {
        if (!errstr[0] || p.segment)
            emu_odata_path_clear(&p);
        emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                       "Error identified in Payload provided by the user for Entity :'%s'. '%s' is not a valid entity reference for '%s@odata.bind'.",
                       d->t->name, json_string_value(v), c->name);
        return false;
    }
    emu_table_t *target = emu_store_table_by_set(d->ctx->store, p.segment);
    bool allowed = false;
    for (size_t i = 0; target && i < c->ntargets; i++)
        if (strcmp(c->targets[i], target->name) == 0)
            allowed = true;
    if (!allowed) {
        emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                       "Error identified in Payload provided by the user for Entity :'%s'. '%s' is not a valid target of the lookup '%s'.",
                       d->t->name, p.segment, c->name);
        emu_odata_path_clear(&p);
        return false;
    }
    dv_key_t k;
    if (!dv_key_from_path(target, &p, &k, d->resp)) {
        emu_odata_path_clear(&p);
        return false;
    }
    json_t *row = NULL;
    dw_err_t err = dv_fetch(d->pg, target, &k, false, &row, errstr, sizeof(errstr));
    if (err) {
        dv_pg_error(d, err, errstr);
        emu_odata_path_clear(&p);
        return false;
    }
    if (!row) {
        char kd[512];
        dv_key_describe(&k, kd, sizeof(kd));
        if (k.by_id)
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND, "%s With Id = %s Does Not Exist",
                           target->name, k.vals[0]);
        else
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND,
                           "A record with the specified key values does not exist in %s entity (%s)",
                           target->name, kd);
        emu_odata_path_clear(&p);
        return false;
    }
    json_object_set(store, c->name, json_object_get(row, target->id_column));
    if (ckl > 0 && (size_t)ckl < sizeof(ck))
        json_object_set(d->bind_cache, ck, json_object_get(row, target->id_column));
    json_decref(row);
    emu_odata_path_clear(&p);
    return true;
}

/* Check and convert a request body (JSON object, borrowed) into storage form in store.
 * create: apply create-only rules (required columns are checked by dv_required). */
static bool dv_in(dv_t *d, json_t *body, bool create, json_t *store)
{
    const char *name;
    json_t *v;
    const emu_table_t *t = d->t;
    json_object_foreach(body, name, v)
    {
        const char *at = strchr(name, '@');
        if (at) {
            if (strcmp(at, "@odata.bind") == 0) {
                char col[160];
                size_t l = (size_t)(at - name);
                if (l >= sizeof(col))
                    l = sizeof(col) - 1;
                memcpy(col, name, l);
                col[l] = '\0';
                emu_col_t *c = emu_table_col(t, col);
                if (!c || c->type != EMU_T_LOOKUP || c->dropped) {
                    emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                                   "Error identified in Payload provided by the user for Entity :'%s'. An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload.",
                                   t->name, col);
                    return false;
                }
                if (!dv_bind(d, c, v, store))
                    return false;
            }
            continue; /* other annotations: @odata.type, @odata.etag, ... */
        }
        emu_col_t *c = emu_table_col(t, name);
        if (!c || c->dropped || c->type == EMU_T_LOOKUP) {
            emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                           "Error identified in Payload provided by the user for Entity :'%s'. Invalid property '%s' was found in entity 'Microsoft.Dynamics.CRM.%s'.",
                           t->name, name, t->name);
            return false;
        }
        bool is_id = t->id_column && strcmp(c->name, t->id_column) == 0;
        if (c->read_only || (is_id && !create)) {
            if (is_id && json_is_string(v) && json_object_get(store, c->name) &&
                strcasecmp(json_string_value(json_object_get(store, c->name)), json_string_value(v)) == 0)
                continue; /* the same id as the URL's */
            emu_resp_error(d->resp, 400, DV_E_VALIDATION,
                           "A validation error occurred. The '%s' attribute of the '%s' entity is not valid for %s.",
                           c->name, t->name, create ? "create" : "update");
            return false;
        }
        if (json_is_null(v)) {
            if (c->required) {
                emu_resp_error(d->resp, 400, DV_E_VALIDATION,
                               "A validation error occurred. The value of '%s' on record of type '%s' is required and cannot be null.",
                               c->name, t->name);
                return false;
            }
            json_object_set(store, c->name, v);
            continue;
        }
        bool ok = true;
        switch (c->type) {
        case EMU_T_STRING:
            ok = json_is_string(v);
            if (ok && c->max_length > 0 && emu_odata_utf8_len(json_string_value(v)) > (size_t)c->max_length) {
                emu_resp_error(d->resp, 400, DV_E_VALIDATION,
                               "A validation error occurred. The length of the '%s' attribute of the '%s' entity exceeded the maximum allowed length of '%lld'.",
                               c->name, t->name, c->max_length);
                return false;
            }
            break;
        case EMU_T_INTEGER:
            ok = json_is_integer(v);
            break;
        case EMU_T_DECIMAL: /* a number, or its string form (IEEE754Compatible=true) */
            ok = json_is_number(v) || (json_is_string(v) && emu_odata_decimal_ok(json_string_value(v)));
            break;
        case EMU_T_BOOLEAN:
            ok = json_is_boolean(v);
            break;
        case EMU_T_DATE:
        case EMU_T_DATETIME:
            ok = json_is_string(v) && emu_odata_datetime_ok(json_string_value(v), c->type == EMU_T_DATE);
            break;
        case EMU_T_GUID:
            ok = json_is_string(v) && emu_odata_is_guid(json_string_value(v));
            break;
        case EMU_T_ENUM:
            ok = json_is_integer(v);
            if (ok && c->nenum) {
                bool member = false;
                for (size_t i = 0; i < c->nenum; i++)
                    if (c->enum_values[i] == json_integer_value(v))
                        member = true;
                if (!member) {
                    emu_resp_error(d->resp, 400, DV_E_OPTIONSET,
                                   "A validation error occurred. The value %lld of '%s' on record of type '%s' is outside the valid range.",
                                   (long long)json_integer_value(v), c->name, t->name);
                    return false;
                }
            }
            break;
        case EMU_T_LOOKUP:
            ok = false;
            break;
        }
        if (!ok) {
            char *text = dw_mapper_dumps(v, 0, NULL);
            emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                           "Error identified in Payload provided by the user for Entity :'%s'. Cannot convert the literal '%.100s' to the expected type '%s' of property '%s'.",
                           t->name, text ? text : "?", edm_type(c->type), c->name);
            free(text);
            return false;
        }
        json_object_set(store, c->name, v);
    }
    return true;
}

/* Defaults, generated values and required columns of a new row in store. */
static bool dv_complete_create(dv_t *d, json_t *store)
{
    const emu_table_t *t = d->t;
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped)
            continue;
        json_t *v = json_object_get(store, c->name);
        if (v && !json_is_null(v))
            continue;
        if (t->id_column && strcmp(c->name, t->id_column) == 0) {
            char id[37];
            uuid_new(id);
            json_object_set_new(store, c->name, json_string(id));
        } else if (c->generated && strcmp(c->generated, "caller") == 0) {
            if (!d->caller[0])
                caller_id(d->req->client, d->caller);
            json_object_set_new(store, c->name, json_string(d->caller));
        } else if (c->defval && !v) {
            json_object_set(store, c->name, c->defval);
        } else if (c->required && !c->generated && !c->defval) {
            emu_resp_error(d->resp, 400, DV_E_VALIDATION,
                           "A validation error occurred. The value of '%s' on record of type '%s' is required.",
                           c->name, t->name);
            return false;
        }
    }
    return true;
}

/* ---- writes ---------------------------------------------------------------------------------- */

static dw_err_t dv_insert(dv_t *d, json_t *store, json_t **row, char *errstr, size_t n)
{
    char sql[DV_SQL_MAX] = "";
    PGresult *res = NULL;
    sqlf(sql, "INSERT INTO %s AS x SELECT * FROM jsonb_populate_record(NULL::%s, $1::jsonb) RETURNING to_jsonb(x)",
         d->t->qname, d->t->qname);
    char *text = dw_mapper_dumps(store, 0, NULL);
    const char *p[1] = {text};
    dw_err_t err = text ? dw_pg_exec(d->pg, sql, 1, p, &res, errstr, n) : DW_ERR_NOMEM;
    free(text);
    if (!err && row)
        *row = dw_json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    PQclear(res);
    return err;
}

static dw_err_t dv_update(dv_t *d, json_t *full, json_t **row, char *errstr, size_t n)
{
    char sql[DV_SQL_MAX] = "", cols[DV_SQL_MAX / 2] = "", rcols[DV_SQL_MAX / 2] = "";
    PGresult *res = NULL;
    const emu_table_t *t = d->t;
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped || strcmp(c->name, t->id_column) == 0)
            continue;
        size_t l = strlen(cols), rl = strlen(rcols);
        snprintf(cols + l, sizeof(cols) - l, "%s\"%s\"", l ? ", " : "", c->name);
        snprintf(rcols + rl, sizeof(rcols) - rl, "%sr.\"%s\"", rl ? ", " : "", c->name);
    }
    sqlf(sql, "UPDATE %s AS x SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1::jsonb) r)"
         " WHERE x.\"%s\" = $2 RETURNING to_jsonb(x)", t->qname, cols, rcols, t->qname, t->id_column);
    char *text = dw_mapper_dumps(full, 0, NULL);
    const char *p[2] = {text, json_string_value(json_object_get(full, t->id_column))};
    dw_err_t err = text ? dw_pg_exec(d->pg, sql, 2, p, &res, errstr, n) : DW_ERR_NOMEM;
    free(text);
    if (!err && row)
        *row = PQntuples(res) ? dw_json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL) : NULL;
    PQclear(res);
    return err;
}

enum { DV_UPSERT = 0, DV_CREATE, DV_UPDATE };

static bool etag_matches(const char *etag, json_t *row, const char *vcol)
{
    char cur[48];
    snprintf(cur, sizeof(cur), "W/\"%lld\"", (long long)json_integer_value(json_object_get(row, vcol)));
    return strcmp(etag, cur) == 0 || (strncmp(etag, "W/", 2) != 0 && strcmp(etag, cur + 2) == 0);
}

static void key_to_store(const emu_table_t *t, const dv_key_t *k, json_t *store)
{
    for (size_t i = 0; i < k->n; i++) {
        const emu_col_t *c = emu_table_col(t, k->cols[i]);
        json_t *v;
        if (!k->vals[i])
            v = json_null();
        else if (c->type == EMU_T_INTEGER || c->type == EMU_T_ENUM)
            v = json_integer(strtoll(k->vals[i], NULL, 10));
        else if (c->type == EMU_T_DECIMAL)
            v = json_real(strtod(k->vals[i], NULL));
        else if (c->type == EMU_T_BOOLEAN)
            v = json_boolean(strcmp(k->vals[i], "true") == 0);
        else
            v = json_string(k->vals[i]);
        json_object_set_new(store, c->name, v);
    }
}

/* One create, update or upsert inside the caller's transaction. k: NULL for a plain create.
 * On failure resp is filled and false returned. */
static bool dv_write_one(dv_t *d, const dv_key_t *k, json_t *body, int mode, const char *if_match,
                         const char *if_none_match, json_t **row_out, bool *created)
{
    char errstr[512];
    json_t *existing = NULL, *store = json_object(), *row = NULL;
    bool ok = false;
    dw_err_t err = DW_OK;
    *created = false;
    if (k) {
        err = dv_fetch(d->pg, d->t, k, true, &existing, errstr, sizeof(errstr));
        if (err) {
            dv_pg_error(d, err, errstr);
            goto out;
        }
    }
    if ((if_match || mode == DV_UPDATE) && !existing) {
        char kd[512];
        dv_key_describe(k, kd, sizeof(kd));
        if (k && k->by_id)
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND, "%s With Id = %s Does Not Exist", d->t->name, k->vals[0]);
        else
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND,
                           "A record with the specified key values does not exist in %s entity (%s)",
                           d->t->name, kd);
        goto out;
    }
    if (if_match && strcmp(if_match, "*") != 0 && !etag_matches(if_match, existing, d->t->version_col)) {
        emu_resp_error(d->resp, 412, DV_E_VERSION,
                       "The version of the existing record doesn't match the RowVersion property provided.");
        goto out;
    }
    if (if_none_match && strcmp(if_none_match, "*") == 0 && existing) {
        emu_resp_error(d->resp, 412, DV_E_DUPLICATE, "A record with matching key values already exists.");
        goto out;
    }
    if (existing) {
        if (k)
            key_to_store(d->t, k, store); /* key columns may repeat in the body */
        if (!dv_in(d, body, false, store))
            goto out;
        json_object_update(existing, store);
        err = dv_update(d, existing, &row, errstr, sizeof(errstr));
    } else {
        if (k)
            key_to_store(d->t, k, store);
        if (!dv_in(d, body, true, store) || !dv_complete_create(d, store))
            goto out;
        err = dv_insert(d, store, &row, errstr, sizeof(errstr));
        *created = true;
    }
    if (err) {
        dv_pg_error(d, err, errstr);
        goto out;
    }
    ok = true;
    if (row_out) {
        *row_out = row;
        row = NULL;
    }
out:
    json_decref(existing);
    json_decref(store);
    json_decref(row);
    return ok;
}

static void dv_entity_id(const dv_t *d, json_t *row, char *out, size_t size)
{
    snprintf(out, size, "%s%s(%s)", d->ctx->base_url, d->t->entity_set,
             json_string_value(json_object_get(row, d->t->id_column)));
}

static void dv_send_written(dv_t *d, json_t *row, bool created, bool repr, bool is_post)
{
    char eid[1024];
    dv_entity_id(d, row, eid, sizeof(eid));
    if (repr) {
        json_t *o = dv_out(d->t, row, NULL);
        char ctxs[1024];
        emu_service_context(d->ctx, d->t, NULL, "/$entity", ctxs, sizeof(ctxs));
        json_t *full = json_pack("{s:s}", "@odata.context", ctxs);
        json_object_update(full, o);
        json_decref(o);
        const char *etag = json_string_value(json_object_get(full, "@odata.etag"));
        char et[64];
        snprintf(et, sizeof(et), "%s", etag ? etag : "");
        emu_resp_json(d->resp, created || is_post ? 201 : 200, full);
        if (et[0])
            emu_resp_header(d->resp, "ETag", et);
        emu_resp_header(d->resp, "Preference-Applied", "return=representation");
    } else {
        emu_resp_raw(d->resp, 204, "application/json", "", 0);
    }
    emu_resp_header(d->resp, "OData-EntityId", eid);
}

static json_t *dv_parse_body(dv_t *d)
{
    const char *ct = emu_req_header(d->req, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        emu_resp_error(d->resp, 415, DV_E_PAYLOAD,
                       "The content type '%s' is not supported; use application/json.", ct);
        return NULL;
    }
    json_error_t je;
    json_t *body = dw_json_loadb(d->req->body, d->req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!body || !json_is_object(body)) {
        emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                       "Error identified in Payload provided by the user for Entity :'%s'. The payload is not a valid JSON object (line %d, column %d: %s).",
                       d->t->name, body ? 1 : je.line, body ? 1 : je.column, body ? "not an object" : je.text);
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Writes run in their own transaction, or inside a $batch change set's (req->txn), which the
 * batch executor begins, commits and rolls back. */
static bool dv_begin(dv_t *d)
{
    char errstr[512];
    if (d->req->txn)
        return true;
    dw_err_t err = emu_store_begin_write(d->ctx->store, d->pg, errstr, sizeof(errstr));
    if (err)
        dv_pg_error(d, err, errstr);
    return !err;
}

static void dv_rollback(dv_t *d)
{
    if (!d->req->txn)
        dw_pg_rollback(d->pg, NULL, 0);
}

static bool dv_commit(dv_t *d)
{
    char errstr[512];
    if (d->req->txn)
        return true;
    dw_err_t err = dw_pg_commit(d->pg, errstr, sizeof(errstr));
    if (err)
        dv_pg_error(d, err, errstr);
    return !err;
}

static void dv_single_write(dv_t *d, const dv_key_t *k, int mode, const dv_prefer_t *pf)
{
    json_t *body = dv_parse_body(d), *row = NULL;
    bool created = false;
    if (!body)
        return;
    if (!d->attempt && emu_faults_take_write(d->ctx->faults, d->req, d->resp)) {
        json_decref(body);
        return;
    }
    if (!dv_begin(d)) {
        json_decref(body);
        return;
    }
    if (dv_write_one(d, k, body, mode, emu_req_header(d->req, "If-Match"),
                     emu_req_header(d->req, "If-None-Match"), &row, &created) &&
        dv_commit(d)) {
        dv_send_written(d, row, created, pf->repr, mode == DV_CREATE);
    } else {
        dv_rollback(d);
    }
    json_decref(row);
    json_decref(body);
}

static void dv_delete(dv_t *d, const dv_key_t *k)
{
    char errstr[512];
    json_t *existing = NULL;
    if ((!d->attempt && emu_faults_take_write(d->ctx->faults, d->req, d->resp)) || !dv_begin(d))
        return;
    dw_err_t err = dv_fetch(d->pg, d->t, k, true, &existing, errstr, sizeof(errstr));
    const char *if_match = emu_req_header(d->req, "If-Match");
    if (err) {
        dv_pg_error(d, err, errstr);
    } else if (!existing) {
        char kd[512];
        dv_key_describe(k, kd, sizeof(kd));
        if (k->by_id)
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND, "%s With Id = %s Does Not Exist", d->t->name, k->vals[0]);
        else
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND,
                           "A record with the specified key values does not exist in %s entity (%s)",
                           d->t->name, kd);
    } else if (if_match && strcmp(if_match, "*") != 0 && !etag_matches(if_match, existing, d->t->version_col)) {
        emu_resp_error(d->resp, 412, DV_E_VERSION,
                       "The version of the existing record doesn't match the RowVersion property provided.");
    } else {
        char sql[DV_SQL_MAX] = "";
        sqlf(sql, "DELETE FROM %s WHERE \"%s\" = $1", d->t->qname, d->t->id_column);
        const char *p[1] = {json_string_value(json_object_get(existing, d->t->id_column))};
        err = dw_pg_exec(d->pg, sql, 1, p, NULL, errstr, sizeof(errstr));
        if (err)
            dv_pg_error(d, err, errstr);
        else if (dv_commit(d))
            emu_resp_raw(d->resp, 204, "application/json", "", 0);
    }
    if (d->resp->status != 204)
        dv_rollback(d);
    json_decref(existing);
}

/* ---- bulk messages --------------------------------------------------------------------------- */

/* The key of one UpsertMultiple/UpdateMultiple target: @odata.id, the id column, or the values of
 * an alternate key in the record. Returns 1 with k filled (path keeps the strings alive), 0 when
 * there is no key, -1 on error (resp filled). */
static int dv_target_key(dv_t *d, json_t *target, emu_odata_path_t *path, dv_key_t *k)
{
    const char *oid = json_string_value(json_object_get(target, "@odata.id"));
    memset(path, 0, sizeof(*path));
    if (oid) {
        char errstr[256];
        size_t bl = strlen(d->ctx->base_url);
        if (strncmp(oid, d->ctx->base_url, bl) == 0)
            oid += bl;
        if (emu_odata_path_parse(oid, path, errstr, sizeof(errstr)) || !path->has_key ||
            path->rest || strcmp(path->segment, d->t->entity_set) != 0) {
            emu_odata_path_clear(path);
            emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                           "Error identified in Payload provided by the user for Entity :'%s'. '@odata.id' is not a reference to %s.",
                           d->t->name, d->t->entity_set);
            return -1;
        }
        return dv_key_from_path(d->t, path, k, d->resp) ? 1 : -1;
    }
    memset(k, 0, sizeof(*k));
    json_t *id = json_object_get(target, d->t->id_column);
    if (json_is_string(id) && emu_odata_is_guid(json_string_value(id))) {
        k->cols[0] = d->t->id_column;
        k->vals[0] = json_string_value(id);
        k->n = 1;
        k->by_id = true;
        return 1;
    }
    for (size_t a = 0; a < d->t->nkeys; a++) {
        const emu_altkey_t *ak = &d->t->keys[a];
        bool all = true;
        for (size_t i = 0; i < ak->ncols && all; i++) {
            json_t *v = json_object_get(target, ak->cols[i]);
            all = json_is_string(v);
        }
        if (!all)
            continue;
        for (size_t i = 0; i < ak->ncols; i++) {
            k->cols[i] = ak->cols[i];
            k->vals[i] = json_string_value(json_object_get(target, ak->cols[i]));
        }
        k->n = ak->ncols;
        return 1;
    }
    return 0;
}

/* The key signature of a target (columns, which parts are NULL) and its identity string. */
static void dv_key_sig(const dv_key_t *k, char *sig, size_t size)
{
    sig[0] = '\0';
    for (size_t i = 0; i < k->n; i++) {
        size_t l = strlen(sig);
        snprintf(sig + l, size - l, "%s%s%s", i ? "," : "", k->cols[i], k->vals[i] ? "" : "=null");
    }
}

/* One SELECT ... FOR UPDATE per key signature for all targets: found[i] gets the stored row of
 * target i (new reference) or stays NULL. */
static bool dv_lookup_many(dv_t *d, const dv_key_t *keys, const int *hk, size_t n, json_t **found)
{
    char errstr[512], sig[1024], sig2[1024];
    bool *done = calloc(n ? n : 1, sizeof(bool));
    bool ok = done != NULL;
    dw_buf_t arr[EMU_ODATA_MAX_KEYS + 1];
    for (size_t i = 0; ok && i < n; i++) {
        if (!hk[i] || done[i])
            continue;
        const dv_key_t *k = &keys[i];
        dv_key_sig(k, sig, sizeof(sig));
        memset(arr, 0, sizeof(arr));
        for (size_t j = i; j < n; j++) {
            if (!hk[j] || done[j])
                continue;
            dv_key_sig(&keys[j], sig2, sizeof(sig2));
            if (strcmp(sig, sig2) != 0)
                continue;
            done[j] = true;
            size_t a = 0;
            for (size_t c = 0; c < k->n; c++) {
                if (keys[j].vals[c]) {
                    dw_pg_array_add(&arr[a], keys[j].vals[c]);
                    a++;
                }
            }
            char ord[32];
            snprintf(ord, sizeof(ord), "%zu", j);
            dw_pg_array_add(&arr[a], ord);
        }
        char sql[DV_SQL_MAX] = "";
        const char *params[EMU_ODATA_MAX_KEYS + 1];
        int np = 0;
        for (size_t c = 0; c < k->n; c++)
            if (k->vals[c])
                np++;
        sqlf(sql, "SELECT k.ord, to_jsonb(x) FROM unnest(");
        for (int a = 0; a <= np; a++)
            sqlf(sql, "%s$%d::text[]", a ? ", " : "", a + 1);
        sqlf(sql, ") AS k(");
        for (int a = 0; a < np; a++)
            sqlf(sql, "v%d, ", a);
        /* LATERAL + LIMIT 1: one probe of the key's unique index per target, whatever the
         * statistics say (a plain join is planned as a hash join over a sequential scan of the
         * whole table when it was never analyzed, e.g. right after a bulk load: O(table) per
         * request) */
        sqlf(sql, "ord) CROSS JOIN LATERAL (SELECT * FROM %s y WHERE true", d->t->qname);
        int a = 0;
        for (size_t c = 0; c < k->n; c++) {
            const emu_col_t *col = emu_table_col(d->t, k->cols[c]);
            if (k->vals[c]) {
                sqlf(sql, " AND y.\"%s\" = k.v%d::%s", k->cols[c], a, emu_col_sql_type(col));
                a++;
            } else {
                sqlf(sql, " AND y.\"%s\" IS NULL", k->cols[c]);
            }
        }
        sqlf(sql, " LIMIT 1 FOR UPDATE) x");
        for (int p = 0; p <= np; p++) {
            params[p] = dw_pg_array_end(&arr[p]);
            if (!params[p])
                ok = false;
        }
        PGresult *res = NULL;
        dw_err_t err = ok ? dw_pg_exec(d->pg, sql, np + 1, params, &res, errstr, sizeof(errstr)) : DW_ERR_NOMEM;
        if (err) {
            dv_pg_error(d, err, errstr);
            ok = false;
        }
        for (int r = 0; ok && r < PQntuples(res); r++) {
            size_t ord = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
            if (ord < n && !found[ord])
                found[ord] = dw_json_loadb(PQgetvalue(res, r, 1), (size_t)PQgetlength(res, r, 1), 0, NULL);
        }
        PQclear(res);
        for (int p = 0; p <= np; p++)
            free(arr[p].p);
    }
    free(done);
    return ok;
}

/* One value of a column array (dw_pg_array_add): NULL for a missing or null value; a string as it is;
 * other values as dw_mapper_dumps writes them (a real in the shortest form that reads back as the
 * same double, "1.0" for an integral one: a numeric column stores 17032.2 as the client sent it,
 * not jansson's 17-digit 17032.200000000001). */
static void dv_arr_value(dw_buf_t *a, json_t *v)
{
    char num[32];
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_NULL:
        dw_pg_array_add(a, NULL);
        break;
    case JSON_STRING:
        dw_pg_array_add(a, json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        dw_pg_array_add(a, num);
        break;
    case JSON_TRUE:
        dw_pg_array_add(a, "true");
        break;
    case JSON_FALSE:
        dw_pg_array_add(a, "false");
        break;
    default: {
        char *text = dw_mapper_dumps(v, 0, NULL);
        if (text)
            dw_pg_array_add(a, text);
        else
            a->fail = true;
        free(text);
    }
    }
}

/* INSERT (rows) or UPDATE by id (rows with every column) in one statement. The rows go in as one
 * array per column (unnest), the form PostgreSQL reads fastest: as a JSON document (jsonb or
 * json_populate_recordset) the text was parsed twice or a binary document built per row, which
 * was a third of the emulator's PostgreSQL time under a bulk load. */
static bool dv_bulk_write(dv_t *d, json_t *rows, bool insert)
{
    char errstr[512];
    const emu_table_t *t = d->t;
    size_t nrows = json_array_size(rows), nc = 0;
    if (!nrows)
        return true;
    const emu_col_t **cols = calloc(t->ncols ? t->ncols : 1, sizeof(*cols));
    dw_buf_t *arr = calloc(t->ncols ? t->ncols : 1, sizeof(*arr));
    const char **params = calloc(t->ncols ? t->ncols : 1, sizeof(*params));
    dw_buf_t sql = {0};
    bool ok = cols && arr && params;
    for (size_t i = 0; ok && i < t->ncols; i++)
        if (!t->cols[i].dropped)
            cols[nc++] = &t->cols[i];
    for (size_t c = 0; ok && c < nc; c++) {
        for (size_t r = 0; r < nrows; r++)
            dv_arr_value(&arr[c], json_object_get(json_array_get(rows, r), cols[c]->name));
        if (!(params[c] = dw_pg_array_end(&arr[c])))
            ok = false;
    }
    if (ok && insert) {
        dw_buf_printf(&sql, "INSERT INTO %s (", t->qname);
        for (size_t c = 0; c < nc; c++)
            dw_buf_printf(&sql, "%s\"%s\"", c ? ", " : "", cols[c]->name);
        DW_BUF_LIT(&sql, ") SELECT * FROM unnest(");
        for (size_t c = 0; c < nc; c++)
            dw_buf_printf(&sql, "%s$%zu::%s[]", c ? ", " : "", c + 1, emu_col_sql_type(cols[c]));
        DW_BUF_LIT(&sql, ")");
    } else if (ok) {
        dw_buf_printf(&sql, "UPDATE %s AS x SET (", t->qname);
        bool first = true;
        for (size_t c = 0; c < nc; c++) {
            if (strcmp(cols[c]->name, t->id_column) == 0)
                continue;
            dw_buf_printf(&sql, "%s\"%s\"", first ? "" : ", ", cols[c]->name);
            first = false;
        }
        DW_BUF_LIT(&sql, ") = ROW(");
        first = true;
        for (size_t c = 0; c < nc; c++) {
            if (strcmp(cols[c]->name, t->id_column) == 0)
                continue;
            dw_buf_printf(&sql, "%sr.\"%s\"", first ? "" : ", ", cols[c]->name);
            first = false;
        }
        DW_BUF_LIT(&sql, ") FROM unnest(");
        for (size_t c = 0; c < nc; c++)
            dw_buf_printf(&sql, "%s$%zu::%s[]", c ? ", " : "", c + 1, emu_col_sql_type(cols[c]));
        DW_BUF_LIT(&sql, ") AS r(");
        for (size_t c = 0; c < nc; c++)
            dw_buf_printf(&sql, "%s\"%s\"", c ? ", " : "", cols[c]->name);
        dw_buf_printf(&sql, ") WHERE x.\"%s\" = r.\"%s\"", t->id_column, t->id_column);
    }
    dw_err_t err = DW_ERR_NOMEM;
    if (ok && !sql.fail)
        err = dw_pg_exec(d->pg, sql.p, (int)nc, params, NULL, errstr, sizeof(errstr));
    else
        snprintf(errstr, sizeof(errstr), "out of memory");
    if (err)
        dv_pg_error(d, err, errstr);
    for (size_t c = 0; arr && c < t->ncols; c++)
        free(arr[c].p);
    free(arr);
    free(params);
    free(cols);
    free(sql.p);
    return !err;
}

/* CreateMultiple / UpdateMultiple / UpsertMultiple: validation in memory, one keyed lookup per key
 * shape, one INSERT and one UPDATE for the whole request, all in one transaction (all or nothing).
 * A record named twice in one request gets both writes in order (the second updates the first). */
static void dv_multiple(dv_t *d, const char *message)
{
    int mode = strcmp(message, "CreateMultiple") == 0   ? DV_CREATE
               : strcmp(message, "UpdateMultiple") == 0 ? DV_UPDATE
                                                        : DV_UPSERT;
    json_t *body = dv_parse_body(d), *ids = json_array(), *slotmap = json_object();
    json_t *inserts = json_array(), *updates = json_array();
    emu_odata_path_t *paths = NULL;
    dv_key_t *keys = NULL;
    int *hk = NULL;
    json_t **found = NULL, **slots = NULL, **pre = NULL;
    size_t n = 0;
    bool in_tx = false;
    if (!body)
        goto out;
    json_t *targets = json_object_get(body, "Targets");
    if (!json_is_array(targets) || json_array_size(targets) == 0 ||
        json_array_size(targets) > DV_MAX_TARGETS) {
        emu_resp_error(d->resp, 400, DV_E_INVALIDARG,
                       "The Targets parameter must be an array of 1 to %d entities.", DV_MAX_TARGETS);
        goto out;
    }
    n = json_array_size(targets);
    char want[200];
    snprintf(want, sizeof(want), "Microsoft.Dynamics.CRM.%s", d->t->name);
    for (size_t i = 0; i < n; i++) {
        json_t *tg = json_array_get(targets, i);
        const char *ty = json_string_value(json_object_get(tg, "@odata.type"));
        if (!json_is_object(tg) || !ty || strcmp(ty, want) != 0) {
            emu_resp_error(d->resp, 400, DV_E_PAYLOAD,
                           "Error identified in Payload provided by the user for Entity :'%s'. Targets[%zu]: '@odata.type' must be '%s'.",
                           d->t->name, i, want);
            goto out;
        }
    }
    paths = calloc(n, sizeof(*paths));
    keys = calloc(n, sizeof(*keys));
    hk = calloc(n, sizeof(*hk));
    found = calloc(n, sizeof(*found));
    slots = calloc(n, sizeof(*slots));
    pre = calloc(n, sizeof(*pre));
    if (!paths || !keys || !hk || !found || !slots || !pre || !ids || !slotmap || !inserts || !updates) {
        emu_resp_error(d->resp, 500, DV_E_UNEXPECTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        hk[i] = mode == DV_CREATE ? 0 : dv_target_key(d, json_array_get(targets, i), &paths[i], &keys[i]);
        if (hk[i] < 0) {
            hk[i] = 0;
            goto out;
        }
        if (hk[i] == 0 && mode == DV_UPDATE) {
            emu_resp_error(d->resp, 400, DV_E_INVALIDARG,
                           "Targets[%zu]: an UpdateMultiple target needs the primary key or an alternate key.", i);
            goto out;
        }
    }
    if (!d->attempt && emu_faults_take_write(d->ctx->faults, d->req, d->resp))
        goto out;
    /* The columns of each target (conversions, @odata.bind lookups) do not depend on whether the
     * record exists unless the target names the id column: they are worked out before the write
     * lock, which serialises the writers of the schema, so that it is held only for the keyed
     * lookups, the merge and the statements. */
    d->bind_cache = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *tg = json_array_get(targets, i);
        if (d->t->id_column && json_object_get(tg, d->t->id_column))
            continue; /* done inside, once it is known whether the record exists */
        json_t *store = json_object(); /* dv_in skips @odata.id like every annotation but binds */
        if (hk[i])
            key_to_store(d->t, &keys[i], store);
        bool ok = dv_in(d, tg, mode == DV_CREATE, store);
        if (!ok) {
            json_decref(store);
            goto out;
        }
        pre[i] = store;
    }
    if (!dv_begin(d))
        goto out;
    in_tx = true;
    if (!dv_lookup_many(d, keys, hk, n, found))
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *tg = json_array_get(targets, i);
        char ks[4096] = "";
        json_t *slot = NULL;
        if (hk[i]) {
            dv_key_sig(&keys[i], ks, sizeof(ks));
            for (size_t c = 0; c < keys[i].n; c++) {
                size_t l = strlen(ks);
                snprintf(ks + l, sizeof(ks) - l, "\x1f%s", keys[i].vals[c] ? keys[i].vals[c] : "");
            }
            json_t *at = json_object_get(slotmap, ks);
            if (at)
                slot = slots[json_integer_value(at)];
        }
        json_t *copy = NULL, *store = pre[i];
        pre[i] = NULL;
        if (!store) {
            copy = json_deep_copy(tg);
            store = json_object();
            json_object_del(copy, "@odata.id");
            if (hk[i] && keys[i].by_id && mode != DV_CREATE)
                json_object_del(copy, d->t->id_column);
            if (hk[i])
                key_to_store(d->t, &keys[i], store);
        }
        bool ok;
        if (slot || found[i]) {
            ok = !copy || dv_in(d, copy, false, store);
            if (ok && !slot) {
                slot = found[i];
                found[i] = NULL;
                slots[i] = slot;
                json_array_append(updates, slot);
                if (hk[i])
                    json_object_set_new(slotmap, ks, json_integer((json_int_t)i));
            }
            if (ok)
                json_object_update(slot, store);
        } else if (mode == DV_UPDATE) {
            char kd[512];
            dv_key_describe(&keys[i], kd, sizeof(kd));
            if (keys[i].by_id)
                emu_resp_error(d->resp, 404, DV_E_NOT_FOUND, "%s With Id = %s Does Not Exist", d->t->name, keys[i].vals[0]);
            else
                emu_resp_error(d->resp, 404, DV_E_NOT_FOUND,
                               "A record with the specified key values does not exist in %s entity (%s)",
                               d->t->name, kd);
            ok = false;
        } else {
            ok = (!copy || dv_in(d, copy, true, store)) && dv_complete_create(d, store);
            if (ok) {
                slots[i] = json_incref(store);
                json_array_append(inserts, store);
                if (hk[i])
                    json_object_set_new(slotmap, ks, json_integer((json_int_t)i));
                if (mode == DV_CREATE)
                    json_array_append(ids, json_object_get(store, d->t->id_column));
            }
        }
        json_decref(copy);
        json_decref(store);
        if (!ok)
            goto out;
    }
    if (!dv_bulk_write(d, inserts, true) || !dv_bulk_write(d, updates, false))
        goto out;
    in_tx = false;
    if (!dv_commit(d))
        goto out;
    if (mode == DV_CREATE) {
        char ctxs[600];
        snprintf(ctxs, sizeof(ctxs), "%s$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                 d->ctx->base_url);
        emu_resp_json(d->resp, 200, json_pack("{s:s,s:O}", "@odata.context", ctxs, "Ids", ids));
    } else {
        emu_resp_raw(d->resp, 204, "application/json", "", 0);
    }
out:
    if (in_tx)
        dv_rollback(d);
    for (size_t i = 0; i < n; i++) {
        if (paths && hk && hk[i] && paths[i].segment)
            emu_odata_path_clear(&paths[i]);
        if (found)
            json_decref(found[i]);
        if (slots)
            json_decref(slots[i]);
        if (pre)
            json_decref(pre[i]);
    }
    free(pre);
    free(paths);
    free(keys);
    free(hk);
    free(found);
    free(slots);
    json_decref(d->bind_cache);
    d->bind_cache = NULL;
    json_decref(inserts);
    json_decref(updates);
    json_decref(slotmap);
    json_decref(ids);
    json_decref(body);
}

/* ---- reads ----------------------------------------------------------------------------------- */

static void dv_get_one(dv_t *d, const dv_key_t *k, const emu_odata_query_t *q)
{
    char errstr[512];
    json_t *row = NULL;
    if (!dv_check_query_cols(d, q))
        return;
    dw_err_t err = dv_fetch(d->pg, d->t, k, false, &row, errstr, sizeof(errstr));
    if (err) {
        dv_pg_error(d, err, errstr);
        return;
    }
    if (!row) {
        char kd[512];
        dv_key_describe(k, kd, sizeof(kd));
        if (k->by_id)
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND, "%s With Id = %s Does Not Exist", d->t->name, k->vals[0]);
        else
            emu_resp_error(d->resp, 404, DV_E_NOT_FOUND,
                           "A record with the specified key values does not exist in %s entity (%s)",
                           d->t->name, kd);
        return;
    }
    const char *inm = emu_req_header(d->req, "If-None-Match");
    if (inm && strcmp(inm, "null") != 0 && etag_matches(inm, row, d->t->version_col)) {
        emu_resp_raw(d->resp, 304, "application/json", "", 0);
        json_decref(row);
        return;
    }
    json_t *o = dv_out(d->t, row, q);
    char ctxs[1024];
    emu_service_context(d->ctx, d->t, q, "/$entity", ctxs, sizeof(ctxs));
    json_t *full = json_pack("{s:s}", "@odata.context", ctxs);
    json_object_update(full, o);
    char et[64];
    snprintf(et, sizeof(et), "%s", json_string_value(json_object_get(o, "@odata.etag")) ? json_string_value(json_object_get(o, "@odata.etag")) : "");
    json_decref(o);
    emu_resp_json(d->resp, 200, full);
    if (et[0])
        emu_resp_header(d->resp, "ETag", et);
    json_decref(row);
}

/* nextLink: the request's own options with $skiptoken replaced. */
static void dv_next_link(dv_t *d, const char *skiptoken, const char *drop, char *out, size_t size)
{
    snprintf(out, size, "%s%s?", d->ctx->base_url, d->t->entity_set);
    bool first = true;
    for (size_t i = 0; i < d->req->nargs; i++) {
        if (strcmp(d->req->arg_names[i], "$skiptoken") == 0 ||
            (drop && strcmp(d->req->arg_names[i], drop) == 0))
            continue;
        if (!first)
            strncat(out, "&", size - strlen(out) - 1);
        first = false;
        emu_odata_url_encode(out, size, d->req->arg_names[i]);
        strncat(out, "=", size - strlen(out) - 1);
        emu_odata_url_encode(out, size, d->req->arg_values[i]);
    }
    if (!first)
        strncat(out, "&", size - strlen(out) - 1);
    strncat(out, "$skiptoken=", size - strlen(out) - 1);
    emu_odata_url_encode(out, size, skiptoken);
}

static void dv_order_sql(const dv_t *d, const emu_odata_query_t *q, char *sql)
{
    sqlf(sql, " ORDER BY ");
    for (size_t i = 0; i < q->norderby; i++) {
        const emu_col_t *c = dv_col_out(d->t, q->orderby[i].col);
        sqlf(sql, "x.\"%s\" %s, ", c->name, q->orderby[i].desc ? "DESC NULLS LAST" : "ASC NULLS FIRST");
    }
    sqlf(sql, "x.\"%s\"", d->t->id_column);
}

static void dv_collection(dv_t *d, const emu_odata_query_t *q, const dv_prefer_t *pf)
{
    char errstr[512];
    dw_filter_t *f = NULL;
    json_t *value = json_array();
    PGresult *res = NULL;
    if (!dv_check_query_cols(d, q))
        goto out;
    if (q->expand) {
        emu_resp_error(d->resp, 501, DV_E_NOTIMPL, "$expand is not implemented by dw-emulator.");
        goto out;
    }
    if (q->filter) {
        f = dw_filter_compile(q->filter, errstr, sizeof(errstr));
        if (!f) {
            emu_resp_error(d->resp, 400, DV_E_QUERY, "Syntax error in $filter: %s", errstr);
            goto out;
        }
        const char *cols[64];
        size_t nc = dw_filter_columns(f, cols, 64);
        for (size_t i = 0; i < nc && i < 64; i++) {
            if (!dv_col_out(d->t, cols[i])) {
                emu_resp_error(d->resp, 400, DV_E_QUERY,
                               "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.",
                               cols[i], d->t->name);
                goto out;
            }
        }
    }
    long long offset = 0, returned = 0;
    if (q->skiptoken) {
        char tail;
        if (sscanf(q->skiptoken, "p%lld.%lld%c", &offset, &returned, &tail) != 2 || offset < 0 ||
            returned < 0) {
            emu_resp_error(d->resp, 400, DV_E_INVALIDARG, "The $skiptoken is not valid.");
            goto out;
        }
    }
    long long page = pf->maxpagesize > 0 && pf->maxpagesize <= d->ctx->max_page_size ? pf->maxpagesize
                                                                                    : d->ctx->max_page_size;
    if (q->top >= 0) {
        long long left = q->top - returned;
        if (left < page)
            page = left < 0 ? 0 : left;
    }
    /* the rows are made JSON only once they are chosen: to_jsonb in the select list of the
     * OFFSET query itself ran for every row skipped too (and, without an index for the order, for
     * every row of the table), which made a page deep in a 40,000-row table take 4.7 s */
    char sql[DV_SQL_MAX] = "";
    sqlf(sql, "SELECT to_jsonb(x) FROM (SELECT * FROM %s x", d->t->qname);
    dv_order_sql(d, q, sql);
    sqlf(sql, " LIMIT $1 OFFSET $2) x");
    dv_order_sql(d, q, sql);
    long long got = 0, next_offset = -1;
    bool more = page > 0;
    while (more && next_offset < 0) {
        char lim[32], off[32];
        snprintf(lim, sizeof(lim), "%d", DV_CHUNK);
        snprintf(off, sizeof(off), "%lld", offset);
        const char *p[2] = {lim, off};
        dw_err_t err = dw_pg_exec(d->pg, sql, 2, p, &res, errstr, sizeof(errstr));
        if (err) {
            dv_pg_error(d, err, errstr);
            goto out;
        }
        int nt = PQntuples(res);
        more = nt == DV_CHUNK;
        for (int i = 0; i < nt && next_offset < 0; i++) {
            json_t *row = dw_json_loadb(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), 0, NULL);
            json_t *full = row ? dv_out(d->t, row, NULL) : NULL;
            if (full && (!f || dw_filter_match(f, full))) {
                if (got < page) {
                    json_array_append_new(value, dv_out(d->t, row, q));
                    got++;
                } else {
                    next_offset = offset + i; /* the first row of the next page */
                }
            }
            json_decref(full);
            json_decref(row);
        }
        PQclear(res);
        res = NULL;
        if (next_offset >= 0)
            break;
        offset += nt;
        /* a full page ending with the chunk: the next chunk tells whether a row follows (no
         * nextLink to an empty page, as Dataverse gives none) */
    }
    char ctxs[1024];
    emu_service_context(d->ctx, d->t, q, "", ctxs, sizeof(ctxs));
    json_t *o = json_pack("{s:s}", "@odata.context", ctxs);
    if (q->count) {
        /* $count: the matching rows, at most 5,000 (Dataverse's limit) */
        long long total = 0;
        char csql[DV_SQL_MAX] = "";
        sqlf(csql, "SELECT to_jsonb(x) FROM (SELECT * FROM %s x ORDER BY x.\"%s\" LIMIT $1 OFFSET $2) x",
             d->t->qname, d->t->id_column);
        long long coff = 0;
        for (bool cm = true; cm && total <= DV_COUNT_CAP;) {
            char lim[32], off[32];
            snprintf(lim, sizeof(lim), "%d", DV_CHUNK);
            snprintf(off, sizeof(off), "%lld", coff);
            const char *p[2] = {lim, off};
            dw_err_t err = dw_pg_exec(d->pg, csql, 2, p, &res, errstr, sizeof(errstr));
            if (err) {
                json_decref(o);
                dv_pg_error(d, err, errstr);
                goto out;
            }
            int nt = PQntuples(res);
            cm = nt == DV_CHUNK;
            for (int i = 0; i < nt; i++) {
                if (!f) {
                    total++;
                    continue;
                }
                json_t *row = dw_json_loadb(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), 0, NULL);
                json_t *full = row ? dv_out(d->t, row, NULL) : NULL;
                if (full && dw_filter_match(f, full))
                    total++;
                json_decref(full);
                json_decref(row);
            }
            coff += nt;
            PQclear(res);
            res = NULL;
        }
        json_object_set_new(o, "@odata.count", json_integer(total > DV_COUNT_CAP ? DV_COUNT_CAP : total));
        if (total > DV_COUNT_CAP)
            json_object_set_new(o, "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded", json_true());
    }
    json_object_set(o, "value", value);
    if (next_offset >= 0 && (q->top < 0 || returned + got < q->top)) {
        char tok[64], link[4096];
        snprintf(tok, sizeof(tok), "p%lld.%lld", next_offset, returned + got);
        dv_next_link(d, tok, NULL, link, sizeof(link));
        json_object_set_new(o, "@odata.nextLink", json_string(link));
    }
    emu_resp_json(d->resp, 200, o);
    if (pf->maxpagesize > 0) {
        char pa[64];
        snprintf(pa, sizeof(pa), "odata.maxpagesize=%lld", page);
        emu_resp_header(d->resp, "Preference-Applied", pa);
    }
out:
    PQclear(res);
    json_decref(value);
    dw_filter_destroy(f);
}

/* ---- change tracking ------------------------------------------------------------------------- */

static void dv_token_make(long long version, char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, size, "%lld!%02d/%02d/%04d %02d:%02d:%02d", version, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Parse "<version>!MM/dd/yyyy HH:mm:ss". */
static bool dv_token_parse(const char *tok, long long *version, time_t *issued)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char tail;
    int used = 0;
    if (sscanf(tok, "%lld!%d/%d/%d %d:%d:%d%n%c", version, &tm.tm_mon, &tm.tm_mday, &tm.tm_year,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used, &tail) != 7 || tok[used] != '\0')
        return false;
    if (*version < 0 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_year < 1970 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_mon -= 1;
    tm.tm_year -= 1900;
    *issued = timegm(&tm);
    return true;
}

/* Change tracking needs no writers' lock. Every row and every tombstone carries the id of the
 * transaction that wrote it (the xid8 columns "_xid" and _deleted.xid, stamped by the triggers,
 * emu_store.c). A reader works in one REPEATABLE READ snapshot whose horizon
 * H = pg_snapshot_xmin(snapshot) has every transaction below it ended: what they wrote is final
 * in the snapshot (visible when they committed, absent when they aborted). A delta from the token
 * F returns the rows and tombstones written by the transactions in [F, H) and hands out H as the
 * next token; what transactions at or above H wrote (in flight, or committed but not yet below
 * the horizon) is withheld until a later delta. Horizons never decrease, so a chain of tokens
 * cuts the transaction ids into disjoint intervals and each committed change is returned by
 * exactly one delta; a row written again later leaves the interval of its old write and comes
 * back, with its new state, in the interval of the new one. Pages of one delta keep [F, H) and
 * continue after the last (transaction, version) returned. docs/emulators.md has the argument. */

#define DV_HORIZON_WAIT_MS 5000
#define DV_EXPIRE_WAIT_MS  30000

/* Wait until every transaction that had started when this was called has ended (horizon past
 * them), polling every millisecond for at most wait_ms: a delta asked for right after a write
 * then returns it. true when reached. The horizon is the cluster's, so a long transaction
 * elsewhere can only delay changes (after wait_ms the delta answers without them), never lose
 * them. after: NULL (the next transaction id now), or an xid8 that the horizon must pass. */
static bool dv_horizon_wait(dw_pg_t *pg, const char *after, int wait_ms)
{
    char errstr[256], x0[32];
    PGresult *res = NULL;
    bool reached = false;
    if (after) {
        snprintf(x0, sizeof(x0), "%s", after);
    } else {
        if (dw_pg_exec(pg, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text", 0, NULL, &res,
                       errstr, sizeof(errstr)))
            goto out;
        snprintf(x0, sizeof(x0), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        res = NULL;
    }
    const char *p[1] = {x0};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long long waited = 0; !reached && waited <= wait_ms;) {
        if (dw_pg_exec(pg, after ? "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8"
                                 : "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8",
                       1, p, &res, errstr, sizeof(errstr)))
            break;
        reached = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        res = NULL;
        if (!reached)
            usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &t);
        waited = (t.tv_sec - t0.tv_sec) * 1000LL + (t.tv_nsec - t0.tv_nsec) / 1000000;
    }
out:
    PQclear(res);
    return reached;
}

dw_err_t emu_dv_expire_tokens(emu_ctx_t *ctx, char *errstr, size_t errstr_size)
{
    dw_pg_t *pg = emu_store_acquire(ctx->store, errstr, errstr_size);
    PGresult *res = NULL;
    char e[32] = "";
    if (!pg)
        return DW_ERR_PG_CONN;
    /* Tokens are horizons. The call stores its own transaction id E and tokens <= E are
     * refused. A token issued before the call came from a
     * snapshot taken before E was assigned, so it is <= E (a horizon is at most the next
     * transaction id of its snapshot); the call returns only once the horizon has passed E, so a
     * token issued afterwards is > E and stays valid. */
    const char *schema = emu_store_schema(ctx->store);
    char sql[DV_SQL_MAX] = "";
    sqlf(sql, "INSERT INTO \"%s\".\"_state\"(k, v) VALUES ('ct_min_xid', pg_current_xact_id()::text)"
         " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v RETURNING v", schema);
    dw_err_t err = dw_pg_begin(pg, errstr, errstr_size);
    if (!err)
        err = dw_pg_exec(pg, sql, 0, NULL, &res, errstr, errstr_size);
    if (!err)
        snprintf(e, sizeof(e), "%s", PQgetvalue(res, 0, 0));
    if (!err)
        err = dw_pg_commit(pg, errstr, errstr_size);
    else
        dw_pg_rollback(pg, NULL, 0);
    if (!err && !dv_horizon_wait(pg, e, DV_EXPIRE_WAIT_MS))
        err = dw_errf(DW_ERR_TIMEOUT, errstr, errstr_size,
                      "tokens are expired, but a transaction older than the call is still running: "
                      "tokens issued before it ends may be refused too");
    PQclear(res);
    emu_store_release(ctx->store, pg);
    return err;
}

static void dv_changes(dv_t *d, const emu_odata_query_t *q, const dv_prefer_t *pf)
{
    char errstr[512], sql[DV_SQL_MAX] = "";
    const char *schema = emu_store_schema(d->ctx->store);
    PGresult *res = NULL;
    json_t *value = json_array();
    bool in_tx = false;
    if (q->filter || q->norderby || q->top >= 0 || q->expand || q->count) {
        emu_resp_error(d->resp, 400, DV_E_QUERY,
                       "Change tracking does not support $filter, $orderby, $top, $expand or $count.");
        goto out;
    }
    if (!dv_check_query_cols(d, q))
        goto out;
    /* from: the token's horizon (0: the initial full sync), hz: this delta's horizon, (cx, cv):
     * the last (transaction, version) returned; pages continue after it */
    long long from = 0, hz = 0, cx = 0, cv = 0, minx = 0, hnow = 0;
    char phase = 'u';
    bool delta = false;
    if (q->skiptoken) {
        char tail;
        if (sscanf(q->skiptoken, "c%c.%lld.%lld.%lld.%lld%c", &phase, &from, &cx, &cv, &hz, &tail) != 5 ||
            (phase != 'u' && phase != 'd') || from < 0 || cx < 0 || cv < 0 || hz < from) {
            emu_resp_error(d->resp, 400, DV_E_INVALIDARG, "The $skiptoken is not valid.");
            goto out;
        }
        delta = from > 0;
    } else {
        dv_horizon_wait(d->pg, NULL, DV_HORIZON_WAIT_MS);
    }
    dw_err_t err = dw_pg_exec(d->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
                              errstr, sizeof(errstr));
    if (err) {
        dv_pg_error(d, err, errstr);
        goto out;
    }
    in_tx = true;
    /* the first statement takes the snapshot; its horizon and the expiry floor */
    sqlf(sql, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text,"
         " coalesce((SELECT v FROM \"%s\".\"_state\" WHERE k = 'ct_min_xid'), '0')", schema);
    err = dw_pg_exec(d->pg, sql, 0, NULL, &res, errstr, sizeof(errstr));
    if (err) {
        dv_pg_error(d, err, errstr);
        goto out;
    }
    hnow = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    minx = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    res = NULL;
    if (q->deltatoken && !q->skiptoken) {
        time_t issued;
        long long v;
        if (!dv_token_parse(q->deltatoken, &v, &issued) || v == 0) {
            emu_resp_error(d->resp, 400, DV_E_INVALIDARG, "The delta token '%.80s' is not valid.", q->deltatoken);
            goto out;
        }
        if (v <= minx || (long long)(time(NULL) - issued) > d->ctx->change_retention_s) {
            emu_resp_error(d->resp, 400, DV_E_EXPIRED,
                           "Version stamp associated with the client has expired. Please perform a full sync.");
            goto out;
        }
        from = v;
        delta = true;
    }
    if (!q->skiptoken)
        hz = hnow > from ? hnow : from;
    long long page = pf->maxpagesize > 0 && pf->maxpagesize <= d->ctx->max_page_size ? pf->maxpagesize
                                                                                    : d->ctx->max_page_size;
    long long got = 0;
    bool more = false;
    char lim[32], f[32], h[32], a[32], b[32];
    snprintf(f, sizeof(f), "%lld", from);
    snprintf(h, sizeof(h), "%lld", hz);
    if (phase == 'u') {
        const char *vc = d->t->version_col;
        sql[0] = '\0';
        sqlf(sql, "SELECT to_jsonb(x), x.\"_xid\"::text, x.\"%s\" FROM %s x WHERE x.\"_xid\" >= $1::xid8"
             " AND x.\"_xid\" < $2::xid8 AND (x.\"_xid\", x.\"%s\") > ($3::xid8, $4::bigint)"
             " ORDER BY x.\"_xid\", x.\"%s\" LIMIT $5", vc, d->t->qname, vc, vc);
        snprintf(a, sizeof(a), "%lld", cx);
        snprintf(b, sizeof(b), "%lld", cv);
        snprintf(lim, sizeof(lim), "%lld", page + 1);
        const char *p[5] = {f, h, a, b, lim};
        err = dw_pg_exec(d->pg, sql, 5, p, &res, errstr, sizeof(errstr));
        if (err) {
            dv_pg_error(d, err, errstr);
            goto out;
        }
        int nt = PQntuples(res);
        for (int i = 0; i < nt && got < page; i++) {
            json_t *row = dw_json_loadb(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), 0, NULL);
            if (row)
                json_array_append_new(value, dv_out(d->t, row, q));
            json_decref(row);
            cx = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            cv = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            got++;
        }
        more = nt > page;
        PQclear(res);
        res = NULL;
        if (!more) {
            phase = 'd';
            cx = cv = 0;
        }
    }
    if (phase == 'd' && delta && got < page) {
        sql[0] = '\0';
        sqlf(sql, "SELECT id, xid::text, version FROM \"%s\".\"_deleted\" WHERE entity = $1"
             " AND xid >= $2::xid8 AND xid < $3::xid8 AND (xid, version) > ($4::xid8, $5::bigint)"
             " ORDER BY xid, version LIMIT $6", schema);
        snprintf(a, sizeof(a), "%lld", cx);
        snprintf(b, sizeof(b), "%lld", cv);
        snprintf(lim, sizeof(lim), "%lld", page - got + 1);
        const char *p[6] = {d->t->name, f, h, a, b, lim};
        err = dw_pg_exec(d->pg, sql, 6, p, &res, errstr, sizeof(errstr));
        if (err) {
            dv_pg_error(d, err, errstr);
            goto out;
        }
        char dctx[600];
        snprintf(dctx, sizeof(dctx), "%s$metadata#%s/$deletedEntity", d->ctx->base_url, d->t->entity_set);
        int nt = PQntuples(res);
        long long room = page - got;
        for (int i = 0; i < nt && i < room; i++) {
            json_array_append_new(value, json_pack("{s:s,s:s,s:s}", "@odata.context", dctx, "id",
                                                   PQgetvalue(res, i, 0), "reason", "deleted"));
            cx = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            cv = strtoll(PQgetvalue(res, i, 2), NULL, 10);
            got++;
        }
        more = nt > room;
        PQclear(res);
        res = NULL;
    } else if (phase == 'd' && delta) {
        more = true; /* the page is full: the deletes follow on the next page */
    } else if (phase == 'd' && !delta) {
        more = false;
    }
    char ctxs[1024];
    emu_service_context(d->ctx, d->t, q, delta ? "/$delta" : "", ctxs, sizeof(ctxs));
    json_t *o = json_pack("{s:s,s:O}", "@odata.context", ctxs, "value", value);
    char link[4096];
    if (more) {
        char tok[160];
        snprintf(tok, sizeof(tok), "c%c.%lld.%lld.%lld.%lld", phase, from, cx, cv, hz);
        dv_next_link(d, tok, "$deltatoken", link, sizeof(link));
        json_object_set_new(o, "@odata.nextLink", json_string(link));
    } else {
        char tok[128];
        dv_token_make(hz, tok, sizeof(tok));
        snprintf(link, sizeof(link), "%s%s?", d->ctx->base_url, d->t->entity_set);
        if (q->nselect) {
            strncat(link, "$select=", sizeof(link) - strlen(link) - 1);
            for (size_t i = 0; i < q->nselect; i++) {
                if (i)
                    strncat(link, ",", sizeof(link) - strlen(link) - 1);
                strncat(link, q->select[i], sizeof(link) - strlen(link) - 1);
            }
            strncat(link, "&", sizeof(link) - strlen(link) - 1);
        }
        strncat(link, "$deltatoken=", sizeof(link) - strlen(link) - 1);
        emu_odata_url_encode(link, sizeof(link), tok);
        json_object_set_new(o, "@odata.deltaLink", json_string(link));
    }
    dw_pg_commit(d->pg, NULL, 0);
    in_tx = false;
    emu_resp_json(d->resp, 200, o);
    char pa[96];
    if (pf->maxpagesize > 0)
        snprintf(pa, sizeof(pa), "odata.track-changes,odata.maxpagesize=%lld", page);
    else
        snprintf(pa, sizeof(pa), "odata.track-changes");
    emu_resp_header(d->resp, "Preference-Applied", pa);
out:
    if (in_tx)
        dw_pg_rollback(d->pg, NULL, 0);
    PQclear(res);
    json_decref(value);
}

/* ---- metadata -------------------------------------------------------------------------------- */

static const char *attr_type(const emu_col_t *c, const emu_table_t *t)
{
    switch (c->type) {
    case EMU_T_STRING: return c->max_length > 4000 ? "Memo" : "String";
    case EMU_T_INTEGER: return strcmp(c->name, "versionnumber") == 0 ? "BigInt" : "Integer";
    case EMU_T_DECIMAL: return "Decimal";
    case EMU_T_BOOLEAN: return "Boolean";
    case EMU_T_DATE:
    case EMU_T_DATETIME: return "DateTime";
    case EMU_T_ENUM:
        return strcmp(c->name, "statecode") == 0 ? "State" : strcmp(c->name, "statuscode") == 0 ? "Status" : "Picklist";
    case EMU_T_GUID: return "Uniqueidentifier";
    case EMU_T_LOOKUP: return strcmp(c->name, "ownerid") == 0 ? "Owner" : "Lookup";
    }
    (void)t;
    return "String";
}

static void dv_entity_definitions(emu_ctx_t *ctx, const emu_odata_path_t *p, emu_resp_t *resp)
{
    char cx[600];
    if (!p->has_key) {
        json_t *v = json_array();
        for (size_t i = 0; i < emu_store_ntables(ctx->store); i++) {
            emu_table_t *t = emu_store_table_at(ctx->store, i);
            json_array_append_new(v, json_pack("{s:s,s:s,s:s*}", "LogicalName", t->name, "EntitySetName",
                                               t->entity_set, "PrimaryIdAttribute", t->id_column));
        }
        snprintf(cx, sizeof(cx), "%s$metadata#EntityDefinitions", ctx->base_url);
        emu_resp_json(resp, 200, json_pack("{s:s,s:o}", "@odata.context", cx, "value", v));
        return;
    }
    const char *ln = emu_odata_key_get(p, "LogicalName");
    emu_table_t *t = ln ? emu_store_table_by_name(ctx->store, ln) : NULL;
    if (!t) {
        emu_resp_error(resp, 404, DV_E_NOT_FOUND, "Could not find entity with name '%s'.", ln ? ln : "");
        return;
    }
    if (!p->rest) {
        snprintf(cx, sizeof(cx), "%s$metadata#EntityDefinitions/$entity", ctx->base_url);
        emu_resp_json(resp, 200,
                      json_pack("{s:s,s:s,s:s,s:s*,s:s*,s:b,s:s}", "@odata.context", cx, "LogicalName",
                                t->name, "EntitySetName", t->entity_set, "PrimaryIdAttribute",
                                t->id_column, "PrimaryNameAttribute", t->primary_name,
                                "ChangeTrackingEnabled", 1, "OwnershipType",
                                json_string_value(json_object_get(t->meta, "ownership")) &&
                                        strcmp(json_string_value(json_object_get(t->meta, "ownership")), "user") == 0
                                    ? "UserOwned"
                                    : "OrganizationOwned"));
        return;
    }
    json_t *v = json_array();
    if (strcmp(p->rest, "Attributes") == 0) {
        for (size_t i = 0; i < t->ncols; i++) {
            const emu_col_t *c = &t->cols[i];
            if (c->dropped)
                continue;
            bool sysreq = c->required && c->generated;
            json_t *a = json_pack("{s:s,s:s,s:{s:s},s:b,s:b,s:b}", "LogicalName", c->name,
                                  "AttributeType", attr_type(c, t), "RequiredLevel", "Value",
                                  c->required ? (sysreq ? "SystemRequired" : "ApplicationRequired") : "None",
                                  "IsValidForCreate", !c->read_only, "IsValidForUpdate",
                                  !c->read_only && !(t->id_column && strcmp(c->name, t->id_column) == 0),
                                  "IsPrimaryId", t->id_column && strcmp(c->name, t->id_column) == 0);
            if (c->max_length)
                json_object_set_new(a, "MaxLength", json_integer(c->max_length));
            if (c->ntargets) {
                json_t *tg = json_array();
                for (size_t k = 0; k < c->ntargets; k++)
                    json_array_append_new(tg, json_string(c->targets[k]));
                json_object_set_new(a, "Targets", tg);
            }
            json_array_append_new(v, a);
        }
    } else if (strcmp(p->rest, "Keys") == 0) {
        for (size_t i = 0; i < t->nkeys; i++) {
            json_t *cols = json_array();
            for (size_t k = 0; k < t->keys[i].ncols; k++)
                json_array_append_new(cols, json_string(t->keys[i].cols[k]));
            json_array_append_new(v, json_pack("{s:s,s:s,s:o,s:s}", "LogicalName", t->keys[i].name,
                                               "SchemaName", t->keys[i].name, "KeyAttributes", cols,
                                               "EntityKeyIndexStatus", "Active"));
        }
    } else {
        json_decref(v);
        emu_resp_error(resp, 404, DV_E_SEGMENT, "Resource not found for the segment '%s'.", p->rest);
        return;
    }
    snprintf(cx, sizeof(cx), "%s$metadata#EntityDefinitions('%s')/%s", ctx->base_url, t->name, p->rest);
    emu_resp_json(resp, 200, json_pack("{s:s,s:o}", "@odata.context", cx, "value", v));
}

/* ---- $batch ---------------------------------------------------------------------------------- */

static bool dv_batch_begin(void *opaque, void **txn, emu_resp_t *err_resp)
{
    emu_ctx_t *ctx = opaque;
    char errstr[512];
    *txn = emu_store_acquire_write(ctx->store, errstr, sizeof(errstr));
    if (!*txn)
        emu_resp_error(err_resp, 503, DV_E_UNEXPECTED, "The database is unavailable.");
    return *txn != NULL;
}

static bool dv_batch_commit(void *opaque, void *txn, emu_resp_t *err_resp)
{
    emu_ctx_t *ctx = opaque;
    char errstr[512];
    dw_err_t err = emu_store_commit_release(ctx->store, txn, errstr, sizeof(errstr));
    if (err) {
        DW_ERROR("dv", "change set commit failed: %s", errstr);
        emu_resp_error(err_resp, 500, DV_E_UNEXPECTED, "An unexpected error occurred.");
    }
    return !err;
}

static void dv_batch_dispatch(void *opaque, emu_req_t *req, emu_resp_t *resp)
{
    emu_ctx_t *ctx = opaque;
    size_t pl = strlen(ctx->api_prefix);
    if (strncmp(req->path, ctx->api_prefix, pl) != 0)
        emu_resp_error(resp, 404, DV_E_SEGMENT, "Resource not found for the segment '%s'.", req->path);
    else
        emu_dv_handle(ctx, req, resp, req->path + pl);
}

static const emu_batch_ops_t dv_batch_ops = {
    .root_path = "/api/data/v9.2/",
    .begin = dv_batch_begin,
    .commit = dv_batch_commit,
    .rollback = emu_service_batch_rollback,
    .dispatch = dv_batch_dispatch,
};

/* ---- dispatch -------------------------------------------------------------------------------- */

void emu_dv_handle(emu_ctx_t *ctx, emu_req_t *req, emu_resp_t *resp, const char *rel)
{
    char errstr[512];
    emu_odata_path_t p;
    emu_odata_query_t q;
    dv_prefer_t pf;
    dv_t d = {ctx, req, resp, NULL, NULL, NULL, 0, "", false};
    bool have_path = false, have_q = false;
    const char *m = req->method;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, patch = strcmp(m, "PATCH") == 0,
         del = strcmp(m, "DELETE") == 0;
    dv_prefer_parse(emu_req_header(req, "Prefer"), &pf);
    memset(&q, 0, sizeof(q));
    q.top = -1;
    if (*rel == '\0') {
        emu_service_document(ctx, resp);
        return;
    }
    if (strcmp(rel, "WhoAmI") == 0 || strcmp(rel, "WhoAmI()") == 0) {
        char uid[37], cx[600];
        caller_id(req->client, uid);
        snprintf(cx, sizeof(cx), "%s$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx->base_url);
        emu_resp_json(resp, 200, json_pack("{s:s,s:s,s:s,s:s}", "@odata.context", cx, "BusinessUnitId",
                                           "00000000-0000-0000-0000-0000000000b1", "UserId", uid,
                                           "OrganizationId", "00000000-0000-0000-0000-0000000000a1"));
        return;
    }
    if (strcmp(rel, "$batch") == 0) {
        if (!post)
            emu_resp_error(resp, 405, DV_E_METHOD, "The method %s is not allowed on $batch.", m);
        else
            emu_batch_handle(&dv_batch_ops, ctx, req, EMU_BATCH_MAX_REQUESTS, DV_E_PAYLOAD, resp);
        return;
    }
    if (strcmp(rel, "$metadata") == 0) {
        emu_resp_error(resp, 501, DV_E_NOTIMPL, "%s is not implemented by dw-emulator.", rel);
        return;
    }
    if (emu_odata_path_parse(rel, &p, errstr, sizeof(errstr))) {
        emu_resp_error(resp, 400, DV_E_QUERY, "%s", errstr);
        return;
    }
    have_path = true;
    unsigned allowed = EMU_Q_SELECT;
    if (!p.has_key && !p.rest)
        allowed |= EMU_Q_FILTER | EMU_Q_TOP | EMU_Q_ORDERBY | EMU_Q_COUNT | EMU_Q_SKIPTOKEN |
                   EMU_Q_DELTATOKEN | EMU_Q_EXPAND;
    if (emu_odata_query_parse(req->arg_names, req->arg_values, req->nargs, allowed, &q, errstr,
                              sizeof(errstr))) {
        emu_resp_error(resp, 400, DV_E_QUERY, "%s", errstr);
        goto out;
    }
    have_q = true;
    if (strcmp(p.segment, "EntityDefinitions") == 0) {
        if (!get)
            emu_resp_error(resp, 405, DV_E_METHOD, "The method %s is not allowed on EntityDefinitions.", m);
        else
            dv_entity_definitions(ctx, &p, resp);
        goto out;
    }
    d.t = emu_store_table_by_set(ctx->store, p.segment);
    if (!d.t) {
        emu_resp_error(resp, 404, DV_E_SEGMENT, "Resource not found for the segment '%s'.", p.segment);
        goto out;
    }
    dv_key_t k;
    if (p.has_key && !dv_key_from_path(d.t, &p, &k, resp))
        goto out;
    d.pg = req->txn ? req->txn : emu_store_acquire(ctx->store, errstr, sizeof(errstr));
    if (!d.pg) {
        emu_resp_error(resp, 503, DV_E_UNEXPECTED, "The database is unavailable.");
        goto out;
    }
    if (p.rest) {
        const char *pre = "Microsoft.Dynamics.CRM.";
        if (!p.has_key && strncmp(p.rest, pre, strlen(pre)) == 0) {
            const char *msg = p.rest + strlen(pre);
            if ((strcmp(msg, "UpsertMultiple") && strcmp(msg, "CreateMultiple") && strcmp(msg, "UpdateMultiple")) ||
                emu_faults_no_multiple(ctx->faults, d.t->entity_set)) {
                emu_resp_error(resp, 404, DV_E_SEGMENT, "Resource not found for the segment '%s'.", p.rest);
            } else if (!post) {
                emu_resp_error(resp, 405, DV_E_METHOD, "The method %s is not allowed on %s.", m, msg);
            } else {
                for (;; d.attempt++) {
                    d.retry = false;
                    dv_multiple(&d, msg);
                    if (!d.retry)
                        break;
                    emu_resp_reset(resp);
                }
            }
        } else {
            emu_resp_error(resp, 501, DV_E_NOTIMPL, "Navigation to '%s' is not implemented by dw-emulator.", p.rest);
        }
        goto out;
    }
    if (p.has_key) {
        if (get)
            dv_get_one(&d, &k, &q);
        else if (patch)
            for (;; d.attempt++) {
                d.retry = false;
                dv_single_write(&d, &k, DV_UPSERT, &pf);
                if (!d.retry)
                    break;
                emu_resp_reset(resp);
            }
        else if (del)
            dv_delete(&d, &k);
        else
            emu_resp_error(resp, 405, DV_E_METHOD, "The method %s is not allowed on a single record.", m);
    } else {
        if (get && (pf.track || q.deltatoken || (q.skiptoken && q.skiptoken[0] == 'c')))
            dv_changes(&d, &q, &pf);
        else if (get)
            dv_collection(&d, &q, &pf);
        else if (post)
            dv_single_write(&d, NULL, DV_CREATE, &pf);
        else
            emu_resp_error(resp, 405, DV_E_METHOD, "The method %s is not allowed on an entity set.", m);
    }
out:
    if (d.pg && !req->txn)
        emu_store_release(ctx->store, d.pg);
    if (have_q)
        emu_odata_query_clear(&q);
    if (have_path)
        emu_odata_path_clear(&p);
}
