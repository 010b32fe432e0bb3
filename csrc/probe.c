/* The fault probe: touch one address and say whether, and how, it faulted.
 *
 * The handler is installed only for the duration of one probe and the previous
 * handlers are put back afterwards, because pytest's faulthandler (and anything
 * else in the process) owns SIGSEGV the rest of the time. SA_NODEFER keeps the
 * signal unblocked inside the handler, so siglongjmp needs no saved signal mask
 * and a probe costs no extra sigprocmask call. */
#define _GNU_SOURCE
#include "probe.h"

#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const int access_signals[] = {SIGSEGV, SIGBUS};
static const int execute_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};
#define MAX_SIGNALS 5

static __thread sigjmp_buf probe_jump;
static __thread volatile sig_atomic_t probe_armed;
static __thread memsys_fault *volatile probe_fault;

static const int *armed_signals;
static int armed_count;
static struct sigaction previous[MAX_SIGNALS];

static void on_fault(int signo, siginfo_t *info, void *context)
{
    (void)context;
    if (!probe_armed) {
        /* Not this thread's probe: hand the signal to its previous owner. */
        for (int i = 0; i < armed_count; i++)
            if (armed_signals[i] == signo)
                sigaction(signo, &previous[i], NULL);
        if (info->si_code <= 0)
            raise(signo); /* sent by kill(): would otherwise be lost */
        return;           /* a real fault re-executes under the previous handler */
    }
    probe_armed = 0;
    probe_fault->signo = signo;
    probe_fault->code = info->si_code;
    probe_fault->addr = (uint64_t)(uintptr_t)info->si_addr;
    siglongjmp(probe_jump, 1);
}

static void arm(const int *signals, int count)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    armed_signals = signals;
    armed_count = count;
    for (int i = 0; i < count; i++)
        sigaction(signals[i], &action, &previous[i]);
}

static void disarm(void)
{
    for (int i = 0; i < armed_count; i++)
        sigaction(armed_signals[i], &previous[i], NULL);
    armed_count = 0;
}

int memsys_probe_read(uintptr_t addr, memsys_fault *fault, uint8_t *value)
{
    memset(fault, 0, sizeof *fault);
    probe_fault = fault;
    arm(access_signals, 2);
    if (sigsetjmp(probe_jump, 0) == 0) {
        probe_armed = 1;
        uint8_t seen = *(volatile uint8_t *)addr;
        probe_armed = 0;
        *value = seen;
    }
    disarm();
    return fault->signo != 0;
}

int memsys_probe_write(uintptr_t addr, uint8_t value, memsys_fault *fault)
{
    memset(fault, 0, sizeof *fault);
    probe_fault = fault;
    arm(access_signals, 2);
    if (sigsetjmp(probe_jump, 0) == 0) {
        probe_armed = 1;
        *(volatile uint8_t *)addr = value;
        probe_armed = 0;
    }
    disarm();
    return fault->signo != 0;
}

int memsys_probe_execute(uintptr_t addr, memsys_fault *fault)
{
    void (*volatile code)(void) = (void (*)(void))addr;
    memset(fault, 0, sizeof *fault);
    probe_fault = fault;
    arm(execute_signals, 5);
    if (sigsetjmp(probe_jump, 0) == 0) {
        probe_armed = 1;
        code();
        probe_armed = 0;
    }
    disarm();
    return fault->signo != 0;
}

double memsys_bench_probe_read_ns(uintptr_t addr, long iterations)
{
    struct timespec start, end;
    memsys_fault fault;
    uint8_t value;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < iterations; i++)
        memsys_probe_read(addr, &fault, &value);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double elapsed = (double)(end.tv_sec - start.tv_sec) * 1e9 + (double)(end.tv_nsec - start.tv_nsec);
    return iterations > 0 ? elapsed / (double)iterations : 0.0;
}

/* The kernel's floor under any fork round trip of this process: fork(), _exit(0) in the
 * child before it touches anything, waitpid(). 0, or -1 with errno (bench/bench_child.py). */
int memsys_bench_fork_exit(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return -1;
    int status;
    return waitpid(pid, &status, 0) == pid ? 0 : -1;
}
