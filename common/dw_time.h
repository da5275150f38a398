/*
 * dw_time: the clocks the workers read: monotonic milliseconds and microseconds for deadlines,
 * intervals and latencies, and wall-clock milliseconds since the epoch for timestamps that leave
 * the process (dead-letter headers, latency against a message's own timestamp); and a sleep.
 */
#ifndef DW_TIME_H
#define DW_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t dw_time_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t dw_time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t dw_time_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep ms milliseconds (a signal may end it early). */
static inline void dw_time_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
