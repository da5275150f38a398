/*
 * dw_mapper: the mapping engine. Given a map (dw_map), a direction and a source record (a JSON
 * object: column name -> value, as the source API returns it), it produces the target payload
 * (what the writer sends), the target key object, the canonical record key (the Kafka message
 * key, schemas/README.md "Canonical record key") and the content hash of the payload
 * (schemas/README.md "content_hash"). Semantics, conversions and error classes: docs/maps.md.
 *
 * Stateless and thread-safe: a map may be applied from many threads at once.
 *
 * Decimals never pass through binary floating point when they cannot survive it:
 * dw_mapper_loadb() parses JSON text keeping every number literal that a double cannot carry
 * exactly (more than 15 significant digits, or an integer beyond int64) as its literal text in a
 * JSON string; decimal strings are passed through verbatim after validation; decimal JSON reals
 * (exact by construction, at most 15 significant digits) are written with the shortest text that
 * reads back as the same double (dw_mapper_dumps), never jansson's 17-digit form.
 */
#ifndef DW_MAPPER_H
#define DW_MAPPER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_map.h"
#include "dw_sha256.h"

/* Why a record could not be mapped. */
typedef enum {
    DW_MAPPER_OK = 0,
    DW_MAPPER_MISSING_KEY,       /* a key field (or the company a lookup needs) is missing/null */
    DW_MAPPER_WRONG_TYPE,        /* a value of the wrong JSON type or shape */
    DW_MAPPER_UNMAPPED_VALUE,    /* no pair of the value map, or not a member of the enum */
    DW_MAPPER_OUT_OF_RANGE,      /* an integer beyond int64, a decimal beyond 28 integer digits */
    DW_MAPPER_INVALID_DATE,      /* not a date/time, or no such day/time */
    DW_MAPPER_TOO_LONG,          /* a string longer than the column's max_length */
    DW_MAPPER_INVALID_UTF8,      /* bytes that are not UTF-8 */
    DW_MAPPER_UNRESOLVED_LOOKUP, /* a Dataverse lookup given only as a row id (_x_value guid) */
    DW_MAPPER_MALFORMED,         /* not JSON, or the record is not an object */
    DW_MAPPER_DIRECTION,         /* the map does not run in the requested direction */
    DW_MAPPER_NOMEM,
    DW_MAPPER__COUNT
} dw_mapper_reason_t;

/* "missing_key", "wrong_type", ... (static). */
const char *dw_mapper_reason_name(dw_mapper_reason_t reason);

/* What went wrong, for the dead letter and the operator. Messages describe the value (its type,
 * its length) but never contain record data. */
typedef struct dw_mapper_error_s {
    dw_mapper_reason_t reason;
    char field[192];   /* the source column it is about ("" when it is about the whole record);
                          a constant or default names its destination column */
    char message[512]; /* "CreditLimit: ..." */
} dw_mapper_error_t;

/* The result of one mapping. Zero-initialise; free the members with dw_mapper_result_clear. */
typedef struct dw_mapper_result_s {
    json_t *payload;     /* new: the target fields (F&O field names, or Dataverse column names
                            with lookups as "<col>@odata.bind") */
    json_t *key;         /* new: the target key, by target column (a Dataverse lookup key part
                            holds the referenced row's key value, e.g. the company code) */
    char *canonical_key; /* new: compact JSON array, e.g. ["usmf","us-001"] */
    char content_hash[DW_SHA256_HEX_SIZE]; /* of payload, see dw_mapper_content_hash */
    char *company;                         /* new: the record's company (F&O dataAreaId), or NULL */
    char *payload_text; /* new: payload serialised compactly with sorted keys (NUL-terminated):
                           the very text content_hash is the SHA-256 of, so a command can carry
                           it without serialising the payload again */
    size_t payload_len;
} dw_mapper_result_t;

void dw_mapper_result_clear(dw_mapper_result_t *res);

/*
 * Map record (borrowed, a JSON object of the source side: F&O fields in fo-to-dv, Dataverse
 * columns in dv-to-fo) in direction dir (DW_MAP_FO_TO_DV or DW_MAP_DV_TO_FO) with map (borrowed).
 * Only the fields active in dir are read; fields of the record the map does not name are ignored.
 * On DW_OK res is filled (its previous content is not freed). On DW_ERR_INVALID_ARG (the record
 * cannot be mapped: a dead letter of class mapping) or DW_ERR_NOMEM, res is left empty and err
 * says why (err may be NULL).
 */
dw_err_t dw_mapper_apply(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                         dw_mapper_result_t *res, dw_mapper_error_t *err);

/*
 * Is record in the map's scope for dir (the source side's filter; no filter: always)? Strict
 * evaluation (dw_filter_eval): a value of a type the filter cannot compare is DW_ERR_INVALID_ARG
 * with err (reason wrong_type, field named).
 */
dw_err_t dw_mapper_in_scope(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                            bool *in_scope, dw_mapper_error_t *err);

/*
 * Round trip: map record in dir, map that payload back in the other direction, and compare every
 * field that runs both ways with the record's own value (both normalised for the column, so
 * "2024-03-01T00:00:00+00:00" equals "2024-03-01T00:00:00Z"). DW_OK when all are unchanged;
 * DW_ERR_CONFLICT with err naming the first field that changed; mapping failures as
 * dw_mapper_apply. back (may be NULL): new, the record as mapped back.
 */
dw_err_t dw_mapper_roundtrip(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                             json_t **back, dw_mapper_error_t *err);

/*
 * The origin side's content hash of the record res describes (res: the result of
 * dw_mapper_apply(map, dir, record), borrowed): res->payload mapped back in the reverse direction
 * (with the record's company as dataAreaId when the reverse direction reads F&O and the payload
 * has none) and hashed with dw_mapper_content_hash. It is the content_hash the same record gets
 * when the target side captures what the writer wrote and maps it back, so the writer can record
 * it as the origin side's last known content and drop that echo (loop prevention, docs/maps.md).
 * Only for a map that runs both ways. DW_ERR_INVALID_ARG with err when the payload does not map
 * back (the caller omits the hash), DW_ERR_NOMEM.
 */
dw_err_t dw_mapper_origin_hash(const dw_map_t *map, dw_map_dir_t dir, const dw_mapper_result_t *res,
                               char hex[DW_SHA256_HEX_SIZE], dw_mapper_error_t *err);

/*
 * Convert one value (borrowed) for a column (borrowed) of side: the same conversion and checks a
 * copied field gets (type, range, dates to UTC, max_length, enum membership), without a value
 * map. *out: new. For literals in maps (constants, defaults) and for callers with loose values.
 */
dw_err_t dw_mapper_convert(const dw_meta_column_t *column, dw_map_side_t side, const json_t *in,
                           json_t **out, dw_mapper_error_t *err);

/*
 * The Dataverse reference of a lookup: "/<entity_set>(<key>='<value>'[,<company>='<company>'])",
 * with every quote in a value doubled and every byte but A-Z a-z 0-9 - . _ ~ and the quote
 * percent-encoded (UTF-8), so no value can end the literal, the key or the path. company: NULL
 * when lookup has none. New string in *out.
 */
dw_err_t dw_mapper_bind(const dw_map_lookup_t *lookup, const char *value, const char *company,
                        char **out);

/*
 * Read a reference made by dw_mapper_bind (or by a Dataverse client: with or without the leading
 * '/', after any URL prefix, percent-encoded or not) for lookup or one of its fallbacks: *value
 * and *company (may be NULL) new strings (*company NULL when absent), *matched the lookup whose
 * entity set it names. DW_ERR_INVALID_ARG when it is not such a reference (err).
 */
dw_err_t dw_mapper_bind_parse(const dw_map_lookup_t *lookup, const char *bind, char **value,
                              char **company, const dw_map_lookup_t **matched,
                              dw_mapper_error_t *err);

/*
 * Parse JSON text (any JSON value; duplicate object keys rejected) keeping exact numbers: a
 * number literal with more than 15 significant digits, an exponent out of double range, or an
 * integer beyond int64 becomes a JSON string holding the literal unchanged (so a decimal column
 * receives it verbatim, and an integer column reports out_of_range naming the field). Returns a
 * new value, or NULL with err: malformed (with line and column) or invalid_utf8 (naming the
 * member whose value holds the bad bytes).
 */
json_t *dw_mapper_loadb(const char *text, size_t len, dw_mapper_error_t *err);

#define DW_MAPPER_DUMP_SORT_KEYS 0x1

/*
 * Serialise compactly, as jansson's json_dumps(JSON_COMPACT [| JSON_SORT_KEYS]) does, except
 * that reals are written in the shortest form that reads back as the same double (0.1, not
 * 0.10000000000000001). New string (free()), its length in *len (may be NULL); NULL when out of
 * memory or v holds invalid UTF-8.
 */
char *dw_mapper_dumps(const json_t *v, int flags, size_t *len);

/* SHA-256 hex of dw_mapper_dumps(fields, DW_MAPPER_DUMP_SORT_KEYS): independent of member
 * order. DW_ERR_NOMEM or DW_ERR_INVALID_ARG (invalid UTF-8). */
dw_err_t dw_mapper_content_hash(const json_t *fields, char hex[DW_SHA256_HEX_SIZE]);

/*
 * The key of a SOURCE record (capture): map record (borrowed; a record of the side dir reads
 * from) far enough to get its integration key, without needing the rest of the record to map.
 * *key: new object, source column -> value (a Dataverse lookup key part holds the referenced
 * row's key value, resolved as dw_mapper_apply resolves it); *canonical: new string, the
 * canonical record key (the Kafka message key). Either may be NULL when not wanted.
 * DW_ERR_INVALID_ARG with err when a key part is missing or cannot be read (missing_key,
 * unresolved_lookup, wrong_type, ...); DW_ERR_NOMEM.
 */
dw_err_t dw_mapper_source_key(const dw_map_t *map, dw_map_dir_t dir, const json_t *record,
                              json_t **key, char **canonical, dw_mapper_error_t *err);

#endif
