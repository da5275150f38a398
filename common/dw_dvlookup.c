/*
 * dw_dvlookup: resolving Dataverse lookup GUIDs to the referenced rows' key values, with a
 * bounded cache and the company recursion of company-striped tables (see dw_dvlookup.h).
 */
#include "dw_dvlookup.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* how deep the company of a company of ... may be resolved */
#define DVL_MAX_DEPTH 3

struct dw_dvlookup_s {
    const dw_mapset_t *maps;
    size_t cache_max;
    dw_dvlookup_get_fn *get;
    void *opaque;
    json_t *cache; /* "<set>(<guid>)" -> resolved key value */
};

bool dw_dvlookup_guid_ok(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

dw_dvlookup_t *dw_dvlookup_new(const dw_mapset_t *maps, size_t cache_max, dw_dvlookup_get_fn *get,
                               void *opaque)
{
    dw_dvlookup_t *dvl = calloc(1, sizeof(*dvl));
    if (!dvl || !(dvl->cache = json_object())) {
        free(dvl);
        return NULL;
    }
    dvl->maps = maps;
    dvl->cache_max = cache_max;
    dvl->get = get;
    dvl->opaque = opaque;
    return dvl;
}

void dw_dvlookup_destroy(dw_dvlookup_t *dvl)
{
    if (!dvl)
        return;
    json_decref(dvl->cache);
    free(dvl);
}

size_t dw_dvlookup_cached(const dw_dvlookup_t *dvl)
{
    return json_object_size(dvl->cache);
}

/* The lookup of the referenced map that fills column col (any direction), or NULL. */
static const dw_map_lookup_t *dvl_lookup_of(const dw_dvlookup_t *dvl, const char *map_name,
                                            const char *col)
{
    const dw_map_t *rm = map_name && dvl->maps ? dw_mapset_find(dvl->maps, map_name) : NULL;
    for (size_t i = 0; rm && i < dw_map_field_count(rm); i++) {
        const dw_map_field_t *f = dw_map_field(rm, i);
        if (f->dv && strcmp(f->dv, col) == 0 && f->transform == DW_MAP_XF_LOOKUP && f->lookup)
            return f->lookup;
    }
    return NULL;
}

static json_t *dvl_resolve(dw_dvlookup_t *dvl, const dw_map_lookup_t *lk, const char *guid,
                           int depth)
{
    if (!dw_dvlookup_guid_ok(guid) || depth > DVL_MAX_DEPTH)
        return NULL;
    for (const dw_map_lookup_t *l = lk; l; l = l->fallback) {
        if (!l->entity_set || !l->key)
            continue;
        char ckey[512], path[1024];
        snprintf(ckey, sizeof(ckey), "%s(%s)", l->entity_set, guid);
        json_t *hit = json_object_get(dvl->cache, ckey);
        if (hit)
            return json_incref(hit);
        if (l->company)
            snprintf(path, sizeof(path), "%s(%s)?$select=%s,_%s_value", l->entity_set, guid,
                     l->key, l->company);
        else
            snprintf(path, sizeof(path), "%s(%s)?$select=%s", l->entity_set, guid, l->key);
        json_t *row = dvl->get(path, dvl->opaque);
        if (!row)
            continue;
        json_t *out = NULL;
        const json_t *kv = json_object_get(row, l->key);
        if (json_is_string(kv)) {
            if (!l->company) {
                out = json_incref((json_t *)kv);
            } else {
                char cname[300];
                snprintf(cname, sizeof(cname), "_%s_value", l->company);
                const char *cg = json_string_value(json_object_get(row, cname));
                const dw_map_lookup_t *cl = dvl_lookup_of(dvl, l->map, l->company);
                json_t *cv = cg && cl ? dvl_resolve(dvl, cl, cg, depth + 1) : NULL;
                if (json_is_string(cv))
                    out = json_pack("{s:O, s:O}", l->key, kv, l->company, cv);
                json_decref(cv);
            }
        }
        json_decref(row);
        if (out) {
            if (json_object_size(dvl->cache) > dvl->cache_max)
                json_object_clear(dvl->cache);
            json_object_set(dvl->cache, ckey, out);
            return out;
        }
    }
    return NULL;
}

json_t *dw_dvlookup_resolve(dw_dvlookup_t *dvl, const dw_map_lookup_t *lk, const char *guid)
{
    return dvl_resolve(dvl, lk, guid, 0);
}

void dw_dvlookup_fill_row(dw_dvlookup_t *dvl, const dw_map_t *map, json_t *row)
{
    for (size_t i = 0; i < dw_map_field_count(map); i++) {
        const dw_map_field_t *f = dw_map_field(map, i);
        if (f->transform != DW_MAP_XF_LOOKUP || !f->lookup || !f->dv ||
            !dw_map_field_active(f, DW_MAP_DV_TO_FO) || json_object_get(row, f->dv))
            continue;
        char name[300];
        snprintf(name, sizeof(name), "_%s_value", f->dv);
        const char *guid = json_string_value(json_object_get(row, name));
        json_t *v = guid ? dvl_resolve(dvl, f->lookup, guid, 0) : NULL;
        if (v)
            json_object_set_new(row, f->dv, v);
    }
}
