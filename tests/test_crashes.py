"""A test that kills its process is one failed test naming its semantic and the signal,
the run goes on, and the JSON report stays valid even for a run that dies itself: under
pytest-xdist (``memsyscalls run -n N``; tests/test_forked_workers.py has run's own workers)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from crash_suite import SUITE, check_crash_report

from pytest_memsyscalls.plugin.crashes import ENABLE_VARIABLE, describe_death
from pytest_memsyscalls.report.model import load_report

pytest.importorskip("xdist")



def test_a_crash_is_one_failed_test_naming_semantic_and_signal(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENABLE_VARIABLE, "1")  # what `memsyscalls run` sets
    pytester.makepyfile(test_crashing=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "1", "--memsys-report=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the run itself ended normally
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "semantic demo.crash.segv: test_crashing.py::test_b_segv killed its test process "
        "(SIGSEGV (Segmentation fault); innermost: *test_b_segv*(worker gw0 replaced)",
    ])
    result.stdout.fnmatch_lines(["semantic demo.crash.kill: test_crashing.py::test_c_kill killed its test "
                                 "process (killed by a signal that leaves no trace, such as SIGKILL*"])
    check_crash_report(pytester.path / "r.json")


def test_a_run_that_dies_leaves_a_valid_report_of_what_it_had(pytester: pytest.Pytester) -> None:
    """Without isolation the whole run dies with the test: the report written on the way
    is still a valid v1 report, marked incomplete, with the tests done before."""
    pytester.makepyfile(test_dying="""
        import os, signal, time
        from pytest_memsyscalls import semantic

        @semantic("demo.first.fine", "Runs first.", source="demo(2)")
        def test_a_first():
            time.sleep(1.1)  # past the report's once-a-second rewrite

        @semantic("demo.kills.run", "Kills the whole run.", source="demo(2)")
        def test_b_kills():
            os.kill(os.getpid(), signal.SIGKILL)
        """)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist", "--memsys-report=r.json")
    assert result.ret == -signal.SIGKILL
    report = load_report(pytester.path / "r.json")
    assert report["complete"] is False
    assert [(row["id"], row["outcome"]) for row in report["semantics"]] == [("demo.first.fine", "passed")]


def test_the_fault_file_names_the_signal(tmp_path: Path) -> None:
    (tmp_path / "fault-gw3").write_text('Fatal Python error: Bus error\n\nCurrent thread 0x1 (most recent call '
                                        'first):\n  File "/x/test_y.py", line 9 in test_z\n')
    assert describe_death(tmp_path, "gw3") == 'SIGBUS (Bus error); innermost: File "/x/test_y.py", line 9 in test_z'
    assert describe_death(tmp_path, "gw4").startswith("killed by a signal that leaves no trace")


def test_another_projects_xdist_run_keeps_xdists_own_crash_report(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `memsyscalls run` (its variable unset) the plugin leaves xdist's crash report
    and the workers' faulthandler alone: a guest's `pytest -n 2` sees no change."""
    monkeypatch.delenv(ENABLE_VARIABLE, raising=False)
    pytester.makepyfile(test_crashing=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-n", "1")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*worker 'gw0' crashed while running 'test_crashing.py::test_b_segv'*"])
    assert "killed its test process" not in result.stdout.str()


class _Worker:
    """What xdist's schedulers use of a WorkerController; ``alive`` False is a worker that
    has died but whose errordown event the controller has not processed yet."""

    shutting_down = False

    def __init__(self, name: str) -> None:
        self.gateway = type("Gateway", (), {"id": name})()
        self.alive = True
        self.received: list[object] = []

    def sendcommand(self, name: str, **kwargs: object) -> None:
        if not self.alive:
            raise OSError("cannot send (already closed?)")  # what execnet raises
        self.received.append(kwargs.get("indices"))

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sendcommand("runtests", indices=indices)

    def send_steal(self, indices: list[int]) -> None:
        self.sendcommand("steal", indices=indices)

    def shutdown(self) -> None:
        pass

    def log(self, *_: object) -> None:
        pass


def _two_workers_scheduled(sched: Any) -> tuple[Any, _Worker, _Worker]:
    """Two workers, gw0 and gw1, with tolerate_a_dead_worker, given 40 tests by ``sched``."""
    from pytest_memsyscalls.plugin.crashes import tolerate_a_dead_worker

    ids = [f"test_x.py::test_{i}" for i in range(40)]
    a, b = _Worker("gw0"), _Worker("gw1")
    for worker in (a, b):
        tolerate_a_dead_worker(worker)
        sched.add_node(worker)
        sched.add_node_collection(worker, ids)
    sched.schedule()
    return sched, a, b


def test_a_second_worker_dying_unnoticed_loses_no_test_and_not_the_run(pytester: pytest.Pytester) -> None:
    """Worker a crashes while worker b has died unnoticed: xdist's scheduler refills b, the
    send fails; the run must go on, and every test but the two that were running when the
    workers died must be scheduled again (CI lost a run this way: 'cannot send (already
    closed?)')."""
    from xdist.scheduler import LoadScheduling

    sched, a, b = _two_workers_scheduled(LoadScheduling(pytester.parseconfig("--tx", "2*popen")))
    b.alive = False
    assert sched.remove_node(a) == "test_x.py::test_0"  # refills b: the send to the dead b is dropped
    assert sched.remove_node(b) == "test_x.py::test_5"
    assert sorted(sched.pending) == [i for i in range(40) if i not in (0, 5)]


def test_a_steal_from_a_worker_that_died_unnoticed_loses_no_test_and_not_the_run(
        pytester: pytest.Pytester) -> None:
    """What CI hit (``memsyscalls run`` uses ``--dist worksteal``): worker a runs out of
    tests and the scheduler steals from worker b, which has died unnoticed. The run must go
    on, and when b's death is processed a gets everything b held but the test it died in."""
    from xdist.scheduler import WorkStealingScheduling

    sched, a, b = _two_workers_scheduled(WorkStealingScheduling(pytester.parseconfig("--tx", "2*popen")))
    b.alive = False
    for index in list(sched.node2pending[a]):
        sched.mark_test_complete(a, index)  # the last ones ask b for half its tests: dropped
    assert sched.remove_node(b) == "test_x.py::test_20"
    assert sched.node2pending[a] == list(range(21, 40))
    assert a.received[-1] == list(range(21, 40))
