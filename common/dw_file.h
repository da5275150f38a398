/*
 * dw_file: whole-file helpers: read a text file into memory, write one, copy the JSON files of a
 * folder (the benchmarks and tests that run workers on a private copy of the standard maps).
 */
#ifndef DW_FILE_H
#define DW_FILE_H

/* The whole of path as a NUL-terminated string (new; free it), or NULL with errno set. */
char *dw_file_read(const char *path);

/* Create or truncate path and write text (borrowed) into it. 0, or -1 with errno set. */
int dw_file_write(const char *path, const char *text);

/* Copy every "*.json" file of from_dir into to_dir (an existing folder). 0, or -1 with
 * errno set at the first file that could not be copied. */
int dw_file_copy_json(const char *from_dir, const char *to_dir);

#endif
