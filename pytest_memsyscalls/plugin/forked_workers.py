"""``memsyscalls run``'s isolation: the collected tests run in worker processes forked
from the pytest process after collection, so a test that kills its process is one
failed test naming its semantic and the signal, and a new worker runs the rest.

Why not pytest-xdist, which ``run`` used before (``run -n N`` still selects it): each
xdist worker is a second interpreter that imports pytest and the plugin and collects
the whole suite again, and every test's six events travel to the controller through
execnet. That isolation cost a third of the run's CPU on the two cores the tests share
(bench/README.md has the figures). A worker forked after collection starts with what
this process has (the collected items, the environment fingerprint) and sends one
message a phase.

How:

- The work queue is one pipe of item indices, fed by this process as the workers
  drain it. A worker takes one index per 4-byte read, which a pipe serializes, so a
  fast worker takes more (as xdist's ``worksteal``). It takes the next index before it
  runs an item, so pytest knows the next item and tears fixtures down as in a session
  of its own.
- A worker sends which item it runs and which it took next, the item's reports
  (``pytest_report_to_serializable``, as xdist does) and warnings; this process
  replays them through its own hooks: the terminal, JUnit XML, the JSON report,
  ``-x`` and ``--maxfail``. Plugins that write what reports say (the terminal, the
  JSON report) are dropped in the workers. Not replayed: ``record_testsuite_property``
  (it stays in a worker's JUnit object).
- A worker that dies (``waitpid``) while it runs an item: the item fails with its
  semantic, the signal and the innermost frames (Python's faulthandler, to a file of
  the worker's), what the worker recorded is swept (``memory/records``), and a worker
  forked anew runs the item the dead one had taken next, then the rest of the queue.
  An item no worker ever announced (one died between taking and announcing it) runs
  in a new worker at the end.
- SIGINT or SIGTERM to this process: the workers get SIGTERM, which unwinds their
  tests (plugin/records.py), and the session ends as interrupted once they are gone.
  Workers ignore SIGINT, so Ctrl-C (sent to the whole process group) unwinds them
  once, through this process, not twice. A worker's own KeyboardInterrupt (a test
  raised it) interrupts the session; ``pytest.exit`` in a test ends it, as in pytest.
- Declined (pytest's own loop runs the tests here) under ``--pdb``, ``--trace`` and
  the ``--setup-*`` options, which need this process's terminal.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import pickle
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..kernel import constants as C
from ..kernel import libc
from . import records as records_plugin
from .crashes import crash_outcome, fault_trace, sweep_dead_workers
from .semantics import semantic_of

_INDEX = struct.Struct("I")
_FRAME = struct.Struct("I")  # a message's length, before its pickle
_QUEUE_CHUNK = 4096  # bytes: PIPE_BUF, so each non-blocking write of the queue is whole or refused
_REPORT_WRITERS = ("terminalreporter", "memsyscalls-report-collector")  # act in this process only
_DECLINED_FOR = ("usepdb", "trace", "setupshow", "setuponly", "setupplan")  # these need the terminal here
_INTERRUPT_GRACE = 10.0  # seconds an interrupted worker may take to unwind before it is killed
_POLL_EVERY = 0.5  # seconds between checks for a worker that died while its pipe stays open


@dataclass
class _Worker:
    """This process's view of one worker."""

    name: str
    pid: int
    reader: int  # its messages
    buffer: bytes = b""
    running: int | None = None  # the item it runs
    taken: list[int] = field(default_factory=list)  # the items it holds and has not started
    phases: set[str] = field(default_factory=set)  # the running item's reports so far
    ended: bool = False  # it said goodbye (an orderly end or an interrupt)


class ForkedWorkers:
    """The plugin ``memsyscalls run`` registers: runs the session's items in ``count``
    forked workers, replacing up to ``max_crashes`` that die."""

    def __init__(self, count: int, max_crashes: int) -> None:
        self.count = count
        self.max_crashes = max_crashes

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        option = session.config.option
        if (session.testsfailed and not option.continue_on_collection_errors) or option.collectonly \
                or not session.items or any(getattr(option, name, False) for name in _DECLINED_FOR):
            return None
        run = _Run(session, self.count, self.max_crashes)
        try:
            run.run()
        finally:
            run.close()
        if run.exit is not None:
            raise pytest.exit.Exception(*run.exit)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True


class _Run:
    """One session's workers, seen from this process."""

    def __init__(self, session: pytest.Session, count: int, max_crashes: int) -> None:
        self.session = session
        self.hook = session.config.hook
        self.count = min(count, len(session.items))
        self.max_crashes = max_crashes
        self.crashes = 0
        self.serial = 0
        self.workers: dict[int, _Worker] = {}  # by reader fd
        self.announced: set[int] = set()  # items a worker said it runs
        self.exit: tuple[str, int | None] | None = None  # a test's pytest.exit
        self.interrupting = False
        self.fault_dir = tempfile.mkdtemp(prefix="memsys-workers-")
        self.queue_r, self.queue_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.queue_w, False)
        self.unqueued = memoryview(b"".join(_INDEX.pack(index) for index in range(len(session.items))))
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)  # stop_w closed: take no more items
        self.polled = time.monotonic()

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        records_plugin.repair_interrupt_tracebacks()
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm_interrupts)
        try:
            self._feed()
            for _ in range(self.count):
                self._fork([])
            while True:
                self._receive()
                missing = sorted(set(range(len(self.session.items))) - self.announced)
                if not missing or self._stopping():
                    break
                self._fork(missing)  # taken by a worker that died before it said so
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _stopping(self) -> bool:
        return bool(self.session.shouldfail or self.session.shouldstop or self.exit is not None)

    def _stop(self) -> None:
        """The workers take no more items (those waiting for the queue see its end)."""
        for name in ("stop_w", "queue_w"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def _feed(self) -> None:
        """As much of the queue as the pipe takes now; its end once all is in."""
        while self.unqueued and self.queue_w >= 0:
            try:
                os.write(self.queue_w, self.unqueued[:_QUEUE_CHUNK])
            except BlockingIOError:
                return
            self.unqueued = self.unqueued[_QUEUE_CHUNK:]
        if self.queue_w >= 0:
            os.close(self.queue_w)
            self.queue_w = -1

    def _fork(self, first: list[int]) -> None:
        name = f"fw{self.serial}"
        self.serial += 1
        reader, writer = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            inherited = [worker.reader for worker in self.workers.values()] + [self.stop_w, self.queue_w]
            _worker_main(self.session, parent, self.queue_r, self.stop_r, writer, first,
                         [fd for fd in inherited if fd >= 0], Path(self.fault_dir) / f"fault-{name}")
        os.close(writer)
        self.workers[reader] = _Worker(name, pid, reader, taken=list(first))

    def _receive(self) -> None:
        while self.workers:
            feeding = [self.queue_w] if self.queue_w >= 0 else []
            ready, writable, _ = select.select(list(self.workers), feeding, [], _POLL_EVERY)
            if writable:
                self._feed()
            for fd in ready:
                worker = self.workers[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    self._messages(worker, chunk)
                else:
                    self._gone(worker, _wait(worker.pid))
            if time.monotonic() - self.polled >= _POLL_EVERY:  # children may hold a dead worker's pipe open
                self.polled = time.monotonic()
                for worker in list(self.workers.values()):
                    status = _exited(worker.pid)
                    if status is not None:
                        self._drain(worker)
                        self._gone(worker, status)
            if self._stopping():
                self._stop()

    def _messages(self, worker: _Worker, chunk: bytes) -> None:
        worker.buffer += chunk
        while len(worker.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(worker.buffer)
            if len(worker.buffer) < _FRAME.size + size:
                return
            try:
                message = pickle.loads(worker.buffer[_FRAME.size:_FRAME.size + size])
            except Exception as error:  # noqa: BLE001 - whatever unpickling raises, named
                raise RuntimeError(f"pytest-memsyscalls: a message from worker {worker.name} could not be "
                                   f"read: {error!r}") from None
            worker.buffer = worker.buffer[_FRAME.size + size:]
            self._message(worker, message)

    def _message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind, items = message[0], self.session.items
        if kind == "run":
            worker.running, worker.taken, worker.phases = message[1], message[2], set()
            self.announced.update([message[1], *message[2]])
            item = items[message[1]]
            self.hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        elif kind == "report":
            report = self.hook.pytest_report_from_serializable(config=self.session.config, data=message[1])
            worker.phases.add(report.when)
            self.hook.pytest_runtest_logreport(report=report)
        elif kind == "done":
            item = items[message[1]]
            worker.running = None
            self.hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        elif kind == "warning":
            self.hook.pytest_warning_recorded.call_historic(kwargs=_warning_from(*message[1:]))
        elif kind == "exit":
            self.exit = self.exit or (message[1], message[2])
        elif kind == "teardown-failed":
            warning = pytest.PytestWarning(f"pytest-memsyscalls: worker {worker.name}'s last teardown (after the "
                                           f"run was told to stop) failed:\n{message[1]}")
            self.hook.pytest_warning_recorded.call_historic(kwargs={
                "warning_message": warnings.WarningMessage(warning, type(warning), __file__, 0),
                "when": "runtest", "nodeid": "", "location": None})
        elif kind == "end":
            worker.ended = True
            if message[1] and not self.interrupting:
                raise KeyboardInterrupt(f"worker {worker.name} was interrupted")
        elif kind == "error":
            raise RuntimeError(f"pytest-memsyscalls: worker {worker.name} failed:\n{message[1]}")

    def _drain(self, worker: _Worker) -> None:
        os.set_blocking(worker.reader, False)
        while True:
            try:
                chunk = os.read(worker.reader, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._messages(worker, chunk)

    def _gone(self, worker: _Worker, status: int) -> None:
        """A worker's pipe is closed, or the worker has exited: a death unless it said goodbye."""
        del self.workers[worker.reader]
        os.close(worker.reader)
        if worker.ended:
            return
        self.crashes += 1
        if worker.running is not None and "teardown" not in worker.phases:  # else it died between tests
            self._crashed(worker, status)
        sweep_dead_workers()
        if self.crashes > self.max_crashes:
            raise self.session.Interrupted(f"pytest-memsyscalls: {self.crashes} workers died (at most "
                                           f"{self.max_crashes} are replaced)")
        if not self._stopping():
            self._fork(worker.taken)

    def _crashed(self, worker: _Worker, status: int) -> None:
        """The item the worker was running fails, naming what killed it."""
        assert worker.running is not None
        item = self.session.items[worker.running]
        found = semantic_of(item)
        message, properties = crash_outcome(item.nodeid, None if found is None else found.as_dict(),
                                            _death(status, Path(self.fault_dir), worker.name), worker.name)
        # "???": xdist's phase for a test whose process died, which ends the test for
        # the JSON report's collector as teardown does
        report = pytest.TestReport(item.nodeid, item.location, {name: 1 for name in item.keywords}, "failed",
                                   message, "???", user_properties=properties)  # type: ignore[arg-type]
        self.hook.pytest_runtest_logreport(report=report)
        self.hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _interrupt(self) -> None:
        """The workers unwind their tests (SIGTERM), their last reports are shown, and
        those that take too long are killed."""
        self.interrupting = True
        self._stop()
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + _INTERRUPT_GRACE
        try:
            while self.workers and time.monotonic() < deadline:
                ready, _, _ = select.select(list(self.workers), [], [], 0.2)
                for fd in ready:
                    worker = self.workers[fd]
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        try:
                            self._messages(worker, chunk)
                        except RuntimeError:  # what is left of an interrupted worker's message
                            pass
                    else:
                        self._discard(worker)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        for worker in list(self.workers.values()):  # reaped first: the sweep leaves live runs' records alone
            self._discard(worker)
        sweep_dead_workers()

    def _discard(self, worker: _Worker) -> None:
        del self.workers[worker.reader]
        os.close(worker.reader)
        _kill_and_reap(worker.pid)

    def close(self) -> None:
        """No worker outlives the session, whatever ended it; the pipes and files go."""
        for worker in list(self.workers.values()):
            self._discard(worker)
        self._stop()
        for name in ("queue_r", "stop_r"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)
        shutil.rmtree(self.fault_dir, ignore_errors=True)


# --- a worker --------------------------------------------------------------------------

def _worker_main(session: pytest.Session, parent: int, queue: int, stop: int, writer: int, first: list[int],
                 inherited: list[int], fault_file: Path) -> None:
    """Runs items until the queue is empty or this process is told to stop; never returns."""
    status = 0
    try:
        for fd in inherited:  # the other workers' pipes, the stop pipe's and the queue's write ends
            os.close(fd)
        _become_worker(session, parent, writer, fault_file)
        status = _run_items(session, queue, stop, writer, first)
    except KeyboardInterrupt:  # before the worker had its own handlers: nothing ran
        status = 2
    except BaseException:  # noqa: BLE001 - told to this process, which reports it
        status = 3
        try:
            _send(writer, ("error", traceback.format_exc()))
        except BaseException:  # noqa: BLE001 - nothing else can report it
            pass
    finally:
        os._exit(status)


def _ignore_sigint(signo: int, frame: object) -> None:
    """In a worker: Ctrl-C reaches the whole process group, and the pytest process turns
    it into one SIGTERM for each worker; the SIGINT is ignored, or a test's teardown
    would be interrupted a second time. A handler (not SIG_IGN), so that what a test
    executes gets the default disposition back."""


def _become_worker(session: pytest.Session, parent: int, writer: int, fault_file: Path) -> None:
    # SIGTERM (from this process, when it is interrupted) unwinds the worker between its
    # tests too, as plugin/records.py has it do during a test
    signal.signal(signal.SIGTERM, records_plugin.on_sigterm)
    signal.signal(signal.SIGINT, _ignore_sigint)
    libc.prctl(C.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with this process, even after kill -9
    if os.getppid() != parent:
        os._exit(1)
    fault = open(fault_file, "w", encoding="utf-8")  # noqa: SIM115 - open until the process ends
    faulthandler.enable(file=fault, all_threads=False)
    config = session.config
    manager = config.pluginmanager
    for plugin_name in _REPORT_WRITERS:
        plugin = manager.get_plugin(plugin_name)
        if plugin is not None:
            manager.unregister(plugin)
    capture = manager.get_plugin("capturemanager")
    if capture is not None:  # files of its own, not the captured output of all processes
        capture.stop_global_capturing()
        capture.start_global_capturing()
    manager.register(_Sender(config, writer), "memsyscalls-worker-sender")


def _run_items(session: pytest.Session, queue: int, stop: int, writer: int, first: list[int]) -> int:
    items = session.items
    backlog = list(first)

    def stopping() -> bool:  # this worker's own -x, or this process's
        return bool(session.shouldfail or session.shouldstop) or _told_to_stop(stop)

    def take() -> int | None:
        if stopping():
            return None
        if backlog:
            return backlog.pop(0)
        data = os.read(queue, _INDEX.size)
        return _INDEX.unpack(data)[0] if data else None

    hook = session.config.hook
    interrupted = False
    try:
        index = take()
        while index is not None:
            following = take()
            _send(writer, ("run", index, ([] if following is None else [following]) + backlog))
            hook.pytest_runtest_protocol(item=items[index], nextitem=None if following is None else items[following])
            _send(writer, ("done", index))
            index = None if following is None or stopping() else following
    except KeyboardInterrupt:
        interrupted = True
    except pytest.exit.Exception as stopped:  # a test called pytest.exit
        _send(writer, ("exit", stopped.msg, stopped.returncode))
    try:  # what the last item left to the next one (told to stop, interrupted); else nothing
        session._setupstate.teardown_exact(None)  # what pytest does at the end of a session
    except KeyboardInterrupt:
        interrupted = True
    except Exception:  # noqa: BLE001 - reported, and this worker still ends in order
        _send(writer, ("teardown-failed", traceback.format_exc()))
    records_plugin.end_records(session.config, interrupted=interrupted)
    _send(writer, ("end", interrupted))
    return 2 if interrupted else 0


def _told_to_stop(stop: int) -> bool:
    return bool(select.select([stop], [], [], 0)[0])


class _Sender:
    """In a worker: each report and warning goes to the process that forked it."""

    def __init__(self, config: pytest.Config, writer: int) -> None:
        self.config = config
        self.writer = writer

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        if not _picklable(data):  # a user property such as a lock: its repr, as JUnit XML would write
            data["user_properties"] = [(name, value if _picklable(value) else repr(value))
                                       for name, value in data.get("user_properties", [])]
        _send(self.writer, ("report", data))

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str, nodeid: str,
                                location: tuple[str, int, str] | None) -> None:
        category = warning_message.category
        _send(self.writer, ("warning", str(warning_message.message), (category.__module__, category.__qualname__),
                            warning_message.filename, warning_message.lineno, when, nodeid, location))


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - whatever pickling raises
        return False
    return True


def _warning_from(text: str, category_name: tuple[str, str], filename: str, lineno: int, when: str, nodeid: str,
                  location: tuple[str, int, str] | None) -> dict[str, Any]:
    """A worker's warning as this process's hook takes it. Its category is found by
    name: one defined where this process cannot import it (a module the test put on
    sys.path) is a UserWarning."""
    category: Any = UserWarning
    try:
        found: Any = importlib.import_module(category_name[0])
        for part in category_name[1].split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
        message: Warning = category(text)
    except Exception:  # noqa: BLE001 - not importable here, or a category that takes other arguments
        category = UserWarning
        message = UserWarning(text)
    return {"warning_message": warnings.WarningMessage(message, category, filename, lineno),
            "when": when, "nodeid": nodeid, "location": location}


# --- helpers ---------------------------------------------------------------------------

def _send(fd: int, message: tuple[Any, ...]) -> None:
    """One whole frame: SIGTERM, which unwinds a worker, waits until it is written."""
    data = pickle.dumps(message)
    frame = memoryview(_FRAME.pack(len(data)) + data)
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        while frame:
            frame = frame[os.write(fd, frame):]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)


def _sigterm_interrupts(signo: int, frame: object) -> None:
    """In this process while workers run: SIGTERM ends the session like Ctrl-C."""
    raise KeyboardInterrupt(f"signal {signo} (SIGTERM)")


def _death(status: int, fault_dir: Path, name: str) -> str:
    """What ended a worker: faulthandler's account (the signal, the innermost frames)
    where it wrote one, as under xdist (plugin/crashes.py); else its wait status."""
    traced = fault_trace(fault_dir, name)
    if traced:
        return traced
    if os.WIFSIGNALED(status):
        signo = os.WTERMSIG(status)
        try:
            return signal.Signals(signo).name
        except ValueError:
            return f"signal {signo}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended (wait status {status:#x})"


def _wait(pid: int) -> int:
    """The worker's wait status (0 where it was reaped elsewhere: SIGCHLD ignored)."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _exited(pid: int) -> int | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done else None


def _signal(pid: int, signo: int) -> None:
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass


def _kill_and_reap(pid: int) -> None:
    _signal(pid, signal.SIGKILL)
    _wait(pid)
