"""Fault catching in forked children: ``run_in_child`` and ``expect_signal``.

Fork around the risky code, not around whole tests: the child runs one function
(or the body of one ``with expect_signal(...)`` statement), never touches pytest or Hypothesis machinery, and always
ends in ``os._exit``. What it returns or raises crosses a pipe as a pickle; the
signal that kills it is described by a C handler (csrc/child_report.c) that
writes the siginfo to a second pipe and re-raises, so the parent knows both the
true termination status and ``si_code``/``si_addr``. The parent waits with a
deadline and, past it, kills the child's whole process group and reaps it; it
kills the group after a normal exit too, so grandchildren never outlive the call.

The fork is ``_probe.fork_child``: the child's set-up, and for ``run_in_child`` the
call of ``fn``, happen in C, since a child's cost is mostly its first touches of
the parent's pages. In a single-threaded process without asyncio (a pytest session
without xdist or timeout threads) it also skips what ``os.fork()`` does for threads
lost in the fork, so callbacks registered with ``os.register_at_fork`` do not run
(``random`` is not reseeded in the child); otherwise they run as with ``os.fork()``.
"""

from __future__ import annotations

import ctypes
import inspect
import io
import itertools
import math
import os
import pickle
import resource
import select
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, overload

from ..kernel import native
from ..kernel.probe import Fault
from . import records
from .expectations import ExpectationFailed
from .timeouts import DEFAULT_TIMEOUT, check_timeout

if TYPE_CHECKING:
    from ..kernel import _probe
else:
    _probe = native.load_probe()

OUTPUT_LIMIT = 1 << 20  # bytes of stdout/stderr kept per child

#: (serial, pid) of the children forked here, newest last: the leak guard blames the
#: SysV segments and /dev/shm names a child created on the test that forked it.
forked_children: deque[tuple[int, int]] = deque(maxlen=4096)
_fork_serial = itertools.count(1)


@dataclass(frozen=True)
class ChildException:
    """An exception raised in the child, as text (the object itself may not pickle)."""

    type_name: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


@dataclass(frozen=True)
class ChildOutcome:
    """How a child ended and what it left behind."""

    pid: int
    exit_status: int | None
    signal: int | None
    fault: Fault | None
    value: Any = None
    exception: ChildException | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    timed_out: bool = False
    timeout: float = DEFAULT_TIMEOUT
    exception_object: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def returned(self) -> bool:
        """The function returned normally (its value is in ``value``)."""
        return self.exit_status == 0 and self.exception is None and not self.timed_out

    @property
    def crashed(self) -> bool:
        return self.signal is not None and not self.timed_out

    def describe(self) -> str:
        """One line: RETURNED …, RAISED …, EXITED …, CRASHED …, TIMED OUT …"""
        if self.timed_out:
            return f"TIMED OUT after {self.timeout:g} s (killed with its process group)"
        if self.signal is not None:
            name = _signal_name(self.signal)
            if self.fault is not None and self.fault.signo == self.signal:
                return (f"CRASHED with signal {self.signal} ({name}) at {self.fault.addr:#x} "
                        f"({self.fault.code_name})")
            return f"CRASHED with signal {self.signal} ({name})"
        if self.exception is not None:
            return f"RAISED {self.exception}"
        if self.exit_status == 0:
            return f"RETURNED {self.value!r}"
        return f"EXITED with status {self.exit_status}"

    def __str__(self) -> str:
        return self.describe()

    def result(self) -> Any:
        """The child's return value; re-raises its exception (or ChildFailed) otherwise."""
        if self.returned:
            return self.value
        if self.exception_object is not None:
            raise self.exception_object
        raise ChildFailed(self)


class ChildFailed(AssertionError):
    """The child did not return normally; the message says how it ended."""

    def __init__(self, outcome: ChildOutcome) -> None:
        self.outcome = outcome
        details = outcome.describe()
        if outcome.exception is not None:
            details += "\n" + outcome.exception.traceback
        if outcome.stderr:
            details += "\n--- child stderr ---\n" + outcome.stderr.decode(errors="replace")
        super().__init__(details)


def _signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


# --- the fork itself -------------------------------------------------------------

@dataclass
class _Pipes:
    result_r: int
    result_w: int
    report_r: int
    report_w: int
    out_r: int
    out_w: int
    err_r: int
    err_w: int


def _open_pipes() -> _Pipes:
    fds: list[int] = []
    try:
        for _ in range(4):
            fds.extend(os.pipe2(os.O_CLOEXEC))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return _Pipes(*fds)


def _write_all(fd: int, data: Any) -> int:
    """Writes all of data (a bytes-like object) to fd, continuing short writes; its size."""
    view = memoryview(data).cast("B")
    size = view.nbytes
    while view:
        view = view[os.write(fd, view):]
    return size


class _WholeWrites(io.RawIOBase):
    """An unbuffered writer on a file descriptor that writes all it is given: a pipe
    write cut short by a signal is continued, where FileIO would return a short count
    that TextIOWrapper ignores."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    @property
    def name(self) -> int:
        return self._fd  # as FileIO opened on a descriptor names it

    def write(self, data: Any) -> int:
        return _write_all(self._fd, data)


class _ChildPlan:
    """What the child must do, worked out in the parent before the fork.

    Every page a child writes after fork() is copied (copy-on-write), and every
    code path it runs for the first time faults its pages in: in a pytest-sized
    process that, not the fork itself, was most of a call's cost. So the parent
    makes the child's stdio objects once and decides which signal dispositions
    and limits actually need changing; the child does only the syscalls.
    """

    streams: tuple[io.TextIOWrapper, io.TextIOWrapper] | None = None

    @classmethod
    def stdio(cls) -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
        """Text streams on fds 1 and 2 (the capture pipes, in the child). Unbuffered, so
        the child has nothing to flush before os._exit, and never closing the fds: the
        parent keeps them, unused, for the next child."""
        if cls.streams is None:
            cls.streams = (io.TextIOWrapper(_WholeWrites(1), write_through=True),
                           io.TextIOWrapper(_WholeWrites(2), write_through=True))
        return cls.streams


def _signals_to_reset() -> tuple[int, ...]:
    """SIGINT and SIGTERM must kill the child, not raise in it: the ones whose
    disposition here is not already SIG_DFL."""
    return tuple(signo for signo in (signal.SIGINT, signal.SIGTERM)
                 if signal.getsignal(signo) is not signal.SIG_DFL)


def _run_child(call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None,
               timeout: float) -> ChildOutcome | _Pipes:
    """Fork with the pipes in place and, in the parent, wait for the child: its outcome.
    With call, (fn, args, kwargs), the child runs it and exits without returning here;
    without, this returns the pipes in the child, which runs the caller's code.

    An exception anywhere on the way (a signal handler's: signals blocked across the
    fork are handled as fork_child returns) leaves no child behind: _collect kills and
    reaps it once it owns the child, _abandon before that."""
    started = time.monotonic()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    streams = _ChildPlan.stdio()
    reset = _signals_to_reset()
    core_soft, core_hard = resource.getrlimit(resource.RLIMIT_CORE)
    pipes = _open_pipes()
    parent = os.getpid()
    plan = (pipes.result_w, pipes.report_w, pipes.out_w, pipes.err_w,
            (pipes.result_r, pipes.report_r, pipes.out_r, pipes.err_r), reset, core_hard if core_soft else None,
            # dies with pytest, even after kill -9, where records are kept (the sweep's premise)
            parent if records.recording() else 0, records.child_record_fd())
    forked = [0]  # the child's pid, stored by fork_child before any signal handler can run
    owned = [False]  # set by _collect inside the try whose finally reaps the child
    try:
        in_child = None if call is None else (*call, _PICKLED_NONE, _finish, pipes)
        pid = _probe.fork_child(*plan, streams, in_child, forked)
        if pid == 0:
            return pipes
        forked_children.append((next(_fork_serial), pid))
        return _collect(pid, pipes, timeout, started, owned)
    except BaseException:
        if not owned[0]:
            _abandon(parent, forked[0], pipes)
        raise


def _abandon(parent: int, pid: int, pipes: _Pipes) -> None:
    """After an exception on the way out of fork_child (a signal handler's, most
    likely: signals blocked across the fork arrive as it returns), a child goes no
    further, and the parent kills and reaps the child it made and closes its pipes
    (fork_child has closed the write ends once there is a child)."""
    if os.getpid() != parent:
        os._exit(112)
    if pid:
        _kill_group(pid)
        _kill(pid)  # in case the exception came before the child had its own group
        os.waitpid(pid, 0)
    for fd in (pipes.result_r, pipes.report_r, pipes.out_r, pipes.err_r):
        os.close(fd)
    if not pid:
        for fd in (pipes.result_w, pipes.report_w, pipes.out_w, pipes.err_w):
            os.close(fd)


_PICKLED_NONE = pickle.dumps(("value", None))  # the commonest result, pickled before any fork


def _send_result(pipes: _Pipes, payload: tuple[Any, ...]) -> None:
    try:
        data = _PICKLED_NONE if payload[0] == "value" and payload[1] is None else pickle.dumps(payload)
    except Exception:  # noqa: BLE001 - an unpicklable value is described instead
        kind = payload[0]
        data = pickle.dumps((kind, repr(payload[1])) if kind == "value" else payload[:2])
    _write_all(pipes.result_w, data)


def _finish(pipes: _Pipes, value: Any, error: BaseException | None) -> NoReturn:
    """Reports how the child's code ended (its value, or the exception it raised) and
    ends the child with its status: 0, SystemExit's code, 1 after an exception, 112 if
    the report itself failed. Never returns, so a child never runs on into pytest."""
    code = 112
    try:
        if error is None:
            _send_result(pipes, ("value", value))
            code = 0
        elif isinstance(error, SystemExit):
            code = _exit_status(error.code)
        else:
            _send_exception(pipes, error)
            code = 1
    finally:
        _exit_child(code)


def _send_exception(pipes: _Pipes, error: BaseException) -> None:
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    described = ChildException(type(error).__name__, str(error), "".join(lines))
    try:
        pickle.dumps(error)
        _send_result(pipes, ("exception", described, error))
    except Exception:  # noqa: BLE001
        _send_result(pipes, ("exception", described, None))


def _exit_status(code: object) -> int:
    """The status sys.exit(code) gives a process: None is 0, an int its low byte (a
    huge one 255, as C's exit would get -1), anything else 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(2**63) <= code < 2**63 else 0xFF
    return 1


def _exit_child(code: int) -> NoReturn:
    """Flushes what the child's code put in sys.stdout/sys.stderr in place of the
    unbuffered streams, then exits, whatever a flush raises."""
    try:
        streams = _ChildPlan.streams
        for stream in (sys.stdout, sys.stderr):
            if streams is None or (stream is not streams[0] and stream is not streams[1]):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001 - that output is lost; the status is not
                    pass
    finally:
        os._exit(code)


def _pidfd(pid: int) -> int | None:
    """A pidfd for the child (readable once it has exited), where the kernel has them."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Linux < 5.3, or a sandbox without pidfd_open
        return None


def _collect(pid: int, pipes: _Pipes, timeout: float, started: float, owned: list[bool]) -> ChildOutcome:
    """Read the pipes and reap the child before the deadline; kill the group after it.
    Sets owned[0] once its cleanup (the group killed, the child reaped, the pipes
    closed) is certain to run.

    With a pidfd, the wait ends the moment the child exits; without one, the child's
    exit is polled between reads (every 1 ms once its pipes are closed)."""
    deadline = started + timeout
    buffers = {pipes.result_r: bytearray(), pipes.report_r: bytearray(),
               pipes.out_r: bytearray(), pipes.err_r: bytearray()}
    status: int | None = None
    timed_out = False
    exited: int | None = None
    try:
        owned[0] = True
        exited = _pidfd(pid)
        poller = select.poll()
        for fd in buffers:
            poller.register(fd, select.POLLIN)
        open_fds = len(buffers)
        if exited is not None:
            poller.register(exited, select.POLLIN)
        while status is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if open_fds == 0 and exited is None:
                remaining = min(remaining, 0.001)  # pipes closed: poll for the exit
            elif exited is None:
                remaining = min(remaining, 0.5)
            gone = False
            for fd, _ in poller.poll(math.ceil(remaining * 1000)):
                if fd == exited:
                    gone = True
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    open_fds -= 1
                elif fd in (pipes.out_r, pipes.err_r) and len(buffers[fd]) >= OUTPUT_LIMIT:
                    continue
                else:
                    buffers[fd] += chunk
            reaped, raw = os.waitpid(pid, 0 if gone else os.WNOHANG)  # gone: returns at once
            if reaped:
                status = raw
                _drain(buffers, (pipes.out_r, pipes.err_r))
    finally:
        if exited is not None:
            os.close(exited)
        _kill_group(pid)
        if status is None:
            _, status = os.waitpid(pid, 0)
        for fd in buffers:
            os.close(fd)
    return _outcome(pid, status, buffers, pipes, time.monotonic() - started, timed_out, timeout)


def _drain(buffers: dict[int, bytearray], limited: tuple[int, ...]) -> None:
    """After the child is reaped, take what is already in the pipes without waiting
    for grandchildren that may still hold the write ends."""
    for fd, buffer in buffers.items():
        try:
            os.set_blocking(fd, False)
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk[: max(0, OUTPUT_LIMIT - len(buffer))] if fd in limited else chunk
        except BlockingIOError:
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _outcome(pid: int, status: int, buffers: dict[int, bytearray], pipes: _Pipes,
             duration: float, timed_out: bool, timeout: float) -> ChildOutcome:
    fault = _read_report(bytes(buffers[pipes.report_r]))
    value: Any = None
    exception: ChildException | None = None
    exception_object: BaseException | None = None
    if buffers[pipes.result_r]:
        try:
            payload = pickle.loads(bytes(buffers[pipes.result_r]))
        except Exception as error:  # noqa: BLE001 - a truncated result is itself a finding
            exception = ChildException("UnreadableResult", f"the child's result did not unpickle: {error}", "")
        else:
            if payload[0] == "value":
                value = payload[1]
            else:
                exception = payload[1]
                exception_object = payload[2] if len(payload) > 2 else None
    return ChildOutcome(
        pid=pid,
        exit_status=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        fault=fault,
        value=value,
        exception=exception,
        stdout=bytes(buffers[pipes.out_r]),
        stderr=bytes(buffers[pipes.err_r]),
        duration=duration,
        timed_out=timed_out,
        timeout=timeout,
        exception_object=exception_object,
    )


def _read_report(data: bytes) -> Fault | None:
    size = ctypes.sizeof(native.ChildReport)
    if len(data) < size:
        return None
    report = native.ChildReport.from_buffer_copy(data[:size])
    if report.magic != native.CHILD_REPORT_MAGIC:
        return None
    return Fault(report.signo, report.code, report.addr)


# --- public API ------------------------------------------------------------------

def run_in_child(fn: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT,
                 **kwargs: Any) -> ChildOutcome:
    """Run ``fn(*args, **kwargs)`` in a forked child and describe how it ended.

    Never raises for what the child did: a crash, an exception, an exit or a
    timeout are all outcomes. Raises only for bad arguments or a failed fork.
    """
    if not callable(fn):
        raise TypeError(f"run_in_child: fn must be callable, got {type(fn).__name__}")
    outcome = _run_child((fn, args, kwargs), check_timeout(timeout, "run_in_child: timeout"))
    assert isinstance(outcome, ChildOutcome)  # the child runs fn and exits inside
    return outcome


class SignalExpectationFailed(ExpectationFailed):
    """The call or block in ``expect_signal`` did not end with the expected signal."""


class _SkipBlock(Exception):
    """Raised in the parent where the ``with`` body would begin, so it never runs there."""


class SignalExpectation:
    """An expected death by signal: ``expect_signal`` without a function returns one,
    to use as ``with expect_signal(SIGSEGV, code=..., addr=...): body``.

    ``__enter__`` forks. The child runs the body, and ``__exit__`` in the child reports
    how the body ended and exits. The parent waits for the child in ``__enter__`` and
    then skips the body: a trace function raises on the first event in the ``with``
    statement's frame after ``__enter__`` returns. By the ``with`` statement's
    specification (the language reference's equivalent code) everything after
    ``__enter__`` returns, the ``as`` target's assignment included, lies inside the
    ``try`` whose handler calls ``__exit__``, so ``__exit__`` always gets that exception,
    whatever the body's code; no bytecode is read. It follows that the parent binds no
    ``as`` target: the outcome is ``.outcome`` of this object, or what the callable form
    returns.
    """

    def __init__(self, signo: int, *, code: int | None = None, addr: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(signo, bool) or not isinstance(signo, int) or not 0 < signo < signal.NSIG:
            raise ValueError(f"expect_signal: signo must be a signal number in 1..{signal.NSIG - 1}, got {signo!r}")
        self.signo = signo
        self.code = code
        self.addr = addr
        self.timeout = check_timeout(timeout, "expect_signal: timeout")
        self.outcome: ChildOutcome | None = None
        self._pipes: _Pipes | None = None
        self._in_child = False
        self._frame: FrameType | None = None
        self._saved_trace: Any = None
        self._saved_frame_trace: Any = None
        self._saved_opcodes = False

    def expectation(self) -> str:
        text = _signal_name(self.signo)
        if self.code is not None:
            text += f" ({Fault(self.signo, self.code, 0).code_name})"
        if self.addr is not None:
            text += f" at {self.addr:#x}"
        return text

    def check(self, outcome: ChildOutcome, what: str = "the block") -> ChildOutcome:
        """``outcome`` (kept as ``.outcome``) if the child died as expected; otherwise
        SignalExpectationFailed saying how it ended. ``what`` names the code that ran."""
        self.outcome = outcome
        expected, observed = self.expectation(), outcome.describe()
        if outcome.signal != self.signo:
            raise SignalExpectationFailed(f"expected {what} to die of {expected}; it {observed}"
                                          + _stderr_tail(outcome), call=what, expected=f"die of {expected}",
                                          observed=observed)
        fault = outcome.fault
        if (self.code is not None and (fault is None or fault.code != self.code)) or (
                self.addr is not None and (fault is None or fault.addr != self.addr)):
            raise SignalExpectationFailed(f"expected {expected}; the child {observed}", call=None,
                                          expected=expected, observed=f"the child {observed}")
        return outcome

    def __enter__(self) -> SignalExpectation:
        here = inspect.currentframe()
        frame = here.f_back if here is not None else None
        if frame is None:
            raise RuntimeError("expect_signal: the with-form needs frame introspection; call "
                               "expect_signal(signo, fn, *args) instead")
        outcome = _run_child(None, self.timeout)
        if isinstance(outcome, _Pipes):  # the child: it runs the block
            self._in_child = True
            self._pipes = outcome
            return self
        self.outcome = outcome
        self._frame = frame
        self._saved_trace = sys.gettrace()
        self._saved_frame_trace = frame.f_trace
        self._saved_opcodes = frame.f_trace_opcodes
        sys.settrace(_trace_no_calls)  # tracing on, so the frame's own trace function runs
        frame.f_trace = _skip_block
        frame.f_trace_opcodes = True  # a body on the with statement's line is skipped too
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self._in_child:
            try:
                assert self._pipes is not None
                _finish(self._pipes, None, exc)
            finally:
                os._exit(112)  # only if _finish itself was interrupted
        self._restore_tracing()
        if exc_type is None:  # something switched the trace function off: the body ran here
            raise RuntimeError("expect_signal: the with-body was not skipped in the parent (was tracing "
                               "taken over?); use expect_signal(signo, fn, *args) instead")
        if not issubclass(exc_type, _SkipBlock):
            return False
        assert self.outcome is not None
        try:
            self.check(self.outcome)
        except SignalExpectationFailed as failed:
            raise failed from None  # a failure, not one "during handling of _SkipBlock"
        return True

    def _restore_tracing(self) -> None:
        sys.settrace(self._saved_trace)
        if self._frame is not None:
            self._frame.f_trace = self._saved_frame_trace
            self._frame.f_trace_opcodes = self._saved_opcodes
            self._frame = None


def _trace_no_calls(frame: FrameType, event: str, arg: Any) -> None:
    return None


def _skip_block(frame: FrameType, event: str, arg: Any) -> Any:
    if event in ("line", "opcode"):
        raise _SkipBlock
    return _skip_block


@overload
def expect_signal(signo: int, /, *, code: int | None = None, addr: int | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> SignalExpectation: ...


@overload
def expect_signal(signo: int, fn: Callable[..., object], /, *args: Any, code: int | None = None,
                  addr: int | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> ChildOutcome: ...


def expect_signal(signo: int, fn: Callable[..., object] | None = None, /, *args: Any, code: int | None = None,
                  addr: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                  **kwargs: Any) -> SignalExpectation | ChildOutcome:
    """Assert that ``fn(*args, **kwargs)``, run in a forked child by ``run_in_child``, dies
    of signal ``signo``, with si_code ``code`` and si_addr ``addr`` when given; returns
    the child's ChildOutcome, or raises SignalExpectationFailed (an AssertionError)
    saying how the child ended. Like ``pytest.raises``, without ``fn`` it returns a
    context manager, SignalExpectation: ``with expect_signal(SIGSEGV): body``.
    ``code``, ``addr`` and ``timeout`` are expect_signal's own; other keywords go to fn.
    """
    expected = SignalExpectation(signo, code=code, addr=addr, timeout=timeout)
    if fn is None:
        if args or kwargs:
            raise TypeError("expect_signal: arguments given without a function to call")
        return expected
    if not callable(fn):
        raise TypeError(f"expect_signal: fn must be callable, got {type(fn).__name__}")
    what = f"{getattr(fn, '__qualname__', None) or repr(fn)}()"
    return expected.check(run_in_child(fn, *args, timeout=expected.timeout, **kwargs), what)


def _stderr_tail(outcome: ChildOutcome) -> str:
    if outcome.exception is not None:
        return "\n" + outcome.exception.traceback
    if outcome.stderr:
        return "\n--- child stderr ---\n" + outcome.stderr.decode(errors="replace")[-2000:]
    return ""
