/*
 * dw_bench: --help and --version for the benchmark binaries.
 */
#include "dw_bench.h"

#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

int dw_bench_std_args(int argc, char **argv, const char *name, const char *usage)
{
    if (argc < 2)
        return -1;
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        printf("Usage: %s %s", name, usage);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("%s %s (%s) librdkafka %s\n", name, DW_VERSION, DW_GIT_REV, rd_kafka_version_str());
        return 0;
    }
    return -1;
}
