"""The pytest side of ``records``: SIGTERM unwinds like Ctrl-C, the session start sweeps
what dead runs left, this session's objects are recorded, and the record goes at the end.

A module of its own (not ``records``) because the package imports ``records`` before
pytest loads plugins, and a plugin module must be imported by pytest to be rewritten.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import pytest

from ..memory import records
from ..memory.records import Recorder, UnsafeDirectory, ensure_dir, sweep, sweep_file
from . import settings

# --- hooks ---------------------------------------------------------------------------

_SAVED_SIGTERM = pytest.StashKey[Any]()
_SAVED_SIGINT = pytest.StashKey[Any]()


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


def pytest_configure(config: pytest.Config) -> None:
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            config.stash[_SAVED_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            config.stash[_SAVED_SIGINT] = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread
        pass
    if records._recorder is not None:  # a nested in-process session (pytester): the outer one records
        return
    try:
        directory = ensure_dir()
    except (UnsafeDirectory, OSError) as error:
        config.issue_config_time_warning(pytest.PytestWarning(
            f"pytest-memsyscalls: records and sweep disabled: {error}"), stacklevel=2)
        return
    if not hasattr(config, "workerinput"):  # the controller (or a plain run) sweeps dead runs
        try:
            result = sweep(directory)
        except (UnsafeDirectory, OSError):
            result = None
        if result is not None and result.files:
            config.stash[_SWEPT] = result.summary()
    records._recorder = Recorder(directory)
    config.stash[_OWNER] = True


_SWEPT = pytest.StashKey[str]()
_OWNER = pytest.StashKey[bool]()


def pytest_report_header(config: pytest.Config) -> str | None:
    return config.stash.get(_SWEPT, None)


_INTERRUPTED = pytest.StashKey[bool]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_INTERRUPTED] = exitstatus == pytest.ExitCode.INTERRUPTED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Orderly end: the record file goes. After Ctrl-C or SIGTERM, whatever the record
    still names and still exists is removed first (a teardown may itself have been
    interrupted), unless ``--memsys-leaks=off`` asked to leave objects alone."""
    for key, signo in ((_SAVED_SIGTERM, signal.SIGTERM), (_SAVED_SIGINT, signal.SIGINT)):
        saved = config.stash.get(key, None)
        if saved is not None:
            signal.signal(signo, saved)
            del config.stash[key]
    _pending.clear()
    if not config.stash.get(_OWNER, False) or records._recorder is None or records._recorder.pid != os.getpid():
        return
    recorder, records._recorder = records._recorder, None
    try:
        if config.stash.get(_INTERRUPTED, True) and settings.get(config).leaks != "off":
            sweep_file(recorder.path)
    finally:
        recorder.close(remove=True)
