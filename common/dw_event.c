/*
 * dw_event: the event envelope of schemas/event.schema.json, its name-based event id and its
 * timestamps, shared by dw-capture and dwctl initial-sync.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dw_event.h"
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

char *dw_event_build(const char *event_id, const char *map, const char *source, const char *op,
                     const json_t *key, const char *record_id, const json_t *data,
                     const char *source_version, const char *source_ts, const char *capture_ts,
                     const char *correlation_id, size_t *len)
{
    json_t *ev = json_pack("{s:i, s:s, s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:s}", "version", 1,
                           "event_id", event_id, "map", map, "source", source, "op", op, "key",
                           (json_t *)key, "source_version", source_version, "source_ts",
                           source_ts, "capture_ts", capture_ts, "correlation_id", correlation_id);
    if (!ev)
        return NULL;
    if (record_id && json_object_set_new(ev, "record_id", json_string(record_id))) {
        json_decref(ev);
        return NULL;
    }
    if (json_object_set_new(ev, "data", data ? json_incref((json_t *)data) : json_null())) {
        json_decref(ev);
        return NULL;
    }
    char *text = dw_mapper_dumps(ev, 0, len);
    json_decref(ev);
    return text;
}
