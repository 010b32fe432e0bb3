"""pytest-memsyscalls: verify how a system's memory-management calls really behave.

The package is layered, each layer a folder whose imports point only down
(ARCHITECTURE.md): ``kernel`` (the one door to the kernel: libc, constants, the fault
probe, /proc), ``environment`` (what this system is and promises), ``memory`` (objects
that clean up after themselves, children, expectations), ``report`` (the report as
data), ``plugin`` (pytest hooks, fixtures, settings, the leak guard), ``matrix`` and
``cli``.

The public names below are loaded on first use, so that pytest loading this plugin into
a session that never uses it imports neither the C extension nor the memory objects.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

# Before the module is first imported, so a test's failed expectation shows pytest's
# rewritten comparison.
pytest.register_assert_rewrite("pytest_memsyscalls.memory.expectations")

if TYPE_CHECKING:
    from .kernel import constants, libc, procfs  # noqa: F401 (public submodules)
    from .kernel.contract import ExpectationFailed
    from .kernel.probe import Fault
    from .memory.child import ChildOutcome, expect_signal, run_in_child
    from .memory.expectations import fails_with, faults_with, succeeds
    from .memory.mapping import Arena, FileMapping, Mapping
    from .memory.shm import PosixShm, ShmSegment, ShmStat
    from .plugin.fixture_types import (
        ExpectSignal,
        FaultProbe,
        LockedRegion,
        MappedFile,
        MappedPages,
        PosixShmFactory,
        RunInChild,
        ShmSegmentFactory,
    )
    from .plugin.semantics import Semantic, requires, semantic

__version__ = "0.1.0"

# public name -> the module that defines it (a module name itself for the submodules).
_PUBLIC = {
    "Arena": ".memory.mapping",
    "ChildOutcome": ".memory.child",
    "ExpectationFailed": ".kernel.contract",
    "ExpectSignal": ".plugin.fixture_types",
    "Fault": ".kernel.probe",
    "FaultProbe": ".plugin.fixture_types",
    "FileMapping": ".memory.mapping",
    "LockedRegion": ".plugin.fixture_types",
    "MappedFile": ".plugin.fixture_types",
    "MappedPages": ".plugin.fixture_types",
    "Mapping": ".memory.mapping",
    "PosixShm": ".memory.shm",
    "PosixShmFactory": ".plugin.fixture_types",
    "RunInChild": ".plugin.fixture_types",
    "Semantic": ".plugin.semantics",
    "ShmSegment": ".memory.shm",
    "ShmSegmentFactory": ".plugin.fixture_types",
    "ShmStat": ".memory.shm",
    "expect_signal": ".memory.child",
    "fails_with": ".memory.expectations",
    "faults_with": ".memory.expectations",
    "requires": ".plugin.semantics",
    "run_in_child": ".memory.child",
    "semantic": ".plugin.semantics",
    "succeeds": ".memory.expectations",
}
_MODULES = {"constants": ".kernel.constants", "libc": ".kernel.libc", "procfs": ".kernel.procfs"}

__all__ = [  # spelled out for linters and readers; a test checks it equals _PUBLIC
    "Arena", "ChildOutcome", "ExpectSignal", "ExpectationFailed", "Fault", "FaultProbe", "FileMapping", "LockedRegion",
    "MappedFile", "MappedPages", "Mapping", "PosixShm", "PosixShmFactory", "RunInChild", "Semantic", "ShmSegment",
    "ShmSegmentFactory", "ShmStat", "expect_signal", "fails_with", "faults_with", "requires", "run_in_child",
    "semantic", "succeeds",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value: Any = importlib.import_module(_MODULES[name], __name__)
    elif name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, *_MODULES})
