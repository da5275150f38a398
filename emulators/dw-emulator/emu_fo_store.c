/*
 * emu_fo_store: row versions, enum members and the output form of F&O rows. Identifiers come
 * from the metadata (checked by emu_store) and are always double-quoted.
 */
#include "emu_fo_store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_mapper.h"
#include "dw_pg.h"
#include "dw_sha256.h"

#define FO_SQL_MAX 4096

#define sqlf(buf, ...) emu_store_sqlcat(buf, FO_SQL_MAX, __VA_ARGS__)

dw_err_t emu_fo_store_prepare(emu_store_t *st, char *errstr, size_t errstr_size)
{
    dw_pg_t *pg = emu_store_acquire(st, errstr, errstr_size);
    if (!pg)
        return DW_ERR_PG_CONN;
    const char *schema = emu_store_schema(st);
    dw_err_t err = emu_store_begin_write(st, pg, errstr, errstr_size);
    for (size_t i = 0; i < emu_store_ntables(st) && !err; i++) {
        emu_table_t *t = emu_store_table_at(st, i);
        char sql[FO_SQL_MAX] = "";
        sqlf(sql, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS \"" EMU_FO_ROWVERSION "\" bigint", t->qname);
        err = dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, errstr_size);
        if (err)
            break;
        sql[0] = '\0';
        sqlf(sql, "CREATE OR REPLACE FUNCTION \"%s\".\"%.40s__fo_rv\"() RETURNS trigger LANGUAGE plpgsql AS $f$"
             " BEGIN NEW.\"" EMU_FO_ROWVERSION "\" := nextval('\"%s\".\"_version_seq\"'); RETURN NEW; END $f$",
             schema, t->name, schema);
        err = dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, errstr_size);
        if (err)
            break;
        sql[0] = '\0';
        sqlf(sql, "CREATE OR REPLACE TRIGGER \"%.40s__fo_rv\" BEFORE INSERT OR UPDATE ON %s FOR EACH ROW"
             " EXECUTE FUNCTION \"%s\".\"%.40s__fo_rv\"()", t->name, t->qname, schema, t->name);
        err = dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, errstr_size);
    }
    if (!err)
        err = dw_pg_commit(pg, errstr, errstr_size);
    emu_store_release(st, pg);
    return err;
}

static json_t *col_meta(const emu_table_t *t, const emu_col_t *c)
{
    size_t i = (size_t)(c - t->cols);
    return i < t->ncols ? json_array_get(json_object_get(t->meta, "columns"), i) : NULL;
}

const char *emu_fo_col_enum(const emu_table_t *t, const emu_col_t *c)
{
    if (c->type != EMU_T_ENUM)
        return NULL;
    return json_string_value(json_object_get(col_meta(t, c), "enum"));
}

static json_t *enum_members(const emu_table_t *t, const emu_col_t *c)
{
    const char *en = emu_fo_col_enum(t, c);
    return en ? json_object_get(json_object_get(t->meta, "enums"), en) : NULL;
}

const char *emu_fo_enum_member(const emu_table_t *t, const emu_col_t *c, long long v)
{
    json_t *m = enum_members(t, c);
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        if (json_integer_value(json_object_get(e, "value")) == v)
            return json_string_value(json_object_get(e, "name"));
    }
    return NULL;
}

bool emu_fo_enum_value(const emu_table_t *t, const emu_col_t *c, const char *member, long long *v)
{
    json_t *m = enum_members(t, c);
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, member) == 0) {
            *v = json_integer_value(json_object_get(e, "value"));
            return true;
        }
    }
    return false;
}

bool emu_fo_company_specific(const emu_table_t *t)
{
    const emu_col_t *c = emu_table_col(t, "dataAreaId");
    return c && !c->dropped;
}

json_t *emu_fo_row_out(const emu_table_t *t, json_t *db, bool omit_null_dates)
{
    json_t *o = json_object();
    for (size_t i = 0; i < t->ncols; i++) {
        const emu_col_t *c = &t->cols[i];
        if (c->dropped)
            continue;
        json_t *v = json_object_get(db, c->name);
        bool is_date = c->type == EMU_T_DATE || c->type == EMU_T_DATETIME;
        if (!v || json_is_null(v)) {
            if (!(omit_null_dates && is_date))
                json_object_set_new(o, c->name, json_null());
        } else if (c->type == EMU_T_ENUM && json_is_integer(v)) {
            const char *m = emu_fo_enum_member(t, c, json_integer_value(v));
            if (m)
                json_object_set_new(o, c->name, json_string(m));
            else
                json_object_set(o, c->name, v);
        } else if (c->type == EMU_T_DATETIME && json_is_string(v) && strlen(json_string_value(v)) >= 19) {
            char buf[24];
            memcpy(buf, json_string_value(v), 19);
            buf[19] = 'Z';
            buf[20] = '\0';
            json_object_set_new(o, c->name, json_string(buf));
        } else {
            json_object_set(o, c->name, v);
        }
    }
    return o;
}

long long emu_fo_row_version(json_t *db)
{
    return (long long)json_integer_value(json_object_get(db, EMU_FO_ROWVERSION));
}

void emu_fo_record_guid(const emu_table_t *t, json_t *row, char out[37])
{
    dw_sha256_t h;
    uint8_t d[DW_SHA256_SIZE];
    dw_sha256_init(&h);
    dw_sha256_update(&h, t->name, strlen(t->name) + 1);
    json_t *key = json_object_get(t->meta, "key");
    for (size_t i = 0; i < json_array_size(key); i++) {
        json_t *v = json_object_get(row, json_string_value(json_array_get(key, i)));
        char *s = v ? dw_mapper_dumps(v, 0, NULL) : NULL;
        if (s)
            dw_sha256_update(&h, s, strlen(s) + 1);
        free(s);
    }
    dw_sha256_final(&h, d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x50); /* name-based (version 5 layout) */
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0],
             d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
             d[15]);
}
