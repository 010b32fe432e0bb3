"""Where the compiled parts live and how they are loaded.

``pip install`` compiles ``csrc/`` into the ``_probe`` shared object and the
``memsys-brk-helper`` executable inside this package; nothing is compiled at run
time. A missing build is reported with the command that makes it.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.machinery
import os
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
_REBUILD_HINT = ("rebuild it: pip install --force-reinstall --no-deps pytest-memsyscalls "
                 "(from a clone: pip install -e . or ci/setup.sh)")


class NativeBuildMissing(RuntimeError):
    """The compiled part of the package is not where the installation put it."""


class ChildReport(ctypes.Structure):
    """memsys_child_report from csrc/probe.h: what a dying child writes to its pipe."""

    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("signo", ctypes.c_int32),
        ("code", ctypes.c_int32),
        ("pid", ctypes.c_int32),
        ("addr", ctypes.c_uint64),
    ]


CHILD_REPORT_MAGIC = 0x4D454D53


def load_probe() -> ModuleType:
    """The compiled ``_probe`` extension; NativeBuildMissing, one line naming the rebuild
    command, when it is missing or does not load (built for another Python, say)."""
    try:
        return importlib.import_module("pytest_memsyscalls.kernel._probe")
    except ImportError as error:
        detail = "is not built" if isinstance(error, ModuleNotFoundError) else f"does not load ({error})"
        raise NativeBuildMissing(f"the C extension pytest_memsyscalls.kernel._probe {detail} in {PACKAGE_DIR}: "
                                 f"{_REBUILD_HINT}") from None


def _probe_library_path() -> Path:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = PACKAGE_DIR / f"_probe{suffix}"
        if candidate.exists():
            return candidate
    raise NativeBuildMissing(f"the fault probe library (_probe*.so) is not in {PACKAGE_DIR}: {_REBUILD_HINT}")


@functools.cache
def library() -> ctypes.PyDLL:
    """The probe's shared object through ctypes, for its plain C entry points: the C-side
    benchmarks of the probe (bench/bench_probe.py) and of a fork (bench/bench_child.py).
    The probe and the child's fork and set-up are called through the ``_probe`` module.
    A PyDLL keeps the GIL held, as the module does."""
    lib = ctypes.PyDLL(str(_probe_library_path()), use_errno=True)
    lib.memsys_bench_probe_read_ns.argtypes = [ctypes.c_void_p, ctypes.c_long]
    lib.memsys_bench_probe_read_ns.restype = ctypes.c_double
    lib.memsys_bench_fork_exit.argtypes = []
    lib.memsys_bench_fork_exit.restype = ctypes.c_int
    return lib


def brk_helper_path() -> Path:
    """The memsys-brk-helper executable."""
    path = PACKAGE_DIR / "memsys-brk-helper"
    if not os.access(path, os.X_OK):
        raise NativeBuildMissing(f"the brk helper is not an executable at {path}: {_REBUILD_HINT}")
    return path


def injector_path() -> Path:
    """The memsys-inject executable: the fault-injection supervisor the project's own
    tests run the suite under (tests/fault_injection.py); not used by the plugin."""
    path = PACKAGE_DIR / "memsys-inject"
    if not os.access(path, os.X_OK):
        raise NativeBuildMissing(f"the fault injector is not an executable at {path}: {_REBUILD_HINT}")
    return path
