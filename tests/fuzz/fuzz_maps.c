/*
 * fuzz_maps: the shared setup of the map fuzz targets (see fuzz_maps.h).
 */
#include "fuzz_maps.h"

#ifndef DW_DEFAULT_SCHEMAS_DIR
#define DW_DEFAULT_SCHEMAS_DIR "schemas"
#endif

dw_mapset_t *fuzz_maps_load(const char *target, char *maps, size_t maps_size, char *meta,
                            size_t meta_size)
{
    char errstr[1024];
    const char *dir = getenv("DW_FUZZ_SCHEMAS");
    snprintf(maps, maps_size, "%s/maps", dir ? dir : DW_DEFAULT_SCHEMAS_DIR);
    snprintf(meta, meta_size, "%s/metadata", dir ? dir : DW_DEFAULT_SCHEMAS_DIR);
    dw_mapset_t *set = dw_mapset_load(maps, meta, NULL, errstr, sizeof(errstr));
    if (!set) {
        fprintf(stderr, "%s: %s\n", target, errstr);
        abort();
    }
    return set;
}
