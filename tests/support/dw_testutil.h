/*
 * dw_testutil: what several test files need: run a dwfleet binary as a process and capture its
 * exit status and output, scratch folders and files, and renamed copies of the standard maps.
 */
#ifndef DW_TESTUTIL_H
#define DW_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

typedef struct dw_test_run_s {
    int status; /* exit code, or 128 + signal */
    char out[65536];
    char err[65536];
} dw_test_run_t;

/* Run the program at path with args (NULL-terminated, argv[0] excluded) and extra environment
 * "K=V" strings (NULL-terminated, or NULL). The DW_* variables of the test's own environment are
 * left out unless keep_dw_env. Uses posix_spawn: the Criterion worker never forks. */
void dw_test_run(dw_test_run_t *r, const char *path, const char *const *args,
                 const char *const *env, int keep_dw_env);

/* Start the program at path in the background: argv (NULL-terminated, argv[0] included), envp
 * ("K=V", NULL-terminated; pass environ for the test's own), stdout and stderr appended to log.
 * The child's pid, or -1 with errno set. Uses posix_spawn. */
pid_t dw_test_spawn(const char *path, const char *const *argv, char *const *envp, const char *log);

/* A new scratch folder under /tmp (static buffer; one at a time) and its removal. */
const char *dw_test_tmpdir_new(void);
void dw_test_tmpdir_remove(void);

/* Write text to <tmpdir>/name; returns the path (static buffer, overwritten by the next call). */
const char *dw_test_write_file(const char *name, const char *text);

/* A name unique to this process and moment, "<prefix>_<pid>_<counter>_<usec>" (static buffer). */
const char *dw_test_unique(const char *prefix);

/* Copy the standard maps named in bases (DW_SOURCE_DIR/schemas/maps/<base>.json, NULL-terminated)
 * into dir (created), each renamed "<base>_<suffix>" wherever any of them names it, so a test's
 * topics, checkpoints and run rows are its own. 0, or -1 with errstr filled. */
int dw_test_maps_copy(const char *dir, const char *const *bases, const char *suffix, char *errstr,
                      size_t errstr_size);

/* Remove dir and the files in it. */
void dw_test_maps_remove(const char *dir);

#endif
