"""The fixtures any project gets by installing pytest-memsyscalls.

Each factory fixture records what it made and destroys it at teardown, in reverse
order, whatever the test's outcome. The objects are also usable without pytest
(``Mapping.create``, ``Arena``, ``ShmSegment``, ``PosixShm`` are context managers),
which is the way to use them inside Hypothesis ``@given`` tests.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pytest

from ..kernel import constants as C
from ..kernel.constants import RW
from . import settings
from .activation import skip_at_test
from .session import session_environment

# What the fixtures use is imported when a test first requests one: pytest loads this
# module into every session, and most never use it (activation.py).
if TYPE_CHECKING:
    from ..environment.fingerprint import Environment
    from ..memory.child import ChildOutcome, SignalExpectation
    from ..memory.mapping import Arena, FileMapping, Mapping
    from ..memory.shm import PosixShm, ShmSegment
    from .fixture_types import (
        ExpectSignal,
        FaultProbe,
        LockedRegion,
        MappedFile,
        MappedPages,
        PosixShmFactory,
        RunInChild,
        ShmSegmentFactory,
    )

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # a dependency of pytest before 3.11
    from exceptiongroup import ExceptionGroup


class _Cleanup:
    """Things to destroy at teardown, newest first; every one is attempted."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def add(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def run(self) -> None:
        """Run every action, newest first, whatever raises. One error is re-raised
        as it is; several are raised together in an ExceptionGroup, in the order they
        happened, so no teardown failure goes unreported."""
        errors: list[Exception] = []
        while self._actions:
            try:
                self._actions.pop()()
            except Exception as error:  # noqa: BLE001 - collected and re-raised below
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup(f"{len(errors)} fixture cleanups failed at teardown", errors)


@pytest.fixture
def _memsys_cleanup() -> Iterator[_Cleanup]:
    cleanup = _Cleanup()
    yield cleanup
    cleanup.run()


@pytest.fixture(scope="session")
def memsys_env(pytestconfig: pytest.Config) -> Environment:
    """The environment fingerprint of this session (what the header shows)."""
    return session_environment(pytestconfig)


@pytest.fixture(scope="session")
def page_size() -> int:
    """The system page size in bytes."""
    return os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def fault_probe() -> FaultProbe:
    """The in-process fault probe module: ``fault_probe.read(addr)``, ``.write``, ``.execute``."""
    from ..kernel import probe

    return probe


@pytest.fixture
def mapped_pages(_memsys_cleanup: _Cleanup) -> MappedPages:
    """Factory: ``mapped_pages(pages=1, prot=RW, flags=MAP_PRIVATE|MAP_ANONYMOUS, fd=None,
    offset=0, addr=None)`` -> Mapping, unmapped at teardown. ``fd=None`` maps no file
    (fd -1); ``addr=None`` gives no hint (0); ``addr`` with MAP_FIXED must lie in memory
    this package mapped (use the arena fixture for MAP_FIXED)."""
    from ..memory.mapping import Mapping

    def make(pages: int = 1, prot: int = RW, flags: int = C.MAP_PRIVATE | C.MAP_ANONYMOUS,
             fd: int | None = None, offset: int = 0, addr: int | None = None) -> Mapping:
        mapping = Mapping.create(pages, prot, flags, -1 if fd is None else fd, offset, addr or 0)
        _memsys_cleanup.add(mapping.unmap)
        return mapping

    return make


@pytest.fixture
def mapped_file(tmp_path: Path, _memsys_cleanup: _Cleanup) -> MappedFile:
    """Factory: ``mapped_file(content=b"", size=None, shared=True, prot=RW, pages=None,
    offset=0)``: a file in tmp_path of ``size`` bytes (default: the content's length, at
    least one byte) mapped shared or private; the FileMapping has ``.path``."""
    from ..kernel import libc
    from ..memory.mapping import FileMapping

    counter = iter(range(1 << 30))

    def make(content: bytes | bytearray | memoryview = b"", size: int | None = None, shared: bool = True,
             prot: int = RW, pages: int | None = None, offset: int = 0) -> FileMapping:
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"mapped_file: content must be bytes, got {type(content).__name__}")
        length = len(content) if size is None else libc._size("mapped_file", "size", size)
        if length < len(content):
            raise ValueError(f"mapped_file: size {length} is smaller than the content ({len(content)} bytes)")
        path = tmp_path / f"mapped-{next(counter)}.bin"
        open_flags = os.O_RDWR if prot & C.PROT_WRITE or not shared else os.O_RDONLY
        with open(path, "wb") as handle:
            handle.write(bytes(content))
            handle.truncate(max(length, 1) if size is None else length)
        fd = os.open(path, open_flags | os.O_CLOEXEC)
        _memsys_cleanup.add(lambda: os.close(fd))
        count = pages if pages is not None else max(1, -(-max(length, 1) // libc.PAGE_SIZE))
        flags = C.MAP_SHARED if shared else C.MAP_PRIVATE
        mapping = FileMapping.create(count, prot, flags, fd, offset)
        mapping.path = path
        _memsys_cleanup.add(mapping.unmap)
        return mapping

    return make


@pytest.fixture
def arena(_memsys_cleanup: _Cleanup) -> Arena:
    """A 64-page PROT_NONE reservation; ``arena.map(page, pages, prot, flags)`` uses
    MAP_FIXED inside it, ``arena.hole(page)`` unmaps. Released at teardown."""
    from ..memory.mapping import Arena

    reserved = Arena(64)
    _memsys_cleanup.add(reserved.close)
    return reserved


@pytest.fixture
def locked_region(mapped_pages: MappedPages, memsys_env: Environment) -> LockedRegion:
    """Factory: ``locked_region(pages=1, onfault=False)`` -> a Mapping locked with mlock
    (mlock2(MLOCK_ONFAULT) when onfault). Skips, naming the limit, where this process
    cannot lock that much; unlocked and unmapped at teardown."""
    from ..environment.needs import lockable_shortfall


    def make(pages: int = 1, onfault: bool = False, prot: int = RW) -> Mapping:
        mapping = mapped_pages(pages, prot)
        reason = lockable_shortfall(memsys_env, mapping.length)
        if reason:
            raise skip_at_test(reason)  # reported at the test, not in this file
        mapping.lock(C.MLOCK_ONFAULT if onfault else 0)
        return mapping  # munmap at teardown removes the lock too

    return make


@pytest.fixture
def shm_segment(_memsys_cleanup: _Cleanup) -> ShmSegmentFactory:
    """Factory: ``shm_segment(size=PAGE, key=IPC_PRIVATE | 'unique' | int, mode=0o600, flags=0)``
    -> ShmSegment; every attachment detached and the segment removed at teardown."""
    from ..kernel.libc import PAGE_SIZE
    from ..memory.shm import ShmSegment

    def make(size: int = PAGE_SIZE, key: int | str = C.IPC_PRIVATE, mode: int = 0o600,
             flags: int = 0) -> ShmSegment:
        segment = ShmSegment(size, key=key, mode=mode, flags=flags)
        _memsys_cleanup.add(segment.close)
        return segment

    return make


@pytest.fixture
def posix_shm(_memsys_cleanup: _Cleanup) -> PosixShmFactory:
    """Factory: ``posix_shm(size=PAGE, mode=0o600)`` -> PosixShm with an unpredictable
    name, opened O_CREAT|O_EXCL; unlinked and closed at teardown."""
    from ..kernel.libc import PAGE_SIZE
    from ..memory.shm import PosixShm

    def make(size: int = PAGE_SIZE, mode: int = 0o600) -> PosixShm:
        shared = PosixShm(size, mode=mode)
        _memsys_cleanup.add(shared.close)
        return shared

    return make


@pytest.fixture
def run_in_child(pytestconfig: pytest.Config) -> RunInChild:
    """``run_in_child(fn, *args, timeout=--memsys-child-timeout, **kwargs)`` -> ChildOutcome."""
    from ..memory.child import run_in_child as _run_in_child

    default = settings.get(pytestconfig).child_timeout

    def run(fn: Callable[..., Any], /, *args: Any, timeout: float | None = None, **kwargs: Any) -> ChildOutcome:
        return _run_in_child(fn, *args, timeout=default if timeout is None else timeout, **kwargs)

    return run


class _SignalExpecter:
    """The ``expect_signal`` fixture's function: expect_signal with the session's child timeout."""

    def __init__(self, default_timeout: float) -> None:
        self.default_timeout = default_timeout

    @overload
    def __call__(self, signo: int, /, *, code: int | None = None, addr: int | None = None,
                 timeout: float | None = None) -> SignalExpectation: ...

    @overload
    def __call__(self, signo: int, fn: Callable[..., object], /, *args: Any, code: int | None = None,
                 addr: int | None = None, timeout: float | None = None, **kwargs: Any) -> ChildOutcome: ...

    def __call__(self, signo: int, fn: Callable[..., object] | None = None, /, *args: Any, code: int | None = None,
                 addr: int | None = None, timeout: float | None = None,
                 **kwargs: Any) -> ChildOutcome | SignalExpectation:
        from ..memory.child import expect_signal as _expect_signal

        timeout = self.default_timeout if timeout is None else timeout
        if fn is None:
            if args or kwargs:
                raise TypeError("expect_signal: arguments given without a function to call")
            return _expect_signal(signo, code=code, addr=addr, timeout=timeout)
        return _expect_signal(signo, fn, *args, code=code, addr=addr, timeout=timeout, **kwargs)


@pytest.fixture
def expect_signal(pytestconfig: pytest.Config) -> ExpectSignal:
    """``expect_signal(SIGSEGV, fn, *args, code=SEGV_ACCERR, addr=a)`` runs ``fn`` in a child and
    asserts it dies of that signal; ``with expect_signal(SIGSEGV, ...): ...`` runs the block there."""
    return _SignalExpecter(settings.get(pytestconfig).child_timeout)
