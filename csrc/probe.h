/* The fault probe and the child fault reporter: the native half of pytest-memsyscalls.
 *
 * Python reaches the probe and the child reporter through the CPython extension
 * module pytest_memsyscalls.kernel._probe (csrc/probe_module.c); ctypes loads the
 * same shared object only for the plain C benchmark entry points below
 * (pytest_memsyscalls/kernel/native.py, library()). They exist in C because
 * catching a fault needs a signal handler that can siglongjmp out of the faulting
 * instruction, and reporting a child's fatal signal needs a handler that only uses
 * async-signal-safe calls. */
#ifndef MEMSYS_PROBE_H
#define MEMSYS_PROBE_H

#include <stdint.h>

/* What a probe saw: signo 0 means the access completed without a fault. */
typedef struct memsys_fault {
    int32_t signo;
    int32_t code;
    uint64_t addr;
} memsys_fault;

/* Each returns 1 when the access faulted (and fills *fault), 0 when it completed. */
int memsys_probe_read(uintptr_t addr, memsys_fault *fault, uint8_t *value);
int memsys_probe_write(uintptr_t addr, uint8_t value, memsys_fault *fault);
int memsys_probe_execute(uintptr_t addr, memsys_fault *fault);

/* Benchmark support: the same read probe in a C loop, nanoseconds per call. */
double memsys_bench_probe_read_ns(uintptr_t addr, long iterations);
int memsys_bench_fork_exit(void);

/* The record a dying child writes to its report pipe; layout is part of the ABI
 * with pytest_memsyscalls/kernel/native.py (ChildReport), read by memory/child.py. */
#define MEMSYS_REPORT_MAGIC 0x4d454d53u /* "MEMS" */
typedef struct memsys_child_report {
    uint32_t magic;
    int32_t signo;
    int32_t code;
    int32_t pid;
    uint64_t addr;
} memsys_child_report;

/* Installs one-shot handlers for the fatal signals that write a memsys_child_report
 * to fd and then re-raise the signal, so the parent sees both the siginfo and the
 * real termination status. Returns 0, or -1 with errno set. */
int memsys_child_report_install(int fd);

/* The signals a fault or abort() raises synchronously: the ones reported above, and
 * the ones never to block (a blocked synchronous signal kills without a handler). */
#define MEMSYS_FATAL_SIGNAL_COUNT 7
extern const int memsys_fatal_signals[MEMSYS_FATAL_SIGNAL_COUNT];

#endif
