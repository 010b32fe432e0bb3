/* The Python face of the fault probe: three METH_O/METH_FASTCALL functions.
 *
 * The probe's fault round trip costs a few microseconds in C; calling it through
 * ctypes would add as much again in argument conversion. These functions hold the
 * GIL for the probe (its handlers are process-wide, so one probe at a time) and
 * return plain ints and tuples that pytest_memsyscalls.probe turns into Faults. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "probe.h"

#include <errno.h>
#include <fcntl.h>
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

/* The arguments both entry points take, parsed once. */
typedef struct {
    int report_fd, out_fd, err_fd, parent, record_fd;
    long long core_hard;
    PyObject *close_fds, *reset_signals;
} child_plan;

static int parse_child_plan(PyObject *args, child_plan *plan)
{
    if (!PyArg_ParseTuple(args, "iiiO!O!Lii", &plan->report_fd, &plan->out_fd, &plan->err_fd, &PyTuple_Type,
                          &plan->close_fds, &PyTuple_Type, &plan->reset_signals, &plan->core_hard, &plan->parent,
                          &plan->record_fd))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan->close_fds); i++)
        if (!PyLong_Check(PyTuple_GET_ITEM(plan->close_fds, i)))
            return PyErr_SetString(PyExc_TypeError, "close_fds must hold ints"), 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan->reset_signals); i++)
        if (!PyLong_Check(PyTuple_GET_ITEM(plan->reset_signals, i)))
            return PyErr_SetString(PyExc_TypeError, "reset_signals must hold ints"), 0;
    return 1;
}

/* The child's set-up; 0, or -1 with errno set. Only syscalls, no Python objects made. */
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
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan->close_fds); i++)
        close((int)PyLong_AsLong(PyTuple_GET_ITEM(plan->close_fds, i)));
    if (dup2(plan->out_fd, 1) < 0 || dup2(plan->err_fd, 2) < 0)
        return -1;
    if (plan->core_hard >= 0) {
        rlim_t hard = plan->core_hard == (long long)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)plan->core_hard;
        struct rlimit core = {0, hard};
        if (setrlimit(RLIMIT_CORE, &core) != 0)
            return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(plan->reset_signals); i++)
        signal((int)PyLong_AsLong(PyTuple_GET_ITEM(plan->reset_signals, i)), SIG_DFL);
    return memsys_child_report_install(plan->report_fd);
}

/* enter_child(report_fd, out_fd, err_fd, close_fds, reset_signals, core_hard, parent, record_fd) -> None
 *
 * Everything a freshly forked child of run_in_child does before running its function,
 * in one call: every Python-level step here would copy-on-write pages of the (large)
 * parent, which is what a fork round trip costs. Own process group; the parent's pipe
 * ends closed; stdout/stderr onto the capture pipes; no core file for the crash that
 * is probably coming (core_hard >= 0 sets RLIMIT_CORE to 0/core_hard); the given
 * signals back to SIG_DFL; the fault reporter on report_fd; and, when parent > 0, death
 * by SIGKILL with the parent (even a kill -9 of pytest), exiting at once if the parent
 * is already gone. With record_fd >= 0 (the session's record file, O_APPEND) the child
 * records its own group ("group PID STARTTIME", as records.py reads it) before running
 * anything: the sweep after a kill -9 then knows it, and the parent does not spend
 * copy-on-write faults on reading /proc/PID/stat while the child runs. */
static PyObject *enter_child(PyObject *self, PyObject *args)
{
    (void)self;
    child_plan plan;
    if (!parse_child_plan(args, &plan))
        return NULL;
    if (set_up_child(&plan) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* Whether this process has exactly one thread (field 20 of /proc/self/stat); 0 when
 * that cannot be read, so a sandbox without /proc takes the os.fork() path. */
static int single_threaded(void)
{
    char stat[1024];
    const char *field = own_stat_field(stat, sizeof stat, 20);
    return field && strncmp(field, "1 ", 2) == 0;
}

/* Points sys.stdout and sys.stderr at the given objects (NULL deletes); 0 or -1. */
static int set_stdio(PyObject *out, PyObject *err)
{
    return PySys_SetObject("stdout", out) == 0 && PySys_SetObject("stderr", err) == 0 ? 0 : -1;
}

/* What a child forked for run_in_child runs: fn(*args, **kwargs), then either the
 * commonest ending in C (fn returned None, sys.stdout and sys.stderr are still the
 * unbuffered capture streams: the pickled None goes down result_fd and the child
 * exits 0) or finish(pipes, value, error), which reports anything else and exits.
 * The child never returns into the caller: every Python frame it does not run is
 * code and heap it does not fault in. */
typedef struct {
    PyObject *fn, *args, *kwargs, *pickled_none, *finish, *pipes;
    int result_fd;
} child_call;

static int parse_child_call(PyObject *call, child_call *parsed)
{
    if (!PyTuple_Check(call))
        return PyErr_SetString(PyExc_TypeError, "fork_child: call must be a tuple or None"), 0;
    if (!PyArg_ParseTuple(call, "OO!O!iO!OO;fork_child: call must be (fn, args, kwargs, result_fd, pickled_none, "
                          "finish, pipes)", &parsed->fn, &PyTuple_Type, &parsed->args, &PyDict_Type,
                          &parsed->kwargs, &parsed->result_fd, &PyBytes_Type, &parsed->pickled_none,
                          &parsed->finish, &parsed->pipes))
        return 0;
    if (!PyCallable_Check(parsed->fn) || !PyCallable_Check(parsed->finish))
        return PyErr_SetString(PyExc_TypeError, "fork_child: fn and finish must be callable"), 0;
    return 1;
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

static void run_call_and_exit(const child_call *call, PyObject *stdio)
{
    PyObject *value = PyObject_Call(call->fn, call->args, call->kwargs);
    if (value == Py_None && PySys_GetObject("stdout") == PyTuple_GET_ITEM(stdio, 0)
        && PySys_GetObject("stderr") == PyTuple_GET_ITEM(stdio, 1))
        _exit(write_all(call->result_fd, PyBytes_AS_STRING(call->pickled_none),
                        PyBytes_GET_SIZE(call->pickled_none)) == 0 ? 0 : 112);
    PyObject *error = value ? NULL : take_raised_exception();
    PyObject_CallFunctionObjArgs(call->finish, call->pipes, value ? value : Py_None, error ? error : Py_None, NULL);
    _exit(112); /* finish ends the child itself: this is a finish that could not start */
}

/* fork_child(<enter_child's arguments>, stdio, call) -> pid | 0 in the child | None
 *
 * fork() without os.fork()'s interpreter bookkeeping, where that bookkeeping has
 * nothing to do. os.fork() runs PyOS_AfterFork_Child in the child: it rebuilds the
 * GIL and the runtime's locks for threads that did not survive the fork, and runs
 * every os.register_at_fork callback (threading, logging, random, ...). In a pytest
 * process that Python code copies-on-write some 250 pages and doubled the cost of a
 * fork round trip. With one thread, in the main interpreter of a GIL build, no lock
 * can be held by a thread that is gone, so the child can skip it all; the callbacks
 * then do not run in the child (random is not reseeded, for instance). Anywhere else
 * this returns None and the caller uses os.fork() and enter_child().
 *
 * stdio, (out, err), becomes sys.stdout and sys.stderr across the fork and the parent
 * gets its own back at once: the child starts with them without writing a page. With
 * call (see child_call) the child runs it and exits; with None it returns 0.
 *
 * All signals are blocked across fork() after the Python handlers of signals that
 * already arrived have run (as os.fork()'s child clears them): no signal is handled
 * twice, none reaches the child before its set-up, and no handler runs while sys.stdout
 * is swapped. The child gets the caller's mask back once set up; a set-up that fails
 * ends it with status 112. */
static PyObject *fork_child(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t count = PyTuple_GET_SIZE(args);
    if (count != 10)
        return PyErr_Format(PyExc_TypeError, "fork_child takes 10 arguments (%zd given)", count);
    PyObject *stdio = PyTuple_GET_ITEM(args, 8), *call_arg = PyTuple_GET_ITEM(args, 9);
    if (!PyTuple_Check(stdio) || PyTuple_GET_SIZE(stdio) != 2)
        return PyErr_Format(PyExc_TypeError, "fork_child: stdio must be a (stdout, stderr) pair");
    child_call call;
    if (call_arg != Py_None && !parse_child_call(call_arg, &call))
        return NULL;
    PyObject *plan_args = PyTuple_GetSlice(args, 0, 8);
    if (!plan_args)
        return NULL;
    child_plan plan;
    int parsed = parse_child_plan(plan_args, &plan);
    Py_DECREF(plan_args); /* the tuples in plan are still held by args */
    if (!parsed)
        return NULL;
#ifdef Py_GIL_DISABLED
    Py_RETURN_NONE;
#else
    if (PyInterpreterState_Get() != PyInterpreterState_Main() || !single_threaded())
        Py_RETURN_NONE;
    if (PySys_Audit("os.fork", NULL) < 0)
        return NULL;
    sigset_t all, old;
    sigfillset(&all);
    int failed = pthread_sigmask(SIG_BLOCK, &all, &old);
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (PyErr_CheckSignals() != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return NULL;
    }
    PyObject *own_out = PySys_GetObject("stdout"), *own_err = PySys_GetObject("stderr"); /* borrowed */
    Py_XINCREF(own_out);
    Py_XINCREF(own_err);
    if (set_stdio(PyTuple_GET_ITEM(stdio, 0), PyTuple_GET_ITEM(stdio, 1)) != 0)
        PyErr_Clear(); /* the child's Python side checks and assigns them itself */
    pid_t pid = fork();
    if (pid == 0) {
        if (set_up_child(&plan) != 0)
            _exit(112);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        Py_XDECREF(own_out); /* still referenced: by sys.__stdout__, pytest's capture, ... */
        Py_XDECREF(own_err);
        if (call_arg != Py_None)
            run_call_and_exit(&call, stdio);
        return PyLong_FromLong(0);
    }
    int saved_errno = errno;
    /* Replacing keys that exist allocates nothing, so this cannot fail in practice; if it
     * did, a child that cannot be handed back must not outlive the call. */
    int restored = set_stdio(own_out, own_err);
    Py_XDECREF(own_out);
    Py_XDECREF(own_err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (restored != 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        return NULL;
    }
    if (pid < 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong((long)pid);
#endif
}

static PyMethodDef probe_methods[] = {
    {"read", probe_read, METH_O, "read(addr) -> byte | (signo, code, addr)"},
    {"write", (PyCFunction)(void (*)(void))probe_write, METH_FASTCALL, "write(addr, byte) -> None | (signo, code, addr)"},
    {"execute", probe_execute, METH_O, "execute(addr) -> None | (signo, code, addr)"},
    {"enter_child", enter_child, METH_VARARGS,
     "enter_child(report_fd, out_fd, err_fd, close_fds, reset_signals, core_hard, parent, record_fd) -> None"},
    {"fork_child", fork_child, METH_VARARGS,
     "fork_child(<enter_child's arguments>, stdio, call) -> pid, 0 in the set-up child, or None: use os.fork()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "_probe", "The native fault probe (see csrc/probe.h).", -1, probe_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__probe(void)
{
    return PyModule_Create(&probe_module);
}
