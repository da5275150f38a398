/*
 * dw_recordids: writing Dataverse row id -> key entries into dw_record_ids (see dw_recordids.h).
 */
#include "dw_recordids.h"

#include <stdlib.h>

dw_err_t dw_recordids_upsert(dw_pg_t *pg, const char *map, const json_t *ids, char *errstr,
                             size_t errstr_size)
{
    if (!ids || json_array_size(ids) == 0)
        return DW_OK;
    char *ids_text = json_dumps(ids, JSON_COMPACT);
    if (!ids_text)
        return dw_errf(DW_ERR_NOMEM, errstr, errstr_size, "out of memory");
    const char *p[2] = {map, ids_text};
    dw_err_t rc =
        dw_pg_exec(pg,
                   "INSERT INTO dw_record_ids (map, record_id, canonical_key, source_key)"
                   " SELECT DISTINCT ON ((e->>'id')::uuid) $1, (e->>'id')::uuid, e->>'ck',"
                   " e->'key' FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(e, n)"
                   " ORDER BY (e->>'id')::uuid, n DESC"
                   " ON CONFLICT (map, record_id) DO UPDATE SET canonical_key ="
                   " EXCLUDED.canonical_key, source_key = EXCLUDED.source_key,"
                   " updated_at = now()",
                   2, p, NULL, errstr, errstr_size);
    free(ids_text);
    return rc;
}
