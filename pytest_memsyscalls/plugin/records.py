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
from types import CodeType, FrameType, TracebackType
from typing import Any

import pytest

from . import settings
from .activation import uses_memsys

# --- hooks ---------------------------------------------------------------------------

_pending: list[int] = []  # signals whose KeyboardInterrupt may have been swallowed
_repair_tracebacks = False  # whether our handlers raise KeyboardInterrupt in this process


def on_sigterm(signo: int, frame: object) -> None:
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


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """CPython 3.11 gives some instructions no line number, among them the jump back at
    the end of a loop body: one of the few places where it runs signal handlers. A
    KeyboardInterrupt raised there carries a traceback entry whose ``tb_lineno`` is
    None, and pytest's report of it (the terminal reporter's, next) fails with a
    TypeError: the session ends with status 1 and a traceback instead of "interrupted"
    and 2. The entries get the line of the last instruction before that has one. Only
    where our handlers raised it, or could have."""
    if not _repair_tracebacks:
        return
    exc: BaseException | None = excinfo.value
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            exc.__traceback__ = _with_line_numbers(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__
    if excinfo.value.__traceback__ is not None:
        excinfo.traceback = type(excinfo.traceback)(excinfo.value.__traceback__)


def _with_line_numbers(tb: TracebackType) -> TracebackType:
    """The same chain of entries, each with a line number."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next  # type: ignore[assignment]
    if all(entry.tb_lineno is not None for entry in entries):
        return entries[0]
    rebuilt: TracebackType | None = None
    for entry in reversed(entries):
        lineno = entry.tb_lineno if entry.tb_lineno is not None else _line_for(entry.tb_frame.f_code, entry.tb_lasti)
        rebuilt = TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, lineno)
    assert rebuilt is not None
    return rebuilt


def _line_for(code: CodeType, lasti: int) -> int:
    """A line for the instruction at ``lasti``, which has none: for a jump (the jump back
    at a loop's end) its target's, the loop's head, where the interpreter goes on;
    otherwise the last line before it."""
    import dis

    for instruction in dis.get_instructions(code):
        if instruction.offset == lasti and instruction.opcode in dis.hasjrel + dis.hasjabs:
            target = _line_at(code, instruction.argval)
            if target is not None:
                return target
    found = code.co_firstlineno
    for start, _end, line in code.co_lines():
        if start > lasti:
            break
        if line is not None:
            found = line
    return found


def _line_at(code: CodeType, offset: int) -> int | None:
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return None


def repair_interrupt_tracebacks() -> None:
    """``pytest_keyboard_interrupt`` repairs tracebacks from now on (see there)."""
    global _repair_tracebacks
    _repair_tracebacks = True


def _install_handlers() -> list[tuple[int, Any]]:
    """Our SIGTERM and SIGINT handlers where the default ones are in place; what they replaced."""
    saved: list[tuple[int, Any]] = []
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            saved.append((signal.SIGTERM, signal.signal(signal.SIGTERM, on_sigterm)))
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            saved.append((signal.SIGINT, signal.signal(signal.SIGINT, _on_sigint)))
    except ValueError:  # not the main thread
        pass
    if saved:
        repair_interrupt_tracebacks()
    return saved


def _restore_handlers(saved: list[tuple[int, Any]]) -> None:
    """Put back what we replaced, unless the test itself installed a handler meanwhile."""
    for signo, previous in saved:
        try:
            if signal.getsignal(signo) in (on_sigterm, _on_sigint):
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
    _pending.clear()
    end_records(config, interrupted=config.stash.get(_INTERRUPTED, True))


def end_records(config: pytest.Config, *, interrupted: bool) -> None:
    """Orderly end of this process's records: the record file goes. After Ctrl-C or
    SIGTERM, whatever the record still names and still exists is removed first (a
    teardown may itself have been interrupted), unless ``--memsys-leaks=off`` asked to
    leave objects alone. Also at the end of a forked worker (plugin/forked_workers.py)."""
    if not config.stash.get(_OWNER, False):
        return
    from ..memory import records
    from ..memory.records import sweep_file

    if records._recorder is None or records._recorder.pid != os.getpid():
        return
    recorder, records._recorder = records._recorder, None
    try:
        if interrupted and settings.get(config).leaks != "off":
            sweep_file(recorder.path)
    finally:
        recorder.close(remove=True)
