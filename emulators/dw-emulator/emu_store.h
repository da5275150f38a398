/*
 * emu_store: an emulated system's tables in PostgreSQL. Loads the metadata files of one system
 * (schemas/metadata/<system>/ *.json), creates one schema with one table per file (typed columns,
 * unique indexes for alternate keys, a version sequence and triggers that stamp versionnumber,
 * createdon, modifiedon and, on Dataverse tables, the writing transaction's id "_xid", and log
 * deletes for change tracking), and lends PostgreSQL connections
 * from a small pool to request threads.
 */
#ifndef EMU_STORE_H
#define EMU_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_pg.h"

typedef enum {
    EMU_T_STRING = 0,
    EMU_T_INTEGER,
    EMU_T_DECIMAL,
    EMU_T_BOOLEAN,
    EMU_T_DATE,
    EMU_T_DATETIME,
    EMU_T_ENUM,
    EMU_T_GUID,
    EMU_T_LOOKUP,
} emu_type_t;

typedef struct {
    char *name;
    emu_type_t type;
    bool required, read_only;
    long long max_length; /* 0: none */
    long long *enum_values;
    size_t nenum;
    char **targets;
    size_t ntargets;
    json_t *defval;     /* owned; NULL when none */
    char *generated;    /* id, version, now, caller, autonumber, company; NULL */
    volatile int dropped; /* schema drift injected by the admin endpoint */
} emu_col_t;

typedef struct {
    char *name;
    char **cols;
    size_t ncols;
} emu_altkey_t;

typedef struct {
    char *name;        /* logical name / public entity name */
    char *entity_set;
    char *id_column;   /* dv: primary id; NULL for fo */
    char *primary_name;
    emu_col_t *cols;
    size_t ncols;
    emu_altkey_t *keys;
    size_t nkeys;
    char *qname;       /* "schema"."table" (quoted) */
    char *version_col; /* the generated:version column or NULL */
    json_t *meta;      /* the metadata document (owned) */
} emu_table_t;

typedef struct emu_store_s emu_store_t;

/* Load the *.json files under dir/<system> ("dv" or "fo") and connect the pool to dsn. schema: the PostgreSQL
 * schema name ([a-z0-9_]). Creates schema and tables when missing. NULL with errstr. */
emu_store_t *emu_store_open(const char *dsn, const char *schema, const char *metadata_dir,
                            const char *system, int pool_max, char *errstr, size_t errstr_size);
void emu_store_close(emu_store_t *st);

size_t emu_store_ntables(const emu_store_t *st);
emu_table_t *emu_store_table_at(emu_store_t *st, size_t i);
emu_table_t *emu_store_table_by_set(emu_store_t *st, const char *entity_set);
emu_table_t *emu_store_table_by_name(emu_store_t *st, const char *name);
emu_col_t *emu_table_col(const emu_table_t *t, const char *name);
/* The "relation" member of column name in t's metadata (schemas/metadata.schema.json: the F&O
 * entity a field's value names a record of), NULL when none. Borrowed. */
json_t *emu_table_relation(const emu_table_t *t, const char *name);
/* The table a relation names and (*kc) its last key column, the one the field's value matches;
 * NULL when that entity is not loaded or has no key. */
const emu_table_t *emu_store_relation_target(emu_store_t *st, json_t *rel, const emu_col_t **kc);
const char *emu_store_schema(const emu_store_t *st);

/* Borrow a connection (blocks while the pool is exhausted); give it back with release. NULL
 * when no connection can be made. */
dw_pg_t *emu_store_acquire(emu_store_t *st, char *errstr, size_t errstr_size);
void emu_store_release(emu_store_t *st, dw_pg_t *pg);

/* Begin a write transaction. F&O (--system fo): serialised with every other writer of the store
 * (a transaction advisory lock), so row versions and the data-event outbox follow commit order.
 * Dataverse: no lock, writers run side by side; change tracking orders changes by the writing
 * transaction's id and the snapshot horizon instead (emu_dv.c, dv_changes). */
dw_err_t emu_store_begin_write(emu_store_t *st, dw_pg_t *pg, char *errstr, size_t errstr_size);

/* Acquire a connection and begin a write transaction on it (a $batch change set): the new
 * connection, or NULL with errstr filled (nothing is held then). End it with commit_release or
 * rollback_release. */
dw_pg_t *emu_store_acquire_write(emu_store_t *st, char *errstr, size_t errstr_size);

/* Commit pg's transaction and give pg back (also when the commit fails). */
dw_err_t emu_store_commit_release(emu_store_t *st, dw_pg_t *pg, char *errstr, size_t errstr_size);

/* Roll pg's transaction back and give pg back. */
void emu_store_rollback_release(emu_store_t *st, dw_pg_t *pg);

/* Append printf-formatted text to the SQL text in buf (size bytes in all), truncating. */
void emu_store_sqlcat(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Drop every table and recreate the schema (admin reset); clears dropped-column flags. */
dw_err_t emu_store_reset(emu_store_t *st, char *errstr, size_t errstr_size);

/* ALTER TABLE ... DROP COLUMN (schema drift). DW_ERR_NOT_FOUND for an unknown table/column. */
dw_err_t emu_store_drop_column(emu_store_t *st, const char *table, const char *column,
                               char *errstr, size_t errstr_size);

/* The PostgreSQL type of a column ("text", "uuid", ...; static storage). */
const char *emu_col_sql_type(const emu_col_t *c);

/* Append "\"ident\"" to buf (ident must satisfy emu_odata_is_ident and be lower-case-safe). */
void emu_sql_ident(char *buf, size_t size, const char *ident);

#endif
