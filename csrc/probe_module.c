/* The Python face of the fault probe: three METH_O/METH_FASTCALL functions.
 *
 * The probe's fault round trip costs a few microseconds in C; calling it through
 * ctypes would add as much again in argument conversion. These functions hold the
 * GIL for the probe (its handlers are process-wide, so one probe at a time) and
 * return plain ints and tuples that pytest_memsyscalls.probe turns into Faults. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "probe.h"

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

static PyMethodDef probe_methods[] = {
    {"read", probe_read, METH_O, "read(addr) -> byte | (signo, code, addr)"},
    {"write", (PyCFunction)(void (*)(void))probe_write, METH_FASTCALL, "write(addr, byte) -> None | (signo, code, addr)"},
    {"execute", probe_execute, METH_O, "execute(addr) -> None | (signo, code, addr)"},
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
