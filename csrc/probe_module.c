/* The Python face of the fault probe: three METH_O/METH_FASTCALL functions.
 *
 * The probe's fault round trip costs a few microseconds in C; calling it through
 * ctypes would add as much again in argument conversion. These functions hold the
 * GIL for the probe (its handlers are process-wide, so one probe at a time) and
 * return plain ints and tuples that pytest_memsyscalls.probe turns into Faults. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "probe.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
/* Appends "group PID STARTTIME\n" (field 22 of /proc/self/stat) to record_fd; a failure
 * is ignored, as the parent's records are (the leak guard still reaps the child). */
static void record_own_group(int record_fd)
{
    char stat[1024], line[96];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t got = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (got <= 0)
        return;
    stat[got] = '\0';
    char *field = strrchr(stat, ')'); /* the command name may hold spaces and parentheses */
    if (!field)
        return;
    field += 2; /* field 3, the state */
    for (int n = 3; n < 22 && field; n++) {
        field = strchr(field, ' ');
        if (field)
            field++;
    }
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

static PyObject *enter_child(PyObject *self, PyObject *args)
{
    (void)self;
    int report_fd, out_fd, err_fd, parent, record_fd;
    long long core_hard;
    PyObject *close_fds, *reset_signals;
    if (!PyArg_ParseTuple(args, "iiiO!O!Lii", &report_fd, &out_fd, &err_fd, &PyTuple_Type, &close_fds,
                          &PyTuple_Type, &reset_signals, &core_hard, &parent, &record_fd))
        return NULL;
    if (parent > 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (getppid() != parent)
            _exit(1); /* the parent died before the request took effect */
    }
    if (setpgid(0, 0) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (record_fd >= 0)
        record_own_group(record_fd);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(close_fds); i++)
        close((int)PyLong_AsLong(PyTuple_GET_ITEM(close_fds, i)));
    if (dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (core_hard >= 0) {
        struct rlimit core = {0, core_hard == (long long)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)core_hard};
        if (setrlimit(RLIMIT_CORE, &core) != 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reset_signals); i++)
        signal((int)PyLong_AsLong(PyTuple_GET_ITEM(reset_signals, i)), SIG_DFL);
    if (PyErr_Occurred())
        return NULL;
    if (memsys_child_report_install(report_fd) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef probe_methods[] = {
    {"read", probe_read, METH_O, "read(addr) -> byte | (signo, code, addr)"},
    {"write", (PyCFunction)(void (*)(void))probe_write, METH_FASTCALL, "write(addr, byte) -> None | (signo, code, addr)"},
    {"execute", probe_execute, METH_O, "execute(addr) -> None | (signo, code, addr)"},
    {"enter_child", enter_child, METH_VARARGS,
     "enter_child(report_fd, out_fd, err_fd, close_fds, reset_signals, core_hard, parent, record_fd) -> None"},
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
