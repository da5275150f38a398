/*
 * dw_bench: what every benchmark binary shares: --help and --version like every dwfleet binary.
 */
#ifndef DW_BENCH_H
#define DW_BENCH_H

/* When argv[1] is -h/--help (usage to stdout) or -V/--version, print and return 0; else -1.
 * usage: the lines after "Usage: <name> " (borrowed). */
int dw_bench_std_args(int argc, char **argv, const char *name, const char *usage);

#endif
