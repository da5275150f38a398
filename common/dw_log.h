/*
 * dw_log: level-gated logging with a facility tag, as text or JSON lines on stderr.
 * One line per call, written whole under a lock. Values registered as secrets are replaced by
 * "***" in every line, wherever they appear, so a secret never reaches the log.
 */
#ifndef DW_LOG_H
#define DW_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "dw_err.h"

typedef enum {
    DW_LOG_DEBUG = 0,
    DW_LOG_INFO,
    DW_LOG_WARN,
    DW_LOG_ERROR,
} dw_log_level_t;

typedef enum {
    DW_LOG_FMT_TEXT = 0,
    DW_LOG_FMT_JSON,
} dw_log_format_t;

/* program: borrowed, must outlive the log (argv[0] or a literal). Defaults: info, text. */
void dw_log_init(const char *program);
void dw_log_set_level(dw_log_level_t level);
void dw_log_set_format(dw_log_format_t format);
/* Redirect output (tests); NULL restores stderr. out: borrowed. */
void dw_log_set_output(FILE *out);

/* "debug" | "info" | "warn" | "error" → level; DW_ERR_INVALID_ARG otherwise. */
dw_err_t dw_log_level_parse(const char *s, dw_log_level_t *level);
/* "text" | "json" → format; DW_ERR_INVALID_ARG otherwise. */
dw_err_t dw_log_format_parse(const char *s, dw_log_format_t *format);
const char *dw_log_level_name(dw_log_level_t level);

bool dw_log_enabled(dw_log_level_t level);

/* Register a secret value to be masked in every later line (copied; values shorter than 3
 * characters are ignored since masking them would mangle ordinary text). */
void dw_log_add_secret(const char *value);
/* Forget every registered secret (tests). */
void dw_log_clear_secrets(void);
/* Copy src into dst (size n) with every registered secret replaced by "***". */
void dw_log_redact(const char *src, char *dst, size_t n);

void dw_log_write(dw_log_level_t level, const char *fac, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DW_LOG(level, fac, ...)                                                                    \
    do {                                                                                           \
        if (dw_log_enabled(level))                                                                 \
            dw_log_write(level, fac, __VA_ARGS__);                                                 \
    } while (0)
#define DW_DEBUG(fac, ...) DW_LOG(DW_LOG_DEBUG, fac, __VA_ARGS__)
#define DW_INFO(fac, ...)  DW_LOG(DW_LOG_INFO, fac, __VA_ARGS__)
#define DW_WARN(fac, ...)  DW_LOG(DW_LOG_WARN, fac, __VA_ARGS__)
#define DW_ERROR(fac, ...) DW_LOG(DW_LOG_ERROR, fac, __VA_ARGS__)

/* librdkafka's log callback (rd_kafka_conf_set_log_cb): maps syslog levels to ours and writes
 * with facility "kafka.<fac>". It never calls back into librdkafka. */
void dw_log_rdkafka_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

#endif
