/*
 * dw_signal: handlers that only set flags (async-signal-safe), and the functions the main loop
 * uses to read them.
 */
#include "dw_signal.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t dw_signal_stop;
static volatile sig_atomic_t dw_signal_reload;
static volatile sig_atomic_t dw_signal_sigints;

static void dw_signal_handler(int sig)
{
    switch (sig) {
    case SIGINT:
        if (dw_signal_sigints) {
            static const char msg[] = "\nsecond interrupt: exiting at once\n";
            ssize_t rc = write(STDERR_FILENO, msg, sizeof(msg) - 1);
            (void)rc;
            _exit(130);
        }
        dw_signal_sigints = 1;
        dw_signal_stop = 1;
        break;
    case SIGTERM:
        dw_signal_stop = 1;
        break;
    case SIGHUP:
        dw_signal_reload = 1;
        break;
    default:
        break;
    }
}

dw_err_t dw_signal_install(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = dw_signal_handler;
    sa.sa_flags = SA_RESTART;
    /* One handler at a time: no flag is touched by two handlers at once. */
    sigemptyset(&sa.sa_mask);
    for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
        sigaddset(&sa.sa_mask, sigs[k]);
    for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
        if (sigaction(sigs[k], &sa, NULL) != 0)
            return DW_ERR_INTERNAL;

    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGPIPE, &ign, NULL) != 0)
        return DW_ERR_INTERNAL;
    return DW_OK;
}

bool dw_signal_stop_requested(void)
{
    return dw_signal_stop != 0;
}

void dw_signal_request_stop(void)
{
    dw_signal_stop = 1;
}

bool dw_signal_reload_take(void)
{
    if (!dw_signal_reload)
        return false;
    /* A SIGHUP that lands between the test and the clear is served by this reload. */
    dw_signal_reload = 0;
    return true;
}

void dw_signal_reset(void)
{
    dw_signal_stop = 0;
    dw_signal_reload = 0;
    dw_signal_sigints = 0;
}
