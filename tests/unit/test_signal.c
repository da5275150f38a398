/*
 * Unit tests of dw_signal: signals set flags, a second SIGINT exits at once with status 130,
 * SIGHUP is a reload request taken once, SIGPIPE does not kill.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dw_signal.h"

static void signal_setup(void)
{
    dw_signal_reset();
    cr_assert_eq(dw_signal_install(), DW_OK);
}

TestSuite(signal, .init = signal_setup);

Test(signal, sigterm_requests_stop)
{
    cr_assert_not(dw_signal_stop_requested());
    raise(SIGTERM);
    cr_assert(dw_signal_stop_requested());
}

Test(signal, first_sigint_requests_stop_without_exiting)
{
    raise(SIGINT);
    cr_assert(dw_signal_stop_requested());
}

Test(signal, request_stop_sets_the_flag)
{
    dw_signal_request_stop();
    cr_assert(dw_signal_stop_requested());
}

Test(signal, sighup_is_a_reload_taken_once)
{
    cr_assert_not(dw_signal_reload_take());
    raise(SIGHUP);
    cr_assert_not(dw_signal_stop_requested(), "a reload is not a stop");
    cr_assert(dw_signal_reload_take());
    cr_assert_not(dw_signal_reload_take(), "taking clears the flag");
}

Test(signal, sigpipe_is_ignored)
{
    raise(SIGPIPE);
    cr_assert_not(dw_signal_stop_requested());
}

Test(signal, second_sigint_exits_130_at_once)
{
    /* The child must not call into Criterion: with --full-stats even a passing assertion
     * sends a message to the runner, which knows only the test's own process. */
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGINT);
        if (!dw_signal_stop_requested())
            _exit(3);
        raise(SIGINT);
        _exit(4); /* not reached: the handler exits */
    }
    cr_assert_neq(pid, -1);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child did not exit normally (status %d)", status);
    cr_assert_eq(WEXITSTATUS(status), 130);
}

Test(signal, sigint_after_sigterm_only_requests_stop)
{
    /* The child must not call into Criterion: with --full-stats even a passing assertion
     * sends a message to the runner, which knows only the test's own process. */
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGTERM);
        raise(SIGINT);
        _exit(dw_signal_stop_requested() ? 0 : 3);
    }
    cr_assert_neq(pid, -1);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0);
}
