/* The child fault reporter: a forked child's last words about the signal that
 * killed it. Only write(), getpid() and raise() run inside the handler: all
 * async-signal-safe. SA_RESETHAND puts the default action back, so the re-raised
 * signal terminates the child and the parent's waitpid sees the true status. */
#define _GNU_SOURCE
#include "probe.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

const int memsys_fatal_signals[MEMSYS_FATAL_SIGNAL_COUNT] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS};
static int report_fd = -1;

static void report_and_reraise(int signo, siginfo_t *info, void *context)
{
    (void)context;
    memsys_child_report report;
    memset(&report, 0, sizeof report);
    report.magic = MEMSYS_REPORT_MAGIC;
    report.signo = signo;
    report.code = info->si_code;
    report.pid = (int32_t)getpid();
    report.addr = (uint64_t)(uintptr_t)info->si_addr;
    if (report_fd >= 0) {
        ssize_t ignored = write(report_fd, &report, sizeof report);
        (void)ignored;
    }
    raise(signo);
}

int memsys_child_report_install(int fd)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = report_and_reraise;
    action.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    report_fd = fd;
    for (size_t i = 0; i < MEMSYS_FATAL_SIGNAL_COUNT; i++)
        if (sigaction(memsys_fatal_signals[i], &action, NULL) != 0)
            return -1;
    return 0;
}
