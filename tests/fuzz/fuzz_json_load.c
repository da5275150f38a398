/*
 * fuzz_json_load: differential libFuzzer target for dw_json_loadb (common/dw_json.c), run by
 * tests/fuzz/run.sh. The first byte of the input picks the flags (bit 0: JSON_REJECT_DUPLICATES,
 * bit 1: JSON_DECODE_ANY), the rest is the text. dw_json_loadb must accept exactly what
 * json_loadb accepts with the same flags, into a tree json_equal to jansson's, and say where a
 * refused text is wrong. One difference is allowed: a NUL byte outside a string, which jansson
 * sometimes reads past and dw_json_loadb always refuses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dw_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t flags = ((data[0] & 1) ? JSON_REJECT_DUPLICATES : 0) | ((data[0] & 2) ? JSON_DECODE_ANY : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    json_error_t je, me;
    json_t *want = json_loadb(text, len, flags, &je);
    json_t *got = dw_json_loadb(text, len, flags, &me);
    if (!got && want && memchr(text, 0, len)) {
        json_decref(want);
        want = NULL; /* the one allowed difference */
    }
    if ((got != NULL) != (want != NULL)) {
        fprintf(stderr, "disagree (flags %zu): dw_json_loadb %s (%s), jansson %s (%s)\n", flags,
                got ? "accepts" : "refuses", got ? "" : me.text, want ? "accepts" : "refuses",
                want ? "" : je.text);
        abort();
    }
    if (got && !json_equal(got, want)) {
        char *a = json_dumps(got, JSON_ENCODE_ANY), *b = json_dumps(want, JSON_ENCODE_ANY);
        fprintf(stderr, "different trees:\n  dw_json_loadb %s\n  jansson       %s\n", a, b);
        abort();
    }
    if (!got && (me.line < 1 || me.column < 1 || me.position < 0 || (size_t)me.position > len ||
                 !me.text[0])) {
        fprintf(stderr, "a refusal that does not say where or why: %d:%d@%d '%s'\n", me.line,
                me.column, me.position, me.text);
        abort();
    }
    json_decref(got);
    json_decref(want);
    return 0;
}
