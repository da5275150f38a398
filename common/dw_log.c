/*
 * dw_log: formats one line (text or JSON), masks registered secrets, writes it whole to stderr.
 */
#include "dw_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define DW_LOG_MAX_SECRETS 64
#define DW_LOG_LINE_MAX 8192

static struct {
    pthread_mutex_t lock;
    const char *program;
    dw_log_level_t level;
    dw_log_format_t format;
    FILE *out;
    char *secrets[DW_LOG_MAX_SECRETS];
    int nsecrets;
} dw_log = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .program = "dwfleet",
    .level = DW_LOG_INFO,
    .format = DW_LOG_FMT_TEXT,
};

static const char *const dw_log_level_names[] = {"debug", "info", "warn", "error"};

void dw_log_init(const char *program)
{
    const char *slash = program ? strrchr(program, '/') : NULL;
    dw_log.program = slash ? slash + 1 : (program ? program : "dwfleet");
}

void dw_log_set_level(dw_log_level_t level)
{
    dw_log.level = level;
}

void dw_log_set_format(dw_log_format_t format)
{
    dw_log.format = format;
}

void dw_log_set_output(FILE *out)
{
    pthread_mutex_lock(&dw_log.lock);
    dw_log.out = out;
    pthread_mutex_unlock(&dw_log.lock);
}

dw_err_t dw_log_level_parse(const char *s, dw_log_level_t *level)
{
    for (int i = 0; i <= DW_LOG_ERROR; i++) {
        if (s && strcmp(s, dw_log_level_names[i]) == 0) {
            *level = (dw_log_level_t)i;
            return DW_OK;
        }
    }
    return DW_ERR_INVALID_ARG;
}

dw_err_t dw_log_format_parse(const char *s, dw_log_format_t *format)
{
    if (s && strcmp(s, "text") == 0)
        *format = DW_LOG_FMT_TEXT;
    else if (s && strcmp(s, "json") == 0)
        *format = DW_LOG_FMT_JSON;
    else
        return DW_ERR_INVALID_ARG;
    return DW_OK;
}

const char *dw_log_level_name(dw_log_level_t level)
{
    return (level >= DW_LOG_DEBUG && level <= DW_LOG_ERROR) ? dw_log_level_names[level] : "?";
}

bool dw_log_enabled(dw_log_level_t level)
{
    return level >= dw_log.level;
}

void dw_log_add_secret(const char *value)
{
    if (!value || strlen(value) < 3)
        return;
    pthread_mutex_lock(&dw_log.lock);
    for (int i = 0; i < dw_log.nsecrets; i++) {
        if (strcmp(dw_log.secrets[i], value) == 0)
            goto out;
    }
    if (dw_log.nsecrets < DW_LOG_MAX_SECRETS) {
        char *copy = strdup(value);
        if (copy)
            dw_log.secrets[dw_log.nsecrets++] = copy;
    }
out:
    pthread_mutex_unlock(&dw_log.lock);
}

void dw_log_clear_secrets(void)
{
    pthread_mutex_lock(&dw_log.lock);
    for (int i = 0; i < dw_log.nsecrets; i++)
        free(dw_log.secrets[i]);
    dw_log.nsecrets = 0;
    pthread_mutex_unlock(&dw_log.lock);
}

/* Caller holds the lock. */
static void dw_log_redact_locked(const char *src, char *dst, size_t n)
{
    size_t o = 0;
    if (n == 0)
        return;
    while (*src && o + 1 < n) {
        int hit = -1;
        size_t hitlen = 0;
        for (int i = 0; i < dw_log.nsecrets; i++) {
            size_t l = strlen(dw_log.secrets[i]);
            if (l > hitlen && strncmp(src, dw_log.secrets[i], l) == 0) {
                hit = i;
                hitlen = l;
            }
        }
        if (hit >= 0) {
            for (const char *m = "***"; *m && o + 1 < n; m++)
                dst[o++] = *m;
            src += hitlen;
        } else {
            dst[o++] = *src++;
        }
    }
    dst[o] = '\0';
}

void dw_log_redact(const char *src, char *dst, size_t n)
{
    pthread_mutex_lock(&dw_log.lock);
    dw_log_redact_locked(src, dst, n);
    pthread_mutex_unlock(&dw_log.lock);
}

static void dw_log_timestamp(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t l = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + l, n - l, ".%03ldZ", ts.tv_nsec / 1000000);
}

void dw_log_write(dw_log_level_t level, const char *fac, const char *fmt, ...)
{
    char raw[DW_LOG_LINE_MAX], msg[DW_LOG_LINE_MAX], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    dw_log_timestamp(ts, sizeof(ts));

    pthread_mutex_lock(&dw_log.lock);
    dw_log_redact_locked(raw, msg, sizeof(msg));
    FILE *out = dw_log.out ? dw_log.out : stderr;
    if (dw_log.format == DW_LOG_FMT_JSON) {
        json_t *line = json_pack("{s:s, s:s, s:s, s:s, s:s}", "ts", ts, "level",
                                 dw_log_level_name(level), "program", dw_log.program, "fac",
                                 fac ? fac : "-", "msg", msg);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (text)
            fprintf(out, "%s\n", text);
        free(text);
        json_decref(line);
    } else {
        fprintf(out, "%s %s %-5s [%s] %s\n", ts, dw_log.program, dw_log_level_name(level),
                fac ? fac : "-", msg);
    }
    fflush(out);
    pthread_mutex_unlock(&dw_log.lock);
}

void dw_log_rdkafka_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0 emerg .. 3 err, 4 warning, 5 notice, 6 info, 7 debug */
    dw_log_level_t l = level <= 3 ? DW_LOG_ERROR
                       : level == 4 ? DW_LOG_WARN
                       : level <= 6 ? DW_LOG_INFO
                                    : DW_LOG_DEBUG;
    if (!dw_log_enabled(l))
        return;
    char facility[64];
    snprintf(facility, sizeof(facility), "kafka.%s", fac ? fac : "-");
    dw_log_write(l, facility, "%s: %s", rk ? rd_kafka_name(rk) : "rdkafka", buf);
}
