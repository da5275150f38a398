/*
 * dw_buf: a growing text buffer for output written piece by piece (an envelope, a page of
 * records), with JSON string escaping. A failed allocation sets fail and makes every later call
 * a no-op, so a writer checks once at the end.
 */
#ifndef DW_BUF_H
#define DW_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dw_buf_s {
    char *p; /* NUL-terminated text (NULL before the first put); the caller frees it */
    size_t n, cap;
    bool fail; /* out of memory: the text is incomplete */
} dw_buf_t;

/* Append n bytes of s. */
void dw_buf_put(dw_buf_t *b, const char *s, size_t n);

/* Append printf-formatted text. */
void dw_buf_printf(dw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append a string literal. */
#define DW_BUF_LIT(b, lit) dw_buf_put(b, lit, sizeof(lit) - 1)

/* Append n bytes of s as a JSON string: quoted, with ", \ and control characters escaped as
 * dw_mapper_dumps (jansson) escapes them; other bytes as they are. */
void dw_buf_json_str(dw_buf_t *b, const char *s, size_t n);

#endif
