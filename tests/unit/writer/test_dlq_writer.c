/* Unit tests of the writer's use of dw_dlq_headers: its own attempt count and first failure. */
#include <criterion/criterion.h>
#include <string.h>

#include "dw_dlq.h"
#include "dw_kafka.h"

static const char *hdr(rd_kafka_headers_t *h, const char *name, char *buf, size_t size)
{
    cr_assert_eq(dw_kafka_header_get(h, name, buf, size), DW_OK, "%s", name);
    return buf;
}

Test(writer_dlq, carries_the_writers_attempts_and_first_failure)
{
    dw_dlq_info_t info = {.cls = DW_DLQ_CLASS_UNAVAILABLE,
                          .stage = "writer",
                          .origin_topic = "dw.x.to-dv",
                          .origin_partition = 2,
                          .origin_offset = 41,
                          .now_ms = 1709287200125LL,
                          .http_status = 503,
                          .target_code = "0x80040216",
                          .attempts = 3,
                          .first_ms = 1709287190000LL};
    rd_kafka_headers_t *h = dw_dlq_headers(NULL, &info);
    cr_assert_not_null(h);
    char b[64];
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_ATTEMPTS, b, sizeof(b)), "3");
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_FIRST_FAILURE, b, sizeof(b)), "2024-03-01T09:59:50.000Z");
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_LAST_FAILURE, b, sizeof(b)), "2024-03-01T10:00:00.125Z");
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_HTTP_STATUS, b, sizeof(b)), "503");
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_CLASS, b, sizeof(b)), "unavailable");
    /* a replay that fails again adds this run's attempts and keeps the first failure */
    rd_kafka_headers_t *again = dw_dlq_headers(h, &info);
    cr_assert_str_eq(hdr(again, DW_DLQ_HDR_ATTEMPTS, b, sizeof(b)), "6");
    cr_assert_str_eq(hdr(again, DW_DLQ_HDR_FIRST_FAILURE, b, sizeof(b)),
                     "2024-03-01T09:59:50.000Z");
    rd_kafka_headers_destroy(again);
    rd_kafka_headers_destroy(h);
}

Test(writer_dlq, defaults_to_one_attempt_now)
{
    dw_dlq_info_t info = {
        .cls = DW_DLQ_CLASS_POISON, .stage = "transform", .now_ms = 1709287200125LL};
    rd_kafka_headers_t *h = dw_dlq_headers(NULL, &info);
    char b[64];
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_ATTEMPTS, b, sizeof(b)), "1");
    cr_assert_str_eq(hdr(h, DW_DLQ_HDR_FIRST_FAILURE, b, sizeof(b)), "2024-03-01T10:00:00.125Z");
    rd_kafka_headers_destroy(h);
}
