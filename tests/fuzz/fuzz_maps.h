/*
 * fuzz_maps: what the map fuzz targets (fuzz_map_load, fuzz_mapper) share: a check that aborts
 * with the target's name, and loading the standard maps once in LLVMFuzzerInitialize.
 * Built with them by tests/fuzz/run.sh.
 */
#ifndef FUZZ_MAPS_H
#define FUZZ_MAPS_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "dw_map.h"

/* Abort with "<target>: check failed at line N: <cond>" unless cond holds. */
#define FUZZ_CHECK(target, cond)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s: check failed at line %d: %s\n", target, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Load the standard maps from $DW_FUZZ_SCHEMAS (else DW_DEFAULT_SCHEMAS_DIR): <dir>/maps and
 * <dir>/metadata, whose paths are written into maps and meta. New map set; aborts with
 * "<target>: <error>" when they cannot be loaded. */
dw_mapset_t *fuzz_maps_load(const char *target, char *maps, size_t maps_size, char *meta,
                            size_t meta_size);

#endif
