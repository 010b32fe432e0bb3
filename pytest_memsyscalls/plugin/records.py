"""The pytest side of ``records``: SIGTERM unwinds like Ctrl-C, what dead runs left is
swept, this session's objects are recorded, and the record goes at the end.

All of it only for tests that use the plugin (activation.py): the handlers are
installed around each such test and the previous ones put back after it, and the
records directory is touched (made, swept, a record file opened) when the first such
test runs. Another project's test that checks its own SIGTERM handler, or a session
that never uses the package, sees nothing of it.

A module of its own (not ``records``) because a plugin module must be imported by
pytest to be rewritten.

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from . import settings
from .activation import uses_memsys

# --- hooks ---------------------------------------------------------------------------

_pending: list[int] = []  # signals whose KeyboardInterrupt may have been swallowed


def _on_sigterm(signo: int, frame: object) -> None:
    """SIGTERM unwinds pytest like Ctrl-C: fixtures tear down, the session ends."""
    _pending.append(signo)
    raise KeyboardInterrupt(f"signal {signo} (SIGTERM)")


def _on_sigint(signo: int, frame: FrameType | None) -> None:
    """Python's own Ctrl-C behaviour, remembered (see ``pytest_runtest_logfinish``)."""
    _pending.append(signo)
    signal.default_int_handler(signo, frame)


def pytest_runtest_logfinish() -> None:
    """A KeyboardInterrupt raised while Python ran a ``__del__`` or a GC callback is only
    printed ("Exception ignored"), and the session would go on: after each test, an
    interrupt that was not acted on is raised again."""
    if _pending:
        signo = _pending.pop()
        _pending.clear()
        raise KeyboardInterrupt(f"signal {signo} (delivered during a test, raised again after it)")


def _install_handlers() -> list[tuple[int, Any]]:
    """Our SIGTERM and SIGINT handlers where the default ones are in place; what they replaced."""
    saved: list[tuple[int, Any]] = []
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            saved.append((signal.SIGTERM, signal.signal(signal.SIGTERM, _on_sigterm)))
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            saved.append((signal.SIGINT, signal.signal(signal.SIGINT, _on_sigint)))
    except ValueError:  # not the main thread
        pass
    return saved


def _restore_handlers(saved: list[tuple[int, Any]]) -> None:
    """Put back what we replaced, unless the test itself installed a handler meanwhile."""
    for signo, previous in saved:
        try:
            if signal.getsignal(signo) in (_on_sigterm, _on_sigint):
                signal.signal(signo, previous)
        except ValueError:
            pass


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not uses_memsys(item):
        yield
        return
    _start_records(item)
    saved = _install_handlers()
    try:
        yield  # an old-style wrapper: this returns (the outcome inside) even when the test raised
    finally:
        _restore_handlers(saved)


_STARTED = pytest.StashKey[bool]()
_SWEPT = pytest.StashKey[str]()
_OWNER = pytest.StashKey[bool]()


def _start_records(item: pytest.Item) -> None:
    """On the first test that uses the plugin: sweep what dead runs recorded and left,
    then start this process's record file."""
    config = item.config
    if config.stash.get(_STARTED, False):
        return
    config.stash[_STARTED] = True
    from ..memory import records
    from ..memory.records import Recorder, UnsafeDirectory, ensure_dir, sweep

    if records._recorder is not None:  # a nested in-process session (pytester): the outer one records
        return
    try:
        directory = ensure_dir()
    except (UnsafeDirectory, OSError) as error:
        item.warn(pytest.PytestWarning(f"pytest-memsyscalls: records and sweep disabled: {error}"))
        return
    try:  # xdist workers start at once: one sweeps, the others find nothing left
        lock = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = sweep(directory)
        finally:
            os.close(lock)
    except (UnsafeDirectory, OSError):
        result = None
    if result is not None and result.files:
        config.stash[_SWEPT] = result.summary()
    try:
        records._recorder = Recorder(directory)
    except FileExistsError:  # this process records already: a session nested in another (pytester)
        return
    except OSError as error:
        item.warn(pytest.PytestWarning(f"pytest-memsyscalls: records disabled: {error}"))
        return
    config.stash[_OWNER] = True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    swept = config.stash.get(_SWEPT, None)
    if swept:
        terminalreporter.write_line(swept)


_INTERRUPTED = pytest.StashKey[bool]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_INTERRUPTED] = exitstatus == pytest.ExitCode.INTERRUPTED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Orderly end: the record file goes. After Ctrl-C or SIGTERM, whatever the record
    still names and still exists is removed first (a teardown may itself have been
    interrupted), unless ``--memsys-leaks=off`` asked to leave objects alone."""
    _pending.clear()
    if not config.stash.get(_OWNER, False):
        return
    from ..memory import records
    from ..memory.records import sweep_file

    if records._recorder is None or records._recorder.pid != os.getpid():
        return
    recorder, records._recorder = records._recorder, None
    try:
        if config.stash.get(_INTERRUPTED, True) and settings.get(config).leaks != "off":
            sweep_file(recorder.path)
    finally:
        recorder.close(remove=True)
