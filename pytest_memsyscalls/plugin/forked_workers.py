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

- The work queue is one pipe holding every item's index, written before the first
  fork. A worker takes one index per 4-byte read, which a pipe serializes, so a fast
  worker takes more (as xdist's ``worksteal``). It takes the next index before it
  runs an item, so pytest knows the next item and tears fixtures down as in a session
  of its own.
- A worker sends which item it runs and which it took next, the item's reports
  (``pytest_report_to_serializable``, as xdist does) and warnings; this process
  replays them through its own hooks: the terminal, JUnit XML, the JSON report,
  ``-x`` and ``--maxfail``. Plugins that write what reports say (the terminal, the
  JSON report) are dropped in the workers.
- A worker that dies (``waitpid``) while it runs an item: the item fails with its
  semantic, the signal and the innermost frames (Python's faulthandler, to a file of
  the worker's), what the worker recorded is swept (``memory/records``), and a worker
  forked anew runs the item the dead one had taken next, then the rest of the queue.
- SIGINT or SIGTERM to this process: the workers get SIGTERM, which unwinds their
  tests (plugin/records.py), and the session ends as interrupted once they are gone.
"""

from __future__ import annotations

import faulthandler
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
from ..report import junit
from . import records as records_plugin
from .crashes import fault_trace
from .semantics import semantic_of

_INDEX = struct.Struct("I")
_FRAME = struct.Struct("I")  # a message's length, before its pickle
_REPORT_WRITERS = ("terminalreporter", "memsyscalls-report-collector")  # act in this process only
_INTERRUPT_GRACE = 10.0  # seconds an interrupted worker may take to unwind before it is killed


@dataclass
class _Worker:
    """This process's view of one worker."""

    name: str
    pid: int
    reader: int  # its messages
    buffer: bytes = b""
    running: int | None = None  # the item it runs
    taken: int | None = None  # the item it took next
    phases: set[str] = field(default_factory=set)  # the running item's reports so far
    ended: bool = False  # it said goodbye (an orderly end or an interrupt)


class ForkedWorkers:
    """The plugin ``memsyscalls run`` registers: runs the session's items in ``count``
    forked workers, replacing up to ``max_crashes`` that die."""

    def __init__(self, count: int, max_crashes: int) -> None:
        self.count = count
        self.max_crashes = max_crashes
        self.crashes = 0
        self.workers: dict[int, _Worker] = {}  # by reader fd
        self.serial = 0
        self.fault_dir = ""
        self.queue = -1  # the queue's read end, kept for workers forked later
        self.stop_w = -1  # closed to tell the workers to take no more items
        self.stop_r = -1

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """Declines (pytest's own loop runs) where there is nothing to distribute, or a
        debugger needs the terminal."""
        option = session.config.option
        if (session.testsfailed and not option.continue_on_collection_errors) or option.collectonly \
                or not session.items or getattr(option, "usepdb", False) or getattr(option, "trace", False):
            return None
        self.fault_dir = tempfile.mkdtemp(prefix="memsys-workers-")
        try:
            self._run(session)
        finally:
            shutil.rmtree(self.fault_dir, ignore_errors=True)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    # --- this process ------------------------------------------------------------------

    def _run(self, session: pytest.Session) -> None:
        queue_r, queue_w = os.pipe2(os.O_CLOEXEC)
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.queue = queue_r
        try:
            _write_all(queue_w, b"".join(_INDEX.pack(index) for index in range(len(session.items))))
        finally:
            os.close(queue_w)
        records_plugin.repair_interrupt_tracebacks()
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm_interrupts)
        try:
            for _ in range(min(self.count, len(session.items))):
                self._fork(session, first=None)
            self._receive(session)
        except KeyboardInterrupt:
            self._interrupt(session)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            for worker in list(self.workers.values()):  # an error here: no worker outlives the session
                _kill_and_reap(worker.pid)
                os.close(worker.reader)
            self.workers.clear()
            for fd in (self.queue, self.stop_r, self.stop_w):
                if fd >= 0:
                    os.close(fd)
            self.queue = self.stop_r = self.stop_w = -1

    def _fork(self, session: pytest.Session, first: int | None) -> None:
        name = f"fw{self.serial}"
        self.serial += 1
        reader, writer = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(reader)
            _worker_main(session, name, parent, self.queue, self.stop_r, writer, first,
                         [worker.reader for worker in self.workers.values()] + [self.stop_w],
                         Path(self.fault_dir) / f"fault-{name}")
        os.close(writer)
        self.workers[reader] = _Worker(name, pid, reader, taken=first)

    def _receive(self, session: pytest.Session) -> None:
        while self.workers:
            ready, _, _ = select.select(list(self.workers), [], [], 0.5)
            for fd in ready:
                worker = self.workers[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    self._messages(session, worker, chunk)
                else:
                    self._gone(session, worker)
            if not ready:  # a worker whose children keep its pipe open past its death
                for worker in list(self.workers.values()):
                    status = _exited(worker.pid)
                    if status is not None:
                        self._drain(session, worker)
                        self._gone(session, worker, status)
            if (session.shouldfail or session.shouldstop) and self.stop_w >= 0:
                os.close(self.stop_w)
                self.stop_w = -1

    def _messages(self, session: pytest.Session, worker: _Worker, chunk: bytes) -> None:
        worker.buffer += chunk
        hook = session.config.hook
        while len(worker.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(worker.buffer)
            if len(worker.buffer) < _FRAME.size + size:
                return
            message = pickle.loads(worker.buffer[_FRAME.size:_FRAME.size + size])
            worker.buffer = worker.buffer[_FRAME.size + size:]
            kind = message[0]
            if kind == "run":
                worker.running, worker.taken, worker.phases = message[1], message[2], set()
                item = session.items[message[1]]
                hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            elif kind == "report":
                report = hook.pytest_report_from_serializable(config=session.config, data=message[1])
                worker.phases.add(report.when)
                hook.pytest_runtest_logreport(report=report)
            elif kind == "done":
                item = session.items[message[1]]
                worker.running = None
                hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            elif kind == "warning":
                hook.pytest_warning_recorded.call_historic(kwargs=_warning_from(*message[1:]))
            elif kind == "end":
                worker.ended = True
            elif kind == "error":
                raise RuntimeError(f"pytest-memsyscalls: worker {worker.name} failed:\n{message[1]}")

    def _drain(self, session: pytest.Session, worker: _Worker) -> None:
        os.set_blocking(worker.reader, False)
        while True:
            try:
                chunk = os.read(worker.reader, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._messages(session, worker, chunk)

    def _gone(self, session: pytest.Session, worker: _Worker, status: int | None = None) -> None:
        """A worker's pipe is closed (or the worker has exited, ``status``): a death
        unless it said goodbye."""
        del self.workers[worker.reader]
        os.close(worker.reader)
        if status is None:
            status = os.waitpid(worker.pid, 0)[1]
        if worker.ended:
            return
        self.crashes += 1
        if worker.running is not None and "teardown" not in worker.phases:  # else it died between tests
            self._crashed(session, worker, status)
        _sweep_records()
        if self.crashes > self.max_crashes:
            raise session.Interrupted(f"pytest-memsyscalls: {self.crashes} workers died (at most "
                                      f"{self.max_crashes} are replaced)")
        if not (session.shouldfail or session.shouldstop):
            self._fork(session, first=worker.taken)

    def _crashed(self, session: pytest.Session, worker: _Worker, status: int) -> None:
        """The item the worker was running fails, naming what killed it."""
        assert worker.running is not None
        item = session.items[worker.running]
        how = _death(status, Path(self.fault_dir), worker.name)
        found = semantic_of(item)
        what = f"semantic {found.id}: " if found else ""
        message = (f"{what}{item.nodeid} killed its test process ({how}); "
                   f"the run went on in a new process (worker {worker.name} replaced)")
        properties: list[tuple[str, object]] = []
        if found:
            result = {"outcome": "failed", "phase": "call", "reason": message, "expected": None, "observed": None}
            properties.extend(junit.properties(found.as_dict(), result))
        # "???": xdist's phase for a test whose process died, which ends the test for
        # the JSON report's collector as teardown does
        report = pytest.TestReport(item.nodeid, item.location, {name: 1 for name in item.keywords}, "failed",
                                   message, "???", user_properties=properties)  # type: ignore[arg-type]
        hook = session.config.hook
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _interrupt(self, session: pytest.Session) -> None:
        """The workers unwind their tests (SIGTERM), their last reports are shown, and
        those that take too long are killed."""
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + _INTERRUPT_GRACE
        while self.workers and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select(list(self.workers), [], [], 0.2)
                for fd in ready:
                    worker = self.workers[fd]
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        self._messages(session, worker, chunk)
                    else:
                        del self.workers[fd]
                        os.close(fd)
                        _kill_and_reap(worker.pid)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                break
        for worker in self.workers.values():  # reaped first: the sweep leaves live runs' records alone
            _kill_and_reap(worker.pid)
            os.close(worker.reader)
        self.workers.clear()
        _sweep_records()


# --- a worker --------------------------------------------------------------------------

def _worker_main(session: pytest.Session, name: str, parent: int, queue: int, stop: int, writer: int,
                 first: int | None, inherited: list[int], fault_file: Path) -> None:
    """Runs items until the queue is empty or this process is told to stop; never returns."""
    status = 0
    try:
        for fd in inherited:  # the other workers' pipes and the stop pipe's write end
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


def _become_worker(session: pytest.Session, parent: int, writer: int, fault_file: Path) -> None:
    # SIGTERM (from this process, when it is interrupted) unwinds the worker between its
    # tests too, as plugin/records.py has it do during a test
    signal.signal(signal.SIGTERM, records_plugin.on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


def _run_items(session: pytest.Session, queue: int, stop: int, writer: int, first: int | None) -> int:
    items = session.items

    def take() -> int | None:
        if _told_to_stop(stop):
            return None
        data = os.read(queue, _INDEX.size)
        return _INDEX.unpack(data)[0] if data else None

    hook = session.config.hook
    interrupted = False
    try:
        index = first if first is not None else take()
        while index is not None:
            following = take()
            _send(writer, ("run", index, following))
            hook.pytest_runtest_protocol(item=items[index], nextitem=None if following is None else items[following])
            _send(writer, ("done", index))
            index = following if following is None or not _told_to_stop(stop) else None
    except KeyboardInterrupt:
        interrupted = True
    try:  # what the last item left to the next one (told to stop, interrupted); else nothing
        session._setupstate.teardown_exact(None)  # what pytest does at the end of a session
    except KeyboardInterrupt:
        interrupted = True
    records_plugin.end_records(session.config, interrupted=interrupted)
    _send(writer, ("end",))
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
        _send(self.writer, ("report", data))

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str, nodeid: str,
                                location: tuple[str, int, str] | None) -> None:
        category = warning_message.category
        try:
            pickle.dumps(category)
        except Exception:  # noqa: BLE001 - a class defined where no one can import it
            category = UserWarning
        _send(self.writer, ("warning", str(warning_message.message), category, warning_message.filename,
                            warning_message.lineno, when, nodeid, location))


def _warning_from(text: str, category: type[Warning], filename: str, lineno: int, when: str, nodeid: str,
                  location: tuple[str, int, str] | None) -> dict[str, Any]:
    try:
        message: Warning = category(text)
    except Exception:  # noqa: BLE001 - a category that takes other arguments
        message, category = UserWarning(text), UserWarning
    return {"warning_message": warnings.WarningMessage(message, category, filename, lineno),
            "when": when, "nodeid": nodeid, "location": location}


# --- helpers ---------------------------------------------------------------------------

def _send(fd: int, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message)
    _write_all(fd, _FRAME.pack(len(data)) + data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _sweep_records() -> None:
    """What dead workers recorded and left: reclaimed now, not at the next session."""
    from ..memory import records

    try:
        records.sweep()
    except (OSError, records.UnsafeDirectory):
        pass

