"""run_in_child and expect_signal: what crosses back from the child (value, exception,
output, siginfo, exit status), the deadline, the process-group kill, and that the
pytest process keeps its own state. These fork from the test process on purpose:
that is what the fixtures do in every user's suite.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_memsyscalls import Fault
from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.memory import child as child_module
from pytest_memsyscalls.memory.child import ChildFailed, ChildOutcome, SignalExpectationFailed
from pytest_memsyscalls.memory.mapping import Mapping

Runner = Callable[..., ChildOutcome]


def _dead(pid: int, timeout: float = 10.0) -> bool:
    """Whether pid has terminated, waiting up to timeout on a pidfd (no sleeps)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _big() -> bytes:
    return bytes(range(256)) * (3 << 12)  # 3 MiB: larger than a pipe and than OUTPUT_LIMIT


def test_value_is_pickled_back_whole(run_in_child: Runner) -> None:
    outcome = run_in_child(lambda: {"pid": os.getpid(), "data": _big(), "nested": [(1, 2.5, None)]})
    assert outcome.returned and outcome.exit_status == 0 and outcome.signal is None
    assert outcome.value["pid"] == outcome.pid != os.getpid()
    assert outcome.value["data"] == _big() and outcome.value["nested"] == [(1, 2.5, None)]
    assert outcome.result() is outcome.value


def test_unpicklable_value_is_described(run_in_child: Runner) -> None:
    outcome = run_in_child(lambda: (lambda: None))
    assert outcome.returned and isinstance(outcome.value, str) and "lambda" in outcome.value


def test_stdout_and_stderr_are_captured(run_in_child: Runner) -> None:
    def talk() -> None:
        print("to stdout")
        print("to stderr", file=sys.stderr)
        os.write(1, b"raw fd 1\n")

    outcome = run_in_child(talk)
    assert outcome.stdout.splitlines() == [b"to stdout", b"raw fd 1"]
    assert outcome.stderr == b"to stderr\n"


@pytest.mark.parametrize("ending", ["returns None", "returns a value", "raises"])
def test_unflushed_output_is_kept(run_in_child: Runner, ending: str) -> None:
    """The child ends in os._exit, which flushes nothing: the streams it starts with are
    unbuffered, and a buffered one that fn puts in their place is flushed for it. (A
    child returning None with its streams untouched ends in C; the others in Python.)"""
    def partial_lines() -> int:
        print("no newline", end="")
        if ending != "returns None":
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - buffered, never flushed by fn
            print("buffered", end="", file=sys.stderr)
        if ending == "raises":
            raise ValueError("after writing")
        return 0 if ending == "returns None" else 5

    outcome = run_in_child(lambda: None if partial_lines() == 0 else 5)
    assert outcome.stdout == b"no newline"
    assert outcome.stderr == (b"" if ending == "returns None" else b"buffered")
    assert (outcome.exception is not None) == (ending == "raises")


def test_a_child_exits_even_when_flushing_its_streams_raises(run_in_child: Runner,
                                                             expect_signal: Callable[..., Any]) -> None:
    """A child never runs on into pytest: not when fn leaves a stream whose flush raises
    something unexpected, and not when an expect_signal block does."""
    class FlushFails(io.StringIO):
        def flush(self) -> None:
            raise RuntimeError("flush failed")

    def replace_stdout() -> None:
        sys.stdout = FlushFails()

    assert run_in_child(replace_stdout).returned
    with pytest.raises(SignalExpectationFailed, match="RETURNED None"), expect_signal(signal.SIGSEGV):
        sys.stdout = FlushFails()


# With another thread alive (xdist's), the fork runs os.register_at_fork callbacks; an
# exception the handler raises inside one of them (logging's _releaseLock) is one CPython
# ignores and reports as unraisable: what this test checks is the children, not that.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_calls_interrupted_by_a_raising_signal_handler_leave_no_child(run_in_child: Runner) -> None:
    """Signals are blocked across the fork, so one that arrives then is handled just
    as fork_child returns, before the caller has the pid: it is stored for the caller
    before the unblocking, and the child killed and reaped. So are children whose
    wait a handler interrupts. (A SIGALRM every millisecond against 3 ms forks.)"""
    class Interrupted(Exception):
        pass

    armed = [False]

    def interrupt(signo: int, frame: object) -> None:
        if armed[0]:
            armed[0] = False  # one exception per call, always inside the try below
            raise Interrupted

    children = Path(f"/proc/self/task/{os.getpid()}/children")
    before = children.read_text()
    interrupted = 0
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        for _ in range(200):
            try:
                armed[0] = True
                run_in_child(time.sleep, 5)
                armed[0] = False
            except Interrupted:
                interrupted += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 100
    assert children.read_text() == before


def test_child_stdio_continues_short_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe write cut short by a signal returns a short count; the child's streams
    write the rest (FileIO under TextIOWrapper would drop it)."""
    read_end, write_end = os.pipe()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    stream = io.TextIOWrapper(child_module._WholeWrites(write_end), write_through=True)
    stream.write("cut short, then continued")
    monkeypatch.undo()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read() == b"cut short, then continued"


def test_output_is_kept_up_to_the_limit(run_in_child: Runner) -> None:
    outcome = run_in_child(lambda: os.write(1, _big()) and None)
    assert outcome.stdout == _big()[: child_module.OUTPUT_LIMIT]


def test_crash_reports_signal_code_and_address(run_in_child: Runner, mapped_pages: Callable[..., Mapping]) -> None:
    page = mapped_pages(1, prot=C.PROT_READ)
    outcome = run_in_child(lambda: ctypes.memset(page.addr, 1, 1))
    assert outcome.signal == signal.SIGSEGV and outcome.exit_status is None and not outcome.returned
    assert outcome.fault == Fault(signal.SIGSEGV, C.SEGV_ACCERR, page.addr)
    assert outcome.describe() == f"CRASHED with signal 11 (SIGSEGV) at {page.addr:#x} (SEGV_ACCERR)"
    with pytest.raises(ChildFailed, match="CRASHED with signal 11"):
        outcome.result()


def test_exception_crosses_back_and_is_reraised(run_in_child: Runner) -> None:
    def fail() -> None:
        raise FileNotFoundError(errno.ENOENT, "no such thing", "/x")

    outcome = run_in_child(fail)
    assert outcome.exit_status == 1 and not outcome.returned
    assert outcome.exception is not None and outcome.exception.type_name == "FileNotFoundError"
    assert "in fail" in outcome.exception.traceback
    with pytest.raises(FileNotFoundError) as caught:
        outcome.result()
    assert caught.value.errno == errno.ENOENT


def test_unpicklable_exception_becomes_child_failed(run_in_child: Runner) -> None:
    class Local(Exception):
        pass

    def fail() -> None:
        raise Local("made locally")

    outcome = run_in_child(fail)
    assert outcome.describe() == "RAISED Local: made locally"
    with pytest.raises(ChildFailed, match="RAISED Local: made locally"):
        outcome.result()


@pytest.mark.parametrize(("fn", "status"), [(lambda: os._exit(3), 3), (lambda: sys.exit(4), 4),
                                            (lambda: sys.exit(), 0), (lambda: sys.exit(256 + 7), 7),
                                            (lambda: sys.exit(2**70), 255), (lambda: sys.exit("why"), 1)])
def test_exit_status(run_in_child: Runner, fn: Callable[[], None], status: int) -> None:
    outcome = run_in_child(fn)
    assert outcome.exit_status == status and outcome.signal is None and outcome.exception is None


def _grandchild_then(block: bool) -> Callable[[int], int]:
    def run(report_fd: int) -> int:
        r, _w = os.pipe()  # _w stays open: the grandchild's read never returns
        pid = os.fork()
        if pid == 0:
            os.read(r, 1)  # never written: lives until killed
            os._exit(0)
        os.write(report_fd, pid.to_bytes(4, "little"))
        if block:
            os.read(r, 1)
        return pid
    return run


@pytest.mark.parametrize("block", [False, True], ids=["after-return", "after-timeout"])
def test_process_group_is_killed(run_in_child: Runner, block: bool) -> None:
    r, w = os.pipe()
    try:
        outcome = run_in_child(_grandchild_then(block), w, timeout=0.5 if block else 30)
        grandchild = int.from_bytes(os.read(r, 4), "little")
    finally:
        os.close(r)
        os.close(w)
    assert outcome.timed_out is block
    if block:
        assert outcome.describe() == "TIMED OUT after 0.5 s (killed with its process group)"
        assert outcome.signal == signal.SIGKILL and not outcome.returned
    else:
        assert outcome.value == grandchild
    assert _dead(grandchild)


def test_timeout_without_pidfd(run_in_child: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pidfd_open is missing (old kernels, some sandboxes) the exit is polled."""
    monkeypatch.setattr(child_module, "_pidfd", lambda pid: None)
    assert run_in_child(lambda: 7).value == 7
    assert run_in_child(lambda: os.read(os.pipe()[0], 1), timeout=0.3).timed_out


def test_sigint_and_sigterm_kill_the_child(run_in_child: Runner) -> None:
    """The pytest process turns SIGINT into KeyboardInterrupt; a child must die of it,
    and the parent's handler stays what it was (default_int_handler, or SIG_IGN when
    the session was started in the background by a non-interactive shell)."""
    handler = signal.getsignal(signal.SIGINT)
    for signo in (signal.SIGINT, signal.SIGTERM):
        outcome = run_in_child(os.kill, 0, signo)
        assert outcome.signal == signo and outcome.exception is None
    assert signal.getsignal(signal.SIGINT) is handler


def test_child_makes_no_core_files_and_changes_stay_there(run_in_child: Runner) -> None:
    before = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    streams = (sys.stdout, sys.stderr)

    def change() -> tuple[int, int]:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        return resource.getrlimit(resource.RLIMIT_CORE)

    outcome = run_in_child(change)
    assert outcome.value[0] == 0
    assert resource.getrlimit(resource.RLIMIT_MEMLOCK) == before
    assert (sys.stdout, sys.stderr) == streams  # the child's stdio swap stayed in the child


@pytest.mark.parametrize("soft", ["zero", "one page", "the hard limit"])
def test_child_core_limit_is_zero_whatever_the_parents(run_in_child: Runner, soft: str) -> None:
    """An expected crash must not write a core file: the child's soft RLIMIT_CORE is 0
    and its hard limit the parent's, unlimited included (the resource module's -1)."""
    saved = resource.getrlimit(resource.RLIMIT_CORE)
    hard = saved[1]
    page = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_CORE, ({"zero": 0, "one page": page, "the hard limit": hard}[soft], hard))
    try:
        assert run_in_child(resource.getrlimit, resource.RLIMIT_CORE).value == (0, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, saved)


def test_forked_children_are_recorded_for_the_leak_guard(run_in_child: Runner) -> None:
    outcome = run_in_child(int)
    assert child_module.forked_children[-1][1] == outcome.pid


def test_outcome_pickles(run_in_child: Runner) -> None:
    outcome = run_in_child(lambda: 5)
    assert pickle.loads(pickle.dumps(outcome)).value == 5


def test_expect_signal_never_runs_the_block_in_the_parent(expect_signal: Callable[..., Any],
                                                           mapped_pages: Callable[..., Mapping]) -> None:
    page = mapped_pages(1, prot=C.PROT_NONE)
    ran_here: list[int] = []
    expected = expect_signal(signal.SIGSEGV, code=C.SEGV_ACCERR, addr=page.addr)
    with expected:
        ran_here.append(os.getpid())
        ctypes.string_at(page.addr, 1)
    assert ran_here == []
    assert expected.outcome.fault == Fault(signal.SIGSEGV, C.SEGV_ACCERR, page.addr)


def test_expect_signal_skips_every_shape_of_block_in_the_parent(expect_signal: Callable[..., Any],
                                                                mapped_pages: Callable[..., Mapping]) -> None:
    """The parent skips from the first instruction after __enter__, inside the with
    statement's try by its specification: a body on the with line, an empty body, an
    as target (bound only in the child) and a second context manager are all skipped,
    and the trace function in force before (none, or a coverage tool's) is back after."""
    page = mapped_pages(1, prot=C.PROT_NONE)
    ran_here: list[str] = []
    before = sys.gettrace()
    with expect_signal(signal.SIGSEGV): ran_here.append("one line"); ctypes.string_at(page.addr, 1)  # noqa: E701, E702
    with pytest.raises(SignalExpectationFailed, match="RETURNED None"), expect_signal(signal.SIGSEGV):
        pass
    with expect_signal(signal.SIGSEGV) as target:
        ran_here.append(f"as {target!r}")
        ctypes.string_at(page.addr, 1)
    assert "target" not in locals()  # the assignment to the target is part of what is skipped
    with expect_signal(signal.SIGSEGV), open(os.devnull) as ignored:
        ran_here.append(f"second manager {ignored}")
        ctypes.string_at(page.addr, 1)
    assert ran_here == []
    assert sys.gettrace() is before


def test_expect_signal_calls_fn_in_a_child(expect_signal: Callable[..., Any],
                                           mapped_pages: Callable[..., Mapping]) -> None:
    """The callable form forks through run_in_child, passes fn its arguments (keywords
    other than code, addr and timeout included) and returns the outcome."""
    page = mapped_pages(1, prot=C.PROT_READ)

    def store(addr: int, *, value: int) -> None:
        ctypes.memset(addr, value, 1)

    outcome = expect_signal(signal.SIGSEGV, store, page.addr, value=7, code=C.SEGV_ACCERR, addr=page.addr)
    assert isinstance(outcome, ChildOutcome) and outcome.pid != os.getpid()
    assert outcome.fault == Fault(signal.SIGSEGV, C.SEGV_ACCERR, page.addr)
    assert child_module.forked_children[-1][1] == outcome.pid
    assert expect_signal(signal.SIGABRT, os.abort).signal == signal.SIGABRT


@pytest.mark.parametrize(("fn", "args", "message"), [
    (lambda: None, (), r"^expected <lambda>\(\) to die of SIGSEGV \(SEGV_MAPERR\) at 0x10; it RETURNED None$"),
    (os.abort, (), r"^expected abort\(\) to die of SIGSEGV \(SEGV_MAPERR\) at 0x10; it CRASHED with signal 6 "
                   r"\(SIGABRT\) at 0x[0-9a-f]+ \(SI_TKILL\)$"),
    (ctypes.string_at, (8, 1), r"^expected SIGSEGV \(SEGV_MAPERR\) at 0x10; the child CRASHED with signal 11 "
                               r"\(SIGSEGV\) at 0x8 \(SEGV_MAPERR\)$"),
    (int, ("x",), r"^expected int\(\) to die of SIGSEGV \(SEGV_MAPERR\) at 0x10; it RAISED ValueError: "),
])
def test_expect_signal_callable_form_failures(expect_signal: Callable[..., Any], fn: Callable[..., Any],
                                              args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(SignalExpectationFailed, match=message):
        expect_signal(signal.SIGSEGV, fn, *args, code=C.SEGV_MAPERR, addr=0x10)


def test_expect_signal_callable_form_rejects_bad_input(expect_signal: Callable[..., Any]) -> None:
    last_fork = child_module.forked_children[-1]
    with pytest.raises(TypeError, match="expect_signal: fn must be callable, got int"):
        expect_signal(signal.SIGSEGV, 42)
    with pytest.raises(TypeError, match="arguments given without a function"):
        expect_signal(signal.SIGSEGV, None, 1)
    with pytest.raises(ValueError, match="expect_signal: signo"):
        expect_signal(0, os.abort)
    assert child_module.forked_children[-1] == last_fork


@pytest.mark.parametrize("wrong", ["signal", "code", "addr", "no-crash"])
def test_expect_signal_fails_on_a_different_ending(expect_signal: Callable[..., Any],
                                                   mapped_pages: Callable[..., Mapping], wrong: str) -> None:
    page = mapped_pages(1, prot=C.PROT_NONE)
    expected = {"signo": signal.SIGSEGV, "code": C.SEGV_ACCERR, "addr": page.addr}
    if wrong == "signal":
        expected["signo"] = signal.SIGBUS
    elif wrong == "code":
        expected["code"] = C.SEGV_MAPERR
    elif wrong == "addr":
        expected["addr"] = page.addr + 8
    signo = expected.pop("signo")
    with pytest.raises(SignalExpectationFailed, match=r"SIGSEGV|RETURNED"), expect_signal(signo, **expected):
        if wrong != "no-crash":
            ctypes.string_at(page.addr, 1)


def test_child_records_its_own_group_before_running(run_in_child: Runner) -> None:
    """The sweep after a kill -9 of pytest finds a run_in_child group by its record line,
    which the child appends itself before its function runs (so even a child that never
    returns is recorded)."""
    from pytest_memsyscalls.memory import records

    recorder = records.active()
    if recorder is None:
        pytest.skip("needs:records (this session keeps no record file)")

    def my_group_lines_and_starttime() -> tuple[list[str], str | None]:
        me = os.getpid()
        with open(recorder.path) as handle:
            return [line for line in handle if line.startswith(f"group {me} ")], records.starttime(me)

    outcome = run_in_child(my_group_lines_and_starttime)
    assert outcome.returned, outcome.describe()
    lines, started = outcome.value
    assert lines == [f"group {outcome.pid} {started}\n"]


AT_FORK_CALLBACKS = """
import ctypes, os, signal, sys, threading
from pytest_memsyscalls.memory.child import run_in_child

ran = []
def after_in_child():
    ran.append("after_in_child")
    print("said after_in_child")

os.register_at_fork(before=lambda: ran.append("before"), after_in_parent=lambda: ran.append("after_in_parent"),
                    after_in_child=after_in_child)

def callbacks_ran():
    return list(ran)

def crash():
    ctypes.string_at(4096, 1)  # below mmap_min_addr: never mapped

def both():
    ran.clear()
    outcome = run_in_child(crash)
    listed = run_in_child(callbacks_ran)
    return listed.value, listed.stdout, ran.count("after_in_parent"), (outcome.signal, tuple(outcome.fault))

alone = both()
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
try:
    with_a_thread = both()
finally:
    stop.set()
    thread.join()
import asyncio
with_asyncio = both()
print(repr((alone, with_a_thread, with_asyncio)))
"""


def test_at_fork_callbacks_run_only_where_os_fork_bookkeeping_is_needed() -> None:
    """With one thread and no asyncio the child is forked without os.fork()'s rebuilding
    of the interpreter's locks (there is no lost thread to rebuild them for), and the
    os.register_at_fork callbacks run neither in the child nor around the fork in the
    parent. With another thread alive, or asyncio imported (its callback resets the
    child's event loop), they run as with os.fork(), in the child once its output is
    captured. Every child reports the same fault.
    A fresh interpreter, because a registered callback cannot be unregistered."""
    done = subprocess.run([sys.executable, "-c", AT_FORK_CALLBACKS], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    segv = (int(signal.SIGSEGV), (int(signal.SIGSEGV), C.SEGV_MAPERR, 4096))
    # the second child sees the first fork's parent-side callbacks, then its own two; what
    # its callback prints is captured with the child's output
    bookkept = (["before", "after_in_parent", "before", "after_in_child"], b"said after_in_child\n", 2, segv)
    assert done.stdout.strip() == repr((([], b"", 0, segv), bookkept, bookkept))


def test_child_starts_with_the_callers_signal_mask(run_in_child: Runner) -> None:
    """fork_child blocks asynchronous signals across fork(); the child (and the
    parent) get the caller's mask back, including what the caller had blocked."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert run_in_child(signal.pthread_sigmask, signal.SIG_BLOCK, set()).value == mask
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})


@pytest.mark.parametrize(("close_fds", "reset_signals", "core_hard", "error"), [
    ((2**70,), (), None, OverflowError), ((-1,), (), None, ValueError), (tuple(range(3, 12)), (), None, ValueError),
    ((), (0,), None, ValueError), ((), (signal.NSIG,), None, ValueError), (("3",), (), None, TypeError),
    ((), (), -2, ValueError), ((), (), "0", TypeError)])
def test_fork_child_rejects_a_bad_plan_before_forking(close_fds: tuple[Any, ...], reset_signals: tuple[Any, ...],
                                                      core_hard: Any, error: type[Exception]) -> None:
    """The child's set-up is converted to C ints in the parent: a bad one raises there,
    instead of failing in a child that has already been forked."""
    from pytest_memsyscalls.kernel import _probe

    children = Path(f"/proc/self/task/{os.getpid()}/children")  # zombies included
    before = children.read_text()
    forked = [0]
    with pytest.raises(error):
        _probe.fork_child(-1, -1, -1, -1, close_fds, reset_signals, core_hard, 0, -1, (sys.stdout, sys.stderr),
                          None, forked)
    assert children.read_text() == before and forked == [0]


def test_a_failed_signal_expectation_carries_its_parts() -> None:
    """The report reads expected and observed from the exception (ExpectationFailed), not its message."""
    from pytest_memsyscalls import ExpectationFailed, expect_signal

    with pytest.raises(ExpectationFailed) as caught:
        expect_signal(signal.SIGSEGV, int, code=C.SEGV_MAPERR)
    assert caught.value.expected == "die of SIGSEGV (SEGV_MAPERR)"
    assert caught.value.observed.startswith("RETURNED"), caught.value.observed
    assert caught.value.predicted().endswith("should die of SIGSEGV (SEGV_MAPERR)")
