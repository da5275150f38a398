/*
 * dw_event: the event envelope of schemas/event.schema.json, its name-based event id and its
 * timestamps, shared by dw-capture and dwctl initial-sync.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dw_event.h"

#include "dw_buf.h"
#include "dw_mapper.h"
#include "dw_sha256.h"

void dw_event_now_rfc3339(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

void dw_event_uuid_from(char out[37], const char *const *parts)
{
    dw_sha256_t ctx;
    uint8_t d[DW_SHA256_SIZE];
    dw_sha256_init(&ctx);
    for (size_t i = 0; parts[i]; i++) {
        if (i)
            dw_sha256_update(&ctx, "\x1f", 1);
        dw_sha256_update(&ctx, parts[i], strlen(parts[i]));
    }
    dw_sha256_final(&ctx, d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x80);
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 15];
    }
    out[o] = '\0';
}

/* ,"name":"value" with the value escaped as dw_mapper_dumps escapes strings (the values here are
 * identifiers, ids and timestamps). */
static void ev_member(dw_buf_t *b, const char *name, const char *v)
{
    DW_BUF_LIT(b, ",\"");
    dw_buf_put(b, name, strlen(name));
    DW_BUF_LIT(b, "\":");
    dw_buf_json_str(b, v, strlen(v));
}

/* The text is written member by member (key and data through dw_mapper_dumps), the same bytes as
 * dw_mapper_dumps of the envelope object, without building that object for every record. */
char *dw_event_build(const char *event_id, const char *map, const char *source, const char *op,
                     const json_t *key, const char *record_id, const json_t *data,
                     const char *source_version, const char *source_ts, const char *capture_ts,
                     const char *correlation_id, size_t *len)
{
    size_t klen = 0, dlen = 4;
    if (!event_id || !map || !source || !op || !source_version || !source_ts || !capture_ts ||
        !correlation_id)
        return NULL;
    char *ktext = dw_mapper_dumps(key, 0, &klen);
    char *dtext = data ? dw_mapper_dumps(data, 0, &dlen) : NULL;
    dw_buf_t b = {0};
    if (!ktext || (data && !dtext)) {
        free(ktext);
        free(dtext);
        return NULL;
    }
    /* the whole envelope in one allocation: the members around key and data are short */
    size_t guess = klen + dlen + 512 + strlen(map) + strlen(source_ts) + strlen(correlation_id);
    if (!(b.p = malloc(guess))) {
        free(ktext);
        free(dtext);
        return NULL;
    }
    b.cap = guess;
    DW_BUF_LIT(&b, "{\"version\":1");
    ev_member(&b, "event_id", event_id);
    ev_member(&b, "map", map);
    ev_member(&b, "source", source);
    ev_member(&b, "op", op);
    DW_BUF_LIT(&b, ",\"key\":");
    dw_buf_put(&b, ktext, klen);
    ev_member(&b, "source_version", source_version);
    ev_member(&b, "source_ts", source_ts);
    ev_member(&b, "capture_ts", capture_ts);
    ev_member(&b, "correlation_id", correlation_id);
    if (record_id)
        ev_member(&b, "record_id", record_id);
    DW_BUF_LIT(&b, ",\"data\":");
    if (dtext)
        dw_buf_put(&b, dtext, dlen);
    else
        DW_BUF_LIT(&b, "null");
    DW_BUF_LIT(&b, "}");
    free(ktext);
    free(dtext);
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.n;
    return b.p;
}
