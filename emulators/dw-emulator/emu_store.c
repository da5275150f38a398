/*
 * emu_store: metadata loading, DDL generation and the connection pool. Identifiers come from the
 * metadata files only, are checked against [A-Za-z0-9_] and always double-quoted; values never
 * enter SQL text (dw_pg_exec parameters only).
 */
#include "emu_store.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dw_log.h"
#include "emu_odata.h"

#define EMU_SQL_MAX 16384

struct emu_store_s {
    char *dsn;
    char *schema;
    char *system;
    emu_table_t *tables;
    size_t ntables;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dw_pg_t **idle;
    size_t nidle;
    int total, max;
    bool serial_writes; /* F&O: writers serialised per schema (outbox and row versions in commit order) */
};

void emu_sql_ident(char *buf, size_t size, const char *ident)
{
    size_t len = strlen(buf);
    snprintf(buf + len, size > len ? size - len : 0, "\"%s\"", ident);
}

void emu_store_sqlcat(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size > len ? size - len : 0, fmt, ap);
    va_end(ap);
}

static const char *const emu_type_names[] = {"string", "integer", "decimal", "boolean", "date",
                                             "datetime", "enum", "guid", "lookup"};
static const char *const emu_sql_types[] = {"text", "bigint", "numeric", "boolean", "date",
                                            "timestamptz", "integer", "uuid", "uuid"};

const char *emu_col_sql_type(const emu_col_t *c)
{
    return emu_sql_types[c->type];
}

static void table_free(emu_table_t *t)
{
    free(t->name);
    free(t->entity_set);
    free(t->id_column);
    free(t->primary_name);
    free(t->qname);
    for (size_t i = 0; i < t->ncols; i++) {
        emu_col_t *c = &t->cols[i];
        free(c->name);
        free(c->enum_values);
        for (size_t j = 0; j < c->ntargets; j++)
            free(c->targets[j]);
        free(c->targets);
        json_decref(c->defval);
        free(c->generated);
    }
    free(t->cols);
    for (size_t i = 0; i < t->nkeys; i++) {
        free(t->keys[i].name);
        for (size_t j = 0; j < t->keys[i].ncols; j++)
            free(t->keys[i].cols[j]);
        free(t->keys[i].cols);
    }
    free(t->keys);
    json_decref(t->meta);
}

static char *dup_ident(json_t *j)
{
    const char *s = json_string_value(j);
    return s && emu_odata_is_ident(s) ? strdup(s) : NULL;
}

/* Fill t from a metadata document (borrowed; t->meta takes a reference). */
static dw_err_t table_load(emu_table_t *t, json_t *doc, const char *schema, const char *file,
                           char *errstr, size_t n)
{
    t->meta = json_incref(doc);
    t->name = dup_ident(json_object_get(doc, "name"));
    t->entity_set = dup_ident(json_object_get(doc, "entity_set"));
    if (!t->name || !t->entity_set)
        return dw_errf(DW_ERR_CONFIG, errstr, n, "%s: name/entity_set missing or not identifiers", file);
    if (json_object_get(doc, "id_column"))
        t->id_column = dup_ident(json_object_get(doc, "id_column"));
    if (json_object_get(doc, "primary_name"))
        t->primary_name = dup_ident(json_object_get(doc, "primary_name"));
    char q[300] = "";
    emu_sql_ident(q, sizeof(q), schema);
    emu_store_sqlcat(q, sizeof(q), ".");
    emu_sql_ident(q, sizeof(q), t->name);
    t->qname = strdup(q);
    json_t *cols = json_object_get(doc, "columns"), *enums = json_object_get(doc, "enums");
    size_t nc = json_array_size(cols);
    t->cols = calloc(nc ? nc : 1, sizeof(emu_col_t));
    if (!t->cols || !t->qname)
        return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
    for (size_t i = 0; i < nc; i++) {
        json_t *cj = json_array_get(cols, i);
        emu_col_t *c = &t->cols[t->ncols++];
        c->name = dup_ident(json_object_get(cj, "name"));
        const char *ty = json_string_value(json_object_get(cj, "type"));
        if (!c->name || !ty)
            return dw_errf(DW_ERR_CONFIG, errstr, n, "%s: /columns/%zu: bad name or type", file, i);
        int found = -1;
        for (int k = 0; k < 9; k++)
            if (strcmp(ty, emu_type_names[k]) == 0)
                found = k;
        if (found < 0)
            return dw_errf(DW_ERR_CONFIG, errstr, n, "%s: /columns/%zu: unknown type %s", file, i, ty);
        c->type = (emu_type_t)found;
        c->required = json_is_true(json_object_get(cj, "required"));
        c->read_only = json_is_true(json_object_get(cj, "read_only"));
        c->max_length = json_integer_value(json_object_get(cj, "max_length"));
        json_t *dv = json_object_get(cj, "default");
        c->defval = dv ? json_incref(dv) : NULL;
        const char *gen = json_string_value(json_object_get(cj, "generated"));
        c->generated = gen ? strdup(gen) : NULL;
        if (gen && strcmp(gen, "version") == 0)
            t->version_col = c->name;
        const char *en = json_string_value(json_object_get(cj, "enum"));
        json_t *members = en ? json_object_get(enums, en) : NULL;
        if (c->type == EMU_T_ENUM && members) {
            c->nenum = json_array_size(members);
            c->enum_values = calloc(c->nenum ? c->nenum : 1, sizeof(long long));
            for (size_t k = 0; c->enum_values && k < c->nenum; k++)
                c->enum_values[k] = json_integer_value(json_object_get(json_array_get(members, k), "value"));
        }
        json_t *tg = json_object_get(cj, "targets");
        if (json_array_size(tg)) {
            c->targets = calloc(json_array_size(tg), sizeof(char *));
            for (size_t k = 0; c->targets && k < json_array_size(tg); k++) {
                c->targets[k] = dup_ident(json_array_get(tg, k));
                if (c->targets[k])
                    c->ntargets++;
            }
        }
    }
    json_t *aks = json_object_get(doc, "alternate_keys");
    if (json_array_size(aks)) {
        t->keys = calloc(json_array_size(aks), sizeof(emu_altkey_t));
        if (!t->keys)
            return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
        for (size_t i = 0; i < json_array_size(aks); i++) {
            json_t *kj = json_array_get(aks, i), *kc = json_object_get(kj, "columns");
            emu_altkey_t *k = &t->keys[t->nkeys++];
            k->name = dup_ident(json_object_get(kj, "name"));
            k->cols = calloc(json_array_size(kc) + 1, sizeof(char *));
            if (!k->name || !k->cols)
                return dw_errf(DW_ERR_CONFIG, errstr, n, "%s: /alternate_keys/%zu: bad key", file, i);
            for (size_t j = 0; j < json_array_size(kc); j++) {
                k->cols[j] = dup_ident(json_array_get(kc, j));
                if (!k->cols[j] || !emu_table_col(t, k->cols[j]))
                    return dw_errf(DW_ERR_CONFIG, errstr, n,
                                   "%s: /alternate_keys/%zu: unknown column", file, i);
                k->ncols++;
            }
        }
    }
    return DW_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static dw_err_t load_metadata(emu_store_t *st, const char *dir, char *errstr, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, st->system);
    DIR *d = opendir(path);
    if (!d)
        return dw_errf(DW_ERR_CONFIG, errstr, n, "could not open metadata folder \"%s\"", path);
    char *names[512];
    size_t nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 512) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] != '.' && l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
            names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof(char *), cmp_str);
    dw_err_t err = DW_OK;
    st->tables = calloc(nn ? nn : 1, sizeof(emu_table_t));
    if (!st->tables)
        err = dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
    for (size_t i = 0; i < nn && !err; i++) {
        char file[4400];
        snprintf(file, sizeof(file), "%s/%s", path, names[i]);
        json_error_t je;
        json_t *doc = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
        if (!doc) {
            err = dw_errf(DW_ERR_CONFIG, errstr, n, "%s:%d:%d: %s", file, je.line, je.column, je.text);
            break;
        }
        err = table_load(&st->tables[st->ntables++], doc, st->schema, file, errstr, n);
        json_decref(doc);
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    if (!err && st->ntables == 0)
        err = dw_errf(DW_ERR_CONFIG, errstr, n, "no metadata files in \"%s\"", path);
    return err;
}

static dw_err_t exec0(dw_pg_t *pg, const char *sql, char *errstr, size_t n)
{
    return dw_pg_exec(pg, sql, 0, NULL, NULL, errstr, n);
}

static dw_err_t create_schema(emu_store_t *st, dw_pg_t *pg, char *errstr, size_t n)
{
    char *sql = malloc(EMU_SQL_MAX);
    char qs[200] = "";
    dw_err_t err = DW_OK;
    if (!sql)
        return dw_errf(DW_ERR_NOMEM, errstr, n, "out of memory");
    emu_sql_ident(qs, sizeof(qs), st->schema);
    err = dw_pg_begin(pg, errstr, n);
    if (err)
        goto out;
    {
        const char *lock = "SELECT pg_advisory_xact_lock(hashtext($1))";
        const char *p[1] = {st->schema};
        err = dw_pg_exec(pg, lock, 1, p, NULL, errstr, n);
    }
#define RUN(...)                                                                                   \
    do {                                                                                           \
        sql[0] = '\0';                                                                             \
        emu_store_sqlcat(sql, EMU_SQL_MAX, __VA_ARGS__);                                                     \
        if (!err)                                                                                  \
            err = exec0(pg, sql, errstr, n);                                                       \
    } while (0)
    RUN("CREATE SCHEMA IF NOT EXISTS %s", qs);
    RUN("CREATE SEQUENCE IF NOT EXISTS %s.\"_version_seq\"", qs);
    RUN("CREATE TABLE IF NOT EXISTS %s.\"_deleted\" (seq bigserial PRIMARY KEY, entity text NOT NULL,"
        " id text NOT NULL, version bigint NOT NULL, deletedon timestamptz NOT NULL DEFAULT now())", qs);
    /* change tracking (Dataverse): the writing transaction of every tombstone, see dv_changes */
    RUN("ALTER TABLE %s.\"_deleted\" ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0'", qs);
    RUN("DROP INDEX IF EXISTS %s.\"_deleted_version\"", qs);
    RUN("CREATE INDEX IF NOT EXISTS \"_deleted_xid\" ON %s.\"_deleted\" (entity, xid, version)", qs);
    RUN("CREATE TABLE IF NOT EXISTS %s.\"_state\" (k text PRIMARY KEY, v text NOT NULL)", qs);
    for (size_t i = 0; i < st->ntables && !err; i++) {
        emu_table_t *t = &st->tables[i];
        sql[0] = '\0';
        emu_store_sqlcat(sql, EMU_SQL_MAX, "CREATE TABLE IF NOT EXISTS %s (", t->qname);
        for (size_t c = 0; c < t->ncols; c++) {
            emu_col_t *col = &t->cols[c];
            emu_store_sqlcat(sql, EMU_SQL_MAX, "%s\"%s\" %s", c ? ", " : "", col->name, emu_sql_types[col->type]);
            if (t->id_column && strcmp(col->name, t->id_column) == 0)
                emu_store_sqlcat(sql, EMU_SQL_MAX, " PRIMARY KEY");
        }
        json_t *key = json_object_get(t->meta, "key");
        if (!t->id_column && json_array_size(key)) {
            emu_store_sqlcat(sql, EMU_SQL_MAX, ", PRIMARY KEY (");
            for (size_t k = 0; k < json_array_size(key); k++) {
                const char *kc = json_string_value(json_array_get(key, k));
                if (kc && emu_odata_is_ident(kc))
                    emu_store_sqlcat(sql, EMU_SQL_MAX, "%s\"%s\"", k ? ", " : "", kc);
            }
            emu_store_sqlcat(sql, EMU_SQL_MAX, ")");
        }
        emu_store_sqlcat(sql, EMU_SQL_MAX, ")");
        err = exec0(pg, sql, errstr, n);
        for (size_t k = 0; k < t->nkeys && !err; k++) {
            sql[0] = '\0';
            emu_store_sqlcat(sql, EMU_SQL_MAX, "CREATE UNIQUE INDEX IF NOT EXISTS \"%.30s__%.30s\" ON %s (",
                   t->name, t->keys[k].name, t->qname);
            for (size_t c = 0; c < t->keys[k].ncols; c++)
                emu_store_sqlcat(sql, EMU_SQL_MAX, "%s\"%s\"", c ? ", " : "", t->keys[k].cols[c]);
            emu_store_sqlcat(sql, EMU_SQL_MAX, ") NULLS NOT DISTINCT");
            err = exec0(pg, sql, errstr, n);
        }
        /* Dataverse tables (those with an id column) carry the id of the transaction that wrote
         * each row (xid8, stamped by the trigger): change tracking hands out a row only once
         * that transaction is below the snapshot horizon (dv_changes), so writers need no lock */
        bool xid = t->version_col && t->id_column;
        if (xid) {
            RUN("ALTER TABLE %s ADD COLUMN IF NOT EXISTS \"_xid\" xid8 NOT NULL DEFAULT '0'", t->qname);
            RUN("DROP INDEX IF EXISTS %s.\"%.40s__version\"", qs, t->name);
            RUN("CREATE INDEX IF NOT EXISTS \"%.40s__xid\" ON %s (\"_xid\", \"%s\")", t->name, t->qname,
                t->version_col);
        } else if (t->version_col) {
            RUN("CREATE INDEX IF NOT EXISTS \"%.40s__version\" ON %s (\"%s\")", t->name, t->qname,
                t->version_col);
        }
        if (t->version_col) {
            sql[0] = '\0';
            emu_store_sqlcat(sql, EMU_SQL_MAX,
                   "CREATE OR REPLACE FUNCTION %s.\"%.40s__stamp\"() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN ",
                   qs, t->name);
            for (size_t c = 0; c < t->ncols; c++) {
                emu_col_t *col = &t->cols[c];
                if (!col->generated || strcmp(col->generated, "now") != 0)
                    continue;
                if (strncmp(col->name, "created", 7) == 0)
                    emu_store_sqlcat(sql, EMU_SQL_MAX,
                           "IF TG_OP = 'INSERT' THEN NEW.\"%s\" := now(); ELSE NEW.\"%s\" := OLD.\"%s\"; END IF; ",
                           col->name, col->name, col->name);
                else
                    emu_store_sqlcat(sql, EMU_SQL_MAX, "NEW.\"%s\" := now(); ", col->name);
            }
            if (xid)
                emu_store_sqlcat(sql, EMU_SQL_MAX, "NEW.\"_xid\" := pg_current_xact_id(); ");
            emu_store_sqlcat(sql, EMU_SQL_MAX, "NEW.\"%s\" := nextval('%s.\"_version_seq\"'); RETURN NEW; END $f$",
                   t->version_col, qs);
            if (!err)
                err = exec0(pg, sql, errstr, n);
            RUN("CREATE OR REPLACE TRIGGER \"%.40s__stamp\" BEFORE INSERT OR UPDATE ON %s FOR EACH ROW"
                " EXECUTE FUNCTION %s.\"%.40s__stamp\"()", t->name, t->qname, qs, t->name);
            if (t->id_column) {
                RUN("CREATE OR REPLACE FUNCTION %s.\"%.40s__deleted\"() RETURNS trigger LANGUAGE plpgsql AS $f$"
                    " BEGIN INSERT INTO %s.\"_deleted\"(entity, id, version, xid) VALUES ('%s', OLD.\"%s\"::text,"
                    " nextval('%s.\"_version_seq\"'), pg_current_xact_id()); RETURN OLD; END $f$",
                    qs, t->name, qs, t->name, t->id_column, qs);
                RUN("CREATE OR REPLACE TRIGGER \"%.40s__deleted\" AFTER DELETE ON %s FOR EACH ROW"
                    " EXECUTE FUNCTION %s.\"%.40s__deleted\"()", t->name, t->qname, qs, t->name);
            }
        }
    }
#undef RUN
    if (err)
        dw_pg_rollback(pg, NULL, 0);
    else
        err = dw_pg_commit(pg, errstr, n);
out:
    free(sql);
    return err;
}

static dw_pg_t *pool_connect(emu_store_t *st, char *errstr, size_t n)
{
    dw_err_t err = DW_OK;
    dw_pg_t *pg = dw_pg_connect(st->dsn, "dw-emulator", 10000, &err, errstr, n);
    if (!pg)
        return NULL;
    if (dw_pg_exec(pg, "SET TIME ZONE 'UTC'", 0, NULL, NULL, errstr, n) != DW_OK) {
        dw_pg_destroy(pg);
        return NULL;
    }
    return pg;
}

emu_store_t *emu_store_open(const char *dsn, const char *schema, const char *metadata_dir,
                            const char *system, int pool_max, char *errstr, size_t errstr_size)
{
    emu_store_t *st = calloc(1, sizeof(*st));
    dw_pg_t *pg = NULL;
    if (!st) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->max = pool_max > 0 ? pool_max : 16;
    st->serial_writes = strcmp(system, "fo") == 0;
    st->dsn = strdup(dsn);
    st->schema = strdup(schema);
    st->system = strdup(system);
    st->idle = calloc((size_t)st->max, sizeof(dw_pg_t *));
    if (!st->dsn || !st->schema || !st->system || !st->idle) {
        dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (!emu_odata_is_ident(schema)) {
        dw_errf(DW_ERR_CONFIG, errstr, errstr_size, "schema name '%s' is not [A-Za-z0-9_]", schema);
        goto fail;
    }
    if (load_metadata(st, metadata_dir, errstr, errstr_size))
        goto fail;
    pg = emu_store_acquire(st, errstr, errstr_size);
    if (!pg)
        goto fail;
    if (create_schema(st, pg, errstr, errstr_size)) {
        emu_store_release(st, pg);
        goto fail;
    }
    emu_store_release(st, pg);
    return st;
fail:
    emu_store_close(st);
    return NULL;
}

void emu_store_close(emu_store_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nidle; i++)
        dw_pg_destroy(st->idle[i]);
    free(st->idle);
    for (size_t i = 0; i < st->ntables; i++)
        table_free(&st->tables[i]);
    free(st->tables);
    free(st->dsn);
    free(st->schema);
    free(st->system);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

size_t emu_store_ntables(const emu_store_t *st)
{
    return st->ntables;
}

emu_table_t *emu_store_table_at(emu_store_t *st, size_t i)
{
    return i < st->ntables ? &st->tables[i] : NULL;
}

emu_table_t *emu_store_table_by_set(emu_store_t *st, const char *entity_set)
{
    for (size_t i = 0; i < st->ntables; i++)
        if (strcmp(st->tables[i].entity_set, entity_set) == 0)
            return &st->tables[i];
    return NULL;
}

emu_table_t *emu_store_table_by_name(emu_store_t *st, const char *name)
{
    for (size_t i = 0; i < st->ntables; i++)
        if (strcmp(st->tables[i].name, name) == 0)
            return &st->tables[i];
    return NULL;
}

emu_col_t *emu_table_col(const emu_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    return NULL;
}

const char *emu_store_schema(const emu_store_t *st)
{
    return st->schema;
}

dw_pg_t *emu_store_acquire(emu_store_t *st, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&st->mu);
    while (st->nidle == 0 && st->total >= st->max)
        pthread_cond_wait(&st->cv, &st->mu);
    if (st->nidle) {
        dw_pg_t *pg = st->idle[--st->nidle];
        pthread_mutex_unlock(&st->mu);
        return pg;
    }
    st->total++;
    pthread_mutex_unlock(&st->mu);
    dw_pg_t *pg = pool_connect(st, errstr, errstr_size);
    if (!pg) {
        pthread_mutex_lock(&st->mu);
        st->total--;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
    return pg;
}

void emu_store_release(emu_store_t *st, dw_pg_t *pg)
{
    if (!pg)
        return;
    /* a connection left inside a transaction (an error path) is rolled back first */
    if (PQtransactionStatus(dw_pg_conn(pg)) != PQTRANS_IDLE)
        dw_pg_rollback(pg, NULL, 0);
    pthread_mutex_lock(&st->mu);
    if (PQstatus(dw_pg_conn(pg)) != CONNECTION_OK) {
        dw_pg_destroy(pg);
        st->total--;
    } else {
        st->idle[st->nidle++] = pg;
    }
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

dw_err_t emu_store_begin_write(emu_store_t *st, dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    dw_err_t err = dw_pg_begin(pg, errstr, errstr_size);
    if (err || !st->serial_writes)
        return err;
    const char *p[1] = {st->schema};
    err = dw_pg_exec(pg, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, p, NULL, errstr,
                     errstr_size);
    if (err)
        dw_pg_rollback(pg, NULL, 0);
    return err;
}

dw_pg_t *emu_store_acquire_write(emu_store_t *st, char *errstr, size_t errstr_size)
{
    dw_pg_t *pg = emu_store_acquire(st, errstr, errstr_size);
    if (pg && emu_store_begin_write(st, pg, errstr, errstr_size)) {
        emu_store_release(st, pg);
        pg = NULL;
    }
    return pg;
}

dw_err_t emu_store_commit_release(emu_store_t *st, dw_pg_t *pg, char *errstr, size_t errstr_size)
{
    dw_err_t err = dw_pg_commit(pg, errstr, errstr_size);
    emu_store_release(st, pg);
    return err;
}

void emu_store_rollback_release(emu_store_t *st, dw_pg_t *pg)
{
    dw_pg_rollback(pg, NULL, 0);
    emu_store_release(st, pg);
}

dw_err_t emu_store_reset(emu_store_t *st, char *errstr, size_t errstr_size)
{
    dw_pg_t *pg = emu_store_acquire(st, errstr, errstr_size);
    if (!pg)
        return DW_ERR_PG_CONN;
    char sql[300] = "DROP SCHEMA IF EXISTS ";
    emu_sql_ident(sql, sizeof(sql), st->schema);
    emu_store_sqlcat(sql, sizeof(sql), " CASCADE");
    dw_err_t err = exec0(pg, sql, errstr, errstr_size);
    for (size_t i = 0; i < st->ntables; i++)
        for (size_t c = 0; c < st->tables[i].ncols; c++)
            st->tables[i].cols[c].dropped = 0;
    if (!err)
        err = create_schema(st, pg, errstr, errstr_size);
    emu_store_release(st, pg);
    return err;
}

dw_err_t emu_store_drop_column(emu_store_t *st, const char *table, const char *column,
                               char *errstr, size_t errstr_size)
{
    emu_table_t *t = emu_store_table_by_name(st, table);
    if (!t)
        t = emu_store_table_by_set(st, table);
    emu_col_t *c = t ? emu_table_col(t, column) : NULL;
    if (!c || c->dropped)
        return dw_errf(DW_ERR_NOT_FOUND, errstr, errstr_size, "no column %s on table %s", column, table);
    if (c->generated || (t->id_column && strcmp(c->name, t->id_column) == 0))
        return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                       "column %s is a system column and cannot be dropped", column);
    for (size_t k = 0; k < t->nkeys; k++)
        for (size_t j = 0; j < t->keys[k].ncols; j++)
            if (strcmp(t->keys[k].cols[j], column) == 0)
                return dw_errf(DW_ERR_INVALID_ARG, errstr, errstr_size,
                               "column %s is part of alternate key %s", column, t->keys[k].name);
    dw_pg_t *pg = emu_store_acquire(st, errstr, errstr_size);
    if (!pg)
        return DW_ERR_PG_CONN;
    char sql[600] = "";
    emu_store_sqlcat(sql, sizeof(sql), "ALTER TABLE %s DROP COLUMN IF EXISTS \"%s\"", t->qname, c->name);
    dw_err_t err = exec0(pg, sql, errstr, errstr_size);
    if (!err)
        c->dropped = 1;
    emu_store_release(st, pg);
    return err;
}

json_t *emu_table_relation(const emu_table_t *t, const char *name)
{
    json_t *cols = json_object_get(t->meta, "columns"), *c;
    size_t i;
    json_array_foreach(cols, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0)
            return json_object_get(c, "relation");
    }
    return NULL;
}

const emu_table_t *emu_store_relation_target(emu_store_t *st, json_t *rel, const emu_col_t **kc)
{
    const char *entity = json_string_value(json_object_get(rel, "entity"));
    const emu_table_t *rt = entity ? emu_store_table_by_name(st, entity) : NULL;
    json_t *key = rt ? json_object_get(rt->meta, "key") : NULL;
    const char *last = json_string_value(json_array_get(key, json_array_size(key) - 1));
    *kc = last ? emu_table_col(rt, last) : NULL;
    return *kc ? rt : NULL;
}
