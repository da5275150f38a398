/*
 * dw_map: table maps (schemas/maps/<name>.json) and the table metadata they are checked against
 * (schemas/metadata/{fo,dv}/<name>.json). The formats and every validation rule are described in
 * schemas/README.md; the operator's view is docs/maps.md.
 *
 * A metadata set (dw_meta_t) is loaded once from a folder. A map set (dw_mapset_t) is every map of
 * a folder, loaded strictly (a map with any problem fails the load), its lookups resolved against
 * the other maps, its scope filters compiled, and its dependency order computed. A map (dw_map_t)
 * is read-only once loaded; every accessor may be called from many threads at once.
 *
 * Validation (dw_map_validate) reports EVERY problem of EVERY file, one dw_map_problem_t each:
 * the file, the JSON pointer, the rule keyword of schemas/README.md and a message. When the JSON
 * Schema structure of a file fails, only its `schema` problems are reported.
 *
 * Descriptors (dw_meta_column_t, dw_map_field_t, dw_map_lookup_t, dw_map_key_t) are public
 * read-only views owned by their set: every pointer in them lives as long as the set does.
 */
#ifndef DW_MAP_H
#define DW_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_filter.h"

/* ---- directions and sides ---------------------------------------------------------------- */

typedef enum {
    DW_MAP_FO_TO_DV = 1,
    DW_MAP_DV_TO_FO = 2,
    DW_MAP_BOTH = 3, /* DW_MAP_FO_TO_DV | DW_MAP_DV_TO_FO */
} dw_map_dir_t;

typedef enum {
    DW_MAP_FO = 0,
    DW_MAP_DV = 1,
} dw_map_side_t;

/* "fo-to-dv" | "dv-to-fo" | "both" -> *dir; DW_ERR_INVALID_ARG otherwise. */
dw_err_t dw_map_dir_parse(const char *text, dw_map_dir_t *dir);
/* The text of a direction (static). */
const char *dw_map_dir_name(dw_map_dir_t dir);
/* The side a direction reads from (fo-to-dv: fo) and writes to. dir: one direction, not both. */
dw_map_side_t dw_map_dir_source(dw_map_dir_t dir);
dw_map_side_t dw_map_dir_target(dw_map_dir_t dir);
/* "fo" | "dv" (static). */
const char *dw_map_side_name(dw_map_side_t side);

/* ---- metadata ----------------------------------------------------------------------------- */

typedef enum {
    DW_COL_STRING = 0,
    DW_COL_INTEGER,
    DW_COL_DECIMAL,
    DW_COL_BOOLEAN,
    DW_COL_DATE,
    DW_COL_DATETIME,
    DW_COL_ENUM,
    DW_COL_GUID,
    DW_COL_LOOKUP,
} dw_col_type_t;

/* "string" ... "lookup" (static). */
const char *dw_col_type_name(dw_col_type_t type);

/* One member of an enumeration: F&O enum member or Dataverse option. */
typedef struct dw_meta_member_s {
    const char *name; /* F&O: member name as OData writes it; Dataverse: option label */
    long long value;  /* F&O: member value; Dataverse: option value */
    bool has_state;
    long long state; /* statuscode options: their statecode */
} dw_meta_member_t;

/* One column of a table. */
typedef struct dw_meta_column_s {
    const char *name;
    dw_col_type_t type;
    bool required;         /* a create must carry a value */
    bool read_only;        /* valid for neither create nor update */
    int max_length;        /* strings: maximum length in characters (UTF-16 code units); 0: none */
    const char *enum_name; /* DW_COL_ENUM: the enumeration; else NULL */
    const dw_meta_member_t *members; /* DW_COL_ENUM: its members */
    size_t nmembers;
    const char *const *targets; /* DW_COL_LOOKUP: tables it may reference */
    size_t ntargets;
    const json_t *defval;  /* what the server sets when a create omits it; NULL: nothing */
    const char *generated; /* "id" | "version" | "now" | "caller" | "autonumber" | "company"
                              | NULL */
} dw_meta_column_t;

/* One alternate key of a Dataverse table. */
typedef struct dw_meta_akey_s {
    const char *name;
    const char *const *columns;
    size_t ncolumns;
} dw_meta_akey_t;

typedef struct dw_meta_s dw_meta_t;             /* every F&O entity and Dataverse table */
typedef struct dw_meta_table_s dw_meta_table_t; /* one of them */

typedef struct dw_map_report_s dw_map_report_t;

/*
 * Load metadata/fo/\*.json and metadata/dv/\*.json under dir. Every file is checked against
 * metadata.schema.json and for consistency (file name, folder, columns named by keys exist,
 * enums exist, system columns, ...). Problems go to report (may be NULL) as for maps. Returns the
 * new set, or NULL when the folder cannot be read or any file has a problem (errstr: the first
 * problem and how many there were).
 */
dw_meta_t *dw_meta_load(const char *dir, dw_map_report_t *report, char *errstr, size_t errstr_size);
void dw_meta_destroy(dw_meta_t *meta);

/* The entity (side fo) or table (side dv) of that name, or NULL. Borrowed from meta. */
const dw_meta_table_t *dw_meta_table(const dw_meta_t *meta, dw_map_side_t side, const char *name);
size_t dw_meta_table_count(const dw_meta_t *meta, dw_map_side_t side);
const dw_meta_table_t *dw_meta_table_at(const dw_meta_t *meta, dw_map_side_t side, size_t i);

/* Accessors of a table; strings borrowed from the set, NULL where the side has no such member. */
dw_map_side_t dw_meta_table_side(const dw_meta_table_t *t);
const char *dw_meta_table_name(const dw_meta_table_t *t);
const char *dw_meta_table_entity_set(const dw_meta_table_t *t);
bool dw_meta_table_company_specific(const dw_meta_table_t *t); /* fo */
size_t dw_meta_table_key_count(const dw_meta_table_t *t);      /* fo entity key */
const char *dw_meta_table_key(const dw_meta_table_t *t, size_t i);
const char *dw_meta_table_id_column(const dw_meta_table_t *t);    /* dv */
const char *dw_meta_table_primary_name(const dw_meta_table_t *t); /* dv */
size_t dw_meta_table_akey_count(const dw_meta_table_t *t);        /* dv alternate keys */
const dw_meta_akey_t *dw_meta_table_akey(const dw_meta_table_t *t, size_t i);
const dw_meta_akey_t *dw_meta_table_akey_find(const dw_meta_table_t *t, const char *name);
size_t dw_meta_table_column_count(const dw_meta_table_t *t);
const dw_meta_column_t *dw_meta_table_column_at(const dw_meta_table_t *t, size_t i);
/* The column of that name, or NULL. */
const dw_meta_column_t *dw_meta_table_column(const dw_meta_table_t *t, const char *name);

/* ---- problems ------------------------------------------------------------------------------ */

typedef struct dw_map_problem_s {
    const char *file;    /* the path as given */
    const char *pointer; /* JSON pointer into the file: "" (whole file), "/fields/3/dv", ... */
    const char *keyword; /* schemas/README.md's rule keyword: "schema", "key-unmapped", ...;
                            also "parse" (not JSON), "io" (unreadable), "cycle" (lookups of maps
                            depend on each other in a circle), "duplicate-map" (two files, one
                            name) */
    const char *message;
} dw_map_problem_t;

/* A new, empty list of problems. NULL when out of memory. */
dw_map_report_t *dw_map_report_new(void);
void dw_map_report_destroy(dw_map_report_t *report);
size_t dw_map_report_count(const dw_map_report_t *report);
/* Problem i, in the order found (per file: schema or rules in document order, roughly).
 * Borrowed from report. */
const dw_map_problem_t *dw_map_report_get(const dw_map_report_t *report, size_t i);
/* Print "FILE: POINTER: KEYWORD: MESSAGE" lines, one per problem. */
void dw_map_report_print(const dw_map_report_t *report, FILE *out);

/* ---- maps ------------------------------------------------------------------------------------ */

typedef struct dw_map_s dw_map_t;
typedef struct dw_mapset_s dw_mapset_t;

typedef enum {
    DW_MAP_UNAVAILABLE_DEFAULT = 0, /* absent: the fleet configuration decides (queue) */
    DW_MAP_UNAVAILABLE_QUEUE,
    DW_MAP_UNAVAILABLE_FAIL,
} dw_map_unavailable_t;

typedef enum {
    DW_MAP_XF_COPY = 0, /* no transform: the value is converted to the destination type */
    DW_MAP_XF_VALUE_MAP,
    DW_MAP_XF_DEFAULT,
    DW_MAP_XF_CONSTANT,
    DW_MAP_XF_LOOKUP,
} dw_map_xf_t;

/* "copy" | "value_map" | "default" | "constant" | "lookup" (static). */
const char *dw_map_xf_name(dw_map_xf_t xf);

/* One pair of a value map. */
typedef struct dw_map_pair_s {
    const json_t *fo;
    const json_t *dv;
} dw_map_pair_t;

/* A lookup: the Dataverse column references a row of table, found by key (+ company). */
typedef struct dw_map_lookup_s dw_map_lookup_t;
struct dw_map_lookup_s {
    const char *map;        /* the map that syncs the table, or NULL when table is explicit */
    const char *table;      /* the referenced table (resolved through map) */
    const char *entity_set; /* its Web API entity set (resolved through map) */
    const char *key;        /* the column holding the F&O value */
    const char *company;    /* the referenced table's company column, or NULL */
    const dw_meta_column_t *key_column; /* metadata of key in table, NULL when unknown */
    const dw_map_lookup_t *fallback;    /* next target of a polymorphic lookup, or NULL */
};

/* One field mapping (fields[i] of the file). */
typedef struct dw_map_field_s {
    size_t index;   /* i */
    const char *fo; /* F&O field, or NULL (a constant written fo-to-dv) */
    const char *dv; /* Dataverse column, or NULL (a constant written dv-to-fo) */
    dw_map_dir_t direction;
    dw_map_xf_t transform;
    const dw_map_pair_t *pairs; /* DW_MAP_XF_VALUE_MAP */
    size_t npairs;
    const json_t *default_fo;          /* DW_MAP_XF_DEFAULT: value written to fo (or NULL) */
    const json_t *default_dv;          /* DW_MAP_XF_DEFAULT: value written to dv (or NULL) */
    const json_t *constant;            /* DW_MAP_XF_CONSTANT */
    const dw_map_lookup_t *lookup;     /* DW_MAP_XF_LOOKUP */
    const dw_meta_column_t *fo_column; /* metadata of fo, NULL when fo is NULL */
    const dw_meta_column_t *dv_column; /* metadata of dv, NULL when dv is NULL */
    bool is_key;                       /* the field maps a pair of keys[] */
    const char *note;                  /* or NULL */
} dw_map_field_t;

/* One pair of the integration key and the field that maps it. */
typedef struct dw_map_key_s {
    const char *fo;
    const char *dv;
    const dw_map_field_t *field;
} dw_map_key_t;

/* True when the field runs in dir (one direction). */
bool dw_map_field_active(const dw_map_field_t *field, dw_map_dir_t dir);

/*
 * Load the map set of maps_dir (every *.json, in name order) against the metadata of
 * metadata_dir. Strict: every map must validate (schemas/README.md) and the lookups must not form
 * a cycle. Returns the new set, or NULL with errstr naming the first problem and the count; every
 * problem goes to report when it is not NULL.
 */
dw_mapset_t *dw_mapset_load(const char *maps_dir, const char *metadata_dir, dw_map_report_t *report,
                            char *errstr, size_t errstr_size);
void dw_mapset_destroy(dw_mapset_t *set);

/* The maps, in file-name order; borrowed from set. */
size_t dw_mapset_count(const dw_mapset_t *set);
const dw_map_t *dw_mapset_get(const dw_mapset_t *set, size_t i);
/* The map of that name, or NULL. */
const dw_map_t *dw_mapset_find(const dw_mapset_t *set, const char *name);
/* The metadata the set was checked against (borrowed). */
const dw_meta_t *dw_mapset_meta(const dw_mapset_t *set);
/* The maps in dependency order: every map after the maps its lookups name (ties in name order).
 * out: an array of dw_mapset_count() entries, filled with borrowed maps. A cycle cannot occur in
 * a loaded set (the load fails); DW_OK. */
dw_err_t dw_mapset_order(const dw_mapset_t *set, const dw_map_t **out);

/*
 * Validate files: paths are map files or folders (every *.json in them, name order). Lookups
 * resolve against the maps of maps_dir (may be NULL: none) plus the files named; a file named that
 * has the name of a map of maps_dir stands in for it. Every problem of every file goes to report
 * (only the named files are checked; the maps of maps_dir only serve lookups and the dependency
 * order). Metadata problems go to report too, with the metadata file's path.
 * Returns DW_OK when there is no problem, DW_ERR_INVALID_ARG when there is at least one,
 * DW_ERR_IO when metadata_dir cannot be read at all (errstr), DW_ERR_NOMEM.
 */
dw_err_t dw_map_validate(const char *const *paths, size_t npaths, const char *maps_dir,
                         const char *metadata_dir, dw_map_report_t *report, char *errstr,
                         size_t errstr_size);

/*
 * Validate one map held in memory (an upload, stdin, a fuzzer's input), named path in problems
 * (the file name rule compares its base name), against the metadata and maps of set: lookups
 * resolve against set, where a map of the same name is replaced by this one. set is not modified.
 * DW_OK, DW_ERR_INVALID_ARG (problems in report, which may be NULL) or DW_ERR_NOMEM.
 */
dw_err_t dw_mapset_validate_text(const dw_mapset_t *set, const char *path, const char *text,
                                 size_t len, dw_map_report_t *report);

/* ---- one map ----------------------------------------------------------------------------------
 */

const char *dw_map_name(const dw_map_t *map);
const char *dw_map_path(const dw_map_t *map); /* the file it was loaded from */
int dw_map_version(const dw_map_t *map);
const char *dw_map_description(const dw_map_t *map);
dw_map_dir_t dw_map_direction(const dw_map_t *map);
/* True when the map runs in dir (one direction). */
bool dw_map_runs(const dw_map_t *map, dw_map_dir_t dir);
dw_map_unavailable_t dw_map_on_unavailable(const dw_map_t *map);

const char *dw_map_fo_entity(const dw_map_t *map);
const char *dw_map_fo_entity_set(const dw_map_t *map);
bool dw_map_fo_company_specific(const dw_map_t *map);
const char *dw_map_dv_table(const dw_map_t *map);
const char *dw_map_dv_entity_set(const dw_map_t *map);
const char *dw_map_dv_id_column(const dw_map_t *map);
const char *dw_map_dv_alternate_key(const dw_map_t *map);
/* The metadata of a side (borrowed from the set). */
const dw_meta_table_t *dw_map_meta(const dw_map_t *map, dw_map_side_t side);

/* The scope filter of a side, compiled (NULL: none, every record is in scope) and its text. */
const dw_filter_t *dw_map_filter(const dw_map_t *map, dw_map_side_t side);
const char *dw_map_filter_text(const dw_map_t *map, dw_map_side_t side);

size_t dw_map_key_count(const dw_map_t *map);
const dw_map_key_t *dw_map_key(const dw_map_t *map, size_t i);
/* True when the integration key holds the company (an F&O dataAreaId key field). Records of a map
 * whose key lacks it but that have a company through a lookup (order and invoice lines) carry it
 * first in their canonical key. */
bool dw_map_key_has_company(const dw_map_t *map);

size_t dw_map_field_count(const dw_map_t *map);
const dw_map_field_t *dw_map_field(const dw_map_t *map, size_t i);
/* The field active in dir whose source column (fo in fo-to-dv, dv in dv-to-fo) is name; the first
 * one when several read it. NULL when none. */
const dw_map_field_t *dw_map_field_by_source(const dw_map_t *map, dw_map_dir_t dir,
                                             const char *name);

/* The maps this one's lookups name (fallbacks included, itself excluded), distinct, in order of
 * first appearance. Borrowed. */
size_t dw_map_dep_count(const dw_map_t *map);
const char *dw_map_dep(const dw_map_t *map, size_t i);

/* The file's document as loaded (borrowed; do not modify). */
const json_t *dw_map_json(const dw_map_t *map);

#endif
