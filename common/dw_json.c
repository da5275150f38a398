/*
 * dw_json: small jansson helpers (see dw_json.h).
 */
#include "dw_json.h"

#include <string.h>

const char *dw_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

bool dw_json_unescape(const char *raw, size_t n, char *out, size_t out_size, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char tmp[4];
        size_t tl = 0;
        if (raw[i] != '\\') {
            tmp[tl++] = raw[i++];
        } else if (i + 1 < n && raw[i + 1] != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = raw[i + 1] ? strchr(from, raw[i + 1]) : NULL;
            if (!f)
                return false;
            tmp[tl++] = to[f - from];
            i += 2;
        } else {
            long v = i + 6 <= n ? dw_json_hex4(raw + i + 2) : -1;
            if (v < 0)
                return false;
            i += 6;
            if (v >= 0xd800 && v <= 0xdbff) {
                long w = i + 6 <= n && raw[i] == '\\' ? dw_json_hex4(raw + i + 2) : -1;
                if (w < 0xdc00 || w > 0xdfff)
                    return false;
                v = 0x10000 + ((v - 0xd800) << 10) + (w - 0xdc00);
                i += 6;
            }
            if (v < 0x80) {
                tmp[tl++] = (char)v;
            } else if (v < 0x800) {
                tmp[tl++] = (char)(0xc0 | (v >> 6));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            } else if (v < 0x10000) {
                tmp[tl++] = (char)(0xe0 | (v >> 12));
                tmp[tl++] = (char)(0x80 | ((v >> 6) & 0x3f));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            } else {
                tmp[tl++] = (char)(0xf0 | (v >> 18));
                tmp[tl++] = (char)(0x80 | ((v >> 12) & 0x3f));
                tmp[tl++] = (char)(0x80 | ((v >> 6) & 0x3f));
                tmp[tl++] = (char)(0x80 | (v & 0x3f));
            }
        }
        if (o + tl + 1 > out_size)
            return false;
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    if (o + 1 > out_size)
        return false;
    out[o] = '\0';
    if (len)
        *len = o;
    return true;
}
