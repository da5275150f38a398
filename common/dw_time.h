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

/* The absolute time ms milliseconds from now on clock clk, for pthread_cond_timedwait (CLOCK_REALTIME
 * for a condition variable with the default attributes, CLOCK_MONOTONIC for one set so). */
static inline struct timespec dw_time_deadline(clockid_t clk, long long ms)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Sleep ms milliseconds (a signal may end it early). */
static inline void dw_time_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
