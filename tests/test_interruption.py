"""SIGINT, SIGTERM and kill -9 of a pytest run leave nothing behind (issue 8).

A handful of the trials of ``tests/interruption_trials.py`` (run it as a script for
20+ trials), plus the sweep's refusals: it never touches what no record names, what
a live run recorded, or a records directory that is not safely ours.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from pytest_memsyscalls.kernel import libc
from pytest_memsyscalls.memory import records
from pytest_memsyscalls.memory.shm import PosixShm, ShmSegment

_TRIALS = Path(__file__).with_name("interruption_trials.py")
_spec = importlib.util.spec_from_file_location("interruption_trials", _TRIALS)
assert _spec is not None and _spec.loader is not None
trials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trials)


@pytest.mark.parametrize("forked", [False, True], ids=["in-process", "forked-workers"])
@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_run_leaves_nothing(tmp_path: Path, signo: signal.Signals, forked: bool) -> None:
    """One trial in a helper process that adopts the run's orphans (a child subreaper);
    the tests in the pytest process, or in workers forked from it (``memsyscalls run``)."""
    code = (f"import sys, json, pathlib; sys.path.insert(0, {str(_TRIALS.parent)!r}); "
            "from pytest_memsyscalls.kernel import constants as C, libc; "
            "import interruption_trials as t; libc.prctl(C.PR_SET_CHILD_SUBREAPER, 1); "
            f"print(json.dumps(t.one_trial({int(signo)}, 0.3, pathlib.Path({str(tmp_path)!r}), False, "
            f"after_first_child=True, forked={forked})))")
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["finished_before_signal"], result
    assert not result["hung"], result
    expected_rc = -9 if signo == signal.SIGKILL else 2  # 2: pytest's "interrupted"
    assert result["returncode"] == expected_rc, result
    assert trials.leftovers(result) == 0, result


_SPINNING = """
import os, signal, threading, time

def test_spin(mapped_pages):
    mapped_pages(1)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.{signal})).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for i in range(10**6):
            if i < 0:  # never: the loop's jump back, which has no line number, is all it runs
                pass
"""


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_an_interrupt_at_a_loop_s_jump_back_ends_the_run_as_interrupted(tmp_path: Path, signo: signal.Signals) -> None:
    """CPython 3.11 runs signal handlers at a loop's jump back, an instruction without a
    line number; pytest's report of the KeyboardInterrupt failed on it (exit status 1,
    a TypeError) until the plugin gave the traceback entry the loop's line."""
    import subprocess

    (tmp_path / "test_spin.py").write_text(_SPINNING.format(signal=signo.name))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--full-trace", "test_spin.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "TypeError: unsupported operand" not in done.stdout + done.stderr
    assert "test_spin.py:9: " in done.stdout, done.stdout[-3000:]  # the loop's head


def _dead_record(directory: Path, lines: list[str]) -> Path:
    """A record file of a run whose process no longer exists (pid 1 with a start time it never had)."""
    path = directory / "1-999999999999.rec"
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return path


def test_sweep_removes_only_recorded_objects_of_dead_runs(tmp_path: Path) -> None:
    directory = tmp_path / "records"
    directory.mkdir(mode=0o700)
    with ShmSegment(4096) as recorded, ShmSegment(4096) as unrecorded, PosixShm(4096) as name, \
            PosixShm(4096) as other_name:
        ds = libc.shm_stat(recorded.shmid)
        path = _dead_record(directory, [f"sysv {recorded.shmid} 0 {ds.shm_cpid} {ds.shm_ctime}",
                                        f"sysv {unrecorded.shmid} 0 {ds.shm_cpid} {ds.shm_ctime + 1000}",  # wrong ctime
                                        f"posix {name.name} {os.getpid()}", "sysv 12 torn"])
        dry = records.sweep(str(directory), dry_run=True)
        assert path.exists() and os.path.exists(name.path)
        result = records.sweep(str(directory))
        assert result.removed == dry.removed and len(result.removed) == 2, result
        assert not path.exists()
        with pytest.raises(OSError):
            libc.shm_stat(recorded.shmid)
        libc.shm_stat(unrecorded.shmid)  # not the recorded segment: untouched
        assert not os.path.exists(name.path)
        assert os.path.exists(other_name.path)


def test_sweep_leaves_live_runs_alone(tmp_path: Path) -> None:
    directory = tmp_path / "records"
    directory.mkdir(mode=0o700)
    with ShmSegment(4096) as segment:
        ds = libc.shm_stat(segment.shmid)
        live = directory / f"{os.getpid()}-{records.starttime(os.getpid())}.rec"
        live.write_text(f"sysv {segment.shmid} 0 {ds.shm_cpid} {ds.shm_ctime}\n")
        result = records.sweep(str(directory))
        assert result.live == 1 and not result.removed
        libc.shm_stat(segment.shmid)


@pytest.mark.parametrize("mode", [0o755, 0o770])
def test_sweep_refuses_a_directory_others_can_write_or_read(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "records"
    directory.mkdir()
    directory.chmod(mode)
    _dead_record(directory, [])
    with pytest.raises(records.UnsafeDirectory):
        records.sweep(str(directory))


def test_sweep_refuses_a_symlinked_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(records.UnsafeDirectory):
        records.sweep(str(tmp_path / "link"))


def test_sweep_command_dry_run(tmp_path: Path) -> None:
    import subprocess

    directory = tmp_path / "records"
    directory.mkdir(mode=0o700)
    with PosixShm(4096) as name:
        _dead_record(directory, [f"posix {name.name} {os.getpid()}"])
        done = subprocess.run([sys.executable, "-m", "pytest_memsyscalls", "sweep", "--dry-run", "--dir",
                               str(directory)], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert f"would remove: POSIX name {name.name}" in done.stdout
        assert os.path.exists(name.path)
