/*
 * dw_err: texts, names and the retriable property of dwfleet's error codes.
 */
#include "dw_err.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    const char *text;
    bool retriable;
} dw_err_table[DW_ERR__COUNT] = {
    [DW_OK] = {"DW_OK", "success", false},
    [DW_ERR_INVALID_ARG] = {"DW_ERR_INVALID_ARG", "invalid argument", false},
    [DW_ERR_CONFIG] = {"DW_ERR_CONFIG", "invalid configuration", false},
    [DW_ERR_PARSE] = {"DW_ERR_PARSE", "malformed input", false},
    [DW_ERR_NOT_FOUND] = {"DW_ERR_NOT_FOUND", "not found", false},
    [DW_ERR_CONFLICT] = {"DW_ERR_CONFLICT", "conflict", false},
    [DW_ERR_NOMEM] = {"DW_ERR_NOMEM", "out of memory", false},
    [DW_ERR_IO] = {"DW_ERR_IO", "I/O error", false},
    [DW_ERR_KAFKA] = {"DW_ERR_KAFKA", "Kafka error", false},
    [DW_ERR_PG] = {"DW_ERR_PG", "PostgreSQL error", false},
    [DW_ERR_FENCED] = {"DW_ERR_FENCED", "fenced by a newer instance", false},
    [DW_ERR_INTERNAL] = {"DW_ERR_INTERNAL", "internal error", false},
    [DW_ERR_INTERRUPTED] = {"DW_ERR_INTERRUPTED", "interrupted by shutdown", false},
    [DW_ERR_TIMEOUT] = {"DW_ERR_TIMEOUT", "timed out", true},
    [DW_ERR_UNAVAILABLE] = {"DW_ERR_UNAVAILABLE", "service unavailable", true},
    [DW_ERR_QUEUE_FULL] = {"DW_ERR_QUEUE_FULL", "queue full", true},
    [DW_ERR_KAFKA_RETRIABLE] = {"DW_ERR_KAFKA_RETRIABLE", "retriable Kafka error", true},
    [DW_ERR_PG_CONN] = {"DW_ERR_PG_CONN", "PostgreSQL connection failure", true},
};

static bool dw_err_valid(dw_err_t err)
{
    return (int)err >= 0 && err < DW_ERR__COUNT;
}

const char *dw_err2str(dw_err_t err)
{
    return dw_err_valid(err) ? dw_err_table[err].text : "unknown error code";
}

const char *dw_err_name(dw_err_t err)
{
    return dw_err_valid(err) ? dw_err_table[err].name : "DW_ERR_UNKNOWN";
}

bool dw_err_is_retriable(dw_err_t err)
{
    return dw_err_valid(err) && dw_err_table[err].retriable;
}

dw_err_t dw_errf(dw_err_t err, char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (errstr && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
