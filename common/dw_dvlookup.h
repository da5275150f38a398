/*
 * dw_dvlookup: the key values behind Dataverse lookups. A row read from the Web API holds a
 * lookup column as the GUID of the referenced row (_<col>_value); a map's lookup field wants the
 * referenced row's key value (its F&O key), and for a company-striped table {key, company} with
 * the company resolved the same way through the map that syncs it. dw-capture and dwctl
 * initial-sync resolve rows here: a resolver reads the referenced rows through the caller's
 * request function and keeps what it resolved in a bounded cache.
 */
#ifndef DW_DVLOOKUP_H
#define DW_DVLOOKUP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "dw_map.h"

/* Read one row: path is relative to the Web API base ("<set>(<guid>)?$select=..."). Returns the
 * parsed 200 body (new reference), NULL when the row cannot be read. */
typedef json_t *(dw_dvlookup_get_fn)(const char *path, void *opaque);

typedef struct dw_dvlookup_s dw_dvlookup_t;

/* New resolver. maps (borrowed, must outlive it) finds the lookup of a referenced map's company
 * column; get/opaque read rows; the cache is emptied when it grows past cache_max entries.
 * NULL when out of memory. */
dw_dvlookup_t *dw_dvlookup_new(const dw_mapset_t *maps, size_t cache_max, dw_dvlookup_get_fn *get,
                               void *opaque);
void dw_dvlookup_destroy(dw_dvlookup_t *dvl);

/* The key value of the row guid referenced by lookup lk (or one of its fallbacks): a JSON string,
 * or an object {key: value, company: code} when the referenced table is company-striped; NULL
 * when it cannot be resolved. New reference. */
json_t *dw_dvlookup_resolve(dw_dvlookup_t *dvl, const dw_map_lookup_t *lk, const char *guid);

/* Put the key value of every lookup that map reads from Dataverse into row (the column itself,
 * beside the _<col>_value guid), as far as it can be resolved. A column already present stays. */
void dw_dvlookup_fill_row(dw_dvlookup_t *dvl, const dw_map_t *map, json_t *row);

/* How many entries the cache holds (tests). */
size_t dw_dvlookup_cached(const dw_dvlookup_t *dvl);

/* True when s is a GUID in its 8-4-4-4-12 hexadecimal form. */
bool dw_dvlookup_guid_ok(const char *s);

#endif
