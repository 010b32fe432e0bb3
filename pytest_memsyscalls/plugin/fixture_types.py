"""The types of the factory fixtures, for annotating a test's parameters.

Each factory fixture returns a function; these Protocols spell out its real call
signature, so a type checker checks the calls a test makes::

    from pytest_memsyscalls import MappedPages

    def test_read_only(mapped_pages: MappedPages) -> None:
        page = mapped_pages(1, prot=PROT_READ)

The fixtures in plugin/fixtures.py are annotated with them too, so mypy checks that
each factory matches its Protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, overload

from ..kernel.probe import Fault
from ..memory.child import ChildOutcome, SignalExpectation
from ..memory.mapping import FileMapping, Mapping
from ..memory.shm import PosixShm, ShmSegment


class MappedPages(Protocol):
    """``mapped_pages``: mmap ``pages`` pages (anonymous private read-write by default);
    ``fd=None`` means -1 and ``addr=None`` no hint. Unmapped at teardown."""

    def __call__(self, pages: int = 1, prot: int = ..., flags: int = ..., fd: int | None = None,
                 offset: int = 0, addr: int | None = None) -> Mapping: ...


class MappedFile(Protocol):
    """``mapped_file``: a file in tmp_path holding ``content``, mapped shared or private."""

    def __call__(self, content: bytes | bytearray | memoryview = b"", size: int | None = None,
                 shared: bool = True, prot: int = ..., pages: int | None = None,
                 offset: int = 0) -> FileMapping: ...


class LockedRegion(Protocol):
    """``locked_region``: mapped pages locked with mlock (mlock2(MLOCK_ONFAULT) when
    ``onfault``); skips where this process cannot lock that much."""

    def __call__(self, pages: int = 1, onfault: bool = False, prot: int = ...) -> Mapping: ...


class ShmSegmentFactory(Protocol):
    """``shm_segment``: a SysV segment, removed at teardown; ``key`` is an int,
    IPC_PRIVATE or ``"unique"``."""

    def __call__(self, size: int = ..., key: int | str = ..., mode: int = 0o600,
                 flags: int = 0) -> ShmSegment: ...


class PosixShmFactory(Protocol):
    """``posix_shm``: a POSIX shared memory object, unlinked and closed at teardown."""

    def __call__(self, size: int = ..., mode: int = 0o600) -> PosixShm: ...


class RunInChild(Protocol):
    """``run_in_child``: call ``fn(*args, **kwargs)`` in a forked child; ``timeout``
    defaults to --memsys-child-timeout."""

    def __call__(self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None,
                 **kwargs: Any) -> ChildOutcome: ...


class ExpectSignal(Protocol):
    """``expect_signal``: ``expect_signal(SIGSEGV, fn, *args, code=..., addr=...)`` runs
    ``fn`` in a child that must die of that signal and returns its outcome; without
    ``fn`` it is a context manager whose block runs in the child."""

    @overload
    def __call__(self, signo: int, /, *, code: int | None = None, addr: int | None = None,
                 timeout: float | None = None) -> SignalExpectation: ...

    @overload
    def __call__(self, signo: int, fn: Callable[..., object], /, *args: Any, code: int | None = None,
                 addr: int | None = None, timeout: float | None = None, **kwargs: Any) -> ChildOutcome: ...


class FaultProbe(Protocol):
    """``fault_probe``: the in-process fault probe (pytest_memsyscalls.kernel.probe)."""

    RET_INSTRUCTION: bytes

    def read(self, addr: int) -> Fault | None: ...

    def read_value(self, addr: int) -> tuple[Fault | None, int | None]: ...

    def write(self, addr: int, value: int = 0, *, foreign: bool = False) -> Fault | None: ...

    def execute(self, addr: int, *, foreign: bool = False) -> Fault | None: ...


__all__ = ["ExpectSignal", "FaultProbe", "LockedRegion", "MappedFile", "MappedPages",
           "PosixShmFactory", "RunInChild", "ShmSegmentFactory"]
