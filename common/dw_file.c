/*
 * dw_file: whole-file helpers (see dw_file.h).
 */
#include "dw_file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *dw_file_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
        size_t got = fread(buf, 1, (size_t)n, f);
        buf[got] = '\0';
    }
    int saved = errno;
    fclose(f);
    if (!buf)
        errno = saved ? saved : ENOMEM;
    return buf;
}

int dw_file_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    int saved = errno;
    if (fclose(f) != 0)
        rc = -1;
    else if (rc)
        errno = saved;
    return rc;
}

int dw_file_copy_json(const char *from_dir, const char *to_dir)
{
    DIR *d = opendir(from_dir);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        char src[4096], dst[4096];
        snprintf(src, sizeof(src), "%s/%s", from_dir, de->d_name);
        snprintf(dst, sizeof(dst), "%s/%s", to_dir, de->d_name);
        char *text = dw_file_read(src);
        if (!text || dw_file_write(dst, text) != 0)
            rc = -1;
        free(text);
    }
    int saved = errno;
    closedir(d);
    if (rc)
        errno = saved;
    return rc;
}
