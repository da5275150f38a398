/*
 * dw_testutil: process runs, scratch folders and unique names for the tests.
 */
#include "dw_testutil.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* text with every "from" replaced by "to". Takes ownership of text; new string, NULL when out of
 * memory. */
static char *replace_all(char *text, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    char *p, *at = text;
    while (text && (p = strstr(at, from))) {
        size_t l = strlen(text), off = (size_t)(p - text);
        char *nt = malloc(l - fl + tl + 1);
        if (nt) {
            memcpy(nt, text, off);
            memcpy(nt + off, to, tl);
            strcpy(nt + off + tl, p + fl);
        }
        free(text);
        text = nt;
        at = nt ? nt + off + tl : NULL;
    }
    return text;
}

int dw_test_maps_copy(const char *dir, const char *const *bases, const char *suffix, char *errstr,
                      size_t errstr_size)
{
    mkdir(dir, 0755);
    for (int i = 0; bases[i]; i++) {
        char path[512], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), DW_SOURCE_DIR "/schemas/maps/%s.json", bases[i]);
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(errstr, errstr_size, "cannot read %s", path);
            return -1;
        }
        FILE *m = open_memstream(&text, &len);
        char buf[4096];
        size_t n;
        while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(f);
        if (m)
            fclose(m);
        for (int j = 0; text && bases[j]; j++) {
            char from[128], to[160];
            snprintf(from, sizeof(from), "\"%s\"", bases[j]);
            snprintf(to, sizeof(to), "\"%s_%s\"", bases[j], suffix);
            text = replace_all(text, from, to);
        }
        snprintf(path, sizeof(path), "%s/%s_%s.json", dir, bases[i], suffix);
        f = text ? fopen(path, "w") : NULL;
        if (f) {
            fputs(text, f);
            fclose(f);
        }
        free(text);
        if (!f) {
            snprintf(errstr, errstr_size, "cannot write %s", path);
            return -1;
        }
    }
    return 0;
}

void dw_test_maps_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

pid_t dw_test_spawn(const char *path, const char *const *argv, char *const *envp, const char *log)
{
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int e = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return pid;
}
