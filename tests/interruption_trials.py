"""Interrupt a pytest-memsyscalls run at random moments and look for what it left.

    python tests/interruption_trials.py [--trials 24] [--seed N] [--conformance] [--forked]

Each trial runs pytest (in a subprocess) on a workload that makes what the conformance
suite makes through the fixtures -- SysV segments, /dev/shm names, locked memory,
forked children that block -- and sends SIGINT, SIGTERM or SIGKILL after a random
delay. SIGINT and SIGTERM must make pytest unwind and leave nothing, by themselves.
After SIGKILL, forked children must already be gone (they die with pytest), and the
next session's sweep (``python -m pytest_memsyscalls sweep``) must reclaim the
segments and names. ``--conformance`` interrupts the real conformance suite instead;
``--forked`` runs the tests in forked workers, as ``memsyscalls run`` does
(plugin/forked_workers.py).

How leftovers are found without blaming anyone else's objects: this script is a
child subreaper, so every orphaned descendant of the run becomes its child; the
workload notes every pid it forks; a SysV segment or memsys name counts as a
leftover when it is new since before the trial and was created by one of those pids.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_memsyscalls.kernel import constants as C
from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.memory.names import NAME_RE

WORKLOAD = r'''
import os
import time

import pytest

from pytest_memsyscalls import run_in_child
from pytest_memsyscalls.memory.shm import PosixShm, ShmSegment

NOTES = os.environ["MEMSYS_TRIAL_NOTES"]


def note_pid():
    with open(NOTES, "a") as out:
        out.write(f"{os.getpid()}\n")


def child_work(seconds):
    note_pid()
    with ShmSegment(4096), PosixShm(4096):  # left only if the child is killed meanwhile
        time.sleep(seconds)  # load, not synchronisation: a child blocked when the signal comes
    return True


@pytest.mark.parametrize("n", range(300))
def test_work(n, shm_segment, posix_shm, locked_region, mapped_pages):
    note_pid()  # the process that runs the tests (a forked worker's, too)
    segment = shm_segment(8192)
    segment.attach()
    posix_shm(4096).map()
    locked_region(1)
    outcome = run_in_child(child_work, 0.005 + (n % 5) * 0.005, timeout=10)
    assert outcome.returned, outcome.describe()
'''


def sysv_segments() -> dict[int, tuple[int, int]]:
    """shmid -> (key, cpid) of every segment visible here."""
    found = {}
    with open("/proc/sysvipc/shm") as handle:
        lines = handle.read().splitlines()
    header = lines[0].split()
    for line in lines[1:]:
        cols = dict(zip(header, line.split(), strict=False))
        if cols:
            found[int(cols["shmid"])] = (int(cols["key"]), int(cols["cpid"]))
    return found


def memsys_names() -> dict[str, int]:
    found = {}
    for entry in os.listdir("/dev/shm"):
        match = NAME_RE.match(entry)
        if match:
            found[entry] = int(match.group(1))
    return found


def reap_orphans(grace: float = 0.0) -> list[int]:
    """Reap our dead children; return the pids of those still alive (leftovers). A
    process SIGKILLed a moment ago may still be exiting: ``grace`` seconds are allowed
    for that (polled), a process that is truly left stays alive past it."""
    deadline = time.monotonic() + grace
    while True:
        alive = _reap_once()
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.01)


def _reap_once() -> list[int]:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    alive = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if int(fields[1]) == me:
            alive.append(int(entry))
    return alive


_FORKED_CONFTEST = """
from pytest_memsyscalls.plugin.forked_workers import ForkedWorkers

def pytest_configure(config):
    config.pluginmanager.register(ForkedWorkers(2, 5), "forked-workers")
"""


def one_trial(signo: int, delay: float, workdir: Path, conformance: bool, timeout: float = 60.0,
              after_first_child: bool = False, forked: bool = False) -> dict[str, object]:
    """One run, one signal ``delay`` seconds after the start (or after the workload's
    first test has started, so the session is surely under way)."""
    records_dir = workdir / "records"
    notes = workdir / "notes"
    notes.write_text("")
    env = dict(os.environ, MEMSYS_RECORDS_DIR=str(records_dir), MEMSYS_TRIAL_NOTES=str(notes))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-x"]
    if conformance and forked:
        command = [sys.executable, "-m", "pytest_memsyscalls", "run", "-q", "-p", "no:randomly", "-x"]
    elif conformance:
        from pytest_memsyscalls.matrix.suite import conformance_dir
        command += [str(conformance_dir()), f"--rootdir={conformance_dir()}"]
    else:
        (workdir / "test_workload.py").write_text(WORKLOAD)
        if forked:
            (workdir / "conftest.py").write_text(_FORKED_CONFTEST)
        command += [str(workdir / "test_workload.py"), f"--rootdir={workdir}"]
    before_segments = set(sysv_segments())
    before_names = set(memsys_names())
    proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while after_first_child and not notes.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the session to be under way, polled
    time.sleep(delay)  # the random moment
    finished_early = proc.poll() is not None
    if not finished_early:
        proc.send_signal(signo)
    try:
        output, _ = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        hung = True
    pids = {proc.pid} | {int(line) for line in notes.read_text().split()}
    # Orphans are reaped (they are this subreaper's) before the sweep, which counts a
    # zombie's record file as a live run's.
    processes_left = reap_orphans(grace=5.0)
    swept = ""
    if signo == signal.SIGKILL:
        swept = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "sweep", "--dir", str(records_dir)],
                               env=env, capture_output=True, text=True, check=False).stdout.strip().splitlines()[-1]
    segments = {shmid for shmid, (_, cpid) in sysv_segments().items()
                if shmid not in before_segments and cpid in pids}
    names = {name for name, pid in memsys_names().items() if name not in before_names and pid in pids}
    records_left = sorted(os.listdir(records_dir)) if records_dir.exists() else []
    return {
        "signal": signal.Signals(signo).name, "delay": round(delay, 3), "returncode": proc.returncode,
        "finished_before_signal": finished_early, "hung": hung, "children_forked": len(pids) - 1,
        "processes_left": processes_left, "segments_left": sorted(segments),
        "names_left": sorted(names), "records_left": records_left, "sweep": swept,
        "tail": output.decode(errors="replace").strip().splitlines()[-1:] if output else [],
    }


def leftovers(result: dict[str, Any]) -> int:
    return sum(len(result[key]) for key in ("processes_left", "segments_left", "names_left",
                                            "records_left")) + int(bool(result["hung"]))


def run_trials(trials: int, seed: int, conformance: bool = False, max_delay: float = 2.5,
               min_delay: float = 0.0, forked: bool = False) -> list[dict[str, object]]:
    """Each signal a random moment after the session's first fork (from the start, the
    signal mostly lands in interpreter start-up, before anything exists)."""
    libc.prctl(C.PR_SET_CHILD_SUBREAPER, 1)
    chooser = random.Random(seed)
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    results = []
    for index in range(trials):
        signo = signals[index % 3]
        with tempfile.TemporaryDirectory(prefix="memsys-trial-") as tmp:
            os.chmod(tmp, 0o700)
            results.append(one_trial(signo, chooser.uniform(min_delay, max_delay), Path(tmp), conformance,
                                      after_first_child=not conformance, forked=forked))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--conformance", action="store_true", help="interrupt the conformance suite")
    parser.add_argument("--forked", action="store_true", help="run the tests in forked workers (memsyscalls run)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results = run_trials(options.trials, options.seed, options.conformance, forked=options.forked)
    bad = 0
    for result in results:
        count = leftovers(result)
        bad += count
        if not options.json:
            print(f"{result['signal']:8} after {result['delay']:.2f}s rc={result['returncode']} "
                  f"children={result['children_forked']} leftovers={count} {result['sweep']}"
                  + (" (run had finished)" if result["finished_before_signal"] else ""))
            if count:
                print("   ", json.dumps(result))
    if options.json:
        print(json.dumps(results, indent=1))
    counts = {name: sum(r["signal"] == name for r in results) for name in ("SIGINT", "SIGTERM", "SIGKILL")}
    print(f"seed {options.seed}: {len(results)} trials {counts}, leftovers {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
