/*
 * dw_buf: a growing text buffer with JSON string escaping (see dw_buf.h).
 */
#include "dw_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dw_buf_put(dw_buf_t *b, const char *s, size_t n)
{
    if (b->fail)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void dw_buf_printf(dw_buf_t *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int l = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (l < 0) {
        b->fail = true;
        return;
    }
    if ((size_t)l < sizeof(small)) {
        dw_buf_put(b, small, (size_t)l);
        return;
    }
    char *big = malloc((size_t)l + 1);
    if (!big) {
        b->fail = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)l + 1, fmt, ap);
    va_end(ap);
    dw_buf_put(b, big, (size_t)l);
    free(big);
}

void dw_buf_json_str(dw_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    DW_BUF_LIT(b, "\"");
    size_t run = 0, i = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        dw_buf_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            DW_BUF_LIT(b, "\\\"");
            break;
        case '\\':
            DW_BUF_LIT(b, "\\\\");
            break;
        case '\b':
            DW_BUF_LIT(b, "\\b");
            break;
        case '\f':
            DW_BUF_LIT(b, "\\f");
            break;
        case '\n':
            DW_BUF_LIT(b, "\\n");
            break;
        case '\r':
            DW_BUF_LIT(b, "\\r");
            break;
        case '\t':
            DW_BUF_LIT(b, "\\t");
            break;
        default: {
            char seq[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
            dw_buf_put(b, seq, 6);
        }
        }
    }
    dw_buf_put(b, s + run, n - run);
    DW_BUF_LIT(b, "\"");
}
