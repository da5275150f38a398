/*
 * dw_err: dwfleet's error codes. Every operation returns a dw_err_t (0 = ok) and, where the
 * caller needs detail, fills a caller-owned errstr buffer. Whether an error is worth retrying is a
 * property of the code (dw_err_is_retriable), never of the message text.
 */
#ifndef DW_ERR_H
#define DW_ERR_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    DW_OK = 0,
    /* fatal: the caller's input or configuration is wrong; retrying cannot help */
    DW_ERR_INVALID_ARG,  /* bad argument, bad usage, invalid input */
    DW_ERR_CONFIG,       /* bad configuration value, unknown key, unreadable config file */
    DW_ERR_PARSE,        /* malformed data (JSON, SQL file, header) */
    DW_ERR_NOT_FOUND,    /* a named thing does not exist */
    DW_ERR_CONFLICT,     /* a state conflict (checksum mismatch, duplicate) */
    DW_ERR_NOMEM,        /* allocation failed */
    DW_ERR_IO,           /* file system error */
    DW_ERR_KAFKA,        /* a non-retriable Kafka error */
    DW_ERR_PG,           /* a non-retriable PostgreSQL error (SQL error, constraint) */
    DW_ERR_FENCED,       /* a newer instance took over (transactional or group fencing) */
    DW_ERR_INTERNAL,     /* a bug: an invariant did not hold */
    DW_ERR_INTERRUPTED,  /* shutdown was requested while waiting: stop, do not retry */
    /* retriable: the same call may succeed later */
    DW_ERR_TIMEOUT,      /* a deadline passed */
    DW_ERR_UNAVAILABLE,  /* a service cannot be reached right now */
    DW_ERR_QUEUE_FULL,   /* a bounded queue is full; serve it and try again */
    DW_ERR_KAFKA_RETRIABLE, /* a Kafka error librdkafka marks retriable */
    DW_ERR_PG_CONN,      /* the PostgreSQL connection was lost or refused */
    DW_ERR__COUNT
} dw_err_t;

/* A short human-readable text for err (static storage). */
const char *dw_err2str(dw_err_t err);

/* The code's symbolic name, e.g. "DW_ERR_CONFIG" (static storage). */
const char *dw_err_name(dw_err_t err);

/* True when retrying the same operation later may succeed. */
bool dw_err_is_retriable(dw_err_t err);

/* snprintf into errstr when errstr is not NULL; returns err so callers can `return dw_errf(...)`. */
dw_err_t dw_errf(dw_err_t err, char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
