/* Helpers shared by the writer's unit tests: a command's JSON text. */
#ifndef WR_TEST_CMD_H
#define WR_TEST_CMD_H

#include <stdio.h>

#define WR_HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define WR_HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* An upsert command of map m for target t, key value k, version v, content hash h. */
static inline void wr_test_cmd(char *buf, size_t size, const char *m, const char *t, const char *k,
                               const char *v, const char *h)
{
    snprintf(buf, size,
             "{\"version\":1,\"map\":\"%s\",\"map_version\":1,\"target\":\"%s\",\"op\":\"upsert\","
             "\"target_key\":{\"code\":\"%s\"},\"fields\":{\"code\":\"%s\",\"name\":\"n\"},"
             "\"source_version\":\"%s\",\"content_hash\":\"%s\",\"correlation_id\":\"c1\","
             "\"source_ts\":\"2024-01-01T00:00:00Z\"}",
             m, t, k, k, v, h);
}

#endif
