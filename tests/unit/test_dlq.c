/*
 * Unit tests for dw_dlq: the dead-letter headers keep the original headers, add the dw.error.*
 * set, replace an earlier failure's set while keeping its first failure time and counting the
 * attempts, and format times as RFC 3339 UTC with milliseconds.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "dw_dlq.h"
#include "dw_kafka.h"

static const char *get(const rd_kafka_headers_t *h, const char *name)
{
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ % 4];
    if (dw_kafka_header_get(h, name, b, 256) != DW_OK)
        return NULL;
    return b;
}

static size_t count(const rd_kafka_headers_t *h, const char *name)
{
    size_t n = 0;
    for (size_t i = 0;; i++) {
        const void *v;
        size_t len;
        if (rd_kafka_header_get(h, i, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        n++;
    }
    return n;
}

Test(dlq, time_format)
{
    char buf[40];
    dw_dlq_format_ts(1709287200125LL, buf, sizeof(buf));
    cr_assert_str_eq(buf, "2024-03-01T10:00:00.125Z");
    dw_dlq_format_ts(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
}

Test(dlq, headers_keep_the_original_and_add_the_error)
{
    rd_kafka_headers_t *orig = dw_kafka_headers_new("dw.map", "m", "custom", "v", NULL);
    rd_kafka_header_add(orig, "binary", -1, "\0\1\2", 3);
    dw_dlq_info_t info = {
        .cls = DW_DLQ_CLASS_MAPPING,
        .reason = "missing_key",
        .field = "CustomerAccount",
        .message = "CustomerAccount: missing",
        .stage = "transform",
        .origin_topic = "dw.m.fo",
        .origin_partition = 2,
        .origin_offset = 12345678901LL,
        .now_ms = 1709287200125LL,
        .instance = "host-1",
    };
    rd_kafka_headers_t *h = dw_dlq_headers(orig, &info);
    cr_assert_not_null(h);
    cr_assert_str_eq(get(h, "dw.map"), "m");
    cr_assert_str_eq(get(h, "custom"), "v");
    const void *v;
    size_t len;
    cr_assert_eq(rd_kafka_header_get_last(h, "binary", &v, &len), RD_KAFKA_RESP_ERR_NO_ERROR);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(v, "\0\1\2", 3), 0);
    cr_assert_str_eq(get(h, DW_DLQ_HDR_CLASS), "mapping");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_REASON), "missing_key");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_FIELD), "CustomerAccount");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_STAGE), "transform");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ORIGIN_TOPIC), "dw.m.fo");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ORIGIN_PART), "2");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ORIGIN_OFFSET), "12345678901");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_FIRST_FAILURE), "2024-03-01T10:00:00.125Z");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_LAST_FAILURE), "2024-03-01T10:00:00.125Z");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ATTEMPTS), "1");
    cr_assert_str_eq(get(h, DW_DLQ_HDR_INSTANCE), "host-1");
    cr_assert_null(get(h, DW_DLQ_HDR_HTTP_STATUS));
    cr_assert_null(get(h, DW_DLQ_HDR_TARGET_CODE));

    /* it fails again after a replay: one set of dw.error.*, first time kept, attempts 2 */
    info.now_ms += 60000;
    info.cls = DW_DLQ_CLASS_VALIDATION;
    info.stage = "writer";
    info.http_status = 400;
    info.target_code = "0x80040237";
    info.field = "";
    rd_kafka_headers_t *h2 = dw_dlq_headers(h, &info);
    cr_assert_eq(count(h2, DW_DLQ_HDR_CLASS), 1);
    cr_assert_eq(count(h2, DW_DLQ_HDR_ATTEMPTS), 1);
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_CLASS), "validation");
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_ATTEMPTS), "2");
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_FIRST_FAILURE), "2024-03-01T10:00:00.125Z");
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_LAST_FAILURE), "2024-03-01T10:01:00.125Z");
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_HTTP_STATUS), "400");
    cr_assert_str_eq(get(h2, DW_DLQ_HDR_TARGET_CODE), "0x80040237");
    cr_assert_null(get(h2, DW_DLQ_HDR_FIELD));
    cr_assert_str_eq(get(h2, "custom"), "v");
    rd_kafka_headers_destroy(h2);
    rd_kafka_headers_destroy(h);
    rd_kafka_headers_destroy(orig);
}

Test(dlq, no_original_headers_and_a_hostile_attempt_count)
{
    dw_dlq_info_t info = {.cls = DW_DLQ_CLASS_POISON,
                          .reason = "malformed_json",
                          .stage = "transform",
                          .now_ms = 1000};
    rd_kafka_headers_t *h = dw_dlq_headers(NULL, &info);
    cr_assert_not_null(h);
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ATTEMPTS), "1");
    cr_assert_null(get(h, DW_DLQ_HDR_ORIGIN_TOPIC));
    rd_kafka_headers_destroy(h);
    rd_kafka_headers_t *orig = dw_kafka_headers_new(DW_DLQ_HDR_ATTEMPTS, "-5x", NULL);
    h = dw_dlq_headers(orig, &info);
    cr_assert_str_eq(get(h, DW_DLQ_HDR_ATTEMPTS), "1");
    rd_kafka_headers_destroy(h);
    rd_kafka_headers_destroy(orig);
}
