"""pytest-memsyscalls: verify how a system's memory-management calls really behave.

The plugin (``plugin``) registers fixtures, markers, options and the report; the
libc layer (``libc``) is the one door to the kernel; ``probe`` catches faults in
process and ``child`` in forked children; ``environment`` says what this system is.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("pytest_memsyscalls.assertions")

from .assertions import fails_with, faults_with, succeeds  # noqa: E402
from .child import ChildOutcome, expect_signal, run_in_child  # noqa: E402
from .mapping import Arena, Mapping  # noqa: E402
from .probe import Fault  # noqa: E402
from .semantics import Semantic, requires, semantic  # noqa: E402
from .shm import PosixShm, ShmSegment, ShmStat  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Arena",
    "ChildOutcome",
    "Fault",
    "Mapping",
    "PosixShm",
    "Semantic",
    "ShmSegment",
    "ShmStat",
    "expect_signal",
    "fails_with",
    "faults_with",
    "requires",
    "run_in_child",
    "semantic",
    "succeeds",
]
