/*
 * dw_signal: process signals as flags. Handlers only set sig_atomic_t flags; the main loop polls
 * them, drains in-flight work and shuts down in order.
 *   SIGINT, SIGTERM  stop requested (dw_signal_stop_requested)
 *   second SIGINT    exit at once with status 130 (a short note on stderr)
 *   SIGHUP           reload requested (dw_signal_reload_take clears it)
 *   SIGPIPE          ignored: a closed socket is an error return, not a death
 */
#ifndef DW_SIGNAL_H
#define DW_SIGNAL_H

#include <stdbool.h>

#include "dw_err.h"

/* Install the handlers (process-wide; call once from main before starting threads).
 * DW_ERR_INTERNAL when sigaction fails. */
dw_err_t dw_signal_install(void);

/* True once SIGINT or SIGTERM arrived, or dw_signal_request_stop() was called. */
bool dw_signal_stop_requested(void);

/* Ask the loop to stop as a signal would (tests, fatal errors in a worker thread). */
void dw_signal_request_stop(void);

/* True when SIGHUP arrived since the last call; clears the flag. */
bool dw_signal_reload_take(void);

/* Clear every flag and the SIGINT count (tests). */
void dw_signal_reset(void);

#endif
