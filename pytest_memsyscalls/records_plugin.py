"""The pytest side of ``records``: SIGTERM unwinds like Ctrl-C, the session start sweeps
what dead runs left, this session's objects are recorded, and the record goes at the end.

A module of its own (not ``records``) because the package imports ``records`` before
pytest loads plugins, and a plugin module must be imported by pytest to be rewritten.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from . import records, settings
from .records import Recorder, UnsafeDirectory, ensure_dir, prepare_children, sweep, sweep_file

# --- hooks ---------------------------------------------------------------------------

_SAVED_SIGTERM = pytest.StashKey[Any]()


def _on_sigterm(signo: int, frame: object) -> None:
    """SIGTERM unwinds pytest like Ctrl-C: fixtures tear down, the session ends."""
    raise KeyboardInterrupt(f"signal {signo} (SIGTERM)")


def pytest_configure(config: pytest.Config) -> None:
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            config.stash[_SAVED_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)
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
    prepare_children()
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
    saved = config.stash.get(_SAVED_SIGTERM, None)
    if saved is not None:
        signal.signal(signal.SIGTERM, saved)
        del config.stash[_SAVED_SIGTERM]
    if not config.stash.get(_OWNER, False) or records._recorder is None or records._recorder.pid != os.getpid():
        return
    recorder, records._recorder = records._recorder, None
    try:
        if config.stash.get(_INTERRUPTED, True) and settings.get(config).leaks != "off":
            sweep_file(recorder.path)
    finally:
        recorder.close(remove=True)
