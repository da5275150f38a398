/*
 * dw_testutil: process runs, scratch folders and unique names for the tests.
 */
#include "dw_testutil.h"

#include <criterion/criterion.h>

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t l = f ? fread(buf, 1, n - 1, f) : 0;
    buf[l] = '\0';
    if (f)
        fclose(f);
}

void dw_test_run(dw_test_run_t *r, const char *path, const char *const *args,
                 const char *const *env, int keep_dw_env)
{
    char outp[] = "/tmp/dwtest-out-XXXXXX", errp[] = "/tmp/dwtest-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    cr_assert(ofd >= 0 && efd >= 0);
    const char *envp[512];
    size_t n = 0;
    for (char **e = environ; *e && n < 400; e++) {
        if (keep_dw_env || strncmp(*e, "DW_", 3) != 0)
            envp[n++] = *e;
    }
    for (int i = 0; env && env[i] && n < 510; i++)
        envp[n++] = env[i];
    envp[n] = NULL;
    const char *argv[64] = {path};
    for (int i = 0; args[i] && i < 62; i++)
        argv[i + 1] = args[i];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    pid_t pid;
    int serr = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(serr, 0, "posix_spawn %s: %s", path, strerror(serr));
    int st = 0;
    waitpid(pid, &st, 0);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(outp, r->out, sizeof(r->out));
    slurp(errp, r->err, sizeof(r->err));
    close(ofd);
    close(efd);
    unlink(outp);
    unlink(errp);
}

static char tmpdir[64];

const char *dw_test_tmpdir_new(void)
{
    strcpy(tmpdir, "/tmp/dwtest-XXXXXX");
    cr_assert(mkdtemp(tmpdir), "mkdtemp failed");
    return tmpdir;
}

void dw_test_tmpdir_remove(void)
{
    char cmd[128];
    if (!tmpdir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_assert(system(cmd) == 0);
    tmpdir[0] = '\0';
}

const char *dw_test_write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

const char *dw_test_unique(const char *prefix)
{
    static char name[128];
    static unsigned counter;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(name, sizeof(name), "%s_%d_%u_%ld", prefix, (int)getpid(), counter++,
             (long)tv.tv_usec);
    return name;
}
