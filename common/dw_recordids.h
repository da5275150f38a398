/*
 * dw_recordids: the dw_record_ids table, which maps a Dataverse row id to the canonical key and
 * source key of the record it was captured as, so that a delete (which carries the row id only)
 * can be resolved. dw-capture and dwctl initial-sync both record ids here.
 */
#ifndef DW_RECORDIDS_H
#define DW_RECORDIDS_H

#include <stddef.h>

#include <jansson.h>

#include "dw_err.h"
#include "dw_pg.h"

/* Upsert ids (borrowed; a JSON array of {"id": uuid, "ck": canonical key, "key": source key},
 * the last entry of an id winning; NULL or empty: nothing to do) for map, inside the caller's
 * transaction on pg. 0, or an error with errstr filled; the caller rolls back. */
dw_err_t dw_recordids_upsert(dw_pg_t *pg, const char *map, const json_t *ids, char *errstr,
                             size_t errstr_size);

#endif
