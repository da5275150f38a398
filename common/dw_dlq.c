/*
 * dw_dlq: dead-letter headers. Copies the original headers, drops an earlier failure's
 * dw.error.* set (keeping its first failure time and attempt count) and adds this failure's.
 */
#include "dw_dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void dw_dlq_format_ts(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* strftime, then ".mmmZ" by hand: snprintf's "%03d" after it made gcc's format-truncation
     * check fail in optimised builds */
    size_t l = size > 5 ? strftime(buf, size - 5, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
    if (l == 0) {
        if (size)
            buf[0] = '\0';
        return;
    }
    int m = (int)((ms % 1000 + 1000) % 1000);
    buf[l] = '.';
    buf[l + 1] = (char)('0' + m / 100);
    buf[l + 2] = (char)('0' + m / 10 % 10);
    buf[l + 3] = (char)('0' + m % 10);
    buf[l + 4] = 'Z';
    buf[l + 5] = '\0';
}

static bool hdr_string(const rd_kafka_headers_t *h, const char *name, char *buf, size_t size)
{
    const void *v = NULL;
    size_t len = 0;
    if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v ||
        len >= size)
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return true;
}

static int add(rd_kafka_headers_t *h, const char *name, const char *value)
{
    if (!value)
        return 0;
    return rd_kafka_header_add(h, name, -1, value, -1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

rd_kafka_headers_t *dw_dlq_headers(const rd_kafka_headers_t *orig, const dw_dlq_info_t *info)
{
    size_t n = orig ? rd_kafka_header_cnt(orig) : 0;
    rd_kafka_headers_t *h = rd_kafka_headers_new(n + 16);
    if (!h)
        return NULL;
    char first[40] = "", prev_attempts[24] = "";
    bool had_first = hdr_string(orig, DW_DLQ_HDR_FIRST_FAILURE, first, sizeof(first));
    bool had_attempts = hdr_string(orig, DW_DLQ_HDR_ATTEMPTS, prev_attempts, sizeof(prev_attempts));
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const void *v;
        size_t len;
        if (rd_kafka_header_get_all(orig, i, &name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (strncmp(name, DW_DLQ_HDR_PREFIX, strlen(DW_DLQ_HDR_PREFIX)) == 0)
            continue;
        if (rd_kafka_header_add(h, name, -1, v, v ? (ssize_t)len : 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
            goto fail;
    }
    char now[40], part[16], off[24], attempts[24], status[16];
    int64_t now_ms = info->now_ms;
    if (now_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    dw_dlq_format_ts(now_ms, now, sizeof(now));
    long long prev = 0;
    if (had_attempts) {
        char *end = NULL;
        prev = strtoll(prev_attempts, &end, 10);
        if (!end || *end || prev < 0)
            prev = 0;
    }
    snprintf(attempts, sizeof(attempts), "%lld", prev + (info->attempts > 0 ? info->attempts : 1));
    if (!had_first && info->first_ms > 0 && info->first_ms <= now_ms)
        dw_dlq_format_ts(info->first_ms, first, sizeof(first));
    else if (!had_first)
        snprintf(first, sizeof(first), "%s", now);
    snprintf(part, sizeof(part), "%" PRId32, info->origin_partition);
    snprintf(off, sizeof(off), "%" PRId64, info->origin_offset);
    snprintf(status, sizeof(status), "%d", info->http_status);
    if (add(h, DW_DLQ_HDR_CLASS, info->cls) || add(h, DW_DLQ_HDR_REASON, info->reason) ||
        add(h, DW_DLQ_HDR_FIELD, info->field && *info->field ? info->field : NULL) ||
        add(h, DW_DLQ_HDR_MESSAGE, info->message) || add(h, DW_DLQ_HDR_STAGE, info->stage) ||
        add(h, DW_DLQ_HDR_ORIGIN_TOPIC, info->origin_topic) ||
        add(h, DW_DLQ_HDR_ORIGIN_PART, info->origin_topic ? part : NULL) ||
        add(h, DW_DLQ_HDR_ORIGIN_OFFSET, info->origin_topic ? off : NULL) ||
        add(h, DW_DLQ_HDR_FIRST_FAILURE, first) ||
        add(h, DW_DLQ_HDR_LAST_FAILURE, now) || add(h, DW_DLQ_HDR_ATTEMPTS, attempts) ||
        add(h, DW_DLQ_HDR_HTTP_STATUS, info->http_status ? status : NULL) ||
        add(h, DW_DLQ_HDR_TARGET_CODE, info->target_code) ||
        add(h, DW_DLQ_HDR_INSTANCE, info->instance))
        goto fail;
    return h;
fail:
    rd_kafka_headers_destroy(h);
    return NULL;
}
