"""A test that kills its process is one failed test, not a lost run.

Why: the suite runs where the kernel may be wrong, and a kernel that maps in the wrong
place or acts on only part of a range can make a direct access crash the interpreter
(SIGSEGV, SIGBUS) or abort it. pytest-xdist already survives that: its controller sees
the worker die, reports the test it was running as failed and starts a new worker for
the rest (``memsyscalls run -n N`` runs the suite in xdist workers; by default ``run`` has
workers of its own, plugin/forked_workers.py, which say the same). What xdist cannot
say is *what* died and *of what*: its report reads "worker 'gw0' crashed while running
'test_x.py::test_y'". This module adds both:

- each worker writes Python's faulthandler output (the fatal signal, the stack) to a
  file of its own, and a map of its tests to their semantics;
- when a worker dies, the controller turns xdist's crash report into the test's outcome:
  failed, with the semantic and the signal named, in the terminal, the JUnit properties
  and the JSON report; and it sweeps what the dead worker recorded (SysV segments,
  /dev/shm names, process groups: ``memory/records``).

PYTEST_DONT_REWRITE: loaded into every pytest session (plugin/activation.py says why).
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

from ..report import junit
from .semantics import semantic_of

_DIR_KEY = "memsys_crash_dir"
# Set by `memsyscalls run` (inherited by the xdist workers of `run -n N`):
# only then does this module act, so another project's `pytest -n 2` keeps xdist's own
# crash reports and its faulthandler output on stderr.
ENABLE_VARIABLE = "MEMSYS_CRASH_REPORTS"


def enabled() -> bool:
    return os.environ.get(ENABLE_VARIABLE) == "1"
_FAULT_FILE: list[IO[str]] = []  # the worker's open faulthandler file (kept open for the handler)

# faulthandler's first line: "Fatal Python error: Segmentation fault"
_FATAL = re.compile(r"Fatal Python error: (?P<what>[^\n]+)")
_FATAL_SIGNALS = {"Segmentation fault": "SIGSEGV", "Bus error": "SIGBUS", "Aborted": "SIGABRT",
                  "Floating-point exception": "SIGFPE", "Floating point exception": "SIGFPE",
                  "Illegal instruction": "SIGILL"}


def crash_dir(config: pytest.Config) -> Path | None:
    """Where this session's workers leave their fault output (None outside xdist)."""
    found = getattr(config, "workerinput", {}).get(_DIR_KEY) or config.stash.get(_CONTROLLER_DIR, None)
    return None if found is None else Path(found)


_CONTROLLER_DIR = pytest.StashKey[str]()


class CrashReports:
    """The controller's side (registered only when xdist distributes the session)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.directory = tempfile.mkdtemp(prefix="memsys-crashes-")
        config.stash[_CONTROLLER_DIR] = self.directory

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_DIR_KEY] = self.directory
        tolerate_a_dead_worker(node)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        worker = getattr(getattr(report, "node", None), "gateway", None)
        worker_id = getattr(worker, "id", "?")
        how = describe_death(Path(self.directory), worker_id)
        semantic = _semantics(Path(self.directory)).get(crashitem)
        report.longrepr, properties = crash_outcome(crashitem, semantic, how, worker_id)
        report.user_properties.extend(properties)
        sweep_dead_workers()

    def pytest_unconfigure(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def crash_outcome(nodeid: str, semantic: dict[str, str] | None, how: str,
                  worker_id: str) -> tuple[str, list[tuple[str, str]]]:
    """The failed test's message (its semantic, what killed its process) and, for a test
    with a semantic, its JUnit properties: under xdist and in ``run``'s forked workers."""
    what = f"semantic {semantic['id']}: " if semantic else ""
    message = (f"{what}{nodeid} killed its test process ({how}); "
               f"the run went on in a new process (worker {worker_id} replaced)")
    if not semantic:
        return message, []
    result = {"outcome": "failed", "phase": "call", "reason": message, "expected": None, "observed": None}
    return message, junit.properties(semantic, result)


def sweep_dead_workers() -> None:
    """What a dead worker made and recorded: reclaimed now, not at the next session."""
    from ..memory import records

    try:
        records.sweep()
    except (OSError, records.UnsafeDirectory):
        pass


def tolerate_a_dead_worker(node: Any) -> None:
    """Let the controller's scheduler send to a worker that has died but whose death it has
    not yet processed, instead of ending the run with an INTERNALERROR.

    Why: with two workers, one can die while the controller handles an event of the other's
    (a crash, or a finished test), and xdist's schedulers then send work to the dead one:
    ``LoadScheduling.remove_node`` refills every other node, ``WorkStealingScheduling``
    steals from the node with the most tests left. execnet raises ``OSError("cannot send
    (already closed?)")`` and the whole run is lost (seen in CI, and in one of eight runs of
    3,000 tests of which 60 crash). The send is safe to drop: the dead worker's errordown
    event follows, and ``remove_node`` reschedules what it held, the tests just sent
    included, and forgets a pending steal. xdist's own ``WorkerController.shutdown``
    already drops an ``OSError`` the same way; this does it for the other commands."""
    send = node.sendcommand

    def send_unless_dead(name: str, **kwargs: object) -> None:
        try:
            send(name, **kwargs)
        except OSError:
            node.log(f"not sent to a worker that has died: {name}; its errordown event reschedules")

    node.sendcommand = send_unless_dead


def describe_death(directory: Path, worker_id: str) -> str:
    """'SIGSEGV (Segmentation fault)' from the worker's faulthandler file, or what can be
    said without one (a signal faulthandler cannot catch, such as SIGKILL)."""
    return fault_trace(directory, worker_id) or (
        "killed by a signal that leaves no trace, such as SIGKILL, or exited abruptly")


def fault_trace(directory: Path, worker_id: str) -> str | None:
    """What the worker's faulthandler file says: the fatal signal and the innermost
    frames; None where it wrote nothing."""
    try:
        text = (directory / f"fault-{worker_id}").read_text(errors="replace")
    except OSError:
        text = ""
    found = _FATAL.search(text)
    if not found:
        return None
    what = found.group("what").strip()
    name = _FATAL_SIGNALS.get(what)
    where = [line.strip() for line in text.splitlines() if line.strip().startswith("File ")][:3]
    return (f"{name} ({what})" if name else what) + (f"; innermost: {' <- '.join(where)}" if where else "")


def _semantics(directory: Path) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for path in directory.glob("semantics-*.json"):
        try:
            found.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def worker_faults_to_file(config: pytest.Config) -> None:
    """In an xdist worker: send fatal-signal output to a file the controller can read."""
    directory = crash_dir(config)
    worker_id = getattr(config, "workerinput", {}).get("workerid")
    if directory is None or worker_id is None or not enabled():
        return
    fault = open(directory / f"fault-{worker_id}", "w", encoding="utf-8")  # noqa: SIM115 - the handler keeps it
    _FAULT_FILE.append(fault)
    faulthandler.enable(file=fault, all_threads=False)


def worker_collected(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: which semantic each test checks, for a crash report."""
    directory = crash_dir(config)
    worker_id = getattr(config, "workerinput", {}).get("workerid")
    if directory is None or worker_id is None or not enabled():
        return
    found = {item.nodeid: semantic.as_dict() for item in items if (semantic := semantic_of(item)) is not None}
    target = directory / f"semantics-{worker_id}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(found))
    os.replace(tmp, target)
