/*
 * dw_bench: what the benchmark binaries share: --help and --version like every dwfleet binary,
 * a monotonic clock, child processes (dw-emulator, the workers) started with their output in a
 * log file, a process's CPU time from /proc, small blocking HTTP calls against an emulator, and
 * the Customers V3 event every Kafka benchmark feeds.
 */
#ifndef DW_BENCH_H
#define DW_BENCH_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <curl/curl.h>

/* When argv[1] is -h/--help (usage to stdout) or -V/--version, print and return 0; else -1.
 * usage: the lines after "Usage: <name> " (borrowed). */
int dw_bench_std_args(int argc, char **argv, const char *name, const char *usage);

/* Seconds on the monotonic clock. */
double dw_bench_now(void);

/* A loopback TCP port free right now. */
int dw_bench_free_port(void);

/* Start DW_BIN_DIR/<bin> with argv (NULL-terminated, argv[0] included), stdout and stderr
 * appended to log. The pid, or -1. */
pid_t dw_bench_spawn(const char *bin_dir, const char *bin, const char *const *argv,
                     const char *log);
/* Spawn and wait: the exit code (128 + signal when killed), -1 when it could not run. */
int dw_bench_run_wait(const char *bin_dir, const char *bin, const char *const *argv,
                      const char *log);
/* SIGTERM *pid, wait for it, fill ru (may be NULL) with its resource usage (ru_maxrss: peak
 * RSS in KiB), set *pid to -1. Returns the exit code (128 + signal), -1 when none ran. */
int dw_bench_stop(pid_t *pid, struct rusage *ru);
/* Any process's CPU so far, from /proc/<pid>/stat: *ticks = utime + stime and *start = its
 * starttime (a reused pid has another), both in clock ticks (sysconf(_SC_CLK_TCK)); comm: NULL, or
 * 16 bytes receiving the command name. 0, or -1 when pid is gone or unreadable. */
int dw_bench_proc_cpu(pid_t pid, unsigned long long *ticks, unsigned long long *start, char *comm);
/* The CPU seconds (user + system) process pid has used so far; -1 when pid is gone. */
double dw_bench_proc_cpu_s(pid_t pid);

/* One blocking request on c (kept alive for the next one). body: JSON, or a form when it starts
 * with "client_id". token: bearer token or NULL. out: NULL, or 8 KiB receiving the body
 * (truncated). Returns the HTTP status, 0 when the transfer failed. */
long dw_bench_http(CURL *c, const char *method, const char *url, const char *body,
                   const char *token, char *out);
/* GET url until it answers (any status) or timeout_s passes: 0, or -1. */
int dw_bench_wait_http(const char *url, double timeout_s);
/* A token from the emulator on port (client dwfleet, the emulator's default secret): 0, or -1. */
int dw_bench_token(int port, char *token, size_t size);

/* The event envelope of Customers V3 record i (31 fields, company usmf, account US-<i>) for map
 * m, from F&O. Returns its length (snprintf's). */
int dw_bench_customer_event(char *buf, size_t size, const char *m, int i);

#endif
