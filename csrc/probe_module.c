/* The Python face of the fault probe: three METH_O/METH_FASTCALL functions.
 *
 * The probe's fault round trip costs a few microseconds in C; calling it through
 * ctypes would add as much again in argument conversion. These functions hold the
 * GIL for the probe (its handlers are process-wide, so one probe at a time) and
 * return plain ints and tuples that pytest_memsyscalls.kernel.probe turns into Faults. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int address_of(PyObject *arg, uintptr_t *addr)
{
    unsigned long long value = PyLong_AsUnsignedLongLong(arg);
    if (value == (unsigned long long)-1 && PyErr_Occurred())
        return 0;
    *addr = (uintptr_t)value;
    return 1;
}

static PyObject *fault_tuple(const memsys_fault *fault)
{
    return Py_BuildValue("(iiK)", (int)fault->signo, (int)fault->code, (unsigned long long)fault->addr);
}

/* read(addr) -> int (the byte) | (signo, code, addr) */
static PyObject *probe_read(PyObject *self, PyObject *arg)
{
    (void)self;
    uintptr_t addr;
    memsys_fault fault;
    uint8_t value = 0;
    if (!address_of(arg, &addr))
        return NULL;
    if (memsys_probe_read(addr, &fault, &value))
        return fault_tuple(&fault);
    return PyLong_FromLong(value);
}

/* write(addr, byte) -> None | (signo, code, addr) */
static PyObject *probe_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    uintptr_t addr;
    memsys_fault fault;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write(addr, byte) takes exactly 2 arguments");
        return NULL;
    }
    if (!address_of(args[0], &addr))
        return NULL;
    long byte = PyLong_AsLong(args[1]);
    if (byte == -1 && PyErr_Occurred())
        return NULL;
    if (byte < 0 || byte > 255) {
        PyErr_SetString(PyExc_ValueError, "byte must be in [0, 255]");
        return NULL;
    }
    if (memsys_probe_write(addr, (uint8_t)byte, &fault))
        return fault_tuple(&fault);
    Py_RETURN_NONE;
}

/* execute(addr) -> None | (signo, code, addr) */
static PyObject *probe_execute(PyObject *self, PyObject *arg)
{
    (void)self;
    uintptr_t addr;
    memsys_fault fault;
    if (!address_of(arg, &addr))
        return NULL;
    if (memsys_probe_execute(addr, &fault))
        return fault_tuple(&fault);
    Py_RETURN_NONE;
}

/* Field n (n >= 3) of this process's /proc/self/stat, read into buf; NULL when it cannot
 * be read. Fields are counted from the last ')', since the command name may hold spaces
 * and parentheses. */
static const char *own_stat_field(char *buf, size_t size, int n)
{
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t got = read(fd, buf, size - 1);
    close(fd);
    if (got <= 0)
        return NULL;
    buf[got] = '\0';
    char *field = strrchr(buf, ')');
    if (!field)
        return NULL;
    field += 2; /* field 3, the state */
    for (int at = 3; at < n && field; at++) {
        field = strchr(field, ' ');
        if (field)
            field++;
    }
    return field;
}

/* Appends "group PID STARTTIME\n" (field 22 of /proc/self/stat) to record_fd; a failure
 * is ignored, as the parent's records are (the leak guard still reaps the child). */
static void record_own_group(int record_fd)
{
    char stat[1024], line[96];
    const char *field = own_stat_field(stat, sizeof stat, 22);
    if (!field)
        return;
    size_t digits = strspn(field, "0123456789");
    if (digits == 0 || digits > 32)
        return;
    int length = snprintf(line, sizeof line, "group %d %.*s\n", (int)getpid(), (int)digits, field);
    if (length > 0 && (size_t)length < sizeof line && write(record_fd, line, (size_t)length) < 0) {
        /* nothing to do: see above */
    }
}

/* The child's set-up, converted to C before the fork so the child makes no objects. */
#define PLAN_ITEMS 8
typedef struct {
    int result_fd, report_fd, out_fd, err_fd, parent, record_fd;
    int set_core; /* with core_hard (RLIM_INFINITY as -1, as in the resource module) */
    long long core_hard;
    int close_fds[PLAN_ITEMS], reset_signals[PLAN_ITEMS];
    Py_ssize_t close_count, reset_count;
} child_plan;

/* The ints of tuple, each in [low, high], into out; 0 with an exception otherwise. */
static int ints_in_range(PyObject *tuple, const char *what, long low, long high, int *out, Py_ssize_t *count)
{
    *count = PyTuple_GET_SIZE(tuple);
    if (*count > PLAN_ITEMS) {
        PyErr_Format(PyExc_ValueError, "fork_child: at most %d %s", PLAN_ITEMS, what);
        return 0;
    }
    for (Py_ssize_t i = 0; i < *count; i++) {
        long value = PyLong_AsLong(PyTuple_GET_ITEM(tuple, i));
        if (value == -1 && PyErr_Occurred())
            return 0;
        if (value < low || value > high) {
            PyErr_Format(PyExc_ValueError, "fork_child: %s must be in [%ld, %ld], got %ld", what, low, high, value);
            return 0;
        }
        out[i] = (int)value;
    }
    return 1;
}

/* What a child forked for run_in_child runs: fn(*args, **kwargs), then either the
 * commonest ending in C (fn returned None, sys.stdout and sys.stderr are still the
 * unbuffered capture streams: the pickled None goes down the result pipe and the child
 * exits 0) or finish(pipes, value, error), which reports anything else and exits.
 * The child never returns into the caller: every Python frame it does not run is
 * code and heap it does not fault in. */
typedef struct {
    PyObject *fn, *args, *kwargs, *pickled_none, *finish, *pipes;
} child_call;

static int parse_child_call(PyObject *call, child_call *parsed)
{
    if (!PyTuple_Check(call))
        return PyErr_SetString(PyExc_TypeError, "fork_child: call must be a tuple or None"), 0;
    if (!PyArg_ParseTuple(call, "OO!O!O!OO;fork_child: call must be (fn, args, kwargs, pickled_none, finish, pipes)",
                          &parsed->fn, &PyTuple_Type, &parsed->args, &PyDict_Type, &parsed->kwargs, &PyBytes_Type,
                          &parsed->pickled_none, &parsed->finish, &parsed->pipes))
        return 0;
    if (!PyCallable_Check(parsed->fn) || !PyCallable_Check(parsed->finish))
        return PyErr_SetString(PyExc_TypeError, "fork_child: fn and finish must be callable"), 0;
    return 1;
}

/* fork_child's arguments (see there). */
static int parse_fork_child(PyObject *args, child_plan *plan, PyObject **stdio, PyObject **call_arg, child_call *call,
                            PyObject **forked)
{
    PyObject *close_fds, *reset_signals, *core_hard;
    if (!PyArg_ParseTuple(args, "iiiiO!O!OiiO!OO!:fork_child", &plan->result_fd, &plan->report_fd, &plan->out_fd,
                          &plan->err_fd, &PyTuple_Type, &close_fds, &PyTuple_Type, &reset_signals, &core_hard,
                          &plan->parent, &plan->record_fd, &PyTuple_Type, stdio, call_arg, &PyList_Type, forked))
        return 0;
    if (PyTuple_GET_SIZE(*stdio) != 2)
        return PyErr_SetString(PyExc_TypeError, "fork_child: stdio must be a (stdout, stderr) pair"), 0;
    if (PyList_GET_SIZE(*forked) != 1)
        return PyErr_SetString(PyExc_TypeError, "fork_child: forked must be a list of one item"), 0;
    plan->set_core = core_hard != Py_None;
    if (plan->set_core) {
        plan->core_hard = PyLong_AsLongLong(core_hard);
        if (plan->core_hard == -1 && PyErr_Occurred())
            return 0;
        if (plan->core_hard < -1)
            return PyErr_SetString(PyExc_ValueError, "fork_child: core_hard must be >= -1 (RLIM_INFINITY) or None"), 0;
    }
    if (!ints_in_range(close_fds, "close_fds", 0, INT_MAX, plan->close_fds, &plan->close_count)
        || !ints_in_range(reset_signals, "reset_signals", 1, NSIG - 1, plan->reset_signals, &plan->reset_count))
        return 0;
    return *call_arg == Py_None || parse_child_call(*call_arg, call);
}

/* The child's set-up; 0, or -1 with errno set. Only syscalls. */
static int set_up_child(const child_plan *plan)
{
    if (plan->parent > 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
            return -1;
        if (getppid() != plan->parent)
            _exit(1); /* the parent died before the request took effect */
    }
    if (setpgid(0, 0) != 0)
        return -1;
    if (plan->record_fd >= 0)
        record_own_group(plan->record_fd);
    for (Py_ssize_t i = 0; i < plan->close_count; i++)
        close(plan->close_fds[i]);
    if (dup2(plan->out_fd, 1) < 0 || dup2(plan->err_fd, 2) < 0)
        return -1;
    if (plan->set_core) {
        rlim_t hard = plan->core_hard == -1 ? RLIM_INFINITY : (rlim_t)plan->core_hard;
        struct rlimit core = {0, hard};
        if (setrlimit(RLIMIT_CORE, &core) != 0)
            return -1;
    }
    for (Py_ssize_t i = 0; i < plan->reset_count; i++)
        signal(plan->reset_signals[i], SIG_DFL);
    return memsys_child_report_install(plan->report_fd);
}

/* Points sys.stdout and sys.stderr at the given objects (NULL deletes); 0 or -1. */
static int set_stdio(PyObject *out, PyObject *err)
{
    return PySys_SetObject("stdout", out) == 0 && PySys_SetObject("stderr", err) == 0 ? 0 : -1;
}

static int write_all(int fd, const char *data, Py_ssize_t size)
{
    while (size > 0) {
        ssize_t written = write(fd, data, (size_t)size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        data += written;
        size -= written;
    }
    return 0;
}

/* The exception being raised, taken out of the error indicator. */
static PyObject *take_raised_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value && traceback)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

static void run_call_and_exit(const child_call *call, int result_fd, PyObject *stdio)
{
    PyObject *value = PyObject_Call(call->fn, call->args, call->kwargs);
    if (value == Py_None && PySys_GetObject("stdout") == PyTuple_GET_ITEM(stdio, 0)
        && PySys_GetObject("stderr") == PyTuple_GET_ITEM(stdio, 1))
        _exit(write_all(result_fd, PyBytes_AS_STRING(call->pickled_none),
                        PyBytes_GET_SIZE(call->pickled_none)) == 0 ? 0 : 112);
    PyObject *error = value ? NULL : take_raised_exception();
    PyObject_CallFunctionObjArgs(call->finish, call->pipes, value ? value : Py_None, error ? error : Py_None, NULL);
    _exit(112); /* finish ends the child itself: this is a finish that was interrupted */
}

/* Whether this process has exactly one thread (field 20 of /proc/self/stat); 0 when
 * that cannot be read, so a sandbox without /proc keeps the bookkeeping. */
static int single_threaded(void)
{
    char stat[1024];
    const char *field = own_stat_field(stat, sizeof stat, 20);
    return field && strncmp(field, "1 ", 2) == 0;
}

static PyObject *asyncio_name; /* "asyncio", made at import */

/* Whether the child can do without PyOS_AfterFork_Child (see fork_child). Asked after
 * the last Python code that runs before fork(): an audit hook, a signal handler or a
 * finalizer could start a thread. Looks in sys.modules itself (PyImport_GetModule may
 * run importlib code) and counts threads last. */
static int bookkeeping_needless(void)
{
#ifdef Py_GIL_DISABLED
    return 0;
#else
    PyObject *modules = PyImport_GetModuleDict(); /* borrowed */
    if (!modules || !PyDict_Check(modules))
        return 0;
    PyObject *asyncio = PyDict_GetItemWithError(modules, asyncio_name); /* borrowed */
    if (asyncio || PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return single_threaded();
#endif
}

/* The asynchronous signals: all but the synchronous ones, which must stay deliverable
 * (blocked, a fault kills the process without running any handler). */
static void asynchronous_signals(sigset_t *set)
{
    sigfillset(set);
    for (size_t i = 0; i < MEMSYS_FATAL_SIGNAL_COUNT; i++)
        sigdelset(set, memsys_fatal_signals[i]);
}

/* fork_child(result_fd, report_fd, out_fd, err_fd, close_fds, reset_signals, core_hard,
 *            parent, record_fd, stdio, call, forked) -> pid, or 0 in the child
 *
 * fork() for run_in_child and expect_signal. The four *_fd are the write ends of the
 * child's pipes; close_fds (the read ends) are closed in the child, and the write ends
 * in the parent, which also puts the child in its own process group and stores its pid
 * in forked[0] before any signal handler can run: an exception a handler raises on
 * the way back still leaves the caller a child to kill and reap.
 *
 * The child's set-up, in C before it runs anything: its own process group; stdout and
 * stderr onto the capture pipes; no core file for the crash that is probably coming
 * (core_hard not None sets RLIMIT_CORE to 0/core_hard, -1 meaning unlimited); the given
 * signals back to SIG_DFL; the fault reporter on report_fd; and, when parent > 0, death
 * by SIGKILL with the parent (even a kill -9 of pytest), exiting at once if the parent
 * is already gone. With record_fd >= 0 (the session's record file, O_APPEND) the child
 * records its own group ("group PID STARTTIME", as memory/records.py reads it) for the sweep
 * after a kill -9. A set-up that fails ends the child with status 112.
 *
 * The bookkeeping of os.fork() is skipped where it has nothing to do. Its child runs
 * PyOS_AfterFork_Child: it rebuilds the GIL and the runtime's locks for threads lost in
 * the fork and runs every os.register_at_fork callback (threading, logging, random,
 * ...). In a pytest process that Python code faults in some 250 pages, half of a fork
 * round trip. With one thread, in a GIL build, no lock can be held by a lost thread,
 * so the callbacks are all that is left; they are skipped too (random is not reseeded
 * in the child) unless asyncio is imported, whose callback (3.12+) resets the child's
 * event loop and signal wakeup fd (else a signal to the child would wake the parent's
 * loop). Otherwise PyOS_BeforeFork/AfterFork_* run as in os.fork(), the child's after
 * its set-up (so their output is captured too).
 *
 * stdio, (out, err), becomes sys.stdout and sys.stderr across the fork and the parent
 * gets its own back at once: the child starts with them without writing a page. With
 * call (see child_call) the child runs it and exits; with None it returns 0.
 *
 * Asynchronous signals are blocked across fork(), after the Python handlers of those
 * that already arrived have run: none is handled twice, none reaches the child before
 * its set-up, and no Python code runs between the decision above and fork(). */
static PyObject *fork_child(PyObject *self, PyObject *args)
{
    (void)self;
    child_plan plan;
    child_call call;
    PyObject *stdio, *call_arg, *forked;
    if (!parse_fork_child(args, &plan, &stdio, &call_arg, &call, &forked))
        return NULL;
    if (PyInterpreterState_Get() != PyInterpreterState_Main())
        return PyErr_Format(PyExc_RuntimeError, "fork_child: fork is not supported in subinterpreters");
    if (PySys_Audit("os.fork", NULL) < 0 || PyErr_CheckSignals() != 0)
        return NULL;
    PyObject *no_pid = PyLong_FromLong(0), *pid_object = NULL; /* made now: nothing may fail after fork() */
    if (!no_pid)
        return NULL;
    sigset_t blocked, old;
    asynchronous_signals(&blocked);
    int failed = pthread_sigmask(SIG_BLOCK, &blocked, &old);
    if (failed) {
        Py_DECREF(no_pid);
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (PyErr_CheckSignals() != 0) { /* what arrived since the first check: rarely anything */
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        Py_DECREF(no_pid);
        return NULL;
    }
    int direct = bookkeeping_needless();
    if (!direct)
        PyOS_BeforeFork();
    PyObject *own_out = PySys_GetObject("stdout"), *own_err = PySys_GetObject("stderr"); /* borrowed */
    Py_XINCREF(own_out); /* held, so the swap frees nothing and runs no finalizer */
    Py_XINCREF(own_err);
    int swapped = set_stdio(PyTuple_GET_ITEM(stdio, 0), PyTuple_GET_ITEM(stdio, 1)) == 0;
    if (!swapped)
        PyErr_Clear(); /* out of memory: the child tries again itself */
    pid_t pid = fork();
    if (pid == 0) {
        if (set_up_child(&plan) != 0)
            _exit(112);
        if (!direct)
            PyOS_AfterFork_Child();
        if (!swapped && set_stdio(PyTuple_GET_ITEM(stdio, 0), PyTuple_GET_ITEM(stdio, 1)) != 0)
            _exit(112);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        /* own_out and own_err keep their extra reference: releasing the last one would
         * run a finalizer in the child, and it exits without ever needing them. */
        if (call_arg != Py_None)
            run_call_and_exit(&call, plan.result_fd, stdio);
        return no_pid;
    }
    int saved_errno = errno;
    /* Fails only when memory is exhausted; a child that cannot be handed back then must
     * not outlive the call. */
    int restored = set_stdio(own_out, own_err) == 0;
    if (!restored)
        PyErr_Clear(); /* raised below, after the callbacks (they must not run with it set) */
    Py_XDECREF(own_out);
    Py_XDECREF(own_err);
    if (!direct)
        PyOS_AfterFork_Parent(); /* before the unblocking: a handler's exception must not land in a callback */
    if (pid > 0) {
        const int write_ends[] = {plan.result_fd, plan.report_fd, plan.out_fd, plan.err_fd};
        for (size_t i = 0; i < sizeof write_ends / sizeof write_ends[0]; i++)
            close(write_ends[i]);
        setpgid(pid, pid); /* also done in the child: whichever runs first wins the race */
        pid_object = PyLong_FromLong((long)pid);
        if (!restored || !pid_object) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                continue;
            Py_CLEAR(pid_object);
        } else {
            Py_INCREF(pid_object);
            PyList_SetItem(forked, 0, pid_object); /* steals one reference */
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    Py_DECREF(no_pid);
    if (pid < 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (!pid_object)
        return restored ? NULL : PyErr_NoMemory();
    return pid_object;
}

static PyMethodDef probe_methods[] = {
    {"read", probe_read, METH_O, "read(addr) -> byte | (signo, code, addr)"},
    {"write", (PyCFunction)(void (*)(void))probe_write, METH_FASTCALL, "write(addr, byte) -> None | (signo, code, addr)"},
    {"execute", probe_execute, METH_O, "execute(addr) -> None | (signo, code, addr)"},
    {"fork_child", fork_child, METH_VARARGS,
     "fork_child(result_fd, report_fd, out_fd, err_fd, close_fds, reset_signals, core_hard, parent, record_fd, "
     "stdio, call, forked) -> pid, or 0 in the set-up child"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_probe", "The native fault probe (see csrc/probe.h).", -1, probe_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__probe(void)
{
    if (!asyncio_name && !(asyncio_name = PyUnicode_InternFromString("asyncio")))
        return NULL;
    return PyModule_Create(&probe_module);
}
